/*
 * store.c: opening and creating a store, its schema and format version, the
 * writer lock (with a bounded wait that names the holder), transactions and
 * the small helpers every part of the store shares. See store.h for the
 * files and the ordering that keeps crashes harmless.
 */
#include "store/store.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "access/apikey.h"
#include "store/share.h"
#include "util/io.h"
#include "util/strbuf.h"
#include "util/util.h"

static const char schema_sql[] =
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID;\n"
    "CREATE TABLE photos(\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  sha_h BLOB NOT NULL UNIQUE,\n"
    "  key_slot INTEGER NOT NULL, key_id INTEGER NOT NULL,\n"
    "  kind TEXT NOT NULL CHECK(kind IN ('photo','descriptor')),\n"
    "  status TEXT NOT NULL CHECK(status IN ('analysed','refused','withdrawn')),\n"
    "  faces_found INTEGER,\n"
    "  added_at TEXT NOT NULL,\n"
    "  sealed BLOB NOT NULL);\n"
    "CREATE TABLE provenance(\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  photo INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,\n"
    "  fp BLOB NOT NULL,\n"
    "  uploader_h BLOB, url_h BLOB, photo_id_h BLOB,\n"
    "  source TEXT NOT NULL, license TEXT NOT NULL, jurisdiction TEXT NOT NULL,\n"
    "  consent TEXT NOT NULL, added_at TEXT NOT NULL, sealed BLOB NOT NULL,\n"
    "  UNIQUE(photo, fp));\n"
    "CREATE INDEX provenance_uploader ON provenance(uploader_h) WHERE uploader_h IS NOT NULL;\n"
    "CREATE INDEX provenance_url ON provenance(url_h) WHERE url_h IS NOT NULL;\n"
    "CREATE INDEX provenance_photo_id ON provenance(photo_id_h) WHERE photo_id_h IS NOT NULL;\n"
    "CREATE INDEX provenance_source ON provenance(source);\n"
    "CREATE INDEX provenance_jurisdiction ON provenance(jurisdiction);\n"
    MODELS_SCHEMA_SQL
    "CREATE TABLE faces(\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  photo INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,\n"
    "  ord INTEGER NOT NULL,\n"
    "  has_template INTEGER NOT NULL CHECK(has_template IN (0, 1)),\n"
    "  sealed BLOB NOT NULL,\n"
    "  model INTEGER REFERENCES models(id),\n"
    "  detector TEXT NOT NULL DEFAULT '',\n"
    "  UNIQUE(photo, ord));\n"
    "CREATE INDEX faces_model ON faces(model, has_template);\n"
    "CREATE TABLE policy(version INTEGER PRIMARY KEY, text TEXT NOT NULL,\n"
    "  hash TEXT NOT NULL, set_at TEXT NOT NULL, log_seq INTEGER NOT NULL);\n"
    "CREATE TABLE signing_keys(epoch INTEGER PRIMARY KEY, public_key TEXT NOT NULL UNIQUE,\n"
    "  created_at TEXT NOT NULL, retired_at TEXT);\n"
    "CREATE TABLE receipts(hash TEXT PRIMARY KEY, time TEXT NOT NULL, json TEXT NOT NULL);\n"
    "CREATE TABLE optouts(id INTEGER PRIMARY KEY, kr_slot INTEGER NOT NULL,\n"
    "  kr_id INTEGER NOT NULL UNIQUE, created_at TEXT NOT NULL, receipt TEXT NOT NULL,\n"
    "  selects TEXT NOT NULL, removed_at TEXT);\n"
    "CREATE TABLE log(\n"
    "  seq INTEGER PRIMARY KEY,\n"
    "  time TEXT NOT NULL, kind TEXT NOT NULL, actor TEXT NOT NULL,\n"
    "  purpose TEXT NOT NULL, query_hash TEXT NOT NULL, results INTEGER NOT NULL,\n"
    "  detail TEXT NOT NULL, prev TEXT NOT NULL, hash TEXT NOT NULL);\n"
    "CREATE INDEX log_query_hash ON log(query_hash) WHERE query_hash <> '';\n";

/* ---------------------------------------------------------- messages */

int store_fail(lethe_store *s, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err, sizeof(s->err), fmt, ap);
    va_end(ap);
    s->status = status;
    if (s->share)
        share_note_error(s, s->err); /* messages are per thread (share.c) */
    return status;
}

int store_sqlstatus(int code)
{
    code &= 0xff; /* the primary code of an extended one */
    return code == SQLITE_NOMEM ? LETHE_ERR_NOMEM
         : code == SQLITE_CORRUPT || code == SQLITE_NOTADB ? LETHE_ERR_STORE
         : code == SQLITE_BUSY ? LETHE_ERR_BUSY
                               : LETHE_ERR_IO;
}

int store_sqlfail(lethe_store *s, const char *what)
{
    int status = store_sqlstatus(s->db ? sqlite3_errcode(s->db) : SQLITE_ERROR);
    return store_fail(s, status, "%s: %s", what, s->db ? sqlite3_errmsg(s->db) : "no catalog");
}

int store_status(const lethe_store *s)
{
    return s->status != LETHE_OK ? s->status : LETHE_ERR_IO;
}

int store_bound(lethe_store *s, int binds, const char *what)
{
    if (binds == SQLITE_OK)
        return LETHE_OK;
    /* the only failure of a bind with the right index and a value within
     * SQLite's limits is copying it */
    if ((binds & ~SQLITE_NOMEM) == 0)
        return store_fail(s, LETHE_ERR_NOMEM, "%s: out of memory", what);
    return store_fail(s, LETHE_ERR_INTERNAL, "%s: SQLite refused a value (error %d)", what,
                      binds);
}

int store_writable(lethe_store *s)
{
    return s->flags & LETHE_STORE_READONLY
               ? store_fail(s, LETHE_ERR_ARG, "the store is open read-only")
               : LETHE_OK;
}

char *store_file(const lethe_store *s, const char *name)
{
    size_t n = strlen(s->dir) + strlen(name) + 2;
    char *p = lethe_malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", s->dir, name);
    return p;
}

int store_check_text(lethe_store *s, const char *what, const char *t, int may_be_empty)
{
    size_t n = t ? strlen(t) : 0;
    if (!n)
        return may_be_empty ? LETHE_OK : store_fail(s, LETHE_ERR_ARG, "%s is empty", what);
    if (n > STORE_TEXT_MAX)
        return store_fail(s, LETHE_ERR_ARG, "%s is %zu bytes, more than %d", what, n,
                          STORE_TEXT_MAX);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)t[i];
        if (c < 0x20 || c == 0x7f)
            return store_fail(s, LETHE_ERR_ARG,
                              "%s holds a control character (byte %zu is 0x%02x)", what, i, c);
    }
    if (!sb_utf8_valid(t, n))
        return store_fail(s, LETHE_ERR_ARG, "%s is not valid UTF-8", what);
    return LETHE_OK;
}

/* --------------------------------------------------------------- lock */

/* Who holds the lock, from the lock file (written by the holder). */
static void lock_holder(lethe_store *s, char *out, size_t n)
{
    ssize_t r = pread(s->lock_fd, out, n - 1, 0);
    out[r > 0 ? r : 0] = 0;
    for (char *p = out; *p; p++)
        if ((unsigned char)*p < 0x20)
            *p = *p == '\n' ? 0 : '?';
    if (!out[0])
        snprintf(out, n, "another process");
}

static void lock_record(lethe_store *s, const char *what)
{
    char line[160], now[32];
    store_now(now);
    int n = snprintf(line, sizeof(line), "pid %ld (lethe %s) since %s\n", (long)getpid(),
                     what ? what : "", now);
    /* best effort: the lock is the flock; this only tells waiters who */
    if (ftruncate(s->lock_fd, 0) == 0 && n > 0)
        (void)!pwrite(s->lock_fd, line, (size_t)n, 0);
}

/* The keyring mirror the catalog names, if this handle does not write
 * that one (another process set or stopped it since this handle opened). */
static int mirror_refresh(lethe_store *s)
{
    char dir[4096], msg[512];
    int rc = store_meta_get_text(s, "keyring_mirror", dir, sizeof(dir));
    if (rc == LETHE_ERR_NOT_FOUND)
        dir[0] = 0;
    else if (rc)
        return rc;
    char *want = dir[0] ? kr_mirror_path(dir, s->store_id) : NULL;
    const char *have = kr_mirror_file(s->kr);
    if (dir[0] && !want)
        return store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    int same = want ? have && !strcmp(want, have) : !have;
    lethe_free(want);
    if (!same && (rc = kr_set_mirror(s->kr, dir[0] ? dir : NULL, msg, sizeof(msg))))
        return store_fail(s, rc, "%s", msg);
    return LETHE_OK;
}

/* What another process may have changed since this handle last wrote, read
 * again when it takes the writer lock: the keyring's header and free slots,
 * its mirror, the consent policy. A handle that lives long (a server)
 * would otherwise write with a stale picture of the store. */
static int lock_refresh(lethe_store *s)
{
    char msg[512];
    int rc;
    if (!s->db || !s->kr || !s->pol)
        return LETHE_OK; /* a store being made */
    if ((rc = kr_refresh(s->kr, msg, sizeof(msg))))
        return store_fail(s, rc, "%s", msg);
    /* restore's private copy writes no mirror until it is put in place */
    if (!(s->flags & STORE_NO_RECOVER) && (rc = mirror_refresh(s)))
        return rc;
    return store_policy_refresh(s);
}

int store_lock(lethe_store *s, const char *what)
{
    struct timespec t0, now;
    double next_report = 1.0;
    if (s->locked)
        return LETHE_OK;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (flock(s->lock_fd, LOCK_EX | LOCK_NB) == 0)
            break;
        if (errno != EWOULDBLOCK && errno != EINTR)
            return store_fail(s, LETHE_ERR_IO, "%s/%s: cannot lock: %s", s->dir, STORE_LOCK,
                              strerror(errno));
        clock_gettime(CLOCK_MONOTONIC, &now);
        double waited = (double)(now.tv_sec - t0.tv_sec) + 1e-9 * (double)(now.tv_nsec - t0.tv_nsec);
        char holder[160];
        if (waited >= s->wait_seconds) {
            lock_holder(s, holder, sizeof(holder));
            return store_fail(s, LETHE_ERR_BUSY,
                              "%s is locked by %s; gave up after %g s (wait longer with "
                              "--wait SECONDS)",
                              s->dir, holder, s->wait_seconds);
        }
        if (s->on_wait && waited >= next_report) {
            lock_holder(s, holder, sizeof(holder));
            s->on_wait(s->wait_ctx, holder, waited);
            next_report += 1.0;
        }
        usleep(50000);
    }
    s->locked = 1;
    lock_record(s, what);
    int rc = lock_refresh(s);
    if (rc)
        store_unlock(s);
    return rc;
}

void store_unlock(lethe_store *s)
{
    if (s->locked) {
        if (ftruncate(s->lock_fd, 0) != 0) {
            /* the holder line stays: harmless, the flock is what counts */
        }
        flock(s->lock_fd, LOCK_UN);
        s->locked = 0;
    }
}

/* ------------------------------------------------------------ SQL */

int store_exec(lethe_store *s, const char *sql)
{
    char *msg = NULL;
    int r = sqlite3_exec(s->db, sql, NULL, NULL, &msg);
    if (r != SQLITE_OK) {
        int rc = store_fail(s, store_sqlstatus(r), "catalog: %s",
                            msg ? msg : sqlite3_errmsg(s->db));
        sqlite3_free(msg);
        return rc;
    }
    return LETHE_OK;
}

int store_prepare(lethe_store *s, const char *sql, sqlite3_stmt **st)
{
    if (sqlite3_prepare_v2(s->db, sql, -1, st, NULL) != SQLITE_OK) {
        *st = NULL;
        return store_sqlfail(s, "catalog query");
    }
    return LETHE_OK;
}

int store_cached(lethe_store *s, int which, const char *sql, sqlite3_stmt **st)
{
    assert(which >= 0 && which < STORE_STMTS);
    if (!s->stmt[which]) {
        if (sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s->stmt[which],
                               NULL) != SQLITE_OK)
            return store_sqlfail(s, "catalog query");
    } else {
        sqlite3_reset(s->stmt[which]);
        sqlite3_clear_bindings(s->stmt[which]);
    }
    *st = s->stmt[which];
    return LETHE_OK;
}

int64_t store_count(lethe_store *s, const char *sql)
{
    sqlite3_stmt *st;
    int64_t v = 0;
    if (store_prepare(s, sql, &st))
        return -1;
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    else if (r != SQLITE_DONE)
        v = -1, store_sqlfail(s, "counting");
    sqlite3_finalize(st);
    return v;
}

int store_ids(lethe_store *s, sqlite3_stmt *st, const char *what, int64_t **ids, size_t *n)
{
    size_t cap = 0;
    int rc = LETHE_OK, step;
    *ids = NULL;
    *n = 0;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            size_t nc = cap ? 2 * cap : 64;
            int64_t *t = lethe_realloc(*ids, nc * sizeof(*t));
            if (!t) {
                rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
                break;
            }
            *ids = t;
            cap = nc;
        }
        (*ids)[(*n)++] = sqlite3_column_int64(st, 0);
    }
    if (rc == LETHE_OK && step != SQLITE_DONE)
        rc = store_sqlfail(s, what);
    sqlite3_finalize(st);
    if (rc) {
        lethe_free(*ids);
        *ids = NULL;
        *n = 0;
    }
    return rc;
}

int store_begin(lethe_store *s)
{
    /* a read-only handle's catalog refuses the write as an I/O error would:
     * say why (a search or lookup, which logs, on a read-only handle) */
    int rc = store_writable(s);
    if (rc == LETHE_OK)
        rc = store_exec(s, "BEGIN IMMEDIATE");
    if (rc == LETHE_OK) {
        s->dig_dirty = 0;
        s->deletes = 0;
        if ((rc = dg_load(s, s->dig)) != LETHE_OK)
            store_rollback(s);
    }
    return rc;
}

int store_dg(lethe_store *s, int64_t photo, int sign)
{
    s->dig_dirty = 1;
    return dg_photo(s, s->dig, photo, sign);
}

void store_dg_policy(lethe_store *s, const char *text, int sign)
{
    s->dig_dirty = 1;
    dg_fold_text(s->dig, sign, "policy", text);
}

int store_commit(lethe_store *s)
{
    assert(!sqlite3_get_autocommit(s->db)); /* a transaction is open */
    int rc = s->dig_dirty ? dg_save(s, s->dig) : LETHE_OK;
    if (rc == LETHE_OK && (rc = store_exec(s, "COMMIT")) == LETHE_ERR_IO) {
        /* The commit frame may be in the WAL already: SQLite cannot say
         * whether it will count after a crash, and neither can we. */
        char keep[sizeof(s->err)];
        memcpy(keep, s->err, sizeof(keep));
        store_fail(s, rc, "%s; the disk failed while committing, so whether this change was "
                   "recorded is unknown until the store is opened again", keep);
    }
    if (rc != LETHE_OK) {
        store_rollback(s);
        return rc;
    }
    s->dig_dirty = 0;
    s->deletes = 0;
    /* Committed. The head file is the log's outside anchor: if it cannot be
     * written now (a full disk), it is written at the next commit or open,
     * and `lethe log verify` says it lags meanwhile. */
    char keep[sizeof(s->err)];
    memcpy(keep, s->err, sizeof(keep));
    s->head_stale = store_log_write_head(s) != LETHE_OK;
    memcpy(s->err, keep, sizeof(keep));
    return LETHE_OK;
}

void store_end_read(lethe_store *s)
{
    if (sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        store_rollback(s); /* it wrote nothing: nothing is lost */
}

void store_rollback(lethe_store *s)
{
    if (s->db && !sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    s->dig_dirty = 0;
    s->deletes = 0;
}

/* ------------------------------------------------------------------ meta */

int store_meta_get_int(lethe_store *s, const char *key, int64_t *v)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s, "SELECT value FROM meta WHERE key = ?", &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_INTEGER) {
        *v = sqlite3_column_int64(st, 0);
    } else if (step == SQLITE_ROW || step == SQLITE_DONE) {
        rc = store_fail(s, LETHE_ERR_STORE, "%s/%s: meta.%s is missing", s->dir, STORE_DB, key);
    } else {
        rc = store_sqlfail(s, "reading meta");
    }
    sqlite3_finalize(st);
    return rc;
}

int store_meta_set_int(lethe_store *s, const char *key, int64_t v)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s, "INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)", &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, v);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = store_sqlfail(s, "writing meta");
    sqlite3_finalize(st);
    return rc;
}

int store_meta_get_text(lethe_store *s, const char *key, char *out, size_t n)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s, "SELECT value FROM meta WHERE key = ?", &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_TEXT)
        snprintf(out, n, "%s", (const char *)sqlite3_column_text(st, 0));
    else if (step == SQLITE_ROW || step == SQLITE_DONE)
        rc = LETHE_ERR_NOT_FOUND;
    else
        rc = store_sqlfail(s, "reading meta");
    sqlite3_finalize(st);
    return rc;
}

int store_meta_set_text(lethe_store *s, const char *key, const char *v)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s, v ? "INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)"
                                : "DELETE FROM meta WHERE key = ?", &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    if (v)
        sqlite3_bind_text(st, 2, v, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = store_sqlfail(s, "writing meta");
    sqlite3_finalize(st);
    return rc;
}

int store_bump_gen(lethe_store *s, uint64_t *gen)
{
    int64_t g;
    int rc = store_meta_get_int(s, "index_gen", &g);
    if (rc)
        return rc;
    rc = store_meta_set_int(s, "index_gen", g + 1);
    if (rc == LETHE_OK)
        *gen = (uint64_t)g + 1;
    return rc;
}

/* --------------------------------------------------------------- misc */

void store_hash(const lethe_store *s, const char *tag, const void *data, size_t len,
                uint8_t out[32])
{
    crypto_generichash_state h;
    crypto_generichash_init(&h, kr_salt(s->kr), KR_SALT, 32);
    crypto_generichash_update(&h, (const uint8_t *)tag, strlen(tag) + 1);
    crypto_generichash_update(&h, data, len);
    crypto_generichash_final(&h, out, 32);
}

void store_keyed_hash(const lethe_store *s, const void *data, size_t len, char hex[65])
{
    uint8_t h[32];
    store_hash(s, "query", data, len, h);
    sodium_bin2hex(hex, 65, h, sizeof(h));
}

void store_now(char out[32])
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int store_write_file(lethe_store *s, const char *name, const char *data, size_t len)
{
    static _Atomic unsigned serial;
    char *path = store_file(s, name), *tmp = NULL;
    size_t tn = strlen(name) + 48;
    char *tmpname = lethe_malloc(tn);
    int rc = LETHE_ERR_NOMEM, fd = -1;
    if (!path || !tmpname)
        goto out;
    /* unique: several processes and threads may write the same file */
    snprintf(tmpname, tn, "%s.%ld.%u.tmp", name, (long)getpid(), atomic_fetch_add(&serial, 1u));
    if (!(tmp = store_file(s, tmpname)))
        goto out;
    fd = lethe_io_open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        goto io_fail;
    for (size_t off = 0; off < len;) {
        ssize_t w = lethe_io_write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            goto io_fail;
        off += (size_t)w;
    }
    if (lethe_io_fsync(fd) < 0)
        goto io_fail;
    close(fd);
    fd = -1;
    if (lethe_io_rename(tmp, path) < 0)
        goto io_fail;
    rc = LETHE_OK;
    goto out;
io_fail:
    rc = store_fail(s, LETHE_ERR_IO, "%s: %s", path, strerror(errno ? errno : EIO));
out:
    if (rc == LETHE_ERR_NOMEM)
        store_fail(s, rc, "out of memory");
    if (fd >= 0)
        close(fd);
    if (rc != LETHE_OK && tmp)
        unlink(tmp);
    lethe_free(path);
    lethe_free(tmpname);
    lethe_free(tmp);
    return rc;
}

/* ------------------------------------------------------ the update hook */

/* Counts deletions of personal rows: change_commit refuses a transaction
 * that deleted any outside the erasure protocol. */
static void on_update(void *ctx, int op, const char *db, const char *table, sqlite3_int64 row)
{
    lethe_store *s = ctx;
    (void)row;
    if (op == SQLITE_DELETE && !strcmp(db, "main") &&
        (!strcmp(table, "photos") || !strcmp(table, "provenance") || !strcmp(table, "faces")))
        s->deletes++;
}

/* ------------------------------------------------------------ create */

static int insert_signing_key(lethe_store *s, uint32_t epoch)
{
    uint8_t pk[32], sk[64];
    char hex[65], now[32];
    sqlite3_stmt *st;
    kr_signing_key(s->kr, pk, sk);
    sodium_memzero(sk, sizeof(sk));
    sodium_bin2hex(hex, sizeof(hex), pk, sizeof(pk));
    store_now(now);
    int rc = store_prepare(s, "INSERT INTO signing_keys(epoch, public_key, created_at) "
                              "VALUES (?, ?, ?)", &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, epoch);
    sqlite3_bind_text(st, 2, hex, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, now, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = store_sqlfail(s, "recording the signing key");
    sqlite3_finalize(st);
    return rc;
}

/* The first policy version (the shipped policy) and the first log entry. */
static int create_rows(lethe_store *s, const lethe_store_options *o)
{
    char now[32], hex[2 * KR_STORE_ID + 1], detail[256];
    sqlite3_stmt *st;
    policy *p = NULL;
    char *text = NULL;
    int rc;
    store_now(now);
    sodium_bin2hex(hex, sizeof(hex), s->store_id, KR_STORE_ID);
    if ((rc = store_exec(s, schema_sql)) || (rc = store_exec(s, apikey_schema_sql)) ||
        (rc = store_prepare(s, "INSERT INTO meta(key, value) VALUES ('format', ?), "
                               "('created_at', ?), ('index_gen', 0), ('store_id', ?), "
                               "('model', 'face-api 1.7.15: SSD MobileNet v1, 68 landmarks, "
                               "ResNet-34 128-D')", &st)))
        return rc;
    sqlite3_bind_int(st, 1, LETHE_STORE_FORMAT);
    sqlite3_bind_text(st, 2, now, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, hex, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = store_sqlfail(s, "creating the catalog");
    sqlite3_finalize(st);
    if (rc)
        return rc;
    memset(s->dig, 0, sizeof(s->dig));
    s->dig_dirty = 1;
    if (policy_default(&p) != 0 || !(text = policy_format(p))) {
        policy_free(p);
        return store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    }
    snprintf(detail, sizeof(detail), "\"store_id\":\"%s\",\"format\":%d", hex,
             LETHE_STORE_FORMAT);
    rc = insert_signing_key(s, kr_signing_epoch(s->kr));
    if (rc == LETHE_OK && o->keyring_mirror && *o->keyring_mirror)
        rc = store_meta_set_text(s, "keyring_mirror", o->keyring_mirror);
    if (rc == LETHE_OK)
        rc = consent_policy_record(s, text, o->actor, "init", detail);
    if (rc == LETHE_OK)
        store_dg_policy(s, text, 1);
    if (rc == LETHE_OK) {
        policy_free(s->pol);
        s->pol = p;
        p = NULL;
        s->policy_version = 1;
    }
    policy_free(p);
    lethe_free(text);
    return rc;
}

/* A new store: the keyring first (so the catalog never exists without
 * it), then the catalog in one transaction. */
static int create_store(lethe_store *s, const lethe_store_options *o)
{
    char msg[512], *krpath = store_file(s, STORE_KEYRING);
    struct stat sb;
    int rc;
    if (!krpath)
        return store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    if (lstat(krpath, &sb) == 0) {
        rc = store_fail(s, LETHE_ERR_STORE,
                        "%s exists but there is no catalog: restore the catalog from a backup "
                        "(`lethe restore`), or move the keyring away to start a new store",
                        krpath);
        lethe_free(krpath);
        return rc;
    }
    randombytes_buf(s->store_id, sizeof(s->store_id));
    rc = kr_create(krpath, s->store_id, &s->kr, msg, sizeof(msg));
    lethe_free(krpath);
    if (rc)
        return store_fail(s, rc, "%s", msg);
    if (o->keyring_mirror && *o->keyring_mirror &&
        (rc = kr_set_mirror(s->kr, o->keyring_mirror, msg, sizeof(msg))))
        return store_fail(s, rc, "%s", msg);
    if ((rc = store_exec(s, "BEGIN IMMEDIATE")))
        return rc;
    if ((rc = create_rows(s, o)) == LETHE_OK)
        rc = store_commit(s);
    else
        store_rollback(s);
    if (rc == LETHE_OK)
        rc = store_policy_file_check(s);
    return rc;
}

/* ------------------------------------------------------------- open */

static int check_catalog(lethe_store *s)
{
    int64_t format;
    char hex[80];
    size_t len = 0;
    int rc = store_meta_get_int(s, "format", &format);
    /* running out of memory or waiting too long says nothing about the
     * catalog: only a failure to find meta.format means it is no store */
    if (rc == LETHE_ERR_NOMEM || rc == LETHE_ERR_BUSY)
        return rc;
    if (rc) {
        char why[sizeof(s->err)]; /* s->err cannot be both output and argument */
        snprintf(why, sizeof(why), "%s", s->err);
        return store_fail(s, LETHE_ERR_STORE, "%s: not a lethe store (%s)", s->dir, why);
    }
    /* format 2: the same but for the models; migrated once opened writable */
    if (format == 2 && !(s->flags & LETHE_STORE_READONLY)) {
        s->migrate = 1;
        format = LETHE_STORE_FORMAT;
    } else if (format == 2) {
        return store_fail(s, LETHE_ERR_STORE,
                          "%s: store format 2 (templates without their model); open it once "
                          "with write access (for example `lethe model list`) to migrate it to "
                          "format %d", s->dir, LETHE_STORE_FORMAT);
    }
    if (format != LETHE_STORE_FORMAT)
        return store_fail(s, LETHE_ERR_STORE,
                          "%s: store format %lld; this lethe reads format %d%s", s->dir,
                          (long long)format, LETHE_STORE_FORMAT,
                          format == 1 ? " (format 1 kept personal data unsealed: ingest the "
                                        "photos again into a new store)"
                                      : "");
    rc = store_meta_get_text(s, "store_id", hex, sizeof(hex));
    if (rc != LETHE_OK && rc != LETHE_ERR_NOT_FOUND)
        return rc; /* a failed read, not a missing id */
    if (rc ||
        sodium_hex2bin(s->store_id, sizeof(s->store_id), hex, strlen(hex), NULL, &len, NULL) ||
        len != sizeof(s->store_id))
        return store_fail(s, LETHE_ERR_STORE, "%s: meta.store_id is missing or damaged", s->dir);
    return LETHE_OK;
}

static int open_keyring(lethe_store *s)
{
    char msg[512], *path = store_file(s, STORE_KEYRING);
    if (!path)
        return store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    int rc = kr_open(path, !(s->flags & LETHE_STORE_READONLY), &s->kr, msg, sizeof(msg));
    if (rc == LETHE_ERR_NOT_FOUND)
        rc = store_fail(s, LETHE_ERR_STORE,
                        "%s is missing: without it no photo's personal data can be read. Copy "
                        "it back from the keyring mirror (lethe keyring --help), or restore a "
                        "backup with --keyring-mirror",
                        path);
    else if (rc)
        rc = store_fail(s, rc == LETHE_ERR_NOMEM ? rc : LETHE_ERR_STORE, "%s", msg);
    else if (memcmp(kr_store_id(s->kr), s->store_id, KR_STORE_ID) != 0)
        rc = store_fail(s, LETHE_ERR_STORE, "%s belongs to another store", path);
    lethe_free(path);
    return rc;
}

/* The keyring mirror named in the catalog, if any: brought up to date. */
static int open_mirror(lethe_store *s)
{
    char dir[4096], msg[512];
    int rc = store_meta_get_text(s, "keyring_mirror", dir, sizeof(dir));
    if (rc == LETHE_ERR_NOT_FOUND)
        return LETHE_OK;
    if (rc)
        return rc;
    if ((rc = kr_set_mirror(s->kr, dir, msg, sizeof(msg))))
        return store_fail(s, rc, "%s", msg);
    return LETHE_OK;
}

/* After a crash: log.head behind the catalog's head is rewritten. */
static int repair_head(lethe_store *s)
{
    return store_log_write_head(s);
}

/* Writable opens: finish what a crash left (under the lock if free). */
static int open_recover(lethe_store *s)
{
    int rc = store_index_sync(s);
    if (rc)
        return rc;
    if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0)
        return LETHE_OK; /* a writer at work: it finishes it itself */
    s->locked = 1;
    lock_record(s, "recovery");
    int64_t pending = store_count(s, "SELECT COUNT(*) FROM meta WHERE key = 'scrub_pending'");
    if (pending < 0)
        rc = store_status(s);
    if (rc == LETHE_OK && pending > 0)
        rc = store_recover(s);
    if (rc == LETHE_OK)
        rc = open_mirror(s);
    if (rc == LETHE_OK)
        rc = repair_head(s);
    store_unlock(s);
    return rc;
}

static int open_catalog(lethe_store *s, const char *dbpath)
{
    int ro = (s->flags & LETHE_STORE_READONLY) != 0;
    if (sqlite3_open_v2(dbpath, &s->db,
                        ro ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                        NULL) != SQLITE_OK)
        /* no handle at all: SQLite could not allocate one */
        return s->db ? store_sqlfail(s, dbpath)
                     : store_fail(s, LETHE_ERR_NOMEM, "%s: out of memory opening the catalog",
                                  dbpath);
    sqlite3_busy_timeout(s->db, 30000);
    sqlite3_update_hook(s->db, on_update, s);
    /* secure_delete: freed pages and cells are zeroed, so erased data does
     * not linger in the file; WAL: searches run while an ingest writes. */
    int rc = store_exec(s, "PRAGMA secure_delete = ON; PRAGMA foreign_keys = ON; "
                           "PRAGMA temp_store = MEMORY; PRAGMA cache_size = -65536");
    /* No automatic checkpoints: an erasure reads the WAL's page list to
     * scrub those pages (scrub.c), so the WAL is only checkpointed by lethe
     * itself: by the scrub, by ingest between batches, and on close. */
    if (rc == LETHE_OK && !ro)
        rc = store_exec(s, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; "
                           "PRAGMA wal_autocheckpoint = 0");
    /* Scratch tables of a selection live in memory, never in a file. */
    if (rc == LETHE_OK)
        rc = store_exec(s, "CREATE TEMP TABLE IF NOT EXISTS sel_photos(id INTEGER PRIMARY KEY); "
                           "CREATE TEMP TABLE IF NOT EXISTS sel_faces(id INTEGER PRIMARY KEY, "
                           "distance REAL)");
    return rc;
}

void lethe_store_options_init(lethe_store_options *o)
{
    memset(o, 0, sizeof(*o));
    o->wait_seconds = 30;
}

/* The directory: exists (or is created) and is one. */
static int open_dir(lethe_store *s, const char *dir, unsigned flags)
{
    struct stat sb;
    if (stat(dir, &sb) < 0) {
        if (errno != ENOENT || !(flags & LETHE_STORE_CREATE))
            return store_fail(s, LETHE_ERR_STORE, "%s: %s (create a store with `lethe init`)",
                              dir, strerror(errno));
        if (mkdir(dir, 0700) < 0)
            return store_fail(s, LETHE_ERR_IO, "%s: cannot create: %s", dir, strerror(errno));
    } else if (!S_ISDIR(sb.st_mode)) {
        return store_fail(s, LETHE_ERR_STORE, "%s: not a directory", dir);
    }
    return LETHE_OK;
}

int lethe_store_open_with(const char *dir, const lethe_store_options *opt, lethe_store **out)
{
    lethe_store_options o;
    lethe_store *s = lethe_calloc(1, sizeof(*s));
    char *dbpath = NULL, *lockpath = NULL;
    struct stat sb;
    int rc, fresh = 0;
    *out = s;
    if (!s)
        return LETHE_ERR_NOMEM;
    if (opt)
        o = *opt;
    else
        lethe_store_options_init(&o);
    s->lock_fd = -1;
    s->flags = o.flags;
    s->wait_seconds = o.wait_seconds >= 0 ? o.wait_seconds : 0;
    s->on_wait = o.on_wait;
    s->wait_ctx = o.ctx;
    if (sodium_init() < 0)
        return store_fail(s, LETHE_ERR_INTERNAL, "libsodium failed to initialise");
    if (!dir || !*dir)
        return store_fail(s, LETHE_ERR_ARG, "no store directory given");
    if ((o.flags & LETHE_STORE_CREATE) && (rc = store_check_text(s, "the actor", o.actor, 1)))
        return rc;
    if (!(s->dir = lethe_strdup(dir)))
        return store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    if ((rc = open_dir(s, dir, o.flags)))
        return rc;
    dbpath = store_file(s, STORE_DB);
    lockpath = store_file(s, STORE_LOCK);
    if (!dbpath || !lockpath) {
        rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
        goto out;
    }
    if (stat(dbpath, &sb) < 0) {
        if (!(o.flags & LETHE_STORE_CREATE)) {
            rc = store_fail(s, LETHE_ERR_STORE, "%s: not a lethe store (no %s; create one with "
                            "`lethe init`)", dir, STORE_DB);
            goto out;
        }
        fresh = 1;
    }
    s->lock_fd = open(lockpath, ((o.flags & LETHE_STORE_READONLY) ? O_RDONLY : O_RDWR | O_CREAT) |
                      O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW, 0600);
    if (s->lock_fd < 0 || fstat(s->lock_fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        rc = store_fail(s, LETHE_ERR_IO, "%s: %s", lockpath,
                        s->lock_fd < 0 ? strerror(errno) : "not a regular file");
        goto out;
    }
    if (fresh && (rc = store_lock(s, "init")))
        goto out;
    /* Another process may have created it while we waited for the lock. */
    if (fresh && stat(dbpath, &sb) == 0)
        fresh = 0;
    if ((rc = open_catalog(s, dbpath)))
        goto out;
    if (fresh) {
        rc = create_store(s, &o);
    } else if ((rc = check_catalog(s)) == LETHE_OK && (rc = open_keyring(s)) == LETHE_OK &&
               (rc = store_policy_load(s)) == LETHE_OK) {
        rc = store_policy_file_check(s);
        /* a store made before API keys existed gains their table */
        if (rc == LETHE_OK && !(o.flags & LETHE_STORE_READONLY))
            rc = apikey_schema(s);
        if (rc == LETHE_OK && s->migrate)
            rc = store_models_migrate(s);
    }
    if (rc == LETHE_OK && !(o.flags & (LETHE_STORE_READONLY | STORE_NO_RECOVER))) {
        store_unlock(s);
        rc = open_recover(s);
    }
    if (rc == LETHE_OK && (o.flags & LETHE_STORE_SHARED))
        rc = share_open(s);
out:
    store_unlock(s);
    lethe_free(dbpath);
    lethe_free(lockpath);
    return rc;
}

int lethe_store_open(const char *dir, unsigned flags, lethe_store **out)
{
    lethe_store_options o;
    lethe_store_options_init(&o);
    o.flags = flags;
    return lethe_store_open_with(dir, &o, out);
}

void lethe_store_close(lethe_store *s)
{
    if (!s)
        return;
    share_close(s); /* its connections first: the checkpoint below waits for none */
    idx_close(s->ix);
    for (int i = 0; i < STORE_STMTS; i++)
        sqlite3_finalize(s->stmt[i]); /* NULL is fine */
    if (s->db) {
        /* Fold the WAL back into the catalog so no stale page copies stay
         * beside it (ignored when another process still has it open), but
         * not while an erasure's scrub still needs the WAL's page list. */
        if (!(s->flags & LETHE_STORE_READONLY)) {
            int pending = 1;
            sqlite3_stmt *st;
            if (sqlite3_prepare_v2(s->db, "SELECT 1 FROM meta WHERE key = 'scrub_pending'", -1,
                                   &st, NULL) == SQLITE_OK) {
                pending = sqlite3_step(st) == SQLITE_ROW;
                sqlite3_finalize(st);
            }
            if (!pending)
                sqlite3_exec(s->db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
        }
        sqlite3_close_v2(s->db);
    }
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    kr_close(s->kr);
    policy_free(s->pol);
    lethe_free(s->dir);
    lethe_free(s);
}

const char *lethe_store_errmsg(const lethe_store *s)
{
    if (s && s->share)
        return share_errmsg(s);
    return !s ? "out of memory" : s->err[0] ? s->err : "no error";
}

const char *lethe_store_path(const lethe_store *s)
{
    return s->dir;
}

void lethe_free_string(char *str)
{
    lethe_free(str);
}
