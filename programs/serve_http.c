/*
 * serve_http.c: one request of `lethe serve`, from its headers to its
 * response, on libmicrohttpd. When the headers are in, and before any of
 * the body is taken: the key (401), the endpoint (404, 405), the key's
 * roles (403), its rate and quota (429), the body's size and type (413,
 * 415). The body then arrives in pieces, kept up to the endpoint's limit
 * and within the request's time; the endpoint runs when it is all there.
 * Every request ends with one line in the access log: the time, the key's
 * id, the method, the path (never the query string: it may carry an
 * uploader or a URL), the status and the time taken.
 */
#include <errno.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "cli.h"
#include "serve.h"
#include "serve_page.h"

/* Bytes of a body over its limit read (and dropped) before the connection
 * is closed instead of answered. */
#define DISCARD_MAX (16u << 20)

typedef struct conn_state {
    request req;
    const route *route;
    double start;
    size_t limit;            /* bytes of body this request may send */
    size_t cap;
    int too_large;           /* the body went over limit: 413 at the end */
    uint64_t discarded;
    int status;              /* the status sent, for the access log */
    int holds_upload;        /* this request holds the server's one manifest upload */
} conn_state;

double serve_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

void server_lock(server *sv)
{
    pthread_mutex_lock(&sv->store_mu);
}

void server_unlock(server *sv)
{
    pthread_mutex_unlock(&sv->store_mu);
}

/* -------------------------------------------------------------- replies */

int jb_open(jsbuf *b)
{
    b->text = NULL;
    b->len = 0;
    b->f = open_memstream(&b->text, &b->len);
    return b->f ? 0 : -1;
}

char *jb_close(jsbuf *b)
{
    if (!b->f)
        return NULL;
    int bad = ferror(b->f);
    if (fclose(b->f) != 0)
        bad = 1;
    b->f = NULL;
    if (bad) {
        free(b->text);
        b->text = NULL;
    }
    return b->text;
}

void reply_text(reply *r, int status, const char *type, char *text)
{
    free(r->body);
    r->status = status;
    r->type = type;
    r->body = text;
    r->len = text ? strlen(text) : 0;
    if (!text) {
        static const char oom[] = "{\"error\":{\"code\":\"out_of_memory\",\"message\":\"the "
                                  "server ran out of memory\"}}\n";
        r->status = MHD_HTTP_SERVICE_UNAVAILABLE;
        r->type = "application/json";
        r->body = strdup(oom);
        r->len = r->body ? strlen(r->body) : 0;
    }
}

void reply_json(reply *r, int status, char *json)
{
    reply_text(r, status, "application/json", json);
}

void reply_error(reply *r, int status, const char *code, const char *extra, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    jsbuf b;
    if (jb_open(&b) < 0) {
        reply_json(r, status, NULL);
        return;
    }
    fprintf(b.f, "{\"error\":{\"code\":\"%s\",\"message\":", code);
    json_put_string(b.f, msg);
    if (extra && *extra)
        fprintf(b.f, ",%s", extra);
    fputs("}}\n", b.f);
    reply_json(r, status, jb_close(&b));
}

void reply_lethe(reply *r, int rc, const char *message)
{
    static const struct {
        int rc, status;
        const char *code;
    } map[] = {
        {LETHE_ERR_ARG, 400, "bad_request"},        {LETHE_ERR_FORMAT, 400, "bad_request"},
        {LETHE_ERR_TOO_LARGE, 413, "too_large"},    {LETHE_ERR_UNSUPPORTED, 415, "unsupported"},
        {LETHE_ERR_NOT_FOUND, 404, "not_found"},    {LETHE_ERR_NO_FACE, 422, "no_face"},
        {LETHE_ERR_POLICY, 422, "refused_by_policy"}, {LETHE_ERR_BUSY, 503, "busy"},
        {LETHE_ERR_CONFIRM, 409, "confirmation_required"},
        {LETHE_ERR_DENIED, 401, "unauthorized"},    {LETHE_ERR_NOMEM, 503, "out_of_memory"},
    };
    int status = 500;
    const char *code = "internal";
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (map[i].rc == rc) {
            status = map[i].status;
            code = map[i].code;
        }
    reply_error(r, status, code, NULL, "%s", message);
    if (rc == LETHE_ERR_BUSY)
        r->retry_after = 5;
}

/* ------------------------------------------------------------ the log */

static void access_log(server *sv, const conn_state *cs)
{
    if (!sv->access_log)
        return;
    char now[32];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%SZ", &tm);
    pthread_mutex_lock(&sv->log_mu);
    fprintf(sv->access_log, "{\"time\":\"%s\",\"key\":", now);
    if (cs->req.key.id > 0)
        fprintf(sv->access_log, "%lld", (long long)cs->req.key.id);
    else
        fputs("null", sv->access_log);
    fputs(",\"method\":", sv->access_log);
    json_put_string(sv->access_log, cs->req.method ? cs->req.method : "");
    fputs(",\"path\":", sv->access_log);
    json_put_string(sv->access_log, cs->req.path);
    fprintf(sv->access_log, ",\"status\":%d,\"ms\":%.1f,\"body_bytes\":%zu}\n", cs->status,
            1000.0 * (serve_now() - cs->start), cs->req.body_len + (size_t)cs->discarded);
    fflush(sv->access_log);
    pthread_mutex_unlock(&sv->log_mu);
}

_Static_assert(SERVE_STREAM_END == MHD_CONTENT_READER_END_OF_STREAM, "stream end marker");

/* A streamed reply, as libmicrohttpd calls it back. */
typedef struct stream {
    long (*read)(void *cls, char *buf, size_t max);
    void (*free)(void *cls);
    void *cls;
} stream;

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    stream *st = cls;
    (void)pos;
    return (ssize_t)st->read(st->cls, buf, max);
}

static void stream_done(void *cls)
{
    stream *st = cls;
    st->free(st->cls);
    free(st);
}

/* Send r (taking its body) and log the request. */
static enum MHD_Result send_reply(struct MHD_Connection *conn, conn_state *cs, reply *r)
{
    if (compreface_path(cs->req.path))
        compreface_error_reply(&cs->req, r);
    stream *st = r->stream_read ? malloc(sizeof(*st)) : NULL;
    if (st)
        *st = (stream){r->stream_read, r->stream_free, r->stream_cls};
    struct MHD_Response *resp =
        st ? MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_reader, st,
                                               stream_done)
        : r->stream_read ? NULL
                         : MHD_create_response_from_buffer(r->len, r->body, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(r->body);
        free(st);
        if (r->stream_free)
            r->stream_free(r->stream_cls);
        return MHD_NO;
    }
    r->body = NULL;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->type ? r->type : "text/plain");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    if (r->retry_after > 0) {
        char v[32];
        snprintf(v, sizeof(v), "%ld", r->retry_after);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, v);
    }
    if (r->allow)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->allow);
    for (const char *const *h = r->headers; h && h[0] && h[1]; h += 2)
        MHD_add_response_header(resp, h[0], h[1]);
    if (r->status == MHD_HTTP_UNAUTHORIZED)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"lethe\"");
    enum MHD_Result ok = MHD_queue_response(conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    cs->status = r->status;
    access_log(cs->req.sv, cs);
    return ok;
}

/* ------------------------------------------------------ the first look */

/* The key the request carries (Authorization: Bearer, or x-api-key), or
 * NULL. */
static const char *request_key(struct MHD_Connection *conn)
{
    const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                   MHD_HTTP_HEADER_AUTHORIZATION);
    if (auth && !strncasecmp(auth, "Bearer ", 7)) {
        auth += 7;
        while (*auth == ' ')
            auth++;
        return auth;
    }
    const char *k = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "x-api-key");
    return k ? k : auth ? "" : NULL;
}

/* 0 and req->key set, or -1 with the 401 in r. */
static int authenticate(server *sv, conn_state *cs, reply *r)
{
    const char *key = request_key(cs->req.conn);
    if (!key) {
        reply_error(r, MHD_HTTP_UNAUTHORIZED, "unauthorized", NULL,
                    "no API key: send 'Authorization: Bearer KEY' or 'x-api-key: KEY' (keys are "
                    "made with 'lethe key add')");
        return -1;
    }
    /* no store_mu: key checks run on the shared handle's views */
    int rc = lethe_key_authenticate(sv->store, key, strlen(key), &cs->req.key);
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", lethe_store_errmsg(sv->store));
    if (rc != LETHE_OK) {
        memset(&cs->req.key, 0, sizeof(cs->req.key));
        reply_lethe(r, rc, msg);
        return -1;
    }
    snprintf(cs->req.actor, sizeof(cs->req.actor), "key:%lld", (long long)cs->req.key.id);
    return 0;
}

/* The Allow header's text for a mask of GET, POST, PUT, DELETE. */
static char allow_texts[16][32];

static void allow_texts_init(void)
{
    static const char *const methods[] = {"GET", "POST", "PUT", "DELETE"};
    for (unsigned m = 0; m < 16; m++)
        for (unsigned i = 0, n = 0; i < 4; i++)
            if (m & (1u << i))
                n += (unsigned)snprintf(allow_texts[m] + n, sizeof(allow_texts[m]) - n, "%s%s",
                                        n ? ", " : "", methods[i]);
}

static const char *allow_text_of(unsigned mask)
{
    return allow_texts[mask & 15];
}

int route_matches(const route *rt, const char *path)
{
    const char *param = strstr(rt->path, "{id}");
    const char *hash = param ? NULL : strstr(rt->path, "{hash}");
    if (!param && !hash)
        return !strcmp(rt->path, path);
    size_t n = (size_t)((param ? param : hash) - rt->path);
    if (strncmp(rt->path, path, n))
        return 0;
    /* one segment of digits (or 64 lowercase hex digits) and nothing after
     * it: "..", "%2e" or a second segment never reach a handler */
    size_t d = strspn(path + n, param ? "0123456789" : "0123456789abcdef");
    return (param ? d >= 1 && d <= 18 : d == 64) && !path[n + d];
}

long long route_id(const request *req)
{
    const char *slash = strrchr(req->path, '/');
    return slash ? strtoll(slash + 1, NULL, 10) : 0;
}

const char *route_param(const request *req)
{
    const char *slash = strrchr(req->path, '/');
    return slash ? slash + 1 : "";
}

/* The route of (method, path): 0, or -1 with the 404 or 405 in r. */
static int find_route(conn_state *cs, reply *r)
{
    static const char *const methods[] = {"GET", "POST", "PUT", "DELETE"};
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    unsigned mask = 0;
    if (compreface_path(cs->req.path))
        return (cs->route = compreface_route(cs->req.method, cs->req.path, r)) ? 0 : -1;
    for (const route *rt = serve_routes; rt->path; rt++) {
        if (!route_matches(rt, cs->req.path))
            continue;
        if (!strcmp(rt->method, cs->req.method)) {
            cs->route = rt;
            return 0;
        }
        for (unsigned i = 0; i < 4; i++)
            mask |= !strcmp(rt->method, methods[i]) ? 1u << i : 0;
    }
    if (!mask) {
        reply_error(r, MHD_HTTP_NOT_FOUND, "not_found", NULL, "no endpoint %s (see docs/serve.md)",
                    cs->req.path);
        return -1;
    }
    pthread_once(&once, allow_texts_init);
    reply_error(r, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed", NULL,
                "%s does not take %s", cs->req.path, cs->req.method);
    r->allow = allow_text_of(mask);
    return -1;
}

/* The key's roles allow the route: 0, or -1 with the 403 in r. */
static int check_roles(conn_state *cs, reply *r)
{
    if (cs->req.key.roles & cs->route->roles)
        return 0;
    char have[LETHE_ROLES_TEXT], need[LETHE_ROLES_TEXT];
    lethe_roles_format(cs->req.key.roles, have);
    lethe_roles_format(cs->route->roles, need);
    for (char *p = need; (p = strchr(p, ',')); p++)
        *p = '|';
    reply_error(r, MHD_HTTP_FORBIDDEN, "forbidden", NULL,
                "key %lld (roles %s) may not call %s %s: it needs one of the roles %s",
                (long long)cs->req.key.id, have, cs->req.method, cs->req.path, need);
    return -1;
}

/* The body this request may send, from its Content-Type: 0, or -1 with
 * the 413 or 415 in r. */
static int check_body(server *sv, conn_state *cs, reply *r)
{
    int kind = cs->route->body, json = content_type_is(&cs->req, "application/json");
    int photo = content_type_is_photo(&cs->req) ||
                content_type_is(&cs->req, "multipart/form-data");
    const char *len = MHD_lookup_connection_value(cs->req.conn, MHD_HEADER_KIND,
                                                  MHD_HTTP_HEADER_CONTENT_LENGTH);
    unsigned long long n = len ? strtoull(len, NULL, 10) : 0;
    cs->limit = kind == BODY_NONE ? 0
              : kind == BODY_UPLOAD ? sv->max_upload
              : (kind == BODY_JSON || (kind == BODY_JSON_OR_PHOTO && json)) ? sv->max_json
                                                                           : sv->max_body;
    if (n > cs->limit && kind == BODY_NONE) {
        reply_error(r, MHD_HTTP_CONTENT_TOO_LARGE, "too_large", NULL, "%s %s takes no body",
                    cs->req.method, cs->req.path);
        return -1;
    }
    if (n > cs->limit) {
        reply_error(r, MHD_HTTP_CONTENT_TOO_LARGE, "too_large", NULL,
                    "the body is %llu bytes, more than %s %s takes (%zu)", n, cs->req.method,
                    cs->req.path, cs->limit);
        return -1;
    }
    if ((kind == BODY_JSON && !json) || (kind == BODY_PHOTO && !photo) ||
        (kind == BODY_UPLOAD && !content_type_is(&cs->req, "multipart/form-data")) ||
        (kind == BODY_JSON_OR_PHOTO && !json && !photo)) {
        reply_error(r, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", NULL,
                    "%s %s takes %s, not '%s'", cs->req.method, cs->req.path,
                    kind == BODY_JSON    ? "application/json"
                    : kind == BODY_UPLOAD ? "multipart/form-data"
                    : kind == BODY_PHOTO ? "a photo (image/jpeg, image/png, image/webp) or "
                                           "multipart/form-data"
                                         : "application/json, a photo (image/jpeg, image/png, "
                                           "image/webp) or multipart/form-data",
                    cs->req.content_type);
        return -1;
    }
    /* one manifest upload at a time: each is held in memory (up to twice
     * --max-upload while it is read) and ingested under the store's lock,
     * so a second would only wait, holding as much again */
    if (kind == BODY_UPLOAD && atomic_exchange(&sv->uploading, 1)) {
        reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "busy", NULL,
                    "another manifest upload is being received or ingested; try again when "
                    "it is done");
        r->retry_after = 10;
        return -1;
    }
    cs->holds_upload = kind == BODY_UPLOAD;
    return 0;
}

/* Everything decided from the headers alone: 0 to take the body, or -1
 * with the reply in r. */
static int first_look(server *sv, conn_state *cs, reply *r)
{
    long retry = 0;
    /* the data-subject page: no key, a rate per client address instead */
    int page = page_first_look(&cs->req, &cs->route, r);
    if (page)
        return page < 0 ? -1 : check_body(sv, cs, r);
    if (authenticate(sv, cs, r) < 0 || find_route(cs, r) < 0 || check_roles(cs, r) < 0)
        return -1;
    int over = limiter_admit(sv->lim, &cs->req.key, serve_now(), &retry);
    if (over) {
        reply_error(r, MHD_HTTP_TOO_MANY_REQUESTS, "too_many_requests", NULL,
                    over == 1 ? "key %lld may make %u requests a minute; try again in %ld s"
                              : "key %lld has used its %u requests of the day (UTC); try again "
                                "in %ld s",
                    (long long)cs->req.key.id,
                    over == 1 ? cs->req.key.rate_per_minute : cs->req.key.daily_quota, retry);
        r->retry_after = retry;
        return -1;
    }
    return check_body(sv, cs, r);
}

/* ------------------------------------------------------------ the body */

/* Keep the next piece of the body (or count it, once over the limit). */
static int take_body(conn_state *cs, const char *data, size_t n)
{
    request *q = &cs->req;
    if (cs->too_large || n > cs->limit - q->body_len) {
        cs->too_large = 1;
        cs->discarded += n;
        return cs->discarded > DISCARD_MAX ? -1 : 0;
    }
    if (q->body_len + n + 1 > cs->cap) {
        size_t nc = cs->cap ? cs->cap : 4096;
        while (nc < q->body_len + n + 1)
            nc *= 2;
        if (nc > cs->limit + 1)
            nc = cs->limit + 1;
        char *t = realloc(q->body, nc);
        if (!t)
            return -1;
        q->body = t;
        cs->cap = nc;
    }
    memcpy(q->body + q->body_len, data, n);
    q->body_len += n;
    q->body[q->body_len] = 0;
    return 0;
}

/* The mark serve_uri_cb leaves on a request whose path (before any '?')
 * holds a %-escape: no endpoint has one, and libmicrohttpd hands the
 * handler the path unescaped, where "%00" would cut it short and "%2e%2e"
 * become "..". */
static char escaped_path;

void *serve_uri_cb(void *cls, const char *uri, struct MHD_Connection *conn)
{
    (void)cls, (void)conn;
    size_t n = strcspn(uri, "?");
    return memchr(uri, '%', n) && !compreface_escapes_ok(uri, n) ? &escaped_path : NULL;
}

/* A new request: its state, then the first look. */
static enum MHD_Result start_request(server *sv, struct MHD_Connection *conn, const char *url,
                                     const char *method, void **state)
{
    int escaped = *state == &escaped_path;
    conn_state *cs = calloc(1, sizeof(*cs));
    reply r = {0};
    *state = cs;
    serve_conn_request(sv, conn, 1);
    if (!cs)
        return MHD_NO;
    atomic_fetch_add(&sv->active, 1);
    cs->start = serve_now();
    cs->req.sv = sv;
    cs->req.conn = conn;
    cs->req.method = method;
    const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_CONTENT_TYPE);
    cs->req.content_type = ct ? ct : "";
    size_t n = strlen(url);
    snprintf(cs->req.path, sizeof(cs->req.path), "%s", url);
    if (n >= sizeof(cs->req.path)) {
        reply_error(&r, MHD_HTTP_URI_TOO_LONG, "uri_too_long", NULL,
                    "the path is %zu bytes, more than %zu", n, sizeof(cs->req.path) - 1);
        return send_reply(conn, cs, &r);
    }
    if (escaped && authenticate(sv, cs, &r) == 0)
        reply_error(&r, MHD_HTTP_NOT_FOUND, "not_found", NULL,
                    "no endpoint %s (no endpoint's path holds a %%-escape)", cs->req.path);
    if (escaped || first_look(sv, cs, &r) < 0)
        return send_reply(conn, cs, &r);
    return MHD_YES;
}

enum MHD_Result serve_access_cb(void *cls, struct MHD_Connection *conn, const char *url,
                                const char *method, const char *version, const char *upload,
                                size_t *upload_size, void **state)
{
    server *sv = cls;
    conn_state *cs = *state;
    (void)version;
    if (!cs || *state == &escaped_path)
        return start_request(sv, conn, url, method, state);
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (serve_now() - cs->start > sv->request_seconds || take_body(cs, upload, n) < 0) {
            cs->status = serve_now() - cs->start > sv->request_seconds ? 408 : 413;
            access_log(sv, cs);
            return MHD_NO; /* no reply can be queued while the body arrives: close */
        }
        return MHD_YES;
    }
    reply r = {0};
    if (cs->too_large)
        reply_error(&r, MHD_HTTP_CONTENT_TOO_LARGE, "too_large", NULL,
                    "the body is more than this endpoint takes (%zu bytes)", cs->limit);
    else
        cs->route->fn(&cs->req, &r);
    return send_reply(conn, cs, &r);
}

void serve_completed_cb(void *cls, struct MHD_Connection *conn, void **state,
                        enum MHD_RequestTerminationCode toe)
{
    server *sv = cls;
    conn_state *cs = *state;
    (void)toe;
    serve_conn_request(sv, conn, 0);
    if (!cs || *state == &escaped_path)
        return;
    if (cs->holds_upload)
        atomic_store(&sv->uploading, 0);
    free(cs->req.body);
    free(cs);
    *state = NULL;
    atomic_fetch_sub(&sv->active, 1);
}
