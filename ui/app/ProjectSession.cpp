#include "app/ProjectSession.h"

#include "analysis/Cohort.h"

#include <QtConcurrent/QtConcurrent>

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <unordered_map>

namespace analysis = cytosae::analysis;

namespace {

std::optional<store::ProjectDb> openReadOnly(const QString &path)
{
    auto db = store::ProjectDb::open(path.toStdString(), store::ProjectDb::OpenMode::ReadOnly, store::ProjectDb::Verify::Trusted);
    if (!db)
        return std::nullopt;
    return std::move(db.value());
}

QString q(const std::string &s) { return QString::fromStdString(s); }

// Patch tokens are the last side x side tokens (after CLS and any registers).
int gridSide(const store::TokenTopK &t)
{
    return int(std::sqrt(double(std::max(0, t.numTokens - 1))));
}

// Patch grid of one latent from a token top-k blob.
PatchGrid gridOf(const store::TokenTopK &t, int latent)
{
    PatchGrid g;
    const int side = gridSide(t);
    g.gridW = g.gridH = side;
    g.prefix = t.numTokens - side * side;
    g.values.fill(0.f, side * side);
    for (int p = 0; p < side * side; ++p) {
        const int token = g.prefix + p;
        for (uint32_t j = t.offsets[size_t(token)]; j < t.offsets[size_t(token) + 1]; ++j)
            if (t.entries[j].latent == latent)
                g.values[p] = t.entries[j].value;
    }
    return g;
}

QVector<GalleryItem> itemsFromHits(store::ProjectDb &db, qint64 runId, int latent, const std::vector<store::CellHit> &hits,
                                   float scaleMax, const QString &prefix)
{
    QVector<GalleryItem> items;
    items.reserve(int(hits.size()));
    for (const auto &h : hits) {
        GalleryItem it;
        it.imageId = h.imageId;
        auto img = db.image(h.imageId);
        it.path = img ? q(img->path) : QString();
        it.caption = prefix + QString::number(double(h.mean), 'f', 3) +
                     (img && !img->patientCode.empty() ? " · " + q(img->patientCode) : QString());
        if (auto t = db.tokensOfImage(runId, h.imageId)) {
            const PatchGrid g = gridOf(*t, latent);
            it.overlay = g.values;
            it.gridW = g.gridW;
            it.gridH = g.gridH;
        }
        it.scaleMax = scaleMax;
        items.push_back(it);
    }
    return items;
}

} // namespace

std::unique_ptr<ProjectSession> ProjectSession::open(const QString &path, QString *error)
{
    auto fail = [error](const std::string &message) {
        if (error)
            *error = q(message);
        return nullptr;
    };
    // An older schema is upgraded once, by a connection that checks the file and keeps a
    // backup first; then read-only connections for the views, checked in the background.
    auto version = store::ProjectDb::schemaVersionOf(path.toStdString());
    if (!version)
        return fail(version.message());
    QString backup;
    bool checked = false;
    if (*version < store::kSchemaVersion) {
        auto rw = store::ProjectDb::open(path.toStdString(), store::ProjectDb::OpenMode::Existing);
        if (!rw)
            return fail(rw.message());
        backup = q(rw->upgradeBackup());
        checked = true;
    }
    auto db = store::ProjectDb::open(path.toStdString(), store::ProjectDb::OpenMode::ReadOnly,
                                     store::ProjectDb::Verify::Trusted);
    if (!db)
        return fail(db.message());
    std::unique_ptr<ProjectSession> s(new ProjectSession());
    s->m_path = path;
    s->m_db = std::make_unique<store::ProjectDb>(std::move(db.value()));
    s->m_upgradeBackup = backup;
    if (checked)
        s->m_integrity = Integrity::Intact;
    s->refresh();
    return s;
}

void ProjectSession::setIntegrity(Integrity state, const QString &problems)
{
    m_integrity = state;
    m_integrityProblems = problems;
}

void ProjectSession::refresh()
{
    m_cohortCache = std::make_shared<CohortCache>(); // a run may have added results
    auto patients = m_db->patients();
    m_patients = patients ? QVector<store::PatientRecord>(patients->begin(), patients->end())
                          : QVector<store::PatientRecord>();
    auto run = m_db->latestRun();
    if (run && run->has_value())
        m_run = **run;
    else
        m_run.reset();
    m_hashes = {};
    if (m_run)
        if (auto h = store::AnnotationDb(*m_db).hashesOfRun(m_run->id))
            m_hashes = *h;
}

store::AnnotationDb *ProjectSession::ledger(QString *error)
{
    if (m_integrity == Integrity::Damaged) {
        if (error)
            *error = QObject::tr("%1 is damaged (%2); nothing is written to it. Restore it from a copy; "
                                 "'cytosae check' lists what is affected.")
                         .arg(m_path, m_integrityProblems);
        return nullptr;
    }
    if (!m_writeLedger) {
        // The background check passed: no need to read the whole file again.
        auto db = store::ProjectDb::open(m_path.toStdString(), store::ProjectDb::OpenMode::Existing,
                                         m_integrity == Integrity::Intact ? store::ProjectDb::Verify::Trusted
                                                                          : store::ProjectDb::Verify::Full);
        if (!db) {
            if (error)
                *error = QObject::tr("%1: cannot be written (%2)").arg(m_path, q(db.message()));
            return nullptr;
        }
        m_writeDb = std::make_unique<store::ProjectDb>(std::move(db.value()));
        m_writeLedger = std::make_unique<store::AnnotationDb>(*m_writeDb);
    }
    return m_writeLedger.get();
}

store::AnnotationDb *ProjectSession::ledgerFor(const QString &person, QString *error)
{
    if (person.trimmed().isEmpty()) {
        if (error)
            *error = QObject::tr("Set your annotator name first (Edit ▸ Settings…): every entry records who made it.");
        return nullptr;
    }
    return ledger(error);
}

std::vector<int32_t> ProjectSession::latentsOf(const QString &conceptKey)
{
    auto l = readLedger().latentsOf(conceptKey.toStdString());
    return l ? *l : std::vector<int32_t>();
}

QString ProjectSession::conceptTitle(const QString &conceptKey)
{
    store::AnnotationDb ann = readLedger();
    QString title;
    const auto ref = store::ConceptRef::parse(conceptKey.toStdString());
    if (!ref)
        return conceptKey;
    if (ref->isGroup()) {
        auto g = ann.group(ref->groupUid);
        title = g && *g ? QObject::tr("group %1 (%2 latents)").arg(q((*g)->name)).arg((*g)->latents.size())
                        : QObject::tr("group %1").arg(q(ref->groupUid));
    } else {
        title = QObject::tr("latent %1").arg(ref->latent);
    }
    if (auto labels = ann.currentLabels(m_hashes)) {
        auto it = labels->find(conceptKey.toStdString());
        if (it != labels->end())
            title += QStringLiteral(" · ") + q(it->second.entry.label) +
                     (it->second.stale ? QObject::tr(" (stale)") : QString());
    }
    return title;
}

PatchGrid ProjectSession::conceptGrid(qint64 imageId, const std::vector<int32_t> &latents)
{
    PatchGrid g;
    if (!m_run)
        return g;
    auto t = m_db->tokensOfImage(m_run->id, imageId);
    if (!t)
        return g;
    for (size_t i = 0; i < latents.size(); ++i) {
        const PatchGrid one = gridOf(*t, latents[i]);
        if (i == 0) {
            g = one;
            continue;
        }
        for (int p = 0; p < g.values.size() && p < one.values.size(); ++p)
            g.values[p] = std::max(g.values[p], one.values[p]);
    }
    return g;
}

QVector<GalleryItem> ProjectSession::conceptItems(const QVector<QPair<qint64, double>> &cells,
                                                  const std::vector<int32_t> &latents, float scaleMax,
                                                  const QStringList &suffixes)
{
    QVector<GalleryItem> items;
    for (int i = 0; i < cells.size(); ++i) {
        GalleryItem it;
        it.imageId = cells[i].first;
        auto img = m_db->image(it.imageId);
        it.path = img ? q(img->path) : QString();
        it.caption = QString::number(cells[i].second, 'f', 3) + (i < suffixes.size() ? suffixes[i] : QString());
        const PatchGrid g = conceptGrid(it.imageId, latents);
        it.overlay = g.values;
        it.gridW = g.gridW;
        it.gridH = g.gridH;
        it.scaleMax = scaleMax;
        items.push_back(it);
    }
    return items;
}

QString ProjectSession::modelSummary()
{
    if (!m_run)
        return QObject::tr("No run yet: use Run ▸ Run models… to compute concepts.");
    auto vit = m_db->model(m_run->vitId);
    auto sae = m_db->model(m_run->saeId);
    return QObject::tr("Run %1 (%2, on %9, %10): ViT %3 [sha256 %4…], SAE %5 [sha256 %6…], %7 latents, top-%8 per token")
        .arg(m_run->id)
        .arg(q(m_run->status))
        .arg(vit ? q(vit->path) : QStringLiteral("?"))
        .arg(vit ? q(vit->sha256.substr(0, 12)) : QString())
        .arg(sae ? q(sae->path) : QStringLiteral("?"))
        .arg(sae ? q(sae->sha256.substr(0, 12)) : QString())
        .arg(m_run->dSae)
        .arg(m_run->topK)
        .arg(q(m_run->device))
        .arg(q(m_run->precision));
}

std::optional<CellInfo> ProjectSession::cell(qint64 imageId)
{
    auto img = m_db->image(imageId);
    if (!img)
        return std::nullopt;
    CellInfo c;
    c.imageId = imageId;
    c.path = q(img->path);
    c.patient = q(img->patientCode);
    c.diagnosis = q(img->diagnosis);
    c.className = q(img->className);
    c.width = img->width;
    c.height = img->height;
    if (m_run)
        if (auto e = m_db->reconError(m_run->id, imageId))
            c.reconError = *e;
    return c;
}

QVector<store::ImageConcept> ProjectSession::conceptsOfCell(qint64 imageId)
{
    if (!m_run)
        return {};
    auto c = m_db->conceptsOfImage(m_run->id, imageId);
    return c ? QVector<store::ImageConcept>(c->begin(), c->end()) : QVector<store::ImageConcept>();
}

PatchGrid ProjectSession::patchValues(qint64 imageId, int latent)
{
    PatchGrid g;
    if (!m_run)
        return g;
    auto t = m_db->tokensOfImage(m_run->id, imageId);
    return t ? gridOf(*t, latent) : g;
}

QVector<store::TokenLatent> ProjectSession::conceptsOfPatch(qint64 imageId, int patch)
{
    if (!m_run)
        return {};
    auto t = m_db->tokensOfImage(m_run->id, imageId);
    if (!t)
        return {};
    const int side = gridSide(*t);
    const int token = t->numTokens - side * side + patch;
    if (patch < 0 || token >= t->numTokens)
        return {};
    return QVector<store::TokenLatent>(t->entries.begin() + t->offsets[size_t(token)],
                                       t->entries.begin() + t->offsets[size_t(token) + 1]);
}

QVector<GalleryItem> ProjectSession::patientCells(qint64 patientId, int limit)
{
    QVector<GalleryItem> out;
    auto images = m_db->patientImages(patientId, limit);
    if (!images)
        return out;
    for (const auto &img : *images) {
        GalleryItem it;
        it.imageId = img.id;
        it.path = q(img.path);
        it.caption = q(img.className);
        out.push_back(it);
    }
    return out;
}

QVector<QPair<QString, int>> ProjectSession::classCounts(qint64 patientId)
{
    QVector<QPair<QString, int>> out;
    if (auto counts = m_db->classCounts(patientId))
        for (const auto &[name, n] : *counts)
            out.push_back({q(name), int(n)});
    return out;
}

QStringList ProjectSession::classes()
{
    QStringList out;
    if (auto list = m_db->classes())
        for (const auto &c : *list)
            out << q(c);
    return out;
}

QStringList ProjectSession::diagnoses()
{
    QStringList out;
    if (auto list = m_db->diagnoses())
        for (const auto &d : *list)
            out << q(d);
    return out;
}

QFuture<QVector<ConceptRow>> ProjectSession::loadConcepts() const
{
    const QString path = m_path;
    const qint64 runId = m_run ? m_run->id : 0;
    const store::ModelHashes hashes = m_hashes;
    return QtConcurrent::run([path, runId, hashes]() {
        QVector<ConceptRow> rows;
        auto db = openReadOnly(path);
        if (!db || !runId)
            return rows;
        auto stats = db->allConceptStats(runId);
        if (!stats)
            return rows;
        store::AnnotationDb ledger(*db);
        auto labels = ledger.currentLabels(hashes);
        auto flags = ledger.activeFlags(hashes);
        std::unordered_map<int32_t, bool> flagged;
        if (flags)
            for (const auto &f : *flags)
                if (auto ref = store::ConceptRef::parse(f.concept); ref && !ref->isGroup())
                    flagged[ref->latent] = true;
        for (const auto &c : *stats) {
            ConceptRow r;
            r.latent = c.latent;
            r.firingImages = c.firingImages;
            r.frequency = c.firingFrequency;
            r.meanActivation = c.meanActivation ? *c.meanActivation : std::nan("");
            r.entropy = c.labelEntropy ? *c.labelEntropy : -1;
            r.dead = c.dead;
            r.dense = c.dense;
            r.highMean = c.highMean;
            if (labels) {
                auto it = labels->find(store::ConceptRef::ofLatent(c.latent).key());
                if (it != labels->end()) {
                    r.label = q(it->second.entry.label);
                    r.status = q(it->second.entry.status);
                    r.stale = it->second.stale;
                }
            }
            r.pathognomonic = flagged.count(c.latent) > 0;
            rows.push_back(r);
        }
        return rows;
    });
}

QFuture<ConceptDistribution> ProjectSession::loadDistribution(int latent) const
{
    const QString path = m_path;
    const qint64 runId = m_run ? m_run->id : 0;
    return QtConcurrent::run([path, runId, latent]() {
        ConceptDistribution d;
        d.latent = latent;
        auto db = openReadOnly(path);
        if (!db || !runId)
            return d;
        auto values = db->latentValues(runId, latent);
        if (!values)
            return d;
        std::vector<float> maxima;
        for (const auto &[mean, maxPatch] : *values) {
            d.means.push_back(mean);
            maxima.push_back(maxPatch);
        }
        if (!maxima.empty()) {
            // The fixed overlay scale of this concept: the 99th percentile of its patch maxima.
            const size_t k = std::min(maxima.size() - 1, size_t(double(maxima.size()) * 0.99));
            std::nth_element(maxima.begin(), maxima.begin() + ptrdiff_t(k), maxima.end());
            d.maxPatchP99 = std::max(maxima[k], 1e-3f);
        }
        return d;
    });
}

struct ProjectSession::CohortCache {
    std::mutex mutex;
    int64_t runId = 0;
    std::map<int32_t, double> thresholds;
    std::shared_ptr<const analysis::Cohort> cohort;
};

QFuture<QVector<PatientConcept>> ProjectSession::loadPatientConcepts(qint64 patientId) const
{
    const QString path = m_path;
    const std::optional<store::RunRecord> run = m_run;
    const std::shared_ptr<CohortCache> cache = m_cohortCache;
    return QtConcurrent::run([path, run, patientId, cache]() {
        QVector<PatientConcept> out;
        auto db = openReadOnly(path);
        if (!db || !run)
            return out;
        // The same options, cohort and statistic as `cytosae analyze patient-specific`.
        auto options = analysis::defaultCohortOptions(*db, *run);
        if (!options)
            return out;
        std::shared_ptr<const analysis::Cohort> cohort;
        {
            std::lock_guard<std::mutex> lock(cache->mutex);
            if (cache->cohort && cache->runId == run->id && cache->thresholds == options->latentThresholds)
                cohort = cache->cohort;
        }
        if (!cohort) {
            auto loaded = analysis::loadCohort(*db, *run, *options);
            if (!loaded)
                return out;
            cohort = std::make_shared<const analysis::Cohort>(std::move(loaded.value()));
            std::lock_guard<std::mutex> lock(cache->mutex);
            cache->runId = run->id;
            cache->thresholds = options->latentThresholds;
            cache->cohort = cohort;
        }
        long index = -1;
        for (size_t i = 0; i < cohort->size(); ++i)
            if (cohort->patients[i].id == patientId)
                index = long(i);
        if (index < 0)
            return out;
        analysis::PatientSpecificOptions opt;
        opt.top = 0; // every latent: the table shows the first, the scatter all of them
        auto found = analysis::patientSpecific(*cohort, size_t(index), opt);
        if (!found)
            return out;
        out.reserve(int(found->size()));
        for (const auto &c : *found)
            out.push_back({c.latent, c.fraction, c.ci.lo, c.ci.hi, c.referenceMedian, c.referenceMad, c.score});
        return out;
    });
}

QFuture<QVector<GalleryItem>> ProjectSession::loadConceptCells(int latent, const store::CellFilter &filter, int limit,
                                                              float scaleMax) const
{
    const QString path = m_path;
    const qint64 runId = m_run ? m_run->id : 0;
    return QtConcurrent::run([path, runId, latent, filter, limit, scaleMax]() {
        auto db = openReadOnly(path);
        if (!db || !runId)
            return QVector<GalleryItem>();
        auto hits = db->topCells(runId, latent, limit, filter);
        return hits ? itemsFromHits(*db, runId, latent, *hits, scaleMax, {}) : QVector<GalleryItem>();
    });
}

QFuture<QVector<GalleryItem>> ProjectSession::loadQuantileCells(int latent, const store::CellFilter &filter, int bins,
                                                               int perBin, float scaleMax) const
{
    const QString path = m_path;
    const qint64 runId = m_run ? m_run->id : 0;
    return QtConcurrent::run([path, runId, latent, filter, bins, perBin, scaleMax]() {
        QVector<GalleryItem> items;
        auto db = openReadOnly(path);
        if (!db || !runId)
            return items;
        auto sample = db->quantileSample(runId, latent, bins, perBin, 1, filter);
        if (!sample)
            return items;
        for (size_t b = 0; b < sample->size(); ++b)
            items += itemsFromHits(*db, runId, latent, (*sample)[b], scaleMax, QStringLiteral("Q%1 · ").arg(b + 1));
        return items;
    });
}
