/*
 * index_avx512.c: the AVX512-VNNI scan kernel. One 64-byte chunk of a group
 * is 16 rows x 4 dims, so vpdpbusd of the chunk (unsigned bytes) with the
 * query's 4 codes broadcast (signed) adds 4 products into each row's 32-bit
 * lane: 16 instructions give a group's 16 dot products over half the dims
 * with no horizontal sums. The second half (dims 64..127) is computed only
 * for a query and group where some row passes on the first half. Several
 * queries share each chunk load (a batch is bound by vpdpbusd throughput);
 * a single query is bound by memory bandwidth.
 */
#include <immintrin.h>
#include <string.h>

#include "index/index_int.h"

#define QTILE 8

/*
 * acc += vpdpbusd(x, broadcast of the 4 signed bytes at p). Written in asm:
 * GCC 12 does not fold the broadcast into the instruction and copies the
 * accumulators around a loop of _mm512_dpbusd_epi32.
 */
static inline __m512i dpbusd_bcast(__m512i acc, __m512i x, const int8_t *p)
{
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(x), "m"(*(const int32_t *)p));
    return acc;
}

/* raw over one half for one query: four chains so they overlap. */
static inline __m512i half_dot(const uint8_t *gc, const int8_t *qc, const char *pf)
{
    __m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0;
#pragma GCC unroll 4
    for (unsigned j = 0; j < IDX_HALF / 4; j += 4) {
        if (pf) {
            _mm_prefetch(pf + 64 * j, _MM_HINT_T1);
            _mm_prefetch(pf + 64 * j + 64, _MM_HINT_T1);
            _mm_prefetch(pf + 64 * j + 128, _MM_HINT_T1);
            _mm_prefetch(pf + 64 * j + 192, _MM_HINT_T1);
        }
        s0 = dpbusd_bcast(s0, _mm512_load_si512(gc + 64 * j), qc + 4 * j);
        s1 = dpbusd_bcast(s1, _mm512_load_si512(gc + 64 * j + 64), qc + 4 * j + 4);
        s2 = dpbusd_bcast(s2, _mm512_load_si512(gc + 64 * j + 128), qc + 4 * j + 8);
        s3 = dpbusd_bcast(s3, _mm512_load_si512(gc + 64 * j + 192), qc + 4 * j + 12);
    }
    return _mm512_add_epi32(_mm512_add_epi32(s0, s1), _mm512_add_epi32(s2, s3));
}

/* bias + sq - 2 * raw */
static inline __m512i dist2(__m512i raw, __m512i sq, int32_t bias)
{
    return _mm512_sub_epi32(_mm512_add_epi32(_mm512_set1_epi32(bias), sq),
                            _mm512_slli_epi32(raw, 1));
}

static inline __mmask16 below(__m512i d2, float thr2)
{
    return _mm512_cmp_ps_mask(_mm512_cvtepi32_ps(d2), _mm512_set1_ps(thr2), _CMP_LE_OQ);
}

static inline size_t emit(__m512i d2, __mmask16 m, unsigned q, unsigned row0, idx_pass *out,
                          size_t n)
{
    int32_t v[16];
    unsigned mm = m;
    _mm512_storeu_si512(v, d2);
    while (mm) {
        unsigned r = (unsigned)__builtin_ctz(mm);
        mm &= mm - 1;
        out[n].q = (uint16_t)q;
        out[n].row = (uint16_t)(row0 + r);
        out[n].d2 = v[r];
        n++;
    }
    return n;
}

static inline void prefetch_sq(const idx_scan_args *a, size_t g)
{
    if (a->pf_sq)
        _mm_prefetch((const char *)(a->pf_sq + g * IDX_GROUP_ROWS), _MM_HINT_T1);
}

/* One query. */
static size_t scan_1(const idx_scan_args *a)
{
    size_t n = 0;
    const int8_t *qc = a->qcodes;
    for (size_t g = 0; g < a->ngroups; g++) {
        const char *pf = a->pf_codes ? (const char *)(a->pf_codes + g * IDX_GROUP_HALF_BYTES)
                                     : NULL;
        prefetch_sq(a, g);
        __m512i raw = half_dot(a->codes_a + g * IDX_GROUP_HALF_BYTES, qc, pf);
        float thr = a->qthr[0] + a->gmax[g] * IDX_GM_SCALE;
        float thr2 = thr * thr;
        __m512i sqa = _mm512_loadu_si512(a->sqa + g * IDX_GROUP_ROWS);
        if (!below(dist2(raw, sqa, a->qbias_a[0]), thr2))
            continue;
        raw = _mm512_add_epi32(raw, half_dot(a->codes_b + g * IDX_GROUP_HALF_BYTES,
                                             qc + IDX_HALF, NULL));
        __m512i d2 = dist2(raw, _mm512_loadu_si512(a->sq + g * IDX_GROUP_ROWS), a->qbias[0]);
        __mmask16 m = below(d2, thr2);
        if (m)
            n = emit(d2, m, 0, a->row0 + (unsigned)(g * IDX_GROUP_ROWS), a->out, n);
    }
    return n;
}

/* NQ queries: the first half for all of them sharing each chunk load. */
static inline __attribute__((always_inline)) size_t scan_nq(const idx_scan_args *a,
                                                            const size_t NQ)
{
    size_t n = 0;
    for (size_t g = 0; g < a->ngroups; g++) {
        const uint8_t *ga = a->codes_a + g * IDX_GROUP_HALF_BYTES;
        __m512i acc[QTILE];
        if (a->pf_codes) {
            const char *pf = (const char *)(a->pf_codes + g * IDX_GROUP_HALF_BYTES);
            for (unsigned i = 0; i < IDX_GROUP_HALF_BYTES; i += 64)
                _mm_prefetch(pf + i, _MM_HINT_T1);
            prefetch_sq(a, g);
        }
#pragma GCC unroll 16
        for (size_t q = 0; q < NQ; q++)
            acc[q] = _mm512_setzero_si512();
        /* Unrolled whole: a loop makes GCC copy the accumulators each turn. */
#pragma GCC unroll 16
        for (unsigned j = 0; j < IDX_HALF / 4; j++) {
            __m512i x = _mm512_load_si512(ga + 64 * j);
#pragma GCC unroll 16
            for (size_t q = 0; q < NQ; q++)
                acc[q] = dpbusd_bcast(acc[q], x, a->qcodes + q * IDX_DIM + 4 * j);
        }
        __m512i sqa = _mm512_loadu_si512(a->sqa + g * IDX_GROUP_ROWS);
        float gm = a->gmax[g] * IDX_GM_SCALE;
        float thr2[QTILE];
        /* Indexed by a variable below, so a copy: acc itself stays in registers. */
        __m512i saved[QTILE];
        unsigned need = 0;
#pragma GCC unroll 16
        for (size_t q = 0; q < NQ; q++) {
            float thr = a->qthr[q] + gm;
            thr2[q] = thr * thr;
            saved[q] = acc[q];
            if (below(dist2(acc[q], sqa, a->qbias_a[q]), thr2[q]))
                need |= 1u << q;
        }
        if (!need)
            continue;
        __m512i sq = _mm512_loadu_si512(a->sq + g * IDX_GROUP_ROWS);
        const uint8_t *gb = a->codes_b + g * IDX_GROUP_HALF_BYTES;
        unsigned row0 = a->row0 + (unsigned)(g * IDX_GROUP_ROWS);
        while (need) {
            unsigned q = (unsigned)__builtin_ctz(need);
            need &= need - 1;
            __m512i raw = _mm512_add_epi32(saved[q], half_dot(gb, a->qcodes + q * IDX_DIM + IDX_HALF,
                                                              NULL));
            __m512i d2 = dist2(raw, sq, a->qbias[q]);
            __mmask16 m = below(d2, thr2[q]);
            if (m)
                n = emit(d2, m, q, row0, a->out, n);
        }
    }
    return n;
}

static size_t scan_avx512(const idx_scan_args *a)
{
    switch (a->nq) {
    case 1: return scan_1(a);
    case 2: return scan_nq(a, 2);
    case 3: return scan_nq(a, 3);
    case 4: return scan_nq(a, 4);
    case 5: return scan_nq(a, 5);
    case 6: return scan_nq(a, 6);
    case 7: return scan_nq(a, 7);
    default: return scan_nq(a, QTILE);
    }
}

const idx_kernel idx_kernel_avx512 = {scan_avx512, QTILE};
