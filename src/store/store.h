/*
 * store.h: the inside of a lethe store, shared by src/store/ (the SQLite
 * leaf: open, schema, lock, transactions, rows, digest, log, index sync,
 * ingest, queries) and src/forget/ (the keyring, sealing, the one commit
 * protocol, erasure, opt-outs, receipts, backup and restore).
 *
 * Files in a store directory:
 *   catalog.db   SQLite: meta, photos, provenance, faces (personal fields
 *                sealed with each photo's key), the consent policy's
 *                versions, signing keys (public), receipts, opt-out
 *                summaries, the audit log
 *   keyring      the photos' keys, the salt, the signing secret, the
 *                opt-outs, the issued receipts' hashes (forget/keyring.h);
 *                never in a backup; mode 0600
 *   faces.idx    the descriptor index, derived from the catalog; rebuilt
 *                whenever its generation differs from meta.index_gen
 *   policy       the consent policy as text, written by lethe from the
 *                catalog; a hand-edited file is refused
 *   log.head     "SEQ HASH" of the log's last entry: the chain's anchor
 *   lock         flock()ed by the one process writing; holds who it is
 *
 * Ordering that keeps a crash harmless is the commit protocol's
 * (forget/change.h): new keys are durable before the catalog commit that
 * uses them; keys are destroyed, the index patched and free pages scrubbed
 * after it, with meta.scrub_pending set in the same commit so that the
 * next writable open finishes whatever a crash interrupted.
 */
#ifndef LETHE_STORE_H
#define LETHE_STORE_H

#include <sqlite3.h>
#include <stdint.h>

#include "forget/keyring.h"
#include "forget/seal.h"
#include "index/index.h"
#include "lethe.h"
#include "policy/policy.h"

#define STORE_DB "catalog.db"
#define STORE_KEYRING "keyring"
#define STORE_INDEX "faces.idx"
#define STORE_POLICY "policy"
#define STORE_LOG_HEAD "log.head"
#define STORE_LOCK "lock"

/* Internal open flag: no recovery and no mirror (restore's copy). */
#define STORE_NO_RECOVER 0x10000u

#define DIGEST_LANES 1024 /* 16-bit lanes of the multiset hash (digest.c) */
#define STORE_TEXT_MAX 4096 /* bytes in an actor or a purpose */

/* Statements run once per photo, prepared once per store (store_cached). */
enum {
    STORE_STMT_PHOTO,      /* rows.c: a photo row by id */
    STORE_STMT_PROVS,      /* rows.c: its provenance rows */
    STORE_STMT_FACES,      /* rows.c: its face rows */
    STORE_STMT_INS_PHOTO,
    STORE_STMT_INS_PROV,
    STORE_STMT_INS_FACE,
    STORE_STMT_BY_SHA,
    STORE_STMTS
};

struct lethe_store {
    char *dir;
    unsigned flags;
    sqlite3 *db;
    keyring *kr;          /* the keyring (writable unless the store is read-only) */
    uint8_t store_id[KR_STORE_ID];
    idx *ix;              /* opened for searching on first use */
    policy *pol;          /* the current consent policy (from the catalog) */
    int64_t policy_version;
    int lock_fd;          /* the store's lock file */
    int locked;           /* we hold LOCK_EX on it */
    double wait_seconds;  /* how long store_lock waits for another writer */
    lethe_wait_fn on_wait;
    void *wait_ctx;
    uint16_t dig[DIGEST_LANES]; /* the digest state inside a transaction */
    int dig_dirty;        /* changed since store_begin: saved at commit */
    uint64_t deletes;     /* personal rows deleted in the open transaction */
    int head_stale;       /* log.head could not be written after a commit */
    sqlite3_stmt *stmt[STORE_STMTS]; /* store_cached: prepared once, kept */
    int status;           /* the status of the last failure recorded (store_fail) */
    char err[1024];
    struct store_share *share; /* LETHE_STORE_SHARED: views, group commit (share.h) */
    int migrate;          /* a format 2 catalog: store_models_migrate on open */
};

/* Record a failure: the message goes to store->err; returns status. */
int store_fail(lethe_store *s, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* As store_fail, with SQLite's message appended; SQLite's error code gives
 * the status: out of memory is LETHE_ERR_NOMEM ("WHAT: out of memory"),
 * never an I/O error or damage. */
int store_sqlfail(lethe_store *s, const char *what);
/* The status for SQLite's error code: SQLITE_NOMEM is LETHE_ERR_NOMEM,
 * SQLITE_BUSY LETHE_ERR_BUSY, a damaged file LETHE_ERR_STORE, the rest
 * LETHE_ERR_IO. */
int store_sqlstatus(int code);
/* The status of the last failure recorded, for callers of the helpers that
 * return -1 (store_count, rows_find_sha) to pass on: out of memory stays
 * out of memory. LETHE_ERR_IO if none was recorded. */
int store_status(const lethe_store *s);
/* Check the results of sqlite3_bind_* calls, OR'd together, before the
 * step: a value bound SQLITE_TRANSIENT is copied, and when that copy runs
 * out of memory the parameter is left NULL, which would read as "no such
 * row" or store a NULL. LETHE_OK, else LETHE_ERR_NOMEM ("WHAT: out of
 * memory"). */
int store_bound(lethe_store *s, int binds, const char *what);
/* The store is writable (else LETHE_ERR_ARG with a message). */
int store_writable(lethe_store *s);

/* dir/name into a new string (lethe_free). */
char *store_file(const lethe_store *s, const char *name);

/* The writer lock: waits up to s->wait_seconds for another writer (calling
 * s->on_wait about once a second with who holds it), then fails with
 * LETHE_ERR_BUSY naming the holder. `what` is recorded as what we do. */
int store_lock(lethe_store *s, const char *what);
void store_unlock(lethe_store *s);

/* Run SQL without results. */
int store_exec(lethe_store *s, const char *sql);
int store_prepare(lethe_store *s, const char *sql, sqlite3_stmt **st);
/* Statement `which` (always with the same sql), prepared on first use and
 * kept until the store closes: reset and unbound, ready to bind. Do not
 * finalize it; sqlite3_reset it when done so it holds no read lock. */
int store_cached(lethe_store *s, int which, const char *sql, sqlite3_stmt **st);
/* The one integer a query returns (0 if none); -1 on error (message set). */
int64_t store_count(lethe_store *s, const char *sql);
/* The first column of every row of st (prepared and bound; finalized here)
 * into a new array *ids (lethe_free); on failure none, the message naming
 * what was being read. */
int store_ids(lethe_store *s, sqlite3_stmt *st, const char *what, int64_t **ids, size_t *n);

int store_begin(lethe_store *s);      /* BEGIN IMMEDIATE, loads the digest */
/* End a read transaction (BEGIN ... reads): COMMIT, or ROLLBACK when the
 * COMMIT fails (out of memory), so no transaction stays open to make the
 * next call fail. Records no message: a failure being returned keeps its. */
void store_end_read(lethe_store *s);
/* COMMIT (saving the digest), then rewrite log.head. A failure to write
 * log.head after the commit is not the commit's failure: it sets
 * s->head_stale and is repaired by the next commit or open. Changes to
 * personal data commit through change_commit (forget/change.h) instead. */
int store_commit(lethe_store *s);
void store_rollback(lethe_store *s);

/* meta table */
int store_meta_get_int(lethe_store *s, const char *key, int64_t *v);
int store_meta_set_int(lethe_store *s, const char *key, int64_t v);
int store_meta_get_text(lethe_store *s, const char *key, char *out, size_t n);
int store_meta_set_text(lethe_store *s, const char *key, const char *v);

/* Bump meta.index_gen in the current transaction; *gen receives the new one. */
int store_bump_gen(lethe_store *s, uint64_t *gen);
/* After the commit of a generation bump: apply removals and appends to the
 * index and record gen. On failure the index is left for a rebuild. */
int store_index_apply(lethe_store *s, uint64_t gen, const int64_t *rm, size_t nrm,
                      const int64_t *ids, const float *vecs, size_t n);
/* Open the index for searching (read-only handle if the store is read-only). */
int store_index_ready(lethe_store *s);
/* Make the index match the catalog's generation (writable stores). */
int store_index_sync(lethe_store *s);

/* Keyed BLAKE2b-256 (the keyring's salt) of tag and data: lookups and
 * query hashes. hex variant: 64 hex digits. */
void store_hash(const lethe_store *s, const char *tag, const void *data, size_t len,
                uint8_t out[32]);
void store_keyed_hash(const lethe_store *s, const void *data, size_t len, char hex[65]);

/* Current UTC time, ISO 8601 with seconds and Z. */
void store_now(char out[32]);

/* Write a file atomically (temp file in the same folder, fsync, rename). */
int store_write_file(lethe_store *s, const char *name, const char *data, size_t len);

/* Text given by a caller (actor, purpose): no control characters, valid
 * UTF-8, at most STORE_TEXT_MAX bytes; empty allowed only if may_be_empty. */
int store_check_text(lethe_store *s, const char *what, const char *text, int may_be_empty);

/* The photos a lookup selects (kind LETHE_LOOKUP_*, value as given, not
 * empty; for LETHE_LOOKUP_FILE the file's bytes[0..len) when bytes is not
 * NULL, else the file named by value): a statement whose rows are their
 * ids, and the keyed hash the log records for the value (query.c). */
int store_lookup_stmt(lethe_store *s, int kind, const char *value, const void *bytes,
                      size_t len, sqlite3_stmt **st, uint8_t qhash[32]);

/* ------------------------------------------------------------------ log */

/* Append a log entry inside the current transaction. detail is a JSON object
 * text or NULL. */
int store_log_append(lethe_store *s, const char *kind, const char *actor,
                     const char *purpose, const char *query_hash, int64_t results,
                     const char *detail);
/* After commit: write the head file from the catalog. */
int store_log_write_head(lethe_store *s);

/* --------------------------------------------------------------- policy */

/*
 * May a template be computed for a photo with these provenance records?
 * Yes when no record withdraws consent and at least one is allowed by the
 * policy. jurisdictions/consents are canonical strings.
 */
int store_photo_eligible(const policy *p, const char *const *jurisdictions,
                         const char *const *consents, int n);
/* The jurisdiction and consent of each of a photo's provenance records
 * (pv: "SELECT jurisdiction, consent ... WHERE photo = ?", bound), at most
 * 64, into jb/cb with jur/con pointing at them; *k counts them. Resets pv.
 * A failed read is an error, never fewer records. */
int store_read_consents(lethe_store *s, sqlite3_stmt *pv, char jb[64][8], char cb[64][16],
                        const char **jur, const char **con, int *k);
/* Record a new policy version (text, canonical) in the open transaction:
 * the policy table, the digest, and a log entry of `kind` ("init" or
 * "policy") whose detail (a JSON object's members, or NULL) is followed by
 * the version and the text's hash. */
int consent_policy_record(lethe_store *s, const char *text, const char *actor, const char *kind,
                          const char *detail_members);
/* Drop, as an erasure in change c, the templates the current policy refuses
 * (restore). *dropped counts them. */
struct change;
int store_policy_enforce(struct change *c, uint64_t *dropped);
/* Load the current policy from the catalog into s->pol. */
int store_policy_load(lethe_store *s);
/* The same when the catalog holds a newer version than s->pol (another
 * process, or another handle, changed it): a handle that lives long (a
 * server) must not decide with an old policy. store_lock calls it. */
int store_policy_refresh(lethe_store *s);
/* Compare the policy file with the catalog's policy (refuse a hand-edited
 * file); a writable store writes it when missing. */
int store_policy_file_check(lethe_store *s);

/* ----------------------------------------------------------------- rows */

/* A photo's rows, opened with its key (rows.c). */
enum { PV_PATH, PV_PHOTO_ID, PV_URL, PV_UPLOADER, PV_COLLECTED_AT, PV_SOURCE, PV_LICENSE,
       PV_JURISDICTION, PV_CONSENT, PV_FIELDS };

typedef struct prov_row {
    int64_t id;
    uint8_t fp[32];
    char *v[PV_FIELDS];   /* [0, SP_FIELDS): one allocation (v[0]); then each */
    char added_at[32];
} prov_row;

typedef struct face_row {
    int64_t id;
    int ord;
    seal_face f;
} face_row;

typedef struct photo_rows {
    int64_t id;
    kr_ref key_ref;
    uint8_t key[KR_KEY];
    char kind[16], status[16], added_at[32];
    int faces_found;      /* -1: never analysed */
    seal_photo ph;
    prov_row *prov;
    int nprov;
    face_row *faces;
    int nfaces;
} photo_rows;

/* Read and open every row of photo id. LETHE_ERR_NOT_FOUND: no such photo;
 * a key that is gone or a row that does not open: LETHE_ERR_STORE. */
int rows_read(lethe_store *s, int64_t photo, photo_rows *r);
/* The same, only the photo row and its key (no provenance, no faces). */
int rows_read_photo(lethe_store *s, int64_t photo, photo_rows *r);
void rows_free(photo_rows *r); /* wipes the key and the plaintext */

/* The key of a photo row (its slot and id as stored). */
int store_photo_key(lethe_store *s, kr_ref ref, uint8_t key[KR_KEY]);

/* The photo with this SHA-256: 1 and *id, *status (16 bytes), 0 if none. */
int rows_find_sha(lethe_store *s, const uint8_t sha[32], int64_t *id, char status[16]);
/* New rows, sealed with key (the photo's, from the change's keyring). */
int rows_insert_photo(lethe_store *s, const photo_rows *r, int64_t *id);
/* A provenance record (fields as PV_*, canonical): *added 1 if it was new. */
int rows_insert_prov(lethe_store *s, const photo_rows *r, const char *const v[PV_FIELDS],
                     int *added);
/* model: the models row of whatever computed the face (0: none);
 * detector: the detector's precision ("" for a descriptor from outside). */
int rows_insert_face(lethe_store *s, const photo_rows *r, int ord, const seal_face *f,
                     int64_t model, const char *detector, int64_t *id);
/* Write every row of r again under r's key (after erase.c gave the photo a
 * new key): photo, provenance and the faces listed in r. */
int rows_reseal(lethe_store *s, const photo_rows *r);
/* The photo row's status, faces_found and sealed values (same key). */
int rows_update_photo(lethe_store *s, const photo_rows *r);
/* A provenance record's fingerprint (keyed: one record is stored once). */
void rows_fingerprint(const lethe_store *s, const char *const v[PV_FIELDS], uint8_t fp[32]);

/* ---------------------------------------------------------------- digest */

/* The incremental digest (digest.c). store_dg folds photo's records out
 * (sign -1) or in (+1) of s->dig; call it before and after changing any of
 * a photo's rows, inside the transaction. */
int store_dg(lethe_store *s, int64_t photo, int sign);
/* The same for a photo already read (rows_read). */
void store_dg_rows(lethe_store *s, const photo_rows *r, int sign);
/* Fold the consent policy text in (+1) or out (-1). */
void store_dg_policy(lethe_store *s, const char *text, int sign);
int dg_photo(lethe_store *s, uint16_t *state, int64_t photo, int sign);
int dg_full(lethe_store *s, uint16_t *state);
int dg_load(lethe_store *s, uint16_t *state);
int dg_save(lethe_store *s, const uint16_t *state);
void dg_final(const uint16_t *state, char hex[65]);
/* Fold a text record (the consent policy) in or out of state. */
void dg_fold_text(uint16_t *state, int sign, const char *tag, const char *text);

/* ------------------------------------------------------ scrub and WAL */

/* Checkpoint the WAL and truncate it to zero bytes. */
int store_truncate_wal(lethe_store *s);
/* After a commit that erased data: checkpoint, zero the unused bytes of
 * every page the WAL held (all pages when all), truncate the WAL, clear
 * meta.scrub_pending (forget/scrub.c). */
int store_scrub(lethe_store *s, int all);
/* Finish what a crash interrupted (forget/recover.c): the keyring's
 * records against the catalog, then a scrub of every page. Caller holds
 * the lock. */
int store_recover(lethe_store *s);
/* The photo keys the catalog names, sorted (store_ref_cmp), for matching
 * against the keyring's records with bsearch. */
int store_key_refs(lethe_store *s, kr_ref **out, size_t *n);
int store_ref_cmp(const void *a, const void *b);

/* --------------------------------------------------------------- models */

/* The models table (models.c), in the schema of a new store and added by
 * the migration from format 2. A model is never deleted: retiring it
 * erases its templates and sets retired_at. */
#define MODELS_SCHEMA_SQL                                                      \
    "CREATE TABLE models(\n"                                                   \
    "  id INTEGER PRIMARY KEY,\n"                                              \
    "  name TEXT NOT NULL, version TEXT NOT NULL, weights TEXT NOT NULL,\n"    \
    "  precision TEXT NOT NULL, first_used TEXT NOT NULL, retired_at TEXT,\n"  \
    "  UNIQUE(name, version, weights, precision));\n"

/* The models row of m: *id, and 1 in *retired when it is retired;
 * LETHE_ERR_NOT_FOUND (no message) when the store never saw it. */
int store_model_get(lethe_store *s, const lethe_model_id *m, int64_t *id, int *retired);
/* The same, adding the row when absent, inside the open transaction; a
 * retired model is refused (LETHE_ERR_POLICY, with a message). */
int store_model_use(lethe_store *s, const lethe_model_id *m, int64_t *id);
/* Format 2 to 3: the models table, faces.model and faces.detector, every
 * face attributed to the shipped model (the only one format 2 knew). */
int store_models_migrate(lethe_store *s);
/* Every part of m is 1..max-1 of [A-Za-z0-9-_.+] (weights may be empty). */
int store_model_valid(const lethe_model_id *m);
/* lethe_model_find inside the caller's transaction. */
int store_model_find(lethe_store *s, const char *which, lethe_model_info *info);
/* "name@version" of a model row, for messages. */
void store_model_label(const lethe_model_id *m, char *out, size_t n);
/* The model m (NULL: the shipped one) a search or a verification compares
 * against: *id (0 when the store never saw it), *templates of it held
 * (idx_total: the index's row count, or UINT64_MAX when unknown: then
 * *templates only says whether there is one). LETHE_ERR_POLICY when the
 * model is retired; LETHE_ERR_NOT_FOUND (message set) when it holds none
 * but the store holds other models' templates or retired one; LETHE_OK
 * with *templates 0 when the store holds no template at all. Inside a
 * read. */
int store_search_model(lethe_store *s, const lethe_model_id *m, uint64_t idx_total,
                       int64_t *id, uint64_t *templates);

#endif
