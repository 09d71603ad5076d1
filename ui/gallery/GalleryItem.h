#pragma once

// One cell image in a gallery. Plain data so that queries can build thousands of these
// cheaply; the gallery decodes the image itself only when its row becomes visible.

#include <QString>
#include <QVector>
#include <QtGlobal>

struct GalleryItem {
    qint64 imageId = 0;        // key of the thumbnail cache: the same id must mean the same pixels
    QString path;
    QString caption;           // e.g. "0.84 · AAA" (activation · label)
    // Optional per-patch activation grid (row-major, gridW * gridH values) drawn over the
    // thumbnail. The model input is the whole image resized without crop or aspect keeping,
    // so the grid is stretched over the whole thumbnail. Left empty: no overlay.
    QVector<float> overlay;
    int gridW = 0, gridH = 0;
    float scaleMax = 1;        // overlay value drawn at full strength; <= 0: the grid's own maximum
};
