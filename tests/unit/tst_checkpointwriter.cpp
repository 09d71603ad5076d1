// The torch.save-compatible checkpoint writer (core/model/CheckpointWriter.h):
// - what it writes reads back through LibTorch's PyTorchStreamReader (the app's zip reader)
//   and our pickle reader, with every value, class name, tensor view and data byte intact;
// - the zip layout (root folder, 64-byte aligned data, CRCs, ZIP64 end records) checked by
//   hand, and byte-identical to what LibTorch's own PyTorchStreamWriter makes of the same
//   records;
// - the CytoSAE fixture (written by torch.save in torch 1.13) is reproduced byte for byte;
// - Python's zipfile, pickletools and pickle.Unpickler (stub classes instead of torch)
//   load it to the same values;
// - failures name the path and leave no partial file.

#include "model/CheckpointWriter.h"
#include "model/Pickle.h"

#include <caffe2/serialize/inline_container.h>

#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QTemporaryDir>
#include <QtTest>

#include <sys/resource.h>

#include <cmath>
#include <csignal>
#include <cstring>
#include <functional>
#include <limits>
#include <map>

using namespace cytosae;
using namespace cytosae::model;
using caffe2::serialize::PyTorchStreamReader;

namespace {

const char kSaeFixture[] = "final_sparse_autoencoder_dinov2_vitb14_-2_resid_256.cpu.pt";

QString fixture(const QString &name)
{
    return QStringLiteral(CYTOSAE_TEST_DATA "/fixtures/") + name;
}

QByteArray readFile(const QString &path)
{
    QFile f(path);
    if (!f.open(QIODevice::ReadOnly))
        return {};
    return f.readAll();
}

std::string record(PyTorchStreamReader &reader, const std::string &name)
{
    at::DataPtr data;
    size_t n = 0;
    std::tie(data, n) = reader.getRecord(name);
    return n ? std::string(static_cast<const char *>(data.get()), n) : std::string();
}

std::vector<float> ramp(size_t n, float start, float step)
{
    std::vector<float> v(n);
    for (size_t i = 0; i < n; ++i)
        v[i] = start + step * float(i) + (i % 3 == 0 ? 1e-7f : 0.f);
    return v;
}

// Bitwise CRC-32, independent of the writer's table implementation.
uint32_t referenceCrc(const char *p, size_t n)
{
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; ++i) {
        crc ^= uint8_t(p[i]);
        for (int k = 0; k < 8; ++k)
            crc = (crc & 1) ? (crc >> 1) ^ 0xEDB88320u : crc >> 1;
    }
    return ~crc;
}

uint64_t le(const QByteArray &b, qsizetype at, int bytes)
{
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; --i)
        v = (v << 8) | uint8_t(b[at + i]);
    return v;
}

const PyValue *child(const PyValue *v, const std::string &key)
{
    return v ? v->get(key) : nullptr;
}

std::vector<int64_t> contiguousStrides(const std::vector<int64_t> &shape)
{
    std::vector<int64_t> s(shape.size());
    int64_t acc = 1;
    for (size_t i = shape.size(); i-- > 0;) {
        s[i] = acc;
        acc *= std::max<int64_t>(shape[i], 1);
    }
    return s;
}

// ---- A checkpoint that touches every value kind and opcode path ----

struct Sample {
    PickleNodePtr root;
};

// Our reader refuses names other than the published checkpoints' (checkpointGlobals()); the
// sample also holds a plain object of a made-up class, to cover the writer's NEWOBJ path.
PickleLimits sampleLimits()
{
    PickleLimits limits;
    limits.allowedGlobals.push_back("pkg.mod.Empty");
    return limits;
}

Sample makeSample()
{
    Sample s;
    const auto wEnc = ramp(15, -1.f, 0.125f);
    const float scalar = 3.25f;
    const auto sharedTensor = py::tensorF32({2}, ramp(2, 9.f, 1.f));
    const auto sharedList = py::list({py::integer(1), py::text("x")});

    auto cfg = py::object(
        "src.sae_training.config", "ViTSAERunnerConfig",
        {{"custom_clip_ckpt_path", py::none()},
         {"image_width", py::integer(224)},
         {"model_name", py::text("dinov2_vitb14")},
         {"block_layer", py::integer(-2)},
         {"d_in", py::integer(768)},
         {"store_size", py::integer(960)},
         {"max_batch", py::integer(65536)},
         {"total_training_tokens", py::integer(2'000'000'000'000)},
         {"neg_big", py::integer(-3'000'000'000)},
         {"int_min", py::integer(std::numeric_limits<int64_t>::min())},
         {"int_max", py::integer(std::numeric_limits<int64_t>::max())},
         {"create_dataloader", py::boolean(true)},
         {"log_to_wandb", py::boolean(false)},
         {"device", py::device("cuda")},
         {"device0", py::device("cuda", 0)},
         {"dtype", py::global("torch", "float32")},
         {"l1_coefficient", py::real(8e-05)},
         {"negative_zero", py::real(-0.0)},
         {"infinity", py::real(std::numeric_limits<double>::infinity())},
         {"run_name", py::text("Zellkern \xc2\xb5m \xe2\x80\x93 \xe7\xb4\xb0\xe8\x83\x9e \xf0\x9f\xa7\xab")}});

    auto version = py::text("version");
    auto metaEntry = [&] { return py::dict(PickleEntries{{version, py::integer(1)}}); };
    auto metadata = py::orderedDict({{"", metaEntry()}, {"hook_sae_in", metaEntry()}, {"hook_sae_out", metaEntry()}});
    auto stateDict = py::orderedDict({{"W_enc", py::tensorF32({3, 5}, wEnc.data())},
                                      {"b_enc", py::tensorF32({5}, ramp(5, 0.5f, -0.25f))},
                                      {"W_dec", py::tensorF32({5, 3}, ramp(15, 2.f, -0.5f))},
                                      {"b_dec", py::tensorF32({3}, ramp(3, 0.f, 1.f))}},
                                     py::dict({{"_metadata", metadata}}));

    std::vector<PickleNodePtr> many;
    for (int i = 0; i < 2500; ++i)
        many.push_back(py::integer(i * 7));
    PickleFields wide;
    for (int i = 0; i < 1001; ++i)
        wide.emplace_back("k" + std::to_string(i), py::integer(i));

    auto misc =
        py::dict({{"scalar", py::tensorF32({}, &scalar)},
                  {"empty", py::tensorF32({0, 4}, nullptr)},
                  {"four_d", py::tensorF32({2, 3, 1, 2}, ramp(12, -3.f, 0.5f))},
                  {"tuple0", py::tuple({})},
                  {"tuple2", py::tuple({py::integer(1), py::real(2.5)})},
                  {"tuple3", py::tuple({py::none(), py::boolean(true), py::text("three")})},
                  {"tuple4", py::tuple({py::integer(1), py::integer(2), py::integer(3), py::integer(4)})},
                  {"one", py::list({py::integer(7)})},
                  {"many", py::list(many)},
                  {"wide", py::dict(wide)},
                  {"shared", py::tuple({sharedList, sharedList})},
                  {"same_tensor", py::tuple({sharedTensor, sharedTensor})},
                  {"int_keys", py::dict(PickleEntries{{py::integer(1), py::text("a")},
                                                      {py::tuple({py::integer(1), py::integer(2)}), py::none()}})},
                  {"plain_object", py::object("pkg.mod", "Empty", {})},
                  {"ordered_plain", py::orderedDict(PickleFields{})}});

    s.root = py::dict({{"cfg", cfg}, {"state_dict", stateDict}, {"misc", misc}});
    return s;
}

// ---- The value tree as Python should see it (tagged JSON, see kPythonCheck) ----

struct Expect {
    std::map<const PickleNode *, int> ids;
    std::map<const PickleNode *, QString> keys;
    int nextId = 0;
    int nextKey = 0;

    static QString bigEndianHex(double v)
    {
        uint64_t bits;
        std::memcpy(&bits, &v, 8);
        return QStringLiteral("%1").arg(qulonglong(bits), 16, 16, QLatin1Char('0'));
    }

    QJsonArray items(const PickleEntries &entries)
    {
        QJsonArray out;
        for (const auto &[k, v] : entries) {
            QJsonValue key = value(*k); // keys first, as Python's conversion does
            out.append(QJsonArray{key, value(*v)});
        }
        return out;
    }

    QJsonValue value(const PickleNode &n)
    {
        using K = PickleNode::Kind;
        const bool tracked = n.kind == K::List || n.kind == K::Dict || n.kind == K::OrderedDict ||
                             n.kind == K::Object || n.kind == K::Device || n.kind == K::TensorF32 ||
                             (n.kind == K::Tuple && !n.items.empty());
        if (tracked) {
            auto it = ids.find(&n);
            if (it != ids.end())
                return QJsonObject{{"ref", it->second}};
            ids[&n] = nextId++;
        }
        const int id = tracked ? ids[&n] : -1;
        switch (n.kind) {
        case K::None:
            return QJsonValue::Null;
        case K::Bool:
            return n.boolValue;
        case K::Int:
            return QJsonObject{{"i", QString::number(qlonglong(n.intValue))}};
        case K::Float:
            return QJsonObject{{"f", bigEndianHex(n.floatValue)}};
        case K::String:
            return QJsonObject{{"s", QString::fromStdString(n.text)}};
        case K::Global:
            return QJsonObject{{"global", QString::fromStdString(n.text + "." + n.name)}};
        case K::Tuple:
        case K::List: {
            QJsonArray a;
            for (const auto &i : n.items)
                a.append(value(*i));
            if (n.kind == K::Tuple && n.items.empty())
                return QJsonObject{{"tuple", a}};
            return QJsonObject{{n.kind == K::Tuple ? "tuple" : "list", a}, {"id", id}};
        }
        case K::Dict:
            return QJsonObject{{"dict", items(n.entries)}, {"id", id}};
        case K::OrderedDict: {
            QJsonObject o{{"odict", items(n.entries)}, {"id", id}};
            if (n.state)
                o["attrs"] = value(*n.state);
            return o;
        }
        case K::Object:
            return QJsonObject{
                {"object", QString::fromStdString(n.text + "." + n.name)}, {"fields", items(n.entries)}, {"id", id}};
        case K::Device: {
            QJsonArray a{QString::fromStdString(n.text)};
            if (n.intValue >= 0)
                a.append(QString::number(n.intValue));
            return QJsonObject{{"device", a}, {"id", id}};
        }
        case K::TensorF32: {
            const QString key = QString::number(nextKey++);
            keys[&n] = key;
            QJsonArray size, stride;
            for (int64_t d : n.shape)
                size.append(QString::number(d));
            for (int64_t d : contiguousStrides(n.shape))
                stride.append(QString::number(d));
            const QByteArray raw(reinterpret_cast<const char *>(n.data.data()), qsizetype(n.data.size() * 4));
            return QJsonObject{{"tensor", QJsonObject{{"key", key},
                                                      {"type", "torch.FloatStorage"},
                                                      {"location", "cpu"},
                                                      {"numel", QString::number(n.data.size())},
                                                      {"offset", "0"},
                                                      {"size", size},
                                                      {"stride", stride},
                                                      {"requires_grad", false},
                                                      {"hooks", "OrderedDict:0"},
                                                      {"hex", QString::fromLatin1(raw.toHex())}}},
                               {"id", id}};
        }
        }
        return {};
    }
};

// Python side: zipfile.testzip, pickletools over the whole pickle, then a full unpickle
// with stub classes (nothing is imported), printed as the tagged JSON Expect builds.
const char kPythonCheck[] = R"PY(
import collections, io, json, pickle, pickletools, struct, sys, zipfile
path = sys.argv[1]
z = zipfile.ZipFile(path)
names = z.namelist()
bad = z.testzip()
root = names[0].split('/')[0]
pkl = z.read(root + '/data.pkl')
dis = io.StringIO()
pickletools.dis(pkl, out=dis)
opcodes = sorted({op.name for op, arg, pos in pickletools.genops(pkl)})
classes = {}
def stub(module, name):
    key = module + '.' + name
    if key not in classes:
        classes[key] = type(name, (object,), {'__module__': module, '_qualified': key})
    return classes[key]
class Device:
    def __init__(self, *args):
        self.args = args
class Tensor:
    def __init__(self, storage, offset, size, stride, requires_grad, hooks, *rest):
        assert not rest
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride
        self.requires_grad, self.hooks = requires_grad, hooks
class Global:
    def __init__(self, name):
        self.name = name
class Storage:
    def __init__(self, pid):
        kind, self.type, self.key, self.location, self.numel = pid
        assert kind == 'storage'
        self.data = z.read(root + '/data/' + self.key)
        assert len(self.data) == 4 * self.numel
class Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) == ('collections', 'OrderedDict'):
            return collections.OrderedDict
        if (module, name) == ('torch._utils', '_rebuild_tensor_v2'):
            return Tensor
        if (module, name) == ('torch', 'device'):
            return Device
        if module == 'torch':
            return Global(module + '.' + name)
        return stub(module, name)
    def persistent_load(self, pid):
        return Storage(pid)
obj = Unpickler(io.BytesIO(pkl)).load()
ids = {}
def tracked(o, make):
    if id(o) in ids:
        return {'ref': ids[id(o)]}
    ids[id(o)] = len(ids)
    n = ids[id(o)]
    d = make()
    d['id'] = n
    return d
def items(d):
    return [[conv(k), conv(v)] for k, v in d.items()]
def conv(o):
    if o is None or isinstance(o, bool):
        return o
    if isinstance(o, int):
        return {'i': str(o)}
    if isinstance(o, float):
        return {'f': struct.pack('>d', o).hex()}
    if isinstance(o, str):
        return {'s': o}
    if isinstance(o, Global):
        return {'global': o.name}
    if isinstance(o, tuple):
        if not o:
            return {'tuple': []}
        return tracked(o, lambda: {'tuple': [conv(x) for x in o]})
    if isinstance(o, list):
        return tracked(o, lambda: {'list': [conv(x) for x in o]})
    if isinstance(o, collections.OrderedDict):
        def make():
            d = {'odict': items(o)}
            if vars(o):
                d['attrs'] = conv(vars(o))
            return d
        return tracked(o, make)
    if isinstance(o, dict):
        return tracked(o, lambda: {'dict': items(o)})
    if isinstance(o, Device):
        return tracked(o, lambda: {'device': [str(a) for a in o.args]})
    if isinstance(o, Tensor):
        s = o.storage
        return tracked(o, lambda: {'tensor': {
            'key': s.key, 'type': s.type.name, 'location': s.location, 'numel': str(s.numel),
            'offset': str(o.offset), 'size': [str(x) for x in o.size], 'stride': [str(x) for x in o.stride],
            'requires_grad': o.requires_grad,
            'hooks': type(o.hooks).__name__ + ':' + str(len(o.hooks)),
            'hex': s.data.hex()}})
    if hasattr(type(o), '_qualified'):
        return tracked(o, lambda: {'object': type(o)._qualified, 'fields': items(vars(o))})
    raise TypeError('unexpected %r' % type(o))
print(json.dumps({'testzip': bad, 'names': names,
                  'dis_tail': dis.getvalue().strip().splitlines()[-1],
                  'opcodes': opcodes, 'value': conv(obj)}))
)PY";

} // namespace

class TestCheckpointWriter : public QObject {
    Q_OBJECT

private slots:
    void readsBackThroughLibTorchAndOurReader();
    void zipLayout();
    void sameBytesAsLibTorchWriter();
    void reproducesTorchSaveFileExactly();
    void pythonLoadsIt();
    void memoAndBatches();
    void failuresNameThePathAndLeaveNoFile();
    void failedWriteKeepsTheOldFile();
};

void TestCheckpointWriter::readsBackThroughLibTorchAndOurReader()
{
    QTemporaryDir dir;
    const std::string path = (dir.path() + "/sae_checkpoint.pt").toStdString();
    const Sample sample = makeSample();
    const Status st = writeTorchSave(path, sample.root);
    QVERIFY2(st.ok(), st.message().c_str());

    PyTorchStreamReader reader(path); // exactly how TorchArchive opens checkpoints
    QCOMPARE(reader.version(), uint64_t(3));
    const std::vector<std::string> records = reader.getAllRecords();
    QCOMPARE(records.front(), std::string("data.pkl"));
    QCOMPARE(records.back(), std::string("version"));
    QCOMPARE(record(reader, "version"), std::string("3\n"));

    const std::string pkl = record(reader, "data.pkl");
    auto parsed = parsePickle(reinterpret_cast<const uint8_t *>(pkl.data()), pkl.size(), sampleLimits());
    QVERIFY2(parsed.ok(), parsed.message().c_str());
    const PyValue *root = parsed->get();
    QCOMPARE(root->kind, PyValue::Kind::Dict);
    QCOMPARE(root->dict.size(), size_t(3));

    // The config object: class name and every field.
    const PyValue *cfg = child(root, "cfg");
    QVERIFY(cfg);
    QCOMPARE(cfg->kind, PyValue::Kind::Object);
    QCOMPARE(cfg->text, std::string("src.sae_training.config.ViTSAERunnerConfig"));
    QVERIFY(cfg->items.empty()); // NEWOBJ with ()
    QCOMPARE(cfg->dict.size(), size_t(20));
    QCOMPARE(child(cfg, "custom_clip_ckpt_path")->kind, PyValue::Kind::None);
    const std::pair<const char *, int64_t> ints[] = {{"image_width", 224},
                                                     {"block_layer", -2},
                                                     {"d_in", 768},
                                                     {"store_size", 960},
                                                     {"max_batch", 65536},
                                                     {"total_training_tokens", 2'000'000'000'000},
                                                     {"neg_big", -3'000'000'000},
                                                     {"int_min", std::numeric_limits<int64_t>::min()},
                                                     {"int_max", std::numeric_limits<int64_t>::max()}};
    for (const auto &[name, v] : ints) {
        const PyValue *f = child(cfg, name);
        QVERIFY2(f && f->kind == PyValue::Kind::Int, name);
        QCOMPARE(f->intValue, v);
    }
    QCOMPARE(child(cfg, "model_name")->text, std::string("dinov2_vitb14"));
    QCOMPARE(child(cfg, "create_dataloader")->boolValue, true);
    QCOMPARE(child(cfg, "log_to_wandb")->kind, PyValue::Kind::Bool);
    QCOMPARE(child(cfg, "log_to_wandb")->boolValue, false);
    QCOMPARE(child(cfg, "device")->text, std::string("torch.device"));
    QCOMPARE(child(cfg, "device")->items.size(), size_t(1));
    QCOMPARE(child(cfg, "device")->items[0]->text, std::string("cuda"));
    QCOMPARE(child(cfg, "device0")->items.size(), size_t(2));
    QCOMPARE(child(cfg, "device0")->items[1]->intValue, int64_t(0));
    QCOMPARE(child(cfg, "dtype")->kind, PyValue::Kind::Global);
    QCOMPARE(child(cfg, "dtype")->text, std::string("torch.float32"));
    QCOMPARE(child(cfg, "l1_coefficient")->floatValue, 8e-05);
    QVERIFY(std::signbit(child(cfg, "negative_zero")->floatValue));
    QVERIFY(std::isinf(child(cfg, "infinity")->floatValue));
    QCOMPARE(child(cfg, "run_name")->text,
             std::string("Zellkern \xc2\xb5m \xe2\x80\x93 \xe7\xb4\xb0\xe8\x83\x9e \xf0\x9f\xa7\xab"));

    // Tensors: views, storage keys in pickle order, and the bytes behind them.
    Expect expect;
    (void)expect.value(*sample.root); // assigns storage keys in pickle order
    struct T {
        const PyValue *v;
        std::vector<int64_t> shape;
        std::vector<float> data;
        QString key;
    };
    std::vector<T> tensors;
    std::function<void(const PickleNode &, const PyValue *)> collect = [&](const PickleNode &n, const PyValue *v) {
        if (n.kind == PickleNode::Kind::TensorF32) {
            tensors.push_back({v, n.shape, n.data, expect.keys[&n]});
            return;
        }
        if (n.kind == PickleNode::Kind::Dict || n.kind == PickleNode::Kind::OrderedDict)
            for (size_t i = 0; i < n.entries.size(); ++i)
                collect(*n.entries[i].second, v->dict[i].second.get());
        if (n.kind == PickleNode::Kind::Tuple)
            for (size_t i = 0; i < n.items.size(); ++i)
                collect(*n.items[i], v->items[i].get());
    };
    collect(*sample.root, root);
    QCOMPARE(tensors.size(), size_t(9)); // 4 in state_dict, 3 in misc, the shared one twice
    for (const T &t : tensors) {
        QVERIFY(t.v);
        QCOMPARE(t.v->kind, PyValue::Kind::Tensor);
        const TensorRef &ref = t.v->tensor;
        QCOMPARE(QString::fromStdString(ref.storageKey), t.key);
        QCOMPARE(ref.dtype, ScalarType::Float32);
        QCOMPARE(ref.location, std::string("cpu"));
        QCOMPARE(ref.storageOffset, int64_t(0));
        QCOMPARE(ref.sizes, t.shape);
        QCOMPARE(ref.strides, contiguousStrides(t.shape));
        QCOMPARE(ref.storageNumel, int64_t(t.data.size()));
        const std::string bytes = record(reader, "data/" + ref.storageKey);
        QCOMPARE(bytes.size(), t.data.size() * 4);
        QVERIFY(bytes.empty() || std::memcmp(bytes.data(), t.data.data(), bytes.size()) == 0);
    }
    // One storage record per distinct tensor: data.pkl, 8 storages, version.
    QCOMPARE(records.size(), size_t(10));

    const PyValue *sd = child(root, "state_dict");
    QCOMPARE(sd->kind, PyValue::Kind::Dict);
    QCOMPARE(sd->dict.size(), size_t(4));
    QCOMPARE(sd->dict[0].first->text, std::string("W_enc"));
    QCOMPARE(sd->dict[3].first->text, std::string("b_dec"));
}

void TestCheckpointWriter::zipLayout()
{
    QTemporaryDir dir;
    const QString path = dir.path() + "/my.model.v2.pth";
    PickleFields entries;
    for (int i = 0; i < 12; ++i) // keys 0..11: records are written in string order
        entries.emplace_back("t" + std::to_string(i),
                             py::tensorF32({int64_t(i % 4), 3}, ramp(size_t(i % 4) * 3, float(i), 0.5f)));
    const Status st = writeTorchSave(path.toStdString(), py::orderedDict(entries));
    QVERIFY2(st.ok(), st.message().c_str());
    const QByteArray b = readFile(path);
    QVERIFY(b.size() > 0);

    const QString root = "my.model.v2/"; // torch: basename without the last extension
    QStringList expectedNames{root + "data.pkl"};
    QStringList keys;
    for (int i = 0; i < 12; ++i)
        keys << QString::number(i);
    std::sort(keys.begin(), keys.end());
    for (const QString &k : keys)
        expectedNames << root + "data/" + k;
    expectedNames << root + "version";

    // Local entries, in file order.
    struct Entry {
        QString name;
        uint32_t crc;
        uint64_t size, offset, dataOffset;
        uint16_t flags;
    };
    std::vector<Entry> local;
    qsizetype pos = 0;
    while (le(b, pos, 4) == 0x04034b50) {
        Entry e{};
        e.offset = uint64_t(pos);
        QCOMPARE(le(b, pos + 4, 2), uint64_t(0)); // version needed: stored
        e.flags = uint16_t(le(b, pos + 6, 2));
        QCOMPARE(le(b, pos + 8, 2), uint64_t(0));  // method: stored
        QCOMPARE(le(b, pos + 10, 4), uint64_t(0)); // no timestamps: reproducible files
        const auto nameLen = qsizetype(le(b, pos + 26, 2)), extraLen = qsizetype(le(b, pos + 28, 2));
        e.name = QString::fromUtf8(b.mid(pos + 30, nameLen));
        // Extra field: "FB" + length + 'Z' padding (torch's alignment record).
        QCOMPARE(b.mid(pos + 30 + nameLen, 2), QByteArray("FB"));
        QCOMPARE(qsizetype(le(b, pos + 32 + nameLen, 2)) + 4, extraLen);
        QCOMPARE(b.mid(pos + 34 + nameLen, extraLen - 4), QByteArray(extraLen - 4, 'Z'));
        e.dataOffset = uint64_t(pos + 30 + nameLen + extraLen);
        QVERIFY2(e.dataOffset % 64 == 0, qPrintable(e.name));
        pos = qsizetype(e.dataOffset);
        local.push_back(e);
        // The size is only in the data descriptor (flag 8) and the central directory;
        // find it there below, then skip data + descriptor.
        qsizetype next = b.indexOf(QByteArray("PK\x07\x08", 4), pos);
        if (e.flags & 8) {
            QVERIFY(next > 0);
            local.back().crc = uint32_t(le(b, next + 4, 4));
            local.back().size = le(b, next + 8, 4);
            QCOMPARE(le(b, next + 12, 4), local.back().size);
            QCOMPARE(uint64_t(next) - e.dataOffset, local.back().size);
            pos = next + 16;
        } else {
            local.back().crc = 0;
            local.back().size = 0;
        }
    }
    QCOMPARE(int(local.size()), expectedNames.size());
    for (size_t i = 0; i < local.size(); ++i) {
        QCOMPARE(local[i].name, expectedNames[int(i)]);
        QCOMPARE(local[i].flags, uint16_t(local[i].size ? 0x0808 : 0x0800));
        QCOMPARE(local[i].crc, referenceCrc(b.constData() + local[i].dataOffset, size_t(local[i].size)));
    }
    QCOMPARE(b.mid(qsizetype(local.back().dataOffset), 2), QByteArray("3\n"));

    // Central directory, then ZIP64 end record, ZIP64 locator and end record.
    const qsizetype centralStart = pos;
    for (const Entry &e : local) {
        QCOMPARE(le(b, pos, 4), uint64_t(0x02014b50));
        QCOMPARE(uint16_t(le(b, pos + 8, 2)), e.flags);
        QCOMPARE(uint32_t(le(b, pos + 16, 4)), e.crc);
        QCOMPARE(le(b, pos + 20, 4), e.size);
        QCOMPARE(le(b, pos + 24, 4), e.size);
        const auto nameLen = qsizetype(le(b, pos + 28, 2));
        QCOMPARE(le(b, pos + 30, 2), uint64_t(0)); // no extra field below 4 GiB
        QCOMPARE(le(b, pos + 42, 4), e.offset);
        QCOMPARE(QString::fromUtf8(b.mid(pos + 46, nameLen)), e.name);
        pos += 46 + nameLen;
    }
    const qsizetype centralSize = pos - centralStart;
    QCOMPARE(le(b, pos, 4), uint64_t(0x06064b50));
    QCOMPARE(le(b, pos + 4, 8), uint64_t(44));
    QCOMPARE(le(b, pos + 24, 8), uint64_t(local.size()));
    QCOMPARE(le(b, pos + 32, 8), uint64_t(local.size()));
    QCOMPARE(le(b, pos + 40, 8), uint64_t(centralSize));
    QCOMPARE(le(b, pos + 48, 8), uint64_t(centralStart));
    const qsizetype zip64End = pos;
    pos += 56;
    QCOMPARE(le(b, pos, 4), uint64_t(0x07064b50));
    QCOMPARE(le(b, pos + 8, 8), uint64_t(zip64End));
    QCOMPARE(le(b, pos + 16, 4), uint64_t(1));
    pos += 20;
    QCOMPARE(le(b, pos, 4), uint64_t(0x06054b50));
    QCOMPARE(le(b, pos + 8, 2), uint64_t(local.size()));
    QCOMPARE(le(b, pos + 10, 2), uint64_t(local.size()));
    QCOMPARE(le(b, pos + 12, 4), uint64_t(centralSize));
    QCOMPARE(le(b, pos + 16, 4), uint64_t(centralStart));
    QCOMPARE(le(b, pos + 20, 2), uint64_t(0));
    QCOMPARE(pos + 22, b.size());

    // LibTorch agrees on where every record's data starts.
    PyTorchStreamReader reader(path.toStdString());
    for (const Entry &e : local)
        QCOMPARE(uint64_t(reader.getRecordOffset(e.name.mid(root.size()).toStdString())), e.dataOffset);
}

void TestCheckpointWriter::sameBytesAsLibTorchWriter()
{
    // Hand the same records to LibTorch's PyTorchStreamWriter (what torch.save uses) and
    // compare the files.
    QTemporaryDir dir;
    QVERIFY(QDir(dir.path()).mkdir("libtorch"));
    const std::string ours = (dir.path() + "/checkpoint.pt").toStdString();
    const std::string theirs = (dir.path() + "/libtorch/checkpoint.pt").toStdString();
    const Status st = writeTorchSave(ours, makeSample().root);
    QVERIFY2(st.ok(), st.message().c_str());
    {
        PyTorchStreamReader reader(ours);
        caffe2::serialize::PyTorchStreamWriter writer(theirs);
        for (const std::string &name : reader.getAllRecords()) {
            if (name == "version")
                continue; // writeEndOfFile adds it
            const std::string data = record(reader, name);
            writer.writeRecord(name, data.data(), data.size());
        }
        writer.writeEndOfFile();
    }
    const QByteArray a = readFile(QString::fromStdString(ours)), b = readFile(QString::fromStdString(theirs));
    QVERIFY(!a.isEmpty());
    QCOMPARE(a.size(), b.size());
    QVERIFY(a == b);
}

void TestCheckpointWriter::reproducesTorchSaveFileExactly()
{
    // Rebuild the CytoSAE fixture (torch.save in torch 1.13) from its parsed contents and
    // expect the very same bytes: pickle opcodes, memo indices, zip layout.
    const QString source = fixture(kSaeFixture);
    PyTorchStreamReader reader(source.toStdString());
    const std::string pkl = record(reader, "data.pkl");
    auto parsed = parsePickle(reinterpret_cast<const uint8_t *>(pkl.data()), pkl.size());
    QVERIFY2(parsed.ok(), parsed.message().c_str());
    const PyValue *cfg = child(parsed->get(), "cfg");
    const PyValue *sd = child(parsed->get(), "state_dict");
    QVERIFY(cfg && sd);

    auto split = [](const std::string &dotted) {
        const size_t dot = dotted.rfind('.');
        return std::make_pair(dotted.substr(0, dot), dotted.substr(dot + 1));
    };
    PickleFields fields;
    for (const auto &[k, v] : cfg->dict) {
        PickleNodePtr value;
        switch (v->kind) {
        case PyValue::Kind::None:
            value = py::none();
            break;
        case PyValue::Kind::Bool:
            value = py::boolean(v->boolValue);
            break;
        case PyValue::Kind::Int:
            value = py::integer(v->intValue);
            break;
        case PyValue::Kind::Float:
            value = py::real(v->floatValue);
            break;
        case PyValue::Kind::String:
            value = py::text(v->text);
            break;
        case PyValue::Kind::Global:
            value = py::global(split(v->text).first, split(v->text).second);
            break;
        case PyValue::Kind::Object:
            QCOMPARE(v->text, std::string("torch.device"));
            value = py::device(v->items.at(0)->text);
            break;
        default:
            QFAIL(qPrintable("unexpected cfg value " + QString::fromStdString(v->describe())));
        }
        fields.emplace_back(k->text, value);
    }
    QCOMPARE(fields.size(), size_t(47));
    const auto [module, cls] = split(cfg->text);
    auto cfgNode = py::object(module, cls, fields);

    PickleFields tensors;
    for (const auto &[k, v] : sd->dict) {
        QCOMPARE(v->kind, PyValue::Kind::Tensor);
        const std::string bytes = record(reader, "data/" + v->tensor.storageKey);
        std::vector<float> values(bytes.size() / 4);
        std::memcpy(values.data(), bytes.data(), bytes.size());
        tensors.emplace_back(k->text, py::tensorF32(v->tensor.sizes, std::move(values)));
    }
    // nn.Module.state_dict() metadata of the SparseAutoencoder (root + 4 hook points);
    // torch shares one 'version' string between them.
    auto version = py::text("version");
    PickleFields meta;
    for (const char *prefix : {"", "hook_sae_in", "hook_hidden_pre", "hook_hidden_post", "hook_sae_out"})
        meta.emplace_back(prefix, py::dict(PickleEntries{{version, py::integer(1)}}));
    auto stateDict = py::orderedDict(tensors, py::dict({{"_metadata", py::orderedDict(meta)}}));

    QTemporaryDir dir;
    const QString out = dir.path() + "/" + kSaeFixture; // same name: same archive folder
    const Status st = writeTorchSave(out.toStdString(), py::dict({{"cfg", cfgNode}, {"state_dict", stateDict}}));
    QVERIFY2(st.ok(), st.message().c_str());
    const QByteArray expected = readFile(source), actual = readFile(out);
    QVERIFY(!expected.isEmpty());
    QCOMPARE(actual.size(), expected.size());
    if (actual != expected) {
        qsizetype i = 0;
        while (actual[i] == expected[i])
            ++i;
        QFAIL(qPrintable(QString("first difference at byte %1").arg(i)));
    }
}

void TestCheckpointWriter::pythonLoadsIt()
{
    const QString python = "/usr/bin/python3";
    if (!QFileInfo::exists(python))
        QSKIP("no /usr/bin/python3");
    QTemporaryDir dir;
    const QString path = dir.path() + "/sae_checkpoint.pt";
    const Sample sample = makeSample();
    const Status st = writeTorchSave(path.toStdString(), sample.root);
    QVERIFY2(st.ok(), st.message().c_str());

    QProcess proc;
    proc.start(python, {"-c", QString::fromUtf8(kPythonCheck), path});
    QVERIFY(proc.waitForFinished(120000));
    const QByteArray err = proc.readAllStandardError();
    QVERIFY2(proc.exitStatus() == QProcess::NormalExit && proc.exitCode() == 0, err.constData());
    QJsonParseError perr;
    const QJsonObject result = QJsonDocument::fromJson(proc.readAllStandardOutput(), &perr).object();
    QVERIFY2(perr.error == QJsonParseError::NoError, qPrintable(perr.errorString()));

    QVERIFY(result["testzip"].isNull()); // every CRC checks out
    QCOMPARE(result["names"].toArray().first().toString(), QString("sae_checkpoint/data.pkl"));
    QCOMPARE(result["dis_tail"].toString(), QString("highest protocol among opcodes = 2"));
    const QStringList allowed{
        "APPEND",      "APPENDS",     "BINFLOAT", "BINGET",     "BININT",     "BININT1",     "BININT2", "BINPERSID",
        "BINPUT",      "BINUNICODE",  "BUILD",    "EMPTY_DICT", "EMPTY_LIST", "EMPTY_TUPLE", "GLOBAL",  "LONG1",
        "LONG_BINGET", "LONG_BINPUT", "MARK",     "NEWFALSE",   "NEWOBJ",     "NEWTRUE",     "NONE",    "PROTO",
        "REDUCE",      "SETITEM",     "SETITEMS", "STOP",       "TUPLE",      "TUPLE1",      "TUPLE2",  "TUPLE3"};
    QStringList used;
    for (const QJsonValue &v : result["opcodes"].toArray())
        used << v.toString();
    for (const QString &op : used)
        QVERIFY2(allowed.contains(op), qPrintable(op));
    QCOMPARE(used.size(), allowed.size()); // the sample exercises all of them

    Expect expect;
    const QJsonValue expected = expect.value(*sample.root);
    const QJsonValue actual = result["value"];
    if (actual != expected) {
        // Point at the first differing top-level part to keep the message readable.
        const QJsonArray a = actual.toObject()["dict"].toArray(), e = expected.toObject()["dict"].toArray();
        for (qsizetype i = 0; i < std::min(a.size(), e.size()); ++i)
            if (a[i] != e[i])
                QFAIL(qPrintable("Python loads a different value for " + e[i].toArray()[0].toObject()["s"].toString() +
                                 ":\n" + QJsonDocument(a[i].toArray()).toJson(QJsonDocument::Compact).left(2000)));
        QFAIL("Python loads a different value");
    }
}

void TestCheckpointWriter::memoAndBatches()
{
    // Identity is kept (a node used twice is one object after loading), more than 256 memo
    // entries switch to LONG_BINPUT/LONG_BINGET, and containers over 1000 items are batched.
    QTemporaryDir dir;
    const std::string path = (dir.path() + "/memo.pt").toStdString();
    const Sample sample = makeSample();
    QVERIFY(writeTorchSave(path, sample.root).ok());
    PyTorchStreamReader reader(path);
    const std::string pkl = record(reader, "data.pkl");
    auto parsed = parsePickle(reinterpret_cast<const uint8_t *>(pkl.data()), pkl.size(), sampleLimits());
    QVERIFY2(parsed.ok(), parsed.message().c_str());
    const PyValue *misc = child(parsed->get(), "misc");
    QVERIFY(misc);
    const PyValue *shared = child(misc, "shared");
    QCOMPARE(shared->items.size(), size_t(2));
    QVERIFY(shared->items[0] == shared->items[1]);
    const PyValue *same = child(misc, "same_tensor");
    QVERIFY(same->items[0] == same->items[1]);
    const PyValue *many = child(misc, "many");
    QCOMPARE(many->items.size(), size_t(2500));
    QCOMPARE(many->items[2499]->intValue, int64_t(2499 * 7));
    const PyValue *wide = child(misc, "wide");
    QCOMPARE(wide->dict.size(), size_t(1001));
    QCOMPARE(child(wide, "k1000")->intValue, int64_t(1000));
    QCOMPARE(child(misc, "tuple0")->items.size(), size_t(0));
    QCOMPARE(child(misc, "plain_object")->text, std::string("pkg.mod.Empty"));
    QCOMPARE(child(misc, "plain_object")->dict.size(), size_t(0));
    const PyValue *intKeys = child(misc, "int_keys");
    QCOMPARE(intKeys->dict.size(), size_t(2));
    QCOMPARE(intKeys->dict[0].first->intValue, int64_t(1));
    QCOMPARE(intKeys->dict[1].first->kind, PyValue::Kind::Tuple);
}

void TestCheckpointWriter::failuresNameThePathAndLeaveNoFile()
{
    QTemporaryDir dir;
    const auto entriesIn = [&] {
        return QDir(dir.path()).entryList(QDir::AllEntries | QDir::Hidden | QDir::NoDotAndDotDot);
    };
    QFile blocker(dir.path() + "/not_a_folder");
    QVERIFY(blocker.open(QIODevice::WriteOnly));
    blocker.close();
    const auto ok = py::dict({{"w", py::tensorF32({2}, ramp(2, 0.f, 1.f))}});
    const QStringList before = entriesIn();

    // The folder cannot hold files (its "parent" is a regular file): fails even as root.
    const std::string unwritable = (dir.path() + "/not_a_folder/model.pt").toStdString();
    Status st = writeTorchSave(unwritable, ok);
    QVERIFY(!st.ok());
    QVERIFY2(st.message().rfind(unwritable, 0) == 0, st.message().c_str());
    const std::string missing = (dir.path() + "/no/such/folder/model.pt").toStdString();
    st = writeTorchSave(missing, ok);
    QVERIFY(!st.ok());
    QVERIFY2(st.message().rfind(missing, 0) == 0, st.message().c_str());
    // A folder in the way.
    QVERIFY(QDir(dir.path()).mkdir("folder.pt"));
    const std::string folder = (dir.path() + "/folder.pt").toStdString();
    st = writeTorchSave(folder, ok);
    QVERIFY(!st.ok());
    QVERIFY2(st.message().rfind(folder, 0) == 0, st.message().c_str());
    QVERIFY(QFileInfo(QString::fromStdString(folder)).isDir());
    QVERIFY(QDir(dir.path()).rmdir("folder.pt"));

    // Contents that cannot be saved: nothing is created, the message says what and where.
    const std::string target = (dir.path() + "/model.pt").toStdString();
    const std::pair<PickleNodePtr, const char *> bad[] = {
        {nullptr, "null"},
        {py::dict({{"cfg", py::dict({{"name", py::text("bad \xff utf-8")}})}}), "cfg/name"},
        {py::dict({{"sd", py::orderedDict({{"w", py::tensorF32({2, 3}, ramp(5, 0.f, 1.f))}})}}), "sd/w"},
        {py::dict({{"w", py::tensorF32({2, 3}, nullptr)}}), "needs 6 values"},
        {py::dict({{"w", py::tensorF32({-1, 3}, std::vector<float>{})}}), "negative"},
        {py::dict(PickleEntries{{py::text("a"), py::none()}, {py::text("a"), py::none()}}), "duplicate"},
        {py::dict(PickleEntries{{py::list({}), py::none()}}), "key"},
        {py::dict({{"x", nullptr}}), "null"},
        {py::global("torch", "bad\nname"), "global"},
        {py::text(std::string(1, '\0') + "ok"), nullptr}, // valid: NUL is fine in Python text
    };
    for (const auto &[node, why] : bad) {
        st = writeTorchSave(target, node);
        if (!why) {
            QVERIFY2(st.ok(), st.message().c_str());
            QVERIFY(QFile::remove(QString::fromStdString(target)));
            continue;
        }
        QVERIFY2(!st.ok(), why);
        QVERIFY2(st.message().rfind(target + ": ", 0) == 0, st.message().c_str());
        QVERIFY2(st.message().find(why) != std::string::npos, st.message().c_str());
    }
    QCOMPARE(entriesIn(), before);

    // A name torch.save cannot make an archive folder from.
    const std::string hidden = (dir.path() + "/.pt").toStdString();
    st = writeTorchSave(hidden, ok);
    QVERIFY(!st.ok());
    QVERIFY2(st.message().rfind(hidden, 0) == 0, st.message().c_str());
    QCOMPARE(entriesIn(), before);
}

void TestCheckpointWriter::failedWriteKeepsTheOldFile()
{
    // Make the write fail half-way (file size limit; works as root too): the previous
    // checkpoint under the name stays intact and no temporary file is left behind.
    QTemporaryDir dir;
    const QString path = dir.path() + "/model.pt";
    {
        QFile old(path);
        QVERIFY(old.open(QIODevice::WriteOnly));
        old.write("previous checkpoint");
    }
    const auto big = py::dict({{"w", py::tensorF32({256, 256}, ramp(65536, 0.f, 1e-3f))}});

    struct rlimit saved {};
    QVERIFY(getrlimit(RLIMIT_FSIZE, &saved) == 0);
    auto previousHandler = std::signal(SIGXFSZ, SIG_IGN);
    struct rlimit limited = saved;
    limited.rlim_cur = 100000;
    QVERIFY(setrlimit(RLIMIT_FSIZE, &limited) == 0);
    const Status st = writeTorchSave(path.toStdString(), big);
    setrlimit(RLIMIT_FSIZE, &saved);
    std::signal(SIGXFSZ, previousHandler);

    QVERIFY(!st.ok());
    QVERIFY2(st.message().rfind(path.toStdString() + ": ", 0) == 0, st.message().c_str());
    QCOMPARE(readFile(path), QByteArray("previous checkpoint"));
    QCOMPARE(QDir(dir.path()).entryList(QDir::AllEntries | QDir::Hidden | QDir::NoDotAndDotDot),
             QStringList{"model.pt"});

    // Without the limit the same call replaces it.
    const Status again = writeTorchSave(path.toStdString(), big);
    QVERIFY2(again.ok(), again.message().c_str());
    QVERIFY(readFile(path).startsWith("PK\x03\x04"));
    QCOMPARE(QDir(dir.path()).entryList(QDir::AllEntries | QDir::Hidden | QDir::NoDotAndDotDot),
             QStringList{"model.pt"});
}

QTEST_APPLESS_MAIN(TestCheckpointWriter)
#include "tst_checkpointwriter.moc"
