/*
 * hits.c: how often searches returned each photo, by stated purpose (what
 * a data subject may ask: "how many searches returned my photos, and for
 * what?", never who searched). lethe_search calls hits_record inside the
 * transaction that logs the search, so a search is counted if and only if
 * it is logged. The counts hang on the photo's row (ON DELETE CASCADE):
 * an erasure takes them with the photo.
 */
#include <stdio.h>
#include <string.h>

#include "requests/requests.h"
#include "store/store.h"
#include "util/util.h"

static const char hits_schema_sql[] =
    "CREATE TABLE IF NOT EXISTS search_hits(\n"
    "  photo INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,\n"
    "  purpose TEXT NOT NULL,\n"
    "  searches INTEGER NOT NULL,\n"
    "  last TEXT NOT NULL,\n"
    "  PRIMARY KEY(photo, purpose)) WITHOUT ROWID;\n"
    "CREATE TEMP TABLE IF NOT EXISTS hit_photos(id INTEGER PRIMARY KEY);\n"
    "DELETE FROM temp.hit_photos;\n";

int requests_table_exists(lethe_store *s, const char *name)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s, "SELECT COUNT(*) FROM main.sqlite_master WHERE type = 'table' "
                              "AND name = ?", &st);
    if (rc)
        return -1;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
    if (n < 0)
        store_sqlfail(s, "reading the catalog's tables");
    sqlite3_finalize(st);
    return n < 0 ? -1 : n > 0;
}

int hits_record(lethe_store *s, const char *purpose, const lethe_match *m, size_t n)
{
    sqlite3_stmt *add = NULL, *up = NULL;
    char now[32];
    int rc;
    if (n == 0)
        return LETHE_OK;
    /* the distinct photos first: a photo with two faces in the answer was
     * returned once */
    if ((rc = store_exec(s, hits_schema_sql)) ||
        (rc = store_prepare(s, "INSERT OR IGNORE INTO temp.hit_photos(id) SELECT photo FROM "
                               "faces WHERE id = ?", &add)))
        return rc;
    for (size_t i = 0; i < n && rc == LETHE_OK; i++) {
        sqlite3_bind_int64(add, 1, m[i].face);
        if (sqlite3_step(add) != SQLITE_DONE)
            rc = store_sqlfail(s, "counting the search's photos");
        sqlite3_reset(add);
    }
    sqlite3_finalize(add);
    store_now(now);
    if (rc == LETHE_OK &&
        (rc = store_prepare(s, "INSERT INTO search_hits(photo, purpose, searches, last) SELECT "
                               "id, ?1, 1, ?2 FROM temp.hit_photos WHERE 1 ON CONFLICT(photo, "
                               "purpose) DO UPDATE SET searches = searches + 1, last = "
                               "excluded.last", &up)) == LETHE_OK) {
        sqlite3_bind_text(up, 1, purpose, -1, SQLITE_STATIC);
        sqlite3_bind_text(up, 2, now, -1, SQLITE_STATIC);
        if (sqlite3_step(up) != SQLITE_DONE)
            rc = store_sqlfail(s, "counting the search's photos");
        sqlite3_finalize(up);
    }
    return rc ? rc : store_exec(s, "DELETE FROM temp.hit_photos");
}

void hits_free(lethe_purpose_count *c, int n)
{
    if (!c)
        return;
    for (int i = 0; i < n; i++)
        lethe_free(c[i].purpose);
    lethe_free(c);
}

/* The rows of photo's counts into *out (n rows). */
static int hits_rows(lethe_store *s, sqlite3_stmt *st, lethe_purpose_count **out, int *n)
{
    int cap = 0, step, rc = LETHE_OK;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            int nc = cap ? 2 * cap : 4;
            lethe_purpose_count *t = lethe_realloc(*out, (size_t)nc * sizeof(*t));
            if (!t)
                return store_fail(s, LETHE_ERR_NOMEM, "out of memory");
            *out = t;
            cap = nc;
        }
        lethe_purpose_count *c = &(*out)[*n];
        memset(c, 0, sizeof(*c));
        if (!(c->purpose = lethe_strdup((const char *)sqlite3_column_text(st, 0))))
            return store_fail(s, LETHE_ERR_NOMEM, "out of memory");
        c->searches = (uint64_t)sqlite3_column_int64(st, 1);
        snprintf(c->last, sizeof(c->last), "%s", (const char *)sqlite3_column_text(st, 2));
        (*n)++;
    }
    if (step != SQLITE_DONE)
        rc = store_sqlfail(s, "reading the search counts");
    return rc;
}

int hits_read(lethe_store *s, int64_t photo, lethe_purpose_count **out, int *n)
{
    sqlite3_stmt *st;
    *out = NULL;
    *n = 0;
    int have = requests_table_exists(s, "search_hits");
    if (have <= 0)
        return have < 0 ? LETHE_ERR_IO : LETHE_OK;
    int rc = store_prepare(s, "SELECT purpose, searches, last FROM search_hits WHERE photo = ? "
                              "ORDER BY searches DESC, purpose", &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, photo);
    rc = hits_rows(s, st, out, n);
    sqlite3_finalize(st);
    if (rc) {
        hits_free(*out, *n);
        *out = NULL;
        *n = 0;
    }
    return rc;
}
