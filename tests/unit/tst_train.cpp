// SAE training (CytoSAE recipe) and the demo ViT's supervised training, on the tiny fixture
// ViT and a few synthetic cells: the losses fall, the saved files load through the same
// readers as the published ones, decoder rows are unit norm, and a cancelled training resumes
// from its saved state to the same result as an uninterrupted one.

#include "demo/DemoCohort.h"
#include "imaging/ImageDecoder.h"
#include "model/TorchCheckpoint.h"
#include "model/Engine.h"
#include "model/VitModel.h"
#include "train/Activations.h"
#include "train/SaeMath.h"
#include "train/SaeTrainer.h"
#include "train/VitTrainer.h"

#include <torch/torch.h>

#include <cmath>

#include <QTemporaryDir>
#include <QtTest>

using namespace cytosae;

namespace {
const std::string kVit = CYTOSAE_TEST_DATA "/fixtures/tiny_dinobloom.pth";

std::vector<std::string> cells(const QString &dir, int count, std::vector<train::LabelledImage> *labelled = nullptr)
{
    demo::PatientSpec spec;
    spec.code = "T";
    spec.diagnosis = "t";
    spec.cellMix = {0.5, 0, 0, 0, 0.5, 0, 0, 0, 0, 0}; // segmented neutrophils and eosinophils
    spec.cells = count;
    spec.seed = 99;
    auto n = demo::writeDemoCohort(dir.toStdString(), {spec}, {});
    if (!n || *n != count)
        qFatal("cohort");
    std::vector<std::string> out;
    QFile manifest(dir + "/manifest.csv");
    manifest.open(QIODevice::ReadOnly);
    manifest.readLine();
    while (!manifest.atEnd()) {
        const QStringList f = QString::fromUtf8(manifest.readLine()).trimmed().split(',');
        const QString path = QDir(dir).absoluteFilePath(f[0]);
        out.push_back(path.toStdString());
        if (labelled)
            labelled->push_back({path.toStdString(), f[2] == "eosinophil" ? 1 : 0, {}});
    }
    return out;
}

// Part targets that a patch's own pixels decide: part 0 where the patch is darker than the
// red-cell background (the white cell), part 1 elsewhere. Returns the path of an image that did
// not decode, "" when all did.
std::string setCellPatchTargets(std::vector<train::LabelledImage> &labelled, int grid)
{
    const int parts = 2;
    for (auto &li : labelled) {
        auto img = imaging::decodeImageFile(li.path);
        if (!img.ok())
            return li.path;
        const auto &im = img->image;
        li.patchTargets.assign(size_t(grid * grid * parts), 0);
        for (int q = 0; q < grid * grid; ++q) {
            double sum = 0;
            int n = 0;
            for (int y = (q / grid) * im.height / grid; y < (q / grid + 1) * im.height / grid; ++y)
                for (int x = (q % grid) * im.width / grid; x < (q % grid + 1) * im.width / grid; ++x, ++n)
                    sum += im.pixels[size_t((y * im.width + x) * 3 + 1)]; // green: low on stained cells
            const bool cell = sum / n < 150;
            li.patchTargets[size_t(q * parts)] = cell;
            li.patchTargets[size_t(q * parts + 1)] = !cell;
        }
    }
    return {};
}

// A tiny ViT (width 48, 2 blocks) with a fixed-norm (scale 12) part head on the SAE's layer.
train::VitTrainOptions partHeadOptions(const QString &outPath, int grid, int parts, int epochs)
{
    train::VitTrainOptions o;
    o.outPath = outPath.toStdString();
    o.embedDim = 48;
    o.depth = 2;
    o.grid = grid;
    o.epochs = epochs;
    o.batch = 8;
    o.lr = 2e-3;
    o.threads = 1;
    o.device = model::DeviceChoice::Cpu;
    o.patchTargetCount = parts;
    o.patchHeadOnSaeLayer = true;
    o.patchHeadScale = 12.0;
    return o;
}

train::SaeTrainOptions options(const QString &out)
{
    train::SaeTrainOptions o;
    o.vitPath = kVit;
    o.outPath = out.toStdString();
    o.expansionFactor = 2;
    o.steps = 40;
    o.batchImages = 2;
    o.warmupSteps = 5;
    o.device = model::DeviceChoice::Cpu;
    o.threads = 1; // bitwise-reproducible
    o.checkpointEvery = 10;
    o.modelName = "tiny";
    return o;
}
} // namespace

class TestTrain : public QObject {
    Q_OBJECT

private slots:
    void saeTrainsAndSavesInTheCytoSaeFormat()
    {
        QTemporaryDir dir;
        const auto paths = cells(dir.filePath("cells"), 8);
        std::vector<train::TrainMetrics> seen;
        auto report = train::trainSae(paths, options(dir.filePath("sae.pt")), {},
                                      [&](const train::TrainMetrics &m) { seen.push_back(m); });
        QVERIFY2(report.ok(), report.message().c_str());
        QCOMPARE(report->steps, 40);
        QCOMPARE(report->dSae, 64);
        QCOMPARE(report->bufferTokens, int64_t(8 * 257));
        QVERIFY(seen.size() >= 4);
        QVERIFY2(seen.back().mse < seen.front().mse, "reconstruction did not improve");
        QVERIFY(seen.back().explained > seen.front().explained);
        QVERIFY(!QFile::exists(dir.filePath("sae.pt.state"))); // removed once finished

        // The file reads back like the published SAE, with its config.
        auto sae = model::SaeModel::load(dir.filePath("sae.pt").toStdString());
        QVERIFY2(sae.ok(), sae.message().c_str());
        QCOMPARE(sae->info().dIn, 32);
        QCOMPARE(sae->info().dSae, 64);
        QCOMPARE(sae->info().blockLayer, -2);
        QCOMPARE(QString::fromStdString(sae->info().modelName), QStringLiteral("tiny"));
        QCOMPARE(QString::fromStdString(sae->info().classToken), QStringLiteral("None"));
        const at::Tensor norms = sae->wDec().norm(2, {1});
        QVERIFY((norms - 1).abs().max().item<double>() < 1e-4);
        // And it runs in the engine with the ViT it was trained on.
        model::EngineParams ep;
        ep.vitPath = kVit;
        ep.saePath = dir.filePath("sae.pt").toStdString();
        ep.device = model::DeviceChoice::Cpu;
        auto engine = model::Engine::load(ep);
        QVERIFY2(engine.ok(), engine.message().c_str());
    }

    // Each part of the recipe has a test that fails without it.
    void geometricMedianIgnoresOutliers()
    {
        // 99 points around (1, 2), one far away: the mean moves, the median does not.
        torch::manual_seed(3);
        at::Tensor points = torch::randn({100, 2}) * 0.1 + torch::tensor({1.0f, 2.0f});
        points[0] = torch::tensor({1000.0f, -1000.0f});
        const at::Tensor median = train::geometricMedian(points);
        const at::Tensor mean = points.mean(0);
        QVERIFY2((median - torch::tensor({1.0f, 2.0f})).norm().item<double>() < 0.05,
                 qPrintable(QString::number(median[0].item<double>()) + ", " + QString::number(median[1].item<double>())));
        QVERIFY((mean - torch::tensor({1.0f, 2.0f})).norm().item<double>() > 10);
        // b_dec's sample comes from the whole buffer, not from its first rows.
        at::Tensor buffer = torch::arange(100000, torch::kFloat).unsqueeze(1);
        const at::Tensor sample = train::medianSample(buffer, 1000, 5);
        QCOMPARE(sample.size(0), int64_t(1000));
        QVERIFY(sample.max().item<float>() > 90000);
        QVERIFY(sample.min().item<float>() < 10000);
        QCOMPARE(std::get<0>(at::_unique(sample.squeeze(1))).size(0), int64_t(1000)); // no row twice
        QCOMPARE(train::medianSample(buffer.narrow(0, 0, 10), 1000, 5).size(0), int64_t(10));
    }

    void decoderGradientParallelToItsRowsIsRemoved()
    {
        torch::manual_seed(4);
        train::SaeParams p;
        p.wDec = torch::randn({16, 8}).requires_grad_(true);
        train::normaliseDecoder(p);
        QVERIFY((p.wDec.norm(2, {1}) - 1).abs().max().item<double>() < 1e-5);
        (p.wDec * torch::randn({16, 8})).sum().backward();
        const at::Tensor before = p.wDec.grad().clone();
        QVERIFY((before * p.wDec).sum(1).abs().max().item<double>() > 1e-2); // there was a parallel part
        train::removeParallelGradient(p);
        const at::Tensor after = p.wDec.grad();
        QVERIFY((after * p.wDec).sum(1).abs().max().item<double>() < 1e-5);
        // Only the parallel part went: what is left is the projection of the old gradient.
        const at::Tensor expected = before - (before * p.wDec).sum(1, true) * p.wDec;
        QVERIFY((after - expected).abs().max().item<double>() < 1e-5);
    }

    void mseIsScaledByEachTokensNorm()
    {
        torch::manual_seed(5);
        train::SaeParams p;
        p.wEnc = torch::randn({4, 8}) * 0.3;
        p.bEnc = torch::zeros({8});
        p.wDec = torch::randn({8, 4}) * 0.3;
        p.bDec = torch::zeros({4});
        // Tokens of very different norms: the scaling changes the loss.
        at::Tensor x = torch::randn({6, 4});
        x.narrow(0, 0, 3).mul_(100);
        const train::SaeLoss l = train::saeLoss(x, p, {}, 0.0, false);
        const at::Tensor byHand = ((l.out - x).pow(2) / x.norm(2, {1}, true)).mean();
        QVERIFY(std::abs(l.mse.item<double>() - byHand.item<double>()) < 1e-5 * byHand.item<double>());
        const double plain = (l.out - x).pow(2).mean().item<double>();
        QVERIFY(std::abs(plain - l.mse.item<double>()) > 0.5 * plain); // not the plain MSE
        const train::SaeLoss withL1 = train::saeLoss(x, p, {}, 0.5, false);
        QVERIFY(std::abs(withL1.l1.item<double>() - 0.5 * l.f.abs().sum(1).mean().item<double>()) < 1e-5);
    }

    void ghostGradientsReachDeadLatents()
    {
        torch::manual_seed(6);
        train::SaeParams p;
        p.wEnc = (torch::randn({4, 8}) * 0.01).requires_grad_(true);
        p.bEnc = torch::tensor({1.f, 1.f, 1.f, 1.f, -5.f, -5.f, -5.f, -5.f}).requires_grad_(true);
        p.wDec = torch::randn({8, 4}).requires_grad_(true);
        p.bDec = torch::zeros({4}).requires_grad_(true);
        const at::Tensor x = torch::randn({10, 4});
        const at::Tensor dead = torch::tensor({false, false, false, false, true, true, true, true});
        for (bool ghost : {false, true}) {
            for (auto *t : {&p.wEnc, &p.bEnc, &p.wDec, &p.bDec})
                if (t->grad().defined())
                    t->mutable_grad().zero_();
            const train::SaeLoss l = train::saeLoss(x, p, dead, 0.0, ghost);
            QVERIFY(l.f.narrow(1, 4, 4).max().item<float>() == 0.0f); // the dead latents never fire
            l.loss.backward();
            const double deadGrad = p.wEnc.grad().narrow(1, 4, 4).abs().max().item<double>();
            if (ghost) {
                QVERIFY(l.ghost.item<double>() > 0);
                QVERIFY2(deadGrad > 1e-8, qPrintable(QString::number(deadGrad)));
            } else {
                QCOMPARE(l.ghost.item<double>(), 0.0);
                QCOMPARE(deadGrad, 0.0); // nothing else reaches a latent that does not fire
            }
        }
    }

    void ghostGradientsSwitchOnInTraining()
    {
        QTemporaryDir dir;
        const auto paths = cells(dir.filePath("cells"), 4);
        train::SaeTrainOptions o = options(dir.filePath("ghost.pt"));
        o.deadFeatureWindow = 3;
        o.expansionFactor = 8;
        o.l1Coefficient = 2.0; // a strong sparsity penalty silences latents within a few steps
        o.lr = 1e-2;
        double ghost = 0;
        int dead = 0;
        auto report = train::trainSae(paths, o, {}, [&](const train::TrainMetrics &m) {
            ghost = std::max(ghost, m.ghost);
            dead = std::max(dead, m.deadLatents);
        });
        QVERIFY2(report.ok(), report.message().c_str());
        QVERIFY2(dead > 0, "no latent was dead for 3 steps");
        QVERIFY2(ghost > 0, "ghost gradients never switched on");
        o.ghostGrads = false;
        o.outPath = dir.filePath("noghost.pt").toStdString();
        ghost = 0;
        QVERIFY(train::trainSae(paths, o, {}, [&](const train::TrainMetrics &m) { ghost = std::max(ghost, m.ghost); }).ok());
        QCOMPARE(ghost, 0.0);
    }

    void cancelledTrainingResumesToTheSameResult()
    {
        QTemporaryDir dir;
        const auto paths = cells(dir.filePath("cells"), 6);
        auto straight = train::trainSae(paths, options(dir.filePath("a.pt")));
        QVERIFY(straight.ok());

        std::atomic<bool> cancel{false};
        auto first = train::trainSae(paths, options(dir.filePath("b.pt")), {}, [&](const train::TrainMetrics &m) {
            if (m.step >= 20)
                cancel = true;
        }, &cancel);
        QVERIFY(first.ok());
        QVERIFY(first->cancelled);
        QVERIFY(QFile::exists(dir.filePath("b.pt.state")));
        QVERIFY(!QFile::exists(dir.filePath("b.pt")));
        auto second = train::trainSae(paths, options(dir.filePath("b.pt")));
        QVERIFY2(second.ok(), second.message().c_str());
        QVERIFY(second->resumed);
        QCOMPARE(second->steps, 40);
        auto a = model::SaeModel::load(dir.filePath("a.pt").toStdString());
        auto b = model::SaeModel::load(dir.filePath("b.pt").toStdString());
        QVERIFY(a.ok() && b.ok());
        const double diff = (a->wEnc() - b->wEnc()).abs().max().item<double>();
        QVERIFY2(diff < 1e-5, qPrintable(QString::number(diff)));
        QVERIFY((a->bDec() - b->bDec()).abs().max().item<double>() < 1e-5);
    }

    void badInputIsReported()
    {
        QTemporaryDir dir;
        auto noImages = train::trainSae({"/nonexistent.png"}, options(dir.filePath("x.pt")));
        QVERIFY(!noImages.ok());
        QVERIFY2(noImages.message().find("no usable images") != std::string::npos, noImages.message().c_str());
        auto o = options(dir.filePath("x.pt"));
        o.vitPath = "/nonexistent.pth";
        auto noVit = train::trainSae(cells(dir.filePath("c"), 2), o);
        QVERIFY(!noVit.ok());
        QVERIFY2(noVit.message().find("/nonexistent.pth") != std::string::npos, noVit.message().c_str());
    }

    void balancedPartWeightsFollowTheTrainingImages()
    {
        // 2 images x 4 patches x 3 parts. Part 0 in 1 of 8 patches, part 1 in 4 of 8, part 2 never.
        const std::vector<uint8_t> targets = {1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, // image 0
                                              0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, // image 1
                                              1, 1, 0, 1, 1, 0, 1, 1, 0, 1, 1, 0}; // image 2 (not in training)
        const auto w = train::balancedPartWeights(targets, {0, 1}, 4, 3, 100.0);
        QCOMPARE(int(w.size()), 3);
        QCOMPARE(w[0], 7.f);  // 7 negatives / 1 positive
        QCOMPARE(w[1], 1.f);  // balanced already
        QCOMPARE(w[2], 1.f);  // never present: nothing to weigh
        QCOMPARE(train::balancedPartWeights(targets, {0, 1}, 4, 3, 5.0)[0], 5.f); // capped
        QCOMPARE(train::balancedPartWeights(targets, {0, 1, 2}, 4, 3, 100.0)[0], 1.4f); // 7 / 5
        QCOMPARE(train::balancedPartWeights(targets, {0, 7}, 4, 3, 100.0)[0], 3.f); // out-of-range image skipped
    }

    void vitClassifierLearnsAndSavesDinoBloomFormat()
    {
        QTemporaryDir dir;
        std::vector<train::LabelledImage> labelled;
        cells(dir.filePath("cells"), 80, &labelled);
        train::VitTrainOptions o;
        o.outPath = dir.filePath("vit.pth").toStdString();
        o.embedDim = 48;
        o.depth = 2;
        o.grid = 8; // 112 px: fast
        o.epochs = 15;
        o.batch = 8;
        o.lr = 2e-3;
        o.threads = 1;
        o.device = model::DeviceChoice::Cpu;
        o.validationFraction = 0.25;
        auto r = train::trainVitClassifier(labelled, {"neutrophil", "eosinophil"}, o);
        QVERIFY2(r.ok(), r.message().c_str());
        QCOMPARE(r->epochs, 15);
        // Eosinophils (orange granules) against neutrophils: easy once it learns anything.
        QVERIFY2(r->validationAccuracy >= 0.8, qPrintable(QString::number(r->validationAccuracy)));
        auto vit = model::VitModel::load(o.outPath, 0);
        QVERIFY2(vit.ok(), vit.message().c_str());
        QCOMPARE(QString::fromStdString(vit->info().source), QStringLiteral("DinoBloom teacher checkpoint"));
        QCOMPARE(vit->info().embedDim, 48);
        QCOMPARE(vit->info().numHeads, 3);
        QCOMPARE(vit->info().depth, 2);
        QCOMPARE(vit->info().imageSize, 112);
    }

    void cosinePartHeadTrainsAndSavesItsRowsAtTheFixedNorm()
    {
        QTemporaryDir dir;
        std::vector<train::LabelledImage> labelled;
        cells(dir.filePath("cells"), 24, &labelled);
        const int grid = 8, parts = 2;
        const std::string undecoded = setCellPatchTargets(labelled, grid);
        QVERIFY2(undecoded.empty(), undecoded.c_str());
        const train::VitTrainOptions o = partHeadOptions(dir.filePath("vit.pth"), grid, parts, 4);
        auto r = train::trainVitClassifier(labelled, {"neutrophil", "eosinophil"}, o);
        QVERIFY2(r.ok(), r.message().c_str());
        QVERIFY(std::isfinite(r->finalLoss));

        auto archive = model::TorchArchive::open(o.outPath);
        QVERIFY2(archive.ok(), archive.message().c_str());
        const model::PyValue *teacher = (*archive)->root().get("teacher");
        QVERIFY(teacher);
        auto sd = (*archive)->stateDict(*teacher);
        QVERIFY2(sd.ok(), sd.message().c_str());
        const at::Tensor *w = sd->find("patch_head.weight");
        QVERIFY(w);
        QCOMPARE(int(w->size(0)), parts);
        QCOMPARE(int(w->size(1)), 48);
        // Saved as used: every row has norm scale / sqrt(width), the norm of a layer-normed token.
        const at::Tensor norms = w->norm(2, {1});
        for (int k = 0; k < parts; ++k)
            QVERIFY2(std::abs(norms[k].item<double>() - 12.0 / std::sqrt(48.0)) < 1e-4,
                     qPrintable(QString::number(norms[k].item<double>())));
    }

    void rawResidualPartHeadReadsTheSaesInput()
    {
        // With patchHeadRawResidual the saved head applies to the block -2 residual exactly as
        // the SAE reads it (collected by the SAE trainer's own code): it must tell the white
        // cell's patches from the background there.
        QTemporaryDir dir;
        std::vector<train::LabelledImage> labelled;
        cells(dir.filePath("cells"), 24, &labelled);
        const int grid = 8, parts = 2;
        const std::string undecoded = setCellPatchTargets(labelled, grid);
        QVERIFY2(undecoded.empty(), undecoded.c_str());
        train::VitTrainOptions o = partHeadOptions(dir.filePath("vit.pth"), grid, parts, 12);
        o.patchHeadRawResidual = true;
        auto r = train::trainVitClassifier(labelled, {"neutrophil", "eosinophil"}, o);
        QVERIFY2(r.ok(), r.message().c_str());

        auto archive = model::TorchArchive::open(o.outPath);
        QVERIFY2(archive.ok(), archive.message().c_str());
        auto sd = (*archive)->stateDict(*(*archive)->root().get("teacher"));
        QVERIFY2(sd.ok(), sd.message().c_str());
        const at::Tensor *w = sd->find("patch_head.weight"), *b = sd->find("patch_head.bias");
        QVERIFY(w && b);
        auto vit = model::VitModel::load(o.outPath, 0);
        QVERIFY2(vit.ok(), vit.message().c_str());
        std::vector<std::string> paths;
        for (const auto &li : labelled)
            paths.push_back(li.path);
        auto acts = train::collectActivations(*vit, paths, o.depth - 2, 1 << 30, c10::Device(c10::kCPU), {}, nullptr);
        QVERIFY2(acts.ok(), acts.message().c_str());
        QCOMPARE(acts->tokensPerImage, 1 + grid * grid);
        const at::Tensor tokens = acts->tokens.view({int64_t(paths.size()), 1 + grid * grid, -1});
        const at::Tensor patchTokens = tokens.narrow(1, 1, grid * grid);
        const at::Tensor logits = at::linear(patchTokens, *w, *b); // [images, patches, parts]
        int right = 0, total = 0;
        for (size_t i = 0; i < labelled.size(); ++i)
            for (int q = 0; q < grid * grid; ++q, ++total)
                right += (logits[int64_t(i)][q][0].item<float>() > 0) == bool(labelled[i].patchTargets[size_t(q * parts)]);
        QVERIFY2(right >= 0.85 * total, qPrintable(QString("%1 of %2 patches").arg(right).arg(total)));
    }
};

QTEST_APPLESS_MAIN(TestTrain)
#include "tst_train.moc"
