#include "train/SaeMath.h"

#include <torch/torch.h>

#include <cmath>

namespace cytosae::train {

at::Tensor geometricMedian(const at::Tensor &points, int maxIter, double eps, double ftol)
{
    at::Tensor weights = torch::ones({points.size(0)}, points.options());
    auto weightedAverage = [&](const at::Tensor &w) { return (points * w.unsqueeze(1)).sum(0) / w.sum(); };
    at::Tensor median = weightedAverage(weights);
    double objective = ((points - median).norm(2, {1}) * weights).sum().item<double>();
    for (int i = 0; i < maxIter; ++i) {
        const double previous = objective;
        weights = 1.0 / (points - median).norm(2, {1}).clamp_min(eps);
        median = weightedAverage(weights);
        objective = (points - median).norm(2, {1}).sum().item<double>();
        if (std::abs(previous - objective) <= ftol * objective)
            break;
    }
    return median;
}

at::Tensor medianSample(const at::Tensor &buffer, int64_t maxRows, uint64_t seed)
{
    const int64_t n = buffer.size(0);
    if (n <= maxRows)
        return buffer;
    at::Generator gen = at::detail::createCPUGenerator(seed);
    at::Tensor rows = torch::randperm(n, gen, torch::kLong).narrow(0, 0, maxRows).to(buffer.device());
    return buffer.index_select(0, rows);
}

void normaliseDecoder(SaeParams &p)
{
    torch::NoGradGuard ng;
    p.wDec.div_(p.wDec.norm(2, {1}, true).clamp_min(1e-12));
}

void removeParallelGradient(SaeParams &p)
{
    if (!p.wDec.grad().defined())
        return;
    torch::NoGradGuard ng;
    at::Tensor parallel = (p.wDec.grad() * p.wDec).sum(1, true);
    p.wDec.mutable_grad().sub_(parallel * p.wDec);
}

SaeLoss saeLoss(const at::Tensor &x, const SaeParams &p, const at::Tensor &dead, double l1Coefficient, bool ghostGrads)
{
    SaeLoss s;
    s.hiddenPre = torch::addmm(p.bEnc, x - p.bDec, p.wEnc);
    s.f = torch::relu(s.hiddenPre);
    s.out = torch::addmm(p.bDec, s.f, p.wDec);
    const at::Tensor xNorm = x.pow(2).sum(-1, true).sqrt();
    const at::Tensor mseElems = (s.out - x).pow(2) / xNorm;
    s.mse = mseElems.mean();
    s.l1 = s.f.abs().sum(1).mean() * l1Coefficient;
    s.ghost = torch::zeros({}, x.options());
    if (ghostGrads && dead.defined() && dead.any().item<bool>()) {
        const at::Tensor residual = x - s.out;
        const at::Tensor residualNorm = residual.norm(2, {-1});
        const at::Tensor deadIdx = dead.nonzero().squeeze(1);
        at::Tensor ghostOut = torch::exp(s.hiddenPre.index_select(1, deadIdx)).mm(p.wDec.index_select(0, deadIdx));
        const at::Tensor scale = residualNorm / (1e-6 + ghostOut.norm(2, {-1}) * 2);
        ghostOut = ghostOut * scale.unsqueeze(1).detach();
        const at::Tensor rd = residual.detach();
        const at::Tensor ghostElems = (ghostOut - rd).pow(2) / rd.pow(2).sum(-1, true).sqrt();
        const at::Tensor rescale = (mseElems / (ghostElems + 1e-6)).detach();
        s.ghost = (rescale * ghostElems).mean();
    }
    s.loss = s.mse + s.l1 + s.ghost;
    return s;
}

} // namespace cytosae::train
