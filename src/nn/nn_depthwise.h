/*
 * nn_depthwise.h: the depthwise convolution kernels, shared by the ISA
 * files, vectorised over channels and written in the vector primitives of
 * nn_int.h (V, W, wv_*). Masked loads and stores are slow (on AMD most of
 * all), so the kernels use them for the channel tail only.
 */
#ifndef LETHE_NN_DEPTHWISE_H
#define LETHE_NN_DEPTHWISE_H

#include "nn/nn_int.h"

/* Inputs larger than this (bytes) are prefetched a row ahead (see dw3_block). */
#define NN_DW_PREFETCH_BYTES (2u << 20)

/*
 * NB channel blocks from cb on of one output pixel whose window is clipped
 * to the image (borders, any k). The blocks' sums are independent, so
 * their FMAs overlap instead of waiting on one another. FULL: every
 * channel of the blocks exists (else NB == 1 and the block is masked).
 */
static inline __attribute__((always_inline)) void
dw_pixel_blocks(const nn_dwconv *d, const float *in, int h, int w, int iy0, int ix0, float *o,
                int cb, const int NB, const int FULL)
{
    const nn_dwconv_packed *p = d->packed;
    const int k = d->k, C = d->c, cpad = p->cpad;
    const int ky0 = iy0 < 0 ? -iy0 : 0, ky1 = iy0 + k > h ? h - iy0 : k;
    const int kx0 = ix0 < 0 ? -ix0 : 0, kx1 = ix0 + k > w ? w - ix0 : k;
    const VM mk = wv_mask(C - cb); /* used when !FULL */
    V acc[4];

#pragma GCC unroll 4
    for (int j = 0; j < NB; j++)
        acc[j] = wv_zero();
    for (int ky = ky0; ky < ky1; ky++) {
        const float *ir = in + ((size_t)(iy0 + ky) * w + (size_t)(ix0 + kx0)) * C + cb;
        const float *wr = p->w + ((size_t)ky * k + kx0) * cpad + cb;
        for (int kx = kx0; kx < kx1; kx++, ir += C, wr += cpad)
#pragma GCC unroll 4
            for (int j = 0; j < NB; j++) {
                V x = FULL ? wv_load(ir + j * W) : wv_load_m(ir, mk);
                acc[j] = wv_fmadd(x, wv_load(wr + j * W), acc[j]);
            }
    }
#pragma GCC unroll 4
    for (int j = 0; j < NB; j++) {
        const int c = cb + j * W;
        V y = wv_fmadd(acc[j], wv_load(p->scale + c), wv_load(p->shift + c)); /* padded */
        y = act_ps(y, d->act);
        if (FULL)
            wv_store(o + c, y);
        else
            wv_store_m(o + c, y, mk);
    }
}

/* One output pixel, every channel, its window clipped to the image. */
static void dw_pixel(const nn_dwconv *d, const float *in, int h, int w, int iy0, int ix0,
                     float *o)
{
    int cb = 0;
    for (; cb + 4 * W <= d->c; cb += 4 * W)
        dw_pixel_blocks(d, in, h, w, iy0, ix0, o, cb, 4, 1);
    for (; cb + W <= d->c; cb += W)
        dw_pixel_blocks(d, in, h, w, iy0, ix0, o, cb, 1, 1);
    if (cb < d->c)
        dw_pixel_blocks(d, in, h, w, iy0, ix0, o, cb, 1, 0);
}

/*
 * P consecutive outputs of a 3x3 window lying inside the image, stride S,
 * every channel: channels innermost, so each input pixel is read as one
 * sequential run, and a loaded input vector serves every output it touches.
 * Each output sums its taps in (ky, kx) order, as the reference does.
 */
static inline __attribute__((always_inline)) void
dw3_block(const nn_dwconv *d, const float *ir0, size_t row, float *o, int cb, int pf,
          const int P, const int S, const int FULL)
{
    const nn_dwconv_packed *p = d->packed;
    const int C = d->c, cpad = p->cpad;
    const VM mk = wv_mask(C - cb); /* used when !FULL */
    V acc[4];

#pragma GCC unroll 4
    for (int q = 0; q < P; q++)
        acc[q] = wv_zero();
#pragma GCC unroll 3
    for (int ky = 0; ky < 3; ky++) {
        const float *ir = ir0 + ky * row + cb;
        const float *wr = p->w + (size_t)ky * 3 * cpad + cb;
        V wk[3];
        wk[0] = wv_load(wr);
        wk[1] = wv_load(wr + cpad);
        wk[2] = wv_load(wr + 2 * cpad);
#pragma GCC unroll 12
        for (int col = 0; col < (P - 1) * S + 3; col++) {
            const float *x_at = ir + (size_t)col * C;
            V x = FULL ? wv_load(x_at) : wv_load_m(x_at, mk);
#pragma GCC unroll 4
            for (int q = 0; q < P; q++) {
                int kx = col - q * S;
                if (kx >= 0 && kx < 3)
                    acc[q] = wv_fmadd(x, wk[kx], acc[q]);
            }
        }
    }
    /* Tensors past L2 stream from memory: fetch the input rows the next
     * output row adds, into L2, one row ahead. */
    if (pf)
#pragma GCC unroll 2
        for (int r = 3; r < 3 + S; r++)
#pragma GCC unroll 8
            for (int col = 0; col < P * S; col++)
                __builtin_prefetch(ir0 + r * row + (size_t)col * C + cb, 0, 2);
    const V sc = wv_load(p->scale + cb), sh = wv_load(p->shift + cb);
#pragma GCC unroll 4
    for (int q = 0; q < P; q++) {
        V y = act_ps(wv_fmadd(acc[q], sc, sh), d->act);
        float *y_at = o + (size_t)q * C + cb;
        if (FULL)
            wv_store(y_at, y);
        else
            wv_store_m(y_at, y, mk);
    }
}

static inline __attribute__((always_inline)) void
dw3_run(const nn_dwconv *d, const float *ir0, size_t row, float *o, int pf, const int P,
        const int S)
{
    int cb = 0;
    for (; cb + W <= d->c; cb += W)
        dw3_block(d, ir0, row, o, cb, pf, P, S, 1);
    if (cb < d->c)
        dw3_block(d, ir0, row, o, cb, pf, P, S, 0);
}

static void dw3_s1x4(const nn_dwconv *d, const float *ir, size_t row, float *o, int pf)
{
    dw3_run(d, ir, row, o, pf, 4, 1);
}
static void dw3_s2x4(const nn_dwconv *d, const float *ir, size_t row, float *o, int pf)
{
    dw3_run(d, ir, row, o, pf, 4, 2);
}
static void dw3_s1x2(const nn_dwconv *d, const float *ir, size_t row, float *o)
{
    dw3_run(d, ir, row, o, 0, 2, 1);
}
static void dw3_s2x2(const nn_dwconv *d, const float *ir, size_t row, float *o)
{
    dw3_run(d, ir, row, o, 0, 2, 2);
}
static void dw3_x1(const nn_dwconv *d, const float *ir, size_t row, float *o)
{
    dw3_run(d, ir, row, o, 0, 1, 1);
}

/* Output rows [oy0, oy1), written from out on (out is row oy0): 3x3
 * windows inside the image four (or two) at a time, the rest (borders,
 * other k and strides) pixel by pixel. */
static void dwconv_rows(const nn_dwconv *d, const float *in, int h, int w, float *out, int oy0,
                        int oy1)
{
    const int k = d->k, s = d->stride, C = d->c;
    const int ow = nn_out_size(w, k, s, d->pad);
    const int pt = nn_pad_before(h, k, s, d->pad);
    const int pl = nn_pad_before(w, k, s, d->pad);
    const size_t row = (size_t)w * C;
    const int pf = (size_t)h * row * sizeof(float) > NN_DW_PREFETCH_BYTES;
    /* Output columns whose whole window lies inside the row. */
    int ox_lo = (pl + s - 1) / s, ox_hi = w - k + pl >= 0 ? (w - k + pl) / s + 1 : 0;
    if (ox_hi > ow)
        ox_hi = ow;
    if (ox_lo > ox_hi)
        ox_lo = ox_hi;

    for (int oy = oy0; oy < oy1; oy++) {
        int iy0 = oy * s - pt;
        int fast = k == 3 && s <= 2 && iy0 >= 0 && iy0 + 3 <= h;
        int pf_row = pf && iy0 + 2 + s < h; /* the rows to prefetch exist */
        float *orow = out + (size_t)(oy - oy0) * ow * C;
        int ox = 0;
        if (fast) {
            for (; ox < ox_lo; ox++)
                dw_pixel(d, in, h, w, iy0, ox * s - pl, orow + (size_t)ox * C);
            for (; ox + 4 <= ox_hi; ox += 4) {
                const float *ir = in + (size_t)iy0 * row + (size_t)(ox * s - pl) * C;
                if (s == 1)
                    dw3_s1x4(d, ir, row, orow + (size_t)ox * C, pf_row);
                else
                    dw3_s2x4(d, ir, row, orow + (size_t)ox * C, pf_row);
            }
            if (ox + 2 <= ox_hi) {
                const float *ir = in + (size_t)iy0 * row + (size_t)(ox * s - pl) * C;
                if (s == 1)
                    dw3_s1x2(d, ir, row, orow + (size_t)ox * C);
                else
                    dw3_s2x2(d, ir, row, orow + (size_t)ox * C);
                ox += 2;
            }
            for (; ox < ox_hi; ox++)
                dw3_x1(d, in + (size_t)iy0 * row + (size_t)(ox * s - pl) * C, row,
                       orow + (size_t)ox * C);
        }
        for (; ox < ow; ox++)
            dw_pixel(d, in, h, w, iy0, ox * s - pl, orow + (size_t)ox * C);
    }
}

#endif
