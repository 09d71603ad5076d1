#pragma once

// Colour bar for an activation overlay: the colour map, tick labels in activation units, the
// firing threshold as a marked line, and the overlay's label (latent id and concept name).

#include "common/ColorMap.h"

#include <QColor>
#include <QString>
#include <QVector>
#include <QWidget>

class QPainter;

class OverlayLegend : public QWidget {
    Q_OBJECT
public:
    explicit OverlayLegend(QWidget *parent = nullptr);

    void setScale(double min, double max, double threshold);
    void setColorMap(const QString &name);
    void setLabel(const QString &text);
    void setOrientation(Qt::Orientation orientation);

    double scaleMin() const { return m_min; }
    double scaleMax() const { return m_max; }
    double threshold() const { return m_threshold; }
    QString colorMapName() const { return m_colorMap.name(); }
    QString label() const { return m_label; }
    Qt::Orientation orientation() const { return m_orientation; }

    QSize sizeHint() const override;
    QSize minimumSizeHint() const override;

    // Everything the legend shows, so the export path can draw the same legend without a
    // widget (CellView::renderToImage).
    struct Content {
        ColorMap colorMap;
        double min = 0.0, max = 1.0, threshold = 0.2;
        QString label;
        Qt::Orientation orientation = Qt::Vertical;
        QColor text = Qt::black;
    };
    // Paints the legend inside rect with the painter's current font.
    static void paintLegend(QPainter &p, const QRect &rect, const Content &content);
    // "Round" tick values (1, 2, 5 x 10^k steps) inside [min, max], at most about maxTicks.
    static QVector<double> niceTicks(double min, double max, int maxTicks);
    // Tick text with just enough decimals for the step between ticks.
    static QString formatTick(double value, double step);

protected:
    void paintEvent(QPaintEvent *event) override;

private:
    void updateToolTip();

    ColorMap m_colorMap;
    double m_min = 0.0, m_max = 1.0, m_threshold = 0.2;
    QString m_label;
    Qt::Orientation m_orientation = Qt::Vertical;
};
