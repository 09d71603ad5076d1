#pragma once

// Full-size models with random weights for the benchmarks (the published weights cannot be
// downloaded here; the benchmarks measure speed, not concepts).

#include "model/TorchCheckpoint.h"

#include <torch/torch.h>

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

} // namespace cytosae::bench
