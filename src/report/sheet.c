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

/* The rows of a breakdown or search table: a failed read is an error,
 * never a shorter table. */
static int rows_end(lethe_store *s, sqlite3_stmt *st, int step, const char *what)
{
    int rc = step == SQLITE_DONE ? LETHE_OK : store_sqlfail(s, what);
    sqlite3_finalize(st);
    return rc;
}

static int put_breakdown(lethe_store *s, strbuf *b, const char *name, const char *col)
{
    char sql[1024];
    sqlite3_stmt *st;
    int rc, i = 0, step;
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
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        sb_puts(b, i++ ? ",{\"key\":" : "{\"key\":");
        sb_json_str(b, (const char *)sqlite3_column_text(st, 0));
        sb_printf(b, ",\"photos\":%lld,\"faces\":%lld,\"templates\":%lld,\"refused\":%lld}",
                  (long long)sqlite3_column_int64(st, 1), (long long)sqlite3_column_int64(st, 2),
                  (long long)sqlite3_column_int64(st, 3), (long long)sqlite3_column_int64(st, 4));
    }
    sb_putc(b, ']');
    return rows_end(s, st, step, "datasheet: reading provenance");
}

static int put_searches(lethe_store *s, strbuf *b, const char *name, const char *col)
{
    char sql[256];
    sqlite3_stmt *st;
    int rc, i = 0, step;
    snprintf(sql, sizeof(sql), "SELECT %s, COUNT(*), SUM(results) FROM log WHERE kind = "
             "'search' GROUP BY 1 ORDER BY 2 DESC, 1", col);
    if ((rc = store_prepare(s, sql, &st)))
        return rc;
    sb_printf(b, "\"%s\":[", name);
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        sb_puts(b, i++ ? ",{\"key\":" : "{\"key\":");
        sb_json_str(b, (const char *)sqlite3_column_text(st, 0));
        sb_printf(b, ",\"searches\":%lld,\"results\":%lld}",
                  (long long)sqlite3_column_int64(st, 1), (long long)sqlite3_column_int64(st, 2));
    }
    sb_putc(b, ']');
    return rows_end(s, st, step, "datasheet: reading the log");
}

/* The first column of the first row of sql into buf[0..size) (left as it
 * is when there is no row); a failed read is an error. */
static int first_text(lethe_store *s, const char *sql, char *buf, size_t size)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s, sql, &st);
    if (rc)
        return rc;
    int step = sqlite3_step(st);
    const char *t = step == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
    if (t)
        snprintf(buf, size, "%s", t);
    else if (step != SQLITE_DONE && (step != SQLITE_ROW || sqlite3_errcode(s->db) == SQLITE_NOMEM))
        rc = store_sqlfail(s, "datasheet: reading the catalog");
    sqlite3_finalize(st);
    return rc;
}

/* "totals":{...}, in the schema's order; a count that cannot be read is an
 * error, never a zero. */
static int put_totals(lethe_store *s, strbuf *b)
{
    static const char *const totals[][2] = {
        {"photos", "SELECT COUNT(*) FROM photos"},
        {"provenance_records", "SELECT COUNT(*) FROM provenance"},
        {"faces", "SELECT COUNT(*) FROM faces"},
        {"templates", "SELECT COUNT(*) FROM faces WHERE has_template"},
        {"photos_refused", "SELECT COUNT(*) FROM photos WHERE status <> 'analysed'"},
        {"photos_failed", "SELECT COALESCE(SUM(json_extract(detail, '$.errors')), 0) "
                          "FROM log WHERE kind = 'ingest'"},
        /* analysed and nothing found: not photos whose faces were erased
         * or opted out since */
        {"photos_no_face", "SELECT COUNT(*) FROM photos WHERE status = 'analysed' AND "
                           "faces_found = 0"},
        {"uploaders", "SELECT COUNT(DISTINCT uploader_h) FROM provenance WHERE "
                      "uploader_h IS NOT NULL"},
        {"sources", "SELECT COUNT(DISTINCT source) FROM provenance WHERE source <> ''"},
        {"searches", "SELECT COUNT(*) FROM log WHERE kind = 'search'"},
        {"lookups", "SELECT COUNT(*) FROM log WHERE kind = 'lookup'"},
        {"ingest_batches", "SELECT COUNT(*) FROM log WHERE kind = 'ingest'"},
    };
    sb_puts(b, "\"totals\":{");
    for (size_t i = 0; i < sizeof(totals) / sizeof(totals[0]); i++) {
        int64_t v = store_count(s, totals[i][1]);
        if (v < 0)
            return store_status(s);
        sb_printf(b, "%s\"%s\":%lld", i ? "," : "", totals[i][0], (long long)v);
    }
    sb_puts(b, "},");
    return LETHE_OK;
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

/* What the datasheet reports of the store's integrity: whether the log is
 * intact (and its first bad entry) and whether the kept digest matches.
 * Damage is reported in the sheet; a check that could not run (out of
 * memory, a failed read) is an error, never "not intact". */
typedef struct integrity {
    int intact, digest_ok;
    uint64_t entries, bad;
} integrity;

static int check_integrity(lethe_store *s, integrity *in)
{
    char full[65];
    int rc = lethe_store_digest_full(s, full, &in->digest_ok);
    if (rc == LETHE_ERR_STORE)
        in->digest_ok = 0; /* rows that do not open, no policy: damage */
    else if (rc)
        return rc;
    rc = lethe_log_verify(s, &in->entries, &in->bad);
    in->intact = rc == LETHE_OK;
    /* the log's damage is LETHE_ERR_FORMAT; a catalog's, LETHE_ERR_STORE */
    return rc == LETHE_ERR_FORMAT || rc == LETHE_ERR_STORE ? LETHE_OK : rc;
}

/* The models that computed the templates (models.c), as the elements of
 * the "models" array: an auditor sees which model made what is held and
 * which were retired. Model fields are [A-Za-z0-9-_.+] (no escaping). */
static int put_models(lethe_store *s, strbuf *b)
{
    lethe_model_info *m = NULL;
    size_t n = 0;
    int rc = lethe_model_list(s, &m, &n);
    for (size_t i = 0; rc == LETHE_OK && i < n; i++)
        sb_printf(b, "%s{\"name\":\"%s\",\"version\":\"%s\",\"weights\":\"%s\","
                     "\"precision\":\"%s\",\"first_used\":\"%s\",\"retired_at\":%s%s%s,"
                     "\"templates\":%llu,\"faces\":%llu}",
                  i ? "," : "", m[i].model.name, m[i].model.version, m[i].model.weights,
                  m[i].model.precision, m[i].first_used, m[i].retired_at[0] ? "\"" : "",
                  m[i].retired_at[0] ? m[i].retired_at : "null", m[i].retired_at[0] ? "\"" : "",
                  (unsigned long long)m[i].templates, (unsigned long long)m[i].faces);
    lethe_free_models(m);
    return rc;
}

static int put_body(lethe_store *s, strbuf *b)
{
    int rc;
    if ((rc = put_totals(s, b)))
        return rc;
    sb_puts(b, "\"by\":{");
    if ((rc = put_breakdown(s, b, "source", "source")) ||
        (rc = put_breakdown(s, b, "license", "license")) ||
        (rc = put_breakdown(s, b, "jurisdiction", "jurisdiction")) ||
        (rc = put_breakdown(s, b, "consent", "consent")))
        return rc;
    sb_puts(b, "},\"policy\":[");
    put_policy(s, b);
    sb_puts(b, "],\"models\":[");
    if ((rc = put_models(s, b)))
        return rc;
    sb_puts(b, "],\"searches\":{");
    if ((rc = put_searches(s, b, "by_purpose", "purpose")))
        return rc;
    sb_putc(b, ',');
    return put_searches(s, b, "by_actor", "actor");
}

/* The datasheet's JSON into *out (lethe_free). */
static int datasheet_json(lethe_store *s, char **out)
{
    integrity in = {0};
    strbuf b;
    char now[32], created[64] = "", head[96] = "";
    int rc;
    *out = NULL;
    if ((rc = check_integrity(s, &in)) ||
        (rc = first_text(s, "SELECT value FROM meta WHERE key = 'created_at'", created,
                         sizeof(created))) ||
        (rc = first_text(s, "SELECT hash FROM log ORDER BY seq DESC LIMIT 1", head,
                         sizeof(head))))
        return rc;
    store_now(now);
    sb_init(&b);
    sb_printf(&b, "{\"lethe_datasheet\":1,\"generated_at\":\"%s\",\"store\":{\"path\":", now);
    sb_json_str(&b, s->dir);
    sb_printf(&b, ",\"format_version\":%d,\"created_at\":", LETHE_STORE_FORMAT);
    sb_json_str(&b, created);
    sb_puts(&b, ",\"model\":\"face-api 1.7.15: SSD MobileNet v1, 68 landmarks, ResNet-34 "
                "128-D\"},");
    if ((rc = put_body(s, &b))) {
        sb_free(&b);
        return rc;
    }
    sb_printf(&b, "},\"log\":{\"entries\":%llu,\"head\":\"%s\",\"intact\":%s,\"first_bad\":",
              (unsigned long long)in.entries, head, in.intact ? "true" : "false");
    if (in.intact)
        sb_puts(&b, "null");
    else
        sb_printf(&b, "%llu", (unsigned long long)in.bad);
    sb_printf(&b, "},\"integrity\":{\"digest_matches\":%s}}\n",
              in.digest_ok ? "true" : "false");
    *out = sb_finish(&b);
    return *out ? LETHE_OK : store_fail(s, LETHE_ERR_NOMEM, "out of memory");
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
    char *json = NULL;
    int rc = store_policy_refresh(s);
    if (rc == LETHE_OK)
        rc = datasheet_json(s, &json);
    if (rc)
        return rc;
    if (!strcmp(format, "json")) {
        *out = json;
        return LETHE_OK;
    }
    char *r = NULL;
    rc = datasheet_render(json, strlen(json), format, &r, msg, sizeof(msg));
    lethe_free(json);
    /* the catalog's own JSON refused by the renderer would be a bug here */
    if (rc != LETHE_OK)
        return store_fail(s, rc == LETHE_ERR_NOMEM ? rc : LETHE_ERR_INTERNAL, "%s", msg);
    /* the renderer allocates with malloc; hand over a lethe_malloc copy */
    *out = lethe_strdup(r);
    free(r);
    return *out ? LETHE_OK : store_fail(s, LETHE_ERR_NOMEM, "out of memory");
}
