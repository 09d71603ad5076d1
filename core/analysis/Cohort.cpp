#include "analysis/Cohort.h"

#include "store/AnnotationDb.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_map>

namespace cytosae::analysis {

long Cohort::indexOf(const std::string &code) const
{
    for (size_t i = 0; i < patients.size(); ++i)
        if (patients[i].code == code)
            return long(i);
    return -1;
}

Result<CohortOptions> defaultCohortOptions(store::ProjectDb &db, const store::RunRecord &run, int *validated)
{
    CohortOptions options;
    store::AnnotationDb ledger(db);
    auto hashes = ledger.hashesOfRun(run.id);
    if (!hashes)
        return hashes.error();
    auto thresholds = ledger.validatedThresholds(*hashes);
    if (!thresholds)
        return thresholds.error();
    for (const auto &[key, t] : *thresholds)
        if (auto ref = store::ConceptRef::parse(key); ref && !ref->isGroup())
            options.latentThresholds[ref->latent] = t;
    if (validated)
        *validated = int(options.latentThresholds.size());
    return options;
}

Result<Cohort> loadCohort(store::ProjectDb &db, const store::RunRecord &run, const CohortOptions &options)
{
    if (run.dSae <= 0)
        return Error("run " + std::to_string(run.id) + " has no SAE width recorded");
    auto patients = db.patients();
    if (!patients)
        return patients.error();
    Cohort all;
    all.dSae = run.dSae;
    all.runThreshold = run.patchThreshold;
    all.threshold = options.threshold >= 0 ? options.threshold : run.patchThreshold;
    std::unordered_map<int64_t, size_t> index;
    for (const store::PatientRecord &p : *patients) {
        index[p.id] = all.patients.size();
        all.patients.push_back({p.id, p.code, p.diagnosis, 0});
    }
    std::vector<float> thresholds(size_t(all.dSae), float(all.threshold));
    for (const auto &[latent, t] : options.latentThresholds)
        if (latent >= 0 && latent < all.dSae)
            thresholds[size_t(latent)] = float(t);
    const size_t d = size_t(all.dSae);
    all.activeCells.assign(all.patients.size() * d, 0);
    all.activePatches.assign(all.patients.size() * d, 0);
    std::vector<double> strengthSum(all.patients.size() * d, 0.0);
    int64_t orphanCells = 0;
    std::string problem;
    Status s = db.forEachCellConcepts(run.id, [&](int64_t patientId, int64_t imageId,
                                                  const std::vector<store::ImageConcept> &concepts) {
        auto it = index.find(patientId);
        if (it == index.end()) {
            ++orphanCells;
            return true;
        }
        const size_t p = it->second;
        ++all.patients[p].cells;
        uint32_t *cells = &all.activeCells[p * d];
        uint32_t *patches = &all.activePatches[p * d];
        for (const store::ImageConcept &c : concepts) {
            if (c.latent < 0 || c.latent >= all.dSae) {
                problem = "image " + std::to_string(imageId) + " has latent " + std::to_string(c.latent) +
                          " but the run's SAE has " + std::to_string(all.dSae);
                return false;
            }
            if (c.maxPatch > thresholds[size_t(c.latent)])
                ++cells[c.latent];
            strengthSum[p * d + size_t(c.latent)] += double(c.maxPatch);
            patches[c.latent] += uint32_t(std::max(0, c.patchesAbove));
        }
        return true;
    });
    if (!s)
        return s.error().withContext(db.path());
    if (!problem.empty())
        return Error(db.path() + ": " + problem);
    // Keep patients with cells.
    Cohort out;
    out.dSae = all.dSae;
    out.threshold = all.threshold;
    out.runThreshold = all.runThreshold;
    std::vector<std::string> empty;
    for (size_t p = 0; p < all.patients.size(); ++p) {
        if (!all.patients[p].cells) {
            empty.push_back(all.patients[p].code);
            continue;
        }
        out.patients.push_back(all.patients[p]);
        out.activeCells.insert(out.activeCells.end(), all.activeCells.begin() + long(p * d),
                               all.activeCells.begin() + long((p + 1) * d));
        out.activePatches.insert(out.activePatches.end(), all.activePatches.begin() + long(p * d),
                                 all.activePatches.begin() + long((p + 1) * d));
        for (size_t k = 0; k < d; ++k)
            out.strength.push_back(float(strengthSum[p * d + k] / double(all.patients[p].cells)));
    }
    if (!empty.empty()) {
        std::string list;
        for (size_t i = 0; i < empty.size() && i < 10; ++i)
            list += (i ? ", " : "") + empty[i];
        if (empty.size() > 10)
            list += ", ...";
        out.notes.push_back(std::to_string(empty.size()) + " patient(s) have no cells with results in run " +
                            std::to_string(run.id) + " and are left out: " + list);
    }
    if (orphanCells)
        out.notes.push_back(std::to_string(orphanCells) + " cell(s) belong to no patient and are left out");
    size_t noDiagnosis = 0;
    for (const auto &p : out.patients)
        noDiagnosis += p.diagnosis.empty();
    if (noDiagnosis)
        out.notes.push_back(std::to_string(noDiagnosis) +
                            " patient(s) have no diagnosis: they are left out of disease comparisons and "
                            "classification (give one with 'cytosae import --patients TABLE')");
    return out;
}

Status addClsTokenConcepts(store::ProjectDb &db, const store::RunRecord &run, Cohort &cohort)
{
    std::unordered_map<int64_t, size_t> index;
    for (size_t i = 0; i < cohort.patients.size(); ++i)
        index[cohort.patients[i].id] = i;
    const size_t d = size_t(cohort.dSae);
    std::vector<double> sums(cohort.size() * d, 0.0);
    std::vector<int64_t> cells(cohort.size(), 0);
    Status s = db.forEachCellTokens(run.id, [&](int64_t patientId, int64_t, const store::TokenTopK &t) {
        auto it = index.find(patientId);
        if (it == index.end() || t.numTokens < 1)
            return true;
        ++cells[it->second];
        for (uint32_t j = t.offsets[0]; j < t.offsets[1]; ++j)
            if (t.entries[j].latent >= 0 && size_t(t.entries[j].latent) < d)
                sums[it->second * d + size_t(t.entries[j].latent)] += double(t.entries[j].value);
        return true;
    });
    if (!s)
        return s;
    cohort.clsToken.assign(cohort.size() * d, 0.f);
    for (size_t p = 0; p < cohort.size(); ++p)
        for (size_t k = 0; k < d; ++k)
            cohort.clsToken[p * d + k] = cells[p] ? float(sums[p * d + k] / double(cells[p])) : 0.f;
    return Status::success();
}

Cohort cohortFromCounts(std::vector<CohortPatient> patients, int dSae, std::vector<uint32_t> activeCells,
                        std::vector<uint32_t> activePatches)
{
    Cohort c;
    c.dSae = dSae;
    c.patients = std::move(patients);
    c.activeCells = std::move(activeCells);
    c.activePatches = activePatches.empty() ? std::vector<uint32_t>(c.activeCells.size(), 0) : std::move(activePatches);
    return c;
}

Result<std::vector<std::vector<float>>> patientMeanCls(store::ProjectDb &db, const store::RunRecord &run,
                                                       const Cohort &cohort)
{
    std::unordered_map<int64_t, size_t> index;
    for (size_t i = 0; i < cohort.patients.size(); ++i)
        index[cohort.patients[i].id] = i;
    std::vector<std::vector<double>> sums(cohort.size());
    std::vector<int64_t> counts(cohort.size(), 0);
    std::string problem;
    Status s = db.forEachCellCls(run.id, [&](int64_t patientId, int64_t imageId, const std::vector<float> &cls) {
        auto it = index.find(patientId);
        if (it == index.end() || cls.empty())
            return true;
        auto &sum = sums[it->second];
        if (sum.empty())
            sum.assign(cls.size(), 0.0);
        if (sum.size() != cls.size()) {
            problem = "image " + std::to_string(imageId) + " has a CLS embedding of " + std::to_string(cls.size()) +
                      " values, others " + std::to_string(sum.size());
            return false;
        }
        for (size_t j = 0; j < cls.size(); ++j)
            sum[j] += cls[j];
        ++counts[it->second];
        return true;
    });
    if (!s)
        return s.error().withContext(db.path());
    if (!problem.empty())
        return Error(db.path() + ": " + problem);
    std::vector<std::vector<float>> out(cohort.size());
    for (size_t i = 0; i < cohort.size(); ++i)
        for (double v : sums[i])
            out[i].push_back(float(v / double(counts[i])));
    return out;
}

std::vector<FingerprintRow> fingerprint(const Cohort &cohort, size_t patient)
{
    std::vector<FingerprintRow> out;
    if (patient >= cohort.size())
        return out;
    const int64_t n = cohort.patients[patient].cells;
    for (int32_t k = 0; k < cohort.dSae; ++k) {
        const uint32_t a = cohort.activeCells[patient * size_t(cohort.dSae) + size_t(k)];
        const uint32_t patches = cohort.activePatches[patient * size_t(cohort.dSae) + size_t(k)];
        if (!a && !patches)
            continue;
        FingerprintRow r;
        r.latent = k;
        r.activeCells = a;
        r.cells = n;
        r.fraction = n ? double(a) / double(n) : 0.0;
        r.ci = wilsonInterval(a, n);
        r.paperBarcode = cohort.paperBarcode(patient, k);
        out.push_back(r);
    }
    std::sort(out.begin(), out.end(), [](const auto &x, const auto &y) {
        return x.fraction != y.fraction ? x.fraction > y.fraction : x.latent < y.latent;
    });
    return out;
}

namespace {

// Median and unscaled MAD of the ascending values s[0..n) without index `skip` (-1: none),
// in O(n) without copying: the deviations from the median, smallest first, are a merge
// walking outward from the middle.
void medianMadSorted(const double *s, int n, int skip, double &med, double &mad)
{
    const int m = n - (skip >= 0 ? 1 : 0);
    med = mad = 0;
    if (m <= 0)
        return;
    auto at = [&](int i) { return s[(skip >= 0 && i >= skip) ? i + 1 : i]; };
    med = m % 2 ? at(m / 2) : (at(m / 2 - 1) + at(m / 2)) / 2.0;
    int left = (m - 1) / 2, right = left + 1;
    const int want = m / 2; // the deviation of rank `want` (0-based), and `want - 1` when m is even
    double previous = 0, current = 0;
    for (int r = 0; r <= want; ++r) {
        const double dl = left >= 0 ? med - at(left) : HUGE_VAL;
        const double dr = right < m ? at(right) - med : HUGE_VAL;
        previous = current;
        if (dl <= dr) {
            current = dl;
            --left;
        } else {
            current = dr;
            ++right;
        }
    }
    mad = m % 2 ? current : (previous + current) / 2.0;
}

struct ByAbsScore {
    bool operator()(const SpecificConcept &x, const SpecificConcept &y) const
    {
        return std::abs(x.score) != std::abs(y.score) ? std::abs(x.score) > std::abs(y.score) : x.latent < y.latent;
    }
};

} // namespace

Result<std::vector<SpecificConcept>> patientSpecific(const Cohort &cohort, size_t patient,
                                                     const PatientSpecificOptions &options)
{
    auto all = patientSpecific(cohort, std::vector<size_t>{patient}, options);
    if (!all)
        return all.error();
    return std::move(all->front());
}

Result<std::vector<std::vector<SpecificConcept>>> patientSpecific(const Cohort &cohort,
                                                                  const std::vector<size_t> &patients,
                                                                  const PatientSpecificOptions &options)
{
    const size_t n = cohort.size(), d = size_t(cohort.dSae);
    std::vector<size_t> ref;
    std::vector<int> refPos(n, -1); // index of a patient in `ref`
    for (size_t i = 0; i < n; ++i)
        if (options.referenceDiagnosis.empty() || cohort.patients[i].diagnosis == options.referenceDiagnosis) {
            refPos[i] = int(ref.size());
            ref.push_back(i);
        }
    for (size_t p : patients) {
        if (p >= n)
            return Error("no such patient in the cohort");
        if (ref.size() - (refPos[p] >= 0 ? 1 : 0) == 0)
            return Error(options.referenceDiagnosis.empty()
                             ? std::string("the cohort has no other patient to compare with")
                             : "no patient other than " + cohort.patients[p].code + " has the diagnosis '" +
                                   options.referenceDiagnosis + "'");
    }
    const size_t top = options.top > 0 ? size_t(options.top) : d;
    std::vector<std::vector<SpecificConcept>> heaps(patients.size());
    std::vector<std::pair<double, int>> sorted(ref.size());
    std::vector<double> values(ref.size());
    std::vector<int> rankOf(ref.size()); // position in the sorted order of each reference patient
    const size_t nRef = ref.size();
    for (size_t k = 0; k < d; ++k) {
        size_t nonzero = 0;
        for (size_t r = 0; r < nRef; ++r) {
            sorted[r] = {cohort.fraction(ref[r], int32_t(k)), int(r)};
            nonzero += sorted[r].first > 0;
        }
        bool anyPatient = false;
        for (size_t p : patients)
            anyPatient = anyPatient || cohort.activeCells[p * d + k];
        if (!anyPatient && 2 * nonzero <= nRef - 1)
            continue; // every requested patient and the reference median at zero
        std::sort(sorted.begin(), sorted.end());
        for (size_t r = 0; r < nRef; ++r) {
            values[r] = sorted[r].first;
            rankOf[size_t(sorted[r].second)] = int(r);
        }
        for (size_t i = 0; i < patients.size(); ++i) {
            const size_t p = patients[i];
            const uint32_t a = cohort.activeCells[p * d + k];
            const int skip = refPos[p] >= 0 ? rankOf[size_t(refPos[p])] : -1;
            const size_t others = nRef - (skip >= 0 ? 1 : 0);
            const size_t othersNonzero = nonzero - (skip >= 0 && a ? 1 : 0);
            if (!a && 2 * othersNonzero <= others)
                continue;
            SpecificConcept c;
            c.latent = int32_t(k);
            c.fraction = cohort.fraction(p, int32_t(k));
            c.ci = wilsonInterval(a, cohort.patients[p].cells);
            double mad = 0;
            medianMadSorted(values.data(), int(nRef), skip, c.referenceMedian, mad);
            c.referenceMad = 1.4826 * mad;
            const double se = (c.ci.hi - c.ci.lo) / (2 * 1.959963984540054);
            c.score = (c.fraction - c.referenceMedian) / std::sqrt(c.referenceMad * c.referenceMad + se * se + 1e-12);
            if (c.score == 0)
                continue;
            auto &heap = heaps[i];
            if (heap.size() < top) {
                heap.push_back(c);
                std::push_heap(heap.begin(), heap.end(), ByAbsScore());
            } else if (ByAbsScore()(c, heap.front())) {
                std::pop_heap(heap.begin(), heap.end(), ByAbsScore());
                heap.back() = c;
                std::push_heap(heap.begin(), heap.end(), ByAbsScore());
            }
        }
    }
    for (auto &heap : heaps)
        std::sort(heap.begin(), heap.end(), ByAbsScore());
    return heaps;
}

Result<DiseaseComparison> compareDiseases(const Cohort &cohort, const std::string &a, const std::string &b,
                                          int paperTop, double alpha)
{
    DiseaseComparison out;
    out.a = a;
    out.b = b;
    const bool rest = b == "rest";
    std::vector<size_t> ga, gb;
    std::vector<std::string> known;
    for (size_t i = 0; i < cohort.size(); ++i) {
        const std::string &dx = cohort.patients[i].diagnosis;
        if (!dx.empty() && std::find(known.begin(), known.end(), dx) == known.end())
            known.push_back(dx);
        if (dx.empty())
            continue;
        if (dx == a)
            ga.push_back(i);
        else if (rest || dx == b)
            gb.push_back(i);
    }
    std::sort(known.begin(), known.end());
    std::string list;
    for (const auto &k : known)
        list += (list.empty() ? "" : ", ") + k;
    if (list.empty())
        list = "none";
    if (ga.empty())
        return Error("no patient with cells has the diagnosis '" + a + "' (diagnoses: " + list + ")");
    if (gb.empty())
        return Error(rest ? "no patient has a diagnosis other than '" + a + "'"
                          : "no patient with cells has the diagnosis '" + b + "' (diagnoses: " + list + ")");
    if (!rest && a == b)
        return Error("compare two different diagnoses (or one against 'rest')");
    out.nA = int(ga.size());
    out.nB = int(gb.size());
    // The smallest p-value the test can give (complete separation, no ties).
    {
        const double na = out.nA, nb = out.nB;
        const double zMax = (na * nb / 2.0 - 0.5) / std::sqrt(na * nb * (na + nb + 1) / 12.0);
        const double pMin = 2.0 * normalSf(zMax);
        if (pMin >= alpha)
            out.notes.push_back("only " + std::to_string(out.nA) + " vs " + std::to_string(out.nB) +
                                " patients: even complete separation gives p = " + std::to_string(pMin) +
                                ", so no concept can reach q < " + std::to_string(alpha));
    }
    const size_t d = size_t(cohort.dSae);
    std::vector<double> va(ga.size()), vb(gb.size());
    std::vector<std::pair<double, int32_t>> paperDiff;
    for (size_t k = 0; k < d; ++k) {
        bool any = false;
        double sa = 0, sb = 0, pa = 0, pb = 0;
        for (size_t i = 0; i < ga.size(); ++i) {
            va[i] = cohort.fraction(ga[i], int32_t(k));
            sa += va[i];
            pa += cohort.paperBarcode(ga[i], int32_t(k));
            any = any || cohort.activeCells[ga[i] * d + k] || cohort.activePatches[ga[i] * d + k];
        }
        for (size_t i = 0; i < gb.size(); ++i) {
            vb[i] = cohort.fraction(gb[i], int32_t(k));
            sb += vb[i];
            pb += cohort.paperBarcode(gb[i], int32_t(k));
            any = any || cohort.activeCells[gb[i] * d + k] || cohort.activePatches[gb[i] * d + k];
        }
        if (!any)
            continue;
        DiseaseConcept c;
        c.latent = int32_t(k);
        c.meanA = sa / double(ga.size());
        c.meanB = sb / double(gb.size());
        c.diff = c.meanA - c.meanB;
        c.paperA = pa / double(ga.size());
        c.paperB = pb / double(gb.size());
        const MannWhitney mw = mannWhitney(va, vb);
        c.u = mw.u;
        c.z = mw.z;
        c.p = mw.p;
        c.rankBiserial = mw.rankBiserial;
        paperDiff.push_back({std::abs(c.paperA - c.paperB), c.latent});
        out.concepts.push_back(c);
    }
    out.tested = int(out.concepts.size());
    std::vector<double> p;
    for (const auto &c : out.concepts)
        p.push_back(c.p);
    const std::vector<double> q = benjaminiHochberg(p);
    std::unordered_map<int32_t, size_t> pos;
    for (size_t i = 0; i < out.concepts.size(); ++i) {
        out.concepts[i].q = q[i];
        out.significant += q[i] < alpha;
        pos[out.concepts[i].latent] = i;
    }
    std::sort(paperDiff.begin(), paperDiff.end(), [](const auto &x, const auto &y) {
        return x.first != y.first ? x.first > y.first : x.second < y.second;
    });
    for (size_t i = 0; i < paperDiff.size() && int(i) < paperTop; ++i) {
        if (paperDiff[i].first <= 0)
            break;
        out.paperTop.push_back(paperDiff[i].second);
        DiseaseConcept &c = out.concepts[pos[paperDiff[i].second]];
        c.paperRank = int(i) + 1;
        out.paperTopSignificant += c.q < alpha;
    }
    std::sort(out.concepts.begin(), out.concepts.end(), [](const auto &x, const auto &y) {
        if (x.p != y.p)
            return x.p < y.p;
        if (std::abs(x.rankBiserial) != std::abs(y.rankBiserial))
            return std::abs(x.rankBiserial) > std::abs(y.rankBiserial);
        return x.latent < y.latent;
    });
    return out;
}

SimilarityMatrix patientSimilarity(const Cohort &cohort, SimilarityMetric metric)
{
    SimilarityMatrix out;
    const size_t n = cohort.size(), d = size_t(cohort.dSae);
    out.order.resize(n);
    std::iota(out.order.begin(), out.order.end(), size_t(0));
    std::sort(out.order.begin(), out.order.end(), [&](size_t x, size_t y) {
        const auto &px = cohort.patients[x], &py = cohort.patients[y];
        if (px.diagnosis.empty() != py.diagnosis.empty())
            return py.diagnosis.empty();
        return px.diagnosis != py.diagnosis ? px.diagnosis < py.diagnosis : px.code < py.code;
    });
    std::vector<std::vector<float>> v(n, std::vector<float>(d));
    for (size_t i = 0; i < n; ++i) {
        double mean = 0;
        for (size_t k = 0; k < d; ++k) {
            v[i][k] = float(cohort.fraction(out.order[i], int32_t(k)));
            mean += v[i][k];
        }
        mean /= double(std::max<size_t>(d, 1));
        double norm = 0;
        for (size_t k = 0; k < d; ++k) {
            if (metric == SimilarityMetric::Correlation)
                v[i][k] -= float(mean);
            norm += double(v[i][k]) * v[i][k];
        }
        const float inv = norm > 0 ? float(1.0 / std::sqrt(norm)) : 0.f;
        for (float &e : v[i])
            e *= inv;
    }
    out.values.assign(n * n, 0.0);
    double within = 0, between = 0;
    size_t nWithin = 0, nBetween = 0;
    for (size_t i = 0; i < n; ++i) {
        for (size_t j = i; j < n; ++j) {
            float s = 0;
            const float *x = v[i].data(), *y = v[j].data();
            for (size_t k = 0; k < d; ++k)
                s += x[k] * y[k];
            out.values[i * n + j] = out.values[j * n + i] = s;
            if (i == j)
                continue;
            const auto &di = cohort.patients[out.order[i]].diagnosis, &dj = cohort.patients[out.order[j]].diagnosis;
            if (di.empty() || dj.empty())
                continue;
            if (di == dj) {
                within += s;
                ++nWithin;
            } else {
                between += s;
                ++nBetween;
            }
        }
    }
    out.withinMean = nWithin ? within / double(nWithin) : 0.0;
    out.betweenMean = nBetween ? between / double(nBetween) : 0.0;
    return out;
}

} // namespace cytosae::analysis
