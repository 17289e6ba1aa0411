/*
 * index_avx2.c: the AVX2 scan kernel (for CPUs without AVX512-VNNI).
 * AVX2 has no byte dot product that cannot saturate (vpmaddubsw clips
 * 255 * 127 * 2), so the stored bytes are widened to 16 bits and multiplied
 * with vpmaddwd: each 16-byte load is 4 rows x 4 dims, giving per row two
 * 32-bit partial sums that are folded with vphaddd at the end. As in the
 * AVX-512 kernel, dims 64..127 are computed only for a query and group
 * where some row passes on dims 0..63.
 */
#include <immintrin.h>
#include <string.h>

#include "index/index_int.h"

#define QTILE 2

/* The 4 codes of chunk j as 16-bit values, repeated: vpmaddwd's operand. */
typedef int64_t qpat[IDX_DIM / 4];

static void make_pattern(const int8_t *c, qpat p)
{
    for (unsigned j = 0; j < IDX_DIM / 4; j++, c += 4)
        p[j] = (int64_t)((uint64_t)(uint16_t)c[0] | (uint64_t)(uint16_t)c[1] << 16 |
                         (uint64_t)(uint16_t)c[2] << 32 | (uint64_t)(uint16_t)c[3] << 48);
}

/* One half of one group for NQ queries: acc[q][i] holds rows 4i..4i+3, two
 * partial sums each. */
static inline __attribute__((always_inline)) void half_dot(const uint8_t *gc,
                                                           const int64_t *const pat[QTILE],
                                                           size_t NQ, __m256i acc[QTILE][4])
{
#pragma GCC unroll 4
    for (size_t q = 0; q < NQ; q++)
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++)
            acc[q][i] = _mm256_setzero_si256();
    for (unsigned j = 0; j < IDX_HALF / 4; j++) {
        __m256i x[4];
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++)
            x[i] = _mm256_cvtepu8_epi16(_mm_load_si128((const __m128i *)(gc + 64 * j + 16 * i)));
#pragma GCC unroll 4
        for (size_t q = 0; q < NQ; q++) {
            __m256i p = _mm256_set1_epi64x(pat[q][j]);
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++)
                acc[q][i] = _mm256_add_epi32(acc[q][i], _mm256_madd_epi16(x[i], p));
        }
    }
}

/* Fold per-quarter accumulators into rows 0..7 (lo) and 8..15 (hi). */
static inline void fold(const __m256i acc[4], __m256i *lo, __m256i *hi)
{
    *lo = _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc[0], acc[1]), 0xD8);
    *hi = _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc[2], acc[3]), 0xD8);
}

static inline __m256i dist2(__m256i raw, __m256i sq, int32_t bias)
{
    return _mm256_sub_epi32(_mm256_add_epi32(_mm256_set1_epi32(bias), sq),
                            _mm256_slli_epi32(raw, 1));
}

static inline unsigned below(__m256i d2, float thr2)
{
    __m256 le = _mm256_cmp_ps(_mm256_cvtepi32_ps(d2), _mm256_set1_ps(thr2), _CMP_LE_OQ);
    return (unsigned)_mm256_movemask_ps(le);
}

static inline size_t emit8(__m256i d2, unsigned m, unsigned q, unsigned row0, idx_pass *out,
                           size_t n)
{
    int32_t v[8];
    _mm256_storeu_si256((__m256i *)v, d2);
    while (m) {
        unsigned r = (unsigned)__builtin_ctz(m);
        m &= m - 1;
        out[n].q = (uint16_t)q;
        out[n].row = (uint16_t)(row0 + r);
        out[n].d2 = v[r];
        n++;
    }
    return n;
}

static inline __attribute__((always_inline)) size_t scan_nq(const idx_scan_args *a,
                                                            const size_t NQ)
{
    qpat pat[QTILE];
    const int64_t *pa[QTILE], *pb[QTILE];
    size_t n = 0;
    for (size_t q = 0; q < NQ; q++) {
        make_pattern(a->qcodes + q * IDX_DIM, pat[q]);
        pa[q] = pat[q];
        pb[q] = pat[q] + IDX_HALF / 4;
    }
    for (size_t g = 0; g < a->ngroups; g++) {
        __m256i acc[QTILE][4], lo[QTILE], hi[QTILE];
        if (a->pf_codes) { /* the next call's group g, into L2 */
            const char *p = (const char *)(a->pf_codes + g * IDX_GROUP_HALF_BYTES);
            for (unsigned i = 0; i < IDX_GROUP_HALF_BYTES; i += 64)
                _mm_prefetch(p + i, _MM_HINT_T1);
            _mm_prefetch((const char *)(a->pf_sq + g * IDX_GROUP_ROWS), _MM_HINT_T1);
        }
        half_dot(a->codes_a + g * IDX_GROUP_HALF_BYTES, pa, NQ, acc);
        const int32_t *sqap = a->sqa + g * IDX_GROUP_ROWS;
        __m256i sqa_lo = _mm256_loadu_si256((const __m256i *)sqap);
        __m256i sqa_hi = _mm256_loadu_si256((const __m256i *)(sqap + 8));
        float gm = a->gmax[g] * IDX_GM_SCALE;
        float thr2[QTILE];
        unsigned need = 0;
#pragma GCC unroll 4
        for (size_t q = 0; q < NQ; q++) {
            float thr = a->qthr[q] + gm;
            thr2[q] = thr * thr;
            fold(acc[q], &lo[q], &hi[q]);
            if (below(dist2(lo[q], sqa_lo, a->qbias_a[q]), thr2[q]) |
                below(dist2(hi[q], sqa_hi, a->qbias_a[q]), thr2[q]))
                need |= 1u << q;
        }
        if (!need)
            continue;
        const int32_t *sqp = a->sq + g * IDX_GROUP_ROWS;
        __m256i sq_lo = _mm256_loadu_si256((const __m256i *)sqp);
        __m256i sq_hi = _mm256_loadu_si256((const __m256i *)(sqp + 8));
        unsigned row0 = a->row0 + (unsigned)(g * IDX_GROUP_ROWS);
        while (need) {
            unsigned q = (unsigned)__builtin_ctz(need);
            need &= need - 1;
            __m256i accb[QTILE][4], blo, bhi;
            const int64_t *pq[QTILE] = {pb[q]};
            half_dot(a->codes_b + g * IDX_GROUP_HALF_BYTES, pq, 1, accb);
            fold(accb[0], &blo, &bhi);
            __m256i d_lo = dist2(_mm256_add_epi32(lo[q], blo), sq_lo, a->qbias[q]);
            __m256i d_hi = dist2(_mm256_add_epi32(hi[q], bhi), sq_hi, a->qbias[q]);
            n = emit8(d_lo, below(d_lo, thr2[q]), q, row0, a->out, n);
            n = emit8(d_hi, below(d_hi, thr2[q]), q, row0 + 8, a->out, n);
        }
    }
    return n;
}

static size_t scan_avx2(const idx_scan_args *a)
{
    if (a->nq == 1)
        return scan_nq(a, 1);
    return scan_nq(a, 2);
}

const idx_kernel idx_kernel_avx2 = {scan_avx2, QTILE};
