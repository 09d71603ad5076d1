#pragma once

// Patient-level classification from features (concept fingerprints, mean CLS embeddings):
// multinomial logistic regression with an elastic-net penalty, fitted by FISTA (proximal
// gradient with momentum and adaptive restart), evaluated by stratified k-fold
// cross-validation with a nested inner cross-validation that chooses the penalty.
//
// Inside every training set (outer or inner) features are standardised with that set's mean
// and standard deviation, constant features are dropped, and when there are more than
// maxFeatures the strongest by the one-way ANOVA F statistic are kept (univariate screening,
// also inside the fold, so no test patient leaks into the choice). Intercepts are not
// penalised. Deterministic for a seed, whatever the number of threads.
//
// Pure computation, no database: any thread; crossValidate uses `threads` threads itself.

#include "common/Result.h"

#include <cstdint>
#include <string>
#include <vector>

namespace cytosae::analysis {

struct Dataset {
    int n = 0, p = 0;
    std::vector<float> x;                // n x p, row-major
    std::vector<int> y;                  // class of each row, 0 .. classNames.size() - 1
    std::vector<std::string> classNames;
    std::vector<std::string> rowNames;   // optional (patient codes), for messages
};

struct ClassifierOptions {
    int folds = 5;
    int innerFolds = 3;
    uint64_t seed = 1;
    double l1Ratio = 0.5;                // elastic-net mixing: 1 = lasso, 0 = ridge
    std::vector<double> lambdaRatios = {0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001, 0.0005}; // of lambda_max, strongest first
    int maxFeatures = 2000;              // in-fold screening; 0 = keep all
    bool balanced = true;                // class weights n / (classes x class size) in the loss
    int maxIterations = 400;
    double tolerance = 1e-2;             // stop when the optimality residual (gradient mapping)
                                         // falls below this fraction of its first value
    int threads = 0;                     // 0: hardware concurrency
    int topFeatures = 10;                // per class, from the model refitted on all rows
};

struct ClassMetrics {
    std::string name;
    int support = 0;
    double precision = 0, recall = 0, f1 = 0;
};

struct FeatureWeight {
    int feature = 0;   // column of the dataset
    double weight = 0; // standardised coefficient
};

struct CvResult {
    int folds = 0;                        // folds used (may be fewer than asked; see notes)
    std::vector<std::string> classNames;  // classes used
    std::vector<ClassMetrics> classes;
    double macroF1 = 0, accuracy = 0;
    std::vector<std::vector<int>> confusion; // [true class][predicted class]
    std::vector<int> rows;                // dataset rows used
    std::vector<int> truth, predicted;    // per used row, out of fold (class index in classNames)
    std::vector<double> foldMacroF1;
    std::vector<double> foldLambdaRatio;  // penalty chosen by the inner CV of each fold
    double finalLambdaRatio = 0;
    std::vector<std::vector<FeatureWeight>> topFeatures; // per class, largest positive weight first
    std::vector<std::string> notes;       // what was reduced or left out, and why
    double seconds = 0;
    long long iterations = 0;             // FISTA iterations over all fits
};

// Fold (0 .. k-1) of each row: each class's rows are shuffled by the seed and dealt in turn,
// starting where the previous class stopped, so fold sizes differ by at most one and every
// class is spread as evenly as possible.
std::vector<int> stratifiedFolds(const std::vector<int> &y, int k, uint64_t seed);

// Classes with fewer than two rows are left out (noted); folds are reduced to the smallest
// class (noted). Fewer than two usable classes, or an empty/ill-shaped dataset: an error.
Result<CvResult> crossValidate(const Dataset &data, const ClassifierOptions &options);

// One fit on all rows at one penalty (lambda = ratio x lambda_max), for tests and
// benchmarks: returns the training accuracy; iterations used go to *iterations.
Result<double> fitOnce(const Dataset &data, const ClassifierOptions &options, double lambdaRatio,
                       long long *iterations = nullptr);

} // namespace cytosae::analysis
