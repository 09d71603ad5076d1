#pragma once

// Long work (import, run, statistics) on its own thread. The work function gets a progress
// callback and a cancel flag; progress and the result come back to the GUI thread as queued
// signals carrying values. The owner may delete the task at any time: the destructor cancels
// and waits, so the work never outlives its task.

#include "common/Progress.h"

#include <QObject>
#include <QString>
#include <QThread>

#include <atomic>
#include <functional>

struct TaskProgress {
    QString stage;
    qint64 done = 0, total = 0;
    double perSecond = 0, etaSeconds = -1;
    QString detail; // e.g. "on cuda:0" for a run
};
Q_DECLARE_METATYPE(TaskProgress)

class BackgroundTask : public QObject {
    Q_OBJECT
public:
    // Returns an empty string on success, else the message to show.
    using Work = std::function<QString(const cytosae::ProgressCallback &, const std::atomic<bool> &cancel)>;

    BackgroundTask(QString title, Work work, QObject *parent = nullptr);
    ~BackgroundTask() override;

    const QString &title() const { return m_title; }
    void start();
    void cancel() { m_cancel = true; }
    bool isRunning() const { return m_thread && m_thread->isRunning(); }

signals:
    void progress(const TaskProgress &p);
    void finished(bool ok, const QString &message);

private:
    QString m_title;
    Work m_work;
    std::atomic<bool> m_cancel{false};
    QThread *m_thread = nullptr;
    QString m_error; // written by the worker, read after QThread::finished
};
