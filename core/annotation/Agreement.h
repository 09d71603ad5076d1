#pragma once

// Statistics over annotation answers (store/AnnotationDb): the precision of a concept per
// activation bin with a recommended threshold (precision check), and agreement between
// annotators: Cohen's kappa for two raters, Fleiss' kappa for more, a disagreement list.

#include "common/Result.h"
#include "store/AnnotationDb.h"

#include <optional>
#include <string>
#include <vector>

namespace cytosae::annotation {

struct Kappa {
    double kappa = 0;
    double observed = 0; // observed agreement
    double expected = 0; // agreement expected by chance
    int items = 0;
    int raters = 0;
    std::string method; // "Cohen" or "Fleiss"
};

// Two raters' answers on the same items (categories are any strings). Undefined (an error)
// when chance agreement is 1, i.e. both raters used one and the same category throughout.
Result<Kappa> cohenKappa(const std::vector<std::string> &a, const std::vector<std::string> &b);
// counts[item][category]: how many raters put the item in the category; every item must have
// the same number (>= 2) of ratings.
Result<Kappa> fleissKappa(const std::vector<std::vector<int>> &counts);

struct BinPrecision {
    int bin = 0;           // 0 = strongest; -1 = negative controls below the threshold
    double lo = 0, hi = 0; // activation range of the sampled cells
    int hits = 0, misses = 0, unanswered = 0;
    std::optional<double> precision; // hits / (hits + misses), none when nothing answered
};

struct PrecisionReport {
    std::vector<BinPrecision> bins; // strongest first
    BinPrecision negatives;         // bin -1: fraction marked "hit" below the threshold
    std::optional<double> recommendedThreshold;
    std::string recommendation; // a sentence saying how it was chosen, or why there is none
    int answered = 0, total = 0;
};

// The answer that counts for each item: the adjudicator's, else the raters' majority (a tie
// counts as unanswered). Positions without a counted answer are absent.
std::vector<std::pair<int, std::string>> decidedAnswers(const std::vector<store::AnnotationAnswer> &answers);

// Precision per bin. The recommended threshold is the lowest activation from which every
// bin, from the strongest down, reaches targetPrecision: the midpoint between the weakest
// passing bin and the strongest failing one (the task's threshold when all bins pass).
PrecisionReport precisionReport(const store::AnnotationTask &task, const std::vector<store::AnnotationAnswer> &answers,
                                double targetPrecision = 0.9);

struct Disagreement {
    int position = 0;
    int64_t imageId = 0;
    std::vector<std::pair<std::string, std::string>> answers; // rater, answer
    std::optional<std::string> adjudicated;
};

struct AgreementReport {
    std::vector<std::string> raters;
    int itemsRatedByAll = 0;
    std::optional<Kappa> kappa;
    std::string kappaProblem; // why there is no kappa
    std::vector<Disagreement> disagreements;
};

// Agreement over the items every rater answered (adjudicators are not raters).
AgreementReport agreementReport(const store::AnnotationTask &task, const std::vector<store::AnnotationAnswer> &answers);

} // namespace cytosae::annotation
