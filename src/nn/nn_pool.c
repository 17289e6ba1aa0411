/*
 * nn_pool.c: the persistent thread pool layers use to split one operation
 * across cores. nn_pool_run is called once per layer, so it must cost
 * microseconds: workers spin briefly on the job word before they sleep on a
 * condition variable, and the caller works on the job too.
 *
 * Tasks are handed out through one 64-bit atomic, (generation << 32) | next
 * index: a worker claims index i of job g with a compare-and-swap, so a
 * worker that wakes late can never run a task of a job it did not read.
 * The caller returns once `done` reaches the job's task count, and closes
 * the old generation before it writes the next job's fields.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <unistd.h>

#include "nn/nn_int.h"
#include "util/util.h"

/*
 * Waiting (a worker for a job, the caller for the last tasks): first a few
 * microseconds of pause instructions, then yields of the core, then sleep
 * on a condition variable. The yields matter when other programs keep the
 * cores busy and two of our threads share one: a spinning waiter would
 * hold the core the thread it waits for needs.
 */
#define NN_POOL_SPIN_PAUSE 200
#define NN_POOL_SPIN_YIELD 64
#define NN_POOL_MAX_THREADS 256
/* A next-index no job reaches: the job of that generation is closed. */
#define NN_POOL_CLOSED UINT64_C(0xffffffff)

struct nn_pool {
    int threads;             /* workers in all, counting the caller */
    pthread_t *tids;         /* threads - 1 started threads */
    pthread_mutex_t run_mu;  /* serialises nn_pool_run callers */
    pthread_mutex_t mu;      /* guards sleeping and waking */
    pthread_cond_t work_cv;  /* workers wait here for a new job */
    pthread_cond_t done_cv;  /* the caller waits here for the last task */
    _Atomic uint64_t state;  /* (generation << 32) | next task index */
    atomic_int done;         /* tasks of the current job finished */
    atomic_int sleepers;     /* workers asleep or about to be (on work_cv) */
    atomic_int caller_asleep;/* the caller waits on done_cv */
    atomic_int stop;         /* set by nn_pool_destroy */
    /* The current job; written by the caller before it publishes state. */
    _Atomic(nn_task_fn) fn;
    _Atomic(void *) arg;
    atomic_int n;
};

typedef struct worker_start {
    nn_pool *pool;
    int index;
} worker_start;

/* One step of waiting; returns 0 once it is time to sleep instead. */
static inline int wait_step(int i)
{
    if (i < NN_POOL_SPIN_PAUSE) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
        return 1;
    }
    if (i < NN_POOL_SPIN_PAUSE + NN_POOL_SPIN_YIELD) {
        sched_yield();
        return 1;
    }
    return 0;
}

/* Claim and run tasks of generation gen until none are left. */
static void run_tasks(nn_pool *p, uint32_t gen, nn_task_fn fn, void *arg, int n, int worker)
{
    uint64_t s = atomic_load(&p->state);
    for (;;) {
        if ((uint32_t)(s >> 32) != gen || (uint32_t)s >= (uint32_t)n)
            return;
        if (!atomic_compare_exchange_weak(&p->state, &s, s + 1))
            continue; /* s was reloaded */
        fn(arg, (int)(uint32_t)s, worker);
        if (atomic_fetch_add(&p->done, 1) + 1 == n &&
            atomic_load(&p->caller_asleep)) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done_cv);
            pthread_mutex_unlock(&p->mu);
        }
        s = atomic_load(&p->state);
    }
}

static void *worker_main(void *arg)
{
    worker_start *ws = arg;
    nn_pool *p = ws->pool;
    int index = ws->index;
    uint32_t seen = 0; /* generation of the last job looked at */

    lethe_free(ws);
    for (;;) {
        uint64_t s = atomic_load(&p->state);
        for (int i = 0; (uint32_t)(s >> 32) == seen &&
                        !atomic_load_explicit(&p->stop, memory_order_relaxed) && wait_step(i);
             i++)
            s = atomic_load_explicit(&p->state, memory_order_acquire);
        if ((uint32_t)(s >> 32) == seen) {
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            while ((uint32_t)(atomic_load(&p->state) >> 32) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->work_cv, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop))
            break;
        s = atomic_load(&p->state);
        seen = (uint32_t)(s >> 32);
        /* Read the job, then claim under generation `seen`. If the caller has
         * moved on meanwhile, what was read may belong to a later job; but
         * reading it (acquire) means the caller's closing of `seen` happened
         * before, so no claim succeeds and it goes unused. */
        nn_task_fn fn = atomic_load_explicit(&p->fn, memory_order_acquire);
        void *job_arg = atomic_load_explicit(&p->arg, memory_order_acquire);
        int n = atomic_load_explicit(&p->n, memory_order_acquire);
        run_tasks(p, seen, fn, job_arg, n, index);
    }
    return NULL;
}

static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        return 1;
    return n > NN_POOL_MAX_THREADS ? NN_POOL_MAX_THREADS : (int)n;
}

static void stop_workers(nn_pool *p, int started)
{
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < started; i++)
        pthread_join(p->tids[i], NULL);
}

int nn_pool_create(nn_pool **out, int threads)
{
    nn_pool *p;
    int started = 0;

    *out = NULL;
    if (threads <= 0)
        threads = online_cpus();
    if (threads > NN_POOL_MAX_THREADS)
        threads = NN_POOL_MAX_THREADS;
    p = lethe_calloc(1, sizeof(*p));
    if (!p)
        return -1;
    p->threads = threads;
    p->tids = lethe_calloc((size_t)threads, sizeof(pthread_t));
    if (!p->tids)
        goto out_free_pool;
    if (pthread_mutex_init(&p->run_mu, NULL) != 0)
        goto out_free_tids;
    if (pthread_mutex_init(&p->mu, NULL) != 0)
        goto out_destroy_run_mu;
    if (pthread_cond_init(&p->work_cv, NULL) != 0)
        goto out_destroy_mu;
    if (pthread_cond_init(&p->done_cv, NULL) != 0)
        goto out_destroy_work_cv;
    atomic_init(&p->state, 0);
    atomic_init(&p->done, 0);
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->caller_asleep, 0);
    atomic_init(&p->stop, 0);
    atomic_init(&p->fn, NULL);
    atomic_init(&p->arg, NULL);
    atomic_init(&p->n, 0);
    for (started = 0; started < threads - 1; started++) {
        worker_start *ws = lethe_malloc(sizeof(*ws));
        if (!ws)
            goto out_stop;
        ws->pool = p;
        ws->index = started + 1;
        if (pthread_create(&p->tids[started], NULL, worker_main, ws) != 0) {
            lethe_free(ws);
            goto out_stop;
        }
    }
    *out = p;
    return 0;

out_stop:
    stop_workers(p, started);
    pthread_cond_destroy(&p->done_cv);
out_destroy_work_cv:
    pthread_cond_destroy(&p->work_cv);
out_destroy_mu:
    pthread_mutex_destroy(&p->mu);
out_destroy_run_mu:
    pthread_mutex_destroy(&p->run_mu);
out_free_tids:
    lethe_free(p->tids);
out_free_pool:
    lethe_free(p);
    return -1;
}

void nn_pool_destroy(nn_pool *pool)
{
    if (!pool)
        return;
    pthread_mutex_lock(&pool->run_mu); /* let a running job finish */
    stop_workers(pool, pool->threads - 1);
    pthread_mutex_unlock(&pool->run_mu);
    pthread_cond_destroy(&pool->done_cv);
    pthread_cond_destroy(&pool->work_cv);
    pthread_mutex_destroy(&pool->mu);
    pthread_mutex_destroy(&pool->run_mu);
    lethe_free(pool->tids);
    lethe_free(pool);
}

int nn_pool_size(const nn_pool *pool) { return pool ? pool->threads : 1; }

void nn_pool_run(nn_pool *pool, int n, nn_task_fn fn, void *arg)
{
    if (n <= 0)
        return;
    if (!pool || pool->threads == 1 || n == 1) {
        for (int i = 0; i < n; i++)
            fn(arg, i, 0);
        return;
    }
    pthread_mutex_lock(&pool->run_mu);
    /* Close the last job first, so no late claim under its generation can
     * pair it with the fields written next. */
    uint64_t last = atomic_load(&pool->state) | NN_POOL_CLOSED;
    atomic_store(&pool->state, last);
    atomic_store_explicit(&pool->fn, fn, memory_order_release);
    atomic_store_explicit(&pool->arg, arg, memory_order_release);
    atomic_store_explicit(&pool->n, n, memory_order_release);
    atomic_store_explicit(&pool->done, 0, memory_order_relaxed);
    uint32_t gen = (uint32_t)(last >> 32) + 1;
    if (gen == 0)
        gen = 1; /* workers start having seen generation 0 */
    atomic_store(&pool->state, (uint64_t)gen << 32); /* publishes the job */
    if (atomic_load(&pool->sleepers) > 0) {
        pthread_mutex_lock(&pool->mu);
        pthread_cond_broadcast(&pool->work_cv);
        pthread_mutex_unlock(&pool->mu);
    }

    run_tasks(pool, gen, fn, arg, n, 0);

    for (int i = 0; atomic_load(&pool->done) != n && wait_step(i); i++)
        ;
    if (atomic_load(&pool->done) != n) {
        pthread_mutex_lock(&pool->mu);
        atomic_store(&pool->caller_asleep, 1);
        while (atomic_load(&pool->done) != n)
            pthread_cond_wait(&pool->done_cv, &pool->mu);
        atomic_store(&pool->caller_asleep, 0);
        pthread_mutex_unlock(&pool->mu);
    }
    pthread_mutex_unlock(&pool->run_mu);
}
