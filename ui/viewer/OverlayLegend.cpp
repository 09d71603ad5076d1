#include "viewer/OverlayLegend.h"

#include <QFontMetrics>
#include <QPaintEvent>
#include <QPainter>

#include <cmath>

namespace {

constexpr int barThickness = 14;
constexpr int tickLength = 4;
constexpr int margin = 4;

// Colour-bar geometry shared by both orientations: value -> pixel along the bar.
struct Axis {
    double min, max;
    double from, to; // pixel positions of min and max

    double pos(double v) const { return from + (v - min) / (max - min) * (to - from); }
};

QFont boldOf(const QFont &f)
{
    QFont b = f;
    b.setBold(true);
    return b;
}

// The threshold line must stay visible on every colour of every map: a dark halo under a
// light core.
void drawThresholdLine(QPainter &p, const QPointF &a, const QPointF &b)
{
    p.setPen(QPen(QColor(0, 0, 0, 200), 3.0, Qt::SolidLine, Qt::FlatCap));
    p.drawLine(a, b);
    p.setPen(QPen(Qt::white, 1.0, Qt::SolidLine, Qt::FlatCap));
    p.drawLine(a, b);
}

} // namespace

OverlayLegend::OverlayLegend(QWidget *parent) : QWidget(parent)
{
    setObjectName(QStringLiteral("overlayLegend"));
    setSizePolicy(QSizePolicy::Preferred, QSizePolicy::Expanding);
    updateToolTip();
}

void OverlayLegend::setScale(double min, double max, double threshold)
{
    if (min == m_min && max == m_max && threshold == m_threshold)
        return;
    m_min = min;
    m_max = max;
    m_threshold = threshold;
    updateToolTip();
    update();
}

void OverlayLegend::setColorMap(const QString &name)
{
    if (ColorMap::isKnownName(name) && ColorMap::byName(name).name() != m_colorMap.name()) {
        m_colorMap = ColorMap::byName(name);
        update();
    }
}

void OverlayLegend::setLabel(const QString &text)
{
    if (text == m_label)
        return;
    m_label = text;
    updateGeometry(); // a wrapped label may need more room
    update();
}

void OverlayLegend::setOrientation(Qt::Orientation orientation)
{
    if (orientation == m_orientation)
        return;
    m_orientation = orientation;
    setSizePolicy(orientation == Qt::Vertical ? QSizePolicy::Preferred : QSizePolicy::Expanding,
                  orientation == Qt::Vertical ? QSizePolicy::Expanding : QSizePolicy::Fixed);
    updateGeometry();
    update();
}

QSize OverlayLegend::sizeHint() const
{
    const QFontMetrics fm(font());
    // Wide enough for "-00.000" tick labels next to the bar.
    const int tickTextW = QFontMetrics(boldOf(font())).horizontalAdvance(QStringLiteral("-00.000"));
    if (m_orientation == Qt::Vertical) {
        // Labels read "latent <id> · <concept>": the first line should hold a five-digit id.
        const int labelW = fm.horizontalAdvance(QStringLiteral("latent 00000 \u00b7"));
        return QSize(2 * margin + qMax(barThickness + tickLength + 4 + tickTextW, labelW), 240);
    }
    return QSize(240, 2 * margin + fm.height() * 2 + barThickness + tickLength + 4);
}

QSize OverlayLegend::minimumSizeHint() const
{
    const QSize hint = sizeHint();
    return m_orientation == Qt::Vertical ? QSize(hint.width(), 120) : QSize(120, hint.height());
}

void OverlayLegend::paintEvent(QPaintEvent *)
{
    QPainter p(this);
    Content c;
    c.colorMap = m_colorMap;
    c.min = m_min;
    c.max = m_max;
    c.threshold = m_threshold;
    c.label = m_label;
    c.orientation = m_orientation;
    c.text = palette().color(isEnabled() ? QPalette::Active : QPalette::Disabled, QPalette::WindowText);
    paintLegend(p, rect(), c);
}

void OverlayLegend::updateToolTip()
{
    setToolTip(tr("Activation colour scale %1 to %2.\nThe marked line is the firing threshold (%3): "
                  "patches above it are outlined on the image.")
                   .arg(QString::number(m_min, 'g', 4), QString::number(m_max, 'g', 4),
                        QString::number(m_threshold, 'g', 3)));
}

QVector<double> OverlayLegend::niceTicks(double min, double max, int maxTicks)
{
    QVector<double> ticks;
    if (!std::isfinite(min) || !std::isfinite(max) || maxTicks < 2)
        return ticks;
    if (!(max > min)) {
        ticks.append(min);
        return ticks;
    }
    const double rough = (max - min) / (maxTicks - 1);
    const double mag = std::pow(10.0, std::floor(std::log10(rough)));
    double step = 10.0 * mag;
    for (double m : {1.0, 2.0, 5.0}) {
        if (m * mag >= rough - 1e-12 * mag) {
            step = m * mag;
            break;
        }
    }
    const double eps = step * 1e-6;
    // Snap to the step's decimals so 3 * 0.2 gives 0.6, not 0.6000000000000001.
    // (Dividing by an exact power of ten; steps >= 1 are whole numbers already.)
    const double scale = step < 1.0 ? std::pow(10.0, -std::floor(std::log10(step))) : 1.0;
    for (double k = std::ceil((min - eps) / step); k * step <= max + eps; k += 1.0) {
        double v = std::round(k * step * scale) / scale;
        if (std::abs(v) < eps)
            v = 0.0; // no "-0"
        ticks.append(v);
    }
    return ticks;
}

QString OverlayLegend::formatTick(double value, double step)
{
    int decimals = 0;
    if (step > 0.0 && std::isfinite(step))
        decimals = qBound(0, int(std::ceil(-std::log10(step) - 1e-9)), 6);
    return QString::number(value, 'f', decimals);
}

void OverlayLegend::paintLegend(QPainter &p, const QRect &rect, const Content &content)
{
    p.save();
    p.setRenderHint(QPainter::Antialiasing, false);
    const double min = content.min;
    // A degenerate scale still gets a drawable bar instead of a division by zero.
    const double max = content.max > content.min ? content.max : content.min + 1.0;
    const QFont normalFont = p.font();
    const QFont thresholdFont = boldOf(normalFont);
    const QFontMetrics fm(normalFont);
    const QFontMetrics bfm(thresholdFont);
    const int lineH = fm.height();
    const QRect area = rect.adjusted(margin, margin, -margin, -margin);
    const QVector<double> ticks = niceTicks(min, max, content.orientation == Qt::Vertical ? 6 : 5);
    const double step = ticks.size() > 1 ? ticks[1] - ticks[0] : max - min;
    const bool thresholdShown = content.threshold >= min && content.threshold <= max;
    const QString thresholdText = QString::number(content.threshold, 'g', 3);
    p.setPen(content.text);

    if (content.orientation == Qt::Vertical) {
        int labelH = 0;
        if (!content.label.isEmpty()) {
            // "latent 1234 · Auer rod" should break after the dot, not before it.
            QString label = content.label;
            label.replace(QStringLiteral(" \u00b7 "), QStringLiteral("\u00a0\u00b7 "));
            const int flags = Qt::TextWordWrap | Qt::AlignLeft | Qt::AlignTop;
            const QRect bound = fm.boundingRect(QRect(area.left(), area.top(), area.width(), 3 * lineH), flags, label);
            labelH = qMin(bound.height(), 3 * lineH);
            p.drawText(QRect(area.left(), area.top(), area.width(), labelH), flags, label);
            labelH += lineH / 2;
        }
        // Half a line above and below the bar so the end tick labels are not clipped.
        const int barTop = area.top() + labelH + lineH / 2;
        const int barBottom = area.bottom() - lineH / 2;
        if (barBottom - barTop < 8) {
            p.restore();
            return;
        }
        const QRect bar(area.left(), barTop, barThickness, barBottom - barTop + 1);
        p.drawImage(bar, content.colorMap.legend(bar.width(), bar.height(), Qt::Vertical));
        p.setPen(content.text);
        p.drawRect(bar.adjusted(0, 0, -1, -1));
        const Axis axis{min, max, double(barBottom), double(barTop)};
        const int textX = bar.right() + tickLength + 4;
        const double thresholdY = thresholdShown ? axis.pos(content.threshold) : 0.0;
        for (double v : ticks) {
            const int y = qRound(axis.pos(v));
            p.setPen(content.text);
            p.drawLine(bar.right() + 1, y, bar.right() + tickLength, y);
            // The threshold label wins over a tick label it would overlap.
            if (thresholdShown && std::abs(y - thresholdY) < lineH)
                continue;
            p.drawText(QRect(textX, y - lineH / 2, area.right() - textX + 1, lineH), Qt::AlignLeft | Qt::AlignVCenter,
                       formatTick(v, step));
        }
        if (thresholdShown) {
            const int y = qRound(thresholdY);
            drawThresholdLine(p, QPointF(bar.left() - 2, y + 0.5), QPointF(bar.right() + tickLength + 2, y + 0.5));
            p.setPen(content.text);
            p.setFont(thresholdFont);
            p.drawText(QRect(textX, y - lineH / 2, area.right() - textX + 1, lineH), Qt::AlignLeft | Qt::AlignVCenter,
                       thresholdText);
            p.setFont(normalFont);
        }
    } else {
        int top = area.top();
        if (!content.label.isEmpty()) {
            p.drawText(QRect(area.left(), top, area.width(), lineH), Qt::AlignLeft | Qt::AlignVCenter,
                       fm.elidedText(content.label, Qt::ElideRight, area.width()));
            top += lineH + 2;
        }
        // Room at both ends for half a tick label.
        const int endRoom =
            qMax(fm.horizontalAdvance(formatTick(max, step)), fm.horizontalAdvance(formatTick(min, step))) / 2;
        const int barLeft = area.left() + endRoom;
        const int barRight = area.right() - endRoom;
        if (barRight - barLeft < 8) {
            p.restore();
            return;
        }
        const QRect bar(barLeft, top, barRight - barLeft + 1, barThickness);
        p.drawImage(bar, content.colorMap.legend(bar.width(), bar.height(), Qt::Horizontal));
        p.setPen(content.text);
        p.drawRect(bar.adjusted(0, 0, -1, -1));
        const Axis axis{min, max, double(barLeft), double(barRight)};
        const int textY = bar.bottom() + tickLength + 2;
        const double thresholdX = thresholdShown ? axis.pos(content.threshold) : 0.0;
        const int thresholdHalfW = bfm.horizontalAdvance(thresholdText) / 2;
        for (double v : ticks) {
            const int x = qRound(axis.pos(v));
            const QString text = formatTick(v, step);
            const int halfW = fm.horizontalAdvance(text) / 2;
            p.setPen(content.text);
            p.drawLine(x, bar.bottom() + 1, x, bar.bottom() + tickLength);
            if (thresholdShown && std::abs(x - thresholdX) < halfW + thresholdHalfW + 4)
                continue;
            p.drawText(QRect(x - halfW - 2, textY, 2 * halfW + 4, lineH), Qt::AlignCenter, text);
        }
        if (thresholdShown) {
            const int x = qRound(thresholdX);
            drawThresholdLine(p, QPointF(x + 0.5, bar.top() - 2), QPointF(x + 0.5, bar.bottom() + tickLength + 2));
            p.setPen(content.text);
            p.setFont(thresholdFont);
            p.drawText(QRect(x - thresholdHalfW - 2, textY, 2 * thresholdHalfW + 4, lineH), Qt::AlignCenter,
                       thresholdText);
            p.setFont(normalFont);
        }
    }
    p.restore();
}
