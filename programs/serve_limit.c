/*
 * serve_limit.c: each key's rate limit (a token bucket holding a minute's
 * requests, refilled continuously) and daily quota (requests a UTC day),
 * as `lethe key add --rate --quota` set them. Counts live in memory: a
 * restart of the server starts them afresh.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "serve.h"

typedef struct usage {
    int64_t id;
    double tokens;     /* requests the bucket holds */
    double last;       /* when it was last refilled */
    int64_t day;       /* the UTC day of used */
    uint32_t used;     /* requests that day */
} usage;

struct limiter {
    pthread_mutex_t mu;
    usage *u;
    size_t n, cap;
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
    int64_t day = (int64_t)floor(now / 86400.0);
    if (day != u->day) {
        u->day = day;
        u->used = 0;
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
        if (k->rate_per_minute)
            u->tokens -= 1.0;
    }
    if (*retry_after < 1 && over)
        *retry_after = 1;
    pthread_mutex_unlock(&l->mu);
    return over;
}
