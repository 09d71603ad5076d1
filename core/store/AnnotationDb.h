#pragma once

// The annotation ledger of a project (schema 2, docs/database.md): concept labels, concept
// groups, pathognomonic flags, validated thresholds, annotation tasks (precision checks and
// blinded double annotation) and review decisions with sign-off.
//
// Every table is append-only (triggers refuse UPDATE and DELETE): a change is a new row, the
// newest row per concept is the one in force, and the history is the audit trail. Every row is
// bound to the ViT and SAE file hashes it was made with; an entry made with other model files
// is reported as stale and never applied silently.
//
// Concurrency: two processes may write the same project at once. Each write is one short
// IMMEDIATE transaction; SQLite's busy timeout plus a retry loop here make a writer wait for
// the other instead of failing, so no write is lost.

#include "common/Result.h"
#include "store/ProjectDb.h"

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace cytosae::store {

struct ModelHashes {
    std::string vit, sae;
    bool operator==(const ModelHashes &o) const { return vit == o.vit && sae == o.sae; }
};

// A concept: one latent, or a named group of latents (key "latent:123" or "group:<uid>").
struct ConceptRef {
    int32_t latent = -1;
    std::string groupUid;

    static ConceptRef ofLatent(int32_t latent) { return {latent, {}}; }
    static ConceptRef ofGroup(std::string uid) { return {-1, std::move(uid)}; }
    bool isGroup() const { return !groupUid.empty(); }
    bool valid() const { return isGroup() || latent >= 0; }
    std::string key() const;
    static std::optional<ConceptRef> parse(const std::string &key);
};

// Label statuses; "retracted" is written by undo when a concept had no label before.
inline const std::vector<std::string> &labelStatuses()
{
    static const std::vector<std::string> s = {"proposed", "validated", "rejected", "deprecated", "retracted"};
    return s;
}

struct LabelEntry {
    int64_t id = 0;
    std::string uid;
    std::string concept; // ConceptRef::key()
    std::string label;
    bool controlled = false; // from the controlled vocabulary
    std::string status;
    std::string author;
    std::string at; // ISO 8601 UTC
    std::vector<int64_t> evidence; // image ids shown as evidence
    std::string note;
    ModelHashes models;
};

// The label in force for a concept under the given model files, or the newest one made with
// other files (stale: shown, never applied).
struct LabelState {
    LabelEntry entry;
    bool stale = false;
};

struct GroupVersion {
    int64_t id = 0;
    std::string uid;      // of this version
    std::string groupUid; // of the group
    int version = 0;
    std::string name;
    std::vector<int32_t> latents;
    std::string author, at, note;
    ModelHashes models;
};

struct FlagEntry {
    int64_t id = 0;
    std::string uid;
    std::string concept;
    double threshold = 0.2; // on the cell's maximum patch activation
    bool active = true;
    std::string author, at, note;
    ModelHashes models;
};

struct ThresholdEntry {
    int64_t id = 0;
    std::string uid, concept;
    double threshold = 0, targetPrecision = 0.9;
    std::string taskUid, author, at, note;
    ModelHashes models;
};

struct AnnotationItem {
    int position = 0;
    int64_t imageId = 0;
    int bin = 0;      // activation bin, strongest first; -1: negative control below threshold
    double value = 0; // the concept's maximum patch activation in the cell
};

struct AnnotationTask {
    int64_t id = 0;
    std::string uid;
    std::string kind; // "precision" or "agreement"
    std::string concept;
    int bins = 0, perBin = 0, negatives = 0;
    double threshold = 0.2;
    int64_t seed = 0;
    std::string createdBy, at;
    ModelHashes models;
    std::vector<AnnotationItem> items; // in presentation order (shuffled)
};

struct AnnotationAnswer {
    int64_t id = 0;
    std::string uid, taskUid;
    int position = 0;
    std::string annotator;
    std::string role = "rater"; // or "adjudicator"
    std::string answer;         // "hit" or "miss"
    std::string at;
};

struct ReviewEntry {
    int64_t id = 0;
    std::string uid, flagUid;
    int64_t imageId = 0;
    std::string decision; // "confirmed" or "rejected"
    std::string reviewer, at, note;
};

struct ReviewCandidate {
    int64_t imageId = 0;
    double value = 0; // maximum patch activation of the flagged concept
    std::optional<ReviewEntry> decision;
};

struct SignOff {
    int64_t id = 0;
    std::string uid, flagUid;
    int64_t patientId = 0;
    std::string reviewer, at, note;
    int64_t candidates = 0, confirmed = 0;
    ModelHashes models;
};

// A table of the ledger as exported: column names and rows of text values (nullopt = NULL).
// Local ids are replaced by portable references (image sha256 and path, patient code).
struct ExchangeTable {
    std::string name;
    std::vector<std::string> columns;
    std::vector<std::vector<std::optional<std::string>>> rows;
};

struct ImportReport {
    int64_t added = 0, alreadyPresent = 0;
    std::vector<std::string> problems; // rows that could not be imported, and why
};

// One line of the audit trail: who changed what, when.
struct AuditEntry {
    std::string at, who, action, concept, detail;
};

class AnnotationDb {
public:
    explicit AnnotationDb(ProjectDb &project) : m_project(project), m_db(project.db()) {}

    // Tests replace the clock and the uid source to get reproducible rows.
    static void setClockForTesting(std::function<std::string()> now);
    static std::string now();
    static std::string newUid();

    Result<ModelHashes> hashesOfRun(int64_t runId);

    // ---- labels ----
    // Appends one ledger row; fills uid and time when empty. Refuses unknown statuses, empty
    // labels (except for "retracted"), empty authors and invalid concept keys.
    Result<LabelEntry> appendLabel(LabelEntry entry);
    // The whole ledger (or one concept's), oldest first.
    Result<std::vector<LabelEntry>> labelHistory(const std::string &concept = {});
    // Per concept key, the label in force (bound to `models`), else the newest stale one.
    // Concepts whose newest bound entry is "retracted" have no label.
    Result<std::map<std::string, LabelState>> currentLabels(const ModelHashes &models);

    // ---- groups ----
    // A new group when groupUid is empty, else the group's next version.
    Result<GroupVersion> saveGroup(GroupVersion group);
    // The newest version of every group (or every version when allVersions), in creation order.
    Result<std::vector<GroupVersion>> groups(bool allVersions = false);
    Result<std::optional<GroupVersion>> group(const std::string &groupUid);
    // The latents a concept stands for (one, or the group's newest members).
    Result<std::vector<int32_t>> latentsOf(const std::string &conceptKey);

    // ---- flags and thresholds ----
    Result<FlagEntry> appendFlag(FlagEntry flag);
    // The newest flag entry per concept that is active and bound to `models`.
    Result<std::vector<FlagEntry>> activeFlags(const ModelHashes &models);
    Result<std::vector<FlagEntry>> flagHistory();
    Result<ThresholdEntry> appendThreshold(ThresholdEntry t);
    // Newest validated threshold per concept key, bound to `models`.
    Result<std::map<std::string, double>> validatedThresholds(const ModelHashes &models);

    // ---- annotation tasks ----
    // Samples `perBin` cells from each of `bins` equal-count bins of the cells whose maximum
    // patch activation exceeds `threshold` (strongest bin first) and `negatives` random cells
    // at or below it, seeded, and stores them in a shuffled order.
    Result<AnnotationTask> createTask(int64_t runId, const std::string &kind, const std::string &conceptKey, int bins,
                                      int perBin, int negatives, double threshold, uint64_t seed,
                                      const std::string &author);
    Result<std::vector<AnnotationTask>> tasks(); // without items
    Result<AnnotationTask> task(const std::string &uid);
    Result<AnnotationAnswer> appendAnswer(AnnotationAnswer answer);
    // The newest answer per (position, annotator, role).
    Result<std::vector<AnnotationAnswer>> answers(const std::string &taskUid);

    // ---- review ----
    // The patient's cells in which the flagged concept's maximum patch activation is at or
    // above the flag's threshold, strongest first, each with its newest decision.
    Result<std::vector<ReviewCandidate>> reviewQueue(int64_t runId, int64_t patientId, const FlagEntry &flag);
    Result<ReviewEntry> appendReview(ReviewEntry review);
    // The newest decision on one cell for one flag (an index lookup), if any.
    Result<std::optional<ReviewEntry>> latestReview(const std::string &flagUid, int64_t imageId);
    // Refused while any candidate has no decision.
    Result<SignOff> signOff(int64_t runId, int64_t patientId, const FlagEntry &flag, const std::string &reviewer,
                            const std::string &note = {});
    Result<std::vector<SignOff>> signOffs(int64_t patientId = 0);
    // Per patient: cells at or above any of the flags' thresholds, and how many of those still
    // wait for a decision on at least one flag (for the cohort view).
    struct FlaggedCount {
        int64_t flagged = 0, open = 0;
    };
    Result<std::map<int64_t, FlaggedCount>> flaggedCounts(int64_t runId, const std::vector<FlagEntry> &flags);

    // ---- audit ----
    // Newest first: labels, group versions, flags, thresholds, tasks, review decisions and
    // sign-offs. Annotation answers are left out: the audit view must not unblind raters.
    Result<std::vector<AuditEntry>> auditTrail(int limit = 1000);

    // ---- exchange ----
    Result<std::vector<ExchangeTable>> exportAll();
    // Rows already present (same uid or key) are skipped; rows whose image is not in this
    // project are listed in problems and skipped; the rest is written in one transaction.
    Result<ImportReport> importAll(const std::vector<ExchangeTable> &tables);

    // Every write goes through here: BEGIN IMMEDIATE, retried while another process holds
    // the write lock (SQLITE_BUSY), then the body, then COMMIT.
    Status writeTransaction(const std::function<Status()> &body);

private:
    Result<std::vector<std::pair<int64_t, double>>> conceptCells(int64_t runId, const std::string &conceptKey,
                                                                 int64_t patientId);

    ProjectDb &m_project;
    Database &m_db;
};

} // namespace cytosae::store
