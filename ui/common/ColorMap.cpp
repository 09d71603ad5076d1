#include "common/ColorMap.h"

#include <QHash>

#include <algorithm>
#include <cmath>

namespace {

struct ControlPoint {
    double pos; // 0..1
    double r, g, b; // 0..1
};

// viridis and magma: every 16th entry (and the last) of the 256-entry tables published with
// matplotlib (van der Walt & Smith, _cm_listed.py). Linear interpolation between these stays
// within about one unit of the full tables, which is far below what a heat map can show.
const ControlPoint viridisPoints[] = {
    {0 / 255.0, 0.267004, 0.004874, 0.329415},   {16 / 255.0, 0.282327, 0.094955, 0.417331},
    {32 / 255.0, 0.278826, 0.175490, 0.483397},  {48 / 255.0, 0.258965, 0.251537, 0.524736},
    {64 / 255.0, 0.229739, 0.322361, 0.545706},  {80 / 255.0, 0.199430, 0.387607, 0.554642},
    {96 / 255.0, 0.172719, 0.448791, 0.557885},  {112 / 255.0, 0.149039, 0.508051, 0.557250},
    {128 / 255.0, 0.127568, 0.566949, 0.550556}, {144 / 255.0, 0.120638, 0.625828, 0.533488},
    {160 / 255.0, 0.157851, 0.683765, 0.501686}, {176 / 255.0, 0.246070, 0.738910, 0.452024},
    {192 / 255.0, 0.369214, 0.788888, 0.382914}, {208 / 255.0, 0.515992, 0.831158, 0.294279},
    {224 / 255.0, 0.678489, 0.863742, 0.189503}, {240 / 255.0, 0.845561, 0.887322, 0.099702},
    {255 / 255.0, 0.993248, 0.906157, 0.143936},
};

const ControlPoint magmaPoints[] = {
    {0 / 255.0, 0.001462, 0.000466, 0.013866},   {16 / 255.0, 0.039608, 0.031090, 0.133515},
    {32 / 255.0, 0.113094, 0.065492, 0.276784},  {48 / 255.0, 0.211718, 0.061992, 0.418647},
    {64 / 255.0, 0.316654, 0.071690, 0.485380},  {80 / 255.0, 0.414709, 0.110431, 0.504662},
    {96 / 255.0, 0.512831, 0.148179, 0.507648},  {112 / 255.0, 0.613617, 0.181811, 0.498536},
    {128 / 255.0, 0.716387, 0.214982, 0.475290}, {144 / 255.0, 0.816914, 0.255895, 0.436461},
    {160 / 255.0, 0.904281, 0.319610, 0.388137}, {176 / 255.0, 0.960949, 0.418323, 0.359630},
    {192 / 255.0, 0.986700, 0.535582, 0.382210}, {208 / 255.0, 0.996096, 0.653659, 0.446213},
    {224 / 255.0, 0.996898, 0.769591, 0.534892}, {240 / 255.0, 0.992440, 0.884330, 0.640099},
    {255 / 255.0, 0.987053, 0.991438, 0.749504},
};

// Single-hue blues (ColorBrewer "Blues", 9 classes): white -> dark blue. Reads naturally as
// "more = darker" on a monitor and prints well in greyscale.
const ControlPoint bluesPoints[] = {
    {0.000, 0xf7 / 255.0, 0xfb / 255.0, 0xff / 255.0}, {0.125, 0xde / 255.0, 0xeb / 255.0, 0xf7 / 255.0},
    {0.250, 0xc6 / 255.0, 0xdb / 255.0, 0xef / 255.0}, {0.375, 0x9e / 255.0, 0xca / 255.0, 0xe1 / 255.0},
    {0.500, 0x6b / 255.0, 0xae / 255.0, 0xd6 / 255.0}, {0.625, 0x42 / 255.0, 0x92 / 255.0, 0xc6 / 255.0},
    {0.750, 0x21 / 255.0, 0x71 / 255.0, 0xb5 / 255.0}, {0.875, 0x08 / 255.0, 0x51 / 255.0, 0x9c / 255.0},
    {1.000, 0x08 / 255.0, 0x30 / 255.0, 0x6b / 255.0},
};

template <size_t N>
QVector<QRgb> buildLut(const ControlPoint (&points)[N])
{
    QVector<QRgb> lut(ColorMap::lutSize);
    size_t seg = 0;
    for (int i = 0; i < ColorMap::lutSize; ++i) {
        const double t = double(i) / (ColorMap::lutSize - 1);
        while (seg + 2 < N && t > points[seg + 1].pos)
            ++seg;
        const ControlPoint &a = points[seg];
        const ControlPoint &b = points[seg + 1];
        const double f = b.pos > a.pos ? qBound(0.0, (t - a.pos) / (b.pos - a.pos), 1.0) : 0.0;
        auto channel = [f](double x, double y) { return qBound(0, int(std::lround((x + (y - x) * f) * 255.0)), 255); };
        lut[i] = qRgb(channel(a.r, b.r), channel(a.g, b.g), channel(a.b, b.b));
    }
    return lut;
}

// Tables are built once per process; ColorMap copies then share them.
const QHash<QString, QVector<QRgb>> &tables()
{
    static const QHash<QString, QVector<QRgb>> all = {
        {QStringLiteral("viridis"), buildLut(viridisPoints)},
        {QStringLiteral("magma"), buildLut(magmaPoints)},
        {QStringLiteral("blues"), buildLut(bluesPoints)},
    };
    return all;
}

} // namespace

ColorMap::ColorMap() : ColorMap(byName(QStringLiteral("viridis"))) {}

ColorMap::ColorMap(const QString &name, const QVector<QRgb> &lut) : m_name(name), m_lut(lut) {}

QStringList ColorMap::names()
{
    return {QStringLiteral("viridis"), QStringLiteral("magma"), QStringLiteral("blues")};
}

bool ColorMap::isKnownName(const QString &name)
{
    return tables().contains(name.trimmed().toLower());
}

ColorMap ColorMap::byName(const QString &name)
{
    const QString key = name.trimmed().toLower();
    const auto &all = tables();
    const auto it = all.constFind(key);
    if (it == all.constEnd())
        return ColorMap(QStringLiteral("viridis"), all.value(QStringLiteral("viridis")));
    return ColorMap(key, it.value());
}

QRgb ColorMap::color(double t) const
{
    if (!(t > 0.0)) // also catches NaN
        return m_lut.first();
    if (t >= 1.0)
        return m_lut.last();
    return m_lut.at(int(t * (lutSize - 1) + 0.5));
}

QImage ColorMap::legend(int w, int h, Qt::Orientation orientation) const
{
    if (w <= 0 || h <= 0)
        return QImage();
    QImage img(w, h, QImage::Format_RGB32);
    if (orientation == Qt::Horizontal) {
        QVector<QRgb> row(w);
        for (int x = 0; x < w; ++x)
            row[x] = color(w > 1 ? double(x) / (w - 1) : 0.0);
        for (int y = 0; y < h; ++y)
            std::copy(row.cbegin(), row.cend(), reinterpret_cast<QRgb *>(img.scanLine(y)));
    } else {
        for (int y = 0; y < h; ++y) {
            const QRgb c = color(h > 1 ? 1.0 - double(y) / (h - 1) : 0.0);
            auto *line = reinterpret_cast<QRgb *>(img.scanLine(y));
            std::fill(line, line + w, c);
        }
    }
    return img;
}
