#include "store/AnnotationDb.h"

#include "io/JsonWriter.h"
#include "store/IdList.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <unordered_map>
#include <unordered_set>

namespace cytosae::store {

namespace {

std::mutex g_clockMutex;
std::function<std::string()> g_clock;

bool isBusy(const Status &s)
{
    const std::string &m = s.message();
    return m.find("locked") != std::string::npos || m.find("busy") != std::string::npos;
}

// Locale-independent (Qt applications set the C locale from the environment).
std::string formatReal(double v) { return io::JsonWriter::formatNumber(v, 17); }

std::optional<std::string> columnAsText(const Statement &q, int col)
{
    switch (q.columnType(col)) {
    case Statement::Type::Null: return std::nullopt;
    case Statement::Type::Real: return formatReal(q.columnDouble(col));
    case Statement::Type::Integer: return std::to_string(q.columnInt(col));
    default: return q.columnText(col);
    }
}

ModelHashes hashesAt(const Statement &q, int col) { return {q.columnText(col), q.columnText(col + 1)}; }

bool validAnswer(const std::string &a) { return a == "hit" || a == "miss"; }

// Columns: id, uid, flag_uid, image_id, decision, reviewer, at, note.
constexpr const char *kReviewColumns = "SELECT id, uid, flag_uid, image_id, decision, reviewer, at, note FROM review ";
ReviewEntry readReview(const Statement &q)
{
    ReviewEntry r;
    r.id = q.columnInt(0);
    r.uid = q.columnText(1);
    r.flagUid = q.columnText(2);
    r.imageId = q.columnInt(3);
    r.decision = q.columnText(4);
    r.reviewer = q.columnText(5);
    r.at = q.columnText(6);
    r.note = q.columnText(7);
    return r;
}

} // namespace

// ---- concept references ------------------------------------------------------------------

std::string ConceptRef::key() const { return isGroup() ? "group:" + groupUid : "latent:" + std::to_string(latent); }

std::optional<ConceptRef> ConceptRef::parse(const std::string &key)
{
    if (key.rfind("latent:", 0) == 0) {
        const std::string digits = key.substr(7);
        if (digits.empty() || digits.size() > 9 || !std::all_of(digits.begin(), digits.end(), ::isdigit))
            return std::nullopt;
        return ofLatent(std::stoi(digits));
    }
    if (key.rfind("group:", 0) == 0 && key.size() > 6)
        return ofGroup(key.substr(6));
    return std::nullopt;
}

// ---- clock, uids, transactions ---------------------------------------------------------------

void AnnotationDb::setClockForTesting(std::function<std::string()> now)
{
    std::lock_guard lock(g_clockMutex);
    g_clock = std::move(now);
}

std::string AnnotationDb::now()
{
    {
        std::lock_guard lock(g_clockMutex);
        if (g_clock)
            return g_clock();
    }
    const auto t = std::chrono::system_clock::now();
    const std::time_t secs = std::chrono::system_clock::to_time_t(t);
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count() % 1000;
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                  tm.tm_hour, tm.tm_min, tm.tm_sec, int(ms));
    return buf;
}

std::string AnnotationDb::newUid()
{
    // 128 random bits as hex: unique across projects and processes without coordination.
    static thread_local std::mt19937_64 rng(std::random_device{}() ^
                                            uint64_t(std::chrono::steady_clock::now().time_since_epoch().count()));
    char buf[40];
    std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(rng()),
                  static_cast<unsigned long long>(rng()));
    return buf;
}

Status AnnotationDb::writeTransaction(const std::function<Status()> &body)
{
    // The busy timeout (10 s) already waits for another writer; the loop covers longer waits
    // and the rare BUSY that SQLite reports without waiting (to avoid a deadlock).
    Status last;
    for (int attempt = 0; attempt < 200; ++attempt) {
        Status s = m_db.begin();
        if (!s) {
            if (!isBusy(s))
                return s;
            last = s;
            std::this_thread::sleep_for(std::chrono::milliseconds(5 + attempt % 20));
            continue;
        }
        s = body();
        if (s)
            s = m_db.commit();
        if (s)
            return s;
        m_db.rollback();
        if (!isBusy(s))
            return s;
        last = s;
        std::this_thread::sleep_for(std::chrono::milliseconds(5 + attempt % 20));
    }
    return Error("another program kept the project locked for too long: " + last.message());
}

Result<ModelHashes> AnnotationDb::hashesOfRun(int64_t runId)
{
    auto q = m_db.prepare("SELECT v.sha256, s.sha256 FROM run r JOIN model v ON v.id = r.vit_id "
                          "JOIN model s ON s.id = r.sae_id WHERE r.id = ?");
    if (!q)
        return q.error();
    q->bind(1, runId);
    if (!q->step()) {
        if (Status s = q->status(); !s)
            return s.error();
        return Error("run " + std::to_string(runId) + " not found");
    }
    return hashesAt(*q, 0);
}

// ---- labels ----------------------------------------------------------------------------------

Result<LabelEntry> AnnotationDb::appendLabel(LabelEntry e)
{
    if (!ConceptRef::parse(e.concept))
        return Error("'" + e.concept + "' is not a concept (expected latent:N or group:UID)");
    const auto &statuses = labelStatuses();
    if (std::find(statuses.begin(), statuses.end(), e.status) == statuses.end())
        return Error("unknown label status '" + e.status + "'");
    if (e.label.empty() && e.status != "retracted")
        return Error("a label needs a name");
    if (e.author.empty())
        return Error("a label needs an author (set the annotator name in Settings)");
    if (e.models.vit.empty() || e.models.sae.empty())
        return Error("a label must be bound to the ViT and SAE it describes");
    if (e.uid.empty())
        e.uid = newUid();
    if (e.at.empty())
        e.at = now();
    Status s = writeTransaction([&]() -> Status {
        auto ins = m_db.prepare("INSERT INTO concept_label(uid, concept, label, controlled, status, author, at, evidence, "
                                "note, vit_sha256, sae_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
        if (!ins)
            return ins.error();
        ins->bind(1, e.uid).bind(2, e.concept).bind(3, e.label).bind(4, int(e.controlled)).bind(5, e.status);
        ins->bind(6, e.author).bind(7, e.at).bind(8, formatIdList(e.evidence)).bind(9, e.note);
        ins->bind(10, e.models.vit).bind(11, e.models.sae);
        if (Status st = ins->exec(); !st)
            return st;
        e.id = m_db.lastInsertId();
        return Status::success();
    });
    if (!s)
        return s.error();
    return e;
}

Result<std::vector<LabelEntry>> AnnotationDb::labelHistory(const std::string &concept)
{
    std::string sql = "SELECT id, uid, concept, label, controlled, status, author, at, evidence, note, vit_sha256, "
                      "sae_sha256 FROM concept_label ";
    if (!concept.empty())
        sql += "WHERE concept = ? ";
    sql += "ORDER BY id";
    auto q = m_db.prepare(sql);
    if (!q)
        return q.error();
    if (!concept.empty())
        q->bind(1, concept);
    std::vector<LabelEntry> out;
    while (q->step()) {
        LabelEntry e;
        e.id = q->columnInt(0);
        e.uid = q->columnText(1);
        e.concept = q->columnText(2);
        e.label = q->columnText(3);
        e.controlled = q->columnInt(4) != 0;
        e.status = q->columnText(5);
        e.author = q->columnText(6);
        e.at = q->columnText(7);
        e.evidence = parseIdList(q->columnText(8));
        e.note = q->columnText(9);
        e.models = hashesAt(*q, 10);
        out.push_back(std::move(e));
    }
    if (Status s = q->status(); !s)
        return s.error();
    return out;
}

Result<std::map<std::string, LabelState>> AnnotationDb::currentLabels(const ModelHashes &models)
{
    auto history = labelHistory();
    if (!history)
        return history.error();
    std::map<std::string, LabelEntry> bound, other;
    for (LabelEntry &e : *history)
        (e.models == models ? bound : other)[e.concept] = std::move(e);
    std::map<std::string, LabelState> out;
    for (auto &[concept, e] : bound)
        if (e.status != "retracted")
            out[concept] = {std::move(e), false};
    for (auto &[concept, e] : other)
        if (!bound.count(concept) && e.status != "retracted")
            out[concept] = {std::move(e), true};
    return out;
}

// ---- groups ----------------------------------------------------------------------------------

Result<GroupVersion> AnnotationDb::saveGroup(GroupVersion g)
{
    if (g.name.empty())
        return Error("a concept group needs a name");
    if (g.latents.empty())
        return Error("a concept group needs at least one latent");
    if (std::any_of(g.latents.begin(), g.latents.end(), [](int32_t l) { return l < 0; }))
        return Error("latent numbers cannot be negative");
    if (g.author.empty())
        return Error("a concept group needs an author");
    std::sort(g.latents.begin(), g.latents.end());
    g.latents.erase(std::unique(g.latents.begin(), g.latents.end()), g.latents.end());
    if (g.uid.empty())
        g.uid = newUid();
    if (g.at.empty())
        g.at = now();
    const bool isNew = g.groupUid.empty();
    if (isNew)
        g.groupUid = newUid();
    Status s = writeTransaction([&]() -> Status {
        if (isNew) {
            auto ins = m_db.prepare("INSERT INTO concept_group(uid, created_by, created_at) VALUES (?, ?, ?)");
            if (!ins)
                return ins.error();
            ins->bind(1, g.groupUid).bind(2, g.author).bind(3, g.at);
            if (Status st = ins->exec(); !st)
                return st;
        }
        auto next = m_db.prepare("SELECT coalesce(max(version), 0) + 1, (SELECT count(*) FROM concept_group "
                                 "WHERE uid = ?1) FROM concept_group_version WHERE group_uid = ?1");
        if (!next)
            return next.error();
        next->bind(1, g.groupUid);
        if (!next->step())
            return next->status();
        if (next->columnInt(1) == 0)
            return Error("concept group " + g.groupUid + " does not exist");
        g.version = int(next->columnInt(0));
        auto ins = m_db.prepare("INSERT INTO concept_group_version(uid, group_uid, version, name, latents, author, at, "
                                "vit_sha256, sae_sha256, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
        if (!ins)
            return ins.error();
        ins->bind(1, g.uid).bind(2, g.groupUid).bind(3, g.version).bind(4, g.name).bind(5, formatIdList(g.latents));
        ins->bind(6, g.author).bind(7, g.at).bind(8, g.models.vit).bind(9, g.models.sae).bind(10, g.note);
        if (Status st = ins->exec(); !st)
            return st;
        g.id = m_db.lastInsertId();
        return Status::success();
    });
    if (!s)
        return s.error();
    return g;
}

Result<std::vector<GroupVersion>> AnnotationDb::groups(bool allVersions)
{
    std::string sql = "SELECT id, uid, group_uid, version, name, latents, author, at, note, vit_sha256, sae_sha256 "
                      "FROM concept_group_version ";
    if (!allVersions)
        sql += "WHERE id IN (SELECT max(id) FROM concept_group_version GROUP BY group_uid) ";
    sql += "ORDER BY id";
    auto q = m_db.prepare(sql);
    if (!q)
        return q.error();
    std::vector<GroupVersion> out;
    while (q->step()) {
        GroupVersion g;
        g.id = q->columnInt(0);
        g.uid = q->columnText(1);
        g.groupUid = q->columnText(2);
        g.version = int(q->columnInt(3));
        g.name = q->columnText(4);
        g.latents = parseIdList<int32_t>(q->columnText(5));
        g.author = q->columnText(6);
        g.at = q->columnText(7);
        g.note = q->columnText(8);
        g.models = hashesAt(*q, 9);
        out.push_back(std::move(g));
    }
    if (Status s = q->status(); !s)
        return s.error();
    return out;
}

Result<std::optional<GroupVersion>> AnnotationDb::group(const std::string &groupUid)
{
    auto all = groups();
    if (!all)
        return all.error();
    for (GroupVersion &g : *all)
        if (g.groupUid == groupUid)
            return std::optional<GroupVersion>(std::move(g));
    return std::optional<GroupVersion>();
}

Result<std::vector<int32_t>> AnnotationDb::latentsOf(const std::string &conceptKey)
{
    const auto ref = ConceptRef::parse(conceptKey);
    if (!ref)
        return Error("'" + conceptKey + "' is not a concept");
    if (!ref->isGroup())
        return std::vector<int32_t>{ref->latent};
    auto g = group(ref->groupUid);
    if (!g)
        return g.error();
    if (!*g)
        return Error("concept group " + ref->groupUid + " does not exist");
    return (*g)->latents;
}

// ---- flags and thresholds --------------------------------------------------------------------

Result<FlagEntry> AnnotationDb::appendFlag(FlagEntry f)
{
    if (!ConceptRef::parse(f.concept))
        return Error("'" + f.concept + "' is not a concept");
    if (!(f.threshold >= 0))
        return Error("a flag threshold must be a number >= 0");
    if (f.author.empty())
        return Error("a flag needs an author");
    if (f.uid.empty())
        f.uid = newUid();
    if (f.at.empty())
        f.at = now();
    Status s = writeTransaction([&]() -> Status {
        auto ins = m_db.prepare("INSERT INTO concept_flag(uid, concept, threshold, active, author, at, vit_sha256, "
                                "sae_sha256, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
        if (!ins)
            return ins.error();
        ins->bind(1, f.uid).bind(2, f.concept).bind(3, f.threshold).bind(4, int(f.active)).bind(5, f.author);
        ins->bind(6, f.at).bind(7, f.models.vit).bind(8, f.models.sae).bind(9, f.note);
        if (Status st = ins->exec(); !st)
            return st;
        f.id = m_db.lastInsertId();
        return Status::success();
    });
    if (!s)
        return s.error();
    return f;
}

Result<std::vector<FlagEntry>> AnnotationDb::flagHistory()
{
    auto q = m_db.prepare("SELECT id, uid, concept, threshold, active, author, at, note, vit_sha256, sae_sha256 "
                          "FROM concept_flag ORDER BY id");
    if (!q)
        return q.error();
    std::vector<FlagEntry> out;
    while (q->step()) {
        FlagEntry f;
        f.id = q->columnInt(0);
        f.uid = q->columnText(1);
        f.concept = q->columnText(2);
        f.threshold = q->columnDouble(3);
        f.active = q->columnInt(4) != 0;
        f.author = q->columnText(5);
        f.at = q->columnText(6);
        f.note = q->columnText(7);
        f.models = hashesAt(*q, 8);
        out.push_back(std::move(f));
    }
    if (Status s = q->status(); !s)
        return s.error();
    return out;
}

Result<std::vector<FlagEntry>> AnnotationDb::activeFlags(const ModelHashes &models)
{
    auto all = flagHistory();
    if (!all)
        return all.error();
    std::map<std::string, FlagEntry> newest;
    for (FlagEntry &f : *all)
        if (f.models == models)
            newest[f.concept] = std::move(f);
    std::vector<FlagEntry> out;
    for (auto &[concept, f] : newest)
        if (f.active)
            out.push_back(std::move(f));
    std::sort(out.begin(), out.end(), [](const FlagEntry &a, const FlagEntry &b) { return a.id < b.id; });
    return out;
}

Result<ThresholdEntry> AnnotationDb::appendThreshold(ThresholdEntry t)
{
    if (!ConceptRef::parse(t.concept))
        return Error("'" + t.concept + "' is not a concept");
    if (!(t.threshold >= 0))
        return Error("a threshold must be a number >= 0");
    if (t.author.empty())
        return Error("a threshold needs an author");
    if (t.uid.empty())
        t.uid = newUid();
    if (t.at.empty())
        t.at = now();
    Status s = writeTransaction([&]() -> Status {
        auto ins = m_db.prepare("INSERT INTO concept_threshold(uid, concept, threshold, target_precision, task_uid, "
                                "author, at, vit_sha256, sae_sha256, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
        if (!ins)
            return ins.error();
        ins->bind(1, t.uid).bind(2, t.concept).bind(3, t.threshold).bind(4, t.targetPrecision).bind(5, t.taskUid);
        ins->bind(6, t.author).bind(7, t.at).bind(8, t.models.vit).bind(9, t.models.sae).bind(10, t.note);
        if (Status st = ins->exec(); !st)
            return st;
        t.id = m_db.lastInsertId();
        return Status::success();
    });
    if (!s)
        return s.error();
    return t;
}

Result<std::map<std::string, double>> AnnotationDb::validatedThresholds(const ModelHashes &models)
{
    auto q = m_db.prepare("SELECT concept, threshold FROM concept_threshold WHERE vit_sha256 = ? AND sae_sha256 = ? "
                          "ORDER BY id");
    if (!q)
        return q.error();
    q->bind(1, models.vit).bind(2, models.sae);
    std::map<std::string, double> out;
    while (q->step())
        out[q->columnText(0)] = q->columnDouble(1);
    if (Status s = q->status(); !s)
        return s.error();
    return out;
}

// ---- annotation tasks ------------------------------------------------------------------------

Result<std::vector<std::pair<int64_t, double>>> AnnotationDb::conceptCells(int64_t runId, const std::string &conceptKey,
                                                                           int64_t patientId)
{
    auto latents = latentsOf(conceptKey);
    if (!latents)
        return latents.error();
    // A group's value in a cell is the strongest of its members.
    std::unordered_map<int64_t, double> value;
    CellFilter filter;
    filter.patientId = patientId;
    for (int32_t latent : *latents) {
        auto cells = m_project.topCells(runId, latent, -1, filter);
        if (!cells)
            return cells.error();
        for (const CellHit &c : *cells) {
            double &v = value[c.imageId];
            v = std::max(v, double(c.maxPatch));
        }
    }
    std::vector<std::pair<int64_t, double>> out(value.begin(), value.end());
    std::sort(out.begin(), out.end(), [](const auto &a, const auto &b) {
        return a.second != b.second ? a.second > b.second : a.first < b.first;
    });
    return out;
}

Result<AnnotationTask> AnnotationDb::createTask(int64_t runId, const std::string &kind, const std::string &conceptKey,
                                                int bins, int perBin, int negatives, double threshold, uint64_t seed,
                                                const std::string &author)
{
    if (kind != "precision" && kind != "agreement")
        return Error("unknown annotation task kind '" + kind + "'");
    if (bins < 1 || perBin < 1 || negatives < 0)
        return Error("bins and cells per bin must be positive, negative controls zero or more");
    if (author.empty())
        return Error("an annotation task needs an author");
    auto hashes = hashesOfRun(runId);
    if (!hashes)
        return hashes.error();
    auto cells = conceptCells(runId, conceptKey, 0);
    if (!cells)
        return cells.error();

    AnnotationTask t;
    t.uid = newUid();
    t.kind = kind;
    t.concept = conceptKey;
    t.bins = bins;
    t.perBin = perBin;
    t.negatives = negatives;
    t.threshold = threshold;
    t.seed = int64_t(seed & 0x7fffffffffffffffull);
    t.createdBy = author;
    t.at = now();
    t.models = *hashes;

    std::mt19937_64 rng(seed);
    std::vector<std::pair<int64_t, double>> above;
    std::unordered_set<int64_t> aboveIds;
    for (const auto &c : *cells)
        if (c.second > threshold) {
            above.push_back(c);
            aboveIds.insert(c.first);
        }
    std::vector<AnnotationItem> items;
    const size_t n = above.size();
    for (int b = 0; b < bins; ++b) {
        const size_t lo = n * size_t(b) / size_t(bins), hi = n * size_t(b + 1) / size_t(bins);
        std::vector<size_t> idx;
        for (size_t i = lo; i < hi; ++i)
            idx.push_back(i);
        std::shuffle(idx.begin(), idx.end(), rng);
        idx.resize(std::min(idx.size(), size_t(perBin)));
        for (size_t i : idx)
            items.push_back({0, above[i].first, b, above[i].second});
    }
    if (negatives > 0) {
        auto q = m_db.prepare("SELECT image_id FROM activation WHERE run_id = ? ORDER BY image_id");
        if (!q)
            return q.error();
        q->bind(1, runId);
        std::vector<int64_t> below;
        while (q->step())
            if (!aboveIds.count(q->columnInt(0)))
                below.push_back(q->columnInt(0));
        if (Status s = q->status(); !s)
            return s.error();
        std::shuffle(below.begin(), below.end(), rng);
        below.resize(std::min(below.size(), size_t(negatives)));
        std::unordered_map<int64_t, double> valueOf(cells->begin(), cells->end());
        for (int64_t id : below)
            items.push_back({0, id, -1, valueOf.count(id) ? valueOf[id] : 0.0});
    }
    if (items.empty())
        return Error("no cells to sample: the concept never exceeds " + formatReal(threshold) +
                     " and no negative controls were asked for");
    // Presentation order is shuffled so that the annotator cannot tell bins or controls apart.
    std::shuffle(items.begin(), items.end(), rng);
    for (size_t i = 0; i < items.size(); ++i)
        items[i].position = int(i);
    t.items = std::move(items);

    Status s = writeTransaction([&]() -> Status {
        auto ins = m_db.prepare("INSERT INTO annotation_task(uid, kind, concept, bins, per_bin, negatives, threshold, "
                                "seed, created_by, at, vit_sha256, sae_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
        if (!ins)
            return ins.error();
        ins->bind(1, t.uid).bind(2, t.kind).bind(3, t.concept).bind(4, t.bins).bind(5, t.perBin).bind(6, t.negatives);
        ins->bind(7, t.threshold).bind(8, t.seed).bind(9, t.createdBy).bind(10, t.at).bind(11, t.models.vit);
        ins->bind(12, t.models.sae);
        if (Status st = ins->exec(); !st)
            return st;
        t.id = m_db.lastInsertId();
        auto item = m_db.prepare("INSERT INTO annotation_item(task_uid, position, image_id, bin, value) "
                                 "VALUES (?, ?, ?, ?, ?)");
        if (!item)
            return item.error();
        for (const AnnotationItem &it : t.items) {
            item->reset();
            item->bind(1, t.uid).bind(2, it.position).bind(3, it.imageId).bind(4, it.bin).bind(5, it.value);
            if (Status st = item->exec(); !st)
                return st;
        }
        return Status::success();
    });
    if (!s)
        return s.error();
    return t;
}

Result<std::vector<AnnotationTask>> AnnotationDb::tasks()
{
    auto q = m_db.prepare("SELECT id, uid, kind, concept, bins, per_bin, negatives, threshold, seed, created_by, at, "
                          "vit_sha256, sae_sha256 FROM annotation_task ORDER BY id");
    if (!q)
        return q.error();
    std::vector<AnnotationTask> out;
    while (q->step()) {
        AnnotationTask t;
        t.id = q->columnInt(0);
        t.uid = q->columnText(1);
        t.kind = q->columnText(2);
        t.concept = q->columnText(3);
        t.bins = int(q->columnInt(4));
        t.perBin = int(q->columnInt(5));
        t.negatives = int(q->columnInt(6));
        t.threshold = q->columnDouble(7);
        t.seed = q->columnInt(8);
        t.createdBy = q->columnText(9);
        t.at = q->columnText(10);
        t.models = hashesAt(*q, 11);
        out.push_back(std::move(t));
    }
    if (Status s = q->status(); !s)
        return s.error();
    return out;
}

Result<AnnotationTask> AnnotationDb::task(const std::string &uid)
{
    auto all = tasks();
    if (!all)
        return all.error();
    auto it = std::find_if(all->begin(), all->end(), [&](const AnnotationTask &t) { return t.uid == uid; });
    if (it == all->end())
        return Error("annotation task " + uid + " not found");
    AnnotationTask t = std::move(*it);
    auto q = m_db.prepare("SELECT position, image_id, bin, value FROM annotation_item WHERE task_uid = ? "
                          "ORDER BY position");
    if (!q)
        return q.error();
    q->bind(1, uid);
    while (q->step())
        t.items.push_back({int(q->columnInt(0)), q->columnInt(1), int(q->columnInt(2)), q->columnDouble(3)});
    if (Status s = q->status(); !s)
        return s.error();
    return t;
}

Result<AnnotationAnswer> AnnotationDb::appendAnswer(AnnotationAnswer a)
{
    if (!validAnswer(a.answer))
        return Error("an answer is 'hit' or 'miss', not '" + a.answer + "'");
    if (a.role != "rater" && a.role != "adjudicator")
        return Error("unknown annotation role '" + a.role + "'");
    if (a.annotator.empty())
        return Error("an answer needs an annotator (set the annotator name in Settings)");
    if (a.uid.empty())
        a.uid = newUid();
    if (a.at.empty())
        a.at = now();
    Status s = writeTransaction([&]() -> Status {
        auto check = m_db.prepare("SELECT count(*) FROM annotation_item WHERE task_uid = ? AND position = ?");
        if (!check)
            return check.error();
        check->bind(1, a.taskUid).bind(2, a.position);
        if (!check->step())
            return check->status();
        if (check->columnInt(0) == 0)
            return Error("annotation task " + a.taskUid + " has no item " + std::to_string(a.position));
        auto ins = m_db.prepare("INSERT INTO annotation_answer(uid, task_uid, position, annotator, role, answer, at) "
                                "VALUES (?, ?, ?, ?, ?, ?, ?)");
        if (!ins)
            return ins.error();
        ins->bind(1, a.uid).bind(2, a.taskUid).bind(3, a.position).bind(4, a.annotator).bind(5, a.role);
        ins->bind(6, a.answer).bind(7, a.at);
        if (Status st = ins->exec(); !st)
            return st;
        a.id = m_db.lastInsertId();
        return Status::success();
    });
    if (!s)
        return s.error();
    return a;
}

Result<std::vector<AnnotationAnswer>> AnnotationDb::answers(const std::string &taskUid)
{
    auto q = m_db.prepare("SELECT id, uid, task_uid, position, annotator, role, answer, at FROM annotation_answer "
                          "WHERE id IN (SELECT max(id) FROM annotation_answer WHERE task_uid = ?1 "
                          "GROUP BY position, annotator, role) ORDER BY position, role, annotator");
    if (!q)
        return q.error();
    q->bind(1, taskUid);
    std::vector<AnnotationAnswer> out;
    while (q->step()) {
        AnnotationAnswer a;
        a.id = q->columnInt(0);
        a.uid = q->columnText(1);
        a.taskUid = q->columnText(2);
        a.position = int(q->columnInt(3));
        a.annotator = q->columnText(4);
        a.role = q->columnText(5);
        a.answer = q->columnText(6);
        a.at = q->columnText(7);
        out.push_back(std::move(a));
    }
    if (Status s = q->status(); !s)
        return s.error();
    return out;
}

// ---- review ----------------------------------------------------------------------------------

Result<std::vector<ReviewCandidate>> AnnotationDb::reviewQueue(int64_t runId, int64_t patientId, const FlagEntry &flag)
{
    if (patientId <= 0)
        return Error("the review queue is per patient; no patient was chosen");
    auto cells = conceptCells(runId, flag.concept, patientId);
    if (!cells)
        return cells.error();
    auto q = m_db.prepare(std::string(kReviewColumns) +
                          "WHERE id IN (SELECT max(id) FROM review WHERE flag_uid = ? GROUP BY image_id)");
    if (!q)
        return q.error();
    q->bind(1, flag.uid);
    std::unordered_map<int64_t, ReviewEntry> decided;
    while (q->step()) {
        ReviewEntry r = readReview(*q);
        decided[r.imageId] = std::move(r);
    }
    if (Status s = q->status(); !s)
        return s.error();
    std::vector<ReviewCandidate> out;
    for (const auto &[imageId, value] : *cells) {
        if (value < flag.threshold)
            break; // strongest first
        ReviewCandidate c{imageId, value, std::nullopt};
        if (auto it = decided.find(imageId); it != decided.end())
            c.decision = it->second;
        out.push_back(std::move(c));
    }
    return out;
}

Result<std::optional<ReviewEntry>> AnnotationDb::latestReview(const std::string &flagUid, int64_t imageId)
{
    auto q = m_db.prepare(std::string(kReviewColumns) + "WHERE flag_uid = ? AND image_id = ? ORDER BY id DESC LIMIT 1");
    if (!q)
        return q.error();
    q->bind(1, flagUid).bind(2, imageId);
    if (q->step())
        return std::optional<ReviewEntry>(readReview(*q));
    if (Status s = q->status(); !s)
        return s.error();
    return std::optional<ReviewEntry>();
}

Result<ReviewEntry> AnnotationDb::appendReview(ReviewEntry r)
{
    if (r.decision != "confirmed" && r.decision != "rejected")
        return Error("a review decision is 'confirmed' or 'rejected', not '" + r.decision + "'");
    if (r.reviewer.empty())
        return Error("a review decision needs a reviewer (set the annotator name in Settings)");
    if (r.uid.empty())
        r.uid = newUid();
    if (r.at.empty())
        r.at = now();
    Status s = writeTransaction([&]() -> Status {
        auto ins = m_db.prepare("INSERT INTO review(uid, flag_uid, image_id, decision, reviewer, at, note) "
                                "VALUES (?, ?, ?, ?, ?, ?, ?)");
        if (!ins)
            return ins.error();
        ins->bind(1, r.uid).bind(2, r.flagUid).bind(3, r.imageId).bind(4, r.decision).bind(5, r.reviewer);
        ins->bind(6, r.at).bind(7, r.note);
        if (Status st = ins->exec(); !st)
            return st.message().find("FOREIGN KEY") != std::string::npos
                       ? Status(Error("the flag or the cell of this decision is not in the project"))
                       : st;
        r.id = m_db.lastInsertId();
        return Status::success();
    });
    if (!s)
        return s.error();
    return r;
}

Result<SignOff> AnnotationDb::signOff(int64_t runId, int64_t patientId, const FlagEntry &flag,
                                      const std::string &reviewer, const std::string &note)
{
    if (reviewer.empty())
        return Error("a sign-off needs a reviewer (set the annotator name in Settings)");
    auto hashes = hashesOfRun(runId);
    if (!hashes)
        return hashes.error();
    auto queue = reviewQueue(runId, patientId, flag);
    if (!queue)
        return queue.error();
    SignOff so;
    so.candidates = int64_t(queue->size());
    int64_t open = 0;
    for (const ReviewCandidate &c : *queue) {
        if (!c.decision)
            ++open;
        else if (c.decision->decision == "confirmed")
            ++so.confirmed;
    }
    if (open > 0)
        return Error("sign-off refused: " + std::to_string(open) + " of " + std::to_string(so.candidates) +
                     " flagged cells have no decision yet");
    so.uid = newUid();
    so.flagUid = flag.uid;
    so.patientId = patientId;
    so.reviewer = reviewer;
    so.at = now();
    so.note = note;
    so.models = *hashes;
    Status s = writeTransaction([&]() -> Status {
        auto ins = m_db.prepare("INSERT INTO review_signoff(uid, flag_uid, patient_id, reviewer, at, candidates, "
                                "confirmed, vit_sha256, sae_sha256, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
        if (!ins)
            return ins.error();
        ins->bind(1, so.uid).bind(2, so.flagUid).bind(3, so.patientId).bind(4, so.reviewer).bind(5, so.at);
        ins->bind(6, so.candidates).bind(7, so.confirmed).bind(8, so.models.vit).bind(9, so.models.sae);
        ins->bind(10, so.note);
        if (Status st = ins->exec(); !st)
            return st;
        so.id = m_db.lastInsertId();
        return Status::success();
    });
    if (!s)
        return s.error();
    return so;
}

Result<std::map<int64_t, AnnotationDb::FlaggedCount>> AnnotationDb::flaggedCounts(int64_t runId,
                                                                                 const std::vector<FlagEntry> &flags)
{
    std::map<int64_t, FlaggedCount> out;
    if (flags.empty())
        return out;
    std::unordered_map<int64_t, bool> cellOpen; // flagged cell -> still open for some flag
    for (const FlagEntry &flag : flags) {
        auto cells = conceptCells(runId, flag.concept, 0);
        if (!cells)
            return cells.error();
        auto q = m_db.prepare("SELECT DISTINCT image_id FROM review WHERE flag_uid = ?");
        if (!q)
            return q.error();
        q->bind(1, flag.uid);
        std::unordered_set<int64_t> decided;
        while (q->step())
            decided.insert(q->columnInt(0));
        if (Status s = q->status(); !s)
            return s.error();
        for (const auto &[imageId, value] : *cells) {
            if (value < flag.threshold)
                break; // strongest first
            bool &open = cellOpen[imageId];
            open = open || !decided.count(imageId);
        }
    }
    auto q = m_db.prepare("SELECT id, coalesce(patient_id, 0) FROM image WHERE qc_status = 'ok'");
    if (!q)
        return q.error();
    while (q->step()) {
        auto it = cellOpen.find(q->columnInt(0));
        if (it == cellOpen.end())
            continue;
        FlaggedCount &c = out[q->columnInt(1)];
        ++c.flagged;
        c.open += it->second;
    }
    if (Status s = q->status(); !s)
        return s.error();
    return out;
}

Result<std::vector<SignOff>> AnnotationDb::signOffs(int64_t patientId)
{
    std::string sql = "SELECT id, uid, flag_uid, patient_id, reviewer, at, note, candidates, confirmed, vit_sha256, "
                      "sae_sha256 FROM review_signoff ";
    if (patientId)
        sql += "WHERE patient_id = ? ";
    sql += "ORDER BY id";
    auto q = m_db.prepare(sql);
    if (!q)
        return q.error();
    if (patientId)
        q->bind(1, patientId);
    std::vector<SignOff> out;
    while (q->step()) {
        SignOff so;
        so.id = q->columnInt(0);
        so.uid = q->columnText(1);
        so.flagUid = q->columnText(2);
        so.patientId = q->columnInt(3);
        so.reviewer = q->columnText(4);
        so.at = q->columnText(5);
        so.note = q->columnText(6);
        so.candidates = q->columnInt(7);
        so.confirmed = q->columnInt(8);
        so.models = hashesAt(*q, 9);
        out.push_back(std::move(so));
    }
    if (Status s = q->status(); !s)
        return s.error();
    return out;
}

// ---- audit -----------------------------------------------------------------------------------

Result<std::vector<AuditEntry>> AnnotationDb::auditTrail(int limit)
{
    auto q = m_db.prepare(
        "SELECT at, author, 'label ' || status, concept, label || CASE WHEN note <> '' THEN ' (' || note || ')' "
        "ELSE '' END FROM concept_label "
        "UNION ALL SELECT at, author, 'group version ' || version, 'group:' || group_uid, name || ' ' || latents "
        "FROM concept_group_version "
        "UNION ALL SELECT at, author, CASE WHEN active THEN 'flag pathognomonic' ELSE 'remove flag' END, concept, "
        "'threshold ' || printf('%.3f', threshold) FROM concept_flag "
        "UNION ALL SELECT at, author, 'validated threshold', concept, printf('%.3f (target precision %.2f)', threshold, "
        "target_precision) FROM concept_threshold "
        "UNION ALL SELECT at, created_by, 'new ' || kind || ' task', concept, "
        "bins || ' bins x ' || per_bin || ' cells + ' || negatives || ' controls' FROM annotation_task "
        "UNION ALL SELECT r.at, r.reviewer, 'review: ' || r.decision, f.concept, 'cell ' || r.image_id "
        "FROM review r JOIN concept_flag f ON f.uid = r.flag_uid "
        "UNION ALL SELECT s.at, s.reviewer, 'sign-off', f.concept, 'patient ' || p.code || ': ' || s.confirmed || "
        "' of ' || s.candidates || ' confirmed' FROM review_signoff s JOIN concept_flag f ON f.uid = s.flag_uid "
        "JOIN patient p ON p.id = s.patient_id "
        "ORDER BY 1 DESC LIMIT ?");
    if (!q)
        return q.error();
    q->bind(1, limit);
    std::vector<AuditEntry> out;
    while (q->step())
        out.push_back({q->columnText(0), q->columnText(1), q->columnText(2), q->columnText(3), q->columnText(4)});
    if (Status s = q->status(); !s)
        return s.error();
    return out;
}

// ---- exchange --------------------------------------------------------------------------------

namespace {

// One exported table: the query that reads it with portable references, and the columns it
// is written back to. Import order follows the references (groups before their versions, ...).
struct TableSpec {
    const char *name;
    const char *exportSql;
};

const TableSpec kTables[] = {
    {"concept_group", "SELECT uid, created_by, created_at FROM concept_group ORDER BY id"},
    {"concept_group_version", "SELECT uid, group_uid, version, name, latents, author, at, vit_sha256, sae_sha256, "
                              "note FROM concept_group_version ORDER BY id"},
    {"concept_label", "SELECT uid, concept, label, controlled, status, author, at, evidence, note, vit_sha256, "
                      "sae_sha256 FROM concept_label ORDER BY id"},
    {"concept_flag", "SELECT uid, concept, threshold, active, author, at, vit_sha256, sae_sha256, note "
                     "FROM concept_flag ORDER BY id"},
    {"concept_threshold", "SELECT uid, concept, threshold, target_precision, task_uid, author, at, vit_sha256, "
                          "sae_sha256, note FROM concept_threshold ORDER BY id"},
    {"annotation_task", "SELECT uid, kind, concept, bins, per_bin, negatives, threshold, seed, created_by, at, "
                        "vit_sha256, sae_sha256 FROM annotation_task ORDER BY id"},
    {"annotation_item", "SELECT a.task_uid, a.position, i.sha256 AS image_sha256, i.path AS image_path, a.bin, a.value "
                        "FROM annotation_item a JOIN annotation_task t ON t.uid = a.task_uid "
                        "JOIN image i ON i.id = a.image_id ORDER BY t.id, a.position"},
    {"annotation_answer", "SELECT uid, task_uid, position, annotator, role, answer, at FROM annotation_answer "
                          "ORDER BY id"},
    {"review", "SELECT r.uid, r.flag_uid, i.sha256 AS image_sha256, i.path AS image_path, r.decision, r.reviewer, "
               "r.at, r.note FROM review r JOIN image i ON i.id = r.image_id ORDER BY r.id"},
    {"review_signoff", "SELECT s.uid, s.flag_uid, p.code AS patient_code, s.reviewer, s.at, s.candidates, s.confirmed, "
                       "s.vit_sha256, s.sae_sha256, s.note FROM review_signoff s JOIN patient p ON p.id = s.patient_id "
                       "ORDER BY s.id"},
};

} // namespace

Result<std::vector<ExchangeTable>> AnnotationDb::exportAll()
{
    // Evidence cells are local image ids: exported as the images' sha256, space-separated.
    std::unordered_map<int64_t, std::string> shaOf;
    {
        auto q = m_db.prepare("SELECT id, coalesce(sha256, '') FROM image");
        if (!q)
            return q.error();
        while (q->step())
            shaOf[q->columnInt(0)] = q->columnText(1);
        if (Status s = q->status(); !s)
            return s.error();
    }
    std::vector<ExchangeTable> out;
    for (const TableSpec &spec : kTables) {
        auto q = m_db.prepare(spec.exportSql);
        if (!q)
            return q.error();
        ExchangeTable t;
        t.name = spec.name;
        for (int c = 0; c < q->columnCount(); ++c)
            t.columns.push_back(q->columnName(c));
        while (q->step()) {
            std::vector<std::optional<std::string>> row;
            for (int c = 0; c < q->columnCount(); ++c) {
                auto v = columnAsText(*q, c);
                if (t.columns[size_t(c)] == "evidence" && v) {
                    std::string shas;
                    for (int64_t id : parseIdList(*v))
                        shas += (shas.empty() ? "" : " ") + shaOf[id];
                    v = shas;
                }
                row.push_back(std::move(v));
            }
            t.rows.push_back(std::move(row));
        }
        if (Status s = q->status(); !s)
            return s.error();
        out.push_back(std::move(t));
    }
    return out;
}

Result<ImportReport> AnnotationDb::importAll(const std::vector<ExchangeTable> &tables)
{
    ImportReport report;
    std::map<std::string, const ExchangeTable *> byName;
    for (const ExchangeTable &t : tables) {
        const bool known = std::any_of(std::begin(kTables), std::end(kTables),
                                       [&](const TableSpec &s) { return t.name == s.name; });
        if (!known)
            report.problems.push_back("unknown table '" + t.name + "' ignored");
        else
            byName[t.name] = &t;
    }
    // Lookups of portable references, prepared once for all rows.
    auto bySha = m_db.prepare("SELECT id FROM image WHERE sha256 = ? ORDER BY qc_status <> 'ok', id LIMIT 1");
    auto byPath = m_db.prepare("SELECT id FROM image WHERE path = ?");
    auto byCode = m_db.prepare("SELECT id FROM patient WHERE code = ?");
    if (!bySha || !byPath || !byCode)
        return (!bySha ? bySha : !byPath ? byPath : byCode).error();
    auto lookup = [](Statement &q, const std::string &key) -> std::optional<int64_t> {
        if (key.empty())
            return std::nullopt;
        q.reset();
        std::optional<int64_t> id;
        if (q.bind(1, key).step())
            id = q.columnInt(0);
        q.reset(); // no statement left open across the write transaction
        return id;
    };
    auto imageId = [&](const std::string &sha, const std::string &path) -> std::optional<int64_t> {
        if (auto id = lookup(*bySha, sha))
            return id;
        return lookup(*byPath, path);
    };

    Status s = writeTransaction([&]() -> Status {
        report.added = report.alreadyPresent = 0;
        std::vector<std::string> problems;
        for (const TableSpec &spec : kTables) {
            auto it = byName.find(spec.name);
            if (it == byName.end())
                continue;
            const ExchangeTable &t = *it->second;
            if (t.rows.empty())
                continue;
            auto col = [&](const std::string &name) -> int {
                auto c = std::find(t.columns.begin(), t.columns.end(), name);
                return c == t.columns.end() ? -1 : int(c - t.columns.begin());
            };
            // Only the columns this version exports for the table (the allow-list is the export
            // query's own column list), each once: names from a file never reach SQL otherwise.
            std::vector<std::string> allowed;
            {
                auto q = m_db.prepare(spec.exportSql);
                if (!q)
                    return q.error();
                for (int c = 0; c < q->columnCount(); ++c)
                    allowed.push_back(q->columnName(c));
            }
            std::string refused;
            for (size_t i = 0; i < t.columns.size() && refused.empty(); ++i) {
                if (std::find(allowed.begin(), allowed.end(), t.columns[i]) == allowed.end())
                    refused = "column '" + t.columns[i] + "' is not one of its columns";
                else if (std::find(t.columns.begin(), t.columns.begin() + long(i), t.columns[i]) !=
                         t.columns.begin() + long(i))
                    refused = "column '" + t.columns[i] + "' is given twice";
            }
            if (!refused.empty()) {
                problems.push_back("table " + t.name + ": " + refused + "; none of its " +
                                   std::to_string(t.rows.size()) + " row(s) were imported");
                continue;
            }
            // Target columns: the export's, with portable references turned back into ids.
            std::vector<std::string> target;
            for (const std::string &c : t.columns) {
                if (c == "image_sha256")
                    target.push_back("image_id");
                else if (c == "image_path")
                    continue;
                else if (c == "patient_code")
                    target.push_back("patient_id");
                else
                    target.push_back(c);
            }
            std::string sql = "INSERT OR IGNORE INTO " + std::string(spec.name) + "(";
            for (size_t i = 0; i < target.size(); ++i)
                sql += (i ? ", \"" : "\"") + target[i] + "\""; // allowed names: letters and '_' only
            sql += ") VALUES (";
            for (size_t i = 0; i < target.size(); ++i)
                sql += i ? ", ?" : "?";
            sql += ")";
            auto ins = m_db.prepare(sql);
            if (!ins)
                return Error("table " + t.name + ": " + ins.message());
            const int pathCol = col("image_path");
            for (size_t r = 0; r < t.rows.size(); ++r) {
                const auto &row = t.rows[r];
                if (row.size() != t.columns.size()) {
                    problems.push_back(t.name + " row " + std::to_string(r + 1) + ": " + std::to_string(row.size()) +
                                       " values for " + std::to_string(t.columns.size()) + " columns");
                    continue;
                }
                ins->reset();
                int bindIndex = 1;
                bool skip = false;
                for (size_t c = 0; c < t.columns.size() && !skip; ++c) {
                    const std::string &name = t.columns[c];
                    if (name == "image_path")
                        continue;
                    if (name == "image_sha256") {
                        const std::string sha = row[c].value_or(""),
                                          path = pathCol >= 0 ? row[size_t(pathCol)].value_or("") : "";
                        auto id = imageId(sha, path);
                        if (!id) {
                            problems.push_back(t.name + " row " + std::to_string(r + 1) + ": image " +
                                               (path.empty() ? sha : path) + " is not in this project; skipped");
                            skip = true;
                            break;
                        }
                        ins->bind(bindIndex++, *id);
                    } else if (name == "patient_code") {
                        auto patient = lookup(*byCode, row[c].value_or(""));
                        if (!patient) {
                            problems.push_back(t.name + " row " + std::to_string(r + 1) + ": patient '" +
                                               row[c].value_or("") + "' is not in this project; skipped");
                            skip = true;
                            break;
                        }
                        ins->bind(bindIndex++, *patient);
                    } else if (name == "evidence") {
                        std::vector<int64_t> ids;
                        const std::string v = row[c].value_or("");
                        size_t pos = 0;
                        while (pos < v.size()) {
                            size_t end = v.find(' ', pos);
                            if (end == std::string::npos)
                                end = v.size();
                            const std::string sha = v.substr(pos, end - pos);
                            if (!sha.empty()) {
                                if (auto id = imageId(sha, {}))
                                    ids.push_back(*id);
                                else
                                    problems.push_back(t.name + " row " + std::to_string(r + 1) + ": evidence image " +
                                                       sha + " is not in this project; left out of the evidence");
                            }
                            pos = end + 1;
                        }
                        ins->bind(bindIndex++, formatIdList(ids));
                    } else if (row[c]) {
                        ins->bind(bindIndex++, *row[c]);
                    } else {
                        ins->bindNull(bindIndex++);
                    }
                }
                if (skip)
                    continue;
                if (Status st = ins->exec(); !st) {
                    problems.push_back(t.name + " row " + std::to_string(r + 1) + ": " + st.message());
                    continue;
                }
                (m_db.changes() > 0 ? report.added : report.alreadyPresent)++;
            }
        }
        report.problems.insert(report.problems.end(), problems.begin(), problems.end());
        return Status::success();
    });
    if (!s)
        return s.error();
    return report;
}

} // namespace cytosae::store
