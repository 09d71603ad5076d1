#pragma once

// Synthetic May-Grünwald-Giemsa-like single-cell crops with ground-truth part masks.
// They stand in for real blood smears wherever a demo, a test or a tutorial needs images
// whose content is known exactly: a small ViT is trained to tell the ten types apart and an
// SAE trained on its activations should find the parts again, so every type is drawn to be
// recognisable by its parts (nucleus shape, granules, rods, vacuoles), not by colour alone.
//
// Everything is a pure function of (type, seed, options): the same arguments give the
// same bytes on the same build. No global random state (cv::theRNG) and no clock is used.
// The header deliberately exposes plain types only so that callers need no OpenCV.

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace cytosae::demo {

enum class CellType {
    SegmentedNeutrophil,
    BandNeutrophil,
    Lymphocyte,
    Monocyte,
    Eosinophil,
    Basophil,
    Myeloblast,           // about kMyeloblastRodShare of them with one to three single Auer rods
    Promyelocyte,
    AtypicalPromyelocyte, // Auer rods or a faggot bundle
    VacuolatedMonocyte
};
constexpr int kCellTypeCount = 10;
// Share of myeloblasts drawn with single Auer rods (never faggots), as in the blasts of many
// AMLs; it keeps rods and azurophilic granules from always appearing together.
constexpr double kMyeloblastRodShare = 0.3;

// "segmented_neutrophil", "band_neutrophil", ...: used as class folder and label names.
const char *cellTypeName(CellType t);
std::optional<CellType> cellTypeFromName(std::string_view name);

// What each mask marks (masks may overlap where the stain does):
//  Nucleus              the whole nucleus including nucleoli and the thin inter-lobe strands
//  Nucleolus            nucleoli; always a subset of Nucleus
//  Cytoplasm            white cell minus nucleus minus vacuoles (granules lie on top of it)
//  FineGranules         azurophilic granules of (atypical) promyelocytes, dilated by 1 px
//  CoarseGranules       basophil granules, over cytoplasm and nucleus alike
//  EosinophilicGranules eosinophil granules
//  Vacuole              clear vacuoles in the cytoplasm
//  AuerRod              Auer rods and faggot bundles, dilated by 1 px
//  RedCell              red cells not covered by the white cell
//  Background           plasma: neither white cell nor red cell
// Background, RedCell and (Nucleus | Cytoplasm | Vacuole) partition the image.
// Neutrophil specific granules and monocyte "ground glass" are too fine to see as dots in
// MGG; they are drawn as cytoplasm texture and are not masked.
enum class Part {
    Nucleus,
    Nucleolus,
    Cytoplasm,
    FineGranules,
    CoarseGranules,
    EosinophilicGranules,
    Vacuole,
    AuerRod,
    RedCell,
    Background
};
constexpr int kPartCount = 10;

// "nucleus", "nucleolus", "cytoplasm", "fine_granules", "coarse_granules",
// "eosinophilic_granules", "vacuole", "auer_rod", "red_cell", "background".
const char *partName(Part p);
std::optional<Part> partFromName(std::string_view name);

// One byte per pixel, 0 or 255, row-major, pixels.size() == width * height.
struct Mask {
    int width = 0, height = 0;
    std::vector<uint8_t> pixels;
};

int64_t maskArea(const Mask &mask); // pixels set

struct SyntheticCell {
    int width = 0, height = 0;
    std::vector<uint8_t> rgb; // interleaved RGB8, row-major, size width * height * 3
    CellType type = CellType::SegmentedNeutrophil;
    std::vector<Mask> parts; // kPartCount, indexed by Part

    const Mask &part(Part p) const { return parts[size_t(p)]; }
};

struct CellOptions {
    // Square crop side, like AML_Hehr (144) ... MLL23 (288). Geometry is specified relative to
    // 144 px and scaled, so one seed gives the same cell layout at every size.
    // Clamped to [32, 1024] (memory: about 100 bytes of working layers per pixel).
    int size = 144;
};

SyntheticCell generateCell(CellType type, uint64_t seed, const CellOptions &options = {});

// One SplitMix64 step (Steele, Lea & Flood): the generators' seed and hash mixer.
uint64_t splitMix64(uint64_t x);

// Derives independent seeds (e.g. image i of a patient) from a base seed: a SplitMix64 mix,
// so nearby inputs give unrelated outputs.
uint64_t mixSeed(uint64_t base, uint64_t salt);

} // namespace cytosae::demo
