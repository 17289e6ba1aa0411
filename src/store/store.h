/*
 * store.h: the inside of a lethe store, shared by the catalog's files
 * (store.c: open, schema, index sync, digest; log.c: the hash chain;
 * ingest.c; query.c: search, lookup, datasheet; policy glue in store.c).
 *
 * Files in a store directory:
 *   catalog.db   SQLite: meta, photos, provenance, faces (with templates), log
 *   faces.idx    the descriptor index, derived from faces; rebuilt whenever its
 *                generation differs from the catalog's meta.index_gen
 *   policy       the consent policy (text)
 *   log.head     "SEQ HASH" of the log's last entry: the chain's anchor
 *   lock         flock()ed by the one process writing at a time
 *
 * Ordering that keeps a crash harmless: template changes are committed to
 * SQLite with index_gen bumped, then applied to faces.idx, then idx_commit
 * records the same generation. A crash in between leaves the generations
 * different, and the next writable open rebuilds the index from SQLite.
 */
#ifndef LETHE_STORE_H
#define LETHE_STORE_H

#include <sqlite3.h>
#include <stdint.h>

#include "index/index.h"
#include "lethe.h"
#include "policy/policy.h"

#define STORE_DB "catalog.db"
#define STORE_INDEX "faces.idx"
#define STORE_POLICY "policy"
#define STORE_LOG_HEAD "log.head"
#define STORE_LOCK "lock"

#define DIGEST_LANES 1024 /* 16-bit lanes of the multiset hash (digest.c) */

/* Statements run once per photo, prepared once per store (store_cached). */
enum { STORE_STMT_DG_PHOTO, STORE_STMT_DG_PROV, STORE_STMT_DG_FACE, STORE_STMTS };

struct lethe_store {
    char *dir;
    unsigned flags;
    sqlite3 *db;
    idx *ix;              /* opened for writing unless read-only */
    policy *pol;
    int lock_fd;          /* the store's lock file */
    int locked;           /* we hold LOCK_EX on it */
    uint8_t salt[32];     /* keys the hashes of queries and identifiers */
    uint16_t dig[DIGEST_LANES]; /* the digest state inside a transaction */
    int dig_dirty;        /* changed since store_begin: saved at commit */
    sqlite3_stmt *stmt[STORE_STMTS]; /* store_cached: prepared once, kept */
    char err[1024];
};

/* Record a failure: the message goes to store->err; returns status. */
int store_fail(lethe_store *s, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* As store_fail, with SQLite's message appended. */
int store_sqlfail(lethe_store *s, const char *what);

/* dir/name into a new string (lethe_free). */
char *store_file(const lethe_store *s, const char *name);

/* Exclusive writer lock (blocking); unlock is idempotent. */
int store_lock(lethe_store *s);
void store_unlock(lethe_store *s);

/* Run SQL without results. */
int store_exec(lethe_store *s, const char *sql);
int store_prepare(lethe_store *s, const char *sql, sqlite3_stmt **st);
/* Statement `which` (always with the same sql), prepared on first use and
 * kept until the store closes: reset and unbound, ready to bind. Do not
 * finalize it; sqlite3_reset it when done so it holds no read lock. */
int store_cached(lethe_store *s, int which, const char *sql, sqlite3_stmt **st);

int store_begin(lethe_store *s);      /* BEGIN IMMEDIATE */
/* COMMIT, then rewrite log.head. */
int store_commit(lethe_store *s);
void store_rollback(lethe_store *s);

/* meta table */
int store_meta_get_int(lethe_store *s, const char *key, int64_t *v);
int store_meta_set_int(lethe_store *s, const char *key, int64_t v);

/* Bump meta.index_gen in the current transaction; *gen receives the new one. */
int store_bump_gen(lethe_store *s, uint64_t *gen);
/* After the commit of a generation bump: apply removals and appends to the
 * index and record gen. On failure the index is left for a rebuild. */
int store_index_apply(lethe_store *s, uint64_t gen, const int64_t *rm, size_t nrm,
                      const int64_t *ids, const float *vecs, size_t n);
/* Open the index for searching (read-only handle if the store is read-only). */
int store_index_ready(lethe_store *s);

/* Keyed BLAKE2b-256 of data, as 64 hex digits. */
void store_keyed_hash(const lethe_store *s, const void *data, size_t len, char hex[65]);

/* Current UTC time, ISO 8601 with seconds and Z. */
void store_now(char out[32]);

/* Append a log entry inside the current transaction. detail is a JSON object
 * text or NULL. */
int store_log_append(lethe_store *s, const char *kind, const char *actor,
                     const char *purpose, const char *query_hash, int64_t results,
                     const char *detail);
/* After commit: write the head file from the catalog. */
int store_log_write_head(lethe_store *s);

/*
 * May a template be computed for a photo with these provenance records?
 * Yes when no record withdraws consent and at least one is allowed by the
 * policy. jurisdictions/consents are canonical strings.
 */
int store_photo_eligible(const policy *p, const char *const *jurisdictions,
                         const char *const *consents, int n);

/* The incremental digest (digest.c). store_dg folds photo's records out
 * (sign -1) or in (+1) of s->dig; call it before and after changing any of
 * a photo's rows, inside the transaction. */
int store_dg(lethe_store *s, int64_t photo, int sign);
int dg_photo(lethe_store *s, uint16_t *state, int64_t photo, int sign);
int dg_full(lethe_store *s, uint16_t *state);
int dg_load(lethe_store *s, uint16_t *state);
int dg_save(lethe_store *s, const uint16_t *state);
void dg_final(lethe_store *s, const uint16_t *state, char hex[65]);

/* The store's Ed25519 key (created on first use, in the caller's
 * transaction). */
int store_signing_key(lethe_store *s, uint8_t pk[32], uint8_t sk[64]);
/* Checkpoint the WAL and truncate it to zero bytes. */
int store_truncate_wal(lethe_store *s);

/* After a commit that erased data: checkpoint, zero the unused bytes of
 * every page the WAL held (all pages when all), truncate the WAL
 * (scrub.c). */
int store_scrub(lethe_store *s, int all);

/* Erase what the erasure ledger names (restore's replay), in the caller's
 * transaction; *rm gets the template ids for the index (forget.c). */
int store_replay_ledger(lethe_store *s, uint64_t *erased, int64_t **rm, size_t *nrm);

/* Write a file atomically (temp file in the same folder, fsync, rename). */
int store_write_file(lethe_store *s, const char *name, const char *data, size_t len);

#endif
