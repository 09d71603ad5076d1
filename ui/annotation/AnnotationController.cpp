#include "annotation/AnnotationController.h"

#include "annotation/Vocabulary.h"

#include <QUndoCommand>
#include <QUndoStack>

namespace {

QString q(const std::string &s) { return QString::fromStdString(s); }

// One label edit. The first redo() happens before the push (so a failed write never enters
// the stack); later redo()/undo() calls append the new or the previous state to the ledger.
class LabelCommand : public QUndoCommand {
public:
    LabelCommand(AnnotationController *controller, LabelEdit next, std::optional<LabelEdit> previous)
        : m_controller(controller), m_next(std::move(next)), m_previous(std::move(previous))
    {
        setText(QObject::tr("%1 %2 as \"%3\"").arg(m_next.status, m_next.conceptKey, m_next.label));
    }
    void redo() override
    {
        if (m_first) {
            m_first = false;
            return;
        }
        m_controller->appendLabelState(m_next, QObject::tr("redo"));
    }
    void undo() override
    {
        if (m_previous) {
            m_controller->appendLabelState(*m_previous, QObject::tr("undo"));
        } else {
            LabelEdit cleared = m_next;
            cleared.label.clear();
            cleared.status = QStringLiteral("retracted");
            cleared.evidence.clear();
            m_controller->appendLabelState(cleared, QObject::tr("undo"));
        }
    }

private:
    AnnotationController *m_controller;
    LabelEdit m_next;
    std::optional<LabelEdit> m_previous;
    bool m_first = true;
};

} // namespace

AnnotationController::AnnotationController(QUndoStack *undo, QObject *parent) : QObject(parent), m_undo(undo) {}

bool AnnotationController::fail(const QString &message)
{
    emit failed(message);
    return false;
}

store::AnnotationDb *AnnotationController::writable()
{
    if (!m_session) {
        fail(tr("Open a project first."));
        return nullptr;
    }
    if (!m_session->hasRun()) {
        fail(tr("Labels belong to the models of a run: run the models first (Run ▸ Run Models…)."));
        return nullptr;
    }
    QString error;
    store::AnnotationDb *db = m_session->ledgerFor(m_annotator, &error);
    if (!db)
        fail(error);
    return db;
}

std::optional<LabelEdit> AnnotationController::currentLabel(const QString &conceptKey)
{
    if (!m_session)
        return std::nullopt;
    auto labels = m_session->readLedger().currentLabels(m_session->modelHashes());
    if (!labels)
        return std::nullopt;
    auto it = labels->find(conceptKey.toStdString());
    if (it == labels->end() || it->second.stale)
        return std::nullopt;
    const auto &e = it->second.entry;
    LabelEdit edit{conceptKey, q(e.label), q(e.status), q(e.note), {}};
    for (int64_t id : e.evidence)
        edit.evidence.push_back(id);
    return edit;
}

bool AnnotationController::appendLabelState(const LabelEdit &state, const QString &why)
{
    store::AnnotationDb *db = writable();
    if (!db)
        return false;
    store::LabelEntry e;
    e.concept = state.conceptKey.toStdString();
    e.label = state.label.trimmed().toStdString();
    e.controlled = cytosae::annotation::isVocabularyTerm(e.label);
    e.status = state.status.toStdString();
    e.author = m_annotator.trimmed().toStdString();
    e.note = (why.isEmpty() ? state.note : state.note.isEmpty() ? why : state.note + " (" + why + ")").toStdString();
    e.evidence.assign(state.evidence.begin(), state.evidence.end());
    e.models = m_session->modelHashes();
    auto added = db->appendLabel(e);
    if (!added)
        return fail(tr("The label was not saved: %1").arg(q(added.message())));
    emit labelChanged(state.conceptKey);
    emit ledgerChanged();
    return true;
}

bool AnnotationController::setLabel(const LabelEdit &edit)
{
    if (edit.label.trimmed().isEmpty())
        return fail(tr("A label needs a name."));
    const auto previous = currentLabel(edit.conceptKey);
    if (!appendLabelState(edit, {}))
        return false;
    m_undo->push(new LabelCommand(this, edit, previous));
    return true;
}

bool AnnotationController::flagPathognomonic(const QString &conceptKey, double threshold, bool active)
{
    store::AnnotationDb *db = writable();
    if (!db)
        return false;
    store::FlagEntry f;
    f.concept = conceptKey.toStdString();
    f.threshold = threshold;
    f.active = active;
    f.author = m_annotator.trimmed().toStdString();
    f.models = m_session->modelHashes();
    auto added = db->appendFlag(f);
    if (!added)
        return fail(tr("The flag was not saved: %1").arg(q(added.message())));
    emit flagsChanged();
    emit ledgerChanged();
    return true;
}

QString AnnotationController::saveGroup(const QString &groupUid, const QString &name, const std::vector<int32_t> &latents)
{
    store::AnnotationDb *db = writable();
    if (!db)
        return {};
    store::GroupVersion g;
    g.groupUid = groupUid.toStdString();
    g.name = name.trimmed().toStdString();
    g.latents = latents;
    g.author = m_annotator.trimmed().toStdString();
    g.models = m_session->modelHashes();
    auto saved = db->saveGroup(g);
    if (!saved) {
        fail(tr("The concept group was not saved: %1").arg(q(saved.message())));
        return {};
    }
    emit groupsChanged();
    emit ledgerChanged();
    return q(saved->groupUid);
}
