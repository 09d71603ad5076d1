#pragma once

// One SAE latent's activation over a cell image's patch grid, as the viewer receives it:
// plain Qt types so the ui layer needs nothing from core to display it.

#include <QString>
#include <QVector>

struct ActivationOverlay {
    int gridW = 0, gridH = 0;
    QVector<float> values; // row-major gridH x gridW, patch tokens only (no CLS/registers)
    // The fixed colour scale, in activation units, so overlays of different cells compare.
    float scaleMin = 0, scaleMax = 1;
    // CytoSAE counts a patch as "firing" above this activation.
    float threshold = 0.2f;
    QString label; // e.g. "latent 1234 · Auer rod"

    bool valid() const { return gridW > 0 && gridH > 0 && values.size() == gridW * gridH; }
};
