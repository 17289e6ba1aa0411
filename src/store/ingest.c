/*
 * ingest.c: photos and descriptors into the store.
 *
 * The calling thread reads each photo, hashes it and decides, with the
 * catalog, the standing opt-outs and the consent policy, what happens to it:
 *   - refused by an opt-out: not even catalogued;
 *   - already held: its provenance is added (a withdrawal erases the
 *     photo's templates and re-keys it; a new basis the policy allows gets
 *     it analysed if it was refused before);
 *   - new and refused by the policy: catalogued without any analysis;
 *   - new and allowed: queued for a worker, which decodes, detects, places
 *     landmarks and describes, one photo per worker thread.
 * Finished photos come back to the calling thread, the only one to touch
 * SQLite. Each photo gets a key of its own (forget/keyring.h) that seals
 * its personal fields (forget/seal.h). Writes accumulate in one change
 * (forget/change.h) committed, with a log entry for the batch, every
 * batch_photos photos (a descriptor row counting as 1/16 of a photo) or
 * batch_seconds seconds. A kill loses at most the
 * open batch, which a re-run redoes: photos are known by their hash and
 * provenance records are unique.
 *
 * Counting: every input offered ends in exactly one of added, duplicates,
 * errors, opted_out, and is counted in `seen` in the batch where that
 * outcome is written, so a batch's log entry always adds up. The totals
 * are those of committed batches; errors are counted when reported.
 */
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "forget/change.h"
#include "forget/erase.h"
#include "forget/optout.h"
#include "store/store.h"
#include "util/strbuf.h"
#include "util/util.h"

#define MAX_PHOTO_BYTES (256u << 20)
/* A descriptor row is cheap: a batch holds this many of them for every
 * photo it may hold (fewer commits, fewer fsyncs, fewer index pages written
 * twice). */
#define BATCH_ROWS_PER_PHOTO 16

/* A provenance record with its own copies of the strings (PV_* order,
 * canonical, never NULL). */
typedef struct prov_rec {
    char *f[PV_FIELDS];
    struct prov_rec *next;
} prov_rec;

typedef struct job {
    uint8_t sha[32];
    uint8_t *bytes;
    size_t len;
    int64_t photo;       /* existing photo row being re-analysed, or 0 */
    char *input;         /* for messages */
    size_t line;
    prov_rec *provs;     /* records to add with the photo */
    /* results */
    int status;
    char error[384];
    int width, height;
    lethe_face *faces;
    int nfaces;
    struct job *next;          /* in the queue or the finished list */
    struct job *fprev, *fnext; /* in the in-flight list (calling thread only) */
} job;

struct lethe_ingest {
    lethe_store *s;
    lethe_ingest_options opt;
    /* work queue and finished list, guarded by mu */
    pthread_mutex_t mu;
    pthread_cond_t work, done_cv;
    job *queue_head, *queue_tail, *done;
    int queued, inflight, stop;
    pthread_t *threads;
    int nthreads;
    job *pending;        /* jobs handed out and not yet recorded */
    /* the open batch */
    change c;
    int in_txn;
    unsigned batches;
    size_t batch_photos;         /* photos in the open batch, a descriptor row
                                    counting 1/16 (BATCH_ROWS_PER_PHOTO) */
    struct timespec batch_start;
    lethe_ingest_stats batch;    /* counts of the open batch */
    /* totals of committed batches (errors: as reported), guarded by stats_mu */
    lethe_ingest_stats total;
    pthread_mutex_t stats_mu;
    int failed;                  /* a fatal status ended the ingest */
    optout *optouts;             /* standing opt-outs, loaded at the start */
    size_t noptouts;
    lethe_model_id engine_model; /* the engine's descriptor model (photos) */
    lethe_model_id desc_model;   /* the declared model of descriptors offered */
    int64_t engine_model_row;    /* their models rows in the open batch (0: not yet) */
    int64_t desc_model_row;
    char detector[8];            /* the engine's detector precision */
};

static double elapsed(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + 1e-9 * (double)(t.tv_nsec - t0->tv_nsec);
}

void lethe_ingest_options_init(lethe_ingest_options *o)
{
    memset(o, 0, sizeof(*o));
    o->batch_photos = 256;
    o->batch_seconds = 2.0;
}

static void prov_free(prov_rec *p)
{
    while (p) {
        prov_rec *n = p->next;
        for (int i = 0; i < PV_FIELDS; i++)
            lethe_free(p->f[i]);
        lethe_free(p);
        p = n;
    }
}

static void job_free(job *j)
{
    if (!j)
        return;
    lethe_free(j->bytes);
    lethe_free(j->input);
    prov_free(j->provs);
    lethe_faces_free(j->faces);
    lethe_free(j);
}

/* An input that failed: counted in the open batch (and so in its log
 * entry) and at once in the totals, and passed to on_error. */
static void report(lethe_ingest *g, const char *input, size_t line, const char *msg)
{
    g->batch.seen++;
    g->batch.errors++;
    pthread_mutex_lock(&g->stats_mu);
    g->total.errors++;
    pthread_mutex_unlock(&g->stats_mu);
    if (g->opt.on_error)
        g->opt.on_error(g->opt.ctx, input, line, msg);
}

/* Validate and copy a provenance; on failure writes the reason to msg. */
static prov_rec *prov_make(const lethe_provenance *p, const char *path, char *msg, size_t msg_len)
{
    static const lethe_provenance empty;
    char jur[8], jerr[256];
    const char *in[PV_FIELDS];
    prov_rec *r;
    if (!p)
        p = &empty;
    if (jurisdiction_parse(p->jurisdiction ? p->jurisdiction : "", jur, jerr, sizeof(jerr)) != 0) {
        snprintf(msg, msg_len, "%s", jerr);
        return NULL;
    }
    int bit = consent_parse(p->consent && *p->consent ? p->consent : "none");
    if (bit < 0) {
        snprintf(msg, msg_len, "unknown consent basis \"%s\" (explicit, public-license, none, "
                 "withdrawn)", p->consent);
        return NULL;
    }
    in[PV_PATH] = path ? path : p->path;
    in[PV_PHOTO_ID] = p->photo_id;
    in[PV_URL] = p->url;
    in[PV_UPLOADER] = p->uploader;
    in[PV_COLLECTED_AT] = p->collected_at;
    in[PV_SOURCE] = p->source;
    in[PV_LICENSE] = p->license;
    in[PV_JURISDICTION] = jur;
    in[PV_CONSENT] = consent_name(bit);
    if (!(r = lethe_calloc(1, sizeof(*r)))) {
        snprintf(msg, msg_len, "out of memory");
        return NULL;
    }
    for (int i = 0; i < PV_FIELDS; i++) {
        if (!(r->f[i] = lethe_strdup(in[i] ? in[i] : ""))) {
            prov_free(r);
            snprintf(msg, msg_len, "out of memory");
            return NULL;
        }
    }
    return r;
}

static int withdraws(const prov_rec *p)
{
    return !strcmp(p->f[PV_CONSENT], "withdrawn");
}

/* ------------------------------------------------------------- workers */

/* Decode and analyse one photo (on a worker thread): the message of a
 * failure goes into the job, never into shared state. */
static void analyse(lethe_ingest *g, job *j)
{
    lethe_analysis a;
    unsigned flags = LETHE_WANT_DESCRIPTOR | (g->nthreads > 1 ? LETHE_SINGLE_THREAD : 0);
    j->status = lethe_engine_analyze_bytes(g->opt.engine, j->bytes, j->len, NULL, flags, &a,
                                           j->error, sizeof(j->error));
    lethe_free(j->bytes);
    j->bytes = NULL;
    j->width = a.width;
    j->height = a.height;
    j->faces = a.faces;
    j->nfaces = a.count;
}

static void *worker(void *arg)
{
    lethe_ingest *g = arg;
    pthread_mutex_lock(&g->mu);
    for (;;) {
        while (!g->queue_head && !g->stop)
            pthread_cond_wait(&g->work, &g->mu);
        if (!g->queue_head)
            break;
        job *j = g->queue_head;
        g->queue_head = j->next;
        if (!g->queue_head)
            g->queue_tail = NULL;
        g->queued--;
        pthread_mutex_unlock(&g->mu);
        analyse(g, j);
        pthread_mutex_lock(&g->mu);
        j->next = g->done;
        g->done = j;
        pthread_cond_broadcast(&g->done_cv);
    }
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

/* ------------------------------------------------------------ batches */

static int open_batch(lethe_ingest *g)
{
    if (g->in_txn)
        return LETHE_OK;
    int rc = change_begin(g->s, &g->c);
    if (rc)
        return rc;
    g->in_txn = 1;
    g->batch_photos = 0;
    /* a batch rolled back takes a models row it added with it */
    g->engine_model_row = g->desc_model_row = 0;
    clock_gettime(CLOCK_MONOTONIC, &g->batch_start);
    return LETHE_OK;
}

static char *batch_detail(lethe_ingest *g)
{
    const lethe_ingest_stats *b = &g->batch;
    strbuf d;
    sb_init(&d);
    sb_printf(&d, "{\"seen\":%llu,\"added\":%llu,\"duplicates\":%llu,\"provenance\":%llu,"
                  "\"faces\":%llu,\"templates\":%llu,\"refused\":%llu,\"withdrawn\":%llu,"
                  "\"no_face\":%llu,\"errors\":%llu,\"opted_out\":%llu,\"opted_out_faces\":%llu",
              (unsigned long long)b->seen, (unsigned long long)b->added,
              (unsigned long long)b->duplicates, (unsigned long long)b->provenance,
              (unsigned long long)b->faces, (unsigned long long)b->templates,
              (unsigned long long)b->refused, (unsigned long long)b->withdrawn,
              (unsigned long long)b->no_face, (unsigned long long)b->errors,
              (unsigned long long)b->opted_out, (unsigned long long)b->opted_out_faces);
    /* how this batch's templates were computed (photos only) */
    if (g->opt.engine)
        sb_printf(&d, ",\"precision\":\"%s\",\"kernels\":\"%s\"",
                  lethe_engine_precision(g->opt.engine), lethe_engine_kernels(g->opt.engine));
    sb_puts(&d, "}");
    return sb_finish(&d);
}

/* Add the batch's counts to the totals (errors are there already). */
static void add_batch(lethe_ingest *g)
{
    const uint64_t *b = (const uint64_t *)&g->batch;
    uint64_t *t = (uint64_t *)&g->total;
    size_t n = sizeof(g->batch) / sizeof(uint64_t);
    pthread_mutex_lock(&g->stats_mu);
    for (size_t i = 0; i < n; i++)
        if (i != offsetof(lethe_ingest_stats, errors) / sizeof(uint64_t))
            t[i] += b[i];
    pthread_mutex_unlock(&g->stats_mu);
    memset(&g->batch, 0, sizeof(g->batch));
}

static int commit_batch(lethe_ingest *g)
{
    lethe_store *s = g->s;
    int rc = LETHE_OK;
    if (!g->batch.seen && !g->in_txn)
        return LETHE_OK;
    /* every input offered had exactly one outcome */
    assert(g->batch.seen ==
           g->batch.added + g->batch.duplicates + g->batch.errors + g->batch.opted_out);
    if (!g->in_txn && (rc = open_batch(g)))
        return rc;
    char *detail = batch_detail(g);
    if (!detail)
        rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    if (rc == LETHE_OK)
        rc = store_log_append(s, "ingest", g->opt.actor, "", "", (int64_t)g->batch.added, detail);
    lethe_free(detail);
    if (rc == LETHE_OK)
        rc = change_commit(&g->c);
    else
        change_abort(&g->c);
    g->in_txn = 0;
    if (rc != LETHE_OK && !g->c.committed) {
        pthread_mutex_lock(&g->stats_mu);
        g->total.uncommitted += g->batch.seen - g->batch.errors;
        pthread_mutex_unlock(&g->stats_mu);
        memset(&g->batch, 0, sizeof(g->batch));
        return rc;
    }
    add_batch(g);
    if (rc != LETHE_OK)
        return rc; /* committed; what failed after is finished at the next open */
    /* keep the WAL short (no automatic checkpoints: see store.c) */
    if (++g->batches % 16 == 0)
        sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    return LETHE_OK;
}

static int maybe_commit(lethe_ingest *g)
{
    if (g->in_txn && (g->batch_photos >= (size_t)g->opt.batch_photos * BATCH_ROWS_PER_PHOTO ||
                      elapsed(&g->batch_start) >= g->opt.batch_seconds))
        return commit_batch(g);
    return LETHE_OK;
}

/* --------------------------------------------------------- the catalog */

/* Is the photo (its stored provenance plus extra) eligible for templates?
 * 1 or 0; -1 when its records could not be read (message set): the
 * decision is never taken on part of them. */
static int photo_eligible(lethe_ingest *g, int64_t photo, const prov_rec *extra)
{
    const char *jur[65], *con[65];
    char jb[64][8], cb[64][16];
    int n = 0;
    sqlite3_stmt *st;
    if (photo) {
        if (store_prepare(g->s, "SELECT jurisdiction, consent FROM provenance WHERE photo = ?",
                          &st))
            return -1;
        sqlite3_bind_int64(st, 1, photo);
        int rc = store_read_consents(g->s, st, jb, cb, jur, con, &n);
        sqlite3_finalize(st);
        if (rc)
            return -1;
    }
    for (; extra && n < 65; extra = extra->next, n++) {
        jur[n] = extra->f[PV_JURISDICTION];
        con[n] = extra->f[PV_CONSENT];
    }
    return store_photo_eligible(g->s->pol, jur, con, n);
}

static int add_provs(lethe_ingest *g, const photo_rows *r, const prov_rec *p)
{
    int rc = LETHE_OK, added;
    for (; p && rc == LETHE_OK; p = p->next) {
        rc = rows_insert_prov(g->s, r, (const char *const *)p->f, &added);
        g->batch.provenance += added ? 1u : 0u;
    }
    return rc;
}

/* A new photo row (sealed with a new key); r gets its id and key. */
static int new_photo(lethe_ingest *g, photo_rows *r, const uint8_t sha[32], const char *kind,
                     int64_t bytes, int w, int h, const char *status, int faces_found)
{
    memset(r, 0, sizeof(*r));
    int rc = kr_new_key(g->s->kr, &r->key_ref, r->key);
    if (rc)
        return store_fail(g->s, rc, "keyring: %s", lethe_strerror(rc));
    memcpy(r->ph.sha, sha, 32);
    r->ph.bytes = bytes;
    r->ph.width = w;
    r->ph.height = h;
    snprintf(r->kind, sizeof(r->kind), "%s", kind);
    snprintf(r->status, sizeof(r->status), "%s", status);
    r->faces_found = faces_found;
    return rows_insert_photo(g->s, r, &r->id);
}

/* The models row of the engine's model (desc 0) or of the descriptors'
 * (desc 1), added in the open batch when new. */
static int batch_model(lethe_ingest *g, int desc, int64_t *row)
{
    int64_t *r = desc ? &g->desc_model_row : &g->engine_model_row;
    int rc = LETHE_OK;
    if (!*r)
        rc = store_model_use(g->s, desc ? &g->desc_model : &g->engine_model, r);
    *row = *r;
    return rc;
}

/* Store a finished job's faces: those no face opt-out refuses, with their
 * templates when allowed. */
static int add_faces(lethe_ingest *g, const photo_rows *r, const job *j, int allowed)
{
    int kept = 0, templates = 0, rc = LETHE_OK;
    int64_t model = 0;
    if (j->nfaces > 0 && (rc = batch_model(g, 0, &model)))
        return rc;
    for (int i = 0; i < j->nfaces && rc == LETHE_OK; i++) {
        const lethe_face *f = &j->faces[i];
        seal_face sf;
        int64_t id;
        /* a face opt-out: the face is not stored at all (its number stays
         * unused, so the others keep theirs) */
        if (f->has_descriptor && g->noptouts &&
            optout_refuses_face(g->s, g->optouts, g->noptouts, j->sha,
                                (const char *const *)j->provs->f, f->descriptor)) {
            g->batch.opted_out_faces++;
            continue;
        }
        memset(&sf, 0, sizeof(sf));
        memcpy(sf.box, f->box, sizeof(sf.box));
        sf.score = f->score;
        sf.has_template = allowed && f->has_descriptor;
        if (sf.has_template)
            memcpy(sf.tmpl, f->descriptor, sizeof(sf.tmpl));
        rc = rows_insert_face(g->s, r, i, &sf, model, g->detector, &id);
        if (rc == LETHE_OK && sf.has_template) {
            rc = change_index_add(&g->c, id, sf.tmpl);
            templates++;
        }
        sodium_memzero(&sf, sizeof(sf));
        kept++;
    }
    g->batch.faces += (uint64_t)kept;
    g->batch.templates += (uint64_t)templates;
    if (!allowed)
        g->batch.withdrawn += (uint64_t)j->nfaces;
    return rc;
}

/* A finished job: record it. */
static int record(lethe_ingest *g, job *j)
{
    photo_rows r;
    int rc;
    if (j->status != LETHE_OK) {
        report(g, j->input, j->line, j->error);
        return LETHE_OK;
    }
    if ((rc = open_batch(g)))
        return rc;
    /* Provenance that arrived while it was analysed may withdraw consent. */
    int allowed = photo_eligible(g, j->photo, j->provs);
    if (allowed < 0)
        return store_status(g->s);
    const char *status = allowed ? "analysed" : "withdrawn";
    if (j->photo) {
        /* re-analysis of a refused photo that a new basis allows */
        if ((rc = store_dg(g->s, j->photo, -1)) || (rc = rows_read_photo(g->s, j->photo, &r)))
            return rc;
        r.ph.width = j->width;
        r.ph.height = j->height;
        r.faces_found = j->nfaces;
        snprintf(r.status, sizeof(r.status), "%s", status);
        rc = rows_update_photo(g->s, &r);
        g->batch.duplicates++;
    } else {
        rc = new_photo(g, &r, j->sha, "photo", (int64_t)j->len, j->width, j->height, status,
                       j->nfaces);
        g->batch.added++;
    }
    g->batch.seen++;
    if (rc == LETHE_OK)
        rc = add_provs(g, &r, j->provs);
    if (rc == LETHE_OK)
        rc = add_faces(g, &r, j, allowed);
    if (rc == LETHE_OK && j->nfaces == 0)
        g->batch.no_face++;
    if (rc == LETHE_OK)
        rc = store_dg(g->s, r.id, 1);
    g->batch_photos += BATCH_ROWS_PER_PHOTO;
    rows_free(&r);
    /* a refused photo whose consent was withdrawn while it was analysed:
     * re-keyed, as every withdrawal is */
    if (rc == LETHE_OK && j->photo && !allowed) {
        erase_counts ec = {0};
        rc = erase_part(&g->c, j->photo, NULL, 0, 0, "withdrawn", &ec);
    }
    return rc;
}

/* Take finished jobs; wait for at least one when `wait` and some are out. */
static int drain(lethe_ingest *g, int wait)
{
    job *list;
    int rc = LETHE_OK;
    pthread_mutex_lock(&g->mu);
    while (wait && !g->done && g->inflight > 0)
        pthread_cond_wait(&g->done_cv, &g->mu);
    list = g->done;
    g->done = NULL;
    pthread_mutex_unlock(&g->mu);
    while (list) {
        job *j = list;
        list = j->next;
        if (j->fprev)
            j->fprev->fnext = j->fnext;
        else
            g->pending = j->fnext;
        if (j->fnext)
            j->fnext->fprev = j->fprev;
        g->inflight--;
        if (rc == LETHE_OK)
            rc = record(g, j);
        job_free(j);
        if (rc == LETHE_OK)
            rc = maybe_commit(g);
    }
    return rc;
}

/* A photo already held: one more provenance record; a withdrawal erases
 * its templates (re-keying it). */
static int add_to_known(lethe_ingest *g, int64_t photo, const char *status, prov_rec *prov)
{
    photo_rows r;
    int rc;
    if ((rc = store_dg(g->s, photo, -1)) || (rc = rows_read_photo(g->s, photo, &r)))
        return rc;
    rc = add_provs(g, &r, prov);
    rows_free(&r);
    if (rc == LETHE_OK)
        rc = store_dg(g->s, photo, 1);
    if (rc == LETHE_OK && withdraws(prov) && strcmp(status, "withdrawn") != 0) {
        erase_counts ec = {0};
        rc = erase_part(&g->c, photo, NULL, 0, 1, "withdrawn", &ec);
        g->batch.withdrawn += ec.templates;
    }
    return rc;
}

/* The catalog side of an input already known or refused. *need_analysis
 * when it must be analysed (*photo_out: the row to update, or 0 for new). */
static int known_or_refused(lethe_ingest *g, const uint8_t sha[32], const char *kind,
                            int64_t bytes, prov_rec *prov, int *need_analysis, int64_t *photo_out)
{
    photo_rows r;
    int64_t photo = 0;
    char status[16];
    int rc, found, eligible = 0;
    *need_analysis = 0;
    *photo_out = 0;
    if ((found = rows_find_sha(g->s, sha, &photo, status)) < 0)
        return store_status(g->s);
    if (found && strcmp(status, "analysed") != 0 && !withdraws(prov) &&
        !strcmp(kind, "photo") && (eligible = photo_eligible(g, photo, prov)) > 0) {
        *need_analysis = 1; /* counted, with its provenance, when recorded */
        *photo_out = photo;
        return LETHE_OK;
    }
    if (eligible < 0)
        return store_status(g->s);
    if (!found && photo_eligible(g, 0, prov)) {
        *need_analysis = 1;
        return LETHE_OK;
    }
    if ((rc = open_batch(g)))
        return rc;
    g->batch.seen++;
    if (found) {
        g->batch.duplicates++;
        return add_to_known(g, photo, status, prov);
    }
    /* Refused: catalogued so its owner can find and erase it, never analysed. */
    rc = new_photo(g, &r, sha, kind, bytes, 0, 0, withdraws(prov) ? "withdrawn" : "refused", -1);
    if (rc == LETHE_OK)
        rc = add_provs(g, &r, prov);
    if (rc == LETHE_OK)
        rc = store_dg(g->s, r.id, 1);
    g->batch.added++;
    g->batch.refused++;
    g->batch_photos += strcmp(kind, "photo") ? 1 : BATCH_ROWS_PER_PHOTO;
    rows_free(&r);
    return rc;
}

/* ----------------------------------------------------------- the API */

/* Refuse at once an ingest whose model is retired (the batches would). */
static int check_models(lethe_ingest *g)
{
    char label[128];
    int64_t id;
    int retired = 0;
    const lethe_model_id *m = &g->desc_model;
    if (!store_model_valid(&g->desc_model))
        return store_fail(g->s, LETHE_ERR_ARG, "the descriptors' model needs a name, a version "
                          "and a precision of letters, digits, - _ . + (and may give the "
                          "weights' SHA-256)");
    for (int k = 0; k < 2; k++, m = &g->engine_model) {
        if (k == 1 && !g->opt.engine)
            break;
        int rc = store_exec(g->s, "BEGIN");
        if (rc == LETHE_OK) {
            rc = store_model_get(g->s, m, &id, &retired);
            store_end_read(g->s);
        }
        if (rc != LETHE_OK && rc != LETHE_ERR_NOT_FOUND)
            return rc;
        if (rc == LETHE_OK && retired) {
            store_model_label(m, label, sizeof(label));
            return store_fail(g->s, LETHE_ERR_POLICY,
                              "model %s is retired in this store: it may not add templates",
                              label);
        }
    }
    return LETHE_OK;
}

int lethe_ingest_begin(lethe_store *s, const lethe_ingest_options *opt, lethe_ingest **out)
{
    lethe_ingest *g;
    int rc;
    *out = NULL;
    if ((rc = store_writable(s)) ||
        (rc = store_check_text(s, "the actor", opt ? opt->actor : NULL, 1)))
        return rc;
    if (!(g = lethe_calloc(1, sizeof(*g))))
        return store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    g->s = s;
    if (opt)
        g->opt = *opt;
    else
        lethe_ingest_options_init(&g->opt);
    if (g->opt.batch_photos <= 0)
        g->opt.batch_photos = 256;
    if (!(g->opt.batch_seconds > 0))
        g->opt.batch_seconds = 2.0;
    pthread_mutex_init(&g->mu, NULL);
    pthread_mutex_init(&g->stats_mu, NULL);
    pthread_cond_init(&g->work, NULL);
    pthread_cond_init(&g->done_cv, NULL);
    lethe_model_shipped(&g->engine_model);
    if (g->opt.model)
        g->desc_model = *g->opt.model;
    else
        lethe_model_shipped(&g->desc_model);
    g->opt.model = NULL; /* the caller's: copied */
    if (g->opt.engine) {
        const char *p = lethe_engine_precision(g->opt.engine);
        snprintf(g->detector, sizeof(g->detector), "%s", strcmp(p, "int8") ? "fp32" : "int8");
    }
    if ((rc = store_lock(s, "ingest")) || (rc = check_models(g)) ||
        (rc = optout_load_all(s, &g->optouts, &g->noptouts)))
        goto fail;
    if (g->opt.engine) {
        int n = g->opt.threads > 0 ? g->opt.threads : lethe_engine_threads(g->opt.engine);
        g->threads = lethe_calloc((size_t)(n > 0 ? n : 1), sizeof(pthread_t));
        if (!g->threads) {
            rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
            goto fail;
        }
        for (int i = 0; i < n; i++) {
            if (pthread_create(&g->threads[g->nthreads], NULL, worker, g) != 0)
                break;
            g->nthreads++;
        }
        if (!g->nthreads) {
            rc = store_fail(s, LETHE_ERR_INTERNAL, "cannot start worker threads");
            goto fail;
        }
    }
    *out = g;
    return LETHE_OK;
fail:
    lethe_ingest_end(g, NULL);
    return rc;
}

static job *inflight_find(lethe_ingest *g, const uint8_t sha[32])
{
    for (job *j = g->pending; j; j = j->fnext)
        if (!memcmp(j->sha, sha, 32))
            return j;
    return NULL;
}

static int looks_like_image(const uint8_t *b, size_t n)
{
    return (n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) ||
           (n >= 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8)) ||
           (n >= 12 && !memcmp(b, "RIFF", 4) && !memcmp(b + 8, "WEBP", 4));
}

static int queue_job(lethe_ingest *g, job *j)
{
    int rc = LETHE_OK;
    /* keep at most 2 photos per worker waiting */
    while (g->queued >= 2 * g->nthreads && (rc = drain(g, 1)) == LETHE_OK)
        ;
    if (rc)
        return rc;
    j->fnext = g->pending;
    if (g->pending)
        g->pending->fprev = j;
    g->pending = j;
    pthread_mutex_lock(&g->mu);
    j->next = NULL;
    if (g->queue_tail)
        g->queue_tail->next = j;
    else
        g->queue_head = j;
    g->queue_tail = j;
    g->queued++;
    g->inflight++;
    pthread_cond_signal(&g->work);
    pthread_mutex_unlock(&g->mu);
    return LETHE_OK;
}

/* A photo's bytes (taken over: freed here) with its provenance record. */
static int offer(lethe_ingest *g, uint8_t *bytes, size_t len, const char *input, prov_rec *p,
                 size_t line)
{
    uint8_t sha[32];
    int need = 0, rc;
    int64_t photo = 0;
    pthread_mutex_lock(&g->stats_mu);
    g->total.bytes += len;
    pthread_mutex_unlock(&g->stats_mu);
    /* A refused photo is never decoded, but a file that is no image at all
     * is an error either way. */
    if (!looks_like_image(bytes, len)) {
        lethe_free(bytes);
        prov_free(p);
        report(g, input, line, "not a JPEG, PNG or WebP image");
        return LETHE_OK;
    }
    crypto_hash_sha256(sha, bytes, len);
    /* A standing opt-out: not even catalogued. */
    if (g->noptouts &&
        optout_refuses_photo(g->s, g->optouts, g->noptouts, sha, (const char *const *)p->f)) {
        g->batch.seen++;
        g->batch.opted_out++;
        prov_free(p);
        lethe_free(bytes);
        return LETHE_OK;
    }
    /* The same photo already on its way: add this provenance to it. */
    job *same = inflight_find(g, sha);
    if (same) {
        g->batch.seen++;
        g->batch.duplicates++;
        p->next = same->provs;
        same->provs = p;
        lethe_free(bytes);
        return LETHE_OK;
    }
    if ((rc = known_or_refused(g, sha, "photo", (int64_t)len, p, &need, &photo)) || !need) {
        prov_free(p);
        lethe_free(bytes);
        return rc ? rc : maybe_commit(g);
    }
    job *j = lethe_calloc(1, sizeof(*j));
    if (!j || !(j->input = lethe_strdup(input))) {
        lethe_free(j);
        prov_free(p);
        lethe_free(bytes);
        return store_fail(g->s, LETHE_ERR_NOMEM, "out of memory");
    }
    memcpy(j->sha, sha, 32);
    j->bytes = bytes;
    j->len = len;
    j->photo = photo;
    j->line = line;
    j->provs = p;
    if ((rc = queue_job(g, j)))
        job_free(j);
    return rc;
}

static int ingest_start(lethe_ingest *g)
{
    if (g->failed)
        return g->failed;
    if (!g->opt.engine)
        return store_fail(g->s, LETHE_ERR_ARG, "ingesting photos needs an engine");
    int rc = drain(g, 0);
    return rc ? (g->failed = rc) : LETHE_OK;
}

int lethe_ingest_photo(lethe_ingest *g, const char *file, const lethe_provenance *prov,
                       size_t line)
{
    char msg[512], *abs;
    uint8_t *bytes = NULL;
    size_t len = 0;
    prov_rec *p;
    int rc = ingest_start(g);
    if (rc)
        return rc;
    /* lethe_read_file refuses what is not a regular file before opening
     * it: a FIFO would block the read, and every writer waiting for our
     * lock with it. */
    if (!(abs = realpath(file, NULL))) {
        report(g, file, line, strerror(errno));
        return LETHE_OK;
    }
    p = prov_make(prov, abs, msg, sizeof(msg));
    free(abs);
    if (!p) {
        report(g, file, line, msg);
        return LETHE_OK;
    }
    if ((rc = lethe_read_file(file, MAX_PHOTO_BYTES, &bytes, &len, msg, sizeof(msg)))) {
        prov_free(p);
        report(g, file, line, msg);
        return LETHE_OK;
    }
    if ((rc = offer(g, bytes, len, file, p, line)))
        g->failed = rc;
    return rc;
}

int lethe_ingest_photo_bytes(lethe_ingest *g, const void *data, size_t len, const char *name,
                             const lethe_provenance *prov, size_t line)
{
    char msg[512];
    int rc = ingest_start(g);
    if (rc)
        return rc;
    const char *input = name && *name ? name : "(photo in memory)";
    if (!data || len > MAX_PHOTO_BYTES) {
        report(g, input, line, !data ? "no bytes" : "larger than 256 MiB");
        return LETHE_OK;
    }
    prov_rec *p = prov_make(prov, name ? name : "", msg, sizeof(msg));
    uint8_t *copy = p ? lethe_malloc(len ? len : 1) : NULL;
    if (!p || !copy) {
        prov_free(p);
        if (!copy && p)
            return g->failed = store_fail(g->s, LETHE_ERR_NOMEM, "out of memory");
        report(g, input, line, msg);
        return LETHE_OK;
    }
    memcpy(copy, data, len);
    if ((rc = offer(g, copy, len, input, p, line)))
        g->failed = rc;
    return rc;
}

int lethe_ingest_fail(lethe_ingest *g, const char *input, size_t line, const char *message)
{
    if (g->failed)
        return g->failed;
    report(g, input ? input : "", line, message ? message : "failed");
    return LETHE_OK;
}

/* A descriptor row: the "photo" is identified by the descriptor's hash. */
static int add_descriptor(lethe_ingest *g, const uint8_t sha[32], const float *desc, prov_rec *p)
{
    photo_rows r;
    seal_face sf;
    int64_t id, model = 0;
    int need = 0, rc;
    int64_t photo = 0;
    if ((rc = known_or_refused(g, sha, "descriptor", -1, p, &need, &photo)) || !need)
        return rc;
    if ((rc = open_batch(g)) || (rc = batch_model(g, 1, &model)))
        return rc;
    memset(&sf, 0, sizeof(sf));
    sf.has_template = 1;
    memcpy(sf.tmpl, desc, sizeof(sf.tmpl));
    rc = new_photo(g, &r, sha, "descriptor", -1, 0, 0, "analysed", 1);
    if (rc == LETHE_OK)
        rc = add_provs(g, &r, p);
    if (rc == LETHE_OK)
        rc = rows_insert_face(g->s, &r, 0, &sf, model, "", &id);
    if (rc == LETHE_OK)
        rc = change_index_add(&g->c, id, desc);
    if (rc == LETHE_OK)
        rc = store_dg(g->s, r.id, 1);
    g->batch.seen++;
    g->batch.added++;
    g->batch.faces++;
    g->batch.templates++;
    g->batch_photos++;
    sodium_memzero(&sf, sizeof(sf));
    rows_free(&r);
    return rc;
}

int lethe_ingest_descriptor(lethe_ingest *g, const float *desc, const lethe_provenance *prov,
                            size_t line)
{
    static const char tag[] = "lethe-descriptor-v1";
    char msg[512];
    uint8_t sha[32];
    crypto_hash_sha256_state h;
    if (g->failed)
        return g->failed;
    for (int i = 0; i < IDX_DIM; i++) {
        if (!isfinite(desc[i]) || fabsf(desc[i]) > 16.0f) {
            snprintf(msg, sizeof(msg), "descriptor component %d is %g (not a descriptor)", i,
                     (double)desc[i]);
            report(g, "descriptor", line, msg);
            return LETHE_OK;
        }
    }
    prov_rec *p = prov_make(prov, NULL, msg, sizeof(msg));
    if (!p) {
        report(g, "descriptor", line, msg);
        return LETHE_OK;
    }
    crypto_hash_sha256_init(&h);
    crypto_hash_sha256_update(&h, (const uint8_t *)tag, sizeof(tag));
    crypto_hash_sha256_update(&h, (const uint8_t *)desc, IDX_DIM * sizeof(float));
    crypto_hash_sha256_final(&h, sha);
    int rc = LETHE_OK;
    if (g->noptouts &&
        (optout_refuses_photo(g->s, g->optouts, g->noptouts, sha, (const char *const *)p->f) ||
         optout_refuses_face(g->s, g->optouts, g->noptouts, sha, (const char *const *)p->f,
                             desc))) {
        g->batch.seen++;
        g->batch.opted_out++;
    } else {
        rc = add_descriptor(g, sha, desc, p);
    }
    prov_free(p);
    if (rc == LETHE_OK)
        rc = maybe_commit(g);
    if (rc)
        g->failed = rc;
    return rc;
}

void lethe_ingest_progress(lethe_ingest *g, lethe_ingest_stats *st)
{
    pthread_mutex_lock(&g->stats_mu);
    *st = g->total;
    pthread_mutex_unlock(&g->stats_mu);
    /* the open batch, read on the calling thread (the only one to change it) */
    const uint64_t *b = (const uint64_t *)&g->batch;
    uint64_t *t = (uint64_t *)st;
    for (size_t i = 0; i < sizeof(*st) / sizeof(uint64_t); i++)
        if (i != offsetof(lethe_ingest_stats, errors) / sizeof(uint64_t))
            t[i] += b[i];
}

/* Stop the workers and free what is left in the queues. */
static void stop_workers(lethe_ingest *g)
{
    pthread_mutex_lock(&g->mu);
    g->stop = 1;
    pthread_cond_broadcast(&g->work);
    pthread_mutex_unlock(&g->mu);
    for (int i = 0; i < g->nthreads; i++)
        pthread_join(g->threads[i], NULL);
    for (job *j = g->queue_head; j;) {
        job *n = j->next;
        job_free(j);
        j = n;
    }
    for (job *j = g->done; j;) {
        job *n = j->next;
        job_free(j);
        j = n;
    }
    g->queue_head = g->done = NULL;
}

int lethe_ingest_end(lethe_ingest *g, lethe_ingest_stats *st)
{
    if (!g)
        return LETHE_OK;
    int rc = g->failed;
    while (rc == LETHE_OK && g->inflight > 0)
        rc = drain(g, 1);
    uint64_t lost = (uint64_t)g->inflight;
    stop_workers(g);
    if (rc == LETHE_OK) {
        rc = commit_batch(g);
    } else {
        if (g->in_txn)
            change_abort(&g->c);
        g->in_txn = 0;
        pthread_mutex_lock(&g->stats_mu);
        g->total.uncommitted += g->batch.seen - g->batch.errors + lost;
        pthread_mutex_unlock(&g->stats_mu);
    }
    change_free(&g->c);
    store_unlock(g->s);
    if (st)
        *st = g->total;
    pthread_mutex_destroy(&g->mu);
    pthread_mutex_destroy(&g->stats_mu);
    pthread_cond_destroy(&g->work);
    pthread_cond_destroy(&g->done_cv);
    optout_free_all(g->optouts, g->noptouts);
    lethe_free(g->threads);
    lethe_free(g);
    return rc;
}
