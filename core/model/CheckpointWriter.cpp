#include "model/CheckpointWriter.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <limits>
#include <new>
#include <unordered_map>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace cytosae::model {

// ---------------------------------------------------------------------------------------
// Builders

namespace py {
namespace {

std::shared_ptr<PickleNode> make(PickleNode::Kind kind)
{
    auto n = std::make_shared<PickleNode>();
    n->kind = kind;
    return n;
}

PickleEntries withTextKeys(PickleFields fields)
{
    PickleEntries out;
    out.reserve(fields.size());
    for (auto &[key, value] : fields)
        out.emplace_back(text(std::move(key)), std::move(value));
    return out;
}

} // namespace

PickleNodePtr none()
{
    return make(PickleNode::Kind::None);
}

PickleNodePtr boolean(bool value)
{
    auto n = make(PickleNode::Kind::Bool);
    n->boolValue = value;
    return n;
}

PickleNodePtr integer(int64_t value)
{
    auto n = make(PickleNode::Kind::Int);
    n->intValue = value;
    return n;
}

PickleNodePtr real(double value)
{
    auto n = make(PickleNode::Kind::Float);
    n->floatValue = value;
    return n;
}

PickleNodePtr text(std::string utf8)
{
    auto n = make(PickleNode::Kind::String);
    n->text = std::move(utf8);
    return n;
}

PickleNodePtr tuple(std::vector<PickleNodePtr> items)
{
    auto n = make(PickleNode::Kind::Tuple);
    n->items = std::move(items);
    return n;
}

PickleNodePtr list(std::vector<PickleNodePtr> items)
{
    auto n = make(PickleNode::Kind::List);
    n->items = std::move(items);
    return n;
}

PickleNodePtr dict(PickleFields entries)
{
    return dict(withTextKeys(std::move(entries)));
}

PickleNodePtr dict(PickleEntries entries)
{
    auto n = make(PickleNode::Kind::Dict);
    n->entries = std::move(entries);
    return n;
}

PickleNodePtr orderedDict(PickleFields entries, PickleNodePtr state)
{
    return orderedDict(withTextKeys(std::move(entries)), std::move(state));
}

PickleNodePtr orderedDict(PickleEntries entries, PickleNodePtr state)
{
    auto n = make(PickleNode::Kind::OrderedDict);
    n->entries = std::move(entries);
    n->state = std::move(state);
    return n;
}

PickleNodePtr object(std::string module, std::string className, PickleFields fields)
{
    auto n = make(PickleNode::Kind::Object);
    n->text = std::move(module);
    n->name = std::move(className);
    n->entries = withTextKeys(std::move(fields));
    return n;
}

PickleNodePtr global(std::string module, std::string name)
{
    auto n = make(PickleNode::Kind::Global);
    n->text = std::move(module);
    n->name = std::move(name);
    return n;
}

PickleNodePtr device(std::string type, int index)
{
    auto n = make(PickleNode::Kind::Device);
    n->text = std::move(type);
    n->intValue = index < 0 ? -1 : index;
    return n;
}

PickleNodePtr tensorF32(std::vector<int64_t> shape, const float *data)
{
    auto n = make(PickleNode::Kind::TensorF32);
    n->shape = std::move(shape);
    int64_t count = 1;
    for (int64_t d : n->shape) {
        if (d < 0 || (d > 0 && count > (int64_t(1) << 40) / d)) {
            count = -1; // reported by the writer, which checks shape against data
            break;
        }
        count *= d;
    }
    if (data && count > 0)
        n->data.assign(data, data + count);
    return n;
}

PickleNodePtr tensorF32(std::vector<int64_t> shape, std::vector<float> data)
{
    auto n = make(PickleNode::Kind::TensorF32);
    n->shape = std::move(shape);
    n->data = std::move(data);
    return n;
}

} // namespace py

namespace {

struct Failure {
    std::string message;
};

[[noreturn]] void fail(std::string message)
{
    throw Failure{std::move(message)};
}

bool validUtf8(const std::string &s)
{
    const auto *p = reinterpret_cast<const unsigned char *>(s.data());
    const size_t n = s.size();
    size_t i = 0;
    while (i < n) {
        const unsigned c = p[i];
        if (c < 0x80) {
            ++i;
            continue;
        }
        size_t len;
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i < len)
            return false;
        for (size_t k = 1; k < len; ++k) {
            if ((p[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

bool hostIsLittleEndian()
{
    const uint16_t probe = 1;
    uint8_t first;
    std::memcpy(&first, &probe, 1);
    return first == 1;
}

void putLe(std::string &out, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; ++i)
        out.push_back(char((v >> (8 * i)) & 0xFF));
}

std::string describeShape(const std::vector<int64_t> &shape)
{
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i)
        s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

// ---------------------------------------------------------------------------------------
// Pickle protocol 2, mirroring CPython's pickler (Modules/_pickle.c, Lib/pickle.py) for the
// object kinds torch.save meets in a checkpoint.

class Pickler {
public:
    std::string bytes;
    std::vector<const PickleNode *> tensors; // storage key i is tensors[i]

    void dump(const PickleNode &root)
    {
        bytes.append("\x80\x02", 2); // PROTO 2
        save(&root, 0);
        bytes.push_back('.'); // STOP
    }

private:
    static constexpr size_t kMaxDepth = 500;
    static constexpr size_t kBatch = 1000; // pickle._BATCHSIZE

    std::unordered_map<const PickleNode *, uint32_t> m_memo; // by identity, as Python's id()
    std::unordered_map<std::string, uint32_t> m_globals;     // "module\nname"
    std::unordered_map<std::string, uint32_t> m_constants;   // strings torch itself reuses
    uint64_t m_memoSize = 0;
    std::vector<std::string> m_where; // dict keys leading to the value being written

    [[noreturn]] void failHere(const std::string &what) const
    {
        std::string where;
        for (const auto &k : m_where)
            where += (where.empty() ? "" : "/") + k;
        fail(where.empty() ? what : what + " (at " + where + ")");
    }

    void op(char c) { bytes.push_back(c); }

    // BINPUT / LONG_BINPUT with the next memo index (Python: len(memo)).
    uint32_t memoize()
    {
        if (m_memoSize > 0xFFFFFFFFull)
            failHere("too many objects for the pickle memo");
        const auto index = uint32_t(m_memoSize++);
        if (index < 256) {
            op('q');
            bytes.push_back(char(index));
        } else {
            op('r');
            putLe(bytes, index, 4);
        }
        return index;
    }
    void memoGet(uint32_t index)
    {
        if (index < 256) {
            op('h');
            bytes.push_back(char(index));
        } else {
            op('j');
            putLe(bytes, index, 4);
        }
    }

    void writeInt(int64_t v)
    {
        if (v >= 0 && v <= 0xFF) {
            op('K');
            bytes.push_back(char(v));
        } else if (v >= 0 && v <= 0xFFFF) {
            op('M');
            putLe(bytes, uint64_t(v), 2);
        } else if (v >= std::numeric_limits<int32_t>::min() && v <= std::numeric_limits<int32_t>::max()) {
            op('J');
            putLe(bytes, uint64_t(uint32_t(int32_t(v))), 4);
        } else {
            // LONG1: shortest little-endian two's complement (pickle.encode_long).
            uint8_t b[8];
            for (int i = 0; i < 8; ++i)
                b[i] = uint8_t((uint64_t(v) >> (8 * i)) & 0xFF);
            int n = 8;
            while (n > 1 && ((b[n - 1] == 0x00 && !(b[n - 2] & 0x80)) || (b[n - 1] == 0xFF && (b[n - 2] & 0x80))))
                --n;
            op('\x8a');
            bytes.push_back(char(n));
            bytes.append(reinterpret_cast<const char *>(b), size_t(n));
        }
    }

    void writeFloat(double v)
    {
        uint64_t bits;
        std::memcpy(&bits, &v, 8);
        op('G');
        for (int i = 7; i >= 0; --i)
            bytes.push_back(char((bits >> (8 * i)) & 0xFF));
    }

    // BINUNICODE followed by BINPUT (Python memoizes every str).
    uint32_t writeString(const std::string &s)
    {
        if (!validUtf8(s))
            failHere("text is not valid UTF-8");
        if (s.size() > 0xFFFFFFFFull)
            failHere("text longer than 4 GiB");
        op('X');
        putLe(bytes, s.size(), 4);
        bytes += s;
        return memoize();
    }

    // A string torch writes from one shared Python object ('storage', 'cpu'): BINGET after
    // the first time.
    void writeConstant(const std::string &s)
    {
        auto it = m_constants.find(s);
        if (it != m_constants.end())
            return memoGet(it->second);
        m_constants.emplace(s, writeString(s));
    }

    void writeGlobal(const std::string &module, const std::string &name)
    {
        const std::string key = module + "\n" + name;
        auto it = m_globals.find(key);
        if (it != m_globals.end())
            return memoGet(it->second);
        if (module.empty() || name.empty() || module.find('\n') != std::string::npos ||
            name.find('\n') != std::string::npos || !validUtf8(module) || !validUtf8(name))
            failHere("invalid global name '" + module + "." + name + "'");
        op('c');
        bytes += key;
        op('\n');
        m_globals.emplace(key, memoize());
    }

    // save_tuple of a shape or stride: () is EMPTY_TUPLE (never memoized), 1-3 items use
    // TUPLE1-3, more MARK ... TUPLE; every non-empty tuple is memoized.
    void writeIntTuple(const std::vector<int64_t> &values)
    {
        if (values.empty()) {
            op(')');
            return;
        }
        if (values.size() > 3)
            op('(');
        for (int64_t v : values)
            writeInt(v);
        op(values.size() > 3 ? 't' : char(0x85 + values.size() - 1));
        memoize();
    }

    void batchSetItems(const PickleEntries &entries, size_t depth)
    {
        for (size_t start = 0; start < entries.size(); start += kBatch) {
            const size_t end = std::min(entries.size(), start + kBatch);
            if (end - start > 1)
                op('(');
            for (size_t i = start; i < end; ++i) {
                const auto &[key, value] = entries[i];
                if (!key || !value)
                    failHere("missing dict key or value (null node)");
                checkHashable(*key, 0);
                save(key.get(), depth + 1);
                const bool named = key->kind == PickleNode::Kind::String;
                if (named)
                    m_where.push_back(key->text);
                save(value.get(), depth + 1);
                if (named)
                    m_where.pop_back();
            }
            op(end - start > 1 ? 'u' : 's');
        }
    }

    void batchAppends(const std::vector<PickleNodePtr> &items, size_t depth)
    {
        for (size_t start = 0; start < items.size(); start += kBatch) {
            const size_t end = std::min(items.size(), start + kBatch);
            if (end - start > 1)
                op('(');
            for (size_t i = start; i < end; ++i)
                save(items[i].get(), depth + 1);
            op(end - start > 1 ? 'e' : 'a');
        }
    }

    void checkHashable(const PickleNode &key, size_t depth)
    {
        switch (key.kind) {
        case PickleNode::Kind::List:
        case PickleNode::Kind::Dict:
        case PickleNode::Kind::OrderedDict:
            failHere("a list or dict cannot be a dict key");
        case PickleNode::Kind::Tuple:
            if (depth > kMaxDepth)
                failHere("nesting too deep");
            for (const auto &item : key.items)
                if (item)
                    checkHashable(*item, depth + 1);
            break;
        default:
            break;
        }
    }

    void checkUniqueKeys(const PickleEntries &entries)
    {
        std::vector<const std::string *> keys;
        for (const auto &e : entries)
            if (e.first && e.first->kind == PickleNode::Kind::String)
                keys.push_back(&e.first->text);
        std::sort(keys.begin(), keys.end(), [](const std::string *a, const std::string *b) { return *a < *b; });
        for (size_t i = 1; i < keys.size(); ++i)
            if (*keys[i] == *keys[i - 1])
                failHere("duplicate dict key '" + *keys[i] + "'");
    }

    void writeTensor(const PickleNode &t)
    {
        int64_t numel = 1;
        for (int64_t d : t.shape) {
            if (d < 0)
                failHere("tensor shape " + describeShape(t.shape) + " has a negative size");
            if (d > 0 && numel > std::numeric_limits<int64_t>::max() / 4 / d)
                failHere("tensor shape " + describeShape(t.shape) + " is too large");
            numel *= d;
        }
        if (int64_t(t.data.size()) != numel)
            failHere("tensor of shape " + describeShape(t.shape) + " needs " + std::to_string(numel) + " values, has " +
                     std::to_string(t.data.size()));
        // Contiguous strides as torch computes them (a size-0 dimension counts as 1).
        std::vector<int64_t> strides(t.shape.size());
        int64_t stride = 1;
        for (size_t i = t.shape.size(); i-- > 0;) {
            strides[i] = stride;
            stride *= std::max<int64_t>(t.shape[i], 1);
        }

        // torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride,
        //                                 requires_grad, backward_hooks)
        writeGlobal("torch._utils", "_rebuild_tensor_v2");
        op('(');
        // persistent id ('storage', torch.FloatStorage, key, location, numel)
        op('(');
        writeConstant("storage");
        writeGlobal("torch", "FloatStorage");
        writeString(std::to_string(tensors.size()));
        tensors.push_back(&t);
        writeConstant("cpu");
        writeInt(numel);
        op('t');
        memoize();
        op('Q'); // BINPERSID
        writeInt(0);
        writeIntTuple(t.shape);
        writeIntTuple(strides);
        op('\x89');                                // requires_grad False
        writeGlobal("collections", "OrderedDict"); // backward_hooks = OrderedDict()
        op(')');
        op('R');
        memoize();
        op('t');
        memoize();
        op('R');
    }

    void save(const PickleNode *node, size_t depth)
    {
        if (!node)
            failHere("missing value (null node)");
        if (depth > kMaxDepth)
            failHere("values nested deeper than " + std::to_string(kMaxDepth) + " levels");
        if (auto it = m_memo.find(node); it != m_memo.end())
            return memoGet(it->second);

        using K = PickleNode::Kind;
        switch (node->kind) {
        case K::None:
            op('N');
            return;
        case K::Bool:
            op(node->boolValue ? '\x88' : '\x89');
            return;
        case K::Int:
            writeInt(node->intValue);
            return;
        case K::Float:
            writeFloat(node->floatValue);
            return;
        case K::String:
            m_memo.emplace(node, writeString(node->text));
            return;
        case K::Global:
            writeGlobal(node->text, node->name);
            return;
        case K::Tuple: {
            const auto &items = node->items;
            if (items.empty()) {
                op(')');
                return;
            }
            if (items.size() > 3)
                op('(');
            for (const auto &item : items)
                save(item.get(), depth + 1);
            op(items.size() > 3 ? 't' : char(0x85 + items.size() - 1));
            m_memo.emplace(node, memoize());
            return;
        }
        case K::List:
            op(']');
            m_memo.emplace(node, memoize());
            batchAppends(node->items, depth);
            return;
        case K::Dict:
            checkUniqueKeys(node->entries);
            op('}');
            m_memo.emplace(node, memoize());
            batchSetItems(node->entries, depth);
            return;
        case K::OrderedDict:
            // OrderedDict.__reduce__: (OrderedDict, (), vars(self) or None, None, items)
            checkUniqueKeys(node->entries);
            writeGlobal("collections", "OrderedDict");
            op(')');
            op('R');
            m_memo.emplace(node, memoize());
            batchSetItems(node->entries, depth);
            if (node->state) {
                save(node->state.get(), depth + 1);
                op('b');
            }
            return;
        case K::Object:
            // object.__reduce_ex__(2): copyreg.__newobj__(cls) then BUILD with __dict__
            // (no BUILD when __dict__ is empty: its state is then None).
            checkUniqueKeys(node->entries);
            writeGlobal(node->text, node->name);
            op(')');
            op('\x81');
            m_memo.emplace(node, memoize());
            if (!node->entries.empty()) {
                op('}');
                memoize();
                batchSetItems(node->entries, depth);
                op('b');
            }
            return;
        case K::Device:
            // torch.device.__reduce__: (torch.device, (type,) or (type, index))
            if (node->text.empty())
                failHere("device without a type");
            writeGlobal("torch", "device");
            writeString(node->text);
            if (node->intValue >= 0) {
                writeInt(node->intValue);
                op('\x86');
            } else {
                op('\x85');
            }
            memoize();
            op('R');
            m_memo.emplace(node, memoize());
            return;
        case K::TensorF32:
            writeTensor(*node);
            m_memo.emplace(node, memoize());
            return;
        }
        failHere("unknown value kind");
    }
};

// ---------------------------------------------------------------------------------------
// CRC-32 (ISO 3309, as zip uses), slicing by 8.

struct CrcTables {
    uint32_t t[8][256];
    CrcTables()
    {
        for (uint32_t i = 0; i < 256; ++i) {
            uint32_t c = i;
            for (int k = 0; k < 8; ++k)
                c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            t[0][i] = c;
        }
        for (uint32_t i = 0; i < 256; ++i)
            for (int s = 1; s < 8; ++s)
                t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xFF];
    }
};

uint32_t crc32Update(uint32_t crc, const uint8_t *p, size_t n)
{
    static const CrcTables tables;
    const auto &t = tables.t;
    crc = ~crc;
    while (n >= 8) {
        const uint32_t lo = (uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24) ^ crc;
        crc = t[7][lo & 0xFF] ^ t[6][(lo >> 8) & 0xFF] ^ t[5][(lo >> 16) & 0xFF] ^ t[4][lo >> 24] ^ t[3][p[4]] ^
              t[2][p[5]] ^ t[1][p[6]] ^ t[0][p[7]];
        p += 8;
        n -= 8;
    }
    while (n--)
        crc = t[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

// ---------------------------------------------------------------------------------------
// The zip container, laid out exactly as LibTorch's PyTorchStreamWriter (miniz in ZIP64 mode,
// no compression, no timestamps) writes it.

class FileSink {
public:
    explicit FileSink(int fd) : m_fd(fd) { m_buffer.reserve(kBuffer); }

    uint64_t position() const { return m_position; }

    void write(const void *data, size_t n)
    {
        const auto *p = static_cast<const char *>(data);
        if (n >= kBuffer / 2) {
            flush();
            writeAll(p, n);
        } else {
            if (m_buffer.size() + n > kBuffer)
                flush();
            m_buffer.insert(m_buffer.end(), p, p + n);
        }
        m_position += n;
    }
    void write(const std::string &s) { write(s.data(), s.size()); }

    void flush()
    {
        writeAll(m_buffer.data(), m_buffer.size());
        m_buffer.clear();
    }

private:
    static constexpr size_t kBuffer = 1 << 20;

    void writeAll(const char *p, size_t n)
    {
        while (n > 0) {
            const ssize_t w = ::write(m_fd, p, std::min<size_t>(n, size_t(1) << 30));
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                fail(std::string("write failed (") + std::strerror(errno) + ")");
            }
            p += w;
            n -= size_t(w);
        }
    }

    int m_fd;
    std::vector<char> m_buffer;
    uint64_t m_position = 0;
};

class ZipWriter {
public:
    ZipWriter(FileSink &out, std::string root) : m_out(out), m_prefix(std::move(root) + "/") {}

    void add(const std::string &name, const void *data, uint64_t size)
    {
        constexpr uint64_t k32 = 0xFFFFFFFFull;
        const std::string fullName = m_prefix + name;
        if (fullName.size() > 0xFFFF)
            fail("record name too long");
        const uint64_t offset = m_out.position();
        const bool bigSize = size >= k32, bigOffset = offset >= k32;

        // ZIP64 extended information (only where a field does not fit), then the "FB" field
        // whose payload pads the data start to a multiple of 64 (torch's getPadding).
        std::string localExtra;
        if (bigSize || bigOffset) {
            putLe(localExtra, 0x0001, 2);
            putLe(localExtra, (bigSize ? 16 : 0) + (bigOffset ? 8 : 0), 2);
            if (bigSize) {
                putLe(localExtra, size, 8);
                putLe(localExtra, 0, 8); // compressed size: not known yet to miniz
            }
            if (bigOffset)
                putLe(localExtra, offset, 8);
        }
        const uint64_t start = offset + 30 + fullName.size() + localExtra.size() + 4;
        const uint64_t padding = (kAlign - start % kAlign) % kAlign;
        localExtra += "FB";
        putLe(localExtra, padding, 2);
        localExtra.append(size_t(padding), 'Z');

        const uint16_t flags = size > 0 ? 0x0808 : 0x0800; // data descriptor, UTF-8 names
        std::string header;
        putLe(header, 0x04034b50, 4);
        putLe(header, 0, 2); // version needed (miniz: 0 when stored)
        putLe(header, flags, 2);
        putLe(header, 0, 2); // stored
        putLe(header, 0, 4); // time, date
        putLe(header, 0, 4); // crc, compressed and uncompressed size: in the descriptor
        putLe(header, 0, 4);
        putLe(header, 0, 4);
        putLe(header, fullName.size(), 2);
        putLe(header, localExtra.size(), 2);
        header += fullName;
        header += localExtra;
        m_out.write(header);

        uint32_t crc = 0;
        if (size > 0) {
            const auto *p = static_cast<const uint8_t *>(data);
            for (uint64_t done = 0; done < size;) {
                const size_t chunk = size_t(std::min<uint64_t>(size - done, uint64_t(1) << 26));
                crc = crc32Update(crc, p + done, chunk);
                m_out.write(p + done, chunk);
                done += chunk;
            }
            std::string descriptor;
            putLe(descriptor, 0x08074b50, 4);
            putLe(descriptor, crc, 4);
            const int width = (bigSize || bigOffset) ? 8 : 4;
            putLe(descriptor, size, width);
            putLe(descriptor, size, width);
            m_out.write(descriptor);
        }

        std::string centralExtra;
        if (bigSize || bigOffset) {
            putLe(centralExtra, 0x0001, 2);
            putLe(centralExtra, (bigSize ? 16 : 0) + (bigOffset ? 8 : 0), 2);
            if (bigSize) {
                putLe(centralExtra, size, 8);
                putLe(centralExtra, size, 8);
            }
            if (bigOffset)
                putLe(centralExtra, offset, 8);
        }
        putLe(m_central, 0x02014b50, 4);
        putLe(m_central, 0, 2); // version made by
        putLe(m_central, 0, 2); // version needed
        putLe(m_central, flags, 2);
        putLe(m_central, 0, 2);
        putLe(m_central, 0, 4);
        putLe(m_central, crc, 4);
        putLe(m_central, std::min(size, k32), 4);
        putLe(m_central, std::min(size, k32), 4);
        putLe(m_central, fullName.size(), 2);
        putLe(m_central, centralExtra.size(), 2);
        putLe(m_central, 0, 2); // comment
        putLe(m_central, 0, 2); // disk
        putLe(m_central, 0, 2); // internal attributes
        putLe(m_central, 0, 4); // external attributes
        putLe(m_central, std::min(offset, k32), 4);
        m_central += fullName;
        m_central += centralExtra;
        ++m_count;
    }

    void finish()
    {
        constexpr uint64_t k32 = 0xFFFFFFFFull;
        const uint64_t centralOffset = m_out.position();
        if (m_central.size() >= k32)
            fail("too many records");
        m_out.write(m_central);
        const uint64_t zip64End = m_out.position();
        std::string tail;
        putLe(tail, 0x06064b50, 4); // ZIP64 end of central directory
        putLe(tail, 44, 8);
        putLe(tail, 0x031E, 2);
        putLe(tail, 0x002D, 2);
        putLe(tail, 0, 4);
        putLe(tail, 0, 4);
        putLe(tail, m_count, 8);
        putLe(tail, m_count, 8);
        putLe(tail, m_central.size(), 8);
        putLe(tail, centralOffset, 8);
        putLe(tail, 0x07064b50, 4); // ZIP64 locator
        putLe(tail, 0, 4);
        putLe(tail, zip64End, 8);
        putLe(tail, 1, 4);
        putLe(tail, 0x06054b50, 4); // end of central directory
        putLe(tail, 0, 2);
        putLe(tail, 0, 2);
        putLe(tail, std::min<uint64_t>(m_count, 0xFFFF), 2);
        putLe(tail, std::min<uint64_t>(m_count, 0xFFFF), 2);
        putLe(tail, std::min<uint64_t>(m_central.size(), k32), 4);
        putLe(tail, std::min(centralOffset, k32), 4);
        putLe(tail, 0, 2);
        m_out.write(tail);
        m_out.flush();
    }

private:
    static constexpr uint64_t kAlign = 64;
    FileSink &m_out;
    std::string m_prefix;
    std::string m_central;
    uint64_t m_count = 0;
};

// The archive's root folder: torch's basename() of the path (last component, without the
// last extension).
std::string archiveName(const std::string &path)
{
    const size_t slash = path.find_last_of("/\\");
    const size_t start = slash == std::string::npos ? 0 : slash + 1;
    size_t end = path.size();
    for (size_t i = end; i > start; --i)
        if (path[i - 1] == '.') {
            end = i - 1;
            break;
        }
    return start >= path.size() ? std::string() : path.substr(start, end - start);
}

std::string errnoText(int err)
{
    return std::string(std::strerror(err));
}

// Unique temporary file next to `path`, created with O_EXCL so it never clobbers anything;
// permissions as for a new file (0666 less the umask).
int createTemporary(const std::string &path, std::string &tmpPath)
{
    static std::atomic<unsigned> counter{0};
    const size_t slash = path.find_last_of('/');
    const std::string dir = slash == std::string::npos ? std::string() : path.substr(0, slash + 1);
    std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
    if (base.size() > 180)
        base.resize(180);
    for (int attempt = 0; attempt < 100; ++attempt) {
        tmpPath = dir + "." + base + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
        const int fd = ::open(tmpPath.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0 || errno != EEXIST)
            return fd;
    }
    errno = EEXIST;
    return -1;
}

void syncFolderOf(const std::string &path)
{
    const size_t slash = path.find_last_of('/');
    const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)::fsync(fd); // best effort: the rename itself already happened
        ::close(fd);
    }
}

} // namespace

Status writeTorchSave(const std::string &path, const PickleNodePtr &root)
{
    const std::string context = path.empty() ? std::string("(empty path)") : path;
    if (path.empty())
        return Error("no file name given").withContext(context);
    const std::string rootName = archiveName(path);
    if (rootName.empty())
        return Error("cannot name the archive folder after this file name (torch.save needs a base name)")
            .withContext(context);
    if (!validUtf8(rootName))
        return Error("file name is not valid UTF-8").withContext(context);
    if (!root)
        return Error("nothing to save (null value)").withContext(context);
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
        return Error("is a folder, not a file").withContext(context);

    Pickler pickler;
    try {
        pickler.dump(*root);
    } catch (const Failure &f) {
        return Error("cannot save: " + f.message).withContext(context);
    } catch (const std::bad_alloc &) {
        return Error("out of memory while encoding the checkpoint").withContext(context);
    }

    std::string tmpPath;
    const int fd = createTemporary(path, tmpPath);
    if (fd < 0)
        return Error("cannot create a file in its folder (" + errnoText(errno) + ")").withContext(context);

    auto discard = [&](const std::string &why) {
        const int saved = errno;
        if (fd >= 0)
            ::close(fd);
        ::unlink(tmpPath.c_str());
        errno = saved;
        return Status(Error(why).withContext(context));
    };

    try {
        FileSink sink(fd);
        ZipWriter zip(sink, rootName);
        zip.add("data.pkl", pickler.bytes.data(), pickler.bytes.size());

        // torch.save writes storages in sorted key order ("0", "1", "10", "11", "2", ...).
        std::vector<std::pair<std::string, const PickleNode *>> storages;
        storages.reserve(pickler.tensors.size());
        for (size_t i = 0; i < pickler.tensors.size(); ++i)
            storages.emplace_back(std::to_string(i), pickler.tensors[i]);
        std::sort(storages.begin(), storages.end(), [](const auto &a, const auto &b) { return a.first < b.first; });
        const bool little = hostIsLittleEndian();
        std::vector<float> swapped;
        for (const auto &[key, tensor] : storages) {
            const float *values = tensor->data.data();
            if (!little) { // the format is little-endian
                swapped = tensor->data;
                for (float &f : swapped) {
                    uint32_t u;
                    std::memcpy(&u, &f, 4);
                    u = (u >> 24) | ((u >> 8) & 0xFF00u) | ((u << 8) & 0xFF0000u) | (u << 24);
                    std::memcpy(&f, &u, 4);
                }
                values = swapped.data();
            }
            zip.add("data/" + key, values, uint64_t(tensor->data.size()) * 4);
        }
        zip.add("version", "3\n", 2);
        zip.finish();
    } catch (const Failure &f) {
        return discard("cannot write: " + f.message);
    } catch (const std::bad_alloc &) {
        return discard("out of memory while writing");
    }

    if (::fsync(fd) != 0)
        return discard("cannot write: flushing to disk failed (" + errnoText(errno) + ")");
    if (::close(fd) != 0) {
        const int err = errno;
        ::unlink(tmpPath.c_str());
        return Error("cannot write: closing failed (" + errnoText(err) + ")").withContext(context);
    }
    if (::rename(tmpPath.c_str(), path.c_str()) != 0) {
        const int err = errno;
        ::unlink(tmpPath.c_str());
        return Error("cannot replace the file (" + errnoText(err) + ")").withContext(context);
    }
    syncFolderOf(path);
    return Status::success();
}

} // namespace cytosae::model
