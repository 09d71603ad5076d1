#include "io/JsonReader.h"

#include <cstdlib>

namespace cytosae::io {

const JsonValue *JsonValue::find(const std::string &key) const
{
    for (const auto &[k, v] : members)
        if (k == key)
            return &v;
    return nullptr;
}

double JsonValue::number() const { return kind == Kind::Number ? std::strtod(text.c_str(), nullptr) : 0.0; }

namespace {

class Parser {
public:
    explicit Parser(const std::string &s) : m_s(s) {}

    Result<JsonValue> document()
    {
        JsonValue v;
        if (!value(v, 0))
            return Error(where() + m_error);
        skipSpace();
        if (m_pos != m_s.size())
            return Error(where() + "unexpected content after the JSON value");
        return v;
    }

private:
    bool fail(const std::string &message)
    {
        if (m_error.empty())
            m_error = message;
        return false;
    }

    std::string where() const
    {
        size_t line = 1, column = 1;
        for (size_t i = 0; i < m_pos && i < m_s.size(); ++i) {
            if (m_s[i] == '\n') {
                ++line;
                column = 1;
            } else {
                ++column;
            }
        }
        return "line " + std::to_string(line) + ", column " + std::to_string(column) + ": ";
    }

    void skipSpace()
    {
        while (m_pos < m_s.size() && (m_s[m_pos] == ' ' || m_s[m_pos] == '\n' || m_s[m_pos] == '\r' || m_s[m_pos] == '\t'))
            ++m_pos;
    }

    bool literal(const char *word)
    {
        const std::string w(word);
        if (m_s.compare(m_pos, w.size(), w) != 0)
            return fail("unknown word");
        m_pos += w.size();
        return true;
    }

    bool value(JsonValue &v, int depth)
    {
        if (depth > 64)
            return fail("nested too deeply");
        skipSpace();
        if (m_pos >= m_s.size())
            return fail("unexpected end of the file");
        const char c = m_s[m_pos];
        if (c == '{')
            return object(v, depth);
        if (c == '[')
            return array(v, depth);
        if (c == '"') {
            v.kind = JsonValue::Kind::String;
            return string(v.text);
        }
        if (c == 't' || c == 'f') {
            v.kind = JsonValue::Kind::Bool;
            v.boolean = c == 't';
            return literal(c == 't' ? "true" : "false");
        }
        if (c == 'n') {
            v.kind = JsonValue::Kind::Null;
            return literal("null");
        }
        return number(v);
    }

    bool number(JsonValue &v)
    {
        const size_t start = m_pos;
        if (m_pos < m_s.size() && m_s[m_pos] == '-')
            ++m_pos;
        auto digits = [&] {
            const size_t from = m_pos;
            while (m_pos < m_s.size() && m_s[m_pos] >= '0' && m_s[m_pos] <= '9')
                ++m_pos;
            return m_pos > from;
        };
        if (!digits())
            return fail("expected a value");
        if (m_pos < m_s.size() && m_s[m_pos] == '.') {
            ++m_pos;
            if (!digits())
                return fail("expected digits after '.'");
        }
        if (m_pos < m_s.size() && (m_s[m_pos] == 'e' || m_s[m_pos] == 'E')) {
            ++m_pos;
            if (m_pos < m_s.size() && (m_s[m_pos] == '+' || m_s[m_pos] == '-'))
                ++m_pos;
            if (!digits())
                return fail("expected an exponent");
        }
        v.kind = JsonValue::Kind::Number;
        v.text = m_s.substr(start, m_pos - start);
        return true;
    }

    static void appendUtf8(std::string &out, unsigned cp)
    {
        if (cp < 0x80) {
            out += char(cp);
        } else if (cp < 0x800) {
            out += char(0xC0 | (cp >> 6));
            out += char(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out += char(0xE0 | (cp >> 12));
            out += char(0x80 | ((cp >> 6) & 0x3F));
            out += char(0x80 | (cp & 0x3F));
        } else {
            out += char(0xF0 | (cp >> 18));
            out += char(0x80 | ((cp >> 12) & 0x3F));
            out += char(0x80 | ((cp >> 6) & 0x3F));
            out += char(0x80 | (cp & 0x3F));
        }
    }

    bool hex4(unsigned &cp)
    {
        if (m_pos + 4 > m_s.size())
            return fail("incomplete \\u escape");
        cp = 0;
        for (int i = 0; i < 4; ++i) {
            const char h = m_s[m_pos++];
            cp <<= 4;
            if (h >= '0' && h <= '9')
                cp |= unsigned(h - '0');
            else if (h >= 'a' && h <= 'f')
                cp |= unsigned(h - 'a' + 10);
            else if (h >= 'A' && h <= 'F')
                cp |= unsigned(h - 'A' + 10);
            else
                return fail("bad \\u escape");
        }
        return true;
    }

    bool string(std::string &out)
    {
        ++m_pos; // opening quote
        while (m_pos < m_s.size()) {
            const char c = m_s[m_pos++];
            if (c == '"')
                return true;
            if (static_cast<unsigned char>(c) < 0x20)
                return fail("control character in a string");
            if (c != '\\') {
                out += c;
                continue;
            }
            if (m_pos >= m_s.size())
                break;
            const char e = m_s[m_pos++];
            switch (e) {
            case '"': out += '"'; break;
            case '\\': out += '\\'; break;
            case '/': out += '/'; break;
            case 'b': out += '\b'; break;
            case 'f': out += '\f'; break;
            case 'n': out += '\n'; break;
            case 'r': out += '\r'; break;
            case 't': out += '\t'; break;
            case 'u': {
                unsigned cp = 0;
                if (!hex4(cp))
                    return false;
                if (cp >= 0xD800 && cp < 0xDC00 && m_s.compare(m_pos, 2, "\\u") == 0) {
                    m_pos += 2;
                    unsigned low = 0;
                    if (!hex4(low))
                        return false;
                    if (low < 0xDC00 || low > 0xDFFF)
                        return fail("bad surrogate pair");
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                }
                appendUtf8(out, cp);
                break;
            }
            default: return fail(std::string("unknown escape \\") + e);
            }
        }
        return fail("unterminated string");
    }

    bool array(JsonValue &v, int depth)
    {
        v.kind = JsonValue::Kind::Array;
        ++m_pos;
        skipSpace();
        if (m_pos < m_s.size() && m_s[m_pos] == ']') {
            ++m_pos;
            return true;
        }
        while (true) {
            JsonValue item;
            if (!value(item, depth + 1))
                return false;
            v.items.push_back(std::move(item));
            skipSpace();
            if (m_pos < m_s.size() && m_s[m_pos] == ',') {
                ++m_pos;
                continue;
            }
            if (m_pos < m_s.size() && m_s[m_pos] == ']') {
                ++m_pos;
                return true;
            }
            return fail("expected ',' or ']'");
        }
    }

    bool object(JsonValue &v, int depth)
    {
        v.kind = JsonValue::Kind::Object;
        ++m_pos;
        skipSpace();
        if (m_pos < m_s.size() && m_s[m_pos] == '}') {
            ++m_pos;
            return true;
        }
        while (true) {
            skipSpace();
            if (m_pos >= m_s.size() || m_s[m_pos] != '"')
                return fail("expected a key in quotes");
            std::string key;
            if (!string(key))
                return false;
            skipSpace();
            if (m_pos >= m_s.size() || m_s[m_pos] != ':')
                return fail("expected ':'");
            ++m_pos;
            JsonValue member;
            if (!value(member, depth + 1))
                return false;
            v.members.emplace_back(std::move(key), std::move(member));
            skipSpace();
            if (m_pos < m_s.size() && m_s[m_pos] == ',') {
                ++m_pos;
                continue;
            }
            if (m_pos < m_s.size() && m_s[m_pos] == '}') {
                ++m_pos;
                return true;
            }
            return fail("expected ',' or '}'");
        }
    }

    const std::string &m_s;
    size_t m_pos = 0;
    std::string m_error;
};

} // namespace

Result<JsonValue> parseJson(const std::string &text, size_t maxBytes)
{
    if (text.size() > maxBytes)
        return Error("the file is larger than " + std::to_string(maxBytes >> 20) + " MB");
    return Parser(text).document();
}

} // namespace cytosae::io
