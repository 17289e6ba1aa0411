/*
 * nn_avx512.c: AVX-512 micro-kernels: the dense convolution GEMM tile
 * (up to 14 output pixels by 4 x 16 output channels held in zmm registers,
 * input values broadcast straight from memory into the FMAs) with the
 * fused epilogue, and the 16-float vector primitives the shared im2col,
 * Winograd and depthwise bodies are built from (nn_im2col.h,
 * nn_winograd.h, nn_depthwise.h).
 * Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512bf16 -mfma;
 * only called when nn_isa_supported(NN_ISA_AVX512).
 */
#include <immintrin.h>

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
    return cols >= W16 ? (__mmask16)0xffff : (__mmask16)((1u << cols) - 1u);
}

/* The fused epilogue: scale, shift, residual, activation, store. */
static inline __attribute__((always_inline)) void
tile_store(const nn_tile *t, __m512 acc[NN_MR_MAX][NN_NV_MAX], const int MR, const int NV)
{
    __m512 sc[NN_NV_MAX], sh[NN_NV_MAX];
    __mmask16 mk[NN_NV_MAX];
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) {
        sc[v] = _mm512_loadu_ps(t->scale + v * W16); /* padded: whole vectors exist */
        sh[v] = _mm512_loadu_ps(t->shift + v * W16);
        mk[v] = cols_mask(t->cols - v * W16);
    }
#pragma GCC unroll 14
    for (int m = 0; m < MR; m++) {
        float *o = t->out + (size_t)m * t->ldo;
        const float *r = t->res ? t->res + (size_t)m * t->ldo : NULL;
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            int full = t->cols >= (v + 1) * W16; /* masked stores are slower */
            __m512 y = _mm512_fmadd_ps(acc[m][v], sc[v], sh[v]);
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

static inline __attribute__((always_inline)) void tile_fp32(const nn_tile *t, const int MR,
                                                            const int NV)
{
    __m512 acc[NN_MR_MAX][NN_NV_MAX];
    const float *b = t->b;
    const size_t lda = t->lda, pl = t->panel_len;

#pragma GCC unroll 14
    for (int m = 0; m < MR; m++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            acc[m][v] = _mm512_setzero_ps();
    for (int tap = 0; tap < t->taps; tap++) {
        const float *a = t->a + t->tap_off[tap];
        for (int j = 0; j < t->seg; j++, a++, b += W16) {
            __m512 bv[NN_NV_MAX];
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++)
                bv[v] = _mm512_load_ps(b + v * pl);
#pragma GCC unroll 14
            for (int m = 0; m < MR; m++) {
                __m512 av = _mm512_set1_ps(a[m * lda]);
#pragma GCC unroll 4
                for (int v = 0; v < NV; v++)
                    acc[m][v] = _mm512_fmadd_ps(av, bv[v], acc[m][v]);
            }
        }
    }
    tile_store(t, acc, MR, NV);
}

#define TILE(MR, NV) \
    static void tile_##MR##x##NV(const nn_tile *t) { tile_fp32(t, MR, NV); }
#define TILES_TO_6(NV) TILE(1, NV) TILE(2, NV) TILE(3, NV) TILE(4, NV) TILE(5, NV) TILE(6, NV)
#define TILES_TO_8(NV) TILES_TO_6(NV) TILE(7, NV) TILE(8, NV)
#define TILES_TO_12(NV) TILES_TO_8(NV) TILE(9, NV) TILE(10, NV) TILE(11, NV) TILE(12, NV)
#define TILES_TO_14(NV) TILES_TO_12(NV) TILE(13, NV) TILE(14, NV)
TILES_TO_14(1)
TILES_TO_12(2)
TILES_TO_8(3)
TILES_TO_6(4)

#define ROW6(NV) NULL, tile_1x##NV, tile_2x##NV, tile_3x##NV, tile_4x##NV, tile_5x##NV, tile_6x##NV
#define ROW8(NV) ROW6(NV), tile_7x##NV, tile_8x##NV
#define ROW12(NV) ROW8(NV), tile_9x##NV, tile_10x##NV, tile_11x##NV, tile_12x##NV
#define ROW14(NV) ROW12(NV), tile_13x##NV, tile_14x##NV

/* ------------------------------------------------------------------ */
/* im2col, Winograd transforms and depthwise convolution                */
/* ------------------------------------------------------------------ */

/* The vector primitives the shared bodies are written in. */
#define V __m512
#define VM __mmask16
#define W W16
static inline __m512 wv_zero(void) { return _mm512_setzero_ps(); }
static inline __m512 wv_load(const float *p) { return _mm512_loadu_ps(p); }
static inline void wv_store(float *p, __m512 v) { _mm512_storeu_ps(p, v); }
static inline __mmask16 wv_mask(int n) { return cols_mask(n); }
static inline __m512 wv_load_m(const float *p, __mmask16 mk)
{
    return _mm512_maskz_loadu_ps(mk, p);
}
static inline void wv_store_m(float *p, __m512 v, __mmask16 mk) { _mm512_mask_storeu_ps(p, mk, v); }
static inline __m512 wv_load_n(const float *p, int n) { return wv_load_m(p, cols_mask(n)); }
static inline void wv_store_n(float *p, __m512 v, int n) { wv_store_m(p, v, cols_mask(n)); }
static inline __m512 wv_add(__m512 a, __m512 b) { return _mm512_add_ps(a, b); }
static inline __m512 wv_sub(__m512 a, __m512 b) { return _mm512_sub_ps(a, b); }
static inline __m512 wv_fmadd(__m512 a, __m512 b, __m512 c) { return _mm512_fmadd_ps(a, b, c); }
#include "nn/nn_im2col.h"
#include "nn/nn_winograd.h"
#include "nn/nn_depthwise.h"
#undef V
#undef VM
#undef W

const nn_kernels nn_kernels_avx512 = {
    .width = W16,
    .nv_max = 4,
    .mr_max = {0, 14, 12, 8, 6},
    .tile = {{NULL}, {ROW14(1)}, {ROW12(2)}, {ROW8(3)}, {ROW6(4)}},
    .eff = {{0},
            {0, .28f, .52f, .58f, 1, 1, 1, 1, 1, 1, 1, 1, 1, .98f, .95f},
            {0, .49f, .73f, .73f, 1, 1, 1, 1, 1, 1, 1, 1, .98f},
            {0, .50f, .75f, .77f, 1, 1, 1, 1, 1},
            {0, .50f, .80f, .80f, 1, 1, 1}},
    .im2col = im2col_rows,
    .wino_in = wino_in,
    .wino_out = wino_out,
    .dwconv_rows = dwconv_rows,
};
