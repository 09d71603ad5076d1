#include "tasks/BackgroundTask.h"

#include <QMetaObject>
#include <QPointer>

BackgroundTask::BackgroundTask(QString title, Work work, QObject *parent)
    : QObject(parent), m_title(std::move(title)), m_work(std::move(work))
{
    qRegisterMetaType<TaskProgress>();
}

BackgroundTask::~BackgroundTask()
{
    m_cancel = true;
    if (m_thread) {
        m_thread->wait();
        delete m_thread;
    }
}

void BackgroundTask::start()
{
    if (m_thread)
        return;
    QPointer<BackgroundTask> self(this);
    m_thread = QThread::create([this, self] {
        auto report = [this](const cytosae::ProgressInfo &p) {
            TaskProgress t{QString::fromStdString(p.stage), p.done, p.total, p.itemsPerSecond, p.etaSeconds};
            // Queued: the GUI thread receives a copy; `this` outlives the thread (destructor waits).
            QMetaObject::invokeMethod(this, [this, t] { emit progress(t); }, Qt::QueuedConnection);
        };
        QString error;
        try {
            error = m_work(report, m_cancel);
        } catch (const std::exception &e) {
            error = tr("Unexpected error: %1").arg(QString::fromUtf8(e.what()));
        }
        QMetaObject::invokeMethod(this, [this, error] { emit finished(error.isEmpty(), error); }, Qt::QueuedConnection);
    });
    m_thread->setObjectName(QStringLiteral("task: ") + m_title);
    m_thread->start(QThread::LowPriority);
}
