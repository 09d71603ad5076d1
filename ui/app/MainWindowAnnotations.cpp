// The main window's annotation features: labelling concepts with undo/redo, concept groups,
// pathognomonic flags, precision checks and blinded double annotation, the review queue, the
// audit trail, and import/export of the ledger.

#include "app/MainWindow.h"
#include "app/SelectionModel.h"
#include "annotation/AnnotationController.h"
#include "annotation/AnnotationSessionDialog.h"
#include "annotation/AuditView.h"
#include "annotation/Exchange.h"
#include "annotation/LabelDialog.h"
#include "concepts/ConceptBrowser.h"
#include "cohort/CohortModel.h"
#include "concepts/ConceptTableModel.h"
#include "gallery/GalleryModel.h"
#include "common/MenuAction.h"
#include "review/ReviewPanel.h"

#include <QDockWidget>
#include <QFileInfo>
#include <QFileDialog>
#include <QInputDialog>
#include <QLabel>
#include <QMenu>
#include <QMenuBar>
#include <QMessageBox>
#include <QUndoStack>
#include <QtConcurrent/QtConcurrent>

#include <random>

namespace {

QString q(const std::string &s) { return QString::fromStdString(s); }

} // namespace

void MainWindow::buildAnnotationDocks()
{
    m_undo = new QUndoStack(this);
    m_annotations = new AnnotationController(m_undo, this);
    m_audit = new AuditView(this);
    m_review = new ReviewPanel(m_selection, m_thumbnails, this);

    auto makeDock = [this](const QString &title, const QString &name, QWidget *content) {
        auto *d = new QDockWidget(title, this);
        d->setObjectName(name);
        d->setWidget(content);
        return d;
    };
    auto *reviewDock = makeDock(tr("Review"), QStringLiteral("reviewDock"), m_review);
    auto *auditDock = makeDock(tr("Audit"), QStringLiteral("auditDock"), m_audit);
    addDockWidget(Qt::RightDockWidgetArea, reviewDock);
    addDockWidget(Qt::RightDockWidgetArea, auditDock);
    if (auto *patientDock = findChild<QDockWidget *>(QStringLiteral("patientDock"))) {
        tabifyDockWidget(patientDock, reviewDock);
        tabifyDockWidget(reviewDock, auditDock);
    }
    if (auto *cellDock = findChild<QDockWidget *>(QStringLiteral("cellDock")))
        cellDock->raise();

    connect(m_annotations, &AnnotationController::failed, this, [this](const QString &m) { showMessage(m, true); });
    connect(m_annotations, &AnnotationController::labelChanged, this, &MainWindow::onLabelChanged);
    connect(m_annotations, &AnnotationController::ledgerChanged, m_audit, &AuditView::refresh);
    connect(m_annotations, &AnnotationController::flagsChanged, this, [this] {
        m_review->reloadFlags();
        if (!m_session)
            return;
        auto flags = m_session->readLedger().activeFlags(m_session->modelHashes());
        QSet<int> on;
        if (flags)
            for (const auto &f : *flags)
                if (auto ref = store::ConceptRef::parse(f.concept); ref && !ref->isGroup())
                    on.insert(ref->latent);
        for (const ConceptRow &r : m_concepts->tableModel()->rows())
            if (r.pathognomonic != on.contains(r.latent))
                m_concepts->tableModel()->setPathognomonic(r.latent, on.contains(r.latent));
    });
    connect(m_review, &ReviewPanel::failed, this, [this](const QString &m) { showMessage(m, true); });
    connect(m_review, &ReviewPanel::message, this, [this](const QString &m) { showMessage(m); });
    connect(m_review, &ReviewPanel::ledgerChanged, m_audit, &AuditView::refresh);
    connect(m_review, &ReviewPanel::ledgerChanged, this, &MainWindow::updateFlagCounts);
    connect(m_review, &ReviewPanel::ledgerChanged, this, [this] { updateWhyFlagged(m_selection->imageId()); });
    connect(m_annotations, &AnnotationController::flagsChanged, this, [this] { updateWhyFlagged(m_selection->imageId()); });
    connect(m_annotations, &AnnotationController::flagsChanged, this, &MainWindow::updateFlagCounts);
    connect(&m_flagCountWatcher, &QFutureWatcher<QHash<qint64, QPair<qint64, qint64>>>::finished, this, [this] {
        if (m_flagCountWatcher.future().resultCount() > 0)
            m_cohortModel->setFlagCounts(m_flagCountWatcher.result());
    });
}

void MainWindow::buildAnnotationMenus(QMenu *edit, QMenu *file)
{
    QAction *undo = m_undo->createUndoAction(this, tr("&Undo"));
    undo->setShortcut(QKeySequence::Undo);
    undo->setObjectName(QStringLiteral("undoAction"));
    QAction *redo = m_undo->createRedoAction(this, tr("&Redo"));
    redo->setShortcut(QKeySequence::Redo);
    redo->setObjectName(QStringLiteral("redoAction"));
    edit->addAction(undo);
    edit->addAction(redo);
    edit->addSeparator();

    // Import/export of the ledger go above Quit in the File menu.
    QAction *quit = nullptr;
    for (QAction *a : file->actions())
        if (a->objectName() == QLatin1String("quitAction"))
            quit = a;
    QMenu scratch;
    QAction *exp = addMenuAction(&scratch, this, tr("E&xport Annotations…"), QKeySequence(), &MainWindow::chooseExportAnnotations,
                             QStringLiteral("exportAnnotationsAction"));
    QAction *imp = addMenuAction(&scratch, this, tr("Import A&nnotations…"), QKeySequence(), &MainWindow::chooseImportAnnotations,
                             QStringLiteral("importAnnotationsAction"));
    for (QAction *a : {exp, imp}) {
        a->setParent(this);
        file->insertAction(quit, a);
    }
    file->insertSeparator(quit);

    QMenu *concepts = menuBar()->addMenu(tr("&Concepts"));
    addMenuAction(concepts, this, tr("&Label Concept…"), QKeySequence(tr("Ctrl+L")), [this] { chooseLabel({}); },
              QStringLiteral("labelConceptAction"));
    addMenuAction(concepts, this, tr("&Validate Label"), QKeySequence(tr("Ctrl+Shift+V")),
              [this] { chooseLabel(QStringLiteral("validated")); }, QStringLiteral("validateLabelAction"));
    addMenuAction(concepts, this, tr("Re&ject Label"), QKeySequence(tr("Ctrl+Shift+J")),
              [this] { chooseLabel(QStringLiteral("rejected")); }, QStringLiteral("rejectLabelAction"));
    concepts->addSeparator();
    addMenuAction(concepts, this, tr("New &Group from Selected Concepts…"), QKeySequence(tr("Ctrl+Shift+G")),
              &MainWindow::chooseGroupFromSelection, QStringLiteral("newGroupAction"));
    addMenuAction(concepts, this, tr("Add Selected Concepts to a Group…"), QKeySequence(),
               &MainWindow::chooseAddToGroup, QStringLiteral("addToGroupAction"));
    addMenuAction(concepts, this, tr("Label a G&roup…"), QKeySequence(), [this] { chooseGroupAction(true); },
              QStringLiteral("labelGroupAction"));
    addMenuAction(concepts, this, tr("Flag a Group as Pathognomonic…"), QKeySequence(), [this] { chooseGroupAction(false); },
              QStringLiteral("flagGroupAction"));
    concepts->addSeparator();
    addMenuAction(concepts, this, tr("Flag as &Pathognomonic…"), QKeySequence(tr("Ctrl+Shift+P")),
              [this] { chooseFlag(currentConceptKey()); }, QStringLiteral("flagConceptAction"));
    concepts->addSeparator();
    addMenuAction(concepts, this, tr("Check &Precision…"), QKeySequence(tr("Ctrl+Shift+K")),
              [this] { chooseStartTask(QStringLiteral("precision")); }, QStringLiteral("precisionCheckAction"));
    addMenuAction(concepts, this, tr("Start &Double Annotation…"), QKeySequence(),
              [this] { chooseStartTask(QStringLiteral("agreement")); }, QStringLiteral("doubleAnnotationAction"));
    addMenuAction(concepts, this, tr("&Annotate a Task…"), QKeySequence(tr("Ctrl+Shift+A")), [this] { chooseOpenTask(false); },
              QStringLiteral("annotateTaskAction"));
    addMenuAction(concepts, this, tr("Ad&judicate a Task…"), QKeySequence(), [this] { chooseOpenTask(true); },
              QStringLiteral("adjudicateTaskAction"));
}

QString MainWindow::currentConceptKey() const
{
    const int latent = m_selection->latent();
    return latent >= 0 ? QString::fromStdString(store::ConceptRef::ofLatent(latent).key()) : QString();
}

void MainWindow::updateFlagCounts()
{
    if (!m_session || !m_session->hasRun()) {
        m_cohortModel->setFlagCounts({});
        return;
    }
    const QString path = m_session->path();
    const qint64 runId = m_session->run().id;
    const store::ModelHashes hashes = m_session->modelHashes();
    m_flagCountWatcher.setFuture(QtConcurrent::run([path, runId, hashes] {
        QHash<qint64, QPair<qint64, qint64>> out;
        auto db = store::ProjectDb::open(path.toStdString(), store::ProjectDb::OpenMode::ReadOnly, store::ProjectDb::Verify::Trusted);
        if (!db)
            return out;
        store::AnnotationDb ledger(*db);
        auto flags = ledger.activeFlags(hashes);
        if (!flags)
            return out;
        if (auto counts = ledger.flaggedCounts(runId, *flags))
            for (const auto &[patient, c] : *counts)
                out.insert(patient, {c.flagged, c.open});
        return out;
    }));
}

void MainWindow::updateWhyFlagged(qint64 imageId)
{
    QStringList lines;
    if (m_session && m_session->hasRun() && imageId) {
        store::AnnotationDb ledger = m_session->readLedger();
        auto flags = ledger.activeFlags(m_session->modelHashes());
        QHash<int, float> maxPatch;
        for (const auto &c : m_session->conceptsOfCell(imageId))
            maxPatch.insert(c.latent, c.maxPatch);
        if (flags)
            for (const auto &f : *flags) {
                float value = 0;
                for (int32_t l : m_session->latentsOf(q(f.concept)))
                    value = std::max(value, maxPatch.value(l, 0.f));
                if (value < f.threshold || value <= 0)
                    continue;
                QString decision = tr("not reviewed yet");
                if (auto review = ledger.latestReview(f.uid, imageId); review && *review)
                    decision = tr("%1 by %2").arg(q((*review)->decision), q((*review)->reviewer));
                lines << tr("<b>Flagged</b>: %1 reaches %2 (threshold %3): %4")
                             .arg(m_session->conceptTitle(q(f.concept)).toHtmlEscaped())
                             .arg(double(value), 0, 'f', 3)
                             .arg(f.threshold, 0, 'f', 3)
                             .arg(decision);
            }
    }
    m_whyFlagged->setText(lines.join(QStringLiteral("<br>")));
    m_whyFlagged->setVisible(!lines.isEmpty());
}

void MainWindow::onLabelChanged(const QString &conceptKey)
{
    const auto ref = store::ConceptRef::parse(conceptKey.toStdString());
    if (!ref || ref->isGroup() || !m_session)
        return;
    auto labels = m_session->readLedger().currentLabels(m_session->modelHashes());
    if (!labels)
        return;
    auto it = labels->find(conceptKey.toStdString());
    if (it == labels->end())
        m_concepts->tableModel()->setLabel(ref->latent, {}, {}, false);
    else
        m_concepts->tableModel()->setLabel(ref->latent, q(it->second.entry.label), q(it->second.entry.status),
                                           it->second.stale);
}

bool MainWindow::labelCurrentConcept(const QString &label, const QString &status, const QString &note)
{
    const QString key = currentConceptKey();
    if (key.isEmpty()) {
        showMessage(tr("Select a concept first."), true);
        return false;
    }
    LabelEdit edit{key, label, status, note, {}};
    // The strongest cells the annotator was looking at are the evidence.
    const auto &top = m_concepts->topCellsModel()->items();
    for (int i = 0; i < top.size() && i < 8; ++i)
        edit.evidence << top[i].imageId;
    if (!m_annotations->setLabel(edit))
        return false;
    showMessage(tr("%1 labelled \"%2\" (%3). Undo with Ctrl+Z.").arg(key, label, status));
    return true;
}

void MainWindow::chooseLabel(const QString &status)
{
    const QString key = currentConceptKey();
    if (!m_session || key.isEmpty()) {
        showMessage(tr("Select a concept first."), true);
        return;
    }
    const auto current = m_annotations->currentLabel(key);
    // Validate/reject keep the current name; without one, ask for it.
    if (!status.isEmpty() && current) {
        labelCurrentConcept(current->label, status, current->note);
        return;
    }
    LabelDialog dialog(m_session->conceptTitle(key), current ? current->label : QString(),
                       status.isEmpty() ? (current ? current->status : QString()) : status, this);
    if (dialog.exec() == QDialog::Accepted)
        labelCurrentConcept(dialog.label(), dialog.status(), dialog.note());
}

void MainWindow::chooseGroupFromSelection()
{
    const QVector<int> latents = m_concepts->selectedLatents();
    if (latents.size() < 2) {
        showMessage(tr("Select two or more concepts in the concept table (Ctrl+click), then group them."), true);
        return;
    }
    bool ok = false;
    const QString name = QInputDialog::getText(this, tr("New Concept Group"),
                                               tr("Name of the group of %1 latents:").arg(latents.size()),
                                               QLineEdit::Normal, QString(), &ok);
    if (!ok || name.trimmed().isEmpty())
        return;
    const QString uid = m_annotations->saveGroup({}, name, std::vector<int32_t>(latents.begin(), latents.end()));
    if (!uid.isEmpty())
        showMessage(tr("Group \"%1\" created with latents %2.").arg(name.trimmed()).arg(
            [&] {
                QStringList l;
                for (int x : latents)
                    l << QString::number(x);
                return l.join(QStringLiteral(", "));
            }()));
}

void MainWindow::chooseGroupAction(bool label)
{
    if (!m_session)
        return;
    auto groups = m_session->readLedger().groups();
    if (!groups || groups->empty()) {
        showMessage(tr("No concept groups yet: select concepts and use Concepts ▸ New Group from Selected Concepts."),
                    true);
        return;
    }
    QStringList names;
    for (const auto &g : *groups)
        names << tr("%1 (v%2: %3 latents)").arg(q(g.name)).arg(g.version).arg(g.latents.size());
    bool ok = false;
    const QString picked = QInputDialog::getItem(this, tr("Concept Group"), tr("Group:"), names, 0, false, &ok);
    if (!ok)
        return;
    const auto &g = (*groups)[size_t(names.indexOf(picked))];
    const QString key = QString::fromStdString(store::ConceptRef::ofGroup(g.groupUid).key());
    if (!label) {
        chooseFlag(key);
        return;
    }
    const auto current = m_annotations->currentLabel(key);
    LabelDialog dialog(m_session->conceptTitle(key), current ? current->label : QString(),
                       current ? current->status : QString(), this);
    if (dialog.exec() == QDialog::Accepted)
        m_annotations->setLabel({key, dialog.label(), dialog.status(), dialog.note(), {}});
}

void MainWindow::chooseAddToGroup()
{
    const QVector<int> selected = m_concepts->selectedLatents();
    if (!m_session || selected.isEmpty()) {
        showMessage(tr("Select the concepts to add in the concept table first."), true);
        return;
    }
    auto groups = m_session->readLedger().groups();
    if (!groups || groups->empty()) {
        showMessage(tr("No concept groups yet: use Concepts ▸ New Group from Selected Concepts."), true);
        return;
    }
    QStringList names;
    for (const auto &g : *groups)
        names << tr("%1 (v%2: %3 latents)").arg(q(g.name)).arg(g.version).arg(g.latents.size());
    bool ok = false;
    const QString picked = QInputDialog::getItem(this, tr("Add to Concept Group"), tr("Group:"), names, 0, false, &ok);
    if (!ok)
        return;
    const auto &g = (*groups)[size_t(names.indexOf(picked))];
    std::vector<int32_t> latents = g.latents;
    latents.insert(latents.end(), selected.begin(), selected.end());
    // The group's next version: the old members plus the selection.
    if (!m_annotations->saveGroup(q(g.groupUid), q(g.name), latents).isEmpty())
        showMessage(tr("Group \"%1\" now has version %2.").arg(q(g.name)).arg(g.version + 1));
}

bool MainWindow::flagCurrentConcept(double threshold)
{
    const QString key = currentConceptKey();
    if (key.isEmpty()) {
        showMessage(tr("Select a concept first."), true);
        return false;
    }
    return m_annotations->flagPathognomonic(key, threshold, true);
}

void MainWindow::chooseFlag(const QString &conceptKey)
{
    if (!m_session || conceptKey.isEmpty()) {
        showMessage(tr("Select a concept first."), true);
        return;
    }
    // Default: the concept's validated threshold from a precision check, else the run's 0.2.
    double threshold = m_session->hasRun() ? m_session->run().patchThreshold : 0.2;
    if (auto validated = m_session->readLedger().validatedThresholds(m_session->modelHashes()))
        if (auto it = validated->find(conceptKey.toStdString()); it != validated->end())
            threshold = it->second;
    bool ok = false;
    const double value = QInputDialog::getDouble(
        this, tr("Flag as Pathognomonic"),
        tr("%1\n\nCells whose strongest patch reaches this activation go to the review queue:")
            .arg(m_session->conceptTitle(conceptKey)),
        threshold, 0.0, 1000.0, 3, &ok);
    if (ok && m_annotations->flagPathognomonic(conceptKey, value, true))
        showMessage(tr("%1 flagged as pathognomonic from %2. Review its cells per patient in the Review tab.")
                        .arg(m_session->conceptTitle(conceptKey))
                        .arg(value, 0, 'f', 3));
}

QString MainWindow::createPrecisionTask(const QString &kind, int bins, int perBin, int negatives)
{
    const QString key = currentConceptKey();
    if (!m_session || !m_session->hasRun() || key.isEmpty()) {
        showMessage(tr("Select a concept of a finished run first."), true);
        return {};
    }
    const QString author = m_annotations->annotator();
    QString error;
    store::AnnotationDb *db = m_session->ledgerFor(author, &error);
    if (!db) {
        showMessage(error, true);
        return {};
    }
    const uint64_t seed = std::random_device{}();
    auto task = db->createTask(m_session->run().id, kind.toStdString(), key.toStdString(), bins, perBin, negatives,
                               m_session->run().patchThreshold, seed, author.trimmed().toStdString());
    if (!task) {
        showMessage(tr("No task was created: %1").arg(q(task.message())), true);
        return {};
    }
    m_audit->refresh();
    return q(task->uid);
}

void MainWindow::chooseStartTask(const QString &kind)
{
    const QString uid = createPrecisionTask(kind, 5, 6, 10);
    if (uid.isEmpty())
        return;
    if (kind == QLatin1String("agreement"))
        showMessage(tr("Double annotation task created (30 cells across 5 activation bins + 10 controls). Each "
                       "annotator opens it with Concepts ▸ Annotate a Task; answers stay blinded."));
    AnnotationSessionDialog dialog(m_session.get(), uid, m_annotations->annotator(), AnnotationSessionDialog::Mode::Rate,
                                   this);
    connect(&dialog, &AnnotationSessionDialog::failed, this, [this](const QString &m) { showMessage(m, true); });
    connect(&dialog, &AnnotationSessionDialog::ledgerChanged, m_audit, &AuditView::refresh);
    dialog.exec();
}

void MainWindow::chooseOpenTask(bool adjudicate)
{
    if (!m_session)
        return;
    auto tasks = m_session->readLedger().tasks();
    QStringList names;
    std::vector<store::AnnotationTask> shown;
    if (tasks)
        for (const auto &t : *tasks)
            if (!adjudicate || t.kind == "agreement") {
                names << tr("%1 · %2 · by %3 at %4").arg(q(t.kind), m_session->conceptTitle(q(t.concept)), q(t.createdBy), q(t.at));
                shown.push_back(t);
            }
    if (names.isEmpty()) {
        showMessage(adjudicate ? tr("No double-annotation tasks yet (Concepts ▸ Start Double Annotation).")
                               : tr("No annotation tasks yet (Concepts ▸ Check Precision or Start Double Annotation)."),
                    true);
        return;
    }
    bool ok = false;
    const QString picked = QInputDialog::getItem(this, tr("Annotation Task"), tr("Task:"), names, names.size() - 1, false, &ok);
    if (!ok)
        return;
    const auto &t = shown[size_t(names.indexOf(picked))];
    AnnotationSessionDialog dialog(m_session.get(), q(t.uid), m_annotations->annotator(),
                                   adjudicate ? AnnotationSessionDialog::Mode::Adjudicate
                                              : AnnotationSessionDialog::Mode::Rate,
                                   this);
    if (!dialog.isValid()) {
        showMessage(dialog.problem(), true);
        return;
    }
    connect(&dialog, &AnnotationSessionDialog::failed, this, [this](const QString &m) { showMessage(m, true); });
    connect(&dialog, &AnnotationSessionDialog::ledgerChanged, m_audit, &AuditView::refresh);
    dialog.exec();
}

bool MainWindow::exportAnnotations(const QString &path)
{
    if (!m_session)
        return false;
    store::AnnotationDb db = m_session->readLedger();
    if (cytosae::Status s = cytosae::annotation::exportAnnotations(db, path.toStdString()); !s) {
        showMessage(tr("Export failed: %1").arg(q(s.message())), true);
        return false;
    }
    showMessage(tr("Annotations exported to %1").arg(path));
    return true;
}

bool MainWindow::importAnnotations(const QString &path)
{
    if (!m_session)
        return false;
    QString error;
    store::AnnotationDb *db = m_session->ledger(&error);
    if (!db) {
        showMessage(error, true);
        return false;
    }
    auto report = cytosae::annotation::importAnnotations(*db, path.toStdString());
    if (!report) {
        showMessage(tr("Import failed: %1").arg(q(report.message())), true);
        return false;
    }
    reloadViews();
    m_audit->refresh();
    m_review->reloadFlags();
    QString text = tr("Imported %1 entries from %2 (%3 already present).")
                       .arg(report->added)
                       .arg(path)
                       .arg(report->alreadyPresent);
    if (!report->problems.empty()) {
        text += tr(" %1 rows skipped: %2").arg(report->problems.size()).arg(q(report->problems.front()));
        showMessage(text, true);
        return false;
    }
    showMessage(text);
    return true;
}

void MainWindow::chooseExportAnnotations()
{
    const QString path = QFileDialog::getSaveFileName(
        this, tr("Export Annotations"), QStringLiteral("annotations.json"),
        tr("JSON (*.json);;Folder of CSV files (*)"));
    if (!path.isEmpty())
        exportAnnotations(path);
}

void MainWindow::chooseImportAnnotations()
{
    const QString path = QFileDialog::getOpenFileName(this, tr("Import Annotations"), QString(),
                                                      tr("JSON (*.json);;CSV table in a folder (*.csv)"));
    if (path.isEmpty())
        return;
    // A CSV export is a folder: picking any of its tables imports the folder.
    importAnnotations(path.endsWith(QLatin1String(".csv")) ? QFileInfo(path).absolutePath() : path);
}
