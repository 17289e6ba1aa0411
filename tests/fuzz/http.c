/*
 * http.c: the fuzz target "http", lethe serve's whole request path on raw
 * bytes: libmicrohttpd's request line, headers and body framing, then the
 * server's own code (programs/serve*.c): keys and roles, limits, routing,
 * query strings, JSON bodies, urlencoded and multipart forms (the page's,
 * the API's, the CompreFace-compatible API's), manifest uploads.
 *
 * One server per process, made at the first input: a store in a folder of
 * its own (under /dev/shm, else /tmp; removed at exit) holding a few
 * descriptors, a key for each role, and a libmicrohttpd daemon with no
 * listening socket. Each input is handed to it as a connection
 * (MHD_add_connection on one end of a socketpair): the bytes are written,
 * the writing side shut (the client sent all it will), and the answer read
 * until its end or the server closing. In the input, @ADMIN@, @INGEST@,
 * @SEARCH@, @AUDIT@ and @ERASURE@ stand for those keys (corpus files are
 * written with them; keys differ in each process).
 *
 * What must hold, whatever the bytes:
 *   - an answer, if any, is an HTTP/1.x status line with a code in
 *     100..599 that is never 500 (an internal failure: a request must be
 *     answered for what it is, 4xx, or 503 when a resource is out);
 *   - an answer begun comes whole within 10 s (a hang aborts); a request
 *     cut short may get none (libmicrohttpd waits for the rest until its
 *     timeout, 2 s here: after 300 ms of silence the input is done with);
 *   - the server still answers GET /v1/status with the admin key, 200;
 *   - no crash, leak or sanitizer report (the server's threads included).
 * No face engine is loaded (photo routes answer 503 no_face_engine), so an
 * input costs a millisecond or two.
 */

#include <ftw.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../../programs/serve.h"
#include "../../programs/serve_page.h"
#include "lethe.h"

int lethe_fuzz_http(const uint8_t *data, size_t size);

#define HTTP_NKEYS 5
#define HTTP_REPLY_MAX (1u << 20)

static const char *const http_tokens[HTTP_NKEYS] = {"@ADMIN@", "@INGEST@", "@SEARCH@", "@AUDIT@",
                                                    "@ERASURE@"};
static const unsigned http_roles[HTTP_NKEYS] = {LETHE_ROLE_ADMIN, LETHE_ROLE_INGEST,
                                                LETHE_ROLE_SEARCH, LETHE_ROLE_AUDIT,
                                                LETHE_ROLE_ERASURE};

static struct {
    int state; /* 0 not made, 1 serving, -1 could not be made */
    char dir[64];
    server sv;
    struct MHD_Daemon *d;
    char keys[HTTP_NKEYS][LETHE_KEY_SIZE];
} H;

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path) < 0 ? 0 : 0;
}

static void http_teardown(void)
{
    if (H.d)
        MHD_stop_daemon(H.d);
    H.d = NULL;
    limiter_stop(H.sv.lim);
    limiter_free(H.sv.lim);
    conn_watch_free(H.sv.watch);
    lethe_store_close(H.sv.store);
    page_shutdown();
    if (H.sv.access_log)
        fclose(H.sv.access_log);
    pthread_mutex_destroy(&H.sv.store_mu);
    pthread_mutex_destroy(&H.sv.log_mu);
    if (H.dir[0])
        nftw(H.dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    H.state = 0;
}

/* The store: a key for each role and a few descriptors to find. */
static int http_store(const char *path)
{
    lethe_store *s = NULL;
    lethe_ingest *g = NULL;
    lethe_ingest_options io;
    int rc = lethe_store_open(path, LETHE_STORE_CREATE, &s);
    for (int i = 0; rc == LETHE_OK && i < HTTP_NKEYS; i++) {
        lethe_key_options ko;
        lethe_key_options_init(&ko);
        ko.name = http_tokens[i];
        ko.roles = http_roles[i];
        ko.actor = "fuzz";
        rc = lethe_key_add_with_purpose(s, &ko, "fuzzing", NULL, H.keys[i]);
    }
    lethe_ingest_options_init(&io);
    io.actor = "fuzz";
    if (rc == LETHE_OK)
        rc = lethe_ingest_begin(s, &io, &g);
    for (int i = 0; rc == LETHE_OK && i < 8; i++) {
        float d[LETHE_DESCRIPTOR_DIM];
        char up[16];
        for (int k = 0; k < LETHE_DESCRIPTOR_DIM; k++)
            d[k] = (float)(((i * 131 + k * 29) % 97) - 48) / 400.0f;
        snprintf(up, sizeof(up), "person%d", i % 4);
        lethe_provenance p = {.uploader = up, .consent = "explicit", .jurisdiction = "US",
                              .url = "https://photos.example/1"};
        rc = lethe_ingest_descriptor(g, d, &p, 0);
    }
    if (g && lethe_ingest_end(g, NULL) != LETHE_OK && rc == LETHE_OK)
        rc = LETHE_ERR_IO;
    lethe_store_close(s);
    return rc;
}

static int http_setup(void)
{
    char path[128];
    H.state = -1;
    snprintf(H.dir, sizeof(H.dir), "/dev/shm/lethe-fuzz-http-XXXXXX");
    if (!mkdtemp(H.dir)) {
        snprintf(H.dir, sizeof(H.dir), "/tmp/lethe-fuzz-http-XXXXXX");
        if (!mkdtemp(H.dir)) {
            H.dir[0] = 0;
            return -1;
        }
    }
    atexit(http_teardown);
    snprintf(path, sizeof(path), "%s/store", H.dir);
    if (http_store(path) != LETHE_OK)
        return -1;
    signal(SIGPIPE, SIG_IGN);
    pthread_mutex_init(&H.sv.store_mu, NULL);
    pthread_mutex_init(&H.sv.log_mu, NULL);
    H.sv.max_body = 1u << 20;
    H.sv.max_json = 1u << 20;
    H.sv.max_upload = 4u << 20;
    H.sv.header_seconds = 2;
    H.sv.request_seconds = 2;
    snprintf(H.sv.engine_error, sizeof(H.sv.engine_error), "fuzzing: no face models");
    if (!(H.sv.access_log = fopen("/dev/null", "w")) || !(H.sv.lim = limiter_new()) ||
        page_configure(1000000, 1000000) < 0 || !(H.sv.watch = conn_watch_new(2)) ||
        lethe_store_open(path, LETHE_STORE_SHARED, &H.sv.store) != LETHE_OK ||
        limiter_start(H.sv.lim, &H.sv) != LETHE_OK)
        return -1;
    H.d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC | MHD_USE_NO_LISTEN_SOCKET,
        0, NULL, NULL, serve_access_cb, &H.sv, MHD_OPTION_THREAD_POOL_SIZE, 2u,
        MHD_OPTION_CONNECTION_TIMEOUT, 2u, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
        MHD_OPTION_NOTIFY_COMPLETED, serve_completed_cb, &H.sv, MHD_OPTION_URI_LOG_CALLBACK,
        serve_uri_cb, &H.sv, MHD_OPTION_NOTIFY_CONNECTION, serve_conn_cb, &H.sv, MHD_OPTION_END);
    if (!H.d)
        return -1;
    H.state = 1;
    return 0;
}

/* The input with each @ROLE@ replaced by that key (malloc'd, *n bytes). */
static char *http_expand(const uint8_t *data, size_t size, size_t *n)
{
    char *out = malloc(size * (LETHE_KEY_SIZE / 7 + 1) + 1);
    size_t o = 0;
    if (!out)
        return NULL;
    for (size_t i = 0; i < size;) {
        int t = 0;
        for (; t < HTTP_NKEYS; t++) {
            size_t len = strlen(http_tokens[t]);
            if (size - i >= len && !memcmp(data + i, http_tokens[t], len)) {
                size_t kl = strlen(H.keys[t]);
                memcpy(out + o, H.keys[t], kl);
                o += kl;
                i += len;
                break;
            }
        }
        if (t == HTTP_NKEYS)
            out[o++] = (char)data[i++];
    }
    *n = o;
    return out;
}

/* Does buf[0..n) hold a whole answer: its headers and the body they
 * announce (Content-Length, or chunked up to its last chunk)? */
static int ans_complete(const char *buf, size_t n)
{
    const char *end = memmem(buf, n, "\r\n\r\n", 4);
    if (!end)
        return 0;
    size_t head = (size_t)(end + 4 - buf);
    const char *cl = memmem(buf, head, "\r\nContent-Length: ", 18);
    if (cl)
        return n - head >= strtoull(cl + 18, NULL, 10);
    if (memmem(buf, head, "\r\nTransfer-Encoding: chunked", 28))
        return n - head >= 5 && !memcmp(buf + n - 5, "0\r\n\r\n", 5);
    return 0; /* read until the server closes */
}

/* Send req[0..len) as a new connection and read its first answer, within
 * 10 s (a hang aborts). Returns the answer's bytes (NUL-terminated,
 * malloc'd; "" when the server closed without one). */
static char *http_exchange(const char *req, size_t len, size_t *got)
{
    int sv[2];
    struct sockaddr_in peer = {.sin_family = AF_INET, .sin_port = htons(40000)};
    peer.sin_addr.s_addr = htonl(0x7f000001);
    char *buf = malloc(HTTP_REPLY_MAX + 1);
    size_t n = 0, off = 0;
    *got = 0;
    if (!buf || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        free(buf);
        return NULL;
    }
    if (MHD_add_connection(H.d, sv[0], (struct sockaddr *)&peer, sizeof(peer)) != MHD_YES) {
        close(sv[0]);
        close(sv[1]);
        free(buf);
        return NULL;
    }
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int wrote_all = 0;
    for (;;) {
        struct pollfd p = {.fd = sv[1], .events = POLLIN | (wrote_all ? 0 : POLLOUT)};
        clock_gettime(CLOCK_MONOTONIC, &now);
        long ms = 10000 - ((now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000);
        if (ms <= 0) {
            fprintf(stderr, "http: no answer within 10 s to a request of %zu bytes\n", len);
            abort();
        }
        /* a request cut short (a body shorter than its Content-Length,
         * headers without their end) is held by libmicrohttpd until its
         * timeout even after the client's EOF: 300 ms of silence once all
         * is sent ends the wait (the probe after it still must answer) */
        int pr = poll(&p, 1, wrote_all && n == 0 ? (int)(ms < 300 ? ms : 300) : (int)ms);
        if (pr == 0 && wrote_all && n == 0)
            break;
        if (pr <= 0)
            continue;
        if (!wrote_all && (p.revents & POLLOUT)) {
            ssize_t w = write(sv[1], req + off, len - off);
            if (w > 0)
                off += (size_t)w;
            if (w < 0 || off == len) { /* all sent, or the server stopped reading */
                shutdown(sv[1], SHUT_WR);
                wrote_all = 1;
            }
        }
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t r = read(sv[1], buf + n, HTTP_REPLY_MAX - n);
            if (r <= 0)
                break;
            n += (size_t)r;
            if (n == HTTP_REPLY_MAX || ans_complete(buf, n))
                break;
        }
    }
    close(sv[1]);
    buf[n] = 0;
    *got = n;
    return buf;
}

/* The status of an answer (0: none), aborting on one that is malformed or
 * a 500. */
static int http_check(const char *ans, size_t n, const char *what)
{
    if (n == 0)
        return 0;
    if (n < 12 || (memcmp(ans, "HTTP/1.1 ", 9) && memcmp(ans, "HTTP/1.0 ", 9))) {
        fprintf(stderr, "http: %s: not an HTTP answer: %.60s\n", what, ans);
        abort();
    }
    int code = atoi(ans + 9);
    if (code < 100 || code > 599 || code == 500) {
        fprintf(stderr, "http: %s: status %d:\n%.2000s\n", what, code, ans);
        abort();
    }
    return code;
}

int lethe_fuzz_http(const uint8_t *data, size_t size)
{
    static const char status_fmt[] = "GET /v1/status HTTP/1.1\r\nHost: fuzz\r\nx-api-key: %s\r\n"
                                     "Connection: close\r\n\r\n";
    char probe[256];
    size_t n, got;
    if (H.state == 0 && http_setup() < 0) {
        fprintf(stderr, "http: the server could not be made in %s\n", H.dir);
        abort();
    }
    char *req = http_expand(data, size, &n);
    char *ans = req ? http_exchange(req, n, &got) : NULL;
    if (ans) {
        int code = http_check(ans, got, "the input");
        if (getenv("LETHE_FUZZ_HTTP_SHOW")) /* to see what a corpus reaches */
            fprintf(stderr, "http: %d (%zu bytes answered)\n", code, got);
    }
    free(req);
    free(ans);
    /* and the server still serves */
    int pn = snprintf(probe, sizeof(probe), status_fmt, H.keys[0]);
    ans = http_exchange(probe, (size_t)pn, &got);
    if (!ans || http_check(ans, got, "GET /v1/status after it") != 200) {
        fprintf(stderr, "http: GET /v1/status after the input: %.300s\n", ans ? ans : "?");
        abort();
    }
    free(ans);
    return 0;
}
