#pragma once

// Turns an image file into plain 8-bit RGB, the only form the model pipeline accepts.
// Conversions deliberately mirror what the Python reference does with
// PIL.Image.open(...).convert("RGB") so that pixels match bit for bit where possible:
// no colour management, no EXIF rotation, alpha is dropped rather than composited.

#include "common/Result.h"

#include <cstdint>
#include <string>
#include <vector>

namespace cytosae::imaging {

// Interleaved RGB8, row-major, pixels.size() == width * height * 3.
struct RgbImage {
    int width = 0;
    int height = 0;
    std::vector<uint8_t> pixels;
};

// What the file was before conversion, so the UI can tell the user what was changed.
struct DecodeInfo {
    int sourceChannels = 0;
    int sourceBitDepth = 0;
    std::vector<std::string> notes; // human sentences, e.g. "alpha channel dropped"
};

struct DecodedImage {
    RgbImage image;
    DecodeInfo info;
};

struct DecodeLimits {
    int minSide = 14;                   // one ViT patch; anything smaller cannot be embedded
    int64_t maxPixels = 100'000'000;    // guards memory against huge scans and decompression bombs
    int64_t maxFileBytes = 1LL << 31;
};

// Error messages never mention the path: callers add it with Error::withContext.
Result<DecodedImage> decodeImageFile(const std::string &path, const DecodeLimits &limits = {});

// nameForMessages is only used to make hints more specific (e.g. "the name ends in .png
// but ..."); it is never put at the start of a message.
Result<DecodedImage> decodeImageBuffer(const std::vector<uint8_t> &bytes,
                                       const std::string &nameForMessages,
                                       const DecodeLimits &limits = {});

} // namespace cytosae::imaging
