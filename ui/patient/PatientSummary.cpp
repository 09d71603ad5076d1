#include "patient/PatientSummary.h"

#include "app/SelectionModel.h"

#include <qcustomplot.h>

#include <QHeaderView>
#include <QLabel>
#include <QSplitter>
#include <QTableWidget>
#include <QVBoxLayout>

#include <numeric>

PatientSummary::PatientSummary(SelectionModel *selection, QWidget *parent) : QWidget(parent), m_selection(selection)
{
    setObjectName(QStringLiteral("patientSummary"));
    m_header = new QLabel(tr("Select a patient in the cohort"), this);
    m_header->setObjectName(QStringLiteral("patientHeader"));
    m_header->setWordWrap(true);
    m_plot = new QCustomPlot(this);
    m_plot->setObjectName(QStringLiteral("patientPlot"));
    m_plot->setMinimumHeight(200);
    m_plot->xAxis->setLabel(tr("fraction of cells, other patients (median)"));
    m_plot->yAxis->setLabel(tr("fraction of this patient's cells"));
    m_plot->setInteractions(QCP::iSelectPlottables);
    m_concepts = new QTableWidget(0, 4, this);
    m_concepts->setObjectName(QStringLiteral("patientConcepts"));
    m_concepts->setHorizontalHeaderLabels({tr("Latent"), tr("Patient"), tr("Cohort"), tr("Score")});
    m_concepts->horizontalHeaderItem(1)->setToolTip(tr("fraction of this patient's cells in which the concept is "
                                                        "active (Wilson 95 % interval in the cell's tooltip)"));
    m_concepts->horizontalHeaderItem(2)->setToolTip(tr("median fraction over the other patients"));
    m_concepts->horizontalHeaderItem(3)->setToolTip(
        tr("(patient − cohort median) / √(MAD² + SE²), MAD scaled by 1.4826 and SE the patient's own binomial "
           "error: the statistic of 'cytosae analyze patient-specific', strongest |score| first"));
    m_concepts->verticalHeader()->hide();
    m_concepts->setEditTriggers(QAbstractItemView::NoEditTriggers);
    m_concepts->setSelectionBehavior(QAbstractItemView::SelectRows);
    m_concepts->horizontalHeader()->setStretchLastSection(true);
    m_classes = new QTableWidget(0, 2, this);
    m_classes->setObjectName(QStringLiteral("patientClasses"));
    m_classes->setHorizontalHeaderLabels({tr("Class"), tr("Cells")});
    m_classes->verticalHeader()->hide();
    m_classes->setEditTriggers(QAbstractItemView::NoEditTriggers);
    m_classes->horizontalHeader()->setStretchLastSection(true);

    auto *split = new QSplitter(Qt::Vertical, this);
    split->addWidget(m_plot);
    auto *tables = new QWidget(this);
    auto *tl = new QVBoxLayout(tables);
    tl->setContentsMargins(0, 0, 0, 0);
    tl->addWidget(new QLabel(tr("Concepts furthest from the other patients"), this));
    tl->addWidget(m_concepts, 3);
    tl->addWidget(new QLabel(tr("Class differential"), this));
    tl->addWidget(m_classes, 1);
    split->addWidget(tables);
    auto *layout = new QVBoxLayout(this);
    layout->setContentsMargins(2, 2, 2, 2);
    layout->addWidget(m_header);
    layout->addWidget(split, 1);

    connect(m_selection, &SelectionModel::patientChanged, this, &PatientSummary::showPatient);
    connect(&m_watcher, &QFutureWatcher<QVector<PatientConcept>>::finished, this, [this] {
        showConcepts(m_watcher.result());
    });
    connect(m_concepts, &QTableWidget::cellClicked, this, [this](int row, int) {
        if (row >= 0 && row < m_shown.size())
            m_selection->setLatent(m_shown[row].latent);
    });
    connect(m_plot, &QCustomPlot::plottableClick, this, [this](QCPAbstractPlottable *plottable, int index, QMouseEvent *) {
        const QVariant latents = plottable->property("latents");
        const QVector<int> ids = latents.value<QVector<int>>();
        if (index >= 0 && index < ids.size())
            m_selection->setLatent(ids[index]);
    });
}

void PatientSummary::setSession(ProjectSession *session)
{
    m_session = session;
    m_patient = 0;
    m_concepts->setRowCount(0);
    m_classes->setRowCount(0);
    m_plot->clearGraphs();
    m_plot->replot();
}

void PatientSummary::showPatient(qint64 patientId)
{
    m_patient = patientId;
    if (!m_session || !patientId)
        return;
    QString code, diagnosis;
    qint64 cells = 0;
    for (const auto &p : m_session->patients())
        if (p.id == patientId) {
            code = QString::fromStdString(p.code);
            diagnosis = QString::fromStdString(p.diagnosis);
            cells = p.cells;
        }
    m_header->setText(tr("<b>%1</b> · %2 · %3 cells").arg(code, diagnosis.isEmpty() ? tr("no diagnosis") : diagnosis).arg(cells));
    const auto classes = m_session->classCounts(patientId);
    m_classes->setRowCount(int(classes.size()));
    for (int i = 0; i < classes.size(); ++i) {
        m_classes->setItem(i, 0, new QTableWidgetItem(classes[i].first));
        auto *n = new QTableWidgetItem(QString::number(classes[i].second));
        n->setTextAlignment(Qt::AlignRight | Qt::AlignVCenter);
        m_classes->setItem(i, 1, n);
    }
    if (m_session->hasRun())
        m_watcher.setFuture(m_session->loadPatientConcepts(patientId));
}

void PatientSummary::showConcepts(const QVector<PatientConcept> &concepts)
{
    m_shown = concepts.mid(0, 50);
    m_concepts->setRowCount(int(m_shown.size()));
    for (int i = 0; i < m_shown.size(); ++i) {
        const auto &c = m_shown[i];
        const QString cells[] = {QString::number(c.latent), QString::number(c.patientFraction * 100, 'f', 1) + " %",
                                 QString::number(c.cohortMedian * 100, 'f', 1) + " %", QString::number(c.score, 'f', 2)};
        for (int col = 0; col < 4; ++col) {
            auto *item = new QTableWidgetItem(cells[col]);
            item->setTextAlignment(Qt::AlignRight | Qt::AlignVCenter);
            if (col == 1)
                item->setToolTip(tr("95 % interval %1 – %2 %").arg(c.ciLow * 100, 0, 'f', 1).arg(c.ciHigh * 100, 0, 'f', 1));
            m_concepts->setItem(i, col, item);
        }
    }
    m_concepts->resizeColumnsToContents();
    // Scatter: every concept the patient or the cohort has; the top ones highlighted.
    m_plot->clearGraphs();
    QVector<double> x, y, hx, hy;
    QVector<int> ids, hids;
    for (int i = 0; i < concepts.size(); ++i) {
        (i < 10 ? hx : x).push_back(concepts[i].cohortMedian);
        (i < 10 ? hy : y).push_back(concepts[i].patientFraction);
        (i < 10 ? hids : ids).push_back(concepts[i].latent);
    }
    auto addGraph = [&](const QVector<double> &gx, const QVector<double> &gy, const QVector<int> &gid, QColor color, double size) {
        QCPGraph *g = m_plot->addGraph();
        g->setLineStyle(QCPGraph::lsNone);
        g->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssDisc, color, size));
        g->setData(gx, gy); // sorts by x, keeping the latent ids in step below
        QVector<int> sortedIds(gid.size());
        QVector<int> order(gid.size());
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return gx[a] < gx[b]; });
        for (int i = 0; i < order.size(); ++i)
            sortedIds[i] = gid[order[i]];
        g->setProperty("latents", QVariant::fromValue(sortedIds));
        g->setSelectable(QCP::stSingleData);
    };
    addGraph(x, y, ids, QColor(120, 120, 120, 120), 4);
    addGraph(hx, hy, hids, QColor(200, 40, 40), 7);
    QCPGraph *diag = m_plot->addGraph();
    diag->setData(QVector<double>{0, 1}, QVector<double>{0, 1});
    diag->setPen(QPen(Qt::DashLine));
    diag->setSelectable(QCP::stNone);
    m_plot->xAxis->setRange(0, 1);
    m_plot->yAxis->setRange(0, 1);
    m_plot->replot();
}
