#include "model/Preprocess.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace cytosae::model {

namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;

struct Coefficients {
    int kernelSize = 0;
    std::vector<int> bounds; // per output pixel: xmin, count
    std::vector<int> weights; // per output pixel: kernelSize fixed-point weights
};

double triangle(double x)
{
    x = std::fabs(x);
    return x < 1.0 ? 1.0 - x : 0.0;
}

// Pillow's precompute_coeffs + normalize_coeffs_8bpc for the bilinear filter (support 1).
Coefficients computeCoefficients(int inSize, int outSize)
{
    const double scale = double(inSize) / double(outSize);
    const double filterScale = std::max(scale, 1.0);
    const double support = 1.0 * filterScale;
    Coefficients c;
    c.kernelSize = int(std::ceil(support)) * 2 + 1;
    c.bounds.resize(size_t(outSize) * 2);
    c.weights.assign(size_t(outSize) * size_t(c.kernelSize), 0);
    std::vector<double> k(size_t(c.kernelSize));
    for (int xx = 0; xx < outSize; ++xx) {
        const double center = (xx + 0.5) * scale;
        const double ss = 1.0 / filterScale;
        int xmin = int(center - support + 0.5);
        if (xmin < 0)
            xmin = 0;
        int xmax = int(center + support + 0.5);
        if (xmax > inSize)
            xmax = inSize;
        xmax -= xmin;
        double ww = 0.0;
        std::fill(k.begin(), k.end(), 0.0);
        for (int x = 0; x < xmax; ++x) {
            const double w = triangle((x + xmin - center + 0.5) * ss);
            k[size_t(x)] = w;
            ww += w;
        }
        for (int x = 0; x < xmax; ++x)
            if (ww != 0.0)
                k[size_t(x)] /= ww;
        for (int x = 0; x < c.kernelSize; ++x) {
            const double v = k[size_t(x)] * (1 << kPrecisionBits);
            c.weights[size_t(xx) * size_t(c.kernelSize) + size_t(x)] = v < 0 ? int(-0.5 + v) : int(0.5 + v);
        }
        c.bounds[size_t(xx) * 2] = xmin;
        c.bounds[size_t(xx) * 2 + 1] = xmax;
    }
    return c;
}

inline uint8_t clip8(int v)
{
    v >>= kPrecisionBits;
    return uint8_t(v < 0 ? 0 : (v > 255 ? 255 : v));
}

void resampleHorizontal(const uint8_t *src, int width, int height, int channels, int outWidth, uint8_t *dst)
{
    const Coefficients c = computeCoefficients(width, outWidth);
    for (int y = 0; y < height; ++y) {
        const uint8_t *row = src + size_t(y) * size_t(width) * size_t(channels);
        uint8_t *outRow = dst + size_t(y) * size_t(outWidth) * size_t(channels);
        for (int xx = 0; xx < outWidth; ++xx) {
            const int xmin = c.bounds[size_t(xx) * 2], count = c.bounds[size_t(xx) * 2 + 1];
            const int *k = &c.weights[size_t(xx) * size_t(c.kernelSize)];
            for (int ch = 0; ch < channels; ++ch) {
                int acc = 1 << (kPrecisionBits - 1);
                for (int x = 0; x < count; ++x)
                    acc += row[size_t(x + xmin) * size_t(channels) + size_t(ch)] * k[x];
                outRow[size_t(xx) * size_t(channels) + size_t(ch)] = clip8(acc);
            }
        }
    }
}

void resampleVertical(const uint8_t *src, int width, int height, int channels, int outHeight, uint8_t *dst)
{
    const Coefficients c = computeCoefficients(height, outHeight);
    const size_t stride = size_t(width) * size_t(channels);
    for (int yy = 0; yy < outHeight; ++yy) {
        const int ymin = c.bounds[size_t(yy) * 2], count = c.bounds[size_t(yy) * 2 + 1];
        const int *k = &c.weights[size_t(yy) * size_t(c.kernelSize)];
        uint8_t *outRow = dst + size_t(yy) * stride;
        for (size_t i = 0; i < stride; ++i) {
            int acc = 1 << (kPrecisionBits - 1);
            for (int y = 0; y < count; ++y)
                acc += src[size_t(y + ymin) * stride + i] * k[y];
            outRow[i] = clip8(acc);
        }
    }
}

} // namespace

std::vector<uint8_t> pilResizeBilinear(const uint8_t *src, int width, int height, int channels, int outWidth,
                                       int outHeight)
{
    const size_t inBytes = size_t(width) * size_t(height) * size_t(channels);
    if (width == outWidth && height == outHeight)
        return std::vector<uint8_t>(src, src + inBytes);
    std::vector<uint8_t> current(src, src + inBytes);
    int w = width;
    if (outWidth != width) {
        std::vector<uint8_t> tmp(size_t(outWidth) * size_t(height) * size_t(channels));
        resampleHorizontal(current.data(), width, height, channels, outWidth, tmp.data());
        current.swap(tmp);
        w = outWidth;
    }
    if (outHeight != height) {
        std::vector<uint8_t> tmp(size_t(w) * size_t(outHeight) * size_t(channels));
        resampleVertical(current.data(), w, height, channels, outHeight, tmp.data());
        current.swap(tmp);
    }
    return current;
}

void preprocessToChw(const RgbView &image, int size, const Normalization &norm, float *out)
{
    const std::vector<uint8_t> resized = pilResizeBilinear(image.pixels, image.width, image.height, 3, size, size);
    const size_t plane = size_t(size) * size_t(size);
    for (int c = 0; c < 3; ++c) {
        float *dst = out + size_t(c) * plane;
        for (size_t i = 0; i < plane; ++i) {
            const float v = float(resized[i * 3 + size_t(c)]) / 255.0f;
            dst[i] = (v - norm.mean[c]) / norm.std[c];
        }
    }
}

} // namespace cytosae::model
