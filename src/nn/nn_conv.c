/*
 * nn_conv.c: the ISA-independent half of the optimised dense convolution.
 *
 * A convolution is a GEMM: out[M = oh * ow][cout] = A[M][K] * B[K][cout]
 * with K = kh * kw * cin in (ky, kx, ci) order, the order of the HWIO
 * weights. The per-ISA micro-kernels (nn_tile_fn) compute register tiles
 * of up to NN_MR_MAX output pixels by a few vectors of output channels and
 * apply scale, shift, residual and activation before storing. A is never
 * formed whole; three ways to feed the tiles:
 *
 *   direct  1x1 stride-1 convolutions: A is the HWC input itself.
 *   rows    a tile is up to MR consecutive pixels of one output row; for
 *           kernel row ky their taps are kw * cin consecutive input floats,
 *           stride * cin apart from pixel to pixel, so the tile reads the
 *           input in place (kh segments). SAME padding reads a zero-padded
 *           copy of the input made first in the scratch memory.
 *   im2col  rows of A are gathered, a block at a time, into the worker's
 *           scratch (small outputs, where a row of the output holds too
 *           few pixels to fill a tile).
 *
 * The plan (mode, tile shape) is chosen per layer and input size by a cost
 * model. The tiling of M never depends on the number of threads, and every
 * output is summed over k in the same order, so results are identical
 * whatever the pool.
 */
#include <string.h>

#include "nn/nn_int.h"
#include "util/util.h"

/* Bytes of A a block of tiles aims at when column groups reuse it (L2). */
#define NN_BLOCK_BYTES (96 * 1024)
/* ... and when every A row is used by one column group only (L1). */
#define NN_BLOCK_BYTES_L1 (12 * 1024)
/* Kernel heights the rows mode handles (one segment per kernel row). */
#define NN_TAPS_MAX 16

typedef enum conv_mode { MODE_DIRECT, MODE_ROWS, MODE_IM2COL } conv_mode;

typedef struct conv_plan {
    int oh, ow;          /* output size */
    int pt, pl;          /* padding before, rows and columns */
    int m, k;            /* GEMM rows (pixels) and depth */
    conv_mode mode;
    size_t lda;          /* floats between A rows of a tile */
    int nv;              /* vectors per column group */
    int gcols;           /* columns per group: nv * vector width */
    int groups;          /* ceil(cout / gcols) */
    int mr;              /* rows per tile (a last tile may have fewer) */
    int tiles_per_row;   /* MODE_ROWS: tiles in one output row */
    int tiles;           /* in all */
    int tiles_per_block; /* tiles run together past every column group */
    int hp, wp;          /* MODE_ROWS: the (padded) input read */
    int padded;          /* MODE_ROWS: the input is copied with zero borders */
    size_t pad_bytes;    /* shared scratch for that copy, 64-byte multiple */
    size_t block_bytes;  /* per-worker scratch (im2col), 64-byte multiple */
    double cost;         /* estimated cycles */
} conv_plan;

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

/*
 * Estimated cycles of one tile on a core with 16 fp32 FMA lanes a cycle,
 * from the kernels' measured efficiency by shape (short tiles leave the FMA
 * pipes waiting on latency). Each column group reads its A rows again,
 * which wider groups (more vectors) do less often.
 */
double nn_tile_cycles(const nn_kernels *kern, int rows, int nv, int k)
{
    double fma = (double)rows * nv * kern->width / 16.0 * k / kern->eff[nv][rows];
    return fma + 0.1 * rows * k + 30.0 + 4.0 * rows * nv;
}

/* Cycles of all tiles: `count` tiles of `rows` (and, per group, nv vectors). */
static double tiles_cycles(const nn_kernels *kern, const nn_conv *c, int nv, int k,
                           int count, int rows)
{
    int gcols = nv * kern->width;
    int groups = (c->cout + gcols - 1) / gcols;
    int last_nv = (c->cout - (groups - 1) * gcols + kern->width - 1) / kern->width;
    return count * ((groups - 1) * nn_tile_cycles(kern, rows, nv, k) +
                    nn_tile_cycles(kern, rows, last_nv, k));
}

/* Measured costs of preparing A, in cycles per float written. */
#define NN_IM2COL_CYCLES 0.5
#define NN_PADCOPY_CYCLES 0.3

static void plan_conv(const nn_kernels *kern, const nn_conv *c, int h, int w, conv_plan *p)
{
    memset(p, 0, sizeof(*p));
    p->oh = nn_out_size(h, c->kh, c->stride, c->pad);
    p->ow = nn_out_size(w, c->kw, c->stride, c->pad);
    p->pt = nn_pad_before(h, c->kh, c->stride, c->pad);
    p->pl = nn_pad_before(w, c->kw, c->stride, c->pad);
    p->m = p->oh * p->ow;
    p->k = c->kh * c->kw * c->cin;
    if (p->m <= 0)
        return;

    /* The (padded) input the rows mode reads: just what the windows cover. */
    int hp = (p->oh - 1) * c->stride + c->kh, wp = (p->ow - 1) * c->stride + c->kw;
    int padded = p->pt > 0 || p->pl > 0 || hp > h || wp > w;
    if (!padded) {
        hp = h;
        wp = w;
    }
    int rows_ok = c->kh <= NN_TAPS_MAX;
    int direct = c->kh == 1 && c->kw == 1 && c->stride == 1;

    double best = -1.0;
    for (int mode = MODE_DIRECT; mode <= MODE_IM2COL; mode++) {
        if ((mode == MODE_DIRECT) != direct || (mode == MODE_ROWS && !rows_ok))
            continue;
        /*
         * A tile reads its rows lda apart; with lda a multiple of 1 KiB, many
         * rows fall in one L1 set and evict each other. The gathered A gets
         * a padded stride; the input keeps its own, so tiles stay short.
         */
        size_t lda = mode == MODE_DIRECT ? (size_t)c->cin
                     : mode == MODE_ROWS ? (size_t)c->stride * c->cin
                                         : (size_t)p->k;
        int mr_cap = NN_MR_MAX;
        if (mode == MODE_IM2COL && (lda * sizeof(float)) % 1024 == 0)
            lda += NN_PANEL;
        else if (mode != MODE_IM2COL && (lda * sizeof(float)) % 2048 == 0)
            mr_cap = 8;
        double prep = mode == MODE_IM2COL ? NN_IM2COL_CYCLES * p->m * p->k
                      : mode == MODE_ROWS && padded
                          ? NN_PADCOPY_CYCLES * (double)hp * wp * c->cin
                          : 0.0;
        for (int nv = 1; nv <= kern->nv_max; nv++) {
            int mr_max = LETHE_MIN(kern->mr_max[nv], mr_cap);
            int span = mode == MODE_ROWS ? p->ow : p->m; /* what tiles split */
            int per_span = (span + mr_max - 1) / mr_max;
            int mr = (span + per_span - 1) / per_span; /* balanced */
            int last = span - (per_span - 1) * mr;
            int spans = mode == MODE_ROWS ? p->oh : 1;
            double cost = prep +
                          tiles_cycles(kern, c, nv, p->k, spans * (per_span - 1), mr) +
                          tiles_cycles(kern, c, nv, p->k, spans, last);
            if (best < 0 || cost < best) {
                best = cost;
                p->mode = (conv_mode)mode;
                p->lda = lda;
                p->nv = nv;
                p->gcols = nv * kern->width;
                p->groups = (c->cout + p->gcols - 1) / p->gcols;
                p->mr = mr;
                p->tiles_per_row = per_span;
                p->tiles = spans * per_span;
            }
        }
    }
    p->cost = best;
    if (p->mode == MODE_ROWS) {
        p->hp = hp;
        p->wp = wp;
        p->padded = padded;
        if (padded)
            p->pad_bytes = align64((size_t)hp * wp * c->cin * sizeof(float));
    }
    /*
     * Blocks of tiles: the A rows every column group streams past, kept in
     * L2. With one group there is no reuse, and a gathered block small
     * enough for L1 is consumed while its lines are still there.
     */
    size_t row = (p->mode == MODE_ROWS ? (size_t)p->k : p->lda) * sizeof(float);
    size_t target = p->groups > 1 ? NN_BLOCK_BYTES : NN_BLOCK_BYTES_L1;
    size_t tiles = target / (row * p->mr);
    p->tiles_per_block = tiles < 1 ? 1 : tiles > (size_t)p->tiles ? p->tiles : (int)tiles;
    if (p->mode == MODE_IM2COL) {
        size_t rows = (size_t)p->tiles_per_block * p->mr;
        if (rows > (size_t)p->m)
            rows = (size_t)p->m;
        p->block_bytes = align64(rows * p->lda * sizeof(float) + NN_IM2COL_SLACK);
    }
}

/* Whether to run the layer with Winograd for this input (and ISA). */
static int use_wino(const nn_kernels *kern, const nn_conv *c, int h, int w, int workers,
                    const conv_plan *gemm)
{
    const nn_conv_packed *pk = c->packed;
    size_t scratch;
    if (!pk->wino || c->algo == NN_ALGO_GEMM)
        return 0;
    double cost = nn_wino_cost(kern, c, h, w, workers, &scratch);
    if (cost < 0)
        return 0;
    return c->algo == NN_ALGO_WINOGRAD || cost < gemm->cost;
}

size_t nn_conv_opt_scratch(const nn_conv *c, int h, int w, int workers)
{
    /* The most any kernel set, and any smaller pool, needs: so any may run
     * with this scratch. */
    const nn_kernels *sets[2] = {&nn_kernels_avx512, &nn_kernels_avx2};
    const nn_conv_packed *pk = c->packed;
    size_t most = 0;
    if (workers < 1)
        workers = 1;
    for (int i = 0; i < 2; i++) {
        conv_plan p;
        plan_conv(sets[i], c, h, w, &p);
        size_t need = p.pad_bytes + p.block_bytes * (size_t)workers;
        most = LETHE_MAX(most, need);
        if (!pk->wino || c->algo == NN_ALGO_GEMM)
            continue;
        /* Winograd blocks shrink as workers grow: one worker may need more. */
        if (nn_wino_cost(sets[i], c, h, w, 1, &need) >= 0)
            most = LETHE_MAX(most, need);
        if (nn_wino_cost(sets[i], c, h, w, workers, &need) >= 0)
            most = LETHE_MAX(most, need);
    }
    return most;
}

typedef struct conv_job {
    const nn_kernels *kern;
    const nn_conv *c;
    const conv_plan *p;
    const float *in;      /* what the tiles read: the input, or its padded copy */
    float *out;
    const float *res;
    unsigned char *blocks; /* per-worker im2col blocks */
    nn_im2col g;           /* MODE_IM2COL */
    ptrdiff_t tap_off[NN_TAPS_MAX];
    int m_chunks, g_chunks; /* tasks = m_chunks * g_chunks */
} conv_job;

/* First output pixel and row count of tile i. */
static void tile_span(const conv_plan *p, int i, int *r, int *rows)
{
    if (p->mode == MODE_ROWS) {
        int oy = i / p->tiles_per_row, j = i % p->tiles_per_row;
        *r = oy * p->ow + j * p->mr;
        *rows = LETHE_MIN(p->mr, p->ow - j * p->mr);
    } else {
        *r = i * p->mr;
        *rows = LETHE_MIN(p->mr, p->m - *r);
    }
}

/* Where tile row 0 of output pixel r starts reading (MODE_ROWS). */
static const float *rows_a(const conv_job *j, int r)
{
    const conv_plan *p = j->p;
    int oy = r / p->ow, ox = r % p->ow;
    size_t iy = (size_t)oy * j->c->stride, ix = (size_t)ox * j->c->stride;
    return j->in + (iy * p->wp + ix) * j->c->cin;
}

static void conv_task(void *arg, int task, int worker)
{
    const conv_job *j = arg;
    const conv_plan *p = j->p;
    const nn_conv *c = j->c;
    const nn_conv_packed *pk = c->packed;
    int mc = task / j->g_chunks, gc = task % j->g_chunks;
    int t0 = nn_part(p->tiles, mc, j->m_chunks), t1 = nn_part(p->tiles, mc + 1, j->m_chunks);
    int g0 = nn_part(p->groups, gc, j->g_chunks), g1 = nn_part(p->groups, gc + 1, j->g_chunks);
    float *buf = (float *)(j->blocks + (size_t)worker * p->block_bytes);
    static const ptrdiff_t zero_off[1] = {0};
    nn_tile t;

    t.lda = p->lda;
    t.panel_len = pk->panel_len;
    t.ldo = (size_t)c->cout;
    t.act = c->act;
    if (p->mode == MODE_ROWS) {
        t.taps = c->kh;
        t.seg = c->kw * c->cin;
        t.tap_off = j->tap_off;
    } else {
        t.taps = 1;
        t.seg = p->k;
        t.tap_off = zero_off;
    }
    for (int tb = t0; tb < t1; tb += p->tiles_per_block) {
        int te = LETHE_MIN(t1, tb + p->tiles_per_block);
        int r0 = 0, r1 = 0, rows;
        if (p->mode == MODE_IM2COL) {
            tile_span(p, tb, &r0, &rows);
            tile_span(p, te - 1, &r1, &rows);
            r1 += rows;
            j->kern->im2col(&j->g, j->in, r0, r1, buf);
        }
        for (int g = g0; g < g1; g++) {
            int n0 = g * p->gcols;
            int cols = LETHE_MIN(p->gcols, c->cout - n0);
            int nv = (cols + j->kern->width - 1) / j->kern->width;
            t.b = pk->b + (size_t)(n0 / NN_PANEL) * pk->panel_len + n0 % NN_PANEL;
            t.scale = pk->scale + n0;
            t.shift = pk->shift + n0;
            t.cols = cols;
            for (int i = tb; i < te; i++) {
                int r;
                tile_span(p, i, &r, &rows);
                if (p->mode == MODE_IM2COL)
                    t.a = buf + (size_t)(r - r0) * p->lda;
                else if (p->mode == MODE_ROWS)
                    t.a = rows_a(j, r);
                else
                    t.a = j->in + (size_t)r * c->cin;
                t.out = j->out + (size_t)r * c->cout + n0;
                t.res = j->res ? j->res + (size_t)r * c->cout + n0 : NULL;
                j->kern->tile[nv][rows](&t);
            }
        }
    }
}

/* Copy the input into dst (hp x wp) with zero borders: pt rows, pl columns. */
static void pad_input(const float *in, int h, int w, int cin, const conv_plan *p, float *dst)
{
    size_t row = (size_t)p->wp * cin;
    for (int y = 0; y < p->hp; y++) {
        float *d = dst + (size_t)y * row;
        int iy = y - p->pt;
        if (iy < 0 || iy >= h) {
            memset(d, 0, row * sizeof(float));
            continue;
        }
        int left = p->pl, copy = LETHE_MIN(w, p->wp - p->pl);
        memset(d, 0, (size_t)left * cin * sizeof(float));
        memcpy(d + (size_t)left * cin, in + (size_t)iy * w * cin,
               (size_t)copy * cin * sizeof(float));
        memset(d + (size_t)(left + copy) * cin, 0,
               (size_t)(p->wp - left - copy) * cin * sizeof(float));
    }
}

void nn_conv_opt_forward(const nn_kernels *kern, const nn_conv *c, const float *in, int h,
                         int w, float *out, const float *residual, void *scratch,
                         nn_pool *pool)
{
    conv_plan p;
    conv_job j;
    int workers = nn_pool_size(pool);

    plan_conv(kern, c, h, w, &p);
    if (p.m <= 0)
        return;
    if (use_wino(kern, c, h, w, workers, &p)) {
        nn_wino_forward(kern, c, in, h, w, out, residual, scratch, pool);
        return;
    }
    memset(&j, 0, sizeof(j));
    j.kern = kern;
    j.c = c;
    j.p = &p;
    j.in = in;
    j.out = out;
    j.res = residual;
    j.blocks = (unsigned char *)scratch + p.pad_bytes;
    if (p.mode == MODE_ROWS) {
        if (p.padded) {
            pad_input(in, h, w, c->cin, &p, scratch);
            j.in = scratch;
        }
        for (int ky = 0; ky < c->kh; ky++)
            j.tap_off[ky] = (ptrdiff_t)ky * p.wp * c->cin;
    } else if (p.mode == MODE_IM2COL) {
        j.g.h = h;
        j.g.w = w;
        j.g.cin = c->cin;
        j.g.kh = c->kh;
        j.g.kw = c->kw;
        j.g.stride = c->stride;
        j.g.pt = p.pt;
        j.g.pl = p.pl;
        j.g.ow = p.ow;
        j.g.lda = p.lda;
    }
    if (workers == 1) {
        j.m_chunks = 1;
        j.g_chunks = 1;
    } else {
        /* About four tasks a worker, split along M first, then B's columns. */
        int want = 4 * workers;
        j.m_chunks = LETHE_MIN(p.tiles, want);
        j.g_chunks = LETHE_MIN(p.groups, (want + j.m_chunks - 1) / j.m_chunks);
    }
    nn_pool_run(pool, j.m_chunks * j.g_chunks, conv_task, &j);
}

int nn_conv_pack(nn_conv *c)
{
    nn_conv_packed *p = lethe_calloc(1, sizeof(*p));
    if (!p)
        return -1;
    c->packed = p; /* nn_conv_free releases whatever was allocated */
    p->k = c->kh * c->kw * c->cin;
    p->panels = (c->cout + NN_PANEL - 1) / NN_PANEL;
    p->panel_len = (size_t)p->k * NN_PANEL;
    p->b = lethe_malloc_aligned((size_t)p->panels * p->panel_len * sizeof(float));
    p->scale = lethe_malloc_aligned((size_t)p->panels * NN_PANEL * sizeof(float));
    p->shift = lethe_malloc_aligned((size_t)p->panels * NN_PANEL * sizeof(float));
    if (!p->b || !p->scale || !p->shift)
        return -1;
    for (int pn = 0; pn < p->panels; pn++) {
        float *dst = p->b + (size_t)pn * p->panel_len;
        for (int kk = 0; kk < p->k; kk++)
            for (int j = 0; j < NN_PANEL; j++) {
                int co = pn * NN_PANEL + j;
                dst[(size_t)kk * NN_PANEL + j] =
                    co < c->cout ? c->w[(size_t)kk * c->cout + co] : 0.0f;
            }
    }
    for (int co = 0; co < p->panels * NN_PANEL; co++) {
        p->scale[co] = co < c->cout ? c->scale[co] : 1.0f;
        p->shift[co] = co < c->cout ? c->shift[co] : 0.0f;
    }
    if (c->algo != NN_ALGO_GEMM && nn_wino_applies(c))
        return nn_wino_pack(c);
    return 0;
}
