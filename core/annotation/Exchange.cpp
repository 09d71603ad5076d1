#include "annotation/Exchange.h"

#include "io/Csv.h"
#include "io/JsonReader.h"
#include "io/JsonWriter.h"

#include <charconv>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

namespace cytosae::annotation {

namespace fs = std::filesystem;

namespace {

constexpr const char *kFormat = "cytosae-annotations";

// Columns written as JSON numbers (all others are strings).
const std::set<std::string> kNumeric = {"version",   "controlled", "threshold", "active",   "target_precision",
                                        "bins",      "per_bin",    "negatives", "seed",     "position",
                                        "bin",       "value",      "candidates", "confirmed"};

const char *const kTableNames[] = {"concept_group",   "concept_group_version", "concept_label", "concept_flag",
                                   "concept_threshold", "annotation_task",     "annotation_item",
                                   "annotation_answer", "review",               "review_signoff"};

bool endsWith(const std::string &s, const std::string &suffix)
{
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

Result<std::string> readFile(const std::string &path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in)
        return Error(path + ": cannot be opened");
    std::ostringstream s;
    s << in.rdbuf();
    if (in.bad())
        return Error(path + ": read error");
    return s.str();
}

} // namespace

std::string exchangeToJson(const std::vector<store::ExchangeTable> &tables)
{
    std::ostringstream out;
    io::JsonWriter json(out, true);
    json.beginObject().key("format").value(kFormat).key("version").value(1).key("tables").beginObject();
    for (const auto &t : tables) {
        json.key(t.name).beginArray();
        for (const auto &row : t.rows) {
            json.beginObject();
            for (size_t c = 0; c < t.columns.size() && c < row.size(); ++c) {
                json.key(t.columns[c]);
                const auto &v = row[c];
                if (!v) {
                    json.null();
                    continue;
                }
                if (kNumeric.count(t.columns[c])) {
                    int64_t i = 0;
                    double d = 0;
                    const char *b = v->data(), *e = v->data() + v->size();
                    if (auto r = std::from_chars(b, e, i); r.ec == std::errc() && r.ptr == e) {
                        json.value(i);
                        continue;
                    }
                    if (auto r = std::from_chars(b, e, d); r.ec == std::errc() && r.ptr == e) {
                        json.value(d);
                        continue;
                    }
                }
                json.value(*v);
            }
            json.endObject();
        }
        json.endArray();
    }
    json.endObject().endObject();
    out << "\n";
    return out.str();
}

Result<std::vector<store::ExchangeTable>> exchangeFromJson(const std::string &text)
{
    auto doc = io::parseJson(text);
    if (!doc)
        return doc.error();
    const io::JsonValue *format = doc->find("format");
    if (!format || format->text != kFormat)
        return Error("not a CytoSAE annotation export (\"format\": \"" + std::string(kFormat) + "\" is missing)");
    const io::JsonValue *version = doc->find("version");
    if (!version || version->number() != 1)
        return Error("this annotation export has a version this program does not read (expected 1)");
    const io::JsonValue *tables = doc->find("tables");
    if (!tables || tables->kind != io::JsonValue::Kind::Object)
        return Error("\"tables\" is missing or not an object");
    std::vector<store::ExchangeTable> out;
    for (const auto &[name, rows] : tables->members) {
        if (rows.kind != io::JsonValue::Kind::Array)
            return Error("table \"" + name + "\" is not an array of rows");
        store::ExchangeTable t;
        t.name = name;
        for (const auto &row : rows.items)
            for (const auto &[column, value] : row.members)
                if (std::find(t.columns.begin(), t.columns.end(), column) == t.columns.end())
                    t.columns.push_back(column);
        for (const auto &row : rows.items) {
            if (row.kind != io::JsonValue::Kind::Object)
                return Error("table \"" + name + "\" has a row that is not an object");
            std::vector<std::optional<std::string>> values(t.columns.size());
            for (size_t c = 0; c < t.columns.size(); ++c) {
                const io::JsonValue *v = row.find(t.columns[c]);
                if (!v || v->isNull())
                    continue;
                if (v->kind == io::JsonValue::Kind::Bool)
                    values[c] = v->boolean ? "1" : "0";
                else if (v->kind == io::JsonValue::Kind::String || v->kind == io::JsonValue::Kind::Number)
                    values[c] = v->text;
                else
                    return Error("table \"" + name + "\", column \"" + t.columns[c] + "\": a nested value");
            }
            t.rows.push_back(std::move(values));
        }
        out.push_back(std::move(t));
    }
    return out;
}

Status writeExchangeCsv(const std::vector<store::ExchangeTable> &tables, const std::string &folder)
{
    std::error_code ec;
    fs::create_directories(folder, ec);
    if (ec)
        return Error(folder + ": cannot create the folder (" + ec.message() + ")");
    for (const auto &t : tables) {
        const std::string path = (fs::path(folder) / (t.name + ".csv")).string();
        std::ofstream out(path, std::ios::binary | std::ios::trunc);
        if (!out)
            return Error(path + ": cannot be written");
        for (size_t c = 0; c < t.columns.size(); ++c)
            out << (c ? "," : "") << io::csvField(t.columns[c]);
        out << "\n";
        for (const auto &row : t.rows) {
            for (size_t c = 0; c < row.size(); ++c)
                out << (c ? "," : "") << io::csvField(row[c].value_or(""));
            out << "\n";
        }
        if (!out.flush())
            return Error(path + ": write error (disk full?)");
    }
    return Status::success();
}

Result<std::vector<store::ExchangeTable>> readExchangeCsv(const std::string &folder)
{
    std::error_code ec;
    if (!fs::is_directory(folder, ec))
        return Error(folder + ": not a folder of CSV files");
    std::vector<store::ExchangeTable> out;
    for (const char *name : kTableNames) {
        const std::string path = (fs::path(folder) / (std::string(name) + ".csv")).string();
        if (!fs::exists(path, ec))
            continue;
        auto text = readFile(path);
        if (!text)
            return text.error();
        auto csv = io::parseCsv(*text);
        if (!csv)
            return csv.error().withContext(path);
        store::ExchangeTable t;
        t.name = name;
        t.columns = csv->header;
        for (size_t r = 0; r < csv->rows.size(); ++r) {
            std::vector<std::optional<std::string>> row;
            for (auto &f : csv->rows[r])
                row.emplace_back(std::move(f));
            if (row.size() != t.columns.size())
                return Error(path + ", line " + std::to_string(csv->rowLines[r]) + ": " + std::to_string(row.size()) +
                             " fields, the header has " + std::to_string(t.columns.size()));
            t.rows.push_back(std::move(row));
        }
        out.push_back(std::move(t));
    }
    if (out.empty())
        return Error(folder + ": no annotation tables (concept_label.csv, ...) found");
    return out;
}

Status exportAnnotations(store::AnnotationDb &db, const std::string &path)
{
    auto tables = db.exportAll();
    if (!tables)
        return tables.error();
    if (!endsWith(path, ".json"))
        return writeExchangeCsv(*tables, path);
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out)
        return Error(path + ": cannot be written");
    out << exchangeToJson(*tables);
    if (!out.flush())
        return Error(path + ": write error (disk full?)");
    return Status::success();
}

Result<store::ImportReport> importAnnotations(store::AnnotationDb &db, const std::string &path)
{
    Result<std::vector<store::ExchangeTable>> tables = Error("");
    if (endsWith(path, ".json")) {
        auto text = readFile(path);
        if (!text)
            return text.error();
        tables = exchangeFromJson(*text);
        if (!tables)
            return tables.error().withContext(path);
    } else {
        tables = readExchangeCsv(path);
        if (!tables)
            return tables.error();
    }
    return db.importAll(*tables);
}

} // namespace cytosae::annotation
