/*
 * index_search.c: exact k-nearest-neighbour search over the index.
 *
 * The scan reads only the int8 codes (128 B a row, a quarter of the fp32
 * row; for most rows only the first 64, see index_int.h). With x^ = cx / 256 and q^ = cq / 256 the fixed quantiser's
 * reconstructions, e_x = ||x - x^|| (stored per row, rounded up) and
 * e_q = ||q - q^||, the triangle inequality bounds the true distance:
 *
 *     d^ - e_x - e_q  <=  ||q - x||  <=  d^ + e_x + e_q,    d^ = ||cq - cx|| / 256
 *
 * where ||cq - cx||^2 is an exact integer. Both bounds are widened by
 * eps = 1e-6 * (1 + d^ + e_x + e_q), far more than the rounding of the
 * double arithmetic here and of the reference distance (double sum, then
 * float: idx_exact_distance), and more than one float ulp, so that a row
 * whose lower bound exceeds a threshold T that k rows' distances are known
 * to be within has a reported distance strictly greater than theirs and
 * cannot be in the top k even on a tie.
 *
 * Per query, each worker keeps the k smallest upper bounds it has seen
 * (their largest is such a T), the k best exactly reranked rows, and a
 * list of pending candidates (lower bound <= T when seen). The kernels
 * prefilter with a float test on the integer distance that can only let
 * more rows through (index_int.h); the test above is then made in double.
 * When a pending list grows, it is pruned against the current T and, if
 * still long, reranked. At the end the workers' bounds are merged into one
 * T, surviving candidates reranked with exact distances in order of their
 * lower bounds (so T soon becomes the exact k-th distance and cuts the rest
 * off), and the top k by (reported distance, id) returned: exactly the
 * brute-force answer, whatever the kernel set, thread count or scan order.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "index/index_int.h"
#include "util/util.h"

/* Groups per kernel call: a whole block when the queries fit one call,
 * else half a block (its codes stay in L1 across the query tiles). */
#define IDX_SUBGROUPS_BATCH 8u
/* A pending list this long (or 4k) is pruned, and reranked if still long. */
#define IDX_PENDING_CAP 2048u
/* Tasks per worker, so that a slow core gets fewer blocks. */
#define IDX_TASKS_PER_WORKER 8

/* ------------------------------------------------------------------ */
/* Kernel sets                                                          */
/* ------------------------------------------------------------------ */

int idx_isa_supported(nn_isa isa)
{
    switch (isa) {
    case NN_ISA_SCALAR:
        return 1;
    case NN_ISA_AVX2:
        return nn_isa_supported(NN_ISA_AVX2);
    case NN_ISA_AVX512:
        /* vpdpbusd: nn's avx512 set does not need VNNI, the index does. */
        return nn_isa_supported(NN_ISA_AVX512) && __builtin_cpu_supports("avx512vnni");
    }
    return 0;
}

const idx_kernel *idx_kernel_for(nn_isa isa)
{
    switch (isa) {
    case NN_ISA_AVX512:
        return &idx_kernel_avx512;
    case NN_ISA_AVX2:
        return &idx_kernel_avx2;
    case NN_ISA_SCALAR:
        break;
    }
    return &idx_kernel_ref;
}

int idx_set_isa(idx *ix, nn_isa isa)
{
    if (!ix || !idx_isa_supported(isa))
        return LETHE_ERR_UNSUPPORTED;
    ix->isa = isa;
    return LETHE_OK;
}

nn_isa idx_get_isa(const idx *ix) { return ix ? ix->isa : NN_ISA_SCALAR; }

void idx_last_stats(const idx *ix, idx_stats *st)
{
    if (!ix) {
        memset(st, 0, sizeof *st);
        return;
    }
    pthread_mutex_lock((pthread_mutex_t *)&ix->mu);
    *st = ix->stats;
    pthread_mutex_unlock((pthread_mutex_t *)&ix->mu);
}

/* ------------------------------------------------------------------ */
/* Search state                                                         */
/* ------------------------------------------------------------------ */

typedef struct cand {
    uint32_t row;  /* row number */
    float lower;   /* lower bound on its distance, rounded down */
} cand;

typedef struct xhit {
    float f;       /* reported distance */
    uint32_t row;
    int64_t id;
} xhit;

/* a ranks after b: (distance, id), then row for a total order. */
static inline int xhit_worse(const xhit *a, const xhit *b)
{
    if (a->f != b->f)
        return a->f > b->f;
    if (a->id != b->id)
        return a->id > b->id;
    return a->row > b->row;
}

typedef struct qstate {
    double *ub;      /* max-heap of the smallest upper bounds, up to k */
    xhit *ex;        /* max-heap (worst first) of the best reranked rows, up to k */
    cand *pend;      /* pending candidates */
    unsigned nub, nex;
    size_t npend, cap_pend;
    double T;        /* k rows are known within this distance (or tmax) */
} qstate;

typedef struct worker {
    qstate *qs;       /* [nq] */
    double *ub_store; /* [nq * k] */
    xhit *ex_store;   /* [nq * k] */
    float *qthr;      /* [nq]: T as the kernels' threshold */
    idx_pass *passes; /* one kernel call's worth */
    double *scratch;  /* merge: [nworkers * k] */
    xhit *heap;       /* merge: [k] */
    cand *cands;      /* merge: the candidates of one query, as a heap */
    size_t cap_cands;
    uint64_t candidates;
    int nomem;
} worker;

typedef struct search_ctx {
    const uint8_t *map;
    uint64_t nrows, nblocks;
    const idx_kernel *kern;
    size_t nq, k;            /* k: min(k asked, rows) */
    size_t kout;             /* the caller's k: stride of hits */
    double tmax;             /* max_distance, or INFINITY */
    float maxd;
    const float *queries;
    int8_t *qcodes;          /* [nq][IDX_DIM], rows 64-byte aligned */
    int32_t *qbias;          /* [nq] */
    int32_t *qbias_a;        /* [nq], over dims 0..63 */
    double *eq;              /* [nq]: e_q, rounded up */
    worker *w;
    int nworkers;
    uint64_t blocks_per_task;
    size_t groups_per_call;
    size_t queries_per_merge_task;
    idx_hit *hits;
    size_t *nhits;
} search_ctx;

static inline const float *row_vec(const uint8_t *map, uint64_t r)
{
    return (const float *)(idx_block(map, r / IDX_BLOCK_ROWS) + IDX_OFF_VECS +
                           (r % IDX_BLOCK_ROWS) * IDX_DIM * 4);
}

static inline int64_t row_id(const uint8_t *map, uint64_t r)
{
    int64_t id;
    memcpy(&id, idx_block(map, r / IDX_BLOCK_ROWS) + IDX_OFF_IDS + (r % IDX_BLOCK_ROWS) * 8, 8);
    return id;
}

/* The kernels' threshold (code units) for a distance threshold T. */
static float thr_for(double T, double eq)
{
    if (!(T < INFINITY))
        return INFINITY;
    double r = ((T + eq) * (1.0 + 1e-5) + 1e-5) * IDX_QUANT;
    float f = (float)r;
    if ((double)f < r)
        f = nextafterf(f, INFINITY);
    return f;
}

/* A distance beyond which every row reports a distance worse than f. */
static inline double beyond(float f) { return (double)nextafterf(f, INFINITY); }

static void ub_push(double *h, unsigned *n, unsigned k, double v)
{
    unsigned i;
    if (*n < k) {
        i = (*n)++;
        while (i > 0) {
            unsigned p = (i - 1) / 2;
            if (h[p] >= v)
                break;
            h[i] = h[p];
            i = p;
        }
        h[i] = v;
        return;
    }
    if (v >= h[0])
        return;
    i = 0;
    for (;;) {
        unsigned l = 2 * i + 1, r = l + 1, m = i;
        double mv = v;
        if (l < k && h[l] > mv) {
            m = l;
            mv = h[l];
        }
        if (r < k && h[r] > mv)
            m = r;
        if (m == i)
            break;
        h[i] = h[m];
        i = m;
    }
    h[i] = v;
}

static void xheap_push(xhit *h, unsigned *n, unsigned k, const xhit *v)
{
    unsigned i;
    if (*n < k) {
        i = (*n)++;
        while (i > 0) {
            unsigned p = (i - 1) / 2;
            if (!xhit_worse(v, &h[p]))
                break;
            h[i] = h[p];
            i = p;
        }
        h[i] = *v;
        return;
    }
    if (!xhit_worse(&h[0], v))
        return;
    i = 0;
    for (;;) {
        unsigned l = 2 * i + 1, r = l + 1, m = i;
        const xhit *mv = v;
        if (l < k && xhit_worse(&h[l], mv)) {
            m = l;
            mv = &h[l];
        }
        if (r < k && xhit_worse(&h[r], mv))
            m = r;
        if (m == i)
            break;
        h[i] = h[m];
        i = m;
    }
    h[i] = *v;
}

static void q_update(const search_ctx *c, worker *w, size_t q)
{
    qstate *s = &w->qs[q];
    double T = c->tmax;
    if (s->nub == c->k && s->ub[0] < T)
        T = s->ub[0];
    if (s->nex == c->k && beyond(s->ex[0].f) < T)
        T = beyond(s->ex[0].f);
    s->T = T;
    w->qthr[q] = thr_for(T, c->eq[q]);
}

static void rerank_into(const search_ctx *c, const float *query, const cand *cd, size_t n,
                        double T, xhit *heap, unsigned *nheap, uint64_t *counter)
{
    for (size_t i = 0; i < n; i++) {
        if (cd[i].lower > T)
            continue;
        xhit h;
        h.row = cd[i].row;
        h.f = idx_exact_distance(query, row_vec(c->map, h.row));
        h.id = row_id(c->map, h.row);
        xheap_push(heap, nheap, (unsigned)c->k, &h);
        (*counter)++;
        if (*nheap == c->k && beyond(heap[0].f) < T)
            T = beyond(heap[0].f);
    }
}

/* The pending list of query q is full: prune it, rerank it if still long. */
static void pending_flush(const search_ctx *c, worker *w, size_t q)
{
    qstate *s = &w->qs[q];
    size_t j = 0;
    for (size_t i = 0; i < s->npend; i++)
        if (s->pend[i].lower <= s->T)
            s->pend[j++] = s->pend[i];
    s->npend = j;
    if (s->npend * 2 < s->cap_pend)
        return;
    rerank_into(c, c->queries + q * IDX_DIM, s->pend, s->npend, s->T, s->ex, &s->nex,
                &w->candidates);
    s->npend = 0;
    q_update(c, w, q);
}

static void pending_add(const search_ctx *c, worker *w, size_t q, uint32_t row, double lower)
{
    qstate *s = &w->qs[q];
    if (s->npend == s->cap_pend) {
        size_t limit = LETHE_MAX((size_t)IDX_PENDING_CAP, 4 * c->k);
        if (s->cap_pend >= limit) {
            pending_flush(c, w, q);
            if (lower > s->T)
                return;
        }
        if (s->npend == s->cap_pend) {
            size_t ncap = s->cap_pend ? 2 * s->cap_pend : 64;
            cand *p = lethe_realloc(s->pend, ncap * sizeof *p);
            if (!p) {
                w->nomem = 1;
                return;
            }
            s->pend = p;
            s->cap_pend = ncap;
        }
    }
    float lf = (float)lower;
    if ((double)lf > lower)
        lf = nextafterf(lf, -INFINITY);
    s->pend[s->npend].row = row;
    s->pend[s->npend].lower = lf;
    s->npend++;
}

/* One kernel pass: the exact bound test in double. */
static inline void on_pass(const search_ctx *c, worker *w, size_t q, uint64_t block,
                           const uint8_t *blk, const idx_pass *p)
{
    uint64_t r = block * IDX_BLOCK_ROWS + p->row;
    if (r >= c->nrows || !blk[IDX_OFF_LIVE + p->row])
        return;
    qstate *s = &w->qs[q];
    float ex;
    memcpy(&ex, blk + IDX_OFF_ERR + p->row * 4u, 4);
    double dhat = sqrt((double)p->d2) / IDX_QUANT;
    double e = (double)ex + c->eq[q];
    double eps = 1e-6 * (1.0 + dhat + e);
    double lower = dhat - e - eps;
    if (lower > s->T)
        return;
    double upper = dhat + e + eps;
    pending_add(c, w, q, (uint32_t)r, lower);
    if (s->nub < c->k || upper < s->ub[0]) {
        ub_push(s->ub, &s->nub, (unsigned)c->k, upper);
        if (s->nub == c->k)
            q_update(c, w, q);
    }
}

static void scan_task(void *arg, int task, int wi)
{
    search_ctx *c = arg;
    worker *w = &c->w[wi];
    const idx_kernel *kern = c->kern;
    uint64_t b0 = (uint64_t)task * c->blocks_per_task;
    uint64_t b1 = LETHE_MIN(b0 + c->blocks_per_task, c->nblocks);
    idx_scan_args a;

    if (w->nomem)
        return;
    for (uint64_t b = b0; b < b1; b++) {
        const uint8_t *blk = idx_block(c->map, b);
        uint64_t rows = LETHE_MIN((uint64_t)IDX_BLOCK_ROWS, c->nrows - b * IDX_BLOCK_ROWS);
        size_t ngroups = (size_t)((rows + IDX_GROUP_ROWS - 1) / IDX_GROUP_ROWS);
        for (size_t g0 = 0; g0 < ngroups; g0 += c->groups_per_call) {
            a.ngroups = LETHE_MIN(c->groups_per_call, ngroups - g0);
            a.codes_a = blk + IDX_OFF_CODES_A + g0 * IDX_GROUP_HALF_BYTES;
            a.codes_b = blk + IDX_OFF_CODES_B + g0 * IDX_GROUP_HALF_BYTES;
            a.sq = (const int32_t *)(blk + IDX_OFF_SQ) + g0 * IDX_GROUP_ROWS;
            a.sqa = (const int32_t *)(blk + IDX_OFF_SQA) + g0 * IDX_GROUP_ROWS;
            a.gmax = (const float *)(blk + IDX_OFF_GMAX) + g0;
            a.row0 = (unsigned)(g0 * IDX_GROUP_ROWS);
            a.out = w->passes;
            if (b + 1 < b1) {
                const uint8_t *nb = idx_block(c->map, b + 1);
                a.pf_codes = nb + IDX_OFF_CODES_A + g0 * IDX_GROUP_HALF_BYTES;
                a.pf_sq = (const int32_t *)(nb + IDX_OFF_SQA) + g0 * IDX_GROUP_ROWS;
            } else {
                a.pf_codes = NULL;
                a.pf_sq = NULL;
            }
            for (size_t t = 0; t < c->nq; t += kern->qtile) {
                a.nq = LETHE_MIN(kern->qtile, c->nq - t);
                a.qcodes = c->qcodes + t * IDX_DIM;
                a.qbias = c->qbias + t;
                a.qbias_a = c->qbias_a + t;
                a.qthr = w->qthr + t;
                size_t np = kern->scan(&a);
                a.pf_codes = NULL; /* once per block is enough */
                a.pf_sq = NULL;
                for (size_t i = 0; i < np; i++)
                    on_pass(c, w, t + w->passes[i].q, b, blk, &w->passes[i]);
            }
        }
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y ? 1 : 0;
}

static int cmp_xhit(const void *a, const void *b)
{
    const xhit *x = a, *y = b;
    return xhit_worse(x, y) ? 1 : xhit_worse(y, x) ? -1 : 0;
}

/* Min-heap of candidates by lower bound. */
static void cand_down(cand *h, size_t n, size_t i)
{
    cand v = h[i];
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        float mv = v.lower;
        if (l < n && h[l].lower < mv) {
            m = l;
            mv = h[l].lower;
        }
        if (l + 1 < n && h[l + 1].lower < mv)
            m = l + 1;
        if (m == i)
            break;
        h[i] = h[m];
        i = m;
    }
    h[i] = v;
}

static inline void prefetch_row(const uint8_t *map, uint32_t row)
{
    const char *p = (const char *)row_vec(map, row);
    for (unsigned i = 0; i < IDX_DIM * 4; i += 64)
        __builtin_prefetch(p + i);
}

/*
 * Merge the workers' state of one query and write its hits. The pending
 * candidates are reranked in order of their lower bounds: once k are
 * reranked the threshold is an exact distance, and the first candidate
 * whose lower bound exceeds it ends the work.
 */
static void merge_query(search_ctx *c, worker *me, size_t q)
{
    size_t k = c->k, n = 0, nc = 0;
    double T = c->tmax;
    unsigned nheap = 0;
    xhit *heap = me->heap;
    const float *query = c->queries + q * IDX_DIM;

    for (int i = 0; i < c->nworkers; i++) {
        qstate *s = &c->w[i].qs[q];
        memcpy(me->scratch + n, s->ub, s->nub * sizeof(double));
        n += s->nub;
        nc += s->npend;
        for (unsigned j = 0; j < s->nex; j++)
            xheap_push(heap, &nheap, (unsigned)k, &s->ex[j]);
    }
    if (n >= k) {
        qsort(me->scratch, n, sizeof(double), cmp_double);
        if (me->scratch[k - 1] < T)
            T = me->scratch[k - 1];
    }
    if (nheap == k && beyond(heap[0].f) < T)
        T = beyond(heap[0].f);
    if (nc > me->cap_cands) {
        cand *p = lethe_realloc(me->cands, nc * sizeof *p);
        if (p) {
            me->cands = p;
            me->cap_cands = nc;
        }
    }
    if (nc > me->cap_cands) {
        /* No room to order them: rerank in scan order. */
        for (int i = 0; i < c->nworkers; i++) {
            qstate *s = &c->w[i].qs[q];
            rerank_into(c, query, s->pend, s->npend, T, heap, &nheap, &me->candidates);
            if (nheap == k && beyond(heap[0].f) < T)
                T = beyond(heap[0].f);
        }
    } else {
        cand *h = me->cands;
        nc = 0;
        for (int i = 0; i < c->nworkers; i++) {
            qstate *s = &c->w[i].qs[q];
            for (size_t j = 0; j < s->npend; j++)
                if (s->pend[j].lower <= T)
                    h[nc++] = s->pend[j];
        }
        for (size_t i = nc / 2; i-- > 0;)
            cand_down(h, nc, i);
        while (nc > 0 && h[0].lower <= T) {
            cand top = h[0];
            h[0] = h[--nc];
            cand_down(h, nc, 0);
            if (nc > 0)
                prefetch_row(c->map, h[0].row);
            xhit x;
            x.row = top.row;
            x.f = idx_exact_distance(query, row_vec(c->map, top.row));
            x.id = row_id(c->map, top.row);
            xheap_push(heap, &nheap, (unsigned)k, &x);
            me->candidates++;
            if (nheap == k && beyond(heap[0].f) < T)
                T = beyond(heap[0].f);
        }
    }
    qsort(heap, nheap, sizeof *heap, cmp_xhit);
    size_t out = 0;
    idx_hit *hits = c->hits + q * c->kout;
    for (unsigned j = 0; j < nheap; j++) {
        if (!(heap[j].f <= c->maxd))
            break;
        hits[out].distance = heap[j].f;
        hits[out].id = heap[j].id;
        out++;
    }
    c->nhits[q] = out;
}

static void merge_task(void *arg, int task, int wi)
{
    search_ctx *c = arg;
    size_t q0 = (size_t)task * c->queries_per_merge_task;
    size_t q1 = LETHE_MIN(q0 + c->queries_per_merge_task, c->nq);
    for (size_t q = q0; q < q1; q++)
        merge_query(c, &c->w[wi], q);
}

static void workers_free(worker *w, int n, size_t nq)
{
    if (!w)
        return;
    for (int i = 0; i < n; i++) {
        if (w[i].qs)
            for (size_t q = 0; q < nq; q++)
                lethe_free(w[i].qs[q].pend);
        lethe_free(w[i].qs);
        lethe_free(w[i].ub_store);
        lethe_free(w[i].ex_store);
        lethe_free(w[i].qthr);
        lethe_free(w[i].passes);
        lethe_free(w[i].scratch);
        lethe_free(w[i].heap);
        lethe_free(w[i].cands);
    }
    lethe_free(w);
}

static int workers_alloc(search_ctx *c)
{
    size_t nqk, npass;
    if (!lethe_mul_size(c->nq, c->k, &nqk) || nqk > SIZE_MAX / sizeof(xhit) ||
        !lethe_mul_size(c->groups_per_call * IDX_GROUP_ROWS, c->kern->qtile, &npass))
        return -1;
    c->w = lethe_calloc((size_t)c->nworkers, sizeof *c->w);
    if (!c->w)
        return -1;
    for (int i = 0; i < c->nworkers; i++) {
        worker *w = &c->w[i];
        w->qs = lethe_calloc(c->nq, sizeof *w->qs);
        w->ub_store = lethe_malloc(nqk * sizeof(double));
        w->ex_store = lethe_malloc(nqk * sizeof(xhit));
        w->qthr = lethe_malloc(c->nq * sizeof(float));
        w->passes = lethe_malloc(npass * sizeof(idx_pass));
        w->scratch = lethe_malloc((size_t)c->nworkers * c->k * sizeof(double));
        w->heap = lethe_malloc(c->k * sizeof(xhit));
        if (!w->qs || !w->ub_store || !w->ex_store || !w->qthr || !w->passes || !w->scratch ||
            !w->heap)
            return -1;
        for (size_t q = 0; q < c->nq; q++) {
            w->qs[q].ub = w->ub_store + q * c->k;
            w->qs[q].ex = w->ex_store + q * c->k;
            q_update(c, w, q);
        }
    }
    return 0;
}

/* The pool for `threads` workers (NULL: run in the caller). Called with
 * pool_mu held. */
static nn_pool *get_pool(idx *ix, int threads)
{
    if (threads <= 1)
        return NULL;
    if (ix->pool && ix->pool_threads == threads)
        return ix->pool;
    nn_pool_destroy(ix->pool);
    ix->pool = NULL;
    ix->pool_threads = 0;
    if (nn_pool_create(&ix->pool, threads) != 0)
        return NULL;
    ix->pool_threads = threads;
    return ix->pool;
}

int idx_search(idx *ix, const float *queries, size_t nq, size_t k, float max_distance,
               int threads, idx_hit *hits, size_t *nhits, char *err, size_t errlen)
{
    search_ctx c;
    int rc;

    if (!ix)
        return lethe_fail(err, errlen, LETHE_ERR_ARG, "idx_search: no index");
    if (nq == 0)
        return LETHE_OK;
    if (!queries || !nhits || (k > 0 && !hits))
        return lethe_fail(err, errlen, LETHE_ERR_ARG, "%s: search with NULL buffers",
                          ix->path);
    if (isnan(max_distance))
        return lethe_fail(err, errlen, LETHE_ERR_ARG, "%s: max_distance is NaN", ix->path);
    for (size_t i = 0; i < nq * IDX_DIM; i++)
        if (!isfinite(queries[i]))
            return lethe_fail(err, errlen, LETHE_ERR_ARG,
                              "%s: query %zu has a NaN or infinite component", ix->path,
                              i / IDX_DIM);
    memset(nhits, 0, nq * sizeof *nhits);
    if (k == 0 || max_distance < 0)
        return LETHE_OK;

    rc = idx_read_begin(ix, err, errlen);
    if (rc != LETHE_OK)
        return rc;
    memset(&c, 0, sizeof c);
    c.map = ix->map;
    c.nrows = ix->count;
    {
        uint64_t fit = ix->map_len > IDX_HEADER_BYTES
                           ? (ix->map_len - IDX_HEADER_BYTES) / IDX_BLOCK_BYTES * IDX_BLOCK_ROWS
                           : 0;
        if (c.nrows > fit)
            c.nrows = fit;
    }
    if (c.nrows == 0) {
        idx_read_end(ix);
        return LETHE_OK;
    }
    c.nblocks = idx_blocks_for(c.nrows);
    c.kern = idx_kernel_for(ix->isa);
    c.nq = nq;
    c.k = k < c.nrows ? k : (size_t)c.nrows;
    c.kout = k;
    c.tmax = max_distance;
    c.maxd = max_distance;
    c.queries = queries;
    c.hits = hits;
    c.nhits = nhits;
    c.groups_per_call = nq <= c.kern->qtile ? IDX_BLOCK_GROUPS : IDX_SUBGROUPS_BATCH;

    if (threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (int)LETHE_MIN(n, 256L) : 1;
    }
    if ((uint64_t)threads > c.nblocks && (size_t)threads > nq)
        threads = (int)LETHE_MAX(c.nblocks, (uint64_t)nq);
    /* Searches of one handle from several threads share its pool one at a
     * time; a search that finds it busy runs in its own thread. */
    int have_pool = 0;
    nn_pool *pool = NULL;
    if (threads > 1 && pthread_mutex_trylock(&ix->pool_mu) == 0) {
        have_pool = 1;
        pool = get_pool(ix, threads);
    }
    c.nworkers = nn_pool_size(pool);

    rc = LETHE_ERR_NOMEM;
    size_t qc_bytes;
    if (!lethe_mul_size(nq, IDX_DIM, &qc_bytes))
        goto out;
    c.qcodes = lethe_malloc_aligned(qc_bytes);
    c.qbias = lethe_malloc(nq * sizeof *c.qbias);
    c.qbias_a = lethe_malloc(nq * sizeof *c.qbias_a);
    c.eq = lethe_malloc(nq * sizeof *c.eq);
    if (!c.qcodes || !c.qbias || !c.qbias_a || !c.eq)
        goto out;
    for (size_t q = 0; q < nq; q++) {
        int32_t sq;
        float e;
        int8_t *qc = c.qcodes + q * IDX_DIM;
        idx_quantise(queries + q * IDX_DIM, qc, &sq, &e);
        int32_t sum = 0, sum_a = 0, sq_a = 0;
        for (int d = 0; d < IDX_DIM; d++) {
            sum += qc[d];
            if (d < IDX_HALF) {
                sum_a += qc[d];
                sq_a += qc[d] * qc[d];
            }
        }
        c.qbias[q] = sq + 256 * sum;
        c.qbias_a[q] = sq_a + 256 * sum_a;
        c.eq[q] = e;
    }
    if (workers_alloc(&c) != 0)
        goto out;

    uint64_t ntasks = (uint64_t)c.nworkers * IDX_TASKS_PER_WORKER;
    if (ntasks > c.nblocks)
        ntasks = c.nblocks;
    c.blocks_per_task = (c.nblocks + ntasks - 1) / ntasks;
    ntasks = (c.nblocks + c.blocks_per_task - 1) / c.blocks_per_task;
    nn_pool_run(pool, (int)ntasks, scan_task, &c);
    for (int i = 0; i < c.nworkers; i++)
        if (c.w[i].nomem)
            goto out;

    size_t mtasks = LETHE_MIN(nq, (size_t)c.nworkers * IDX_TASKS_PER_WORKER);
    c.queries_per_merge_task = (nq + mtasks - 1) / mtasks;
    mtasks = (nq + c.queries_per_merge_task - 1) / c.queries_per_merge_task;
    nn_pool_run(pool, (int)mtasks, merge_task, &c);
    rc = LETHE_OK;

    idx_stats st = {c.nrows * nq, 0};
    for (int i = 0; i < c.nworkers; i++)
        st.candidates += c.w[i].candidates;
    pthread_mutex_lock(&ix->mu);
    ix->stats = st;
    pthread_mutex_unlock(&ix->mu);

out:
    if (rc != LETHE_OK) {
        memset(nhits, 0, nq * sizeof *nhits);
        lethe_fail(err, errlen, rc, "%s: out of memory searching %zu queries (k = %zu)",
                   ix->path, nq, k);
    }
    workers_free(c.w, c.nworkers, nq);
    lethe_free_aligned(c.qcodes);
    lethe_free(c.qbias);
    lethe_free(c.qbias_a);
    lethe_free(c.eq);
    if (have_pool)
        pthread_mutex_unlock(&ix->pool_mu);
    idx_read_end(ix);
    return rc;
}
