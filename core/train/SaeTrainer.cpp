#include "train/SaeTrainer.h"

#include "model/ModelFiles.h"
#include "model/VitModel.h"
#include "train/Activations.h"
#include "train/SaeMath.h"

#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <thread>

namespace cytosae::train {

namespace {

// Tokens b_dec's geometric median is taken over (a seeded sample of the buffer).
constexpr int64_t kMedianSampleTokens = 32768;

std::vector<at::Tensor> parameters(const SaeParams &p) { return {p.wEnc, p.bEnc, p.wDec, p.bDec}; }

Status saveState(const std::string &path, const SaeParams &p, const torch::optim::Adam &adam, int step,
                 const at::Tensor &sinceFired)
{
    try {
        torch::serialize::OutputArchive archive;
        archive.write("W_enc", p.wEnc.detach().cpu());
        archive.write("b_enc", p.bEnc.detach().cpu());
        archive.write("W_dec", p.wDec.detach().cpu());
        archive.write("b_dec", p.bDec.detach().cpu());
        archive.write("since_fired", sinceFired.cpu());
        archive.write("step", torch::tensor(int64_t(step)));
        torch::serialize::OutputArchive opt;
        adam.save(opt);
        archive.write("adam", opt);
        const std::string tmp = path + ".tmp";
        archive.save_to(tmp);
        std::filesystem::rename(tmp, path);
    } catch (const std::exception &e) {
        return Error(path + ": cannot save the training state: " + e.what());
    }
    return Status::success();
}

} // namespace

Result<SaeTrainReport> trainSae(const std::vector<std::string> &imagePaths, const SaeTrainOptions &o,
                                const ProgressCallback &progress, const MetricsCallback &metrics,
                                const std::atomic<bool> *cancel)
{
    SaeTrainReport report;
    if (o.outPath.empty())
        return Error("no output file given");
    if (o.steps < 1 || o.batchImages < 1 || o.expansionFactor < 1)
        return Error("steps, batch and expansion factor must be positive");
    const int threads = o.threads > 0 ? o.threads : int(std::max(1u, std::thread::hardware_concurrency()));
    at::set_num_threads(threads);
    const bool cuda = o.device != model::DeviceChoice::Cpu && torch::cuda::is_available();
    if (o.device == model::DeviceChoice::Cuda && !cuda)
        return Error("CUDA was requested but no CUDA device is available to this LibTorch build");
    const c10::Device device = cuda ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
    report.device = cuda ? "cuda:0" : "cpu (" + std::to_string(threads) + " threads)";

    auto vit = model::VitModel::load(o.vitPath, o.numHeads);
    if (!vit)
        return vit.error().withContext(o.vitPath);
    const int depth = vit->info().depth;
    const int blockIndex = o.blockLayer < 0 ? depth + o.blockLayer : o.blockLayer;
    if (blockIndex < 0 || blockIndex >= depth)
        return Error("block " + std::to_string(o.blockLayer) + " does not exist in a ViT of depth " + std::to_string(depth));

    try {
        vit->to(device);
        // A seeded shuffle, so that a resumed training sees the same buffer.
        std::vector<std::string> paths = imagePaths;
        {
            at::Generator gen = at::detail::createCPUGenerator(o.seed);
            at::Tensor perm = torch::randperm(int64_t(paths.size()), gen, torch::kLong);
            std::vector<std::string> shuffled;
            for (int64_t i = 0; i < perm.size(0); ++i)
                shuffled.push_back(paths[size_t(perm[i].item<int64_t>())]);
            paths.swap(shuffled);
        }
        auto acts = collectActivations(*vit, paths, blockIndex, o.maxBufferTokens, device, progress, cancel);
        if (!acts) {
            if (cancel && cancel->load()) {
                report.cancelled = true;
                return report;
            }
            return acts.error();
        }
        at::Tensor buffer = acts->tokens.to(device);
        const int64_t nTokens = buffer.size(0), dIn = buffer.size(1), dSae = dIn * o.expansionFactor;
        const int64_t batch = std::min<int64_t>(nTokens, int64_t(o.batchImages) * acts->tokensPerImage);
        report.dIn = int(dIn);
        report.dSae = int(dSae);
        report.bufferTokens = nTokens;

        torch::manual_seed(o.seed);
        auto fopts = torch::TensorOptions().dtype(torch::kFloat).device(device);
        SaeParams p;
        p.wEnc = torch::nn::init::kaiming_uniform_(torch::empty({dIn, dSae}, fopts)).requires_grad_(true);
        p.bEnc = torch::zeros({dSae}, fopts).requires_grad_(true);
        p.wDec = torch::nn::init::kaiming_uniform_(torch::empty({dSae, dIn}, fopts)).requires_grad_(true);
        p.bDec = torch::zeros({dIn}, fopts).requires_grad_(true);
        normaliseDecoder(p);
        torch::optim::Adam adam(parameters(p), torch::optim::AdamOptions(o.lr));
        at::Tensor sinceFired = torch::zeros({dSae}, torch::TensorOptions().dtype(torch::kLong).device(device));

        const std::string statePath = o.statePath.empty() ? o.outPath + ".state" : o.statePath;
        int step = 0;
        if (o.resume && std::filesystem::exists(statePath)) {
            torch::serialize::InputArchive archive;
            archive.load_from(statePath, device);
            torch::NoGradGuard ng;
            // A fresh tensor per read: InputArchive::read into a defined tensor re-points it
            // (set_) instead of replacing it, which mixes dtypes across reads.
            auto read = [&](const char *name) {
                at::Tensor t;
                archive.read(name, t);
                return t;
            };
            for (auto [name, dst] : std::vector<std::pair<const char *, at::Tensor *>>{
                     {"W_enc", &p.wEnc}, {"b_enc", &p.bEnc}, {"W_dec", &p.wDec}, {"b_dec", &p.bDec}}) {
                const at::Tensor t = read(name);
                if (t.sizes() != dst->sizes())
                    return Error(statePath + ": the saved state has " + name + " of another shape; delete it to start over");
                dst->copy_(t);
            }
            sinceFired.copy_(read("since_fired"));
            step = int(read("step").item<int64_t>());
            torch::serialize::InputArchive opt;
            archive.read("adam", opt);
            adam.load(opt);
            report.resumed = true;
        } else {
            // b_dec: the geometric median of a sample of the whole buffer, as the reference
            // takes it over its activation store (not over the first batch only).
            torch::NoGradGuard ng;
            p.bDec.copy_(geometricMedian(medianSample(buffer, kMedianSampleTokens, o.seed + 7)));
        }

        ProgressMeter meter("training", o.steps, progress);
        meter.setAlreadyDone(step);
        TrainMetrics m;
        at::Generator gen = at::detail::createCPUGenerator(o.seed + 1);
        int64_t epoch = -1;
        at::Tensor perm;
        for (; step < o.steps; ++step) {
            if (cancel && cancel->load()) {
                report.cancelled = true;
                break;
            }
            const int64_t offset = (int64_t(step) * batch) % std::max<int64_t>(1, nTokens - nTokens % batch);
            const int64_t e = (int64_t(step) * batch) / std::max<int64_t>(1, nTokens - nTokens % batch);
            if (e != epoch) {
                // Regenerated from the seed on resume: the same order as an uninterrupted run.
                at::Generator g = at::detail::createCPUGenerator(o.seed + 1 + uint64_t(e));
                perm = torch::randperm(nTokens, g, torch::kLong).to(device);
                epoch = e;
            }
            at::Tensor x = buffer.index_select(0, perm.narrow(0, offset, batch));

            normaliseDecoder(p);
            const double lr = o.lr * std::min(1.0, double(step + 1) / double(std::max(1, o.warmupSteps)));
            for (auto &group : adam.param_groups())
                static_cast<torch::optim::AdamOptions &>(group.options()).lr(lr);
            adam.zero_grad();

            const at::Tensor deadMask = sinceFired > o.deadFeatureWindow;
            const SaeLoss terms = saeLoss(x, p, deadMask, o.l1Coefficient, o.ghostGrads);
            const at::Tensor &f = terms.f, &out = terms.out, &mse = terms.mse, &l1 = terms.l1, &ghost = terms.ghost;
            const int64_t dead = deadMask.sum().item<int64_t>();
            terms.loss.backward();
            removeParallelGradient(p);
            adam.step();
            {
                torch::NoGradGuard ng;
                at::Tensor fired = (f > 0).any(0);
                sinceFired.add_(1).masked_fill_(fired, 0);
            }

            if ((step + 1) % 10 == 0 || step + 1 == o.steps) {
                torch::NoGradGuard ng;
                m.step = step + 1;
                m.loss = terms.loss.item<double>();
                m.mse = mse.item<double>();
                m.l1 = l1.item<double>();
                m.ghost = ghost.item<double>();
                m.l0 = (f > 0).sum(1).to(torch::kFloat).mean().item<double>();
                m.explained = 1.0 - ((out - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum()).item<double>();
                m.deadLatents = int(dead);
                m.lr = lr;
                if (metrics)
                    metrics(m);
                meter.report(step + 1);
            }
            if (o.checkpointEvery > 0 && (step + 1) % o.checkpointEvery == 0 && step + 1 < o.steps)
                if (Status s = saveState(statePath, p, adam, step + 1, sinceFired); !s)
                    return s.error();
        }
        report.steps = step;
        report.last = m;
        if (report.cancelled) {
            if (Status s = saveState(statePath, p, adam, step, sinceFired); !s)
                return s.error();
            return report;
        }
        normaliseDecoder(p);

        model::SaeFileContent content;
        auto host = [](const at::Tensor &t) {
            at::Tensor c = t.detach().cpu().contiguous();
            return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
        };
        content.dIn = int(dIn);
        content.dSae = int(dSae);
        content.wEnc = host(p.wEnc);
        content.bEnc = host(p.bEnc);
        content.wDec = host(p.wDec);
        content.bDec = host(p.bDec);
        content.blockLayer = o.blockLayer;
        content.modelName = o.modelName;
        content.expansionFactor = o.expansionFactor;
        content.lr = o.lr;
        content.l1Coefficient = o.l1Coefficient;
        content.warmupSteps = o.warmupSteps;
        content.batchSize = o.batchImages;
        content.totalTrainingTokens = int64_t(o.steps) * batch;
        content.deadFeatureWindow = o.deadFeatureWindow;
        content.useGhostGrads = o.ghostGrads;
        content.seed = int64_t(o.seed);
        content.imageSize = vit->info().imageSize;
        if (Status s = model::saveSaeFile(o.outPath, content); !s)
            return s.error();
        std::error_code ec;
        std::filesystem::remove(statePath, ec);
        report.outPath = o.outPath;
    } catch (const c10::Error &e) {
        return Error(std::string("training failed: ") + e.what_without_backtrace());
    } catch (const std::exception &e) {
        return Error(std::string("training failed: ") + e.what());
    }
    return report;
}

} // namespace cytosae::train
