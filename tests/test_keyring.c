/*
 * test_keyring.c: the keyring file (src/forget/keyring.c) on its own: keys
 * and records written, read back, destroyed; the two header copies; slots
 * checked against their place; the mirror kept in step, rewritten when it
 * lags, and its failures reported; the signing key's rotation; every write
 * failing in turn leaving a keyring that opens with the old or the new
 * content.
 */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include "forget/keyring.h"
#include "lethe.h"
#include "test.h"
#include "util/io.h"
#include "util/util.h"

static char root[256];
static int nfile;
static const uint8_t store_id[KR_STORE_ID] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

static void path_of(char *out, size_t n, const char *what)
{
    snprintf(out, n, "%s/%s%d", root, what, nfile++);
}

static int count_kind(void *ctx, int kind, kr_ref ref, unsigned flags, const uint8_t *payload,
                      size_t len)
{
    int *n = ctx;
    (void)ref;
    (void)flags;
    (void)payload;
    (void)len;
    n[kind]++;
    return 0;
}

static void test_keys_and_records(void)
{
    char path[300], msg[256];
    keyring *k = NULL;
    kr_ref refs[40], rec;
    uint8_t keys[40][KR_KEY], got[KR_KEY];
    path_of(path, sizeof(path), "kr");
    CHECK_EQ_INT(kr_create(path, store_id, &k, msg, sizeof(msg)), LETHE_OK);
    keyring *again_k = NULL;
    CHECK_EQ_INT(kr_create(path, store_id, &again_k, msg, sizeof(msg)), LETHE_ERR_ARG); /* exists */
    CHECK(again_k == NULL);
    kr_close(k);
    k = NULL;
    CHECK_EQ_INT(kr_open(path, 1, &k, msg, sizeof(msg)), LETHE_OK);
    for (int i = 0; i < 40; i++)
        CHECK_EQ_INT(kr_new_key(k, &refs[i], keys[i]), LETHE_OK);
    /* staged keys are seen by this handle before the flush */
    CHECK_EQ_INT(kr_get_key(k, refs[7], got), LETHE_OK);
    CHECK(!memcmp(got, keys[7], KR_KEY));
    CHECK_EQ_INT(kr_staged(k), 40);
    /* a record over several slots */
    uint8_t payload[200];
    for (int i = 0; i < 200; i++)
        payload[i] = (uint8_t)i;
    CHECK_EQ_INT(kr_new_record(k, KR_OPTOUT, KR_PENDING, payload, sizeof(payload), &rec), LETHE_OK);
    uint64_t gen = kr_generation(k);
    CHECK_EQ_INT(kr_flush(k, msg, sizeof(msg)), LETHE_OK);
    CHECK(kr_generation(k) == gen + 1);
    CHECK_EQ_INT(kr_staged(k), 0);
    kr_close(k);
    /* a reader sees them all */
    k = NULL;
    CHECK_EQ_INT(kr_open(path, 0, &k, msg, sizeof(msg)), LETHE_OK);
    for (int i = 0; i < 40; i++) {
        CHECK_EQ_INT(kr_get_key(k, refs[i], got), LETHE_OK);
        CHECK(!memcmp(got, keys[i], KR_KEY));
    }
    kr_ref wrong = {refs[3].slot, refs[3].id ^ 1};
    CHECK_EQ_INT(kr_get_key(k, wrong, got), LETHE_ERR_NOT_FOUND);
    kr_ref beyond = {10000, 1};
    CHECK_EQ_INT(kr_get_key(k, beyond, got), LETHE_ERR_NOT_FOUND);
    uint8_t *back = NULL;
    size_t len = 0;
    unsigned flags = 0;
    CHECK_EQ_INT(kr_get_record(k, rec, KR_OPTOUT, &back, &len, &flags), LETHE_OK);
    CHECK(len == sizeof(payload) && back && !memcmp(back, payload, len));
    CHECK(flags & KR_PENDING);
    lethe_free(back);
    CHECK_EQ_INT(kr_get_record(k, rec, KR_RECEIPT, &back, &len, &flags), LETHE_ERR_NOT_FOUND);
    /* a key's slot is no record of another kind */
    CHECK_EQ_INT(kr_get_record(k, refs[0], KR_OPTOUT, &back, &len, NULL), LETHE_ERR_NOT_FOUND);
    int n[4] = {0, 0, 0, 0};
    uint64_t damaged = 9;
    CHECK_EQ_INT(kr_foreach(k, count_kind, n, &damaged, msg, sizeof(msg)), LETHE_OK);
    CHECK_EQ_INT(n[KR_PHOTO], 40);
    CHECK_EQ_INT(n[KR_OPTOUT], 1);
    CHECK_EQ_INT(damaged, 0);
    kr_close(k);
    /* settle, then destroy: gone for every reader; freed slots are reused */
    k = NULL;
    CHECK_EQ_INT(kr_open(path, 1, &k, msg, sizeof(msg)), LETHE_OK);
    CHECK_EQ_INT(kr_settle(k, &rec, 1, msg, sizeof(msg)), LETHE_OK);
    CHECK_EQ_INT(kr_get_record(k, rec, KR_OPTOUT, &back, &len, &flags), LETHE_OK);
    CHECK(!(flags & KR_PENDING));
    lethe_free(back);
    CHECK_EQ_INT(kr_shred(k, refs, 10, msg, sizeof(msg)), LETHE_OK);
    CHECK_EQ_INT(kr_shred(k, refs, 10, msg, sizeof(msg)), LETHE_OK); /* twice: no-op */
    CHECK_EQ_INT(kr_get_key(k, refs[0], got), LETHE_ERR_NOT_FOUND);
    CHECK_EQ_INT(kr_get_key(k, refs[10], got), LETHE_OK);
    uint64_t slots = kr_slot_count(k);
    kr_ref again;
    CHECK_EQ_INT(kr_new_key(k, &again, got), LETHE_OK);
    CHECK(again.slot < 10); /* a freed slot, not a new one */
    kr_discard(k);
    CHECK(kr_slot_count(k) == slots);
    kr_close(k);
    /* the destroyed bytes are gone from the file */
    uint8_t *file = NULL;
    size_t flen = 0;
    CHECK_EQ_INT(lethe_read_file(path, 1u << 20, &file, &flen, msg, sizeof(msg)), LETHE_OK);
    CHECK(file && !memmem(file, flen, keys[0], KR_KEY) && memmem(file, flen, keys[10], KR_KEY));
    lethe_free(file);
}

static void damage(const char *path, off_t at, size_t n)
{
    uint8_t junk[64];
    memset(junk, 0x5A, sizeof(junk));
    int fd = open(path, O_WRONLY);
    CHECK(fd >= 0 && pwrite(fd, junk, n, at) == (ssize_t)n);
    if (fd >= 0)
        close(fd);
}

static void test_damage(void)
{
    char path[300], msg[256];
    keyring *k = NULL;
    kr_ref ref[3];
    uint8_t key[3][KR_KEY], got[KR_KEY];
    path_of(path, sizeof(path), "kr");
    CHECK_EQ_INT(kr_create(path, store_id, &k, msg, sizeof(msg)), LETHE_OK);
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(kr_new_key(k, &ref[i], key[i]), LETHE_OK);
    CHECK_EQ_INT(kr_flush(k, msg, sizeof(msg)), LETHE_OK);
    kr_close(k);
    /* a damaged slot: that key reads as damaged, the others still read */
    damage(path, KR_SLOTS_AT + (off_t)ref[1].slot * KR_SLOT + 20, 4);
    k = NULL;
    CHECK_EQ_INT(kr_open(path, 0, &k, msg, sizeof(msg)), LETHE_OK);
    CHECK_EQ_INT(kr_get_key(k, ref[1], got), LETHE_ERR_FORMAT);
    CHECK_EQ_INT(kr_get_key(k, ref[0], got), LETHE_OK);
    int n[4] = {0, 0, 0, 0};
    uint64_t damaged = 0;
    CHECK_EQ_INT(kr_foreach(k, count_kind, n, &damaged, msg, sizeof(msg)), LETHE_OK);
    CHECK_EQ_INT(n[KR_PHOTO], 2);
    CHECK_EQ_INT(damaged, 1);
    kr_close(k);
    /* a slot copied to another place is damaged, not another key */
    uint8_t slot[KR_SLOT];
    int fd = open(path, O_RDWR);
    CHECK(fd >= 0 && pread(fd, slot, KR_SLOT, KR_SLOTS_AT + (off_t)ref[0].slot * KR_SLOT) ==
                         KR_SLOT);
    CHECK(fd >= 0 && pwrite(fd, slot, KR_SLOT, KR_SLOTS_AT + (off_t)ref[2].slot * KR_SLOT) ==
                         KR_SLOT);
    if (fd >= 0)
        close(fd);
    k = NULL;
    CHECK_EQ_INT(kr_open(path, 0, &k, msg, sizeof(msg)), LETHE_OK);
    kr_ref moved = {ref[2].slot, ref[0].id};
    CHECK_EQ_INT(kr_get_key(k, moved, got), LETHE_ERR_FORMAT);
    kr_close(k);
    /* headers: the current copy damaged, the other one is used; both: refused */
    uint8_t hdr[KR_HEADER];
    uint64_t g0 = 0, g1 = 0;
    fd = open(path, O_RDONLY);
    CHECK(fd >= 0 && pread(fd, hdr, KR_HEADER, 0) == KR_HEADER);
    int a = kr_header_check(hdr, &g0, NULL) == 0;
    CHECK(fd >= 0 && pread(fd, hdr, KR_HEADER, KR_HEADER) == KR_HEADER);
    int b = kr_header_check(hdr, &g1, NULL) == 0;
    if (fd >= 0)
        close(fd);
    CHECK(a && b); /* a flush wrote the second copy */
    damage(path, (g1 > g0 ? KR_HEADER : 0) + 50, 8);
    k = NULL;
    CHECK_EQ_INT(kr_open(path, 0, &k, msg, sizeof(msg)), LETHE_OK);
    CHECK(kr_generation(k) == (g1 > g0 ? g0 : g1));
    kr_close(k);
    damage(path, (g1 > g0 ? 0 : KR_HEADER) + 50, 8);
    k = NULL;
    CHECK_EQ_INT(kr_open(path, 0, &k, msg, sizeof(msg)), LETHE_ERR_FORMAT);
    CHECK(strstr(msg, "header is damaged") != NULL);
    /* not a keyring at all, too short, not a file, readable by others */
    char other[300];
    path_of(other, sizeof(other), "junk");
    fd = open(other, O_WRONLY | O_CREAT, 0600);
    CHECK(fd >= 0 && write(fd, "hello", 5) == 5);
    if (fd >= 0)
        close(fd);
    CHECK_EQ_INT(kr_open(other, 0, &k, msg, sizeof(msg)), LETHE_ERR_FORMAT);
    CHECK(strstr(msg, "not a lethe keyring") != NULL);
    CHECK_EQ_INT(kr_open(root, 0, &k, msg, sizeof(msg)), LETHE_ERR_FORMAT);
    CHECK_EQ_INT(chmod(other, 0644), 0);
    CHECK_EQ_INT(kr_open(other, 0, &k, msg, sizeof(msg)), LETHE_ERR_ARG);
    CHECK(strstr(msg, "chmod 600") != NULL);
    path_of(other, sizeof(other), "absent");
    CHECK_EQ_INT(kr_open(other, 0, &k, msg, sizeof(msg)), LETHE_ERR_NOT_FOUND);
}

static int same_file(const char *a, const char *b)
{
    uint8_t *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    char msg[128];
    int same = lethe_read_file(a, 1u << 24, &x, &nx, msg, sizeof(msg)) == LETHE_OK &&
               lethe_read_file(b, 1u << 24, &y, &ny, msg, sizeof(msg)) == LETHE_OK && nx == ny &&
               !memcmp(x, y, nx);
    lethe_free(x);
    lethe_free(y);
    return same;
}

static void test_mirror(void)
{
    char path[300], dir[300], msg[256], *mpath;
    keyring *k = NULL;
    kr_ref ref;
    uint8_t key[KR_KEY];
    path_of(path, sizeof(path), "kr");
    path_of(dir, sizeof(dir), "mirror");
    CHECK_EQ_INT(mkdir(dir, 0700), 0);
    mpath = kr_mirror_path(dir, store_id);
    CHECK_EQ_INT(kr_create(path, store_id, &k, msg, sizeof(msg)), LETHE_OK);
    CHECK_EQ_INT(kr_set_mirror(k, "/nonexistent/folder", msg, sizeof(msg)), LETHE_ERR_IO);
    CHECK_EQ_INT(kr_set_mirror(k, dir, msg, sizeof(msg)), LETHE_OK);
    CHECK(same_file(path, mpath));
    for (int i = 0; i < 5; i++) {
        CHECK_EQ_INT(kr_new_key(k, &ref, key), LETHE_OK);
        CHECK_EQ_INT(kr_flush(k, msg, sizeof(msg)), LETHE_OK);
    }
    CHECK(same_file(path, mpath)); /* written at every change */
    CHECK_EQ_INT(kr_shred(k, &ref, 1, msg, sizeof(msg)), LETHE_OK);
    CHECK(same_file(path, mpath));
    /* the mirror's write fails: reported; the keyring itself has the key */
    CHECK_EQ_INT(kr_new_key(k, &ref, key), LETHE_OK);
    lethe_io_fail_after(4, ENOSPC); /* slots, fsync, header, fsync of the keyring */
    int rc = kr_flush(k, msg, sizeof(msg));
    lethe_io_fail_after(-1, 0);
    CHECK_EQ_INT(rc, LETHE_ERR_IO);
    CHECK(strstr(msg, "keyring mirror") != NULL);
    CHECK(!same_file(path, mpath));
    kr_close(k);
    /* the next writable open with the mirror rewrites it in full */
    k = NULL;
    CHECK_EQ_INT(kr_open(path, 1, &k, msg, sizeof(msg)), LETHE_OK);
    uint8_t got[KR_KEY];
    CHECK_EQ_INT(kr_get_key(k, ref, got), LETHE_OK);
    CHECK_EQ_INT(kr_set_mirror(k, dir, msg, sizeof(msg)), LETHE_OK);
    CHECK(same_file(path, mpath));
    /* rotation: a new secret, the public key changes, written at once */
    uint8_t pk0[32], sk0[64], pk1[32], sk1[64];
    kr_signing_key(k, pk0, sk0);
    uint32_t epoch = kr_signing_epoch(k);
    CHECK_EQ_INT(kr_rotate_signing_key(k, msg, sizeof(msg)), LETHE_OK);
    kr_signing_key(k, pk1, sk1);
    CHECK(memcmp(pk0, pk1, 32) != 0);
    CHECK(kr_signing_epoch(k) == epoch + 1);
    CHECK(same_file(path, mpath));
    /* a rotation whose write fails keeps the old key */
    lethe_io_fail_after(0, EIO);
    rc = kr_rotate_signing_key(k, msg, sizeof(msg));
    lethe_io_fail_after(-1, 0);
    CHECK_EQ_INT(rc, LETHE_ERR_IO);
    kr_signing_key(k, pk0, sk0);
    CHECK(!memcmp(pk0, pk1, 32));
    CHECK(kr_signing_epoch(k) == epoch + 1);
    CHECK_EQ_INT(kr_set_mirror(k, NULL, msg, sizeof(msg)), LETHE_OK);
    kr_close(k);
    k = NULL;
    CHECK_EQ_INT(kr_open(path, 0, &k, msg, sizeof(msg)), LETHE_OK);
    kr_signing_key(k, pk0, sk0);
    CHECK(!memcmp(pk0, pk1, 32));
    kr_close(k);
    sodium_memzero(sk0, sizeof(sk0));
    sodium_memzero(sk1, sizeof(sk1));
    lethe_free(mpath);
}

/* Every write-side call of a flush, then of a shred, failing in turn: the
 * keyring opens afterwards with the old or the new content. */
static void test_write_failures(void)
{
    char path[300], msg[256];
    int points = 0;
    for (long k = 0; k < 64; k++) {
        keyring *kr = NULL;
        kr_ref old, ref;
        uint8_t okey[KR_KEY], key[KR_KEY], got[KR_KEY];
        path_of(path, sizeof(path), "kr");
        CHECK_EQ_INT(kr_create(path, store_id, &kr, msg, sizeof(msg)), LETHE_OK);
        CHECK_EQ_INT(kr_new_key(kr, &old, okey), LETHE_OK);
        CHECK_EQ_INT(kr_flush(kr, msg, sizeof(msg)), LETHE_OK);
        CHECK_EQ_INT(kr_new_key(kr, &ref, key), LETHE_OK);
        lethe_io_fail_after(k, ENOSPC);
        int rc = kr_flush(kr, msg, sizeof(msg));
        if (rc == LETHE_OK)
            rc = kr_shred(kr, &old, 1, msg, sizeof(msg));
        long made = lethe_io_count();
        lethe_io_fail_after(-1, 0);
        if (rc != LETHE_OK) {
            CHECK_EQ_INT(rc, LETHE_ERR_IO);
            points++;
        }
        kr_close(kr);
        kr = NULL;
        CHECK_EQ_INT(kr_open(path, 0, &kr, msg, sizeof(msg)), LETHE_OK);
        if (kr) {
            int o = kr_get_key(kr, old, got);
            CHECK(o == LETHE_OK || o == LETHE_ERR_NOT_FOUND);
            if (rc == LETHE_OK) {
                CHECK_EQ_INT(o, LETHE_ERR_NOT_FOUND);
                CHECK_EQ_INT(kr_get_key(kr, ref, got), LETHE_OK);
            }
        }
        kr_close(kr);
        if (made <= k)
            break;
    }
    CHECK(points >= 6);
}

int main(void)
{
    snprintf(root, sizeof(root), "/tmp/lethe-test-keyring-XXXXXX");
    if (!mkdtemp(root) || sodium_init() < 0) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_keys_and_records);
    RUN(test_damage);
    RUN(test_mirror);
    RUN(test_write_failures);
    char cmd[320];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", root);
    return test_summary();
}
