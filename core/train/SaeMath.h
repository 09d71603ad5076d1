#pragma once

// The pieces of one SAE training step (docs/reference.md, SAE training), separate so that each
// can be tested on its own. Internal to core/train: it exposes LibTorch tensors.

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace cytosae::train {

struct SaeParams {
    at::Tensor wEnc, bEnc, wDec, bDec; // [d_in, d_sae], [d_sae], [d_sae, d_in], [d_in]
};

// The geometric median of the rows of `points` by Weiszfeld's iteration (the reference's
// compute_geometric_median): robust to outliers, unlike the mean.
at::Tensor geometricMedian(const at::Tensor &points, int maxIter = 100, double eps = 1e-6, double ftol = 1e-20);

// The rows b_dec is initialised from: a seeded random sample of at most `maxRows` rows of the
// whole activation buffer (the reference takes the median of its activation store, many
// batches deep, not of the first batch).
at::Tensor medianSample(const at::Tensor &buffer, int64_t maxRows, uint64_t seed);

// Scales every decoder row to unit L2 norm (before each step).
void normaliseDecoder(SaeParams &p);

// Removes from W_dec's gradient the component parallel to each decoder row, so a step moves
// the rows along the unit sphere (after backward, before the optimiser step).
void removeParallelGradient(SaeParams &p);

struct SaeLoss {
    at::Tensor loss, mse, l1, ghost; // scalars; loss = mse + l1 + ghost
    at::Tensor hiddenPre, f, out;    // [tokens, d_sae], [tokens, d_sae], [tokens, d_in]
};

// One forward pass and its loss on the tokens x [tokens, d_in]:
//   mse   = mean over tokens and dims of (x_hat - x)^2 / ||x||_2 (per token, not squared),
//   l1    = l1Coefficient * mean over tokens of sum_k |f_k|,
//   ghost = for the latents in `dead` (bool [d_sae]) when ghostGrads: exp(pre-activations)
//           decode the residual x - x_hat, scaled to half its norm, with the same norm scaling,
//           rescaled to the size of the MSE (ghost gradients, Anthropic's recipe as the
//           reference implements it); 0 otherwise.
SaeLoss saeLoss(const at::Tensor &x, const SaeParams &p, const at::Tensor &dead, double l1Coefficient, bool ghostGrads);

} // namespace cytosae::train
