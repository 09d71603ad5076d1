// Cohort analytics at the size of AML_Hehr (issue 7): 189 patients x 49,152 concepts.
//
// A synthetic count matrix is generated at run time (seeded): five diagnoses with AML_Hehr's
// group sizes, 300-800 cells per patient, ~40 % of latents dead, the rest firing at
// log-uniform base rates (1e-4 .. 0.3), 1 % of latents over- or under-represented in each
// diagnosis, and per-patient log-normal variation. Then the full analysis runs as
// `cytosae analyze ... all` would: the cross-validated classification (diagnosis, and control
// vs disease: 5-fold outer CV, 3-fold inner CV over 5 penalties, refit on all patients),
// every diagnosis against the rest (Mann-Whitney + BH), the similarity matrix and every
// patient's specific concepts. Target: under 60 s on 2 cores (--threads 2, the default).
//
// Baseline, measured in the same run: one unpenalised-strength fit (the weakest penalty of
// the grid, 400 iterations at most) of the multinomial model on all 189 patients and all
// non-constant features without screening; the ratio says how many such fits the whole
// cross-validated analysis costs.
//
// Usage: bench_analysis [--threads N] [--seed S] [--latents D]

#include "analysis/Classifier.h"
#include "analysis/Cohort.h"
#include "analysis/CohortClassifier.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>

using namespace cytosae;
using namespace cytosae::analysis;

namespace {

double since(std::chrono::steady_clock::time_point t)
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

Cohort syntheticCohort(int latents, uint64_t seed)
{
    const std::vector<std::pair<const char *, int>> groups = {
        {"CBFB_MYH11", 37}, {"NPM1", 36}, {"PML_RARA", 24}, {"RUNX1_RUNX1T1", 31}, {"control", 61}};
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> u(0.0, 1.0);
    std::vector<double> base(size_t(latents), 0.0);
    for (double &b : base)
        b = u(rng) < 0.4 ? 0.0 : std::exp(std::log(1e-4) + u(rng) * (std::log(0.3) - std::log(1e-4)));
    std::vector<std::vector<double>> effect(groups.size(), std::vector<double>(size_t(latents), 1.0));
    for (auto &e : effect)
        for (double &v : e)
            if (u(rng) < 0.01)
                v = u(rng) < 0.5 ? 3.0 : 0.3;
    std::normal_distribution<double> noise(0.0, 0.3);
    std::vector<CohortPatient> patients;
    std::vector<uint32_t> counts;
    counts.reserve(size_t(189) * size_t(latents));
    int code = 0;
    for (size_t g = 0; g < groups.size(); ++g) {
        for (int i = 0; i < groups[g].second; ++i) {
            CohortPatient p;
            p.id = ++code;
            p.code = "P" + std::to_string(1000 + code);
            p.diagnosis = groups[g].first;
            p.cells = 300 + int64_t(u(rng) * 500);
            patients.push_back(p);
            const double patientScale = std::exp(noise(rng));
            for (int k = 0; k < latents; ++k) {
                const double rate = std::min(1.0, base[size_t(k)] * effect[g][size_t(k)] * patientScale);
                uint32_t c = 0;
                if (rate > 0) {
                    const double mean = rate * double(p.cells);
                    // Poisson draws stand in for binomial ones (rates are small); clipped.
                    c = uint32_t(std::min<int64_t>(p.cells, std::poisson_distribution<int64_t>(mean)(rng)));
                }
                counts.push_back(c);
            }
        }
    }
    std::vector<uint32_t> patches(counts.size());
    for (size_t i = 0; i < counts.size(); ++i)
        patches[i] = counts[i] * 3;
    return cohortFromCounts(std::move(patients), latents, std::move(counts), std::move(patches));
}

} // namespace

int main(int argc, char **argv)
{
    int threads = 2, latents = 49152;
    uint64_t seed = 7;
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = std::atoi(argv[++i]);
        else if (!std::strcmp(argv[i], "--seed") && i + 1 < argc)
            seed = std::strtoull(argv[++i], nullptr, 10);
        else if (!std::strcmp(argv[i], "--latents") && i + 1 < argc)
            latents = std::atoi(argv[++i]);
        else {
            std::fprintf(stderr, "usage: bench_analysis [--threads N] [--seed S] [--latents D]\n");
            return 2;
        }
    }
    auto t0 = std::chrono::steady_clock::now();
    const Cohort cohort = syntheticCohort(latents, seed);
    std::printf("synthetic cohort: %zu patients x %d latents generated in %.1f s\n", cohort.size(), latents, since(t0));

    ClassifierOptions opt;
    opt.threads = threads;
    opt.seed = seed;

    // Baseline: one fit on everything, weakest penalty, no screening.
    {
        const Dataset data = conceptDataset(cohort);
        ClassifierOptions one = opt;
        one.maxFeatures = 0;
        long long iterations = 0;
        t0 = std::chrono::steady_clock::now();
        auto acc = fitOnce(data, one, opt.lambdaRatios.back(), &iterations);
        const double base = since(t0);
        if (!acc) {
            std::fprintf(stderr, "baseline failed: %s\n", acc.message().c_str());
            return 1;
        }
        std::printf("%-58s %8.2f s  (%lld iterations, training accuracy %.3f)\n",
                    "baseline: one full fit, all features, no screening", base, iterations, *acc);

        t0 = std::chrono::steady_clock::now();
        auto started = t0;
        CohortClassifyOptions co;
        co.classifier = opt;
        co.embeddingBaseline = false;
        auto classified = classifyCohort(nullptr, {}, cohort, co);
        const double tClassify = since(t0);
        if (!classified) {
            std::fprintf(stderr, "classification failed: %s\n", classified.message().c_str());
            return 1;
        }
        for (const auto &task : classified->tasks)
            std::printf("  %-22s macro F1 %.3f, accuracy %.3f, %d folds, %lld FISTA iterations\n", task.name.c_str(),
                        task.concepts.macroF1, task.concepts.accuracy, task.concepts.folds, task.concepts.iterations);
        std::printf("%-58s %8.2f s\n", "classification (nested CV, both tasks, refits)", tClassify);

        t0 = std::chrono::steady_clock::now();
        int significant = 0;
        for (const char *dx : {"CBFB_MYH11", "NPM1", "PML_RARA", "RUNX1_RUNX1T1", "control"}) {
            auto cmp = compareDiseases(cohort, dx, "rest");
            if (!cmp) {
                std::fprintf(stderr, "comparison failed: %s\n", cmp.message().c_str());
                return 1;
            }
            significant += cmp->significant;
        }
        const double tDisease = since(t0);
        std::printf("%-58s %8.2f s  (%d concepts with q < 0.05)\n", "disease-specific: 5 x (one vs rest)", tDisease,
                    significant);

        t0 = std::chrono::steady_clock::now();
        const SimilarityMatrix sim = patientSimilarity(cohort);
        std::printf("%-58s %8.2f s  (within %.3f, between %.3f)\n", "similarity matrix", since(t0), sim.withinMean,
                    sim.betweenMean);

        t0 = std::chrono::steady_clock::now();
        std::vector<size_t> everyone(cohort.size());
        for (size_t p = 0; p < cohort.size(); ++p)
            everyone[p] = p;
        auto specific = patientSpecific(cohort, everyone);
        if (!specific) {
            std::fprintf(stderr, "patient-specific failed: %s\n", specific.message().c_str());
            return 1;
        }
        std::printf("%-58s %8.2f s\n", "patient-specific concepts (top 20), every patient", since(t0));

        const double total = since(started);
        std::printf("%-58s %8.2f s  (target < 60 s on 2 cores: %s)\n", "full analysis", total,
                    total < 60 ? "met" : "NOT met");
        std::printf("%-58s %8.2f\n", "ratio full analysis / one full fit", total / base);
    }
    return 0;
}
