/*
 * test_store.c: the store through the library API, with descriptors (no
 * models needed): creation and format checks, ingest and idempotency, the
 * consent policy, exact search against brute force, history-independent
 * digests, the audit log, withdrawal, index rebuilds, concurrent search
 * during ingest, and allocation failures.
 */
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <unistd.h>

#include "lethe.h"
#include "test.h"
#include "util/util.h"

static char root[256];
static int nstore;

static void new_dir(char *out, size_t n)
{
    snprintf(out, n, "%s/s%d", root, nstore++);
}

static unsigned rng = 12345;
static float frand(void)
{
    rng = rng * 1103515245u + 12345u;
    return (float)((rng >> 8) & 0xFFFF) / 65536.0f - 0.5f;
}

#define N 600
static float vecs[N][128];

static void make_vecs(void)
{
    /* 60 "people", 10 faces each, spread around a centre */
    for (int p = 0; p < 60; p++) {
        float c[128];
        for (int k = 0; k < 128; k++)
            c[k] = frand() * 0.4f;
        for (int j = 0; j < 10; j++)
            for (int k = 0; k < 128; k++)
                vecs[p * 10 + j][k] = c[k] + frand() * 0.06f;
    }
}

static lethe_store *open_new(char *dir, size_t n)
{
    lethe_store *s = NULL;
    new_dir(dir, n);
    int rc = lethe_store_open(dir, LETHE_STORE_CREATE, &s);
    CHECK_EQ_INT(rc, LETHE_OK);
    if (rc) {
        fprintf(stderr, "  %s\n", lethe_store_errmsg(s));
        lethe_store_close(s);
        return NULL;
    }
    return s;
}

static int errors_seen;
static void on_err(void *ctx, const char *input, size_t line, const char *msg)
{
    (void)ctx;
    (void)input;
    (void)line;
    (void)msg;
    errors_seen++;
}

/* ingest vecs[from..to) with a jurisdiction/consent pattern */
static int ingest_range(lethe_store *s, int from, int to, const char *jur, const char *consent,
                        lethe_ingest_stats *st)
{
    lethe_ingest_options o;
    lethe_ingest *g = NULL;
    lethe_ingest_options_init(&o);
    o.actor = "test";
    o.on_error = on_err;
    o.batch_photos = 64;
    int rc = lethe_ingest_begin(s, &o, &g);
    if (rc)
        return rc;
    for (int i = from; i < to && rc == LETHE_OK; i++) {
        char up[32], id[32];
        snprintf(up, sizeof(up), "user%d", i / 10);
        snprintf(id, sizeof(id), "photo%d", i);
        lethe_provenance p = {.uploader = up, .photo_id = id, .source = "synthetic",
                              .jurisdiction = jur, .consent = consent};
        rc = lethe_ingest_descriptor(g, vecs[i], &p, (size_t)i + 1);
    }
    int rc2 = lethe_ingest_end(g, st);
    return rc ? rc : rc2;
}

/* the kept (incremental) digest must equal the one recomputed from scratch */
static void check_digest(lethe_store *s)
{
    char kept[65], full[65];
    int matches = 0;
    CHECK_EQ_INT(lethe_store_digest(s, kept), LETHE_OK);
    CHECK_EQ_INT(lethe_store_digest_full(s, full, &matches), LETHE_OK);
    CHECK(matches);
    CHECK(!strcmp(kept, full));
}

static void test_open_errors(void)
{
    lethe_store *s = NULL;
    char dir[300];
    new_dir(dir, sizeof(dir));
    CHECK_EQ_INT(lethe_store_open(dir, 0, &s), LETHE_ERR_STORE);
    CHECK(strstr(lethe_store_errmsg(s), "lethe init") != NULL);
    lethe_store_close(s);
    s = NULL;
    CHECK_EQ_INT(lethe_store_open("/dev/null", 0, &s), LETHE_ERR_STORE);
    CHECK(strstr(lethe_store_errmsg(s), "not a directory") != NULL);
    lethe_store_close(s);
    lethe_store_close(NULL);
}

static void test_ingest_search_exact(void)
{
    char dir[300];
    lethe_store *s = open_new(dir, sizeof(dir));
    lethe_ingest_stats st;
    if (!s)
        return;
    CHECK_EQ_INT(ingest_range(s, 0, N, "US", "explicit", &st), LETHE_OK);
    CHECK_EQ_INT(st.added, N);
    CHECK_EQ_INT(st.templates, N);
    /* idempotent */
    CHECK_EQ_INT(ingest_range(s, 0, N, "US", "explicit", &st), LETHE_OK);
    CHECK_EQ_INT(st.added, 0);
    CHECK_EQ_INT(st.duplicates, N);
    CHECK_EQ_INT(st.provenance, 0);

    /* exact top-10 against brute force, for 20 queries */
    float q[20][128];
    for (int i = 0; i < 20; i++)
        for (int k = 0; k < 128; k++)
            q[i][k] = vecs[i * 29 % N][k] + frand() * 0.05f;
    lethe_search_options so;
    lethe_search_options_init(&so);
    so.purpose = "unit test";
    so.actor = "tester";
    lethe_match *m = NULL;
    size_t nm = 0;
    CHECK_EQ_INT(lethe_search(s, &q[0][0], 20, &so, &m, &nm), LETHE_OK);
    CHECK_EQ_INT(nm, 200);
    for (int i = 0; i < 20 && nm == 200; i++) {
        /* brute force: the 10 nearest */
        double d[N];
        for (int j = 0; j < N; j++) {
            double t = 0;
            for (int k = 0; k < 128; k++)
                t += ((double)q[i][k] - vecs[j][k]) * ((double)q[i][k] - vecs[j][k]);
            d[j] = sqrt(t);
        }
        for (int r = 0; r < 10; r++) {
            int best = -1;
            for (int j = 0; j < N; j++)
                if (d[j] >= 0 && (best < 0 || d[j] < d[best]))
                    best = j;
            const lethe_match *mm = &m[i * 10 + r];
            char want[32];
            snprintf(want, sizeof(want), "photo%d", best);
            CHECK_EQ_INT(mm->query, i);
            CHECK(!strcmp(mm->prov.photo_id, want));
            CHECK_NEAR(mm->distance, d[best], 1e-4);
            CHECK(!strcmp(mm->prov.consent, "explicit"));
            CHECK(!strcmp(mm->prov.jurisdiction, "US"));
            d[best] = -1;
        }
    }
    lethe_matches_free(m, nm);

    /* threshold */
    so.threshold = 0.0001f;
    CHECK_EQ_INT(lethe_search(s, vecs[5], 1, &so, &m, &nm), LETHE_OK);
    CHECK_EQ_INT(nm, 1);
    if (nm == 1)
        CHECK(!strcmp(m[0].prov.photo_id, "photo5"));
    lethe_matches_free(m, nm);

    /* purpose is required */
    so.purpose = "";
    CHECK_EQ_INT(lethe_search(s, vecs[5], 1, &so, &m, &nm), LETHE_ERR_ARG);
    uint64_t entries = 0, bad = 0;
    CHECK_EQ_INT(lethe_log_verify(s, &entries, &bad), LETHE_OK);
    CHECK(entries >= 22);
    lethe_store_close(s);
}

static void test_policy_refuses(void)
{
    char dir[300];
    lethe_store *s = open_new(dir, sizeof(dir));
    lethe_ingest_stats st;
    if (!s)
        return;
    CHECK_EQ_INT(ingest_range(s, 0, 100, "US-IL", "public-license", &st), LETHE_OK);
    CHECK_EQ_INT(st.added, 100);
    CHECK_EQ_INT(st.refused, 100);
    CHECK_EQ_INT(st.templates, 0);
    CHECK_EQ_INT(ingest_range(s, 100, 200, "GB", "none", &st), LETHE_OK);
    CHECK_EQ_INT(st.refused, 100);
    CHECK_EQ_INT(ingest_range(s, 200, 300, "DE", "explicit", &st), LETHE_OK);
    CHECK_EQ_INT(st.templates, 100);
    /* no search returns a refused one, even its own descriptor */
    lethe_search_options so;
    lethe_search_options_init(&so);
    so.purpose = "unit test";
    so.top_k = 300;
    lethe_match *m = NULL;
    size_t nm = 0;
    CHECK_EQ_INT(lethe_search(s, vecs[3], 1, &so, &m, &nm), LETHE_OK);
    CHECK_EQ_INT(nm, 100);
    for (size_t i = 0; i < nm; i++)
        CHECK(!strcmp(m[i].prov.jurisdiction, "DE"));
    lethe_matches_free(m, nm);
    /* the policy decisions */
    const char *rule = NULL;
    CHECK_EQ_INT(lethe_policy_check(s, "US-IL", "public-license", &rule), 0);
    CHECK(rule && !strcmp(rule, "US-IL"));
    CHECK_EQ_INT(lethe_policy_check(s, "it", "explicit", &rule), 1);
    CHECK(rule && !strcmp(rule, "EEA"));
    CHECK_EQ_INT(lethe_policy_check(s, "US-CA", "withdrawn", &rule), 0);
    CHECK(lethe_policy_check(s, "UK", "explicit", &rule) < 0);
    CHECK(lethe_policy_check(s, "GB", "maybe", &rule) < 0);
    /* tighten DE: templates dropped; relax nothing else */
    uint64_t dropped = 0;
    CHECK_EQ_INT(lethe_policy_set(s, "DE", "", "test", 1, &dropped), LETHE_OK);
    CHECK_EQ_INT(dropped, 100);
    CHECK_EQ_INT(lethe_search(s, vecs[250], 1, &so, &m, &nm), LETHE_OK);
    CHECK_EQ_INT(nm, 100); /* dry run changed nothing */
    lethe_matches_free(m, nm);
    CHECK_EQ_INT(lethe_policy_set(s, "DE", "", "test", 0, &dropped), LETHE_OK);
    CHECK_EQ_INT(dropped, 100);
    CHECK_EQ_INT(lethe_search(s, vecs[250], 1, &so, &m, &nm), LETHE_OK);
    CHECK_EQ_INT(nm, 0);
    lethe_matches_free(m, nm);
    check_digest(s);
    CHECK_EQ_INT(lethe_policy_set(s, "DE", "withdrawn", "test", 0, &dropped), LETHE_ERR_ARG);
    CHECK_EQ_INT(lethe_policy_set(s, "XX", "explicit", "test", 0, &dropped), LETHE_ERR_ARG);
    lethe_store_close(s);
    /* the policy persists */
    CHECK_EQ_INT(lethe_store_open(dir, 0, &s), LETHE_OK);
    CHECK_EQ_INT(lethe_policy_check(s, "DE", "explicit", &rule), 0);
    lethe_store_close(s);
}

static void test_digest_history_independent(void)
{
    char d1[300], d2[300];
    char h1[65], h2[65], h3[65];
    lethe_ingest_stats st;
    lethe_store *a = open_new(d1, sizeof(d1)), *b = open_new(d2, sizeof(d2));
    if (!a || !b)
        return;
    /* a: 0..300 then 300..600; b: the reverse, in other batch sizes */
    CHECK_EQ_INT(ingest_range(a, 0, 300, "US", "explicit", &st), LETHE_OK);
    CHECK_EQ_INT(ingest_range(a, 300, 600, "US", "explicit", &st), LETHE_OK);
    CHECK_EQ_INT(ingest_range(b, 450, 600, "US", "explicit", &st), LETHE_OK);
    CHECK_EQ_INT(ingest_range(b, 0, 450, "US", "explicit", &st), LETHE_OK);
    CHECK_EQ_INT(lethe_store_digest(a, h1), LETHE_OK);
    CHECK_EQ_INT(lethe_store_digest(b, h2), LETHE_OK);
    CHECK(!strcmp(h1, h2));
    check_digest(a);
    check_digest(b);
    /* one more provenance changes it */
    CHECK_EQ_INT(ingest_range(b, 0, 1, "US", "public-license", &st), LETHE_OK);
    CHECK_EQ_INT(st.provenance, 1);
    CHECK_EQ_INT(lethe_store_digest(b, h3), LETHE_OK);
    CHECK(strcmp(h1, h3) != 0);
    lethe_store_close(a);
    lethe_store_close(b);
}

static void test_withdrawal_drops(void)
{
    char dir[300];
    lethe_store *s = open_new(dir, sizeof(dir));
    lethe_ingest_stats st;
    if (!s)
        return;
    CHECK_EQ_INT(ingest_range(s, 0, 50, "US", "explicit", &st), LETHE_OK);
    CHECK_EQ_INT(st.templates, 50);
    CHECK_EQ_INT(ingest_range(s, 10, 20, "US", "withdrawn", &st), LETHE_OK);
    CHECK_EQ_INT(st.withdrawn, 10);
    lethe_search_options so;
    lethe_search_options_init(&so);
    so.purpose = "unit test";
    so.top_k = 100;
    lethe_match *m = NULL;
    size_t nm = 0;
    CHECK_EQ_INT(lethe_search(s, vecs[15], 1, &so, &m, &nm), LETHE_OK);
    CHECK_EQ_INT(nm, 40);
    for (size_t i = 0; i < nm; i++) {
        int id = atoi(m[i].prov.photo_id + 5);
        CHECK(id < 10 || id >= 20);
    }
    lethe_matches_free(m, nm);
    /* explicit consent again does not bring a withdrawn photo back */
    CHECK_EQ_INT(ingest_range(s, 10, 20, "US", "explicit", &st), LETHE_OK);
    CHECK_EQ_INT(st.templates, 0);
    CHECK_EQ_INT(lethe_search(s, vecs[15], 1, &so, &m, &nm), LETHE_OK);
    CHECK_EQ_INT(nm, 40);
    lethe_matches_free(m, nm);
    char *json = NULL;
    CHECK_EQ_INT(lethe_lookup(s, LETHE_LOOKUP_UPLOADER, "user1", "test", "json", &json), LETHE_OK);
    CHECK(json && strstr(json, "\"status\":\"withdrawn\""));
    CHECK(json && strstr(json, "\"templates\":0"));
    lethe_free_string(json);
    check_digest(s);
    lethe_store_close(s);
}

static void test_index_rebuild(void)
{
    char dir[300], path[400];
    lethe_store *s = open_new(dir, sizeof(dir));
    lethe_ingest_stats st;
    if (!s)
        return;
    CHECK_EQ_INT(ingest_range(s, 0, 200, "US", "explicit", &st), LETHE_OK);
    lethe_store_close(s);
    /* lose the index: the next open rebuilds it from the catalog */
    snprintf(path, sizeof(path), "%s/faces.idx", dir);
    CHECK_EQ_INT(unlink(path), 0);
    s = NULL;
    CHECK_EQ_INT(lethe_store_open(dir, 0, &s), LETHE_OK);
    lethe_search_options so;
    lethe_search_options_init(&so);
    so.purpose = "unit test";
    lethe_match *m = NULL;
    size_t nm = 0;
    CHECK_EQ_INT(lethe_search(s, vecs[42], 1, &so, &m, &nm), LETHE_OK);
    CHECK(nm == 10 && !strcmp(m[0].prov.photo_id, "photo42"));
    lethe_matches_free(m, nm);
    lethe_store_close(s);
    /* a catalog generation ahead of the index (a crash between the two) */
    sqlite3 *db;
    snprintf(path, sizeof(path), "%s/catalog.db", dir);
    CHECK_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
    CHECK_EQ_INT(sqlite3_exec(db, "UPDATE meta SET value = value + 1 WHERE key = 'index_gen'",
                              NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    CHECK_EQ_INT(lethe_store_open(dir, 0, &s), LETHE_OK);
    CHECK_EQ_INT(lethe_search(s, vecs[43], 1, &so, &m, &nm), LETHE_OK);
    CHECK(nm == 10 && !strcmp(m[0].prov.photo_id, "photo43"));
    lethe_matches_free(m, nm);
    lethe_store_close(s);
}

static void test_log_tamper(void)
{
    char dir[300], path[400];
    lethe_store *s = open_new(dir, sizeof(dir));
    lethe_ingest_stats st;
    uint64_t n = 0, bad = 0;
    if (!s)
        return;
    CHECK_EQ_INT(ingest_range(s, 0, 100, "US", "explicit", &st), LETHE_OK);
    char *jsonl = NULL;
    CHECK_EQ_INT(lethe_log_export(s, "jsonl", &jsonl), LETHE_OK);
    CHECK(jsonl && strstr(jsonl, "\"kind\":\"init\"") && strstr(jsonl, "\"kind\":\"ingest\""));
    lethe_free_string(jsonl);
    CHECK_EQ_INT(lethe_log_verify(s, &n, &bad), LETHE_OK);
    lethe_store_close(s);
    sqlite3 *db;
    snprintf(path, sizeof(path), "%s/catalog.db", dir);
    CHECK_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
    CHECK_EQ_INT(sqlite3_exec(db, "UPDATE log SET results = results + 1 WHERE seq = 2", NULL,
                              NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    CHECK_EQ_INT(lethe_store_open(dir, LETHE_STORE_READONLY, &s), LETHE_OK);
    CHECK_EQ_INT(lethe_log_verify(s, &n, &bad), LETHE_ERR_FORMAT);
    CHECK_EQ_INT(bad, 2);
    char *ds = NULL;
    CHECK_EQ_INT(lethe_datasheet(s, "json", &ds), LETHE_OK);
    CHECK(ds && strstr(ds, "\"intact\":false") && strstr(ds, "\"first_bad\":2"));
    lethe_free_string(ds);
    lethe_store_close(s);
}

/* searches running while another thread ingests: each sees a consistent
 * store and never fails */
typedef struct conc {
    const char *dir;
    int failures, searches;
} conc;

static void *searcher(void *arg)
{
    conc *c = arg;
    lethe_store *s = NULL;
    if (lethe_store_open(c->dir, 0, &s) != LETHE_OK) {
        fprintf(stderr, "  open failed: %s\n", lethe_store_errmsg(s));
        c->failures++;
        lethe_store_close(s);
        return NULL;
    }
    lethe_search_options so;
    lethe_search_options_init(&so);
    so.purpose = "concurrency test";
    for (int i = 0; i < 40; i++) {
        lethe_match *m = NULL;
        size_t nm = 0;
        if (lethe_search(s, vecs[i * 7 % 100], 1, &so, &m, &nm) != LETHE_OK || nm == 0) {
            c->failures++;
            fprintf(stderr, "  search failed: %s\n", lethe_store_errmsg(s));
        }
        c->searches++;
        lethe_matches_free(m, nm);
    }
    lethe_store_close(s);
    return NULL;
}

static void test_concurrent_search(void)
{
    char dir[300];
    lethe_store *s = open_new(dir, sizeof(dir));
    lethe_ingest_stats st;
    if (!s)
        return;
    CHECK_EQ_INT(ingest_range(s, 0, 100, "US", "explicit", &st), LETHE_OK);
    conc c = {.dir = dir};
    pthread_t t;
    pthread_create(&t, NULL, searcher, &c);
    CHECK_EQ_INT(ingest_range(s, 100, N, "US", "explicit", &st), LETHE_OK);
    pthread_join(t, NULL);
    CHECK_EQ_INT(c.failures, 0);
    CHECK_EQ_INT(c.searches, 40);
    uint64_t n, bad;
    CHECK_EQ_INT(lethe_log_verify(s, &n, &bad), LETHE_OK);
    lethe_store_close(s);
}

static void test_alloc_failures(void)
{
    /* every allocation failing in turn: a clean error, never a crash or a
     * damaged store */
    char dir[300];
    lethe_store *s = open_new(dir, sizeof(dir));
    lethe_ingest_stats st;
    if (!s)
        return;
    CHECK_EQ_INT(ingest_range(s, 0, 20, "US", "explicit", &st), LETHE_OK);
    lethe_store_close(s);
    int failed = 0, done = 0;
    /* the k-th allocation fails, k = 0, 1, 2, ... until a run makes fewer
     * than k: then every allocation point of open, ingest and search has
     * failed once; each failure must be out of memory, with a message */
    for (long k = 0; !done && k < 100000; k++) {
        s = NULL;
        lethe_alloc_fail_after(k);
        int rc = lethe_store_open(dir, 0, &s);
        if (rc == LETHE_OK) {
            rc = ingest_range(s, 20 + (int)(k % 20), 21 + (int)(k % 20), "US", "explicit", &st);
            if (rc == LETHE_OK) {
                lethe_search_options so;
                lethe_search_options_init(&so);
                so.purpose = "alloc test";
                lethe_match *m = NULL;
                size_t nm = 0;
                rc = lethe_search(s, vecs[0], 1, &so, &m, &nm);
                lethe_matches_free(m, nm);
            }
        }
        long made = lethe_alloc_count();
        lethe_alloc_fail_after(-1);
        if (rc != LETHE_OK) {
            failed++;
            CHECK_EQ_INT(rc, LETHE_ERR_NOMEM);
            if (rc != LETHE_ERR_NOMEM)
                fprintf(stderr, "  k=%ld: %s\n", k, lethe_store_errmsg(s));
        } else {
            done = made <= k; /* nothing failed: all points passed */
        }
        lethe_store_close(s);
    }
    CHECK(done);
    CHECK(failed > 0);
    s = NULL;
    CHECK_EQ_INT(lethe_store_open(dir, 0, &s), LETHE_OK);
    uint64_t n, bad;
    CHECK_EQ_INT(lethe_log_verify(s, &n, &bad), LETHE_OK);
    lethe_store_close(s);
}

/* Two handles on one store (as a server's and the CLI's): what one sets in
 * the consent policy, the other decides with, shows and builds on. */
static void test_policy_seen_by_other_handles(void)
{
    char dir[300];
    lethe_store *a = NULL, *b = NULL;
    lethe_ingest_stats st;
    uint64_t dropped = 0;
    char *text = NULL;
    const char *rule = NULL;
    snprintf(dir, sizeof(dir), "%s/two-handles", root);
    CHECK_EQ_INT(lethe_store_open(dir, LETHE_STORE_CREATE, &a), LETHE_OK);
    CHECK_EQ_INT(lethe_store_open(dir, 0, &b), LETHE_OK);
    CHECK_EQ_INT(lethe_policy_check(a, "US-CA", "public-license", &rule), 0);
    CHECK_EQ_INT(lethe_policy_set(b, "US-CA", "explicit,public-license", "b", 0, &dropped),
                 LETHE_OK);
    CHECK_EQ_INT(lethe_policy_check(a, "US-CA", "public-license", &rule), 1);
    CHECK_EQ_INT(lethe_policy_get(a, &text), LETHE_OK);
    CHECK(text && strstr(text, "US-CA"));
    lethe_free_string(text);
    /* a's own change keeps b's rule, and its version follows b's */
    CHECK_EQ_INT(lethe_policy_set(a, "US-TX", "explicit,public-license", "a", 0, &dropped),
                 LETHE_OK);
    CHECK_EQ_INT(lethe_policy_check(b, "US-CA", "public-license", &rule), 1);
    CHECK_EQ_INT(lethe_policy_check(b, "US-TX", "public-license", &rule), 1);
    /* b refuses US-WA outright; a's ingest keeps no template there */
    CHECK_EQ_INT(lethe_policy_set(b, "US-WA", "", "b", 0, &dropped), LETHE_OK);
    memset(&st, 0, sizeof(st));
    CHECK_EQ_INT(ingest_range(a, 0, 5, "US-WA", "explicit", &st), LETHE_OK);
    CHECK_EQ_INT(st.refused, 5);
    CHECK_EQ_INT(st.templates, 0);
    uint64_t n = 0, bad = 0;
    CHECK_EQ_INT(lethe_log_verify(a, &n, &bad), LETHE_OK);
    check_digest(a);
    lethe_store_close(b);
    lethe_store_close(a);
}

/* Two writers, taking turns (as a server's handle and the CLI's): each
 * must see the keyring slots the other used, or it hands out a slot that
 * holds another photo's key, and that photo can never be read again. */
static void test_two_writers_share_the_keyring(void)
{
    char dir[300], *out = NULL;
    lethe_store *a = NULL, *b = NULL;
    snprintf(dir, sizeof(dir), "%s/two-writers", root);
    CHECK_EQ_INT(lethe_store_open(dir, LETHE_STORE_CREATE, &a), LETHE_OK);
    CHECK_EQ_INT(lethe_store_open(dir, 0, &b), LETHE_OK);
    CHECK_EQ_INT(ingest_range(b, 0, 10, "US", "explicit", NULL), LETHE_OK);
    CHECK_EQ_INT(ingest_range(a, 10, 20, "US", "explicit", NULL), LETHE_OK);
    CHECK_EQ_INT(ingest_range(b, 20, 30, "US", "explicit", NULL), LETHE_OK);
    CHECK_EQ_INT(ingest_range(a, 30, 40, "US", "explicit", NULL), LETHE_OK);
    /* every photo opens, from either handle and from a new one */
    lethe_store *c = NULL;
    CHECK_EQ_INT(lethe_store_open(dir, 0, &c), LETHE_OK);
    lethe_store *hs[3] = {a, b, c};
    for (int h = 0; h < 3; h++) {
        check_digest(hs[h]);
        for (int u = 0; u < 4; u++) {
            char up[32];
            snprintf(up, sizeof(up), "user%d", u);
            int rc = lethe_lookup(hs[h], LETHE_LOOKUP_UPLOADER, up, "t", "json", &out);
            CHECK_EQ_INT(rc, LETHE_OK);
            if (rc)
                fprintf(stderr, "  handle %d, %s: %s\n", h, up, lethe_store_errmsg(hs[h]));
            CHECK(out && strstr(out, "\"templates\":1"));
            if (out && !strstr(out, "\"templates\":1"))
                fprintf(stderr, "  handle %d, %s: %.300s\n", h, up, out);
            lethe_free_string(out);
            out = NULL;
        }
    }
    char *json = NULL;
    CHECK_EQ_INT(lethe_keyring_check(c, &json), LETHE_OK);
    CHECK(json && strstr(json, "\"slots\":40,\"photo_keys\":40,\"photos\":40,"));
    CHECK(json && strstr(json, "\"damaged_slots\":0"));
    if (json && !strstr(json, "\"damaged_slots\":0"))
        fprintf(stderr, "  keyring check: %.400s\n", json);
    lethe_free_string(json);
    lethe_store_close(c);
    lethe_store_close(b);
    lethe_store_close(a);
}

/* A handle kept open (a server's) finds what another handle ingested after
 * its first search, and no longer what another handle erased. */
static void test_long_lived_search_sees_changes(void)
{
    char dir[300];
    lethe_store *a = NULL, *b = NULL;
    lethe_search_options so;
    lethe_match *m = NULL;
    size_t nm = 0;
    snprintf(dir, sizeof(dir), "%s/long-lived-search", root);
    CHECK_EQ_INT(lethe_store_open(dir, LETHE_STORE_CREATE, &a), LETHE_OK);
    CHECK_EQ_INT(ingest_range(a, 0, 10, "US", "explicit", NULL), LETHE_OK);
    lethe_search_options_init(&so);
    so.purpose = "unit test";
    so.actor = "tester";
    so.top_k = 1;
    CHECK_EQ_INT(lethe_search(a, vecs[5], 1, &so, &m, &nm), LETHE_OK);
    CHECK(nm == 1 && m[0].distance < 1e-4f);
    lethe_matches_free(m, nm);
    CHECK_EQ_INT(lethe_store_open(dir, 0, &b), LETHE_OK);
    CHECK_EQ_INT(ingest_range(b, 10, 20, "US", "explicit", NULL), LETHE_OK);
    m = NULL;
    CHECK_EQ_INT(lethe_search(a, vecs[15], 1, &so, &m, &nm), LETHE_OK);
    CHECK(nm == 1 && m[0].distance < 1e-4f);
    if (nm == 1 && m[0].distance >= 1e-4f)
        fprintf(stderr, "  a photo ingested by another handle is not found (%.4f)\n",
                (double)m[0].distance);
    lethe_matches_free(m, nm);
    lethe_store_close(b);
    lethe_store_close(a);
}

/* 1:1 verification against stored photos: exact, logged only when it
 * answers, blind to what was erased */
static void verify_count_log(lethe_store *s, int want)
{
    char *log = NULL;
    int n = 0;
    CHECK_EQ_INT(lethe_log_export(s, "jsonl", &log), LETHE_OK);
    for (const char *p = log; p && (p = strstr(p, "\"kind\":\"verify\"")); p++)
        n++;
    CHECK_EQ_INT(n, want);
    lethe_free_string(log);
}

static void test_verify(void)
{
    char dir[300];
    lethe_store *s = open_new(dir, sizeof(dir));
    lethe_search_options so;
    lethe_verify_result r;
    float bad[128];
    if (!s)
        return;
    CHECK_EQ_INT(ingest_range(s, 0, 30, "US", "explicit", NULL), LETHE_OK);
    lethe_search_options_init(&so);
    so.purpose = "unit test: verify";
    so.actor = "tester";
    /* the same face against its own account: ten photos, ten templates */
    CHECK_EQ_INT(lethe_verify(s, vecs[3], LETHE_LOOKUP_UPLOADER, "user0", &so, &r), LETHE_OK);
    CHECK(r.match && r.distance < 1e-4f && r.templates == 10 && r.photos == 10);
    CHECK(r.threshold == lethe_descriptor_threshold());
    CHECK(strlen(r.photo) == 64);
    /* another photo of the same person, by its photo id: a match, not 0 */
    CHECK_EQ_INT(lethe_verify(s, vecs[4], LETHE_LOOKUP_PHOTO_ID, "photo3", &so, &r), LETHE_OK);
    CHECK(r.match && r.distance > 0.05f && r.templates == 1);
    /* ... not at a threshold below that distance; another person never */
    so.threshold = r.distance * 0.5f;
    CHECK_EQ_INT(lethe_verify(s, vecs[4], LETHE_LOOKUP_PHOTO_ID, "photo3", &so, &r), LETHE_OK);
    CHECK(!r.match && r.threshold == so.threshold);
    so.threshold = 0;
    CHECK_EQ_INT(lethe_verify(s, vecs[4], LETHE_LOOKUP_UPLOADER, "user1", &so, &r), LETHE_OK);
    CHECK(!r.match && r.distance > lethe_descriptor_threshold());
    verify_count_log(s, 4);
    /* refused, and not logged */
    CHECK_EQ_INT(lethe_verify(s, vecs[4], LETHE_LOOKUP_PHOTO_ID, "nobody", &so, &r),
                 LETHE_ERR_NOT_FOUND);
    CHECK(strstr(lethe_store_errmsg(s), "no photo held") != NULL);
    so.purpose = NULL;
    CHECK_EQ_INT(lethe_verify(s, vecs[4], LETHE_LOOKUP_UPLOADER, "user0", &so, &r), LETHE_ERR_ARG);
    CHECK(strstr(lethe_store_errmsg(s), "purpose") != NULL);
    so.purpose = "unit test: verify";
    memcpy(bad, vecs[4], sizeof(bad));
    bad[7] = NAN;
    CHECK_EQ_INT(lethe_verify(s, bad, LETHE_LOOKUP_UPLOADER, "user0", &so, &r), LETHE_ERR_ARG);
    CHECK_EQ_INT(lethe_verify(s, vecs[4], LETHE_LOOKUP_UPLOADER, "", &so, &r), LETHE_ERR_ARG);
    CHECK_EQ_INT(lethe_verify(s, vecs[4], 9, "user0", &so, &r), LETHE_ERR_ARG);
    CHECK_EQ_INT(lethe_verify(s, NULL, LETHE_LOOKUP_UPLOADER, "user0", &so, &r), LETHE_ERR_ARG);
    CHECK(strstr(lethe_store_errmsg(s), "no descriptor") != NULL);
    so.threshold = -1;
    CHECK_EQ_INT(lethe_verify(s, vecs[4], LETHE_LOOKUP_UPLOADER, "user0", &so, &r), LETHE_ERR_ARG);
    CHECK(strstr(lethe_store_errmsg(s), "bad threshold") != NULL);
    so.threshold = NAN;
    CHECK_EQ_INT(lethe_verify(s, vecs[4], LETHE_LOOKUP_UPLOADER, "user0", &so, &r), LETHE_ERR_ARG);
    so.threshold = 0;
    verify_count_log(s, 4);
    /* after an erasure the account holds nothing to verify against */
    lethe_selector sel;
    memset(&sel, 0, sizeof(sel));
    sel.uploader = "user0";
    CHECK_EQ_INT(lethe_forget(s, &sel, 0, "tester", NULL, NULL, NULL), LETHE_OK);
    CHECK_EQ_INT(lethe_verify(s, vecs[3], LETHE_LOOKUP_UPLOADER, "user0", &so, &r),
                 LETHE_ERR_NOT_FOUND);
    CHECK_EQ_INT(lethe_verify(s, vecs[13], LETHE_LOOKUP_UPLOADER, "user1", &so, &r), LETHE_OK);
    CHECK(r.match && r.distance < 1e-4f);
    verify_count_log(s, 5);
    uint64_t n, first_bad;
    CHECK_EQ_INT(lethe_log_verify(s, &n, &first_bad), LETHE_OK);
    lethe_store_close(s);
}

int main(void)
{
    snprintf(root, sizeof(root), "/tmp/lethe-test-store-XXXXXX");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    make_vecs();
    RUN(test_open_errors);
    RUN(test_ingest_search_exact);
    RUN(test_policy_refuses);
    RUN(test_digest_history_independent);
    RUN(test_withdrawal_drops);
    RUN(test_index_rebuild);
    RUN(test_log_tamper);
    RUN(test_concurrent_search);
    RUN(test_alloc_failures);
    RUN(test_policy_seen_by_other_handles);
    RUN(test_long_lived_search_sees_changes);
    RUN(test_two_writers_share_the_keyring);
    RUN(test_verify);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", root);
    return test_summary();
}
