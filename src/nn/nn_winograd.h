/*
 * nn_winograd.h: the input and output transforms of Winograd F(2x2, 3x3),
 * shared by the ISA files, vectorised over channels and written in the
 * vector primitives of nn_int.h (V, W, wv_*).
 *
 * With d a 4x4 input patch, g a 3x3 kernel and
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], A^T = [1 1 1 0; 0 1 -1 -1],
 * the 2x2 outputs are A^T [(G g G^T) . (B^T d B)] A; nn_wino.c transforms g.
 */
#ifndef LETHE_NN_WINOGRAD_H
#define LETHE_NN_WINOGRAD_H

#include "nn/nn_int.h"

/* V for tiles [t0, t1): matrix e (= 4 * xi + nu) row t - t0 at
 * v + e * vstride + (t - t0) * ldv, all ldv floats written (zeros past cin). */
static void wino_in(const nn_wino *g, const float *in, int t0, int t1, float *v)
{
    const int C = g->cin;
    for (int t = t0; t < t1; t++) {
        int ty = t / g->tw, tx = t % g->tw;
        int iy0 = 2 * ty - g->pt, ix0 = 2 * tx - g->pl;
        int rv[4], cv[4];
        for (int i = 0; i < 4; i++) {
            rv[i] = iy0 + i >= 0 && iy0 + i < g->h;
            cv[i] = ix0 + i >= 0 && ix0 + i < g->w;
        }
        float *vt = v + (size_t)(t - t0) * g->ldv;
        for (int c = 0; c < (int)g->ldv; c += W) {
            int n = C - c; /* may be <= 0 in the padding: zeros */
            V d[4][4], u[4][4];
            for (int r = 0; r < 4; r++)
                for (int q = 0; q < 4; q++) {
                    if (!rv[r] || !cv[q] || n <= 0) {
                        d[r][q] = wv_zero();
                        continue;
                    }
                    const float *p = in + ((size_t)(iy0 + r) * g->w + (ix0 + q)) * C + c;
                    d[r][q] = n >= W ? wv_load(p) : wv_load_n(p, n);
                }
            for (int q = 0; q < 4; q++) { /* B^T d */
                u[0][q] = wv_sub(d[0][q], d[2][q]);
                u[1][q] = wv_add(d[1][q], d[2][q]);
                u[2][q] = wv_sub(d[2][q], d[1][q]);
                u[3][q] = wv_sub(d[1][q], d[3][q]);
            }
            for (int r = 0; r < 4; r++) { /* (B^T d) B */
                float *o = vt + (size_t)(4 * r) * g->vstride + c;
                wv_store(o, wv_sub(u[r][0], u[r][2]));
                wv_store(o + g->vstride, wv_add(u[r][1], u[r][2]));
                wv_store(o + 2 * g->vstride, wv_sub(u[r][2], u[r][1]));
                wv_store(o + 3 * g->vstride, wv_sub(u[r][1], u[r][3]));
            }
        }
    }
}

/* Outputs of tiles [t0, t1) from M (laid out as V, rows of cout floats,
 * mstride apart), with the layer's scale, shift, residual and activation. */
static void wino_out(const nn_wino *g, const float *m, int t0, int t1, const float *scale,
                     const float *shift, const float *res, float *out)
{
    const int C = g->cout;
    for (int t = t0; t < t1; t++) {
        int ty = t / g->tw, tx = t % g->tw;
        int oy0 = 2 * ty, ox0 = 2 * tx;
        int rows = oy0 + 1 < g->oh ? 2 : 1, cols = ox0 + 1 < g->ow ? 2 : 1;
        const float *mt = m + (size_t)(t - t0) * C;
        for (int c = 0; c < C; c += W) {
            int n = C - c;
            V x[4][4], s[2][4], y[2][2];
            for (int e = 0; e < 16; e++) {
                const float *p = mt + (size_t)e * g->mstride + c;
                x[e / 4][e % 4] = n >= W ? wv_load(p) : wv_load_n(p, n);
            }
            for (int q = 0; q < 4; q++) { /* A^T x */
                s[0][q] = wv_add(wv_add(x[0][q], x[1][q]), x[2][q]);
                s[1][q] = wv_sub(wv_sub(x[1][q], x[2][q]), x[3][q]);
            }
            for (int r = 0; r < 2; r++) { /* (A^T x) A */
                y[r][0] = wv_add(wv_add(s[r][0], s[r][1]), s[r][2]);
                y[r][1] = wv_sub(wv_sub(s[r][1], s[r][2]), s[r][3]);
            }
            V sc = wv_load(scale + c), sh = wv_load(shift + c); /* padded */
            for (int r = 0; r < rows; r++)
                for (int q = 0; q < cols; q++) {
                    size_t o = ((size_t)(oy0 + r) * g->ow + ox0 + q) * C + c;
                    V z = wv_fmadd(y[r][q], sc, sh);
                    if (res)
                        z = wv_add(z, n >= W ? wv_load(res + o) : wv_load_n(res + o, n));
                    z = act_ps(z, g->act);
                    if (n >= W)
                        wv_store(out + o, z);
                    else
                        wv_store_n(out + o, z, n);
                }
        }
    }
}

#endif
