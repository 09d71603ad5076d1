#include "demo/SmearField.h"

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>

namespace cytosae::demo {

namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr int kCellCrop = 144; // white cells are drawn at the single-cell crop scale

class Rng {
public:
    explicit Rng(uint64_t seed) : m_state(seed) {}
    uint64_t next() { return m_state = splitMix64(m_state); }
    double uniform() { return double(next() >> 11) * 0x1.0p-53; }
    double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
    bool chance(double p) { return uniform() < p; }

private:
    uint64_t m_state;
};

// Per-pixel noise as a function of position only, so that any region renders the same bytes.
inline float hashNoise(uint64_t seed, int x, int y)
{
    const uint64_t h = splitMix64(seed ^ (uint64_t(uint32_t(x)) << 32 | uint32_t(y)));
    const float sum = float(h & 0xFFFF) + float((h >> 16) & 0xFFFF) + float((h >> 32) & 0xFFFF) + float(h >> 48);
    return (sum - 131070.0f) * (1.0f / 37837.23f); // about unit variance
}

cv::Vec3f odOf(double r, double g, double b)
{
    auto one = [](double v) { return float(-std::log(std::clamp(v, 1.0, 255.0) / 255.0)); };
    return {one(r), one(g), one(b)};
}

struct RedCell {
    float x, y, r, aspect, orient, pallor, pallorRadius;
};

struct Blob {
    float x, y, r, aspect, orient;
    bool debris;
};

struct WhitePlacement {
    int cropX, cropY; // where the 144 px crop's top-left lies in the field
    size_t truthIndex;
};

} // namespace

struct SmearPlan {
    std::vector<RedCell> red; // sorted by y
    std::vector<Blob> blobs;  // sorted by y
    std::vector<WhitePlacement> white;
    float maxRedReach = 0, maxBlobReach = 0;
    cv::Vec3f plasmaOd, redOd, plateletOd, debrisOd;
    double mottlePhase[4] = {0, 0, 0, 0};
    uint64_t noiseSeed = 0;
};

namespace {

struct DrawnCell {
    SyntheticCell cell;
    cv::Mat1f alpha; // feathered white-cell mask
    cv::Mat3f od;    // the cell's optical density
    cv::Rect box;    // mask bounding box within the crop
};

DrawnCell drawWhiteCell(CellType type, uint64_t seed)
{
    DrawnCell d;
    CellOptions co;
    co.size = kCellCrop;
    d.cell = generateCell(type, seed, co);
    const int n = d.cell.width;
    cv::Mat1b mask(n, n, uint8_t(0));
    for (Part p : {Part::Nucleus, Part::Cytoplasm, Part::Vacuole}) {
        const Mask &m = d.cell.part(p);
        for (size_t i = 0; i < m.pixels.size(); ++i)
            mask.data[i] |= m.pixels[i];
    }
    d.box = cv::boundingRect(mask);
    mask.convertTo(d.alpha, CV_32F, 1.0 / 255);
    cv::GaussianBlur(d.alpha, d.alpha, cv::Size(), 0.8);
    d.od.create(n, n);
    for (int y = 0; y < n; ++y)
        for (int x = 0; x < n; ++x) {
            const uint8_t *p = &d.cell.rgb[(size_t(y) * n + x) * 3];
            d.od(y, x) = odOf(p[0], p[1], p[2]);
        }
    return d;
}

template <typename T> std::pair<size_t, size_t> rangeByY(const std::vector<T> &items, double y0, double y1)
{
    auto lo = std::lower_bound(items.begin(), items.end(), y0, [](const T &a, double v) { return a.y < v; });
    auto hi = std::upper_bound(items.begin(), items.end(), y1, [](double v, const T &a) { return v < a.y; });
    return {size_t(lo - items.begin()), size_t(hi - items.begin())};
}

} // namespace

SmearLayout planSmearField(uint64_t seed, const SmearFieldOptions &options)
{
    SmearLayout layout;
    layout.width = std::max(64, options.width);
    layout.height = std::max(64, options.height);
    layout.seed = seed;
    auto plan = std::make_shared<SmearPlan>();
    Rng rng(splitMix64(seed ^ 0x5EA5EA));
    const double mp = double(layout.width) * layout.height / 1e6;

    // Stain of this field: the same jitter idea as single cells, one draw per field.
    const double acid = rng.uniform(0.94, 1.06), basic = rng.uniform(0.94, 1.06);
    plan->plasmaOd = odOf(238, 222, 218) * float(acid);
    plan->redOd = (odOf(214, 136, 134) - odOf(238, 222, 218)) * float(acid);
    plan->plateletOd = odOf(150, 112, 186) * float(basic);
    plan->debrisOd = odOf(84, 60, 112) * float(basic);
    for (double &p : plan->mottlePhase)
        p = rng.uniform(0, 2 * kPi);
    plan->noiseSeed = rng.next();

    // White cells first (they decide where touching pairs go); crops must lie inside the field.
    struct Placed {
        double x, y, r;
    };
    std::vector<Placed> placed;
    const int target = std::max(0, int(std::lround(options.whiteCellsPerMegapixel * mp)));
    auto fits = [&](double x, double y, double r, int ignore) {
        if (x - kCellCrop / 2.0 < 2 || y - kCellCrop / 2.0 < 2 || x + kCellCrop / 2.0 > layout.width - 2 ||
            y + kCellCrop / 2.0 > layout.height - 2)
            return false;
        for (size_t i = 0; i < placed.size(); ++i)
            if (int(i) != ignore && std::hypot(x - placed[i].x, y - placed[i].y) < r + placed[i].r + 24)
                return false;
        return true;
    };
    auto addCell = [&](double cx, double cy, const DrawnCell &d, CellType type, uint64_t cellSeed, bool touching) {
        // Put the cell's box centre at (cx, cy).
        const int cropX = int(std::lround(cx - (d.box.x + d.box.width / 2.0)));
        const int cropY = int(std::lround(cy - (d.box.y + d.box.height / 2.0)));
        SmearCellTruth t;
        t.x = cropX + d.box.x;
        t.y = cropY + d.box.y;
        t.w = d.box.width;
        t.h = d.box.height;
        t.type = type;
        t.touching = touching;
        t.seed = cellSeed;
        plan->white.push_back({cropX, cropY, layout.whiteCells.size()});
        layout.whiteCells.push_back(t);
        placed.push_back({cx, cy, std::max(d.box.width, d.box.height) / 2.0});
    };
    for (int i = 0, attempts = 0; i < target && attempts < target * 40; ++attempts) {
        const auto type = CellType(int(rng.next() % kCellTypeCount));
        const uint64_t cellSeed = mixSeed(seed, uint64_t(attempts) * 2 + 1);
        const DrawnCell d = drawWhiteCell(type, cellSeed);
        const double r = std::max(d.box.width, d.box.height) / 2.0;
        const double x = rng.uniform(0, layout.width), y = rng.uniform(0, layout.height);
        if (!fits(x, y, r, -1))
            continue;
        addCell(x, y, d, type, cellSeed, false);
        ++i;
        if (i < target && rng.chance(options.touchingFraction / 2)) {
            const auto type2 = CellType(int(rng.next() % kCellTypeCount));
            const uint64_t seed2 = mixSeed(seed, uint64_t(attempts) * 2 + 2);
            const DrawnCell d2 = drawWhiteCell(type2, seed2);
            const double r2 = std::max(d2.box.width, d2.box.height) / 2.0;
            const double a = rng.uniform(0, 2 * kPi), dist = (r + r2) * rng.uniform(0.93, 0.99);
            const double x2 = x + dist * std::cos(a), y2 = y + dist * std::sin(a);
            const size_t first = placed.size() - 1;
            if (fits(x2, y2, r2, int(first))) {
                layout.whiteCells.back().touching = true;
                addCell(x2, y2, d2, type2, seed2, true);
                ++i;
            }
        }
    }

    // Red cells, platelets and debris anywhere (red cells may touch white cells: the white
    // cell is drawn on top, as it lies on a smear).
    const double redRadius = kCellCrop * 0.16;
    const int reds = int(options.redCellCoverage * layout.width * layout.height / (kPi * redRadius * redRadius));
    plan->red.reserve(size_t(std::max(0, reds)));
    for (int i = 0; i < reds; ++i) {
        RedCell c;
        c.x = float(rng.uniform(-redRadius, layout.width + redRadius));
        c.y = float(rng.uniform(-redRadius, layout.height + redRadius));
        c.r = float(redRadius * rng.uniform(0.9, 1.1));
        c.aspect = float(rng.uniform(1.0, 1.08));
        c.orient = float(rng.uniform(0, 2 * kPi));
        c.pallor = float(rng.uniform(0.35, 0.6));
        c.pallorRadius = float(rng.uniform(0.42, 0.55));
        plan->maxRedReach = std::max(plan->maxRedReach, c.r * c.aspect + 2);
        plan->red.push_back(c);
    }
    const int platelets = int(options.plateletsPerMegapixel * mp);
    const int debris = int(options.debrisPerMegapixel * mp);
    for (int i = 0; i < platelets + debris; ++i) {
        Blob b;
        b.debris = i >= platelets;
        b.x = float(rng.uniform(0, layout.width));
        b.y = float(rng.uniform(0, layout.height));
        b.r = float(b.debris ? rng.uniform(1.5, 7.0) : rng.uniform(4.0, 8.0));
        b.aspect = float(b.debris ? rng.uniform(1.0, 2.5) : rng.uniform(1.0, 1.3));
        b.orient = float(rng.uniform(0, 2 * kPi));
        plan->maxBlobReach = std::max(plan->maxBlobReach, b.r * b.aspect + 2);
        plan->blobs.push_back(b);
    }
    auto byY = [](const auto &a, const auto &b) { return a.y < b.y; };
    std::sort(plan->red.begin(), plan->red.end(), byY);
    std::sort(plan->blobs.begin(), plan->blobs.end(), byY);
    // Truth sorted by y, placements follow their truth entries.
    std::vector<size_t> order(layout.whiteCells.size());
    for (size_t i = 0; i < order.size(); ++i)
        order[i] = i;
    std::sort(order.begin(), order.end(),
              [&](size_t a, size_t b) { return layout.whiteCells[a].y < layout.whiteCells[b].y; });
    std::vector<SmearCellTruth> truth;
    std::vector<WhitePlacement> white;
    for (size_t k = 0; k < order.size(); ++k) {
        truth.push_back(layout.whiteCells[order[k]]);
        white.push_back(plan->white[order[k]]);
        white.back().truthIndex = k;
    }
    layout.whiteCells = std::move(truth);
    plan->white = std::move(white);
    layout.plan = std::move(plan);
    return layout;
}

void renderSmearRegion(const SmearLayout &layout, int x0, int y0, int cols, int rows, uint8_t *out)
{
    if (cols <= 0 || rows <= 0 || !layout.plan)
        return;
    const SmearPlan &plan = *layout.plan;
    cv::Mat3f od(rows, cols);
    // Plasma with a slow mottle (sums of sines: cheap and defined everywhere).
    std::vector<float> mx(static_cast<size_t>(cols)), my(static_cast<size_t>(rows));
    for (int x = 0; x < cols; ++x)
        mx[size_t(x)] = float(std::sin((x0 + x) * 0.013 + plan.mottlePhase[0]) +
                              0.5 * std::sin((x0 + x) * 0.0041 + plan.mottlePhase[1]));
    for (int y = 0; y < rows; ++y)
        my[size_t(y)] = float(std::sin((y0 + y) * 0.011 + plan.mottlePhase[2]) +
                              0.5 * std::sin((y0 + y) * 0.0037 + plan.mottlePhase[3]));
    for (int y = 0; y < rows; ++y) {
        cv::Vec3f *row = od[y];
        for (int x = 0; x < cols; ++x)
            row[x] = plan.plasmaOd * (1.f + 0.03f * (mx[size_t(x)] + my[size_t(y)]));
    }

    // Red cells: biconcave discs as in the single-cell generator, density added in OD.
    {
        const auto [lo, hi] = rangeByY(plan.red, y0 - plan.maxRedReach, y0 + rows + plan.maxRedReach);
        for (size_t i = lo; i < hi; ++i) {
            const RedCell &c = plan.red[i];
            const double reach = c.r * c.aspect + 1;
            const int bx0 = std::max(x0, int(std::floor(c.x - reach))),
                      bx1 = std::min(x0 + cols - 1, int(std::ceil(c.x + reach)));
            const int by0 = std::max(y0, int(std::floor(c.y - reach))),
                      by1 = std::min(y0 + rows - 1, int(std::ceil(c.y + reach)));
            const double co = std::cos(c.orient), si = std::sin(c.orient);
            for (int y = by0; y <= by1; ++y) {
                cv::Vec3f *row = od[y - y0];
                for (int x = bx0; x <= bx1; ++x) {
                    const double u = ((x - c.x) * co + (y - c.y) * si) / (c.r * c.aspect);
                    const double v = (-(x - c.x) * si + (y - c.y) * co) / (c.r / c.aspect);
                    const double rho = std::sqrt(u * u + v * v);
                    const double cov = std::clamp((1 - rho) * c.r + 0.5, 0.0, 1.0);
                    if (cov <= 0)
                        continue;
                    const double q = rho / c.pallorRadius, ridge = (rho - 0.8) / 0.12;
                    const double density = 1 - c.pallor * std::exp(-q * q) + 0.08 * std::exp(-ridge * ridge);
                    row[x - x0] += plan.redOd * float(cov * density);
                }
            }
        }
    }

    // Platelets (small granular purple discs) and stain debris (dark specks and short streaks).
    {
        const auto [lo, hi] = rangeByY(plan.blobs, y0 - plan.maxBlobReach, y0 + rows + plan.maxBlobReach);
        for (size_t i = lo; i < hi; ++i) {
            const Blob &b = plan.blobs[i];
            const double reach = b.r * b.aspect + 1;
            const int bx0 = std::max(x0, int(std::floor(b.x - reach))),
                      bx1 = std::min(x0 + cols - 1, int(std::ceil(b.x + reach)));
            const int by0 = std::max(y0, int(std::floor(b.y - reach))),
                      by1 = std::min(y0 + rows - 1, int(std::ceil(b.y + reach)));
            const double co = std::cos(b.orient), si = std::sin(b.orient);
            const cv::Vec3f target = b.debris ? plan.debrisOd : plan.plateletOd;
            for (int y = by0; y <= by1; ++y) {
                cv::Vec3f *row = od[y - y0];
                for (int x = bx0; x <= bx1; ++x) {
                    const double u = ((x - b.x) * co + (y - b.y) * si) / (b.r * b.aspect);
                    const double v = (-(x - b.x) * si + (y - b.y) * co) / (b.r / b.aspect);
                    const double cov = std::clamp((1 - std::sqrt(u * u + v * v)) * b.r + 0.5, 0.0, 1.0);
                    if (cov <= 0)
                        continue;
                    const float grain = b.debris ? 1.f : 0.8f + 0.25f * hashNoise(plan.noiseSeed + 7, x, y);
                    cv::Vec3f &p = row[x - x0];
                    p += (target * grain - p) * float(cov);
                }
            }
        }
    }

    // White cells on top.
    for (const WhitePlacement &w : plan.white) {
        const cv::Rect crop(w.cropX, w.cropY, kCellCrop, kCellCrop);
        const cv::Rect region(x0, y0, cols, rows);
        const cv::Rect overlap = crop & region;
        if (overlap.empty())
            continue;
        const SmearCellTruth &t = layout.whiteCells[w.truthIndex];
        const DrawnCell d = drawWhiteCell(t.type, t.seed);
        for (int y = overlap.y; y < overlap.y + overlap.height; ++y) {
            cv::Vec3f *row = od[y - y0];
            for (int x = overlap.x; x < overlap.x + overlap.width; ++x) {
                const float a = d.alpha(y - w.cropY, x - w.cropX);
                if (a <= 0.f)
                    continue;
                cv::Vec3f &p = row[x - x0];
                p += (d.od(y - w.cropY, x - w.cropX) - p) * a;
            }
        }
    }

    // Light through the stain, plus sensor noise.
    for (int y = 0; y < rows; ++y) {
        const cv::Vec3f *row = od[y];
        uint8_t *dst = out + size_t(y) * cols * 3;
        for (int x = 0; x < cols; ++x) {
            const float shared = 1.2f * hashNoise(plan.noiseSeed, x0 + x, y0 + y);
            for (int c = 0; c < 3; ++c) {
                const float v =
                    255.f * std::exp(-row[x][c]) + shared + hashNoise(plan.noiseSeed + uint64_t(c) + 1, x0 + x, y0 + y);
                dst[size_t(x) * 3 + c] = cv::saturate_cast<uint8_t>(v);
            }
        }
    }
}

SmearField generateSmearField(uint64_t seed, const SmearFieldOptions &options)
{
    SmearField f;
    f.layout = planSmearField(seed, options);
    f.rgb.resize(size_t(f.layout.width) * f.layout.height * 3);
    renderSmearRegion(f.layout, 0, 0, f.layout.width, f.layout.height, f.rgb.data());
    return f;
}

} // namespace cytosae::demo
