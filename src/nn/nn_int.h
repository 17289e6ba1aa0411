/*
 * nn_int.h: what the files of the nn layer share and nobody else sees: the
 * packed layer formats, the GEMM tile contract between the ISA-independent
 * convolution driver (nn_conv.c) and the per-ISA micro-kernels
 * (nn_avx2.c, nn_avx512.c), and the scalar reference kernels (nn_ref.c).
 */
#ifndef LETHE_NN_INT_H
#define LETHE_NN_INT_H

#include <stddef.h>
#include <stdint.h>

#include "nn/nn.h"

/* Packed weights are split into panels of this many output channels. */
#define NN_PANEL 16
/* The largest number of output rows (pixels) one micro-kernel call handles. */
#define NN_MR_MAX 14
/* The largest number of vectors across output channels in one call. */
#define NN_NV_MAX 4

/*
 * A dense convolution's packed form. The GEMM view: A is the im2col matrix
 * (one row per output pixel, K = kh * kw * cin columns in (ky, kx, ci)
 * order, exactly the HWIO weight order), B is the weight matrix K x cout.
 * B is stored as panels of NN_PANEL output channels, each K x NN_PANEL and
 * contiguous, zero-filled past cout; scale and shift are padded likewise
 * (with 1 and 0) so kernels may compute whole panels and mask the stores.
 */
typedef struct nn_conv_packed {
    int k;            /* K = kh * kw * cin */
    int panels;       /* ceil(cout / NN_PANEL) */
    size_t panel_len; /* floats per panel: K * NN_PANEL */
    float *b;         /* [panels][K][NN_PANEL], 64-byte aligned */
    float *scale;     /* [panels * NN_PANEL] */
    float *shift;     /* [panels * NN_PANEL] */
    float *wino;      /* Winograd weights, or NULL: 16 matrices cin x cout as B */
    size_t wino_len;  /* floats between those matrices: panels * cin * NN_PANEL */
} nn_conv_packed;

/*
 * One micro-kernel call: rows x cols of the output, rows <= the kernel's MR,
 * cols <= its vectors x vector width (the rest of the vectors is computed on
 * zero padding and not stored). The depth K is walked as `taps` segments of
 * `seg` consecutive values each; segment s of row m starts at
 * a + tap_off[s] + m * lda (a plain GEMM is one segment of K):
 *   out[m][j] = act(scale[j] * sum_k A[m][k] * B[k][j] + shift[j] (+ res[m][j]))
 * B column j of the tile lives at b + (j / 16) * panel_len + k * 16 + j % 16.
 */
typedef struct nn_tile {
    const float *a;           /* row 0 of A for this tile */
    size_t lda;               /* floats between A rows */
    int taps, seg;            /* K = taps * seg */
    const ptrdiff_t *tap_off; /* [taps] floats from a to each segment */
    const float *b;           /* the tile's first panel */
    size_t panel_len;         /* floats between panels */
    const float *scale;       /* at the tile's first column */
    const float *shift;
    float *out;               /* row 0, first column */
    size_t ldo;               /* floats between output rows (cout) */
    const float *res;         /* residual, laid out as out, or NULL */
    int cols;                 /* valid columns (1 .. vectors * width) */
    nn_act act;
} nn_tile;

typedef void (*nn_tile_fn)(const nn_tile *t);

/* Bytes past the last gathered row that the gather may overwrite: tails
 * are copied as whole vectors, the spill landing where it writes next. */
#define NN_IM2COL_SLACK 64

/* What im2col needs to know about a convolution and its input. */
typedef struct nn_im2col {
    int h, w, cin;   /* input */
    int kh, kw, stride;
    int pt, pl;      /* padding before */
    int ow;          /* output width */
    size_t lda;      /* floats between rows of the gathered A (>= K) */
} nn_im2col;

/* What the Winograd F(2x2, 3x3) transforms need (nn_winograd.h). Output
 * tile t covers output rows 2 * (t / tw) + {0, 1}, columns 2 * (t % tw) + {0, 1}. */
typedef struct nn_wino {
    int h, w, cin, cout; /* input size and channels */
    int oh, ow;          /* output size */
    int pt, pl;          /* padding before */
    int tw;              /* tiles in a row: ceil(ow / 2) */
    size_t ldv;          /* floats between rows of V (>= cin, whole vectors) */
    size_t vstride;      /* floats between the 16 matrices of V */
    size_t mstride;      /* floats between the 16 matrices of M (rows of cout) */
    nn_act act;
} nn_wino;

/*
 * The bodies shared by the ISA files (nn_im2col.h, nn_winograd.h,
 * nn_depthwise.h) are written in vector primitives that each ISA file
 * defines before including them: V, a vector of W floats; VM, a lane mask;
 *   V wv_zero(void), V wv_load(const float *), void wv_store(float *, V),
 *   V wv_add(V, V), V wv_sub(V, V), V wv_fmadd(V a, V b, V c) (a * b + c),
 *   V act_ps(V, nn_act),
 *   VM wv_mask(int n) (the first n lanes, all of them for n >= W),
 *   V wv_load_m(const float *, VM), void wv_store_m(float *, V, VM),
 *   V wv_load_n(const float *, int n), void wv_store_n(float *, V, int n)
 * (masked: the lanes outside the mask are neither read nor written, and
 * loads give zeros there; _n is _m with wv_mask(n)).
 */

/* The micro-kernels and depthwise kernel of one ISA. */
typedef struct nn_kernels {
    int width;                            /* floats per vector */
    int nv_max;                           /* largest vector count per tile */
    int mr_max[NN_NV_MAX + 1];            /* largest rows per tile, by vector count */
    nn_tile_fn tile[NN_NV_MAX + 1][NN_MR_MAX + 1];      /* [nv][rows] */
    /* Measured fraction of the FMA peak each tile reaches, for the planner
     * (bench: tiles with A and B in L1, K = 288, Zen 4). */
    float eff[NN_NV_MAX + 1][NN_MR_MAX + 1];
    /* Gather rows [r0, r1) of the im2col matrix into buf (nn_im2col.h). */
    void (*im2col)(const nn_im2col *g, const float *in, int r0, int r1, float *buf);
    /* Winograd transforms of tiles [t0, t1) (nn_winograd.h). */
    void (*wino_in)(const nn_wino *g, const float *in, int t0, int t1, float *v);
    void (*wino_out)(const nn_wino *g, const float *m, int t0, int t1, const float *scale,
                     const float *shift, const float *res, float *out);
    /* Depthwise convolution of output rows [oy0, oy1). */
    void (*dwconv_rows)(const nn_dwconv *d, const float *in, int h, int w, float *out,
                        int oy0, int oy1);
} nn_kernels;

/* Kernel tables; only call an ISA's when nn_isa_supported() says so. */
extern const nn_kernels nn_kernels_avx2;
extern const nn_kernels nn_kernels_avx512;
const nn_kernels *nn_kernels_for(nn_isa isa); /* NULL for scalar */

/* Depthwise weights padded to a multiple of NN_PANEL channels. */
typedef struct nn_dwconv_packed {
    int cpad;     /* c rounded up to NN_PANEL */
    float *w;     /* [k * k][cpad] */
    float *scale; /* [cpad] */
    float *shift; /* [cpad] */
} nn_dwconv_packed;

/* Apply an activation to one value (the reference kernels use it). */
static inline float nn_act1(float x, nn_act act)
{
    switch (act) {
    case NN_ACT_RELU:
        return x > 0.0f ? x : 0.0f;
    case NN_ACT_RELU6:
        return x > 0.0f ? (x < 6.0f ? x : 6.0f) : 0.0f;
    case NN_ACT_LEAKY:
        return x < 0.0f ? 0.1f * x : x;
    case NN_ACT_NONE:
    default:
        return x;
    }
}

/* The scalar reference kernels (nn_ref.c). */
void nn_ref_conv(const nn_conv *c, const float *in, int h, int w, float *out,
                 const float *residual);
void nn_ref_dwconv(const nn_dwconv *d, const float *in, int h, int w, float *out);
void nn_ref_maxpool(const float *in, int h, int w, int c, int k, int stride, nn_pad pad,
                    float *out);
void nn_ref_avgpool(const float *in, int h, int w, int c, int k, int stride, nn_pad pad,
                    float *out);

/* The optimised dense convolution driver (nn_conv.c). */
double nn_tile_cycles(const nn_kernels *kern, int rows, int nv, int k);
size_t nn_conv_opt_scratch(const nn_conv *c, int h, int w, int workers);
void nn_conv_opt_forward(const nn_kernels *kern, const nn_conv *c, const float *in, int h,
                         int w, float *out, const float *residual, void *scratch,
                         nn_pool *pool);
int nn_conv_pack(nn_conv *c);

/* Winograd F(2x2, 3x3) (nn_wino.c). */
int nn_wino_applies(const nn_conv *c); /* 3x3, stride 1, enough channels */
int nn_wino_pack(nn_conv *c);          /* packed->wino; 0 or -1 */
/* Estimated cycles (< 0: not applicable) and scratch bytes for `workers`. */
double nn_wino_cost(const nn_kernels *kern, const nn_conv *c, int h, int w, int workers,
                    size_t *scratch);
void nn_wino_forward(const nn_kernels *kern, const nn_conv *c, const float *in, int h, int w,
                     float *out, const float *residual, void *scratch, nn_pool *pool);

#endif
