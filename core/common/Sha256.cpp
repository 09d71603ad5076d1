#include "common/Sha256.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
#define CYTOSAE_SHA_NI 1
#endif

namespace cytosae {

namespace {

const uint32_t kRound[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
    0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
    0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
    0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
    0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
    0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
    0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2};

#ifdef CYTOSAE_SHA_NI
// The x86 SHA extensions (Intel since Goldmont/Ice Lake, AMD since Zen): about 5x the portable
// code, which matters for the published checkpoints (650 MB hashed at every load).
bool hasShaNi()
{
    static const bool yes = [] {
        unsigned a = 0, b = 0, c = 0, d = 0;
        if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 19)) || !(c & (1u << 9))) // SSE4.1, SSSE3
            return false;
        return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & (1u << 29)); // SHA
    }();
    return yes;
}

__attribute__((target("sha,sse4.1,ssse3"))) void blocksShaNi(uint32_t h[8], const uint8_t *p, size_t blocks)
{
    const __m128i byteSwap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i tmp = _mm_shuffle_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i *>(h)), 0xB1);     // CDAB
    __m128i state1 = _mm_shuffle_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i *>(h + 4)), 0x1B); // EFGH
    __m128i state0 = _mm_alignr_epi8(tmp, state1, 8);                                                   // ABEF
    state1 = _mm_blend_epi16(state1, tmp, 0xF0);                                                        // CDGH
    for (; blocks > 0; --blocks, p += 64) {
        const __m128i save0 = state0, save1 = state1;
        __m128i m[4];
        for (int g = 0; g < 16; ++g) {
            if (g < 4)
                m[g] = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i *>(p + 16 * g)), byteSwap);
            const __m128i cur = m[g % 4];
            __m128i msg = _mm_add_epi32(cur, _mm_loadu_si128(reinterpret_cast<const __m128i *>(kRound + 4 * g)));
            state1 = _mm_sha256rnds2_epu32(state1, state0, msg);
            if (g >= 3 && g <= 14) { // the schedule for the next four rounds
                __m128i &next = m[(g + 1) % 4];
                next = _mm_sha256msg2_epu32(_mm_add_epi32(next, _mm_alignr_epi8(cur, m[(g + 3) % 4], 4)), cur);
            }
            msg = _mm_shuffle_epi32(msg, 0x0E);
            state0 = _mm_sha256rnds2_epu32(state0, state1, msg);
            if (g >= 1 && g <= 12)
                m[(g + 3) % 4] = _mm_sha256msg1_epu32(m[(g + 3) % 4], cur);
        }
        state0 = _mm_add_epi32(state0, save0);
        state1 = _mm_add_epi32(state1, save1);
    }
    tmp = _mm_shuffle_epi32(state0, 0x1B);       // FEBA
    state1 = _mm_shuffle_epi32(state1, 0xB1);    // DCHG
    state0 = _mm_blend_epi16(tmp, state1, 0xF0); // DCBA
    state1 = _mm_alignr_epi8(state1, tmp, 8);    // ABEF
    _mm_storeu_si128(reinterpret_cast<__m128i *>(h), state0);
    _mm_storeu_si128(reinterpret_cast<__m128i *>(h + 4), state1);
}
#endif

struct Sha256 {
    uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    uint8_t buf[64];
    size_t bufLen = 0;
    uint64_t total = 0;
    bool portableOnly = false; // tests: the portable code on a machine with SHA-NI

    static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }
    void block(const uint8_t *p)
    {
        const uint32_t *k = kRound;
        uint32_t w[64];
        for (int i = 0; i < 16; ++i)
            w[i] = uint32_t(p[4 * i]) << 24 | uint32_t(p[4 * i + 1]) << 16 | uint32_t(p[4 * i + 2]) << 8 | p[4 * i + 3];
        for (int i = 16; i < 64; ++i) {
            uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
            uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16] + s0 + w[i - 7] + s1;
        }
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
        for (int i = 0; i < 64; ++i) {
            uint32_t t1 = hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + k[i] + w[i];
            uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
            hh = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
        }
        h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
    }
    void blocks(const uint8_t *p, size_t n)
    {
#ifdef CYTOSAE_SHA_NI
        if (portableOnly ? false : hasShaNi()) {
            blocksShaNi(h, p, n);
            return;
        }
#endif
        for (; n > 0; --n, p += 64)
            block(p);
    }
    void update(const uint8_t *p, size_t n)
    {
        // An empty input may come as a null pointer (data() of an empty vector); memcpy with
        // a null source is undefined even for zero bytes (UBSan: nonnull-attribute).
        if (n == 0)
            return;
        total += n;
        if (bufLen > 0) {
            const size_t take = std::min(n, size_t(64) - bufLen);
            std::memcpy(buf + bufLen, p, take);
            bufLen += take;
            p += take;
            n -= take;
            if (bufLen < 64)
                return;
            blocks(buf, 1);
            bufLen = 0;
        }
        if (n >= 64) {
            const size_t whole = n / 64;
            blocks(p, whole);
            p += whole * 64;
            n -= whole * 64;
        }
        std::memcpy(buf, p, n);
        bufLen = n;
    }
    std::string hex()
    {
        uint64_t bits = total * 8;
        uint8_t pad = 0x80;
        update(&pad, 1);
        uint8_t zero = 0;
        while (bufLen != 56) update(&zero, 1);
        uint8_t len[8];
        for (int i = 0; i < 8; ++i) len[i] = uint8_t(bits >> (56 - 8 * i));
        update(len, 8);
        static const char *digits = "0123456789abcdef";
        std::string out;
        for (uint32_t v : h)
            for (int i = 28; i >= 0; i -= 4) out += digits[(v >> i) & 0xf];
        return out;
    }
};
} // namespace

Result<std::string> sha256File(const std::string &path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in)
        return Error("cannot open file");
    Sha256 sha;
    std::vector<char> buf(1 << 20);
    while (in) {
        in.read(buf.data(), std::streamsize(buf.size()));
        sha.update(reinterpret_cast<const uint8_t *>(buf.data()), size_t(in.gcount()));
    }
    if (in.bad())
        return Error("read error");
    return sha.hex();
}

std::string sha256Hex(const void *data, size_t size)
{
    Sha256 sha;
    sha.update(static_cast<const uint8_t *>(data), size);
    return sha.hex();
}

std::string sha256HexPortable(const void *data, size_t size)
{
    Sha256 sha;
    sha.portableOnly = true;
    sha.update(static_cast<const uint8_t *>(data), size);
    return sha.hex();
}

} // namespace cytosae
