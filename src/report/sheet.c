/*
 * sheet.c: the datasheet's figures, read from the catalog as JSON (the
 * schema is in report/datasheet.h), and lethe_datasheet, which renders
 * them (datasheet.c). Only the clear categorical fields and counts are read:
 * the datasheet opens no photo's sealed data, except to check the digest,
 * whose result it reports: a catalog edited outside lethe is flagged.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report/datasheet.h"
#include "store/store.h"
#include "util/strbuf.h"
#include "util/util.h"

static int put_breakdown(lethe_store *s, strbuf *b, const char *name, const char *col)
{
    char sql[1024];
    sqlite3_stmt *st;
    int rc, i = 0;
    snprintf(sql, sizeof(sql),
             "WITH ph AS (SELECT id, status, "
             "  (SELECT COUNT(*) FROM faces WHERE photo = photos.id) AS nf, "
             "  (SELECT COUNT(*) FROM faces WHERE photo = photos.id AND has_template)"
             "  AS nt FROM photos), "
             "pk AS (SELECT DISTINCT photo, %s AS key FROM provenance) "
             "SELECT pk.key, COUNT(*), SUM(nf), SUM(nt), SUM(ph.status <> 'analysed') "
             "FROM pk JOIN ph ON ph.id = pk.photo GROUP BY pk.key "
             "ORDER BY COUNT(*) DESC, pk.key", col);
    if ((rc = store_prepare(s, sql, &st)))
        return rc;
    sb_printf(b, "%s\"%s\":[", strcmp(name, "source") ? "," : "", name);
    while (sqlite3_step(st) == SQLITE_ROW) {
        sb_puts(b, i++ ? ",{\"key\":" : "{\"key\":");
        sb_json_str(b, (const char *)sqlite3_column_text(st, 0));
        sb_printf(b, ",\"photos\":%lld,\"faces\":%lld,\"templates\":%lld,\"refused\":%lld}",
                  (long long)sqlite3_column_int64(st, 1), (long long)sqlite3_column_int64(st, 2),
                  (long long)sqlite3_column_int64(st, 3), (long long)sqlite3_column_int64(st, 4));
    }
    sb_putc(b, ']');
    sqlite3_finalize(st);
    return LETHE_OK;
}

static int64_t scalar(lethe_store *s, const char *sql)
{
    int64_t v = store_count(s, sql);
    return v < 0 ? 0 : v;
}

static int put_searches(lethe_store *s, strbuf *b, const char *name, const char *col)
{
    char sql[256];
    sqlite3_stmt *st;
    int rc, i = 0;
    snprintf(sql, sizeof(sql), "SELECT %s, COUNT(*), SUM(results) FROM log WHERE kind = "
             "'search' GROUP BY 1 ORDER BY 2 DESC, 1", col);
    if ((rc = store_prepare(s, sql, &st)))
        return rc;
    sb_printf(b, "\"%s\":[", name);
    while (sqlite3_step(st) == SQLITE_ROW) {
        sb_puts(b, i++ ? ",{\"key\":" : "{\"key\":");
        sb_json_str(b, (const char *)sqlite3_column_text(st, 0));
        sb_printf(b, ",\"searches\":%lld,\"results\":%lld}",
                  (long long)sqlite3_column_int64(st, 1), (long long)sqlite3_column_int64(st, 2));
    }
    sb_putc(b, ']');
    sqlite3_finalize(st);
    return LETHE_OK;
}

/* The first column of the first row of sql into buf[0..size) (left as it
 * is when there is no row or the query fails). */
static void first_text(lethe_store *s, const char *sql, char *buf, size_t size)
{
    sqlite3_stmt *st;
    if (store_prepare(s, sql, &st) == LETHE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            snprintf(buf, size, "%s", (const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
    }
}

/* "totals":{...}, in the schema's order. */
static void put_totals(lethe_store *s, strbuf *b)
{
    sb_printf(b,
              "\"totals\":{\"photos\":%lld,\"provenance_records\":%lld,\"faces\":%lld,"
              "\"templates\":%lld,\"photos_refused\":%lld,\"photos_failed\":%lld,"
              "\"photos_no_face\":%lld,\"uploaders\":%lld,\"sources\":%lld,\"searches\":%lld,"
              "\"lookups\":%lld,\"ingest_batches\":%lld},",
              (long long)scalar(s, "SELECT COUNT(*) FROM photos"),
              (long long)scalar(s, "SELECT COUNT(*) FROM provenance"),
              (long long)scalar(s, "SELECT COUNT(*) FROM faces"),
              (long long)scalar(s, "SELECT COUNT(*) FROM faces WHERE has_template"),
              (long long)scalar(s, "SELECT COUNT(*) FROM photos WHERE status <> 'analysed'"),
              (long long)scalar(s, "SELECT COALESCE(SUM(json_extract(detail, '$.errors')), 0) "
                                   "FROM log WHERE kind = 'ingest'"),
              /* analysed and nothing found: not photos whose faces were erased
               * or opted out since */
              (long long)scalar(s, "SELECT COUNT(*) FROM photos WHERE status = 'analysed' AND "
                                   "faces_found = 0"),
              (long long)scalar(s, "SELECT COUNT(DISTINCT uploader_h) FROM provenance WHERE "
                                   "uploader_h IS NOT NULL"),
              (long long)scalar(s, "SELECT COUNT(DISTINCT source) FROM provenance WHERE "
                                   "source <> ''"),
              (long long)scalar(s, "SELECT COUNT(*) FROM log WHERE kind = 'search'"),
              (long long)scalar(s, "SELECT COUNT(*) FROM log WHERE kind = 'lookup'"),
              (long long)scalar(s, "SELECT COUNT(*) FROM log WHERE kind = 'ingest'"));
}

/* The policy's rules: each jurisdiction key with the consent bases it
 * accepts, as the elements of the "policy" array. */
static void put_policy(lethe_store *s, strbuf *b)
{
    for (size_t i = 0; i < policy_rule_count(s->pol); i++) {
        const char *key;
        unsigned mask;
        policy_rule_at(s->pol, i, &key, &mask);
        sb_puts(b, i ? ",{\"key\":" : "{\"key\":");
        sb_json_str(b, key);
        sb_puts(b, ",\"allows\":[");
        int first = 1;
        for (int bit = 1; bit <= CONSENT_WITHDRAWN; bit <<= 1)
            if (mask & (unsigned)bit) {
                sb_puts(b, first ? "" : ",");
                sb_json_str(b, consent_name(bit));
                first = 0;
            }
        sb_puts(b, "]}");
    }
}

static char *datasheet_json(lethe_store *s)
{
    char full[65];
    int digest_ok = 0;
    int digest_rc = lethe_store_digest_full(s, full, &digest_ok);
    strbuf b;
    char now[32], created[64] = "";
    uint64_t entries = 0, bad = 0;
    int intact = lethe_log_verify(s, &entries, &bad) == LETHE_OK;
    char head[96] = "";

    first_text(s, "SELECT value FROM meta WHERE key = 'created_at'", created, sizeof(created));
    first_text(s, "SELECT hash FROM log ORDER BY seq DESC LIMIT 1", head, sizeof(head));
    store_now(now);
    sb_init(&b);
    sb_printf(&b, "{\"lethe_datasheet\":1,\"generated_at\":\"%s\",\"store\":{\"path\":", now);
    sb_json_str(&b, s->dir);
    sb_printf(&b, ",\"format_version\":%d,\"created_at\":", LETHE_STORE_FORMAT);
    sb_json_str(&b, created);
    sb_puts(&b, ",\"model\":\"face-api 1.7.15: SSD MobileNet v1, 68 landmarks, ResNet-34 "
                "128-D\"},");
    put_totals(s, &b);
    sb_puts(&b, "\"by\":{");
    put_breakdown(s, &b, "source", "source");
    put_breakdown(s, &b, "license", "license");
    put_breakdown(s, &b, "jurisdiction", "jurisdiction");
    put_breakdown(s, &b, "consent", "consent");
    sb_puts(&b, "},\"policy\":[");
    put_policy(s, &b);
    sb_puts(&b, "],\"searches\":{");
    put_searches(s, &b, "by_purpose", "purpose");
    sb_putc(&b, ',');
    put_searches(s, &b, "by_actor", "actor");
    sb_printf(&b, "},\"log\":{\"entries\":%llu,\"head\":\"%s\",\"intact\":%s,\"first_bad\":",
              (unsigned long long)entries, head, intact ? "true" : "false");
    if (intact)
        sb_puts(&b, "null");
    else
        sb_printf(&b, "%llu", (unsigned long long)bad);
    sb_printf(&b, "},\"integrity\":{\"digest_matches\":%s}}\n",
              digest_rc == LETHE_OK && digest_ok ? "true" : "false");
    return sb_finish(&b);
}

int lethe_datasheet(lethe_store *s, const char *format, char **out)
{
    char msg[512];
    *out = NULL;
    if (!format)
        format = "json";
    if (strcmp(format, "json") && strcmp(format, "md") && strcmp(format, "html"))
        return store_fail(s, LETHE_ERR_ARG, "unknown datasheet format \"%s\" (md, html, json)",
                          format);
    int rc0 = store_policy_refresh(s);
    if (rc0)
        return rc0;
    char *json = datasheet_json(s);
    if (!json)
        return store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    if (!strcmp(format, "json")) {
        *out = json;
        return LETHE_OK;
    }
    char *r = NULL;
    int rc = datasheet_render(json, strlen(json), format, &r, msg, sizeof(msg));
    lethe_free(json);
    if (rc != 0)
        return store_fail(s, LETHE_ERR_INTERNAL, "datasheet: %s", msg);
    /* the renderer allocates with malloc; hand over a lethe_malloc copy */
    *out = lethe_strdup(r);
    free(r);
    return *out ? LETHE_OK : store_fail(s, LETHE_ERR_NOMEM, "out of memory");
}
