#include "model/Pickle.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <sstream>
#include <unordered_map>

namespace cytosae::model {

const std::vector<std::string> &checkpointGlobals()
{
    static const std::vector<std::string> names = {
        // What torch.save writes for a state dict (DinoBloom-B, and CytoSAE's state_dict).
        "collections.OrderedDict",
        "torch._utils._rebuild_tensor_v2",
        "torch.FloatStorage",
        // CytoSAE's cfg object and the values in it.
        "src.sae_training.config.ViTSAERunnerConfig",
        "torch.device",
        "torch.float32",
        // The storage classes of the other float types the reader converts (docs/reference.md,
        // Checkpoint formats): type tags, like FloatStorage.
        "torch.DoubleStorage",
        "torch.HalfStorage",
        "torch.BFloat16Storage",
    };
    return names;
}

int scalarTypeSize(ScalarType type)
{
    switch (type) {
    case ScalarType::Float64:
    case ScalarType::Int64: return 8;
    case ScalarType::Float32:
    case ScalarType::Int32: return 4;
    case ScalarType::Float16:
    case ScalarType::BFloat16:
    case ScalarType::Int16: return 2;
    case ScalarType::Int8:
    case ScalarType::UInt8:
    case ScalarType::Bool: return 1;
    }
    return 1;
}

const char *scalarTypeName(ScalarType type)
{
    switch (type) {
    case ScalarType::Float32: return "float32";
    case ScalarType::Float64: return "float64";
    case ScalarType::Float16: return "float16";
    case ScalarType::BFloat16: return "bfloat16";
    case ScalarType::Int64: return "int64";
    case ScalarType::Int32: return "int32";
    case ScalarType::Int16: return "int16";
    case ScalarType::Int8: return "int8";
    case ScalarType::UInt8: return "uint8";
    case ScalarType::Bool: return "bool";
    }
    return "?";
}

const PyValue *PyValue::get(const std::string &key) const
{
    if (kind != Kind::Dict && kind != Kind::Object)
        return nullptr;
    for (const auto &[k, v] : dict)
        if (k && k->kind == Kind::String && k->text == key)
            return v.get();
    return nullptr;
}

std::string PyValue::describe() const
{
    std::ostringstream out;
    switch (kind) {
    case Kind::None: return "None";
    case Kind::Bool: return boolValue ? "True" : "False";
    case Kind::Int: out << "int " << intValue; break;
    case Kind::Float: out << "float " << floatValue; break;
    case Kind::String: out << "str '" << text.substr(0, 60) << "'"; break;
    case Kind::Bytes: out << "bytes of length " << text.size(); break;
    case Kind::Tuple: out << "tuple of " << items.size(); break;
    case Kind::List: out << "list of " << items.size(); break;
    case Kind::Dict: out << "dict with " << dict.size() << " entries"; break;
    case Kind::Global: out << "reference to " << text; break;
    case Kind::Object: out << "object of class " << text; break;
    case Kind::Storage: out << "storage"; break;
    case Kind::Tensor: out << "tensor"; break;
    case Kind::Mark: out << "mark"; break;
    }
    return out.str();
}

namespace {

bool isMutable(PyValue::Kind k)
{
    return k == PyValue::Kind::List || k == PyValue::Kind::Dict || k == PyValue::Kind::Object;
}

struct ParseError {
    std::string message;
    std::string detail; // after the byte position: "<message> at byte N: <detail>"
};

// Text from the stream, fit for an error message.
std::string printable(const std::string &text)
{
    std::string out;
    for (char c : text.substr(0, 120))
        out += (c >= 0x20 && c < 0x7f) ? c : '?';
    if (text.size() > 120)
        out += "...";
    return out;
}

class Parser {
public:
    Parser(const uint8_t *data, size_t size, const PickleLimits &limits)
        : m_data(data), m_size(size), m_limits(limits)
    {
    }

    Result<PyRef> run()
    {
        try {
            return loop();
        } catch (const ParseError &e) {
            return Error(e.message + " at byte " + std::to_string(m_opStart) +
                         (e.detail.empty() ? "" : ": " + e.detail));
        } catch (const std::bad_alloc &) {
            return Error("out of memory while reading the pickle at byte " + std::to_string(m_opStart));
        }
    }

private:
    [[noreturn]] void fail(const std::string &msg, const std::string &detail = {}) { throw ParseError{msg, detail}; }

    // Counts memory the values will take before it is taken (see PickleLimits::maxBytes).
    void charge(size_t bytes)
    {
        if (bytes > m_limits.maxBytes - std::min(m_bytes, m_limits.maxBytes))
            fail("the pickle needs more than " + std::to_string(m_limits.maxBytes >> 20) + " MB of memory",
                 "far more than a checkpoint's pickle needs");
        m_bytes += bytes;
    }
    static constexpr size_t kRefBytes = sizeof(PyRef);
    static constexpr size_t kValueBytes = sizeof(PyValue) + 32; // with make_shared's control block

    // A GLOBAL or STACK_GLOBAL: only the allow-listed names, anywhere in the stream.
    PyRef global(const std::string &module, const std::string &name)
    {
        const std::string full = module + "." + name;
        const auto &allowed = m_limits.allowedGlobals;
        if (name.find('.') != std::string::npos || std::find(allowed.begin(), allowed.end(), full) == allowed.end())
            fail("refusing global '" + printable(full) + "'",
                 "not one of the names torch.save and the published checkpoints use");
        PyRef g = make(PyValue::Kind::Global);
        charge(full.size());
        g->text = full;
        return g;
    }

    // ---- reading primitives ----
    const uint8_t *take(size_t n)
    {
        if (n > m_size - m_pos)
            fail("unexpected end of data (truncated pickle)");
        const uint8_t *p = m_data + m_pos;
        m_pos += n;
        return p;
    }
    uint8_t u8() { return *take(1); }
    uint32_t u16le()
    {
        const uint8_t *p = take(2);
        return uint32_t(p[0]) | (uint32_t(p[1]) << 8);
    }
    uint32_t u32le()
    {
        const uint8_t *p = take(4);
        return uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 24);
    }
    uint64_t u64le()
    {
        const uint8_t *p = take(8);
        uint64_t v = 0;
        for (int i = 7; i >= 0; --i)
            v = (v << 8) | p[i];
        return v;
    }
    std::string bytes(uint64_t n)
    {
        if (n > m_limits.maxStringBytes)
            fail("string of " + std::to_string(n) + " bytes exceeds the limit");
        const uint8_t *p = take(size_t(n));
        charge(size_t(n));
        return std::string(reinterpret_cast<const char *>(p), size_t(n));
    }
    std::string line()
    {
        size_t start = m_pos;
        while (m_pos < m_size && m_data[m_pos] != '\n') {
            if (m_pos - start > 1024)
                fail("GLOBAL name too long");
            ++m_pos;
        }
        if (m_pos >= m_size)
            fail("unexpected end of data in GLOBAL");
        std::string s(reinterpret_cast<const char *>(m_data + start), m_pos - start);
        ++m_pos;
        return s;
    }

    // ---- values ----
    PyRef make(PyValue::Kind kind)
    {
        if (++m_created > m_limits.maxItems)
            fail("too many values");
        charge(kValueBytes);
        auto v = std::make_shared<PyValue>();
        v->kind = kind;
        v->serial = ++m_serial;
        if (isMutable(kind))
            v->minMutableSerial = v->serial;
        return v;
    }
    // Records that `child` now sits inside `parent`; refuses too-deep nesting and, for
    // mutable parents, anything that could close a reference cycle: a mutable container may
    // only receive values whose mutable containers were all created after it.
    void adopt(PyValue &parent, const PyRef &child)
    {
        if (!child)
            fail("missing value");
        if (child->kind == PyValue::Kind::Mark)
            fail("MARK used as a value");
        if (child->depth + 1 > m_limits.maxDepth)
            fail("nesting deeper than " + std::to_string(m_limits.maxDepth));
        if (isMutable(parent.kind) && child->minMutableSerial <= parent.serial)
            fail("self-referencing structure is not supported");
        parent.depth = std::max(parent.depth, child->depth + 1);
        parent.minMutableSerial = std::min(parent.minMutableSerial, child->minMutableSerial);
    }

    void push(PyRef v) { m_stack.push_back(std::move(v)); }
    PyRef pop()
    {
        if (m_stack.size() <= markFloor())
            fail("stack underflow");
        PyRef v = std::move(m_stack.back());
        m_stack.pop_back();
        return v;
    }
    PyRef &top()
    {
        if (m_stack.size() <= markFloor())
            fail("stack underflow");
        return m_stack.back();
    }
    size_t markFloor() const { return m_marks.empty() ? 0 : m_marks.back(); }
    std::vector<PyRef> popMark()
    {
        if (m_marks.empty())
            fail("no MARK on the stack");
        size_t m = m_marks.back();
        m_marks.pop_back();
        std::vector<PyRef> out(std::make_move_iterator(m_stack.begin() + ptrdiff_t(m)),
                               std::make_move_iterator(m_stack.end()));
        m_stack.resize(m);
        return out;
    }

    PyRef makeTuple(std::vector<PyRef> items)
    {
        PyRef t = make(PyValue::Kind::Tuple);
        charge(items.size() * kRefBytes);
        for (auto &i : items)
            adopt(*t, i);
        t->items = std::move(items);
        return t;
    }
    PyRef makeInt(int64_t v)
    {
        PyRef r = make(PyValue::Kind::Int);
        r->intValue = v;
        return r;
    }

    void memoPut(uint64_t index)
    {
        if (index >= m_limits.maxMemo)
            fail("memo index " + std::to_string(index) + " out of range");
        if (index >= m_memo.size()) {
            charge((size_t(index) + 1 - m_memo.size()) * kRefBytes);
            m_memo.resize(size_t(index) + 1);
        }
        m_memo[size_t(index)] = top();
    }
    void memoGet(uint64_t index)
    {
        if (index >= m_memo.size() || !m_memo[size_t(index)])
            fail("memo index " + std::to_string(index) + " was never stored");
        charge(kRefBytes);
        push(m_memo[size_t(index)]);
    }

    void setItems(PyValue &target, std::vector<PyRef> &kv)
    {
        if (kv.size() % 2 != 0)
            fail("odd number of items for SETITEMS");
        if (target.kind != PyValue::Kind::Dict)
            fail("SETITEM on " + target.describe());
        charge(kv.size() * kRefBytes);
        for (size_t i = 0; i < kv.size(); i += 2) {
            adopt(target, kv[i]);
            adopt(target, kv[i + 1]);
            // Python dict semantics: a repeated key replaces the value. The string keys of
            // each dict are indexed (by the dict's serial, never reused), so a dict of many
            // keys costs linear time, not quadratic.
            if (kv[i]->kind == PyValue::Kind::String) {
                charge(kv[i]->text.size() + 64);
                auto [at, added] = m_dictKeys[target.serial].emplace(kv[i]->text, target.dict.size());
                if (!added) {
                    target.dict[at->second].second = kv[i + 1];
                    continue;
                }
            }
            target.dict.emplace_back(kv[i], kv[i + 1]);
        }
    }
    void appendItems(PyValue &target, std::vector<PyRef> &items)
    {
        if (target.kind != PyValue::Kind::List)
            fail("APPEND on " + target.describe());
        charge(items.size() * kRefBytes);
        for (auto &i : items) {
            adopt(target, i);
            target.items.push_back(i);
        }
    }

    static bool storageType(const std::string &name, ScalarType &type)
    {
        static const std::pair<const char *, ScalarType> table[] = {
            {"torch.FloatStorage", ScalarType::Float32},   {"torch.DoubleStorage", ScalarType::Float64},
            {"torch.HalfStorage", ScalarType::Float16},    {"torch.BFloat16Storage", ScalarType::BFloat16},
            {"torch.LongStorage", ScalarType::Int64},      {"torch.IntStorage", ScalarType::Int32},
            {"torch.ShortStorage", ScalarType::Int16},     {"torch.CharStorage", ScalarType::Int8},
            {"torch.ByteStorage", ScalarType::UInt8},      {"torch.BoolStorage", ScalarType::Bool},
        };
        for (const auto &[n, t] : table)
            if (name == n) {
                type = t;
                return true;
            }
        return false;
    }

    PyRef persistentLoad(const PyRef &pid)
    {
        // ('storage', <storage class>, key, location, numel)
        if (pid->kind != PyValue::Kind::Tuple || pid->items.size() != 5)
            fail("unsupported persistent id (" + pid->describe() + ")");
        const auto &it = pid->items;
        if (it[0]->kind != PyValue::Kind::String || it[0]->text != "storage")
            fail("unsupported persistent id kind");
        if (it[1]->kind != PyValue::Kind::Global)
            fail("storage type is not a class reference");
        ScalarType type;
        if (!storageType(it[1]->text, type))
            fail("unsupported storage type " + it[1]->text);
        if (it[2]->kind != PyValue::Kind::String || it[3]->kind != PyValue::Kind::String)
            fail("storage key or location is not a string");
        if (it[4]->kind != PyValue::Kind::Int || it[4]->intValue < 0)
            fail("storage size is not a non-negative integer");
        const std::string &key = it[2]->text;
        if (key.empty() || key.size() > 64 || key.find('/') != std::string::npos || key.find("..") != std::string::npos)
            fail("invalid storage key");
        PyRef s = make(PyValue::Kind::Storage);
        s->tensor.storageKey = key;
        s->tensor.dtype = type;
        s->tensor.location = it[3]->text;
        s->tensor.storageNumel = it[4]->intValue;
        return s;
    }

    static bool intTuple(const PyValue &v, std::vector<int64_t> &out)
    {
        if (v.kind != PyValue::Kind::Tuple && v.kind != PyValue::Kind::List)
            return false;
        out.clear();
        for (const auto &i : v.items) {
            if (i->kind != PyValue::Kind::Int)
                return false;
            out.push_back(i->intValue);
        }
        return true;
    }

    PyRef rebuildTensor(const PyRef &args)
    {
        // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
        if (args->kind != PyValue::Kind::Tuple || args->items.size() < 4)
            fail("malformed tensor record");
        const auto &a = args->items;
        if (a[0]->kind != PyValue::Kind::Storage)
            fail("tensor without storage");
        if (a[1]->kind != PyValue::Kind::Int || a[1]->intValue < 0)
            fail("invalid tensor storage offset");
        PyRef t = make(PyValue::Kind::Tensor);
        t->tensor = a[0]->tensor;
        t->tensor.storageOffset = a[1]->intValue;
        if (!intTuple(*a[2], t->tensor.sizes) || !intTuple(*a[3], t->tensor.strides))
            fail("invalid tensor size or stride");
        if (t->tensor.sizes.size() != t->tensor.strides.size() || t->tensor.sizes.size() > 16)
            fail("tensor size and stride disagree");
        // Every element addressed by the view must lie inside the storage.
        int64_t maxIndex = t->tensor.storageOffset;
        bool empty = false;
        for (size_t d = 0; d < t->tensor.sizes.size(); ++d) {
            int64_t n = t->tensor.sizes[d], s = t->tensor.strides[d];
            if (n < 0 || s < 0)
                fail("negative tensor size or stride");
            if (n == 0)
                empty = true;
            else if (s > 0 && (n - 1) > (std::numeric_limits<int64_t>::max() - maxIndex) / s)
                fail("tensor view overflows");
            else
                maxIndex += (n - 1) * s;
        }
        if (!empty && maxIndex >= t->tensor.storageNumel)
            fail("tensor view reaches past its storage (" + std::to_string(maxIndex + 1) + " > " +
                 std::to_string(t->tensor.storageNumel) + " elements)");
        // A view with more elements than its storage repeats elements (stride 0 or overlapping
        // strides): torch.save writes such a view as it is, but no checkpoint holds one, and
        // materialising it would cost memory out of all proportion to the file.
        int64_t numel = 1;
        for (int64_t n : t->tensor.sizes) {
            if (n != 0 && numel > std::numeric_limits<int64_t>::max() / n)
                fail("tensor size overflows");
            numel *= n;
        }
        if (numel > t->tensor.storageNumel)
            fail("tensor of " + std::to_string(numel) + " elements is a view that repeats the " +
                     std::to_string(t->tensor.storageNumel) + " elements of its storage",
                 "checkpoints do not contain stride-0 or overlapping views");
        return t;
    }

    PyRef reduce(const PyRef &callable, const PyRef &args)
    {
        if (args->kind != PyValue::Kind::Tuple)
            fail("REDUCE arguments are not a tuple");
        if (callable->kind == PyValue::Kind::Global) {
            const std::string &name = callable->text;
            if (name == "torch._utils._rebuild_tensor_v2" || name == "torch._utils._rebuild_tensor")
                return rebuildTensor(args);
            if (name == "torch._utils._rebuild_parameter" || name == "torch._utils._rebuild_parameter_with_state") {
                if (args->items.empty() || args->items[0]->kind != PyValue::Kind::Tensor)
                    fail("malformed parameter record");
                return args->items[0];
            }
            if (name == "collections.OrderedDict") {
                PyRef d = make(PyValue::Kind::Dict);
                return d;
            }
        }
        PyRef obj = make(PyValue::Kind::Object);
        obj->text = callable->kind == PyValue::Kind::Global ? callable->text : std::string("<unknown>");
        adopt(*obj, args);
        charge(obj->text.size() + args->items.size() * kRefBytes);
        obj->items = args->items;
        return obj;
    }

    void build()
    {
        PyRef state = pop();
        PyRef &obj = top();
        switch (obj->kind) {
        case PyValue::Kind::Object:
            if (state->kind == PyValue::Kind::Dict) {
                charge(state->dict.size() * 2 * kRefBytes); // the object keeps a copy
                for (auto &[k, v] : state->dict) {
                    adopt(*obj, k);
                    adopt(*obj, v);
                }
                obj->dict = state->dict;
            } else {
                adopt(*obj, state);
                obj->state = state;
            }
            break;
        default:
            // OrderedDict `_metadata`, tensor flags: nothing we need.
            break;
        }
    }

    PyRef loop()
    {
        while (true) {
            m_opStart = m_pos;
            const uint8_t op = u8();
            switch (op) {
            case 0x80: // PROTO
                if (u8() > 5)
                    fail("unsupported pickle protocol");
                break;
            case 0x95: // FRAME
                u64le();
                break;
            case '.': { // STOP
                if (m_stack.size() != 1 || !m_marks.empty())
                    fail("malformed pickle end");
                return m_stack.back();
            }
            case '(': // MARK
                if (m_marks.size() >= m_limits.maxDepth)
                    fail("too many nested MARKs");
                m_marks.push_back(m_stack.size());
                break;
            case '}': push(make(PyValue::Kind::Dict)); break;
            case ']': push(make(PyValue::Kind::List)); break;
            case ')': push(makeTuple({})); break;
            case 'N': push(make(PyValue::Kind::None)); break;
            case 0x88:
            case 0x89: {
                PyRef b = make(PyValue::Kind::Bool);
                b->boolValue = op == 0x88;
                push(b);
                break;
            }
            case 'J': push(makeInt(int32_t(u32le()))); break;
            case 'K': push(makeInt(u8())); break;
            case 'M': push(makeInt(u16le())); break;
            case 0x8a: { // LONG1
                uint8_t n = u8();
                if (n > 8)
                    fail("integer too large");
                const uint8_t *p = take(n);
                uint64_t v = 0;
                for (int i = n - 1; i >= 0; --i)
                    v = (v << 8) | p[i];
                if (n > 0 && n < 8 && (p[n - 1] & 0x80))
                    v |= ~uint64_t(0) << (8 * n);
                push(makeInt(int64_t(v)));
                break;
            }
            case 'G': { // BINFLOAT, big-endian
                const uint8_t *p = take(8);
                uint64_t bits = 0;
                for (int i = 0; i < 8; ++i)
                    bits = (bits << 8) | p[i];
                PyRef f = make(PyValue::Kind::Float);
                std::memcpy(&f->floatValue, &bits, 8);
                push(f);
                break;
            }
            case 'X': // BINUNICODE
            case 0x8c: // SHORT_BINUNICODE
            case 0x8d: // BINUNICODE8
            case 'T': // BINSTRING
            case 'U': // SHORT_BINSTRING
            {
                uint64_t n = (op == 0x8c || op == 'U') ? u8() : (op == 0x8d ? u64le() : u32le());
                PyRef s = make(PyValue::Kind::String);
                s->text = bytes(n);
                push(s);
                break;
            }
            case 'B': // BINBYTES
            case 'C': // SHORT_BINBYTES
            case 0x8e: // BINBYTES8
            {
                uint64_t n = op == 'C' ? u8() : (op == 0x8e ? u64le() : u32le());
                PyRef s = make(PyValue::Kind::Bytes);
                s->text = bytes(n);
                push(s);
                break;
            }
            case 'c': { // GLOBAL: never resolved, only named
                std::string module = line();
                std::string name = line();
                push(global(module, name));
                break;
            }
            case 0x93: { // STACK_GLOBAL
                PyRef name = pop();
                PyRef module = pop();
                if (!module->isString() || !name->isString())
                    fail("STACK_GLOBAL needs two strings");
                if (module->text.size() > 1024 || name->text.size() > 1024)
                    fail("GLOBAL name too long");
                push(global(module->text, name->text));
                break;
            }
            case 'q': memoPut(u8()); break;
            case 'r': memoPut(u32le()); break;
            case 0x94: memoPut(m_memo.size()); break;
            case 'h': memoGet(u8()); break;
            case 'j': memoGet(u32le()); break;
            case 't': push(makeTuple(popMark())); break;
            case 0x85: {
                PyRef a = pop();
                push(makeTuple({a}));
                break;
            }
            case 0x86: {
                PyRef b = pop();
                PyRef a = pop();
                push(makeTuple({a, b}));
                break;
            }
            case 0x87: {
                PyRef c = pop();
                PyRef b = pop();
                PyRef a = pop();
                push(makeTuple({a, b, c}));
                break;
            }
            case 'l': { // LIST
                auto items = popMark();
                PyRef l = make(PyValue::Kind::List);
                appendItems(*l, items);
                push(l);
                break;
            }
            case 'd': { // DICT
                auto kv = popMark();
                PyRef d = make(PyValue::Kind::Dict);
                setItems(*d, kv);
                push(d);
                break;
            }
            case 'a': { // APPEND
                std::vector<PyRef> items{pop()};
                appendItems(*top(), items);
                break;
            }
            case 'e': { // APPENDS
                auto items = popMark();
                appendItems(*top(), items);
                break;
            }
            case 's': { // SETITEM
                PyRef v = pop();
                PyRef k = pop();
                std::vector<PyRef> kv{k, v};
                setItems(*top(), kv);
                break;
            }
            case 'u': { // SETITEMS
                auto kv = popMark();
                setItems(*top(), kv);
                break;
            }
            case 'R': { // REDUCE
                PyRef args = pop();
                PyRef callable = pop();
                push(reduce(callable, args));
                break;
            }
            case 0x81: { // NEWOBJ
                PyRef args = pop();
                PyRef cls = pop();
                if (cls->kind != PyValue::Kind::Global)
                    fail("NEWOBJ of a non-class");
                if (args->kind != PyValue::Kind::Tuple)
                    fail("NEWOBJ arguments are not a tuple");
                PyRef obj = make(PyValue::Kind::Object);
                obj->text = cls->text;
                adopt(*obj, args);
                charge(obj->text.size() + args->items.size() * kRefBytes);
                obj->items = args->items;
                push(obj);
                break;
            }
            case 'b': build(); break;
            case 'Q': { // BINPERSID
                PyRef pid = pop();
                push(persistentLoad(pid));
                break;
            }
            case '0': pop(); break;
            case '1': popMark(); break;
            case '2':
                charge(kRefBytes);
                push(top());
                break;
            default: {
                char hex[8];
                std::snprintf(hex, sizeof hex, "0x%02x", op);
                fail(std::string("unsupported pickle opcode ") + hex);
            }
            }
            if (m_stack.size() > m_limits.maxItems)
                fail("stack too large");
        }
    }

    const uint8_t *m_data;
    size_t m_size;
    size_t m_pos = 0;
    size_t m_opStart = 0;
    PickleLimits m_limits;
    std::vector<PyRef> m_stack;
    std::vector<size_t> m_marks;
    std::vector<PyRef> m_memo;
    size_t m_created = 0;
    size_t m_bytes = 0; // charged so far
    std::unordered_map<uint64_t, std::unordered_map<std::string, size_t>> m_dictKeys; // serial -> key -> entry
    uint64_t m_serial = 0;
};

} // namespace

Result<PyRef> parsePickle(const uint8_t *data, size_t size, const PickleLimits &limits)
{
    if (!data || size == 0)
        return Error("empty pickle");
    return Parser(data, size, limits).run();
}

} // namespace cytosae::model
