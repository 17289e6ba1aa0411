/*
 * apikey.c: API keys and roles (lethe.h, section 7; apikey.h for the
 * table). A key is "lk_" ID "_" SECRET: the id says which row to check, the
 * secret is 32 random bytes in base64url. Only a verifier is stored: the
 * secret keyed-hashed with the keyring's salt. A slow password hash
 * (Argon2) would add nothing for a 256-bit random secret, which no one can
 * guess, and would cost every request tens of milliseconds of CPU; the key
 * of the hash keeps a stolen catalog or backup from checking a key at all.
 *
 * Every change is an entry of the audit log whose detail carries a hash of
 * the row as written, so that lethe_log_verify can tell a key the log made
 * from one added or altered in the catalog by hand (apikey_verify_log).
 */
#include "access/apikey.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/share.h"
#include "store/store.h"
#include "util/strbuf.h"
#include "util/util.h"

#define SECRET_BYTES 32
#define SECRET_CHARS 43 /* base64url of 32 bytes, no padding */
#define KEY_PREFIX "lk_"

const char apikey_schema_sql[] =
    "CREATE TABLE api_keys(\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  name TEXT NOT NULL,\n"
    "  roles INTEGER NOT NULL,\n"
    "  rate_per_minute INTEGER NOT NULL,\n"
    "  daily_quota INTEGER NOT NULL,\n"
    "  verifier BLOB NOT NULL,\n"
    "  created_at TEXT NOT NULL,\n"
    "  add_seq INTEGER NOT NULL,\n"
    "  revoked_at TEXT,\n"
    "  revoke_seq INTEGER);\n";

static const char *const role_names[] = {"admin", "ingest", "search", "audit", "erasure"};
#define NROLES 5

static const char key_cols[] =
    "id, name, roles, rate_per_minute, daily_quota, created_at, revoked_at";

/* ------------------------------------------------------------- roles */

int lethe_roles_parse(const char *text, unsigned *roles, char *msg, size_t msg_len)
{
    unsigned r = 0;
    const char *p = text ? text : "";
    *roles = 0;
    for (;;) {
        while (*p == ' ')
            p++;
        size_t n = strcspn(p, ",");
        size_t m = n;
        while (m && p[m - 1] == ' ')
            m--;
        int k;
        for (k = 0; k < NROLES; k++)
            if (strlen(role_names[k]) == m && !strncmp(p, role_names[k], m))
                break;
        if (k == NROLES)
            return lethe_fail(msg, msg_len, LETHE_ERR_ARG,
                              m ? "unknown role '%.*s' (admin, ingest, search, audit, erasure)"
                                : "%.*sno role given (admin, ingest, search, audit, erasure)",
                              (int)(m > 64 ? 64 : m), p);
        r |= 1u << k;
        if (!p[n])
            break;
        p += n + 1;
    }
    *roles = r;
    return LETHE_OK;
}

void lethe_roles_format(unsigned roles, char out[LETHE_ROLES_TEXT])
{
    size_t at = 0;
    out[0] = 0;
    for (int k = 0; k < NROLES; k++)
        if (roles & (1u << k))
            at += (size_t)snprintf(out + at, LETHE_ROLES_TEXT - at, "%s%s", at ? "," : "",
                                   role_names[k]);
}

/* The roles as a JSON array of names. */
static void put_roles(strbuf *b, unsigned roles)
{
    int first = 1;
    sb_putc(b, '[');
    for (int k = 0; k < NROLES; k++)
        if (roles & (1u << k)) {
            sb_printf(b, "%s\"%s\"", first ? "" : ",", role_names[k]);
            first = 0;
        }
    sb_putc(b, ']');
}

void lethe_key_options_init(lethe_key_options *o)
{
    memset(o, 0, sizeof(*o));
}

void lethe_keys_free(lethe_key_info *keys)
{
    lethe_free(keys);
}

/* ------------------------------------------------------------ schema */

int apikey_table_exists(lethe_store *s)
{
    int64_t n = store_count(s, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND "
                               "name = 'api_keys'");
    return n < 0 ? -1 : n > 0;
}

int apikey_schema(lethe_store *s)
{
    int have = apikey_table_exists(s);
    if (have < 0)
        return store_status(s);
    return have ? LETHE_OK : store_exec(s, apikey_schema_sql);
}

/* ------------------------------------------------------------ hashes */

/* The verifier of (id, secret): keyed with the keyring's salt. */
static void verifier_of(const lethe_store *s, int64_t id, const uint8_t secret[SECRET_BYTES],
                        uint8_t out[32])
{
    uint8_t buf[8 + SECRET_BYTES];
    uint64_t u = (uint64_t)id;
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)(u >> (8 * i));
    memcpy(buf + 8, secret, SECRET_BYTES);
    store_hash(s, "api-key", buf, sizeof(buf), out);
    sodium_memzero(buf, sizeof(buf));
}

static void put_field(crypto_generichash_state *h, const void *p, size_t n)
{
    uint64_t len = n;
    crypto_generichash_update(h, (const uint8_t *)&len, sizeof(len));
    crypto_generichash_update(h, p, n);
}

void apikey_record_hash(const lethe_key_info *k, const uint8_t *verifier, size_t vlen,
                        char hex[65])
{
    crypto_generichash_state h;
    uint8_t out[32];
    char num[96];
    crypto_generichash_init(&h, NULL, 0, sizeof(out));
    put_field(&h, "lethe-api-key-v1", 16);
    snprintf(num, sizeof(num), "%lld %u %u %u", (long long)k->id, k->roles, k->rate_per_minute,
             k->daily_quota);
    put_field(&h, num, strlen(num));
    put_field(&h, k->name, strlen(k->name));
    put_field(&h, verifier, vlen);
    put_field(&h, k->created_at, strlen(k->created_at));
    crypto_generichash_final(&h, out, sizeof(out));
    sodium_bin2hex(hex, 65, out, sizeof(out));
}

/* ------------------------------------------------------------- rows */

/* A row selected with key_cols into *k. */
static void row_info(sqlite3_stmt *st, lethe_key_info *k)
{
    memset(k, 0, sizeof(*k));
    k->id = sqlite3_column_int64(st, 0);
    snprintf(k->name, sizeof(k->name), "%s", (const char *)sqlite3_column_text(st, 1));
    k->roles = (unsigned)sqlite3_column_int64(st, 2);
    k->rate_per_minute = (uint32_t)sqlite3_column_int64(st, 3);
    k->daily_quota = (uint32_t)sqlite3_column_int64(st, 4);
    snprintf(k->created_at, sizeof(k->created_at), "%s",
             (const char *)sqlite3_column_text(st, 5));
    if (sqlite3_column_type(st, 6) == SQLITE_TEXT)
        snprintf(k->revoked_at, sizeof(k->revoked_at), "%s",
                 (const char *)sqlite3_column_text(st, 6));
}

int lethe_key_list(lethe_store *s, lethe_key_info **keys, size_t *count)
{
    sqlite3_stmt *st;
    size_t n = 0, cap = 0;
    lethe_key_info *v = NULL;
    char sql[160];
    int rc, step, have = apikey_table_exists(s);
    *keys = NULL;
    *count = 0;
    if (have <= 0)
        return have < 0 ? store_status(s) : LETHE_OK;
    snprintf(sql, sizeof(sql), "SELECT %s FROM api_keys ORDER BY id", key_cols);
    if ((rc = store_prepare(s, sql, &st)))
        return rc;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            size_t nc = cap ? 2 * cap : 16;
            lethe_key_info *t = lethe_realloc(v, nc * sizeof(*t));
            if (!t) {
                rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
                break;
            }
            v = t;
            cap = nc;
        }
        row_info(st, &v[n++]);
    }
    if (rc == LETHE_OK && step != SQLITE_DONE)
        rc = store_sqlfail(s, "reading the API keys");
    sqlite3_finalize(st);
    if (rc) {
        lethe_free(v);
        return rc;
    }
    *keys = v;
    *count = n;
    return LETHE_OK;
}

/* ------------------------------------------------------------- add */

/* The options of a new key, checked. */
static int check_options(lethe_store *s, const lethe_key_options *o)
{
    int rc;
    if (!o)
        return store_fail(s, LETHE_ERR_ARG, "no key options");
    if ((rc = store_check_text(s, "the key's name", o->name, 0)))
        return rc;
    if (strlen(o->name) > LETHE_KEY_NAME_MAX)
        return store_fail(s, LETHE_ERR_ARG, "the key's name is %zu bytes, more than %d",
                          strlen(o->name), LETHE_KEY_NAME_MAX);
    if (!o->roles)
        return store_fail(s, LETHE_ERR_ARG, "a key needs at least one role");
    if (o->roles & ~LETHE_ROLES_ALL)
        return store_fail(s, LETHE_ERR_ARG, "unknown role bits 0x%x in the key's roles",
                          o->roles & ~LETHE_ROLES_ALL);
    return store_check_text(s, "the actor", o->actor, 1);
}

/* The last log entry's number (just appended). */
static int64_t last_seq(lethe_store *s)
{
    return store_count(s, "SELECT MAX(seq) FROM log");
}

/* The log entry of a new key, then its row (inside the transaction). */
static int add_row(lethe_store *s, const lethe_key_info *k, const uint8_t verifier[32],
                   const char *purpose, const char *actor)
{
    char rec[65];
    strbuf d;
    sqlite3_stmt *st;
    apikey_record_hash(k, verifier, 32, rec);
    sb_init(&d);
    sb_printf(&d, "{\"key\":%lld,\"name\":", (long long)k->id);
    sb_json_str(&d, k->name);
    sb_puts(&d, ",\"roles\":");
    put_roles(&d, k->roles);
    sb_printf(&d, ",\"rate_per_minute\":%u,\"daily_quota\":%u,\"record\":\"%s\"",
              k->rate_per_minute, k->daily_quota, rec);
    /* the purpose lives in this entry only: the hash chain keeps it as made */
    if (purpose && *purpose) {
        sb_puts(&d, ",\"purpose\":");
        sb_json_str(&d, purpose);
    }
    sb_putc(&d, '}');
    char *detail = sb_finish(&d);
    if (!detail)
        return store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    int rc = store_log_append(s, "key-add", actor, "", "", 0, detail);
    lethe_free(detail);
    int64_t seq = rc ? -1 : last_seq(s);
    if (rc || seq < 0)
        return rc ? rc : store_status(s);
    if ((rc = store_prepare(s, "INSERT INTO api_keys(id, name, roles, rate_per_minute, "
                               "daily_quota, verifier, created_at, add_seq) VALUES "
                               "(?, ?, ?, ?, ?, ?, ?, ?)", &st)))
        return rc;
    sqlite3_bind_int64(st, 1, k->id);
    sqlite3_bind_text(st, 2, k->name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, k->roles);
    sqlite3_bind_int64(st, 4, k->rate_per_minute);
    sqlite3_bind_int64(st, 5, k->daily_quota);
    sqlite3_bind_blob(st, 6, verifier, 32, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, k->created_at, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 8, seq);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = store_sqlfail(s, "recording the API key");
    sqlite3_finalize(st);
    return rc;
}

/* "lk_ID_SECRET" into key. */
static void key_text(int64_t id, const uint8_t secret[SECRET_BYTES], char key[LETHE_KEY_SIZE])
{
    char b64[SECRET_CHARS + 2];
    sodium_bin2base64(b64, sizeof(b64), secret, SECRET_BYTES,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    snprintf(key, LETHE_KEY_SIZE, KEY_PREFIX "%lld_%s", (long long)id, b64);
    sodium_memzero(b64, sizeof(b64));
}

int lethe_key_add(lethe_store *s, const lethe_key_options *o, lethe_key_info *info,
                  char key[LETHE_KEY_SIZE])
{
    return lethe_key_add_with_purpose(s, o, NULL, info, key);
}

int lethe_key_add_with_purpose(lethe_store *s, const lethe_key_options *o, const char *purpose,
                               lethe_key_info *info, char key[LETHE_KEY_SIZE])
{
    lethe_key_info k;
    uint8_t secret[SECRET_BYTES], verifier[32];
    int rc;
    key[0] = 0;
    if ((rc = store_writable(s)) || (rc = check_options(s, o)) ||
        (rc = store_check_text(s, "the key's purpose", purpose, 1)))
        return rc;
    if (purpose && strlen(purpose) > LETHE_KEY_PURPOSE_MAX)
        return store_fail(s, LETHE_ERR_ARG, "the key's purpose is %zu bytes, more than %d",
                          strlen(purpose), LETHE_KEY_PURPOSE_MAX);
    if ((rc = store_lock(s, "key add")))
        return rc;
    if ((rc = store_begin(s)))
        goto out;
    memset(&k, 0, sizeof(k));
    k.id = store_count(s, "SELECT COALESCE(MAX(id), 0) + 1 FROM api_keys");
    if (k.id < 0) {
        rc = store_status(s);
        store_rollback(s);
        goto out;
    }
    snprintf(k.name, sizeof(k.name), "%s", o->name);
    k.roles = o->roles;
    k.rate_per_minute = o->rate_per_minute;
    k.daily_quota = o->daily_quota;
    store_now(k.created_at);
    randombytes_buf(secret, sizeof(secret));
    verifier_of(s, k.id, secret, verifier);
    if ((rc = add_row(s, &k, verifier, purpose, o->actor)) == LETHE_OK)
        rc = store_commit(s);
    else
        store_rollback(s);
    if (rc == LETHE_OK) {
        key_text(k.id, secret, key);
        if (info)
            *info = k;
    }
out:
    sodium_memzero(secret, sizeof(secret));
    store_unlock(s);
    return rc;
}

/* ----------------------------------------------------------- revoke */

/* Log the revocation of key k and mark its row (inside the transaction). */
static int revoke_row(lethe_store *s, const lethe_key_info *k, const char *actor,
                      const char *reason)
{
    strbuf d;
    sqlite3_stmt *st;
    char now[32];
    sb_init(&d);
    sb_printf(&d, "{\"key\":%lld,\"name\":", (long long)k->id);
    sb_json_str(&d, k->name);
    if (reason) {
        sb_puts(&d, ",\"reason\":");
        sb_json_str(&d, reason);
    }
    sb_putc(&d, '}');
    char *detail = sb_finish(&d);
    if (!detail)
        return store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    int rc = store_log_append(s, "key-revoke", actor, "", "", 0, detail);
    lethe_free(detail);
    int64_t seq = rc ? -1 : last_seq(s);
    if (rc || seq < 0)
        return rc ? rc : store_status(s);
    store_now(now);
    if ((rc = store_prepare(s, "UPDATE api_keys SET revoked_at = ?, revoke_seq = ? WHERE id = ?",
                            &st)))
        return rc;
    sqlite3_bind_text(st, 1, now, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, seq);
    sqlite3_bind_int64(st, 3, k->id);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = store_sqlfail(s, "revoking the API key");
    sqlite3_finalize(st);
    return rc;
}

/* Key id's row into *k: LETHE_OK, LETHE_ERR_NOT_FOUND (message set). */
static int read_key(lethe_store *s, int64_t id, lethe_key_info *k, uint8_t verifier[32])
{
    sqlite3_stmt *st;
    char sql[192];
    snprintf(sql, sizeof(sql), "SELECT %s, verifier FROM api_keys WHERE id = ?", key_cols);
    int rc = store_prepare(s, sql, &st), step;
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    if ((step = sqlite3_step(st)) == SQLITE_ROW) {
        row_info(st, k);
        const void *v = sqlite3_column_blob(st, 7);
        if (!v || sqlite3_column_bytes(st, 7) != 32)
            rc = store_fail(s, LETHE_ERR_STORE, "API key %lld: its verifier is damaged",
                            (long long)id);
        else if (verifier)
            memcpy(verifier, v, 32);
    } else {
        rc = step == SQLITE_DONE
                 ? store_fail(s, LETHE_ERR_NOT_FOUND, "no API key %lld", (long long)id)
                 : store_sqlfail(s, "reading the API key");
    }
    sqlite3_finalize(st);
    return rc;
}

int lethe_key_revoke(lethe_store *s, int64_t id, const char *actor)
{
    lethe_key_info k;
    int rc, have;
    if ((rc = store_writable(s)) || (rc = store_check_text(s, "the actor", actor, 1)))
        return rc;
    if ((have = apikey_table_exists(s)) <= 0)
        return have < 0 ? store_status(s)
                        : store_fail(s, LETHE_ERR_NOT_FOUND, "no API key %lld", (long long)id);
    if ((rc = store_lock(s, "key revoke")))
        return rc;
    if ((rc = store_begin(s)))
        goto out;
    if ((rc = read_key(s, id, &k, NULL)) == LETHE_OK && k.revoked_at[0])
        rc = store_fail(s, LETHE_ERR_ARG, "API key %lld was revoked already, at %s",
                        (long long)id, k.revoked_at);
    if (rc == LETHE_OK)
        rc = revoke_row(s, &k, actor, NULL);
    if (rc == LETHE_OK)
        rc = store_commit(s);
    else
        store_rollback(s);
out:
    store_unlock(s);
    return rc;
}

int apikey_revoke_all(lethe_store *s, const char *actor, const char *reason, uint64_t *count)
{
    lethe_key_info *keys = NULL;
    size_t n = 0;
    uint64_t done = 0;
    int rc = lethe_key_list(s, &keys, &n);
    for (size_t i = 0; rc == LETHE_OK && i < n; i++)
        if (!keys[i].revoked_at[0] && (rc = revoke_row(s, &keys[i], actor, reason)) == LETHE_OK)
            done++;
    lethe_keys_free(keys);
    if (count)
        *count = done;
    return rc;
}

/* ---------------------------------------------------------- purpose */

int lethe_key_purpose(lethe_store *s, int64_t id, char purpose[LETHE_KEY_PURPOSE_MAX + 1])
{
    sqlite3_stmt *st;
    int rc, step, have = apikey_table_exists(s);
    purpose[0] = 0;
    if (have <= 0)
        return have < 0 ? LETHE_ERR_IO
                        : store_fail(s, LETHE_ERR_NOT_FOUND, "no API key %lld", (long long)id);
    /* from the entry that made the key (apikey_verify_log ties the two) */
    if ((rc = store_prepare(s, "SELECT json_extract(l.detail, '$.purpose') FROM api_keys k "
                               "LEFT JOIN log l ON l.seq = k.add_seq AND l.kind = 'key-add' "
                               "WHERE k.id = ?", &st)))
        return rc;
    sqlite3_bind_int64(st, 1, id);
    if ((step = sqlite3_step(st)) == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        if (t && strlen((const char *)t) > LETHE_KEY_PURPOSE_MAX)
            rc = store_fail(s, LETHE_ERR_STORE, "API key %lld: its purpose is damaged",
                            (long long)id);
        else
            snprintf(purpose, LETHE_KEY_PURPOSE_MAX + 1, "%s", t ? (const char *)t : "");
    } else {
        rc = step == SQLITE_DONE
                 ? store_fail(s, LETHE_ERR_NOT_FOUND, "no API key %lld", (long long)id)
                 : store_sqlfail(s, "reading the API key's purpose");
    }
    sqlite3_finalize(st);
    return rc;
}

/* ----------------------------------------------------- authenticate */

/* "lk_ID_SECRET": 1 with *id and secret, 0 when key is not of that form. */
static int parse_key(const char *key, size_t len, int64_t *id, uint8_t secret[SECRET_BYTES])
{
    size_t p = strlen(KEY_PREFIX), digits = 0, got = 0;
    uint64_t v = 0;
    if (len >= LETHE_KEY_SIZE || len < p || memcmp(key, KEY_PREFIX, p) != 0)
        return 0;
    while (p < len && key[p] >= '0' && key[p] <= '9' && digits < 18) {
        v = v * 10 + (uint64_t)(key[p++] - '0');
        digits++;
    }
    if (!digits || v == 0 || key[p - digits] == '0' || p >= len || key[p] != '_')
        return 0;
    p++;
    if (len - p != SECRET_CHARS)
        return 0;
    for (size_t i = p; i < len; i++)
        if (!key[i])
            return 0;
    if (sodium_base642bin(secret, SECRET_BYTES, key + p, SECRET_CHARS, NULL, &got, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        got != SECRET_BYTES)
        return 0;
    *id = (int64_t)v;
    return 1;
}

int lethe_key_authenticate(lethe_store *s, const char *key, size_t len, lethe_key_info *info)
{
    lethe_key_info k;
    uint8_t secret[SECRET_BYTES], want[32], got[32];
    int64_t id = 0;
    int rc;
    if (s->share && share_is_owner(s)) /* from any thread: on a view (share.c) */
        return share_key_authenticate(s, key, len, info);
    if (!key || !parse_key(key, len, &id, secret))
        return store_fail(s, LETHE_ERR_DENIED, "not a lethe API key (lk_ID_SECRET)");
    memset(want, 0, sizeof(want));
    int have = apikey_table_exists(s);
    rc = have < 0 ? store_status(s) : have ? read_key(s, id, &k, want) : LETHE_ERR_NOT_FOUND;
    /* the same work whether the key exists or not */
    verifier_of(s, id, secret, got);
    int match = sodium_memcmp(want, got, sizeof(got)) == 0;
    sodium_memzero(secret, sizeof(secret));
    sodium_memzero(got, sizeof(got));
    if (rc != LETHE_OK && rc != LETHE_ERR_NOT_FOUND)
        return rc;
    if (rc == LETHE_ERR_NOT_FOUND || !match)
        return store_fail(s, LETHE_ERR_DENIED, "the key is not valid");
    if (k.revoked_at[0])
        return store_fail(s, LETHE_ERR_DENIED, "key %lld was revoked at %s", (long long)id,
                          k.revoked_at);
    if (info)
        *info = k;
    return LETHE_OK;
}
