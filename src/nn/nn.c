/*
 * nn.c: the front of the nn layer: CPU feature detection (CPUID and XGETBV,
 * so an OS that does not save the wide registers is respected), the choice
 * of kernel set (LETHE_KERNELS may force one), layer preparation, dispatch
 * to the reference or optimised kernels, and the small layers (pooling,
 * fully connected, elementwise) that are cheap enough in plain C.
 */
#include <cpuid.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn_int.h"
#include "util/util.h"

/* ------------------------------------------------------------------ */
/* CPU features and the kernel set                                      */
/* ------------------------------------------------------------------ */

static struct {
    int avx2;   /* AVX2 + FMA + F16C, YMM state enabled by the OS */
    int avx512; /* F + BW + VL + DQ + FMA, ZMM and opmask state enabled */
    int vnni;   /* AVX512_VNNI as well */
} cpu;

static nn_isa isa_current = NN_ISA_SCALAR;
static int int8_on; /* the int8 kernels run (nn_int8_available) */
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static uint64_t read_xcr0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static void detect_cpu(void)
{
    unsigned a, b, c, d;
    unsigned max_leaf = __get_cpuid_max(0, NULL);
    int osxsave, avx, fma, f16c;
    uint64_t xcr0 = 0;

    if (max_leaf < 7 || !__get_cpuid(1, &a, &b, &c, &d))
        return;
    osxsave = (c >> 27) & 1;
    avx = (c >> 28) & 1;
    fma = (c >> 12) & 1;
    f16c = (c >> 29) & 1;
    if (!osxsave || !avx)
        return;
    xcr0 = read_xcr0();
    if ((xcr0 & 0x6) != 0x6) /* SSE and AVX state */
        return;
    __cpuid_count(7, 0, a, b, c, d);
    int avx2 = (b >> 5) & 1;
    int f512 = (b >> 16) & 1, dq = (b >> 17) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1;
    cpu.avx2 = avx2 && fma && f16c;
    if (cpu.avx2 && f512 && dq && bw && vl && (xcr0 & 0xe0) == 0xe0) /* opmask, ZMM */
        cpu.avx512 = 1;
    cpu.vnni = cpu.avx512 && ((c >> 11) & 1);
}

/* Whether the detected CPU has an ISA (detect_cpu must have run). */
static int cpu_has(nn_isa isa)
{
    switch (isa) {
    case NN_ISA_SCALAR:
        return 1;
    case NN_ISA_AVX2:
        return cpu.avx2;
    case NN_ISA_AVX512:
        return cpu.avx512;
    }
    return 0;
}

static void init_once_fn(void)
{
    const char *env = getenv("LETHE_KERNELS");
    detect_cpu();
    isa_current = cpu.avx512 ? NN_ISA_AVX512 : cpu.avx2 ? NN_ISA_AVX2 : NN_ISA_SCALAR;
    if (env) {
        nn_isa want = isa_current;
        if (strcmp(env, "scalar") == 0)
            want = NN_ISA_SCALAR;
        else if (strcmp(env, "avx2") == 0)
            want = NN_ISA_AVX2;
        else if (strcmp(env, "avx512") == 0)
            want = NN_ISA_AVX512;
        /* An unavailable choice falls back to the next best below it. */
        while (want > NN_ISA_SCALAR && !cpu_has(want))
            want = (nn_isa)(want - 1);
        isa_current = want;
    }
    const char *int8 = getenv("LETHE_INT8");
    int8_on = isa_current == NN_ISA_AVX512 && cpu.vnni && !(int8 && strcmp(int8, "0") == 0);
}

nn_isa nn_init(void)
{
    pthread_once(&init_once, init_once_fn);
    return isa_current;
}

nn_isa nn_isa_current(void) { return nn_init(); }

const char *nn_isa_name(nn_isa isa)
{
    switch (isa) {
    case NN_ISA_SCALAR:
        return "scalar";
    case NN_ISA_AVX2:
        return "avx2";
    case NN_ISA_AVX512:
        return "avx512";
    }
    return "unknown";
}

int nn_isa_supported(nn_isa isa)
{
    nn_init();
    return cpu_has(isa);
}

int nn_int8_available(void)
{
    nn_init();
    return int8_on;
}

int nn_int8_isa_supported(nn_isa isa)
{
    nn_init();
    return isa == NN_ISA_AVX512 && cpu.vnni;
}

const nn_kernels *nn_kernels_for(nn_isa isa)
{
    switch (isa) {
    case NN_ISA_AVX2:
        return &nn_kernels_avx2;
    case NN_ISA_AVX512:
        return &nn_kernels_avx512;
    case NN_ISA_SCALAR:
        break;
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Geometry                                                             */
/* ------------------------------------------------------------------ */

int nn_out_size(int in, int k, int stride, nn_pad pad)
{
    if (pad == NN_PAD_SAME)
        return (in + stride - 1) / stride;
    return in >= k ? (in - k) / stride + 1 : 0;
}

int nn_pad_before(int in, int k, int stride, nn_pad pad)
{
    if (pad != NN_PAD_SAME)
        return 0;
    int out = nn_out_size(in, k, stride, pad);
    int total = (out - 1) * stride + k - in;
    return total > 0 ? total / 2 : 0;
}

/* ------------------------------------------------------------------ */
/* Dense convolution                                                    */
/* ------------------------------------------------------------------ */

/* A copy of n floats, or of `fill` repeated when src is NULL. */
static float *copy_or_fill(const float *src, size_t n, float fill)
{
    float *d = lethe_malloc(n * sizeof(float));
    if (!d)
        return NULL;
    for (size_t i = 0; i < n; i++)
        d[i] = src ? src[i] : fill;
    return d;
}

int nn_conv_init(nn_conv *c, int kh, int kw, int cin, int cout, int stride, nn_pad pad,
                 nn_act act, const float *w, const float *scale, const float *shift)
{
    size_t nw;

    memset(c, 0, sizeof(*c));
    if (kh < 1 || kw < 1 || cin < 1 || cout < 1 || stride < 1 || !w)
        return -1;
    if (!lethe_mul_size((size_t)kh * kw, (size_t)cin, &nw) ||
        !lethe_mul_size(nw, (size_t)cout, &nw) || nw > ((size_t)1 << 31))
        return -1;
    nn_init();
    c->kh = kh;
    c->kw = kw;
    c->cin = cin;
    c->cout = cout;
    c->stride = stride;
    c->pad = pad;
    c->act = act;
    c->w = copy_or_fill(w, nw, 0.0f);
    c->scale = copy_or_fill(scale, (size_t)cout, 1.0f);
    c->shift = copy_or_fill(shift, (size_t)cout, 0.0f);
    if (!c->w || !c->scale || !c->shift || nn_conv_pack(c) != 0) {
        nn_conv_free(c);
        return -1;
    }
    return 0;
}

void nn_conv_free(nn_conv *c)
{
    if (!c)
        return;
    nn_conv_packed *p = c->packed;
    if (p) {
        lethe_free_aligned(p->b);
        lethe_free_aligned(p->wino);
        lethe_free_aligned(p->scale);
        lethe_free_aligned(p->shift);
        lethe_free(p);
    }
    nn_qconv_packed_free(c->qpacked);
    lethe_free(c->w);
    lethe_free(c->scale);
    lethe_free(c->shift);
    memset(c, 0, sizeof(*c));
}

int nn_conv_set_algo(nn_conv *c, nn_algo algo)
{
    nn_conv_packed *p = c->packed;
    if (algo == NN_ALGO_GEMM) {
        lethe_free_aligned(p->wino); /* the Winograd weights are not needed */
        p->wino = NULL;
    } else if (!p->wino && nn_wino_applies(c) && nn_wino_pack(c) != 0) {
        return -1;
    }
    c->algo = algo;
    return 0;
}

void nn_conv_out_hw(const nn_conv *c, int h, int w, int *oh, int *ow)
{
    *oh = nn_out_size(h, c->kh, c->stride, c->pad);
    *ow = nn_out_size(w, c->kw, c->stride, c->pad);
}

size_t nn_conv_scratch_size(const nn_conv *c, int h, int w, const nn_pool *pool)
{
    /* The same for every kernel set, so nn_conv_forward_isa may use it;
     * enough for the int8 form too, if any. */
    size_t fp32 = nn_conv_opt_scratch(c, h, w, nn_pool_size(pool));
    size_t int8 = nn_int8_scratch(c, h, w, nn_pool_size(pool));
    return LETHE_MAX(fp32, int8);
}

void nn_conv_forward_isa(nn_isa isa, const nn_conv *c, const float *in, int h, int w,
                         float *out, const float *residual, void *scratch, nn_pool *pool)
{
    const nn_kernels *k = nn_isa_supported(isa) ? nn_kernels_for(isa) : NULL;
    if (!k)
        nn_ref_conv(c, in, h, w, out, residual);
    else
        nn_conv_opt_forward(k, c, in, h, w, out, residual, scratch, pool);
}

void nn_conv_forward(const nn_conv *c, const float *in, int h, int w, float *out,
                     const float *residual, void *scratch, nn_pool *pool)
{
    if (c->qpacked && nn_int8_available())
        nn_int8_forward(&nn_qkernels_avx512, c, in, NULL, h, w, out, residual, scratch, pool);
    else
        nn_conv_forward_isa(nn_isa_current(), c, in, h, w, out, residual, scratch, pool);
}

/* ------------------------------------------------------------------ */
/* Depthwise convolution                                                */
/* ------------------------------------------------------------------ */

int nn_dwconv_init(nn_dwconv *d, int k, int c, int stride, nn_pad pad, nn_act act,
                   const float *w, const float *scale, const float *shift)
{
    nn_dwconv_packed *p;
    size_t taps = (size_t)k * k;

    memset(d, 0, sizeof(*d));
    if (k < 1 || k > 64 || c < 1 || c > (1 << 24) || stride < 1 || !w)
        return -1;
    nn_init();
    d->k = k;
    d->c = c;
    d->stride = stride;
    d->pad = pad;
    d->act = act;
    d->w = copy_or_fill(w, taps * c, 0.0f);
    d->scale = copy_or_fill(scale, (size_t)c, 1.0f);
    d->shift = copy_or_fill(shift, (size_t)c, 0.0f);
    p = lethe_calloc(1, sizeof(*p));
    d->packed = p;
    if (!d->w || !d->scale || !d->shift || !p)
        goto out_fail;
    p->cpad = (c + NN_PANEL - 1) / NN_PANEL * NN_PANEL;
    p->w = lethe_malloc_aligned(taps * p->cpad * sizeof(float));
    p->scale = lethe_malloc_aligned(p->cpad * sizeof(float));
    p->shift = lethe_malloc_aligned(p->cpad * sizeof(float));
    if (!p->w || !p->scale || !p->shift)
        goto out_fail;
    for (size_t t = 0; t < taps; t++)
        for (int ch = 0; ch < p->cpad; ch++)
            p->w[t * p->cpad + ch] = ch < c ? d->w[t * c + ch] : 0.0f;
    for (int ch = 0; ch < p->cpad; ch++) {
        p->scale[ch] = ch < c ? d->scale[ch] : 1.0f;
        p->shift[ch] = ch < c ? d->shift[ch] : 0.0f;
    }
    return 0;

out_fail:
    nn_dwconv_free(d);
    return -1;
}

void nn_dwconv_free(nn_dwconv *d)
{
    if (!d)
        return;
    nn_dwconv_packed *p = d->packed;
    if (p) {
        lethe_free_aligned(p->w);
        lethe_free_aligned(p->scale);
        lethe_free_aligned(p->shift);
        lethe_free(p);
    }
    lethe_free(d->w);
    lethe_free(d->scale);
    lethe_free(d->shift);
    memset(d, 0, sizeof(*d));
}

typedef struct dw_job {
    const nn_kernels *kern;    /* NULL: the reference */
    const nn_dwconv *d;
    const float *in;
    int h, w, oh, rows_per_task;
    size_t row;                /* floats in an output row: ow * c */
    float *out;                /* fp32 output, or NULL */
    uint8_t *qout;             /* u8 output (nn_dwconv_forward_u8), or NULL */
    float qinv;                /* its quantisation: 255 / out_max */
    int qsimd;                 /* quantise with the int8 kernels' routine */
    float *rows;               /* per-worker fp32 row for qout, row floats each */
    size_t rows_stride;        /* floats between workers' rows */
} dw_job;

static void dw_task(void *arg, int i, int worker)
{
    const dw_job *j = arg;
    int oy0 = i * j->rows_per_task;
    int oy1 = LETHE_MIN(j->oh, oy0 + j->rows_per_task);
    if (!j->qout) {
        j->kern->dwconv_rows(j->d, j->in, j->h, j->w, j->out + (size_t)oy0 * j->row, oy0, oy1);
        return;
    }
    /* A row at a time into an fp32 row that stays in cache, then to u8. */
    float *buf = j->rows + (size_t)worker * j->rows_stride;
    for (int oy = oy0; oy < oy1; oy++) {
        uint8_t *q = j->qout + (size_t)oy * j->row;
        if (j->kern)
            j->kern->dwconv_rows(j->d, j->in, j->h, j->w, buf, oy, oy + 1);
        else
            nn_ref_dwconv_rows(j->d, j->in, j->h, j->w, buf, oy, oy + 1);
        if (j->qsimd)
            nn_qkernels_avx512.quantize(buf, j->row, j->qinv, q);
        else
            nn_ref_quantize(buf, j->row, j->qinv, q);
    }
}

static void dw_run(dw_job *job, nn_pool *pool)
{
    int workers = nn_pool_size(pool);
    int tasks = workers == 1 ? 1 : LETHE_MIN(job->oh, 4 * workers);
    job->rows_per_task = (job->oh + tasks - 1) / tasks;
    tasks = (job->oh + job->rows_per_task - 1) / job->rows_per_task;
    nn_pool_run(pool, tasks, dw_task, job);
}

void nn_dwconv_forward_isa(nn_isa isa, const nn_dwconv *d, const float *in, int h, int w,
                           float *out, nn_pool *pool)
{
    const nn_kernels *k = nn_isa_supported(isa) ? nn_kernels_for(isa) : NULL;
    int oh = nn_out_size(h, d->k, d->stride, d->pad);
    int ow = nn_out_size(w, d->k, d->stride, d->pad);
    if (!k) {
        nn_ref_dwconv(d, in, h, w, out);
        return;
    }
    if (oh <= 0 || ow <= 0)
        return;
    dw_job job = {.kern = k, .d = d, .in = in, .h = h, .w = w, .oh = oh,
                  .row = (size_t)ow * d->c, .out = out};
    dw_run(&job, pool);
}

size_t nn_dwconv_u8_scratch_size(const nn_dwconv *d, int h, int w, const nn_pool *pool)
{
    (void)h;
    int ow = nn_out_size(w, d->k, d->stride, d->pad);
    size_t row = ow > 0 ? ((size_t)ow * d->c * sizeof(float) + 63) & ~(size_t)63 : 0;
    return row * (size_t)nn_pool_size(pool);
}

void nn_dwconv_forward_u8_isa(nn_isa isa, const nn_dwconv *d, const float *in, int h, int w,
                              uint8_t *out, float out_max, void *scratch, nn_pool *pool)
{
    int oh = nn_out_size(h, d->k, d->stride, d->pad);
    int ow = nn_out_size(w, d->k, d->stride, d->pad);
    if (oh <= 0 || ow <= 0)
        return;
    dw_job job = {.kern = nn_isa_supported(isa) ? nn_kernels_for(isa) : NULL, .d = d,
                  .in = in, .h = h, .w = w, .oh = oh, .row = (size_t)ow * d->c, .qout = out,
                  .qinv = 255.0f / out_max, .qsimd = nn_int8_isa_supported(isa),
                  .rows = scratch};
    job.rows_stride = nn_dwconv_u8_scratch_size(d, h, w, NULL) / sizeof(float);
    dw_run(&job, pool);
}

void nn_dwconv_forward_u8(const nn_dwconv *d, const float *in, int h, int w, uint8_t *out,
                          float out_max, void *scratch, nn_pool *pool)
{
    nn_dwconv_forward_u8_isa(nn_isa_current(), d, in, h, w, out, out_max, scratch, pool);
}

void nn_dwconv_forward(const nn_dwconv *d, const float *in, int h, int w, float *out,
                       nn_pool *pool)
{
    nn_dwconv_forward_isa(nn_isa_current(), d, in, h, w, out, pool);
}

/* ------------------------------------------------------------------ */
/* Pooling, fully connected, elementwise                                */
/* ------------------------------------------------------------------ */

void nn_maxpool(const float *in, int h, int w, int c, int k, int stride, nn_pad pad,
                float *out)
{
    nn_ref_maxpool(in, h, w, c, k, stride, pad, out);
}

void nn_avgpool(const float *in, int h, int w, int c, int k, int stride, nn_pad pad,
                float *out)
{
    nn_ref_avgpool(in, h, w, c, k, stride, pad, out);
}

void nn_fc(const float *in, int n_in, const float *w, const float *b, int n_out, float *out)
{
    for (int j = 0; j < n_out; j++)
        out[j] = b ? b[j] : 0.0f;
    /* Row by row: each weight row is contiguous, and the loop vectorises. */
    for (int i = 0; i < n_in; i++) {
        const float *wr = w + (size_t)i * n_out;
        float x = in[i];
        for (int j = 0; j < n_out; j++)
            out[j] += x * wr[j];
    }
}

void nn_add(const float *a, const float *b, float *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = a[i] + b[i];
}

void nn_apply_act(float *x, size_t n, nn_act act)
{
    if (act == NN_ACT_NONE)
        return;
    for (size_t i = 0; i < n; i++)
        x[i] = nn_act1(x[i], act);
}
