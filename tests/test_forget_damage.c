/*
 * test_forget_damage.c: forgetting when something is damaged or missing.
 *
 * A keyring whose slots were edited (a slot's check is an unkeyed hash that
 * ties it to its place, so anyone who can write the file can make slots
 * that pass it: every length and link in them is hostile input), a photo
 * key or an opt-out record missing or unreadable, a catalog page that
 * cannot be read during recovery, backups, mirrors and receipts that are
 * not what they claim, restores that cannot proceed, writes that fail while
 * the keyring mirror is copied, catalog pages with stale bytes in their
 * freeblocks, and an erasure of more than LETHE_FORGET_WIDE_PHOTOS photos.
 * Each is refused or repaired with a status and a message naming the
 * problem, and nothing already stored is lost.
 */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include "forget/backup.h"
#include "forget/keyring.h"
#include "forget/optout.h"
#include "lethe.h"
#include "store/store.h"
#include "test.h"
#include "util/io.h"
#include "util/util.h"

/* 4 people with 5 photos each, dated over 10 years */
#define FX_PEOPLE 4
#define FX_FACES 5
#define FX_YEARS 10
#define FX_SEED 9191
#include "forget_fixture.h"

/* The store every test copies: N photos, no opt-out. */
static char tmpl[300];

static int has(const char *text, const char *what)
{
    int ok = text && strstr(text, what) != NULL;
    if (!ok)
        fprintf(stderr, "  expected \"%s\" in: %s\n", what, text ? text : "(null)");
    return ok;
}

/* A copy of the template in a new folder (its path into dir), opened. */
static lethe_store *copy_store(char *dir, size_t n)
{
    char cmd[700];
    lethe_store *s = NULL;
    new_dir(dir, n);
    snprintf(cmd, sizeof(cmd), "cp -a '%s' '%s'", tmpl, dir);
    if (run(cmd))
        return NULL;
    CHECK_EQ_INT(lethe_store_open(dir, 0, &s), LETHE_OK);
    return s;
}

static void file_in(char *out, size_t n, const char *dir, const char *name)
{
    snprintf(out, n, "%s/%s", dir, name);
}

/* ------------------------------------------------ keyring slots by hand */

/* A slot as keyring.h lays it out, sealed with its check for its place. */
static void slot_make(uint8_t s[KR_SLOT], uint64_t slot, int kind, unsigned flags,
                      unsigned count, uint32_t len, uint64_t id, const void *data, size_t n)
{
    uint8_t no[8];
    crypto_generichash_state h;
    memset(s, 0, KR_SLOT);
    s[0] = (uint8_t)kind;
    s[1] = (uint8_t)flags;
    s[2] = (uint8_t)count;
    s[3] = (uint8_t)(count >> 8);
    for (int i = 0; i < 4; i++)
        s[4 + i] = (uint8_t)(len >> (8 * i));
    for (int i = 0; i < 8; i++) {
        s[8 + i] = (uint8_t)(id >> (8 * i));
        no[i] = (uint8_t)(slot >> (8 * i));
    }
    if (data)
        memcpy(s + 16, data, n < KR_DATA ? n : KR_DATA);
    crypto_generichash_init(&h, NULL, 0, 16);
    crypto_generichash_update(&h, no, sizeof(no));
    crypto_generichash_update(&h, s, 48);
    crypto_generichash_final(&h, s + 48, 16);
}

static int slot_io(const char *kr, uint64_t slot, uint8_t s[KR_SLOT], int write)
{
    int fd = open(kr, write ? O_WRONLY : O_RDONLY);
    off_t at = (off_t)(KR_SLOTS_AT + slot * KR_SLOT);
    ssize_t r = fd < 0 ? -1 : write ? pwrite(fd, s, KR_SLOT, at) : pread(fd, s, KR_SLOT, at);
    if (fd >= 0)
        close(fd);
    CHECK_EQ_INT(r, KR_SLOT);
    return r == KR_SLOT ? 0 : -1;
}

/* Write a record of count slots (payload split 32 bytes a slot) at slot. */
static void record_put(const char *kr, uint64_t slot, int kind, unsigned flags, uint64_t id,
                       const uint8_t *payload, uint32_t len)
{
    uint32_t count = len <= KR_DATA ? 1 : (len + KR_DATA - 1) / KR_DATA;
    for (uint32_t i = 0; i < count; i++) {
        uint8_t s[KR_SLOT];
        size_t off = (size_t)i * KR_DATA, n = off < len ? LETHE_MIN(len - off, KR_DATA) : 0;
        slot_make(s, slot + i, kind, i ? KR_CONT : flags, i ? i : count, i ? 0 : len, id,
                  payload ? payload + off : NULL, n);
        slot_io(kr, slot + i, s, 1);
    }
}

/* A photo's key, or an opt-out's record, as the catalog names it. */
static int ref_of(lethe_store *s, const char *sql, int64_t id, kr_ref *ref)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s, sql, &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st) == SQLITE_ROW ? LETHE_OK : LETHE_ERR_NOT_FOUND;
    if (rc == LETHE_OK) {
        ref->slot = (uint64_t)sqlite3_column_int64(st, 0);
        ref->id = (uint64_t)sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    CHECK_EQ_INT(rc, LETHE_OK);
    return rc;
}

#define PHOTO_REF "SELECT key_slot, key_id FROM photos WHERE id = ?"
#define OPTOUT_REF "SELECT kr_slot, kr_id FROM optouts WHERE id = ?"

/* Records of each kind kr_foreach hands over, and the damaged slots. */
typedef struct tally {
    int kinds[8];
    int pending;
    int stop_after; /* return 1 (stop) after this many records, 0 never */
    int seen;
} tally;

static int tally_fn(void *ctx, int kind, kr_ref ref, unsigned flags, const uint8_t *payload,
                    size_t len)
{
    tally *t = ctx;
    (void)ref;
    (void)payload;
    (void)len;
    t->kinds[kind & 7]++;
    t->pending += (flags & KR_PENDING) != 0;
    return ++t->seen == t->stop_after;
}

static uint64_t tally_of(const char *kr, tally *t)
{
    keyring *k = NULL;
    char msg[256];
    uint64_t bad = 0;
    memset(t, 0, sizeof(*t));
    CHECK_EQ_INT(kr_open(kr, 0, &k, msg, sizeof(msg)), LETHE_OK);
    if (k)
        CHECK_EQ_INT(kr_foreach(k, tally_fn, t, &bad, msg, sizeof(msg)), LETHE_OK);
    kr_close(k);
    return bad;
}

/* --------------------------------------------------- the keyring alone */

static const uint8_t kr_id16[KR_STORE_ID] = {9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2, 3, 4, 5, 6};

/* A new keyring file at a new path (into path), closed. */
static int new_keyring(char *path, size_t n)
{
    keyring *k = NULL;
    char msg[256];
    snprintf(path, n, "%s/kr%d", root, nstore++);
    int rc = kr_create(path, kr_id16, &k, msg, sizeof(msg));
    CHECK_EQ_INT(rc, LETHE_OK);
    kr_close(k);
    return rc;
}

/* Case c of a damaged 100-byte opt-out record (slots 0..3, id 77): every
 * slot passes its check unless the case says otherwise. */
static void craft_damage(const char *kr, int c)
{
    uint8_t p[100], s[KR_SLOT];
    for (int i = 0; i < 100; i++)
        p[i] = (uint8_t)i;
    record_put(kr, 0, KR_OPTOUT, 0, 77, p, 100);
    switch (c) {
    case 0: /* a length past the limit, with the count that length needs */
        slot_make(s, 0, KR_OPTOUT, 0, 32769, KR_MAX_RECORD + 1, 77, p, 32);
        break;
    case 1: /* a count that is not the length's */
        slot_make(s, 0, KR_OPTOUT, 0, 2, 100, 77, p, 32);
        break;
    case 2: /* a continuation of another kind */
        slot_make(s, 2, KR_RECEIPT, KR_CONT, 2, 0, 77, p + 64, 32);
        break;
    case 3: /* of another record */
        slot_make(s, 2, KR_OPTOUT, KR_CONT, 2, 0, 78, p + 64, 32);
        break;
    case 4: /* not marked as a continuation */
        slot_make(s, 2, KR_OPTOUT, 0, 2, 0, 77, p + 64, 32);
        break;
    case 5: /* in the wrong place of the record */
        slot_make(s, 2, KR_OPTOUT, KR_CONT, 3, 0, 77, p + 64, 32);
        break;
    case 6: /* a continuation that fails its check */
        slot_io(kr, 2, s, 0);
        s[20] ^= 1;
        break;
    case 7: /* a first slot of kind "free" that passes its check */
        slot_make(s, 0, KR_FREE, 0, 4, 100, 77, p, 32);
        break;
    default: /* the record runs past the end of the file */
        CHECK_EQ_INT(truncate(kr, KR_SLOTS_AT + 2 * KR_SLOT), 0);
        return;
    }
    slot_io(kr, c >= 2 && c <= 6 ? 2 : 0, s, 1);
}

/* Slots that pass their check but do not make a record are damage: the
 * record is refused (never read past its bounds) and counted, and the
 * records around it still read. The check is an unkeyed hash, so these
 * length and link checks are what stands between an edited keyring and
 * the buffers: they stay checks, not assertions. */
static void test_crafted_records(void)
{
    /* 2: the record, and the slot that then reads as a record of its own */
    static const uint64_t want_bad[] = {1, 1, 1, 1, 2, 1, 2, 1, 1};
    uint8_t p[40];
    memset(p, 0x5A, sizeof(p));
    for (int c = 0; c < 9; c++) {
        char kr[300], msg[256];
        keyring *k = NULL;
        uint8_t *got = NULL, key[KR_KEY];
        size_t len = 9;
        tally t;
        if (new_keyring(kr, sizeof(kr)))
            return;
        craft_damage(kr, c);
        if (c != 8)
            record_put(kr, 4, KR_RECEIPT, 0, 90, p, 32); /* an intact neighbour */
        CHECK_EQ_INT(kr_open(kr, 0, &k, msg, sizeof(msg)), LETHE_OK);
        if (!k)
            return;
        kr_ref ref = {0, 77};
        CHECK_EQ_INT(kr_get_record(k, ref, KR_OPTOUT, &got, &len, NULL), LETHE_ERR_FORMAT);
        CHECK(got == NULL && len == 0);
        if (c == 7)
            CHECK_EQ_INT(kr_get_key(k, ref, key), LETHE_ERR_FORMAT);
        kr_ref receipt = {4, 90};
        if (c != 8) {
            CHECK_EQ_INT(kr_get_record(k, receipt, KR_RECEIPT, &got, &len, NULL), LETHE_OK);
            CHECK(len == 32 && got && !memcmp(got, p, 32));
            lethe_free(got);
        }
        kr_close(k);
        uint64_t bad = tally_of(kr, &t);
        if (bad != want_bad[c])
            fprintf(stderr, "  case %d: %llu damaged slots\n", c, (unsigned long long)bad);
        CHECK_EQ_INT(bad, want_bad[c]);
        CHECK_EQ_INT(t.kinds[KR_OPTOUT], 0);
        CHECK_EQ_INT(t.kinds[KR_RECEIPT], c != 8);
    }
}

/* References that do not name a record's first slot, records of no known
 * kind, empty and oversized records, staged records read back before the
 * flush, and post-commit passes with nothing to do. */
static void test_record_edges(void)
{
    char kr[300], msg[256];
    keyring *k = NULL;
    uint8_t p[100], key[KR_KEY], *got = NULL;
    size_t len = 0;
    unsigned flags = 99;
    kr_ref rec, empty, staged;
    tally t;
    for (int i = 0; i < 100; i++)
        p[i] = (uint8_t)(3 * i);
    if (new_keyring(kr, sizeof(kr)))
        return;
    CHECK_EQ_INT(kr_open(kr, 1, &k, msg, sizeof(msg)), LETHE_OK);
    if (!k)
        return;
    CHECK_EQ_INT(kr_flush(k, msg, sizeof(msg)), LETHE_OK); /* nothing staged */
    CHECK_EQ_INT(kr_generation(k), 1);
    CHECK_EQ_INT(kr_new_record(k, KR_OPTOUT, KR_PENDING, p, 100, &rec), LETHE_OK);
    CHECK_EQ_INT(kr_new_record(k, KR_RECEIPT, 0, NULL, 0, &empty), LETHE_OK);
    CHECK_EQ_INT(kr_new_record(k, KR_RECEIPT, 0, p, KR_MAX_RECORD + 1, &staged),
                 LETHE_ERR_TOO_LARGE);
    /* this handle reads what it staged, the flags included */
    CHECK_EQ_INT(kr_get_record(k, rec, KR_OPTOUT, &got, &len, &flags), LETHE_OK);
    CHECK(len == 100 && got && !memcmp(got, p, 100) && flags == KR_PENDING);
    lethe_free(got);
    CHECK_EQ_INT(kr_refresh(k, msg, sizeof(msg)), LETHE_OK); /* its own change: kept */
    CHECK_EQ_INT(kr_staged(k), 2);
    CHECK_EQ_INT(kr_flush(k, msg, sizeof(msg)), LETHE_OK);
    CHECK_EQ_INT(kr_get_record(k, empty, KR_RECEIPT, &got, &len, NULL), LETHE_OK);
    CHECK(got != NULL && len == 0);
    lethe_free(got);
    /* a continuation slot, another id, another kind: no such record */
    kr_ref cont = {rec.slot + 1, rec.id}, other = {rec.slot, rec.id ^ 1};
    CHECK_EQ_INT(kr_get_key(k, cont, key), LETHE_ERR_NOT_FOUND);
    CHECK_EQ_INT(kr_get_record(k, cont, KR_OPTOUT, &got, &len, NULL), LETHE_ERR_NOT_FOUND);
    CHECK_EQ_INT(kr_get_record(k, other, KR_OPTOUT, &got, &len, NULL), LETHE_ERR_NOT_FOUND);
    CHECK_EQ_INT(kr_get_record(k, rec, KR_RECEIPT, &got, &len, NULL), LETHE_ERR_NOT_FOUND);
    /* shredding them (or nothing) leaves the record alone */
    kr_ref wrong[2] = {cont, other};
    CHECK_EQ_INT(kr_shred(k, NULL, 0, msg, sizeof(msg)), LETHE_OK);
    CHECK_EQ_INT(kr_shred(k, wrong, 2, msg, sizeof(msg)), LETHE_OK);
    CHECK_EQ_INT(kr_get_record(k, rec, KR_OPTOUT, &got, &len, NULL), LETHE_OK);
    lethe_free(got);
    kr_close(k);
    /* a record of a kind this lethe does not know is handed over as such */
    record_put(kr, 40, 5, 0, 1234, p, 40);
    CHECK_EQ_INT(tally_of(kr, &t), 0);
    CHECK_EQ_INT(t.kinds[5], 1);
    CHECK_EQ_INT(t.kinds[KR_OPTOUT], 1);
    CHECK_EQ_INT(t.pending, 1);
    /* a callback that stops the walk: its value comes back */
    CHECK_EQ_INT(kr_open(kr, 0, &k, msg, sizeof(msg)), LETHE_OK);
    memset(&t, 0, sizeof(t));
    t.stop_after = 1;
    CHECK_EQ_INT(kr_foreach(k, tally_fn, &t, NULL, msg, sizeof(msg)), 1);
    CHECK_EQ_INT(t.seen, 1);
    kr_close(k);
}

static int write_bytes(const char *path, const void *b, size_t n, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    ssize_t w = fd >= 0 ? write(fd, b, n) : -1;
    if (fd >= 0)
        close(fd);
    CHECK_EQ_INT(w, (ssize_t)n);
    return w == (ssize_t)n ? 0 : -1;
}

/* A header copy edited in its version or slot size (with its hash
 * recomputed) is no header; a file with one header copy, or none, or that
 * is no keyring at all, is read or refused as such. */
static void test_keyring_headers(void)
{
    char kr[300], other[340], msg[256];
    uint8_t h[KR_SLOTS_AT], e[KR_HEADER], id[KR_STORE_ID];
    uint64_t gen = 0;
    keyring *k = NULL;
    if (new_keyring(kr, sizeof(kr)))
        return;
    int fd = open(kr, O_RDONLY);
    CHECK(fd >= 0 && pread(fd, h, sizeof(h), 0) == (ssize_t)sizeof(h));
    if (fd >= 0)
        close(fd);
    CHECK_EQ_INT(kr_header_check(h, &gen, id), 0);
    CHECK_EQ_INT(gen, 1);
    CHECK(!memcmp(id, kr_id16, KR_STORE_ID));
    for (int field = 8; field <= 12; field += 4) {
        memcpy(e, h, KR_HEADER);
        e[field] ^= 2; /* version 3, or slots of 66 bytes */
        crypto_generichash(e + 480, 32, e, 480, NULL, 0);
        CHECK_EQ_INT(kr_header_check(e, NULL, NULL), -1);
    }
    /* cut after the first copy: it is read alone */
    snprintf(other, sizeof(other), "%s.cut", kr);
    write_bytes(other, h, 600, 0600);
    CHECK_EQ_INT(kr_open(other, 0, &k, msg, sizeof(msg)), LETHE_OK);
    CHECK(k && !memcmp(kr_store_id(k), kr_id16, KR_STORE_ID));
    CHECK(k && kr_slot_count(k) == 0);
    kr_close(k);
    k = NULL;
    write_bytes(other, h, 100, 0600);
    CHECK_EQ_INT(kr_open(other, 0, &k, msg, sizeof(msg)), LETHE_ERR_FORMAT);
    CHECK(has(msg, "not a lethe keyring (100 bytes)"));
    memset(e, 'x', sizeof(e));
    write_bytes(other, e, sizeof(e), 0600);
    CHECK_EQ_INT(kr_open(other, 0, &k, msg, sizeof(msg)), LETHE_ERR_FORMAT);
    CHECK(has(msg, "not a lethe keyring") && !strstr(msg, "bytes)"));
    /* no file: a folder, a path through a file */
    CHECK_EQ_INT(kr_open(root, 0, &k, msg, sizeof(msg)), LETHE_ERR_FORMAT);
    CHECK(has(msg, "is not a regular file"));
    snprintf(other, sizeof(other), "%s/keyring", kr);
    CHECK_EQ_INT(kr_open(other, 0, &k, msg, sizeof(msg)), LETHE_ERR_IO);
    CHECK(has(msg, "Not a directory"));
    CHECK(k == NULL);
}

/* Another handle's writes are seen at kr_refresh: a file that grew is
 * mapped again, headers that went bad are reported. */
static void test_keyring_refresh(void)
{
    char kr[300], msg[256];
    keyring *k = NULL;
    uint8_t zero[KR_SLOT], junk[64];
    kr_ref ref;
    uint8_t key[KR_KEY];
    if (new_keyring(kr, sizeof(kr)))
        return;
    CHECK_EQ_INT(kr_open(kr, 1, &k, msg, sizeof(msg)), LETHE_OK);
    if (!k)
        return;
    CHECK_EQ_INT(kr_new_key(k, &ref, key), LETHE_OK);
    CHECK_EQ_INT(kr_flush(k, msg, sizeof(msg)), LETHE_OK);
    CHECK_EQ_INT(kr_slot_count(k), 1);
    /* the file grew by a free slot, its generation did not move */
    memset(zero, 0, sizeof(zero));
    int fd = open(kr, O_WRONLY | O_APPEND);
    CHECK(fd >= 0 && write(fd, zero, sizeof(zero)) == (ssize_t)sizeof(zero));
    if (fd >= 0)
        close(fd);
    CHECK_EQ_INT(kr_refresh(k, msg, sizeof(msg)), LETHE_OK);
    CHECK_EQ_INT(kr_slot_count(k), 2);
    /* the next key goes in the free slot, not over the first */
    kr_ref next;
    CHECK_EQ_INT(kr_new_key(k, &next, key), LETHE_OK);
    CHECK_EQ_INT(next.slot, 1);
    CHECK_EQ_INT(kr_flush(k, msg, sizeof(msg)), LETHE_OK);
    CHECK_EQ_INT(kr_get_key(k, ref, key), LETHE_OK);
    /* both header copies damaged under the handle */
    memset(junk, 0xEE, sizeof(junk));
    fd = open(kr, O_WRONLY);
    CHECK(fd >= 0 && pwrite(fd, junk, sizeof(junk), 64) == 64 &&
          pwrite(fd, junk, sizeof(junk), KR_HEADER + 64) == 64);
    if (fd >= 0)
        close(fd);
    CHECK_EQ_INT(kr_refresh(k, msg, sizeof(msg)), LETHE_ERR_FORMAT);
    CHECK(has(msg, "header is damaged"));
    kr_close(k);
}

static int same_bytes(const char *a, const char *b)
{
    uint8_t *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    char msg[256];
    int same = lethe_read_file(a, 1u << 26, &x, &nx, msg, sizeof(msg)) == LETHE_OK &&
               lethe_read_file(b, 1u << 26, &y, &ny, msg, sizeof(msg)) == LETHE_OK && nx == ny &&
               !memcmp(x, y, nx);
    lethe_free(x);
    lethe_free(y);
    return same;
}

static int exists(const char *path)
{
    struct stat sb;
    return lstat(path, &sb) == 0;
}

/* Setting a mirror copies the keyring (temporary file, fsync, rename,
 * fsync of the folder): each of those writes failing in turn is reported
 * as the mirror's I/O error and leaves neither a mirror nor its temporary
 * file; a mirror that is not a keyring is replaced; "" stops mirroring and
 * a file is no folder. */
static void test_mirror_copy_faults(void)
{
    char kr[300], dir[320], mirror[400], tmp[420], msg[512];
    keyring *k = NULL;
    kr_ref ref;
    uint8_t key[KR_KEY];
    if (new_keyring(kr, sizeof(kr)))
        return;
    snprintf(dir, sizeof(dir), "%s.m", kr);
    CHECK_EQ_INT(mkdir(dir, 0700), 0);
    char *mp = kr_mirror_path(dir, kr_id16);
    snprintf(mirror, sizeof(mirror), "%s", mp ? mp : "");
    lethe_free(mp);
    snprintf(tmp, sizeof(tmp), "%s.tmp", mirror);
    CHECK_EQ_INT(kr_open(kr, 1, &k, msg, sizeof(msg)), LETHE_OK);
    if (!k)
        return;
    CHECK_EQ_INT(kr_new_key(k, &ref, key), LETHE_OK);
    CHECK_EQ_INT(kr_flush(k, msg, sizeof(msg)), LETHE_OK);
    int failures = 0, rc = -1;
    for (long n = 0; n < 50 && rc != LETHE_OK; n++) {
        lethe_io_fail_after(n, EIO);
        rc = kr_set_mirror(k, dir, msg, sizeof(msg));
        const char *op = lethe_io_failed_op();
        lethe_io_fail_after(-1, 0);
        if (rc == LETHE_OK)
            break;
        failures++;
        CHECK_EQ_INT(rc, LETHE_ERR_IO);
        CHECK(has(msg, "keyring mirror") && has(msg, "Input/output error"));
        CHECK(op != NULL);
        CHECK(!exists(tmp));
        CHECK(!exists(mirror) || !strcmp(op ? op : "", "fsync")); /* renamed, folder not synced */
        unlink(mirror);
    }
    CHECK_EQ_INT(rc, LETHE_OK);
    CHECK(failures >= 4); /* open, write, fsync, rename (and the folder's fsync) */
    CHECK(same_bytes(kr, mirror));
    CHECK(kr_mirror_file(k) && !strcmp(kr_mirror_file(k), mirror));
    /* a mirror file that is no keyring is rewritten from the keyring */
    CHECK_EQ_INT(kr_set_mirror(k, NULL, msg, sizeof(msg)), LETHE_OK);
    write_bytes(mirror, "not a keyring", 13, 0600);
    CHECK_EQ_INT(kr_set_mirror(k, dir, msg, sizeof(msg)), LETHE_OK);
    CHECK(same_bytes(kr, mirror));
    /* "" stops mirroring; a file is no mirror folder */
    CHECK_EQ_INT(kr_set_mirror(k, "", msg, sizeof(msg)), LETHE_OK);
    CHECK(kr_mirror_file(k) == NULL);
    CHECK_EQ_INT(kr_set_mirror(k, kr, msg, sizeof(msg)), LETHE_ERR_IO);
    CHECK(has(msg, "not a folder"));
    kr_close(k);
}

/* ------------------------------------------------------------ opt-outs */

/* An opt-out's keyring payload is read as hostile input: every cut and
 * every out-of-range field is LETHE_ERR_FORMAT, the full payload decodes to
 * what was encoded. */
static void test_optout_payloads(void)
{
    optout o, d;
    uint8_t *p = NULL;
    size_t len = 0;
    memset(&o, 0, sizeof(o));
    o.present = ((1u << OPT_HASHES) - 1) | OPT_COLLECTED_BEFORE;
    for (int k = 0; k < OPT_HASHES; k++)
        memset(o.h[k], 0x10 + k, 32);
    snprintf(o.created_at, sizeof(o.created_at), "2024-01-01T00:00:00Z");
    snprintf(o.collected_before, sizeof(o.collected_before), "2001-01-01");
    o.include_undated = 1;
    o.threshold = 0.5f;
    o.nfaces = 2;
    o.faces = &vecs[0][0];
    memset(o.receipt, 0xAB, 32);
    CHECK_EQ_INT(optout_encode(&o, &p, &len), LETHE_OK);
    if (!p)
        return;
    CHECK_EQ_INT(optout_decode(p, len, &d), LETHE_OK);
    CHECK(d.present == o.present && d.nfaces == 2 && d.include_undated == 1);
    CHECK(!strcmp(d.collected_before, "2001-01-01") && !memcmp(d.h[OPT_SHA], o.h[OPT_SHA], 32));
    CHECK(d.faces && !memcmp(d.faces, vecs[0], 2 * 128 * sizeof(float)));
    optout_clear(&d);
    int refused = 0;
    for (size_t cut = 0; cut < len; cut++) {
        int rc = optout_decode(p, cut, &d);
        refused += rc == LETHE_ERR_FORMAT;
        optout_clear(&d);
    }
    CHECK_EQ_INT(refused, len);
    size_t cl_at = 44, bl_at = cl_at + 1 + strlen(o.created_at);
    static const float bad_threshold[] = {-1.0f, NAN, INFINITY};
    for (int e = 0; e < 7; e++) {
        uint8_t *q = lethe_malloc(len);
        if (!q)
            break;
        memcpy(q, p, len);
        uint32_t huge = 70000;
        if (e == 0)
            q[0] = 2; /* a version this lethe does not know */
        else if (e == 1)
            q[cl_at] = 32; /* created_at longer than it can be */
        else if (e == 2)
            q[bl_at] = 40; /* collected_before likewise */
        else if (e == 3)
            memcpy(q + 8, &huge, 4); /* more faces than allowed */
        else
            memcpy(q + 4, &bad_threshold[e - 4], 4);
        CHECK_EQ_INT(optout_decode(q, len, &d), LETHE_ERR_FORMAT);
        optout_clear(&d);
        lethe_free(q);
    }
    lethe_free(p);
}

/* Damage case c to the record at ref in the keyring kr (payload len bytes):
 * 0 zeroed (gone), 1 its first slot fails its check, 2 its slots pass but
 * the payload is no opt-out. */
static void damage_record(const char *kr, kr_ref ref, size_t len, int c)
{
    uint8_t s[KR_SLOT], junk[4096];
    if (c == 0) {
        memset(s, 0, sizeof(s));
        for (uint64_t i = 0; i < (len + KR_DATA - 1) / KR_DATA; i++)
            slot_io(kr, ref.slot + i, s, 1);
    } else if (c == 1) {
        slot_io(kr, ref.slot, s, 0);
        s[30] ^= 0x40;
        slot_io(kr, ref.slot, s, 1);
    } else {
        memset(junk, 0x7F, sizeof(junk));
        record_put(kr, ref.slot, KR_OPTOUT, 0, ref.id, junk, (uint32_t)LETHE_MIN(len, 4096));
    }
}

/* The payload length of the record at ref (to damage it in place). */
static size_t record_len(lethe_store *s, kr_ref ref)
{
    uint8_t *p = NULL;
    size_t len = 0;
    CHECK_EQ_INT(kr_get_record(s->kr, ref, KR_OPTOUT, &p, &len, NULL), LETHE_OK);
    lethe_free(p);
    return len;
}

/* A standing opt-out whose keyring record is gone, fails its check, or
 * holds no opt-out: an ingest is refused, naming the opt-out and saying
 * why, and nothing stored changes. */
static void test_damaged_optout_records(void)
{
    static const char *why[] = {"(not found)", "(corrupt or unrecognised data)",
                                "(corrupt or unrecognised data)"};
    char base[300], dir[300], kr[340], cmd[700], before[65], after[65];
    lethe_store *s = copy_store(base, sizeof(base));
    lethe_selector sel = {.uploader = "person1"};
    kr_ref ref = {0, 0};
    if (!s)
        return;
    CHECK_EQ_INT(lethe_forget(s, &sel, LETHE_FORGET_OPTOUT, "test", NULL, NULL, NULL), LETHE_OK);
    ref_of(s, OPTOUT_REF, 1, &ref);
    size_t len = record_len(s, ref);
    CHECK(len > KR_DATA); /* several slots */
    lethe_store_close(s);
    for (int c = 0; c < 3; c++) {
        new_dir(dir, sizeof(dir));
        snprintf(cmd, sizeof(cmd), "cp -a '%s' '%s'", base, dir);
        if (run(cmd))
            return;
        file_in(kr, sizeof(kr), dir, STORE_KEYRING);
        damage_record(kr, ref, len, c);
        s = NULL;
        CHECK_EQ_INT(lethe_store_open(dir, 0, &s), LETHE_OK);
        if (!s)
            return;
        digest(s, before);
        int64_t entries = log_entries(s);
        lethe_ingest_stats st;
        memset(&st, 0, sizeof(st));
        CHECK_EQ_INT(ingest(s, 5, 10, NULL, &st), LETHE_ERR_STORE);
        const char *m = lethe_store_errmsg(s);
        CHECK(has(m, "opt-out 1 cannot be read from the keyring") && has(m, why[c]));
        CHECK(has(m, "damaged or older than the catalog"));
        CHECK_EQ_INT(st.added, 0);
        digest(s, after);
        CHECK(!strcmp(before, after));
        CHECK_EQ_INT(log_entries(s), entries);
        char *json = NULL;
        CHECK_EQ_INT(lethe_keyring_check(s, &json), LETHE_OK);
        /* a record that holds no opt-out is still a record of the keyring */
        CHECK(has(json, c == 2 ? "\"optouts\":1," : "\"optouts\":0,"));
        CHECK(has(json, c == 1 ? "\"damaged_slots\":1," : "\"damaged_slots\":0,"));
        lethe_free_string(json);
        lethe_store_close(s);
    }
}

/* ------------------------------------------------------ photo keys */

static void kept_digest(lethe_store *s, char hex[65])
{
    CHECK_EQ_INT(lethe_store_digest(s, hex), LETHE_OK);
}

/* Erasures that meet a photo whose key is gone (case 0) or damaged (1)
 * stop with the slot named and change nothing; the others go on. */
static void forget_meets_bad_key(lethe_store *s, int c, uint64_t slot)
{
    char before[65], after[65], want[128];
    lethe_selector by_uploader = {.uploader = "person1"};
    lethe_selector by_date = {.uploader = "person1", .collected_before = "2010-01-01"};
    lethe_selector other = {.uploader = "person2"};
    lethe_forget_result r;
    if (c == 0)
        snprintf(want, sizeof(want), "a photo's key is missing from the keyring (slot %llu)",
                 (unsigned long long)slot);
    else
        snprintf(want, sizeof(want), "the keyring's slot %llu is damaged",
                 (unsigned long long)slot);
    kept_digest(s, before);
    int64_t entries = log_entries(s);
    CHECK_EQ_INT(lethe_forget(s, &by_uploader, 0, "test", &r, NULL, NULL), LETHE_ERR_STORE);
    CHECK(has(lethe_store_errmsg(s), want));
    CHECK_EQ_INT(lethe_forget(s, &by_date, LETHE_FORGET_DRY_RUN, "test", &r, NULL, NULL),
                 LETHE_ERR_STORE);
    CHECK(has(lethe_store_errmsg(s), want));
    kept_digest(s, after);
    CHECK(!strcmp(before, after));
    CHECK_EQ_INT(log_entries(s), entries);
    CHECK_EQ_INT(lethe_forget(s, &other, 0, "test", &r, NULL, NULL), LETHE_OK);
    CHECK_EQ_INT(r.photos, FX_FACES);
}

static void test_missing_and_damaged_keys(void)
{
    for (int c = 0; c < 2; c++) {
        char dir[300], bk[320], kr[340], msg[512], before[65], after[65], *info = NULL;
        kr_ref ref = {0, 0};
        lethe_store *s = copy_store(dir, sizeof(dir));
        if (!s)
            return;
        ref_of(s, PHOTO_REF, 8, &ref); /* row 7: person1's, dated 2002 */
        snprintf(bk, sizeof(bk), "%s.bk", dir);
        CHECK_EQ_INT(lethe_backup(s, bk, "test", &info), LETHE_OK);
        lethe_free_string(info);
        lethe_store_close(s);
        file_in(kr, sizeof(kr), dir, STORE_KEYRING);
        damage_record(kr, ref, KR_KEY, c);
        s = NULL;
        CHECK_EQ_INT(lethe_store_open(dir, 0, &s), LETHE_OK);
        if (!s)
            return;
        forget_meets_bad_key(s, c, ref.slot);
        kept_digest(s, before);
        lethe_store_close(s);
        /* a restore over the store: a missing key is an erased photo, a
         * damaged one stops it with the store as it was */
        lethe_restore_options o;
        lethe_restore_result res;
        lethe_restore_options_init(&o);
        o.actor = "test";
        o.discard_newer = 1;
        int rc = lethe_restore(bk, dir, &o, &res, msg, sizeof(msg));
        if (c == 0) {
            CHECK_EQ_INT(rc, LETHE_OK);
            CHECK_EQ_INT(res.dropped_erased, FX_FACES + 1); /* person2's, and photo 8 */
            continue;
        }
        CHECK_EQ_INT(rc, LETHE_ERR_STORE);
        char want[64];
        snprintf(want, sizeof(want), "the keyring's slot %llu is damaged",
                 (unsigned long long)ref.slot);
        CHECK(has(msg, want));
        s = NULL;
        CHECK_EQ_INT(lethe_store_open(dir, 0, &s), LETHE_OK);
        if (s)
            kept_digest(s, after);
        CHECK(!strcmp(before, after));
        lethe_store_close(s);
        snprintf(msg, sizeof(msg), "%s.restoring", dir);
        CHECK(!exists(msg));
    }
}

/* ------------------------------------------------------------ recovery */

static int sql_on(const char *dir, const char *sql)
{
    char db[340];
    sqlite3 *d = NULL;
    file_in(db, sizeof(db), dir, STORE_DB);
    int rc = sqlite3_open(db, &d);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(d, sql, NULL, NULL, NULL);
    sqlite3_close(d);
    CHECK_EQ_INT(rc, SQLITE_OK);
    return rc;
}

/* The page of the catalog that is btree's root (table or index): its bytes
 * into page (psz bytes at most 65536) and its offset. The catalog must be
 * whole in its file (no WAL), as a closed store's is. */
static off_t root_page(const char *dir, const char *btree, uint8_t *page, size_t *psz)
{
    char db[340], sql[200], wal[360];
    sqlite3 *d = NULL;
    sqlite3_stmt *st = NULL;
    int64_t rootpg = 0;
    file_in(db, sizeof(db), dir, STORE_DB);
    snprintf(wal, sizeof(wal), "%s-wal", db);
    struct stat sb;
    CHECK(stat(wal, &sb) != 0 || sb.st_size == 0);
    snprintf(sql, sizeof(sql), "SELECT rootpage, (SELECT page_size FROM pragma_page_size) FROM "
                               "sqlite_schema WHERE name = '%s'", btree);
    if (sqlite3_open_v2(db, &d, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(d, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
        rootpg = sqlite3_column_int64(st, 0);
        *psz = (size_t)sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    sqlite3_close(d);
    CHECK(rootpg > 1 && *psz >= 512 && *psz <= 65536);
    if (rootpg <= 1)
        return -1;
    int fd = open(db, O_RDONLY);
    off_t at = (off_t)(rootpg - 1) * (off_t)*psz;
    CHECK(fd >= 0 && pread(fd, page, *psz, at) == (ssize_t)*psz);
    if (fd >= 0)
        close(fd);
    return at;
}

static void put_page(const char *dir, off_t at, const uint8_t *page, size_t psz)
{
    char db[340];
    file_in(db, sizeof(db), dir, STORE_DB);
    int fd = open(db, O_WRONLY);
    CHECK(fd >= 0 && pwrite(fd, page, psz, at) == (ssize_t)psz);
    if (fd >= 0)
        close(fd);
}

/* Rewrite the first slot of the record at ref with its flags changed. */
static void reflag(const char *kr, kr_ref ref, unsigned flags)
{
    uint8_t s[KR_SLOT];
    if (slot_io(kr, ref.slot, s, 0))
        return;
    uint32_t len = (uint32_t)s[4] | (uint32_t)s[5] << 8 | (uint32_t)s[6] << 16 |
                   (uint32_t)s[7] << 24;
    uint8_t data[KR_DATA];
    memcpy(data, s + 16, KR_DATA);
    slot_make(s, ref.slot, s[0], flags, (unsigned)s[2] | (unsigned)s[3] << 8, len, ref.id, data,
              KR_DATA);
    slot_io(kr, ref.slot, s, 1);
}

/* What a crash between a commit and the keyring's work leaves, repaired at
 * the next open: an opt-out withdrawn in the catalog keeps its record (it
 * goes), a pending opt-out the catalog holds (it is settled), pending
 * receipt hashes the catalog never committed (they go, whatever their
 * length), a record of a kind this lethe does not know (left alone). */
static void test_recovery_repairs(void)
{
    char dir[300], kr[340];
    kr_ref a = {0, 0}, b = {0, 0};
    lethe_store *s = copy_store(dir, sizeof(dir));
    lethe_selector one = {.uploader = "person1"}, two = {.uploader = "person2"};
    uint8_t h[40];
    tally t;
    if (!s)
        return;
    CHECK_EQ_INT(lethe_forget(s, &one, LETHE_FORGET_OPTOUT, "test", NULL, NULL, NULL), LETHE_OK);
    CHECK_EQ_INT(lethe_forget(s, &two, LETHE_FORGET_OPTOUT, "test", NULL, NULL, NULL), LETHE_OK);
    ref_of(s, OPTOUT_REF, 1, &a);
    ref_of(s, OPTOUT_REF, 2, &b);
    uint64_t end = kr_slot_count(s->kr);
    lethe_store_close(s);
    file_in(kr, sizeof(kr), dir, STORE_KEYRING);
    reflag(kr, b, KR_PENDING);
    memset(h, 0x33, sizeof(h));
    record_put(kr, end, KR_RECEIPT, KR_PENDING, 501, h, 31);
    record_put(kr, end + 1, KR_RECEIPT, KR_PENDING, 502, h, 32);
    record_put(kr, end + 2, 5, 0, 503, h, 40);
    sql_on(dir, "UPDATE optouts SET removed_at = '2024-01-01T00:00:00Z' WHERE id = 1; "
                "INSERT INTO meta(key, value) VALUES ('scrub_pending', 1)");
    CHECK_EQ_INT(tally_of(kr, &t), 0);
    CHECK_EQ_INT(t.pending, 3);
    s = NULL;
    CHECK_EQ_INT(lethe_store_open(dir, 0, &s), LETHE_OK);
    if (!s)
        return;
    CHECK_EQ_INT(tally_of(kr, &t), 0);
    CHECK_EQ_INT(t.pending, 0);
    CHECK_EQ_INT(t.kinds[KR_OPTOUT], 1);
    CHECK_EQ_INT(t.kinds[5], 1);
    CHECK_EQ_INT(t.kinds[KR_RECEIPT], 2); /* the two opt-outs' receipts */
    uint8_t *p = NULL;
    size_t len = 0;
    unsigned flags = 9;
    CHECK_EQ_INT(kr_get_record(s->kr, a, KR_OPTOUT, &p, &len, NULL), LETHE_ERR_NOT_FOUND);
    CHECK_EQ_INT(kr_get_record(s->kr, b, KR_OPTOUT, &p, &len, &flags), LETHE_OK);
    CHECK_EQ_INT(flags, 0);
    lethe_free(p);
    /* person1 may come back, person2 may not */
    lethe_ingest_stats st;
    memset(&st, 0, sizeof(st));
    CHECK_EQ_INT(ingest(s, 5, 15, NULL, &st), LETHE_OK);
    CHECK_EQ_INT(st.added, FX_FACES);
    CHECK_EQ_INT(st.opted_out, FX_FACES);
    lethe_store_close(s);
}

/* Recovery asks the catalog whether it holds each pending record; when the
 * catalog cannot answer (a page it cannot read), the record is kept and
 * the open fails saying so. (Regression: a failed lookup counted as "not
 * held", and recovery destroyed the opt-out's record, in the keyring and
 * the mirror: the opt-out could no longer be loaded, nor restored.) Once
 * the page is whole again, the next open settles the record. */
static void test_recovery_keeps_what_it_cannot_check(void)
{
    char dir[300], kr[340];
    uint8_t page[65536], bad[65536];
    size_t psz = 0;
    kr_ref a = {0, 0};
    lethe_selector one = {.uploader = "person1"};
    tally t;
    lethe_store *s = copy_store(dir, sizeof(dir));
    if (!s)
        return;
    CHECK_EQ_INT(lethe_forget(s, &one, LETHE_FORGET_OPTOUT, "test", NULL, NULL, NULL), LETHE_OK);
    ref_of(s, OPTOUT_REF, 1, &a);
    lethe_store_close(s);
    file_in(kr, sizeof(kr), dir, STORE_KEYRING);
    reflag(kr, a, KR_PENDING); /* the crash came before the settle */
    sql_on(dir, "INSERT INTO meta(key, value) VALUES ('scrub_pending', 1)");
    off_t at = root_page(dir, "optouts", page, &psz);
    if (at < 0)
        return;
    memcpy(bad, page, psz);
    bad[0] = 0x07; /* no kind of b-tree page */
    put_page(dir, at, bad, psz);
    s = NULL;
    int rc = lethe_store_open(dir, 0, &s);
    CHECK(rc != LETHE_OK);
    CHECK(has(lethe_store_errmsg(s), "recovery: looking up a pending opt-out"));
    lethe_store_close(s);
    CHECK_EQ_INT(tally_of(kr, &t), 0);
    CHECK_EQ_INT(t.kinds[KR_OPTOUT], 1);
    CHECK_EQ_INT(t.pending, 1);
    put_page(dir, at, page, psz);
    s = NULL;
    CHECK_EQ_INT(lethe_store_open(dir, 0, &s), LETHE_OK);
    CHECK_EQ_INT(tally_of(kr, &t), 0);
    CHECK_EQ_INT(t.kinds[KR_OPTOUT], 1);
    CHECK_EQ_INT(t.pending, 0);
    lethe_ingest_stats st;
    memset(&st, 0, sizeof(st));
    CHECK_EQ_INT(ingest(s, 5, 10, NULL, &st), LETHE_OK);
    CHECK_EQ_INT(st.opted_out, FX_FACES);
    lethe_store_close(s);
}

/* ------------------------------------------------------------- restore */

/* A store with a mirror and a backup, then (after the backup) an opt-out by
 * date and one by face and uploader; closed. Paths into dir, bk, mirror. */
static int restore_setup(char *dir, char *bk, char *mirror, size_t n)
{
    char *info = NULL;
    lethe_store *s = copy_store(dir, n);
    if (!s)
        return -1;
    snprintf(mirror, n, "%s.m", dir);
    snprintf(bk, n, "%s.bk", dir);
    CHECK_EQ_INT(mkdir(mirror, 0700), 0);
    CHECK_EQ_INT(lethe_keyring_mirror(s, mirror, "test"), LETHE_OK);
    CHECK_EQ_INT(lethe_backup(s, bk, "test", &info), LETHE_OK);
    lethe_free_string(info);
    lethe_selector by_date = {.collected_before = "1997-01-01"};
    lethe_selector by_face = {.uploader = "person2", .faces = vecs[10], .n_faces = 1};
    unsigned f = LETHE_FORGET_OPTOUT | LETHE_FORGET_CONFIRMED;
    CHECK_EQ_INT(lethe_forget(s, &by_date, f, "test", NULL, NULL, NULL), LETHE_OK);
    CHECK_EQ_INT(lethe_forget(s, &by_face, f, "test", NULL, NULL, NULL), LETHE_OK);
    lethe_store_close(s);
    return 0;
}

static int restore_from(const char *bk, const char *dest, const char *mirror, char *msg,
                        size_t n, lethe_restore_result *res)
{
    lethe_restore_options o;
    lethe_restore_options_init(&o);
    o.actor = "test";
    o.keyring_mirror = mirror;
    o.wait_seconds = 0.3;
    msg[0] = 0;
    return lethe_restore(bk, dest, &o, res, msg, n);
}

/* The mirror of a store lost, restored: opt-outs made after the backup are
 * listed again with what they select, the receipts are carried, and records
 * never committed (pending) or that are no receipt hash are left out. */
static void test_restore_from_mirror_records(void)
{
    char dir[300], bk[300], mirror[300], dest[320], msg[512], *json = NULL;
    lethe_restore_result res;
    if (restore_setup(dir, bk, mirror, sizeof(dir)))
        return;
    char *mp = NULL;
    lethe_store *s = NULL;
    CHECK_EQ_INT(lethe_store_open(dir, LETHE_STORE_READONLY, &s), LETHE_OK);
    if (s)
        mp = kr_mirror_path(mirror, s->store_id);
    uint64_t end = s ? kr_slot_count(s->kr) : 0;
    lethe_store_close(s);
    if (!mp)
        return;
    uint8_t p[200];
    memset(p, 0x44, sizeof(p));
    record_put(mp, end, KR_OPTOUT, KR_PENDING, 601, p, 200);
    record_put(mp, end + 7, KR_RECEIPT, 0, 602, p, 31);
    lethe_free(mp);
    snprintf(dest, sizeof(dest), "%s.new", dir);
    CHECK_EQ_INT(restore_from(bk, dest, mirror, msg, sizeof(msg), &res), LETHE_OK);
    CHECK_EQ_INT(res.receipts_carried, 2);
    s = NULL;
    CHECK_EQ_INT(lethe_store_open(dest, 0, &s), LETHE_OK);
    CHECK_EQ_INT(lethe_optout_list(s, &json), LETHE_OK);
    CHECK(has(json, "\"selects\":[\"collected_before\"]"));
    CHECK(has(json, "\"selects\":[\"uploader\",\"face\"]"));
    CHECK(json && !strstr(json, "\"id\":3"));
    lethe_free_string(json);
    log_entries(s);
    lethe_store_close(s);
}

/* Restores that cannot proceed say why and make nothing: no keyring in the
 * mirror, a mirror "keyring" that is a folder, a destination whose parent
 * is missing, a backup whose catalog is missing or is a folder, a
 * backup.json naming another store than its catalog, a live store another
 * writer holds. */
static void test_restore_refusals(void)
{
    char dir[300], bk[300], mirror[300], dest[340], other[340], cmd[2400], msg[512];
    lethe_restore_result res;
    if (restore_setup(dir, bk, mirror, sizeof(dir)))
        return;
    lethe_store *s = NULL;
    char id[2 * KR_STORE_ID + 1] = "";
    CHECK_EQ_INT(lethe_store_open(dir, 0, &s), LETHE_OK);
    if (!s)
        return;
    sodium_bin2hex(id, sizeof(id), s->store_id, KR_STORE_ID);
    snprintf(dest, sizeof(dest), "%s.r", dir);
    snprintf(other, sizeof(other), "%s.empty", dir);
    CHECK_EQ_INT(mkdir(other, 0700), 0);
    CHECK_EQ_INT(restore_from(bk, dest, other, msg, sizeof(msg), &res), LETHE_ERR_STORE);
    CHECK(has(msg, "no keyring at") && has(msg, id));
    snprintf(cmd, sizeof(cmd), "%s/%s.keyring", other, id);
    CHECK_EQ_INT(mkdir(cmd, 0700), 0);
    CHECK_EQ_INT(restore_from(bk, dest, other, msg, sizeof(msg), &res), LETHE_ERR_IO);
    CHECK(has(msg, "Is a directory"));
    CHECK(!exists(dest));
    snprintf(other, sizeof(other), "%s/no/such/folder", dir);
    CHECK_EQ_INT(restore_from(bk, other, mirror, msg, sizeof(msg), &res), LETHE_ERR_IO);
    CHECK(has(msg, ".restoring: No such file or directory"));
    /* the backup's catalog: missing, then a folder */
    snprintf(other, sizeof(other), "%s.bk2", dir);
    snprintf(cmd, sizeof(cmd), "cp -a '%s' '%s' && mv '%s/%s' '%s/moved'", bk, other, other,
             STORE_DB, other);
    if (run(cmd) == 0) {
        CHECK_EQ_INT(restore_from(other, dest, mirror, msg, sizeof(msg), &res), LETHE_ERR_IO);
        CHECK(has(msg, STORE_DB ": No such file or directory"));
        snprintf(cmd, sizeof(cmd), "mkdir '%s/%s'", other, STORE_DB);
        run(cmd);
        CHECK_EQ_INT(restore_from(other, dest, mirror, msg, sizeof(msg), &res), LETHE_ERR_IO);
        CHECK(has(msg, STORE_DB ": Is a directory"));
    }
    /* backup.json naming another store (whose mirror keyring is there) */
    snprintf(other, sizeof(other), "%s.bk3", dir);
    snprintf(cmd, sizeof(cmd), "cp -a '%s' '%s' && sed -i 's/%s/%032d/' '%s/backup.json' && "
             "cp '%s/%s.keyring' '%s/%032d.keyring'", bk, other, id, 0, other, mirror, id,
             mirror, 0);
    if (run(cmd) == 0) {
        CHECK_EQ_INT(restore_from(other, dest, mirror, msg, sizeof(msg), &res), LETHE_ERR_STORE);
        CHECK(has(msg, "backup.json names another store than its catalog"));
    }
    CHECK(!exists(dest));
    /* over the live store while another writer holds it */
    CHECK_EQ_INT(store_lock(s, "a long job"), LETHE_OK);
    CHECK_EQ_INT(restore_from(bk, dir, NULL, msg, sizeof(msg), &res), LETHE_ERR_BUSY);
    CHECK(has(msg, "a long job"));
    store_unlock(s);
    lethe_store_close(s);
}

/* A backup whose catalog has a page SQLite cannot read, with backup.json
 * rewritten to match it (damage after the backup was described, or an
 * edit): the restore from the mirror stops with the SQLite error and says
 * what it was doing. (Regression: the failed lookup of an opt-out was
 * LETHE_ERR_IO with no message of its own.) */
static void test_restore_unreadable_backup(void)
{
    char dir[300], bk[300], mirror[300], dest[340], json[340], msg[512], hex[65];
    uint8_t page[65536], *text = NULL;
    size_t psz = 0, len = 0;
    lethe_restore_result res;
    if (restore_setup(dir, bk, mirror, sizeof(dir)))
        return;
    off_t at = root_page(bk, "sqlite_autoindex_optouts_1", page, &psz);
    if (at < 0)
        return;
    page[0] = 0x07;
    put_page(bk, at, page, psz);
    file_in(dest, sizeof(dest), bk, STORE_DB);
    CHECK_EQ_INT(backup_file_hash(dest, hex, msg, sizeof(msg)), LETHE_OK);
    file_in(json, sizeof(json), bk, "backup.json");
    CHECK_EQ_INT(lethe_read_file(json, 1u << 16, &text, &len, msg, sizeof(msg)), LETHE_OK);
    char *h = text ? strstr((char *)text, "\"catalog_blake2b\":\"") : NULL;
    CHECK(h != NULL);
    if (h) {
        memcpy(h + 19, hex, 64);
        write_bytes(json, text, len, 0600);
    }
    lethe_free(text);
    snprintf(dest, sizeof(dest), "%s.new", dir);
    int rc = restore_from(bk, dest, mirror, msg, sizeof(msg), &res);
    CHECK(rc != LETHE_OK);
    CHECK(has(msg, "looking up an opt-out of the keyring: database disk image is malformed"));
    CHECK(!exists(dest));
}

/* --------------------------------------------------------- wide erasure */

/* An erasure of more than LETHE_FORGET_WIDE_PHOTOS photos by one uploader
 * (no wide selector) needs confirmation, changes nothing without it, and
 * goes with it. The keyring (past 64 KiB) is mirrored whole. */
static void test_wide_by_count(void)
{
    enum { MANY = LETHE_FORGET_WIDE_PHOTOS + 100 };
    char dir[300], mirror[320], kr[340], before[65], after[65], *json = NULL;
    lethe_store *s = NULL;
    lethe_ingest *g = NULL;
    lethe_ingest_options io;
    lethe_forget_result r;
    new_dir(dir, sizeof(dir));
    CHECK_EQ_INT(lethe_store_open(dir, LETHE_STORE_CREATE, &s), LETHE_OK);
    if (!s)
        return;
    lethe_ingest_options_init(&io);
    io.actor = "test";
    int rc = lethe_ingest_begin(s, &io, &g);
    for (int i = 0; i < MANY && rc == LETHE_OK; i++) {
        char url[48];
        float v[128];
        memcpy(v, vecs[i % N], sizeof(v));
        v[i % 128] += 1e-3f * (float)(1 + i / 128);
        snprintf(url, sizeof(url), "https://crowd.example/%d", i);
        lethe_provenance p = {.uploader = "crowd", .url = url, .source = "site-c",
                              .jurisdiction = "US", .consent = "explicit"};
        rc = lethe_ingest_descriptor(g, v, &p, (size_t)i + 1);
    }
    CHECK_EQ_INT(lethe_ingest_end(g, NULL), LETHE_OK);
    CHECK_EQ_INT(rc, LETHE_OK);
    snprintf(mirror, sizeof(mirror), "%s.m", dir);
    CHECK_EQ_INT(mkdir(mirror, 0700), 0);
    CHECK_EQ_INT(lethe_keyring_mirror(s, mirror, "test"), LETHE_OK);
    file_in(kr, sizeof(kr), dir, STORE_KEYRING);
    CHECK(kr_slot_count(s->kr) * KR_SLOT > 65536);
    CHECK(same_bytes(kr, kr_mirror_file(s->kr)));
    lethe_selector crowd = {.uploader = "crowd"};
    kept_digest(s, before);
    CHECK_EQ_INT(lethe_forget(s, &crowd, 0, "test", &r, NULL, NULL), LETHE_ERR_CONFIRM);
    CHECK_EQ_INT(r.photos, MANY);
    CHECK(has(r.wide, "more than 1000 photos"));
    CHECK(has(lethe_store_errmsg(s), "not erased: it erases more than 1000 photos"));
    kept_digest(s, after);
    CHECK(!strcmp(before, after));
    CHECK_EQ_INT(lethe_forget(s, &crowd, LETHE_FORGET_CONFIRMED, "test", &r, NULL, NULL),
                 LETHE_OK);
    CHECK_EQ_INT(r.photos, MANY);
    CHECK_EQ_INT(lethe_lookup(s, LETHE_LOOKUP_UPLOADER, "crowd", "test", "json", &json), LETHE_OK);
    CHECK(has(json, "\"photos\":[]"));
    lethe_free_string(json);
    CHECK(same_bytes(kr, kr_mirror_file(s->kr)));
    lethe_store_close(s);
}

/* ------------------------------------------------- receipts, backup.json */

/* Receipts edited in their frame or their key, and receipts of another
 * store, are refused with the reason; trailing blank lines do not matter. */
static void test_receipt_frames(void)
{
    char dir[300], other[300], msg[256], *rec = NULL, *foreign = NULL, e[4096];
    lethe_selector sel = {.uploader = "person3"};
    /* another store: made anew (a copy would share the keyring's secrets) */
    lethe_store *s = copy_store(dir, sizeof(dir)), *t = make_store(other, sizeof(other), NULL);
    if (!s || !t)
        goto out;
    CHECK_EQ_INT(lethe_forget(s, &sel, 0, "test", NULL, &rec, NULL), LETHE_OK);
    CHECK_EQ_INT(lethe_forget(t, &sel, 0, "test", NULL, &foreign, NULL), LETHE_OK);
    if (!rec || !foreign || strlen(rec) + 8 > sizeof(e))
        goto out;
    size_t len = strlen(rec);
    snprintf(e, sizeof(e), "%s\r\n \n", rec);
    CHECK_EQ_INT(lethe_receipt_verify(e, strlen(e), NULL, msg, sizeof(msg)), LETHE_OK);
    CHECK_EQ_INT(lethe_receipt_check(s, e, strlen(e)), LETHE_OK);
    memcpy(e, rec, len + 1);
    e[16] = '2'; /* {"lethe_receipt":2, */
    CHECK_EQ_INT(lethe_receipt_verify(e, len, NULL, msg, sizeof(msg)), LETHE_ERR_FORMAT);
    CHECK(has(msg, "not a lethe receipt"));
    CHECK_EQ_INT(lethe_receipt_check(s, e, len), LETHE_ERR_FORMAT);
    CHECK(has(lethe_store_errmsg(s), "not a lethe receipt"));
    memcpy(e, rec, len + 1);
    char *k = strstr(e, "\"store_key\":\"");
    if (k) {
        k[13 + 64] = 'x'; /* the key's closing quote */
        CHECK_EQ_INT(lethe_receipt_verify(e, len, NULL, msg, sizeof(msg)), LETHE_ERR_FORMAT);
        CHECK(has(msg, "names no store key"));
        memcpy(e, rec, len + 1);
        k[13 + 10] = 'z'; /* not hex */
        CHECK_EQ_INT(lethe_receipt_verify(e, len, NULL, msg, sizeof(msg)), LETHE_ERR_FORMAT);
        CHECK(has(msg, "names no store key"));
    }
    CHECK_EQ_INT(lethe_receipt_check(s, foreign, strlen(foreign)), LETHE_ERR_FORMAT);
    CHECK(has(lethe_store_errmsg(s), "signed with a key this store never had"));
out:
    lethe_free_string(rec);
    lethe_free_string(foreign);
    lethe_store_close(s);
    lethe_store_close(t);
}

/* backup.json is hostile input: each field missing, of the wrong type or
 * out of range is refused naming it; the well-formed one parses. */
static void test_backup_json_fields(void)
{
    static const struct {
        const char *from, *to, *why;
    } edits[] = {
        {"\"lethe_backup\":2", "\"lethe_backup\":\"2\"", "not a lethe backup of this version"},
        {"\"lethe_backup\":2", "\"lethe_backups\":2", "not a lethe backup of this version"},
        {"\"format\":", "\"format\":\"x\",\"f\":", "format or log_seq"},
        {"\"format\":", "\"formats\":", "format or log_seq"},
        {"\"log_seq\":3", "\"log_seq\":\"3\"", "format or log_seq"},
        {"\"log_seq\":3", "\"log_seq\":1e16", "format or log_seq"},
        {"\"log_seq\":3", "\"log_seq\":0", "format or log_seq"},
        {"\"log_seq\":3", "\"log_seqs\":3", "format or log_seq"},
        {"\"created_at\":", "\"created\":", "\"created_at\" is missing"},
        {"\"store_id\":\"0123", "\"store_id\":\"0X23", "\"store_id\" is missing or malformed"},
        {"\"digest\":\"00", "\"digest\":\"0", "\"digest\" is missing or malformed"},
    };
    char good[600], text[700], msg[256];
    backup_info bi;
    snprintf(good, sizeof(good), "{\"lethe_backup\":2,\"created_at\":\"2024-01-01T00:00:00Z\","
             "\"format\":%d,\"store_id\":\"0123456789abcdef0123456789abcdef\",\"digest\":"
             "\"%064d\",\"log_seq\":3,\"log_hash\":\"%064d\",\"catalog_blake2b\":\"%064d\"}",
             LETHE_STORE_FORMAT, 0, 0, 0);
    CHECK_EQ_INT(backup_info_parse(good, strlen(good), &bi, msg, sizeof(msg)), LETHE_OK);
    CHECK_EQ_INT(bi.log_seq, 3);
    CHECK_EQ_INT(backup_info_parse("[2]", 3, &bi, msg, sizeof(msg)), LETHE_ERR_FORMAT);
    CHECK(has(msg, "not a lethe backup of this version"));
    for (size_t i = 0; i < LETHE_ARRAY_LEN(edits); i++) {
        const char *at = strstr(good, edits[i].from);
        CHECK(at != NULL);
        if (!at)
            continue;
        snprintf(text, sizeof(text), "%.*s%s%s", (int)(at - good), good, edits[i].to,
                 at + strlen(edits[i].from));
        CHECK_EQ_INT(backup_info_parse(text, strlen(text), &bi, msg, sizeof(msg)),
                     LETHE_ERR_FORMAT);
        CHECK(has(msg, edits[i].why));
    }
}

/* ---------------------------------------------------------------- scrub */

static unsigned be16_at(const uint8_t *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

/* The first b-tree page (after page 1) of the catalog with a freeblock of
 * at least 8 bytes: its offset, its bytes into pg, the freeblock's place. */
static off_t page_with_freeblock(int fd, uint8_t *pg, size_t psz, unsigned *fb, unsigned *size)
{
    for (off_t at = (off_t)psz; pread(fd, pg, psz, at) == (ssize_t)psz; at += (off_t)psz) {
        unsigned type = pg[0], f = be16_at(pg + 1);
        if ((type == 2 || type == 5 || type == 10 || type == 13) && f && f + 4 <= psz &&
            be16_at(pg + f + 2) >= 8 && f + be16_at(pg + f + 2) <= psz) {
            *fb = f;
            *size = be16_at(pg + f + 2);
            return at;
        }
    }
    return -1;
}

static int scrub_all(const char *dir)
{
    lethe_store *s = NULL;
    int rc = lethe_store_open(dir, 0, &s);
    if (rc == LETHE_OK && (rc = store_lock(s, "test")) == LETHE_OK) {
        rc = store_scrub(s, 1);
        store_unlock(s);
    }
    lethe_store_close(s);
    CHECK_EQ_INT(rc, LETHE_OK);
    return rc;
}

/* Stale bytes in a page's freeblock (what SQLite's secure_delete can
 * leave when cells move) are zeroed by the scrub; a page whose header is
 * not what a b-tree page's is stays as it is; the store stays sound. */
static void test_scrub_freeblocks(void)
{
    char dir[300], db[340], hex[65], want[65];
    uint8_t pg[65536], again[65536];
    unsigned fb = 0, size = 0;
    lethe_selector sel = {.uploader = "person1"};
    lethe_store *s = copy_store(dir, sizeof(dir));
    if (!s)
        return;
    CHECK_EQ_INT(lethe_forget(s, &sel, 0, "test", NULL, NULL, NULL), LETHE_OK);
    digest(s, want);
    lethe_store_close(s);
    size_t psz = 0;
    if (root_page(dir, "photos", pg, &psz) < 0)
        return;
    file_in(db, sizeof(db), dir, STORE_DB);
    int fd = open(db, O_RDWR);
    off_t at = fd >= 0 ? page_with_freeblock(fd, pg, psz, &fb, &size) : -1;
    CHECK(at > 0);
    if (at <= 0) {
        if (fd >= 0)
            close(fd);
        return;
    }
    memset(pg + fb + 4, 0xAA, size - 4);
    CHECK(pwrite(fd, pg, psz, at) == (ssize_t)psz);
    /* and a page that claims more cells than it can hold, junk in its gap */
    off_t odd = at == (off_t)psz ? 2 * (off_t)psz : (off_t)psz;
    uint8_t keep[65536], bent[65536];
    CHECK(pread(fd, keep, psz, odd) == (ssize_t)psz);
    memcpy(bent, keep, psz);
    bent[0] = 13;
    bent[3] = bent[4] = 0xFF;
    memset(bent + psz / 2, 0x5C, 16);
    CHECK(pwrite(fd, bent, psz, odd) == (ssize_t)psz);
    close(fd);
    scrub_all(dir);
    fd = open(db, O_RDWR);
    CHECK(fd >= 0 && pread(fd, again, psz, at) == (ssize_t)psz);
    int zero = 1;
    for (unsigned i = fb + 4; i < fb + size; i++)
        zero &= again[i] == 0;
    CHECK(zero);
    CHECK(fd >= 0 && pread(fd, again, psz, odd) == (ssize_t)psz && !memcmp(again, bent, psz));
    CHECK(fd >= 0 && pwrite(fd, keep, psz, odd) == (ssize_t)psz);
    if (fd >= 0)
        close(fd);
    if (sound(dir, hex) == LETHE_OK)
        CHECK(!strcmp(hex, want));
}

/* ---------------------------------------------------------------- main */

static int make_template(void)
{
    lethe_store *s = make_store(tmpl, sizeof(tmpl), NULL);
    lethe_store_close(s);
    return s ? 0 : -1;
}

int main(int argc, char **argv)
{
    test_select(argc, argv);
    if (fx_root_make("lethe-test-forget-damage"))
        return 1;
    make_vecs();
    if (make_template() == 0) {
        RUN(test_crafted_records);
        RUN(test_record_edges);
        RUN(test_keyring_headers);
        RUN(test_keyring_refresh);
        RUN(test_mirror_copy_faults);
        RUN(test_optout_payloads);
        RUN(test_damaged_optout_records);
        RUN(test_missing_and_damaged_keys);
        RUN(test_recovery_repairs);
        RUN(test_recovery_keeps_what_it_cannot_check);
        RUN(test_restore_from_mirror_records);
        RUN(test_restore_refusals);
        RUN(test_restore_unreadable_backup);
        RUN(test_wide_by_count);
        RUN(test_receipt_frames);
        RUN(test_backup_json_fields);
        RUN(test_scrub_freeblocks);
    }
    fx_root_remove();
    return test_summary();
}
