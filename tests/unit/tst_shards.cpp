// Sharded runs as on a cluster: the real `cytosae` binary runs 3 shards of a demo cohort as
// concurrent processes, `cytosae merge` combines them, and every query the views make gives
// the same answer as one process over the same images. Then the merges that must be refused
// (missing, duplicated, foreign or mismatched shards) are refused, listing every problem, and
// leave the project untouched.

#include "demo/DemoCohort.h"
#include "store/ProjectDb.h"
#include "store/Shards.h"

#include <QFile>
#include <QProcess>
#include <QTemporaryDir>
#include <QtTest>

#include <memory>

using namespace cytosae;

namespace {
const QString kCli = QStringLiteral(CYTOSAE_BINARY_DIR "/app/cli/cytosae");
const QString kModels = QStringLiteral(CYTOSAE_TEST_DATA "/../../models/demo/");
const QString kFix = QStringLiteral(CYTOSAE_TEST_DATA "/fixtures/");

struct Run {
    int code = -1;
    QString out, err;
};

// Same batch composition (one image) and threads in every process: the numbers are then
// bit-identical, which is what lets the test compare blobs byte for byte.
QStringList runArgs(const QString &project, const QString &vit = kModels + "demo_vit.pth",
                    const QString &sae = kModels + "demo_sae.pt")
{
    return {"run", project, "--vit", vit, "--sae", sae, "--batch", "1", "--threads", "1"};
}

Run cli(const QStringList &args)
{
    QProcess p;
    p.start(kCli, args);
    if (!p.waitForFinished(900000))
        qFatal("cytosae did not finish");
    return {p.exitCode(), QString::fromUtf8(p.readAllStandardOutput()), QString::fromUtf8(p.readAllStandardError())};
}

store::ProjectDb openDb(const QString &path)
{
    auto db = store::ProjectDb::open(path.toStdString(), store::ProjectDb::OpenMode::ReadOnly);
    if (!db)
        qFatal("%s", db.message().c_str());
    return std::move(db.value());
}

int64_t countOf(const QString &path, const std::string &sql)
{
    auto db = openDb(path);
    auto v = db.count(sql);
    return v ? *v : -1;
}

bool sameTokens(const store::TokenTopK &a, const store::TokenTopK &b)
{
    if (a.numTokens != b.numTokens || a.offsets != b.offsets || a.entries.size() != b.entries.size())
        return false;
    for (size_t i = 0; i < a.entries.size(); ++i)
        if (a.entries[i].latent != b.entries[i].latent || a.entries[i].value != b.entries[i].value)
            return false;
    return true;
}
} // namespace

class TestShards : public QObject {
    Q_OBJECT

    QTemporaryDir m_dir;
    QString m_single, m_sharded, m_pristine;
    QStringList m_shards;

    QString path(const QString &name) const { return m_dir.filePath(name); }

    // A fresh copy of the imported, never-run project.
    QString pristineCopy(const QString &name)
    {
        const QString p = path(name);
        QFile::remove(p);
        if (!QFile::copy(m_pristine, p))
            qFatal("cannot copy the project");
        return p;
    }

    void refused(const QStringList &shards, const QStringList &expected)
    {
        const QString project = pristineCopy("refused.cyto");
        Run r = cli(QStringList{"merge", project} + shards);
        QCOMPARE(r.code, 1);
        QVERIFY2(r.err.contains("nothing was written"), qPrintable(r.err));
        for (const QString &e : expected)
            QVERIFY2(r.err.contains(e), qPrintable("expected '" + e + "' in: " + r.err));
        QCOMPARE(countOf(project, "SELECT count(*) FROM run"), int64_t(0));
        QCOMPARE(countOf(project, "SELECT count(*) FROM activation"), int64_t(0));
        QCOMPARE(countOf(project, "SELECT count(*) FROM model"), int64_t(0));
    }

private slots:
    void initTestCase()
    {
        QVERIFY(m_dir.isValid());
        // 5 patients (one per diagnosis) x 7 cells = 35 images, not a multiple of 3.
        auto written = demo::writeDemoCohort(path("cohort").toStdString(), demo::demoCohort(1, 7, 99), {});
        QVERIFY2(written.ok(), written.message().c_str());
        QCOMPARE(*written, 35);
        m_pristine = path("pristine.cyto");
        Run imp = cli({"import", m_pristine, path("cohort/manifest.csv"), "--patients", path("cohort/patients.csv")});
        QVERIFY2(imp.code == 0, qPrintable(imp.err));
        m_single = pristineCopy("single.cyto");
        m_sharded = pristineCopy("sharded.cyto");
    }

    void parseShardSpec()
    {
        auto ok = store::parseShardSpec("2/3");
        QVERIFY(ok.ok());
        QCOMPARE(ok->index, 2);
        QCOMPARE(ok->count, 3);
        for (const char *bad : {"0/3", "4/3", "3", "a/3", "1/0", "1/3x", "-1/3", ""}) {
            auto r = store::parseShardSpec(bad);
            QVERIFY2(!r.ok(), bad);
            QVERIFY(r.message().find("--shard") != std::string::npos);
        }
    }

    void threeShardProcessesMergeToTheSingleRun()
    {
        Run single = cli(runArgs(m_single));
        QVERIFY2(single.code == 0, qPrintable(single.err));

        std::vector<std::unique_ptr<QProcess>> procs;
        for (int i = 1; i <= 3; ++i) {
            m_shards << path(QStringLiteral("shard%1.cyto").arg(i));
            procs.push_back(std::make_unique<QProcess>());
            procs.back()->start(kCli, runArgs(m_sharded) + QStringList{"--shard", QStringLiteral("%1/3").arg(i),
                                                                       "--shard-db", m_shards.back()});
        }
        for (auto &p : procs) {
            QVERIFY(p->waitForFinished(900000));
            QVERIFY2(p->exitCode() == 0, p->readAllStandardError().constData());
            QVERIFY(p->readAllStandardOutput().contains("on cpu"));
        }
        // Deterministic split: image id % 3, every image in one shard, sizes 12 + 12 + 11.
        int64_t total = 0;
        for (int i = 0; i < 3; ++i) {
            const int64_t n = countOf(m_shards[i], "SELECT count(*) FROM activation");
            QVERIFY2(n == 11 || n == 12, qPrintable(QString::number(n)));
            QCOMPARE(countOf(m_shards[i], "SELECT count(*) FROM image WHERE id % 3 <> " + std::to_string(i)),
                     int64_t(0));
            total += n;
        }
        QCOMPARE(total, int64_t(35));
        // The project itself was only read.
        QCOMPARE(countOf(m_sharded, "SELECT count(*) FROM run"), int64_t(0));

        // Running a shard again resumes it: nothing left to do.
        Run again = cli(runArgs(m_sharded) + QStringList{"--shard", "1/3", "--shard-db", m_shards[0]});
        QCOMPARE(again.code, 0);
        QVERIFY2(again.out.contains("0 image(s) processed"), qPrintable(again.out));
        // A shard database belongs to one shard.
        Run wrong = cli(runArgs(m_sharded) + QStringList{"--shard", "2/3", "--shard-db", m_shards[0]});
        QCOMPARE(wrong.code, 1);
        QVERIFY2(wrong.err.contains("holds shard 1/3, not 2/3"), qPrintable(wrong.err));

        Run merge = cli(QStringList{"merge", m_sharded} + m_shards);
        QVERIFY2(merge.code == 0, qPrintable(merge.err));
        QVERIFY2(merge.out.contains("35 image(s) with results"), qPrintable(merge.out));

        auto a = openDb(m_single), b = openDb(m_sharded);
        auto runA = a.latestRun(), runB = b.latestRun();
        QVERIFY(runA.ok() && runA->has_value() && runB.ok() && runB->has_value());
        const store::RunRecord ra = **runA, rb = **runB;
        QCOMPARE(rb.status, std::string("done"));
        QCOMPARE(rb.imagesDone, int64_t(35));
        QCOMPARE(rb.topK, ra.topK);
        QCOMPARE(rb.dSae, ra.dSae);
        for (auto [idA, idB] : {std::pair{ra.vitId, rb.vitId}, std::pair{ra.saeId, rb.saeId}}) {
            auto ma = a.model(idA), mb = b.model(idB);
            QVERIFY(ma.ok() && mb.ok());
            QCOMPARE(ma->sha256, mb->sha256);
        }

        // Per image: concepts, token blobs, CLS embedding, reconstruction error.
        for (int64_t id = 1; id <= 35; ++id) {
            auto ca = a.conceptsOfImage(ra.id, id), cb = b.conceptsOfImage(rb.id, id);
            QVERIFY(ca.ok() && cb.ok());
            QCOMPARE(ca->size(), cb->size());
            QVERIFY(!ca->empty());
            for (size_t i = 0; i < ca->size(); ++i) {
                QCOMPARE((*ca)[i].latent, (*cb)[i].latent);
                QCOMPARE((*ca)[i].mean, (*cb)[i].mean);
                QCOMPARE((*ca)[i].maxPatch, (*cb)[i].maxPatch);
                QCOMPARE((*ca)[i].patchesAbove, (*cb)[i].patchesAbove);
            }
            auto ta = a.tokensOfImage(ra.id, id), tb = b.tokensOfImage(rb.id, id);
            QVERIFY(ta.ok() && tb.ok());
            QVERIFY2(sameTokens(*ta, *tb), qPrintable(QString("tokens of image %1").arg(id)));
            auto clsA = a.clsOfImage(ra.id, id), clsB = b.clsOfImage(rb.id, id);
            QVERIFY2(clsA.ok() && clsB.ok(), clsB.message().c_str());
            QCOMPARE(*clsA, *clsB);
            auto errA = a.reconError(ra.id, id), errB = b.reconError(rb.id, id);
            QVERIFY(errA.ok() && errB.ok());
            QCOMPARE(*errA, *errB);
        }
        // Per latent: statistics, top cells, quantile samples.
        auto sa = a.allConceptStats(ra.id), sb = b.allConceptStats(rb.id);
        QVERIFY(sa.ok() && sb.ok());
        QCOMPARE(int(sa->size()), ra.dSae);
        QCOMPARE(sa->size(), sb->size());
        int alive = 0;
        for (size_t l = 0; l < sa->size(); ++l) {
            const auto &x = (*sa)[l], &y = (*sb)[l];
            QCOMPARE(x.firingImages, y.firingImages);
            QCOMPARE(x.firingFrequency, y.firingFrequency);
            QCOMPARE(x.meanActivation, y.meanActivation);
            QCOMPARE(x.labelEntropy, y.labelEntropy);
            QCOMPARE(x.dead, y.dead);
            QCOMPARE(x.dense, y.dense);
            if (x.dead)
                continue;
            ++alive;
            const int32_t latent = x.latent;
            auto csA = a.conceptStats(ra.id, latent), csB = b.conceptStats(rb.id, latent);
            QVERIFY(csA.ok() && csB.ok() && csA->has_value() && csB->has_value());
            QCOMPARE((*csA)->topImages, (*csB)->topImages);
            auto ha = a.topCells(ra.id, latent, 10), hb = b.topCells(rb.id, latent, 10);
            QVERIFY(ha.ok() && hb.ok());
            QCOMPARE(ha->size(), hb->size());
            for (size_t i = 0; i < ha->size(); ++i) {
                QCOMPARE((*ha)[i].imageId, (*hb)[i].imageId);
                QCOMPARE((*ha)[i].mean, (*hb)[i].mean);
            }
            if (alive <= 20) {
                auto qa = a.quantileSample(ra.id, latent, 3, 2, 7), qb = b.quantileSample(rb.id, latent, 3, 2, 7);
                QVERIFY(qa.ok() && qb.ok());
                for (size_t g = 0; g < qa->size(); ++g)
                    for (size_t i = 0; i < (*qa)[g].size(); ++i)
                        QCOMPARE((*qa)[g][i].imageId, (*qb)[g][i].imageId);
            }
        }
        QVERIFY(alive > 10);
        // Per patient: fingerprints.
        auto patients = a.patients();
        QVERIFY(patients.ok());
        QCOMPARE(int(patients->size()), 5);
        for (const auto &p : *patients) {
            int64_t na = 0, nb = 0;
            auto fa = a.patientFingerprint(ra.id, p.id, &na), fb = b.patientFingerprint(rb.id, p.id, &nb);
            QVERIFY(fa.ok() && fb.ok());
            QCOMPARE(na, int64_t(7));
            QCOMPARE(nb, na);
            QCOMPARE(fa->size(), fb->size());
            for (size_t i = 0; i < fa->size(); ++i) {
                QCOMPARE((*fa)[i].latent, (*fb)[i].latent);
                QCOMPARE((*fa)[i].cells, (*fb)[i].cells);
            }
        }
        QCOMPARE(*b.db().queryText("PRAGMA integrity_check"), std::string("ok"));
    }

    void refusesMissingShards()
    {
        refused({m_shards[0], m_shards[1]}, {"3/3 not given", "have no results in any shard"});
    }

    void refusesDuplicateShards()
    {
        refused(m_shards + QStringList{m_shards[2]}, {"shard 3/3 is given twice", "in more than one shard"});
    }

    void refusesOtherModels()
    {
        // Shard 3 run with other files (the fixture ViT and SAE): hashes and width differ.
        const QString other = path("shard3-other.cyto");
        Run r = cli(runArgs(m_sharded, kFix + "tiny_dinobloom.pth",
                            kFix + "final_sparse_autoencoder_dinov2_vitb14_-2_resid_256.pt") +
                    QStringList{"--shard", "3/3", "--shard-db", other});
        QVERIFY2(r.code == 0, qPrintable(r.err));
        refused({m_shards[0], m_shards[1], other}, {"ViT sha256", "SAE sha256", "different ViT files"});
    }

    void refusesForeignFilesAndSecondMerge()
    {
        refused({m_shards[0], m_shards[1], m_single}, {"not a shard database", "3/3 not given"});
        // m_sharded already holds the merged run: merging again would store it twice.
        Run again = cli(QStringList{"merge", m_sharded} + m_shards);
        QCOMPARE(again.code, 1);
        QVERIFY2(again.err.contains("merging would store them twice"), qPrintable(again.err));
        QCOMPARE(countOf(m_sharded, "SELECT count(*) FROM run"), int64_t(1));
    }

    // An image that fails in its shard: the shard and the merge both exit 1, and the merge
    // says how many failed (the merged run still holds every other image).
    void failedImagesMakeTheMergeExitOne()
    {
        auto written = demo::writeDemoCohort(path("cohort-failing").toStdString(), demo::demoCohort(1, 2, 7), {});
        QVERIFY2(written.ok(), written.message().c_str());
        const QString project = path("failing.cyto");
        Run imp = cli({"import", project, path("cohort-failing/manifest.csv")});
        QVERIFY2(imp.code == 0, qPrintable(imp.err));
        // One imported cell disappears before the run.
        QFile manifest(path("cohort-failing/manifest.csv"));
        QVERIFY(manifest.open(QIODevice::ReadOnly));
        manifest.readLine();
        const QString gone = path("cohort-failing/" + QString::fromUtf8(manifest.readLine()).section(',', 0, 0));
        QVERIFY2(QFile::remove(gone), qPrintable(gone));
        QStringList shards;
        int shardFailures = 0;
        for (int i = 1; i <= 2; ++i) {
            shards << path(QStringLiteral("failing-shard%1.cyto").arg(i));
            Run r = cli(runArgs(project) + QStringList{"--shard", QStringLiteral("%1/2").arg(i), "--shard-db", shards.back()});
            shardFailures += r.code == 1;
            QVERIFY(r.code == 0 || r.code == 1);
        }
        QCOMPARE(shardFailures, 1);
        Run merged = cli(QStringList{"merge", project} + shards);
        QCOMPARE(merged.code, 1);
        QVERIFY2(merged.out.contains("9 image(s) with results, 1 failed"), qPrintable(merged.out));
        QVERIFY2(merged.err.contains("1 image(s) failed in the shards"), qPrintable(merged.err));
    }
};

QTEST_GUILESS_MAIN(TestShards)
#include "tst_shards.moc"
