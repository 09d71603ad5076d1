#pragma once

// Full-size models with random weights for the benchmarks (the published weights cannot be
// downloaded here; the benchmarks measure speed, not concepts).

#include "model/Preprocess.h"
#include "model/TorchCheckpoint.h"
#include "model/VitModel.h"

#include <torch/torch.h>

#include <random>
#include <vector>

namespace cytosae::bench {

// A DINOv2 ViT-B/14 state dict (768 wide, 12 blocks, 257 tokens at 224 px).
inline model::StateDict randomVitB()
{
    const int64_t d = 768, hidden = 3072;
    model::StateDict sd;
    auto r = [](std::vector<int64_t> s, double scale) { return torch::randn(s) * scale; };
    sd.insert("cls_token", r({1, 1, d}, 0.02));
    sd.insert("pos_embed", r({1, 257, d}, 0.02));
    sd.insert("mask_token", torch::zeros({1, d}));
    sd.insert("patch_embed.proj.weight", r({d, 3, 14, 14}, 0.02));
    sd.insert("patch_embed.proj.bias", torch::zeros({d}));
    sd.insert("norm.weight", torch::ones({d}));
    sd.insert("norm.bias", torch::zeros({d}));
    for (int i = 0; i < 12; ++i) {
        const std::string p = "blocks." + std::to_string(i) + ".";
        for (const char *n : {"norm1", "norm2"}) {
            sd.insert(p + n + ".weight", torch::ones({d}));
            sd.insert(p + n + ".bias", torch::zeros({d}));
        }
        sd.insert(p + "attn.qkv.weight", r({3 * d, d}, 0.02));
        sd.insert(p + "attn.qkv.bias", torch::zeros({3 * d}));
        sd.insert(p + "attn.proj.weight", r({d, d}, 0.02));
        sd.insert(p + "attn.proj.bias", torch::zeros({d}));
        sd.insert(p + "ls1.gamma", torch::full({d}, 0.1));
        sd.insert(p + "mlp.fc1.weight", r({hidden, d}, 0.02));
        sd.insert(p + "mlp.fc1.bias", torch::zeros({hidden}));
        sd.insert(p + "mlp.fc2.weight", r({d, hidden}, 0.02));
        sd.insert(p + "mlp.fc2.bias", torch::zeros({d}));
        sd.insert(p + "ls2.gamma", torch::full({d}, 0.1));
    }
    return sd;
}

// n smooth 288x288 RGB cells on a plain background (white noise would give unrealistic
// residuals), the same for the same seed.
inline std::vector<std::vector<uint8_t>> blobCells(int n, uint32_t seed)
{
    std::mt19937 rng(seed);
    std::vector<std::vector<uint8_t>> cells;
    for (int i = 0; i < n; ++i) {
        std::vector<uint8_t> rgb(288 * 288 * 3);
        const int cx = 100 + int(rng() % 88), cy = 100 + int(rng() % 88), r = 50 + int(rng() % 40);
        for (int y = 0; y < 288; ++y)
            for (int x = 0; x < 288; ++x) {
                const bool in = (x - cx) * (x - cx) + (y - cy) * (y - cy) < r * r;
                const int noise = int(rng() % 16);
                uint8_t *p = &rgb[size_t(y * 288 + x) * 3];
                p[0] = uint8_t(in ? 110 + noise : 215 + noise);
                p[1] = uint8_t(in ? 60 + noise : 170 + noise);
                p[2] = uint8_t(in ? 150 + noise : 200 + noise);
            }
        cells.push_back(std::move(rgb));
    }
    return cells;
}

// blobCells preprocessed as the engine does: [n, 3, 224, 224] floats.
inline std::vector<float> preprocessCells(const std::vector<std::vector<uint8_t>> &cells)
{
    std::vector<float> chw(cells.size() * 3 * 224 * 224);
    for (size_t i = 0; i < cells.size(); ++i)
        model::preprocessToChw({cells[i].data(), 288, 288}, 224, {}, chw.data() + i * 3 * 224 * 224);
    return chw;
}

// SAE init as in CytoSAE (W_dec rows of unit norm, W_enc = W_dec^T), with b_enc calibrated on
// the residuals of `pixels` ([n, 3, 224, 224]) so that each latent fires on perToken / d_sae of
// the tokens: about `perToken` latents per token, as in a trained SAE (a random SAE with a
// fixed bias fires almost everywhere).
struct RandomSae {
    at::Tensor wEnc, bEnc, wDec, bDec;
};

inline RandomSae calibratedRandomSae(const model::VitModel &vit, const at::Tensor &pixels, int blockIndex,
                                     int64_t dSae = 49152, double perToken = 40.0)
{
    c10::InferenceMode guard;
    const int64_t d = vit.info().embedDim;
    RandomSae s;
    s.wDec = torch::randn({dSae, d});
    s.wDec = s.wDec / s.wDec.norm(2, {1}, true);
    s.wEnc = s.wDec.t().contiguous();
    s.bDec = torch::zeros({d});
    at::Tensor resid = vit.blocks(vit.embed(pixels), 0, blockIndex).reshape({-1, d});
    const double keep = perToken / double(dSae);
    const int64_t kth = std::max<int64_t>(1, int64_t(double(resid.size(0)) * (1.0 - keep)));
    s.bEnc = torch::empty({dSae});
    for (int64_t c0 = 0; c0 < dSae; c0 += 4096) { // in chunks: the whole [tokens, d_sae] is 400 MB
        const int64_t c = std::min<int64_t>(4096, dSae - c0);
        s.bEnc.narrow(0, c0, c).copy_(-std::get<0>(resid.mm(s.wEnc.narrow(1, c0, c)).kthvalue(kth, 0)));
    }
    return s;
}

} // namespace cytosae::bench
