/*
 * serve_api.c: the endpoints of `lethe serve` (docs/serve.md): each reads
 * its request, makes the library calls the CLI makes for the same thing,
 * with the key as the actor, and answers JSON in the shapes `lethe ...
 * --json` prints. The table at the end says which roles may call which.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "serve.h"
#include "serve_page.h"

/* ------------------------------------------------------------ helpers */

/* The body as one JSON object whose members are all among allowed (NULL-
 * terminated): 0, or -1 with the 400 in r. */
int read_json(request *req, reply *r, sj_object *o, const char *const *allowed)
{
    char msg[256];
    int rc = sj_parse(req->body ? req->body : "", req->body_len, o, msg, sizeof(msg));
    if (rc == -2) {
        reply_json(r, 503, NULL);
        return -1;
    }
    if (rc < 0) {
        reply_error(r, 400, "bad_json", NULL, "the body is not acceptable JSON: %s", msg);
        return -1;
    }
    for (int i = 0; i < o->n; i++) {
        int k;
        for (k = 0; allowed[k] && strcmp(allowed[k], o->m[i].name); k++)
            ;
        if (!allowed[k]) {
            reply_error(r, 400, "bad_request", NULL,
                        "unknown member \"%s\" (this endpoint "
                        "takes: see docs/serve.md)",
                        o->m[i].name);
            return -1;
        }
    }
    return 0;
}

/* A string member: 0 with *out (NULL when absent and not required), or -1
 * with the 400 in r. */
int json_text(reply *r, const sj_object *o, const char *name, int required, const char **out)
{
    const sj_member *m = sj_get(o, name);
    char why[128];
    *out = NULL;
    if (!m || m->type == SJ_NULL) {
        if (required)
            reply_error(r, 400, "bad_request", NULL, "\"%s\" is required", name);
        return required ? -1 : 0;
    }
    if (m->type != SJ_STRING) {
        reply_error(r, 400, "bad_request", NULL, "\"%s\" must be a string, not %s", name,
                    sj_type_name(m->type));
        return -1;
    }
    if (!text_ok(m->str, why, sizeof(why))) {
        reply_error(r, 400, "bad_request", NULL, "\"%s\" %s", name, why);
        return -1;
    }
    *out = m->str;
    return 0;
}

/* A boolean member (false when absent): 0, or -1 with the 400 in r. */
int json_bool(reply *r, const sj_object *o, const char *name, int *out)
{
    const sj_member *m = sj_get(o, name);
    *out = 0;
    if (!m || m->type == SJ_NULL)
        return 0;
    if (m->type != SJ_BOOL) {
        reply_error(r, 400, "bad_request", NULL, "\"%s\" must be true or false, not %s", name,
                    sj_type_name(m->type));
        return -1;
    }
    *out = m->boolean;
    return 0;
}

/* A whole number in [lo, hi] from text (a query or form field). */
static int parse_int(reply *r, const char *name, const char *v, long lo, long hi, long *out)
{
    char *end;
    long n = strtol(v, &end, 10);
    if (!*v || *end || n < lo || n > hi) {
        reply_error(r, 400, "bad_request", NULL, "\"%s\" must be a whole number from %ld to %ld",
                    name, lo, hi);
        return -1;
    }
    *out = n;
    return 0;
}

static void put_roles(FILE *f, unsigned roles)
{
    char text[LETHE_ROLES_TEXT];
    lethe_roles_format(roles, text);
    fputc('[', f);
    for (char *p = text, *q; *p; p = *q ? q + 1 : q) {
        q = p + strcspn(p, ",");
        fprintf(f, "%s\"%.*s\"", p == text ? "" : ",", (int)(q - p), p);
    }
    fputc(']', f);
}

/* The store's message after a failed call (copied under the lock). */
void store_message(request *req, char *msg, size_t n)
{
    snprintf(msg, n, "%s", lethe_store_errmsg(req->sv->store));
}

/* A library document (JSON text, lethe_free_string) as the reply. */
void reply_document(reply *r, char *doc)
{
    size_t n = doc ? strlen(doc) : 0;
    char *copy = doc ? malloc(n + 2) : NULL;
    if (copy) {
        memcpy(copy, doc, n);
        copy[n] = 0;
        if (!n || copy[n - 1] != '\n')
            strcpy(copy + n, "\n");
    }
    lethe_free_string(doc);
    reply_json(r, 200, copy);
}

/* GET endpoints take only these query arguments: 0, or -1 with the 400. */
int query_only(request *req, reply *r, form *f)
{
    if (form_read(req, f, 1) < 0) {
        reply_error(r, f->error_status, "bad_request", NULL, "%s", f->error);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------- status */

static void h_status(request *req, reply *r)
{
    form f = {.nnames = 0};
    jsbuf b;
    const lethe_key_info *k = &req->key;
    if (query_only(req, r, &f) < 0) {
        form_free(&f);
        return;
    }
    if (jb_open(&b) < 0) {
        reply_json(r, 503, NULL);
        return;
    }
    fprintf(b.f, "{\"lethe\":\"%s\",\"key\":{\"id\":%lld,\"name\":", lethe_version(),
            (long long)k->id);
    json_put_string(b.f, k->name);
    fputs(",\"roles\":", b.f);
    put_roles(b.f, k->roles);
    fprintf(b.f, ",\"rate_per_minute\":%u,\"daily_quota\":%u},\"faces\":%s}\n", k->rate_per_minute,
            k->daily_quota, req->sv->engine ? "true" : "false");
    reply_json(r, 200, jb_close(&b));
}

/* ------------------------------------------------------------- search */

typedef struct search_req {
    lethe_search_options so;
    float q[LETHE_FUSE_MAX * LETHE_DESCRIPTOR_DIM]; /* the probes, one after another */
    int nprobes;                        /* 1, or several photos of one person (fused) */
    char purpose[SERVE_FIELD_MAX + 1];
    int verify;                         /* /v1/verify: against stored photos */
    int against_kind;                   /* LETHE_LOOKUP_* */
    int from_photo;                     /* the query came as a photo */
    char against[SERVE_FIELD_MAX + 1];
} search_req;

/* verify's selectors of the stored photos, by LETHE_LOOKUP_* kind */
static const char *const against_names[] = {"uploader", "url", "photo_id"};

/* The one selector of a verification among v[0..3) (NULL or "": not
 * given): 0, or -1 with the 400 in r. */
static int against_pick(reply *r, search_req *s, const char *const v[3])
{
    int given = 0;
    for (int i = 0; i < 3; i++)
        if (v[i] && *v[i]) {
            given++;
            s->against_kind = i;
            snprintf(s->against, sizeof(s->against), "%s", v[i]);
        }
    if (given != 1) {
        reply_error(r, 400, "bad_request", NULL,
                    "give exactly one of \"uploader\", \"url\", \"photo_id\": the stored "
                    "photos to verify against");
        return -1;
    }
    return 0;
}

/* purpose, top_k, threshold, fpir (as text, from a form or the query):
 * 0, or -1 with the 400 in r. */
static int search_options(reply *r, search_req *s, const char *purpose, const char *top,
                          const char *threshold, const char *fpir)
{
    long k = 10;
    if (!purpose || !*purpose) {
        reply_error(r, 400, "purpose_required", NULL,
                    "a search needs a purpose: why it is made (it is logged with the key)");
        return -1;
    }
    snprintf(s->purpose, sizeof(s->purpose), "%s", purpose);
    s->so.purpose = s->purpose;
    if (top && parse_int(r, "top_k", top, 1, 1000, &k) < 0)
        return -1;
    s->so.top_k = (int)k;
    if (threshold) {
        char *end;
        double t = strtod(threshold, &end);
        if (!*threshold || *end || !(t > 0 && t < 1e6)) {
            reply_error(r, 400, "bad_request", NULL, "\"threshold\" must be a positive number");
            return -1;
        }
        s->so.threshold = (float)t;
    }
    if (fpir) {
        char *end;
        double v = strtod(fpir, &end);
        if (!*fpir || *end || !(v > 0 && v < 1)) {
            reply_error(r, 400, "bad_request", NULL,
                        "\"fpir\" must be a number between 0 and 1 (the chance that a search "
                        "for someone the store does not hold returns anyone)");
            return -1;
        }
        s->so.fpir = v;
    }
    return 0;
}

/* "descriptors": [[128 numbers], ...], 1 to LETHE_FUSE_MAX descriptors of
 * one person, into s->q: 0, or -1 with the 400 in r. */
static int probes_parse(reply *r, const sj_member *m, search_req *s)
{
    const char *p = m->raw, *end = m->raw + m->raw_len;
    char msg[256];
    s->nprobes = 0;
    if (m->type != SJ_ARRAY) {
        reply_error(r, 400, "bad_request", NULL,
                    "\"descriptors\" is an array of descriptors (arrays of 128 numbers)");
        return -1;
    }
    for (p++;; p++) { /* past '[' or ',' */
        while (p < end && strchr(" \t\r\n", *p))
            p++;
        if (p < end && *p == ']' && s->nprobes == 0)
            break;
        const char *close = p < end && *p == '[' ? memchr(p, ']', (size_t)(end - p)) : NULL;
        if (!close) {
            reply_error(r, 400, "bad_request", NULL,
                        "\"descriptors\"[%d] is not an array of 128 numbers", s->nprobes);
            return -1;
        }
        if (s->nprobes == LETHE_FUSE_MAX) {
            reply_error(r, 400, "bad_request", NULL,
                        "\"descriptors\": at most %d of one person", LETHE_FUSE_MAX);
            return -1;
        }
        if (lethe_descriptor_parse(p, (size_t)(close + 1 - p),
                                   s->q + (size_t)s->nprobes * LETHE_DESCRIPTOR_DIM, msg,
                                   sizeof(msg)) != LETHE_OK) {
            reply_error(r, 400, "bad_request", NULL, "\"descriptors\"[%d]: %s", s->nprobes,
                        msg);
            return -1;
        }
        s->nprobes++;
        for (p = close + 1; p < end && strchr(" \t\r\n", *p); p++)
            ;
        if (p < end && *p == ']')
            break;
        if (p >= end || *p != ',') {
            reply_error(r, 400, "bad_request", NULL, "\"descriptors\" is malformed after "
                                                     "descriptor %d", s->nprobes - 1);
            return -1;
        }
    }
    if (s->nprobes == 0) {
        reply_error(r, 400, "bad_request", NULL, "\"descriptors\" is empty");
        return -1;
    }
    return 0;
}

/* A search whose query is a descriptor in JSON. */
static int search_from_json(request *req, reply *r, search_req *s)
{
    static const char *const allowed[] = {"purpose", "descriptor", "embedding", "descriptors",
                                          "top_k",   "threshold",  "fpir",      NULL};
    static const char *const allowed_verify[] = {"purpose",   "descriptor", "embedding",
                                                 "threshold", "uploader",   "url",
                                                 "photo_id",  NULL};
    sj_object o;
    const char *purpose, *v[3] = {NULL, NULL, NULL};
    char top[32] = "", thr[64] = "", fp[64] = "", msg[256];
    int rc = -1;
    if (read_json(req, r, &o, s->verify ? allowed_verify : allowed) < 0 ||
        json_text(r, &o, "purpose", 0, &purpose) < 0)
        goto out;
    if (s->verify && (json_text(r, &o, "uploader", 0, &v[0]) < 0 ||
                      json_text(r, &o, "url", 0, &v[1]) < 0 ||
                      json_text(r, &o, "photo_id", 0, &v[2]) < 0 || against_pick(r, s, v) < 0))
        goto out;
    const sj_member *d = sj_get(&o, "descriptor"), *e = sj_get(&o, "embedding");
    const sj_member *k = sj_get(&o, "top_k"), *t = sj_get(&o, "threshold");
    const sj_member *fpir = sj_get(&o, "fpir");
    if ((k && k->type != SJ_NUMBER) || (t && t->type != SJ_NUMBER) ||
        (fpir && fpir->type != SJ_NUMBER)) {
        reply_error(r, 400, "bad_request", NULL,
                    "\"top_k\", \"threshold\" and \"fpir\" are numbers");
        goto out;
    }
    if (fpir)
        snprintf(fp, sizeof(fp), "%.*s", (int)(fpir->raw_len < 63 ? fpir->raw_len : 63),
                 fpir->raw);
    if (k)
        snprintf(top, sizeof(top), "%.*s", (int)(k->raw_len < 31 ? k->raw_len : 31), k->raw);
    if (t)
        snprintf(thr, sizeof(thr), "%.*s", (int)(t->raw_len < 63 ? t->raw_len : 63), t->raw);
    if (search_options(r, s, purpose, k ? top : NULL, t ? thr : NULL, fpir ? fp : NULL) < 0)
        goto out;
    const sj_member *many = sj_get(&o, "descriptors");
    if ((d != NULL) + (e != NULL) + (many != NULL) != 1) {
        reply_error(r, 400, "bad_request", NULL,
                    d || e || many ? "give one of \"descriptor\", \"embedding\", "
                                     "\"descriptors\""
                                   : "give the query as \"descriptor\": [128 numbers] (or "
                                     "\"descriptors\": several of one person, or send a photo)");
        goto out;
    }
    if (many) {
        if (probes_parse(r, many, s) < 0)
            goto out;
    } else {
        if (!d)
            d = e;
        if (lethe_descriptor_parse(d->raw, d->raw_len, s->q, msg, sizeof(msg)) != LETHE_OK) {
            reply_error(r, 400, "bad_request", NULL, "\"%s\": %s", d->name, msg);
            goto out;
        }
        s->nprobes = 1;
    }
    rc = 0;
out:
    sj_free(&o);
    return rc;
}

/* The largest face of a photo, described (outside the store's lock);
 * which (>= 0) names the photo among several in a message. */
static int describe_photo(request *req, reply *r, const void *photo, size_t len, int which,
                          float *q)
{
    lethe_analysis an;
    char msg[512], name[32] = "";
    if (which >= 0)
        snprintf(name, sizeof(name), "photo %d: ", which);
    if (!photo || !len) {
        reply_error(r, 400, "bad_request", NULL, "%s", which >= 0 ? "a photo part is empty"
                                                                  : "no photo in the request");
        return -1;
    }
    if (!req->sv->engine) {
        reply_error(r, 503, "no_face_engine", NULL, "this server cannot analyse photos: %s",
                    req->sv->engine_error);
        return -1;
    }
    int rc = lethe_engine_analyze_bytes(req->sv->engine, photo, len, NULL, LETHE_LARGEST_FACE, &an,
                                        msg, sizeof(msg));
    if (rc != LETHE_OK) {
        char full[560];
        snprintf(full, sizeof(full), "%s%s", name, msg);
        reply_lethe(r, rc == LETHE_ERR_FORMAT ? LETHE_ERR_ARG : rc, full);
        return -1;
    }
    memcpy(q, an.faces[0].descriptor, sizeof(float) * LETHE_DESCRIPTOR_DIM);
    lethe_faces_free(an.faces);
    return 0;
}

/* A search whose query is the largest face of a photo, or of several
 * photos of one person (multipart "photo" parts: a fused search). */
static int search_from_photo(request *req, reply *r, search_req *s)
{
    form f = {.names = {"purpose", "top_k", "threshold", "fpir"}, .nnames = 4,
              .photo_field = "photo", .max_photos = LETHE_FUSE_MAX};
    static const char *const verify_names[] = {"purpose", "threshold", "uploader", "url",
                                               "photo_id"};
    int rc = -1;
    if (s->verify) { /* no top_k; the stored photos to verify against */
        memcpy(f.names, verify_names, sizeof(verify_names));
        f.nnames = 5;
        f.max_photos = 1;
    }
    if (form_read(req, &f, content_type_is_photo(req)) < 0)
        reply_error(r, f.error_status, "bad_request", NULL, "%s", f.error);
    else if (search_options(r, s, form_get(&f, "purpose"), form_get(&f, "top_k"),
                            form_get(&f, "threshold"), form_get(&f, "fpir")) == 0 &&
             (!s->verify || against_pick(r, s, (const char *const[3]){form_get(&f, "uploader"),
                                                   form_get(&f, "url"),
                                                   form_get(&f, "photo_id")}) == 0)) {
        rc = 0;
        s->nprobes = f.nphotos > 1 ? f.nphotos : 1;
        s->from_photo = 1;
        for (int i = 0; rc == 0 && i < s->nprobes; i++) {
            size_t len = 0;
            const void *photo = f.nphotos ? form_photo(&f, i, &len) : NULL;
            rc = describe_photo(req, r, photo, len, f.nphotos > 1 ? i : -1,
                                s->q + (size_t)i * LETHE_DESCRIPTOR_DIM);
        }
    }
    form_free(&f);
    return rc;
}

static void h_search(request *req, reply *r)
{
    static search_req zero;
    search_req *s = malloc(sizeof(*s));
    lethe_match *m = NULL;
    size_t n = 0;
    char msg[512];
    jsbuf b;
    if (!s) {
        reply_json(r, 503, NULL);
        return;
    }
    *s = zero;
    lethe_search_options_init(&s->so);
    s->so.actor = req->actor;
    s->so.threads = 1;
    if ((content_type_is(req, "application/json") ? search_from_json(req, r, s)
                                                  : search_from_photo(req, r, s)) < 0)
        goto out;
    /* no store_mu: the handle is shared (LETHE_STORE_SHARED), searches run
     * in parallel with each other and with the one writer */
    int rc = s->nprobes > 1
                 ? lethe_search_fused(req->sv->store, s->q, s->nprobes, &s->so, &m, &n)
                 : lethe_search(req->sv->store, s->q, 1, &s->so, &m, &n);
    /* the answer's bounds, as `lethe search --json` gives them (the
     * gallery the matches were ranked in, or the store's now when none) */
    search_bounds bounds;
    if (rc == LETHE_OK && n > 0)
        search_bounds_from(&s->so, m[0].gallery, &bounds);
    else if (rc == LETHE_OK)
        rc = search_bounds_get(req->sv->store, &s->so, &bounds);
    if (rc != LETHE_OK)
        store_message(req, msg, sizeof(msg));
    if (rc != LETHE_OK) {
        reply_lethe(r, rc, msg);
        goto out;
    }
    if (jb_open(&b) < 0) {
        reply_json(r, 503, NULL);
        goto out;
    }
    char source[64];
    snprintf(source, sizeof(source), s->nprobes > 1 ? "%d probes of one person, fused"
                                     : s->from_photo ? "photo" : "descriptor", s->nprobes);
    json_put_search(b.f, 0, source, s->nprobes > 1 ? s->nprobes : 0, &bounds, m, n);
    fputs("\n", b.f);
    reply_json(r, 200, jb_close(&b));
out:
    lethe_matches_free(m, n);
    free(s);
}

/* ------------------------------------------------------------- verify */

static void put_verify(FILE *f, const search_req *s, const lethe_verify_result *v)
{
    fprintf(f, "{\"match\":%s,\"distance\":%.6f,\"threshold\":%.6f,\"photo\":\"%s\","
               "\"face\":%lld,\"templates\":%d,\"photos\":%d,\"against\":\"%s\"}\n",
            v->match ? "true" : "false", (double)v->distance, (double)v->threshold, v->photo,
            (long long)v->face, v->templates, v->photos, against_names[s->against_kind]);
}

/* 1:1: the largest face of a photo, or a descriptor, against the stored
 * photos of an uploader, a URL or a photo id (lethe_verify) */
static void h_verify(request *req, reply *r)
{
    static search_req zero;
    search_req *s = malloc(sizeof(*s));
    lethe_verify_result v;
    char msg[512];
    jsbuf b;
    if (!s) {
        reply_json(r, 503, NULL);
        return;
    }
    *s = zero;
    s->verify = 1;
    lethe_search_options_init(&s->so);
    s->so.actor = req->actor;
    if ((content_type_is(req, "application/json") ? search_from_json(req, r, s)
                                                  : search_from_photo(req, r, s)) < 0)
        goto out;
    server_lock(req->sv);
    int rc = lethe_verify(req->sv->store, s->q, s->against_kind, s->against, &s->so, &v);
    if (rc != LETHE_OK)
        store_message(req, msg, sizeof(msg));
    server_unlock(req->sv);
    if (rc != LETHE_OK)
        reply_lethe(r, rc, msg);
    else if (jb_open(&b) < 0)
        reply_json(r, 503, NULL);
    else {
        put_verify(b.f, s, &v);
        reply_json(r, 200, jb_close(&b));
    }
out:
    free(s);
}

/* ------------------------------------------------------------- lookup */

/* lethe_lookup's document (of bytes[0..len) for a file) as the reply. */
static void lookup_reply(request *req, reply *r, int kind, const char *value, const void *bytes,
                         size_t len)
{
    char *out = NULL, msg[512];
    server_lock(req->sv);
    int rc = bytes ? lethe_lookup_bytes(req->sv->store, bytes, len, req->actor, "json", &out)
                   : lethe_lookup(req->sv->store, kind, value, req->actor, "json", &out);
    if (rc != LETHE_OK)
        store_message(req, msg, sizeof(msg));
    server_unlock(req->sv);
    if (rc != LETHE_OK)
        reply_lethe(r, rc, msg);
    else
        reply_document(r, out);
}

/* A lookup by the exact photo file (raw, or a multipart "photo"): hashed,
 * never decoded. */
static void lookup_file(request *req, reply *r)
{
    form f = {.nnames = 0, .photo_field = "photo"};
    if (form_read(req, &f, content_type_is_photo(req)) < 0) {
        reply_error(r, f.error_status, "bad_request", NULL, "%s", f.error);
    } else if (!f.photo_len) {
        reply_error(r, 400, "bad_request", NULL, "no photo file in the request");
    } else {
        lookup_reply(req, r, LETHE_LOOKUP_FILE, NULL, f.photo, f.photo_len);
    }
    form_free(&f);
}

static void h_lookup(request *req, reply *r)
{
    static const char *const allowed[] = {"uploader", "url", "photo_id", NULL};
    static const int kinds[] = {LETHE_LOOKUP_UPLOADER, LETHE_LOOKUP_URL, LETHE_LOOKUP_PHOTO_ID};
    sj_object o;
    const char *v[3];
    int given = 0, which = 0;
    if (!content_type_is(req, "application/json")) {
        lookup_file(req, r);
        return;
    }
    if (read_json(req, r, &o, allowed) < 0)
        goto out;
    for (int i = 0; i < 3; i++) {
        if (json_text(r, &o, allowed[i], 0, &v[i]) < 0)
            goto out;
        if (v[i] && *v[i])
            given++, which = i;
    }
    if (given != 1) {
        reply_error(r, 400, "bad_request", NULL,
                    "give exactly one of \"uploader\", \"url\", "
                    "\"photo_id\" (the source's id, or the photo's SHA-256), or send the "
                    "photo file itself");
        goto out;
    }
    lookup_reply(req, r, kinds[which], v[which], NULL, 0);
out:
    sj_free(&o);
}

/* -------------------------------------------------- log, datasheet, digest */

static void h_log(request *req, reply *r)
{
    form f = {.nnames = 0};
    char *out = NULL, msg[512];
    jsbuf b;
    if (query_only(req, r, &f) < 0) {
        form_free(&f);
        return;
    }
    server_lock(req->sv);
    int rc = lethe_log_export(req->sv->store, "jsonl", &out);
    if (rc != LETHE_OK)
        store_message(req, msg, sizeof(msg));
    server_unlock(req->sv);
    if (rc != LETHE_OK) {
        reply_lethe(r, rc, msg);
        return;
    }
    if (jb_open(&b) < 0) {
        lethe_free_string(out);
        {
            reply_json(r, 503, NULL);
            return;
        }
    }
    /* JSON Lines into one array */
    fputs("{\"entries\":[", b.f);
    int first = 1;
    for (const char *p = out; *p;) {
        size_t n = strcspn(p, "\n");
        if (n)
            fprintf(b.f, "%s%.*s", first ? "" : ",", (int)n, p);
        first &= !n;
        p += n + (p[n] == '\n');
    }
    fputs("]}\n", b.f);
    lethe_free_string(out);
    reply_json(r, 200, jb_close(&b));
}

static void h_log_verify(request *req, reply *r)
{
    form f = {.nnames = 0};
    uint64_t n = 0, bad = 0;
    char msg[512];
    jsbuf b;
    if (query_only(req, r, &f) < 0) {
        form_free(&f);
        return;
    }
    server_lock(req->sv);
    int rc = lethe_log_verify(req->sv->store, &n, &bad);
    store_message(req, msg, sizeof(msg));
    server_unlock(req->sv);
    if (rc != LETHE_OK && rc != LETHE_ERR_FORMAT) {
        reply_lethe(r, rc, msg);
        return;
    }
    if (jb_open(&b) < 0) {
        reply_json(r, 503, NULL);
        return;
    }
    json_put_log_verify(b.f, rc == LETHE_OK, n, bad, msg);
    fputc('\n', b.f);
    reply_json(r, 200, jb_close(&b));
}

static void h_datasheet(request *req, reply *r)
{
    form f = {.names = {"format"}, .nnames = 1};
    char *out = NULL, msg[512];
    if (query_only(req, r, &f) < 0) {
        form_free(&f);
        return;
    }
    const char *fmt = form_get(&f, "format") ? form_get(&f, "format") : "json";
    const char *type = !strcmp(fmt, "json")   ? "application/json"
                       : !strcmp(fmt, "md")   ? "text/markdown; charset=utf-8"
                       : !strcmp(fmt, "html") ? "text/html; charset=utf-8"
                                              : NULL;
    if (!type) {
        reply_error(r, 400, "bad_request", NULL, "format must be json, md or html");
        {
            form_free(&f);
            return;
        }
    }
    server_lock(req->sv);
    int rc = lethe_datasheet(req->sv->store, fmt, &out);
    if (rc != LETHE_OK)
        store_message(req, msg, sizeof(msg));
    server_unlock(req->sv);
    form_free(&f);
    if (rc != LETHE_OK) {
        reply_lethe(r, rc, msg);
        return;
    }
    char *copy = strdup(out);
    lethe_free_string(out);
    reply_text(r, 200, type, copy);
}

static void h_digest(request *req, reply *r)
{
    form f = {.names = {"full"}, .nnames = 1};
    char hex[65], msg[512], *json = NULL;
    int matches = 0, rc;
    if (query_only(req, r, &f) < 0) {
        form_free(&f);
        return;
    }
    const char *full = form_get(&f, "full");
    int want_full = full && (!strcmp(full, "1") || !strcmp(full, "true"));
    if (full && !want_full && strcmp(full, "0") && strcmp(full, "false")) {
        reply_error(r, 400, "bad_request", NULL, "full must be true or false");
        {
            form_free(&f);
            return;
        }
    }
    form_free(&f);
    server_lock(req->sv);
    rc = want_full ? lethe_store_digest_full(req->sv->store, hex, &matches)
                   : lethe_store_digest(req->sv->store, hex);
    if (rc != LETHE_OK)
        store_message(req, msg, sizeof(msg));
    server_unlock(req->sv);
    if (rc != LETHE_OK) {
        reply_lethe(r, rc, msg);
        return;
    }
    if (asprintf(&json,
                 want_full ? "{\"digest\":\"%s\",\"matches_kept\":%s}\n"
                           : "{\"digest\":\"%s\"%s}\n",
                 hex, want_full ? (matches ? "true" : "false") : "") < 0)
        json = NULL;
    reply_json(r, 200, json);
}

/* ------------------------------------------------------------- policy */

static void h_policy_get(request *req, reply *r)
{
    form f = {.nnames = 0};
    char *text = NULL, msg[512];
    jsbuf b;
    if (query_only(req, r, &f) < 0) {
        form_free(&f);
        return;
    }
    server_lock(req->sv);
    int rc = lethe_policy_get(req->sv->store, &text);
    if (rc != LETHE_OK)
        store_message(req, msg, sizeof(msg));
    server_unlock(req->sv);
    if (rc != LETHE_OK) {
        reply_lethe(r, rc, msg);
        return;
    }
    if (jb_open(&b) < 0) {
        lethe_free_string(text);
        {
            reply_json(r, 503, NULL);
            return;
        }
    }
    fputs("{\"policy\":", b.f);
    json_put_string(b.f, text);
    fputs("}\n", b.f);
    lethe_free_string(text);
    reply_json(r, 200, jb_close(&b));
}

static void h_policy_put(request *req, reply *r)
{
    static const char *const allowed[] = {"key", "allows", "dry_run", NULL};
    sj_object o;
    const char *key, *allows;
    int dry;
    uint64_t dropped = 0;
    char msg[512];
    jsbuf b;
    if (read_json(req, r, &o, allowed) < 0 || json_text(r, &o, "key", 1, &key) < 0 ||
        json_text(r, &o, "allows", 1, &allows) < 0 || json_bool(r, &o, "dry_run", &dry) < 0) {
        sj_free(&o);
        return;
    }
    server_lock(req->sv);
    int rc = lethe_policy_set(req->sv->store, key, allows, req->actor, dry, &dropped);
    if (rc != LETHE_OK)
        store_message(req, msg, sizeof(msg));
    server_unlock(req->sv);
    if (rc != LETHE_OK || jb_open(&b) < 0) {
        rc != LETHE_OK ? reply_lethe(r, rc, msg) : reply_json(r, 503, NULL);
        {
            sj_free(&o);
            return;
        }
    }
    fputs("{\"key\":", b.f);
    json_put_string(b.f, key);
    fputs(",\"allows\":", b.f);
    json_put_string(b.f, allows);
    fprintf(b.f, ",\"dry_run\":%s,\"templates_dropped\":%llu}\n", dry ? "true" : "false",
            (unsigned long long)dropped);
    sj_free(&o);
    reply_json(r, 200, jb_close(&b));
}

/* ------------------------------------------------------------- forget */


/* A forget request's "face" (one descriptor of the person, into face)
 * and "face_threshold": 1 given, 0 not, -1 with the 400. */
static int forget_face(reply *r, const sj_object *o, lethe_selector *sel, float *face)
{
    const sj_member *f = sj_get(o, "face"), *t = sj_get(o, "face_threshold");
    char msg[256], num[64];
    if (t && (t->type != SJ_NUMBER || !f)) {
        reply_error(r, 400, "bad_request", NULL,
                    "\"face_threshold\" is a number, and goes with \"face\"");
        return -1;
    }
    if (!f)
        return 0;
    if (lethe_descriptor_parse(f->raw, f->raw_len, face, msg, sizeof(msg)) != LETHE_OK) {
        reply_error(r, 400, "bad_request", NULL, "\"face\": %s", msg);
        return -1;
    }
    sel->faces = face;
    sel->n_faces = 1;
    if (t) {
        char *end;
        snprintf(num, sizeof(num), "%.*s", (int)(t->raw_len < 63 ? t->raw_len : 63), t->raw);
        sel->face_threshold = strtof(num, &end);
        if (*end || !isfinite(sel->face_threshold) || sel->face_threshold <= 0) {
            reply_error(r, 400, "bad_request", NULL,
                        "\"face_threshold\" is a distance above 0, not %s", num);
            return -1;
        }
    }
    return 1;
}

/* The selector and flags of a forget request: 0, or -1 with the 400. */
static int forget_request(reply *r, const sj_object *o, lethe_selector *sel, float *face,
                          unsigned *flags)
{
    int dry, confirm, optout, undated, by_face;
    if (json_text(r, o, "photo_id", 0, &sel->photo_id) < 0 ||
        json_text(r, o, "url", 0, &sel->url) < 0 ||
        json_text(r, o, "uploader", 0, &sel->uploader) < 0 ||
        json_text(r, o, "source", 0, &sel->source) < 0 ||
        json_text(r, o, "jurisdiction", 0, &sel->jurisdiction) < 0 ||
        json_text(r, o, "collected_before", 0, &sel->collected_before) < 0 ||
        json_bool(r, o, "include_undated", &undated) < 0 || json_bool(r, o, "dry_run", &dry) < 0 ||
        json_bool(r, o, "confirm", &confirm) < 0 || json_bool(r, o, "optout", &optout) < 0 ||
        (by_face = forget_face(r, o, sel, face)) < 0)
        return -1;
    sel->include_undated = undated;
    if (!sel->photo_id && !sel->url && !sel->uploader && !sel->source && !sel->jurisdiction &&
        !sel->collected_before && !by_face) {
        reply_error(r, 400, "bad_request", NULL,
                    "give at least one selector: photo_id, url, "
                    "uploader, source, jurisdiction, collected_before, face");
        return -1;
    }
    *flags = (dry ? LETHE_FORGET_DRY_RUN : 0) | (confirm ? LETHE_FORGET_CONFIRMED : 0) |
             (optout ? LETHE_FORGET_OPTOUT : 0);
    return 0;
}

/* The erasure (or dry run) of what sel selects, and its answer. */
static void forget_run(request *req, reply *r, const lethe_selector *sel, unsigned flags)
{
    lethe_forget_result x;
    char *receipt = NULL, *matched = NULL, msg[512];
    jsbuf b;
    memset(&x, 0, sizeof(x));
    server_lock(req->sv);
    int rc = lethe_forget(req->sv->store, sel, flags, req->actor, &x, &receipt, &matched);
    if (rc != LETHE_OK)
        store_message(req, msg, sizeof(msg));
    server_unlock(req->sv);
    if (rc != LETHE_OK && rc != LETHE_ERR_CONFIRM) {
        reply_lethe(r, rc, msg);
        goto out;
    }
    if (jb_open(&b) < 0) {
        reply_json(r, 503, NULL);
        goto out;
    }
    /* refused for want of confirmation: the dry run goes inside the error */
    if (rc == LETHE_ERR_CONFIRM)
        fputs("\"dry_run\":", b.f);
    int dry = (flags & LETHE_FORGET_DRY_RUN) || rc != LETHE_OK;
    json_put_forget(b.f, flags & LETHE_FORGET_OPTOUT ? "optout" : "forget", dry,
                    receipt && !dry, &x, receipt, matched ? matched : "[]");
    if (rc == LETHE_OK)
        fputc('\n', b.f);
    char *json = jb_close(&b);
    if (rc == LETHE_ERR_CONFIRM) {
        reply_error(r, 409, "confirmation_required", json,
                    "not erased: %s; look at the dry run (\"dry_run\" here), then send the "
                    "request again with \"confirm\": true",
                    x.wide ? x.wide : "confirmation needed");
        free(json);
    } else {
        reply_json(r, 200, json);
    }
out:
    lethe_free_string(receipt);
    lethe_free_string(matched);
}

/* A form's boolean field: 1, 0 (absent), or -1 with the 400. */
static int form_bool(reply *r, const form *f, const char *name)
{
    const char *v = form_get(f, name);
    if (!v || !strcmp(v, "false") || !strcmp(v, "0"))
        return 0;
    if (!strcmp(v, "true") || !strcmp(v, "1"))
        return 1;
    reply_error(r, 400, "bad_request", NULL, "'%s' is true or false", name);
    return -1;
}

/* The selector of a forget by photo: the exact file (by "file", the
 * default: hashed, never decoded), or the person whose largest face it
 * shows (by "face": described, as a selfie on the page; "face_threshold"
 * as for a descriptor). 0, or -1 with the reply. */
static int forget_photo_selector(request *req, reply *r, const form *f, lethe_selector *sel,
                                 float *face)
{
    const char *by = form_get(f, "by"), *t = form_get(f, "face_threshold");
    int by_face = by && !strcmp(by, "face");
    if (by && !by_face && strcmp(by, "file")) {
        reply_error(r, 400, "bad_request", NULL,
                    "'by' is file (the exact photo, hashed) or face (the person it shows)");
        return -1;
    }
    if (t && !by_face) {
        reply_error(r, 400, "bad_request", NULL, "'face_threshold' goes with by=face");
        return -1;
    }
    if (!by_face) {
        sel->image_bytes = f->photo;
        sel->image_len = f->photo_len;
        return 0;
    }
    if (t) {
        char *end;
        sel->face_threshold = strtof(t, &end);
        if (!*t || *end || !(sel->face_threshold > 0 && sel->face_threshold < 2)) {
            reply_error(r, 400, "bad_request", NULL,
                        "'face_threshold' is a distance above 0, not %s", t);
            return -1;
        }
    }
    if (describe_photo(req, r, f->photo, f->photo_len, -1, face) < 0)
        return -1;
    sel->faces = face;
    sel->n_faces = 1;
    return 0;
}

/* Forget by a photo (raw with the rest in the query, or a multipart
 * "photo" with the rest as fields): the exact file, or its person. */
static void forget_file(request *req, reply *r)
{
    form f = {.names = {"dry_run", "confirm", "optout", "by", "face_threshold"},
              .nnames = 5,
              .photo_field = "photo"};
    lethe_selector sel;
    float face[LETHE_DESCRIPTOR_DIM];
    int dry, confirm, optout;
    memset(&sel, 0, sizeof(sel));
    if (form_read(req, &f, content_type_is_photo(req)) < 0)
        reply_error(r, f.error_status, "bad_request", NULL, "%s", f.error);
    else if (!f.photo_len)
        reply_error(r, 400, "bad_request", NULL, "no photo file in the request");
    else if ((dry = form_bool(r, &f, "dry_run")) >= 0 &&
             (confirm = form_bool(r, &f, "confirm")) >= 0 &&
             (optout = form_bool(r, &f, "optout")) >= 0 &&
             forget_photo_selector(req, r, &f, &sel, face) == 0)
        forget_run(req, r, &sel,
                   (dry ? LETHE_FORGET_DRY_RUN : 0) | (confirm ? LETHE_FORGET_CONFIRMED : 0) |
                       (optout ? LETHE_FORGET_OPTOUT : 0));
    form_free(&f);
}

static void h_forget(request *req, reply *r)
{
    static const char *const allowed[] = {"photo_id",
                                          "url",
                                          "uploader",
                                          "source",
                                          "jurisdiction",
                                          "collected_before",
                                          "include_undated",
                                          "dry_run",
                                          "confirm",
                                          "optout",
                                          "face",
                                          "face_threshold",
                                          NULL};
    sj_object o;
    lethe_selector sel;
    float face[LETHE_DESCRIPTOR_DIM];
    unsigned flags = 0;
    if (!content_type_is(req, "application/json")) {
        forget_file(req, r);
        return;
    }
    memset(&sel, 0, sizeof(sel));
    if (read_json(req, r, &o, allowed) == 0 && forget_request(r, &o, &sel, face, &flags) == 0)
        forget_run(req, r, &sel, flags);
    sj_free(&o);
}

/* ---------------------------------------------------- opt-outs, receipts */

static void h_optouts(request *req, reply *r)
{
    form f = {.nnames = 0};
    char *json = NULL, msg[512];
    if (query_only(req, r, &f) < 0) {
        form_free(&f);
        return;
    }
    server_lock(req->sv);
    int rc = lethe_optout_list(req->sv->store, &json);
    if (rc != LETHE_OK)
        store_message(req, msg, sizeof(msg));
    server_unlock(req->sv);
    if (rc != LETHE_OK) {
        reply_lethe(r, rc, msg);
        return;
    }
    reply_document(r, json);
}

/* Withdraw a standing opt-out (DELETE /v1/optouts/{id}). */
static void h_optout_remove(request *req, reply *r)
{
    form f = {.nnames = 0};
    char msg[512], *json = NULL;
    long long id = route_id(req);
    if (query_only(req, r, &f) < 0) {
        form_free(&f);
        return;
    }
    server_lock(req->sv);
    int rc = lethe_optout_remove(req->sv->store, id, req->actor);
    if (rc != LETHE_OK)
        store_message(req, msg, sizeof(msg));
    server_unlock(req->sv);
    if (rc != LETHE_OK) {
        reply_lethe(r, rc, msg);
        return;
    }
    if (asprintf(&json, "{\"removed\":%lld}\n", id) < 0)
        json = NULL;
    reply_json(r, 200, json);
}

static void h_receipt_verify(request *req, reply *r)
{
    char msg[512] = "";
    jsbuf b;
    int rc =
        lethe_receipt_verify(req->body ? req->body : "", req->body_len, NULL, msg, sizeof(msg));
    if (rc == LETHE_OK) {
        server_lock(req->sv);
        rc = lethe_receipt_check(req->sv->store, req->body, req->body_len);
        if (rc != LETHE_OK)
            store_message(req, msg, sizeof(msg));
        server_unlock(req->sv);
    }
    if (rc != LETHE_OK && rc != LETHE_ERR_FORMAT) {
        reply_lethe(r, rc, msg);
        return;
    }
    if (jb_open(&b) < 0) {
        reply_json(r, 503, NULL);
        return;
    }
    fprintf(b.f, "{\"valid\":%s,\"issued_by_store\":%s,\"error\":", rc ? "false" : "true",
            rc ? "false" : "true");
    if (rc)
        json_put_string(b.f, msg);
    else
        fputs("null", b.f);
    fputs("}\n", b.f);
    reply_json(r, 200, jb_close(&b));
}

/* ------------------------------------------------------------- ingest */

typedef struct ingest_errors {
    char first[512];
    char input[256];
    size_t line;
    int n;
} ingest_errors;

static void on_ingest_error(void *ctx, const char *input, size_t line, const char *message)
{
    ingest_errors *e = ctx;
    if (!e->n++) {
        snprintf(e->first, sizeof(e->first), "%s", message);
        snprintf(e->input, sizeof(e->input), "%s", input ? input : "");
        e->line = line;
    }
}

/* The photo's summary, as `lethe ingest --json` writes it. */
static void put_ingest(FILE *f, const lethe_ingest_stats *st, double seconds,
                       const lethe_engine *engine, ingest_errors *e)
{
    ingest_error one = {e->input, e->first, e->line};
    json_put_ingest(f, st, seconds, 1, engine, &one, e->n ? 1 : 0);
}

/* One photo into the store, under the lock. */
static int ingest_one(request *req, const form *f, lethe_ingest_stats *st, ingest_errors *e,
                      char *msg, size_t n)
{
    lethe_ingest_options io;
    lethe_ingest *ing = NULL;
    lethe_provenance p = {.photo_id = form_get(f, "photo_id"),
                          .url = form_get(f, "url"),
                          .uploader = form_get(f, "uploader"),
                          .source = form_get(f, "source"),
                          .license = form_get(f, "license"),
                          .jurisdiction = form_get(f, "jurisdiction"),
                          .consent = form_get(f, "consent"),
                          .collected_at = form_get(f, "collected_at")};
    lethe_ingest_options_init(&io);
    io.engine = req->sv->engine;
    io.actor = req->actor;
    io.threads = 1;
    io.on_error = on_ingest_error;
    io.ctx = e;
    server_lock(req->sv);
    int rc = lethe_ingest_begin(req->sv->store, &io, &ing);
    if (rc == LETHE_OK) {
        const char *name = form_get(f, "name") ? form_get(f, "name") : f->photo_name;
        int rc2 = lethe_ingest_photo_bytes(ing, f->photo, f->photo_len, name, &p, 0);
        rc = lethe_ingest_end(ing, st);
        if (rc == LETHE_OK)
            rc = rc2;
    }
    if (rc != LETHE_OK)
        store_message(req, msg, n);
    server_unlock(req->sv);
    return rc;
}

static void h_ingest(request *req, reply *r)
{
    form f = {.names = {"photo_id", "url", "uploader", "source", "license", "jurisdiction",
                        "consent", "collected_at", "name"},
              .nnames = 9,
              .photo_field = "photo"};
    lethe_ingest_stats st;
    ingest_errors e = {"", "", 0, 0};
    char msg[512];
    jsbuf b;
    memset(&st, 0, sizeof(st));
    if (form_read(req, &f, content_type_is_photo(req)) < 0) {
        reply_error(r, f.error_status, "bad_request", NULL, "%s", f.error);
        {
            form_free(&f);
            return;
        }
    }
    if (!req->sv->engine || !f.photo || !f.photo_len) {
        reply_error(r, req->sv->engine ? 400 : 503,
                    req->sv->engine ? "bad_request" : "no_face_engine", NULL, "%s",
                    req->sv->engine ? "no photo in the request" : req->sv->engine_error);
        {
            form_free(&f);
            return;
        }
    }
    double t0 = serve_now();
    int rc = ingest_one(req, &f, &st, &e, msg, sizeof(msg));
    double seconds = serve_now() - t0;
    form_free(&f);
    if (rc != LETHE_OK) {
        reply_lethe(r, rc, msg);
        return;
    }
    if (jb_open(&b) < 0) {
        reply_json(r, 503, NULL);
        return;
    }
    put_ingest(b.f, &st, seconds, req->sv->engine, &e);
    if (!e.n)
        fputc('\n', b.f);
    char *json = jb_close(&b);
    if (e.n && json) {
        char *extra = NULL;
        if (asprintf(&extra, "\"ingest\":%s", json) < 0)
            extra = NULL;
        reply_error(r, 422, "photo_not_ingested", extra, "%s", e.first);
        free(extra);
        free(json);
    } else {
        reply_json(r, 200, json);
    }
}

/* ------------------------------------------------------------- detect */

static void put_detected(FILE *f, const char *image, const lethe_analysis *an)
{
    fputs("{\"image\":", f);
    json_put_string(f, image);
    fprintf(f, ",\"width\":%d,\"height\":%d,\"faces\":[", an->width, an->height);
    for (int i = 0; i < an->count; i++) {
        const lethe_face *fc = &an->faces[i];
        fprintf(f, "%s{\"box\":[%.3f,%.3f,%.3f,%.3f],\"score\":%.6f,\"landmarks\":", i ? "," : "",
                (double)fc->box[0], (double)fc->box[1], (double)fc->box[2], (double)fc->box[3],
                (double)fc->score);
        if (!fc->has_landmarks)
            fputs("null", f);
        for (int k = 0; fc->has_landmarks && k < LETHE_LANDMARKS; k++)
            fprintf(f, "%s[%.3f,%.3f]%s", k ? "," : "[", (double)fc->landmarks[k][0],
                    (double)fc->landmarks[k][1], k == LETHE_LANDMARKS - 1 ? "]" : "");
        fputc('}', f);
    }
    fputs("]}\n", f);
}

/* The faces of a photo: boxes, scores, landmarks. No descriptor is
 * computed, nothing of the store is read or written, and nothing is
 * logged but the access log's line (which holds no part of the photo). */
static void h_detect(request *req, reply *r)
{
    form f = {.nnames = 0, .photo_field = "photo"};
    lethe_analysis an;
    char msg[512];
    jsbuf b;
    memset(&an, 0, sizeof(an));
    if (form_read(req, &f, content_type_is_photo(req)) < 0) {
        reply_error(r, f.error_status, "bad_request", NULL, "%s", f.error);
        goto out;
    }
    if (!req->sv->engine || !f.photo || !f.photo_len) {
        reply_error(r, req->sv->engine ? 400 : 503,
                    req->sv->engine ? "bad_request" : "no_face_engine", NULL, "%s",
                    req->sv->engine ? "no photo in the request" : req->sv->engine_error);
        goto out;
    }
    int rc = lethe_engine_analyze_bytes(req->sv->engine, f.photo, f.photo_len, NULL,
                                        LETHE_WANT_LANDMARKS | LETHE_SINGLE_THREAD, &an, msg,
                                        sizeof(msg));
    if (rc != LETHE_OK)
        reply_lethe(r, rc == LETHE_ERR_FORMAT ? LETHE_ERR_ARG : rc, msg);
    else if (jb_open(&b) < 0)
        reply_json(r, 503, NULL);
    else {
        /* named as `lethe detect --json` names it: the file name the part
         * came with, else "photo" (a raw body has none) */
        put_detected(b.f, f.photo_name[0] ? f.photo_name : "photo", &an);
        reply_json(r, 200, jb_close(&b));
    }
out:
    lethe_faces_free(an.faces);
    form_free(&f);
}

/* ------------------------------------------------------------- backup */

/* A backup into a new folder under the operator's --backup-dir, named by
 * the time (the client chooses nothing of the path). */
static void h_backup(request *req, reply *r)
{
    form f = {.nnames = 0};
    char when[32], dest[4096], msg[512];
    char *info = NULL;
    time_t t = time(NULL);
    struct tm tm;
    if (query_only(req, r, &f) < 0) {
        form_free(&f);
        return;
    }
    if (!req->sv->backup_dir) {
        reply_error(r, 501, "not_configured", NULL,
                    "this server makes no backups: it was started without --backup-dir");
        return;
    }
    gmtime_r(&t, &tm);
    strftime(when, sizeof(when), "%Y%m%dT%H%M%SZ", &tm);
    server_lock(req->sv);
    int rc = LETHE_ERR_IO;
    snprintf(msg, sizeof(msg), "no free backup name in the backup folder");
    /* a second backup within the same second gets a suffix */
    for (int i = 0; i < 100; i++) {
        snprintf(dest, sizeof(dest), "%s/lethe-backup-%s%s%.0d", req->sv->backup_dir, when,
                 i ? "-" : "", i);
        if (access(dest, F_OK) == 0)
            continue;
        rc = lethe_backup(req->sv->store, dest, req->actor, &info);
        if (rc != LETHE_OK)
            store_message(req, msg, sizeof(msg));
        break;
    }
    server_unlock(req->sv);
    if (rc != LETHE_OK) {
        reply_lethe(r, rc, msg);
        return;
    }
    jsbuf b;
    if (jb_open(&b) < 0) {
        lethe_free_string(info);
        reply_json(r, 503, NULL);
        return;
    }
    fputs("{\"backup\":", b.f);
    json_put_string(b.f, strrchr(dest, '/') + 1);
    fprintf(b.f, ",\"info\":%s}\n", info);
    lethe_free_string(info);
    reply_json(r, 200, jb_close(&b));
}

/* ---------------------------------------------------------- the table */

#define ALL     LETHE_ROLES_ALL
#define ADMIN   LETHE_ROLE_ADMIN
#define INGEST  LETHE_ROLE_INGEST
#define SEARCH  LETHE_ROLE_SEARCH
#define AUDIT   LETHE_ROLE_AUDIT
#define ERASURE LETHE_ROLE_ERASURE

/* Who may call what (docs/serve.md, "Roles"; tests/cli/test_serve.sh
 * checks every cell). admin may call everything; no endpoint gives
 * templates back. */
const route serve_routes[] = {
    {"GET", "/v1/status", ALL, BODY_NONE, h_status},
    {"POST", "/v1/search", ADMIN | SEARCH, BODY_JSON_OR_PHOTO, h_search},
    {"POST", "/v1/verify", ADMIN | SEARCH, BODY_JSON_OR_PHOTO, h_verify},
    {"POST", "/v1/lookup", ADMIN | SEARCH | ERASURE, BODY_JSON_OR_PHOTO, h_lookup},
    {"GET", "/v1/log", ADMIN | AUDIT, BODY_NONE, h_log},
    {"GET", "/v1/log/verify", ADMIN | AUDIT, BODY_NONE, h_log_verify},
    {"GET", "/v1/datasheet", ADMIN | AUDIT, BODY_NONE, h_datasheet},
    {"GET", "/v1/digest", ADMIN | AUDIT | ERASURE, BODY_NONE, h_digest},
    {"GET", "/v1/policy", ADMIN | AUDIT | INGEST, BODY_NONE, h_policy_get},
    {"GET", "/v1/policy/check", ADMIN | AUDIT | INGEST, BODY_NONE, h_policy_check},
    {"PUT", "/v1/policy", ADMIN, BODY_JSON, h_policy_put},
    {"POST", "/v1/forget", ADMIN | ERASURE, BODY_JSON_OR_PHOTO, h_forget},
    {"GET", "/v1/optouts", ADMIN | ERASURE | AUDIT, BODY_NONE, h_optouts},
    {"POST", "/v1/receipts/verify", ALL, BODY_JSON, h_receipt_verify},
    {"GET", "/v1/receipts/{hash}", ADMIN | ERASURE | AUDIT, BODY_NONE, h_receipt_get},
    {"GET", "/v1/models", ADMIN | AUDIT, BODY_NONE, h_models},
    {"POST", "/v1/models/retire", ADMIN, BODY_JSON, h_model_retire},
    {"POST", "/v1/ingest", ADMIN | INGEST, BODY_PHOTO, h_ingest},
    {"POST", "/v1/ingest/manifest", ADMIN | INGEST, BODY_UPLOAD, h_ingest_manifest},
    {"POST", "/v1/detect", ADMIN | INGEST | SEARCH, BODY_PHOTO, h_detect},
    {"POST", "/v1/backup", ADMIN, BODY_NONE, h_backup},
    {"DELETE", "/v1/optouts/{id}", ADMIN | ERASURE, BODY_NONE, h_optout_remove},
    /* data-subject requests (serve_page_api.c, docs/page.md) */
    {"GET", "/v1/requests", ADMIN | ERASURE, BODY_NONE, h_requests_list},
    {"POST", "/v1/requests/approve", ADMIN | ERASURE, BODY_JSON, h_requests_approve},
    {"POST", "/v1/requests/deny", ADMIN | ERASURE, BODY_JSON, h_requests_deny},
    {"GET", "/v1/requests/auto", ADMIN | ERASURE | AUDIT, BODY_NONE, h_requests_auto_get},
    {"PUT", "/v1/requests/auto", ADMIN, BODY_JSON, h_requests_auto_put},
    {NULL, NULL, 0, 0, NULL},
};
