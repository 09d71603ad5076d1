// Engine benchmark (issue 2): a full-size ViT-B/14 + 768x49152 SAE with random weights,
// built in memory, batch 8 on all cores. Reports images/s, achieved GFLOP/s, and the plain
// sgemm GFLOP/s of this machine measured in the same run, with their ratio (target >= 0.8),
// and the peak resident memory (target < 2 GB).
//
// Usage: bench_engine [--batches N] [--batch B] [--threads T]

#include "model/Engine.h"
#include "model/VitModel.h"
#include "RandomModels.h"

#include <torch/torch.h>

#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <thread>

using namespace cytosae::model;

namespace {

double seconds(std::chrono::steady_clock::time_point a)
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count();
}

double peakRssMb()
{
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return double(u.ru_maxrss) / 1024.0;
}

double sgemmGflops(int n, int repeats)
{
    at::Tensor a = torch::randn({n, n}), b = torch::randn({n, n}), c = torch::empty({n, n});
    torch::mm_out(c, a, b); // warm-up
    double best = 1e30;
    for (int i = 0; i < repeats; ++i) {
        auto t0 = std::chrono::steady_clock::now();
        torch::mm_out(c, a, b);
        best = std::min(best, seconds(t0));
    }
    return 2.0 * double(n) * n * n / best / 1e9;
}

} // namespace

int main(int argc, char **argv)
{
    int batches = 3, batch = 8, threads = int(std::max(1u, std::thread::hardware_concurrency()));
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!std::strcmp(argv[i], "--batches")) batches = std::atoi(argv[i + 1]);
        else if (!std::strcmp(argv[i], "--batch")) batch = std::atoi(argv[i + 1]);
        else if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    }
    at::set_num_threads(threads);
    torch::manual_seed(0);

    std::printf("bench_engine: ViT-B/14 (12 blocks, 768) + SAE 768x49152, batch %d, %d threads, %d timed batches\n",
                batch, threads, batches);
    std::printf("building random weights...\n");
    EngineParams params;
    params.device = DeviceChoice::Cpu;
    params.threads = threads;
    params.topK = 32;
    params.clsEmbedding = true;
    auto vit = VitModel::fromStateDict(cytosae::bench::randomVitB(), 0);
    if (!vit) {
        std::fprintf(stderr, "%s\n", vit.message().c_str());
        return 1;
    }
    // SAE init as in CytoSAE: W_dec rows unit norm, W_enc = W_dec^T, small negative b_enc.
    at::Tensor wDec = torch::randn({49152, 768});
    wDec = wDec / wDec.norm(2, {1}, true);
    auto sae = SaeModel::fromTensors(wDec.t().contiguous(), torch::full({49152}, -0.05), wDec, torch::zeros({768}));
    wDec = at::Tensor();
    if (!sae) {
        std::fprintf(stderr, "%s\n", sae.message().c_str());
        return 1;
    }
    sae->info().blockLayer = -2;
    auto engine = makeEngine(std::move(vit.value()), std::move(sae.value()), params);
    if (!engine) {
        std::fprintf(stderr, "%s\n", engine.message().c_str());
        return 1;
    }

    // Random 288x288 cells (MLL23 size): the timed path includes the Pillow resize.
    std::mt19937 rng(1);
    std::vector<std::vector<uint8_t>> pixels(size_t(batch), std::vector<uint8_t>(288 * 288 * 3));
    std::vector<RgbView> views;
    for (auto &p : pixels) {
        for (auto &v : p)
            v = uint8_t(rng() & 0xff);
        views.push_back({p.data(), 288, 288});
    }

    auto warm = (*engine)->run(views);
    if (!warm) {
        std::fprintf(stderr, "%s\n", warm.message().c_str());
        return 1;
    }
    double engineTime = 0;
    for (int i = 0; i < batches; ++i) {
        auto t0 = std::chrono::steady_clock::now();
        auto r = (*engine)->run(views);
        engineTime += seconds(t0);
        if (!r) {
            std::fprintf(stderr, "%s\n", r.message().c_str());
            return 1;
        }
    }
    const double images = double(batches) * batch;
    const double imgPerSec = images / engineTime;
    const double engineGflops = (*engine)->flopsPerImage() * images / engineTime / 1e9;
    const double gemm = sgemmGflops(2048, 5);
    const double rss = peakRssMb();
    const double ratio = engineGflops / gemm;

    std::printf("\n%-44s %12s\n", "measure", "value");
    std::printf("%-44s %12.3f\n", "engine images/s (batch of 8, end to end)", imgPerSec);
    std::printf("%-44s %12.1f\n", "engine GFLOP per image", (*engine)->flopsPerImage() / 1e9);
    std::printf("%-44s %12.1f\n", "engine achieved GFLOP/s", engineGflops);
    std::printf("%-44s %12.1f\n", "baseline sgemm 2048^3 GFLOP/s (same run)", gemm);
    std::printf("%-44s %12.3f   (target >= 0.80: %s)\n", "ratio engine / sgemm", ratio, ratio >= 0.8 ? "met" : "NOT met");
    std::printf("%-44s %12.0f   (target < 2048: %s)\n", "peak resident memory MB", rss, rss < 2048 ? "met" : "NOT met");
    return 0;
}
