// The engine's fast paths against its reference computation (issue 17): the sparse SAE stage
// and sparse decode against dense products, the bf16 path's exactness where it promises it,
// the device-generic (CUDA) code path against the CPU kernels, Precision::Auto, the CLS
// blocks only when asked, and the adaptive thread count beside busy processes.

#include "../common/BusyProcesses.h"
#include "common/CpuShare.h"
#include "demo/SyntheticCells.h"
#include "model/Engine.h"
#include "model/VitModel.h"

#include <torch/torch.h>

#include <QtTest>

#include <thread>

using namespace cytosae;
using namespace cytosae::model;

namespace {

std::string demoModel(const char *name)
{
    return std::string(CYTOSAE_TEST_DATA "/../../models/demo/") + name;
}

std::string fixture(const char *name)
{
    return std::string(CYTOSAE_TEST_DATA "/fixtures/") + name;
}

// Synthetic cells of every type (the demo model's domain).
struct Cells {
    std::vector<demo::SyntheticCell> cells;
    std::vector<RgbView> views;
    explicit Cells(int n, uint64_t seed)
    {
        for (int i = 0; i < n; ++i)
            cells.push_back(demo::generateCell(demo::CellType(i % demo::kCellTypeCount), demo::mixSeed(seed, uint64_t(i))));
        for (const auto &c : cells)
            views.push_back({c.rgb.data(), c.width, c.height});
    }
};

EngineParams demoParams(Precision precision)
{
    EngineParams p;
    p.vitPath = demoModel("demo_vit.pth");
    p.saePath = demoModel("demo_sae.pt");
    p.device = DeviceChoice::Cpu;
    p.topK = 32;
    p.keepDense = true;
    p.precision = precision;
    return p;
}

double relDiff(double a, double b)
{
    return std::abs(a - b) / std::max(1e-12, std::max(std::abs(a), std::abs(b)));
}

// The same latents with the same values (relative 1e-5), counts above the threshold within
// `maxCountDifference`, the same top-k values and reconstruction error.
void verifySameActivations(const ImageActivations &x, const ImageActivations &y, int maxCountDifference)
{
    QCOMPARE(x.latents.size(), y.latents.size());
    for (size_t j = 0; j < x.latents.size(); ++j) {
        QCOMPARE(x.latents[j].latent, y.latents[j].latent);
        QVERIFY(std::abs(x.latents[j].mean - y.latents[j].mean) <= 1e-5f * (1 + x.latents[j].mean));
        QVERIFY(std::abs(x.latents[j].maxPatch - y.latents[j].maxPatch) <= 1e-5f * (1 + x.latents[j].maxPatch));
        QVERIFY(std::abs(x.latents[j].patchesAbove - y.latents[j].patchesAbove) <= maxCountDifference);
    }
    for (size_t j = 0; j < x.topValues.size(); ++j)
        QVERIFY(std::abs(x.topValues[j] - y.topValues[j]) <= 1e-5f * (1 + x.topValues[j]));
    QVERIFY(relDiff(x.reconError, y.reconError) < 1e-5);
}

// relu((resid - b_dec) W_enc + b_enc) and its reconstruction error, in fp32 from the file's weights.
struct DenseSae {
    at::Tensor latents; // [tokens, d_sae]
    double reconError = 0;
};

DenseSae denseSae(const SaeModel &sae, const std::vector<float> &residual, int tokens)
{
    c10::InferenceMode guard;
    const int64_t dIn = sae.info().dIn;
    at::Tensor x = torch::from_blob(const_cast<float *>(residual.data()), {tokens, dIn}, torch::kFloat).clone();
    DenseSae d;
    d.latents = torch::relu(torch::addmm(sae.bEnc(), x - sae.bDec(), sae.wEnc()));
    at::Tensor recon = torch::addmm(sae.bDec(), d.latents, sae.wDec());
    d.reconError = ((recon - x).pow(2).sum() / x.pow(2).sum()).item<double>();
    return d;
}

} // namespace

class TestEngine : public QObject {
    Q_OBJECT

private slots:
    // The CPU path decodes each token's active latents only; the error equals the dense one.
    void sparseDecodeEqualsDense()
    {
        auto engine = Engine::load(demoParams(Precision::Fp32));
        QVERIFY2(engine.ok(), engine.message().c_str());
        auto sae = SaeModel::load(demoModel("demo_sae.pt"));
        QVERIFY(sae.ok());
        Cells cells(6, 11);
        auto result = (*engine)->run(cells.views);
        QVERIFY2(result.ok(), result.message().c_str());
        double density = 0;
        for (const ImageActivations &a : *result) {
            const DenseSae d = denseSae(*sae, a.residual, a.numTokens);
            QVERIFY2(relDiff(a.reconError, d.reconError) < 1e-5,
                     qPrintable(QString("recon error %1 sparse, %2 dense").arg(a.reconError).arg(d.reconError)));
            at::Tensor mine = torch::from_blob(const_cast<float *>(a.denseLatents.data()),
                                               {a.numTokens, sae->info().dSae}, torch::kFloat);
            QVERIFY((mine - d.latents).abs().max().item<double>() < 1e-5);
            density += (d.latents > 0).to(torch::kFloat).mean().item<double>();
        }
        // The demo SAE is sparse enough for the gather path (not the dense fallback).
        QVERIFY2(density / double(result->size()) < 1.0 / 32, qPrintable(QString::number(density)));
    }

    // bf16: the ViT's products in bf16, but every SAE value is fp32-exact for the residual the
    // bf16 ViT produced: the screening misses no active latent.
    void bf16SaeValuesAreExactForItsResidual()
    {
        for (const auto &[vit, saeFile] : {std::pair{demoModel("demo_vit.pth"), demoModel("demo_sae.pt")},
                                           std::pair{fixture("tiny_dinobloom.pth"),
                                                     fixture("final_sparse_autoencoder_dinov2_vitb14_-2_resid_256.pt")}}) {
            EngineParams p = demoParams(Precision::Bf16);
            p.vitPath = vit;
            p.saePath = saeFile;
            p.saeChunk = 100; // several chunks, one partial
            auto engine = Engine::load(p);
            QVERIFY2(engine.ok(), engine.message().c_str());
            QCOMPARE((*engine)->precision(), Precision::Bf16);
            auto sae = SaeModel::load(saeFile);
            QVERIFY(sae.ok());
            Cells cells(4, 12);
            auto result = (*engine)->run(cells.views);
            QVERIFY2(result.ok(), result.message().c_str());
            for (const ImageActivations &a : *result) {
                const DenseSae d = denseSae(*sae, a.residual, a.numTokens);
                at::Tensor mine = torch::from_blob(const_cast<float *>(a.denseLatents.data()),
                                                   {a.numTokens, sae->info().dSae}, torch::kFloat);
                const double worst = (mine - d.latents).abs().max().item<double>();
                QVERIFY2(worst < 1e-4, qPrintable(QString("largest difference %1 (%2)").arg(worst).arg(saeFile.c_str())));
                QCOMPARE((mine > 0).sum().item<int64_t>(), (d.latents > 0).sum().item<int64_t>());
                QVERIFY(relDiff(a.reconError, d.reconError) < 1e-4);
            }
        }
    }

    // The device-generic code path (what runs on CUDA) gives what the CPU kernels give.
    void genericPathMatchesCpuPath()
    {
        for (Precision precision : {Precision::Fp32, Precision::Bf16}) {
            EngineParams p = demoParams(precision);
            p.saeChunk = 200;
            auto cpu = Engine::load(p);
            auto generic = Engine::load(p);
            QVERIFY(cpu.ok() && generic.ok());
            (*generic)->useGenericPathForTesting(true);
            Cells cells(5, 13);
            auto a = (*cpu)->run(cells.views);
            auto b = (*generic)->run(cells.views);
            QVERIFY(a.ok() && b.ok());
            for (size_t i = 0; i < a->size(); ++i) {
                const ImageActivations &x = (*a)[i], &y = (*b)[i];
                verifySameActivations(x, y, 1);
                if (QTest::currentTestFailed())
                    return;
                QCOMPARE(x.cls.size(), y.cls.size());
            }
            const PrecisionAgreement same = compareActivations(*a, *b, p.patchThreshold);
            QVERIFY2(same.topOverlap > 0.999, qPrintable(QString::number(same.topOverlap)));
        }
    }

    // bf16 against fp32 on the demo model: the figures auto decides with, printed, and the
    // demo model within the bounds auto requires.
    void bf16AgreesWithFp32OnTheDemoModel()
    {
        auto exact = Engine::load(demoParams(Precision::Fp32));
        auto fast = Engine::load(demoParams(Precision::Bf16));
        QVERIFY(exact.ok() && fast.ok());
        Cells cells(20, 14);
        auto a = (*exact)->run(cells.views);
        auto b = (*fast)->run(cells.views);
        QVERIFY(a.ok() && b.ok());
        const PrecisionAgreement g = compareActivations(*a, *b, 0.2f);
        qInfo("demo model, 20 cells: top-32 overlap %.4f (worst token %.3f), image means within %.3f %%, %.3f %% of "
              "patch decisions flip",
              g.topOverlap, g.minTopOverlap, 100 * g.meanRelError, 100 * g.flipShare);
        QCOMPARE(g.images, 20);
        QVERIFY(g.topOverlap >= 0.99);
        QVERIFY(g.meanRelError <= 0.01);
        QVERIFY(g.flipShare < 0.02);
        // An identical run agrees perfectly (the measure can tell).
        const PrecisionAgreement self = compareActivations(*a, *a, 0.2f);
        QCOMPARE(self.topOverlap, 1.0);
        QCOMPARE(self.meanRelError, 0.0);
        QCOMPARE(self.flipShare, 0.0);
        // And a different image set does not.
        Cells other(20, 99);
        auto c = (*exact)->run(other.views);
        QVERIFY(c.ok());
        QVERIFY(compareActivations(*a, *c, 0.2f).topOverlap < 0.9);
    }

    // Precision::Auto: bf16 only where the hardware multiplies bf16 natively and the first batch agrees.
    void autoDecidesOnTheFirstBatch()
    {
        auto engine = Engine::load(demoParams(Precision::Auto));
        QVERIFY(engine.ok());
        Cells cells(4, 15);
        auto first = (*engine)->run(cells.views);
        QVERIFY(first.ok());
        const std::string reason = (*engine)->precisionReason();
        QVERIFY(reason.rfind("auto: ", 0) == 0);
        if (!cpuHasFastBf16()) {
            QCOMPARE((*engine)->precision(), Precision::Fp32);
            QCOMPARE((*engine)->autoCheck().images, 0);
            return;
        }
        const PrecisionAgreement g = (*engine)->autoCheck();
        QCOMPARE(g.images, 4);
        QCOMPARE((*engine)->precision(), g.acceptable() ? Precision::Bf16 : Precision::Fp32);
        QVERIFY2(reason.find(g.acceptable() ? "auto: bf16" : "auto: fp32") == 0, reason.c_str());
        // Later batches stay at the decided precision; the check is not repeated.
        auto second = (*engine)->run(cells.views);
        QVERIFY(second.ok());
        QCOMPARE((*engine)->autoCheck().images, 4);
        QCOMPARE(compareActivations(*first, *second, 0.2f).topOverlap, 1.0);
    }

    // When bf16 does not agree, auto runs in fp32: the ViT in fp32 and the SAE screened in bf16
    // but computed exactly in fp32, so every value is the reference fp32 value.
    void autoFallbackGivesFp32Values()
    {
        if (!cpuHasFastBf16())
            QSKIP("auto is plain fp32 on this CPU");
        auto engine = Engine::load(demoParams(Precision::Auto));
        auto reference = Engine::load(demoParams(Precision::Fp32));
        QVERIFY(engine.ok() && reference.ok());
        (*engine)->setAutoBoundsForTesting(1.01, 0.0); // bf16 can never agree this well
        Cells cells(7, 18);
        auto first = (*engine)->run(cells.views);   // 4 checked + 3 after the decision
        auto second = (*engine)->run(cells.views);  // decided: fp32 ViT, screened SAE
        auto ref = (*reference)->run(cells.views);
        QVERIFY(first.ok() && second.ok() && ref.ok());
        QCOMPARE((*engine)->precision(), Precision::Fp32);
        QVERIFY2((*engine)->precisionReason().find("computed exactly in fp32") != std::string::npos,
                 (*engine)->precisionReason().c_str());
        for (const auto *run : {&*first, &*second})
            for (size_t i = 0; i < ref->size(); ++i) {
                const ImageActivations &x = (*ref)[i], &y = (*run)[i];
                verifySameActivations(x, y, 0);
                if (QTest::currentTestFailed())
                    return;
                for (size_t j = 0; j < x.residual.size(); ++j) // the same fp32 ViT (other batch sizes)
                    QVERIFY(std::abs(x.residual[j] - y.residual[j]) <= 1e-5f + 1e-5f * std::abs(x.residual[j]));
            }
    }

    // The blocks after the SAE's run only for the CLS embedding; concepts do not change.
    void clsBlocksOnlyWhenAsked()
    {
        EngineParams p = demoParams(Precision::Fp32);
        p.keepDense = false;
        auto with = Engine::load(p);
        p.clsEmbedding = false;
        auto without = Engine::load(p);
        QVERIFY(with.ok() && without.ok());
        QVERIFY((*without)->flopsPerImage() < (*with)->flopsPerImage());
        Cells cells(3, 16);
        auto a = (*with)->run(cells.views);
        auto b = (*without)->run(cells.views);
        QVERIFY(a.ok() && b.ok());
        for (size_t i = 0; i < a->size(); ++i) {
            QCOMPARE(int((*a)[i].cls.size()), (*with)->vit().embedDim);
            QVERIFY((*b)[i].cls.empty());
            QCOMPARE((*a)[i].topIds, (*b)[i].topIds);
            QCOMPARE((*a)[i].reconError, (*b)[i].reconError);
        }
    }

    // On a machine with CUDA (scripts/gpu-check.sh): fp32 on the GPU is the reference within
    // the parity tolerance, and bf16 on the GPU agrees with fp32 as on the CPU. Skipped without.
    void cudaMatchesCpu()
    {
        EngineParams p = demoParams(Precision::Fp32);
        p.device = DeviceChoice::Cuda;
        auto gpu = Engine::load(p);
        if (!gpu)
            QSKIP(qPrintable(QString::fromStdString("no CUDA here: " + gpu.message())));
        p.precision = Precision::Bf16;
        auto gpuBf16 = Engine::load(p);
        auto cpu = Engine::load(demoParams(Precision::Fp32));
        QVERIFY(gpuBf16.ok() && cpu.ok());
        Cells cells(16, 17);
        auto a = (*cpu)->run(cells.views);
        auto b = (*gpu)->run(cells.views);
        auto c = (*gpuBf16)->run(cells.views);
        QVERIFY2(a.ok() && b.ok() && c.ok(), (!b ? b.message() : c.message()).c_str());
        for (size_t i = 0; i < a->size(); ++i) {
            const ImageActivations &x = (*a)[i], &y = (*b)[i];
            for (size_t j = 0; j < x.topValues.size(); ++j)
                QVERIFY(std::abs(x.topValues[j] - y.topValues[j]) <= 1e-4f + 1e-4f * std::abs(x.topValues[j]));
            for (size_t j = 0; j < x.residual.size(); ++j)
                QVERIFY(std::abs(x.residual[j] - y.residual[j]) <= 1e-4f + 1e-4f * std::abs(x.residual[j]));
            QVERIFY(relDiff(x.reconError, y.reconError) < 1e-4);
        }
        const PrecisionAgreement same = compareActivations(*a, *b, 0.2f);
        const PrecisionAgreement half = compareActivations(*a, *c, 0.2f);
        qInfo("CUDA fp32 vs CPU fp32: top-32 overlap %.4f, means within %.4f %%; CUDA bf16 vs CPU fp32: overlap %.4f, "
              "means within %.3f %%, %.3f %% flips",
              same.topOverlap, 100 * same.meanRelError, half.topOverlap, 100 * half.meanRelError, 100 * half.flipShare);
        QVERIFY(same.topOverlap > 0.999);
        QVERIFY(half.acceptable());
    }

    void parsesPrecisionAndDevice()
    {
        Precision p{};
        QVERIFY(parsePrecision("bf16", p) && p == Precision::Bf16);
        QVERIFY(parsePrecision("fp32", p) && p == Precision::Fp32);
        QVERIFY(parsePrecision("auto", p) && p == Precision::Auto);
        QVERIFY(!parsePrecision("fp16", p));
        QVERIFY(!parsePrecision("", p));
        DeviceChoice d{};
        QVERIFY(parseDeviceChoice("cuda", d) && d == DeviceChoice::Cuda);
        QVERIFY(!parseDeviceChoice("gpu", d));
    }

    // Beside as many busy processes as cores, the engine's thread budget goes down to what is left.
    void threadBudgetShrinksBesideBusyProcesses()
    {
        const int cores = CpuShare::availableCores();
        if (cores < 2)
            QSKIP("one core: nothing to shrink");
        CpuShare share(cores, 0.3);
        const std::vector<pid_t> busy = testing::startBusy(cores);
        std::this_thread::sleep_for(std::chrono::milliseconds(400));
        const int threads = share.next();
        const double others = share.othersLoad();
        testing::stopBusy(busy);
        QVERIFY2(threads < cores, qPrintable(QString("%1 threads of %2 with others using %3 cores")
                                                 .arg(threads).arg(cores).arg(others)));
        QVERIFY(others > 0.5 * cores);
        QVERIFY(threads >= 1);
    }
};

QTEST_GUILESS_MAIN(TestEngine)
#include "tst_engine.moc"
