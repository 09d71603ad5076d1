#include "review/ReviewPanel.h"

#include "app/SelectionModel.h"
#include "common/ImageConvert.h"
#include "gallery/GalleryModel.h"
#include "gallery/GalleryView.h"
#include "review/ReviewReport.h"
#include "viewer/CellView.h"

#include <QComboBox>
#include <QDateTime>
#include <QFileDialog>
#include <QHBoxLayout>
#include <QLabel>
#include <QPushButton>
#include <QShortcut>
#include <QSplitter>
#include <QVBoxLayout>
#include <QtConcurrent/QtConcurrent>

#include <unordered_set>

namespace {
QString q(const std::string &s) { return QString::fromStdString(s); }
}

ReviewPanel::ReviewPanel(SelectionModel *selection, ThumbnailLoader *loader, QWidget *parent)
    : QWidget(parent), m_selection(selection)
{
    setObjectName(QStringLiteral("reviewPanel"));
    m_flagCombo = new QComboBox(this);
    m_flagCombo->setObjectName(QStringLiteral("reviewFlagCombo"));
    m_header = new QLabel(tr("Select a patient and a flagged concept."), this);
    m_header->setObjectName(QStringLiteral("reviewHeader"));
    m_header->setWordWrap(true);
    m_decision = new QLabel(this);
    m_decision->setObjectName(QStringLiteral("reviewDecision"));
    m_candidateModel = new GalleryModel(loader, this);
    m_candidateModel->setOverlaysVisible(true);
    m_candidateView = new GalleryView(this);
    m_candidateView->setObjectName(QStringLiteral("reviewCandidates"));
    m_candidateView->setModel(m_candidateModel);
    m_exemplarModel = new GalleryModel(loader, this);
    m_exemplarModel->setOverlaysVisible(true);
    m_exemplarView = new GalleryView(this);
    m_exemplarView->setObjectName(QStringLiteral("reviewExemplars"));
    m_exemplarView->setModel(m_exemplarModel);
    m_view = new CellView(this);
    m_view->setObjectName(QStringLiteral("reviewCell"));
    m_view->setMinimumSize(260, 260);

    m_confirm = new QPushButton(tr("&Confirm (C / Y)"), this);
    m_confirm->setObjectName(QStringLiteral("confirmButton"));
    m_reject = new QPushButton(tr("&Reject (R / N)"), this);
    m_reject->setObjectName(QStringLiteral("rejectButton"));
    m_signOff = new QPushButton(tr("&Sign off…"), this);
    m_signOff->setObjectName(QStringLiteral("signOffButton"));
    m_report = new QPushButton(tr("PDF &report…"), this);
    m_report->setObjectName(QStringLiteral("reportButton"));
    connect(m_confirm, &QPushButton::clicked, this, [this] { decide(QStringLiteral("confirmed")); });
    connect(m_reject, &QPushButton::clicked, this, [this] { decide(QStringLiteral("rejected")); });
    connect(m_signOff, &QPushButton::clicked, this, &ReviewPanel::signOff);
    connect(m_report, &QPushButton::clicked, this, [this] {
        const QString path = QFileDialog::getSaveFileName(this, tr("Save Review Report"), QStringLiteral("review.pdf"),
                                                          tr("PDF (*.pdf)"));
        if (!path.isEmpty())
            exportReport(path);
    });

    // Keys work anywhere inside the panel.
    auto key = [this](const QKeySequence &k, auto fn) {
        auto *s = new QShortcut(k, this);
        s->setContext(Qt::WidgetWithChildrenShortcut);
        connect(s, &QShortcut::activated, this, fn);
    };
    key(QKeySequence(Qt::Key_C), [this] { decide(QStringLiteral("confirmed")); });
    key(QKeySequence(Qt::Key_Y), [this] { decide(QStringLiteral("confirmed")); });
    key(QKeySequence(Qt::Key_R), [this] { decide(QStringLiteral("rejected")); });
    key(QKeySequence(Qt::Key_N), [this] { decide(QStringLiteral("rejected")); });
    key(QKeySequence(Qt::Key_Right), [this] { setCurrentIndex(m_index + 1); });
    key(QKeySequence(Qt::Key_Down), [this] { setCurrentIndex(m_index + 1); });
    key(QKeySequence(Qt::Key_Left), [this] { setCurrentIndex(m_index - 1); });
    key(QKeySequence(Qt::Key_Up), [this] { setCurrentIndex(m_index - 1); });

    auto *top = new QHBoxLayout;
    top->addWidget(new QLabel(tr("Flag"), this));
    top->addWidget(m_flagCombo, 1);
    auto *middle = new QSplitter(this);
    auto *cellBox = new QWidget(this);
    auto *cl = new QVBoxLayout(cellBox);
    cl->setContentsMargins(0, 0, 0, 0);
    cl->addWidget(m_view, 1);
    cl->addWidget(m_decision);
    auto *buttons = new QHBoxLayout;
    for (QPushButton *b : {m_confirm, m_reject})
        buttons->addWidget(b);
    cl->addLayout(buttons);
    auto *exBox = new QWidget(this);
    auto *el = new QVBoxLayout(exBox);
    el->setContentsMargins(0, 0, 0, 0);
    el->addWidget(new QLabel(tr("Reference exemplars"), exBox));
    el->addWidget(m_exemplarView, 1);
    middle->addWidget(cellBox);
    middle->addWidget(exBox);
    middle->setSizes({420, 220});
    auto *bottom = new QHBoxLayout;
    bottom->addStretch(1);
    bottom->addWidget(m_signOff);
    bottom->addWidget(m_report);
    auto *layout = new QVBoxLayout(this);
    layout->setContentsMargins(2, 2, 2, 2);
    layout->addLayout(top);
    layout->addWidget(m_header);
    layout->addWidget(new QLabel(tr("Flagged cells of this patient (strongest first)"), this));
    layout->addWidget(m_candidateView, 1);
    layout->addWidget(middle, 3);
    layout->addLayout(bottom);

    connect(m_flagCombo, &QComboBox::currentIndexChanged, this, [this] { reloadQueue(); });
    connect(m_selection, &SelectionModel::patientChanged, this, [this] { reloadQueue(); });
    connect(m_candidateView, &GalleryView::imageActivated, this, [this](qint64 id) {
        for (size_t i = 0; i < m_candidates.size(); ++i)
            if (m_candidates[i].imageId == id)
                setCurrentIndex(int(i));
    });
    connect(m_exemplarView, &GalleryView::imageActivated, m_selection, &SelectionModel::setImage);
    connect(&m_image, &QFutureWatcher<QImage>::finished, this, [this] {
        m_view->setImage(m_image.result());
        m_view->fitToView();
    });
}

void ReviewPanel::setSession(ProjectSession *session)
{
    m_session = session;
    reloadFlags();
}

const store::FlagEntry *ReviewPanel::currentFlag() const
{
    const int i = m_flagCombo->currentIndex();
    return i >= 0 && i < int(m_flags.size()) ? &m_flags[size_t(i)] : nullptr;
}

void ReviewPanel::reloadFlags()
{
    const QString previous = currentFlag() ? q(currentFlag()->uid) : QString();
    m_flags.clear();
    if (m_session && m_session->hasRun())
        if (auto flags = m_session->readLedger().activeFlags(m_session->modelHashes()))
            m_flags = *flags;
    QSignalBlocker block(m_flagCombo);
    m_flagCombo->clear();
    int keep = 0;
    for (size_t i = 0; i < m_flags.size(); ++i) {
        m_flagCombo->addItem(tr("%1 ≥ %2").arg(m_session->conceptTitle(q(m_flags[i].concept))).arg(m_flags[i].threshold, 0, 'f', 3));
        if (q(m_flags[i].uid) == previous)
            keep = int(i);
    }
    m_flagCombo->setCurrentIndex(m_flags.empty() ? -1 : keep);
    reloadQueue();
}

void ReviewPanel::selectFlag(int index) { m_flagCombo->setCurrentIndex(index); }

void ReviewPanel::reloadQueue()
{
    m_candidates.clear();
    m_index = -1;
    const store::FlagEntry *flag = currentFlag();
    const qint64 patient = m_selection->patientId();
    if (m_session && m_session->hasRun() && flag && patient) {
        m_latents = m_session->latentsOf(q(flag->concept));
        auto queue = m_session->readLedger().reviewQueue(m_session->run().id, patient, *flag);
        if (queue)
            m_candidates = *queue;
        else
            emit failed(q(queue.message()));
        m_scaleMax = 0;
        for (const auto &c : m_candidates)
            m_scaleMax = std::max(m_scaleMax, float(c.value));
        if (m_scaleMax <= 0)
            m_scaleMax = 1;
    }
    refreshCandidateItems();
    loadExemplars();
    // Start at the first open candidate.
    int first = m_candidates.empty() ? -1 : 0;
    for (size_t i = 0; i < m_candidates.size(); ++i)
        if (!m_candidates[i].decision) {
            first = int(i);
            break;
        }
    setCurrentIndex(first);
}

void ReviewPanel::refreshCandidateItems()
{
    QVector<QPair<qint64, double>> cells;
    QStringList captions;
    for (const auto &c : m_candidates) {
        cells.push_back({c.imageId, c.value});
        captions << (c.decision ? QStringLiteral(" · ") + q(c.decision->decision) : tr(" · open"));
    }
    m_candidateModel->setItems(m_session ? m_session->conceptItems(cells, m_latents, m_scaleMax, captions)
                                         : QVector<GalleryItem>());
}

void ReviewPanel::loadExemplars()
{
    QVector<QPair<qint64, double>> cells;
    const store::FlagEntry *flag = currentFlag();
    if (m_session && flag) {
        // The evidence cells of the concept's label, else the strongest cells of other patients.
        std::unordered_set<int64_t> own;
        for (const auto &c : m_candidates)
            own.insert(c.imageId);
        if (auto labels = m_session->readLedger().currentLabels(m_session->modelHashes())) {
            auto it = labels->find(flag->concept);
            if (it != labels->end() && !it->second.stale)
                for (int64_t id : it->second.entry.evidence)
                    if (!own.count(id) && cells.size() < 8)
                        cells.push_back({id, 0.0});
        }
        if (cells.isEmpty() && !m_latents.empty()) {
            if (auto top = m_session->db().topCells(m_session->run().id, m_latents.front(), 40))
                for (const auto &h : *top) {
                    auto img = m_session->db().image(h.imageId);
                    if (!own.count(h.imageId) && img && img->patientId != m_selection->patientId() && cells.size() < 8)
                        cells.push_back({h.imageId, double(h.maxPatch)});
                }
        }
    }
    m_exemplarModel->setItems(m_session ? m_session->conceptItems(cells, m_latents, m_scaleMax) : QVector<GalleryItem>());
}

void ReviewPanel::setCurrentIndex(int index)
{
    if (m_candidates.empty()) {
        m_index = -1;
    } else {
        m_index = std::clamp(index, 0, int(m_candidates.size()) - 1);
        m_candidateView->setCurrentIndex(m_candidateModel->index(m_index, 0));
    }
    showCurrent();
}

void ReviewPanel::showCurrent()
{
    updateHeader();
    const bool has = m_index >= 0;
    m_confirm->setEnabled(has);
    m_reject->setEnabled(has);
    if (!has) {
        m_view->setImage(QImage());
        m_view->clearOverlay();
        m_decision->setText(QString());
        return;
    }
    const auto &c = m_candidates[size_t(m_index)];
    m_decision->setText(c.decision ? tr("Cell %1 · activation %2 · <b>%3</b> by %4 at %5")
                                         .arg(c.imageId)
                                         .arg(c.value, 0, 'f', 3)
                                         .arg(q(c.decision->decision), q(c.decision->reviewer), q(c.decision->at))
                                   : tr("Cell %1 · activation %2 · <b>not reviewed</b>").arg(c.imageId).arg(c.value, 0, 'f', 3));
    const PatchGrid g = m_session->conceptGrid(c.imageId, m_latents);
    ActivationOverlay o;
    o.gridW = g.gridW;
    o.gridH = g.gridH;
    o.values = g.values;
    o.scaleMax = m_scaleMax;
    o.threshold = currentFlag() ? float(currentFlag()->threshold) : 0.2f;
    o.label = currentFlag() ? m_session->conceptTitle(q(currentFlag()->concept)) : QString();
    m_view->setOverlay(o);
    const auto cell = m_session->cell(c.imageId);
    const QString path = cell ? cell->path : QString();
    m_image.setFuture(QtConcurrent::run([path] { return loadCellImage(path); }));
}

void ReviewPanel::updateHeader()
{
    const store::FlagEntry *flag = currentFlag();
    if (!m_session || !flag) {
        m_header->setText(m_flags.empty() ? tr("No pathognomonic flags yet: flag a concept in the concept browser "
                                               "(Concepts ▸ Flag as Pathognomonic…).")
                                          : tr("Select a flagged concept."));
        m_signOff->setEnabled(false);
        m_report->setEnabled(false);
        return;
    }
    QString patient;
    for (const auto &p : m_session->patients())
        if (p.id == m_selection->patientId())
            patient = q(p.code);
    if (patient.isEmpty()) {
        m_header->setText(tr("Select a patient in the cohort."));
        m_signOff->setEnabled(false);
        m_report->setEnabled(false);
        return;
    }
    int open = 0, confirmed = 0;
    for (const auto &c : m_candidates) {
        open += !c.decision;
        confirmed += c.decision && c.decision->decision == "confirmed";
    }
    QString signed_;
    if (auto so = m_session->readLedger().signOffs(m_selection->patientId()))
        for (const auto &s : *so)
            if (s.flagUid == flag->uid)
                signed_ = tr(" · signed off by %1 at %2").arg(q(s.reviewer), q(s.at));
    m_header->setText(tr("<b>Patient %1</b>: %2 flagged cells, %3 open, %4 confirmed%5")
                          .arg(patient)
                          .arg(m_candidates.size())
                          .arg(open)
                          .arg(confirmed)
                          .arg(signed_));
    m_signOff->setEnabled(!m_candidates.empty());
    m_report->setEnabled(true);
}

bool ReviewPanel::decide(const QString &decision)
{
    if (m_index < 0 || !currentFlag())
        return false;
    QString error;
    store::AnnotationDb *db = m_session->ledgerFor(m_reviewer, &error);
    if (!db) {
        emit failed(error);
        return false;
    }
    store::ReviewEntry r;
    r.flagUid = currentFlag()->uid;
    r.imageId = m_candidates[size_t(m_index)].imageId;
    r.decision = decision.toStdString();
    r.reviewer = m_reviewer.trimmed().toStdString();
    auto added = db->appendReview(r);
    if (!added) {
        emit failed(tr("The decision was not saved: %1").arg(q(added.message())));
        return false;
    }
    m_candidates[size_t(m_index)].decision = *added;
    const int current = m_index;
    refreshCandidateItems();
    emit ledgerChanged();
    // Next open candidate after this one, else stay.
    int next = current;
    for (int i = 1; i <= int(m_candidates.size()); ++i) {
        const int j = (current + i) % int(m_candidates.size());
        if (!m_candidates[size_t(j)].decision) {
            next = j;
            break;
        }
    }
    setCurrentIndex(next == current && current + 1 < int(m_candidates.size()) ? current + 1 : next);
    return true;
}

bool ReviewPanel::signOff()
{
    const store::FlagEntry *flag = currentFlag();
    if (!m_session || !flag)
        return false;
    QString error;
    store::AnnotationDb *db = m_session->ledgerFor(m_reviewer, &error);
    if (!db) {
        emit failed(error);
        return false;
    }
    auto so = db->signOff(m_session->run().id, m_selection->patientId(), *flag, m_reviewer.trimmed().toStdString());
    if (!so) {
        emit failed(q(so.message()));
        return false;
    }
    emit message(tr("Signed off: %1 of %2 flagged cells confirmed.").arg(so->confirmed).arg(so->candidates));
    emit ledgerChanged();
    updateHeader();
    return true;
}

bool ReviewPanel::exportReport(const QString &path)
{
    const store::FlagEntry *flag = currentFlag();
    if (!m_session || !flag)
        return false;
    ReviewReportData data;
    for (const auto &p : m_session->patients())
        if (p.id == m_selection->patientId()) {
            data.patient = q(p.code);
            data.diagnosis = q(p.diagnosis);
        }
    data.concept = m_session->conceptTitle(q(flag->concept));
    data.threshold = QString::number(flag->threshold, 'f', 3);
    data.project = m_session->path();
    data.models = m_session->modelSummary();
    data.signOff = tr("not signed off");
    if (auto so = m_session->readLedger().signOffs(m_selection->patientId()))
        for (const auto &s : *so)
            if (s.flagUid == flag->uid)
                data.signOff = tr("signed off by %1 at %2: %3 of %4 flagged cells confirmed")
                                   .arg(q(s.reviewer), q(s.at))
                                   .arg(s.confirmed)
                                   .arg(s.candidates);
    data.generatedAt = QDateTime::currentDateTimeUtc().toString(Qt::ISODate);
    CellView renderer;
    renderer.resize(400, 400);
    for (const auto &c : m_candidates) {
        ReviewReportCell rc;
        rc.imageId = c.imageId;
        rc.value = c.value;
        if (c.decision) {
            rc.decision = q(c.decision->decision);
            rc.reviewer = q(c.decision->reviewer);
            rc.at = q(c.decision->at);
        }
        const auto cell = m_session->cell(c.imageId);
        renderer.setImage(cell ? loadCellImage(cell->path) : QImage());
        const PatchGrid g = m_session->conceptGrid(c.imageId, m_latents);
        ActivationOverlay o;
        o.gridW = g.gridW;
        o.gridH = g.gridH;
        o.values = g.values;
        o.scaleMax = m_scaleMax;
        o.threshold = float(flag->threshold);
        o.label = data.concept;
        renderer.setOverlay(o);
        rc.rendered = renderer.renderToImage();
        data.cells.push_back(rc);
    }
    QString error;
    if (!writeReviewReport(path, data, &error)) {
        emit failed(error);
        return false;
    }
    emit message(tr("Review report written to %1").arg(path));
    return true;
}
