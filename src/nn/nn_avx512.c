/*
 * nn_avx512.c: AVX-512 micro-kernels: the dense convolution GEMM tile
 * (up to 14 output pixels by 4 x 16 output channels held in zmm registers,
 * input values broadcast straight from memory into the FMAs) with the
 * fused epilogue, and the depthwise convolution vectorised over channels.
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
/* im2col                                                               */
/* ------------------------------------------------------------------ */

/*
 * Masked stores are slow on Zen 4, so tails are stored as whole vectors:
 * the spill past n lands where the gather writes next (the rows are
 * written in address order) or in the block's slack (NN_IM2COL_SLACK).
 */
static inline void im2col_copy(float *dst, const float *src, size_t n)
{
    size_t i = 0;
    for (; i + W16 <= n; i += W16)
        _mm512_storeu_ps(dst + i, _mm512_loadu_ps(src + i));
    if (i < n)
        _mm512_storeu_ps(dst + i, _mm512_maskz_loadu_ps(cols_mask((int)(n - i)), src + i));
}

static inline void im2col_zero(float *dst, size_t n)
{
    for (size_t i = 0; i < n; i += W16)
        _mm512_storeu_ps(dst + i, _mm512_setzero_ps());
}

#include "nn/nn_im2col.h"

/* ------------------------------------------------------------------ */
/* Winograd transforms                                                  */
/* ------------------------------------------------------------------ */

#define V __m512
#define W W16
static inline __m512 wv_zero(void) { return _mm512_setzero_ps(); }
static inline __m512 wv_load(const float *p) { return _mm512_loadu_ps(p); }
static inline __m512 wv_load_n(const float *p, int n)
{
    return _mm512_maskz_loadu_ps(cols_mask(n), p);
}
static inline void wv_store(float *p, __m512 v) { _mm512_storeu_ps(p, v); }
static inline void wv_store_n(float *p, __m512 v, int n)
{
    _mm512_mask_storeu_ps(p, cols_mask(n), v);
}
static inline __m512 wv_add(__m512 a, __m512 b) { return _mm512_add_ps(a, b); }
static inline __m512 wv_sub(__m512 a, __m512 b) { return _mm512_sub_ps(a, b); }
static inline __m512 wv_fmadd(__m512 a, __m512 b, __m512 c) { return _mm512_fmadd_ps(a, b, c); }
#include "nn/nn_winograd.h"
#undef V
#undef W

/* ------------------------------------------------------------------ */
/* Depthwise convolution                                                */
/* ------------------------------------------------------------------ */

/* One output vector of a window clipped to the image (borders, any k). */
static inline __m512 dw_window(const nn_dwconv *d, const float *ib, int h, int w, int iy0,
                               int ix0, const float *wb, __mmask16 mk)
{
    const int k = d->k, C = d->c, cpad = ((const nn_dwconv_packed *)d->packed)->cpad;
    int ky0 = iy0 < 0 ? -iy0 : 0, ky1 = iy0 + k > h ? h - iy0 : k;
    int kx0 = ix0 < 0 ? -ix0 : 0, kx1 = ix0 + k > w ? w - ix0 : k;
    __m512 acc = _mm512_setzero_ps();
    for (int ky = ky0; ky < ky1; ky++) {
        const float *ir = ib + ((size_t)(iy0 + ky) * w + (size_t)(ix0 + kx0)) * C;
        const float *wr = wb + ((size_t)ky * k + kx0) * cpad;
        for (int kx = kx0; kx < kx1; kx++, ir += C, wr += cpad)
            acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, ir), _mm512_load_ps(wr), acc);
    }
    return acc;
}

/* One output pixel, every channel, its window clipped to the image. */
static void dw_pixel(const nn_dwconv *d, const float *in, int h, int w, int iy0, int ix0,
                     float *o)
{
    const nn_dwconv_packed *p = d->packed;
    for (int cb = 0; cb < d->c; cb += W16) {
        const __mmask16 mk = cols_mask(d->c - cb);
        __m512 acc = dw_window(d, in + cb, h, w, iy0, ix0, p->w + cb, mk);
        acc = _mm512_fmadd_ps(acc, _mm512_load_ps(p->scale + cb), _mm512_load_ps(p->shift + cb));
        acc = act_ps(acc, d->act);
        _mm512_mask_storeu_ps(o + cb, mk, acc);
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
    const __mmask16 mk = cols_mask(C - cb); /* used when !FULL: masked ops are slow */
    __m512 acc[4];

#pragma GCC unroll 4
    for (int q = 0; q < P; q++)
        acc[q] = _mm512_setzero_ps();
#pragma GCC unroll 3
    for (int ky = 0; ky < 3; ky++) {
        const float *ir = ir0 + ky * row + cb;
        const float *wr = p->w + (size_t)ky * 3 * cpad + cb;
        __m512 wk[3];
        wk[0] = _mm512_load_ps(wr);
        wk[1] = _mm512_load_ps(wr + cpad);
        wk[2] = _mm512_load_ps(wr + 2 * cpad);
#pragma GCC unroll 12
        for (int col = 0; col < (P - 1) * S + 3; col++) {
            const float *x_at = ir + (size_t)col * C;
            __m512 x = FULL ? _mm512_loadu_ps(x_at) : _mm512_maskz_loadu_ps(mk, x_at);
#pragma GCC unroll 4
            for (int q = 0; q < P; q++) {
                int kx = col - q * S;
                if (kx >= 0 && kx < 3)
                    acc[q] = _mm512_fmadd_ps(x, wk[kx], acc[q]);
            }
        }
    }
    const __m512 sc = _mm512_load_ps(p->scale + cb), sh = _mm512_load_ps(p->shift + cb);
#pragma GCC unroll 4
    for (int q = 0; q < P; q++) {
        __m512 y = act_ps(_mm512_fmadd_ps(acc[q], sc, sh), d->act);
        float *y_at = o + (size_t)q * C + cb;
        if (FULL)
            _mm512_storeu_ps(y_at, y);
        else
            _mm512_mask_storeu_ps(y_at, mk, y);
    }
}

static inline __attribute__((always_inline)) void
dw3_run(const nn_dwconv *d, const float *ir0, size_t row, float *o, const int P, const int S)
{
    int cb = 0;
    for (; cb + W16 <= d->c; cb += W16)
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
