#pragma once

// An open project as the GUI sees it: its path, the run the views show, and the queries the
// views need, as Qt value types. Small index lookups run on the calling (GUI) thread through
// one read-only connection; anything that reads many rows is offered as an async call that
// opens its own connection on a pool thread and delivers the result through a QFuture.

#include "gallery/GalleryItem.h"
#include "store/AnnotationDb.h"
#include "store/ProjectDb.h"

#include <QFuture>
#include <QHash>
#include <QImage>
#include <QString>
#include <QVector>

#include <memory>
#include <optional>

// The ui layer names core's store types without the project namespace.
namespace store = cytosae::store;

struct ConceptRow {
    int latent = 0;
    qint64 firingImages = 0;
    double frequency = 0;
    double meanActivation = 0; // NaN when it never fires
    double entropy = -1;       // -1 when unknown
    bool dead = false, dense = false, highMean = false;
    QString label;  // the label in force (or a stale one), empty when unlabelled
    QString status; // proposed, validated, rejected, deprecated; empty when unlabelled
    bool stale = false;          // the label was made with other model files
    bool pathognomonic = false;  // an active flag exists for the current models
};

struct CellInfo {
    qint64 imageId = 0;
    QString path;
    QString patient;
    QString diagnosis;
    QString className;
    int width = 0, height = 0;
    float reconError = 0;
};

struct PatchGrid {
    int gridW = 0, gridH = 0, prefix = 0;
    QVector<float> values; // patch tokens of one latent, row-major
};

struct ConceptDistribution {
    int latent = -1;
    QVector<float> means;    // image-level means of firing images
    float maxPatchP99 = 1.f; // the concept's fixed overlay scale
};

// One row of `cytosae analyze patient-specific` (analysis::patientSpecific), for the dock.
struct PatientConcept {
    int latent = 0;
    double patientFraction = 0;
    double ciLow = 0, ciHigh = 0; // Wilson 95 % of the patient's fraction
    double cohortMedian = 0;      // over the other patients
    double cohortMad = 0;         // scaled by 1.4826
    double score = 0;             // robust score; rows come strongest |score| first
};

class ProjectSession {
public:
    static std::unique_ptr<ProjectSession> open(const QString &path, QString *error);

    const QString &path() const { return m_path; }
    bool hasRun() const { return m_run.has_value(); }
    const store::RunRecord &run() const { return *m_run; }
    store::ProjectDb &db() { return *m_db; }
    QString modelSummary();
    // Re-reads the newest run (after a run finished in the background).
    void refresh();

    // Cached at open and refresh(): views ask for it on every selection change.
    const QVector<store::PatientRecord> &patients() const { return m_patients; }
    std::optional<CellInfo> cell(qint64 imageId);
    QVector<store::ImageConcept> conceptsOfCell(qint64 imageId);
    QVector<store::TokenLatent> conceptsOfPatch(qint64 imageId, int patch);
    PatchGrid patchValues(qint64 imageId, int latent);
    // One query: the patient's accepted cells as gallery items (captioned by class).
    QVector<GalleryItem> patientCells(qint64 patientId, int limit);
    QVector<QPair<QString, int>> classCounts(qint64 patientId);
    QStringList classes();
    QStringList diagnoses();

    // Many rows: on a pool thread with its own connection.
    QFuture<QVector<ConceptRow>> loadConcepts() const;
    QFuture<ConceptDistribution> loadDistribution(int latent) const;
    // Patient-specific concepts exactly as `cytosae analyze patient-specific` computes them
    // (core/analysis, default thresholds), every latent the patient or its reference shows,
    // strongest |score| first. The cohort is loaded once per run and kept.
    QFuture<QVector<PatientConcept>> loadPatientConcepts(qint64 patientId) const;
    // Gallery items (path, caption, the latent's patch grid for the overlay) of a concept's
    // strongest cells, or of cells sampled across its activation quantiles.
    QFuture<QVector<GalleryItem>> loadConceptCells(int latent, const store::CellFilter &filter, int limit,
                                                   float scaleMax) const;
    QFuture<QVector<GalleryItem>> loadQuantileCells(int latent, const store::CellFilter &filter, int bins, int perBin,
                                                    float scaleMax) const;

    // ---- integrity ----
    // The explorer opens a project at once and checks the whole file in the background
    // (MainWindow). Until the check says the file is intact, the first write runs the check
    // itself; once it found damage, nothing is written.
    enum class Integrity { Unchecked, Intact, Damaged };
    void setIntegrity(Integrity state, const QString &problems = {});
    Integrity integrity() const { return m_integrity; }
    // Upgrading an older schema makes a backup copy first; its path, or empty.
    const QString &upgradeBackup() const { return m_upgradeBackup; }

    // ---- the annotation ledger ----
    // Reads go through the read-only connection; writes through a read-write one opened on
    // first use (nullptr and *error when the file cannot be written).
    store::AnnotationDb *ledger(QString *error);
    // The same, for a write made in someone's name: refused with a message when no annotator
    // name is set (every ledger row records who made it).
    store::AnnotationDb *ledgerFor(const QString &person, QString *error);
    store::AnnotationDb readLedger() { return store::AnnotationDb(*m_db); }
    // The ViT and SAE hashes of the current run: labels and flags are bound to them.
    const store::ModelHashes &modelHashes() const { return m_hashes; }
    // "latent 12 · Auer rod" or "group Granules (3 latents) · fine granules".
    QString conceptTitle(const QString &conceptKey);
    std::vector<int32_t> latentsOf(const QString &conceptKey);
    // The concept's patch grid on a cell: for a group, the strongest member per patch.
    PatchGrid conceptGrid(qint64 imageId, const std::vector<int32_t> &latents);
    // Gallery items for cells with a value each (caption: value and an optional suffix).
    QVector<GalleryItem> conceptItems(const QVector<QPair<qint64, double>> &cells, const std::vector<int32_t> &latents,
                                      float scaleMax, const QStringList &suffixes = {});

private:
    QString m_path;
    std::unique_ptr<store::ProjectDb> m_db;
    std::unique_ptr<store::ProjectDb> m_writeDb;
    std::unique_ptr<store::AnnotationDb> m_writeLedger;
    store::ModelHashes m_hashes;
    std::optional<store::RunRecord> m_run;
    QVector<store::PatientRecord> m_patients;
    // The run's cohort counts, shared with the pool threads that load the Patient view.
    struct CohortCache;
    std::shared_ptr<CohortCache> m_cohortCache;
    Integrity m_integrity = Integrity::Unchecked;
    QString m_integrityProblems;
    QString m_upgradeBackup;
};
