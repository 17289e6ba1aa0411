/*
 * test_concurrency.c: one store handle shared by threads
 * (LETHE_STORE_SHARED): searches from many threads while another thread
 * ingests and forgets; a forget or an ingest that has returned is seen by
 * every search started after it; the log holds every search's entry, each
 * thread's in its order, and verifies; the group commit groups (fewer
 * commits than searches); a group that fails (out of memory at any of its
 * allocations) fails every search in it and logs none of them; messages
 * are per thread. Runs under TSan too (tests/run.sh).
 */
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "faultvfs.h"
#include "lethe.h"
#include "store/share.h"
#include "test.h"
#include "util/util.h"

static char root[256];
static int nstore;

#define NFACES 1200   /* ingested at the start */
#define NLATE 200     /* ingested while searches run */
#define NFORGET 12    /* faces forgotten while searches run */
#define NSEARCHERS 6

static float vecs[NFACES + NLATE][128];

static void make_vecs(void)
{
    unsigned r = 777;
    for (int i = 0; i < NFACES + NLATE; i++)
        for (int k = 0; k < 128; k++) {
            r = r * 1103515245u + 12345u;
            vecs[i][k] = ((float)((r >> 8) & 0xFFFF) / 65536.0f - 0.5f) * 0.6f;
        }
}

static lethe_store *open_shared(char *dir, size_t n, int create)
{
    lethe_store *s = NULL;
    if (create)
        snprintf(dir, n, "%s/s%d", root, nstore++);
    int rc = lethe_store_open(dir, (create ? LETHE_STORE_CREATE : 0) | LETHE_STORE_SHARED, &s);
    CHECK_EQ_INT(rc, LETHE_OK);
    if (rc) {
        fprintf(stderr, "  %s\n", lethe_store_errmsg(s));
        lethe_store_close(s);
        return NULL;
    }
    return s;
}

/* faces [from, to), uploader "u<i>": one photo each */
static int ingest(lethe_store *s, int from, int to)
{
    lethe_ingest_options o;
    lethe_ingest *g = NULL;
    lethe_ingest_stats st;
    lethe_ingest_options_init(&o);
    o.actor = "test";
    o.batch_photos = 256;
    int rc = lethe_ingest_begin(s, &o, &g);
    if (rc)
        return rc;
    for (int i = from; i < to && rc == LETHE_OK; i++) {
        char up[32];
        snprintf(up, sizeof(up), "u%d", i);
        lethe_provenance p = {.uploader = up, .source = "synthetic", .jurisdiction = "US",
                              .consent = "explicit"};
        rc = lethe_ingest_descriptor(g, vecs[i], &p, (size_t)i + 1);
    }
    int rc2 = lethe_ingest_end(g, &st);
    return rc ? rc : rc2;
}

static int64_t log_seq(lethe_store *s)
{
    uint64_t seq = 0;
    char hash[65];
    CHECK_EQ_INT(lethe_log_head(s, &seq, hash), LETHE_OK);
    return (int64_t)seq;
}

/* --------------------------------------------- searches beside changes */

typedef struct race {
    lethe_store *s;
    atomic_int forgotten[NFORGET]; /* set once lethe_forget returned */
    atomic_int forgetting[NFORGET]; /* set before lethe_forget is called */
    atomic_int ingested;           /* late faces [NFACES, NFACES + ingested) are in */
    atomic_int stop;
    atomic_long searches, failures, violations, missed;
} race;

typedef struct searcher {
    race *r;
    int id;
    int n;                         /* searches made */
} searcher;

/* Which face to ask for: a forgotten one, a late one or another. */
static int pick(unsigned *seed, int late_in)
{
    *seed = *seed * 1103515245u + 12345u;
    unsigned x = (*seed >> 8) % 100;
    if (x < 50)
        return (int)((*seed >> 16) % NFORGET);
    if (x < 75 && late_in > 0)
        return NFACES + (int)((*seed >> 16) % (unsigned)late_in);
    return NFORGET + (int)((*seed >> 16) % (NFACES - NFORGET));
}

static void *search_loop(void *arg)
{
    searcher *me = arg;
    race *r = me->r;
    unsigned seed = 1234u + 77u * (unsigned)me->id;
    char actor[32], purpose[64];
    snprintf(actor, sizeof(actor), "t%d", me->id);
    while (!atomic_load(&r->stop)) {
        /* what had returned before this search started */
        int late_in = atomic_load(&r->ingested), gone[NFORGET];
        for (int k = 0; k < NFORGET; k++)
            gone[k] = atomic_load(&r->forgotten[k]);
        int want = pick(&seed, late_in);
        lethe_search_options so;
        lethe_search_options_init(&so);
        snprintf(purpose, sizeof(purpose), "n%d", me->n);
        so.purpose = purpose;
        so.actor = actor;
        so.top_k = 3;
        so.threads = 1;
        lethe_match *m = NULL;
        size_t nm = 0;
        int rc = lethe_search(r->s, vecs[want], 1, &so, &m, &nm);
        atomic_fetch_add(&r->searches, 1);
        if (rc != LETHE_OK) {
            atomic_fetch_add(&r->failures, 1);
            fprintf(stderr, "  search failed: %s\n", lethe_store_errmsg(r->s));
            break;
        }
        me->n++;
        int found = 0;
        for (size_t i = 0; i < nm; i++) {
            int u = m[i].prov.uploader ? atoi(m[i].prov.uploader + 1) : -1;
            if (u >= 0 && u < NFORGET && gone[u])
                atomic_fetch_add(&r->violations, 1);
            found |= u == want && m[i].distance == 0.0f;
        }
        /* held when it ended and no forget of it had begun (one under way
         * may hide it from the moment its catalog commit is done) */
        int should = want < NFORGET ? !atomic_load(&r->forgetting[want])
                                    : want < NFACES + late_in;
        if (should && !found) {
            atomic_fetch_add(&r->missed, 1);
            fprintf(stderr, "  face %d (late faces in: %d) not found; %zu matches, first u%s at %g\n",
                    want, late_in, nm, nm ? m[0].prov.uploader + 1 : "-", nm ? m[0].distance : -1.0);
        }
        lethe_matches_free(m, nm);
    }
    return NULL;
}

/* Every search's entry is in the log, each thread's in the order made. */
static void check_log_order(lethe_store *s, const searcher *sr, int n)
{
    char *log = NULL;
    int next[NSEARCHERS] = {0}, bad = 0;
    CHECK_EQ_INT(lethe_log_export(s, "jsonl", &log), LETHE_OK);
    for (char *line = log; line && *line;) {
        char *end = strchr(line, '\n');
        if (end)
            *end = 0;
        const char *a = strstr(line, "\"actor\":\"t"), *p = strstr(line, "\"purpose\":\"n");
        if (strstr(line, "\"kind\":\"search\"") && a && p) {
            int t = atoi(a + 10), k = atoi(p + 12);
            if (t < 0 || t >= n || k != next[t])
                bad++;
            else
                next[t]++;
        }
        line = end ? end + 1 : NULL;
    }
    lethe_free_string(log);
    CHECK_EQ_INT(bad, 0);
    for (int t = 0; t < n; t++)
        CHECK_EQ_INT(next[t], sr[t].n);
}

static void test_search_beside_ingest_and_forget(void)
{
    char dir[300];
    lethe_store *s = open_shared(dir, sizeof(dir), 1);
    if (!s)
        return;
    CHECK_EQ_INT(ingest(s, 0, NFACES), LETHE_OK);
    static race r;
    memset(&r, 0, sizeof(r));
    r.s = s;
    pthread_t t[NSEARCHERS];
    searcher sr[NSEARCHERS];
    for (int i = 0; i < NSEARCHERS; i++) {
        sr[i] = (searcher){&r, i, 0};
        pthread_create(&t[i], NULL, search_loop, &sr[i]);
    }
    /* the writer: a forget, then a batch of late faces, in turn (the
     * caller orders the writes: this thread is the only writer) */
    for (int k = 0; k < NFORGET; k++) {
        usleep(20000);
        char up[32];
        snprintf(up, sizeof(up), "u%d", k);
        lethe_selector sel = {.uploader = up};
        atomic_store(&r.forgetting[k], 1);
        lethe_forget_result fr;
        char *receipt = NULL;
        int rc = lethe_forget(s, &sel, 0, "test", &fr, &receipt, NULL);
        CHECK_EQ_INT(rc, LETHE_OK);
        CHECK_EQ_INT(fr.faces, 1);
        lethe_free_string(receipt);
        atomic_store(&r.forgotten[k], 1);
        /* the log verifies while searches commit theirs */
        for (int v = 0; v < 20; v++) {
            uint64_t n = 0, bad = 0;
            rc = lethe_log_verify(s, &n, &bad);
            CHECK_EQ_INT(rc, LETHE_OK);
            if (rc)
                fprintf(stderr, "  log verify: %s\n", lethe_store_errmsg(s));
        }
        int from = NFACES + k * (NLATE / NFORGET), to = from + NLATE / NFORGET;
        CHECK_EQ_INT(ingest(s, from, to), LETHE_OK);
        atomic_store(&r.ingested, to - NFACES);
    }
    usleep(20000);
    atomic_store(&r.stop, 1);
    for (int i = 0; i < NSEARCHERS; i++)
        pthread_join(t[i], NULL);
    CHECK_EQ_INT(atomic_load(&r.failures), 0);
    CHECK_EQ_INT(atomic_load(&r.violations), 0);
    CHECK_EQ_INT(atomic_load(&r.missed), 0);
    CHECK(atomic_load(&r.searches) > 2 * NSEARCHERS);
    share_stats st;
    share_get_stats(s, &st);
    CHECK_EQ_INT((long)st.entries, atomic_load(&r.searches));
    /* the group commit groups: fewer commits than searches */
    CHECK(st.commits < st.entries);
    CHECK(st.views >= 1 && st.views <= NSEARCHERS);
    fprintf(stderr, "  %ld searches in %llu commits on %llu views\n", atomic_load(&r.searches),
            (unsigned long long)st.commits, (unsigned long long)st.views);
    uint64_t n = 0, bad = 0;
    CHECK_EQ_INT(lethe_log_verify(s, &n, &bad), LETHE_OK);
    check_log_order(s, sr, NSEARCHERS);
    lethe_store_close(s);
}

/* ------------------------------------------------------- group commit */

typedef struct one {
    lethe_store *s;
    int i;
    int rc;
    char msg[256];
} one;

static void *search_once(void *arg)
{
    one *o = arg;
    lethe_search_options so;
    lethe_search_options_init(&so);
    so.purpose = "group";
    so.threads = 1;
    lethe_match *m = NULL;
    size_t nm = 0;
    o->rc = lethe_search(o->s, vecs[o->i], 1, &so, &m, &nm);
    snprintf(o->msg, sizeof(o->msg), "%s", lethe_store_errmsg(o->s));
    if (o->rc == LETHE_OK && (nm == 0 || !m))
        o->rc = -1;
    if (o->rc != LETHE_OK && (m || nm))
        o->rc = -2; /* a failed search returned results */
    lethe_matches_free(m, nm);
    return NULL;
}

/* n searches that all wait for one group; fail_after: the allocation the
 * group's leader fails at (-1: none). Returns the common status (or -3
 * when the statuses differ). */
static int one_group(lethe_store *s, int n, long fail_after, one *o)
{
    pthread_t t[16];
    share_test_hold(s, 1);
    for (int i = 0; i < n; i++) {
        o[i] = (one){s, i * 5, 0, ""};
        pthread_create(&t[i], NULL, search_once, &o[i]);
    }
    for (int w = 0; share_test_queued(s) < n && w < 60000; w++)
        usleep(1000);
    CHECK_EQ_INT(share_test_queued(s), n);
    lethe_alloc_fail_after(fail_after);
    share_test_hold(s, 0);
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    lethe_alloc_fail_after(-1);
    for (int i = 1; i < n; i++)
        if (o[i].rc != o[0].rc)
            return -3;
    return o[0].rc;
}

static void test_group_commit_groups(void)
{
    char dir[300];
    one o[16];
    lethe_store *s = open_shared(dir, sizeof(dir), 1);
    if (!s)
        return;
    CHECK_EQ_INT(ingest(s, 0, 200), LETHE_OK);
    share_stats a, b;
    share_get_stats(s, &a);
    int64_t before = log_seq(s);
    CHECK_EQ_INT(one_group(s, 8, -1, o), LETHE_OK);
    share_get_stats(s, &b);
    /* eight searches, one transaction */
    CHECK_EQ_INT((long)(b.commits - a.commits), 1);
    CHECK_EQ_INT((long)(b.entries - a.entries), 8);
    CHECK_EQ_INT(log_seq(s), before + 8);
    lethe_store_close(s);
}

static void test_group_commit_out_of_memory(void)
{
    char dir[300];
    one o[16];
    lethe_store *s = open_shared(dir, sizeof(dir), 1);
    if (!s)
        return;
    CHECK_EQ_INT(ingest(s, 0, 200), LETHE_OK);
    int k, failed = 0, rc = LETHE_ERR_NOMEM;
    for (k = 0; k < 5000; k++) {
        int64_t before = log_seq(s);
        rc = one_group(s, 6, k, o);
        int64_t after = log_seq(s);
        if (rc == LETHE_OK) {
            CHECK_EQ_INT(after, before + 6); /* all logged */
            break;
        }
        failed++;
        /* every search of the group failed, none of them is logged */
        CHECK_EQ_INT(rc, LETHE_ERR_NOMEM);
        CHECK_EQ_INT(after, before);
        CHECK(strstr(o[0].msg, "logging the search") != NULL);
        if (rc != LETHE_ERR_NOMEM || after != before) {
            fprintf(stderr, "  at allocation %d: status %d, %lld entries: %s\n", k, rc,
                    (long long)(after - before), o[0].msg);
            break;
        }
    }
    CHECK_EQ_INT(rc, LETHE_OK);
    CHECK(failed > 0);
    fprintf(stderr, "  the group failed at each of its first %d allocations\n", failed);
    /* a clean group afterwards (it rewrites log.head), then the log verifies */
    CHECK_EQ_INT(one_group(s, 3, -1, o), LETHE_OK);
    uint64_t n = 0, bad = 0;
    CHECK_EQ_INT(lethe_log_verify(s, &n, &bad), LETHE_OK);
    lethe_store_close(s);
}

/* ------------------------------------------------------------ messages */

typedef struct errs {
    lethe_store *s;
    int kind;
    int wrong;
} errs;

static void *fail_loop(void *arg)
{
    errs *e = arg;
    static const char *want[] = {"needs a purpose", "more than 10000", "non-finite"};
    float q[128];
    memcpy(q, vecs[1], sizeof(q));
    if (e->kind == 2)
        q[5] = NAN;
    for (int i = 0; i < 200; i++) {
        lethe_search_options so;
        lethe_search_options_init(&so);
        so.purpose = e->kind == 0 ? "" : "p";
        so.top_k = e->kind == 1 ? 20000 : 5;
        lethe_match *m = NULL;
        size_t nm = 0;
        int rc = lethe_search(e->s, q, 1, &so, &m, &nm);
        if (rc != LETHE_ERR_ARG || !strstr(lethe_store_errmsg(e->s), want[e->kind]))
            e->wrong++;
        lethe_matches_free(m, nm);
    }
    return NULL;
}

static void test_messages_per_thread(void)
{
    char dir[300];
    lethe_store *s = open_shared(dir, sizeof(dir), 1);
    if (!s)
        return;
    CHECK_EQ_INT(ingest(s, 0, 50), LETHE_OK);
    pthread_t t[3];
    errs e[3];
    for (int i = 0; i < 3; i++) {
        e[i] = (errs){s, i, 0};
        pthread_create(&t[i], NULL, fail_loop, &e[i]);
    }
    /* this thread's own failure (a writer call) is its own message */
    lethe_selector sel = {0};
    lethe_forget_result fr;
    char *receipt = NULL;
    int rc = lethe_forget(s, &sel, 0, "test", &fr, &receipt, NULL);
    CHECK(rc != LETHE_OK);
    char mine[512];
    snprintf(mine, sizeof(mine), "%s", lethe_store_errmsg(s));
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(e[i].wrong, 0);
    CHECK(strcmp(mine, "no error") != 0);
    CHECK(!strcmp(mine, lethe_store_errmsg(s)));
    lethe_store_close(s);
    /* a read-only shared handle searches refuse as on any handle */
    CHECK((s = open_shared(dir, sizeof(dir), 0)) != NULL);
    lethe_store_close(s);
    lethe_store *ro = NULL;
    CHECK_EQ_INT(lethe_store_open(dir, LETHE_STORE_READONLY | LETHE_STORE_SHARED, &ro), LETHE_OK);
    lethe_search_options so;
    lethe_search_options_init(&so);
    so.purpose = "p";
    lethe_match *m = NULL;
    size_t nm = 0;
    CHECK_EQ_INT(lethe_search(ro, vecs[3], 1, &so, &m, &nm), LETHE_ERR_ARG);
    CHECK(strstr(lethe_store_errmsg(ro), "read-only") != NULL);
    CHECK(m == NULL && nm == 0);
    lethe_store_close(ro);
}

/* Another handle (as `lethe log verify` in another process) verifies the
 * log while the shared handle's group commits go on: every verification
 * passes. (The anchor file log.head is rewritten after each commit; read
 * after the verifier's snapshot began, it named entries the snapshot did
 * not hold, and an intact log was reported cut short.) */
static void test_log_verify_beside_commits(void)
{
    char dir[300];
    lethe_store *s = open_shared(dir, sizeof(dir), 1), *v = NULL;
    if (!s)
        return;
    CHECK_EQ_INT(ingest(s, 0, NFACES), LETHE_OK);
    race *r = calloc(1, sizeof(*r));
    searcher sr[2];
    pthread_t t[2];
    r->s = s;
    for (int i = 0; i < NFORGET; i++)
        atomic_store(&r->forgetting[i], 1); /* none of them is asked to be found */
    atomic_store(&r->ingested, 0);
    for (int i = 0; i < 2; i++) {
        sr[i] = (searcher){r, i, 0};
        pthread_create(&t[i], NULL, search_loop, &sr[i]);
    }
    CHECK_EQ_INT(lethe_store_open(dir, LETHE_STORE_READONLY, &v), LETHE_OK);
    int failed = 0, runs = 0;
    /* until 300 searches were committed beside it (and at least 20 runs) */
    for (; v && runs < 100000 && (runs < 20 || atomic_load(&r->searches) < 300); runs++) {
        uint64_t entries = 0, first_bad = 0;
        if (lethe_log_verify(v, &entries, &first_bad) != LETHE_OK && failed++ == 0)
            fprintf(stderr, "  verification %d of %llu entries: %s\n", runs,
                    (unsigned long long)entries, lethe_store_errmsg(v));
    }
    atomic_store(&r->stop, 1);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    CHECK_EQ_INT(failed, 0);
    CHECK_EQ_INT(atomic_load(&r->failures), 0);
    CHECK(sr[0].n + sr[1].n >= 300); /* the commits did run beside it */
    fprintf(stderr, "  %d verifications beside %d searches\n", runs, sr[0].n + sr[1].n);
    lethe_store_close(v);
    lethe_store_close(s);
    free(r);
}

int main(int argc, char **argv)
{
    test_select(argc, argv);
    /* SQLite's allocations through lethe_malloc, so that the countdown
     * reaches inside the group commit's transaction */
    if (faultvfs_install(1) != SQLITE_OK) {
        fprintf(stderr, "cannot install the fault VFS\n");
        return 1;
    }
    snprintf(root, sizeof(root), "/tmp/lethe-test-conc-XXXXXX");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    make_vecs();
    RUN(test_search_beside_ingest_and_forget);
    RUN(test_group_commit_groups);
    RUN(test_group_commit_out_of_memory);
    RUN(test_messages_per_thread);
    RUN(test_log_verify_beside_commits);
    faultvfs_reset_calls();
    fprintf(stderr, "SQLite write calls after: %ld\n", faultvfs_calls());
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", root);
    return test_summary();
}
