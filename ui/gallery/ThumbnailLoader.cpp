#include "gallery/ThumbnailLoader.h"

#include <QCoreApplication>
#include <QPainter>
#include <QPen>
#include <QRunnable>
#include <QThread>

namespace {

// Aspect kept, never a 0-pixel side (a 5000x1 strip would otherwise scale to nothing).
QImage scaleToThumbnail(const QImage &image, int size)
{
    const QSize target = image.size().scaled(size, size, Qt::KeepAspectRatio).expandedTo(QSize(1, 1));
    QImage scaled = image.size() == target ? image : image.scaled(target, Qt::IgnoreAspectRatio, Qt::SmoothTransformation);
    // The formats QPainter draws fastest, so converting here (off the GUI thread) makes
    // each later paint a plain blit.
    return scaled.convertToFormat(scaled.hasAlphaChannel() ? QImage::Format_ARGB32_Premultiplied
                                                           : QImage::Format_RGB32);
}

} // namespace

// One decode. Holds no reference to the loader's members other than through the queued
// delivery, which Qt discards if the loader is gone; the loader's destructor waits for
// running tasks anyway, so `m_loader` is alive whenever run() uses it.
class ThumbnailLoader::Task : public QRunnable {
public:
    Task(ThumbnailLoader *loader, std::shared_ptr<const DecodeFn> decode, std::shared_ptr<TaskState> state,
         qint64 imageId, QString path, int size)
        : m_loader(loader), m_decode(std::move(decode)), m_state(std::move(state)), m_imageId(imageId),
          m_path(std::move(path)), m_size(size)
    {
    }

    void run() override
    {
        Q_ASSERT_X(!QCoreApplication::instance() || QThread::currentThread() != QCoreApplication::instance()->thread(),
                   "ThumbnailLoader::Task", "thumbnails must never be decoded on the GUI thread");
        int expected = TaskState::Queued;
        if (!m_state->state.compare_exchange_strong(expected, TaskState::Running))
            return; // cancelled after the pool had already dequeued us

        QString error;
        QImage image = (*m_decode)(m_path, &error);
        if (image.isNull()) {
            if (error.isEmpty())
                error = QCoreApplication::translate("ThumbnailLoader", "could not decode %1").arg(m_path);
            image = ThumbnailLoader::failurePlaceholder(m_size);
        } else {
            image = scaleToThumbnail(image, m_size);
            error.clear(); // a decoder may leave a note even on success; only failures are errors
        }

        ThumbnailLoader *loader = m_loader;
        const qint64 imageId = m_imageId;
        const std::shared_ptr<TaskState> state = m_state;
        QMetaObject::invokeMethod(
            loader, [loader, imageId, state, image, error] { loader->deliver(imageId, state, image, error); },
            Qt::QueuedConnection);
    }

private:
    ThumbnailLoader *m_loader;
    std::shared_ptr<const DecodeFn> m_decode;
    std::shared_ptr<TaskState> m_state;
    qint64 m_imageId;
    QString m_path;
    int m_size;
};

ThumbnailLoader::ThumbnailLoader(DecodeFn decode, int thumbnailSize, QObject *parent)
    : QObject(parent), m_decode(std::make_shared<const DecodeFn>(std::move(decode))),
      m_thumbnailSize(qMax(1, thumbnailSize))
{
    setObjectName(QStringLiteral("thumbnailLoader"));
    m_cache.setMaxCost(defaultCacheBytes);
    // Two threads: decoding is I/O plus one core each, and the other core of a small
    // machine stays free for the GUI and for the analysis pipeline.
    m_pool.setMaxThreadCount(2);
    m_pool.setThreadPriority(QThread::IdlePriority); // decoding yields to the GUI thread
    m_pool.setObjectName(QStringLiteral("thumbnailPool"));
}

ThumbnailLoader::~ThumbnailLoader()
{
    dropQueued();
    m_pool.waitForDone();
}

void ThumbnailLoader::request(qint64 imageId, const QString &path)
{
    Q_ASSERT(QThread::currentThread() == thread());
    if (m_pending.contains(imageId) || m_cache.contains(imageId))
        return;
    if (!*m_decode)
        return;
    auto state = std::make_shared<TaskState>();
    m_pending.insert(imageId, state);
    m_pool.start(new Task(this, m_decode, std::move(state), imageId, path, m_thumbnailSize));
}

QImage ThumbnailLoader::cached(qint64 imageId) const
{
    const QImage *image = m_cache.object(imageId);
    return image ? *image : QImage();
}

QString ThumbnailLoader::error(qint64 imageId) const
{
    return m_errors.value(imageId);
}

void ThumbnailLoader::cancelPending()
{
    Q_ASSERT(QThread::currentThread() == thread());
    if (dropQueued() > 0)
        emit requestsCancelled();
}

void ThumbnailLoader::clearCache()
{
    // Ids mean other cells after a project switch: forget queued and running work too, so a
    // late result cannot land in the cache under a reused id.
    dropQueued();
    m_pending.clear();
    m_cache.clear();
    m_errors.clear();
}

void ThumbnailLoader::setCacheLimitBytes(qsizetype bytes)
{
    // A cache smaller than a few thumbnails would evict what was just decoded, and the
    // view would request it again on the next paint: an endless decode loop.
    const qsizetype oneThumbnail = qsizetype(m_thumbnailSize) * m_thumbnailSize * 4;
    m_cache.setMaxCost(qMax(bytes, 8 * oneThumbnail));
}

int ThumbnailLoader::dropQueued()
{
    // Frees the pool's queue at once; tasks it already handed to a thread are settled by
    // the compare-and-swap below (they see Cancelled and return without decoding).
    m_pool.clear();
    int dropped = 0;
    for (auto it = m_pending.begin(); it != m_pending.end();) {
        int expected = TaskState::Queued;
        if (it.value()->state.compare_exchange_strong(expected, TaskState::Cancelled)) {
            it = m_pending.erase(it);
            ++dropped;
        } else {
            ++it; // running: its result still arrives and is worth caching
        }
    }
    return dropped;
}

void ThumbnailLoader::deliver(qint64 imageId, const std::shared_ptr<TaskState> &task, const QImage &image,
                              const QString &error)
{
    const auto it = m_pending.constFind(imageId);
    if (it == m_pending.cend() || it.value() != task)
        return; // forgotten by clearCache(): a result for an id that may mean another cell now
    m_pending.erase(it);
    m_cache.insert(imageId, new QImage(image), qMax<qsizetype>(1, image.sizeInBytes()));
    if (error.isEmpty())
        m_errors.remove(imageId);
    else
        m_errors.insert(imageId, error);
    emit thumbnailReady(imageId);
}

QImage ThumbnailLoader::failurePlaceholder(int size)
{
    QImage image(size, size, QImage::Format_RGB32);
    image.fill(QColor(0xb0, 0xb0, 0xb0));
    QPainter painter(&image);
    painter.setRenderHint(QPainter::Antialiasing);
    painter.setPen(QPen(QColor(0xd0, 0x20, 0x20), qMax(2.0, size / 14.0), Qt::SolidLine, Qt::RoundCap));
    const qreal margin = size * 0.28;
    painter.drawLine(QPointF(margin, margin), QPointF(size - margin, size - margin));
    painter.drawLine(QPointF(size - margin, margin), QPointF(margin, size - margin));
    return image;
}
