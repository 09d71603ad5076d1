#include "demo/SyntheticCells.h"

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <array>
#include <cmath>

namespace cytosae::demo {

namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr double kTwoPi = 2.0 * kPi;

// xoshiro256** (Blackman & Vigna), seeded through SplitMix64: a fixed, portable sequence that
// is several times faster than std::mt19937_64 to seed and to draw from (noise images need
// ~100k draws per cell). The <random> distributions are implementation-defined, so all
// floats are made here from the raw 64-bit output.
class Rng {
public:
    explicit Rng(uint64_t seed)
    {
        for (uint64_t &word : m_state) {
            seed += 0x9E3779B97F4A7C15ull;
            word = splitMix64(seed);
        }
    }

    uint64_t next()
    {
        const uint64_t result = rotl(m_state[1] * 5, 7) * 9;
        const uint64_t t = m_state[1] << 17;
        m_state[2] ^= m_state[0];
        m_state[3] ^= m_state[1];
        m_state[1] ^= m_state[2];
        m_state[0] ^= m_state[3];
        m_state[2] ^= t;
        m_state[3] = rotl(m_state[3], 45);
        return result;
    }

    double uniform() { return double(next() >> 11) * 0x1.0p-53; }
    double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
    // Modulo bias is below 1e-17 for the small ranges used here.
    int uniformInt(int lo, int hi) { return lo + int(next() % uint64_t(int64_t(hi) - lo + 1)); }
    bool chance(double p) { return uniform() < p; }
    double angle() { return uniform(0.0, kTwoPi); }

    // Roughly normal (Irwin-Hall of four 16-bit uniforms, unit variance) from a single draw:
    // noise images need tens of thousands of samples and no tails.
    float noiseSample()
    {
        const uint64_t v = next();
        const float sum = float(v & 0xFFFF) + float((v >> 16) & 0xFFFF) + float((v >> 32) & 0xFFFF) + float(v >> 48);
        return (sum - 131070.0f) * (1.0f / 37837.23f);
    }

private:
    static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

    std::array<uint64_t, 4> m_state{};
};

// Independent streams per aspect, so that e.g. a different granule count in one type does not
// shift the background of every image drawn after it.
enum Stream : uint64_t { StreamStain = 1, StreamBackground, StreamShape, StreamTexture, StreamInclusions, StreamNoise };

struct Point {
    double x = 0, y = 0;
};

Point operator+(Point a, Point b)
{
    return {a.x + b.x, a.y + b.y};
}
Point operator-(Point a, Point b)
{
    return {a.x - b.x, a.y - b.y};
}
Point operator*(Point a, double k)
{
    return {a.x * k, a.y * k};
}
Point direction(double angle)
{
    return {std::cos(angle), std::sin(angle)};
}

struct Rgb {
    double r, g, b;
};

// Stains absorb; overlapping material darkens multiplicatively. Working in optical density
// (OD = -ln(I/I0)) makes overlapping red cells, granules on a nucleus and stain jitter behave
// like a real smear instead of like layered paint.
cv::Vec3f odOf(Rgb c)
{
    auto one = [](double v) { return float(-std::log(std::clamp(v, 1.0, 255.0) / 255.0)); };
    return {one(c.r), one(c.g), one(c.b)};
}

cv::Vec3f mulEach(cv::Vec3f a, cv::Vec3f b)
{
    return {a[0] * b[0], a[1] * b[1], a[2] * b[2]};
}

cv::Vec3f lerp(cv::Vec3f a, cv::Vec3f b, float t)
{
    return a + (b - a) * t;
}

// Smooth random field with zero mean and unit standard deviation.
cv::Mat1f smoothNoise(int size, double sigma, Rng &rng)
{
    cv::Mat1f n(size, size);
    for (int y = 0; y < size; ++y) {
        float *row = n[y];
        for (int x = 0; x < size; ++x)
            row[x] = rng.noiseSample();
    }
    if (sigma > 0.3)
        cv::GaussianBlur(n, n, cv::Size(), sigma, sigma, cv::BORDER_REFLECT);
    cv::Scalar mean, sd;
    cv::meanStdDev(n, mean, sd);
    n = (n - mean[0]) * (1.0 / std::max(sd[0], 1e-6));
    return n;
}

// cv::min on two Mat_ would resolve to std::min (cv imports it), hence the plain Mat views.
void clipTo(cv::Mat1f &layer, const cv::Mat1f &limit)
{
    cv::Mat dst = layer;
    cv::min(static_cast<const cv::Mat &>(layer), static_cast<const cv::Mat &>(limit), dst);
}

struct Box {
    int x0, y0, x1, y1; // inclusive
};

Box boxAround(const cv::Mat1f &a, double x0, double y0, double x1, double y1)
{
    return {std::max(0, int(std::floor(x0))), std::max(0, int(std::floor(y0))),
            std::min(a.cols - 1, int(std::ceil(x1))), std::min(a.rows - 1, int(std::ceil(y1)))};
}

// Anti-aliased coverage by distance, pixel centres at integer coordinates (as in OpenCV).
inline float coverage(double signedInside)
{
    return float(std::clamp(signedInside + 0.5, 0.0, 1.0));
}

void stampDisc(cv::Mat1f &a, Point c, double r, float value = 1.f)
{
    const Box b = boxAround(a, c.x - r - 1, c.y - r - 1, c.x + r + 1, c.y + r + 1);
    for (int y = b.y0; y <= b.y1; ++y) {
        float *row = a[y];
        for (int x = b.x0; x <= b.x1; ++x) {
            const float cov = coverage(r - std::hypot(x - c.x, y - c.y)) * value;
            row[x] = std::max(row[x], cov);
        }
    }
}

void stampCapsule(cv::Mat1f &a, Point p, Point q, double r, float value = 1.f)
{
    const Box b = boxAround(a, std::min(p.x, q.x) - r - 1, std::min(p.y, q.y) - r - 1, std::max(p.x, q.x) + r + 1,
                            std::max(p.y, q.y) + r + 1);
    const double dx = q.x - p.x, dy = q.y - p.y;
    const double len2 = std::max(dx * dx + dy * dy, 1e-12);
    for (int y = b.y0; y <= b.y1; ++y) {
        float *row = a[y];
        for (int x = b.x0; x <= b.x1; ++x) {
            const double t = std::clamp(((x - p.x) * dx + (y - p.y) * dy) / len2, 0.0, 1.0);
            const double d = std::hypot(x - (p.x + t * dx), y - (p.y + t * dy));
            row[x] = std::max(row[x], coverage(r - d) * value);
        }
    }
}

// A star-shaped outline r(theta) around a centre: cells, nuclei, nucleoli.
class RadialShape {
public:
    RadialShape(Point centre, double radius, int samples = 96) : m_centre(centre), m_radius(size_t(samples), radius) {}

    Point centre() const { return m_centre; }

    double radiusAt(double angle) const
    {
        const double n = double(m_radius.size());
        double t = angle / kTwoPi * n;
        t -= std::floor(t / n) * n;
        const size_t i = size_t(t) % m_radius.size();
        const double f = t - std::floor(t);
        return m_radius[i] * (1 - f) + m_radius[(i + 1) % m_radius.size()] * f;
    }

    double maxRadius() const { return *std::max_element(m_radius.begin(), m_radius.end()); }

    // Ellipse with semi-axes radius*(1+aspect) along `orientation` and radius*(1-aspect) across.
    void stretch(double aspect, double orientation)
    {
        forEach([&](double angle, double &r) {
            const double a = 1 + aspect, b = 1 - aspect;
            const double c = std::cos(angle - orientation), s = std::sin(angle - orientation);
            r *= a * b / std::sqrt(b * b * c * c + a * a * s * s);
        });
    }

    // Low-frequency wobble so that no two outlines are the same circle.
    void roughen(double amplitude, Rng &rng, int firstHarmonic = 2, int lastHarmonic = 6)
    {
        for (int k = firstHarmonic; k <= lastHarmonic; ++k) {
            const double amp = amplitude * rng.uniform(0.3, 1.0) / std::sqrt(double(k - firstHarmonic + 1));
            const double phase = rng.angle();
            forEach([&](double angle, double &r) { r *= 1 + amp * std::cos(k * angle + phase); });
        }
    }

    // Indentation (kidney hilum, lobe cleft) centred on `angle`.
    void dent(double angle, double depth, double width)
    {
        forEach([&](double a, double &r) {
            double d = std::remainder(a - angle, kTwoPi);
            r *= 1 - depth * std::exp(-(d / width) * (d / width));
        });
    }

    void rasterise(cv::Mat1f &a, float value = 1.f) const
    {
        const double m = maxRadius() + 1;
        const Box b = boxAround(a, m_centre.x - m, m_centre.y - m, m_centre.x + m, m_centre.y + m);
        for (int y = b.y0; y <= b.y1; ++y) {
            float *row = a[y];
            for (int x = b.x0; x <= b.x1; ++x) {
                const double dx = x - m_centre.x, dy = y - m_centre.y;
                const double d = std::hypot(dx, dy);
                const double r = radiusAt(std::atan2(dy, dx));
                row[x] = std::max(row[x], coverage(r - d) * value);
            }
        }
    }

private:
    template <typename F> void forEach(F f)
    {
        for (size_t i = 0; i < m_radius.size(); ++i)
            f(kTwoPi * double(i) / double(m_radius.size()), m_radius[i]);
    }

    Point m_centre;
    std::vector<double> m_radius;
};

enum class Chromatin { Clumped, Lacy, Fine };

// Everything that differs between types apart from the geometry of nucleus and inclusions.
struct Recipe {
    double diameterLo, diameterHi; // fraction of the crop side
    double outlineRoughness;
    Rgb cytoplasm;
    double cytoTextureSigma, cytoTextureAmp; // sigma in px at 144; relative OD modulation
    double periphery;                        // basophilic rim: deeper blue towards the membrane
    Rgb nucleus;
    Chromatin chromatin;
    double chromatinSigma, chromatinAmp;
};

Recipe recipeFor(CellType type)
{
    const Rgb neutroCyto{226, 200, 216};
    const Rgb monoCyto{184, 186, 212};
    const Rgb promyeloCyto{138, 162, 218};
    switch (type) {
    case CellType::SegmentedNeutrophil:
        return {0.55, 0.62, 0.02, neutroCyto, 0.6, 0.16, 0.0, {104, 52, 136}, Chromatin::Clumped, 1.3, 0.30};
    case CellType::BandNeutrophil:
        return {0.55, 0.62, 0.02, neutroCyto, 0.6, 0.16, 0.0, {110, 58, 142}, Chromatin::Clumped, 1.3, 0.28};
    case CellType::Lymphocyte:
        return {0.44, 0.50, 0.015, {148, 188, 234}, 1.2, 0.08, 0.35, {74, 38, 106}, Chromatin::Clumped, 1.8, 0.40};
    case CellType::Monocyte:
    case CellType::VacuolatedMonocyte:
        return {0.62, 0.70, 0.04, monoCyto, 0.5, 0.14, 0.08, {142, 102, 174}, Chromatin::Lacy, 1.0, 0.34};
    case CellType::Eosinophil:
        return {0.57, 0.64, 0.02, {220, 200, 208}, 0.8, 0.10, 0.0, {108, 58, 138}, Chromatin::Clumped, 1.3, 0.25};
    case CellType::Basophil:
        return {0.50, 0.57, 0.025, {214, 190, 216}, 0.8, 0.10, 0.0, {100, 56, 132}, Chromatin::Clumped, 1.3, 0.20};
    case CellType::Myeloblast:
        return {0.56, 0.65, 0.02, {102, 132, 206}, 1.0, 0.08, 0.25, {136, 92, 176}, Chromatin::Fine, 0.7, 0.14};
    case CellType::Promyelocyte:
    case CellType::AtypicalPromyelocyte:
        return {0.62, 0.70, 0.025, promyeloCyto, 1.0, 0.08, 0.12, {126, 82, 166}, Chromatin::Fine, 0.8, 0.16};
    }
    return recipeFor(CellType::SegmentedNeutrophil);
}

// Per-image stain: MGG batches, staining times and scanners differ, and a classifier must not
// learn one exact hue. Acidic (eosin) and basic (azure/methylene blue) stains vary separately.
struct Stain {
    cv::Vec3f acid{1, 1, 1}, basic{1, 1, 1};
    float density = 1;
    cv::Vec3f whiteBalance{1, 1, 1};
    float brightness = 1;

    cv::Vec3f acidic(Rgb c) const { return mulEach(odOf(c), acid); }
    cv::Vec3f basicOd(Rgb c) const { return mulEach(odOf(c), basic); }
};

Stain drawStain(Rng &rng)
{
    Stain s;
    for (int c = 0; c < 3; ++c) {
        s.acid[c] = float(rng.uniform(0.92, 1.08));
        s.basic[c] = float(rng.uniform(0.92, 1.08));
        s.whiteBalance[c] = float(rng.uniform(0.98, 1.02));
    }
    s.density = float(rng.uniform(0.88, 1.10));
    s.brightness = float(rng.uniform(0.97, 1.02));
    return s;
}

// All per-pixel layers of one image; alpha values in [0, 1].
struct Layers {
    explicit Layers(int n)
        : cell(n, n, 0.f), nucleus(n, n, 0.f), nucleoli(n, n, 0.f), vacuole(n, n, 0.f), vacuoleRim(n, n, 0.f),
          fineGranules(n, n, 0.f), coarseGranules(n, n, 0.f), eosGranules(n, n, 0.f), rods(n, n, 0.f), golgi(n, n, 0.f),
          rbcDensity(n, n, 0.f), rbcCover(n, n, 0.f)
    {
    }
    cv::Mat1f cell, nucleus, nucleoli, vacuole, vacuoleRim, fineGranules, coarseGranules, eosGranules, rods, golgi;
    cv::Mat1f rbcDensity, rbcCover;
};

// Geometry of one image in pixels; s scales lengths given at 144 px.
struct Frame {
    int n = 144;
    double s = 1;
    Point centre;
    double radius = 0; // white cell
};

void drawRedCells(Layers &layers, const Frame &f, Rng &rng)
{
    const int n = f.n;
    const int count = rng.uniformInt(7, 12);
    const double meanRadius = n * rng.uniform(0.15, 0.175);
    std::vector<std::pair<Point, double>> placed;
    for (int i = 0; i < count; ++i) {
        const double r = meanRadius * rng.uniform(0.92, 1.08);
        Point c;
        // Smears have red cells touching and overlapping but mostly side by side.
        for (int attempt = 0; attempt < 30; ++attempt) {
            c = {rng.uniform(-0.12, 1.12) * n, rng.uniform(-0.12, 1.12) * n};
            bool crowded = false;
            for (const auto &[pc, pr] : placed)
                crowded = crowded || std::hypot(c.x - pc.x, c.y - pc.y) < 1.45 * std::min(r, pr);
            if (!crowded || rng.chance(0.08))
                break;
        }
        placed.push_back({c, r});

        const double aspect = rng.uniform(1.0, 1.08);
        const double orient = rng.angle();
        const double pallor = rng.uniform(0.35, 0.6);
        const double pallorRadius = rng.uniform(0.42, 0.55);
        const double co = std::cos(orient), si = std::sin(orient);
        const double reach = r * aspect + 1;
        const Box b = boxAround(layers.rbcCover, c.x - reach, c.y - reach, c.x + reach, c.y + reach);
        for (int y = b.y0; y <= b.y1; ++y) {
            for (int x = b.x0; x <= b.x1; ++x) {
                const double u = ((x - c.x) * co + (y - c.y) * si) / (r * aspect);
                const double v = (-(x - c.x) * si + (y - c.y) * co) / (r / aspect);
                const double rho = std::sqrt(u * u + v * v);
                const float cov = coverage((1 - rho) * r);
                if (cov <= 0)
                    continue;
                // Biconcave disc: thin centre (central pallor), thickest just inside the rim.
                const double q = rho / pallorRadius;
                const double ridge = (rho - 0.8) / 0.12;
                const double density = 1 - pallor * std::exp(-q * q) + 0.08 * std::exp(-ridge * ridge);
                layers.rbcDensity(y, x) += float(cov * density);
                layers.rbcCover(y, x) = std::max(layers.rbcCover(y, x), cov);
            }
        }
    }
}

struct NucleusInfo {
    Point centre;
    double radius = 0; // typical radius, for nucleoli placement
    bool hasGolgi = false;
    Point golgi;
};

void drawLobes(cv::Mat1f &nucleus, const Frame &f, Rng &rng, int lobes, double arcRadius, double span,
               double lobeRadius, Point arcCentre)
{
    const double start = rng.angle();
    std::vector<Point> centres;
    for (int i = 0; i < lobes; ++i) {
        const double t = lobes == 1 ? 0.5 : double(i) / (lobes - 1);
        const double angle = start + span * t + rng.uniform(-0.08, 0.08);
        const double rho = arcRadius * rng.uniform(0.92, 1.08);
        const Point c = arcCentre + direction(angle) * rho;
        centres.push_back(c);
        // Lobes are ovals lying roughly along the curve of the nucleus.
        const double axis = angle + kPi / 2 + rng.uniform(-0.5, 0.5);
        const double half = lobeRadius * rng.uniform(0.25, 0.6);
        const double r = lobeRadius * rng.uniform(0.85, 1.1);
        stampCapsule(nucleus, c - direction(axis) * half, c + direction(axis) * half, r);
    }
    // Thin chromatin filaments join the lobes.
    for (size_t i = 1; i < centres.size(); ++i)
        stampCapsule(nucleus, centres[i - 1], centres[i], f.s * rng.uniform(0.55, 0.8));
}

NucleusInfo drawNucleus(CellType type, Layers &layers, const Frame &f, Rng &rng)
{
    const double R = f.radius;
    NucleusInfo info;
    info.centre = f.centre;
    switch (type) {
    case CellType::SegmentedNeutrophil: {
        const double pick = rng.uniform();
        const int lobes = pick < 0.35 ? 3 : pick < 0.8 ? 4 : 5;
        // Open curve: a closed ring of lobes would read as a doughnut, not a neutrophil.
        const double span = std::min(rng.uniform(3.2, 4.2) + 0.3 * (lobes - 3), 4.8);
        const double lobeRadius = R * rng.uniform(0.19, 0.23) * (lobes == 5 ? 0.9 : 1.0);
        const Point arcCentre = f.centre + direction(rng.angle()) * (R * rng.uniform(0.0, 0.06));
        drawLobes(layers.nucleus, f, rng, lobes, R * rng.uniform(0.40, 0.47), span, lobeRadius, arcCentre);
        info.radius = R * 0.45;
        break;
    }
    case CellType::BandNeutrophil: {
        // A curved sausage of nearly even width (C or U shape), no filaments.
        const double rho = R * rng.uniform(0.38, 0.46);
        const double ecc = rng.uniform(0.0, 0.2);
        const double orient = rng.angle();
        const double span = rng.uniform(3.0, 4.5);
        const double start = rng.angle();
        const double width = R * rng.uniform(0.15, 0.185);
        const double wobblePhase = rng.angle();
        const Point arcCentre = f.centre + direction(rng.angle()) * (R * rng.uniform(0.0, 0.06));
        const int steps = std::max(8, int(rho * span / 0.7));
        Point prev;
        for (int i = 0; i <= steps; ++i) {
            const double t = double(i) / steps;
            const double a = start + span * t;
            const double lx = rho * (1 + ecc) * std::cos(a), ly = rho * (1 - ecc) * std::sin(a);
            const Point p = arcCentre + Point{lx * std::cos(orient) - ly * std::sin(orient),
                                              lx * std::sin(orient) + ly * std::cos(orient)};
            const double taper = 1 - 0.12 * std::pow(std::abs(2 * t - 1), 4);
            const double w = width * taper * (1 + 0.1 * std::sin(kTwoPi * 1.3 * t + wobblePhase));
            if (i > 0)
                stampCapsule(layers.nucleus, prev, p, w);
            prev = p;
        }
        info.radius = rho;
        break;
    }
    case CellType::Eosinophil: {
        // Two lobes like spectacles.
        const double axis = rng.angle();
        const Point shift = direction(axis + kPi / 2) * (R * rng.uniform(-0.12, 0.12));
        const double sep = R * rng.uniform(0.31, 0.37);
        const double lobeRadius = R * rng.uniform(0.23, 0.27);
        std::array<Point, 2> centres{f.centre + shift + direction(axis) * sep,
                                     f.centre + shift - direction(axis) * sep};
        for (const Point &c : centres) {
            const double along = axis + kPi / 2 + rng.uniform(-0.4, 0.4);
            const double half = lobeRadius * rng.uniform(0.25, 0.45);
            stampCapsule(layers.nucleus, c - direction(along) * half, c + direction(along) * half,
                         lobeRadius * rng.uniform(0.9, 1.05));
        }
        stampCapsule(layers.nucleus, centres[0], centres[1], f.s * rng.uniform(0.6, 0.9));
        info.radius = R * 0.5;
        break;
    }
    case CellType::Basophil: {
        // Compact, crowded lobes; the granules drawn on top hide most of their outline.
        const int lobes = rng.uniformInt(2, 3);
        drawLobes(layers.nucleus, f, rng, lobes, R * rng.uniform(0.26, 0.32), rng.uniform(2.0, 3.0),
                  R * rng.uniform(0.24, 0.28), f.centre);
        info.radius = R * 0.45;
        break;
    }
    case CellType::Lymphocyte: {
        const double offset = R * rng.uniform(0.04, 0.12);
        RadialShape shape(f.centre + direction(rng.angle()) * offset, R * rng.uniform(0.78, 0.86));
        shape.stretch(rng.uniform(0.0, 0.08), rng.angle());
        shape.roughen(0.025, rng);
        if (rng.chance(0.3))
            shape.dent(rng.angle(), rng.uniform(0.06, 0.12), 0.4);
        shape.rasterise(layers.nucleus);
        info.centre = shape.centre();
        info.radius = R * 0.8;
        break;
    }
    case CellType::Monocyte:
    case CellType::VacuolatedMonocyte: {
        // Kidney or folded nucleus: an oval with a deep hilum on its long side, bulging towards
        // the membrane so that the cytoplasm gathers in the hilum.
        const double orient = rng.angle();
        const double hilum = orient + kPi / 2 + rng.uniform(-0.3, 0.3);
        const Point centre = f.centre - direction(hilum) * (R * rng.uniform(0.06, 0.14));
        RadialShape shape(centre, R * rng.uniform(0.56, 0.63));
        shape.stretch(rng.uniform(0.12, 0.2), orient);
        shape.roughen(0.04, rng);
        shape.dent(hilum, rng.uniform(0.35, 0.55), rng.uniform(0.45, 0.65));
        if (rng.chance(0.5))
            shape.dent(rng.angle(), rng.uniform(0.12, 0.22), 0.3);
        shape.rasterise(layers.nucleus);
        info.centre = centre;
        info.radius = R * 0.5;
        break;
    }
    case CellType::Myeloblast: {
        RadialShape shape(f.centre + direction(rng.angle()) * (R * rng.uniform(0.03, 0.1)),
                          R * rng.uniform(0.72, 0.79));
        shape.stretch(rng.uniform(0.0, 0.1), rng.angle());
        shape.roughen(0.02, rng);
        shape.rasterise(layers.nucleus);
        info.centre = shape.centre();
        info.radius = R * 0.72;
        break;
    }
    case CellType::Promyelocyte:
    case CellType::AtypicalPromyelocyte: {
        const double away = rng.angle();
        const bool bilobed = type == CellType::AtypicalPromyelocyte && rng.chance(0.5);
        // APL cells often have a bilobed ("butterfly") nucleus, less eccentric.
        const double offset = R * (bilobed ? rng.uniform(0.1, 0.18) : rng.uniform(0.2, 0.28));
        const double base = R * (bilobed ? rng.uniform(0.5, 0.56) : rng.uniform(0.48, 0.55));
        RadialShape shape(f.centre + direction(away) * offset, base);
        const double orient = rng.angle();
        shape.stretch(bilobed ? rng.uniform(0.15, 0.22) : rng.uniform(0.05, 0.18), orient);
        shape.roughen(0.03, rng);
        if (bilobed) {
            const double depth = rng.uniform(0.25, 0.38);
            shape.dent(orient + kPi / 2, depth, 0.45);
            shape.dent(orient - kPi / 2, depth, 0.45);
        }
        shape.rasterise(layers.nucleus);
        info.centre = shape.centre();
        info.radius = base;
        // Paler Golgi zone beside the nucleus, on the side facing the cell centre.
        info.hasGolgi = true;
        info.golgi = info.centre - direction(away) * (base * 0.95 + R * 0.1);
        break;
    }
    }
    return info;
}

void drawNucleoli(Layers &layers, const NucleusInfo &nuc, const Frame &f, Rng &rng, int count, double radiusLo,
                  double radiusHi)
{
    std::vector<std::pair<Point, double>> placed;
    for (int i = 0; i < count; ++i) {
        const double r = f.radius * rng.uniform(radiusLo, radiusHi);
        for (int attempt = 0; attempt < 50; ++attempt) {
            const double rho = nuc.radius * 0.55 * std::sqrt(rng.uniform());
            const Point c = nuc.centre + direction(rng.angle()) * rho;
            const int ix = int(std::lround(c.x)), iy = int(std::lround(c.y));
            if (ix < 0 || iy < 0 || ix >= f.n || iy >= f.n || layers.nucleus(iy, ix) < 0.99f)
                continue;
            bool clash = false;
            for (const auto &[pc, pr] : placed)
                clash = clash || std::hypot(c.x - pc.x, c.y - pc.y) < 1.3 * (r + pr);
            if (clash)
                continue;
            RadialShape shape(c, r, 32);
            shape.stretch(rng.uniform(0.0, 0.25), rng.angle());
            shape.roughen(0.08, rng);
            shape.rasterise(layers.nucleoli);
            placed.push_back({c, r});
            break;
        }
    }
    // Nucleoli lie within the nucleus by definition.
    clipTo(layers.nucleoli, layers.nucleus);
}

// Distances (px) used to keep inclusions inside the cell and outside the nucleus.
struct Distances {
    cv::Mat1f toCellEdge; // inside the cell: distance to the outside; 0 outside
    cv::Mat1f toNucleus;  // outside the nucleus: distance to it; 0 inside
};

Distances computeDistances(const Layers &layers)
{
    Distances d;
    cv::Mat1b cellMask = layers.cell >= 0.5f;
    cv::Mat1b notNucleus = layers.nucleus < 0.5f;
    cv::distanceTransform(cellMask, d.toCellEdge, cv::DIST_L2, cv::DIST_MASK_5);
    if (size_t(cv::countNonZero(notNucleus)) == notNucleus.total())
        d.toNucleus = cv::Mat1f(notNucleus.size(), 1e6f);
    else
        cv::distanceTransform(notNucleus, d.toNucleus, cv::DIST_L2, cv::DIST_MASK_5);
    return d;
}

float at(const cv::Mat1f &m, Point p)
{
    const int x = int(std::lround(p.x)), y = int(std::lround(p.y));
    if (x < 0 || y < 0 || x >= m.cols || y >= m.rows)
        return 0.f;
    return m(y, x);
}

// Random point inside the white cell's bounding square; callers test it against Distances.
Point randomPointInCell(const Frame &f, Rng &rng)
{
    return {f.centre.x + f.radius * rng.uniform(-1.05, 1.05), f.centre.y + f.radius * rng.uniform(-1.05, 1.05)};
}

// Granules: `count` discs with radius in [rLo, rHi] (px at 144, skewed towards rLo), placed
// in the cytoplasm, and over the nucleus with probability `overNucleus` relative to it.
void scatterGranules(cv::Mat1f &layer, const Frame &f, const Distances &dist, const NucleusInfo &nuc,
                     const Layers &layers, Rng &rng, int count, double rLo, double rHi, double overNucleus,
                     double golgiKeep, double skew)
{
    for (int i = 0; i < count; ++i) {
        const double r = f.s * (rLo + (rHi - rLo) * std::pow(rng.uniform(), skew));
        const float value = float(rng.uniform(0.7, 1.0));
        for (int attempt = 0; attempt < 40; ++attempt) {
            const Point c = randomPointInCell(f, rng);
            if (at(dist.toCellEdge, c) < r + 0.5)
                continue;
            if (at(dist.toNucleus, c) <= 0.f && !rng.chance(overNucleus))
                continue;
            if (nuc.hasGolgi && at(layers.golgi, c) > 0.5f && !rng.chance(golgiKeep))
                continue;
            stampDisc(layer, c, r, value);
            break;
        }
    }
}

void drawVacuoles(Layers &layers, const Frame &f, const Distances &dist, Rng &rng)
{
    const int count = rng.uniformInt(5, 13);
    std::vector<std::pair<Point, double>> placed;
    auto fits = [&](Point c, double r) {
        if (at(dist.toCellEdge, c) < r + 1.5 || at(dist.toNucleus, c) < r + 0.5)
            return false;
        for (const auto &[pc, pr] : placed) {
            if (std::hypot(c.x - pc.x, c.y - pc.y) < 0.85 * (r + pr))
                return false;
        }
        return true;
    };
    auto place = [&](Point c, double r) {
        stampDisc(layers.vacuole, c, r);
        stampDisc(layers.vacuoleRim, c, r + 1.0 * f.s);
        placed.push_back({c, r});
    };
    for (int i = 0; i < count; ++i) {
        const double r = f.s * (2.0 + 3.5 * std::pow(rng.uniform(), 1.3));
        for (int attempt = 0; attempt < 80; ++attempt) {
            const Point c = randomPointInCell(f, rng);
            if (fits(c, r)) {
                place(c, r);
                break;
            }
        }
    }
    // The type is defined by its vacuoles: always leave at least one, as small as needed.
    for (int attempt = 0; placed.empty() && attempt < 4000; ++attempt) {
        const Point c = randomPointInCell(f, rng);
        const double r = f.s * 1.2;
        if (at(dist.toCellEdge, c) >= r + 1 && at(dist.toNucleus, c) >= r + 0.5)
            place(c, r);
    }
    cv::subtract(layers.vacuoleRim, layers.vacuole, layers.vacuoleRim);
}

// One rod or a bundle of parallel rods ("faggot"), as segments. Faggots are an APL sign: with
// allowFaggot false (a myeloblast) the cell gets one to three single rods. The faggot draw is
// made either way, so the cells that allow faggots stay exactly as they were.
using Rod = std::pair<Point, Point>;

void drawAuerRods(Layers &layers, const Frame &f, const Distances &dist, Rng &rng, bool allowFaggot)
{
    const double D = 2 * f.radius;
    cv::Mat1f halo(layers.rods.size(), 0.f);
    const bool faggot = rng.chance(0.4) && allowFaggot;
    const double pick = rng.uniform();
    const int groups = faggot ? 1 : (pick < 0.5 ? 1 : pick < 0.8 ? 2 : 3);
    for (int g = 0; g < groups; ++g) {
        // Shape relative to the origin, then a placement that keeps it in the cytoplasm.
        std::vector<Rod> shape;
        std::vector<double> halfWidths;
        const double axis = rng.angle();
        if (faggot) {
            const int rods = rng.uniformInt(4, 8);
            const double spacing = f.s * rng.uniform(1.8, 2.5);
            for (int k = 0; k < rods; ++k) {
                const double len = D * rng.uniform(0.12, 0.22);
                const double a = axis + rng.uniform(-0.06, 0.06);
                const Point mid = direction(axis + kPi / 2) * (spacing * (k - (rods - 1) / 2.0)) +
                                  direction(axis) * (len * rng.uniform(-0.15, 0.15));
                shape.push_back({mid - direction(a) * (len / 2), mid + direction(a) * (len / 2)});
                halfWidths.push_back(f.s * rng.uniform(0.5, 0.75));
            }
        } else {
            const double len = D * rng.uniform(0.12, 0.25);
            shape.push_back({direction(axis) * (-len / 2), direction(axis) * (len / 2)});
            halfWidths.push_back(f.s * rng.uniform(0.65, 0.95));
        }

        Point best = f.centre;
        double bestScore = -1e9;
        for (int attempt = 0; attempt < 300; ++attempt) {
            const Point c = randomPointInCell(f, rng);
            int samples = 0, inside = 0, onNucleus = 0;
            for (size_t k = 0; k < shape.size(); ++k) {
                const Point p = c + shape[k].first, q = c + shape[k].second;
                const int steps = std::max(2, int(std::hypot(q.x - p.x, q.y - p.y)));
                for (int i = 0; i <= steps; ++i) {
                    const Point s = p + (q - p) * (double(i) / steps);
                    ++samples;
                    inside += at(dist.toCellEdge, s) >= halfWidths[k] + 1.5 ? 1 : 0;
                    onNucleus += at(dist.toNucleus, s) <= 0.f ? 1 : 0;
                }
            }
            // Wholly inside the cell, mostly over cytoplasm where the rods show best.
            const double score = double(inside) / samples - 0.5 * double(onNucleus) / samples;
            if (score > bestScore) {
                bestScore = score;
                best = c;
            }
            if (inside == samples && onNucleus * 5 <= samples)
                break;
        }
        for (size_t k = 0; k < shape.size(); ++k) {
            stampCapsule(layers.rods, best + shape[k].first, best + shape[k].second, halfWidths[k]);
            stampCapsule(halo, best + shape[k].first, best + shape[k].second, halfWidths[k] + 1.5 * f.s);
        }
    }
    // Rods show as rods only where granules do not crowd them; clear a narrow halo.
    layers.fineGranules = layers.fineGranules.mul(1.f - halo);
}

Mask toMask(const cv::Mat1b &m)
{
    Mask out;
    out.width = m.cols;
    out.height = m.rows;
    const cv::Mat1b dense = m.isContinuous() ? m : m.clone();
    out.pixels.assign(dense.data, dense.data + dense.total());
    return out;
}

cv::Mat1b dilate1(const cv::Mat1b &m)
{
    cv::Mat1b out;
    cv::dilate(m, out, cv::getStructuringElement(cv::MORPH_CROSS, cv::Size(3, 3)));
    return out;
}

} // namespace

const char *cellTypeName(CellType t)
{
    switch (t) {
    case CellType::SegmentedNeutrophil:
        return "segmented_neutrophil";
    case CellType::BandNeutrophil:
        return "band_neutrophil";
    case CellType::Lymphocyte:
        return "lymphocyte";
    case CellType::Monocyte:
        return "monocyte";
    case CellType::Eosinophil:
        return "eosinophil";
    case CellType::Basophil:
        return "basophil";
    case CellType::Myeloblast:
        return "myeloblast";
    case CellType::Promyelocyte:
        return "promyelocyte";
    case CellType::AtypicalPromyelocyte:
        return "atypical_promyelocyte";
    case CellType::VacuolatedMonocyte:
        return "vacuolated_monocyte";
    }
    return "unknown";
}

std::optional<CellType> cellTypeFromName(std::string_view name)
{
    for (int i = 0; i < kCellTypeCount; ++i) {
        if (name == cellTypeName(CellType(i)))
            return CellType(i);
    }
    return std::nullopt;
}

const char *partName(Part p)
{
    switch (p) {
    case Part::Nucleus:
        return "nucleus";
    case Part::Nucleolus:
        return "nucleolus";
    case Part::Cytoplasm:
        return "cytoplasm";
    case Part::FineGranules:
        return "fine_granules";
    case Part::CoarseGranules:
        return "coarse_granules";
    case Part::EosinophilicGranules:
        return "eosinophilic_granules";
    case Part::Vacuole:
        return "vacuole";
    case Part::AuerRod:
        return "auer_rod";
    case Part::RedCell:
        return "red_cell";
    case Part::Background:
        return "background";
    }
    return "unknown";
}

std::optional<Part> partFromName(std::string_view name)
{
    for (int i = 0; i < kPartCount; ++i) {
        if (name == partName(Part(i)))
            return Part(i);
    }
    return std::nullopt;
}

int64_t maskArea(const Mask &mask)
{
    return std::count_if(mask.pixels.begin(), mask.pixels.end(), [](uint8_t v) { return v != 0; });
}

uint64_t splitMix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

uint64_t mixSeed(uint64_t base, uint64_t salt)
{
    return splitMix64(base ^ splitMix64(salt + 0x632BE59BD9B4E019ull));
}

SyntheticCell generateCell(CellType type, uint64_t seed, const CellOptions &options)
{
    const int n = std::clamp(options.size, 32, 1024);
    const uint64_t base = mixSeed(seed, uint64_t(type) + 1);
    Rng stainRng(mixSeed(base, StreamStain));
    Rng bgRng(mixSeed(base, StreamBackground));
    Rng shapeRng(mixSeed(base, StreamShape));
    Rng textureRng(mixSeed(base, StreamTexture));
    Rng inclusionRng(mixSeed(base, StreamInclusions));
    Rng noiseRng(mixSeed(base, StreamNoise));

    const Recipe recipe = recipeFor(type);
    const Stain stain = drawStain(stainRng);

    Frame f;
    f.n = n;
    f.s = n / 144.0;
    f.centre = {(n - 1) / 2.0 + f.s * shapeRng.uniform(-3, 3), (n - 1) / 2.0 + f.s * shapeRng.uniform(-3, 3)};
    f.radius = 0.5 * n * shapeRng.uniform(recipe.diameterLo, recipe.diameterHi);

    Layers layers(n);
    drawRedCells(layers, f, bgRng);

    RadialShape outline(f.centre, f.radius);
    outline.stretch(shapeRng.uniform(0.0, 0.05), shapeRng.angle());
    outline.roughen(recipe.outlineRoughness, shapeRng);
    outline.rasterise(layers.cell);

    const NucleusInfo nuc = drawNucleus(type, layers, f, shapeRng);
    clipTo(layers.nucleus, layers.cell);

    switch (type) {
    case CellType::Myeloblast:
        drawNucleoli(layers, nuc, f, shapeRng, shapeRng.uniformInt(2, 4), 0.06, 0.1);
        break;
    case CellType::Promyelocyte:
    case CellType::AtypicalPromyelocyte:
        drawNucleoli(layers, nuc, f, shapeRng, shapeRng.uniformInt(1, 2), 0.05, 0.08);
        break;
    default:
        break;
    }
    if (nuc.hasGolgi) {
        stampDisc(layers.golgi, nuc.golgi, f.radius * 0.2);
        cv::GaussianBlur(layers.golgi, layers.golgi, cv::Size(), 2.0 * f.s);
    }

    const Distances dist = computeDistances(layers);
    const double cellArea = cv::countNonZero(layers.cell >= 0.5f) / (f.s * f.s);
    const double nucleusArea = cv::countNonZero(layers.nucleus >= 0.5f) / (f.s * f.s);
    const double cytoArea = std::max(0.0, cellArea - nucleusArea);

    switch (type) {
    case CellType::Promyelocyte:
        scatterGranules(layers.fineGranules, f, dist, nuc, layers, inclusionRng, int(cytoArea * 0.075), 0.55, 1.4, 0.08,
                        0.3, 2.0);
        break;
    case CellType::AtypicalPromyelocyte:
        // Hypergranular: APL cells carry more azurophilic granules than normal promyelocytes.
        scatterGranules(layers.fineGranules, f, dist, nuc, layers, inclusionRng, int(cytoArea * 0.1), 0.55, 1.5, 0.12,
                        0.3, 1.6);
        drawAuerRods(layers, f, dist, inclusionRng, true);
        break;
    case CellType::Myeloblast:
        // Auer rods are not only an APL sign: single rods sit in the blasts of many AMLs, in
        // agranular cytoplasm, so rods and azurophilic granules do not always come together.
        if (inclusionRng.chance(kMyeloblastRodShare))
            drawAuerRods(layers, f, dist, inclusionRng, false);
        break;
    case CellType::Eosinophil:
        // Packed: the granules fill the cytoplasm and only occasionally lie over the nucleus.
        scatterGranules(layers.eosGranules, f, dist, nuc, layers, inclusionRng, int(0.9 * cytoArea / (kPi * 1.8 * 1.8)),
                        1.5, 2.1, 0.03, 1.0, 1.0);
        break;
    case CellType::Basophil:
        scatterGranules(layers.coarseGranules, f, dist, nuc, layers, inclusionRng,
                        int(0.5 * cellArea / (kPi * 1.9 * 1.9)), 1.3, 2.6, 1.0, 1.0, 1.3);
        break;
    case CellType::VacuolatedMonocyte:
        drawVacuoles(layers, f, dist, inclusionRng);
        break;
    default:
        break;
    }

    // Textures.
    const cv::Mat1f plasmaMottle = smoothNoise(n, 6.0 * f.s, textureRng);
    const cv::Mat1f cytoTexture = smoothNoise(n, recipe.cytoTextureSigma * f.s, textureRng);
    const cv::Mat1f chromatin = smoothNoise(n, recipe.chromatinSigma * f.s, textureRng);
    const cv::Mat1f nucleolusTexture = smoothNoise(n, 0.8 * f.s, textureRng);
    cv::Mat1f cellBlur, nucleusBlur;
    cv::GaussianBlur(layers.cell, cellBlur, cv::Size(), 3.0 * f.s);
    cv::GaussianBlur(layers.nucleus, nucleusBlur, cv::Size(), 1.5 * f.s);

    // Stain colours in OD.
    const cv::Vec3f plasmaOd = stain.acidic({238, 222, 218});
    const cv::Vec3f rbcOd = stain.acidic({214, 136, 134}) - stain.acidic({238, 222, 218});
    const bool blueCytoplasm = recipe.cytoplasm.b > recipe.cytoplasm.r + 20;
    const cv::Vec3f cytoOd = blueCytoplasm ? stain.basicOd(recipe.cytoplasm) : stain.acidic(recipe.cytoplasm);
    const cv::Vec3f nucleusOd = stain.basicOd(recipe.nucleus);
    const cv::Vec3f nucleolusOd = stain.basicOd({170, 180, 224});
    const cv::Vec3f vacuoleOd = stain.acidic({240, 238, 244});
    const cv::Vec3f azurophilOd = stain.basicOd({124, 28, 96});
    const cv::Vec3f basophilOd = stain.basicOd({46, 20, 70});
    const cv::Vec3f eosinophilOd = stain.acidic({224, 96, 64});
    const cv::Vec3f rodOd = stain.basicOd({128, 12, 64});

    // Illumination: slight tilt and vignetting, as from an imperfectly aligned lamp.
    const double tiltX = noiseRng.uniform(-0.05, 0.05), tiltY = noiseRng.uniform(-0.05, 0.05);
    const double vignette = noiseRng.uniform(0.0, 0.05);

    cv::Mat3f light(n, n);
    for (int y = 0; y < n; ++y) {
        for (int x = 0; x < n; ++x) {
            const float cellA = layers.cell(y, x);
            cv::Vec3f od = plasmaOd * (1.f + 0.05f * plasmaMottle(y, x)) + rbcOd * layers.rbcDensity(y, x);
            if (cellA > 0.f) {
                const float ring = std::clamp(2.f * (1.f - cellBlur(y, x)), 0.f, 1.f);
                cv::Vec3f v = cytoOd * float((1 + recipe.cytoTextureAmp * cytoTexture(y, x)) *
                                             (1 + recipe.periphery * ring) * (1 - 0.35 * layers.golgi(y, x)));

                const float nucA = layers.nucleus(y, x);
                if (nucA > 0.f) {
                    const float c = chromatin(y, x);
                    float g = 0;
                    switch (recipe.chromatin) {
                    case Chromatin::Clumped:
                        g = std::tanh(1.6f * c);
                        break;
                    case Chromatin::Lacy:
                        g = 0.6f - 1.6f * std::min(std::abs(c), 1.2f);
                        break;
                    case Chromatin::Fine:
                        g = 0.8f * c;
                        break;
                    }
                    // Chromatin condenses along the nuclear membrane.
                    const float rim = std::max(0.f, nucA - nucleusBlur(y, x));
                    const float factor = 1.f + float(recipe.chromatinAmp) * g + 0.6f * rim;
                    v = lerp(v, nucleusOd * factor, nucA);
                    v = lerp(v, nucleolusOd * (1.f + 0.1f * nucleolusTexture(y, x)), 0.9f * layers.nucleoli(y, x));
                }
                v = lerp(v, vacuoleOd, layers.vacuole(y, x));
                v *= 1.f + 0.4f * layers.vacuoleRim(y, x);
                v = lerp(v, azurophilOd, layers.fineGranules(y, x));
                v = lerp(v, basophilOd, layers.coarseGranules(y, x));
                v = lerp(v, eosinophilOd, layers.eosGranules(y, x));
                v = lerp(v, rodOd, layers.rods(y, x));
                od = lerp(od, v, cellA);
            }
            const double u = (x + 0.5) / n - 0.5, w = (y + 0.5) / n - 0.5;
            const float lamp = float(stain.brightness * (1 + tiltX * u + tiltY * w) * (1 - vignette * (u * u + w * w)));
            cv::Vec3f &out = light(y, x);
            for (int c = 0; c < 3; ++c)
                out[c] = std::exp(-stain.density * od[c]) * lamp * stain.whiteBalance[c];
        }
    }

    // Optics blur the image; the sensor adds noise after that.
    cv::GaussianBlur(light, light, cv::Size(), noiseRng.uniform(0.5, 0.85) * f.s, 0, cv::BORDER_REFLECT);
    const float noiseSigma = float(noiseRng.uniform(1.2, 2.6) / 255.0);
    SyntheticCell cell;
    cell.width = n;
    cell.height = n;
    cell.type = type;
    cell.rgb.resize(size_t(n) * n * 3);
    for (int y = 0; y < n; ++y) {
        for (int x = 0; x < n; ++x) {
            const cv::Vec3f &v = light(y, x);
            const float shared = 0.6f * noiseRng.noiseSample();
            for (int c = 0; c < 3; ++c) {
                const float value = v[c] + noiseSigma * (shared + 0.8f * noiseRng.noiseSample());
                cell.rgb[(size_t(y) * n + x) * 3 + c] = cv::saturate_cast<uint8_t>(value * 255.f + 0.5f);
            }
        }
    }

    // Masks.
    const cv::Mat1b cellMask = layers.cell >= 0.5f;
    const cv::Mat1b nucleusMask = cellMask & (layers.nucleus >= 0.5f);
    const cv::Mat1b nucleolusMask = nucleusMask & (layers.nucleoli >= 0.5f);
    const cv::Mat1b vacuoleMask = cellMask & ~nucleusMask & (layers.vacuole >= 0.5f);
    const cv::Mat1b cytoplasmMask = cellMask & ~nucleusMask & ~vacuoleMask;
    const cv::Mat1b redCellMask = ~cellMask & (layers.rbcCover >= 0.5f);
    const cv::Mat1b backgroundMask = ~cellMask & ~redCellMask;

    cell.parts.resize(kPartCount);
    cell.parts[size_t(Part::Nucleus)] = toMask(nucleusMask);
    cell.parts[size_t(Part::Nucleolus)] = toMask(nucleolusMask);
    cell.parts[size_t(Part::Cytoplasm)] = toMask(cytoplasmMask);
    // Fine granules and rods are 1-2 px wide: dilated so that a mask pixel is not lost to
    // the optical blur or to patch pooling.
    cell.parts[size_t(Part::FineGranules)] = toMask(cellMask & dilate1(layers.fineGranules >= 0.35f));
    cell.parts[size_t(Part::CoarseGranules)] = toMask(cellMask & (layers.coarseGranules >= 0.4f));
    cell.parts[size_t(Part::EosinophilicGranules)] = toMask(cellMask & (layers.eosGranules >= 0.4f));
    cell.parts[size_t(Part::Vacuole)] = toMask(vacuoleMask);
    cell.parts[size_t(Part::AuerRod)] = toMask(cellMask & dilate1(layers.rods >= 0.35f));
    cell.parts[size_t(Part::RedCell)] = toMask(redCellMask);
    cell.parts[size_t(Part::Background)] = toMask(backgroundMask);
    return cell;
}

} // namespace cytosae::demo
