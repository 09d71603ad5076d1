#pragma once

// Saving models in the published formats, so files the project trains load both here and in
// the reference Python code: the CytoSAE SAE file ({"cfg": ViTSAERunnerConfig, "state_dict":
// {W_enc, b_enc, W_dec, b_dec}}) and a DinoBloom-style ViT checkpoint ({"teacher":
// {"backbone.<name>": tensor}}). Writes to a temporary file and renames: a crash never leaves
// a half-written model under the final name. No LibTorch types here.

#include "common/Result.h"

#include <cstdint>
#include <string>
#include <vector>

namespace cytosae::model {

struct SaeFileContent {
    int dIn = 0, dSae = 0;
    std::vector<float> wEnc, bEnc, wDec, bDec; // [dIn,dSae], [dSae], [dSae,dIn], [dIn]
    // cfg fields (the rest take the reference's defaults)
    int blockLayer = -2;
    std::string modelName = "dinov2_vitb14";
    int expansionFactor = 8;
    double lr = 4e-4;
    double l1Coefficient = 8e-5;
    int warmupSteps = 500;
    int batchSize = 64;
    int64_t totalTrainingTokens = 0;
    int deadFeatureWindow = 64;
    bool useGhostGrads = true;
    int64_t seed = 42;
    int imageSize = 224;
    std::string datasetPath = "project";
};

Status saveSaeFile(const std::string &path, const SaeFileContent &content);

struct NamedTensor {
    std::string name;
    std::vector<int64_t> shape;
    std::vector<float> data;
};

// {"teacher": OrderedDict("backbone." + name -> tensor, then `extra` keys as given)}
Status saveVitFile(const std::string &path, const std::vector<NamedTensor> &backbone,
                   const std::vector<NamedTensor> &extra = {});

} // namespace cytosae::model
