#include "store/Integrity.h"

#include "store/ProjectDb.h"
#include "store/Sqlite.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <regex>
#include <set>

namespace cytosae::store {

namespace {

const char *meaningOf(const std::string &table)
{
    static const std::map<std::string, const char *> kMeaning = {
        {"meta", "project settings"},
        {"model", "the ViT and SAE files used by runs (hashes, paths)"},
        {"run", "runs: their models, settings and status"},
        {"patient", "patients and diagnoses"},
        {"image", "imported images: paths, patients, classes, QC"},
        {"activation", "per-image results of runs (active latents, reconstruction error)"},
        {"activation_tokens", "per-patch concept activations (overlays)"},
        {"activation_cls", "CLS embeddings"},
        {"image_concept", "image-level concept values (galleries, statistics)"},
        {"run_error", "images that failed in a run"},
        {"concept_stats", "per-latent statistics (recomputable: cytosae stats --recompute)"},
        {"concept_group", "concept groups"},
        {"concept_group_version", "concept group history"},
        {"concept_label", "concept labels (the annotation ledger)"},
        {"concept_flag", "pathognomonic flags"},
        {"concept_threshold", "validated thresholds"},
        {"annotation_task", "annotation tasks"},
        {"annotation_item", "the cells of annotation tasks"},
        {"annotation_answer", "annotators' answers"},
        {"review", "reviews of flagged cells"},
        {"review_signoff", "review sign-offs"},
        {"smear", "smear fields and their detected cells"},
    };
    auto it = kMeaning.find(table);
    return it == kMeaning.end() ? "" : it->second;
}

std::string quoted(const std::string &name)
{
    std::string out = "\"";
    for (char c : name)
        out += c == '"' ? std::string("\"\"") : std::string(1, c);
    return out + "\"";
}

} // namespace

Result<IntegrityReport> checkIntegrity(const std::string &path)
{
    std::error_code ec;
    if (!std::filesystem::exists(path, ec))
        return Error("project file not found");
    if (std::filesystem::is_directory(path, ec))
        return Error("is a folder, not a project file");
    auto opened = Database::open(path, Database::Mode::ReadOnly);
    if (!opened)
        return opened.error();
    Database &db = *opened;
    IntegrityReport report;
    auto version = db.queryInt("PRAGMA user_version");
    if (!version)
        return Error("not an SQLite database, or its first page is damaged (" + version.message() + ")");
    report.schemaVersion = int(*version);

    // The schema: table and index names by root page, to name what each problem touches.
    std::map<int64_t, std::pair<std::string, std::string>> byRoot; // root -> (type, name)
    std::vector<std::string> tables;
    std::map<std::string, std::string> tableOfIndex;
    {
        auto q = db.prepare("SELECT type, name, tbl_name, rootpage FROM sqlite_master "
                            "WHERE type IN ('table', 'index') ORDER BY rowid");
        if (!q)
            return Error("the schema cannot be read: " + q.message() + "; nothing in the file can be trusted");
        while (q->step()) {
            const std::string type = q->columnText(0), name = q->columnText(1);
            byRoot[q->columnInt(3)] = {type, name};
            if (type == "table")
                tables.push_back(name);
            else
                tableOfIndex[name] = q->columnText(2);
        }
        if (Status s = q->status(); !s)
            return Error("the schema cannot be read: " + s.message() + "; nothing in the file can be trusted");
    }

    auto check = db.prepare("PRAGMA integrity_check(100)");
    if (!check)
        return check.error();
    while (check->step())
        for (auto &line : integrityLines(check->columnText(0)))
            report.problems.push_back(std::move(line));
    if (Status s = check->status(); !s)
        report.problems.push_back(s.message());
    report.ok = report.problems.size() == 1 && report.problems[0] == "ok";
    if (report.ok)
        report.problems.clear();

    // Which tables and indexes the problems name: "Tree N page ..." (N the root page), or
    // "... from index NAME" / "wrong # of entries in index NAME".
    std::map<std::string, std::string> damagedTables; // name -> first problem
    std::set<std::string> indexes;
    const std::regex tree(R"(Tree (\d+) page)"), index(R"(index ([A-Za-z_0-9]+))");
    for (const auto &p : report.problems) {
        std::smatch m;
        if (std::regex_search(p, m, tree)) {
            auto it = byRoot.find(std::stoll(m[1]));
            if (it != byRoot.end()) {
                if (it->second.first == "table")
                    damagedTables.emplace(it->second.second, p);
                else
                    indexes.insert(it->second.second);
            }
        } else if (std::regex_search(p, m, index)) {
            indexes.insert(m[1]);
        }
    }

    for (const auto &t : tables) {
        TableHealth h;
        h.table = t;
        h.holds = meaningOf(t);
        // Every column of every row: overflow pages of large values are read too.
        auto q = db.prepare("SELECT * FROM " + quoted(t));
        if (!q) {
            h.damaged = true;
            h.problem = q.message();
        } else {
            const int columns = q->columnCount();
            while (q->step()) {
                for (int c = 0; c < columns; ++c) {
                    size_t size = 0;
                    if (q->columnType(c) == Statement::Type::Blob)
                        (void)q->columnBlobData(c, size);
                }
                ++h.rowsRead;
            }
            if (Status s = q->status(); !s) {
                h.damaged = true;
                h.problem = s.message();
            }
        }
        if (auto it = damagedTables.find(t); it != damagedTables.end()) {
            h.damaged = true;
            if (h.problem.empty())
                h.problem = it->second;
        }
        report.tables.push_back(std::move(h));
    }
    // An index problem whose table reads cleanly: the rows are there, the index is wrong.
    for (const auto &name : indexes) {
        auto owner = tableOfIndex.find(name);
        const bool tableDamaged =
            owner != tableOfIndex.end() &&
            std::any_of(report.tables.begin(), report.tables.end(),
                        [&](const TableHealth &h) { return h.table == owner->second && h.damaged; });
        if (!tableDamaged)
            report.damagedIndexes.push_back(name);
    }

    const std::filesystem::path file(path);
    const std::string stem = file.filename().string() + ".schema";
    for (const auto &entry : std::filesystem::directory_iterator(
             file.parent_path().empty() ? std::filesystem::path(".") : file.parent_path(), ec)) {
        const std::string name = entry.path().filename().string();
        if (name.rfind(stem, 0) == 0 && name.size() > 4 && name.compare(name.size() - 4, 4, ".bak") == 0)
            report.backups.push_back(entry.path().string());
    }
    std::sort(report.backups.begin(), report.backups.end());
    return report;
}

} // namespace cytosae::store
