#include "viewer/CellViewerPanel.h"

#include "common/ColorMap.h"
#include "viewer/CellView.h"
#include "viewer/OverlayLegend.h"

#include <QAction>
#include <QCheckBox>
#include <QComboBox>
#include <QDir>
#include <QFileDialog>
#include <QFileInfo>
#include <QHBoxLayout>
#include <QLabel>
#include <QMessageBox>
#include <QPixmap>
#include <QRegularExpression>
#include <QSettings>
#include <QSignalBlocker>
#include <QSlider>
#include <QToolButton>
#include <QVBoxLayout>

#include <cmath>

namespace {

const QString settingsGroup = QStringLiteral("cellViewer");

QAction *makeAction(QWidget *owner, const QString &text, const QList<QKeySequence> &shortcuts)
{
    auto *action = new QAction(text, owner);
    action->setShortcuts(shortcuts);
    // Only while the panel has focus: the main window may host other panels with the same keys.
    action->setShortcutContext(Qt::WidgetWithChildrenShortcut);
    action->setToolTip(QStringLiteral("%1 (%2)").arg(text, shortcuts.first().toString(QKeySequence::NativeText)));
    owner->addAction(action);
    return action;
}

} // namespace

CellViewerPanel::CellViewerPanel(QWidget *parent) : QWidget(parent)
{
    setObjectName(QStringLiteral("cellViewerPanel"));

    m_view = new CellView(this);
    m_legend = new OverlayLegend(this);

    m_colorMapCombo = new QComboBox(this);
    m_colorMapCombo->setObjectName(QStringLiteral("colorMapCombo"));
    m_colorMapCombo->setToolTip(tr("Colour map of the activation overlay"));
    for (const QString &name : ColorMap::names()) {
        const QPixmap swatch = QPixmap::fromImage(ColorMap::byName(name).legend(40, 12, Qt::Horizontal));
        m_colorMapCombo->addItem(QIcon(swatch), name, name);
    }
    m_colorMapCombo->setIconSize(QSize(40, 12));

    m_opacitySlider = new QSlider(Qt::Horizontal, this);
    m_opacitySlider->setObjectName(QStringLiteral("opacitySlider"));
    m_opacitySlider->setRange(0, 100);
    m_opacitySlider->setPageStep(10);
    m_opacitySlider->setFixedWidth(110);
    m_opacitySlider->setToolTip(tr("Overlay opacity (0 shows the bare cell)"));
    auto *opacityLabel = new QLabel(tr("Opacity"), this);
    opacityLabel->setBuddy(m_opacitySlider);

    m_gridCheck = new QCheckBox(tr("Grid"), this);
    m_gridCheck->setObjectName(QStringLiteral("gridCheck"));
    m_gridCheck->setToolTip(tr("Show the ViT patch grid"));

    m_perImageScaleCheck = new QCheckBox(tr("Scale to this cell"), this);
    m_perImageScaleCheck->setObjectName(QStringLiteral("perImageScaleCheck"));
    m_perImageScaleCheck->setToolTip(tr("Colour scale from 0 to this cell's strongest patch instead of the "
                                        "fixed scale shared by all cells"));

    QAction *zoomInAction = makeAction(this, tr("Zoom in"), {QKeySequence(QStringLiteral("Ctrl++")),
                                                             QKeySequence(QStringLiteral("Ctrl+="))});
    QAction *zoomOutAction = makeAction(this, tr("Zoom out"), {QKeySequence(QStringLiteral("Ctrl+-"))});
    QAction *fitAction = makeAction(this, tr("Fit to view"), {QKeySequence(QStringLiteral("Ctrl+0"))});
    QAction *exportAction = makeAction(this, tr("Export PNG"), {QKeySequence(QStringLiteral("Ctrl+E"))});
    connect(zoomInAction, &QAction::triggered, m_view, &CellView::zoomIn);
    connect(zoomOutAction, &QAction::triggered, m_view, &CellView::zoomOut);
    connect(fitAction, &QAction::triggered, m_view, &CellView::fitToView);
    connect(exportAction, &QAction::triggered, this, &CellViewerPanel::exportImage);

    // Compact button texts (the full name and shortcut are in the tooltip); a tool button shows
    // its action's iconText and keeps it in sync when the action changes.
    zoomOutAction->setIconText(QStringLiteral("\u2212"));
    zoomInAction->setIconText(QStringLiteral("+"));
    fitAction->setIconText(tr("Fit"));
    exportAction->setIconText(tr("Export\u2026"));
    QToolButton *zoomOutButton = makeToolButton(zoomOutAction, QStringLiteral("zoomOutButton"));
    QToolButton *zoomInButton = makeToolButton(zoomInAction, QStringLiteral("zoomInButton"));
    QToolButton *fitButton = makeToolButton(fitAction, QStringLiteral("fitButton"));
    QToolButton *exportButton = makeToolButton(exportAction, QStringLiteral("exportButton"));

    m_zoomLabel = new QLabel(this);
    m_zoomLabel->setObjectName(QStringLiteral("zoomLabel"));
    m_zoomLabel->setToolTip(tr("Zoom (screen pixels per image pixel)"));
    m_zoomLabel->setMinimumWidth(m_zoomLabel->fontMetrics().horizontalAdvance(QStringLiteral("0000 %")));
    m_zoomLabel->setAlignment(Qt::AlignRight | Qt::AlignVCenter);

    m_patchInfo = new QLabel(this);
    m_patchInfo->setObjectName(QStringLiteral("patchInfoLabel"));
    m_patchInfo->setTextInteractionFlags(Qt::TextSelectableByMouse);

    // Two toolbar rows keep the panel usable when docked narrow.
    auto *displayRow = new QHBoxLayout;
    displayRow->addWidget(m_colorMapCombo);
    displayRow->addSpacing(8);
    displayRow->addWidget(opacityLabel);
    displayRow->addWidget(m_opacitySlider);
    displayRow->addSpacing(8);
    displayRow->addWidget(m_gridCheck);
    displayRow->addWidget(m_perImageScaleCheck);
    displayRow->addStretch(1);

    auto *viewRow = new QHBoxLayout;
    viewRow->addWidget(zoomOutButton);
    viewRow->addWidget(zoomInButton);
    viewRow->addWidget(fitButton);
    viewRow->addWidget(m_zoomLabel);
    viewRow->addStretch(1);
    viewRow->addWidget(exportButton);

    auto *center = new QHBoxLayout;
    center->addWidget(m_view, 1);
    center->addWidget(m_legend);

    auto *layout = new QVBoxLayout(this);
    layout->setContentsMargins(4, 4, 4, 4);
    layout->addLayout(displayRow);
    layout->addLayout(viewRow);
    layout->addLayout(center, 1);
    layout->addWidget(m_patchInfo);

    connect(m_colorMapCombo, qOverload<int>(&QComboBox::currentIndexChanged), this,
            [this](int index) { m_view->setColorMap(m_colorMapCombo->itemData(index).toString()); });
    connect(m_opacitySlider, &QSlider::valueChanged, this, [this](int v) { m_view->setOpacity(v / 100.0); });
    connect(m_gridCheck, &QCheckBox::toggled, m_view, &CellView::setGridVisible);
    connect(m_perImageScaleCheck, &QCheckBox::toggled, m_view, &CellView::setPerImageScaling);

    connect(m_view, &CellView::displayChanged, this, &CellViewerPanel::syncFromView);
    connect(m_view, &CellView::zoomChanged, this,
            [this](double zoom) { m_zoomLabel->setText(QStringLiteral("%1 %").arg(std::lround(zoom * 100.0))); });
    connect(m_view, &CellView::patchHovered, this, &CellViewerPanel::updatePatchInfo);
    connect(m_view, &CellView::patchHovered, this, &CellViewerPanel::patchHovered);
    connect(m_view, &CellView::patchClicked, this, &CellViewerPanel::patchClicked);

    // Enabled state of the view actions follows the image.
    const QList<QAction *> viewActions = {zoomInAction, zoomOutAction, fitAction, exportAction};
    connect(m_view, &CellView::displayChanged, this, [this, viewActions]() {
        for (QAction *a : viewActions)
            a->setEnabled(!m_view->image().isNull());
    });
    for (QAction *a : viewActions)
        a->setEnabled(false);

    syncFromView();
    m_zoomLabel->setText(QStringLiteral("%1 %").arg(std::lround(m_view->zoomFactor() * 100.0)));
}

QToolButton *CellViewerPanel::makeToolButton(QAction *action, const QString &objectName)
{
    auto *button = new QToolButton(this);
    button->setObjectName(objectName);
    button->setDefaultAction(action);
    button->setToolButtonStyle(Qt::ToolButtonTextOnly);
    button->setAutoRaise(true);
    return button;
}

void CellViewerPanel::setImage(const QImage &image)
{
    m_view->setImage(image);
}

void CellViewerPanel::setOverlay(const ActivationOverlay &overlay)
{
    m_view->setOverlay(overlay);
}

void CellViewerPanel::clearOverlay()
{
    m_view->clearOverlay();
}

void CellViewerPanel::syncFromView()
{
    {
        const QSignalBlocker b1(m_colorMapCombo), b2(m_opacitySlider), b3(m_gridCheck), b4(m_perImageScaleCheck);
        const int index = m_colorMapCombo->findData(m_view->colorMapName());
        if (index >= 0)
            m_colorMapCombo->setCurrentIndex(index);
        m_opacitySlider->setValue(int(std::lround(m_view->opacity() * 100.0)));
        m_gridCheck->setChecked(m_view->isGridVisible());
        m_perImageScaleCheck->setChecked(m_view->perImageScaling());
    }
    const bool hasOverlay = m_view->hasOverlay();
    m_legend->setColorMap(m_view->colorMapName());
    m_legend->setScale(m_view->activeScaleMin(), m_view->activeScaleMax(), m_view->overlay().threshold);
    m_legend->setLabel(hasOverlay ? m_view->overlay().label : tr("No overlay"));
    m_legend->setEnabled(hasOverlay);
    updatePatchInfo(m_view->hoveredPatch());
}

void CellViewerPanel::updatePatchInfo(int patchIndex)
{
    if (!m_view->hasOverlay()) {
        m_patchInfo->setText(m_view->image().isNull() ? tr("No cell selected") : tr("No overlay"));
        return;
    }
    if (patchIndex < 0) {
        m_patchInfo->setText(tr("Hover over the cell to read patch activations"));
        return;
    }
    const ActivationOverlay &o = m_view->overlay();
    const double v = m_view->patchValue(patchIndex);
    QString text = tr("Patch %1 \u00b7 row %2, column %3 \u00b7 activation %4")
                       .arg(patchIndex)
                       .arg(patchIndex / o.gridW)
                       .arg(patchIndex % o.gridW)
                       .arg(v, 0, 'g', 4);
    if (v > o.threshold)
        text += tr(" (above threshold %1)").arg(double(o.threshold), 0, 'g', 3);
    m_patchInfo->setText(text);
}

void CellViewerPanel::saveState(QSettings &settings) const
{
    settings.beginGroup(settingsGroup);
    settings.setValue(QStringLiteral("colorMap"), m_view->colorMapName());
    settings.setValue(QStringLiteral("opacity"), m_view->opacity());
    settings.setValue(QStringLiteral("gridVisible"), m_view->isGridVisible());
    settings.setValue(QStringLiteral("perImageScaling"), m_view->perImageScaling());
    settings.endGroup();
}

void CellViewerPanel::restoreState(QSettings &settings)
{
    settings.beginGroup(settingsGroup);
    // Missing or malformed values keep the current setting; the view ignores unknown map names.
    m_view->setColorMap(settings.value(QStringLiteral("colorMap"), m_view->colorMapName()).toString());
    bool ok = false;
    const double opacity = settings.value(QStringLiteral("opacity"), m_view->opacity()).toDouble(&ok);
    if (ok && std::isfinite(opacity))
        m_view->setOpacity(opacity);
    m_view->setGridVisible(settings.value(QStringLiteral("gridVisible"), m_view->isGridVisible()).toBool());
    m_view->setPerImageScaling(
        settings.value(QStringLiteral("perImageScaling"), m_view->perImageScaling()).toBool());
    settings.endGroup();
}

void CellViewerPanel::exportImage()
{
    if (m_view->image().isNull())
        return;
    QString suggested = m_view->overlay().label;
    suggested.replace(QRegularExpression(QStringLiteral("[^A-Za-z0-9_-]+")), QStringLiteral("_"));
    suggested = suggested.trimmed();
    if (suggested.isEmpty() || suggested == QLatin1String("_"))
        suggested = QStringLiteral("cell");
    QString path = QFileDialog::getSaveFileName(this, tr("Export cell view"), suggested + QStringLiteral(".png"),
                                                tr("PNG image (*.png)"));
    if (path.isEmpty())
        return;
    if (QFileInfo(path).suffix().isEmpty())
        path += QStringLiteral(".png");
    if (!m_view->exportPng(path))
        QMessageBox::warning(this, tr("Export failed"), tr("Could not write %1.").arg(QDir::toNativeSeparators(path)));
}
