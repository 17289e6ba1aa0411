/*
 * groupcommit.c: the audit log entries of the searches on a shared store
 * (LETHE_STORE_SHARED), committed in groups.
 *
 * A search's entry must be durable before its results are returned, and
 * with synchronous = FULL each commit costs an fsync of the WAL (and one of
 * log.head). One commit per search would make the disk the limit of every
 * search; instead a search queues its entries and waits. The first waiting
 * thread that finds no commit under way becomes the leader: it takes the
 * whole queue, appends every entry in queue order in one transaction on the
 * log's own connection, commits (one fsync), rewrites log.head, and wakes
 * the searches it committed for; the searches that queued meanwhile form
 * the next group, led by one of them. The hash chain stays exact: entries
 * are appended by one leader at a time inside a write transaction, each
 * after the last committed one.
 *
 * A group commits all or nothing: if anything fails (out of memory, the
 * disk, another writer holding the catalog past the busy timeout), the
 * transaction is rolled back and every search in the group returns the
 * failure without its results, so no search is answered unlogged and none
 * is logged half.
 *
 * The WAL is checkpointed (passively) every CHECKPOINT_EVERY commits, but
 * only while no writer holds the store's lock: an erasure lists the pages
 * its commit put in the WAL before it scrubs them (forget/scrub.c), so the
 * WAL must not be folded back and restarted between its commit and scrub.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "requests/requests.h"
#include "store/share.h"
#include "util/util.h"

#define CHECKPOINT_EVERY 64

typedef struct gc_req {
    const char *actor, *purpose;
    const search_entry *e;
    int n;
    int rc;              /* set by the leader with done */
    int done;
    char err[1100];
    struct gc_req *next;
} gc_req;

struct group_commit {
    lethe_store *log;    /* the connection that commits (a view) */
    sqlite3_stmt *begin, *commit, *rollback;
    pthread_mutex_t mu;  /* guards everything below */
    pthread_cond_t cv;
    gc_req *head, *tail; /* the queue */
    int queued;
    int leading;         /* a leader is committing a group */
    int hold;            /* tests: no leader may start */
    int paused;          /* gc_pause: no leader may start */
    share_stats st;
    int since_checkpoint; /* commits since the last one (the leader's alone) */
};

static int prep(group_commit *g, const char *sql, sqlite3_stmt **st)
{
    if (sqlite3_prepare_v3(g->log->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) !=
        SQLITE_OK)
        return store_sqlfail(g->log, "preparing the log's commit");
    return LETHE_OK;
}

int gc_open(lethe_store *log, group_commit **out)
{
    group_commit *g = lethe_calloc(1, sizeof(*g));
    *out = NULL;
    if (!g)
        return store_fail(log, LETHE_ERR_NOMEM, "out of memory");
    g->log = log;
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    int rc;
    if ((rc = prep(g, "BEGIN IMMEDIATE", &g->begin)) || (rc = prep(g, "COMMIT", &g->commit)) ||
        (rc = prep(g, "ROLLBACK", &g->rollback))) {
        gc_close(g);
        return rc;
    }
    *out = g;
    return LETHE_OK;
}

void gc_close(group_commit *g)
{
    if (!g)
        return;
    sqlite3_finalize(g->begin);
    sqlite3_finalize(g->commit);
    sqlite3_finalize(g->rollback);
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    lethe_free(g);
}

/* Step a prepared BEGIN, COMMIT or ROLLBACK once. */
static int step(group_commit *g, sqlite3_stmt *st, const char *what)
{
    int r = sqlite3_step(st);
    sqlite3_reset(st);
    return r == SQLITE_DONE ? LETHE_OK : store_sqlfail(g->log, what);
}

/* Roll back whatever transaction the log's connection has open (a failed
 * group's; SQLite may have rolled it back itself). Prepared beforehand, so
 * that it needs no memory when memory has run out. */
static void roll_back(group_commit *g)
{
    if (!sqlite3_get_autocommit(g->log->db)) {
        sqlite3_step(g->rollback);
        sqlite3_reset(g->rollback);
    }
}

/* Fold the WAL into the catalog now and then, while no writer (of any
 * process, this one's owner included) holds the store's lock. */
static void maybe_checkpoint(group_commit *g)
{
    lethe_store *v = g->log;
    if (++g->since_checkpoint < CHECKPOINT_EVERY || flock(v->lock_fd, LOCK_EX | LOCK_NB) != 0)
        return;
    sqlite3_wal_checkpoint_v2(v->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    flock(v->lock_fd, LOCK_UN);
    g->since_checkpoint = 0;
}

/* One group, in queue order, in one transaction. */
static int commit_group(group_commit *g, gc_req *group)
{
    lethe_store *v = g->log;
    roll_back(g);
    int rc = step(g, g->begin, "starting the log's commit");
    for (gc_req *r = group; r && rc == LETHE_OK; r = r->next)
        for (int i = 0; i < r->n && rc == LETHE_OK; i++) {
            rc = hits_record(v, r->purpose, r->e[i].m, (size_t)r->e[i].results);
            if (rc == LETHE_OK)
                rc = store_log_append(v, "search", r->actor, r->purpose, r->e[i].qh,
                                      r->e[i].results, NULL);
        }
    if (rc == LETHE_OK && (rc = step(g, g->commit, "committing the log")) == LETHE_ERR_IO) {
        char keep[sizeof(v->err)];
        memcpy(keep, v->err, sizeof(keep));
        store_fail(v, rc, "%s; the disk failed while committing, so whether these searches "
                   "were logged is unknown until the store is opened again", keep);
    }
    if (rc != LETHE_OK) {
        roll_back(g);
        return rc;
    }
    /* Committed. A head file that cannot be written now lags until the
     * next commit or open rewrites it (as store_commit). */
    store_log_write_head(v);
    return LETHE_OK;
}

/* Lead: commit the queue as it is now. Called and returns with mu held. */
static void lead(group_commit *g)
{
    gc_req *group = g->head;
    int n = 0;
    g->head = g->tail = NULL;
    g->queued = 0;
    g->leading = 1;
    pthread_mutex_unlock(&g->mu);
    int rc = commit_group(g, group);
    if (rc == LETHE_OK)
        maybe_checkpoint(g);
    pthread_mutex_lock(&g->mu);
    for (gc_req *r = group, *next; r; r = next) {
        next = r->next; /* r belongs to its thread once done is set */
        n += r->n;
        r->rc = rc;
        if (rc != LETHE_OK)
            snprintf(r->err, sizeof(r->err), "logging the search: %s", g->log->err);
        r->done = 1;
    }
    if (rc == LETHE_OK) {
        g->st.commits++;
        g->st.entries += (uint64_t)n;
    } else {
        g->st.failures++;
    }
    g->leading = 0;
    pthread_cond_broadcast(&g->cv);
}

int gc_log(group_commit *g, const char *actor, const char *purpose, const search_entry *e, int n,
           char *err, size_t errlen)
{
    gc_req r = {actor, purpose, e, n, LETHE_OK, 0, "", NULL};
    pthread_mutex_lock(&g->mu);
    if (g->tail)
        g->tail->next = &r;
    else
        g->head = &r;
    g->tail = &r;
    g->queued++;
    while (!r.done) {
        if (g->leading || g->hold || g->paused)
            pthread_cond_wait(&g->cv, &g->mu);
        else
            lead(g);
    }
    pthread_mutex_unlock(&g->mu);
    if (r.rc != LETHE_OK)
        snprintf(err, errlen, "%s", r.err);
    return r.rc;
}

void gc_pause(group_commit *g)
{
    pthread_mutex_lock(&g->mu);
    g->paused++;
    while (g->leading)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

void gc_resume(group_commit *g)
{
    pthread_mutex_lock(&g->mu);
    g->paused--;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

void gc_stats(group_commit *g, share_stats *st)
{
    pthread_mutex_lock(&g->mu);
    st->commits = g->st.commits;
    st->entries = g->st.entries;
    st->failures = g->st.failures;
    pthread_mutex_unlock(&g->mu);
}

void gc_hold(group_commit *g, int hold)
{
    pthread_mutex_lock(&g->mu);
    g->hold = hold;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

int gc_queued(group_commit *g)
{
    pthread_mutex_lock(&g->mu);
    int n = g->queued;
    pthread_mutex_unlock(&g->mu);
    return n;
}
