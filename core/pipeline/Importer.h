#pragma once

// Import: folder (patient-, class-, diagnosis/patient-per-folder, flat) or CSV manifest ->
// every file checked (decodable, channels, bit depth, size) and hashed -> image rows.
// Rejected files are recorded with their reason; paths already in the project are skipped,
// so importing the same folder twice adds nothing twice.
// Runs on the caller's thread with `threads` helper threads for decoding.

#include "common/Progress.h"
#include "common/Result.h"
#include "pipeline/ImportScan.h"

#include <atomic>
#include <string>
#include <vector>

namespace cytosae::store {
class ProjectDb;
}

namespace cytosae::pipeline {

struct ImportOptions {
    std::string source;          // folder, or a .csv manifest
    FolderLayout layout = FolderLayout::ClassPerFolder;
    std::string patientTable;    // optional CSV: patient -> diagnosis
    bool followSymlinks = false;
    int threads = 0;             // 0: one per core
    int64_t maxPixels = 100'000'000;
};

struct RejectedFile {
    std::string path;
    std::string reason;
};

struct ImportReport {
    int64_t found = 0;           // image files in the source
    int64_t added = 0;
    int64_t alreadyPresent = 0;
    int64_t rejected = 0;
    std::vector<RejectedFile> rejectedFiles; // this import's rejections
    std::vector<ScanIssue> issues;           // manifest rows, links, unreadable folders
    int64_t patientsUpdated = 0;
    bool cancelled = false;
};

Result<ImportReport> importImages(store::ProjectDb &db, const ImportOptions &options,
                                  const ProgressCallback &progress = {}, const std::atomic<bool> *cancel = nullptr);

} // namespace cytosae::pipeline
