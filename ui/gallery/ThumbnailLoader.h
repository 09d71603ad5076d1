#pragma once

// Decodes and scales gallery thumbnails on a private thread pool and keeps them in a
// byte-bounded cache. The gallery never decodes on the GUI thread: a 100k-image project
// must scroll smoothly even when images live on a slow network share.
//
// Threading and lifetime rules:
// - Create, use and destroy the loader on the GUI thread; every public function and the
//   cache are GUI-thread only. Results come back as queued calls, so thumbnailReady is
//   always emitted on the GUI thread.
// - The DecodeFn runs on up to two pool threads at once, concurrently with itself, so it
//   must be thread-safe and must not throw (an exception would end the pool thread).
// - The destructor drops queued work and waits for running decodes, so a slow DecodeFn
//   delays destruction by at most two decodes. Results posted but not yet delivered are
//   discarded with the loader; no task touches it afterwards.

#include <QCache>
#include <QHash>
#include <QImage>
#include <QObject>
#include <QString>
#include <QThreadPool>

#include <atomic>
#include <functional>
#include <memory>

class ThumbnailLoader : public QObject {
    Q_OBJECT
public:
    using DecodeFn = std::function<QImage(const QString &path, QString *error)>;

    static constexpr int defaultThumbnailSize = 112;
    static constexpr qsizetype defaultCacheBytes = 64 * 1024 * 1024;

    explicit ThumbnailLoader(DecodeFn decode, int thumbnailSize = defaultThumbnailSize, QObject *parent = nullptr);
    ~ThumbnailLoader() override;

    // Schedules decoding unless the thumbnail is cached or already queued/running. Cheap
    // enough to call from QAbstractItemModel::data() on every paint.
    void request(qint64 imageId, const QString &path);

    // The thumbnail (at most thumbnailSize() on each side, aspect kept), the red-cross
    // placeholder for a failed decode, or a null image when not (or no longer) cached.
    QImage cached(qint64 imageId) const;
    // Why the last decode of imageId failed; empty when it succeeded or never ran.
    QString error(qint64 imageId) const;

    bool isPending(qint64 imageId) const { return m_pending.contains(imageId); }
    int pendingCount() const { return int(m_pending.size()); }
    int thumbnailSize() const { return m_thumbnailSize; }

    // Drops queued requests that have not started; running decodes finish and are cached.
    // Emits requestsCancelled() when anything was dropped, so that views can repaint and
    // re-request the rows that are still visible.
    void cancelPending();

    void clearCache();
    void setCacheLimitBytes(qsizetype bytes);
    qsizetype cacheLimitBytes() const { return m_cache.maxCost(); }

signals:
    void thumbnailReady(qint64 imageId);
    void requestsCancelled();

private:
    // Shared between the loader and its queued task: whoever flips it first from Queued
    // decides whether the task runs or is dropped, without holding pointers to runnables
    // that the pool may already have deleted.
    struct TaskState {
        enum : int { Queued, Running, Cancelled };
        std::atomic<int> state{Queued};
    };
    class Task;

    void deliver(qint64 imageId, const std::shared_ptr<TaskState> &task, const QImage &image, const QString &error);
    int dropQueued();
    static QImage failurePlaceholder(int size);

    std::shared_ptr<const DecodeFn> m_decode;
    int m_thumbnailSize;
    QCache<qint64, QImage> m_cache;
    QHash<qint64, QString> m_errors;
    QHash<qint64, std::shared_ptr<TaskState>> m_pending;
    QThreadPool m_pool;  // last member: destroyed (and joined) first
};
