// Parity of the LibTorch engine with the reference Python implementation, on the golden
// fixtures in tests/data/fixtures (tiny DinoBloom-format ViT and CytoSAE-format SAE).
// Tolerance: atol 1e-4 + rtol 1e-4 (fixtures/README.md); preprocessing must match exactly.

#include "imaging/ImageDecoder.h"
#include "model/Engine.h"
#include "model/TorchCheckpoint.h"
#include "model/VitModel.h"

#include <torch/torch.h>

#include <QFile>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QTemporaryDir>
#include <QtTest>

using namespace cytosae;
using namespace cytosae::model;

namespace {

QString fixture(const QString &name)
{
    return QStringLiteral(CYTOSAE_TEST_DATA "/fixtures/") + name;
}
std::string fixturePath(const QString &name)
{
    return fixture(name).toStdString();
}

at::Tensor readBin(const QString &name, std::vector<int64_t> shape)
{
    QFile f(fixture("ref/" + name + ".bin"));
    if (!f.open(QIODevice::ReadOnly))
        qFatal("missing fixture %s", qPrintable(name));
    const QByteArray bytes = f.readAll();
    at::Tensor t = torch::empty(shape, torch::kFloat);
    if (size_t(bytes.size()) != size_t(t.numel()) * 4)
        qFatal("fixture %s has %lld bytes, expected %lld", qPrintable(name), qlonglong(bytes.size()),
               qlonglong(t.numel() * 4));
    std::memcpy(t.data_ptr<float>(), bytes.constData(), size_t(bytes.size()));
    return t;
}

QJsonObject readJson(const QString &name)
{
    QFile f(fixture(name));
    if (!f.open(QIODevice::ReadOnly))
        qFatal("missing %s", qPrintable(name));
    return QJsonDocument::fromJson(f.readAll()).object();
}

// max |a-b| - (atol + rtol |b|) <= 0, reported with the worst element.
bool allClose(const at::Tensor &a, const at::Tensor &b, double atol, double rtol, QString &why)
{
    if (a.sizes() != b.sizes()) {
        why = "shape mismatch";
        return false;
    }
    at::Tensor excess = (a - b).abs() - (atol + rtol * b.abs());
    const double worst = excess.max().item<double>();
    if (worst <= 0)
        return true;
    why = QStringLiteral("max |diff| %1 exceeds tolerance").arg((a - b).abs().max().item<double>());
    return false;
}

#define VERIFY_CLOSE(a, b)                                                                                           \
    do {                                                                                                             \
        QString why_;                                                                                                \
        QVERIFY2(allClose((a), (b), 1e-4, 1e-4, why_), qPrintable(why_));                                            \
    } while (0)

at::Tensor refPixels()
{
    return readBin("input_pixels", {3, 3, 224, 224});
}

} // namespace

class TestModelParity : public QObject {
    Q_OBJECT

private slots:
    void initTestCase()
    {
        at::set_num_threads(2);
    }

    void checkpointTensorsMatchManifest_data()
    {
        QTest::addColumn<QString>("file");
        QTest::newRow("cuda-tagged") << "tiny_dinobloom.pth";
        QTest::newRow("cpu-tagged") << "tiny_dinobloom.cpu.pth";
    }
    void checkpointTensorsMatchManifest()
    {
        QFETCH(QString, file);
        auto archive = TorchArchive::open(fixturePath(file));
        QVERIFY2(archive.ok(), archive.message().c_str());
        const PyValue *teacher = (*archive)->root().get("teacher");
        QVERIFY(teacher);
        auto sd = (*archive)->stateDict(*teacher);
        QVERIFY2(sd.ok(), sd.message().c_str());
        const QJsonArray expected = readJson("tiny_dinobloom.json")["teacher_state_dict"].toArray();
        QCOMPARE(int(sd->names.size()), expected.size());
        for (int i = 0; i < expected.size(); ++i) {
            const QJsonObject e = expected[i].toObject();
            const std::string key = e["key"].toString().toStdString();
            QCOMPARE(QString::fromStdString(sd->names[size_t(i)]), e["key"].toString()); // file order kept
            const at::Tensor &t = sd->tensors.at(key);
            const QJsonArray shape = e["shape"].toArray();
            QCOMPARE(int(t.dim()), shape.size());
            for (int d = 0; d < shape.size(); ++d)
                QCOMPARE(t.size(d), int64_t(shape[d].toInt()));
            QVERIFY2(std::abs(t.to(torch::kDouble).sum().item<double>() - e["sum"].toDouble()) < 1e-3, key.c_str());
            const QJsonArray first4 = e["first4"].toArray();
            for (int j = 0; j < first4.size(); ++j)
                QCOMPARE(t.flatten()[j].item<float>(), float(first4[j].toDouble()));
        }
    }

    void vitLoadsDinoBloomLayout()
    {
        auto vit = VitModel::load(fixturePath("tiny_dinobloom.pth"), 0);
        QVERIFY2(vit.ok(), vit.message().c_str());
        QCOMPARE(vit->info().embedDim, 32);
        QCOMPARE(vit->info().depth, 3);
        QCOMPARE(vit->info().numHeads, 2); // width 32: head_dim 16, as the fixture was built
        QCOMPARE(vit->info().patchSize, 14);
        QCOMPARE(vit->info().mlpHidden, 128);
        QCOMPARE(vit->info().numRegisters, 0);
        QCOMPARE(vit->info().posGrid, 16);
        QCOMPARE(vit->info().imageSize, 224);
        QCOMPARE(QString::fromStdString(vit->info().source), QStringLiteral("DinoBloom teacher checkpoint"));
    }

    void saeLoadsConfigWithoutPython_data()
    {
        QTest::addColumn<QString>("file");
        QTest::newRow("cuda-tagged") << "final_sparse_autoencoder_dinov2_vitb14_-2_resid_256.pt";
        QTest::newRow("cpu-tagged") << "final_sparse_autoencoder_dinov2_vitb14_-2_resid_256.cpu.pt";
    }
    void saeLoadsConfigWithoutPython()
    {
        QFETCH(QString, file);
        auto sae = SaeModel::load(fixturePath(file));
        QVERIFY2(sae.ok(), sae.message().c_str());
        const SaeInfo &info = sae->info();
        QCOMPARE(info.dIn, 32);
        QCOMPARE(info.dSae, 256);
        QCOMPARE(info.blockLayer, -2);
        QCOMPARE(QString::fromStdString(info.moduleName), QStringLiteral("resid"));
        QCOMPARE(QString::fromStdString(info.modelName), QStringLiteral("dinov2_vitb14"));
        QCOMPARE(QString::fromStdString(info.classToken), QStringLiteral("None"));
        QCOMPARE(info.imageWidth, 224);
        // Every cfg attribute of the reference dump is read, with its value.
        const QJsonObject cfg = readJson("tiny_sae.json")["cfg_instance_dict (repr for non-primitive values)"].toObject();
        QCOMPARE(int(info.config.size()), cfg.size());
        std::map<std::string, std::string> got(info.config.begin(), info.config.end());
        for (auto it = cfg.begin(); it != cfg.end(); ++it) {
            const std::string key = it.key().toStdString();
            QVERIFY2(got.count(key), key.c_str());
            const QJsonValue v = it.value();
            if (v.isDouble())
                QCOMPARE(std::stod(got[key]), v.toDouble());
            else if (v.isString() && key != "device" && key != "dtype")
                QCOMPARE(QString::fromStdString(got[key]), v.toString());
            else if (v.isNull())
                QCOMPARE(QString::fromStdString(got[key]), QStringLiteral("None"));
            else if (v.isBool())
                QCOMPARE(QString::fromStdString(got[key]), v.toBool() ? QStringLiteral("True") : QStringLiteral("False"));
        }
        QCOMPARE(QString::fromStdString(got["dtype"]), QStringLiteral("torch.float32"));
        QVERIFY(QString::fromStdString(got["device"]).contains("cuda"));
        // State dict values.
        const QJsonArray sd = readJson("tiny_sae.json")["state_dict"].toArray();
        for (const auto &entry : sd) {
            const QJsonObject e = entry.toObject();
            const QString key = e["key"].toString();
            const at::Tensor t = key == "W_enc" ? sae->wEnc() : key == "b_enc" ? sae->bEnc() : key == "W_dec" ? sae->wDec() : sae->bDec();
            QVERIFY2(std::abs(t.to(torch::kDouble).sum().item<double>() - e["sum"].toDouble()) < 1e-3, qPrintable(key));
        }
    }

    void preprocessingIsBitExact()
    {
        const at::Tensor ref = refPixels();
        const char *names[] = {"images/img0_rgb_224x224.png", "images/img1_rgb_144x120.png", "images/img2_rgba_288x288.png"};
        for (int i = 0; i < 3; ++i) {
            auto img = imaging::decodeImageFile(fixturePath(names[i]));
            QVERIFY2(img.ok(), img.message().c_str());
            std::vector<float> chw(3 * 224 * 224);
            preprocessToChw({img->image.pixels.data(), img->image.width, img->image.height}, 224, Normalization{}, chw.data());
            at::Tensor got = torch::from_blob(chw.data(), {3, 224, 224}, torch::kFloat);
            const double maxDiff = (got - ref[i]).abs().max().item<double>();
            QVERIFY2(maxDiff == 0.0, qPrintable(QStringLiteral("%1: max diff %2").arg(names[i]).arg(maxDiff)));
        }
    }

    void vitForwardMatchesReference()
    {
        auto vit = VitModel::load(fixturePath("tiny_dinobloom.pth"), 0);
        QVERIFY(vit.ok());
        c10::InferenceMode guard;
        const at::Tensor x = refPixels();
        const at::Tensor tokens = vit->embed(x);
        VERIFY_CLOSE(tokens, readBin("tokens_embed", {3, 257, 32}));
        const at::Tensor resid = vit->blocks(tokens, 0, 1);
        VERIFY_CLOSE(resid, readBin("resid_block_m2", {3, 257, 32}));
        const at::Tensor last = vit->blocks(resid, 2, 2);
        VERIFY_CLOSE(last, readBin("x_prenorm", {3, 257, 32}));
        VERIFY_CLOSE(vit->finalNorm(last), readBin("x_norm", {3, 257, 32}));
    }

    void positionEmbeddingInterpolation_data()
    {
        QTest::addColumn<int>("h");
        QTest::addColumn<int>("w");
        for (auto [h, w] : std::vector<std::pair<int, int>>{{224, 224}, {98, 126}, {112, 112}, {252, 238}, {280, 280}, {70, 224}})
            QTest::newRow(qPrintable(QStringLiteral("%1x%2").arg(h).arg(w))) << h << w;
    }
    void positionEmbeddingInterpolation()
    {
        QFETCH(int, h);
        QFETCH(int, w);
        auto vit = VitModel::load(fixturePath("tiny_dinobloom.pth"), 0);
        QVERIFY(vit.ok());
        const at::Tensor got = vit->positionEmbedding(h, w);
        VERIFY_CLOSE(got, readBin(QStringLiteral("pos_embed_%1x%2").arg(h).arg(w), {1, 1 + (h / 14) * (w / 14), 32}));
    }

    void nonSquareInputThroughViT()
    {
        auto vit = VitModel::load(fixturePath("tiny_dinobloom.pth"), 0);
        QVERIFY(vit.ok());
        c10::InferenceMode guard;
        const at::Tensor x = readBin("interp_input", {1, 3, 98, 126});
        const at::Tensor resid = vit->blocks(vit->embed(x), 0, 1);
        VERIFY_CLOSE(resid, readBin("interp_resid_block_m2", {1, 64, 32}));
        const at::Tensor norm = vit->finalNorm(vit->blocks(resid, 2, 2));
        VERIFY_CLOSE(norm, readBin("interp_x_norm", {1, 64, 32}));
        VERIFY_CLOSE(norm.select(1, 0), readBin("interp_cls_embedding", {1, 32}));
    }

    // The whole engine from the image files: activations, aggregates, top-k, reconstruction.
    void engineMatchesReference()
    {
        EngineParams params;
        params.vitPath = fixturePath("tiny_dinobloom.pth");
        params.saePath = fixturePath("final_sparse_autoencoder_dinov2_vitb14_-2_resid_256.pt");
        params.device = DeviceChoice::Cpu;
        params.topK = 8;
        params.saeChunk = 48; // several chunks, one partial: exercises the chunked merge
        params.keepDense = true;
        auto engine = Engine::load(params);
        QVERIFY2(engine.ok(), engine.message().c_str());
        QCOMPARE((*engine)->sae().blockIndex, 1);
        QCOMPARE(QString::fromStdString((*engine)->vit().sha256),
                 readJson("tiny_dinobloom.json")["files"].toObject()["tiny_dinobloom.pth"].toObject()["sha256"].toString());

        std::vector<imaging::DecodedImage> images;
        for (const char *n : {"images/img0_rgb_224x224.png", "images/img1_rgb_144x120.png", "images/img2_rgba_288x288.png"}) {
            auto img = imaging::decodeImageFile(fixturePath(n));
            QVERIFY(img.ok());
            images.push_back(std::move(img.value()));
        }
        std::vector<RgbView> views;
        for (const auto &i : images)
            views.push_back({i.image.pixels.data(), i.image.width, i.image.height});
        auto result = (*engine)->run(views);
        QVERIFY2(result.ok(), result.message().c_str());
        QCOMPARE(int(result->size()), 3);

        const at::Tensor pixels = refPixels();
        const at::Tensor resid = readBin("resid_block_m2", {3, 257, 32});
        const at::Tensor latents = readBin("sae_latents", {3, 257, 256});
        const at::Tensor recon = readBin("sae_recon", {3, 257, 32});
        const at::Tensor tokenMean = readBin("sae_latents_token_mean", {3, 256});
        const at::Tensor cls = readBin("cls_embedding", {3, 32});
        for (int b = 0; b < 3; ++b) {
            const ImageActivations &a = (*result)[size_t(b)];
            QCOMPARE(a.numTokens, 257);
            QCOMPARE(a.numPrefix, 1);
            auto tensorOf = [](std::vector<float> &v, std::vector<int64_t> shape) {
                return torch::from_blob(v.data(), shape, torch::kFloat).clone();
            };
            ImageActivations copy = a;
            QCOMPARE((tensorOf(copy.inputPixels, {3, 224, 224}) - pixels[b]).abs().max().item<double>(), 0.0);
            VERIFY_CLOSE(tensorOf(copy.residual, {257, 32}), resid[b]);
            VERIFY_CLOSE(tensorOf(copy.denseLatents, {257, 256}), latents[b]);
            VERIFY_CLOSE(tensorOf(copy.cls, {32}), cls[b]);

            // Image-level aggregates, computed here from the reference latents.
            const at::Tensor ref = latents[b];
            const at::Tensor refMax = std::get<0>(ref.narrow(0, 1, 256).max(0));
            const at::Tensor refCount = (ref.narrow(0, 1, 256) > 0.2f).sum(0);
            int activeRef = 0;
            for (int l = 0; l < 256; ++l)
                activeRef += tokenMean[b][l].item<float>() > 1e-4f;
            QVERIFY(std::abs(int(a.latents.size()) - activeRef) <= 2); // only near-zero means may differ
            for (const LatentAggregate &agg : a.latents) {
                QVERIFY(std::abs(agg.mean - tokenMean[b][agg.latent].item<float>()) < 1e-4f);
                QVERIFY(std::abs(agg.maxPatch - refMax[agg.latent].item<float>()) < 1e-4f);
                QVERIFY(std::abs(agg.patchesAbove - refCount[agg.latent].item<int>()) <= 1);
            }
            // Per-token top-k: the values are the k largest reference activations.
            const at::Tensor refTop = std::get<0>(ref.topk(8, 1));
            for (int t = 0; t < 257; ++t)
                for (int j = 0; j < 8; ++j) {
                    const float expected = refTop[t][j].item<float>();
                    const float got = a.topValues[size_t(t * 8 + j)];
                    QVERIFY(std::abs(got - expected) < 1e-4f + 1e-4f * std::abs(expected));
                    if (expected > 1e-3f) {
                        const int id = a.topIds[size_t(t * 8 + j)];
                        QVERIFY(std::abs(ref[t][id].item<float>() - got) < 1e-4f); // the id carries that value
                    }
                }
            // The reconstruction element by element, and its error, against the reference.
            VERIFY_CLOSE(tensorOf(copy.reconstruction, {257, 32}), recon[b]);
            const double refErr = ((recon[b] - resid[b]).pow(2).sum() / resid[b].pow(2).sum()).item<double>();
            QVERIFY(std::abs(a.reconError - refErr) < 1e-4 * std::max(1.0, refErr));
        }
    }

    void missingFileIsReported()
    {
        auto vit = VitModel::load("/nonexistent/DinoBloom-B.pth", 0);
        QVERIFY(!vit.ok());
        QVERIFY2(vit.message().find("not found") != std::string::npos, vit.message().c_str());
    }

    void truncatedCheckpointIsReported()
    {
        QTemporaryDir dir;
        QFile in(fixture("tiny_dinobloom.pth"));
        QVERIFY(in.open(QIODevice::ReadOnly));
        const QByteArray all = in.readAll();
        for (double fraction : {0.5, 0.95}) {
            const QString path = dir.filePath(QStringLiteral("cut%1.pth").arg(fraction));
            QFile out(path);
            QVERIFY(out.open(QIODevice::WriteOnly));
            out.write(all.left(int(all.size() * fraction)));
            out.close();
            auto vit = VitModel::load(path.toStdString(), 0);
            QVERIFY(!vit.ok());
            QVERIFY2(vit.message().find("truncated") != std::string::npos ||
                         vit.message().find("damaged") != std::string::npos,
                     vit.message().c_str());
        }
        const QString empty = dir.filePath("empty.pt");
        QFile e(empty);
        QVERIFY(e.open(QIODevice::WriteOnly));
        e.close();
        auto sae = SaeModel::load(empty.toStdString());
        QVERIFY(!sae.ok());
        QVERIFY2(sae.message().find("empty") != std::string::npos, sae.message().c_str());
    }

    void notACheckpointIsReported()
    {
        auto vit = VitModel::load(fixturePath("images/img0_rgb_224x224.png"), 0);
        QVERIFY(!vit.ok());
        QVERIFY2(vit.message().find("not a PyTorch checkpoint") != std::string::npos, vit.message().c_str());
        // An SAE file given as the ViT: a valid archive without ViT tensors.
        auto swapped = VitModel::load(fixturePath("final_sparse_autoencoder_dinov2_vitb14_-2_resid_256.pt"), 0);
        QVERIFY(!swapped.ok());
        QVERIFY2(swapped.message().find("not a") != std::string::npos, swapped.message().c_str());
        auto sae = SaeModel::load(fixturePath("tiny_dinobloom.pth"));
        QVERIFY(!sae.ok());
        QVERIFY2(sae.message().find("W_enc") != std::string::npos, sae.message().c_str());
    }

    void missingTensorsAreNamed()
    {
        auto archive = TorchArchive::open(fixturePath("tiny_dinobloom.cpu.pth"));
        QVERIFY(archive.ok());
        auto raw = (*archive)->stateDict(*(*archive)->root().get("teacher"));
        QVERIFY(raw.ok());
        StateDict sd;
        for (const auto &n : raw->names)
            if (n.rfind("backbone.", 0) == 0 && n != "backbone.blocks.1.attn.proj.weight" && n != "backbone.norm.bias")
                sd.insert(n.substr(9), raw->tensors.at(n));
        auto vit = VitModel::fromStateDict(sd, 0);
        QVERIFY(!vit.ok());
        QVERIFY2(vit.message().find("blocks.1.attn.proj.weight") != std::string::npos, vit.message().c_str());
        QVERIFY2(vit.message().find("norm.bias") != std::string::npos, vit.message().c_str());

        // A misshapen tensor is named with both shapes.
        sd.insert("blocks.1.attn.proj.weight", torch::zeros({32, 31}));
        sd.insert("norm.bias", torch::zeros({32}));
        auto bad = VitModel::fromStateDict(sd, 0);
        QVERIFY(!bad.ok());
        QVERIFY2(bad.message().find("blocks.1.attn.proj.weight is [32, 31], expected [32, 32]") != std::string::npos,
                 bad.message().c_str());
    }

    void saeWidthMismatchIsExplained()
    {
        auto vit = VitModel::load(fixturePath("tiny_dinobloom.pth"), 0);
        QVERIFY(vit.ok());
        auto sae = SaeModel::fromTensors(torch::zeros({16, 64}), torch::zeros({64}), torch::zeros({64, 16}), torch::zeros({16}));
        QVERIFY(sae.ok());
        auto engine = makeEngine(std::move(vit.value()), std::move(sae.value()), EngineParams{});
        QVERIFY(!engine.ok());
        QVERIFY2(engine.message().find("d_in 16") != std::string::npos, engine.message().c_str());
        QVERIFY2(engine.message().find("W_enc is [16, 64]") != std::string::npos, engine.message().c_str());
        QVERIFY2(engine.message().find("width is 32") != std::string::npos, engine.message().c_str());
    }

    void registersAndOtherWidthsAreRead()
    {
        // A ViT-S-like state dict with 4 register tokens and a 2x2 position grid, made here.
        const int64_t d = 64;
        StateDict sd;
        torch::manual_seed(3);
        sd.insert("cls_token", torch::randn({1, 1, d}));
        sd.insert("register_tokens", torch::randn({1, 4, d}));
        sd.insert("pos_embed", torch::randn({1, 5, d}));
        sd.insert("patch_embed.proj.weight", torch::randn({d, 3, 14, 14}) * 0.05);
        sd.insert("patch_embed.proj.bias", torch::zeros({d}));
        sd.insert("norm.weight", torch::ones({d}));
        sd.insert("norm.bias", torch::zeros({d}));
        for (int i = 0; i < 2; ++i) {
            const std::string p = "blocks." + std::to_string(i) + ".";
            sd.insert(p + "norm1.weight", torch::ones({d}));
            sd.insert(p + "norm1.bias", torch::zeros({d}));
            sd.insert(p + "attn.qkv.weight", torch::randn({3 * d, d}) * 0.05);
            sd.insert(p + "attn.qkv.bias", torch::zeros({3 * d}));
            sd.insert(p + "attn.proj.weight", torch::randn({d, d}) * 0.05);
            sd.insert(p + "attn.proj.bias", torch::zeros({d}));
            sd.insert(p + "ls1.gamma", torch::ones({d}));
            sd.insert(p + "norm2.weight", torch::ones({d}));
            sd.insert(p + "norm2.bias", torch::zeros({d}));
            sd.insert(p + "mlp.fc1.weight", torch::randn({4 * d, d}) * 0.05);
            sd.insert(p + "mlp.fc1.bias", torch::zeros({4 * d}));
            sd.insert(p + "mlp.fc2.weight", torch::randn({d, 4 * d}) * 0.05);
            sd.insert(p + "mlp.fc2.bias", torch::zeros({d}));
            sd.insert(p + "ls2.gamma", torch::ones({d}));
        }
        auto vit = VitModel::fromStateDict(sd, 0);
        QVERIFY2(vit.ok(), vit.message().c_str());
        QCOMPARE(vit->info().numRegisters, 4);
        QCOMPARE(vit->info().numHeads, 1); // head_dim 64
        QCOMPARE(vit->info().imageSize, 28);
        c10::InferenceMode guard;
        const at::Tensor tokens = vit->embed(torch::randn({2, 3, 28, 28}));
        QCOMPARE(tokens.size(1), int64_t(1 + 4 + 4));
        // Registers sit after CLS and carry no position embedding.
        QCOMPARE((tokens[0][1] - sd.tensors.at("register_tokens")[0][0]).abs().max().item<double>(), 0.0);
    }
};

QTEST_APPLESS_MAIN(TestModelParity)
#include "tst_modelparity.moc"
