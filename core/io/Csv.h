#pragma once

// CSV in and out, for manifests, patient tables and exchange files.

#include "common/Result.h"

#include <string>
#include <vector>

namespace cytosae::io {

// RFC 4180: quoted fields, doubled quotes, embedded delimiters and newlines, CRLF, LF or lone
// CR line ends, optional UTF-8 byte order mark. The delimiter is ',' unless the header line
// has no comma but has ';' or tabs (what spreadsheets write in locales with a decimal comma).
// Blank lines are skipped. Fields are returned exactly as written (no trimming); rows may
// have any number of fields, callers decide what a wrong count means.
struct CsvTable {
    std::vector<std::string> header;
    std::vector<std::vector<std::string>> rows;
    std::vector<int> rowLines; // 1-based line on which each row starts, for messages
};
Result<CsvTable> parseCsv(const std::string &text, size_t maxBytes = 256u << 20);

// One field, quoted when it holds a delimiter, quote or line end.
std::string csvField(const std::string &s);

} // namespace cytosae::io
