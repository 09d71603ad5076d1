#pragma once

// White (nucleated) cells in a smear field, found by stain colour and shape:
//   1. Optical density against the field's own background (the 97th brightness percentile of
//      each tile, so lamp and stain differences between scans cancel).
//   2. Nuclei: purple material (green absorbed more than red and blue). Red cells (pink:
//      green and blue absorbed alike) and plain plasma are not.
//   3. Cells: stained material that is not red-cell coloured, kept where it holds enough
//      nucleus; holes filled.
//   4. Touching cells: distance transform of each cell blob, one marker per core above half
//      the blob's maximum distance, watershed from those markers.
//   5. Filters: equivalent diameter, nucleus area and share, box aspect (platelets, stain
//      debris and red cells fail them).
// Large fields are processed in tiles with an overlap that holds any whole cell; a cell
// belongs to the tile that holds its box centre, so cells across tile borders count once.
//
// Sizes are in micrometres and converted with micronsPerPixel, so one set of options serves
// scans of any magnification. Defaults match the demo fields (SmearField.h).
//
// Thread safety: functions are reentrant; a SmearSource is used by one thread at a time.

#include "common/Progress.h"
#include "common/Result.h"
#include "imaging/ImageDecoder.h"

#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

namespace cytosae::imaging {

class SmearSource;

struct CellDetectorOptions {
    double micronsPerPixel = 0.14; // of the smear field
    // Cell crops: a square window of cropMicrons around each cell, resized to cropSize px, to
    // match the single-cell data sets (144 px at 0.14 µm/px: about 20 µm).
    double cropMicrons = 20.16;
    int cropSize = 144;
    double minCellDiameterUm = 6.0; // equivalent diameter of the cell region
    double maxCellDiameterUm = 25.0;
    double minNucleusAreaUm2 = 8.0; // platelets are 2-4 µm²
    double minNucleusFraction = 0.08;
    double maxAspect = 2.2; // box sides
    // Colour thresholds in optical density (natural log) above the background.
    double materialOd = 0.08;           // sum over channels: anything stained
    double nucleusGreenOd = 0.40;       // nucleus: green OD at least this ...
    double nucleusGreenOverBlue = 0.20; // ... and this much above blue ...
    double nucleusGreenOverRed = 0.10;  // ... and above red
    double redCellGreenOd = 0.20;       // red cell: green OD at least this, blue about the same,
    double redCellMaxTexture = 0.06;    // and smooth: local (7 x 7) standard deviation of green OD
    int tileSize = 1024;                // owned tile side in pixels (a tile is read with overlap)
};

struct CellDetection {
    int x = 0, y = 0, w = 0, h = 0; // box in field pixels
    double cx = 0, cy = 0;          // box centre
    int64_t area = 0;               // cell region pixels
    int64_t nucleusArea = 0;
    float score = 0; // solidity of the cell region (area / convex hull area), 0..1
};

// One image (or tile) in memory: every cell whose box does not touch the image border unless
// allowBorder. Boxes are relative to the image.
Result<std::vector<CellDetection>> detectCells(const RgbImage &image, const CellDetectorOptions &options = {},
                                               bool allowBorder = false);

struct TiledDetectionStats {
    int tiles = 0;
    int64_t bandBytes = 0; // the largest row band held
    double seconds = 0;
};

// The whole field, tile by tile. onCell gets each cell once, with its crop (cropSize square,
// edges replicated at the field border); it may return false to stop (counted as cancel).
using CellCallback = std::function<bool(const CellDetection &, const RgbImage &crop)>;
Result<TiledDetectionStats> detectCellsTiled(SmearSource &source, const CellDetectorOptions &options,
                                             const CellCallback &onCell, const ProgressCallback &progress = {},
                                             const std::atomic<bool> *cancel = nullptr);

// Overlap each tile is read with: half the largest cell or half the crop window, whichever is
// larger, plus a margin.
int tileOverlap(const CellDetectorOptions &options);

// Greedy one-to-one matching at an IoU threshold (strongest overlap first), for tests and
// benchmarks against known cell positions.
struct BoxI {
    int x = 0, y = 0, w = 0, h = 0;
};
struct DetectionScore {
    int truth = 0, detected = 0, matched = 0;
    double recall() const { return truth ? double(matched) / truth : 1.0; }
    double precision() const { return detected ? double(matched) / detected : 1.0; }
};
double boxIou(const BoxI &a, const BoxI &b);
DetectionScore scoreDetections(const std::vector<BoxI> &truth, const std::vector<CellDetection> &found,
                               double minIou = 0.5);

} // namespace cytosae::imaging
