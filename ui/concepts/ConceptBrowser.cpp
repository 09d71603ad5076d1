#include "concepts/ConceptBrowser.h"

#include "app/SelectionModel.h"
#include "concepts/ConceptTableModel.h"
#include "gallery/GalleryItem.h"
#include "gallery/GalleryModel.h"
#include "gallery/GalleryView.h"

#include <qcustomplot.h>

#include <QCheckBox>
#include <QComboBox>
#include <QFormLayout>
#include <QHeaderView>
#include <QLabel>
#include <QLineEdit>
#include <QSplitter>
#include <QTableView>
#include <QVBoxLayout>

#include <cmath>

ConceptBrowser::ConceptBrowser(SelectionModel *selection, ThumbnailLoader *loader, QWidget *parent)
    : QWidget(parent), m_selection(selection)
{
    setObjectName(QStringLiteral("conceptBrowser"));
    m_model = new ConceptTableModel(this);
    m_filter = new ConceptFilterModel(this);
    m_filter->setSourceModel(m_model);

    m_search = new QLineEdit(this);
    m_search->setObjectName(QStringLiteral("conceptSearch"));
    m_search->setPlaceholderText(tr("Search latent id, label or flag (Ctrl+F)"));
    m_search->setClearButtonEnabled(true);
    m_hideDead = new QCheckBox(tr("Hide dead"), this);
    m_hideDead->setObjectName(QStringLiteral("hideDeadCheck"));
    m_hideDead->setChecked(true);
    m_hideDense = new QCheckBox(tr("Hide dense / always-on"), this);
    m_hideDense->setObjectName(QStringLiteral("hideDenseCheck"));
    m_hideDense->setToolTip(tr("Latents that fire in most cells or with mean activation > 0.1 (the paper's noise filter)"));

    m_table = new QTableView(this);
    m_table->setObjectName(QStringLiteral("conceptTable"));
    m_table->setModel(m_filter);
    m_table->setSortingEnabled(true);
    m_table->sortByColumn(ConceptTableModel::Frequency, Qt::DescendingOrder);
    m_table->setSelectionBehavior(QAbstractItemView::SelectRows);
    m_table->setSelectionMode(QAbstractItemView::ExtendedSelection);
    m_table->verticalHeader()->hide();
    m_table->verticalHeader()->setDefaultSectionSize(22);
    m_table->horizontalHeader()->setStretchLastSection(true);
    m_table->setAlternatingRowColors(true);

    m_title = new QLabel(tr("Select a concept"), this);
    m_title->setObjectName(QStringLiteral("conceptTitle"));
    QFont f = m_title->font();
    f.setBold(true);
    m_title->setFont(f);

    m_histogram = new QCustomPlot(this);
    m_histogram->setObjectName(QStringLiteral("conceptHistogram"));
    m_histogram->setMinimumHeight(140);
    m_histogram->xAxis->setLabel(tr("image-level activation (mean over tokens)"));
    m_histogram->yAxis->setLabel(tr("cells"));

    m_patientFilter = new QComboBox(this);
    m_patientFilter->setObjectName(QStringLiteral("patientFilter"));
    m_classFilter = new QComboBox(this);
    m_classFilter->setObjectName(QStringLiteral("classFilter"));
    m_diagnosisFilter = new QComboBox(this);
    m_diagnosisFilter->setObjectName(QStringLiteral("diagnosisFilter"));

    m_topModel = new GalleryModel(loader, this);
    m_topModel->setOverlaysVisible(true);
    m_topView = new GalleryView(this);
    m_topView->setObjectName(QStringLiteral("topCellsView"));
    m_topView->setModel(m_topModel);
    m_quantileModel = new GalleryModel(loader, this);
    m_quantileModel->setOverlaysVisible(true);
    m_quantileView = new GalleryView(this);
    m_quantileView->setObjectName(QStringLiteral("quantileCellsView"));
    m_quantileView->setModel(m_quantileModel);

    auto *filters = new QHBoxLayout;
    filters->addWidget(new QLabel(tr("Patient"), this));
    filters->addWidget(m_patientFilter, 1);
    filters->addWidget(new QLabel(tr("Class"), this));
    filters->addWidget(m_classFilter, 1);
    filters->addWidget(new QLabel(tr("Diagnosis"), this));
    filters->addWidget(m_diagnosisFilter, 1);

    auto *top = new QWidget(this);
    auto *topLayout = new QVBoxLayout(top);
    topLayout->setContentsMargins(0, 0, 0, 0);
    auto *checks = new QHBoxLayout;
    checks->addWidget(m_search, 1);
    checks->addWidget(m_hideDead);
    checks->addWidget(m_hideDense);
    topLayout->addLayout(checks);
    topLayout->addWidget(m_table);

    auto *bottom = new QWidget(this);
    auto *bottomLayout = new QVBoxLayout(bottom);
    bottomLayout->setContentsMargins(0, 0, 0, 0);
    bottomLayout->addWidget(m_title);
    bottomLayout->addWidget(m_histogram);
    bottomLayout->addLayout(filters);
    bottomLayout->addWidget(new QLabel(tr("Strongest cells"), this));
    bottomLayout->addWidget(m_topView, 2);
    bottomLayout->addWidget(new QLabel(tr("Cells across activation quantiles (strongest bin first)"), this));
    bottomLayout->addWidget(m_quantileView, 2);

    auto *split = new QSplitter(Qt::Vertical, this);
    split->addWidget(top);
    split->addWidget(bottom);
    split->setStretchFactor(0, 2);
    split->setStretchFactor(1, 3);
    split->setSizes({320, 480});
    auto *layout = new QVBoxLayout(this);
    layout->setContentsMargins(2, 2, 2, 2);
    layout->addWidget(split);

    connect(m_search, &QLineEdit::textChanged, m_filter, &ConceptFilterModel::setSearch);
    connect(m_hideDead, &QCheckBox::toggled, m_filter, &ConceptFilterModel::setHideDead);
    connect(m_hideDense, &QCheckBox::toggled, m_filter, &ConceptFilterModel::setHideDense);
    connect(m_table->selectionModel(), &QItemSelectionModel::currentRowChanged, this, [this](const QModelIndex &idx) {
        if (idx.isValid())
            m_selection->setLatent(m_filter->data(idx, ConceptTableModel::LatentRole).toInt());
    });
    connect(m_selection, &SelectionModel::latentChanged, this, &ConceptBrowser::showLatent);
    for (QComboBox *c : {m_patientFilter, m_classFilter, m_diagnosisFilter})
        connect(c, &QComboBox::currentIndexChanged, this, &ConceptBrowser::refreshCells);
    connect(m_topView, &GalleryView::imageActivated, m_selection, &SelectionModel::setImage);
    connect(m_quantileView, &GalleryView::imageActivated, m_selection, &SelectionModel::setImage);
    connect(&m_conceptsWatcher, &QFutureWatcher<QVector<ConceptRow>>::finished, this, [this] {
        m_model->setRows(m_conceptsWatcher.result());
        m_table->resizeColumnsToContents();
        emit conceptsLoaded(int(m_model->rows().size()));
        if (m_selection->latent() >= 0)
            showLatent(m_selection->latent());
    });
    connect(&m_topWatcher, &QFutureWatcher<QVector<GalleryItem>>::finished, this,
            [this] { m_topModel->setItems(m_topWatcher.result()); });
    connect(&m_quantileWatcher, &QFutureWatcher<QVector<GalleryItem>>::finished, this,
            [this] { m_quantileModel->setItems(m_quantileWatcher.result()); });
    connect(&m_distributionWatcher, &QFutureWatcher<ConceptDistribution>::finished, this, [this] {
        const ConceptDistribution d = m_distributionWatcher.result();
        if (d.latent != m_selection->latent())
            return;
        m_scaleMax = d.maxPatchP99;
        emit scaleLoaded(d.latent, d.maxPatchP99);
        drawHistogram(d);
        refreshCells();
    });
}

void ConceptBrowser::setSession(ProjectSession *session)
{
    m_session = session;
    m_model->setRows({});
    m_topModel->setItems({});
    m_quantileModel->setItems({});
    for (QComboBox *c : {m_patientFilter, m_classFilter, m_diagnosisFilter}) {
        QSignalBlocker block(c);
        c->clear();
        c->addItem(tr("any"), QVariant());
    }
    if (!session)
        return;
    {
        QSignalBlocker b1(m_patientFilter), b2(m_classFilter), b3(m_diagnosisFilter);
        for (const auto &p : session->patients())
            m_patientFilter->addItem(QString::fromStdString(p.code), QVariant::fromValue<qint64>(p.id));
        for (const QString &c : session->classes())
            m_classFilter->addItem(c, c);
        for (const QString &d : session->diagnoses())
            m_diagnosisFilter->addItem(d, d);
    }
    if (session->hasRun())
        m_conceptsWatcher.setFuture(session->loadConcepts());
}

store::CellFilter ConceptBrowser::currentFilter() const
{
    store::CellFilter f;
    if (m_patientFilter->currentData().isValid())
        f.patientId = m_patientFilter->currentData().toLongLong();
    f.className = m_classFilter->currentData().toString().toStdString();
    f.diagnosis = m_diagnosisFilter->currentData().toString().toStdString();
    return f;
}

void ConceptBrowser::showLatent(int latent)
{
    if (!m_session || latent < 0)
        return;
    // Keep the table's current row in step with the shared selection.
    const int row = m_model->rowOfLatent(latent);
    if (row >= 0) {
        const QModelIndex idx = m_filter->mapFromSource(m_model->index(row, 0));
        if (idx.isValid() && m_table->currentIndex().row() != idx.row()) {
            QSignalBlocker block(m_table->selectionModel());
            m_table->setCurrentIndex(idx);
            m_table->scrollTo(idx);
        }
    }
    const ConceptRow *r = row >= 0 ? &m_model->rows()[row] : nullptr;
    m_title->setText(r ? tr("Latent %1 · fires in %2 % of cells · mean activation %3")
                             .arg(latent)
                             .arg(r->frequency * 100.0, 0, 'f', 1)
                             .arg(std::isnan(r->meanActivation) ? QStringLiteral("–")
                                                                : QString::number(r->meanActivation, 'f', 3))
                       : tr("Latent %1").arg(latent));
    m_distributionWatcher.setFuture(m_session->loadDistribution(latent));
}

void ConceptBrowser::refreshCells()
{
    const int latent = m_selection->latent();
    if (!m_session || latent < 0)
        return;
    // Off the GUI thread: reading each cell's token blob for its overlay is many rows.
    m_topWatcher.setFuture(m_session->loadConceptCells(latent, currentFilter(), 48, m_scaleMax));
    m_quantileWatcher.setFuture(m_session->loadQuantileCells(latent, currentFilter(), 5, 4, m_scaleMax));
}

void ConceptBrowser::drawHistogram(const ConceptDistribution &d)
{
    m_histogram->clearPlottables();
    if (d.means.isEmpty()) {
        m_histogram->replot();
        return;
    }
    const float maxV = *std::max_element(d.means.begin(), d.means.end());
    const int bins = 40;
    QVector<double> x(bins), y(bins, 0);
    const double width = std::max(1e-6, double(maxV) / bins);
    for (int i = 0; i < bins; ++i)
        x[i] = (i + 0.5) * width;
    for (float v : d.means)
        y[std::min(bins - 1, int(double(v) / width))] += 1;
    auto *bars = new QCPBars(m_histogram->xAxis, m_histogram->yAxis);
    bars->setData(x, y);
    bars->setWidth(width * 0.9);
    bars->setPen(Qt::NoPen);
    bars->setBrush(QColor(70, 110, 180));
    m_histogram->xAxis->setRange(0, maxV * 1.05);
    m_histogram->yAxis->setRange(0, *std::max_element(y.begin(), y.end()) * 1.1);
    m_histogram->replot();
}

QVector<int> ConceptBrowser::selectedLatents() const
{
    QVector<int> out;
    for (const QModelIndex &idx : m_table->selectionModel()->selectedRows())
        out << m_filter->data(idx, ConceptTableModel::LatentRole).toInt();
    std::sort(out.begin(), out.end());
    return out;
}
