#pragma once

// The review queue of pathognomonic cells for the selected patient: pick a flagged concept,
// go through the patient's cells above its threshold (strongest first), each shown large with
// its patch overlay beside reference exemplars; confirm (C or Y) or reject (R or N), arrow keys
// move. Sign-off is refused while any candidate is unreviewed. A PDF report records it all.

#include "app/ProjectSession.h"

#include <QFutureWatcher>
#include <QImage>
#include <QWidget>

class CellView;
class GalleryModel;
class GalleryView;
class QComboBox;
class QLabel;
class QPushButton;
class SelectionModel;
class ThumbnailLoader;

class ReviewPanel : public QWidget {
    Q_OBJECT
public:
    ReviewPanel(SelectionModel *selection, ThumbnailLoader *loader, QWidget *parent = nullptr);
    void setSession(ProjectSession *session);
    void setReviewer(const QString &name) { m_reviewer = name; }
    // Re-reads the active flags (after a flag was added or removed).
    void reloadFlags();

    int flagCount() const { return int(m_flags.size()); }
    void selectFlag(int index);
    const std::vector<store::ReviewCandidate> &candidates() const { return m_candidates; }
    int currentIndex() const { return m_index; }
    void setCurrentIndex(int index);
    // Records a decision for the current candidate and moves to the next open one.
    bool decide(const QString &decision);
    bool signOff();
    bool exportReport(const QString &path);
    GalleryModel *candidateModel() const { return m_candidateModel; }
    GalleryModel *exemplarModel() const { return m_exemplarModel; }
    CellView *cellView() const { return m_view; }

signals:
    void failed(const QString &message);
    void message(const QString &text);
    void ledgerChanged();

private:
    void reloadQueue();
    void showCurrent();
    void updateHeader();
    void loadExemplars();
    void refreshCandidateItems(); // captions carry each candidate's decision
    const store::FlagEntry *currentFlag() const;

    SelectionModel *m_selection;
    ProjectSession *m_session = nullptr;
    QString m_reviewer;
    std::vector<store::FlagEntry> m_flags;
    std::vector<store::ReviewCandidate> m_candidates;
    std::vector<int32_t> m_latents;
    int m_index = -1;
    float m_scaleMax = 1.f;
    QComboBox *m_flagCombo;
    QLabel *m_header, *m_decision;
    GalleryModel *m_candidateModel, *m_exemplarModel;
    GalleryView *m_candidateView, *m_exemplarView;
    CellView *m_view;
    QPushButton *m_confirm, *m_reject, *m_signOff, *m_report;
    QFutureWatcher<QImage> m_image;
};
