/*
 * datasheet.c: the datasheet renderer (see datasheet.h). The JSON is first
 * checked against the schema into a `datasheet` (every field present and of
 * the right type, every count a non-negative integer), then written out as
 * Markdown or as one HTML page with inline SVG bar charts.
 *
 * Keys are hostile text. Every key goes through put_text(), which decodes
 * UTF-8 strictly (invalid bytes become U+FFFD), makes line breaks visible as
 * "↵", replaces control and bidirectional-override characters (which could
 * reorder what an auditor reads) with U+FFFD, can truncate, and escapes for
 * the output: HTML entities (and "://" as "&#58;//", so that the page holds
 * no URL even as text), or Markdown backslash escapes that keep table
 * rows whole and stop emphasis, links, autolinks and inline HTML.
 *
 * Numbers are formatted with integer arithmetic only, so the output does not
 * depend on the C locale (a decimal comma would break SVG coordinates).
 */
#include "report/datasheet.h"

#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "lethe.h"
#include "util/json.h"
#include "util/util.h"

#define DS_VERSION 1
#define DS_MAX_COUNT 9007199254740992.0 /* 2^53: beyond it doubles lose integers */
#define DS_CHART_MAX_ROWS 20            /* rows drawn per chart; tables list all */
#define DS_LABEL_CP 28                  /* chart labels: code points kept */
#define DS_TOOLTIP_CP 200               /* chart tooltips: code points kept */

/* ------------------------------------------------------------------ */
/* The checked document                                                */
/* ------------------------------------------------------------------ */

typedef struct ds_text {
    const char *s; /* bytes owned by the JSON tree; untrusted, may hold NULs */
    size_t len;
} ds_text;

/* One row of a breakdown (photos, faces, templates, refused) or of a
 * searches table (searches, results). */
typedef struct ds_row {
    ds_text key;
    uint64_t v[4];
} ds_row;

typedef struct ds_rows {
    ds_row *rows;
    size_t n;
} ds_rows;

typedef struct ds_policy {
    ds_text key;
    const json_value *allows; /* checked: an array of strings */
} ds_policy;

/* The totals, in the order the summary lists them. */
static const struct {
    const char *field;   /* member of "totals" */
    const char *label;   /* summary row name */
    const char *meaning; /* what the count is */
    int share;           /* 1: also shown as a share of all photos */
} totals_spec[] = {
    {"photos", "Photos", "photos catalogued, each with its provenance", 1},
    {"provenance_records", "Provenance records",
     "statements of where a photo came from, under which license, jurisdiction and "
     "consent basis (a photo can have several)", 0},
    {"faces", "Faces", "faces found in the photos", 0},
    {"templates", "Face templates", "face templates stored; only these can be searched", 0},
    {"photos_refused", "Photos refused by policy",
     "catalogued without templates because the consent policy refused them", 1},
    {"photos_failed", "Inputs that failed", "photos or manifest rows that could not be read, decoded or parsed", 1},
    {"photos_no_face", "Photos without a face", "decoded, but no face was found", 1},
    {"uploaders", "Uploaders", "distinct uploaders", 0},
    {"sources", "Sources", "distinct sources", 0},
    {"searches", "Searches", "face searches run against the templates", 0},
    {"lookups", "Look-ups", "record look-ups (not face searches)", 0},
    {"ingest_batches", "Ingest batches", "batches in which photos were added", 0},
};
#define DS_N_TOTALS LETHE_ARRAY_LEN(totals_spec)
enum { T_PHOTOS = 0, T_TEMPLATES = 3, T_SEARCHES = 9 }; /* indexes into totals_spec (asserted in ds_load) */

/* The breakdowns, in the order they are rendered. */
static const struct {
    const char *field;  /* member of "by" */
    const char *column; /* key column heading */
    const char *title;  /* section title */
} by_spec[] = {
    {"source", "Source", "Photos by source"},
    {"license", "License", "Photos by license"},
    {"jurisdiction", "Jurisdiction", "Photos by jurisdiction"},
    {"consent", "Consent basis", "Photos by consent basis"},
};
#define DS_N_BY LETHE_ARRAY_LEN(by_spec)
static const char *const by_values[] = {"photos", "faces", "templates", "refused"};
enum { V_PHOTOS, V_FACES, V_TEMPLATES, V_REFUSED };
static const char *const search_values[] = {"searches", "results"};
enum { V_SEARCHES, V_RESULTS };

typedef struct datasheet {
    ds_text generated_at;
    ds_text store_path, store_created_at, store_model;
    uint64_t store_format_version;
    uint64_t totals[DS_N_TOTALS];
    ds_rows by[DS_N_BY];
    ds_policy *policy;
    size_t n_policy;
    ds_rows by_purpose, by_actor;
    uint64_t log_entries;
    ds_text log_head;
    int log_intact;
    int log_has_first_bad;
    uint64_t log_first_bad;
    int digest_mismatch; /* integrity.digest_matches is false */
    const json_value *models; /* the optional "models" array (checked), or NULL */
    int nomem;           /* loading failed for want of memory, not a bad field */
} datasheet;

static void ds_clear(datasheet *d)
{
    for (size_t i = 0; i < DS_N_BY; i++)
        lethe_free(d->by[i].rows);
    lethe_free(d->policy);
    lethe_free(d->by_purpose.rows);
    lethe_free(d->by_actor.rows);
}

/* Error helpers: each names the field by its path. */
static int missing(char *err, size_t errlen, const char *path, const char *name)
{
    lethe_fail(err, errlen, -1, "datasheet: missing field %s%s%s", path, *path ? "." : "",
               name);
    return -1;
}

static int mistyped(char *err, size_t errlen, const char *path, const char *name,
                    const char *want)
{
    lethe_fail(err, errlen, -1, "datasheet: field %s%s%s must be %s", path, *path ? "." : "",
               name, want);
    return -1;
}

/* The member name of obj, of the given type (JSON_TRUE: either boolean). */
static int get_member(const json_value *obj, const char *path, const char *name,
                      json_type type, const json_value **out, char *err, size_t errlen)
{
    static const char *const type_names[] = {"null", "a boolean", "a boolean", "a number",
                                             "a string", "an array", "an object"};
    const json_value *v = json_get(obj, name);
    if (!v)
        return missing(err, errlen, path, name);
    if (v->type != type && !(type == JSON_TRUE && v->type == JSON_FALSE))
        return mistyped(err, errlen, path, name, type_names[type]);
    *out = v;
    return 0;
}

static int is_count(const json_value *v)
{
    return v->type == JSON_NUMBER && v->number >= 0 && v->number <= DS_MAX_COUNT &&
           v->number == floor(v->number);
}

static int get_count(const json_value *obj, const char *path, const char *name,
                     uint64_t *out, char *err, size_t errlen)
{
    const json_value *v = json_get(obj, name);
    if (!v)
        return missing(err, errlen, path, name);
    if (!is_count(v))
        return mistyped(err, errlen, path, name, "a non-negative integer (at most 2^53)");
    *out = (uint64_t)v->number;
    return 0;
}

static int get_text(const json_value *obj, const char *path, const char *name, ds_text *out,
                    char *err, size_t errlen)
{
    const json_value *v;
    if (get_member(obj, path, name, JSON_STRING, &v, err, errlen))
        return -1;
    out->s = v->string;
    out->len = v->len;
    return 0;
}

/* Check an array of {key, <values>...} objects at path into *rows. */
static int load_rows(const json_value *arr, const char *path, const char *const *values,
                     size_t nvalues, ds_rows *rows, int *nomem, char *err, size_t errlen)
{
    char where[128];

    rows->n = 0;
    rows->rows = lethe_calloc(arr->len, sizeof(*rows->rows));
    if (!rows->rows) {
        lethe_fail(err, errlen, -1, "datasheet: out of memory");
        *nomem = 1;
        return -1;
    }
    for (size_t i = 0; i < arr->len; i++) {
        const json_value *item = arr->items[i];
        ds_row *r = &rows->rows[i];
        snprintf(where, sizeof(where), "%s[%zu]", path, i);
        if (item->type != JSON_OBJECT) {
            lethe_fail(err, errlen, -1, "datasheet: field %s must be an object", where);
            return -1;
        }
        if (get_text(item, where, "key", &r->key, err, errlen))
            return -1;
        for (size_t k = 0; k < nvalues; k++)
            if (get_count(item, where, values[k], &r->v[k], err, errlen))
                return -1;
        rows->n = i + 1;
    }
    return 0;
}

/* The schema version: present, a number, and the one this renderer reads. */
static int ds_check_version(const json_value *root, char *err, size_t errlen)
{
    const json_value *v = json_get(root, "lethe_datasheet");
    if (!v)
        return missing(err, errlen, "", "lethe_datasheet");
    if (v->type != JSON_NUMBER || v->number != DS_VERSION) {
        if (v->type == JSON_NUMBER && fabs(v->number) < 1e9)
            lethe_fail(err, errlen, -1,
                       "datasheet: unsupported lethe_datasheet version %.17g (this renderer "
                       "reads version %d)", v->number, DS_VERSION);
        else
            lethe_fail(err, errlen, -1,
                       "datasheet: lethe_datasheet must be the schema version number %d",
                       DS_VERSION);
        return -1;
    }
    return 0;
}

/* "store" and "totals". */
static int ds_load_store_totals(const json_value *root, datasheet *d, char *err, size_t errlen)
{
    const json_value *store, *totals;

    if (get_member(root, "", "store", JSON_OBJECT, &store, err, errlen) ||
        get_text(store, "store", "path", &d->store_path, err, errlen) ||
        get_count(store, "store", "format_version", &d->store_format_version, err, errlen) ||
        get_text(store, "store", "created_at", &d->store_created_at, err, errlen) ||
        get_text(store, "store", "model", &d->store_model, err, errlen))
        return -1;

    if (get_member(root, "", "totals", JSON_OBJECT, &totals, err, errlen))
        return -1;
    for (size_t i = 0; i < DS_N_TOTALS; i++)
        if (get_count(totals, "totals", totals_spec[i].field, &d->totals[i], err, errlen))
            return -1;
    return 0;
}

/* "by": one array of rows per breakdown, in by_spec's order. */
static int ds_load_by(const json_value *root, datasheet *d, char *err, size_t errlen)
{
    const json_value *by, *arr;
    char where[128];

    if (get_member(root, "", "by", JSON_OBJECT, &by, err, errlen))
        return -1;
    for (size_t i = 0; i < DS_N_BY; i++) {
        if (get_member(by, "by", by_spec[i].field, JSON_ARRAY, &arr, err, errlen))
            return -1;
        snprintf(where, sizeof(where), "by.%s", by_spec[i].field);
        if (load_rows(arr, where, by_values, LETHE_ARRAY_LEN(by_values), &d->by[i], &d->nomem,
                      err, errlen))
            return -1;
    }
    return 0;
}

/* "policy": an array of {key, allows: [string...]}. */
static int ds_load_policy(const json_value *root, datasheet *d, char *err, size_t errlen)
{
    const json_value *arr;
    char where[128];

    if (get_member(root, "", "policy", JSON_ARRAY, &arr, err, errlen))
        return -1;
    d->policy = lethe_calloc(arr->len, sizeof(*d->policy));
    if (!d->policy) {
        lethe_fail(err, errlen, -1, "datasheet: out of memory");
        d->nomem = 1;
        return -1;
    }
    for (size_t i = 0; i < arr->len; i++) {
        const json_value *item = arr->items[i], *allows;
        snprintf(where, sizeof(where), "policy[%zu]", i);
        if (item->type != JSON_OBJECT) {
            lethe_fail(err, errlen, -1, "datasheet: field %s must be an object", where);
            return -1;
        }
        if (get_text(item, where, "key", &d->policy[i].key, err, errlen) ||
            get_member(item, where, "allows", JSON_ARRAY, &allows, err, errlen))
            return -1;
        for (size_t k = 0; k < allows->len; k++) {
            if (allows->items[k]->type != JSON_STRING) {
                lethe_fail(err, errlen, -1, "datasheet: field %s.allows[%zu] must be a string",
                           where, k);
                return -1;
            }
        }
        d->policy[i].allows = allows;
        d->n_policy = i + 1;
    }
    return 0;
}

/* The optional "models": an array of objects with string name, version,
 * precision, retired_at (or null) and count templates (older datasheets
 * have none). */
static int ds_load_models(const json_value *root, datasheet *d, char *err, size_t errlen)
{
    const json_value *arr = json_get(root, "models"), *v;
    char where[64];
    uint64_t n;
    if (!arr)
        return 0;
    if (arr->type != JSON_ARRAY)
        return mistyped(err, errlen, "", "models", "an array");
    for (size_t i = 0; i < arr->len; i++) {
        const json_value *item = arr->items[i];
        snprintf(where, sizeof(where), "models[%zu]", i);
        if (item->type != JSON_OBJECT) {
            lethe_fail(err, errlen, -1, "datasheet: field %s must be an object", where);
            return -1;
        }
        if (get_member(item, where, "name", JSON_STRING, &v, err, errlen) ||
            get_member(item, where, "version", JSON_STRING, &v, err, errlen) ||
            get_member(item, where, "precision", JSON_STRING, &v, err, errlen) ||
            get_count(item, where, "templates", &n, err, errlen))
            return -1;
        v = json_get(item, "retired_at");
        if (v && v->type != JSON_STRING && v->type != JSON_NULL)
            return mistyped(err, errlen, where, "retired_at", "a string");
    }
    d->models = arr;
    return 0;
}

/* "log", then the optional "integrity". */
static int ds_load_log(const json_value *root, datasheet *d, char *err, size_t errlen)
{
    const json_value *v, *log;

    if (get_member(root, "", "log", JSON_OBJECT, &log, err, errlen) ||
        get_count(log, "log", "entries", &d->log_entries, err, errlen) ||
        get_text(log, "log", "head", &d->log_head, err, errlen) ||
        get_member(log, "log", "intact", JSON_TRUE, &v, err, errlen))
        return -1;
    d->log_intact = v->type == JSON_TRUE;
    v = json_get(log, "first_bad");
    if (!v)
        return missing(err, errlen, "log", "first_bad");
    if (v->type != JSON_NULL) {
        if (!is_count(v))
            return mistyped(err, errlen, "log", "first_bad", "null or an entry number");
        d->log_has_first_bad = 1;
        d->log_first_bad = (uint64_t)v->number;
    }
    if (d->log_intact && d->log_has_first_bad) {
        lethe_fail(err, errlen, -1,
                   "datasheet: log.intact is true but log.first_bad names an entry");
        return -1;
    }
    /* optional: the catalog's content against its kept digest */
    const json_value *integ = json_get(root, "integrity");
    if (integ) {
        if (integ->type != JSON_OBJECT)
            return mistyped(err, errlen, "", "integrity", "an object");
        v = json_get(integ, "digest_matches");
        if (!v || (v->type != JSON_TRUE && v->type != JSON_FALSE))
            return mistyped(err, errlen, "integrity", "digest_matches", "true or false");
        d->digest_mismatch = v->type == JSON_FALSE;
    }
    return 0;
}

/* Check the document against the schema into *d, member by member in the
 * schema's order, so that the first problem found is the one reported. On
 * failure *d may hold arrays already loaded: ds_clear() releases them. */
static int ds_load(const json_value *root, datasheet *d, char *err, size_t errlen)
{
    const json_value *searches, *arr;

    assert(strcmp(totals_spec[T_PHOTOS].field, "photos") == 0);
    assert(strcmp(totals_spec[T_SEARCHES].field, "searches") == 0);
    assert(strcmp(totals_spec[T_TEMPLATES].field, "templates") == 0);
    memset(d, 0, sizeof(*d));
    if (root->type != JSON_OBJECT) {
        lethe_fail(err, errlen, -1, "datasheet: the document must be a JSON object");
        return -1;
    }
    if (ds_check_version(root, err, errlen) ||
        get_text(root, "", "generated_at", &d->generated_at, err, errlen) ||
        ds_load_store_totals(root, d, err, errlen) || ds_load_by(root, d, err, errlen) ||
        ds_load_policy(root, d, err, errlen) || ds_load_models(root, d, err, errlen))
        return -1;

    if (get_member(root, "", "searches", JSON_OBJECT, &searches, err, errlen) ||
        get_member(searches, "searches", "by_purpose", JSON_ARRAY, &arr, err, errlen) ||
        load_rows(arr, "searches.by_purpose", search_values, LETHE_ARRAY_LEN(search_values),
                  &d->by_purpose, &d->nomem, err, errlen) ||
        get_member(searches, "searches", "by_actor", JSON_ARRAY, &arr, err, errlen) ||
        load_rows(arr, "searches.by_actor", search_values, LETHE_ARRAY_LEN(search_values),
                  &d->by_actor, &d->nomem, err, errlen))
        return -1;

    return ds_load_log(root, d, err, errlen);
}

/* ------------------------------------------------------------------ */
/* Output buffer                                                       */
/* ------------------------------------------------------------------ */

typedef struct sb {
    char *buf;
    size_t len, cap;
    int failed; /* out of memory: everything after is dropped */
} sb;

static void sb_put(sb *b, const char *s, size_t n)
{
    size_t need;

    if (b->failed)
        return;
    if (!lethe_add_size(b->len, n, &need) || !lethe_add_size(need, 1, &need)) {
        b->failed = 1;
        return;
    }
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 8192;
        char *nb;
        while (cap < need)
            cap = cap > SIZE_MAX / 2 ? need : cap * 2;
        nb = lethe_realloc(b->buf, cap);
        if (!nb) {
            b->failed = 1;
            return;
        }
        b->buf = nb;
        b->cap = cap;
    }
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = 0;
}

static void sb_puts(sb *b, const char *s) { sb_put(b, s, strlen(s)); }

/* Short formatted pieces (numbers, fixed words); never user text. */
static void sb_printf(sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sb *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    assert(n >= 0 && (size_t)n < sizeof(tmp));
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        b->failed = 1;
        return;
    }
    sb_put(b, tmp, (size_t)n);
}

/* ------------------------------------------------------------------ */
/* Untrusted text                                                      */
/* ------------------------------------------------------------------ */

enum mode { MODE_MD, MODE_HTML };

#define CP_REPLACEMENT 0xFFFDu
#define CP_NEWLINE 0x21B5u /* ↵ */

/* Decode one code point from s[0..n), n >= 1; returns the bytes used. Invalid
 * sequences (overlong, surrogate, out of range, truncated) give U+FFFD for
 * their first byte. */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned c = s[0];
    size_t need;
    uint32_t v, min;

    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1, v = c & 0x1F, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2, v = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3, v = c & 0x07, min = 0x10000;
    } else {
        *cp = CP_REPLACEMENT;
        return 1;
    }
    if (n <= need) {
        *cp = CP_REPLACEMENT;
        return 1;
    }
    for (size_t k = 1; k <= need; k++) {
        if ((s[k] & 0xC0) != 0x80) {
            *cp = CP_REPLACEMENT;
            return 1;
        }
        v = (v << 6) | (s[k] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
        *cp = CP_REPLACEMENT;
        return 1;
    }
    *cp = v;
    return need + 1;
}

static void put_cp(sb *b, uint32_t cp)
{
    char o[4];
    size_t n;
    if (cp < 0x80) {
        o[0] = (char)cp, n = 1;
    } else if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6)), o[1] = (char)(0x80 | (cp & 0x3F)), n = 2;
    } else if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12)), o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F)), n = 3;
    } else {
        o[0] = (char)(0xF0 | (cp >> 18)), o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), o[3] = (char)(0x80 | (cp & 0x3F)), n = 4;
    }
    sb_put(b, o, n);
}

/* What a code point is shown as: line breaks as ↵, tabs as spaces, controls
 * and bidi embeddings, overrides and isolates as U+FFFD. */
static uint32_t visible_cp(uint32_t cp)
{
    if (cp == '\n' || cp == '\r' || cp == 0x2028 || cp == 0x2029 || cp == 0x85)
        return CP_NEWLINE;
    if (cp == '\t')
        return ' ';
    if (cp < 0x20 || (cp >= 0x7F && cp < 0xA0))
        return CP_REPLACEMENT;
    if ((cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069))
        return CP_REPLACEMENT;
    return cp;
}

static int is_w(uint32_t cp) { return cp == 'w' || cp == 'W'; }

/*
 * Append untrusted text, escaped for mode, keeping at most max_cp code points
 * (0: all; a cut is marked with "…", counted in max_cp).
 */
static void put_text(sb *b, ds_text t, enum mode mode, size_t max_cp)
{
    const unsigned char *s = (const unsigned char *)t.s;
    size_t i = 0, count = 0;
    uint32_t p1 = 0, p2 = 0, p3 = 0; /* the last three code points shown */

    while (i < t.len) {
        uint32_t cp;
        size_t step = utf8_next(s + i, t.len - i, &cp);
        if (cp == '\r' && i + 1 < t.len && s[i + 1] == '\n')
            step++;
        i += step;
        cp = visible_cp(cp);
        if (max_cp && count + 1 == max_cp && i < t.len) {
            if (p1 == ' ' && !b->failed)
                b->len--; /* "long text …" reads better as "long text…" */
            sb_puts(b, "\xE2\x80\xA6"); /* … */
            return;
        }
        if (mode == MODE_HTML) {
            switch (cp) {
            case '&': sb_puts(b, "&amp;"); break;
            case '<': sb_puts(b, "&lt;"); break;
            case '>': sb_puts(b, "&gt;"); break;
            case '"': sb_puts(b, "&quot;"); break;
            case '\'': sb_puts(b, "&#39;"); break;
            case ':': /* no "http://" in the page, not even as text */
                sb_puts(b, t.len - i >= 2 && s[i] == '/' && s[i + 1] == '/' ? "&#58;" : ":");
                break;
            default: put_cp(b, cp);
            }
        } else {
            /* Backslash-escape what could end a table cell (|), start code,
             * emphasis, strikethrough, math, links, inline HTML or entities
             * (& < > [ ]), make an autolink (the ':' of "://", '@', the dot
             * of "www."), or read as a block marker at the start. */
            int esc = (cp < 0x80 && cp != 0 && strchr("\\`*_[]<>|&~$@", (int)cp) != NULL) ||
                      (cp == ':' && t.len - i >= 2 && s[i] == '/' && s[i + 1] == '/') ||
                      (count == 0 && (cp == '#' || cp == '-' || cp == '+' || cp == '=' ||
                                      cp == '!')) ||
                      (cp == '.' && is_w(p1) && is_w(p2) && is_w(p3));
            if (esc)
                sb_put(b, "\\", 1);
            put_cp(b, cp);
        }
        p3 = p2, p2 = p1, p1 = cp;
        count++;
    }
}

static void put_str(sb *b, const char *s, enum mode mode)
{
    ds_text t = {s, strlen(s)};
    put_text(b, t, mode, 0);
}

/* A key: "" is shown as an emphasised "(not given)". */
static void put_key(sb *b, ds_text t, enum mode mode, size_t max_cp)
{
    if (t.len == 0)
        sb_puts(b, mode == MODE_HTML ? "<em class=\"ng\">(not given)</em>" : "*(not given)*");
    else
        put_text(b, t, mode, max_cp);
}

/* ------------------------------------------------------------------ */
/* Numbers                                                             */
/* ------------------------------------------------------------------ */

/* v with thousands separators: 13233 -> "13,233". */
static const char *fmt_count(char buf[32], uint64_t v)
{
    char digits[24];
    int n = snprintf(digits, sizeof(digits), "%llu", (unsigned long long)v), o = 0;
    for (int i = 0; i < n; i++) {
        if (i > 0 && (n - i) % 3 == 0)
            buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = 0;
    return buf;
}

/* part/whole as a percentage with one decimal, rounded half up; "–" when
 * whole is 0 and "<0.1%" for a share that is not zero but rounds to it. */
static const char *fmt_share(char buf[32], uint64_t part, uint64_t whole)
{
    uint64_t permille;
    if (whole == 0)
        return "\xE2\x80\x93"; /* – */
    /* part, whole <= 2^53: part * 1000 + whole / 2 < 2^64 */
    permille = (part * 1000 + whole / 2) / whole;
    if (permille == 0 && part > 0)
        return "<0.1%";
    snprintf(buf, 32, "%llu.%llu%%", (unsigned long long)(permille / 10),
             (unsigned long long)(permille % 10));
    return buf;
}

static void put_count(sb *b, uint64_t v)
{
    char buf[32];
    sb_puts(b, fmt_count(buf, v));
}

static void put_share(sb *b, uint64_t part, uint64_t whole, enum mode mode)
{
    char buf[32];
    put_str(b, fmt_share(buf, part, whole), mode);
}

/* The log's status in one sentence (without a trailing full stop). */
static void put_log_sentence(sb *b, const datasheet *d, enum mode mode)
{
    const char *strong = mode == MODE_HTML ? "<strong>" : "**";
    const char *strong_end = mode == MODE_HTML ? "</strong>" : "**";
    if (d->digest_mismatch) {
        sb_puts(b, strong);
        sb_puts(b, "Catalog edited outside lethe.");
        sb_puts(b, strong_end);
        sb_puts(b, " Its content does not match the digest lethe keeps with every change "
                   "(lethe digest --full): rows were added, removed or changed by other means, "
                   "and no figure below can be relied on. ");
    }
    sb_puts(b, strong);
    sb_puts(b, d->log_intact ? "Audit log intact." : "Audit log NOT intact.");
    sb_puts(b, strong_end);
    if (d->log_intact) {
        sb_puts(b, " All ");
        put_count(b, d->log_entries);
        sb_puts(b, " entries of the hash chain verify, up to its recorded head");
        return;
    }
    sb_puts(b, " The hash chain of ");
    put_count(b, d->log_entries);
    sb_puts(b, " entries ");
    if (d->log_has_first_bad) {
        sb_puts(b, "fails first at entry ");
        sb_puts(b, strong);
        put_count(b, d->log_first_bad);
        sb_puts(b, strong_end);
        sb_puts(b, ": that entry and every later one may have been altered, removed or "
                   "inserted, and the counts of searches below cannot be relied on");
    } else {
        sb_puts(b, "does not verify (the first failing entry is not known): no entry can "
                   "be relied on, nor the counts of searches below");
    }
}

static const char about_text[] =
    "It accounts for every face the store holds: where each photo came from, under "
    "which license, jurisdiction and consent basis; how many faces were found; how many "
    "face templates are stored (only templates can be searched) and how many photos the "
    "consent policy refused (catalogued, but no template kept); who searched the store "
    "and for which stated purpose; the consent policy in force; and whether the "
    "tamper-evident audit log is intact. All figures are counts from the store's "
    "catalog at the time of generation.";

static const char share_note[] =
    "Share of photos is this row's photos divided by all photos. A photo with several "
    "provenance records counts under each of them, so a column can add up to more "
    "than 100%.";

/* ------------------------------------------------------------------ */
/* Markdown                                                            */
/* ------------------------------------------------------------------ */

static void md_breakdown(sb *b, const datasheet *d, size_t which)
{
    const ds_rows *r = &d->by[which];
    sb_printf(b, "\n## %s\n\n", by_spec[which].title);
    sb_printf(b, "| %s | Photos | Share of photos | Faces | Templates | Refused |\n",
              by_spec[which].column);
    sb_puts(b, "|---|---:|---:|---:|---:|---:|\n");
    if (r->n == 0)
        sb_puts(b, "| *none* | 0 | \xE2\x80\x93 | 0 | 0 | 0 |\n");
    for (size_t i = 0; i < r->n; i++) {
        const ds_row *row = &r->rows[i];
        sb_puts(b, "| ");
        put_key(b, row->key, MODE_MD, 0);
        sb_puts(b, " | ");
        put_count(b, row->v[V_PHOTOS]);
        sb_puts(b, " | ");
        put_share(b, row->v[V_PHOTOS], d->totals[T_PHOTOS], MODE_MD);
        for (size_t k = V_FACES; k <= V_REFUSED; k++) {
            sb_puts(b, " | ");
            put_count(b, row->v[k]);
        }
        sb_puts(b, " |\n");
    }
}

static void md_searches(sb *b, const ds_rows *r, const char *title, const char *column,
                        uint64_t total)
{
    sb_printf(b, "\n### %s\n\n| %s | Searches | Share of searches | Results |\n", title,
              column);
    sb_puts(b, "|---|---:|---:|---:|\n");
    if (r->n == 0)
        sb_puts(b, "| *none* | 0 | \xE2\x80\x93 | 0 |\n");
    for (size_t i = 0; i < r->n; i++) {
        sb_puts(b, "| ");
        put_key(b, r->rows[i].key, MODE_MD, 0);
        sb_puts(b, " | ");
        put_count(b, r->rows[i].v[V_SEARCHES]);
        sb_puts(b, " | ");
        put_share(b, r->rows[i].v[V_SEARCHES], total, MODE_MD);
        sb_puts(b, " | ");
        put_count(b, r->rows[i].v[V_RESULTS]);
        sb_puts(b, " |\n");
    }
}

/* Whether t is a non-empty run of hex digits (shown as code). */
static int is_hex(ds_text t)
{
    if (t.len == 0)
        return 0;
    for (size_t i = 0; i < t.len; i++) {
        char c = t.s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return 0;
    }
    return 1;
}

/* The title, what the document is, the store's particulars and the log's
 * status. */
static void md_head(sb *b, const datasheet *d)
{
    sb_puts(b, "# Datasheet of a lethe face store\n\n");
    sb_puts(b, "**What this is.** This datasheet describes the lethe face-recognition store "
               "at ");
    put_key(b, d->store_path, MODE_MD, 0);
    sb_puts(b, ". ");
    sb_puts(b, about_text);
    sb_puts(b, "\n\n");
    sb_puts(b, "- Generated: ");
    put_key(b, d->generated_at, MODE_MD, 0);
    sb_puts(b, "\n- Store created: ");
    put_key(b, d->store_created_at, MODE_MD, 0);
    sb_printf(b, "\n- Store format version: %llu\n- Face model: ",
              (unsigned long long)d->store_format_version);
    put_key(b, d->store_model, MODE_MD, 0);
    sb_puts(b, "\n\n");
    put_log_sentence(b, d, MODE_MD);
    sb_puts(b, ".\n\n");
}

/* The summary table: every total with its share and meaning. */
static void md_summary(sb *b, const datasheet *d)
{
    sb_puts(b, "## Summary\n\n| Measure | Count | Share of photos | Meaning |\n");
    sb_puts(b, "|---|---:|---:|---|\n");
    for (size_t i = 0; i < DS_N_TOTALS; i++) {
        sb_printf(b, "| %s | ", totals_spec[i].label);
        put_count(b, d->totals[i]);
        sb_puts(b, " | ");
        if (totals_spec[i].share)
            put_share(b, d->totals[i], d->totals[T_PHOTOS], MODE_MD);
        sb_printf(b, " | %s |\n", totals_spec[i].meaning);
    }
}

static void md_policy(sb *b, const datasheet *d)
{
    sb_puts(b, "\n## Consent policy in force\n\nA photo gets face templates only if the "
               "consent basis of one of its provenance records is accepted for its "
               "jurisdiction (and no record withdraws consent); otherwise it is refused.\n\n"
               "| Jurisdiction | Consent bases accepted |\n|---|---|\n");
    if (d->n_policy == 0)
        sb_puts(b, "| *none* | *no policy rules* |\n");
    for (size_t i = 0; i < d->n_policy; i++) {
        const json_value *allows = d->policy[i].allows;
        sb_puts(b, "| ");
        put_key(b, d->policy[i].key, MODE_MD, 0);
        sb_puts(b, " | ");
        if (allows->len == 0)
            sb_puts(b, "*none: every photo is refused*");
        for (size_t k = 0; k < allows->len; k++) {
            ds_text t = {allows->items[k]->string, allows->items[k]->len};
            if (k)
                sb_puts(b, ", ");
            put_key(b, t, MODE_MD, 0);
        }
        sb_puts(b, " |\n");
    }
}

/* The models that computed the templates (when the datasheet lists them). */
static void models_render(sb *b, const datasheet *d, enum mode mode)
{
    if (!d->models)
        return;
    sb_puts(b, mode == MODE_MD
                   ? "\n## Models\n\nEach template records the model that computed it; a "
                     "search compares a query only with templates of its own model. A "
                     "retired model's templates were erased.\n\n"
                     "| Model | Precision | Templates | State |\n|---|---|---:|---|\n"
                   : "<section id=\"models\">\n<h2>Models</h2>\n<p>Each template records "
                     "the model that computed it; a search compares a query only with "
                     "templates of its own model. A retired model's templates were "
                     "erased.</p>\n<table>\n<tr><th>Model</th><th>Precision</th>"
                     "<th>Templates</th><th>State</th></tr>\n");
    for (size_t i = 0; i < d->models->len; i++) {
        const json_value *m = d->models->items[i], *r = json_get(m, "retired_at");
        const json_value *name = json_get(m, "name"), *ver = json_get(m, "version"),
                         *prec = json_get(m, "precision");
        ds_text tn = {name->string, name->len}, tv = {ver->string, ver->len},
                tp = {prec->string, prec->len};
        sb_puts(b, mode == MODE_MD ? "| " : "<tr><td>");
        put_key(b, tn, mode, 0);
        sb_puts(b, "@");
        put_key(b, tv, mode, 0);
        sb_puts(b, mode == MODE_MD ? " | " : "</td><td>");
        put_key(b, tp, mode, 0);
        sb_puts(b, mode == MODE_MD ? " | " : "</td><td>");
        put_count(b, (uint64_t)json_get(m, "templates")->number);
        sb_puts(b, mode == MODE_MD ? " | " : "</td><td>");
        if (r && r->type == JSON_STRING) {
            ds_text tr = {r->string, r->len};
            sb_puts(b, "retired ");
            put_key(b, tr, mode, 0);
        } else {
            sb_puts(b, "in use");
        }
        sb_puts(b, mode == MODE_MD ? " |\n" : "</td></tr>\n");
    }
    if (mode != MODE_MD)
        sb_puts(b, "</table>\n</section>\n");
}

/* The audit log: its status again, then entries, head hash and status. */
static void md_log(sb *b, const datasheet *d)
{
    sb_puts(b, "\n## Audit log\n\n");
    put_log_sentence(b, d, MODE_MD);
    sb_puts(b, ".\n\n| Entries | Head hash | Status |\n|---:|---|---|\n| ");
    put_count(b, d->log_entries);
    sb_puts(b, " | ");
    if (is_hex(d->log_head)) {
        sb_puts(b, "`");
        sb_put(b, d->log_head.s, d->log_head.len);
        sb_puts(b, "`");
    } else {
        put_key(b, d->log_head, MODE_MD, 0);
    }
    if (d->log_intact) {
        sb_puts(b, " | intact |\n");
    } else if (d->log_has_first_bad) {
        sb_puts(b, " | **NOT intact: first bad entry ");
        put_count(b, d->log_first_bad);
        sb_puts(b, "** |\n");
    } else {
        sb_puts(b, " | **NOT intact** |\n");
    }
}

/* ------------------------------------------------------------------ */
/* Match evidence (the model's calibration table at this store's size)  */
/* ------------------------------------------------------------------ */

/* x > 0 as "3.2e-6" with integer arithmetic (no locale). */
static const char *fmt_rate(char buf[32], double x)
{
    if (!(x > 0) || x >= 1) {
        snprintf(buf, 32, "%s", x >= 1 ? "1" : "0");
        return buf;
    }
    int e = (int)floor(log10(x));
    long m = lround(x / pow(10, e) * 10);
    if (m >= 100) {
        m /= 10;
        e++;
    }
    snprintf(buf, 32, "%ld.%lde%d", m / 10, m % 10, e);
    return buf;
}

/* A distance as "0.6000", or "none" when it is no limit. */
static const char *fmt_dist(char buf[32], float t)
{
    if (!isfinite(t)) {
        snprintf(buf, 32, "none");
        return buf;
    }
    long v = lround((double)t * 10000);
    snprintf(buf, 32, "%ld.%04ld", v / 10000, v % 10000);
    return buf;
}

static const float evidence_distances[] = {0.40f, 0.45f, 0.50f, 0.55f, 0.60f, 0.70f};
static const double evidence_fpirs[] = {0.1, 0.01, 0.001};
static const char *const fpir_text[] = {"0.1", "0.01", "0.001"};

static const char evidence_note[] =
    "What a search result's distance means in this store, from the face model's calibration "
    "table (the distances between photos of different people measured once on LFW, people "
    "A-M; it holds nothing of this store). The false-match rate is the share of pairs of "
    "photos of two different people as close or closer; the strangers expected are this "
    "store's templates times that rate; the tiers are strong (fewer than 0.01 strangers), "
    "moderate (0.01 to 0.1), weak (0.1 to 1) and none (1 or more). search --fpir P "
    "returns only faces closer than the threshold at which a search for someone the store "
    "does not hold returns anyone with probability at most P.";

/* One row of the distance table: its cells' text. */
static void evidence_row(float dist, uint64_t templates, char c[4][32])
{
    double fmr = 1;
    int tier = LETHE_TIER_NONE;
    lethe_calibration_rates(dist, &fmr, NULL);
    lethe_calibration_tier(fmr * (double)templates, &tier);
    fmt_dist(c[0], dist);
    fmt_rate(c[1], fmr);
    fmt_rate(c[2], fmr * (double)templates);
    snprintf(c[3], 32, "%s", lethe_tier_name(tier));
}

static void evidence_render(sb *b, const datasheet *d, enum mode mode)
{
    uint64_t n = d->totals[T_TEMPLATES];
    char c[4][32];
    int md = mode == MODE_MD;
    sb_puts(b, md ? "\n## Match evidence\n\n" : "<section id=\"evidence\">\n<h2>Match "
                                                "evidence</h2>\n<p>");
    sb_puts(b, evidence_note);
    sb_printf(b, md ? " This store holds %llu templates.\n\n| Distance | False-match rate | "
                      "Strangers expected this close | Tier |\n|---:|---:|---:|---|\n"
                    : " This store holds %llu templates.</p>\n<table>\n<thead><tr><th "
                      "class=\"num\">Distance</th><th class=\"num\">False-match rate</th><th "
                      "class=\"num\">Strangers expected this close</th><th>Tier</th></tr>"
                      "</thead>\n<tbody>\n", (unsigned long long)n);
    for (size_t i = 0; i < LETHE_ARRAY_LEN(evidence_distances); i++) {
        evidence_row(evidence_distances[i], n, c);
        sb_printf(b, md ? "| %s | %s | %s | %s |\n"
                        : "<tr><td class=\"num\">%s</td><td class=\"num\">%s</td><td "
                          "class=\"num\">%s</td><td>%s</td></tr>\n", c[0], c[1], c[2], c[3]);
    }
    sb_puts(b, md ? "\n| --fpir | Threshold at this store's size |\n|---:|---:|\n"
                  : "</tbody>\n</table>\n<table>\n<thead><tr><th class=\"num\">--fpir</th><th "
                    "class=\"num\">Threshold at this store's size</th></tr></thead>\n<tbody>\n");
    for (size_t i = 0; i < LETHE_ARRAY_LEN(evidence_fpirs); i++) {
        float t = INFINITY;
        lethe_calibration_threshold(evidence_fpirs[i], n, &t);
        sb_printf(b, md ? "| %s | %s |\n" : "<tr><td class=\"num\">%s</td><td class=\"num\">"
                                            "%s</td></tr>\n", fpir_text[i], fmt_dist(c[0], t));
    }
    if (!md)
        sb_puts(b, "</tbody>\n</table>\n</section>\n");
}

static void md_render(sb *b, const datasheet *d)
{
    md_head(b, d);
    md_summary(b, d);

    for (size_t i = 0; i < DS_N_BY; i++) {
        md_breakdown(b, d, i);
        if (i == 0) {
            sb_puts(b, "\n");
            sb_puts(b, share_note);
            sb_puts(b, " *Templates* are stored face templates (searchable); *refused* "
                       "counts photos catalogued without templates because the consent "
                       "policy refused them.\n");
        }
    }

    md_policy(b, d);
    models_render(b, d, MODE_MD);

    sb_puts(b, "\n## Searches\n\nEvery search states a purpose and is recorded in the audit "
               "log with its actor and the number of results it returned.\n");
    md_searches(b, &d->by_purpose, "Searches by purpose", "Purpose", d->totals[T_SEARCHES]);
    md_searches(b, &d->by_actor, "Searches by actor", "Actor", d->totals[T_SEARCHES]);
    evidence_render(b, d, MODE_MD);

    md_log(b, d);
}

/* ------------------------------------------------------------------ */
/* HTML                                                                */
/* ------------------------------------------------------------------ */

static const char html_css[] =
    ":root{color-scheme:light}\n"
    "body{margin:0;background:#fff;color:#1a202c;font:15px/1.45 system-ui,-apple-system,"
    "\"Segoe UI\",Roboto,\"Helvetica Neue\",Arial,sans-serif}\n"
    "main{max-width:980px;margin:0 auto;padding:24px 28px}\n"
    "h1{font-size:1.7em;margin:0 0 .3em}\n"
    "h2{font-size:1.25em;margin:1.8em 0 .5em;padding-bottom:.2em;"
    "border-bottom:1px solid #cbd5e0}\n"
    "h3{font-size:1.05em;margin:1.3em 0 .4em}\n"
    "code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.88em;"
    "overflow-wrap:anywhere}\n"
    "dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:.6em 0;"
    "color:#4a5568;font-size:.92em}\n"
    "dl.meta dt{font-weight:600}dl.meta dd{margin:0;overflow-wrap:anywhere}\n"
    ".note{color:#4a5568;font-size:.9em}\n"
    ".ng,.none{color:#718096;font-style:italic}\n"
    ".log{margin:1em 0;padding:10px 14px;border-radius:6px}\n"
    ".log.ok{background:#f0fff4;border:1px solid #68d391}\n"
    ".log.bad{background:#fff5f5;border:2px solid #e53e3e;color:#742a2a}\n"
    ".cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:10px;"
    "margin:1em 0}\n"
    ".card{border:1px solid #e2e8f0;border-radius:6px;padding:8px 12px}\n"
    ".card .n{display:block;font-size:1.45em;font-weight:600;"
    "font-variant-numeric:tabular-nums}\n"
    ".card .l{color:#4a5568;font-size:.85em}\n"
    "table{width:100%;border-collapse:collapse;margin:.5em 0 1.2em;font-size:.92em}\n"
    "caption{text-align:left;color:#4a5568;font-size:.9em;padding-bottom:.3em}\n"
    "th,td{padding:4px 8px;border-bottom:1px solid #e2e8f0;text-align:left;"
    "vertical-align:top}\n"
    "thead th{background:#f7fafc;border-bottom:2px solid #a0aec0}\n"
    "th[scope=row]{font-weight:normal;overflow-wrap:anywhere}\n"
    ".num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}\n"
    "figure{margin:.8em 0}\n"
    "figure svg{display:block;width:100%;max-width:760px;height:auto}\n"
    "svg text{font:12px system-ui,-apple-system,\"Segoe UI\",Roboto,Arial,sans-serif;"
    "fill:#1a202c}\n"
    "svg .v{fill:#4a5568;font-size:11px}\n"
    "svg .axis{stroke:#a0aec0;stroke-width:1}\n"
    "svg .ngl{font-style:italic;fill:#718096}\n"
    ".s1{fill:#2b6cb0}.s2{fill:#dd6b20}.s3{fill:#2f855a}.s4{fill:#805ad5}\n"
    "@media print{body{font-size:10.5pt}main{max-width:none;padding:0}"
    "h2,h3{break-after:avoid}figure,tr,.card,.log{break-inside:avoid}"
    "thead{display:table-header-group}"
    "*{-webkit-print-color-adjust:exact;print-color-adjust:exact}}\n";

/* A series of a bar chart: which value of the rows, its name and class. */
typedef struct chart_series {
    size_t index;
    const char *name;
    const char *cls;
} chart_series;

/* Chart geometry, in SVG user units. */
enum {
    CH_W = 760,       /* total width */
    CH_LABEL_R = 226, /* labels end here (right-aligned) */
    CH_BAR_X = 236,   /* bars start here */
    CH_BAR_W = 380,   /* the longest bar */
    CH_TOP = 34,      /* room for the legend */
    CH_ROW = 34,      /* one row: two bars */
    CH_BAR_H = 12
};

/* Width in tenths of a unit of a bar for v when max fills CH_BAR_W; a
 * non-zero value gets at least one unit so that it stays visible. */
static uint64_t bar_tenths(uint64_t v, uint64_t max)
{
    uint64_t w;
    if (v == 0 || max == 0)
        return 0;
    w = (uint64_t)llround((double)v / (double)max * (CH_BAR_W * 10.0));
    return w < 10 ? 10 : w;
}

/*
 * A horizontal bar chart of two series side by side (each row: one bar per
 * series) over the first DS_CHART_MAX_ROWS rows, with a legend, truncated
 * labels and each bar's exact figure; the full key is in each row's <title>.
 */
static void html_chart(sb *b, const char *id, const char *title, const ds_rows *r,
                       const chart_series *s)
{
    size_t n = LETHE_MIN(r->n, (size_t)DS_CHART_MAX_ROWS);
    uint64_t max = 0;
    unsigned height = CH_TOP + (unsigned)n * CH_ROW + 8;

    if (r->n == 0) {
        sb_puts(b, "<p class=\"none\">Nothing to chart: no rows.</p>\n");
        return;
    }
    for (size_t i = 0; i < n; i++)
        max = LETHE_MAX(max, LETHE_MAX(r->rows[i].v[s[0].index], r->rows[i].v[s[1].index]));

    sb_printf(b, "<figure>\n<svg role=\"img\" "
                 "aria-labelledby=\"%s-t %s-d\" viewBox=\"0 0 %d %u\" width=\"%d\" "
                 "height=\"%u\">\n", id, id, CH_W, height, CH_W, height);
    sb_printf(b, "<title id=\"%s-t\">%s</title>\n", id, title);
    sb_printf(b, "<desc id=\"%s-d\">Horizontal bars: %s and %s for each row", id, s[0].name,
              s[1].name);
    if (n < r->n)
        sb_printf(b, " (the first %zu rows)", n);
    sb_puts(b, ". The table below gives the exact numbers.</desc>\n");
    sb_printf(b, "<clipPath id=\"%s-c\"><rect x=\"0\" y=\"0\" width=\"%d\" height=\"%u\"/>"
                 "</clipPath>\n", id, CH_LABEL_R + 2, height);
    /* legend */
    for (int k = 0; k < 2; k++) {
        int x = CH_BAR_X + k * 150;
        sb_printf(b, "<rect class=\"%s\" x=\"%d\" y=\"8\" width=\"12\" height=\"12\"/>"
                     "<text x=\"%d\" y=\"18\">%s</text>\n", s[k].cls, x, x + 17, s[k].name);
    }
    sb_printf(b, "<line class=\"axis\" x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%u\"/>\n", CH_BAR_X,
              CH_TOP - 4, CH_BAR_X, height - 4);
    for (size_t i = 0; i < n; i++) {
        const ds_row *row = &r->rows[i];
        unsigned y = CH_TOP + (unsigned)i * CH_ROW;
        sb_puts(b, "<g><title>");
        if (row->key.len == 0)
            sb_puts(b, "(not given)");
        else
            put_text(b, row->key, MODE_HTML, DS_TOOLTIP_CP);
        for (int k = 0; k < 2; k++) {
            sb_printf(b, "; %s: ", s[k].name);
            put_count(b, row->v[s[k].index]);
        }
        sb_puts(b, "</title>\n");
        sb_printf(b, "<text x=\"%d\" y=\"%u\" text-anchor=\"end\" clip-path=\"url(#%s-c)\"%s>",
                  CH_LABEL_R, y + CH_BAR_H + 5, id, row->key.len ? "" : " class=\"ngl\"");
        if (row->key.len == 0)
            sb_puts(b, "(not given)");
        else
            put_text(b, row->key, MODE_HTML, DS_LABEL_CP);
        sb_puts(b, "</text>\n");
        for (int k = 0; k < 2; k++) {
            uint64_t v = row->v[s[k].index], w = bar_tenths(v, max);
            unsigned by = y + (unsigned)k * (CH_BAR_H + 2);
            sb_printf(b, "<rect class=\"%s\" x=\"%d\" y=\"%u\" width=\"%llu.%llu\" "
                         "height=\"%d\"/>", s[k].cls, CH_BAR_X, by,
                      (unsigned long long)(w / 10), (unsigned long long)(w % 10), CH_BAR_H);
            sb_printf(b, "<text class=\"v\" x=\"%llu\" y=\"%u\">",
                      (unsigned long long)(CH_BAR_X + w / 10 + 5), by + CH_BAR_H - 2);
            put_count(b, v);
            sb_puts(b, "</text>\n");
        }
        sb_puts(b, "</g>\n");
    }
    sb_puts(b, "</svg>\n");
    if (n < r->n) {
        sb_printf(b, "<figcaption class=\"note\">The chart shows the first %zu of ", n);
        put_count(b, r->n);
        sb_puts(b, " rows; the table lists them all.</figcaption>\n");
    }
    sb_puts(b, "</figure>\n");
}

static void html_th_cols(sb *b, const char *const *cols, size_t n)
{
    sb_puts(b, "<thead><tr>");
    for (size_t i = 0; i < n; i++)
        sb_printf(b, "<th scope=\"col\"%s>%s</th>", i ? " class=\"num\"" : "", cols[i]);
    sb_puts(b, "</tr></thead>\n<tbody>\n");
}

static void html_td_count(sb *b, uint64_t v)
{
    sb_puts(b, "<td class=\"num\">");
    put_count(b, v);
    sb_puts(b, "</td>");
}

static void html_td_share(sb *b, uint64_t part, uint64_t whole)
{
    sb_puts(b, "<td class=\"num\">");
    put_share(b, part, whole, MODE_HTML);
    sb_puts(b, "</td>");
}

static void html_breakdown(sb *b, const datasheet *d, size_t which)
{
    static const chart_series series[2] = {
        {V_TEMPLATES, "templates stored", "s1"},
        {V_REFUSED, "photos refused by policy", "s2"},
    };
    const ds_rows *r = &d->by[which];
    const char *cols[] = {by_spec[which].column, "Photos", "Share of photos", "Faces",
                          "Templates", "Refused"};
    char id[32], title[96];

    snprintf(id, sizeof(id), "by-%s", by_spec[which].field);
    snprintf(title, sizeof(title), "Templates stored and photos refused, by %s",
             by_spec[which].field);
    sb_printf(b, "<section id=\"%s\">\n<h2>%s</h2>\n", id, by_spec[which].title);
    html_chart(b, id, title, r, series);
    sb_printf(b, "<table>\n<caption>%s: exact numbers</caption>\n", by_spec[which].title);
    html_th_cols(b, cols, LETHE_ARRAY_LEN(cols));
    if (r->n == 0)
        sb_puts(b, "<tr><th scope=\"row\" class=\"none\">none</th><td class=\"num\">0</td>"
                   "<td class=\"num\">\xE2\x80\x93</td><td class=\"num\">0</td>"
                   "<td class=\"num\">0</td><td class=\"num\">0</td></tr>\n");
    for (size_t i = 0; i < r->n; i++) {
        const ds_row *row = &r->rows[i];
        sb_puts(b, "<tr><th scope=\"row\">");
        put_key(b, row->key, MODE_HTML, 0);
        sb_puts(b, "</th>");
        html_td_count(b, row->v[V_PHOTOS]);
        html_td_share(b, row->v[V_PHOTOS], d->totals[T_PHOTOS]);
        for (size_t k = V_FACES; k <= V_REFUSED; k++)
            html_td_count(b, row->v[k]);
        sb_puts(b, "</tr>\n");
    }
    sb_puts(b, "</tbody>\n</table>\n</section>\n");
}

static void html_searches(sb *b, const ds_rows *r, const char *id, const char *title,
                          const char *column, uint64_t total)
{
    static const chart_series series[2] = {
        {V_SEARCHES, "searches", "s3"},
        {V_RESULTS, "results returned", "s4"},
    };
    const char *cols[] = {column, "Searches", "Share of searches", "Results"};
    char chart_title[96];

    snprintf(chart_title, sizeof(chart_title), "%s: searches and results returned", title);
    sb_printf(b, "<h3 id=\"%s-h\">%s</h3>\n", id, title);
    html_chart(b, id, chart_title, r, series);
    sb_printf(b, "<table>\n<caption>%s: exact numbers</caption>\n", title);
    html_th_cols(b, cols, LETHE_ARRAY_LEN(cols));
    if (r->n == 0)
        sb_puts(b, "<tr><th scope=\"row\" class=\"none\">none</th><td class=\"num\">0</td>"
                   "<td class=\"num\">\xE2\x80\x93</td><td class=\"num\">0</td></tr>\n");
    for (size_t i = 0; i < r->n; i++) {
        sb_puts(b, "<tr><th scope=\"row\">");
        put_key(b, r->rows[i].key, MODE_HTML, 0);
        sb_puts(b, "</th>");
        html_td_count(b, r->rows[i].v[V_SEARCHES]);
        html_td_share(b, r->rows[i].v[V_SEARCHES], total);
        html_td_count(b, r->rows[i].v[V_RESULTS]);
        sb_puts(b, "</tr>\n");
    }
    sb_puts(b, "</tbody>\n</table>\n");
}

static void html_card(sb *b, uint64_t v, const char *label)
{
    sb_puts(b, "<div class=\"card\"><span class=\"n\">");
    put_count(b, v);
    sb_printf(b, "</span><span class=\"l\">%s</span></div>\n", label);
}

/* From the doctype to the end of the header: the page's title and style,
 * the store's particulars, what the document is and the log's status. */
static void html_head(sb *b, const datasheet *d)
{
    sb_puts(b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
               "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
               "style-src 'unsafe-inline'\">\n"
               "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
               "<title>Datasheet of the lethe store ");
    put_key(b, d->store_path, MODE_HTML, 80);
    sb_puts(b, "</title>\n<style>\n");
    sb_puts(b, html_css);
    sb_puts(b, "</style>\n</head>\n<body>\n<main>\n<header>\n"
               "<h1>Datasheet of a lethe face store</h1>\n<dl class=\"meta\">\n<dt>Store</dt>"
               "<dd><code>");
    put_key(b, d->store_path, MODE_HTML, 0);
    sb_puts(b, "</code></dd>\n<dt>Generated</dt><dd>");
    put_key(b, d->generated_at, MODE_HTML, 0);
    sb_puts(b, "</dd>\n<dt>Store created</dt><dd>");
    put_key(b, d->store_created_at, MODE_HTML, 0);
    sb_printf(b, "</dd>\n<dt>Store format</dt><dd>version %llu</dd>\n<dt>Face model</dt><dd>",
              (unsigned long long)d->store_format_version);
    put_key(b, d->store_model, MODE_HTML, 0);
    sb_puts(b, "</dd>\n</dl>\n</header>\n");

    sb_puts(b, "<section id=\"about\">\n<h2>What this is</h2>\n<p>This datasheet describes "
               "the lethe face-recognition store named above. ");
    sb_puts(b, about_text);
    sb_puts(b, "</p>\n</section>\n");
    sb_printf(b, "<div class=\"log %s\" role=\"%s\">", d->log_intact ? "ok" : "bad",
              d->log_intact ? "status" : "alert");
    put_log_sentence(b, d, MODE_HTML);
    sb_puts(b, ".</div>\n");
}

/* The summary: cards for the main totals, then a table of all of them. */
static void html_summary(sb *b, const datasheet *d)
{
    static const size_t card_totals[] = {0, 2, 3, 4, 9};
    static const char *const summary_cols[] = {"Measure", "Count", "Share of photos"};

    sb_puts(b, "<section id=\"summary\">\n<h2>Summary</h2>\n<div class=\"cards\">\n");
    for (size_t i = 0; i < LETHE_ARRAY_LEN(card_totals); i++)
        html_card(b, d->totals[card_totals[i]], totals_spec[card_totals[i]].label);
    sb_puts(b, "</div>\n<table>\n<caption>All totals</caption>\n");
    html_th_cols(b, summary_cols, LETHE_ARRAY_LEN(summary_cols));
    for (size_t i = 0; i < DS_N_TOTALS; i++) {
        sb_printf(b, "<tr><th scope=\"row\">%s<br><span class=\"note\">%s</span></th>",
                  totals_spec[i].label, totals_spec[i].meaning);
        html_td_count(b, d->totals[i]);
        if (totals_spec[i].share)
            html_td_share(b, d->totals[i], d->totals[T_PHOTOS]);
        else
            sb_puts(b, "<td></td>");
        sb_puts(b, "</tr>\n");
    }
    sb_puts(b, "</tbody>\n</table>\n<p class=\"note\">");
    sb_puts(b, share_note);
    sb_puts(b, " In the charts below, blue bars count stored face templates (searchable) "
               "and orange bars count photos refused by the consent policy.</p>\n"
               "</section>\n");
}

static void html_policy(sb *b, const datasheet *d)
{
    sb_puts(b, "<section id=\"policy\">\n<h2>Consent policy in force</h2>\n<p>A photo gets "
               "face templates only if the consent basis of one of its provenance records is "
               "accepted for its jurisdiction (and no record withdraws consent); otherwise it "
               "is refused.</p>\n<table>\n<caption>Consent bases accepted per jurisdiction"
               "</caption>\n<thead><tr><th scope=\"col\">Jurisdiction</th><th scope=\"col\">"
               "Consent bases accepted</th></tr></thead>\n<tbody>\n");
    if (d->n_policy == 0)
        sb_puts(b, "<tr><th scope=\"row\" class=\"none\">none</th>"
                   "<td class=\"none\">no policy rules</td></tr>\n");
    for (size_t i = 0; i < d->n_policy; i++) {
        const json_value *allows = d->policy[i].allows;
        sb_puts(b, "<tr><th scope=\"row\">");
        put_key(b, d->policy[i].key, MODE_HTML, 0);
        sb_puts(b, "</th><td>");
        if (allows->len == 0)
            sb_puts(b, "<em class=\"none\">none: every photo is refused</em>");
        for (size_t k = 0; k < allows->len; k++) {
            ds_text t = {allows->items[k]->string, allows->items[k]->len};
            if (k)
                sb_puts(b, ", ");
            put_key(b, t, MODE_HTML, 0);
        }
        sb_puts(b, "</td></tr>\n");
    }
    sb_puts(b, "</tbody>\n</table>\n</section>\n");
}

/* The audit log section, then the end of the page. */
static void html_log(sb *b, const datasheet *d)
{
    sb_puts(b, "<section id=\"log\">\n<h2>Audit log</h2>\n<p>");
    put_log_sentence(b, d, MODE_HTML);
    sb_puts(b, ".</p>\n<table>\n<caption>Audit log status</caption>\n<tbody>\n"
               "<tr><th scope=\"row\">Entries</th><td>");
    put_count(b, d->log_entries);
    sb_puts(b, "</td></tr>\n<tr><th scope=\"row\">Head hash</th><td><code>");
    put_key(b, d->log_head, MODE_HTML, 0);
    sb_puts(b, "</code></td></tr>\n<tr><th scope=\"row\">Status</th><td>");
    if (d->log_intact) {
        sb_puts(b, "intact");
    } else {
        sb_puts(b, "<strong>NOT intact</strong>");
        if (d->log_has_first_bad) {
            sb_puts(b, ": first bad entry <strong>");
            put_count(b, d->log_first_bad);
            sb_puts(b, "</strong>");
        }
    }
    sb_puts(b, "</td></tr>\n</tbody>\n</table>\n</section>\n</main>\n</body>\n</html>\n");
}

static void html_render(sb *b, const datasheet *d)
{
    html_head(b, d);
    html_summary(b, d);

    for (size_t i = 0; i < DS_N_BY; i++)
        html_breakdown(b, d, i);

    html_policy(b, d);
    models_render(b, d, MODE_HTML);

    sb_puts(b, "<section id=\"searches\">\n<h2>Searches</h2>\n<p>Every search states a purpose "
               "and is recorded in the audit log with its actor and the number of results it "
               "returned.</p>\n");
    html_searches(b, &d->by_purpose, "purpose", "Searches by purpose", "Purpose",
                  d->totals[T_SEARCHES]);
    html_searches(b, &d->by_actor, "actor", "Searches by actor", "Actor",
                  d->totals[T_SEARCHES]);
    sb_puts(b, "</section>\n");
    evidence_render(b, d, MODE_HTML);

    html_log(b, d);
}

/* ------------------------------------------------------------------ */
/* Entry point                                                         */
/* ------------------------------------------------------------------ */

int datasheet_render(const char *json, size_t len, const char *format, char **out,
                     char *err, size_t errlen)
{
    json_value *root = NULL;
    datasheet d;
    sb b = {0};
    char jerr[256];
    int rc;

    if (err && errlen)
        err[0] = 0;
    if (!out)
        return lethe_fail(err, errlen, LETHE_ERR_ARG, "datasheet: no output pointer");
    *out = NULL;
    if (!json || !format)
        return lethe_fail(err, errlen, LETHE_ERR_ARG, "datasheet: no %s given",
                          json ? "format" : "input");
    if (strcmp(format, "md") != 0 && strcmp(format, "html") != 0 &&
        strcmp(format, "json") != 0)
        return lethe_fail(err, errlen, LETHE_ERR_ARG,
                          "datasheet: unknown format \"%.40s\" (use md, html or json)", format);
    switch (json_parse(json, len, &root, jerr, sizeof(jerr))) {
    case LETHE_OK:
        break;
    case LETHE_ERR_NOMEM:
        return lethe_fail(err, errlen, LETHE_ERR_NOMEM,
                          "datasheet: out of memory reading the JSON");
    default:
        return lethe_fail(err, errlen, LETHE_ERR_FORMAT, "datasheet: invalid %s", jerr);
    }
    if (ds_load(root, &d, err, errlen) != 0) {
        rc = d.nomem ? LETHE_ERR_NOMEM : LETHE_ERR_FORMAT;
        goto out_free;
    }

    if (strcmp(format, "json") == 0)
        sb_put(&b, json, len);
    else if (strcmp(format, "md") == 0)
        md_render(&b, &d);
    else
        html_render(&b, &d);
    if (b.failed || !b.buf) {
        rc = lethe_fail(err, errlen, LETHE_ERR_NOMEM, "datasheet: out of memory rendering %s",
                        format);
        lethe_free(b.buf);
        goto out_free;
    }
    *out = b.buf;
    rc = LETHE_OK;
out_free:
    ds_clear(&d);
    json_free(root);
    return rc;
}
