/*
 * apikey_verify.c: the audit log's check of the API keys (apikey.h), run by
 * lethe_log_verify. The log is a hash chain, so its entries cannot be
 * changed unseen; this ties the catalog's key rows to them. A key that was
 * inserted into the catalog by hand, given more roles or another verifier,
 * brought back after its revocation, or deleted, fails the check.
 */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "access/apikey.h"
#include "store/store.h"

/* Every key row against the entries that made and revoked it. */
static const char rows_sql[] =
    "SELECT k.id, k.name, k.roles, k.rate_per_minute, k.daily_quota, k.created_at, "
    "  k.revoked_at, k.verifier, k.add_seq, k.revoke_seq, a.kind, "
    "  json_extract(a.detail, '$.key'), json_extract(a.detail, '$.record'), r.kind, "
    "  json_extract(r.detail, '$.key') "
    "FROM api_keys k LEFT JOIN log a ON a.seq = k.add_seq "
    "LEFT JOIN log r ON r.seq = k.revoke_seq ORDER BY k.id";

/* Every key entry of the log against the rows (the first that has none). */
static const char entries_sql[] =
    "SELECT l.seq, l.kind, json_extract(l.detail, '$.key') FROM log l WHERE "
    "(l.kind = 'key-add' AND NOT EXISTS (SELECT 1 FROM api_keys k WHERE "
    "  k.id = json_extract(l.detail, '$.key') AND k.add_seq = l.seq)) OR "
    "(l.kind = 'key-revoke' AND NOT EXISTS (SELECT 1 FROM api_keys k WHERE "
    "  k.id = json_extract(l.detail, '$.key') AND k.revoke_seq = l.seq)) "
    "ORDER BY l.seq LIMIT 1";

static int text_is(sqlite3_stmt *st, int col, const char *want)
{
    const char *t = (const char *)sqlite3_column_text(st, col);
    return t && !strcmp(t, want);
}

/* One row (rows_sql): LETHE_OK, or LETHE_ERR_FORMAT with the message. */
static int check_row(lethe_store *s, sqlite3_stmt *st, uint64_t *first_bad)
{
    lethe_key_info k;
    char rec[65];
    memset(&k, 0, sizeof(k));
    k.id = sqlite3_column_int64(st, 0);
    snprintf(k.name, sizeof(k.name), "%s", (const char *)sqlite3_column_text(st, 1));
    k.roles = (unsigned)sqlite3_column_int64(st, 2);
    k.rate_per_minute = (uint32_t)sqlite3_column_int64(st, 3);
    k.daily_quota = (uint32_t)sqlite3_column_int64(st, 4);
    snprintf(k.created_at, sizeof(k.created_at), "%s", (const char *)sqlite3_column_text(st, 5));
    int revoked = sqlite3_column_type(st, 6) != SQLITE_NULL;
    apikey_record_hash(&k, sqlite3_column_blob(st, 7), (size_t)sqlite3_column_bytes(st, 7), rec);
    int64_t add_seq = sqlite3_column_int64(st, 8), revoke_seq = sqlite3_column_int64(st, 9);
    if (!text_is(st, 10, "key-add") || sqlite3_column_int64(st, 11) != k.id ||
        !text_is(st, 12, rec)) {
        *first_bad = (uint64_t)add_seq;
        return store_fail(s, LETHE_ERR_FORMAT,
                          "API key %lld in the catalog is not the key log entry %lld made "
                          "(the catalog's keys were edited)", (long long)k.id,
                          (long long)add_seq);
    }
    if (revoked && (!text_is(st, 13, "key-revoke") || sqlite3_column_int64(st, 14) != k.id)) {
        *first_bad = (uint64_t)revoke_seq;
        return store_fail(s, LETHE_ERR_FORMAT,
                          "API key %lld is marked revoked by log entry %lld, which does not "
                          "revoke it (the catalog's keys were edited)", (long long)k.id,
                          (long long)revoke_seq);
    }
    return LETHE_OK;
}

static int check_rows(lethe_store *s, uint64_t *first_bad)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s, rows_sql, &st), step;
    if (rc)
        return rc;
    while ((step = sqlite3_step(st)) == SQLITE_ROW)
        if ((rc = check_row(s, st, first_bad)))
            break;
    if (rc == LETHE_OK && step != SQLITE_DONE)
        rc = store_sqlfail(s, "checking the API keys");
    sqlite3_finalize(st);
    return rc;
}

static int check_entries(lethe_store *s, int have_table, uint64_t *first_bad)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s, have_table ? entries_sql
                                         : "SELECT seq, kind, json_extract(detail, '$.key') "
                                           "FROM log WHERE kind IN ('key-add', 'key-revoke') "
                                           "ORDER BY seq LIMIT 1", &st);
    if (rc)
        return rc;
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        int64_t seq = sqlite3_column_int64(st, 0), id = sqlite3_column_int64(st, 2);
        int add = text_is(st, 1, "key-add");
        *first_bad = (uint64_t)seq;
        rc = store_fail(s, LETHE_ERR_FORMAT,
                        add ? "log entry %lld made API key %lld, which the catalog does not "
                              "hold as made there (the catalog's keys were edited)"
                            : "log entry %lld revoked API key %lld, which the catalog does not "
                              "hold as revoked there (the catalog's keys were edited)",
                        (long long)seq, (long long)id);
    } else if (step != SQLITE_DONE) {
        rc = store_sqlfail(s, "checking the API keys");
    }
    sqlite3_finalize(st);
    return rc;
}

int apikey_verify_log(lethe_store *s, uint64_t *first_bad)
{
    int have = apikey_table_exists(s), rc = LETHE_OK;
    if (have < 0)
        return store_status(s);
    if (have)
        rc = check_rows(s, first_bad);
    if (rc == LETHE_OK)
        rc = check_entries(s, have, first_bad);
    return rc;
}
