/*
 * test_forget.c: forgetting through the public API: every selector erases
 * exactly what it selects (the digest becomes that of a store that never
 * held it), dry runs and refusals change nothing, wide erasures need
 * confirmation, receipts check against the store and forged ones do not,
 * opt-outs hold on re-ingest and can be withdrawn, backups carry no secret
 * and no plaintext, restore drops what was erased since (with the live
 * keyring or, the store lost, its mirror), the keyring is checked on open,
 * recovery after a crash destroys keys nobody uses, and a handle that lives
 * on after an erasure (a server) keeps its commits visible to the others.
 */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "forget/change.h"
#include "forget_fixture.h"
#include "lethe.h"
#include "store/store.h"
#include "test.h"
#include "util/util.h"

/* The digest of a store that never held the rows skip() names. */
static int ref_skip_kind;
static int ref_skip(int i)
{
    switch (ref_skip_kind) {
    case 0: return i / 10 == 3;                      /* person3 */
    case 1: return i == 17;                          /* one URL */
    case 2: return i == 42;                          /* one photo id */
    case 3: return i >= 60;                          /* site-b */
    case 4: return i % 4 == 0;                       /* GB (GB-SCT rows) */
    case 5: return i % 3 && 1995 + i % 20 < 2000;    /* dated before 2000 */
    case 6: return i % 3 == 0 || 1995 + i % 20 < 2000; /* ... and the undated */
    default: return 0;
    }
}

static void reference_digest(int kind, char hex[65])
{
    char dir[300];
    ref_skip_kind = kind;
    lethe_store *s = make_store(dir, sizeof(dir), ref_skip);
    if (s)
        digest(s, hex);
    lethe_store_close(s);
}

/* ---------------------------------------------------------------- tests */

static void test_each_selector(void)
{
    struct {
        lethe_selector sel;
        int kind;
        uint64_t photos;
        int wide;
    } cases[] = {
        {{.uploader = "person3"}, 0, 10, 0},
        {{.url = "https://photos.example/17"}, 1, 1, 0},
        {{.photo_id = "photo-42"}, 2, 1, 0},
        {{.source = "site-b"}, 3, 60, 1},
        {{.jurisdiction = "GB"}, 4, 30, 1},
        {{.collected_before = "2000-01-01"}, 5, 0, 1},
        {{.collected_before = "2000-01-01", .include_undated = 1}, 6, 0, 1},
    };
    int expect5 = 0, expect6 = 0;
    for (int i = 0; i < N; i++) {
        ref_skip_kind = 5;
        expect5 += ref_skip(i);
        ref_skip_kind = 6;
        expect6 += ref_skip(i);
    }
    cases[5].photos = (uint64_t)expect5;
    cases[6].photos = (uint64_t)expect6;
    for (size_t c = 0; c < LETHE_ARRAY_LEN(cases); c++) {
        char dir[300], before[65], after[65], want[65];
        lethe_store *s = make_store(dir, sizeof(dir), NULL);
        if (!s)
            return;
        lethe_forget_result r;
        char *receipt = NULL, *matched = NULL;
        digest(s, before);
        int64_t entries = log_entries(s);
        /* a dry run counts and changes nothing */
        CHECK_EQ_INT(lethe_forget(s, &cases[c].sel, LETHE_FORGET_DRY_RUN, "test", &r, &receipt,
                                  &matched), LETHE_OK);
        CHECK_EQ_INT(r.photos, cases[c].photos);
        CHECK(receipt == NULL);
        CHECK(matched && strstr(matched, "\"photo\":"));
        lethe_free_string(matched);
        matched = NULL;
        digest(s, after);
        CHECK(!strcmp(before, after));
        CHECK_EQ_INT(log_entries(s), entries);
        if (cases[c].kind == 5)
            CHECK_EQ_INT(r.undated_kept, 40); /* rows with i % 3 == 0 carry no date */
        /* wide erasures need confirmation, and change nothing without it */
        int rc = lethe_forget(s, &cases[c].sel, 0, "test", &r, &receipt, NULL);
        if (cases[c].wide) {
            CHECK_EQ_INT(rc, LETHE_ERR_CONFIRM);
            CHECK(r.wide != NULL);
            CHECK_EQ_INT(r.photos, cases[c].photos);
            CHECK(receipt == NULL);
            digest(s, after);
            CHECK(!strcmp(before, after));
            rc = lethe_forget(s, &cases[c].sel, LETHE_FORGET_CONFIRMED, "test", &r, &receipt,
                              NULL);
        }
        CHECK_EQ_INT(rc, LETHE_OK);
        CHECK_EQ_INT(r.photos, cases[c].photos);
        CHECK(!strcmp(r.digest_before, before));
        digest(s, after);
        CHECK(!strcmp(r.digest_after, after));
        reference_digest(cases[c].kind, want);
        CHECK(!strcmp(after, want)); /* as if never held */
        CHECK(receipt != NULL);
        if (receipt) {
            CHECK_EQ_INT(lethe_receipt_check(s, receipt, strlen(receipt)), LETHE_OK);
            CHECK(strstr(receipt, "person3") == NULL && strstr(receipt, "photos.example") == NULL);
        }
        lethe_free_string(receipt);
        CHECK_EQ_INT(log_entries(s), entries + 1);
        lethe_store_close(s);
    }
}

static void test_forget_face(void)
{
    char dir[300], *receipt = NULL, *json = NULL;
    lethe_forget_result r;
    lethe_store *s = make_store(dir, sizeof(dir), NULL);
    if (!s)
        return;
    /* person 5's faces, by two of their descriptors */
    lethe_selector sel = {.faces = &vecs[50][0], .n_faces = 2};
    CHECK_EQ_INT(lethe_forget(s, &sel, 0, "test", &r, &receipt, NULL), LETHE_OK);
    CHECK_EQ_INT(r.faces, 10);
    CHECK_EQ_INT(r.templates, 10);
    CHECK_EQ_INT(r.photos, 0); /* faces go, photos stay */
    CHECK_EQ_INT(lethe_lookup(s, LETHE_LOOKUP_UPLOADER, "person5", "test", "json", &json), LETHE_OK);
    CHECK(json && strstr(json, "\"faces\":0,\"templates\":0"));
    CHECK(json && !strstr(json, "\"faces\":1"));
    lethe_free_string(json);
    /* a search for them finds nobody within the threshold */
    lethe_search_options so;
    lethe_match *m = NULL;
    size_t n = 9;
    lethe_search_options_init(&so);
    so.purpose = "check";
    so.threshold = 0.3f;
    CHECK_EQ_INT(lethe_search(s, vecs[55], 1, &so, &m, &n), LETHE_OK);
    CHECK_EQ_INT(n, 0);
    lethe_matches_free(m, n);
    /* a threshold above the match threshold needs confirmation */
    lethe_selector wide = {.faces = &vecs[60][0], .n_faces = 1, .face_threshold = 0.9f};
    CHECK_EQ_INT(lethe_forget(s, &wide, 0, "test", &r, NULL, NULL), LETHE_ERR_CONFIRM);
    lethe_free_string(receipt);
    lethe_store_close(s);
}

static int skip_person2(int i)
{
    return i / 10 == 2;
}

static void test_optout(void)
{
    char dir[300], *receipt = NULL, *json = NULL;
    lethe_ingest_stats st;
    lethe_forget_result r;
    lethe_store *s = make_store(dir, sizeof(dir), NULL);
    if (!s)
        return;
    lethe_selector sel = {.uploader = "person2"};
    CHECK_EQ_INT(lethe_forget(s, &sel, LETHE_FORGET_OPTOUT, "test", &r, &receipt, NULL),
                 LETHE_OK);
    CHECK_EQ_INT(r.photos, 10);
    CHECK(receipt && strstr(receipt, "\"kind\":\"optout\""));
    CHECK_EQ_INT(lethe_optout_list(s, &json), LETHE_OK);
    CHECK(json && strstr(json, "\"selects\":[\"uploader\"]"));
    CHECK(json && !strstr(json, "person2"));
    lethe_free_string(json);
    /* re-ingest: refused, not even catalogued */
    memset(&st, 0, sizeof(st));
    CHECK_EQ_INT(ingest(s, 20, 30, NULL, &st), LETHE_OK);
    CHECK_EQ_INT(st.opted_out, 10);
    CHECK_EQ_INT(st.added, 0);
    CHECK_EQ_INT(st.seen, 10);
    char got[65], want[65];
    digest(s, got);
    ref_skip_kind = -1;
    lethe_store *t = make_store(dir, sizeof(dir), skip_person2);
    if (t)
        digest(t, want);
    lethe_store_close(t);
    CHECK(!strcmp(got, want));
    /* withdrawn: re-ingest brings them in */
    CHECK_EQ_INT(lethe_optout_remove(s, 1, "test"), LETHE_OK);
    CHECK_EQ_INT(lethe_optout_remove(s, 1, "test"), LETHE_ERR_NOT_FOUND);
    CHECK_EQ_INT(ingest(s, 20, 30, NULL, &st), LETHE_OK);
    CHECK_EQ_INT(st.added, 10);
    CHECK_EQ_INT(st.opted_out, 0);
    /* a face opt-out refuses their faces in other photos too */
    lethe_selector face = {.faces = &vecs[70][0], .n_faces = 1};
    CHECK_EQ_INT(lethe_forget(s, &face, LETHE_FORGET_OPTOUT, "test", &r, NULL, NULL), LETHE_OK);
    CHECK_EQ_INT(r.faces, 10);
    memset(&st, 0, sizeof(st));
    CHECK_EQ_INT(ingest(s, 70, 80, NULL, &st), LETHE_OK);
    CHECK_EQ_INT(st.opted_out, 10);
    lethe_free_string(receipt);
    lethe_store_close(s);
}

/* The catalog and the keyring's secrets: the backup holds neither the
 * signing secret, nor the salt, nor a descriptor, nor an identifier. */
static int file_holds(const char *path, const void *needle, size_t n)
{
    uint8_t *b = NULL;
    size_t len = 0;
    char msg[256];
    if (lethe_read_file(path, (size_t)1 << 30, &b, &len, msg, sizeof(msg)) != LETHE_OK)
        return -1;
    int found = memmem(b, len, needle, n) != NULL;
    lethe_free(b);
    return found;
}

static void test_backup_holds_nothing(void)
{
    char dir[300], bk[320], db[340];
    char *info = NULL;
    lethe_store *s = make_store(dir, sizeof(dir), NULL);
    if (!s)
        return;
    snprintf(bk, sizeof(bk), "%s.bk", dir);
    CHECK_EQ_INT(lethe_backup(s, bk, "test", &info), LETHE_OK);
    CHECK(info && strstr(info, "\"lethe_backup\":2"));
    lethe_free_string(info);
    snprintf(db, sizeof(db), "%s/catalog.db", bk);
    uint8_t pk[32], sk[64];
    kr_signing_key(s->kr, pk, sk);
    CHECK_EQ_INT(file_holds(db, sk, 32), 0);
    CHECK_EQ_INT(file_holds(db, kr_salt(s->kr), 32), 0);
    CHECK_EQ_INT(file_holds(db, vecs[7], 512), 0);
    CHECK_EQ_INT(file_holds(db, vecs[7], 64), 0);
    CHECK_EQ_INT(file_holds(db, "person1", 7), 0);
    CHECK_EQ_INT(file_holds(db, "photos.example", 14), 0);
    /* the check can fail: the keyring holds the secret */
    char kr[340];
    snprintf(kr, sizeof(kr), "%s/keyring", dir);
    CHECK_EQ_INT(file_holds(kr, sk, 32), 1);
    sodium_memzero(sk, sizeof(sk));
    lethe_store_close(s);
}

/* A receipt made up and signed with the store's own secret (stolen) has a
 * valid signature, but the store never issued it. */
static void test_forged_receipt(void)
{
    char dir[300], *receipt = NULL, pkhex[65], sighex[129], forged[1024];
    uint8_t pk[32], sk[64], sig[64];
    lethe_store *s = make_store(dir, sizeof(dir), NULL);
    if (!s)
        return;
    lethe_selector sel = {.uploader = "person1"};
    CHECK_EQ_INT(lethe_forget(s, &sel, 0, "test", NULL, &receipt, NULL), LETHE_OK);
    CHECK_EQ_INT(lethe_receipt_check(s, receipt, strlen(receipt)), LETHE_OK);
    kr_signing_key(s->kr, pk, sk);
    sodium_bin2hex(pkhex, sizeof(pkhex), pk, 32);
    int n = snprintf(forged, sizeof(forged),
                     "{\"lethe_receipt\":1,\"kind\":\"forget\",\"store_key\":\"%s\",\"time\":"
                     "\"2026-01-01T00:00:00Z\",\"selector\":{},\"erased\":{\"photos\":999}}",
                     pkhex);
    crypto_sign_detached(sig, NULL, (const uint8_t *)forged, (size_t)n, sk);
    sodium_memzero(sk, sizeof(sk));
    sodium_bin2hex(sighex, sizeof(sighex), sig, sizeof(sig));
    snprintf(forged + n - 1, sizeof(forged) - (size_t)n + 1, ",\"signature\":\"%s\"}", sighex);
    char msg[256];
    CHECK_EQ_INT(lethe_receipt_verify(forged, strlen(forged), pkhex, msg, sizeof(msg)), LETHE_OK);
    CHECK_EQ_INT(lethe_receipt_check(s, forged, strlen(forged)), LETHE_ERR_FORMAT);
    CHECK(strstr(lethe_store_errmsg(s), "never recorded") != NULL);
    /* rotation: a new key, the old receipt still checks, the forgery still not */
    char newkey[65], oldkey[65];
    CHECK_EQ_INT(lethe_store_public_key(s, oldkey), LETHE_OK);
    CHECK_EQ_INT(lethe_keyring_rotate(s, "test", newkey), LETHE_OK);
    CHECK(strcmp(oldkey, newkey) != 0);
    CHECK_EQ_INT(lethe_store_public_key(s, pkhex), LETHE_OK);
    CHECK(!strcmp(pkhex, newkey));
    CHECK_EQ_INT(lethe_receipt_check(s, receipt, strlen(receipt)), LETHE_OK);
    CHECK_EQ_INT(lethe_receipt_check(s, forged, strlen(forged)), LETHE_ERR_FORMAT);
    /* after reopening, too */
    lethe_store_close(s);
    s = NULL;
    CHECK_EQ_INT(lethe_store_open(dir, 0, &s), LETHE_OK);
    CHECK_EQ_INT(lethe_store_public_key(s, pkhex), LETHE_OK);
    CHECK(!strcmp(pkhex, newkey));
    CHECK_EQ_INT(lethe_receipt_check(s, receipt, strlen(receipt)), LETHE_OK);
    log_entries(s);
    lethe_free_string(receipt);
    lethe_store_close(s);
}

static void test_restore(void)
{
    char dir[300], bk[320], mirror[320], lost[320], msg[512], before[65], after[65], got[65];
    char *info = NULL;
    lethe_restore_options o;
    lethe_restore_result res;
    lethe_store *s = make_store(dir, sizeof(dir), NULL);
    if (!s)
        return;
    snprintf(mirror, sizeof(mirror), "%s.mirror", dir);
    CHECK_EQ_INT(mkdir(mirror, 0700), 0);
    CHECK_EQ_INT(lethe_keyring_mirror(s, mirror, "test"), LETHE_OK);
    snprintf(bk, sizeof(bk), "%s.bk", dir);
    CHECK_EQ_INT(lethe_backup(s, bk, "test", &info), LETHE_OK);
    lethe_free_string(info);
    digest(s, before);
    lethe_selector sel = {.uploader = "person4"};
    lethe_selector face = {.faces = &vecs[90][0], .n_faces = 1};
    CHECK_EQ_INT(lethe_forget(s, &sel, 0, "test", NULL, NULL, NULL), LETHE_OK);
    CHECK_EQ_INT(lethe_forget(s, &face, 0, "test", NULL, NULL, NULL), LETHE_OK);
    digest(s, after);
    lethe_store_close(s);
    /* the disk is lost: restore elsewhere with the mirror */
    snprintf(lost, sizeof(lost), "%s.new", dir);
    lethe_restore_options_init(&o);
    o.actor = "test";
    CHECK_EQ_INT(lethe_restore(bk, lost, &o, &res, msg, sizeof(msg)), LETHE_ERR_ARG);
    CHECK(strstr(msg, "mirror") != NULL);
    o.keyring_mirror = mirror;
    CHECK_EQ_INT(lethe_restore(bk, lost, &o, &res, msg, sizeof(msg)), LETHE_OK);
    /* person4's 10 photos and person9's 10 (re-keyed when their faces went)
     * are dropped: nothing erased comes back */
    CHECK_EQ_INT(res.dropped_erased, 20);
    CHECK_EQ_INT(res.photos, N - 20);
    CHECK_EQ_INT(res.receipts_carried, 2);
    s = NULL;
    CHECK_EQ_INT(lethe_store_open(lost, 0, &s), LETHE_OK);
    digest(s, got);
    CHECK(strcmp(got, before) != 0);
    char *json = NULL;
    CHECK_EQ_INT(lethe_lookup(s, LETHE_LOOKUP_UPLOADER, "person4", "test", "json", &json),
                 LETHE_OK);
    CHECK(json && strstr(json, "\"photos\":[]"));
    lethe_free_string(json);
    log_entries(s);
    lethe_store_close(s);
    /* a damaged backup is refused */
    char db[340];
    snprintf(db, sizeof(db), "%s/catalog.db", bk);
    int fd = open(db, O_WRONLY);
    CHECK(fd >= 0 && pwrite(fd, "X", 1, 4000) == 1);
    if (fd >= 0)
        close(fd);
    snprintf(lost, sizeof(lost), "%s.new2", dir);
    CHECK_EQ_INT(lethe_restore(bk, lost, &o, &res, msg, sizeof(msg)), LETHE_ERR_STORE);
    CHECK(strstr(msg, "damaged or was altered") != NULL);
    struct stat sb;
    CHECK(stat(lost, &sb) != 0);
    (void)after;
}

static void test_restore_live_refuses_newer(void)
{
    char dir[300], bk[320], msg[512];
    char *info = NULL;
    lethe_restore_options o;
    lethe_restore_result res;
    lethe_store *s = make_store(dir, sizeof(dir), skip_person2);
    if (!s)
        return;
    snprintf(bk, sizeof(bk), "%s.bk", dir);
    CHECK_EQ_INT(lethe_backup(s, bk, "test", &info), LETHE_OK);
    lethe_free_string(info);
    CHECK_EQ_INT(ingest(s, 20, 30, NULL, NULL), LETHE_OK);
    lethe_store_close(s);
    lethe_restore_options_init(&o);
    o.actor = "test";
    CHECK_EQ_INT(lethe_restore(bk, dir, &o, &res, msg, sizeof(msg)), LETHE_ERR_CONFIRM);
    CHECK(strstr(msg, "10 photos the backup does not") != NULL);
    o.discard_newer = 1;
    CHECK_EQ_INT(lethe_restore(bk, dir, &o, &res, msg, sizeof(msg)), LETHE_OK);
    CHECK_EQ_INT(res.dropped_newer, 10);
    /* their keys went with them */
    s = NULL;
    char *json = NULL;
    CHECK_EQ_INT(lethe_store_open(dir, 0, &s), LETHE_OK);
    CHECK_EQ_INT(lethe_keyring_check(s, &json), LETHE_OK);
    CHECK(json && strstr(json, "\"orphan_keys\":0"));
    CHECK(json && strstr(json, "\"photo_keys\":110"));
    lethe_free_string(json);
    log_entries(s);
    lethe_store_close(s);
    /* a backup of another store */
    char other[300];
    lethe_store *t = make_store(other, sizeof(other), NULL);
    lethe_store_close(t);
    o.discard_newer = 1;
    CHECK_EQ_INT(lethe_restore(bk, other, &o, &res, msg, sizeof(msg)), LETHE_ERR_STORE);
    CHECK(strstr(msg, "another store") != NULL);
}

static void test_keyring_checked_on_open(void)
{
    char dir[300], kr[340], msg[8];
    lethe_store *s = make_store(dir, sizeof(dir), NULL);
    lethe_store_close(s);
    snprintf(kr, sizeof(kr), "%s/keyring", dir);
    (void)msg;
    /* readable by others */
    CHECK_EQ_INT(chmod(kr, 0644), 0);
    s = NULL;
    CHECK_EQ_INT(lethe_store_open(dir, 0, &s), LETHE_ERR_STORE);
    CHECK(strstr(lethe_store_errmsg(s), "chmod 600") != NULL);
    lethe_store_close(s);
    CHECK_EQ_INT(chmod(kr, 0600), 0);
    /* one header copy damaged: the other is used */
    int fd = open(kr, O_RDWR);
    uint8_t hdr[512];
    CHECK(fd >= 0 && pread(fd, hdr, 512, 0) == 512);
    uint8_t junk[64];
    memset(junk, 0xAB, sizeof(junk));
    uint64_t gen = 0;
    int a_valid = kr_header_check(hdr, &gen, NULL) == 0;
    CHECK(pread(fd, hdr, 512, 512) == 512);
    int b_valid = kr_header_check(hdr, NULL, NULL) == 0;
    CHECK(a_valid || b_valid);
    if (a_valid && b_valid) {
        CHECK(pwrite(fd, junk, sizeof(junk), 100) == (ssize_t)sizeof(junk));
        s = NULL;
        CHECK_EQ_INT(lethe_store_open(dir, 0, &s), LETHE_OK);
        lethe_store_close(s);
    }
    /* both damaged: refused, naming the mirror */
    CHECK(pwrite(fd, junk, sizeof(junk), 100) == (ssize_t)sizeof(junk));
    CHECK(pwrite(fd, junk, sizeof(junk), 612) == (ssize_t)sizeof(junk));
    close(fd);
    s = NULL;
    CHECK_EQ_INT(lethe_store_open(dir, 0, &s), LETHE_ERR_STORE);
    CHECK(strstr(lethe_store_errmsg(s), "damaged") != NULL);
    lethe_store_close(s);
    /* gone */
    CHECK_EQ_INT(unlink(kr), 0);
    s = NULL;
    CHECK_EQ_INT(lethe_store_open(dir, LETHE_STORE_READONLY, &s), LETHE_ERR_STORE);
    CHECK(strstr(lethe_store_errmsg(s), "is missing") != NULL);
    lethe_store_close(s);
    /* and a new store is not made over a lone keyring */
    char lone[300];
    new_dir(lone, sizeof(lone));
    CHECK_EQ_INT(mkdir(lone, 0700), 0);
    snprintf(kr, sizeof(kr), "%s/keyring", lone);
    fd = open(kr, O_WRONLY | O_CREAT, 0600);
    CHECK(fd >= 0);
    if (fd >= 0)
        close(fd);
    s = NULL;
    CHECK_EQ_INT(lethe_store_open(lone, LETHE_STORE_CREATE, &s), LETHE_ERR_STORE);
    CHECK(strstr(lethe_store_errmsg(s), "no catalog") != NULL);
    lethe_store_close(s);
}

/* After a crash between a commit and the keyring's work (simulated: a key
 * flushed that no photo uses, and the pending mark), the next writable
 * open destroys the orphan. */
static void test_recovery_destroys_orphans(void)
{
    char dir[300], *json = NULL, m[128];
    lethe_store *s = make_store(dir, sizeof(dir), NULL);
    if (!s)
        return;
    kr_ref ref;
    uint8_t key[32];
    CHECK_EQ_INT(kr_new_key(s->kr, &ref, key), LETHE_OK);
    CHECK_EQ_INT(kr_flush(s->kr, m, sizeof(m)), LETHE_OK);
    CHECK_EQ_INT(lethe_keyring_check(s, &json), LETHE_OK);
    CHECK(json && strstr(json, "\"orphan_keys\":1"));
    lethe_free_string(json);
    lethe_store_close(s);
    char db[340];
    sqlite3 *d = NULL;
    snprintf(db, sizeof(db), "%s/catalog.db", dir);
    CHECK_EQ_INT(sqlite3_open(db, &d), SQLITE_OK);
    CHECK_EQ_INT(sqlite3_exec(d, "INSERT INTO meta(key, value) VALUES ('scrub_pending', 1)", NULL,
                              NULL, NULL),
                 SQLITE_OK);
    sqlite3_close(d);
    s = NULL;
    CHECK_EQ_INT(lethe_store_open(dir, 0, &s), LETHE_OK);
    CHECK_EQ_INT(lethe_keyring_check(s, &json), LETHE_OK);
    CHECK(json && strstr(json, "\"orphan_keys\":0"));
    lethe_free_string(json);
    CHECK_EQ_INT(kr_get_key(s->kr, ref, key), LETHE_ERR_NOT_FOUND);
    lethe_store_close(s);
}

/* Deleting personal rows outside the erasure protocol is refused. */
static void test_protocol_enforced(void)
{
    char dir[300];
    lethe_store *s = make_store(dir, sizeof(dir), NULL);
    if (!s)
        return;
    char before[65], after[65];
    change c = {0};
    digest(s, before);
    CHECK_EQ_INT(store_lock(s, "test"), LETHE_OK);
    CHECK_EQ_INT(change_begin(s, &c), LETHE_OK);
    CHECK_EQ_INT(store_exec(s, "DELETE FROM photos WHERE id = 1"), LETHE_OK);
    CHECK_EQ_INT(change_commit(&c), LETHE_ERR_INTERNAL);
    CHECK(strstr(lethe_store_errmsg(s), "outside the erasure protocol") != NULL);
    CHECK(!c.committed);
    change_free(&c);
    store_unlock(s);
    digest(s, after);
    CHECK(!strcmp(before, after));
    lethe_store_close(s);
}

/* After the store's disk is lost, the mirror's keyring decides the
 * opt-outs: one made after the backup is listed again (and still refuses),
 * one withdrawn after it is gone. */
static void test_restore_optouts_from_mirror(void)
{
    char dir[300], bk[320], mirror[320], lost[320], msg[512], *info = NULL, *json = NULL;
    lethe_restore_options o;
    lethe_restore_result res;
    lethe_ingest_stats st;
    lethe_store *s = make_store(dir, sizeof(dir), NULL);
    if (!s)
        return;
    snprintf(mirror, sizeof(mirror), "%s.m", dir);
    CHECK_EQ_INT(lethe_keyring_mirror(s, "/nonexistent/mirror", "test"), LETHE_ERR_ARG);
    CHECK_EQ_INT(mkdir(mirror, 0700), 0);
    CHECK_EQ_INT(lethe_keyring_mirror(s, mirror, "test"), LETHE_OK);
    lethe_selector early = {.uploader = "person6"};
    CHECK_EQ_INT(lethe_forget(s, &early, LETHE_FORGET_OPTOUT, "test", NULL, NULL, NULL), LETHE_OK);
    snprintf(bk, sizeof(bk), "%s.bk", dir);
    CHECK_EQ_INT(lethe_backup(s, bk, "test", &info), LETHE_OK);
    lethe_free_string(info);
    /* after the backup: the early opt-out withdrawn, a new one made */
    CHECK_EQ_INT(lethe_optout_remove(s, 1, "test"), LETHE_OK);
    lethe_selector late = {.uploader = "person7"};
    CHECK_EQ_INT(lethe_forget(s, &late, LETHE_FORGET_OPTOUT, "test", NULL, NULL, NULL), LETHE_OK);
    CHECK_EQ_INT(lethe_keyring_check(s, &json), LETHE_OK);
    CHECK(json && strstr(json, "\"optouts\":1"));
    CHECK(json && strstr(json, mirror));
    lethe_free_string(json);
    lethe_store_close(s);
    snprintf(lost, sizeof(lost), "%s.new", dir);
    lethe_restore_options_init(&o);
    o.actor = "test";
    o.keyring_mirror = mirror;
    CHECK_EQ_INT(lethe_restore(bk, lost, &o, &res, msg, sizeof(msg)), LETHE_OK);
    CHECK_EQ_INT(res.dropped_erased, 10);   /* person7's photos */
    CHECK_EQ_INT(res.receipts_carried, 1);  /* the late opt-out's receipt */
    s = NULL;
    CHECK_EQ_INT(lethe_store_open(lost, 0, &s), LETHE_OK);
    CHECK_EQ_INT(lethe_optout_list(s, &json), LETHE_OK);
    CHECK(json && strstr(json, "\"id\":2") && !strstr(json, "\"id\":1,"));
    lethe_free_string(json);
    memset(&st, 0, sizeof(st));
    CHECK_EQ_INT(ingest(s, 70, 80, NULL, &st), LETHE_OK);
    CHECK_EQ_INT(st.opted_out, 10);         /* the late opt-out holds */
    CHECK_EQ_INT(ingest(s, 60, 70, NULL, &st), LETHE_OK);
    CHECK_EQ_INT(st.opted_out, 0);          /* the withdrawn one does not */
    CHECK_EQ_INT(st.added, 10);             /* (erased when the early opt-out was made) */
    /* stop mirroring */
    CHECK_EQ_INT(lethe_keyring_mirror(s, NULL, "test"), LETHE_OK);
    CHECK_EQ_INT(lethe_keyring_check(s, &json), LETHE_OK);
    CHECK(json && strstr(json, "\"mirror\":null"));
    lethe_free_string(json);
    log_entries(s);
    lethe_store_close(s);
    /* read-only stores refuse changes with a clear error */
    s = NULL;
    char key[65];
    CHECK_EQ_INT(lethe_store_open(lost, LETHE_STORE_READONLY, &s), LETHE_OK);
    CHECK_EQ_INT(lethe_keyring_rotate(s, "test", key), LETHE_ERR_ARG);
    CHECK_EQ_INT(lethe_keyring_mirror(s, mirror, "test"), LETHE_ERR_ARG);
    CHECK_EQ_INT(lethe_optout_remove(s, 2, "test"), LETHE_ERR_ARG);
    CHECK_EQ_INT(lethe_forget(s, &late, 0, "test", NULL, NULL, NULL), LETHE_ERR_ARG);
    CHECK_EQ_INT(lethe_policy_set(s, "GB", "explicit", "test", 0, NULL), LETHE_ERR_ARG);
    CHECK_EQ_INT(lethe_backup(s, bk, "test", &info), LETHE_ERR_ARG);
    lethe_store_close(s);
}

static int waits;
static void count_wait(void *ctx, const char *holder, double waited)
{
    (void)waited;
    waits++;
    if (!strstr(holder, "lethe test-holder"))
        *(int *)ctx = 1;
}

/* The rest of the store's API: options, the lock's wait, ingest from memory
 * and failed inputs, progress, the log head, the policy text, search by
 * image. */
static void test_api_rest(void)
{
    char dir[300], *text = NULL, *json = NULL, hash[65];
    lethe_store_options o;
    lethe_store *s = NULL, *t = NULL;
    new_dir(dir, sizeof(dir));
    lethe_store_options_init(&o);
    CHECK(o.wait_seconds == 30);
    o.flags = LETHE_STORE_CREATE;
    o.actor = "bad\nactor";
    CHECK_EQ_INT(lethe_store_open_with(dir, &o, &s), LETHE_ERR_ARG);
    lethe_store_close(s);
    o.actor = "creator";
    CHECK_EQ_INT(lethe_store_open_with(dir, &o, &s), LETHE_OK);
    CHECK(!strcmp(lethe_store_path(s), dir));
    CHECK_EQ_INT(lethe_log_export(s, "jsonl", &text), LETHE_OK);
    CHECK(text && strstr(text, "\"kind\":\"init\",\"actor\":\"creator\""));
    lethe_free_string(text);
    CHECK_EQ_INT(lethe_policy_get(s, &text), LETHE_OK);
    CHECK(text && strstr(text, "\ndefault  explicit\n"));
    lethe_free_string(text);
    CHECK(lethe_forget_face_threshold() < lethe_descriptor_threshold());
    /* ingest: a failed input is counted and logged; progress sees the batch */
    lethe_ingest_options io;
    lethe_ingest *g = NULL;
    lethe_ingest_stats st;
    lethe_ingest_options_init(&io);
    io.actor = "test";
    CHECK_EQ_INT(lethe_ingest_begin(s, &io, &g), LETHE_OK);
    CHECK_EQ_INT(lethe_ingest_fail(g, "rows.csv", 7, "a bad row"), LETHE_OK);
    lethe_provenance p = {.uploader = "mem", .consent = "explicit", .jurisdiction = "US"};
    CHECK_EQ_INT(lethe_ingest_descriptor(g, vecs[0], &p, 8), LETHE_OK);
    /* bytes that are no image: an input error, not a fatal one */
    CHECK_EQ_INT(lethe_ingest_photo_bytes(g, "not an image", 12, "upload-1", &p, 9),
                 LETHE_ERR_ARG); /* photos need an engine */
    lethe_ingest_progress(g, &st);
    CHECK_EQ_INT(st.seen, 2);
    CHECK_EQ_INT(st.errors, 1);
    CHECK_EQ_INT(lethe_ingest_end(g, &st), LETHE_OK);
    CHECK_EQ_INT(st.added, 1);
    CHECK_EQ_INT(st.errors, 1);
    CHECK_EQ_INT(lethe_datasheet(s, "json", &json), LETHE_OK);
    CHECK(json && strstr(json, "\"photos_failed\":1"));
    CHECK(json && strstr(json, "\"digest_matches\":true"));
    lethe_free_string(json);
    /* the head names the last entry */
    uint64_t seq = 0, n = 0, bad = 0;
    CHECK_EQ_INT(lethe_log_head(s, &seq, hash), LETHE_OK);
    CHECK_EQ_INT(lethe_log_verify(s, &n, &bad), LETHE_OK);
    CHECK_EQ_INT(seq, n);
    /* the lock: another writer waits, is told who holds it, gives up */
    CHECK_EQ_INT(store_lock(s, "test-holder"), LETHE_OK);
    lethe_store_options_init(&o);
    o.wait_seconds = 1.6;
    o.on_wait = count_wait;
    int wrong_holder = 0;
    o.ctx = &wrong_holder;
    CHECK_EQ_INT(lethe_store_open_with(dir, &o, &t), LETHE_OK);
    lethe_selector sel = {.uploader = "mem"};
    waits = 0;
    CHECK_EQ_INT(lethe_forget(t, &sel, 0, "test", NULL, NULL, NULL), LETHE_ERR_BUSY);
    CHECK(strstr(lethe_store_errmsg(t), "lethe test-holder") != NULL);
    CHECK(waits >= 1);
    CHECK(!wrong_holder);
    /* a dry run does not wait */
    lethe_forget_result r;
    CHECK_EQ_INT(lethe_forget(t, &sel, LETHE_FORGET_DRY_RUN, "test", &r, NULL, NULL), LETHE_OK);
    CHECK_EQ_INT(r.photos, 1);
    store_unlock(s);
    CHECK_EQ_INT(lethe_forget(t, &sel, 0, "test", &r, NULL, NULL), LETHE_OK);
    CHECK_EQ_INT(r.photos, 1);
    lethe_store_close(t);
    lethe_store_close(s);
}

/* Photos from memory and search by image (needs the models and samples). */
/* Another process, forked before this test opens any store (a child forked
 * later would inherit SQLite's record of the parent's open files and
 * locks, and so not behave as another process does). It reads commands
 * from a pipe and answers 0 (done) or 1 (failed):
 *   i DIR FROM TO   ingest rows [FROM, TO), then close the store
 *   l DIR           a lookup (a logged write), then close
 *   s DIR SEQ       open read-only: the log ends at SEQ and verifies */
typedef struct helper {
    pid_t pid;
    FILE *to, *from;
} helper;

static int helper_do(const char *line)
{
    char dir[300];
    long a = 0, b = 0;
    lethe_store *c = NULL;
    char *out = NULL;
    int ok = 0;
    if (line[0] == 'i' && sscanf(line, "i %299s %ld %ld", dir, &a, &b) == 3)
        ok = lethe_store_open(dir, 0, &c) == LETHE_OK && ingest(c, (int)a, (int)b, NULL, NULL) == 0;
    else if (line[0] == 'l' && sscanf(line, "l %299s", dir) == 1)
        ok = lethe_store_open(dir, 0, &c) == LETHE_OK &&
             lethe_lookup(c, LETHE_LOOKUP_UPLOADER, "nobody", "other", "json", &out) == 0;
    else if (line[0] == 's' && sscanf(line, "s %299s %ld", dir, &a) == 2) {
        uint64_t seq = 0, n = 0, bad = 0;
        char hash[65];
        ok = lethe_store_open(dir, LETHE_STORE_READONLY, &c) == LETHE_OK &&
             lethe_log_head(c, &seq, hash) == LETHE_OK && seq == (uint64_t)a &&
             lethe_log_verify(c, &n, &bad) == LETHE_OK && n == (uint64_t)a;
        if (!ok)
            fprintf(stderr, "  the other process sees entry %llu of %ld: %s\n",
                    (unsigned long long)seq, a, lethe_store_errmsg(c));
    }
    lethe_free_string(out);
    lethe_store_close(c);
    return ok ? 0 : 1;
}

static int helper_start(helper *h)
{
    int down[2], up[2];
    if (pipe(down) || pipe(up))
        return -1;
    h->pid = fork();
    if (h->pid == 0) {
        FILE *in = fdopen(down[0], "r"), *out = fdopen(up[1], "w");
        char line[400];
        close(down[1]);
        close(up[0]);
        while (in && out && fgets(line, sizeof(line), in) && line[0] != 'q') {
            fprintf(out, "%d\n", helper_do(line));
            fflush(out);
        }
        _exit(0);
    }
    close(down[0]);
    close(up[1]);
    h->to = fdopen(down[1], "w");
    h->from = fdopen(up[0], "r");
    return h->pid > 0 && h->to && h->from ? 0 : -1;
}

/* A command to the other process: its answer (0 done, 1 failed, 2 gone). */
static int helper_ask(helper *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int helper_ask(helper *h, const char *fmt, ...)
{
    va_list ap;
    char line[16];
    va_start(ap, fmt);
    vfprintf(h->to, fmt, ap);
    va_end(ap);
    fflush(h->to);
    return fgets(line, sizeof(line), h->from) ? atoi(line) : 2;
}

static void helper_stop(helper *h)
{
    int status;
    fputs("q\n", h->to);
    fclose(h->to);
    fclose(h->from);
    waitpid(h->pid, &status, 0);
}

static void search_once(lethe_store *s)
{
    lethe_search_options so;
    lethe_match *m = NULL;
    size_t nm = 0;
    lethe_search_options_init(&so);
    so.purpose = "a long-lived handle";
    CHECK_EQ_INT(lethe_search(s, vecs[0], 1, &so, &m, &nm), LETHE_OK);
    lethe_matches_free(m, nm);
}

static void test_long_lived_handle_after_erasure(void)
{
    char dir[300];
    lethe_store *s = NULL;
    lethe_forget_result r;
    lethe_selector sel;
    char *receipt = NULL;
    uint64_t seq = 0;
    char hash[65];
    helper h;
    if (helper_start(&h) < 0) {
        CHECK(0);
        return;
    }
    new_dir(dir, sizeof(dir));
    CHECK_EQ_INT(lethe_store_open(dir, LETHE_STORE_CREATE, &s), LETHE_OK);
    search_once(s);
    CHECK_EQ_INT(helper_ask(&h, "i %s 0 40\n", dir), 0);
    memset(&sel, 0, sizeof(sel));
    sel.uploader = "person3";
    CHECK_EQ_INT(lethe_forget(s, &sel, 0, "test", &r, &receipt, NULL), LETHE_OK);
    CHECK_EQ_INT(r.photos, 10);
    lethe_free_string(receipt);
    search_once(s);
    CHECK_EQ_INT(helper_ask(&h, "l %s\n", dir), 0);
    search_once(s);
    search_once(s);
    CHECK_EQ_INT(lethe_log_head(s, &seq, hash), LETHE_OK);
    CHECK_EQ_INT(helper_ask(&h, "s %s %llu\n", dir, (unsigned long long)seq), 0);
    lethe_store_close(s);
    helper_stop(&h);
}

static void test_photos_from_memory(void)
{
    char dir[300], msg[256];
    uint8_t *bytes = NULL;
    size_t len = 0;
    lethe_engine_options eo;
    lethe_engine *e = NULL;
    if (lethe_read_file("samples/sample1.jpg", 1u << 24, &bytes, &len, msg, sizeof(msg)))
        SKIP("samples/sample1.jpg absent (run scripts/setup.sh)");
    lethe_engine_options_init(&eo);
    eo.threads = 1;
    if (lethe_engine_open(&e, &eo) != LETHE_OK) {
        lethe_engine_close(e);
        lethe_free(bytes);
        SKIP("models absent (set LETHE_MODELS)");
    }
    lethe_store *s = NULL;
    new_dir(dir, sizeof(dir));
    CHECK_EQ_INT(lethe_store_open(dir, LETHE_STORE_CREATE, &s), LETHE_OK);
    lethe_ingest_options io;
    lethe_ingest *g = NULL;
    lethe_ingest_stats st;
    lethe_ingest_options_init(&io);
    io.engine = e;
    io.actor = "test";
    lethe_provenance p = {.uploader = "uploader-1", .consent = "explicit", .jurisdiction = "US"};
    CHECK_EQ_INT(lethe_ingest_begin(s, &io, &g), LETHE_OK);
    CHECK_EQ_INT(lethe_ingest_photo_bytes(g, bytes, len, "upload-1.jpg", &p, 1), LETHE_OK);
    CHECK_EQ_INT(lethe_ingest_photo_bytes(g, "junk", 4, "upload-2.jpg", &p, 2), LETHE_OK);
    CHECK_EQ_INT(lethe_ingest_end(g, &st), LETHE_OK);
    CHECK_EQ_INT(st.added, 1);
    CHECK_EQ_INT(st.errors, 1);
    CHECK(st.templates >= 1);
    lethe_image *img = NULL;
    CHECK_EQ_INT(lethe_image_decode(bytes, len, NULL, &img, msg, sizeof(msg)), LETHE_OK);
    lethe_search_options so;
    lethe_match *m = NULL;
    size_t n = 0;
    lethe_search_options_init(&so);
    so.purpose = "test";
    so.top_k = 1;
    CHECK_EQ_INT(lethe_search_image(s, e, img, &so, &m, &n), LETHE_OK);
    CHECK_EQ_INT(n, 1);
    if (n) {
        CHECK(m[0].distance < 0.01f);
        CHECK(!strcmp(m[0].prov.uploader, "uploader-1"));
        CHECK(!strcmp(m[0].prov.path, "upload-1.jpg"));
    }
    lethe_matches_free(m, n);
    lethe_image_free(img);
    /* an image without a face */
    uint8_t grey[64 * 64 * 3];
    memset(grey, 128, sizeof(grey));
    CHECK_EQ_INT(lethe_image_from_rgb(grey, 64, 64, &img), LETHE_OK);
    CHECK_EQ_INT(lethe_search_image(s, e, img, &so, &m, &n), LETHE_ERR_NO_FACE);
    lethe_image_free(img);
    lethe_store_close(s);
    lethe_engine_close(e);
    lethe_free(bytes);
}

/* The exact file, by its bytes (what a server receives): a photo the
 * policy refuses is catalogued, never decoded, and found, erased and
 * receipted by those bytes; the receipt reads back by its hash. */
static void test_exact_bytes_and_receipt_get(void)
{
    static const char photo[] = "\x89PNG\r\n\x1a\nnot decoded: the policy refuses it";
    char dir[300], *json = NULL, *receipt = NULL, *again = NULL;
    lethe_store *s = NULL;
    lethe_ingest *g = NULL;
    lethe_ingest_options io;
    lethe_ingest_stats st;
    lethe_engine_options eo;
    lethe_engine *e = NULL;
    lethe_engine_options_init(&eo);
    eo.threads = 1;
    /* a photo ingest needs an engine, even for a photo it will not analyse */
    if (lethe_engine_open(&e, &eo) != LETHE_OK) {
        lethe_engine_close(e);
        SKIP("models absent (set LETHE_MODELS)");
    }
    new_dir(dir, sizeof(dir));
    CHECK_EQ_INT(lethe_store_open(dir, LETHE_STORE_CREATE, &s), LETHE_OK);
    lethe_ingest_options_init(&io);
    io.actor = "test";
    io.engine = e;
    lethe_provenance p = {.uploader = "u-bytes", .consent = "none", .jurisdiction = "GB"};
    CHECK_EQ_INT(lethe_ingest_begin(s, &io, &g), LETHE_OK);
    CHECK_EQ_INT(lethe_ingest_photo_bytes(g, photo, sizeof(photo) - 1, "b.png", &p, 1), LETHE_OK);
    CHECK_EQ_INT(lethe_ingest_end(g, &st), LETHE_OK);
    CHECK_EQ_INT(st.added, 1);
    CHECK_EQ_INT(st.refused, 1);
    CHECK_EQ_INT(lethe_lookup_bytes(s, photo, sizeof(photo) - 1, "test", "json", &json), LETHE_OK);
    CHECK(json && strstr(json, "{\"lookup\":\"file\",\"photos\":[{") && strstr(json, "u-bytes"));
    lethe_free_string(json);
    /* one byte fewer is another file */
    CHECK_EQ_INT(lethe_lookup_bytes(s, photo, sizeof(photo) - 2, "test", "text", &json), LETHE_OK);
    CHECK(json && !strncmp(json, "0 photos held for the file given", 32));
    lethe_free_string(json);
    CHECK_EQ_INT(lethe_lookup_bytes(s, photo, 0, "test", "json", &json), LETHE_ERR_ARG);
    CHECK(json == NULL);
    lethe_selector sel = {.image_bytes = photo, .image_len = sizeof(photo) - 1};
    lethe_forget_result r;
    CHECK_EQ_INT(lethe_forget(s, &sel, 0, "test", &r, &receipt, NULL), LETHE_OK);
    CHECK_EQ_INT(r.photos, 1);
    CHECK_EQ_INT(lethe_lookup_bytes(s, photo, sizeof(photo) - 1, "test", "json", &json), LETHE_OK);
    CHECK(json && strstr(json, "\"photos\":[]"));
    lethe_free_string(json);
    CHECK_EQ_INT(lethe_receipt_get(s, r.receipt_hash, &again), LETHE_OK);
    CHECK(again && receipt && !strcmp(again, receipt));
    lethe_free_string(again);
    again = NULL;
    char other[65];
    snprintf(other, sizeof(other), "%s", r.receipt_hash);
    other[0] = other[0] == '0' ? '1' : '0';
    CHECK_EQ_INT(lethe_receipt_get(s, other, &again), LETHE_ERR_NOT_FOUND);
    CHECK(again == NULL && strstr(lethe_store_errmsg(s), "holds no receipt"));
    other[0] = 'A';
    CHECK_EQ_INT(lethe_receipt_get(s, other, &again), LETHE_ERR_ARG);
    CHECK_EQ_INT(lethe_receipt_get(s, NULL, &again), LETHE_ERR_ARG);
    CHECK(again == NULL);
    lethe_free_string(receipt);
    lethe_store_close(s);
    lethe_engine_close(e);
}

/* The same erasure of nothing, twice in one second (found by the http fuzz
 * target): two receipts, two hashes, both issued by the store. Once they
 * were the same bytes, and the second erasure failed storing its receipt. */
static void test_repeated_erasure_of_nothing(void)
{
    char dir[300], *r1 = NULL, *r2 = NULL;
    lethe_store *s = NULL;
    lethe_forget_result x1, x2;
    lethe_selector sel = {.uploader = "nobody-at-all"};
    new_dir(dir, sizeof(dir));
    CHECK_EQ_INT(lethe_store_open(dir, LETHE_STORE_CREATE, &s), LETHE_OK);
    CHECK_EQ_INT(lethe_forget(s, &sel, 0, "test", &x1, &r1, NULL), LETHE_OK);
    CHECK_EQ_INT(lethe_forget(s, &sel, 0, "test", &x2, &r2, NULL), LETHE_OK);
    CHECK(r1 && r2 && strcmp(r1, r2) != 0);
    CHECK(strcmp(x1.receipt_hash, x2.receipt_hash) != 0);
    CHECK_EQ_INT(lethe_receipt_check(s, r1, r1 ? strlen(r1) : 0), LETHE_OK);
    CHECK_EQ_INT(lethe_receipt_check(s, r2, r2 ? strlen(r2) : 0), LETHE_OK);
    lethe_free_string(r1);
    lethe_free_string(r2);
    lethe_store_close(s);
}

int main(void)
{
    if (fx_root_make("lethe-test-forget"))
        return 1;
    make_vecs();
    RUN(test_each_selector);
    RUN(test_forget_face);
    RUN(test_optout);
    RUN(test_backup_holds_nothing);
    RUN(test_forged_receipt);
    RUN(test_restore);
    RUN(test_restore_live_refuses_newer);
    RUN(test_keyring_checked_on_open);
    RUN(test_recovery_destroys_orphans);
    RUN(test_protocol_enforced);
    RUN(test_restore_optouts_from_mirror);
    RUN(test_api_rest);
    RUN(test_photos_from_memory);
    RUN(test_exact_bytes_and_receipt_get);
    RUN(test_repeated_erasure_of_nothing);
    RUN(test_long_lived_handle_after_erasure);
    fx_root_remove();
    return test_summary();
}
