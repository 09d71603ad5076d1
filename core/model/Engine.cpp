#include "model/Engine.h"

#include "common/CpuShare.h"
#include "common/Sha256.h"
#include "model/VitModel.h"

#include <torch/torch.h>
#include <torch/version.h>
#ifdef CYTOSAE_TORCH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <future>
#include <utility>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#endif

namespace cytosae::model {

// One active latent of one token (CPU path).
struct LatentEntry {
    int32_t id;
    float value;
};
using TokenLatents = std::vector<std::vector<LatentEntry>>; // per token row of the batch

struct Engine::Impl {
    EngineParams params;
    VitModel vit;
    SaeModel sae;
    c10::Device device = c10::kCPU;
    int threads = 1;      // the most threads a CPU forward uses
    int threadsInUse = 1; // what the last CPU forward used
    CpuShare share;
    Precision precision = Precision::Fp32; // fp32 or bf16: what results are computed in
    bool autoPending = false;              // Precision::Auto: the first batch decides
    std::string precisionReason;
    PrecisionAgreement autoCheck;
    bool screenSae = false;   // bf16, or auto that fell back to fp32 on hardware with fast bf16
    double autoMinOverlap = kAutoMinTopOverlap, autoMaxMeanError = kAutoMaxMeanError; // test seam
    bool generic = false;     // test seam: the device-generic SAE stage on the CPU too
    bool denseDecode = false; // benchmark seam: decode densely
    // bf16 SAE screening: W_enc's columns scaled to unit norm (bf16), the bias scaled alike,
    // and W_enc^T in fp32 to recompute each candidate exactly.
    at::Tensor wEncUnitH, bEncUnit, wEncT;
    int maxBatch = 0; // images per forward after out-of-memory splits; 0: no limit
    std::vector<std::string> notices;
    std::function<Engine::InjectedFault(int, bool)> fault;
    bool simulatedAccelerator = false;

    bool onAccelerator() const { return device.is_cuda() || simulatedAccelerator; }
    std::string deviceName() const;
    Status moveToCpu();
    void prepareBf16();
    Result<std::vector<ImageActivations>> forward(const at::Tensor &pixels, const std::atomic<bool> *cancel);
    // vitBf16: the ViT's products in bf16; screenSae: the SAE's latents screened in bf16 and
    // computed exactly in fp32 (the values are fp32 either way; false: dense fp32 products).
    Result<std::vector<ImageActivations>> forwardAt(const at::Tensor &pixels, bool vitBf16, bool screenSae,
                                                    const std::atomic<bool> *cancel);
    // The SAE stage on the CPU with sparse kernels: each token's active latents and the
    // decoded reconstruction (without b_dec). False when cancelled.
    bool saeSparseCpu(const at::Tensor &x, bool bf16, TokenLatents &latents, at::Tensor &recon,
                      const std::atomic<bool> *cancel);
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
        const c10::Device cpu(c10::kCPU);
        vit.to(cpu);
        sae.to(cpu);
        for (at::Tensor *t : {&wEncUnitH, &bEncUnit, &wEncT})
            if (t->defined())
                *t = t->to(cpu);
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

Precision Engine::precision() const
{
    return m_impl->precision;
}

std::string Engine::precisionReason() const
{
    return m_impl->precisionReason;
}

bool Engine::precisionPending() const
{
    return m_impl->autoPending;
}

void Engine::settlePrecision(Precision p, const std::string &reason)
{
    Impl &d = *m_impl;
    if (!d.autoPending || p == Precision::Auto)
        return;
    d.autoPending = false;
    d.precision = p;
    d.precisionReason = reason;
    if (p == Precision::Fp32)
        d.vit.prepareBf16(false); // the SAE stays screened: its values are fp32-exact
}

PrecisionAgreement Engine::autoCheck() const
{
    return m_impl->autoCheck;
}

int Engine::threadsInUse() const
{
    return m_impl->threadsInUse;
}

void Engine::useGenericPathForTesting(bool generic)
{
    m_impl->generic = generic;
}

void Engine::useDenseDecodeForTesting(bool dense)
{
    m_impl->denseDecode = dense;
}

void Engine::setAutoBoundsForTesting(double minOverlap, double maxMeanError)
{
    m_impl->autoMinOverlap = minOverlap;
    m_impl->autoMaxMeanError = maxMeanError;
}

const char *precisionName(Precision p)
{
    switch (p) {
    case Precision::Fp32: return "fp32";
    case Precision::Bf16: return "bf16";
    case Precision::Auto: return "auto";
    }
    return "fp32";
}

bool parsePrecision(const std::string &text, Precision &out)
{
    for (Precision p : {Precision::Fp32, Precision::Bf16, Precision::Auto})
        if (text == precisionName(p)) {
            out = p;
            return true;
        }
    return false;
}

bool parseDeviceChoice(const std::string &text, DeviceChoice &out)
{
    if (text == "auto")
        out = DeviceChoice::Auto;
    else if (text == "cpu")
        out = DeviceChoice::Cpu;
    else if (text == "cuda")
        out = DeviceChoice::Cuda;
    else
        return false;
    return true;
}

bool cpuHasFastBf16()
{
#if defined(__x86_64__) || defined(__i386__)
    if (!at::hasMKLDNN())
        return false;
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) // OSXSAVE
        return false;
    unsigned xcr0Lo = 0, xcr0Hi = 0;
    __asm__ volatile("xgetbv" : "=a"(xcr0Lo), "=d"(xcr0Hi) : "c"(0));
    const bool avx512State = (xcr0Lo & 0xE6u) == 0xE6u; // SSE, AVX, opmask, ZMM halves
    if (!avx512State || !__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return false;
    const bool amxBf16 = d & (1u << 22);
    const bool avx512f = b & (1u << 16);
    bool avx512Bf16 = false;
    if (__get_cpuid_count(7, 1, &a, &b, &c, &d))
        avx512Bf16 = a & (1u << 5);
    return avx512f && (avx512Bf16 || amxBf16);
#else
    return false;
#endif
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
    // The SAE encode; the decode is sparse (each token's active latents only) and negligible.
    const double saeMacs = double(tokens) * sae().dIn * double(sae().dSae);
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
    impl->threads = params.threads > 0 ? params.threads : CpuShare::availableCores();
    impl->share = CpuShare(impl->threads);
    impl->threadsInUse = impl->threads;
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

    // Precision: what was asked, what the hardware does fast, and (auto) the first batch decide.
    const bool fastBf16 = impl->device.is_cuda() || cpuHasFastBf16();
    const std::string hardware = impl->device.is_cuda() ? std::string("bf16 on CUDA")
                                 : fastBf16 ? std::string("this CPU multiplies bf16 natively (avx512_bf16/AMX)")
                                            : std::string("this CPU has no avx512_bf16 or AMX");
    if (params.precision == Precision::Bf16) {
        impl->precision = Precision::Bf16;
        impl->precisionReason = "bf16 as asked; " + hardware;
        if (!fastBf16)
            impl->notices.push_back("bf16 was asked for, but " + hardware + ": bf16 will be slower than fp32 here");
    } else if (params.precision == Precision::Auto && fastBf16) {
        impl->precision = Precision::Bf16;
        impl->autoPending = true;
        impl->precisionReason = "auto: " + hardware + "; the first batch is run in both precisions to decide";
    } else if (params.precision == Precision::Auto) {
        impl->precisionReason = "auto: fp32, because " + hardware;
    }
    if (impl->precision == Precision::Bf16) {
        impl->screenSae = true;
        try {
            impl->prepareBf16();
        } catch (const c10::Error &e) {
            return Error(std::string("cannot prepare the bf16 weights: ") + e.what_without_backtrace());
        }
    }
    return std::make_unique<Engine>(std::move(impl));
}

Result<std::unique_ptr<Engine>> Engine::load(const EngineParams &params)
{
    // The files' SHA-256 (the models' identity in a project) beside the parsing: ~2 s of the
    // published files' load otherwise.
    auto hashes = std::async(std::launch::async, [&params] {
        return std::pair{sha256File(params.vitPath), sha256File(params.saePath)};
    });
    auto vit = VitModel::load(params.vitPath, params.numHeads);
    if (!vit)
        return vit.error().withContext(params.vitPath);
    auto sae = SaeModel::load(params.saePath);
    if (!sae)
        return sae.error().withContext(params.saePath);
    auto [vitHash, saeHash] = hashes.get();
    if (vitHash)
        vit->info().sha256 = *vitHash;
    if (saeHash)
        sae->info().sha256 = *saeHash;
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

    // Threads: as many as the machine has free now (or the fixed number asked for). OpenMP keeps
    // the count per calling thread, so it is set here, in the thread that runs the forward.
    if (!d.device.is_cuda()) {
        d.threadsInUse = d.params.threads > 0 ? d.threads : d.share.next();
        at::set_num_threads(d.threadsInUse);
    }

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
    at::Tensor c = t.to(torch::kCPU).to(torch::kFloat).contiguous();
    return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

// bf16 screening bound. With W_enc's columns at unit norm, a bf16 product with fp32
// accumulation and a bf16 result differs from the exact x.w by at most
// (2u + u^2)|x| (inputs rounded) + u|x| (result rounded) + n 2^-24 |x| (fp32 sums),
// u = 2^-9; so a latent whose fp32 pre-activation is > 0 always screens above -kScreen |x|.
constexpr float kScreen = float(3.0 / 512.0 + 1.0 / 4096.0);
// Above this share of active latents in a chunk, a dense product decodes faster than gathers.
constexpr int64_t kDenseDecodeDivisor = 32;

inline float bf16Value(const c10::BFloat16 &h)
{
    uint16_t bits;
    std::memcpy(&bits, &h, sizeof bits);
    const uint32_t wide = uint32_t(bits) << 16;
    float f;
    std::memcpy(&f, &wide, sizeof f);
    return f;
}

float dotScalar(const float *a, const float *b, int64_t n)
{
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; ++l)
            acc[l] += a[i + l] * b[i + l];
    float tail = 0;
    for (; i < n; ++i)
        tail += a[i] * b[i];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail;
}

void axpyScalar(float a, const float *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; ++i)
        y[i] += a * x[i];
}

// Indices j where bf16 z[j] + bias[j] > floor.
void screenScalar(const c10::BFloat16 *z, const float *bias, float floor, int64_t c, std::vector<int32_t> &out)
{
    for (int64_t j = 0; j < c; ++j)
        if (bf16Value(z[j]) + bias[j] > floor)
            out.push_back(int32_t(j));
}

#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// The same three kernels in AVX-512 (compiled for it here, chosen at run time): the build
// targets baseline x86-64, and these loops are most of the bf16 path's time outside the GEMMs.
#define CYTOSAE_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,fma")))

CYTOSAE_AVX512 float dotAvx512(const float *a, const float *b, int64_t n)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    }
    float sum = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
    for (; i < n; ++i)
        sum += a[i] * b[i];
    return sum;
}

CYTOSAE_AVX512 void axpyAvx512(float a, const float *x, float *y, int64_t n)
{
    const __m512 av = _mm512_set1_ps(a);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(av, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    for (; i < n; ++i)
        y[i] += a * x[i];
}

CYTOSAE_AVX512 void screenAvx512(const c10::BFloat16 *z, const float *bias, float floor, int64_t c,
                                 std::vector<int32_t> &out)
{
    const __m512 fl = _mm512_set1_ps(floor);
    const auto *raw = reinterpret_cast<const uint16_t *>(z);
    int64_t j = 0;
    for (; j + 16 <= c; j += 16) {
        const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(raw + j));
        const __m512 v = _mm512_add_ps(_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)),
                                       _mm512_loadu_ps(bias + j));
        for (__mmask16 m = _mm512_cmp_ps_mask(v, fl, _CMP_GT_OQ); m; m &= __mmask16(m - 1))
            out.push_back(int32_t(j + __builtin_ctz(m)));
    }
    for (; j < c; ++j)
        if (bf16Value(z[j]) + bias[j] > floor)
            out.push_back(int32_t(j));
}

#pragma GCC diagnostic pop

bool hasAvx512()
{
    static const bool yes = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                            __builtin_cpu_supports("avx512vl");
    return yes;
}

float dot(const float *a, const float *b, int64_t n)
{
    return hasAvx512() ? dotAvx512(a, b, n) : dotScalar(a, b, n);
}
void axpy(float a, const float *x, float *y, int64_t n)
{
    hasAvx512() ? axpyAvx512(a, x, y, n) : axpyScalar(a, x, y, n);
}
void screen(const c10::BFloat16 *z, const float *bias, float floor, int64_t c, std::vector<int32_t> &out)
{
    hasAvx512() ? screenAvx512(z, bias, floor, c, out) : screenScalar(z, bias, floor, c, out);
}
#else
float dot(const float *a, const float *b, int64_t n) { return dotScalar(a, b, n); }
void axpy(float a, const float *x, float *y, int64_t n) { axpyScalar(a, x, y, n); }
void screen(const c10::BFloat16 *z, const float *bias, float floor, int64_t c, std::vector<int32_t> &out)
{
    screenScalar(z, bias, floor, c, out);
}
#endif

} // namespace

void Engine::Impl::prepareBf16()
{
    c10::InferenceMode guard;
    vit.prepareBf16(true);
    const at::Tensor norms = sae.wEnc().norm(2, {0});                       // [d_sae]
    const at::Tensor scale = torch::where(norms > 1e-12, norms.reciprocal(), torch::ones_like(norms));
    // [d_sae, d_in]: a chunk of latents is a contiguous block (oneDNN is 1.5x slower on a
    // strided right-hand side).
    wEncUnitH = (sae.wEnc() * scale).t().to(torch::kBFloat16).contiguous();
    bEncUnit = (sae.bEnc() * scale).contiguous();
    wEncT = sae.wEnc().t().contiguous();                                     // [d_sae, d_in]
#if defined(CYTOSAE_TORCH_CUDA) && TORCH_VERSION_MAJOR >= 2
    // The screening bound assumes fp32 accumulation inside cuBLAS.
    at::globalContext().setAllowBF16ReductionCuBLAS(false);
#endif
}

bool Engine::Impl::saeSparseCpu(const at::Tensor &x, bool bf16, TokenLatents &latents, at::Tensor &recon,
                                const std::atomic<bool> *cancel)
{
    const int64_t rows = x.size(0), dIn = x.size(1), dSae = sae.info().dSae;
    const at::Tensor centered = (x - sae.bDec()).contiguous();
    recon = torch::zeros({rows, dIn}, x.options());
    latents.assign(size_t(rows), {});
    float *rc = recon.data_ptr<float>();
    const float *cp = centered.data_ptr<float>();
    const float *wDec = sae.wDec().data_ptr<float>();
    const float *bEnc = sae.bEnc().data_ptr<float>();
    at::Tensor centeredH, rowFloor;
    if (bf16) {
        centeredH = centered.to(torch::kBFloat16);
        rowFloor = (centered.norm(2, {1}) * -kScreen).contiguous();
    }
    std::vector<size_t> before(static_cast<size_t>(rows), 0);
    for (int64_t c0 = 0; c0 < dSae; c0 += params.saeChunk) {
        if (cancel && cancel->load(std::memory_order_relaxed))
            return false;
        const int64_t c = std::min<int64_t>(params.saeChunk, dSae - c0);
        at::Tensor z = bf16 ? torch::linear(centeredH, wEncUnitH.narrow(0, c0, c))
                            : torch::addmm(sae.bEnc().narrow(0, c0, c), centered, sae.wEnc().narrow(1, c0, c));

        // Each token's active latents in this chunk (fp32: the product itself; bf16: every
        // latent that can be active, recomputed exactly).
        at::parallel_for(0, rows, 8, [&](int64_t r0, int64_t r1) {
            std::vector<int32_t> candidates;
            for (int64_t r = r0; r < r1; ++r) {
                auto &list = latents[size_t(r)];
                before[size_t(r)] = list.size();
                if (!bf16) {
                    const float *zr = z.data_ptr<float>() + r * c;
                    for (int64_t j = 0; j < c; ++j)
                        if (zr[j] > 0.0f)
                            list.push_back({int32_t(c0 + j), zr[j]});
                    continue;
                }
                const c10::BFloat16 *zr = z.data_ptr<c10::BFloat16>() + r * c;
                const float *xr = cp + r * dIn;
                candidates.clear();
                screen(zr, bEncUnit.data_ptr<float>() + c0, rowFloor.data_ptr<float>()[r], c, candidates);
                for (int32_t j : candidates) {
                    const int64_t id = c0 + j;
                    const float v = dot(xr, wEncT.data_ptr<float>() + id * dIn, dIn) + bEnc[id];
                    if (v > 0.0f)
                        list.push_back({int32_t(id), v});
                }
            }
        });
        int64_t active = 0;
        for (int64_t r = 0; r < rows; ++r)
            active += int64_t(latents[size_t(r)].size() - before[size_t(r)]);
        if (!bf16 && (denseDecode || active * kDenseDecodeDivisor > rows * c)) {
            recon.addmm_(z.relu_(), sae.wDec().narrow(0, c0, c));
            continue;
        }
        // Sparse decode: each token adds the decoder rows of its active latents.
        at::parallel_for(0, rows, 8, [&](int64_t r0, int64_t r1) {
            for (int64_t r = r0; r < r1; ++r) {
                const auto &list = latents[size_t(r)];
                for (size_t e = before[size_t(r)]; e < list.size(); ++e)
                    axpy(list[e].value, wDec + int64_t(list[e].id) * dIn, rc + r * dIn, dIn);
            }
        });
    }
    return true;
}

Result<std::vector<ImageActivations>> Engine::Impl::forward(const at::Tensor &pixels, const std::atomic<bool> *cancel)
{
    if (!autoPending)
        return forwardAt(pixels, precision == Precision::Bf16, screenSae, cancel);
    // Precision::Auto: the first batch in bf16 and (up to kAutoCheckImages of it) in the
    // reference fp32; bf16 stays only if they agree.
    constexpr int64_t kAutoCheckImages = 4; // ~1,000 tokens: enough to tell 0.99 from 0.97
    const int64_t checked = std::min<int64_t>(kAutoCheckImages, pixels.size(0));
    auto exact = forwardAt(pixels.narrow(0, 0, checked), false, false, cancel);
    if (!exact)
        return exact;
    auto fast = forwardAt(pixels, true, true, cancel);
    if (!fast)
        return fast;
    const std::vector<ImageActivations> fastChecked(fast->begin(), fast->begin() + checked);
    autoCheck = compareActivations(*exact, fastChecked, params.patchThreshold);
    autoPending = false;
    char figures[200];
    std::snprintf(figures, sizeof figures, "top-32 overlap %.4f, image-level means within %.2f %%, %.2f %% of patch decisions flip",
                  autoCheck.topOverlap, 100.0 * autoCheck.meanRelError, 100.0 * autoCheck.flipShare);
    const std::string on = "on the first " + std::to_string(autoCheck.images) + " images (" +
                           std::to_string(autoCheck.tokens) + " tokens) ";
    if (autoCheck.acceptable(autoMinOverlap, autoMaxMeanError)) {
        precisionReason = "auto: bf16; " + on + "bf16 agreed with fp32: " + figures;
        return fast;
    }
    // fp32 for the ViT; the SAE's latents stay screened in bf16 and computed exactly in fp32,
    // which gives the fp32 values (tst_engine checks them against dense fp32), faster.
    precision = Precision::Fp32;
    char bounds[120];
    std::snprintf(bounds, sizeof bounds, "needs overlap >= %.2f and means within %.0f %%", kAutoMinTopOverlap,
                  100.0 * kAutoMaxMeanError);
    precisionReason = "auto: fp32; " + on + "bf16 did not agree well enough with fp32 (" + bounds + "): " +
                      std::string(figures) +
                      "; the SAE's latents are still screened in bf16 and computed exactly in fp32";
    notices.push_back(precisionReason);
    vit.prepareBf16(false);
    if (checked == pixels.size(0))
        return exact;
    auto rest = forwardAt(pixels.narrow(0, checked, pixels.size(0) - checked), false, true, cancel);
    if (!rest)
        return rest;
    for (auto &a : *rest)
        exact->push_back(std::move(a));
    return exact;
}

// `bf16` below is the SAE stage's screening (see the declaration); the values stay fp32.
Result<std::vector<ImageActivations>> Engine::Impl::forwardAt(const at::Tensor &pixels, bool vitBf16, bool bf16,
                                                              const std::atomic<bool> *cancel)
{
    auto cancelled = [&] { return cancel && cancel->load(std::memory_order_relaxed); };
    const SaeInfo &si = sae.info();
    const VitInfo &vi = vit.info();
    const int64_t batch = pixels.size(0);

    at::Tensor tokens = vit.embed(pixels);
    at::Tensor resid = vit.blocks(tokens, 0, si.blockIndex, vitBf16);
    at::Tensor cls;
    if (params.clsEmbedding) // the blocks after the SAE's only for the CLS embedding
        cls = vit.finalNorm(vit.blocks(resid, si.blockIndex + 1, vi.depth - 1, vitBf16).narrow(1, 0, 1)).squeeze(1);
    if (cancelled())
        return Error("cancelled");

    const int64_t numTokens = resid.size(1), dIn = resid.size(2), dSae = si.dSae;
    const int64_t prefix = 1 + vi.numRegisters;
    const int64_t rows = batch * numTokens;
    const int64_t k = std::min<int64_t>(params.topK, dSae);
    at::Tensor x = resid.reshape({rows, dIn}).contiguous();

    std::vector<ImageActivations> out(static_cast<size_t>(batch));
    for (int64_t b = 0; b < batch; ++b) {
        ImageActivations &a = out[size_t(b)];
        a.numTokens = int(numTokens);
        a.numPrefix = int(prefix);
        a.gridH = int(pixels.size(2) / vi.patchSize);
        a.gridW = int(pixels.size(3) / vi.patchSize);
        a.k = int(k);
        a.topIds.assign(size_t(numTokens * k), -1);
        a.topValues.assign(size_t(numTokens * k), 0.0f);
    }
    at::Tensor recon; // decoded, without b_dec
    at::Tensor denseAll;

    if (!device.is_cuda() && !generic) {
        TokenLatents latents;
        if (!saeSparseCpu(x, bf16, latents, recon, cancel))
            return Error("cancelled");
        // Per token: the k strongest; per image: mean over tokens, max and count over patches.
        at::parallel_for(0, batch, 1, [&](int64_t b0, int64_t b1) {
            std::vector<float> sum(size_t(dSae), 0.0f), mx(size_t(dSae), 0.0f);
            std::vector<int32_t> count(size_t(dSae), 0);
            std::vector<int32_t> touched;
            for (int64_t b = b0; b < b1; ++b) {
                ImageActivations &a = out[size_t(b)];
                touched.clear();
                for (int64_t t = 0; t < numTokens; ++t) {
                    auto &list = latents[size_t(b * numTokens + t)];
                    const bool patch = t >= prefix;
                    for (const LatentEntry &e : list) {
                        const size_t id = size_t(e.id);
                        if (sum[id] == 0.0f && count[id] == 0 && mx[id] == 0.0f)
                            touched.push_back(e.id);
                        sum[id] += e.value;
                        if (patch) {
                            mx[id] = std::max(mx[id], e.value);
                            count[id] += e.value > params.patchThreshold ? 1 : 0;
                        }
                    }
                    const size_t keep = std::min(size_t(k), list.size());
                    std::partial_sort(list.begin(), list.begin() + ptrdiff_t(keep), list.end(),
                                      [](const LatentEntry &p, const LatentEntry &q) {
                                          return p.value > q.value || (p.value == q.value && p.id < q.id);
                                      });
                    for (size_t j = 0; j < keep; ++j) {
                        a.topIds[size_t(t * k) + j] = list[j].id;
                        a.topValues[size_t(t * k) + j] = list[j].value;
                    }
                }
                std::sort(touched.begin(), touched.end());
                touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
                for (int32_t id : touched) {
                    const float mean = sum[size_t(id)] / float(numTokens);
                    if (mean > 0.0f)
                        a.latents.push_back({id, mean, mx[size_t(id)], count[size_t(id)]});
                    sum[size_t(id)] = mx[size_t(id)] = 0.0f;
                    count[size_t(id)] = 0;
                }
            }
        });
        if (params.keepDense) {
            denseAll = torch::zeros({rows, dSae}, x.options());
            float *dp = denseAll.data_ptr<float>();
            for (int64_t r = 0; r < rows; ++r)
                for (const LatentEntry &e : latents[size_t(r)])
                    dp[r * dSae + e.id] = e.value;
        }
    } else {
        // Device-generic (CUDA): the same computation in tensor operations.
        const at::Tensor centered = x - sae.bDec();
        recon = torch::zeros({rows, dIn}, x.options());
        auto fopts = x.options();
        at::Tensor meanAgg = torch::empty({batch, dSae}, fopts);
        at::Tensor maxAgg = torch::empty({batch, dSae}, fopts);
        at::Tensor countAgg = torch::empty({batch, dSae}, fopts.dtype(torch::kInt));
        at::Tensor topV, topI, centeredH, rowFloor;
        std::vector<at::Tensor> dense;
        if (bf16) {
            centeredH = centered.to(torch::kBFloat16);
            rowFloor = centered.norm(2, {1}, true) * -kScreen;
        }
        for (int64_t c0 = 0; c0 < dSae; c0 += params.saeChunk) {
            if (cancelled())
                return Error("cancelled");
            const int64_t c = std::min<int64_t>(params.saeChunk, dSae - c0);
            at::Tensor f;
            if (!bf16) {
                f = torch::addmm(sae.bEnc().narrow(0, c0, c), centered, sae.wEnc().narrow(1, c0, c)).relu_();
            } else {
                at::Tensor screen = torch::linear(centeredH, wEncUnitH.narrow(0, c0, c)).to(torch::kFloat) +
                                    bEncUnit.narrow(0, c0, c);
                at::Tensor idx = (screen > rowFloor).nonzero();
                at::Tensor r = idx.select(1, 0), j = idx.select(1, 1);
                at::Tensor v = (centered.index_select(0, r) * wEncT.narrow(0, c0, c).index_select(0, j)).sum(1) +
                               sae.bEnc().narrow(0, c0, c).index_select(0, j);
                f = torch::zeros({rows, c}, fopts);
                f.index_put_({r, j}, v.relu());
            }
            at::Tensor nz = f.nonzero();
            if (nz.size(0) * kDenseDecodeDivisor > rows * c) {
                recon.addmm_(f, sae.wDec().narrow(0, c0, c));
            } else {
                at::Tensor r = nz.select(1, 0), j = nz.select(1, 1);
                recon.index_add_(0, r, sae.wDec().narrow(0, c0, c).index_select(0, j) * f.index({r, j}).unsqueeze(1));
            }

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
        at::Tensor topVc = topV.to(torch::kCPU).contiguous();
        at::Tensor topIc = topI.to(torch::kInt).to(torch::kCPU).contiguous();
        at::Tensor meanC = meanAgg.to(torch::kCPU).contiguous();
        at::Tensor maxC = maxAgg.to(torch::kCPU).contiguous();
        at::Tensor countC = countAgg.to(torch::kCPU).contiguous();
        for (int64_t b = 0; b < batch; ++b) {
            ImageActivations &a = out[size_t(b)];
            const float *tv = topVc.data_ptr<float>() + b * numTokens * k;
            const int32_t *ti = topIc.data_ptr<int32_t>() + b * numTokens * k;
            for (size_t j = 0; j < size_t(numTokens * k); ++j)
                if (tv[j] > 0.0f) {
                    a.topValues[j] = tv[j];
                    a.topIds[j] = ti[j];
                }
            const float *mean = meanC.data_ptr<float>() + b * dSae;
            const float *mx = maxC.data_ptr<float>() + b * dSae;
            const int32_t *cnt = countC.data_ptr<int32_t>() + b * dSae;
            for (int64_t l = 0; l < dSae; ++l)
                if (mean[l] > 0.0f)
                    a.latents.push_back({int32_t(l), mean[l], mx[l], cnt[l]});
        }
        if (params.keepDense)
            denseAll = torch::cat(dense, 1);
    }

    // Reconstruction error from the decoded active latents.
    at::Tensor diff = (recon + sae.bDec() - x).view({batch, numTokens, dIn});
    at::Tensor x3 = x.view({batch, numTokens, dIn});
    at::Tensor errNum = diff.pow(2).sum({1, 2});
    at::Tensor errDen = x3.pow(2).sum({1, 2}).clamp_min(1e-12);
    at::Tensor relErr = (errNum / errDen).to(torch::kCPU);
    at::Tensor mse = diff.pow(2).mean({1, 2}).to(torch::kCPU);
    at::Tensor clsC = cls.defined() ? cls.to(torch::kCPU).to(torch::kFloat).contiguous() : at::Tensor();
    at::Tensor pixelsC = params.keepDense ? pixels.to(torch::kCPU).contiguous() : at::Tensor();
    at::Tensor residC = params.keepDense ? resid.to(torch::kCPU).contiguous() : at::Tensor();
    at::Tensor reconC = params.keepDense ? (recon + sae.bDec()).to(torch::kCPU).contiguous() : at::Tensor();
    for (int64_t b = 0; b < batch; ++b) {
        ImageActivations &a = out[size_t(b)];
        a.reconError = relErr[b].item<float>();
        a.reconMse = mse[b].item<float>();
        if (clsC.defined())
            a.cls = toVector(clsC[b]);
        if (params.keepDense) {
            a.inputPixels = toVector(pixelsC[b]);
            a.residual = toVector(residC[b]);
            a.denseLatents = toVector(denseAll.narrow(0, b * numTokens, numTokens));
            a.reconstruction = toVector(reconC.narrow(0, b * numTokens, numTokens));
        }
    }
    return out;
}

PrecisionAgreement compareActivations(const std::vector<ImageActivations> &ref, const std::vector<ImageActivations> &test,
                                      float threshold, int k)
{
    PrecisionAgreement agg;
    double overlapSum = 0;
    int64_t flips = 0, aboveRef = 0, commonAll = 0, denomAll = 0;
    const size_t n = std::min(ref.size(), test.size());
    for (size_t i = 0; i < n; ++i) {
        const ImageActivations &a = ref[i], &b = test[i];
        if (a.numTokens != b.numTokens || a.k != b.k)
            continue;
        ++agg.images;
        const int kk = std::min(k, a.k);
        for (int t = 0; t < a.numTokens; ++t) {
            std::vector<int32_t> sa, sb;
            for (int j = 0; j < kk; ++j) {
                if (a.topIds[size_t(t * a.k + j)] >= 0)
                    sa.push_back(a.topIds[size_t(t * a.k + j)]);
                if (b.topIds[size_t(t * b.k + j)] >= 0)
                    sb.push_back(b.topIds[size_t(t * b.k + j)]);
            }
            std::sort(sa.begin(), sa.end());
            std::sort(sb.begin(), sb.end());
            std::vector<int32_t> common;
            std::set_intersection(sa.begin(), sa.end(), sb.begin(), sb.end(), std::back_inserter(common));
            const size_t denom = std::max(sa.size(), sb.size());
            const double overlap = denom ? double(common.size()) / double(denom) : 1.0;
            commonAll += int64_t(common.size());
            denomAll += int64_t(denom);
            overlapSum += overlap;
            agg.minTopOverlap = std::min(agg.minTopOverlap, overlap);
            ++agg.tokens;
            if (t < a.numPrefix)
                continue;
            // Above-threshold decisions of this patch, from the full top-k lists.
            std::vector<int32_t> ua, ub;
            for (int j = 0; j < a.k; ++j) {
                if (a.topIds[size_t(t * a.k + j)] >= 0 && a.topValues[size_t(t * a.k + j)] > threshold)
                    ua.push_back(a.topIds[size_t(t * a.k + j)]);
                if (b.topIds[size_t(t * b.k + j)] >= 0 && b.topValues[size_t(t * b.k + j)] > threshold)
                    ub.push_back(b.topIds[size_t(t * b.k + j)]);
            }
            std::sort(ua.begin(), ua.end());
            std::sort(ub.begin(), ub.end());
            std::vector<int32_t> differ;
            std::set_symmetric_difference(ua.begin(), ua.end(), ub.begin(), ub.end(), std::back_inserter(differ));
            flips += int64_t(differ.size());
            aboveRef += int64_t(ua.size());
        }
        // Image-level means: relative L2 distance over the union of active latents.
        double num = 0, den = 0;
        size_t p = 0, q = 0;
        while (p < a.latents.size() || q < b.latents.size()) {
            const bool takeA = q >= b.latents.size() || (p < a.latents.size() && a.latents[p].latent < b.latents[q].latent);
            const bool takeB = p >= a.latents.size() || (q < b.latents.size() && b.latents[q].latent < a.latents[p].latent);
            double va = 0, vb = 0;
            if (takeA) {
                va = a.latents[p++].mean;
            } else if (takeB) {
                vb = b.latents[q++].mean;
            } else {
                va = a.latents[p++].mean;
                vb = b.latents[q++].mean;
            }
            num += (va - vb) * (va - vb);
            den += va * va;
        }
        agg.meanRelError = std::max(agg.meanRelError, den > 0 ? std::sqrt(num / den) : (num > 0 ? 1.0 : 0.0));
    }
    agg.topOverlap = agg.tokens ? overlapSum / double(agg.tokens) : 1.0;
    agg.flipShare = aboveRef ? double(flips) / double(aboveRef) : 0.0;
    agg.pooledOverlap = denomAll ? double(commonAll) / double(denomAll) : 1.0;
    return agg;
}

} // namespace cytosae::model
