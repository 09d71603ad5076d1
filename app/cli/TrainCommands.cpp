// cytosae train-sae | train-vit | build-demo-models | demo

#include "CliArgs.h"
#include "CliCommon.h"
#include "Commands.h"
#include "Interrupt.h"
#include "Progress.h"

#include "demo/DemoCohort.h"
#include "demo/SyntheticCells.h"
#include "pipeline/Importer.h"
#include "pipeline/Runner.h"
#include "store/ProjectDb.h"
#include "train/SaeTrainer.h"
#include "train/VitTrainer.h"

#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <unistd.h>

namespace fs = std::filesystem;

namespace cytosae::cli {

namespace {

int fail(const std::string &msg)
{
    finishProgress();
    std::fprintf(stderr, "error: %s\n", msg.c_str());
    return 1;
}

// "--mix atypical_promyelocyte=3,basophil=2": relative weights of the training cohort's cell
// types; a type not named keeps weight 1. Fills mix (normalised to sum 1) and canonical (the
// named weights in type order, "" when all are 1); returns an error message, "" when fine.
std::string parseCellMix(const std::string &text, std::vector<double> &mix, std::string &canonical)
{
    std::vector<double> w(size_t(demo::kCellTypeCount), 1.0);
    std::stringstream in(text);
    for (std::string item; std::getline(in, item, ',');) {
        const size_t eq = item.find('=');
        const auto type = demo::cellTypeFromName(item.substr(0, eq));
        double weight = 0;
        if (eq == std::string::npos || !type || !parseDouble(item.substr(eq + 1), weight) || weight < 0)
            return "--mix takes TYPE=WEIGHT[,TYPE=WEIGHT...] with cell types such as atypical_promyelocyte and "
                   "weights >= 0, not '" + item + "'";
        w[size_t(*type)] = weight;
    }
    double total = 0;
    for (double v : w)
        total += v;
    if (!(total > 0))
        return "--mix leaves no cell type with a weight above 0";
    std::ostringstream c;
    for (int t = 0; t < demo::kCellTypeCount; ++t)
        if (w[size_t(t)] != 1.0)
            c << (c.tellp() > 0 ? "," : "") << demo::cellTypeName(demo::CellType(t)) << '=' << w[size_t(t)];
    canonical = c.str();
    mix.resize(w.size());
    for (size_t t = 0; t < w.size(); ++t)
        mix[t] = w[t] / total; // all 1: exactly 1 / kCellTypeCount, as the bundled model was built
    return {};
}

const CliArgs::Bounds kPositive{0, std::numeric_limits<double>::infinity(), true}, kNonNegative{0};

// Accepted image paths (and class labels) of a project.
Result<std::vector<std::pair<std::string, std::string>>> projectImages(const std::string &project)
{
    // Opened for writing so that a project of an older schema is upgraded; only read here.
    auto db = store::ProjectDb::open(project, store::ProjectDb::OpenMode::Existing);
    if (!db)
        return db.error().withContext(project);
    auto q = db->db().prepare("SELECT path, coalesce(class, '') FROM image WHERE qc_status = 'ok' ORDER BY id");
    if (!q)
        return q.error();
    std::vector<std::pair<std::string, std::string>> out;
    while (q->step())
        out.emplace_back(q->columnText(0), q->columnText(1));
    if (out.empty())
        return Error(project + ": the project has no accepted images; import some first");
    return out;
}

void printMetrics(const train::TrainMetrics &m)
{
    finishProgress();
    std::fprintf(stderr, "step %6d  loss %.5f  mse %.5f  l1 %.5f  ghost %.5f  L0 %.1f  explained %.3f  dead %d  lr %.2e\n",
                 m.step, m.loss, m.mse, m.l1, m.ghost, m.l0, m.explained, m.deadLatents, m.lr);
}

const char *kTrainSaeHelp =
    "Usage: cytosae train-sae PROJECT --vit FILE --out SAE.pt [options]\n"
    "\n"
    "Trains a sparse autoencoder on the ViT residuals (block -2, all tokens) of the project's\n"
    "images with the CytoSAE recipe and saves it in the CytoSAE file format. Ctrl-C stops and\n"
    "saves the state; running the same command again resumes.\n"
    "\n"
    "Options:\n"
    "  --expansion N      d_sae = N x d_in (default 8; the published SAE used 64)\n"
    "  --steps N          training steps (default 2000)\n"
    "  --batch-images N   images per step, x tokens per image (default 64)\n"
    "  --lr X             Adam learning rate (default 4e-4)\n"
    "  --l1 X             L1 coefficient (default 8e-5)\n"
    "  --warmup N         warm-up steps (default 500)\n"
    "  --block L          ViT block (default -2)\n"
    "  --max-tokens N     activations held in memory (default 4000000)\n"
    "  --no-ghost-grads   train without ghost gradients\n"
    "  --seed N           (default 42)\n"
    "  --device D         auto | cpu | cuda\n"
    "  --fresh            ignore a saved state and start over\n";

const char *kTrainVitHelp =
    "Usage: cytosae train-vit PROJECT --out VIT.pth [options]\n"
    "\n"
    "Trains a small DINOv2-architecture ViT to classify the project's cells by their class\n"
    "label and saves it as a DinoBloom-format checkpoint (this is how the demo model is made).\n"
    "\n"
    "Options:\n"
    "  --width N          embedding width, a multiple of 16 but not of 64 (default 96)\n"
    "  --depth N          blocks (default 4)\n"
    "  --epochs N         (default 3)\n"
    "  --batch N          (default 32)\n"
    "  --lr X             AdamW learning rate (default 1e-3)\n"
    "  --seed N           (default 7)\n"
    "  --device D         auto | cpu | cuda\n";

const char *kBuildDemoHelp =
    "Usage: cytosae build-demo-models [--out DIR] [--images N] [--vit-epochs N] [--sae-steps N]\n"
    "                                 [--expansion N] [--l1 X] [--part-layer final|sae|sae-raw]\n"
    "                                 [--part-weight X] [--part-balance CAP]\n"
    "                                 [--part-head-scale S] [--mix TYPE=W,...]\n"
    "                                 [--work DIR [--sae-only]]\n"
    "\n"
    "Rebuilds the demo model from scratch, deterministically: generates a training cohort of\n"
    "synthetic cells (seed 1001; the demo project uses other seeds), trains the demo ViT on\n"
    "the cell types, then an SAE on its block -2 residuals. Writes demo_vit.pth, demo_sae.pt\n"
    "and model_card.json into DIR (default models/demo). The ViT also learns which parts each\n"
    "patch holds: --part-layer sae-raw (default) attaches that per-patch part head to the\n"
    "block -2 residual exactly as the SAE reads it, sae to its layer norm, final to the final\n"
    "tokens; --part-weight scales its loss against the cell-type loss (default 1);\n"
    "--part-balance weighs each part's positive patches by negatives / positives, at most CAP\n"
    "(default 1000; 0: unweighted), so that rare parts such as Auer rods are learnt;\n"
    "--part-head-scale holds the part head's rows at norm S (default 12; 0: free), so that\n"
    "each part must be a large direction of the residual. --mix weighs the training cohort's\n"
    "cell types (e.g. atypical_promyelocyte=3; types not named weigh 1; default:\n"
    "class-balanced). A --work folder keeps the generated cohort for the next call with the\n"
    "same --images and --mix.\n"
    "The defaults (3000 images, 16 ViT epochs, 3000 SAE steps) build the bundled\n"
    "models/demo; it takes about 45 minutes on two cores.\n";

const char *kDemoHelp =
    "Usage: cytosae demo [DIR] [options]\n"
    "\n"
    "Creates the demo project in DIR (default ./cytosae-demo): generates a cohort of synthetic\n"
    "blood-cell images for five diagnoses (controls, APL with Auer rods, blast-rich AML,\n"
    "CML-like, monocytic), imports it, runs it through the demo ViT + SAE and computes the\n"
    "concept statistics. Open DIR/demo.cyto in the explorer afterwards.\n"
    "\n"
    "Options:\n"
    "  --patients-per-group N   (default 8)\n"
    "  --cells N                cells per patient (default 40)\n"
    "  --vit FILE --sae FILE    other models (default: the bundled demo model)\n"
    "  --seed N                 cohort seed (default 2024)\n"
    "  --threads N              CPU threads for the model (default: as many cores as are free)\n";

} // namespace

// The bundled demo model: $CYTOSAE_MODELS, the source tree next to the build, or the
// installed share folder.
std::string findDemoModelDir()
{
    std::vector<fs::path> candidates;
    if (const char *env = std::getenv("CYTOSAE_MODELS"))
        candidates.emplace_back(env);
    std::error_code ec;
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) {
        for (fs::path dir = exe.parent_path(); !dir.empty() && dir != dir.root_path(); dir = dir.parent_path()) {
            candidates.push_back(dir / "models" / "demo");
            candidates.push_back(dir / "share" / "cytosae" / "models" / "demo");
        }
    }
    candidates.emplace_back("models/demo");
    for (const auto &c : candidates)
        if (fs::exists(c / "demo_vit.pth", ec) && fs::exists(c / "demo_sae.pt", ec))
            return c.string();
    return {};
}

int trainSaeCommand(int argc, char **argv)
{
    CliArgs args({"--vit", "--out", "--expansion", "--steps", "--batch-images", "--lr", "--l1", "--warmup", "--block",
                  "--max-tokens", "--seed", "--device", "--threads"},
                 {"--help", "--no-ghost-grads", "--fresh"});
    if (!args.parse(argc, argv, 2))
        return usageError("train-sae", args.error(), kTrainSaeHelp);
    if (args.has("--help")) {
        std::fputs(kTrainSaeHelp, stdout);
        return 0;
    }
    if (args.positional().size() != 1 || !args.has("--vit") || !args.has("--out"))
        return usageError("train-sae", "expected PROJECT, --vit and --out", kTrainSaeHelp);
    train::SaeTrainOptions o;
    o.vitPath = args.value("--vit");
    o.outPath = args.value("--out");
    o.ghostGrads = !args.has("--no-ghost-grads");
    o.resume = !args.has("--fresh");
    int seed = 42, maxTokensM = 0;
    if (!args.intValue("--expansion", 8, 1, 1024, o.expansionFactor) || !args.intValue("--steps", 2000, 1, 10000000, o.steps) ||
        !args.intValue("--batch-images", 64, 1, 100000, o.batchImages) ||
        !args.intValue("--warmup", 500, 0, 10000000, o.warmupSteps) || !args.intValue("--block", -2, -1000, 1000, o.blockLayer) ||
        !args.intValue("--seed", 42, 0, 1 << 30, seed) || !args.intValue("--threads", 0, 0, 1024, o.threads) ||
        !args.intValue("--max-tokens", 4000000, 1000, 2000000000, maxTokensM))
        return usageError("train-sae", args.error(), kTrainSaeHelp);
    o.seed = uint64_t(seed);
    o.maxBufferTokens = maxTokensM;
    if (!args.doubleValue("--lr", o.lr, kPositive, o.lr) ||
        !args.doubleValue("--l1", o.l1Coefficient, kNonNegative, o.l1Coefficient))
        return usageError("train-sae", args.error(), kTrainSaeHelp);
    if (std::string error; !deviceOption(args, o.device, error))
        return usageError("train-sae", error, kTrainSaeHelp);
    auto images = projectImages(args.positional()[0]);
    if (!images)
        return fail(images.message());
    std::vector<std::string> paths;
    for (const auto &[p, c] : *images)
        paths.push_back(p);
    InterruptGuard guard;
    std::atomic<bool> &interrupted = interruptFlag();
    auto report = train::trainSae(paths, o, stderrProgress(), printMetrics, &interrupted);
    finishProgress();
    if (!report)
        return fail(report.message());
    if (report->cancelled) {
        std::printf("stopped at step %d; the state is saved, run the same command to resume\n", report->steps);
        return 1;
    }
    std::printf("SAE %d -> %d trained for %d steps on %lld tokens%s (%s): MSE %.5f, L0 %.1f, explained %.3f, %d dead\n"
                "wrote %s\n",
                report->dIn, report->dSae, report->steps, (long long)report->bufferTokens,
                report->resumed ? " (resumed)" : "", report->device.c_str(), report->last.mse, report->last.l0,
                report->last.explained, report->last.deadLatents, report->outPath.c_str());
    return 0;
}

int trainVitCommand(int argc, char **argv)
{
    CliArgs args({"--out", "--width", "--depth", "--epochs", "--batch", "--lr", "--seed", "--device", "--threads"},
                 {"--help"});
    if (!args.parse(argc, argv, 2))
        return usageError("train-vit", args.error(), kTrainVitHelp);
    if (args.has("--help")) {
        std::fputs(kTrainVitHelp, stdout);
        return 0;
    }
    if (args.positional().size() != 1 || !args.has("--out"))
        return usageError("train-vit", "expected PROJECT and --out", kTrainVitHelp);
    train::VitTrainOptions o;
    o.outPath = args.value("--out");
    int seed = 7;
    if (!args.intValue("--width", 96, 16, 4096, o.embedDim) || !args.intValue("--depth", 4, 2, 64, o.depth) ||
        !args.intValue("--epochs", 3, 1, 1000, o.epochs) || !args.intValue("--batch", 32, 1, 4096, o.batch) ||
        !args.intValue("--seed", 7, 0, 1 << 30, seed) || !args.intValue("--threads", 0, 0, 1024, o.threads))
        return usageError("train-vit", args.error(), kTrainVitHelp);
    o.seed = uint64_t(seed);
    if (!args.doubleValue("--lr", o.lr, kPositive, o.lr))
        return usageError("train-vit", args.error(), kTrainVitHelp);
    if (std::string error; !deviceOption(args, o.device, error))
        return usageError("train-vit", error, kTrainVitHelp);
    auto images = projectImages(args.positional()[0]);
    if (!images)
        return fail(images.message());
    std::map<std::string, int> classIds;
    std::vector<train::LabelledImage> labelled;
    for (const auto &[p, c] : *images) {
        if (c.empty())
            continue;
        auto it = classIds.emplace(c, int(classIds.size())).first;
        labelled.push_back({p, it->second, {}});
    }
    if (classIds.size() < 2)
        return fail("the project's images need at least two class labels to train on");
    std::vector<std::string> names(classIds.size());
    for (const auto &[n, id] : classIds)
        names[size_t(id)] = n;
    InterruptGuard guard;
    std::atomic<bool> &interrupted = interruptFlag();
    auto report = train::trainVitClassifier(labelled, names, o, stderrProgress(), &interrupted);
    finishProgress();
    if (!report)
        return fail(report.message());
    if (report->cancelled)
        return fail("cancelled");
    std::printf("ViT trained: %d epochs, %d steps on %d images; loss %.4f, train accuracy %.3f, held-out accuracy %.3f "
                "(%d images)\nwrote %s\n",
                report->epochs, report->steps, report->trainImages, report->finalLoss, report->trainAccuracy,
                report->validationAccuracy, report->validationImages, o.outPath.c_str());
    return 0;
}

namespace {

// vit is null with --sae-only: the ViT's line is kept from the card already there.
Status writeModelCard(const fs::path &dir, const train::VitTrainReport *vit, const train::SaeTrainReport &sae,
                      const train::VitTrainOptions &vo, const train::SaeTrainOptions &so, int trainImages,
                      const std::string &cohort, const std::string &rebuild)
{
    std::string vitLine;
    if (!vit) {
        std::ifstream old(dir / "model_card.json");
        for (std::string line; std::getline(old, line);)
            if (line.rfind("  \"vit\": {", 0) == 0)
                vitLine = line + "\n";
        if (vitLine.empty())
            vitLine = "  \"vit\": {\"file\": \"demo_vit.pth\", \"note\": \"reused with --sae-only; no card found\"},\n";
    } else {
        const char *partHead = !vo.patchHeadOnSaeLayer   ? "final tokens"
                               : vo.patchHeadRawResidual ? "block -2 residual, raw"
                                                         : "block -2 residual";
        std::ostringstream v;
        v << "  \"vit\": {\"file\": \"demo_vit.pth\", \"format\": \"DinoBloom teacher checkpoint\", \"embed_dim\": "
          << vo.embedDim << ", \"depth\": " << vo.depth << ", \"heads\": " << vo.embedDim / 16 << ", \"patch\": "
          << vo.patchSize << ", \"image_size\": " << vo.grid * vo.patchSize << ", \"epochs\": " << vit->epochs
          << ", \"train_images\": " << vit->trainImages << ", \"heldout_accuracy\": " << vit->validationAccuracy
          << ", \"part_head\": \"" << partHead
          << "\", \"part_loss_weight\": " << vo.patchLossWeight << ", \"part_positive_weight_cap\": "
          << vo.patchPositiveWeightCap << ", \"part_head_scale\": " << vo.patchHeadScale << ", \"seed\": " << vo.seed
          << "},\n";
        vitLine = v.str();
    }
    std::ofstream out(dir / "model_card.json");
    out << "{\n"
        << "  \"what\": \"CytoSAE Explorer demo model: a small DINOv2-architecture ViT trained natively to classify "
           "synthetic May-Gruenwald-Giemsa blood cells (10 types), and a CytoSAE-recipe SAE on its block -2 residuals. "
           "For demonstration and testing only: it has never seen a real blood smear.\",\n"
        << vitLine
        << "  \"sae\": {\"file\": \"demo_sae.pt\", \"format\": \"CytoSAE\", \"d_in\": " << sae.dIn << ", \"d_sae\": "
        << sae.dSae << ", \"block_layer\": " << so.blockLayer << ", \"steps\": " << sae.steps << ", \"l1\": "
        << so.l1Coefficient << ", \"final_l0\": " << sae.last.l0 << ", \"explained_variance\": " << sae.last.explained
        << ", \"dead_latents\": " << sae.last.deadLatents << ", \"seed\": " << so.seed << "},\n"
        << "  \"training_data\": {\"generator\": \"core/demo (seed 1001, " << cohort
        << ")\", \"images\": " << trainImages << "},\n"
        << "  \"rebuild\": \"" << rebuild << "\"\n"
        << "}\n";
    if (!out)
        return Error((dir / "model_card.json").string() + ": write failed");
    return Status::success();
}

} // namespace

int buildDemoModelsCommand(int argc, char **argv)
{
    CliArgs args({"--out", "--images", "--vit-epochs", "--sae-steps", "--threads", "--l1", "--work", "--expansion",
                  "--part-layer", "--part-weight", "--part-balance", "--part-head-scale", "--mix"},
                 {"--help", "--sae-only"});
    if (!args.parse(argc, argv, 2))
        return usageError("build-demo-models", args.error(), kBuildDemoHelp);
    if (args.has("--help")) {
        std::fputs(kBuildDemoHelp, stdout);
        return 0;
    }
    int images = 3000, epochs = 16, steps = 3000, threads = 0, expansion = 8;
    if (!args.intValue("--images", 3000, 50, 1000000, images) || !args.intValue("--expansion", 8, 1, 256, expansion) || !args.intValue("--vit-epochs", 16, 1, 100, epochs) ||
        !args.intValue("--sae-steps", 3000, 10, 1000000, steps) || !args.intValue("--threads", 0, 0, 1024, threads))
        return usageError("build-demo-models", args.error(), kBuildDemoHelp);
    double l1 = 1e-3;
    if (!args.doubleValue("--l1", 1e-3, kNonNegative, l1))
        return usageError("build-demo-models", args.error(), kBuildDemoHelp);
    const std::string partLayer = args.value("--part-layer", "sae-raw");
    if (partLayer != "final" && partLayer != "sae" && partLayer != "sae-raw")
        return usageError("build-demo-models", "--part-layer is 'final', 'sae' or 'sae-raw', not '" + partLayer + "'",
                          kBuildDemoHelp);
    double partWeight = 1.0, partBalance = 1000.0, partHeadScale = 12.0;
    if (!args.doubleValue("--part-weight", partWeight, kNonNegative, partWeight) ||
        !args.doubleValue("--part-balance", partBalance, kNonNegative, partBalance) ||
        !args.doubleValue("--part-head-scale", partHeadScale, kNonNegative, partHeadScale))
        return usageError("build-demo-models", args.error(), kBuildDemoHelp);
    std::vector<double> cellMix;
    std::string mixText;
    if (std::string e = parseCellMix(args.value("--mix"), cellMix, mixText); !e.empty())
        return usageError("build-demo-models", e, kBuildDemoHelp);
    const fs::path out = args.value("--out", "models/demo");
    std::error_code ec;
    fs::create_directories(out, ec);
    const bool keepWork = args.has("--work");
    const fs::path work = keepWork ? fs::path(args.value("--work"))
                                   : fs::temp_directory_path() / ("cytosae-demo-build-" + std::to_string(::getpid()));
    const bool saeOnly = args.has("--sae-only");
    if (!keepWork)
        fs::remove_all(work, ec);
    InterruptGuard guard;
    std::atomic<bool> &interrupted = interruptFlag();

    // A training set from the generator (seed 1001; the demo cohort uses others), class-balanced
    // unless --mix weighs the types.
    demo::PatientSpec spec;
    spec.code = "TRAIN";
    spec.diagnosis = "training";
    spec.cellMix = cellMix;
    spec.cells = images;
    spec.seed = 1001;
    const std::string project = (work / "train.cyto").string();
    // The work folder records which cohort it holds, so that a later call with other --images
    // or --mix does not silently train on the old one.
    const fs::path stampPath = work / "cohort.txt";
    std::ostringstream stampText;
    stampText << "images " << images << " seed " << spec.seed << " mix " << (mixText.empty() ? "balanced" : mixText)
              << "\n";
    if (fs::exists(project, ec)) {
        std::ifstream stampIn(stampPath);
        const std::string held((std::istreambuf_iterator<char>(stampIn)), std::istreambuf_iterator<char>());
        if (held != stampText.str())
            return fail(work.string() + ": holds a training cohort made with other options (" +
                        (held.empty() ? std::string("no record in cohort.txt")
                                      : "cohort.txt: " + held.substr(0, held.find('\n'))) +
                        "); give another --work folder or delete this one");
    } else {
        std::fprintf(stderr, "generating %d training cells in %s\n", images, work.string().c_str());
        auto written = demo::writeDemoCohort((work / "cells").string(), {spec}, {}, {}, &interrupted);
        if (!written)
            return fail(written.message());
        auto db = store::ProjectDb::open(project, store::ProjectDb::OpenMode::Create);
        if (!db)
            return fail(db.message());
        pipeline::ImportOptions io;
        io.source = (work / "cells" / "manifest.csv").string();
        auto r = pipeline::importImages(*db, io, stderrProgress(), &interrupted);
        finishProgress();
        if (!r)
            return fail(r.message());
        std::ofstream stampOut(stampPath);
        stampOut << stampText.str();
        if (!stampOut)
            return fail(stampPath.string() + ": write failed");
    }
    auto labelledImages = projectImages(project);
    if (!labelledImages)
        return fail(labelledImages.message());
    std::map<std::string, int> ids;
    std::vector<train::LabelledImage> labelled;
    std::vector<std::string> paths;
    const int grid = 16, parts = demo::kPartCount;
    for (const auto &[p, c] : *labelledImages) {
        train::LabelledImage li{p, ids.emplace(c, int(ids.size())).first->second, {}};
        // Patch targets from the generator's masks (the cell is regenerated from its seed):
        // which parts cover at least 10 % of each patch of the 224 px input.
        const std::string stem = fs::path(p).stem().string(); // TRAIN_<index>_<type>
        const size_t a = stem.find('_'), b = stem.find('_', a + 1);
        const int index = std::stoi(stem.substr(a + 1, b - a - 1));
        const demo::CohortImage ci = demo::cohortImage(spec, index);
        const demo::SyntheticCell cell = demo::generateCell(ci.type, ci.seed);
        li.patchTargets.assign(size_t(grid * grid * parts), 0);
        for (int q = 0; q < grid * grid; ++q) {
            const int x0 = (q % grid) * cell.width / grid, x1 = (q % grid + 1) * cell.width / grid;
            const int y0 = (q / grid) * cell.height / grid, y1 = (q / grid + 1) * cell.height / grid;
            for (int part = 0; part < parts; ++part) {
                int covered = 0;
                for (int y = y0; y < y1; ++y)
                    for (int x = x0; x < x1; ++x)
                        covered += cell.parts[size_t(part)].pixels[size_t(y * cell.width + x)] != 0;
                li.patchTargets[size_t(q * parts + part)] = covered * 10 >= (x1 - x0) * (y1 - y0);
            }
        }
        labelled.push_back(std::move(li));
        paths.push_back(p);
    }
    std::vector<std::string> names(ids.size());
    for (const auto &[n, id] : ids)
        names[size_t(id)] = n;

    train::VitTrainOptions vo;
    vo.outPath = (out / "demo_vit.pth").string();
    vo.epochs = epochs;
    vo.threads = threads;
    vo.device = model::DeviceChoice::Cpu; // deterministic and the same on every machine
    vo.patchTargetCount = parts;
    vo.patchHeadOnSaeLayer = partLayer != "final";
    vo.patchHeadRawResidual = partLayer == "sae-raw";
    vo.patchLossWeight = partWeight;
    vo.patchPositiveWeightCap = partBalance;
    vo.patchHeadScale = partHeadScale;
    Result<train::VitTrainReport> vit = train::VitTrainReport{};
    if (!saeOnly) {
        vit = train::trainVitClassifier(labelled, names, vo, stderrProgress(), &interrupted);
        finishProgress();
        if (!vit)
            return fail(vit.message());
        if (vit->cancelled)
            return fail("cancelled");
        std::printf("demo ViT: held-out accuracy %.3f on %d images\n", vit->validationAccuracy, vit->validationImages);
    } else if (!fs::exists(vo.outPath, ec)) {
        return fail(vo.outPath + ": no ViT to reuse (--sae-only)");
    }

    train::SaeTrainOptions so;
    so.vitPath = vo.outPath;
    so.outPath = (out / "demo_sae.pt").string();
    so.expansionFactor = expansion;
    so.steps = steps;
    so.batchImages = 32;
    so.warmupSteps = std::min(500, steps / 5);
    so.l1Coefficient = l1;
    so.modelName = "cytosae_demo_vit";
    so.device = model::DeviceChoice::Cpu;
    so.threads = threads;
    so.resume = false;
    auto sae = train::trainSae(paths, so, stderrProgress(), printMetrics, &interrupted);
    finishProgress();
    if (!sae)
        return fail(sae.message());
    if (sae->cancelled)
        return fail("cancelled");
    std::ostringstream rebuild; // the options that reproduce these files (same thread count)
    rebuild << "cytosae build-demo-models --out models/demo --images " << labelled.size() << " --vit-epochs " << epochs
            << " --sae-steps " << steps << " --expansion " << expansion << " --l1 " << l1 << " --part-layer " << partLayer
            << " --part-weight " << partWeight << " --part-balance " << partBalance << " --part-head-scale "
            << partHeadScale;
    if (!mixText.empty())
        rebuild << " --mix " << mixText;
    if (saeOnly) // the ViT options above are this call's, not necessarily those the reused ViT was built with
        rebuild << " (the SAE of this card was trained with --sae-only on a ViT from an earlier build; its vit entry"
                   " is that build's)";
    if (Status s = writeModelCard(out, saeOnly ? nullptr : &*vit, *sae, vo, so, int(labelled.size()),
                                  mixText.empty() ? "class-balanced" : "cell-type weights " + mixText, rebuild.str());
        !s)
        return fail(s.message());
    if (!keepWork)
        fs::remove_all(work, ec);
    std::printf("demo SAE: %d latents, L0 %.1f, explained variance %.3f, %d dead\nwrote %s\n", sae->dSae, sae->last.l0,
                sae->last.explained, sae->last.deadLatents, out.string().c_str());
    return 0;
}

int demoCommand(int argc, char **argv)
{
    CliArgs args({"--patients-per-group", "--cells", "--vit", "--sae", "--seed", "--threads"}, {"--help"});
    if (!args.parse(argc, argv, 2))
        return usageError("demo", args.error(), kDemoHelp);
    if (args.has("--help")) {
        std::fputs(kDemoHelp, stdout);
        return 0;
    }
    int perGroup = 4, cells = 40, seed = 2024, threads = 0;
    if (!args.intValue("--patients-per-group", 8, 1, 1000, perGroup) || !args.intValue("--cells", 40, 1, 100000, cells) ||
        !args.intValue("--seed", 2024, 0, 1 << 30, seed) || !args.intValue("--threads", 0, 0, 1024, threads))
        return usageError("demo", args.error(), kDemoHelp);
    if (args.positional().size() > 1)
        return usageError("demo", "expected at most one folder", kDemoHelp);
    const fs::path dir = args.positional().empty() ? fs::path("cytosae-demo") : fs::path(args.positional()[0]);
    std::string vit = args.value("--vit"), sae = args.value("--sae");
    if (vit.empty() != sae.empty())
        return usageError("demo", "give both --vit and --sae, or neither", kDemoHelp);
    if (vit.empty()) {
        const std::string models = findDemoModelDir();
        if (models.empty())
            return fail("the demo model (demo_vit.pth, demo_sae.pt) was not found; set CYTOSAE_MODELS to its folder "
                        "or rebuild it with 'cytosae build-demo-models'");
        vit = models + "/demo_vit.pth";
        sae = models + "/demo_sae.pt";
    }
    InterruptGuard guard;
    std::atomic<bool> &interrupted = interruptFlag();
    const fs::path cohort = dir / "cohort";
    std::error_code ec;
    if (!fs::exists(cohort / "manifest.csv", ec)) {
        std::fprintf(stderr, "generating the demo cohort in %s\n", cohort.string().c_str());
        auto patients = demo::demoCohort(perGroup, cells, uint64_t(seed));
        auto written = demo::writeDemoCohort(cohort.string(), patients, {}, [](int done, int total) {
            static auto bar = stderrProgress();
            ProgressInfo p;
            p.stage = "cohort";
            p.done = done;
            p.total = total;
            bar(p);
        }, &interrupted);
        finishProgress();
        if (!written)
            return fail(written.message());
    }
    const std::string project = (dir / "demo.cyto").string();
    {
        auto db = store::ProjectDb::open(project, store::ProjectDb::OpenMode::Create);
        if (!db)
            return fail(db.message());
        pipeline::ImportOptions io;
        io.source = (cohort / "manifest.csv").string();
        io.patientTable = (cohort / "patients.csv").string();
        auto r = pipeline::importImages(*db, io, stderrProgress(), &interrupted);
        finishProgress();
        if (!r)
            return fail(r.message());
        std::printf("imported %lld cells (%lld already there, %lld rejected)\n", (long long)r->added,
                    (long long)r->alreadyPresent, (long long)r->rejected);
        if (r->rejected > 0)
            return fail(std::to_string(r->rejected) + " generated cell(s) were rejected; see the messages above");
    }
    pipeline::RunOptions ro;
    ro.engine.vitPath = vit;
    ro.engine.saePath = sae;
    ro.engine.threads = threads;
    // fp32: the demo's documented figures (docs/analysis.md, concept recovery) were measured
    // on fp32 runs and must come out the same; `cytosae run` defaults to auto.
    ro.engine.precision = model::Precision::Fp32;
    auto run = pipeline::runProject(project, ro, stderrProgress(), &interrupted);
    finishProgress();
    if (!run)
        return fail(run.message());
    if (run->cancelled) {
        std::printf("cancelled; run 'cytosae demo %s' again to finish\n", dir.string().c_str());
        return 1;
    }
    std::printf("demo project ready: %s (%lld cells run on %s in %.1f s)\n"
                "open it with: cytosae-explorer %s\n",
                project.c_str(), (long long)(run->processed + run->alreadyDone), run->device.c_str(), run->seconds,
                project.c_str());
    return run->failed ? 1 : 0;
}

} // namespace cytosae::cli
