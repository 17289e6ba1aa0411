/*
 * keyring.c: the keyring file (see keyring.h for the format and the rules).
 */
#include "forget/keyring.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <libgen.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lethe.h"
#include "util/io.h"
#include "util/util.h"

#define KR_MAGIC "LETHEKEY"
#define KR_VERSION 1u
#define KR_CHECK_AT 480
#define KR_SCAN_CHUNK 4096 /* slots read at once by kr_foreach and the map */

/* A record staged for kr_flush: its place and its encoded slots. */
typedef struct staged {
    uint64_t slot, id;
    int kind;
    uint32_t count;
    uint8_t *bytes; /* count * KR_SLOT */
} staged;

/* One write of a change pass: bytes at an offset (the slot area). */
typedef struct kr_write {
    uint64_t at;
    size_t len;
    uint8_t *bytes;
} kr_write;

struct keyring {
    char *path;
    int fd;
    int writable;
    int cur;               /* which header copy is current (0 or 1) */
    uint64_t gen;
    uint8_t store_id[KR_STORE_ID];
    uint8_t salt[KR_SALT];
    uint8_t sign_sk[64];
    uint32_t epoch;
    /* writers: which slots are in use (1 byte a slot), loaded on demand */
    uint8_t *used;
    uint64_t nslots;       /* slots in the file or staged past its end */
    int map_loaded;
    uint64_t hint;         /* no free slot below this one */
    staged *st;
    size_t nst, capst;
    /* the mirror */
    char *mpath;
    int mfd;
};

/* ------------------------------------------------------------ encoding */

static void put_u16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static unsigned get_u16(const uint8_t *p)
{
    return (unsigned)p[0] | (unsigned)p[1] << 8;
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void slot_check(uint64_t slot, const uint8_t *s, uint8_t out[16])
{
    crypto_generichash_state h;
    uint8_t no[8];
    put_u64(no, slot);
    crypto_generichash_init(&h, NULL, 0, 16);
    crypto_generichash_update(&h, no, sizeof(no));
    crypto_generichash_update(&h, s, 48);
    crypto_generichash_final(&h, out, 16);
}

static void slot_seal(uint64_t slot, uint8_t *s)
{
    slot_check(slot, s, s + 48);
}

static int slot_is_zero(const uint8_t *s)
{
    uint8_t acc = 0;
    for (int i = 0; i < KR_SLOT; i++)
        acc |= s[i];
    return acc == 0;
}

/* 1 valid, 0 free, -1 damaged. */
static int slot_valid(uint64_t slot, const uint8_t *s)
{
    uint8_t want[16];
    if (slot_is_zero(s))
        return 0;
    slot_check(slot, s, want);
    return sodium_memcmp(want, s + 48, 16) == 0 && s[0] != KR_FREE ? 1 : -1;
}

static uint32_t slots_for(size_t len)
{
    return len <= KR_DATA ? 1u : (uint32_t)((len + KR_DATA - 1) / KR_DATA);
}

/* Encode a record's slots (first at `slot`) into bytes (count * KR_SLOT). */
static void record_encode(uint64_t slot, int kind, unsigned flags, uint64_t id,
                          const uint8_t *payload, size_t len, uint32_t count, uint8_t *bytes)
{
    memset(bytes, 0, (size_t)count * KR_SLOT);
    assert(count == slots_for(len) && count <= UINT16_MAX);
    for (uint32_t i = 0; i < count; i++) {
        uint8_t *s = bytes + (size_t)i * KR_SLOT;
        size_t off = (size_t)i * KR_DATA, n = off < len ? LETHE_MIN(len - off, KR_DATA) : 0;
        s[0] = (uint8_t)kind;
        s[1] = (uint8_t)(i ? KR_CONT : (flags & ~KR_CONT));
        put_u16(s + 2, i ? i : count);
        put_u32(s + 4, i ? 0 : (uint32_t)len);
        put_u64(s + 8, id);
        if (n)
            memcpy(s + 16, payload + off, n);
        slot_seal(slot + i, s);
    }
}

/* ------------------------------------------------------------- header */

int kr_header_check(const uint8_t *h, uint64_t *generation, uint8_t store_id[KR_STORE_ID])
{
    uint8_t want[32];
    if (memcmp(h, KR_MAGIC, 8) != 0 || get_u32(h + 8) != KR_VERSION ||
        get_u32(h + 12) != KR_SLOT)
        return -1;
    crypto_generichash(want, sizeof(want), h, KR_CHECK_AT, NULL, 0);
    if (sodium_memcmp(want, h + KR_CHECK_AT, 32) != 0)
        return -1;
    if (generation)
        *generation = get_u64(h + 16);
    if (store_id)
        memcpy(store_id, h + 24, KR_STORE_ID);
    return 0;
}

static void header_encode(const keyring *k, uint64_t gen, uint8_t h[KR_HEADER])
{
    memset(h, 0, KR_HEADER);
    memcpy(h, KR_MAGIC, 8);
    put_u32(h + 8, KR_VERSION);
    put_u32(h + 12, KR_SLOT);
    put_u64(h + 16, gen);
    memcpy(h + 24, k->store_id, KR_STORE_ID);
    memcpy(h + 40, k->salt, KR_SALT);
    memcpy(h + 72, k->sign_sk, 64);
    put_u32(h + 136, k->epoch);
    crypto_generichash(h + KR_CHECK_AT, 32, h, KR_CHECK_AT, NULL, 0);
}

static void header_decode(keyring *k, const uint8_t *h)
{
    k->gen = get_u64(h + 16);
    memcpy(k->store_id, h + 24, KR_STORE_ID);
    memcpy(k->salt, h + 40, KR_SALT);
    memcpy(k->sign_sk, h + 72, 64);
    k->epoch = get_u32(h + 136);
}

/* ------------------------------------------------------------------ I/O */

static int full_pread(int fd, void *buf, size_t len, uint64_t at)
{
    for (size_t got = 0; got < len;) {
        ssize_t r = pread(fd, (uint8_t *)buf + got, len - got, (off_t)(at + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r < 0 ? -1 : (int)got; /* short: the bytes read */
        got += (size_t)r;
    }
    return (int)len;
}

static int full_pwrite(int fd, const void *buf, size_t len, uint64_t at)
{
    for (size_t done = 0; done < len;) {
        ssize_t w = lethe_io_pwrite(fd, (const uint8_t *)buf + done, len - done,
                                    (off_t)(at + done));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            return -1;
        }
        done += (size_t)w;
    }
    return 0;
}

/* fsync the folder holding path, so a created or renamed file is durable. */
static int sync_dir_of(const char *path)
{
    /* on the stack: an allocation failing here would be reported as an I/O
     * error with whatever errno was left */
    char copy[PATH_MAX];
    if (strlen(path) >= sizeof(copy)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(copy, path, strlen(path) + 1);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int r = lethe_io_fsync(fd);
    close(fd);
    return r;
}

/* Write the change's slot writes, fsync, then the next header copy with
 * generation gen, fsync: to one file. */
static int apply_writes(int fd, const kr_write *w, size_t n, const uint8_t *hdr, int copy)
{
    for (size_t i = 0; i < n; i++)
        if (full_pwrite(fd, w[i].bytes, w[i].len, w[i].at) != 0)
            return -1;
    if (n && lethe_io_fsync(fd) != 0)
        return -1;
    if (full_pwrite(fd, hdr, KR_HEADER, (uint64_t)copy * KR_HEADER) != 0 ||
        lethe_io_fsync(fd) != 0)
        return -1;
    return 0;
}

/* Apply a change pass to the keyring and its mirror under a new generation. */
static int commit_writes(keyring *k, const kr_write *w, size_t n, char *msg, size_t msg_len)
{
    uint8_t hdr[KR_HEADER];
    int next = 1 - k->cur;
    header_encode(k, k->gen + 1, hdr);
    if (apply_writes(k->fd, w, n, hdr, next) != 0) {
        sodium_memzero(hdr, sizeof(hdr));
        return lethe_fail(msg, msg_len, LETHE_ERR_IO, "%s: %s", k->path, strerror(errno));
    }
    k->cur = next;
    k->gen++;
    int rc = LETHE_OK;
    if (k->mfd >= 0 && apply_writes(k->mfd, w, n, hdr, next) != 0)
        rc = lethe_fail(msg, msg_len, LETHE_ERR_IO,
                        "keyring mirror %s: %s (the mirror is rewritten in full at the next "
                        "change)", k->mpath, strerror(errno));
    sodium_memzero(hdr, sizeof(hdr));
    return rc;
}

/* ------------------------------------------------------------ open/close */

static keyring *kr_alloc(const char *path, int writable)
{
    keyring *k = lethe_calloc(1, sizeof(*k));
    if (!k)
        return NULL;
    k->fd = -1;
    k->mfd = -1;
    k->writable = writable;
    if (!(k->path = lethe_strdup(path))) {
        lethe_free(k);
        return NULL;
    }
    return k;
}

void kr_close(keyring *k)
{
    if (!k)
        return;
    kr_discard(k);
    if (k->fd >= 0)
        close(k->fd);
    if (k->mfd >= 0)
        close(k->mfd);
    sodium_memzero(k->salt, sizeof(k->salt));
    sodium_memzero(k->sign_sk, sizeof(k->sign_sk));
    lethe_free(k->st);
    lethe_free(k->used);
    lethe_free(k->path);
    lethe_free(k->mpath);
    lethe_free(k);
}

int kr_create(const char *path, const uint8_t store_id[KR_STORE_ID], keyring **out, char *msg,
              size_t msg_len)
{
    uint8_t hdr[KR_HEADER], pk[32];
    keyring *k = kr_alloc(path, 1);
    *out = NULL;
    if (!k)
        return lethe_fail(msg, msg_len, LETHE_ERR_NOMEM, "out of memory");
    memcpy(k->store_id, store_id, KR_STORE_ID);
    randombytes_buf(k->salt, sizeof(k->salt));
    crypto_sign_keypair(pk, k->sign_sk);
    k->epoch = 1;
    k->gen = 1;
    k->map_loaded = 1; /* empty: nothing to scan */
    k->fd = lethe_io_open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (k->fd < 0) {
        int rc = lethe_fail(msg, msg_len, errno == EEXIST ? LETHE_ERR_ARG : LETHE_ERR_IO,
                            "%s: %s", path, strerror(errno));
        kr_close(k);
        return rc;
    }
    header_encode(k, 1, hdr);
    if (full_pwrite(k->fd, hdr, KR_HEADER, 0) != 0 ||
        lethe_io_ftruncate(k->fd, KR_SLOTS_AT) != 0 || lethe_io_fsync(k->fd) != 0 ||
        sync_dir_of(path) != 0) {
        int rc = lethe_fail(msg, msg_len, LETHE_ERR_IO, "%s: %s", path, strerror(errno));
        sodium_memzero(hdr, sizeof(hdr));
        kr_close(k);
        unlink(path);
        return rc;
    }
    sodium_memzero(hdr, sizeof(hdr));
    *out = k;
    return LETHE_OK;
}

/* Pick the current header copy of the file open on fd into k. */
static int read_header(keyring *k, int fd, const char *path, char *msg, size_t msg_len)
{
    uint8_t h[2][KR_HEADER];
    uint64_t g[2] = {0, 0};
    int ok[2];
    int r = full_pread(fd, h, sizeof(h), 0);
    if (r < 0)
        return lethe_fail(msg, msg_len, LETHE_ERR_IO, "%s: %s", path, strerror(errno));
    if (r < KR_HEADER)
        return lethe_fail(msg, msg_len, LETHE_ERR_FORMAT, "%s: not a lethe keyring (%d bytes)",
                          path, r);
    if (r < 2 * KR_HEADER)
        memset(h[1], 0, KR_HEADER);
    for (int i = 0; i < 2; i++)
        ok[i] = kr_header_check(h[i], &g[i], NULL) == 0;
    if (!ok[0] && !ok[1]) {
        int rc = memcmp(h[0], KR_MAGIC, 8) == 0
                     ? lethe_fail(msg, msg_len, LETHE_ERR_FORMAT,
                                  "%s: the keyring's header is damaged (restore the keyring from "
                                  "its mirror)", path)
                     : lethe_fail(msg, msg_len, LETHE_ERR_FORMAT, "%s: not a lethe keyring", path);
        sodium_memzero(h, sizeof(h));
        return rc;
    }
    k->cur = ok[1] && (!ok[0] || g[1] > g[0]) ? 1 : 0;
    header_decode(k, h[k->cur]);
    sodium_memzero(h, sizeof(h));
    return LETHE_OK;
}

int kr_open(const char *path, int writable, keyring **out, char *msg, size_t msg_len)
{
    struct stat sb;
    keyring *k;
    int rc;
    *out = NULL;
    if (lstat(path, &sb) != 0)
        return lethe_fail(msg, msg_len, errno == ENOENT ? LETHE_ERR_NOT_FOUND : LETHE_ERR_IO,
                          "%s: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return lethe_fail(msg, msg_len, LETHE_ERR_FORMAT, "%s is not a regular file", path);
    if (sb.st_mode & 077)
        return lethe_fail(msg, msg_len, LETHE_ERR_ARG,
                          "%s can be read by others (mode %03o): it holds every photo's key and "
                          "the signing secret; `chmod 600 %s`",
                          path, (unsigned)(sb.st_mode & 0777), path);
    if (!(k = kr_alloc(path, writable)))
        return lethe_fail(msg, msg_len, LETHE_ERR_NOMEM, "out of memory");
    k->fd = open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOFOLLOW);
    if (k->fd < 0) {
        rc = lethe_fail(msg, msg_len, LETHE_ERR_IO, "%s: %s", path, strerror(errno));
        goto fail;
    }
    if ((rc = read_header(k, k->fd, path, msg, msg_len)) != LETHE_OK)
        goto fail;
    if (fstat(k->fd, &sb) != 0) {
        rc = lethe_fail(msg, msg_len, LETHE_ERR_IO, "%s: %s", path, strerror(errno));
        goto fail;
    }
    k->nslots = sb.st_size > KR_SLOTS_AT ? (uint64_t)(sb.st_size - KR_SLOTS_AT) / KR_SLOT : 0;
    *out = k;
    return LETHE_OK;
fail:
    kr_close(k);
    return rc;
}

int kr_refresh(keyring *k, char *msg, size_t msg_len)
{
    struct stat sb;
    uint64_t gen = k->gen;
    if (k->nst)
        return LETHE_OK; /* a change of this handle's own is under way */
    int rc = read_header(k, k->fd, k->path, msg, msg_len);
    if (rc)
        return rc;
    if (fstat(k->fd, &sb) != 0)
        return lethe_fail(msg, msg_len, LETHE_ERR_IO, "%s: %s", k->path, strerror(errno));
    uint64_t n = sb.st_size > KR_SLOTS_AT ? (uint64_t)(sb.st_size - KR_SLOTS_AT) / KR_SLOT : 0;
    if (k->gen != gen || n != k->nslots) {
        /* another handle wrote: which slots are free is known no more */
        k->map_loaded = 0;
        k->hint = 0;
        k->nslots = n;
    }
    return LETHE_OK;
}

const char *kr_mirror_file(const keyring *k)
{
    return k->mpath;
}

const uint8_t *kr_store_id(const keyring *k)
{
    return k->store_id;
}

const uint8_t *kr_salt(const keyring *k)
{
    return k->salt;
}

uint64_t kr_generation(const keyring *k)
{
    return k->gen;
}

uint32_t kr_signing_epoch(const keyring *k)
{
    return k->epoch;
}

uint64_t kr_slot_count(const keyring *k)
{
    return k->nslots;
}

void kr_signing_key(const keyring *k, uint8_t pk[32], uint8_t sk[64])
{
    memcpy(sk, k->sign_sk, 64);
    crypto_sign_ed25519_sk_to_pk(pk, sk);
}

int kr_rotate_signing_key(keyring *k, char *msg, size_t msg_len)
{
    uint8_t pk[32], old[64];
    uint64_t gen = k->gen;
    assert(k->writable);
    memcpy(old, k->sign_sk, sizeof(old));
    crypto_sign_keypair(pk, k->sign_sk);
    k->epoch++;
    int rc = commit_writes(k, NULL, 0, msg, msg_len);
    if (k->gen == gen) {
        /* nothing was written: keep the old key */
        memcpy(k->sign_sk, old, sizeof(old));
        k->epoch--;
    }
    sodium_memzero(old, sizeof(old));
    return rc; /* when the generation moved, the keyring has the new key even
                  if the mirror failed (rc says so) */
}

/* ------------------------------------------------------------- mirror */

char *kr_mirror_path(const char *dir, const uint8_t store_id[KR_STORE_ID])
{
    char hex[2 * KR_STORE_ID + 1];
    sodium_bin2hex(hex, sizeof(hex), store_id, KR_STORE_ID);
    size_t n = strlen(dir) + sizeof(hex) + 16;
    char *p = lethe_malloc(n);
    if (p)
        snprintf(p, n, "%s/%s.keyring", dir, hex);
    return p;
}

/* Copy the whole keyring to the mirror path (temp file, fsync, rename). */
static int mirror_copy(keyring *k, char *msg, size_t msg_len)
{
    size_t n = strlen(k->mpath) + 16;
    char *tmp = lethe_malloc(n);
    uint8_t *buf = lethe_malloc(1u << 16);
    int out = -1, rc = LETHE_OK;
    if (!tmp || !buf) {
        rc = lethe_fail(msg, msg_len, LETHE_ERR_NOMEM, "out of memory");
        goto done;
    }
    snprintf(tmp, n, "%s.tmp", k->mpath);
    out = lethe_io_open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (out < 0)
        goto io_fail;
    for (uint64_t at = 0;;) {
        int r = full_pread(k->fd, buf, 1u << 16, at);
        if (r < 0)
            goto io_fail;
        if (r == 0)
            break;
        if (full_pwrite(out, buf, (size_t)r, at) != 0)
            goto io_fail;
        at += (uint64_t)r;
        if (r < (1 << 16))
            break;
    }
    if (lethe_io_fsync(out) != 0 || close(out) != 0) {
        out = -1;
        goto io_fail;
    }
    out = -1;
    if (lethe_io_rename(tmp, k->mpath) != 0 || sync_dir_of(k->mpath) != 0)
        goto io_fail;
    goto done;
io_fail:
    rc = lethe_fail(msg, msg_len, LETHE_ERR_IO, "keyring mirror %s: %s", k->mpath,
                    strerror(errno));
    if (tmp)
        unlink(tmp);
done:
    if (out >= 0)
        close(out);
    if (buf)
        sodium_memzero(buf, 1u << 16);
    lethe_free(buf);
    lethe_free(tmp);
    return rc;
}

int kr_set_mirror(keyring *k, const char *dir, char *msg, size_t msg_len)
{
    keyring probe;
    int rc = LETHE_OK;
    if (k->mfd >= 0)
        close(k->mfd);
    k->mfd = -1;
    lethe_free(k->mpath);
    k->mpath = NULL;
    if (!dir || !*dir)
        return LETHE_OK;
    assert(k->writable);
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return lethe_fail(msg, msg_len, LETHE_ERR_IO, "keyring mirror %s: %s", dir,
                          errno && stat(dir, &sb) != 0 ? strerror(errno) : "not a folder");
    if (!(k->mpath = kr_mirror_path(dir, k->store_id)))
        return lethe_fail(msg, msg_len, LETHE_ERR_NOMEM, "out of memory");
    /* an up-to-date mirror has the keyring's generation */
    memset(&probe, 0, sizeof(probe));
    int fd = open(k->mpath, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    int same = fd >= 0 && read_header(&probe, fd, k->mpath, NULL, 0) == LETHE_OK &&
               probe.gen == k->gen && !memcmp(probe.store_id, k->store_id, KR_STORE_ID);
    sodium_memzero(&probe, sizeof(probe));
    if (fd >= 0)
        close(fd);
    if (!same && (rc = mirror_copy(k, msg, msg_len)) != LETHE_OK)
        return rc;
    k->mfd = open(k->mpath, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (k->mfd < 0)
        return lethe_fail(msg, msg_len, LETHE_ERR_IO, "keyring mirror %s: %s", k->mpath,
                          strerror(errno));
    return LETHE_OK;
}

/* ------------------------------------------------------------- reading */

static staged *find_staged(keyring *k, uint64_t slot)
{
    for (size_t i = 0; i < k->nst; i++)
        if (slot >= k->st[i].slot && slot < k->st[i].slot + k->st[i].count)
            return &k->st[i];
    return NULL;
}

/* The first slot of a record into s (64 bytes): 1 valid, 0 free/absent, -1
 * damaged, -2 I/O error. */
static int read_slot(keyring *k, uint64_t slot, uint8_t *s)
{
    staged *p = k->writable ? find_staged(k, slot) : NULL;
    if (p) {
        memcpy(s, p->bytes + (slot - p->slot) * KR_SLOT, KR_SLOT);
        return 1;
    }
    int r = full_pread(k->fd, s, KR_SLOT, KR_SLOTS_AT + slot * KR_SLOT);
    if (r < 0)
        return -2;
    if (r < KR_SLOT)
        return 0;
    return slot_valid(slot, s);
}

int kr_get_key(keyring *k, kr_ref ref, uint8_t key[KR_KEY])
{
    uint8_t s[KR_SLOT];
    int r = read_slot(k, ref.slot, s);
    if (r == -2)
        return LETHE_ERR_IO;
    if (r < 0)
        return LETHE_ERR_FORMAT;
    if (r == 0 || s[0] != KR_PHOTO || (s[1] & KR_CONT) || get_u64(s + 8) != ref.id)
        return LETHE_ERR_NOT_FOUND;
    memcpy(key, s + 16, KR_KEY);
    sodium_memzero(s, sizeof(s));
    return LETHE_OK;
}

/* Read and check count slots from `slot` into buf; LETHE_OK or a status. */
static int read_record_slots(keyring *k, uint64_t slot, uint32_t count, uint8_t *buf)
{
    staged *p = k->writable ? find_staged(k, slot) : NULL;
    if (p && p->slot == slot && p->count == count) {
        memcpy(buf, p->bytes, (size_t)count * KR_SLOT);
        return LETHE_OK;
    }
    size_t n = (size_t)count * KR_SLOT;
    int r = full_pread(k->fd, buf, n, KR_SLOTS_AT + slot * KR_SLOT);
    if (r < 0)
        return LETHE_ERR_IO;
    if ((size_t)r < n)
        return LETHE_ERR_FORMAT;
    for (uint32_t i = 0; i < count; i++)
        if (slot_valid(slot + i, buf + (size_t)i * KR_SLOT) != 1)
            return LETHE_ERR_FORMAT;
    return LETHE_OK;
}

/* Check a record's continuation slots against its first; payload out. */
static int record_decode(const uint8_t *buf, uint32_t count, uint8_t *payload, size_t len)
{
    uint64_t id = get_u64(buf + 8);
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *s = buf + (size_t)i * KR_SLOT;
        size_t off = (size_t)i * KR_DATA, n = off < len ? LETHE_MIN(len - off, KR_DATA) : 0;
        if (s[0] != buf[0] || get_u64(s + 8) != id ||
            (i && (!(s[1] & KR_CONT) || get_u16(s + 2) != i)))
            return -1;
        if (n)
            memcpy(payload + off, s + 16, n);
    }
    return 0;
}

int kr_get_record(keyring *k, kr_ref ref, int kind, uint8_t **payload, size_t *len,
                  unsigned *flags)
{
    uint8_t first[KR_SLOT];
    *payload = NULL;
    *len = 0;
    int r = read_slot(k, ref.slot, first);
    if (r == -2)
        return LETHE_ERR_IO;
    if (r < 0)
        return LETHE_ERR_FORMAT;
    if (r == 0 || first[0] != kind || (first[1] & KR_CONT) || get_u64(first + 8) != ref.id)
        return LETHE_ERR_NOT_FOUND;
    uint32_t count = get_u16(first + 2), plen = get_u32(first + 4);
    /* Checks, not assertions, though the slot passed its check: that check
     * is an unkeyed hash (it catches torn writes and slots out of place),
     * so whoever can write the file can make a slot that passes it with any
     * length and count, and the buffers below are sized from them.
     * (tests/test_forget_damage.c makes such slots.) */
    if (plen > KR_MAX_RECORD || count != slots_for(plen))
        return LETHE_ERR_FORMAT;
    uint8_t *buf = lethe_malloc((size_t)count * KR_SLOT);
    uint8_t *out = lethe_malloc(plen ? plen : 1);
    int rc = !buf || !out ? LETHE_ERR_NOMEM : read_record_slots(k, ref.slot, count, buf);
    if (rc == LETHE_OK && record_decode(buf, count, out, plen) != 0)
        rc = LETHE_ERR_FORMAT;
    if (buf)
        sodium_memzero(buf, (size_t)count * KR_SLOT);
    lethe_free(buf);
    if (rc != LETHE_OK) {
        lethe_free(out);
        return rc;
    }
    *payload = out;
    *len = plen;
    if (flags)
        *flags = first[1];
    return LETHE_OK;
}

int kr_foreach(keyring *k, kr_record_fn fn, void *ctx, uint64_t *damaged, char *msg,
               size_t msg_len)
{
    uint8_t *chunk = lethe_malloc((size_t)KR_SCAN_CHUNK * KR_SLOT);
    uint8_t *payload = lethe_malloc(KR_MAX_RECORD);
    uint8_t *rec = lethe_malloc(((size_t)KR_MAX_RECORD / KR_DATA + 1) * KR_SLOT);
    uint64_t bad = 0;
    int rc = LETHE_OK;
    if (!chunk || !payload || !rec) {
        rc = lethe_fail(msg, msg_len, LETHE_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (uint64_t base = 0;; base += KR_SCAN_CHUNK) {
        int r = full_pread(k->fd, chunk, (size_t)KR_SCAN_CHUNK * KR_SLOT,
                           KR_SLOTS_AT + base * KR_SLOT);
        if (r < 0) {
            rc = lethe_fail(msg, msg_len, LETHE_ERR_IO, "%s: %s", k->path, strerror(errno));
            goto out;
        }
        uint64_t n = (uint64_t)r / KR_SLOT;
        for (uint64_t i = 0; i < n; i++) {
            const uint8_t *s = chunk + i * KR_SLOT;
            int v = slot_valid(base + i, s);
            if (v < 0)
                bad++;
            if (v != 1 || (s[1] & KR_CONT))
                continue;
            uint32_t count = get_u16(s + 2), plen = get_u32(s + 4);
            kr_ref ref = {base + i, get_u64(s + 8)};
            /* hostile input, as in kr_get_record: payload holds KR_MAX_RECORD */
            if (plen > KR_MAX_RECORD || count != slots_for(plen) ||
                read_record_slots(k, ref.slot, count, rec) != LETHE_OK ||
                record_decode(rec, count, payload, plen) != 0) {
                bad++;
                continue;
            }
            if ((rc = fn(ctx, s[0], ref, s[1], payload, plen)) != 0)
                goto out;
        }
        if (n < KR_SCAN_CHUNK)
            break;
    }
out:
    if (payload)
        sodium_memzero(payload, KR_MAX_RECORD);
    lethe_free(chunk);
    lethe_free(payload);
    lethe_free(rec);
    if (damaged)
        *damaged = bad;
    return rc;
}

/* ------------------------------------------------------------- staging */

/* Load the map of used slots (writers, on first allocation). */
static int load_map(keyring *k)
{
    uint64_t n = k->nslots;
    uint8_t *chunk;
    if (k->map_loaded)
        return LETHE_OK;
    lethe_free(k->used);
    if (!(k->used = lethe_calloc(n ? n : 1, 1)) ||
        !(chunk = lethe_malloc((size_t)KR_SCAN_CHUNK * KR_SLOT)))
        return LETHE_ERR_NOMEM;
    int rc = LETHE_OK;
    for (uint64_t base = 0; base < n; base += KR_SCAN_CHUNK) {
        size_t want = (size_t)LETHE_MIN((uint64_t)KR_SCAN_CHUNK, n - base) * KR_SLOT;
        int r = full_pread(k->fd, chunk, want, KR_SLOTS_AT + base * KR_SLOT);
        if (r < 0) {
            rc = LETHE_ERR_IO;
            break;
        }
        for (uint64_t i = 0; i < (uint64_t)r / KR_SLOT; i++)
            k->used[base + i] = !slot_is_zero(chunk + i * KR_SLOT); /* damaged: in use */
    }
    lethe_free(chunk);
    k->map_loaded = rc == LETHE_OK;
    k->hint = 0;
    return rc;
}

/* count consecutive free slots: the first, growing the file's map. */
static int alloc_slots(keyring *k, uint32_t count, uint64_t *slot)
{
    int rc = load_map(k);
    if (rc)
        return rc;
    if (count == 1) {
        for (uint64_t i = k->hint; i < k->nslots; i++)
            if (!k->used[i]) {
                k->used[i] = 1;
                k->hint = i + 1;
                *slot = i;
                return LETHE_OK;
            }
        k->hint = k->nslots;
    }
    uint64_t n = k->nslots + count;
    uint8_t *u = lethe_realloc(k->used, n);
    if (!u)
        return LETHE_ERR_NOMEM;
    memset(u + k->nslots, 1, count);
    k->used = u;
    *slot = k->nslots;
    k->nslots = n;
    if (count == 1)
        k->hint = n;
    return LETHE_OK;
}

static uint64_t new_id(void)
{
    uint64_t id = 0;
    while (!id) {
        randombytes_buf(&id, sizeof(id));
        id &= 0x7fffffffffffffffull; /* fits SQLite's signed integers */
    }
    return id;
}

int kr_new_record(keyring *k, int kind, unsigned flags, const void *payload, size_t len,
                  kr_ref *ref)
{
    assert(k->writable);
    assert(kind > KR_FREE && kind <= KR_RECEIPT);
    if (len > KR_MAX_RECORD)
        return LETHE_ERR_TOO_LARGE;
    if (k->nst == k->capst) {
        size_t nc = k->capst ? 2 * k->capst : 64;
        staged *t = lethe_realloc(k->st, nc * sizeof(*t));
        if (!t)
            return LETHE_ERR_NOMEM;
        k->st = t;
        k->capst = nc;
    }
    staged *p = &k->st[k->nst];
    p->count = slots_for(len);
    p->kind = kind;
    p->id = new_id();
    if (!(p->bytes = lethe_malloc((size_t)p->count * KR_SLOT)))
        return LETHE_ERR_NOMEM;
    int rc = alloc_slots(k, p->count, &p->slot);
    if (rc) {
        lethe_free(p->bytes);
        return rc;
    }
    record_encode(p->slot, kind, flags, p->id, payload, len, p->count, p->bytes);
    k->nst++;
    ref->slot = p->slot;
    ref->id = p->id;
    return LETHE_OK;
}

int kr_new_key(keyring *k, kr_ref *ref, uint8_t key[KR_KEY])
{
    randombytes_buf(key, KR_KEY);
    return kr_new_record(k, KR_PHOTO, 0, key, KR_KEY, ref);
}

size_t kr_staged(const keyring *k)
{
    return k->nst;
}

void kr_discard(keyring *k)
{
    for (size_t i = 0; i < k->nst; i++) {
        staged *p = &k->st[i];
        if (k->used && p->slot + p->count <= k->nslots)
            memset(k->used + p->slot, 0, p->count);
        if (p->slot < k->hint)
            k->hint = p->slot;
        sodium_memzero(p->bytes, (size_t)p->count * KR_SLOT);
        lethe_free(p->bytes);
    }
    k->nst = 0;
}

int kr_flush(keyring *k, char *msg, size_t msg_len)
{
    assert(k->writable);
    if (!k->nst)
        return LETHE_OK;
    kr_write *w = lethe_malloc(k->nst * sizeof(*w));
    if (!w)
        return lethe_fail(msg, msg_len, LETHE_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < k->nst; i++) {
        w[i].at = KR_SLOTS_AT + k->st[i].slot * KR_SLOT;
        w[i].len = (size_t)k->st[i].count * KR_SLOT;
        w[i].bytes = k->st[i].bytes;
    }
    int rc = commit_writes(k, w, k->nst, msg, msg_len);
    lethe_free(w);
    if (rc != LETHE_OK)
        return rc; /* the caller aborts its change: kr_discard */
    for (size_t i = 0; i < k->nst; i++) {
        sodium_memzero(k->st[i].bytes, (size_t)k->st[i].count * KR_SLOT);
        lethe_free(k->st[i].bytes);
    }
    k->nst = 0;
    return LETHE_OK;
}

/* ------------------------------------------------------- after commit */

/* One pass over refs: zero each record (shred) or rewrite its first slot
 * without KR_PENDING (settle). */
static int post_commit(keyring *k, const kr_ref *refs, size_t n, int shred, char *msg,
                       size_t msg_len)
{
    kr_write *w = n ? lethe_calloc(n, sizeof(*w)) : NULL;
    size_t nw = 0;
    int rc = LETHE_OK;
    assert(k->writable && k->nst == 0);
    if (n && !w)
        return lethe_fail(msg, msg_len, LETHE_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        uint8_t s[KR_SLOT];
        int r = read_slot(k, refs[i].slot, s);
        if (r == -2) {
            rc = lethe_fail(msg, msg_len, LETHE_ERR_IO, "%s: %s", k->path, strerror(errno));
            goto out;
        }
        if (r != 1 || (s[1] & KR_CONT) || get_u64(s + 8) != refs[i].id)
            continue; /* gone already, or the slot holds another record */
        uint32_t count = shred ? get_u16(s + 2) : 1;
        if (!(w[nw].bytes = lethe_calloc(count, KR_SLOT))) {
            rc = lethe_fail(msg, msg_len, LETHE_ERR_NOMEM, "out of memory");
            goto out;
        }
        if (!shred) {
            memcpy(w[nw].bytes, s, KR_SLOT);
            w[nw].bytes[1] &= (uint8_t)~KR_PENDING;
            slot_seal(refs[i].slot, w[nw].bytes);
        }
        w[nw].at = KR_SLOTS_AT + refs[i].slot * KR_SLOT;
        w[nw].len = (size_t)count * KR_SLOT;
        nw++;
        sodium_memzero(s, sizeof(s));
    }
    if (nw)
        rc = commit_writes(k, w, nw, msg, msg_len);
    if (rc == LETHE_OK && shred && k->used) {
        for (size_t i = 0; i < nw; i++) {
            uint64_t first = (w[i].at - KR_SLOTS_AT) / KR_SLOT;
            for (uint64_t j = 0; j < w[i].len / KR_SLOT && first + j < k->nslots; j++)
                k->used[first + j] = 0;
            if (first < k->hint)
                k->hint = first;
        }
    }
out:
    for (size_t i = 0; i < nw; i++) {
        if (w[i].bytes)
            sodium_memzero(w[i].bytes, w[i].len);
        lethe_free(w[i].bytes);
    }
    lethe_free(w);
    return rc;
}

int kr_shred(keyring *k, const kr_ref *refs, size_t n, char *msg, size_t msg_len)
{
    return post_commit(k, refs, n, 1, msg, msg_len);
}

int kr_settle(keyring *k, const kr_ref *refs, size_t n, char *msg, size_t msg_len)
{
    return post_commit(k, refs, n, 0, msg, msg_len);
}
