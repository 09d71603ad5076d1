#include "pipeline/ImportScan.h"

#include "io/Csv.h"

#include <algorithm>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <new>
#include <set>
#include <system_error>
#include <unordered_set>

namespace cytosae::pipeline {

namespace fs = std::filesystem;

namespace {

char lowerAscii(char c)
{
    return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c;
}

std::string toLower(std::string s)
{
    std::transform(s.begin(), s.end(), s.begin(), lowerAscii);
    return s;
}

bool isBlank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

std::string trimmed(const std::string &s)
{
    size_t b = 0;
    size_t e = s.size();
    while (b < e && isBlank(s[b]))
        ++b;
    while (e > b && isBlank(s[e - 1]))
        --e;
    return s.substr(b, e - b);
}

std::string joined(const std::vector<std::string> &parts, const char *sep)
{
    std::string out;
    for (size_t i = 0; i < parts.size(); ++i) {
        if (i)
            out += sep;
        out += parts[i];
    }
    return out;
}

// ---------------------------------------------------------------------------------------
// Folder scan

// True when target lies strictly below base (both already canonical).
bool isInside(const fs::path &target, const fs::path &base)
{
    const fs::path rel = target.lexically_relative(base);
    return !rel.empty() && *rel.begin() != ".." && rel != ".";
}

void assignLabels(ImportItem &item, const std::vector<std::string> &folders, FolderLayout layout)
{
    switch (layout) {
    case FolderLayout::Flat:
        break;
    case FolderLayout::ClassPerFolder:
        if (!folders.empty())
            item.className = folders.back();
        break;
    case FolderLayout::PatientPerFolder:
        if (!folders.empty())
            item.patientCode = folders[0];
        if (folders.size() >= 2 && folders.back() != folders[0])
            item.className = folders.back();
        break;
    case FolderLayout::DiagnosisThenPatient:
        if (!folders.empty())
            item.diagnosis = folders[0];
        if (folders.size() >= 2)
            item.patientCode = folders[1];
        if (folders.size() >= 3 && folders.back() != folders[1])
            item.className = folders.back();
        break;
    }
}

struct PendingFolder {
    fs::path dir;
    std::vector<std::string> folders; // names between the root and dir
};

// A hand-written walk instead of recursive_directory_iterator: libstdc++'s iterator ends the
// whole walk on the first folder it cannot open (and skip_permission_denied hides such a
// folder without a trace), whereas here each unreadable folder becomes one ScanIssue.
Result<ScanResult> scanFolderImpl(const std::string &root, const ScanOptions &options)
{
    if (root.empty())
        return Error("no import folder was given");

    std::error_code ec;
    fs::path rootPath = fs::absolute(fs::path(root), ec);
    if (ec)
        return Error("could not resolve the folder (" + ec.message() + ")");
    rootPath = rootPath.lexically_normal();
    // "/data/set/" normalises to "/data/set/"; drop the empty last part so item paths have no "//".
    if (!rootPath.has_filename() && rootPath.has_relative_path())
        rootPath = rootPath.parent_path();

    const fs::file_status rootStatus = fs::status(rootPath, ec);
    if (rootStatus.type() == fs::file_type::not_found)
        return Error("the folder does not exist");
    if (ec)
        return Error("could not access the folder (" + ec.message() + ")");
    if (!fs::is_directory(rootStatus))
        return Error("this is not a folder");

    // Canonical root for the "does this link leave the folder?" test; the item paths keep
    // the user's spelling so they match what the user sees.
    const fs::path rootCanonical = fs::canonical(rootPath, ec);
    if (ec)
        return Error("could not resolve the folder (" + ec.message() + ")");

    ScanResult result;
    auto addIssue = [&result](const fs::path &p, std::string message) {
        result.issues.push_back({p.lexically_normal().string(), std::move(message)});
    };

    // Only needed when following links: a link back up the tree would otherwise never end,
    // and two links to one folder would import its images twice.
    std::set<std::string> visited;
    if (options.followSymlinks)
        visited.insert(rootCanonical.string());

    std::vector<PendingFolder> pending;
    pending.push_back({rootPath, {}});
    while (!pending.empty()) {
        PendingFolder current = std::move(pending.back());
        pending.pop_back();

        std::vector<fs::directory_entry> entries;
        fs::directory_iterator it(current.dir, fs::directory_options::none, ec);
        if (ec) {
            addIssue(current.dir, "could not read this folder (" + ec.message() + "); its contents were skipped");
            continue;
        }
        for (; !ec && it != fs::directory_iterator(); it.increment(ec))
            entries.push_back(*it);
        if (ec)
            addIssue(current.dir, "could not list all of this folder (" + ec.message() + "); some files may be missing");

        // Sorted so that issues (and which of two linked routes wins) do not depend on the
        // order the file system happens to return.
        std::sort(entries.begin(), entries.end(),
                  [](const fs::directory_entry &a, const fs::directory_entry &b) { return a.path() < b.path(); });

        std::vector<PendingFolder> subfolders;
        for (const fs::directory_entry &entry : entries) {
            const fs::path &entryPath = entry.path();
            const std::string name = entryPath.filename().string();
            if (name.empty() || name[0] == '.')
                continue; // hidden: .DS_Store, .git, thumbnails caches, editor backups

            std::error_code linkEc;
            const bool isLink = entry.is_symlink(linkEc);
            std::error_code statEc;
            const fs::file_status st = entry.status(statEc);
            if (statEc) {
                if (isLink && isImageFileName(name))
                    addIssue(entryPath, "symbolic link whose target cannot be reached (" + statEc.message() + "); skipped");
                else if (!isLink)
                    addIssue(entryPath, "could not read this entry (" + statEc.message() + "); skipped");
                continue;
            }

            if (fs::is_directory(st)) {
                if (isLink && !options.followSymlinks) {
                    addIssue(entryPath, "symbolic link to a folder; not followed");
                    continue;
                }
                if (options.followSymlinks) {
                    std::error_code canonEc;
                    const fs::path canonical = fs::canonical(entryPath, canonEc);
                    if (canonEc) {
                        addIssue(entryPath, "could not resolve this folder (" + canonEc.message() + "); skipped");
                        continue;
                    }
                    if (!visited.insert(canonical.string()).second) {
                        addIssue(entryPath, "this folder was already scanned under another path (symbolic link); skipped");
                        continue;
                    }
                }
                PendingFolder sub{entryPath, current.folders};
                sub.folders.push_back(name);
                subfolders.push_back(std::move(sub));
                continue;
            }

            if (!fs::is_regular_file(st) || !isImageFileName(name))
                continue; // other files (notes, CSVs, sockets) are simply not part of an import

            if (isLink && !options.followSymlinks) {
                std::error_code canonEc;
                const fs::path target = fs::canonical(entryPath, canonEc);
                if (canonEc) {
                    addIssue(entryPath, "could not resolve this symbolic link (" + canonEc.message() + "); skipped");
                    continue;
                }
                if (!isInside(target, rootCanonical)) {
                    addIssue(entryPath, "symbolic link to a file outside the import folder; not followed");
                    continue;
                }
            }

            ImportItem item;
            item.path = entryPath.lexically_normal().string();
            assignLabels(item, current.folders, options.layout);
            result.items.push_back(std::move(item));
        }
        // Reverse so the first sub-folder is popped first (depth-first, in name order).
        for (auto sub = subfolders.rbegin(); sub != subfolders.rend(); ++sub)
            pending.push_back(std::move(*sub));
    }

    std::sort(result.items.begin(), result.items.end(),
              [](const ImportItem &a, const ImportItem &b) { return a.path < b.path; });
    // Issues are found folder by folder; sorting puts them next to the items they concern.
    std::stable_sort(result.issues.begin(), result.issues.end(),
                     [](const ScanIssue &a, const ScanIssue &b) { return a.path < b.path; });
    return result;
}


// ---------------------------------------------------------------------------------------
// Manifest and patient table

// "Patient ID", "patient-id" and "PATIENT_ID" all mean the same column.
std::string normaliseColumnName(const std::string &name)
{
    std::string s = toLower(trimmed(name));
    for (char &c : s) {
        if (c == ' ' || c == '-')
            c = '_';
    }
    return s;
}

struct TableFile {
    CsvTable table;
    std::vector<std::string> names; // header, normalised for matching (normaliseColumnName)
    std::string absolutePath;
    std::string fileName; // for messages
    fs::path folder;      // for resolving relative paths
};

Result<TableFile> loadTable(const std::string &csvPath, const char *what)
{
    if (csvPath.empty())
        return Error(std::string("no ") + what + " file was given");
    std::error_code ec;
    fs::path p = fs::absolute(fs::path(csvPath), ec);
    if (ec)
        return Error("could not resolve the file name (" + ec.message() + ")");
    p = p.lexically_normal();

    TableFile out;
    out.absolutePath = p.string();
    out.fileName = p.filename().string();
    out.folder = p.parent_path();

    const fs::file_status st = fs::status(p, ec);
    if (st.type() == fs::file_type::not_found)
        return Error(std::string("the ") + what + " does not exist");
    if (ec)
        return Error("could not access the " + std::string(what) + " (" + ec.message() + ")");
    if (fs::is_directory(st))
        return Error("this is a folder, not a CSV file");

    constexpr size_t maxBytes = 256u << 20;
    const uintmax_t size = fs::file_size(p, ec);
    if (!ec && size > maxBytes) {
        return Error("the file is " + std::to_string(size >> 20) + " MiB, more than the "
                     + std::to_string(maxBytes >> 20) + " MiB a table may have");
    }

    std::ifstream in(p, std::ios::binary);
    if (!in)
        return Error("the file could not be opened (check that it is readable)");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad())
        return Error("the file could not be read to the end");

    auto parsed = io::parseCsv(text, maxBytes);
    if (!parsed)
        return parsed.error();
    out.table = std::move(parsed).value();
    for (const std::string &h : out.table.header)
        out.names.push_back(normaliseColumnName(h));
    return out;
}


// Index of the first alias present, in alias order (so the canonical name wins over an
// alias when a table has both), or -1.
int findColumn(const std::vector<std::string> &normalisedHeader, std::initializer_list<const char *> aliases)
{
    for (const char *alias : aliases) {
        const auto it = std::find(normalisedHeader.begin(), normalisedHeader.end(), alias);
        if (it != normalisedHeader.end())
            return int(it - normalisedHeader.begin());
    }
    return -1;
}

std::string columnsFound(const std::vector<std::string> &header)
{
    std::vector<std::string> names;
    for (const std::string &h : header)
        names.push_back("\"" + trimmed(h) + "\"");
    return names.empty() ? std::string("none") : joined(names, ", ");
}

bool allFieldsEmpty(const std::vector<std::string> &row)
{
    return std::all_of(row.begin(), row.end(), [](const std::string &f) { return trimmed(f).empty(); });
}

std::string lineRef(const TableFile &file, size_t rowIndex)
{
    return file.fileName + " line " + std::to_string(file.table.rowLines[rowIndex]);
}

Result<ScanResult> readManifestImpl(const std::string &csvPath)
{
    auto loaded = loadTable(csvPath, "manifest");
    if (!loaded)
        return loaded.error();
    const TableFile &file = *loaded;
    const CsvTable &table = file.table;

    const std::vector<std::string> &names = file.names;
    const int pathCol = findColumn(names, {"path", "file", "filename", "image"});
    if (pathCol < 0) {
        return Error("no column for the image path (expected path, file, filename or image); columns found: "
                     + columnsFound(table.header));
    }
    const int patientCol = findColumn(names, {"patient", "patient_id", "patient_code"});
    const int classCol = findColumn(names, {"class", "label", "cell_type"});
    const int diagnosisCol = findColumn(names, {"diagnosis"});

    ScanResult result;
    std::unordered_set<std::string> seen;
    for (size_t r = 0; r < table.rows.size(); ++r) {
        const std::vector<std::string> &row = table.rows[r];
        if (allFieldsEmpty(row))
            continue; // spreadsheets pad exports with rows of bare delimiters
        if (row.size() != table.header.size()) {
            result.issues.push_back({file.absolutePath, lineRef(file, r) + ": " + std::to_string(row.size())
                                         + " fields, header has " + std::to_string(table.header.size())});
            continue;
        }
        const std::string rawPath = trimmed(row[size_t(pathCol)]);
        if (rawPath.empty()) {
            result.issues.push_back({file.absolutePath, lineRef(file, r) + ": the path is empty"});
            continue;
        }
        fs::path p(rawPath);
        if (p.is_relative())
            p = file.folder / p;
        ImportItem item;
        item.path = p.lexically_normal().string();
        if (!seen.insert(item.path).second) {
            result.issues.push_back({file.absolutePath, lineRef(file, r) + ": " + item.path
                                         + " is listed again; only its first row is used"});
            continue;
        }
        for (size_t c = 0; c < row.size(); ++c) {
            const int col = int(c);
            const std::string value = trimmed(row[c]);
            if (col == pathCol)
                continue;
            if (col == patientCol)
                item.patientCode = value;
            else if (col == classCol)
                item.className = value;
            else if (col == diagnosisCol)
                item.diagnosis = value;
            else
                item.metadata.emplace_back(trimmed(table.header[c]), value);
        }
        result.items.push_back(std::move(item));
    }
    // Manifest order is kept: it is the user's own ordering and already deterministic.
    return result;
}

Result<std::vector<PatientRow>> readPatientTableImpl(const std::string &csvPath, std::vector<ScanIssue> *issues)
{
    auto loaded = loadTable(csvPath, "patient table");
    if (!loaded)
        return loaded.error();
    const TableFile &file = *loaded;
    const CsvTable &table = file.table;

    const std::vector<std::string> &names = file.names;
    const int codeCol = findColumn(names, {"patient", "patient_id", "patient_code", "code"});
    if (codeCol < 0) {
        return Error("no patient column (expected patient, patient_id, patient_code or code); columns found: "
                     + columnsFound(table.header));
    }
    const int diagnosisCol = findColumn(names, {"diagnosis", "label", "subtype"});

    auto report = [&](size_t r, const std::string &message) {
        if (issues)
            issues->push_back({file.absolutePath, lineRef(file, r) + ": " + message});
    };

    std::vector<PatientRow> rows;
    std::unordered_set<std::string> seen;
    for (size_t r = 0; r < table.rows.size(); ++r) {
        const std::vector<std::string> &row = table.rows[r];
        if (allFieldsEmpty(row))
            continue;
        if (row.size() != table.header.size()) {
            report(r, std::to_string(row.size()) + " fields, header has " + std::to_string(table.header.size()));
            continue;
        }
        PatientRow out;
        out.code = trimmed(row[size_t(codeCol)]);
        if (out.code.empty()) {
            report(r, "the patient code is empty");
            continue;
        }
        if (!seen.insert(out.code).second) {
            report(r, "patient " + out.code + " is listed again; only its first row is used");
            continue;
        }
        for (size_t c = 0; c < row.size(); ++c) {
            const int col = int(c);
            if (col == codeCol)
                continue;
            if (col == diagnosisCol)
                out.diagnosis = trimmed(row[c]);
            else
                out.metadata.emplace_back(trimmed(table.header[c]), trimmed(row[c]));
        }
        rows.push_back(std::move(out));
    }
    return rows;
}

} // namespace

bool isImageFileName(const std::string &path)
{
    const std::string ext = toLower(fs::path(path).extension().string());
    return ext == ".tif" || ext == ".tiff" || ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp";
}

Result<FolderLayout> parseLayout(const std::string &name)
{
    const std::string key = toLower(trimmed(name));
    if (key == "flat")
        return FolderLayout::Flat;
    if (key == "class")
        return FolderLayout::ClassPerFolder;
    if (key == "patient")
        return FolderLayout::PatientPerFolder;
    if (key == "diagnosis-patient")
        return FolderLayout::DiagnosisThenPatient;
    return Error("unknown folder layout \"" + name + "\"; expected flat, class, patient or diagnosis-patient");
}

const char *layoutName(FolderLayout layout)
{
    switch (layout) {
    case FolderLayout::Flat:
        return "flat";
    case FolderLayout::ClassPerFolder:
        return "class";
    case FolderLayout::PatientPerFolder:
        return "patient";
    case FolderLayout::DiagnosisThenPatient:
        return "diagnosis-patient";
    }
    return "class";
}

// The public functions only add the guarantee that nothing escapes: the walk and the parsers
// use error_code overloads, so what is left to catch is allocation failure.
Result<ScanResult> scanFolder(const std::string &root, const ScanOptions &options)
{
    try {
        return scanFolderImpl(root, options);
    } catch (const std::bad_alloc &) {
        return Error("ran out of memory while scanning the folder");
    } catch (const std::exception &e) {
        return Error(std::string("scanning the folder failed unexpectedly (") + e.what() + ")");
    }
}

Result<ScanResult> readManifest(const std::string &csvPath)
{
    try {
        return readManifestImpl(csvPath);
    } catch (const std::bad_alloc &) {
        return Error("ran out of memory while reading the manifest");
    } catch (const std::exception &e) {
        return Error(std::string("reading the manifest failed unexpectedly (") + e.what() + ")");
    }
}

Result<std::vector<PatientRow>> readPatientTable(const std::string &csvPath, std::vector<ScanIssue> *issues)
{
    try {
        return readPatientTableImpl(csvPath, issues);
    } catch (const std::bad_alloc &) {
        return Error("ran out of memory while reading the patient table");
    } catch (const std::exception &e) {
        return Error(std::string("reading the patient table failed unexpectedly (") + e.what() + ")");
    }
}


} // namespace cytosae::pipeline
