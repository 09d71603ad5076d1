#pragma once

// ViT block residuals of a set of images, for training (internal: exposes at::Tensor).

#include "common/Progress.h"
#include "common/Result.h"
#include "model/VitModel.h"

#include <ATen/core/Tensor.h>

#include <atomic>
#include <string>
#include <vector>

namespace cytosae::train {

struct ActivationSet {
    at::Tensor tokens;        // [images * tokensPerImage, d_in], float32, CPU
    int tokensPerImage = 0;
    std::vector<std::string> used; // images that went in (decode failures are skipped and listed)
    std::vector<std::pair<std::string, std::string>> failures;
};

// Runs the ViT to block `blockIndex` (inclusive) on each image (decoded and preprocessed
// exactly as in inference), keeping every token. Images beyond maxTokens are left out
// (taken in the given order: shuffle beforehand to sample).
Result<ActivationSet> collectActivations(const model::VitModel &vit, const std::vector<std::string> &paths,
                                         int blockIndex, int64_t maxTokens, const c10::Device &device,
                                         const ProgressCallback &progress, const std::atomic<bool> *cancel);

} // namespace cytosae::train
