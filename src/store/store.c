/*
 * store.c: opening and creating a store, its schema and format version, the
 * writer lock, keeping the descriptor index in step with the catalog, the
 * consent policy's glue, and the canonical digest. See store.h for the files
 * and the ordering that keeps crashes harmless.
 */
#include "store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/strbuf.h"
#include "util/util.h"

static const char schema_sql[] =
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID;\n"
    "CREATE TABLE photos(\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  sha256 BLOB NOT NULL UNIQUE,\n"
    "  kind TEXT NOT NULL CHECK(kind IN ('photo','descriptor')),\n"
    "  bytes INTEGER, width INTEGER, height INTEGER,\n"
    "  status TEXT NOT NULL CHECK(status IN ('analysed','refused','withdrawn')),\n"
    "  added_at TEXT NOT NULL);\n"
    "CREATE TABLE provenance(\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  photo INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,\n"
    "  path TEXT NOT NULL, photo_id TEXT NOT NULL, url TEXT NOT NULL,\n"
    "  uploader TEXT NOT NULL, source TEXT NOT NULL, license TEXT NOT NULL,\n"
    "  jurisdiction TEXT NOT NULL, consent TEXT NOT NULL, collected_at TEXT NOT NULL,\n"
    "  added_at TEXT NOT NULL,\n"
    "  UNIQUE(photo, path, photo_id, url, uploader, source, license, jurisdiction,\n"
    "         consent, collected_at));\n"
    "CREATE INDEX provenance_uploader ON provenance(uploader);\n"
    "CREATE INDEX provenance_url ON provenance(url);\n"
    "CREATE INDEX provenance_photo_id ON provenance(photo_id);\n"
    "CREATE INDEX provenance_source ON provenance(source);\n"
    "CREATE INDEX provenance_jurisdiction ON provenance(jurisdiction);\n"
    "CREATE TABLE faces(\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  photo INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,\n"
    "  ord INTEGER NOT NULL,\n"
    "  x REAL, y REAL, w REAL, h REAL, score REAL,\n"
    "  descriptor BLOB CHECK(descriptor IS NULL OR length(descriptor) = 512),\n"
    "  UNIQUE(photo, ord));\n"
    "CREATE TABLE IF NOT EXISTS receipts(hash TEXT PRIMARY KEY, time TEXT NOT NULL,\n"
    "  json TEXT NOT NULL);\n"
    "CREATE TABLE IF NOT EXISTS ledger(hash TEXT PRIMARY KEY, time TEXT NOT NULL);\n"
    "CREATE TABLE IF NOT EXISTS optouts(\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  photo_id_h TEXT NOT NULL, url_h TEXT NOT NULL, uploader_h TEXT NOT NULL,\n"
    "  source_h TEXT NOT NULL, jurisdiction_h TEXT NOT NULL, sha_h TEXT NOT NULL,\n"
    "  collected_before TEXT NOT NULL, face_threshold REAL NOT NULL,\n"
    "  created_at TEXT NOT NULL, receipt TEXT NOT NULL);\n"
    "CREATE TABLE IF NOT EXISTS optout_faces(\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  optout INTEGER NOT NULL REFERENCES optouts(id) ON DELETE CASCADE,\n"
    "  descriptor BLOB NOT NULL CHECK(length(descriptor) = 512));\n"
    "CREATE TABLE log(\n"
    "  seq INTEGER PRIMARY KEY,\n"
    "  time TEXT NOT NULL, kind TEXT NOT NULL, actor TEXT NOT NULL,\n"
    "  purpose TEXT NOT NULL, query_hash TEXT NOT NULL, results INTEGER NOT NULL,\n"
    "  detail TEXT NOT NULL, prev TEXT NOT NULL, hash TEXT NOT NULL);\n";

int store_fail(lethe_store *s, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err, sizeof(s->err), fmt, ap);
    va_end(ap);
    return status;
}

int store_sqlfail(lethe_store *s, const char *what)
{
    int code = s->db ? sqlite3_errcode(s->db) : SQLITE_ERROR;
    int status = code == SQLITE_NOMEM ? LETHE_ERR_NOMEM
               : code == SQLITE_CORRUPT || code == SQLITE_NOTADB ? LETHE_ERR_STORE
                                                                  : LETHE_ERR_IO;
    return store_fail(s, status, "%s: %s", what, s->db ? sqlite3_errmsg(s->db) : "no catalog");
}

char *store_file(const lethe_store *s, const char *name)
{
    size_t n = strlen(s->dir) + strlen(name) + 2;
    char *p = lethe_malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", s->dir, name);
    return p;
}

int store_lock(lethe_store *s)
{
    if (s->locked)
        return LETHE_OK;
    while (flock(s->lock_fd, LOCK_EX) < 0) {
        if (errno != EINTR)
            return store_fail(s, LETHE_ERR_IO, "%s/%s: cannot lock: %s", s->dir, STORE_LOCK,
                              strerror(errno));
    }
    s->locked = 1;
    return LETHE_OK;
}

void store_unlock(lethe_store *s)
{
    if (s->locked) {
        flock(s->lock_fd, LOCK_UN);
        s->locked = 0;
    }
}

int store_exec(lethe_store *s, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        int rc = store_fail(s, LETHE_ERR_IO, "catalog: %s", msg ? msg : sqlite3_errmsg(s->db));
        sqlite3_free(msg);
        return rc;
    }
    return LETHE_OK;
}

int store_prepare(lethe_store *s, const char *sql, sqlite3_stmt **st)
{
    if (sqlite3_prepare_v2(s->db, sql, -1, st, NULL) != SQLITE_OK)
        return store_sqlfail(s, "catalog query");
    return LETHE_OK;
}

int store_cached(lethe_store *s, int which, const char *sql, sqlite3_stmt **st)
{
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

int store_begin(lethe_store *s)
{
    int rc = store_exec(s, "BEGIN IMMEDIATE");
    if (rc == LETHE_OK) {
        s->dig_dirty = 0;
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

int store_commit(lethe_store *s)
{
    int rc = s->dig_dirty ? dg_save(s, s->dig) : LETHE_OK;
    if (rc == LETHE_OK)
        rc = store_exec(s, "COMMIT");
    if (rc != LETHE_OK)
        return rc;
    s->dig_dirty = 0;
    return store_log_write_head(s);
}

void store_rollback(lethe_store *s)
{
    if (!sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

int store_meta_get_int(lethe_store *s, const char *key, int64_t *v)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s, "SELECT value FROM meta WHERE key = ?", &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        *v = sqlite3_column_int64(st, 0);
        rc = LETHE_OK;
    } else if (step == SQLITE_DONE) {
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

static int meta_get_text(lethe_store *s, const char *key, char *out, size_t n)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s, "SELECT value FROM meta WHERE key = ?", &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_TEXT) {
        snprintf(out, n, "%s", (const char *)sqlite3_column_text(st, 0));
    } else {
        rc = store_fail(s, LETHE_ERR_STORE, "%s/%s: meta.%s is missing", s->dir, STORE_DB, key);
    }
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

void store_keyed_hash(const lethe_store *s, const void *data, size_t len, char hex[65])
{
    uint8_t h[32];
    crypto_generichash(h, sizeof(h), data, len, s->salt, sizeof(s->salt));
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
    char *path = store_file(s, name);
    size_t tn = strlen(name) + 48;
    static _Atomic unsigned serial;
    char *tmpname = lethe_malloc(tn);
    char *tmp = NULL;
    int rc = LETHE_ERR_NOMEM, fd = -1;
    if (!path || !tmpname)
        goto out;
    /* unique: several processes and threads may write the same file */
    snprintf(tmpname, tn, "%s.%ld.%u.tmp", name, (long)getpid(),
             atomic_fetch_add(&serial, 1u));
    tmp = store_file(s, tmpname);
    if (!tmp)
        goto out;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = store_fail(s, LETHE_ERR_IO, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    for (size_t off = 0; off < len;) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            rc = store_fail(s, LETHE_ERR_IO, "%s: %s", tmp, strerror(errno));
            goto out;
        }
        off += (size_t)w;
    }
    if (fsync(fd) < 0 || close(fd) < 0) {
        fd = -1;
        rc = store_fail(s, LETHE_ERR_IO, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) < 0) {
        rc = store_fail(s, LETHE_ERR_IO, "%s: %s", path, strerror(errno));
        goto out;
    }
    rc = LETHE_OK;
out:
    if (fd >= 0)
        close(fd);
    if (rc != LETHE_OK && tmp)
        unlink(tmp);
    lethe_free(path);
    lethe_free(tmpname);
    lethe_free(tmp);
    return rc;
}

/* ---------------------------------------------------------------- policy */

int store_photo_eligible(const policy *p, const char *const *jurisdictions,
                         const char *const *consents, int n)
{
    int allowed = 0;
    for (int i = 0; i < n; i++) {
        int bit = consent_parse(consents[i] && *consents[i] ? consents[i] : "none");
        if (bit == CONSENT_WITHDRAWN)
            return 0;
        if (bit > 0 && policy_allows(p, jurisdictions[i] ? jurisdictions[i] : "", bit, NULL))
            allowed = 1;
    }
    return allowed;
}

static int load_policy(lethe_store *s)
{
    char *path = store_file(s, STORE_POLICY);
    uint8_t *text = NULL;
    size_t len = 0;
    char msg[512];
    if (!path)
        return store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    int rc = lethe_read_file(path, 1u << 20, &text, &len, msg, sizeof(msg));
    if (rc != LETHE_OK) {
        rc = store_fail(s, LETHE_ERR_STORE, "consent policy: %s", msg);
    } else if (policy_parse((const char *)text, len, &s->pol, msg, sizeof(msg)) != 0) {
        rc = store_fail(s, LETHE_ERR_STORE, "%s: %s", path, msg);
    }
    lethe_free(text);
    lethe_free(path);
    return rc;
}

int lethe_policy_get(lethe_store *s, char **text)
{
    *text = policy_format(s->pol);
    return *text ? LETHE_OK : store_fail(s, LETHE_ERR_NOMEM, "out of memory");
}

int lethe_policy_check(lethe_store *s, const char *jurisdiction, const char *consent,
                       const char **rule)
{
    char canon[8], msg[256];
    int bit = consent_parse(consent && *consent ? consent : "none");
    if (bit < 0) {
        store_fail(s, LETHE_ERR_ARG,
                   "unknown consent basis \"%s\" (explicit, public-license, none, withdrawn)",
                   consent);
        return -1;
    }
    if (jurisdiction_parse(jurisdiction ? jurisdiction : "", canon, msg, sizeof(msg)) != 0) {
        store_fail(s, LETHE_ERR_ARG, "%s", msg);
        return -1;
    }
    return policy_allows(s->pol, canon, bit, rule) ? 1 : 0;
}

/* Drop the templates of every photo the policy p no longer allows. */
static int apply_policy(lethe_store *s, const policy *p, int dry_run, uint64_t *dropped,
                        int64_t **rm_ids, size_t *nrm)
{
    sqlite3_stmt *ph = NULL, *pv = NULL, *fc = NULL, *upd = NULL, *clr = NULL;
    int64_t *ids = NULL;
    size_t n = 0, cap = 0;
    int rc;
    *dropped = 0;
    if ((rc = store_prepare(s, "SELECT id FROM photos WHERE status = 'analysed'", &ph)) ||
        (rc = store_prepare(s, "SELECT jurisdiction, consent FROM provenance WHERE photo = ?",
                            &pv)) ||
        (rc = store_prepare(s, "SELECT id FROM faces WHERE photo = ? AND descriptor IS NOT NULL",
                            &fc)) ||
        (rc = store_prepare(s, "UPDATE photos SET status = 'refused' WHERE id = ?", &upd)) ||
        (rc = store_prepare(s, "UPDATE faces SET descriptor = NULL WHERE photo = ?", &clr)))
        goto out;
    while ((rc = sqlite3_step(ph)) == SQLITE_ROW) {
        int64_t photo = sqlite3_column_int64(ph, 0);
        const char *jur[64], *con[64];
        char jbuf[64][8], cbuf[64][16];
        int k = 0, eligible;
        sqlite3_bind_int64(pv, 1, photo);
        while (sqlite3_step(pv) == SQLITE_ROW && k < 64) {
            snprintf(jbuf[k], sizeof(jbuf[k]), "%s", (const char *)sqlite3_column_text(pv, 0));
            snprintf(cbuf[k], sizeof(cbuf[k]), "%s", (const char *)sqlite3_column_text(pv, 1));
            jur[k] = jbuf[k];
            con[k] = cbuf[k];
            k++;
        }
        sqlite3_reset(pv);
        eligible = store_photo_eligible(p, jur, con, k);
        if (eligible)
            continue;
        sqlite3_bind_int64(fc, 1, photo);
        while (sqlite3_step(fc) == SQLITE_ROW) {
            if (n == cap) {
                size_t nc = cap ? cap * 2 : 256;
                int64_t *t = lethe_realloc(ids, nc * sizeof(*ids));
                if (!t) {
                    sqlite3_reset(fc);
                    rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
                    goto out;
                }
                ids = t;
                cap = nc;
            }
            ids[n++] = sqlite3_column_int64(fc, 0);
        }
        sqlite3_reset(fc);
        if (!dry_run) {
            if ((rc = store_dg(s, photo, -1)))
                goto out;
            sqlite3_bind_int64(upd, 1, photo);
            sqlite3_bind_int64(clr, 1, photo);
            if (sqlite3_step(upd) != SQLITE_DONE || sqlite3_step(clr) != SQLITE_DONE) {
                rc = store_sqlfail(s, "dropping templates");
                goto out;
            }
            sqlite3_reset(upd);
            sqlite3_reset(clr);
            if ((rc = store_dg(s, photo, 1)))
                goto out;
        }
    }
    rc = rc == SQLITE_DONE ? LETHE_OK : store_sqlfail(s, "reading photos");
    *dropped = n;
out:
    sqlite3_finalize(ph);
    sqlite3_finalize(pv);
    sqlite3_finalize(fc);
    sqlite3_finalize(upd);
    sqlite3_finalize(clr);
    if (rc == LETHE_OK && rm_ids) {
        *rm_ids = ids;
        *nrm = n;
    } else {
        lethe_free(ids);
    }
    return rc;
}

int lethe_policy_set(lethe_store *s, const char *key, const char *consents, const char *actor,
                     int dry_run, uint64_t *dropped)
{
    char msg[256], *text = NULL, *copy = NULL;
    policy *p = NULL;
    int64_t *rm = NULL;
    size_t nrm = 0;
    unsigned mask = 0;
    uint64_t gen = 0, n = 0;
    int rc;

    if (s->flags & LETHE_STORE_READONLY)
        return store_fail(s, LETHE_ERR_ARG, "the store is open read-only");
    copy = lethe_strdup(consents ? consents : "");
    text = policy_format(s->pol);
    if (!copy || !text) {
        rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (char *save = NULL, *tok = strtok_r(copy, ", ", &save); tok;
         tok = strtok_r(NULL, ", ", &save)) {
        int bit = consent_parse(tok);
        if (bit < 0 || bit == CONSENT_WITHDRAWN) {
            rc = store_fail(s, LETHE_ERR_ARG,
                            bit < 0 ? "unknown consent basis \"%s\" (explicit, public-license, none)"
                                    : "\"%s\" can never allow a template", tok);
            goto out;
        }
        mask |= (unsigned)bit;
    }
    if (policy_parse(text, strlen(text), &p, msg, sizeof(msg)) != 0 ||
        policy_set(p, key, mask, msg, sizeof(msg)) != 0) {
        rc = store_fail(s, LETHE_ERR_ARG, "%s", msg);
        goto out;
    }
    lethe_free(text);
    text = policy_format(p);
    if (!text) {
        rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
        goto out;
    }
    if ((rc = store_lock(s)) || (rc = store_begin(s)))
        goto out;
    rc = apply_policy(s, p, dry_run, &n, &rm, &nrm);
    if (rc == LETHE_OK && !dry_run) {
        strbuf d;
        sb_init(&d);
        sb_puts(&d, "{\"key\":");
        sb_json_str(&d, key);
        sb_puts(&d, ",\"allows\":");
        sb_json_str(&d, consents ? consents : "");
        sb_printf(&d, ",\"templates_dropped\":%llu}", (unsigned long long)n);
        char *detail = sb_finish(&d);
        if (!detail)
            rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
        if (rc == LETHE_OK && nrm)
            rc = store_bump_gen(s, &gen);
        if (rc == LETHE_OK)
            rc = store_log_append(s, "policy", actor, "", "", (int64_t)n, detail);
        if (rc == LETHE_OK && nrm)
            rc = store_exec(s, "INSERT OR REPLACE INTO meta(key, value) VALUES "
                               "('scrub_pending', 1)");
        lethe_free(detail);
    }
    if (rc != LETHE_OK || dry_run) {
        store_rollback(s);
        goto out;
    }
    if ((rc = store_commit(s)) != LETHE_OK)
        goto out;
    /* Templates are gone from the catalog; now the index and the file. */
    if (nrm) {
        store_index_apply(s, gen, rm, nrm, NULL, NULL, 0);
        store_scrub(s, 0);
    }
    if ((rc = store_write_file(s, STORE_POLICY, text, strlen(text))) != LETHE_OK)
        goto out;
    policy_free(s->pol);
    s->pol = p;
    p = NULL;
out:
    if (dropped)
        *dropped = n;
    store_unlock(s);
    policy_free(p);
    lethe_free(rm);
    lethe_free(text);
    lethe_free(copy);
    return rc;
}

/* ----------------------------------------------------------------- index */

/* Open the one writing handle of the index (the caller holds the store
 * lock, so no other process of ours writes). */
static int index_writer(lethe_store *s, idx **wx)
{
    char msg[512];
    char *path = store_file(s, STORE_INDEX);
    if (!path)
        return store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    int r = idx_open(path, IDX_WRITE | IDX_CREATE, wx, msg, sizeof(msg));
    if (r == LETHE_ERR_FORMAT || r == LETHE_ERR_UNSUPPORTED) {
        /* a damaged or foreign index: it is derived data, start it afresh */
        r = idx_open(path, IDX_WRITE | IDX_CREATE | IDX_TRUNCATE, wx, msg, sizeof(msg));
    }
    lethe_free(path);
    return r == 0 ? LETHE_OK : store_fail(s, LETHE_ERR_IO, "%s", msg);
}

/* Rebuild the index from the catalog's templates, as of generation gen. */
static int index_rebuild(lethe_store *s, idx *wx, uint64_t gen)
{
    char msg[512];
    sqlite3_stmt *st = NULL;
    enum { CHUNK = 4096 };
    int64_t *ids = lethe_malloc(CHUNK * sizeof(int64_t));
    float *vecs = lethe_malloc((size_t)CHUNK * IDX_DIM * sizeof(float));
    size_t n = 0;
    int rc, step = SQLITE_DONE;
    if (!ids || !vecs) {
        rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
        goto out;
    }
    if (idx_clear(wx, msg, sizeof(msg)) != 0) {
        rc = store_fail(s, LETHE_ERR_IO, "%s", msg);
        goto out;
    }
    if ((rc = store_prepare(s, "SELECT id, descriptor FROM faces WHERE descriptor IS NOT NULL "
                               "ORDER BY id", &st)))
        goto out;
    for (;;) {
        step = sqlite3_step(st);
        if (step == SQLITE_ROW) {
            ids[n] = sqlite3_column_int64(st, 0);
            memcpy(vecs + n * IDX_DIM, sqlite3_column_blob(st, 1), IDX_DIM * sizeof(float));
            n++;
        }
        if (n && (n == CHUNK || step != SQLITE_ROW)) {
            if (idx_append(wx, ids, vecs, n, msg, sizeof(msg)) != 0) {
                rc = store_fail(s, LETHE_ERR_IO, "%s", msg);
                goto out;
            }
            n = 0;
        }
        if (step != SQLITE_ROW)
            break;
    }
    if (step != SQLITE_DONE) {
        rc = store_sqlfail(s, "reading templates");
        goto out;
    }
    if (idx_commit(wx, gen, msg, sizeof(msg)) != 0)
        rc = store_fail(s, LETHE_ERR_IO, "%s", msg);
out:
    sqlite3_finalize(st);
    if (vecs)
        sodium_memzero(vecs, (size_t)CHUNK * IDX_DIM * sizeof(float));
    lethe_free(ids);
    lethe_free(vecs);
    return rc;
}

int store_index_apply(lethe_store *s, uint64_t gen, const int64_t *rm, size_t nrm,
                      const int64_t *ids, const float *vecs, size_t n)
{
    char msg[512];
    size_t removed;
    int64_t have;
    idx *wx = NULL;
    int rc = index_writer(s, &wx);
    if (rc)
        return rc; /* the next writable open rebuilds it */
    /* Only when the index holds the generation just before ours can it be
     * patched; otherwise (an earlier crash, a lost file) rebuild it. */
    if (idx_generation(wx) + 1 != gen) {
        rc = store_meta_get_int(s, "index_gen", &have);
        if (rc == LETHE_OK)
            rc = index_rebuild(s, wx, (uint64_t)have);
    } else if ((nrm && idx_remove(wx, rm, nrm, &removed, msg, sizeof(msg)) != 0) ||
               (n && idx_append(wx, ids, vecs, n, msg, sizeof(msg)) != 0) ||
               idx_commit(wx, gen, msg, sizeof(msg)) != 0) {
        rc = store_fail(s, LETHE_ERR_IO, "%s (the index will be rebuilt)", msg);
    }
    idx_close(wx);
    return rc;
}

/* Make the index match the catalog's generation (writable stores only). */
static int index_sync(lethe_store *s)
{
    char msg[512];
    int64_t gen;
    idx *rx = NULL, *wx = NULL;
    char *path = store_file(s, STORE_INDEX);
    int rc = store_meta_get_int(s, "index_gen", &gen);
    if (!path)
        return store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    if (rc == LETHE_OK && idx_open(path, IDX_READ, &rx, msg, sizeof(msg)) == 0 &&
        idx_generation(rx) == (uint64_t)gen) {
        idx_close(rx);
        lethe_free(path);
        return LETHE_OK;
    }
    idx_close(rx);
    lethe_free(path);
    if (rc)
        return rc;
    /* A writer at work brings it up to date itself. */
    if (flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0)
        return LETHE_OK;
    s->locked = 1;
    if ((rc = store_meta_get_int(s, "index_gen", &gen)) == LETHE_OK &&
        (rc = index_writer(s, &wx)) == LETHE_OK) {
        if (idx_generation(wx) != (uint64_t)gen || idx_count(wx) == 0)
            rc = index_rebuild(s, wx, (uint64_t)gen);
        idx_close(wx);
    }
    store_unlock(s);
    return rc;
}

int store_index_ready(lethe_store *s)
{
    char msg[512];
    if (s->ix)
        return LETHE_OK;
    char *path = store_file(s, STORE_INDEX);
    if (!path)
        return store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    int r = idx_open(path, IDX_READ, &s->ix, msg, sizeof(msg));
    lethe_free(path);
    if (r == LETHE_ERR_NOT_FOUND && (s->flags & LETHE_STORE_READONLY))
        return store_fail(s, LETHE_ERR_STORE, "%s (open the store writable to rebuild it)", msg);
    return r == 0 ? LETHE_OK : store_fail(s, LETHE_ERR_STORE, "%s", msg);
}

/* lethe_key(text): the keyed hash (hex) of text, for the erasure ledger. */
static void sql_lethe_key(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    lethe_store *s = sqlite3_user_data(ctx);
    char hex[65];
    (void)argc;
    const unsigned char *t = sqlite3_value_text(argv[0]);
    if (!t) {
        sqlite3_result_null(ctx);
        return;
    }
    store_keyed_hash(s, t, (size_t)sqlite3_value_bytes(argv[0]), hex);
    sqlite3_result_text(ctx, hex, 64, SQLITE_TRANSIENT);
}

/* ------------------------------------------------------------ open/close */

static int create_store(lethe_store *s)
{
    char now[32], hex[65], *pol = NULL;
    uint8_t salt[32];
    policy *p = NULL;
    int rc;
    store_now(now);
    randombytes_buf(salt, sizeof(salt));
    sodium_bin2hex(hex, sizeof(hex), salt, sizeof(salt));
    if ((rc = store_exec(s, "BEGIN IMMEDIATE")))
        return rc;
    rc = store_exec(s, schema_sql);
    if (rc == LETHE_OK) {
        sqlite3_stmt *st;
        rc = store_prepare(s, "INSERT INTO meta(key, value) VALUES ('format', ?), "
                              "('created_at', ?), ('index_gen', 0), ('salt', ?), "
                              "('model', 'face-api 1.7.15: SSD MobileNet v1, 68 landmarks, "
                              "ResNet-34 128-D')", &st);
        if (rc == LETHE_OK) {
            sqlite3_bind_int(st, 1, LETHE_STORE_FORMAT);
            sqlite3_bind_text(st, 2, now, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(st, 3, hex, -1, SQLITE_TRANSIENT);
            if (sqlite3_step(st) != SQLITE_DONE)
                rc = store_sqlfail(s, "creating the catalog");
            sqlite3_finalize(st);
        }
    }
    memcpy(s->salt, salt, sizeof(salt));
    memset(s->dig, 0, sizeof(s->dig));
    s->dig_dirty = 1; /* the empty store's state, saved with the rest */
    if (rc == LETHE_OK)
        rc = store_log_append(s, "init", "", "", "", 0, "{\"format\":1}");
    if (rc == LETHE_OK && policy_default(&p) != 0)
        rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    if (rc == LETHE_OK && !(pol = policy_format(p)))
        rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    if (rc == LETHE_OK)
        rc = store_write_file(s, STORE_POLICY, pol, strlen(pol));
    if (rc == LETHE_OK)
        rc = store_commit(s);
    else
        store_rollback(s);
    policy_free(p);
    lethe_free(pol);
    return rc;
}

static int check_store(lethe_store *s)
{
    int64_t format;
    char hex[80];
    size_t len;
    int rc = store_meta_get_int(s, "format", &format);
    if (rc)
        return store_fail(s, LETHE_ERR_STORE, "%s: not a lethe store (%s)", s->dir, s->err);
    if (format != LETHE_STORE_FORMAT)
        return store_fail(s, LETHE_ERR_STORE,
                          "%s: store format %lld, this lethe reads format %d", s->dir,
                          (long long)format, LETHE_STORE_FORMAT);
    if ((rc = meta_get_text(s, "salt", hex, sizeof(hex))))
        return rc;
    if (sodium_hex2bin(s->salt, sizeof(s->salt), hex, strlen(hex), NULL, &len, NULL) != 0 ||
        len != sizeof(s->salt))
        return store_fail(s, LETHE_ERR_STORE, "%s: meta.salt is damaged", s->dir);
    if (dg_load(s, s->dig) != LETHE_OK) {
        /* a store from before the kept digest: compute it once */
        if (s->flags & LETHE_STORE_READONLY)
            return store_fail(s, LETHE_ERR_STORE, "%s: the digest state is missing (open the "
                              "store writable once to compute it)", s->dir);
        if ((rc = store_exec(s, "BEGIN IMMEDIATE")))
            return rc;
        rc = dg_full(s, s->dig);
        if (rc == LETHE_OK)
            rc = dg_save(s, s->dig);
        if (rc == LETHE_OK)
            rc = store_exec(s, "COMMIT");
        else
            store_rollback(s);
    }
    return rc;
}

int lethe_store_open(const char *dir, unsigned flags, lethe_store **out)
{
    lethe_store *s = lethe_calloc(1, sizeof(*s));
    char *dbpath = NULL, *lockpath = NULL, *ixpath = NULL;
    struct stat sb;
    int rc, fresh = 0;
    *out = s;
    if (!s)
        return LETHE_ERR_NOMEM;
    s->lock_fd = -1;
    s->flags = flags;
    if (sodium_init() < 0)
        return store_fail(s, LETHE_ERR_INTERNAL, "libsodium failed to initialise");
    if (!dir || !*dir)
        return store_fail(s, LETHE_ERR_ARG, "no store directory given");
    if (!(s->dir = lethe_strdup(dir)))
        return store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    if (stat(dir, &sb) < 0) {
        if (errno != ENOENT || !(flags & LETHE_STORE_CREATE))
            return store_fail(s, LETHE_ERR_STORE,
                              "%s: %s (create a store with `lethe init`)", dir, strerror(errno));
        if (mkdir(dir, 0700) < 0)
            return store_fail(s, LETHE_ERR_IO, "%s: cannot create: %s", dir, strerror(errno));
    } else if (!S_ISDIR(sb.st_mode)) {
        return store_fail(s, LETHE_ERR_STORE, "%s: not a directory", dir);
    }
    dbpath = store_file(s, STORE_DB);
    lockpath = store_file(s, STORE_LOCK);
    ixpath = store_file(s, STORE_INDEX);
    if (!dbpath || !lockpath || !ixpath) {
        rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
        goto out;
    }
    if (stat(dbpath, &sb) < 0) {
        if (!(flags & LETHE_STORE_CREATE)) {
            rc = store_fail(s, LETHE_ERR_STORE, "%s: not a lethe store (no %s; create one with "
                            "`lethe init`)", dir, STORE_DB);
            goto out;
        }
        fresh = 1;
    }
    s->lock_fd = open(lockpath, ((flags & LETHE_STORE_READONLY) ? O_RDONLY : O_RDWR | O_CREAT) |
                      O_CLOEXEC, 0600);
    if (s->lock_fd < 0) {
        rc = store_fail(s, LETHE_ERR_IO, "%s: %s", lockpath, strerror(errno));
        goto out;
    }
    if (fresh && (rc = store_lock(s)))
        goto out;
    /* Another process may have created it while we waited for the lock. */
    if (fresh && stat(dbpath, &sb) == 0)
        fresh = 0;
    if (sqlite3_open_v2(dbpath, &s->db,
                        (flags & LETHE_STORE_READONLY) ? SQLITE_OPEN_READONLY
                                                       : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                        NULL) != SQLITE_OK) {
        rc = store_sqlfail(s, dbpath);
        goto out;
    }
    sqlite3_busy_timeout(s->db, 30000);
    sqlite3_create_function(s->db, "lethe_key", 1, SQLITE_UTF8 | SQLITE_DETERMINISTIC, s,
                            sql_lethe_key, NULL, NULL);
    /* secure_delete: freed pages and cells are zeroed, so erased data does
     * not linger in the file; WAL: searches run while an ingest writes. */
    if ((rc = store_exec(s, "PRAGMA secure_delete = ON; PRAGMA foreign_keys = ON")))
        goto out;
    /* No automatic checkpoints: an erasure reads the WAL's page list to
     * scrub those pages (scrub.c), so the WAL is only checkpointed by lethe
     * itself: by the scrub, by ingest between batches, and on close. */
    if (!(flags & LETHE_STORE_READONLY) &&
        (rc = store_exec(s, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; "
                            "PRAGMA wal_autocheckpoint = 0")))
        goto out;
    if (fresh) {
        if ((rc = create_store(s)))
            goto out;
    } else if ((rc = check_store(s))) {
        goto out;
    }
    if ((rc = load_policy(s)))
        goto out;
    /* Scratch tables of a selection live in memory, never in a file. */
    if ((rc = store_exec(s, "PRAGMA temp_store = MEMORY; "
                            "CREATE TEMP TABLE IF NOT EXISTS sel_photos(id INTEGER PRIMARY KEY); "
                            "CREATE TEMP TABLE IF NOT EXISTS sel_faces(id INTEGER PRIMARY KEY, "
                            "distance REAL); "
                            "CREATE TEMP TABLE IF NOT EXISTS sel_touched(id INTEGER PRIMARY KEY)")))
        goto out;
    if (!fresh && !(flags & LETHE_STORE_READONLY) &&
        (rc = store_exec(s, "CREATE TABLE IF NOT EXISTS ledger(hash TEXT PRIMARY KEY, time TEXT "
                            "NOT NULL); "
                            "CREATE TABLE IF NOT EXISTS receipts(hash TEXT PRIMARY KEY, time TEXT "
                            "NOT NULL, json TEXT NOT NULL); CREATE TABLE IF NOT EXISTS optouts(id "
                            "INTEGER PRIMARY KEY, photo_id_h TEXT NOT NULL, url_h TEXT NOT NULL, "
                            "uploader_h TEXT NOT NULL, source_h TEXT NOT NULL, jurisdiction_h TEXT "
                            "NOT NULL, sha_h TEXT NOT NULL, collected_before TEXT NOT NULL, "
                            "face_threshold REAL NOT NULL, created_at TEXT NOT NULL, receipt TEXT "
                            "NOT NULL); CREATE TABLE IF NOT EXISTS optout_faces(id INTEGER PRIMARY "
                            "KEY, optout INTEGER NOT NULL REFERENCES optouts(id) ON DELETE CASCADE, "
                            "descriptor BLOB NOT NULL CHECK(length(descriptor) = 512))")))
        goto out;
    if (!(flags & LETHE_STORE_READONLY))
        rc = index_sync(s);
    if (rc == LETHE_OK && !(flags & LETHE_STORE_READONLY)) {
        /* an erasure committed but not scrubbed (a crash): scrub it all */
        int64_t pending = 0;
        sqlite3_stmt *st;
        if (store_prepare(s, "SELECT value FROM meta WHERE key = 'scrub_pending'", &st) == 0) {
            pending = sqlite3_step(st) == SQLITE_ROW;
            sqlite3_finalize(st);
        }
        if (pending && flock(s->lock_fd, LOCK_EX | LOCK_NB) == 0) {
            s->locked = 1;
            rc = store_scrub(s, 1);
            store_unlock(s);
        }
    }
out:
    store_unlock(s);
    lethe_free(dbpath);
    lethe_free(lockpath);
    lethe_free(ixpath);
    return rc;
}

void lethe_store_close(lethe_store *s)
{
    if (!s)
        return;
    idx_close(s->ix);
    for (int i = 0; i < STORE_STMTS; i++)
        sqlite3_finalize(s->stmt[i]); /* NULL is fine */
    if (s->db) {
        /* Fold the WAL back into the catalog so no stale page copies stay
         * beside it (ignored when another process still has it open). */
        if (!(s->flags & LETHE_STORE_READONLY)) {
            /* not while an erasure's scrub still needs the WAL's page list */
            int pending = 0;
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
    policy_free(s->pol);
    lethe_free(s->dir);
    sodium_memzero(s->salt, sizeof(s->salt));
    lethe_free(s);
}

const char *lethe_store_errmsg(const lethe_store *s)
{
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
