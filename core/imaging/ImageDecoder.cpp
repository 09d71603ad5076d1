#include "imaging/ImageDecoder.h"

#include "imaging/DecoderMessages.h"

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <new>
#include <optional>

namespace cytosae::imaging {

namespace {

struct HeaderInfo {
    std::string format; // "PNG", "JPEG", ... or empty when the signature is unknown
    std::optional<int64_t> width;
    std::optional<int64_t> height;
    // PNG only: the decoder expands palettes, sub-byte depths and grey+alpha before we
    // see the pixels, so the header is the only place the true source layout is visible.
    int pngBitDepth = 0;
    int pngColourType = -1;
};

uint32_t readBe32(const std::vector<uint8_t> &b, size_t at)
{
    return (uint32_t(b[at]) << 24) | (uint32_t(b[at + 1]) << 16) | (uint32_t(b[at + 2]) << 8)
        | uint32_t(b[at + 3]);
}

uint16_t readBe16(const std::vector<uint8_t> &b, size_t at)
{
    return uint16_t((b[at] << 8) | b[at + 1]);
}

int32_t readLe32(const std::vector<uint8_t> &b, size_t at)
{
    const uint32_t v = uint32_t(b[at]) | (uint32_t(b[at + 1]) << 8) | (uint32_t(b[at + 2]) << 16)
        | (uint32_t(b[at + 3]) << 24);
    int32_t out;
    std::memcpy(&out, &v, sizeof out);
    return out;
}

bool startsWith(const std::vector<uint8_t> &b, const char *sig, size_t n)
{
    return b.size() >= n && std::memcmp(b.data(), sig, n) == 0;
}

// JPEG keeps its size in the first SOFn segment, which may come after large EXIF/ICC
// segments, so walk the segment list instead of looking at a fixed offset.
void readJpegSize(const std::vector<uint8_t> &b, HeaderInfo &h)
{
    size_t pos = 2;
    while (pos + 4 <= b.size()) {
        if (b[pos] != 0xFF)
            return;
        uint8_t marker = b[pos + 1];
        if (marker == 0xFF) { // fill byte
            ++pos;
            continue;
        }
        if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD8)) {
            pos += 2;
            continue;
        }
        if (marker == 0xD9 || marker == 0xDA)
            return;
        const size_t len = readBe16(b, pos + 2);
        const bool isSof = marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8
            && marker != 0xCC;
        if (isSof) {
            if (pos + 9 <= b.size()) {
                h.height = readBe16(b, pos + 5);
                h.width = readBe16(b, pos + 7);
            }
            return;
        }
        if (len < 2)
            return;
        pos += 2 + len;
    }
}

// Microscopy TIFFs can be whole-slide images of billions of pixels; reading the first IFD
// lets us refuse them before the decoder tries to allocate the full frame.
void readTiffSize(const std::vector<uint8_t> &b, HeaderInfo &h)
{
    const bool le = b[0] == 'I';
    auto u16 = [&](size_t at) -> uint32_t {
        return le ? uint32_t(b[at] | (b[at + 1] << 8)) : uint32_t((b[at] << 8) | b[at + 1]);
    };
    auto u32 = [&](size_t at) -> uint32_t {
        return le ? (u16(at) | (u16(at + 2) << 16)) : ((u16(at) << 16) | u16(at + 2));
    };
    if (b.size() < 8)
        return;
    const size_t ifd = u32(4);
    if (ifd + 2 > b.size())
        return;
    const size_t entries = u16(ifd);
    for (size_t i = 0; i < entries; ++i) {
        const size_t e = ifd + 2 + i * 12;
        if (e + 12 > b.size())
            return;
        const uint32_t tag = u16(e);
        const uint32_t type = u16(e + 2);
        if (tag != 256 && tag != 257)
            continue;
        const int64_t v = type == 3 ? int64_t(u16(e + 8)) : type == 4 ? int64_t(u32(e + 8)) : -1;
        if (v < 0)
            continue;
        (tag == 256 ? h.width : h.height) = v;
    }
}

// Entropy-coded JPEG data never contains FF D9 (an FF there is always followed by 00 or a
// restart marker), so an FF D9 after the first scan is the real end-of-image marker.
// libjpeg pads a cut-off file with grey and only warns; Pillow refuses such files, so we do too.
bool jpegLooksTruncated(const std::vector<uint8_t> &b)
{
    size_t pos = 2;
    size_t scanStart = 0;
    while (pos + 4 <= b.size()) {
        if (b[pos] != 0xFF)
            return false; // malformed; let the decoder produce its own verdict
        const uint8_t marker = b[pos + 1];
        if (marker == 0xFF) {
            ++pos;
            continue;
        }
        if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD8)) {
            pos += 2;
            continue;
        }
        if (marker == 0xDA) {
            scanStart = pos + 2;
            break;
        }
        const size_t len = readBe16(b, pos + 2);
        if (len < 2)
            return false;
        pos += 2 + len;
    }
    if (scanStart == 0)
        return true; // ran out of data before the first scan
    // Backwards, because the marker is normally in the last two bytes.
    for (size_t i = b.size() - 1; i > scanStart; --i) {
        if (b[i - 1] == 0xFF && b[i] == 0xD9)
            return false;
    }
    return true;
}

HeaderInfo sniffHeader(const std::vector<uint8_t> &b)
{
    HeaderInfo h;
    if (startsWith(b, "\x89PNG\r\n\x1a\n", 8)) {
        h.format = "PNG";
        if (b.size() >= 26 && std::memcmp(b.data() + 12, "IHDR", 4) == 0) {
            h.width = readBe32(b, 16);
            h.height = readBe32(b, 20);
            h.pngBitDepth = b[24];
            h.pngColourType = b[25];
        }
    } else if (startsWith(b, "\xFF\xD8\xFF", 3)) {
        h.format = "JPEG";
        readJpegSize(b, h);
    } else if (startsWith(b, "BM", 2)) {
        h.format = "BMP";
        if (b.size() >= 26) {
            // Only BITMAPINFOHEADER and later store 32-bit signed sizes here;
            // a negative height just means top-down rows.
            const int32_t dibSize = readLe32(b, 14);
            if (dibSize >= 40) {
                h.width = std::abs(int64_t(readLe32(b, 18)));
                h.height = std::abs(int64_t(readLe32(b, 22)));
            } else if (dibSize == 12) { // OS/2 BITMAPCOREHEADER: 16-bit sizes
                h.width = int64_t(b[18]) | (int64_t(b[19]) << 8);
                h.height = int64_t(b[20]) | (int64_t(b[21]) << 8);
            }
        }
    } else if (startsWith(b, "II*\0", 4) || startsWith(b, "MM\0*", 4)) {
        h.format = "TIFF";
        readTiffSize(b, h);
    } else if (startsWith(b, "II+\0", 4) || startsWith(b, "MM\0+", 4)) {
        h.format = "BigTIFF";
    } else if (startsWith(b, "GIF8", 4)) {
        h.format = "GIF";
    } else if (b.size() >= 12 && std::memcmp(b.data(), "RIFF", 4) == 0
               && std::memcmp(b.data() + 8, "WEBP", 4) == 0) {
        h.format = "WebP";
    }
    return h;
}

std::string formatPixelCount(int64_t pixels)
{
    if (pixels < 1'000'000)
        return std::to_string(pixels) + " pixels";
    // Integer formatting: printf would follow the process locale, which Qt sets from the
    // environment, and print "4,3" in some languages.
    const int64_t tenths = (pixels + 50'000) / 100'000;
    return std::to_string(tenths / 10) + "." + std::to_string(tenths % 10) + " megapixels";
}

std::optional<Error> checkDimensions(int64_t width, int64_t height, const DecodeLimits &limits)
{
    const std::string size = std::to_string(width) + "x" + std::to_string(height);
    if (width < limits.minSide || height < limits.minSide) {
        const std::string need = std::to_string(limits.minSide);
        return Error("image is " + size + " pixels; at least " + need + "x" + need
                     + " is needed (one ViT patch)");
    }
    // Each side first: two 32-bit sides can overflow a signed 64-bit product (found by fuzzing).
    if (width > limits.maxPixels || height > limits.maxPixels)
        return Error("image is " + size + " pixels; at most " + formatPixelCount(limits.maxPixels) + " are supported");
    const int64_t pixels = width * height;
    if (pixels > limits.maxPixels) {
        return Error("image is " + size + " pixels (" + formatPixelCount(pixels) + "); at most "
                     + formatPixelCount(limits.maxPixels) + " are supported");
    }
    return std::nullopt;
}

const char *depthName(int depth)
{
    switch (depth) {
    case CV_8S: return "8-bit signed integer";
    case CV_16S: return "16-bit signed integer";
    case CV_32S: return "32-bit signed integer";
    case CV_32F: return "32-bit floating-point";
    case CV_64F: return "64-bit floating-point";
    case CV_16F: return "16-bit floating-point";
    default: return "unknown";
    }
}

std::string extensionOf(const std::string &name)
{
    const auto slash = name.find_last_of("/\\");
    const auto dot = name.find_last_of('.');
    if (dot == std::string::npos || (slash != std::string::npos && dot < slash))
        return {};
    std::string ext = name.substr(dot + 1);
    for (char &c : ext)
        c = char(std::tolower(static_cast<unsigned char>(c)));
    return ext;
}

Error undecodable(const HeaderInfo &header, const std::string &nameForMessages,
                  const std::string &detail)
{
    std::string msg = "not a decodable image (PNG/JPEG/TIFF/BMP expected)";
    if (header.format == "GIF") {
        msg += "; GIF files are not supported, convert the image to PNG";
    } else if (!header.format.empty()) {
        // A known signature that still fails almost always means a cut-off download or copy.
        msg += "; the data starts like a " + header.format
            + " file but could not be decoded (truncated or corrupt?)";
    } else {
        const std::string ext = extensionOf(nameForMessages);
        if (!ext.empty())
            msg += "; the name ends in ." + ext + " but the contents match no known image format";
        else
            msg += "; the contents match no known image format";
    }
    if (!detail.empty())
        msg += " (" + detail + ")";
    return Error(msg);
}

inline uint8_t scale16To8(uint16_t v)
{
    return uint8_t((uint32_t(v) * 255u + 32767u) / 65535u);
}

template <typename Sample, typename Convert>
void toRgb(const cv::Mat &mat, RgbImage &out, Convert convert)
{
    const int channels = mat.channels();
    uint8_t *dst = out.pixels.data();
    for (int y = 0; y < mat.rows; ++y) {
        const Sample *src = mat.ptr<Sample>(y);
        for (int x = 0; x < mat.cols; ++x, src += channels, dst += 3) {
            switch (channels) {
            case 1:
            case 2: // grey (+alpha): replicate grey, ignore alpha
                dst[0] = dst[1] = dst[2] = convert(src[0]);
                break;
            default: // BGR or BGRA: swap to RGB; alpha is dropped, never composited
                dst[0] = convert(src[2]);
                dst[1] = convert(src[1]);
                dst[2] = convert(src[0]);
                break;
            }
        }
    }
}

Result<DecodedImage> convertMat(const cv::Mat &mat, const HeaderInfo &header)
{
    const int depth = mat.depth();
    if (depth != CV_8U && depth != CV_16U) {
        return Error(std::string("image has ") + depthName(depth)
                     + " samples; only 8-bit and 16-bit unsigned integer images are supported");
    }
    const int channels = mat.channels();
    if (channels < 1 || channels > 4) {
        return Error("image has " + std::to_string(channels)
                     + " channels; only 1 (grey), 2 (grey+alpha), 3 (RGB) or 4 (RGBA) are supported");
    }

    DecodedImage result;
    result.info.sourceChannels = channels;
    result.info.sourceBitDepth = depth == CV_16U ? 16 : 8;

    bool greySource = channels <= 2;
    bool hasAlpha = channels == 2 || channels == 4;
    if (header.pngColourType >= 0) {
        static const int channelsForColourType[] = {1, 0, 3, 3, 2, 0, 4};
        if (header.pngColourType <= 6 && channelsForColourType[header.pngColourType] > 0) {
            result.info.sourceChannels = channelsForColourType[header.pngColourType];
            result.info.sourceBitDepth = header.pngBitDepth;
            greySource = header.pngColourType == 0 || header.pngColourType == 4;
        }
    }

    if (result.info.sourceBitDepth == 16)
        result.info.notes.emplace_back("16-bit image scaled to 8 bits");
    else if (result.info.sourceBitDepth > 0 && result.info.sourceBitDepth < 8)
        result.info.notes.emplace_back(std::to_string(result.info.sourceBitDepth)
                                       + "-bit image expanded to 8 bits");
    if (header.pngColourType == 3)
        result.info.notes.emplace_back("palette colours expanded to RGB");
    if (hasAlpha) {
        // A PNG without an alpha channel still arrives as BGRA when it has a tRNS chunk.
        const bool fromTrns = header.pngColourType == 0 || header.pngColourType == 2
            || header.pngColourType == 3;
        result.info.notes.emplace_back(fromTrns
                                           ? "transparency dropped (not composited onto a background)"
                                           : "alpha channel dropped (not composited onto a background)");
    }
    if (greySource)
        result.info.notes.emplace_back("greyscale replicated to RGB");

    RgbImage &img = result.image;
    img.width = mat.cols;
    img.height = mat.rows;
    img.pixels.resize(size_t(mat.cols) * size_t(mat.rows) * 3);
    if (depth == CV_8U)
        toRgb<uint8_t>(mat, img, [](uint8_t v) { return v; });
    else
        toRgb<uint16_t>(mat, img, scale16To8);
    return result;
}

} // namespace

Result<DecodedImage> decodeImageBuffer(const std::vector<uint8_t> &bytes,
                                       const std::string &nameForMessages,
                                       const DecodeLimits &limits)
{
    if (bytes.empty())
        return Error("file is empty (0 bytes)");
    if (int64_t(bytes.size()) > limits.maxFileBytes) {
        return Error("file is " + std::to_string(bytes.size()) + " bytes; at most "
                     + std::to_string(limits.maxFileBytes) + " bytes are supported");
    }

    const HeaderInfo header = sniffHeader(bytes);
    // Reject oversized images before the decoder allocates memory for them.
    if (header.width && header.height && *header.width > 0 && *header.height > 0) {
        if (auto err = checkDimensions(*header.width, *header.height, limits))
            return *err;
    }
    // Only the formats of the cell data sets reach a decoder, and only with a size we could
    // read and bound first: OpenCV would otherwise try every codec it has (JPEG 2000, EXR,
    // HDR, ...) and size its buffers from the file.
    const bool supported = header.format == "PNG" || header.format == "JPEG" || header.format == "BMP" ||
                           header.format == "TIFF";
    if (!supported) {
        if (header.format.empty() || header.format == "GIF")
            return undecodable(header, nameForMessages, {});
        return Error("not a decodable image (PNG/JPEG/TIFF/BMP expected); " + header.format +
                     " files are not supported, convert the image to PNG");
    }
    if (!header.width || !header.height || *header.width <= 0 || *header.height <= 0)
        return Error("not a decodable image: the " + header.format +
                     " header does not state a valid image size (damaged file?)");

    if (header.format == "JPEG" && jpegLooksTruncated(bytes)) {
        return Error("not a decodable image (PNG/JPEG/TIFF/BMP expected); the JPEG data ends "
                     "before its end-of-image marker (file truncated?)");
    }

    // What the codec prints on std::cerr goes into this file's reason, not onto the terminal.
    DecoderMessages messages;
    try {
        // IMREAD_UNCHANGED is -1, so OR-ing IMREAD_IGNORE_ORIENTATION into it would be a
        // no-op; OpenCV already skips EXIF rotation for exactly IMREAD_UNCHANGED.
        const cv::Mat mat = cv::imdecode(bytes, cv::IMREAD_UNCHANGED);
        const std::string said = messages.summary();
        if (mat.empty() || mat.dims != 2)
            return undecodable(header, nameForMessages, said.empty() ? std::string() : "decoder: " + said);
        if (auto err = checkDimensions(mat.cols, mat.rows, limits))
            return *err;
        auto decoded = convertMat(mat, header);
        if (decoded && !said.empty())
            decoded->info.notes.push_back("decoder warning: " + said);
        return decoded;
    } catch (const cv::Exception &e) {
        return undecodable(header, nameForMessages, "decoder error: " + e.msg);
    } catch (const std::bad_alloc &) {
        return Error("not enough memory to decode the image");
    } catch (const std::exception &e) {
        return undecodable(header, nameForMessages, std::string("decoder error: ") + e.what());
    }
}

Result<DecodedImage> decodeImageFile(const std::string &path, const DecodeLimits &limits)
{
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::file_status st = fs::status(path, ec);
    if (st.type() == fs::file_type::not_found)
        return Error("file not found");
    if (ec)
        return Error("file cannot be accessed (" + ec.message() + ")");
    if (st.type() == fs::file_type::directory)
        return Error("is a folder, not an image file");

    std::ifstream in(path, std::ios::binary);
    if (!in) {
        const int err = errno;
        return Error(std::string("file cannot be opened for reading")
                     + (err != 0 ? " (" + std::string(std::strerror(err)) + ")" : std::string()));
    }

    // Sizing via seekg rather than fs::file_size also works for special files that report 0.
    in.seekg(0, std::ios::end);
    const std::streamoff size = in.tellg();
    if (size < 0)
        return Error("file size cannot be determined");
    if (size == 0)
        return Error("file is empty (0 bytes)");
    if (int64_t(size) > limits.maxFileBytes) {
        return Error("file is " + std::to_string(int64_t(size)) + " bytes; at most "
                     + std::to_string(limits.maxFileBytes) + " bytes are supported");
    }
    in.seekg(0, std::ios::beg);

    std::vector<uint8_t> bytes;
    try {
        bytes.resize(size_t(size));
    } catch (const std::exception &) {
        return Error("not enough memory to read the file (" + std::to_string(int64_t(size))
                     + " bytes)");
    }
    in.read(reinterpret_cast<char *>(bytes.data()), size);
    if (in.gcount() != size)
        return Error("file could not be read completely (read error or file changed while reading)");

    return decodeImageBuffer(bytes, path, limits);
}

} // namespace cytosae::imaging
