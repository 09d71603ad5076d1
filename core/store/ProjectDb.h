#pragma once

// The project database: one SQLite file per project (schema in docs/database.md). WAL mode,
// foreign keys on, schema version in PRAGMA user_version with forward migrations.
//
// Threads: a ProjectDb is one connection and must be used by one thread at a time. Open
// one per thread (the pipeline's writer has its own; views open a read connection); WAL lets
// readers work while a run writes.

#include "common/Result.h"
#include "store/ActivationCodec.h"
#include "store/Sqlite.h"

#include <cstdint>
#include <functional>
#include <optional>
#include <unordered_map>
#include <string>
#include <vector>

namespace cytosae::store {

constexpr int kSchemaVersion = 4;

using Metadata = std::vector<std::pair<std::string, std::string>>;

struct ModelRecord {
    int64_t id = 0;
    std::string kind; // "vit" or "sae"
    std::string sha256;
    std::string path;
    std::string configJson;
};

struct RunRecord {
    int64_t id = 0;
    int64_t vitId = 0, saeId = 0;
    int topK = 0;
    double patchThreshold = 0.2;
    int dSae = 0;
    std::string device;
    // fp32 or bf16: what the run's results were computed in; "auto" while a Precision::Auto
    // run has not decided yet (its first batch not done). Runs before schema 4 are fp32.
    std::string precision = "fp32";
    std::string status; // running, done, cancelled, failed
    std::string startedAt, finishedAt;
    int64_t imagesDone = 0;
};

struct NewImage {
    std::string path;
    std::string sha256;
    int64_t fileSize = 0;
    int width = 0, height = 0, channels = 0, bitDepth = 0;
    std::string patientCode;
    std::string className;
    std::string diagnosis; // applied to the patient when given
    bool ok = true;
    std::string qcReason; // why rejected, or notes for accepted images
    Metadata metadata;
};

struct ImageRecord {
    int64_t id = 0;
    std::string path;
    std::string sha256;
    int width = 0, height = 0;
    int64_t patientId = 0; // 0: none
    std::string patientCode;
    std::string diagnosis;
    std::string className;
    std::string qcStatus;
    std::string qcReason;
};

struct PatientRecord {
    int64_t id = 0;
    std::string code;
    std::string diagnosis;
    int64_t cells = 0;
};

// What the pipeline writes for one image of a run.
struct ImageResultRow {
    int64_t imageId = 0;
    float reconError = 0, reconMse = 0;
    std::vector<uint8_t> tokensBlob;      // encodeTokenTopK
    std::vector<ImageConcept> concepts;   // every active latent
    std::vector<float> cls;
};

struct CellHit {
    int64_t imageId = 0;
    float mean = 0, maxPatch = 0;
    int patches = 0;
};

struct CellFilter {
    int64_t patientId = 0;     // 0: any
    std::string className;     // empty: any
    std::string diagnosis;     // empty: any
};

struct ConceptStats {
    int32_t latent = 0;
    int64_t firingImages = 0;
    double firingFrequency = 0;
    std::optional<double> meanActivation;
    std::optional<double> labelEntropy;
    std::vector<int64_t> topImages;
    bool dead = false, dense = false, highMean = false;
};

// What `cytosae stats` prints about a project and one of its runs.
struct ProjectSummary {
    int64_t acceptedImages = 0, rejectedImages = 0, patients = 0;
    int64_t imagesWithResults = 0, failedImages = 0; // of the run
    int64_t statsRows = 0;                            // 0: statistics not computed yet
    int64_t alive = 0, dead = 0, dense = 0, highMean = 0;
    std::vector<ConceptStats> mostFrequent; // alive latents by firing frequency (no top images)
};

struct FingerprintEntry {
    int32_t latent = 0;
    int64_t cells = 0;   // cells of the patient in which the latent is active
    double fraction = 0; // cells / patient's cells
};

struct ImportCounts {
    int64_t added = 0, alreadyPresent = 0, rejected = 0;
};

// Smear fields (schema 3): a smear and the cells detected in it, each cell an image row.
struct NewSmear {
    std::string path;
    std::string sha256;
    int64_t fileSize = 0;
    int width = 0, height = 0;
    double micronsPerPixel = 0;
    std::string patientCode;
    std::string diagnosis;
    bool ok = true;
    std::string qcReason;
    std::string detectorJson; // detector settings, for reproducibility
};

struct SmearCellLink {
    std::string imagePath; // the cell's crop, already added with addImages
    int x = 0, y = 0, w = 0, h = 0; // box in smear pixels
    float score = 0;
};

struct SmearRecord {
    int64_t id = 0;
    std::string path;
    int width = 0, height = 0;
    double micronsPerPixel = 0;
    int64_t patientId = 0;
    std::string patientCode;
    std::string qcStatus, qcReason;
    int64_t cells = 0;
};

struct SmearCell {
    int64_t imageId = 0;
    int x = 0, y = 0, w = 0, h = 0;
    float score = 0;
};

class ProjectDb {
public:
    enum class OpenMode { Create, Existing, ReadOnly };
    // Before anything is read or written, SQLite's quick_check reads the whole file (about
    // 0.5 GB/s); a damaged file is refused with a message and not changed. Trusted skips the
    // check: for a second connection to a file this process has checked, or where the check
    // runs in the background (the explorer) and writes wait for its result.
    enum class Verify { Full, Trusted };
    // Create makes the file when missing; Existing refuses a missing file. A file written by a
    // newer version, or that is not a project database, is refused with a message. An older
    // schema is upgraded in place after a backup copy (upgradeBackup()).
    static Result<ProjectDb> open(const std::string &path, OpenMode mode, Verify verify = Verify::Full);
    // The schema version of a project file, read without changing it (0: a new, empty file).
    static Result<int> schemaVersionOf(const std::string &path);

    const std::string &path() const { return m_path; }
    // The copy of the file made before this open upgraded its schema; empty when none was made.
    const std::string &upgradeBackup() const { return m_upgradeBackup; }
    // PRAGMA quick_check: "ok", or SQLite's list of problems (reads the whole file: seconds on
    // a large project, so the GUI runs it in the background after opening).
    Result<std::string> quickCheck();
    Database &db() { return m_db; }
    int schemaVersion() const { return m_schemaVersion; }

    // ---- models and runs ----
    Result<int64_t> upsertModel(const std::string &kind, const std::string &sha256, const std::string &path,
                                const std::string &configJson);
    Result<ModelRecord> model(int64_t id);
    Result<int64_t> createRun(int64_t vitId, int64_t saeId, int topK, double threshold, int dSae,
                              const std::string &device, const std::string &precision = "fp32");
    // The newest run with these models and settings (to resume it). `precision` "fp32" or
    // "bf16" only matches runs computed in it; "" matches any (an undecided Precision::Auto
    // continues in the run's precision).
    Result<std::optional<RunRecord>> resumableRun(int64_t vitId, int64_t saeId, int topK, double threshold,
                                                  const std::string &precision = "");
    // Records the precision a Precision::Auto run settled on.
    Status setRunPrecision(int64_t runId, const std::string &precision);
    Status setRunStatus(int64_t runId, const std::string &status);
    Result<RunRecord> run(int64_t runId);
    // The newest finished run, else the newest run; nullopt when there is none.
    Result<std::optional<RunRecord>> latestRun();

    // ---- import ----
    Result<int64_t> upsertPatient(const std::string &code, const std::string &diagnosis, const Metadata &metadata);
    // Adds images in one transaction; images whose path is already present are left as they are.
    Result<ImportCounts> addImages(const std::vector<NewImage> &images);
    Result<std::vector<std::string>> allImagePaths();

    // ---- a run ----
    // Accepted images without results in this run, in id order.
    Result<std::vector<ImageRecord>> pendingImages(int64_t runId);
    // One transaction: results, their concept rows, failures, and the run's counter.
    Status writeResults(int64_t runId, const std::vector<ImageResultRow> &rows,
                        const std::vector<std::pair<int64_t, std::string>> &failures);
    // Per-latent statistics of a run (docs/reference.md, Per-latent statistics), replacing earlier ones.
    Status computeStats(int64_t runId, const std::function<void(double)> &progress = {});

    // ---- queries (index lookups) ----
    Result<std::vector<CellHit>> topCells(int64_t runId, int32_t latent, int limit, const CellFilter &filter = {});
    // perBin cells from each of `bins` equal-count activation bins (strongest bin first), seeded.
    Result<std::vector<std::vector<CellHit>>> quantileSample(int64_t runId, int32_t latent, int bins, int perBin,
                                                             uint64_t seed, const CellFilter &filter = {});
    Result<std::vector<ImageConcept>> conceptsOfImage(int64_t runId, int64_t imageId);
    Result<TokenTopK> tokensOfImage(int64_t runId, int64_t imageId);
    Result<std::vector<TokenLatent>> conceptsOfToken(int64_t runId, int64_t imageId, int token);
    Result<std::vector<float>> clsOfImage(int64_t runId, int64_t imageId);
    // Fraction of the patient's cells in which each latent is active (a patch above the run's
    // threshold, or above the latent's own validated threshold when `thresholds` has one).
    Result<std::vector<FingerprintEntry>> patientFingerprint(int64_t runId, int64_t patientId, int64_t *cellCount,
                                                             const std::unordered_map<int32_t, float> &thresholds = {});
    Result<std::optional<ConceptStats>> conceptStats(int64_t runId, int32_t latent);
    Result<ImageRecord> image(int64_t imageId);
    Result<float> reconError(int64_t runId, int64_t imageId);
    // A patient's accepted images (id, path, class), in id order.
    Result<std::vector<ImageRecord>> patientImages(int64_t patientId, int limit);
    // Accepted cells per class of a patient, most frequent first ("(none)" for unlabelled).
    Result<std::vector<std::pair<std::string, int64_t>>> classCounts(int64_t patientId);
    Result<std::vector<std::string>> classes();
    Result<std::vector<std::string>> diagnoses();
    Result<int64_t> acceptedImageCount();
    // Every latent's statistics of a run (top images not filled in), in latent order.
    Result<std::vector<ConceptStats>> allConceptStats(int64_t runId);
    // (mean, max over patches) of every image in which the latent fires.
    Result<std::vector<std::pair<float, float>>> latentValues(int64_t runId, int32_t latent);
    Result<std::vector<PatientRecord>> patients();
    // Every accepted cell with results in the run, in one query ordered by patient then image:
    // fn(patientId (0: none), imageId, its concepts); fn returns false to stop. For cohort-wide
    // analyses (core/analysis) that must not issue one query per patient.
    Status forEachCellConcepts(int64_t runId,
                               const std::function<bool(int64_t, int64_t, const std::vector<ImageConcept> &)> &fn);
    // The same for each cell's per-token top-k latents (token 0 is the CLS token).
    Status forEachCellTokens(int64_t runId, const std::function<bool(int64_t, int64_t, const TokenTopK &)> &fn);
    // The same for the CLS embeddings (cells without one are skipped).
    Status forEachCellCls(int64_t runId,
                          const std::function<bool(int64_t, int64_t, const std::vector<float> &)> &fn);
    Result<int64_t> count(const std::string &sqlCountQuery);
    // Counts of the project and of a run, and its `mostFrequent` most frequent alive latents.
    Result<ProjectSummary> summary(int64_t runId, int mostFrequent = 10);

    // ---- smear fields ----
    Result<std::optional<int64_t>> smearIdByPath(const std::string &path);
    // One transaction: the smear row and the links of its cells (whose image rows exist).
    Result<int64_t> addSmear(const NewSmear &smear, const std::vector<SmearCellLink> &cells);
    Result<std::vector<SmearRecord>> smears();
    Result<SmearRecord> smear(int64_t smearId);
    Result<std::vector<SmearCell>> smearCells(int64_t smearId);
    // (image, max over patches) of the smear's cells in which the latent fires.
    Result<std::vector<std::pair<int64_t, float>>> smearCellActivations(int64_t runId, int64_t smearId, int32_t latent);
    // The smear a cell was detected in; 0 for single-cell images.
    Result<int64_t> smearOfImage(int64_t imageId);

private:
    ProjectDb() = default;
    Status backupBeforeUpgrade();
    Status migrate();

    Database m_db;
    std::string m_path;
    int m_schemaVersion = 0;
    bool m_readOnly = false;
    std::string m_upgradeBackup;
};

// The message for a project file that SQLite's check finds damaged (`problems`: its report).
std::string damagedProjectMessage(const std::string &problems);
// The lines of an integrity_check row, without the "*** in database" header and with the
// "Page N is never used" lines (no data lost) counted in one last line.
std::vector<std::string> integrityLines(const std::string &text);

std::string metadataJson(const Metadata &metadata);

} // namespace cytosae::store
