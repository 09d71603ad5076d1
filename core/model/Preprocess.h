#pragma once

// CytoSAE preprocessing, reproduced bit for bit: Pillow's antialiased BILINEAR resize to
// 224x224 (no aspect keeping, no crop), then ToTensor + ImageNet Normalize in float32.
// Pure C++; no LibTorch or OpenCV here.

#include <cstdint>
#include <vector>

namespace cytosae::model {

// A borrowed interleaved RGB8 image, row-major.
struct RgbView {
    const uint8_t *pixels = nullptr;
    int width = 0;
    int height = 0;
};

// Pillow 9.x `Image.resize((outW, outH), BILINEAR)` on an interleaved 8-bit image with
// `channels` channels: separable triangle filter widened by the downscale factor,
// 22-bit fixed-point weights, horizontal pass first through a uint8 intermediate. Returns
// an exact copy when the size is unchanged.
std::vector<uint8_t> pilResizeBilinear(const uint8_t *src, int width, int height, int channels, int outWidth,
                                       int outHeight);

struct Normalization {
    float mean[3] = {0.485f, 0.456f, 0.406f};
    float std[3] = {0.229f, 0.224f, 0.225f};
};

// Resize to size x size, then writes CHW float32 `(u8/255 - mean) / std` into `out`
// (3*size*size floats), in the same float32 operation order as torchvision.
void preprocessToChw(const RgbView &image, int size, const Normalization &norm, float *out);

} // namespace cytosae::model
