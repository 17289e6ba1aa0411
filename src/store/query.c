/*
 * query.c: what the store answers: 1:N search (exact, logged), lookup
 * without a face (logged), and the datasheet.
 */
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report/datasheet.h"
#include "store/store.h"
#include "util/strbuf.h"
#include "util/util.h"

void lethe_search_options_init(lethe_search_options *o)
{
    memset(o, 0, sizeof(*o));
    o->top_k = 10;
    o->threshold = INFINITY;
}

/* The nine provenance strings of a match, in the column order of match_sql. */
static void match_fields(lethe_match *m, const char **f[9])
{
    f[0] = &m->prov.path;
    f[1] = &m->prov.photo_id;
    f[2] = &m->prov.url;
    f[3] = &m->prov.uploader;
    f[4] = &m->prov.source;
    f[5] = &m->prov.license;
    f[6] = &m->prov.jurisdiction;
    f[7] = &m->prov.consent;
    f[8] = &m->prov.collected_at;
}

/* Free a match's strings and zero it. */
static void match_clear(lethe_match *m)
{
    const char **f[9];
    match_fields(m, f);
    for (int k = 0; k < 9; k++)
        lethe_free((char *)*f[k]);
    memset(m, 0, sizeof(*m));
}

void lethe_matches_free(lethe_match *m, size_t n)
{
    if (!m)
        return;
    for (size_t i = 0; i < n; i++)
        match_clear(&m[i]);
    lethe_free(m);
}

static const char match_sql[] =
    "SELECT p.sha256, f.x, f.y, f.w, f.h, "
    "  (SELECT COUNT(*) FROM provenance WHERE photo = p.id), "
    "  v.path, v.photo_id, v.url, v.uploader, v.source, v.license, v.jurisdiction, "
    "  v.consent, v.collected_at "
    "FROM faces f JOIN photos p ON p.id = f.photo "
    "  JOIN provenance v ON v.photo = p.id "
    "WHERE f.id = ? AND f.descriptor IS NOT NULL AND p.status = 'analysed' "
    "ORDER BY v.id LIMIT 1";

/* Fill m from the catalog; 1 when the face is (still) held, 0 if not. */
static int fill_match(lethe_store *s, sqlite3_stmt *st, int64_t face, lethe_match *m, int *oom)
{
    int found = 0;
    sqlite3_bind_int64(st, 1, face);
    if (sqlite3_step(st) == SQLITE_ROW) {
        const uint8_t *sha = sqlite3_column_blob(st, 0);
        m->face = face;
        if (sha && sqlite3_column_bytes(st, 0) == 32)
            sodium_bin2hex(m->photo, sizeof(m->photo), sha, 32);
        for (int i = 0; i < 4; i++)
            m->box[i] = (float)sqlite3_column_double(st, 1 + i);
        m->provenance_count = sqlite3_column_int(st, 5);
        const char **f[9];
        match_fields(m, f);
        for (int i = 0; i < 9; i++) {
            const char *t = (const char *)sqlite3_column_text(st, 6 + i);
            *f[i] = lethe_strdup(t ? t : "");
            if (!*f[i])
                *oom = 1;
        }
        found = 1;
    }
    sqlite3_reset(st);
    (void)s;
    return found;
}

int lethe_search(lethe_store *s, const float *queries, int nq, const lethe_search_options *opt,
                 lethe_match **matches, size_t *count)
{
    lethe_search_options o;
    char msg[512];
    idx_hit *hits = NULL, *more = NULL;
    size_t *nhits = NULL, n = 0;
    lethe_match *m = NULL;
    sqlite3_stmt *st = NULL;
    int rc, oom = 0;

    *matches = NULL;
    *count = 0;
    if (opt)
        o = *opt;
    else
        lethe_search_options_init(&o);
    if (!o.purpose || !*o.purpose)
        return store_fail(s, LETHE_ERR_ARG, "a search needs a purpose (it is logged)");
    if (nq < 0 || (nq > 0 && !queries))
        return store_fail(s, LETHE_ERR_ARG, "no queries");
    if (o.top_k <= 0)
        o.top_k = 10;
    if (o.top_k > 10000)
        return store_fail(s, LETHE_ERR_ARG, "top_k %d is more than 10000", o.top_k);
    if (isnan(o.threshold) || o.threshold < 0)
        return store_fail(s, LETHE_ERR_ARG, "bad threshold");
    for (int q = 0; q < nq; q++)
        for (int i = 0; i < IDX_DIM; i++)
            if (!isfinite(queries[(size_t)q * IDX_DIM + i]))
                return store_fail(s, LETHE_ERR_ARG, "query %d has a non-finite component", q);
    if ((rc = store_index_ready(s)))
        return rc;

    /* A few more than asked, for templates dropped since the index was
     * last brought up to date (they are filtered out below). */
    size_t kk = (size_t)o.top_k + 16;
    size_t total = (size_t)nq * kk;
    hits = lethe_malloc((total ? total : 1) * sizeof(*hits));
    nhits = lethe_calloc((size_t)(nq ? nq : 1), sizeof(*nhits));
    m = lethe_calloc((size_t)(nq ? nq : 1) * (size_t)o.top_k, sizeof(*m));
    if (!hits || !nhits || !m) {
        rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
        goto out;
    }
    if (nq && idx_search(s->ix, queries, (size_t)nq, kk, o.threshold, o.threads, hits, nhits,
                         msg, sizeof(msg)) != 0) {
        rc = store_fail(s, LETHE_ERR_IO, "%s", msg);
        goto out;
    }
    if ((rc = store_prepare(s, match_sql, &st)))
        goto out;
    /* The log entries and the reads that produce the results are one
     * transaction: a search is recorded if and only if it answered. */
    if ((rc = store_begin(s)))
        goto out;
    for (int q = 0; q < nq && rc == LETHE_OK; q++) {
        const float *qv = queries + (size_t)q * IDX_DIM;
        idx_hit *h = hits + (size_t)q * kk;
        size_t nh = nhits[q], got = 0, kq = kk;
        for (;;) {
            got = 0;
            for (size_t i = 0; i < nh && got < (size_t)o.top_k; i++) {
                lethe_match *r = &m[n + got];
                memset(r, 0, sizeof(*r));
                if (fill_match(s, st, h[i].id, r, &oom)) {
                    r->distance = h[i].distance;
                    r->query = q;
                    got++;
                }
            }
            /* Filtered rows hid some: ask the index for more. */
            if (got >= (size_t)o.top_k || nh < kq || kq >= idx_count(s->ix))
                break;
            for (size_t i = 0; i < got; i++)
                match_clear(&m[n + i]);
            kq *= 4;
            lethe_free(more);
            more = lethe_malloc(kq * sizeof(*more));
            if (!more) {
                rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
                break;
            }
            if (idx_search(s->ix, qv, 1, kq, o.threshold, o.threads, more, &nh, msg,
                           sizeof(msg)) != 0) {
                rc = store_fail(s, LETHE_ERR_IO, "%s", msg);
                break;
            }
            h = more;
        }
        n += got;
        if (rc == LETHE_OK) {
            char qh[65];
            store_keyed_hash(s, qv, IDX_DIM * sizeof(float), qh);
            rc = store_log_append(s, "search", o.actor, o.purpose, qh, (int64_t)got, NULL);
        }
    }
    if (rc == LETHE_OK && oom)
        rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    if (rc == LETHE_OK)
        rc = store_commit(s);
    else
        store_rollback(s);
out:
    sqlite3_finalize(st);
    lethe_free(hits);
    lethe_free(more);
    lethe_free(nhits);
    if (rc == LETHE_OK) {
        *matches = m;
        *count = n;
    } else {
        lethe_matches_free(m, n);
    }
    return rc;
}

/* ---------------------------------------------------------------- lookup */

static void put_prov_json(strbuf *b, sqlite3_stmt *st, int first_col)
{
    static const char *names[] = {"path", "photo_id", "url", "uploader", "source", "license",
                                  "jurisdiction", "consent", "collected_at", "added_at"};
    sb_putc(b, '{');
    for (int i = 0; i < 10; i++) {
        sb_printf(b, "%s\"%s\":", i ? "," : "", names[i]);
        sb_json_str(b, (const char *)sqlite3_column_text(st, first_col + i));
    }
    sb_putc(b, '}');
}

int lethe_lookup(lethe_store *s, int kind, const char *value, const char *actor, char **json)
{
    static const char *kinds[] = {"uploader", "url", "photo-id", "file"};
    static const char *where[] = {
        "id IN (SELECT photo FROM provenance WHERE uploader = ?1)",
        "id IN (SELECT photo FROM provenance WHERE url = ?1)",
        "id IN (SELECT photo FROM provenance WHERE photo_id = ?1) OR sha256 = ?2",
        "sha256 = ?2",
    };
    uint8_t sha[32], *bytes = NULL;
    size_t len = 0, n = 0;
    int have_sha = 0, rc;
    char msg[512], sql[512], qh[65];
    sqlite3_stmt *ph = NULL, *pv = NULL;
    strbuf b;

    *json = NULL;
    if (kind < 0 || kind > LETHE_LOOKUP_FILE || !value || !*value)
        return store_fail(s, LETHE_ERR_ARG, "lookup needs a value");
    if (kind == LETHE_LOOKUP_FILE) {
        rc = lethe_read_file(value, 256u << 20, &bytes, &len, msg, sizeof(msg));
        if (rc)
            return store_fail(s, rc, "%s", msg);
        crypto_hash_sha256(sha, bytes, len);
        lethe_free(bytes);
        have_sha = 1;
    } else if (kind == LETHE_LOOKUP_PHOTO_ID && strlen(value) == 64) {
        have_sha = sodium_hex2bin(sha, 32, value, 64, NULL, &len, NULL) == 0 && len == 32;
    }
    snprintf(sql, sizeof(sql),
             "SELECT id, sha256, kind, status, width, height, "
             "(SELECT COUNT(*) FROM faces WHERE photo = photos.id), "
             "(SELECT COUNT(*) FROM faces WHERE photo = photos.id AND descriptor IS NOT NULL) "
             "FROM photos WHERE %s ORDER BY sha256", where[kind]);
    if ((rc = store_prepare(s, sql, &ph)) ||
        (rc = store_prepare(s, "SELECT path, photo_id, url, uploader, source, license, "
                               "jurisdiction, consent, collected_at, added_at FROM provenance "
                               "WHERE photo = ? ORDER BY id", &pv)))
        goto out;
    if (kind != LETHE_LOOKUP_FILE)
        sqlite3_bind_text(ph, 1, value, -1, SQLITE_STATIC);
    if (have_sha)
        sqlite3_bind_blob(ph, 2, sha, 32, SQLITE_STATIC);
    if ((rc = store_begin(s)))
        goto out;
    sb_init(&b);
    sb_puts(&b, "{\"lookup\":");
    sb_json_str(&b, kinds[kind]);
    sb_puts(&b, ",\"photos\":[");
    while (sqlite3_step(ph) == SQLITE_ROW) {
        char hex[65];
        sodium_bin2hex(hex, sizeof(hex), sqlite3_column_blob(ph, 1), 32);
        sb_printf(&b, "%s{\"photo\":\"%s\",\"kind\":", n++ ? "," : "", hex);
        sb_json_str(&b, (const char *)sqlite3_column_text(ph, 2));
        sb_puts(&b, ",\"status\":");
        sb_json_str(&b, (const char *)sqlite3_column_text(ph, 3));
        if (sqlite3_column_type(ph, 4) == SQLITE_INTEGER)
            sb_printf(&b, ",\"width\":%d,\"height\":%d", sqlite3_column_int(ph, 4),
                      sqlite3_column_int(ph, 5));
        sb_printf(&b, ",\"faces\":%d,\"templates\":%d,\"provenance\":[",
                  sqlite3_column_int(ph, 6), sqlite3_column_int(ph, 7));
        sqlite3_bind_int64(pv, 1, sqlite3_column_int64(ph, 0));
        for (int i = 0; sqlite3_step(pv) == SQLITE_ROW; i++) {
            if (i)
                sb_putc(&b, ',');
            put_prov_json(&b, pv, 0);
        }
        sqlite3_reset(pv);
        sb_puts(&b, "]}");
    }
    sb_puts(&b, "]}\n");
    store_keyed_hash(s, have_sha ? (const void *)sha : value, have_sha ? 32 : strlen(value), qh);
    rc = store_log_append(s, "lookup", actor, kinds[kind], qh, (int64_t)n, NULL);
    if (rc == LETHE_OK)
        rc = store_commit(s);
    else
        store_rollback(s);
    *json = sb_finish(&b);
    if (rc == LETHE_OK && !*json)
        rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    if (rc != LETHE_OK) {
        lethe_free(*json);
        *json = NULL;
    }
out:
    sqlite3_finalize(ph);
    sqlite3_finalize(pv);
    return rc;
}

/* ------------------------------------------------------------- datasheet */

static int put_breakdown(lethe_store *s, strbuf *b, const char *name, const char *col)
{
    char sql[1024];
    sqlite3_stmt *st;
    int rc, i = 0;
    snprintf(sql, sizeof(sql),
             "WITH ph AS (SELECT id, status, "
             "  (SELECT COUNT(*) FROM faces WHERE photo = photos.id) AS nf, "
             "  (SELECT COUNT(*) FROM faces WHERE photo = photos.id AND descriptor IS NOT NULL)"
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
    sqlite3_stmt *st;
    int64_t v = 0;
    if (store_prepare(s, sql, &st))
        return 0;
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
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

static char *datasheet_json(lethe_store *s)
{
    strbuf b;
    char now[32], created[64] = "";
    uint64_t entries = 0, bad = 0;
    sqlite3_stmt *st;
    int intact = lethe_log_verify(s, &entries, &bad) == LETHE_OK;
    char head[96] = "";

    if (store_prepare(s, "SELECT value FROM meta WHERE key = 'created_at'", &st) == LETHE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            snprintf(created, sizeof(created), "%s", (const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
    }
    if (store_prepare(s, "SELECT hash FROM log ORDER BY seq DESC LIMIT 1", &st) == LETHE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            snprintf(head, sizeof(head), "%s", (const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
    }
    store_now(now);
    sb_init(&b);
    sb_printf(&b, "{\"lethe_datasheet\":1,\"generated_at\":\"%s\",\"store\":{\"path\":", now);
    sb_json_str(&b, s->dir);
    sb_printf(&b, ",\"format_version\":%d,\"created_at\":", LETHE_STORE_FORMAT);
    sb_json_str(&b, created);
    sb_puts(&b, ",\"model\":\"face-api 1.7.15: SSD MobileNet v1, 68 landmarks, ResNet-34 "
                "128-D\"},");
    sb_printf(&b,
              "\"totals\":{\"photos\":%lld,\"provenance_records\":%lld,\"faces\":%lld,"
              "\"templates\":%lld,\"photos_refused\":%lld,\"photos_failed\":%lld,"
              "\"photos_no_face\":%lld,\"uploaders\":%lld,\"sources\":%lld,\"searches\":%lld,"
              "\"lookups\":%lld,\"ingest_batches\":%lld},",
              (long long)scalar(s, "SELECT COUNT(*) FROM photos"),
              (long long)scalar(s, "SELECT COUNT(*) FROM provenance"),
              (long long)scalar(s, "SELECT COUNT(*) FROM faces"),
              (long long)scalar(s, "SELECT COUNT(*) FROM faces WHERE descriptor IS NOT NULL"),
              (long long)scalar(s, "SELECT COUNT(*) FROM photos WHERE status <> 'analysed'"),
              (long long)scalar(s, "SELECT COALESCE(SUM(json_extract(detail, '$.errors')), 0) "
                                   "FROM log WHERE kind = 'ingest'"),
              (long long)scalar(s, "SELECT COUNT(*) FROM photos WHERE status = 'analysed' AND "
                                   "NOT EXISTS (SELECT 1 FROM faces WHERE photo = photos.id)"),
              (long long)scalar(s, "SELECT COUNT(DISTINCT uploader) FROM provenance WHERE "
                                   "uploader <> ''"),
              (long long)scalar(s, "SELECT COUNT(DISTINCT source) FROM provenance WHERE "
                                   "source <> ''"),
              (long long)scalar(s, "SELECT COUNT(*) FROM log WHERE kind = 'search'"),
              (long long)scalar(s, "SELECT COUNT(*) FROM log WHERE kind = 'lookup'"),
              (long long)scalar(s, "SELECT COUNT(*) FROM log WHERE kind = 'ingest'"));
    sb_puts(&b, "\"by\":{");
    put_breakdown(s, &b, "source", "source");
    put_breakdown(s, &b, "license", "license");
    put_breakdown(s, &b, "jurisdiction", "jurisdiction");
    put_breakdown(s, &b, "consent", "consent");
    sb_puts(&b, "},\"policy\":[");
    for (size_t i = 0; i < policy_rule_count(s->pol); i++) {
        const char *key;
        unsigned mask;
        policy_rule_at(s->pol, i, &key, &mask);
        sb_puts(&b, i ? ",{\"key\":" : "{\"key\":");
        sb_json_str(&b, key);
        sb_puts(&b, ",\"allows\":[");
        int first = 1;
        for (int bit = 1; bit <= CONSENT_WITHDRAWN; bit <<= 1)
            if (mask & (unsigned)bit) {
                sb_puts(&b, first ? "" : ",");
                sb_json_str(&b, consent_name(bit));
                first = 0;
            }
        sb_puts(&b, "]}");
    }
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
    sb_puts(&b, "}}\n");
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
