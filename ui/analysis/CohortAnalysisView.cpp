#include "analysis/CohortAnalysisView.h"

#include "app/ProjectSession.h"
#include "app/SelectionModel.h"
#include "tasks/BackgroundTask.h"

#include <qcustomplot.h>

#include <QComboBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QPushButton>
#include <QSplitter>
#include <QVBoxLayout>

#include <algorithm>
#include <numeric>

namespace analysis = cytosae::analysis;

CohortAnalysisView::CohortAnalysisView(SelectionModel *selection, QWidget *parent)
    : QWidget(parent), m_selection(selection)
{
    setObjectName(QStringLiteral("cohortAnalysis"));
    m_a = new QComboBox(this);
    m_a->setObjectName(QStringLiteral("diagnosisA"));
    m_b = new QComboBox(this);
    m_b->setObjectName(QStringLiteral("diagnosisB"));
    m_go = new QPushButton(tr("Compare"), this);
    m_go->setObjectName(QStringLiteral("compareButton"));
    m_go->setToolTip(tr("Per-concept Mann-Whitney test across patients, Benjamini-Hochberg FDR"));
    m_status = new QLabel(tr("Open a project with a finished run."), this);
    m_status->setObjectName(QStringLiteral("analysisStatus"));
    m_status->setWordWrap(true);
    auto *top = new QHBoxLayout;
    top->addWidget(new QLabel(tr("Diagnosis"), this));
    top->addWidget(m_a, 1);
    top->addWidget(new QLabel(tr("against"), this));
    top->addWidget(m_b, 1);
    top->addWidget(m_go);

    m_scatter = new QCustomPlot(this);
    m_scatter->setObjectName(QStringLiteral("diseaseScatter"));
    m_scatter->setMinimumHeight(200);
    m_scatter->setInteractions(QCP::iSelectPlottables);
    m_heat = new QCustomPlot(this);
    m_heat->setObjectName(QStringLiteral("similarityHeatMap"));
    m_heat->setMinimumHeight(200);
    m_heat->xAxis->setLabel(tr("patients, by diagnosis"));
    m_heat->yAxis->setLabel(tr("patients, by diagnosis"));
    auto *split = new QSplitter(Qt::Vertical, this);
    split->addWidget(m_scatter);
    split->addWidget(m_heat);
    auto *layout = new QVBoxLayout(this);
    layout->setContentsMargins(2, 2, 2, 2);
    layout->addLayout(top);
    layout->addWidget(m_status);
    layout->addWidget(split, 1);

    connect(m_go, &QPushButton::clicked, this, [this] { compare(m_a->currentText(), m_b->currentText()); });
    connect(m_scatter, &QCustomPlot::plottableClick, this, [this](QCPAbstractPlottable *plottable, int index, QMouseEvent *) {
        const QVector<int> ids = plottable->property("latents").value<QVector<int>>();
        if (index >= 0 && index < ids.size())
            m_selection->setLatent(ids[index]);
    });
    connect(m_heat, &QCustomPlot::mousePress, this, [this](QMouseEvent *event) {
        if (!m_map || !m_result)
            return;
        double key = 0, value = 0;
        m_map->pixelsToCoords(event->position(), key, value);
        clickHeatCell(int(std::lround(value)), int(std::lround(key)));
    });
}

CohortAnalysisView::~CohortAnalysisView()
{
    delete m_task; // cancels and waits
}

void CohortAnalysisView::setSession(ProjectSession *session)
{
    delete m_task;
    m_session = session;
    m_result.reset();
    m_a->clear();
    m_b->clear();
    m_scatter->clearGraphs();
    m_scatter->replot();
    m_heat->clearPlottables();
    m_map = nullptr;
    m_heat->replot();
    if (!session || !session->hasRun()) {
        m_status->setText(tr("Open a project with a finished run."));
        return;
    }
    QStringList dx;
    for (const auto &p : session->patients())
        if (!p.diagnosis.empty() && !dx.contains(QString::fromStdString(p.diagnosis)))
            dx << QString::fromStdString(p.diagnosis);
    dx.sort();
    m_a->addItems(dx);
    m_b->addItem(QStringLiteral("rest"));
    m_b->addItems(dx);
    m_status->setText(dx.size() < 2 ? tr("Disease comparisons need patients of at least two diagnoses.")
                                    : tr("Choose two diagnoses (or one against the rest) and press Compare."));
}

bool CohortAnalysisView::isBusy() const
{
    return m_task && m_task->isRunning();
}

QString CohortAnalysisView::status() const
{
    return m_status->text();
}

void CohortAnalysisView::compare(const QString &a, const QString &b)
{
    if (!m_session || !m_session->hasRun() || a.isEmpty() || b.isEmpty())
        return;
    delete m_task;
    auto pending = std::make_shared<Result>();
    m_pending = pending;
    const std::string path = m_session->path().toStdString(), da = a.toStdString(), db = b.toStdString();
    const store::RunRecord run = m_session->run();
    m_status->setText(tr("Comparing %1 with %2…").arg(a, b));
    auto *task = new BackgroundTask(
        tr("Cohort analysis"),
        [pending, path, run, da, db](const cytosae::ProgressCallback &, const std::atomic<bool> &) -> QString {
            auto opened = store::ProjectDb::open(path, store::ProjectDb::OpenMode::ReadOnly, store::ProjectDb::Verify::Trusted);
            if (!opened)
                return QString::fromStdString(opened.message());
            auto cohort = analysis::loadCohort(*opened, run);
            if (!cohort)
                return QString::fromStdString(cohort.message());
            pending->cohort = std::move(cohort.value());
            auto cmp = analysis::compareDiseases(pending->cohort, da, db);
            if (!cmp)
                return QString::fromStdString(cmp.message());
            pending->comparison = std::move(cmp.value());
            pending->similarity = analysis::patientSimilarity(pending->cohort);
            return {};
        },
        this);
    m_task = task;
    connect(task, &BackgroundTask::finished, this, [this, pending](bool ok, const QString &message) {
        if (pending != m_pending)
            return; // superseded
        if (!ok) {
            m_status->setText(message);
            emit finished(false);
            return;
        }
        m_result = pending;
        showResult(*pending);
        emit finished(true);
    });
    task->start();
}

void CohortAnalysisView::showResult(const Result &result)
{
    const auto &c = result.comparison;
    QString text = tr("%1 (%2 patients) against %3 (%4): %5 of %6 concepts with q < 0.05; %7 of the reference's "
                      "top %8 among them.")
                       .arg(QString::fromStdString(c.a)).arg(c.nA).arg(QString::fromStdString(c.b)).arg(c.nB)
                       .arg(c.significant).arg(c.tested).arg(c.paperTopSignificant).arg(c.paperTop.size());
    for (const auto &n : c.notes)
        text += QLatin1Char(' ') + QString::fromStdString(n);
    m_status->setText(text);
    drawScatter();
    drawHeat();
}

void CohortAnalysisView::drawScatter()
{
    m_scatter->clearGraphs();
    const auto &c = m_result->comparison;
    m_scatter->xAxis->setLabel(tr("fraction of cells, %1 (mean over patients)").arg(QString::fromStdString(c.a)));
    m_scatter->yAxis->setLabel(tr("fraction of cells, %1 (mean over patients)").arg(QString::fromStdString(c.b)));
    // Three groups: not significant, higher in A, higher in B; each sorted by x so the point
    // index of a click maps to its latent.
    std::vector<const analysis::DiseaseConcept *> groups[3];
    for (const auto &d : c.concepts)
        groups[d.q >= 0.05 ? 0 : (d.diff > 0 ? 1 : 2)].push_back(&d);
    const QColor colours[3] = {QColor(120, 120, 120, 110), QColor(200, 40, 40), QColor(30, 90, 200)};
    const QString names[3] = {tr("not specific"), tr("higher in %1").arg(QString::fromStdString(c.a)),
                              tr("higher in %1").arg(QString::fromStdString(c.b))};
    double maxV = 0.05;
    for (int g = 0; g < 3; ++g) {
        auto &v = groups[g];
        std::stable_sort(v.begin(), v.end(), [](auto *x, auto *y) { return x->meanA < y->meanA; });
        QVector<double> x, y;
        QVector<int> ids;
        for (const auto *d : v) {
            x << d->meanA;
            y << d->meanB;
            ids << d->latent;
            maxV = std::max({maxV, d->meanA, d->meanB});
        }
        QCPGraph *graph = m_scatter->addGraph();
        graph->setName(names[g]);
        graph->setLineStyle(QCPGraph::lsNone);
        graph->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssDisc, colours[g], g ? 7 : 4));
        graph->setData(x, y, true);
        graph->setProperty("latents", QVariant::fromValue(ids));
        graph->setSelectable(QCP::stSingleData);
    }
    QCPGraph *diag = m_scatter->addGraph();
    diag->setData(QVector<double>{0, 1}, QVector<double>{0, 1});
    diag->setPen(QPen(Qt::DashLine));
    diag->setSelectable(QCP::stNone);
    diag->removeFromLegend();
    m_scatter->legend->setVisible(true);
    // A margin on both sides keeps points at 0 off the axis lines (and clickable).
    const double hi = std::min(1.0, maxV) * 1.05, lo = -0.03 * hi;
    m_scatter->xAxis->setRange(lo, hi);
    m_scatter->yAxis->setRange(lo, hi);
    m_scatter->replot();
}

void CohortAnalysisView::drawHeat()
{
    m_heat->clearPlottables();
    const auto &s = m_result->similarity;
    const int n = int(s.order.size());
    m_map = new QCPColorMap(m_heat->xAxis, m_heat->yAxis);
    m_map->data()->setSize(n, n);
    m_map->data()->setRange(QCPRange(0, n - 1), QCPRange(0, n - 1));
    for (int i = 0; i < n; ++i)
        for (int j = 0; j < n; ++j)
            m_map->data()->setCell(j, i, s.values[size_t(i) * size_t(n) + size_t(j)]);
    m_map->setGradient(QCPColorGradient::gpThermal);
    m_map->rescaleDataRange(true);
    // Diagnosis ticks at the middle of each block.
    QSharedPointer<QCPAxisTickerText> ticker(new QCPAxisTickerText);
    const auto &patients = m_result->cohort.patients;
    for (int i = 0; i < n;) {
        int j = i;
        while (j < n && patients[s.order[size_t(j)]].diagnosis == patients[s.order[size_t(i)]].diagnosis)
            ++j;
        const std::string &dx = patients[s.order[size_t(i)]].diagnosis;
        ticker->addTick((i + j - 1) / 2.0, QString::fromStdString(dx.empty() ? std::string("(none)") : dx));
        i = j;
    }
    m_heat->xAxis->setTicker(ticker);
    m_heat->yAxis->setTicker(ticker);
    m_heat->xAxis->setRange(-0.5, n - 0.5);
    m_heat->yAxis->setRange(-0.5, n - 0.5);
    m_heat->replot();
}

void CohortAnalysisView::clickHeatCell(int row, int column)
{
    if (!m_result)
        return;
    const auto &s = m_result->similarity;
    const int n = int(s.order.size());
    if (row < 0 || column < 0 || row >= n || column >= n)
        return;
    const auto &p = m_result->cohort.patients[s.order[size_t(row)]];
    const auto &q = m_result->cohort.patients[s.order[size_t(column)]];
    const double v = s.values[size_t(row) * size_t(n) + size_t(column)];
    m_status->setText(tr("%1 (%2) and %3 (%4): similarity %5")
                          .arg(QString::fromStdString(p.code), QString::fromStdString(p.diagnosis),
                               QString::fromStdString(q.code), QString::fromStdString(q.diagnosis))
                          .arg(v, 0, 'f', 3));
    m_selection->setPatient(p.id);
    emit patientPairClicked(p.id, q.id, v);
}
