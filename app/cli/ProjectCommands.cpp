// cytosae import | run | stats | top | export: the project database from the command line.

#include "CliArgs.h"
#include "CliCommon.h"
#include "Commands.h"
#include "io/Csv.h"
#include "Interrupt.h"
#include "Progress.h"

#include "pipeline/Importer.h"
#include "pipeline/Runner.h"
#include "store/Integrity.h"
#include "store/ProjectDb.h"
#include "store/Shards.h"

#include <csignal>
#include <cstdio>
#include <fstream>
#include <optional>

namespace cytosae::cli {

bool deviceOption(const CliArgs &args, model::DeviceChoice &device, std::string &error)
{
    if (model::parseDeviceChoice(args.value("--device", "auto"), device))
        return true;
    error = "--device must be auto, cpu or cuda, got '" + args.value("--device") + "'";
    return false;
}

bool engineOptions(const CliArgs &args, model::EngineParams &params, std::string &error)
{
    if (!deviceOption(args, params.device, error))
        return false;
    if (model::parsePrecision(args.value("--precision", "auto"), params.precision))
        return true;
    error = "--precision must be fp32, bf16 or auto, got '" + args.value("--precision") + "'";
    return false;
}

int usageError(const char *cmd, const std::string &msg, const char *help)
{
    std::fprintf(stderr, "cytosae %s: %s\n\n%s", cmd, msg.c_str(), help);
    return 2;
}

bool parseOrHelp(CliArgs &args, int argc, char **argv, const char *cmd, const char *help, int &exitCode)
{
    if (!args.parse(argc, argv, 2)) {
        exitCode = usageError(cmd, args.error(), help);
        return false;
    }
    if (args.has("--help")) {
        std::fputs(help, stdout);
        exitCode = 0;
        return false;
    }
    return true;
}

Result<store::ProjectDb> openProject(const std::string &path, store::ProjectDb::OpenMode mode)
{
    auto db = store::ProjectDb::open(path, mode);
    if (!db)
        return db.error().withContext(path);
    if (!db->upgradeBackup().empty())
        std::fprintf(stderr, "note: %s was upgraded to schema %d; the file as it was is kept as %s\n", path.c_str(),
                     store::kSchemaVersion, db->upgradeBackup().c_str());
    return db;
}

// --run ID or the project's newest finished run.
Result<store::RunRecord> pickRun(store::ProjectDb &db, CliArgs &args)
{
    if (args.has("--run")) {
        int id = 0;
        if (!args.intValue("--run", 0, 1, 1 << 30, id))
            return Error(args.error());
        return db.run(id);
    }
    auto run = db.latestRun();
    if (!run)
        return run.error();
    if (!run->has_value())
        return Error("this project has no runs yet; use 'cytosae run' first");
    return **run;
}

// Opens PROJECT and picks its run (--run ID or the newest finished one); on failure prints
// the reason and returns false.
bool openProjectRun(const std::string &path, store::ProjectDb::OpenMode mode, CliArgs &args,
                    std::optional<store::ProjectDb> &db, store::RunRecord &run)
{
    auto opened = openProject(path, mode);
    if (!opened) {
        std::fprintf(stderr, "error: %s\n", opened.message().c_str());
        return false;
    }
    db.emplace(std::move(opened.value()));
    auto picked = pickRun(*db, args);
    if (!picked) {
        std::fprintf(stderr, "error: %s\n", picked.message().c_str());
        return false;
    }
    run = *picked;
    return true;
}

namespace {

using io::csvField;

const char *kImportHelp =
    "Usage: cytosae import PROJECT SOURCE [options]\n"
    "\n"
    "Adds the images of SOURCE (a folder, or a .csv manifest with columns path, patient,\n"
    "class, diagnosis and any extra columns) to the project database PROJECT, creating it if\n"
    "needed. Every file is decoded and hashed; bad files are recorded as rejected with the\n"
"reason. Files already in the project are not added again.\n"
    "\n"
    "Exit status: 0 every file was added or already there, 1 a file was rejected, a row\n"
    "of the manifest or the patient table was not used, a folder could not be read, or\n"
    "the import was interrupted (what was added stays), 2 usage error.\n"
    "\n"
    "Options:\n"
    "  --layout L          folder layout: class (label = parent folder; default), patient\n"
    "                      (first-level folder = patient, AML_Hehr), diagnosis-patient, flat\n"
    "  --patients CSV      patient table: patient, diagnosis, other columns kept as metadata\n"
    "  --follow-symlinks   follow symbolic links out of the folder (off by default)\n"
    "  --threads N         decoding threads (default: all cores)\n"
    "  --smear             SOURCE holds whole smear fields: detect their white cells\n"
    "                      (see 'cytosae import --smear --help')\n";

const char *kRunHelp =
    "Usage: cytosae run PROJECT --vit FILE --sae FILE [options]\n"
    "\n"
    "Runs the ViT and the SAE on every accepted image of the project that has no results yet\n"
    "and stores all concept activations. An interrupted run (Ctrl-C, crash, kill) resumes\n"
    "where it stopped when started again with the same files and settings.\n"
    "\n"
    "Options:\n"
    "  --top-k K           latents stored per token (default 32, at most 255)\n"
    "  --threshold T       patch activation threshold (default 0.2)\n"
    "  --batch N           images per batch (default 8)\n"
    "  --device D          auto | cpu | cuda (default auto)\n"
    "  --precision P       fp32 | bf16 | auto (default auto: bf16 where the CPU has avx512_bf16\n"
    "                      or AMX, or on CUDA, and the first batch run both ways agrees with\n"
    "                      fp32; otherwise fp32). The run records its precision\n"
    "  --threads N         CPU threads for the model (default: as many cores as are free,\n"
    "                      fewer while other processes compute)\n"
    "  --readers N         decoding threads (default 1)\n"
    "  --no-stats          skip the per-latent statistics at the end\n"
    "  --shard I/N         only shard I of N (1 <= I <= N) of the images: those whose id\n"
    "                      modulo N is I-1; results go to --shard-db, the project is only read\n"
    "  --shard-db FILE     the shard's own database (created, or resumed); combine the N\n"
    "                      shard databases with 'cytosae merge'\n"
    "\n"
    "The device used is printed; when CUDA fails during the run, the run continues on the CPU\n"
    "(out of memory: with half the batch first) and prints a warning.\n";

const char *kMergeHelp =
    "Usage: cytosae merge PROJECT SHARD.cyto... [--no-stats]\n"
    "\n"
    "Combines the shard databases of a sharded run ('cytosae run PROJECT --shard I/N\n"
    "--shard-db FILE') into PROJECT as one new run, then computes its concept statistics.\n"
    "Checks first, and writes nothing if anything is wrong: every shard finished, all shards\n"
    "used the same ViT and SAE files (sha256) and settings, shards 1..N each given once, every\n"
    "accepted image of the project in exactly one shard, and the project has no results for\n"
    "these models and settings yet. The merge is one transaction.\n"
    "\n"
    "Options:\n"
    "  --no-stats          skip the per-latent statistics\n";

const char *kStatsHelp = "Usage: cytosae stats PROJECT [--run ID] [--recompute]\n"
                         "\n"
                         "Per-latent statistics of a run (firing frequency, mean activation, top images,\n"
                         "label entropy, dead/dense flags) and a project summary.\n";

const char *kTopHelp = "Usage: cytosae top PROJECT --latent K [options]\n"
                       "\n"
                       "The cells that activate latent K most (image-level mean over tokens).\n"
                       "\n"
                       "Options:\n"
                       "  --n N               how many (default 20)\n"
                       "  --patient CODE      only this patient's cells\n"
                       "  --class C           only cells of this class\n"
                       "  --diagnosis D       only cells of patients with this diagnosis\n"
                       "  --quantiles B       instead: B activation bins, --n cells sampled from each\n"
                       "  --run ID            a run other than the newest\n";

const char *kExportHelp = "Usage: cytosae export PROJECT --what WHAT --out FILE.csv [--run ID]\n"
                          "\n"
                          "WHAT: image-concepts  one row per image and active latent (mean, max patch, patches)\n"
                          "      latent-stats    one row per latent\n"
                          "      images          the image table with patient, class, QC status and reason\n";

const char *kCheckHelp =
    "Usage: cytosae check PROJECT\n"
    "\n"
    "Runs SQLite's full integrity check on the project file and reads every row of every\n"
    "table, then says what is damaged and what that means (which data cannot be trusted or is\n"
    "lost) and what to do. Never writes to the file. Commands that change a project run a\n"
    "quicker check first and refuse a damaged file.\n"
    "\n"
    "Exit status: 0 the file is intact, 1 it is damaged or cannot be read, 2 usage error.\n";

} // namespace

int checkCommand(int argc, char **argv)
{
    CliArgs args({}, {"--help"});
    int code = 0;
    if (!parseOrHelp(args, argc, argv, "check", kCheckHelp, code))
        return code;
    if (args.positional().size() != 1)
        return usageError("check", "expected PROJECT", kCheckHelp);
    const std::string path = args.positional()[0];
    auto report = store::checkIntegrity(path);
    if (!report) {
        std::fprintf(stderr, "error: %s: %s\n", path.c_str(), report.message().c_str());
        return 1;
    }
    const store::IntegrityReport &r = *report;
    std::printf("project %s (schema %d): %s\n", path.c_str(), r.schemaVersion, r.ok ? "intact" : "DAMAGED");
    std::printf("  %-22s %12s  %s\n", "table", "rows read", "state");
    for (const auto &t : r.tables)
        std::printf("  %-22s %12lld  %s\n", t.table.c_str(), (long long)t.rowsRead,
                    t.damaged ? ("DAMAGED: " + t.problem).c_str() : "ok");
    if (r.ok)
        return 0;
    std::printf("\nSQLite's integrity check found %zu problem(s)%s:\n", r.problems.size(),
                r.problems.size() >= 100 ? " (the first 100)" : "");
    for (size_t i = 0; i < r.problems.size() && i < 10; ++i)
        std::printf("  %s\n", r.problems[i].c_str());
    if (r.problems.size() > 10)
        std::printf("  ... and %zu more\n", r.problems.size() - 10);
    std::printf("\nWhat this means:\n");
    bool anyTable = false;
    for (const auto &t : r.tables)
        if (t.damaged) {
            anyTable = true;
            std::printf("  %s: %s cannot be trusted; rows may be missing or wrong (%lld could be read)\n",
                        t.table.c_str(), t.holds.empty() ? "its data" : t.holds.c_str(), (long long)t.rowsRead);
        }
    for (const auto &i : r.damagedIndexes)
        std::printf("  index %s is inconsistent with its table: the rows are intact, lookups through it may miss "
                    "some (SQLite's REINDEX rebuilds it, on a copy)\n",
                    i.c_str());
    if (!anyTable && r.damagedIndexes.empty())
        std::printf("  the damage is in pages SQLite could not attribute to one table; treat the whole file as "
                    "suspect\n");
    std::printf("\nWhat to do: the file was not changed, and CytoSAE Explorer will not write to it. Restore the "
                "project from a copy%s.",
                r.backups.empty() ? "" : " or from the backup an upgrade left beside it");
    for (const auto &b : r.backups)
        std::printf("\n  backup: %s", b.c_str());
    std::printf("\nTo salvage what is readable, work on a copy: 'sqlite3 COPY .recover | sqlite3 NEW.cyto'.\n");
    return 1;
}

int importCommand(int argc, char **argv)
{
    for (int i = 2; i < argc; ++i)
        if (std::string(argv[i]) == "--smear")
            return importSmearCommand(argc, argv);
    CliArgs args({"--layout", "--patients", "--threads"}, {"--help", "--follow-symlinks"});
    int code = 0;
    if (!parseOrHelp(args, argc, argv, "import", kImportHelp, code))
        return code;
    if (args.positional().size() != 2)
        return usageError("import", "expected PROJECT and SOURCE", kImportHelp);
    pipeline::ImportOptions options;
    options.source = args.positional()[1];
    options.patientTable = args.value("--patients");
    options.followSymlinks = args.has("--follow-symlinks");
    if (!args.intValue("--threads", 0, 0, 256, options.threads))
        return usageError("import", args.error(), kImportHelp);
    auto layout = pipeline::parseLayout(args.value("--layout", "class"));
    if (!layout)
        return usageError("import", layout.message(), kImportHelp);
    options.layout = *layout;

    auto db = openProject(args.positional()[0], store::ProjectDb::OpenMode::Create);
    if (!db) {
        std::fprintf(stderr, "error: %s\n", db.message().c_str());
        return 1;
    }
    InterruptGuard guard;
    std::atomic<bool> &interrupted = interruptFlag();
    auto report = pipeline::importImages(*db, options, stderrProgress(), &interrupted);
    finishProgress();
    if (!report) {
        std::fprintf(stderr, "error: %s\n", report.message().c_str());
        return 1;
    }
    printImportProblems(*report);
    std::printf("%lld image file(s) found: %lld added, %lld already in the project, %lld rejected%s\n",
                (long long)report->found, (long long)report->added, (long long)report->alreadyPresent,
                (long long)report->rejected, report->cancelled ? " (cancelled)" : "");
    if (report->patientsUpdated)
        std::printf("%lld patient(s) updated from %s\n", (long long)report->patientsUpdated,
                    options.patientTable.c_str());
    // Exit status 1 when anything failed: a rejected file, a manifest or patient-table row
    // that was not used, a folder that could not be read, or Ctrl-C.
    return (report->cancelled || report->rejected > 0 || !report->issues.empty()) ? 1 : 0;
}

int runCommand(int argc, char **argv)
{
    CliArgs args({"--vit", "--sae", "--top-k", "--threshold", "--batch", "--device", "--precision", "--threads",
                  "--readers", "--shard", "--shard-db"},
                 {"--help", "--no-stats"});
    int code = 0;
    if (!parseOrHelp(args, argc, argv, "run", kRunHelp, code))
        return code;
    if (args.positional().size() != 1 || !args.has("--vit") || !args.has("--sae"))
        return usageError("run", "expected PROJECT, --vit and --sae", kRunHelp);
    pipeline::RunOptions options;
    options.engine.vitPath = args.value("--vit");
    options.engine.saePath = args.value("--sae");
    options.computeStats = !args.has("--no-stats");
    if (!args.intValue("--top-k", 32, 1, 255, options.engine.topK) ||
        !args.intValue("--batch", 8, 1, 1024, options.batchSize) ||
        !args.intValue("--threads", 0, 0, 1024, options.engine.threads) ||
        !args.intValue("--readers", 1, 1, 64, options.readerThreads))
        return usageError("run", args.error(), kRunHelp);
    if (args.has("--threshold")) {
        char *end = nullptr;
        const std::string t = args.value("--threshold");
        options.engine.patchThreshold = std::strtof(t.c_str(), &end);
        if (end == t.c_str() || *end)
            return usageError("run", "--threshold needs a number", kRunHelp);
    }
    if (std::string error; !engineOptions(args, options.engine, error))
        return usageError("run", error, kRunHelp);
    options.engine.clsEmbedding = true;
    options.notice = [](const std::string &n) {
        finishProgress();
        std::fprintf(stderr, "warning: %s\n", n.c_str());
    };
    std::optional<store::ShardSpec> shard;
    if (args.has("--shard") != args.has("--shard-db"))
        return usageError("run", "--shard and --shard-db go together", kRunHelp);
    if (args.has("--shard")) {
        auto spec = store::parseShardSpec(args.value("--shard"));
        if (!spec)
            return usageError("run", spec.message(), kRunHelp);
        shard = *spec;
    }

    InterruptGuard guard;
    std::atomic<bool> &interrupted = interruptFlag();
    auto report = shard ? pipeline::runShard(args.positional()[0], args.value("--shard-db"), *shard, options,
                                             stderrProgress(), &interrupted)
                        : pipeline::runProject(args.positional()[0], options, stderrProgress(), &interrupted);
    finishProgress();
    if (!report) {
        std::fprintf(stderr, "error: %s\n", report.message().c_str());
        return 1;
    }
    for (const auto &[path, why] : report->failures)
        std::fprintf(stderr, "error: %s: %s\n", path.c_str(), why.c_str());
    std::printf("run %lld%s on %s in %s: %lld image(s) processed, %lld failed, %lld done before; %.1f s (%.2f images/s)%s\n",
                (long long)report->runId, report->resumed ? " (resumed)" : "", report->device.c_str(),
                report->precision.c_str(),
                (long long)report->processed, (long long)report->failed, (long long)report->alreadyDone,
                report->seconds, report->seconds > 0 ? double(report->processed) / report->seconds : 0.0,
                report->cancelled ? "; cancelled, run again to resume" : "");
    if (!report->precisionReason.empty())
        std::printf("precision: %s\n", report->precisionReason.c_str());
    if (shard)
        std::printf("shard %s written to %s; when all %d shards are done: cytosae merge %s SHARD...\n",
                    store::toString(*shard).c_str(), args.value("--shard-db").c_str(), shard->count,
                    args.positional()[0].c_str());
    return (report->failed || report->cancelled) ? 1 : 0;
}

int mergeCommand(int argc, char **argv)
{
    CliArgs args({}, {"--help", "--no-stats"});
    int code = 0;
    if (!parseOrHelp(args, argc, argv, "merge", kMergeHelp, code))
        return code;
    if (args.positional().size() < 2)
        return usageError("merge", "expected PROJECT and at least one SHARD", kMergeHelp);
    const std::vector<std::string> shards(args.positional().begin() + 1, args.positional().end());
    auto report = store::mergeShards(args.positional()[0], shards, !args.has("--no-stats"), stderrProgress());
    finishProgress();
    if (!report) {
        std::fprintf(stderr, "error: %s\n", report.message().c_str());
        return 1;
    }
    std::printf("merged %d shard(s) into %s as run %lld: %lld image(s) with results, %lld failed (%s)\n",
                report->shards, args.positional()[0].c_str(), (long long)report->runId, (long long)report->images,
                (long long)report->failed, report->device.c_str());
    if (report->failed > 0)
        std::fprintf(stderr, "error: %lld image(s) failed in the shards; 'cytosae stats %s' counts them\n",
                     (long long)report->failed, args.positional()[0].c_str());
    return report->failed > 0 ? 1 : 0;
}

int statsCommand(int argc, char **argv)
{
    CliArgs args({"--run"}, {"--help", "--recompute"});
    int code = 0;
    if (!parseOrHelp(args, argc, argv, "stats", kStatsHelp, code))
        return code;
    if (args.positional().size() != 1)
        return usageError("stats", "expected PROJECT", kStatsHelp);
    std::optional<store::ProjectDb> db;
    store::RunRecord picked;
    if (!openProjectRun(args.positional()[0], store::ProjectDb::OpenMode::Existing, args, db, picked))
        return 1;
    const store::RunRecord *run = &picked;
    auto summary = db->summary(run->id);
    if (summary && (args.has("--recompute") || summary->statsRows == 0)) {
        if (Status s = db->computeStats(run->id); !s) {
            std::fprintf(stderr, "error: %s\n", s.message().c_str());
            return 1;
        }
        summary = db->summary(run->id);
    }
    if (!summary) { // never a made-up count: the reason, and exit status 1
        std::fprintf(stderr, "error: %s: %s\n", args.positional()[0].c_str(), summary.message().c_str());
        return 1;
    }
    const store::ProjectSummary &s = *summary;
    std::printf("project %s\n", args.positional()[0].c_str());
    std::printf("  images: %lld accepted, %lld rejected; patients: %lld\n", (long long)s.acceptedImages,
                (long long)s.rejectedImages, (long long)s.patients);
    std::printf("run %lld (%s, on %s in %s, top-k %d, threshold %.2f, %d latents): %lld images with results, %lld errors\n",
                (long long)run->id, run->status.c_str(), run->device.c_str(), run->precision.c_str(), run->topK,
                run->patchThreshold, run->dSae, (long long)s.imagesWithResults, (long long)s.failedImages);
    std::printf("  latents: %lld alive, %lld dead, %lld dense (fire in > 50%% of images), %lld with mean activation > 0.1\n",
                (long long)s.alive, (long long)s.dead, (long long)s.dense, (long long)s.highMean);
    std::printf("  most frequent latents:\n  %8s %10s %10s %8s\n", "latent", "frequency", "mean act", "entropy");
    for (const auto &c : s.mostFrequent)
        std::printf("  %8d %10.4f %10.4f %8s\n", c.latent, c.firingFrequency, c.meanActivation.value_or(0.0),
                    c.labelEntropy ? std::to_string(*c.labelEntropy).substr(0, 6).c_str() : "-");
    return 0;
}

int topCommand(int argc, char **argv)
{
    CliArgs args({"--latent", "--n", "--patient", "--class", "--diagnosis", "--run", "--quantiles"}, {"--help"});
    int code = 0;
    if (!parseOrHelp(args, argc, argv, "top", kTopHelp, code))
        return code;
    int latent = 0, n = 20, bins = 0;
    if (args.positional().size() != 1 || !args.has("--latent"))
        return usageError("top", "expected PROJECT and --latent", kTopHelp);
    if (!args.intValue("--latent", 0, 0, 1 << 24, latent) || !args.intValue("--n", 20, 1, 100000, n) ||
        !args.intValue("--quantiles", 0, 0, 100, bins))
        return usageError("top", args.error(), kTopHelp);
    std::optional<store::ProjectDb> db;
    store::RunRecord picked;
    if (!openProjectRun(args.positional()[0], store::ProjectDb::OpenMode::ReadOnly, args, db, picked))
        return 1;
    const store::RunRecord *run = &picked;
    if (latent >= run->dSae) {
        std::fprintf(stderr, "error: latent %d does not exist (the SAE has %d)\n", latent, run->dSae);
        return 1;
    }
    store::CellFilter filter;
    filter.className = args.value("--class");
    filter.diagnosis = args.value("--diagnosis");
    if (args.has("--patient")) {
        auto p = db->db().prepare("SELECT id FROM patient WHERE code = ?");
        if (p) {
            p->bind(1, args.value("--patient"));
            if (p->step())
                filter.patientId = p->columnInt(0);
        }
        if (!filter.patientId) {
            std::fprintf(stderr, "error: no patient '%s' in this project\n", args.value("--patient").c_str());
            return 1;
        }
    }
    std::vector<std::vector<store::CellHit>> groups;
    if (bins > 0) {
        auto q = db->quantileSample(run->id, latent, bins, n, 1, filter);
        if (!q) {
            std::fprintf(stderr, "error: %s\n", q.message().c_str());
            return 1;
        }
        groups = std::move(q.value());
    } else {
        auto hits = db->topCells(run->id, latent, n, filter);
        if (!hits) {
            std::fprintf(stderr, "error: %s\n", hits.message().c_str());
            return 1;
        }
        groups.push_back(std::move(hits.value()));
    }
    std::printf("%8s %10s %10s %8s  %-10s %-14s %s\n", "image", "mean", "max patch", "patches", "patient", "class", "path");
    for (size_t g = 0; g < groups.size(); ++g) {
        if (bins > 0)
            std::printf("-- activation bin %zu of %d (strongest first)\n", g + 1, bins);
        for (const auto &h : groups[g]) {
            auto img = db->image(h.imageId);
            std::printf("%8lld %10.4f %10.4f %8d  %-10s %-14s %s\n", (long long)h.imageId, h.mean, h.maxPatch, h.patches,
                        img ? img->patientCode.c_str() : "?", img ? img->className.c_str() : "?",
                        img ? img->path.c_str() : "?");
        }
    }
    return 0;
}

int exportCommand(int argc, char **argv)
{
    CliArgs args({"--what", "--out", "--run"}, {"--help"});
    int code = 0;
    if (!parseOrHelp(args, argc, argv, "export", kExportHelp, code))
        return code;
    const std::string what = args.value("--what"), out = args.value("--out");
    if (args.positional().size() != 1 || out.empty() ||
        (what != "image-concepts" && what != "latent-stats" && what != "images"))
        return usageError("export", "expected PROJECT, --what image-concepts|latent-stats|images and --out FILE",
                          kExportHelp);
    auto db = openProject(args.positional()[0], store::ProjectDb::OpenMode::ReadOnly);
    if (!db) {
        std::fprintf(stderr, "error: %s\n", db.message().c_str());
        return 1;
    }
    std::string sql;
    int64_t runId = 0;
    if (what != "images") {
        auto run = pickRun(*db, args);
        if (!run) {
            std::fprintf(stderr, "error: %s\n", run.message().c_str());
            return 1;
        }
        runId = run->id;
    }
    if (what == "image-concepts")
        sql = "SELECT c.image_id, i.path, coalesce(p.code, '') AS patient, coalesce(i.class, '') AS class, c.latent, "
              "c.mean, c.max_patch, c.n_patches FROM image_concept c JOIN image i ON i.id = c.image_id LEFT JOIN "
              "patient p ON p.id = i.patient_id WHERE c.run_id = ?1 ORDER BY c.image_id, c.mean DESC";
    else if (what == "latent-stats")
        sql = "SELECT latent, firing_images, firing_freq, mean_activation, label_entropy, top_images, dead, dense, "
              "high_mean FROM concept_stats WHERE run_id = ?1 ORDER BY latent";
    else
        sql = "SELECT i.id, i.path, i.sha256, coalesce(p.code, '') AS patient, coalesce(p.diagnosis, '') AS diagnosis, "
              "coalesce(i.class, '') AS class, i.width, i.height, i.qc_status, coalesce(i.qc_reason, '') AS qc_reason, "
              "i.metadata FROM image i LEFT JOIN patient p ON p.id = i.patient_id ORDER BY i.id";
    auto q = db->db().prepare(sql);
    if (!q) {
        std::fprintf(stderr, "error: %s\n", q.message().c_str());
        return 1;
    }
    if (runId)
        q->bind(1, runId);
    std::ofstream file(out);
    if (!file) {
        std::fprintf(stderr, "error: %s: cannot open for writing\n", out.c_str());
        return 1;
    }
    const int columns = q->columnCount();
    for (int c = 0; c < columns; ++c)
        file << (c ? "," : "") << csvField(q->columnName(c));
    file << "\n";
    int64_t rows = 0;
    while (q->step()) {
        for (int c = 0; c < columns; ++c)
            file << (c ? "," : "") << (q->columnIsNull(c) ? std::string() : csvField(q->columnText(c)));
        file << "\n";
        ++rows;
    }
    if (Status s = q->status(); !s) {
        std::fprintf(stderr, "error: %s\n", s.message().c_str());
        return 1;
    }
    if (!file) {
        std::fprintf(stderr, "error: %s: write failed\n", out.c_str());
        return 1;
    }
    std::printf("%lld row(s) written to %s\n", (long long)rows, out.c_str());
    return 0;
}

} // namespace cytosae::cli
