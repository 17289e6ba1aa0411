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
 * Layers may also carry an int8 form (see "Reduced precision" below), run
 * when the CPU has AVX-512 VNNI, the avx512 set is in use and LETHE_INT8 is
 * not set to 0.
 */
#ifndef LETHE_NN_H
#define LETHE_NN_H

#include <stddef.h>
#include <stdint.h>

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
    void *qpacked;    /* int8 form (nn_conv_quantize), owned, or NULL */
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

/* ------------------------------------------------------------------ */
/* Reduced precision: int8 convolutions                                 */
/* ------------------------------------------------------------------ */

/*
 * A dense convolution may carry an int8 form besides its fp32 one:
 *   - weights s8. Weights that lie on an affine grid of 256 steps, as
 *     tfjs's uint8 quantisation leaves them (w = min + step * code, both
 *     ends used), are held exactly: w = zero + step * v, v = code - 128.
 *     Others get a symmetric step per output channel, max |w| / 127, and
 *     are rounded to it;
 *   - inputs u8 on a fixed grid: q = round(x / in_step), in_step =
 *     in_max / 255, clamped to [0, 255] (negative inputs and NaN give 0);
 *   - products summed exactly in int32 (AVX-512 VNNI vpdpbusd), with the
 *     inputs' sum for the grid's zero, then in fp32
 *       y = act(float(acc) * mul[c] + (float(sum q) * zmul[c] + shift[c])
 *               (+ residual)),
 *     mul = scale * step * in_step, zmul = scale * zero * in_step, each
 *     line one FMA.
 * It suits layers whose input is bounded by construction: the outputs of
 * ReLU6 fit [0, 6] exactly. The error it adds to an output is at most
 * scale[c] * sum_k (|x_k| w_err + |w_k| in_step / 2 + w_err in_step / 2)
 * for inputs within [0, in_max], w_err = 0 on a grid and step[c] / 2
 * otherwise (fp32 rounding aside); test_nn holds the kernels to that bound.
 *
 * nn_conv_forward runs the int8 form whenever nn_int8_available(), else
 * the fp32 one; results do not depend on the pool either way.
 */

/* Whether the int8 kernels run here: AVX-512 VNNI, the avx512 kernel set in
 * use, and LETHE_INT8 not set to 0 (set it to compare with fp32). */
int nn_int8_available(void);
/* Whether an ISA has int8 kernels on this CPU (NN_ISA_AVX512 with VNNI). */
int nn_int8_isa_supported(nn_isa isa);

/*
 * Prepare the int8 form of an initialised layer whose inputs lie in
 * [0, in_max] (in_max > 0). Any kernel size, stride and padding. Returns 0,
 * or -1 (bad in_max, or no memory: the layer then stays fp32 only).
 */
int nn_conv_quantize(nn_conv *c, float in_max);
/* Whether the layer has an int8 form. */
int nn_conv_is_quantized(const nn_conv *c);

/*
 * Depthwise layer whose output is the input of int8 layers: the fp32
 * output y (exactly as nn_dwconv_forward computes it) quantised on the
 * grid [0, out_max] as such a layer's input is, q = round(y * 255 / out_max)
 * clamped to [0, 255]; out is [oh][ow][c] bytes. scratch holds
 * nn_dwconv_u8_scratch_size() bytes (64-byte aligned): a row of fp32 per
 * worker, so that the full fp32 tensor never goes through memory.
 */
size_t nn_dwconv_u8_scratch_size(const nn_dwconv *d, int h, int w, const nn_pool *pool);
void nn_dwconv_forward_u8(const nn_dwconv *d, const float *in, int h, int w, uint8_t *out,
                          float out_max, void *scratch, nn_pool *pool);
/*
 * The int8 form of c on an input already quantised on its grid (the
 * nn_conv_quantize in_max; e.g. by nn_dwconv_forward_u8): [h][w][cin] bytes.
 * Equal to nn_conv_forward's int8 form on the fp32 input those bytes came
 * from. Runs the VNNI kernels where nn_int8_available(), else the scalar
 * reference (slow: call it only where nn_int8_available()). A 1x1
 * stride-1 layer with cin a multiple of 4 reads the bytes in place.
 */
void nn_conv_forward_u8(const nn_conv *c, const uint8_t *in, int h, int w, float *out,
                        const float *residual, void *scratch, nn_pool *pool);

/* The int8 form on an ISA: NN_ISA_AVX512 runs the VNNI kernels when the
 * CPU has them; anything else runs the scalar reference. c must be
 * quantised; scratch as for nn_conv_forward. */
void nn_conv_forward_int8_isa(nn_isa isa, const nn_conv *c, const float *in, int h, int w,
                              float *out, const float *residual, void *scratch,
                              nn_pool *pool);
void nn_conv_forward_u8_isa(nn_isa isa, const nn_conv *c, const uint8_t *in, int h, int w,
                            float *out, const float *residual, void *scratch, nn_pool *pool);
void nn_dwconv_forward_u8_isa(nn_isa isa, const nn_dwconv *d, const float *in, int h, int w,
                              uint8_t *out, float out_max, void *scratch, nn_pool *pool);
/* For the tests: the raw int32 sums acc[m][cout] of already quantised
 * inputs a (m rows of K = kh * kw * cin bytes, lda >= K rounded up to 4
 * apart, zeros past K), on an ISA as above. */
void nn_int8_gemm_isa(nn_isa isa, const nn_conv *c, const uint8_t *a, size_t lda, int m,
                      int32_t *acc, nn_pool *pool);
/* For the tests: the input quantisation of n floats on an ISA as above. */
void nn_int8_quantize_isa(nn_isa isa, const float *x, size_t n, float in_max, uint8_t *q);

/* Per-ISA entry points, for the tests that hold each optimised kernel to the
 * scalar reference. They compute exactly what the public functions do (in
 * fp32: nn_conv_forward_isa ignores a layer's int8 form). */
void nn_conv_forward_isa(nn_isa isa, const nn_conv *c, const float *in, int h, int w,
                         float *out, const float *residual, void *scratch, nn_pool *pool);
void nn_dwconv_forward_isa(nn_isa isa, const nn_dwconv *d, const float *in, int h, int w,
                           float *out, nn_pool *pool);

#endif
