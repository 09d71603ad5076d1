// bf16 against fp32 (issue 17): how far the fast path's concepts are from the reference
// computation, on the data Precision::Auto has to decide for.
//
//   demo      the bundled demo model over whole demo cohorts (40 patients x 40 cells, the
//             `cytosae demo` cohort) for several cohort seeds; mean and spread over seeds
//   full-size random DINOv2 ViT-B/14 + 768x49152 SAE with the bias calibrated (on other cells)
//             so that ~40 latents fire per token, several weight seeds
//
// Per token: top-32 set overlap (mean over tokens, worst token, and pooled over latents);
// image-level means: relative L2 error (worst image); patch-above-0.2 decisions that flip, per
// decision above the threshold in fp32. Top-k 256 so the lists hold every active latent (the
// flip count is then exact). Also the speed of each precision on the same batches.
//
// Usage: bench_precision [--cohorts N] [--patients-per-group N] [--cells N] [--full-size N]

#include "RandomModels.h"
#include "demo/DemoCohort.h"
#include "demo/SyntheticCells.h"
#include "model/Engine.h"
#include "model/Preprocess.h"
#include "model/VitModel.h"

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

using namespace cytosae;
using namespace cytosae::model;

namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point a)
{
    return std::chrono::duration<double>(Clock::now() - a).count();
}

struct Row {
    std::string name;
    PrecisionAgreement g;
    double fp32Seconds = 0, bf16Seconds = 0;
    int images = 0;
};

void printHeader()
{
    std::printf("%-26s %7s %9s %8s %8s %10s %8s %9s\n", "data", "images", "top-32", "worst", "pooled", "means err",
                "flips", "bf16 x");
}

void printRow(const Row &r)
{
    std::printf("%-26s %7d %9.4f %8.3f %8.4f %9.3f%% %7.3f%% %9.2f\n", r.name.c_str(), r.images, r.g.topOverlap,
                r.g.minTopOverlap, r.g.pooledOverlap, 100 * r.g.meanRelError, 100 * r.g.flipShare,
                r.fp32Seconds / r.bf16Seconds);
}

void printSpread(const char *what, const std::vector<Row> &rows)
{
    auto stat = [&](auto field) {
        double m = 0, lo = 1e9, hi = -1e9;
        for (const Row &r : rows) {
            const double v = field(r);
            m += v;
            lo = std::min(lo, v);
            hi = std::max(hi, v);
        }
        m /= double(rows.size());
        double sd = 0;
        for (const Row &r : rows)
            sd += (field(r) - m) * (field(r) - m);
        sd = rows.size() > 1 ? std::sqrt(sd / double(rows.size() - 1)) : 0;
        std::printf(" %.4f +- %.4f [%.4f, %.4f]", m, sd, lo, hi);
    };
    std::printf("%s over %zu seeds (mean +- sd [min, max]):\n  top-32 overlap", what, rows.size());
    stat([](const Row &r) { return r.g.topOverlap; });
    std::printf("\n  pooled overlap");
    stat([](const Row &r) { return r.g.pooledOverlap; });
    std::printf("\n  means rel. error (worst image)");
    stat([](const Row &r) { return r.g.meanRelError; });
    std::printf("\n  flip share");
    stat([](const Row &r) { return r.g.flipShare; });
    std::printf("\n  bf16 speed-up");
    stat([](const Row &r) { return r.fp32Seconds / r.bf16Seconds; });
    std::printf("\n  auto would choose bf16 on %d of %zu\n",
                int(std::count_if(rows.begin(), rows.end(), [](const Row &r) { return r.g.acceptable(); })), rows.size());
}

// Both precisions over the same preprocessed images, in batches.
Row compare(Engine &exact, Engine &fast, const std::vector<float> &chw, int images, int size, int batch)
{
    Row row;
    row.images = images;
    std::vector<ImageActivations> a, b;
    const size_t per = size_t(3) * size_t(size) * size_t(size);
    for (int first = 0; first < images; first += batch) {
        const int n = std::min(batch, images - first);
        auto t0 = Clock::now();
        auto x = exact.runPreprocessed(chw.data() + size_t(first) * per, n, size, size);
        row.fp32Seconds += since(t0);
        t0 = Clock::now();
        auto y = fast.runPreprocessed(chw.data() + size_t(first) * per, n, size, size);
        row.bf16Seconds += since(t0);
        if (!x || !y) {
            std::fprintf(stderr, "engine failed: %s\n", (!x ? x : y).message().c_str());
            std::exit(1);
        }
        for (auto &i : *x)
            a.push_back(std::move(i));
        for (auto &i : *y)
            b.push_back(std::move(i));
    }
    row.g = compareActivations(a, b, 0.2f);
    return row;
}

} // namespace

int main(int argc, char **argv)
{
    int cohorts = 5, perGroup = 8, cells = 40, fullSize = 3;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!std::strcmp(argv[i], "--cohorts")) cohorts = std::atoi(argv[i + 1]);
        else if (!std::strcmp(argv[i], "--patients-per-group")) perGroup = std::atoi(argv[i + 1]);
        else if (!std::strcmp(argv[i], "--cells")) cells = std::atoi(argv[i + 1]);
        else if (!std::strcmp(argv[i], "--full-size")) fullSize = std::atoi(argv[i + 1]);
        else {
            std::fprintf(stderr, "usage: bench_precision [--cohorts N] [--patients-per-group N] [--cells N] [--full-size N]\n");
            return 2;
        }
    }
    std::printf("bench_precision: bf16 against fp32; bf16 native on this CPU: %s\n\n", cpuHasFastBf16() ? "yes" : "no");
    printHeader();

    // The demo model over demo cohorts (seed 2024 is `cytosae demo`'s; the others are new).
    std::vector<Row> demoRows;
    {
        EngineParams p;
        p.vitPath = std::string(CYTOSAE_SOURCE_DIR "/models/demo/demo_vit.pth");
        p.saePath = std::string(CYTOSAE_SOURCE_DIR "/models/demo/demo_sae.pt");
        p.device = DeviceChoice::Cpu;
        p.topK = 256;
        p.clsEmbedding = false;
        auto exact = Engine::load(p);
        p.precision = Precision::Bf16;
        auto fast = Engine::load(p);
        if (!exact || !fast) {
            std::fprintf(stderr, "%s\n", (!exact ? exact.message() : fast.message()).c_str());
            return 1;
        }
        const int size = (*exact)->vit().imageSize;
        const uint64_t seeds[] = {2024, 1, 2, 3, 4, 5, 6, 7};
        for (int c = 0; c < cohorts && c < 8; ++c) {
            std::vector<float> chw;
            int images = 0;
            for (const demo::PatientSpec &patient : demo::demoCohort(perGroup, cells, seeds[c]))
                for (int i = 0; i < patient.cells; ++i) {
                    const demo::CohortImage ci = demo::cohortImage(patient, i);
                    const demo::SyntheticCell cell = demo::generateCell(ci.type, ci.seed);
                    chw.resize(chw.size() + size_t(3) * size * size);
                    preprocessToChw({cell.rgb.data(), cell.width, cell.height}, size, {},
                                    chw.data() + chw.size() - size_t(3) * size * size);
                    ++images;
                }
            Row r = compare(**exact, **fast, chw, images, size, 32);
            r.name = "demo cohort seed " + std::to_string(seeds[c]);
            printRow(r);
            demoRows.push_back(r);
        }
    }

    // Full-size random models: new weights per seed, bias calibrated on other cells.
    std::vector<Row> fullRows;
    for (int seed = 0; seed < fullSize; ++seed) {
        torch::manual_seed(uint64_t(seed));
        auto vit = VitModel::fromStateDict(bench::randomVitB(), 0);
        if (!vit)
            return 1;
        std::vector<float> calibration = bench::preprocessCells(bench::blobCells(8, 1000u + uint32_t(seed)));
        const bench::RandomSae rs = bench::calibratedRandomSae(
            *vit, torch::from_blob(calibration.data(), {8, 3, 224, 224}, torch::kFloat), vit->info().depth - 2);
        auto sae = SaeModel::fromTensors(rs.wEnc, rs.bEnc, rs.wDec, rs.bDec);
        if (!sae)
            return 1;
        sae->info().blockLayer = -2;
        EngineParams p;
        p.device = DeviceChoice::Cpu;
        p.topK = 256;
        p.clsEmbedding = false;
        auto exact = makeEngine(*vit, *sae, p);
        p.precision = Precision::Bf16;
        auto fast = makeEngine(*vit, *sae, p);
        if (!exact || !fast)
            return 1;
        const std::vector<float> chw = bench::preprocessCells(bench::blobCells(16, 2000u + uint32_t(seed)));
        Row r = compare(**exact, **fast, chw, 16, 224, 8);
        r.name = "full-size random seed " + std::to_string(seed);
        printRow(r);
        fullRows.push_back(r);
    }
    std::printf("\n");
    if (!demoRows.empty())
        printSpread("demo model, demo cohorts", demoRows);
    if (!fullRows.empty())
        printSpread("full-size random ViT-B + calibrated SAE", fullRows);
    return 0;
}
