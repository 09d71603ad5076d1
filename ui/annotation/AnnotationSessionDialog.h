#pragma once

// Answering an annotation task one cell at a time, and its results.
//
//   Rate       a precision check or one rater's share of a blinded double annotation: the
//              plain cell (no overlay, no patient, no activation, no other rater's answer) and
//              the question "does this cell show <label>?"; H or Y = hit, M or N = miss, the
//              arrow keys move. Results: precision per activation bin, negative controls, the
//              recommended threshold (saved to the ledger on request) and, for double
//              annotation, the kappa (aggregate only, so raters stay blinded).
//   Adjudicate the cells the raters disagreed on, with each rater's answer; the same keys
//              record the adjudicator's decision.

#include "app/ProjectSession.h"

#include <QDialog>
#include <QFutureWatcher>
#include <QImage>

class CellView;
class QLabel;
class QPushButton;
class QTextBrowser;

class AnnotationSessionDialog : public QDialog {
    Q_OBJECT
public:
    enum class Mode { Rate, Adjudicate };
    AnnotationSessionDialog(ProjectSession *session, const QString &taskUid, const QString &annotator, Mode mode,
                            QWidget *parent = nullptr);

    bool isValid() const { return !m_items.isEmpty(); }
    QString problem() const { return m_problem; }
    int currentIndex() const { return m_index; }
    int itemCount() const { return int(m_items.size()); }
    // Records the answer for the current cell and moves on; false (with failed()) when the
    // ledger refused it.
    bool answer(const QString &hitOrMiss);
    void move(int delta);
    QString resultsHtml() const;
    bool saveRecommendedThreshold();

signals:
    void failed(const QString &message);
    void ledgerChanged();

protected:
    void keyPressEvent(QKeyEvent *event) override;

private:
    void showCurrent();
    void reloadAnswers();
    void updateResults();

    ProjectSession *m_session;
    QString m_annotator;
    Mode m_mode;
    store::AnnotationTask m_task;
    QVector<store::AnnotationItem> m_items; // what this mode shows, in order
    std::vector<store::AnnotationAnswer> m_answers;
    QString m_question, m_problem;
    int m_index = 0;
    CellView *m_view;
    QLabel *m_header, *m_progress, *m_given;
    QTextBrowser *m_results;
    QPushButton *m_saveThreshold;
    QFutureWatcher<QImage> m_image;
};
