/*
 * retemplate.c: lethe_retemplate, the photos' templates computed again
 * with the engine's model.
 *
 * After a model is retired (forget/retire.c) its photos keep their rows
 * and boxes but no template; a store made by an older model holds
 * templates a newer engine's queries cannot be compared with. Neither the
 * photo nor its pixels are in the store, only the path each provenance
 * record gives and the photo's SHA-256 (both sealed): a photo is described
 * again only when a recorded path still holds exactly those bytes.
 *
 * Each photo is its own change (forget/change.h): its old faces and
 * templates go through erase_part (the photo is re-keyed, the pages
 * scrubbed, as every erasure), then the faces the engine finds now are
 * added with the current model's templates, under the consent policy and
 * the face opt-outs as at ingest.
 */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "forget/change.h"
#include "forget/erase.h"
#include "forget/optout.h"
#include "store/store.h"
#include "util/util.h"

#define MAX_PHOTO_BYTES (256u << 20)

typedef struct rt {
    lethe_store *s;
    lethe_engine *engine;
    const char *actor;
    int dry;
    lethe_model_id model;
    char detector[8];
    optout *optouts;
    size_t noptouts;
    lethe_retemplate_result *res;
    size_t capmissed;
} rt;

/* Photos whose faces are of another model than cur (0: any). */
static int candidates(lethe_store *s, int64_t cur, int64_t **ids, size_t *n)
{
    sqlite3_stmt *st;
    int rc;
    *ids = NULL;
    *n = 0;
    if ((rc = store_prepare(s, "SELECT DISTINCT f.photo FROM faces f JOIN photos p ON "
                               "p.id = f.photo WHERE p.kind = 'photo' AND p.status = 'analysed' "
                               "AND f.model IS NOT ? ORDER BY f.photo", &st)))
        return rc;
    sqlite3_bind_int64(st, 1, cur);
    return store_ids(s, st, "selecting the photos to describe again", ids, n);
}

static int add_miss(rt *t, const uint8_t sha[32], const char *path, const char *why)
{
    lethe_retemplate_result *r = t->res;
    if (r->nmissed == t->capmissed) {
        size_t nc = t->capmissed ? t->capmissed * 2 : 16;
        lethe_retemplate_miss *m = lethe_realloc(r->missed, nc * sizeof(*m));
        if (!m)
            return store_fail(t->s, LETHE_ERR_NOMEM, "out of memory");
        r->missed = m;
        t->capmissed = nc;
    }
    lethe_retemplate_miss *m = &r->missed[r->nmissed];
    sodium_bin2hex(m->photo, sizeof(m->photo), sha, 32);
    if (!(m->path = lethe_strdup(path ? path : "")))
        return store_fail(t->s, LETHE_ERR_NOMEM, "out of memory");
    m->reason = why;
    r->nmissed++;
    return LETHE_OK;
}

/* The photo's bytes from the first recorded path that still holds them:
 * *bytes (lethe_free), or NULL with *why and *path_out the last tried. */
static void find_bytes(const photo_rows *r, uint8_t **bytes, size_t *len, const char **why,
                       const char **path_out)
{
    char msg[256];
    *bytes = NULL;
    *why = "no path recorded";
    *path_out = "";
    for (int i = 0; i < r->nprov; i++) {
        const char *p = r->prov[i].v[PV_PATH];
        uint8_t sha[32], *b = NULL;
        size_t n = 0;
        if (!p || !*p)
            continue;
        *path_out = p;
        errno = 0;
        int rc = lethe_read_file(p, MAX_PHOTO_BYTES, &b, &n, msg, sizeof(msg));
        if (rc) {
            *why = rc == LETHE_ERR_NOT_FOUND || errno == ENOENT ? "missing" : "unreadable";
            continue;
        }
        crypto_hash_sha256(sha, b, n);
        if (memcmp(sha, r->ph.sha, 32) != 0) {
            *why = "changed";
            lethe_free(b);
            continue;
        }
        *bytes = b;
        *len = n;
        return;
    }
}

/* The policy allows templates for the photo's provenance: 1, 0, -1. */
static int eligible(lethe_store *s, const photo_rows *r)
{
    const char *jur[64], *con[64];
    int n = r->nprov < 64 ? r->nprov : 64;
    for (int i = 0; i < n; i++) {
        jur[i] = r->prov[i].v[PV_JURISDICTION];
        con[i] = r->prov[i].v[PV_CONSENT];
    }
    return store_photo_eligible(s->pol, jur, con, n);
}

/* In change c: the old faces go (erase_part), the new ones come. */
static int replace_faces(rt *t, change *c, int64_t photo, const lethe_analysis *a,
                         const char *const *prov, const uint8_t sha[32])
{
    lethe_store *s = t->s;
    photo_rows r;
    erase_counts ec = {0};
    int64_t model = 0, *old = NULL;
    size_t nold = 0;
    int rc;
    if ((rc = rows_read(s, photo, &r)))
        return rc;
    if (r.nfaces && !(old = lethe_malloc((size_t)r.nfaces * sizeof(*old))))
        rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    for (int i = 0; rc == LETHE_OK && i < r.nfaces; i++)
        old[nold++] = r.faces[i].id;
    rows_free(&r);
    if (rc == LETHE_OK)
        rc = erase_part(c, photo, old, nold, 1, NULL, &ec);
    lethe_free(old);
    if (rc || (rc = store_model_use(s, &t->model, &model)) || (rc = store_dg(s, photo, -1)) ||
        (rc = rows_read_photo(s, photo, &r)))
        return rc;
    r.faces_found = a->count;
    r.ph.width = a->width;
    r.ph.height = a->height;
    rc = rows_update_photo(s, &r);
    for (int i = 0; i < a->count && rc == LETHE_OK; i++) {
        const lethe_face *f = &a->faces[i];
        seal_face sf;
        int64_t id;
        if (f->has_descriptor && t->noptouts &&
            optout_refuses_face(s, t->optouts, t->noptouts, sha, prov, f->descriptor))
            continue;
        memset(&sf, 0, sizeof(sf));
        memcpy(sf.box, f->box, sizeof(sf.box));
        sf.score = f->score;
        sf.has_template = f->has_descriptor;
        if (sf.has_template)
            memcpy(sf.tmpl, f->descriptor, sizeof(sf.tmpl));
        rc = rows_insert_face(s, &r, i, &sf, model, t->detector, &id);
        if (rc == LETHE_OK && sf.has_template) {
            rc = change_index_add(c, id, sf.tmpl);
            t->res->templates++;
        }
        sodium_memzero(&sf, sizeof(sf));
    }
    if (rc == LETHE_OK)
        rc = store_dg(s, photo, 1);
    rows_free(&r);
    return rc;
}

/* One candidate: checked, and unless a dry run, described again. */
static int one_photo(rt *t, int64_t photo)
{
    lethe_store *s = t->s;
    photo_rows r;
    uint8_t *bytes = NULL;
    size_t len = 0;
    const char *why = NULL, *path = NULL;
    char msg[256], detail[128];
    change c = {0};
    lethe_analysis a;
    int rc;
    memset(&a, 0, sizeof(a));
    if ((rc = store_exec(s, "BEGIN")))
        return rc;
    rc = rows_read(s, photo, &r);
    store_end_read(s);
    if (rc == LETHE_ERR_NOT_FOUND)
        return LETHE_OK; /* erased since it was listed */
    if (rc)
        return rc;
    int ok = eligible(s, &r);
    if (ok <= 0) {
        rc = add_miss(t, r.ph.sha, "", "refused by the consent policy");
        goto out;
    }
    find_bytes(&r, &bytes, &len, &why, &path);
    if (!bytes) {
        rc = add_miss(t, r.ph.sha, path, why);
        goto out;
    }
    if (t->dry) {
        t->res->recomputed++;
        goto out;
    }
    if (lethe_engine_analyze_bytes(t->engine, bytes, len, NULL, LETHE_WANT_DESCRIPTOR, &a, msg,
                                   sizeof(msg)) != LETHE_OK) {
        rc = add_miss(t, r.ph.sha, path, "not a photo");
        goto out;
    }
    uint64_t before = t->res->templates;
    if ((rc = change_begin(s, &c)) == LETHE_OK &&
        (rc = replace_faces(t, &c, photo, &a, (const char *const *)r.prov[0].v, r.ph.sha)) ==
            LETHE_OK) {
        snprintf(detail, sizeof(detail), "{\"templates\":%llu}",
                 (unsigned long long)(t->res->templates - before));
        rc = store_log_append(s, "retemplate", t->actor, "", "",
                              (int64_t)(t->res->templates - before), detail);
    }
    if (rc == LETHE_OK)
        rc = change_commit(&c);
    if (rc == LETHE_OK || c.committed)
        t->res->recomputed++;
    else
        t->res->templates = before;
    change_free(&c);
out:
    lethe_faces_free(a.faces);
    lethe_free(bytes);
    rows_free(&r);
    return rc;
}

static int retemplate_run(rt *t, lethe_progress_fn progress, void *ctx)
{
    lethe_store *s = t->s;
    int64_t cur = 0, *ids = NULL;
    size_t n = 0;
    int retired = 0, rc = store_exec(s, "BEGIN");
    if (rc)
        return rc;
    rc = store_model_get(s, &t->model, &cur, &retired);
    if (rc == LETHE_ERR_NOT_FOUND)
        rc = LETHE_OK, cur = 0;
    if (rc == LETHE_OK && retired) {
        char label[128];
        store_model_label(&t->model, label, sizeof(label));
        rc = store_fail(s, LETHE_ERR_POLICY, "the engine's model %s is retired in this store: "
                        "it may not add templates", label);
    }
    if (rc == LETHE_OK)
        rc = candidates(s, cur, &ids, &n);
    store_end_read(s);
    t->res->candidates = n;
    for (size_t i = 0; i < n && rc == LETHE_OK; i++) {
        rc = one_photo(t, ids[i]);
        if (progress)
            progress(ctx, i + 1, n);
    }
    lethe_free(ids);
    return rc;
}

int lethe_retemplate(lethe_store *s, lethe_engine *engine, const char *actor, int dry_run,
                     lethe_progress_fn progress, void *ctx, lethe_retemplate_result *res)
{
    rt t;
    int rc;
    memset(res, 0, sizeof(*res));
    memset(&t, 0, sizeof(t));
    if ((rc = store_writable(s)) || (rc = store_check_text(s, "the actor", actor, 1)))
        return rc;
    if (!engine)
        return store_fail(s, LETHE_ERR_ARG, "retemplate needs an engine");
    t.s = s;
    t.engine = engine;
    t.actor = actor;
    t.dry = dry_run;
    t.res = res;
    lethe_model_shipped(&t.model);
    snprintf(t.detector, sizeof(t.detector), "%s",
             strcmp(lethe_engine_precision(engine), "int8") ? "fp32" : "int8");
    if (!dry_run && (rc = store_lock(s, "retemplate")))
        return rc;
    rc = optout_load_all(s, &t.optouts, &t.noptouts);
    if (rc == LETHE_OK)
        rc = retemplate_run(&t, progress, ctx);
    optout_free_all(t.optouts, t.noptouts);
    store_unlock(s);
    return rc;
}

void lethe_retemplate_result_free(lethe_retemplate_result *res)
{
    if (!res)
        return;
    for (size_t i = 0; i < res->nmissed; i++)
        lethe_free(res->missed[i].path);
    lethe_free(res->missed);
    res->missed = NULL;
    res->nmissed = 0;
}
