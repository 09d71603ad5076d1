#pragma once

// A menu entry with a shortcut, an object name (tests find actions by it) and a tooltip that
// shows the shortcut.

#include <QAction>
#include <QKeySequence>
#include <QMenu>

template <typename Owner, typename Slot>
QAction *addMenuAction(QMenu *menu, Owner *owner, const QString &text, const QKeySequence &key, Slot slot,
                       const QString &name)
{
    QAction *a = menu->addAction(text, owner, slot);
    a->setShortcut(key);
    a->setObjectName(name);
    if (!key.isEmpty())
        a->setToolTip(QStringLiteral("%1 (%2)").arg(QString(text).remove('&').remove(QStringLiteral("…")),
                                                     key.toString(QKeySequence::NativeText)));
    return a;
}
