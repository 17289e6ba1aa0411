/*
 * nn_im2col.h: the im2col gather, shared by the ISA files, written in the
 * vector primitives of nn_int.h (V, W, wv_*) so that the short copies (a
 * kernel row of taps is kw * cin floats, 21 for the ResNet's first layer)
 * compile to a few vector moves instead of library calls.
 */
#ifndef LETHE_NN_IM2COL_H
#define LETHE_NN_IM2COL_H

#include "nn/nn_int.h"

/*
 * Masked stores are slow on Zen 4, so tails are stored as whole vectors:
 * the spill past n lands where the gather writes next (the rows are
 * written in address order) or in the block's slack (NN_IM2COL_SLACK).
 */
static inline void im2col_copy(float *dst, const float *src, size_t n)
{
    size_t i = 0;
    for (; i + W <= n; i += W)
        wv_store(dst + i, wv_load(src + i));
    if (i < n)
        wv_store(dst + i, wv_load_n(src + i, (int)(n - i)));
}

static inline void im2col_zero(float *dst, size_t n)
{
    for (size_t i = 0; i < n; i += W)
        wv_store(dst + i, wv_zero());
}

/* Rows [r0, r1) of A (output pixels), K = kh * kw * cin floats each,
 * lda apart, into buf; taps outside the image are zeros. */
static void im2col_rows(const nn_im2col *g, const float *in, int r0, int r1, float *buf)
{
    const size_t cin = (size_t)g->cin;
    const size_t rowlen = (size_t)g->kw * cin; /* one kernel row of taps */
    int oy = r0 / g->ow, ox = r0 % g->ow;
    for (int r = r0; r < r1; r++) {
        int iy0 = oy * g->stride - g->pt, ix0 = ox * g->stride - g->pl;
        float *dst = buf + (size_t)(r - r0) * g->lda;
        int inside_x = ix0 >= 0 && ix0 + g->kw <= g->w;
        for (int ky = 0; ky < g->kh; ky++, dst += rowlen) {
            int iy = iy0 + ky;
            if (iy < 0 || iy >= g->h) {
                im2col_zero(dst, rowlen);
                continue;
            }
            const float *src = in + (size_t)iy * g->w * cin;
            if (inside_x) {
                im2col_copy(dst, src + (size_t)ix0 * cin, rowlen);
                continue;
            }
            for (int kx = 0; kx < g->kw; kx++) {
                int ix = ix0 + kx;
                if (ix < 0 || ix >= g->w)
                    im2col_zero(dst + kx * cin, cin);
                else
                    im2col_copy(dst + kx * cin, src + (size_t)ix * cin, cin);
            }
        }
        if (++ox == g->ow) {
            ox = 0;
            oy++;
        }
    }
}

#endif
