/*
 * serve_upload.c: POST /v1/ingest/manifest, a manifest with its photos (or
 * descriptors: JSON Lines with "embedding", or raw float32 with their
 * sidecar) in one multipart upload, ingested as
 * `lethe ingest --manifest` does, with the progress streamed back. The
 * answer is chunked JSON Lines: a line every `progress` rows, a line for
 * each input that failed, {"working"} when nothing else was sent for a few
 * seconds, and a summary line last.
 *
 * The ingest runs on a thread of its own, in rounds of `progress` rows:
 * each round is an ingest of its own, begun and committed under the
 * server's store lock, which other requests get between rounds. A client
 * that disconnects stops it at the next row, and what was offered before
 * is committed (lethe_ingest_end), so nothing already committed is lost
 * and nothing is half-written. On SIGTERM the same happens: the
 * ingest stops at the next row, commits what it has, and says so.
 */
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "serve.h"

#define UPLOAD_MAX_PARTS 100000 /* photos in one upload */
#define UPLOAD_NAME_MAX 255     /* bytes of a part's file name */
#define UPLOAD_ERRORS_SHOWN 100 /* failed inputs given a line each; the rest counted */

typedef struct part {
    char field[16];  /* "manifest", "photo", "descriptors", "sidecar" */
    char *name;      /* its file name */
    char *data;
    size_t len;
    int used;        /* a manifest row named it */
} part;

typedef struct upload {
    part *parts;
    size_t n, cap;
    size_t max;      /* bytes in all */
    size_t total;
    char error[320];
    int status;
} upload;

typedef struct job {
    server *sv;
    char actor[48];
    upload up;
    const part *manifest, *descriptors, *sidecar;
    long every;                    /* a progress line every this many rows */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *out;                     /* text not yet sent */
    size_t out_len, out_pos;
    int done;                      /* the summary is in out */
    atomic_int cancel;             /* the client is gone */
    uint64_t errors_shown, errors;
    double started;
} job;

/* ------------------------------------------------------------ the form */

static int upload_fail(upload *u, int status, const char *fmt, const char *a)
{
    if (!u->error[0]) {
        snprintf(u->error, sizeof(u->error), fmt, a);
        u->status = status;
    }
    return MHD_NO;
}

static enum MHD_Result upload_piece(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *filename, const char *type, const char *enc,
                                    const char *data, uint64_t off, size_t size)
{
    upload *u = cls;
    static const char *const fields[] = {"manifest", "photo", "descriptors", "sidecar"};
    char why[128];
    size_t f;
    (void)kind, (void)type, (void)enc;
    if (!key) /* libmicrohttpd passes a part without a name so */
        return upload_fail(u, 400, "a multipart part has no name%s", "");
    for (f = 0; f < 4 && strcmp(key, fields[f]); f++)
        ;
    if (f == 4)
        return upload_fail(u, 400, "unknown form field '%s' (manifest, photo, descriptors, "
                                   "sidecar)", key);
    if (!filename || !*filename)
        return upload_fail(u, 400, "the part '%s' is not a file (it needs a file name)", key);
    if (strlen(filename) > UPLOAD_NAME_MAX || !text_ok(filename, why, sizeof(why)))
        return upload_fail(u, 400, "a file name is too long, holds a control character or is "
                                   "not UTF-8 (field '%s')", key);
    part *p = u->n ? &u->parts[u->n - 1] : NULL;
    if (off == 0 || !p || strcmp(p->field, key) || strcmp(p->name, filename)) {
        if (u->n >= UPLOAD_MAX_PARTS)
            return upload_fail(u, 413, "more than %s files in one upload", "100000");
        if (u->n == u->cap) {
            size_t nc = u->cap ? 2 * u->cap : 64;
            part *t = realloc(u->parts, nc * sizeof(*t));
            if (!t)
                return upload_fail(u, 503, "out of memory%s", "");
            u->parts = t;
            u->cap = nc;
        }
        p = &u->parts[u->n++];
        memset(p, 0, sizeof(*p));
        snprintf(p->field, sizeof(p->field), "%s", key);
        if (!(p->name = strdup(filename)))
            return upload_fail(u, 503, "out of memory%s", "");
    }
    if (size > u->max - u->total)
        return upload_fail(u, 413, "the upload is larger than the server takes%s", "");
    char *t = realloc(p->data, p->len + size + 1);
    if (!t)
        return upload_fail(u, 503, "out of memory%s", "");
    memcpy(t + p->len, data, size);
    p->len += size;
    t[p->len] = 0;
    p->data = t;
    u->total += size;
    return MHD_YES;
}

static void upload_free(upload *u)
{
    for (size_t i = 0; i < u->n; i++) {
        free(u->parts[i].name);
        free(u->parts[i].data);
    }
    free(u->parts);
    memset(u, 0, sizeof(*u));
}

/* The one part of this field (NULL if none); two is an error. */
static const part *the_part(upload *u, const char *field)
{
    const part *found = NULL;
    for (size_t i = 0; i < u->n; i++)
        if (!strcmp(u->parts[i].field, field)) {
            if (found) {
                upload_fail(u, 400, "more than one '%s' part", field);
                return NULL;
            }
            found = &u->parts[i];
        }
    return found;
}

static int by_name(const void *a, const void *b)
{
    const part *x = a, *y = b;
    int c = strcmp(x->field, y->field);
    return c ? c : strcmp(x->name, y->name);
}

/* Read the multipart body into j->up and check its parts: 0, or -1 with
 * the error in j->up. */
static int upload_read(request *req, job *j)
{
    upload *u = &j->up;
    struct MHD_PostProcessor *pp = MHD_create_post_processor(req->conn, 65536, upload_piece, u);
    if (!pp) {
        upload_fail(u, 400, "the multipart/form-data body cannot be read (no boundary in its "
                            "Content-Type?)%s", "");
        return -1;
    }
    enum MHD_Result ok = MHD_post_process(pp, req->body ? req->body : "", req->body_len);
    enum MHD_Result done = MHD_destroy_post_processor(pp);
    if (!u->error[0] && (ok != MHD_YES || done != MHD_YES))
        upload_fail(u, 400, "the multipart/form-data body is malformed or cut short%s", "");
    if (u->error[0])
        return -1;
    /* sorted by field and name: a row's photo is found by bsearch, and two
     * photos of one name are seen side by side */
    if (u->n > 1) /* no parts: parts is NULL, which qsort may not be given */
        qsort(u->parts, u->n, sizeof(*u->parts), by_name);
    for (size_t i = 1; i < u->n; i++)
        if (!by_name(&u->parts[i - 1], &u->parts[i])) {
            upload_fail(u, 400, "two files named '%s' in the upload", u->parts[i].name);
            return -1;
        }
    j->manifest = the_part(u, "manifest");
    j->descriptors = the_part(u, "descriptors");
    j->sidecar = the_part(u, "sidecar");
    if (u->error[0])
        return -1;
    /* a photo manifest; raw float32 descriptors with their sidecar; or
     * descriptors as JSON Lines with "embedding" (and provenance) alone */
    if (!j->manifest == !j->descriptors || (j->sidecar && !j->descriptors))
        upload_fail(u, 400, "send a 'manifest' file with its 'photo' files, a 'descriptors' "
                            "file of JSON Lines (\"embedding\" and provenance), or a "
                            "'descriptors' file of float32 with its 'sidecar' manifest%s", "");
    return u->error[0] ? -1 : 0;
}

static part *photo_named(job *j, const char *name)
{
    part key = {.field = "photo", .name = (char *)name};
    return bsearch(&key, j->up.parts, j->up.n, sizeof(*j->up.parts), by_name);
}

/* --------------------------------------------------------------- output */

/* Append a line to what the client will be sent. */
static void emit(job *j, const char *line, size_t n)
{
    pthread_mutex_lock(&j->mu);
    char *t = realloc(j->out, j->out_len + n);
    if (t) {
        memcpy(t + j->out_len, line, n);
        j->out = t;
        j->out_len += n;
    }
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

static void emit_json(job *j, jsbuf *b)
{
    char *text = jb_close(b);
    if (text)
        emit(j, text, strlen(text));
    free(text);
}

static void put_stats(FILE *f, const lethe_ingest_stats *st)
{
    fprintf(f,
            "\"seen\":%llu,\"added\":%llu,\"duplicates\":%llu,\"provenance\":%llu,"
            "\"faces\":%llu,\"templates\":%llu,\"refused\":%llu,\"withdrawn\":%llu,"
            "\"no_face\":%llu,\"opted_out\":%llu,\"errors\":%llu,\"uncommitted\":%llu",
            (unsigned long long)st->seen, (unsigned long long)st->added,
            (unsigned long long)st->duplicates, (unsigned long long)st->provenance,
            (unsigned long long)st->faces, (unsigned long long)st->templates,
            (unsigned long long)st->refused, (unsigned long long)st->withdrawn,
            (unsigned long long)st->no_face, (unsigned long long)st->opted_out,
            (unsigned long long)st->errors, (unsigned long long)st->uncommitted);
}

/* Each failed input (a worker thread may call it): a line, up to a number. */
static void on_error(void *ctx, const char *input, size_t line, const char *message)
{
    job *j = ctx;
    jsbuf b;
    pthread_mutex_lock(&j->mu);
    int show = j->errors_shown < UPLOAD_ERRORS_SHOWN;
    j->errors_shown += show;
    j->errors++;
    pthread_mutex_unlock(&j->mu);
    if (!show || jb_open(&b) < 0)
        return;
    fputs("{\"error\":{\"input\":", b.f);
    json_put_string(b.f, input ? input : "");
    fprintf(b.f, ",\"line\":%zu,\"message\":", line);
    json_put_string(b.f, message ? message : "");
    fputs("}}\n", b.f);
    emit_json(j, &b);
}

/* --------------------------------------------------------------- ingest */

/* Offer one manifest row: LETHE_OK, or a status that ends the ingest. */
static int offer_row(job *j, lethe_ingest *ing, const lethe_manifest_row *row)
{
    if (row->embedding)
        return lethe_ingest_descriptor(ing, row->embedding, &row->prov, row->line);
    part *p = photo_named(j, row->file);
    if (!p)
        return lethe_ingest_fail(ing, row->file, row->line,
                                 "no photo of this name was uploaded with the manifest");
    p->used = 1;
    return lethe_ingest_photo_bytes(ing, p->data, p->len, row->file, &row->prov, row->line);
}

/* The part a bad row is read from, to name it in the row's error: the
 * photo manifest, the JSON Lines descriptors, or the sidecar of raw ones. */
static const char *rows_part(const job *j)
{
    return j->manifest ? "manifest" : j->sidecar ? "sidecar" : "descriptors";
}

/* The next rows of the manifest, up to j->every of them; *rows counts
 * them, *more says whether any are left, *why why it stopped early ("" when
 * it did not). */
static int ingest_rows(job *j, lethe_ingest *ing, lethe_manifest *m, uint64_t *rows, int *more,
                       const char **why)
{
    lethe_manifest_row row;
    char msg[512];
    int rc = LETHE_OK;
    for (uint64_t k = 0; rc == LETHE_OK && k < (uint64_t)j->every; k++) {
        if (atomic_load(&j->cancel) || atomic_load(&j->sv->stopping)) {
            *why = atomic_load(&j->cancel) ? "the client disconnected" : "the server is stopping";
            break;
        }
        if ((*more = lethe_manifest_next(m, &row, msg, sizeof(msg))) == 0)
            break;
        if (*more == -2) {
            rc = lethe_ingest_fail(ing, rows_part(j), 0, msg);
            *why = "the manifest could not be read";
            break;
        }
        rc = *more < 0 ? lethe_ingest_fail(ing, rows_part(j), 0, msg) : offer_row(j, ing, &row);
        ++*rows;
    }
    return rc;
}

static void stats_add(lethe_ingest_stats *t, const lethe_ingest_stats *r)
{
    t->seen += r->seen, t->added += r->added, t->duplicates += r->duplicates;
    t->provenance += r->provenance, t->faces += r->faces, t->templates += r->templates;
    t->refused += r->refused, t->withdrawn += r->withdrawn, t->no_face += r->no_face;
    t->errors += r->errors, t->bytes += r->bytes, t->opted_out += r->opted_out;
    t->opted_out_faces += r->opted_out_faces, t->uncommitted += r->uncommitted;
}

/*
 * The manifest in rounds of j->every rows, each an ingest of its own,
 * begun and committed under the server's store lock, which is let go
 * between rounds: lookups, verifications and other writes get their turn
 * (a forget with an opt-out in between holds for the rounds after it), and
 * the client hears of each commit. Totals in *st; msg says why it failed.
 */
static int ingest_rounds(job *j, lethe_manifest *m, const lethe_ingest_options *io,
                         lethe_ingest_stats *st, uint64_t *rows, const char **why, char *msg,
                         size_t msg_len)
{
    int rc = LETHE_OK, more = 1;
    jsbuf b;
    *why = "";
    while (rc == LETHE_OK && more && !**why) {
        lethe_ingest *ing = NULL;
        lethe_ingest_stats r;
        memset(&r, 0, sizeof(r));
        server_lock(j->sv);
        if ((rc = lethe_ingest_begin(j->sv->store, io, &ing)) == LETHE_OK) {
            rc = ingest_rows(j, ing, m, rows, &more, why);
            int rc2 = lethe_ingest_end(ing, &r);
            if (rc == LETHE_OK)
                rc = rc2;
        }
        if (rc != LETHE_OK)
            snprintf(msg, msg_len, "%s", lethe_store_errmsg(j->sv->store));
        server_unlock(j->sv);
        stats_add(st, &r);
        if (rc == LETHE_OK && more && !**why && jb_open(&b) == 0) {
            fprintf(b.f, "{\"progress\":{\"rows\":%llu,", (unsigned long long)*rows);
            put_stats(b.f, st);
            fputs("}}\n", b.f);
            emit_json(j, &b);
        }
    }
    return rc;
}

static lethe_manifest *open_manifest(job *j, char *msg, size_t n)
{
    lethe_manifest *m = NULL;
    int rc = j->manifest
                 ? lethe_manifest_open_mem(j->manifest->data, j->manifest->len, j->manifest->name,
                                           NULL, 0, &m, msg, n)
             : j->sidecar
                 ? lethe_manifest_open_raw_mem(j->descriptors->data, j->descriptors->len,
                                               j->sidecar->data, j->sidecar->len,
                                               j->sidecar->name, 0, &m, msg, n)
                 : lethe_manifest_open_mem(j->descriptors->data, j->descriptors->len,
                                           j->descriptors->name, NULL,
                                           LETHE_MANIFEST_DESCRIPTORS, &m, msg, n);
    if (rc != LETHE_OK) {
        lethe_manifest_close(m);
        return NULL;
    }
    return m;
}

static void *ingest_thread(void *arg)
{
    job *j = arg;
    lethe_ingest_options io;
    lethe_ingest_stats st;
    uint64_t rows = 0, unused = 0;
    const char *why = "";
    char msg[512] = "";
    int rc;
    jsbuf b;
    memset(&st, 0, sizeof(st));
    lethe_manifest *m = open_manifest(j, msg, sizeof(msg));
    lethe_ingest_options_init(&io);
    io.engine = j->sv->engine;
    io.actor = j->actor;
    io.batch_photos = (int)j->every; /* a progress line follows a commit */
    io.on_error = on_error;
    io.ctx = j;
    if (!m)
        rc = LETHE_ERR_FORMAT;
    else
        rc = ingest_rounds(j, m, &io, &st, &rows, &why, msg, sizeof(msg));
    lethe_manifest_close(m);
    for (size_t i = 0; i < j->up.n; i++)
        unused += !strcmp(j->up.parts[i].field, "photo") && !j->up.parts[i].used;
    if (*why)
        fprintf(stderr, "lethe serve: manifest ingest by %s stopped after %llu rows (%s); "
                        "committed: %llu added, %llu duplicates\n", j->actor,
                (unsigned long long)rows, why, (unsigned long long)st.added,
                (unsigned long long)st.duplicates);
    if (jb_open(&b) == 0) {
        fprintf(b.f, "{\"done\":{\"complete\":%s,\"stopped\":", rc == LETHE_OK && !*why ? "true"
                                                                                       : "false");
        *why ? json_put_string(b.f, why) : (void)fputs("null", b.f);
        fputs(",\"error\":", b.f);
        rc != LETHE_OK ? json_put_string(b.f, msg) : (void)fputs("null", b.f);
        fprintf(b.f, ",\"rows\":%llu,\"unused_photos\":%llu,", (unsigned long long)rows,
                (unsigned long long)unused);
        put_stats(b.f, &st);
        fputs("}}\n", b.f);
        emit_json(j, &b);
    }
    pthread_mutex_lock(&j->mu);
    j->done = 1;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

/* ------------------------------------------------------------- the reply */

static long job_read(void *cls, char *buf, size_t max)
{
    job *j = cls;
    long n;
    double beat = j->sv->request_seconds / 3;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    beat = beat < 0.5 ? 0.5 : beat > 5 ? 5 : beat;
    until.tv_sec += (time_t)beat;
    until.tv_nsec += (long)((beat - (double)(time_t)beat) * 1e9);
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&j->mu);
    /* block until a line or the end (returning 0 would make libmicrohttpd's
     * polling thread spin), but not for long: a line now and then keeps the
     * connection from looking idle (--timeout) while the ingest waits for
     * the store or a slow photo, and finds a client that has gone */
    int waited = 0;
    while (j->out_pos == j->out_len && !j->done && !waited)
        waited = pthread_cond_timedwait(&j->cv, &j->mu, &until) != 0;
    if (j->out_pos == j->out_len && !j->done) {
        n = snprintf(buf, max, "{\"working\":{\"seconds\":%.0f}}\n", serve_now() - j->started);
        n = n < 0 || (size_t)n >= max ? 0 : n;
    } else if (j->out_pos == j->out_len) {
        n = SERVE_STREAM_END;
    } else {
        n = (long)(j->out_len - j->out_pos < max ? j->out_len - j->out_pos : max);
        memcpy(buf, j->out + j->out_pos, (size_t)n);
        j->out_pos += (size_t)n;
    }
    pthread_mutex_unlock(&j->mu);
    return n;
}

static void job_free(void *cls)
{
    job *j = cls;
    atomic_store(&j->cancel, 1); /* sent, or the client is gone: stop at the next row */
    pthread_join(j->thread, NULL);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    upload_free(&j->up);
    free(j->out);
    free(j);
}

void h_ingest_manifest(request *req, reply *r)
{
    const char *every = query_arg(req, "progress");
    form f = {.names = {"progress"}, .nnames = 1};
    job *j = calloc(1, sizeof(*j));
    long n = 10;
    char *end;
    if (!j) {
        reply_json(r, 503, NULL);
        return;
    }
    if (form_read(req, &f, 1) < 0) /* only known query arguments */
        reply_error(r, f.error_status, "bad_request", NULL, "%s", f.error);
    else if (every && ((n = strtol(every, &end, 10)) < 1 || n > 100000 || *end || !*every))
        reply_error(r, 400, "bad_request", NULL,
                    "\"progress\" must be a whole number from 1 to 100000");
    form_free(&f);
    if (r->body) {
        free(j);
        return;
    }
    j->sv = req->sv;
    j->every = n;
    j->started = serve_now();
    j->up.max = req->sv->max_upload;
    snprintf(j->actor, sizeof(j->actor), "%s", req->actor);
    if (upload_read(req, j) < 0) {
        reply_error(r, j->up.status, j->up.status == 413 ? "too_large" : "bad_request", NULL,
                    "%s", j->up.error);
        upload_free(&j->up);
        free(j);
        return;
    }
    /* the parts hold copies: the upload need not be kept twice (body_len
     * stays, for the access log) */
    free(req->body);
    req->body = NULL;
    if (j->manifest && !req->sv->engine) {
        reply_error(r, 503, "no_face_engine", NULL, "this server cannot analyse photos: %s",
                    req->sv->engine_error);
        upload_free(&j->up);
        free(j);
        return;
    }
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    if (pthread_create(&j->thread, NULL, ingest_thread, j) != 0) {
        pthread_mutex_destroy(&j->mu);
        pthread_cond_destroy(&j->cv);
        upload_free(&j->up);
        free(j);
        reply_json(r, 503, NULL);
        return;
    }
    r->status = 200;
    r->type = "application/x-ndjson";
    r->stream_read = job_read;
    r->stream_free = job_free;
    r->stream_cls = j;
}
