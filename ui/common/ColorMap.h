#pragma once

// Named colour maps as 256-entry lookup tables, for activation heat maps and their legends.
// Values are looked up, never computed per pixel, so colourising a patch grid costs a few
// table reads. A ColorMap is a small value type: copies share the table.

#include <QImage>
#include <QRgb>
#include <QString>
#include <QStringList>
#include <QVector>

class ColorMap {
public:
    static constexpr int lutSize = 256;

    // The default map is viridis: perceptually uniform and readable by colour-blind users.
    ColorMap();

    // Every name byName() accepts, in the order a user should see them.
    static QStringList names();
    static bool isKnownName(const QString &name);
    // Unknown names give viridis, so a stale setting never leaves the view without colours.
    static ColorMap byName(const QString &name);

    QString name() const { return m_name; }

    // t in [0, 1]; values outside (and NaN, as 0) are clamped to the ends.
    QRgb color(double t) const;
    QRgb lutEntry(int index) const { return m_lut.at(qBound(0, index, lutSize - 1)); }
    const QVector<QRgb> &lut() const { return m_lut; }

    // A colour bar: horizontal runs low -> high left to right, vertical bottom to top, as in
    // a plot axis.
    QImage legend(int w, int h, Qt::Orientation orientation) const;

private:
    ColorMap(const QString &name, const QVector<QRgb> &lut);

    QString m_name;
    QVector<QRgb> m_lut;
};
