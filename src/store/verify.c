/*
 * verify.c: 1:1 verification against stored photos (lethe_verify). The
 * photos are selected as a lookup selects them; each template they hold is
 * opened with its photo's key and compared with the descriptor. It reads
 * no index: a verification is exact whatever the size of the store. Like a
 * search it is logged, in the transaction that reads the templates, before
 * it answers.
 */
#include <math.h>
#include <sodium.h>
#include <string.h>

#include "store/store.h"
#include "util/util.h"

static const char photo_faces_sql[] =
    "SELECT p.key_slot, p.key_id, p.sealed, f.ord, f.sealed, f.id "
    "FROM faces f JOIN photos p ON p.id = f.photo "
    "WHERE f.photo = ?1 AND f.has_template AND p.status = 'analysed' AND f.model = ?2 "
    "ORDER BY f.id";

/* Compare q with one face row of st; a row whose key is gone (erased a
 * moment ago) is not held. */
static int verify_row(lethe_store *s, sqlite3_stmt *st, const float *q, lethe_verify_result *r)
{
    uint8_t key[KR_KEY];
    seal_photo ph;
    seal_face sf;
    kr_ref ref = {(uint64_t)sqlite3_column_int64(st, 0), (uint64_t)sqlite3_column_int64(st, 1)};
    int rc = kr_get_key(s->kr, ref, key);
    if (rc != LETHE_OK)
        return rc == LETHE_ERR_NOMEM ? store_fail(s, rc, "out of memory") : LETHE_OK;
    rc = seal_photo_open(key, ref.id, sqlite3_column_blob(st, 2),
                         (size_t)sqlite3_column_bytes(st, 2), &ph);
    if (rc == LETHE_OK)
        rc = seal_face_open(key, ref.id, sqlite3_column_int(st, 3), sqlite3_column_blob(st, 4),
                            (size_t)sqlite3_column_bytes(st, 4), &sf);
    sodium_memzero(key, sizeof(key));
    if (rc != LETHE_OK)
        return rc == LETHE_ERR_NOMEM ? store_fail(s, rc, "out of memory") : LETHE_OK;
    if (sf.has_template) {
        float d = idx_exact_distance(q, sf.tmpl);
        if (r->templates == 0 || d < r->distance) {
            r->distance = d;
            r->face = sqlite3_column_int64(st, 5);
            sodium_bin2hex(r->photo, sizeof(r->photo), ph.sha, 32);
        }
        r->templates++;
    }
    sodium_memzero(&sf, sizeof(sf));
    return LETHE_OK;
}

/* Every template of the photos sel selects, compared with q. */
static int verify_photos(lethe_store *s, sqlite3_stmt *sel, const float *q, int64_t model,
                         lethe_verify_result *r)
{
    sqlite3_stmt *st = NULL;
    int rc = store_prepare(s, photo_faces_sql, &st), step = SQLITE_DONE;
    if (rc == LETHE_OK)
        sqlite3_bind_int64(st, 2, model); /* only the query's model's templates */
    while (rc == LETHE_OK && (step = sqlite3_step(sel)) == SQLITE_ROW) {
        r->photos++;
        sqlite3_bind_int64(st, 1, sqlite3_column_int64(sel, 0));
        int fs;
        while (rc == LETHE_OK && (fs = sqlite3_step(st)) == SQLITE_ROW)
            rc = verify_row(s, st, q, r);
        if (rc == LETHE_OK && fs != SQLITE_DONE)
            rc = store_sqlfail(s, "reading the photo's templates");
        sqlite3_reset(st);
    }
    if (rc == LETHE_OK && step != SQLITE_DONE)
        rc = store_sqlfail(s, "selecting the photos to verify against");
    sqlite3_finalize(st);
    return rc;
}

static int verify_check(lethe_store *s, const float *q, int kind, const char *value,
                        const lethe_search_options *o)
{
    int rc;
    if (!o->purpose || !*o->purpose)
        return store_fail(s, LETHE_ERR_ARG, "a verification needs a purpose (it is logged)");
    if ((rc = store_check_text(s, "the purpose", o->purpose, 0)) ||
        (rc = store_check_text(s, "the actor", o->actor, 1)))
        return rc;
    if (kind < 0 || kind > LETHE_LOOKUP_FILE || !value || !*value)
        return store_fail(s, LETHE_ERR_ARG, "a verification needs the photos to verify against");
    if (!q)
        return store_fail(s, LETHE_ERR_ARG, "no descriptor");
    for (int i = 0; i < IDX_DIM; i++)
        if (!isfinite(q[i]))
            return store_fail(s, LETHE_ERR_ARG, "the descriptor has a non-finite component");
    if (isnan(o->threshold) || o->threshold < 0)
        return store_fail(s, LETHE_ERR_ARG, "bad threshold");
    return LETHE_OK;
}

int lethe_verify(lethe_store *s, const float *q, int kind, const char *value,
                 const lethe_search_options *opt, lethe_verify_result *r)
{
    lethe_search_options o;
    lethe_verify_result res;
    sqlite3_stmt *sel = NULL;
    uint8_t vh[32];
    char qh[65];
    int rc;
    if (opt)
        o = *opt;
    else
        lethe_search_options_init(&o);
    memset(&res, 0, sizeof(res));
    if (r)
        memset(r, 0, sizeof(*r));
    if ((rc = verify_check(s, q, kind, value, &o)) ||
        (rc = store_lookup_stmt(s, kind, value, NULL, 0, &sel, vh)))
        return rc;
    res.threshold = o.threshold > 0 && isfinite(o.threshold) ? o.threshold
                                                              : lethe_descriptor_threshold();
    /* the reads and the log entry are one transaction: a verification is
     * recorded if and only if it answered */
    if ((rc = store_begin(s)) != LETHE_OK) {
        sqlite3_finalize(sel);
        return rc;
    }
    int64_t model = 0;
    uint64_t held = 0;
    if ((rc = store_search_model(s, o.model, UINT64_MAX, &model, &held)) == LETHE_OK)
        rc = verify_photos(s, sel, q, model, &res);
    sqlite3_finalize(sel);
    if (rc == LETHE_OK && res.templates == 0)
        rc = store_fail(s, LETHE_ERR_NOT_FOUND, "%s",
                        res.photos ? "the photos selected hold no face template"
                                   : "no photo held matches the selection");
    if (rc == LETHE_OK) {
        res.match = res.distance <= res.threshold;
        store_keyed_hash(s, q, IDX_DIM * sizeof(float), qh);
        rc = store_log_append(s, "verify", o.actor, o.purpose, qh, (int64_t)res.templates, NULL);
    }
    if (rc == LETHE_OK)
        rc = store_commit(s);
    else
        store_rollback(s);
    if (rc == LETHE_OK && r)
        *r = res;
    sodium_memzero(&res, sizeof(res));
    return rc;
}
