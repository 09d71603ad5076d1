// Smear fields: the generator's known cells, the white-cell detector (recall and precision at
// IoU 0.5 on several seeds, touching cells split, platelets and debris rejected), tiles (a
// cell across a tile border is reported once, tiled equals whole, bounded bands), TIFF
// reading band by band, and smear import linked in the project database up to a run.

#include "demo/SmearField.h"
#include "imaging/CellDetector.h"
#include "imaging/SmearSource.h"
#include "model/Engine.h"
#include "pipeline/Runner.h"
#include "pipeline/SmearImporter.h"
#include "store/ProjectDb.h"

#include <QFile>
#include <QTemporaryDir>
#include <QtTest>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

using namespace cytosae;

namespace {

const QString kFix = QStringLiteral(CYTOSAE_TEST_DATA "/fixtures/");

std::vector<imaging::BoxI> truthBoxes(const demo::SmearLayout &layout)
{
    std::vector<imaging::BoxI> boxes;
    for (const auto &t : layout.whiteCells)
        boxes.push_back({t.x, t.y, t.w, t.h});
    return boxes;
}

imaging::RgbImage imageOf(const demo::SmearField &f)
{
    return {f.layout.width, f.layout.height, f.rgb};
}

std::vector<imaging::CellDetection> detectTiled(imaging::SmearSource &source, const imaging::CellDetectorOptions &o,
                                                imaging::TiledDetectionStats *stats = nullptr,
                                                std::vector<imaging::RgbImage> *crops = nullptr)
{
    std::vector<imaging::CellDetection> out;
    auto r = imaging::detectCellsTiled(source, o, [&](const imaging::CellDetection &d, const imaging::RgbImage &crop) {
        out.push_back(d);
        if (crops)
            crops->push_back(crop);
        return true;
    });
    if (!r)
        qFatal("tiled detection failed: %s", r.message().c_str());
    if (stats)
        *stats = *r;
    return out;
}

Status writeFieldTiff(const std::string &path, const demo::SmearLayout &layout)
{
    return imaging::writeTiffByStrips(path, layout.width, layout.height, [&](int y0, int rows, uint8_t *out) {
        demo::renderSmearRegion(layout, 0, y0, layout.width, rows, out);
    });
}

} // namespace

class TestSmear : public QObject {
    Q_OBJECT

private slots:
    void generatorIsDeterministicAndRegionsAgree()
    {
        demo::SmearFieldOptions o;
        o.width = 700;
        o.height = 500;
        const demo::SmearField a = demo::generateSmearField(5, o), b = demo::generateSmearField(5, o);
        QVERIFY(a.rgb == b.rgb);
        QVERIFY(!a.layout.whiteCells.empty());
        // Any region renders exactly the bytes of the whole field there.
        const int x0 = 123, y0 = 77, w = 301, h = 211;
        std::vector<uint8_t> part(size_t(w) * h * 3);
        demo::renderSmearRegion(a.layout, x0, y0, w, h, part.data());
        for (int y = 0; y < h; ++y)
            QVERIFY(std::memcmp(part.data() + size_t(y) * w * 3, a.rgb.data() + (size_t(y0 + y) * o.width + x0) * 3,
                                size_t(w) * 3) == 0);
        // A different seed is a different field; known cells lie inside it.
        QVERIFY(demo::generateSmearField(6, o).rgb != a.rgb);
        for (const auto &c : a.layout.whiteCells) {
            QVERIFY(c.x >= 0 && c.y >= 0 && c.x + c.w <= o.width && c.y + c.h <= o.height);
            QVERIFY(c.w > 50 && c.w < 110);
        }
    }

    void detectsKnownCellsOnSeveralSeeds()
    {
        imaging::DetectionScore total, touchingTotal;
        for (uint64_t seed = 1; seed <= 8; ++seed) {
            const demo::SmearField f = demo::generateSmearField(seed);
            auto found = imaging::detectCells(imageOf(f), {}, true);
            QVERIFY2(found, found.message().c_str());
            const auto score = imaging::scoreDetections(truthBoxes(f.layout), *found);
            qInfo("seed %d: %d cells, %d detected, recall %.3f precision %.3f", int(seed), score.truth, score.detected,
                  score.recall(), score.precision());
            QVERIFY(score.truth >= 15);
            // No single field far off ...
            QVERIFY2(score.recall() >= 0.85 && score.precision() >= 0.85, qPrintable(QString("seed %1").arg(seed)));
            total.truth += score.truth, total.detected += score.detected, total.matched += score.matched;
            // Touching cells: each of them found on its own (a merged box fails IoU 0.5).
            std::vector<imaging::BoxI> pairs;
            for (const auto &c : f.layout.whiteCells)
                if (c.touching)
                    pairs.push_back({c.x, c.y, c.w, c.h});
            const auto t = imaging::scoreDetections(pairs, *found);
            touchingTotal.truth += t.truth, touchingTotal.matched += t.matched;
        }
        // ... and the targets over all of them.
        qInfo("all: recall %.3f precision %.3f; touching cells found separately: %d of %d", total.recall(),
              total.precision(), touchingTotal.matched, touchingTotal.truth);
        QVERIFY(total.recall() >= 0.95);
        QVERIFY(total.precision() >= 0.9);
        QVERIFY(touchingTotal.truth >= 12);
        QVERIFY(touchingTotal.recall() >= 0.9);
    }

    void touchingPairIsSplit()
    {
        // A field with one touching pair only: two detections, not one box over both.
        demo::SmearFieldOptions o;
        o.width = 600;
        o.height = 600;
        o.whiteCellsPerMegapixel = 5.6; // two cells
        o.touchingFraction = 2.0;       // the second always placed touching the first
        bool tested = false;
        for (uint64_t seed = 1; seed < 20 && !tested; ++seed) {
            const demo::SmearField f = demo::generateSmearField(seed, o);
            if (f.layout.whiteCells.size() != 2 || !f.layout.whiteCells[0].touching)
                continue;
            const auto &a = f.layout.whiteCells[0], &b = f.layout.whiteCells[1];
            const imaging::BoxI ua{std::min(a.x, b.x), std::min(a.y, b.y),
                                   std::max(a.x + a.w, b.x + b.w) - std::min(a.x, b.x),
                                   std::max(a.y + a.h, b.y + b.h) - std::min(a.y, b.y)};
            auto found = imaging::detectCells(imageOf(f), {}, true);
            QVERIFY(found);
            QCOMPARE(int(found->size()), 2);
            QCOMPARE(imaging::scoreDetections(truthBoxes(f.layout), *found).matched, 2);
            for (const auto &d : *found)
                QVERIFY(imaging::boxIou(ua, {d.x, d.y, d.w, d.h}) < 0.7);
            tested = true;
        }
        QVERIFY2(tested, "no seed gave a touching pair");
    }

    void plateletsDebrisAndRedCellsAreRejected()
    {
        demo::SmearFieldOptions o;
        o.whiteCellsPerMegapixel = 0;
        o.plateletsPerMegapixel = 240; // three times the default
        o.debrisPerMegapixel = 90;
        o.redCellCoverage = 0.5;
        for (uint64_t seed = 1; seed <= 3; ++seed) {
            const demo::SmearField f = demo::generateSmearField(seed, o);
            QVERIFY(f.layout.whiteCells.empty());
            auto found = imaging::detectCells(imageOf(f), {}, true);
            QVERIFY(found);
            QCOMPARE(int(found->size()), 0);
        }
    }

    void cellAcrossTileBorderCountedOnce()
    {
        const demo::SmearField f = demo::generateSmearField(21);
        imaging::CellDetectorOptions o;
        o.tileSize = 256;
        // Some known cell must straddle a tile border, else the test proves nothing.
        int straddling = 0;
        for (const auto &c : f.layout.whiteCells)
            straddling += (c.x / o.tileSize != (c.x + c.w - 1) / o.tileSize) ||
                          (c.y / o.tileSize != (c.y + c.h - 1) / o.tileSize);
        QVERIFY(straddling >= 5);
        auto source = imaging::SmearSource::fromMemory(imageOf(f));
        imaging::TiledDetectionStats stats;
        std::vector<imaging::RgbImage> crops;
        const auto tiled = detectTiled(*source, o, &stats, &crops);
        QCOMPARE(stats.tiles, 6 * 4);
        // No cell twice: no two detections overlap noticeably.
        for (size_t i = 0; i < tiled.size(); ++i)
            for (size_t j = i + 1; j < tiled.size(); ++j)
                QVERIFY(imaging::boxIou({tiled[i].x, tiled[i].y, tiled[i].w, tiled[i].h},
                                        {tiled[j].x, tiled[j].y, tiled[j].w, tiled[j].h}) < 0.2);
        const auto score = imaging::scoreDetections(truthBoxes(f.layout), tiled);
        QVERIFY(score.recall() >= 0.95);
        QVERIFY(score.precision() >= 0.9);
        // Tiles give the whole-image answer (boxes may differ by a pixel or two: each tile
        // estimates its own background).
        auto whole = imaging::detectCells(imageOf(f), o, true);
        QVERIFY(whole);
        QCOMPARE(tiled.size(), whole->size());
        QCOMPARE(imaging::scoreDetections(
                     [&] {
                         std::vector<imaging::BoxI> b;
                         for (const auto &d : *whole)
                             b.push_back({d.x, d.y, d.w, d.h});
                         return b;
                     }(),
                     tiled, 0.8)
                     .matched,
                 int(whole->size()));
        // Crops: cropSize square, centred on the cell (the centre pixel is the field's).
        QCOMPARE(crops.size(), tiled.size());
        for (size_t i = 0; i < crops.size(); ++i) {
            QCOMPARE(crops[i].width, o.cropSize);
            QCOMPARE(crops[i].height, o.cropSize);
            const int cx = int(std::lround(tiled[i].cx)), cy = int(std::lround(tiled[i].cy));
            const uint8_t *field = &f.rgb[(size_t(cy) * f.layout.width + cx) * 3];
            const uint8_t *crop = &crops[i].pixels[(size_t(o.cropSize / 2) * o.cropSize + o.cropSize / 2) * 3];
            QVERIFY(std::memcmp(field, crop, 3) == 0);
        }
    }

    void tiffIsReadBandByBand()
    {
        QTemporaryDir dir;
        demo::SmearFieldOptions fo;
        fo.width = 2300;
        fo.height = 1700;
        const demo::SmearField f = demo::generateSmearField(3, fo);
        const std::string path = (dir.path() + "/field.tif").toStdString();
        QVERIFY(writeFieldTiff(path, f.layout));
        auto source = imaging::SmearSource::open(path);
        QVERIFY2(source, source.message().c_str());
        QVERIFY(!(*source)->decodedWhole());
        QCOMPARE((*source)->width(), fo.width);
        QCOMPARE((*source)->height(), fo.height);
        std::vector<uint8_t> rows(size_t(fo.width) * 100 * 3);
        QVERIFY((*source)->readRows(901, 100, rows.data()));
        QVERIFY(std::memcmp(rows.data(), f.rgb.data() + size_t(901) * fo.width * 3, rows.size()) == 0);
        QVERIFY(!(*source)->readRows(1650, 100, rows.data())); // past the end: an error, not a crash

        imaging::CellDetectorOptions o;
        o.tileSize = 512;
        imaging::TiledDetectionStats stats;
        const auto found = detectTiled(**source, o, &stats);
        const auto score = imaging::scoreDetections(truthBoxes(f.layout), found);
        QVERIFY(score.recall() >= 0.95 && score.precision() >= 0.9);
        // Memory: one band of tile + 2 overlaps rows, never the field.
        QVERIFY(stats.bandBytes <= int64_t(fo.width) * (o.tileSize + 2 * imaging::tileOverlap(o)) * 3);
        QVERIFY(stats.bandBytes < int64_t(fo.width) * fo.height * 3 / 2);

        auto preview = imaging::readSmearPreview(**source, 500);
        QVERIFY(preview);
        QCOMPARE(preview->width, 500);
        QCOMPARE(preview->height, int(std::lround(1700 * 500.0 / 2300)));
        const std::atomic<bool> cancelled{true};
        auto stopped = imaging::readSmearPreview(**source, 500, &cancelled);
        QVERIFY(!stopped);
        QCOMPARE(stopped.message(), std::string("cancelled"));
    }

    void badFilesGetClearMessages()
    {
        QTemporaryDir dir;
        const std::string text = (dir.path() + "/notes.tif").toStdString();
        std::ofstream(text) << "not an image";
        auto a = imaging::SmearSource::open(text);
        QVERIFY(!a);
        QVERIFY2(a.message().find("TIFF") != std::string::npos, a.message().c_str());

        auto missing = imaging::SmearSource::open((dir.path() + "/missing.tif").toStdString());
        QVERIFY(!missing);
        QVERIFY(missing.message().find("cannot open") != std::string::npos);

        // A field larger than the limit is refused from its header.
        demo::SmearFieldOptions fo;
        fo.width = 800;
        fo.height = 600;
        const demo::SmearLayout layout = demo::planSmearField(2, fo);
        const std::string cut = (dir.path() + "/cut.tif").toStdString();
        QVERIFY(imaging::writeTiffByStrips(
            cut, fo.width, fo.height,
            [&](int y0, int rows, uint8_t *out) { demo::renderSmearRegion(layout, 0, y0, fo.width, rows, out); },
            false));
        imaging::SmearLimits tight;
        tight.maxPixels = 1000;
        auto big = imaging::SmearSource::open(cut, tight);
        QVERIFY(!big);
        QVERIFY2(big.message().find("limit") != std::string::npos, big.message().c_str());

        // A TIFF whose strips are damaged: the header reads, the pixels do not.
        {
            std::fstream f(cut, std::ios::in | std::ios::out | std::ios::binary);
            f.seekp(8 + 200 * 800 * 3); // inside the pixel data, before the directory
            const std::vector<char> junk(300 * 800 * 3, '\0');
            f.write(junk.data(), std::streamsize(junk.size()));
        }
        std::filesystem::resize_file(cut, 8 + 300 * 800 * 3); // and the directory is gone
        auto source = imaging::SmearSource::open(cut);
        QVERIFY(!source);
        QVERIFY2(source.message().find("TIFF") != std::string::npos, source.message().c_str());
    }

    // A relative project path (`cytosae import s.cyto fields --smear`): the crops are stored
    // with absolute paths, so the project works from any working folder.
    void smearCropPathsDoNotDependOnTheWorkingFolder()
    {
        QTemporaryDir dir;
        QVERIFY(QDir().mkpath(dir.path() + "/fields"));
        demo::SmearFieldOptions fo;
        fo.width = 600;
        fo.height = 500;
        QVERIFY(writeFieldTiff((dir.path() + "/fields/s1.tif").toStdString(), demo::planSmearField(3, fo)));
        const QString before = QDir::currentPath();
        QVERIFY(QDir::setCurrent(dir.path()));
        std::vector<std::string> paths;
        {
            auto db = store::ProjectDb::open("s.cyto", store::ProjectDb::OpenMode::Create);
            QVERIFY(db);
            pipeline::SmearImportOptions options;
            options.source = "fields";
            auto report = pipeline::importSmears(*db, options);
            QVERIFY(QDir::setCurrent(before));
            QVERIFY2(report, report.message().c_str());
            QVERIFY(report->cellsAdded > 0);
            auto all = db->allImagePaths();
            QVERIFY(all);
            paths = *all;
        }
        QVERIFY(QDir::setCurrent(QDir::rootPath())); // anywhere else
        QVERIFY(!paths.empty());
        for (const auto &p : paths) {
            QVERIFY2(std::filesystem::path(p).is_absolute(), p.c_str());
            QVERIFY2(QFile::exists(QString::fromStdString(p)), p.c_str());
            QVERIFY2(p.rfind((dir.path() + "/s.cyto.cells/").toStdString(), 0) == 0, p.c_str());
        }
        QVERIFY(QDir::setCurrent(before));
    }

    void smearImportIsLinkedAndRuns()
    {
        QTemporaryDir dir;
        const QString fields = dir.path() + "/fields";
        QVERIFY(QDir().mkpath(fields));
        demo::SmearFieldOptions fo;
        fo.width = 900;
        fo.height = 700;
        const demo::SmearLayout layout = demo::planSmearField(8, fo);
        QVERIFY(writeFieldTiff((fields + "/s1.tif").toStdString(), layout));
        std::ofstream((fields + "/broken.png").toStdString()) << "nope";

        const std::string project = (dir.path() + "/p.cyto").toStdString();
        auto db = store::ProjectDb::open(project, store::ProjectDb::OpenMode::Create);
        QVERIFY(db);
        QCOMPARE(db->schemaVersion(), 4);
        pipeline::SmearImportOptions options;
        options.source = fields.toStdString();
        options.patientCode = "P7";
        auto report = pipeline::importSmears(*db, options);
        QVERIFY2(report, report.message().c_str());
        QCOMPARE(report->found, int64_t(2));
        QCOMPARE(report->added, int64_t(1));
        QCOMPARE(report->rejected, int64_t(1));
        QCOMPARE(report->rejectedFiles.size(), size_t(1));
        QVERIFY(report->rejectedFiles[0].path.find("broken.png") != std::string::npos);
        QVERIFY(!report->rejectedFiles[0].reason.empty());
        QVERIFY(report->cellsAdded >= int64_t(layout.whiteCells.size()) - 1);

        auto smears = db->smears();
        QVERIFY(smears);
        QCOMPARE(smears->size(), size_t(2));
        const store::SmearRecord *ok = nullptr;
        for (const auto &s : *smears)
            if (s.qcStatus == "ok")
                ok = &s;
        QVERIFY(ok);
        QCOMPARE(ok->width, fo.width);
        QCOMPARE(ok->patientCode, std::string("P7"));
        QCOMPARE(ok->cells, report->cellsAdded);
        auto cells = db->smearCells(ok->id);
        QVERIFY(cells);
        QCOMPARE(int64_t(cells->size()), report->cellsAdded);
        std::vector<imaging::CellDetection> boxes;
        for (const auto &c : *cells) {
            boxes.push_back({c.x, c.y, c.w, c.h, 0, 0, 0, 0, c.score});
            auto img = db->image(c.imageId);
            QVERIFY(img);
            QCOMPARE(img->patientCode, std::string("P7"));
            QCOMPARE(img->width, 144);
            QVERIFY(QFile::exists(QString::fromStdString(img->path)));
            QCOMPARE(*db->smearOfImage(c.imageId), ok->id);
        }
        QVERIFY(imaging::scoreDetections(truthBoxes(layout), boxes).recall() >= 0.95);

        // Importing again adds nothing.
        auto again = pipeline::importSmears(*db, options);
        QVERIFY(again);
        QCOMPARE(again->added, int64_t(0));
        QCOMPARE(again->alreadyPresent, int64_t(2));
        QCOMPARE(again->cellsAdded, int64_t(0));

        // The cells go through the ordinary run; their activations are found by smear.
        pipeline::RunOptions ro;
        ro.engine.vitPath = (kFix + "tiny_dinobloom.pth").toStdString();
        ro.engine.saePath = (kFix + "final_sparse_autoencoder_dinov2_vitb14_-2_resid_256.pt").toStdString();
        ro.engine.device = model::DeviceChoice::Cpu;
        ro.engine.topK = 16;
        ro.batchSize = 4;
        auto run = pipeline::runProject(project, ro);
        QVERIFY2(run, run.message().c_str());
        QCOMPARE(run->processed, report->cellsAdded);
        // The strongest latent of the first cell is found again through its smear.
        auto concepts = db->conceptsOfImage(run->runId, cells->front().imageId);
        QVERIFY(concepts && !concepts->empty());
        const int32_t latent = concepts->front().latent;
        auto acts = db->smearCellActivations(run->runId, ok->id, latent);
        QVERIFY(acts);
        bool seen = false;
        std::set<int64_t> smearImages;
        for (const auto &c : *cells)
            smearImages.insert(c.imageId);
        for (const auto &[image, value] : *acts) {
            QVERIFY(smearImages.count(image)); // only this smear's cells
            if (image == cells->front().imageId) {
                seen = true;
                QCOMPARE(value, concepts->front().maxPatch);
            }
        }
        QVERIFY(seen);
    }
};

QTEST_GUILESS_MAIN(TestSmear)
#include "tst_smear.moc"
