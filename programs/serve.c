/*
 * serve.c: `lethe serve`, the store as an HTTP/1.1 JSON service for the
 * people each API key stands for (docs/serve.md). This file is the command:
 * its options, the store and the face engine, the daemon (libmicrohttpd,
 * Debian's libmicrohttpd-dev: a small, long-kept C library with a thread
 * pool, TLS through GnuTLS, connection and memory limits), and a graceful
 * stop: on SIGTERM or SIGINT no new connection is taken, the requests in
 * flight finish (each library call is all or nothing either way), then the
 * store is closed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "cli_store.h"
#include "serve.h"
#include "serve_page.h"

typedef struct serve_opts {
    cli_common c;
    const char *listen, *cert, *key, *models, *access_log, *backup_dir;
    long threads, max_body_mb, timeout, max_conns, drain, page_rate, page_requests, max_upload_mb;
    long header_timeout;
    int no_faces;
} serve_opts;

static void serve_help(void)
{
    printf("usage: lethe serve [--store DIR] [--listen HOST:PORT] [--tls-cert FILE --tls-key FILE]\n"
           "                   [--threads N] [--max-body MB] [--timeout SECONDS]\n"
           "                   [--max-connections N] [--models DIR] [--no-faces]\n"
           "                   [--access-log FILE] [--backup-dir DIR] [--max-upload MB]\n"
           "                   [--header-timeout SECONDS] [--drain SECONDS]\n"
           "                   [--page-rate N] [--page-requests N]\n\n"
           "Serve the store over HTTP/1.1 as a JSON API (docs/serve.md lists the endpoints\n"
           "and which roles may call each). Every request needs an API key ('lethe key\n"
           "add'), sent as 'Authorization: Bearer KEY' or 'x-api-key: KEY': 401 without a\n"
           "valid one, 403 when its roles do not allow the endpoint, 429 (with\n"
           "Retry-After) over its rate or daily quota. Searches need a purpose. What the\n"
           "library logs (searches, lookups, ingests, erasures, policy changes) is logged\n"
           "with the key's id as the actor (\"key:ID\"); every request gets a line in the\n"
           "access log (never its query string). SIGTERM or SIGINT stops it gracefully.\n\n"
           "  --listen HOST:PORT   numeric IPv4 address, [IPv6] or localhost, and port\n"
           "                       (default 127.0.0.1:8080; port 0 picks a free one, printed)\n"
           "  --tls-cert FILE      serve HTTPS with this certificate (PEM) ...\n"
           "  --tls-key FILE       ... and its private key (PEM)\n"
           "  --threads N          requests handled at once (default 4)\n"
           "  --max-body MB        largest photo body, in MiB (default 16; JSON: 1 MiB)\n"
           "  --timeout SECONDS    a connection idle this long is closed, and a request's\n"
           "                       body must arrive within it (default 30)\n"
           "  --header-timeout SECONDS\n"
           "                       a request's headers must all be in within this of the\n"
           "                       connection's first byte (or the previous answer);\n"
           "                       a client sending them a byte a second is cut off (10)\n"
           "  --max-connections N  open connections at most (default 512; each may hold\n"
           "                       64 KiB of headers)\n"
           "  --max-upload MB      largest manifest upload with its photos (default 256)\n"
           "  --backup-dir DIR     POST /v1/backup writes backups into new folders here\n"
           "                       (no backups over HTTP without it)\n"
           "  --drain SECONDS      on SIGTERM, wait this long for requests in flight\n"
           "                       (default 30)\n"
           "  --models DIR         face models, for photos (ingest, search by photo)\n"
           "  --no-faces           load no face models: photo requests answer 503\n"
           "  --access-log FILE    append the access log to FILE (default: stderr)\n"
           "  --page-rate N        the data-subject page at / (docs/page.md), the only routes\n"
           "                       taken without a key: N requests a minute per client\n"
           "                       address (default 60; 0 turns the page off)\n"
           "  --page-requests N    requests for erasure or opt-out the page files, N a day\n"
           "                       per client network (IPv4 address, IPv6 /48; default\n"
           "                       20): no one network fills the pending queue\n%s",
           cli_common_help);
}

/* A number option in [lo, hi]: 0, or -1 (message printed). */
static int opt_long(const char *flag, const char *v, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || *end || n < lo || n > hi) {
        cli_text_error("serve: %s expects a whole number from %ld to %ld, not '%s'", flag, lo,
                       hi, v);
        return -1;
    }
    *out = n;
    return 0;
}

/* 1 taken, 0 not ours, -1 bad. */
static int serve_number(serve_opts *o, int argc, char **argv, int *i)
{
    int bad = 0;
    const char *v;
    if ((v = cli_flag_value(argc, argv, i, "--threads", &bad)))
        return opt_long("--threads", v, 1, 256, &o->threads) < 0 ? -1 : 1;
    if ((v = cli_flag_value(argc, argv, i, "--max-body", &bad)))
        return opt_long("--max-body", v, 1, 256, &o->max_body_mb) < 0 ? -1 : 1;
    if ((v = cli_flag_value(argc, argv, i, "--timeout", &bad)))
        return opt_long("--timeout", v, 1, 3600, &o->timeout) < 0 ? -1 : 1;
    if ((v = cli_flag_value(argc, argv, i, "--max-connections", &bad)))
        return opt_long("--max-connections", v, 1, 100000, &o->max_conns) < 0 ? -1 : 1;
    if ((v = cli_flag_value(argc, argv, i, "--drain", &bad)))
        return opt_long("--drain", v, 0, 3600, &o->drain) < 0 ? -1 : 1;
    if ((v = cli_flag_value(argc, argv, i, "--max-upload", &bad)))
        return opt_long("--max-upload", v, 1, 4096, &o->max_upload_mb) < 0 ? -1 : 1;
    if ((v = cli_flag_value(argc, argv, i, "--header-timeout", &bad)))
        return opt_long("--header-timeout", v, 1, 3600, &o->header_timeout) < 0 ? -1 : 1;
    if ((v = cli_flag_value(argc, argv, i, "--page-rate", &bad)))
        return opt_long("--page-rate", v, 0, 100000, &o->page_rate) < 0 ? -1 : 1;
    if ((v = cli_flag_value(argc, argv, i, "--page-requests", &bad)))
        return opt_long("--page-requests", v, 1, 1000000, &o->page_requests) < 0 ? -1 : 1;
    return bad ? -1 : 0;
}

static int serve_parse(serve_opts *o, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        int bad = 0, r = cli_common_parse(&o->c, argc, argv, &i);
        const char *v;
        if (r == 0)
            r = serve_number(o, argc, argv, &i);
        if (r < 0)
            return CLI_EXIT_USAGE;
        if (r > 0)
            continue;
        if ((v = cli_flag_value(argc, argv, &i, "--listen", &bad)))
            o->listen = v;
        else if ((v = cli_flag_value(argc, argv, &i, "--tls-cert", &bad)))
            o->cert = v;
        else if ((v = cli_flag_value(argc, argv, &i, "--tls-key", &bad)))
            o->key = v;
        else if ((v = cli_flag_value(argc, argv, &i, "--models", &bad)))
            o->models = v;
        else if ((v = cli_flag_value(argc, argv, &i, "--access-log", &bad)))
            o->access_log = v;
        else if ((v = cli_flag_value(argc, argv, &i, "--backup-dir", &bad)))
            o->backup_dir = v;
        else if (!strcmp(argv[i], "--no-faces"))
            o->no_faces = 1;
        else if (bad)
            return CLI_EXIT_USAGE;
        else
            return cli_unknown_option("serve", argv[i]);
    }
    if (!o->cert != !o->key) {
        cli_error("serve: --tls-cert and --tls-key go together");
        return CLI_EXIT_USAGE;
    }
    return CLI_EXIT_OK;
}

/* ------------------------------------------------------------ address */

typedef struct listen_addr {
    struct sockaddr_storage sa;
    int ipv6;
    int loopback;
} listen_addr;

/* "HOST:PORT" (HOST a numeric IPv4 address, [IPv6] or localhost): 0, or
 * -1 (message printed). */
static int parse_listen(const char *text, listen_addr *a)
{
    char host[64];
    const char *colon = text[0] == '[' ? strstr(text, "]:") : strrchr(text, ':');
    long port;
    memset(a, 0, sizeof(*a));
    if (!colon || (size_t)(colon - text) >= sizeof(host) ||
        opt_long("--listen's port", colon + 1 + (text[0] == '['), 0, 65535, &port) < 0) {
        if (!colon)
            cli_text_error("serve: --listen expects HOST:PORT, not '%s'", text);
        return -1;
    }
    size_t hn = (size_t)(colon - text) - (text[0] == '[' ? 1 : 0);
    memcpy(host, text + (text[0] == '['), hn);
    host[hn] = 0;
    if (!strcmp(host, "localhost"))
        snprintf(host, sizeof(host), "127.0.0.1");
    struct sockaddr_in *v4 = (struct sockaddr_in *)&a->sa;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&a->sa;
    if (text[0] != '[' && inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        a->loopback = (ntohl(v4->sin_addr.s_addr) >> 24) == 127;
    } else if (text[0] == '[' && inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        a->ipv6 = 1;
        a->loopback = IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr);
    } else {
        cli_text_error("serve: --listen: '%s' is not a numeric IPv4 address, [IPv6] address "
                       "or localhost", host);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- TLS */

/* A PEM file (at most 1 MiB) as a NUL-terminated string, or NULL (message
 * printed). */
static char *read_pem(const char *flag, const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = f ? malloc((1u << 20) + 1) : NULL;
    size_t n = buf ? fread(buf, 1, 1u << 20, f) : 0;
    int err = errno;
    if (!buf || (f && ferror(f)) || n == 0 || n == 1u << 20) {
        cli_text_error("serve: %s %s: %s", flag, path,
                       !f ? strerror(err) : n == 1u << 20 ? "larger than 1 MiB"
                                                          : "empty or unreadable");
        free(buf);
        buf = NULL;
    } else {
        buf[n] = 0;
    }
    if (f)
        fclose(f);
    return buf;
}

/* ------------------------------------------------------------- daemon */

static struct MHD_Daemon *start_daemon(server *sv, const serve_opts *o, const listen_addr *a,
                                       const char *cert, const char *key)
{
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG | (a->ipv6 ? MHD_USE_IPv6 : 0) | (cert ? MHD_USE_TLS : 0);
    struct MHD_OptionItem tls[] = {
        {cert ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, (void *)cert},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)key},
        {MHD_OPTION_END, 0, NULL},
    };
    return MHD_start_daemon(
        flags, 0, NULL, NULL, serve_access_cb, sv, MHD_OPTION_SOCK_ADDR, &a->sa,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)o->threads, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)o->timeout, MHD_OPTION_CONNECTION_LIMIT, (unsigned)o->max_conns,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024), MHD_OPTION_NOTIFY_COMPLETED,
        serve_completed_cb, sv, MHD_OPTION_URI_LOG_CALLBACK, serve_uri_cb, sv,
        MHD_OPTION_NOTIFY_CONNECTION, serve_conn_cb, sv, MHD_OPTION_ARRAY,
        tls, MHD_OPTION_END);
}

/* Wait for SIGTERM or SIGINT (blocked in every thread), then stop taking
 * connections and let the requests in flight finish. */
static void run_until_signal(server *sv, struct MHD_Daemon *d, const sigset_t *set, long drain)
{
    int sig = 0;
    while (sigwait(set, &sig) != 0)
        ;
    atomic_store(&sv->stopping, 1);
    fprintf(stderr, "lethe serve: %s: stopping; %d request%s in flight\n",
            sig == SIGTERM ? "SIGTERM" : "SIGINT", atomic_load(&sv->active),
            atomic_load(&sv->active) == 1 ? "" : "s");
    MHD_socket fd = MHD_quiesce_daemon(d);
    /* no longer accepted, but still listening: the kernel would queue new
     * connections that nobody takes; shut it so they are refused at once
     * (closed only after MHD_stop_daemon, as libmicrohttpd asks) */
    if (fd != MHD_INVALID_SOCKET)
        shutdown(fd, SHUT_RDWR);
    double until = serve_now() + (double)drain;
    while (atomic_load(&sv->active) > 0 && serve_now() < until)
        usleep(20000);
    if (atomic_load(&sv->active) > 0)
        fprintf(stderr, "lethe serve: %d request%s still running after %ld s: closing them\n",
                atomic_load(&sv->active), atomic_load(&sv->active) == 1 ? "" : "s", drain);
    MHD_stop_daemon(d);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
}

/* The face engine, or the reason there is none in sv->engine_error. */
static void open_engine(server *sv, const serve_opts *o)
{
    lethe_engine_options eo;
    if (o->no_faces) {
        snprintf(sv->engine_error, sizeof(sv->engine_error),
                 "it was started with --no-faces");
        return;
    }
    lethe_engine_options_init(&eo);
    eo.model_dir = o->models;
    if (lethe_engine_open(&sv->engine, &eo) != LETHE_OK) {
        snprintf(sv->engine_error, sizeof(sv->engine_error), "the face models could not be "
                 "loaded: %s", lethe_engine_errmsg(sv->engine));
        lethe_engine_close(sv->engine);
        sv->engine = NULL;
        fprintf(stderr, "lethe serve: photos will be refused: %s\n", sv->engine_error);
    }
}

/* Everything the daemon needs, then the daemon until a signal. */
static int serve_run(server *sv, const serve_opts *o, const listen_addr *a, const sigset_t *set)
{
    char *cert = NULL, *key = NULL;
    int status = CLI_EXIT_FAILED;
    if (o->cert && (!MHD_is_feature_supported(MHD_FEATURE_TLS) ||
                    !(cert = read_pem("--tls-cert", o->cert)) ||
                    !(key = read_pem("--tls-key", o->key)))) {
        if (!MHD_is_feature_supported(MHD_FEATURE_TLS))
            cli_error("serve: this libmicrohttpd was built without TLS");
        goto out;
    }
    struct MHD_Daemon *d = start_daemon(sv, o, a, cert, key);
    if (!d) {
        cli_text_error("serve: cannot listen on %s (in use, not this machine's address, or a "
                       "bad certificate or key)", o->listen);
        goto out;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    char host[64];
    snprintf(host, sizeof(host), "%.*s", (int)(strrchr(o->listen, ':') - o->listen), o->listen);
    printf("lethe serve: listening on %s://%s:%u/ (store %s)\n", cert ? "https" : "http", host,
           info ? info->port : 0, o->c.store);
    fflush(stdout);
    run_until_signal(sv, d, set, o->drain);
    status = CLI_EXIT_OK;
out:
    if (key)
        memset(key, 0, strlen(key));
    free(cert);
    free(key);
    return status;
}

static void serve_defaults(serve_opts *o)
{
    memset(o, 0, sizeof(*o));
    cli_common_init(&o->c);
    o->c.wait = 5;
    o->listen = "127.0.0.1:8080";
    o->threads = 4;
    o->max_body_mb = 16;
    o->timeout = 30;
    o->max_conns = 512;
    o->drain = 30;
    o->page_rate = 60;
    o->page_requests = 20;
    o->max_upload_mb = 256;
    o->header_timeout = 10;
}

int cmd_serve(int argc, char **argv)
{
    static server sv;
    serve_opts o;
    listen_addr a;
    sigset_t set;
    struct stat st;
    serve_defaults(&o);
    if (cli_wants_help(argc, argv)) {
        serve_help();
        return CLI_EXIT_OK;
    }
    int status = serve_parse(&o, argc, argv);
    if (status != CLI_EXIT_OK || parse_listen(o.listen, &a) < 0)
        return CLI_EXIT_USAGE;
    if (!a.loopback && !o.cert)
        fprintf(stderr, "lethe serve: warning: %s is not a loopback address and there is no "
                        "TLS: API keys and photos will cross the network in clear\n", o.listen);
    memset(&sv, 0, sizeof(sv));
    pthread_mutex_init(&sv.store_mu, NULL);
    pthread_mutex_init(&sv.log_mu, NULL);
    sv.max_body = (size_t)o.max_body_mb << 20;
    sv.max_json = 1u << 20;
    sv.max_upload = (size_t)o.max_upload_mb << 20;
    sv.backup_dir = o.backup_dir;
    sv.header_seconds = (double)o.header_timeout;
    sv.request_seconds = (double)o.timeout;
    sv.access_log = o.access_log ? fopen(o.access_log, "a") : stderr;
    if (!sv.access_log || !(sv.lim = limiter_new()) || page_configure(o.page_rate, o.page_requests) < 0) {
        cli_text_error("serve: %s: %s", o.access_log ? o.access_log : "limits", strerror(errno));
        limiter_free(sv.lim);
        return CLI_EXIT_FAILED;
    }
    /* SIGTERM and SIGINT are taken by sigwait alone: blocked before any
     * thread starts, so every thread inherits the mask */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN); /* a client gone mid-answer is an error, not a death */
    /* shared: searches and key checks run on the library's views of the
     * handle, from any thread, outside store_mu */
    if (o.backup_dir && (stat(o.backup_dir, &st) != 0 || !S_ISDIR(st.st_mode))) {
        cli_text_error("serve: --backup-dir %s: not a folder", o.backup_dir);
        status = CLI_EXIT_USAGE;
    } else if (!(sv.watch = conn_watch_new((double)o.header_timeout))) {
        cli_error("serve: out of memory or threads");
        status = CLI_EXIT_FAILED;
    } else if ((sv.store = cli_open_store(&o.c, LETHE_STORE_SHARED))) {
        if (limiter_start(sv.lim, &sv) != LETHE_OK) {
            cli_text_error("serve: the keys' daily counts: %s", lethe_store_errmsg(sv.store));
            status = CLI_EXIT_FAILED;
        } else {
            open_engine(&sv, &o);
            status = serve_run(&sv, &o, &a, &set);
            limiter_stop(sv.lim); /* after the daemon: no request counts any more */
        }
    } else {
        status = CLI_EXIT_FAILED;
    }
    conn_watch_free(sv.watch);
    lethe_engine_close(sv.engine);
    lethe_store_close(sv.store);
    limiter_free(sv.lim);
    page_shutdown();
    if (sv.access_log && sv.access_log != stderr)
        fclose(sv.access_log);
    if (status == CLI_EXIT_OK)
        fprintf(stderr, "lethe serve: stopped\n");
    return status;
}
