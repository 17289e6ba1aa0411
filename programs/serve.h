/*
 * serve.h: what the parts of `lethe serve` share (serve.c: the command,
 * the daemon and its shutdown; serve_http.c: one request from its headers
 * to its response, keys, roles, limits, the access log; serve_api.c: the
 * endpoints; serve_form.c: bodies, query strings and multipart forms;
 * serve_limit.c: rate limits and quotas; serve_json.c: request JSON;
 * serve_compreface*.c: the CompreFace-compatible API under /api/v1/).
 *
 * Threads: libmicrohttpd runs requests on a pool of threads. The store
 * handle is opened LETHE_STORE_SHARED: searches and key checks run from
 * any thread at once (on the library's views of the handle, with
 * per-thread messages); every other call runs under store_mu
 * (server_lock/server_unlock), which orders the writers (SQLite and the
 * store's lock order writers of other processes).
 * Photos are decoded and analysed outside it: the engine serves many
 * threads at once. Ingest holds it throughout (the ingest handle owns the
 * store's writer lock from begin to end).
 */
#ifndef LETHE_SERVE_H
#define LETHE_SERVE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "lethe.h"
#include "serve_json.h"

struct MHD_Connection;

#define SERVE_MAX_FIELDS 16      /* form fields or query arguments a handler reads */
#define SERVE_FIELD_MAX 4096     /* bytes in one text field (as STORE_TEXT_MAX) */

typedef struct limiter limiter;
typedef struct conn_watch conn_watch;

typedef struct server {
    lethe_store *store;
    pthread_mutex_t store_mu;    /* every call on store but searches and key checks */
    lethe_engine *engine;        /* NULL: photo endpoints answer 503 */
    char engine_error[512];      /* why there is no engine */
    size_t max_body;             /* bytes of a photo body (--max-body) */
    size_t max_json;             /* bytes of a JSON body */
    double request_seconds;      /* a request's body must arrive within this */
    limiter *lim;
    atomic_int active;           /* requests being handled (for shutdown) */
    atomic_long served;
    atomic_int stopping;         /* SIGTERM came: long requests wind up */
    double header_seconds;       /* a request's headers must be in within this */
    conn_watch *watch;           /* the connections, for that deadline (serve_conn.c) */
    FILE *access_log;            /* one JSON line a request (stderr) */
    const char *backup_dir;      /* where POST /v1/backup writes (--backup-dir), or NULL */
    size_t max_upload;           /* bytes of a manifest upload (--max-upload) */
    atomic_int uploading;        /* a manifest upload is being received or ingested */
    pthread_mutex_t log_mu;
} server;

void server_lock(server *sv);
void server_unlock(server *sv);

/* A response being made. */
typedef struct reply {
    int status;
    char *body;              /* malloc'd */
    size_t len;
    const char *type;        /* Content-Type (static) */
    long retry_after;        /* > 0: a Retry-After header */
    const char *allow;       /* 405: the Allow header */
    const char *const *headers; /* more headers: name, value, ..., NULL (static) */
    /* A streamed body (chunked) instead of body: stream_read fills buf with
     * up to max bytes and returns how many, or SERVE_STREAM_END; it may
     * block until it has some. stream_free runs once the response is done
     * with (sent, or the client gone). */
    long (*stream_read)(void *cls, char *buf, size_t max);
    void (*stream_free)(void *cls);
    void *stream_cls;
} reply;
#define SERVE_STREAM_END (-1L)

/* The request as the handlers see it. */
typedef struct request {
    server *sv;
    struct MHD_Connection *conn;
    const char *method;
    char path[256];
    lethe_key_info key;      /* who is calling */
    char actor[48];          /* "key:ID", as the log records it */
    char *body;              /* what arrived (NUL-terminated), body_len bytes */
    size_t body_len;
    const char *content_type; /* the header, or "" */
} request;

/* Replies. reply_json takes the text (malloc'd, may be NULL: out of
 * memory); reply_error makes {"error": {"code", "message"}} with the
 * message formatted, and extra (a JSON object's members, may be NULL)
 * added inside "error". */
void reply_json(reply *r, int status, char *json);
void reply_text(reply *r, int status, const char *type, char *text);
void reply_error(reply *r, int status, const char *code, const char *extra, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* The reply for a failed library call (status and lethe_store_errmsg). */
void reply_lethe(reply *r, int rc, const char *message);

/* A JSON writer on a memory stream: sv_open, fprintf/json_put_string, then
 * sv_close gives the text (NULL if memory ran out). */
typedef struct jsbuf {
    FILE *f;
    char *text;
    size_t len;
} jsbuf;
int jb_open(jsbuf *b);
char *jb_close(jsbuf *b);

/* ----------------------------------------------------------- forms */

/* A body of text fields and at most one photo: a multipart/form-data body,
 * or a photo sent as the body itself with its fields in the query string. */
typedef struct form {
    const char *names[SERVE_MAX_FIELDS];  /* the fields the handler accepts */
    int nnames;
    char *values[SERVE_MAX_FIELDS];       /* by index in names (owned; NULL: absent) */
    size_t lens[SERVE_MAX_FIELDS];
    const char *photo_field;              /* the file field's name, or NULL */
    size_t max_photo;                     /* bytes of the photo (the server's max_body) */
    const void *photo;                    /* the photo's bytes (in the request's body
                                             or owned by the form) */
    size_t photo_len;
    char *photo_owned;
    char photo_name[256];                 /* the file name a multipart photo came with */
    int max_photos;                       /* photo parts taken (0: one; at most
                                             LETHE_FUSE_MAX) */
    int nphotos;                          /* photo parts read */
    size_t photo_ends[LETHE_FUSE_MAX];    /* where each part ends in photo */
    char error[256];                      /* why the form is refused */
    int error_status;
} form;

/* Read req's fields: from a multipart body, or from the query string when
 * the body is the photo itself (raw: 1). 0, or -1 with f->error and
 * f->error_status set. Free with form_free. */
int form_read(request *req, form *f, int raw);
void form_free(form *f);
const char *form_get(const form *f, const char *name);
/* The i-th photo part (0 <= i < f->nphotos), its length in *len. */
const void *form_photo(const form *f, int i, size_t *len);

/* A query-string argument, or NULL. */
const char *query_arg(request *req, const char *name);
/* Is the body's media type this one (parameters and case ignored)? */
int content_type_is(const request *req, const char *type);
/* Is the body a photo (image/jpeg, image/png, image/webp,
 * application/octet-stream)? */
int content_type_is_photo(const request *req);
/* Text from outside (a field, an argument): valid UTF-8, no control
 * characters, at most SERVE_FIELD_MAX bytes. 1 if so, else 0 with why. */
int text_ok(const char *s, char *why, size_t n);

/* ------------------------------------------------------------ limits */

limiter *limiter_new(void);
void limiter_free(limiter *l);
/* Admit one request by key k at time now (seconds since the epoch): 0, or
 * 1 (rate) / 2 (daily quota) with *retry_after seconds. */
int limiter_admit(limiter *l, const lethe_key_info *k, double now, long *retry_after);
/* Read the day's counts from the catalog and start writing them back once
 * a second (LETHE_OK, or the failure's status; lethe_store_errmsg says
 * why); limiter_stop writes the last ones. */
int limiter_start(limiter *l, server *sv);
void limiter_stop(limiter *l);

/* -------------------------------------------------------- endpoints */

typedef void (*handler_fn)(request *req, reply *r);

/* Which body an endpoint takes: none, JSON, a photo (raw or multipart) or
 * either of the two last. */
enum body_kind { BODY_NONE, BODY_JSON, BODY_PHOTO, BODY_JSON_OR_PHOTO, BODY_UPLOAD };

typedef struct route {
    const char *method;
    const char *path;     /* exact, or ending in "{id}": one segment of 1 to 18
                             digits (route_id gives it), or in "{hash}": 64
                             lowercase hex digits (route_param gives it) */
    unsigned roles;       /* keys holding any of these may call it */
    int body;             /* enum body_kind */
    handler_fn fn;
} route;

/* The endpoints, ending with a NULL path. */
extern const route serve_routes[];
/* Does path match the route's path (a "{id}" segment: digits only)? */
int route_matches(const route *rt, const char *path);
/* The {id} of a request on such a route (0 when none). */
long long route_id(const request *req);
/* The last segment of the request's path (a route's {hash}). */
const char *route_param(const request *req);

/* What the handlers share (serve_api.c). read_json: the body as one JSON
 * object whose members are all among allowed (NULL-terminated); json_text
 * and json_bool: a member (NULL / 0 when absent and not required);
 * query_only: a GET's query arguments, only those f names; each 0, or -1
 * with the 400 in r. store_message: the store's message after a failed
 * call (copy it under the lock). reply_document: a library document (JSON,
 * lethe_free_string) as the 200. */
struct sj_object;
int read_json(request *req, reply *r, struct sj_object *o, const char *const *allowed);
int json_text(reply *r, const struct sj_object *o, const char *name, int required,
              const char **out);
int json_bool(reply *r, const struct sj_object *o, const char *name, int *out);
int query_only(request *req, reply *r, form *f);
void store_message(request *req, char *msg, size_t n);
void reply_document(reply *r, char *doc);

/* Receipts by hash, models, the policy's decisions (serve_records.c). */
void h_receipt_get(request *req, reply *r);
void h_models(request *req, reply *r);
void h_model_retire(request *req, reply *r);
void h_policy_check(request *req, reply *r);

/* The CompreFace-compatible API under /api/v1/ (serve_compreface.c). Is
 * path one of its? Its route for (method, path), or NULL with the 404 or
 * 405 in r. Its errors in CompreFace's shape (an error reply of lethe's
 * made before the endpoint ran: key, roles, limits, body). May a path
 * holding %-escapes be taken (a subject's name in /api/v1/ paths)? */
int compreface_path(const char *path);
const route *compreface_route(const char *method, const char *path, reply *r);
void compreface_error_reply(request *req, reply *r);
int compreface_escapes_ok(const char *uri, size_t n);

#ifdef MHD_VERSION
/* The access handler libmicrohttpd calls (cls: the server), and its
 * completion callback (serve_http.c); declared where microhttpd.h is. */
enum MHD_Result serve_access_cb(void *cls, struct MHD_Connection *conn, const char *url,
                                const char *method, const char *version, const char *upload,
                                size_t *upload_size, void **state);
void serve_completed_cb(void *cls, struct MHD_Connection *conn, void **state,
                        enum MHD_RequestTerminationCode toe);
/* Called with each request's URI as it came (escapes and all). */
void *serve_uri_cb(void *cls, const char *uri, struct MHD_Connection *conn);
/* Connections opened and closed (serve_conn.c; cls: the server). */
void serve_conn_cb(void *cls, struct MHD_Connection *conn, void **socket_context,
                   enum MHD_ConnectionNotificationCode code);
#endif

double serve_now(void);

/* The headers' deadline (serve_conn.c): a watcher of the open connections
 * that shuts down one whose request's headers take longer than limit
 * seconds. serve_conn_request marks a request's headers in (1) or its
 * answer done (0). */
conn_watch *conn_watch_new(double limit);
void conn_watch_free(conn_watch *w);
long conn_watch_open(conn_watch *w);
void serve_conn_request(server *sv, struct MHD_Connection *conn, int in_request);

/* POST /v1/ingest/manifest (serve_upload.c). */
void h_ingest_manifest(request *req, reply *r);

int cmd_serve(int argc, char **argv);

#endif
