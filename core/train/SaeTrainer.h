#pragma once

// SAE training with the CytoSAE recipe (docs/reference.md, SAE training): Adam, constant LR after a linear
// warm-up, L1 on the summed latent activations, MSE scaled by the input norm, decoder rows
// renormalised before each step with the gradient component parallel to them removed,
// b_dec initialised to the geometric median of a sample of the buffer, ghost gradients for latents
// dead longer than a window. Input: the block `blockLayer` residuals of a ViT on images,
// all tokens (CLS included), as the published SAE. Output: a file in the CytoSAE format.
//
// Thread: call from a worker thread; callbacks run on it. Cancel is checked every step; the
// state is checkpointed every `checkpointEvery` steps and at cancel, and a later call with
// `resume` continues from it.

#include "common/Progress.h"
#include "common/Result.h"
#include "model/Engine.h"

#include <atomic>
#include <functional>
#include <string>
#include <vector>

namespace cytosae::train {

struct SaeTrainOptions {
    std::string vitPath;
    int numHeads = 0;
    std::string outPath;              // the CytoSAE-format .pt to write
    int blockLayer = -2;
    int expansionFactor = 8;          // d_sae = expansion x d_in
    int steps = 2000;
    int batchImages = 64;             // a step sees batchImages x tokens activations
    double lr = 4e-4;
    double l1Coefficient = 8e-5;
    int warmupSteps = 500;
    bool ghostGrads = true;
    int deadFeatureWindow = 64;
    int64_t maxBufferTokens = 4'000'000; // activations kept in memory (images sampled beyond)
    model::DeviceChoice device = model::DeviceChoice::Auto;
    int threads = 0;
    uint64_t seed = 42;
    std::string statePath;            // resume state (default: outPath + ".state")
    int checkpointEvery = 250;
    bool resume = true;
    std::string modelName = "dinov2_vitb14";
};

struct TrainMetrics {
    int step = 0;
    double loss = 0, mse = 0, l1 = 0, ghost = 0;
    double l0 = 0;            // mean active latents per token
    double explained = 0;     // 1 - sum((x_hat-x)^2) / sum((x-mean)^2) on the batch
    int deadLatents = 0;
    double lr = 0;
};

struct SaeTrainReport {
    int steps = 0;
    bool resumed = false;
    bool cancelled = false;
    int dIn = 0, dSae = 0;
    int64_t bufferTokens = 0;
    TrainMetrics last;
    std::string outPath;
    std::string device;
};

using MetricsCallback = std::function<void(const TrainMetrics &)>;

Result<SaeTrainReport> trainSae(const std::vector<std::string> &imagePaths, const SaeTrainOptions &options,
                                const ProgressCallback &progress = {}, const MetricsCallback &metrics = {},
                                const std::atomic<bool> *cancel = nullptr);

} // namespace cytosae::train
