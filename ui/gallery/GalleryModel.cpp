#include "gallery/GalleryModel.h"

#include "gallery/ThumbnailLoader.h"

#include <QColor>
#include <QPainter>

#include <algorithm>
#include <cmath>

namespace {

constexpr qsizetype decorationCacheBytes = 16 * 1024 * 1024;

bool hasOverlay(const GalleryItem &item)
{
    return item.gridW > 0 && item.gridH > 0 && item.overlay.size() == qsizetype(item.gridW) * item.gridH;
}

// Draws the activation grid as one gridW x gridH image scaled up without smoothing: one
// drawImage per thumbnail instead of one fillRect per patch, and crisp patch borders that
// show the model's actual resolution rather than a blurred heatmap.
void paintOverlay(QImage &thumbnail, const GalleryItem &item)
{
    float top = item.scaleMax;
    if (!(top > 0)) {
        top = 0;
        for (float v : item.overlay)
            top = std::isfinite(v) ? std::max(top, v) : top;
    }
    if (!(top > 0))
        return;

    QImage grid(item.gridW, item.gridH, QImage::Format_ARGB32);
    grid.fill(Qt::transparent);
    for (int y = 0; y < item.gridH; ++y) {
        for (int x = 0; x < item.gridW; ++x) {
            const float v = item.overlay[qsizetype(y) * item.gridW + x];
            if (!(v > 0) || !std::isfinite(v))
                continue; // SAE activations are sparse: most patches stay untouched
            const float t = std::min(v / top, 1.0f);
            // Yellow (weak) to red (strong); even weak patches stay visible (alpha >= 0.15)
            // because any firing is informative, while the cell stays readable underneath.
            grid.setPixelColor(x, y, QColor::fromHsvF((1.0f - t) * 60.0f / 360.0f, 1.0f, 1.0f, 0.15f + 0.55f * t));
        }
    }
    QPainter painter(&thumbnail);
    painter.setRenderHint(QPainter::SmoothPixmapTransform, false);
    painter.drawImage(thumbnail.rect(), grid);
}

} // namespace

GalleryModel::GalleryModel(ThumbnailLoader *loader, QObject *parent)
    : QAbstractListModel(parent), m_loader(loader)
{
    setObjectName(QStringLiteral("galleryModel"));
    m_decorations.setMaxCost(decorationCacheBytes);
    if (loader) {
        connect(loader, &ThumbnailLoader::thumbnailReady, this, &GalleryModel::onThumbnailReady);
        connect(loader, &ThumbnailLoader::requestsCancelled, this, &GalleryModel::onRequestsCancelled);
    }
}

void GalleryModel::setItems(QVector<GalleryItem> items)
{
    // Requests for the old rows are stale now; no repaint of rows that are about to vanish.
    if (m_loader) {
        m_replacingItems = true;
        m_loader->cancelPending();
        m_replacingItems = false;
    }
    beginResetModel();
    m_items = std::move(items);
    m_rowsById.clear();
    m_rowsById.reserve(m_items.size());
    for (int row = 0; row < m_items.size(); ++row)
        m_rowsById.insert(m_items[row].imageId, row);
    m_decorations.clear();
    endResetModel();
}

GalleryItem GalleryModel::item(int row) const
{
    return row >= 0 && row < m_items.size() ? m_items[row] : GalleryItem();
}

int GalleryModel::rowOf(qint64 imageId) const
{
    const QList<int> rows = m_rowsById.values(imageId);
    return rows.isEmpty() ? -1 : *std::min_element(rows.cbegin(), rows.cend());
}

void GalleryModel::setOverlaysVisible(bool visible)
{
    if (m_overlaysVisible == visible)
        return;
    m_overlaysVisible = visible;
    m_decorations.clear();
    emitDecorationChangedForAll();
}

ThumbnailLoader *GalleryModel::loader() const
{
    return m_loader;
}

int GalleryModel::thumbnailSize() const
{
    return m_loader ? m_loader->thumbnailSize() : ThumbnailLoader::defaultThumbnailSize;
}

void GalleryModel::cancelPendingThumbnails()
{
    if (m_loader)
        m_loader->cancelPending();
}

int GalleryModel::rowCount(const QModelIndex &parent) const
{
    return parent.isValid() ? 0 : int(m_items.size());
}

QVariant GalleryModel::data(const QModelIndex &index, int role) const
{
    if (!checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid))
        return {};
    const GalleryItem &item = m_items[index.row()];
    switch (role) {
    case Qt::DisplayRole:
        return item.caption;
    case Qt::DecorationRole:
        return decoration(index.row());
    case Qt::ToolTipRole:
    case PathRole:
        return item.path;
    case ImageIdRole:
        return QVariant::fromValue<qint64>(item.imageId);
    default:
        return {};
    }
}

Qt::ItemFlags GalleryModel::flags(const QModelIndex &index) const
{
    if (!index.isValid())
        return Qt::NoItemFlags;
    return Qt::ItemIsEnabled | Qt::ItemIsSelectable | Qt::ItemNeverHasChildren;
}

QHash<int, QByteArray> GalleryModel::roleNames() const
{
    QHash<int, QByteArray> names = QAbstractListModel::roleNames();
    names.insert(ImageIdRole, "imageId");
    names.insert(PathRole, "path");
    return names;
}

void GalleryModel::onThumbnailReady(qint64 imageId)
{
    const QList<int> rows = m_rowsById.values(imageId);
    for (int row : rows) {
        m_decorations.remove(row);
        const QModelIndex changed = index(row);
        emit dataChanged(changed, changed, {Qt::DecorationRole});
    }
}

void GalleryModel::onRequestsCancelled()
{
    // Rows still on screen were dropped too; repainting makes data() request exactly those
    // again (rows off screen are not painted, so they are not).
    if (!m_replacingItems)
        emitDecorationChangedForAll();
}

void GalleryModel::emitDecorationChangedForAll()
{
    if (!m_items.isEmpty())
        emit dataChanged(index(0), index(int(m_items.size()) - 1), {Qt::DecorationRole});
}

QPixmap GalleryModel::decoration(int row) const
{
    if (const QPixmap *ready = m_decorations.object(row))
        return *ready;
    if (!m_loader)
        return loadingPlaceholder();

    const GalleryItem &item = m_items[row];
    QImage thumbnail = m_loader->cached(item.imageId);
    if (thumbnail.isNull()) {
        m_loader->request(item.imageId, item.path);
        return loadingPlaceholder();
    }

    // No overlay on the red-cross placeholder of a failed decode: there is no cell under it.
    if (m_overlaysVisible && hasOverlay(item) && m_loader->error(item.imageId).isEmpty()) {
        thumbnail = thumbnail.convertToFormat(QImage::Format_ARGB32_Premultiplied);
        paintOverlay(thumbnail, item);
    }
    // Centred on a square, transparent canvas: the icon view stacks the caption right under
    // the decoration, so differently shaped images would put captions at different heights.
    const int size = thumbnailSize();
    if (thumbnail.width() != size || thumbnail.height() != size) {
        QImage square(size, size, QImage::Format_ARGB32_Premultiplied);
        square.fill(Qt::transparent);
        QPainter painter(&square);
        painter.drawImage((size - thumbnail.width()) / 2, (size - thumbnail.height()) / 2, thumbnail);
        painter.end();
        thumbnail = square;
    }
    const QPixmap pixmap = QPixmap::fromImage(thumbnail);
    m_decorations.insert(row, new QPixmap(pixmap), qMax<qsizetype>(1, qsizetype(pixmap.width()) * pixmap.height() * 4));
    return pixmap;
}

QPixmap GalleryModel::loadingPlaceholder() const
{
    const int size = thumbnailSize();
    if (m_loadingPlaceholder.width() != size) {
        m_loadingPlaceholder = QPixmap(size, size);
        m_loadingPlaceholder.fill(QColor(0xe6, 0xe6, 0xe6));
    }
    return m_loadingPlaceholder;
}
