#pragma once

// Thumbnail grid for a GalleryModel (any model with GalleryModel's ImageIdRole/PathRole
// works). Icon mode with uniform item sizes and batched layout, so 100k rows lay out
// without asking the model for more than one size hint; only painted rows are decoded.
//
// Scrolling a GalleryModel drops its queued thumbnail requests (the rows now on screen are
// requested again when they paint), so dragging the scroll bar never builds a backlog.
//
// Keyboard: arrows, PageUp/PageDown, Home/End move (from QListView); Shift/Ctrl extend the
// selection; Enter/Return activates; Ctrl+C copies the selected paths, one per line.

#include <QListView>
#include <QList>
#include <QStringList>

class QAction;

class GalleryView : public QListView {
    Q_OBJECT
public:
    explicit GalleryView(QWidget *parent = nullptr);

    // Also adopts the model's thumbnail size when the model is a GalleryModel.
    void setModel(QAbstractItemModel *model) override;

    void setThumbnailSize(int size);
    int thumbnailSize() const { return m_thumbnailSize; }

    // In row order.
    QList<qint64> selectedImageIds() const;
    QStringList selectedPaths() const;

    QAction *copyPathsAction() const { return m_copyPathsAction; }

public slots:
    void copySelectedPaths();

signals:
    // Enter/Return on the current item, or a left double-click on an item.
    void imageActivated(qint64 imageId);

protected:
    bool event(QEvent *event) override;
    void keyPressEvent(QKeyEvent *event) override;
    void mouseDoubleClickEvent(QMouseEvent *event) override;
    void contextMenuEvent(QContextMenuEvent *event) override;
    void changeEvent(QEvent *event) override;
    void resizeEvent(QResizeEvent *event) override;

private:
    void onScrolled();
    void updateGridSize();
    void updateCopyAction();
    QModelIndexList selectedInRowOrder() const;

    QAction *m_copyPathsAction = nullptr;
    int m_thumbnailSize;
};
