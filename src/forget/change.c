/*
 * change.c: the commit protocol of every change to personal data (see
 * change.h for the steps and why they are in that order).
 */
#include "forget/change.h"

#include <assert.h>
#include <sodium.h>
#include <string.h>

#include "store/store.h"
#include "util/util.h"

static int grow(void **p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    size_t nc = *cap ? *cap * 2 : 64;
    while (nc < need)
        nc *= 2;
    void *t = lethe_realloc(*p, nc * size);
    if (!t)
        return -1;
    *p = t;
    *cap = nc;
    return 0;
}

int change_begin(lethe_store *s, change *c)
{
    assert(s->locked);
    assert(!c->open);
    c->s = s;
    c->erasing = 0;
    c->committed = 0;
    c->deletes_ok = 0;
    c->nshred = c->nsettle = c->nrm = c->nadd = 0;
    int rc = store_begin(s);
    if (rc == LETHE_OK)
        c->open = 1;
    return rc;
}

int change_shred(change *c, kr_ref ref)
{
    if (grow((void **)&c->shred, &c->capshred, c->nshred + 1, sizeof(*c->shred)))
        return store_fail(c->s, LETHE_ERR_NOMEM, "out of memory");
    c->shred[c->nshred++] = ref;
    c->erasing = 1;
    return LETHE_OK;
}

int change_settle(change *c, kr_ref ref)
{
    if (grow((void **)&c->settle, &c->capsettle, c->nsettle + 1, sizeof(*c->settle)))
        return store_fail(c->s, LETHE_ERR_NOMEM, "out of memory");
    c->settle[c->nsettle++] = ref;
    return LETHE_OK;
}

int change_index_remove(change *c, int64_t face)
{
    if (grow((void **)&c->rm, &c->caprm, c->nrm + 1, sizeof(*c->rm)))
        return store_fail(c->s, LETHE_ERR_NOMEM, "out of memory");
    c->rm[c->nrm++] = face;
    return LETHE_OK;
}

int change_index_add(change *c, int64_t face, const float *vec)
{
    size_t cap = c->capadd;
    if (grow((void **)&c->add_ids, &cap, c->nadd + 1, sizeof(*c->add_ids)))
        return store_fail(c->s, LETHE_ERR_NOMEM, "out of memory");
    if (cap != c->capadd) {
        float *t = lethe_realloc(c->add_vecs, cap * IDX_DIM * sizeof(float));
        if (!t)
            return store_fail(c->s, LETHE_ERR_NOMEM, "out of memory");
        c->add_vecs = t;
        c->capadd = cap;
    }
    c->add_ids[c->nadd] = face;
    memcpy(c->add_vecs + c->nadd * IDX_DIM, vec, IDX_DIM * sizeof(float));
    c->nadd++;
    return LETHE_OK;
}

void change_abort(change *c)
{
    if (c->open) {
        store_rollback(c->s);
        kr_discard(c->s->kr);
        c->open = 0;
    }
}

void change_free(change *c)
{
    change_abort(c);
    if (c->add_vecs)
        sodium_memzero(c->add_vecs, c->capadd * IDX_DIM * sizeof(float));
    lethe_free(c->shred);
    lethe_free(c->settle);
    lethe_free(c->rm);
    lethe_free(c->add_ids);
    lethe_free(c->add_vecs);
    memset(c, 0, sizeof(*c));
}

/* Steps 1-3: everything up to and including COMMIT. */
static int commit_catalog(change *c, uint64_t *gen)
{
    lethe_store *s = c->s;
    char msg[512];
    int rc = LETHE_OK;
    if (s->deletes > c->deletes_ok)
        return store_fail(s, LETHE_ERR_INTERNAL,
                          "%llu personal rows were deleted outside the erasure protocol",
                          (unsigned long long)(s->deletes - c->deletes_ok));
    if (c->nrm || c->nadd)
        rc = store_bump_gen(s, gen);
    if (rc == LETHE_OK && (c->erasing || c->nshred || c->nsettle))
        rc = store_meta_set_int(s, "scrub_pending", 1);
    if (rc == LETHE_OK && kr_staged(s->kr) && (rc = kr_flush(s->kr, msg, sizeof(msg))))
        rc = store_fail(s, rc, "%s", msg);
    if (rc == LETHE_OK)
        rc = store_commit(s);
    return rc;
}

/* Steps 4-6, after the commit. */
static int finish(change *c, uint64_t gen)
{
    lethe_store *s = c->s;
    char msg[512];
    int rc = LETHE_OK;
    if (c->nshred && (rc = kr_shred(s->kr, c->shred, c->nshred, msg, sizeof(msg))))
        rc = store_fail(s, rc, "committed, but %s; it is finished at the next open", msg);
    if (rc == LETHE_OK && c->nsettle &&
        (rc = kr_settle(s->kr, c->settle, c->nsettle, msg, sizeof(msg))))
        rc = store_fail(s, rc, "committed, but %s; it is finished at the next open", msg);
    /* The index is derived: if it cannot be patched, its generation lags and
     * the next writable open rebuilds it from the catalog. */
    if (gen) {
        char keep[sizeof(s->err)];
        memcpy(keep, s->err, sizeof(keep));
        store_index_apply(s, gen, c->rm, c->nrm, c->add_ids, c->add_vecs, c->nadd);
        memcpy(s->err, keep, sizeof(keep));
    }
    if (c->nadd)
        sodium_memzero(c->add_vecs, c->nadd * IDX_DIM * sizeof(float));
    /* A failure above leaves scrub_pending set: recovery does it all. */
    if (rc == LETHE_OK && (c->erasing || c->nshred || c->nsettle)) {
        int r = store_scrub(s, 0);
        if (r) {
            char why[sizeof(s->err)];
            memcpy(why, s->err, sizeof(why)); /* store_fail writes s->err */
            rc = store_fail(s, r, "committed, but the scrub failed (%s); it is redone at the "
                            "next open", why);
        }
    }
    return rc;
}

int change_commit(change *c)
{
    lethe_store *s = c->s;
    uint64_t gen = 0;
    assert(c->open);
    assert(s->locked);
    /* SQLite rolls a transaction back by itself after some errors (a page
     * it could not read, say); a caller that missed the error must not
     * "commit" nothing and report an erasure done */
    int rc = sqlite3_get_autocommit(s->db)
                 ? store_fail(s, LETHE_ERR_IO, "the change was rolled back after an I/O error; "
                                               "nothing was changed")
                 : commit_catalog(c, &gen);
    c->open = 0;
    if (rc != LETHE_OK) {
        store_rollback(s);
        kr_discard(s->kr);
        return rc;
    }
    c->committed = 1;
    return finish(c, gen);
}
