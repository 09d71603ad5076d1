#pragma once

// Small, exact statistics for the cohort analyses: Wilson score interval, Mann-Whitney U with
// the normal approximation (tie and continuity corrected), Benjamini-Hochberg adjustment,
// median and MAD. Pure functions; any thread.

#include <cstddef>
#include <cstdint>
#include <vector>

namespace cytosae::analysis {

struct Interval {
    double lo = 0, hi = 0;
};

// Wilson score interval for k successes out of n (z = 1.96: 95%). n = 0 gives [0, 1].
Interval wilsonInterval(int64_t k, int64_t n, double z = 1.959963984540054);

struct MannWhitney {
    double u = 0;            // U of sample a: pairs (a_i, b_j) with a_i > b_j, ties counting 1/2
    double z = 0;            // standardised, continuity corrected; > 0 when a tends to be larger
    double p = 1;            // two-sided, normal approximation with the tie correction
    double rankBiserial = 0; // 2U/(na nb) - 1 = Cliff's delta, in [-1, 1]
};
// Either sample empty, or every value tied: p = 1, z = 0.
MannWhitney mannWhitney(const std::vector<double> &a, const std::vector<double> &b);

// Benjamini-Hochberg adjusted p-values (q-values), same order as p.
std::vector<double> benjaminiHochberg(const std::vector<double> &p);

// Upper tail of the standard normal, accurate in the far tail (erfc).
double normalSf(double z);

double median(std::vector<double> values);        // 0 for an empty set
double medianAbsDeviation(const std::vector<double> &values, double center); // unscaled

} // namespace cytosae::analysis
