#pragma once

// Import of whole smear fields: each field is read tile by tile, its white cells are detected
// (imaging/CellDetector.h), every cell is written as a PNG crop at the single-cell scale and
// added as an image of the project, linked to its smear with its box (schema 3). From there
// the cells go through the same run as single-cell images.
//
// Sources: one image file, a folder (layouts as for importImages: patient, diagnosis-patient
// and flat are meaningful; a class folder layout gives no class to smear cells), or a .csv
// manifest (path, patient, diagnosis). A smear already in the project is skipped. A file that
// cannot be read is recorded as a rejected smear with the reason and the import goes on.
// Runs on the caller's thread.

#include "common/Progress.h"
#include "common/Result.h"
#include "imaging/CellDetector.h"
#include "imaging/SmearSource.h"
#include "pipeline/Importer.h"

#include <atomic>
#include <string>
#include <vector>

namespace cytosae::store {
class ProjectDb;
}

namespace cytosae::pipeline {

struct SmearImportOptions {
    std::string source;
    FolderLayout layout = FolderLayout::Flat;
    bool followSymlinks = false;
    std::string patientCode; // for every smear of the source (overrides the layout's)
    // Where the cell crops go; empty: "<project file>.cells" next to the project. Each smear
    // gets a sub-folder named after the file and the start of its hash.
    std::string cellsDir;
    imaging::CellDetectorOptions detector;
    imaging::SmearLimits limits;
};

struct SmearImportReport {
    int64_t found = 0; // smear files in the source
    int64_t added = 0; // smears added
    int64_t alreadyPresent = 0;
    int64_t rejected = 0;
    int64_t cellsAdded = 0;
    std::vector<RejectedFile> rejectedFiles;
    std::vector<ScanIssue> issues;
    bool cancelled = false;
};

Result<SmearImportReport> importSmears(store::ProjectDb &db, const SmearImportOptions &options,
                                       const ProgressCallback &progress = {},
                                       const std::atomic<bool> *cancel = nullptr);

} // namespace cytosae::pipeline
