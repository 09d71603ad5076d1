#include "imaging/ImageDecoder.h"

#include <QByteArray>
#include <QDir>
#include <QFile>
#include <QTemporaryDir>
#include <QtTest>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include <cstdint>
#include <cstdio>
#include <fcntl.h>
#include <unistd.h>
#include <cstdlib>
#include <string>
#include <vector>

using cytosae::imaging::DecodedImage;
using cytosae::imaging::DecodeLimits;
using cytosae::imaging::decodeImageBuffer;
using cytosae::imaging::decodeImageFile;

namespace {

bool containsNote(const DecodedImage &img, const std::string &needle)
{
    for (const auto &n : img.info.notes) {
        if (n.find(needle) != std::string::npos)
            return true;
    }
    return false;
}

std::vector<uint8_t> readAll(const QString &path)
{
    QFile f(path);
    if (!f.open(QIODevice::ReadOnly))
        return {};
    const QByteArray b = f.readAll();
    return std::vector<uint8_t>(b.begin(), b.end());
}

bool writeAll(const QString &path, const QByteArray &bytes)
{
    QFile f(path);
    if (!f.open(QIODevice::WriteOnly | QIODevice::Truncate))
        return false;
    return f.write(bytes) == bytes.size();
}

QByteArray toQByteArray(const std::vector<uint8_t> &v)
{
    return QByteArray(reinterpret_cast<const char *>(v.data()), qsizetype(v.size()));
}

// cv::imwrite cannot produce grey+alpha or palette PNGs, so those are assembled by hand.
uint32_t pngCrc(const QByteArray &data)
{
    uint32_t crc = 0xFFFFFFFFu;
    for (char ch : data) {
        crc ^= static_cast<uint8_t>(ch);
        for (int k = 0; k < 8; ++k)
            crc = (crc & 1u) ? (0xEDB88320u ^ (crc >> 1)) : (crc >> 1);
    }
    return crc ^ 0xFFFFFFFFu;
}

void appendBe32(QByteArray &out, uint32_t v)
{
    out.append(char(v >> 24)).append(char(v >> 16)).append(char(v >> 8)).append(char(v));
}

QByteArray pngChunk(const char *type, const QByteArray &data)
{
    QByteArray out;
    appendBe32(out, uint32_t(data.size()));
    QByteArray typed(type, 4);
    typed += data;
    out += typed;
    appendBe32(out, pngCrc(typed));
    return out;
}

// rows: raw scanlines, each already prefixed with its filter byte (0 = none).
QByteArray makePng(int w, int h, int bitDepth, int colourType, const QByteArray &rows,
                   const QByteArray &chunksBeforeIdat = {})
{
    QByteArray ihdr;
    appendBe32(ihdr, uint32_t(w));
    appendBe32(ihdr, uint32_t(h));
    ihdr.append(char(bitDepth)).append(char(colourType)).append('\0').append('\0').append('\0');
    // qCompress prefixes a 4-byte length to an ordinary zlib stream, which is what IDAT holds.
    const QByteArray zlib = qCompress(rows).mid(4);
    return QByteArray("\x89PNG\r\n\x1a\n", 8) + pngChunk("IHDR", ihdr) + chunksBeforeIdat
        + pngChunk("IDAT", zlib) + pngChunk("IEND", {});
}

// Rewrites the value of a SHORT or LONG tag in the first IFD of a little-endian TIFF.
bool patchTiffTag(QByteArray &tif, uint16_t tag, uint32_t value)
{
    auto u16 = [&](int at) { return uint32_t(uint8_t(tif[at])) | (uint32_t(uint8_t(tif[at + 1])) << 8); };
    const int ifd = int(u16(4) | (u16(6) << 16));
    const int entries = int(u16(ifd));
    for (int i = 0; i < entries; ++i) {
        const int e = ifd + 2 + i * 12;
        if (u16(e) != tag)
            continue;
        const uint32_t type = u16(e + 2);
        if (type == 3 && value > 0xFFFF) {
            // Widen to LONG so the value fits.
            tif[e + 2] = 4;
            tif[e + 3] = 0;
        } else if (type != 3 && type != 4) {
            return false;
        }
        for (int k = 0; k < 4; ++k)
            tif[e + 8 + k] = char((value >> (8 * k)) & 0xFF);
        return true;
    }
    return false;
}

uint8_t expected16To8(uint16_t v)
{
    return uint8_t((uint32_t(v) * 255u + 32767u) / 65535u);
}

} // namespace

class TestImageDecoder : public QObject {
    Q_OBJECT

private slots:
    void initTestCase();

    void rgbPng8ExactPixels();
    void greyPngReplicated();
    void rgbaPngAlphaDroppedColourUntouched();
    void greyAlphaPngHandMade();
    void palettePngHandMade();
    void png16BitScaled();
    void tinyImagesRejected();
    void maxPixelsLimit();
    void fuzzRegressionHugeHeaderAndOtherFormats();
    void maxFileBytesLimit();
    void zeroByteFile();
    void truncatedPngAndJpeg();
    void textFileNamedPng();
    void missingFileAndFolder();
    void jpegDecodes();
    void jpegExifOrientationIgnored();
    void bmpDecodes();
    void tiffDecodes();
    void floatTiffRejected();
    void decodeBufferMatchesFile();
    void truncatedTiffMessagesGoIntoTheReason();

private:
    QString path(const QString &name) const { return m_dir.filePath(name); }
    std::string spath(const QString &name) const { return path(name).toStdString(); }

    QTemporaryDir m_dir;
    cv::Mat m_bgr; // 16x15 pattern shared by the lossless format tests
};

void TestImageDecoder::initTestCase()
{
    QVERIFY(m_dir.isValid());
    m_bgr.create(15, 16, CV_8UC3);
    for (int y = 0; y < m_bgr.rows; ++y) {
        for (int x = 0; x < m_bgr.cols; ++x) {
            // Distinct values per channel so a swapped channel order cannot go unnoticed.
            m_bgr.at<cv::Vec3b>(y, x) = cv::Vec3b(uint8_t(x * 7 + 1), uint8_t(y * 11 + 2),
                                                  uint8_t(200 + ((x + y) % 50)));
        }
    }
}

static void verifyMatchesBgr(const cv::Mat &bgr, const DecodedImage &img)
{
    QCOMPARE(img.image.width, bgr.cols);
    QCOMPARE(img.image.height, bgr.rows);
    QCOMPARE(img.image.pixels.size(), size_t(bgr.cols * bgr.rows * 3));
    for (int y = 0; y < bgr.rows; ++y) {
        for (int x = 0; x < bgr.cols; ++x) {
            const cv::Vec3b p = bgr.at<cv::Vec3b>(y, x);
            const size_t i = (size_t(y) * size_t(bgr.cols) + size_t(x)) * 3;
            QCOMPARE(img.image.pixels[i + 0], p[2]);
            QCOMPARE(img.image.pixels[i + 1], p[1]);
            QCOMPARE(img.image.pixels[i + 2], p[0]);
        }
    }
}

void TestImageDecoder::rgbPng8ExactPixels()
{
    QVERIFY(cv::imwrite(spath("rgb.png"), m_bgr));
    auto res = decodeImageFile(spath("rgb.png"));
    QVERIFY2(res.ok(), res.message().c_str());
    verifyMatchesBgr(m_bgr, *res);
    // Spot-check one pixel by literal value as well: (x=3, y=2) is B=22, G=24, R=205.
    const size_t i = (2 * 16 + 3) * 3;
    QCOMPARE(int(res->image.pixels[i]), 205);
    QCOMPARE(int(res->image.pixels[i + 1]), 24);
    QCOMPARE(int(res->image.pixels[i + 2]), 22);
    QCOMPARE(res->info.sourceChannels, 3);
    QCOMPARE(res->info.sourceBitDepth, 8);
    QVERIFY(res->info.notes.empty());
}

void TestImageDecoder::greyPngReplicated()
{
    cv::Mat grey(20, 17, CV_8UC1);
    for (int y = 0; y < grey.rows; ++y)
        for (int x = 0; x < grey.cols; ++x)
            grey.at<uint8_t>(y, x) = uint8_t((x * 13 + y * 5) % 256);
    QVERIFY(cv::imwrite(spath("grey.png"), grey));

    auto res = decodeImageFile(spath("grey.png"));
    QVERIFY2(res.ok(), res.message().c_str());
    QCOMPARE(res->image.width, 17);
    QCOMPARE(res->image.height, 20);
    for (int y = 0; y < grey.rows; ++y) {
        for (int x = 0; x < grey.cols; ++x) {
            const size_t i = (size_t(y) * 17 + size_t(x)) * 3;
            const uint8_t g = grey.at<uint8_t>(y, x);
            QCOMPARE(res->image.pixels[i], g);
            QCOMPARE(res->image.pixels[i + 1], g);
            QCOMPARE(res->image.pixels[i + 2], g);
        }
    }
    QCOMPARE(res->info.sourceChannels, 1);
    QCOMPARE(res->info.sourceBitDepth, 8);
    QVERIFY(containsNote(*res, "greyscale replicated to RGB"));
}

void TestImageDecoder::rgbaPngAlphaDroppedColourUntouched()
{
    cv::Mat bgra(15, 16, CV_8UC4);
    for (int y = 0; y < bgra.rows; ++y) {
        for (int x = 0; x < bgra.cols; ++x) {
            const cv::Vec3b c = m_bgr.at<cv::Vec3b>(y, x);
            // Includes fully transparent pixels: compositing onto white or black would change them.
            const uint8_t alpha = uint8_t((x % 3 == 0) ? 0 : (x % 3 == 1 ? 128 : 255));
            bgra.at<cv::Vec4b>(y, x) = cv::Vec4b(c[0], c[1], c[2], alpha);
        }
    }
    QVERIFY(cv::imwrite(spath("rgba.png"), bgra));

    auto res = decodeImageFile(spath("rgba.png"));
    QVERIFY2(res.ok(), res.message().c_str());
    verifyMatchesBgr(m_bgr, *res);
    QCOMPARE(res->info.sourceChannels, 4);
    QVERIFY(containsNote(*res, "alpha channel dropped"));
    QVERIFY(!containsNote(*res, "greyscale"));
}

void TestImageDecoder::greyAlphaPngHandMade()
{
    const int w = 14, h = 14;
    QByteArray rows;
    for (int y = 0; y < h; ++y) {
        rows.append('\0');
        for (int x = 0; x < w; ++x) {
            rows.append(char(uint8_t(x * 18 + y)));      // grey
            rows.append(char(uint8_t(x % 2 ? 0 : 255))); // alpha
        }
    }
    const QByteArray png = makePng(w, h, 8, 4, rows);
    QVERIFY(writeAll(path("ga.png"), png));

    auto res = decodeImageFile(spath("ga.png"));
    QVERIFY2(res.ok(), res.message().c_str());
    QCOMPARE(res->image.width, w);
    QCOMPARE(res->image.height, h);
    for (int y = 0; y < h; ++y) {
        for (int x = 0; x < w; ++x) {
            const size_t i = (size_t(y) * w + size_t(x)) * 3;
            const uint8_t g = uint8_t(x * 18 + y);
            QCOMPARE(res->image.pixels[i], g);
            QCOMPARE(res->image.pixels[i + 1], g);
            QCOMPARE(res->image.pixels[i + 2], g);
        }
    }
    // OpenCV hands grey+alpha over as BGRA; the PNG header is what reveals the true layout.
    QCOMPARE(res->info.sourceChannels, 2);
    QVERIFY(containsNote(*res, "alpha channel dropped"));
    QVERIFY(containsNote(*res, "greyscale replicated to RGB"));
}

void TestImageDecoder::palettePngHandMade()
{
    const int w = 16, h = 14;
    const QByteArray plte("\xFF\x00\x00" "\x00\x80\x00" "\x10\x20\xF0", 9);
    QByteArray rows;
    for (int y = 0; y < h; ++y) {
        rows.append('\0');
        for (int x = 0; x < w; ++x)
            rows.append(char((x + y) % 3));
    }
    QVERIFY(writeAll(path("palette.png"), makePng(w, h, 8, 3, rows, pngChunk("PLTE", plte))));

    auto res = decodeImageFile(spath("palette.png"));
    QVERIFY2(res.ok(), res.message().c_str());
    for (int y = 0; y < h; ++y) {
        for (int x = 0; x < w; ++x) {
            const int idx = (x + y) % 3;
            const size_t i = (size_t(y) * w + size_t(x)) * 3;
            QCOMPARE(res->image.pixels[i], uint8_t(plte[idx * 3]));
            QCOMPARE(res->image.pixels[i + 1], uint8_t(plte[idx * 3 + 1]));
            QCOMPARE(res->image.pixels[i + 2], uint8_t(plte[idx * 3 + 2]));
        }
    }
    QVERIFY(containsNote(*res, "palette"));
}

void TestImageDecoder::png16BitScaled()
{
    const std::vector<uint16_t> samples = {0, 128, 129, 257, 25700, 32768, 65280, 65534, 65535, 1000};
    cv::Mat colour(14, 14, CV_16UC3);
    cv::Mat grey(14, 14, CV_16UC1);
    for (int y = 0; y < 14; ++y) {
        for (int x = 0; x < 14; ++x) {
            const uint16_t b = samples[size_t(x) % samples.size()];
            const uint16_t g = samples[size_t(y) % samples.size()];
            const uint16_t r = samples[size_t(x + y) % samples.size()];
            colour.at<cv::Vec3w>(y, x) = cv::Vec3w(b, g, r);
            grey.at<uint16_t>(y, x) = r;
        }
    }
    QVERIFY(cv::imwrite(spath("c16.png"), colour));
    QVERIFY(cv::imwrite(spath("g16.png"), grey));

    auto c = decodeImageFile(spath("c16.png"));
    QVERIFY2(c.ok(), c.message().c_str());
    QCOMPARE(c->info.sourceBitDepth, 16);
    QCOMPARE(c->info.sourceChannels, 3);
    QVERIFY(containsNote(*c, "16-bit image scaled to 8 bits"));
    for (int y = 0; y < 14; ++y) {
        for (int x = 0; x < 14; ++x) {
            const cv::Vec3w p = colour.at<cv::Vec3w>(y, x);
            const size_t i = (size_t(y) * 14 + size_t(x)) * 3;
            QCOMPARE(c->image.pixels[i], expected16To8(p[2]));
            QCOMPARE(c->image.pixels[i + 1], expected16To8(p[1]));
            QCOMPARE(c->image.pixels[i + 2], expected16To8(p[0]));
        }
    }
    // The formula itself, pinned with literal values (rounding, not truncation by >> 8).
    QCOMPARE(int(expected16To8(0)), 0);
    QCOMPARE(int(expected16To8(128)), 0);
    QCOMPARE(int(expected16To8(129)), 1);
    QCOMPARE(int(expected16To8(257)), 1);
    QCOMPARE(int(expected16To8(25700)), 100);
    QCOMPARE(int(expected16To8(32768)), 128);
    QCOMPARE(int(expected16To8(65280)), 254);
    QCOMPARE(int(expected16To8(65535)), 255);
    // Pixel (0,0): B=0, G=0, R=0; pixel (x=8,y=0): B=65535 -> 255, G=0, R=65535 -> 255.
    QCOMPARE(int(c->image.pixels[0]), 0);
    QCOMPARE(int(c->image.pixels[8 * 3 + 0]), 255);
    QCOMPARE(int(c->image.pixels[8 * 3 + 1]), 0);
    QCOMPARE(int(c->image.pixels[8 * 3 + 2]), 255);
    // Pixel (x=6,y=0): R = samples[6] = 65280 -> 254 (>> 8 would give 255).
    QCOMPARE(int(c->image.pixels[6 * 3 + 0]), 254);

    auto g = decodeImageFile(spath("g16.png"));
    QVERIFY2(g.ok(), g.message().c_str());
    QCOMPARE(g->info.sourceBitDepth, 16);
    QCOMPARE(g->info.sourceChannels, 1);
    QVERIFY(containsNote(*g, "greyscale replicated to RGB"));
    for (int y = 0; y < 14; ++y) {
        for (int x = 0; x < 14; ++x) {
            const uint8_t v = expected16To8(grey.at<uint16_t>(y, x));
            const size_t i = (size_t(y) * 14 + size_t(x)) * 3;
            QCOMPARE(g->image.pixels[i], v);
            QCOMPARE(g->image.pixels[i + 1], v);
            QCOMPARE(g->image.pixels[i + 2], v);
        }
    }
}

void TestImageDecoder::tinyImagesRejected()
{
    QVERIFY(cv::imwrite(spath("one.png"), cv::Mat(1, 1, CV_8UC3, cv::Scalar(1, 2, 3))));
    auto one = decodeImageFile(spath("one.png"));
    QVERIFY(!one.ok());
    QCOMPARE(one.message(), std::string("image is 1x1 pixels; at least 14x14 is needed (one ViT patch)"));

    QVERIFY(cv::imwrite(spath("narrow.png"), cv::Mat(40, 13, CV_8UC3, cv::Scalar(1, 2, 3))));
    auto narrow = decodeImageFile(spath("narrow.png"));
    QVERIFY(!narrow.ok());
    QVERIFY2(narrow.message().find("13x40") != std::string::npos, narrow.message().c_str());

    // Same check on a format whose size is only known after decoding.
    QVERIFY(cv::imwrite(spath("one.tif"), cv::Mat(1, 1, CV_8UC3, cv::Scalar(1, 2, 3))));
    auto oneTif = decodeImageFile(spath("one.tif"));
    QVERIFY(!oneTif.ok());
    QVERIFY2(oneTif.message().find("1x1") != std::string::npos, oneTif.message().c_str());

    QVERIFY(cv::imwrite(spath("exact.png"), cv::Mat(14, 14, CV_8UC3, cv::Scalar(1, 2, 3))));
    auto exact = decodeImageFile(spath("exact.png"));
    QVERIFY2(exact.ok(), exact.message().c_str());
    QCOMPARE(int(exact->image.pixels[0]), 3);

    DecodeLimits smallOk;
    smallOk.minSide = 1;
    auto oneAllowed = decodeImageFile(spath("one.png"), smallOk);
    QVERIFY2(oneAllowed.ok(), oneAllowed.message().c_str());
    QCOMPARE(oneAllowed->image.pixels, (std::vector<uint8_t>{3, 2, 1}));
}

void TestImageDecoder::maxPixelsLimit()
{
    QVERIFY(cv::imwrite(spath("20x20.png"), cv::Mat(20, 20, CV_8UC3, cv::Scalar(9, 9, 9))));
    QVERIFY(cv::imwrite(spath("20x20.tif"), cv::Mat(20, 20, CV_8UC3, cv::Scalar(9, 9, 9))));
    DecodeLimits limits;
    limits.maxPixels = 399;
    for (const char *name : {"20x20.png", "20x20.tif"}) {
        auto res = decodeImageFile(spath(name), limits);
        QVERIFY(!res.ok());
        QVERIFY2(res.message().find("20x20") != std::string::npos, res.message().c_str());
        QVERIFY2(res.message().find("at most 399 pixels") != std::string::npos, res.message().c_str());
    }
    limits.maxPixels = 400;
    auto ok = decodeImageFile(spath("20x20.png"), limits);
    QVERIFY2(ok.ok(), ok.message().c_str());
    QCOMPARE(ok->image.pixels.size(), size_t(1200));

    // A header claiming a whole-slide-sized TIFF is refused from the header alone; the
    // decoder would fail differently (or try to allocate) if it got that far.
    QByteArray tif = toQByteArray(readAll(path("20x20.tif")));
    QVERIFY(tif.startsWith(QByteArray("II*\0", 4)));
    QVERIFY(patchTiffTag(tif, 256, 100000));
    QVERIFY(patchTiffTag(tif, 257, 90000));
    auto huge = decodeImageBuffer(std::vector<uint8_t>(tif.begin(), tif.end()), "huge.tif");
    QVERIFY(!huge.ok());
    QCOMPARE(huge.message(),
             std::string("image is 100000x90000 pixels (9000.0 megapixels); at most 100.0 megapixels are supported"));
}

// Found by tests/fuzz/fuzz_image: a PNG header stating 3267371040 x 3265175198 overflowed the
// pixel-count product (undefined behaviour). Also: formats outside PNG/JPEG/TIFF/BMP never
// reach OpenCV's other codecs.
void TestImageDecoder::fuzzRegressionHugeHeaderAndOtherFormats()
{
    cv::Mat small(20, 20, CV_8UC3, cv::Scalar(1, 2, 3));
    std::vector<uint8_t> png;
    QVERIFY(cv::imencode(".png", small, png));
    auto be32 = [&](size_t at, uint32_t v) {
        png[at] = uint8_t(v >> 24);
        png[at + 1] = uint8_t(v >> 16);
        png[at + 2] = uint8_t(v >> 8);
        png[at + 3] = uint8_t(v);
    };
    be32(16, 3267371040u);
    be32(20, 3265175198u);
    auto huge = cytosae::imaging::decodeImageBuffer(png, "huge.png");
    QVERIFY(!huge.ok());
    QVERIFY2(huge.message().find("at most") != std::string::npos, huge.message().c_str());

    const std::vector<uint8_t> jp2 = {0x00, 0x00, 0x00, 0x0C, 'j', 'P', ' ', ' ', 0x0D, 0x0A, 0x87, 0x0A, 0, 0, 0, 0};
    auto j = cytosae::imaging::decodeImageBuffer(jp2, "cell.jp2");
    QVERIFY(!j.ok());
    QVERIFY2(j.message().find("not a decodable image") != std::string::npos, j.message().c_str());
    std::vector<uint8_t> webp = {'R', 'I', 'F', 'F', 0, 0, 0, 0, 'W', 'E', 'B', 'P', 'V', 'P', '8', ' '};
    auto w = cytosae::imaging::decodeImageBuffer(webp, "cell.webp");
    QVERIFY(!w.ok());
    QVERIFY2(w.message().find("WebP files are not supported") != std::string::npos, w.message().c_str());
    // A PNG without its IHDR size: refused before decoding, not sized by the decoder.
    std::vector<uint8_t> noIhdr(png.begin(), png.begin() + 8);
    noIhdr.insert(noIhdr.end(), 40, 0);
    auto n = cytosae::imaging::decodeImageBuffer(noIhdr, "x.png");
    QVERIFY(!n.ok());
}

void TestImageDecoder::maxFileBytesLimit()
{
    QVERIFY(cv::imwrite(spath("lim.png"), m_bgr));
    const auto size = int64_t(readAll(path("lim.png")).size());
    DecodeLimits limits;
    limits.maxFileBytes = size - 1;
    auto res = decodeImageFile(spath("lim.png"), limits);
    QVERIFY(!res.ok());
    QVERIFY2(res.message().find("bytes") != std::string::npos, res.message().c_str());
    limits.maxFileBytes = size;
    auto ok = decodeImageFile(spath("lim.png"), limits);
    QVERIFY2(ok.ok(), ok.message().c_str());
}

void TestImageDecoder::zeroByteFile()
{
    QVERIFY(writeAll(path("empty.png"), {}));
    auto res = decodeImageFile(spath("empty.png"));
    QVERIFY(!res.ok());
    QCOMPARE(res.message(), std::string("file is empty (0 bytes)"));

    auto buf = decodeImageBuffer({}, "empty.png");
    QVERIFY(!buf.ok());
    QCOMPARE(buf.message(), std::string("file is empty (0 bytes)"));
}

void TestImageDecoder::truncatedPngAndJpeg()
{
    // Noise compresses badly, so the cut lands in the middle of the IDAT data.
    cv::Mat noise(64, 64, CV_8UC3);
    cv::randu(noise, cv::Scalar::all(0), cv::Scalar::all(256));
    QVERIFY(cv::imwrite(spath("full.png"), noise));
    const std::vector<uint8_t> full = readAll(path("full.png"));
    QVERIFY(full.size() > 10000);
    const std::vector<uint8_t> half(full.begin(), full.begin() + long(full.size() / 2));
    QVERIFY(writeAll(path("half.png"), toQByteArray(half)));

    // Observed with OpenCV 4.6 / libpng 1.6: libpng stops with "PNG input buffer is
    // incomplete" (printed to stderr by OpenCV) and imdecode returns an empty Mat rather
    // than a partial image, so the file is rejected.
    auto res = decodeImageFile(spath("half.png"));
    QVERIFY(!res.ok());
    QVERIFY2(res.message().rfind("not a decodable image", 0) == 0, res.message().c_str());
    QVERIFY2(res.message().find("starts like a PNG") != std::string::npos, res.message().c_str());
    QVERIFY2(res.message().find("truncated") != std::string::npos, res.message().c_str());

    // libjpeg would silently fill a cut-off JPEG with grey; the decoder must refuse it
    // (as Pillow does with "image file is truncated").
    std::vector<uint8_t> jpg;
    QVERIFY(cv::imencode(".jpg", noise, jpg));
    const std::vector<uint8_t> halfJpg(jpg.begin(), jpg.begin() + long(jpg.size() / 2));
    auto jres = decodeImageBuffer(halfJpg, "half.jpg");
    QVERIFY(!jres.ok());
    QVERIFY2(jres.message().find("end-of-image marker") != std::string::npos, jres.message().c_str());
    // Bytes after the end-of-image marker (camera trailers) are harmless.
    std::vector<uint8_t> trailer = jpg;
    trailer.insert(trailer.end(), {'t', 'r', 'a', 'i', 'l', 0xFF, 0x00});
    auto tres = decodeImageBuffer(trailer, "trailer.jpg");
    QVERIFY2(tres.ok(), tres.message().c_str());
    QCOMPARE(tres->image.width, 64);

    // Cutting inside the signature leaves nothing recognisable.
    const std::vector<uint8_t> tiny(full.begin(), full.begin() + 5);
    auto tinyRes = decodeImageBuffer(tiny, "tiny.png");
    QVERIFY(!tinyRes.ok());
    QVERIFY2(tinyRes.message().rfind("not a decodable image", 0) == 0, tinyRes.message().c_str());
}

void TestImageDecoder::textFileNamedPng()
{
    QVERIFY(writeAll(path("notes.png"), "This is a text file, not an image.\n"));
    auto res = decodeImageFile(spath("notes.png"));
    QVERIFY(!res.ok());
    QVERIFY2(res.message().rfind("not a decodable image (PNG/JPEG/TIFF/BMP expected)", 0) == 0,
             res.message().c_str());
    QVERIFY2(res.message().find(".png") != std::string::npos, res.message().c_str());
    // The caller adds the path; the decoder must not.
    QVERIFY(res.message().find(m_dir.path().toStdString()) == std::string::npos);
}

void TestImageDecoder::missingFileAndFolder()
{
    auto res = decodeImageFile(spath("does-not-exist.png"));
    QVERIFY(!res.ok());
    QCOMPARE(res.message(), std::string("file not found"));
    QCOMPARE(res.error().withContext("x.png").message(), std::string("x.png: file not found"));

    QVERIFY(QDir(m_dir.path()).mkdir("folder.png"));
    auto dir = decodeImageFile(spath("folder.png"));
    QVERIFY(!dir.ok());
    QVERIFY2(dir.message().find("folder") != std::string::npos, dir.message().c_str());
}

void TestImageDecoder::jpegDecodes()
{
    // Flat colour: JPEG is lossy, but a uniform block survives almost exactly.
    const cv::Mat flat(24, 32, CV_8UC3, cv::Scalar(30, 60, 200)); // B, G, R
    QVERIFY(cv::imwrite(spath("flat.jpg"), flat, {cv::IMWRITE_JPEG_QUALITY, 95}));
    auto res = decodeImageFile(spath("flat.jpg"));
    QVERIFY2(res.ok(), res.message().c_str());
    QCOMPARE(res->image.width, 32);
    QCOMPARE(res->image.height, 24);
    QCOMPARE(res->info.sourceChannels, 3);
    for (size_t i = 0; i < res->image.pixels.size(); i += 3) {
        QVERIFY(std::abs(int(res->image.pixels[i]) - 200) <= 3);
        QVERIFY(std::abs(int(res->image.pixels[i + 1]) - 60) <= 3);
        QVERIFY(std::abs(int(res->image.pixels[i + 2]) - 30) <= 3);
    }

    const cv::Mat greyFlat(16, 16, CV_8UC1, cv::Scalar(77));
    QVERIFY(cv::imwrite(spath("grey.jpg"), greyFlat));
    auto grey = decodeImageFile(spath("grey.jpg"));
    QVERIFY2(grey.ok(), grey.message().c_str());
    QCOMPARE(grey->info.sourceChannels, 1);
    QVERIFY(std::abs(int(grey->image.pixels[0]) - 77) <= 1);
    QCOMPARE(grey->image.pixels[0], grey->image.pixels[1]);
    QCOMPARE(grey->image.pixels[0], grey->image.pixels[2]);
}

void TestImageDecoder::jpegExifOrientationIgnored()
{
    cv::Mat wide(16, 32, CV_8UC3, cv::Scalar(10, 20, 30));
    std::vector<uint8_t> jpg;
    QVERIFY(cv::imencode(".jpg", wide, jpg));
    QCOMPARE(int(jpg[0]), 0xFF);
    QCOMPARE(int(jpg[1]), 0xD8);

    // APP1 "Exif" segment holding a one-entry IFD: Orientation (0x0112) = 6, i.e. "rotate 90".
    const QByteArray tiff("II*\0\x08\0\0\0"          // little-endian TIFF header, IFD at 8
                          "\x01\0"                   // one entry
                          "\x12\x01\x03\0\x01\0\0\0" // tag 0x0112, SHORT, count 1
                          "\x06\0\0\0"               // value 6
                          "\0\0\0\0",                // no next IFD
                          26);
    const QByteArray payload = QByteArray("Exif\0\0", 6) + tiff;
    QByteArray app1("\xFF\xE1", 2);
    const int len = int(payload.size()) + 2;
    app1.append(char(len >> 8)).append(char(len & 0xFF)).append(payload);
    QByteArray withExif = toQByteArray(jpg);
    withExif.insert(2, app1);
    QVERIFY(writeAll(path("rotated.jpg"), withExif));

    // Proves the test input really carries a rotation that OpenCV would otherwise apply.
    const cv::Mat applied = cv::imread(spath("rotated.jpg"), cv::IMREAD_COLOR);
    QCOMPARE(applied.cols, 16);
    QCOMPARE(applied.rows, 32);

    auto res = decodeImageFile(spath("rotated.jpg"));
    QVERIFY2(res.ok(), res.message().c_str());
    QCOMPARE(res->image.width, 32);
    QCOMPARE(res->image.height, 16);
}

void TestImageDecoder::bmpDecodes()
{
    QVERIFY(cv::imwrite(spath("img.bmp"), m_bgr));
    auto res = decodeImageFile(spath("img.bmp"));
    QVERIFY2(res.ok(), res.message().c_str());
    verifyMatchesBgr(m_bgr, *res);
}

void TestImageDecoder::tiffDecodes()
{
    QVERIFY(cv::imwrite(spath("img.tif"), m_bgr));
    auto res = decodeImageFile(spath("img.tif"));
    QVERIFY2(res.ok(), res.message().c_str());
    verifyMatchesBgr(m_bgr, *res);
    QCOMPARE(res->info.sourceBitDepth, 8);

    cv::Mat deep(14, 15, CV_16UC3, cv::Scalar(65535, 32768, 257));
    QVERIFY(cv::imwrite(spath("deep.tif"), deep));
    auto d = decodeImageFile(spath("deep.tif"));
    QVERIFY2(d.ok(), d.message().c_str());
    QCOMPARE(d->info.sourceBitDepth, 16);
    QCOMPARE(int(d->image.pixels[0]), 1);   // R = 257
    QCOMPARE(int(d->image.pixels[1]), 128); // G = 32768
    QCOMPARE(int(d->image.pixels[2]), 255); // B = 65535
}

void TestImageDecoder::floatTiffRejected()
{
    cv::Mat f(16, 16, CV_32FC3, cv::Scalar(0.25, 0.5, 0.75));
    QVERIFY(cv::imwrite(spath("float.tif"), f));
    auto res = decodeImageFile(spath("float.tif"));
    QVERIFY(!res.ok());
    QVERIFY2(res.message().find("32-bit floating-point") != std::string::npos, res.message().c_str());
}

void TestImageDecoder::decodeBufferMatchesFile()
{
    QVERIFY(cv::imwrite(spath("buf.png"), m_bgr));
    auto fromFile = decodeImageFile(spath("buf.png"));
    auto fromBuf = decodeImageBuffer(readAll(path("buf.png")), "buf.png");
    QVERIFY2(fromFile.ok(), fromFile.message().c_str());
    QVERIFY2(fromBuf.ok(), fromBuf.message().c_str());
    QCOMPARE(fromBuf->image.pixels, fromFile->image.pixels);
    verifyMatchesBgr(m_bgr, *fromBuf);
}

// A baseline TIFF (IFD first, uncompressed RGB strips after it) cut off in its pixel data: the
// header is valid, so the codec runs and fails. OpenCV prints its complaint on std::cerr;
// it must end up in the reason, and nothing may reach the terminal (fd 2).
static QByteArray baselineTiff(int w, int h, int rowsPerStrip)
{
    const int strips = (h + rowsPerStrip - 1) / rowsPerStrip, entries = 11;
    const uint32_t offsetsAt = 8 + 2 + entries * 12 + 4, countsAt = offsetsAt + 4 * strips,
                   bpsAt = countsAt + 4 * strips, dataAt = bpsAt + 6, stripBytes = uint32_t(w * 3 * rowsPerStrip);
    QByteArray out("II*\0", 4);
    auto u16 = [&](uint16_t v) { out.append(char(v & 0xff)).append(char(v >> 8)); };
    auto u32 = [&](uint32_t v) { u16(uint16_t(v & 0xffff)); u16(uint16_t(v >> 16)); };
    auto shortEntry = [&](uint16_t tag, uint16_t v) { u16(tag); u16(3); u32(1); u16(v); u16(0); };
    auto longEntry = [&](uint16_t tag, uint16_t type, uint32_t count, uint32_t v) { u16(tag); u16(type); u32(count); u32(v); };
    u32(8);
    u16(entries);
    shortEntry(256, uint16_t(w));
    shortEntry(257, uint16_t(h));
    longEntry(258, 3, 3, bpsAt);
    shortEntry(259, 1);
    shortEntry(262, 2);
    longEntry(273, 4, uint32_t(strips), offsetsAt);
    shortEntry(277, 3);
    shortEntry(278, uint16_t(rowsPerStrip));
    longEntry(279, 4, uint32_t(strips), countsAt);
    shortEntry(284, 1);
    shortEntry(339, 1);
    u32(0);
    for (int i = 0; i < strips; ++i)
        u32(dataAt + uint32_t(i) * stripBytes);
    for (int i = 0; i < strips; ++i)
        u32(stripBytes);
    u16(8); u16(8); u16(8);
    for (int i = 0; i < w * h * 3; ++i)
        out.append(char((i * 7) & 0xff));
    return out;
}

void TestImageDecoder::truncatedTiffMessagesGoIntoTheReason()
{
    const QByteArray whole = baselineTiff(300, 200, 20);
    const std::vector<uint8_t> full(whole.begin(), whole.end());
    auto ok = decodeImageBuffer(full, "whole.tif");
    QVERIFY2(ok.ok(), ok.message().c_str());
    QCOMPARE(ok->image.width, 300);

    const std::vector<uint8_t> cut(whole.begin(), whole.begin() + 60000);
    QTemporaryDir dir;
    const QString errPath = dir.filePath("stderr.txt");
    std::fflush(stderr);
    const int saved = dup(2);
    const int file = open(errPath.toLocal8Bit().constData(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    QVERIFY(saved >= 0 && file >= 0);
    dup2(file, 2);
    auto bad = decodeImageBuffer(cut, "cut.tif");
    std::fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(file);
    QVERIFY(!bad.ok());
    QVERIFY2(bad.message().find("TIFF") != std::string::npos, bad.message().c_str());
    QVERIFY2(bad.message().find("decoder: ") != std::string::npos, bad.message().c_str()); // OpenCV's own words
    QFile printed(errPath);
    QVERIFY(printed.open(QIODevice::ReadOnly));
    const QByteArray leaked = printed.readAll();
    QVERIFY2(leaked.isEmpty(), leaked.constData());
}

QTEST_APPLESS_MAIN(TestImageDecoder)
#include "tst_imagedecoder.moc"
