#include "train/VitTrainer.h"

#include "imaging/ImageDecoder.h"
#include "model/ModelFiles.h"
#include "model/VitModel.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <thread>

namespace cytosae::train {

namespace {

model::StateDict initialWeights(const VitTrainOptions &o, int classes, std::vector<at::Tensor> &head)
{
    const int64_t d = o.embedDim, hidden = int64_t(o.embedDim) * o.mlpRatio, p = o.patchSize;
    auto tn = [](std::vector<int64_t> shape, double std) { return torch::randn(shape) * std; };
    model::StateDict sd;
    sd.insert("cls_token", tn({1, 1, d}, 1e-6));
    sd.insert("pos_embed", tn({1, 1 + int64_t(o.grid) * o.grid, d}, 0.02));
    sd.insert("mask_token", torch::zeros({1, d}));
    sd.insert("patch_embed.proj.weight", tn({d, 3, p, p}, 1.0 / std::sqrt(3.0 * p * p)));
    sd.insert("patch_embed.proj.bias", torch::zeros({d}));
    for (int i = 0; i < o.depth; ++i) {
        const std::string b = "blocks." + std::to_string(i) + ".";
        sd.insert(b + "norm1.weight", torch::ones({d}));
        sd.insert(b + "norm1.bias", torch::zeros({d}));
        sd.insert(b + "attn.qkv.weight", tn({3 * d, d}, 0.02));
        sd.insert(b + "attn.qkv.bias", torch::zeros({3 * d}));
        sd.insert(b + "attn.proj.weight", tn({d, d}, 0.02));
        sd.insert(b + "attn.proj.bias", torch::zeros({d}));
        sd.insert(b + "ls1.gamma", torch::full({d}, 0.1));
        sd.insert(b + "norm2.weight", torch::ones({d}));
        sd.insert(b + "norm2.bias", torch::zeros({d}));
        sd.insert(b + "mlp.fc1.weight", tn({hidden, d}, 0.02));
        sd.insert(b + "mlp.fc1.bias", torch::zeros({hidden}));
        sd.insert(b + "mlp.fc2.weight", tn({d, hidden}, 0.02));
        sd.insert(b + "mlp.fc2.bias", torch::zeros({d}));
        sd.insert(b + "ls2.gamma", torch::full({d}, 0.1));
    }
    sd.insert("norm.weight", torch::ones({d}));
    sd.insert("norm.bias", torch::zeros({d}));
    head = {tn({classes, d}, 0.02), torch::zeros({classes})};
    return sd;
}

std::vector<model::NamedTensor> toNamed(const model::StateDict &sd)
{
    std::vector<model::NamedTensor> out;
    for (const auto &name : sd.names) {
        at::Tensor t = sd.tensors.at(name).detach().cpu().contiguous();
        out.push_back({name, t.sizes().vec(), std::vector<float>(t.data_ptr<float>(), t.data_ptr<float>() + t.numel())});
    }
    return out;
}

} // namespace

std::vector<float> balancedPartWeights(const std::vector<uint8_t> &targets, const std::vector<int64_t> &images,
                                       int64_t patches, int parts, double cap)
{
    std::vector<float> w(size_t(std::max(0, parts)), 1.f);
    std::vector<int64_t> positives(w.size(), 0);
    const size_t perImage = size_t(patches) * size_t(parts);
    int64_t counted = 0;
    for (int64_t image : images) {
        if (image < 0 || (size_t(image) + 1) * perImage > targets.size())
            continue;
        ++counted;
        const uint8_t *t = targets.data() + size_t(image) * perImage;
        for (size_t q = 0; q < perImage; ++q)
            positives[q % size_t(parts)] += t[q] != 0;
    }
    const double total = double(counted) * double(patches);
    for (size_t part = 0; part < w.size(); ++part)
        if (positives[part] > 0)
            w[part] = float(std::clamp((total - double(positives[part])) / double(positives[part]), 1.0,
                                       std::max(1.0, cap)));
    return w;
}

Result<VitTrainReport> trainVitClassifier(const std::vector<LabelledImage> &images,
                                          const std::vector<std::string> &classNames, const VitTrainOptions &o,
                                          const ProgressCallback &progress, const std::atomic<bool> *cancel)
{
    VitTrainReport report;
    if (images.size() < 4)
        return Error("at least 4 labelled images are needed");
    if (o.embedDim % 16 != 0 || o.embedDim % 64 == 0)
        return Error("the demo ViT width must be a multiple of 16 but not of 64 (heads = width / 16)");
    const int classes = int(classNames.size());
    const int threads = o.threads > 0 ? o.threads : int(std::max(1u, std::thread::hardware_concurrency()));
    at::set_num_threads(threads);
    const bool cuda = o.device != model::DeviceChoice::Cpu && torch::cuda::is_available();
    const c10::Device device = cuda ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
    const int size = o.grid * o.patchSize;

    try {
        torch::manual_seed(o.seed);
        std::vector<at::Tensor> head;
        auto vit = model::VitModel::fromStateDict(initialWeights(o, classes, head), 0);
        if (!vit)
            return vit.error();
        vit->to(device);
        model::StateDict sd = vit->stateDict();
        std::vector<at::Tensor> params;
        for (const auto &name : sd.names)
            if (name != "mask_token")
                params.push_back(sd.tensors.at(name).requires_grad_(true));
        const int parts = o.patchTargetCount;
        if (parts > 0) {
            head.push_back(torch::randn({parts, int64_t(o.embedDim)}) * 0.02);
            head.push_back(torch::zeros({parts}));
        }
        for (auto &h : head) {
            h = h.to(device).requires_grad_(true);
            params.push_back(h);
        }
        const int64_t patches = int64_t(o.grid) * o.grid;
        std::vector<uint8_t> targets;
        if (parts > 0) {
            targets.resize(images.size() * size_t(patches) * size_t(parts));
            for (size_t i = 0; i < images.size(); ++i) {
                if (images[i].patchTargets.size() != size_t(patches) * size_t(parts))
                    return Error(images[i].path + ": patch targets do not match the grid and part count");
                std::copy(images[i].patchTargets.begin(), images[i].patchTargets.end(),
                          targets.begin() + ptrdiff_t(i * size_t(patches) * size_t(parts)));
            }
        }

        // Decode and resize once (uint8, 224 x 224): the same preprocessing as inference.
        std::vector<uint8_t> pixels(images.size() * size_t(size) * size_t(size) * 3);
        std::vector<int64_t> labels(images.size());
        ProgressMeter loadMeter("loading", int64_t(images.size()), progress);
        for (size_t i = 0; i < images.size(); ++i) {
            auto img = imaging::decodeImageFile(images[i].path);
            if (!img)
                return img.error().withContext(images[i].path);
            auto resized = model::pilResizeBilinear(img->image.pixels.data(), img->image.width, img->image.height, 3,
                                                    size, size);
            std::copy(resized.begin(), resized.end(), pixels.begin() + ptrdiff_t(i * resized.size()));
            labels[i] = images[i].label;
            if (i % 64 == 0)
                loadMeter.report(int64_t(i));
        }
        at::Tensor all = torch::from_blob(pixels.data(), {int64_t(images.size()), size, size, 3}, torch::kUInt8);
        at::Tensor labelT = torch::tensor(labels, torch::kLong);
        const at::Tensor mean = torch::tensor({0.485f, 0.456f, 0.406f}).view({1, 3, 1, 1});
        const at::Tensor stdv = torch::tensor({0.229f, 0.224f, 0.225f}).view({1, 3, 1, 1});
        auto batchOf = [&](const at::Tensor &idx) {
            at::Tensor x = all.index_select(0, idx).permute({0, 3, 1, 2}).to(torch::kFloat).div(255.0f);
            return ((x - mean) / stdv).to(device);
        };

        at::Generator gen = at::detail::createCPUGenerator(o.seed);
        at::Tensor order = torch::randperm(int64_t(images.size()), gen, torch::kLong);
        const int64_t nVal = std::max<int64_t>(1, int64_t(double(images.size()) * o.validationFraction));
        at::Tensor valIdx = order.narrow(0, 0, nVal);
        at::Tensor trainIdx = order.narrow(0, nVal, order.size(0) - nVal);
        report.trainImages = int(trainIdx.size(0));
        at::Tensor posWeight;
        if (parts > 0 && o.patchPositiveWeightCap > 1.0) {
            const at::Tensor rows = trainIdx.contiguous();
            const std::vector<int64_t> trainRows(rows.data_ptr<int64_t>(), rows.data_ptr<int64_t>() + rows.numel());
            posWeight = torch::tensor(balancedPartWeights(targets, trainRows, patches, parts, o.patchPositiveWeightCap))
                            .to(device);
        }
        report.validationImages = int(nVal);

        torch::optim::AdamW opt(params, torch::optim::AdamWOptions(o.lr).weight_decay(o.weightDecay));
        const int64_t stepsPerEpoch = (trainIdx.size(0) + o.batch - 1) / o.batch;
        const int64_t totalSteps = stepsPerEpoch * o.epochs;
        ProgressMeter meter("training", totalSteps, progress);
        at::Tensor targetT = parts > 0 ? torch::from_blob(targets.data(), {int64_t(images.size()), int64_t(o.grid),
                                                                            int64_t(o.grid), int64_t(parts)},
                                                          torch::kUInt8)
                                       : at::Tensor();
        at::Tensor lastPatchLogits;
        // The part head's effective weights: as trained, or rows of fixed norm (cosine head).
        const double layerNormNorm = std::sqrt(double(o.embedDim)); // a layer-normed token's norm
        auto partWeight = [&]() {
            if (o.patchHeadScale <= 0)
                return head[2];
            return head[2] / head[2].norm(2, {1}, true).clamp_min(1e-8) * (o.patchHeadScale / layerNormNorm);
        };
        auto logits = [&](const at::Tensor &x) {
            at::Tensor mid = vit->blocks(vit->embed(x), 0, o.depth - 2);
            at::Tensor tokens = vit->finalNorm(vit->blocks(mid, o.depth - 1, o.depth - 1));
            if (parts > 0) {
                const at::Tensor source = !o.patchHeadOnSaeLayer  ? tokens
                                          : o.patchHeadRawResidual ? mid
                                                                   : torch::layer_norm(mid, {mid.size(-1)});
                lastPatchLogits = torch::linear(source.narrow(1, source.size(1) - patches, patches), partWeight(), head[3]);
            }
            return torch::linear(tokens.select(1, 0), head[0], head[1]);
        };
        int64_t step = 0;
        for (int epoch = 0; epoch < o.epochs; ++epoch) {
            at::Tensor perm = trainIdx.index_select(0, torch::randperm(trainIdx.size(0), gen, torch::kLong));
            int64_t correct = 0, seen = 0;
            for (int64_t b = 0; b < stepsPerEpoch; ++b, ++step) {
                if (cancel && cancel->load()) {
                    report.cancelled = true;
                    return report;
                }
                at::Tensor idx = perm.narrow(0, b * o.batch, std::min<int64_t>(o.batch, perm.size(0) - b * o.batch));
                at::Tensor x = batchOf(idx);
                at::Tensor t = parts > 0 ? targetT.index_select(0, idx).to(torch::kFloat) : at::Tensor();
                // Flips: cells have no preferred orientation (patch targets flip with them).
                if (torch::rand({1}, gen).item<float>() < 0.5f) {
                    x = x.flip({3});
                    if (parts > 0)
                        t = t.flip({2});
                }
                if (torch::rand({1}, gen).item<float>() < 0.5f) {
                    x = x.flip({2});
                    if (parts > 0)
                        t = t.flip({1});
                }
                at::Tensor y = labelT.index_select(0, idx).to(device);
                // Cosine schedule after a short warm-up.
                const double warm = std::min(1.0, double(step + 1) / std::max<double>(1.0, double(stepsPerEpoch) / 2));
                const double lr = o.lr * warm * 0.5 * (1 + std::cos(M_PI * double(step) / double(totalSteps)));
                for (auto &g : opt.param_groups())
                    static_cast<torch::optim::AdamWOptions &>(g.options()).lr(lr);
                opt.zero_grad();
                at::Tensor out = logits(x);
                at::Tensor loss = torch::cross_entropy_loss(out, y);
                if (parts > 0)
                    loss = loss + o.patchLossWeight * torch::binary_cross_entropy_with_logits(
                                                          lastPatchLogits, t.reshape({t.size(0), patches, parts}).to(device),
                                                          {}, posWeight);
                loss.backward();
                opt.step();
                correct += (out.argmax(1) == y).sum().item<int64_t>();
                seen += y.size(0);
                report.finalLoss = loss.item<double>();
                meter.report(step + 1);
            }
            report.trainAccuracy = double(correct) / double(std::max<int64_t>(1, seen));
            report.epochs = epoch + 1;
        }
        report.steps = int(step);
        {
            torch::NoGradGuard ng;
            int64_t correct = 0;
            for (int64_t b = 0; b < nVal; b += 64) {
                at::Tensor idx = valIdx.narrow(0, b, std::min<int64_t>(64, nVal - b));
                correct += (logits(batchOf(idx)).argmax(1) == labelT.index_select(0, idx).to(device)).sum().item<int64_t>();
            }
            report.validationAccuracy = double(correct) / double(nVal);
        }
        model::StateDict classifier;
        classifier.insert("classifier.weight", head[0]);
        classifier.insert("classifier.bias", head[1]);
        if (parts > 0) {
            classifier.insert("patch_head.weight", partWeight().detach());
            classifier.insert("patch_head.bias", head[3]);
        }
        if (Status s = model::saveVitFile(o.outPath, toNamed(vit->stateDict()), toNamed(classifier)); !s)
            return s.error();
    } catch (const c10::Error &e) {
        return Error(std::string("training failed: ") + e.what_without_backtrace());
    } catch (const std::exception &e) {
        return Error(std::string("training failed: ") + e.what());
    }
    return report;
}

} // namespace cytosae::train
