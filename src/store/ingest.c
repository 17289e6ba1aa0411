/*
 * ingest.c: photos and descriptors into the store.
 *
 * The calling thread reads each file, hashes it and decides, with the
 * catalog and the consent policy, what happens to it:
 *   - already held: its provenance is added (a withdrawal drops the
 *     photo's templates; a new basis the policy allows gets it analysed if
 *     it was refused before);
 *   - new and refused by the policy: catalogued without any analysis;
 *   - new and allowed: queued for a worker, which decodes, detects, places
 *     landmarks and describes, one photo per worker thread.
 * Finished photos come back to the calling thread, which is the only one to
 * touch SQLite. Writes accumulate in one transaction that is committed,
 * with a log entry for the batch, every batch_photos photos or
 * batch_seconds seconds; then the index gets the batch's templates. A kill
 * loses at most the uncommitted batch, which a re-run redoes: photos are
 * known by their hash and provenance records are unique.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/store.h"
#include "util/strbuf.h"
#include "util/util.h"

#define MAX_PHOTO_BYTES (256u << 20)

/* A provenance record with its own copies of the strings. */
typedef struct prov_rec {
    char *f[9]; /* path, photo_id, url, uploader, source, license, jurisdiction,
                   consent, collected_at (all canonical, never NULL) */
    struct prov_rec *next;
} prov_rec;

enum { P_PATH, P_PHOTO_ID, P_URL, P_UPLOADER, P_SOURCE, P_LICENSE, P_JUR, P_CONSENT, P_AT };

/* A standing opt-out: keyed hashes ("" when not part of it), and for a
 * face opt-out the person's descriptors. */
typedef struct optout {
    char h[6][65]; /* photo_id, url, uploader, source, jurisdiction, sha */
    char collected_before[40];
    float threshold;
    float *faces;
    int nfaces;
} optout;

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
    int queued, inflight, stop, fatal;
    pthread_t *threads;
    int nthreads;
    job *pending;        /* jobs handed out and not yet recorded */
    /* the open transaction */
    int in_txn;
    unsigned batches;
    size_t batch_photos;
    struct timespec batch_start;
    lethe_ingest_stats batch;    /* counts of the open batch */
    int64_t *rm;                 /* index removals of the open batch */
    size_t nrm, caprm;
    int64_t *add_ids;            /* index appends of the open batch */
    float *add_vecs;
    size_t nadd, capadd;
    /* totals */
    lethe_ingest_stats total;
    pthread_mutex_t stats_mu;
    int failed;                  /* a fatal status ended the ingest */
    /* standing opt-outs, loaded at the start */
    struct optout *optouts;
    size_t noptouts;
    /* statements */
    sqlite3_stmt *q_photo, *ins_photo, *ins_prov, *ins_face, *q_provs, *q_faces_t,
        *clr_faces, *set_status, *del_faces, *upd_photo;
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
        for (int i = 0; i < 9; i++)
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

static void report(lethe_ingest *g, const char *input, size_t line, const char *msg)
{
    pthread_mutex_lock(&g->stats_mu);
    g->total.errors++;
    pthread_mutex_unlock(&g->stats_mu);
    if (g->opt.on_error)
        g->opt.on_error(g->opt.ctx, input, line, msg);
}

static void count(lethe_ingest *g, uint64_t *batch_field, size_t offset, uint64_t n)
{
    *batch_field += n;
    pthread_mutex_lock(&g->stats_mu);
    *(uint64_t *)((char *)&g->total + offset) += n;
    pthread_mutex_unlock(&g->stats_mu);
}
#define COUNT(g, field, n) count((g), &(g)->batch.field, offsetof(lethe_ingest_stats, field), (n))

/* Validate and copy a provenance; on failure writes the reason to msg. */
static prov_rec *prov_make(const lethe_provenance *p, const char *abs_path, char *msg,
                           size_t msg_len)
{
    static const lethe_provenance empty;
    char jur[8], jerr[256];
    const char *in[9];
    prov_rec *r;
    int bit;
    if (!p)
        p = &empty;
    in[P_PATH] = abs_path ? abs_path : p->path;
    in[P_PHOTO_ID] = p->photo_id;
    in[P_URL] = p->url;
    in[P_UPLOADER] = p->uploader;
    in[P_SOURCE] = p->source;
    in[P_LICENSE] = p->license;
    in[P_AT] = p->collected_at;
    if (jurisdiction_parse(p->jurisdiction ? p->jurisdiction : "", jur, jerr, sizeof(jerr)) != 0) {
        snprintf(msg, msg_len, "%s", jerr);
        return NULL;
    }
    bit = consent_parse(p->consent && *p->consent ? p->consent : "none");
    if (bit < 0) {
        snprintf(msg, msg_len, "unknown consent basis \"%s\" (explicit, public-license, none, "
                 "withdrawn)", p->consent);
        return NULL;
    }
    in[P_JUR] = jur;
    in[P_CONSENT] = consent_name(bit);
    if (!(r = lethe_calloc(1, sizeof(*r)))) {
        snprintf(msg, msg_len, "out of memory");
        return NULL;
    }
    for (int i = 0; i < 9; i++) {
        if (!(r->f[i] = lethe_strdup(in[i] ? in[i] : ""))) {
            prov_free(r);
            snprintf(msg, msg_len, "out of memory");
            return NULL;
        }
    }
    return r;
}

/* ------------------------------------------------------------- workers */

static void analyse(lethe_ingest *g, job *j)
{
    lethe_image *img = NULL;
    lethe_image_options io;
    char msg[384];
    lethe_image_options_init(&io);
    int rc = lethe_image_decode(j->bytes, j->len, &io, &img, msg, sizeof(msg));
    lethe_free(j->bytes);
    j->bytes = NULL;
    if (rc != LETHE_OK) {
        j->status = rc;
        snprintf(j->error, sizeof(j->error), "%s", msg);
        return;
    }
    j->width = img->orig_width > 0 ? img->orig_width : img->width;
    j->height = img->orig_height > 0 ? img->orig_height : img->height;
    unsigned flags = LETHE_WANT_DESCRIPTOR | (g->nthreads > 1 ? LETHE_SINGLE_THREAD : 0);
    rc = lethe_engine_analyze(g->opt.engine, img, flags, &j->faces, &j->nfaces);
    if (rc != LETHE_OK) {
        j->status = rc;
        snprintf(j->error, sizeof(j->error), "%s", lethe_engine_errmsg(g->opt.engine));
    }
    lethe_image_free(img);
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

/* --------------------------------------------------------- the catalog */

static int open_batch(lethe_ingest *g)
{
    if (g->in_txn)
        return LETHE_OK;
    int rc = store_begin(g->s);
    if (rc)
        return rc;
    g->in_txn = 1;
    g->batch_photos = 0;
    memset(&g->batch, 0, sizeof(g->batch));
    clock_gettime(CLOCK_MONOTONIC, &g->batch_start);
    return LETHE_OK;
}

static int commit_batch(lethe_ingest *g)
{
    lethe_store *s = g->s;
    uint64_t gen = 0;
    strbuf d;
    char *detail;
    int rc = LETHE_OK;
    if (!g->in_txn)
        return LETHE_OK;
    sb_init(&d);
    sb_printf(&d, "{\"seen\":%llu,\"added\":%llu,\"duplicates\":%llu,\"provenance\":%llu,"
                  "\"faces\":%llu,\"templates\":%llu,\"refused\":%llu,\"withdrawn\":%llu,"
                  "\"no_face\":%llu,\"errors\":%llu,\"opted_out\":%llu",
              (unsigned long long)g->batch.seen, (unsigned long long)g->batch.added,
              (unsigned long long)g->batch.duplicates, (unsigned long long)g->batch.provenance,
              (unsigned long long)g->batch.faces, (unsigned long long)g->batch.templates,
              (unsigned long long)g->batch.refused, (unsigned long long)g->batch.withdrawn,
              (unsigned long long)g->batch.no_face, (unsigned long long)g->batch.errors,
              (unsigned long long)g->batch.opted_out);
    /* how this batch's templates were computed (photos only) */
    if (g->opt.engine)
        sb_printf(&d, ",\"precision\":\"%s\",\"kernels\":\"%s\"",
                  lethe_engine_precision(g->opt.engine), lethe_engine_kernels(g->opt.engine));
    sb_puts(&d, "}");
    detail = sb_finish(&d);
    if (!detail)
        rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    if (rc == LETHE_OK && (g->nadd || g->nrm))
        rc = store_bump_gen(s, &gen);
    if (rc == LETHE_OK)
        rc = store_log_append(s, "ingest", g->opt.actor, "", "", (int64_t)g->batch.added, detail);
    lethe_free(detail);
    if (rc == LETHE_OK)
        rc = store_commit(s);
    if (rc != LETHE_OK) {
        store_rollback(s);
        g->in_txn = 0;
        return rc;
    }
    g->in_txn = 0;
    if (gen)
        store_index_apply(s, gen, g->rm, g->nrm, g->add_ids, g->add_vecs, g->nadd);
    /* keep the WAL short (no automatic checkpoints: see store.c) */
    if (++g->batches % 16 == 0)
        sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    g->nrm = g->nadd = 0;
    return LETHE_OK;
}

static int maybe_commit(lethe_ingest *g)
{
    if (g->in_txn && (g->batch_photos >= (size_t)g->opt.batch_photos ||
                      elapsed(&g->batch_start) >= g->opt.batch_seconds))
        return commit_batch(g);
    return LETHE_OK;
}

static int push_rm(lethe_ingest *g, int64_t id)
{
    if (g->nrm == g->caprm) {
        size_t nc = g->caprm ? g->caprm * 2 : 64;
        int64_t *t = lethe_realloc(g->rm, nc * sizeof(*t));
        if (!t)
            return LETHE_ERR_NOMEM;
        g->rm = t;
        g->caprm = nc;
    }
    g->rm[g->nrm++] = id;
    return LETHE_OK;
}

static int push_add(lethe_ingest *g, int64_t id, const float *v)
{
    if (g->nadd == g->capadd) {
        size_t nc = g->capadd ? g->capadd * 2 : 256;
        int64_t *ti = lethe_realloc(g->add_ids, nc * sizeof(*ti));
        if (!ti)
            return LETHE_ERR_NOMEM;
        g->add_ids = ti;
        float *tv = lethe_realloc(g->add_vecs, nc * IDX_DIM * sizeof(float));
        if (!tv)
            return LETHE_ERR_NOMEM;
        g->add_vecs = tv;
        g->capadd = nc;
    }
    g->add_ids[g->nadd] = id;
    memcpy(g->add_vecs + g->nadd * IDX_DIM, v, IDX_DIM * sizeof(float));
    g->nadd++;
    return LETHE_OK;
}

static int step_done(lethe_ingest *g, sqlite3_stmt *st, const char *what)
{
    int r = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (r != SQLITE_DONE && r != SQLITE_ROW)
        return store_sqlfail(g->s, what);
    return LETHE_OK;
}

/* Add a provenance record; *added set when it was new. */
static int add_prov(lethe_ingest *g, int64_t photo, const prov_rec *p, int *added)
{
    char now[32];
    store_now(now);
    sqlite3_bind_int64(g->ins_prov, 1, photo);
    for (int i = 0; i < 9; i++)
        sqlite3_bind_text(g->ins_prov, 2 + i, p->f[i], -1, SQLITE_STATIC);
    sqlite3_bind_text(g->ins_prov, 11, now, -1, SQLITE_STATIC);
    int rc = step_done(g, g->ins_prov, "recording provenance");
    *added = rc == LETHE_OK && sqlite3_changes(g->s->db) > 0;
    if (*added)
        COUNT(g, provenance, 1);
    return rc;
}

static int insert_photo(lethe_ingest *g, const uint8_t sha[32], const char *kind, int64_t bytes,
                        int w, int h, const char *status, int64_t *id)
{
    char now[32];
    store_now(now);
    sqlite3_bind_blob(g->ins_photo, 1, sha, 32, SQLITE_STATIC);
    sqlite3_bind_text(g->ins_photo, 2, kind, -1, SQLITE_STATIC);
    if (bytes >= 0)
        sqlite3_bind_int64(g->ins_photo, 3, bytes);
    if (w > 0) {
        sqlite3_bind_int(g->ins_photo, 4, w);
        sqlite3_bind_int(g->ins_photo, 5, h);
    }
    sqlite3_bind_text(g->ins_photo, 6, status, -1, SQLITE_STATIC);
    sqlite3_bind_text(g->ins_photo, 7, now, -1, SQLITE_STATIC);
    int rc = step_done(g, g->ins_photo, "recording a photo");
    *id = sqlite3_last_insert_rowid(g->s->db);
    return rc;
}

static int insert_face(lethe_ingest *g, int64_t photo, int ord, const float *box, float score,
                       const float *desc)
{
    sqlite3_stmt *st = g->ins_face;
    sqlite3_bind_int64(st, 1, photo);
    sqlite3_bind_int(st, 2, ord);
    if (box) {
        for (int i = 0; i < 4; i++)
            sqlite3_bind_double(st, 3 + i, box[i]);
        sqlite3_bind_double(st, 7, score);
    }
    if (desc)
        sqlite3_bind_blob(st, 8, desc, IDX_DIM * sizeof(float), SQLITE_STATIC);
    int rc = step_done(g, st, "recording a face");
    if (rc == LETHE_OK && desc)
        rc = push_add(g, sqlite3_last_insert_rowid(g->s->db), desc);
    return rc;
}

/* Photo row of a hash, if held: id and status. 1 found, 0 not, <0 error. */
static int find_photo(lethe_ingest *g, const uint8_t sha[32], int64_t *id, char status[16])
{
    sqlite3_bind_blob(g->q_photo, 1, sha, 32, SQLITE_STATIC);
    int r = sqlite3_step(g->q_photo), found = 0;
    if (r == SQLITE_ROW) {
        *id = sqlite3_column_int64(g->q_photo, 0);
        snprintf(status, 16, "%s", (const char *)sqlite3_column_text(g->q_photo, 1));
        found = 1;
    }
    sqlite3_reset(g->q_photo);
    if (r != SQLITE_ROW && r != SQLITE_DONE)
        return store_sqlfail(g->s, "looking up a photo"), -1;
    return found;
}

/* Is the photo (its stored provenance plus extra) eligible for templates? */
static int photo_eligible(lethe_ingest *g, int64_t photo, const prov_rec *extra)
{
    const char *jur[65], *con[65];
    char jb[64][8], cb[64][16];
    int n = 0;
    sqlite3_bind_int64(g->q_provs, 1, photo);
    while (photo && n < 64 && sqlite3_step(g->q_provs) == SQLITE_ROW) {
        snprintf(jb[n], 8, "%s", (const char *)sqlite3_column_text(g->q_provs, 0));
        snprintf(cb[n], 16, "%s", (const char *)sqlite3_column_text(g->q_provs, 1));
        jur[n] = jb[n];
        con[n] = cb[n];
        n++;
    }
    sqlite3_reset(g->q_provs);
    for (; extra && n < 65; extra = extra->next, n++) {
        jur[n] = extra->f[P_JUR];
        con[n] = extra->f[P_CONSENT];
    }
    return store_photo_eligible(g->s->pol, jur, con, n);
}

/* ------------------------------------------------------------ opt-outs */

static int load_optouts(lethe_ingest *g)
{
    lethe_store *s = g->s;
    sqlite3_stmt *st = NULL, *fs = NULL;
    int rc;
    size_t n = 0;
    if ((rc = store_prepare(s, "SELECT COUNT(*) FROM optouts", &st)))
        return rc;
    if (sqlite3_step(st) == SQLITE_ROW)
        n = (size_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (!n)
        return LETHE_OK;
    if (!(g->optouts = lethe_calloc(n, sizeof(*g->optouts))))
        return store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    if ((rc = store_prepare(s, "SELECT id, photo_id_h, url_h, uploader_h, source_h, "
                               "jurisdiction_h, sha_h, collected_before, face_threshold "
                               "FROM optouts ORDER BY id", &st)) ||
        (rc = store_prepare(s, "SELECT descriptor FROM optout_faces WHERE optout = ?", &fs))) {
        sqlite3_finalize(st);
        return rc;
    }
    while (rc == LETHE_OK && g->noptouts < n && sqlite3_step(st) == SQLITE_ROW) {
        optout *o = &g->optouts[g->noptouts++];
        for (int k = 0; k < 6; k++)
            snprintf(o->h[k], sizeof(o->h[k]), "%s", (const char *)sqlite3_column_text(st, 1 + k));
        snprintf(o->collected_before, sizeof(o->collected_before), "%s",
                 (const char *)sqlite3_column_text(st, 7));
        o->threshold = (float)sqlite3_column_double(st, 8);
        sqlite3_bind_int64(fs, 1, sqlite3_column_int64(st, 0));
        while (sqlite3_step(fs) == SQLITE_ROW) {
            float *t = lethe_realloc(o->faces, (size_t)(o->nfaces + 1) * IDX_DIM * sizeof(float));
            if (!t) {
                rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
                break;
            }
            o->faces = t;
            memcpy(o->faces + (size_t)o->nfaces * IDX_DIM, sqlite3_column_blob(fs, 0),
                   IDX_DIM * sizeof(float));
            o->nfaces++;
        }
        sqlite3_reset(fs);
    }
    sqlite3_finalize(st);
    sqlite3_finalize(fs);
    return rc;
}

static void free_optouts(lethe_ingest *g)
{
    for (size_t i = 0; i < g->noptouts; i++) {
        if (g->optouts[i].faces)
            sodium_memzero(g->optouts[i].faces,
                           (size_t)g->optouts[i].nfaces * IDX_DIM * sizeof(float));
        lethe_free(g->optouts[i].faces);
    }
    lethe_free(g->optouts);
    g->optouts = NULL;
    g->noptouts = 0;
}

static int hash_is(lethe_ingest *g, const char *want, const void *v, size_t n)
{
    char h[65];
    if (!want[0])
        return 1;
    store_keyed_hash(g->s, v, n, h);
    return !strcmp(h, want);
}

/* Do the non-face conditions of opt-out o hold for this photo and record? */
static int optout_conds(lethe_ingest *g, const optout *o, const uint8_t sha[32], const prov_rec *p)
{
    if (!hash_is(g, o->h[5], sha, 32))
        return 0;
    const char *f[4] = {p->f[P_PHOTO_ID], p->f[P_URL], p->f[P_UPLOADER], p->f[P_SOURCE]};
    for (int k = 0; k < 4; k++)
        if (o->h[k][0] && (!*f[k] || !hash_is(g, o->h[k], f[k], strlen(f[k]))))
            return 0;
    if (o->h[4][0]) {
        const char *j = p->f[P_JUR];
        char country[3] = {j[0], j[0] ? j[1] : 0, 0};
        if (!*j || (!hash_is(g, o->h[4], j, strlen(j)) &&
                    !(j[2] == '-' && hash_is(g, o->h[4], country, 2))))
            return 0;
    }
    if (o->collected_before[0] &&
        (!*p->f[P_AT] || strcmp(p->f[P_AT], o->collected_before) >= 0))
        return 0;
    return 1;
}

/* A photo every one of whose offered records an opt-out (without faces)
 * refuses is skipped. */
static int photo_opted_out(lethe_ingest *g, const uint8_t sha[32], const prov_rec *p)
{
    for (size_t i = 0; i < g->noptouts; i++)
        if (!g->optouts[i].nfaces && optout_conds(g, &g->optouts[i], sha, p))
            return 1;
    return 0;
}

/* Is this face refused by a face opt-out whose other conditions hold? */
static int face_opted_out(lethe_ingest *g, const uint8_t sha[32], const prov_rec *p,
                          const float *desc)
{
    for (size_t i = 0; i < g->noptouts; i++) {
        const optout *o = &g->optouts[i];
        if (!o->nfaces || !optout_conds(g, o, sha, p))
            continue;
        for (int k = 0; k < o->nfaces; k++)
            if (lethe_descriptor_distance(desc, o->faces + (size_t)k * IDX_DIM) <= o->threshold)
                return 1;
    }
    return 0;
}

/* Drop every template of a photo (consent withdrawn). */
static int drop_templates(lethe_ingest *g, int64_t photo, const char *status)
{
    int rc;
    sqlite3_bind_int64(g->q_faces_t, 1, photo);
    while (sqlite3_step(g->q_faces_t) == SQLITE_ROW) {
        if ((rc = push_rm(g, sqlite3_column_int64(g->q_faces_t, 0)))) {
            sqlite3_reset(g->q_faces_t);
            return store_fail(g->s, rc, "out of memory");
        }
        COUNT(g, withdrawn, 1);
    }
    sqlite3_reset(g->q_faces_t);
    sqlite3_bind_int64(g->clr_faces, 1, photo);
    if ((rc = step_done(g, g->clr_faces, "dropping templates")))
        return rc;
    sqlite3_bind_text(g->set_status, 1, status, -1, SQLITE_STATIC);
    sqlite3_bind_int64(g->set_status, 2, photo);
    return step_done(g, g->set_status, "updating a photo");
}

/* A finished job: record it. */
static int record(lethe_ingest *g, job *j)
{
    int rc, added;
    int64_t photo = j->photo;
    if (j->status != LETHE_OK) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", j->error);
        report(g, j->input, j->line, msg);
        g->batch.errors++;
        return LETHE_OK;
    }
    if ((rc = open_batch(g)))
        return rc;
    /* Provenance that arrived while it was analysed may withdraw consent. */
    int allowed = photo_eligible(g, photo, j->provs);
    if (photo && (rc = store_dg(g->s, photo, -1)))
        return rc;
    if (photo) {
        /* re-analysis of a refused photo that a new basis allows */
        sqlite3_bind_int64(g->del_faces, 1, photo);
        if ((rc = step_done(g, g->del_faces, "dropping faces")))
            return rc;
        sqlite3_bind_int(g->upd_photo, 1, j->width);
        sqlite3_bind_int(g->upd_photo, 2, j->height);
        sqlite3_bind_int64(g->upd_photo, 3, photo);
        if ((rc = step_done(g, g->upd_photo, "updating a photo")))
            return rc;
    } else {
        if ((rc = insert_photo(g, j->sha, "photo", (int64_t)j->len, j->width, j->height,
                               allowed ? "analysed" : "withdrawn", &photo)))
            return rc;
        COUNT(g, added, 1);
    }
    if (!allowed) {
        sqlite3_bind_text(g->set_status, 1, "withdrawn", -1, SQLITE_STATIC);
        sqlite3_bind_int64(g->set_status, 2, photo);
        if ((rc = step_done(g, g->set_status, "updating a photo")))
            return rc;
        COUNT(g, withdrawn, (uint64_t)j->nfaces);
    }
    for (prov_rec *p = j->provs; p; p = p->next)
        if ((rc = add_prov(g, photo, p, &added)))
            return rc;
    int kept = 0;
    for (int i = 0; i < j->nfaces; i++) {
        const lethe_face *f = &j->faces[i];
        /* a face opt-out: the face is not stored at all (its number stays
         * unused, so the others keep theirs) */
        if (f->has_descriptor && g->noptouts && face_opted_out(g, j->sha, j->provs, f->descriptor)) {
            COUNT(g, opted_out_faces, 1);
            continue;
        }
        if ((rc = insert_face(g, photo, i, f->box, f->score,
                              allowed && f->has_descriptor ? f->descriptor : NULL)))
            return rc;
        kept++;
    }
    COUNT(g, faces, (uint64_t)kept);
    if (allowed)
        COUNT(g, templates, (uint64_t)kept);
    if (j->nfaces == 0)
        COUNT(g, no_face, 1);
    g->batch_photos++;
    return store_dg(g->s, photo, 1);
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

/* ----------------------------------------------------------- the API */

static const char *stmt_sql[] = {
    "SELECT id, status FROM photos WHERE sha256 = ?",
    "INSERT INTO photos(sha256, kind, bytes, width, height, status, added_at) "
    "VALUES (?,?,?,?,?,?,?)",
    "INSERT OR IGNORE INTO provenance(photo, path, photo_id, url, uploader, source, license, "
    "jurisdiction, consent, collected_at, added_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
    "INSERT INTO faces(photo, ord, x, y, w, h, score, descriptor) VALUES (?,?,?,?,?,?,?,?)",
    "SELECT jurisdiction, consent FROM provenance WHERE photo = ?",
    "SELECT id FROM faces WHERE photo = ? AND descriptor IS NOT NULL",
    "UPDATE faces SET descriptor = NULL WHERE photo = ?",
    "UPDATE photos SET status = ? WHERE id = ?",
    "DELETE FROM faces WHERE photo = ?",
    "UPDATE photos SET width = ?, height = ?, status = 'analysed' WHERE id = ?",
};

static sqlite3_stmt **stmt_slot(lethe_ingest *g, int i)
{
    sqlite3_stmt **slots[] = {&g->q_photo, &g->ins_photo, &g->ins_prov, &g->ins_face,
                              &g->q_provs, &g->q_faces_t, &g->clr_faces, &g->set_status,
                              &g->del_faces, &g->upd_photo};
    return slots[i];
}

int lethe_ingest_begin(lethe_store *s, const lethe_ingest_options *opt, lethe_ingest **out)
{
    lethe_ingest *g;
    int rc;
    *out = NULL;
    if (s->flags & LETHE_STORE_READONLY)
        return store_fail(s, LETHE_ERR_ARG, "the store is open read-only");
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
    if ((rc = store_lock(s)))
        goto fail;
    for (int i = 0; i < (int)LETHE_ARRAY_LEN(stmt_sql); i++)
        if ((rc = store_prepare(s, stmt_sql[i], stmt_slot(g, i))))
            goto fail;
    if ((rc = load_optouts(g)))
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

/* The catalog side of a photo or descriptor already known or refused. */
static int known_or_refused(lethe_ingest *g, const uint8_t sha[32], const char *kind,
                            int64_t bytes, prov_rec *prov, int *need_analysis, int64_t *photo_out)
{
    int64_t photo = 0;
    char status[16];
    int rc, found, added;
    *need_analysis = 0;
    *photo_out = 0;
    if ((found = find_photo(g, sha, &photo, status)) < 0)
        return LETHE_ERR_IO;
    if ((rc = open_batch(g)))
        return rc;
    if (found) {
        COUNT(g, duplicates, 1);
        if (strcmp(status, "analysed") != 0 && strcmp(prov->f[P_CONSENT], "withdrawn") != 0 &&
            photo_eligible(g, photo, prov) && !strcmp(kind, "photo")) {
            *need_analysis = 1; /* provenance added with the results */
            *photo_out = photo;
            return LETHE_OK;
        }
        if ((rc = store_dg(g->s, photo, -1)) || (rc = add_prov(g, photo, prov, &added)))
            return rc;
        if (!strcmp(prov->f[P_CONSENT], "withdrawn")) {
            if (!strcmp(status, "analysed")) {
                rc = drop_templates(g, photo, "withdrawn");
            } else if (!strcmp(status, "refused")) {
                sqlite3_bind_text(g->set_status, 1, "withdrawn", -1, SQLITE_STATIC);
                sqlite3_bind_int64(g->set_status, 2, photo);
                rc = step_done(g, g->set_status, "updating a photo");
            }
        }
        return rc ? rc : store_dg(g->s, photo, 1);
    }
    if (photo_eligible(g, 0, prov)) {
        *need_analysis = 1;
        return LETHE_OK;
    }
    /* Refused: catalogued so its owner can find and erase it, never analysed. */
    if ((rc = insert_photo(g, sha, kind, bytes, 0, 0,
                           !strcmp(prov->f[P_CONSENT], "withdrawn") ? "withdrawn" : "refused",
                           &photo)))
        return rc;
    COUNT(g, added, 1);
    COUNT(g, refused, 1);
    g->batch_photos++;
    if ((rc = add_prov(g, photo, prov, &added)))
        return rc;
    return store_dg(g->s, photo, 1);
}

static int looks_like_image(const uint8_t *b, size_t n)
{
    return (n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) ||
           (n >= 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8)) ||
           (n >= 12 && !memcmp(b, "RIFF", 4) && !memcmp(b + 8, "WEBP", 4));
}

int lethe_ingest_photo(lethe_ingest *g, const char *file, const lethe_provenance *prov,
                       size_t line)
{
    char msg[512], *abs = NULL;
    uint8_t *bytes = NULL;
    size_t len = 0;
    prov_rec *p = NULL;
    int rc = LETHE_OK, need = 0;
    int64_t photo = 0;
    uint8_t sha[32];

    if (g->failed)
        return g->failed;
    if (!g->opt.engine)
        return store_fail(g->s, LETHE_ERR_ARG, "ingesting photos needs an engine");
    COUNT(g, seen, 1);
    if ((rc = drain(g, 0)))
        goto fatal;
    abs = realpath(file, NULL);
    if (!abs) {
        snprintf(msg, sizeof(msg), "%s", strerror(errno));
        report(g, file, line, msg);
        g->batch.errors++;
        return LETHE_OK;
    }
    if (!(p = prov_make(prov, abs, msg, sizeof(msg)))) {
        free(abs);
        report(g, file, line, msg);
        g->batch.errors++;
        return LETHE_OK;
    }
    free(abs);
    rc = lethe_read_file(file, MAX_PHOTO_BYTES, &bytes, &len, msg, sizeof(msg));
    if (rc != LETHE_OK) {
        prov_free(p);
        report(g, file, line, msg);
        g->batch.errors++;
        return LETHE_OK;
    }
    pthread_mutex_lock(&g->stats_mu);
    g->total.bytes += len;
    pthread_mutex_unlock(&g->stats_mu);
    /* A refused photo is never decoded, but a file that is no image at all
     * is an error either way. */
    if (!looks_like_image(bytes, len)) {
        lethe_free(bytes);
        prov_free(p);
        report(g, file, line, "not a JPEG, PNG or WebP image");
        g->batch.errors++;
        return LETHE_OK;
    }
    crypto_hash_sha256(sha, bytes, len);

    /* A standing opt-out: not even catalogued. */
    if (g->noptouts && photo_opted_out(g, sha, p)) {
        COUNT(g, opted_out, 1);
        prov_free(p);
        lethe_free(bytes);
        return LETHE_OK;
    }
    /* The same photo already on its way: add this provenance to it. */
    job *same = inflight_find(g, sha);
    if (same) {
        COUNT(g, duplicates, 1);
        p->next = same->provs;
        same->provs = p;
        lethe_free(bytes);
        return LETHE_OK;
    }
    if ((rc = known_or_refused(g, sha, "photo", (int64_t)len, p, &need, &photo)))
        goto fatal;
    if (!need) {
        prov_free(p);
        lethe_free(bytes);
        return maybe_commit(g) == LETHE_OK ? LETHE_OK : (g->failed = LETHE_ERR_IO);
    }
    job *j = lethe_calloc(1, sizeof(*j));
    if (!j || !(j->input = lethe_strdup(file))) {
        lethe_free(j);
        rc = store_fail(g->s, LETHE_ERR_NOMEM, "out of memory");
        goto fatal;
    }
    memcpy(j->sha, sha, 32);
    j->bytes = bytes;
    j->len = len;
    j->photo = photo;
    j->line = line;
    j->provs = p;
    bytes = NULL;
    p = NULL;
    /* keep at most 2 photos per worker waiting */
    while (g->queued >= 2 * g->nthreads && (rc = drain(g, 1)) == LETHE_OK)
        ;
    if (rc)
        goto fatal;
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
fatal:
    prov_free(p);
    lethe_free(bytes);
    g->failed = rc ? rc : LETHE_ERR_IO;
    return g->failed;
}

int lethe_ingest_descriptor(lethe_ingest *g, const float *desc, const lethe_provenance *prov,
                            size_t line)
{
    static const char tag[] = "lethe-descriptor-v1";
    char msg[512];
    uint8_t sha[32];
    prov_rec *p;
    crypto_hash_sha256_state h;
    int rc, need = 0, added;
    int64_t photo = 0;

    if (g->failed)
        return g->failed;
    COUNT(g, seen, 1);
    for (int i = 0; i < IDX_DIM; i++) {
        if (!isfinite(desc[i]) || fabsf(desc[i]) > 16.0f) {
            snprintf(msg, sizeof(msg), "descriptor component %d is %g (not a descriptor)", i,
                     (double)desc[i]);
            report(g, "descriptor", line, msg);
            g->batch.errors++;
            return LETHE_OK;
        }
    }
    if (!(p = prov_make(prov, NULL, msg, sizeof(msg)))) {
        report(g, "descriptor", line, msg);
        g->batch.errors++;
        return LETHE_OK;
    }
    crypto_hash_sha256_init(&h);
    crypto_hash_sha256_update(&h, (const uint8_t *)tag, sizeof(tag));
    crypto_hash_sha256_update(&h, (const uint8_t *)desc, IDX_DIM * sizeof(float));
    crypto_hash_sha256_final(&h, sha);
    if (g->noptouts && (photo_opted_out(g, sha, p) || face_opted_out(g, sha, p, desc))) {
        COUNT(g, opted_out, 1);
        prov_free(p);
        return LETHE_OK;
    }
    rc = known_or_refused(g, sha, "descriptor", -1, p, &need, &photo);
    if (rc == LETHE_OK && need) {
        rc = insert_photo(g, sha, "descriptor", -1, 0, 0, "analysed", &photo);
        if (rc == LETHE_OK)
            rc = add_prov(g, photo, p, &added);
        if (rc == LETHE_OK)
            rc = insert_face(g, photo, 0, NULL, 0, desc);
        if (rc == LETHE_OK)
            rc = store_dg(g->s, photo, 1);
        if (rc == LETHE_OK) {
            COUNT(g, added, 1);
            COUNT(g, faces, 1);
            COUNT(g, templates, 1);
            g->batch_photos++;
        }
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
}

int lethe_ingest_end(lethe_ingest *g, lethe_ingest_stats *st)
{
    if (!g)
        return LETHE_OK;
    int rc = g->failed;
    while (rc == LETHE_OK && g->inflight > 0)
        rc = drain(g, 1);
    pthread_mutex_lock(&g->mu);
    g->stop = 1;
    pthread_cond_broadcast(&g->work);
    pthread_mutex_unlock(&g->mu);
    for (int i = 0; i < g->nthreads; i++)
        pthread_join(g->threads[i], NULL);
    /* jobs left over after a fatal error */
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
    if (rc == LETHE_OK)
        rc = commit_batch(g);
    else
        store_rollback(g->s);
    /* withdrawn consent dropped templates: leave no stale bytes of them */
    if (rc == LETHE_OK && g->total.withdrawn)
        rc = store_scrub(g->s, 1);
    for (int i = 0; i < (int)LETHE_ARRAY_LEN(stmt_sql); i++)
        sqlite3_finalize(*stmt_slot(g, i));
    store_unlock(g->s);
    if (st)
        *st = g->total;
    pthread_mutex_destroy(&g->mu);
    pthread_mutex_destroy(&g->stats_mu);
    pthread_cond_destroy(&g->work);
    pthread_cond_destroy(&g->done_cv);
    free_optouts(g);
    lethe_free(g->threads);
    lethe_free(g->rm);
    lethe_free(g->add_ids);
    lethe_free(g->add_vecs);
    lethe_free(g);
    return rc;
}
