// Concept recovery (issue 4, protocol of issue 19): do the SAE's latents find the
// morphological parts that the demo generator drew, on cells nobody chose them on?
//
// Protocol. Cells are generated with seeds never used to train or tune the demo model. For
// each (selection, test) pair of seeds:
//   1. on the selection cells, every latent's patch activations are scored against every
//      part's masks (AUROC);
//   2. the required parts get one latent each, distinct latents, by the assignment that
//      maximises the sum of their selection AUROCs (no latent is credited to two parts);
//      the other parts get their best latent on the selection cells;
//   3. those fixed latents are scored on the test cells, which played no part in choosing.
// Reported per pair and as mean, spread (sample SD) and worst over the pairs; only test-set
// figures count. A patch is positive when the part covers at least 10 % of it, negative when
// it covers none of it (left out in between). For parts inside the white cell (nucleus,
// nucleolus, granules, Auer rods, vacuoles) the negatives are other patches of the white cell
// only, so a latent that merely finds "the cell" does not count as finding the part.
// Target: every required part (nucleus, the three granule kinds, Auer rods) at mean test
// AUROC >= 0.9 with distinct latents; exit status 0 when met, 2 when not.
//
// With --probe it also fits a logistic-regression probe per part on the SAE's input (the block
// -2 residual) of the selection cells and scores the test cells: the ceiling of what any
// single latent could reach from that layer, so a shortfall can be put on the ViT or the SAE.
//
// Usage: bench_concepts [--vit FILE --sae FILE] [--cells-per-type N] [--pairs S:T,S:T,...] [--probe]
// Cell seeds are SEED * 1000 + type * 1000 + i: seeds at least 10 apart share no cell. The
// default pairs (5100:5200, 5300:5400, 5500:5600) are far from every seed used in training
// (the model's training cells come from hashed seeds of 1001; 777 and 900 are the sets the
// model was chosen on).

#include "analysis/Statistics.h"
#include "common/Result.h"
#include "demo/SyntheticCells.h"
#include "model/Engine.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

using namespace cytosae;

namespace {

// AUROC = Mann-Whitney U / (positives x negatives), average ranks for ties; 0.5 without
// positives or negatives.
double auroc(const std::vector<float> &scores, const std::vector<uint8_t> &labels)
{
    std::vector<double> pos, neg;
    for (size_t i = 0; i < scores.size(); ++i)
        (labels[i] ? pos : neg).push_back(scores[i]);
    if (pos.empty() || neg.empty())
        return 0.5;
    return analysis::mannWhitney(pos, neg).u / (double(pos.size()) * double(neg.size()));
}

// L2-regularised logistic regression by Newton's method on standardised features; returns the
// test rows' scores. x is row-major [rows, d].
std::vector<float> logisticProbe(const std::vector<float> &x, int d, const std::vector<size_t> &trainRows,
                                 const std::vector<uint8_t> &trainLabels, const std::vector<size_t> &testRows)
{
    const int n = d + 1; // features + intercept
    std::vector<double> mean(size_t(d), 0.0), sd(size_t(d), 0.0);
    for (size_t r : trainRows)
        for (int j = 0; j < d; ++j)
            mean[size_t(j)] += x[r * size_t(d) + size_t(j)];
    for (double &m : mean)
        m /= double(trainRows.size());
    for (size_t r : trainRows)
        for (int j = 0; j < d; ++j) {
            const double v = x[r * size_t(d) + size_t(j)] - mean[size_t(j)];
            sd[size_t(j)] += v * v;
        }
    for (double &s : sd)
        s = std::sqrt(s / double(trainRows.size())) + 1e-6;
    auto feature = [&](size_t r, std::vector<double> &f) {
        for (int j = 0; j < d; ++j)
            f[size_t(j)] = (x[r * size_t(d) + size_t(j)] - mean[size_t(j)]) / sd[size_t(j)];
        f[size_t(d)] = 1.0;
    };
    std::vector<double> w(size_t(n), 0.0), f(size_t(n), 0.0);
    const double lambda = 1e-3 * double(trainRows.size());
    for (int iter = 0; iter < 12; ++iter) {
        std::vector<double> g(size_t(n), 0.0), h(size_t(n) * size_t(n), 0.0);
        for (size_t i = 0; i < trainRows.size(); ++i) {
            feature(trainRows[i], f);
            double z = 0;
            for (int j = 0; j < n; ++j)
                z += w[size_t(j)] * f[size_t(j)];
            const double p = 1 / (1 + std::exp(-z)), q = p * (1 - p);
            for (int j = 0; j < n; ++j) {
                g[size_t(j)] += (p - trainLabels[i]) * f[size_t(j)];
                for (int k = 0; k <= j; ++k)
                    h[size_t(j) * size_t(n) + size_t(k)] += q * f[size_t(j)] * f[size_t(k)];
            }
        }
        for (int j = 0; j < d; ++j) {
            g[size_t(j)] += lambda * w[size_t(j)];
            h[size_t(j) * size_t(n) + size_t(j)] += lambda;
        }
        // Cholesky solve h * step = g (lower triangle filled).
        for (int j = 0; j < n; ++j) {
            double s = h[size_t(j) * size_t(n) + size_t(j)];
            for (int k = 0; k < j; ++k)
                s -= h[size_t(j) * size_t(n) + size_t(k)] * h[size_t(j) * size_t(n) + size_t(k)];
            const double l = std::sqrt(std::max(s, 1e-12));
            h[size_t(j) * size_t(n) + size_t(j)] = l;
            for (int i = j + 1; i < n; ++i) {
                double t = h[size_t(i) * size_t(n) + size_t(j)];
                for (int k = 0; k < j; ++k)
                    t -= h[size_t(i) * size_t(n) + size_t(k)] * h[size_t(j) * size_t(n) + size_t(k)];
                h[size_t(i) * size_t(n) + size_t(j)] = t / l;
            }
        }
        std::vector<double> y(size_t(n), 0.0);
        for (int i = 0; i < n; ++i) {
            double t = g[size_t(i)];
            for (int k = 0; k < i; ++k)
                t -= h[size_t(i) * size_t(n) + size_t(k)] * y[size_t(k)];
            y[size_t(i)] = t / h[size_t(i) * size_t(n) + size_t(i)];
        }
        for (int i = n - 1; i >= 0; --i) {
            double t = y[size_t(i)];
            for (int k = i + 1; k < n; ++k)
                t -= h[size_t(k) * size_t(n) + size_t(i)] * y[size_t(k)];
            y[size_t(i)] = t / h[size_t(i) * size_t(n) + size_t(i)];
        }
        for (int j = 0; j < n; ++j)
            w[size_t(j)] -= y[size_t(j)];
    }
    std::vector<float> scores;
    for (size_t r : testRows) {
        feature(r, f);
        double z = 0;
        for (int j = 0; j < n; ++j)
            z += w[size_t(j)] * f[size_t(j)];
        scores.push_back(float(z));
    }
    return scores;
}

std::string findModel(const char *name)
{
    for (std::filesystem::path dir = std::filesystem::current_path(); !dir.empty() && dir != dir.root_path();
         dir = dir.parent_path())
        if (std::filesystem::exists(dir / "models" / "demo" / name))
            return (dir / "models" / "demo" / name).string();
    return {};
}

} // namespace

namespace {

struct Target {
    const char *name;
    std::vector<demo::Part> parts;
    bool required;
    bool insideCell; // negatives: white-cell patches only
};

// Parts scored; the granule union row is for comparison only.
const std::vector<Target> &targets()
{
    static const std::vector<Target> t = {
        {"nucleus", {demo::Part::Nucleus}, true, true},
        {"fine (azurophilic) granules", {demo::Part::FineGranules}, true, true},
        {"coarse basophilic granules", {demo::Part::CoarseGranules}, true, true},
        {"eosinophilic granules", {demo::Part::EosinophilicGranules}, true, true},
        {"Auer rod", {demo::Part::AuerRod}, true, true},
        {"granules, any kind (one latent)",
         {demo::Part::FineGranules, demo::Part::CoarseGranules, demo::Part::EosinophilicGranules}, false, true},
        {"nucleolus", {demo::Part::Nucleolus}, false, true},
        {"vacuole", {demo::Part::Vacuole}, false, true},
        {"white cell (nucleus + cytoplasm)", {demo::Part::Nucleus, demo::Part::Cytoplasm, demo::Part::Vacuole}, false, false},
        {"red cell", {demo::Part::RedCell}, false, false},
    };
    return t;
}

// One set of generated cells through the model: per latent and per target, one value per patch.
struct CellSet {
    std::vector<std::vector<float>> acts;  // [latent][patch]
    std::vector<std::vector<float>> cover; // [target][patch]: covered fraction
    std::vector<float> residual;           // [patch * dIn] (with --probe)
};

Result<CellSet> runCells(model::Engine &engine, uint64_t seed, int perType, bool probe)
{
    const int dSae = engine.sae().dSae, dIn = engine.sae().dIn, grid = 16;
    CellSet set;
    set.acts.resize(size_t(dSae));
    set.cover.resize(targets().size());
    for (int type = 0; type < demo::kCellTypeCount; ++type) {
        for (int i = 0; i < perType; ++i) {
            const auto cell = demo::generateCell(demo::CellType(type), seed * 1000 + uint64_t(type) * 1000 + uint64_t(i));
            auto r = engine.run({{cell.rgb.data(), cell.width, cell.height}});
            if (!r)
                return r.error();
            const auto &a = (*r)[0];
            for (int p = 0; p < grid * grid; ++p) {
                const int row = p / grid, col = p % grid;
                const int x0 = col * cell.width / grid, x1 = (col + 1) * cell.width / grid;
                const int y0 = row * cell.height / grid, y1 = (row + 1) * cell.height / grid;
                for (size_t t = 0; t < targets().size(); ++t) {
                    int covered = 0;
                    for (int y = y0; y < y1; ++y)
                        for (int x = x0; x < x1; ++x) {
                            bool on = false;
                            for (demo::Part part : targets()[t].parts)
                                on = on || cell.parts[size_t(part)].pixels[size_t(y * cell.width + x)] != 0;
                            covered += on;
                        }
                    set.cover[t].push_back(float(covered) / float((x1 - x0) * (y1 - y0)));
                }
                if (probe) {
                    const float *res = a.residual.data() + size_t(a.numPrefix + p) * size_t(dIn);
                    set.residual.insert(set.residual.end(), res, res + dIn);
                }
                const float *row0 = a.denseLatents.data() + size_t(a.numPrefix + p) * size_t(dSae);
                for (int l = 0; l < dSae; ++l)
                    set.acts[size_t(l)].push_back(row0[l]);
            }
        }
        std::fprintf(stderr, "\r  seed %llu: %d / %d cell types", (unsigned long long)seed, type + 1, demo::kCellTypeCount);
    }
    std::fprintf(stderr, "\n");
    return set;
}

// The patches a target is scored on and their labels.
void labelled(const CellSet &set, size_t t, std::vector<size_t> &keep, std::vector<uint8_t> &labels)
{
    static const size_t cellTarget = size_t(
        std::find_if(targets().begin(), targets().end(),
                     [](const Target &x) { return std::string(x.name).rfind("white cell", 0) == 0; }) -
        targets().begin());
    keep.clear();
    labels.clear();
    for (size_t p = 0; p < set.cover[t].size(); ++p) {
        if (set.cover[t][p] >= 0.10f) {
            keep.push_back(p);
            labels.push_back(1);
        } else if (set.cover[t][p] == 0.0f && (!targets()[t].insideCell || set.cover[cellTarget][p] >= 0.5f)) {
            keep.push_back(p);
            labels.push_back(0);
        }
    }
}

double latentAuroc(const CellSet &set, size_t t, int latent)
{
    std::vector<size_t> keep;
    std::vector<uint8_t> labels;
    labelled(set, t, keep, labels);
    std::vector<float> scores(keep.size());
    for (size_t k = 0; k < keep.size(); ++k)
        scores[k] = set.acts[size_t(latent)][keep[k]];
    return auroc(scores, labels);
}

// Distinct latents for the required targets maximising the summed selection AUROC: an exact
// search over each target's 8 best candidates (the optimum uses them unless 8 other targets
// compete for one latent; there are 5).
std::vector<int> assignLatents(const std::vector<std::vector<double>> &aurocs, const std::vector<size_t> &required)
{
    const size_t candidates = 8;
    std::vector<std::vector<int>> best(required.size());
    for (size_t r = 0; r < required.size(); ++r) {
        const auto &row = aurocs[required[r]];
        std::vector<int> order(row.size());
        std::iota(order.begin(), order.end(), 0);
        std::partial_sort(order.begin(), order.begin() + long(std::min(candidates, order.size())), order.end(),
                          [&](int a, int b) { return row[size_t(a)] > row[size_t(b)]; });
        order.resize(std::min(candidates, order.size()));
        best[r] = order;
    }
    std::vector<int> chosen(required.size(), -1), current(required.size(), -1);
    double bestSum = -1;
    std::function<void(size_t, double)> search = [&](size_t r, double sum) {
        if (r == required.size()) {
            if (sum > bestSum) {
                bestSum = sum;
                chosen = current;
            }
            return;
        }
        for (int latent : best[r]) {
            if (std::find(current.begin(), current.begin() + long(r), latent) != current.begin() + long(r))
                continue;
            current[r] = latent;
            search(r + 1, sum + aurocs[required[r]][size_t(latent)]);
        }
    };
    search(0, 0.0);
    return chosen;
}

double sampleSd(const std::vector<double> &v)
{
    if (v.size() < 2)
        return 0;
    double m = 0, s = 0;
    for (double x : v)
        m += x;
    m /= double(v.size());
    for (double x : v)
        s += (x - m) * (x - m);
    return std::sqrt(s / double(v.size() - 1));
}

} // namespace

int main(int argc, char **argv)
{
    std::string vit = findModel("demo_vit.pth"), sae = findModel("demo_sae.pt");
    int perType = 30;
    std::vector<std::pair<uint64_t, uint64_t>> pairs = {{5100, 5200}, {5300, 5400}, {5500, 5600}};
    bool probe = false;
    for (int i = 1; i < argc; ++i) {
        const bool hasValue = i + 1 < argc;
        if (!std::strcmp(argv[i], "--probe"))
            probe = true;
        else if (hasValue && !std::strcmp(argv[i], "--vit"))
            vit = argv[++i];
        else if (hasValue && !std::strcmp(argv[i], "--sae"))
            sae = argv[++i];
        else if (hasValue && !std::strcmp(argv[i], "--cells-per-type"))
            perType = std::max(2, std::atoi(argv[++i]));
        else if (hasValue && !std::strcmp(argv[i], "--pairs")) {
            pairs.clear();
            std::string spec = argv[++i];
            size_t at = 0;
            while (at < spec.size()) {
                size_t end = spec.find(',', at);
                if (end == std::string::npos)
                    end = spec.size();
                const std::string one = spec.substr(at, end - at);
                const size_t colon = one.find(':');
                if (colon == std::string::npos) {
                    std::fprintf(stderr, "error: --pairs wants SELECTION:TEST,..., got '%s'\n", one.c_str());
                    return 1;
                }
                pairs.push_back({std::strtoull(one.c_str(), nullptr, 10), std::strtoull(one.c_str() + colon + 1, nullptr, 10)});
                at = end + 1;
            }
        } else {
            std::fprintf(stderr, "usage: bench_concepts [--vit FILE --sae FILE] [--cells-per-type N] "
                                 "[--pairs S:T,S:T,...] [--probe]\n");
            return 1;
        }
    }
    for (const auto &[a, b] : pairs)
        if ((a > b ? a - b : b - a) < 10) {
            std::fprintf(stderr, "error: seeds %llu and %llu share cells; use seeds at least 10 apart\n",
                         (unsigned long long)a, (unsigned long long)b);
            return 1;
        }
    model::EngineParams params;
    params.vitPath = vit;
    params.saePath = sae;
    params.device = model::DeviceChoice::Cpu;
    params.precision = model::Precision::Fp32;
    params.keepDense = true;
    params.clsEmbedding = false;
    auto engine = model::Engine::load(params);
    if (!engine) {
        std::fprintf(stderr, "error: %s\n", engine.message().c_str());
        return 1;
    }
    const int dSae = (*engine)->sae().dSae, dIn = (*engine)->sae().dIn;
    std::printf("bench_concepts: %s + %s (%d latents), %d cells per type and set, %zu (selection, test) pairs\n",
                vit.c_str(), sae.c_str(), dSae, perType, pairs.size());

    const auto &T = targets();
    std::vector<size_t> required;
    for (size_t t = 0; t < T.size(); ++t)
        if (T[t].required)
            required.push_back(t);
    std::vector<std::vector<double>> testAuroc(T.size()), probeAuroc(T.size());
    std::vector<std::vector<int>> chosenLatents(T.size());
    for (const auto &[selectionSeed, testSeed] : pairs) {
        auto selection = runCells(**engine, selectionSeed, perType, probe);
        auto test = selection ? runCells(**engine, testSeed, perType, probe) : Result<CellSet>(selection.error());
        if (!test) {
            std::fprintf(stderr, "error: %s\n", test.message().c_str());
            return 1;
        }
        std::vector<std::vector<double>> aurocs(T.size(), std::vector<double>(size_t(dSae), 0.5));
        for (size_t t = 0; t < T.size(); ++t)
            for (int l = 0; l < dSae; ++l)
                aurocs[t][size_t(l)] = latentAuroc(*selection, t, l);
        const std::vector<int> assigned = assignLatents(aurocs, required);
        std::printf("\nselection seed %llu, test seed %llu\n%-34s %8s %10s %10s%s\n", (unsigned long long)selectionSeed,
                    (unsigned long long)testSeed, "part", "latent", "selection", "test", probe ? "   probe" : "");
        for (size_t t = 0; t < T.size(); ++t) {
            int latent = 0;
            const auto it = std::find(required.begin(), required.end(), t);
            if (it != required.end()) {
                latent = assigned[size_t(it - required.begin())];
            } else {
                for (int l = 1; l < dSae; ++l)
                    if (aurocs[t][size_t(l)] > aurocs[t][size_t(latent)])
                        latent = l;
            }
            const double onTest = latentAuroc(*test, t, latent);
            testAuroc[t].push_back(onTest);
            chosenLatents[t].push_back(latent);
            char probeText[16] = "";
            if (probe) {
                std::vector<size_t> keepS, keepT;
                std::vector<uint8_t> labelsS, labelsT;
                labelled(*selection, t, keepS, labelsS);
                labelled(*test, t, keepT, labelsT);
                // One residual matrix: the selection rows, then the test rows.
                std::vector<float> both = selection->residual;
                both.insert(both.end(), test->residual.begin(), test->residual.end());
                const size_t offset = selection->residual.size() / size_t(dIn);
                for (size_t &k : keepT)
                    k += offset;
                const double pa = auroc(logisticProbe(both, dIn, keepS, labelsS, keepT), labelsT);
                probeAuroc[t].push_back(pa);
                std::snprintf(probeText, sizeof probeText, " %7.3f", pa);
            }
            std::printf("%-34s %8d %10.3f %10.3f%s\n", T[t].name, latent, aurocs[t][size_t(latent)], onTest, probeText);
        }
    }

    std::printf("\nover %zu pairs: the test AUROC of the latent chosen on the selection cells\n"
                "%-34s %8s %8s %8s  %-20s %s\n",
                pairs.size(), "part", "mean", "sd", "worst", "latents", "target");
    bool allMet = true;
    for (size_t t = 0; t < T.size(); ++t) {
        double mean = 0, worst = 1;
        for (double v : testAuroc[t]) {
            mean += v;
            worst = std::min(worst, v);
        }
        mean /= double(std::max<size_t>(1, testAuroc[t].size()));
        std::string latents;
        for (int l : chosenLatents[t])
            latents += (latents.empty() ? "" : ",") + std::to_string(l);
        const bool met = mean >= 0.9;
        allMet = allMet && (!T[t].required || met);
        std::printf("%-34s %8.3f %8.3f %8.3f  %-20s %s\n", T[t].name, mean, sampleSd(testAuroc[t]), worst,
                    latents.c_str(), T[t].required ? (met ? "mean >= 0.90 met" : "mean >= 0.90 NOT met") : "-");
    }
    if (probe) {
        std::printf("\nprobe (logistic regression on the SAE's input, fitted on the selection cells):\n");
        for (size_t t = 0; t < T.size(); ++t) {
            double mean = 0;
            for (double v : probeAuroc[t])
                mean += v;
            std::printf("%-34s %8.3f %8.3f\n", T[t].name, mean / double(std::max<size_t>(1, probeAuroc[t].size())),
                        sampleSd(probeAuroc[t]));
        }
    }
    std::printf("\nrequired parts with distinct latents (per pair), mean test AUROC >= 0.90: %s\n",
                allMet ? "met" : "NOT met");
    return allMet ? 0 : 2;
}
