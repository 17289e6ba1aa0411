/*
 * usage.c: each API key's requests of the day, kept in the catalog so that
 * a daily quota survives a restart of the server (lethe.h, section 7,
 * lethe_key_usage_add). One row a key: the UTC day and the requests
 * admitted that day. The counts are no personal data and no part of the
 * store's content (not in the digest, not logged): they only meter keys.
 */
#include <sqlite3.h>

#include "access/apikey.h"
#include "store/store.h"

static const char usage_schema_sql[] = "CREATE TABLE IF NOT EXISTS api_key_usage(\n"
                                       "  key_id INTEGER PRIMARY KEY,\n"
                                       "  day INTEGER NOT NULL,\n"
                                       "  used INTEGER NOT NULL);\n";

/* The key's count for day (0 when another day or none) into *used. */
static int usage_read(lethe_store *s, int64_t id, int64_t day, uint32_t *used)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s, "SELECT day, used FROM api_key_usage WHERE key_id = ?", &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    int step = sqlite3_step(st);
    *used = 0;
    if (step == SQLITE_ROW && sqlite3_column_int64(st, 0) == day) {
        int64_t n = sqlite3_column_int64(st, 1);
        *used = n < 0 ? 0 : n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
    } else if (step != SQLITE_ROW && step != SQLITE_DONE) {
        rc = store_sqlfail(s, "reading a key's usage");
    }
    sqlite3_finalize(st);
    return rc;
}

static int usage_write(lethe_store *s, int64_t id, int64_t day, uint32_t used)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s, "INSERT OR REPLACE INTO api_key_usage(key_id, day, used) "
                              "VALUES (?, ?, ?)", &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, day);
    sqlite3_bind_int64(st, 3, used);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = store_sqlfail(s, "recording a key's usage");
    sqlite3_finalize(st);
    return rc;
}

int lethe_key_usage_add(lethe_store *s, int64_t id, int64_t day, uint32_t add, uint32_t *used)
{
    uint32_t n = 0;
    int rc;
    if (used)
        *used = 0;
    if (id <= 0 || day < 0)
        return store_fail(s, LETHE_ERR_ARG, "a key's usage needs a key id and a day");
    if ((rc = store_writable(s)) || (rc = store_lock(s, "key usage")))
        return rc;
    if ((rc = store_begin(s)))
        goto out;
    if ((rc = store_exec(s, usage_schema_sql)) == LETHE_OK &&
        (rc = usage_read(s, id, day, &n)) == LETHE_OK && add) {
        n = add > UINT32_MAX - n ? UINT32_MAX : n + add;
        rc = usage_write(s, id, day, n);
    }
    if (rc == LETHE_OK)
        rc = store_commit(s);
    else
        store_rollback(s);
    if (rc == LETHE_OK && used)
        *used = n;
out:
    store_unlock(s);
    return rc;
}
