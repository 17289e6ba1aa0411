/*
 * test_index.c: the descriptor index. Searches are held to a brute-force
 * reference in double precision (every hit's id and distance must be equal,
 * tolerance 0) on random descriptors, on descriptors with clamped
 * components, and on clustered data full of near-ties and exact ties, for
 * k = 1, 10, 100 and k > count, with and without max_distance, for every
 * kernel set the CPU has and several thread counts; each SIMD kernel must
 * compute exactly the reference kernel's integers. The file: round trips of
 * append, remove, commit and reopen; the generation; corrupt, foreign,
 * truncated and uncommitted files; no byte of a removed row left in the
 * file (fp32, codes, norms); readers in another thread and another process
 * while a writer changes the index never see a row that was not there; a
 * second writer is refused; out-of-memory on every allocation.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "index/index.h"
#include "index/index_int.h"
#include "test.h"
#include "util/util.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next_u64(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static double uniform(void) { return (double)(next_u64() >> 11) * (1.0 / 9007199254740992.0); }

static double gauss(void)
{
    double u = uniform(), v = uniform();
    if (u < 1e-300)
        u = 1e-300;
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* A descriptor-like vector: N(0, 0.12^2) components (norm ~1.36, as the
 * face model gives), a few beyond the quantiser's +-0.496. */
static void rand_desc(float *v)
{
    for (int d = 0; d < IDX_DIM; d++)
        v[d] = (float)(0.12 * gauss());
}

static char tmp_dir[64];

static const char *tmp_path(const char *name)
{
    static char buf[4][128];
    static int i;
    i = (i + 1) % 4;
    if (!tmp_dir[0]) {
        strcpy(tmp_dir, "/tmp/lethe-test-index-XXXXXX");
        if (!mkdtemp(tmp_dir)) {
            perror("mkdtemp");
            exit(2);
        }
    }
    snprintf(buf[i], sizeof buf[i], "%s/%s", tmp_dir, name);
    return buf[i];
}

static void remove_tmp(void)
{
    char cmd[128];
    if (!tmp_dir[0])
        return;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmp_dir);
}

/* ------------------------------------------------------------------ */
/* The brute-force reference                                            */
/* ------------------------------------------------------------------ */

typedef struct ref_row {
    float f;
    int64_t id;
} ref_row;

static int ref_cmp(const void *a, const void *b)
{
    const ref_row *x = a, *y = b;
    if (x->f != y->f)
        return x->f < y->f ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id ? 1 : 0;
}

/* The reference distance, written out independently of the library's
 * idx_exact_distance (the same definition: double, eight sums by d % 8). */
static float ref_distance(const float *a, const float *b)
{
    double s[8] = {0};
    for (int d = 0; d < IDX_DIM; d++) {
        double t = (double)a[d] - (double)b[d];
        s[d % 8] += t * t;
    }
    return (float)sqrt(((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])));
}

/* Top k of rows[0..n) (alive[i] != 0) for one query; returns hits written. */
static size_t ref_search(const float *vecs, const int64_t *ids, const uint8_t *alive, size_t n,
                         const float *q, size_t k, float maxd, idx_hit *out)
{
    ref_row *all = malloc((n ? n : 1) * sizeof *all);
    size_t m = 0, h = 0;
    for (size_t i = 0; i < n; i++) {
        if (alive && !alive[i])
            continue;
        all[m].f = ref_distance(q, vecs + i * IDX_DIM);
        all[m].id = ids[i];
        m++;
    }
    qsort(all, m, sizeof *all, ref_cmp);
    for (size_t i = 0; i < m && h < k; i++) {
        if (!(all[i].f <= maxd))
            break;
        out[h].distance = all[i].f;
        out[h].id = all[i].id;
        h++;
    }
    free(all);
    return h;
}

/* Search and compare with the reference; returns mismatching queries. */
static int check_search(idx *ix, const float *vecs, const int64_t *ids, const uint8_t *alive,
                        size_t n, const float *queries, size_t nq, size_t k, float maxd,
                        int threads)
{
    idx_hit *hits = calloc(nq * k + 1, sizeof *hits);
    size_t *nh = calloc(nq + 1, sizeof *nh);
    idx_hit *ref = calloc(k + 1, sizeof *ref);
    char err[256] = "";
    int bad = 0;
    int rc = idx_search(ix, queries, nq, k, maxd, threads, hits, nh, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "    idx_search: %s\n", err);
        bad = (int)nq;
        goto out;
    }
    for (size_t q = 0; q < nq; q++) {
        size_t rn = ref_search(vecs, ids, alive, n, queries + q * IDX_DIM, k, maxd, ref);
        int same = rn == nh[q];
        for (size_t i = 0; same && i < rn; i++)
            same = ref[i].id == hits[q * k + i].id &&
                   ref[i].distance == hits[q * k + i].distance;
        if (!same) {
            if (bad < 2) {
                fprintf(stderr, "    query %zu (k %zu, maxd %g, threads %d, isa %s): %zu hits, "
                        "reference %zu\n", q, k, maxd, threads, nn_isa_name(idx_get_isa(ix)),
                        nh[q], rn);
                for (size_t i = 0; i < LETHE_MAX(rn, nh[q]) && i < 12; i++)
                    fprintf(stderr, "      %2zu: got %lld %.9g  want %lld %.9g\n", i,
                            i < nh[q] ? (long long)hits[q * k + i].id : -1LL,
                            i < nh[q] ? hits[q * k + i].distance : -1.0,
                            i < rn ? (long long)ref[i].id : -1LL,
                            i < rn ? ref[i].distance : -1.0);
            }
            bad++;
        }
    }
out:
    free(hits);
    free(nh);
    free(ref);
    return bad;
}

static idx *make_index(const char *name, const int64_t *ids, const float *vecs, size_t n,
                       uint64_t gen)
{
    idx *ix = NULL;
    char err[256] = "";
    int rc = idx_open(tmp_path(name), IDX_WRITE | IDX_CREATE | IDX_TRUNCATE, &ix, err,
                      sizeof err);
    if (rc != 0) {
        fprintf(stderr, "    idx_open: %s\n", err);
        return NULL;
    }
    if (n && idx_append(ix, ids, vecs, n, err, sizeof err) != 0) {
        fprintf(stderr, "    idx_append: %s\n", err);
        idx_close(ix);
        return NULL;
    }
    if (idx_commit(ix, gen, err, sizeof err) != 0) {
        fprintf(stderr, "    idx_commit: %s\n", err);
        idx_close(ix);
        return NULL;
    }
    return ix;
}

static const nn_isa all_isas[] = {NN_ISA_SCALAR, NN_ISA_AVX2, NN_ISA_AVX512};

/* Every k, every ISA, 1 and 2 threads, single queries and the batch. */
static void check_all(idx *ix, const float *vecs, const int64_t *ids, size_t n,
                      const float *queries, size_t nq)
{
    const size_t ks[] = {1, 10, 100, n + 7};
    for (size_t ii = 0; ii < LETHE_ARRAY_LEN(all_isas); ii++) {
        if (!idx_isa_supported(all_isas[ii]))
            continue;
        CHECK_EQ_INT(idx_set_isa(ix, all_isas[ii]), 0);
        for (size_t ki = 0; ki < LETHE_ARRAY_LEN(ks); ki++) {
            size_t k = ks[ki];
            CHECK_EQ_INT(check_search(ix, vecs, ids, NULL, n, queries, nq, k, INFINITY, 2), 0);
            if (k <= 10) {
                CHECK_EQ_INT(check_search(ix, vecs, ids, NULL, n, queries, nq, k, INFINITY, 1), 0);
                for (size_t q = 0; q < 3 && q < nq; q++)
                    CHECK_EQ_INT(check_search(ix, vecs, ids, NULL, n, queries + q * IDX_DIM, 1,
                                              k, INFINITY, 0), 0);
            }
        }
    }
}

/* ------------------------------------------------------------------ */
/* Exactness                                                            */
/* ------------------------------------------------------------------ */

static void test_exact_random(void)
{
    const size_t n = 2500, nq = 40;
    float *vecs = malloc(n * IDX_DIM * sizeof *vecs);
    float *queries = malloc(nq * IDX_DIM * sizeof *queries);
    int64_t *ids = malloc(n * sizeof *ids);
    for (size_t i = 0; i < n; i++) {
        rand_desc(vecs + i * IDX_DIM);
        ids[i] = (int64_t)(next_u64() >> 20) - (1LL << 42); /* negative ids too */
    }
    /* Queries: half near stored rows, half anywhere. */
    for (size_t q = 0; q < nq; q++) {
        float *v = queries + q * IDX_DIM;
        if (q % 2 == 0) {
            const float *src = vecs + (next_u64() % n) * IDX_DIM;
            for (int d = 0; d < IDX_DIM; d++)
                v[d] = src[d] + (float)(0.03 * gauss());
        } else {
            rand_desc(v);
        }
    }
    idx *ix = make_index("random.idx", ids, vecs, n, 1);
    CHECK(ix != NULL);
    if (ix) {
        CHECK_EQ_INT(idx_count(ix), n);
        check_all(ix, vecs, ids, n, queries, nq);
        /* Large and far components: clamped codes, huge error bounds. */
        float *odd = malloc(4 * IDX_DIM * sizeof *odd);
        for (int d = 0; d < IDX_DIM; d++) {
            odd[d] = 0.9f;
            odd[IDX_DIM + d] = d % 2 ? -3.0f : 3.0f;
            odd[2 * IDX_DIM + d] = 0;
            odd[3 * IDX_DIM + d] = d == 5 ? 1e30f : 0.01f;
        }
        CHECK_EQ_INT(check_search(ix, vecs, ids, NULL, n, odd, 4, 10, INFINITY, 2), 0);
        free(odd);
    }
    idx_close(ix);
    free(vecs);
    free(queries);
    free(ids);
}

static void test_exact_ties(void)
{
    /* Rows on a sphere of radius 0.4 around q0 (distances equal up to
     * float rounding), exact duplicates under other ids, a tight cluster,
     * and random rows. */
    const size_t n = 3000, nq = 12;
    float *vecs = malloc(n * IDX_DIM * sizeof *vecs);
    float *queries = malloc(nq * IDX_DIM * sizeof *queries);
    int64_t *ids = malloc(n * sizeof *ids);
    float q0[IDX_DIM];
    rand_desc(q0);
    for (size_t i = 0; i < n; i++) {
        float *v = vecs + i * IDX_DIM;
        ids[i] = (int64_t)((i * 7919) % 100003);
        if (i < 1200) {
            double u[IDX_DIM], s = 0;
            for (int d = 0; d < IDX_DIM; d++) {
                u[d] = gauss();
                s += u[d] * u[d];
            }
            s = sqrt(s);
            for (int d = 0; d < IDX_DIM; d++)
                v[d] = (float)(q0[d] + 0.4 * u[d] / s);
        } else if (i < 1800) {
            memcpy(v, vecs + (i - 1200) * IDX_DIM, IDX_DIM * sizeof *v);
        } else if (i < 2400) {
            for (int d = 0; d < IDX_DIM; d++)
                v[d] = q0[d] + (float)(1e-4 * gauss());
        } else {
            rand_desc(v);
        }
    }
    memcpy(queries, q0, sizeof q0);
    for (size_t q = 1; q < nq; q++)
        for (int d = 0; d < IDX_DIM; d++)
            queries[q * IDX_DIM + d] = q0[d] + (float)((q < 6 ? 1e-6 : 0.05) * gauss());
    idx *ix = make_index("ties.idx", ids, vecs, n, 1);
    CHECK(ix != NULL);
    if (ix) {
        check_all(ix, vecs, ids, n, queries, nq);
        /* The sphere: every row within 0.41 of q0, many at equal distance. */
        CHECK_EQ_INT(check_search(ix, vecs, ids, NULL, n, queries, 1, 2000, 0.41f, 2), 0);
    }
    idx_close(ix);
    free(vecs);
    free(queries);
    free(ids);
}

/*
 * Data on which the error bound is tight: the quantisation error lies along
 * the line from the query to the row. Queries and rows are on the code grid
 * (x = c / 256, no error) except along one axis, where rows sit at fine
 * steps around grid points; so d^ - e_x - e_q and d^ + e_x + e_q are the
 * true distance for many rows. A bound that is a little too tight, or a
 * group bound that misses a row, loses rows here.
 */
static void test_exact_tight_bounds(void)
{
    const size_t n = 2048, nq = 16;
    float *vecs = malloc(n * IDX_DIM * sizeof *vecs);
    float *queries = malloc(nq * IDX_DIM * sizeof *queries);
    int64_t *ids = malloc(n * sizeof *ids);
    float base[IDX_DIM];
    for (int d = 0; d < IDX_DIM; d++)
        base[d] = (float)((int)(next_u64() % 161) - 80) / 256.0f;
    for (size_t i = 0; i < n; i++) {
        float *v = vecs + i * IDX_DIM;
        memcpy(v, base, sizeof base);
        int axis = (int)(i % 4);
        /* Fine steps around grid points, on both sides of the base. */
        double t = ((double)(i / 4) - 256.0) / 256.0 * 0.3 + 1e-4 * gauss();
        v[axis] = (float)(base[axis] + t);
        ids[i] = (int64_t)(next_u64() % 5000);
    }
    for (size_t q = 0; q < nq; q++) {
        float *v = queries + q * IDX_DIM;
        memcpy(v, base, sizeof base);
        v[q % 4] = (float)(base[q % 4] + (q < 8 ? 0.0013 * (double)q : 0.1 * gauss()));
    }
    idx *ix = make_index("tight.idx", ids, vecs, n, 1);
    CHECK(ix != NULL);
    if (ix)
        check_all(ix, vecs, ids, n, queries, nq);
    idx_close(ix);
    free(vecs);
    free(queries);
    free(ids);
}

/*
 * Rows and query exactly on the code grid (no quantisation error at all),
 * at integer squared code distances N and N + 1 around 5e6, where the two
 * distances differ by less than a float ulp: they report the same distance
 * and the smaller id must win, although its exact distance is larger.
 */
static void test_exact_float_ties(void)
{
    enum { PAIRS = 24 };
    const size_t n = 2 * PAIRS + 200;
    float *vecs = calloc(n * IDX_DIM, sizeof *vecs);
    int64_t *ids = malloc(n * sizeof *ids);
    float q[IDX_DIM];
    size_t m = 0;
    for (int d = 0; d < IDX_DIM; d++)
        q[d] = -127.0f / 256.0f;
    /* Codes -127 + delta: delta = 200 on dims 2.., (a, b) on dims 0, 1. */
    const double rest = 126.0 * 200.0 * 200.0;
    for (int a = 0; a <= 254 && m < 2 * PAIRS; a += 1)
        for (int b = a; b <= 254 && m < 2 * PAIRS; b++) {
            int s = a * a + b * b;
            /* a2, b2 with a2^2 + b2^2 = s + 1 */
            for (int a2 = 0; a2 <= 254; a2++) {
                int r = s + 1 - a2 * a2;
                if (r < 0)
                    break;
                int b2 = (int)lrint(sqrt((double)r));
                if (b2 > 254 || b2 * b2 != r)
                    continue;
                float da = (float)(sqrt(rest + s) / 256.0), db = (float)(sqrt(rest + s + 1) / 256.0);
                if (da != db)
                    break;
                float *va = vecs + m * IDX_DIM, *vb = va + IDX_DIM;
                for (int d = 0; d < IDX_DIM; d++)
                    va[d] = vb[d] = (-127.0f + 200.0f) / 256.0f;
                va[0] = (float)(-127 + a) / 256.0f;
                va[1] = (float)(-127 + b) / 256.0f;
                vb[0] = (float)(-127 + a2) / 256.0f;
                vb[1] = (float)(-127 + b2) / 256.0f;
                ids[m] = 1000 + (int64_t)m;       /* nearer: the larger id */
                ids[m + 1] = 1000 + (int64_t)m - 1001; /* farther: smaller id */
                m += 2;
                break;
            }
        }
    CHECK(m >= 8);
    /* Other rows on the grid, farther than the first pairs. */
    for (size_t i = m; i < n; i++) {
        for (int d = 0; d < IDX_DIM; d++)
            vecs[i * IDX_DIM + d] = (float)(-127 + 200 + (int)(next_u64() % 55)) / 256.0f;
        ids[i] = 5000 + (int64_t)i;
    }
    idx *ix = make_index("floatties.idx", ids, vecs, n, 1);
    CHECK(ix != NULL);
    if (ix)
        check_all(ix, vecs, ids, n, q, 1);
    idx_close(ix);
    free(vecs);
    free(ids);
}

static void test_empty_and_limits(void)
{
    char err[256];
    idx *ix = make_index("empty.idx", NULL, NULL, 0, 0);
    float q[IDX_DIM];
    idx_hit hits[10];
    size_t nh[1] = {99};
    CHECK(ix != NULL);
    if (!ix)
        return;
    rand_desc(q);
    CHECK_EQ_INT(idx_count(ix), 0);
    CHECK_EQ_INT(idx_search(ix, q, 1, 10, INFINITY, 0, hits, nh, err, sizeof err), 0);
    CHECK_EQ_INT(nh[0], 0);
    /* One row: k > count, max_distance 0 with the row itself, below it, NaN. */
    int64_t id = 42;
    CHECK_EQ_INT(idx_append(ix, &id, q, 1, err, sizeof err), 0);
    CHECK_EQ_INT(idx_search(ix, q, 1, 10, INFINITY, 0, hits, nh, err, sizeof err), 0);
    CHECK_EQ_INT(nh[0], 1);
    CHECK_EQ_INT(hits[0].id, 42);
    CHECK(hits[0].distance == 0.0f);
    CHECK_EQ_INT(idx_search(ix, q, 1, 10, 0.0f, 1, hits, nh, err, sizeof err), 0);
    CHECK_EQ_INT(nh[0], 1);
    CHECK_EQ_INT(idx_search(ix, q, 1, 10, -1.0f, 1, hits, nh, err, sizeof err), 0);
    CHECK_EQ_INT(nh[0], 0);
    CHECK_EQ_INT(idx_search(ix, q, 1, 0, INFINITY, 1, hits, nh, err, sizeof err), 0);
    CHECK_EQ_INT(nh[0], 0);
    CHECK_EQ_INT(idx_search(ix, q, 1, 10, NAN, 1, hits, nh, err, sizeof err), LETHE_ERR_ARG);
    float bad[IDX_DIM];
    memcpy(bad, q, sizeof bad);
    bad[3] = NAN;
    CHECK_EQ_INT(idx_search(ix, bad, 1, 10, INFINITY, 1, hits, nh, err, sizeof err),
                 LETHE_ERR_ARG);
    bad[3] = INFINITY;
    CHECK_EQ_INT(idx_append(ix, &id, bad, 1, err, sizeof err), LETHE_ERR_ARG);
    CHECK(strstr(err, "infinite") != NULL);
    CHECK_EQ_INT(idx_count(ix), 1);
    idx_close(ix);
    idx_close(NULL);
}

static void test_max_distance(void)
{
    const size_t n = 1500, nq = 20;
    float *vecs = malloc(n * IDX_DIM * sizeof *vecs);
    float *queries = malloc(nq * IDX_DIM * sizeof *queries);
    int64_t *ids = malloc(n * sizeof *ids);
    for (size_t i = 0; i < n; i++) {
        const float *src = i >= 50 ? vecs + (i % 50) * IDX_DIM : NULL;
        for (int d = 0; d < IDX_DIM; d++)
            vecs[i * IDX_DIM + d] = src ? src[d] + (float)(0.025 * gauss()) : (float)(0.12 * gauss());
        ids[i] = (int64_t)i + 1;
    }
    for (size_t q = 0; q < nq; q++)
        for (int d = 0; d < IDX_DIM; d++)
            queries[q * IDX_DIM + d] = vecs[(q % 50) * IDX_DIM + d] + (float)(0.025 * gauss());
    idx *ix = make_index("maxd.idx", ids, vecs, n, 1);
    CHECK(ix != NULL);
    const float limits[] = {0.3f, 0.4f, 0.6f, 1.0f};
    for (size_t ii = 0; ix && ii < LETHE_ARRAY_LEN(all_isas); ii++) {
        if (!idx_isa_supported(all_isas[ii]))
            continue;
        idx_set_isa(ix, all_isas[ii]);
        for (size_t li = 0; li < LETHE_ARRAY_LEN(limits); li++) {
            CHECK_EQ_INT(check_search(ix, vecs, ids, NULL, n, queries, nq, 10, limits[li], 2), 0);
            CHECK_EQ_INT(check_search(ix, vecs, ids, NULL, n, queries, nq, 100, limits[li], 1), 0);
        }
    }
    /* A hit's distance may equal max_distance exactly. */
    if (ix) {
        float exact = ref_distance(queries, vecs + 7 * IDX_DIM);
        CHECK_EQ_INT(check_search(ix, vecs, ids, NULL, n, queries, 1, 1500, exact, 2), 0);
    }
    idx_close(ix);
    free(vecs);
    free(queries);
    free(ids);
}

/* Each optimised kernel returns exactly the reference kernel's passes
 * (tolerance 0: they compute the same integers). */
static void test_kernels_match_reference(void)
{
    enum { NG = IDX_BLOCK_GROUPS, NQ = 8, NR = NG * IDX_GROUP_ROWS };
    uint8_t *codes = lethe_malloc_aligned(2 * NG * IDX_GROUP_HALF_BYTES);
    int8_t *qcodes = lethe_malloc_aligned(NQ * IDX_DIM);
    int32_t sq[NR], sqa[NR], qbias[NQ], qbias_a[NQ];
    float gmax[NG], qthr[NQ];
    idx_pass *want = malloc(NR * NQ * sizeof *want);
    idx_pass *got = malloc(NR * NQ * sizeof *got);
    int tested = 0;
    for (int round = 0; round < 6; round++) {
        /* Round 0: extremes (every code at +-127). Codes, sums and biases
         * consistent, as in a real index, so D2a <= D2 holds. */
        for (size_t i = 0; i < 2 * NG * IDX_GROUP_HALF_BYTES; i++)
            codes[i] = round == 0 ? (i % 3 ? 255 : 1) : (uint8_t)(1 + next_u64() % 255);
        for (size_t i = 0; i < NQ * IDX_DIM; i++)
            qcodes[i] = round == 0 ? (i % 2 ? 127 : -127) : (int8_t)((int)(next_u64() % 255) - 127);
        /* Rounds 4, 5: every other row equals query (r / 2) % NQ on dims
         * 64..127, so its distance is its first half's: where the early
         * exit after the first half is decided. */
        for (size_t r = 0; round >= 4 && r < NR; r += 2) {
            uint8_t *gb = codes + NG * IDX_GROUP_HALF_BYTES + (r / 16) * IDX_GROUP_HALF_BYTES +
                          (r % 16) * 4;
            const int8_t *qb = qcodes + ((r / 2) % NQ) * IDX_DIM + IDX_HALF;
            for (unsigned d = 0; d < IDX_HALF; d++)
                gb[(d / 4) * 64 + d % 4] = (uint8_t)(qb[d] + 128);
        }
        for (size_t r = 0; r < NR; r++) {
            const uint8_t *ga = codes + (r / 16) * IDX_GROUP_HALF_BYTES + (r % 16) * 4;
            const uint8_t *gb = ga + NG * IDX_GROUP_HALF_BYTES;
            sq[r] = sqa[r] = 0;
            for (unsigned d = 0; d < IDX_HALF; d++) {
                int ca = ga[(d / 4) * 64 + d % 4] - 128, cb = gb[(d / 4) * 64 + d % 4] - 128;
                sqa[r] += ca * ca;
                sq[r] += ca * ca + cb * cb;
            }
        }
        for (size_t i = 0; i < NG; i++)
            gmax[i] = (float)(uniform() * 0.02);
        for (size_t q = 0; q < NQ; q++) {
            int32_t s = 0, sa = 0, ss = 0, ssa = 0;
            for (unsigned d = 0; d < IDX_DIM; d++) {
                int c = qcodes[q * IDX_DIM + d];
                s += c;
                ss += c * c;
                if (d < IDX_HALF) {
                    sa += c;
                    ssa += c * c;
                }
            }
            qbias[q] = ss + 256 * s;
            qbias_a[q] = ssa + 256 * sa;
            /* round 1: everything passes; else thresholds that cut, some
             * at the typical distance, some where only a few rows pass */
            double typical = sqrt(128.0 * 2.0 * 127.0 * 127.0 / 3.0);
            qthr[q] = round == 1 ? INFINITY : (float)(typical * (0.6 + 0.5 * uniform()));
        }
        if (round >= 4) {
            /* No group bound, and each query's threshold at the median
             * distance of the rows that equal it on dims 64..127. */
            for (size_t i = 0; i < NG; i++)
                gmax[i] = 0;
            for (size_t q = 0; q < NQ; q++) {
                int32_t d2s[NR];
                size_t m = 0;
                for (size_t r = 0; r < NR; r += 2) {
                    if ((r / 2) % NQ != q)
                        continue;
                    const uint8_t *ga = codes + (r / 16) * IDX_GROUP_HALF_BYTES + (r % 16) * 4;
                    int32_t d2 = 0;
                    for (unsigned d = 0; d < IDX_HALF; d++) {
                        int diff = (ga[(d / 4) * 64 + d % 4] - 128) - qcodes[q * IDX_DIM + d];
                        d2 += diff * diff;
                    }
                    d2s[m++] = d2;
                }
                int32_t med = d2s[0];
                for (size_t i = 0; i < m; i++) { /* a middle value, no sort needed */
                    size_t below_i = 0;
                    for (size_t j = 0; j < m; j++)
                        below_i += d2s[j] < d2s[i];
                    if (below_i == m / 2)
                        med = d2s[i];
                }
                float t = sqrtf((float)med);
                while (t * t < (float)med)
                    t = nextafterf(t, INFINITY);
                qthr[q] = t;
            }
        }
        for (size_t nq = 1; nq <= NQ; nq++) {
            idx_scan_args a = {codes, codes + NG * IDX_GROUP_HALF_BYTES, sq, sqa, gmax, NG, 32,
                               qcodes, qbias, qbias_a, qthr, nq, want, NULL, NULL};
            size_t nw = idx_kernel_ref.scan(&a);
            for (size_t ii = 1; ii < LETHE_ARRAY_LEN(all_isas); ii++) {
                if (!idx_isa_supported(all_isas[ii]))
                    continue;
                const idx_kernel *k = idx_kernel_for(all_isas[ii]);
                size_t ng = 0;
                for (size_t q0 = 0; q0 < nq; q0 += k->qtile) {
                    idx_scan_args b = a;
                    b.nq = LETHE_MIN(k->qtile, nq - q0);
                    b.qcodes = qcodes + q0 * IDX_DIM;
                    b.qbias = qbias + q0;
                    b.qbias_a = qbias_a + q0;
                    b.qthr = qthr + q0;
                    b.out = got + ng;
                    b.pf_codes = codes; /* anything readable */
                    b.pf_sq = sqa;
                    size_t m = k->scan(&b);
                    for (size_t i = 0; i < m; i++)
                        got[ng + i].q = (uint16_t)(got[ng + i].q + q0);
                    ng += m;
                }
                /* Same passes (the order may differ): compare as sets. */
                int same = ng == nw;
                for (size_t i = 0; same && i < nw; i++) {
                    int found = 0;
                    for (size_t j = 0; j < ng && !found; j++)
                        found = got[j].q == want[i].q && got[j].row == want[i].row &&
                                got[j].d2 == want[i].d2;
                    same = found;
                }
                if (!same)
                    fprintf(stderr, "    %s, round %d, nq %zu: %zu passes, reference %zu\n",
                            nn_isa_name(all_isas[ii]), round, nq, ng, nw);
                CHECK(same);
                tested++;
            }
            if (round == 1)
                CHECK_EQ_INT(nw, NR * nq);
            if (round >= 2)
                CHECK(nw < NR * nq); /* the threshold cut some */
        }
    }
    lethe_free_aligned(codes);
    lethe_free_aligned(qcodes);
    free(want);
    free(got);
    if (!tested)
        SKIP("no optimised kernel set on this CPU");
}

/* ------------------------------------------------------------------ */
/* The file                                                             */
/* ------------------------------------------------------------------ */

typedef struct collect {
    int64_t *ids;
    float *vecs;
    size_t n, cap;
} collect;

static int collect_row(void *ctx, int64_t id, const float *vec)
{
    collect *c = ctx;
    if (c->n == c->cap)
        return 1;
    c->ids[c->n] = id;
    memcpy(c->vecs + c->n * IDX_DIM, vec, IDX_DIM * sizeof *vec);
    c->n++;
    return 0;
}

/* Whether the index holds exactly the alive rows (as a multiset of (id, vec)). */
static int holds_exactly(idx *ix, const int64_t *ids, const float *vecs, const uint8_t *alive,
                         size_t n)
{
    collect c = {malloc((n + 1) * sizeof(int64_t)), malloc((n + 1) * IDX_DIM * sizeof(float)),
                 0, n + 1};
    int ok = idx_foreach(ix, collect_row, &c, NULL, 0) == 0;
    size_t want = 0;
    for (size_t i = 0; i < n; i++)
        want += alive[i] != 0;
    ok = ok && c.n == want && idx_count(ix) == want;
    uint8_t *used = calloc(c.n + 1, 1);
    for (size_t i = 0; ok && i < n; i++) {
        if (!alive[i])
            continue;
        int found = 0;
        for (size_t j = 0; j < c.n && !found; j++)
            if (!used[j] && c.ids[j] == ids[i] &&
                !memcmp(c.vecs + j * IDX_DIM, vecs + i * IDX_DIM, IDX_DIM * sizeof(float))) {
                used[j] = 1;
                found = 1;
            }
        ok = found;
    }
    free(used);
    free(c.ids);
    free(c.vecs);
    return ok;
}

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static void test_roundtrip(void)
{
    const size_t n = 700;
    char err[256] = "";
    float *vecs = malloc(n * IDX_DIM * sizeof *vecs);
    int64_t *ids = malloc(n * sizeof *ids);
    uint8_t *alive = calloc(n, 1);
    float queries[5 * IDX_DIM];
    size_t removed = 99;
    const char *path = tmp_path("roundtrip.idx");
    idx *ix = NULL;

    for (size_t i = 0; i < n; i++) {
        rand_desc(vecs + i * IDX_DIM);
        ids[i] = 1000 + (int64_t)i;
    }
    for (int q = 0; q < 5; q++)
        rand_desc(queries + q * IDX_DIM);
    CHECK_EQ_INT(idx_open(path, IDX_WRITE, &ix, err, sizeof err), LETHE_ERR_NOT_FOUND);
    CHECK(strstr(err, "roundtrip.idx") != NULL);
    CHECK_EQ_INT(idx_open(path, IDX_WRITE | IDX_CREATE, &ix, err, sizeof err), 0);
    if (!ix)
        goto out;
    CHECK_EQ_INT(file_size(path), IDX_HEADER_BYTES);
    /* Appends in three calls, across block boundaries. */
    CHECK_EQ_INT(idx_append(ix, ids, vecs, 100, err, sizeof err), 0);
    CHECK_EQ_INT(idx_append(ix, ids + 100, vecs + 100 * IDX_DIM, 200, err, sizeof err), 0);
    CHECK_EQ_INT(idx_append(ix, ids + 300, vecs + 300 * IDX_DIM, 400, err, sizeof err), 0);
    memset(alive, 1, n);
    CHECK(holds_exactly(ix, ids, vecs, alive, n));
    CHECK_EQ_INT(idx_commit(ix, 5, err, sizeof err), 0);
    CHECK_EQ_INT(idx_generation(ix), 5);
    CHECK_EQ_INT(file_size(path), IDX_HEADER_BYTES + 3 * IDX_BLOCK_BYTES);
    idx_close(ix);
    ix = NULL;

    /* Reopen read-only: same rows, same generation, same answers. */
    CHECK_EQ_INT(idx_open(path, IDX_READ, &ix, err, sizeof err), 0);
    if (!ix)
        goto out;
    CHECK_EQ_INT(idx_count(ix), n);
    CHECK_EQ_INT(idx_generation(ix), 5);
    CHECK(holds_exactly(ix, ids, vecs, alive, n));
    CHECK_EQ_INT(check_search(ix, vecs, ids, alive, n, queries, 5, 10, INFINITY, 2), 0);
    CHECK_EQ_INT(idx_append(ix, ids, vecs, 1, err, sizeof err), LETHE_ERR_ARG);
    idx_close(ix);
    ix = NULL;

    /* Remove: absent ids, the last row, a whole block's worth, duplicates. */
    CHECK_EQ_INT(idx_open(path, IDX_WRITE, &ix, err, sizeof err), 0);
    if (!ix)
        goto out;
    int64_t absent[3] = {1, 2, 999999};
    CHECK_EQ_INT(idx_remove(ix, absent, 3, &removed, err, sizeof err), 0);
    CHECK_EQ_INT(removed, 0);
    CHECK_EQ_INT(idx_count(ix), n);
    int64_t *gone = malloc(n * sizeof *gone);
    size_t ng = 0;
    gone[ng++] = ids[n - 1];
    gone[ng++] = ids[0];
    gone[ng++] = ids[0]; /* twice in the request */
    for (size_t i = 450; i < 699; i++)
        gone[ng++] = ids[i];
    for (size_t i = 1; i < 400; i += 3)
        gone[ng++] = ids[i];
    gone[ng++] = 424242; /* absent */
    CHECK_EQ_INT(idx_remove(ix, gone, ng, &removed, err, sizeof err), 0);
    for (size_t i = 0; i < ng; i++)
        for (size_t j = 0; j < n; j++)
            if (ids[j] == gone[i])
                alive[j] = 0;
    size_t left = 0;
    for (size_t i = 0; i < n; i++)
        left += alive[i];
    CHECK_EQ_INT(removed, n - left);
    CHECK_EQ_INT(idx_count(ix), left);
    CHECK(holds_exactly(ix, ids, vecs, alive, n));
    CHECK_EQ_INT(check_search(ix, vecs, ids, alive, n, queries, 5, 10, INFINITY, 2), 0);
    CHECK_EQ_INT(idx_commit(ix, 6, err, sizeof err), 0);
    CHECK_EQ_INT(file_size(path), IDX_HEADER_BYTES + (long)idx_blocks_for(left) * IDX_BLOCK_BYTES);
    idx_close(ix);
    ix = NULL;
    CHECK_EQ_INT(idx_open(path, IDX_READ, &ix, err, sizeof err), 0);
    if (!ix)
        goto out;
    CHECK_EQ_INT(idx_generation(ix), 6);
    CHECK(holds_exactly(ix, ids, vecs, alive, n));
    CHECK_EQ_INT(check_search(ix, vecs, ids, alive, n, queries, 5, 10, INFINITY, 1), 0);
    idx_close(ix);
    ix = NULL;

    /* Clear: nothing but the header is left. */
    CHECK_EQ_INT(idx_open(path, IDX_WRITE, &ix, err, sizeof err), 0);
    if (!ix)
        goto out;
    CHECK_EQ_INT(idx_clear(ix, err, sizeof err), 0);
    CHECK_EQ_INT(idx_count(ix), 0);
    CHECK_EQ_INT(file_size(path), IDX_HEADER_BYTES);
    CHECK_EQ_INT(idx_commit(ix, 7, err, sizeof err), 0);
    memset(alive, 0, n);
    CHECK(holds_exactly(ix, ids, vecs, alive, n));
    /* Appending after a clear works as on a new file. */
    memset(alive, 1, 10);
    CHECK_EQ_INT(idx_append(ix, ids, vecs, 10, err, sizeof err), 0);
    CHECK(holds_exactly(ix, ids, vecs, alive, 10));
    CHECK_EQ_INT(check_search(ix, vecs, ids, alive, 10, queries, 5, 3, INFINITY, 2), 0);
    free(gone);
out:
    idx_close(ix);
    free(vecs);
    free(ids);
    free(alive);
}

static uint64_t fnv1a64(const void *data, size_t n)
{
    const uint8_t *p = data;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static void copy_file(const char *from, const char *to)
{
    uint8_t *buf;
    size_t len;
    if (lethe_read_file(from, 1 << 26, &buf, &len, NULL, 0) != 0)
        return;
    FILE *f = fopen(to, "wb");
    if (f) {
        fwrite(buf, 1, len, f);
        fclose(f);
    }
    lethe_free(buf);
}

static void patch(const char *path, long off, const void *bytes, size_t n)
{
    int fd = open(path, O_WRONLY);
    if (fd < 0 || pwrite(fd, bytes, n, off) != (ssize_t)n)
        fprintf(stderr, "    patch %s failed\n", path);
    if (fd >= 0)
        close(fd);
}

/* Rewrite the header with field changes and a valid checksum. */
static void patch_header(const char *path, void (*edit)(idx_header *))
{
    idx_header h;
    int fd = open(path, O_RDWR);
    if (fd < 0 || pread(fd, &h, sizeof h, 0) != (ssize_t)sizeof h) {
        fprintf(stderr, "    patch_header %s failed\n", path);
        if (fd >= 0)
            close(fd);
        return;
    }
    edit(&h);
    h.checksum = fnv1a64(&h, offsetof(idx_header, checksum));
    if (pwrite(fd, &h, sizeof h, 0) != (ssize_t)sizeof h)
        fprintf(stderr, "    patch_header write failed\n");
    close(fd);
}

static void edit_dim(idx_header *h) { h->dim = 512; }
static void edit_version(idx_header *h) { h->version = 2; }
static void edit_count(idx_header *h) { h->count += 300; }

/* Open must fail with status and a message naming the file and containing what. */
static void expect_open_error(const char *path, int flags, int status, const char *what)
{
    char err[256] = "";
    idx *ix = NULL;
    int rc = idx_open(path, flags, &ix, err, sizeof err);
    CHECK_EQ_INT(rc, status);
    CHECK(ix == NULL);
    if (!strstr(err, what) || !strstr(err, path))
        fprintf(stderr, "    message \"%s\" lacks \"%s\" or the path\n", err, what);
    CHECK(strstr(err, what) != NULL);
    CHECK(strstr(err, path) != NULL);
    idx_close(ix);
}

static void test_bad_files(void)
{
    const size_t n = 300;
    float *vecs = malloc(n * IDX_DIM * sizeof *vecs);
    int64_t *ids = malloc(n * sizeof *ids);
    char err[256];
    for (size_t i = 0; i < n; i++) {
        rand_desc(vecs + i * IDX_DIM);
        ids[i] = (int64_t)i;
    }
    idx *ix = make_index("good.idx", ids, vecs, n, 3);
    idx_close(ix);
    const char *good = tmp_path("good.idx"), *bad = tmp_path("bad.idx");

    copy_file(good, bad);
    patch(bad, 0, "NOTANIDX", 8);
    expect_open_error(bad, IDX_READ, LETHE_ERR_FORMAT, "bad magic");
    expect_open_error(bad, IDX_WRITE, LETHE_ERR_FORMAT, "bad magic");

    copy_file(good, bad);
    patch_header(bad, edit_version);
    expect_open_error(bad, IDX_READ, LETHE_ERR_UNSUPPORTED, "unsupported version 2");

    copy_file(good, bad);
    patch_header(bad, edit_dim);
    expect_open_error(bad, IDX_READ, LETHE_ERR_FORMAT, "wrong dim 512");

    /* A torn header: the count changed, the checksum did not. */
    copy_file(good, bad);
    uint64_t big = 12345;
    patch(bad, offsetof(idx_header, count), &big, 8);
    expect_open_error(bad, IDX_READ, LETHE_ERR_FORMAT, "checksum");
    expect_open_error(bad, IDX_WRITE, LETHE_ERR_FORMAT, "checksum");

    /* Rows cut off, and a header that claims more rows than there are. */
    copy_file(good, bad);
    CHECK_EQ_INT(truncate(bad, IDX_HEADER_BYTES + IDX_BLOCK_BYTES + 100), 0);
    expect_open_error(bad, IDX_READ, LETHE_ERR_FORMAT, "size mismatch");
    copy_file(good, bad);
    patch_header(bad, edit_count);
    expect_open_error(bad, IDX_WRITE, LETHE_ERR_FORMAT, "size mismatch");

    /* Empty and truncated headers; a missing file. */
    CHECK_EQ_INT(truncate(bad, 0), 0);
    expect_open_error(bad, IDX_READ, LETHE_ERR_FORMAT, "empty");
    copy_file(good, bad);
    CHECK_EQ_INT(truncate(bad, 40), 0);
    expect_open_error(bad, IDX_READ, LETHE_ERR_FORMAT, "truncated header");
    expect_open_error(tmp_path("missing.idx"), IDX_READ, LETHE_ERR_NOT_FOUND, "missing.idx");

    /* IDX_TRUNCATE recovers any of them: empty, wiped. */
    copy_file(good, bad);
    patch(bad, 0, "NOTANIDX", 8);
    ix = NULL;
    CHECK_EQ_INT(idx_open(bad, IDX_WRITE | IDX_TRUNCATE, &ix, err, sizeof err), 0);
    CHECK_EQ_INT(idx_count(ix), 0);
    CHECK_EQ_INT(file_size(bad), IDX_HEADER_BYTES);
    idx_close(ix);
    ix = NULL;
    CHECK_EQ_INT(idx_open(bad, 8, &ix, err, sizeof err), LETHE_ERR_ARG);
    CHECK_EQ_INT(idx_open(bad, IDX_CREATE, &ix, err, sizeof err), LETHE_ERR_ARG);
    free(vecs);
    free(ids);
}

static void test_uncommitted_rows_ignored(void)
{
    const size_t n = 500;
    char err[256];
    float *vecs = malloc(n * IDX_DIM * sizeof *vecs);
    int64_t *ids = malloc(n * sizeof *ids);
    uint8_t *alive = calloc(n, 1);
    for (size_t i = 0; i < n; i++) {
        rand_desc(vecs + i * IDX_DIM);
        ids[i] = (int64_t)i + 1;
    }
    const char *path = tmp_path("uncommitted.idx");
    idx *w = make_index("uncommitted.idx", ids, vecs, 200, 9);
    CHECK(w != NULL);
    if (!w)
        goto out;
    memset(alive, 1, 200);
    /* 300 more rows, never committed; the writer sees them, others do not. */
    CHECK_EQ_INT(idx_append(w, ids + 200, vecs + 200 * IDX_DIM, 300, err, sizeof err), 0);
    CHECK_EQ_INT(idx_count(w), 500);
    idx *r = NULL;
    CHECK_EQ_INT(idx_open(path, IDX_READ, &r, err, sizeof err), 0);
    if (r) {
        CHECK_EQ_INT(idx_count(r), 200);
        CHECK(holds_exactly(r, ids, vecs, alive, n));
        CHECK_EQ_INT(check_search(r, vecs, ids, alive, n, vecs + 450 * IDX_DIM, 5, 10,
                                  INFINITY, 2), 0);
    }
    idx_close(r);
    /* A second writer is refused while the first is open. */
    idx *w2 = NULL;
    CHECK_EQ_INT(idx_open(path, IDX_WRITE, &w2, err, sizeof err), LETHE_ERR_IO);
    CHECK(strstr(err, "already open for writing") != NULL);
    idx_close(w2);
    idx_close(w); /* "crash": no commit */
    w = NULL;
    /* The next writer drops them, leaving no trace in the file. */
    CHECK_EQ_INT(idx_open(path, IDX_WRITE, &w, err, sizeof err), 0);
    CHECK_EQ_INT(idx_count(w), 200);
    CHECK_EQ_INT(idx_generation(w), 9);
    CHECK_EQ_INT(file_size(path), IDX_HEADER_BYTES + IDX_BLOCK_BYTES);
    CHECK(holds_exactly(w, ids, vecs, alive, n));
    uint8_t *file;
    size_t len;
    if (lethe_read_file(path, 1 << 26, &file, &len, NULL, 0) == 0) {
        int found = 0;
        for (size_t i = 200; i < n; i++)
            found += memmem(file, len, vecs + i * IDX_DIM, IDX_DIM * sizeof(float)) != NULL;
        CHECK_EQ_INT(found, 0);
        lethe_free(file);
    }
out:
    idx_close(w);
    free(vecs);
    free(ids);
    free(alive);
}

/* The stored bytes of a row's code (code + 128), de-interleaved from a file. */
static void slot_code(const uint8_t *file, uint64_t row, uint8_t *code)
{
    const uint8_t *blk = file + IDX_HEADER_BYTES + (row / IDX_BLOCK_ROWS) * IDX_BLOCK_BYTES;
    unsigned s = (unsigned)(row % IDX_BLOCK_ROWS);
    for (unsigned d = 0; d < IDX_DIM; d++)
        code[d] = blk[(d < IDX_HALF ? IDX_OFF_CODES_A : IDX_OFF_CODES_B) +
                      (s / 16) * IDX_GROUP_HALF_BYTES + ((d % IDX_HALF) / 4) * 64 +
                      (s % 16) * 4 + d % 4];
}

static void test_no_residue(void)
{
    const size_t n = 1000;
    char err[256];
    float *vecs = malloc(n * IDX_DIM * sizeof *vecs);
    int64_t *ids = malloc(n * sizeof *ids);
    uint8_t *gone = calloc(n, 1);
    int64_t *rm = malloc(n * sizeof *rm);
    size_t nrm = 0, removed = 0;
    for (size_t i = 0; i < n; i++) {
        rand_desc(vecs + i * IDX_DIM);
        ids[i] = (int64_t)i * 3 + 1;
    }
    const char *path = tmp_path("residue.idx");
    idx *ix = make_index("residue.idx", ids, vecs, n, 1);
    CHECK(ix != NULL);
    if (!ix)
        goto out;
    /* The last row, rows in the last block (so it is truncated away), and
     * a random third elsewhere. */
    for (size_t i = 0; i < n; i++)
        if (i == n - 1 || i >= 760 || next_u64() % 3 == 0) {
            gone[i] = 1;
            rm[nrm++] = ids[i];
        }
    CHECK_EQ_INT(idx_remove(ix, rm, nrm, &removed, err, sizeof err), 0);
    CHECK_EQ_INT(removed, nrm);
    CHECK_EQ_INT(idx_commit(ix, 2, err, sizeof err), 0);
    uint64_t left = n - nrm;
    uint8_t *file;
    size_t len;
    CHECK_EQ_INT(lethe_read_file(path, 1 << 26, &file, &len, err, sizeof err), 0);
    CHECK_EQ_INT(len, IDX_HEADER_BYTES + idx_blocks_for(left) * IDX_BLOCK_BYTES);
    int fp32_found = 0, code_found = 0, norms_stale = 0, tail_dirty = 0;
    for (size_t i = 0; i < n; i++) {
        if (!gone[i])
            continue;
        const float *v = vecs + i * IDX_DIM;
        /* fp32: the whole vector, and each of its 32-byte pieces. */
        for (size_t off = 0; off < IDX_DIM * 4; off += 32)
            fp32_found += memmem(file, len, (const uint8_t *)v + off,
                                 off ? 32 : IDX_DIM * 4) != NULL;
    }
    /* Codes: no slot holds a removed row's code; norms: every slot's sq
     * and err are those of its own vector (none left from a removed row);
     * past the count, every byte is zero. */
    for (uint64_t r = 0; r < idx_blocks_for(left) * IDX_BLOCK_ROWS; r++) {
        const uint8_t *blk = file + IDX_HEADER_BYTES + (r / IDX_BLOCK_ROWS) * IDX_BLOCK_BYTES;
        unsigned s = (unsigned)(r % IDX_BLOCK_ROWS);
        uint8_t code[IDX_DIM];
        int32_t sq, want_sq;
        float e, want_e;
        int8_t c8[IDX_DIM];
        slot_code(file, r, code);
        int32_t sqa;
        memcpy(&sq, blk + IDX_OFF_SQ + s * 4, 4);
        memcpy(&sqa, blk + IDX_OFF_SQA + s * 4, 4);
        memcpy(&e, blk + IDX_OFF_ERR + s * 4, 4);
        if (r >= left) {
            float vec[IDX_DIM];
            memcpy(vec, blk + IDX_OFF_VECS + s * IDX_DIM * 4, sizeof vec);
            int64_t id;
            memcpy(&id, blk + IDX_OFF_IDS + s * 8, 8);
            uint8_t zero[IDX_DIM] = {0};
            float zf[IDX_DIM] = {0};
            tail_dirty += memcmp(code, zero, IDX_DIM) || sq || sqa || e != 0 || id ||
                          blk[IDX_OFF_LIVE + s] || memcmp(vec, zf, sizeof vec);
            continue;
        }
        for (size_t i = 0; i < n; i++) {
            if (!gone[i])
                continue;
            idx_quantise(vecs + i * IDX_DIM, c8, &want_sq, &want_e);
            uint8_t stored[IDX_DIM];
            for (int d = 0; d < IDX_DIM; d++)
                stored[d] = (uint8_t)(c8[d] + 128);
            code_found += memcmp(stored, code, IDX_DIM) == 0;
        }
        idx_quantise((const float *)(blk + IDX_OFF_VECS + s * IDX_DIM * 4), c8, &want_sq,
                     &want_e);
        int32_t want_sqa = 0;
        for (int d = 0; d < IDX_HALF; d++)
            want_sqa += c8[d] * c8[d];
        norms_stale += sq != want_sq || sqa != want_sqa || e != want_e;
    }
    /* Each group's bound is the largest error of its rows. */
    int gmax_wrong = 0;
    for (uint64_t g = 0; g < idx_blocks_for(left) * IDX_BLOCK_GROUPS; g++) {
        const uint8_t *blk = file + IDX_HEADER_BYTES + (g / IDX_BLOCK_GROUPS) * IDX_BLOCK_BYTES;
        unsigned gi = (unsigned)(g % IDX_BLOCK_GROUPS);
        float gm, m = 0, e;
        memcpy(&gm, blk + IDX_OFF_GMAX + gi * 4, 4);
        for (unsigned s = gi * 16; s < gi * 16 + 16; s++) {
            memcpy(&e, blk + IDX_OFF_ERR + s * 4, 4);
            if (blk[IDX_OFF_LIVE + s] && e > m)
                m = e;
        }
        gmax_wrong += gm != m;
    }
    CHECK_EQ_INT(gmax_wrong, 0);
    CHECK_EQ_INT(fp32_found, 0);
    CHECK_EQ_INT(code_found, 0);
    CHECK_EQ_INT(norms_stale, 0);
    CHECK_EQ_INT(tail_dirty, 0);
    lethe_free(file);
    /* The rows kept are all there, and searchable. */
    uint8_t *alive = malloc(n);
    for (size_t i = 0; i < n; i++)
        alive[i] = !gone[i];
    CHECK(holds_exactly(ix, ids, vecs, alive, n));
    CHECK_EQ_INT(check_search(ix, vecs, ids, alive, n, vecs, 8, 10, INFINITY, 2), 0);
    free(alive);
    /* Clear: nothing but the header. */
    CHECK_EQ_INT(idx_clear(ix, err, sizeof err), 0);
    CHECK_EQ_INT(file_size(path), IDX_HEADER_BYTES);
out:
    idx_close(ix);
    free(vecs);
    free(ids);
    free(gone);
    free(rm);
}

/* ------------------------------------------------------------------ */
/* Concurrency                                                          */
/* ------------------------------------------------------------------ */

/* Row `id` of the universe has a vector computed from its id alone, so a
 * reader can tell a real row from garbage by its id and distance. */
#define UNIVERSE 1200
static void universe_vec(int64_t id, float *v)
{
    uint64_t s = (uint64_t)id * 0x9e3779b97f4a7c15ull + 12345;
    for (int d = 0; d < IDX_DIM; d++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        v[d] = (float)((double)(s >> 40) / (double)(1 << 24) - 0.5) * 0.5f;
    }
}

static atomic_int stop_readers;

typedef struct reader_arg {
    const char *path;
    long searches;
    long bad;
    long hits;
    char err[256];
} reader_arg;

/* Search until told to stop; count hits that are not real rows. */
static void reader_loop(reader_arg *ra, int (*keep_going)(void))
{
    idx *ix = NULL;
    float q[4 * IDX_DIM], v[IDX_DIM];
    idx_hit hits[4 * 20];
    size_t nh[4];
    if (idx_open(ra->path, IDX_READ, &ix, ra->err, sizeof ra->err) != 0) {
        ra->bad++;
        return;
    }
    uint64_t s = 77;
    while (keep_going()) {
        for (int i = 0; i < 4 * IDX_DIM; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            q[i] = (float)((double)(s >> 40) / (double)(1 << 24) - 0.5) * 0.5f;
        }
        size_t nq = ra->searches % 2 ? 4 : 1;
        if (idx_search(ix, q, nq, 20, INFINITY, ra->searches % 3 ? 1 : 2, hits, nh, ra->err,
                       sizeof ra->err) != 0) {
            ra->bad++;
            break;
        }
        for (size_t j = 0; j < nq; j++)
            for (size_t i = 0; i < nh[j]; i++) {
                const idx_hit *h = &hits[j * 20 + i];
                ra->hits++;
                if (h->id < 1 || h->id > UNIVERSE) {
                    ra->bad++;
                    continue;
                }
                universe_vec(h->id, v);
                if (idx_exact_distance(q + j * IDX_DIM, v) != h->distance)
                    ra->bad++;
                if (i > 0 && h->distance < hits[j * 20 + i - 1].distance)
                    ra->bad++;
            }
        ra->searches++;
    }
    idx_close(ix);
}

static int thread_keep_going(void) { return !atomic_load(&stop_readers); }

static void *reader_thread(void *arg)
{
    reader_loop(arg, thread_keep_going);
    return NULL;
}

static time_t child_deadline;
static int child_keep_going(void) { return time(NULL) < child_deadline; }

static void test_concurrent_readers(void)
{
    char err[256] = "";
    const char *path = tmp_path("concurrent.idx");
    int64_t ids[UNIVERSE];
    float *vecs = malloc(UNIVERSE * IDX_DIM * sizeof *vecs);
    for (int i = 0; i < UNIVERSE; i++) {
        ids[i] = i + 1;
        universe_vec(ids[i], vecs + i * IDX_DIM);
    }
    idx *w = make_index("concurrent.idx", ids, vecs, 600, 1);
    CHECK(w != NULL);
    if (!w) {
        free(vecs);
        return;
    }
    /* A reader process (forked before any thread starts) and a reader thread. */
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        reader_arg ra = {.path = path};
        child_deadline = time(NULL) + 2;
        reader_loop(&ra, child_keep_going);
        _exit(ra.bad ? 1 : ra.searches > 0 ? 0 : 2);
    }
    reader_arg ta = {.path = path};
    pthread_t th;
    atomic_store(&stop_readers, 0);
    pthread_create(&th, NULL, reader_thread, &ta);

    /* The writer: remove and append random sets, commit, for two seconds. */
    uint8_t present[UNIVERSE] = {0};
    memset(present, 1, 600);
    int64_t batch[200];
    float bvecs[200 * IDX_DIM];
    long rounds = 0;
    int ok = 1;
    time_t end = time(NULL) + 2;
    while (time(NULL) < end && ok) {
        size_t nb = 0;
        for (int i = 0; i < UNIVERSE && nb < 150; i++)
            if (present[i] && next_u64() % 4 == 0) {
                batch[nb++] = ids[i];
                present[i] = 0;
            }
        size_t removed;
        ok = idx_remove(w, batch, nb, &removed, err, sizeof err) == 0 && removed == nb;
        nb = 0;
        for (int i = 0; i < UNIVERSE && nb < 200; i++)
            if (!present[i] && next_u64() % 3 == 0) {
                batch[nb] = ids[i];
                memcpy(bvecs + nb * IDX_DIM, vecs + i * IDX_DIM, IDX_DIM * sizeof(float));
                present[i] = 1;
                nb++;
            }
        ok = ok && idx_append(w, batch, bvecs, nb, err, sizeof err) == 0;
        if (rounds % 2 == 0)
            ok = ok && idx_commit(w, (uint64_t)rounds + 2, err, sizeof err) == 0;
        rounds++;
    }
    if (!ok)
        fprintf(stderr, "    writer: %s\n", err);
    CHECK(ok);
    atomic_store(&stop_readers, 1);
    pthread_join(th, NULL);
    int status = 0;
    waitpid(pid, &status, 0);
    fprintf(stderr, "    %ld writer rounds; reader thread %ld searches (%ld hits), "
            "process exit %d\n", rounds, ta.searches, ta.hits,
            WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    if (ta.bad)
        fprintf(stderr, "    reader thread: %ld bad (%s)\n", ta.bad, ta.err);
    CHECK_EQ_INT(ta.bad, 0);
    CHECK(ta.searches > 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(holds_exactly(w, ids, vecs, present, UNIVERSE));
    idx_close(w);
    free(vecs);
}

/* Several threads searching through one handle at once. */
typedef struct shared_arg {
    idx *ix;
    const float *vecs;
    const int64_t *ids;
    size_t n;
    int bad;
} shared_arg;

static void *shared_searcher(void *arg)
{
    shared_arg *a = arg;
    for (int i = 0; i < 10; i++)
        a->bad += check_search(a->ix, a->vecs, a->ids, NULL, a->n, a->vecs + i * IDX_DIM, 2, 5,
                               INFINITY, 2);
    return NULL;
}

static void test_shared_handle(void)
{
    const size_t n = 1000;
    float *vecs = malloc(n * IDX_DIM * sizeof *vecs);
    int64_t *ids = malloc(n * sizeof *ids);
    for (size_t i = 0; i < n; i++) {
        rand_desc(vecs + i * IDX_DIM);
        ids[i] = (int64_t)i;
    }
    idx *ix = make_index("shared.idx", ids, vecs, n, 1);
    CHECK(ix != NULL);
    shared_arg a[3];
    pthread_t th[3];
    for (int t = 0; ix && t < 3; t++) {
        a[t] = (shared_arg){ix, vecs, ids, n, 0};
        pthread_create(&th[t], NULL, shared_searcher, &a[t]);
    }
    for (int t = 0; ix && t < 3; t++) {
        pthread_join(th[t], NULL);
        CHECK_EQ_INT(a[t].bad, 0);
    }
    idx_close(ix);
    free(vecs);
    free(ids);
}

/* Every allocation failing in turn: a clean error, never a crash or leak. */
static void test_out_of_memory(void)
{
    const size_t n = 300;
    float *vecs = malloc(n * IDX_DIM * sizeof *vecs);
    int64_t *ids = malloc(n * sizeof *ids);
    char err[256];
    for (size_t i = 0; i < n; i++) {
        rand_desc(vecs + i * IDX_DIM);
        ids[i] = (int64_t)i;
    }
    const char *path = tmp_path("oom.idx");
    int nomem = 0, ok = 0;
    for (long fail = 0; fail < 200; fail++) {
        idx *ix = NULL;
        idx_hit hits[3 * 5];
        size_t nh[3];
        size_t removed;
        int rc;
        lethe_alloc_fail_after(fail);
        rc = idx_open(path, IDX_WRITE | IDX_CREATE | IDX_TRUNCATE, &ix, err, sizeof err);
        if (rc == 0)
            rc = idx_append(ix, ids, vecs, n, err, sizeof err);
        if (rc == 0)
            rc = idx_search(ix, vecs, 3, 5, INFINITY, 1, hits, nh, err, sizeof err);
        if (rc == 0)
            rc = idx_remove(ix, ids, 10, &removed, err, sizeof err);
        if (rc == 0)
            rc = idx_commit(ix, 1, err, sizeof err);
        lethe_alloc_fail_after(-1);
        idx_close(ix);
        CHECK(rc == 0 || rc == LETHE_ERR_NOMEM);
        if (rc == LETHE_ERR_NOMEM)
            nomem++;
        else {
            ok++;
            break;
        }
    }
    lethe_alloc_fail_after(-1);
    CHECK(nomem > 3);
    CHECK_EQ_INT(ok, 1);
    free(vecs);
    free(ids);
}

static void test_bytes_per_row(void)
{
    CHECK_EQ_INT(idx_bytes_per_row(), 662);
    CHECK_EQ_INT(sizeof(idx_header), 128);
}

int main(void)
{
    fprintf(stderr, "kernel sets: scalar%s%s (default %s)\n",
            idx_isa_supported(NN_ISA_AVX2) ? " avx2" : "",
            idx_isa_supported(NN_ISA_AVX512) ? " avx512" : "", nn_isa_name(nn_isa_current()));
    RUN(test_kernels_match_reference);
    RUN(test_exact_random);
    RUN(test_exact_ties);
    RUN(test_exact_tight_bounds);
    RUN(test_exact_float_ties);
    RUN(test_empty_and_limits);
    RUN(test_max_distance);
    RUN(test_roundtrip);
    RUN(test_bad_files);
    RUN(test_uncommitted_rows_ignored);
    RUN(test_no_residue);
    RUN(test_concurrent_readers);
    RUN(test_shared_handle);
    RUN(test_out_of_memory);
    RUN(test_bytes_per_row);
    remove_tmp();
    return test_summary();
}
