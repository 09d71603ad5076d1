#pragma once

// Patient and cohort analytics over one run of a project (docs/analysis.md):
// per-patient concept fingerprints with Wilson intervals, the reference's barcode for
// comparison, patient-specific concepts by a robust score, disease-specific concepts by a
// per-concept rank test with FDR control, and a patient similarity matrix.
//
// A Cohort is loaded once (one query over the run's cells) and then analysed in memory:
// patients x latents counts, dense (189 patients x 49,152 latents is 37 MB per matrix).
// Loading needs the project database; everything else is pure computation on the Cohort
// (any thread, one Cohort per thread or shared read-only).

#include "analysis/Statistics.h"
#include "common/Result.h"
#include "store/ProjectDb.h"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace cytosae::analysis {

struct CohortPatient {
    int64_t id = 0;
    std::string code;
    std::string diagnosis; // empty: unknown
    int64_t cells = 0;     // accepted cells with results in the run
};

struct CohortOptions {
    // A concept is active in a cell when its maximum over the patch tokens exceeds the
    // threshold; < 0: the run's patch threshold (0.2 by default).
    double threshold = -1;
    // Per-latent thresholds that replace it (validated thresholds, where they exist).
    std::map<int32_t, double> latentThresholds;
};

struct Cohort {
    int dSae = 0;
    double threshold = 0.2;
    double runThreshold = 0.2;                 // what n_patches in the database counts
    std::vector<CohortPatient> patients;       // with at least one cell, ordered by code
    std::vector<uint32_t> activeCells;         // patients x dSae: cells in which the latent is active
    std::vector<uint32_t> activePatches;       // patients x dSae: sum over cells of patches > runThreshold
    // patients x dSae: the mean over the patient's cells of the latent's strongest patch
    // activation (0 in cells where it is absent): how strongly, not only how often. Empty for
    // cohorts built from counts.
    std::vector<float> strength;
    // patients x dSae: the mean over the patient's cells of the latent's activation on the CLS
    // token (the SAE's concepts of the whole-cell summary token). Empty until addClsTokenConcepts.
    std::vector<float> clsToken;
    std::vector<std::string> notes;            // patients left out and why

    size_t size() const { return patients.size(); }
    double fraction(size_t patient, int32_t latent) const
    {
        const int64_t n = patients[patient].cells;
        return n ? double(activeCells[patient * size_t(dSae) + size_t(latent)]) / double(n) : 0.0;
    }
    // The reference's barcode (docs/reference.md, Patient barcode): patch tokens above 0.2 over the patient's cells,
    // divided by the number of latents (49,152 in the paper) instead of the number of cells,
    // so patients with more cells score higher. Kept for comparison only.
    double paperBarcode(size_t patient, int32_t latent) const
    {
        return double(activePatches[patient * size_t(dSae) + size_t(latent)]) / double(dSae);
    }
    // Index of a patient by code, or -1.
    long indexOf(const std::string &code) const;
};

// What `cytosae analyze` and the explorer use unless told otherwise: the run's threshold, and
// for every latent with a threshold validated by a precision check (label ledger, same model
// files) that threshold. `validated` (optional) receives how many latents have one.
Result<CohortOptions> defaultCohortOptions(store::ProjectDb &db, const store::RunRecord &run, int *validated = nullptr);

// Reads every accepted cell of the run in one query. Patients without cells are noted and
// left out; so are cells without a patient.
Result<Cohort> loadCohort(store::ProjectDb &db, const store::RunRecord &run, const CohortOptions &options = {});

// Fills Cohort::clsToken from the run's stored per-token activations (one pass over the cells).
Status addClsTokenConcepts(store::ProjectDb &db, const store::RunRecord &run, Cohort &cohort);

// A cohort from counts (tests, benchmarks): activeCells patients x dSae.
Cohort cohortFromCounts(std::vector<CohortPatient> patients, int dSae, std::vector<uint32_t> activeCells,
                        std::vector<uint32_t> activePatches = {});

// Mean CLS embedding of each cohort patient (same order); patients without embeddings get
// an empty vector.
Result<std::vector<std::vector<float>>> patientMeanCls(store::ProjectDb &db, const store::RunRecord &run,
                                                       const Cohort &cohort);

// ---- 1. fingerprint ----
struct FingerprintRow {
    int32_t latent = 0;
    int64_t activeCells = 0, cells = 0;
    double fraction = 0;
    Interval ci;               // Wilson 95%
    double paperBarcode = 0;   // the reference's barcode, for comparison
};
// Latents active in at least one of the patient's cells, strongest fraction first.
std::vector<FingerprintRow> fingerprint(const Cohort &cohort, size_t patient);

// ---- 2. patient-specific concepts ----
struct PatientSpecificOptions {
    std::string referenceDiagnosis; // empty: every other patient; else those with this diagnosis
    int top = 20;
};
struct SpecificConcept {
    int32_t latent = 0;
    double fraction = 0;
    Interval ci;
    double referenceMedian = 0, referenceMad = 0; // MAD scaled by 1.4826
    // (fraction - median) / sqrt((1.4826 MAD)^2 + s^2 + 1e-6^2), s the patient's own binomial
    // standard error from its Wilson interval, so a concept in 2 of 10 cells does not score as
    // high as one in 200 of 1000 when the cohort never shows it.
    double score = 0;
};
// Ranked by |score|, largest first. The patient is never part of its own reference.
Result<std::vector<SpecificConcept>> patientSpecific(const Cohort &cohort, size_t patient,
                                                     const PatientSpecificOptions &options = {});
// The same for several patients at once (each latent's reference is sorted once): one list
// per requested patient, in order. A patient without any other reference patient: an error.
Result<std::vector<std::vector<SpecificConcept>>> patientSpecific(const Cohort &cohort,
                                                                  const std::vector<size_t> &patients,
                                                                  const PatientSpecificOptions &options = {});

// ---- 3. disease-specific concepts ----
struct DiseaseConcept {
    int32_t latent = 0;
    double meanA = 0, meanB = 0, diff = 0; // fractions: mean over the group's patients
    double u = 0, z = 0, p = 1, q = 1;     // Mann-Whitney U of group A, BH-adjusted q
    double rankBiserial = 0;               // Cliff's delta, > 0: higher in A
    double paperA = 0, paperB = 0;         // disease barcodes of the reference
    int paperRank = 0;                     // 1 .. paperTop when among the reference's top by |difference|
};
struct DiseaseComparison {
    std::string a, b;                      // b "rest": every patient with another diagnosis
    int nA = 0, nB = 0;
    int tested = 0;                        // latents active in at least one patient of A or B
    std::vector<DiseaseConcept> concepts;  // tested latents, by p then |effect|
    std::vector<int32_t> paperTop;         // reference's top latents by |paper barcode difference|
    int significant = 0;                   // q < alpha
    int paperTopSignificant = 0;           // of paperTop, how many have q < alpha
    std::vector<std::string> notes;
};
Result<DiseaseComparison> compareDiseases(const Cohort &cohort, const std::string &a, const std::string &b,
                                          int paperTop = 50, double alpha = 0.05);

// ---- similarity ----
struct SimilarityMatrix {
    std::vector<size_t> order;   // cohort patient indices, by diagnosis then code
    std::vector<double> values;  // order.size()^2, row-major in that order
    double withinMean = 0, betweenMean = 0; // mean off-diagonal similarity within / between diagnoses
};
enum class SimilarityMetric { Cosine, Correlation };
SimilarityMatrix patientSimilarity(const Cohort &cohort, SimilarityMetric metric = SimilarityMetric::Cosine);

} // namespace cytosae::analysis
