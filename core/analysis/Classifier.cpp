#include "analysis/Classifier.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <thread>

namespace cytosae::analysis {

namespace {

// A training (or test) set after in-fold standardisation and screening, in both layouts:
// rows (n x m) for the gradient, columns (m x n) for the scores (skipping zero weights).
struct Design {
    int n = 0, m = 0;
    std::vector<float> rows, cols;
    std::vector<int> y;
    std::vector<double> weight; // per row: n / (classes x rows of its class), or 1
};

struct Transform {
    std::vector<int> features; // dataset columns kept
    std::vector<float> mean, invStd;
};

Transform learnTransform(const Dataset &d, const std::vector<int> &rowIdx, int classes, int maxFeatures)
{
    const int p = d.p;
    const double n = double(rowIdx.size());
    std::vector<double> sum(size_t(p), 0.0), sumSq(size_t(p), 0.0);
    std::vector<std::vector<double>> classSum(size_t(classes), std::vector<double>(size_t(p), 0.0));
    std::vector<int> classCount(size_t(classes), 0);
    for (int r : rowIdx) {
        const float *x = &d.x[size_t(r) * size_t(p)];
        auto &cs = classSum[size_t(d.y[size_t(r)])];
        ++classCount[size_t(d.y[size_t(r)])];
        for (int j = 0; j < p; ++j) {
            const double v = x[j];
            sum[size_t(j)] += v;
            sumSq[size_t(j)] += v * v;
            cs[size_t(j)] += v;
        }
    }
    Transform t;
    std::vector<std::pair<double, int>> scored;
    for (int j = 0; j < p; ++j) {
        const double mean = sum[size_t(j)] / n;
        const double total = sumSq[size_t(j)] - n * mean * mean; // total sum of squares
        if (!(total > 1e-12 * std::max(1.0, sumSq[size_t(j)])))
            continue; // constant in this training set (all-zero features included)
        double between = 0;
        for (int c = 0; c < classes; ++c) {
            if (!classCount[size_t(c)])
                continue;
            const double cm = classSum[size_t(c)][size_t(j)] / classCount[size_t(c)];
            between += classCount[size_t(c)] * (cm - mean) * (cm - mean);
        }
        const double within = std::max(total - between, 1e-12 * total);
        scored.push_back({between / within, j});
    }
    if (maxFeatures > 0 && int(scored.size()) > maxFeatures) {
        std::partial_sort(scored.begin(), scored.begin() + maxFeatures, scored.end(), [](const auto &a, const auto &b) {
            return a.first != b.first ? a.first > b.first : a.second < b.second;
        });
        scored.resize(size_t(maxFeatures));
    }
    std::sort(scored.begin(), scored.end(), [](const auto &a, const auto &b) { return a.second < b.second; });
    for (const auto &[f, j] : scored) {
        (void)f;
        const double mean = sum[size_t(j)] / n;
        const double var = std::max(0.0, sumSq[size_t(j)] / n - mean * mean);
        t.features.push_back(j);
        t.mean.push_back(float(mean));
        t.invStd.push_back(float(1.0 / std::sqrt(std::max(var, 1e-20))));
    }
    return t;
}

void setWeights(Design &d, int classes, bool balanced);

Design applyTransform(const Dataset &d, const std::vector<int> &rowIdx, const Transform &t, int classes, bool balanced)
{
    Design out;
    out.n = int(rowIdx.size());
    out.m = int(t.features.size());
    out.rows.resize(size_t(out.n) * size_t(out.m));
    out.cols.resize(out.rows.size());
    for (int i = 0; i < out.n; ++i) {
        const int r = rowIdx[size_t(i)];
        const float *x = &d.x[size_t(r) * size_t(d.p)];
        float *dst = &out.rows[size_t(i) * size_t(out.m)];
        for (int j = 0; j < out.m; ++j) {
            const float v = (x[t.features[size_t(j)]] - t.mean[size_t(j)]) * t.invStd[size_t(j)];
            dst[j] = v;
            out.cols[size_t(j) * size_t(out.n) + size_t(i)] = v;
        }
        out.y.push_back(d.y[size_t(r)]);
    }
    setWeights(out, classes, balanced);
    return out;
}

// Balanced class weights, so that a small class (the controls among many patients) counts as
// much as a large one in the loss.
void setWeights(Design &d, int classes, bool balanced)
{
    std::vector<double> count(size_t(classes), 0.0);
    for (int c : d.y)
        count[size_t(c)] += 1;
    int present = 0;
    for (double c : count)
        present += c > 0;
    d.weight.assign(size_t(d.n), 1.0);
    if (balanced)
        for (int i = 0; i < d.n; ++i)
            d.weight[size_t(i)] = double(d.n) / (present * count[size_t(d.y[size_t(i)])]);
}

struct Model {
    int m = 0, k = 0;
    std::vector<float> w;  // k x m
    std::vector<double> b; // k
};

// scores (n x k) = X W^T + b, skipping zero weights (the penalty makes most of them zero).
void computeScores(const Design &d, const Model &model, std::vector<double> &scores)
{
    const int n = d.n, k = model.k;
    std::vector<float> s(size_t(k) * size_t(n), 0.f); // class-major, for contiguous axpy
    for (int j = 0; j < d.m; ++j) {
        const float *col = &d.cols[size_t(j) * size_t(n)];
        for (int c = 0; c < k; ++c) {
            const float w = model.w[size_t(c) * size_t(d.m) + size_t(j)];
            if (w == 0.f)
                continue;
            float *dst = &s[size_t(c) * size_t(n)];
            for (int i = 0; i < n; ++i)
                dst[i] += w * col[i];
        }
    }
    scores.resize(size_t(n) * size_t(k));
    for (int i = 0; i < n; ++i)
        for (int c = 0; c < k; ++c)
            scores[size_t(i) * size_t(k) + size_t(c)] = double(s[size_t(c) * size_t(n) + size_t(i)]) + model.b[size_t(c)];
}

// Softmax in place per row; returns the mean negative log-likelihood.
double softmaxLoss(std::vector<double> &scores, const std::vector<int> &y, int k, const std::vector<double> *weight = nullptr)
{
    const size_t n = y.size();
    double loss = 0;
    for (size_t i = 0; i < n; ++i) {
        double *s = &scores[i * size_t(k)];
        const double mx = *std::max_element(s, s + k);
        double z = 0;
        for (int c = 0; c < k; ++c)
            z += std::exp(s[c] - mx);
        loss -= (weight ? (*weight)[i] : 1.0) * (s[y[i]] - mx - std::log(z));
        for (int c = 0; c < k; ++c)
            s[c] = std::exp(s[c] - mx) / z;
    }
    return n ? loss / double(n) : 0.0;
}

// Largest eigenvalue of X^T X / n by power iteration (for the step size).
double spectralBound(const Design &d)
{
    if (!d.m || !d.n)
        return 1.0;
    std::vector<double> v(size_t(d.m), 1.0 / std::sqrt(double(d.m))), xv(size_t(d.n)), next(size_t(d.m));
    double lambda = 0;
    for (int it = 0; it < 30; ++it) {
        for (int i = 0; i < d.n; ++i) {
            const float *x = &d.rows[size_t(i) * size_t(d.m)];
            double s = 0;
            for (int j = 0; j < d.m; ++j)
                s += double(x[j]) * v[size_t(j)];
            xv[size_t(i)] = s;
        }
        std::fill(next.begin(), next.end(), 0.0);
        for (int i = 0; i < d.n; ++i) {
            const float *x = &d.rows[size_t(i) * size_t(d.m)];
            for (int j = 0; j < d.m; ++j)
                next[size_t(j)] += xv[size_t(i)] * double(x[j]);
        }
        double norm = 0;
        for (double e : next)
            norm += e * e;
        norm = std::sqrt(norm);
        if (norm <= 0)
            return 1.0;
        lambda = norm / double(d.n);
        for (int j = 0; j < d.m; ++j)
            v[size_t(j)] = next[size_t(j)] / norm;
    }
    return lambda;
}

// Largest |gradient| of the loss at W = 0 (intercepts at the class log-priors), over l1Ratio:
// the smallest penalty at which every coefficient is zero.
double lambdaMax(const Design &d, int k, double l1Ratio)
{
    // With balanced weights the intercept-only optimum predicts every class equally often.
    std::vector<double> prior(size_t(k), 0.0), wsum(size_t(k), 0.0);
    double total = 0;
    for (int i = 0; i < d.n; ++i) {
        wsum[size_t(d.y[size_t(i)])] += d.weight[size_t(i)];
        total += d.weight[size_t(i)];
    }
    for (int c = 0; c < k; ++c)
        prior[size_t(c)] = wsum[size_t(c)] / total;
    double mx = 0;
    for (int j = 0; j < d.m; ++j) {
        const float *col = &d.cols[size_t(j) * size_t(d.n)];
        std::vector<double> g(size_t(k), 0.0);
        for (int i = 0; i < d.n; ++i)
            for (int c = 0; c < k; ++c)
                g[size_t(c)] += d.weight[size_t(i)] * (prior[size_t(c)] - (d.y[size_t(i)] == c ? 1.0 : 0.0)) * col[i];
        for (double e : g)
            mx = std::max(mx, std::abs(e) / d.n);
    }
    return mx / std::max(l1Ratio, 1e-3);
}

Model initialModel(const Design &d, int k)
{
    Model model;
    model.m = d.m;
    model.k = k;
    model.w.assign(size_t(k) * size_t(d.m), 0.f);
    model.b.assign(size_t(k), 0.0);
    std::vector<double> count(size_t(k), 0.5); // smoothed (weighted) log-priors
    for (int i = 0; i < d.n; ++i)
        count[size_t(d.y[size_t(i)])] += d.weight[size_t(i)];
    for (int c = 0; c < k; ++c)
        model.b[size_t(c)] = std::log(count[size_t(c)]);
    return model;
}

// FISTA on mean cross-entropy + lambda (l1Ratio |W|_1 + (1 - l1Ratio)/2 |W|^2), from `model`.
long long fit(const Design &d, int k, double lambda, const ClassifierOptions &opt, double lipschitzData, Model &model)
{
    const int n = d.n, m = d.m;
    const double l1 = lambda * opt.l1Ratio, l2 = lambda * (1.0 - opt.l1Ratio);
    // Böhning's bound on the multinomial Hessian (1/2), the intercept column (X is centred,
    // so it adds an orthogonal direction of eigenvalue 1), and the ridge part.
    const double maxWeight = d.weight.empty() ? 1.0 : *std::max_element(d.weight.begin(), d.weight.end());
    const double L = 0.5 * maxWeight * std::max(lipschitzData, 1.0) * 1.02 + l2;
    const double step = 1.0 / L;
    Model yk = model, prev = model;
    double t = 1.0;
    std::vector<double> scores;
    std::vector<float> grad(size_t(k) * size_t(m));
    std::vector<double> resid(size_t(n) * size_t(k));
    long long it = 0;
    double firstResidual = 0;
    for (; it < opt.maxIterations; ++it) {
        computeScores(d, yk, scores);
        softmaxLoss(scores, d.y, k);
        for (int i = 0; i < n; ++i)
            for (int c = 0; c < k; ++c)
                resid[size_t(i) * size_t(k) + size_t(c)] =
                    d.weight[size_t(i)] * (scores[size_t(i) * size_t(k) + size_t(c)] - (d.y[size_t(i)] == c ? 1.0 : 0.0)) / n;
        std::fill(grad.begin(), grad.end(), 0.f);
        for (int i = 0; i < n; ++i) {
            const float *x = &d.rows[size_t(i) * size_t(m)];
            for (int c = 0; c < k; ++c) {
                const float r = float(resid[size_t(i) * size_t(k) + size_t(c)]);
                float *g = &grad[size_t(c) * size_t(m)];
                for (int j = 0; j < m; ++j)
                    g[j] += r * x[j];
            }
        }
        // Proximal step from yk.
        Model next = yk;
        double maxChange = 0;
        const float thr = float(step * l1);
        for (size_t e = 0; e < next.w.size(); ++e) {
            const float g = grad[e] + float(l2) * yk.w[e];
            float v = yk.w[e] - float(step) * g;
            v = v > thr ? v - thr : (v < -thr ? v + thr : 0.f);
            next.w[e] = v;
            maxChange = std::max(maxChange, double(std::abs(v - yk.w[e])));
        }
        for (int c = 0; c < k; ++c) {
            double gb = 0;
            for (int i = 0; i < n; ++i)
                gb += resid[size_t(i) * size_t(k) + size_t(c)];
            next.b[size_t(c)] = yk.b[size_t(c)] - step * gb;
            maxChange = std::max(maxChange, std::abs(next.b[size_t(c)] - yk.b[size_t(c)]));
        }
        // Adaptive restart (O'Donoghue & Candes): drop the momentum when it points uphill.
        double dot = 0;
        for (size_t e = 0; e < next.w.size(); ++e)
            dot += double(yk.w[e] - next.w[e]) * double(next.w[e] - prev.w[e]);
        for (int c = 0; c < k; ++c)
            dot += (yk.b[size_t(c)] - next.b[size_t(c)]) * (next.b[size_t(c)] - prev.b[size_t(c)]);
        double tNext = (1.0 + std::sqrt(1.0 + 4.0 * t * t)) / 2.0;
        if (dot > 0) {
            t = 1.0;
            tNext = 1.0;
        }
        const double beta = (t - 1.0) / tNext;
        for (size_t e = 0; e < next.w.size(); ++e)
            yk.w[e] = next.w[e] + float(beta) * (next.w[e] - prev.w[e]);
        for (int c = 0; c < k; ++c)
            yk.b[size_t(c)] = next.b[size_t(c)] + beta * (next.b[size_t(c)] - prev.b[size_t(c)]);
        prev = std::move(next);
        t = tNext;
        // Stop on the gradient mapping L (y - prox(y - grad / L)), the composite problem's
        // optimality residual, relative to its first value: independent of the step size.
        const double residual = maxChange * L;
        if (it == 0)
            firstResidual = std::max(residual, 1e-12);
        else if (residual < opt.tolerance * firstResidual)
            break;
    }
    model = std::move(prev);
    return it + 1;
}

std::vector<int> predict(const Design &d, const Model &model)
{
    std::vector<double> scores;
    computeScores(d, model, scores);
    std::vector<int> out(size_t(d.n));
    for (int i = 0; i < d.n; ++i) {
        const double *s = &scores[size_t(i) * size_t(model.k)];
        out[size_t(i)] = int(std::max_element(s, s + model.k) - s);
    }
    return out;
}

double logLoss(const Design &d, const Model &model)
{
    std::vector<double> scores;
    computeScores(d, model, scores);
    return softmaxLoss(scores, d.y, model.k, &d.weight);
}

struct Work {
    const Dataset &data;
    const ClassifierOptions &opt;
    int k;
    std::atomic<long long> iterations{0};
};

// Fits the penalty path (strongest first, warm-started) on `train` down to ratio index
// `last`; calls visit(index, model) after each.
template <typename Visit>
void fitPath(Work &w, const Design &train, size_t last, Visit visit)
{
    Model model = initialModel(train, w.k);
    const double lmax = lambdaMax(train, w.k, w.opt.l1Ratio);
    const double spec = spectralBound(train);
    for (size_t g = 0; g <= last; ++g) {
        w.iterations += fit(train, w.k, w.opt.lambdaRatios[g] * lmax, w.opt, spec, model);
        visit(g, model);
    }
}

// Inner CV on `rows`: the index of the penalty ratio with the smallest mean validation loss.
size_t choosePenalty(Work &w, const std::vector<int> &rows, uint64_t seed, std::vector<std::string> *notes)
{
    const size_t grid = w.opt.lambdaRatios.size();
    std::vector<int> y;
    for (int r : rows)
        y.push_back(w.data.y[size_t(r)]);
    std::map<int, int> counts;
    for (int c : y)
        ++counts[c];
    int smallest = int(rows.size());
    for (const auto &[c, n] : counts)
        smallest = std::min(smallest, n);
    const int inner = std::min(w.opt.innerFolds, smallest);
    if (inner < 2 || grid == 1) {
        if (notes && grid > 1)
            notes->push_back("a class has fewer than 2 patients in a training set: no inner cross-validation, "
                             "the middle penalty of the grid is used");
        return grid / 2;
    }
    const std::vector<int> fold = stratifiedFolds(y, inner, seed);
    // Criterion: mean validation log-loss (balanced weights); smoother than F1 on small sets.
    std::vector<double> loss(grid, 0.0);
    for (int f = 0; f < inner; ++f) {
        std::vector<int> tr, va;
        for (size_t i = 0; i < rows.size(); ++i)
            (fold[i] == f ? va : tr).push_back(rows[i]);
        const Transform t = learnTransform(w.data, tr, w.k, w.opt.maxFeatures);
        const Design train = applyTransform(w.data, tr, t, w.k, w.opt.balanced),
                     valid = applyTransform(w.data, va, t, w.k, w.opt.balanced);
        fitPath(w, train, grid - 1, [&](size_t g, const Model &m) { loss[g] += logLoss(valid, m) / inner; });
    }
    size_t best = 0;
    for (size_t g = 1; g < grid; ++g)
        if (loss[g] < loss[best] - 1e-9)
            best = g;
    return best;
}

Model fitAt(Work &w, const Design &train, size_t ratioIndex)
{
    Model out;
    fitPath(w, train, ratioIndex, [&](size_t g, const Model &m) {
        if (g == ratioIndex)
            out = m;
    });
    return out;
}

double macroF1Of(const std::vector<int> &truth, const std::vector<int> &pred, int k, std::vector<ClassMetrics> *per)
{
    std::vector<int> tp(size_t(k), 0), fp(size_t(k), 0), fn(size_t(k), 0), support(size_t(k), 0);
    for (size_t i = 0; i < truth.size(); ++i) {
        ++support[size_t(truth[i])];
        if (truth[i] == pred[i]) {
            ++tp[size_t(truth[i])];
        } else {
            ++fp[size_t(pred[i])];
            ++fn[size_t(truth[i])];
        }
    }
    double sum = 0;
    int present = 0;
    for (int c = 0; c < k; ++c) {
        ClassMetrics m;
        m.support = support[size_t(c)];
        m.precision = tp[size_t(c)] + fp[size_t(c)] ? double(tp[size_t(c)]) / (tp[size_t(c)] + fp[size_t(c)]) : 0.0;
        m.recall = support[size_t(c)] ? double(tp[size_t(c)]) / support[size_t(c)] : 0.0;
        m.f1 = m.precision + m.recall > 0 ? 2 * m.precision * m.recall / (m.precision + m.recall) : 0.0;
        if (per)
            per->push_back(m);
        if (support[size_t(c)]) {
            sum += m.f1;
            ++present;
        }
    }
    return present ? sum / present : 0.0;
}

} // namespace

std::vector<int> stratifiedFolds(const std::vector<int> &y, int k, uint64_t seed)
{
    std::vector<int> fold(y.size(), 0);
    if (k < 1)
        return fold;
    std::map<int, std::vector<int>> byClass;
    for (size_t i = 0; i < y.size(); ++i)
        byClass[y[i]].push_back(int(i));
    std::mt19937_64 rng(seed);
    int next = 0;
    for (auto &[c, idx] : byClass) {
        (void)c;
        std::shuffle(idx.begin(), idx.end(), rng);
        for (int i : idx) {
            fold[size_t(i)] = next;
            next = (next + 1) % k;
        }
    }
    return fold;
}

Result<CvResult> crossValidate(const Dataset &data, const ClassifierOptions &options)
{
    const auto started = std::chrono::steady_clock::now();
    if (data.n <= 0 || data.p <= 0)
        return Error("no patients or no features to classify");
    if (data.x.size() != size_t(data.n) * size_t(data.p) || data.y.size() != size_t(data.n))
        return Error("the feature matrix does not match its patient and feature counts");
    if (options.lambdaRatios.empty() || options.folds < 2)
        return Error("cross-validation needs at least 2 folds and one penalty");
    const int allClasses = int(data.classNames.size());
    std::vector<int> counts(size_t(allClasses), 0);
    for (int c : data.y) {
        if (c < 0 || c >= allClasses)
            return Error("a patient has a class index outside the class list");
        ++counts[size_t(c)];
    }
    CvResult result;
    // Classes with fewer than 2 patients cannot be both trained and tested.
    std::vector<int> remap(size_t(allClasses), -1);
    for (int c = 0; c < allClasses; ++c) {
        if (counts[size_t(c)] >= 2) {
            remap[size_t(c)] = int(result.classNames.size());
            result.classNames.push_back(data.classNames[size_t(c)]);
        } else if (counts[size_t(c)] == 1) {
            result.notes.push_back("class '" + data.classNames[size_t(c)] +
                                   "' has only 1 patient: left out of the classification");
        }
    }
    const int k = int(result.classNames.size());
    if (k < 2)
        return Error("classification needs at least 2 classes with 2 or more patients each");
    Dataset d;
    d.p = data.p;
    d.classNames = result.classNames;
    for (int r = 0; r < data.n; ++r) {
        if (remap[size_t(data.y[size_t(r)])] < 0)
            continue;
        result.rows.push_back(r);
        d.y.push_back(remap[size_t(data.y[size_t(r)])]);
        d.x.insert(d.x.end(), data.x.begin() + long(size_t(r) * size_t(data.p)),
                   data.x.begin() + long(size_t(r + 1) * size_t(data.p)));
    }
    d.n = int(d.y.size());
    int smallest = d.n;
    std::string smallestName;
    for (int c = 0; c < k; ++c) {
        const int cnt = int(std::count(d.y.begin(), d.y.end(), c));
        if (cnt < smallest) {
            smallest = cnt;
            smallestName = d.classNames[size_t(c)];
        }
    }
    result.folds = std::min(options.folds, smallest);
    if (result.folds < options.folds)
        result.notes.push_back("class '" + smallestName + "' has only " + std::to_string(smallest) + " patients: " +
                               std::to_string(result.folds) + " folds instead of " + std::to_string(options.folds));

    Work w{d, options, k};
    const std::vector<int> fold = stratifiedFolds(d.y, result.folds, options.seed);
    result.truth = d.y;
    result.predicted.assign(size_t(d.n), 0);
    result.foldMacroF1.assign(size_t(result.folds), 0.0);
    result.foldLambdaRatio.assign(size_t(result.folds), 0.0);
    std::vector<std::vector<std::string>> foldNotes(size_t(result.folds));

    // Outer folds and the final refit are independent jobs; threads take them in turn.
    const int jobs = result.folds + 1;
    std::atomic<int> nextJob{0};
    Model finalModel;
    Transform finalTransform;
    auto worker = [&] {
        for (int job = nextJob++; job < jobs; job = nextJob++) {
            if (job == result.folds) {
                std::vector<int> all(size_t(d.n));
                std::iota(all.begin(), all.end(), 0);
                const size_t g = choosePenalty(w, all, options.seed + 1000, nullptr);
                finalTransform = learnTransform(d, all, k, options.maxFeatures);
                finalModel = fitAt(w, applyTransform(d, all, finalTransform, k, options.balanced), g);
                result.finalLambdaRatio = options.lambdaRatios[g];
                continue;
            }
            std::vector<int> tr, te;
            for (int i = 0; i < d.n; ++i)
                (fold[size_t(i)] == job ? te : tr).push_back(i);
            const size_t g = choosePenalty(w, tr, options.seed + 1 + uint64_t(job), &foldNotes[size_t(job)]);
            const Transform t = learnTransform(d, tr, k, options.maxFeatures);
            const Model model = fitAt(w, applyTransform(d, tr, t, k, options.balanced), g);
            const Design test = applyTransform(d, te, t, k, options.balanced);
            const std::vector<int> pred = predict(test, model);
            for (size_t i = 0; i < te.size(); ++i)
                result.predicted[size_t(te[i])] = pred[i];
            result.foldMacroF1[size_t(job)] = macroF1Of(test.y, pred, k, nullptr);
            result.foldLambdaRatio[size_t(job)] = options.lambdaRatios[g];
        }
    };
    int threads = options.threads > 0 ? options.threads : int(std::max(1u, std::thread::hardware_concurrency()));
    threads = std::min(threads, jobs);
    std::vector<std::thread> pool;
    for (int i = 1; i < threads; ++i)
        pool.emplace_back(worker);
    worker();
    for (auto &t : pool)
        t.join();
    for (const auto &notes : foldNotes)
        if (!notes.empty() &&
            std::find(result.notes.begin(), result.notes.end(), notes.front()) == result.notes.end())
            result.notes.push_back(notes.front());

    result.macroF1 = macroF1Of(result.truth, result.predicted, k, &result.classes);
    for (int c = 0; c < k; ++c)
        result.classes[size_t(c)].name = d.classNames[size_t(c)];
    result.confusion.assign(size_t(k), std::vector<int>(size_t(k), 0));
    int correct = 0;
    for (int i = 0; i < d.n; ++i) {
        ++result.confusion[size_t(result.truth[size_t(i)])][size_t(result.predicted[size_t(i)])];
        correct += result.truth[size_t(i)] == result.predicted[size_t(i)];
    }
    result.accuracy = double(correct) / d.n;
    result.topFeatures.resize(size_t(k));
    for (int c = 0; c < k; ++c) {
        std::vector<FeatureWeight> fw;
        for (int j = 0; j < finalModel.m; ++j) {
            const float v = finalModel.w[size_t(c) * size_t(finalModel.m) + size_t(j)];
            if (v > 0)
                fw.push_back({finalTransform.features[size_t(j)], double(v)});
        }
        std::sort(fw.begin(), fw.end(), [](const auto &a, const auto &b) {
            return a.weight != b.weight ? a.weight > b.weight : a.feature < b.feature;
        });
        if (int(fw.size()) > options.topFeatures)
            fw.resize(size_t(std::max(0, options.topFeatures)));
        result.topFeatures[size_t(c)] = std::move(fw);
    }
    result.iterations = w.iterations;
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    return result;
}

Result<double> fitOnce(const Dataset &data, const ClassifierOptions &options, double lambdaRatio,
                       long long *iterations)
{
    if (data.n <= 0 || data.p <= 0 || data.x.size() != size_t(data.n) * size_t(data.p) ||
        data.y.size() != size_t(data.n))
        return Error("the feature matrix does not match its patient and feature counts");
    const int k = int(data.classNames.size());
    std::vector<int> all(size_t(data.n));
    std::iota(all.begin(), all.end(), 0);
    const Transform t = learnTransform(data, all, k, options.maxFeatures);
    const Design train = applyTransform(data, all, t, k, options.balanced);
    Model model = initialModel(train, k);
    const long long it = fit(train, k, lambdaRatio * lambdaMax(train, k, options.l1Ratio), options,
                             spectralBound(train), model);
    if (iterations)
        *iterations = it;
    const std::vector<int> pred = predict(train, model);
    int correct = 0;
    for (int i = 0; i < train.n; ++i)
        correct += pred[size_t(i)] == train.y[size_t(i)];
    return double(correct) / train.n;
}

} // namespace cytosae::analysis
