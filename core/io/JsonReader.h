#pragma once

// A small JSON reader for files people exchange (label exports): a value tree, bounded depth
// and size, and errors that say where ("line 3, column 14: expected ':'"). Numbers keep their
// source text so that integers and doubles survive a round trip exactly.

#include "common/Result.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace cytosae::io {

struct JsonValue {
    enum class Kind { Null, Bool, Number, String, Array, Object };
    Kind kind = Kind::Null;
    bool boolean = false;
    std::string text; // a string's contents, or a number's source text
    std::vector<JsonValue> items;
    std::vector<std::pair<std::string, JsonValue>> members; // in file order

    bool isNull() const { return kind == Kind::Null; }
    const JsonValue *find(const std::string &key) const;
    double number() const;
};

// Refuses input over maxBytes, nesting deeper than 64, and trailing content.
Result<JsonValue> parseJson(const std::string &text, size_t maxBytes = 256u << 20);

} // namespace cytosae::io
