#pragma once

// A demo cohort of synthetic patients: five diagnostic groups whose differentials differ the
// way real ones do (APL: atypical promyelocytes with Auer rods and faggots; AML: myeloblasts,
// some with single Auer rods; CML-like:
// left shift with eosinophils and basophils; monocytic: monocytes, many vacuolated), written
// to disk in the patient-per-folder layout the importer reads, with a manifest and optionally
// the ground-truth part masks. Deterministic: the same arguments write the same bytes.

#include "common/Result.h"
#include "demo/SyntheticCells.h"

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace cytosae::demo {

struct PatientSpec {
    std::string code;            // "CTL01", "APL03", ...; also the folder name
    std::string diagnosis;       // "control", "APL", "AML_blast", "CML_like", "monocytic"
    std::vector<double> cellMix; // kCellTypeCount probabilities indexed by CellType, summing to 1
    int cells = 0;
    uint64_t seed = 0;
};

// The five groups in cohort order, with their code prefixes ("CTL", "APL", "AMB", "CML", "MON").
struct DemoGroup {
    const char *diagnosis;
    const char *codePrefix;
};
const std::vector<DemoGroup> &demoGroups();

// The group's typical differential before per-patient variation; empty for an unknown name.
std::vector<double> baseCellMix(const std::string &diagnosis);

// patientsPerGroup patients for each group (codes numbered from 01), each with its own
// seeded variation of the group's mix. Types absent from a group's base mix stay absent
// (no atypical promyelocytes outside APL, for instance). Non-positive counts give an empty cohort or
// patients without cells.
std::vector<PatientSpec> demoCohort(int patientsPerGroup, int cellsPerPatient, uint64_t seed);

// The type and generator seed of a patient's image `index`, exactly as writeDemoCohort
// draws them: the seed is derived from (patient seed, index) and the type from that seed, so
// every image can be regenerated on its own.
struct CohortImage {
    CellType type = CellType::SegmentedNeutrophil;
    uint64_t seed = 0;
};
CohortImage cohortImage(const PatientSpec &patient, int index);

struct CohortWriteOptions {
    int cellSize = 144; // 32 ... 1024
    bool writeMasks = false;
};

// Writes
//   root/<patient>/<patient>_<index>_<celltype>.png   (index zero-padded to 4 digits or more)
//   root/patients.csv   patient,diagnosis
//   root/manifest.csv   path,patient,class,diagnosis,seed   (path relative to root, '/'-separated)
//   root/masks/<same stem>_<part>.png                  with writeMasks, only parts present
// Existing files of the same names are overwritten; nothing else in root is touched.
// progress(done, total) is called after each image. When *cancel becomes true the writer
// stops before the next image and still writes both CSVs for what exists, so a cancelled
// cohort is consistent; the count tells how far it got.
// Returns the number of images written. Errors name the path (or the patient) at fault.
Result<int> writeDemoCohort(const std::string &root, const std::vector<PatientSpec> &patients,
                            const CohortWriteOptions &options, const std::function<void(int, int)> &progress = {},
                            const std::atomic<bool> *cancel = nullptr);

} // namespace cytosae::demo
