#pragma once

// Compact blobs for what the project database keeps per image (format documented in
// docs/database.md):
//   token top-k  "TK" v1: per token, its strongest SAE latents (id, float16 value), zeros omitted;
//   concepts     "IC" v1: every active latent of the image (id, mean, max over patches,
//                patches above threshold), strongest mean first.
// Decoders validate every length against the blob size, so a damaged row gives an error.

#include "common/Result.h"

#include <cstdint>
#include <vector>

namespace cytosae::store {

struct TokenLatent {
    int32_t latent = 0;
    float value = 0;
};

struct TokenTopK {
    int numTokens = 0;
    std::vector<uint32_t> offsets; // numTokens + 1; token t owns entries[offsets[t], offsets[t+1])
    std::vector<TokenLatent> entries;
};

struct ImageConcept {
    int32_t latent = 0;
    float mean = 0;
    float maxPatch = 0;
    int32_t patchesAbove = 0;
};

uint16_t floatToHalf(float value);
float halfToFloat(uint16_t half);

// ids/values: numTokens x k, row-major; entries with id < 0 or value <= 0 are skipped.
std::vector<uint8_t> encodeTokenTopK(int numTokens, int k, const int32_t *ids, const float *values, int32_t maxLatent);
Result<TokenTopK> decodeTokenTopK(const uint8_t *data, size_t size);

std::vector<uint8_t> encodeConcepts(std::vector<ImageConcept> concepts, int32_t maxLatent);
Result<std::vector<ImageConcept>> decodeConcepts(const uint8_t *data, size_t size);

std::vector<uint8_t> encodeFloats(const std::vector<float> &values);
Result<std::vector<float>> decodeFloats(const uint8_t *data, size_t size);

} // namespace cytosae::store
