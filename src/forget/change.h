/*
 * change.h: the one way a change to a store's personal data commits, and so
 * the one erasure protocol. Ingest, forget, opt-outs, policy tightening,
 * consent withdrawal, restore and key rotation all commit through
 * change_commit, and nothing else may delete a photo, a provenance record
 * or a face: the catalog counts such deletions (an update hook) and
 * change_commit refuses a transaction that made any it was not told of by
 * erase.c.
 *
 * change_commit, in order:
 *   1. inside the transaction: the index generation is bumped if the index
 *      changes, and meta.scrub_pending is set if anything is erased or the
 *      keyring has work to do after the commit;
 *   2. the keyring's new records (photo keys, opt-outs) are written and
 *      fsynced, with the mirror: no committed row can name a key that is
 *      not durable;
 *   3. COMMIT (with the digest), then log.head;
 *   4. the erased photos' old keys are destroyed (zeroed in the keyring and
 *      the mirror), opt-outs made active;
 *   5. the index is patched (removals, appends);
 *   6. when anything was erased: the WAL is checkpointed, the unused bytes of
 *      every page it held are zeroed, the WAL is truncated, and
 *      meta.scrub_pending is cleared.
 * A crash before 3 leaves the store as it was (new keys nobody uses: they
 * are removed at the next recovery); after 3, meta.scrub_pending makes the
 * next writable open redo 4 and 6 (store_recover) and the index generation
 * makes it rebuild the index.
 */
#ifndef LETHE_CHANGE_H
#define LETHE_CHANGE_H

#include <stddef.h>
#include <stdint.h>

#include "forget/keyring.h"
#include "lethe.h"

typedef struct change {
    lethe_store *s;
    int open;            /* a transaction is open */
    int erasing;         /* personal data goes: scrub after the commit */
    int committed;       /* change_commit got past COMMIT (even if a later step
                            failed: then it is finished at the next open) */
    uint64_t deletes_ok; /* personal-row deletions erase.c announced */
    kr_ref *shred;       /* keys and records to destroy after the commit */
    size_t nshred, capshred;
    kr_ref *settle;      /* records to make active after the commit */
    size_t nsettle, capsettle;
    int64_t *rm;         /* index removals */
    size_t nrm, caprm;
    int64_t *add_ids;    /* index appends */
    float *add_vecs;
    size_t nadd, capadd;
} change;

/* BEGIN IMMEDIATE (the caller holds the writer lock). c must be zeroed
 * before its first use (change c = {0}). */
int change_begin(lethe_store *s, change *c);
/* The protocol above; the transaction is closed either way. Buffers are
 * kept for the next change_begin on the same c (change_free releases). */
int change_commit(change *c);
/* Roll back; drop the keyring's staged records. */
void change_abort(change *c);
void change_free(change *c);

int change_shred(change *c, kr_ref ref);
int change_settle(change *c, kr_ref ref);
int change_index_remove(change *c, int64_t face);
int change_index_add(change *c, int64_t face, const float *vec);

#endif
