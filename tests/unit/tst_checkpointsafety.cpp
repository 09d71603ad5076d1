// Hostile checkpoint files ("Data safety round two", items 3 and 4): every file below is built
// here at run time, small, and must be refused with a message that names the file and the
// problem, before its declared sizes cost memory.
//
// - Globals: a pickle may name only the GLOBALs that torch.save writes for the published
//   DinoBloom-B and CytoSAE files (and our writer for them); `posix.system` as the SAE's cfg
//   class, or anywhere else, by GLOBAL or STACK_GLOBAL, is refused.
// - Memory: a data.pkl declared as 4 GB, deflate bombs in data.pkl and in a tensor record, a
//   stride-0 view of 3 x 10^8 elements over a 600 KB storage, and a data.pkl whose BUILDs copy
//   one big dict into many objects. Each is loaded by Engine::load (the path the app and the
//   command line use) in a fresh child process (this binary, re-run with --load-child), which
//   reports its peak resident memory (VmHWM) against its resident memory before the load:
//   refusing must cost less than 256 MB more than loading the demo models (and less than 1 GB
//   more address space, which catches huge allocations that are never touched).
// - Also refused: records that overlap or appear twice, a storage record whose size is not
//   what the pickle declares; and a dict of many keys parses in linear time.
// - The published formats still load: every fixture, the demo models, our writer's files, and
//   tensors that share one storage.

#include "model/CheckpointWriter.h"
#include "model/Engine.h"
#include "model/ModelFiles.h"
#include "model/Pickle.h"
#include "model/TorchCheckpoint.h"

#include <caffe2/serialize/inline_container.h>
#include <torch/torch.h>

#include <QDir>
#include <QElapsedTimer>
#include <QFile>
#include <QProcess>
#include <QTemporaryDir>
#include <QtTest>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>

using namespace cytosae;
using namespace cytosae::model;

namespace {

#if defined(__SANITIZE_ADDRESS__)
#define CYTOSAE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CYTOSAE_ASAN 1
#endif
#endif

#ifndef CYTOSAE_ASAN
constexpr int64_t kMaxExtraKb = 256 * 1024; // the bound on memory spent refusing a file
// Address space reserved but never touched is not memory, but a refused file should not
// reserve its declared gigabytes either.
constexpr int64_t kMaxExtraVmKb = 1024 * 1024;
#else
// AddressSanitizer pads every allocation and maps its own address space: looser bounds.
constexpr int64_t kMaxExtraKb = 512 * 1024;
constexpr int64_t kMaxExtraVmKb = INT64_MAX / 2;
#endif

std::string demoModel(const char *name)
{
    return std::string(CYTOSAE_TEST_DATA "/../../models/demo/") + name;
}

std::string fixture(const std::string &name)
{
    return std::string(CYTOSAE_TEST_DATA "/fixtures/") + name;
}

// ---- little-endian bytes, CRC-32 ----

void putLe(std::string &out, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; ++i)
        out += char((v >> (8 * i)) & 0xFF);
}

uint32_t crc32Of(const std::string &data)
{
    uint32_t crc = 0xFFFFFFFFu;
    for (unsigned char c : data) {
        crc ^= c;
        for (int k = 0; k < 8; ++k)
            crc = (crc & 1) ? (crc >> 1) ^ 0xEDB88320u : crc >> 1;
    }
    return ~crc;
}

// CRC-32 of `n` zero bytes without touching n bytes: the register's update by one zero bit is
// a linear map over GF(2); apply its 8n-th power (zlib's crc32_combine method).
uint32_t gf2Times(const uint32_t *mat, uint32_t vec)
{
    uint32_t sum = 0;
    for (int i = 0; vec; vec >>= 1, ++i)
        if (vec & 1)
            sum ^= mat[i];
    return sum;
}

uint32_t crc32OfZeros(uint64_t n)
{
    uint32_t op[32], sq[32];
    op[0] = 0xEDB88320u; // one zero bit
    for (int i = 1; i < 32; ++i)
        op[i] = 1u << (i - 1);
    for (int k = 0; k < 3; ++k) { // -> one zero byte
        for (int i = 0; i < 32; ++i)
            sq[i] = gf2Times(op, op[i]);
        std::memcpy(op, sq, sizeof op);
    }
    uint32_t reg = 0xFFFFFFFFu;
    while (n) {
        if (n & 1)
            reg = gf2Times(op, reg);
        for (int i = 0; i < 32; ++i)
            sq[i] = gf2Times(op, op[i]);
        std::memcpy(op, sq, sizeof op);
        n >>= 1;
    }
    return ~reg;
}

// ---- a deflate bomb: one dynamic-Huffman block that expands 2 bits into 258 zero bytes ----

struct Deflated {
    std::string bytes;
    uint64_t inflatedSize = 0;
};

class BitWriter {
public:
    void bits(uint32_t value, int n) // LSB first
    {
        for (int i = 0; i < n; ++i)
            bit((value >> i) & 1);
    }
    void code(uint32_t code, int len) // Huffman codes go MSB first
    {
        for (int i = len - 1; i >= 0; --i)
            bit((code >> i) & 1);
    }
    void zeros(uint64_t n)
    {
        while (n > 0 && m_used != 0) {
            bit(0);
            --n;
        }
        m_out.append(size_t(n / 8), '\0');
        for (uint64_t i = 0; i < n % 8; ++i)
            bit(0);
    }
    std::string finish()
    {
        if (m_used)
            m_out += char(m_cur);
        m_used = 0;
        return m_out;
    }

private:
    void bit(uint32_t b)
    {
        m_cur |= uint8_t(b << m_used);
        if (++m_used == 8) {
            m_out += char(m_cur);
            m_cur = 0;
            m_used = 0;
        }
    }
    std::string m_out;
    uint8_t m_cur = 0;
    int m_used = 0;
};

// Raw deflate (zip method 8) of 1 + 258 * matches zero bytes.
Deflated deflateBomb(uint64_t matches)
{
    BitWriter w;
    w.bits(1, 1);  // BFINAL
    w.bits(2, 2);  // dynamic Huffman
    w.bits(29, 5); // HLIT: 286 literal/length codes
    w.bits(0, 5);  // HDIST: 1 distance code
    w.bits(14, 4); // HCLEN: 18 code-length codes
    // Code-length code: 18 -> "0", 1 -> "10", 2 -> "11" (lengths 1, 2, 2; complete).
    const int order[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};
    for (int i = 0; i < 18; ++i)
        w.bits(order[i] == 18 ? 1 : (order[i] == 1 || order[i] == 2) ? 2 : 0, 3);
    auto len1 = [&] { w.code(2, 2); };
    auto len2 = [&] { w.code(3, 2); };
    auto zeroRun = [&](int n) { // 11..138 zero lengths
        w.code(0, 1);
        w.bits(uint32_t(n - 11), 7);
    };
    // Literal/length lengths: 0 -> 2, 1..255 -> 0, 256 -> 2, 257..284 -> 0, 285 -> 1.
    len2();
    zeroRun(138);
    zeroRun(117);
    len2();
    zeroRun(28);
    len1();
    len1(); // the one distance code (distance 1): length 1
    // Codes: 285 (length 258) -> "0", literal 0 -> "10", end of block -> "11"; distance -> "0".
    w.code(2, 2);         // literal 0
    w.zeros(2 * matches); // (length 258, distance 1) x matches
    w.code(3, 2);         // end of block
    return {w.finish(), 1 + 258 * matches};
}

// ---- a zip writer that can lie: any method, declared sizes and CRC per record ----

struct ZipRecord {
    std::string name;  // without the archive folder
    std::string bytes; // as stored in the file
    uint16_t method = 0;
    uint64_t declaredSize = 0; // uncompressed size in the headers
    uint32_t crc = 0;
};

// A record replaced by about 537 MB of zeros deflated into 520 KB, with sizes and CRC that
// match, so only the compression itself gives it away.
void becomeDeflateBomb(ZipRecord &record)
{
    const Deflated bomb = deflateBomb(2'080'000);
    record.bytes = bomb.bytes;
    record.method = 8;
    record.declaredSize = bomb.inflatedSize;
    record.crc = crc32OfZeros(bomb.inflatedSize);
}

ZipRecord stored(std::string name, std::string bytes)
{
    ZipRecord r;
    r.name = std::move(name);
    r.declaredSize = bytes.size();
    r.crc = crc32Of(bytes);
    r.bytes = std::move(bytes);
    return r;
}

bool writeZip(const QString &path, const std::vector<ZipRecord> &records)
{
    std::string out, central;
    for (const ZipRecord &r : records) {
        const std::string name = "archive/" + r.name;
        const bool zip64 = r.declaredSize >= 0xFFFFFFFFull || r.bytes.size() >= 0xFFFFFFFFull;
        const uint64_t compressed = r.method == 0 ? r.declaredSize : r.bytes.size();
        std::string extra;
        if (zip64) {
            putLe(extra, 0x0001, 2);
            putLe(extra, 16, 2);
            putLe(extra, r.declaredSize, 8);
            putLe(extra, compressed, 8);
        }
        const uint64_t offset = out.size();
        putLe(out, 0x04034b50, 4);
        putLe(out, zip64 ? 45 : 20, 2);
        putLe(out, 0, 2);
        putLe(out, r.method, 2);
        putLe(out, 0, 4);
        putLe(out, r.crc, 4);
        putLe(out, zip64 ? 0xFFFFFFFFu : compressed, 4);
        putLe(out, zip64 ? 0xFFFFFFFFu : r.declaredSize, 4);
        putLe(out, name.size(), 2);
        putLe(out, extra.size(), 2);
        out += name + extra + r.bytes;

        putLe(central, 0x02014b50, 4);
        putLe(central, zip64 ? 45 : 20, 2);
        putLe(central, zip64 ? 45 : 20, 2);
        putLe(central, 0, 2);
        putLe(central, r.method, 2);
        putLe(central, 0, 4);
        putLe(central, r.crc, 4);
        putLe(central, zip64 ? 0xFFFFFFFFu : compressed, 4);
        putLe(central, zip64 ? 0xFFFFFFFFu : r.declaredSize, 4);
        putLe(central, name.size(), 2);
        putLe(central, extra.size(), 2);
        putLe(central, 0, 2);
        putLe(central, 0, 2);
        putLe(central, 0, 2);
        putLe(central, 0, 4);
        putLe(central, offset, 4);
        central += name + extra;
    }
    const uint64_t centralOffset = out.size();
    out += central;
    putLe(out, 0x06054b50, 4);
    putLe(out, 0, 4);
    putLe(out, records.size(), 2);
    putLe(out, records.size(), 2);
    putLe(out, central.size(), 4);
    putLe(out, centralOffset, 4);
    putLe(out, 0, 2);
    QFile f(path);
    if (!f.open(QIODevice::WriteOnly | QIODevice::Truncate))
        return false;
    return f.write(out.data(), qint64(out.size())) == qint64(out.size());
}

// Every record of a checkpoint, by name without the archive folder, read with LibTorch.
std::vector<ZipRecord> recordsOf(const std::string &path)
{
    caffe2::serialize::PyTorchStreamReader reader(path);
    std::vector<ZipRecord> out;
    for (const std::string &name : reader.getAllRecords()) {
        at::DataPtr data;
        size_t n = 0;
        std::tie(data, n) = reader.getRecord(name);
        out.push_back(stored(name, std::string(static_cast<const char *>(data.get()), n)));
    }
    return out;
}

ZipRecord *findRecord(std::vector<ZipRecord> &records, const std::string &name)
{
    for (ZipRecord &r : records)
        if (r.name == name)
            return &r;
    return nullptr;
}

// ---- pickle bytes, protocol 2 as torch.save writes them ----

class Pkl {
public:
    Pkl() { m_b += "\x80\x02"; }
    Pkl &op(char c)
    {
        m_b += c;
        return *this;
    }
    Pkl &raw(const std::string &s)
    {
        m_b += s;
        return *this;
    }
    Pkl &str(const std::string &s)
    {
        m_b += 'X';
        putLe(m_b, s.size(), 4);
        m_b += s;
        return *this;
    }
    Pkl &integer(int64_t v)
    {
        m_b += 'J';
        putLe(m_b, uint64_t(v), 4);
        return *this;
    }
    Pkl &global(const std::string &module, const std::string &name)
    {
        m_b += "c" + module + "\n" + name + "\n";
        return *this;
    }
    Pkl &put(uint32_t i)
    {
        m_b += 'r';
        putLe(m_b, i, 4);
        return *this;
    }
    Pkl &get(uint32_t i)
    {
        m_b += 'j';
        putLe(m_b, i, 4);
        return *this;
    }
    Pkl &ints(const std::vector<int64_t> &v)
    {
        op('(');
        for (int64_t x : v)
            integer(x);
        return op('t');
    }
    // _rebuild_tensor_v2(storage('storage', FloatStorage, key, 'cpu', numel), offset, size, stride,
    //                    False, OrderedDict())
    Pkl &tensor(const std::string &key, int64_t numel, int64_t offset, const std::vector<int64_t> &size,
                const std::vector<int64_t> &stride)
    {
        global("torch._utils", "_rebuild_tensor_v2");
        op('(');
        op('(').str("storage").global("torch", "FloatStorage").str(key).str("cpu").integer(numel).op('t').op('Q');
        integer(offset).ints(size).ints(stride).op('\x89');
        global("collections", "OrderedDict").op(')').op('R');
        return op('t').op('R');
    }
    std::string done() { return m_b + "."; }

private:
    std::string m_b;
};

std::string floats(const std::vector<float> &v)
{
    return std::string(reinterpret_cast<const char *>(v.data()), v.size() * 4);
}

// ---- loading in a child process ----

struct ChildLoad {
    bool ok = false;
    std::string message;
    int64_t extraKb = -1;   // VmHWM after the load minus VmRSS before it
    int64_t extraVmKb = -1; // VmPeak after minus VmSize before (address space, not memory)
    QString diagnostics;    // the child's stderr, when something went wrong
};

int64_t procStatusKb(const char *field)
{
    std::ifstream in("/proc/self/status");
    std::string line;
    const std::string key = std::string(field) + ":";
    while (std::getline(in, line))
        if (line.rfind(key, 0) == 0)
            return std::atoll(line.c_str() + key.size());
    return -1;
}

QString selfExe()
{
    return QFile::symLinkTarget(QStringLiteral("/proc/self/exe"));
}

// Engine::load(vit, sae) in a fresh process of this binary.
ChildLoad loadInChild(const std::string &vit, const std::string &sae)
{
    QProcess p;
    p.start(selfExe(), {QStringLiteral("--load-child"), QString::fromStdString(vit), QString::fromStdString(sae)});
    ChildLoad r;
    if (!p.waitForFinished(300000)) {
        p.kill();
        p.waitForFinished();
        r.diagnostics = QStringLiteral("child did not finish");
        return r;
    }
    r.diagnostics = QString::fromUtf8(p.readAllStandardError()).right(2000);
    const QStringList lines = QString::fromUtf8(p.readAllStandardOutput()).split('\n');
    for (int i = 0; i < lines.size(); ++i) {
        if (!lines[i].startsWith(QLatin1String("RESULT ")))
            continue;
        const QStringList f = lines[i].mid(7).split(' ');
        if (f.size() < 3)
            break;
        r.ok = f[0] == QLatin1String("1");
        r.extraKb = f[1].toLongLong();
        r.extraVmKb = f[2].toLongLong();
        if (i + 1 < lines.size())
            r.message = lines[i + 1].toStdString();
        return r;
    }
    r.diagnostics += QStringLiteral(" (exit %1, no RESULT line)").arg(p.exitCode());
    return r;
}

int loadChild(const char *vit, const char *sae)
{
    EngineParams params;
    params.vitPath = vit;
    params.saePath = sae;
    params.device = DeviceChoice::Cpu;
    params.threads = 1;
    params.precision = Precision::Fp32;
    const int64_t rss = procStatusKb("VmRSS"), vm = procStatusKb("VmSize");
    auto engine = Engine::load(params);
    const int64_t hwm = procStatusKb("VmHWM"), vmPeak = procStatusKb("VmPeak");
    std::string message = engine.ok() ? std::string() : engine.message();
    for (char &c : message)
        if (c == '\n')
            c = ' ';
    std::printf("RESULT %d %lld %lld\n%s\n", engine.ok() ? 1 : 0, (long long)(hwm - rss), (long long)(vmPeak - vm),
                message.c_str());
    std::fflush(stdout);
    return 0;
}

bool contains(const std::string &text, const std::string &part)
{
    return text.find(part) != std::string::npos;
}

// A tiny SAE in the published format (our writer) that fits the demo ViT (width 96), as
// records to tamper with.
std::vector<ZipRecord> tinySaeRecords(const QTemporaryDir &dir)
{
    SaeFileContent c;
    c.dIn = 96;
    c.dSae = 8;
    c.wEnc.assign(96 * 8, 0.5f);
    c.bEnc.assign(8, 0.f);
    c.wDec.assign(96 * 8, 0.25f);
    c.bDec.assign(96, 0.f);
    const std::string path = dir.filePath(QStringLiteral("tiny_sae.pt")).toStdString();
    if (!saveSaeFile(path, c).ok())
        return {};
    return recordsOf(path);
}

} // namespace

class TestCheckpointSafety : public QObject {
    Q_OBJECT

    QTemporaryDir m_dir;
    std::string m_vit = demoModel("demo_vit.pth");
    ChildLoad m_legit; // the demo models, loaded the same way

    std::string hostilePath(const char *name) const { return m_dir.filePath(QString::fromLatin1(name)).toStdString(); }

    // Loads `sae` (with the demo ViT) in a child and checks that it is refused with a message
    // naming the file and containing every part of `problem`, and that refusing it took less
    // than 256 MB of memory more than loading the demo models (and less than 1 GB more address
    // space).
    void expectRefused(const std::string &sae, const std::vector<std::string> &problem)
    {
        const ChildLoad r = loadInChild(m_vit, sae);
        qInfo("%s: ok=%d, peak +%lld KB resident, +%lld KB address space: %s", sae.c_str(), int(r.ok),
              (long long)r.extraKb, (long long)r.extraVmKb, r.message.c_str());
        QVERIFY2(r.extraKb >= 0, qPrintable(r.diagnostics));
        QVERIFY2(!r.ok, "the hostile file was loaded");
        QVERIFY2(contains(r.message, sae), r.message.c_str());
        for (const std::string &part : problem)
            QVERIFY2(contains(r.message, part), (r.message + "  (expected: " + part + ")").c_str());
        QVERIFY2(r.extraKb < m_legit.extraKb + kMaxExtraKb,
                 qPrintable(QStringLiteral("refusing took %1 MB of memory").arg(r.extraKb / 1024)));
        QVERIFY2(r.extraVmKb < m_legit.extraVmKb + kMaxExtraVmKb,
                 qPrintable(QStringLiteral("refusing reserved %1 MB of address space").arg(r.extraVmKb / 1024)));
    }

private slots:
    void initTestCase()
    {
        QVERIFY(m_dir.isValid());
        m_legit = loadInChild(m_vit, demoModel("demo_sae.pt"));
        qInfo("demo models: ok=%d, peak +%lld KB resident, +%lld KB address space %s", int(m_legit.ok),
              (long long)m_legit.extraKb, (long long)m_legit.extraVmKb, m_legit.message.c_str());
        QVERIFY2(m_legit.ok && m_legit.extraKb >= 0,
                 qPrintable(QString::fromStdString(m_legit.message) + m_legit.diagnostics));
    }

    // The helpers themselves: the CRC of zeros and the bomb are what zlib/miniz expect.
    void helpersAreValid()
    {
        QCOMPARE(crc32OfZeros(0), crc32Of(std::string()));
        QCOMPARE(crc32OfZeros(1), crc32Of(std::string(1, '\0')));
        QCOMPARE(crc32OfZeros(1033), crc32Of(std::string(1033, '\0')));
        // A small bomb inflates (through LibTorch's miniz) to exactly its declared zeros.
        const Deflated small = deflateBomb(40);
        const QString path = m_dir.filePath(QStringLiteral("small_bomb.zip"));
        ZipRecord bomb;
        bomb.name = "payload";
        bomb.bytes = small.bytes;
        bomb.method = 8;
        bomb.declaredSize = small.inflatedSize;
        bomb.crc = crc32OfZeros(small.inflatedSize);
        QVERIFY(writeZip(path, {stored("version", "3\n"), bomb}));
        caffe2::serialize::PyTorchStreamReader reader(path.toStdString());
        at::DataPtr data;
        size_t n = 0;
        std::tie(data, n) = reader.getRecord("payload");
        QCOMPARE(n, size_t(1 + 258 * 40));
        const char *p = static_cast<const char *>(data.get());
        QVERIFY(std::all_of(p, p + n, [](char c) { return c == 0; }));
    }

    // Item 3: the names torch.save and the published files use, and nothing else.
    void globalsOutsideTheAllowListAreRefused()
    {
        // The cfg of a CytoSAE file naming posix.system, loaded like any SAE file.
        auto records = tinySaeRecords(m_dir);
        QVERIFY(!records.empty());
        ZipRecord *pkl = findRecord(records, "data.pkl");
        QVERIFY(pkl);
        const std::string cfgClass = "csrc.sae_training.config\nViTSAERunnerConfig\n";
        const size_t at = pkl->bytes.find(cfgClass);
        QVERIFY(at != std::string::npos);
        pkl->bytes.replace(at, cfgClass.size(), "cposix\nsystem\n");
        *pkl = stored("data.pkl", pkl->bytes);
        const std::string path = hostilePath("posix_system_cfg.pt");
        QVERIFY(writeZip(QString::fromStdString(path), records));
        expectRefused(path, {"refusing global 'posix.system' at byte " + std::to_string(at),
                             "not one of the names torch.save and the published checkpoints use"});

        // Anywhere in the pickle, by either opcode, called or not.
        struct Case {
            const char *what;
            std::string pickle;
            const char *name;
        };
        const Case cases[] = {
            {"STACK_GLOBAL (protocol 4)", std::string("\x80\x04\x8c\x05posix\x8c\x06system\x93)R."), "posix.system"},
            {"nested in a list", Pkl().op(']').op('(').integer(1).global("builtins", "eval").op('e').done(),
             "builtins.eval"},
            {"a dict value never called", Pkl().op('}').str("k").global("os", "system").op('s').done(), "os.system"},
            {"an allowed name split at another dot",
             Pkl().global("torch", "_utils._rebuild_tensor_v2").op(')').op('R').done(),
             "torch._utils._rebuild_tensor_v2"},
            {"an allowed module with another name", Pkl().global("torch", "load").done(), "torch.load"},
            {"a storage type the reader does not map", Pkl().global("torch", "QInt8Storage").done(),
             "torch.QInt8Storage"},
        };
        for (const Case &c : cases) {
            auto parsed = parsePickle(reinterpret_cast<const uint8_t *>(c.pickle.data()), c.pickle.size());
            QVERIFY2(!parsed.ok(), c.what);
            QVERIFY2(contains(parsed.message(), std::string("refusing global '") + c.name + "'"),
                     (std::string(c.what) + ": " + parsed.message()).c_str());
        }
        // Every name of the published formats is accepted.
        for (const std::string &name : checkpointGlobals()) {
            const size_t dot = name.rfind('.');
            const std::string pickle = Pkl().global(name.substr(0, dot), name.substr(dot + 1)).done();
            auto parsed = parsePickle(reinterpret_cast<const uint8_t *>(pickle.data()), pickle.size());
            QVERIFY2(parsed.ok(), (name + ": " + parsed.message()).c_str());
        }
    }

    // Every file in the published formats, ours included, still loads.
    void publishedFormatsStillLoad()
    {
        std::vector<std::string> files = {demoModel("demo_vit.pth"), demoModel("demo_sae.pt")};
        for (const QString &name : QDir(QString::fromStdString(fixture(""))).entryList({"*.pt", "*.pth"}, QDir::Files))
            files.push_back(fixture(name.toStdString()));
        const QString shared = QStringLiteral(CYTOSAE_TEST_DATA "/../../../shared/fixtures");
        for (const QString &name : QDir(shared).entryList({"*.pt", "*.pth"}, QDir::Files))
            files.push_back((shared + "/" + name).toStdString());
        QVERIFY(files.size() >= 6);

        // Our writer's files, as the app saves trained models.
        const std::string sae = m_dir.filePath(QStringLiteral("written_sae.pt")).toStdString();
        SaeFileContent c;
        c.dIn = 3;
        c.dSae = 5;
        c.wEnc.assign(15, 1.f);
        c.bEnc.assign(5, 0.f);
        c.wDec.assign(15, 2.f);
        c.bDec.assign(3, 0.5f);
        QVERIFY(saveSaeFile(sae, c).ok());
        files.push_back(sae);
        const std::string vit = m_dir.filePath(QStringLiteral("written_vit.pth")).toStdString();
        QVERIFY(saveVitFile(vit, {{"cls_token", {1, 1, 2}, {1.f, 2.f}}}, {{"dino_head.w", {2}, {3.f, 4.f}}}).ok());
        files.push_back(vit);

        for (const std::string &file : files) {
            auto archive = TorchArchive::open(file);
            QVERIFY2(archive.ok(), (file + ": " + archive.message()).c_str());
            const PyValue &root = (*archive)->root();
            const PyValue *dict = root.get("teacher") ? root.get("teacher") : root.get("state_dict");
            QVERIFY2(dict, file.c_str());
            auto sd = (*archive)->stateDict(*dict);
            QVERIFY2(sd.ok(), (file + ": " + sd.message()).c_str());
            QVERIFY2(!sd->names.empty(), file.c_str());
        }
    }

    // Tensors that share one storage (views of parts of it, as torch.save writes a split
    // tensor) load with their own values.
    void viewsOfOneStorageLoad()
    {
        std::vector<float> values(12);
        for (int i = 0; i < 12; ++i)
            values[size_t(i)] = float(i);
        const std::string pickle = Pkl()
                                       .op('}')
                                       .op('(')
                                       .str("a")
                                       .tensor("0", 12, 0, {2, 3}, {3, 1})
                                       .str("b")
                                       .tensor("0", 12, 6, {3, 2}, {1, 3}) // a transposed view of the rest
                                       .op('u')
                                       .done();
        const QString path = m_dir.filePath(QStringLiteral("shared_storage.pt"));
        QVERIFY(
            writeZip(path, {stored("data.pkl", pickle), stored("data/0", floats(values)), stored("version", "3\n")}));
        auto archive = TorchArchive::open(path.toStdString());
        QVERIFY2(archive.ok(), archive.message().c_str());
        auto sd = (*archive)->stateDict((*archive)->root());
        QVERIFY2(sd.ok(), sd.message().c_str());
        const at::Tensor a = sd->tensors.at("a"), b = sd->tensors.at("b");
        QCOMPARE(a.sizes().vec(), (std::vector<int64_t>{2, 3}));
        QCOMPARE(a[1][2].item<float>(), 5.f);
        QCOMPARE(b.sizes().vec(), (std::vector<int64_t>{3, 2}));
        QCOMPARE(b[2][1].item<float>(), 11.f); // storage[6 + 2*1 + 1*3]
        QCOMPARE(b[1][0].item<float>(), 7.f);
        a.mul_(0); // loaded tensors are independent of each other
        QCOMPARE(b[1][0].item<float>(), 7.f);
    }

    // Item 4: a data.pkl whose headers declare 4 GB.
    void hugeDeclaredPickleIsRefused()
    {
        auto records = tinySaeRecords(m_dir);
        ZipRecord *pkl = findRecord(records, "data.pkl");
        QVERIFY(pkl);
        pkl->declaredSize = 4ull << 30;
        const std::string path = hostilePath("declared_4gb_pickle.pt");
        QVERIFY(writeZip(QString::fromStdString(path), records));
        expectRefused(path, {"record data.pkl", "4294967296 bytes"});
    }

    // Item 4: a deflate bomb (about 537 MB of zeros from 520 KB) as data.pkl.
    void deflateBombInPickleIsRefused()
    {
        auto records = tinySaeRecords(m_dir);
        ZipRecord *pkl = findRecord(records, "data.pkl");
        QVERIFY(pkl);
        becomeDeflateBomb(*pkl);
        const std::string path = hostilePath("deflate_bomb_pickle.pt");
        QVERIFY(writeZip(QString::fromStdString(path), records));
        expectRefused(path, {"record data.pkl", "compressed"});
    }

    // Item 4: the same bomb as the storage of W_enc, whose pickle declares 32 floats.
    void deflateBombInTensorRecordIsRefused()
    {
        auto records = tinySaeRecords(m_dir);
        ZipRecord *storage = findRecord(records, "data/0");
        QVERIFY(storage);
        becomeDeflateBomb(*storage);
        const std::string path = hostilePath("deflate_bomb_tensor.pt");
        QVERIFY(writeZip(QString::fromStdString(path), records));
        expectRefused(path, {"record data/0", "compressed"});
    }

    // Item 4: a 600 KB file whose W_enc is a stride-0 view of 3 x 10^8 elements.
    void repeatingViewIsRefused()
    {
        const int64_t numel = 150'000; // 600 KB of float32
        const std::string pickle = Pkl()
                                       .op('}')
                                       .str("state_dict")
                                       .op('}')
                                       .str("W_enc")
                                       .tensor("0", numel, 0, {2000, numel}, {0, 1})
                                       .op('s')
                                       .op('s')
                                       .done();
        const std::string path = hostilePath("stride0_view.pt");
        QVERIFY(writeZip(QString::fromStdString(path),
                         {stored("data.pkl", pickle), stored("data/0", std::string(size_t(numel) * 4, '\0')),
                          stored("version", "3\n")}));
        QVERIFY(QFileInfo(QString::fromStdString(path)).size() < 700'000);
        expectRefused(path, {"300000000 elements", "150000"});
    }

    // A storage record whose size differs from what the pickle declares, and a storage read by
    // two tensors as two dtypes: refused before anything is read.
    void storageSizeMismatchIsRefused()
    {
        const std::string pickle = Pkl().op('}').str("W_enc").tensor("0", 4, 0, {4}, {1}).op('s').done();
        const QString path = m_dir.filePath(QStringLiteral("storage_size.pt"));
        QVERIFY(writeZip(
            path, {stored("data.pkl", pickle), stored("data/0", std::string(64, '\0')), stored("version", "3\n")}));
        auto archive = TorchArchive::open(path.toStdString());
        QVERIFY2(archive.ok(), archive.message().c_str());
        auto sd = (*archive)->stateDict((*archive)->root());
        QVERIFY(!sd.ok());
        QVERIFY2(contains(sd.message(), "data/0") && contains(sd.message(), "64 bytes") && contains(sd.message(), "16"),
                 sd.message().c_str());
    }

    // Records that overlap (many names for the same bytes would multiply them) and a name that
    // appears twice are refused before any record is read.
    void overlappingAndDuplicateRecordsAreRefused()
    {
        auto records = tinySaeRecords(m_dir);
        QVERIFY(!records.empty());
        const QString twice = m_dir.filePath(QStringLiteral("twice.pt"));
        auto dup = records;
        dup.push_back(*findRecord(records, "data/1"));
        QVERIFY(writeZip(twice, dup));
        auto a = TorchArchive::open(twice.toStdString());
        QVERIFY(!a.ok());
        QVERIFY2(contains(a.message(), "data/1") && contains(a.message(), "twice"), a.message().c_str());

        // Overlap: rewrite the central directory entry of data/1 to point at data/0's header.
        const QString overlap = m_dir.filePath(QStringLiteral("overlap.pt"));
        QVERIFY(writeZip(overlap, records));
        QFile f(overlap);
        QVERIFY(f.open(QIODevice::ReadWrite));
        QByteArray all = f.readAll();
        int local0 = -1;
        for (int pos = 0; (pos = all.indexOf("PK\x03\x04", pos)) >= 0; ++pos)
            if (all.mid(pos + 30, 14) == "archive/data/0") {
                local0 = pos;
                break;
            }
        QVERIFY(local0 >= 0);
        const int central1 = all.indexOf("PK\x01\x02", 0);
        int entry = -1;
        for (int pos = central1; (pos = all.indexOf("PK\x01\x02", pos)) >= 0; ++pos)
            if (all.mid(pos + 46, 14) == "archive/data/1") {
                entry = pos;
                break;
            }
        QVERIFY(entry >= 0);
        for (int i = 0; i < 4; ++i)
            all[entry + 42 + i] = char((local0 >> (8 * i)) & 0xFF);
        QVERIFY(f.seek(0));
        QCOMPARE(f.write(all), qint64(all.size()));
        f.close();
        auto b = TorchArchive::open(overlap.toStdString());
        QVERIFY(!b.ok());
        QVERIFY2(contains(b.message(), "overlap"), b.message().c_str());
    }

    // Python's "a repeated key replaces the value" without a scan per key: a 1.2 MB pickle of
    // 100,000 keys took about 40 s, quadratic in the keys.
    void manyDictKeysParseQuickly()
    {
        Pkl p;
        p.op('}').op('(');
        for (int i = 0; i < 100'000; ++i)
            p.str("key" + std::to_string(i)).integer(i);
        p.str("key7").integer(-1); // replaces
        p.op('u');
        const std::string pickle = p.done();
        QElapsedTimer timer;
        timer.start();
        auto parsed = parsePickle(reinterpret_cast<const uint8_t *>(pickle.data()), pickle.size());
        const qint64 ms = timer.elapsed();
        QVERIFY2(parsed.ok(), parsed.message().c_str());
        QCOMPARE((*parsed)->dict.size(), size_t(100'000));
        QCOMPARE((*parsed)->get("key7")->intValue, int64_t(-1));
        QCOMPARE((*parsed)->dict[7].first->text, std::string("key7"));
        QVERIFY2(ms < 10'000, qPrintable(QStringLiteral("%1 ms").arg(ms)));
    }

    // A small data.pkl that copies one big dict into many objects (BUILD keeps a copy of its
    // state): 100 copies of 200,000 entries would take 640 MB.
    void pickleCopiesAreBounded()
    {
        Pkl p;
        p.op('N').put(1).op('0');
        p.global("src.sae_training.config", "ViTSAERunnerConfig").put(2).op('0');
        p.op('}').put(3).op('(');
        for (int i = 0; i < 200'000; ++i)
            p.integer(i).get(1); // int keys: never merged
        p.op('u');
        p.op('0'); // the dict stays in the memo
        p.op('}').str("state_dict").op(']');
        for (int i = 0; i < 100; ++i)
            p.get(2).op(')').op('\x81').get(3).op('b').op('a');
        p.op('s');
        const std::string path = hostilePath("copied_dict.pt");
        QVERIFY(writeZip(QString::fromStdString(path), {stored("data.pkl", p.done()), stored("version", "3\n")}));
        expectRefused(path, {"not a supported checkpoint", "memory"});
    }
};

int main(int argc, char **argv)
{
    if (argc == 4 && std::strcmp(argv[1], "--load-child") == 0)
        return loadChild(argv[2], argv[3]);
    TestCheckpointSafety test;
    return QTest::qExec(&test, argc, argv);
}

#include "tst_checkpointsafety.moc"
