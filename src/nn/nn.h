/*
 * nn.h: the neural-network kernels liblethe's face models run on.
 *
 * Tensors are one image at a time, float32, HWC (TensorFlow's NHWC with
 * N = 1), rows packed: element (y, x, c) is at ((y * w) + x) * channels + c.
 * Padding follows TensorFlow: NN_PAD_SAME gives ceil(in / stride) outputs
 * with pad_total = max((out - 1) * stride + k - in, 0) and the smaller half
 * (pad_total / 2) before; NN_PAD_VALID gives (in - k) / stride + 1.
 *
 * Every layer is prepared once (weights copied and packed for the kernel set
 * chosen at run time by CPU features) and then run many times, from any
 * number of threads at once: a prepared layer is read-only.
 *
 * Kernel sets: a plain C reference ("scalar") and optimised ones ("avx2",
 * "avx512"). nn_init() picks the best the CPU has; the environment variable
 * LETHE_KERNELS=scalar|avx2|avx512 forces one (an unavailable one falls back).
 */
#ifndef LETHE_NN_H
#define LETHE_NN_H

#include <stddef.h>

typedef enum nn_act {
    NN_ACT_NONE = 0,
    NN_ACT_RELU = 1,   /* max(x, 0) */
    NN_ACT_RELU6 = 2,  /* min(max(x, 0), 6) */
    NN_ACT_LEAKY = 3   /* x < 0 ? 0.1 * x : x (tiny YOLO v2) */
} nn_act;

typedef enum nn_pad { NN_PAD_SAME = 0, NN_PAD_VALID = 1 } nn_pad;

typedef enum nn_isa { NN_ISA_SCALAR = 0, NN_ISA_AVX2 = 1, NN_ISA_AVX512 = 2 } nn_isa;

/* Choose the kernel set (idempotent, thread-safe). Returns the one chosen. */
nn_isa nn_init(void);
/* The kernel set in use, and its name. */
nn_isa nn_isa_current(void);
const char *nn_isa_name(nn_isa isa);
/* Whether the CPU (and OS) support an ISA. */
int nn_isa_supported(nn_isa isa);

/* ------------------------------------------------------------------ */
/* Thread pool                                                          */
/* ------------------------------------------------------------------ */

typedef struct nn_pool nn_pool;

/* A pool of `threads` workers in all (the caller counts as one of them:
 * threads == 1 starts no thread). threads <= 0 means one per online core. */
int nn_pool_create(nn_pool **out, int threads);
void nn_pool_destroy(nn_pool *pool); /* NULL is fine */
int nn_pool_size(const nn_pool *pool); /* 1 for NULL */

/* Run fn(arg, i, worker) for every i in [0, n) and wait for all of them.
 * worker is in [0, nn_pool_size(pool)). pool == NULL runs serially in the
 * caller. Calls from several threads at once are serialised. A task must not
 * call nn_pool_run on the same pool (pass NULL to the layers it runs). */
typedef void (*nn_task_fn)(void *arg, int i, int worker);
void nn_pool_run(nn_pool *pool, int n, nn_task_fn fn, void *arg);

/* ------------------------------------------------------------------ */
/* Layers                                                               */
/* ------------------------------------------------------------------ */

/* Output size of a k x k window with stride s under pad, along one axis. */
int nn_out_size(int in, int k, int stride, nn_pad pad);
/* Padding placed before the first element along one axis (TF semantics). */
int nn_pad_before(int in, int k, int stride, nn_pad pad);

/*
 * How a dense convolution is computed. GEMM sums every output in the
 * reference's order (only fp32 rounding differs); Winograd F(2x2, 3x3) does
 * 2.25x fewer multiplications for 3x3 stride-1 layers, with rounding a few
 * times larger, and keeps 16/9 the weights in memory. AUTO takes whichever
 * is faster for the input size.
 */
typedef enum nn_algo {
    NN_ALGO_AUTO = 0,    /* the default */
    NN_ALGO_GEMM = 1,    /* direct, row or im2col GEMM only */
    NN_ALGO_WINOGRAD = 2 /* Winograd wherever it applies (else GEMM) */
} nn_algo;

/*
 * Dense 2-D convolution, fused with a per-output-channel affine and an
 * activation:  y[c] = act(scale[c] * sum(x * w) + shift[c] (+ residual)).
 */
typedef struct nn_conv {
    int kh, kw;       /* kernel height, width */
    int cin, cout;    /* channels in, out */
    int stride;       /* same in both axes */
    nn_pad pad;
    nn_act act;
    float *w;         /* [kh][kw][cin][cout] (TF HWIO), owned */
    float *scale;     /* [cout], owned; all ones if created with NULL */
    float *shift;     /* [cout], owned; all zeros if created with NULL */
    void *packed;     /* kernel-private packed weights, owned */
    nn_algo algo;     /* NN_ALGO_AUTO after init; see nn_conv_set_algo */
} nn_conv;

/* Copy w/scale/shift (scale, shift may be NULL) and pack. 0 or -1 (no memory). */
int nn_conv_init(nn_conv *c, int kh, int kw, int cin, int cout, int stride, nn_pad pad,
                 nn_act act, const float *w, const float *scale, const float *shift);
void nn_conv_free(nn_conv *c); /* frees members; c itself is the caller's */
/* Choose the algorithm (before the layer is shared between threads).
 * Returns 0, or -1 when out of memory (the layer is then unchanged). */
int nn_conv_set_algo(nn_conv *c, nn_algo algo);
void nn_conv_out_hw(const nn_conv *c, int h, int w, int *oh, int *ow);
/* Bytes of scratch memory nn_conv_forward needs for an h x w input (may be 0). */
size_t nn_conv_scratch_size(const nn_conv *c, int h, int w, const nn_pool *pool);
/*
 * out = layer(in). residual, when not NULL, has out's shape and is added
 * before the activation. scratch holds nn_conv_scratch_size() bytes (64-byte
 * aligned). pool may be NULL. in and out must not overlap.
 */
void nn_conv_forward(const nn_conv *c, const float *in, int h, int w, float *out,
                     const float *residual, void *scratch, nn_pool *pool);

/* Depthwise k x k convolution (channel multiplier 1), same fusion as above
 * (no residual): y[c] = act(scale[c] * sum(x[c] * w[c]) + shift[c]). */
typedef struct nn_dwconv {
    int k, c, stride;
    nn_pad pad;
    nn_act act;
    float *w;        /* [k][k][c] (TF [k][k][c][1]), owned */
    float *scale;    /* [c], owned; ones if NULL given */
    float *shift;    /* [c], owned; zeros if NULL given */
    void *packed;
} nn_dwconv;

int nn_dwconv_init(nn_dwconv *d, int k, int c, int stride, nn_pad pad, nn_act act,
                   const float *w, const float *scale, const float *shift);
void nn_dwconv_free(nn_dwconv *d);
void nn_dwconv_forward(const nn_dwconv *d, const float *in, int h, int w, float *out,
                       nn_pool *pool);

/* Pooling, TF semantics (average 'same' pooling divides by the number of
 * in-image elements in the window). */
void nn_maxpool(const float *in, int h, int w, int c, int k, int stride, nn_pad pad,
                float *out);
void nn_avgpool(const float *in, int h, int w, int c, int k, int stride, nn_pad pad,
                float *out);

/* Fully connected: out[j] = sum_i in[i] * w[i * n_out + j] + (b ? b[j] : 0). */
void nn_fc(const float *in, int n_in, const float *w, const float *b, int n_out, float *out);

/* Elementwise helpers over n floats. */
void nn_add(const float *a, const float *b, float *out, size_t n);
void nn_apply_act(float *x, size_t n, nn_act act);

/* Per-ISA entry points, for the tests that hold each optimised kernel to the
 * scalar reference. They compute exactly what the public functions do. */
void nn_conv_forward_isa(nn_isa isa, const nn_conv *c, const float *in, int h, int w,
                         float *out, const float *residual, void *scratch, nn_pool *pool);
void nn_dwconv_forward_isa(nn_isa isa, const nn_dwconv *d, const float *in, int h, int w,
                           float *out, nn_pool *pool);

#endif
