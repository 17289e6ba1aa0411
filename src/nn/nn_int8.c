/*
 * nn_int8.c: the int8 form of a dense convolution (see nn.h, "Reduced
 * precision"): quantising and packing the weights, and the ISA-independent
 * half of the forward pass.
 *
 * The GEMM is the fp32 one with bytes: A is the im2col matrix of the input
 * quantised to u8, B the s8 weights, acc = A * B summed exactly in int32 by
 * the per-ISA micro-kernels (nn_qtile_fn), which also apply the fp32
 * epilogue. A is never formed whole: each task quantises (and gathers, for
 * kernels larger than 1x1) a block of rows into its worker's scratch, small
 * enough to stay in L1/L2, then runs every column group's tiles over it.
 * An input quantised already (nn_conv_forward_u8) is read in place by 1x1
 * stride-1 layers. With weights on a zero-point grid, each block's row
 * sums go to the epilogue as well.
 * Integer sums are exact, so results depend neither on the tiling nor on
 * the pool: the kernels match the scalar reference (nn_ref.c) bit for bit.
 */
#include <string.h>

#include "nn/nn_int.h"
#include "util/util.h"

/* Bytes of quantised A a block of tiles aims at (L1-resident while every
 * column group's tiles run over it). */
#define NN_QBLOCK_BYTES (24 * 1024)

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

/* ------------------------------------------------------------------ */
/* Preparation                                                          */
/* ------------------------------------------------------------------ */

void nn_qconv_packed_free(nn_qconv_packed *q)
{
    if (!q)
        return;
    lethe_free_aligned(q->b);
    lethe_free_aligned(q->mul);
    lethe_free_aligned(q->zmul);
    lethe_free_aligned(q->shift);
    lethe_free(q);
}

/* How far (in steps) a weight may lie from the grid and still be on it:
 * float32 rounding of min + scale * code moves it by ~1e-5 step. */
#define NN_GRID_TOL 1e-3

/*
 * Whether all n weights lie on an affine grid lo + step * u, u = 0..255,
 * that uses both ends (as tfjs's uint8 quantisation does: min and scale
 * from the tensor's own range). Sets *lo and *step.
 */
static int affine_grid(const float *w, size_t n, double *lo, double *step)
{
    double mn = w[0], mx = w[0];
    for (size_t i = 1; i < n; i++) {
        mn = fmin(mn, w[i]);
        mx = fmax(mx, w[i]);
    }
    if (!(mx > mn) || !isfinite(mx - mn))
        return 0;
    double st = (mx - mn) / 255.0;
    for (size_t i = 0; i < n; i++) {
        double u = (w[i] - mn) / st;
        if (!(fabs(u - nearbyint(u)) <= NN_GRID_TOL))
            return 0;
    }
    *lo = mn;
    *step = st;
    return 1;
}

int nn_conv_quantize(nn_conv *c, float in_max)
{
    if (!c || !c->w || !(in_max > 0.0f) || !(in_max < 1e30f))
        return -1;
    nn_qconv_packed *q = lethe_calloc(1, sizeof(*q));
    if (!q)
        return -1;
    const int cout = c->cout;
    q->k = c->kh * c->kw * c->cin;
    q->kpad = (q->k + 3) & ~3;
    q->panels = (cout + NN_PANEL - 1) / NN_PANEL;
    q->panel_len = (size_t)q->kpad * NN_PANEL;
    q->in_max = in_max;
    q->in_inv = 255.0f / in_max;
    q->b = lethe_malloc_aligned((size_t)q->panels * q->panel_len);
    q->mul = lethe_malloc_aligned((size_t)q->panels * NN_PANEL * sizeof(float));
    q->zmul = lethe_malloc_aligned((size_t)q->panels * NN_PANEL * sizeof(float));
    q->shift = lethe_malloc_aligned((size_t)q->panels * NN_PANEL * sizeof(float));
    if (!q->b || !q->mul || !q->zmul || !q->shift) {
        nn_qconv_packed_free(q);
        return -1;
    }
    memset(q->b, 0, (size_t)q->panels * q->panel_len);
    const double in_step = (double)in_max / 255.0;
    double lo = 0, grid = 0;
    q->zero_point = affine_grid(c->w, (size_t)q->k * cout, &lo, &grid);
    for (int co = 0; co < q->panels * NN_PANEL; co++) {
        q->mul[co] = q->zmul[co] = q->shift[co] = 0.0f;
        if (co >= cout)
            continue;
        double step, zero;
        if (q->zero_point) {
            /* w = lo + grid * u = (lo + 128 grid) + grid * (u - 128) */
            step = grid;
            zero = lo + 128.0 * grid;
        } else {
            /* symmetric: w = w_step * v, v in [-127, 127] */
            float maxabs = 0.0f;
            for (int k = 0; k < q->k; k++)
                maxabs = fmaxf(maxabs, fabsf(c->w[(size_t)k * cout + co]));
            step = maxabs / 127.0;
            zero = 0.0;
        }
        int8_t *panel = q->b + (size_t)(co / NN_PANEL) * q->panel_len;
        for (int k = 0; step > 0.0 && k < q->k; k++) {
            double v = nearbyint((c->w[(size_t)k * cout + co] - zero) / step);
            v = v < -128 ? -128 : v > 127 ? 127 : v;
            panel[(size_t)(k / 4) * 64 + (co % NN_PANEL) * 4 + k % 4] = (int8_t)v;
        }
        q->mul[co] = (float)(c->scale[co] * in_step * step);
        q->zmul[co] = (float)(c->scale[co] * in_step * zero);
        q->shift[co] = c->shift[co];
    }
    nn_qconv_packed_free(c->qpacked);
    c->qpacked = q;
    return 0;
}

int nn_conv_is_quantized(const nn_conv *c)
{
    return c && c->qpacked != NULL;
}

/* ------------------------------------------------------------------ */
/* The plan                                                             */
/* ------------------------------------------------------------------ */

typedef struct qplan {
    int oh, ow;          /* output size */
    int pt, pl;          /* padding before */
    int m;               /* GEMM rows (output pixels) */
    size_t lda;          /* bytes between rows of a gathered block */
    int contiguous;      /* 1x1 stride 1, lda == K: a block is one run */
    int in_place;        /* ... of a quantised input: the tiles read it there */
    int nv;              /* vectors per column group */
    int gcols;           /* columns per group: nv * 16 */
    int groups;          /* ceil(cout / gcols) */
    int mr;              /* rows per tile (the last may have fewer) */
    int tiles;
    int tiles_per_block;
    size_t sums_off;     /* where a block's row sums start (zero-point weights) */
    size_t block_bytes;  /* per-worker scratch, 64-byte multiple */
} qplan;

/* Estimated cycles of a tile: vpdpbusd at one a cycle, or the loads (a
 * broadcast per row and a vector per column block each step, two a cycle)
 * when short tiles are bound by them; plus the epilogue. */
static double qtile_cycles(int rows, int nv, int k4)
{
    double step = LETHE_MAX((double)rows * nv, (rows + nv) / 2.0);
    return step * k4 + 30.0 + 3.0 * rows * nv;
}

/* The tiling of p->m rows lda bytes apart: tile shape, blocks. */
static void plan_tiles(const nn_qkernels *kern, const nn_conv *c, qplan *p)
{
    const nn_qconv_packed *q = c->qpacked;
    double best = -1.0;
    for (int nv = 1; nv <= kern->nv_max; nv++) {
        int gcols = nv * 16;
        int groups = (c->cout + gcols - 1) / gcols;
        int last_nv = (c->cout - (groups - 1) * gcols + 15) / 16;
        int per = (p->m + kern->mr_max[nv] - 1) / kern->mr_max[nv];
        int mr = (p->m + per - 1) / per; /* balanced */
        double cost = (double)per * ((groups - 1) * qtile_cycles(mr, nv, q->kpad / 4) +
                                     qtile_cycles(mr, last_nv, q->kpad / 4));
        if (best < 0 || cost < best) {
            best = cost;
            p->nv = nv;
            p->gcols = gcols;
            p->groups = groups;
            p->mr = mr;
            p->tiles = per;
        }
    }
    size_t tiles = NN_QBLOCK_BYTES / (p->lda * (size_t)p->mr);
    p->tiles_per_block = tiles < 1 ? 1 : tiles > (size_t)p->tiles ? p->tiles : (int)tiles;
    size_t rows = LETHE_MIN((size_t)p->tiles_per_block * p->mr, (size_t)p->m);
    p->sums_off = p->in_place ? 0 : align64(rows * p->lda);
    p->block_bytes = p->sums_off + (q->zero_point ? align64(rows * sizeof(int32_t)) : 0);
}

/* u8: the input is quantised already (a 1x1 stride-1 layer with K % 4 == 0
 * then reads it in place: only the row sums need scratch). */
static void plan_int8(const nn_qkernels *kern, const nn_conv *c, int h, int w, int u8,
                      qplan *p)
{
    const nn_qconv_packed *q = c->qpacked;
    memset(p, 0, sizeof(*p));
    p->oh = nn_out_size(h, c->kh, c->stride, c->pad);
    p->ow = nn_out_size(w, c->kw, c->stride, c->pad);
    p->pt = nn_pad_before(h, c->kh, c->stride, c->pad);
    p->pl = nn_pad_before(w, c->kw, c->stride, c->pad);
    p->m = p->oh * p->ow;
    if (p->m <= 0)
        return;
    p->lda = (size_t)q->kpad;
    p->contiguous = c->kh == 1 && c->kw == 1 && c->stride == 1 && q->kpad == q->k;
    p->in_place = u8 && p->contiguous;
    if (!p->contiguous && p->lda % 1024 == 0)
        p->lda += 64; /* rows 1 KiB apart share L1 sets */
    plan_tiles(kern, c, p);
}

size_t nn_int8_scratch(const nn_conv *c, int h, int w, int workers)
{
    qplan p;
    if (!c->qpacked)
        return 0;
    plan_int8(&nn_qkernels_avx512, c, h, w, 0, &p); /* the most: fp32 input */
    return p.block_bytes * (size_t)(workers < 1 ? 1 : workers);
}

/* ------------------------------------------------------------------ */
/* Forward                                                              */
/* ------------------------------------------------------------------ */

typedef struct qjob {
    const nn_qkernels *kern;
    const nn_conv *c;
    const qplan *p;
    const float *in;        /* the fp32 input, or NULL */
    const uint8_t *inq;     /* the quantised input, or NULL */
    int h, w;
    const uint8_t *a;       /* already quantised A (tests), lda = p->lda */
    float *out;
    const float *res;
    int32_t *acc_out;       /* raw sums (tests) */
    unsigned char *blocks;  /* per-worker blocks */
    int m_chunks, g_chunks;
} qjob;

/* n input values from element `at` of the input to bytes: quantised, or
 * copied when the input is quantised already. */
static inline void load_run(const qjob *j, size_t at, size_t n, uint8_t *dst)
{
    if (j->inq)
        memcpy(dst, j->inq + at, n);
    else
        j->kern->quantize(j->in + at, n, ((const nn_qconv_packed *)j->c->qpacked)->in_inv, dst);
}

/* Rows [r0, r1) of the quantised A into buf: output pixels' windows, taps
 * outside the image (zero padding) as 0, zeros from K to kpad. */
static void gather_rows(const qjob *j, int r0, int r1, uint8_t *buf)
{
    const nn_conv *c = j->c;
    const nn_qconv_packed *q = c->qpacked;
    const qplan *p = j->p;
    const size_t cin = (size_t)c->cin, rowlen = (size_t)c->kw * cin;

    if (p->contiguous) {
        load_run(j, (size_t)r0 * cin, (size_t)(r1 - r0) * cin, buf);
        return;
    }
    int oy = r0 / p->ow, ox = r0 % p->ow;
    for (int r = r0; r < r1; r++) {
        uint8_t *dst = buf + (size_t)(r - r0) * p->lda;
        int iy0 = oy * c->stride - p->pt, ix0 = ox * c->stride - p->pl;
        int inside_x = ix0 >= 0 && ix0 + c->kw <= j->w;
        for (int ky = 0; ky < c->kh; ky++, dst += rowlen) {
            int iy = iy0 + ky;
            if (iy < 0 || iy >= j->h) {
                memset(dst, 0, rowlen);
                continue;
            }
            size_t row_at = (size_t)iy * j->w * cin;
            if (inside_x) {
                load_run(j, row_at + (size_t)ix0 * cin, rowlen, dst);
                continue;
            }
            for (int kx = 0; kx < c->kw; kx++) {
                int ix = ix0 + kx;
                if (ix < 0 || ix >= j->w)
                    memset(dst + kx * cin, 0, cin);
                else
                    load_run(j, row_at + (size_t)ix * cin, cin, dst + kx * cin);
            }
        }
        if (q->kpad > q->k)
            memset(buf + (size_t)(r - r0) * p->lda + q->k, 0, (size_t)(q->kpad - q->k));
        if (++ox == p->ow) {
            ox = 0;
            oy++;
        }
    }
}

static void qconv_task(void *arg, int task, int worker)
{
    const qjob *j = arg;
    const qplan *p = j->p;
    const nn_conv *c = j->c;
    const nn_qconv_packed *q = c->qpacked;
    int mc = task / j->g_chunks, gc = task % j->g_chunks;
    int t0 = nn_part(p->tiles, mc, j->m_chunks), t1 = nn_part(p->tiles, mc + 1, j->m_chunks);
    int g0 = nn_part(p->groups, gc, j->g_chunks), g1 = nn_part(p->groups, gc + 1, j->g_chunks);
    uint8_t *buf = j->blocks ? j->blocks + (size_t)worker * p->block_bytes : NULL;
    nn_qtile t;

    t.lda = p->lda;
    t.k4 = q->kpad / 4;
    t.panel_len = q->panel_len;
    t.ldo = (size_t)c->cout;
    t.act = c->act;
    int use_sums = q->zero_point && !j->acc_out;
    int32_t *sums = use_sums ? (int32_t *)(buf + p->sums_off) : NULL;
    for (int tb = t0; tb < t1; tb += p->tiles_per_block) {
        int te = LETHE_MIN(t1, tb + p->tiles_per_block);
        int r0 = tb * p->mr, r1 = LETHE_MIN(p->m, te * p->mr);
        const uint8_t *a = j->a          ? j->a + (size_t)r0 * p->lda
                           : p->in_place ? j->inq + (size_t)r0 * p->lda
                                         : buf;
        if (!j->a && !p->in_place)
            gather_rows(j, r0, r1, buf);
        if (use_sums)
            j->kern->rowsums(a, p->lda, q->kpad, r1 - r0, sums);
        for (int g = g0; g < g1; g++) {
            int n0 = g * p->gcols;
            int cols = LETHE_MIN(p->gcols, c->cout - n0);
            int nv = (cols + 15) / 16;
            t.b = q->b + (size_t)(n0 / NN_PANEL) * q->panel_len;
            t.mul = q->mul + n0;
            t.zmul = q->zmul + n0;
            t.shift = q->shift + n0;
            t.cols = cols;
            for (int r = r0; r < r1; r += p->mr) {
                int rows = LETHE_MIN(p->mr, r1 - r);
                t.a = a + (size_t)(r - r0) * p->lda;
                t.rowsum = use_sums ? sums + (r - r0) : NULL;
                t.out = j->out ? j->out + (size_t)r * c->cout + n0 : NULL;
                t.res = j->res ? j->res + (size_t)r * c->cout + n0 : NULL;
                t.acc_out = j->acc_out ? j->acc_out + (size_t)r * c->cout + n0 : NULL;
                j->kern->tile[nv][rows](&t);
            }
        }
    }
}

static void run_job(qjob *j, nn_pool *pool)
{
    int workers = nn_pool_size(pool);
    if (workers == 1) {
        j->m_chunks = 1;
        j->g_chunks = 1;
    } else {
        /* About four tasks a worker, split along M first, then B's columns. */
        int want = 4 * workers;
        j->m_chunks = LETHE_MIN(j->p->tiles, want);
        j->g_chunks = LETHE_MIN(j->p->groups, (want + j->m_chunks - 1) / j->m_chunks);
    }
    nn_pool_run(pool, j->m_chunks * j->g_chunks, qconv_task, j);
}

void nn_int8_forward(const nn_qkernels *kern, const nn_conv *c, const float *in,
                     const uint8_t *inq, int h, int w, float *out, const float *residual,
                     void *scratch, nn_pool *pool)
{
    qplan p;
    qjob j;
    plan_int8(kern, c, h, w, inq != NULL, &p);
    if (p.m <= 0)
        return;
    memset(&j, 0, sizeof(j));
    j.kern = kern;
    j.c = c;
    j.p = &p;
    j.in = in;
    j.inq = inq;
    j.h = h;
    j.w = w;
    j.out = out;
    j.res = residual;
    j.blocks = scratch;
    run_job(&j, pool);
}

/* ------------------------------------------------------------------ */
/* Per-ISA entry points (tests)                                         */
/* ------------------------------------------------------------------ */

static const nn_qkernels *qkernels_for(nn_isa isa)
{
    return nn_int8_isa_supported(isa) && isa == NN_ISA_AVX512 ? &nn_qkernels_avx512 : NULL;
}

void nn_conv_forward_int8_isa(nn_isa isa, const nn_conv *c, const float *in, int h, int w,
                              float *out, const float *residual, void *scratch, nn_pool *pool)
{
    const nn_qkernels *k = qkernels_for(isa);
    if (k)
        nn_int8_forward(k, c, in, NULL, h, w, out, residual, scratch, pool);
    else
        nn_ref_int8_conv(c, in, NULL, h, w, out, residual);
}

void nn_conv_forward_u8_isa(nn_isa isa, const nn_conv *c, const uint8_t *in, int h, int w,
                            float *out, const float *residual, void *scratch, nn_pool *pool)
{
    const nn_qkernels *k = qkernels_for(isa);
    if (k)
        nn_int8_forward(k, c, NULL, in, h, w, out, residual, scratch, pool);
    else
        nn_ref_int8_conv(c, NULL, in, h, w, out, residual);
}

void nn_conv_forward_u8(const nn_conv *c, const uint8_t *in, int h, int w, float *out,
                        const float *residual, void *scratch, nn_pool *pool)
{
    nn_conv_forward_u8_isa(nn_int8_available() ? NN_ISA_AVX512 : NN_ISA_SCALAR, c, in, h, w,
                           out, residual, scratch, pool);
}

void nn_int8_gemm_isa(nn_isa isa, const nn_conv *c, const uint8_t *a, size_t lda, int m,
                      int32_t *acc, nn_pool *pool)
{
    const nn_qkernels *k = qkernels_for(isa);
    if (!k) {
        nn_ref_int8_gemm(c, a, lda, m, acc);
        return;
    }
    qplan p;
    qjob j;
    if (m <= 0)
        return;
    memset(&p, 0, sizeof(p));
    p.m = m;
    p.lda = lda;
    plan_tiles(k, c, &p);
    memset(&j, 0, sizeof(j));
    j.kern = k;
    j.c = c;
    j.p = &p;
    j.a = a;
    j.acc_out = acc;
    run_job(&j, pool);
}

void nn_int8_quantize_isa(nn_isa isa, const float *x, size_t n, float in_max, uint8_t *q)
{
    const nn_qkernels *k = qkernels_for(isa);
    float inv = 255.0f / in_max;
    if (k)
        k->quantize(x, n, inv, q);
    else
        nn_ref_quantize(x, n, inv, q);
}
