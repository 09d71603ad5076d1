#include "store/ProjectDb.h"

#include "io/JsonWriter.h"
#include "store/IdList.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <map>
#include <random>
#include <sstream>
#include <unordered_map>

namespace cytosae::store {

namespace {

#define APPEND_ONLY(table)                                                                              \
    "CREATE TRIGGER " table "_append_only_u BEFORE UPDATE ON " table                                   \
    " BEGIN SELECT RAISE(ABORT, '" table " is append-only'); END;"                                      \
    "CREATE TRIGGER " table "_append_only_d BEFORE DELETE ON " table                                   \
    " BEGIN SELECT RAISE(ABORT, '" table " is append-only'); END;"

// Forward migrations: entry i takes the schema from version i to i + 1.
const char *const kMigrations[] = {
    // 0 -> 1
    R"SQL(
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE model(
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('vit', 'sae')),
    sha256 TEXT NOT NULL,
    path TEXT NOT NULL,
    config TEXT NOT NULL DEFAULT '{}',
    added_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    UNIQUE (kind, sha256));
CREATE TABLE run(
    id INTEGER PRIMARY KEY,
    vit_id INTEGER NOT NULL REFERENCES model(id),
    sae_id INTEGER NOT NULL REFERENCES model(id),
    top_k INTEGER NOT NULL,
    patch_threshold REAL NOT NULL,
    d_sae INTEGER NOT NULL,
    device TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL CHECK (status IN ('running', 'done', 'cancelled', 'failed')),
    started_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    finished_at TEXT,
    images_done INTEGER NOT NULL DEFAULT 0,
    stats_at TEXT);
CREATE TABLE patient(
    id INTEGER PRIMARY KEY,
    code TEXT NOT NULL UNIQUE,
    diagnosis TEXT,
    metadata TEXT NOT NULL DEFAULT '{}');
CREATE TABLE image(
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    sha256 TEXT,
    file_size INTEGER,
    width INTEGER,
    height INTEGER,
    channels INTEGER,
    bit_depth INTEGER,
    patient_id INTEGER REFERENCES patient(id),
    class TEXT,
    qc_status TEXT NOT NULL CHECK (qc_status IN ('ok', 'rejected')),
    qc_reason TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    imported_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')));
CREATE INDEX image_patient ON image(patient_id);
CREATE INDEX image_class ON image(class);
CREATE INDEX image_sha256 ON image(sha256);
CREATE TABLE activation(
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES run(id) ON DELETE CASCADE,
    image_id INTEGER NOT NULL REFERENCES image(id) ON DELETE CASCADE,
    recon_error REAL,
    recon_mse REAL,
    n_active INTEGER NOT NULL,
    concepts BLOB NOT NULL,
    UNIQUE (run_id, image_id));
CREATE INDEX activation_image ON activation(image_id);
-- The large per-image blobs live in their own tables so that reading a cell's concepts (the
-- fingerprint reads 1,000 of them) never walks through token overflow pages.
CREATE TABLE activation_tokens(
    activation_id INTEGER PRIMARY KEY REFERENCES activation(id) ON DELETE CASCADE,
    tokens BLOB NOT NULL);
CREATE TABLE activation_cls(
    activation_id INTEGER PRIMARY KEY REFERENCES activation(id) ON DELETE CASCADE,
    cls BLOB NOT NULL);
CREATE TABLE image_concept(
    run_id INTEGER NOT NULL,
    latent INTEGER NOT NULL,
    mean REAL NOT NULL,
    image_id INTEGER NOT NULL,
    max_patch REAL NOT NULL,
    n_patches INTEGER NOT NULL,
    PRIMARY KEY (run_id, latent, mean, image_id)) WITHOUT ROWID;
CREATE TABLE run_error(
    run_id INTEGER NOT NULL REFERENCES run(id) ON DELETE CASCADE,
    image_id INTEGER NOT NULL REFERENCES image(id) ON DELETE CASCADE,
    message TEXT NOT NULL,
    at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    PRIMARY KEY (run_id, image_id));
CREATE TABLE concept_stats(
    run_id INTEGER NOT NULL REFERENCES run(id) ON DELETE CASCADE,
    latent INTEGER NOT NULL,
    firing_images INTEGER NOT NULL,
    firing_freq REAL NOT NULL,
    mean_activation REAL,
    label_entropy REAL,
    top_images TEXT NOT NULL DEFAULT '[]',
    dead INTEGER NOT NULL,
    dense INTEGER NOT NULL,
    high_mean INTEGER NOT NULL,
    PRIMARY KEY (run_id, latent)) WITHOUT ROWID;
INSERT INTO meta(key, value) VALUES ('application', 'CytoSAE Explorer');
)SQL",
    // 1 -> 2: the annotation ledger (issue 6). Append-only tables refuse UPDATE and DELETE
    // through triggers; every row carries a uid so that exports can be re-imported losslessly
    // (and idempotently) into another project.
    R"SQL(
CREATE TABLE concept_group(
    id INTEGER PRIMARY KEY,
    uid TEXT NOT NULL UNIQUE,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL);
CREATE TABLE concept_group_version(
    id INTEGER PRIMARY KEY,
    uid TEXT NOT NULL UNIQUE,
    group_uid TEXT NOT NULL REFERENCES concept_group(uid),
    version INTEGER NOT NULL,
    name TEXT NOT NULL,
    latents TEXT NOT NULL,
    author TEXT NOT NULL,
    at TEXT NOT NULL,
    vit_sha256 TEXT NOT NULL,
    sae_sha256 TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    UNIQUE (group_uid, version));
CREATE TABLE concept_label(
    id INTEGER PRIMARY KEY,
    uid TEXT NOT NULL UNIQUE,
    concept TEXT NOT NULL,
    label TEXT NOT NULL,
    controlled INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('proposed', 'validated', 'rejected', 'deprecated', 'retracted')),
    author TEXT NOT NULL,
    at TEXT NOT NULL,
    evidence TEXT NOT NULL DEFAULT '[]',
    note TEXT NOT NULL DEFAULT '',
    vit_sha256 TEXT NOT NULL,
    sae_sha256 TEXT NOT NULL);
CREATE INDEX concept_label_concept ON concept_label(concept, id);
CREATE TABLE concept_flag(
    id INTEGER PRIMARY KEY,
    uid TEXT NOT NULL UNIQUE,
    concept TEXT NOT NULL,
    threshold REAL NOT NULL,
    active INTEGER NOT NULL,
    author TEXT NOT NULL,
    at TEXT NOT NULL,
    vit_sha256 TEXT NOT NULL,
    sae_sha256 TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '');
CREATE INDEX concept_flag_concept ON concept_flag(concept, id);
CREATE TABLE concept_threshold(
    id INTEGER PRIMARY KEY,
    uid TEXT NOT NULL UNIQUE,
    concept TEXT NOT NULL,
    threshold REAL NOT NULL,
    target_precision REAL NOT NULL,
    task_uid TEXT NOT NULL,
    author TEXT NOT NULL,
    at TEXT NOT NULL,
    vit_sha256 TEXT NOT NULL,
    sae_sha256 TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '');
CREATE INDEX concept_threshold_concept ON concept_threshold(concept, id);
CREATE TABLE annotation_task(
    id INTEGER PRIMARY KEY,
    uid TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('precision', 'agreement')),
    concept TEXT NOT NULL,
    bins INTEGER NOT NULL,
    per_bin INTEGER NOT NULL,
    negatives INTEGER NOT NULL,
    threshold REAL NOT NULL,
    seed INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    at TEXT NOT NULL,
    vit_sha256 TEXT NOT NULL,
    sae_sha256 TEXT NOT NULL);
CREATE TABLE annotation_item(
    task_uid TEXT NOT NULL REFERENCES annotation_task(uid),
    position INTEGER NOT NULL,
    image_id INTEGER NOT NULL REFERENCES image(id),
    bin INTEGER NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (task_uid, position)) WITHOUT ROWID;
CREATE TABLE annotation_answer(
    id INTEGER PRIMARY KEY,
    uid TEXT NOT NULL UNIQUE,
    task_uid TEXT NOT NULL REFERENCES annotation_task(uid),
    position INTEGER NOT NULL,
    annotator TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('rater', 'adjudicator')),
    answer TEXT NOT NULL CHECK (answer IN ('hit', 'miss')),
    at TEXT NOT NULL);
CREATE INDEX annotation_answer_task ON annotation_answer(task_uid, position, annotator, id);
CREATE TABLE review(
    id INTEGER PRIMARY KEY,
    uid TEXT NOT NULL UNIQUE,
    flag_uid TEXT NOT NULL REFERENCES concept_flag(uid),
    image_id INTEGER NOT NULL REFERENCES image(id),
    decision TEXT NOT NULL CHECK (decision IN ('confirmed', 'rejected')),
    reviewer TEXT NOT NULL,
    at TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '');
CREATE INDEX review_flag_image ON review(flag_uid, image_id, id);
CREATE TABLE review_signoff(
    id INTEGER PRIMARY KEY,
    uid TEXT NOT NULL UNIQUE,
    flag_uid TEXT NOT NULL REFERENCES concept_flag(uid),
    patient_id INTEGER NOT NULL REFERENCES patient(id),
    reviewer TEXT NOT NULL,
    at TEXT NOT NULL,
    candidates INTEGER NOT NULL,
    confirmed INTEGER NOT NULL,
    vit_sha256 TEXT NOT NULL,
    sae_sha256 TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '');
)SQL"
    // One trigger pair per append-only table (generated below to keep them identical).
    APPEND_ONLY("concept_group") APPEND_ONLY("concept_group_version") APPEND_ONLY("concept_label")
    APPEND_ONLY("concept_flag") APPEND_ONLY("concept_threshold") APPEND_ONLY("annotation_task")
    APPEND_ONLY("annotation_item") APPEND_ONLY("annotation_answer") APPEND_ONLY("review")
    APPEND_ONLY("review_signoff"),
    // 2 -> 3: smear fields and the cells detected in them (issue 8).
    R"SQL(
CREATE TABLE smear(
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    sha256 TEXT,
    file_size INTEGER,
    width INTEGER,
    height INTEGER,
    microns_per_pixel REAL,
    patient_id INTEGER REFERENCES patient(id),
    qc_status TEXT NOT NULL CHECK (qc_status IN ('ok', 'rejected')),
    qc_reason TEXT,
    cells INTEGER NOT NULL DEFAULT 0,
    detector TEXT NOT NULL DEFAULT '{}',
    imported_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')));
CREATE INDEX smear_patient ON smear(patient_id);
ALTER TABLE image ADD COLUMN smear_id INTEGER REFERENCES smear(id) ON DELETE SET NULL;
ALTER TABLE image ADD COLUMN box_x INTEGER;
ALTER TABLE image ADD COLUMN box_y INTEGER;
ALTER TABLE image ADD COLUMN box_w INTEGER;
ALTER TABLE image ADD COLUMN box_h INTEGER;
ALTER TABLE image ADD COLUMN detection_score REAL;
CREATE INDEX image_smear ON image(smear_id);
)SQL",
    // 3 -> 4: the precision a run was computed in (issue 17); every earlier run was fp32.
    R"SQL(
ALTER TABLE run ADD COLUMN precision TEXT NOT NULL DEFAULT 'fp32';
)SQL",
};
constexpr int kMigrationCount = int(sizeof(kMigrations) / sizeof(kMigrations[0]));
#undef APPEND_ONLY
static_assert(kMigrationCount == kSchemaVersion, "one migration per schema version");

// Statistics thresholds (documented in docs/database.md).
constexpr double kDenseFrequency = 0.5; // fires in more than half of the images
constexpr double kHighMean = 0.1;       // the paper's noise filter: mean activation > 0.1

} // namespace

std::string metadataJson(const Metadata &metadata)
{
    std::ostringstream out;
    io::JsonWriter json(out, false);
    json.beginObject();
    for (const auto &[k, v] : metadata)
        json.key(k).value(v);
    json.endObject();
    return out.str();
}

std::vector<std::string> integrityLines(const std::string &text)
{
    // One row can hold several lines; "Page N is never used" (free space SQLite lost track
    // of, no data) is summarised after the problems that matter.
    std::vector<std::string> lines;
    int unused = 0;
    size_t start = 0;
    while (start <= text.size()) {
        size_t end = text.find('\n', start);
        if (end == std::string::npos)
            end = text.size();
        std::string line = text.substr(start, end - start);
        if (line.rfind("Page ", 0) == 0 && line.size() > 14 && line.compare(line.size() - 14, 14, " is never used") == 0)
            ++unused;
        else if (!line.empty() && line != "*** in database main ***")
            lines.push_back(std::move(line));
        start = end + 1;
    }
    if (unused)
        lines.push_back(std::to_string(unused) + " page(s) never used (lost free space, no data)");
    return lines;
}

std::string damagedProjectMessage(const std::string &problems)
{
    std::string first = problems.substr(0, problems.find("; "));
    if (first.size() > 200)
        first = first.substr(0, 200) + "...";
    const size_t more = problems.empty() ? 0 : size_t(std::count(problems.begin(), problems.end(), ';'));
    return "the project file is damaged: SQLite's check reports \"" + first + "\"" +
           (more ? " and " + std::to_string(more) + " more problem(s)" : std::string()) +
           "; nothing was changed. Restore it from a copy (or the .bak file an upgrade left beside it); "
           "'cytosae check PROJECT' lists what is affected";
}

Result<int> ProjectDb::schemaVersionOf(const std::string &path)
{
    std::error_code ec;
    if (!std::filesystem::exists(path, ec))
        return Error("project file not found");
    auto db = Database::open(path, Database::Mode::ReadOnly);
    if (!db)
        return db.error();
    auto version = db->queryInt("PRAGMA user_version");
    if (!version)
        return Error("not a CytoSAE project database (" + version.message() + ")");
    return int(*version);
}

Result<ProjectDb> ProjectDb::open(const std::string &path, OpenMode mode, Verify verify)
{
    std::error_code ec;
    const bool exists = std::filesystem::exists(path, ec);
    if (!exists && mode != OpenMode::Create)
        return Error("project file not found");
    if (exists && std::filesystem::is_directory(path, ec))
        return Error("is a folder, not a project file");
    auto db = Database::open(path, mode == OpenMode::ReadOnly   ? Database::Mode::ReadOnly
                                   : mode == OpenMode::Create ? Database::Mode::ReadWriteCreate
                                                              : Database::Mode::ReadWrite);
    if (!db)
        return db.error();
    ProjectDb p;
    p.m_db = std::move(db.value());
    p.m_path = path;
    p.m_readOnly = mode == OpenMode::ReadOnly;

    // Reading the header tells a foreign or damaged file apart before anything is written.
    auto version = p.m_db.queryInt("PRAGMA user_version");
    if (!version)
        return Error("not a CytoSAE project database (" + version.message() + ")");
    auto tables = p.m_db.queryInt("SELECT count(*) FROM sqlite_master");
    if (!tables)
        return isDamagedMessage(tables.message()) ? Error(damagedProjectMessage(tables.message()))
                                                  : Error("not a CytoSAE project database (" + tables.message() + ")");
    if (*version == 0 && *tables > 0)
        return Error("not a CytoSAE project database (an SQLite file with other tables)");
    if (*version > kSchemaVersion)
        return Error("this project was written by a newer CytoSAE Explorer (schema " + std::to_string(*version) +
                     ", this version reads up to " + std::to_string(kSchemaVersion) + "); it was not changed");
    p.m_schemaVersion = int(*version);

    if (Status s = p.m_db.exec("PRAGMA foreign_keys = ON"); !s)
        return s.error();
    // The whole file is read first: a damaged project must never be changed, nor read as if
    // it were whole (SQLite only notices damage on the pages a statement happens to touch).
    if (*tables > 0 && verify == Verify::Full) {
        auto check = p.quickCheck();
        if (!check)
            return isDamagedMessage(check.message()) ? Error(damagedProjectMessage(check.message())) : check.error();
        if (*check != "ok")
            return Error(damagedProjectMessage(*check));
    }
    if (!p.m_readOnly) {
        if (p.m_schemaVersion > 0 && p.m_schemaVersion < kSchemaVersion)
            if (Status s = p.backupBeforeUpgrade(); !s)
                return s.error();
        // WAL: readers (views) never block the writer; NORMAL sync keeps every committed
        // transaction across an application crash.
        if (Status s = p.m_db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL"); !s)
            return s.error();
        if (Status s = p.migrate(); !s)
            return s.error();
    } else if (p.m_schemaVersion < kSchemaVersion) {
        return Error("this project needs an upgrade (schema " + std::to_string(p.m_schemaVersion) +
                     "); open it once for writing");
    }
    (void)p.m_db.exec("PRAGMA temp_store = MEMORY; PRAGMA cache_size = -65536"); // tuning only
    return p;
}

Result<std::string> ProjectDb::quickCheck()
{
    auto q = m_db.prepare("PRAGMA quick_check(20)");
    if (!q)
        return q.error();
    std::vector<std::string> lines;
    while (q->step())
        for (auto &line : integrityLines(q->columnText(0)))
            lines.push_back(std::move(line));
    if (Status s = q->status(); !s)
        return s.error();
    std::string out;
    for (const auto &line : lines)
        out += (out.empty() ? "" : "; ") + line;
    return out;
}

// A consistent copy of the file as it is (SQLite's online backup, which includes what the
// WAL holds) beside it, named after the schema it had: PROJECT.schemaN.bak, or .schemaN-2.bak
// when that exists.
Status ProjectDb::backupBeforeUpgrade()
{
    std::string target;
    for (int i = 1; i < 1000 && target.empty(); ++i) {
        const std::string candidate =
            m_path + ".schema" + std::to_string(m_schemaVersion) + (i > 1 ? "-" + std::to_string(i) : "") + ".bak";
        std::error_code ec;
        if (!std::filesystem::exists(candidate, ec) && !ec)
            target = candidate;
    }
    if (target.empty())
        return Error("cannot choose a name for the backup before the schema upgrade");
    auto copy = Database::open(target, Database::Mode::ReadWriteCreate);
    if (!copy)
        return Error("cannot back up the project before upgrading it (" + copy.message() + "); it was not changed");
    const Status s = copyDatabase(m_db, *copy);
    if (!s) {
        std::error_code ec;
        std::filesystem::remove(target, ec);
        return Error("cannot back up the project to " + target + " before upgrading it (" + s.message() +
                     "); it was not changed");
    }
    m_upgradeBackup = target;
    return Status::success();
}

Status ProjectDb::migrate()
{
    while (m_schemaVersion < kSchemaVersion) {
        if (Status s = m_db.begin(); !s)
            return s;
        Status s = m_db.exec(kMigrations[m_schemaVersion]);
        if (s)
            s = m_db.exec("PRAGMA user_version = " + std::to_string(m_schemaVersion + 1));
        if (s)
            s = m_db.commit();
        if (!s) {
            m_db.rollback();
            return Error("cannot upgrade the project database to schema " + std::to_string(m_schemaVersion + 1) +
                         ": " + s.message());
        }
        ++m_schemaVersion;
    }
    return Status::success();
}

// ---- models and runs -----------------------------------------------------------------------

Result<int64_t> ProjectDb::upsertModel(const std::string &kind, const std::string &sha256, const std::string &path,
                                       const std::string &configJson)
{
    auto ins = m_db.prepare("INSERT INTO model(kind, sha256, path, config) VALUES (?, ?, ?, ?) "
                            "ON CONFLICT(kind, sha256) DO UPDATE SET path = excluded.path");
    if (!ins)
        return ins.error();
    ins->bind(1, kind).bind(2, sha256).bind(3, path).bind(4, configJson);
    if (Status s = ins->exec(); !s)
        return s.error();
    auto q = m_db.prepare("SELECT id FROM model WHERE kind = ? AND sha256 = ?");
    if (!q)
        return q.error();
    q->bind(1, kind).bind(2, sha256);
    if (!q->step())
        return Error("model row missing after insert");
    return q->columnInt(0);
}

Result<ModelRecord> ProjectDb::model(int64_t id)
{
    auto q = m_db.prepare("SELECT id, kind, sha256, path, config FROM model WHERE id = ?");
    if (!q)
        return q.error();
    q->bind(1, id);
    if (!q->step())
        return Error("no model " + std::to_string(id));
    return ModelRecord{q->columnInt(0), q->columnText(1), q->columnText(2), q->columnText(3), q->columnText(4)};
}

namespace {
const char *kRunColumns = "SELECT id, vit_id, sae_id, top_k, patch_threshold, d_sae, device, status, started_at, "
                          "coalesce(finished_at, ''), images_done, precision FROM run ";
RunRecord readRun(const Statement &q)
{
    RunRecord r;
    r.id = q.columnInt(0);
    r.vitId = q.columnInt(1);
    r.saeId = q.columnInt(2);
    r.topK = int(q.columnInt(3));
    r.patchThreshold = q.columnDouble(4);
    r.dSae = int(q.columnInt(5));
    r.device = q.columnText(6);
    r.status = q.columnText(7);
    r.startedAt = q.columnText(8);
    r.finishedAt = q.columnText(9);
    r.imagesDone = q.columnInt(10);
    r.precision = q.columnText(11);
    return r;
}
} // namespace

Result<int64_t> ProjectDb::createRun(int64_t vitId, int64_t saeId, int topK, double threshold, int dSae,
                                     const std::string &device, const std::string &precision)
{
    auto ins = m_db.prepare("INSERT INTO run(vit_id, sae_id, top_k, patch_threshold, d_sae, device, precision, status) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, 'running')");
    if (!ins)
        return ins.error();
    ins->bind(1, vitId).bind(2, saeId).bind(3, topK).bind(4, threshold).bind(5, dSae).bind(6, device).bind(7, precision);
    if (Status s = ins->exec(); !s)
        return s.error();
    return m_db.lastInsertId();
}

Result<std::optional<RunRecord>> ProjectDb::resumableRun(int64_t vitId, int64_t saeId, int topK, double threshold,
                                                         const std::string &precision)
{
    auto q = m_db.prepare(std::string(kRunColumns) +
                          "WHERE vit_id = ? AND sae_id = ? AND top_k = ? AND abs(patch_threshold - ?) < 1e-9 AND "
                          "(? = '' OR precision = ? OR precision = 'auto') ORDER BY id DESC LIMIT 1");
    if (!q)
        return q.error();
    q->bind(1, vitId).bind(2, saeId).bind(3, topK).bind(4, threshold).bind(5, precision).bind(6, precision);
    if (q->step())
        return std::optional<RunRecord>(readRun(*q));
    return std::optional<RunRecord>();
}

Status ProjectDb::setRunPrecision(int64_t runId, const std::string &precision)
{
    auto q = m_db.prepare("UPDATE run SET precision = ? WHERE id = ?");
    if (!q)
        return q.error();
    q->bind(1, precision).bind(2, runId);
    return q->exec();
}

Status ProjectDb::setRunStatus(int64_t runId, const std::string &status)
{
    auto q = m_db.prepare("UPDATE run SET status = ?, finished_at = CASE WHEN ? = 'running' THEN NULL ELSE "
                          "strftime('%Y-%m-%dT%H:%M:%SZ', 'now') END WHERE id = ?");
    if (!q)
        return q.error();
    q->bind(1, status).bind(2, status).bind(3, runId);
    return q->exec();
}


Result<RunRecord> ProjectDb::run(int64_t runId)
{
    auto q = m_db.prepare(std::string(kRunColumns) + "WHERE id = ?");
    if (!q)
        return q.error();
    q->bind(1, runId);
    if (!q->step())
        return Error("no run " + std::to_string(runId) + " in this project");
    return readRun(*q);
}

Result<std::optional<RunRecord>> ProjectDb::latestRun()
{
    auto q = m_db.prepare(std::string(kRunColumns) + "ORDER BY status = 'done' DESC, id DESC LIMIT 1");
    if (!q)
        return q.error();
    if (!q->step())
        return std::optional<RunRecord>();
    return std::optional<RunRecord>(readRun(*q));
}

// ---- import --------------------------------------------------------------------------------

Result<int64_t> ProjectDb::upsertPatient(const std::string &code, const std::string &diagnosis, const Metadata &metadata)
{
    auto ins = m_db.prepare(
        "INSERT INTO patient(code, diagnosis, metadata) VALUES (?, nullif(?, ''), ?) ON CONFLICT(code) DO UPDATE SET "
        "diagnosis = coalesce(nullif(excluded.diagnosis, ''), patient.diagnosis), "
        "metadata = CASE WHEN excluded.metadata = '{}' THEN patient.metadata ELSE excluded.metadata END");
    if (!ins)
        return ins.error();
    ins->bind(1, code).bind(2, diagnosis).bind(3, metadataJson(metadata));
    if (Status s = ins->exec(); !s)
        return s.error();
    auto q = m_db.prepare("SELECT id FROM patient WHERE code = ?");
    if (!q)
        return q.error();
    q->bind(1, code);
    if (!q->step())
        return Error("patient row missing after insert");
    return q->columnInt(0);
}

Result<ImportCounts> ProjectDb::addImages(const std::vector<NewImage> &images)
{
    ImportCounts counts;
    if (Status s = m_db.begin(); !s)
        return s.error();
    auto fail = [&](const Error &e) -> Result<ImportCounts> {
        m_db.rollback();
        return e;
    };
    auto ins = m_db.prepare("INSERT INTO image(path, sha256, file_size, width, height, channels, bit_depth, "
                            "patient_id, class, qc_status, qc_reason, metadata) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, nullif(?, ''), ?, nullif(?, ''), ?) "
                            "ON CONFLICT(path) DO NOTHING");
    if (!ins)
        return fail(ins.error());
    std::unordered_map<std::string, int64_t> patientIds;
    for (const NewImage &img : images) {
        int64_t patientId = 0;
        if (!img.patientCode.empty()) {
            auto it = patientIds.find(img.patientCode);
            if (it == patientIds.end() || !img.diagnosis.empty()) {
                auto id = upsertPatient(img.patientCode, img.diagnosis, {});
                if (!id)
                    return fail(id.error());
                it = patientIds.insert_or_assign(img.patientCode, *id).first;
            }
            patientId = it->second;
        }
        ins->reset();
        ins->bind(1, img.path);
        if (img.sha256.empty())
            ins->bindNull(2);
        else
            ins->bind(2, img.sha256);
        ins->bind(3, img.fileSize).bind(4, img.width).bind(5, img.height).bind(6, img.channels).bind(7, img.bitDepth);
        if (patientId)
            ins->bind(8, patientId);
        else
            ins->bindNull(8);
        ins->bind(9, img.className).bind(10, std::string(img.ok ? "ok" : "rejected")).bind(11, img.qcReason);
        ins->bind(12, metadataJson(img.metadata));
        if (Status s = ins->exec(); !s)
            return fail(Error(img.path + ": " + s.message()));
        if (m_db.changes() == 0)
            ++counts.alreadyPresent;
        else if (img.ok)
            ++counts.added;
        else
            ++counts.rejected;
    }
    if (Status s = m_db.commit(); !s)
        return fail(s.error());
    return counts;
}

Result<std::vector<std::string>> ProjectDb::allImagePaths()
{
    auto q = m_db.prepare("SELECT path FROM image");
    if (!q)
        return q.error();
    std::vector<std::string> out;
    while (q->step())
        out.push_back(q->columnText(0));
    if (Status s = q->status(); !s)
        return s.error();
    return out;
}

// ---- a run ---------------------------------------------------------------------------------

namespace {
const char *kImageColumns =
    "SELECT i.id, i.path, coalesce(i.sha256, ''), coalesce(i.width, 0), coalesce(i.height, 0), "
    "coalesce(i.patient_id, 0), coalesce(p.code, ''), coalesce(p.diagnosis, ''), coalesce(i.class, ''), "
    "i.qc_status, coalesce(i.qc_reason, '') FROM image i LEFT JOIN patient p ON p.id = i.patient_id ";
ImageRecord readImage(const Statement &q)
{
    ImageRecord r;
    r.id = q.columnInt(0);
    r.path = q.columnText(1);
    r.sha256 = q.columnText(2);
    r.width = int(q.columnInt(3));
    r.height = int(q.columnInt(4));
    r.patientId = q.columnInt(5);
    r.patientCode = q.columnText(6);
    r.diagnosis = q.columnText(7);
    r.className = q.columnText(8);
    r.qcStatus = q.columnText(9);
    r.qcReason = q.columnText(10);
    return r;
}
} // namespace

Result<std::vector<ImageRecord>> ProjectDb::pendingImages(int64_t runId)
{
    auto q = m_db.prepare(std::string(kImageColumns) +
                          "WHERE i.qc_status = 'ok' AND NOT EXISTS (SELECT 1 FROM activation a WHERE a.run_id = ? "
                          "AND a.image_id = i.id) ORDER BY i.id");
    if (!q)
        return q.error();
    q->bind(1, runId);
    std::vector<ImageRecord> out;
    while (q->step())
        out.push_back(readImage(*q));
    if (Status s = q->status(); !s)
        return s.error();
    return out;
}

Status ProjectDb::writeResults(int64_t runId, const std::vector<ImageResultRow> &rows,
                               const std::vector<std::pair<int64_t, std::string>> &failures)
{
    auto run = this->run(runId);
    if (!run)
        return run.error();
    const int32_t maxLatent = std::max(0, run->dSae - 1);
    if (Status s = m_db.begin(); !s)
        return s;
    auto fail = [&](const Error &e) -> Status {
        m_db.rollback();
        return e;
    };
    auto act = m_db.prepare("INSERT INTO activation(run_id, image_id, recon_error, recon_mse, n_active, concepts) "
                            "VALUES (?, ?, ?, ?, ?, ?)");
    auto tok = m_db.prepare("INSERT INTO activation_tokens(activation_id, tokens) VALUES (?, ?)");
    auto clsIns = m_db.prepare("INSERT INTO activation_cls(activation_id, cls) VALUES (?, ?)");
    auto con = m_db.prepare("INSERT INTO image_concept(run_id, latent, mean, image_id, max_patch, n_patches) "
                            "VALUES (?, ?, ?, ?, ?, ?)");
    auto clearError = m_db.prepare("DELETE FROM run_error WHERE run_id = ? AND image_id = ?");
    auto addError = m_db.prepare("INSERT OR REPLACE INTO run_error(run_id, image_id, message) VALUES (?, ?, ?)");
    if (!act || !tok || !clsIns || !con || !clearError || !addError)
        return fail(Error("cannot prepare the result statements"));
    for (const ImageResultRow &r : rows) {
        const std::vector<uint8_t> concepts = encodeConcepts(r.concepts, maxLatent);
        const std::vector<uint8_t> cls = encodeFloats(r.cls);
        act->reset();
        act->bind(1, runId).bind(2, r.imageId).bind(3, double(r.reconError)).bind(4, double(r.reconMse));
        act->bind(5, int64_t(r.concepts.size())).bindBlob(6, concepts.data(), concepts.size());
        if (Status s = act->exec(); !s)
            return fail(Error("image " + std::to_string(r.imageId) + ": " + s.message()));
        const int64_t activationId = m_db.lastInsertId();
        tok->reset();
        tok->bind(1, activationId).bindBlob(2, r.tokensBlob.data(), r.tokensBlob.size());
        if (Status s = tok->exec(); !s)
            return fail(s.error());
        if (!r.cls.empty()) {
            clsIns->reset();
            clsIns->bind(1, activationId).bindBlob(2, cls.data(), cls.size());
            if (Status s = clsIns->exec(); !s)
                return fail(s.error());
        }
        for (const ImageConcept &c : r.concepts) {
            con->reset();
            con->bind(1, runId).bind(2, int64_t(c.latent)).bind(3, double(c.mean)).bind(4, r.imageId);
            con->bind(5, double(c.maxPatch)).bind(6, int64_t(c.patchesAbove));
            if (Status s = con->exec(); !s)
                return fail(s.error());
        }
        clearError->reset();
        clearError->bind(1, runId).bind(2, r.imageId);
        if (Status s = clearError->exec(); !s)
            return fail(s.error());
    }
    for (const auto &[imageId, message] : failures) {
        addError->reset();
        addError->bind(1, runId).bind(2, imageId).bind(3, message);
        if (Status s = addError->exec(); !s)
            return fail(s.error());
    }
    auto upd = m_db.prepare("UPDATE run SET images_done = images_done + ? WHERE id = ?");
    if (!upd)
        return fail(upd.error());
    upd->bind(1, int64_t(rows.size())).bind(2, runId);
    if (Status s = upd->exec(); !s)
        return fail(s.error());
    if (Status s = m_db.commit(); !s)
        return fail(s.error());
    return Status::success();
}

Status ProjectDb::computeStats(int64_t runId, const std::function<void(double)> &progress)
{
    auto run = this->run(runId);
    if (!run)
        return run.error();
    auto total = count("SELECT count(*) FROM activation WHERE run_id = " + std::to_string(runId));
    if (!total)
        return total.error();
    std::unordered_map<int64_t, std::string> classOf;
    {
        auto q = m_db.prepare("SELECT id, class FROM image WHERE class IS NOT NULL");
        if (!q)
            return q.error();
        while (q->step())
            classOf.emplace(q->columnInt(0), q->columnText(1));
    }

    std::vector<ConceptStats> stats(size_t(std::max(0, run->dSae)));
    for (size_t l = 0; l < stats.size(); ++l)
        stats[l].latent = int32_t(l);
    // One pass in primary-key order (latent, mean ascending): the last rows are the top images.
    auto q = m_db.prepare("SELECT latent, mean, image_id FROM image_concept WHERE run_id = ? ORDER BY latent, mean");
    if (!q)
        return q.error();
    q->bind(1, runId);
    int32_t current = -1;
    double sum = 0;
    std::vector<std::pair<double, int64_t>> top; // ring of the last 10 (mean, image)
    auto flush = [&]() {
        if (current < 0 || current >= int32_t(stats.size()))
            return;
        ConceptStats &s = stats[size_t(current)];
        s.meanActivation = s.firingImages ? std::optional<double>(sum / double(s.firingImages)) : std::nullopt;
        std::sort(top.begin(), top.end(), [](auto &a, auto &b) { return a.first > b.first; });
        std::map<std::string, double> byLabel;
        double labelled = 0;
        for (const auto &[v, img] : top) {
            s.topImages.push_back(img);
            auto it = classOf.find(img);
            if (it != classOf.end()) {
                byLabel[it->second] += v;
                labelled += v;
            }
        }
        if (labelled > 0) {
            double h = 0;
            for (const auto &[label, v] : byLabel) {
                const double p = v / labelled;
                h -= p * std::log(p + 1e-9);
            }
            s.labelEntropy = h;
        }
    };
    int64_t rowsSeen = 0;
    while (q->step()) {
        const int32_t latent = int32_t(q->columnInt(0));
        const double mean = q->columnDouble(1);
        if (latent != current) {
            flush();
            current = latent;
            sum = 0;
            top.clear();
        }
        if (latent >= 0 && latent < int32_t(stats.size()) && mean > 0) {
            ++stats[size_t(latent)].firingImages;
            sum += mean;
            top.emplace_back(mean, q->columnInt(2));
            if (top.size() > 10)
                top.erase(top.begin()); // ascending order: drop the smallest
        }
        if (progress && (++rowsSeen % 200000) == 0)
            progress(0.0);
    }
    flush();
    if (Status s = q->status(); !s)
        return s;

    if (Status s = m_db.begin(); !s)
        return s;
    auto fail = [&](const Error &e) -> Status {
        m_db.rollback();
        return e;
    };
    auto del = m_db.prepare("DELETE FROM concept_stats WHERE run_id = ?");
    if (!del)
        return fail(del.error());
    del->bind(1, runId);
    if (Status s = del->exec(); !s)
        return fail(s.error());
    auto ins = m_db.prepare("INSERT INTO concept_stats(run_id, latent, firing_images, firing_freq, mean_activation, "
                            "label_entropy, top_images, dead, dense, high_mean) VALUES (?,?,?,?,?,?,?,?,?,?)");
    if (!ins)
        return fail(ins.error());
    for (ConceptStats &s : stats) {
        s.firingFrequency = *total > 0 ? double(s.firingImages) / double(*total) : 0.0;
        s.dead = s.firingImages == 0;
        s.dense = s.firingFrequency > kDenseFrequency;
        s.highMean = s.meanActivation && *s.meanActivation > kHighMean;
        ins->reset();
        ins->bind(1, runId).bind(2, int64_t(s.latent)).bind(3, s.firingImages).bind(4, s.firingFrequency);
        if (s.meanActivation)
            ins->bind(5, *s.meanActivation);
        else
            ins->bindNull(5);
        if (s.labelEntropy)
            ins->bind(6, *s.labelEntropy);
        else
            ins->bindNull(6);
        ins->bind(7, formatIdList(s.topImages)).bind(8, int(s.dead)).bind(9, int(s.dense)).bind(10, int(s.highMean));
        if (Status st = ins->exec(); !st)
            return fail(st.error());
    }
    auto upd = m_db.prepare("UPDATE run SET stats_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now') WHERE id = ?");
    if (!upd)
        return fail(upd.error());
    upd->bind(1, runId);
    if (Status s = upd->exec(); !s)
        return fail(s.error());
    if (Status s = m_db.commit(); !s)
        return fail(s.error());
    if (progress)
        progress(1.0);
    return Status::success();
}

// ---- queries -------------------------------------------------------------------------------

Result<std::vector<CellHit>> ProjectDb::topCells(int64_t runId, int32_t latent, int limit, const CellFilter &filter)
{
    std::string sql = "SELECT c.image_id, c.mean, c.max_patch, c.n_patches FROM image_concept c ";
    const bool byImage = filter.patientId || !filter.className.empty() || !filter.diagnosis.empty();
    if (byImage)
        sql += "JOIN image i ON i.id = c.image_id LEFT JOIN patient p ON p.id = i.patient_id ";
    sql += "WHERE c.run_id = ?1 AND c.latent = ?2 ";
    if (filter.patientId)
        sql += "AND i.patient_id = ?3 ";
    if (!filter.className.empty())
        sql += "AND i.class = ?4 ";
    if (!filter.diagnosis.empty())
        sql += "AND p.diagnosis = ?5 ";
    sql += "ORDER BY c.mean DESC LIMIT ?6";
    auto q = m_db.prepare(sql);
    if (!q)
        return q.error();
    q->bind(1, runId).bind(2, int64_t(latent)).bind(6, limit);
    if (filter.patientId)
        q->bind(3, filter.patientId);
    if (!filter.className.empty())
        q->bind(4, filter.className);
    if (!filter.diagnosis.empty())
        q->bind(5, filter.diagnosis);
    std::vector<CellHit> out;
    while (q->step())
        out.push_back({q->columnInt(0), float(q->columnDouble(1)), float(q->columnDouble(2)), int(q->columnInt(3))});
    if (Status s = q->status(); !s)
        return s.error();
    return out;
}

Result<std::vector<std::vector<CellHit>>> ProjectDb::quantileSample(int64_t runId, int32_t latent, int bins,
                                                                    int perBin, uint64_t seed, const CellFilter &filter)
{
    if (bins < 1 || perBin < 1)
        return Error("bins and cells per bin must be positive");
    auto all = topCells(runId, latent, -1, filter);
    if (!all)
        return all.error();
    std::vector<std::vector<CellHit>> out(static_cast<size_t>(bins));
    const size_t n = all->size();
    std::mt19937_64 rng(seed ^ (uint64_t(latent) * 0x9e3779b97f4a7c15ull));
    for (int b = 0; b < bins; ++b) {
        const size_t lo = n * size_t(b) / size_t(bins), hi = n * size_t(b + 1) / size_t(bins);
        std::vector<size_t> idx;
        for (size_t i = lo; i < hi; ++i)
            idx.push_back(i);
        std::shuffle(idx.begin(), idx.end(), rng);
        idx.resize(std::min(idx.size(), size_t(perBin)));
        std::sort(idx.begin(), idx.end());
        for (size_t i : idx)
            out[size_t(b)].push_back((*all)[i]);
    }
    return out;
}

namespace {
// `select` reads one blob column of the image's results, given ?1 = run, ?2 = image.
template <typename T, typename Decode>
Result<T> blobQuery(Database &db, const char *select, int64_t runId, int64_t imageId, Decode decode)
{
    auto q = db.prepare(select);
    if (!q)
        return q.error();
    q->bind(1, runId).bind(2, imageId);
    if (!q->step()) {
        if (Status s = q->status(); !s)
            return s.error();
        return Error("image " + std::to_string(imageId) + " has no results in run " + std::to_string(runId));
    }
    size_t size = 0;
    const auto *data = static_cast<const uint8_t *>(q->columnBlobData(0, size));
    return decode(data, size);
}
} // namespace

Result<std::vector<ImageConcept>> ProjectDb::conceptsOfImage(int64_t runId, int64_t imageId)
{
    return blobQuery<std::vector<ImageConcept>>(
        m_db, "SELECT concepts FROM activation WHERE run_id = ?1 AND image_id = ?2", runId, imageId, decodeConcepts);
}

Result<TokenTopK> ProjectDb::tokensOfImage(int64_t runId, int64_t imageId)
{
    return blobQuery<TokenTopK>(m_db,
                               "SELECT t.tokens FROM activation a JOIN activation_tokens t ON t.activation_id = a.id "
                               "WHERE a.run_id = ?1 AND a.image_id = ?2",
                               runId, imageId, decodeTokenTopK);
}

Result<std::vector<TokenLatent>> ProjectDb::conceptsOfToken(int64_t runId, int64_t imageId, int token)
{
    auto t = tokensOfImage(runId, imageId);
    if (!t)
        return t.error();
    if (token < 0 || token >= t->numTokens)
        return Error("token " + std::to_string(token) + " out of range (0.." + std::to_string(t->numTokens - 1) + ")");
    return std::vector<TokenLatent>(t->entries.begin() + t->offsets[size_t(token)],
                                    t->entries.begin() + t->offsets[size_t(token) + 1]);
}

Result<std::vector<float>> ProjectDb::clsOfImage(int64_t runId, int64_t imageId)
{
    return blobQuery<std::vector<float>>(m_db,
                                        "SELECT c.cls FROM activation a JOIN activation_cls c ON c.activation_id = a.id "
                                        "WHERE a.run_id = ?1 AND a.image_id = ?2",
                                        runId, imageId, decodeFloats);
}

Result<std::vector<FingerprintEntry>> ProjectDb::patientFingerprint(int64_t runId, int64_t patientId,
                                                                   int64_t *cellCount,
                                                                   const std::unordered_map<int32_t, float> &thresholds)
{
    auto q = m_db.prepare("SELECT a.concepts FROM image i JOIN activation a ON a.image_id = i.id AND a.run_id = ? "
                          "WHERE i.patient_id = ?");
    if (!q)
        return q.error();
    q->bind(1, runId).bind(2, patientId);
    std::unordered_map<int32_t, int64_t> counts;
    int64_t cells = 0;
    while (q->step()) {
        size_t size = 0;
        const auto *data = static_cast<const uint8_t *>(q->columnBlobData(0, size));
        auto concepts = decodeConcepts(data, size);
        if (!concepts)
            return concepts.error();
        ++cells;
        for (const ImageConcept &c : *concepts) {
            auto t = thresholds.find(c.latent);
            if (t == thresholds.end() ? c.patchesAbove > 0 : c.maxPatch > t->second)
                ++counts[c.latent];
        }
    }
    if (Status s = q->status(); !s)
        return s.error();
    std::vector<FingerprintEntry> out;
    out.reserve(counts.size());
    for (const auto &[latent, n] : counts)
        out.push_back({latent, n, cells ? double(n) / double(cells) : 0.0});
    std::sort(out.begin(), out.end(), [](const auto &a, const auto &b) {
        return a.fraction != b.fraction ? a.fraction > b.fraction : a.latent < b.latent;
    });
    if (cellCount)
        *cellCount = cells;
    return out;
}

namespace {

// The columns of a latent's statistics (without top_images), read by conceptStatsRow.
constexpr const char *kConceptStatsColumns =
    "SELECT latent, firing_images, firing_freq, mean_activation, label_entropy, dead, dense, high_mean";

ConceptStats conceptStatsRow(const Statement &s)
{
    ConceptStats c;
    c.latent = int32_t(s.columnInt(0));
    c.firingImages = s.columnInt(1);
    c.firingFrequency = s.columnDouble(2);
    if (!s.columnIsNull(3))
        c.meanActivation = s.columnDouble(3);
    if (!s.columnIsNull(4))
        c.labelEntropy = s.columnDouble(4);
    c.dead = s.columnInt(5) != 0;
    c.dense = s.columnInt(6) != 0;
    c.highMean = s.columnInt(7) != 0;
    return c;
}

} // namespace

Result<std::optional<ConceptStats>> ProjectDb::conceptStats(int64_t runId, int32_t latent)
{
    auto q = m_db.prepare(std::string(kConceptStatsColumns) +
                          ", top_images FROM concept_stats WHERE run_id = ? AND latent = ?");
    if (!q)
        return q.error();
    q->bind(1, runId).bind(2, int64_t(latent));
    if (!q->step())
        return std::optional<ConceptStats>();
    ConceptStats s = conceptStatsRow(*q);
    s.topImages = parseIdList(q->columnText(8));
    return std::optional<ConceptStats>(s);
}

Result<ImageRecord> ProjectDb::image(int64_t imageId)
{
    auto q = m_db.prepare(std::string(kImageColumns) + "WHERE i.id = ?");
    if (!q)
        return q.error();
    q->bind(1, imageId);
    if (!q->step())
        return Error("no image " + std::to_string(imageId) + " in this project");
    return readImage(*q);
}

Result<float> ProjectDb::reconError(int64_t runId, int64_t imageId)
{
    auto q = m_db.prepare("SELECT recon_error FROM activation WHERE run_id = ? AND image_id = ?");
    if (!q)
        return q.error();
    q->bind(1, runId).bind(2, imageId);
    if (!q->step())
        return Error("image " + std::to_string(imageId) + " has no results in run " + std::to_string(runId));
    return float(q->columnDouble(0));
}

namespace {
// Runs a query and collects one value per row; database errors are returned, not dropped.
template <typename T, typename Read>
Result<std::vector<T>> collect(Result<Statement> q, Read read)
{
    if (!q)
        return q.error();
    std::vector<T> out;
    while (q->step())
        out.push_back(read(*q));
    if (Status s = q->status(); !s)
        return s.error();
    return out;
}
} // namespace

Result<std::vector<ImageRecord>> ProjectDb::patientImages(int64_t patientId, int limit)
{
    auto q = m_db.prepare("SELECT id, path, coalesce(class, '') FROM image WHERE patient_id = ? AND qc_status = 'ok' "
                          "ORDER BY id LIMIT ?");
    if (q)
        q->bind(1, patientId).bind(2, limit);
    return collect<ImageRecord>(std::move(q), [](const Statement &s) {
        ImageRecord r;
        r.id = s.columnInt(0);
        r.path = s.columnText(1);
        r.className = s.columnText(2);
        return r;
    });
}

Result<std::vector<std::pair<std::string, int64_t>>> ProjectDb::classCounts(int64_t patientId)
{
    auto q = m_db.prepare("SELECT coalesce(class, '(none)'), count(*) FROM image WHERE patient_id = ? AND "
                          "qc_status = 'ok' GROUP BY class ORDER BY count(*) DESC");
    if (q)
        q->bind(1, patientId);
    return collect<std::pair<std::string, int64_t>>(
        std::move(q), [](const Statement &s) { return std::make_pair(s.columnText(0), s.columnInt(1)); });
}

Result<std::vector<std::string>> ProjectDb::classes()
{
    return collect<std::string>(m_db.prepare("SELECT DISTINCT class FROM image WHERE class IS NOT NULL ORDER BY class"),
                                [](const Statement &s) { return s.columnText(0); });
}

Result<std::vector<std::string>> ProjectDb::diagnoses()
{
    return collect<std::string>(
        m_db.prepare("SELECT DISTINCT diagnosis FROM patient WHERE diagnosis IS NOT NULL ORDER BY diagnosis"),
        [](const Statement &s) { return s.columnText(0); });
}

Result<int64_t> ProjectDb::acceptedImageCount()
{
    return m_db.queryInt("SELECT count(*) FROM image WHERE qc_status = 'ok'");
}

Result<std::vector<ConceptStats>> ProjectDb::allConceptStats(int64_t runId)
{
    auto q = m_db.prepare(std::string(kConceptStatsColumns) + " FROM concept_stats WHERE run_id = ? ORDER BY latent");
    if (q)
        q->bind(1, runId);
    return collect<ConceptStats>(std::move(q), conceptStatsRow);
}

Result<std::vector<std::pair<float, float>>> ProjectDb::latentValues(int64_t runId, int32_t latent)
{
    auto q = m_db.prepare("SELECT mean, max_patch FROM image_concept WHERE run_id = ? AND latent = ?");
    if (q)
        q->bind(1, runId).bind(2, int64_t(latent));
    return collect<std::pair<float, float>>(std::move(q), [](const Statement &s) {
        return std::make_pair(float(s.columnDouble(0)), float(s.columnDouble(1)));
    });
}

Result<std::vector<PatientRecord>> ProjectDb::patients()
{
    auto q = m_db.prepare("SELECT p.id, p.code, coalesce(p.diagnosis, ''), (SELECT count(*) FROM image i WHERE "
                          "i.patient_id = p.id AND i.qc_status = 'ok') FROM patient p ORDER BY p.code");
    if (!q)
        return q.error();
    std::vector<PatientRecord> out;
    while (q->step())
        out.push_back({q->columnInt(0), q->columnText(1), q->columnText(2), q->columnInt(3)});
    if (Status s = q->status(); !s)
        return s.error();
    return out;
}

namespace {
// Streams (patient, image, blob) rows of one run's accepted cells through decode and fn.
template <typename T, typename Decode, typename Fn>
Status forEachCellBlob(Database &db, const char *sql, int64_t runId, Decode decode, const Fn &fn)
{
    auto q = db.prepare(sql);
    if (!q)
        return q.error();
    q->bind(1, runId);
    while (q->step()) {
        size_t size = 0;
        const auto *data = static_cast<const uint8_t *>(q->columnBlobData(2, size));
        Result<T> value = decode(data, size);
        if (!value)
            return value.error().withContext("image " + std::to_string(q->columnInt(1)));
        if (!fn(q->columnInt(0), q->columnInt(1), *value))
            break;
    }
    return q->status();
}
} // namespace

Status ProjectDb::forEachCellConcepts(
    int64_t runId, const std::function<bool(int64_t, int64_t, const std::vector<ImageConcept> &)> &fn)
{
    return forEachCellBlob<std::vector<ImageConcept>>(
        m_db,
        "SELECT coalesce(i.patient_id, 0), i.id, a.concepts FROM activation a JOIN image i ON i.id = a.image_id "
        "WHERE a.run_id = ?1 AND i.qc_status = 'ok' ORDER BY i.patient_id, i.id",
        runId, decodeConcepts, fn);
}

Status ProjectDb::forEachCellTokens(int64_t runId, const std::function<bool(int64_t, int64_t, const TokenTopK &)> &fn)
{
    return forEachCellBlob<TokenTopK>(
        m_db,
        "SELECT coalesce(i.patient_id, 0), i.id, t.tokens FROM activation a JOIN activation_tokens t ON "
        "t.activation_id = a.id JOIN image i ON i.id = a.image_id WHERE a.run_id = ?1 AND i.qc_status = 'ok' "
        "ORDER BY i.patient_id, i.id",
        runId, decodeTokenTopK, fn);
}

Status ProjectDb::forEachCellCls(int64_t runId,
                                 const std::function<bool(int64_t, int64_t, const std::vector<float> &)> &fn)
{
    return forEachCellBlob<std::vector<float>>(
        m_db,
        "SELECT coalesce(i.patient_id, 0), i.id, c.cls FROM activation a JOIN activation_cls c ON c.activation_id = "
        "a.id JOIN image i ON i.id = a.image_id WHERE a.run_id = ?1 AND i.qc_status = 'ok' ORDER BY i.patient_id, i.id",
        runId, decodeFloats, fn);
}

Result<int64_t> ProjectDb::count(const std::string &sqlCountQuery)
{
    return m_db.queryInt(sqlCountQuery);
}

Result<ProjectSummary> ProjectDb::summary(int64_t runId, int mostFrequent)
{
    ProjectSummary out;
    const std::string r = std::to_string(runId);
    const std::pair<int64_t *, std::string> counts[] = {
        {&out.acceptedImages, "SELECT count(*) FROM image WHERE qc_status = 'ok'"},
        {&out.rejectedImages, "SELECT count(*) FROM image WHERE qc_status = 'rejected'"},
        {&out.patients, "SELECT count(*) FROM patient"},
        {&out.imagesWithResults, "SELECT count(*) FROM activation WHERE run_id = " + r},
        {&out.failedImages, "SELECT count(*) FROM run_error WHERE run_id = " + r},
        {&out.statsRows, "SELECT count(*) FROM concept_stats WHERE run_id = " + r},
        {&out.alive, "SELECT count(*) FROM concept_stats WHERE dead = 0 AND run_id = " + r},
        {&out.dead, "SELECT count(*) FROM concept_stats WHERE dead = 1 AND run_id = " + r},
        {&out.dense, "SELECT count(*) FROM concept_stats WHERE dense = 1 AND run_id = " + r},
        {&out.highMean, "SELECT count(*) FROM concept_stats WHERE high_mean = 1 AND run_id = " + r},
    };
    for (const auto &[target, sql] : counts) {
        auto v = m_db.queryInt(sql);
        if (!v)
            return v.error();
        *target = *v;
    }
    auto q = m_db.prepare(std::string(kConceptStatsColumns) +
                          " FROM concept_stats WHERE run_id = ? AND dead = 0 ORDER BY firing_freq DESC, latent LIMIT ?");
    if (q)
        q->bind(1, runId).bind(2, mostFrequent);
    auto frequent = collect<ConceptStats>(std::move(q), conceptStatsRow);
    if (!frequent)
        return frequent.error();
    out.mostFrequent = std::move(frequent.value());
    return out;
}

// ---- smear fields (schema 3) ----------------------------------------------------------------

Result<std::optional<int64_t>> ProjectDb::smearIdByPath(const std::string &path)
{
    auto q = m_db.prepare("SELECT id FROM smear WHERE path = ?");
    if (!q)
        return q.error();
    q->bind(1, path);
    if (q->step())
        return std::optional<int64_t>(q->columnInt(0));
    if (Status s = q->status(); !s)
        return s.error();
    return std::optional<int64_t>();
}

Result<int64_t> ProjectDb::addSmear(const NewSmear &smear, const std::vector<SmearCellLink> &cells)
{
    if (Status s = m_db.begin(); !s)
        return s.error();
    auto fail = [&](const Error &e) -> Result<int64_t> {
        m_db.rollback();
        return e;
    };
    int64_t patientId = 0;
    if (!smear.patientCode.empty()) {
        auto id = upsertPatient(smear.patientCode, smear.diagnosis, {});
        if (!id)
            return fail(id.error());
        patientId = *id;
    }
    auto ins = m_db.prepare("INSERT INTO smear(path, sha256, file_size, width, height, microns_per_pixel, patient_id, "
                            "qc_status, qc_reason, cells, detector) VALUES (?, nullif(?, ''), ?, ?, ?, ?, ?, ?, "
                            "nullif(?, ''), ?, ?)");
    if (!ins)
        return fail(ins.error());
    ins->bind(1, smear.path).bind(2, smear.sha256).bind(3, smear.fileSize).bind(4, smear.width).bind(5, smear.height);
    ins->bind(6, smear.micronsPerPixel);
    if (patientId)
        ins->bind(7, patientId);
    else
        ins->bindNull(7);
    ins->bind(8, std::string(smear.ok ? "ok" : "rejected")).bind(9, smear.qcReason);
    ins->bind(10, int64_t(cells.size())).bind(11, smear.detectorJson.empty() ? std::string("{}") : smear.detectorJson);
    if (Status s = ins->exec(); !s)
        return fail(Error(smear.path + ": " + s.message()));
    const int64_t smearId = m_db.lastInsertId();
    auto link = m_db.prepare("UPDATE image SET smear_id = ?, box_x = ?, box_y = ?, box_w = ?, box_h = ?, "
                             "detection_score = ? WHERE path = ?");
    if (!link)
        return fail(link.error());
    for (const SmearCellLink &c : cells) {
        link->reset();
        link->bind(1, smearId).bind(2, c.x).bind(3, c.y).bind(4, c.w).bind(5, c.h).bind(6, double(c.score));
        link->bind(7, c.imagePath);
        if (Status s = link->exec(); !s)
            return fail(Error(c.imagePath + ": " + s.message()));
        if (m_db.changes() == 0)
            return fail(Error(c.imagePath + ": cell image missing from the project"));
    }
    if (Status s = m_db.commit(); !s)
        return fail(s.error());
    return smearId;
}

namespace {
const char *kSmearColumns = "SELECT s.id, s.path, coalesce(s.width, 0), coalesce(s.height, 0), "
                            "coalesce(s.microns_per_pixel, 0), coalesce(s.patient_id, 0), coalesce(p.code, ''), "
                            "s.qc_status, coalesce(s.qc_reason, ''), s.cells FROM smear s "
                            "LEFT JOIN patient p ON p.id = s.patient_id ";
SmearRecord readSmear(const Statement &q)
{
    SmearRecord r;
    r.id = q.columnInt(0);
    r.path = q.columnText(1);
    r.width = int(q.columnInt(2));
    r.height = int(q.columnInt(3));
    r.micronsPerPixel = q.columnDouble(4);
    r.patientId = q.columnInt(5);
    r.patientCode = q.columnText(6);
    r.qcStatus = q.columnText(7);
    r.qcReason = q.columnText(8);
    r.cells = q.columnInt(9);
    return r;
}
} // namespace

Result<std::vector<SmearRecord>> ProjectDb::smears()
{
    auto q = m_db.prepare(std::string(kSmearColumns) + "ORDER BY s.id");
    if (!q)
        return q.error();
    std::vector<SmearRecord> out;
    while (q->step())
        out.push_back(readSmear(*q));
    if (Status s = q->status(); !s)
        return s.error();
    return out;
}

Result<SmearRecord> ProjectDb::smear(int64_t smearId)
{
    auto q = m_db.prepare(std::string(kSmearColumns) + "WHERE s.id = ?");
    if (!q)
        return q.error();
    q->bind(1, smearId);
    if (!q->step())
        return Error("no smear " + std::to_string(smearId) + " in this project");
    return readSmear(*q);
}

Result<std::vector<SmearCell>> ProjectDb::smearCells(int64_t smearId)
{
    auto q = m_db.prepare("SELECT id, box_x, box_y, box_w, box_h, coalesce(detection_score, 0) FROM image "
                          "WHERE smear_id = ? ORDER BY id");
    if (!q)
        return q.error();
    q->bind(1, smearId);
    std::vector<SmearCell> out;
    while (q->step())
        out.push_back({q->columnInt(0), int(q->columnInt(1)), int(q->columnInt(2)), int(q->columnInt(3)),
                       int(q->columnInt(4)), float(q->columnDouble(5))});
    if (Status s = q->status(); !s)
        return s.error();
    return out;
}

Result<std::vector<std::pair<int64_t, float>>> ProjectDb::smearCellActivations(int64_t runId, int64_t smearId,
                                                                               int32_t latent)
{
    auto q = m_db.prepare("SELECT c.image_id, c.max_patch FROM image_concept c JOIN image i ON i.id = c.image_id "
                          "WHERE c.run_id = ? AND c.latent = ? AND i.smear_id = ?");
    if (!q)
        return q.error();
    q->bind(1, runId).bind(2, int64_t(latent)).bind(3, smearId);
    std::vector<std::pair<int64_t, float>> out;
    while (q->step())
        out.emplace_back(q->columnInt(0), float(q->columnDouble(1)));
    if (Status s = q->status(); !s)
        return s.error();
    return out;
}

Result<int64_t> ProjectDb::smearOfImage(int64_t imageId)
{
    auto q = m_db.prepare("SELECT coalesce(smear_id, 0) FROM image WHERE id = ?");
    if (!q)
        return q.error();
    q->bind(1, imageId);
    if (!q->step())
        return Error("no image " + std::to_string(imageId) + " in this project");
    return q->columnInt(0);
}

} // namespace cytosae::store
