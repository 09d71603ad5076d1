#pragma once

// Supervised training of a small DINOv2-architecture ViT on labelled cell images (the demo
// model: it must learn the morphology that separates the cell types, so that an SAE on its
// residuals finds nuclei, granules, Auer rods...). Optionally also per-patch part targets, so
// that patch tokens carry local morphology the way a self-supervised DinoBloom's do. Deterministic for a given seed and thread
// count. Saves a DinoBloom-format checkpoint (the backbone under teacher.backbone.*, the
// classifier under teacher.classifier.*, which the ViT reader ignores).
//
// Thread: call from a worker thread; callbacks run on it.

#include "common/Progress.h"
#include "common/Result.h"
#include "model/Engine.h"

#include <atomic>
#include <string>
#include <vector>

namespace cytosae::train {

struct LabelledImage {
    std::string path;
    int label = 0;
    // Optional dense targets: for each patch (row-major grid x grid) and each of
    // VitTrainOptions::patchTargetCount parts, 1 when the part is in the patch.
    std::vector<uint8_t> patchTargets;
};

struct VitTrainOptions {
    std::string outPath;
    int embedDim = 96;     // heads = embedDim / 16 (how the reader infers them for such widths)
    int depth = 4;
    int patchSize = 14;
    int grid = 16;         // 224 px input, as DinoBloom
    int mlpRatio = 4;
    int epochs = 3;
    int batch = 32;
    double lr = 1e-3;
    double weightDecay = 0.05;
    double validationFraction = 0.1;
    // With patch targets: a head on the patch tokens (layer and kind below) learns which parts
    // each patch holds (binary cross-entropy, weighted), besides the cell type on the CLS token.
    int patchTargetCount = 0;
    double patchLossWeight = 1.0;
    // Balanced part loss: each part's positive patches are weighted by negatives / positives
    // over the training set, at most this much (1 or less: unweighted, the default). Rare parts
    // (Auer rods cover about 0.2 % of patches) are otherwise learnt as "never there".
    double patchPositiveWeightCap = 0.0;
    // The part head reads the residual after block depth-2 (the layer CytoSAE's SAE reads)
    // instead of the final-norm tokens, so that layer must itself encode the parts.
    bool patchHeadOnSaeLayer = false;
    // With patchHeadOnSaeLayer: the head reads that residual as it is (exactly the SAE's input)
    // instead of its layer norm. With a fixed-norm head (below) a confident part then needs a
    // large projection of the raw residual on the part's direction, which is what the SAE's
    // reconstruction loss weighs; a layer-normed head is blind to the token's norm.
    bool patchHeadRawResidual = false;
    // > 0: a fixed-norm part head. Each part's weight row is kept at norm scale / sqrt(width)
    // (over layer-normed tokens, whose norm is sqrt(width): logit = scale x cosine + bias), so a
    // confident part prediction needs a large component of the residual along that part's
    // direction, not a small one read out by large weights. 0: an ordinary linear head.
    double patchHeadScale = 0.0;
    uint64_t seed = 7;
    int threads = 0;
    model::DeviceChoice device = model::DeviceChoice::Auto;
};

struct VitTrainReport {
    int epochs = 0;
    int steps = 0;
    double finalLoss = 0;
    double trainAccuracy = 0;      // last epoch, running
    double validationAccuracy = 0; // held-out images
    int trainImages = 0, validationImages = 0;
    bool cancelled = false;
};

// The balanced part loss's positive weights: for each of `parts` parts, negatives / positives
// over the given images' patch targets (row-major [image][patch][part]), clamped to [1, cap];
// 1 for a part that never occurs.
std::vector<float> balancedPartWeights(const std::vector<uint8_t> &targets, const std::vector<int64_t> &images,
                                       int64_t patches, int parts, double cap);

Result<VitTrainReport> trainVitClassifier(const std::vector<LabelledImage> &images,
                                          const std::vector<std::string> &classNames, const VitTrainOptions &options,
                                          const ProgressCallback &progress = {},
                                          const std::atomic<bool> *cancel = nullptr);

} // namespace cytosae::train
