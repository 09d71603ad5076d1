// The engine's device fallback, without a GPU: an injected fault seam makes the engine throw
// what a failing CUDA device throws (out of memory, an illegal memory access) on a CPU that it
// treats as "cuda:0 (simulated)". Out of memory halves the batch; anything else, or out of
// memory with one image, moves the run to the CPU; every step leaves a notice; the numbers
// are those of a plain CPU run. Also: `--device cuda` on this CPU-only build is refused
// with a message that says why.

#include "imaging/ImageDecoder.h"
#include "model/Engine.h"
#include "pipeline/Runner.h"
#include "store/ProjectDb.h"

#include <QFile>
#include <QProcess>
#include <QTemporaryDir>
#include <QtTest>

using namespace cytosae;
using Fault = model::Engine::InjectedFault;

namespace {
const QString kCli = QStringLiteral(CYTOSAE_BINARY_DIR "/app/cli/cytosae");
const QString kFix = QStringLiteral(CYTOSAE_TEST_DATA "/fixtures/");
const std::string kVit = (kFix + "tiny_dinobloom.pth").toStdString();
const std::string kSae = (kFix + "final_sparse_autoencoder_dinov2_vitb14_-2_resid_256.pt").toStdString();
const char *kImages[] = {"img0_rgb_224x224.png", "img1_rgb_144x120.png", "img2_rgba_288x288.png"};

std::unique_ptr<model::Engine> loadEngine()
{
    model::EngineParams p;
    p.vitPath = kVit;
    p.saePath = kSae;
    p.device = model::DeviceChoice::Cpu;
    p.threads = 1;
    p.topK = 8;
    auto e = model::Engine::load(p);
    if (!e)
        qFatal("%s", e.message().c_str());
    return std::move(e.value());
}

// Six preprocessed inputs (the three fixtures twice).
std::vector<float> inputs(int size, int &n)
{
    n = 6;
    const size_t per = size_t(3) * size_t(size) * size_t(size);
    std::vector<float> chw(per * size_t(n));
    for (int i = 0; i < n; ++i) {
        auto img = imaging::decodeImageFile((kFix + "images/" + kImages[i % 3]).toStdString());
        if (!img)
            qFatal("%s", img.message().c_str());
        model::preprocessToChw({img->image.pixels.data(), img->image.width, img->image.height}, size,
                               model::Normalization{}, chw.data() + size_t(i) * per);
    }
    return chw;
}

void compareResults(const std::vector<model::ImageActivations> &a, const std::vector<model::ImageActivations> &b)
{
    QCOMPARE(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
        QCOMPARE(a[i].topIds, b[i].topIds);
        QCOMPARE(a[i].latents.size(), b[i].latents.size());
        for (size_t j = 0; j < a[i].topValues.size(); ++j)
            QVERIFY(std::abs(a[i].topValues[j] - b[i].topValues[j]) <= 1e-5f);
        QVERIFY(std::abs(a[i].reconError - b[i].reconError) <= 1e-5f);
    }
}

bool anyContains(const std::vector<std::string> &notices, const std::string &text)
{
    for (const auto &n : notices)
        if (n.find(text) != std::string::npos)
            return true;
    return false;
}
} // namespace

class TestFallback : public QObject {
    Q_OBJECT

    std::vector<model::ImageActivations> m_reference; // plain CPU, one image per forward
    std::vector<float> m_chw;
    int m_n = 0, m_size = 0;

private slots:
    void initTestCase()
    {
        auto engine = loadEngine();
        m_size = engine->vit().imageSize;
        m_chw = inputs(m_size, m_n);
        const size_t per = size_t(3) * size_t(m_size) * size_t(m_size);
        for (int i = 0; i < m_n; ++i) {
            auto r = engine->runPreprocessed(m_chw.data() + size_t(i) * per, 1, m_size, m_size);
            QVERIFY2(r.ok(), r.message().c_str());
            m_reference.push_back(std::move((*r)[0]));
        }
        QVERIFY(engine->takeNotices().empty());
        QCOMPARE(engine->maxBatch(), 0);
    }

    void outOfMemoryHalvesTheBatchAndRemembers()
    {
        auto engine = loadEngine();
        std::vector<int> sizes;
        engine->injectFaultsForTesting(
            [&](int images, bool) {
                sizes.push_back(images);
                return images > 1 ? Fault::OutOfMemory : Fault::None;
            },
            false);
        auto r = engine->runPreprocessed(m_chw.data(), m_n, m_size, m_size);
        QVERIFY2(r.ok(), r.message().c_str());
        compareResults(*r, m_reference);
        QCOMPARE(sizes, (std::vector<int>{6, 3, 1, 1, 1, 1, 1, 1}));
        QCOMPARE(engine->maxBatch(), 1);
        const auto notices = engine->takeNotices();
        QCOMPARE(int(notices.size()), 2);
        QVERIFY2(anyContains(notices, "out of memory on cpu (1 threads) with 6 images per batch; continuing with 3"),
                 notices[0].c_str());
        QVERIFY(anyContains(notices, "with 3 images per batch; continuing with 1"));
        // The next call starts at the reduced size: no new failure, no new notice.
        sizes.clear();
        QVERIFY(engine->runPreprocessed(m_chw.data(), 2, m_size, m_size).ok());
        QCOMPARE(sizes, (std::vector<int>{1, 1}));
        QVERIFY(engine->takeNotices().empty());
        QVERIFY(engine->deviceName().rfind("cpu", 0) == 0);
    }

    void cudaFailureMovesToTheCpu()
    {
        auto engine = loadEngine();
        std::vector<bool> onAccelerator;
        engine->injectFaultsForTesting(
            [&](int, bool accel) {
                onAccelerator.push_back(accel);
                return accel ? Fault::DeviceFailure : Fault::None;
            },
            true);
        QCOMPARE(engine->deviceName(), std::string("cuda:0 (simulated)"));
        auto r = engine->runPreprocessed(m_chw.data(), 1, m_size, m_size);
        QVERIFY2(r.ok(), r.message().c_str());
        compareResults(*r, {m_reference[0]});
        QCOMPARE(onAccelerator, (std::vector<bool>{true, false}));
        QVERIFY(engine->deviceName().rfind("cpu", 0) == 0);
        const auto notices = engine->takeNotices();
        QCOMPARE(int(notices.size()), 1);
        QVERIFY2(anyContains(notices, "CUDA failed on cuda:0 (simulated) (CUDA error: an illegal memory access"),
                 notices[0].c_str());
        QVERIFY(anyContains(notices, "continuing on the CPU"));
    }

    void outOfMemoryWithOneImageMovesToTheCpu()
    {
        auto engine = loadEngine();
        std::vector<int> sizes;
        engine->injectFaultsForTesting(
            [&](int images, bool accel) {
                sizes.push_back(accel ? images : -images);
                return accel ? Fault::OutOfMemory : Fault::None;
            },
            true);
        auto r = engine->runPreprocessed(m_chw.data(), 2, m_size, m_size);
        QVERIFY2(r.ok(), r.message().c_str());
        auto plain = loadEngine()->runPreprocessed(m_chw.data(), 2, m_size, m_size); // same batch on the CPU
        QVERIFY(plain.ok());
        compareResults(*r, *plain);
        // 2 on the GPU, 1 on the GPU, then the CPU with no batch limit.
        QCOMPARE(sizes, (std::vector<int>{2, 1, -2}));
        QCOMPARE(engine->maxBatch(), 0);
        const auto notices = engine->takeNotices();
        QCOMPARE(int(notices.size()), 2);
        QVERIFY(anyContains(notices, "out of memory on cuda:0 (simulated) with 2 images per batch; continuing with 1"));
        QVERIFY(anyContains(notices, "CUDA failed on cuda:0 (simulated) (CUDA out of memory"));
    }

    void failureOnTheCpuIsAnErrorNotALoop()
    {
        auto engine = loadEngine();
        int calls = 0;
        engine->injectFaultsForTesting(
            [&](int, bool) {
                ++calls;
                return Fault::DeviceFailure;
            },
            false);
        auto r = engine->runPreprocessed(m_chw.data(), 2, m_size, m_size);
        QVERIFY(!r.ok());
        QVERIFY2(r.message().find("inference failed: CUDA error") != std::string::npos, r.message().c_str());
        QCOMPARE(calls, 1);
        // Out of memory with a single image on the CPU: nothing smaller to try.
        engine->injectFaultsForTesting([](int, bool) { return Fault::OutOfMemory; }, false);
        auto oom = engine->runPreprocessed(m_chw.data(), 1, m_size, m_size);
        QVERIFY(!oom.ok());
        QVERIFY(oom.message().find("out of memory") != std::string::npos);
    }

    void runnerRecordsTheDeviceItEndedOn()
    {
        QTemporaryDir dir;
        const QString project = dir.filePath("p.cyto");
        {
            auto db = store::ProjectDb::open(project.toStdString(), store::ProjectDb::OpenMode::Create);
            QVERIFY(db.ok());
            std::vector<store::NewImage> images;
            for (const char *name : kImages) {
                store::NewImage img;
                img.path = (kFix + "images/" + name).toStdString();
                img.sha256 = name;
                images.push_back(img);
            }
            QVERIFY(db->addImages(images).ok());
        }
        std::shared_ptr<model::Engine> engine = loadEngine();
        int forwards = 0;
        engine->injectFaultsForTesting(
            [&](int, bool accel) { return accel && ++forwards == 2 ? Fault::DeviceFailure : Fault::None; }, true);
        pipeline::RunOptions o;
        o.engine.vitPath = kVit;
        o.engine.saePath = kSae;
        o.loadedEngine = engine;
        o.batchSize = 1;
        std::vector<std::string> told;
        o.notice = [&](const std::string &n) { told.push_back(n); };
        std::vector<std::string> details;
        auto report =
            pipeline::runProject(project.toStdString(), o, [&](const ProgressInfo &p) { details.push_back(p.detail); });
        QVERIFY2(report.ok(), report.message().c_str());
        QCOMPARE(report->processed, int64_t(3));
        QCOMPARE(report->failed, int64_t(0));
        QCOMPARE(int(told.size()), 1);
        QCOMPARE(report->notices, told);
        QVERIFY(told[0].find("continuing on the CPU") != std::string::npos);
        QVERIFY(report->device.rfind("cpu", 0) == 0);
        QCOMPARE(details.front(), std::string("on cuda:0 (simulated)"));
        QVERIFY(std::find(details.begin(), details.end(), "on " + report->device + " (after a CUDA failure)") !=
                details.end());
        auto db = store::ProjectDb::open(project.toStdString(), store::ProjectDb::OpenMode::ReadOnly);
        QCOMPARE(db->run(report->runId)->device, report->device);
    }

    void cudaOnACpuOnlyBuildIsRefusedClearly()
    {
        model::EngineParams p;
        p.vitPath = kVit;
        p.saePath = kSae;
        p.device = model::DeviceChoice::Cuda;
        auto e = model::Engine::load(p);
        if (e.ok())
            QSKIP("this LibTorch has a usable CUDA device");
        QVERIFY2(e.message().find("CUDA was requested (--device cuda)") != std::string::npos, e.message().c_str());
        QVERIFY(e.message().find("CPU-only LibTorch") != std::string::npos);

        QProcess cli;
        cli.start(kCli, {"embed", "--device", "cuda", "--vit", QString::fromStdString(kVit), "--sae",
                         QString::fromStdString(kSae), kFix + "images/img0_rgb_224x224.png"});
        QVERIFY(cli.waitForFinished(600000));
        QCOMPARE(cli.exitCode(), 1);
        QVERIFY(cli.readAllStandardError().contains("use --device auto or cpu"));
        // auto: the CPU, and the device is printed.
        cli.start(kCli, {"embed", "--device", "auto", "--vit", QString::fromStdString(kVit), "--sae",
                         QString::fromStdString(kSae), kFix + "images/img0_rgb_224x224.png"});
        QVERIFY(cli.waitForFinished(600000));
        QCOMPARE(cli.exitCode(), 0);
        QVERIFY(cli.readAllStandardOutput().contains("on cpu ("));
        cli.start(kCli, {"--version"});
        QVERIFY(cli.waitForFinished(600000));
        QVERIFY(cli.readAllStandardOutput().contains("CPU only"));
    }
};

QTEST_GUILESS_MAIN(TestFallback)
#include "tst_fallback.moc"
