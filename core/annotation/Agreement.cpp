#include "annotation/Agreement.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

namespace cytosae::annotation {

Result<Kappa> cohenKappa(const std::vector<std::string> &a, const std::vector<std::string> &b)
{
    if (a.size() != b.size())
        return Error("the two raters answered different numbers of items");
    if (a.empty())
        return Error("no items were answered by both raters");
    std::map<std::string, double> pa, pb;
    double agree = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        pa[a[i]] += 1;
        pb[b[i]] += 1;
        agree += a[i] == b[i];
    }
    const double n = double(a.size());
    double expected = 0;
    for (const auto &[category, count] : pa)
        if (auto it = pb.find(category); it != pb.end())
            expected += (count / n) * (it->second / n);
    Kappa k;
    k.observed = agree / n;
    k.expected = expected;
    k.items = int(a.size());
    k.raters = 2;
    k.method = "Cohen";
    if (expected >= 1.0 - 1e-12)
        return Error("kappa is undefined: both raters gave the same answer to every item");
    k.kappa = (k.observed - expected) / (1.0 - expected);
    return k;
}

Result<Kappa> fleissKappa(const std::vector<std::vector<int>> &counts)
{
    if (counts.empty())
        return Error("no items were answered by every rater");
    const size_t categories = counts[0].size();
    int raters = 0;
    for (int c : counts[0])
        raters += c;
    if (raters < 2)
        return Error("Fleiss' kappa needs at least two ratings per item");
    std::vector<double> total(categories, 0.0);
    double meanAgreement = 0;
    for (const auto &row : counts) {
        if (row.size() != categories)
            return Error("every item needs a count for every category");
        int sum = 0;
        double pairs = 0;
        for (size_t j = 0; j < categories; ++j) {
            sum += row[j];
            total[j] += row[j];
            pairs += double(row[j]) * double(row[j] - 1);
        }
        if (sum != raters)
            return Error("every item needs the same number of ratings");
        meanAgreement += pairs / (double(raters) * double(raters - 1));
    }
    const double n = double(counts.size());
    meanAgreement /= n;
    double expected = 0;
    for (double t : total) {
        const double p = t / (n * raters);
        expected += p * p;
    }
    Kappa k;
    k.observed = meanAgreement;
    k.expected = expected;
    k.items = int(counts.size());
    k.raters = raters;
    k.method = "Fleiss";
    if (expected >= 1.0 - 1e-12)
        return Error("kappa is undefined: every rating is in the same category");
    k.kappa = (meanAgreement - expected) / (1.0 - expected);
    return k;
}

std::vector<std::pair<int, std::string>> decidedAnswers(const std::vector<store::AnnotationAnswer> &answers)
{
    std::map<int, std::string> adjudicated;
    std::map<int, std::map<std::string, int>> votes;
    for (const auto &a : answers) {
        if (a.role == "adjudicator")
            adjudicated[a.position] = a.answer;
        else
            votes[a.position][a.answer] += 1;
    }
    std::vector<std::pair<int, std::string>> out;
    std::set<int> positions;
    for (const auto &[p, v] : votes)
        positions.insert(p);
    for (const auto &[p, v] : adjudicated)
        positions.insert(p);
    for (int p : positions) {
        if (auto it = adjudicated.find(p); it != adjudicated.end()) {
            out.emplace_back(p, it->second);
            continue;
        }
        const auto &v = votes[p];
        int best = -1;
        std::string bestAnswer;
        bool tie = false;
        for (const auto &[answer, n] : v) {
            if (n > best) {
                best = n;
                bestAnswer = answer;
                tie = false;
            } else if (n == best) {
                tie = true;
            }
        }
        if (!tie)
            out.emplace_back(p, bestAnswer);
    }
    return out;
}

PrecisionReport precisionReport(const store::AnnotationTask &task, const std::vector<store::AnnotationAnswer> &answers,
                                double targetPrecision)
{
    PrecisionReport r;
    std::map<int, std::string> decided;
    for (auto &[p, a] : decidedAnswers(answers))
        decided[p] = a;
    std::map<int, BinPrecision> bins;
    r.negatives.bin = -1;
    for (const auto &item : task.items) {
        BinPrecision &b = item.bin < 0 ? r.negatives : bins[item.bin];
        const bool first = b.hits + b.misses + b.unanswered == 0;
        b.bin = item.bin;
        b.lo = first ? item.value : std::min(b.lo, item.value);
        b.hi = first ? item.value : std::max(b.hi, item.value);
        ++r.total;
        auto it = decided.find(item.position);
        if (it == decided.end()) {
            ++b.unanswered;
            continue;
        }
        ++r.answered;
        (it->second == "hit" ? b.hits : b.misses)++;
    }
    auto finish = [](BinPrecision &b) {
        if (b.hits + b.misses > 0)
            b.precision = double(b.hits) / double(b.hits + b.misses);
    };
    for (auto &[index, b] : bins) {
        finish(b);
        r.bins.push_back(b);
    }
    finish(r.negatives);

    // From the strongest bin down, while each bin reaches the target.
    int passing = -1;
    for (size_t i = 0; i < r.bins.size(); ++i) {
        if (!r.bins[i].precision || *r.bins[i].precision < targetPrecision)
            break;
        passing = int(i);
    }
    char target[32];
    std::snprintf(target, sizeof target, "%.0f%%", targetPrecision * 100);
    if (r.bins.empty()) {
        r.recommendation = "no cells above the threshold were sampled";
    } else if (passing < 0) {
        r.recommendation = std::string("no activation level reaches ") + target +
                           " precision (the strongest bin is unanswered or below it)";
    } else if (passing == int(r.bins.size()) - 1) {
        r.recommendedThreshold = task.threshold;
        r.recommendation = std::string("every bin reaches ") + target + "; the task's threshold stands";
    } else {
        r.recommendedThreshold = 0.5 * (r.bins[size_t(passing)].lo + r.bins[size_t(passing) + 1].hi);
        r.recommendation = std::string("bins 1 to ") + std::to_string(passing + 1) + " reach " + target +
                           "; the threshold lies between them and the next bin";
    }
    return r;
}

AgreementReport agreementReport(const store::AnnotationTask &task, const std::vector<store::AnnotationAnswer> &answers)
{
    AgreementReport r;
    std::map<int, std::map<std::string, std::string>> byItem; // position -> rater -> answer
    std::map<int, std::string> adjudicated;
    std::set<std::string> raters;
    for (const auto &a : answers) {
        if (a.role == "adjudicator") {
            adjudicated[a.position] = a.answer;
            continue;
        }
        byItem[a.position][a.annotator] = a.answer;
        raters.insert(a.annotator);
    }
    r.raters.assign(raters.begin(), raters.end());
    std::map<int, int64_t> imageOf;
    for (const auto &item : task.items)
        imageOf[item.position] = item.imageId;

    std::vector<std::vector<std::string>> complete; // per item, answers in rater order
    for (const auto &[position, perRater] : byItem) {
        if (perRater.size() != raters.size())
            continue;
        std::vector<std::string> row;
        for (const auto &rater : r.raters)
            row.push_back(perRater.at(rater));
        if (std::any_of(row.begin(), row.end(), [&](const std::string &x) { return x != row[0]; })) {
            Disagreement d;
            d.position = position;
            d.imageId = imageOf.count(position) ? imageOf[position] : 0;
            for (const auto &rater : r.raters)
                d.answers.emplace_back(rater, perRater.at(rater));
            if (auto it = adjudicated.find(position); it != adjudicated.end())
                d.adjudicated = it->second;
            r.disagreements.push_back(std::move(d));
        }
        complete.push_back(std::move(row));
    }
    r.itemsRatedByAll = int(complete.size());
    if (r.raters.size() < 2) {
        r.kappaProblem = "agreement needs answers from at least two annotators";
        return r;
    }
    Result<Kappa> k = Error("");
    if (r.raters.size() == 2) {
        std::vector<std::string> a, b;
        for (const auto &row : complete) {
            a.push_back(row[0]);
            b.push_back(row[1]);
        }
        k = cohenKappa(a, b);
    } else {
        std::vector<std::vector<int>> counts;
        for (const auto &row : complete) {
            const int hits = int(std::count(row.begin(), row.end(), "hit"));
            counts.push_back({hits, int(row.size()) - hits});
        }
        k = fleissKappa(counts);
    }
    if (k)
        r.kappa = *k;
    else
        r.kappaProblem = k.message();
    return r;
}

} // namespace cytosae::annotation
