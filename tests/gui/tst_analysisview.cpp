// The cohort analysis dock (ui/analysis), offscreen: on a small project made through the
// store (6 APL and 6 control patients; latent 3 fires in APL cells only), a comparison runs
// in the background, the scatter colours the specific concept, a real click on its point
// selects it in the shared selection, and a click on a heat-map cell selects the patient.

#include "analysis/CohortAnalysisView.h"
#include "app/ProjectSession.h"
#include "app/SelectionModel.h"
#include "store/ProjectDb.h"

#include <qcustomplot.h>

#include <QComboBox>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QTest>

namespace {

QString makeProject(const QString &dir)
{
    const std::string path = (dir + "/p.cyto").toStdString();
    auto opened = store::ProjectDb::open(path, store::ProjectDb::OpenMode::Create);
    if (!opened)
        qFatal("%s", opened.message().c_str());
    store::ProjectDb db = std::move(opened.value());
    std::vector<store::NewImage> images;
    for (int p = 0; p < 12; ++p)
        for (int c = 0; c < 5; ++c) {
            store::NewImage im;
            im.path = "/cells/" + std::to_string(p) + "_" + std::to_string(c) + ".png";
            im.sha256 = std::string(64, 'a');
            im.width = im.height = 10;
            im.channels = 3;
            im.bitDepth = 8;
            im.patientCode = (p < 6 ? "APL" : "CTL") + std::to_string(p);
            im.diagnosis = p < 6 ? "APL" : "control";
            images.push_back(im);
        }
    if (!db.addImages(images).ok())
        qFatal("addImages failed");
    auto vit = db.upsertModel("vit", "v", "/v", "{}");
    auto sae = db.upsertModel("sae", "s", "/s", "{}");
    auto run = db.createRun(*vit, *sae, 1, 0.2, 8, "cpu");
    std::vector<store::ImageResultRow> rows;
    for (int i = 0; i < 60; ++i) {
        store::ImageResultRow r;
        r.imageId = i + 1;
        std::vector<int32_t> ids(2, -1);
        std::vector<float> vals(2, 0.f);
        r.tokensBlob = store::encodeTokenTopK(2, 1, ids.data(), vals.data(), 7);
        const bool apl = i < 30;
        r.concepts = {{1, 0.1f, 0.5f, 2}};
        if (apl && i % 5 < 3)
            r.concepts.push_back({3, 0.2f, 0.8f, 4});
        if (i % 7 == 0)
            r.concepts.push_back({5, 0.05f, 0.3f, 1});
        r.cls = {1.f, float(i)};
        rows.push_back(r);
    }
    if (!db.writeResults(*run, rows, {}) || !db.setRunStatus(*run, "done"))
        qFatal("writeResults failed");
    return QString::fromStdString(path);
}

} // namespace

class TestAnalysisView : public QObject {
    Q_OBJECT

private slots:
    void compareClickAndHeatMap()
    {
        QTemporaryDir dir;
        const QString path = makeProject(dir.path());
        QString error;
        auto session = ProjectSession::open(path, &error);
        QVERIFY2(session, qPrintable(error));
        SelectionModel selection;
        CohortAnalysisView view(&selection);
        view.resize(700, 900);
        view.show();
        QVERIFY(QTest::qWaitForWindowExposed(&view));
        view.setSession(session.get());
        auto *a = view.findChild<QComboBox *>("diagnosisA");
        auto *b = view.findChild<QComboBox *>("diagnosisB");
        QVERIFY(a && b);
        QCOMPARE(a->count(), 2);
        QCOMPARE(b->itemText(0), QString("rest"));

        QSignalSpy done(&view, &CohortAnalysisView::finished);
        view.compare("APL", "control");
        QVERIFY(done.wait(20000));
        QCOMPARE(done.first().first().toBool(), true);
        QVERIFY(view.comparison());
        QCOMPARE(view.comparison()->nA, 6);
        QCOMPARE(view.comparison()->concepts.front().latent, 3);
        QVERIFY(view.comparison()->concepts.front().q < 0.05);
        QVERIFY(view.status().contains("1 of 3 concepts with q < 0.05"));

        // The "higher in APL" graph holds latent 3 alone; click on its point.
        QCustomPlot *plot = view.scatter();
        QCPGraph *specific = plot->graph(1);
        QCOMPARE(specific->dataCount(), 1);
        const QPointF px = specific->coordsToPixels(specific->data()->at(0)->key, specific->data()->at(0)->value);
        QTest::mouseClick(plot, Qt::LeftButton, {}, px.toPoint());
        QTRY_COMPARE(selection.latent(), 3);

        // Heat map: 12 x 12 in diagnosis order (APL first); a click selects the row's patient.
        const auto *sim = view.similarity();
        QCOMPARE(sim->order.size(), size_t(12));
        QVERIFY(sim->withinMean > sim->betweenMean);
        QSignalSpy pair(&view, &CohortAnalysisView::patientPairClicked);
        QCustomPlot *heat = view.heatMap();
        const QPointF cell(heat->xAxis->coordToPixel(8), heat->yAxis->coordToPixel(2));
        QTest::mouseClick(heat, Qt::LeftButton, {}, cell.toPoint());
        QTRY_COMPARE(pair.count(), 1);
        QVERIFY(selection.patientId() != 0);
        QVERIFY(view.status().contains("(APL) and"));
        QVERIFY(view.status().contains("(control)"));

        // Bad input: an unknown diagnosis gives a message, not a crash.
        done.clear();
        view.compare("AML", "control");
        QVERIFY(done.wait(20000));
        QCOMPARE(done.first().first().toBool(), false);
        QVERIFY(view.status().contains("no patient with cells has the diagnosis 'AML'"));
    }
};

QTEST_MAIN(TestAnalysisView)
#include "tst_analysisview.moc"
