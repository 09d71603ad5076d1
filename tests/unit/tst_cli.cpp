// The `cytosae` command line as a user runs it: a real process, real files, bad input mixed
// with good. Checks exit codes, that every failure names its file, and the exported files.

#include "io/NpyWriter.h"
#include "../common/DamagedFiles.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <cstring>

#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QTemporaryDir>
#include <QtTest>

namespace {
const QString kCli = QStringLiteral(CYTOSAE_BINARY_DIR "/app/cli/cytosae");
const QString kFix = QStringLiteral(CYTOSAE_TEST_DATA "/fixtures/");
const QString kVit = kFix + "tiny_dinobloom.pth";
const QString kSae = kFix + "final_sparse_autoencoder_dinov2_vitb14_-2_resid_256.pt";

struct Run {
    int code = -1;
    QString out, err;
};

// A command that takes a few seconds idle can take minutes on a busy machine: the limit only
// catches a hang.
Run runCli(const QStringList &args)
{
    QProcess p;
    p.start(kCli, args);
    if (!p.waitForFinished(900000))
        qFatal("cytosae %s did not finish within 15 minutes", qPrintable(args.join(' ')));
    return {p.exitCode(), QString::fromUtf8(p.readAllStandardOutput()), QString::fromUtf8(p.readAllStandardError())};
}

} // namespace

class TestCli : public QObject {
    Q_OBJECT

private slots:
    void versionAndHelp()
    {
        Run v = runCli({"--version"});
        QCOMPARE(v.code, 0);
        QVERIFY(v.out.startsWith("cytosae "));
        Run h = runCli({"embed", "--help"});
        QCOMPARE(h.code, 0);
        QVERIFY(h.out.contains("--npy DIR"));
        // Every option a command accepts is in its --help.
        Run demoHelp = runCli({"demo", "--help"});
        QCOMPARE(demoHelp.code, 0);
        for (const char *option : {"--patients-per-group", "--cells", "--vit", "--sae", "--seed", "--threads"})
            QVERIFY2(demoHelp.out.contains(option), option);
        Run bad = runCli({"embed", "--frobnicate"});
        QCOMPARE(bad.code, 2);
        QVERIFY(bad.err.contains("unknown option --frobnicate"));
        Run top = runCli({"embed", "--top", "zero", "--vit", kVit, "--sae", kSae, "x.png"});
        QCOMPARE(top.code, 2);
        QVERIFY(top.err.contains("--top"));
        // Decimal options: out of range, not a number or not finite stops with a usage error
        // that names the option and its range, before any work is done.
        const QList<QPair<QStringList, QString>> decimals = {
            {{"train-sae", "p.cyto", "--vit", "v.pth", "--out", "o.pt", "--lr", "0"}, "option --lr needs a number > 0, got '0'"},
            {{"train-sae", "p.cyto", "--vit", "v.pth", "--out", "o.pt", "--l1", "-1"}, "option --l1 needs a number >= 0"},
            {{"train-vit", "p.cyto", "--out", "o.pth", "--lr", "1e-3x"}, "option --lr needs a number > 0, got '1e-3x'"},
            {{"build-demo-models", "--part-balance", "nan"}, "option --part-balance needs a number >= 0"},
            {{"analyze", "p.cyto", "classify", "--alpha", "1"}, "option --alpha needs a number > 0 and < 1, got '1'"},
            {{"analyze", "p.cyto", "classify", "--l1-ratio", "0"}, "option --l1-ratio needs a number > 0 and <= 1"},
            {{"analyze", "p.cyto", "classify", "--threshold", "-0.1"}, "option --threshold needs a number >= 0"}};
        for (const auto &[args, message] : decimals) {
            Run r = runCli(args);
            QCOMPARE(r.code, 2);
            QVERIFY2(r.err.contains(message), qPrintable(args.join(' ') + ": " + r.err));
        }
    }

    void badImagesAreReportedAndTheRestIsDone()
    {
        QTemporaryDir dir;
        const QString good = kFix + "images/img1_rgb_144x120.png";
        const QString grey = dir.filePath("grey.png"), rgba = dir.filePath("rgba.png"), deep = dir.filePath("deep.png");
        const QString tiny = dir.filePath("tiny.png"), corrupt = dir.filePath("corrupt.jpg"), empty = dir.filePath("empty.tif");
        cv::Mat g(40, 50, CV_8UC1, cv::Scalar(90));
        QVERIFY(cv::imwrite(grey.toStdString(), g));
        cv::Mat a(40, 40, CV_8UC4, cv::Scalar(10, 20, 30, 0));
        QVERIFY(cv::imwrite(rgba.toStdString(), a));
        cv::Mat d(30, 30, CV_16UC3, cv::Scalar(1000, 30000, 65535));
        QVERIFY(cv::imwrite(deep.toStdString(), d));
        cv::Mat t(1, 1, CV_8UC3, cv::Scalar(1, 2, 3));
        QVERIFY(cv::imwrite(tiny.toStdString(), t));
        QFile c(corrupt);
        QVERIFY(c.open(QIODevice::WriteOnly));
        c.write("\xff\xd8\xff\xe0 definitely not a jpeg");
        c.close();
        QFile e(empty);
        QVERIFY(e.open(QIODevice::WriteOnly));
        e.close();

        const QString json = dir.filePath("out.json");
        Run r = runCli({"embed", "--vit", kVit, "--sae", kSae, "--top", "4", "--json", json, "--npy", dir.filePath("npy"),
                        "--batch", "2", "--cls", good, grey, tiny, rgba, corrupt, deep, empty});
        QCOMPARE(r.code, 1); // some inputs failed
        QVERIFY2(r.err.contains(tiny + ": image is 1x1 pixels"), qPrintable(r.err));
        QVERIFY2(r.err.contains(corrupt + ": "), qPrintable(r.err));
        QVERIFY2(r.err.contains(empty + ": file is empty"), qPrintable(r.err));
        QVERIFY2(r.err.contains(rgba + ": alpha channel dropped"), qPrintable(r.err));
        QVERIFY2(r.err.contains(deep + ": 16-bit"), qPrintable(r.err));

        QFile f(json);
        QVERIFY(f.open(QIODevice::ReadOnly));
        const QJsonObject doc = QJsonDocument::fromJson(f.readAll()).object();
        const QJsonArray images = doc["images"].toArray();
        QCOMPARE(images.size(), 4); // good, grey, rgba, deep
        QCOMPARE(doc["errors"].toArray().size(), 3);
        const QJsonObject first = images[0].toObject();
        QCOMPARE(first["path"].toString(), good);
        QCOMPARE(first["tokens"].toArray().size(), 257);
        QVERIFY(first["tokens"].toArray()[5].toArray().size() <= 4);
        QCOMPARE(first["concepts"].toArray().size(), 4);
        QCOMPARE(first["cls_embedding"].toArray().size(), 32);
        // --precision auto: the run says what it settled on and why.
        QVERIFY2(doc["precision"].toString() == "fp32" || doc["precision"].toString() == "bf16",
                 qPrintable(doc["precision"].toString()));
        QVERIFY(doc["precision_reason"].toString().startsWith("auto: " + doc["precision"].toString()) ||
                doc["precision_reason"].toString().startsWith("auto: fp32, because"));
        // Without --cls the blocks after the SAE's are not run and no embedding is written.
        const QString json2 = dir.filePath("out2.json");
        Run plain = runCli({"embed", "--vit", kVit, "--sae", kSae, "--json", json2, "--precision", "fp32", good});
        QCOMPARE(plain.code, 0);
        QFile f2(json2);
        QVERIFY(f2.open(QIODevice::ReadOnly));
        const QJsonObject doc2 = QJsonDocument::fromJson(f2.readAll()).object();
        QCOMPARE(doc2["precision"].toString(), QString("fp32"));
        QVERIFY(!doc2["images"].toArray()[0].toObject().contains("cls_embedding"));
        Run bad = runCli({"embed", "--vit", kVit, "--sae", kSae, "--precision", "fp16", good});
        QCOMPARE(bad.code, 2);
        QVERIFY2(bad.err.contains("--precision must be fp32, bf16 or auto, got 'fp16'"), qPrintable(bad.err));
        // Concepts are sorted by image-level mean, strongest first.
        const QJsonArray concepts = first["concepts"].toArray();
        for (int i = 1; i < concepts.size(); ++i)
            QVERIFY(concepts[i - 1].toObject()["mean"].toDouble() >= concepts[i].toObject()["mean"].toDouble());

        // The .npy exports are standard NumPy arrays of the right shapes.
        auto latents = cytosae::io::readNpy(dir.filePath("npy/000_img1_rgb_144x120_sae_latents.npy").toStdString());
        QVERIFY2(latents.ok(), latents.message().c_str());
        QCOMPARE(latents->descr, std::string("<f4"));
        QCOMPARE(latents->shape, (std::vector<int64_t>{257, 256}));
        auto input = cytosae::io::readNpy(dir.filePath("npy/000_img1_rgb_144x120_input.npy").toStdString());
        QVERIFY(input.ok());
        QCOMPARE(input->shape, (std::vector<int64_t>{3, 224, 224}));
        // They hold the reference numbers: compare the input with the golden preprocessed image.
        QFile ref(kFix + "ref/input_pixels.bin");
        QVERIFY(ref.open(QIODevice::ReadOnly));
        const QByteArray all = ref.readAll();
        const QByteArray img1 = all.mid(3 * 224 * 224 * 4, 3 * 224 * 224 * 4);
        QCOMPARE(QByteArray(input->bytes.data(), int(input->bytes.size())), img1);
        // An fp32 export holds the reference's residual, dense latents and reconstruction
        // (image 1 of the golden batch), value by value.
        Run exact = runCli({"embed", "--vit", kVit, "--sae", kSae, "--precision", "fp32", "--npy",
                            dir.filePath("npy32"), good});
        QCOMPARE(exact.code, 0);
        const QList<QPair<QString, QPair<QString, int>>> arrays = {{"resid", {"resid_block_m2.bin", 257 * 32}},
                                                                   {"sae_latents", {"sae_latents.bin", 257 * 256}},
                                                                   {"sae_recon", {"sae_recon.bin", 257 * 32}}};
        for (const auto &[name, golden] : arrays) {
            auto npy = cytosae::io::readNpy(dir.filePath("npy32/000_img1_rgb_144x120_" + name + ".npy").toStdString());
            QVERIFY2(npy.ok(), qPrintable(name));
            QCOMPARE(int(npy->bytes.size()), golden.second * 4);
            QFile goldenFile(kFix + "ref/" + golden.first);
            QVERIFY(goldenFile.open(QIODevice::ReadOnly));
            const QByteArray ref = goldenFile.readAll().mid(golden.second * 4, golden.second * 4); // image 1
            QCOMPARE(ref.size(), golden.second * 4);
            std::vector<float> got(size_t(golden.second)), want(size_t(golden.second));
            std::memcpy(got.data(), npy->bytes.data(), got.size() * 4);
            std::memcpy(want.data(), ref.constData(), want.size() * 4);
            double worst = 0;
            for (size_t i = 0; i < got.size(); ++i)
                worst = std::max(worst, double(std::abs(got[i] - want[i])) / std::max(1.0, double(std::abs(want[i]))));
            QVERIFY2(worst < 1e-4, qPrintable(name + ": " + QString::number(worst)));
        }
    }

    // The README's main job, small: generate the demo cohort, run it through the bundled
    // demo model, then query the project from the command line.
    void demoProjectEndToEnd()
    {
        QTemporaryDir dir;
        Run r = runCli({"demo", dir.filePath("demo"), "--patients-per-group", "1", "--cells", "6"});
        QVERIFY2(r.code == 0, qPrintable(r.out + r.err));
        QVERIFY(r.out.contains("demo project ready"));
        const QString project = dir.filePath("demo/demo.cyto");
        Run stats = runCli({"stats", project});
        QCOMPARE(stats.code, 0);
        QVERIFY2(stats.out.contains("30 accepted"), qPrintable(stats.out));
        QVERIFY(stats.out.contains("patients: 5"));
        QVERIFY(stats.out.contains("30 images with results"));
        QVERIFY2(stats.out.contains(" in fp32, top-k"), qPrintable(stats.out)); // the demo runs in fp32
        Run top = runCli({"top", project, "--latent", "1", "--n", "3", "--diagnosis", "APL"});
        QCOMPARE(top.code, 0);
        QVERIFY(top.out.contains("APL01") || top.out.split('\n').size() <= 2); // only APL cells, if any carry it
        QVERIFY(!top.out.contains("CTL01"));
        const QString csv = dir.filePath("stats.csv");
        Run exp = runCli({"export", project, "--what", "latent-stats", "--out", csv});
        QCOMPARE(exp.code, 0);
        QFile f(csv);
        QVERIFY(f.open(QIODevice::ReadOnly));
        QCOMPARE(f.readLine().trimmed(),
                 QByteArray("latent,firing_images,firing_freq,mean_activation,label_entropy,top_images,dead,dense,high_mean"));
        int rows = 0;
        while (!f.atEnd())
            rows += !f.readLine().trimmed().isEmpty();
        QCOMPARE(rows, 768); // one per latent of the demo SAE
        // The label ledger from the command line: set, list, flag, export, import elsewhere.
        Run set = runCli({"labels", "set", project, "--latent", "5", "--label", "Auer rod", "--status", "validated",
                          "--author", "cli-test"});
        QVERIFY2(set.code == 0, qPrintable(set.err));
        Run list = runCli({"labels", "list", project});
        QCOMPARE(list.code, 0);
        QVERIFY(list.out.contains("latent:5") && list.out.contains("Auer rod") && list.out.contains("validated"));
        QVERIFY(!list.out.contains("free text")); // a vocabulary term
        QCOMPARE(runCli({"labels", "flag", project, "--latent", "5", "--threshold", "0.5", "--author", "cli-test"}).code, 0);
        QCOMPARE(runCli({"labels", "set", project, "--latent", "99999", "--label", "x"}).code, 2);
        QCOMPARE(runCli({"labels", "set", project, "--latent", "5", "--label", "x", "--status", "approved", "--author",
                         "a"}).code, 1);
        const QString exported = dir.filePath("labels.json");
        QCOMPARE(runCli({"labels", "export", project, exported}).code, 0);
        Run imported = runCli({"labels", "import", project, exported});
        QCOMPARE(imported.code, 0);
        QVERIFY2(imported.out.contains("added 0 entries, 2 already present"), qPrintable(imported.out));
        Run history = runCli({"labels", "list", project, "--history"});
        QCOMPARE(history.out.count("latent:5"), 1); // the refused entry was not written
        // Running the demo again reuses the cohort and the finished run.
        Run again = runCli({"demo", dir.filePath("demo"), "--patients-per-group", "1", "--cells", "6"});
        QCOMPARE(again.code, 0);
        QVERIFY(again.out.contains("30 already there"));
    }

    void buildDemoModelsWeighsCellTypesAndGuardsItsWorkFolder()
    {
        QTemporaryDir dir;
        const QString work = dir.filePath("work"), out = dir.filePath("model");
        Run bad = runCli({"build-demo-models", "--out", out, "--mix", "frobnicyte=2"});
        QCOMPARE(bad.code, 2);
        QVERIFY2(bad.err.contains("--mix") && bad.err.contains("frobnicyte=2"), qPrintable(bad.err));
        QCOMPARE(runCli({"build-demo-models", "--out", out, "--mix", "basophil=-1"}).code, 2);
        QCOMPARE(runCli({"build-demo-models", "--out", out, "--mix", "basophil"}).code, 2);

        const QStringList tiny = {"build-demo-models", "--out", out, "--work", work, "--images", "60", "--vit-epochs",
                                  "1", "--sae-steps", "10", "--expansion", "2"};
        Run r = runCli(tiny + QStringList{"--mix", "atypical_promyelocyte=3,basophil=0"});
        QVERIFY2(r.code == 0, qPrintable(r.out + r.err));
        // The generated cohort follows the weights: no basophils, atypical promyelocytes well
        // above a balanced cohort's 6 in 60.
        QFile manifest(work + "/cells/manifest.csv");
        QVERIFY(manifest.open(QIODevice::ReadOnly));
        const QByteArray rows = manifest.readAll();
        QVERIFY(!rows.contains("basophil"));
        QVERIFY2(rows.count("atypical_promyelocyte") > 10, rows.constData());
        QFile card(out + "/model_card.json");
        QVERIFY(card.open(QIODevice::ReadOnly));
        const QJsonObject json = QJsonDocument::fromJson(card.readAll()).object();
        QCOMPARE(json["training_data"].toObject()["generator"].toString(),
                 QString("core/demo (seed 1001, cell-type weights basophil=0,atypical_promyelocyte=3)"));
        QVERIFY2(json["rebuild"].toString().endsWith("--mix basophil=0,atypical_promyelocyte=3"),
                 qPrintable(json["rebuild"].toString()));
        // The same work folder with other cohort options is refused, not silently reused.
        Run other = runCli(tiny);
        QCOMPARE(other.code, 1);
        QVERIFY2(other.err.contains(work) && other.err.contains("other options"), qPrintable(other.err));
    }

    // Exit status 1 whenever something failed; a damaged project is refused by every command,
    // never changed, and `check` says what is damaged.
    void exitStatusAndDamagedProjects()
    {
        QTemporaryDir dir;
        const QString images = dir.filePath("cells"), project = dir.filePath("p.cyto");
        QVERIFY(QDir().mkpath(images + "/blast"));
        for (int i = 0; i < 3; ++i) {
            cv::Mat m(120, 144, CV_8UC3, cv::Scalar(40 * i, 120, 200));
            cv::circle(m, {72, 60}, 30, cv::Scalar(120, 40, 90), -1);
            QVERIFY(cv::imwrite(images.toStdString() + "/blast/c" + std::to_string(i) + ".png", m));
        }
        QFile bad(images + "/blast/broken.png");
        QVERIFY(bad.open(QIODevice::WriteOnly));
        bad.write("\x89PNG\r\n\x1a\n not really");
        bad.close();
        Run imported = runCli({"import", project, images});
        QCOMPARE(imported.code, 1); // one file rejected
        QVERIFY2(imported.err.contains("broken.png"), qPrintable(imported.err));
        QVERIFY2(imported.out.contains("3 added") && imported.out.contains("1 rejected"), qPrintable(imported.out));
        QVERIFY(QFile::remove(images + "/blast/broken.png"));
        Run clean = runCli({"import", project, images}); // nothing failed this time
        QCOMPARE(clean.code, 0);
        Run run = runCli({"run", project, "--vit", kVit, "--sae", kSae, "--precision", "fp32"});
        QVERIFY2(run.code == 0, qPrintable(run.err));
        Run stats = runCli({"stats", project});
        QCOMPARE(stats.code, 0);
        Run intact = runCli({"check", project});
        QCOMPARE(intact.code, 0);
        QVERIFY2(intact.out.contains("intact"), qPrintable(intact.out));

        // Overwrite the image table's root page, as a failing disk would. The CLI closed the
        // project, so its WAL is merged into the file.
        QVERIFY(!QFile::exists(project + "-wal") || QFileInfo(project + "-wal").size() == 0);
        const QString overwritten = overwriteRootPage(project, "image", '\xab');
        QVERIFY2(overwritten.isEmpty(), qPrintable(overwritten));
        const QByteArray damaged = fileBytes(project);
        Run badStats = runCli({"stats", project});
        QCOMPARE(badStats.code, 1);
        QVERIFY2(badStats.err.contains("damaged") && badStats.err.contains("cytosae check"), qPrintable(badStats.err));
        QVERIFY2(!badStats.out.contains("-1"), qPrintable(badStats.out)); // never a made-up count
        Run badRun = runCli({"run", project, "--vit", kVit, "--sae", kSae, "--precision", "fp32"});
        QCOMPARE(badRun.code, 1);
        QVERIFY2(badRun.err.contains("damaged"), qPrintable(badRun.err));
        Run badImport = runCli({"import", project, images});
        QCOMPARE(badImport.code, 1);
        Run badLabel = runCli({"labels", "set", project, "--latent", "1", "--label", "nucleus", "--author", "t"});
        QCOMPARE(badLabel.code, 1);
        Run badTop = runCli({"top", project, "--latent", "1"});
        QCOMPARE(badTop.code, 1);
        QVERIFY(fileBytes(project) == damaged); // nothing was written
        Run check = runCli({"check", project});
        QCOMPARE(check.code, 1);
        QVERIFY2(check.out.contains("DAMAGED") && check.out.contains("image") && check.out.contains("imported images"),
                 qPrintable(check.out));
        QVERIFY(fileBytes(project) == damaged);
        QCOMPARE(runCli({"check"}).code, 2);
        QCOMPARE(runCli({"check", dir.filePath("none.cyto")}).code, 1);
    }

    void wrongCheckpointFailsWithItsName()
    {
        Run r = runCli({"embed", "--vit", kSae, "--sae", kSae, kFix + "images/img0_rgb_224x224.png"});
        QCOMPARE(r.code, 1);
        QVERIFY2(r.err.contains(kSae + ": not a"), qPrintable(r.err));
        Run swapped = runCli({"embed", "--vit", kVit, "--sae", kVit, kFix + "images/img0_rgb_224x224.png"});
        QCOMPARE(swapped.code, 1);
        QVERIFY2(swapped.err.contains("W_enc"), qPrintable(swapped.err));
    }
};

QTEST_GUILESS_MAIN(TestCli)
#include "tst_cli.moc"
