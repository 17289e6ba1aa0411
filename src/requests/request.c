/*
 * request.c: data-subject requests: filing one, and what its requester and
 * the operator may read of it (lethe.h, "Data-subject requests"; the
 * decisions are in decide.c).
 *
 * The request id is "rq_" and 32 random bytes in base64url: the only
 * handle its requester has, so it must not be guessable (256 bits) and a
 * wrong one must teach nothing. The store keeps a BLAKE2b-256 of the bytes
 * keyed with the keyring's salt (a copy of the catalog checks no id), finds
 * the row by it and compares it again in constant time. A malformed id, an
 * unknown one and a wrong one get the same answer.
 *
 * What a pending request selects (an account, a link, a photo id, a
 * photo's SHA-256, a face descriptor) is personal data: it is sealed
 * (XChaCha20-Poly1305, a key derived from the keyring's salt, the row's
 * token hash as associated data) and dropped when the request is decided.
 */
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "requests/requests.h"
#include "store/store.h"
#include "util/strbuf.h"
#include "util/util.h"

#define ID_PREFIX "rq_"
#define ID_SECRET 32
#define ID_CHARS 43 /* base64url of 32 bytes, no padding */

static const char requests_schema_sql[] =
    "CREATE TABLE IF NOT EXISTS requests(\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  token_h BLOB NOT NULL UNIQUE,\n"
    "  action TEXT NOT NULL CHECK(action IN ('erase', 'optout')),\n"
    "  by_kind TEXT NOT NULL,\n"
    "  status TEXT NOT NULL CHECK(status IN ('pending', 'done', 'denied')),\n"
    "  filed_at TEXT NOT NULL, decided_at TEXT, decided_by TEXT, note TEXT,\n"
    "  sealed BLOB, receipt TEXT, receipt_hash TEXT,\n"
    "  photos INTEGER NOT NULL DEFAULT 0, faces INTEGER NOT NULL DEFAULT 0,\n"
    "  templates INTEGER NOT NULL DEFAULT 0);\n"
    "CREATE INDEX IF NOT EXISTS requests_pending ON requests(status) WHERE status = 'pending';\n";

static const char *const by_names[LETHE_REQUEST_KINDS] = {"uploader", "url", "photo-id", "file",
                                                          "face"};

const char *lethe_request_by_name(int by)
{
    return by >= 0 && by < LETHE_REQUEST_KINDS ? by_names[by] : NULL;
}

int lethe_request_by_parse(const char *name, int *by, char *msg, size_t msg_len)
{
    for (int k = 0; k < LETHE_REQUEST_KINDS; k++)
        if (name && !strcmp(name, by_names[k])) {
            *by = k;
            return LETHE_OK;
        }
    return lethe_fail(msg, msg_len, LETHE_ERR_ARG,
                      "unknown request kind '%.64s' (uploader, url, photo-id, file, face)",
                      name ? name : "");
}

const char *request_action_name(int action)
{
    return action == LETHE_REQUEST_OPTOUT ? "optout" : "erase";
}

int requests_schema(lethe_store *s)
{
    return store_exec(s, requests_schema_sql);
}

/* ---------------------------------------------------------------- sealing */

static void seal_key(const lethe_store *s, uint8_t key[32])
{
    store_hash(s, "request-seal", s->store_id, KR_STORE_ID, key);
}

static int seal(lethe_store *s, const uint8_t token_h[32], const void *plain, size_t n,
                uint8_t **out, size_t *out_len)
{
    uint8_t key[32];
    size_t len = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + n +
                 crypto_aead_xchacha20poly1305_ietf_ABYTES;
    uint8_t *b = lethe_malloc(len);
    if (!b)
        return store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    seal_key(s, key);
    randombytes_buf(b, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
    crypto_aead_xchacha20poly1305_ietf_encrypt(b + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
                                               NULL, plain, n, token_h, 32, NULL, b, key);
    sodium_memzero(key, sizeof(key));
    *out = b;
    *out_len = len;
    return LETHE_OK;
}

int request_unseal(lethe_store *s, const uint8_t token_h[32], const uint8_t *sealed, size_t len,
                   uint8_t **plain, size_t *n)
{
    const size_t np = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
                 na = crypto_aead_xchacha20poly1305_ietf_ABYTES;
    uint8_t key[32];
    unsigned long long got = 0;
    *plain = NULL;
    *n = 0;
    if (!sealed || len < np + na)
        return store_fail(s, LETHE_ERR_STORE, "the request's selector is missing or damaged");
    uint8_t *p = lethe_malloc(len - np - na + 1);
    if (!p)
        return store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    seal_key(s, key);
    int bad = crypto_aead_xchacha20poly1305_ietf_decrypt(p, &got, NULL, sealed + np, len - np,
                                                         token_h, 32, sealed, key);
    sodium_memzero(key, sizeof(key));
    if (bad) {
        lethe_free(p);
        return store_fail(s, LETHE_ERR_STORE, "the request's selector does not open (altered, "
                                              "or sealed by another store)");
    }
    p[got] = 0;
    *plain = p;
    *n = (size_t)got;
    return LETHE_OK;
}

/* ------------------------------------------------------------------ rows */

static const char info_cols[] =
    "id, action, by_kind, status, filed_at, decided_at, decided_by, note, photos, faces, "
    "templates, receipt_hash, token_h, sealed";

static void put_text(char *dst, size_t n, const unsigned char *v)
{
    snprintf(dst, n, "%s", v ? (const char *)v : "");
}

/* A row selected with info_cols into *info. */
static void row_info(sqlite3_stmt *st, lethe_request_info *info)
{
    memset(info, 0, sizeof(*info));
    info->number = sqlite3_column_int64(st, 0);
    info->action = !strcmp((const char *)sqlite3_column_text(st, 1), "optout");
    info->by = -1;
    for (int k = 0; k < LETHE_REQUEST_KINDS; k++)
        if (!strcmp((const char *)sqlite3_column_text(st, 2), by_names[k]))
            info->by = k;
    put_text(info->status, sizeof(info->status), sqlite3_column_text(st, 3));
    put_text(info->filed_at, sizeof(info->filed_at), sqlite3_column_text(st, 4));
    put_text(info->decided_at, sizeof(info->decided_at), sqlite3_column_text(st, 5));
    put_text(info->decided_by, sizeof(info->decided_by), sqlite3_column_text(st, 6));
    put_text(info->note, sizeof(info->note), sqlite3_column_text(st, 7));
    info->photos = (uint64_t)sqlite3_column_int64(st, 8);
    info->faces = (uint64_t)sqlite3_column_int64(st, 9);
    info->templates = (uint64_t)sqlite3_column_int64(st, 10);
    put_text(info->receipt_hash, sizeof(info->receipt_hash), sqlite3_column_text(st, 11));
}

/* The token hash and the sealed selector of the row st is on. */
static int row_secret(lethe_store *s, sqlite3_stmt *st, uint8_t token_h[32], uint8_t **sealed,
                      size_t *sealed_len)
{
    if (token_h) {
        if (sqlite3_column_bytes(st, 12) != 32)
            return store_fail(s, LETHE_ERR_STORE, "request %lld's token is damaged",
                              (long long)sqlite3_column_int64(st, 0));
        memcpy(token_h, sqlite3_column_blob(st, 12), 32);
    }
    if (sealed) {
        size_t n = (size_t)sqlite3_column_bytes(st, 13);
        *sealed = NULL;
        *sealed_len = 0;
        if (n && sqlite3_column_type(st, 13) == SQLITE_BLOB) {
            if (!(*sealed = lethe_malloc(n)))
                return store_fail(s, LETHE_ERR_NOMEM, "out of memory");
            memcpy(*sealed, sqlite3_column_blob(st, 13), n);
            *sealed_len = n;
        }
    }
    return LETHE_OK;
}

int request_read(lethe_store *s, int64_t number, lethe_request_info *info, uint8_t token_h[32],
                 uint8_t **sealed, size_t *sealed_len)
{
    sqlite3_stmt *st;
    char sql[256];
    int have = requests_table_exists(s, "requests"), rc;
    if (have <= 0)
        return have < 0 ? LETHE_ERR_IO
                        : store_fail(s, LETHE_ERR_NOT_FOUND, "no request %lld", (long long)number);
    snprintf(sql, sizeof(sql), "SELECT %s FROM requests WHERE id = ?", info_cols);
    if ((rc = store_prepare(s, sql, &st)))
        return rc;
    sqlite3_bind_int64(st, 1, number);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        row_info(st, info);
        rc = row_secret(s, st, token_h, sealed, sealed_len);
    } else {
        rc = step == SQLITE_DONE
                 ? store_fail(s, LETHE_ERR_NOT_FOUND, "no request %lld", (long long)number)
                 : store_sqlfail(s, "reading a request");
    }
    sqlite3_finalize(st);
    return rc;
}

/* ------------------------------------------------------------------ file */

/* What a request selects, as the bytes that are sealed. */
typedef struct plain_sel {
    uint8_t b[STORE_TEXT_MAX + 1];
    size_t n;
} plain_sel;

/* A selfie's largest face, by the engine. */
static int selfie_face(lethe_store *s, const lethe_request_spec *q, plain_sel *p)
{
    lethe_analysis a;
    char msg[256];
    if (!q->engine || !q->bytes || !q->len)
        return store_fail(s, LETHE_ERR_ARG, "a request by face needs a descriptor, or a selfie "
                                            "and an engine");
    int rc = lethe_engine_analyze_bytes(q->engine, q->bytes, q->len, NULL, LETHE_LARGEST_FACE,
                                        &a, msg, sizeof(msg));
    if (rc == LETHE_OK)
        memcpy(p->b, a.faces[0].descriptor, LETHE_DESCRIPTOR_DIM * sizeof(float));
    lethe_faces_free(a.faces);
    if (rc)
        return store_fail(s, rc, "the selfie: %s", msg);
    p->n = LETHE_DESCRIPTOR_DIM * sizeof(float);
    return LETHE_OK;
}

static int spec_plain(lethe_store *s, const lethe_request_spec *q, plain_sel *p)
{
    int rc;
    memset(p, 0, sizeof(*p));
    if (!q || (q->action != LETHE_REQUEST_ERASE && q->action != LETHE_REQUEST_OPTOUT))
        return store_fail(s, LETHE_ERR_ARG, "a request is an erasure or an opt-out");
    if (q->by == LETHE_REQUEST_BY_FILE) {
        if (!q->bytes || !q->len)
            return store_fail(s, LETHE_ERR_ARG, "a request by file needs the file's bytes");
        crypto_hash_sha256(p->b, q->bytes, q->len);
        p->n = 32;
    } else if (q->by == LETHE_REQUEST_BY_FACE && q->face) {
        for (int i = 0; i < LETHE_DESCRIPTOR_DIM; i++)
            if (!isfinite(q->face[i]))
                return store_fail(s, LETHE_ERR_ARG, "the face descriptor has a non-finite "
                                                    "component");
        memcpy(p->b, q->face, LETHE_DESCRIPTOR_DIM * sizeof(float));
        p->n = LETHE_DESCRIPTOR_DIM * sizeof(float);
    } else if (q->by == LETHE_REQUEST_BY_FACE) {
        return selfie_face(s, q, p);
    } else if (q->by >= LETHE_REQUEST_BY_UPLOADER && q->by <= LETHE_REQUEST_BY_PHOTO_ID) {
        if ((rc = store_check_text(s, by_names[q->by], q->value, 0)))
            return rc;
        p->n = strlen(q->value);
        memcpy(p->b, q->value, p->n);
    } else {
        return store_fail(s, LETHE_ERR_ARG, "unknown request kind %d", q->by);
    }
    return LETHE_OK;
}

/* The row and its log entry, in the open transaction. */
static int insert_row(lethe_store *s, const lethe_request_spec *q, const plain_sel *p,
                      const uint8_t token_h[32], const char *actor, int64_t *number)
{
    uint8_t *sealed = NULL;
    size_t slen = 0;
    sqlite3_stmt *st;
    char now[32], detail[128];
    int rc = seal(s, token_h, p->b, p->n, &sealed, &slen);
    if (rc || (rc = store_prepare(s, "INSERT INTO requests(token_h, action, by_kind, status, "
                                     "filed_at, sealed) VALUES (?, ?, ?, 'pending', ?, ?)",
                                  &st))) {
        lethe_free(sealed);
        return rc;
    }
    store_now(now);
    sqlite3_bind_blob(st, 1, token_h, 32, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, request_action_name(q->action), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, by_names[q->by], -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, now, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 5, sealed, (int)slen, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = store_sqlfail(s, "recording the request");
    sqlite3_finalize(st);
    lethe_free(sealed);
    *number = sqlite3_last_insert_rowid(s->db);
    snprintf(detail, sizeof(detail), "{\"request\":%lld,\"action\":\"%s\",\"by\":\"%s\"}",
             (long long)*number, request_action_name(q->action), by_names[q->by]);
    return rc ? rc : store_log_append(s, "request", actor, "", "", 0, detail);
}

/* Take the lock, check room, insert, commit. */
static int file_row(lethe_store *s, const lethe_request_spec *q, const plain_sel *p,
                    const uint8_t token_h[32], const char *actor, int64_t *number)
{
    int rc;
    if ((rc = store_lock(s, "request")))
        return rc;
    if ((rc = store_begin(s)) == LETHE_OK) {
        int64_t pending = -1;
        if ((rc = requests_schema(s)) == LETHE_OK &&
            (pending = store_count(s, "SELECT COUNT(*) FROM requests WHERE status = "
                                      "'pending'")) < 0)
            rc = LETHE_ERR_IO;
        if (rc == LETHE_OK && pending >= LETHE_REQUEST_MAX_PENDING)
            rc = store_fail(s, LETHE_ERR_BUSY, "%lld requests wait for a decision already: "
                            "try again later", (long long)pending);
        if (rc == LETHE_OK)
            rc = insert_row(s, q, p, token_h, actor, number);
        if (rc == LETHE_OK)
            rc = store_commit(s);
        else
            store_rollback(s);
    }
    store_unlock(s);
    return rc;
}

/* Approve at once if the operator's rule says so; a failure is noted. */
static void approve_auto(lethe_store *s, const lethe_request_spec *q, int64_t number)
{
    unsigned mask = 0;
    if (lethe_request_auto_get(s, &mask) != LETHE_OK || !(mask & (1u << q->by)))
        return;
    if (lethe_request_approve(s, number, 0, "auto", NULL) == LETHE_OK)
        return;
    char note[256];
    snprintf(note, sizeof(note), "not approved automatically: %.200s", s->err);
    sqlite3_stmt *st;
    if (store_prepare(s, "UPDATE requests SET note = ? WHERE id = ? AND status = 'pending'",
                      &st) == LETHE_OK) {
        sqlite3_bind_text(st, 1, note, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, number);
        sqlite3_step(st);
        sqlite3_finalize(st);
    }
}

int lethe_request_file(lethe_store *s, const lethe_request_spec *q, const char *actor,
                       char id[LETHE_REQUEST_ID_SIZE], lethe_request_info *info)
{
    plain_sel p;
    uint8_t secret[ID_SECRET], token_h[32];
    int64_t number = 0;
    int rc;
    id[0] = 0;
    if (info)
        memset(info, 0, sizeof(*info));
    if ((rc = store_writable(s)) || (rc = store_check_text(s, "the actor", actor, 1)) ||
        (rc = spec_plain(s, q, &p)))
        goto out;
    randombytes_buf(secret, sizeof(secret));
    store_hash(s, "request-id", secret, sizeof(secret), token_h);
    if ((rc = file_row(s, q, &p, token_h, actor, &number)))
        goto out;
    memcpy(id, ID_PREFIX, sizeof(ID_PREFIX) - 1);
    sodium_bin2base64(id + sizeof(ID_PREFIX) - 1, LETHE_REQUEST_ID_SIZE - (sizeof(ID_PREFIX) - 1),
                      secret, sizeof(secret), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    approve_auto(s, q, number);
    /* filed: the id stays the caller's even if reading it back fails */
    if (info)
        rc = request_read(s, number, info, NULL, NULL, NULL);
out:
    sodium_memzero(&p, sizeof(p));
    sodium_memzero(secret, sizeof(secret));
    return rc;
}

/* ---------------------------------------------------------------- status */

/* The 32 bytes of a request id, or -1 when it is none. */
static int parse_id(const char *id, uint8_t secret[ID_SECRET])
{
    size_t n = 0;
    const char *end = NULL;
    if (!id || strncmp(id, ID_PREFIX, sizeof(ID_PREFIX) - 1) ||
        strlen(id) != sizeof(ID_PREFIX) - 1 + ID_CHARS)
        return -1;
    id += sizeof(ID_PREFIX) - 1;
    if (sodium_base642bin(secret, ID_SECRET, id, ID_CHARS, NULL, &n, &end,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        n != ID_SECRET || end != id + ID_CHARS)
        return -1;
    return 0;
}

/* The row of token hash h: LETHE_OK with *info (and *receipt), or
 * LETHE_ERR_NOT_FOUND. */
static int status_row(lethe_store *s, const uint8_t h[32], lethe_request_info *info,
                      char **receipt)
{
    sqlite3_stmt *st;
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT %s, receipt FROM requests WHERE token_h = ?", info_cols);
    int rc = store_prepare(s, sql, &st);
    if (rc)
        return rc;
    sqlite3_bind_blob(st, 1, h, 32, SQLITE_STATIC);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW && sqlite3_column_bytes(st, 12) == 32 &&
        sodium_memcmp(sqlite3_column_blob(st, 12), h, 32) == 0) {
        row_info(st, info);
        const unsigned char *r = sqlite3_column_text(st, 14);
        if (receipt && r && !(*receipt = lethe_strdup((const char *)r)))
            rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    } else {
        rc = step == SQLITE_ROW || step == SQLITE_DONE
                 ? store_fail(s, LETHE_ERR_NOT_FOUND, "no such request")
                 : store_sqlfail(s, "reading a request");
    }
    sqlite3_finalize(st);
    return rc;
}

int lethe_request_status(lethe_store *s, const char *id, lethe_request_info *info,
                         char **receipt)
{
    uint8_t secret[ID_SECRET], h[32];
    lethe_request_info tmp;
    if (receipt)
        *receipt = NULL;
    if (!info)
        info = &tmp;
    memset(info, 0, sizeof(*info));
    int have = requests_table_exists(s, "requests");
    if (have < 0)
        return LETHE_ERR_IO;
    /* malformed, unknown and wrong ids get the same answer */
    if (!have || parse_id(id, secret) < 0)
        return store_fail(s, LETHE_ERR_NOT_FOUND, "no such request");
    store_hash(s, "request-id", secret, sizeof(secret), h);
    sodium_memzero(secret, sizeof(secret));
    int rc = status_row(s, h, info, receipt);
    if (rc && receipt) {
        lethe_free(*receipt);
        *receipt = NULL;
    }
    return rc;
}

/* ------------------------------------------------------------------ list */

/* What a pending request names, for its approver. */
static int selector_text(lethe_store *s, const lethe_request_info *info, const uint8_t h[32],
                         const uint8_t *sealed, size_t len, char **out)
{
    uint8_t *p = NULL;
    size_t n = 0;
    int rc = request_unseal(s, h, sealed, len, &p, &n);
    if (rc)
        return rc;
    strbuf b;
    sb_init(&b);
    if (info->by == LETHE_REQUEST_BY_FILE && n == 32) {
        char hex[65];
        sodium_bin2hex(hex, sizeof(hex), p, 32);
        sb_printf(&b, "the photo with SHA-256 %s", hex);
    } else if (info->by == LETHE_REQUEST_BY_FACE) {
        sb_puts(&b, "a face (the descriptor of a selfie's largest face)");
    } else {
        sb_putn(&b, (const char *)p, n);
    }
    sodium_memzero(p, n);
    lethe_free(p);
    if (!(*out = sb_finish(&b)))
        return store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    return LETHE_OK;
}

void lethe_requests_free(lethe_request_info *list, size_t count)
{
    if (!list)
        return;
    for (size_t i = 0; i < count; i++)
        lethe_free(list[i].selector);
    lethe_free(list);
}

/* One listed row into v[*n]. */
static int list_row(lethe_store *s, sqlite3_stmt *st, lethe_request_info *v)
{
    uint8_t h[32], *sealed = NULL;
    size_t len = 0;
    row_info(st, v);
    if (strcmp(v->status, "pending"))
        return LETHE_OK;
    int rc = row_secret(s, st, h, &sealed, &len);
    if (rc == LETHE_OK)
        rc = selector_text(s, v, h, sealed, len, &v->selector);
    lethe_free(sealed);
    return rc;
}

int lethe_request_list(lethe_store *s, int pending_only, lethe_request_info **list,
                       size_t *count)
{
    sqlite3_stmt *st;
    char sql[256];
    size_t cap = 0;
    int step = SQLITE_DONE, rc, have = requests_table_exists(s, "requests");
    *list = NULL;
    *count = 0;
    if (have <= 0)
        return have < 0 ? LETHE_ERR_IO : LETHE_OK;
    snprintf(sql, sizeof(sql), "SELECT %s FROM requests %s ORDER BY id", info_cols,
             pending_only ? "WHERE status = 'pending'" : "");
    if ((rc = store_prepare(s, sql, &st)))
        return rc;
    while (rc == LETHE_OK && (step = sqlite3_step(st)) == SQLITE_ROW) {
        if (*count == cap) {
            size_t nc = cap ? 2 * cap : 16;
            lethe_request_info *t = lethe_realloc(*list, nc * sizeof(*t));
            if (!t) {
                rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
                break;
            }
            *list = t;
            cap = nc;
        }
        rc = list_row(s, st, &(*list)[(*count)++]);
    }
    if (rc == LETHE_OK && step != SQLITE_DONE)
        rc = store_sqlfail(s, "listing the requests");
    sqlite3_finalize(st);
    if (rc) {
        lethe_requests_free(*list, *count);
        *list = NULL;
        *count = 0;
    }
    return rc;
}
