#pragma once

// Edits of the annotation ledger from the GUI, with undo and redo. The ledger is append-only,
// so undo does not erase: it appends the state the concept had before (or "retracted" when
// it had no label), and redo appends the edit again. The audit trail shows all of it.

#include "app/ProjectSession.h"

#include <QObject>
#include <QVector>

class QUndoStack;

struct LabelEdit {
    QString conceptKey;
    QString label;
    QString status;
    QString note;
    QVector<qint64> evidence;
};

class AnnotationController : public QObject {
    Q_OBJECT
public:
    AnnotationController(QUndoStack *undo, QObject *parent = nullptr);
    void setSession(ProjectSession *session) { m_session = session; }
    void setAnnotator(const QString &name) { m_annotator = name; }
    const QString &annotator() const { return m_annotator; }
    QUndoStack *undoStack() const { return m_undo; }

    // Each returns false and emits failed() with the reason when nothing was written.
    bool setLabel(const LabelEdit &edit);
    bool flagPathognomonic(const QString &conceptKey, double threshold, bool active);
    // A new group (groupUid empty) or the next version of one; returns its uid or empty.
    QString saveGroup(const QString &groupUid, const QString &name, const std::vector<int32_t> &latents);

    // Used by the undo commands: one ledger row for the concept's label state.
    bool appendLabelState(const LabelEdit &state, const QString &why);
    // The label in force for the concept under the current models, if any.
    std::optional<LabelEdit> currentLabel(const QString &conceptKey);

signals:
    void labelChanged(const QString &conceptKey);
    void flagsChanged();
    void groupsChanged();
    void ledgerChanged();
    void failed(const QString &message);

private:
    store::AnnotationDb *writable();
    bool fail(const QString &message);

    QUndoStack *m_undo;
    ProjectSession *m_session = nullptr;
    QString m_annotator;
};
