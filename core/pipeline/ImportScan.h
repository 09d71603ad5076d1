#pragma once

// Finds the images of a data set and the labels its folder layout or manifest gives them.
// Nothing is decoded here: a scan only lists paths, so it stays fast on folders with
// hundreds of thousands of cells, and decoding problems are reported later, per image.
//
// Whole-call failures (folder missing, table without the required column) are Errors whose
// messages never contain the folder or file path: callers add it with Error::withContext, as
// for imaging::decodeImageFile. Problems with a single entry (an unreadable sub-folder, a bad
// manifest row, a link that was not followed) are ScanIssues next to the items instead, so one
// bad row never costs the whole import.

#include "common/Result.h"
#include "io/Csv.h"

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace cytosae::pipeline {

// Where the labels are, given the folders between the import root and each image:
//   Flat                  every image in the tree, no labels.
//   ClassPerFolder        class = the image's immediate parent folder (also for nested trees
//                         such as BMC's root/<group>/<class>/img.jpg); files directly in the
//                         root get no class.
//   PatientPerFolder      root/<patient>/img.tif (AML_Hehr); deeper folders give the class
//                         (immediate parent) when its name differs from the patient folder.
//   DiagnosisThenPatient  root/<diagnosis>/<patient>/img; deeper folders give the class as above.
enum class FolderLayout { Flat, ClassPerFolder, PatientPerFolder, DiagnosisThenPatient };

struct ImportItem {
    std::string path;        // absolute, lexically normalised (symbolic links are not resolved)
    std::string patientCode; // empty if none
    std::string className;   // empty if none
    std::string diagnosis;   // empty if none
    std::vector<std::pair<std::string, std::string>> metadata; // extra manifest columns, in column order
};

// A problem with one entry; path is the file or folder concerned (for manifest rows, the
// manifest itself, with the line number in the message).
struct ScanIssue {
    std::string path;
    std::string message;
};

struct ScanResult {
    std::vector<ImportItem> items; // scanFolder: sorted by path; readManifest: manifest order
    std::vector<ScanIssue> issues;
};

struct ScanOptions {
    FolderLayout layout = FolderLayout::ClassPerFolder;
    // Off by default: a link can pull in a whole other data set, or loop back on itself.
    bool followSymlinks = false;
};

// .tif .tiff .png .jpg .jpeg .bmp, case-insensitive; hidden names (".png") are not images.
bool isImageFileName(const std::string &path);

// "flat", "class", "patient", "diagnosis-patient" (case-insensitive, surrounding spaces ignored).
Result<FolderLayout> parseLayout(const std::string &name);
// The inverse of parseLayout, for command lines and saved projects.
const char *layoutName(FolderLayout layout);

Result<ScanResult> scanFolder(const std::string &root, const ScanOptions &options = {});

// CSV manifest, one image per row. Column names are matched case-insensitively, with spaces
// and '-' read as '_' ("Patient ID" == patient_id):
//   path (or file, filename, image)       required; relative paths are resolved against the
//                                          manifest's folder
//   patient (or patient_id, patient_code) optional
//   class (or label, cell_type)           optional
//   diagnosis                             optional
// Every other column becomes metadata under its header name, in column order. Files are not
// checked for existence here; that happens when they are decoded. Row issues name the file
// and line ("manifest.csv line 7: 3 fields, header has 4").
Result<ScanResult> readManifest(const std::string &csvPath);

// Patient table: patient (or patient_id, patient_code, code) required; diagnosis (or label,
// subtype) optional; other columns metadata. Rows with the wrong number of fields, an empty
// code or a repeated code are skipped and reported in *issues when it is given.
struct PatientRow {
    std::string code;
    std::string diagnosis;
    std::vector<std::pair<std::string, std::string>> metadata;
};
Result<std::vector<PatientRow>> readPatientTable(const std::string &csvPath,
                                                 std::vector<ScanIssue> *issues = nullptr);

// CSV reading lives in core/io (io/Csv.h); kept here under its old names for callers.
using io::CsvTable;
using io::parseCsv;

} // namespace cytosae::pipeline
