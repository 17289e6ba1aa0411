/*
 * nn_wino.c: Winograd F(2x2, 3x3) for 3x3 stride-1 convolutions: each 2x2
 * block of outputs ("tile") comes from a 4x4 input patch with 16 products
 * per input/output channel pair instead of 36, i.e. 2.25x fewer
 * multiplications. The work for a block of tiles, done by one worker in
 * its scratch memory:
 *   1. V = B^T d B for every tile and input channel (16 matrices, tiles x cin);
 *   2. M_e = V_e U_e for e = 0..15: 16 GEMMs run by the usual micro-kernels,
 *      U = G g G^T being the weights transformed (in double) when packed;
 *   3. out = A^T M A per tile, with scale, shift, residual and activation.
 * The transforms are in nn_winograd.h, compiled per ISA.
 */
#include <string.h>

#include "nn/nn_int.h"
#include "util/util.h"

/* Bytes of V and M for one block of tiles, aimed at L2 (1 MiB). */
#define WINO_BLOCK_BYTES (256 * 1024)
/* Measured transform costs, cycles per float of V written / of M read. */
#define WINO_IN_CYCLES 0.35
#define WINO_OUT_CYCLES 0.45

#define ONES8 1, 1, 1, 1, 1, 1, 1, 1
static const float unit_scale[NN_NV_MAX * NN_PANEL] = {ONES8, ONES8, ONES8, ONES8,
                                                       ONES8, ONES8, ONES8, ONES8};
static const float zero_shift[NN_NV_MAX * NN_PANEL];

int nn_wino_applies(const nn_conv *c)
{
    /* Few channels make short GEMMs that the transforms do not pay for. */
    return c->kh == 3 && c->kw == 3 && c->stride == 1 && c->cin >= 8 && c->cout >= 8;
}

int nn_wino_pack(nn_conv *c)
{
    static const double G[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
    nn_conv_packed *p = c->packed;
    size_t len = (size_t)p->panels * c->cin * NN_PANEL;
    float *u = lethe_malloc_aligned(16 * len * sizeof(float));
    if (!u)
        return -1;
    memset(u, 0, 16 * len * sizeof(float)); /* columns past cout */
    for (int ci = 0; ci < c->cin; ci++)
        for (int co = 0; co < c->cout; co++) {
            double g[3][3], t[4][3];
            for (int ky = 0; ky < 3; ky++)
                for (int kx = 0; kx < 3; kx++)
                    g[ky][kx] = c->w[((size_t)(ky * 3 + kx) * c->cin + ci) * c->cout + co];
            for (int i = 0; i < 4; i++) /* G g */
                for (int j = 0; j < 3; j++)
                    t[i][j] = G[i][0] * g[0][j] + G[i][1] * g[1][j] + G[i][2] * g[2][j];
            size_t at = (size_t)(co / NN_PANEL) * c->cin * NN_PANEL + (size_t)ci * NN_PANEL +
                        co % NN_PANEL;
            for (int i = 0; i < 4; i++) /* (G g) G^T */
                for (int j = 0; j < 4; j++)
                    u[(size_t)(4 * i + j) * len + at] =
                        (float)(t[i][0] * G[j][0] + t[i][1] * G[j][1] + t[i][2] * G[j][2]);
        }
    lethe_free_aligned(p->wino);
    p->wino = u;
    p->wino_len = len;
    return 0;
}

typedef struct wino_plan {
    nn_wino g;
    int tiles;           /* output tiles in all */
    int tb;              /* tiles per block */
    int blocks;
    int nv, gcols, groups; /* GEMM column groups, as in nn_conv.c */
    int mr;              /* GEMM rows per micro-kernel call */
    size_t v_bytes, m_bytes; /* per worker, 64-byte multiples */
    double cost;         /* estimated cycles */
} wino_plan;

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

static void plan_wino(const nn_kernels *kern, const nn_conv *c, int h, int w, int workers,
                      wino_plan *p)
{
    memset(p, 0, sizeof(*p));
    p->cost = -1.0;
    if (!nn_wino_applies(c))
        return;
    nn_wino *g = &p->g;
    g->h = h;
    g->w = w;
    g->cin = c->cin;
    g->cout = c->cout;
    g->oh = nn_out_size(h, 3, 1, c->pad);
    g->ow = nn_out_size(w, 3, 1, c->pad);
    g->pt = nn_pad_before(h, 3, 1, c->pad);
    g->pl = nn_pad_before(w, 3, 1, c->pad);
    g->act = c->act;
    if (g->oh <= 0 || g->ow <= 0)
        return;
    g->tw = (g->ow + 1) / 2;
    p->tiles = g->tw * ((g->oh + 1) / 2);
    g->ldv = ((size_t)c->cin + NN_PANEL - 1) / NN_PANEL * NN_PANEL;
    if ((g->ldv * sizeof(float)) % 1024 == 0)
        g->ldv += NN_PANEL; /* rows 1 KiB apart share L1 sets */

    size_t per_tile = 16 * (g->ldv + (size_t)c->cout) * sizeof(float);
    size_t tb = WINO_BLOCK_BYTES / per_tile;
    if (tb < 1)
        tb = 1;
    if (tb > (size_t)p->tiles)
        tb = (size_t)p->tiles;
    p->blocks = (int)((p->tiles + tb - 1) / tb);
    /* Enough blocks to share among the workers (outputs do not depend on
     * the blocking), if they stay tall enough for the micro-kernels. */
    if (p->blocks < 2 * workers)
        p->blocks = LETHE_MAX(p->blocks, LETHE_MIN(2 * workers, p->tiles / 8));
    p->tb = (p->tiles + p->blocks - 1) / p->blocks; /* balanced */
    p->blocks = (p->tiles + p->tb - 1) / p->tb;
    g->vstride = (size_t)p->tb * g->ldv;
    g->mstride = (size_t)p->tb * c->cout;
    p->v_bytes = align64(16 * g->vstride * sizeof(float));
    p->m_bytes = align64(16 * g->mstride * sizeof(float));

    /* The GEMM shape with the least cost, as nn_conv.c does it. */
    double best = -1.0;
    for (int nv = 1; nv <= kern->nv_max; nv++) {
        int gcols = nv * kern->width;
        int groups = (c->cout + gcols - 1) / gcols;
        int last_nv = (c->cout - (groups - 1) * gcols + kern->width - 1) / kern->width;
        int calls = (p->tb + kern->mr_max[nv] - 1) / kern->mr_max[nv];
        int mr = (p->tb + calls - 1) / calls;
        double per_block = 0.0;
        for (int r = 0; r < p->tb; r += mr) {
            int rows = LETHE_MIN(mr, p->tb - r);
            per_block += (groups - 1) * nn_tile_cycles(kern, rows, nv, c->cin) +
                         nn_tile_cycles(kern, rows, last_nv, c->cin);
        }
        double cost = 16.0 * p->blocks * per_block;
        if (best < 0 || cost < best) {
            best = cost;
            p->nv = nv;
            p->gcols = gcols;
            p->groups = groups;
            p->mr = mr;
        }
    }
    p->cost = best + 16.0 * p->tiles * (WINO_IN_CYCLES * g->ldv + WINO_OUT_CYCLES * c->cout);
}

double nn_wino_cost(const nn_kernels *kern, const nn_conv *c, int h, int w, int workers,
                    size_t *scratch)
{
    wino_plan p;
    plan_wino(kern, c, h, w, workers, &p);
    *scratch = (p.v_bytes + p.m_bytes) * (size_t)workers;
    return p.cost;
}

typedef struct wino_job {
    const nn_kernels *kern;
    const nn_conv *c;
    const wino_plan *p;
    const float *in;
    float *out;
    const float *res;
    unsigned char *scratch;
} wino_job;

static void wino_task(void *arg, int block, int worker)
{
    static const ptrdiff_t zero_off[1] = {0};
    const wino_job *j = arg;
    const wino_plan *p = j->p;
    const nn_conv *c = j->c;
    const nn_conv_packed *pk = c->packed;
    int t0 = block * p->tb, t1 = LETHE_MIN(p->tiles, t0 + p->tb);
    float *v = (float *)(j->scratch + (size_t)worker * (p->v_bytes + p->m_bytes));
    float *m = (float *)((unsigned char *)v + p->v_bytes);
    nn_tile t;

    j->kern->wino_in(&p->g, j->in, t0, t1, v);
    t.lda = p->g.ldv;
    t.taps = 1;
    t.seg = c->cin;
    t.tap_off = zero_off;
    t.panel_len = (size_t)c->cin * NN_PANEL;
    t.scale = unit_scale;
    t.shift = zero_shift;
    t.ldo = (size_t)c->cout;
    t.res = NULL;
    t.act = NN_ACT_NONE;
    for (int e = 0; e < 16; e++) {
        const float *u = pk->wino + (size_t)e * pk->wino_len;
        for (int grp = 0; grp < p->groups; grp++) {
            int n0 = grp * p->gcols;
            t.cols = LETHE_MIN(p->gcols, c->cout - n0);
            t.b = u + (size_t)(n0 / NN_PANEL) * t.panel_len;
            int nv = (t.cols + j->kern->width - 1) / j->kern->width;
            for (int r = 0; r < t1 - t0; r += p->mr) {
                int rows = LETHE_MIN(p->mr, t1 - t0 - r);
                t.a = v + (size_t)e * p->g.vstride + (size_t)r * p->g.ldv;
                t.out = m + (size_t)e * p->g.mstride + (size_t)r * c->cout + n0;
                j->kern->tile[nv][rows](&t);
            }
        }
    }
    j->kern->wino_out(&p->g, m, t0, t1, pk->scale, pk->shift, j->res, j->out);
}

void nn_wino_forward(const nn_kernels *kern, const nn_conv *c, const float *in, int h, int w,
                     float *out, const float *residual, void *scratch, nn_pool *pool)
{
    wino_plan p;
    plan_wino(kern, c, h, w, nn_pool_size(pool), &p);
    if (p.cost < 0)
        return;
    wino_job j = {kern, c, &p, in, out, residual, scratch};
    nn_pool_run(pool, p.blocks, wino_task, &j);
}
