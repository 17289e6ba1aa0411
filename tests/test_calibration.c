/*
 * test_calibration.c: match evidence. The calibration table shipped with
 * the descriptor model (its provenance, monotone rates, the threshold that
 * holds a false-positive identification rate, the tiers) and what search
 * puts beside each distance: the false-match rate, the strangers expected
 * in a store of its size, the tier, and --fpir's threshold.
 */
#include <math.h>
#include <unistd.h>

#include "lethe.h"
#include "people.h"
#include "test.h"

static char root[256];
static int nstore;

static unsigned rng = 777;
static float frand(void)
{
    return people_rand(&rng);
}

#define N 400
static float vecs[N][128];

/* 40 "people" of 10 faces: same-person distances near 0.28, others near 1.8 */
static void make_vecs(void)
{
    people_make(vecs, N / 10, 10, 0.06f, &rng);
}

static void test_info(void)
{
    lethe_calibration c;
    CHECK_EQ_INT(lethe_calibration_info(NULL), LETHE_ERR_ARG);
    CHECK_EQ_INT(lethe_calibration_info(&c), LETHE_OK);
    CHECK(c.name && strstr(c.name, "lfw") != NULL);
    CHECK(c.model && strstr(c.model, "dlib") != NULL);
    CHECK(c.source && strstr(c.source, "A-M") != NULL);
    /* LFW's A-M half: 9,377 of its 13,233 photos, 3,990 of its 5,749 people */
    CHECK_EQ_INT(c.photos, 9377);
    CHECK_EQ_INT(c.people, 3990);
    CHECK(c.no_face < 20);
    CHECK(c.impostor_pairs > 10000000u);
    CHECK(c.genuine_pairs > 50000u);
    /* measured down to a rate of 20 pairs */
    CHECK(c.min_measured_fmr <= 20.0 / (double)c.impostor_pairs * 1.5);
    CHECK(c.min_measured_distance > 0.2f && c.min_measured_distance < 0.5f);
}

static void test_rates(void)
{
    double prev_f = 0, prev_n = 1, f, n;
    for (float d = 0; d <= 2.0f; d += 0.001f) {
        CHECK_EQ_INT(lethe_calibration_rates(d, &f, &n), LETHE_OK);
        CHECK(f >= prev_f && f <= 1 && f > 0);
        CHECK(n <= prev_n + 1e-12 && n >= 0);
        prev_f = f;
        prev_n = n;
    }
    CHECK_EQ_INT(lethe_calibration_rates(0, &f, NULL), LETHE_OK);
    CHECK(f < 1e-8);
    CHECK_EQ_INT(lethe_calibration_rates(2.0f, &f, &n), LETHE_OK);
    CHECK(f == 1 && n < 1e-3);
    /* at dlib's 0.6: about one impostor pair in a hundred as close (LFW
     * A-M), a genuine pair farther in under one in a hundred */
    CHECK_EQ_INT(lethe_calibration_rates(0.6f, &f, &n), LETHE_OK);
    CHECK(f > 0.005 && f < 0.02);
    CHECK(n > 0.001 && n < 0.02);
    CHECK_EQ_INT(lethe_calibration_rates(NAN, &f, &n), LETHE_ERR_ARG);
    CHECK_EQ_INT(lethe_calibration_rates(-0.1f, &f, &n), LETHE_ERR_ARG);
    CHECK_EQ_INT(lethe_calibration_rates(INFINITY, &f, &n), LETHE_ERR_ARG);
    CHECK_EQ_INT(lethe_calibration_rates(0.5f, NULL, NULL), LETHE_OK);
}

/* The threshold holds the rate, and is the largest that does (to a float
 * step's rounding). */
static void test_threshold(void)
{
    static const double fpirs[] = {0.5, 0.1, 0.01, 0.001};
    static const uint64_t sizes[] = {1, 100, 10000, 1000000, 100000000};
    for (size_t i = 0; i < sizeof(fpirs) / sizeof(fpirs[0]); i++) {
        float prev = INFINITY;
        for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
            float t;
            double f, f_up;
            CHECK_EQ_INT(lethe_calibration_threshold(fpirs[i], sizes[k], &t), LETHE_OK);
            /* 0 when no distance holds it (beyond the table's reach) */
            CHECK(t >= 0 && (t < prev || t == 0));
            prev = t;
            if (t == 0)
                continue;
            lethe_calibration_rates(t, &f, NULL);
            lethe_calibration_rates(t + 1e-4f, &f_up, NULL);
            double fpir = -expm1((double)sizes[k] * log1p(-f));
            double fpir_up = -expm1((double)sizes[k] * log1p(-f_up));
            CHECK(fpir <= fpirs[i] * (1 + 1e-9));
            CHECK(fpir_up > fpirs[i] || f_up >= 1);
        }
    }
    float t;
    CHECK_EQ_INT(lethe_calibration_threshold(0.01, 0, &t), LETHE_OK);
    CHECK(isinf(t));
    CHECK_EQ_INT(lethe_calibration_threshold(0, 10, &t), LETHE_ERR_ARG);
    CHECK_EQ_INT(lethe_calibration_threshold(1, 10, &t), LETHE_ERR_ARG);
    CHECK_EQ_INT(lethe_calibration_threshold(-0.5, 10, &t), LETHE_ERR_ARG);
    CHECK_EQ_INT(lethe_calibration_threshold(NAN, 10, &t), LETHE_ERR_ARG);
    CHECK_EQ_INT(lethe_calibration_threshold(0.01, 10, NULL), LETHE_ERR_ARG);
}

static void test_tiers(void)
{
    static const struct {
        double strangers;
        int tier;
        const char *name;
    } cases[] = {{0, LETHE_TIER_STRONG, "strong"},       {0.0099, LETHE_TIER_STRONG, "strong"},
                 {0.01, LETHE_TIER_MODERATE, "moderate"}, {0.099, LETHE_TIER_MODERATE, "moderate"},
                 {0.1, LETHE_TIER_WEAK, "weak"},          {0.99, LETHE_TIER_WEAK, "weak"},
                 {1, LETHE_TIER_NONE, "none"},            {1e9, LETHE_TIER_NONE, "none"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int tier = -1;
        CHECK_EQ_INT(lethe_calibration_tier(cases[i].strangers, &tier), LETHE_OK);
        CHECK_EQ_INT(tier, cases[i].tier);
        CHECK(!strcmp(lethe_tier_name(tier), cases[i].name));
    }
    int tier;
    CHECK_EQ_INT(lethe_calibration_tier(-1, &tier), LETHE_ERR_ARG);
    CHECK_EQ_INT(lethe_calibration_tier(NAN, &tier), LETHE_ERR_ARG);
    CHECK_EQ_INT(lethe_calibration_tier(1, NULL), LETHE_ERR_ARG);
    CHECK(!strcmp(lethe_tier_name(-1), "?"));
    CHECK(!strcmp(lethe_tier_name(LETHE_TIER_UNCALIBRATED), "uncalibrated"));
    CHECK(!strcmp(lethe_tier_name(5), "?"));
}

static lethe_store *store_with(int n)
{
    char dir[300];
    lethe_store *s = NULL;
    lethe_ingest_options o;
    lethe_ingest *g = NULL;
    snprintf(dir, sizeof(dir), "%s/s%d", root, nstore++);
    if (lethe_store_open(dir, LETHE_STORE_CREATE, &s) != LETHE_OK) {
        CHECK(!"store created");
        lethe_store_close(s);
        return NULL;
    }
    lethe_ingest_options_init(&o);
    o.actor = "test";
    CHECK_EQ_INT(lethe_ingest_begin(s, &o, &g), LETHE_OK);
    for (int i = 0; g && i < n; i++) {
        char id[32];
        snprintf(id, sizeof(id), "photo%d", i);
        lethe_provenance p = {.photo_id = id, .source = "synthetic", .jurisdiction = "US",
                              .consent = "explicit"};
        CHECK_EQ_INT(lethe_ingest_descriptor(g, vecs[i], &p, (size_t)i + 1), LETHE_OK);
    }
    if (g)
        CHECK_EQ_INT(lethe_ingest_end(g, NULL), LETHE_OK);
    return s;
}

/* Every match carries the table's evidence for its distance and store. */
static void check_evidence(const lethe_match *m, size_t n, uint64_t gallery)
{
    for (size_t i = 0; i < n; i++) {
        double f;
        int tier;
        CHECK_EQ_INT(lethe_calibration_rates(m[i].distance, &f, NULL), LETHE_OK);
        CHECK(m[i].fmr == f);
        CHECK_EQ_INT(m[i].gallery, gallery);
        CHECK_NEAR(m[i].strangers, f * (double)gallery, 1e-12 * (double)gallery);
        lethe_calibration_tier(m[i].strangers, &tier);
        CHECK_EQ_INT(m[i].tier, tier);
    }
}

static void test_search_evidence(void)
{
    lethe_store *s = store_with(N);
    lethe_search_options o;
    lethe_match *m = NULL;
    size_t nm = 0;
    uint64_t count = 0;
    if (!s)
        return;
    CHECK_EQ_INT(lethe_store_templates(s, &count), LETHE_OK);
    CHECK_EQ_INT(count, N);
    lethe_search_options_init(&o);
    CHECK(o.fpir == 0);
    o.purpose = "test";
    o.top_k = 20;
    CHECK_EQ_INT(lethe_search(s, vecs[5], 1, &o, &m, &nm), LETHE_OK);
    CHECK_EQ_INT(nm, 20);
    check_evidence(m, nm, N);
    /* its own 10 faces are near and strong; the others far, no evidence */
    CHECK(nm == 20 && m[0].tier == LETHE_TIER_STRONG && m[9].tier == LETHE_TIER_STRONG);
    CHECK(nm == 20 && m[10].tier == LETHE_TIER_NONE && m[10].fmr == 1);
    lethe_matches_free(m, nm);

    /* --fpir: only what is closer than the threshold for this store */
    float t;
    o.fpir = 0.01;
    CHECK_EQ_INT(lethe_calibration_threshold(0.01, N, &t), LETHE_OK);
    CHECK(t > 0.3f && t < 0.6f);
    CHECK_EQ_INT(lethe_search(s, vecs[5], 1, &o, &m, &nm), LETHE_OK);
    CHECK_EQ_INT(nm, 10);
    for (size_t i = 0; i < nm; i++)
        CHECK(m[i].distance <= t);
    check_evidence(m, nm, N);
    lethe_matches_free(m, nm);
    /* a face the store does not hold: nothing */
    float stranger[128];
    for (int k = 0; k < 128; k++)
        stranger[k] = frand() * 0.4f;
    CHECK_EQ_INT(lethe_search(s, stranger, 1, &o, &m, &nm), LETHE_OK);
    CHECK_EQ_INT(nm, 0);
    lethe_matches_free(m, nm);
    /* the lower of threshold and fpir's applies */
    o.threshold = 0.1f;
    CHECK_EQ_INT(lethe_search(s, vecs[5], 1, &o, &m, &nm), LETHE_OK);
    CHECK_EQ_INT(nm, 1);
    lethe_matches_free(m, nm);
    o.threshold = INFINITY;
    /* the datasheet shows the same evidence at this store's size */
    char *sheet = NULL, want[64];
    CHECK_EQ_INT(lethe_datasheet(s, "md", &sheet), LETHE_OK);
    CHECK(sheet && strstr(sheet, "## Match evidence") != NULL);
    CHECK(sheet && strstr(sheet, "This store holds 400 templates.") != NULL);
    snprintf(want, sizeof(want), "| 0.01 | %ld.%04ld |", lround((double)t * 10000) / 10000,
             lround((double)t * 10000) % 10000);
    CHECK(sheet && strstr(sheet, want) != NULL);
    lethe_free_string(sheet);
    CHECK_EQ_INT(lethe_datasheet(s, "html", &sheet), LETHE_OK);
    CHECK(sheet && strstr(sheet, "<section id=\"evidence\">") != NULL);
    lethe_free_string(sheet);
    static const double bad[] = {1, 1.5, -0.01, NAN};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        o.fpir = bad[i];
        CHECK_EQ_INT(lethe_search(s, vecs[5], 1, &o, &m, &nm), LETHE_ERR_ARG);
        CHECK(m == NULL && nm == 0);
        CHECK(strstr(lethe_store_errmsg(s), "fpir") != NULL);
    }
    lethe_store_close(s);
}

/* The same distance is weaker evidence in a bigger store, and --fpir's
 * threshold falls as the store grows. */
static void test_bigger_store(void)
{
    lethe_store *small = store_with(40), *big = store_with(N);
    lethe_search_options o;
    lethe_match *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    if (!small || !big)
        goto out;
    lethe_search_options_init(&o);
    o.purpose = "test";
    o.top_k = 1;
    CHECK_EQ_INT(lethe_search(small, vecs[3], 1, &o, &a, &na), LETHE_OK);
    CHECK_EQ_INT(lethe_search(big, vecs[3], 1, &o, &b, &nb), LETHE_OK);
    CHECK(na == 1 && nb == 1);
    if (na == 1 && nb == 1) {
        CHECK(a[0].distance == b[0].distance && a[0].fmr == b[0].fmr);
        CHECK_NEAR(b[0].strangers, a[0].strangers * N / 40, 1e-9);
    }
    float ts, tb;
    lethe_calibration_threshold(0.01, 40, &ts);
    lethe_calibration_threshold(0.01, N, &tb);
    CHECK(tb < ts);
out:
    lethe_matches_free(a, na);
    lethe_matches_free(b, nb);
    lethe_store_close(small);
    lethe_store_close(big);
}

int main(int argc, char **argv)
{
    test_select(argc, argv);
    snprintf(root, sizeof(root), "/tmp/lethe-test-calibration-XXXXXX");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    make_vecs();
    RUN(test_info);
    RUN(test_rates);
    RUN(test_threshold);
    RUN(test_tiers);
    RUN(test_search_evidence);
    RUN(test_bigger_store);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", root);
    return test_summary();
}
