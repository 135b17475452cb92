/*
 * _pngcore: a small PNG decoder for panoptic PNGs, and the runs of equal (gt, pred) pixel pairs
 * of two of them, in one compiled pass (issue 4: decoding was two thirds of PQ eval time).
 *
 * Scope: 8-bit RGB and RGBA, not interlaced. Anything else - another colour type or depth,
 * interlacing, a critical chunk other than IHDR/IDAT/IEND, a bad CRC, a zlib stream that zlib
 * itself would refuse, trailing or missing data - makes the functions return None, and the
 * caller falls back to libspng / OpenCV, which decode the file or word the error exactly as
 * before. The decoder is never more lenient than zlib + libpng: every answer it gives is the
 * one the fallback gives.
 *
 * Inflate is written for this data: panoptic maps are piecewise constant, so their deflate
 * streams are mostly long matches at short distances, which are copied 8 bytes at a time.
 * The work runs without the GIL.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------ */
/* Small helpers                                                                               */
/* ------------------------------------------------------------------------------------------ */
static inline uint32_t be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline uint64_t load64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline void store64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

/* Eight byte-wise additions modulo 256 in one 64-bit word (no carry between bytes). */
static inline uint64_t add_bytes(uint64_t x, uint64_t y)
{
    const uint64_t low7 = 0x7F7F7F7F7F7F7F7Full;
    return ((x & low7) + (y & low7)) ^ ((x ^ y) & ~low7);
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define LITTLE_ENDIAN_HOST 1
#else
#define LITTLE_ENDIAN_HOST 0
#endif

/* A little-endian 64-bit load on any host (the bit reader takes bytes LSB first). */
static inline uint64_t load64_le(const uint8_t *p)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return load64(p);
#else
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
#endif
}

/* ------------------------------------------------------------------------------------------ */
/* CRC-32 (PNG chunks) and Adler-32 (the zlib stream)                                          */
/* ------------------------------------------------------------------------------------------ */
static uint32_t crc_table[8][256];

static void crc_init(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++)
        for (int t = 1; t < 8; t++)
            crc_table[t][n] = (crc_table[t - 1][n] >> 8) ^ crc_table[0][crc_table[t - 1][n] & 255];
}

/* CRC-32 of p[0:n], eight bytes per step. */
static uint32_t crc32_of(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    while (n >= 8) {
        uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                           (uint32_t)p[3] << 24);
        c = crc_table[7][lo & 255] ^ crc_table[6][(lo >> 8) & 255] ^
            crc_table[5][(lo >> 16) & 255] ^ crc_table[4][lo >> 24] ^ crc_table[3][p[4]] ^
            crc_table[2][p[5]] ^ crc_table[1][p[6]] ^ crc_table[0][p[7]];
        p += 8;
        n -= 8;
    }
    while (n--)
        c = crc_table[0][(c ^ *p++) & 255] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

/* Adler-32 of p[0:n]. Over a block of N bytes b_0..b_{N-1} (at most 5552: the most before the
 * 32-bit sums could overflow), s1 grows by sum b_i and s2 by N * s1 + sum (N - i) b_i. With
 * 16-byte groups, i = 16 g + k, the second sum is sum_k 16 * (run_k + col_k) - k * col_k,
 * col_k being the bytes of column k and run_k the sum of col_k before each group. */
#define ADLER_MOD 65521u
#define ADLER_BLOCK 5552u /* 347 groups of 16 */

#if defined(__SSE2__)
#include <emmintrin.h>

/* SSE2: s1 of each group by _mm_sad_epu8; the columns in 16-bit lanes, flushed to 32-bit
 * every 256 groups (255 * 256 fits 16 bits); "run" is folded into 16 * sum_g (s1 before g). */
static void adler_groups(const uint8_t *p, size_t groups, uint64_t *total, uint64_t *weighted)
{
    const __m128i zero = _mm_setzero_si128();
    __m128i s1 = zero, before = zero; /* 64-bit lanes: bytes so far, sum of s1 before groups */
    uint64_t col[16] = {0};
    while (groups) {
        size_t m = groups < 256 ? groups : 256;
        __m128i lo = zero, hi = zero; /* 16-bit column sums */
        for (size_t g = 0; g < m; g++, p += 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)p);
            before = _mm_add_epi64(before, s1);
            s1 = _mm_add_epi64(s1, _mm_sad_epu8(v, zero));
            lo = _mm_add_epi16(lo, _mm_unpacklo_epi8(v, zero));
            hi = _mm_add_epi16(hi, _mm_unpackhi_epi8(v, zero));
        }
        uint16_t c[16];
        _mm_storeu_si128((__m128i *)c, lo);
        _mm_storeu_si128((__m128i *)(c + 8), hi);
        for (int k = 0; k < 16; k++)
            col[k] += c[k];
        groups -= m;
    }
    uint64_t a[2], b[2];
    _mm_storeu_si128((__m128i *)a, s1);
    _mm_storeu_si128((__m128i *)b, before);
    /* sum_g 16 * (bytes before g) + per group sum_k (16 - k) * b_gk */
    uint64_t w = 16 * (b[0] + b[1]);
    for (int k = 0; k < 16; k++)
        w += (uint64_t)(16 - k) * col[k];
    *total = a[0] + a[1];
    *weighted = w;
}
#else
static void adler_groups(const uint8_t *p, size_t groups, uint64_t *total, uint64_t *weighted)
{
    uint32_t col[16] = {0}, run[16] = {0};
    for (size_t g = 0; g < groups; g++, p += 16)
        for (int k = 0; k < 16; k++) {
            run[k] += col[k];
            col[k] += p[k];
        }
    uint64_t t = 0, w = 0;
    for (int k = 0; k < 16; k++) {
        t += col[k];
        w += 16 * ((uint64_t)run[k] + col[k]) - (uint64_t)k * col[k];
    }
    *total = t;
    *weighted = w;
}
#endif

static uint32_t adler32_of(const uint8_t *p, size_t n)
{
    uint64_t s1 = 1, s2 = 0;
    while (n >= 16) {
        size_t groups = (n < ADLER_BLOCK ? n : ADLER_BLOCK) / 16, bytes = 16 * groups;
        uint64_t total, weighted;
        adler_groups(p, groups, &total, &weighted);
        s2 = (s2 + bytes * s1 + weighted) % ADLER_MOD;
        s1 = (s1 + total) % ADLER_MOD;
        p += bytes;
        n -= bytes;
    }
    while (n--) {
        s1 += *p++;
        s2 += s1;
    }
    return (uint32_t)((s2 % ADLER_MOD) << 16 | (s1 % ADLER_MOD));
}

/* ------------------------------------------------------------------------------------------ */
/* Inflate (RFC 1950/1951), into an output buffer of known size                                */
/* ------------------------------------------------------------------------------------------ */
/* Input is read from a copy padded with INPUT_PAD zero bytes, so a refill never checks the end;
 * reading into the padding is an error found at the next block boundary or at the end. */
#define INPUT_PAD 16
/* Output has OUTPUT_SLACK bytes past its end: 8-byte match copies may overshoot into them. */
#define OUTPUT_SLACK 16

#define LIT_FAST 10 /* bits of the literal/length lookup table */
#define DIST_FAST 9 /* bits of the distance lookup table */
#define LEN_FAST 7  /* bits of the code-length lookup table */

enum { CODES, LENS, DISTS }; /* which kind of code a table is for (completeness rules) */

typedef struct {
    uint16_t count[16];   /* codes of each length */
    uint16_t symbol[288]; /* symbols by canonical order */
    uint16_t *fast;       /* 1 << fast_bits entries: symbol << 4 | length, 0 = not in table */
    int fast_bits;
} huff_t;

typedef struct {
    const uint8_t *p;   /* next byte to load */
    const uint8_t *end; /* end of the real input (padding follows) */
    uint64_t buf;       /* bits not yet used, LSB first */
    unsigned cnt;       /* number of bits in buf */
} bits_t;

static inline void refill(bits_t *b)
{
    /* Load 8 bytes, keep the whole bytes that fit: afterwards 56 <= cnt <= 63. */
    b->buf |= load64_le(b->p) << b->cnt;
    b->p += (63 - b->cnt) >> 3;
    b->cnt |= 56;
}

static inline uint32_t peek(const bits_t *b, unsigned n)
{
    return (uint32_t)(b->buf & (((uint64_t)1 << n) - 1));
}

static inline void drop(bits_t *b, unsigned n)
{
    b->buf >>= n;
    b->cnt -= n;
}

/* Bits read past the real input: nonzero means the stream was cut short. */
static inline int overran(const bits_t *b)
{
    return b->p - b->cnt / 8 > b->end;
}

/* Build a canonical Huffman decoder from code lengths, as strict as zlib's inflate_table: an
 * over-subscribed set is refused; an incomplete one only passes for literal/length and distance
 * codes whose longest code has length 1 (zlib's one exception), or that have no code at all.
 * Returns 0 on success. */
static int huff_build(huff_t *h, const uint8_t *lens, int n, int kind)
{
    uint16_t offs[16];
    int max = 0;
    memset(h->count, 0, sizeof h->count);
    for (int s = 0; s < n; s++)
        h->count[lens[s]]++;
    for (int len = 1; len <= 15; len++)
        if (h->count[len])
            max = len;
    int left = 1;
    for (int len = 1; len <= 15; len++) {
        left <<= 1;
        left -= h->count[len];
        if (left < 0)
            return -1; /* over-subscribed */
    }
    if (left > 0 && max != 0 && (kind == CODES || max != 1))
        return -1; /* incomplete */
    if (max == 0 && kind == CODES)
        return -1;
    offs[1] = 0;
    for (int len = 1; len < 15; len++)
        offs[len + 1] = offs[len] + h->count[len];
    for (int s = 0; s < n; s++)
        if (lens[s])
            h->symbol[offs[lens[s]]++] = (uint16_t)s;

    /* The lookup table: codes of at most fast_bits bits, stored bit-reversed (deflate sends
     * Huffman codes MSB first into an LSB-first stream), repeated over the unused high bits. */
    int size = 1 << h->fast_bits;
    memset(h->fast, 0, sizeof(uint16_t) * size);
    uint32_t code = 0;
    int index = 0;
    for (int len = 1; len <= h->fast_bits; len++) {
        for (int k = 0; k < h->count[len]; k++, index++, code++) {
            uint32_t rev = 0;
            for (int b = 0; b < len; b++)
                rev |= ((code >> b) & 1) << (len - 1 - b);
            uint16_t entry = (uint16_t)(h->symbol[index] << 4 | len);
            for (uint32_t i = rev; i < (uint32_t)size; i += 1u << len)
                h->fast[i] = entry;
        }
        code <<= 1;
    }
    return 0;
}

/* Decode one symbol (buf holds at least 15 bits). Codes longer than the table, or bits that
 * are no code of an incomplete set, take the canonical walk. Returns -1 for no code. */
static inline int huff_decode(const huff_t *h, bits_t *b)
{
    uint16_t e = h->fast[peek(b, h->fast_bits)];
    if (e) {
        drop(b, e & 15);
        return e >> 4;
    }
    int code = 0, first = 0, index = 0;
    uint64_t bits = b->buf;
    for (int len = 1; len <= 15; len++) {
        code |= (int)(bits & 1);
        bits >>= 1;
        int count = h->count[len];
        if (code - count < first) {
            drop(b, len);
            return h->symbol[index + (code - first)];
        }
        index += count;
        first += count;
        first <<= 1;
        code <<= 1;
    }
    return -1;
}

static const uint16_t len_base[29] = {3,  4,  5,  6,  7,  8,  9,  10, 11,  13,  15,  17,  19,  23, 27,
                                      31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
static const uint8_t len_extra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                      2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
static const uint16_t dist_base[30] = {1,    2,    3,    4,    5,    7,     9,     13,    17,  25,
                                       33,   49,   65,   97,   129,  193,   257,   385,   513, 769,
                                       1025, 1537, 2049, 3073, 4097, 6145,  8193,  12289, 16385,
                                       24577};
static const uint8_t dist_extra[30] = {0, 0, 0, 0, 1, 1, 2, 2,  3,  3,  4,  4,  5,  5,  6,
                                       6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};

static uint16_t fixed_lit_fast[1 << LIT_FAST], fixed_dist_fast[1 << DIST_FAST];
static huff_t fixed_lit = {.fast = fixed_lit_fast, .fast_bits = LIT_FAST};
static huff_t fixed_dist = {.fast = fixed_dist_fast, .fast_bits = DIST_FAST};

static void fixed_init(void)
{
    uint8_t lens[288];
    for (int s = 0; s < 288; s++)
        lens[s] = s < 144 ? 8 : s < 256 ? 9 : s < 280 ? 7 : 8;
    huff_build(&fixed_lit, lens, 288, LENS);
    for (int s = 0; s < 30; s++)
        lens[s] = 5;
    /* 32 codes of 5 bits, as zlib's table: 30 and 31 decode, and are refused as distances. */
    lens[30] = lens[31] = 5;
    huff_build(&fixed_dist, lens, 32, DISTS);
}

/* Copy a match of `len` bytes from `dist` back. The output has OUTPUT_SLACK bytes of room. */
static inline void copy_match(uint8_t *out, size_t dist, size_t len)
{
    const uint8_t *src = out - dist;
    uint8_t *end = out + len;
    if (dist >= 8) {
        do {
            store64(out, load64(src));
            out += 8;
            src += 8;
        } while (out < end);
    } else if (dist == 1) {
        memset(out, src[0], len);
    } else {
        /* The match repeats with period dist; after the first `step` bytes (a multiple of dist,
         * at least 8) it equals itself `step` bytes back, so 8-byte copies can take over. */
        size_t step = dist * ((8 + dist - 1) / dist);
        size_t head = len < step ? len : step;
        for (size_t i = 0; i < head; i++)
            out[i] = src[i];
        for (uint8_t *o = out + head; o < end; o += 8)
            store64(o, load64(o - step));
    }
}

/* Inflate a zlib stream (in[0:n_in], followed by INPUT_PAD readable bytes) to exactly n_out
 * bytes at out (followed by OUTPUT_SLACK writable bytes). The stream must end, with a matching
 * Adler-32, exactly at the end of the input and the output. Returns 0 on success. */
static int zlib_inflate(const uint8_t *in, size_t n_in, uint8_t *out, size_t n_out)
{
    if (n_in < 6)
        return -1;
    unsigned cmf = in[0], flg = in[1];
    if ((cmf & 15) != 8 || (cmf >> 4) > 7 || (cmf * 256 + flg) % 31 || (flg & 32))
        return -1; /* not deflate, window > 32K, bad header check, preset dictionary */
    size_t window = (size_t)1 << ((cmf >> 4) + 8);

    uint16_t lit_fast[1 << LIT_FAST], dist_fast[1 << DIST_FAST], len_fast[1 << LEN_FAST];
    huff_t lit_dyn = {.fast = lit_fast, .fast_bits = LIT_FAST};
    huff_t dist_dyn = {.fast = dist_fast, .fast_bits = DIST_FAST};
    huff_t len_code = {.fast = len_fast, .fast_bits = LEN_FAST};
    bits_t b = {in + 2, in + n_in, 0, 0};
    uint8_t *o = out, *o_end = out + n_out;
    int last;
    do {
        refill(&b);
        if (overran(&b))
            return -1;
        last = (int)peek(&b, 1);
        unsigned type = (peek(&b, 3) >> 1);
        drop(&b, 3);
        const huff_t *lit, *dist;
        if (type == 0) { /* stored: byte-aligned LEN, NLEN, then LEN raw bytes */
            drop(&b, b.cnt & 7);
            const uint8_t *p = b.p - b.cnt / 8; /* the next unread byte */
            b.buf = 0;
            b.cnt = 0;
            if (p + 4 > b.end)
                return -1;
            size_t len = p[0] | (size_t)p[1] << 8;
            if ((len ^ (p[2] | (size_t)p[3] << 8)) != 0xFFFF)
                return -1;
            p += 4;
            if (len > (size_t)(b.end - p) || len > (size_t)(o_end - o))
                return -1;
            memcpy(o, p, len);
            o += len;
            b.p = p + len;
            continue;
        } else if (type == 1) {
            lit = &fixed_lit;
            dist = &fixed_dist;
        } else if (type == 2) {
            unsigned nlen = peek(&b, 5) + 257;
            drop(&b, 5);
            unsigned ndist = peek(&b, 5) + 1;
            drop(&b, 5);
            unsigned ncode = peek(&b, 4) + 4;
            drop(&b, 4);
            if (nlen > 286 || ndist > 30)
                return -1;
            static const uint8_t order[19] = {16, 17, 18, 0, 8,  7, 9,  6, 10, 5,
                                              11, 4,  12, 3, 13, 2, 14, 1, 15};
            uint8_t lens[320];
            memset(lens, 0, 19);
            for (unsigned i = 0; i < ncode; i++) {
                if (i % 16 == 0) { /* 16 * 3 bits per refill */
                    refill(&b);
                    if (b.p > b.end + 8)
                        return -1;
                }
                lens[order[i]] = (uint8_t)peek(&b, 3);
                drop(&b, 3);
            }
            if (huff_build(&len_code, lens, 19, CODES))
                return -1;
            unsigned i = 0;
            while (i < nlen + ndist) {
                refill(&b);
                if (b.p > b.end + 8)
                    return -1; /* far into the padding: garbage */
                int sym = huff_decode(&len_code, &b);
                if (sym < 0)
                    return -1;
                if (sym < 16) {
                    lens[i++] = (uint8_t)sym;
                    continue;
                }
                unsigned rep;
                uint8_t val = 0;
                if (sym == 16) {
                    if (i == 0)
                        return -1;
                    val = lens[i - 1];
                    rep = 3 + peek(&b, 2);
                    drop(&b, 2);
                } else if (sym == 17) {
                    rep = 3 + peek(&b, 3);
                    drop(&b, 3);
                } else {
                    rep = 11 + peek(&b, 7);
                    drop(&b, 7);
                }
                if (i + rep > nlen + ndist)
                    return -1;
                while (rep--)
                    lens[i++] = val;
            }
            if (lens[256] == 0)
                return -1; /* no end-of-block code */
            if (huff_build(&lit_dyn, lens, (int)nlen, LENS) ||
                huff_build(&dist_dyn, lens + nlen, (int)ndist, DISTS))
                return -1;
            lit = &lit_dyn;
            dist = &dist_dyn;
        } else {
            return -1;
        }
        if (overran(&b))
            return -1;

        /* The block's symbols. One refill gives >= 56 bits: enough for a length/distance pair
         * (15 + 5 + 15 + 13 bits). */
        for (;;) {
            refill(&b);
            if (b.p > b.end + 8)
                return -1; /* far into the padding: garbage */
            int sym = huff_decode(lit, &b);
            if (sym < 256) {
                if (sym < 0 || o == o_end)
                    return -1;
                *o++ = (uint8_t)sym;
                continue;
            }
            if (sym == 256)
                break;
            sym -= 257;
            if (sym >= 29)
                return -1;
            size_t len = len_base[sym] + peek(&b, len_extra[sym]);
            drop(&b, len_extra[sym]);
            int dsym = huff_decode(dist, &b);
            if (dsym < 0 || dsym >= 30)
                return -1;
            size_t d = dist_base[dsym] + peek(&b, dist_extra[dsym]);
            drop(&b, dist_extra[dsym]);
            if (d > (size_t)(o - out) || d > window || len > (size_t)(o_end - o))
                return -1;
            copy_match(o, d, len);
            o += len;
        }
    } while (!last);

    /* Adler-32 at the next byte boundary, then the end of the input. */
    drop(&b, b.cnt & 7);
    const uint8_t *p = b.p - b.cnt / 8;
    if (o != o_end || p + 4 != b.end)
        return -1;
    return be32(p) == adler32_of(out, n_out) ? 0 : -1;
}

/* ------------------------------------------------------------------------------------------ */
/* PNG: chunks, then the filtered rows                                                         */
/* ------------------------------------------------------------------------------------------ */
#define MAX_PIXELS ((uint64_t)1 << 30) /* as the Python side's libspng limit (OpenCV's) */

typedef struct {
    const uint8_t *data; /* the file */
    uint32_t width, height;
    int bpp;             /* bytes per pixel: 3 (RGB) or 4 (RGBA) */
    size_t stride;       /* bytes of a filtered row: 1 + width * bpp */
    size_t idat;         /* bytes of IDAT data in all */
    size_t first_idat;   /* offset of the first IDAT chunk */
} png_t;

/* Check the chunks (names, CRCs, order) and read IHDR. Returns 0 for an 8-bit RGB or RGBA,
 * non-interlaced PNG of at most MAX_PIXELS pixels; -1 for anything left to the fallback. */
static int png_header(const uint8_t *data, size_t n, png_t *png)
{
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (n < 8 + 25 || memcmp(data, sig, 8) != 0)
        return -1;
    png->data = data;
    png->idat = 0;
    size_t pos = 8;
    int seen_ihdr = 0, idat_state = 0; /* 0 before IDAT, 1 in the IDAT run, 2 after it */
    for (;;) {
        if (n - pos < 12)
            return -1;
        uint32_t len = be32(data + pos);
        const uint8_t *type = data + pos + 4;
        if (len > 0x7FFFFFFFu || n - pos - 12 < len)
            return -1;
        for (int k = 0; k < 4; k++)
            if (!((type[k] >= 'A' && type[k] <= 'Z') || (type[k] >= 'a' && type[k] <= 'z')))
                return -1; /* libpng refuses such a chunk name */
        if (type[2] & 32)
            return -1; /* reserved bit set */
        if (crc32_of(type, (size_t)len + 4) != be32(data + pos + 8 + len))
            return -1;
        if (!seen_ihdr) {
            if (memcmp(type, "IHDR", 4) != 0 || len != 13)
                return -1;
            const uint8_t *h = data + pos + 8;
            png->width = be32(h);
            png->height = be32(h + 4);
            if (png->width == 0 || png->height == 0 || png->width > 0x7FFFFFFFu ||
                png->height > 0x7FFFFFFFu || (uint64_t)png->width * png->height > MAX_PIXELS)
                return -1;
            if (h[8] != 8 || (h[9] != 2 && h[9] != 6) || h[10] || h[11] || h[12])
                return -1; /* 8-bit RGB / RGBA, deflate, adaptive filters, no interlace */
            png->bpp = h[9] == 2 ? 3 : 4;
            png->stride = 1 + (size_t)png->width * png->bpp;
            seen_ihdr = 1;
        } else if (memcmp(type, "IDAT", 4) == 0) {
            if (idat_state == 2)
                return -1; /* IDAT chunks must follow each other */
            if (idat_state == 0)
                png->first_idat = pos;
            idat_state = 1;
            png->idat += len;
        } else if (memcmp(type, "IEND", 4) == 0) {
            return len == 0 && idat_state != 0 ? 0 : -1;
        } else {
            if (!(type[0] & 32))
                return -1; /* a critical chunk this decoder does not know (PLTE included) */
            if (idat_state == 1)
                idat_state = 2;
        }
        pos += 12 + (size_t)len;
    }
}

/* Bytes of work memory an image needs: the zlib stream (padded), the inflated rows (with
 * slack), and four row buffers (two alternating rows, a zero row, an RGB row). */
static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

static size_t png_rows_bytes(const png_t *png) { return align64(png->stride + 16); }

static size_t png_work_bytes(const png_t *png)
{
    return align64(png->idat + INPUT_PAD) + align64(png->stride * png->height + OUTPUT_SLACK) +
           4 * png_rows_bytes(png);
}

/* Rows of an image, unfiltered one at a time into two alternating row buffers; RGBA rows are
 * also packed to RGB, so each row is width * 3 bytes of R, G, B. */
typedef struct {
    png_t png;
    uint8_t *raw;                   /* the inflated, filtered rows */
    uint8_t *rows[2], *zero, *rgb;  /* row buffers */
    uint32_t y;                     /* the next row */
} rows_t;

/* Join the IDAT data and inflate it, in work (png_work_bytes(png) bytes). Returns 0 or -1. */
static int rows_open(rows_t *r, const png_t *png, uint8_t *work)
{
    r->png = *png;
    uint8_t *in = work;
    r->raw = in + align64(png->idat + INPUT_PAD);
    uint8_t *rows = r->raw + align64(png->stride * png->height + OUTPUT_SLACK);
    size_t rb = png_rows_bytes(png);
    r->rows[0] = rows;
    r->rows[1] = rows + rb;
    r->zero = rows + 2 * rb;
    r->rgb = rows + 3 * rb;
    memset(r->zero, 0, rb);
    r->y = 0;

    const uint8_t *data = png->data;
    size_t at = 0;
    for (size_t pos = png->first_idat; memcmp(data + pos + 4, "IDAT", 4) == 0;) {
        uint32_t len = be32(data + pos);
        memcpy(in + at, data + pos + 8, len);
        at += len;
        pos += 12 + (size_t)len;
    }
    memset(in + at, 0, INPUT_PAD);
    return zlib_inflate(in, png->idat, r->raw, png->stride * png->height);
}

static inline uint8_t paeth(int a, int b, int c)
{
    int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    return (uint8_t)(pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
}

/* Sub: cur[k] = f[k] + cur[k - bpp]. Runs of equal pixels filter to zeros, so the bytes of a
 * zero stretch repeat the last pixel: stored a word at a time (with 3 bytes a pixel the
 * pattern starts one byte further each word: three words, rotated). A nonzero word is
 * cur[k] = f[k] + f[k - bpp] + f[k - 2 bpp] + the pattern, byte-wise: shifting a word left by
 * 8 * bpp bits moves byte k to k + bpp, so three byte-wise additions do it on little-endian
 * hosts, without the chain of eight dependent byte additions. */
static void unfilter_sub(uint8_t *cur, const uint8_t *f, size_t rb, int bpp)
{
    size_t i = (size_t)bpp;
    memcpy(cur, f, (size_t)bpp);
#if LITTLE_ENDIAN_HOST
    if (bpp == 3) {
        uint64_t t = cur[0] | (uint64_t)cur[1] << 8 | (uint64_t)cur[2] << 16; /* last pixel */
        while (i + 8 <= rb) {
            uint64_t fw = load64(f + i), w0 = t | t << 24 | t << 48;
            if (fw) {
                uint64_t c = add_bytes(w0, add_bytes(add_bytes(fw, fw << 24), fw << 48));
                store64(cur + i, c);
                t = c >> 40;
                i += 8;
                continue;
            }
            uint64_t w1 = t >> 16 | t << 8 | t << 32 | t << 56, w2 = t >> 8 | t << 16 | t << 40;
            do {
                store64(cur + i, w0);
                i += 8;
                uint64_t r = w0;
                w0 = w1;
                w1 = w2;
                w2 = r;
            } while (i + 8 <= rb && load64(f + i) == 0);
            t = w0 & 0xFFFFFF; /* the pattern at i begins with the pixel before i */
        }
    } else {
        uint64_t t;
        uint32_t px;
        memcpy(&px, cur, 4);
        t = px;
        while (i + 8 <= rb) {
            uint64_t fw = load64(f + i), w = t | t << 32;
            if (fw)
                w = add_bytes(w, add_bytes(fw, fw << 32));
            store64(cur + i, w);
            t = w >> 32;
            i += 8;
        }
    }
#endif
    for (; i < rb; i++)
        cur[i] = (uint8_t)(f[i] + cur[i - bpp]);
}

/* Undo one row's filter: cur[0:rb] from the filtered bytes f[0:rb] and the previous row prev
 * (all zeros for the first row). Returns -1 for an unknown filter type. */
static int unfilter(int type, uint8_t *cur, const uint8_t *prev, const uint8_t *f, size_t rb,
                    int bpp)
{
    size_t i;
    switch (type) {
    case 0:
        memcpy(cur, f, rb);
        return 0;
    case 1: /* Sub */
        unfilter_sub(cur, f, rb, bpp);
        return 0;
    case 2: /* Up */
        for (i = 0; i < rb; i++)
            cur[i] = (uint8_t)(f[i] + prev[i]);
        return 0;
    case 3: /* Average */
        for (i = 0; i < (size_t)bpp; i++)
            cur[i] = (uint8_t)(f[i] + (prev[i] >> 1));
        for (; i < rb; i++)
            cur[i] = (uint8_t)(f[i] + ((cur[i - bpp] + prev[i]) >> 1));
        return 0;
    case 4: /* Paeth */
        for (i = 0; i < (size_t)bpp; i++)
            cur[i] = (uint8_t)(f[i] + prev[i]); /* a = c = 0: the predictor is b */
        for (; i < rb; i++)
            cur[i] = (uint8_t)(f[i] + paeth(cur[i - bpp], prev[i], prev[i - bpp]));
        return 0;
    default:
        return -1;
    }
}

/* The next row as RGB, or NULL for a bad filter type. */
static const uint8_t *rows_next(rows_t *r)
{
    size_t rb = r->png.stride - 1;
    const uint8_t *f = r->raw + (size_t)r->y * r->png.stride;
    uint8_t *cur = r->rows[r->y & 1];
    const uint8_t *prev = r->y ? r->rows[(r->y - 1) & 1] : r->zero;
    if (unfilter(f[0], cur, prev, f + 1, rb, r->png.bpp))
        return NULL;
    r->y++;
    if (r->png.bpp == 3)
        return cur;
    for (uint32_t x = 0; x < r->png.width; x++)
        memcpy(r->rgb + 3 * (size_t)x, cur + 4 * (size_t)x, 3);
    return r->rgb;
}

/* ------------------------------------------------------------------------------------------ */
/* Runs of equal (gt, pred) pixel pairs                                                        */
/* ------------------------------------------------------------------------------------------ */
typedef struct {
    int64_t *v; /* triples: gt id, pred id, length */
    size_t n, cap;
    int64_t g, p, start; /* the open run */
} runs_t;

static inline int64_t id_at(const uint8_t *px)
{
    return (int64_t)px[0] | (int64_t)px[1] << 8 | (int64_t)px[2] << 16;
}

/* Close the open run at pixel `at` (absolute) and open one with the pair there. */
static inline int runs_cut(runs_t *r, int64_t at, const uint8_t *g, const uint8_t *p)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 4096;
        int64_t *v = realloc(r->v, cap * 3 * sizeof(int64_t));
        if (!v)
            return -1;
        r->v = v;
        r->cap = cap;
    }
    int64_t *t = r->v + 3 * r->n++;
    t[0] = r->g;
    t[1] = r->p;
    t[2] = at - r->start;
    r->start = at;
    r->g = id_at(g);
    r->p = id_at(p);
    return 0;
}

/* Add one row pair: a run is cut at each pixel where gt or pred differs from the pixel before
 * it, in row-major order (so the first pixel of a row compares with the last of the row above).
 * `base` is the absolute index of the row's first pixel; gl, pl the previous row's last pixels.
 * Eight bytes of each row are compared with themselves one pixel (3 bytes) on at a time. */
static int runs_row(runs_t *r, const uint8_t *g, const uint8_t *p, size_t w, int64_t base,
                    const uint8_t *gl, const uint8_t *pl)
{
    if (base == 0) {
        r->g = id_at(g);
        r->p = id_at(p);
        r->start = 0;
    } else if (memcmp(g, gl, 3) || memcmp(p, pl, 3)) {
        if (runs_cut(r, base, g, p))
            return -1;
    }
    size_t n = 3 * w, i = 3;
    int64_t last = 0; /* the last pixel of this row cut so far (0: none past the first) */
#if defined(__SSE2__)
    const __m128i zero = _mm_setzero_si128();
    for (; i + 16 <= n; i += 16) {
        __m128i dg = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(g + i)),
                                   _mm_loadu_si128((const __m128i *)(g + i - 3)));
        __m128i dp = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(p + i)),
                                   _mm_loadu_si128((const __m128i *)(p + i - 3)));
        unsigned changed = ~(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_or_si128(dg, dp),
                                                                       zero)) & 0xFFFF;
        while (changed) { /* the bytes that differ from the pixel before, in order */
            int64_t x = (int64_t)((i + (size_t)__builtin_ctz(changed)) / 3);
            changed &= changed - 1;
            if (x != last) {
                if (runs_cut(r, base + x, g + 3 * x, p + 3 * x))
                    return -1;
                last = x;
            }
        }
    }
#else
    for (; i + 8 <= n; i += 8) {
        uint64_t d = (load64(g + i) ^ load64(g + i - 3)) | (load64(p + i) ^ load64(p + i - 3));
        if (!d)
            continue;
        for (size_t k = i; k < i + 8; k++) {
            if (g[k] != g[k - 3] || p[k] != p[k - 3]) {
                int64_t x = (int64_t)(k / 3);
                if (x != last) {
                    if (runs_cut(r, base + x, g + 3 * x, p + 3 * x))
                        return -1;
                    last = x;
                }
            }
        }
    }
#endif
    for (; i < n; i++) {
        if (g[i] != g[i - 3] || p[i] != p[i - 3]) {
            int64_t x = (int64_t)(i / 3);
            if (x != last) {
                if (runs_cut(r, base + x, g + 3 * x, p + 3 * x))
                    return -1;
                last = x;
            }
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Python functions                                                                            */
/* ------------------------------------------------------------------------------------------ */
/* Grow `work` (a bytearray, or None for a private buffer) to `need` bytes and lend its memory:
 * the view keeps the bytearray from being resized meanwhile. Returns 0, or -1 with an
 * exception set. */
static int work_get(PyObject *work, size_t need, Py_buffer *view, uint8_t **mem)
{
    view->obj = NULL;
    if (work == Py_None) {
        *mem = malloc(need);
        if (!*mem) {
            PyErr_NoMemory();
            return -1;
        }
        return 0;
    }
    if (!PyByteArray_Check(work)) {
        PyErr_SetString(PyExc_TypeError, "work must be a bytearray or None");
        return -1;
    }
    if ((size_t)PyByteArray_GET_SIZE(work) < need &&
        PyByteArray_Resize(work, (Py_ssize_t)need) < 0)
        return -1;
    if (PyObject_GetBuffer(work, view, PyBUF_WRITABLE) < 0)
        return -1;
    *mem = view->buf;
    return 0;
}

static void work_release(Py_buffer *view, uint8_t *mem)
{
    if (view->obj)
        PyBuffer_Release(view);
    else
        free(mem);
}

PyDoc_STRVAR(decode_doc,
"decode(data, work=None) -> (height, width, rgb) | None\n\n"
"Decode an 8-bit RGB or RGBA, non-interlaced PNG to its R, G, B bytes (a bytearray of\n"
"height * width * 3, alpha dropped). None for any other PNG or any fault: a chunk's name,\n"
"CRC or order, a damaged or truncated zlib stream (the caller's fallback decides then).\n"
"work: a bytearray kept between calls for the working memory (grown as needed).");

static PyObject *py_decode(PyObject *self, PyObject *args)
{
    Py_buffer view, wv;
    PyObject *work = Py_None;
    if (!PyArg_ParseTuple(args, "y*|O:decode", &view, &work))
        return NULL;
    png_t png;
    int ok;
    Py_BEGIN_ALLOW_THREADS
    ok = png_header(view.buf, (size_t)view.len, &png) == 0;
    Py_END_ALLOW_THREADS
    PyObject *out = NULL;
    uint8_t *mem = NULL;
    if (!ok) {
        PyBuffer_Release(&view);
        Py_RETURN_NONE;
    }
    size_t row = (size_t)png.width * 3;
    out = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)(row * png.height));
    if (!out || work_get(work, png_work_bytes(&png), &wv, &mem) < 0) {
        Py_XDECREF(out);
        PyBuffer_Release(&view);
        return NULL;
    }
    uint8_t *dst = (uint8_t *)PyByteArray_AS_STRING(out);
    Py_BEGIN_ALLOW_THREADS
    rows_t r;
    ok = rows_open(&r, &png, mem) == 0;
    for (uint32_t y = 0; ok && y < png.height; y++, dst += row) {
        const uint8_t *src = rows_next(&r);
        if (src)
            memcpy(dst, src, row);
        else
            ok = 0;
    }
    Py_END_ALLOW_THREADS
    work_release(&wv, mem);
    PyBuffer_Release(&view);
    if (!ok) {
        Py_DECREF(out);
        Py_RETURN_NONE;
    }
    return Py_BuildValue("(IIN)", png.height, png.width, out);
}

PyDoc_STRVAR(pair_runs_doc,
"pair_runs(gt, pred, work=None) -> (height, width, runs) | None\n\n"
"Decode two PNGs (as decode()) of the same size and cut them, in row-major order, into\n"
"maximal runs of equal (gt pixel, pred pixel) pairs. runs is a bytes object of native int64:\n"
"n gt ids, then n pred ids, then n lengths (id = R + 256 G + 256^2 B). None when either PNG\n"
"is not one decode() takes, or the sizes differ. work: as for decode().");

/* The runs of two decoded images (rows_open done). Returns 0, or -1 for a bad filter type or
 * no memory. */
static int pair_runs_of(rows_t *gr, rows_t *pr, runs_t *runs)
{
    size_t w = gr->png.width;
    const uint8_t *gl = NULL, *pl = NULL;
    uint8_t glast[3] = {0}, plast[3] = {0};
    for (uint32_t y = 0; y < gr->png.height; y++) {
        const uint8_t *g = rows_next(gr), *p = rows_next(pr);
        if (!g || !p || runs_row(runs, g, p, w, (int64_t)y * (int64_t)w, gl, pl))
            return -1;
        /* the row buffers are reused: keep the last pixels for the next row's start */
        memcpy(glast, g + 3 * (w - 1), 3);
        memcpy(plast, p + 3 * (w - 1), 3);
        gl = glast;
        pl = plast;
    }
    return runs_cut(runs, (int64_t)w * gr->png.height, glast, plast); /* close the last run */
}

static PyObject *py_pair_runs(PyObject *self, PyObject *args)
{
    Py_buffer gv, pv, wv;
    PyObject *work = Py_None;
    if (!PyArg_ParseTuple(args, "y*y*|O:pair_runs", &gv, &pv, &work))
        return NULL;
    png_t gp, pp;
    int ok;
    Py_BEGIN_ALLOW_THREADS
    ok = png_header(gv.buf, (size_t)gv.len, &gp) == 0 &&
         png_header(pv.buf, (size_t)pv.len, &pp) == 0 && gp.width == pp.width &&
         gp.height == pp.height;
    Py_END_ALLOW_THREADS
    uint8_t *mem = NULL;
    runs_t runs = {NULL, 0, 0, 0, 0, 0};
    if (ok) {
        size_t gw = png_work_bytes(&gp);
        if (work_get(work, gw + png_work_bytes(&pp), &wv, &mem) < 0) {
            PyBuffer_Release(&gv);
            PyBuffer_Release(&pv);
            return NULL;
        }
        Py_BEGIN_ALLOW_THREADS
        rows_t gr, pr;
        ok = rows_open(&gr, &gp, mem) == 0 && rows_open(&pr, &pp, mem + gw) == 0 &&
             pair_runs_of(&gr, &pr, &runs) == 0;
        Py_END_ALLOW_THREADS
        work_release(&wv, mem);
    }
    PyBuffer_Release(&gv);
    PyBuffer_Release(&pv);
    if (!ok) {
        free(runs.v);
        Py_RETURN_NONE;
    }
    size_t n = runs.n;
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(3 * n * sizeof(int64_t)));
    if (out) {
        int64_t *d = (int64_t *)PyBytes_AS_STRING(out);
        for (size_t k = 0; k < n; k++) {
            d[k] = runs.v[3 * k];
            d[n + k] = runs.v[3 * k + 1];
            d[2 * n + k] = runs.v[3 * k + 2];
        }
    }
    free(runs.v);
    if (!out)
        return NULL;
    return Py_BuildValue("(IIN)", gp.height, gp.width, out);
}

PyDoc_STRVAR(inflate_doc,
"inflate(stream, size) -> bytes | None\n\n"
"Inflate a zlib stream that must decode to exactly size bytes, end with a matching Adler-32\n"
"and leave no input over; None otherwise (the decoder's inflate, exposed for tests).");

static PyObject *py_inflate(PyObject *self, PyObject *args)
{
    Py_buffer v;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "y*n:inflate", &v, &size))
        return NULL;
    if (size < 0) {
        PyBuffer_Release(&v);
        PyErr_SetString(PyExc_ValueError, "size must be >= 0");
        return NULL;
    }
    uint8_t *in = malloc((size_t)v.len + INPUT_PAD), *out = malloc((size_t)size + OUTPUT_SLACK);
    int err = -1;
    if (in && out) {
        memcpy(in, v.buf, (size_t)v.len);
        memset(in + v.len, 0, INPUT_PAD);
        Py_BEGIN_ALLOW_THREADS
        err = zlib_inflate(in, (size_t)v.len, out, (size_t)size);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&v);
    PyObject *res = NULL;
    if (!in || !out)
        res = PyErr_NoMemory();
    else if (err)
        res = Py_NewRef(Py_None);
    else
        res = PyBytes_FromStringAndSize((const char *)out, size);
    free(in);
    free(out);
    return res;
}

static PyMethodDef methods[] = {
    {"decode", py_decode, METH_VARARGS, decode_doc},
    {"pair_runs", py_pair_runs, METH_VARARGS, pair_runs_doc},
    {"inflate", py_inflate, METH_VARARGS, inflate_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_pngcore",
    "Compiled PNG decoding and (gt, pred) pixel-pair runs for PQ evaluation (optional).",
    -1, methods,
};

PyMODINIT_FUNC PyInit__pngcore(void)
{
    crc_init();
    fixed_init();
    return PyModule_Create(&module);
}
