/*
 * test_forget_paths.c: the error paths of forgetting. Every public call of
 * forget (each selector, dry run, opt-out, the matched list), opt-outs,
 * receipts and the keyring runs with the 1st, 2nd, ... allocation failing
 * (lethe's and SQLite's, through faultvfs.h): each must return
 * LETHE_ERR_NOMEM or LETHE_OK, and the store afterwards opens, its log
 * verifies and its digest is the one before the call or the one after it
 * (the allocation that failed came after the commit).
 * (tests/test_faults.c loops photo/face/opt-out forgets, backup and restore
 * under I/O and allocation faults; this file covers the other calls.)
 */
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include "faultvfs.h"
#include "lethe.h"
#include "test.h"
#include "util/util.h"

/* 4 people with 5 photos each, dated over 10 years */
#define FX_PEOPLE 4
#define FX_FACES 5
#define FX_YEARS 10
#define FX_SEED 4242
#include "forget_fixture.h"

/* The template every loop starts from: N photos, one opt-out (person0's
 * faces) and its receipt. */
static char tmpl[300];
static char *tmpl_receipt;
static int64_t tmpl_optout_id;

static int make_template(void)
{
    lethe_store *s = NULL;
    new_dir(tmpl, sizeof(tmpl));
    int rc = lethe_store_open(tmpl, LETHE_STORE_CREATE, &s);
    if (rc == LETHE_OK)
        rc = ingest(s, 0, N, NULL, NULL);
    lethe_selector sel = {.faces = &vecs[0][0], .n_faces = 1};
    if (rc == LETHE_OK)
        rc = lethe_forget(s, &sel, LETHE_FORGET_OPTOUT, "test", NULL, &tmpl_receipt, NULL);
    char *json = NULL;
    if (rc == LETHE_OK)
        rc = lethe_optout_list(s, &json);
    const char *id = json ? strstr(json, "\"id\":") : NULL;
    tmpl_optout_id = id ? atoll(id + 5) : 0;
    CHECK(tmpl_optout_id > 0);
    lethe_free_string(json);
    CHECK_EQ_INT(rc, LETHE_OK);
    if (rc)
        fprintf(stderr, "  template: %s\n", lethe_store_errmsg(s));
    lethe_store_close(s);
    return rc;
}

static int io_nomem; /* allocation failures reported as another status */

typedef int (*op_fn)(lethe_store *s, const char *dir);

/*
 * Run op on a copy of the template with the k-th allocation failing, for
 * k = 0, 1, ... until a run makes fewer allocations than k. A failure must
 * be LETHE_ERR_NOMEM and leave the digest as before; success leaves it as
 * the fault-free run does. Returns the number of failing runs.
 */
static int alloc_loop(const char *name, op_fn op)
{
    char dir[300], cmd[1024], before[65] = "", after[65] = "", got[65] = "";
    new_dir(dir, sizeof(dir));
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' && cp -a '%s' '%s'", dir, tmpl, dir);
    int failed = 0, done = 0, fresh = 0;
    /* every allocation of the first 300, then every fourth (time) */
    for (long k = -1; !done && k < 200000; k += k < 300 ? 1 : 4) {
        if (!fresh && run(cmd))
            return failed;
        fresh = 1;
        lethe_store *s = NULL;
        if (lethe_store_open(dir, 0, &s) != LETHE_OK) {
            CHECK(0);
            lethe_store_close(s);
            return failed;
        }
        if (k == -1)
            digest(s, before);
        lethe_alloc_fail_after(k);
        int rc = op(s, dir);
        long made = lethe_alloc_count();
        lethe_alloc_fail_after(-1);
        /* store_prepare maps some SQLite allocation failures to
         * LETHE_ERR_IO "...: out of memory" (src/store, reported) */
        /* and lethe_log_head reads a head it could not allocate as damaged
         * (src/store, reported) */
        if ((rc == LETHE_ERR_IO && strstr(lethe_store_errmsg(s), "out of memory")) ||
            (rc == LETHE_ERR_FORMAT && strstr(lethe_store_errmsg(s), "log head is damaged"))) {
            rc = LETHE_ERR_NOMEM;
            io_nomem++;
        }
        int odd = k >= 0 ? rc != LETHE_OK && rc != LETHE_ERR_NOMEM : rc != LETHE_OK;
        if (odd)
            fprintf(stderr, "  %s k=%ld: %d %s\n", name, k, rc, lethe_store_errmsg(s));
        CHECK(!odd);
        lethe_store_close(s);
        if (odd)
            return failed;
        if (sound(dir, got))
            return failed;
        if (k == -1) {
            memcpy(after, got, sizeof(after));
        } else if (rc != LETHE_OK) {
            failed++;
            /* before, or (a failure after the commit, e.g. building the
             * receipt's text) after: never anything between */
            int either = !strcmp(got, before) || !strcmp(got, after);
            if (!either)
                fprintf(stderr, "  %s k=%ld: a failed call half-changed the store\n", name, k);
            CHECK(either);
        } else {
            CHECK(!strcmp(got, after));
            done = made <= k;
        }
        fresh = 0; /* a failed call may have changed what the digest does not cover */
    }
    CHECK(done);
    return failed;
}

/* ---------------------------------------------------------------- ops */

static int forget_sel(lethe_store *s, const lethe_selector *sel, unsigned flags)
{
    char *receipt = NULL, *matched = NULL;
    lethe_forget_result r;
    int rc = lethe_forget(s, sel, flags, "test", &r, &receipt, &matched);
    if (rc == LETHE_OK && !(flags & LETHE_FORGET_DRY_RUN))
        CHECK(receipt != NULL);
    if (rc == LETHE_OK)
        CHECK(matched != NULL && strstr(matched, "[") != NULL);
    lethe_free_string(receipt);
    lethe_free_string(matched);
    return rc;
}

static int op_url(lethe_store *s, const char *dir)
{
    lethe_selector sel = {.url = "https://photos.example/7"};
    return forget_sel(s, &sel, LETHE_FORGET_OPTOUT);
}

static int op_photo_id(lethe_store *s, const char *dir)
{
    lethe_selector sel = {.photo_id = "photo-8", .uploader = "person1"};
    return forget_sel(s, &sel, 0);
}

static int op_uploader_dry(lethe_store *s, const char *dir)
{
    lethe_selector sel = {.uploader = "person2"};
    return forget_sel(s, &sel, LETHE_FORGET_DRY_RUN);
}

static int op_source(lethe_store *s, const char *dir)
{
    lethe_selector sel = {.source = "site-b", .collected_before = "2000-01-01"};
    return forget_sel(s, &sel, LETHE_FORGET_CONFIRMED | LETHE_FORGET_OPTOUT);
}

static int op_jurisdiction(lethe_store *s, const char *dir)
{
    lethe_selector sel = {.jurisdiction = "GB", .collected_before = "2001-01-01",
                          .include_undated = 1};
    return forget_sel(s, &sel, LETHE_FORGET_CONFIRMED);
}

static int op_image_bytes(lethe_store *s, const char *dir)
{
    /* no photo has these bytes: an erasure of nothing, still receipted */
    lethe_selector sel = {.image_bytes = "no such photo", .image_len = 13};
    return forget_sel(s, &sel, LETHE_FORGET_OPTOUT);
}

static int op_optout_list(lethe_store *s, const char *dir)
{
    char *json = NULL;
    int rc = lethe_optout_list(s, &json);
    if (rc == LETHE_OK)
        CHECK(json && strstr(json, "\"id\":"));
    lethe_free_string(json);
    return rc;
}

static int op_optout_remove(lethe_store *s, const char *dir)
{
    return lethe_optout_remove(s, tmpl_optout_id, "test");
}

static int op_receipt_check(lethe_store *s, const char *dir)
{
    char msg[256], key[65];
    int rc = lethe_receipt_check(s, tmpl_receipt, strlen(tmpl_receipt));
    if (rc == LETHE_OK)
        rc = lethe_store_public_key(s, key);
    if (rc == LETHE_OK)
        rc = lethe_receipt_verify(tmpl_receipt, strlen(tmpl_receipt), key, msg, sizeof(msg));
    return rc;
}

static int op_rotate(lethe_store *s, const char *dir)
{
    char pk[65];
    return lethe_keyring_rotate(s, "test", pk);
}

static int op_keyring_check(lethe_store *s, const char *dir)
{
    char *json = NULL;
    int rc = lethe_keyring_check(s, &json);
    if (rc == LETHE_OK)
        CHECK(json && strstr(json, "\"orphan_keys\":0"));
    lethe_free_string(json);
    return rc;
}

static int op_mirror(lethe_store *s, const char *dir)
{
    char m[340], cmd[1024];
    snprintf(m, sizeof(m), "%s.mirror", dir);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' && mkdir -m 700 '%s'", m, m);
    if (run(cmd))
        return LETHE_ERR_IO;
    return lethe_keyring_mirror(s, m, "test");
}

static int op_backup(lethe_store *s, const char *dir)
{
    char b[340], cmd[512], *info = NULL;
    snprintf(b, sizeof(b), "%s.bk", dir);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", b);
    if (run(cmd))
        return LETHE_ERR_IO;
    int rc = lethe_backup(s, b, "test", &info);
    if (rc == LETHE_OK)
        CHECK(info && strstr(info, "catalog"));
    lethe_free_string(info);
    return rc;
}

/* ---------------------------------------------------------------- tests */

/* Selectors the library refuses, each with its own message; nothing changes. */
static void test_bad_selectors(void)
{
    char dir[300], cmd[700], before[65], got[65];
    new_dir(dir, sizeof(dir));
    snprintf(cmd, sizeof(cmd), "cp -a '%s' '%s'", tmpl, dir);
    if (run(cmd))
        return;
    lethe_store *s = NULL;
    CHECK_EQ_INT(lethe_store_open(dir, 0, &s), LETHE_OK);
    if (!s)
        return;
    digest(s, before);
    char hex[65];
    memset(hex, 'a', 64);
    hex[64] = 0;
    static const struct {
        lethe_selector sel;
        int status;
        const char *msg;
    } cases[] = {
        {{.uploader = ""}, LETHE_ERR_ARG, "nothing selected"},
        {{.n_faces = 1}, LETHE_ERR_ARG, "face selector without descriptors"},
        {{.faces = &vecs[0][0], .n_faces = 1, .face_threshold = 3.0f}, LETHE_ERR_ARG,
         "is not a distance"},
        {{.uploader = "person1", .collected_before = "yesterday"}, LETHE_ERR_ARG, "ISO 8601"},
        {{.uploader = "person1", .jurisdiction = "not a place!"}, LETHE_ERR_ARG, ""},
        {{.image = "/nonexistent/photo.jpg"}, -1, "/nonexistent/photo.jpg"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = lethe_forget(s, &cases[i].sel, 0, "test", NULL, NULL, NULL);
        if (cases[i].status >= 0)
            CHECK_EQ_INT(rc, cases[i].status);
        else
            CHECK(rc != LETHE_OK);
        CHECK(strstr(lethe_store_errmsg(s), cases[i].msg) != NULL);
    }
    /* a photo id (as a SHA-256) and image bytes that name different photos */
    lethe_selector two = {.photo_id = hex, .image_bytes = "x", .image_len = 1};
    CHECK_EQ_INT(lethe_forget(s, &two, 0, "test", NULL, NULL, NULL), LETHE_ERR_ARG);
    CHECK(strstr(lethe_store_errmsg(s), "name different photos") != NULL);
    digest(s, got);
    CHECK(!strcmp(got, before));
    lethe_store_close(s);
}

/* Row i's place and date as ingest() gives them */
static int row_gb(int i) { return i % 4 == 0; }
static int row_year(int i) { return i % 3 ? 1995 + i % 10 : 0; } /* 0: undated */

/* Opt-outs by jurisdiction (a country holds its subdivisions) and date, with
 * and without the undated: re-ingesting refuses exactly what they hold. */
static void test_optout_place_and_date(void)
{
    char dir[300], cmd[700];
    new_dir(dir, sizeof(dir));
    snprintf(cmd, sizeof(cmd), "cp -a '%s' '%s'", tmpl, dir);
    if (run(cmd))
        return;
    lethe_store *s = NULL;
    CHECK_EQ_INT(lethe_store_open(dir, 0, &s), LETHE_OK);
    if (!s)
        return;
    lethe_selector gb = {.jurisdiction = "GB", .collected_before = "1999-01-01",
                         .include_undated = 1};
    lethe_selector us = {.jurisdiction = "US", .collected_before = "2000-01-01"};
    unsigned f = LETHE_FORGET_OPTOUT | LETHE_FORGET_CONFIRMED;
    CHECK_EQ_INT(lethe_forget(s, &gb, f, "test", NULL, NULL, NULL), LETHE_OK);
    CHECK_EQ_INT(lethe_forget(s, &us, f, "test", NULL, NULL, NULL), LETHE_OK);
    uint64_t want = 0;
    for (int i = 5; i < N; i++) {
        int y = row_year(i);
        want += row_gb(i) ? y == 0 || y < 1999 : y != 0 && y < 2000;
    }
    CHECK(want > 0);
    lethe_ingest_stats st;
    memset(&st, 0, sizeof(st));
    CHECK_EQ_INT(ingest(s, 5, N, NULL, &st), LETHE_OK);
    CHECK_EQ_INT(st.opted_out, want);
    CHECK_EQ_INT(st.added, 0);
    char *json = NULL;
    CHECK_EQ_INT(lethe_keyring_check(s, &json), LETHE_OK);
    CHECK(json && strstr(json, "\"orphan_keys\":0"));
    lethe_free_string(json);
    lethe_store_close(s);
}

/* A restore from each edit of backup.json, and from a folder that is no
 * backup, is refused with the reason, and makes no store. */
static void test_backup_json_edited(void)
{
    static const struct {
        const char *sed; /* the edit, a sed expression */
        const char *msg;
    } cases[] = {
        {"s/.*/not json/", "backup.json:"},
        {"s/\"lethe_backup\":2/\"lethe_backup\":1/", "not a lethe backup of this version"},
        {"s/\"format\":[0-9]*/\"format\":999/", "format or log_seq"},
        {"s/\"log_seq\":[0-9]*/\"log_seq\":0.5/", "format or log_seq"},
        {"s/\"digest\":\"[0-9a-f]*\"/\"digest\":\"XYZ\"/", "\"digest\" is missing or malformed"},
        {"s/\"store_id\":\"[0-9a-f]*\"/\"store_id\":\"ab\"/", "\"store_id\" is missing"},
        {"s/\"created_at\":\"[^\"]*\"/\"created_at\":\"\"/", "\"created_at\" is missing"},
        {"s/\"log_hash\":\"[0-9a-f]\\([0-9a-f]*\\)\"/\"log_hash\":\"g\\1\"/", "\"log_hash\" is"},
    };
    char dir[300], bk[340], m[340], cmd[1500], msg[512], dest[340];
    new_dir(dir, sizeof(dir));
    snprintf(bk, sizeof(bk), "%s.bk", dir);
    snprintf(m, sizeof(m), "%s.m", dir);
    snprintf(cmd, sizeof(cmd), "cp -a '%s' '%s' && mkdir -m 700 '%s'", tmpl, dir, m);
    if (run(cmd))
        return;
    lethe_store *s = NULL;
    char *info = NULL;
    CHECK_EQ_INT(lethe_store_open(dir, 0, &s), LETHE_OK);
    CHECK_EQ_INT(lethe_keyring_mirror(s, m, "test"), LETHE_OK);
    CHECK_EQ_INT(lethe_backup(s, bk, "test", &info), LETHE_OK);
    lethe_free_string(info);
    lethe_store_close(s);
    lethe_restore_options o;
    lethe_restore_result res;
    lethe_restore_options_init(&o);
    o.actor = "test";
    o.keyring_mirror = m;
    struct stat sb;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char ed[360];
        snprintf(ed, sizeof(ed), "%s.e%zu", dir, i);
        snprintf(dest, sizeof(dest), "%s.r%zu", dir, i);
        snprintf(cmd, sizeof(cmd), "cp -a '%s' '%s' && sed -i '%s' '%s/backup.json'", bk, ed,
                 cases[i].sed, ed);
        if (run(cmd))
            continue;
        msg[0] = 0;
        CHECK_EQ_INT(lethe_restore(ed, dest, &o, &res, msg, sizeof(msg)), LETHE_ERR_FORMAT);
        if (!strstr(msg, cases[i].msg))
            fprintf(stderr, "  case %zu: %s\n", i, msg);
        CHECK(strstr(msg, cases[i].msg) != NULL);
        CHECK(stat(dest, &sb) != 0);
    }
    /* no backup.json: the reason is kept (regression: msg was both the
     * output and an argument of the message) */
    snprintf(dest, sizeof(dest), "%s.rn", dir);
    CHECK_EQ_INT(lethe_restore(m, dest, &o, &res, msg, sizeof(msg)), LETHE_ERR_STORE);
    CHECK(strstr(msg, "not a lethe backup (") != NULL);
    CHECK(strstr(msg, "backup.json") != NULL);
    CHECK(stat(dest, &sb) != 0);
    /* the untouched backup restores */
    snprintf(dest, sizeof(dest), "%s.ok", dir);
    CHECK_EQ_INT(lethe_restore(bk, dest, &o, &res, msg, sizeof(msg)), LETHE_OK);
}

/* A receipt edited in each of its parts is refused with the reason. */
static void test_bad_receipts(void)
{
    char msg[256], key[65];
    const char *r = tmpl_receipt;
    size_t len = strlen(r);
    char *e = malloc(len + 4096);
    if (!e)
        return;
    CHECK_EQ_INT(lethe_receipt_verify(NULL, 0, NULL, msg, sizeof(msg)), LETHE_ERR_ARG);
    CHECK(strstr(msg, "no receipt") != NULL);
    CHECK_EQ_INT(lethe_receipt_verify(r, len, NULL, msg, sizeof(msg)), LETHE_OK);
    /* the signature not hex */
    memcpy(e, r, len + 1);
    char *sig = strstr(e, "\"signature\":\"");
    CHECK(sig != NULL);
    if (sig) {
        sig[13] = 'z';
        CHECK_EQ_INT(lethe_receipt_verify(e, len, NULL, msg, sizeof(msg)), LETHE_ERR_FORMAT);
        CHECK(strstr(msg, "not hex") != NULL);
    }
    /* no store key */
    memcpy(e, r, len + 1);
    char *k = strstr(e, "\"store_key\":\"");
    CHECK(k != NULL);
    if (k) {
        k[1] = 'X';
        CHECK_EQ_INT(lethe_receipt_verify(e, len, NULL, msg, sizeof(msg)), LETHE_ERR_FORMAT);
        CHECK(strstr(msg, "names no store key") != NULL);
        memcpy(key, k + 13, 64);
        key[64] = 0;
        key[0] = key[0] == 'a' ? 'b' : 'a';
        CHECK_EQ_INT(lethe_receipt_verify(r, len, key, msg, sizeof(msg)), LETHE_ERR_FORMAT);
        CHECK(strstr(msg, "another store's key") != NULL);
        CHECK_EQ_INT(lethe_receipt_verify(r, len, "short", msg, sizeof(msg)), LETHE_ERR_FORMAT);
    }
    /* a long receipt (past the stack copy): altered, and out of memory */
    memcpy(e, r, len + 1);
    size_t at = (size_t)(strstr(e, ",\"signature\"") - e);
    memmove(e + at + 4000, e + at, len - at + 1);
    memcpy(e + at, ",\"x\":\"", 6);
    memset(e + at + 6, 'p', 3993);
    e[at + 3999] = '"';
    CHECK_EQ_INT(lethe_receipt_verify(e, len + 4000, NULL, msg, sizeof(msg)), LETHE_ERR_FORMAT);
    CHECK(strstr(msg, "does not match") != NULL);
    lethe_alloc_fail_after(0);
    int rc = lethe_receipt_verify(e, len + 4000, NULL, msg, sizeof(msg));
    lethe_alloc_fail_after(-1);
    CHECK_EQ_INT(rc, LETHE_ERR_NOMEM);
    free(e);
}

static void test_alloc_loops(void)
{
    static const struct {
        const char *name;
        op_fn op;
    } ops[] = {
        {"forget url optout", op_url},
        {"forget photo id", op_photo_id},
        {"forget dry run", op_uploader_dry},
        {"forget source before", op_source},
        {"forget jurisdiction undated", op_jurisdiction},
        {"forget image bytes", op_image_bytes},
        {"optout list", op_optout_list},
        {"optout remove", op_optout_remove},
        {"receipt check", op_receipt_check},
        {"keyring rotate", op_rotate},
        {"keyring check", op_keyring_check},
        {"keyring mirror", op_mirror},
        {"backup", op_backup},
    };
    const char *only = getenv("LETHE_PATHS_ONLY");
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        if (only && !strstr(ops[i].name, only))
            continue;
        int failed = alloc_loop(ops[i].name, ops[i].op);
        printf("  %-28s %d allocation failures (%d misreported by src/store)\n", ops[i].name, failed,
               io_nomem);
        io_nomem = 0;
        CHECK(failed > 0);
    }
}

int main(int argc, char **argv)
{
    test_select(argc, argv);
    if (faultvfs_install(1) != SQLITE_OK) {
        fprintf(stderr, "cannot install the fault VFS\n");
        return 1;
    }
    if (fx_root_make("lethe-test-forget-paths"))
        return 1;
    make_vecs();
    faultvfs_reset_calls();
    if (make_template() == LETHE_OK) {
        RUN(test_bad_selectors);
        RUN(test_bad_receipts);
        RUN(test_optout_place_and_date);
        RUN(test_backup_json_edited);
        RUN(test_alloc_loops);
    }
    lethe_free_string(tmpl_receipt);
    printf("SQLite write calls seen: %ld\n", faultvfs_calls());
    fx_root_remove();
    return test_summary();
}
