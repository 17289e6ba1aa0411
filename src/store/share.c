/*
 * share.c: a store handle shared by threads (LETHE_STORE_SHARED; see
 * share.h for how it is built and lethe.h for what a caller may do).
 *
 * Why views and not a lock around one connection: a search spends its
 * time scanning the index, reading rows and waiting for its log entry to
 * be durable; with one connection each of those waits for every other
 * search. A view gives each thread its own connection (SQLite connections
 * are not shared between threads here), its own index handle (whose
 * shared file lock is its own, taken and dropped by each search, so the
 * rows it sees are re-read at each search) and its own message buffer, and
 * the views only read: the one writing connection they have is the group
 * commit's, for the log.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "store/share.h"
#include "util/util.h"

#define MAX_VIEWS 256 /* views made at most; beyond, a search waits for one */

struct store_share {
    lethe_store *owner;
    keyring *kr;             /* read-only, shared by the views (pread only) */
    pthread_rwlock_t index_rw; /* searches read; the owner's index changes write */
    pthread_mutex_t mu;      /* guards the pool */
    pthread_cond_t cv;       /* a view was given back */
    lethe_store **free;      /* views not in use */
    size_t nfree;
    size_t nviews;           /* views made (in use or free) */
    group_commit *gc;        /* NULL on a read-only store */
    lethe_store *log;        /* the group commit's view */
};

/* ------------------------------------------------------------ messages */

/* Each thread's message of its last failure on a shared handle. */
static _Thread_local struct {
    const lethe_store *owner;
    char msg[1024];
} tl_err;

int share_is_owner(const lethe_store *s)
{
    return s->share && s->share->owner == s;
}

void share_note_error(const lethe_store *s, const char *msg)
{
    tl_err.owner = s->share->owner;
    snprintf(tl_err.msg, sizeof(tl_err.msg), "%s", msg);
}

const char *share_errmsg(const lethe_store *s)
{
    return tl_err.owner == s && tl_err.msg[0] ? tl_err.msg : "no error";
}

/* --------------------------------------------------------------- views */

static void view_close(lethe_store *v)
{
    if (!v)
        return;
    idx_close(v->ix);
    for (int i = 0; i < STORE_STMTS; i++)
        sqlite3_finalize(v->stmt[i]);
    if (v->db)
        sqlite3_close_v2(v->db);
    if (v->lock_fd >= 0)
        close(v->lock_fd);
    lethe_free(v); /* dir and kr are the owner's and the share's */
}

/* A view of sh's owner with a connection of its own: a reader (queries
 * only), or the log's (writes log entries; its own descriptor of the lock
 * file, so that its locks are its own). On failure why says what failed
 * (the owner's buffer is not touched: a search thread may be the caller). */
static int view_open(struct store_share *sh, int for_log, lethe_store **out, char *why,
                     size_t n)
{
    lethe_store *o = sh->owner, *v = lethe_calloc(1, sizeof(*v));
    int ro = (o->flags & LETHE_STORE_READONLY) != 0, rc;
    *out = NULL;
    if (!v) {
        snprintf(why, n, "out of memory");
        return LETHE_ERR_NOMEM;
    }
    v->share = sh;
    v->dir = o->dir;
    v->flags = o->flags;
    v->kr = sh->kr;
    v->lock_fd = -1;
    v->wait_seconds = o->wait_seconds;
    memcpy(v->store_id, o->store_id, sizeof(v->store_id));
    char *db = store_file(v, STORE_DB), *lock = for_log ? store_file(v, STORE_LOCK) : NULL;
    if (!db || (for_log && !lock)) {
        rc = store_fail(v, LETHE_ERR_NOMEM, "out of memory");
        goto out;
    }
    if (sqlite3_open_v2(db, &v->db, (ro ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE) |
                        SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        /* no handle at all: SQLite could not allocate one */
        rc = v->db ? store_sqlfail(v, db)
                   : store_fail(v, LETHE_ERR_NOMEM, "%s: out of memory opening the catalog", db);
        goto out;
    }
    sqlite3_busy_timeout(v->db, 30000);
    /* as open_catalog: never an automatic checkpoint (the scrub reads the
     * WAL's pages), a commit is durable (FULL) */
    rc = store_exec(v, for_log ? "PRAGMA synchronous = FULL; PRAGMA secure_delete = ON; "
                                 "PRAGMA wal_autocheckpoint = 0; PRAGMA cache_size = -8192"
                               : "PRAGMA query_only = 1; PRAGMA wal_autocheckpoint = 0; "
                                 "PRAGMA temp_store = MEMORY; PRAGMA cache_size = -16384");
    if (rc == LETHE_OK && for_log &&
        (v->lock_fd = open(lock, O_RDWR | O_CLOEXEC | O_NOFOLLOW)) < 0)
        rc = store_fail(v, LETHE_ERR_IO, "%s: %s", lock, strerror(errno));
out:
    lethe_free(db);
    lethe_free(lock);
    if (rc != LETHE_OK) {
        snprintf(why, n, "%s", v->err);
        view_close(v);
        return rc;
    }
    *out = v;
    return LETHE_OK;
}

/* A free view, or a new one into *out; on failure (out of memory, or the
 * catalog cannot be opened) the status, the message in this thread's
 * buffer. */
static int view_get(struct store_share *sh, lethe_store **out)
{
    lethe_store *v = NULL;
    *out = NULL;
    pthread_mutex_lock(&sh->mu);
    while (!sh->nfree && sh->nviews >= MAX_VIEWS)
        pthread_cond_wait(&sh->cv, &sh->mu);
    if (sh->nfree) {
        *out = sh->free[--sh->nfree];
        pthread_mutex_unlock(&sh->mu);
        return LETHE_OK;
    }
    sh->nviews++;
    pthread_mutex_unlock(&sh->mu);
    char why[1024];
    int rc = view_open(sh, 0, &v, why, sizeof(why));
    if (rc == LETHE_OK) {
        *out = v;
        return LETHE_OK;
    }
    share_note_error(sh->owner, why);
    pthread_mutex_lock(&sh->mu);
    sh->nviews--;
    pthread_cond_signal(&sh->cv);
    pthread_mutex_unlock(&sh->mu);
    return rc;
}

static void view_put(struct store_share *sh, lethe_store *v)
{
    /* a failure may have left a read transaction open: it would hold
     * back the WAL's checkpoints */
    store_rollback(v);
    pthread_mutex_lock(&sh->mu);
    sh->free[sh->nfree++] = v; /* free has room for MAX_VIEWS */
    pthread_cond_signal(&sh->cv);
    pthread_mutex_unlock(&sh->mu);
}

/* ---------------------------------------------------------- open, close */

static int share_keyring(struct store_share *sh)
{
    char msg[512], *path = store_file(sh->owner, STORE_KEYRING);
    if (!path)
        return store_fail(sh->owner, LETHE_ERR_NOMEM, "out of memory");
    int rc = kr_open(path, 0, &sh->kr, msg, sizeof(msg));
    lethe_free(path);
    return rc ? store_fail(sh->owner, rc, "%s", msg) : LETHE_OK;
}

int share_open(lethe_store *s)
{
    struct store_share *sh = lethe_calloc(1, sizeof(*sh));
    if (!sh || !(sh->free = lethe_calloc(MAX_VIEWS, sizeof(*sh->free)))) {
        lethe_free(sh);
        return store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    }
    sh->owner = s;
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    /* a change of the index waits for the searches under way, not for
     * the ones that start after it asked */
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&sh->index_rw, &attr);
    pthread_rwlockattr_destroy(&attr);
    pthread_mutex_init(&sh->mu, NULL);
    pthread_cond_init(&sh->cv, NULL);
    s->share = sh;
    char why[1024];
    int rc = share_keyring(sh);
    if (rc == LETHE_OK && !(s->flags & LETHE_STORE_READONLY)) {
        if ((rc = view_open(sh, 1, &sh->log, why, sizeof(why))) != LETHE_OK)
            store_fail(s, rc, "%s", why);
        else if ((rc = gc_open(sh->log, &sh->gc)) != LETHE_OK)
            store_fail(s, rc, "%s", sh->log->err);
    }
    if (rc != LETHE_OK)
        share_close(s);
    return rc;
}

void share_close(lethe_store *s)
{
    struct store_share *sh = s->share;
    if (!sh)
        return;
    for (size_t i = 0; i < sh->nfree; i++)
        view_close(sh->free[i]);
    gc_close(sh->gc);
    view_close(sh->log);
    kr_close(sh->kr);
    pthread_rwlock_destroy(&sh->index_rw);
    pthread_mutex_destroy(&sh->mu);
    pthread_cond_destroy(&sh->cv);
    lethe_free(sh->free);
    lethe_free(sh);
    s->share = NULL;
}

/* ----------------------------------------------------- the entry points */

/* A search on view v: read under the index lock, then log through the
 * group commit; the results are returned only once their entries are
 * durable. */
static int search_on(lethe_store *v, const float *queries, int nq, const float *probes,
                     int nprobes, const lethe_search_options *opt, lethe_match **matches,
                     size_t *count)
{
    struct store_share *sh = v->share;
    char msg[1100];
    search_entry *lg = lethe_calloc((size_t)(nq > 0 ? nq : 1), sizeof(*lg));
    *matches = NULL;
    *count = 0;
    if (!lg)
        return store_fail(v, LETHE_ERR_NOMEM, "out of memory");
    pthread_rwlock_rdlock(&sh->index_rw);
    int rc = search_run(v, queries, nq, opt, matches, count, lg, probes, nprobes);
    pthread_rwlock_unlock(&sh->index_rw);
    if (rc == LETHE_OK && nq > 0 &&
        (rc = gc_log(sh->gc, opt->actor, opt->purpose, lg, nq, msg, sizeof(msg))) != LETHE_OK) {
        store_fail(v, rc, "%s", msg);
        lethe_matches_free(*matches, *count);
        *matches = NULL;
        *count = 0;
    }
    lethe_free(lg);
    return rc;
}

/* The view to run a shared call on: s itself when it is one already. */
static int view_for(lethe_store *s, lethe_store **v)
{
    if (share_is_owner(s))
        return view_get(s->share, v);
    *v = s;
    return LETHE_OK;
}

static void view_done(lethe_store *s, lethe_store *v)
{
    if (v != s)
        view_put(s->share, v);
}

int share_search(lethe_store *s, const float *queries, int nq, const lethe_search_options *opt,
                 lethe_match **matches, size_t *count)
{
    lethe_store *v;
    *matches = NULL;
    *count = 0;
    int rc = view_for(s, &v);
    if (rc)
        return rc;
    rc = search_on(v, queries, nq, NULL, 0, opt, matches, count);
    view_done(s, v);
    return rc;
}

int share_search_fused(lethe_store *s, const float *mean, const float *probes, int nprobes,
                       const lethe_search_options *opt, lethe_match **matches, size_t *count)
{
    lethe_store *v;
    *matches = NULL;
    *count = 0;
    int rc = view_for(s, &v);
    if (rc)
        return rc;
    rc = search_on(v, mean, 1, probes, nprobes, opt, matches, count);
    view_done(s, v);
    return rc;
}

int share_search_gallery(lethe_store *s, const lethe_model_id *model, uint64_t *count)
{
    lethe_store *v;
    *count = 0;
    int rc = view_for(s, &v);
    if (rc)
        return rc;
    pthread_rwlock_rdlock(&v->share->index_rw);
    rc = store_search_gallery(v, model, count);
    pthread_rwlock_unlock(&v->share->index_rw);
    view_done(s, v);
    return rc;
}

int share_search_image(lethe_store *s, lethe_engine *e, const lethe_image *img,
                       const lethe_search_options *opt, lethe_match **matches, size_t *count)
{
    lethe_store *v;
    *matches = NULL;
    *count = 0;
    int rc = view_get(s->share, &v);
    if (rc)
        return rc;
    rc = lethe_search_image(v, e, img, opt, matches, count);
    view_done(s, v);
    return rc;
}

int share_key_authenticate(lethe_store *s, const char *key, size_t len, lethe_key_info *info)
{
    lethe_store *v;
    int rc = view_get(s->share, &v);
    if (rc)
        return rc;
    rc = lethe_key_authenticate(v, key, len, info);
    view_done(s, v);
    return rc;
}

int share_log_verify(lethe_store *s, uint64_t *entries, uint64_t *first_bad)
{
    struct store_share *sh = s->share;
    lethe_store *v = sh->log;
    *entries = *first_bad = 0;
    int rc = sh->gc ? LETHE_OK : view_get(sh, &v);
    if (rc)
        return rc;
    if (sh->gc)
        gc_pause(sh->gc);
    rc = lethe_log_verify(v, entries, first_bad);
    if (sh->gc)
        gc_resume(sh->gc);
    else
        view_put(sh, v);
    return rc;
}

void share_index_write_begin(lethe_store *s)
{
    if (s->share)
        pthread_rwlock_wrlock(&s->share->index_rw);
}

void share_index_write_end(lethe_store *s)
{
    if (s->share)
        pthread_rwlock_unlock(&s->share->index_rw);
}

/* ---------------------------------------------------------------- tests */

void share_get_stats(lethe_store *s, share_stats *st)
{
    memset(st, 0, sizeof(*st));
    if (!s->share)
        return;
    if (s->share->gc)
        gc_stats(s->share->gc, st);
    pthread_mutex_lock(&s->share->mu);
    st->views = s->share->nviews;
    pthread_mutex_unlock(&s->share->mu);
}

void share_test_hold(lethe_store *s, int hold)
{
    if (s->share && s->share->gc)
        gc_hold(s->share->gc, hold);
}

int share_test_queued(lethe_store *s)
{
    return s->share && s->share->gc ? gc_queued(s->share->gc) : 0;
}
