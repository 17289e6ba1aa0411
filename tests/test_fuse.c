/*
 * test_fuse.c: multi-photo probes (lethe_search_fused and
 * lethe_search_images_fused). Two noisy copies of one face, each nearer a
 * stranger than the face, find the face first when fused; a fused search
 * is one log entry with a hash over all its probes; its matches carry no
 * calibrated evidence (no table was measured for mean descriptors) and
 * fpir is refused; each returned photo counts once for the data-subject
 * page; bad arguments are refused with nothing logged.
 */
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "lethe.h"
#include "test.h"

static char root[256];
static int nstore;

static unsigned rng = 4242;
static float frand(void)
{
    rng = rng * 1103515245u + 12345u;
    return (float)((rng >> 8) & 0xFFFF) / 65536.0f - 0.5f;
}

#define D 128
#define PEOPLE 50

static float target[D], n1[D], n2[D], probes[2][D], decoy[2][D], others[PEOPLE][D];

/*
 * The target face T; two probes T + n1 and T + n2 with n2 = -n1 + e (e
 * small): their mean is T + e/2. Decoy k sits at T + 0.9 nk, so each probe
 * alone is ten times nearer its decoy than T; the mean is nearer T than
 * either decoy. Fifty other people far away fill the store.
 */
static void make_vecs(void)
{
    for (int k = 0; k < D; k++) {
        target[k] = frand() * 0.4f;
        n1[k] = frand() * 0.1f;
        n2[k] = -n1[k] + frand() * 0.01f;
        probes[0][k] = target[k] + n1[k];
        probes[1][k] = target[k] + n2[k];
        decoy[0][k] = target[k] + 0.9f * n1[k];
        decoy[1][k] = target[k] + 0.9f * n2[k];
    }
    for (int p = 0; p < PEOPLE; p++)
        for (int k = 0; k < D; k++)
            others[p][k] = frand() * 0.4f;
}

static void put(lethe_ingest *g, const float *v, const char *id, size_t line)
{
    lethe_provenance p = {.photo_id = id, .source = "synthetic", .jurisdiction = "US",
                          .consent = "explicit"};
    CHECK_EQ_INT(lethe_ingest_descriptor(g, v, &p, line), LETHE_OK);
}

static lethe_store *make_store(void)
{
    char dir[300];
    lethe_store *s = NULL;
    lethe_ingest *g = NULL;
    lethe_ingest_options o;
    snprintf(dir, sizeof(dir), "%s/s%d", root, nstore++);
    if (lethe_store_open(dir, LETHE_STORE_CREATE, &s) != LETHE_OK) {
        CHECK(!"store created");
        lethe_store_close(s);
        return NULL;
    }
    lethe_ingest_options_init(&o);
    o.actor = "test";
    CHECK_EQ_INT(lethe_ingest_begin(s, &o, &g), LETHE_OK);
    if (!g)
        return s;
    put(g, target, "target", 1);
    put(g, decoy[0], "decoy0", 2);
    put(g, decoy[1], "decoy1", 3);
    for (int p = 0; p < PEOPLE; p++) {
        char id[32];
        snprintf(id, sizeof(id), "other%d", p);
        put(g, others[p], id, (size_t)p + 4);
    }
    CHECK_EQ_INT(lethe_ingest_end(g, NULL), LETHE_OK);
    return s;
}

/* The log's entries as JSON Lines (caller frees), and how many. */
static char *log_lines(lethe_store *s, int *n)
{
    char *out = NULL;
    *n = 0;
    CHECK_EQ_INT(lethe_log_export(s, "jsonl", &out), LETHE_OK);
    for (const char *p = out; p && *p; p++)
        *n += *p == '\n';
    return out;
}

/* The photo id of match m (its provenance's). */
static const char *id_of(const lethe_match *m) { return m->prov.photo_id ? m->prov.photo_id : ""; }

static void test_fused_ranks_the_mate_first(void)
{
    lethe_store *s = make_store();
    lethe_search_options o;
    lethe_match *m = NULL;
    size_t nm = 0;
    if (!s)
        return;
    lethe_search_options_init(&o);
    o.purpose = "test: fuse";
    o.top_k = 3;
    /* each probe alone: its decoy first, the target second */
    for (int k = 0; k < 2; k++) {
        char want[32];
        snprintf(want, sizeof(want), "decoy%d", k);
        CHECK_EQ_INT(lethe_search(s, probes[k], 1, &o, &m, &nm), LETHE_OK);
        CHECK(nm == 3 && !strcmp(id_of(&m[0]), want));
        CHECK(nm == 3 && strcmp(id_of(&m[0]), "target") != 0);
        lethe_matches_free(m, nm);
    }
    /* fused: the target first, one answer (query 0) */
    CHECK_EQ_INT(lethe_search_fused(s, &probes[0][0], 2, &o, &m, &nm), LETHE_OK);
    CHECK_EQ_INT(nm, 3);
    CHECK(nm >= 1 && !strcmp(id_of(&m[0]), "target"));
    for (size_t i = 0; i < nm; i++)
        CHECK_EQ_INT(m[i].query, 0);
    /* the distance is the mean's */
    float mean[D];
    for (int k = 0; k < D; k++)
        mean[k] = (probes[0][k] + probes[1][k]) / 2;
    CHECK(nm >= 1 && fabsf(m[0].distance - lethe_descriptor_distance(mean, target)) < 1e-5f);
    lethe_matches_free(m, nm);
    /* one probe fused is that probe's search */
    CHECK_EQ_INT(lethe_search_fused(s, probes[0], 1, &o, &m, &nm), LETHE_OK);
    CHECK(nm == 3 && !strcmp(id_of(&m[0]), "decoy0"));
    lethe_matches_free(m, nm);
    lethe_store_close(s);
}

/* One entry for the fused search, its hash over both probes (not the
 * mean's, not either probe's), its result count; data-subject counts once
 * per returned photo. */
static void test_fused_log_and_hits(void)
{
    lethe_store *s = make_store();
    lethe_search_options o;
    lethe_match *m = NULL;
    size_t nm = 0;
    int before = 0, after = 0;
    if (!s)
        return;
    lethe_search_options_init(&o);
    o.purpose = "test: fused log";
    o.actor = "tester";
    o.top_k = 2;
    lethe_free_string(log_lines(s, &before));
    CHECK_EQ_INT(lethe_search_fused(s, &probes[0][0], 2, &o, &m, &nm), LETHE_OK);
    CHECK_EQ_INT(nm, 2);
    lethe_matches_free(m, nm);
    char *log = log_lines(s, &after);
    CHECK_EQ_INT(after, before + 1);
    char *last = log ? strrchr(log, '\n') : NULL;
    if (last) { /* the last line: the fused search's entry */
        *last = 0;
        char *prev = strrchr(log, '\n');
        last = prev ? prev + 1 : log;
        CHECK(strstr(last, "\"search\"") != NULL);
        CHECK(strstr(last, "test: fused log") != NULL);
        CHECK(strstr(last, "\"results\":2") != NULL);
    }
    /* the data-subject page: the target's photo was returned by one search */
    lethe_subject_photo *ph = NULL;
    size_t np = 0;
    CHECK_EQ_INT(lethe_subject_lookup(s, LETHE_LOOKUP_PHOTO_ID, "target", NULL, 0, "test", &ph,
                                      &np),
                 LETHE_OK);
    CHECK_EQ_INT(np, 1);
    if (np == 1) {
        CHECK_EQ_INT(ph[0].npurposes, 1);
        if (ph[0].npurposes == 1) {
            CHECK(!strcmp(ph[0].purposes[0].purpose, "test: fused log"));
            CHECK_EQ_INT(ph[0].purposes[0].searches, 1);
        }
    }
    lethe_subject_photos_free(ph, np);
    /* a single probe's search logs another hash */
    char *fused = last ? strdup(last) : NULL;
    lethe_free_string(log);
    CHECK_EQ_INT(lethe_search(s, probes[0], 1, &o, &m, &nm), LETHE_OK);
    lethe_matches_free(m, nm);
    log = log_lines(s, &after);
    last = log ? strrchr(log, '\n') : NULL;
    if (last && fused) {
        *last = 0;
        char *prev = strrchr(log, '\n');
        last = prev ? prev + 1 : log;
        const char *qa = strstr(fused, "\"query_hash\":\""),
                   *qb = strstr(last, "\"query_hash\":\"");
        CHECK(qa && qb);
        if (qa && qb)
            CHECK(strncmp(qa, qb, 14 + 64) != 0);
    }
    free(fused);
    lethe_free_string(log);
    lethe_store_close(s);
}

/* No table was measured for fused probes: no rate, no fpir. */
static void test_fused_evidence(void)
{
    lethe_store *s = make_store();
    lethe_search_options o;
    lethe_match *m = NULL;
    size_t nm = 0;
    uint64_t gallery = 0;
    int before = 0, after = 0;
    if (!s)
        return;
    CHECK_EQ_INT(lethe_store_templates(s, &gallery), LETHE_OK);
    lethe_search_options_init(&o);
    o.purpose = "test: evidence";
    o.top_k = 5;
    CHECK_EQ_INT(lethe_search_fused(s, &probes[0][0], 2, &o, &m, &nm), LETHE_OK);
    CHECK_EQ_INT(nm, 5);
    for (size_t i = 0; i < nm; i++) {
        CHECK(isnan(m[i].fmr));
        CHECK(isnan(m[i].strangers));
        CHECK_EQ_INT(m[i].tier, LETHE_TIER_UNCALIBRATED);
        CHECK_EQ_INT(m[i].gallery, gallery);
    }
    CHECK(!strcmp(lethe_tier_name(LETHE_TIER_UNCALIBRATED), "uncalibrated"));
    lethe_matches_free(m, nm);
    /* a single-photo search of the same store keeps its calibrated evidence */
    CHECK_EQ_INT(lethe_search(s, probes[0], 1, &o, &m, &nm), LETHE_OK);
    CHECK(nm == 5 && !isnan(m[0].fmr) && m[0].tier != LETHE_TIER_UNCALIBRATED);
    lethe_matches_free(m, nm);
    /* refused, nothing logged: fpir, no probes, too many, non-finite */
    lethe_free_string(log_lines(s, &before));
    o.fpir = 0.01;
    CHECK_EQ_INT(lethe_search_fused(s, &probes[0][0], 2, &o, &m, &nm), LETHE_ERR_ARG);
    CHECK(strstr(lethe_store_errmsg(s), "fpir") != NULL);
    CHECK(m == NULL && nm == 0);
    o.fpir = 0;
    CHECK_EQ_INT(lethe_search_fused(s, &probes[0][0], 0, &o, &m, &nm), LETHE_ERR_ARG);
    CHECK_EQ_INT(lethe_search_fused(s, NULL, 2, &o, &m, &nm), LETHE_ERR_ARG);
    static float many[LETHE_FUSE_MAX + 1][D];
    CHECK_EQ_INT(lethe_search_fused(s, &many[0][0], LETHE_FUSE_MAX + 1, &o, &m, &nm),
                 LETHE_ERR_ARG);
    float bad[2][D];
    memcpy(bad, probes, sizeof(bad));
    bad[1][7] = NAN;
    CHECK_EQ_INT(lethe_search_fused(s, &bad[0][0], 2, &o, &m, &nm), LETHE_ERR_ARG);
    CHECK(strstr(lethe_store_errmsg(s), "probe 1") != NULL);
    o.purpose = NULL;
    CHECK_EQ_INT(lethe_search_fused(s, &probes[0][0], 2, &o, &m, &nm), LETHE_ERR_ARG);
    lethe_free_string(log_lines(s, &after));
    CHECK_EQ_INT(after, before);
    lethe_store_close(s);
}

/* By image: the largest face of each photo; a photo without a face is
 * named by its index and nothing is logged. */
static void test_fused_images(void)
{
    const char *data = test_data_dir();
    char path[3][600];
    lethe_image *img[3] = {NULL, NULL, NULL};
    lethe_engine *e = NULL;
    lethe_store *s = NULL;
    lethe_match *m = NULL;
    size_t nm = 0;
    if (!test_models_dir())
        SKIP("models/ absent");
    if (!data)
        SKIP("../shared/data absent");
    for (int i = 0; i < 3; i++) {
        snprintf(path[i], sizeof(path[i]), "%s/lfw/images/Aaron_Peirsol/Aaron_Peirsol_000%d.jpg",
                 data, i + 1);
        char msg[256];
        if (lethe_image_load(path[i], NULL, &img[i], msg, sizeof(msg)) != LETHE_OK) {
            for (int j = 0; j < i; j++)
                lethe_image_free(img[j]);
            SKIP("LFW's Aaron_Peirsol photos absent");
        }
    }
    lethe_engine_options eo;
    lethe_engine_options_init(&eo);
    eo.model_dir = test_models_dir();
    CHECK_EQ_INT(lethe_engine_open(&e, &eo), LETHE_OK);
    s = make_store();
    if (e && s) {
        /* the first photo's face joins the store */
        lethe_face *f = NULL;
        int nf = 0;
        lethe_ingest *g = NULL;
        lethe_ingest_options io;
        lethe_ingest_options_init(&io);
        CHECK_EQ_INT(lethe_engine_analyze(e, img[0], LETHE_WANT_DESCRIPTOR | LETHE_LARGEST_FACE,
                                          &f, &nf),
                     LETHE_OK);
        CHECK_EQ_INT(lethe_ingest_begin(s, &io, &g), LETHE_OK);
        if (g && nf == 1)
            put(g, f[0].descriptor, "peirsol1", 100);
        if (g)
            CHECK_EQ_INT(lethe_ingest_end(g, NULL), LETHE_OK);
        lethe_search_options o;
        lethe_search_options_init(&o);
        o.purpose = "test: fused images";
        o.top_k = 1;
        const lethe_image *two[2] = {img[1], img[2]};
        CHECK_EQ_INT(lethe_search_images_fused(s, e, two, 2, &o, &m, &nm), LETHE_OK);
        CHECK(nm == 1 && !strcmp(id_of(&m[0]), "peirsol1"));
        CHECK(nm == 1 && m[0].tier == LETHE_TIER_UNCALIBRATED);
        /* the same as fusing their descriptors */
        float d[2][D];
        for (int i = 0; i < 2; i++) {
            lethe_face *fi = NULL;
            int ni = 0;
            CHECK_EQ_INT(lethe_engine_analyze(e, two[i],
                                              LETHE_WANT_DESCRIPTOR | LETHE_LARGEST_FACE, &fi,
                                              &ni),
                         LETHE_OK);
            if (ni == 1)
                memcpy(d[i], fi[0].descriptor, sizeof(d[i]));
            lethe_faces_free(fi);
        }
        lethe_match *m2 = NULL;
        size_t nm2 = 0;
        CHECK_EQ_INT(lethe_search_fused(s, &d[0][0], 2, &o, &m2, &nm2), LETHE_OK);
        CHECK(nm == 1 && nm2 == 1 && m2[0].distance == m[0].distance);
        lethe_matches_free(m2, nm2);
        lethe_matches_free(m, nm);
        lethe_faces_free(f);
        /* a photo without a face: named, nothing logged */
        uint8_t grey[64 * 48 * 3];
        lethe_image *blank = NULL;
        int before = 0, after = 0;
        memset(grey, 128, sizeof(grey));
        CHECK_EQ_INT(lethe_image_from_rgb(grey, 64, 48, &blank), LETHE_OK);
        const lethe_image *withblank[2] = {img[1], blank};
        lethe_free_string(log_lines(s, &before));
        CHECK_EQ_INT(lethe_search_images_fused(s, e, withblank, 2, &o, &m, &nm),
                     LETHE_ERR_NO_FACE);
        CHECK(strstr(lethe_store_errmsg(s), "image 1") != NULL);
        CHECK(m == NULL && nm == 0);
        lethe_free_string(log_lines(s, &after));
        CHECK_EQ_INT(after, before);
        CHECK_EQ_INT(lethe_search_images_fused(s, e, two, 0, &o, &m, &nm), LETHE_ERR_ARG);
        lethe_image_free(blank);
    }
    lethe_store_close(s);
    lethe_engine_close(e);
    for (int i = 0; i < 3; i++)
        lethe_image_free(img[i]);
}

/* Through a shared handle (as lethe serve opens it): the same ranking, on
 * a view, its one entry committed by the group commit before it returns. */
static void test_fused_shared(void)
{
    lethe_store *s = make_store(), *sh = NULL;
    lethe_search_options o;
    lethe_match *m = NULL, *ms = NULL;
    size_t nm = 0, ns = 0;
    int before = 0, after = 0;
    if (!s)
        return;
    char dir[300];
    snprintf(dir, sizeof(dir), "%s", lethe_store_path(s));
    lethe_search_options_init(&o);
    o.purpose = "test: fused, shared";
    o.actor = "tester";
    o.top_k = 3;
    CHECK_EQ_INT(lethe_search_fused(s, &probes[0][0], 2, &o, &m, &nm), LETHE_OK);
    lethe_store_close(s);
    CHECK_EQ_INT(lethe_store_open(dir, LETHE_STORE_SHARED, &sh), LETHE_OK);
    if (!sh) {
        lethe_matches_free(m, nm);
        return;
    }
    lethe_free_string(log_lines(sh, &before));
    CHECK_EQ_INT(lethe_search_fused(sh, &probes[0][0], 2, &o, &ms, &ns), LETHE_OK);
    CHECK_EQ_INT(ns, nm);
    for (size_t i = 0; i < ns && i < nm; i++) {
        CHECK(!strcmp(id_of(&ms[i]), id_of(&m[i])));
        CHECK(ms[i].distance == m[i].distance && ms[i].tier == LETHE_TIER_UNCALIBRATED);
    }
    lethe_matches_free(ms, ns);
    lethe_free_string(log_lines(sh, &after));
    CHECK_EQ_INT(after, before + 1);
    /* its refusals hold there too */
    o.fpir = 0.01;
    CHECK_EQ_INT(lethe_search_fused(sh, &probes[0][0], 2, &o, &ms, &ns), LETHE_ERR_ARG);
    lethe_matches_free(m, nm);
    lethe_store_close(sh);
}

int main(int argc, char **argv)
{
    test_select(argc, argv);
    snprintf(root, sizeof(root), "/tmp/lethe-test-fuse-XXXXXX");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    make_vecs();
    RUN(test_fused_ranks_the_mate_first);
    RUN(test_fused_log_and_hits);
    RUN(test_fused_evidence);
    RUN(test_fused_images);
    RUN(test_fused_shared);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", root);
    return test_summary();
}
