/*
 * bench_search.c: the descriptor index's speed against FAISS (bench/search.sh
 * runs both on the same data and prints the comparison).
 *
 *   bench_search gen --seeds SEEDS.f32 --out DIR [--n N] [--nq NQ] [--sigma S] [--seed X]
 *       Write DIR/base.f32 (N x 128 float32) and DIR/queries.f32 (NQ x 128):
 *       each vector is a seed descriptor (real ones, from lethe embed) plus
 *       Gaussian noise of sigma per component (0.025: two noisy copies of
 *       one seed are ~0.40 apart, a copy ~0.28 from its seed, like photos of
 *       one person). Row i's id is i, as FAISS labels it.
 *
 *   bench_search run --dir DIR [--k K] [--threads T] [--repeat R] [--isa ISA]
 *                    [--faiss-single FILE] [--faiss-batch FILE] [--check N]
 *       Build DIR/lethe.idx from base.f32 (timed), reopen it read-only, then
 *       time NQ searches one query at a time and one search of all NQ at once
 *       (best of R), compare the top-k ids with FAISS's (int64 files of NQ x K
 *       labels, from faiss_peer.py) and with a brute-force double-precision
 *       search on N sampled queries, and print one JSON object.
 *
 * A top-k that differs from FAISS's is "explained" when, position by
 * position, the exact distances of the two lists' rows differ by <= 1e-5
 * (float rounding in FAISS's own arithmetic reordering near-ties); lethe's
 * list is held to the brute force exactly.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench_rng.h"
#include "index/index.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *fmt, const char *arg)
{
    fprintf(stderr, "bench_search: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    exit(1);
}


static float *read_f32(const char *path, size_t *n_out)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (!f || fstat(fileno(f), &st) != 0)
        die("cannot read %s", path);
    size_t n = (size_t)st.st_size / (IDX_DIM * sizeof(float));
    float *v = malloc(n * IDX_DIM * sizeof *v + 1);
    if (!v || fread(v, IDX_DIM * sizeof *v, n, f) != n)
        die("cannot read %s", path);
    fclose(f);
    *n_out = n;
    return v;
}

static void write_noisy(const char *path, const float *seeds, size_t nseeds, size_t n,
                        double sigma)
{
    FILE *f = fopen(path, "wb");
    float row[IDX_DIM];
    if (!f)
        die("cannot write %s", path);
    for (size_t i = 0; i < n; i++) {
        const float *s = seeds + (next_u64() % nseeds) * IDX_DIM;
        for (int d = 0; d < IDX_DIM; d++)
            row[d] = (float)(s[d] + sigma * gauss());
        if (fwrite(row, sizeof row, 1, f) != 1)
            die("cannot write %s", path);
    }
    if (fclose(f) != 0)
        die("cannot write %s", path);
}

static int cmd_gen(int argc, char **argv)
{
    const char *seeds_path = NULL, *out = NULL;
    size_t n = 1000000, nq = 1000;
    double sigma = 0.025;
    uint64_t seed = 1;
    char path[4096];
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--seeds") && i + 1 < argc)
            seeds_path = argv[++i];
        else if (!strcmp(argv[i], "--out") && i + 1 < argc)
            out = argv[++i];
        else if (!strcmp(argv[i], "--n") && i + 1 < argc)
            n = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--nq") && i + 1 < argc)
            nq = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--sigma") && i + 1 < argc)
            sigma = atof(argv[++i]);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 10);
        else
            die("gen: unknown option %s", argv[i]);
    }
    if (!seeds_path || !out)
        die("gen needs --seeds and --out%s", "");
    size_t nseeds;
    float *seeds = read_f32(seeds_path, &nseeds);
    if (nseeds == 0)
        die("no seed descriptors in %s", seeds_path);
    seed_rng(seed);
    snprintf(path, sizeof path, "%s/base.f32", out);
    write_noisy(path, seeds, nseeds, n, sigma);
    seed_rng(seed + 1000003); /* queries: another stream */
    snprintf(path, sizeof path, "%s/queries.f32", out);
    write_noisy(path, seeds, nseeds, nq, sigma);
    printf("{\"n\": %zu, \"nq\": %zu, \"seeds\": %zu, \"sigma\": %g}\n", n, nq, nseeds, sigma);
    free(seeds);
    return 0;
}

static long status_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t len = strlen(field);
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, len) && line[len] == ':')
            v = atol(line + len + 1);
    fclose(f);
    return v;
}

static int64_t *read_ids(const char *path, size_t count)
{
    if (!path)
        return NULL;
    FILE *f = fopen(path, "rb");
    int64_t *ids = malloc(count * sizeof *ids);
    if (!f || fread(ids, sizeof *ids, count, f) != count)
        die("cannot read the ids in %s", path);
    fclose(f);
    return ids;
}

static double exact_d(const float *a, const float *b)
{
    double s = 0.0;
    for (int d = 0; d < IDX_DIM; d++) {
        double t = (double)a[d] - (double)b[d];
        s += t * t;
    }
    return sqrt(s);
}

/* Compare lethe's lists with another's: equal, explained, or wrong. */
static void compare_ids(const idx_hit *hits, const size_t *nh, const int64_t *other, size_t nq,
                        size_t k, const float *base, const float *queries, size_t *equal,
                        size_t *explained)
{
    *equal = *explained = 0;
    for (size_t q = 0; q < nq; q++) {
        int same = nh[q] == k, close = nh[q] == k;
        for (size_t i = 0; i < k && i < nh[q]; i++) {
            int64_t a = hits[q * k + i].id, b = other[q * k + i];
            if (a == b)
                continue;
            same = 0;
            if (b < 0) {
                close = 0;
                continue;
            }
            double da = exact_d(queries + q * IDX_DIM, base + (size_t)a * IDX_DIM);
            double db = exact_d(queries + q * IDX_DIM, base + (size_t)b * IDX_DIM);
            if (fabs(da - db) > 1e-5)
                close = 0;
        }
        *equal += same;
        *explained += !same && close;
    }
}

typedef struct bf_row {
    float f;
    int64_t id;
} bf_row;

/* Brute force over base for one query; returns 1 if it equals lethe's list. */
static int brute_matches(const float *base, size_t n, const float *q, size_t k,
                         const idx_hit *hits, size_t nh)
{
    bf_row *best = malloc((k + 1) * sizeof *best);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        bf_row r = {idx_exact_distance(q, base + i * IDX_DIM), (int64_t)i};
        if (m == k && (r.f > best[m - 1].f || (r.f == best[m - 1].f && r.id > best[m - 1].id)))
            continue;
        size_t j = m < k ? m++ : k - 1;
        while (j > 0 && (best[j - 1].f > r.f || (best[j - 1].f == r.f && best[j - 1].id > r.id))) {
            best[j] = best[j - 1];
            j--;
        }
        best[j] = r;
    }
    int ok = m == nh;
    for (size_t i = 0; ok && i < m; i++)
        ok = best[i].id == hits[i].id && best[i].f == hits[i].distance;
    free(best);
    return ok;
}

static int cmd_run(int argc, char **argv)
{
    const char *dir = NULL, *fs_path = NULL, *fb_path = NULL, *isa_name = NULL;
    size_t k = 10, check = 20;
    int threads = 0, repeat = 3;
    char path[4096], err[512];
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--k") && i + 1 < argc)
            k = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--repeat") && i + 1 < argc)
            repeat = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--isa") && i + 1 < argc)
            isa_name = argv[++i];
        else if (!strcmp(argv[i], "--faiss-single") && i + 1 < argc)
            fs_path = argv[++i];
        else if (!strcmp(argv[i], "--faiss-batch") && i + 1 < argc)
            fb_path = argv[++i];
        else if (!strcmp(argv[i], "--check") && i + 1 < argc)
            check = strtoull(argv[++i], NULL, 10);
        else
            die("run: unknown option %s", argv[i]);
    }
    if (!dir || k == 0 || repeat < 1)
        die("run needs --dir (and k, repeat >= 1)%s", "");

    size_t nq;
    snprintf(path, sizeof path, "%s/queries.f32", dir);
    float *queries = read_f32(path, &nq);

    /* Build: stream base.f32 into the index in chunks, then commit. */
    snprintf(path, sizeof path, "%s/base.f32", dir);
    int bfd = open(path, O_RDONLY);
    struct stat st;
    if (bfd < 0 || fstat(bfd, &st) != 0)
        die("cannot open %s", path);
    size_t n = (size_t)st.st_size / (IDX_DIM * sizeof(float));
    const size_t chunk = 65536;
    float *buf = malloc(chunk * IDX_DIM * sizeof *buf);
    int64_t *ids = malloc(chunk * sizeof *ids);
    char ipath[4096];
    snprintf(ipath, sizeof ipath, "%s/lethe.idx", dir);
    idx *w = NULL;
    double t0 = now();
    if (idx_open(ipath, IDX_WRITE | IDX_CREATE | IDX_TRUNCATE, &w, err, sizeof err) != 0)
        die("%s", err);
    for (size_t done = 0; done < n;) {
        size_t m = n - done < chunk ? n - done : chunk;
        if (pread(bfd, buf, m * IDX_DIM * sizeof *buf, (off_t)(done * IDX_DIM * sizeof *buf)) !=
            (ssize_t)(m * IDX_DIM * sizeof *buf))
            die("cannot read %s", path);
        for (size_t i = 0; i < m; i++)
            ids[i] = (int64_t)(done + i);
        if (idx_append(w, ids, buf, m, err, sizeof err) != 0)
            die("%s", err);
        done += m;
    }
    if (idx_commit(w, 1, err, sizeof err) != 0)
        die("%s", err);
    idx_close(w);
    double build_s = now() - t0;
    free(buf);
    free(ids);
    if (stat(ipath, &st) != 0)
        die("cannot stat %s", ipath);
    long long file_bytes = (long long)st.st_size;

    idx *ix = NULL;
    if (idx_open(ipath, IDX_READ, &ix, err, sizeof err) != 0)
        die("%s", err);
    if (isa_name) {
        nn_isa isa = !strcmp(isa_name, "scalar") ? NN_ISA_SCALAR
                     : !strcmp(isa_name, "avx2") ? NN_ISA_AVX2
                                                 : NN_ISA_AVX512;
        if (idx_set_isa(ix, isa) != 0)
            die("kernel set %s not supported here", isa_name);
    }
    idx_hit *single = malloc(nq * k * sizeof *single), *batch = malloc(nq * k * sizeof *batch);
    size_t *nh_single = malloc(nq * sizeof *nh_single), *nh_batch = malloc(nq * sizeof *nh_batch);

    /* Warm-up: map and touch the codes once. */
    if (idx_search(ix, queries, nq < 8 ? nq : 8, k, INFINITY, threads, batch, nh_batch, err,
                   sizeof err) != 0)
        die("%s", err);

    double best_single = 1e30, best_batch = 1e30;
    uint64_t cand_single = 0, cand_batch = 0;
    idx_stats stt;
    for (int r = 0; r < repeat; r++) {
        uint64_t cands = 0;
        t0 = now();
        for (size_t q = 0; q < nq; q++) {
            if (idx_search(ix, queries + q * IDX_DIM, 1, k, INFINITY, threads, single + q * k,
                           nh_single + q, err, sizeof err) != 0)
                die("%s", err);
            idx_last_stats(ix, &stt);
            cands += stt.candidates;
        }
        double t = now() - t0;
        if (t < best_single)
            best_single = t;
        cand_single = cands;
    }
    for (int r = 0; r < repeat; r++) {
        t0 = now();
        if (idx_search(ix, queries, nq, k, INFINITY, threads, batch, nh_batch, err,
                       sizeof err) != 0)
            die("%s", err);
        double t = now() - t0;
        if (t < best_batch)
            best_batch = t;
        idx_last_stats(ix, &stt);
        cand_batch = stt.candidates;
    }
    long rss_kb = status_kb("VmRSS"), hwm_kb = status_kb("VmHWM");

    /* Single and batch must agree exactly. */
    size_t single_eq_batch = 0;
    for (size_t q = 0; q < nq; q++) {
        int same = nh_single[q] == nh_batch[q];
        for (size_t i = 0; same && i < nh_single[q]; i++)
            same = single[q * k + i].id == batch[q * k + i].id &&
                   single[q * k + i].distance == batch[q * k + i].distance;
        single_eq_batch += same;
    }

    const float *base = mmap(NULL, (size_t)n * IDX_DIM * sizeof(float), PROT_READ, MAP_SHARED,
                             bfd, 0);
    if (base == MAP_FAILED)
        die("cannot map %s", path);
    size_t fs_equal = 0, fs_expl = 0, fb_equal = 0, fb_expl = 0;
    int64_t *fs = read_ids(fs_path, nq * k), *fb = read_ids(fb_path, nq * k);
    if (fs)
        compare_ids(batch, nh_batch, fs, nq, k, base, queries, &fs_equal, &fs_expl);
    if (fb)
        compare_ids(batch, nh_batch, fb, nq, k, base, queries, &fb_equal, &fb_expl);
    size_t brute_ok = 0, brute_n = check < nq ? check : nq;
    for (size_t i = 0; i < brute_n; i++) {
        size_t q = i * nq / brute_n;
        brute_ok += brute_matches(base, n, queries + q * IDX_DIM, k, batch + q * k, nh_batch[q]);
    }

    printf("{\"n\": %zu, \"nq\": %zu, \"k\": %zu, \"isa\": \"%s\", \"threads\": %d,\n", n, nq, k,
           nn_isa_name(idx_get_isa(ix)), threads);
    printf(" \"build_s\": %.3f, \"file_bytes\": %lld, \"bytes_per_row\": %zu,\n", build_s,
           file_bytes, idx_bytes_per_row());
    printf(" \"single_qps\": %.2f, \"batch_qps\": %.2f, \"repeat\": %d,\n", nq / best_single,
           nq / best_batch, repeat);
    printf(" \"candidates_per_query_single\": %.1f, \"candidates_per_query_batch\": %.1f,\n",
           (double)cand_single / nq, (double)cand_batch / nq);
    printf(" \"rss_mb\": %.1f, \"hwm_mb\": %.1f,\n", rss_kb / 1024.0, hwm_kb / 1024.0);
    printf(" \"single_equals_batch\": %zu,\n", single_eq_batch);
    printf(" \"faiss_single_equal\": %zu, \"faiss_single_explained\": %zu, \"faiss_single_given\": %s,\n",
           fs_equal, fs_expl, fs ? "true" : "false");
    printf(" \"faiss_batch_equal\": %zu, \"faiss_batch_explained\": %zu, \"faiss_batch_given\": %s,\n",
           fb_equal, fb_expl, fb ? "true" : "false");
    printf(" \"brute_checked\": %zu, \"brute_equal\": %zu}\n", brute_n, brute_ok);

    int ok = single_eq_batch == nq && brute_ok == brute_n &&
             (!fs || fs_equal + fs_expl == nq) && (!fb || fb_equal + fb_expl == nq);
    munmap((void *)base, (size_t)n * IDX_DIM * sizeof(float));
    close(bfd);
    idx_close(ix);
    free(fs);
    free(fb);
    free(single);
    free(batch);
    free(nh_single);
    free(nh_batch);
    free(queries);
    return ok ? 0 : 3;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "gen"))
        return cmd_gen(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "run"))
        return cmd_run(argc, argv);
    fprintf(stderr, "usage: bench_search gen --seeds SEEDS.f32 --out DIR [--n N] [--nq NQ]\n"
                    "       bench_search run --dir DIR [--k K] [--threads T] [--repeat R]\n"
                    "                        [--faiss-single F] [--faiss-batch F] [--check N]\n");
    return 2;
}
