/*
 * recover.c: finishing what a crash (or a full disk) interrupted after a
 * change committed (change.h, steps 4 and 6): the keyring is brought in
 * line with the catalog, then every page of the catalog is scrubbed.
 *
 * The catalog decides: a photo key no photo row names is destroyed (the
 * photo was erased, or its ingest never committed); a record written before
 * its change committed (KR_PENDING: an opt-out, a receipt's hash) is made
 * active when the catalog holds it and destroyed when it does not. Active
 * opt-outs and receipts are the keyring's own and are left alone.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forget/change.h"
#include "store/store.h"
#include "util/util.h"

typedef struct recon {
    lethe_store *s;
    kr_ref *used;          /* the photo keys the catalog names, sorted */
    size_t nused;
    kr_ref *shred, *settle;
    size_t nshred, nsettle, cap_shred, cap_settle;
    int rc;                /* why the walk stopped (the store's message says more) */
} recon;

int store_ref_cmp(const void *a, const void *b)
{
    const kr_ref *x = a, *y = b;
    if (x->slot != y->slot)
        return x->slot < y->slot ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static int push(kr_ref **v, size_t *n, size_t *cap, kr_ref r)
{
    if (*n == *cap) {
        size_t nc = *cap ? 2 * *cap : 256;
        kr_ref *t = lethe_realloc(*v, nc * sizeof(*t));
        if (!t)
            return -1;
        *v = t;
        *cap = nc;
    }
    (*v)[(*n)++] = r;
    return 0;
}

int store_key_refs(lethe_store *s, kr_ref **out, size_t *n)
{
    sqlite3_stmt *st;
    size_t cap = 0;
    int rc = store_prepare(s, "SELECT key_slot, key_id FROM photos", &st), step;
    *out = NULL;
    *n = 0;
    if (rc)
        return rc;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        kr_ref r = {(uint64_t)sqlite3_column_int64(st, 0), (uint64_t)sqlite3_column_int64(st, 1)};
        if (push(out, n, &cap, r)) {
            rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
            break;
        }
    }
    if (rc == LETHE_OK && step != SQLITE_DONE)
        rc = store_sqlfail(s, "reading photos");
    sqlite3_finalize(st);
    if (rc) {
        lethe_free(*out);
        *out = NULL;
        *n = 0;
    } else if (*n) {
        qsort(*out, *n, sizeof(**out), store_ref_cmp);
    }
    return rc;
}

/* Step st (finalized here) for one row: *found 1 or 0. A failed step is
 * no "not there": the status, with the store's message saying what failed,
 * or recovery would destroy a record the catalog names. */
static int one_row(lethe_store *s, sqlite3_stmt *st, const char *what, int *found)
{
    int step = sqlite3_step(st), rc = LETHE_OK;
    *found = step == SQLITE_ROW;
    if (step != SQLITE_ROW && step != SQLITE_DONE)
        rc = store_sqlfail(s, what);
    sqlite3_finalize(st);
    return rc;
}

/* Does the catalog hold this pending record? (*held) */
static int catalog_holds(lethe_store *s, int kind, kr_ref ref, const uint8_t *payload,
                         size_t len, int *held)
{
    sqlite3_stmt *st;
    char hex[65];
    int rc;
    *held = 0;
    if (kind == KR_OPTOUT) {
        if ((rc = store_prepare(s, "SELECT 1 FROM optouts WHERE kr_id = ? AND removed_at IS NULL",
                                &st)))
            return rc;
        sqlite3_bind_int64(st, 1, (int64_t)ref.id);
        return one_row(s, st, "recovery: looking up a pending opt-out", held);
    }
    if (len != 32)
        return LETHE_OK; /* no receipt's hash: the catalog cannot hold it */
    if ((rc = store_prepare(s, "SELECT 1 FROM receipts WHERE hash = ?", &st)))
        return rc;
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", payload[i]);
    sqlite3_bind_text(st, 1, hex, 64, SQLITE_TRANSIENT);
    return one_row(s, st, "recovery: looking up a pending receipt", held);
}

/* An opt-out withdrawn in the catalog whose record survived a crash? */
static int catalog_withdrew(lethe_store *s, kr_ref ref, int *withdrawn)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s, "SELECT 1 FROM optouts WHERE kr_id = ? AND removed_at IS NOT NULL",
                           &st);
    *withdrawn = 0;
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, (int64_t)ref.id);
    return one_row(s, st, "recovery: looking up an opt-out", withdrawn);
}

static int visit(void *ctx, int kind, kr_ref ref, unsigned flags, const uint8_t *payload,
                 size_t len)
{
    recon *x = ctx;
    int yes = 0, r = 0;
    if (kind == KR_PHOTO) {
        if (!bsearch(&ref, x->used, x->nused, sizeof(ref), store_ref_cmp))
            r = push(&x->shred, &x->nshred, &x->cap_shred, ref);
    } else if ((kind == KR_OPTOUT || kind == KR_RECEIPT) && (flags & KR_PENDING)) {
        if ((x->rc = catalog_holds(x->s, kind, ref, payload, len, &yes)) != LETHE_OK)
            return 1;
        r = yes ? push(&x->settle, &x->nsettle, &x->cap_settle, ref)
                : push(&x->shred, &x->nshred, &x->cap_shred, ref);
    } else if (kind == KR_OPTOUT) {
        if ((x->rc = catalog_withdrew(x->s, ref, &yes)) != LETHE_OK)
            return 1;
        if (yes)
            r = push(&x->shred, &x->nshred, &x->cap_shred, ref);
    }
    if (r)
        x->rc = store_fail(x->s, LETHE_ERR_NOMEM, "out of memory");
    return r != 0;
}

int store_recover(lethe_store *s)
{
    recon x;
    char msg[512];
    uint64_t damaged = 0;
    memset(&x, 0, sizeof(x));
    x.s = s;
    int rc = store_exec(s, "BEGIN");
    if (rc == LETHE_OK) {
        rc = store_key_refs(s, &x.used, &x.nused);
        if (rc == LETHE_OK &&
            (rc = kr_foreach(s->kr, visit, &x, &damaged, msg, sizeof(msg))) != LETHE_OK)
            rc = x.rc ? x.rc : store_fail(s, rc, "%s", msg);
        /* a read transaction, ended keeping the message being returned (a
         * COMMIT that fails, out of memory, is rolled back, not left open) */
        store_end_read(s);
    }
    if (rc == LETHE_OK && x.nshred && (rc = kr_shred(s->kr, x.shred, x.nshred, msg, sizeof(msg))))
        rc = store_fail(s, rc, "recovery: %s", msg);
    if (rc == LETHE_OK && x.nsettle &&
        (rc = kr_settle(s->kr, x.settle, x.nsettle, msg, sizeof(msg))))
        rc = store_fail(s, rc, "recovery: %s", msg);
    if (rc == LETHE_OK)
        rc = store_scrub(s, 1);
    lethe_free(x.used);
    lethe_free(x.shred);
    lethe_free(x.settle);
    return rc;
}
