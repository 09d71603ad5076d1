#pragma once

// Synthetic whole smear fields with known white-cell positions, for the cell detector's tests,
// benchmark and demo. A field is red cells, platelets, stain debris and white cells drawn by
// generateCell (SyntheticCells.h) pasted onto plasma, some of them in touching pairs, at the
// scale of the single-cell crops (a 144 px crop side = kFieldMicronsPerPixel * 144 µm).
//
// Everything is a pure function of (seed, options). A field is planned once (object
// positions, white-cell boxes) and any rectangle of it can then be rendered on its own, so a
// 20,000 x 20,000 field is written strip by strip without ever existing in memory.

#include "demo/SyntheticCells.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace cytosae::demo {

// Physical scale the generated fields stand for (about 0.14 µm per pixel, a 100x oil
// objective on a typical camera); the detector's defaults match it.
constexpr double kFieldMicronsPerPixel = 0.14;

struct SmearFieldOptions {
    int width = 1536, height = 1024;
    double whiteCellsPerMegapixel = 14; // about 20 in a default field
    double touchingFraction = 0.25;     // share of white cells placed touching another one
    double redCellCoverage = 0.30;      // fraction of the field under red cells (before overlap)
    double plateletsPerMegapixel = 80;
    double debrisPerMegapixel = 30;
};

// A white cell as the detector should find it: its box in field pixels (inclusive-exclusive).
struct SmearCellTruth {
    int x = 0, y = 0, w = 0, h = 0;
    CellType type = CellType::SegmentedNeutrophil;
    bool touching = false; // placed touching another white cell
    uint64_t seed = 0;     // generateCell seed
};

struct SmearPlan;

struct SmearLayout {
    int width = 0, height = 0;
    uint64_t seed = 0;
    std::vector<SmearCellTruth> whiteCells; // sorted by y
    // Red cells, platelets, debris: shared, immutable, so copies of a layout are cheap.
    std::shared_ptr<const SmearPlan> plan;
};

// Places every object; about 30 ms plus 3 ms per white cell.
SmearLayout planSmearField(uint64_t seed, const SmearFieldOptions &options = {});

// Renders rows [y0, y0 + rows) and columns [x0, x0 + cols) as interleaved RGB8 into out
// (rows * cols * 3 bytes). Rendering a region equals cutting it from the whole field.
void renderSmearRegion(const SmearLayout &layout, int x0, int y0, int cols, int rows, uint8_t *out);

struct SmearField {
    SmearLayout layout;
    std::vector<uint8_t> rgb; // width * height * 3
};

SmearField generateSmearField(uint64_t seed, const SmearFieldOptions &options = {});

} // namespace cytosae::demo
