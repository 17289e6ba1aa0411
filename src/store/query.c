/*
 * query.c: what the store answers: 1:N search (exact, logged) and lookup
 * without a face (logged). Results are opened with each photo's key; a
 * photo whose key was destroyed a moment ago (an erasure that committed
 * while the search ran) is not shown.
 */
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/calibration.h"
#include "requests/requests.h"
#include "store/share.h"
#include "store/store.h"
#include "util/strbuf.h"
#include "util/util.h"

void lethe_search_options_init(lethe_search_options *o)
{
    memset(o, 0, sizeof(*o));
    o->top_k = 10;
    o->threshold = INFINITY;
}

/* The nine provenance strings of a match, in PV_* order. */
static void match_fields(lethe_match *m, const char **f[PV_FIELDS])
{
    f[PV_PATH] = &m->prov.path;
    f[PV_PHOTO_ID] = &m->prov.photo_id;
    f[PV_URL] = &m->prov.url;
    f[PV_UPLOADER] = &m->prov.uploader;
    f[PV_COLLECTED_AT] = &m->prov.collected_at;
    f[PV_SOURCE] = &m->prov.source;
    f[PV_LICENSE] = &m->prov.license;
    f[PV_JURISDICTION] = &m->prov.jurisdiction;
    f[PV_CONSENT] = &m->prov.consent;
}

/* Free a match's strings and zero it. */
static void match_clear(lethe_match *m)
{
    const char **f[PV_FIELDS];
    match_fields(m, f);
    for (int k = 0; k < PV_FIELDS; k++)
        lethe_free((char *)*f[k]);
    memset(m, 0, sizeof(*m));
}

void lethe_matches_free(lethe_match *m, size_t n)
{
    if (!m)
        return;
    for (size_t i = 0; i < n; i++)
        match_clear(&m[i]);
    lethe_free(m);
}

static const char face_sql[] =
    "SELECT p.id, p.key_slot, p.key_id, p.sealed, f.ord, f.sealed, "
    "  (SELECT COUNT(*) FROM provenance WHERE photo = p.id) "
    "FROM faces f JOIN photos p ON p.id = f.photo "
    "WHERE f.id = ?1 AND f.has_template AND p.status = 'analysed' AND f.model = ?2";
static const char first_prov_sql[] =
    "SELECT fp, source, license, jurisdiction, consent, sealed FROM provenance "
    "WHERE photo = ? ORDER BY id LIMIT 1";

/* Fill m's provenance from the photo's first record. */
static int fill_prov(sqlite3_stmt *pv, int64_t photo, const uint8_t *key, uint64_t key_id,
                     lethe_match *m)
{
    const char **f[PV_FIELDS];
    char *v[SP_FIELDS];
    int rc = LETHE_ERR_NOT_FOUND;
    match_fields(m, f);
    sqlite3_bind_int64(pv, 1, photo);
    int step = sqlite3_step(pv);
    if (step != SQLITE_ROW && step != SQLITE_DONE) /* a failed read: not a gone face */
        rc = store_sqlstatus(step);
    else if (step == SQLITE_ROW && sqlite3_column_bytes(pv, 0) == 32 &&
        (rc = seal_prov_open(key, key_id, sqlite3_column_blob(pv, 0), sqlite3_column_blob(pv, 5),
                             (size_t)sqlite3_column_bytes(pv, 5), v)) == LETHE_OK) {
        for (int i = 0; i < SP_FIELDS && rc == LETHE_OK; i++)
            if (!(*f[i] = lethe_strdup(v[i])))
                rc = LETHE_ERR_NOMEM;
        for (int i = 0; i < 4 && rc == LETHE_OK; i++) {
            const unsigned char *t = sqlite3_column_text(pv, 1 + i);
            if (!(*f[PV_SOURCE + i] = lethe_strdup(t ? (const char *)t : "")))
                rc = LETHE_ERR_NOMEM;
        }
        lethe_free(v[0]);
    }
    sqlite3_reset(pv);
    return rc;
}

/* Fill m from the catalog: LETHE_OK when the face is (still) held,
 * LETHE_ERR_NOT_FOUND when not, another status on a failure. */
static int fill_match(lethe_store *s, sqlite3_stmt *st, sqlite3_stmt *pv, int64_t face,
                      lethe_match *m)
{
    uint8_t key[KR_KEY];
    seal_photo ph;
    seal_face sf;
    int rc = LETHE_ERR_NOT_FOUND;
    sqlite3_bind_int64(st, 1, face);
    int step = sqlite3_step(st);
    if (step != SQLITE_ROW) {
        /* no row: the face is gone; a failed read is not (answer() names it) */
        if (step != SQLITE_DONE)
            rc = store_sqlstatus(step);
        goto out;
    }
    kr_ref ref = {(uint64_t)sqlite3_column_int64(st, 1), (uint64_t)sqlite3_column_int64(st, 2)};
    /* a key destroyed since the index answered: the face is gone */
    if ((rc = kr_get_key(s->kr, ref, key)) != LETHE_OK)
        goto out;
    rc = seal_photo_open(key, ref.id, sqlite3_column_blob(st, 3),
                         (size_t)sqlite3_column_bytes(st, 3), &ph);
    if (rc == LETHE_OK)
        rc = seal_face_open(key, ref.id, sqlite3_column_int(st, 4), sqlite3_column_blob(st, 5),
                            (size_t)sqlite3_column_bytes(st, 5), &sf);
    if (rc != LETHE_OK) {
        /* re-keyed since the row was read: the face as it was is gone */
        if (rc != LETHE_ERR_NOMEM)
            rc = LETHE_ERR_NOT_FOUND;
        goto out;
    }
    m->face = face;
    sodium_bin2hex(m->photo, sizeof(m->photo), ph.sha, 32);
    memcpy(m->box, sf.box, sizeof(m->box));
    m->provenance_count = sqlite3_column_int(st, 6);
    rc = fill_prov(pv, sqlite3_column_int64(st, 0), key, ref.id, m);
    sodium_memzero(&sf, sizeof(sf));
out:
    sodium_memzero(key, sizeof(key));
    sqlite3_reset(st);
    return rc;
}

static int check_search(lethe_store *s, const float *queries, int nq, lethe_search_options *o)
{
    int rc;
    if ((rc = store_check_text(s, "the purpose", o->purpose, 0)) ||
        (rc = store_check_text(s, "the actor", o->actor, 1)))
        return rc == LETHE_ERR_ARG && (!o->purpose || !*o->purpose)
                   ? store_fail(s, LETHE_ERR_ARG, "a search needs a purpose (it is logged)")
                   : rc;
    if (nq < 0 || (nq > 0 && !queries))
        return store_fail(s, LETHE_ERR_ARG, "no queries");
    if (o->top_k <= 0)
        o->top_k = 10;
    if (o->top_k > 10000)
        return store_fail(s, LETHE_ERR_ARG, "top_k %d is more than 10000", o->top_k);
    if (isnan(o->threshold) || o->threshold < 0)
        return store_fail(s, LETHE_ERR_ARG, "bad threshold");
    if (!(o->fpir >= 0 && o->fpir < 1))
        return store_fail(s, LETHE_ERR_ARG, "fpir must be at least 0 and below 1");
    for (int q = 0; q < nq; q++)
        for (int i = 0; i < IDX_DIM; i++)
            if (!isfinite(queries[(size_t)q * IDX_DIM + i]))
                return store_fail(s, LETHE_ERR_ARG, "query %d has a non-finite component", q);
    return LETHE_OK;
}

/* One query's matches into m (at most top_k), asking the index for more
 * when rows it returned are gone from the catalog. */
static int answer(lethe_store *s, sqlite3_stmt *st, sqlite3_stmt *pv, const float *qv, int q,
                  const lethe_search_options *o, idx_hit *h, size_t nh, size_t kk,
                  lethe_match *m, size_t *got_out)
{
    char msg[512];
    idx_hit *more = NULL;
    size_t got = 0, kq = kk;
    int rc = LETHE_OK;
    for (;;) {
        got = 0;
        for (size_t i = 0; i < nh && got < (size_t)o->top_k && rc == LETHE_OK; i++) {
            lethe_match *r = &m[got];
            memset(r, 0, sizeof(*r));
            int f = fill_match(s, st, pv, h[i].id, r);
            if (f == LETHE_OK) {
                r->distance = h[i].distance;
                r->query = q;
                got++;
            } else {
                match_clear(r);
                if (f != LETHE_ERR_NOT_FOUND)
                    rc = store_fail(s, f, "reading a match: %s", lethe_strerror(f));
            }
        }
        /* Filtered rows hid some: ask the index for more. */
        if (rc || got >= (size_t)o->top_k || nh < kq || kq >= idx_count(s->ix))
            break;
        for (size_t i = 0; i < got; i++)
            match_clear(&m[i]);
        kq *= 4;
        lethe_free(more);
        if (!(more = lethe_malloc(kq * sizeof(*more)))) {
            rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
            break;
        }
        int r = idx_search(s->ix, qv, 1, kq, o->threshold, o->threads, more, &nh, msg,
                           sizeof(msg));
        if (r != LETHE_OK) {
            rc = store_fail(s, r, "%s", msg);
            break;
        }
        h = more;
    }
    lethe_free(more);
    *got_out = got;
    return rc;
}

/* ------------------------------------------------------- match evidence */

/* With o->fpir, the threshold that holds it for a gallery of this size. */
static void evidence_threshold(lethe_search_options *o, uint64_t gallery)
{
    float t;
    if (o->fpir > 0 && lethe_calibration_threshold(o->fpir, gallery, &t) == LETHE_OK &&
        t < o->threshold)
        o->threshold = t;
}

/* What each match's distance means in a gallery of this size (the
 * calibration table's false-match rate, the strangers expected as close,
 * the tier). Filled after the results are found; touches nothing else. */
static void evidence_fill(lethe_match *m, size_t n, uint64_t gallery)
{
    for (size_t i = 0; i < n; i++) {
        double fmr = 1;
        lethe_calibration_rates(m[i].distance, &fmr, NULL);
        m[i].fmr = fmr;
        m[i].gallery = gallery;
        m[i].strangers = fmr * (double)gallery;
        lethe_calibration_tier(m[i].strangers, &m[i].tier);
    }
}

/* A fused probe's matches: no table was measured for mean descriptors (a
 * mean's distances to strangers are not a single photo's), so no rate is
 * shown rather than a wrong one. */
static void evidence_uncalibrated(lethe_match *m, size_t n, uint64_t gallery)
{
    for (size_t i = 0; i < n; i++) {
        m[i].fmr = NAN;
        m[i].strangers = NAN;
        m[i].gallery = gallery;
        m[i].tier = LETHE_TIER_UNCALIBRATED;
    }
}

int lethe_store_templates(lethe_store *s, uint64_t *count)
{
    int rc;
    *count = 0;
    if ((rc = store_index_ready(s)))
        return rc;
    *count = idx_count(s->ix);
    return LETHE_OK;
}

/* The model the queries were computed with, and its templates held (the
 * gallery): a search of a model the store holds no template of is refused. */
static int search_model(lethe_store *s, const lethe_model_id *m, int64_t *id, uint64_t *n)
{
    int rc = store_exec(s, "BEGIN");
    if (rc == LETHE_OK) {
        rc = store_search_model(s, m, idx_count(s->ix), id, n);
        store_end_read(s);
    }
    return rc;
}

int store_search_gallery(lethe_store *s, const lethe_model_id *model, uint64_t *count)
{
    int64_t id;
    int rc;
    *count = 0;
    if ((rc = store_index_ready(s)))
        return rc;
    return search_model(s, model, &id, count);
}

int lethe_search_gallery(lethe_store *s, const lethe_model_id *model, uint64_t *count)
{
    if (s->share) /* from any thread, on a view */
        return share_search_gallery(s, model, count);
    return store_search_gallery(s, model, count);
}

/* The options checked (into o), the index ready, the queries' model and
 * its templates (the gallery), the threshold --fpir asks for. */
static int search_setup(lethe_store *s, const float *queries, int nq,
                        const lethe_search_options *opt, lethe_search_options *o,
                        int64_t *model, uint64_t *gallery)
{
    int rc;
    if (opt)
        *o = *opt;
    else
        lethe_search_options_init(o);
    if ((rc = check_search(s, queries, nq, o)) || (rc = store_index_ready(s)) ||
        (rc = search_model(s, o->model, model, gallery)))
        return rc;
    evidence_threshold(o, *gallery);
    return LETHE_OK;
}

int lethe_search(lethe_store *s, const float *queries, int nq, const lethe_search_options *opt,
                 lethe_match **matches, size_t *count)
{
    if (s->share) /* from any thread: on a view, logged by the group commit */
        return share_search(s, queries, nq, opt, matches, count);
    return search_run(s, queries, nq, opt, matches, count, NULL, NULL, 0);
}

/* A fused search's probes (lethe_search_fused): the log's query hash is
 * taken over all of them, and the evidence is left uncalibrated. */
typedef struct search_fuse {
    const float *probes;
    int n;
} search_fuse;

static int search_core(lethe_store *s, const float *queries, int nq,
                       const lethe_search_options *opt, lethe_match **matches, size_t *count,
                       search_entry *lg, const search_fuse *fu);

int search_run(lethe_store *s, const float *queries, int nq, const lethe_search_options *opt,
               lethe_match **matches, size_t *count, search_entry *lg, const float *probes,
               int nprobes)
{
    search_fuse fu = {probes, nprobes};
    return search_core(s, queries, nq, opt, matches, count, lg, probes ? &fu : NULL);
}

/* Query q's log entry (got matches at m), or on a view its lg[q]. A fused
 * search is one entry for the person: a hash over every probe. */
static int search_log(lethe_store *s, const lethe_search_options *o, const float *qv, int q,
                      const lethe_match *m, size_t got, search_entry *lg, const search_fuse *fu)
{
    char qh[65];
    if (fu)
        store_keyed_hash(s, fu->probes, (size_t)fu->n * IDX_DIM * sizeof(float), qh);
    else
        store_keyed_hash(s, qv, IDX_DIM * sizeof(float), qh);
    if (!lg)
        return store_log_append(s, "search", o->actor, o->purpose, qh, (int64_t)got, NULL);
    memcpy(lg[q].qh, qh, sizeof(qh));
    lg[q].results = (int64_t)got;
    lg[q].m = m;
    return LETHE_OK;
}

static int search_core(lethe_store *s, const float *queries, int nq,
                       const lethe_search_options *opt, lethe_match **matches, size_t *count,
                       search_entry *lg, const search_fuse *fu)
{
    lethe_search_options o;
    char msg[512];
    idx_hit *hits = NULL;
    size_t *nhits = NULL, n = 0;
    lethe_match *m = NULL;
    sqlite3_stmt *st = NULL, *pv = NULL;
    int64_t model = 0;
    uint64_t gallery = 0;
    *matches = NULL;
    *count = 0;
    int rc = search_setup(s, queries, nq, opt, &o, &model, &gallery);
    if (rc)
        return rc;
    /* A few more than asked, for templates dropped since the index was
     * last brought up to date (they are filtered out). */
    size_t kk = (size_t)o.top_k + 16, total = (size_t)nq * kk;
    hits = lethe_malloc((total ? total : 1) * sizeof(*hits));
    nhits = lethe_calloc((size_t)(nq ? nq : 1), sizeof(*nhits));
    m = lethe_calloc((size_t)(nq ? nq : 1) * (size_t)o.top_k, sizeof(*m));
    if (!hits || !nhits || !m) {
        rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
        goto out;
    }
    if (nq && (rc = idx_search(s->ix, queries, (size_t)nq, kk, o.threshold, o.threads, hits,
                               nhits, msg, sizeof(msg))) != LETHE_OK) {
        rc = store_fail(s, rc, "%s", msg);
        goto out;
    }
    if ((rc = store_prepare(s, face_sql, &st)) || (rc = store_prepare(s, first_prov_sql, &pv)))
        goto out;
    sqlite3_bind_int64(st, 2, model); /* only the queries' model's templates */
    /* The log entries and the reads that produce the results are one
     * transaction: a search is recorded if and only if it answered. A view
     * only reads here (its entries go to lg, then to the group commit, and
     * the results are returned once those are durable). */
    if ((rc = lg ? store_writable(s) : store_begin(s)) || (lg && (rc = store_exec(s, "BEGIN"))))
        goto out;
    for (int q = 0; q < nq && rc == LETHE_OK; q++) {
        const float *qv = queries + (size_t)q * IDX_DIM;
        size_t got = 0;
        rc = answer(s, st, pv, qv, q, &o, hits + (size_t)q * kk, nhits[q], kk, m + n, &got);
        n += got;
        /* per photo and purpose, for the people in the photos
         * (requests/hits.c); on a view, by the group commit */
        if (rc == LETHE_OK && !lg)
            rc = hits_record(s, o.purpose, m + n - got, got);
        if (rc == LETHE_OK)
            rc = search_log(s, &o, qv, q, m + n - got, got, lg, fu);
    }
    if (rc == LETHE_OK)
        rc = lg ? store_exec(s, "COMMIT") : store_commit(s);
    if (rc != LETHE_OK)
        store_rollback(s);
out:
    sqlite3_finalize(st);
    sqlite3_finalize(pv);
    lethe_free(hits);
    lethe_free(nhits);
    if (rc == LETHE_OK && fu)
        evidence_uncalibrated(m, n, gallery);
    else if (rc == LETHE_OK)
        evidence_fill(m, n, gallery);
    if (rc == LETHE_OK) {
        *matches = m;
        *count = n;
    } else {
        lethe_matches_free(m, n);
    }
    return rc;
}

int lethe_search_image(lethe_store *s, lethe_engine *e, const lethe_image *img,
                       const lethe_search_options *opt, lethe_match **matches, size_t *count)
{
    lethe_face *faces = NULL;
    int nf = 0;
    *matches = NULL;
    *count = 0;
    if (s->share && share_is_owner(s)) /* from any thread: on a view */
        return share_search_image(s, e, img, opt, matches, count);
    if (!e || !img)
        return store_fail(s, LETHE_ERR_ARG, "searching by image needs an engine and an image");
    /* the largest face, by the rule of lethe_engine_analyze_bytes */
    int rc = lethe_engine_analyze(e, img, LETHE_WANT_DESCRIPTOR | LETHE_LARGEST_FACE, &faces,
                                  &nf);
    if (rc == LETHE_OK && nf == 0)
        rc = LETHE_ERR_NO_FACE;
    if (rc)
        return store_fail(s, rc, "analysing the image: %s",
                          rc == LETHE_ERR_NO_FACE ? "no face found" : lethe_strerror(rc));
    rc = lethe_search(s, faces[0].descriptor, 1, opt, matches, count);
    lethe_faces_free(faces);
    return rc;
}

/* ------------------------------------------------- multi-photo probes */

int lethe_search_fused(lethe_store *s, const float *probes, int nprobes,
                       const lethe_search_options *opt, lethe_match **matches, size_t *count)
{
    float mean[IDX_DIM];
    double sum[IDX_DIM] = {0};
    *matches = NULL;
    *count = 0;
    if (nprobes < 1 || nprobes > LETHE_FUSE_MAX || !probes)
        return store_fail(s, LETHE_ERR_ARG, "a fused search takes 1 to %d probes, not %d",
                          LETHE_FUSE_MAX, nprobes);
    if (opt && opt->fpir > 0)
        return store_fail(s, LETHE_ERR_ARG,
                          "fpir is not calibrated for fused probes (the calibration table "
                          "was measured on single photos); use a threshold");
    for (int p = 0; p < nprobes; p++)
        for (int i = 0; i < IDX_DIM; i++) {
            float v = probes[(size_t)p * IDX_DIM + i];
            if (!isfinite(v))
                return store_fail(s, LETHE_ERR_ARG, "probe %d has a non-finite component", p);
            sum[i] += v;
        }
    /* The plain mean: the index ranks raw Euclidean distances, and the
     * mean is what was measured (include/lethe.h). */
    for (int i = 0; i < IDX_DIM; i++)
        mean[i] = (float)(sum[i] / nprobes);
    if (s->share) /* from any thread: on a view, logged by the group commit */
        return share_search_fused(s, mean, probes, nprobes, opt, matches, count);
    return search_run(s, mean, 1, opt, matches, count, NULL, probes, nprobes);
}

int lethe_search_images_fused(lethe_store *s, lethe_engine *e, const lethe_image *const *images,
                              int nimages, const lethe_search_options *opt,
                              lethe_match **matches, size_t *count)
{
    float *probes;
    int rc = LETHE_OK;
    *matches = NULL;
    *count = 0;
    if (!e || !images || nimages < 1 || nimages > LETHE_FUSE_MAX)
        return store_fail(s, LETHE_ERR_ARG, "a fused search by image needs an engine and 1 "
                                            "to %d images", LETHE_FUSE_MAX);
    if (!(probes = lethe_malloc((size_t)nimages * IDX_DIM * sizeof(float))))
        return store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    for (int k = 0; k < nimages && rc == LETHE_OK; k++) {
        lethe_face *faces = NULL;
        int nf = 0;
        if (!images[k]) {
            rc = store_fail(s, LETHE_ERR_ARG, "image %d is NULL", k);
            break;
        }
        /* the largest face, by the rule of lethe_search_image */
        rc = lethe_engine_analyze(e, images[k], LETHE_WANT_DESCRIPTOR | LETHE_LARGEST_FACE,
                                  &faces, &nf);
        if (rc == LETHE_OK && nf == 0)
            rc = LETHE_ERR_NO_FACE;
        if (rc == LETHE_OK)
            memcpy(probes + (size_t)k * IDX_DIM, faces[0].descriptor, IDX_DIM * sizeof(float));
        else
            store_fail(s, rc, "analysing image %d: %s", k,
                       rc == LETHE_ERR_NO_FACE ? "no face found" : lethe_strerror(rc));
        lethe_faces_free(faces);
    }
    if (rc == LETHE_OK)
        rc = lethe_search_fused(s, probes, nimages, opt, matches, count);
    lethe_free(probes);
    return rc;
}

/* ---------------------------------------------------------------- lookup */

static void put_prov_json(strbuf *b, const prov_row *p)
{
    static const char *names[PV_FIELDS] = {"path", "photo_id", "url", "uploader",
                                           "collected_at", "source", "license",
                                           "jurisdiction", "consent"};
    static const int order[PV_FIELDS] = {PV_PATH, PV_PHOTO_ID, PV_URL, PV_UPLOADER, PV_SOURCE,
                                         PV_LICENSE, PV_JURISDICTION, PV_CONSENT,
                                         PV_COLLECTED_AT};
    sb_putc(b, '{');
    for (int i = 0; i < PV_FIELDS; i++) {
        sb_printf(b, "%s\"%s\":", i ? "," : "", names[order[i]]);
        sb_json_str(b, p->v[order[i]]);
    }
    sb_puts(b, ",\"added_at\":");
    sb_json_str(b, p->added_at);
    sb_putc(b, '}');
}

static void put_photo_json(strbuf *b, const photo_rows *r, int first)
{
    char hex[65];
    int templates = 0;
    for (int i = 0; i < r->nfaces; i++)
        templates += r->faces[i].f.has_template;
    sodium_bin2hex(hex, sizeof(hex), r->ph.sha, 32);
    sb_printf(b, "%s{\"photo\":\"%s\",\"kind\":", first ? "" : ",", hex);
    sb_json_str(b, r->kind);
    sb_puts(b, ",\"status\":");
    sb_json_str(b, r->status);
    if (r->ph.width > 0)
        sb_printf(b, ",\"width\":%d,\"height\":%d", r->ph.width, r->ph.height);
    sb_printf(b, ",\"faces\":%d,\"templates\":%d,\"provenance\":[", r->nfaces, templates);
    for (int i = 0; i < r->nprov; i++) {
        if (i)
            sb_putc(b, ',');
        put_prov_json(b, &r->prov[i]);
    }
    sb_puts(b, "]}");
}

static void put_field_text(strbuf *b, const char *label, const char *v)
{
    sb_puts(b, label);
    sb_text(b, v && *v ? v : "-");
}

static void put_photo_text(strbuf *b, const photo_rows *r)
{
    char hex[65];
    int templates = 0;
    for (int i = 0; i < r->nfaces; i++)
        templates += r->faces[i].f.has_template;
    sodium_bin2hex(hex, sizeof(hex), r->ph.sha, 32);
    sb_printf(b, "\nphoto %s (%s)\n  status %s; %d face%s, %d template%s\n", hex, r->kind,
              r->status, r->nfaces, r->nfaces == 1 ? "" : "s", templates,
              templates == 1 ? "" : "s");
    for (int i = 0; i < r->nprov; i++) {
        char *const *v = r->prov[i].v;
        put_field_text(b, "  - source ", v[PV_SOURCE]);
        put_field_text(b, ", uploader ", v[PV_UPLOADER]);
        put_field_text(b, ", jurisdiction ", v[PV_JURISDICTION]);
        put_field_text(b, ", consent ", v[PV_CONSENT]);
        put_field_text(b, ", license ", v[PV_LICENSE]);
        put_field_text(b, "\n    url ", v[PV_URL]);
        put_field_text(b, "\n    photo id ", v[PV_PHOTO_ID]);
        put_field_text(b, ", collected ", v[PV_COLLECTED_AT]);
        put_field_text(b, ", path ", v[PV_PATH]);
        sb_putc(b, '\n');
    }
}

/* The SQL and bindings of a lookup, and in qhash the keyed hash the log
 * records. LETHE_LOOKUP_FILE hashes bytes[0..len) when bytes is not NULL,
 * else the file named by value. */
int store_lookup_stmt(lethe_store *s, int kind, const char *value, const void *bytes,
                      size_t len, sqlite3_stmt **st, uint8_t qhash[32])
{
    static const char *where[] = {
        "id IN (SELECT photo FROM provenance WHERE uploader_h = ?1)",
        "id IN (SELECT photo FROM provenance WHERE url_h = ?1)",
        "id IN (SELECT photo FROM provenance WHERE photo_id_h = ?1) OR sha_h = ?2",
        "sha_h = ?2",
    };
    static const char *tags[] = {"uploader", "url", "photo_id", NULL};
    uint8_t sha[32], h[32];
    size_t n = 0;
    char sql[256], msg[512];
    int have_sha = 0, rc;
    if (kind == LETHE_LOOKUP_FILE && bytes) {
        crypto_hash_sha256(sha, bytes, len);
        have_sha = 1;
    } else if (kind == LETHE_LOOKUP_FILE) {
        uint8_t *file = NULL;
        if ((rc = lethe_read_file(value, 256u << 20, &file, &n, msg, sizeof(msg))))
            return store_fail(s, rc, "%s", msg);
        crypto_hash_sha256(sha, file, n);
        lethe_free(file);
        have_sha = 1;
    } else if (kind == LETHE_LOOKUP_PHOTO_ID && strlen(value) == 64) {
        have_sha = sodium_hex2bin(sha, 32, value, 64, NULL, &n, NULL) == 0 && n == 32;
    }
    snprintf(sql, sizeof(sql), "SELECT id FROM photos WHERE %s ORDER BY id", where[kind]);
    if ((rc = store_prepare(s, sql, st)))
        return rc;
    int b = SQLITE_OK;
    if (tags[kind]) {
        store_hash(s, tags[kind], value, strlen(value), h);
        b |= sqlite3_bind_blob(*st, 1, h, 32, SQLITE_TRANSIENT);
    }
    if (have_sha) {
        store_hash(s, "sha256", sha, 32, h);
        b |= sqlite3_bind_blob(*st, 2, h, 32, SQLITE_TRANSIENT);
    }
    /* a value that could not be bound would find nothing: not "none held" */
    if ((rc = store_bound(s, b, "looking up"))) {
        sqlite3_finalize(*st);
        *st = NULL;
        return rc;
    }
    /* what the log records: a keyed hash of the value looked up */
    store_hash(s, "lookup", have_sha ? (const void *)sha : value, have_sha ? 32 : strlen(value),
               qhash);
    sodium_memzero(sha, sizeof(sha));
    return LETHE_OK;
}

/* lethe_lookup and lethe_lookup_bytes: bytes is NULL but for the latter. */
static int lookup_run(lethe_store *s, int kind, const char *value, const void *bytes,
                      size_t len, const char *actor, const char *format, char **out)
{
    static const char *kinds[] = {"uploader", "url", "photo-id", "file"};
    sqlite3_stmt *ph = NULL;
    uint8_t qh[32];
    char qhex[65];
    size_t n = 0;
    int rc, text, step = SQLITE_DONE;
    strbuf b;
    *out = NULL;
    if (kind < 0 || kind > LETHE_LOOKUP_FILE || !value || !*value)
        return store_fail(s, LETHE_ERR_ARG, "lookup needs a value");
    if (bytes && !len)
        return store_fail(s, LETHE_ERR_ARG, "a lookup by file needs the file's bytes (none given)");
    if (!format || !strcmp(format, "json"))
        text = 0;
    else if (!strcmp(format, "text"))
        text = 1;
    else
        return store_fail(s, LETHE_ERR_ARG, "unknown lookup format \"%s\" (json, text)", format);
    if ((rc = store_check_text(s, "the actor", actor, 1)) ||
        (rc = store_lookup_stmt(s, kind, value, bytes, len, &ph, qh)))
        return rc;
    if ((rc = store_begin(s))) {
        sqlite3_finalize(ph);
        return rc;
    }
    sb_init(&b);
    sb_printf(&b, "{\"lookup\":\"%s\",\"photos\":[", kinds[kind]);
    strbuf t;
    sb_init(&t);
    while (rc == LETHE_OK && (step = sqlite3_step(ph)) == SQLITE_ROW) {
        photo_rows r;
        if ((rc = rows_read(s, sqlite3_column_int64(ph, 0), &r)) != LETHE_OK)
            break;
        put_photo_json(&b, &r, n == 0);
        put_photo_text(&t, &r);
        rows_free(&r);
        n++;
    }
    if (rc == LETHE_OK && step != SQLITE_DONE)
        rc = store_sqlfail(s, "looking up");
    sqlite3_finalize(ph);
    sb_puts(&b, "]}\n");
    /* The answer is complete before its log entry commits: a lookup is
     * logged if and only if it answered. */
    if (rc == LETHE_OK && text) {
        strbuf h;
        sb_init(&h);
        sb_printf(&h, "%zu photo%s held for ", n, n == 1 ? "" : "s");
        sb_text(&h, value);
        sb_putc(&h, '\n');
        char *body = sb_finish(&t);
        if (!body)
            h.failed = 1;
        sb_puts(&h, body ? body : "");
        lethe_free(body);
        *out = sb_finish(&h);
        sb_free(&b);
    } else {
        sb_free(&t);
        *out = rc == LETHE_OK ? sb_finish(&b) : (sb_free(&b), NULL);
    }
    if (rc == LETHE_OK && !*out)
        rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    sodium_bin2hex(qhex, sizeof(qhex), qh, sizeof(qh));
    if (rc == LETHE_OK)
        rc = store_log_append(s, "lookup", actor, kinds[kind], qhex, (int64_t)n, NULL);
    if (rc == LETHE_OK)
        rc = store_commit(s);
    else
        store_rollback(s);
    if (rc != LETHE_OK) {
        lethe_free(*out);
        *out = NULL;
    }
    return rc;
}

int lethe_lookup(lethe_store *s, int kind, const char *value, const char *actor,
                 const char *format, char **out)
{
    return lookup_run(s, kind, value, NULL, 0, actor, format, out);
}

int lethe_lookup_bytes(lethe_store *s, const void *bytes, size_t len, const char *actor,
                       const char *format, char **out)
{
    if (!bytes || !len) {
        *out = NULL;
        return store_fail(s, LETHE_ERR_ARG, "a lookup by file needs the file's bytes (none given)");
    }
    return lookup_run(s, LETHE_LOOKUP_FILE, "the file given", bytes, len, actor, format, out);
}
