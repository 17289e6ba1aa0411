/*
 * serve_limit.c: each key's rate limit (a token bucket holding a minute's
 * requests, refilled continuously) and daily quota (requests a UTC day),
 * as `lethe key add --rate --quota` set them. The rate lives in memory (a
 * restart refills the buckets). The day's counts are kept in the catalog
 * (lethe_key_usage_add), so a restart does not renew a quota: read for
 * every key at start, and written by a thread once a second (and at the
 * stop) with what was admitted since; a crash loses at most that second.
 * Each write returns the catalog's count, which holds what other servers
 * on the same store admitted: they share a key's quota, each at most a
 * second behind the others. It never waits for the store: when another
 * request holds it, the counts wait for the next second.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve.h"

typedef struct usage {
    int64_t id;
    double tokens;     /* requests the bucket holds */
    double last;       /* when it was last refilled */
    int64_t day;       /* the UTC day of used */
    uint32_t used;     /* requests that day */
    uint32_t pending;  /* of them, not yet written to the catalog */
    int quota;         /* the key has a daily quota */
    double seen;       /* when it last asked */
} usage;

struct limiter {
    pthread_mutex_t mu;
    usage *u;
    size_t n, cap;
    server *sv;        /* for the flusher */
    pthread_t flusher;
    pthread_cond_t cv;
    int running, stop;
};

limiter *limiter_new(void)
{
    limiter *l = calloc(1, sizeof(*l));
    if (l)
        pthread_mutex_init(&l->mu, NULL);
    return l;
}

void limiter_free(limiter *l)
{
    if (!l)
        return;
    pthread_mutex_destroy(&l->mu);
    free(l->u);
    free(l);
}

/* The usage record of key id (made full when new), or NULL. */
static usage *usage_of(limiter *l, const lethe_key_info *k, double now)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->u[i].id == k->id)
            return &l->u[i];
    if (l->n == l->cap) {
        size_t nc = l->cap ? 2 * l->cap : 16;
        usage *t = realloc(l->u, nc * sizeof(*t));
        if (!t)
            return NULL;
        l->u = t;
        l->cap = nc;
    }
    usage *u = &l->u[l->n++];
    memset(u, 0, sizeof(*u));
    u->id = k->id;
    u->tokens = k->rate_per_minute;
    u->last = now;
    u->day = (int64_t)floor(now / 86400.0);
    return u;
}

int limiter_admit(limiter *l, const lethe_key_info *k, double now, long *retry_after)
{
    int over = 0;
    *retry_after = 0;
    if (!k->rate_per_minute && !k->daily_quota)
        return 0;
    pthread_mutex_lock(&l->mu);
    usage *u = usage_of(l, k, now);
    if (!u) {
        pthread_mutex_unlock(&l->mu);
        *retry_after = 1;
        return 1; /* out of memory: refuse rather than not count */
    }
    u->quota = k->daily_quota != 0;
    u->seen = now;
    int64_t day = (int64_t)floor(now / 86400.0);
    if (day != u->day) {
        u->day = day;
        u->used = 0;
        u->pending = 0;
    }
    if (k->rate_per_minute) {
        double rate = k->rate_per_minute / 60.0;
        u->tokens = fmin((double)k->rate_per_minute, u->tokens + (now - u->last) * rate);
        u->last = now;
    }
    if (k->daily_quota && u->used >= k->daily_quota) {
        over = 2;
        *retry_after = (long)ceil((double)(day + 1) * 86400.0 - now);
    } else if (k->rate_per_minute && u->tokens < 1.0) {
        over = 1;
        *retry_after = (long)ceil((1.0 - u->tokens) * 60.0 / k->rate_per_minute);
    } else {
        u->used++;
        u->pending += k->daily_quota != 0;
        if (k->rate_per_minute)
            u->tokens -= 1.0;
    }
    if (*retry_after < 1 && over)
        *retry_after = 1;
    pthread_mutex_unlock(&l->mu);
    return over;
}

/* ------------------------------------------------ counts in the catalog */

typedef struct pending_count {
    int64_t id, day;
    uint32_t n;
} pending_count;

/* Write what was admitted since the last time; wait: take the store even
 * when another request holds it (at the stop). */
static void limiter_flush(limiter *l, int wait)
{
    pending_count *p = NULL;
    size_t np = 0;
    if (!wait && pthread_mutex_trylock(&l->sv->store_mu) != 0)
        return;
    if (wait)
        server_lock(l->sv);
    pthread_mutex_lock(&l->mu);
    double now = serve_now();
    /* what was admitted here, and (adding 0) the counts of the keys asked
     * for in the last minute: other servers on the store may have used
     * their quota */
    if (l->n && (p = malloc(l->n * sizeof(*p))))
        for (size_t i = 0; i < l->n; i++)
            if (l->u[i].pending || (l->u[i].quota && now - l->u[i].seen < 60)) {
                p[np++] = (pending_count){l->u[i].id, l->u[i].day, l->u[i].pending};
                l->u[i].pending = 0;
            }
    pthread_mutex_unlock(&l->mu);
    for (size_t i = 0; i < np; i++) {
        uint32_t total = 0;
        int rc = lethe_key_usage_add(l->sv->store, p[i].id, p[i].day, p[i].n, &total);
        pthread_mutex_lock(&l->mu);
        for (size_t k = 0; k < l->n; k++) {
            usage *u = &l->u[k];
            if (u->id != p[i].id || u->day != p[i].day)
                continue;
            if (rc != LETHE_OK) /* kept for the next time (the store busy, the disk full) */
                u->pending += p[i].n;
            else if (total + u->pending > u->used)
                /* the catalog's count holds what other servers on this
                 * store admitted: a key's quota is shared, a second
                 * behind at most */
                u->used = total + u->pending;
        }
        pthread_mutex_unlock(&l->mu);
    }
    server_unlock(l->sv);
    free(p);
}

static void *flusher(void *arg)
{
    limiter *l = arg;
    pthread_mutex_lock(&l->mu);
    while (!l->stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 1;
        pthread_cond_timedwait(&l->cv, &l->mu, &until);
        if (l->stop)
            break;
        pthread_mutex_unlock(&l->mu);
        limiter_flush(l, 0);
        pthread_mutex_lock(&l->mu);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

int limiter_start(limiter *l, server *sv)
{
    lethe_key_info *keys = NULL;
    size_t n = 0;
    double now = serve_now();
    int64_t day = (int64_t)floor(now / 86400.0);
    l->sv = sv;
    int rc = lethe_key_list(sv->store, &keys, &n);
    for (size_t i = 0; rc == LETHE_OK && i < n; i++) {
        uint32_t used = 0;
        if (!keys[i].daily_quota || keys[i].revoked_at[0])
            continue;
        if ((rc = lethe_key_usage_add(sv->store, keys[i].id, day, 0, &used)) != LETHE_OK)
            break;
        pthread_mutex_lock(&l->mu);
        usage *u = usage_of(l, &keys[i], now);
        if (u)
            u->used = used;
        pthread_mutex_unlock(&l->mu);
        if (!u)
            rc = LETHE_ERR_NOMEM;
    }
    lethe_keys_free(keys);
    if (rc != LETHE_OK)
        return rc;
    pthread_cond_init(&l->cv, NULL);
    if (pthread_create(&l->flusher, NULL, flusher, l) != 0) {
        pthread_cond_destroy(&l->cv);
        return LETHE_ERR_NOMEM;
    }
    l->running = 1;
    return LETHE_OK;
}

void limiter_stop(limiter *l)
{
    if (!l || !l->running)
        return;
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->flusher, NULL);
    pthread_cond_destroy(&l->cv);
    l->running = 0;
    limiter_flush(l, 1);
}
