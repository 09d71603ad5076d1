#pragma once

// The inference engine: DINOv2 ViT (DinoBloom-B or any DINOv2 state dict) up to the SAE's
// block, then the CytoSAE sparse autoencoder, in LibTorch. This header has no LibTorch
// types, so callers do not compile LibTorch headers.
//
// Thread safety: an Engine is loaded once and then used from one thread at a time
// (run() is not reentrant). Loading is independent per Engine.
// Device: CUDA when available and requested ("auto"), otherwise the CPU. On the CPU the
// number of intra-op threads follows the machine (common/CpuShare): every core when the
// machine is idle, fewer while other processes compute, re-decided between batches (a fixed
// EngineParams::threads turns this off).
// Precision: fp32 is the reference computation (what the parity tests check). bf16 runs the
// ViT's matrix products in bfloat16 (oneDNN on CPUs with avx512_bf16 or AMX; tensor cores on
// CUDA) with the residual stream and LayerNorms in fp32, screens the SAE's latents with a
// bfloat16 product and recomputes every latent that can be active in fp32, so the SAE's own
// values are fp32-exact for the residual it gets. auto chooses bf16 only where the hardware
// has it and the first batch, run both ways, agrees (top-32 overlap >= 0.99 and image-level
// means within 1 %); otherwise fp32 (where the hardware has bf16, with the SAE's latents
// still screened in bf16 and computed exactly in fp32: the same values, faster).
// docs/precision.md has the measurements.
// Work that is not asked for is not done: the blocks after the SAE's block run only for the
// CLS embedding, and the reconstruction error is decoded from each token's active latents. "cuda" on a LibTorch or machine without CUDA is refused at load with a
// message saying which of the two it is. At run time the engine degrades instead of failing:
// out of memory -> the batch is split in halves (and later batches stay at that size); any
// other CUDA failure, or out of memory with a single image -> the models move to the CPU and
// the batch is run again there. Each step leaves a notice (takeNotices()) for the user.

#include "common/Result.h"
#include "model/Preprocess.h"

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace cytosae::model {

enum class DeviceChoice { Auto, Cpu, Cuda };
enum class Precision { Fp32, Bf16, Auto };

// "fp32", "bf16", "auto".
const char *precisionName(Precision p);
// Parses "fp32", "bf16" or "auto"; false for anything else.
bool parsePrecision(const std::string &text, Precision &out);
// Parses "auto", "cpu" or "cuda"; false for anything else.
bool parseDeviceChoice(const std::string &text, DeviceChoice &out);
// True when this CPU multiplies bfloat16 matrices natively (avx512_bf16 or AMX-BF16) and the
// LibTorch has oneDNN to use it.
bool cpuHasFastBf16();

struct VitInfo {
    int embedDim = 0;
    int depth = 0;
    int numHeads = 0;
    int patchSize = 0;
    int mlpHidden = 0;
    bool swiglu = false;
    int numRegisters = 0;
    int posGrid = 0;     // side of the stored position-embedding grid (16 for 224 px / 14)
    int imageSize = 224; // preprocessing target
    std::string source;  // "DinoBloom teacher checkpoint", "plain DINOv2 state dict", ...
    std::string sha256;
};

struct SaeInfo {
    int dIn = 0;
    int dSae = 0;
    int blockLayer = -2;        // as in the cfg; negative counts from the end
    int blockIndex = 0;         // resolved block whose output feeds the SAE
    std::string moduleName;     // "resid"
    std::string modelName;      // "dinov2_vitb14"
    std::string classToken;     // cfg.class_token as text ("None" when absent)
    int imageWidth = 0, imageHeight = 0;
    std::vector<std::pair<std::string, std::string>> config; // every cfg field, as text
    std::string sha256;
};

struct EngineParams {
    std::string vitPath;
    std::string saePath;
    DeviceChoice device = DeviceChoice::Auto;
    int threads = 0;               // 0: adaptive, up to one per core (common/CpuShare)
    Precision precision = Precision::Fp32;
    int topK = 32;                 // latents kept per token
    float patchThreshold = 0.2f;   // a patch "fires" a latent above this
    int saeChunk = 4096;           // latents per encode chunk: bounds memory to tokens x chunk
    int numHeads = 0;              // 0: infer (head_dim 64, or 16 for tiny models)
    bool clsEmbedding = true;      // also run the last blocks + final norm for the CLS embedding
    bool keepDense = false;        // keep input, residual, dense latents and reconstruction (--npy export)
};

// What Precision::Auto requires of bf16 against fp32 (the bounds).
constexpr double kAutoMinTopOverlap = 0.99;
constexpr double kAutoMaxMeanError = 0.01;

// How bf16 results agree with fp32 results on the same images (see compareActivations).
struct PrecisionAgreement {
    int images = 0;
    int64_t tokens = 0;
    double topOverlap = 1;     // mean over tokens of |top-32 ids fp32 n bf16| / max(|fp32|, |bf16|)
    double minTopOverlap = 1;  // the worst token
    double pooledOverlap = 1;  // sum over tokens of |n| / sum of max(|fp32|, |bf16|): tokens weighted
                               // by how many latents they hold (a token whose only latent is at
                               // noise level weighs 1, not 32)
    double meanRelError = 0;   // max over images of ||m_bf16 - m_fp32|| / ||m_fp32|| (image-level means)
    double flipShare = 0;      // patch-above-threshold decisions that differ / those above in fp32
                               // (counted on the top-k lists: exact when k covers every active latent)
    bool acceptable(double minOverlap = kAutoMinTopOverlap, double maxMeanError = kAutoMaxMeanError) const
    {
        return topOverlap >= minOverlap && meanRelError <= maxMeanError;
    }
};

// One active latent of one image (only latents whose token mean is > 0 are listed).
struct LatentAggregate {
    int32_t latent = 0;
    float mean = 0;       // mean over all tokens (CLS included): the paper's image-level value
    float maxPatch = 0;   // max over patch tokens
    int32_t patchesAbove = 0; // patch tokens above the threshold
};

struct ImageActivations {
    int numTokens = 0;   // 1 + registers + patches
    int numPrefix = 0;   // CLS + registers (patch tokens follow)
    int gridH = 0, gridW = 0;
    int k = 0;
    // [numTokens * k], strongest first; unused slots have id -1 and value 0.
    std::vector<int32_t> topIds;
    std::vector<float> topValues;
    std::vector<LatentAggregate> latents; // sorted by latent id
    float reconError = 0;  // sum ||x_hat - x||^2 / sum ||x||^2 over tokens
    float reconMse = 0;    // mean (x_hat - x)^2
    std::vector<float> cls; // final-norm CLS embedding (empty if not requested)
    // Only with EngineParams::keepDense:
    std::vector<float> inputPixels;  // [3, S, S]
    std::vector<float> residual;     // [numTokens, dIn]
    std::vector<float> denseLatents; // [numTokens, dSae]
    std::vector<float> reconstruction; // [numTokens, dIn]: the SAE's x_hat (decoded active latents + b_dec)
};

class Engine {
public:
    ~Engine();
    Engine(const Engine &) = delete;
    Engine &operator=(const Engine &) = delete;

    // Loads both checkpoints and checks they fit together. Errors name the file and the
    // problem ("SAE expects d_in 768 but the ViT width is 384").
    static Result<std::unique_ptr<Engine>> load(const EngineParams &params);

    const VitInfo &vit() const;
    const SaeInfo &sae() const;
    const EngineParams &params() const;
    std::string deviceName() const; // "cpu (2 threads)" or "cuda:0 (NVIDIA ...)"
    // The precision results are computed in: fp32 or bf16. With Precision::Auto it is settled by
    // the first batch (until then: what that batch will try).
    Precision precision() const;
    // Why this precision ("auto: bf16, the first batch agreed with fp32: ..."); empty for fp32 asked.
    std::string precisionReason() const;
    // True while Precision::Auto waits for its first batch.
    bool precisionPending() const;
    // Settles a pending Precision::Auto to `p` (fp32 or bf16) without the check: a resumed run
    // continues in the precision it started in. No effect once settled.
    void settlePrecision(Precision p, const std::string &reason);
    // The first batch's agreement check under Precision::Auto (images == 0 when none ran).
    PrecisionAgreement autoCheck() const;
    // Threads the last CPU forward used (adaptive unless EngineParams::threads is set).
    int threadsInUse() const;

    // Preprocesses and runs a batch. `cancel` (optional) is checked between stages.
    Result<std::vector<ImageActivations>> run(const std::vector<RgbView> &images,
                                              const std::atomic<bool> *cancel = nullptr);
    // Runs already preprocessed CHW float input [n, 3, S, S].
    Result<std::vector<ImageActivations>> runPreprocessed(const float *chw, int n, int height, int width,
                                                          const std::atomic<bool> *cancel = nullptr);

    // Multiply-accumulate count x2 of one image through the engine (for GFLOP/s figures).
    double flopsPerImage() const;

    // Sentences for the user about degradations since the last call ("out of memory on
    // cuda:0 with 8 images; continuing with 4 per batch", "CUDA failed ...; continuing on the
    // CPU"), oldest first; clears them.
    std::vector<std::string> takeNotices();
    // Images per forward after out-of-memory splits (0: no limit).
    int maxBatch() const;

    // Test seam (no GPU is needed): before every forward `fault(images, onAccelerator)` may
    // ask the engine to throw what a failing CUDA device throws; with simulateAccelerator the
    // CPU device is treated (and named) as "cuda:0 (simulated)" until a fallback moves it.
    enum class InjectedFault { None, OutOfMemory, DeviceFailure };
    void injectFaultsForTesting(std::function<InjectedFault(int images, bool onAccelerator)> fault,
                                bool simulateAccelerator);

    // Test seam: the device-generic SAE stage (plain tensor operations, as on CUDA) instead of
    // the CPU's sparse kernels, so the CUDA code path is checked on machines without a GPU.
    void useGenericPathForTesting(bool generic);
    // Benchmark seam: decode every latent densely (what the engine did before sparse decode).
    void useDenseDecodeForTesting(bool dense);
    // Test seam: what Precision::Auto requires of bf16 (default: overlap 0.99, means 1 %).
    void setAutoBoundsForTesting(double minOverlap, double maxMeanError);

    struct Impl;
    explicit Engine(std::unique_ptr<Impl> impl);
    Impl &impl() { return *m_impl; }

private:
    std::unique_ptr<Impl> m_impl;
};

// Agreement of `test` with `ref` (same images in the same order): top-`k` overlap per token
// (k = min(32, the lists' k)), image-level means, and patch-above-`threshold` decisions.
PrecisionAgreement compareActivations(const std::vector<ImageActivations> &ref, const std::vector<ImageActivations> &test,
                                      float threshold, int k = 32);

// "LibTorch 1.13.0, CPU only" or "LibTorch 2.5.1, CUDA: 2 devices" (for --version).
std::string runtimeSummary();

} // namespace cytosae::model
