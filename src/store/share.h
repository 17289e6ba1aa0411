/*
 * share.h: a store handle shared by threads (LETHE_STORE_SHARED): searches
 * and key checks from any number of threads at once, beside the one other
 * call at a time that the caller orders (share.c), and the group commit of
 * the searches' log entries (groupcommit.c).
 *
 * How a shared handle is built:
 *   - views: private lethe_store structs, each with its own SQLite
 *     connection, index handle, statement cache and message buffer, that
 *     borrow the owner's directory, store id and a read-only keyring handle
 *     (which only preads the keyring file, so it sees a destroyed key at
 *     once). A search or key check takes a free view from a pool (one is
 *     made when none is free), runs the ordinary code on it, and gives it
 *     back. Nothing a view touches is written by the owner's calls.
 *   - index_rw: searches hold it for reading while they read the index and
 *     the catalog; the owner takes it for writing while it patches or
 *     rebuilds the index (index_sync.c), so a writer is never starved by
 *     overlapping searches (writer-preferring) and a search sees either the
 *     index before the change or after it.
 *   - the log: one more view with a connection of its own commits the
 *     queued search entries in groups (groupcommit.c).
 *   - messages: every store_fail on a shared handle or its views is also
 *     kept in a thread-local buffer, which lethe_store_errmsg returns.
 */
#ifndef LETHE_SHARE_H
#define LETHE_SHARE_H

#include <stdint.h>

#include "store/store.h"

/* The log entry a search makes for one query (query.c fills them). */
typedef struct search_entry {
    char qh[65];     /* keyed hash of the query */
    int64_t results; /* matches returned */
    const lethe_match *m; /* those matches (the search's, alive until it
                             returns): counted per photo and purpose
                             (requests/hits.c) in the group's commit */
} search_entry;

/* lethe_search's work (query.c). With lg NULL: reads and logs in one
 * transaction on s (an ordinary handle). With lg (nq entries): reads in a
 * read transaction and fills lg[q] instead of logging (a view). With
 * probes (nprobes of them): queries is their mean, one query, and the
 * entry is the fused search's (a hash over every probe). */
int search_run(lethe_store *s, const float *queries, int nq, const lethe_search_options *opt,
               lethe_match **matches, size_t *count, search_entry *lg, const float *probes,
               int nprobes);

/* After a successful open with LETHE_STORE_SHARED: the views' keyring, the
 * lock, the group commit. On failure s->share stays NULL. */
int share_open(lethe_store *s);
/* Before the owner closes: every view and the log connection. */
void share_close(lethe_store *s);

/* s is the handle the caller opened (not one of its views). */
int share_is_owner(const lethe_store *s);
/* store_fail's hook: msg is also this thread's message for the handle. */
void share_note_error(const lethe_store *s, const char *msg);
/* This thread's last message for shared handle s ("no error" if none). */
const char *share_errmsg(const lethe_store *s);

/* The shared entry points: run on a view of owner s. */
int share_search(lethe_store *s, const float *queries, int nq, const lethe_search_options *opt,
                 lethe_match **matches, size_t *count);
/* A fused search: mean of the nprobes probes, ranked once, one entry. */
int share_search_fused(lethe_store *s, const float *mean, const float *probes, int nprobes,
                       const lethe_search_options *opt, lethe_match **matches, size_t *count);
int share_search_image(lethe_store *s, lethe_engine *e, const lethe_image *img,
                       const lethe_search_options *opt, lethe_match **matches, size_t *count);
/* lethe_search_gallery on a view; store_search_gallery (query.c) is the
 * call itself, on one connection. */
int share_search_gallery(lethe_store *s, const lethe_model_id *model, uint64_t *count);
int store_search_gallery(lethe_store *s, const lethe_model_id *model, uint64_t *count);
int share_key_authenticate(lethe_store *s, const char *key, size_t len, lethe_key_info *info);
/* lethe_log_verify between two group commits: a group that commits while
 * the log is read would make log.head and the catalog's head differ from
 * the entries read (on the log's connection, the group commit paused). */
int share_log_verify(lethe_store *s, uint64_t *entries, uint64_t *first_bad);

/* The owner's index changes (no-ops on a handle that is not shared). */
void share_index_write_begin(lethe_store *s);
void share_index_write_end(lethe_store *s);

/* ------------------------------------------------------- group commit */

typedef struct group_commit group_commit;

/* log: a view with its own connection and lock file descriptor, used by
 * the group commit alone until gc_close (which does not close it). */
int gc_open(lethe_store *log, group_commit **out);
void gc_close(group_commit *g);
/* Queue n entries of one search and return once a commit holding them is
 * durable (LETHE_OK) or failed (its status, message in err): leader and
 * followers, the first waiting thread commits every queued entry in one
 * transaction, in queue order. */
int gc_log(group_commit *g, const char *actor, const char *purpose, const search_entry *e, int n,
           char *err, size_t errlen);

/* Wait for a group being committed, and keep the next from starting until
 * gc_resume: the log's connection is idle meanwhile. */
void gc_pause(group_commit *g);
void gc_resume(group_commit *g);

/* For tests: what the group commit did, and a gate that keeps any leader
 * from starting (so that waiting searches pile up). */
typedef struct share_stats {
    uint64_t commits;   /* transactions committed */
    uint64_t entries;   /* search entries committed */
    uint64_t failures;  /* groups that failed */
    uint64_t views;     /* views made */
} share_stats;
void share_get_stats(lethe_store *s, share_stats *st);
void share_test_hold(lethe_store *s, int hold);
/* Searches queued and waiting for a leader. */
int share_test_queued(lethe_store *s);
void gc_stats(group_commit *g, share_stats *st);
void gc_hold(group_commit *g, int hold);
int gc_queued(group_commit *g);

#endif
