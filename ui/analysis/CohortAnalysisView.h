#pragma once

// Cohort analytics (core/analysis) in the explorer: the disease barcode scatter (mean
// fraction of cells per concept in diagnosis A against B; concepts with q < 0.05 by the
// per-concept Mann-Whitney test coloured) and the patient similarity heat map ordered by
// diagnosis. Clicking a point selects the concept; clicking a cell of the map selects the
// row's patient and names both. The analysis runs on a BackgroundTask with its own read-only
// connection; the GUI thread only draws.

#include "analysis/Cohort.h"

#include <QPointer>
#include <QWidget>

#include <memory>

class BackgroundTask;
class ProjectSession;
class QComboBox;
class QCustomPlot;
class QCPColorMap;
class QLabel;
class QPushButton;
class SelectionModel;

class CohortAnalysisView : public QWidget {
    Q_OBJECT
public:
    CohortAnalysisView(SelectionModel *selection, QWidget *parent = nullptr);
    ~CohortAnalysisView() override;
    void setSession(ProjectSession *session);

    // Starts the comparison of the chosen diagnoses (A against B or "rest") in the background.
    void compare(const QString &a, const QString &b);
    bool isBusy() const;

    // For tests: what is shown.
    QCustomPlot *scatter() const { return m_scatter; }
    QCustomPlot *heatMap() const { return m_heat; }
    const cytosae::analysis::DiseaseComparison *comparison() const { return m_result ? &m_result->comparison : nullptr; }
    const cytosae::analysis::SimilarityMatrix *similarity() const { return m_result ? &m_result->similarity : nullptr; }
    QString status() const;
    // Selects what a click on the heat map cell (row, column) selects.
    void clickHeatCell(int row, int column);

signals:
    void finished(bool ok);
    void patientPairClicked(qint64 rowPatient, qint64 columnPatient, double similarity);

private:
    struct Result {
        cytosae::analysis::Cohort cohort;
        cytosae::analysis::DiseaseComparison comparison;
        cytosae::analysis::SimilarityMatrix similarity;
        QString error;
    };
    void showResult(const Result &result);
    void drawScatter();
    void drawHeat();

    SelectionModel *m_selection;
    ProjectSession *m_session = nullptr;
    QComboBox *m_a, *m_b;
    QPushButton *m_go;
    QLabel *m_status;
    QCustomPlot *m_scatter, *m_heat;
    QCPColorMap *m_map = nullptr;
    QPointer<BackgroundTask> m_task;
    std::shared_ptr<Result> m_pending;
    std::shared_ptr<Result> m_result;
};
