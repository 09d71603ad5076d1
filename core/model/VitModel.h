#pragma once

// DINOv2 vision transformer forward pass (internal to core/model; exposes at::Tensor).
// Numerically follows facebookresearch/dinov2 @4d83ffd: pre-norm blocks with LayerScale,
// eps 1e-6 LayerNorms, exact-erf GELU, q scaled before q@k^T, bicubic position-embedding
// interpolation with the +0.1 offset.

#include "common/Result.h"
#include "model/Engine.h"
#include "model/TorchCheckpoint.h"

#include <ATen/core/Tensor.h>

namespace cytosae::model {

struct VitBlockWeights {
    at::Tensor norm1W, norm1B, qkvW, qkvB, projW, projB, ls1;
    at::Tensor norm2W, norm2B, fc1W, fc1B, fc2W, fc2B, ls2; // swiglu: fc1 = w12, fc2 = w3
    // bfloat16 copies of the matrix weights (only after VitModel::prepareBf16).
    at::Tensor qkvWh, qkvBh, projWh, projBh, fc1Wh, fc1Bh, fc2Wh, fc2Bh;
};

class VitModel {
public:
    // Builds from a backbone state dict (keys without the "backbone." prefix). Every size
    // is read from the tensors; numHeads 0 means head_dim 64 (16 when the width is not a
    // multiple of 64).
    static Result<VitModel> fromStateDict(const StateDict &sd, int numHeads);
    // Reads a DinoBloom checkpoint ({"teacher": ...}, heads dropped, prefix stripped) or a
    // plain DINOv2 state dict ({"model"|"state_dict": ...} or top-level).
    static Result<VitModel> load(const std::string &path, int numHeads);

    const VitInfo &info() const { return m_info; }
    VitInfo &info() { return m_info; }
    void to(const c10::Device &device);

    // Position embedding added for an input of height x width pixels: [1, 1 + gh*gw, D].
    at::Tensor positionEmbedding(int height, int width) const;
    // Patch embedding + CLS (+ registers) + position embedding: the input of block 0.
    at::Tensor embed(const at::Tensor &pixels) const;
    // Applies blocks [first, last] (inclusive). bf16: the matrix products in bfloat16 (needs
    // prepareBf16), the residual stream, LayerNorms and LayerScale in fp32; input and output fp32.
    at::Tensor blocks(at::Tensor x, int first, int last, bool bf16 = false) const;
    // Makes (or, with false, drops) the bfloat16 copies of the matrix weights on their device.
    void prepareBf16(bool on = true);
    bool hasBf16() const { return !m_blocks.empty() && m_blocks.front().qkvWh.defined(); }
    at::Tensor finalNorm(const at::Tensor &x) const;

    // Multiply-accumulates per image for blocks [0, last] at `tokens` tokens.
    double macsThrough(int last, int tokens) const;

    // Every weight under its DINOv2 state-dict name (shared tensors: training updates the
    // model in place through them).
    StateDict stateDict() const;

private:
    at::Tensor block(const at::Tensor &x, const VitBlockWeights &b, bool bf16) const;

    VitInfo m_info;
    at::Tensor m_clsToken, m_posEmbed, m_registers, m_patchW, m_patchB, m_normW, m_normB;
    std::vector<VitBlockWeights> m_blocks;
};

class SaeModel {
public:
    // Reads the CytoSAE file ({"cfg": ViTSAERunnerConfig, "state_dict": {...}}) or a plain
    // {W_enc, b_enc, W_dec, b_dec} dict.
    static Result<SaeModel> load(const std::string &path);
    static Result<SaeModel> fromTensors(at::Tensor wEnc, at::Tensor bEnc, at::Tensor wDec, at::Tensor bDec);

    const SaeInfo &info() const { return m_info; }
    SaeInfo &info() { return m_info; }
    void to(const c10::Device &device);

    const at::Tensor &wEnc() const { return m_wEnc; }
    const at::Tensor &bEnc() const { return m_bEnc; }
    const at::Tensor &wDec() const { return m_wDec; }
    const at::Tensor &bDec() const { return m_bDec; }

private:
    SaeInfo m_info;
    at::Tensor m_wEnc, m_bEnc, m_wDec, m_bDec;
};

// Builds an engine from models already in memory (tests and benchmarks).
Result<std::unique_ptr<Engine>> makeEngine(VitModel vit, SaeModel sae, const EngineParams &params);

} // namespace cytosae::model
