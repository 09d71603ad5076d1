#pragma once

// Streaming JSON output for reports and exports. Streaming (rather than building a DOM)
// keeps memory flat when dumping per-patch activations for thousands of images.
//
// Misuse (a value where a key is required, mismatched end calls, ...) never throws: the
// offending call is ignored and the first problem is kept in error(), so a caller can
// check ok() once at the end.

#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace cytosae::io {

class JsonWriter {
public:
    explicit JsonWriter(std::ostream &out, bool pretty = true) : m_out(out), m_pretty(pretty) {}

    JsonWriter &beginObject() { return beginContainer(Kind::Object, '{'); }
    JsonWriter &endObject() { return endContainer(Kind::Object, '}'); }
    JsonWriter &beginArray() { return beginContainer(Kind::Array, '['); }
    JsonWriter &endArray() { return endContainer(Kind::Array, ']'); }

    JsonWriter &key(std::string_view name)
    {
        if (m_stack.empty() || m_stack.back().kind != Kind::Object)
            return fail("key(\"" + std::string(name) + "\") outside an object");
        Frame &f = m_stack.back();
        if (f.keyPending)
            return fail("key(\"" + std::string(name) + "\") follows a key that has no value");
        writeElementSeparator(f);
        writeString(name);
        m_out << (m_pretty ? ": " : ":");
        f.keyPending = true;
        return *this;
    }

    JsonWriter &value(std::string_view v)
    {
        if (!beforeValue())
            return *this;
        writeString(v);
        return *this;
    }
    // Without this a string literal would pick the bool overload.
    JsonWriter &value(const char *v) { return v ? value(std::string_view(v)) : null(); }
    JsonWriter &value(const std::string &v) { return value(std::string_view(v)); }

    // NaN and infinities have no JSON spelling; null is what Python's json and JS accept.
    JsonWriter &value(double v) { return writeNumber(v, 17); }
    JsonWriter &value(float v) { return writeNumber(v, 9); }

    JsonWriter &value(int64_t v) { return writeInteger(v); }
    template <typename T,
              std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>
                                   && !std::is_same_v<T, char>,
                               int> = 0>
    JsonWriter &value(T v)
    {
        return writeInteger(v);
    }

    JsonWriter &value(bool v)
    {
        if (beforeValue())
            m_out << (v ? "true" : "false");
        return *this;
    }
    JsonWriter &value(std::nullptr_t) { return null(); }
    JsonWriter &null()
    {
        if (beforeValue())
            m_out << "null";
        return *this;
    }

    bool ok() const { return m_error.empty(); }
    const std::string &error() const { return m_error; }
    // True once a single top-level value has been written and every container closed.
    bool complete() const { return ok() && m_stack.empty() && m_topLevelWritten; }

    static std::string escape(std::string_view s)
    {
        std::string out;
        out.reserve(s.size() + 2);
        for (char c : s) {
            const auto u = static_cast<unsigned char>(c);
            if (c == '"') {
                out += "\\\"";
            } else if (c == '\\') {
                out += "\\\\";
            } else if (u < 0x20) {
                static const char hex[] = "0123456789abcdef";
                out += "\\u00";
                out += hex[u >> 4];
                out += hex[u & 0xF];
            } else {
                out += c; // UTF-8 passes through untouched; JSON text is UTF-8
            }
        }
        return out;
    }

    // Same digits as printf("%.9g") / ("%.17g"), but std::to_chars ignores the C locale,
    // which Qt applications set from the environment (a German locale would print "0,5").
    static std::string formatNumber(double v, int precision)
    {
        if (!std::isfinite(v))
            return "null";
        char buf[64];
        const auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::general, precision);
        return std::string(buf, res.ptr);
    }
    static std::string formatNumber(float v, int precision)
    {
        if (!std::isfinite(v))
            return "null";
        char buf[64];
        const auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::general, precision);
        return std::string(buf, res.ptr);
    }

private:
    enum class Kind { Object, Array };
    struct Frame {
        Kind kind;
        size_t count = 0;
        bool keyPending = false;
    };

    JsonWriter &fail(const std::string &what)
    {
        if (m_error.empty())
            m_error = "JsonWriter: " + what;
        return *this;
    }

    void newlineIndent(size_t depth)
    {
        if (!m_pretty)
            return;
        m_out << '\n';
        for (size_t i = 0; i < depth; ++i)
            m_out << "    ";
    }

    void writeElementSeparator(Frame &f)
    {
        if (f.count > 0)
            m_out << ',';
        newlineIndent(m_stack.size());
        ++f.count;
    }

    // Emits whatever must precede a value at the current position; false if none is allowed.
    bool beforeValue()
    {
        if (m_stack.empty()) {
            if (m_topLevelWritten) {
                fail("second top-level value");
                return false;
            }
            m_topLevelWritten = true;
            return true;
        }
        Frame &f = m_stack.back();
        if (f.kind == Kind::Object) {
            if (!f.keyPending) {
                fail("value inside an object without a key");
                return false;
            }
            f.keyPending = false;
            return true;
        }
        writeElementSeparator(f);
        return true;
    }

    JsonWriter &beginContainer(Kind kind, char open)
    {
        if (!beforeValue())
            return *this;
        m_out << open;
        m_stack.push_back(Frame{kind});
        return *this;
    }

    JsonWriter &endContainer(Kind kind, char close)
    {
        const char *name = kind == Kind::Object ? "endObject()" : "endArray()";
        if (m_stack.empty() || m_stack.back().kind != kind)
            return fail(std::string(name) + " does not match the open container");
        if (m_stack.back().keyPending)
            return fail(std::string(name) + " right after a key that has no value");
        const bool hadElements = m_stack.back().count > 0;
        m_stack.pop_back();
        if (hadElements)
            newlineIndent(m_stack.size());
        m_out << close;
        if (m_stack.empty() && m_pretty)
            m_out << '\n';
        return *this;
    }

    void writeString(std::string_view s) { m_out << '"' << escape(s) << '"'; }

    template <typename F>
    JsonWriter &writeNumber(F v, int precision)
    {
        if (beforeValue())
            m_out << formatNumber(v, precision);
        return *this;
    }

    template <typename I>
    JsonWriter &writeInteger(I v)
    {
        if (!beforeValue())
            return *this;
        char buf[32];
        const auto res = std::to_chars(buf, buf + sizeof buf, v);
        m_out.write(buf, res.ptr - buf);
        return *this;
    }

    std::ostream &m_out;
    bool m_pretty;
    bool m_topLevelWritten = false;
    std::vector<Frame> m_stack;
    std::string m_error;
};

} // namespace cytosae::io
