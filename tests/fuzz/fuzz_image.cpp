// libFuzzer target: image decoding and its checks (PNG, JPEG, TIFF, BMP through OpenCV), with
// the pixel bound checked from the header before decoding.

#include "imaging/ImageDecoder.h"

#include <cstddef>
#include <cstdint>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cytosae::imaging::DecodeLimits limits;
    limits.maxPixels = 4'000'000; // decompression bombs must be refused before decoding
    const std::vector<uint8_t> bytes(data, data + size);
    auto image = cytosae::imaging::decodeImageBuffer(bytes, "fuzz.png", limits);
    if (image.ok() && image->image.pixels.size() != size_t(image->image.width) * size_t(image->image.height) * 3)
        __builtin_trap(); // the decoder's contract: interleaved RGB8
    return 0;
}
