#pragma once

// What `cytosae check` reports: SQLite's full integrity check of a project file, and for
// each table whether all of its rows can still be read. Never writes to the file.

#include "common/Result.h"

#include <cstdint>
#include <string>
#include <vector>

namespace cytosae::store {

struct TableHealth {
    std::string table;
    std::string holds;      // what the table means to a user ("imported images: paths, ...")
    int64_t rowsRead = 0;   // rows read before the end or the first error
    bool damaged = false;   // integrity_check names one of its pages, or reading it failed
    std::string problem;    // the first problem found with it
};

struct IntegrityReport {
    bool ok = false;                       // integrity_check said "ok"
    int schemaVersion = 0;
    std::vector<std::string> problems;     // integrity_check's lines (at most 100)
    std::vector<TableHealth> tables;       // every table, in schema order
    std::vector<std::string> damagedIndexes; // only the index is wrong: the rows are intact
    std::vector<std::string> backups;      // PROJECT.schemaN*.bak files beside it
};

// Reads the whole file read-only. An error only when the file cannot be opened as SQLite at
// all; a damaged file is a report with ok == false.
Result<IntegrityReport> checkIntegrity(const std::string &path);

} // namespace cytosae::store
