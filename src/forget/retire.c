/*
 * retire.c: lethe_model_retire, the erasure of every template a model made.
 *
 * A regulator may order a vendor to delete what a model derived from data
 * collected without consent; the model's templates must then go for real,
 * the way lethe_forget erases: in one change (forget/change.h), through
 * erase.h, scrubbed, with a signed receipt logged by its hash.
 *
 * What goes:
 *   - a descriptor ingested from outside is its own "photo" row, identified
 *     by the descriptor's hash: the row is nothing but the template, so it
 *     goes whole (erase_photos), provenance included;
 *   - a photo keeps its row, provenance and face boxes and loses its
 *     templates (erase_part re-keys it, so no older copy of the catalog
 *     opens them): lethe_retemplate may compute them again from the file
 *     with another model. A photo's templates are all of one model (one
 *     analysis makes them all; retemplate replaces them all).
 * The model's row stays, marked retired: it is not in the digest, so the
 * store's digest afterwards is that of a store that never held those
 * templates (for descriptors: never held those rows), and it makes ingest
 * refuse the model from then on.
 */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "forget/change.h"
#include "forget/erase.h"
#include "store/store.h"
#include "util/strbuf.h"
#include "util/util.h"

/* Ids of the photos of `kind` holding templates of the model. */
static int model_photos(lethe_store *s, int64_t model, const char *kind, int64_t **ids,
                        size_t *n)
{
    sqlite3_stmt *st;
    int rc;
    *ids = NULL;
    *n = 0;
    if ((rc = store_prepare(s, "SELECT DISTINCT f.photo FROM faces f JOIN photos p ON "
                               "p.id = f.photo WHERE f.model = ? AND f.has_template AND "
                               "p.kind = ? ORDER BY f.photo", &st)))
        return rc;
    sqlite3_bind_int64(st, 1, model);
    sqlite3_bind_text(st, 2, kind, -1, SQLITE_STATIC);
    return store_ids(s, st, "selecting the model's templates", ids, n);
}

/* Count what retiring the model erases (a dry run's answer). */
static int retire_count(lethe_store *s, int64_t model, size_t ndesc, size_t nphotos,
                        lethe_forget_result *r)
{
    char sql[200];
    snprintf(sql, sizeof(sql), "SELECT COUNT(*) FROM faces WHERE model = %lld AND has_template",
             (long long)model);
    int64_t t = store_count(s, sql);
    snprintf(sql, sizeof(sql), "SELECT COUNT(*) FROM provenance WHERE photo IN (SELECT f.photo "
             "FROM faces f JOIN photos p ON p.id = f.photo WHERE f.model = %lld AND "
             "f.has_template AND p.kind = 'descriptor')", (long long)model);
    int64_t pv = t < 0 ? -1 : store_count(s, sql);
    if (t < 0 || pv < 0)
        return store_status(s);
    r->templates = (uint64_t)t;
    r->photos = ndesc;
    r->faces = ndesc; /* a descriptor row has one face */
    r->provenance = (uint64_t)pv;
    (void)nphotos;
    return LETHE_OK;
}

static int retire_erase(change *c, const lethe_model_info *info, const int64_t *desc,
                        size_t ndesc, const int64_t *photos, size_t nphotos, const char *actor,
                        lethe_forget_result *r, char **receipt)
{
    lethe_store *s = c->s;
    erase_counts ec = {0};
    sqlite3_stmt *st;
    char now[32];
    strbuf b;
    int rc = erase_photos(c, desc, ndesc, &ec);
    for (size_t i = 0; i < nphotos && rc == LETHE_OK; i++)
        rc = erase_part(c, photos[i], NULL, 0, 1, NULL, &ec);
    if (rc)
        return rc;
    r->photos = ec.photos;
    r->provenance = ec.provenance;
    r->faces = ec.faces;
    r->templates = ec.templates;
    store_now(now);
    if ((rc = store_prepare(s, "UPDATE models SET retired_at = ? WHERE id = ?", &st)))
        return rc;
    sqlite3_bind_text(st, 1, now, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, info->id);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = store_sqlfail(s, "retiring the model");
    sqlite3_finalize(st);
    if (rc)
        return rc;
    sb_init(&b);
    sb_printf(&b, "\"model\":{\"name\":\"%s\",\"version\":\"%s\",\"weights\":\"%s\","
                  "\"precision\":\"%s\"}",
              info->model.name, info->model.version, info->model.weights,
              info->model.precision);
    char *members = sb_finish(&b);
    if (!members)
        return store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    rc = forget_receipt(c, "retire", actor, members, r, receipt);
    lethe_free(members);
    return rc;
}

int lethe_model_retire(lethe_store *s, const char *which, unsigned flags, const char *actor,
                       lethe_forget_result *res, char **receipt)
{
    lethe_forget_result r;
    lethe_model_info info;
    change c = {0};
    int64_t *desc = NULL, *photos = NULL;
    size_t ndesc = 0, nphotos = 0;
    char *rec = NULL, label[128];
    int rc, dry = (flags & LETHE_FORGET_DRY_RUN) != 0;
    memset(&r, 0, sizeof(r));
    if (receipt)
        *receipt = NULL;
    if ((rc = store_writable(s)) || (rc = store_check_text(s, "the actor", actor, 1)))
        goto done;
    if (dry ? (rc = store_exec(s, "BEGIN")) || (rc = dg_load(s, s->dig))
            : (rc = store_lock(s, "retire")) || (rc = change_begin(s, &c)))
        goto done;
    dg_final(s->dig, r.digest_before);
    if ((rc = store_model_find(s, which, &info)))
        goto done;
    store_model_label(&info.model, label, sizeof(label));
    if (info.retired_at[0]) {
        rc = store_fail(s, LETHE_ERR_ARG, "model %s was retired at %s already", label,
                        info.retired_at);
        goto done;
    }
    if ((rc = model_photos(s, info.id, "descriptor", &desc, &ndesc)) ||
        (rc = model_photos(s, info.id, "photo", &photos, &nphotos)) ||
        (rc = retire_count(s, info.id, ndesc, nphotos, &r)))
        goto done;
    if (dry) {
        memcpy(r.digest_after, r.digest_before, sizeof(r.digest_after));
        goto done;
    }
    /* every template of a model is everyone's it described: always wide */
    if (!(flags & LETHE_FORGET_CONFIRMED)) {
        r.wide = "retiring a model erases the templates of everyone it described";
        rc = store_fail(s, LETHE_ERR_CONFIRM, "not retired: %s; look at the dry run, then "
                        "confirm", r.wide);
        goto done;
    }
    rc = retire_erase(&c, &info, desc, ndesc, photos, nphotos, actor, &r, &rec);
    if (rc == LETHE_OK)
        rc = change_commit(&c);
    if (rc != LETHE_OK && !c.committed)
        memset(r.receipt_hash, 0, sizeof(r.receipt_hash));
done:;
    int committed = c.committed;
    if (dry)
        store_rollback(s);
    change_free(&c);
    store_unlock(s);
    lethe_free(desc);
    lethe_free(photos);
    if (res)
        *res = r;
    if ((rc == LETHE_OK || committed) && receipt)
        *receipt = rec;
    else
        lethe_free(rec);
    return rc;
}
