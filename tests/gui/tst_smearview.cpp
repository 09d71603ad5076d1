// The smear view on a real project: a generated smear field imported with its detected
// cells and run through the tiny fixture models. Cells are outlined where the database says,
// coloured by the selected concept, a click selects the cell in the shared selection (and so
// opens it in the cell viewer), and selecting a smear cell elsewhere marks it. Also in the
// main window as the "Smear" dock.

#include "app/MainWindow.h"
#include "app/ProjectSession.h"
#include "app/SelectionModel.h"
#include "smear/SmearView.h"

#include "demo/SmearField.h"
#include "imaging/SmearSource.h"
#include "pipeline/Runner.h"
#include "pipeline/SmearImporter.h"
#include "store/ProjectDb.h"

#include <QComboBox>
#include <QDockWidget>
#include <QGraphicsView>
#include <QLabel>
#include <QSettings>
#include <QSignalSpy>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QtTest>

#include <set>

using namespace cytosae;

namespace {
const QString kFix = QStringLiteral(CYTOSAE_TEST_DATA "/fixtures/");
}

class TestSmearView : public QObject {
    Q_OBJECT

private slots:
    void initTestCase()
    {
        QVERIFY(m_dir.isValid());
        QStandardPaths::setTestModeEnabled(true);
        QSettings().clear();
        demo::SmearFieldOptions fo;
        fo.width = 900;
        fo.height = 700;
        const demo::SmearLayout layout = demo::planSmearField(4, fo);
        const std::string field = m_dir.filePath("field.tif").toStdString();
        QVERIFY(imaging::writeTiffByStrips(field, fo.width, fo.height, [&](int y0, int rows, uint8_t *out) {
            demo::renderSmearRegion(layout, 0, y0, fo.width, rows, out);
        }));
        m_project = m_dir.filePath("p.cyto");
        {
            auto db = store::ProjectDb::open(m_project.toStdString(), store::ProjectDb::OpenMode::Create);
            QVERIFY(db);
            pipeline::SmearImportOptions options;
            options.source = field;
            options.patientCode = "S1";
            auto report = pipeline::importSmears(*db, options);
            QVERIFY2(report, report.message().c_str());
            QVERIFY(report->cellsAdded >= 5);
        }
        pipeline::RunOptions ro;
        ro.engine.vitPath = (kFix + "tiny_dinobloom.pth").toStdString();
        ro.engine.saePath = (kFix + "final_sparse_autoencoder_dinov2_vitb14_-2_resid_256.pt").toStdString();
        ro.engine.device = model::DeviceChoice::Cpu;
        ro.engine.topK = 16;
        auto run = pipeline::runProject(m_project.toStdString(), ro);
        QVERIFY2(run, run.message().c_str());
    }

    void outlinesColoursAndClicks()
    {
        QString error;
        auto session = ProjectSession::open(m_project, &error);
        QVERIFY2(session, qPrintable(error));
        SelectionModel selection;
        SmearView view(&selection);
        view.resize(800, 600);
        view.show();
        QSignalSpy previews(&view, &SmearView::previewReady);
        view.setSession(session.get());
        QCOMPARE(view.smearCount(), 1);
        QVERIFY(view.currentSmear() > 0);
        auto cells = session->db().smearCells(view.currentSmear());
        QVERIFY(cells);
        QCOMPARE(view.cellCount(), int(cells->size()));
        for (const auto &c : *cells)
            QCOMPARE(view.cellRect(c.imageId), QRectF(c.x, c.y, c.w, c.h));
        QTRY_VERIFY(view.previewLoaded());

        // A concept that fires in some cells but not all colours those, greys the others.
        const qint64 firstCell = cells->front().imageId;
        auto concepts = session->db().conceptsOfImage(session->run().id, firstCell);
        QVERIFY(concepts && !concepts->empty());
        int latent = -1;
        std::vector<std::pair<int64_t, float>> acts;
        for (const auto &ic : *concepts) {
            auto a = session->db().smearCellActivations(session->run().id, view.currentSmear(), ic.latent);
            QVERIFY(a);
            if (!a->empty() && a->size() < cells->size()) {
                latent = ic.latent;
                acts = *a;
                break;
            }
        }
        QVERIFY2(latent >= 0, "no concept fires in only part of the smear's cells");
        QSignalSpy coloured(&view, &SmearView::activationsReady);
        selection.setLatent(latent);
        QTRY_VERIFY(coloured.count() >= 1);
        std::set<int64_t> firing;
        for (const auto &[image, value] : acts)
            if (value > 0)
                firing.insert(image);
        const QColor grey(150, 150, 150);
        for (const auto &c : *cells)
            QCOMPARE(view.cellColor(c.imageId) != grey, firing.count(c.imageId) == 1);

        // A click on a cell selects it; zooming keeps clicks on target.
        view.zoomBy(1.5);
        const auto &target = cells->back();
        QGraphicsView *gv = view.graphicsView();
        gv->centerOn(QPointF(target.x + target.w / 2.0, target.y + target.h / 2.0));
        const QPoint at = gv->mapFromScene(QPointF(target.x + target.w / 2.0, target.y + target.h / 2.0));
        QTest::mouseClick(gv->viewport(), Qt::LeftButton, {}, at);
        QCOMPARE(selection.imageId(), target.imageId);
        QVERIFY(view.isMarked(target.imageId));
        // Selecting another cell elsewhere moves the mark.
        selection.setImage(firstCell);
        QVERIFY(view.isMarked(firstCell));
        QVERIFY(!view.isMarked(target.imageId));
        // A click on empty field selects nothing new.
        gv->centerOn(QPointF(1, 1));
        QTest::mouseClick(gv->viewport(), Qt::LeftButton, {}, gv->mapFromScene(QPointF(1, 1)));
        QCOMPARE(selection.imageId(), firstCell);
    }

    void fieldFitsWhenShownLater()
    {
        // In the main window the view starts hidden (a tab of the dock area): the field must fit
        // once the view is shown and whenever it is resized, until the user zooms.
        QString error;
        auto session = ProjectSession::open(m_project, &error);
        QVERIFY2(session, qPrintable(error));
        SelectionModel selection;
        SmearView view(&selection);
        view.setSession(session.get());
        QTRY_VERIFY(view.previewLoaded());
        view.resize(900, 700);
        view.show();
        QVERIFY(QTest::qWaitForWindowExposed(&view));
        QGraphicsView *gv = view.graphicsView();
        // Fitted: the field touches two opposite sides of the viewport and overflows none.
        auto fitted = [&] {
            const QRect r = gv->mapFromScene(gv->sceneRect()).boundingRect();
            const QSize v = gv->viewport()->size();
            const bool inside = r.width() <= v.width() + 2 && r.height() <= v.height() + 2;
            return inside && (r.width() >= v.width() * 0.9 || r.height() >= v.height() * 0.9);
        };
        QTRY_VERIFY(fitted());
        view.resize(500, 400);
        QTRY_VERIFY(fitted());
        view.resize(1200, 500);
        QTRY_VERIFY(fitted());
    }

    void dockInMainWindowOpensCells()
    {
        MainWindow w;
        w.show();
        QVERIFY(w.openProject(m_project));
        auto *dock = w.findChild<QDockWidget *>("smearDock");
        QVERIFY(dock);
        QVERIFY(w.smearView());
        QCOMPARE(w.smearView()->smearCount(), 1);
        QVERIFY(w.smearView()->cellCount() >= 5);
        // The shared selection: a cell picked in the smear is the cell the viewer shows.
        auto cells = w.session()->db().smearCells(w.smearView()->currentSmear());
        QVERIFY(cells && !cells->empty());
        w.selection()->setImage(cells->front().imageId);
        QVERIFY(w.smearView()->isMarked(cells->front().imageId));
        QTRY_VERIFY(w.findChild<QLabel *>("cellHeader")->text().contains(QStringLiteral("cell_")));
    }

private:
    QTemporaryDir m_dir;
    QString m_project;
};

QTEST_MAIN(TestSmearView)
#include "tst_smearview.moc"
