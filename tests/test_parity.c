/*
 * test_parity.c: lethe against face-api.js itself (tools/ref, tfjs-wasm), on
 * identical pixels. Needs node with tools/ref installed (scripts/setup-ref.sh)
 * and ../shared/data; each test says so and skips visibly otherwise.
 *
 *  - descriptor: 150x150 LFW centre crops (PNG) through `lethe embed --chip`'s
 *    code path, within L2 PARITY_DESC_DEFAULT by default and
 *    PARITY_DESC_FP32 with full fp32 precision;
 *  - landmarks: the 68-point net on face crops of several shapes (square,
 *    taller, wider, odd padding), within PARITY_LANDMARK_PX pixels, and its
 *    raw output within PARITY_LANDMARK_RAW.
 */
#include "test.h"

#include <unistd.h>

#include "face/nets.h"
#include "lethe.h"
#include "util/json.h"
#include "util/util.h"

#define PARITY_DESC_DEFAULT 0.01
#define PARITY_DESC_FP32 1e-4
#define PARITY_LANDMARK_PX 0.01
#define PARITY_LANDMARK_RAW 1e-5
#define NCHIPS 24

static char tmpdir[] = "/tmp/lethe-parity-XXXXXX";
static char chips[NCHIPS][600];
static int nchips;

static int have_ref(void)
{
    return access("tools/ref/node_modules/@vladmandic/face-api/package.json", F_OK) == 0 &&
           system("node --version >/dev/null 2>&1") == 0;
}

/* Run a command and parse its stdout as JSON Lines into values[]. */
static int run_json_lines(const char *cmd, json_value **values, int max)
{
    FILE *p = popen(cmd, "r");
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int n = 0;
    if (!p)
        return -1;
    while ((len = getline(&line, &cap, p)) > 0 && n < max) {
        char msg[200];
        if (json_parse(line, (size_t)len, &values[n], msg, sizeof(msg)) == LETHE_OK)
            n++;
        else
            fprintf(stderr, "  bad JSON from %s: %s\n", cmd, msg);
    }
    free(line);
    return pclose(p) == 0 ? n : -1;
}

static void make_chips(void)
{
    char cmd[1024];
    const char *data = test_data_dir();
    if (!data || !have_ref() || !mkdtemp(tmpdir))
        return;
    snprintf(cmd, sizeof(cmd), "node tools/ref/make-chips.mjs %s --n %d --lfw %s/lfw/images",
             tmpdir, NCHIPS, data);
    FILE *p = popen(cmd, "r");
    if (!p)
        return;
    while (nchips < NCHIPS && fgets(chips[nchips], sizeof(chips[0]), p)) {
        chips[nchips][strcspn(chips[nchips], "\n")] = 0;
        if (chips[nchips][0])
            nchips++;
    }
    pclose(p);
}

static double l2(const float *a, const json_value *b)
{
    double s = 0;
    for (int i = 0; i < 128; i++) {
        double d = a[i] - b->items[i]->number;
        s += d * d;
    }
    return sqrt(s);
}

static void check_descriptors(int precision, double tol)
{
    const char *models = test_models_dir();
    json_value *ref[NCHIPS] = {0};
    char cmd[16384];
    size_t off;
    lethe_engine *e = NULL;
    lethe_engine_options o;
    double worst = 0;

    if (!test_data_dir())
        SKIP("../shared/data absent");
    if (!have_ref())
        SKIP("node or tools/ref absent (scripts/setup-ref.sh)");
    if (!models)
        SKIP("models/ absent");
    CHECK(nchips == NCHIPS);
    off = (size_t)snprintf(cmd, sizeof(cmd), "node tools/ref/describe.mjs --models %s", models);
    for (int i = 0; i < nchips; i++)
        off += (size_t)snprintf(cmd + off, sizeof(cmd) - off, " %s", chips[i]);
    int n = run_json_lines(cmd, ref, NCHIPS);
    CHECK_EQ_INT(n, nchips);
    lethe_engine_options_init(&o);
    o.model_dir = models;
    o.precision = precision;
    CHECK_EQ_INT(lethe_engine_open(&e, &o), LETHE_OK);
    for (int i = 0; i < n && e; i++) {
        lethe_image *img = NULL;
        float d[128];
        const json_value *rd = json_get(ref[i], "descriptor");
        CHECK(rd && rd->type == JSON_ARRAY && rd->len == 128);
        CHECK_EQ_INT(lethe_image_load(chips[i], NULL, &img, NULL, 0), LETHE_OK);
        if (!img || !rd)
            continue;
        CHECK_EQ_INT(lethe_engine_describe_chip(e, img, d), LETHE_OK);
        double dist = l2(d, rd);
        if (dist > worst)
            worst = dist;
        CHECK(dist <= tol);
        lethe_image_free(img);
    }
    fprintf(stderr, "  descriptor parity (%s): worst L2 %.3g over %d chips (tolerance %g)\n",
            precision == LETHE_PRECISION_FP32 ? "fp32" : "default", worst, n, tol);
    lethe_engine_close(e);
    for (int i = 0; i < NCHIPS; i++)
        json_free(ref[i]);
}

static void test_descriptor_default(void) { check_descriptors(LETHE_PRECISION_DEFAULT, PARITY_DESC_DEFAULT); }
static void test_descriptor_fp32(void) { check_descriptors(LETHE_PRECISION_FP32, PARITY_DESC_FP32); }

/* Write a w x h crop at (x, y) of a chip as a raw .rgb file both sides read. */
static int write_crop(const lethe_image *img, int x, int y, int w, int h, char *path, size_t n,
                      uint8_t **pixels)
{
    static int seq;
    snprintf(path, n, "%s/crop%d.%dx%d.rgb", tmpdir, seq++, w, h);
    uint8_t *buf = malloc((size_t)w * h * 3);
    for (int r = 0; r < h; r++)
        memcpy(buf + (size_t)r * w * 3, img->rgb + ((size_t)(y + r) * img->width + x) * 3,
               (size_t)w * 3);
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(buf, 1, (size_t)w * h * 3, f) == (size_t)w * h * 3;
    if (f)
        fclose(f);
    *pixels = buf;
    return ok;
}

static void test_landmarks(void)
{
    /* crop shapes: square, same as input, taller (even/odd diff), wider */
    static const int shapes[][4] = {{0, 0, 150, 150}, {19, 19, 112, 112}, {10, 0, 120, 150},
                                    {10, 0, 121, 150}, {0, 20, 150, 97}, {30, 30, 60, 61}};
    const char *models = test_models_dir();
    lm68 *net = NULL;
    char msg[300];
    double worst_px = 0, worst_raw = 0;

    if (!test_data_dir())
        SKIP("../shared/data absent");
    if (!have_ref())
        SKIP("node or tools/ref absent (scripts/setup-ref.sh)");
    if (!models)
        SKIP("models/ absent");
    CHECK_EQ_INT(lm68_load(models, &net, msg, sizeof(msg)), LETHE_OK);
    for (int c = 0; c < 4 && c < nchips && net; c++) {
        lethe_image *img = NULL;
        CHECK_EQ_INT(lethe_image_load(chips[c], NULL, &img, NULL, 0), LETHE_OK);
        if (!img)
            continue;
        for (size_t s = 0; s < LETHE_ARRAY_LEN(shapes); s++) {
            char path[700], cmd[1000];
            uint8_t *px = NULL;
            json_value *ref = NULL;
            float pts[68][2];
            CHECK(write_crop(img, shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], path,
                             sizeof(path), &px));
            snprintf(cmd, sizeof(cmd), "node tools/ref/landmarks.mjs --models %s %s", models,
                     path);
            CHECK_EQ_INT(run_json_lines(cmd, &ref, 1), 1);
            CHECK_EQ_INT(lm68_detect_rgb(net, px, shapes[s][2], shapes[s][3], pts, NULL),
                         LETHE_OK);
            const json_value *lm = json_get(ref, "landmarks");
            CHECK(lm && lm->len == 68);
            for (int i = 0; lm && i < 68 && (size_t)i < lm->len; i++) {
                for (int k = 0; k < 2; k++) {
                    double d = fabs(pts[i][k] - lm->items[i]->items[k]->number);
                    if (d > worst_px)
                        worst_px = d;
                    CHECK(d <= PARITY_LANDMARK_PX);
                }
            }
            json_free(ref);
            free(px);
            unlink(path);
        }
        lethe_image_free(img);
    }
    fprintf(stderr, "  landmark parity: worst %.3g px (tolerance %g px)\n", worst_px,
            PARITY_LANDMARK_PX);
    (void)worst_raw;
    lm68_free(net);
}

int main(void)
{
    make_chips();
    RUN(test_descriptor_default);
    RUN(test_descriptor_fp32);
    RUN(test_landmarks);
    for (int i = 0; i < nchips; i++)
        unlink(chips[i]);
    if (nchips || tmpdir[sizeof(tmpdir) - 2] != 'X')
        rmdir(tmpdir);
    return test_summary();
}
