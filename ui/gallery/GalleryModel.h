#pragma once

// List model behind the thumbnail gallery. It is virtual: data(DecorationRole) asks the
// ThumbnailLoader for a row only when a view paints that row, and returns a light grey
// placeholder until the thumbnail arrives; then exactly that row is reported changed.
//
// The loader is not owned (several galleries may share one cache). It must live on the
// GUI thread; if it is destroyed first, rows simply stay on their placeholders.

#include "gallery/GalleryItem.h"

#include <QAbstractListModel>
#include <QCache>
#include <QHash>
#include <QPixmap>
#include <QPointer>
#include <QVector>

class ThumbnailLoader;

class GalleryModel : public QAbstractListModel {
    Q_OBJECT
public:
    enum Roles {
        ImageIdRole = Qt::UserRole + 1, // qint64
        PathRole,                       // QString
    };

    explicit GalleryModel(ThumbnailLoader *loader, QObject *parent = nullptr);

    void setItems(QVector<GalleryItem> items);
    const QVector<GalleryItem> &items() const { return m_items; }
    // A default GalleryItem for a row out of range.
    GalleryItem item(int row) const;
    // First row showing imageId, or -1.
    int rowOf(qint64 imageId) const;

    void setOverlaysVisible(bool visible);
    bool overlaysVisible() const { return m_overlaysVisible; }

    ThumbnailLoader *loader() const;
    int thumbnailSize() const;
    // Drops decodes queued for rows that scrolled away; the view calls this on scrolling
    // so that the rows now on screen are not stuck behind them.
    void cancelPendingThumbnails();

    int rowCount(const QModelIndex &parent = QModelIndex()) const override;
    QVariant data(const QModelIndex &index, int role = Qt::DisplayRole) const override;
    Qt::ItemFlags flags(const QModelIndex &index) const override;
    QHash<int, QByteArray> roleNames() const override;

private:
    void onThumbnailReady(qint64 imageId);
    void onRequestsCancelled();
    void emitDecorationChangedForAll();
    QPixmap decoration(int row) const;
    QPixmap loadingPlaceholder() const;

    QPointer<ThumbnailLoader> m_loader;
    QVector<GalleryItem> m_items;
    // An image may appear in several rows (e.g. two concepts' top lists merged).
    QMultiHash<qint64, int> m_rowsById;
    bool m_overlaysVisible = false;
    bool m_replacingItems = false;
    // Composited pixmaps of recently painted rows, so a repaint is a lookup rather than an
    // image-to-pixmap conversion plus overlay drawing per visible row. Cost = bytes.
    mutable QCache<int, QPixmap> m_decorations;
    mutable QPixmap m_loadingPlaceholder;
};
