/*
 * forget_fixture.h: the synthetic stores the forgetting tests build
 * (test_forget.c, test_forget_paths.c, test_forget_damage.c), header-only
 * like test.h, so each test file gets the same people, provenance and
 * checks without copying them.
 *
 * FX_PEOPLE people with FX_FACES photos each (one face a photo, descriptors
 * close to the person's centre), N = FX_PEOPLE * FX_FACES rows. Row i:
 *   uploader "person<i / FX_FACES>", url "https://photos.example/<i>",
 *   photo id "photo-<i>", source "site-a" for the first half and "site-b"
 *   for the rest, jurisdiction "GB-SCT" when i % 4 == 0 and "US" otherwise,
 *   consent "explicit", collected "<1995 + i % FX_YEARS>-06-01" unless
 *   i % 3 == 0 (undated).
 * A test file may define FX_PEOPLE, FX_FACES, FX_YEARS and FX_SEED before
 * including this header (defaults: 12, 10, 20, 777, test_forget.c's).
 *
 * Every store goes in a folder of its own under root (fx_root_make), which
 * fx_root_remove deletes at the end.
 */
#ifndef LETHE_FORGET_FIXTURE_H
#define LETHE_FORGET_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lethe.h"
#include "test.h"

#ifndef FX_PEOPLE
#define FX_PEOPLE 12
#endif
#ifndef FX_FACES
#define FX_FACES 10
#endif
#ifndef FX_YEARS
#define FX_YEARS 20
#endif
#ifndef FX_SEED
#define FX_SEED 777
#endif
#define N (FX_PEOPLE * FX_FACES)

static char root[256];
static int nstore;
static unsigned rng = FX_SEED;
static float vecs[N][128];

/* A temporary folder for this test file's stores: $TMPDIR (or /tmp)/name-XXXXXX. */
static inline int fx_root_make(const char *name)
{
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(root, sizeof(root), "%s/%s-XXXXXX", base, name);
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return -1;
    }
    return 0;
}

static inline void fx_root_remove(void)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", root);
}

static inline void new_dir(char *out, size_t n)
{
    snprintf(out, n, "%s/s%d", root, nstore++);
}

static inline float frand(void)
{
    rng = rng * 1103515245u + 12345u;
    return (float)((rng >> 8) & 0xFFFF) / 65536.0f - 0.5f;
}

static inline void make_vecs(void)
{
    for (int p = 0; p < FX_PEOPLE; p++) {
        float c[128];
        for (int k = 0; k < 128; k++)
            c[k] = frand() * 0.4f;
        for (int j = 0; j < FX_FACES; j++)
            for (int k = 0; k < 128; k++)
                vecs[p * FX_FACES + j][k] = c[k] + frand() * 0.04f;
    }
}

/* Row i's provenance (see above), in the caller's buffers. */
static inline void prov_of(int i, char up[32], char url[48], char id[32], char at[16],
                           lethe_provenance *p)
{
    snprintf(up, 32, "person%d", i / FX_FACES);
    snprintf(url, 48, "https://photos.example/%d", i);
    snprintf(id, 32, "photo-%d", i);
    snprintf(at, 16, "%d-06-01", 1995 + i % FX_YEARS);
    memset(p, 0, sizeof(*p));
    p->uploader = up;
    p->url = url;
    p->photo_id = id;
    p->source = i < N / 2 ? "site-a" : "site-b";
    p->jurisdiction = i % 4 == 0 ? "GB-SCT" : "US";
    p->consent = "explicit";
    p->collected_at = i % 3 ? at : NULL;
}

/* Ingest rows [from, to) but those where skip(i) (skip may be NULL); the
 * batch's counts into st (may be NULL). */
static inline int ingest(lethe_store *s, int from, int to, int (*skip)(int),
                         lethe_ingest_stats *st)
{
    lethe_ingest_options o;
    lethe_ingest *g = NULL;
    lethe_ingest_options_init(&o);
    o.actor = "test";
    int rc = lethe_ingest_begin(s, &o, &g);
    for (int i = from; i < to && rc == LETHE_OK; i++) {
        char up[32], url[48], id[32], at[16];
        lethe_provenance p;
        if (skip && skip(i))
            continue;
        prov_of(i, up, url, id, at, &p);
        rc = lethe_ingest_descriptor(g, vecs[i], &p, (size_t)i + 1);
    }
    int rc2 = g ? lethe_ingest_end(g, st) : LETHE_OK;
    return rc ? rc : rc2;
}

/* A new store in a new folder (its path into dir) with every row but
 * those skip() names; NULL (a failed check) if it cannot be made. */
static inline lethe_store *make_store(char *dir, size_t n, int (*skip)(int))
{
    lethe_store *s = NULL;
    new_dir(dir, n);
    int rc = lethe_store_open(dir, LETHE_STORE_CREATE, &s);
    if (rc == LETHE_OK)
        rc = ingest(s, 0, N, skip, NULL);
    CHECK_EQ_INT(rc, LETHE_OK);
    if (rc) {
        fprintf(stderr, "  %s\n", lethe_store_errmsg(s));
        lethe_store_close(s);
        return NULL;
    }
    return s;
}

/* The digest recomputed from the rows (into hex); it must equal the kept one. */
static inline void digest(lethe_store *s, char hex[65])
{
    int matches = 0;
    CHECK_EQ_INT(lethe_store_digest_full(s, hex, &matches), LETHE_OK);
    CHECK(matches);
}

/* The log's entry count; the log must verify. */
static inline int64_t log_entries(lethe_store *s)
{
    uint64_t n = 0, bad = 0;
    CHECK_EQ_INT(lethe_log_verify(s, &n, &bad), LETHE_OK);
    CHECK_EQ_INT(bad, 0);
    return (int64_t)n;
}

/* A shell command that must succeed (copies of stores). */
static inline int run(const char *cmd)
{
    int rc = system(cmd);
    CHECK_EQ_INT(rc, 0);
    return rc;
}

/* The store in dir opens, its log verifies, and its digest (into hex). */
static inline int sound(const char *dir, char hex[65])
{
    lethe_store *s = NULL;
    int rc = lethe_store_open(dir, 0, &s);
    CHECK_EQ_INT(rc, LETHE_OK);
    if (rc == LETHE_OK) {
        log_entries(s);
        digest(s, hex);
    }
    lethe_store_close(s);
    return rc;
}

#endif
