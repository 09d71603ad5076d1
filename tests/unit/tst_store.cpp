// The project database: blob codecs, schema and migrations, refusal of foreign or newer
// files, import bookkeeping, result writes and every query the views use, and statistics
// checked against values computed by hand.

#include "../common/DamagedFiles.h"
#include "store/ActivationCodec.h"
#include "common/Sha256.h"
#include "store/Integrity.h"
#include "store/ProjectDb.h"

#include <QFile>
#include <QTemporaryDir>
#include <QtTest>

#include <cmath>

using namespace cytosae;
using namespace cytosae::store;

namespace {

ProjectDb mustOpen(const QString &path, ProjectDb::OpenMode mode = ProjectDb::OpenMode::Create)
{
    auto db = ProjectDb::open(path.toStdString(), mode);
    if (!db)
        qFatal("open failed: %s", db.message().c_str());
    return std::move(db.value());
}

NewImage img(const std::string &path, const std::string &patient, const std::string &cls, const std::string &dx = {})
{
    NewImage i;
    i.path = path;
    i.sha256 = std::string(64, 'a');
    i.width = i.height = 100;
    i.channels = 3;
    i.bitDepth = 8;
    i.patientCode = patient;
    i.className = cls;
    i.diagnosis = dx;
    return i;
}

// A result row whose concepts are given; tokens carry latent `l` on token 1 with value `mean`.
ImageResultRow row(int64_t imageId, std::vector<ImageConcept> concepts)
{
    ImageResultRow r;
    r.imageId = imageId;
    r.reconError = 0.25f;
    const int tokens = 3, k = 2;
    std::vector<int32_t> ids(tokens * k, -1);
    std::vector<float> vals(tokens * k, 0.f);
    if (!concepts.empty()) {
        ids[2] = concepts[0].latent;
        vals[2] = concepts[0].maxPatch;
    }
    r.tokensBlob = encodeTokenTopK(tokens, k, ids.data(), vals.data(), 99);
    r.concepts = std::move(concepts);
    r.cls = {1.f, 2.f};
    return r;
}

} // namespace

class TestStore : public QObject {
    Q_OBJECT

private slots:
    // SHA-256: the FIPS 180-4 vectors, and the SHA-NI path equal to the portable code at every
    // length around the block boundaries (on a CPU without SHA-NI both are the portable code).
    void sha256KnownVectorsAndBothPaths()
    {
        QCOMPARE(cytosae::sha256Hex("abc", 3), std::string("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
        QCOMPARE(cytosae::sha256Hex("", 0), std::string("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
        // An empty file's bytes: data() of an empty vector is null (was UB in memcpy, UBSan).
        QCOMPARE(cytosae::sha256Hex(nullptr, 0), std::string("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
        const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        QCOMPARE(cytosae::sha256Hex(two, 56), std::string("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"));
        std::vector<uint8_t> data(5000);
        uint32_t x = 12345;
        for (auto &b : data)
            b = uint8_t((x = x * 1664525u + 1013904223u) >> 24);
        for (size_t n : {1, 55, 56, 63, 64, 65, 127, 128, 129, 1000, 4096, 5000})
            QCOMPARE(cytosae::sha256Hex(data.data(), n), cytosae::sha256HexPortable(data.data(), n));
    }

    void halfFloatRoundTrip()
    {
        for (float v : {0.f, 1.f, -2.5f, 0.2f, 65504.f, 6.1035156e-05f, 5.9604645e-08f, 1e-9f, 70000.f}) {
            const float back = halfToFloat(floatToHalf(v));
            if (v > 65504.f)
                QVERIFY(std::isinf(back));
            else if (std::abs(v) < 2.9e-8f)
                QCOMPARE(back, 0.f);
            else
                QVERIFY2(std::abs(back - v) <= std::abs(v) * 0.0005f + 6e-8f, qPrintable(QString::number(v)));
        }
        QCOMPARE(floatToHalf(1.0f), uint16_t(0x3c00));
        QCOMPARE(floatToHalf(-2.0f), uint16_t(0xc000));
        QCOMPARE(floatToHalf(1.0f + 1.0f / 2048), uint16_t(0x3c00)); // ties to even
        QCOMPARE(floatToHalf(1.0f + 3.0f / 2048), uint16_t(0x3c02));
    }

    void tokenBlobRoundTrip()
    {
        // 3 tokens x k=3; unused slots (-1 / 0) are dropped.
        const int32_t ids[] = {7, 3, -1, 40000, 2, 9, -1, -1, -1};
        const float vals[] = {2.f, 0.5f, 0.f, 1.25f, 0.75f, 0.f, 0.f, 0.f, 0.f};
        const auto blob = encodeTokenTopK(3, 3, ids, vals, 49151);
        QCOMPARE(blob.size(), size_t(8 + 3 + 4 * 4)); // header, 3 counts, 4 entries of 2+2 bytes
        auto t = decodeTokenTopK(blob.data(), blob.size());
        QVERIFY2(t.ok(), t.message().c_str());
        QCOMPARE(t->numTokens, 3);
        QCOMPARE(t->offsets, (std::vector<uint32_t>{0, 2, 4, 4}));
        QCOMPARE(t->entries[2].latent, 40000);
        QCOMPARE(t->entries[2].value, 1.25f);
        // Ids above 65535 switch to 4-byte ids.
        const int32_t big[] = {100000};
        const float one[] = {1.f};
        auto wide = encodeTokenTopK(1, 1, big, one, 131071);
        auto w = decodeTokenTopK(wide.data(), wide.size());
        QVERIFY(w.ok());
        QCOMPARE(w->entries[0].latent, 100000);
        // Damage is detected, not read past.
        auto cut = blob;
        cut.resize(blob.size() - 1);
        QVERIFY(!decodeTokenTopK(cut.data(), cut.size()).ok());
        cut = blob;
        cut[8] = 200; // first token claims 200 entries
        QVERIFY(!decodeTokenTopK(cut.data(), cut.size()).ok());
        QVERIFY(!decodeTokenTopK(nullptr, 0).ok());
    }

    void conceptBlobSortedByMean()
    {
        auto blob = encodeConcepts({{5, 0.1f, 0.3f, 1}, {2, 0.9f, 2.f, 7}, {8, 0.5f, 1.f, 0}}, 9);
        auto c = decodeConcepts(blob.data(), blob.size());
        QVERIFY(c.ok());
        QCOMPARE(int(c->size()), 3);
        QCOMPARE((*c)[0].latent, 2);
        QCOMPARE((*c)[0].patchesAbove, 7);
        QCOMPARE((*c)[2].latent, 5);
        blob.pop_back();
        QVERIFY(!decodeConcepts(blob.data(), blob.size()).ok());
    }

    void schemaAndPragmas()
    {
        QTemporaryDir dir;
        const QString path = dir.filePath("p.cyto");
        {
            ProjectDb db = mustOpen(path);
            QCOMPARE(db.schemaVersion(), kSchemaVersion);
            QCOMPARE(*db.db().queryText("PRAGMA journal_mode"), std::string("wal"));
            QCOMPARE(*db.db().queryInt("PRAGMA foreign_keys"), int64_t(1));
            QCOMPARE(*db.db().queryInt("PRAGMA user_version"), int64_t(kSchemaVersion));
            // Foreign keys are enforced: a result for an image that does not exist is refused.
            Status fk = db.db().exec("INSERT INTO activation(run_id, image_id, n_active, concepts) VALUES (99, 99, 0, x'')");
            QVERIFY(!fk);
            QVERIFY2(fk.message().find("FOREIGN KEY") != std::string::npos, fk.message().c_str());
        }
        // Reopening an existing project keeps it.
        ProjectDb again = mustOpen(path, ProjectDb::OpenMode::Existing);
        QCOMPARE(again.schemaVersion(), kSchemaVersion);
        QVERIFY(!ProjectDb::open(dir.filePath("missing.cyto").toStdString(), ProjectDb::OpenMode::Existing).ok());
    }

    // Schema 4 records each run's precision: a schema-3 project is upgraded with its runs as
    // fp32 (all earlier runs were), and resuming matches on the precision.
    void runPrecisionIsRecordedAndUpgraded()
    {
        QTemporaryDir dir;
        const QString path = dir.filePath("p.cyto");
        {
            ProjectDb db = mustOpen(path);
            auto vit = db.upsertModel("vit", "aa", "v.pth", "{}");
            auto sae = db.upsertModel("sae", "bb", "s.pt", "{}");
            QVERIFY(vit.ok() && sae.ok());
            auto bf = db.createRun(*vit, *sae, 32, 0.2, 768, "cpu (2 threads)", "bf16");
            QVERIFY(bf.ok());
            auto any = db.resumableRun(*vit, *sae, 32, 0.2, "");
            QVERIFY(any.ok() && any->has_value());
            QCOMPARE((*any)->precision, std::string("bf16"));
            auto fp = db.resumableRun(*vit, *sae, 32, 0.2, "fp32");
            QVERIFY(fp.ok());
            QVERIFY(!fp->has_value()); // a bf16 run is not continued in fp32
            auto undecided = db.createRun(*vit, *sae, 16, 0.2, 768, "cpu (2 threads)", "auto");
            QVERIFY(undecided.ok());
            auto resumeAuto = db.resumableRun(*vit, *sae, 16, 0.2, "fp32");
            QVERIFY(resumeAuto.ok() && resumeAuto->has_value()); // no batch decided it yet
            QVERIFY(db.setRunPrecision(*undecided, "fp32").ok());
            QCOMPARE(db.run(*undecided)->precision, std::string("fp32"));
            // Back to schema 3: as a file written before issue 17.
            QVERIFY(db.db().exec("ALTER TABLE run DROP COLUMN precision").ok());
            QVERIFY(db.db().exec("PRAGMA user_version = 3").ok());
        }
        ProjectDb upgraded = mustOpen(path, ProjectDb::OpenMode::Existing);
        QCOMPARE(upgraded.schemaVersion(), kSchemaVersion);
        auto latest = upgraded.latestRun();
        QVERIFY(latest.ok() && latest->has_value());
        QCOMPARE((*latest)->precision, std::string("fp32"));
        // The upgrade kept the file as it was beside it: schema 3, its runs, intact.
        QCOMPARE(QString::fromStdString(upgraded.upgradeBackup()), path + ".schema3.bak");
        {
            auto backup = store::Database::open(upgraded.upgradeBackup(), store::Database::Mode::ReadOnly);
            QVERIFY(backup.ok());
            QCOMPARE(*backup->queryInt("PRAGMA user_version"), int64_t(3));
            QCOMPARE(*backup->queryInt("SELECT count(*) FROM run"), int64_t(2));
            QVERIFY(!backup->queryInt("SELECT count(precision) FROM run").ok()); // schema 3: no such column
            QCOMPARE(*backup->queryText("PRAGMA quick_check"), std::string("ok"));
        }
        // Opening it again makes no further copy.
        ProjectDb again = mustOpen(path, ProjectDb::OpenMode::Existing);
        QVERIFY(again.upgradeBackup().empty());
    }

    void foreignAndNewerFilesAreRefused()
    {
        QTemporaryDir dir;
        // A newer schema: refused, and not modified.
        const QString newer = dir.filePath("newer.cyto");
        {
            ProjectDb db = mustOpen(newer);
            QVERIFY(db.db().exec("PRAGMA user_version = 99"));
        }
        QFile f(newer);
        QVERIFY(f.open(QIODevice::ReadOnly));
        const QByteArray before = f.readAll();
        f.close();
        auto r = ProjectDb::open(newer.toStdString(), ProjectDb::OpenMode::Existing);
        QVERIFY(!r.ok());
        QVERIFY2(r.message().find("newer") != std::string::npos, r.message().c_str());
        QVERIFY(f.open(QIODevice::ReadOnly));
        QCOMPARE(f.readAll(), before);
        f.close();
        // Another application's SQLite file.
        const QString other = dir.filePath("other.db");
        {
            auto raw = Database::open(other.toStdString(), Database::Mode::ReadWriteCreate);
            QVERIFY(raw.ok());
            QVERIFY(raw->exec("CREATE TABLE t(x)"));
        }
        auto o = ProjectDb::open(other.toStdString(), ProjectDb::OpenMode::Existing);
        QVERIFY(!o.ok());
        QVERIFY2(o.message().find("not a CytoSAE project") != std::string::npos, o.message().c_str());
        // Not SQLite at all.
        const QString text = dir.filePath("notes.cyto");
        QFile t(text);
        QVERIFY(t.open(QIODevice::WriteOnly));
        t.write(QByteArray(4096, 'x'));
        t.close();
        auto n = ProjectDb::open(text.toStdString(), ProjectDb::OpenMode::Existing);
        QVERIFY(!n.ok());
        QVERIFY2(n.message().find("not a CytoSAE project") != std::string::npos, n.message().c_str());
    }

    void damagedFileIsDetected()
    {
        QTemporaryDir dir;
        const QString path = dir.filePath("p.cyto");
        {
            ProjectDb db = mustOpen(path);
            std::vector<NewImage> many;
            for (int i = 0; i < 3000; ++i)
                many.push_back(img("/cells/" + std::to_string(i) + ".png", "P" + std::to_string(i % 7), "blast"));
            QVERIFY(db.addImages(many).ok());
            QCOMPARE(*db.quickCheck(), std::string("ok"));
            QVERIFY(db.db().exec("PRAGMA wal_checkpoint(TRUNCATE)"));
        }
        // Scribble over pages in the middle of the file, as a failing disk would.
        QFile f(path);
        QVERIFY(f.open(QIODevice::ReadWrite));
        QVERIFY(f.size() > 40000);
        f.seek(f.size() / 2);
        f.write(QByteArray(20000, '\x5a'));
        f.close();
        auto db = ProjectDb::open(path.toStdString(), ProjectDb::OpenMode::ReadOnly);
        if (db) {
            auto check = db->quickCheck();
            QVERIFY2(!check.ok() || *check != "ok", "damage not detected");
        } else {
            QVERIFY2(db.message().find("the project file is damaged") != std::string::npos ||
                         db.message().find("not a CytoSAE project") != std::string::npos,
                     db.message().c_str());
        }
    }

    // A file damaged where a run's writes would not touch it (the image table's root page) is
    // refused by every kind of connection before anything is read or written, and left
    // byte for byte as it was; `checkIntegrity` names the damaged table.
    void damagedProjectIsRefusedAndNeverChanged()
    {
        QTemporaryDir dir;
        const QString path = dir.filePath("p.cyto");
        {
            ProjectDb db = mustOpen(path);
            std::vector<NewImage> many;
            for (int i = 0; i < 500; ++i)
                many.push_back(img("/cells/" + std::to_string(i) + ".png", "P" + std::to_string(i % 7), "blast"));
            QVERIFY(db.addImages(many).ok());
            auto vit = db.upsertModel("vit", "aa", "v.pth", "{}");
            auto sae = db.upsertModel("sae", "bb", "s.pt", "{}");
            auto run = db.createRun(*vit, *sae, 32, 0.2, 768, "cpu", "fp32");
            QVERIFY(run.ok() && db.setRunStatus(*run, "done").ok());
            QVERIFY(db.db().exec("PRAGMA wal_checkpoint(TRUNCATE)"));
        }
        const QString overwritten = overwriteRootPage(path, "image", '\xab');
        QVERIFY2(overwritten.isEmpty(), qPrintable(overwritten));
        const QByteArray before = fileBytes(path);
        for (auto mode : {ProjectDb::OpenMode::Existing, ProjectDb::OpenMode::Create, ProjectDb::OpenMode::ReadOnly}) {
            auto db = ProjectDb::open(path.toStdString(), mode);
            QVERIFY(!db.ok());
            QVERIFY2(db.message().find("the project file is damaged") != std::string::npos, db.message().c_str());
            QVERIFY2(db.message().find("nothing was changed") != std::string::npos, db.message().c_str());
            QVERIFY2(db.message().find("cytosae check") != std::string::npos, db.message().c_str());
        }
        QVERIFY(fileBytes(path) == before);

        auto report = store::checkIntegrity(path.toStdString());
        QVERIFY2(report.ok(), report.message().c_str());
        QVERIFY(!report->ok);
        QVERIFY(!report->problems.empty());
        int damaged = 0;
        for (const auto &t : report->tables) {
            if (t.table == "image") {
                QVERIFY(t.damaged);
                QVERIFY(!t.holds.empty());
            } else if (t.table == "run") {
                QVERIFY2(!t.damaged, t.problem.c_str());
                QCOMPARE(t.rowsRead, int64_t(1));
            }
            damaged += t.damaged;
        }
        QCOMPARE(damaged, 1);
        QVERIFY(fileBytes(path) == before);

        // Damage SQLite only finds by reading every page (the middle of a large table).
        const QString other = dir.filePath("q.cyto");
        {
            ProjectDb db = mustOpen(other);
            std::vector<NewImage> many;
            for (int i = 0; i < 4000; ++i)
                many.push_back(img("/cells/long/path/to/make/the/table/span/many/pages/" + std::to_string(i) + ".png",
                                   "P" + std::to_string(i % 7), "blast"));
            QVERIFY(db.addImages(many).ok());
            QVERIFY(db.db().exec("PRAGMA wal_checkpoint(TRUNCATE)"));
        }
        {
            QFile f(other);
            QVERIFY(f.open(QIODevice::ReadWrite));
            const qint64 pages = f.size() / 4096;
            QVERIFY(pages > 20);
            for (qint64 page : {pages / 2, pages / 2 + 3}) {
                f.seek(page * 4096);
                f.write(QByteArray(4096, '\x5a'));
            }
        }
        {
            // The header and the run table read fine: without the full check this opened.
            auto raw = store::Database::open(other.toStdString(), store::Database::Mode::ReadOnly);
            QVERIFY(raw.ok());
            QVERIFY(raw->queryInt("SELECT count(*) FROM sqlite_master").ok());
        }
        auto refused = ProjectDb::open(other.toStdString(), ProjectDb::OpenMode::Existing);
        QVERIFY(!refused.ok());
        QVERIFY2(refused.message().find("the project file is damaged") != std::string::npos, refused.message().c_str());
        auto otherReport = store::checkIntegrity(other.toStdString());
        QVERIFY(otherReport.ok() && !otherReport->ok);
    }

    void intactProjectChecksClean()
    {
        QTemporaryDir dir;
        const QString path = dir.filePath("p.cyto");
        {
            ProjectDb db = mustOpen(path);
            QVERIFY(db.addImages({img("/a/1.png", "AAA", "blast")}).ok());
        }
        auto report = store::checkIntegrity(path.toStdString());
        QVERIFY2(report.ok(), report.message().c_str());
        QVERIFY(report->ok);
        QVERIFY(report->problems.empty());
        QCOMPARE(report->schemaVersion, kSchemaVersion);
        bool sawImage = false;
        for (const auto &t : report->tables) {
            QVERIFY(!t.damaged);
            if (t.table == "image") {
                sawImage = true;
                QCOMPARE(t.rowsRead, int64_t(1));
            }
        }
        QVERIFY(sawImage);
        QVERIFY(!store::checkIntegrity(dir.filePath("none.cyto").toStdString()).ok());
    }

    void importIsIdempotent()
    {
        QTemporaryDir dir;
        ProjectDb db = mustOpen(dir.filePath("p.cyto"));
        std::vector<NewImage> batch = {img("/a/1.png", "AAA", "blast", "APL"), img("/a/2.png", "AAA", "blast"),
                                       img("/b/3.png", "BBB", "lymph", "control")};
        batch.push_back(img("/b/bad.png", "BBB", ""));
        batch.back().ok = false;
        batch.back().qcReason = "file is empty (0 bytes)";
        auto c = db.addImages(batch);
        QVERIFY2(c.ok(), c.message().c_str());
        QCOMPARE(c->added, int64_t(3));
        QCOMPARE(c->rejected, int64_t(1));
        auto again = db.addImages(batch);
        QVERIFY(again.ok());
        QCOMPARE(again->added, int64_t(0));
        QCOMPARE(again->alreadyPresent, int64_t(4));
        QCOMPARE(*db.count("SELECT count(*) FROM image"), int64_t(4));
        auto patients = db.patients();
        QVERIFY(patients.ok());
        QCOMPARE(int(patients->size()), 2);
        QCOMPARE(QString::fromStdString((*patients)[0].diagnosis), QStringLiteral("APL")); // AAA, kept from row 1
        QCOMPARE((*patients)[0].cells, int64_t(2));
        QCOMPARE(QString::fromStdString((*patients)[1].diagnosis), QStringLiteral("control"));
        QCOMPARE(*db.db().queryText("SELECT qc_reason FROM image WHERE path = '/b/bad.png'"),
                 std::string("file is empty (0 bytes)"));
    }

    void resultsAndQueries()
    {
        QTemporaryDir dir;
        ProjectDb db = mustOpen(dir.filePath("p.cyto"));
        // 12 images: patients AAA (APL, 6 cells) and BBB (control, 6 cells), classes alternate.
        std::vector<NewImage> images;
        for (int i = 0; i < 12; ++i)
            images.push_back(img("/img" + std::to_string(i) + ".png", i < 6 ? "AAA" : "BBB", i % 2 ? "blast" : "lymph",
                                 i < 6 ? "APL" : "control"));
        QVERIFY(db.addImages(images).ok());
        auto vit = db.upsertModel("vit", "v1", "/m/vit.pth", "{}");
        auto sae = db.upsertModel("sae", "s1", "/m/sae.pt", "{}");
        QVERIFY(vit.ok() && sae.ok());
        QCOMPARE(*db.upsertModel("vit", "v1", "/elsewhere/vit.pth", "{}"), *vit); // same hash, same model
        auto run = db.createRun(*vit, *sae, 2, 0.2, 100, "cpu");
        QVERIFY(run.ok());

        // Latent 7 fires with mean (i + 1) / 10 on image i; latent 3 only on AAA's cells, above
        // the threshold on the first two; latent 50 never reaches a patch threshold.
        std::vector<ImageResultRow> rows;
        for (int i = 0; i < 12; ++i) {
            std::vector<ImageConcept> c = {{7, float(i + 1) / 10.f, float(i + 1) / 5.f, i}};
            if (i < 6)
                c.push_back({3, 0.05f, 0.4f, i < 2 ? 3 : 0});
            c.push_back({50, 0.01f, 0.1f, 0});
            rows.push_back(row(i + 1, c));
        }
        QVERIFY(db.writeResults(*run, {rows.begin(), rows.begin() + 5}, {}));
        QVERIFY(db.writeResults(*run, {rows.begin() + 5, rows.end()}, {}));
        QCOMPARE(db.run(*run)->imagesDone, int64_t(12));
        QVERIFY(db.pendingImages(*run)->empty());
        // A second write of the same image is refused as a whole batch (exactly once).
        QVERIFY(!db.writeResults(*run, {rows[0]}, {}));
        QCOMPARE(db.run(*run)->imagesDone, int64_t(12));

        auto top = db.topCells(*run, 7, 3);
        QVERIFY(top.ok());
        QCOMPARE(int(top->size()), 3);
        QCOMPARE((*top)[0].imageId, int64_t(12));
        QCOMPARE((*top)[2].imageId, int64_t(10));
        QCOMPARE((*top)[0].patches, 11);
        CellFilter onlyAaa;
        onlyAaa.patientId = (*db.patients())[0].id;
        auto topA = db.topCells(*run, 7, 10, onlyAaa);
        QCOMPARE(int(topA->size()), 6);
        QCOMPARE((*topA)[0].imageId, int64_t(6));
        CellFilter blastControl;
        blastControl.className = "blast";
        blastControl.diagnosis = "control";
        auto topB = db.topCells(*run, 7, 10, blastControl);
        QCOMPARE(int(topB->size()), 3); // images 8, 10, 12 (odd i in BBB)
        QCOMPARE((*topB)[0].imageId, int64_t(12));

        auto bins = db.quantileSample(*run, 7, 3, 2, 42);
        QVERIFY(bins.ok());
        QCOMPARE(int(bins->size()), 3);
        for (const auto &hit : (*bins)[0])
            QVERIFY(hit.mean >= 0.9f - 1e-6f); // strongest third: images 9..12
        for (const auto &hit : (*bins)[2])
            QVERIFY(hit.mean <= 0.4f + 1e-6f);
        QCOMPARE(db.quantileSample(*run, 7, 3, 2, 42)->at(1).at(0).imageId, (*bins)[1][0].imageId); // seeded

        auto concepts = db.conceptsOfImage(*run, 1);
        QVERIFY(concepts.ok());
        QCOMPARE(int(concepts->size()), 3);
        QCOMPARE((*concepts)[0].latent, 7);
        auto token = db.conceptsOfToken(*run, 3, 1);
        QVERIFY(token.ok());
        QCOMPARE(int(token->size()), 1);
        QCOMPARE((*token)[0].latent, 7);
        QVERIFY(std::abs((*token)[0].value - 0.6f) < 1e-3f); // stored as float16
        QVERIFY(!db.conceptsOfToken(*run, 3, 3).ok());
        QCOMPARE(*db.clsOfImage(*run, 2), (std::vector<float>{1.f, 2.f}));
        QVERIFY(!db.conceptsOfImage(*run, 999).ok());

        int64_t cells = 0;
        auto fp = db.patientFingerprint(*run, onlyAaa.patientId, &cells);
        QVERIFY(fp.ok());
        QCOMPARE(cells, int64_t(6));
        std::map<int, double> frac;
        for (const auto &e : *fp)
            frac[e.latent] = e.fraction;
        QCOMPARE(frac[7], 5.0 / 6.0); // image 1 has 0 patches above threshold
        QCOMPARE(frac[3], 2.0 / 6.0);
        QVERIFY(!frac.count(50));
        // Validated per-concept thresholds replace the run's (on the cell's maximum patch).
        auto fpT = db.patientFingerprint(*run, onlyAaa.patientId, &cells, {{7, 0.7f}, {50, 0.05f}});
        std::map<int, double> fracT;
        for (const auto &e : *fpT)
            fracT[e.latent] = e.fraction;
        QCOMPARE(fracT[7], 3.0 / 6.0); // max patches 0.8, 1.0, 1.2 exceed 0.7
        QCOMPARE(fracT[50], 1.0);      // 0.1 everywhere exceeds 0.05
        QCOMPARE(fracT[3], 2.0 / 6.0); // no override: the run's threshold

        QVERIFY(db.computeStats(*run));
        auto s7 = db.conceptStats(*run, 7);
        QVERIFY(s7.ok() && s7->has_value());
        QCOMPARE((*s7)->firingImages, int64_t(12));
        QCOMPARE((*s7)->firingFrequency, 1.0);
        QVERIFY(std::abs(*(*s7)->meanActivation - 0.65) < 1e-6); // mean of 0.1 .. 1.2
        QCOMPARE(int((*s7)->topImages.size()), 10);
        QCOMPARE((*s7)->topImages.front(), int64_t(12));
        QCOMPARE((*s7)->topImages.back(), int64_t(3));
        // Entropy over the top 10 (images 3..12), weights = means, labels alternate.
        double blast = 0, lymph = 0;
        for (int i = 2; i < 12; ++i)
            (i % 2 ? blast : lymph) += (i + 1) / 10.0;
        const double pb = blast / (blast + lymph), pl = lymph / (blast + lymph);
        const double h = -(pb * std::log(pb + 1e-9) + pl * std::log(pl + 1e-9));
        QVERIFY(std::abs(*(*s7)->labelEntropy - h) < 1e-6);
        QVERIFY((*s7)->dense);
        QVERIFY((*s7)->highMean);
        auto s3 = db.conceptStats(*run, 3);
        QCOMPARE((*s3)->firingFrequency, 0.5);
        QVERIFY(std::abs(*(*s3)->labelEntropy - (-(0.5 * std::log(0.5 + 1e-9)) * 2)) < 1e-6);
        QVERIFY(!(*s3)->dense);
        auto s0 = db.conceptStats(*run, 0);
        QVERIFY((*s0)->dead);
        QVERIFY(!(*s0)->meanActivation.has_value());
        QCOMPARE(*db.count("SELECT count(*) FROM concept_stats WHERE run_id = " + std::to_string(*run)), int64_t(100));

        // The typed queries the explorer uses.
        auto all = db.allConceptStats(*run);
        QVERIFY(all.ok());
        QCOMPARE(int(all->size()), 100);
        QCOMPARE((*all)[7].firingImages, int64_t(12));
        QVERIFY(!(*all)[0].meanActivation.has_value());
        auto values = db.latentValues(*run, 3);
        QCOMPARE(int(values->size()), 6);
        QCOMPARE(values->front().second, 0.4f);
        QCOMPARE(*db.reconError(*run, 1), 0.25f);
        QVERIFY(!db.reconError(*run, 999).ok());
        QCOMPARE(*db.classes(), (std::vector<std::string>{"blast", "lymph"}));
        QCOMPARE(*db.diagnoses(), (std::vector<std::string>{"APL", "control"}));
        QCOMPARE(*db.acceptedImageCount(), int64_t(12));
        auto counts = db.classCounts(onlyAaa.patientId);
        QCOMPARE(int(counts->size()), 2);
        QCOMPARE(counts->front().second, int64_t(3));
        auto cellsOfA = db.patientImages(onlyAaa.patientId, 4);
        QCOMPARE(int(cellsOfA->size()), 4);
        QCOMPARE(cellsOfA->front().path, std::string("/img0.png"));
        QCOMPARE(cellsOfA->front().className, std::string("lymph"));
    }
};

QTEST_APPLESS_MAIN(TestStore)
#include "tst_store.moc"
