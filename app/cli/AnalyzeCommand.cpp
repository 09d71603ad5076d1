// cytosae analyze: patient and cohort analytics (core/analysis) from the command line, as
// CSV and JSON files in an output folder, reproducible by --seed.

#include "CliArgs.h"
#include "CliCommon.h"
#include "Commands.h"

#include "analysis/Cohort.h"
#include "analysis/CohortClassifier.h"
#include "io/JsonWriter.h"
#include "store/AnnotationDb.h"
#include "store/ProjectDb.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <locale>
#include <map>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

namespace fs = std::filesystem;

namespace cytosae::cli {

namespace {

const char *kAnalyzeHelp =
    "Usage: cytosae analyze PROJECT WHAT [ARGS] [options]\n"
    "\n"
    "Patient and cohort analytics over a run; writes CSV and JSON into --out and prints a summary.\n"
    "A concept is active in a cell when any patch exceeds the threshold.\n"
    "\n"
    "WHAT:\n"
    "  fingerprint [CODE...]       per patient and concept: active cells, fraction of the patient's\n"
    "                              cells, Wilson 95% interval, and the reference's barcode (patches\n"
    "                              above 0.2 / number of latents, for comparison only)\n"
    "  patient-specific [CODE...]  concepts where each patient lies furthest from the other patients\n"
    "                              (or --reference DX): robust score (x - median) / (1.4826 MAD, with\n"
    "                              the patient's own sampling error), with the patient's top cells\n"
    "  disease A B                 concepts specific to diagnosis A against B ('rest': all others):\n"
    "                              Mann-Whitney U across patients, Benjamini-Hochberg q, Cliff's delta,\n"
    "                              and the reference's top-50 barcode difference for comparison\n"
    "  similarity                  patient x patient similarity of fingerprints, ordered by diagnosis\n"
    "  classify                    diagnosis from concepts: elastic-net multinomial logistic regression,\n"
    "                              stratified k-fold CV with a nested choice of the penalty; the same\n"
    "                              on the mean CLS embedding as a baseline; control vs disease too\n"
    "  all                         everything (disease: every diagnosis against the rest)\n"
    "\n"
    "Options:\n"
    "  --out DIR            output folder (default: <project>-analysis next to the project)\n"
    "  --run ID             a run other than the newest\n"
    "  --threshold T        activity threshold on a concept's patch maximum (default: the run's, 0.2)\n"
    "  --thresholds CSV     per-concept thresholds, lines 'latent,threshold' (default: the\n"
    "                       thresholds validated by precision checks in the label ledger)\n"
    "  --reference DX       patient-specific: compare with patients of this diagnosis only\n"
    "  --top N              concepts listed per patient, class or comparison (default 20)\n"
    "  --cells N            cells listed per concept (default 5)\n"
    "  --alpha A            FDR level for 'significant' (default 0.05)\n"
    "  --metric M           similarity: cosine (default) or correlation\n"
    "  --folds K            outer cross-validation folds (default 5)\n"
    "  --inner-folds K      inner folds that choose the penalty (default 3)\n"
    "  --seed S             seed of the folds (default 1)\n"
    "  --l1-ratio A         elastic-net mixing, 1 = lasso (default 0.5)\n"
    "  --max-features M     in-fold screening to the M strongest concepts (default 2000; 0 = all)\n"
    "  --features F         classify: what describes a patient per concept: presence (fraction of\n"
    "                       cells in which it is active), strength (mean of its strongest patch\n"
    "                       over the cells), both, cls-token (mean of the SAE's concepts of the CLS\n"
    "                       token) or all three (default all)\n"
    "  --control DX         the control diagnosis for control vs disease (default: detected; 'none')\n"
    "  --threads N          threads for the classifier (default: all cores)\n";

int usageError(const std::string &msg) { return cli::usageError("analyze", msg, kAnalyzeHelp); }

int fail(const std::string &msg)
{
    std::fprintf(stderr, "error: %s\n", msg.c_str());
    return 1;
}

std::string csv(const std::string &s)
{
    if (s.find_first_of(",\"\n\r") == std::string::npos)
        return s;
    std::string out = "\"";
    for (char c : s)
        out += c == '"' ? std::string("\"\"") : std::string(1, c);
    return out + "\"";
}

std::string num(double v)
{
    return io::JsonWriter::formatNumber(v, 6);
}

// "latent,threshold" lines; a header line and blank lines are allowed.
Result<std::map<int32_t, double>> readThresholds(const std::string &path, int dSae)
{
    std::ifstream in(path);
    if (!in)
        return Error(path + ": cannot open");
    std::map<int32_t, double> out;
    std::string line;
    int lineNo = 0;
    while (std::getline(in, line)) {
        ++lineNo;
        if (!line.empty() && line.back() == '\r')
            line.pop_back();
        if (line.empty() || (lineNo == 1 && line.find_first_not_of("0123456789,.-+eE \t") != std::string::npos))
            continue;
        const size_t comma = line.find(',');
        double latent = 0, t = 0;
        if (comma == std::string::npos || !parseDouble(line.substr(0, comma), latent) ||
            !parseDouble(line.substr(comma + 1), t) || latent != std::floor(latent) || latent < 0 || t < 0)
            return Error(path + ":" + std::to_string(lineNo) + ": expected 'latent,threshold', got '" + line + "'");
        if (latent >= dSae)
            return Error(path + ":" + std::to_string(lineNo) + ": latent " + std::to_string(int64_t(latent)) +
                         " does not exist (the run's SAE has " + std::to_string(dSae) + ")");
        out[int32_t(latent)] = t;
    }
    return out;
}

struct Context {
    store::ProjectDb *db = nullptr;
    store::RunRecord run;
    analysis::Cohort cohort;
    fs::path out;
    int top = 20, cells = 5;
    double alpha = 0.05;
    std::vector<std::string> written;
};

bool openFile(Context &ctx, const std::string &name, std::ofstream &file)
{
    const fs::path path = ctx.out / name;
    file.open(path);
    if (!file) {
        std::fprintf(stderr, "error: %s: cannot open for writing\n", path.string().c_str());
        return false;
    }
    ctx.written.push_back(path.string());
    return true;
}

void writeCells(io::JsonWriter &json, store::ProjectDb &db, const std::vector<store::CellHit> &hits)
{
    json.beginArray();
    for (const auto &h : hits) {
        auto img = db.image(h.imageId);
        json.beginObject().key("image").value(h.imageId).key("mean").value(h.mean).key("max_patch").value(h.maxPatch);
        json.key("patient").value(img ? img->patientCode : std::string());
        json.key("path").value(img ? img->path : std::string()).endObject();
    }
    json.endArray();
}

std::vector<size_t> selectPatients(const Context &ctx, const std::vector<std::string> &codes, std::string &error)
{
    std::vector<size_t> out;
    if (codes.empty()) {
        for (size_t i = 0; i < ctx.cohort.size(); ++i)
            out.push_back(i);
        return out;
    }
    for (const auto &code : codes) {
        const long i = ctx.cohort.indexOf(code);
        if (i < 0) {
            error = "no patient '" + code + "' with cells in run " + std::to_string(ctx.run.id);
            return {};
        }
        out.push_back(size_t(i));
    }
    return out;
}

int doFingerprint(Context &ctx, const std::vector<std::string> &codes)
{
    std::string error;
    const auto patients = selectPatients(ctx, codes, error);
    if (!error.empty())
        return fail(error);
    std::ofstream file;
    if (!openFile(ctx, "fingerprint.csv", file))
        return 1;
    file << "patient,diagnosis,cells,latent,active_cells,fraction,ci_low,ci_high,paper_barcode\n";
    std::printf("fingerprint (threshold %.3g%s):\n", ctx.cohort.threshold,
                ctx.cohort.threshold != ctx.run.patchThreshold ? "" : ", the run's");
    for (size_t p : patients) {
        const auto &pat = ctx.cohort.patients[p];
        const auto rows = analysis::fingerprint(ctx.cohort, p);
        for (const auto &r : rows)
            file << csv(pat.code) << ',' << csv(pat.diagnosis) << ',' << r.cells << ',' << r.latent << ','
                 << r.activeCells << ',' << num(r.fraction) << ',' << num(r.ci.lo) << ',' << num(r.ci.hi) << ','
                 << num(r.paperBarcode) << '\n';
        std::printf("  %-10s %-12s %5lld cells, %6zu active concepts", pat.code.c_str(), pat.diagnosis.c_str(),
                    (long long)pat.cells, rows.size());
        if (!rows.empty())
            std::printf("; most frequent: %d in %.0f%% [%.0f%%, %.0f%%]", rows[0].latent, 100 * rows[0].fraction,
                        100 * rows[0].ci.lo, 100 * rows[0].ci.hi);
        std::printf("\n");
    }
    return file ? 0 : fail("fingerprint.csv: write failed");
}

int doPatientSpecific(Context &ctx, const std::vector<std::string> &codes, const std::string &reference)
{
    std::string error;
    const auto patients = selectPatients(ctx, codes, error);
    if (!error.empty())
        return fail(error);
    std::ofstream file, jf;
    if (!openFile(ctx, "patient_specific.csv", file) || !openFile(ctx, "patient_specific.json", jf))
        return 1;
    file << "patient,diagnosis,rank,latent,fraction,ci_low,ci_high,reference_median,reference_mad,score,cells\n";
    io::JsonWriter json(jf);
    json.beginObject().key("run").value(ctx.run.id).key("threshold").value(ctx.cohort.threshold);
    json.key("reference").value(reference.empty() ? std::string("all other patients") : reference);
    json.key("patients").beginArray();
    int failures = 0;
    std::printf("patient-specific concepts (against %s):\n",
                reference.empty() ? "all other patients" : ("'" + reference + "'").c_str());
    analysis::PatientSpecificOptions opt;
    opt.referenceDiagnosis = reference;
    opt.top = ctx.top;
    auto all = analysis::patientSpecific(ctx.cohort, patients, opt);
    if (!all) // one patient cannot be compared (e.g. alone in its reference): each on its own
        std::fprintf(stderr, "note: %s; comparing patient by patient\n", all.message().c_str());
    for (size_t i = 0; i < patients.size(); ++i) {
        const size_t p = patients[i];
        const auto &pat = ctx.cohort.patients[p];
        auto found = all ? Result<std::vector<analysis::SpecificConcept>>((*all)[i])
                         : analysis::patientSpecific(ctx.cohort, p, opt);
        if (!found) {
            std::fprintf(stderr, "error: %s: %s\n", pat.code.c_str(), found.message().c_str());
            ++failures;
            continue;
        }
        json.beginObject().key("patient").value(pat.code).key("diagnosis").value(pat.diagnosis);
        json.key("cells").value(pat.cells).key("concepts").beginArray();
        std::string summary;
        int rank = 0;
        for (const auto &c : *found) {
            store::CellFilter filter;
            filter.patientId = pat.id;
            auto hits = ctx.db->topCells(ctx.run.id, c.latent, ctx.cells, filter);
            std::vector<store::CellHit> cellHits = hits ? *hits : std::vector<store::CellHit>{};
            std::string ids;
            for (const auto &h : cellHits)
                ids += (ids.empty() ? "" : ";") + std::to_string(h.imageId);
            file << csv(pat.code) << ',' << csv(pat.diagnosis) << ',' << ++rank << ',' << c.latent << ','
                 << num(c.fraction) << ',' << num(c.ci.lo) << ',' << num(c.ci.hi) << ',' << num(c.referenceMedian)
                 << ',' << num(c.referenceMad) << ',' << num(c.score) << ',' << ids << '\n';
            json.beginObject().key("latent").value(c.latent).key("fraction").value(c.fraction);
            json.key("ci").beginArray().value(c.ci.lo).value(c.ci.hi).endArray();
            json.key("reference_median").value(c.referenceMedian).key("reference_mad").value(c.referenceMad);
            json.key("score").value(c.score).key("cells");
            writeCells(json, *ctx.db, cellHits);
            json.endObject();
            if (rank <= 3)
                summary += (summary.empty() ? "" : ", ") + std::to_string(c.latent) + " (" +
                           (c.score > 0 ? "+" : "") + num(std::round(c.score * 10) / 10) + ")";
        }
        json.endArray().endObject();
        std::printf("  %-10s %-12s %s\n", pat.code.c_str(), pat.diagnosis.c_str(),
                    summary.empty() ? "(nothing stands out)" : summary.c_str());
    }
    json.endArray().endObject();
    return failures ? 1 : 0;
}

int doDisease(Context &ctx, const std::string &a, const std::string &b)
{
    auto cmp = analysis::compareDiseases(ctx.cohort, a, b, 50, ctx.alpha);
    if (!cmp)
        return fail(cmp.message());
    auto safe = [](std::string s) {
        for (char &c : s)
            if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_')
                c = '_';
        return s;
    };
    const std::string stem = "disease_" + safe(a) + "_vs_" + safe(b);
    std::ofstream file, jf;
    if (!openFile(ctx, stem + ".csv", file) || !openFile(ctx, stem + ".json", jf))
        return 1;
    file << "latent,mean_a,mean_b,diff,u,z,p,q,rank_biserial,paper_a,paper_b,paper_rank\n";
    for (const auto &c : cmp->concepts)
        file << c.latent << ',' << num(c.meanA) << ',' << num(c.meanB) << ',' << num(c.diff) << ',' << num(c.u)
             << ',' << num(c.z) << ',' << num(c.p) << ',' << num(c.q) << ',' << num(c.rankBiserial) << ','
             << num(c.paperA) << ',' << num(c.paperB) << ',' << c.paperRank << '\n';
    io::JsonWriter json(jf);
    json.beginObject().key("a").value(a).key("b").value(b).key("n_a").value(cmp->nA).key("n_b").value(cmp->nB);
    json.key("tested").value(cmp->tested).key("alpha").value(ctx.alpha).key("significant").value(cmp->significant);
    json.key("paper_top").beginArray();
    for (int32_t l : cmp->paperTop)
        json.value(l);
    json.endArray().key("paper_top_significant").value(cmp->paperTopSignificant);
    json.key("notes").beginArray();
    for (const auto &n : cmp->notes)
        json.value(n);
    json.endArray().key("concepts").beginArray();
    int listed = 0;
    for (const auto &c : cmp->concepts) {
        if (listed++ >= ctx.top)
            break;
        json.beginObject().key("latent").value(c.latent).key("mean_a").value(c.meanA).key("mean_b").value(c.meanB);
        json.key("p").value(c.p).key("q").value(c.q).key("rank_biserial").value(c.rankBiserial);
        json.key("paper_rank").value(c.paperRank).key("cells");
        store::CellFilter filter;
        filter.diagnosis = c.diff >= 0 ? a : (b == "rest" ? std::string() : b);
        auto hits = ctx.db->topCells(ctx.run.id, c.latent, ctx.cells, filter);
        writeCells(json, *ctx.db, hits ? *hits : std::vector<store::CellHit>{});
        json.endObject();
    }
    json.endArray().endObject();
    for (const auto &n : cmp->notes)
        std::printf("note: %s\n", n.c_str());
    std::printf("disease-specific concepts, %s (%d patients) vs %s (%d): %d concepts tested, %d with q < %g; "
                "%d of the reference's top %zu are among them\n",
                a.c_str(), cmp->nA, b.c_str(), cmp->nB, cmp->tested, cmp->significant, ctx.alpha,
                cmp->paperTopSignificant, cmp->paperTop.size());
    std::printf("  %8s %8s %8s %10s %10s %8s\n", "latent", "mean A", "mean B", "p", "q", "delta");
    for (size_t i = 0; i < cmp->concepts.size() && int(i) < std::min(ctx.top, 10); ++i) {
        const auto &c = cmp->concepts[i];
        std::printf("  %8d %8.3f %8.3f %10.2e %10.2e %+8.2f\n", c.latent, c.meanA, c.meanB, c.p, c.q, c.rankBiserial);
    }
    return 0;
}

int doSimilarity(Context &ctx, analysis::SimilarityMetric metric)
{
    const auto sim = analysis::patientSimilarity(ctx.cohort, metric);
    std::ofstream file;
    if (!openFile(ctx, "similarity.csv", file))
        return 1;
    file << "patient,diagnosis";
    for (size_t j : sim.order)
        file << ',' << csv(ctx.cohort.patients[j].code);
    file << '\n';
    const size_t n = sim.order.size();
    for (size_t i = 0; i < n; ++i) {
        const auto &p = ctx.cohort.patients[sim.order[i]];
        file << csv(p.code) << ',' << csv(p.diagnosis);
        for (size_t j = 0; j < n; ++j)
            file << ',' << num(sim.values[i * n + j]);
        file << '\n';
    }
    std::printf("patient similarity (%s, %zu patients, ordered by diagnosis): mean %.3f within diagnoses, "
                "%.3f between\n",
                metric == analysis::SimilarityMetric::Cosine ? "cosine" : "correlation", n, sim.withinMean,
                sim.betweenMean);
    return file ? 0 : fail("similarity.csv: write failed");
}

void writeCv(io::JsonWriter &json, const analysis::CvResult &cv)
{
    json.beginObject().key("folds").value(cv.folds).key("macro_f1").value(cv.macroF1);
    json.key("accuracy").value(cv.accuracy).key("classes").beginArray();
    for (const auto &c : cv.classes)
        json.beginObject()
            .key("name").value(c.name).key("support").value(c.support)
            .key("precision").value(c.precision).key("recall").value(c.recall).key("f1").value(c.f1)
            .endObject();
    json.endArray().key("confusion").beginArray();
    for (const auto &row : cv.confusion) {
        json.beginArray();
        for (int v : row)
            json.value(v);
        json.endArray();
    }
    json.endArray().key("fold_macro_f1").beginArray();
    for (double v : cv.foldMacroF1)
        json.value(v);
    json.endArray().key("fold_lambda_ratio").beginArray();
    for (double v : cv.foldLambdaRatio)
        json.value(v);
    json.endArray().key("final_lambda_ratio").value(cv.finalLambdaRatio);
    json.key("seconds").value(cv.seconds).key("notes").beginArray();
    for (const auto &n : cv.notes)
        json.value(n);
    json.endArray().endObject();
}

int doClassify(Context &ctx, const analysis::CohortClassifyOptions &options)
{
    auto result = analysis::classifyCohort(ctx.db, ctx.run, ctx.cohort, options);
    for (const auto &n : result ? result->notes : std::vector<std::string>{})
        std::printf("note: %s\n", n.c_str());
    if (!result)
        return fail("classification: " + result.message());
    std::ofstream jf, pf;
    if (!openFile(ctx, "classification.json", jf) || !openFile(ctx, "classification_predictions.csv", pf))
        return 1;
    pf << "task,patient,truth,predicted_concepts,predicted_embedding\n";
    io::JsonWriter json(jf);
    json.beginObject().key("run").value(ctx.run.id).key("seed").value(options.classifier.seed);
    json.key("l1_ratio").value(options.classifier.l1Ratio).key("max_features").value(options.classifier.maxFeatures);
    json.key("features").value(std::string(analysis::conceptFeaturesName(options.features)));
    json.key("tasks").beginArray();
    const analysis::Dataset names = analysis::conceptDataset(ctx.cohort);
    for (const auto &task : result->tasks) {
        const auto &cv = task.concepts;
        json.beginObject().key("name").value(task.name).key("concepts");
        writeCv(json, cv);
        json.key("embedding");
        if (task.embedding)
            writeCv(json, *task.embedding);
        else
            json.null();
        json.key("embedding_note").value(task.embeddingNote);
        json.key("drivers").beginObject();
        for (size_t c = 0; c < cv.classNames.size(); ++c) {
            json.key(cv.classNames[c]).beginArray();
            for (const auto &d : task.drivers[c]) {
                json.beginObject().key("latent").value(d.latent).key("weight").value(d.weight).key("cells");
                writeCells(json, *ctx.db, d.cells);
                json.endObject();
            }
            json.endArray();
        }
        json.endObject().endObject();
        // Predictions: concept rows and embedding rows are the same patients in the same order.
        for (size_t i = 0; i < cv.rows.size(); ++i) {
            const std::string patient = names.rowNames[size_t(cv.rows[i])];
            pf << csv(task.name) << ',' << csv(patient) << ',' << csv(cv.classNames[size_t(cv.truth[i])]) << ','
               << csv(cv.classNames[size_t(cv.predicted[i])]) << ',';
            if (task.embedding && i < task.embedding->predicted.size())
                pf << csv(task.embedding->classNames[size_t(task.embedding->predicted[i])]);
            pf << '\n';
        }
        for (const auto &n : cv.notes)
            std::printf("note: %s: %s\n", task.name.c_str(), n.c_str());
        std::printf("classification '%s' (%zu patients, %d-fold CV, seed %llu): macro F1 %.3f from concepts, ",
                    task.name.c_str(), cv.rows.size(), cv.folds, (unsigned long long)options.classifier.seed,
                    cv.macroF1);
        if (task.embedding)
            std::printf("%.3f from the mean CLS embedding (baseline)\n", task.embedding->macroF1);
        else
            std::printf("no baseline (%s)\n", task.embeddingNote.c_str());
        std::printf("  %-16s %8s %8s %8s %8s   top concepts\n", "class", "support", "precis.", "recall", "F1");
        for (size_t c = 0; c < cv.classes.size(); ++c) {
            std::string drivers;
            for (size_t d = 0; d < task.drivers[c].size() && d < 5; ++d)
                drivers += (d ? ", " : "") + std::to_string(task.drivers[c][d].latent);
            std::printf("  %-16s %8d %8.3f %8.3f %8.3f   %s\n", cv.classes[c].name.c_str(), cv.classes[c].support,
                        cv.classes[c].precision, cv.classes[c].recall, cv.classes[c].f1, drivers.c_str());
        }
    }
    json.endArray().endObject();
    return json.complete() ? 0 : fail("classification.json: " + json.error());
}

} // namespace

int analyzeCommand(int argc, char **argv)
{
    CliArgs args({"--out", "--run", "--threshold", "--thresholds", "--reference", "--top", "--cells", "--alpha",
                  "--metric", "--folds", "--inner-folds", "--seed", "--l1-ratio", "--max-features", "--control",
                  "--threads", "--features"},
                 {"--help"});
    if (!args.parse(argc, argv, 2))
        return usageError(args.error());
    if (args.has("--help")) {
        std::fputs(kAnalyzeHelp, stdout);
        return 0;
    }
    const auto &pos = args.positional();
    if (pos.size() < 2)
        return usageError("expected PROJECT and WHAT");
    const std::string what = pos[1];
    const std::vector<std::string> rest(pos.begin() + 2, pos.end());
    if (what != "fingerprint" && what != "patient-specific" && what != "disease" && what != "similarity" &&
        what != "classify" && what != "all")
        return usageError("unknown analysis '" + what + "'");
    if (what == "disease" && rest.size() != 2)
        return usageError("disease needs two diagnoses, A and B (or A rest)");
    if ((what == "similarity" || what == "classify" || what == "all") && !rest.empty())
        return usageError(what + " takes no further arguments");

    Context ctx;
    analysis::CohortClassifyOptions co;
    int folds = 5, inner = 3, seed = 1, maxFeatures = 2000, threads = 0;
    if (!args.intValue("--top", 20, 1, 1000000, ctx.top) || !args.intValue("--cells", 5, 0, 1000, ctx.cells) ||
        !args.intValue("--folds", 5, 2, 100, folds) || !args.intValue("--inner-folds", 3, 2, 100, inner) ||
        !args.intValue("--seed", 1, 0, 1 << 30, seed) || !args.intValue("--max-features", 2000, 0, 1 << 24, maxFeatures) ||
        !args.intValue("--threads", 0, 0, 1024, threads))
        return usageError(args.error());
    co.classifier.folds = folds;
    co.classifier.innerFolds = inner;
    co.classifier.seed = uint64_t(seed);
    co.classifier.maxFeatures = maxFeatures;
    co.classifier.threads = threads;
    co.classifier.topFeatures = ctx.top;
    co.cellsPerConcept = ctx.cells;
    co.control = args.value("--control");
    if (!analysis::parseConceptFeatures(args.value("--features", analysis::conceptFeaturesName(co.features)), co.features))
        return usageError("--features must be presence, strength or both, got '" + args.value("--features") + "'");
    analysis::CohortOptions cohortOptions;
    if (!args.doubleValue("--threshold", cohortOptions.threshold, {0}, cohortOptions.threshold) ||
        !args.doubleValue("--l1-ratio", co.classifier.l1Ratio, {0, 1, true}, co.classifier.l1Ratio) ||
        !args.doubleValue("--alpha", ctx.alpha, {0, 1, true, true}, ctx.alpha))
        return usageError(args.error());
    const std::string metricName = args.value("--metric", "cosine");
    if (metricName != "cosine" && metricName != "correlation")
        return usageError("--metric must be cosine or correlation");
    const auto metric =
        metricName == "cosine" ? analysis::SimilarityMetric::Cosine : analysis::SimilarityMetric::Correlation;

    const std::string project = pos[0];
    auto opened = store::ProjectDb::open(project, store::ProjectDb::OpenMode::ReadOnly);
    if (!opened)
        return fail(opened.error().withContext(project).message());
    store::ProjectDb db = std::move(opened.value());
    ctx.db = &db;
    if (args.has("--run")) {
        int id = 0;
        if (!args.intValue("--run", 0, 1, 1 << 30, id))
            return usageError(args.error());
        auto r = db.run(id);
        if (!r)
            return fail(r.message());
        ctx.run = *r;
    } else {
        auto r = db.latestRun();
        if (!r)
            return fail(r.message());
        if (!r->has_value())
            return fail(project + ": this project has no runs yet; use 'cytosae run' first");
        ctx.run = **r;
    }
    if (args.has("--thresholds")) {
        auto t = readThresholds(args.value("--thresholds"), ctx.run.dSae);
        if (!t)
            return fail(t.message());
        cohortOptions.latentThresholds = std::move(t.value());
    } else if (!args.has("--threshold")) {
        // Thresholds validated by precision checks (cytosae labels tasks) for these models: the
        // same defaults as the explorer's Patient view.
        int used = 0;
        auto defaults = analysis::defaultCohortOptions(db, ctx.run, &used);
        if (!defaults)
            return fail(defaults.message());
        cohortOptions.latentThresholds = std::move(defaults->latentThresholds);
        if (used > 0)
            std::printf("note: %d concepts use their validated threshold from the label ledger\n", used);
    }
    auto cohort = analysis::loadCohort(db, ctx.run, cohortOptions);
    if (!cohort)
        return fail(cohort.message());
    ctx.cohort = std::move(cohort.value());
    for (const auto &n : ctx.cohort.notes)
        std::printf("note: %s\n", n.c_str());
    if (!ctx.cohort.size())
        return fail(project + ": no patient has cells with results in run " + std::to_string(ctx.run.id));
    fs::path outDir = args.value("--out");
    if (outDir.empty())
        outDir = fs::path(project).parent_path() / (fs::path(project).stem().string() + "-analysis");
    std::error_code ec;
    fs::create_directories(outDir, ec);
    if (ec)
        return fail(outDir.string() + ": cannot create the output folder: " + ec.message());
    ctx.out = outDir;
    std::printf("run %lld: %zu patients, %d concepts\n", (long long)ctx.run.id, ctx.cohort.size(), ctx.cohort.dSae);

    int code = 0;
    auto combine = [&code](int c) { code = std::max(code, c); };
    if (what == "fingerprint" || what == "all")
        combine(doFingerprint(ctx, rest));
    if (what == "patient-specific" || what == "all")
        combine(doPatientSpecific(ctx, rest, args.value("--reference")));
    if (what == "disease")
        combine(doDisease(ctx, rest[0], rest[1]));
    if (what == "all") {
        std::vector<std::string> dx;
        for (const auto &p : ctx.cohort.patients)
            if (!p.diagnosis.empty() && std::find(dx.begin(), dx.end(), p.diagnosis) == dx.end())
                dx.push_back(p.diagnosis);
        std::sort(dx.begin(), dx.end());
        if (dx.size() < 2)
            std::printf("note: fewer than two diagnoses: no disease comparison\n");
        else
            for (const auto &d : dx)
                combine(doDisease(ctx, d, "rest"));
    }
    if (what == "similarity" || what == "all")
        combine(doSimilarity(ctx, metric));
    if (what == "classify" || what == "all")
        combine(doClassify(ctx, co));
    std::printf("written to %s:", ctx.out.string().c_str());
    for (const auto &w : ctx.written)
        std::printf(" %s", fs::path(w).filename().string().c_str());
    std::printf("\n");
    return code;
}

} // namespace cytosae::cli
