/*
 * nn_avx2.c: AVX2 + FMA micro-kernels, for x86-64 CPUs without AVX-512:
 * the dense convolution GEMM tile (up to 6 pixels x 16 channels, or 12 x 8,
 * in the 16 ymm registers) with the fused epilogue, and the 8-float vector
 * primitives the shared im2col, Winograd and depthwise bodies are built
 * from (nn_im2col.h, nn_winograd.h, nn_depthwise.h). Compiled with
 * -mavx2 -mfma -mf16c; only called when nn_isa_supported(NN_ISA_AVX2).
 */
#include <immintrin.h>

#include "nn/nn_int.h"

#define W8 8

static inline __attribute__((always_inline)) __m256 act_ps(__m256 y, nn_act act)
{
    switch (act) {
    case NN_ACT_RELU:
        return _mm256_max_ps(y, _mm256_setzero_ps());
    case NN_ACT_RELU6:
        return _mm256_min_ps(_mm256_max_ps(y, _mm256_setzero_ps()), _mm256_set1_ps(6.0f));
    case NN_ACT_LEAKY: {
        __m256 neg = _mm256_cmp_ps(y, _mm256_setzero_ps(), _CMP_LT_OQ);
        return _mm256_blendv_ps(y, _mm256_mul_ps(y, _mm256_set1_ps(0.1f)), neg);
    }
    case NN_ACT_NONE:
    default:
        return y;
    }
}

/* A lane mask for the first `cols` (0..8 or more) floats. */
static inline __m256i cols_mask(int cols)
{
    static const int32_t ones_then_zeros[16] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                                0,  0,  0,  0,  0,  0,  0,  0};
    if (cols > W8)
        cols = W8;
    return _mm256_loadu_si256((const __m256i *)(ones_then_zeros + W8 - cols));
}

static inline __attribute__((always_inline)) void tile_fp32(const nn_tile *t, const int MR,
                                                            const int NV)
{
    __m256 acc[12][2];
    const float *b = t->b; /* NV == 2: both halves of one 16-wide panel */
    const size_t lda = t->lda;

#pragma GCC unroll 12
    for (int m = 0; m < MR; m++)
#pragma GCC unroll 2
        for (int v = 0; v < NV; v++)
            acc[m][v] = _mm256_setzero_ps();
    for (int tap = 0; tap < t->taps; tap++) {
        const float *a = t->a + t->tap_off[tap];
        for (int j = 0; j < t->seg; j++, a++, b += NN_PANEL) {
            __m256 bv[2];
#pragma GCC unroll 2
            for (int v = 0; v < NV; v++)
                bv[v] = _mm256_load_ps(b + v * W8);
#pragma GCC unroll 12
            for (int m = 0; m < MR; m++) {
                __m256 av = _mm256_broadcast_ss(a + m * lda);
#pragma GCC unroll 2
                for (int v = 0; v < NV; v++)
                    acc[m][v] = _mm256_fmadd_ps(av, bv[v], acc[m][v]);
            }
        }
    }

    __m256 sc[2], sh[2];
    __m256i mk[2];
#pragma GCC unroll 2
    for (int v = 0; v < NV; v++) {
        sc[v] = _mm256_loadu_ps(t->scale + v * W8);
        sh[v] = _mm256_loadu_ps(t->shift + v * W8);
        mk[v] = cols_mask(t->cols - v * W8);
    }
#pragma GCC unroll 12
    for (int m = 0; m < MR; m++) {
        float *o = t->out + (size_t)m * t->ldo;
        const float *r = t->res ? t->res + (size_t)m * t->ldo : NULL;
#pragma GCC unroll 2
        for (int v = 0; v < NV; v++) {
            /* vmaskmovps stores are slow on AMD: masks for the tail only */
            int full = t->cols >= (v + 1) * W8;
            __m256 y = _mm256_fmadd_ps(acc[m][v], sc[v], sh[v]);
            if (r)
                y = _mm256_add_ps(y, full ? _mm256_loadu_ps(r + v * W8)
                                          : _mm256_maskload_ps(r + v * W8, mk[v]));
            y = act_ps(y, t->act);
            if (full)
                _mm256_storeu_ps(o + v * W8, y);
            else
                _mm256_maskstore_ps(o + v * W8, mk[v], y);
        }
    }
}

#define TILE(MR, NV) \
    static void tile_##MR##x##NV(const nn_tile *t) { tile_fp32(t, MR, NV); }
#define TILES_TO_6(NV) TILE(1, NV) TILE(2, NV) TILE(3, NV) TILE(4, NV) TILE(5, NV) TILE(6, NV)
#define TILES_TO_12(NV) \
    TILES_TO_6(NV) TILE(7, NV) TILE(8, NV) TILE(9, NV) TILE(10, NV) TILE(11, NV) TILE(12, NV)
TILES_TO_12(1)
TILES_TO_6(2)

#define ROW6(NV) NULL, tile_1x##NV, tile_2x##NV, tile_3x##NV, tile_4x##NV, tile_5x##NV, tile_6x##NV
#define ROW12(NV) \
    ROW6(NV), tile_7x##NV, tile_8x##NV, tile_9x##NV, tile_10x##NV, tile_11x##NV, tile_12x##NV

/* ------------------------------------------------------------------ */
/* im2col, Winograd transforms and depthwise convolution                */
/* ------------------------------------------------------------------ */

/* The vector primitives the shared bodies are written in. */
#define V __m256
#define VM __m256i
#define W W8
static inline __m256 wv_zero(void) { return _mm256_setzero_ps(); }
static inline __m256 wv_load(const float *p) { return _mm256_loadu_ps(p); }
static inline void wv_store(float *p, __m256 v) { _mm256_storeu_ps(p, v); }
static inline __m256i wv_mask(int n) { return cols_mask(n); }
static inline __m256 wv_load_m(const float *p, __m256i mk) { return _mm256_maskload_ps(p, mk); }
static inline void wv_store_m(float *p, __m256 v, __m256i mk) { _mm256_maskstore_ps(p, mk, v); }
static inline __m256 wv_load_n(const float *p, int n) { return wv_load_m(p, cols_mask(n)); }
static inline void wv_store_n(float *p, __m256 v, int n) { wv_store_m(p, v, cols_mask(n)); }
static inline __m256 wv_add(__m256 a, __m256 b) { return _mm256_add_ps(a, b); }
static inline __m256 wv_sub(__m256 a, __m256 b) { return _mm256_sub_ps(a, b); }
static inline __m256 wv_fmadd(__m256 a, __m256 b, __m256 c) { return _mm256_fmadd_ps(a, b, c); }
#include "nn/nn_im2col.h"
#include "nn/nn_winograd.h"
#include "nn/nn_depthwise.h"
#undef V
#undef VM
#undef W

const nn_kernels nn_kernels_avx2 = {
    .width = W8,
    .nv_max = 2,
    .mr_max = {0, 12, 6, 0, 0},
    .tile = {{NULL}, {ROW12(1)}, {ROW6(2)}},
    .eff = {{0},
            {0, .13f, .24f, .35f, .45f, .45f, .57f, .58f, .62f, .62f, .64f, .64f, .63f},
            {0, .26f, .48f, .64f, .65f, .75f, .85f}},
    .im2col = im2col_rows,
    .wino_in = wino_in,
    .wino_out = wino_out,
    .dwconv_rows = dwconv_rows,
};
