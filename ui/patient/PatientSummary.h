#pragma once

// The selected patient against the cohort: per-cell-normalised concept frequencies (the
// fraction of the patient's cells in which a concept is active) plotted against the median of
// the other patients, the concepts furthest from them (core/analysis, the statistic of
// `cytosae analyze patient-specific`), and the class differential.
// Clicking a point or a row selects that concept.

#include "app/ProjectSession.h"

#include <QFutureWatcher>
#include <QWidget>

class QCustomPlot;
class QLabel;
class QTableWidget;
class SelectionModel;

class PatientSummary : public QWidget {
    Q_OBJECT
public:
    PatientSummary(SelectionModel *selection, QWidget *parent = nullptr);
    void setSession(ProjectSession *session);
    QTableWidget *conceptTable() const { return m_concepts; }

private:
    void showPatient(qint64 patientId);
    void showConcepts(const QVector<PatientConcept> &concepts);

    SelectionModel *m_selection;
    ProjectSession *m_session = nullptr;
    QLabel *m_header;
    QCustomPlot *m_plot;
    QTableWidget *m_concepts;
    QTableWidget *m_classes;
    QFutureWatcher<QVector<PatientConcept>> m_watcher;
    QVector<PatientConcept> m_shown;
    qint64 m_patient = 0;
};
