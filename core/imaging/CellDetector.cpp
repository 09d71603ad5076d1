#include "imaging/CellDetector.h"

#include "imaging/SmearSource.h"

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <queue>
#include <tuple>

namespace cytosae::imaging {

namespace {

constexpr double kPi = 3.14159265358979323846;

// Which sides of a tile are the field's own border (cells may touch those).
struct OpenSides {
    bool left = false, top = false, right = false, bottom = false;
};

// Optical density per channel against the tile's background: the 97th percentile of each
// channel stands for plasma, the brightest thing on a smear.
void opticalDensity(const cv::Mat3b &rgb, cv::Mat1f od[3])
{
    int64_t hist[3][256] = {};
    for (int y = 0; y < rgb.rows; ++y) {
        const cv::Vec3b *row = rgb[y];
        for (int x = 0; x < rgb.cols; ++x)
            for (int c = 0; c < 3; ++c)
                ++hist[c][row[x][c]];
    }
    const int64_t n = int64_t(rgb.total());
    float lut[3][256];
    for (int c = 0; c < 3; ++c) {
        int64_t cum = 0;
        int white = 255;
        for (int v = 0; v < 256; ++v) {
            cum += hist[c][v];
            if (cum >= n * 97 / 100) {
                white = v;
                break;
            }
        }
        white = std::max(white, 64); // a black tile has no background to speak of
        for (int v = 0; v < 256; ++v)
            lut[c][v] = float(std::log(double(white) / std::max(v, 1)));
    }
    for (int c = 0; c < 3; ++c)
        od[c].create(rgb.rows, rgb.cols);
    for (int y = 0; y < rgb.rows; ++y) {
        const cv::Vec3b *row = rgb[y];
        float *r = od[0][y], *g = od[1][y], *b = od[2][y];
        for (int x = 0; x < rgb.cols; ++x) {
            r[x] = lut[0][row[x][0]];
            g[x] = lut[1][row[x][1]];
            b[x] = lut[2][row[x][2]];
        }
    }
    for (int c = 0; c < 3; ++c)
        cv::GaussianBlur(od[c], od[c], cv::Size(5, 5), 1.0);
}

// Watershed on the inverted distance transform: pixels join the core they are reached from
// going downhill in distance, deepest first, so touching round cells part at their neck.
// (cv::watershed ranks pixels by colour difference to their neighbour, which on a distance
// relief is the same everywhere, so it would split at random.)
void floodFromCores(const cv::Mat1f &dist, const cv::Mat1b &blob, cv::Mat1i &labels)
{
    using Entry = std::tuple<float, int, int>; // distance, pixel index, label
    std::priority_queue<Entry> queue;
    const int w = dist.cols, h = dist.rows;
    auto pushNeighbours = [&](int x, int y, int label) {
        static const int dx[4] = {1, -1, 0, 0}, dy[4] = {0, 0, 1, -1};
        for (int k = 0; k < 4; ++k) {
            const int nx = x + dx[k], ny = y + dy[k];
            if (nx >= 0 && ny >= 0 && nx < w && ny < h && blob(ny, nx) && labels(ny, nx) == 0)
                queue.emplace(dist(ny, nx), ny * w + nx, label);
        }
    };
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x)
            if (labels(y, x) > 0)
                pushNeighbours(x, y, labels(y, x));
    while (!queue.empty()) {
        const auto [d, idx, label] = queue.top();
        queue.pop();
        const int x = idx % w, y = idx / w;
        if (labels(y, x) != 0)
            continue;
        labels(y, x) = label;
        pushNeighbours(x, y, label);
    }
}

void detectInMat(const cv::Mat3b &rgb, const CellDetectorOptions &o, OpenSides open, std::vector<CellDetection> &out)
{
    const double umPerPx = std::max(1e-6, o.micronsPerPixel);
    const double px2 = umPerPx * umPerPx;
    cv::Mat1f od[3];
    opticalDensity(rgb, od);
    const cv::Mat1f &R = od[0], &G = od[1], &B = od[2];

    // Local texture of the green density: red cells are smooth, granular cytoplasm
    // (eosinophils, whose granules are nearly red-cell coloured) is not.
    cv::Mat1f texture;
    {
        cv::Mat1f mean, meanSq;
        cv::blur(G, mean, cv::Size(7, 7));
        cv::blur(G.mul(G), meanSq, cv::Size(7, 7));
        cv::Mat1f var = meanSq - mean.mul(mean);
        cv::max(var, 0.0, var);
        cv::sqrt(var, texture);
    }
    cv::Mat1b nucleus(rgb.size()), cells(rgb.size()), redCells(rgb.size());
    for (int y = 0; y < rgb.rows; ++y) {
        const float *r = R[y], *g = G[y], *b = B[y], *t = texture[y];
        uint8_t *nu = nucleus[y], *ce = cells[y], *rc = redCells[y];
        for (int x = 0; x < rgb.cols; ++x) {
            const bool isNucleus = g[x] >= o.nucleusGreenOd && g[x] - b[x] >= o.nucleusGreenOverBlue &&
                                   g[x] - r[x] >= o.nucleusGreenOverRed;
            const bool material = r[x] + g[x] + b[x] >= o.materialOd;
            // Red cells absorb green and blue alike and little red (pink); white-cell cytoplasm
            // is bluish or pale lilac, eosinophil granules absorb blue clearly more than green.
            const bool redCell = g[x] >= o.redCellGreenOd && g[x] - b[x] <= 0.2f * g[x] + 0.03f &&
                                 b[x] - g[x] <= 0.06f * g[x] + 0.02f && r[x] <= 0.5f * g[x];
            nu[x] = isNucleus ? 255 : 0;
            ce[x] = (isNucleus || material) ? 255 : 0;
            rc[x] = redCell && !isNucleus ? (t[x] <= o.redCellMaxTexture ? 255 : 128) : 0;
        }
    }
    // Red cells: smooth red-cell coloured areas, grown over their own (textured) rims; the
    // granular cytoplasm of eosinophils has few smooth pixels to grow from.
    {
        cv::Mat1b smooth = redCells == 255, grown;
        cv::dilate(smooth, grown, cv::getStructuringElement(cv::MORPH_ELLIPSE, cv::Size(7, 7)));
        redCells = grown & (redCells > 0);
        cells.setTo(0, redCells);
    }
    const cv::Mat disk5 = cv::getStructuringElement(cv::MORPH_ELLIPSE, cv::Size(5, 5));
    cv::morphologyEx(cells, cells, cv::MORPH_OPEN, disk5);
    cv::morphologyEx(nucleus, nucleus, cv::MORPH_CLOSE, cv::getStructuringElement(cv::MORPH_ELLIPSE, cv::Size(3, 3)));

    // Fill holes (vacuoles, pale Golgi zones) of every blob.
    {
        std::vector<std::vector<cv::Point>> contours;
        cv::findContours(cells.clone(), contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_SIMPLE);
        cv::drawContours(cells, contours, -1, cv::Scalar(255), cv::FILLED);
    }

    cv::Mat1i labels;
    cv::Mat stats, centroids;
    const int count = cv::connectedComponentsWithStats(cells, labels, stats, centroids, 8, CV_32S);
    std::vector<int64_t> nucleusPixels(size_t(count), 0);
    for (int y = 0; y < rgb.rows; ++y) {
        const int *l = labels[y];
        const uint8_t *nu = nucleus[y];
        for (int x = 0; x < rgb.cols; ++x)
            if (nu[x])
                ++nucleusPixels[size_t(l[x])];
    }

    const double minNucleusPx = o.minNucleusAreaUm2 / px2;
    const double minDiameterPx = o.minCellDiameterUm / umPerPx, maxDiameterPx = o.maxCellDiameterUm / umPerPx;
    const double minAreaPx = kPi / 4 * minDiameterPx * minDiameterPx;

    auto consider = [&](const cv::Mat1b &region, const cv::Rect &where, int64_t nucleusArea) {
        // region: the cell's pixels inside `where` (tile coordinates).
        const cv::Rect box = cv::boundingRect(region) + where.tl();
        const int64_t area = cv::countNonZero(region);
        const double diameter = std::sqrt(4.0 * double(area) / kPi);
        if (diameter < minDiameterPx || diameter > maxDiameterPx)
            return;
        if (double(nucleusArea) < minNucleusPx || double(nucleusArea) < o.minNucleusFraction * double(area))
            return;
        const double aspect = double(std::max(box.width, box.height)) / std::max(1, std::min(box.width, box.height));
        if (aspect > o.maxAspect)
            return;
        if ((!open.left && box.x <= 0) || (!open.top && box.y <= 0) || (!open.right && box.x + box.width >= rgb.cols) ||
            (!open.bottom && box.y + box.height >= rgb.rows))
            return; // cut by the tile edge: the neighbouring tile sees it whole
        std::vector<std::vector<cv::Point>> contours;
        cv::findContours(region.clone(), contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_NONE);
        double hullArea = 0;
        for (const auto &c : contours) {
            std::vector<cv::Point> hull;
            cv::convexHull(c, hull);
            hullArea += cv::contourArea(hull);
        }
        CellDetection d;
        d.x = box.x;
        d.y = box.y;
        d.w = box.width;
        d.h = box.height;
        d.cx = box.x + box.width / 2.0;
        d.cy = box.y + box.height / 2.0;
        d.area = area;
        d.nucleusArea = nucleusArea;
        d.score = float(std::clamp(hullArea > 0 ? double(area) / hullArea : 0.0, 0.0, 1.0));
        out.push_back(d);
    };

    for (int i = 1; i < count; ++i) {
        const int area = stats.at<int>(i, cv::CC_STAT_AREA);
        if (double(nucleusPixels[size_t(i)]) < minNucleusPx || area < minAreaPx)
            continue;
        const cv::Rect bb(stats.at<int>(i, cv::CC_STAT_LEFT), stats.at<int>(i, cv::CC_STAT_TOP),
                          stats.at<int>(i, cv::CC_STAT_WIDTH), stats.at<int>(i, cv::CC_STAT_HEIGHT));
        // One pixel of margin so that the distance transform sees the blob's outline.
        const cv::Rect where = (bb + cv::Size(2, 2) - cv::Point(1, 1)) & cv::Rect(0, 0, rgb.cols, rgb.rows);
        const cv::Mat1b blob = labels(where) == i;
        cv::Mat1f dist;
        cv::distanceTransform(blob, dist, cv::DIST_L2, 5);
        double maxDist = 0;
        cv::minMaxLoc(dist, nullptr, &maxDist);
        // Cores: round cells touching another have a distance peak each, joined by a neck
        // well below half the peak height.
        // A blob much larger than the disc of its largest inscribed circle is more than one
        // cell even when their neck is wide: raise the core level until it parts.
        const double discRatio = double(area) / (kPi * maxDist * maxDist);
        cv::Mat1i markers;
        int cores_n = 0;
        for (double level : {0.5, 0.6, 0.7, 0.8}) {
            cores_n = cv::connectedComponents(dist > level * maxDist, markers, 8, CV_32S) - 1;
            if (cores_n > 1 || discRatio < 1.45)
                break;
        }
        const cv::Mat1b nucleusHere = nucleus(where);
        if (cores_n <= 1) {
            consider(blob, where, cv::countNonZero(nucleusHere & blob));
            continue;
        }
        floodFromCores(dist, blob, markers);
        for (int k = 1; k <= cores_n; ++k) {
            const cv::Mat1b part = (markers == k) & blob;
            consider(part, where, cv::countNonZero(nucleusHere & part));
        }
    }
}

} // namespace

double boxIou(const BoxI &a, const BoxI &b)
{
    const int x0 = std::max(a.x, b.x), y0 = std::max(a.y, b.y);
    const int x1 = std::min(a.x + a.w, b.x + b.w), y1 = std::min(a.y + a.h, b.y + b.h);
    const double inter = double(std::max(0, x1 - x0)) * std::max(0, y1 - y0);
    const double uni = double(a.w) * a.h + double(b.w) * b.h - inter;
    return uni > 0 ? inter / uni : 0.0;
}

DetectionScore scoreDetections(const std::vector<BoxI> &truth, const std::vector<CellDetection> &found, double minIou)
{
    DetectionScore s;
    s.truth = int(truth.size());
    s.detected = int(found.size());
    struct Pair {
        double iou;
        size_t t, f;
    };
    std::vector<Pair> pairs;
    for (size_t t = 0; t < truth.size(); ++t)
        for (size_t f = 0; f < found.size(); ++f) {
            const double iou = boxIou(truth[t], {found[f].x, found[f].y, found[f].w, found[f].h});
            if (iou >= minIou)
                pairs.push_back({iou, t, f});
        }
    std::sort(pairs.begin(), pairs.end(), [](const Pair &a, const Pair &b) { return a.iou > b.iou; });
    std::vector<bool> usedT(truth.size()), usedF(found.size());
    for (const Pair &p : pairs)
        if (!usedT[p.t] && !usedF[p.f]) {
            usedT[p.t] = usedF[p.f] = true;
            ++s.matched;
        }
    return s;
}

int tileOverlap(const CellDetectorOptions &o)
{
    const double umPerPx = std::max(1e-6, o.micronsPerPixel);
    const double window = o.cropMicrons / umPerPx, cell = o.maxCellDiameterUm / umPerPx;
    return int(std::ceil(std::max(window, cell) / 2)) + 16;
}

Result<std::vector<CellDetection>> detectCells(const RgbImage &image, const CellDetectorOptions &options,
                                               bool allowBorder)
{
    if (image.width <= 0 || image.height <= 0 || image.pixels.size() != size_t(image.width) * image.height * 3)
        return Error("empty or inconsistent image");
    std::vector<CellDetection> out;
    try {
        const cv::Mat3b rgb(image.height, image.width,
                            reinterpret_cast<cv::Vec3b *>(const_cast<uint8_t *>(image.pixels.data())));
        detectInMat(rgb, options, {allowBorder, allowBorder, allowBorder, allowBorder}, out);
    } catch (const cv::Exception &e) {
        return Error(std::string("cell detection failed: ") + e.what());
    }
    return out;
}

Result<TiledDetectionStats> detectCellsTiled(SmearSource &source, const CellDetectorOptions &options,
                                             const CellCallback &onCell, const ProgressCallback &progress,
                                             const std::atomic<bool> *cancel)
{
    const auto start = std::chrono::steady_clock::now();
    TiledDetectionStats stats;
    const int W = source.width(), H = source.height();
    const int T = std::max(64, options.tileSize);
    const int ov = tileOverlap(options);
    const int window = std::max(1, int(std::lround(options.cropMicrons / std::max(1e-6, options.micronsPerPixel))));
    const int cropSize = std::clamp(options.cropSize, 8, 4096);
    const int64_t tilesTotal = int64_t((W + T - 1) / T) * ((H + T - 1) / T);
    ProgressMeter meter("detect", tilesTotal, progress);
    std::vector<uint8_t> band;
    try {
        for (int by = 0; by < H; by += T) {
            if (cancel && cancel->load())
                return Error("cancelled");
            const int ry0 = std::max(0, by - ov), ry1 = std::min(H, by + T + ov);
            band.resize(size_t(W) * size_t(ry1 - ry0) * 3);
            stats.bandBytes = std::max<int64_t>(stats.bandBytes, int64_t(band.size()));
            if (Status s = source.readRows(ry0, ry1 - ry0, band.data()); !s)
                return s.error();
            const cv::Mat3b bandMat(ry1 - ry0, W, reinterpret_cast<cv::Vec3b *>(band.data()));
            for (int bx = 0; bx < W; bx += T) {
                const int rx0 = std::max(0, bx - ov), rx1 = std::min(W, bx + T + ov);
                const cv::Mat3b tile = bandMat(cv::Rect(rx0, 0, rx1 - rx0, ry1 - ry0));
                std::vector<CellDetection> found;
                detectInMat(tile, options, {rx0 == 0, ry0 == 0, rx1 == W, ry1 == H}, found);
                for (CellDetection d : found) {
                    d.x += rx0;
                    d.y += ry0;
                    d.cx += rx0;
                    d.cy += ry0;
                    // The tile that owns the centre reports the cell.
                    if (d.cx < bx || d.cx >= std::min(W, bx + T) || d.cy < by || d.cy >= std::min(H, by + T))
                        continue;
                    const cv::Rect win(int(std::lround(d.cx - window / 2.0)), int(std::lround(d.cy - window / 2.0)),
                                       window, window);
                    const cv::Rect inField = win & cv::Rect(0, 0, W, H);
                    const cv::Rect inBand(inField.x, inField.y - ry0, inField.width, inField.height);
                    cv::Mat3b cut;
                    cv::copyMakeBorder(bandMat(inBand & cv::Rect(0, 0, W, ry1 - ry0)), cut, inField.y - win.y,
                                       win.br().y - inField.br().y, inField.x - win.x, win.br().x - inField.br().x,
                                       cv::BORDER_REPLICATE);
                    RgbImage crop;
                    crop.width = crop.height = cropSize;
                    crop.pixels.resize(size_t(cropSize) * cropSize * 3);
                    cv::Mat3b dst(cropSize, cropSize, reinterpret_cast<cv::Vec3b *>(crop.pixels.data()));
                    if (cut.size() == dst.size())
                        cut.copyTo(dst);
                    else
                        cv::resize(cut, dst, dst.size(), 0, 0, window > cropSize ? cv::INTER_AREA : cv::INTER_LINEAR);
                    if (onCell && !onCell(d, crop))
                        return Error("cancelled");
                }
                ++stats.tiles;
                meter.report(stats.tiles);
            }
        }
    } catch (const cv::Exception &e) {
        return Error(std::string("cell detection failed: ") + e.what());
    } catch (const std::bad_alloc &) {
        return Error("out of memory while detecting cells");
    }
    stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return stats;
}

} // namespace cytosae::imaging
