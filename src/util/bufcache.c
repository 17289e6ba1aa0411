/*
 * bufcache.c: reusable working buffers (see bufcache.h).
 */
#include "bufcache.h"

#include "util.h"

void lethe_bufcache_init(lethe_bufcache *c)
{
    pthread_mutex_init(&c->lock, NULL);
    c->size = 0;
    c->nfree = 0;
}

void *lethe_bufcache_get(lethe_bufcache *c, size_t need, size_t *size)
{
    void *buf = NULL, *stale[LETHE_BUFCACHE_SLOTS];
    int nstale = 0;

    pthread_mutex_lock(&c->lock);
    if (need > c->size) {
        /* larger buffers from now on; the idle small ones go */
        for (int i = 0; i < c->nfree; i++)
            stale[nstale++] = c->free[i];
        c->nfree = 0;
        c->size = need;
    }
    if (c->nfree > 0)
        buf = c->free[--c->nfree];
    *size = c->size;
    pthread_mutex_unlock(&c->lock);
    for (int i = 0; i < nstale; i++)
        lethe_free_aligned(stale[i]);
    if (!buf)
        buf = lethe_malloc_aligned(*size);
    return buf;
}

void lethe_bufcache_put(lethe_bufcache *c, void *buf, size_t size)
{
    if (!buf)
        return;
    pthread_mutex_lock(&c->lock);
    if (size == c->size && c->nfree < LETHE_BUFCACHE_SLOTS) {
        c->free[c->nfree++] = buf;
        buf = NULL;
    }
    pthread_mutex_unlock(&c->lock);
    lethe_free_aligned(buf);
}

void lethe_bufcache_destroy(lethe_bufcache *c)
{
    for (int i = 0; i < c->nfree; i++)
        lethe_free_aligned(c->free[i]);
    c->nfree = 0;
    pthread_mutex_destroy(&c->lock);
}
