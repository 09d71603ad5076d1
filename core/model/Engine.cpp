#include "model/Engine.h"

#include "common/Sha256.h"
#include "model/VitModel.h"

#include <torch/torch.h>
#include <torch/version.h>
#ifdef CYTOSAE_TORCH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include <algorithm>
#include <utility>
#include <thread>

namespace cytosae::model {

struct Engine::Impl {
    EngineParams params;
    VitModel vit;
    SaeModel sae;
    c10::Device device = c10::kCPU;
    int threads = 1;
    int maxBatch = 0; // images per forward after out-of-memory splits; 0: no limit
    std::vector<std::string> notices;
    std::function<Engine::InjectedFault(int, bool)> fault;
    bool simulatedAccelerator = false;

    bool onAccelerator() const { return device.is_cuda() || simulatedAccelerator; }
    std::string deviceName() const;
    Status moveToCpu();
    Result<std::vector<ImageActivations>> forward(const at::Tensor &pixels, const std::atomic<bool> *cancel);
};

namespace {

enum class FailureKind { None, OutOfMemory, Device, Other };

// What a forward attempt gave: results, or a failure classified for the fallback policy.
struct Attempt {
    Result<std::vector<ImageActivations>> result = Error("not run");
    FailureKind failure = FailureKind::None;
};

bool isOutOfMemory(const std::string &what)
{
    // CUDA: "CUDA out of memory. Tried to allocate ..."; the CPU allocator: "DefaultCPUAllocator:
    // not enough memory" / "can't allocate memory".
    return what.find("out of memory") != std::string::npos || what.find("not enough memory") != std::string::npos ||
           what.find("can't allocate memory") != std::string::npos;
}

} // namespace

std::string Engine::Impl::deviceName() const
{
    if (simulatedAccelerator)
        return "cuda:0 (simulated)";
    if (device.is_cuda())
        return "cuda:" + std::to_string(device.index() < 0 ? 0 : device.index());
    return "cpu (" + std::to_string(threads) + " threads)";
}

Status Engine::Impl::moveToCpu()
{
    try {
        vit.to(c10::Device(c10::kCPU));
        sae.to(c10::Device(c10::kCPU));
    } catch (const c10::Error &e) {
        return Error(std::string("cannot move the models to the CPU: ") + e.what_without_backtrace());
    }
    device = c10::Device(c10::kCPU);
    simulatedAccelerator = false;
    maxBatch = 0;
    return Status::success();
}

Engine::Engine(std::unique_ptr<Impl> impl) : m_impl(std::move(impl)) {}
Engine::~Engine() = default;

const VitInfo &Engine::vit() const { return m_impl->vit.info(); }
const SaeInfo &Engine::sae() const { return m_impl->sae.info(); }
const EngineParams &Engine::params() const { return m_impl->params; }

std::string Engine::deviceName() const
{
    return m_impl->deviceName();
}

std::vector<std::string> Engine::takeNotices()
{
    return std::exchange(m_impl->notices, {});
}

int Engine::maxBatch() const
{
    return m_impl->maxBatch;
}

void Engine::injectFaultsForTesting(std::function<InjectedFault(int, bool)> fault, bool simulateAccelerator)
{
    m_impl->fault = std::move(fault);
    m_impl->simulatedAccelerator = simulateAccelerator && !m_impl->device.is_cuda();
}

std::string runtimeSummary()
{
    std::string s = "LibTorch " TORCH_VERSION;
#ifdef CYTOSAE_TORCH_CUDA
    s += ", built with CUDA: ";
    try {
        const auto n = torch::cuda::device_count();
        s += n ? std::to_string(n) + " device(s) visible" : std::string("no device visible");
    } catch (const c10::Error &) {
        s += "not usable";
    }
#else
    s += ", CPU only (this LibTorch has no CUDA)";
#endif
    return s;
}

double Engine::flopsPerImage() const
{
    const VitInfo &v = vit();
    const int tokens = 1 + v.numRegisters + v.posGrid * v.posGrid;
    const int last = m_impl->params.clsEmbedding ? v.depth - 1 : sae().blockIndex;
    const double saeMacs = double(tokens) * sae().dIn * double(sae().dSae) * 2.0;
    return 2.0 * (m_impl->vit.macsThrough(last, tokens) + saeMacs);
}

Result<std::unique_ptr<Engine>> makeEngine(VitModel vit, SaeModel sae, const EngineParams &params)
{
    const VitInfo &v = vit.info();
    SaeInfo &s = sae.info();
    if (s.dIn != v.embedDim)
        return Error("the SAE expects d_in " + std::to_string(s.dIn) + " (W_enc is [" + std::to_string(s.dIn) + ", " +
                     std::to_string(s.dSae) + "]) but the ViT width is " + std::to_string(v.embedDim) +
                     " (pos_embed [1, " + std::to_string(1 + v.posGrid * v.posGrid) + ", " +
                     std::to_string(v.embedDim) + "]); these files do not belong together");
    s.blockIndex = s.blockLayer < 0 ? v.depth + s.blockLayer : s.blockLayer;
    if (s.blockIndex < 0 || s.blockIndex >= v.depth)
        return Error("the SAE reads block_layer " + std::to_string(s.blockLayer) + " but the ViT has " +
                     std::to_string(v.depth) + " blocks");
    if (params.topK < 1 || params.topK > 4096)
        return Error("top-k must be between 1 and 4096");
    if (params.saeChunk < 1)
        return Error("the SAE chunk size must be positive");

    auto impl = std::make_unique<Engine::Impl>();
    impl->params = params;
    impl->threads = params.threads > 0 ? params.threads : int(std::max(1u, std::thread::hardware_concurrency()));
    try {
        at::set_num_threads(impl->threads);
        bool cuda = false;
        if (params.device != DeviceChoice::Cpu)
            cuda = torch::cuda::is_available();
        if (params.device == DeviceChoice::Cuda && !cuda)
#ifdef CYTOSAE_TORCH_CUDA
            return Error("CUDA was requested (--device cuda) but no CUDA device is visible to this process (check "
                         "nvidia-smi and CUDA_VISIBLE_DEVICES); use --device auto to run on the CPU instead");
#else
            return Error("CUDA was requested (--device cuda) but this build uses a CPU-only LibTorch (" +
                         runtimeSummary() + "); use --device auto or cpu, or build against a CUDA LibTorch "
                         "(docs/install-cluster-gpu.md)");
#endif
        impl->device = cuda ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
        vit.to(impl->device);
        sae.to(impl->device);
    } catch (const c10::Error &e) {
        if (!impl->device.is_cuda())
            return Error(std::string("cannot place the models on the device: ") + e.what_without_backtrace());
        // The models did not fit on (or could not be copied to) the GPU: the CPU still works.
        impl->notices.push_back(std::string("cannot place the models on cuda:0 (") + e.what_without_backtrace() +
                                "); running on the CPU instead");
        try {
            impl->device = c10::Device(c10::kCPU);
            vit.to(impl->device);
            sae.to(impl->device);
        } catch (const c10::Error &e2) {
            return Error(std::string("cannot place the models on the CPU: ") + e2.what_without_backtrace());
        }
    }
    impl->vit = std::move(vit);
    impl->sae = std::move(sae);
    return std::make_unique<Engine>(std::move(impl));
}

Result<std::unique_ptr<Engine>> Engine::load(const EngineParams &params)
{
    auto vit = VitModel::load(params.vitPath, params.numHeads);
    if (!vit)
        return vit.error().withContext(params.vitPath);
    auto sae = SaeModel::load(params.saePath);
    if (!sae)
        return sae.error().withContext(params.saePath);
    if (auto h = sha256File(params.vitPath))
        vit->info().sha256 = *h;
    if (auto h = sha256File(params.saePath))
        sae->info().sha256 = *h;
    auto engine = makeEngine(std::move(vit.value()), std::move(sae.value()), params);
    if (!engine)
        return engine.error().withContext(params.saePath);
    return engine;
}

Result<std::vector<ImageActivations>> Engine::run(const std::vector<RgbView> &images, const std::atomic<bool> *cancel)
{
    const int size = vit().imageSize;
    const size_t perImage = size_t(3) * size_t(size) * size_t(size);
    std::vector<float> chw(perImage * images.size());
    for (const RgbView &img : images)
        if (!img.pixels || img.width < 1 || img.height < 1)
            return Error("empty image in batch");
    try {
        at::parallel_for(0, int64_t(images.size()), 1, [&](int64_t begin, int64_t end) {
            for (int64_t i = begin; i < end; ++i)
                preprocessToChw(images[size_t(i)], size, Normalization{}, chw.data() + size_t(i) * perImage);
        });
    } catch (const std::exception &e) {
        return Error(std::string("preprocessing failed: ") + e.what());
    }
    return runPreprocessed(chw.data(), int(images.size()), size, size, cancel);
}

Result<std::vector<ImageActivations>> Engine::runPreprocessed(const float *chw, int n, int height, int width,
                                                              const std::atomic<bool> *cancel)
{
    if (n <= 0)
        return std::vector<ImageActivations>{};
    const int p = vit().patchSize;
    if (height < p || width < p)
        return Error("input is " + std::to_string(height) + "x" + std::to_string(width) + ", smaller than one patch");
    Impl &d = *m_impl;
    const size_t perImage = size_t(3) * size_t(height) * size_t(width);

    // One forward of `count` images from `first`, its failure classified.
    auto attempt = [&](int first, int count) {
        Attempt a;
        try {
            if (d.fault) {
                const InjectedFault f = d.fault(count, d.onAccelerator());
                if (f == InjectedFault::OutOfMemory)
                    C10_THROW_ERROR(OutOfMemoryError, "CUDA out of memory. Tried to allocate 2.00 GiB (injected by a test)");
                if (f == InjectedFault::DeviceFailure)
                    C10_THROW_ERROR(Error, "CUDA error: an illegal memory access was encountered (injected by a test)");
            }
            c10::InferenceMode guard;
            at::Tensor pixels = torch::from_blob(const_cast<float *>(chw + size_t(first) * perImage),
                                                 {count, 3, height, width}, torch::kFloat)
                                    .to(d.device, false, true);
            a.result = d.forward(pixels, cancel);
            if (!a.result)
                a.failure = FailureKind::Other; // cancelled
        } catch (const c10::OutOfMemoryError &e) {
            a.result = Error(e.what_without_backtrace());
            a.failure = FailureKind::OutOfMemory;
        } catch (const c10::Error &e) {
            a.result = Error(e.what_without_backtrace());
            a.failure = isOutOfMemory(e.what_without_backtrace()) ? FailureKind::OutOfMemory
                        : d.onAccelerator()                       ? FailureKind::Device
                                                                  : FailureKind::Other;
        } catch (const std::bad_alloc &) {
            a.result = Error("out of memory");
            a.failure = FailureKind::OutOfMemory;
        } catch (const std::exception &e) {
            a.result = Error(e.what());
            a.failure = FailureKind::Other;
        }
        return a;
    };

    std::vector<ImageActivations> out;
    out.reserve(size_t(n));
    for (int done = 0; done < n;) {
        const int count = d.maxBatch > 0 ? std::min(d.maxBatch, n - done) : n - done;
        Attempt a = attempt(done, count);
        if (a.result) {
            for (auto &img : *a.result)
                out.push_back(std::move(img));
            done += count;
            continue;
        }
        if (a.failure == FailureKind::OutOfMemory && count > 1) {
            d.maxBatch = count / 2;
            d.notices.push_back("out of memory on " + d.deviceName() + " with " + std::to_string(count) +
                                " images per batch; continuing with " + std::to_string(d.maxBatch));
#ifdef CYTOSAE_TORCH_CUDA
            if (d.device.is_cuda())
                c10::cuda::CUDACachingAllocator::emptyCache();
#endif
            continue;
        }
        if ((a.failure == FailureKind::OutOfMemory || a.failure == FailureKind::Device) && d.onAccelerator()) {
            const std::string from = d.deviceName();
            if (Status s = d.moveToCpu(); !s)
                return Error("inference failed on " + from + " (" + a.result.message() + ") and " + s.message());
            d.notices.push_back("CUDA failed on " + from + " (" + a.result.message() + "); continuing on the CPU, " +
                                d.deviceName() + ", which is slower");
            continue;
        }
        if (cancel && cancel->load())
            return a.result.error();
        return Error("inference failed: " + a.result.message());
    }
    return out;
}

namespace {
std::vector<float> toVector(const at::Tensor &t)
{
    at::Tensor c = t.to(torch::kCPU).contiguous();
    return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}
} // namespace

Result<std::vector<ImageActivations>> Engine::Impl::forward(const at::Tensor &pixels, const std::atomic<bool> *cancel)
{
    auto cancelled = [&] { return cancel && cancel->load(std::memory_order_relaxed); };
    const SaeInfo &si = sae.info();
    const VitInfo &vi = vit.info();
    const int64_t batch = pixels.size(0);

    at::Tensor tokens = vit.embed(pixels);
    at::Tensor resid = vit.blocks(tokens, 0, si.blockIndex);
    at::Tensor cls;
    if (params.clsEmbedding)
        cls = vit.finalNorm(vit.blocks(resid, si.blockIndex + 1, vi.depth - 1).narrow(1, 0, 1)).squeeze(1);
    if (cancelled())
        return Error("cancelled");

    const int64_t numTokens = resid.size(1), dIn = resid.size(2), dSae = si.dSae;
    const int64_t prefix = 1 + vi.numRegisters;
    const int64_t rows = batch * numTokens;
    const int64_t k = std::min<int64_t>(params.topK, dSae);
    at::Tensor x = resid.reshape({rows, dIn});
    at::Tensor centered = x - sae.bDec();
    at::Tensor recon = torch::zeros({rows, dIn}, x.options());
    auto fopts = x.options();
    at::Tensor meanAgg = torch::empty({batch, dSae}, fopts);
    at::Tensor maxAgg = torch::empty({batch, dSae}, fopts);
    at::Tensor countAgg = torch::empty({batch, dSae}, fopts.dtype(torch::kInt));
    at::Tensor topV, topI;
    std::vector<at::Tensor> dense;

    // Encode a chunk of latents at a time: the dense [rows x d_sae] matrix never exists.
    for (int64_t c0 = 0; c0 < dSae; c0 += params.saeChunk) {
        if (cancelled())
            return Error("cancelled");
        const int64_t c = std::min<int64_t>(params.saeChunk, dSae - c0);
        at::Tensor f = torch::addmm(sae.bEnc().narrow(0, c0, c), centered, sae.wEnc().narrow(1, c0, c)).relu_();
        recon.addmm_(f, sae.wDec().narrow(0, c0, c));

        auto [v, i] = f.topk(std::min(k, c), 1);
        i.add_(c0);
        if (topV.defined()) {
            at::Tensor allV = torch::cat({topV, v}, 1), allI = torch::cat({topI, i}, 1);
            auto [mv, mi] = allV.topk(std::min<int64_t>(k, allV.size(1)), 1);
            topV = mv;
            topI = allI.gather(1, mi);
        } else {
            topV = v;
            topI = i;
        }

        at::Tensor f3 = f.view({batch, numTokens, c});
        meanAgg.narrow(1, c0, c).copy_(f3.mean(1));
        at::Tensor patches = f3.narrow(1, prefix, numTokens - prefix);
        maxAgg.narrow(1, c0, c).copy_(std::get<0>(patches.max(1)));
        countAgg.narrow(1, c0, c).copy_((patches > params.patchThreshold).sum(1, false, torch::kInt));
        if (params.keepDense)
            dense.push_back(f.to(torch::kCPU));
    }
    recon.add_(sae.bDec());

    at::Tensor diff = (recon - x).view({batch, numTokens, dIn});
    at::Tensor x3 = x.view({batch, numTokens, dIn});
    at::Tensor errNum = diff.pow(2).sum({1, 2});
    at::Tensor errDen = x3.pow(2).sum({1, 2}).clamp_min(1e-12);
    at::Tensor relErr = (errNum / errDen).to(torch::kCPU);
    at::Tensor mse = diff.pow(2).mean({1, 2}).to(torch::kCPU);

    at::Tensor topVc = topV.to(torch::kCPU).contiguous();
    at::Tensor topIc = topI.to(torch::kInt).to(torch::kCPU).contiguous();
    at::Tensor meanC = meanAgg.to(torch::kCPU).contiguous();
    at::Tensor maxC = maxAgg.to(torch::kCPU).contiguous();
    at::Tensor countC = countAgg.to(torch::kCPU).contiguous();
    at::Tensor clsC = cls.defined() ? cls.to(torch::kCPU).contiguous() : at::Tensor();
    at::Tensor denseAll = params.keepDense ? torch::cat(dense, 1) : at::Tensor();
    at::Tensor pixelsC = params.keepDense ? pixels.to(torch::kCPU).contiguous() : at::Tensor();
    at::Tensor residC = params.keepDense ? resid.to(torch::kCPU).contiguous() : at::Tensor();

    std::vector<ImageActivations> out(static_cast<size_t>(batch));
    for (int64_t b = 0; b < batch; ++b) {
        ImageActivations &a = out[size_t(b)];
        a.numTokens = int(numTokens);
        a.numPrefix = int(prefix);
        a.gridH = int(pixels.size(2) / vi.patchSize);
        a.gridW = int(pixels.size(3) / vi.patchSize);
        a.k = int(k);
        const float *tv = topVc.data_ptr<float>() + b * numTokens * k;
        const int32_t *ti = topIc.data_ptr<int32_t>() + b * numTokens * k;
        a.topValues.assign(tv, tv + numTokens * k);
        a.topIds.assign(ti, ti + numTokens * k);
        for (size_t j = 0; j < a.topValues.size(); ++j)
            if (!(a.topValues[j] > 0.0f)) {
                a.topValues[j] = 0.0f;
                a.topIds[j] = -1;
            }
        const float *mean = meanC.data_ptr<float>() + b * dSae;
        const float *mx = maxC.data_ptr<float>() + b * dSae;
        const int32_t *cnt = countC.data_ptr<int32_t>() + b * dSae;
        for (int64_t l = 0; l < dSae; ++l)
            if (mean[l] > 0.0f)
                a.latents.push_back({int32_t(l), mean[l], mx[l], cnt[l]});
        a.reconError = relErr[b].item<float>();
        a.reconMse = mse[b].item<float>();
        if (clsC.defined())
            a.cls = toVector(clsC[b]);
        if (params.keepDense) {
            a.inputPixels = toVector(pixelsC[b]);
            a.residual = toVector(residC[b]);
            a.denseLatents = toVector(denseAll.narrow(0, b * numTokens, numTokens));
        }
    }
    return out;
}

} // namespace cytosae::model
