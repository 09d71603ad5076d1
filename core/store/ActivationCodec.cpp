#include "store/ActivationCodec.h"

#include <algorithm>
#include <cstring>

namespace cytosae::store {

uint16_t floatToHalf(float value)
{
    uint32_t f;
    std::memcpy(&f, &value, 4);
    const uint32_t sign = (f >> 16) & 0x8000u;
    int32_t exp = int32_t((f >> 23) & 0xff);
    uint32_t mant = f & 0x7fffffu;
    if (exp == 0xff) // inf / nan
        return uint16_t(sign | 0x7c00u | (mant ? 0x200u : 0u));
    exp = exp - 127 + 15;
    if (exp >= 0x1f)
        return uint16_t(sign | 0x7c00u); // overflow -> inf
    if (exp <= 0) {
        if (exp < -10)
            return uint16_t(sign);
        mant |= 0x800000u;
        const uint32_t shift = uint32_t(14 - exp);
        uint32_t half = mant >> shift;
        const uint32_t rem = mant & ((1u << shift) - 1);
        const uint32_t halfway = 1u << (shift - 1);
        if (rem > halfway || (rem == halfway && (half & 1u)))
            ++half;
        return uint16_t(sign | half);
    }
    uint32_t half = sign | (uint32_t(exp) << 10) | (mant >> 13);
    const uint32_t rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (half & 1u)))
        ++half; // may carry into the exponent, which is the correct rounding
    return uint16_t(half);
}

float halfToFloat(uint16_t h)
{
    const uint32_t sign = uint32_t(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    uint32_t f;
    if (exp == 0) {
        if (mant == 0) {
            f = sign;
        } else {
            exp = 127 - 15 + 1;
            while (!(mant & 0x400u)) {
                mant <<= 1;
                --exp;
            }
            mant &= 0x3ffu;
            f = sign | (exp << 23) | (mant << 13);
        }
    } else if (exp == 0x1f) {
        f = sign | 0x7f800000u | (mant << 13);
    } else {
        f = sign | ((exp - 15 + 127) << 23) | (mant << 13);
    }
    float out;
    std::memcpy(&out, &f, 4);
    return out;
}

namespace {

class Writer {
public:
    void u8(uint8_t v) { m_out.push_back(v); }
    void u16(uint16_t v) { put(&v, 2); }
    void u32(uint32_t v) { put(&v, 4); }
    void f32(float v) { put(&v, 4); }
    void id(int32_t v, int bytes) { bytes == 2 ? u16(uint16_t(v)) : u32(uint32_t(v)); }
    std::vector<uint8_t> take() { return std::move(m_out); }

private:
    // The format is little-endian; so is every platform LibTorch supports here.
    void put(const void *p, size_t n)
    {
        const auto *b = static_cast<const uint8_t *>(p);
        m_out.insert(m_out.end(), b, b + n);
    }
    std::vector<uint8_t> m_out;
};

class Reader {
public:
    Reader(const uint8_t *data, size_t size) : m_data(data), m_size(size) {}
    bool has(size_t n) const { return n <= m_size - m_pos; }
    uint8_t u8() { return m_data[m_pos++]; }
    uint16_t u16() { return get<uint16_t>(); }
    uint32_t u32() { return get<uint32_t>(); }
    float f32() { return get<float>(); }
    int32_t id(int bytes) { return bytes == 2 ? int32_t(u16()) : int32_t(u32()); }
    size_t remaining() const { return m_size - m_pos; }

private:
    template <typename T>
    T get()
    {
        T v;
        std::memcpy(&v, m_data + m_pos, sizeof v);
        m_pos += sizeof v;
        return v;
    }
    const uint8_t *m_data;
    size_t m_size;
    size_t m_pos = 0;
};

int idBytesFor(int32_t maxLatent) { return maxLatent <= 0xffff ? 2 : 4; }

} // namespace

std::vector<uint8_t> encodeTokenTopK(int numTokens, int k, const int32_t *ids, const float *values, int32_t maxLatent)
{
    const int idBytes = idBytesFor(maxLatent);
    Writer w;
    w.u8('T');
    w.u8('K');
    w.u8(1);
    w.u8(uint8_t(idBytes));
    w.u16(uint16_t(numTokens));
    w.u16(uint16_t(std::min(k, 255)));
    for (int t = 0; t < numTokens; ++t) {
        int count = 0;
        for (int j = 0; j < k && count < 255; ++j)
            count += ids[t * k + j] >= 0 && values[t * k + j] > 0.0f;
        w.u8(uint8_t(count));
        int written = 0;
        for (int j = 0; j < k && written < count; ++j) {
            const int32_t id = ids[t * k + j];
            const float v = values[t * k + j];
            if (id < 0 || !(v > 0.0f))
                continue;
            w.id(id, idBytes);
            w.u16(floatToHalf(v));
            ++written;
        }
    }
    return w.take();
}

Result<TokenTopK> decodeTokenTopK(const uint8_t *data, size_t size)
{
    Reader r(data, size);
    if (!r.has(8) || data[0] != 'T' || data[1] != 'K')
        return Error("not a token top-k blob");
    r.u8();
    r.u8();
    if (r.u8() != 1)
        return Error("unsupported token top-k blob version");
    const int idBytes = r.u8();
    if (idBytes != 2 && idBytes != 4)
        return Error("damaged token top-k blob (id width)");
    TokenTopK out;
    out.numTokens = r.u16();
    r.u16();
    out.offsets.reserve(size_t(out.numTokens) + 1);
    out.offsets.push_back(0);
    for (int t = 0; t < out.numTokens; ++t) {
        if (!r.has(1))
            return Error("damaged token top-k blob (truncated)");
        const int count = r.u8();
        if (!r.has(size_t(count) * size_t(idBytes + 2)))
            return Error("damaged token top-k blob (truncated)");
        for (int j = 0; j < count; ++j) {
            TokenLatent e;
            e.latent = r.id(idBytes);
            e.value = halfToFloat(r.u16());
            out.entries.push_back(e);
        }
        out.offsets.push_back(uint32_t(out.entries.size()));
    }
    if (r.remaining() != 0)
        return Error("damaged token top-k blob (trailing bytes)");
    return out;
}

std::vector<uint8_t> encodeConcepts(std::vector<ImageConcept> concepts, int32_t maxLatent)
{
    std::sort(concepts.begin(), concepts.end(), [](const ImageConcept &a, const ImageConcept &b) {
        return a.mean != b.mean ? a.mean > b.mean : a.latent < b.latent;
    });
    const int idBytes = idBytesFor(maxLatent);
    Writer w;
    w.u8('I');
    w.u8('C');
    w.u8(1);
    w.u8(uint8_t(idBytes));
    w.u32(uint32_t(concepts.size()));
    for (const ImageConcept &c : concepts) {
        w.id(c.latent, idBytes);
        w.f32(c.mean);
        w.f32(c.maxPatch);
        w.u16(uint16_t(std::clamp(c.patchesAbove, 0, 0xffff)));
    }
    return w.take();
}

Result<std::vector<ImageConcept>> decodeConcepts(const uint8_t *data, size_t size)
{
    Reader r(data, size);
    if (!r.has(8) || data[0] != 'I' || data[1] != 'C')
        return Error("not a concepts blob");
    r.u8();
    r.u8();
    if (r.u8() != 1)
        return Error("unsupported concepts blob version");
    const int idBytes = r.u8();
    if (idBytes != 2 && idBytes != 4)
        return Error("damaged concepts blob (id width)");
    const uint32_t n = r.u32();
    if (r.remaining() != size_t(n) * size_t(idBytes + 10))
        return Error("damaged concepts blob (size)");
    std::vector<ImageConcept> out(n);
    for (auto &c : out) {
        c.latent = r.id(idBytes);
        c.mean = r.f32();
        c.maxPatch = r.f32();
        c.patchesAbove = r.u16();
    }
    return out;
}

std::vector<uint8_t> encodeFloats(const std::vector<float> &values)
{
    std::vector<uint8_t> out(values.size() * 4);
    if (!values.empty())
        std::memcpy(out.data(), values.data(), out.size());
    return out;
}

Result<std::vector<float>> decodeFloats(const uint8_t *data, size_t size)
{
    if (size % 4 != 0)
        return Error("damaged float array");
    std::vector<float> out(size / 4);
    if (size)
        std::memcpy(out.data(), data, size);
    return out;
}

} // namespace cytosae::store
