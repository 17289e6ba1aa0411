/*
 * queries.c: search queries given as JSON (the public lethe_descriptor_parse
 * and lethe_queries_* of lethe.h), for `lethe search --descriptor` and
 * `--queries`, and for any server or binding that takes descriptors as text.
 *
 * A line of queries is one of:
 *   [128 numbers]                         one descriptor
 *   {"embedding": [128 numbers], ...}     one descriptor ("descriptor" is
 *                                         accepted for "embedding")
 *   {"image": ..., "faces": [{"embedding": [...]}, ...]}
 *                                         the output of `lethe embed --json`:
 *                                         one descriptor per face
 * Lines are read by the manifest reader's JSON Lines machinery (so the same
 * limits hold: 1 MiB a line, 65536 JSON values, strict UTF-8), and every
 * problem is reported as "line N: why" without stopping the rest.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "lethe.h"
#include "manifest/manifest.h"
#include "util/json.h"
#include "util/util.h"

struct lethe_queries {
    manifest *m;              /* the JSON Lines reader */
    const json_value *faces;  /* the "faces" of the current line, being walked */
    size_t face;              /* the next one */
    size_t line;              /* the current line */
    float v[LETHE_DESCRIPTOR_DIM];
};

/* An array of exactly 128 numbers, finite as 32-bit floats. */
static int vector_from(const json_value *a, float *out, char *why, size_t n)
{
    if (a->type != JSON_ARRAY) {
        snprintf(why, n, "not an array of %d numbers", LETHE_DESCRIPTOR_DIM);
        return 0;
    }
    if (a->len != LETHE_DESCRIPTOR_DIM) {
        snprintf(why, n, "expected %d numbers, found %zu", LETHE_DESCRIPTOR_DIM, a->len);
        return 0;
    }
    for (size_t i = 0; i < LETHE_DESCRIPTOR_DIM; i++) {
        float f;
        if (a->items[i]->type != JSON_NUMBER) {
            snprintf(why, n, "item %zu is not a number", i + 1);
            return 0;
        }
        f = (float)a->items[i]->number;
        if (!isfinite(f)) {
            snprintf(why, n, "item %zu is not a finite 32-bit float", i + 1);
            return 0;
        }
        out[i] = f;
    }
    return 1;
}

/*
 * The descriptor member of an object: "embedding" or "descriptor", given
 * once. Returns 1 with *v set, 0 when there is none, -1 (why set) when it
 * is ambiguous.
 */
static int descriptor_member(const json_value *obj, const json_value **v, const char **key,
                             char *why, size_t n)
{
    static const char *const names[2] = {"embedding", "descriptor"};
    int found = 0;

    *v = NULL;
    for (size_t i = 0; i < obj->len; i++)
        for (int k = 0; k < 2; k++)
            if (strcmp(obj->keys[i], names[k]) == 0) {
                if (found) {
                    if (*key == names[k])
                        snprintf(why, n, "duplicate key \"%s\"", names[k]);
                    else
                        snprintf(why, n, "both \"embedding\" and \"descriptor\": give one");
                    return -1;
                }
                found = 1;
                *v = obj->items[i];
                *key = names[k];
            }
    return found;
}

/* One descriptor from a parsed value: an array, or an object holding one. */
static int descriptor_from(const json_value *v, float *out, char *why, size_t n)
{
    const json_value *e;
    const char *key = NULL;
    char inner[160];
    int has;

    if (v->type == JSON_ARRAY)
        return vector_from(v, out, why, n);
    if (v->type != JSON_OBJECT) {
        snprintf(why, n, "not a JSON array of %d numbers or an object with \"embedding\"",
                 LETHE_DESCRIPTOR_DIM);
        return 0;
    }
    has = descriptor_member(v, &e, &key, why, n);
    if (has < 0)
        return 0;
    if (has == 0) {
        snprintf(why, n, "no \"embedding\" (a JSON array of %d numbers)", LETHE_DESCRIPTOR_DIM);
        return 0;
    }
    if (!vector_from(e, out, inner, sizeof(inner))) {
        snprintf(why, n, "\"%s\": %s", key, inner);
        return 0;
    }
    return 1;
}

int lethe_descriptor_parse(const char *json, size_t len, float *descriptor, char *msg,
                           size_t msg_len)
{
    json_value *v = NULL;
    char why[256];
    int st;

    if (!json || !descriptor)
        return lethe_fail(msg, msg_len, LETHE_ERR_ARG, "no descriptor");
    /* The bounds of a line of queries, so that no text costs more memory. */
    if (len > MANIFEST_MAX_RECORD)
        return lethe_fail(msg, msg_len, LETHE_ERR_FORMAT, "longer than 1 MiB");
    if (manifest_json_value_estimate(json, len) > MANIFEST_MAX_JSON_VALUES)
        return lethe_fail(msg, msg_len, LETHE_ERR_FORMAT, "more than %d JSON values",
                          MANIFEST_MAX_JSON_VALUES);
    st = json_parse(json, len, &v, why, sizeof(why));
    if (st == LETHE_ERR_NOMEM)
        return lethe_fail(msg, msg_len, st, "out of memory");
    if (st != LETHE_OK)
        return lethe_fail(msg, msg_len, LETHE_ERR_FORMAT, "invalid JSON: %s",
                          strncmp(why, "JSON: ", 6) == 0 ? why + 6 : why);
    st = descriptor_from(v, descriptor, why, sizeof(why)) ? LETHE_OK : LETHE_ERR_FORMAT;
    json_free(v);
    if (st != LETHE_OK)
        return lethe_fail(msg, msg_len, st, "%s", why);
    return LETHE_OK;
}

/* ------------------------------------------------------------------ */
/* JSON Lines of queries                                               */
/* ------------------------------------------------------------------ */

static int queries_start(lethe_queries *q, int st, const char *name, char *msg, size_t msg_len,
                         lethe_queries **out)
{
    if (st != LETHE_OK) {
        /* Forced to JSON Lines, the only format failure at open is an
         * input with nothing in it; say so in the queries' own terms. */
        if (st == LETHE_ERR_FORMAT)
            lethe_fail(msg, msg_len, st, "%s: no queries (the input is empty)", name);
        lethe_queries_close(q);
        return st;
    }
    *out = q;
    return LETHE_OK;
}

static void queries_options(manifest_options *o)
{
    manifest_options_init(o);
    o->mode = MANIFEST_PROVENANCE; /* no header, no path: only the lines matter */
    o->format = MANIFEST_JSONL;
}

int lethe_queries_open(const char *file, lethe_queries **out, char *msg, size_t msg_len)
{
    manifest_options o;
    lethe_queries *q;

    if (!out)
        return lethe_fail(msg, msg_len, LETHE_ERR_ARG, "no place for the queries");
    *out = NULL;
    if (!file)
        return lethe_fail(msg, msg_len, LETHE_ERR_ARG, "no queries file");
    q = lethe_calloc(1, sizeof(*q));
    if (!q)
        return lethe_fail(msg, msg_len, LETHE_ERR_NOMEM, "out of memory");
    queries_options(&o);
    return queries_start(q, manifest_open_ex(file, &o, &q->m, msg, msg_len), file, msg,
                         msg_len, out);
}

int lethe_queries_open_mem(const void *data, size_t len, lethe_queries **out, char *msg,
                           size_t msg_len)
{
    manifest_options o;
    lethe_queries *q;

    if (!out)
        return lethe_fail(msg, msg_len, LETHE_ERR_ARG, "no place for the queries");
    *out = NULL;
    q = lethe_calloc(1, sizeof(*q));
    if (!q)
        return lethe_fail(msg, msg_len, LETHE_ERR_NOMEM, "out of memory");
    queries_options(&o);
    return queries_start(q, manifest_open_mem(data, data ? len : 0, &o, &q->m, msg, msg_len),
                         "queries", msg, msg_len, out);
}

/* "line N: why" into msg; returns -1 (a bad line, skipped). */
static int query_fail(char *msg, size_t msg_len, size_t line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int query_fail(char *msg, size_t msg_len, size_t line, const char *fmt, ...)
{
    char what[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    lethe_fail(msg, msg_len, LETHE_ERR_FORMAT, "line %zu: %s", line, what);
    return -1;
}

/* The next face of the line being walked: 1, -1, or 0 when there is none. */
static int next_face(lethe_queries *q, lethe_query *query, char *msg, size_t msg_len)
{
    const json_value *f;
    char why[256];
    size_t i;

    if (!q->faces)
        return 0;
    if (q->face >= q->faces->len) {
        q->faces = NULL;
        return 0;
    }
    i = q->face++;
    f = q->faces->items[i];
    if (f->type != JSON_OBJECT)
        return query_fail(msg, msg_len, q->line, "face %zu is not a JSON object", i + 1);
    if (!descriptor_from(f, q->v, why, sizeof(why)))
        return query_fail(msg, msg_len, q->line, "face %zu: %s", i + 1, why);
    query->line = q->line;
    query->face = (int)i;
    query->descriptor = q->v;
    return 1;
}

/* A line of embed output, or of something else with no descriptor. */
static int line_object(lethe_queries *q, const json_value *v, lethe_query *query, char *msg,
                       size_t msg_len)
{
    const json_value *faces = json_get(v, "faces");
    const char *error = json_get_string(v, "error");
    char quoted[MANIFEST_QUOTE_BUF];

    if (faces && faces->type == JSON_ARRAY) {
        if (faces->len == 0)
            return query_fail(msg, msg_len, q->line,
                              "no face in this record (\"faces\" is empty)");
        q->faces = faces;
        q->face = 0;
        return next_face(q, query, msg, msg_len);
    }
    if (error) {
        manifest_quote_path(error, quoted, sizeof(quoted));
        return query_fail(msg, msg_len, q->line,
                          "the record is an error, not a descriptor: %s", quoted);
    }
    return query_fail(msg, msg_len, q->line,
                      "no \"embedding\" (give a JSON array of 128 numbers, an object with "
                      "\"embedding\", or a line of 'lethe embed --json')");
}

int lethe_queries_next(lethe_queries *q, lethe_query *query, char *msg, size_t msg_len)
{
    const json_value *v, *e;
    const char *key = NULL;
    char why[256];
    int st;

    if (msg && msg_len)
        msg[0] = '\0';
    if (!q || !query) {
        lethe_fail(msg, msg_len, LETHE_ERR_ARG, "no queries");
        return -2;
    }
    memset(query, 0, sizeof(*query));
    st = next_face(q, query, msg, msg_len);
    if (st != 0)
        return st;
    st = manifest_next_json(q->m, &v, &q->line, msg, msg_len);
    if (st == MANIFEST_END)
        return 0;
    if (st == MANIFEST_BAD_ROW)
        return -1;
    if (st != MANIFEST_ROW)
        return -2;
    query->line = q->line;
    query->face = -1;
    query->descriptor = q->v;
    if (v->type == JSON_OBJECT) {
        int has = descriptor_member(v, &e, &key, why, sizeof(why));
        if (has < 0)
            return query_fail(msg, msg_len, q->line, "%s", why);
        if (has == 0)
            return line_object(q, v, query, msg, msg_len);
    }
    if (!descriptor_from(v, q->v, why, sizeof(why)))
        return query_fail(msg, msg_len, q->line, "%s", why);
    return 1;
}

void lethe_queries_close(lethe_queries *q)
{
    if (!q)
        return;
    manifest_close(q->m);
    lethe_free(q);
}
