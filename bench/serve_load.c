/*
 * serve_load.c: the load test of `lethe serve` (bench/serve_load.sh; issue
 * 10, item 5): many concurrent searchers over HTTP on loopback against a
 * large store while faces are forgotten every few seconds, each answer
 * checked against the times the forgets returned; and the same searches
 * through the CLI, one process per query, for comparison.
 *
 *   serve_load gen --n N --out DIR
 *       DIR/faces.f32 (N x 128 float32) and DIR/faces.csv (its sidecar:
 *       uploader u0000000 ... one photo each, consent explicit)
 *   serve_load http --port P --search-key K --forget-key K --data DIR
 *                   [--clients 16] [--seconds 60] [--forget-every 3]
 *       searchers on keep-alive connections for the time given; a forget of
 *       one target face (uploader u0000000, u0000001, ... in turn) every
 *       --forget-every seconds. Half the queries ask for a target face
 *       (its exact descriptor), half for any face. A search that started
 *       after the forget of a face it returns had returned is a violation.
 *   serve_load cli --lethe PATH --store DIR --data DIR [--clients 16]
 *                  [--seconds 20] [--skip T]
 *       the same searches as `lethe search --descriptor` processes, --clients
 *       at a time (the first T faces, forgotten by the http run, are not asked
 *       for).
 * Each run prints one JSON object: searches, errors, violations (http),
 * searches per second, p50 and p99 latency in ms.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define DIM 128
#define TARGETS 64        /* faces that may be forgotten: u0000000..u0000063 */
#define MAX_CLIENTS 64

static struct {
    long n;
    int port, clients, skip;
    double seconds, forget_every;
    const char *search_key, *forget_key, *data, *lethe, *store;
} opt = {100000, 0, 16, 0, 60, 3, NULL, NULL, NULL, NULL, NULL};

static float *faces;      /* the descriptors, as ingested */
static long nfaces;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ------------------------------------------------------------- the data */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static double gauss(void)
{
    double u[2];
    for (int i = 0; i < 2; i++) {
        rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
        u[i] = ((double)(rng_state >> 11) + 0.5) / 9007199254740992.0;
    }
    return sqrt(-2 * log(u[0])) * cos(6.283185307179586 * u[1]);
}

/* N descriptors of people around 2,000 centres, and their sidecar. */
static int gen(long n, const char *dir)
{
    char path[4096];
    enum { CENTRES = 2000 };
    static float c[CENTRES][DIM];
    for (int i = 0; i < CENTRES; i++)
        for (int k = 0; k < DIM; k++)
            c[i][k] = (float)(gauss() * 0.09);
    snprintf(path, sizeof(path), "%s/faces.f32", dir);
    FILE *f = fopen(path, "wb");
    snprintf(path, sizeof(path), "%s/faces.csv", dir);
    FILE *sc = fopen(path, "w");
    if (!f || !sc)
        return perror(path), 1;
    fprintf(sc, "uploader,source,license,jurisdiction,consent,url,photo_id,collected_at\n");
    for (long i = 0; i < n; i++) {
        float v[DIM];
        for (int k = 0; k < DIM; k++)
            v[k] = c[i % CENTRES][k] + (float)(gauss() * 0.025);
        fwrite(v, sizeof(v), 1, f);
        fprintf(sc, "u%07ld,synthetic,,US,explicit,,,\n", i);
    }
    if (fclose(f) || fclose(sc))
        return perror("writing"), 1;
    printf("{\"faces\":%ld}\n", n);
    return 0;
}

static int load_faces(void)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/faces.f32", opt.data);
    FILE *f = fopen(path, "rb");
    if (!f || fseek(f, 0, SEEK_END) != 0)
        return perror(path), -1;
    nfaces = ftell(f) / (long)(DIM * sizeof(float));
    rewind(f);
    faces = malloc((size_t)nfaces * DIM * sizeof(float));
    if (!faces || fread(faces, DIM * sizeof(float), (size_t)nfaces, f) != (size_t)nfaces)
        return fprintf(stderr, "%s: cannot read\n", path), -1;
    fclose(f);
    return nfaces > TARGETS ? 0 : -1;
}

/* The face a searcher asks for: a target half the time. */
static long pick(uint64_t *s, int targets_ok)
{
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    if (targets_ok && (*s >> 60) < 8)
        return (long)((*s >> 20) % TARGETS);
    return TARGETS + (long)((*s >> 20) % (uint64_t)(nfaces - TARGETS));
}

static int put_descriptor(char *out, size_t n, long face)
{
    size_t w = 0;
    for (int k = 0; k < DIM && w < n; k++)
        w += (size_t)snprintf(out + w, n - w, "%s%.9g", k ? "," : "[", faces[face * DIM + k]);
    w += (size_t)snprintf(out + w, n > w ? n - w : 0, "]");
    return w < n ? (int)w : -1;
}

/* ----------------------------------------------------------------- HTTP */

typedef struct conn {
    int fd;
    char *buf;
    size_t cap;
} conn;

static int conn_open(conn *c)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&a, sizeof(a)) != 0)
        return -1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return 0;
}

/* Send one POST and read its answer: the status, *body (in c->buf). On a
 * broken connection, reconnect once. */
static int post(conn *c, const char *path, const char *key, const char *body, char **out)
{
    char head[512];
    size_t blen = strlen(body), have = 0;
    int hl = snprintf(head, sizeof(head), "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: %s\r\n"
                      "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n", path,
                      key, blen);
    if ((c->fd < 0 && conn_open(c) < 0) || write(c->fd, head, (size_t)hl) != hl ||
        write(c->fd, body, blen) != (ssize_t)blen)
        return -1;
    for (;;) {
        if (have + 4096 >= c->cap && !(c->buf = realloc(c->buf, c->cap = 2 * c->cap + 65536)))
            return -1;
        ssize_t r = read(c->fd, c->buf + have, c->cap - have - 1);
        if (r <= 0)
            return -1;
        have += (size_t)r;
        c->buf[have] = 0;
        char *end = strstr(c->buf, "\r\n\r\n"), *cl;
        if (!end)
            continue;
        if (!(cl = strcasestr(c->buf, "\r\nContent-Length:")) || cl > end)
            return -1;
        size_t want = (size_t)(end + 4 - c->buf) + strtoul(cl + 17, NULL, 10);
        if (have < want)
            continue;
        *out = end + 4;
        int status = atoi(c->buf + 9);
        if (strstr(c->buf, "Connection: close") && strstr(c->buf, "Connection: close") < end) {
            close(c->fd);
            c->fd = -1;
        }
        return status;
    }
}

/* ------------------------------------------------------------ the run */

static _Atomic double forgot_at[TARGETS];   /* monotonic time its forget returned; 0: not */
static _Atomic double forgetting_at[TARGETS]; /* when its forget was sent */
static atomic_int stop;

typedef struct worker {
    int id;
    long searches, errors, violations, missed;
    double *lat;
    size_t nlat, caplat;
} worker;

/* Check one answer: no face whose forget had returned before the search
 * started; the face asked for (distance 0) unless its forget had begun. */
static void check_answer(worker *w, const char *body, long want, double t0, double t1)
{
    int found = 0;
    for (const char *p = body; (p = strstr(p, "{\"distance\":")); p++) {
        double d = strtod(p + 12, NULL);
        const char *u = strstr(p, "\"uploader\":\"u");
        if (!u)
            break;
        long face = strtol(u + 13, NULL, 10);
        double gone = face < TARGETS ? forgot_at[face] : 0;
        if (gone > 0 && gone < t0) {
            w->violations++;
            fprintf(stderr, "violation: face %ld returned by a search started %.3f s after its "
                    "forget returned\n", face, t0 - gone);
        }
        found |= face == want && d == 0;
    }
    double began = want < TARGETS ? forgetting_at[want] : 0;
    if (!found && (began == 0 || began > t1))
        w->missed++;
}

static void *searcher(void *arg)
{
    worker *w = arg;
    conn c = {-1, NULL, 0};
    uint64_t s = 0x1234567ull * (uint64_t)(w->id + 1);
    char body[4096], desc[3000], *ans;
    while (!atomic_load(&stop)) {
        long want = pick(&s, 1);
        put_descriptor(desc, sizeof(desc), want);
        snprintf(body, sizeof(body), "{\"purpose\":\"load test\",\"top_k\":5,\"descriptor\":%s}",
                 desc);
        double t0 = now();
        int st = post(&c, "/v1/search", opt.search_key, body, &ans);
        double t1 = now();
        w->searches++;
        if (st != 200) {
            w->errors++;
            if (w->errors <= 3)
                fprintf(stderr, "search: status %d: %.200s\n", st, st > 0 ? ans : "");
            if (c.fd >= 0)
                close(c.fd);
            c.fd = -1;
            continue;
        }
        check_answer(w, ans, want, t0, t1);
        if (w->nlat == w->caplat && !(w->lat = realloc(w->lat, (w->caplat = 2 * w->caplat + 4096) *
                                                                   sizeof(double))))
            abort();
        w->lat[w->nlat++] = t1 - t0;
    }
    if (c.fd >= 0)
        close(c.fd);
    free(c.buf);
    return NULL;
}

/* A forget every opt.forget_every seconds, of u0000000, u0000001, ... */
static int forgets(double end, long *done, long *errors)
{
    conn c = {-1, NULL, 0};
    char body[128], *ans;
    for (int k = 0; k < TARGETS && now() + opt.forget_every < end; k++) {
        usleep((useconds_t)(opt.forget_every * 1e6));
        snprintf(body, sizeof(body), "{\"uploader\":\"u%07d\"}", k);
        forgetting_at[k] = now();
        int st = post(&c, "/v1/forget", opt.forget_key, body, &ans);
        if (st == 200 && strstr(ans, "\"erased\":true") && strstr(ans, "\"faces\":1")) {
            forgot_at[k] = now();
            (*done)++;
        } else {
            (*errors)++;
            fprintf(stderr, "forget u%07d: status %d: %.300s\n", k, st, st > 0 ? ans : "");
        }
    }
    if (c.fd >= 0)
        close(c.fd);
    free(c.buf);
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Sum the workers and print the JSON line. */
static void report(const char *kind, worker *w, int n, int clients, double secs, long forgot,
                   long ferr)
{
    long s = 0, e = 0, v = 0, m = 0;
    size_t nl = 0;
    for (int i = 0; i < n; i++)
        s += w[i].searches, e += w[i].errors, v += w[i].violations, m += w[i].missed,
            nl += w[i].nlat;
    double *all = malloc((nl ? nl : 1) * sizeof(double));
    for (int i = 0, at = 0; i < n; at += (int)w[i].nlat, i++)
        memcpy(all + at, w[i].lat, w[i].nlat * sizeof(double));
    qsort(all, nl, sizeof(double), cmp_double);
    double p50 = nl ? all[nl / 2] * 1e3 : 0, p99 = nl ? all[(size_t)((double)nl * 0.99)] * 1e3 : 0;
    printf("{\"kind\":\"%s\",\"clients\":%d,\"seconds\":%.1f,\"searches\":%ld,\"errors\":%ld,"
           "\"violations\":%ld,\"missed\":%ld,\"forgets\":%ld,\"forget_errors\":%ld,"
           "\"searches_per_second\":%.1f,\"p50_ms\":%.2f,\"p99_ms\":%.2f}\n",
           kind, clients, secs, s, e, v, m, forgot, ferr, (double)(s - e) / secs, p50, p99);
    free(all);
}

static int run_http(void)
{
    static worker w[MAX_CLIENTS];
    pthread_t t[MAX_CLIENTS];
    long forgot = 0, ferr = 0;
    double t0 = now(), end = t0 + opt.seconds;
    for (int i = 0; i < opt.clients; i++) {
        w[i].id = i;
        pthread_create(&t[i], NULL, searcher, &w[i]);
    }
    forgets(end, &forgot, &ferr);
    while (now() < end)
        usleep(10000);
    atomic_store(&stop, 1);
    for (int i = 0; i < opt.clients; i++)
        pthread_join(t[i], NULL);
    report("http", w, opt.clients, opt.clients, now() - t0, forgot, ferr);
    long bad = ferr;
    for (int i = 0; i < opt.clients; i++)
        bad += w[i].errors + w[i].violations;
    return bad ? 1 : 0;
}

/* ----------------------------------------------------------- the CLI */

/* One `lethe search` process; its status (0: answered). */
static int cli_search(long face)
{
    static char desc[3000];
    put_descriptor(desc, sizeof(desc), face);
    char *argv[] = {(char *)opt.lethe, "search", "--store", (char *)opt.store, "--purpose",
                    "load test", "--top", "5", "--json", "--descriptor", desc, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    int rc = posix_spawn(&pid, opt.lethe, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    return rc ? -1 : pid;
}

static int run_cli(void)
{
    static worker w[1];
    pid_t pids[MAX_CLIENTS];
    double started[MAX_CLIENTS];
    uint64_t s = 0xabcdefull;
    int running = 0;
    double t0 = now(), end = t0 + opt.seconds;
    for (;;) {
        while (running < opt.clients && now() < end) {
            long face = pick(&s, 0);
            if (face < opt.skip)
                continue;
            int pid = cli_search(face);
            if (pid < 0) {
                w->errors++;
                continue;
            }
            pids[running] = pid, started[running] = now(), running++;
        }
        if (!running)
            break;
        int status;
        pid_t pid = wait(&status);
        for (int i = 0; i < running; i++)
            if (pids[i] == pid) {
                double lat = now() - started[i];
                w->searches++;
                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                    w->errors++;
                if (w->nlat == w->caplat &&
                    !(w->lat = realloc(w->lat, (w->caplat = 2 * w->caplat + 4096) * sizeof(double))))
                    abort();
                w->lat[w->nlat++] = lat;
                pids[i] = pids[running - 1], started[i] = started[running - 1], running--;
                break;
            }
    }
    report("cli", w, 1, opt.clients, now() - t0, 0, 0);
    return w->errors ? 1 : 0;
}

static int parse(int argc, char **argv)
{
    for (int i = 2; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (!strcmp(a, "--port")) opt.port = atoi(v);
        else if (!strcmp(a, "--clients")) opt.clients = atoi(v);
        else if (!strcmp(a, "--seconds")) opt.seconds = atof(v);
        else if (!strcmp(a, "--forget-every")) opt.forget_every = atof(v);
        else if (!strcmp(a, "--search-key")) opt.search_key = v;
        else if (!strcmp(a, "--forget-key")) opt.forget_key = v;
        else if (!strcmp(a, "--data") || !strcmp(a, "--out")) opt.data = v;
        else if (!strcmp(a, "--lethe")) opt.lethe = v;
        else if (!strcmp(a, "--store")) opt.store = v;
        else if (!strcmp(a, "--skip")) opt.skip = atoi(v);
        else if (!strcmp(a, "--n")) opt.n = atol(v);
        else return fprintf(stderr, "serve_load: unknown option %s\n", a), -1;
    }
    if (opt.clients < 1 || opt.clients > MAX_CLIENTS || !opt.data)
        return fprintf(stderr, "serve_load: --data DIR and 1..%d clients\n", MAX_CLIENTS), -1;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || parse(argc, argv) < 0) {
        fprintf(stderr, "usage: serve_load gen|http|cli OPTIONS (see bench/serve_load.c)\n");
        return 2;
    }
    if (!strcmp(argv[1], "gen"))
        return gen(opt.n, opt.data);
    if (load_faces() < 0)
        return 2;
    if (!strcmp(argv[1], "http") && opt.port && opt.search_key && opt.forget_key)
        return run_http();
    if (!strcmp(argv[1], "cli") && opt.lethe && opt.store)
        return run_cli();
    fprintf(stderr, "serve_load: missing options for %s\n", argv[1]);
    return 2;
}
