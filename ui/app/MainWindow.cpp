#include "app/MainWindow.h"
#include "annotation/AnnotationController.h"
#include "annotation/AuditView.h"
#include "review/ReviewPanel.h"

#include "analysis/CohortAnalysisView.h"
#include "app/SelectionModel.h"
#include "cohort/CohortModel.h"
#include "common/ImageConvert.h"
#include "common/MenuAction.h"
#include "concepts/ConceptBrowser.h"
#include "gallery/GalleryItem.h"
#include "gallery/GalleryModel.h"
#include "gallery/GalleryView.h"
#include "gallery/ThumbnailLoader.h"
#include "patient/PatientSummary.h"
#include "settings/SettingsDialog.h"
#include "smear/SmearView.h"
#include "tasks/BackgroundTask.h"
#include "viewer/CellView.h"
#include "viewer/CellViewerPanel.h"

#include "pipeline/Importer.h"
#include "pipeline/Runner.h"

#include <QApplication>
#include <QCloseEvent>
#include <QDockWidget>
#include <QFileDialog>
#include <QFileInfo>
#include <QHeaderView>
#include <QInputDialog>
#include <QLabel>
#include <QMenuBar>
#include <QMessageBox>
#include <QProgressBar>
#include <QSettings>
#include <QSortFilterProxyModel>
#include <QStatusBar>
#include <QTableView>
#include <QTableWidget>
#include <QThreadPool>
#include <QToolButton>
#include <QUndoStack>
#include <QVBoxLayout>
#include <QtConcurrent/QtConcurrent>

namespace {

QDockWidget *dock(const QString &title, const QString &name, QWidget *content, QWidget *parent)
{
    auto *d = new QDockWidget(title, parent);
    d->setObjectName(name);
    d->setWidget(content);
    return d;
}

QString etaText(double seconds)
{
    if (seconds < 0)
        return QStringLiteral("--:--");
    const qint64 s = qint64(seconds + 0.5);
    return s >= 3600 ? QStringLiteral("%1:%2:%3").arg(s / 3600).arg((s / 60) % 60, 2, 10, QChar('0')).arg(s % 60, 2, 10, QChar('0'))
                     : QStringLiteral("%1:%2").arg(s / 60).arg(s % 60, 2, 10, QChar('0'));
}

} // namespace

MainWindow::MainWindow(QWidget *parent) : QMainWindow(parent)
{
    setObjectName(QStringLiteral("mainWindow"));
    setWindowTitle(tr("CytoSAE Explorer"));
    setDockNestingEnabled(true);
    m_selection = new SelectionModel(this);
    // Background queries and thumbnail decodes yield to the GUI thread (SCHED_IDLE on Linux):
    // on a two-core machine they would otherwise take the cores a repaint needs.
    QThreadPool::globalInstance()->setThreadPriority(QThread::IdlePriority);
    m_thumbnails = new ThumbnailLoader([](const QString &path, QString *error) { return loadCellImage(path, error); },
                                       112, this);

    m_cellViewer = new CellViewerPanel(this);
    setCentralWidget(m_cellViewer);

    buildDocks();
    buildAnnotationDocks();
    buildMenus();

    m_statusText = new QLabel(this);
    m_statusText->setObjectName(QStringLiteral("statusText"));
    m_progress = new QProgressBar(this);
    m_progress->setObjectName(QStringLiteral("taskProgress"));
    m_progress->setMaximumWidth(260);
    m_progress->setFormat(QStringLiteral("%v / %m"));
    m_progress->hide();
    m_cancelButton = new QToolButton(this);
    m_cancelButton->setObjectName(QStringLiteral("cancelTaskButton"));
    m_cancelButton->setText(tr("Cancel"));
    m_cancelButton->setToolTip(tr("Cancel the running task (Esc); a cancelled run resumes where it stopped"));
    m_cancelButton->hide();
    connect(m_cancelButton, &QToolButton::clicked, this, &MainWindow::cancelTask);
    statusBar()->addWidget(m_statusText, 1);
    statusBar()->addPermanentWidget(m_progress);
    statusBar()->addPermanentWidget(m_cancelButton);

    // Linked views: every change of the shared selection updates the views that show it.
    connect(m_selection, &SelectionModel::imageChanged, this, &MainWindow::showCell);
    connect(m_selection, &SelectionModel::latentChanged, this, [this] {
        updateOverlay();
        updateGallery();
    });
    connect(m_selection, &SelectionModel::patientChanged, this, [this](qint64 id) {
        const int row = m_cohortModel->rowOfPatient(id);
        auto *proxy = static_cast<QSortFilterProxyModel *>(m_cohortView->model());
        const QModelIndex idx = row >= 0 ? proxy->mapFromSource(m_cohortModel->index(row, 0)) : QModelIndex();
        if (idx.isValid() && m_cohortView->currentIndex().row() != idx.row()) {
            QSignalBlocker block(m_cohortView->selectionModel());
            m_cohortView->setCurrentIndex(idx);
        }
        updateGallery();
    });
    connect(m_concepts, &ConceptBrowser::scaleLoaded, this, [this](int latent, float scale) {
        m_scaleOf[latent] = scale;
        if (latent == m_selection->latent())
            updateOverlay();
    });
    connect(m_cellViewer, &CellViewerPanel::patchHovered, this, &MainWindow::showPatchConcepts);
    connect(m_cellViewer, &CellViewerPanel::patchClicked, this, &MainWindow::showPatchConcepts);
    connect(&m_galleryWatcher, &QFutureWatcher<QVector<GalleryItem>>::finished, this, [this] {
        if (m_galleryWatcher.isCanceled() || m_galleryWatcher.future().resultCount() == 0)
            return; // superseded by a newer request
        const auto items = m_galleryWatcher.result();
        m_galleryModel->setItems(items);
        m_galleryTitle->setText(tr("%1 (%2)").arg(m_pendingGalleryTitle).arg(items.size()));
    });
    connect(&m_checkWatcher, &QFutureWatcher<CheckResult>::finished, this, [this] {
        if (m_checkWatcher.future().resultCount() == 0)
            return;
        const CheckResult r = m_checkWatcher.result();
        if (!m_session || m_session->path() != r.path)
            return; // another project was opened meanwhile
        if (r.problems.isEmpty()) {
            m_session->setIntegrity(ProjectSession::Integrity::Intact);
            return;
        }
        m_session->setIntegrity(ProjectSession::Integrity::Damaged, r.problems);
        showMessage(tr("%1 is damaged: %2. Nothing will be written to it (labels, runs, imports are refused); "
                       "the views may be incomplete. Restore the project from a copy; 'cytosae check %1' lists "
                       "what is affected.")
                        .arg(r.path, r.problems),
                    true);
    });
    connect(&m_imageWatcher, &QFutureWatcher<QImage>::finished, this, [this] {
        if (m_imageWatcher.future().resultCount() == 0)
            return;
        m_cellViewer->setImage(m_imageWatcher.result());
        updateOverlay();
    });

    resize(1500, 950);
    m_defaultState = saveState();
    QSettings settings;
    restoreGeometry(settings.value(QStringLiteral("window/geometry")).toByteArray());
    restoreState(settings.value(QStringLiteral("window/state")).toByteArray());
    m_cellViewer->restoreState(settings);
    applySettings();
    updateRecentMenu();
    showMessage(tr("Open a project (Ctrl+O) or create one from a folder of images (Ctrl+N)."));
}

MainWindow::~MainWindow()
{
    if (m_task)
        m_task->cancel();
    delete m_task; // waits for the worker
}

void MainWindow::buildDocks()
{
    m_cohortModel = new CohortModel(this);
    auto *cohortProxy = new QSortFilterProxyModel(this);
    cohortProxy->setSourceModel(m_cohortModel);
    cohortProxy->setSortRole(CohortModel::SortRole);
    m_cohortView = new QTableView(this);
    m_cohortView->setObjectName(QStringLiteral("cohortView"));
    m_cohortView->setModel(cohortProxy);
    m_cohortView->setSortingEnabled(true);
    m_cohortView->sortByColumn(CohortModel::Code, Qt::AscendingOrder);
    m_cohortView->setSelectionBehavior(QAbstractItemView::SelectRows);
    m_cohortView->setSelectionMode(QAbstractItemView::SingleSelection);
    m_cohortView->verticalHeader()->hide();
    m_cohortView->horizontalHeader()->setStretchLastSection(true);
    connect(m_cohortView->selectionModel(), &QItemSelectionModel::currentRowChanged, this, [this](const QModelIndex &idx) {
        if (idx.isValid())
            m_selection->setPatient(idx.data(CohortModel::PatientIdRole).toLongLong());
    });

    m_concepts = new ConceptBrowser(m_selection, m_thumbnails, this);
    m_patient = new PatientSummary(m_selection, this);
    m_analysis = new CohortAnalysisView(m_selection, this);
    m_smear = new SmearView(m_selection, this);

    auto *galleryBox = new QWidget(this);
    auto *gl = new QVBoxLayout(galleryBox);
    gl->setContentsMargins(2, 2, 2, 2);
    m_galleryTitle = new QLabel(tr("Cells"), galleryBox);
    m_galleryTitle->setObjectName(QStringLiteral("galleryTitle"));
    m_galleryModel = new GalleryModel(m_thumbnails, this);
    m_galleryModel->setOverlaysVisible(true);
    m_gallery = new GalleryView(galleryBox);
    m_gallery->setObjectName(QStringLiteral("cellGallery"));
    m_gallery->setModel(m_galleryModel);
    gl->addWidget(m_galleryTitle);
    gl->addWidget(m_gallery, 1);
    connect(m_gallery, &GalleryView::imageActivated, m_selection, &SelectionModel::setImage);

    auto *cellBox = new QWidget(this);
    auto *cl = new QVBoxLayout(cellBox);
    cl->setContentsMargins(2, 2, 2, 2);
    m_cellHeader = new QLabel(tr("No cell selected"), cellBox);
    m_cellHeader->setObjectName(QStringLiteral("cellHeader"));
    m_cellHeader->setWordWrap(true);
    m_cellConcepts = new QTableWidget(0, 4, cellBox);
    m_cellConcepts->setObjectName(QStringLiteral("cellConcepts"));
    m_cellConcepts->setHorizontalHeaderLabels({tr("Latent"), tr("Mean"), tr("Max patch"), tr("Patches > thr.")});
    m_cellConcepts->verticalHeader()->hide();
    m_cellConcepts->setEditTriggers(QAbstractItemView::NoEditTriggers);
    m_cellConcepts->setSelectionBehavior(QAbstractItemView::SelectRows);
    m_cellConcepts->horizontalHeader()->setStretchLastSection(true);
    connect(m_cellConcepts, &QTableWidget::cellClicked, this, [this](int row, int) {
        if (row >= 0 && row < m_cellConceptRows.size())
            m_selection->setLatent(m_cellConceptRows[row].latent);
    });
    m_patchConcepts = new QLabel(tr("Hover a patch to see its strongest concepts."), cellBox);
    m_patchConcepts->setObjectName(QStringLiteral("patchConcepts"));
    m_patchConcepts->setWordWrap(true);
    m_whyFlagged = new QLabel(cellBox);
    m_whyFlagged->setObjectName(QStringLiteral("whyFlagged"));
    m_whyFlagged->setWordWrap(true);
    m_whyFlagged->hide();
    cl->addWidget(m_cellHeader);
    cl->addWidget(m_whyFlagged);
    cl->addWidget(new QLabel(tr("Concepts of this cell (image-level activation)"), cellBox));
    cl->addWidget(m_cellConcepts, 1);
    cl->addWidget(m_patchConcepts);

    auto *cohortDock = dock(tr("Cohort"), QStringLiteral("cohortDock"), m_cohortView, this);
    auto *conceptDock = dock(tr("Concepts"), QStringLiteral("conceptDock"), m_concepts, this);
    auto *galleryDock = dock(tr("Gallery"), QStringLiteral("galleryDock"), galleryBox, this);
    auto *patientDock = dock(tr("Patient"), QStringLiteral("patientDock"), m_patient, this);
    auto *cellDock = dock(tr("Cell"), QStringLiteral("cellDock"), cellBox, this);
    auto *analysisDock = dock(tr("Cohort analysis"), QStringLiteral("cohortAnalysisDock"), m_analysis, this);
    addDockWidget(Qt::LeftDockWidgetArea, cohortDock);
    addDockWidget(Qt::LeftDockWidgetArea, conceptDock);
    splitDockWidget(cohortDock, conceptDock, Qt::Vertical);
    addDockWidget(Qt::RightDockWidgetArea, cellDock);
    addDockWidget(Qt::RightDockWidgetArea, patientDock);
    tabifyDockWidget(cellDock, patientDock);
    tabifyDockWidget(patientDock, analysisDock);
    auto *smearDock = dock(tr("Smear"), QStringLiteral("smearDock"), m_smear, this);
    addDockWidget(Qt::RightDockWidgetArea, smearDock);
    tabifyDockWidget(patientDock, smearDock);
    cellDock->raise();
    addDockWidget(Qt::BottomDockWidgetArea, galleryDock);
    resizeDocks({cohortDock, conceptDock}, {220, 600}, Qt::Vertical);
    resizeDocks({conceptDock, cellDock}, {520, 380}, Qt::Horizontal);
    resizeDocks({galleryDock}, {260}, Qt::Vertical);
}

void MainWindow::buildMenus()
{
    QMenu *file = menuBar()->addMenu(tr("&File"));
    auto add = [this](QMenu *menu, const QString &text, const QKeySequence &key, auto slot, const QString &name) {
        return addMenuAction(menu, this, text, key, slot, name);
    };
    add(file, tr("&New Project from Folder…"), QKeySequence::New, &MainWindow::chooseNewProject, "newProjectAction");
    add(file, tr("&Open Project…"), QKeySequence::Open, &MainWindow::chooseOpenProject, "openProjectAction");
    m_recentMenu = file->addMenu(tr("Open &Recent"));
    file->addSeparator();
    add(file, tr("&Import Folder…"), QKeySequence(tr("Ctrl+I")), &MainWindow::chooseImportFolder, "importFolderAction");
    add(file, tr("Import &Manifest (CSV)…"), QKeySequence(tr("Ctrl+Shift+I")), &MainWindow::chooseImportManifest,
        "importManifestAction");
    file->addSeparator();
    add(file, tr("&Export Cell View as PNG…"), QKeySequence(tr("Ctrl+Shift+E")), &MainWindow::exportCellView,
        "exportCellAction");
    file->addSeparator();
    add(file, tr("&Quit"), QKeySequence::Quit, &QWidget::close, "quitAction");

    QMenu *edit = menuBar()->addMenu(tr("&Edit"));
    buildAnnotationMenus(edit, file);
    add(edit, tr("&Settings…"), QKeySequence(tr("Ctrl+,")), &MainWindow::editSettings, "settingsAction");

    QMenu *run = menuBar()->addMenu(tr("&Run"));
    add(run, tr("&Run Models…"), QKeySequence(tr("Ctrl+R")), &MainWindow::chooseRunModels, "runModelsAction");
    add(run, tr("&Cancel Task"), QKeySequence(Qt::Key_Escape), &MainWindow::cancelTask, "cancelTaskAction");

    QMenu *go = menuBar()->addMenu(tr("&Go"));
    add(go, tr("Find &Concept"), QKeySequence::Find, [this] {
        if (auto *search = m_concepts->findChild<QWidget *>(QStringLiteral("conceptSearch")))
            search->setFocus();
    }, "findConceptAction");
    add(go, tr("&Gallery"), QKeySequence(tr("Ctrl+G")), [this] { m_gallery->setFocus(); }, "focusGalleryAction");

    m_viewMenu = menuBar()->addMenu(tr("&View"));
    for (QDockWidget *d : findChildren<QDockWidget *>())
        m_viewMenu->addAction(d->toggleViewAction());
    m_viewMenu->addSeparator();
    add(m_viewMenu, tr("Reset &Layout"), QKeySequence(), [this] { restoreState(m_defaultState); }, "resetLayoutAction");

    QMenu *help = menuBar()->addMenu(tr("&Help"));
    add(help, tr("&About CytoSAE Explorer"), QKeySequence(), &MainWindow::showAbout, "aboutAction");
}

void MainWindow::closeEvent(QCloseEvent *event)
{
    if (m_task && m_task->isRunning()) {
        const auto answer = QMessageBox::question(this, tr("A task is running"),
                                                  tr("“%1” is still running. Cancel it and quit? A cancelled run "
                                                     "resumes where it stopped next time.")
                                                      .arg(m_task->title()));
        if (answer != QMessageBox::Yes) {
            event->ignore();
            return;
        }
        m_task->cancel();
    }
    QSettings settings;
    settings.setValue(QStringLiteral("window/geometry"), saveGeometry());
    settings.setValue(QStringLiteral("window/state"), saveState());
    m_cellViewer->saveState(settings);
    event->accept();
}

// ---- projects --------------------------------------------------------------------------

bool MainWindow::openProject(const QString &path)
{
    QString error;
    auto session = ProjectSession::open(path, &error);
    if (!session) {
        showMessage(tr("Cannot open %1: %2").arg(path, error), true);
        return false;
    }
    m_thumbnails->clearCache();
    m_scaleOf.clear();
    m_session = std::move(session);
    m_undo->clear(); // undo steps belong to the project they were made in
    m_selection->clear();
    // Integrity check in the background: a large project opens at once and is still verified.
    if (!m_session->upgradeBackup().isEmpty())
        showMessage(tr("%1 was upgraded to this version's format; the file as it was is kept as %2.")
                        .arg(path, m_session->upgradeBackup()),
                    false);
    if (m_session->integrity() == ProjectSession::Integrity::Unchecked)
        m_checkWatcher.setFuture(QtConcurrent::run([path]() -> CheckResult {
            auto db = store::ProjectDb::open(path.toStdString(), store::ProjectDb::OpenMode::ReadOnly,
                                             store::ProjectDb::Verify::Trusted);
            if (!db)
                return {path, QString::fromStdString(db.message())};
            auto check = db->quickCheck();
            if (!check)
                return {path, QString::fromStdString(check.message())};
            return {path, *check == "ok" ? QString() : QString::fromStdString(*check)};
        }));
    setWindowTitle(tr("%1 — CytoSAE Explorer").arg(QFileInfo(path).fileName()));
    addRecent(path);
    reloadViews();
    emit projectOpened(path);
    return true;
}

bool MainWindow::createProject(const QString &path)
{
    auto db = store::ProjectDb::open(path.toStdString(), store::ProjectDb::OpenMode::Create);
    if (!db) {
        showMessage(tr("Cannot create %1: %2").arg(path, QString::fromStdString(db.message())), true);
        return false;
    }
    return openProject(path);
}

void MainWindow::reloadViews()
{
    if (!m_session)
        return;
    m_session->refresh();
    m_cohortModel->setPatients(m_session->patients());
    m_cohortView->resizeColumnsToContents();
    m_concepts->setSession(m_session.get());
    m_patient->setSession(m_session.get());
    m_annotations->setSession(m_session.get());
    m_audit->setSession(m_session.get());
    m_review->setSession(m_session.get());
    updateFlagCounts();
    m_analysis->setSession(m_session.get());
    m_smear->setSession(m_session.get());
    m_galleryModel->setItems({});
    const auto cells = m_session->db().acceptedImageCount();
    showMessage(tr("%1 cells, %2 patients. %3")
                    .arg(cells ? *cells : 0)
                    .arg(m_cohortModel->rowCount())
                    .arg(m_session->modelSummary()));
}

void MainWindow::addRecent(const QString &path)
{
    QSettings settings;
    QStringList recent = settings.value(QStringLiteral("recentProjects")).toStringList();
    recent.removeAll(path);
    recent.prepend(path);
    settings.setValue(QStringLiteral("recentProjects"), recent.mid(0, 8));
    updateRecentMenu();
}

void MainWindow::updateRecentMenu()
{
    m_recentMenu->clear();
    const QStringList recent = QSettings().value(QStringLiteral("recentProjects")).toStringList();
    for (const QString &p : recent)
        m_recentMenu->addAction(p, this, [this, p] { openProject(p); });
    m_recentMenu->setEnabled(!recent.isEmpty());
}

// ---- background work -------------------------------------------------------------------

void MainWindow::importImages(const QString &source, const QString &layout, const QString &patientTable)
{
    if (!m_session) {
        showMessage(tr("Open or create a project first."), true);
        return;
    }
    const QString project = m_session->path();
    auto *task = new BackgroundTask(tr("Import %1").arg(QFileInfo(source).fileName()),
                                    [project, source, layout, patientTable](const cytosae::ProgressCallback &progress,
                                                                            const std::atomic<bool> &cancel) -> QString {
        auto db = store::ProjectDb::open(project.toStdString(), store::ProjectDb::OpenMode::Existing);
        if (!db)
            return QString::fromStdString(db.message());
        cytosae::pipeline::ImportOptions o;
        o.source = source.toStdString();
        o.patientTable = patientTable.toStdString();
        auto l = cytosae::pipeline::parseLayout(layout.toStdString());
        if (!l)
            return QString::fromStdString(l.message());
        o.layout = *l;
        auto r = cytosae::pipeline::importImages(*db, o, progress, &cancel);
        if (!r)
            return QString::fromStdString(r.message());
        if (r->cancelled)
            return QObject::tr("Import cancelled after %1 files; import again to continue.").arg(r->added);
        return {};
    });
    startTask(task);
}

void MainWindow::runModels(const QString &vitPath, const QString &saePath)
{
    if (!m_session) {
        showMessage(tr("Open or create a project first."), true);
        return;
    }
    QSettings settings;
    settings.setValue(QStringLiteral("models/vit"), vitPath);
    settings.setValue(QStringLiteral("models/sae"), saePath);
    const QString project = m_session->path();
    const AppSettings prefs = AppSettings::load();
    auto *task = new BackgroundTask(tr("Run models"), [project, vitPath, saePath, prefs](const cytosae::ProgressCallback &progress,
                                                                                        const std::atomic<bool> &cancel) -> QString {
        cytosae::pipeline::RunOptions o;
        o.engine.vitPath = vitPath.toStdString();
        o.engine.saePath = saePath.toStdString();
        // AppSettings::load only gives valid names; a failed parse keeps the defaults (auto).
        cytosae::model::parseDeviceChoice(prefs.device.toStdString(), o.engine.device);
        cytosae::model::parsePrecision(prefs.precision.toStdString(), o.engine.precision);
        o.engine.threads = prefs.threads;
        o.batchSize = prefs.batchSize;
        auto r = cytosae::pipeline::runProject(project.toStdString(), o, progress, &cancel);
        if (!r)
            return QString::fromStdString(r.message());
        if (r->cancelled)
            return QObject::tr("Run cancelled after %1 cells; run again to resume.").arg(r->processed + r->alreadyDone);
        if (!r->notices.empty()) // e.g. CUDA failed and the run went on on the CPU
            return QObject::tr("The run finished on %1, but: %2")
                .arg(QString::fromStdString(r->device), QString::fromStdString(r->notices.back()));
        if (r->failed)
            return QObject::tr("%1 cells could not be read, e.g. %2: %3")
                .arg(r->failed)
                .arg(QString::fromStdString(r->failures.front().first), QString::fromStdString(r->failures.front().second));
        return {};
    });
    startTask(task);
}

void MainWindow::startTask(BackgroundTask *task)
{
    if (m_task && m_task->isRunning()) {
        showMessage(tr("“%1” is still running; wait for it or cancel it (Esc).").arg(m_task->title()), true);
        delete task;
        return;
    }
    delete m_task;
    m_task = task;
    task->setParent(this);
    connect(task, &BackgroundTask::progress, this, &MainWindow::onTaskProgress);
    connect(task, &BackgroundTask::finished, this, &MainWindow::onTaskFinished);
    m_progress->setRange(0, 0);
    m_progress->show();
    m_cancelButton->show();
    showMessage(tr("%1…").arg(task->title()));
    task->start();
}

void MainWindow::onTaskProgress(const TaskProgress &p)
{
    m_progress->setRange(0, int(std::min<qint64>(p.total, INT_MAX)));
    m_progress->setValue(int(std::min<qint64>(p.done, INT_MAX)));
    m_statusText->setText(tr("%1: %2 of %3 · %4/s · ETA %5")
                              .arg(p.detail.isEmpty() ? p.stage : p.stage + QLatin1Char(' ') + p.detail)
                              .arg(p.done)
                              .arg(p.total)
                              .arg(p.perSecond, 0, 'f', 1)
                              .arg(etaText(p.etaSeconds)));
}

void MainWindow::onTaskFinished(bool ok, const QString &message)
{
    m_progress->hide();
    m_cancelButton->hide();
    const QString title = m_task ? m_task->title() : QString();
    reloadViews();
    if (ok)
        showMessage(tr("%1: done. %2").arg(title, m_session ? m_session->modelSummary() : QString()));
    else
        showMessage(message, true);
    emit taskFinished(ok, message);
}

void MainWindow::cancelTask()
{
    if (m_task && m_task->isRunning()) {
        m_task->cancel();
        showMessage(tr("Cancelling “%1” after the current batch…").arg(m_task->title()));
    }
}

void MainWindow::showMessage(const QString &text, bool error)
{
    m_lastMessage = text;
    m_statusText->setText(text);
    m_statusText->setStyleSheet(error ? QStringLiteral("color: #b00020;") : QString());
}

// ---- linked views ----------------------------------------------------------------------

void MainWindow::showCell(qint64 imageId)
{
    if (!m_session || !imageId)
        return;
    auto cell = m_session->cell(imageId);
    if (!cell)
        return;
    m_cellHeader->setText(tr("<b>Cell %1</b> · patient %2 (%3) · class %4<br>%5<br>SAE reconstruction error %6")
                              .arg(imageId)
                              .arg(cell->patient.isEmpty() ? tr("–") : cell->patient)
                              .arg(cell->diagnosis.isEmpty() ? tr("no diagnosis") : cell->diagnosis)
                              .arg(cell->className.isEmpty() ? tr("–") : cell->className)
                              .arg(cell->path.toHtmlEscaped())
                              .arg(double(cell->reconError), 0, 'f', 3));
    // The patient of the cell becomes the selected patient: the other views follow.
    if (auto img = m_session->db().image(imageId); img && img->patientId)
        m_selection->setPatient(img->patientId);
    const QString path = cell->path;
    m_imageWatcher.setFuture(QtConcurrent::run([path] { return loadCellImage(path); }));
    updateCellConcepts();
    updateWhyFlagged(imageId);
}

void MainWindow::updateCellConcepts()
{
    m_cellConceptRows = m_session ? m_session->conceptsOfCell(m_selection->imageId()) : QVector<store::ImageConcept>();
    const int n = std::min<int>(int(m_cellConceptRows.size()), 200);
    m_cellConcepts->setRowCount(n);
    for (int i = 0; i < n; ++i) {
        const auto &c = m_cellConceptRows[i];
        const QString cells[] = {QString::number(c.latent), QString::number(double(c.mean), 'f', 4),
                                 QString::number(double(c.maxPatch), 'f', 3), QString::number(c.patchesAbove)};
        for (int col = 0; col < 4; ++col) {
            auto *item = new QTableWidgetItem(cells[col]);
            item->setTextAlignment(Qt::AlignRight | Qt::AlignVCenter);
            m_cellConcepts->setItem(i, col, item);
        }
    }
    // Nothing selected yet: the cell's strongest concept is the natural first overlay.
    if (m_selection->latent() < 0 && !m_cellConceptRows.isEmpty())
        m_selection->setLatent(m_cellConceptRows.front().latent);
}

void MainWindow::updateOverlay()
{
    const int latent = m_selection->latent();
    const qint64 imageId = m_selection->imageId();
    if (!m_session || latent < 0 || !imageId) {
        m_cellViewer->clearOverlay();
        return;
    }
    const PatchGrid g = m_session->patchValues(imageId, latent);
    ActivationOverlay o;
    o.gridW = g.gridW;
    o.gridH = g.gridH;
    o.values = g.values;
    o.scaleMin = 0;
    // One fixed scale per concept across the project once known; the cell's own maximum until then.
    const float cellMax = g.values.isEmpty() ? 1.f : *std::max_element(g.values.begin(), g.values.end());
    o.scaleMax = m_scaleOf.value(latent, std::max(cellMax, 0.2f));
    o.threshold = m_session->hasRun() ? float(m_session->run().patchThreshold) : 0.2f;
    o.label = tr("latent %1").arg(latent);
    m_cellViewer->setOverlay(o);
}

void MainWindow::updateGallery()
{
    if (!m_session)
        return;
    const int latent = m_selection->latent();
    const qint64 patient = m_selection->patientId();
    QString patientCode;
    for (const auto &p : m_session->patients())
        if (p.id == patient)
            patientCode = QString::fromStdString(p.code);
    if (latent >= 0 && m_session->hasRun()) {
        store::CellFilter f;
        f.patientId = patient;
        m_pendingGalleryTitle = patient ? tr("Cells of patient %1 carrying latent %2, strongest first").arg(patientCode).arg(latent)
                                        : tr("Cells carrying latent %1, strongest first").arg(latent);
        m_galleryTitle->setText(m_pendingGalleryTitle + tr(" (loading…)"));
        m_galleryWatcher.setFuture(m_session->loadConceptCells(latent, f, 400, m_scaleOf.value(latent, 1.f)));
    } else if (patient) {
        m_galleryWatcher.cancel();
        const QVector<GalleryItem> items = m_session->patientCells(patient, 100000);
        m_galleryModel->setItems(items);
        m_galleryTitle->setText(tr("All cells of patient %1 (%2)").arg(patientCode).arg(items.size()));
    }
}

void MainWindow::showPatchConcepts(int patch)
{
    if (!m_session || patch < 0 || !m_selection->imageId())
        return;
    const auto latents = m_session->conceptsOfPatch(m_selection->imageId(), patch);
    QStringList parts;
    for (int i = 0; i < latents.size() && i < 6; ++i)
        parts << QStringLiteral("%1 (%2)").arg(latents[i].latent).arg(double(latents[i].value), 0, 'f', 2);
    m_patchConcepts->setText(tr("Patch %1 · strongest latents: %2").arg(patch).arg(parts.isEmpty() ? tr("none") : parts.join(", ")));
}

// ---- dialogs ---------------------------------------------------------------------------

void MainWindow::chooseOpenProject()
{
    const QString path = QFileDialog::getOpenFileName(this, tr("Open Project"), QString(),
                                                      tr("CytoSAE projects (*.cyto);;All files (*)"));
    if (!path.isEmpty())
        openProject(path);
}

void MainWindow::chooseNewProject()
{
    const QString path = QFileDialog::getSaveFileName(this, tr("New Project"), QStringLiteral("project.cyto"),
                                                      tr("CytoSAE projects (*.cyto)"));
    if (path.isEmpty() || !createProject(path))
        return;
    chooseImportFolder();
}

void MainWindow::chooseImportFolder()
{
    if (!m_session) {
        chooseOpenProject();
        if (!m_session)
            return;
    }
    const QString dir = QFileDialog::getExistingDirectory(this, tr("Import Folder of Cell Images"));
    if (dir.isEmpty())
        return;
    bool ok = false;
    const QStringList layouts = {tr("class: one folder per cell class (MLL23, Matek19, BMC)"),
                                 tr("patient: one folder per patient (AML_Hehr)"),
                                 tr("diagnosis-patient: diagnosis/patient/cells"), tr("flat: no labels")};
    const QString choice = QInputDialog::getItem(this, tr("Folder Layout"), tr("How is the folder organised?"), layouts,
                                                 0, false, &ok);
    if (!ok)
        return;
    importImages(dir, choice.section(':', 0, 0));
}

void MainWindow::chooseImportManifest()
{
    if (!m_session)
        return chooseOpenProject();
    const QString csv = QFileDialog::getOpenFileName(this, tr("Import Manifest"), QString(), tr("CSV files (*.csv)"));
    if (!csv.isEmpty())
        importImages(csv, QStringLiteral("flat"));
}

void MainWindow::chooseRunModels()
{
    if (!m_session)
        return chooseOpenProject();
    QSettings settings;
    const QString vit = QFileDialog::getOpenFileName(this, tr("ViT checkpoint (DinoBloom-B.pth or DINOv2)"),
                                                     settings.value(QStringLiteral("models/vit")).toString(),
                                                     tr("PyTorch checkpoints (*.pth *.pt);;All files (*)"));
    if (vit.isEmpty())
        return;
    const QString sae = QFileDialog::getOpenFileName(this, tr("SAE checkpoint (CytoSAE .pt)"),
                                                     settings.value(QStringLiteral("models/sae")).toString(),
                                                     tr("PyTorch checkpoints (*.pt *.pth);;All files (*)"));
    if (!sae.isEmpty())
        runModels(vit, sae);
}

void MainWindow::exportCellView()
{
    const QString path = QFileDialog::getSaveFileName(this, tr("Export Cell View"), QStringLiteral("cell.png"),
                                                      tr("PNG images (*.png)"));
    if (path.isEmpty())
        return;
    if (m_cellViewer->cellView()->exportPng(path))
        showMessage(tr("Saved %1").arg(path));
    else
        showMessage(tr("Could not save %1").arg(path), true);
}

void MainWindow::editSettings()
{
    SettingsDialog dialog(AppSettings::load(), this);
    if (dialog.exec() != QDialog::Accepted)
        return;
    dialog.settings().save();
    applySettings();
}

void MainWindow::applySettings()
{
    const AppSettings prefs = AppSettings::load();
    m_galleryModel->setOverlaysVisible(prefs.galleryOverlays);
    m_concepts->topCellsModel()->setOverlaysVisible(prefs.galleryOverlays);
    m_concepts->quantileCellsModel()->setOverlaysVisible(prefs.galleryOverlays);
    m_annotations->setAnnotator(prefs.annotator);
    m_review->setReviewer(prefs.annotator);
}

void MainWindow::showAbout()
{
    QMessageBox::about(this, tr("About CytoSAE Explorer"),
                       tr("<h3>CytoSAE Explorer %1</h3><p>Sparse-autoencoder concepts of blood-cell foundation models "
                          "(CytoSAE, arXiv 2507.12464), computed natively with LibTorch.</p><p><b>Project:</b> %2</p>"
                          "<p><b>Models:</b> %3</p><p>Decision support for research, not a diagnosis.</p>")
                           .arg(QApplication::applicationVersion(), m_session ? m_session->path() : tr("none"),
                                m_session ? m_session->modelSummary().toHtmlEscaped() : tr("none")));
}
