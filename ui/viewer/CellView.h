#pragma once

// A cell image with one latent's patch activations laid over it as a heat map. Supports zoom
// (wheel around the cursor, buttons, fit), pan by dragging, per-patch hover/click and export.
//
// Rendering stays cheap however often the overlay changes: the overlay is colourised once into
// a gridW x gridH image (one pixel per patch) and scaled with nearest-neighbour at paint time,
// so switching latents costs a few hundred table look-ups plus one repaint.

#include "common/ColorMap.h"
#include "viewer/ActivationOverlay.h"

#include <QImage>
#include <QLineF>
#include <QPointF>
#include <QVector>
#include <QWidget>

class QPainter;

class CellView : public QWidget {
    Q_OBJECT
public:
    explicit CellView(QWidget *parent = nullptr);

    void setImage(const QImage &image);
    QImage image() const { return m_image; }

    void setOverlay(const ActivationOverlay &overlay);
    void clearOverlay();
    const ActivationOverlay &overlay() const { return m_overlay; }
    bool hasOverlay() const { return m_overlay.valid(); }

    // Unknown names are ignored (the current map stays).
    void setColorMap(const QString &name);
    QString colorMapName() const { return m_colorMap.name(); }
    void setOpacity(double opacity); // 0..1
    double opacity() const { return m_opacity; }
    void setGridVisible(bool visible);
    bool isGridVisible() const { return m_gridVisible; }
    // On: the colour scale runs from 0 to this overlay's maximum (shows the pattern of weakly
    // firing latents); off: the overlay's fixed scaleMin..scaleMax (comparable across cells).
    void setPerImageScaling(bool on);
    bool perImageScaling() const { return m_perImageScaling; }
    // The colour scale actually in use, after per-image scaling.
    double activeScaleMin() const;
    double activeScaleMax() const;

    // Screen pixels per image pixel.
    double zoomFactor() const { return m_zoom; }
    // True while the view follows the widget size (after fitToView(), until the user zooms or pans).
    bool isFitMode() const { return m_fitMode; }

    // Patch under a widget position: row * gridW + col, -1 outside the image or without overlay.
    int patchAt(const QPointF &widgetPos) const;
    // The patch under the mouse, -1 when none.
    int hoveredPatch() const { return m_hoverPatch; }
    // Value of a patch, NaN for an invalid index.
    float patchValue(int patchIndex) const;
    QPointF imageToWidget(const QPointF &imagePos) const;
    QPointF widgetToImage(const QPointF &widgetPos) const;
    // Centre of a patch in widget coordinates (for tests and for callers placing markers).
    QPointF patchCenter(int patchIndex) const;

    // The image with overlay, grid and threshold outline, scaled so its shorter side is at least
    // 448 px, at the top-left of the result, with the legend to its right and the label below.
    QImage renderToImage() const;
    // Where the image lies inside renderToImage()'s result: (0, 0) and this size.
    QSize renderedImageSize() const;
    bool exportPng(const QString &path);

    QSize sizeHint() const override;
    QSize minimumSizeHint() const override;

public slots:
    void zoomIn();
    void zoomOut();
    void fitToView();

signals:
    void patchHovered(int patchIndex);
    void patchClicked(int patchIndex);
    void zoomChanged(double zoomFactor);
    // The image, overlay, colour map, opacity, grid or scaling changed (not zoom or pan).
    void displayChanged();

protected:
    void paintEvent(QPaintEvent *event) override;
    void resizeEvent(QResizeEvent *event) override;
    void wheelEvent(QWheelEvent *event) override;
    void mousePressEvent(QMouseEvent *event) override;
    void mouseMoveEvent(QMouseEvent *event) override;
    void mouseReleaseEvent(QMouseEvent *event) override;
    void mouseDoubleClickEvent(QMouseEvent *event) override;
    void leaveEvent(QEvent *event) override;
    bool event(QEvent *event) override;

private:
    void invalidateOverlay();
    void ensureOverlayCache() const;
    // Draws image, overlay, grid, outlines (and hover) into target, the image's rect there.
    void paintScene(QPainter &p, const QRectF &target, bool smoothImage, int hoverPatch) const;
    void zoomAround(double factor, const QPointF &widgetPos);
    void setZoom(double zoom, const QPointF &anchorWidget, const QPointF &anchorImage);
    double fitZoom() const;
    void applyFit();
    void setHoverPatch(int patchIndex);
    QString patchDescription(int patchIndex) const;

    QImage m_image; // converted once to a raster fast-path format
    ActivationOverlay m_overlay;
    ColorMap m_colorMap;
    double m_opacity = 0.55;
    bool m_gridVisible = false;
    bool m_perImageScaling = false;

    // gridW x gridH premultiplied ARGB, one pixel per patch; rebuilt lazily when inputs change.
    mutable QImage m_overlayCache;
    // Boundary between above- and below-threshold patches, in grid units.
    mutable QVector<QLineF> m_thresholdOutline;
    mutable bool m_cacheDirty = true;

    double m_zoom = 1.0;
    QPointF m_offset; // widget position of the image's top-left corner
    bool m_fitMode = true;

    int m_hoverPatch = -1;
    bool m_pressed = false;
    bool m_dragging = false;
    QPointF m_pressPos;
    QPointF m_pressOffset;
};
