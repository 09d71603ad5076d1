#pragma once

// The exchange format of the annotation ledger (labels, groups, flags, thresholds, annotation
// tasks and answers, review decisions and sign-offs), for moving them between projects and
// into other tools. Two spellings with the same content:
//   JSON  one file: {"format": "cytosae-annotations", "version": 1, "tables": {name: [row, ...]}}
//   CSV   one folder with one <table>.csv per table (header = column names)
// Export, import into another project with the same images, export again: the files are equal.

#include "common/Result.h"
#include "store/AnnotationDb.h"

#include <string>
#include <vector>

namespace cytosae::annotation {

std::string exchangeToJson(const std::vector<store::ExchangeTable> &tables);
Result<std::vector<store::ExchangeTable>> exchangeFromJson(const std::string &text);

// Writes every table (also empty ones) into `folder`, which is created when missing.
Status writeExchangeCsv(const std::vector<store::ExchangeTable> &tables, const std::string &folder);
// Reads every known <table>.csv in `folder`; a missing file is an empty table.
Result<std::vector<store::ExchangeTable>> readExchangeCsv(const std::string &folder);

// Export/import by path: a name ending in ".json" is JSON, anything else a CSV folder.
Status exportAnnotations(store::AnnotationDb &db, const std::string &path);
Result<store::ImportReport> importAnnotations(store::AnnotationDb &db, const std::string &path);

} // namespace cytosae::annotation
