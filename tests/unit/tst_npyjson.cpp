#include "io/JsonReader.h"
#include "io/JsonWriter.h"
#include "io/NpyWriter.h"

#include <QByteArray>
#include <QFile>
#include <QTemporaryDir>
#include <QtTest>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

using cytosae::io::JsonWriter;
using cytosae::io::npyHeader;
using cytosae::io::readNpy;
using cytosae::io::writeNpyFloat32;
using cytosae::io::writeNpyInt32;

namespace {

QByteArray readAll(const QString &path)
{
    QFile f(path);
    if (!f.open(QIODevice::ReadOnly))
        return {};
    return f.readAll();
}

bool writeAll(const QString &path, const QByteArray &bytes)
{
    QFile f(path);
    if (!f.open(QIODevice::WriteOnly | QIODevice::Truncate))
        return false;
    return f.write(bytes) == bytes.size();
}

int headerLengthField(const QByteArray &file)
{
    return int(uint8_t(file[8])) | (int(uint8_t(file[9])) << 8);
}

std::string compact(const std::function<void(JsonWriter &)> &build)
{
    std::ostringstream os;
    JsonWriter w(os, false);
    build(w);
    return os.str();
}

} // namespace

class TestNpyJson : public QObject {
    Q_OBJECT

private slots:
    void initTestCase() { QVERIFY(m_dir.isValid()); }

    void npyFloatRoundTrip();
    void npyInt32RoundTrip();
    void npyHeaderAlignedTo64();
    void npyExactHeaderText();
    void npyShapeFormatting();
    void npyReaderAcceptsNumpyVariants();
    void npyReaderRejectsBadFiles();
    void npyWriteErrorNamesPath();

    void jsonEscaping();
    void jsonNestingAndCommas();
    void jsonPrettyOutput();
    void jsonNumbers();
    void jsonNonFiniteIsNull();
    void jsonMisuseIsReported();
    void jsonReaderRoundTripAndErrors();

private:
    std::string spath(const QString &name) const { return m_dir.filePath(name).toStdString(); }
    QTemporaryDir m_dir;
};

void TestNpyJson::npyFloatRoundTrip()
{
    std::vector<float> data(2 * 3 * 4);
    for (size_t i = 0; i < data.size(); ++i)
        data[i] = float(i) * -0.37f + 1e-7f;
    data[5] = std::numeric_limits<float>::quiet_NaN();
    data[6] = -std::numeric_limits<float>::infinity();
    data[7] = std::numeric_limits<float>::denorm_min();

    const auto st = writeNpyFloat32(spath("f.npy"), data.data(), {2, 3, 4});
    QVERIFY2(st.ok(), st.message().c_str());
    auto arr = readNpy(spath("f.npy"));
    QVERIFY2(arr.ok(), arr.message().c_str());
    QCOMPARE(arr->descr, std::string("<f4"));
    QCOMPARE(arr->shape, (std::vector<int64_t>{2, 3, 4}));
    QCOMPARE(arr->bytes.size(), data.size() * 4);
    // Bitwise comparison so NaN and the denormal are checked too.
    QVERIFY(std::memcmp(arr->bytes.data(), data.data(), arr->bytes.size()) == 0);

    // The file itself: a 128-byte header (the dict alone exceeds 54 bytes, so 64 is too
    // small) followed by exactly the little-endian floats.
    const QByteArray file = readAll(m_dir.filePath("f.npy"));
    QCOMPARE(file.size(), qsizetype(128 + data.size() * 4));
    float first;
    std::memcpy(&first, file.constData() + 128, 4);
    QCOMPARE(first, 1e-7f);
    const unsigned char oneLe[4] = {0x00, 0x00, 0x80, 0x3F}; // 1.0f little-endian
    const float one = 1.0f;
    QVERIFY(std::memcmp(&one, oneLe, 4) == 0); // the test host is little-endian, like the file
}

void TestNpyJson::npyInt32RoundTrip()
{
    const std::vector<int32_t> data = {0, 1, -1, std::numeric_limits<int32_t>::min(),
                                       std::numeric_limits<int32_t>::max(), 123456789, -42};
    const auto st = writeNpyInt32(spath("i.npy"), data.data(), {7});
    QVERIFY2(st.ok(), st.message().c_str());
    auto arr = readNpy(spath("i.npy"));
    QVERIFY2(arr.ok(), arr.message().c_str());
    QCOMPARE(arr->descr, std::string("<i4"));
    QCOMPARE(arr->shape, (std::vector<int64_t>{7}));
    std::vector<int32_t> back(7);
    QCOMPARE(arr->bytes.size(), size_t(28));
    std::memcpy(back.data(), arr->bytes.data(), 28);
    QCOMPARE(back, data);

    const QByteArray file = readAll(m_dir.filePath("i.npy"));
    // -1 in the third slot: four 0xFF bytes right after 2 elements.
    QCOMPARE(file.mid(128 + 8, 4), QByteArray("\xFF\xFF\xFF\xFF", 4));
    // INT32_MIN little-endian.
    QCOMPARE(file.mid(128 + 12, 4), QByteArray("\x00\x00\x00\x80", 4));
}

void TestNpyJson::npyHeaderAlignedTo64()
{
    const std::vector<std::vector<int64_t>> shapes = {
        {}, {1}, {0}, {12345678901LL / 1000}, {3, 224, 224}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10},
        {256, 768}, {0, 5}, {99999, 1, 1}};
    for (const auto &shape : shapes) {
        auto header = npyHeader("<f4", shape);
        QVERIFY2(header.ok(), header.message().c_str());
        const std::string &h = *header;
        QCOMPARE(h.size() % 64, size_t(0));
        QCOMPARE(h.substr(0, 6), std::string("\x93NUMPY"));
        QCOMPARE(int(h[6]), 1);
        QCOMPARE(int(h[7]), 0);
        const size_t len = size_t(uint8_t(h[8])) | (size_t(uint8_t(h[9])) << 8);
        QCOMPARE(len + 10, h.size());
        QCOMPARE(h.back(), '\n');
        QVERIFY(h.find("'fortran_order': False") != std::string::npos);
    }

    // Through the writer as well, with the file size checked against the data size.
    const std::vector<int32_t> data(10 * 20, 7);
    QVERIFY(writeNpyInt32(spath("a.npy"), data.data(), {10, 20}).ok());
    const QByteArray file = readAll(m_dir.filePath("a.npy"));
    const int total = headerLengthField(file) + 10;
    QCOMPARE(total % 64, 0);
    QCOMPARE(file[total - 1], '\n');
    QCOMPARE(file.size(), qsizetype(total + 800));
}

void TestNpyJson::npyExactHeaderText()
{
    std::vector<float> data(3 * 224 * 224, 0.5f);
    QVERIFY(writeNpyFloat32(spath("img.npy"), data.data(), {3, 224, 224}).ok());
    const QByteArray file = readAll(m_dir.filePath("img.npy"));

    const QByteArray dict("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 224, 224), }");
    QCOMPARE(dict.size(), qsizetype(66));
    // 10 prefix bytes + 66 + 51 spaces + '\n' = 128; the length field counts 118.
    const QByteArray expected = QByteArray("\x93NUMPY\x01\x00\x76\x00", 10) + dict
        + QByteArray(51, ' ') + QByteArray("\n");
    QCOMPARE(file.left(128), expected);
    QCOMPARE(file.size(), qsizetype(128 + data.size() * 4));
}

void TestNpyJson::npyShapeFormatting()
{
    auto oneD = npyHeader("<i4", {7});
    QVERIFY(oneD.ok());
    QVERIFY2(oneD->find("'shape': (7,), }") != std::string::npos, oneD->c_str());
    QCOMPARE(oneD->size(), size_t(128));

    auto scalar = npyHeader("<f4", {});
    QVERIFY(scalar.ok());
    QVERIFY2(scalar->find("'shape': (), }") != std::string::npos, scalar->c_str());

    auto twoD = npyHeader("<f4", {256, 768});
    QVERIFY(twoD.ok());
    QVERIFY2(twoD->find("'shape': (256, 768), }") != std::string::npos, twoD->c_str());

    auto empty = npyHeader("<f4", {0, 3});
    QVERIFY(empty.ok());
    QVERIFY2(empty->find("'shape': (0, 3), }") != std::string::npos, empty->c_str());

    QVERIFY(!npyHeader("<f8", {2}).ok());

    // 0-d and zero-size arrays round-trip too.
    const float pi = 3.14159f;
    QVERIFY(writeNpyFloat32(spath("scalar.npy"), &pi, {}).ok());
    auto s = readNpy(spath("scalar.npy"));
    QVERIFY2(s.ok(), s.message().c_str());
    QVERIFY(s->shape.empty());
    QCOMPARE(s->bytes.size(), size_t(4));
    float back;
    std::memcpy(&back, s->bytes.data(), 4);
    QCOMPARE(back, pi);

    QVERIFY(writeNpyFloat32(spath("zero.npy"), nullptr, {0, 3}).ok());
    auto z = readNpy(spath("zero.npy"));
    QVERIFY2(z.ok(), z.message().c_str());
    QCOMPARE(z->shape, (std::vector<int64_t>{0, 3}));
    QVERIFY(z->bytes.empty());
}

void TestNpyJson::npyReaderAcceptsNumpyVariants()
{
    // Spacing and version variants NumPy itself produces: 2.0 header with a 4-byte length,
    // no trailing ", " before "}", extra padding.
    const QByteArray dict("{'descr': '<i4', 'fortran_order': False, 'shape': (2, 1)}");
    QByteArray hdr = dict + QByteArray(128 - 12 - dict.size() - 1, ' ') + "\n";
    QByteArray file = QByteArray("\x93NUMPY\x02\x00", 8);
    const uint32_t len = uint32_t(hdr.size());
    file.append(char(len & 0xFF)).append(char(len >> 8)).append('\0').append('\0');
    file += hdr;
    file += QByteArray("\x05\x00\x00\x00\xFB\xFF\xFF\xFF", 8); // 5, -5
    QCOMPARE(file.size(), qsizetype(128 + 8));
    QVERIFY(writeAll(m_dir.filePath("v2.npy"), file));

    auto arr = readNpy(spath("v2.npy"));
    QVERIFY2(arr.ok(), arr.message().c_str());
    QCOMPARE(arr->descr, std::string("<i4"));
    QCOMPARE(arr->shape, (std::vector<int64_t>{2, 1}));
    int32_t v[2];
    std::memcpy(v, arr->bytes.data(), 8);
    QCOMPARE(v[0], 5);
    QCOMPARE(v[1], -5);
}

void TestNpyJson::npyReaderRejectsBadFiles()
{
    const std::vector<float> data = {1.f, 2.f, 3.f, 4.f};
    QVERIFY(writeNpyFloat32(spath("good.npy"), data.data(), {2, 2}).ok());
    const QByteArray good = readAll(m_dir.filePath("good.npy"));
    QCOMPARE(good.size(), qsizetype(128 + 16));

    struct Case {
        const char *name;
        QByteArray bytes;
        const char *expectInMessage;
    };
    QByteArray badMagic = good;
    badMagic[1] = 'X';
    QByteArray truncated = good.left(good.size() - 3);
    QByteArray extra = good + QByteArray("\0\0\0\0", 4);
    QByteArray fortran = good;
    fortran.replace("'fortran_order': False", "'fortran_order': True ");
    QByteArray f8 = good;
    f8.replace("'<f4'", "'<f8'");
    QByteArray bigEndian = good;
    bigEndian.replace("'<f4'", "'>f4'");
    QByteArray version3 = good;
    version3[6] = 3;
    QByteArray noNewline = good;
    noNewline[127] = ' ';

    const std::vector<Case> cases = {
        {"magic.npy", badMagic, "magic"},
        {"trunc.npy", truncated, "13 bytes but shape (2, 2) needs 16"},
        {"extra.npy", extra, "20 bytes"},
        {"fortran.npy", fortran, "Fortran"},
        {"f8.npy", f8, "'<f8'"},
        {"be.npy", bigEndian, "'>f4'"},
        {"v3.npy", version3, "version 3.0"},
        {"nl.npy", noNewline, "newline"},
        {"short.npy", good.left(5), "too short"},
        {"empty.npy", QByteArray(), "too short"},
    };
    for (const Case &c : cases) {
        QVERIFY(writeAll(m_dir.filePath(c.name), c.bytes));
        auto res = readNpy(spath(c.name));
        QVERIFY2(!res.ok(), c.name);
        QVERIFY2(res.message().find(c.expectInMessage) != std::string::npos, res.message().c_str());
        // Reader messages name the file.
        QVERIFY2(res.message().find(c.name) != std::string::npos, res.message().c_str());
    }

    auto missing = readNpy(spath("nope.npy"));
    QVERIFY(!missing.ok());
    QVERIFY2(missing.message().find("nope.npy") != std::string::npos, missing.message().c_str());
}

void TestNpyJson::npyWriteErrorNamesPath()
{
    const float v = 1.f;
    const std::string bad = spath("no-such-dir/out.npy");
    const auto st = writeNpyFloat32(bad, &v, {1});
    QVERIFY(!st.ok());
    QVERIFY2(st.message().rfind(bad, 0) == 0, st.message().c_str());
    QVERIFY2(st.message().find("cannot open for writing") != std::string::npos, st.message().c_str());

    const auto negative = writeNpyFloat32(spath("neg.npy"), &v, {-1});
    QVERIFY(!negative.ok());
    QVERIFY2(negative.message().find("(-1,)") != std::string::npos, negative.message().c_str());
    QVERIFY(!QFile::exists(m_dir.filePath("neg.npy")));

    const auto noData = writeNpyInt32(spath("nodata.npy"), nullptr, {3});
    QVERIFY(!noData.ok());
    QVERIFY2(noData.message().find("nodata.npy") != std::string::npos, noData.message().c_str());
}

void TestNpyJson::jsonEscaping()
{
    QCOMPARE(JsonWriter::escape("plain"), std::string("plain"));
    QCOMPARE(JsonWriter::escape("a\"b"), std::string("a\\\"b"));
    QCOMPARE(JsonWriter::escape("back\\slash"), std::string("back\\\\slash"));
    QCOMPARE(JsonWriter::escape("line\nbreak\ttab\r"), std::string("line\\u000abreak\\u0009tab\\u000d"));
    QCOMPARE(JsonWriter::escape(std::string("nul\0x", 5)), std::string("nul\\u0000x"));
    QCOMPARE(JsonWriter::escape("\x1f\x7f"), std::string("\\u001f\x7f"));
    // UTF-8 passes through byte for byte; '/' needs no escape.
    QCOMPARE(JsonWriter::escape("Zelle \xc3\xa9/\xe2\x9c\x93"), std::string("Zelle \xc3\xa9/\xe2\x9c\x93"));

    const std::string out = compact([](JsonWriter &w) {
        w.beginObject().key("we\"ird\nkey").value("C:\\path\\\"x\"").endObject();
    });
    QCOMPARE(out, std::string("{\"we\\\"ird\\u000akey\":\"C:\\\\path\\\\\\\"x\\\"\"}"));
}

void TestNpyJson::jsonNestingAndCommas()
{
    std::ostringstream os;
    JsonWriter w(os, false);
    w.beginObject();
    w.key("a").value(1);
    w.key("b").beginArray().value(1).value(2).beginObject().key("c").null().endObject().endArray();
    w.key("d").beginObject().endObject();
    w.key("e").beginArray().endArray();
    w.key("f").beginArray().beginArray().value(true).endArray().beginArray().value(false).endArray().endArray();
    w.key("g").value(std::string("s"));
    w.key("h").value(nullptr);
    w.endObject();
    QVERIFY2(w.ok(), w.error().c_str());
    QVERIFY(w.complete());
    QCOMPARE(os.str(), std::string("{\"a\":1,\"b\":[1,2,{\"c\":null}],\"d\":{},\"e\":[],"
                                   "\"f\":[[true],[false]],\"g\":\"s\",\"h\":null}"));

    // Top-level array of scalars.
    QCOMPARE(compact([](JsonWriter &j) { j.beginArray().value("x").value(2.5).value(-3).endArray(); }),
             std::string("[\"x\",2.5,-3]"));
    // A bare top-level scalar is valid JSON as well.
    QCOMPARE(compact([](JsonWriter &j) { j.value("only"); }), std::string("\"only\""));
}

void TestNpyJson::jsonPrettyOutput()
{
    std::ostringstream os;
    JsonWriter w(os); // pretty by default
    w.beginObject();
    w.key("name").value("cell");
    w.key("box").beginArray().value(1).value(2).endArray();
    w.key("empty").beginArray().endArray();
    w.key("meta").beginObject().key("ok").value(true).endObject();
    w.endObject();
    QVERIFY(w.complete());
    QCOMPARE(os.str(), std::string("{\n"
                                   "    \"name\": \"cell\",\n"
                                   "    \"box\": [\n"
                                   "        1,\n"
                                   "        2\n"
                                   "    ],\n"
                                   "    \"empty\": [],\n"
                                   "    \"meta\": {\n"
                                   "        \"ok\": true\n"
                                   "    }\n"
                                   "}\n"));
}

void TestNpyJson::jsonNumbers()
{
    QCOMPARE(compact([](JsonWriter &w) { w.value(0.1f); }), std::string("0.100000001"));
    QCOMPARE(compact([](JsonWriter &w) { w.value(0.1); }), std::string("0.10000000000000001"));
    QCOMPARE(compact([](JsonWriter &w) { w.value(1.0f); }), std::string("1"));
    QCOMPARE(compact([](JsonWriter &w) { w.value(-2.5); }), std::string("-2.5"));
    QCOMPARE(compact([](JsonWriter &w) { w.value(1e20f); }), std::string("1.00000002e+20"));
    QCOMPARE(compact([](JsonWriter &w) { w.value(1e-300); }), std::string("1e-300"));
    QCOMPARE(compact([](JsonWriter &w) { w.value(int64_t(-9223372036854775807LL - 1)); }),
             std::string("-9223372036854775808"));
    QCOMPARE(compact([](JsonWriter &w) { w.value(std::numeric_limits<uint64_t>::max()); }),
             std::string("18446744073709551615"));
    QCOMPARE(compact([](JsonWriter &w) { w.value(42u); }), std::string("42"));
    QCOMPARE(compact([](JsonWriter &w) { w.value(true); }), std::string("true"));
    QCOMPARE(compact([](JsonWriter &w) { w.value(false); }), std::string("false"));

    // %.9g / %.17g are enough for every float / double to read back exactly.
    const float floats[] = {0.1f, 1.0f / 3.0f, 16777217.0f, 3.4028235e38f, 1.17549435e-38f,
                            1.4e-45f, -0.0f, 123.456f};
    for (float f : floats) {
        const std::string s = JsonWriter::formatNumber(f, 9);
        QCOMPARE(std::strtof(s.c_str(), nullptr), f);
    }
    const double doubles[] = {0.1, 1.0 / 3.0, 2.2250738585072014e-308, 1.7976931348623157e308,
                              4.9e-324, 9007199254740993.0};
    for (double d : doubles) {
        const std::string s = JsonWriter::formatNumber(d, 17);
        QCOMPARE(std::strtod(s.c_str(), nullptr), d);
    }
}

void TestNpyJson::jsonNonFiniteIsNull()
{
    const std::string out = compact([](JsonWriter &w) {
        w.beginArray()
            .value(std::numeric_limits<double>::quiet_NaN())
            .value(std::numeric_limits<float>::quiet_NaN())
            .value(std::numeric_limits<double>::infinity())
            .value(-std::numeric_limits<float>::infinity())
            .value(0.0)
            .endArray();
    });
    QCOMPARE(out, std::string("[null,null,null,null,0]"));
}

void TestNpyJson::jsonMisuseIsReported()
{
    {
        std::ostringstream os;
        JsonWriter w(os, false);
        w.beginObject().value(1); // no key
        QVERIFY(!w.ok());
        QVERIFY2(w.error().find("without a key") != std::string::npos, w.error().c_str());
        QCOMPARE(os.str(), std::string("{")); // the bad value was not written
    }
    {
        std::ostringstream os;
        JsonWriter w(os, false);
        w.beginArray().key("k");
        QVERIFY(!w.ok());
        QVERIFY2(w.error().find("outside an object") != std::string::npos, w.error().c_str());
    }
    {
        std::ostringstream os;
        JsonWriter w(os, false);
        w.beginArray().endObject();
        QVERIFY(!w.ok());
        QVERIFY2(w.error().find("endObject") != std::string::npos, w.error().c_str());
    }
    {
        std::ostringstream os;
        JsonWriter w(os, false);
        w.beginObject().key("a").endObject();
        QVERIFY(!w.ok());
        QVERIFY2(w.error().find("no value") != std::string::npos, w.error().c_str());
    }
    {
        std::ostringstream os;
        JsonWriter w(os, false);
        w.value(1).value(2);
        QVERIFY(!w.ok());
        QCOMPARE(os.str(), std::string("1"));
    }
    {
        std::ostringstream os;
        JsonWriter w(os, false);
        w.beginArray().value(1);
        QVERIFY(w.ok());
        QVERIFY(!w.complete()); // still open
        w.endArray();
        QVERIFY(w.complete());
        QCOMPARE(os.str(), std::string("[1]"));
    }
}

QTEST_APPLESS_MAIN(TestNpyJson)
void TestNpyJson::jsonReaderRoundTripAndErrors()
{
    // What the writer writes, the reader reads back: strings with escapes, numbers as text.
    std::ostringstream out;
    cytosae::io::JsonWriter w(out, true);
    w.beginObject().key("s").value("a\"b\\c\n\u00e9\x01").key("d").value(0.1 + 0.2).key("i").value(int64_t(-9007199254740993));
    w.key("a").beginArray().value(true).null().beginObject().endObject().endArray().endObject();
    QVERIFY(w.complete());
    auto v = cytosae::io::parseJson(out.str());
    QVERIFY2(v.ok(), v.message().c_str());
    QCOMPARE(v->find("s")->text, std::string("a\"b\\c\n\u00e9\x01"));
    QCOMPARE(v->find("d")->number(), 0.1 + 0.2);
    QCOMPARE(v->find("i")->text, std::string("-9007199254740993")); // exact beyond double precision
    QCOMPARE(int(v->find("a")->items.size()), 3);
    QVERIFY(v->find("a")->items[1].isNull());
    QVERIFY(!v->find("missing"));
    // \u escapes including a surrogate pair.
    auto u = cytosae::io::parseJson("[\"\\u00e9\\ud83d\\ude00\"]");
    QVERIFY(u.ok());
    QCOMPARE(u->items[0].text, std::string("\u00e9\xF0\x9F\x98\x80"));
    // Errors say where.
    auto bad = cytosae::io::parseJson("{\n  \"a\": [1, 2,,]\n}");
    QVERIFY(!bad.ok());
    QVERIFY2(bad.message().find("line 2, column") != std::string::npos, bad.message().c_str());
    QVERIFY(!cytosae::io::parseJson("[1] x").ok());
    QVERIFY(!cytosae::io::parseJson("\"open").ok());
    QVERIFY(!cytosae::io::parseJson(std::string(100, '[') + std::string(100, ']')).ok()); // too deep
    QVERIFY(!cytosae::io::parseJson("{\"a\" 1}").ok());
    QVERIFY(!cytosae::io::parseJson("01x").ok());
    QVERIFY(!cytosae::io::parseJson("[1]", 2).ok()); // over the size limit
}

#include "tst_npyjson.moc"
