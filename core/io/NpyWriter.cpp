#include "io/NpyWriter.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <optional>
#include <utility>

namespace cytosae::io {

namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;
constexpr size_t kAlign = 64; // NumPy aligns data to 64 bytes so it can be memory-mapped

bool hostIsLittleEndian()
{
    const uint16_t probe = 1;
    uint8_t first;
    std::memcpy(&first, &probe, 1);
    return first == 1;
}

std::optional<int64_t> elementCount(const std::vector<int64_t> &shape)
{
    int64_t count = 1;
    for (int64_t d : shape) {
        if (d < 0)
            return std::nullopt;
        if (d != 0 && count > std::numeric_limits<int64_t>::max() / 4 / d)
            return std::nullopt; // byte size would overflow
        count *= d;
    }
    return count;
}

std::string shapeText(const std::vector<int64_t> &shape)
{
    // Python tuple repr: a 1-tuple needs the trailing comma to stay a tuple.
    std::string s = "(";
    for (size_t i = 0; i < shape.size(); ++i) {
        if (i > 0)
            s += ", ";
        s += std::to_string(shape[i]);
    }
    if (shape.size() == 1)
        s += ",";
    s += ")";
    return s;
}

std::string errnoText()
{
    return errno != 0 ? std::string(" (") + std::strerror(errno) + ")" : std::string();
}

Status writeNpy(const std::string &path, const std::string &descr, const void *data,
                const std::vector<int64_t> &shape)
{
    const auto count = elementCount(shape);
    if (!count)
        return Error("invalid array shape " + shapeText(shape)).withContext(path);
    if (*count > 0 && data == nullptr)
        return Error("no data given for a non-empty array").withContext(path);

    auto header = npyHeader(descr, shape);
    if (!header.ok())
        return header.error().withContext(path);

    errno = 0;
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out)
        return Error("cannot open for writing" + errnoText()).withContext(path);

    out.write(header->data(), std::streamsize(header->size()));

    const auto *bytes = static_cast<const char *>(data);
    const int64_t byteCount = *count * 4;
    if (hostIsLittleEndian()) {
        out.write(bytes, std::streamsize(byteCount));
    } else {
        // .npy stores '<' (little-endian) data; swap in chunks to bound extra memory.
        char buf[4096];
        for (int64_t done = 0; done < byteCount && out;) {
            const int64_t n = std::min<int64_t>(sizeof buf, byteCount - done);
            for (int64_t i = 0; i < n; i += 4) {
                buf[i] = bytes[done + i + 3];
                buf[i + 1] = bytes[done + i + 2];
                buf[i + 2] = bytes[done + i + 1];
                buf[i + 3] = bytes[done + i];
            }
            out.write(buf, std::streamsize(n));
            done += n;
        }
    }
    out.flush();
    const bool writeOk = bool(out);
    out.close();
    if (!writeOk || !out) {
        const std::string why = errnoText();
        // A truncated .npy would load as garbage or fail later with a worse message.
        std::remove(path.c_str());
        return Error("write failed" + (why.empty() ? std::string(" (disk full?)") : why))
            .withContext(path);
    }
    return Status::success();
}

// Minimal parser for the Python dict literal in an .npy header.
class HeaderParser {
public:
    explicit HeaderParser(const std::string &text) : m_text(text) {}

    Result<NpyArray> parse()
    {
        NpyArray arr;
        bool haveDescr = false, haveOrder = false, haveShape = false;
        bool fortran = false;
        skipSpace();
        if (!consume('{'))
            return Error("header is not a Python dict");
        while (true) {
            skipSpace();
            if (consume('}'))
                break;
            std::string key;
            if (!parseString(key))
                return Error("header dict has a malformed key");
            skipSpace();
            if (!consume(':'))
                return Error("header dict is missing ':' after '" + key + "'");
            skipSpace();
            if (key == "descr") {
                if (!parseString(arr.descr))
                    return Error("header 'descr' is not a string");
                haveDescr = true;
            } else if (key == "fortran_order") {
                if (consumeWord("True"))
                    fortran = true;
                else if (consumeWord("False"))
                    fortran = false;
                else
                    return Error("header 'fortran_order' is not True or False");
                haveOrder = true;
            } else if (key == "shape") {
                if (!parseShape(arr.shape))
                    return Error("header 'shape' is not a tuple of non-negative integers");
                haveShape = true;
            } else {
                return Error("header has unexpected key '" + key + "'");
            }
            skipSpace();
            if (consume(','))
                continue;
            skipSpace();
            if (consume('}'))
                break;
            return Error("header dict is malformed");
        }
        if (!haveDescr || !haveOrder || !haveShape)
            return Error("header lacks one of 'descr', 'fortran_order', 'shape'");
        if (fortran)
            return Error("Fortran-ordered arrays are not supported");
        return arr;
    }

private:
    void skipSpace()
    {
        while (m_pos < m_text.size() && (m_text[m_pos] == ' ' || m_text[m_pos] == '\n'))
            ++m_pos;
    }
    bool consume(char c)
    {
        if (m_pos < m_text.size() && m_text[m_pos] == c) {
            ++m_pos;
            return true;
        }
        return false;
    }
    bool consumeWord(const char *word)
    {
        const size_t n = std::strlen(word);
        if (m_text.compare(m_pos, n, word) == 0) {
            m_pos += n;
            return true;
        }
        return false;
    }
    bool parseString(std::string &out)
    {
        if (m_pos >= m_text.size() || (m_text[m_pos] != '\'' && m_text[m_pos] != '"'))
            return false;
        const char quote = m_text[m_pos++];
        const size_t end = m_text.find(quote, m_pos);
        if (end == std::string::npos)
            return false;
        out = m_text.substr(m_pos, end - m_pos);
        m_pos = end + 1;
        return true;
    }
    bool parseShape(std::vector<int64_t> &shape)
    {
        if (!consume('('))
            return false;
        while (true) {
            skipSpace();
            if (consume(')'))
                return true;
            if (m_pos >= m_text.size() || m_text[m_pos] < '0' || m_text[m_pos] > '9')
                return false;
            int64_t v = 0;
            while (m_pos < m_text.size() && m_text[m_pos] >= '0' && m_text[m_pos] <= '9') {
                if (v > (std::numeric_limits<int64_t>::max() - 9) / 10)
                    return false;
                v = v * 10 + (m_text[m_pos++] - '0');
            }
            // NumPy writes Python ints; older versions could append 'L'.
            consume('L');
            shape.push_back(v);
            skipSpace();
            if (consume(','))
                continue;
            skipSpace();
            return consume(')');
        }
    }

    const std::string &m_text;
    size_t m_pos = 0;
};

} // namespace

Result<std::string> npyHeader(const std::string &descr, const std::vector<int64_t> &shape)
{
    if (descr != "<f4" && descr != "<i4")
        return Error("unsupported dtype '" + descr + "'");
    const std::string dict =
        "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shapeText(shape) + ", }";
    const size_t unpadded = kMagicLen + 2 + 2 + dict.size() + 1; // +1 for the final '\n'
    const size_t padding = (kAlign - unpadded % kAlign) % kAlign;
    const size_t headerLen = dict.size() + padding + 1;
    if (headerLen > 0xFFFF)
        return Error("array has too many dimensions for an .npy 1.0 header");

    std::string header(kMagic, kMagicLen);
    header += '\x01';
    header += '\x00';
    header += char(headerLen & 0xFF);
    header += char((headerLen >> 8) & 0xFF);
    header += dict;
    header.append(padding, ' ');
    header += '\n';
    return header;
}

Status writeNpyFloat32(const std::string &path, const float *data, const std::vector<int64_t> &shape)
{
    static_assert(sizeof(float) == 4 && std::numeric_limits<float>::is_iec559,
                  ".npy '<f4' needs IEEE-754 binary32 floats");
    return writeNpy(path, "<f4", data, shape);
}

Status writeNpyInt32(const std::string &path, const int32_t *data, const std::vector<int64_t> &shape)
{
    return writeNpy(path, "<i4", data, shape);
}

Result<NpyArray> readNpy(const std::string &path)
{
    errno = 0;
    std::ifstream in(path, std::ios::binary);
    if (!in)
        return Error("cannot open for reading" + errnoText()).withContext(path);

    char prefix[kMagicLen + 2];
    if (!in.read(prefix, sizeof prefix))
        return Error("file is too short to be an .npy file").withContext(path);
    if (std::memcmp(prefix, kMagic, kMagicLen) != 0)
        return Error("not an .npy file (magic string missing)").withContext(path);
    const int major = static_cast<unsigned char>(prefix[6]);
    const int minor = static_cast<unsigned char>(prefix[7]);
    if ((major != 1 && major != 2) || minor != 0) {
        return Error("unsupported .npy version " + std::to_string(major) + "." + std::to_string(minor))
            .withContext(path);
    }

    // Version 2.0 only widens the header length field to 4 bytes.
    const size_t lenBytes = major == 1 ? 2 : 4;
    unsigned char lenBuf[4] = {0, 0, 0, 0};
    if (!in.read(reinterpret_cast<char *>(lenBuf), std::streamsize(lenBytes)))
        return Error("file ends inside the header").withContext(path);
    const uint32_t headerLen = uint32_t(lenBuf[0]) | (uint32_t(lenBuf[1]) << 8)
        | (uint32_t(lenBuf[2]) << 16) | (uint32_t(lenBuf[3]) << 24);
    if (headerLen == 0 || headerLen > (1u << 20))
        return Error("header length " + std::to_string(headerLen) + " is implausible").withContext(path);

    std::string headerText(headerLen, '\0');
    if (!in.read(headerText.data(), std::streamsize(headerLen)))
        return Error("file ends inside the header").withContext(path);
    if (headerText.back() != '\n')
        return Error("header does not end with a newline").withContext(path);

    auto parsed = HeaderParser(headerText).parse();
    if (!parsed.ok())
        return parsed.error().withContext(path);
    NpyArray arr = std::move(parsed).value();
    if (arr.descr != "<f4" && arr.descr != "<i4")
        return Error("unsupported dtype '" + arr.descr + "' (expected '<f4' or '<i4')").withContext(path);

    const auto count = elementCount(arr.shape);
    if (!count)
        return Error("shape " + shapeText(arr.shape) + " is too large").withContext(path);
    const int64_t dataOffset = int64_t(kMagicLen + 2 + lenBytes + headerLen);
    in.seekg(0, std::ios::end);
    const int64_t fileSize = int64_t(in.tellg());
    const int64_t expected = *count * 4;
    if (fileSize - dataOffset != expected) {
        return Error("data is " + std::to_string(fileSize - dataOffset) + " bytes but shape "
                     + shapeText(arr.shape) + " needs " + std::to_string(expected))
            .withContext(path);
    }
    in.seekg(dataOffset, std::ios::beg);
    try {
        arr.bytes.resize(size_t(expected));
    } catch (const std::exception &) {
        return Error("not enough memory to read " + std::to_string(expected) + " bytes").withContext(path);
    }
    if (expected > 0 && !in.read(arr.bytes.data(), std::streamsize(expected)))
        return Error("read error in the data section").withContext(path);
    if (!hostIsLittleEndian()) {
        for (size_t i = 0; i + 3 < arr.bytes.size(); i += 4) {
            std::swap(arr.bytes[i], arr.bytes[i + 3]);
            std::swap(arr.bytes[i + 1], arr.bytes[i + 2]);
        }
    }
    return arr;
}

} // namespace cytosae::io
