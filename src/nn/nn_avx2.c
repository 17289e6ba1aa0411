/*
 * nn_avx2.c: AVX2 + FMA micro-kernels, for x86-64 CPUs without AVX-512:
 * the dense convolution GEMM tile (up to 6 pixels x 16 channels, or 12 x 8,
 * in the 16 ymm registers) with the fused epilogue, and the depthwise
 * convolution vectorised over channels. Compiled with -mavx2 -mfma -mf16c;
 * only called when nn_isa_supported(NN_ISA_AVX2).
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
/* im2col                                                               */
/* ------------------------------------------------------------------ */

/* Tails are stored as whole vectors; see nn_avx512.c (NN_IM2COL_SLACK). */
static inline void im2col_copy(float *dst, const float *src, size_t n)
{
    size_t i = 0;
    for (; i + W8 <= n; i += W8)
        _mm256_storeu_ps(dst + i, _mm256_loadu_ps(src + i));
    if (i < n)
        _mm256_storeu_ps(dst + i, _mm256_maskload_ps(src + i, cols_mask((int)(n - i))));
}

static inline void im2col_zero(float *dst, size_t n)
{
    for (size_t i = 0; i < n; i += W8)
        _mm256_storeu_ps(dst + i, _mm256_setzero_ps());
}

#include "nn/nn_im2col.h"

/* ------------------------------------------------------------------ */
/* Winograd transforms                                                  */
/* ------------------------------------------------------------------ */

#define V __m256
#define W W8
static inline __m256 wv_zero(void) { return _mm256_setzero_ps(); }
static inline __m256 wv_load(const float *p) { return _mm256_loadu_ps(p); }
static inline __m256 wv_load_n(const float *p, int n)
{
    return _mm256_maskload_ps(p, cols_mask(n));
}
static inline void wv_store(float *p, __m256 v) { _mm256_storeu_ps(p, v); }
static inline void wv_store_n(float *p, __m256 v, int n)
{
    _mm256_maskstore_ps(p, cols_mask(n), v);
}
static inline __m256 wv_add(__m256 a, __m256 b) { return _mm256_add_ps(a, b); }
static inline __m256 wv_sub(__m256 a, __m256 b) { return _mm256_sub_ps(a, b); }
static inline __m256 wv_fmadd(__m256 a, __m256 b, __m256 c) { return _mm256_fmadd_ps(a, b, c); }
#include "nn/nn_winograd.h"
#undef V
#undef W

/* ------------------------------------------------------------------ */
/* Depthwise convolution                                                */
/* ------------------------------------------------------------------ */

/* One output vector of a window clipped to the image (borders, any k). */
static inline __m256 dw_window(const nn_dwconv *d, const float *ib, int h, int w, int iy0,
                               int ix0, const float *wb, __m256i mk)
{
    const int k = d->k, C = d->c, cpad = ((const nn_dwconv_packed *)d->packed)->cpad;
    int ky0 = iy0 < 0 ? -iy0 : 0, ky1 = iy0 + k > h ? h - iy0 : k;
    int kx0 = ix0 < 0 ? -ix0 : 0, kx1 = ix0 + k > w ? w - ix0 : k;
    __m256 acc = _mm256_setzero_ps();
    for (int ky = ky0; ky < ky1; ky++) {
        const float *ir = ib + ((size_t)(iy0 + ky) * w + (size_t)(ix0 + kx0)) * C;
        const float *wr = wb + ((size_t)ky * k + kx0) * cpad;
        for (int kx = kx0; kx < kx1; kx++, ir += C, wr += cpad)
            acc = _mm256_fmadd_ps(_mm256_maskload_ps(ir, mk), _mm256_load_ps(wr), acc);
    }
    return acc;
}

/* One output pixel, every channel, its window clipped to the image. */
static void dw_pixel(const nn_dwconv *d, const float *in, int h, int w, int iy0, int ix0,
                     float *o)
{
    const nn_dwconv_packed *p = d->packed;
    for (int cb = 0; cb < d->c; cb += W8) {
        const __m256i mk = cols_mask(d->c - cb);
        __m256 acc = dw_window(d, in + cb, h, w, iy0, ix0, p->w + cb, mk);
        acc = _mm256_fmadd_ps(acc, _mm256_load_ps(p->scale + cb), _mm256_load_ps(p->shift + cb));
        acc = act_ps(acc, d->act);
        _mm256_maskstore_ps(o + cb, mk, acc);
    }
}

/*
 * P consecutive outputs of a 3x3 window lying inside the image, stride S,
 * every channel: channels innermost, so each input pixel is read as one
 * sequential run, and a loaded input vector serves every output it touches.
 * Each output sums its taps in (ky, kx) order, as the reference does.
 */
static inline __attribute__((always_inline)) void
dw3_block(const nn_dwconv *d, const float *ir0, size_t row, float *o, int cb, const int P,
          const int S, const int FULL)
{
    const nn_dwconv_packed *p = d->packed;
    const int C = d->c, cpad = p->cpad;
    const __m256i mk = cols_mask(C - cb); /* used when !FULL: masked ops are slow */
    __m256 acc[4];

#pragma GCC unroll 4
    for (int q = 0; q < P; q++)
        acc[q] = _mm256_setzero_ps();
#pragma GCC unroll 3
    for (int ky = 0; ky < 3; ky++) {
        const float *ir = ir0 + ky * row + cb;
        const float *wr = p->w + (size_t)ky * 3 * cpad + cb;
        __m256 wk[3];
        wk[0] = _mm256_load_ps(wr);
        wk[1] = _mm256_load_ps(wr + cpad);
        wk[2] = _mm256_load_ps(wr + 2 * cpad);
#pragma GCC unroll 12
        for (int col = 0; col < (P - 1) * S + 3; col++) {
            const float *x_at = ir + (size_t)col * C;
            __m256 x = FULL ? _mm256_loadu_ps(x_at) : _mm256_maskload_ps(x_at, mk);
#pragma GCC unroll 4
            for (int q = 0; q < P; q++) {
                int kx = col - q * S;
                if (kx >= 0 && kx < 3)
                    acc[q] = _mm256_fmadd_ps(x, wk[kx], acc[q]);
            }
        }
    }
    const __m256 sc = _mm256_load_ps(p->scale + cb), sh = _mm256_load_ps(p->shift + cb);
#pragma GCC unroll 4
    for (int q = 0; q < P; q++) {
        __m256 y = act_ps(_mm256_fmadd_ps(acc[q], sc, sh), d->act);
        float *y_at = o + (size_t)q * C + cb;
        if (FULL)
            _mm256_storeu_ps(y_at, y);
        else
            _mm256_maskstore_ps(y_at, mk, y);
    }
}

static inline __attribute__((always_inline)) void
dw3_run(const nn_dwconv *d, const float *ir0, size_t row, float *o, const int P, const int S)
{
    int cb = 0;
    for (; cb + W8 <= d->c; cb += W8)
        dw3_block(d, ir0, row, o, cb, P, S, 1);
    if (cb < d->c)
        dw3_block(d, ir0, row, o, cb, P, S, 0);
}

static void dw3_s1x4(const nn_dwconv *d, const float *ir, size_t row, float *o)
{
    dw3_run(d, ir, row, o, 4, 1);
}
static void dw3_s2x4(const nn_dwconv *d, const float *ir, size_t row, float *o)
{
    dw3_run(d, ir, row, o, 4, 2);
}
static void dw3_x1(const nn_dwconv *d, const float *ir, size_t row, float *o)
{
    dw3_run(d, ir, row, o, 1, 1);
}

static void dwconv_rows(const nn_dwconv *d, const float *in, int h, int w, float *out,
                        int oy0, int oy1)
{
    const int k = d->k, s = d->stride, C = d->c;
    const int ow = nn_out_size(w, k, s, d->pad);
    const int pt = nn_pad_before(h, k, s, d->pad);
    const int pl = nn_pad_before(w, k, s, d->pad);
    const size_t row = (size_t)w * C;
    /* Output columns whose whole window lies inside the row. */
    int ox_lo = (pl + s - 1) / s, ox_hi = w - k + pl >= 0 ? (w - k + pl) / s + 1 : 0;
    if (ox_hi > ow)
        ox_hi = ow;
    if (ox_lo > ox_hi)
        ox_lo = ox_hi;

    for (int oy = oy0; oy < oy1; oy++) {
        int iy0 = oy * s - pt;
        int fast = k == 3 && s <= 2 && iy0 >= 0 && iy0 + 3 <= h;
        float *orow = out + (size_t)oy * ow * C;
        int ox = 0;
        if (fast) {
            for (; ox < ox_lo; ox++)
                dw_pixel(d, in, h, w, iy0, ox * s - pl, orow + (size_t)ox * C);
            for (; ox + 4 <= ox_hi; ox += 4) {
                const float *ir = in + (size_t)iy0 * row + (size_t)(ox * s - pl) * C;
                if (s == 1)
                    dw3_s1x4(d, ir, row, orow + (size_t)ox * C);
                else
                    dw3_s2x4(d, ir, row, orow + (size_t)ox * C);
            }
            for (; ox < ox_hi; ox++)
                dw3_x1(d, in + (size_t)iy0 * row + (size_t)(ox * s - pl) * C, row,
                       orow + (size_t)ox * C);
        }
        for (; ox < ow; ox++)
            dw_pixel(d, in, h, w, iy0, ox * s - pl, orow + (size_t)ox * C);
    }
}

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
