#include "io/Csv.h"

#include <exception>
#include <new>

namespace cytosae::io {

namespace {

bool isBlank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

std::string trimmed(const std::string &s)
{
    size_t b = 0, e = s.size();
    while (b < e && isBlank(s[b]))
        ++b;
    while (e > b && isBlank(s[e - 1]))
        --e;
    return s.substr(b, e - b);
}


char detectDelimiter(const std::string &text, size_t pos)
{
    // Skip blank lines before the header, then count delimiters outside quotes on its line.
    while (pos < text.size() && (text[pos] == '\r' || text[pos] == '\n'))
        ++pos;
    size_t commas = 0, semicolons = 0, tabs = 0;
    bool inQuotes = false;
    for (; pos < text.size(); ++pos) {
        const char c = text[pos];
        if (c == '"') {
            inQuotes = !inQuotes; // a doubled quote toggles twice, which is what we want
        } else if (!inQuotes) {
            if (c == '\n' || c == '\r')
                break;
            if (c == ',')
                ++commas;
            else if (c == ';')
                ++semicolons;
            else if (c == '\t')
                ++tabs;
        }
    }
    if (commas > 0)
        return ',';
    if (semicolons > 0 && semicolons >= tabs)
        return ';';
    if (tabs > 0)
        return '\t';
    return ',';
}

Result<CsvTable> parseCsvImpl(const std::string &text, size_t maxBytes)
{
    if (text.size() > maxBytes) {
        return Error("the table is " + std::to_string(text.size() >> 20) + " MiB, more than the "
                     + std::to_string(maxBytes >> 20) + " MiB a table may have");
    }
    size_t pos = 0;
    if (text.compare(0, 3, "\xEF\xBB\xBF") == 0)
        pos = 3;
    if (text.find('\0', pos) != std::string::npos)
        return Error("the file contains binary data; it does not look like a text table (save it as CSV)");

    const char delim = detectDelimiter(text, pos);

    enum class State { FieldStart, Unquoted, Quoted, AfterQuote };
    State state = State::FieldStart;
    CsvTable table;
    bool haveHeader = false;
    std::vector<std::string> record;
    std::string field;
    bool recordStarted = false;
    bool recordHadQuotes = false;
    int line = 1;
    int recordLine = 1;
    int quoteLine = 1;

    auto endField = [&]() {
        record.push_back(std::move(field));
        field.clear();
    };
    auto endRecord = [&]() {
        endField();
        // A line with nothing (or only spaces) on it is layout, not an empty row.
        const bool blank = record.size() == 1 && !recordHadQuotes && trimmed(record[0]).empty();
        if (!blank) {
            if (!haveHeader) {
                table.header = std::move(record);
                haveHeader = true;
            } else {
                table.rows.push_back(std::move(record));
                table.rowLines.push_back(recordLine);
            }
        }
        record.clear();
        recordStarted = false;
        recordHadQuotes = false;
        state = State::FieldStart;
    };
    // Consumes a line end at i (CRLF as one) and starts counting the next line.
    auto lineEnd = [&](size_t &i) {
        if (text[i] == '\r' && i + 1 < text.size() && text[i + 1] == '\n')
            ++i;
        ++line;
    };

    for (size_t i = pos; i < text.size(); ++i) {
        const char c = text[i];
        const bool newline = c == '\n' || c == '\r';
        switch (state) {
        case State::FieldStart:
            if (!recordStarted) {
                recordLine = line;
                recordStarted = true;
            }
            if (c == '"') {
                state = State::Quoted;
                recordHadQuotes = true;
                quoteLine = line;
            } else if (c == delim) {
                endField();
            } else if (newline) {
                endRecord();
                lineEnd(i);
            } else {
                field += c;
                state = State::Unquoted;
            }
            break;
        case State::Unquoted:
            if (c == delim) {
                endField();
                state = State::FieldStart;
            } else if (newline) {
                endRecord();
                lineEnd(i);
            } else {
                field += c; // a stray quote inside an unquoted field is kept, as Python's csv does
            }
            break;
        case State::Quoted:
            if (c == '"') {
                state = State::AfterQuote;
            } else {
                field += c;
                if (c == '\n' || (c == '\r' && !(i + 1 < text.size() && text[i + 1] == '\n')))
                    ++line;
            }
            break;
        case State::AfterQuote:
            if (c == '"') {
                field += '"';
                state = State::Quoted;
            } else if (c == delim) {
                endField();
                state = State::FieldStart;
            } else if (newline) {
                endRecord();
                lineEnd(i);
            } else {
                // "abc"def: not RFC 4180, but spreadsheets produce it; keep the text like Python.
                field += c;
                state = State::Unquoted;
            }
            break;
        }
    }
    if (state == State::Quoted)
        return Error("line " + std::to_string(quoteLine) + ": a quoted field starts here and is never closed");
    if (recordStarted)
        endRecord();

    if (!haveHeader)
        return Error("the file is empty; a header line is needed");
    return table;
}
} // namespace

Result<CsvTable> parseCsv(const std::string &text, size_t maxBytes)
{
    try {
        return parseCsvImpl(text, maxBytes);
    } catch (const std::bad_alloc &) {
        return Error("ran out of memory while reading the table");
    } catch (const std::exception &e) {
        return Error(std::string("reading the table failed unexpectedly (") + e.what() + ")");
    }
}

std::string csvField(const std::string &s)
{
    if (s.find_first_of(",;\t\"\r\n") == std::string::npos)
        return s;
    std::string out = "\"";
    for (char c : s) {
        if (c == '"')
            out += '"';
        out += c;
    }
    return out + "\"";
}

} // namespace cytosae::io
