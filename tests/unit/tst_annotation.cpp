// The annotation ledger: append-only labels bound to model hashes (stale under other models),
// concept groups with versions, precision checks with a recommended threshold, Cohen's and
// Fleiss' kappa against published worked examples, the review queue with refused sign-off,
// lossless JSON/CSV exchange, and two writer processes on one project file losing nothing.

#include "annotation/Agreement.h"
#include "annotation/Exchange.h"
#include "annotation/Vocabulary.h"
#include "io/JsonReader.h"
#include "store/AnnotationDb.h"
#include "store/ProjectDb.h"

#include <QCoreApplication>
#include <QDir>
#include <QFile>
#include <QProcess>
#include <QTemporaryDir>
#include <QtTest>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>

using namespace cytosae;
using namespace cytosae::store;

namespace {

ProjectDb mustOpen(const std::string &path)
{
    auto db = ProjectDb::open(path, ProjectDb::OpenMode::Create);
    if (!db)
        qFatal("open failed: %s", db.message().c_str());
    return std::move(db.value());
}

std::string shaOf(int i)
{
    char buf[65];
    std::snprintf(buf, sizeof buf, "%064x", i + 1);
    return buf;
}

// 40 cells of two patients; latent 7 fires in every cell with max patch i/40, latent 9 in the
// even cells only. Returns the run id.
int64_t makeProject(ProjectDb &db, const std::string &saeSha = std::string(64, 's'))
{
    std::vector<NewImage> images;
    for (int i = 0; i < 40; ++i) {
        NewImage n;
        n.path = "/cells/c" + std::to_string(i) + ".png";
        n.sha256 = shaOf(i);
        n.width = n.height = 64;
        n.channels = 3;
        n.bitDepth = 8;
        n.patientCode = i < 20 ? "P1" : "P2";
        n.diagnosis = i < 20 ? "APL" : "control";
        n.className = "cell";
        images.push_back(n);
    }
    if (!db.addImages(images))
        qFatal("addImages failed");
    auto vit = db.upsertModel("vit", std::string(64, 'v'), "/m/vit.pth", "{}");
    auto sae = db.upsertModel("sae", saeSha, "/m/sae.pt", "{}");
    auto run = db.createRun(*vit, *sae, 2, 0.2, 16, "cpu");
    std::vector<ImageResultRow> rows;
    for (int i = 0; i < 40; ++i) {
        ImageResultRow r;
        r.imageId = i + 1;
        const float v = float(i) / 40.f;
        r.concepts.push_back({7, v / 2, v, v > 0.2f ? 3 : 0});
        if (i % 2 == 0)
            r.concepts.push_back({9, 0.1f, 0.5f, 1});
        const int32_t ids[] = {-1, -1, 7, -1};
        const float vals[] = {0.f, 0.f, v, 0.f};
        r.tokensBlob = encodeTokenTopK(2, 2, ids, vals, 15);
        r.cls = {1.f};
        rows.push_back(std::move(r));
    }
    if (Status s = db.writeResults(*run, rows, {}); !s)
        qFatal("writeResults failed: %s", s.message().c_str());
    return *run;
}

LabelEntry label(const std::string &concept, const std::string &text, const std::string &status, const ModelHashes &m)
{
    LabelEntry e;
    e.concept = concept;
    e.label = text;
    e.status = status;
    e.author = "dr.a";
    e.models = m;
    return e;
}

// Child mode of the concurrency test: append `n` labels as `author`, one transaction each.
int writerChild(const std::string &path, const std::string &author, int n)
{
    auto db = ProjectDb::open(path, ProjectDb::OpenMode::Existing);
    if (!db) {
        std::fprintf(stderr, "%s\n", db.message().c_str());
        return 2;
    }
    AnnotationDb ann(*db);
    const ModelHashes m{std::string(64, 'v'), std::string(64, 's')};
    for (int i = 0; i < n; ++i) {
        LabelEntry e = label("latent:" + std::to_string(i % 16), author + "-" + std::to_string(i), "proposed", m);
        e.author = author;
        if (auto r = ann.appendLabel(e); !r) {
            std::fprintf(stderr, "write %d failed: %s\n", i, r.message().c_str());
            return 3;
        }
    }
    return 0;
}

} // namespace

class TestAnnotation : public QObject {
    Q_OBJECT

private:
    QTemporaryDir m_dir;
    std::string path(const char *name) const { return QDir(m_dir.path()).filePath(name).toStdString(); }

private slots:
    void conceptKeys()
    {
        QCOMPARE(ConceptRef::ofLatent(12).key(), std::string("latent:12"));
        QCOMPARE(ConceptRef::parse("latent:12")->latent, 12);
        QCOMPARE(ConceptRef::parse("group:abc")->groupUid, std::string("abc"));
        QVERIFY(!ConceptRef::parse("latent:"));
        QVERIFY(!ConceptRef::parse("latent:-3"));
        QVERIFY(!ConceptRef::parse("12"));
        QVERIFY(annotation::isVocabularyTerm("auer ROD"));
        QVERIFY(!annotation::isVocabularyTerm("blue thing"));
    }

    void ledgerIsAppendOnlyAndBoundToModels()
    {
        ProjectDb db = mustOpen(path("ledger.cyto"));
        const int64_t run = makeProject(db);
        AnnotationDb ann(db);
        auto m = ann.hashesOfRun(run);
        QVERIFY2(m.ok(), m.message().c_str());
        QCOMPARE(m->sae, std::string(64, 's'));

        auto first = ann.appendLabel(label("latent:7", "Auer rod", "proposed", *m));
        QVERIFY2(first.ok(), first.message().c_str());
        QCOMPARE(first->uid.size(), size_t(32));
        LabelEntry validated = label("latent:7", "Auer rod", "validated", *m);
        validated.evidence = {3, 4, 5};
        QVERIFY(ann.appendLabel(validated).ok());
        QVERIFY(ann.appendLabel(label("latent:9", "nucleus", "proposed", *m)).ok());

        auto current = ann.currentLabels(*m);
        QVERIFY(current.ok());
        QCOMPARE(int(current->size()), 2);
        QCOMPARE(current->at("latent:7").entry.status, std::string("validated"));
        QCOMPARE(current->at("latent:7").entry.evidence, (std::vector<int64_t>{3, 4, 5}));
        QVERIFY(!current->at("latent:7").stale);

        // The history cannot be rewritten, not even with raw SQL.
        QVERIFY(!db.db().exec("UPDATE concept_label SET label = 'x'").ok());
        QVERIFY(!db.db().exec("DELETE FROM concept_label").ok());
        QCOMPARE(ann.labelHistory("latent:7")->size(), size_t(2));

        // Bad entries are refused with a reason.
        auto bad = ann.appendLabel(label("latent:7", "x", "approved", *m));
        QVERIFY(!bad.ok() && bad.message().find("status") != std::string::npos);
        LabelEntry noAuthor = label("latent:7", "x", "proposed", *m);
        noAuthor.author.clear();
        QVERIFY(!ann.appendLabel(noAuthor).ok());
        QVERIFY(!ann.appendLabel(label("7", "x", "proposed", *m)).ok());
        QVERIFY(!ann.appendLabel(label("latent:7", "", "proposed", *m)).ok());

        // Under another SAE the labels are stale: shown, flagged, not applied.
        const ModelHashes other{m->vit, std::string(64, 't')};
        auto stale = ann.currentLabels(other);
        QCOMPARE(int(stale->size()), 2);
        QVERIFY(stale->at("latent:7").stale);
        QVERIFY(ann.appendLabel(label("latent:7", "granules", "proposed", other)).ok());
        stale = ann.currentLabels(other);
        QVERIFY(!stale->at("latent:7").stale);
        QCOMPARE(stale->at("latent:7").entry.label, std::string("granules"));
        // ... and the old binding is untouched.
        QCOMPARE(ann.currentLabels(*m)->at("latent:7").entry.label, std::string("Auer rod"));

        // Retracted (what undo writes when there was no label before): no label in force.
        QVERIFY(ann.appendLabel(label("latent:9", "", "retracted", *m)).ok());
        QVERIFY(!ann.currentLabels(*m)->count("latent:9"));
    }

    void groupsAreVersioned()
    {
        ProjectDb db = mustOpen(path("groups.cyto"));
        const int64_t run = makeProject(db);
        AnnotationDb ann(db);
        const ModelHashes m = *ann.hashesOfRun(run);
        GroupVersion g;
        g.name = "Auer rods";
        g.latents = {9, 7, 7};
        g.author = "dr.a";
        g.models = m;
        auto v1 = ann.saveGroup(g);
        QVERIFY2(v1.ok(), v1.message().c_str());
        QCOMPARE(v1->version, 1);
        QCOMPARE(v1->latents, (std::vector<int32_t>{7, 9}));
        GroupVersion next = *v1;
        next.uid.clear();
        next.at.clear();
        next.latents = {7, 9, 11};
        auto v2 = ann.saveGroup(next);
        QVERIFY2(v2.ok(), v2.message().c_str());
        QCOMPARE(v2->version, 2);
        QCOMPARE(v2->groupUid, v1->groupUid);
        QCOMPARE(ann.groups()->size(), size_t(1));
        QCOMPARE(ann.groups(true)->size(), size_t(2));
        QCOMPARE(*ann.latentsOf("group:" + v1->groupUid), (std::vector<int32_t>{7, 9, 11}));
        QVERIFY(!ann.latentsOf("group:nope").ok());
        GroupVersion empty = g;
        empty.latents.clear();
        QVERIFY(!ann.saveGroup(empty).ok());
        // A group's value in a cell is its strongest member: the review queue over the group
        // sees latent 9's 0.5 in cell 1 (where latent 7 is 0).
        FlagEntry f;
        f.concept = "group:" + v1->groupUid;
        f.threshold = 0.45;
        f.author = "dr.a";
        f.models = m;
        auto flag = ann.appendFlag(f);
        QVERIFY(flag.ok());
        auto p1 = db.patients();
        auto queue = ann.reviewQueue(run, (*p1)[0].id, *flag);
        QVERIFY2(queue.ok(), queue.message().c_str());
        // Patient P1: cells 1..20 (ids); latent 7 = (id-1)/40 <= 0.475; even cells have 0.5.
        for (const auto &c : *queue)
            QVERIFY(c.value >= 0.45);
        QCOMPARE(int(queue->size()), 11); // 10 even cells at 0.5 plus cell 19 (0.45)
    }

    void precisionCheckRecommendsThreshold()
    {
        ProjectDb db = mustOpen(path("precision.cyto"));
        const int64_t run = makeProject(db);
        AnnotationDb ann(db);
        auto task = ann.createTask(run, "precision", "latent:7", 4, 3, 5, 0.2, 42, "dr.a");
        QVERIFY2(task.ok(), task.message().c_str());
        QCOMPARE(int(task->items.size()), 12 + 5);
        std::set<int> positions;
        int negatives = 0;
        for (const auto &it : task->items) {
            positions.insert(it.position);
            if (it.bin < 0) {
                ++negatives;
                QVERIFY(it.value <= 0.2);
            } else {
                QVERIFY(it.value > 0.2);
            }
        }
        QCOMPARE(negatives, 5);
        QCOMPARE(int(positions.size()), 17);
        // Bins are ordered: every cell of bin b is at least as strong as every cell of bin b+1.
        for (const auto &a : task->items)
            for (const auto &b : task->items)
                if (a.bin >= 0 && b.bin > a.bin)
                    QVERIFY(a.value >= b.value);
        // The same seed samples the same cells.
        auto again = ann.createTask(run, "precision", "latent:7", 4, 3, 5, 0.2, 42, "dr.a");
        for (size_t i = 0; i < task->items.size(); ++i)
            QCOMPARE(again->items[i].imageId, task->items[i].imageId);
        QCOMPARE(ann.task(task->uid)->items.size(), task->items.size());

        // The annotator sees a real concept above 0.6 only.
        for (const auto &it : task->items) {
            AnnotationAnswer a;
            a.taskUid = task->uid;
            a.position = it.position;
            a.annotator = "dr.a";
            a.answer = it.value > 0.6 ? "hit" : "miss";
            QVERIFY(ann.appendAnswer(a).ok());
        }
        AnnotationAnswer bad;
        bad.taskUid = task->uid;
        bad.position = 999;
        bad.annotator = "dr.a";
        bad.answer = "hit";
        QVERIFY(!ann.appendAnswer(bad).ok());
        bad.position = 0;
        bad.answer = "maybe";
        QVERIFY(!ann.appendAnswer(bad).ok());

        auto answers = ann.answers(task->uid);
        QCOMPARE(int(answers->size()), 17);
        auto report = annotation::precisionReport(*task, *answers, 0.9);
        QCOMPARE(report.answered, 17);
        QCOMPARE(int(report.bins.size()), 4);
        QCOMPARE(*report.bins[0].precision, 1.0);
        QCOMPARE(*report.negatives.precision, 0.0);
        QVERIFY(report.recommendedThreshold.has_value());
        // Every sampled cell at or above the recommendation was a hit; it is not above the
        // weakest sampled hit of a passing bin.
        for (const auto &it : task->items)
            if (it.bin >= 0 && it.value >= *report.recommendedThreshold)
                QVERIFY2(it.value > 0.6, qPrintable(QString::number(it.value)));
        QVERIFY(*report.recommendedThreshold > 0.2);

        ThresholdEntry t;
        t.concept = "latent:7";
        t.threshold = *report.recommendedThreshold;
        t.taskUid = task->uid;
        t.author = "dr.a";
        t.models = task->models;
        QVERIFY(ann.appendThreshold(t).ok());
        QCOMPARE(ann.validatedThresholds(task->models)->at("latent:7"), *report.recommendedThreshold);
        QVERIFY(ann.validatedThresholds({"x", "y"})->empty());

        // Nothing above the threshold and no controls: a clear refusal.
        auto none = ann.createTask(run, "precision", "latent:7", 2, 2, 0, 5.0, 1, "dr.a");
        QVERIFY(!none.ok() && none.message().find("never exceeds") != std::string::npos);
    }

    void kappaMatchesWorkedExamples()
    {
        // Cohen: 50 items, yes/yes 20, yes/no 5, no/yes 10, no/no 15: po 0.7, pe 0.5, kappa 0.4.
        std::vector<std::string> a, b;
        auto add = [&](const char *x, const char *y, int n) {
            for (int i = 0; i < n; ++i) {
                a.push_back(x);
                b.push_back(y);
            }
        };
        add("yes", "yes", 20);
        add("yes", "no", 5);
        add("no", "yes", 10);
        add("no", "no", 15);
        auto k = annotation::cohenKappa(a, b);
        QVERIFY(k.ok());
        QVERIFY(std::abs(k->kappa - 0.4) < 1e-12);
        QVERIFY(std::abs(k->observed - 0.7) < 1e-12);
        QVERIFY(!annotation::cohenKappa({"hit", "hit"}, {"hit", "hit"}).ok());
        QVERIFY(!annotation::cohenKappa({"hit"}, {}).ok());

        // Fleiss (1971) as worked on Wikipedia: 10 items, 14 raters, 5 categories: 0.210.
        const std::vector<std::vector<int>> counts = {
            {0, 0, 0, 0, 14}, {0, 2, 6, 4, 2}, {0, 0, 3, 5, 6}, {0, 3, 9, 2, 0}, {2, 2, 8, 1, 1},
            {7, 7, 0, 0, 0},  {3, 2, 6, 3, 0}, {2, 5, 3, 2, 2}, {6, 5, 2, 1, 0}, {0, 2, 2, 3, 7}};
        auto f = annotation::fleissKappa(counts);
        QVERIFY(f.ok());
        QVERIFY2(std::abs(f->kappa - 0.20993) < 1e-4, qPrintable(QString::number(f->kappa)));
        QVERIFY(!annotation::fleissKappa({{2, 0}, {1, 2}}).ok()); // unequal ratings
    }

    void blindedDoubleAnnotationAndAdjudication()
    {
        ProjectDb db = mustOpen(path("agreement.cyto"));
        const int64_t run = makeProject(db);
        AnnotationDb ann(db);
        auto task = ann.createTask(run, "agreement", "latent:7", 2, 5, 4, 0.2, 7, "lead");
        QVERIFY(task.ok());
        const int n = int(task->items.size());
        QCOMPARE(n, 14);
        // Rater A: hit above 0.5; rater B: hit above 0.3 -> they disagree between 0.3 and 0.5.
        for (const auto &it : task->items) {
            for (const auto &[who, cut] : {std::pair<std::string, double>{"A", 0.5}, {"B", 0.3}}) {
                AnnotationAnswer x;
                x.taskUid = task->uid;
                x.position = it.position;
                x.annotator = who;
                x.answer = it.value > cut ? "hit" : "miss";
                QVERIFY(ann.appendAnswer(x).ok());
            }
        }
        auto answers = *ann.answers(task->uid);
        auto report = annotation::agreementReport(*task, answers);
        QCOMPARE(report.raters, (std::vector<std::string>{"A", "B"}));
        QCOMPARE(report.itemsRatedByAll, n);
        int expectedDisagreements = 0;
        std::vector<std::string> ra, rb;
        for (const auto &it : task->items) {
            expectedDisagreements += (it.value > 0.3) != (it.value > 0.5);
        }
        QCOMPARE(int(report.disagreements.size()), expectedDisagreements);
        QVERIFY(expectedDisagreements > 0);
        QVERIFY(report.kappa.has_value());
        QCOMPARE(report.kappa->method, std::string("Cohen"));
        QVERIFY(report.kappa->kappa < 1.0);

        // The adjudicator settles the first disagreement; the decided answer is theirs.
        const annotation::Disagreement d = report.disagreements.front();
        AnnotationAnswer adj;
        adj.taskUid = task->uid;
        adj.position = d.position;
        adj.annotator = "lead";
        adj.role = "adjudicator";
        adj.answer = "miss";
        QVERIFY(ann.appendAnswer(adj).ok());
        answers = *ann.answers(task->uid);
        report = annotation::agreementReport(*task, answers);
        QCOMPARE(*report.disagreements.front().adjudicated, std::string("miss"));
        bool found = false;
        for (const auto &[pos, answer] : annotation::decidedAnswers(answers))
            if (pos == d.position) {
                found = true;
                QCOMPARE(answer, std::string("miss"));
            }
        QVERIFY(found);

        // A third rater switches to Fleiss' kappa.
        for (const auto &it : task->items) {
            AnnotationAnswer x;
            x.taskUid = task->uid;
            x.position = it.position;
            x.annotator = "C";
            x.answer = it.value > 0.4 ? "hit" : "miss";
            QVERIFY(ann.appendAnswer(x).ok());
        }
        report = annotation::agreementReport(*task, *ann.answers(task->uid));
        QCOMPARE(report.kappa->method, std::string("Fleiss"));
        QCOMPARE(report.kappa->raters, 3);
    }

    void reviewQueueAndSignOff()
    {
        ProjectDb db = mustOpen(path("review.cyto"));
        const int64_t run = makeProject(db);
        AnnotationDb ann(db);
        const ModelHashes m = *ann.hashesOfRun(run);
        FlagEntry f;
        f.concept = "latent:7";
        f.threshold = 0.8;
        f.author = "dr.a";
        f.models = m;
        auto flag = ann.appendFlag(f);
        QVERIFY(flag.ok());
        QCOMPARE(ann.activeFlags(m)->size(), size_t(1));
        QVERIFY(ann.activeFlags({"x", "y"})->empty());

        const auto patients = *db.patients();
        const int64_t p2 = patients[1].code == "P2" ? patients[1].id : patients[0].id;
        auto queue = ann.reviewQueue(run, p2, *flag);
        QVERIFY(queue.ok());
        // P2 holds cells 20..39: values 0.8 .. 0.975 at or above 0.8 -> 8 cells, strongest first.
        QCOMPARE(int(queue->size()), 8);
        for (size_t i = 1; i < queue->size(); ++i)
            QVERIFY((*queue)[i - 1].value >= (*queue)[i].value);

        auto refused = ann.signOff(run, p2, *flag, "dr.a");
        QVERIFY(!refused.ok());
        QVERIFY2(refused.message().find("8 of 8") != std::string::npos, refused.message().c_str());
        for (size_t i = 0; i < queue->size(); ++i) {
            ReviewEntry r;
            r.flagUid = flag->uid;
            r.imageId = (*queue)[i].imageId;
            r.decision = i < 5 ? "confirmed" : "rejected";
            r.reviewer = "dr.a";
            QVERIFY(ann.appendReview(r).ok());
            if (i == 6)
                QVERIFY(ann.signOff(run, p2, *flag, "dr.a").message().find("1 of 8") != std::string::npos);
        }
        ReviewEntry changed;
        changed.flagUid = flag->uid;
        changed.imageId = (*queue)[0].imageId;
        changed.decision = "rejected";
        changed.reviewer = "dr.b";
        QVERIFY(ann.appendReview(changed).ok()); // a second opinion replaces the first
        auto latest = ann.latestReview(flag->uid, changed.imageId);
        QVERIFY(latest.ok() && latest->has_value());
        QCOMPARE((*latest)->reviewer, std::string("dr.b"));
        QCOMPARE((*latest)->decision, std::string("rejected"));
        QVERIFY(!ann.latestReview(flag->uid, 9999)->has_value());
        auto so = ann.signOff(run, p2, *flag, "dr.b", "reviewed twice");
        QVERIFY2(so.ok(), so.message().c_str());
        QCOMPARE(so->candidates, int64_t(8));
        QCOMPARE(so->confirmed, int64_t(4));
        QCOMPARE(ann.signOffs(p2)->size(), size_t(1));
        ReviewEntry bad = changed;
        bad.decision = "maybe";
        QVERIFY(!ann.appendReview(bad).ok());
        bad.decision = "confirmed";
        bad.flagUid = "no-such-flag";
        QVERIFY(!ann.appendReview(bad).ok());

        // Deactivating the flag is another ledger row.
        FlagEntry off = *flag;
        off.uid.clear();
        off.at.clear();
        off.active = false;
        QVERIFY(ann.appendFlag(off).ok());
        QVERIFY(ann.activeFlags(m)->empty());
        QCOMPARE(ann.flagHistory()->size(), size_t(2));
    }

    void exchangeRoundTripIsLossless()
    {
        ProjectDb a = mustOpen(path("exchange-a.cyto"));
        const int64_t run = makeProject(a);
        AnnotationDb annA(a);
        const ModelHashes m = *annA.hashesOfRun(run);
        LabelEntry l = label("latent:7", "Auer rod, \"faggot\"\nline two", "validated", m);
        l.evidence = {1, 2, 40};
        QVERIFY(annA.appendLabel(l).ok());
        GroupVersion g;
        g.name = "granules";
        g.latents = {7, 9};
        g.author = "dr.a";
        g.models = m;
        auto group = annA.saveGroup(g);
        QVERIFY(annA.appendLabel(label("group:" + group->groupUid, "fine granules", "proposed", m)).ok());
        FlagEntry f;
        f.concept = "latent:7";
        f.threshold = 0.1 + 0.2; // not exactly representable
        f.author = "dr.a";
        f.models = m;
        auto flag = annA.appendFlag(f);
        auto task = annA.createTask(run, "precision", "latent:7", 2, 2, 1, 0.2, 3, "dr.a");
        AnnotationAnswer ans;
        ans.taskUid = task->uid;
        ans.position = 1;
        ans.annotator = "dr.a";
        ans.answer = "hit";
        QVERIFY(annA.appendAnswer(ans).ok());
        auto queue = annA.reviewQueue(run, (*a.patients())[1].id, *flag);
        for (const auto &c : *queue) {
            ReviewEntry r;
            r.flagUid = flag->uid;
            r.imageId = c.imageId;
            r.decision = "confirmed";
            r.reviewer = "dr.a";
            QVERIFY(annA.appendReview(r).ok());
        }
        QVERIFY(annA.signOff(run, (*a.patients())[1].id, *flag, "dr.a").ok());

        const std::string json = path("export.json"), csv = path("export-csv");
        QVERIFY(annotation::exportAnnotations(annA, json).ok());
        QVERIFY(annotation::exportAnnotations(annA, csv).ok());
        QVERIFY(QFile::exists(QString::fromStdString(csv + "/concept_label.csv")));
        auto parsed = io::parseJson([&] {
            std::ifstream in(json);
            std::stringstream s;
            s << in.rdbuf();
            return s.str();
        }());
        QVERIFY(parsed.ok());
        QCOMPARE(parsed->find("tables")->find("concept_flag")->items[0].find("threshold")->number(), 0.1 + 0.2);

        for (const std::string &source : {json, csv}) {
            const std::string name = "exchange-b" + std::to_string(source == json) + ".cyto";
            ProjectDb b = mustOpen(path(name.c_str()));
            makeProject(b);
            AnnotationDb annB(b);
            auto report = annotation::importAnnotations(annB, source);
            QVERIFY2(report.ok(), report.message().c_str());
            QVERIFY2(report->problems.empty(), report->problems.empty() ? "" : report->problems[0].c_str());
            QVERIFY(report->added > 10);
            QCOMPARE(annotation::exchangeToJson(*annB.exportAll()), annotation::exchangeToJson(*annA.exportAll()));
            // Importing again adds nothing.
            auto again = annotation::importAnnotations(annB, source);
            QCOMPARE(again->added, int64_t(0));
            QCOMPARE(again->alreadyPresent, report->added);
        }

        // A project without those cells: the rows that need them are named and skipped.
        ProjectDb c = mustOpen(path("exchange-c.cyto"));
        AnnotationDb annC(c);
        auto partial = annotation::importAnnotations(annC, json);
        QVERIFY(partial.ok());
        QVERIFY(!partial->problems.empty());
        QVERIFY(partial->problems[0].find("not in this project") != std::string::npos);
        QVERIFY(annC.currentLabels(m)->count("latent:7"));

        // Column names come from the file's header: only the columns the export writes are
        // accepted (a real but unexported column such as `id`, or a name that is SQL, refuse
        // the table with a message); the other tables still import.
        const QString labelsCsv = QString::fromStdString(csv + "/concept_label.csv");
        QFile original(labelsCsv);
        QVERIFY(original.open(QIODevice::ReadOnly));
        const QByteArray csvText = original.readAll();
        original.close();
        const int headerEnd = csvText.indexOf('\n');
        const QByteArray header = csvText.left(headerEnd), body = csvText.mid(headerEnd + 1);
        QVERIFY(header.contains("note"));
        const QList<QPair<QByteArray, QByteArray>> hostile = {
            {"id," + header, "id"},
            {QByteArray(header).replace("note", "\"note\"\"); DROP TABLE image; --\""),
             "note\"); DROP TABLE image; --"}};
        int variant = 0;
        for (const auto &[newHeader, shownName] : hostile) {
            QByteArray rows = body;
            if (shownName == "id") { // one more value per row for the extra column
                QList<QByteArray> lines = body.split('\n');
                for (QByteArray &line : lines)
                    if (!line.isEmpty())
                        line.prepend(QByteArray::number(900 + variant) + ",");
                rows = lines.join('\n');
            }
            QFile out(labelsCsv);
            QVERIFY(out.open(QIODevice::WriteOnly | QIODevice::Truncate));
            out.write(newHeader + "\n" + rows);
            out.close();
            const std::string name = "exchange-hostile" + std::to_string(variant++) + ".cyto";
            ProjectDb h = mustOpen(path(name.c_str()));
            makeProject(h);
            const int64_t images = *h.count("SELECT count(*) FROM image");
            AnnotationDb annH(h);
            auto report = annotation::importAnnotations(annH, csv);
            QVERIFY2(report.ok(), report.message().c_str());
            bool named = false;
            for (const auto &p : report->problems)
                named |= p.find("table concept_label: column '" + shownName.toStdString() +
                                "' is not one of its columns") != std::string::npos;
            QVERIFY2(named, report->problems.empty() ? "no problem reported" : report->problems[0].c_str());
            QCOMPARE(*h.count("SELECT count(*) FROM concept_label"), int64_t(0));
            QCOMPARE(*h.count("SELECT count(*) FROM image"), images);
            QVERIFY(*h.count("SELECT count(*) FROM concept_flag") > 0); // the rest was imported
        }
        QVERIFY(original.open(QIODevice::WriteOnly | QIODevice::Truncate));
        original.write(csvText);
        original.close();

        // Damaged files: a message with the place.
        QFile bad(QString::fromStdString(path("bad.json")));
        QVERIFY(bad.open(QIODevice::WriteOnly));
        bad.write("{\"format\": \"cytosae-annotations\", \"version\": 1, \"tables\": {\"concept_label\": [1,}");
        bad.close();
        auto broken = annotation::importAnnotations(annC, path("bad.json"));
        QVERIFY(!broken.ok());
        QVERIFY2(broken.message().find("bad.json") != std::string::npos, broken.message().c_str());
        QVERIFY2(broken.message().find("line 1") != std::string::npos, broken.message().c_str());
        QVERIFY(!annotation::importAnnotations(annC, path("missing-folder")).ok());
    }

    void twoWriterProcessesLoseNothing()
    {
        const std::string file = path("shared.cyto");
        {
            ProjectDb db = mustOpen(file);
            makeProject(db);
        }
        const int perWriter = 150;
        QList<QProcess *> writers;
        for (const char *who : {"alice", "bob"}) {
            auto *p = new QProcess(this);
            QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
            env.insert("CYTOSAE_TEST_WRITER", QString::fromStdString(file) + "|" + who + "|" + QString::number(perWriter));
            p->setProcessEnvironment(env);
            p->start(QCoreApplication::applicationFilePath(), {});
            writers << p;
        }
        for (QProcess *p : writers) {
            QVERIFY(p->waitForFinished(600000));
            QVERIFY2(p->exitCode() == 0, p->readAllStandardError().constData());
        }
        ProjectDb db = mustOpen(file);
        AnnotationDb ann(db);
        auto history = ann.labelHistory();
        QCOMPARE(int(history->size()), 2 * perWriter);
        std::set<std::string> seen;
        for (const auto &e : *history)
            seen.insert(e.label);
        for (const char *who : {"alice", "bob"})
            for (int i = 0; i < perWriter; ++i)
                QVERIFY(seen.count(std::string(who) + "-" + std::to_string(i)));
        QCOMPARE(*db.quickCheck(), std::string("ok"));
    }
};

int main(int argc, char **argv)
{
    if (const char *spec = std::getenv("CYTOSAE_TEST_WRITER")) {
        const QStringList parts = QString::fromUtf8(spec).split('|');
        return writerChild(parts.value(0).toStdString(), parts.value(1).toStdString(), parts.value(2).toInt());
    }
    QCoreApplication app(argc, argv);
    TestAnnotation test;
    return QTest::qExec(&test, argc, argv);
}

#include "tst_annotation.moc"
