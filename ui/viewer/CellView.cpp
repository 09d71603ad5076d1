#include "viewer/CellView.h"

#include "viewer/OverlayLegend.h"

#include <QApplication>
#include <QCursor>
#include <QFont>
#include <QHelpEvent>
#include <QMouseEvent>
#include <QPainter>
#include <QSaveFile>
#include <QToolTip>
#include <QWheelEvent>

#include <cmath>
#include <limits>

namespace {

constexpr double minZoom = 0.05;
constexpr double maxZoom = 64.0;
constexpr double zoomStep = 1.25;
// Above this magnification the image is drawn with nearest-neighbour so a hematologist
// inspecting fine structure sees the real pixels, not interpolated blur.
constexpr double smoothUpTo = 3.0;
constexpr int exportMinSide = 448;
const QColor backgroundColor(0x3c, 0x3c, 0x3c);

} // namespace

CellView::CellView(QWidget *parent) : QWidget(parent)
{
    setObjectName(QStringLiteral("cellView"));
    setMouseTracking(true);
    setFocusPolicy(Qt::ClickFocus);
    setSizePolicy(QSizePolicy::Expanding, QSizePolicy::Expanding);
    // The view paints every pixel itself.
    setAttribute(Qt::WA_OpaquePaintEvent);
}

QSize CellView::sizeHint() const
{
    return QSize(480, 480);
}

QSize CellView::minimumSizeHint() const
{
    return QSize(160, 160);
}

// ---------------------------------------------------------------------------------------------
// inputs

void CellView::setImage(const QImage &image)
{
    // One conversion here instead of one per paint: these formats are the raster engine's fast path.
    m_image = image.isNull() ? QImage()
                             : image.convertToFormat(image.hasAlphaChannel() ? QImage::Format_ARGB32_Premultiplied
                                                                               : QImage::Format_RGB32);
    // A new cell starts fully visible, whatever the zoom on the previous one was.
    fitToView();
    update();
    emit displayChanged();
}

void CellView::setOverlay(const ActivationOverlay &overlay)
{
    const bool gridChanged = overlay.gridW != m_overlay.gridW || overlay.gridH != m_overlay.gridH;
    m_overlay = overlay;
    invalidateOverlay();
    if (gridChanged || !m_overlay.valid())
        setHoverPatch(-1);
    update();
    emit displayChanged();
}

void CellView::clearOverlay()
{
    setOverlay(ActivationOverlay());
}

void CellView::setColorMap(const QString &name)
{
    if (!ColorMap::isKnownName(name))
        return;
    const ColorMap map = ColorMap::byName(name);
    if (map.name() == m_colorMap.name())
        return;
    m_colorMap = map;
    invalidateOverlay();
    update();
    emit displayChanged();
}

void CellView::setOpacity(double opacity)
{
    opacity = qBound(0.0, opacity, 1.0);
    if (qFuzzyCompare(1.0 + opacity, 1.0 + m_opacity))
        return;
    m_opacity = opacity; // applied at paint time: no cache rebuild
    update();
    emit displayChanged();
}

void CellView::setGridVisible(bool visible)
{
    if (visible == m_gridVisible)
        return;
    m_gridVisible = visible;
    update();
    emit displayChanged();
}

void CellView::setPerImageScaling(bool on)
{
    if (on == m_perImageScaling)
        return;
    m_perImageScaling = on;
    invalidateOverlay();
    update();
    emit displayChanged();
}

double CellView::activeScaleMin() const
{
    return m_perImageScaling ? 0.0 : double(m_overlay.scaleMin);
}

double CellView::activeScaleMax() const
{
    if (!m_perImageScaling)
        return m_overlay.scaleMax;
    float maxValue = 0.0f;
    for (float v : m_overlay.values) {
        if (v > maxValue) // NaN never compares greater
            maxValue = v;
    }
    // A silent overlay has no maximum to scale to; the fixed scale keeps the legend meaningful.
    return maxValue > 0.0f ? double(maxValue) : double(m_overlay.scaleMax);
}

// ---------------------------------------------------------------------------------------------
// overlay cache

void CellView::invalidateOverlay()
{
    m_cacheDirty = true;
}

void CellView::ensureOverlayCache() const
{
    if (!m_cacheDirty)
        return;
    m_cacheDirty = false;
    m_thresholdOutline.clear();
    if (!m_overlay.valid()) {
        m_overlayCache = QImage();
        return;
    }
    const int w = m_overlay.gridW;
    const int h = m_overlay.gridH;
    const double lo = activeScaleMin();
    const double hi = activeScaleMax();
    const double range = hi > lo ? hi - lo : 1.0;
    const float *values = m_overlay.values.constData();

    if (m_overlayCache.size() != QSize(w, h))
        m_overlayCache = QImage(w, h, QImage::Format_ARGB32_Premultiplied);
    for (int r = 0; r < h; ++r) {
        auto *line = reinterpret_cast<QRgb *>(m_overlayCache.scanLine(r));
        for (int c = 0; c < w; ++c) {
            const float v = values[r * w + c];
            // Silent patches stay transparent so the cell shows through where the latent is off.
            line[c] = v > 0.0f ? m_colorMap.color((v - lo) / range) : 0u;
        }
    }

    // Outline the region above the threshold: an edge wherever an above-threshold patch meets a
    // below-threshold one or the image border. Stored in grid units, scaled at paint time.
    const float thr = m_overlay.threshold;
    auto above = [&](int r, int c) { return r >= 0 && r < h && c >= 0 && c < w && values[r * w + c] > thr; };
    for (int r = 0; r < h; ++r) {
        for (int c = 0; c < w; ++c) {
            if (!above(r, c))
                continue;
            if (!above(r, c - 1))
                m_thresholdOutline.append(QLineF(c, r, c, r + 1));
            if (!above(r, c + 1))
                m_thresholdOutline.append(QLineF(c + 1, r, c + 1, r + 1));
            if (!above(r - 1, c))
                m_thresholdOutline.append(QLineF(c, r, c + 1, r));
            if (!above(r + 1, c))
                m_thresholdOutline.append(QLineF(c, r + 1, c + 1, r + 1));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// painting

void CellView::paintScene(QPainter &p, const QRectF &target, bool smoothImage, int hoverPatch) const
{
    p.save();
    p.setRenderHint(QPainter::SmoothPixmapTransform, smoothImage);
    p.drawImage(target, m_image);

    if (!m_overlay.valid()) {
        p.restore();
        return;
    }
    ensureOverlayCache();
    const double cellW = target.width() / m_overlay.gridW;
    const double cellH = target.height() / m_overlay.gridH;
    auto toTarget = [&](const QPointF &g) {
        return QPointF(target.left() + g.x() * cellW, target.top() + g.y() * cellH);
    };

    if (m_opacity > 0.0) {
        // The ViT saw the image resized to a square, so the grid spans the whole image,
        // whatever its aspect ratio: stretching the patch image onto the target is exact.
        p.setRenderHint(QPainter::SmoothPixmapTransform, false);
        p.setOpacity(m_opacity);
        p.drawImage(target, m_overlayCache);
        p.setOpacity(1.0);
    }

    if (m_gridVisible) {
        p.setRenderHint(QPainter::Antialiasing, false);
        p.setPen(QPen(QColor(20, 20, 20, 90), 0)); // cosmetic: 1 px at any zoom
        for (int c = 1; c < m_overlay.gridW; ++c) {
            const double x = std::floor(target.left() + c * cellW);
            p.drawLine(QLineF(x, target.top(), x, target.bottom()));
        }
        for (int r = 1; r < m_overlay.gridH; ++r) {
            const double y = std::floor(target.top() + r * cellH);
            p.drawLine(QLineF(target.left(), y, target.right(), y));
        }
    }

    // The threshold outline belongs to the overlay: opacity 0 shows the bare cell.
    if (m_opacity > 0.0 && !m_thresholdOutline.isEmpty()) {
        QVector<QLineF> lines;
        lines.reserve(m_thresholdOutline.size());
        for (const QLineF &l : std::as_const(m_thresholdOutline))
            lines.append(QLineF(toTarget(l.p1()), toTarget(l.p2())));
        // Axis-aligned lines: no antialiasing needed, and drawing hundreds of antialiased
        // wide segments is what would make switching concepts slow on a dense one.
        p.setRenderHint(QPainter::Antialiasing, false);
        // Dark halo + light core: visible on pale cytoplasm and on every colour of every map.
        p.setPen(QPen(QColor(0, 0, 0, 150), 3.0, Qt::SolidLine, Qt::SquareCap));
        p.drawLines(lines);
        p.setPen(QPen(QColor(255, 255, 255, 235), 1.0, Qt::SolidLine, Qt::SquareCap));
        p.drawLines(lines);
    }

    if (hoverPatch >= 0 && hoverPatch < m_overlay.gridW * m_overlay.gridH) {
        const int r = hoverPatch / m_overlay.gridW;
        const int c = hoverPatch % m_overlay.gridW;
        const QRectF cell(toTarget(QPointF(c, r)), toTarget(QPointF(c + 1, r + 1)));
        p.setRenderHint(QPainter::Antialiasing, true);
        p.setBrush(Qt::NoBrush);
        p.setPen(QPen(QColor(255, 214, 0), 1.5));
        p.drawRect(cell);
    }
    p.restore();
}

void CellView::paintEvent(QPaintEvent *)
{
    QPainter p(this);
    p.fillRect(rect(), backgroundColor);
    if (m_image.isNull()) {
        p.setPen(QColor(200, 200, 200));
        p.drawText(rect(), Qt::AlignCenter, tr("No cell image"));
        return;
    }
    const QRectF target(m_offset, QSizeF(m_image.width() * m_zoom, m_image.height() * m_zoom));
    paintScene(p, target, m_zoom < smoothUpTo, m_hoverPatch);
}

QSize CellView::renderedImageSize() const
{
    if (m_image.isNull())
        return QSize();
    const int shortSide = qMin(m_image.width(), m_image.height());
    const double scale = qMax(1.0, double(exportMinSide) / shortSide);
    return QSize(qRound(m_image.width() * scale), qRound(m_image.height() * scale));
}

QImage CellView::renderToImage() const
{
    if (m_image.isNull())
        return QImage();
    const QSize imageSize = renderedImageSize();
    QFont font = QApplication::font();
    font.setPixelSize(qMax(12, imageSize.height() / 34));
    const QFontMetrics fm(font);
    const int legendW = m_overlay.valid() ? 28 + fm.horizontalAdvance(QStringLiteral("-00.000")) + 40 : 0;

    QImage out(imageSize.width() + legendW, imageSize.height(), QImage::Format_RGB32);
    out.fill(Qt::white);
    QPainter p(&out);
    p.setFont(font);
    paintScene(p, QRectF(QPointF(0, 0), QSizeF(imageSize)), true, -1);
    if (legendW > 0) {
        OverlayLegend::Content legend;
        legend.colorMap = m_colorMap;
        legend.min = activeScaleMin();
        legend.max = activeScaleMax();
        legend.threshold = m_overlay.threshold;
        legend.label = m_overlay.label;
        legend.orientation = Qt::Vertical;
        legend.text = Qt::black;
        OverlayLegend::paintLegend(p, QRect(imageSize.width() + 8, 4, legendW - 12, imageSize.height() - 8), legend);
    }
    p.end();
    return out;
}

bool CellView::exportPng(const QString &path)
{
    const QImage img = renderToImage();
    if (img.isNull() || path.isEmpty())
        return false;
    // Written to a temporary file and renamed, so a failed export never leaves a broken PNG.
    QSaveFile file(path);
    if (!file.open(QIODevice::WriteOnly))
        return false;
    if (!img.save(&file, "PNG")) {
        file.cancelWriting();
        return false;
    }
    return file.commit();
}

// ---------------------------------------------------------------------------------------------
// geometry

QPointF CellView::imageToWidget(const QPointF &imagePos) const
{
    return m_offset + imagePos * m_zoom;
}

QPointF CellView::widgetToImage(const QPointF &widgetPos) const
{
    return (widgetPos - m_offset) / m_zoom;
}

int CellView::patchAt(const QPointF &widgetPos) const
{
    if (m_image.isNull() || !m_overlay.valid())
        return -1;
    const QPointF ip = widgetToImage(widgetPos);
    if (ip.x() < 0 || ip.y() < 0 || ip.x() >= m_image.width() || ip.y() >= m_image.height())
        return -1;
    const int col = qBound(0, int(ip.x() * m_overlay.gridW / m_image.width()), m_overlay.gridW - 1);
    const int row = qBound(0, int(ip.y() * m_overlay.gridH / m_image.height()), m_overlay.gridH - 1);
    return row * m_overlay.gridW + col;
}

float CellView::patchValue(int patchIndex) const
{
    if (!m_overlay.valid() || patchIndex < 0 || patchIndex >= m_overlay.values.size())
        return std::numeric_limits<float>::quiet_NaN();
    return m_overlay.values.at(patchIndex);
}

QPointF CellView::patchCenter(int patchIndex) const
{
    if (m_image.isNull() || !m_overlay.valid() || patchIndex < 0 || patchIndex >= m_overlay.values.size())
        return QPointF();
    const int r = patchIndex / m_overlay.gridW;
    const int c = patchIndex % m_overlay.gridW;
    const QPointF ip((c + 0.5) * m_image.width() / m_overlay.gridW, (r + 0.5) * m_image.height() / m_overlay.gridH);
    return imageToWidget(ip);
}

// ---------------------------------------------------------------------------------------------
// zoom and pan

double CellView::fitZoom() const
{
    if (m_image.isNull() || width() <= 0 || height() <= 0)
        return 1.0;
    return qBound(minZoom, qMin(double(width()) / m_image.width(), double(height()) / m_image.height()), maxZoom);
}

void CellView::applyFit()
{
    const double old = m_zoom;
    m_zoom = fitZoom();
    if (!m_image.isNull())
        m_offset = QPointF((width() - m_image.width() * m_zoom) / 2.0, (height() - m_image.height() * m_zoom) / 2.0);
    if (m_zoom != old)
        emit zoomChanged(m_zoom);
}

void CellView::fitToView()
{
    m_fitMode = true;
    applyFit();
    update();
}

void CellView::zoomIn()
{
    zoomAround(zoomStep, QRectF(rect()).center());
}

void CellView::zoomOut()
{
    zoomAround(1.0 / zoomStep, QRectF(rect()).center());
}

void CellView::zoomAround(double factor, const QPointF &widgetPos)
{
    if (m_image.isNull())
        return;
    setZoom(m_zoom * factor, widgetPos, widgetToImage(widgetPos));
}

void CellView::setZoom(double zoom, const QPointF &anchorWidget, const QPointF &anchorImage)
{
    zoom = qBound(minZoom, zoom, maxZoom);
    m_fitMode = false;
    // Keep the anchored image point under the same widget position (the cursor for the wheel).
    m_offset = anchorWidget - anchorImage * zoom;
    const bool changed = zoom != m_zoom;
    m_zoom = zoom;
    update();
    if (changed)
        emit zoomChanged(m_zoom);
}

void CellView::resizeEvent(QResizeEvent *event)
{
    QWidget::resizeEvent(event);
    if (m_fitMode)
        applyFit();
}

void CellView::wheelEvent(QWheelEvent *event)
{
    const int dy = event->angleDelta().y();
    if (dy == 0 || m_image.isNull()) {
        event->ignore();
        return;
    }
    // 120 units = one notch = one zoom step; touchpads send fractions of it for smooth zoom.
    zoomAround(std::pow(zoomStep, dy / 120.0), event->position());
    event->accept();
}

// ---------------------------------------------------------------------------------------------
// mouse

void CellView::mousePressEvent(QMouseEvent *event)
{
    if (event->button() != Qt::LeftButton) {
        QWidget::mousePressEvent(event);
        return;
    }
    m_pressed = true;
    m_dragging = false;
    m_pressPos = event->position();
    m_pressOffset = m_offset;
    event->accept();
}

void CellView::mouseMoveEvent(QMouseEvent *event)
{
    const QPointF pos = event->position();
    if (m_pressed && (event->buttons() & Qt::LeftButton)) {
        // A small jitter during a click must not turn it into a pan.
        if (!m_dragging && (pos - m_pressPos).manhattanLength() >= QApplication::startDragDistance()) {
            m_dragging = true;
            setCursor(Qt::ClosedHandCursor);
        }
        if (m_dragging) {
            m_fitMode = false;
            m_offset = m_pressOffset + (pos - m_pressPos);
            update();
        }
    }
    setHoverPatch(patchAt(pos));
    event->accept();
}

void CellView::mouseReleaseEvent(QMouseEvent *event)
{
    if (event->button() != Qt::LeftButton || !m_pressed) {
        QWidget::mouseReleaseEvent(event);
        return;
    }
    const bool wasDrag = m_dragging;
    m_pressed = false;
    m_dragging = false;
    unsetCursor();
    if (!wasDrag) {
        const int patch = patchAt(event->position());
        if (patch >= 0)
            emit patchClicked(patch);
    }
    event->accept();
}

void CellView::mouseDoubleClickEvent(QMouseEvent *event)
{
    if (event->button() == Qt::LeftButton) {
        fitToView();
        event->accept();
        return;
    }
    QWidget::mouseDoubleClickEvent(event);
}

void CellView::leaveEvent(QEvent *event)
{
    setHoverPatch(-1);
    QWidget::leaveEvent(event);
}

bool CellView::event(QEvent *event)
{
    if (event->type() == QEvent::ToolTip) {
        auto *help = static_cast<QHelpEvent *>(event);
        const int patch = patchAt(help->pos());
        if (patch >= 0)
            QToolTip::showText(help->globalPos(), patchDescription(patch), this);
        else
            QToolTip::hideText();
        return true;
    }
    return QWidget::event(event);
}

void CellView::setHoverPatch(int patchIndex)
{
    if (patchIndex == m_hoverPatch)
        return;
    m_hoverPatch = patchIndex;
    update();
    // Keep a visible tooltip in step with the patch under the cursor.
    if (QToolTip::isVisible() && patchIndex >= 0)
        QToolTip::showText(QCursor::pos(), patchDescription(patchIndex), this);
    emit patchHovered(patchIndex);
}

QString CellView::patchDescription(int patchIndex) const
{
    const float v = patchValue(patchIndex);
    const int r = patchIndex / m_overlay.gridW;
    const int c = patchIndex % m_overlay.gridW;
    QString text = tr("Patch %1 (row %2, column %3)\nActivation %4")
                       .arg(patchIndex)
                       .arg(r)
                       .arg(c)
                       .arg(double(v), 0, 'g', 4);
    if (v > m_overlay.threshold)
        text += tr(" (above threshold %1)").arg(double(m_overlay.threshold), 0, 'g', 3);
    return text;
}
