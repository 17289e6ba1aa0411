/*
 * serve_page.c: the data-subject page of `lethe serve` (docs/page.md): its
 * routes, the only ones reachable without an API key, each rate limited
 * per client address, and their handlers, which make the library's calls
 * (lethe_subject_lookup, lethe_request_file, lethe_request_status,
 * lethe_receipt_verify and _check) with "page" as the actor.
 *
 * What protects what:
 *   - a request id (256 random bits) is the only key to a request's status
 *     and receipt; it travels in POST bodies, never in a URL;
 *   - no cookie and no ambient authority: a form posted from another site
 *     can do nothing its author could not do directly (file a request, look
 *     something up), so there is no CSRF token; the API keys that approve
 *     travel in headers a browser never adds by itself;
 *   - every answer carries a Content-Security-Policy of default-src 'none'
 *     with the page's own stylesheet, no referrer (a looked-up link in the
 *     URL goes nowhere) and no framing; every outside value is escaped;
 *   - a client address (IPv4, or IPv6 /64) may make --page-rate requests a
 *     minute (a bucket refilled continuously); over it, 429 and Retry-After;
 *   - a client network (IPv4 address, or IPv6 /48) may file --page-requests
 *     requests a day, so that no one network fills the bounded queue of
 *     pending requests and locks the others out.
 */
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "cli.h"
#include "serve_page.h"

const char *const page_headers[] = {
    "Content-Security-Policy",
    "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'",
    "Referrer-Policy", "no-referrer", "X-Frame-Options", "DENY", NULL};

/* ------------------------------------------------------------ the limiter */

#define PROBE 16 /* slots looked at for one address */

typedef struct bucket {
    uint8_t addr[16]; /* IPv4 mapped into IPv6, or an IPv6 prefix */
    int used;
    double tokens, last;
} bucket;

/* A bucket of rate requests per period seconds for each client network,
 * refilled continuously, in a table of slots. */
typedef struct limiter_page {
    pthread_mutex_t mu;
    bucket *b;
    size_t slots;
    double rate;   /* requests a period; 0: none are admitted (off) */
    double period; /* seconds */
    int v6_bytes;  /* an IPv6 client's network: its first v6_bytes bytes */
} limiter_page;

/* Every page request: --page-rate a minute per IPv4 address or IPv6 /64. */
static limiter_page pg = {PTHREAD_MUTEX_INITIALIZER, NULL, 4096, 0, 60, 8};
/* Filing a request: --page-requests a day per IPv4 address or IPv6 /48 (a
 * site's whole allocation), so that one network cannot fill the queue of
 * pending requests (LETHE_REQUEST_MAX_PENDING) and lock everyone out. The
 * table is larger: a network that filed keeps its slot until its bucket
 * has refilled, a day later. */
static limiter_page pg_file = {PTHREAD_MUTEX_INITIALIZER, NULL, 65536, 0, 86400, 6};

static int limiter_page_set(limiter_page *l, long rate)
{
    l->rate = (double)rate;
    if (rate > 0 && !l->b && !(l->b = calloc(l->slots, sizeof(*l->b))))
        return -1;
    return 0;
}

int page_configure(long per_minute, long requests_per_day)
{
    return limiter_page_set(&pg, per_minute) < 0 ||
                   limiter_page_set(&pg_file, per_minute > 0 ? requests_per_day : 0) < 0
               ? -1
               : 0;
}

void page_shutdown(void)
{
    free(pg.b);
    free(pg_file.b);
    pg.b = pg_file.b = NULL;
}

/* The client's network as 16 bytes: IPv4 as ::ffff:a.b.c.d, IPv6 cut to
 * its first v6_bytes (one holder of a /64 has them all). */
static void client_addr(request *req, int v6_bytes, uint8_t out[16])
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    memset(out, 0, 16);
    if (!ci || !ci->client_addr)
        return;
    if (ci->client_addr->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ci->client_addr;
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &a->sin_addr, 4);
    } else if (ci->client_addr->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ci->client_addr;
        memcpy(out, &a->sin6_addr, (size_t)v6_bytes);
    }
}

/* Admit one request from the client of req at now: 0, or the seconds to
 * wait. A full table takes a slot whose bucket has refilled (a client gone
 * quiet); when there is none, the request waits (refused rather than not
 * counted). */
static long admit(limiter_page *l, request *req, double now)
{
    uint8_t addr[16];
    uint32_t h = 2166136261u;
    client_addr(req, l->v6_bytes, addr);
    for (int i = 0; i < 16; i++)
        h = (h ^ addr[i]) * 16777619u;
    long wait = 0;
    double per_second = l->rate / l->period;
    pthread_mutex_lock(&l->mu);
    bucket *b = NULL, *spare = NULL;
    for (int k = 0; k < PROBE && !b; k++) {
        bucket *c = &l->b[(h + (uint32_t)k) % l->slots];
        if (c->used && !memcmp(c->addr, addr, 16))
            b = c;
        else if (!spare && (!c->used || c->tokens + (now - c->last) * per_second >= l->rate))
            spare = c;
    }
    if (!b && spare) {
        b = spare;
        memcpy(b->addr, addr, 16);
        b->used = 1;
        b->tokens = l->rate;
        b->last = now;
    }
    if (!b) {
        wait = (long)l->period; /* every slot refills within a period */
    } else {
        b->tokens += (now - b->last) * per_second;
        if (b->tokens > l->rate)
            b->tokens = l->rate;
        b->last = now;
        if (b->tokens >= 1.0)
            b->tokens -= 1.0;
        else
            wait = (long)((1.0 - b->tokens) / per_second) + 1;
    }
    pthread_mutex_unlock(&l->mu);
    return wait;
}

/* "N seconds", "N minutes" or "N hours", for a person. */
static void wait_text(long wait, char *out, size_t n)
{
    long v = wait >= 7200 ? (wait + 3599) / 3600 : wait >= 120 ? (wait + 59) / 60 : wait;
    const char *unit = wait >= 7200 ? "hour" : wait >= 120 ? "minute" : "second";
    snprintf(out, n, "%ld %s%s", v, unit, v == 1 ? "" : "s");
}

/* ------------------------------------------------------------- replies */

static void page_reply(reply *r, int status, jsbuf *b)
{
    reply_text(r, status, "text/html; charset=utf-8", jb_close(b));
    r->headers = page_headers;
}

static void page_fail(reply *r, int status, const char *title, const char *text)
{
    jsbuf b;
    if (jb_open(&b) < 0) {
        reply_json(r, 503, NULL);
        return;
    }
    page_message(b.f, title, text);
    page_reply(r, status, &b);
    if (status == 503)
        r->retry_after = 5;
}

/* The page's answer to a failed library call. */
static void page_lethe(reply *r, int rc, const char *msg)
{
    int status = rc == LETHE_ERR_ARG || rc == LETHE_ERR_FORMAT ? 400
               : rc == LETHE_ERR_NOT_FOUND                    ? 404
               : rc == LETHE_ERR_NO_FACE                      ? 422
               : rc == LETHE_ERR_BUSY || rc == LETHE_ERR_NOMEM ? 503
                                                               : 500;
    page_fail(r, status, status == 404 ? "Not found" : status < 500 ? "Not accepted"
                                                     : "Not now",
              status == 503 ? "The store is busy: try again in a few seconds." : msg);
}

/* A multipart form posted by the page: 0, or -1 with the reply. */
static int page_form(request *req, reply *r, form *f)
{
    if (!content_type_is(req, "multipart/form-data")) {
        page_fail(r, 415, "Not accepted", "This form is sent as multipart/form-data.");
        return -1;
    }
    if (form_read(req, f, 0) < 0) {
        page_fail(r, f->error_status, "Not accepted", f->error);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- pages */

static void pg_home(request *req, reply *r)
{
    jsbuf b;
    if (jb_open(&b) < 0) {
        reply_json(r, 503, NULL);
        return;
    }
    page_home(b.f, req->sv->engine != NULL);
    page_reply(r, 200, &b);
}

static void pg_css(request *req, reply *r)
{
    (void)req;
    reply_text(r, 200, "text/css; charset=utf-8", strdup(page_css));
    r->headers = page_headers;
}

/* Look up and answer the page (value or bytes). */
static void lookup_answer(request *req, reply *r, int kind, const char *what, const char *value,
                          const void *bytes, size_t len)
{
    lethe_subject_photo *p = NULL;
    size_t n = 0;
    char msg[512];
    jsbuf b;
    server_lock(req->sv);
    int rc = lethe_subject_lookup(req->sv->store, kind, value, bytes, len, "page", &p, &n);
    if (rc != LETHE_OK)
        snprintf(msg, sizeof(msg), "%s", lethe_store_errmsg(req->sv->store));
    server_unlock(req->sv);
    if (rc != LETHE_OK) {
        page_lethe(r, rc, msg);
        return;
    }
    if (jb_open(&b) < 0) {
        lethe_subject_photos_free(p, n);
        reply_json(r, 503, NULL);
        return;
    }
    page_lookup(b.f, what, value, p, n);
    lethe_subject_photos_free(p, n);
    page_reply(r, 200, &b);
}

static void pg_lookup(request *req, reply *r)
{
    static const char *const kinds[] = {"uploader", "url", "photo-id"};
    static const char *const whats[] = {"account", "link", "photo id"};
    form f = {.names = {"by", "value"}, .nnames = 2};
    int k = 0;
    if (form_read(req, &f, 1) < 0) {
        page_fail(r, f.error_status, "Not accepted", f.error);
        form_free(&f);
        return;
    }
    const char *by = form_get(&f, "by"), *value = form_get(&f, "value");
    for (; k < 3 && (!by || strcmp(by, kinds[k])); k++)
        ;
    if (k == 3 || !value || !*value)
        page_fail(r, 400, "Not accepted",
                  k == 3 ? "Choose what to look up by: account, link or photo id."
                         : "Give the account, link or photo id to look up.");
    else
        lookup_answer(req, r, k, whats[k], value, NULL, 0);
    form_free(&f);
}

static void pg_lookup_file(request *req, reply *r)
{
    form f = {.nnames = 0, .photo_field = "photo"};
    if (page_form(req, r, &f) == 0) {
        if (!f.photo_len)
            page_fail(r, 400, "Not accepted", "Choose the photo file to look up.");
        else
            lookup_answer(req, r, LETHE_LOOKUP_FILE, "file", f.photo_name[0] ? f.photo_name
                                                                             : "(the file given)",
                          f.photo, f.photo_len);
    }
    form_free(&f);
}

/* The form's request: 0 with *q, or -1 with the reply. A selfie's face is
 * computed here, outside the store's lock, into face. */
static int request_spec(request *req, reply *r, const form *f, lethe_request_spec *q,
                        float *face)
{
    const char *action = form_get(f, "action"), *by = form_get(f, "by");
    const char *value = form_get(f, "value");
    char msg[256];
    memset(q, 0, sizeof(*q));
    q->action = action && !strcmp(action, "optout") ? LETHE_REQUEST_OPTOUT : LETHE_REQUEST_ERASE;
    if ((action && strcmp(action, "optout") && strcmp(action, "erase")) ||
        lethe_request_by_parse(by, &q->by, msg, sizeof(msg)) != LETHE_OK) {
        page_fail(r, 400, "Not accepted", "Choose what should happen, and what selects it.");
        return -1;
    }
    int photo = q->by == LETHE_REQUEST_BY_FILE || q->by == LETHE_REQUEST_BY_FACE;
    if (photo ? !f->photo_len : !value || !*value) {
        page_fail(r, 400, "Not accepted", photo ? "Choose the photo file." :
                  "Give the account, link or photo id the request is about.");
        return -1;
    }
    q->value = photo ? NULL : value;
    q->bytes = f->photo;
    q->len = f->photo_len;
    if (q->by != LETHE_REQUEST_BY_FACE)
        return 0;
    if (!req->sv->engine) {
        page_fail(r, 503, "Not now", "Requests by face are not taken at the moment.");
        return -1;
    }
    lethe_analysis a;
    int rc = lethe_engine_analyze_bytes(req->sv->engine, f->photo, f->photo_len, NULL,
                                        LETHE_LARGEST_FACE, &a, msg, sizeof(msg));
    if (rc == LETHE_OK)
        memcpy(face, a.faces[0].descriptor, sizeof(float) * LETHE_DESCRIPTOR_DIM);
    lethe_faces_free(a.faces);
    if (rc != LETHE_OK) {
        page_fail(r, rc == LETHE_ERR_NO_FACE ? 422 : 400, "Not accepted",
                  rc == LETHE_ERR_NO_FACE ? "No face was found in this photo: try a clear photo "
                                            "of your face, looking at the camera."
                                          : msg);
        return -1;
    }
    q->face = face;
    q->bytes = NULL;
    q->len = 0;
    return 0;
}

static void pg_request(request *req, reply *r)
{
    form f = {.names = {"action", "by", "value"}, .nnames = 3, .photo_field = "photo"};
    lethe_request_spec q;
    lethe_request_info info;
    float face[LETHE_DESCRIPTOR_DIM];
    char id[LETHE_REQUEST_ID_SIZE], msg[512];
    jsbuf b;
    if (page_form(req, r, &f) < 0 || request_spec(req, r, &f, &q, face) < 0)
        goto out;
    long wait = admit(&pg_file, req, serve_now());
    if (wait > 0) {
        char text[256], in[32];
        wait_text(wait, in, sizeof(in));
        snprintf(text, sizeof(text), "Your network has filed as many requests as it may for "
                 "now: try again in %s. Requests filed already are kept.", in);
        page_fail(r, 429, "Too many requests", text);
        r->retry_after = wait;
        goto out;
    }
    server_lock(req->sv);
    int rc = lethe_request_file(req->sv->store, &q, "page", id, &info);
    if (rc != LETHE_OK)
        snprintf(msg, sizeof(msg), "%s", lethe_store_errmsg(req->sv->store));
    server_unlock(req->sv);
    if (rc != LETHE_OK && !id[0]) {
        page_lethe(r, rc, msg);
    } else if (jb_open(&b) < 0) {
        reply_json(r, 503, NULL);
    } else {
        page_request(b.f, id, &info, 1, !strcmp(info.status, "done"));
        page_reply(r, 200, &b);
    }
out:
    memset(face, 0, sizeof(face));
    form_free(&f);
}

/* The request the form's id names: its state, and its receipt when asked. */
static int status_of(request *req, reply *r, form *f, lethe_request_info *info, char **receipt)
{
    char msg[512];
    if (page_form(req, r, f) < 0)
        return -1;
    const char *id = form_get(f, "id");
    server_lock(req->sv);
    int rc = lethe_request_status(req->sv->store, id ? id : "", info, receipt);
    if (rc != LETHE_OK)
        snprintf(msg, sizeof(msg), "%s", lethe_store_errmsg(req->sv->store));
    server_unlock(req->sv);
    if (rc == LETHE_ERR_NOT_FOUND)
        page_fail(r, 404, "Not found", "No request has this id. Check that it was copied whole "
                                       "(it starts with rq_ and has 46 characters).");
    else if (rc != LETHE_OK)
        page_lethe(r, rc, msg);
    return rc == LETHE_OK ? 0 : -1;
}

static void pg_status(request *req, reply *r)
{
    form f = {.names = {"id"}, .nnames = 1};
    lethe_request_info info;
    char *receipt = NULL;
    jsbuf b;
    if (status_of(req, r, &f, &info, &receipt) == 0) {
        if (jb_open(&b) < 0) {
            reply_json(r, 503, NULL);
        } else {
            page_request(b.f, form_get(&f, "id"), &info, 0, receipt != NULL);
            page_reply(r, 200, &b);
        }
    }
    lethe_free_string(receipt);
    form_free(&f);
}

static void pg_receipt(request *req, reply *r)
{
    static const char *const download[] = {
        "Content-Disposition", "attachment; filename=\"lethe-receipt.json\"",
        "Content-Security-Policy", "default-src 'none'", NULL};
    form f = {.names = {"id"}, .nnames = 1};
    lethe_request_info info;
    char *receipt = NULL, *copy = NULL;
    if (status_of(req, r, &f, &info, &receipt) == 0) {
        if (!receipt) {
            page_fail(r, 404, "No receipt yet", "The request is not done: there is no receipt.");
        } else if (asprintf(&copy, "%s\n", receipt) < 0) {
            reply_json(r, 503, NULL);
        } else {
            reply_text(r, 200, "application/json", copy);
            r->headers = download;
        }
    }
    lethe_free_string(receipt);
    form_free(&f);
}

static void pg_verify(request *req, reply *r)
{
    /* the file and the pasted text are both "receipt": a pasted text keeps
     * its line breaks (CR LF from a textarea), which a text field refuses;
     * the browser sends both parts, one empty, read as one text */
    form f = {.nnames = 0, .photo_field = "receipt", .max_photos = 2};
    char msg[512] = "";
    int issued = 0;
    jsbuf b;
    if (page_form(req, r, &f) < 0)
        goto out;
    const char *rec = f.photo;
    size_t len = f.photo_len;
    while (len && (rec[len - 1] == '\n' || rec[len - 1] == '\r' || rec[len - 1] == ' '))
        len--;
    if (!len) {
        page_fail(r, 400, "Not accepted", "Choose the receipt file, or paste the receipt.");
        goto out;
    }
    if (len > 65536) {
        page_fail(r, 413, "Not accepted", "This is too large to be a receipt.");
        goto out;
    }
    int sig = lethe_receipt_verify(rec, len, NULL, msg, sizeof(msg)) == LETHE_OK;
    if (sig) {
        server_lock(req->sv);
        issued = lethe_receipt_check(req->sv->store, rec, len) == LETHE_OK;
        if (!issued)
            snprintf(msg, sizeof(msg), "%s", lethe_store_errmsg(req->sv->store));
        server_unlock(req->sv);
    }
    if (jb_open(&b) < 0) {
        reply_json(r, 503, NULL);
        goto out;
    }
    page_verified(b.f, sig, issued, msg);
    page_reply(r, 200, &b);
out:
    form_free(&f);
}

/* ------------------------------------------------------------ the routes */

/* The page's routes: public (roles 0), each rate limited per address.
 * Posted forms are multipart (BODY_PHOTO takes them, up to --max-body). */
static const route page_routes[] = {
    {"GET", "/", 0, BODY_NONE, pg_home},
    {"GET", "/page.css", 0, BODY_NONE, pg_css},
    {"GET", "/lookup", 0, BODY_NONE, pg_lookup},
    {"POST", "/lookup", 0, BODY_PHOTO, pg_lookup_file},
    {"POST", "/request", 0, BODY_PHOTO, pg_request},
    {"POST", "/status", 0, BODY_PHOTO, pg_status},
    {"POST", "/receipt", 0, BODY_PHOTO, pg_receipt},
    {"POST", "/verify", 0, BODY_PHOTO, pg_verify},
    {NULL, NULL, 0, 0, NULL},
};

int page_first_look(request *req, const route **rt, reply *r)
{
    const route *hit = NULL;
    int known = 0;
    if (pg.rate <= 0)
        return 0;
    for (const route *p = page_routes; p->path; p++)
        if (!strcmp(p->path, req->path)) {
            known = 1;
            if (!strcmp(p->method, req->method))
                hit = p;
        }
    if (!known)
        return 0;
    long wait = admit(&pg, req, serve_now());
    if (wait > 0) {
        char text[160], in[32];
        wait_text(wait, in, sizeof(in));
        snprintf(text, sizeof(text), "Too many requests from your address: try again in %s.",
                 in);
        page_fail(r, 429, "Too many requests", text);
        r->retry_after = wait;
        return -1;
    }
    if (!hit) {
        page_fail(r, 405, "Not accepted", "This page does not take that method.");
        r->allow = !strcmp(req->path, "/lookup")                                  ? "GET, POST"
                   : !strcmp(req->path, "/") || !strcmp(req->path, "/page.css") ? "GET"
                                                                                 : "POST";
        return -1;
    }
    *rt = hit;
    return 1;
}
