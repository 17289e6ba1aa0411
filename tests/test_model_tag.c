/*
 * test_model_tag.c: templates that know their model, through the public
 * API: two models in one store and searches that never mix them; a model
 * retired (no byte of its templates left in any file, the digest of a
 * store that never held them, its queries and its ingests refused, a
 * signed receipt the store accepts); searches refused while only other
 * models' templates are held; lethe_retemplate describing the photos again
 * from their recorded paths, and listing a moved and a changed file.
 */
#include <ftw.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FX_PEOPLE 6
#define FX_FACES 8
#include "forget_fixture.h"
#include "util/util.h"

/* Rows [0, N/2) are of the shipped model, [N/2, N) of "other-net@2.0". */
static lethe_model_id other;

static int ingest_model(lethe_store *s, int from, int to, const lethe_model_id *m)
{
    lethe_ingest_options o;
    lethe_ingest *g = NULL;
    lethe_ingest_options_init(&o);
    o.actor = "test";
    o.model = m;
    int rc = lethe_ingest_begin(s, &o, &g);
    for (int i = from; i < to && rc == LETHE_OK; i++) {
        char up[32], url[48], id[32], at[16];
        lethe_provenance p;
        prov_of(i, up, url, id, at, &p);
        rc = lethe_ingest_descriptor(g, vecs[i], &p, (size_t)i + 1);
    }
    int rc2 = g ? lethe_ingest_end(g, NULL) : LETHE_OK;
    return rc ? rc : rc2;
}

/* -------------------------------------------------- residue scanning */

static const float (*scan_vecs)[128];
static int scan_from, scan_to, scan_hits, scan_quiet;

/* Each vector's whole 512 bytes and each 64-byte eighth, in every file. */
static int scan_file(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    uint8_t *b = NULL;
    size_t n = 0;
    char msg[256];
    (void)sb;
    (void)ftw;
    if (type != FTW_F || lethe_read_file(path, 1u << 30, &b, &n, msg, sizeof(msg)))
        return 0;
    for (int i = scan_from; i < scan_to; i++)
        for (int part = 0; part < 8; part++)
            if (memmem(b, n, scan_vecs[i] + part * 16, 64)) {
                if (!scan_quiet)
                    fprintf(stderr, "  residue of row %d (eighth %d) in %s\n", i, part, path);
                scan_hits++;
                break;
            }
    lethe_free(b);
    return 0;
}

/* Rows [from, to) found in the files of dir; quiet: found is expected. */
static int residue(const char *dir, int from, int to, int quiet)
{
    scan_quiet = quiet;
    scan_vecs = (const float (*)[128])vecs;
    scan_from = from;
    scan_to = to;
    scan_hits = 0;
    CHECK_EQ_INT(nftw(dir, scan_file, 16, FTW_PHYS), 0);
    return scan_hits;
}

/* ------------------------------------------------------------- tests */

static size_t search_count(lethe_store *s, const float *q, const lethe_model_id *m, int *rc)
{
    lethe_search_options so;
    lethe_match *mt = NULL;
    size_t nm = 0;
    lethe_search_options_init(&so);
    so.purpose = "model test";
    so.top_k = 1000;
    so.model = m;
    *rc = lethe_search(s, q, 1, &so, &mt, &nm);
    lethe_matches_free(mt, nm);
    return nm;
}

static void test_two_models_never_mix(void)
{
    char dir[300];
    lethe_store *s = NULL;
    int rc;
    new_dir(dir, sizeof(dir));
    CHECK_EQ_INT(lethe_store_open(dir, LETHE_STORE_CREATE, &s), LETHE_OK);
    CHECK_EQ_INT(ingest_model(s, 0, N / 2, NULL), LETHE_OK);
    CHECK_EQ_INT(ingest_model(s, N / 2, N, &other), LETHE_OK);
    /* a query of either model finds exactly that model's templates, even
     * the very vector of the other model */
    CHECK_EQ_INT(search_count(s, vecs[N - 1], NULL, &rc), N / 2);
    CHECK_EQ_INT(rc, LETHE_OK);
    CHECK_EQ_INT(search_count(s, vecs[0], &other, &rc), N - N / 2);
    CHECK_EQ_INT(rc, LETHE_OK);
    {
        lethe_search_options so;
        lethe_match *mt = NULL;
        size_t nm = 0;
        lethe_search_options_init(&so);
        so.purpose = "model test";
        so.top_k = 1;
        so.model = &other;
        CHECK_EQ_INT(lethe_search(s, vecs[N - 1], 1, &so, &mt, &nm), LETHE_OK);
        CHECK(nm == 1 && mt[0].distance == 0.0f);
        CHECK_EQ_INT(mt[0].gallery, N - N / 2); /* the evidence counts that model only */
        lethe_matches_free(mt, nm);
        so.model = NULL; /* the shipped model's nearest is not row N-1 */
        CHECK_EQ_INT(lethe_search(s, vecs[N - 1], 1, &so, &mt, &nm), LETHE_OK);
        CHECK(nm == 1 && mt[0].distance > 0.0f);
        lethe_matches_free(mt, nm);
    }
    /* a model the store never saw: refused, not an empty answer */
    lethe_model_id unseen;
    char msg[256];
    CHECK_EQ_INT(lethe_model_parse("unseen@1", &unseen, msg, sizeof(msg)), LETHE_OK);
    search_count(s, vecs[0], &unseen, &rc);
    CHECK_EQ_INT(rc, LETHE_ERR_NOT_FOUND);
    CHECK(strstr(lethe_store_errmsg(s), "unseen@1") != NULL);
    /* the gallery a search compares against is its model's, not the index */
    {
        uint64_t g = 0;
        CHECK_EQ_INT(lethe_store_templates(s, &g), LETHE_OK);
        CHECK_EQ_INT(g, N);
        CHECK_EQ_INT(lethe_search_gallery(s, NULL, &g), LETHE_OK);
        CHECK_EQ_INT(g, N / 2);
        CHECK_EQ_INT(lethe_search_gallery(s, &other, &g), LETHE_OK);
        CHECK_EQ_INT(g, N - N / 2);
        CHECK_EQ_INT(lethe_search_gallery(s, &unseen, &g), LETHE_ERR_NOT_FOUND);
        CHECK_EQ_INT(g, 0);
    }
    /* verify compares the same model only */
    lethe_search_options so;
    lethe_verify_result vr;
    lethe_search_options_init(&so);
    so.purpose = "model test";
    so.model = &other;
    CHECK_EQ_INT(lethe_verify(s, vecs[0], LETHE_LOOKUP_UPLOADER, "person0", &so, &vr),
                 LETHE_ERR_NOT_FOUND); /* person0's rows are of the shipped model */
    so.model = NULL;
    CHECK_EQ_INT(lethe_verify(s, vecs[0], LETHE_LOOKUP_UPLOADER, "person0", &so, &vr), LETHE_OK);
    CHECK(vr.templates == FX_FACES && vr.distance == 0.0f);
    /* the list */
    lethe_model_info *ml = NULL;
    size_t nml = 0;
    CHECK_EQ_INT(lethe_model_list(s, &ml, &nml), LETHE_OK);
    CHECK_EQ_INT(nml, 2);
    if (nml == 2) {
        lethe_model_id shipped;
        lethe_model_shipped(&shipped);
        CHECK(ml[0].shipped && ml[0].templates == N / 2 && !ml[0].retired_at[0]);
        CHECK(!strcmp(ml[0].model.name, shipped.name) &&
              !strcmp(ml[0].model.version, shipped.version) &&
              !strcmp(ml[0].model.weights, shipped.weights) &&
              !strcmp(ml[0].model.precision, shipped.precision));
        CHECK_EQ_INT(strlen(shipped.weights), 64);
        CHECK(!ml[1].shipped && ml[1].templates == N - N / 2);
        CHECK(!strcmp(ml[1].model.name, "other-net") && !strcmp(ml[1].model.version, "2.0"));
    }
    lethe_free_models(ml);
    lethe_model_info info;
    CHECK_EQ_INT(lethe_model_find(s, "other-net", &info), LETHE_OK);
    CHECK_EQ_INT(lethe_model_find(s, "2", &info), LETHE_OK);
    CHECK(!strcmp(info.model.name, "other-net"));
    CHECK_EQ_INT(lethe_model_find(s, "nope@1", &info), LETHE_ERR_NOT_FOUND);
    CHECK_EQ_INT(lethe_model_find(s, "bad name", &info), LETHE_ERR_ARG);
    /* a declared model must be well formed */
    lethe_model_id badm;
    memset(&badm, 0, sizeof(badm));
    snprintf(badm.name, sizeof(badm.name), "x\"y");
    CHECK_EQ_INT(ingest_model(s, 0, 1, &badm), LETHE_ERR_ARG);
    lethe_store_close(s);
}

static void test_retire(void)
{
    char dir[300], ref[300], before[65], after[65], fresh[65];
    lethe_store *s = NULL, *r = NULL;
    lethe_forget_result res;
    char *receipt = NULL;
    int rc;
    new_dir(dir, sizeof(dir));
    CHECK_EQ_INT(lethe_store_open(dir, LETHE_STORE_CREATE, &s), LETHE_OK);
    CHECK_EQ_INT(ingest_model(s, 0, N / 2, NULL), LETHE_OK);
    CHECK_EQ_INT(ingest_model(s, N / 2, N, &other), LETHE_OK);
    lethe_store_close(s);
    s = NULL;
    /* the scanner sees the other model's templates before (in the WAL
     * or the catalog): it can fail */
    CHECK(residue(dir, N / 2, N, 1) > 0);
    CHECK_EQ_INT(lethe_store_open(dir, 0, &s), LETHE_OK);
    digest(s, before);
    /* a dry run changes nothing; without confirmation nothing goes */
    CHECK_EQ_INT(lethe_model_retire(s, "other-net@2.0", LETHE_FORGET_DRY_RUN, "test", &res,
                                    &receipt), LETHE_OK);
    CHECK(receipt == NULL);
    CHECK_EQ_INT(res.templates, N - N / 2);
    CHECK_EQ_INT(lethe_model_retire(s, "other-net", 0, "test", &res, &receipt),
                 LETHE_ERR_CONFIRM);
    CHECK(receipt == NULL);
    digest(s, after);
    CHECK(!strcmp(before, after));
    CHECK_EQ_INT(lethe_model_retire(s, "other-net", LETHE_FORGET_CONFIRMED, "regulator", &res,
                                    &receipt), LETHE_OK);
    CHECK(receipt != NULL);
    CHECK_EQ_INT(res.templates, N - N / 2);
    CHECK_EQ_INT(res.photos, N - N / 2); /* descriptor rows go whole */
    CHECK(!strcmp(res.digest_before, before));
    if (receipt) {
        CHECK_EQ_INT(lethe_receipt_check(s, receipt, strlen(receipt)), LETHE_OK);
        CHECK(strstr(receipt, "\"kind\":\"retire\"") != NULL);
        CHECK(strstr(receipt, "\"name\":\"other-net\"") != NULL);
    }
    lethe_free_string(receipt);
    receipt = NULL;
    digest(s, after);
    CHECK(!strcmp(res.digest_after, after));
    /* the digest is that of a store that never held them */
    new_dir(ref, sizeof(ref));
    CHECK_EQ_INT(lethe_store_open(ref, LETHE_STORE_CREATE, &r), LETHE_OK);
    CHECK_EQ_INT(ingest_model(r, 0, N / 2, NULL), LETHE_OK);
    digest(r, fresh);
    CHECK(!strcmp(after, fresh));
    lethe_store_close(r);
    /* its queries, its ingests and a second retirement are refused */
    search_count(s, vecs[N - 1], &other, &rc);
    CHECK_EQ_INT(rc, LETHE_ERR_POLICY);
    CHECK_EQ_INT(ingest_model(s, N / 2, N / 2 + 1, &other), LETHE_ERR_POLICY);
    CHECK(strstr(lethe_store_errmsg(s), "retired") != NULL);
    CHECK_EQ_INT(lethe_model_retire(s, "other-net", LETHE_FORGET_CONFIRMED, "test", &res,
                                    &receipt), LETHE_ERR_ARG);
    /* the shipped model's search goes on */
    CHECK_EQ_INT(search_count(s, vecs[0], NULL, &rc), N / 2);
    CHECK_EQ_INT(rc, LETHE_OK);
    lethe_model_info info;
    CHECK_EQ_INT(lethe_model_find(s, "other-net", &info), LETHE_OK);
    CHECK(info.retired_at[0] && info.templates == 0);
    log_entries(s);
    lethe_store_close(s);
    /* no byte of a retired template in any file of the store */
    CHECK_EQ_INT(residue(dir, N / 2, N, 0), 0);
    CHECK(residue(dir, 0, N / 2, 1) > 0); /* the scan still sees what stays */
}

/* ------------------------------------------------ photos: retemplate */

static int copy_file(const char *from, const char *to)
{
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", from, to);
    return run(cmd);
}

/* The shipped model row made to look like an older release's: the store
 * then holds templates the engine's queries cannot be compared with (what
 * a store made by an older lethe holds after an upgrade). */
static int age_model(const char *dir)
{
    char path[400];
    sqlite3 *db = NULL;
    snprintf(path, sizeof(path), "%s/catalog.db", dir);
    int rc = sqlite3_open(path, &db);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "UPDATE models SET version = '1.7.14-test' WHERE id = 1", NULL,
                          NULL, NULL);
    sqlite3_close(db);
    CHECK_EQ_INT(rc, SQLITE_OK);
    return rc;
}

static void test_retemplate(void)
{
    char dir[300], ref[300], photos[300], p[3][400], msg[256], d1[65], d2[65];
    lethe_engine_options eo;
    lethe_engine *e = NULL;
    lethe_store *s = NULL;
    lethe_forget_result res;
    lethe_retemplate_result rr;
    char *receipt = NULL;
    uint8_t *b = NULL;
    size_t len = 0;
    int rc;
    if (lethe_read_file("samples/sample1.jpg", 1u << 24, &b, &len, msg, sizeof(msg)))
        SKIP("samples/sample1.jpg absent (run scripts/setup.sh)");
    lethe_free(b);
    lethe_engine_options_init(&eo);
    eo.threads = 1;
    if (lethe_engine_open(&e, &eo) != LETHE_OK) {
        lethe_engine_close(e);
        SKIP("models absent (set LETHE_MODELS)");
    }
    new_dir(photos, sizeof(photos));
    CHECK_EQ_INT(mkdir(photos, 0700), 0);
    for (int i = 0; i < 3; i++) {
        char from[64];
        snprintf(from, sizeof(from), "samples/sample%d.jpg", i + 1);
        snprintf(p[i], sizeof(p[i]), "%s/photo%d.jpg", photos, i);
        copy_file(from, p[i]);
    }
    /* the store: three photos described by "an older model" */
    new_dir(dir, sizeof(dir));
    CHECK_EQ_INT(lethe_store_open(dir, LETHE_STORE_CREATE, &s), LETHE_OK);
    lethe_ingest_options o;
    lethe_ingest *g = NULL;
    lethe_provenance pv;
    memset(&pv, 0, sizeof(pv));
    pv.consent = "explicit";
    pv.jurisdiction = "US";
    lethe_ingest_options_init(&o);
    o.engine = e;
    CHECK_EQ_INT(lethe_ingest_begin(s, &o, &g), LETHE_OK);
    for (int i = 0; i < 3 && g; i++)
        CHECK_EQ_INT(lethe_ingest_photo(g, p[i], &pv, 0), LETHE_OK);
    CHECK_EQ_INT(lethe_ingest_end(g, NULL), LETHE_OK);
    lethe_store_close(s);
    s = NULL;
    age_model(dir);
    CHECK_EQ_INT(lethe_store_open(dir, 0, &s), LETHE_OK);
    float q[128];
    int nf = 0;
    {
        lethe_analysis a;
        CHECK_EQ_INT(lethe_engine_analyze_file(e, p[0], NULL, LETHE_WANT_DESCRIPTOR, &a, msg,
                                               sizeof(msg)), LETHE_OK);
        CHECK(a.count > 0);
        if (a.count > 0)
            memcpy(q, a.faces[0].descriptor, sizeof(q));
        nf = a.count;
        lethe_faces_free(a.faces);
    }
    /* only an older model's templates: the engine's queries are refused */
    search_count(s, q, NULL, &rc);
    CHECK_EQ_INT(rc, LETHE_ERR_NOT_FOUND);
    /* retire it: still refused until templates of the current model exist */
    CHECK_EQ_INT(lethe_model_retire(s, "face-api-resnet34@1.7.14-test", LETHE_FORGET_CONFIRMED,
                                    "test", &res, &receipt), LETHE_OK);
    CHECK(res.templates >= 3 && res.photos == 0); /* photos keep their rows */
    lethe_free_string(receipt);
    receipt = NULL;
    search_count(s, q, NULL, &rc);
    CHECK_EQ_INT(rc, LETHE_ERR_NOT_FOUND);
    /* photo1 moved away, photo2 changed */
    char moved[420];
    snprintf(moved, sizeof(moved), "%s.moved", p[1]);
    CHECK_EQ_INT(rename(p[1], moved), 0);
    FILE *f = fopen(p[2], "ab");
    CHECK(f != NULL);
    if (f) {
        fputc(0, f);
        fclose(f);
    }
    CHECK_EQ_INT(lethe_retemplate(s, e, "test", 1, NULL, NULL, &rr), LETHE_OK);
    CHECK_EQ_INT(rr.candidates, 3);
    CHECK_EQ_INT(rr.recomputed, 1);
    CHECK_EQ_INT(rr.nmissed, 2);
    lethe_retemplate_result_free(&rr);
    search_count(s, q, NULL, &rc); /* a dry run changed nothing */
    CHECK_EQ_INT(rc, LETHE_ERR_NOT_FOUND);
    CHECK_EQ_INT(lethe_retemplate(s, e, "test", 0, NULL, NULL, &rr), LETHE_OK);
    CHECK_EQ_INT(rr.recomputed, 1);
    CHECK_EQ_INT(rr.templates, (uint64_t)nf);
    CHECK_EQ_INT(rr.nmissed, 2);
    int seen_missing = 0, seen_changed = 0;
    for (size_t i = 0; i < rr.nmissed; i++) {
        if (!strcmp(rr.missed[i].reason, "missing") && !strcmp(rr.missed[i].path, p[1]))
            seen_missing = 1;
        if (!strcmp(rr.missed[i].reason, "changed") && !strcmp(rr.missed[i].path, p[2]))
            seen_changed = 1;
    }
    CHECK(seen_missing && seen_changed);
    lethe_retemplate_result_free(&rr);
    /* the current model's templates are back: the search answers */
    CHECK_EQ_INT(search_count(s, q, NULL, &rc), (size_t)nf);
    CHECK_EQ_INT(rc, LETHE_OK);
    /* photo1 back where it was: described too */
    CHECK_EQ_INT(rename(moved, p[1]), 0);
    CHECK_EQ_INT(lethe_retemplate(s, e, "test", 0, NULL, NULL, &rr), LETHE_OK);
    CHECK_EQ_INT(rr.candidates, 2);
    CHECK_EQ_INT(rr.recomputed, 1);
    lethe_retemplate_result_free(&rr);
    digest(s, d1);
    log_entries(s);
    lethe_store_close(s);
    /* photo2 as it was: the store equals one that ingested the three
     * photos with the current model directly */
    if (truncate(p[2], (off_t)0) == 0)
        copy_file("samples/sample3.jpg", p[2]);
    CHECK_EQ_INT(lethe_store_open(dir, 0, &s), LETHE_OK);
    CHECK_EQ_INT(lethe_retemplate(s, e, "test", 0, NULL, NULL, &rr), LETHE_OK);
    CHECK_EQ_INT(rr.recomputed, 1);
    lethe_retemplate_result_free(&rr);
    digest(s, d1);
    lethe_store_close(s);
    new_dir(ref, sizeof(ref));
    CHECK_EQ_INT(lethe_store_open(ref, LETHE_STORE_CREATE, &s), LETHE_OK);
    CHECK_EQ_INT(lethe_ingest_begin(s, &o, &g), LETHE_OK);
    for (int i = 0; i < 3 && g; i++)
        CHECK_EQ_INT(lethe_ingest_photo(g, p[i], &pv, 0), LETHE_OK);
    CHECK_EQ_INT(lethe_ingest_end(g, NULL), LETHE_OK);
    digest(s, d2);
    CHECK(!strcmp(d1, d2));
    lethe_store_close(s);
    lethe_engine_close(e);
}

/* A backup taken before a retirement, restored: the templates stay erased
 * (their photos' keys are gone) and the model stays retired. */
static void test_restore_keeps_retirement(void)
{
    char dir[300], bk[300], msg[256], *info = NULL, *receipt = NULL;
    lethe_store *s = NULL;
    lethe_forget_result res;
    lethe_restore_options ro;
    lethe_restore_result rr;
    int rc;
    new_dir(dir, sizeof(dir));
    new_dir(bk, sizeof(bk));
    CHECK_EQ_INT(lethe_store_open(dir, LETHE_STORE_CREATE, &s), LETHE_OK);
    CHECK_EQ_INT(ingest_model(s, 0, N / 2, NULL), LETHE_OK);
    CHECK_EQ_INT(ingest_model(s, N / 2, N, &other), LETHE_OK);
    CHECK_EQ_INT(lethe_backup(s, bk, "test", &info), LETHE_OK);
    lethe_free_string(info);
    CHECK_EQ_INT(lethe_model_retire(s, "other-net", LETHE_FORGET_CONFIRMED, "test", &res,
                                    &receipt), LETHE_OK);
    lethe_free_string(receipt);
    lethe_store_close(s);
    s = NULL;
    lethe_restore_options_init(&ro);
    ro.actor = "test";
    CHECK_EQ_INT(lethe_restore(bk, dir, &ro, &rr, msg, sizeof(msg)), LETHE_OK);
    CHECK_EQ_INT(lethe_store_open(dir, 0, &s), LETHE_OK);
    search_count(s, vecs[N - 1], &other, &rc);
    CHECK_EQ_INT(rc, LETHE_ERR_POLICY);
    CHECK_EQ_INT(ingest_model(s, N / 2, N, &other), LETHE_ERR_POLICY);
    CHECK_EQ_INT(search_count(s, vecs[0], NULL, &rc), N / 2);
    lethe_store_close(s);
    CHECK_EQ_INT(residue(dir, N / 2, N, 0), 0);
}

/* A format 2 catalog (as made before templates knew their model) is
 * migrated on its first writable open, refused read-only before. */
static void test_migrate_format2(void)
{
    char dir[300], path[400], before[65], after[65];
    lethe_store *s = NULL;
    sqlite3 *db = NULL;
    new_dir(dir, sizeof(dir));
    CHECK_EQ_INT(lethe_store_open(dir, LETHE_STORE_CREATE, &s), LETHE_OK);
    CHECK_EQ_INT(ingest_model(s, 0, N, NULL), LETHE_OK);
    digest(s, before);
    lethe_store_close(s);
    snprintf(path, sizeof(path), "%s/catalog.db", dir);
    CHECK_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
    CHECK_EQ_INT(sqlite3_exec(db, "DROP INDEX faces_model; ALTER TABLE faces DROP COLUMN model; "
                                  "ALTER TABLE faces DROP COLUMN detector; DROP TABLE models; "
                                  "UPDATE meta SET value = 2 WHERE key = 'format'",
                              NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    s = NULL;
    CHECK_EQ_INT(lethe_store_open(dir, LETHE_STORE_READONLY, &s), LETHE_ERR_STORE);
    CHECK(strstr(lethe_store_errmsg(s), "format 2") != NULL);
    lethe_store_close(s);
    s = NULL;
    CHECK_EQ_INT(lethe_store_open(dir, 0, &s), LETHE_OK);
    digest(s, after);
    CHECK(!strcmp(before, after)); /* the migration changes no content */
    int rc;
    CHECK_EQ_INT(search_count(s, vecs[0], NULL, &rc), N);
    CHECK_EQ_INT(rc, LETHE_OK);
    lethe_model_info *ml = NULL;
    size_t n = 0;
    CHECK_EQ_INT(lethe_model_list(s, &ml, &n), LETHE_OK);
    CHECK(n == 1 && ml[0].shipped && ml[0].templates == N);
    lethe_free_models(ml);
    log_entries(s);
    lethe_store_close(s);
    s = NULL;
    CHECK_EQ_INT(lethe_store_open(dir, LETHE_STORE_READONLY, &s), LETHE_OK);
    lethe_store_close(s);
}

int main(void)
{
    char msg[256];
    if (fx_root_make("lethe-model") < 0)
        return 1;
    make_vecs();
    if (lethe_model_parse("other-net@2.0", &other, msg, sizeof(msg)) != LETHE_OK)
        return 1;
    RUN(test_two_models_never_mix);
    RUN(test_retire);
    RUN(test_retemplate);
    RUN(test_restore_keeps_retirement);
    RUN(test_migrate_format2);
    fx_root_remove();
    return test_summary();
}
