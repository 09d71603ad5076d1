#pragma once

// Patient-level diagnosis from a cohort's concept fingerprints, cross-validated, next to the
// same classifier on each patient's mean CLS embedding (the cost of explainability, measured
// on the same folds and seed), and the concepts that drive each class with their cells.
// Two tasks: every diagnosis (subtypes), and the control group against all others when the
// cohort has one. Needs the database only for the CLS embeddings and the cells; call from
// one thread per ProjectDb.

#include "analysis/Classifier.h"
#include "analysis/Cohort.h"

#include <optional>

namespace cytosae::analysis {

struct ConceptDriver {
    int32_t latent = 0;
    double weight = 0;                  // standardised coefficient of the refitted model
    std::vector<store::CellHit> cells;  // strongest cells of the concept in that class
};

struct ClassificationTask {
    std::string name;                   // "diagnosis" or "<control> vs disease"
    CvResult concepts;                  // from the concept fingerprints
    std::optional<CvResult> embedding;  // from the mean CLS embedding, same folds and seed
    std::string embeddingNote;          // why there is no baseline, if there is none
    std::vector<std::vector<ConceptDriver>> drivers; // per class of `concepts`
};

// What describes a patient to the classifier, per latent: the fraction of cells in which it is
// active, as asin(sqrt(fraction)) (presence); the mean strength of its strongest patch over
// the cells (strength); both side by side (2 x d features; the elastic net, its penalty chosen
// by nested CV, weighs them).
// cls-token: the mean over the cells of the SAE's concepts of the CLS token (needs
// addClsTokenConcepts); all: presence, strength and cls-token side by side.
enum class ConceptFeatures { Presence, Strength, Both, ClsToken, All };
const char *conceptFeaturesName(ConceptFeatures f);
bool parseConceptFeatures(const std::string &text, ConceptFeatures &out);

struct CohortClassifyOptions {
    ClassifierOptions classifier;
    // All: chosen on development cohorts (docs/analysis.md), measured on fresh ones.
    ConceptFeatures features = ConceptFeatures::All;
    std::string control;                // "": detect (a diagnosis named control/healthy/normal); "none": skip
    int cellsPerConcept = 5;
    bool embeddingBaseline = true;
};

struct CohortClassification {
    std::vector<ClassificationTask> tasks;
    std::vector<std::string> notes;
};

// Patients with a diagnosis; rows in cohort order. binaryControl non-empty: two classes,
// that diagnosis against every other.
// Strength features need a cohort loaded from a project (Cohort::strength); feature f of the
// dataset is latent f % dSae.
Dataset conceptDataset(const Cohort &cohort, const std::string &binaryControl = {},
                       std::vector<size_t> *patientIndex = nullptr, ConceptFeatures features = ConceptFeatures::Presence);

// The control diagnosis the cohort has, or empty.
std::string detectControl(const Cohort &cohort);

// db may be null: no embedding baseline and no cells.
Result<CohortClassification> classifyCohort(store::ProjectDb *db, const store::RunRecord &run, const Cohort &cohort,
                                            const CohortClassifyOptions &options);

} // namespace cytosae::analysis
