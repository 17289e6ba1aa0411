/*
 * nn_int.h: what the files of the nn layer share and nobody else sees: the
 * packed layer formats, the GEMM tile contract between the ISA-independent
 * convolution driver (nn_conv.c) and the per-ISA micro-kernels
 * (nn_avx2.c, nn_avx512.c), the same for the int8 form (nn_int8.c,
 * nn_int8_avx512.c), and the scalar reference kernels (nn_ref.c).
 */
#ifndef LETHE_NN_INT_H
#define LETHE_NN_INT_H

#include <math.h>
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
    /* Depthwise convolution of output rows [oy0, oy1), written from out
     * on (out points at row oy0). */
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
/* Output rows [oy0, oy1), written from out on (out points at row oy0). */
void nn_ref_dwconv_rows(const nn_dwconv *d, const float *in, int h, int w, float *out, int oy0,
                        int oy1);
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

/* Where part k of n equal parts of [0, total) starts (part n: total). The
 * convolution drivers split tiles and column groups among tasks with it. */
static inline int nn_part(int total, int k, int n)
{
    return (int)((long)total * k / n);
}

/* ------------------------------------------------------------------ */
/* int8 convolutions (nn_int8.c, nn_int8_avx512.c)                      */
/* ------------------------------------------------------------------ */

/* The largest number of output rows one int8 micro-kernel call handles. */
#define NN_QMR_MAX 14

/*
 * A convolution's int8 form. The GEMM view is the fp32 one (A: one row per
 * output pixel, K = kh * kw * cin in (ky, kx, ci) order), with K padded to
 * kpad, a multiple of 4, because vpdpbusd sums groups of 4 bytes. B is
 * stored as panels of NN_PANEL output channels, each [kpad / 4][NN_PANEL][4]
 * bytes: one 64-byte vector per group of 4 k, byte 4 * j + i holding
 * column j, row 4 * g + i; zero past K and past cout.
 *
 * A weight is w[k][c] = zero[c] + w_step[c] * v[k][c] with v in s8. With
 * an input x = in_step * q, an output is then
 *   scale[c] * sum_k x w + shift[c]
 *     = acc * mul[c] + rowsum * zmul[c] + shift[c],
 *   acc = sum_k q v (int32), rowsum = sum_k q (int32),
 *   mul[c] = scale[c] * in_step * w_step[c], zmul[c] = scale[c] * in_step * zero[c].
 * Weights on an affine grid of 256 steps (tfjs's uint8 quantisation, as
 * face-api.js ships them) are held exactly that way (zero_point set);
 * others symmetrically per channel (zero[c] = 0, zmul unused).
 * mul, zmul and shift are padded with 0 past cout.
 */
typedef struct nn_qconv_packed {
    int k, kpad;          /* K, and K rounded up to a multiple of 4 */
    int panels;           /* ceil(cout / NN_PANEL) */
    size_t panel_len;     /* bytes per panel: kpad * NN_PANEL */
    int8_t *b;            /* [panels][kpad / 4][NN_PANEL][4], 64-byte aligned */
    int zero_point;       /* the weights are exact on an affine grid: use zmul */
    float *mul;           /* [panels * NN_PANEL]: scale * in_step * w_step */
    float *zmul;          /* [panels * NN_PANEL]: scale * in_step * zero */
    float *shift;         /* [panels * NN_PANEL] */
    float in_max;         /* inputs are clamped to [0, in_max] */
    float in_inv;         /* 255 / in_max: q = round(x * in_inv) */
} nn_qconv_packed;

/*
 * One int8 micro-kernel call: rows x cols of the output (rows <= the
 * kernel's MR for nv vectors, cols <= nv * 16):
 *   acc[m][j] = sum_{k < kpad} A[m][k] * B[k][j]      (exact, int32)
 *   out[m][j] = act(float(acc[m][j]) * mul[j] + z[m][j] (+ res[m][j]))
 *   z[m][j] = rowsum ? float(rowsum[m]) * zmul[j] + shift[j] : shift[j]
 * (each line rounded once: FMAs), or, when acc_out is set,
 * acc_out[m * ldo + j] = acc[m][j] instead.
 * A row m starts at a + m * lda (lda a multiple of 4); B column j of the
 * tile lives in panel j / 16 (b + (j / 16) * panel_len), byte 4 * (j % 16)
 * of each 64-byte group.
 */
typedef struct nn_qtile {
    const uint8_t *a;     /* row 0 of the quantised A */
    size_t lda;           /* bytes between A rows */
    int k4;               /* kpad / 4 */
    const int8_t *b;      /* the tile's first panel */
    size_t panel_len;     /* bytes between panels */
    const float *mul;     /* at the tile's first column */
    const float *zmul;    /* used with rowsum */
    const float *shift;
    const int32_t *rowsum;/* sum of each A row (zero-point weights), or NULL */
    float *out;           /* row 0, first column */
    size_t ldo;           /* elements between output rows (cout) */
    const float *res;     /* residual, laid out as out, or NULL */
    int32_t *acc_out;     /* raw sums instead of out (tests), or NULL */
    int cols;             /* valid columns (1 .. nv * 16) */
    nn_act act;
} nn_qtile;

typedef void (*nn_qtile_fn)(const nn_qtile *t);

/* The int8 kernels of one ISA. */
typedef struct nn_qkernels {
    int nv_max;                                   /* largest vector count per tile */
    int mr_max[NN_NV_MAX + 1];                    /* largest rows per tile, by vectors */
    nn_qtile_fn tile[NN_NV_MAX + 1][NN_QMR_MAX + 1]; /* [nv][rows] */
    /* q[i] = clamp(round(x[i] * inv), 0, 255) for n values, as
     * nn_ref_quantize (bit-exact). */
    void (*quantize)(const float *x, size_t n, float inv, uint8_t *q);
    /* sums[r] = the sum of the kpad bytes of row r of a (rows lda apart). */
    void (*rowsums)(const uint8_t *a, size_t lda, int kpad, int rows, int32_t *sums);
} nn_qkernels;

/* Only call when nn_int8_isa_supported(NN_ISA_AVX512). */
extern const nn_qkernels nn_qkernels_avx512;

/* Quantise one input value: the definition every kernel must match. The
 * comparisons send NaN to 0; lrintf rounds half to even (the default
 * rounding mode, as vcvtps2dq). */
static inline uint8_t nn_quantize1(float x, float inv)
{
    float t = x * inv;
    t = t > 0.0f ? t : 0.0f;
    t = t < 255.0f ? t : 255.0f;
    return (uint8_t)lrintf(t);
}

/* The scalar int8 reference (nn_ref.c). */
void nn_ref_quantize(const float *x, size_t n, float inv, uint8_t *q);
void nn_ref_int8_gemm(const nn_conv *c, const uint8_t *a, size_t lda, int m, int32_t *acc);
/* in (fp32, quantised here) or inq (quantised already): one is NULL. */
void nn_ref_int8_conv(const nn_conv *c, const float *in, const uint8_t *inq, int h, int w,
                      float *out, const float *residual);

/* The optimised int8 convolution driver (nn_int8.c). */
size_t nn_int8_scratch(const nn_conv *c, int h, int w, int workers);
/* in (fp32) or inq (quantised already): one is NULL. */
void nn_int8_forward(const nn_qkernels *kern, const nn_conv *c, const float *in,
                     const uint8_t *inq, int h, int w, float *out, const float *residual,
                     void *scratch, nn_pool *pool);
void nn_qconv_packed_free(nn_qconv_packed *q);

#endif
