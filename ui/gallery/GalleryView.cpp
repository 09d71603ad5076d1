#include "gallery/GalleryView.h"

#include "gallery/GalleryModel.h"
#include "gallery/ThumbnailLoader.h"

#include <QAction>
#include <QClipboard>
#include <QContextMenuEvent>
#include <QGuiApplication>
#include <QKeyEvent>
#include <QMenu>
#include <QMouseEvent>
#include <QResizeEvent>
#include <QScrollBar>

#include <algorithm>

namespace {
constexpr int cellPadding = 6; // around each thumbnail, so selection frames do not touch
} // namespace

GalleryView::GalleryView(QWidget *parent)
    : QListView(parent), m_thumbnailSize(ThumbnailLoader::defaultThumbnailSize)
{
    setObjectName(QStringLiteral("galleryView"));
    setViewMode(QListView::IconMode);
    // Icon mode defaults to free movement (drag to rearrange), which a result list must not do.
    setMovement(QListView::Static);
    setFlow(QListView::LeftToRight);
    setWrapping(true);
    setResizeMode(QListView::Adjust);
    // Uniform sizes: layout takes one size hint instead of asking every row (which would
    // make data() request every thumbnail). Batched: the first screen appears before a
    // 100k-row layout finishes.
    setUniformItemSizes(true);
    setLayoutMode(QListView::Batched);
    setBatchSize(500);
    setSelectionMode(QAbstractItemView::ExtendedSelection);
    setSelectionRectVisible(true);
    setEditTriggers(QAbstractItemView::NoEditTriggers);
    setDragEnabled(false);
    setVerticalScrollMode(QAbstractItemView::ScrollPerPixel);
    setTextElideMode(Qt::ElideRight);
    setWordWrap(false);

    // The shortcut is only shown in the menu; the key itself is handled in keyPressEvent.
    // Registering it on the view would make it ambiguous with a window-wide Edit > Copy
    // (then neither fires), and QAbstractItemView would otherwise copy the caption.
    m_copyPathsAction = new QAction(tr("Copy path"), this);
    m_copyPathsAction->setObjectName(QStringLiteral("copyPathsAction"));
    m_copyPathsAction->setShortcut(QKeySequence::Copy);
    m_copyPathsAction->setShortcutContext(Qt::WidgetShortcut);
    m_copyPathsAction->setShortcutVisibleInContextMenu(true);
    connect(m_copyPathsAction, &QAction::triggered, this, &GalleryView::copySelectedPaths);

    connect(verticalScrollBar(), &QScrollBar::valueChanged, this, &GalleryView::onScrolled);
    connect(horizontalScrollBar(), &QScrollBar::valueChanged, this, &GalleryView::onScrolled);

    updateGridSize();
}

void GalleryView::setModel(QAbstractItemModel *model)
{
    QListView::setModel(model);
    if (auto *gallery = qobject_cast<GalleryModel *>(model))
        setThumbnailSize(gallery->thumbnailSize());
}

void GalleryView::setThumbnailSize(int size)
{
    m_thumbnailSize = qMax(16, size);
    updateGridSize();
}

QList<qint64> GalleryView::selectedImageIds() const
{
    QList<qint64> ids;
    const QModelIndexList indexes = selectedInRowOrder();
    ids.reserve(indexes.size());
    for (const QModelIndex &index : indexes)
        ids.append(index.data(GalleryModel::ImageIdRole).toLongLong());
    return ids;
}

QStringList GalleryView::selectedPaths() const
{
    QStringList paths;
    const QModelIndexList indexes = selectedInRowOrder();
    paths.reserve(indexes.size());
    for (const QModelIndex &index : indexes)
        paths.append(index.data(GalleryModel::PathRole).toString());
    return paths;
}

void GalleryView::copySelectedPaths()
{
    const QStringList paths = selectedPaths();
    if (!paths.isEmpty())
        QGuiApplication::clipboard()->setText(paths.join(QLatin1Char('\n')));
}

bool GalleryView::event(QEvent *event)
{
    // While the gallery has focus, Ctrl+C copies its paths even if the window has its own
    // Copy shortcut.
    if (event->type() == QEvent::ShortcutOverride && static_cast<QKeyEvent *>(event)->matches(QKeySequence::Copy)) {
        event->accept();
        return true;
    }
    return QListView::event(event);
}

void GalleryView::keyPressEvent(QKeyEvent *event)
{
    if (event->matches(QKeySequence::Copy)) {
        copySelectedPaths();
        event->accept();
        return;
    }
    if ((event->key() == Qt::Key_Return || event->key() == Qt::Key_Enter) && state() != EditingState) {
        const QModelIndex current = currentIndex();
        if (current.isValid()) {
            emit imageActivated(current.data(GalleryModel::ImageIdRole).toLongLong());
            event->accept();
            return;
        }
    }
    QListView::keyPressEvent(event);
}

void GalleryView::mouseDoubleClickEvent(QMouseEvent *event)
{
    const QModelIndex index = indexAt(event->position().toPoint());
    QListView::mouseDoubleClickEvent(event);
    if (event->button() == Qt::LeftButton && index.isValid())
        emit imageActivated(index.data(GalleryModel::ImageIdRole).toLongLong());
}

void GalleryView::contextMenuEvent(QContextMenuEvent *event)
{
    QPoint globalPos = event->globalPos();
    if (event->reason() == QContextMenuEvent::Mouse) {
        // Right-clicking an unselected thumbnail acts on that one, as file managers do;
        // right-clicking inside the selection keeps it.
        const QModelIndex index = indexAt(event->pos());
        if (index.isValid() && selectionModel() && !selectionModel()->isSelected(index))
            selectionModel()->setCurrentIndex(index, QItemSelectionModel::ClearAndSelect);
    } else if (currentIndex().isValid()) {
        globalPos = viewport()->mapToGlobal(visualRect(currentIndex()).center());
    }
    updateCopyAction();

    QMenu menu(this);
    menu.setObjectName(QStringLiteral("galleryContextMenu"));
    menu.addAction(m_copyPathsAction);
    menu.exec(globalPos);
    event->accept();
}

void GalleryView::changeEvent(QEvent *event)
{
    QListView::changeEvent(event);
    if (event->type() == QEvent::FontChange || event->type() == QEvent::StyleChange)
        updateGridSize();
}

void GalleryView::onScrolled()
{
    // Rows that scrolled away would otherwise still be decoded before the ones now on
    // screen (dragging the scroll bar across 100k images queues thousands). The model
    // repaints after the cancel, which re-requests exactly the visible rows.
    if (auto *gallery = qobject_cast<GalleryModel *>(model()))
        gallery->cancelPendingThumbnails();
}

void GalleryView::resizeEvent(QResizeEvent *event)
{
    QListView::resizeEvent(event);
    updateGridSize();
}

void GalleryView::updateGridSize()
{
    const QSize icon(m_thumbnailSize, m_thumbnailSize);
    if (iconSize() != icon)
        setIconSize(icon);
    // Spare width is shared out between the columns instead of left as a gap at the right.
    // Stable when the scroll bar comes and goes: fewer columns never need fewer rows.
    // (QListView wraps once a cell would reach the viewport's last pixel column.)
    const int minWidth = m_thumbnailSize + 2 * cellPadding;
    const int usable = viewport()->width() - 1 - spacing();
    const int columns = qMax(1, usable / minWidth);
    // One caption line under each thumbnail; captions are elided, never wrapped, so that
    // every cell has the same height.
    const QSize grid(qMax(minWidth, usable / columns),
                     m_thumbnailSize + fontMetrics().height() + 3 * cellPadding);
    if (gridSize() != grid)
        setGridSize(grid);
}

// Only when the menu opens: counting the selection on every change would walk all rows
// after a select-all of a large gallery.
void GalleryView::updateCopyAction()
{
    const int count = selectionModel() ? int(selectionModel()->selectedIndexes().size()) : 0;
    m_copyPathsAction->setEnabled(count > 0);
    m_copyPathsAction->setText(count > 1 ? tr("Copy %1 paths").arg(count) : tr("Copy path"));
}

QModelIndexList GalleryView::selectedInRowOrder() const
{
    QModelIndexList indexes = selectedIndexes();
    std::sort(indexes.begin(), indexes.end(),
              [](const QModelIndex &a, const QModelIndex &b) { return a.row() < b.row(); });
    return indexes;
}
