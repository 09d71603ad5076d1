// Import and run end to end on the tiny fixture models: every image stored exactly once with
// the engine's numbers, bad files recorded, cancel + resume, and a run killed with SIGKILL
// mid-way that resumes to a complete, consistent database.

#include "model/Engine.h"
#include "imaging/ImageDecoder.h"
#include "pipeline/Importer.h"
#include "pipeline/Runner.h"
#include "store/ProjectDb.h"

#include <QDir>
#include <QFile>
#include <QProcess>
#include <QTemporaryDir>
#include <QtTest>

#include <cmath>
#include <set>

using namespace cytosae;

namespace {
const QString kFix = QStringLiteral(CYTOSAE_TEST_DATA "/fixtures/");
const QString kCli = QStringLiteral(CYTOSAE_BINARY_DIR "/app/cli/cytosae");
const std::string kVit = (kFix + "tiny_dinobloom.pth").toStdString();
const std::string kSae = (kFix + "final_sparse_autoencoder_dinov2_vitb14_-2_resid_256.pt").toStdString();
const char *kImages[] = {"img0_rgb_224x224.png", "img1_rgb_144x120.png", "img2_rgba_288x288.png"};

// root/<patient>/cell_<n>.png, copies of the fixture images; returns how many were written.
int makeCohort(const QString &root, const QStringList &patients, int perPatient)
{
    int n = 0;
    for (const QString &p : patients) {
        QDir().mkpath(root + "/" + p);
        for (int i = 0; i < perPatient; ++i) {
            const QString dst = QStringLiteral("%1/%2/cell_%3.png").arg(root, p).arg(i, 4, 10, QChar('0'));
            if (!QFile::copy(kFix + "images/" + kImages[(n++) % 3], dst))
                qFatal("cannot copy fixture");
        }
    }
    return n;
}

pipeline::RunOptions runOptions()
{
    pipeline::RunOptions o;
    o.engine.vitPath = kVit;
    o.engine.saePath = kSae;
    o.engine.device = model::DeviceChoice::Cpu;
    o.engine.topK = 16;
    o.batchSize = 4;
    o.readerThreads = 2;
    return o;
}

store::ProjectDb openDb(const QString &path, store::ProjectDb::OpenMode mode = store::ProjectDb::OpenMode::Existing)
{
    auto db = store::ProjectDb::open(path.toStdString(), mode);
    if (!db)
        qFatal("%s", db.message().c_str());
    return std::move(db.value());
}

// A new project at `project` with the patient-per-folder cohort at `data` imported.
bool importCohort(const QString &project, const QString &data)
{
    store::ProjectDb db = openDb(project, store::ProjectDb::OpenMode::Create);
    pipeline::ImportOptions io;
    io.source = data.toStdString();
    io.layout = pipeline::FolderLayout::PatientPerFolder;
    return pipeline::importImages(db, io).ok();
}

int64_t countOf(store::ProjectDb &db, const std::string &sql)
{
    auto v = db.count(sql);
    return v ? *v : -1;
}

// Every image stored exactly once, concept rows consistent with the per-image blobs.
void verifyConsistent(store::ProjectDb &db, int64_t runId, int64_t expectedImages)
{
    const std::string r = std::to_string(runId);
    QCOMPARE(countOf(db, "SELECT count(*) FROM activation WHERE run_id = " + r), expectedImages);
    QCOMPARE(countOf(db, "SELECT count(DISTINCT image_id) FROM activation WHERE run_id = " + r), expectedImages);
    QCOMPARE(countOf(db, "SELECT count(*) FROM image_concept WHERE run_id = " + r),
             countOf(db, "SELECT sum(n_active) FROM activation WHERE run_id = " + r));
    QCOMPARE(countOf(db, "SELECT images_done FROM run WHERE id = " + r), expectedImages);
    QCOMPARE(*db.db().queryText("PRAGMA integrity_check"), std::string("ok"));
}
} // namespace

class TestPipeline : public QObject {
    Q_OBJECT

private slots:
    void importRunAndEngineAgree()
    {
        QTemporaryDir dir;
        const QString data = dir.filePath("cohort");
        const int n = makeCohort(data, {"AAA", "BBB", "CCC"}, 4);
        QFile empty(data + "/BBB/empty.png");
        QVERIFY(empty.open(QIODevice::WriteOnly));
        empty.close();
        QFile src(kFix + "images/img0_rgb_224x224.png");
        QVERIFY(src.open(QIODevice::ReadOnly));
        QFile cut(data + "/CCC/cut.png");
        QVERIFY(cut.open(QIODevice::WriteOnly));
        cut.write(src.readAll().left(5000));
        cut.close();
        QFile table(dir.filePath("patients.csv"));
        QVERIFY(table.open(QIODevice::WriteOnly));
        table.write("patient,diagnosis,age\nAAA,APL,61\nBBB,NPM1,55\nCCC,control,40\n");
        table.close();

        const QString project = dir.filePath("p.cyto");
        store::ProjectDb db = openDb(project, store::ProjectDb::OpenMode::Create);
        pipeline::ImportOptions io;
        io.source = data.toStdString();
        io.layout = pipeline::FolderLayout::PatientPerFolder;
        io.patientTable = dir.filePath("patients.csv").toStdString();
        std::vector<ProgressInfo> seen;
        auto report = pipeline::importImages(db, io, [&](const ProgressInfo &p) { seen.push_back(p); });
        QVERIFY2(report.ok(), report.message().c_str());
        QCOMPARE(report->found, int64_t(n + 2));
        QCOMPARE(report->added, int64_t(n));
        QCOMPARE(report->rejected, int64_t(2));
        QCOMPARE(int(report->rejectedFiles.size()), 2);
        QVERIFY(!seen.empty());
        QCOMPARE(seen.back().done, seen.back().total);
        QCOMPARE(*db.db().queryText("SELECT qc_reason FROM image WHERE path LIKE '%empty.png'"),
                 std::string("file is empty (0 bytes)"));
        QCOMPARE(*db.db().queryText("SELECT diagnosis FROM patient WHERE code = 'BBB'"), std::string("NPM1"));
        QCOMPARE(*db.db().queryText("SELECT metadata FROM patient WHERE code = 'AAA'"), std::string("{\"age\":\"61\"}"));
        QVERIFY(!db.db().queryText("SELECT sha256 FROM image WHERE path LIKE '%cell_0000.png'")->empty());
        // Importing again adds nothing.
        auto again = pipeline::importImages(db, io);
        QVERIFY(again.ok());
        QCOMPARE(again->added, int64_t(0));
        QCOMPARE(again->alreadyPresent, int64_t(n + 2));
        QCOMPARE(countOf(db, "SELECT count(*) FROM image"), int64_t(n + 2));

        auto run = pipeline::runProject(project.toStdString(), runOptions());
        QVERIFY2(run.ok(), run.message().c_str());
        QCOMPARE(run->processed, int64_t(n));
        QCOMPARE(run->failed, int64_t(0));
        verifyConsistent(db, run->runId, n);
        QCOMPARE(*db.db().queryText("SELECT status FROM run"), std::string("done"));
        QVERIFY(countOf(db, "SELECT count(*) FROM concept_stats WHERE run_id = " + std::to_string(run->runId)) == 256);
        QCOMPARE(countOf(db, "SELECT count(*) FROM model"), int64_t(2));

        // The stored numbers are the engine's numbers.
        model::EngineParams ep = runOptions().engine;
        auto engine = model::Engine::load(ep);
        QVERIFY(engine.ok());
        auto imageId = db.db().queryInt("SELECT id FROM image WHERE path LIKE '%AAA/cell_0001.png'");
        auto rec = db.image(*imageId);
        auto decoded = imaging::decodeImageFile(rec->path);
        auto direct = (*engine)->run({{decoded->image.pixels.data(), decoded->image.width, decoded->image.height}});
        QVERIFY(direct.ok());
        const model::ImageActivations &a = (*direct)[0];
        auto stored = db.conceptsOfImage(run->runId, *imageId);
        QVERIFY(stored.ok());
        // The run batched 4 images, the direct call 1: BLAS may sum in another order, so
        // values agree to float rounding and only latents at ~0 may differ.
        QVERIFY(std::abs(int(stored->size()) - int(a.latents.size())) <= 2);
        std::map<int, model::LatentAggregate> byId;
        for (const auto &l : a.latents)
            byId[l.latent] = l;
        auto close = [](float x, float y) { return std::abs(x - y) <= 1e-5f + 1e-5f * std::abs(y); };
        for (const auto &c : *stored) {
            if (!byId.count(c.latent)) {
                QVERIFY(c.mean < 1e-5f);
                continue;
            }
            QVERIFY(close(c.mean, byId[c.latent].mean));
            QVERIFY(close(c.maxPatch, byId[c.latent].maxPatch));
            QVERIFY(std::abs(c.patchesAbove - byId[c.latent].patchesAbove) <= 1);
        }
        auto tokens = db.tokensOfImage(run->runId, *imageId);
        QVERIFY(tokens.ok());
        QCOMPARE(tokens->numTokens, 257);
        for (int t = 0; t < 257; ++t) {
            const uint32_t begin = tokens->offsets[size_t(t)], end = tokens->offsets[size_t(t) + 1];
            QVERIFY(end - begin <= 16u);
            for (uint32_t j = begin; j < end; ++j) {
                const size_t slot = size_t(t) * 16 + (j - begin);
                // float16 storage: 11 significant bits.
                QVERIFY(std::abs(tokens->entries[j].value - a.topValues[slot]) <= 1e-3f * a.topValues[slot] + 1e-4f);
                if (a.topValues[slot] > 1e-3f && (j + 1 == end || a.topValues[slot + 1] < a.topValues[slot] - 1e-4f))
                    QCOMPARE(tokens->entries[j].latent, a.topIds[slot]);
            }
        }
        QCOMPARE(int(db.clsOfImage(run->runId, *imageId)->size()), 32);

        // Running again with nothing new does nothing and keeps the run.
        auto rerun = pipeline::runProject(project.toStdString(), runOptions());
        QVERIFY(rerun.ok());
        QVERIFY(rerun->resumed);
        QCOMPARE(rerun->processed, int64_t(0));
        QCOMPARE(rerun->runId, run->runId);
    }

    void missingFileAtRunTimeIsReported()
    {
        QTemporaryDir dir;
        const QString data = dir.filePath("cohort");
        const int n = makeCohort(data, {"AAA"}, 5);
        const QString project = dir.filePath("p.cyto");
        QVERIFY(importCohort(project, data));
        QVERIFY(QFile::remove(data + "/AAA/cell_0002.png"));
        auto run = pipeline::runProject(project.toStdString(), runOptions());
        QVERIFY2(run.ok(), run.message().c_str());
        QCOMPARE(run->processed, int64_t(n - 1));
        QCOMPARE(run->failed, int64_t(1));
        QCOMPARE(int(run->failures.size()), 1);
        QVERIFY(QString::fromStdString(run->failures[0].first).endsWith("cell_0002.png"));
        QCOMPARE(QString::fromStdString(run->failures[0].second), QStringLiteral("file not found"));
        store::ProjectDb db = openDb(project);
        QCOMPARE(countOf(db, "SELECT count(*) FROM run_error"), int64_t(1));
        // Once the file is back, a re-run picks it up and clears the error.
        QVERIFY(QFile::copy(kFix + "images/img0_rgb_224x224.png", data + "/AAA/cell_0002.png"));
        auto again = pipeline::runProject(project.toStdString(), runOptions());
        QVERIFY(again.ok());
        QCOMPARE(again->processed, int64_t(1));
        QCOMPARE(countOf(db, "SELECT count(*) FROM run_error"), int64_t(0));
        verifyConsistent(db, run->runId, n);
    }

    // A run records its precision; auto records what its first batch settled on; a run in
    // another precision is a new run, never mixed into the old one.
    void runRecordsItsPrecision()
    {
        QTemporaryDir dir;
        const QString data = dir.filePath("cohort");
        const int n = makeCohort(data, {"AAA"}, 6);
        const QString project = dir.filePath("p.cyto");
        QVERIFY(importCohort(project, data));
        pipeline::RunOptions autoOptions = runOptions();
        autoOptions.engine.precision = model::Precision::Auto;
        auto first = pipeline::runProject(project.toStdString(), autoOptions);
        QVERIFY2(first.ok(), first.message().c_str());
        QCOMPARE(first->processed, int64_t(n));
        QVERIFY(first->precision == "fp32" || first->precision == "bf16");
        QVERIFY2(first->precisionReason.rfind("auto: " + first->precision, 0) == 0, first->precisionReason.c_str());
        store::ProjectDb db = openDb(project);
        QCOMPARE(db.run(first->runId)->precision, first->precision);

        // The other precision, asked for explicitly: a new run with all images again.
        pipeline::RunOptions other = runOptions();
        other.engine.precision = first->precision == "fp32" ? model::Precision::Bf16 : model::Precision::Fp32;
        auto second = pipeline::runProject(project.toStdString(), other);
        QVERIFY2(second.ok(), second.message().c_str());
        QVERIFY(second->runId != first->runId);
        QVERIFY(!second->resumed);
        QCOMPARE(second->processed, int64_t(n));
        QCOMPARE(db.run(second->runId)->precision, std::string(model::precisionName(other.engine.precision)));
        // auto again continues (and settles to) the newest run's precision, with nothing left to do.
        auto third = pipeline::runProject(project.toStdString(), autoOptions);
        QVERIFY(third.ok());
        QVERIFY(third->resumed);
        QCOMPARE(third->runId, second->runId);
        QCOMPARE(third->processed, int64_t(0));
        QCOMPARE(third->precision, std::string(model::precisionName(other.engine.precision)));
        verifyConsistent(db, first->runId, n);
        verifyConsistent(db, second->runId, n);
    }

    void cancelThenResume()
    {
        QTemporaryDir dir;
        const QString data = dir.filePath("cohort");
        const int n = makeCohort(data, {"AAA", "BBB"}, 10);
        const QString project = dir.filePath("p.cyto");
        QVERIFY(importCohort(project, data));
        std::atomic<bool> cancel{false};
        auto first = pipeline::runProject(project.toStdString(), runOptions(), [&](const ProgressInfo &p) {
            if (p.stage == "run" && p.done >= 4)
                cancel = true;
        }, &cancel);
        QVERIFY2(first.ok(), first.message().c_str());
        QVERIFY(first->cancelled);
        QVERIFY(first->processed >= 4 && first->processed < n);
        store::ProjectDb db = openDb(project);
        QCOMPARE(*db.db().queryText("SELECT status FROM run"), std::string("cancelled"));
        const int64_t stored = countOf(db, "SELECT count(*) FROM activation");
        QVERIFY(stored >= 4 && stored < n);

        auto second = pipeline::runProject(project.toStdString(), runOptions());
        QVERIFY(second.ok());
        QVERIFY(second->resumed);
        QCOMPARE(second->alreadyDone, stored);
        QCOMPARE(second->processed, n - stored);
        verifyConsistent(db, second->runId, n);
        QCOMPARE(*db.db().queryText("SELECT status FROM run"), std::string("done"));
    }

    // A real child process killed with SIGKILL in the middle of a run.
    void killedRunResumesExactlyOnce()
    {
        QTemporaryDir dir;
        const QString data = dir.filePath("cohort");
        const int n = makeCohort(data, {"AAA", "BBB", "CCC", "DDD"}, 60);
        const QString project = dir.filePath("p.cyto");
        QVERIFY(importCohort(project, data));
        const QStringList args = {"run", project, "--vit", QString::fromStdString(kVit), "--sae",
                                  QString::fromStdString(kSae), "--batch", "2", "--top-k", "16", "--device", "cpu"};
        QProcess child;
        child.start(kCli, args);
        QVERIFY(child.waitForStarted());
        int64_t before = 0;
        {
            auto reader = store::ProjectDb::open(project.toStdString(), store::ProjectDb::OpenMode::ReadOnly);
            QVERIFY(reader.ok());
            QElapsedTimer timer;
            timer.start();
            while (timer.elapsed() < 60000 && child.state() == QProcess::Running) {
                auto c = reader->count("SELECT count(*) FROM activation");
                if (c && *c >= 6)
                    break;
                QThread::msleep(5);
            }
            QVERIFY2(child.state() == QProcess::Running, "the run finished before it could be killed");
            child.kill(); // SIGKILL
            QVERIFY(child.waitForFinished());
            QCOMPARE(child.exitStatus(), QProcess::CrashExit);
            before = *reader->count("SELECT count(*) FROM activation");
        }
        QVERIFY2(before >= 6 && before < n, qPrintable(QString::number(before)));
        {
            store::ProjectDb db = openDb(project);
            QCOMPARE(*db.db().queryText("SELECT status FROM run"), std::string("running"));
            QCOMPARE(*db.db().queryText("PRAGMA integrity_check"), std::string("ok"));
            // What was committed is whole: counter, results and concept rows agree.
            QCOMPARE(countOf(db, "SELECT images_done FROM run"), before);
            QCOMPARE(countOf(db, "SELECT count(*) FROM image_concept"), countOf(db, "SELECT sum(n_active) FROM activation"));
        }
        QProcess resume;
        resume.start(kCli, args);
        QVERIFY(resume.waitForFinished(900000));
        QCOMPARE(resume.exitCode(), 0);
        QVERIFY2(QString::fromUtf8(resume.readAllStandardOutput()).contains("(resumed)"), "not resumed");
        store::ProjectDb db = openDb(project);
        verifyConsistent(db, 1, n);
        QCOMPARE(countOf(db, "SELECT count(*) FROM run"), int64_t(1));
        QCOMPARE(*db.db().queryText("SELECT status FROM run"), std::string("done"));
    }
};

QTEST_GUILESS_MAIN(TestPipeline)
#include "tst_pipeline.moc"
