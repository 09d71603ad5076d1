#pragma once

// The explorer's main window: dockable views over one project sharing one selection
// (patient, cell, concept), menus with shortcuts, and background work (import, run) with
// progress, ETA and cancel in the status bar. Layout, recent projects and model paths
// persist in QSettings.

#include "app/ProjectSession.h"
#include "tasks/BackgroundTask.h"

#include <QFutureWatcher>
#include <QHash>
#include <QImage>
#include <QMainWindow>
#include <QPointer>

#include <memory>

class AnnotationController;
class AuditView;
class CellViewerPanel;
class ReviewPanel;
class QUndoStack;
class CohortAnalysisView;
class CohortModel;
class ConceptBrowser;
class GalleryModel;
class GalleryView;
class PatientSummary;
class QLabel;
class QMenu;
class QProgressBar;
class QTableView;
class QTableWidget;
class QToolButton;
class SelectionModel;
class SmearView;
class ThumbnailLoader;
struct TaskProgress;

class MainWindow : public QMainWindow {
    Q_OBJECT
public:
    explicit MainWindow(QWidget *parent = nullptr);
    ~MainWindow() override;

    // Seams for tests and the command line; the menu actions call these after their dialogs.
    bool openProject(const QString &path);
    bool createProject(const QString &path);
    void importImages(const QString &source, const QString &layout, const QString &patientTable = {});
    void runModels(const QString &vitPath, const QString &saePath);
    void cancelTask();

    ProjectSession *session() const { return m_session.get(); }
    SelectionModel *selection() const { return m_selection; }
    BackgroundTask *currentTask() const { return m_task; }
    CellViewerPanel *cellViewer() const { return m_cellViewer; }
    ConceptBrowser *conceptBrowser() const { return m_concepts; }
    GalleryModel *galleryModel() const { return m_galleryModel; }
    CohortModel *cohortModel() const { return m_cohortModel; }
    CohortAnalysisView *cohortAnalysis() const { return m_analysis; }
    SmearView *smearView() const { return m_smear; }
    QString lastMessage() const { return m_lastMessage; }
    AnnotationController *annotations() const { return m_annotations; }
    AuditView *auditView() const { return m_audit; }
    ReviewPanel *reviewPanel() const { return m_review; }
    QUndoStack *undoStack() const { return m_undo; }

    // Seams for tests (the menu actions call these after their dialogs).
    bool labelCurrentConcept(const QString &label, const QString &status, const QString &note = {});
    bool flagCurrentConcept(double threshold);
    QString createPrecisionTask(const QString &kind, int bins, int perBin, int negatives);
    bool exportAnnotations(const QString &path);
    bool importAnnotations(const QString &path);

signals:
    void projectOpened(const QString &path);
    void taskFinished(bool ok, const QString &message);

protected:
    void closeEvent(QCloseEvent *event) override;

private:
    void buildDocks();
    void buildMenus();
    // MainWindowAnnotations.cpp: labels, groups, flags, precision checks, review, audit.
    void buildAnnotationDocks();
    void buildAnnotationMenus(QMenu *edit, QMenu *file);
    QString currentConceptKey() const;
    void chooseLabel(const QString &status);
    void chooseGroupFromSelection();
    void chooseAddToGroup();
    void chooseGroupAction(bool label);
    void chooseFlag(const QString &conceptKey);
    void chooseStartTask(const QString &kind);
    void chooseOpenTask(bool adjudicate);
    void chooseExportAnnotations();
    void chooseImportAnnotations();
    void onLabelChanged(const QString &conceptKey);
    // Flagged-cell counts per patient for the cohort view, on a pool thread.
    void updateFlagCounts();
    // The cell dock's "why flagged" line: which pathognomonic flags the cell reaches, how
    // strongly, and the review decision so far.
    void updateWhyFlagged(qint64 imageId);
    void startTask(BackgroundTask *task);
    void onTaskProgress(const TaskProgress &p);
    void onTaskFinished(bool ok, const QString &message);
    void showMessage(const QString &text, bool error = false);
    void updateRecentMenu();
    void addRecent(const QString &path);
    void reloadViews();

    void showCell(qint64 imageId);
    void updateOverlay();
    void updateGallery();
    void updateCellConcepts();
    void showPatchConcepts(int patch);

    void chooseOpenProject();
    void chooseNewProject();
    void chooseImportFolder();
    void chooseImportManifest();
    void chooseRunModels();
    void exportCellView();
    void showAbout();
    void editSettings();
    void applySettings();

    SelectionModel *m_selection;
    std::unique_ptr<ProjectSession> m_session;
    ThumbnailLoader *m_thumbnails;
    CellViewerPanel *m_cellViewer;
    ConceptBrowser *m_concepts;
    PatientSummary *m_patient;
    CohortAnalysisView *m_analysis;
    SmearView *m_smear;
    CohortModel *m_cohortModel;
    QTableView *m_cohortView;
    GalleryModel *m_galleryModel;
    GalleryView *m_gallery;
    QLabel *m_galleryTitle;
    QTableWidget *m_cellConcepts;
    QLabel *m_cellHeader;
    QLabel *m_patchConcepts;
    QLabel *m_whyFlagged = nullptr;
    QMenu *m_recentMenu = nullptr;
    QMenu *m_viewMenu = nullptr;
    QProgressBar *m_progress;
    QLabel *m_statusText;
    QToolButton *m_cancelButton;
    QPointer<BackgroundTask> m_task;
    QString m_lastMessage;
    QFutureWatcher<QImage> m_imageWatcher;
    // The background integrity check of the open project: its path, and SQLite's problems
    // (empty: intact).
    struct CheckResult {
        QString path;
        QString problems;
    };
    QFutureWatcher<CheckResult> m_checkWatcher;
    QFutureWatcher<QVector<GalleryItem>> m_galleryWatcher;
    QString m_pendingGalleryTitle;
    QHash<int, float> m_scaleOf;
    QVector<store::ImageConcept> m_cellConceptRows;
    QByteArray m_defaultState;
    QUndoStack *m_undo = nullptr;
    AnnotationController *m_annotations = nullptr;
    AuditView *m_audit = nullptr;
    ReviewPanel *m_review = nullptr;
    QFutureWatcher<QHash<qint64, QPair<qint64, qint64>>> m_flagCountWatcher;
};
