/*
 * nn_int8_avx512.c: the AVX-512 VNNI int8 micro-kernels (see nn_int.h,
 * nn_qtile): up to 14 output pixels by 4 x 16 output channels of int32
 * sums in zmm registers. Each step broadcasts 4 input bytes of a pixel
 * and multiplies them with the 4 x 16 weight bytes of a vector in one
 * vpdpbusd (u8 x s8, 64 products, summed in groups of 4 into 16 int32
 * lanes, without saturation). The fp32 epilogue converts, scales, shifts,
 * adds the residual and applies the activation as the fp32 kernels do.
 * Also the input quantisation (fp32 -> u8), bit-exact with nn_quantize1.
 * Compiled with the AVX-512 flags (VNNI included); only called when
 * nn_int8_isa_supported(NN_ISA_AVX512).
 */
#include <immintrin.h>
#include <string.h>

#include "nn/nn_int.h"

#define W16 16

static inline __attribute__((always_inline)) __m512 act_ps(__m512 y, nn_act act)
{
    switch (act) {
    case NN_ACT_RELU:
        return _mm512_max_ps(y, _mm512_setzero_ps());
    case NN_ACT_RELU6:
        return _mm512_min_ps(_mm512_max_ps(y, _mm512_setzero_ps()), _mm512_set1_ps(6.0f));
    case NN_ACT_LEAKY: {
        __mmask16 neg = _mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_LT_OQ);
        return _mm512_mask_mul_ps(y, neg, y, _mm512_set1_ps(0.1f));
    }
    case NN_ACT_NONE:
    default:
        return y;
    }
}

static inline __mmask16 cols_mask(int cols)
{
    return cols >= W16 ? (__mmask16)0xffff : cols <= 0 ? 0 : (__mmask16)((1u << cols) - 1u);
}

/*
 * acc += the 4-byte dot products of u8 a and s8 b, lane by lane. Written in
 * asm: gcc 12 copies the accumulator around the vpdpbusd intrinsic (and
 * spills the tile to the stack) instead of updating it in place.
 */
static inline __attribute__((always_inline)) __m512i dpbusd(__m512i acc, __m512i a, __m512i b)
{
    __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
    return acc;
}

/* Four bytes of A, broadcast to every lane. */
static inline __m512i bcast4(const uint8_t *p)
{
    int32_t v;
    memcpy(&v, p, sizeof(v));
    return _mm512_set1_epi32(v);
}

static inline __attribute__((always_inline)) void
qtile_store(const nn_qtile *t, __m512i acc[NN_QMR_MAX][NN_NV_MAX], const int MR, const int NV)
{
    __mmask16 mk[NN_NV_MAX];
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++)
        mk[v] = cols_mask(t->cols - v * W16);
    if (t->acc_out) {
#pragma GCC unroll 14
        for (int m = 0; m < MR; m++)
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++)
                _mm512_mask_storeu_epi32(t->acc_out + (size_t)m * t->ldo + v * W16, mk[v],
                                         acc[m][v]);
        return;
    }
    __m512 mul[NN_NV_MAX], zm[NN_NV_MAX], sh[NN_NV_MAX];
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) {
        mul[v] = _mm512_loadu_ps(t->mul + v * W16); /* padded: whole vectors exist */
        zm[v] = t->rowsum ? _mm512_loadu_ps(t->zmul + v * W16) : _mm512_setzero_ps();
        sh[v] = _mm512_loadu_ps(t->shift + v * W16);
    }
#pragma GCC unroll 14
    for (int m = 0; m < MR; m++) {
        float *o = t->out + (size_t)m * t->ldo;
        const float *r = t->res ? t->res + (size_t)m * t->ldo : NULL;
        const __m512 rs = _mm512_set1_ps(t->rowsum ? (float)t->rowsum[m] : 0.0f);
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            int full = t->cols >= (v + 1) * W16; /* masked stores are slower */
            __m512 z = t->rowsum ? _mm512_fmadd_ps(rs, zm[v], sh[v]) : sh[v];
            __m512 y = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[m][v]), mul[v], z);
            if (r)
                y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(mk[v], r + v * W16));
            y = act_ps(y, t->act);
            if (full)
                _mm512_storeu_ps(o + v * W16, y);
            else
                _mm512_mask_storeu_ps(o + v * W16, mk[v], y);
        }
    }
}

static inline __attribute__((always_inline)) void qtile_vnni(const nn_qtile *t, const int MR,
                                                             const int NV)
{
    __m512i acc[NN_QMR_MAX][NN_NV_MAX];
    const uint8_t *a = t->a;
    const int8_t *b = t->b;
    const size_t lda = t->lda, pl = t->panel_len;

#pragma GCC unroll 14
    for (int m = 0; m < MR; m++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            acc[m][v] = _mm512_setzero_si512();
    for (int k = 0; k < t->k4; k++, a += 4, b += 64) {
        __m512i bv[NN_NV_MAX];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            bv[v] = _mm512_load_si512((const void *)(b + v * pl));
#pragma GCC unroll 14
        for (int m = 0; m < MR; m++) {
            __m512i av = bcast4(a + m * lda);
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++)
                acc[m][v] = dpbusd(acc[m][v], av, bv[v]);
        }
    }
    qtile_store(t, acc, MR, NV);
}

#define QTILE(MR, NV) \
    static void qtile_##MR##x##NV(const nn_qtile *t) { qtile_vnni(t, MR, NV); }
#define QTILES_TO_6(NV) \
    QTILE(1, NV) QTILE(2, NV) QTILE(3, NV) QTILE(4, NV) QTILE(5, NV) QTILE(6, NV)
#define QTILES_TO_8(NV) QTILES_TO_6(NV) QTILE(7, NV) QTILE(8, NV)
#define QTILES_TO_12(NV) QTILES_TO_8(NV) QTILE(9, NV) QTILE(10, NV) QTILE(11, NV) QTILE(12, NV)
#define QTILES_TO_14(NV) QTILES_TO_12(NV) QTILE(13, NV) QTILE(14, NV)
QTILES_TO_14(1)
QTILES_TO_12(2)
QTILES_TO_8(3)
QTILES_TO_6(4)

#define QROW6(NV) \
    NULL, qtile_1x##NV, qtile_2x##NV, qtile_3x##NV, qtile_4x##NV, qtile_5x##NV, qtile_6x##NV
#define QROW8(NV) QROW6(NV), qtile_7x##NV, qtile_8x##NV
#define QROW12(NV) QROW8(NV), qtile_9x##NV, qtile_10x##NV, qtile_11x##NV, qtile_12x##NV
#define QROW14(NV) QROW12(NV), qtile_13x##NV, qtile_14x##NV

/* 16 values to 16 bytes, as nn_quantize1: scale, clamp (NaN to 0: vmaxps
 * returns its second operand when the first is NaN), round half to even. */
static inline __m128i quant16(__m512 x, __m512 inv)
{
    __m512 t = _mm512_mul_ps(x, inv);
    t = _mm512_max_ps(t, _mm512_setzero_ps());
    t = _mm512_min_ps(t, _mm512_set1_ps(255.0f));
    return _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(t));
}

static void quantize(const float *x, size_t n, float inv, uint8_t *q)
{
    const __m512 vinv = _mm512_set1_ps(inv);
    size_t i = 0;
    for (; i + 4 * W16 <= n; i += 4 * W16) {
        __m128i q0 = quant16(_mm512_loadu_ps(x + i), vinv);
        __m128i q1 = quant16(_mm512_loadu_ps(x + i + W16), vinv);
        __m128i q2 = quant16(_mm512_loadu_ps(x + i + 2 * W16), vinv);
        __m128i q3 = quant16(_mm512_loadu_ps(x + i + 3 * W16), vinv);
        _mm_storeu_si128((__m128i *)(q + i), q0);
        _mm_storeu_si128((__m128i *)(q + i + W16), q1);
        _mm_storeu_si128((__m128i *)(q + i + 2 * W16), q2);
        _mm_storeu_si128((__m128i *)(q + i + 3 * W16), q3);
    }
    for (; i + W16 <= n; i += W16)
        _mm_storeu_si128((__m128i *)(q + i), quant16(_mm512_loadu_ps(x + i), vinv));
    if (i < n) {
        __mmask16 mk = cols_mask((int)(n - i));
        __m512 t = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, x + i), vinv);
        t = _mm512_min_ps(_mm512_max_ps(t, _mm512_setzero_ps()), _mm512_set1_ps(255.0f));
        _mm512_mask_cvtepi32_storeu_epi8(q + i, mk, _mm512_cvtps_epi32(t));
    }
}

/* The byte sums of rows of A: vpsadbw against zero sums 8 bytes at a time. */
static void rowsums(const uint8_t *a, size_t lda, int kpad, int rows, int32_t *sums)
{
    const __m512i zero = _mm512_setzero_si512();
    for (int r = 0; r < rows; r++) {
        const uint8_t *p = a + (size_t)r * lda;
        __m512i acc = _mm512_setzero_si512();
        int k = 0;
        for (; k + 64 <= kpad; k += 64)
            acc = _mm512_add_epi64(acc, _mm512_sad_epu8(_mm512_loadu_si512(p + k), zero));
        if (k < kpad) {
            __mmask64 mk = (__mmask64)(~0ull >> (64 - (kpad - k)));
            acc = _mm512_add_epi64(acc, _mm512_sad_epu8(_mm512_maskz_loadu_epi8(mk, p + k), zero));
        }
        sums[r] = (int32_t)_mm512_reduce_add_epi64(acc);
    }
}

const nn_qkernels nn_qkernels_avx512 = {
    .nv_max = 4,
    .mr_max = {0, 14, 12, 8, 6},
    .tile = {{NULL}, {QROW14(1)}, {QROW12(2)}, {QROW8(3)}, {QROW6(4)}},
    .quantize = quantize,
    .rowsums = rowsums,
};
