/*
 * serve_compreface_api.c: the endpoints of lethe serve's CompreFace-
 * compatible API (docs/serve.md, "CompreFace compatibility"), each made of
 * the library calls lethe's own endpoints make:
 *   - a subject is the uploader of its examples, recorded with consent
 *     "explicit" and source "compreface": an example is a photo its subject
 *     gave (self-enrolment), so the subject is the person the photo shows
 *     and the account it came from at once, and an erasure by uploader is
 *     lethe's one-person erasure (no confirmation needed);
 *   - an example's image_id is a random UUID, the provenance's photo_id;
 *   - deleting an example or a subject is lethe_forget, with its receipt;
 *   - recognition and verification are lethe_search, logged with the key's
 *     id as the actor and the purpose fixed on the key.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "cli.h"
#include "serve_compreface.h"

/* ----------------------------------------------------------- examples */

/* An example: a provenance record of source CF_SOURCE. */
typedef struct cf_example {
    char image_id[64];
    char subject[SERVE_FIELD_MAX + 1];
    char photo[65]; /* the photo's SHA-256 */
} cf_example;

typedef struct cf_examples {
    cf_example *v;
    int n, cap;
} cf_examples;

static char *store_msg(request *req, char *msg, size_t n)
{
    snprintf(msg, n, "%s", lethe_store_errmsg(req->sv->store));
    return msg;
}

/* The end of the JSON object starting at p (strings skipped), or NULL. */
static const char *object_end(const char *p)
{
    int in = 0, depth = 0;
    for (; *p; p++) {
        if (in) {
            if (*p == '\\' && p[1])
                p++;
            else if (*p == '"')
                in = 0;
        } else if (*p == '"') {
            in = 1;
        } else if (*p == '{') {
            depth++;
        } else if (*p == '}' && --depth == 0) {
            return p + 1;
        }
    }
    return NULL;
}

/* One provenance record (a flat object of strings) of photo sha. */
static int add_example(cf_examples *e, const char *obj, size_t len, const char *sha)
{
    sj_object o;
    char msg[128];
    int rc = sj_parse(obj, len, &o, msg, sizeof(msg));
    const sj_member *id = sj_get(&o, "photo_id"), *up = sj_get(&o, "uploader"),
                    *src = sj_get(&o, "source");
    if (rc == 0 && id && up && src && id->type == SJ_STRING && up->type == SJ_STRING &&
        src->type == SJ_STRING && !strcmp(src->str, CF_SOURCE) && *id->str &&
        strlen(id->str) < sizeof(e->v->image_id) && strlen(up->str) <= SERVE_FIELD_MAX) {
        if (e->n == e->cap) {
            int nc = e->cap ? 2 * e->cap : 16;
            cf_example *t = realloc(e->v, (size_t)nc * sizeof(*t));
            if (!t)
                rc = -2;
            else
                e->v = t, e->cap = nc;
        }
        if (rc == 0) {
            cf_example *x = &e->v[e->n++];
            snprintf(x->image_id, sizeof(x->image_id), "%s", id->str);
            snprintf(x->subject, sizeof(x->subject), "%s", up->str);
            snprintf(x->photo, sizeof(x->photo), "%s", sha);
        }
    }
    sj_free(&o);
    return rc;
}

/* The examples among what lethe_lookup answers (its JSON: each photo's
 * "photo" hash, then its provenance records, each opening with "path";
 * strings hold no unescaped quote, so the markers cannot be in them). */
static int parse_lookup(const char *doc, cf_examples *e)
{
    char sha[65] = "";
    for (const char *p = doc; (p = strchr(p, '{'));) {
        if (!strncmp(p, "{\"photo\":\"", 10) && strlen(p + 10) >= 64) {
            snprintf(sha, sizeof(sha), "%.64s", p + 10);
            p += 10;
        } else if (!strncmp(p, "{\"path\":", 8)) {
            const char *end = object_end(p);
            if (!end || add_example(e, p, (size_t)(end - p), sha) == -2)
                return -1;
            p = end;
        } else {
            p++;
        }
    }
    return 0;
}

/* The examples the store holds for an uploader or an image id (a logged
 * lookup): 0, or -1 with the error in r. Free e->v. */
static int find_examples(request *req, int kind, const char *value, cf_examples *e, reply *r)
{
    char *doc = NULL, msg[512];
    memset(e, 0, sizeof(*e));
    server_lock(req->sv);
    int rc = lethe_lookup(req->sv->store, kind, value, req->actor, "json", &doc);
    if (rc != LETHE_OK)
        store_msg(req, msg, sizeof(msg));
    server_unlock(req->sv);
    if (rc == LETHE_OK && parse_lookup(doc, e) < 0) {
        rc = LETHE_ERR_NOMEM;
        snprintf(msg, sizeof(msg), "out of memory");
    }
    lethe_free_string(doc);
    if (rc != LETHE_OK) {
        cf_lethe_error(r, rc, msg);
        return -1;
    }
    return 0;
}

/* The example image_id (404 when the store holds none): 0, or -1. */
static int find_example(request *req, const char *image_id, cf_example *out, reply *r)
{
    cf_examples e;
    int found = 0;
    if (find_examples(req, LETHE_LOOKUP_PHOTO_ID, image_id, &e, r) < 0)
        return -1;
    for (int i = 0; i < e.n && !found; i++)
        if (!strcmp(e.v[i].image_id, image_id)) {
            *out = e.v[i];
            found = 1;
        }
    free(e.v);
    if (!found)
        cf_error(r, 404, CF_IMAGE_NOT_FOUND, "Image with ID %s not found", image_id);
    return found ? 0 : -1;
}

/* The image id or subject in the path after prefix: 0, or -1 with the 400. */
static int path_value(request *req, const char *prefix, char *out, size_t n, reply *r)
{
    char why[128];
    if (cf_path_segment(req, prefix, out, n) < 0 || !text_ok(out, why, sizeof(why))) {
        cf_error(r, 400, CF_BAD_ARGUMENT, "the path %s does not name an image or a subject",
                 req->path);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ enrolment */

typedef struct ingest_outcome {
    lethe_ingest_stats st;
    char error[512];
} ingest_outcome;

static void on_error(void *ctx, const char *input, size_t line, const char *message)
{
    ingest_outcome *o = ctx;
    (void)input, (void)line;
    if (!o->error[0])
        snprintf(o->error, sizeof(o->error), "%s", message);
}

/* One example into the store (the ingest holds the lock throughout). */
static int ingest_example(request *req, const cf_photos *p, const lethe_provenance *prov,
                          ingest_outcome *out, char *msg, size_t n)
{
    lethe_ingest_options io;
    lethe_ingest *ing = NULL;
    lethe_ingest_options_init(&io);
    io.engine = req->sv->engine;
    io.actor = req->actor;
    io.threads = 1;
    io.on_error = on_error;
    io.ctx = out;
    server_lock(req->sv);
    int rc = lethe_ingest_begin(req->sv->store, &io, &ing);
    if (rc == LETHE_OK) {
        int rc2 = lethe_ingest_photo_bytes(ing, p->bytes[0], p->len[0], prov->path, prov, 0);
        rc = lethe_ingest_end(ing, &out->st);
        if (rc == LETHE_OK)
            rc = rc2;
    }
    if (rc != LETHE_OK)
        store_msg(req, msg, n);
    server_unlock(req->sv);
    return rc;
}

/* A random (version 4) UUID, as CompreFace's image ids are. */
static int new_uuid(char out[37])
{
    unsigned char b[16];
    if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b))
        return -1;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
    return 0;
}

/* The photo holds exactly one face, scored at least det: 0, or -1. */
static int one_face(request *req, const cf_photos *p, double det, reply *r)
{
    cf_options all = {0, 0, 1};
    lethe_face *faces = NULL;
    int n = 0;
    if (cf_faces(req, p->bytes[0], p->len[0], &all, &faces, &n, r) < 0)
        return -1;
    float score = faces[0].score;
    lethe_faces_free(faces);
    if (n > 1) {
        cf_error(r, 400, CF_TOO_MANY_FACES, "The image holds %d faces; an example must hold one "
                                            "(lethe keeps a template of every face of a photo)", n);
        return -1;
    }
    if (score < det) {
        cf_error(r, 400, CF_NO_FACES, "No face is found in the given image (its one face scores "
                                      "%.3f, below det_prob_threshold %.3f)", (double)score, det);
        return -1;
    }
    return 0;
}

/* What an ingest that went through still refused, as a 400; 0 if none. */
static int ingest_refused(const ingest_outcome *o, reply *r)
{
    const lethe_ingest_stats *st = &o->st;
    if (o->error[0])
        cf_error(r, 400, CF_BAD_FILE, "%s", o->error);
    else if (st->opted_out || st->opted_out_faces)
        cf_error(r, 400, CF_BAD_ARGUMENT, "this photo or face is opted out of the store");
    else if (st->refused)
        cf_error(r, 400, CF_BAD_ARGUMENT, "the consent policy refuses a template for this photo "
                                          "(consent explicit, no jurisdiction: the default rule)");
    else if (!st->templates && !st->duplicates)
        cf_error(r, 400, CF_NO_FACES, "No face is found in the given image");
    else
        return 0;
    return -1;
}

void cf_add_example(request *req, reply *r)
{
    static const char *const allowed[] = {"subject", "det_prob_threshold", NULL};
    cf_query q;
    cf_options o;
    cf_photos p = {.names = {"file"}, .n = 1};
    ingest_outcome out;
    char uuid[37], path[64], msg[512];
    memset(&out, 0, sizeof(out));
    if (cf_query_read(req, &q, allowed, r) < 0 || cf_options_read(&q, &o, r) < 0)
        goto out;
    const char *subject = cf_query_get(&q, "subject");
    if (!subject || !*subject) {
        cf_error(r, 400, CF_MISSING_PARAM, "Required request parameter 'subject' is not present");
        goto out;
    }
    if (cf_photos_read(req, &p, r) < 0 || one_face(req, &p, o.det_threshold, r) < 0)
        goto out;
    if (new_uuid(uuid) < 0) {
        cf_error(r, 503, CF_UNDEFINED, "no random bytes for an image id");
        goto out;
    }
    snprintf(path, sizeof(path), "compreface:%s", uuid);
    lethe_provenance prov = {.path = path, .photo_id = uuid, .uploader = subject,
                             .source = CF_SOURCE, .consent = "explicit"};
    int rc = ingest_example(req, &p, &prov, &out, msg, sizeof(msg));
    if (rc != LETHE_OK) {
        cf_lethe_error(r, rc, msg);
        goto out;
    }
    if (ingest_refused(&out, r) < 0)
        goto out;
    jsbuf b;
    if (jb_open(&b) < 0) {
        reply_json(r, 503, NULL);
        goto out;
    }
    fprintf(b.f, "{\"image_id\":\"%s\",\"subject\":", uuid);
    json_put_string(b.f, subject);
    fputs("}\n", b.f);
    reply_json(r, 200, jb_close(&b));
out:
    cf_photos_free(&p);
    cf_query_free(&q);
}

/* ------------------------------------------------------------- listing */

static void put_examples(FILE *f, const cf_examples *e, long page, long size)
{
    long total = e->n, pages = (total + size - 1) / size;
    fputs("{\"faces\":[", f);
    for (long i = page * size, k = 0; i < total && k < size; i++, k++) {
        fprintf(f, "%s{\"image_id\":\"%s\",\"subject\":", k ? "," : "", e->v[i].image_id);
        json_put_string(f, e->v[i].subject);
        fputc('}', f);
    }
    fprintf(f, "],\"page_number\":%ld,\"page_size\":%ld,\"total_pages\":%ld,"
               "\"total_elements\":%ld}\n", page, size, pages, total);
}

void cf_list_examples(request *req, reply *r)
{
    static const char *const allowed[] = {"subject", "page", "size", NULL};
    cf_query q;
    cf_examples e = {0};
    long page = 0, size = 20;
    char *end;
    jsbuf b;
    if (cf_query_read(req, &q, allowed, r) < 0)
        goto out;
    const char *subject = cf_query_get(&q, "subject"), *pg = cf_query_get(&q, "page"),
               *sz = cf_query_get(&q, "size");
    if ((pg && ((page = strtol(pg, &end, 10)) < 0 || *end || !*pg || page > 1000000)) ||
        (sz && ((size = strtol(sz, &end, 10)) < 1 || *end || !*sz || size > 1000))) {
        cf_error(r, 400, CF_BAD_ARGUMENT, "page is a whole number from 0, size from 1 to 1000");
        goto out;
    }
    if (!subject || !*subject) {
        cf_error(r, 400, CF_MISSING_PARAM, "Required request parameter 'subject' is not present "
                                           "(lethe lists one subject's examples at a time)");
        goto out;
    }
    if (find_examples(req, LETHE_LOOKUP_UPLOADER, subject, &e, r) < 0)
        goto out;
    /* a photo may also hold other uploaders' records: only this subject's */
    int n = 0;
    for (int i = 0; i < e.n; i++)
        if (!strcmp(e.v[i].subject, subject))
            e.v[n++] = e.v[i];
    e.n = n;
    if (jb_open(&b) < 0) {
        reply_json(r, 503, NULL);
        goto out;
    }
    put_examples(b.f, &e, page, size);
    reply_json(r, 200, jb_close(&b));
out:
    free(e.v);
    cf_query_free(&q);
}

/* ------------------------------------------------------------ erasure */

/* lethe_forget of sel: 0 with *x and *receipt (lethe_free_string), or -1. */
static int forget(request *req, const lethe_selector *sel, unsigned flags,
                  lethe_forget_result *x, char **receipt, reply *r)
{
    char msg[512];
    memset(x, 0, sizeof(*x));
    *receipt = NULL;
    server_lock(req->sv);
    int rc = lethe_forget(req->sv->store, sel, flags, req->actor, x, receipt, NULL);
    if (rc != LETHE_OK)
        store_msg(req, msg, sizeof(msg));
    server_unlock(req->sv);
    if (rc != LETHE_OK) {
        cf_lethe_error(r, rc, msg);
        return -1;
    }
    return 0;
}

/* The reply of an erasure: {name: value, ..., "receipt": the receipt}. */
static void reply_erased(reply *r, const char *name, const char *value, long deleted,
                         const char *subject, const char *receipt)
{
    jsbuf b;
    if (jb_open(&b) < 0) {
        reply_json(r, 503, NULL);
        return;
    }
    fprintf(b.f, "{\"%s\":", name);
    if (value)
        json_put_string(b.f, value);
    else
        fprintf(b.f, "%ld", deleted);
    if (subject) {
        fputs(",\"subject\":", b.f);
        json_put_string(b.f, subject);
    }
    fprintf(b.f, ",\"receipt\":%s}\n", receipt ? receipt : "null");
    reply_json(r, 200, jb_close(&b));
}

void cf_delete_example(request *req, reply *r)
{
    static const char *const none[] = {NULL};
    cf_query q;
    cf_example ex;
    lethe_selector sel = {0};
    lethe_forget_result x;
    char id[64], *receipt = NULL;
    if (cf_query_read(req, &q, none, r) < 0 ||
        path_value(req, "/api/v1/recognition/faces/", id, sizeof(id), r) < 0 ||
        find_example(req, id, &ex, r) < 0)
        goto out;
    sel.photo_id = id;
    sel.source = CF_SOURCE;
    if (forget(req, &sel, 0, &x, &receipt, r) == 0)
        reply_erased(r, "image_id", id, 0, ex.subject, receipt);
out:
    lethe_free_string(receipt);
    cf_query_free(&q);
}

/* Erase every example of subject; with must_exist, 404 when none. */
static void delete_subject(request *req, reply *r, const char *subject, int must_exist)
{
    lethe_selector sel = {0};
    lethe_forget_result x;
    char *receipt = NULL;
    sel.uploader = subject;
    sel.source = CF_SOURCE;
    if (must_exist) {
        if (forget(req, &sel, LETHE_FORGET_DRY_RUN, &x, &receipt, r) < 0)
            return;
        lethe_free_string(receipt);
        if (!x.photos) {
            cf_error(r, 404, CF_SUBJECT_NOT_FOUND, "Subject %s is not found", subject);
            return;
        }
    }
    if (forget(req, &sel, 0, &x, &receipt, r) < 0)
        return;
    if (must_exist)
        reply_erased(r, "subject", subject, 0, NULL, receipt);
    else
        reply_erased(r, "deleted", NULL, (long)x.photos, NULL, receipt);
    lethe_free_string(receipt);
}

static void refuse_delete_all(reply *r)
{
    cf_error(r, 400, CF_MISSING_PARAM,
             "Required request parameter 'subject' is not present: deleting every example at "
             "once is an erasure wider than one person; lethe takes it with its confirmation "
             "(POST /v1/forget {\"source\": \"" CF_SOURCE "\", \"confirm\": true})");
}

void cf_delete_examples(request *req, reply *r)
{
    static const char *const allowed[] = {"subject", NULL};
    cf_query q;
    if (cf_query_read(req, &q, allowed, r) == 0) {
        const char *subject = cf_query_get(&q, "subject");
        if (!subject || !*subject)
            refuse_delete_all(r);
        else
            delete_subject(req, r, subject, 0);
    }
    cf_query_free(&q);
}

/* ------------------------------------------------------------- subjects */

void cf_subject_delete(request *req, reply *r)
{
    static const char *const none[] = {NULL};
    cf_query q;
    char subject[SERVE_FIELD_MAX + 1];
    if (cf_query_read(req, &q, none, r) == 0 &&
        path_value(req, "/api/v1/recognition/subjects/", subject, sizeof(subject), r) == 0)
        delete_subject(req, r, subject, 1);
    cf_query_free(&q);
}

void cf_subjects_delete_all(request *req, reply *r)
{
    (void)req;
    refuse_delete_all(r);
}

void cf_subject_rename(request *req, reply *r)
{
    (void)req;
    cf_error(r, 400, CF_BAD_ARGUMENT,
             "lethe does not rename subjects: a subject is the uploader its examples were "
             "given under, and provenance is kept as given; add the examples under the new "
             "name and delete the old subject");
}

void cf_subject_add(request *req, reply *r)
{
    sj_object o;
    char msg[256], why[128];
    int rc = sj_parse(req->body ? req->body : "", req->body_len, &o, msg, sizeof(msg));
    const sj_member *s = rc == 0 ? sj_get(&o, "subject") : NULL;
    if (rc < 0)
        cf_error(r, 400, CF_BAD_ARGUMENT, "the body is not acceptable JSON: %s", msg);
    else if (o.n != 1 || !s || s->type != SJ_STRING || !*s->str)
        cf_error(r, 400, CF_EMPTY_FIELD, "the body is {\"subject\": NAME}");
    else if (!text_ok(s->str, why, sizeof(why)))
        cf_error(r, 400, CF_BAD_ARGUMENT, "subject %s", why);
    else {
        /* a subject is kept by its examples: nothing to store before one */
        jsbuf b;
        if (jb_open(&b) < 0) {
            reply_json(r, 503, NULL);
        } else {
            fputs("{\"subject\":", b.f);
            json_put_string(b.f, s->str);
            fputs("}\n", b.f);
            reply_json(r, 200, jb_close(&b));
        }
    }
    sj_free(&o);
}

void cf_subjects_list(request *req, reply *r)
{
    (void)req;
    cf_error(r, 400, CF_BAD_ARGUMENT,
             "lethe does not list subjects (a list of every person enrolled is itself personal "
             "data); look one subject up with GET /api/v1/recognition/faces?subject=NAME");
}

/* ----------------------------------------------------------- recognition */

/* Search the faces (one query each), logged with the key's purpose. */
static int search_faces(request *req, const lethe_face *faces, int n, int top_k,
                        lethe_match **m, size_t *count, reply *r)
{
    char purpose[LETHE_KEY_PURPOSE_MAX + 1], msg[512];
    lethe_search_options so;
    float *q = malloc((size_t)n * LETHE_DESCRIPTOR_DIM * sizeof(float));
    *m = NULL;
    *count = 0;
    if (!q) {
        reply_json(r, 503, NULL);
        return -1;
    }
    for (int i = 0; i < n; i++)
        memcpy(q + (size_t)i * LETHE_DESCRIPTOR_DIM, faces[i].descriptor,
               sizeof(float) * LETHE_DESCRIPTOR_DIM);
    int rc = cf_key_purpose(req, purpose, r) < 0 ? -1 : LETHE_OK;
    if (rc == LETHE_OK) {
        lethe_search_options_init(&so);
        so.purpose = purpose;
        so.actor = req->actor;
        so.top_k = top_k;
        so.threads = 1;
        server_lock(req->sv);
        rc = lethe_search(req->sv->store, q, n, &so, m, count);
        if (rc != LETHE_OK)
            store_msg(req, msg, sizeof(msg));
        server_unlock(req->sv);
        if (rc != LETHE_OK)
            cf_lethe_error(r, rc, msg);
    }
    free(q);
    return rc == LETHE_OK ? 0 : -1;
}

/* One face's subjects: the nearest example of each, nearest first. */
static void put_subjects(FILE *f, const lethe_match *m, size_t n, int face, long want)
{
    long k = 0;
    fputs("\"subjects\":[", f);
    for (size_t i = 0; i < n && k < want; i++) {
        const char *s = m[i].prov.uploader;
        int seen = 0;
        if (m[i].query != face || !m[i].prov.source || strcmp(m[i].prov.source, CF_SOURCE) ||
            !s)
            continue;
        for (size_t j = 0; j < i && !seen; j++)
            seen = m[j].query == face && m[j].prov.uploader && m[j].prov.source &&
                   !strcmp(m[j].prov.source, CF_SOURCE) && !strcmp(m[j].prov.uploader, s);
        if (seen)
            continue;
        fprintf(f, "%s{\"subject\":", k++ ? "," : "");
        json_put_string(f, s);
        fprintf(f, ",\"similarity\":%.5f}", cf_similarity(m[i].distance));
    }
    fputc(']', f);
}

static const char *const photo_options[] = {"limit", "det_prob_threshold", "prediction_count",
                                            "face_plugins", "status", NULL};

void cf_recognize(request *req, reply *r)
{
    cf_query q;
    cf_options o;
    cf_photos p = {.names = {"file"}, .n = 1};
    lethe_face *faces = NULL;
    lethe_match *m = NULL;
    size_t nm = 0;
    int nf = 0;
    jsbuf b;
    if (cf_query_read(req, &q, photo_options, r) < 0 || cf_options_read(&q, &o, r) < 0 ||
        cf_photos_read(req, &p, r) < 0 ||
        cf_faces(req, p.bytes[0], p.len[0], &o, &faces, &nf, r) < 0)
        goto out;
    /* enough templates to find prediction_count subjects among them */
    long top = o.prediction_count * 10 < 100 ? 100 : o.prediction_count * 10;
    if (search_faces(req, faces, nf, top > 10000 ? 10000 : (int)top, &m, &nm, r) < 0)
        goto out;
    if (jb_open(&b) < 0) {
        reply_json(r, 503, NULL);
        goto out;
    }
    fputs("{\"result\":[", b.f);
    for (int i = 0; i < nf; i++) {
        fprintf(b.f, "%s{\"box\":", i ? "," : "");
        cf_put_box(b.f, &faces[i]);
        fputc(',', b.f);
        put_subjects(b.f, m, nm, i, o.prediction_count);
        fputc('}', b.f);
    }
    fputs("]}\n", b.f);
    reply_json(r, 200, jb_close(&b));
out:
    lethe_matches_free(m, nm);
    lethe_faces_free(faces);
    cf_photos_free(&p);
    cf_query_free(&q);
}

/* Each face against the example's own templates (lethe_verify: exact,
 * one logged verification a face, with the key's purpose); d[i] its
 * distance. */
static int verify_faces(request *req, const lethe_face *faces, int n, const char *photo,
                        float *d, reply *r)
{
    char purpose[LETHE_KEY_PURPOSE_MAX + 1], msg[512];
    lethe_search_options so;
    lethe_verify_result v;
    int rc = LETHE_OK;
    if (cf_key_purpose(req, purpose, r) < 0)
        return -1;
    lethe_search_options_init(&so);
    so.purpose = purpose;
    so.actor = req->actor;
    server_lock(req->sv);
    for (int i = 0; i < n && rc == LETHE_OK; i++) {
        rc = lethe_verify(req->sv->store, faces[i].descriptor, LETHE_LOOKUP_PHOTO_ID, photo, &so,
                          &v);
        d[i] = v.distance;
    }
    if (rc != LETHE_OK)
        store_msg(req, msg, sizeof(msg));
    server_unlock(req->sv);
    if (rc != LETHE_OK)
        cf_lethe_error(r, rc, msg);
    return rc == LETHE_OK ? 0 : -1;
}

/* The similarity of each face of the photo to an example. */
void cf_verify_example(request *req, reply *r)
{
    cf_query q;
    cf_options o;
    cf_example ex;
    cf_photos p = {.names = {"file"}, .n = 1};
    lethe_face *faces = NULL;
    float *d = NULL;
    int nf = 0;
    char id[64];
    jsbuf b;
    if (cf_query_read(req, &q, photo_options, r) < 0 || cf_options_read(&q, &o, r) < 0 ||
        path_value(req, "/api/v1/recognition/faces/", id, sizeof(id), r) < 0 ||
        find_example(req, id, &ex, r) < 0 || cf_photos_read(req, &p, r) < 0 ||
        cf_faces(req, p.bytes[0], p.len[0], &o, &faces, &nf, r) < 0)
        goto out;
    if (!(d = malloc((size_t)(nf ? nf : 1) * sizeof(*d)))) {
        reply_json(r, 503, NULL);
        goto out;
    }
    if (verify_faces(req, faces, nf, ex.photo, d, r) < 0)
        goto out;
    if (jb_open(&b) < 0) {
        reply_json(r, 503, NULL);
        goto out;
    }
    fputs("{\"result\":[", b.f);
    for (int i = 0; i < nf; i++) {
        fprintf(b.f, "%s{\"box\":", i ? "," : "");
        cf_put_box(b.f, &faces[i]);
        fprintf(b.f, ",\"similarity\":%.5f}", cf_similarity(d[i]));
    }
    fputs("]}\n", b.f);
    reply_json(r, 200, jb_close(&b));
out:
    free(d);
    lethe_faces_free(faces);
    cf_photos_free(&p);
    cf_query_free(&q);
}

/* ------------------------------------------------ detection, verification */

void cf_detect(request *req, reply *r)
{
    cf_query q;
    cf_options o;
    cf_photos p = {.names = {"file"}, .n = 1};
    lethe_face *faces = NULL;
    int nf = 0;
    jsbuf b;
    if (cf_query_read(req, &q, photo_options, r) < 0 || cf_options_read(&q, &o, r) < 0 ||
        cf_photos_read(req, &p, r) < 0 ||
        cf_faces(req, p.bytes[0], p.len[0], &o, &faces, &nf, r) < 0)
        goto out;
    if (jb_open(&b) < 0) {
        reply_json(r, 503, NULL);
        goto out;
    }
    fputs("{\"result\":[", b.f);
    for (int i = 0; i < nf; i++) {
        fprintf(b.f, "%s{\"box\":", i ? "," : "");
        cf_put_box(b.f, &faces[i]);
        fputc('}', b.f);
    }
    fputs("]}\n", b.f);
    reply_json(r, 200, jb_close(&b));
out:
    lethe_faces_free(faces);
    cf_photos_free(&p);
    cf_query_free(&q);
}

/* Two photos the caller holds: the source's biggest face against each
 * face of the target. Nothing of the store is read. */
void cf_verify_photos(request *req, reply *r)
{
    cf_query q;
    cf_options o, one;
    cf_photos p = {.names = {"source_image", "target_image"}, .n = 2};
    lethe_face *src = NULL, *dst = NULL;
    int ns = 0, nd = 0;
    jsbuf b;
    if (cf_query_read(req, &q, photo_options, r) < 0 || cf_options_read(&q, &o, r) < 0 ||
        cf_photos_read(req, &p, r) < 0)
        goto out;
    one = o;
    one.limit = 1;
    if (cf_faces(req, p.bytes[0], p.len[0], &one, &src, &ns, r) < 0 ||
        cf_faces(req, p.bytes[1], p.len[1], &o, &dst, &nd, r) < 0)
        goto out;
    if (jb_open(&b) < 0) {
        reply_json(r, 503, NULL);
        goto out;
    }
    fputs("{\"result\":[{\"source_image_face\":{\"box\":", b.f);
    cf_put_box(b.f, &src[0]);
    fputs("},\"face_matches\":[", b.f);
    for (int i = 0; i < nd; i++) {
        float d = lethe_descriptor_distance(src[0].descriptor, dst[i].descriptor);
        fprintf(b.f, "%s{\"box\":", i ? "," : "");
        cf_put_box(b.f, &dst[i]);
        fprintf(b.f, ",\"similarity\":%.5f}", cf_similarity(d));
    }
    fputs("]}]}\n", b.f);
    reply_json(r, 200, jb_close(&b));
out:
    lethe_faces_free(src);
    lethe_faces_free(dst);
    cf_photos_free(&p);
    cf_query_free(&q);
}
