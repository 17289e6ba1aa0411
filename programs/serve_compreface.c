/*
 * serve_compreface.c: the CompreFace-compatible part of `lethe serve`
 * (docs/serve.md, "CompreFace compatibility"): the subset of CompreFace's
 * REST API (v1) that its clients use for recognition, under /api/v1/, so
 * that an existing CompreFace client works against lethe unchanged. This
 * file routes those paths (CompreFace's have an image id or a subject in
 * them), reads their query strings, photos (multipart files, or base64 in
 * JSON) and answers errors in CompreFace's shape, {"message", "code"}, with
 * its status codes; serve_compreface_api.c holds the endpoints. Keys,
 * roles, limits and body sizes are checked by serve_http.c as for every
 * endpoint, before the body is read.
 */
#include <math.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "serve_compreface.h"

#define ALL     LETHE_ROLES_ALL
#define ADMIN   LETHE_ROLE_ADMIN
#define INGEST  LETHE_ROLE_INGEST
#define SEARCH  LETHE_ROLE_SEARCH
#define ERASURE LETHE_ROLE_ERASURE

/* The endpoints; "*" in a path is one segment (an image id, a subject).
 * Enrolment needs ingest, recognition and verification search, deletion
 * erasure, detection any role (docs/serve.md has the table). */
static const route cf_routes[] = {
    {"POST", "/api/v1/recognition/faces", ADMIN | INGEST, BODY_JSON_OR_PHOTO, cf_add_example},
    {"GET", "/api/v1/recognition/faces", ADMIN | INGEST | SEARCH | ERASURE, BODY_NONE,
     cf_list_examples},
    {"DELETE", "/api/v1/recognition/faces", ADMIN | ERASURE, BODY_NONE, cf_delete_examples},
    {"DELETE", "/api/v1/recognition/faces/*", ADMIN | ERASURE, BODY_NONE, cf_delete_example},
    {"POST", "/api/v1/recognition/faces/*/verify", ADMIN | SEARCH, BODY_JSON_OR_PHOTO,
     cf_verify_example},
    {"POST", "/api/v1/recognition/recognize", ADMIN | SEARCH, BODY_JSON_OR_PHOTO, cf_recognize},
    {"GET", "/api/v1/recognition/subjects", ADMIN | INGEST | SEARCH | ERASURE, BODY_NONE,
     cf_subjects_list},
    {"POST", "/api/v1/recognition/subjects", ADMIN | INGEST, BODY_JSON, cf_subject_add},
    {"DELETE", "/api/v1/recognition/subjects", ADMIN | ERASURE, BODY_NONE,
     cf_subjects_delete_all},
    {"DELETE", "/api/v1/recognition/subjects/*", ADMIN | ERASURE, BODY_NONE, cf_subject_delete},
    {"PUT", "/api/v1/recognition/subjects/*", ADMIN | INGEST, BODY_JSON, cf_subject_rename},
    {"POST", "/api/v1/detection/detect", ALL, BODY_JSON_OR_PHOTO, cf_detect},
    {"POST", "/api/v1/verification/verify", ADMIN | SEARCH, BODY_JSON_OR_PHOTO,
     cf_verify_photos},
    {NULL, NULL, 0, 0, NULL},
};

/* ------------------------------------------------------------ routing */

int compreface_path(const char *path)
{
    return !strncmp(path, "/api/v1/", 8);
}

/* Does path match pattern, segment by segment ("*": any one non-empty
 * segment; a trailing '/' on path is allowed)? */
static int path_matches(const char *pattern, const char *path)
{
    while (*pattern) {
        if (*pattern == '*') {
            size_t n = strcspn(path, "/");
            if (!n)
                return 0;
            path += n;
            pattern++;
        } else if (*pattern++ != *path++) {
            return 0;
        }
    }
    return !*path || !strcmp(path, "/");
}

const route *compreface_route(const char *method, const char *path, reply *r)
{
    char allow[64] = "";
    for (const route *rt = cf_routes; rt->path; rt++) {
        if (!path_matches(rt->path, path))
            continue;
        if (!strcmp(rt->method, method))
            return rt;
        if (!strstr(allow, rt->method))
            snprintf(allow + strlen(allow), sizeof(allow) - strlen(allow), "%s%s",
                     *allow ? ", " : "", rt->method);
    }
    if (!*allow) {
        cf_error(r, 404, CF_UNDEFINED, "no endpoint %s (see docs/serve.md, \"CompreFace "
                                       "compatibility\")", path);
        return NULL;
    }
    cf_error(r, 405, CF_UNDEFINED, "%s does not take %s", path, method);
    /* the Allow header's text must outlive the reply: one per method set */
    static const char *const allows[] = {"GET", "POST", "DELETE", "PUT, DELETE",
                                         "POST, GET, DELETE", "GET, POST, DELETE"};
    for (size_t i = 0; i < sizeof(allows) / sizeof(allows[0]); i++)
        if (!strcmp(allows[i], allow))
            r->allow = allows[i];
    return NULL;
}

int compreface_escapes_ok(const char *uri, size_t n)
{
    /* only /api/v1/ paths take escapes (a subject may hold a space); never
     * one that decodes to a NUL, a control character or a '/' */
    if (n < 8 || strncmp(uri, "/api/v1/", 8) != 0)
        return 0;
    for (const char *p = uri; (p = memchr(p, '%', n - (size_t)(p - uri))); p++) {
        unsigned v;
        if ((size_t)(p - uri) + 3 > n || sscanf(p + 1, "%2x", &v) != 1 || v < 0x20 ||
            v == 0x7f || v == '/')
            return 0;
    }
    return 1;
}

int cf_path_segment(const request *req, const char *prefix, char *out, size_t n)
{
    size_t k = strlen(prefix);
    if (strncmp(req->path, prefix, k) != 0)
        return -1;
    size_t len = strcspn(req->path + k, "/");
    if (!len || len >= n)
        return -1;
    memcpy(out, req->path + k, len);
    out[len] = 0;
    return 0;
}

/* ------------------------------------------------------------- errors */

void cf_error(reply *r, int status, int code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    jsbuf b;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (jb_open(&b) < 0) {
        reply_json(r, status, NULL);
        return;
    }
    fputs("{\"message\":", b.f);
    json_put_string(b.f, msg);
    fprintf(b.f, ",\"code\":%d}\n", code);
    reply_json(r, status, jb_close(&b));
}

void cf_lethe_error(reply *r, int rc, const char *message)
{
    switch (rc) {
    case LETHE_ERR_FORMAT:
    case LETHE_ERR_UNSUPPORTED:
        cf_error(r, 400, CF_BAD_FILE, "%s", message);
        break;
    case LETHE_ERR_NO_FACE:
        cf_error(r, 400, CF_NO_FACES, "No face is found in the given image (%s)", message);
        break;
    case LETHE_ERR_ARG:
    case LETHE_ERR_POLICY:
    case LETHE_ERR_TOO_LARGE:
        cf_error(r, 400, CF_BAD_ARGUMENT, "%s", message);
        break;
    case LETHE_ERR_NOT_FOUND:
        cf_error(r, 404, CF_IMAGE_NOT_FOUND, "%s", message);
        break;
    case LETHE_ERR_BUSY:
    case LETHE_ERR_NOMEM:
        cf_error(r, 503, CF_UNDEFINED, "%s", message);
        r->retry_after = rc == LETHE_ERR_BUSY ? 5 : 0;
        break;
    default:
        cf_error(r, 500, CF_UNDEFINED, "%s", message);
    }
}

/* A lethe error code (serve_http.c's) as CompreFace's status and code. */
static void map_error(request *req, const char *code, int *status, int *cf)
{
    static const struct {
        const char *code;
        int status, cf;
    } map[] = {
        {"unauthorized", 404, CF_SERVICE_NOT_FOUND}, {"forbidden", 403, CF_ACCESS_DENIED},
        {"too_many_requests", 429, CF_UNDEFINED},    {"bad_request", 400, CF_BAD_ARGUMENT},
        {"bad_json", 400, CF_BAD_ARGUMENT},          {"not_found", 404, CF_UNDEFINED},
    };
    *cf = CF_UNDEFINED;
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (!strcmp(map[i].code, code)) {
            *status = map[i].status;
            *cf = map[i].cf;
        }
    /* CompreFace: a missing x-api-key header is 400, code 20 */
    if (!strcmp(code, "unauthorized") &&
        !MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "x-api-key") &&
        !MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION)) {
        *status = 400;
        *cf = CF_MISSING_HEADER;
    }
}

void compreface_error_reply(request *req, reply *r)
{
    sj_object o, e;
    char msg[256];
    if (!r->body || r->status < 400 || strncmp(r->body, "{\"error\":", 9) != 0)
        return;
    if (sj_parse(r->body, r->len, &o, msg, sizeof(msg)) == 0) {
        const sj_member *m = sj_get(&o, "error");
        if (m && m->type == SJ_OBJECT && sj_parse(m->raw, m->raw_len, &e, msg, sizeof(msg)) == 0) {
            const sj_member *c = sj_get(&e, "code"), *t = sj_get(&e, "message");
            int status = r->status, cf = CF_UNDEFINED;
            long retry = r->retry_after;
            const char *allow = r->allow;
            if (c && c->type == SJ_STRING && t && t->type == SJ_STRING) {
                map_error(req, c->str, &status, &cf);
                cf_error(r, status, cf, "%s", cf == CF_MISSING_HEADER
                                                  ? "Missing header: x-api-key"
                                                  : t->str);
                r->retry_after = retry;
                r->allow = allow;
            }
        }
        sj_free(&e);
    }
    sj_free(&o);
}

/* -------------------------------------------------------- query string */

/* Add one argument (a copy), refusing unknown names. */
static int query_add(cf_query *q, const char *name, size_t nlen, const char *value, size_t vlen)
{
    int known = 0;
    for (int i = 0; q->allowed[i]; i++)
        known |= strlen(q->allowed[i]) == nlen && !strncmp(q->allowed[i], name, nlen);
    if (!known) {
        if (!q->error[0])
            snprintf(q->error, sizeof(q->error), "unknown argument '%.*s'",
                     (int)(nlen > 64 ? 64 : nlen), name);
        return -1;
    }
    if (q->n == CF_MAX_ARGS) {
        snprintf(q->error, sizeof(q->error), "more than %d arguments", CF_MAX_ARGS);
        return -1;
    }
    q->names[q->n] = strndup(name, nlen);
    q->values[q->n] = strndup(value, vlen);
    q->n++;
    if (!q->names[q->n - 1] || !q->values[q->n - 1]) {
        snprintf(q->error, sizeof(q->error), "out of memory");
        return -1;
    }
    return 0;
}

/*
 * The CompreFace JavaScript SDK 1.0.0 starts every option with '?' unless
 * "limit" came first, so faceCollection.add sends
 * "faces?subject=NAME?det_prob_threshold=0.8": a value holding "?k=v" is
 * read as more arguments. (No subject or option holds a '?' then.)
 */
static enum MHD_Result query_one(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *value)
{
    cf_query *q = cls;
    (void)kind;
    const char *v = value ? value : "";
    size_t vlen = strcspn(v, "?");
    if (query_add(q, key, strlen(key), v, vlen) < 0)
        return MHD_NO;
    for (const char *p = v + vlen; *p == '?'; p += vlen) {
        p++;
        size_t len = strcspn(p, "?"), eq = strcspn(p, "=");
        vlen = len;
        if (eq >= len ? query_add(q, p, len, "", 0) < 0
                      : query_add(q, p, eq, p + eq + 1, len - eq - 1) < 0)
            return MHD_NO;
    }
    return MHD_YES;
}

int cf_query_read(request *req, cf_query *q, const char *const *allowed, reply *r)
{
    char why[128];
    memset(q, 0, sizeof(*q));
    q->allowed = allowed;
    MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, query_one, q);
    for (int i = 0; !q->error[0] && i < q->n; i++)
        if (!text_ok(q->values[i], why, sizeof(why)))
            snprintf(q->error, sizeof(q->error), "argument '%s' %s", q->names[i], why);
    if (q->error[0]) {
        cf_error(r, 400, CF_BAD_ARGUMENT, "%s", q->error);
        return -1;
    }
    return 0;
}

void cf_query_free(cf_query *q)
{
    for (int i = 0; i < q->n; i++) {
        free(q->names[i]);
        free(q->values[i]);
    }
    q->n = 0;
}

const char *cf_query_get(const cf_query *q, const char *name)
{
    for (int i = q->n - 1; i >= 0; i--)
        if (!strcmp(q->names[i], name))
            return q->values[i];
    return NULL;
}

static int number_arg(const cf_query *q, const char *name, double lo, double hi, double *out,
                      reply *r)
{
    const char *v = cf_query_get(q, name);
    char *end;
    if (!v || !*v)
        return 0;
    double d = strtod(v, &end);
    if (*end || !(d >= lo && d <= hi)) {
        cf_error(r, 400, CF_BAD_ARGUMENT, "%s must be a number from %g to %g, not '%s'", name,
                 lo, hi, v);
        return -1;
    }
    *out = d;
    return 0;
}

int cf_options_read(const cf_query *q, cf_options *o, reply *r)
{
    double limit = 0, pc = 1, det = 0;
    const char *plugins = cf_query_get(q, "face_plugins");
    if (plugins && *plugins) {
        cf_error(r, 400, CF_BAD_ARGUMENT,
                 "face_plugins '%s': lethe runs no face plugins (age, gender, mask, "
                 "landmarks, calculator, pose); it never returns embeddings", plugins);
        return -1;
    }
    if (number_arg(q, "limit", 0, 1000, &limit, r) < 0 ||
        number_arg(q, "prediction_count", 1, 1000, &pc, r) < 0 ||
        number_arg(q, "det_prob_threshold", 0, 1, &det, r) < 0)
        return -1;
    if (limit != floor(limit) || pc != floor(pc)) {
        cf_error(r, 400, CF_BAD_ARGUMENT, "limit and prediction_count are whole numbers");
        return -1;
    }
    o->limit = (long)limit;
    o->prediction_count = (long)pc;
    o->det_threshold = det;
    return 0;
}

/* ------------------------------------------------------------- photos */

/* Standard base64 (whitespace and padding allowed; a "data:...;base64,"
 * prefix skipped) into a new buffer: 0, or -1. */
static int base64_decode(const char *s, char **out, size_t *len)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const char *comma = !strncmp(s, "data:", 5) ? strstr(s, ";base64,") : NULL;
    if (comma)
        s = comma + 8;
    size_t n = strlen(s), k = 0, pad = 0;
    unsigned acc = 0, bits = 0;
    char *b = malloc(n / 4 * 3 + 3);
    if (!b)
        return -2;
    for (size_t i = 0; i < n; i++) {
        const char *p = s[i] ? strchr(abc, s[i]) : NULL;
        if (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t')
            continue;
        if (s[i] == '=' && pad < 2) {
            pad++;
            continue;
        }
        if (!p || pad) {
            free(b);
            return -1;
        }
        acc = (acc << 6) | (unsigned)(p - abc);
        if ((bits += 6) >= 8) {
            bits -= 8;
            b[k++] = (char)((acc >> bits) & 0xff);
        }
    }
    if (!k) {
        free(b);
        return -1;
    }
    *out = b;
    *len = k;
    return 0;
}

/* The multipart iterator: the named file fields, refusing others. */
static enum MHD_Result multipart_piece(void *cls, enum MHD_ValueKind kind, const char *key,
                                       const char *filename, const char *type, const char *enc,
                                       const char *data, uint64_t off, size_t size)
{
    cf_photos *p = cls;
    (void)kind, (void)filename, (void)type, (void)enc;
    if (!key) /* a part without a name */
        return MHD_NO;
    for (int i = 0; i < p->n; i++)
        if (!strcmp(key, p->names[i])) {
            if (off == 0 && p->len[i] > 0) /* a second part of that name: refused, not
                                              glued to the first */
                return MHD_NO;
            char *t = realloc(p->data[i], p->len[i] + size + 1);
            if (!t)
                return MHD_NO;
            memcpy(t + p->len[i], data, size);
            p->len[i] += size;
            p->data[i] = t;
            p->bytes[i] = t;
            return MHD_YES;
        }
    return MHD_NO;
}

static int photos_multipart(request *req, cf_photos *p, reply *r)
{
    struct MHD_PostProcessor *pp = MHD_create_post_processor(req->conn, 65536, multipart_piece, p);
    if (!pp) {
        cf_error(r, 400, CF_MISSING_PART, "the multipart/form-data body cannot be read (no "
                                          "boundary in its Content-Type?)");
        return -1;
    }
    enum MHD_Result ok = MHD_post_process(pp, req->body ? req->body : "", req->body_len);
    enum MHD_Result done = MHD_destroy_post_processor(pp);
    if (ok != MHD_YES || done != MHD_YES) {
        cf_error(r, 400, CF_MISSING_PART, "the multipart/form-data body is malformed, cut short "
                                          "or has a part other than %s%s%s", p->names[0],
                 p->n > 1 ? " and " : "", p->n > 1 ? p->names[1] : "");
        return -1;
    }
    return 0;
}

static int photos_json(request *req, cf_photos *p, reply *r)
{
    sj_object o;
    char msg[256];
    int rc = sj_parse(req->body ? req->body : "", req->body_len, &o, msg, sizeof(msg)), bad = 0;
    if (rc < 0) {
        cf_error(r, rc == -2 ? 503 : 400, CF_BAD_ARGUMENT, "the body is not acceptable JSON: %s",
                 rc == -2 ? "out of memory" : msg);
        sj_free(&o);
        return -1;
    }
    for (int i = 0; i < o.n && !bad; i++) {
        int k = 0;
        while (k < p->n && strcmp(o.m[i].name, p->names[k]))
            k++;
        if (k == p->n)
            cf_error(r, 400, CF_BAD_ARGUMENT, "unknown member \"%s\"", o.m[i].name), bad = 1;
        else if (o.m[i].type != SJ_STRING)
            cf_error(r, 400, CF_BAD_ARGUMENT, "\"%s\" must be a string of base64",
                     o.m[i].name), bad = 1;
        else if (base64_decode(o.m[i].str, &p->data[k], &p->len[k]) < 0)
            cf_error(r, 400, CF_BAD_ARGUMENT, "\"%s\" is not base64", o.m[i].name), bad = 1;
        else
            p->bytes[k] = p->data[k];
    }
    sj_free(&o);
    return bad ? -1 : 0;
}

int cf_photos_read(request *req, cf_photos *p, reply *r)
{
    int rc;
    if (content_type_is(req, "application/json"))
        rc = photos_json(req, p, r);
    else if (content_type_is(req, "multipart/form-data"))
        rc = photos_multipart(req, p, r);
    else if (p->n == 1) {
        p->bytes[0] = req->body;
        p->len[0] = req->body_len;
        rc = 0;
    } else {
        cf_error(r, 400, CF_MISSING_PART, "send %s and %s as multipart/form-data or JSON",
                 p->names[0], p->names[1]);
        rc = -1;
    }
    for (int i = 0; rc == 0 && i < p->n; i++)
        if (!p->bytes[i] || !p->len[i]) {
            cf_error(r, 400, CF_MISSING_PART, "Required request part '%s' is not present",
                     p->names[i]);
            rc = -1;
        }
    return rc;
}

void cf_photos_free(cf_photos *p)
{
    for (int i = 0; i < 2; i++) {
        free(p->data[i]);
        p->data[i] = NULL;
    }
}

/* ------------------------------------------------------------- faces */

static int by_area(const void *a, const void *b)
{
    const lethe_face *x = a, *y = b;
    double ax = (double)x->box[2] * x->box[3], ay = (double)y->box[2] * y->box[3];
    return ax < ay ? 1 : ax > ay ? -1 : 0;
}

int cf_faces(request *req, const void *photo, size_t len, const cf_options *o,
             lethe_face **faces, int *count, reply *r)
{
    lethe_analysis an;
    char msg[512];
    *faces = NULL;
    *count = 0;
    if (!req->sv->engine) {
        cf_error(r, 503, CF_UNDEFINED, "this server cannot analyse photos: %s",
                 req->sv->engine_error);
        return -1;
    }
    int rc = lethe_engine_analyze_bytes(req->sv->engine, photo, len, NULL, LETHE_WANT_DESCRIPTOR,
                                        &an, msg, sizeof(msg));
    if (rc != LETHE_OK) {
        cf_lethe_error(r, rc, msg);
        return -1;
    }
    int n = 0;
    for (int i = 0; i < an.count; i++)
        if (an.faces[i].has_descriptor && an.faces[i].score >= o->det_threshold)
            an.faces[n++] = an.faces[i];
    qsort(an.faces, (size_t)n, sizeof(*an.faces), by_area);
    if (o->limit > 0 && n > o->limit)
        n = (int)o->limit;
    if (!n) {
        lethe_faces_free(an.faces);
        cf_error(r, 400, CF_NO_FACES, "No face is found in the given image");
        return -1;
    }
    *faces = an.faces;
    *count = n;
    return 0;
}

void cf_put_box(FILE *f, const lethe_face *face)
{
    fprintf(f, "{\"probability\":%.5f,\"x_max\":%ld,\"y_max\":%ld,\"x_min\":%ld,\"y_min\":%ld}",
            (double)face->score, lround((double)face->box[0] + face->box[2]),
            lround((double)face->box[1] + face->box[3]), lround(face->box[0]),
            lround(face->box[1]));
}

/* 1 at distance 0, 0.5 at lethe's same-person threshold, falling
 * monotonically towards 0: a rank, not a probability (docs/serve.md). */
double cf_similarity(float distance)
{
    double t = lethe_descriptor_threshold(), x = distance / t;
    return 1.0 / (1.0 + x * x);
}

int cf_key_purpose(request *req, char purpose[LETHE_KEY_PURPOSE_MAX + 1], reply *r)
{
    char msg[512];
    server_lock(req->sv);
    int rc = lethe_key_purpose(req->sv->store, req->key.id, purpose);
    if (rc != LETHE_OK)
        snprintf(msg, sizeof(msg), "%s", lethe_store_errmsg(req->sv->store));
    server_unlock(req->sv);
    if (rc != LETHE_OK) {
        cf_lethe_error(r, rc, msg);
        return -1;
    }
    if (!purpose[0]) {
        cf_error(r, 400, CF_EMPTY_FIELD,
                 "key %lld has no purpose, and a search needs one: CompreFace clients send "
                 "none, so it is fixed on the key ('lethe key add NAME --roles search "
                 "--purpose TEXT'; docs/serve.md)", (long long)req->key.id);
        return -1;
    }
    return 0;
}
