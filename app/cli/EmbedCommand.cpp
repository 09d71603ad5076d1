// cytosae embed: images -> ViT -> SAE, printed, and optionally exported as JSON and .npy.

#include "CliArgs.h"
#include "CliCommon.h"
#include "Commands.h"

#include "imaging/ImageDecoder.h"
#include "io/JsonWriter.h"
#include "io/NpyWriter.h"
#include "model/Engine.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>

namespace cytosae::cli {

namespace {

const char *kEmbedHelp =
    "Usage: cytosae embed --vit FILE --sae FILE [options] IMAGE...\n"
    "\n"
    "Runs the ViT (DinoBloom-B or any DINOv2 checkpoint) and the CytoSAE sparse autoencoder\n"
    "on each image and prints its strongest concepts (image-level mean activation).\n"
    "\n"
    "Options:\n"
    "  --vit FILE        ViT checkpoint (.pth)\n"
    "  --sae FILE        SAE checkpoint (.pt)\n"
    "  --top K           concepts printed per image and latents kept per patch (default 10)\n"
    "  --json OUT        write per-image concepts and per-token top-K latents as JSON\n"
    "  --npy DIR         write per image: preprocessed input, block residual, dense SAE\n"
    "                    activations and the SAE's reconstruction as NumPy .npy files\n"
    "  --batch N         images per batch (default 8)\n"
    "  --device D        auto | cpu | cuda (default auto)\n"
    "  --precision P     fp32 | bf16 | auto (default auto: bf16 where the CPU has avx512_bf16\n"
    "                    or AMX, or on CUDA, and the first batch run both ways agrees with\n"
    "                    fp32; otherwise fp32)\n"
    "  --cls             also run the ViT's last blocks for the final-norm CLS embedding\n"
    "                    (written to --json; off by default: concepts do not need them)\n"
    "  --threads N       CPU threads (default: as many cores as are free, fewer while other\n"
    "                    processes compute)\n"
    "  --threshold T     patch activation threshold (default 0.2)\n"
    "  --quiet           print only errors\n"
    "\n"
    "Exit status: 0 all images done, 1 some image or file failed, 2 usage error.\n";

struct Done {
    std::string path;
    int width = 0, height = 0;
    std::vector<std::string> notes;
    model::ImageActivations act;
};

std::string stemOf(const std::string &path)
{
    return std::filesystem::path(path).stem().string();
}

void writeImageJson(io::JsonWriter &json, const Done &d, int top)
{
    const auto &a = d.act;
    json.beginObject();
    json.key("path").value(d.path);
    json.key("width").value(int64_t(d.width));
    json.key("height").value(int64_t(d.height));
    json.key("notes").beginArray();
    for (const auto &n : d.notes)
        json.value(n);
    json.endArray();
    json.key("recon_error").value(a.reconError);
    json.key("recon_mse").value(a.reconMse);
    json.key("num_tokens").value(int64_t(a.numTokens));
    json.key("num_prefix_tokens").value(int64_t(a.numPrefix));
    json.key("grid").beginArray().value(int64_t(a.gridH)).value(int64_t(a.gridW)).endArray();

    std::vector<model::LatentAggregate> latents = a.latents;
    std::sort(latents.begin(), latents.end(), [](const auto &x, const auto &y) { return x.mean > y.mean; });
    json.key("active_latents").value(int64_t(latents.size()));
    json.key("concepts").beginArray();
    for (size_t i = 0; i < latents.size() && i < size_t(top); ++i) {
        json.beginObject();
        json.key("latent").value(int64_t(latents[i].latent));
        json.key("mean").value(latents[i].mean);
        json.key("max_patch").value(latents[i].maxPatch);
        json.key("patches_above_threshold").value(int64_t(latents[i].patchesAbove));
        json.endObject();
    }
    json.endArray();

    // tokens[t] = [[latent, value], ...] strongest first; token 0 is CLS.
    json.key("tokens").beginArray();
    for (int t = 0; t < a.numTokens; ++t) {
        json.beginArray();
        for (int j = 0; j < a.k; ++j) {
            const size_t idx = size_t(t) * size_t(a.k) + size_t(j);
            if (a.topIds[idx] < 0)
                break;
            json.beginArray().value(int64_t(a.topIds[idx])).value(a.topValues[idx]).endArray();
        }
        json.endArray();
    }
    json.endArray();
    if (!a.cls.empty()) {
        json.key("cls_embedding").beginArray();
        for (float v : a.cls)
            json.value(v);
        json.endArray();
    }
    json.endObject();
}

} // namespace

int embedCommand(int argc, char **argv)
{
    CliArgs args({"--vit", "--sae", "--top", "--json", "--npy", "--batch", "--device", "--precision", "--threads",
                  "--threshold"},
                 {"--help", "-h", "--quiet", "--cls"});
    if (!args.parse(argc, argv, 2)) {
        std::fprintf(stderr, "cytosae embed: %s\n\n%s", args.error().c_str(), kEmbedHelp);
        return 2;
    }
    if (args.has("--help") || args.has("-h")) {
        std::fputs(kEmbedHelp, stdout);
        return 0;
    }
    int top = 10, batch = 8, threads = 0;
    if (!args.intValue("--top", 10, 1, 4096, top) || !args.intValue("--batch", 8, 1, 4096, batch) ||
        !args.intValue("--threads", 0, 0, 1024, threads)) {
        std::fprintf(stderr, "cytosae embed: %s\n", args.error().c_str());
        return 2;
    }
    model::EngineParams params;
    params.vitPath = args.value("--vit");
    params.saePath = args.value("--sae");
    params.topK = top;
    params.threads = threads;
    params.keepDense = args.has("--npy");
    params.clsEmbedding = args.has("--cls");
    if (std::string error; !engineOptions(args, params, error)) {
        std::fprintf(stderr, "cytosae embed: %s\n", error.c_str());
        return 2;
    }
    if (args.has("--threshold")) {
        try {
            size_t used = 0;
            params.patchThreshold = std::stof(args.value("--threshold"), &used);
            if (used != args.value("--threshold").size())
                throw std::invalid_argument("trailing");
        } catch (const std::exception &) {
            std::fprintf(stderr, "cytosae embed: --threshold needs a number\n");
            return 2;
        }
    }
    if (params.vitPath.empty() || params.saePath.empty() || args.positional().empty()) {
        std::fprintf(stderr, "cytosae embed: --vit, --sae and at least one IMAGE are required\n\n%s", kEmbedHelp);
        return 2;
    }
    const bool quiet = args.has("--quiet");
    const std::string npyDir = args.value("--npy");
    if (!npyDir.empty()) {
        std::error_code ec;
        std::filesystem::create_directories(npyDir, ec);
        if (ec) {
            std::fprintf(stderr, "cytosae embed: cannot create %s: %s\n", npyDir.c_str(), ec.message().c_str());
            return 1;
        }
    }

    auto engine = model::Engine::load(params);
    if (!engine) {
        std::fprintf(stderr, "error: %s\n", engine.message().c_str());
        return 1;
    }
    for (const auto &n : (*engine)->takeNotices())
        std::fprintf(stderr, "warning: %s\n", n.c_str());
    const auto &vit = (*engine)->vit();
    const auto &sae = (*engine)->sae();
    if (!quiet)
        std::printf("ViT: %s, width %d, depth %d, %d heads, patch %d (%s)\nSAE: %d -> %d latents, block %d, on %s, %s\n",
                    params.vitPath.c_str(), vit.embedDim, vit.depth, vit.numHeads, vit.patchSize, vit.source.c_str(),
                    sae.dIn, sae.dSae, sae.blockIndex, (*engine)->deviceName().c_str(),
                    (*engine)->precisionPending() ? "precision decided on the first batch"
                                                  : (*engine)->precisionReason().empty()
                                                      ? model::precisionName((*engine)->precision())
                                                      : (*engine)->precisionReason().c_str());

    std::vector<Done> done;
    std::vector<std::pair<std::string, std::string>> failures;
    const auto &paths = args.positional();
    const auto start = std::chrono::steady_clock::now();
    int npyIndex = 0;
    for (size_t first = 0; first < paths.size(); first += size_t(batch)) {
        std::vector<imaging::DecodedImage> images;
        std::vector<std::string> names;
        for (size_t i = first; i < std::min(paths.size(), first + size_t(batch)); ++i) {
            auto img = imaging::decodeImageFile(paths[i]);
            if (!img) {
                failures.emplace_back(paths[i], img.message());
                std::fprintf(stderr, "error: %s: %s\n", paths[i].c_str(), img.message().c_str());
                continue;
            }
            for (const auto &note : img->info.notes)
                if (!quiet)
                    std::fprintf(stderr, "note: %s: %s\n", paths[i].c_str(), note.c_str());
            images.push_back(std::move(img.value()));
            names.push_back(paths[i]);
        }
        if (images.empty())
            continue;
        std::vector<model::RgbView> views;
        for (const auto &img : images)
            views.push_back({img.image.pixels.data(), img.image.width, img.image.height});
        const bool pending = (*engine)->precisionPending();
        auto result = (*engine)->run(views);
        if (pending && !(*engine)->precisionPending() && !quiet)
            std::printf("precision: %s\n", (*engine)->precisionReason().c_str());
        for (const auto &n : (*engine)->takeNotices()) // a CUDA fallback or a smaller batch
            std::fprintf(stderr, "warning: %s; now on %s\n", n.c_str(), (*engine)->deviceName().c_str());
        if (!result) {
            for (const auto &n : names) {
                failures.emplace_back(n, result.message());
                std::fprintf(stderr, "error: %s: %s\n", n.c_str(), result.message().c_str());
            }
            continue;
        }
        for (size_t i = 0; i < images.size(); ++i) {
            Done d;
            d.path = names[i];
            d.width = images[i].image.width;
            d.height = images[i].image.height;
            d.notes = images[i].info.notes;
            d.act = std::move((*result)[i]);
            if (!quiet) {
                std::vector<model::LatentAggregate> l = d.act.latents;
                std::sort(l.begin(), l.end(), [](const auto &x, const auto &y) { return x.mean > y.mean; });
                std::printf("\n%s  (%dx%d, %zu active latents, reconstruction error %.4f)\n", d.path.c_str(), d.width,
                            d.height, l.size(), d.act.reconError);
                std::printf("  %8s %10s %10s %8s\n", "latent", "mean", "max patch", "patches");
                for (size_t j = 0; j < l.size() && j < size_t(top); ++j)
                    std::printf("  %8d %10.4f %10.4f %8d\n", l[j].latent, l[j].mean, l[j].maxPatch, l[j].patchesAbove);
            }
            if (!npyDir.empty()) {
                char prefix[32];
                std::snprintf(prefix, sizeof prefix, "%03d_", npyIndex++);
                const std::string base = (std::filesystem::path(npyDir) / (prefix + stemOf(d.path))).string();
                const auto &a = d.act;
                const int64_t s = vit.imageSize;
                Status st = io::writeNpyFloat32(base + "_input.npy", a.inputPixels.data(), {3, s, s});
                if (st)
                    st = io::writeNpyFloat32(base + "_resid.npy", a.residual.data(), {a.numTokens, sae.dIn});
                if (st)
                    st = io::writeNpyFloat32(base + "_sae_latents.npy", a.denseLatents.data(), {a.numTokens, sae.dSae});
                if (st)
                    st = io::writeNpyFloat32(base + "_sae_recon.npy", a.reconstruction.data(), {a.numTokens, sae.dIn});
                if (!st) {
                    failures.emplace_back(d.path, st.message());
                    std::fprintf(stderr, "error: %s: %s\n", d.path.c_str(), st.message().c_str());
                }
                // The dense arrays are large (257 x 49152 floats for the real SAE): free them now.
                d.act.inputPixels = {};
                d.act.residual = {};
                d.act.reconstruction = {};
                d.act.denseLatents = {};
            }
            done.push_back(std::move(d));
        }
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

    if (args.has("--json")) {
        const std::string out = args.value("--json");
        std::ofstream file(out);
        if (!file) {
            std::fprintf(stderr, "error: %s: cannot open for writing\n", out.c_str());
            failures.emplace_back(out, "cannot open for writing");
        } else {
            io::JsonWriter json(file);
            json.beginObject();
            json.key("vit").beginObject();
            json.key("file").value(params.vitPath);
            json.key("sha256").value(vit.sha256);
            json.key("embed_dim").value(int64_t(vit.embedDim));
            json.key("depth").value(int64_t(vit.depth));
            json.key("patch_size").value(int64_t(vit.patchSize));
            json.endObject();
            json.key("sae").beginObject();
            json.key("file").value(params.saePath);
            json.key("sha256").value(sae.sha256);
            json.key("d_in").value(int64_t(sae.dIn));
            json.key("d_sae").value(int64_t(sae.dSae));
            json.key("block_layer").value(int64_t(sae.blockLayer));
            json.key("block_index").value(int64_t(sae.blockIndex));
            json.endObject();
            json.key("device").value((*engine)->deviceName());
            json.key("precision").value(std::string(model::precisionName((*engine)->precision())));
            json.key("precision_reason").value((*engine)->precisionReason());
            json.key("top_k").value(int64_t(top));
            json.key("patch_threshold").value(double(params.patchThreshold));
            json.key("images").beginArray();
            for (const auto &d : done)
                writeImageJson(json, d, top);
            json.endArray();
            json.key("errors").beginArray();
            for (const auto &[p, m] : failures)
                json.beginObject().key("path").value(p).key("message").value(m).endObject();
            json.endArray();
            json.endObject();
            file << "\n";
            if (!file) {
                std::fprintf(stderr, "error: %s: write failed\n", out.c_str());
                failures.emplace_back(out, "write failed");
            }
        }
    }
    if (!quiet)
        std::printf("\n%zu image(s) done, %zu failed, %.2f s (%.2f images/s) on %s in %s\n", done.size(), failures.size(),
                    seconds, seconds > 0 ? double(done.size()) / seconds : 0.0, (*engine)->deviceName().c_str(),
                    model::precisionName((*engine)->precision()));
    return failures.empty() ? 0 : 1;
}

} // namespace cytosae::cli
