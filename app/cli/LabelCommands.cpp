// cytosae labels: the annotation ledger from the command line (list, set, export, import,
// tasks with their precision and agreement figures).

#include "CliArgs.h"
#include "CliCommon.h"
#include "Commands.h"

#include "annotation/Agreement.h"
#include "annotation/Exchange.h"
#include "annotation/Vocabulary.h"
#include "store/AnnotationDb.h"

#include <cstdio>
#include <cstdlib>
#include <optional>

#include <pwd.h>
#include <unistd.h>

namespace cytosae::cli {

namespace {

const char *kLabelsHelp =
    "Usage: cytosae labels list PROJECT [--history] [--run ID]\n"
    "       cytosae labels set PROJECT (--latent N | --group UID) --label TEXT [--status S]\n"
    "                                  [--author NAME] [--note TEXT] [--run ID]\n"
    "       cytosae labels export PROJECT OUT.json | OUT-FOLDER\n"
    "       cytosae labels import PROJECT IN.json | IN-FOLDER\n"
    "       cytosae labels flag PROJECT (--latent N | --group UID) --threshold T [--off]\n"
    "       cytosae labels tasks PROJECT\n"
    "\n"
    "The concept label ledger of a project (append-only; every entry is bound to the ViT and\n"
    "SAE files of the run it was made with). 'list' shows the label in force per concept for\n"
    "the run's models; labels made with other model files are marked STALE. 'set' appends an\n"
    "entry (status: proposed, validated, rejected, deprecated; default proposed; author\n"
    "default $USER). 'export' writes every ledger table (labels, groups, flags, thresholds,\n"
    "annotation tasks and answers, review decisions and sign-offs) as one JSON file or a folder\n"
    "of CSV files; 'import' reads them back (rows already present are skipped; rows whose cells\n"
    "are not in the project are named and skipped). 'tasks' lists precision checks and double\n"
    "annotations with their precision per bin, recommended threshold and kappa. 'flag' marks a\n"
    "concept as pathognomonic from threshold T (maximum patch activation; --off removes it):\n"
    "its cells then wait in each patient's review queue in the explorer.\n"
    "\n"
    "Options:\n"
    "  --history        the whole ledger, oldest first, instead of the labels in force\n"
    "  --run ID         the run whose models count (default: the newest finished run)\n"
    "  --help           this text\n";

std::string loginName()
{
    for (const char *var : {"USER", "LOGNAME"})
        if (const char *v = std::getenv(var); v && *v)
            return v;
    const passwd *pw = getpwuid(getuid());
    return pw && pw->pw_name ? pw->pw_name : "";
}

int fail(const std::string &message)
{
    std::fprintf(stderr, "error: %s\n", message.c_str());
    return 1;
}

void printEntry(const store::LabelEntry &e, bool stale)
{
    std::printf("%-22s %-10s %-28s %-12s %-24s%s%s\n", e.concept.c_str(), e.status.c_str(), e.label.c_str(),
                e.author.c_str(), e.at.c_str(), stale ? "  STALE (other model files)" : "",
                e.controlled ? "" : "  (free text)");
}

int listLabels(store::ProjectDb &db, const store::RunRecord &run, bool history)
{
    store::AnnotationDb ann(db);
    auto models = ann.hashesOfRun(run.id);
    if (!models)
        return fail(models.message());
    std::printf("%-22s %-10s %-28s %-12s %s\n", "concept", "status", "label", "author", "time");
    if (history) {
        auto all = ann.labelHistory();
        if (!all)
            return fail(all.message());
        for (const auto &e : *all)
            printEntry(e, !(e.models == *models));
        return 0;
    }
    auto current = ann.currentLabels(*models);
    if (!current)
        return fail(current.message());
    for (const auto &[concept, state] : *current)
        printEntry(state.entry, state.stale);
    return 0;
}

int listTasks(store::ProjectDb &db)
{
    store::AnnotationDb ann(db);
    auto tasks = ann.tasks();
    if (!tasks)
        return fail(tasks.message());
    if (tasks->empty())
        std::printf("no annotation tasks yet\n");
    for (const auto &summary : *tasks) {
        auto task = ann.task(summary.uid);
        auto answers = ann.answers(summary.uid);
        if (!task || !answers)
            return fail(!task ? task.message() : answers.message());
        std::printf("%s  %-9s %-20s %zu cells  by %s at %s\n", task->uid.c_str(), task->kind.c_str(),
                    task->concept.c_str(), task->items.size(), task->createdBy.c_str(), task->at.c_str());
        const auto precision = annotation::precisionReport(*task, *answers);
        std::printf("  answered %d of %d\n", precision.answered, precision.total);
        for (const auto &b : precision.bins)
            std::printf("  bin %d  [%.3f, %.3f]  hits %d  misses %d  precision %s\n", b.bin + 1, b.lo, b.hi, b.hits,
                        b.misses, b.precision ? std::to_string(*b.precision).substr(0, 5).c_str() : "-");
        std::printf("  below threshold: hits %d  misses %d\n", precision.negatives.hits, precision.negatives.misses);
        if (precision.recommendedThreshold)
            std::printf("  recommended threshold %.4f (%s)\n", *precision.recommendedThreshold,
                        precision.recommendation.c_str());
        else
            std::printf("  no recommended threshold: %s\n", precision.recommendation.c_str());
        if (task->kind == "agreement") {
            const auto agreement = annotation::agreementReport(*task, *answers);
            if (agreement.kappa)
                std::printf("  %s kappa %.3f over %d cells, %d raters; %zu disagreements\n",
                            agreement.kappa->method.c_str(), agreement.kappa->kappa, agreement.kappa->items,
                            agreement.kappa->raters, agreement.disagreements.size());
            else
                std::printf("  no kappa: %s\n", agreement.kappaProblem.c_str());
        }
    }
    return 0;
}

} // namespace

int labelsCommand(int argc, char **argv)
{
    CliArgs args({"--latent", "--group", "--label", "--status", "--author", "--note", "--run", "--threshold"},
                 {"--help", "--history", "--off"});
    int code = 0;
    if (!parseOrHelp(args, argc, argv, "labels", kLabelsHelp, code))
        return code;
    const auto &pos = args.positional();
    if (pos.size() < 2)
        return usageError("labels", "expected a subcommand and PROJECT", kLabelsHelp);
    const std::string sub = pos[0], project = pos[1];
    if (sub == "list" || sub == "set" || sub == "flag") {
        std::optional<store::ProjectDb> db;
        store::RunRecord run;
        if (!openProjectRun(project, sub == "list" ? store::ProjectDb::OpenMode::ReadOnly
                                                   : store::ProjectDb::OpenMode::Existing,
                            args, db, run))
            return 1;
        if (sub == "list")
            return listLabels(*db, run, args.has("--history"));
        if (args.has("--latent") == args.has("--group") || !args.has(sub == "set" ? "--label" : "--threshold"))
            return usageError("labels", sub == "set" ? "set needs --label and one of --latent or --group"
                                                     : "flag needs --threshold and one of --latent or --group",
                              kLabelsHelp);
        store::AnnotationDb ann(*db);
        auto models = ann.hashesOfRun(run.id);
        if (!models)
            return fail(models.message());
        store::LabelEntry e;
        if (args.has("--latent")) {
            int latent = 0;
            if (!args.intValue("--latent", 0, 0, run.dSae - 1, latent))
                return usageError("labels", args.error(), kLabelsHelp);
            e.concept = store::ConceptRef::ofLatent(latent).key();
        } else {
            auto g = ann.group(args.value("--group"));
            if (!g || !*g)
                return fail("no concept group " + args.value("--group") + " in this project");
            e.concept = store::ConceptRef::ofGroup(args.value("--group")).key();
        }
        if (sub == "flag") {
            store::FlagEntry f;
            f.concept = e.concept;
            char *end = nullptr;
            const std::string t = args.value("--threshold");
            f.threshold = std::strtod(t.c_str(), &end);
            if (t.empty() || *end)
                return usageError("labels", "--threshold needs a number, got '" + t + "'", kLabelsHelp);
            f.active = !args.has("--off");
            f.author = args.value("--author", loginName());
            f.note = args.value("--note");
            f.models = *models;
            auto added = ann.appendFlag(f);
            if (!added)
                return fail(added.message());
            std::printf("%s %s from %.4f\n", f.active ? "flagged" : "unflagged", f.concept.c_str(), f.threshold);
            return 0;
        }
        e.label = args.value("--label");
        e.controlled = annotation::isVocabularyTerm(e.label);
        e.status = args.value("--status", "proposed");
        e.author = args.value("--author", loginName());
        e.note = args.value("--note");
        e.models = *models;
        auto added = ann.appendLabel(e);
        if (!added)
            return fail(added.message());
        printEntry(*added, false);
        return 0;
    }
    if (pos.size() != (sub == "tasks" ? 2u : 3u))
        return usageError("labels", "wrong number of arguments for '" + sub + "'", kLabelsHelp);
    auto db = openProject(project, sub == "import" ? store::ProjectDb::OpenMode::Existing
                                                   : store::ProjectDb::OpenMode::ReadOnly);
    if (!db)
        return fail(db.message());
    if (sub == "tasks")
        return listTasks(*db);
    store::AnnotationDb ann(*db);
    if (sub == "export") {
        if (Status s = annotation::exportAnnotations(ann, pos[2]); !s)
            return fail(s.message());
        std::printf("wrote %s\n", pos[2].c_str());
        return 0;
    }
    if (sub == "import") {
        auto report = annotation::importAnnotations(ann, pos[2]);
        if (!report)
            return fail(report.message());
        for (const auto &p : report->problems)
            std::fprintf(stderr, "warning: %s\n", p.c_str());
        std::printf("added %lld entries, %lld already present, %zu problems\n", (long long)report->added,
                    (long long)report->alreadyPresent, report->problems.size());
        return report->problems.empty() ? 0 : 1;
    }
    return usageError("labels", "unknown subcommand '" + sub + "'", kLabelsHelp);
}

} // namespace cytosae::cli
