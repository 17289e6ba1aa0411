/*
 * batch.c: many photos at once (lethe_engine_analyze_batch): a pool of
 * threads analyses them, one photo per thread, and the calling thread hands
 * the results to the caller's callback in input order, each as soon as it
 * and all before it are ready.
 *
 * Results wait in a ring of `window` slots: a worker may start input i only
 * once input i - window has been delivered, so memory stays bounded however
 * long the batch and however slow the callback.
 */
#include <pthread.h>
#include <string.h>

#include "util/util.h"

/* Results that may wait for the callback, per analysing thread. */
#define BATCH_SLOTS_PER_THREAD 2

typedef struct slot {
    int status;
    char msg[512];
    lethe_analysis a;
    int done;             /* analysed, waiting for delivery */
} slot;

typedef struct batch {
    lethe_engine *e;
    const lethe_batch_input *in;
    size_t n;
    const lethe_batch_options *opt;
    unsigned flags;
    slot *slots;
    size_t window;
    /* guarded by lock */
    pthread_mutex_t lock;
    pthread_cond_t ready;  /* a slot was filled */
    pthread_cond_t room;   /* a slot was freed, or stop */
    size_t next;           /* next input to start */
    size_t delivered;      /* inputs handed to the callback */
    int stop;
} batch;

void lethe_batch_options_init(lethe_batch_options *opt)
{
    memset(opt, 0, sizeof(*opt));
    opt->flags = LETHE_WANT_DESCRIPTOR;
}

static void analyse_input(batch *b, size_t i, slot *s)
{
    const lethe_batch_input *in = &b->in[i];
    if (in->path)
        s->status = lethe_engine_analyze_file(b->e, in->path, b->opt->image_opt, b->flags, &s->a,
                                              s->msg, sizeof(s->msg));
    else
        s->status = lethe_engine_analyze_bytes(b->e, in->data, in->len, b->opt->image_opt,
                                               b->flags, &s->a, s->msg, sizeof(s->msg));
}

static void *worker(void *arg)
{
    batch *b = arg;
    pthread_mutex_lock(&b->lock);
    for (;;) {
        while (!b->stop && b->next < b->n && b->next >= b->delivered + b->window)
            pthread_cond_wait(&b->room, &b->lock);
        if (b->stop || b->next >= b->n)
            break;
        size_t i = b->next++;
        slot *s = &b->slots[i % b->window];
        pthread_mutex_unlock(&b->lock);
        analyse_input(b, i, s);
        pthread_mutex_lock(&b->lock);
        s->done = 1;
        pthread_cond_broadcast(&b->ready);
    }
    pthread_mutex_unlock(&b->lock);
    return NULL;
}

/* Hand input i's result to the callback; its return value. */
static int deliver(batch *b, size_t i, slot *s, lethe_batch_stats *st)
{
    lethe_batch_result r;
    st->delivered++;
    if (s->status != LETHE_OK)
        st->failed++;
    memset(&r, 0, sizeof(r));
    r.index = i;
    r.path = b->in[i].path;
    r.status = s->status;
    r.message = s->status != LETHE_OK ? s->msg : "";
    r.analysis = s->a;
    r.progress = *st;
    int stop = b->opt->on_result(b->opt->ctx, &r);
    lethe_faces_free(r.analysis.faces); /* NULL when the callback took them */
    memset(&s->a, 0, sizeof(s->a));
    return stop;
}

/* Deliver every result in order, analysing on this thread too when no
 * worker could be started. */
static void deliver_all(batch *b, int workers, lethe_batch_stats *st)
{
    for (size_t i = 0; i < b->n; i++) {
        slot *s = &b->slots[i % b->window];
        if (!workers) {
            analyse_input(b, i, s);
        } else {
            pthread_mutex_lock(&b->lock);
            while (!s->done)
                pthread_cond_wait(&b->ready, &b->lock);
            pthread_mutex_unlock(&b->lock);
        }
        int stop = deliver(b, i, s, st);
        pthread_mutex_lock(&b->lock);
        s->done = 0;
        b->delivered = i + 1;
        if (stop)
            b->stop = 1;
        pthread_cond_broadcast(&b->room);
        pthread_mutex_unlock(&b->lock);
        if (stop) {
            st->cancelled = 1;
            return;
        }
    }
}

int lethe_engine_analyze_batch(lethe_engine *engine, const lethe_batch_input *inputs, size_t n,
                               const lethe_batch_options *opt, lethe_batch_stats *stats)
{
    lethe_batch_stats st;
    pthread_t *threads = NULL;
    batch b;
    int nthreads, started = 0;

    memset(&st, 0, sizeof(st));
    st.total = n;
    if (stats)
        *stats = st;
    if (!engine || !opt || !opt->on_result || (!inputs && n) || opt->threads < 0)
        return LETHE_ERR_ARG;
    if (n == 0)
        return LETHE_OK;
    memset(&b, 0, sizeof(b));
    b.e = engine;
    b.in = inputs;
    b.n = n;
    b.opt = opt;
    b.flags = opt->flags;
    nthreads = opt->threads > 0 ? opt->threads : lethe_engine_threads(engine);
    if ((size_t)nthreads > n)
        nthreads = (int)n;
    /* Several photos at once: one per thread. One at a time: its layers
     * use the engine's threads, on this thread (no worker needed). */
    if (nthreads > 1)
        b.flags |= LETHE_SINGLE_THREAD;
    else
        nthreads = 0;
    b.window = nthreads > 0 ? (size_t)nthreads * BATCH_SLOTS_PER_THREAD : 1;
    b.slots = lethe_calloc(b.window, sizeof(slot));
    if (nthreads > 0)
        threads = lethe_calloc((size_t)nthreads, sizeof(pthread_t));
    if (!b.slots || (nthreads > 0 && !threads)) {
        lethe_free(b.slots);
        lethe_free(threads);
        return LETHE_ERR_NOMEM;
    }
    pthread_mutex_init(&b.lock, NULL);
    pthread_cond_init(&b.ready, NULL);
    pthread_cond_init(&b.room, NULL);
    for (int t = 0; t < nthreads; t++)
        if (pthread_create(&threads[started], NULL, worker, &b) == 0)
            started++;
    if (!started) /* this thread alone: let the layers use the engine's threads */
        b.flags = opt->flags;
    deliver_all(&b, started, &st);
    for (int t = 0; t < started; t++)
        pthread_join(threads[t], NULL);
    /* results finished after the callback stopped the batch */
    for (size_t k = 0; k < b.window; k++)
        lethe_faces_free(b.slots[k].a.faces);
    pthread_cond_destroy(&b.room);
    pthread_cond_destroy(&b.ready);
    pthread_mutex_destroy(&b.lock);
    lethe_free(threads);
    lethe_free(b.slots);
    if (stats)
        *stats = st;
    return LETHE_OK;
}
