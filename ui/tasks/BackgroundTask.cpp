#include "tasks/BackgroundTask.h"

#include <QMetaObject>

#ifdef Q_OS_LINUX
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

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
    m_thread = QThread::create([this] {
#ifdef Q_OS_LINUX
        // Linux ignores QThread priorities for ordinary threads, but a nice value is per thread
        // and inherited by the threads this one starts (LibTorch's OpenMP pool, the run's reader
        // and writer threads): the GUI thread then gets a core whenever it needs one.
        setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), 10);
#endif
        auto report = [this](const cytosae::ProgressInfo &p) {
            TaskProgress t{QString::fromStdString(p.stage), p.done, p.total, p.itemsPerSecond, p.etaSeconds,
                           QString::fromStdString(p.detail)};
            // Queued: the GUI thread receives a copy; `this` outlives the thread (destructor waits).
            QMetaObject::invokeMethod(this, [this, t] { emit progress(t); }, Qt::QueuedConnection);
        };
        try {
            m_error = m_work(report, m_cancel);
        } catch (const std::exception &e) {
            m_error = tr("Unexpected error: %1").arg(QString::fromUtf8(e.what()));
        }
    });
    // Announced once the thread has really ended, so a handler may start the next task.
    connect(m_thread, &QThread::finished, this, [this] { emit finished(m_error.isEmpty(), m_error); });
    m_thread->setObjectName(QStringLiteral("task: ") + m_title);
    m_thread->start(QThread::LowPriority);
}
