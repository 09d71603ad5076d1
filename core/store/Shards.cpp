#include "store/Shards.h"

#include "store/ProjectDb.h"

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <map>
#include <set>
#include <unordered_map>

namespace fs = std::filesystem;

namespace cytosae::store {

namespace {

constexpr int kMaxShards = 100000;
constexpr size_t kListed = 5; // examples listed per kind of problem

Result<std::vector<std::string>> columnsOf(Database &db, const std::string &table)
{
    auto q = db.prepare("SELECT name FROM pragma_table_info(?) ORDER BY cid");
    if (!q)
        return q.error();
    q->bind(1, table);
    std::vector<std::string> out;
    while (q->step())
        out.push_back(q->columnText(0));
    if (Status s = q->status(); !s)
        return s.error();
    if (out.empty())
        return Error("no table " + table);
    return out;
}

// Columns of `table` present in both databases (the files may differ in schema version),
// minus `skip`.
Result<std::vector<std::string>> commonColumns(Database &from, Database &to, const std::string &table,
                                               const std::set<std::string> &skip = {})
{
    auto a = columnsOf(from, table);
    if (!a)
        return a.error();
    auto b = columnsOf(to, table);
    if (!b)
        return b.error();
    std::vector<std::string> out;
    for (const auto &c : *b)
        if (!skip.count(c) && std::find(a->begin(), a->end(), c) != a->end())
            out.push_back(c);
    return out;
}

std::string joined(const std::vector<std::string> &names, const std::string &prefix = {})
{
    std::string s;
    for (size_t i = 0; i < names.size(); ++i)
        s += (i ? ", " : "") + prefix + names[i];
    return s;
}

std::string placeholders(size_t n, size_t first = 1)
{
    std::string s;
    for (size_t i = 0; i < n; ++i)
        s += (i ? ", ?" : "?") + std::to_string(first + i);
    return s;
}

Result<std::string> metaValue(Database &db, const std::string &key)
{
    auto q = db.prepare("SELECT value FROM meta WHERE key = ?");
    if (!q)
        return q.error();
    q->bind(1, key);
    if (q->step())
        return q->columnText(0);
    if (Status s = q->status(); !s)
        return s.error();
    return std::string();
}

std::string shortHash(const std::string &sha)
{
    return sha.substr(0, 12) + "…";
}

// Copies every row `select` yields (columns in `columns` order) into `table` of `to`,
// skipping rows whose key is already there.
Status copyRows(Database &from, Database &to, const std::string &table, const std::vector<std::string> &columns,
                const std::string &where, const ShardSpec &spec)
{
    auto sel = from.prepare("SELECT " + joined(columns) + " FROM " + table + " " + where);
    if (!sel)
        return sel.error();
    sel->bind(1, spec.count).bind(2, spec.index - 1);
    auto ins = to.prepare("INSERT OR IGNORE INTO " + table + "(" + joined(columns) + ") VALUES (" +
                          placeholders(columns.size()) + ")");
    if (!ins)
        return ins.error();
    while (sel->step()) {
        ins->reset();
        for (size_t c = 0; c < columns.size(); ++c)
            ins->bindColumn(int(c + 1), *sel, int(c));
        if (Status s = ins->exec(); !s)
            return Error(table + ": " + s.message());
    }
    return sel->status();
}

} // namespace

Result<ShardSpec> parseShardSpec(const std::string &text)
{
    const auto slash = text.find('/');
    ShardSpec spec;
    auto number = [](const std::string &s, int &out) {
        const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
        return ec == std::errc() && end == s.data() + s.size() && !s.empty();
    };
    if (slash == std::string::npos || !number(text.substr(0, slash), spec.index) ||
        !number(text.substr(slash + 1), spec.count))
        return Error("--shard needs I/N, e.g. 2/8 (shard 2 of 8), not '" + text + "'");
    if (spec.count < 1 || spec.count > kMaxShards || spec.index < 1 || spec.index > spec.count)
        return Error("--shard " + text + ": I must be between 1 and N, and N at most " + std::to_string(kMaxShards));
    return spec;
}

std::string toString(const ShardSpec &spec)
{
    return std::to_string(spec.index) + "/" + std::to_string(spec.count);
}

Result<int64_t> prepareShard(const std::string &projectPath, const std::string &shardPath, const ShardSpec &spec)
{
    std::error_code ec;
    if (fs::exists(shardPath, ec) && fs::equivalent(projectPath, shardPath, ec))
        return Error(shardPath + ": the shard database must be another file than the project");
    auto project = ProjectDb::open(projectPath, ProjectDb::OpenMode::ReadOnly);
    if (!project)
        return project.error().withContext(projectPath);
    auto shard = ProjectDb::open(shardPath, ProjectDb::OpenMode::Create);
    if (!shard)
        return shard.error().withContext(shardPath);
    Database &from = project->db();
    Database &to = shard->db();

    auto existing = metaValue(to, "shard");
    if (!existing)
        return existing.error().withContext(shardPath);
    if (existing->empty()) {
        auto images = to.queryInt("SELECT count(*) FROM image");
        if (!images)
            return images.error().withContext(shardPath);
        if (*images > 0)
            return Error(shardPath + ": is a project with images, not a shard database; give a new file");
    } else if (*existing != toString(spec)) {
        return Error(shardPath + ": holds shard " + *existing + ", not " + toString(spec));
    }

    auto patientColumns = commonColumns(from, to, "patient");
    auto imageColumns = commonColumns(from, to, "image");
    if (!patientColumns || !imageColumns)
        return Error(projectPath + ": " + (!patientColumns ? patientColumns.message() : imageColumns.message()));
    const std::string inShard = "qc_status = 'ok' AND id % ?1 = ?2";
    if (Status s = to.begin(); !s)
        return s.error().withContext(shardPath);
    auto fail = [&](const Error &e) -> Result<int64_t> {
        to.rollback();
        return e.withContext(shardPath);
    };
    if (Status s = copyRows(from, to, "patient", *patientColumns,
                            "WHERE id IN (SELECT patient_id FROM image WHERE " + inShard + ")", spec);
        !s)
        return fail(s.error());
    if (Status s = copyRows(from, to, "image", *imageColumns, "WHERE " + inShard, spec); !s)
        return fail(s.error());
    auto count = to.queryInt("SELECT count(*) FROM image");
    if (!count)
        return fail(count.error());
    auto meta = to.prepare("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)");
    if (!meta)
        return fail(meta.error());
    const std::pair<std::string, std::string> entries[] = {{"shard", toString(spec)},
                                                           {"shard_project", fs::absolute(projectPath, ec).string()},
                                                           {"shard_images", std::to_string(*count)}};
    for (const auto &[k, v] : entries) {
        meta->reset();
        meta->bind(1, k).bind(2, v);
        if (Status s = meta->exec(); !s)
            return fail(s.error());
    }
    if (Status s = to.commit(); !s)
        return fail(s.error());
    return *count;
}

namespace {

struct ShardInfo {
    std::string path;
    ShardSpec spec;
    RunRecord run;
    ModelRecord vit, sae;
    std::vector<int64_t> covered; // images with results or a recorded failure
    int64_t results = 0, failures = 0;
};

// Reads what the checks need from one shard; problems go to `problems`.
std::optional<ShardInfo> inspectShard(const std::string &path,
                                      const std::unordered_map<int64_t, std::pair<std::string, std::string>> &images,
                                      std::vector<std::string> &problems)
{
    auto db = ProjectDb::open(path, ProjectDb::OpenMode::ReadOnly);
    if (!db) {
        problems.push_back(path + ": " + db.message());
        return std::nullopt;
    }
    ShardInfo info;
    info.path = path;
    auto meta = metaValue(db->db(), "shard");
    if (!meta || meta->empty()) {
        problems.push_back(path + ": not a shard database (made by 'cytosae run PROJECT --shard I/N --shard-db FILE')");
        return std::nullopt;
    }
    auto spec = parseShardSpec(*meta);
    if (!spec) {
        problems.push_back(path + ": damaged shard entry '" + *meta + "'");
        return std::nullopt;
    }
    info.spec = *spec;
    auto runs = db->count("SELECT count(*) FROM run");
    if (!runs || *runs != 1) {
        problems.push_back(path + " (shard " + *meta + "): " +
                           (!runs        ? runs.message()
                            : *runs == 0 ? std::string("has no run yet; run the shard first")
                                         : std::to_string(*runs) + " runs, expected one"));
        return std::nullopt;
    }
    auto latest = db->latestRun();
    if (!latest || !latest->has_value()) {
        problems.push_back(path + ": cannot read its run");
        return std::nullopt;
    }
    info.run = **latest;
    auto vit = db->model(info.run.vitId);
    auto sae = db->model(info.run.saeId);
    if (!vit || !sae) {
        problems.push_back(path + ": cannot read its models");
        return std::nullopt;
    }
    info.vit = *vit;
    info.sae = *sae;
    auto total = db->count("SELECT count(*) FROM image WHERE qc_status = 'ok'");
    if (info.run.status != "done")
        problems.push_back(path + " (shard " + *meta + "): its run is " + info.run.status + " with " +
                           std::to_string(info.run.imagesDone) + " of " + std::to_string(total ? *total : 0) +
                           " images; run the shard again to finish it");

    // Every image of the shard must be the project's image of the same id.
    std::vector<std::string> foreign;
    int64_t foreignCount = 0;
    auto q = db->db().prepare("SELECT id, path, coalesce(sha256, '') FROM image WHERE qc_status = 'ok' ORDER BY id");
    if (q) {
        while (q->step()) {
            const int64_t id = q->columnInt(0);
            auto it = images.find(id);
            if (it == images.end() || it->second.first != q->columnText(1) || it->second.second != q->columnText(2)) {
                if (foreign.size() < kListed)
                    foreign.push_back(std::to_string(id) + " (" + q->columnText(1) + ")");
                ++foreignCount;
            }
        }
    }
    if (foreignCount)
        problems.push_back(path + " (shard " + *meta + "): " + std::to_string(foreignCount) +
                           " image(s) are not the project's images of the same id, e.g. " + joined(foreign) +
                           "; was the shard made from another project?");

    auto ids = db->db().prepare("SELECT image_id, 1 FROM activation WHERE run_id = ?1 UNION "
                                "SELECT image_id, 0 FROM run_error WHERE run_id = ?1 AND image_id NOT IN "
                                "(SELECT image_id FROM activation WHERE run_id = ?1) ORDER BY image_id");
    if (!ids) {
        problems.push_back(path + ": " + ids.message());
        return std::nullopt;
    }
    ids->bind(1, info.run.id);
    while (ids->step()) {
        info.covered.push_back(ids->columnInt(0));
        (ids->columnInt(1) ? info.results : info.failures)++;
    }
    if (Status s = ids->status(); !s) {
        problems.push_back(path + ": " + s.message());
        return std::nullopt;
    }
    return info;
}

// Copies one shard's results into the project's run `runId` (inside the caller's transaction).
Status copyResults(Database &project, const ShardInfo &shard, int64_t runId, ProgressMeter &meter, int64_t &copied)
{
    auto opened = ProjectDb::open(shard.path, ProjectDb::OpenMode::ReadOnly);
    if (!opened)
        return opened.error().withContext(shard.path);
    Database &from = opened->db();
    auto actColumns = commonColumns(from, project, "activation", {"id", "run_id"});
    auto conceptColumns = commonColumns(from, project, "image_concept", {"run_id"});
    auto errorColumns = commonColumns(from, project, "run_error", {"run_id"});
    if (!actColumns || !conceptColumns || !errorColumns)
        return Error(shard.path + ": cannot read its tables");

    auto selAct =
        from.prepare("SELECT id, " + joined(*actColumns) + " FROM activation WHERE run_id = ? ORDER BY image_id");
    auto insAct = project.prepare("INSERT INTO activation(run_id, " + joined(*actColumns) + ") VALUES (?1, " +
                                  placeholders(actColumns->size(), 2) + ")");
    auto selTok = from.prepare("SELECT tokens FROM activation_tokens WHERE activation_id = ?");
    auto insTok = project.prepare("INSERT INTO activation_tokens(activation_id, tokens) VALUES (?, ?)");
    auto selCls = from.prepare("SELECT cls FROM activation_cls WHERE activation_id = ?");
    auto insCls = project.prepare("INSERT INTO activation_cls(activation_id, cls) VALUES (?, ?)");
    if (!selAct || !insAct || !selTok || !insTok || !selCls || !insCls)
        return Error(shard.path + ": cannot prepare the copy of its results");
    selAct->bind(1, shard.run.id);
    while (selAct->step()) {
        const int64_t oldId = selAct->columnInt(0);
        insAct->reset();
        insAct->bind(1, runId);
        for (size_t c = 0; c < actColumns->size(); ++c)
            insAct->bindColumn(int(c + 2), *selAct, int(c + 1));
        if (Status s = insAct->exec(); !s)
            return Error(shard.path + ": activation of image " + std::to_string(selAct->columnInt(1)) + ": " +
                         s.message());
        const int64_t newId = project.lastInsertId();
        if (++copied % 256 == 0)
            meter.report(copied);
        for (auto [sel, ins] : {std::pair{&*selTok, &*insTok}, std::pair{&*selCls, &*insCls}}) {
            sel->reset();
            sel->bind(1, oldId);
            if (sel->step()) {
                ins->reset();
                ins->bind(1, newId).bindColumn(2, *sel, 0);
                if (Status s = ins->exec(); !s)
                    return s.error().withContext(shard.path);
            } else if (Status s = sel->status(); !s) {
                return s.error().withContext(shard.path);
            }
        }
    }
    if (Status s = selAct->status(); !s)
        return s.error().withContext(shard.path);

    for (const auto &[table, columns] : {std::pair{std::string("image_concept"), &*conceptColumns},
                                         std::pair{std::string("run_error"), &*errorColumns}}) {
        auto sel = from.prepare("SELECT " + joined(*columns) + " FROM " + table + " WHERE run_id = ?");
        auto ins = project.prepare("INSERT INTO " + table + "(run_id, " + joined(*columns) + ") VALUES (?1, " +
                                   placeholders(columns->size(), 2) + ")");
        if (!sel || !ins)
            return Error(shard.path + ": cannot prepare the copy of " + table);
        sel->bind(1, shard.run.id);
        while (sel->step()) {
            ins->reset();
            ins->bind(1, runId);
            for (size_t c = 0; c < columns->size(); ++c)
                ins->bindColumn(int(c + 2), *sel, int(c));
            if (Status s = ins->exec(); !s)
                return Error(shard.path + ": " + table + ": " + s.message());
        }
        if (Status s = sel->status(); !s)
            return s.error().withContext(shard.path);
    }
    return Status::success();
}

} // namespace

Result<MergeReport> mergeShards(const std::string &projectPath, const std::vector<std::string> &shardPaths,
                                bool computeStats, const ProgressCallback &progress)
{
    if (shardPaths.empty())
        return Error("no shard databases given");
    auto project = ProjectDb::open(projectPath, ProjectDb::OpenMode::Existing);
    if (!project)
        return project.error().withContext(projectPath);

    // The project's accepted images: id -> (path, sha256).
    std::unordered_map<int64_t, std::pair<std::string, std::string>> images;
    std::vector<int64_t> imageIds;
    {
        auto q = project->db().prepare(
            "SELECT id, path, coalesce(sha256, '') FROM image WHERE qc_status = 'ok' ORDER BY id");
        if (!q)
            return q.error().withContext(projectPath);
        while (q->step()) {
            images.emplace(q->columnInt(0), std::make_pair(q->columnText(1), q->columnText(2)));
            imageIds.push_back(q->columnInt(0));
        }
        if (Status s = q->status(); !s)
            return s.error().withContext(projectPath);
    }

    std::vector<std::string> problems;
    std::vector<ShardInfo> shards;
    for (const std::string &path : shardPaths)
        if (auto info = inspectShard(path, images, problems))
            shards.push_back(std::move(*info));

    std::map<int, std::string> byIndex;
    int count = 0;
    for (const ShardInfo &s : shards) {
        const ShardInfo &first = shards.front();
        if (!count)
            count = s.spec.count;
        if (s.spec.count != count)
            problems.push_back(s.path + ": shard " + toString(s.spec) + ", but " + first.path + " is a shard of " +
                               std::to_string(count));
        if (auto [it, added] = byIndex.emplace(s.spec.index, s.path); !added)
            problems.push_back("shard " + toString(s.spec) + " is given twice: " + it->second + " and " + s.path);
        if (&s == &first)
            continue;
        if (s.vit.sha256 != first.vit.sha256)
            problems.push_back(s.path + ": ViT sha256 " + shortHash(s.vit.sha256) + " (" + s.vit.path +
                               ") differs from " + first.path + "'s " + shortHash(first.vit.sha256) + " (" +
                               first.vit.path + "): the shards were run with different ViT files");
        if (s.sae.sha256 != first.sae.sha256)
            problems.push_back(s.path + ": SAE sha256 " + shortHash(s.sae.sha256) + " (" + s.sae.path +
                               ") differs from " + first.path + "'s " + shortHash(first.sae.sha256) + " (" +
                               first.sae.path + "): the shards were run with different SAE files");
        if (s.run.topK != first.run.topK || std::abs(s.run.patchThreshold - first.run.patchThreshold) > 1e-9)
            problems.push_back(s.path + ": run settings top-k " + std::to_string(s.run.topK) + ", threshold " +
                               std::to_string(s.run.patchThreshold) + " differ from " + first.path + "'s top-k " +
                               std::to_string(first.run.topK) + ", threshold " +
                               std::to_string(first.run.patchThreshold));
        if (s.run.precision != first.run.precision)
            problems.push_back(s.path + ": computed in " + s.run.precision + ", " + first.path + " in " +
                               first.run.precision + ": a run holds one precision; run the shards again with the "
                               "same --precision (fp32 or bf16)");
    }
    if (count) {
        std::vector<std::string> absent;
        for (int i = 1; i <= count; ++i)
            if (!byIndex.count(i))
                absent.push_back(toString({i, count}));
        if (!absent.empty())
            problems.push_back("shard(s) " + joined(absent) + " not given");
    }

    // Every accepted image of the project in exactly one shard.
    std::unordered_map<int64_t, std::string> owner;
    std::vector<std::string> duplicates;
    int64_t duplicateCount = 0;
    for (const ShardInfo &s : shards)
        for (int64_t id : s.covered)
            if (auto [it, added] = owner.emplace(id, toString(s.spec)); !added) {
                if (duplicates.size() < kListed)
                    duplicates.push_back(std::to_string(id) + " in shards " + it->second + " and " + toString(s.spec));
                ++duplicateCount;
            }
    if (duplicateCount)
        problems.push_back(std::to_string(duplicateCount) + " image(s) have results in more than one shard, e.g. " +
                           joined(duplicates));
    std::vector<std::string> missing;
    int64_t missingCount = 0;
    for (int64_t id : imageIds)
        if (!owner.count(id)) {
            if (missing.size() < kListed)
                missing.push_back(std::to_string(id) + " (" + images[id].first + ")");
            ++missingCount;
        }
    if (missingCount)
        problems.push_back(std::to_string(missingCount) + " of the project's " + std::to_string(imageIds.size()) +
                           " accepted images have no results in any shard, e.g. " + joined(missing));

    // Results for these models and settings must not be stored twice.
    if (!shards.empty()) {
        const ShardInfo &first = shards.front();
        auto q = project->db().prepare(
            "SELECT r.id, (SELECT count(*) FROM activation a WHERE a.run_id = r.id) FROM run r JOIN model v ON v.id = "
            "r.vit_id JOIN model s ON s.id = r.sae_id WHERE v.sha256 = ? AND s.sha256 = ? AND r.top_k = ? AND "
            "abs(r.patch_threshold - ?) < 1e-9 AND r.precision = ?");
        if (!q)
            return q.error().withContext(projectPath);
        q->bind(1, first.vit.sha256)
            .bind(2, first.sae.sha256)
            .bind(3, first.run.topK)
            .bind(4, first.run.patchThreshold)
            .bind(5, first.run.precision);
        while (q->step())
            if (q->columnInt(1) > 0)
                problems.push_back(projectPath + ": run " + std::to_string(q->columnInt(0)) + " already holds " +
                                   std::to_string(q->columnInt(1)) +
                                   " images' results for these models and settings; merging would store them twice");
    }

    if (!problems.empty()) {
        std::string msg = "cannot merge into " + projectPath +
                          " (nothing was written): " + std::to_string(problems.size()) + " problem(s):";
        for (const auto &p : problems)
            msg += "\n  - " + p;
        return Error(msg);
    }

    MergeReport report;
    report.shards = int(shards.size());
    std::set<std::string> devices;
    for (const ShardInfo &s : shards) {
        devices.insert(s.run.device);
        report.images += s.results;
        report.failed += s.failures;
    }
    std::vector<std::string> deviceList(devices.begin(), devices.end());
    report.device = std::to_string(shards.size()) + " shard(s) on " + joined(deviceList);

    Database &db = project->db();
    if (Status s = db.begin(); !s)
        return s.error().withContext(projectPath);
    auto fail = [&](const Error &e) -> Result<MergeReport> {
        db.rollback();
        return Error("merging into " + projectPath + " failed, nothing was written: " + e.message());
    };
    const ShardInfo &first = shards.front();
    auto vitId = project->upsertModel("vit", first.vit.sha256, first.vit.path, first.vit.configJson);
    auto saeId = project->upsertModel("sae", first.sae.sha256, first.sae.path, first.sae.configJson);
    if (!vitId || !saeId)
        return fail(!vitId ? vitId.error() : saeId.error());
    auto runId =
        project->createRun(*vitId, *saeId, first.run.topK, first.run.patchThreshold, first.run.dSae, report.device,
                           first.run.precision);
    if (!runId)
        return fail(runId.error());
    report.runId = *runId;
    ProgressMeter meter("merge", report.images, progress);
    int64_t copied = 0;
    for (const ShardInfo &s : shards)
        if (Status st = copyResults(db, s, report.runId, meter, copied); !st)
            return fail(st.error());
    meter.report(copied);
    auto upd = db.prepare("UPDATE run SET images_done = ?, status = 'done', finished_at = "
                          "strftime('%Y-%m-%dT%H:%M:%SZ', 'now') WHERE id = ?");
    if (!upd)
        return fail(upd.error());
    upd->bind(1, report.images).bind(2, report.runId);
    if (Status s = upd->exec(); !s)
        return fail(s.error());
    if (Status s = db.commit(); !s)
        return fail(s.error());

    if (computeStats)
        if (Status s = project->computeStats(report.runId); !s)
            return Error(projectPath + ": the shards were merged as run " + std::to_string(report.runId) +
                         " but computing its statistics failed (" + s.message() +
                         "); run 'cytosae stats --recompute' to retry");
    return report;
}

} // namespace cytosae::store
