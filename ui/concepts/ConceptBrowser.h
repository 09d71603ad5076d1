#pragma once

// The concept browser: a searchable, sortable table of every latent; for the selected one its
// activation histogram, its top cells and cells sampled across its activation quantiles,
// filtered by patient, class and diagnosis.

#include <QFutureWatcher>
#include <QWidget>

#include "app/ProjectSession.h"

class QCheckBox;
class QComboBox;
class QCustomPlot;
class QLabel;
class QLineEdit;
class QTableView;
class ConceptFilterModel;
class ConceptTableModel;
class GalleryModel;
class GalleryView;
class SelectionModel;
class ThumbnailLoader;

class ConceptBrowser : public QWidget {
    Q_OBJECT
public:
    ConceptBrowser(SelectionModel *selection, ThumbnailLoader *loader, QWidget *parent = nullptr);
    void setSession(ProjectSession *session);

    ConceptTableModel *tableModel() const { return m_model; }
    ConceptFilterModel *filterModel() const { return m_filter; }
    GalleryModel *topCellsModel() const { return m_topModel; }
    GalleryModel *quantileCellsModel() const { return m_quantileModel; }
    // Latents of the selected rows (several with Shift/Ctrl-click: for concept groups).
    QVector<int> selectedLatents() const;
    QTableView *table() const { return m_table; }

signals:
    void conceptsLoaded(int count);
    // The selected concept's fixed overlay scale (99th percentile of its patch maxima).
    void scaleLoaded(int latent, float scaleMax);

private:
    void showLatent(int latent);
    void refreshCells();
    void drawHistogram(const ConceptDistribution &d);
    store::CellFilter currentFilter() const;

    SelectionModel *m_selection;
    ProjectSession *m_session = nullptr;
    ConceptTableModel *m_model;
    ConceptFilterModel *m_filter;
    QLineEdit *m_search;
    QCheckBox *m_hideDead, *m_hideDense;
    QTableView *m_table;
    QLabel *m_title;
    QCustomPlot *m_histogram;
    QComboBox *m_patientFilter, *m_classFilter, *m_diagnosisFilter;
    GalleryModel *m_topModel, *m_quantileModel;
    GalleryView *m_topView, *m_quantileView;
    QFutureWatcher<QVector<ConceptRow>> m_conceptsWatcher;
    QFutureWatcher<ConceptDistribution> m_distributionWatcher;
    QFutureWatcher<QVector<GalleryItem>> m_topWatcher, m_quantileWatcher;
    float m_scaleMax = 1.f;
};
