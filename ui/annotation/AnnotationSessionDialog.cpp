#include "annotation/AnnotationSessionDialog.h"

#include "annotation/Agreement.h"
#include "common/ImageConvert.h"
#include "viewer/CellView.h"

#include <QHBoxLayout>
#include <QKeyEvent>
#include <QLabel>
#include <QPushButton>
#include <QSplitter>
#include <QTextBrowser>
#include <QVBoxLayout>
#include <QtConcurrent/QtConcurrent>

namespace ann = cytosae::annotation;

namespace {
QString q(const std::string &s) { return QString::fromStdString(s); }
}

AnnotationSessionDialog::AnnotationSessionDialog(ProjectSession *session, const QString &taskUid,
                                                 const QString &annotator, Mode mode, QWidget *parent)
    : QDialog(parent), m_session(session), m_annotator(annotator), m_mode(mode)
{
    setObjectName(QStringLiteral("annotationSession"));
    auto task = session->readLedger().task(taskUid.toStdString());
    if (!task) {
        m_problem = q(task.message());
    } else {
        m_task = *task;
        reloadAnswers();
        if (mode == Mode::Rate) {
            m_items = QVector<store::AnnotationItem>(m_task.items.begin(), m_task.items.end());
        } else {
            for (const auto &d : ann::agreementReport(m_task, m_answers).disagreements)
                for (const auto &it : m_task.items)
                    if (it.position == d.position)
                        m_items.push_back(it);
            if (m_items.isEmpty())
                m_problem = tr("The raters agree on every cell they all answered: nothing to adjudicate.");
        }
    }
    const QString title = session->conceptTitle(q(m_task.concept));
    m_question = tr("Does this cell show <b>%1</b>?").arg(title.toHtmlEscaped());
    setWindowTitle(mode == Mode::Rate ? tr("Annotate: %1").arg(title) : tr("Adjudicate: %1").arg(title));

    m_header = new QLabel(this);
    m_header->setObjectName(QStringLiteral("annotationQuestion"));
    m_header->setWordWrap(true);
    m_progress = new QLabel(this);
    m_progress->setObjectName(QStringLiteral("annotationProgress"));
    m_given = new QLabel(this);
    m_given->setObjectName(QStringLiteral("annotationGiven"));
    m_view = new CellView(this);
    m_view->setObjectName(QStringLiteral("annotationCell"));
    m_view->setMinimumSize(320, 320);
    auto *hit = new QPushButton(tr("&Hit (H / Y)"), this);
    hit->setObjectName(QStringLiteral("hitButton"));
    auto *miss = new QPushButton(tr("&Miss (M / N)"), this);
    miss->setObjectName(QStringLiteral("missButton"));
    auto *prev = new QPushButton(tr("← Previous"), this);
    auto *next = new QPushButton(tr("Next →"), this);
    for (QPushButton *b : {hit, miss, prev, next})
        b->setAutoDefault(false);
    connect(hit, &QPushButton::clicked, this, [this] { answer(QStringLiteral("hit")); });
    connect(miss, &QPushButton::clicked, this, [this] { answer(QStringLiteral("miss")); });
    connect(prev, &QPushButton::clicked, this, [this] { move(-1); });
    connect(next, &QPushButton::clicked, this, [this] { move(1); });

    m_results = new QTextBrowser(this);
    m_results->setObjectName(QStringLiteral("annotationResults"));
    m_saveThreshold = new QPushButton(tr("Save recommended threshold"), this);
    m_saveThreshold->setObjectName(QStringLiteral("saveThresholdButton"));
    m_saveThreshold->setAutoDefault(false);
    m_saveThreshold->setVisible(mode == Mode::Rate && m_task.kind == "precision");
    connect(m_saveThreshold, &QPushButton::clicked, this, &AnnotationSessionDialog::saveRecommendedThreshold);
    auto *close = new QPushButton(tr("Close"), this);
    close->setAutoDefault(false);
    connect(close, &QPushButton::clicked, this, &QDialog::accept);

    auto *left = new QWidget(this);
    auto *ll = new QVBoxLayout(left);
    ll->addWidget(m_header);
    ll->addWidget(m_view, 1);
    ll->addWidget(m_given);
    auto *buttons = new QHBoxLayout;
    for (QPushButton *b : {prev, hit, miss, next})
        buttons->addWidget(b);
    ll->addLayout(buttons);
    ll->addWidget(m_progress);
    auto *right = new QWidget(this);
    auto *rl = new QVBoxLayout(right);
    rl->addWidget(new QLabel(tr("Results so far"), right));
    rl->addWidget(m_results, 1);
    rl->addWidget(m_saveThreshold);
    rl->addWidget(close);
    auto *split = new QSplitter(this);
    split->addWidget(left);
    split->addWidget(right);
    split->setSizes({520, 360});
    auto *layout = new QVBoxLayout(this);
    layout->addWidget(split);
    resize(920, 600);

    connect(&m_image, &QFutureWatcher<QImage>::finished, this, [this] {
        m_view->setImage(m_image.result());
        m_view->fitToView();
    });
    if (!m_problem.isEmpty())
        m_header->setText(m_problem);
    showCurrent();
    updateResults();
}

void AnnotationSessionDialog::reloadAnswers()
{
    auto answers = m_session->readLedger().answers(m_task.uid);
    m_answers = answers ? *answers : std::vector<store::AnnotationAnswer>();
}

void AnnotationSessionDialog::showCurrent()
{
    if (m_items.isEmpty())
        return;
    const store::AnnotationItem &it = m_items[m_index];
    m_header->setText(m_question);
    const std::string role = m_mode == Mode::Rate ? "rater" : "adjudicator";
    QString mine, others;
    int answered = 0;
    for (const auto &a : m_answers) {
        const bool own = q(a.annotator) == m_annotator && a.role == role;
        if (own) {
            for (const auto &x : m_items)
                if (x.position == a.position)
                    ++answered;
        }
        if (a.position != it.position)
            continue;
        if (own)
            mine = q(a.answer);
        else if (m_mode == Mode::Adjudicate && a.role == "rater")
            others += tr("%1: %2  ").arg(q(a.annotator), q(a.answer));
    }
    m_given->setText((mine.isEmpty() ? tr("Not answered yet.") : tr("Your answer: <b>%1</b>").arg(mine)) +
                     (others.isEmpty() ? QString() : QStringLiteral("<br>") + tr("Raters: %1").arg(others)));
    m_progress->setText(tr("Cell %1 of %2 · %3 answered by you").arg(m_index + 1).arg(m_items.size()).arg(answered));
    const auto cell = m_session->cell(it.imageId);
    const QString path = cell ? cell->path : QString();
    m_image.setFuture(QtConcurrent::run([path] { return loadCellImage(path); }));
}

bool AnnotationSessionDialog::answer(const QString &hitOrMiss)
{
    if (m_items.isEmpty())
        return false;
    QString error;
    store::AnnotationDb *db = m_session->ledgerFor(m_annotator, &error);
    if (!db) {
        emit failed(error);
        return false;
    }
    store::AnnotationAnswer a;
    a.taskUid = m_task.uid;
    a.position = m_items[m_index].position;
    a.annotator = m_annotator.trimmed().toStdString();
    a.role = m_mode == Mode::Rate ? "rater" : "adjudicator";
    a.answer = hitOrMiss.toStdString();
    auto added = db->appendAnswer(a);
    if (!added) {
        emit failed(tr("The answer was not saved: %1").arg(q(added.message())));
        return false;
    }
    reloadAnswers();
    updateResults();
    emit ledgerChanged();
    if (m_index + 1 < m_items.size())
        move(1);
    else
        showCurrent();
    return true;
}

void AnnotationSessionDialog::move(int delta)
{
    if (m_items.isEmpty())
        return;
    m_index = std::clamp(m_index + delta, 0, int(m_items.size()) - 1);
    showCurrent();
}

QString AnnotationSessionDialog::resultsHtml() const
{
    if (m_items.isEmpty())
        return m_problem.toHtmlEscaped();
    QString html;
    const auto p = ann::precisionReport(m_task, m_answers);
    html += tr("<p>%1 of %2 cells decided.</p>").arg(p.answered).arg(p.total);
    html += tr("<table border=1 cellspacing=0 cellpadding=3><tr><th>Bin</th><th>Activation</th><th>Hits</th>"
               "<th>Misses</th><th>Precision</th></tr>");
    auto row = [&](const QString &name, const ann::BinPrecision &b) {
        html += QStringLiteral("<tr><td>%1</td><td>%2 – %3</td><td>%4</td><td>%5</td><td>%6</td></tr>")
                    .arg(name)
                    .arg(b.lo, 0, 'f', 3)
                    .arg(b.hi, 0, 'f', 3)
                    .arg(b.hits)
                    .arg(b.misses)
                    .arg(b.precision ? QString::number(*b.precision * 100, 'f', 0) + " %" : QStringLiteral("–"));
    };
    for (const auto &b : p.bins)
        row(tr("%1 (strongest = 1)").arg(b.bin + 1), b);
    row(tr("below threshold (controls)"), p.negatives);
    html += QStringLiteral("</table>");
    html += p.recommendedThreshold
                ? tr("<p><b>Recommended threshold: %1</b> (%2)</p>").arg(*p.recommendedThreshold, 0, 'f', 3).arg(q(p.recommendation))
                : tr("<p>No recommended threshold: %1</p>").arg(q(p.recommendation));
    if (m_task.kind == "agreement") {
        const auto a = ann::agreementReport(m_task, m_answers);
        html += a.kappa ? tr("<p>%1 kappa <b>%2</b> over %3 cells answered by all %4 raters; %5 disagreements.</p>")
                              .arg(q(a.kappa->method))
                              .arg(a.kappa->kappa, 0, 'f', 3)
                              .arg(a.kappa->items)
                              .arg(a.kappa->raters)
                              .arg(a.disagreements.size())
                        : tr("<p>No kappa yet: %1</p>").arg(q(a.kappaProblem));
    }
    return html;
}

void AnnotationSessionDialog::updateResults()
{
    m_results->setHtml(resultsHtml());
    const auto p = ann::precisionReport(m_task, m_answers);
    m_saveThreshold->setEnabled(p.recommendedThreshold.has_value());
}

bool AnnotationSessionDialog::saveRecommendedThreshold()
{
    const auto p = ann::precisionReport(m_task, m_answers);
    if (!p.recommendedThreshold) {
        emit failed(tr("There is no recommended threshold yet: %1").arg(q(p.recommendation)));
        return false;
    }
    QString error;
    store::AnnotationDb *db = m_session->ledgerFor(m_annotator, &error);
    if (!db) {
        emit failed(error);
        return false;
    }
    store::ThresholdEntry t;
    t.concept = m_task.concept;
    t.threshold = *p.recommendedThreshold;
    t.targetPrecision = 0.9;
    t.taskUid = m_task.uid;
    t.author = m_annotator.trimmed().toStdString();
    t.models = m_task.models;
    t.note = p.recommendation;
    auto added = db->appendThreshold(t);
    if (!added) {
        emit failed(tr("The threshold was not saved: %1").arg(q(added.message())));
        return false;
    }
    emit ledgerChanged();
    return true;
}

void AnnotationSessionDialog::keyPressEvent(QKeyEvent *event)
{
    switch (event->key()) {
    case Qt::Key_H:
    case Qt::Key_Y: answer(QStringLiteral("hit")); return;
    case Qt::Key_M:
    case Qt::Key_N: answer(QStringLiteral("miss")); return;
    case Qt::Key_Left:
    case Qt::Key_Up: move(-1); return;
    case Qt::Key_Right:
    case Qt::Key_Down: move(1); return;
    default: QDialog::keyPressEvent(event);
    }
}
