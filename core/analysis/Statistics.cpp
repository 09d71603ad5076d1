#include "analysis/Statistics.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace cytosae::analysis {

Interval wilsonInterval(int64_t k, int64_t n, double z)
{
    if (n <= 0)
        return {0.0, 1.0};
    const double nn = double(n), p = double(std::clamp<int64_t>(k, 0, n)) / nn, z2 = z * z;
    const double denom = 1.0 + z2 / nn;
    const double center = (p + z2 / (2 * nn)) / denom;
    const double half = z * std::sqrt(p * (1 - p) / nn + z2 / (4 * nn * nn)) / denom;
    return {std::max(0.0, center - half), std::min(1.0, center + half)};
}

double normalSf(double z)
{
    return 0.5 * std::erfc(z / std::sqrt(2.0));
}

MannWhitney mannWhitney(const std::vector<double> &a, const std::vector<double> &b)
{
    MannWhitney r;
    const size_t na = a.size(), nb = b.size(), n = na + nb;
    if (!na || !nb)
        return r;
    std::vector<std::pair<double, bool>> all; // value, from a
    all.reserve(n);
    for (double v : a)
        all.push_back({v, true});
    for (double v : b)
        all.push_back({v, false});
    std::sort(all.begin(), all.end(), [](const auto &x, const auto &y) { return x.first < y.first; });
    double rankSumA = 0, tieTerm = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && all[j].first == all[i].first)
            ++j;
        const double t = double(j - i), midRank = (double(i + 1) + double(j)) / 2.0;
        for (size_t m = i; m < j; ++m)
            if (all[m].second)
                rankSumA += midRank;
        tieTerm += t * t * t - t;
        i = j;
    }
    const double dna = double(na), dnb = double(nb), dn = double(n);
    r.u = rankSumA - dna * (dna + 1) / 2.0;
    r.rankBiserial = 2.0 * r.u / (dna * dnb) - 1.0;
    const double mean = dna * dnb / 2.0;
    const double var = dna * dnb / 12.0 * ((dn + 1) - tieTerm / (dn * (dn - 1)));
    if (var <= 0)
        return r; // every value tied
    const double diff = r.u - mean;
    const double corrected = std::max(0.0, std::abs(diff) - 0.5);
    r.z = (diff < 0 ? -corrected : corrected) / std::sqrt(var);
    r.p = std::min(1.0, 2.0 * normalSf(std::abs(r.z)));
    return r;
}

std::vector<double> benjaminiHochberg(const std::vector<double> &p)
{
    const size_t m = p.size();
    std::vector<size_t> order(m);
    std::iota(order.begin(), order.end(), size_t(0));
    std::sort(order.begin(), order.end(), [&](size_t x, size_t y) { return p[x] < p[y]; });
    std::vector<double> q(m);
    double running = 1.0;
    for (size_t r = m; r-- > 0;) {
        const size_t i = order[r];
        running = std::min(running, p[i] * double(m) / double(r + 1));
        q[i] = std::min(1.0, running);
    }
    return q;
}

double median(std::vector<double> values)
{
    if (values.empty())
        return 0;
    const size_t mid = values.size() / 2;
    std::nth_element(values.begin(), values.begin() + long(mid), values.end());
    double m = values[mid];
    if (values.size() % 2 == 0)
        m = (m + *std::max_element(values.begin(), values.begin() + long(mid))) / 2.0;
    return m;
}

double medianAbsDeviation(const std::vector<double> &values, double center)
{
    std::vector<double> dev(values.size());
    for (size_t i = 0; i < values.size(); ++i)
        dev[i] = std::abs(values[i] - center);
    return median(std::move(dev));
}

} // namespace cytosae::analysis
