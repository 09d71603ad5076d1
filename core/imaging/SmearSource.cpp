#include "imaging/SmearSource.h"

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <tiffio.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <fstream>

namespace cytosae::imaging {

namespace {

bool looksLikeTiff(const std::string &path)
{
    std::ifstream in(path, std::ios::binary);
    char magic[4] = {};
    if (!in.read(magic, 4))
        return false;
    return (magic[0] == 'I' && magic[1] == 'I' && (magic[2] == 42 || magic[2] == 43) && magic[3] == 0) ||
           (magic[0] == 'M' && magic[1] == 'M' && magic[2] == 0 && (magic[3] == 42 || magic[3] == 43));
}

// libtiff reports through handlers; these keep the first error for our message and drop
// warnings (unknown tags and the like are not the user's problem).
int tiffError(TIFF *, void *user, const char *, const char *fmt, va_list ap)
{
    auto *msg = static_cast<std::string *>(user);
    if (msg->empty()) {
        char buf[512];
        std::vsnprintf(buf, sizeof buf, fmt, ap);
        *msg = buf;
    }
    return 1;
}
int tiffWarning(TIFF *, void *, const char *, const char *, va_list)
{
    return 1;
}

TIFF *openTiff(const std::string &path, const char *mode, std::string *errors)
{
    TIFFOpenOptions *opts = TIFFOpenOptionsAlloc();
    TIFFOpenOptionsSetErrorHandlerExtR(opts, tiffError, errors);
    TIFFOpenOptionsSetWarningHandlerExtR(opts, tiffWarning, nullptr);
    TIFF *tif = TIFFOpenExt(path.c_str(), mode, opts);
    TIFFOpenOptionsFree(opts);
    return tif;
}

class TiffSource final : public SmearSource {
public:
    ~TiffSource() override
    {
        if (m_tif)
            TIFFClose(m_tif);
    }

    static Result<std::unique_ptr<SmearSource>> open(const std::string &path, const SmearLimits &limits)
    {
        auto src = std::unique_ptr<TiffSource>(new TiffSource);
        // "m": no memory mapping. A mapped 600 MB file would count in the resident set page by
        // page as it is read (clean page cache, but the number users watch); read() keeps the
        // process at the band it holds.
        src->m_tif = openTiff(path, "rm", src->m_errors.get());
        if (!src->m_tif)
            return Error("cannot read it as TIFF (" + (src->m_errors->empty() ? "open failed" : *src->m_errors) + ")");
        uint32_t w = 0, h = 0;
        TIFFGetField(src->m_tif, TIFFTAG_IMAGEWIDTH, &w);
        TIFFGetField(src->m_tif, TIFFTAG_IMAGELENGTH, &h);
        if (w == 0 || h == 0)
            return Error("TIFF without a width or height");
        if (w > 1'000'000 || h > 1'000'000 || int64_t(w) * int64_t(h) > limits.maxPixels)
            return Error("the field is " + std::to_string(w) + " x " + std::to_string(h) +
                         " pixels, more than the limit of " + std::to_string(limits.maxPixels) + " pixels");
        char emsg[1024] = {};
        if (!TIFFRGBAImageOK(src->m_tif, emsg))
            return Error(std::string("unsupported TIFF layout (") + emsg + ")");
        src->m_width = int(w);
        src->m_height = int(h);
        return std::unique_ptr<SmearSource>(std::move(src));
    }

    bool decodedWhole() const override { return false; }

    Status readRows(int y0, int rows, uint8_t *out) override
    {
        if (y0 < 0 || rows < 0 || y0 + rows > m_height)
            return Error("rows outside the field");
        constexpr int kChunk = 64; // RGBA staging: 4 bytes x width x 64 rows
        m_raster.resize(size_t(m_width) * kChunk);
        for (int y = y0; y < y0 + rows; y += kChunk) {
            const int n = std::min(kChunk, y0 + rows - y);
            char emsg[1024] = {};
            TIFFRGBAImage img;
            if (!TIFFRGBAImageBegin(&img, m_tif, 0, emsg))
                return Error(std::string("cannot read the TIFF (") + emsg + ")");
            img.req_orientation = ORIENTATION_TOPLEFT;
            img.row_offset = y;
            img.col_offset = 0;
            m_errors->clear();
            const int ok = TIFFRGBAImageGet(&img, m_raster.data(), uint32_t(m_width), uint32_t(n));
            TIFFRGBAImageEnd(&img);
            if (!ok)
                return Error("cannot decode rows " + std::to_string(y) + "-" + std::to_string(y + n - 1) + " (" +
                             (m_errors->empty() ? "read error" : *m_errors) + ")");
            uint8_t *dst = out + size_t(y - y0) * size_t(m_width) * 3;
            for (size_t i = 0, count = size_t(m_width) * size_t(n); i < count; ++i) {
                const uint32_t p = m_raster[i];
                dst[i * 3 + 0] = uint8_t(TIFFGetR(p));
                dst[i * 3 + 1] = uint8_t(TIFFGetG(p));
                dst[i * 3 + 2] = uint8_t(TIFFGetB(p));
            }
        }
        return Status::success();
    }

private:
    TiffSource() = default;
    TIFF *m_tif = nullptr;
    std::unique_ptr<std::string> m_errors = std::make_unique<std::string>();
    std::vector<uint32_t> m_raster;
};

class MemorySource final : public SmearSource {
public:
    explicit MemorySource(RgbImage image) : m_image(std::move(image))
    {
        m_width = m_image.width;
        m_height = m_image.height;
    }
    bool decodedWhole() const override { return true; }
    Status readRows(int y0, int rows, uint8_t *out) override
    {
        if (y0 < 0 || rows < 0 || y0 + rows > m_height)
            return Error("rows outside the field");
        std::memcpy(out, m_image.pixels.data() + size_t(y0) * m_width * 3, size_t(rows) * m_width * 3);
        return Status::success();
    }

private:
    RgbImage m_image;
};

} // namespace

Result<std::unique_ptr<SmearSource>> SmearSource::open(const std::string &path, const SmearLimits &limits)
{
    std::ifstream probe(path, std::ios::binary);
    if (!probe)
        return Error("cannot open the file");
    probe.close();
    try {
        if (looksLikeTiff(path))
            return TiffSource::open(path, limits);
        DecodeLimits dl;
        dl.maxPixels = limits.maxWholeDecodePixels;
        dl.maxFileBytes = std::numeric_limits<int64_t>::max();
        auto decoded = decodeImageFile(path, dl);
        if (!decoded)
            return decoded.error();
        return std::unique_ptr<SmearSource>(new MemorySource(std::move(decoded->image)));
    } catch (const std::exception &e) { // cv::Exception, bad_alloc
        return Error(std::string("cannot read the field: ") + e.what());
    }
}

std::unique_ptr<SmearSource> SmearSource::fromMemory(RgbImage image)
{
    return std::make_unique<MemorySource>(std::move(image));
}

Status writeTiffByStrips(const std::string &path, int width, int height,
                         const std::function<void(int, int, uint8_t *)> &fill, bool compress)
{
    if (width <= 0 || height <= 0)
        return Error("empty image");
    std::string errors;
    // BigTIFF ("w8") only when the pixels alone pass 4 GB.
    const bool big = int64_t(width) * height * 3 > (int64_t(1) << 32) - (int64_t(1) << 26);
    TIFF *tif = openTiff(path, big ? "w8" : "w", &errors);
    if (!tif)
        return Error("cannot create the TIFF (" + errors + ")");
    const int rowsPerStrip = 64;
    TIFFSetField(tif, TIFFTAG_IMAGEWIDTH, uint32_t(width));
    TIFFSetField(tif, TIFFTAG_IMAGELENGTH, uint32_t(height));
    TIFFSetField(tif, TIFFTAG_SAMPLESPERPIXEL, 3);
    TIFFSetField(tif, TIFFTAG_BITSPERSAMPLE, 8);
    TIFFSetField(tif, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_RGB);
    TIFFSetField(tif, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
    TIFFSetField(tif, TIFFTAG_ORIENTATION, ORIENTATION_TOPLEFT);
    TIFFSetField(tif, TIFFTAG_ROWSPERSTRIP, uint32_t(rowsPerStrip));
    TIFFSetField(tif, TIFFTAG_COMPRESSION, compress ? COMPRESSION_ADOBE_DEFLATE : COMPRESSION_NONE);
    if (compress)
        TIFFSetField(tif, TIFFTAG_PREDICTOR, PREDICTOR_HORIZONTAL);
    std::vector<uint8_t> strip(size_t(width) * rowsPerStrip * 3);
    for (int y = 0, s = 0; y < height; y += rowsPerStrip, ++s) {
        const int n = std::min(rowsPerStrip, height - y);
        fill(y, n, strip.data());
        if (TIFFWriteEncodedStrip(tif, uint32_t(s), strip.data(), tmsize_t(size_t(width) * n * 3)) < 0) {
            TIFFClose(tif);
            return Error("cannot write the TIFF (" + (errors.empty() ? "write error" : errors) + ")");
        }
    }
    TIFFClose(tif);
    return Status::success();
}

Result<RgbImage> readSmearPreview(SmearSource &source, int maxSide, const std::atomic<bool> *cancel)
{
    const int w = source.width(), h = source.height();
    const double scale = std::min(1.0, double(std::max(1, maxSide)) / std::max(w, h));
    RgbImage out;
    out.width = std::max(1, int(std::lround(w * scale)));
    out.height = std::max(1, int(std::lround(h * scale)));
    out.pixels.resize(size_t(out.width) * out.height * 3);
    cv::Mat dst(out.height, out.width, CV_8UC3, out.pixels.data());
    // Each output row band comes from its own source band (no state across bands).
    const int band = std::max(1, int(std::ceil(256 * scale)));
    std::vector<uint8_t> buf;
    try {
        for (int oy = 0; oy < out.height; oy += band) {
            if (cancel && cancel->load())
                return Error("cancelled");
            const int on = std::min(band, out.height - oy);
            const int sy0 = int(std::floor(oy / scale)), sy1 = std::min(h, int(std::ceil((oy + on) / scale)));
            buf.resize(size_t(w) * size_t(sy1 - sy0) * 3);
            if (Status s = source.readRows(sy0, sy1 - sy0, buf.data()); !s)
                return s.error();
            cv::Mat src(sy1 - sy0, w, CV_8UC3, buf.data());
            cv::Mat part = dst.rowRange(oy, oy + on);
            cv::resize(src, part, part.size(), 0, 0, scale < 1 ? cv::INTER_AREA : cv::INTER_LINEAR);
        }
    } catch (const cv::Exception &e) {
        return Error(std::string("cannot scale the field: ") + e.what());
    }
    return out;
}

std::vector<uint8_t> encodePng(const RgbImage &image)
{
    std::vector<uint8_t> bytes;
    try {
        cv::Mat rgb(image.height, image.width, CV_8UC3, const_cast<uint8_t *>(image.pixels.data()));
        cv::Mat bgr;
        cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
        cv::imencode(".png", bgr, bytes, {cv::IMWRITE_PNG_COMPRESSION, 3});
    } catch (const cv::Exception &) {
        bytes.clear();
    }
    return bytes;
}

} // namespace cytosae::imaging
