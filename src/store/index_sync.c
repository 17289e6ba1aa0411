/*
 * index_sync.c: keeping the descriptor index (faces.idx, a derived file of
 * templates in the clear, never in a backup) in step with the catalog. The
 * catalog's meta.index_gen names the generation the index must have; a
 * change patches the index after its commit and records the generation,
 * and an index of another generation (a crash in between, a lost or
 * damaged file) is rebuilt from the catalog's sealed templates.
 */
#include <assert.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>

#include "store/share.h"
#include "store/store.h"
#include "util/util.h"

/* Open the one writing handle of the index (the caller holds the store
 * lock, so no other process of ours writes). */
static int index_writer(lethe_store *s, idx **wx)
{
    char msg[512];
    char *path = store_file(s, STORE_INDEX);
    if (!path)
        return store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    int r = idx_open(path, IDX_WRITE | IDX_CREATE, wx, msg, sizeof(msg));
    if (r == LETHE_ERR_FORMAT || r == LETHE_ERR_UNSUPPORTED) {
        /* a damaged or foreign index: it is derived data, start it afresh */
        r = idx_open(path, IDX_WRITE | IDX_CREATE | IDX_TRUNCATE, wx, msg, sizeof(msg));
    }
    lethe_free(path);
    return r == 0 ? LETHE_OK
                  : store_fail(s, r == LETHE_ERR_NOMEM ? LETHE_ERR_NOMEM : LETHE_ERR_IO, "%s", msg);
}

/* Rebuild the index from the catalog's templates, as of generation gen:
 * every face with a template, opened with its photo's key. */
static int index_rebuild(lethe_store *s, idx *wx, uint64_t gen)
{
    char msg[512];
    sqlite3_stmt *st = NULL;
    enum { CHUNK = 4096 };
    int64_t *ids = lethe_malloc(CHUNK * sizeof(int64_t)), photo = -1;
    float *vecs = lethe_malloc((size_t)CHUNK * IDX_DIM * sizeof(float));
    uint8_t key[KR_KEY];
    kr_ref ref = {0, 0};
    size_t n = 0;
    int rc, step = SQLITE_DONE;
    if (!ids || !vecs) {
        rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
        goto out;
    }
    if (idx_clear(wx, msg, sizeof(msg)) != 0) {
        rc = store_fail(s, LETHE_ERR_IO, "%s", msg);
        goto out;
    }
    if ((rc = store_prepare(s, "SELECT f.id, f.ord, f.sealed, p.id, p.key_slot, p.key_id "
                               "FROM faces f JOIN photos p ON p.id = f.photo "
                               "WHERE f.has_template ORDER BY f.id", &st)))
        goto out;
    for (;;) {
        step = sqlite3_step(st);
        if (step == SQLITE_ROW) {
            seal_face f;
            if (sqlite3_column_int64(st, 3) != photo) {
                photo = sqlite3_column_int64(st, 3);
                ref.slot = (uint64_t)sqlite3_column_int64(st, 4);
                ref.id = (uint64_t)sqlite3_column_int64(st, 5);
                if ((rc = store_photo_key(s, ref, key)))
                    goto out;
            }
            int o = seal_face_open(key, ref.id, sqlite3_column_int(st, 1),
                                   sqlite3_column_blob(st, 2), (size_t)sqlite3_column_bytes(st, 2),
                                   &f);
            if (o != LETHE_OK || !f.has_template) {
                rc = o == LETHE_ERR_NOMEM
                         ? store_fail(s, o, "out of memory")
                         : store_fail(s, LETHE_ERR_STORE, "face %lld does not open with its "
                                      "photo's key", (long long)sqlite3_column_int64(st, 0));
                goto out;
            }
            ids[n] = sqlite3_column_int64(st, 0);
            memcpy(vecs + n * IDX_DIM, f.tmpl, IDX_DIM * sizeof(float));
            sodium_memzero(&f, sizeof(f));
            n++;
        }
        if (n && (n == CHUNK || step != SQLITE_ROW)) {
            int r = idx_append(wx, ids, vecs, n, msg, sizeof(msg));
            if (r != LETHE_OK) {
                rc = store_fail(s, r == LETHE_ERR_NOMEM ? r : LETHE_ERR_IO, "%s", msg);
                goto out;
            }
            n = 0;
        }
        if (step != SQLITE_ROW)
            break;
    }
    if (step != SQLITE_DONE) {
        rc = store_sqlfail(s, "reading templates");
        goto out;
    }
    if (idx_commit(wx, gen, msg, sizeof(msg)) != 0)
        rc = store_fail(s, LETHE_ERR_IO, "%s", msg);
out:
    sqlite3_finalize(st);
    sodium_memzero(key, sizeof(key));
    if (vecs)
        sodium_memzero(vecs, (size_t)CHUNK * IDX_DIM * sizeof(float));
    lethe_free(ids);
    lethe_free(vecs);
    return rc;
}

int store_index_apply(lethe_store *s, uint64_t gen, const int64_t *rm, size_t nrm,
                      const int64_t *ids, const float *vecs, size_t n)
{
    char msg[512];
    size_t removed;
    int64_t have;
    idx *wx = NULL;
    /* a shared handle's searches wait while the index changes (share.h) */
    share_index_write_begin(s);
    int rc = index_writer(s, &wx);
    if (rc) {
        share_index_write_end(s);
        return rc; /* the next writable open rebuilds it */
    }
    assert(s->locked); /* the one writer of the index */
    /* Only when the index holds the generation just before ours can it be
     * patched; otherwise (an earlier crash, a lost file) rebuild it. */
    if (idx_generation(wx) + 1 != gen) {
        rc = store_meta_get_int(s, "index_gen", &have);
        if (rc == LETHE_OK)
            rc = index_rebuild(s, wx, (uint64_t)have);
    } else if ((nrm && idx_remove(wx, rm, nrm, &removed, msg, sizeof(msg)) != 0) ||
               (n && idx_append(wx, ids, vecs, n, msg, sizeof(msg)) != 0) ||
               idx_commit(wx, gen, msg, sizeof(msg)) != 0) {
        rc = store_fail(s, LETHE_ERR_IO, "%s (the index will be rebuilt)", msg);
    }
    idx_close(wx);
    share_index_write_end(s);
    return rc;
}

int store_index_sync(lethe_store *s)
{
    char msg[512];
    int64_t gen;
    idx *rx = NULL, *wx = NULL;
    char *path = store_file(s, STORE_INDEX);
    int rc = store_meta_get_int(s, "index_gen", &gen);
    if (!path)
        return store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    if (rc == LETHE_OK && idx_open(path, IDX_READ, &rx, msg, sizeof(msg)) == 0 &&
        idx_generation(rx) == (uint64_t)gen) {
        idx_close(rx);
        lethe_free(path);
        return LETHE_OK;
    }
    idx_close(rx);
    lethe_free(path);
    if (rc)
        return rc;
    /* A writer at work brings it up to date itself. */
    if (!s->locked && flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0)
        return LETHE_OK;
    int had = s->locked;
    s->locked = 1;
    if ((rc = store_meta_get_int(s, "index_gen", &gen)) == LETHE_OK &&
        (rc = index_writer(s, &wx)) == LETHE_OK) {
        if (idx_generation(wx) != (uint64_t)gen || idx_count(wx) == 0)
            rc = index_rebuild(s, wx, (uint64_t)gen);
        idx_close(wx);
    }
    if (!had)
        store_unlock(s);
    return rc;
}

int store_index_ready(lethe_store *s)
{
    char msg[512];
    int64_t gen;
    /* A handle that lives long (a server) keeps its index open while other
     * handles change the store: once the catalog names a newer generation,
     * the one it holds is stale (rows appended since are past its map) and
     * it opens the file again. */
    if (s->ix && store_meta_get_int(s, "index_gen", &gen) == LETHE_OK &&
        idx_generation(s->ix) != (uint64_t)gen) {
        idx_close(s->ix);
        s->ix = NULL;
    }
    if (s->ix)
        return LETHE_OK;
    char *path = store_file(s, STORE_INDEX);
    if (!path)
        return store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    int r = idx_open(path, IDX_READ, &s->ix, msg, sizeof(msg));
    lethe_free(path);
    if (r == LETHE_ERR_NOT_FOUND && (s->flags & LETHE_STORE_READONLY))
        return store_fail(s, LETHE_ERR_STORE, "%s (open the store writable to rebuild it)", msg);
    if (r == LETHE_OK)
        return LETHE_OK;
    return store_fail(s, r == LETHE_ERR_NOMEM || r == LETHE_ERR_IO ? r : LETHE_ERR_STORE, "%s",
                      msg);
}

