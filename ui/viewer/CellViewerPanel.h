#pragma once

// The cell viewer as a dockable panel: display controls, the CellView with its legend, and a
// line describing the patch under the cursor. The controls follow the view (also when code
// changes the view directly), so the two never disagree.

#include "viewer/ActivationOverlay.h"

#include <QWidget>

class CellView;
class OverlayLegend;
class QAction;
class QCheckBox;
class QComboBox;
class QImage;
class QLabel;
class QSettings;
class QSlider;
class QToolButton;

class CellViewerPanel : public QWidget {
    Q_OBJECT
public:
    explicit CellViewerPanel(QWidget *parent = nullptr);

    CellView *cellView() const { return m_view; }
    OverlayLegend *legend() const { return m_legend; }

    // Conveniences forwarding to cellView().
    void setImage(const QImage &image);
    void setOverlay(const ActivationOverlay &overlay);
    void clearOverlay();

    // Colour map, opacity, grid and per-image scaling, under the group "cellViewer".
    void saveState(QSettings &settings) const;
    void restoreState(QSettings &settings);

signals:
    void patchHovered(int patchIndex);
    void patchClicked(int patchIndex);

public slots:
    // Asks for a file name and writes the view as PNG (image, overlay and legend).
    void exportImage();

private:
    QToolButton *makeToolButton(QAction *action, const QString &objectName);
    void syncFromView();
    void updatePatchInfo(int patchIndex);

    CellView *m_view = nullptr;
    OverlayLegend *m_legend = nullptr;
    QComboBox *m_colorMapCombo = nullptr;
    QSlider *m_opacitySlider = nullptr;
    QCheckBox *m_gridCheck = nullptr;
    QCheckBox *m_perImageScaleCheck = nullptr;
    QLabel *m_patchInfo = nullptr;
    QLabel *m_zoomLabel = nullptr;
};
