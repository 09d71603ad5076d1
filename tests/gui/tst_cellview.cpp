// The cell viewer with real widgets on the offscreen platform: colour maps, overlay rendering,
// grid and threshold outline, hover/click, zoom/pan, export, the panel's controls and settings.

#include "common/ColorMap.h"
#include "viewer/ActivationOverlay.h"
#include "viewer/CellView.h"
#include "viewer/CellViewerPanel.h"
#include "viewer/OverlayLegend.h"

#include <QAction>
#include <QCheckBox>
#include <QComboBox>
#include <QLabel>
#include <QSettings>
#include <QSignalSpy>
#include <QSlider>
#include <QTemporaryDir>
#include <QTest>
#include <QToolButton>
#include <QWheelEvent>

#include <cmath>

namespace {

constexpr QRgb pink = 0xfff0c8dc;
constexpr int gridSize = 16;
constexpr int imageSide = 288;
constexpr int hotRow = 3, hotCol = 5;
constexpr int hotPatch = hotRow * gridSize + hotCol;

bool near(QRgb a, QRgb b, int tolerance)
{
    return std::abs(qRed(a) - qRed(b)) <= tolerance && std::abs(qGreen(a) - qGreen(b)) <= tolerance &&
           std::abs(qBlue(a) - qBlue(b)) <= tolerance;
}

QString hex(QRgb c)
{
    return QColor(c).name();
}

QImage pinkImage(int w = imageSide, int h = imageSide)
{
    QImage img(w, h, QImage::Format_RGB32);
    img.fill(pink);
    return img;
}

ActivationOverlay hotOverlay(float hotValue = 1.0f)
{
    ActivationOverlay o;
    o.gridW = gridSize;
    o.gridH = gridSize;
    o.values = QVector<float>(gridSize * gridSize, 0.0f);
    o.values[hotPatch] = hotValue;
    o.scaleMin = 0.0f;
    o.scaleMax = 1.0f;
    o.threshold = 0.2f;
    o.label = QStringLiteral("latent 1234 \u00b7 Auer rod");
    return o;
}

// Centre of a patch in renderToImage() coordinates (the image sits at the top-left there).
QPoint renderedPatchCenter(const CellView &view, int row, int col)
{
    const QSize s = view.renderedImageSize();
    return QPoint(int((col + 0.5) * s.width() / gridSize), int((row + 0.5) * s.height() / gridSize));
}

void sendWheel(QWidget *w, const QPointF &pos, int delta)
{
    QWheelEvent ev(pos, w->mapToGlobal(pos), QPoint(), QPoint(0, delta), Qt::NoButton, Qt::NoModifier,
                   Qt::NoScrollPhase, false);
    QApplication::sendEvent(w, &ev);
}

} // namespace

class TestCellView : public QObject {
    Q_OBJECT
private slots:
    void colorMapEndpoints();
    void colorMapClampingAndNames();
    void colorMapLegendImage();
    void legendTicks();
    void overlayColorsOnlyTheHotPatch();
    void opacityZeroLeavesImageUnchanged();
    void perImageScalingChangesColours();
    void nonSquareImageIsCoveredByTheGrid();
    void gridToggleChangesGridLines();
    void thresholdOutlineMarksFiringPatches();
    void hoverEmitsPatchIndex();
    void clickEmitsPatchIndex();
    void wheelZoomKeepsPointUnderCursor();
    void zoomButtonsAndFit();
    void dragPansWithoutClicking();
    void exportWritesPng();
    void panelControlsDriveView();
    void panelFollowsViewAndLegend();
    void panelShortcutsInToolTips();
    void panelSettingsRoundTrip();
};

void TestCellView::colorMapEndpoints()
{
    const ColorMap viridis = ColorMap::byName(QStringLiteral("viridis"));
    const ColorMap magma = ColorMap::byName(QStringLiteral("magma"));
    QVERIFY2(near(viridis.color(0.0), 0x440154, 2), qPrintable(hex(viridis.color(0.0))));
    QVERIFY2(near(viridis.color(1.0), 0xfde725, 2), qPrintable(hex(viridis.color(1.0))));
    QVERIFY2(near(viridis.color(0.5), 0x21918c, 3), qPrintable(hex(viridis.color(0.5))));
    QVERIFY2(near(magma.color(0.0), 0x000004, 2), qPrintable(hex(magma.color(0.0))));
    QVERIFY2(near(magma.color(1.0), 0xfcfdbf, 2), qPrintable(hex(magma.color(1.0))));
    QVERIFY2(near(magma.color(0.5), 0xb73779, 3), qPrintable(hex(magma.color(0.5))));

    const ColorMap blues = ColorMap::byName(QStringLiteral("blues"));
    const QRgb low = blues.color(0.0), high = blues.color(1.0);
    QVERIFY2(qRed(low) > 240 && qGreen(low) > 240 && qBlue(low) > 240, qPrintable(hex(low)));
    QVERIFY2(qBlue(high) > qRed(high) + 60 && qBlue(high) < 140, qPrintable(hex(high)));
    // Single hue: lightness falls monotonically.
    for (int i = 1; i < ColorMap::lutSize; ++i)
        QVERIFY(qGray(blues.lutEntry(i)) <= qGray(blues.lutEntry(i - 1)));
    QCOMPARE(viridis.lut().size(), ColorMap::lutSize);
}

void TestCellView::colorMapClampingAndNames()
{
    const QStringList names = ColorMap::names();
    for (const char *n : {"viridis", "magma", "blues"})
        QVERIFY(names.contains(QLatin1String(n)));
    const ColorMap magma = ColorMap::byName(QStringLiteral("magma"));
    QCOMPARE(magma.name(), QStringLiteral("magma"));
    QCOMPARE(magma.color(-3.0), magma.color(0.0));
    QCOMPARE(magma.color(7.0), magma.color(1.0));
    QCOMPARE(magma.color(std::nan("")), magma.color(0.0));
    QCOMPARE(ColorMap::byName(QStringLiteral("MAGMA")).name(), QStringLiteral("magma"));
    QCOMPARE(ColorMap::byName(QStringLiteral("no-such-map")).name(), QStringLiteral("viridis"));
    QVERIFY(!ColorMap::isKnownName(QStringLiteral("no-such-map")));
    QCOMPARE(ColorMap().name(), QStringLiteral("viridis"));
}

void TestCellView::colorMapLegendImage()
{
    const ColorMap viridis = ColorMap::byName(QStringLiteral("viridis"));
    const QImage h = viridis.legend(100, 10, Qt::Horizontal);
    QCOMPARE(h.size(), QSize(100, 10));
    QCOMPARE(h.pixel(0, 5) & 0xffffff, viridis.color(0.0) & 0xffffff);
    QCOMPARE(h.pixel(99, 5) & 0xffffff, viridis.color(1.0) & 0xffffff);
    const QImage v = viridis.legend(10, 100, Qt::Vertical);
    QCOMPARE(v.size(), QSize(10, 100));
    QCOMPARE(v.pixel(5, 0) & 0xffffff, viridis.color(1.0) & 0xffffff); // high at the top
    QCOMPARE(v.pixel(5, 99) & 0xffffff, viridis.color(0.0) & 0xffffff);
    QVERIFY(viridis.legend(0, 10, Qt::Horizontal).isNull());
}

void TestCellView::legendTicks()
{
    QCOMPARE(OverlayLegend::niceTicks(0.0, 1.0, 6), QVector<double>({0.0, 0.2, 0.4, 0.6, 0.8, 1.0}));
    const QVector<double> t = OverlayLegend::niceTicks(0.0, 3.7, 5);
    QCOMPARE(t.first(), 0.0);
    QVERIFY(t.last() <= 3.7 && t.size() >= 3 && t.size() <= 6);
    QCOMPARE(OverlayLegend::formatTick(0.4, 0.2), QStringLiteral("0.4"));
    QCOMPARE(OverlayLegend::formatTick(2.0, 1.0), QStringLiteral("2"));
    QCOMPARE(OverlayLegend::niceTicks(1.0, 1.0, 5).size(), 1); // degenerate scale: no endless loop

    OverlayLegend legend;
    QCOMPARE(legend.objectName(), QStringLiteral("overlayLegend"));
    legend.setScale(0.0, 2.5, 0.2);
    legend.setColorMap(QStringLiteral("blues"));
    legend.setLabel(QStringLiteral("latent 7 \u00b7 granules"));
    QCOMPARE(legend.scaleMax(), 2.5);
    QCOMPARE(legend.threshold(), 0.2);
    QCOMPARE(legend.colorMapName(), QStringLiteral("blues"));
    legend.resize(legend.sizeHint());
    const QImage shot = legend.grab().toImage();
    QVERIFY(!shot.isNull());
    // The bar is painted with the map's colours somewhere.
    const QRgb dark = ColorMap::byName(QStringLiteral("blues")).color(1.0);
    bool found = false;
    for (int y = 0; y < shot.height() && !found; ++y)
        for (int x = 0; x < shot.width() && !found; ++x)
            found = near(shot.pixel(x, y), dark, 6);
    QVERIFY(found);
}

void TestCellView::overlayColorsOnlyTheHotPatch()
{
    CellView view;
    view.setImage(pinkImage());
    view.setOverlay(hotOverlay(1.0f));
    view.setOpacity(1.0);
    const QImage out = view.renderToImage();
    QVERIFY(out.width() >= 448 && out.height() >= 448);
    QCOMPARE(view.renderedImageSize(), QSize(448, 448));

    const QRgb expected = ColorMap::byName(QStringLiteral("viridis")).color(1.0);
    const QPoint hot = renderedPatchCenter(view, hotRow, hotCol);
    QVERIFY2(near(out.pixel(hot), expected, 2), qPrintable(hex(out.pixel(hot))));
    for (const QPoint &rc : {QPoint(0, 0), QPoint(10, 10), QPoint(hotCol + 1, hotRow), QPoint(hotCol, hotRow + 1)}) {
        const QPoint p = renderedPatchCenter(view, rc.y(), rc.x());
        QVERIFY2(near(out.pixel(p), pink, 1), qPrintable(hex(out.pixel(p))));
    }

    // Half opacity blends map colour and image.
    view.setOpacity(0.5);
    const QRgb blended = view.renderToImage().pixel(hot);
    QVERIFY(!near(blended, expected, 10) && !near(blended, pink, 10));
    QVERIFY(std::abs(qRed(blended) - (qRed(expected) + qRed(pink)) / 2) <= 3);
}

void TestCellView::opacityZeroLeavesImageUnchanged()
{
    CellView view;
    view.setImage(pinkImage());
    view.clearOverlay();
    const QRect imageRect(QPoint(0, 0), view.renderedImageSize());
    const QImage bare = view.renderToImage().copy(imageRect);

    view.setOverlay(hotOverlay(1.0f));
    view.setOpacity(0.0);
    const QImage withOverlay = view.renderToImage();
    QVERIFY(withOverlay.width() > bare.width()); // the legend is there
    QCOMPARE(withOverlay.copy(imageRect), bare);
    QVERIFY(near(withOverlay.pixel(renderedPatchCenter(view, hotRow, hotCol)), pink, 0));
}

void TestCellView::perImageScalingChangesColours()
{
    CellView view;
    view.setImage(pinkImage());
    view.setOpacity(1.0);
    view.setOverlay(hotOverlay(0.5f)); // max 0.5, fixed scale 0..1
    const ColorMap viridis = ColorMap::byName(QStringLiteral("viridis"));
    const QPoint hot = renderedPatchCenter(view, hotRow, hotCol);

    QCOMPARE(view.activeScaleMax(), 1.0);
    const QRgb fixed = view.renderToImage().pixel(hot);
    QVERIFY2(near(fixed, viridis.color(0.5), 2), qPrintable(hex(fixed)));

    view.setPerImageScaling(true);
    QCOMPARE(view.activeScaleMin(), 0.0);
    QCOMPARE(view.activeScaleMax(), 0.5);
    const QRgb scaled = view.renderToImage().pixel(hot);
    QVERIFY2(near(scaled, viridis.color(1.0), 2), qPrintable(hex(scaled)));
    QVERIFY(!near(fixed, scaled, 20));

    view.setPerImageScaling(false);
    QCOMPARE(view.renderToImage().pixel(hot), fixed);
}

void TestCellView::nonSquareImageIsCoveredByTheGrid()
{
    // The ViT saw the image resized to a square: the last patch column ends at the image's
    // right edge, whatever the aspect ratio.
    CellView view;
    view.setImage(pinkImage(144, 120));
    ActivationOverlay o = hotOverlay(0.0f);
    o.values[15 * gridSize + 15] = 1.0f; // bottom-right patch
    view.setOverlay(o);
    view.setOpacity(1.0);
    const QSize s = view.renderedImageSize();
    QCOMPARE(s.height(), 448); // shorter side scaled up to 448
    const QImage out = view.renderToImage();
    const QRgb hot = ColorMap::byName(QStringLiteral("viridis")).color(1.0);
    QVERIFY(near(out.pixel(s.width() - 6, s.height() - 6), hot, 2));
    QVERIFY(near(out.pixel(s.width() * 14 / 16 - 6, s.height() - 6), pink, 1));
}

void TestCellView::gridToggleChangesGridLines()
{
    CellView view;
    view.setImage(pinkImage());
    view.setOverlay(hotOverlay(0.0f)); // all transparent: only the grid can change pixels
    const QImage off = view.renderToImage();
    view.setGridVisible(true);
    QVERIFY(view.isGridVisible());
    const QImage on = view.renderToImage();

    const QSize s = view.renderedImageSize();
    const int lineX = s.width() * 4 / gridSize;
    const int lineY = s.height() * 9 / gridSize;
    auto columnChanged = [&](int x) {
        for (int y = 0; y < s.height(); y += 7)
            if (off.pixel(x, y) != on.pixel(x, y))
                return true;
        return false;
    };
    auto rowChanged = [&](int y) {
        for (int x = 0; x < s.width(); x += 7)
            if (off.pixel(x, y) != on.pixel(x, y))
                return true;
        return false;
    };
    QVERIFY(columnChanged(lineX - 1) || columnChanged(lineX) || columnChanged(lineX + 1));
    QVERIFY(rowChanged(lineY - 1) || rowChanged(lineY) || rowChanged(lineY + 1));
    // Patch interiors are untouched.
    const QPoint c = renderedPatchCenter(view, 7, 7);
    QCOMPARE(on.pixel(c), off.pixel(c));

    view.setGridVisible(false);
    QCOMPARE(view.renderToImage(), off);
}

void TestCellView::thresholdOutlineMarksFiringPatches()
{
    CellView view;
    view.setImage(pinkImage());
    view.setOpacity(0.3);
    ActivationOverlay o = hotOverlay(0.9f);           // above 0.2: outlined
    o.values[10 * gridSize + 10] = 0.15f;             // below 0.2: coloured, not outlined
    view.setOverlay(o);
    const QImage out = view.renderToImage();
    const QSize s = view.renderedImageSize();
    const double cell = double(s.width()) / gridSize;

    auto edgeDiffersFromInterior = [&](int row, int col) {
        const QPoint centre = renderedPatchCenter(view, row, col);
        const int edgeX = int(col * cell) + 1; // on the patch's left border
        return out.pixel(edgeX, centre.y()) != out.pixel(centre);
    };
    QVERIFY(edgeDiffersFromInterior(hotRow, hotCol));
    QVERIFY(!edgeDiffersFromInterior(10, 10));
    QVERIFY(!near(out.pixel(renderedPatchCenter(view, 10, 10)), pink, 2)); // but it is coloured
}

void TestCellView::hoverEmitsPatchIndex()
{
    CellView view;
    view.resize(400, 300);
    view.setImage(pinkImage());
    view.setOverlay(hotOverlay());
    view.show();
    QVERIFY(QTest::qWaitForWindowExposed(&view));
    QVERIFY(view.isFitMode());

    QSignalSpy spy(&view, &CellView::patchHovered);
    const int target = 7 * gridSize + 12;
    QTest::mouseMove(&view, view.patchCenter(target).toPoint());
    QTRY_VERIFY(spy.count() >= 1);
    QCOMPARE(spy.last().at(0).toInt(), target);
    QCOMPARE(view.patchAt(view.patchCenter(target)), target);
    QCOMPARE(view.hoveredPatch(), target);

    // The 288 px image fits 300 px high, letterboxed left and right: x = 2 is outside it.
    QTest::mouseMove(&view, QPoint(2, 150));
    QTRY_COMPARE(spy.last().at(0).toInt(), -1);
}

void TestCellView::clickEmitsPatchIndex()
{
    CellView view;
    view.resize(320, 320);
    view.setImage(pinkImage());
    view.setOverlay(hotOverlay());
    view.show();
    QVERIFY(QTest::qWaitForWindowExposed(&view));

    QSignalSpy spy(&view, &CellView::patchClicked);
    QTest::mouseClick(&view, Qt::LeftButton, Qt::NoModifier, view.patchCenter(hotPatch).toPoint());
    QCOMPARE(spy.count(), 1);
    QCOMPARE(spy.at(0).at(0).toInt(), hotPatch);
}

void TestCellView::wheelZoomKeepsPointUnderCursor()
{
    CellView view;
    view.resize(400, 400);
    view.setImage(pinkImage());
    view.show();
    QVERIFY(QTest::qWaitForWindowExposed(&view));
    const double fit = view.zoomFactor();
    QVERIFY(std::abs(fit - 400.0 / imageSide) < 1e-9);

    QSignalSpy zoomSpy(&view, &CellView::zoomChanged);
    const QPointF cursor(120, 90);
    const QPointF imagePoint = view.widgetToImage(cursor);
    sendWheel(&view, cursor, 120);
    QVERIFY(view.zoomFactor() > fit * 1.1);
    QVERIFY(!view.isFitMode());
    QCOMPARE(zoomSpy.count(), 1);
    const QPointF after = view.imageToWidget(imagePoint);
    QVERIFY(std::abs(after.x() - cursor.x()) < 0.5 && std::abs(after.y() - cursor.y()) < 0.5);

    sendWheel(&view, cursor, -240);
    QVERIFY(view.zoomFactor() < fit);

    view.fitToView();
    QVERIFY(view.isFitMode());
    QCOMPARE(view.zoomFactor(), fit);

    // Double-click also fits.
    sendWheel(&view, cursor, 360);
    QVERIFY(view.zoomFactor() > fit);
    QTest::mouseDClick(&view, Qt::LeftButton, Qt::NoModifier, QPoint(200, 200));
    QCOMPARE(view.zoomFactor(), fit);
}

void TestCellView::zoomButtonsAndFit()
{
    CellView view;
    view.resize(300, 300);
    view.setImage(pinkImage());
    view.show(); // resize events reach shown widgets only
    QVERIFY(QTest::qWaitForWindowExposed(&view));
    const double fit = view.zoomFactor();
    view.zoomIn();
    QVERIFY(view.zoomFactor() > fit);
    view.zoomOut();
    view.zoomOut();
    QVERIFY(view.zoomFactor() < fit);
    view.fitToView();
    QCOMPARE(view.zoomFactor(), fit);
    // Fit follows the widget size.
    view.resize(600, 600);
    QVERIFY(std::abs(view.zoomFactor() - 600.0 / imageSide) < 1e-9);
    // A new image starts fitted even after zooming.
    view.zoomIn();
    view.setImage(pinkImage(144, 144));
    QVERIFY(view.isFitMode());
    QVERIFY(std::abs(view.zoomFactor() - 600.0 / 144) < 1e-9);
}

void TestCellView::dragPansWithoutClicking()
{
    CellView view;
    view.resize(320, 320);
    view.setImage(pinkImage());
    view.setOverlay(hotOverlay());
    view.show();
    QVERIFY(QTest::qWaitForWindowExposed(&view));

    QSignalSpy clicks(&view, &CellView::patchClicked);
    const QPointF originBefore = view.imageToWidget(QPointF(0, 0));
    QTest::mousePress(&view, Qt::LeftButton, Qt::NoModifier, QPoint(100, 100));
    // QTest::mouseMove cannot hold a button in Qt 6: send the drag moves directly.
    for (const QPoint p : {QPoint(110, 105), QPoint(130, 120), QPoint(140, 130)}) {
        QMouseEvent move(QEvent::MouseMove, p, view.mapToGlobal(p), Qt::NoButton, Qt::LeftButton, Qt::NoModifier);
        QApplication::sendEvent(&view, &move);
    }
    QTest::mouseRelease(&view, Qt::LeftButton, Qt::NoModifier, QPoint(140, 130));
    const QPointF moved = view.imageToWidget(QPointF(0, 0)) - originBefore;
    QVERIFY(std::abs(moved.x() - 40) < 0.5 && std::abs(moved.y() - 30) < 0.5);
    QCOMPARE(clicks.count(), 0);
    QVERIFY(!view.isFitMode());
}

void TestCellView::exportWritesPng()
{
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    CellView view;
    QVERIFY(!view.exportPng(dir.filePath(QStringLiteral("empty.png")))); // nothing to export

    view.setImage(pinkImage());
    view.setOverlay(hotOverlay());
    const QString path = dir.filePath(QStringLiteral("cell.png"));
    QVERIFY(view.exportPng(path));
    QImage loaded;
    QVERIFY(loaded.load(path, "PNG"));
    QCOMPARE(loaded.size(), view.renderToImage().size());
    QVERIFY(loaded.height() >= 448);
    QVERIFY(loaded.width() > 448); // image plus legend
    QCOMPARE(loaded.convertToFormat(QImage::Format_RGB32), view.renderToImage());

    QVERIFY(!view.exportPng(dir.filePath(QStringLiteral("no/such/dir/cell.png"))));
}

void TestCellView::panelControlsDriveView()
{
    CellViewerPanel panel;
    QCOMPARE(panel.objectName(), QStringLiteral("cellViewerPanel"));
    panel.setImage(pinkImage());
    panel.setOverlay(hotOverlay(0.5f));
    CellView *view = panel.findChild<CellView *>(QStringLiteral("cellView"));
    QVERIFY(view);
    QCOMPARE(view, panel.cellView());
    QCOMPARE(panel.findChild<OverlayLegend *>(QStringLiteral("overlayLegend")), panel.legend());
    auto *combo = panel.findChild<QComboBox *>(QStringLiteral("colorMapCombo"));
    auto *slider = panel.findChild<QSlider *>(QStringLiteral("opacitySlider"));
    auto *grid = panel.findChild<QCheckBox *>(QStringLiteral("gridCheck"));
    auto *perImage = panel.findChild<QCheckBox *>(QStringLiteral("perImageScaleCheck"));
    QVERIFY(combo && slider && grid && perImage);
    QVERIFY(panel.findChild<QLabel *>(QStringLiteral("patchInfoLabel")));
    QCOMPARE(combo->count(), ColorMap::names().size());
    QCOMPARE(slider->minimum(), 0);
    QCOMPARE(slider->maximum(), 100);

    combo->setCurrentIndex(combo->findText(QStringLiteral("magma")));
    QCOMPARE(view->colorMapName(), QStringLiteral("magma"));
    QCOMPARE(panel.legend()->colorMapName(), QStringLiteral("magma"));

    slider->setValue(30);
    QVERIFY(std::abs(view->opacity() - 0.3) < 1e-9);

    grid->setChecked(true);
    QVERIFY(view->isGridVisible());
    grid->setChecked(false);
    QVERIFY(!view->isGridVisible());

    QCOMPARE(panel.legend()->scaleMax(), 1.0);
    perImage->setChecked(true);
    QVERIFY(view->perImageScaling());
    QCOMPARE(panel.legend()->scaleMax(), 0.5); // the legend shows the scale in use
    QCOMPARE(panel.legend()->label(), QStringLiteral("latent 1234 \u00b7 Auer rod"));
}

void TestCellView::panelFollowsViewAndLegend()
{
    CellViewerPanel panel;
    panel.resize(700, 600);
    panel.setImage(pinkImage());
    panel.setOverlay(hotOverlay());
    panel.show();
    QVERIFY(QTest::qWaitForWindowExposed(&panel));

    // Code that changes the view directly still leaves the controls truthful.
    panel.cellView()->setColorMap(QStringLiteral("blues"));
    panel.cellView()->setOpacity(0.8);
    panel.cellView()->setGridVisible(true);
    QCOMPARE(panel.findChild<QComboBox *>(QStringLiteral("colorMapCombo"))->currentText(), QStringLiteral("blues"));
    QCOMPARE(panel.findChild<QSlider *>(QStringLiteral("opacitySlider"))->value(), 80);
    QVERIFY(panel.findChild<QCheckBox *>(QStringLiteral("gridCheck"))->isChecked());
    QCOMPARE(panel.legend()->colorMapName(), QStringLiteral("blues"));

    // Hover is forwarded and described.
    QSignalSpy hovered(&panel, &CellViewerPanel::patchHovered);
    QSignalSpy clicked(&panel, &CellViewerPanel::patchClicked);
    CellView *view = panel.cellView();
    QTest::mouseMove(view, view->patchCenter(hotPatch).toPoint());
    QTRY_VERIFY(hovered.count() >= 1);
    QCOMPARE(hovered.last().at(0).toInt(), hotPatch);
    const QString info = panel.findChild<QLabel *>(QStringLiteral("patchInfoLabel"))->text();
    QVERIFY2(info.contains(QString::number(hotPatch)) && info.contains(QStringLiteral("activation 1")),
             qPrintable(info));
    QTest::mouseClick(view, Qt::LeftButton, Qt::NoModifier, view->patchCenter(hotPatch).toPoint());
    QCOMPARE(clicked.count(), 1);
    QCOMPARE(clicked.at(0).at(0).toInt(), hotPatch);

    panel.clearOverlay();
    QCOMPARE(panel.legend()->label(), QStringLiteral("No overlay"));
    QVERIFY(!panel.legend()->isEnabled());
}

void TestCellView::panelShortcutsInToolTips()
{
    CellViewerPanel panel;
    const struct {
        const char *button;
        const char *keys;
    } expected[] = {{"zoomInButton", "Ctrl++"}, {"zoomOutButton", "Ctrl+-"}, {"fitButton", "Ctrl+0"},
                    {"exportButton", "Ctrl+E"}};
    for (const auto &e : expected) {
        auto *button = panel.findChild<QToolButton *>(QLatin1String(e.button));
        QVERIFY2(button, e.button);
        QVERIFY2(button->toolTip().contains(QLatin1String(e.keys)), qPrintable(button->toolTip()));
        QCOMPARE(button->defaultAction()->shortcut(), QKeySequence(QLatin1String(e.keys)));
    }
    // The zoom action drives the view.
    panel.resize(500, 500);
    panel.setImage(pinkImage());
    const double fit = panel.cellView()->zoomFactor();
    panel.findChild<QToolButton *>(QStringLiteral("zoomInButton"))->defaultAction()->trigger();
    QVERIFY(panel.cellView()->zoomFactor() > fit);
    panel.findChild<QToolButton *>(QStringLiteral("fitButton"))->defaultAction()->trigger();
    QCOMPARE(panel.cellView()->zoomFactor(), fit);
}

void TestCellView::panelSettingsRoundTrip()
{
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    const QString ini = dir.filePath(QStringLiteral("viewer.ini"));
    {
        CellViewerPanel panel;
        panel.findChild<QComboBox *>(QStringLiteral("colorMapCombo"))->setCurrentIndex(1); // magma
        panel.findChild<QSlider *>(QStringLiteral("opacitySlider"))->setValue(35);
        panel.findChild<QCheckBox *>(QStringLiteral("gridCheck"))->setChecked(true);
        panel.findChild<QCheckBox *>(QStringLiteral("perImageScaleCheck"))->setChecked(true);
        QSettings settings(ini, QSettings::IniFormat);
        panel.saveState(settings);
        settings.sync();
        QCOMPARE(settings.status(), QSettings::NoError);
    }
    {
        QSettings settings(ini, QSettings::IniFormat);
        QVERIFY(settings.childGroups().contains(QStringLiteral("cellViewer")));
        CellViewerPanel panel;
        panel.restoreState(settings);
        QCOMPARE(panel.cellView()->colorMapName(), QStringLiteral("magma"));
        QVERIFY(std::abs(panel.cellView()->opacity() - 0.35) < 1e-9);
        QVERIFY(panel.cellView()->isGridVisible());
        QVERIFY(panel.cellView()->perImageScaling());
        QCOMPARE(panel.findChild<QComboBox *>(QStringLiteral("colorMapCombo"))->currentText(), QStringLiteral("magma"));
        QCOMPARE(panel.findChild<QSlider *>(QStringLiteral("opacitySlider"))->value(), 35);
        QVERIFY(panel.findChild<QCheckBox *>(QStringLiteral("gridCheck"))->isChecked());
    }
    {
        // Empty or broken settings keep the defaults.
        QSettings settings(dir.filePath(QStringLiteral("broken.ini")), QSettings::IniFormat);
        settings.setValue(QStringLiteral("cellViewer/colorMap"), QStringLiteral("rainbow-of-doom"));
        settings.setValue(QStringLiteral("cellViewer/opacity"), QStringLiteral("lots"));
        CellViewerPanel panel;
        const double defaultOpacity = panel.cellView()->opacity();
        panel.restoreState(settings);
        QCOMPARE(panel.cellView()->colorMapName(), QStringLiteral("viridis"));
        QCOMPARE(panel.cellView()->opacity(), defaultOpacity);
        QVERIFY(!panel.cellView()->isGridVisible());
    }
}

QTEST_MAIN(TestCellView)
#include "tst_cellview.moc"
