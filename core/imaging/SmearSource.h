#pragma once

// Whole smear fields, read a band of rows at a time so that a 20,000 x 20,000 scan never has
// to be in memory at once.
//
// TIFF (striped or tiled, any layout libtiff's RGBA interface reads: 8/16-bit, grey, RGB,
// palette, most compressions) is read band by band: memory is bounded by the band, whatever
// the field's size. Other formats (PNG, JPEG, BMP) are decoded whole by OpenCV (3 bytes per
// pixel), within DecodeLimits-like bounds.
//
// A SmearSource is used by one thread at a time. Error messages never mention the path:
// callers add it with Error::withContext.

#include "common/Result.h"
#include "imaging/ImageDecoder.h"

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace cytosae::imaging {

struct SmearLimits {
    int64_t maxPixels = 2'000'000'000;          // 44,000 x 44,000; TIFF only
    int64_t maxWholeDecodePixels = 400'000'000; // non-TIFF formats are decoded whole
};

class SmearSource {
public:
    virtual ~SmearSource() = default;
    int width() const { return m_width; }
    int height() const { return m_height; }
    // True when the whole field is in memory (non-TIFF formats).
    virtual bool decodedWhole() const = 0;
    // Rows [y0, y0 + rows) as interleaved RGB8 into out (rows * width * 3 bytes).
    virtual Status readRows(int y0, int rows, uint8_t *out) = 0;

    static Result<std::unique_ptr<SmearSource>> open(const std::string &path, const SmearLimits &limits = {});
    // A field already in memory (tests, generated demo fields); the pixels are copied.
    static std::unique_ptr<SmearSource> fromMemory(RgbImage image);

protected:
    int m_width = 0, m_height = 0;
};

// Writes an 8-bit RGB TIFF strip by strip: fill(y0, rows, out) supplies rows [y0, y0 + rows)
// (rows * width * 3 bytes). Deflate-compressed unless `compress` is false.
Status writeTiffByStrips(const std::string &path, int width, int height,
                         const std::function<void(int y0, int rows, uint8_t *out)> &fill, bool compress = true);

// A downscaled copy of the whole field (longest side <= maxSide), read band by band; stops
// with an error when *cancel becomes true.
Result<RgbImage> readSmearPreview(SmearSource &source, int maxSide, const std::atomic<bool> *cancel = nullptr);

// PNG bytes of an RGB image (for cell crops); empty on failure.
std::vector<uint8_t> encodePng(const RgbImage &image);

} // namespace cytosae::imaging
