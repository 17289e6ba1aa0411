/*
 * test_engine.c: the public face engine API (lethe.h section 3, 4) and the
 * alignment under it: option checking, model errors, real photos, batched
 * and single descriptors agreeing, the second look, thread safety of one
 * engine used from several threads, allocation failures.
 */
#include "test.h"

#include <pthread.h>
#include <unistd.h>

#include "face/align.h"
#include "nn/nn.h"
#include "lethe.h"
#include "util/util.h"

static void test_fit_similarity_recovers_transform(void)
{
    float src[10][2], dst[10][2];
    double m[4], a = 1.7 * cos(0.3), b = 1.7 * sin(0.3);
    for (int i = 0; i < 10; i++) {
        src[i][0] = (float)(i * 3 % 7);
        src[i][1] = (float)(i * i % 5);
        dst[i][0] = (float)(a * src[i][0] - b * src[i][1] + 4);
        dst[i][1] = (float)(b * src[i][0] + a * src[i][1] - 2);
    }
    CHECK(align_fit_similarity((const float(*)[2])src, (const float(*)[2])dst, 10, m));
    CHECK_NEAR(m[0], a, 1e-5);
    CHECK_NEAR(m[1], b, 1e-5);
    CHECK_NEAR(m[2], 4, 1e-4);
    CHECK_NEAR(m[3], -2, 1e-4);
    float same[3][2] = {{1, 1}, {1, 1}, {1, 1}};
    CHECK(!align_fit_similarity((const float(*)[2])same, (const float(*)[2])same, 3, m));
}

static void test_chip_of_template_is_identity(void)
{
    /* Landmarks placed exactly on the template in chip coordinates map to
     * the identity transform. */
    float lm[68][2] = {{0}};
    double m[4];
    for (int i = 0; i < ALIGN_TEMPLATE_POINTS; i++) {
        lm[i + 17][0] = (align_template[i][0] + 0.25f) / 1.5f * 150;
        lm[i + 17][1] = (align_template[i][1] + 0.25f) / 1.5f * 150;
    }
    CHECK(align_chip_transform((const float(*)[2])lm, 150, 0.25f, 0.0f, m));
    CHECK_NEAR(m[0], 1, 1e-5);
    CHECK_NEAR(m[1], 0, 1e-5);
    CHECK_NEAR(m[2], 0, 1e-3);
    CHECK_NEAR(m[3], 0, 1e-3);
    /* The template is level and spans [0, 1]. */
    float minx = 1, maxx = 0;
    for (int i = 0; i < ALIGN_TEMPLATE_POINTS; i++) {
        minx = fminf(minx, align_template[i][0]);
        maxx = fmaxf(maxx, align_template[i][0]);
    }
    CHECK_NEAR(minx, 0, 1e-6);
    CHECK_NEAR(maxx, 1, 1e-6);
}

static void test_extract_chip(void)
{
    /* A 300x300 image, left half red, right half blue, shrunk 2x into a
     * 150 chip: colours land where the transform says, averaged at the edge. */
    uint8_t *img = malloc(300 * 300 * 3), chip[150 * 150 * 3];
    for (int y = 0; y < 300; y++)
        for (int x = 0; x < 300; x++) {
            uint8_t *p = img + (y * 300 + x) * 3;
            p[0] = x < 150 ? 255 : 0;
            p[1] = 0;
            p[2] = x < 150 ? 0 : 255;
        }
    double m[4] = {2, 0, 0, 0}; /* chip (x, y) -> image (2x, 2y) */
    align_extract_chip(img, 300, 300, m, 150, chip);
    CHECK_EQ_INT(chip[(75 * 150 + 10) * 3 + 0], 255);
    CHECK_EQ_INT(chip[(75 * 150 + 140) * 3 + 2], 255);
    CHECK(chip[(75 * 150 + 74) * 3 + 0] > 200);
    /* outside the image is black */
    double off[4] = {1, 0, 250, 0};
    align_extract_chip(img, 300, 300, off, 150, chip);
    CHECK_EQ_INT(chip[(10 * 150 + 140) * 3 + 2], 0);
    CHECK_EQ_INT(chip[(10 * 150 + 10) * 3 + 2], 255);
    free(img);
}

static void test_options_checked(void)
{
    lethe_engine_options o;
    lethe_engine *e = NULL;
    lethe_engine_options_init(&o);
    o.min_score = 1.5f;
    CHECK_EQ_INT(lethe_engine_open(&e, &o), LETHE_ERR_ARG);
    CHECK(strstr(lethe_engine_errmsg(e), "min_score") != NULL);
    lethe_engine_close(e);
    lethe_engine_options_init(&o);
    o.detector = 7;
    CHECK_EQ_INT(lethe_engine_open(&e, &o), LETHE_ERR_ARG);
    lethe_engine_close(e);
    lethe_engine_options_init(&o);
    o.detector = LETHE_DETECTOR_TINY;
    o.tiny_input_size = 100;
    CHECK_EQ_INT(lethe_engine_open(&e, &o), LETHE_ERR_ARG);
    CHECK(strstr(lethe_engine_errmsg(e), "multiple of 32") != NULL);
    lethe_engine_close(e);
    lethe_engine_options_init(&o);
    o.model_dir = "/nonexistent";
    CHECK_EQ_INT(lethe_engine_open(&e, &o), LETHE_ERR_MODEL);
    CHECK(strstr(lethe_engine_errmsg(e), "/nonexistent") != NULL);
    lethe_engine_close(e);
    lethe_engine_close(NULL);
    CHECK(strcmp(lethe_strerror(LETHE_ERR_MODEL), "model file missing, truncated or tampered") == 0);
    CHECK(strcmp(lethe_strerror(12345), "unknown status code") == 0);
}

/* A photo under the shared data folder: LETHE_OK, or a recorded skipped
 * part if it is absent, or a recorded failure if it does not decode. */
static int load_data_image(const char *rel, lethe_image **img)
{
    char path[600], msg[256];
    struct stat st;
    const char *data = test_data_dir();
    *img = NULL;
    snprintf(path, sizeof(path), "%s/%s", data ? data : ".", rel);
    if (!data || stat(path, &st) != 0) {
        SKIP_PART("%s absent", rel);
        return LETHE_ERR_NOT_FOUND;
    }
    int rc = lethe_image_load(path, NULL, img, msg, sizeof(msg));
    if (rc != LETHE_OK)
        fprintf(stderr, "  %s\n", msg);
    CHECK_EQ_INT(rc, LETHE_OK);
    return rc;
}

static lethe_engine *open_engine(void)
{
    lethe_engine_options o;
    lethe_engine *e = NULL;
    lethe_engine_options_init(&o);
    o.model_dir = test_models_dir();
    if (lethe_engine_open(&e, &o) != LETHE_OK) {
        fprintf(stderr, "  %s\n", lethe_engine_errmsg(e));
        lethe_engine_close(e);
        return NULL;
    }
    return e;
}

/* lethe_version, lethe_engine_threads and lethe_engine_kernels. */
static void test_version_and_engine_info(void)
{
    char want[32];
    snprintf(want, sizeof(want), "%d.%d.%d", LETHE_VERSION_MAJOR, LETHE_VERSION_MINOR,
             LETHE_VERSION_PATCH);
    CHECK(strcmp(lethe_version(), want) == 0);
    CHECK(strcmp(lethe_version(), LETHE_VERSION_STRING) == 0);
    if (!test_models_dir())
        SKIP("models/ absent");
    for (int threads = 0; threads <= 3; threads += 3) {
        lethe_engine_options o;
        lethe_engine *e = NULL;
        lethe_engine_options_init(&o);
        o.model_dir = test_models_dir();
        o.threads = threads;
        CHECK_EQ_INT(lethe_engine_open(&e, &o), LETHE_OK);
        if (!e)
            continue;
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        /* 0: one per online core, the caller included */
        CHECK_EQ_INT(lethe_engine_threads(e), threads ? threads : (int)(cores > 0 ? cores : 1));
        const char *k = lethe_engine_kernels(e);
        CHECK(k && strcmp(k, nn_isa_name(nn_isa_current())) == 0);
        CHECK(k && (!strcmp(k, "avx512") || !strcmp(k, "avx2") || !strcmp(k, "scalar")));
        lethe_engine_close(e);
    }
}

static void test_faces_photo(void)
{
    const char *data = test_data_dir();
    lethe_image *img = NULL;
    lethe_face *faces = NULL;
    int n = 0;
    if (!test_models_dir())
        SKIP("models/ absent");
    if (!data)
        SKIP("../shared/data absent");
    if (load_data_image("faceapi/test-images/faces.jpg", &img) != LETHE_OK)
        return;
    lethe_engine *e = open_engine();
    CHECK(e != NULL);
    if (!e) {
        lethe_image_free(img);
        return;
    }
    CHECK_EQ_INT(lethe_engine_analyze(e, img, LETHE_WANT_DESCRIPTOR, &faces, &n), LETHE_OK);
    CHECK_EQ_INT(n, 6);
    for (int i = 0; i < n; i++) {
        CHECK(faces[i].has_landmarks && faces[i].has_descriptor);
        CHECK(i == 0 || faces[i].score <= faces[i - 1].score);
        /* the eyes lie inside the box, above the mouth */
        float ey = faces[i].landmarks[36][1], my = faces[i].landmarks[57][1];
        CHECK(ey < my);
        CHECK(faces[i].landmarks[36][0] > faces[i].box[0]);
        CHECK(faces[i].landmarks[45][0] < faces[i].box[0] + faces[i].box[2]);
    }
    /* different people are far apart */
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            CHECK(lethe_descriptor_distance(faces[i].descriptor, faces[j].descriptor) >
                  lethe_descriptor_threshold());
    /* the single-threaded path gives the same answer */
    lethe_face *again = NULL;
    int n2 = 0;
    CHECK_EQ_INT(lethe_engine_analyze(e, img, LETHE_WANT_DESCRIPTOR | LETHE_SINGLE_THREAD, &again,
                                      &n2),
                 LETHE_OK);
    CHECK_EQ_INT(n2, n);
    for (int i = 0; i < n && i < n2; i++)
        CHECK(lethe_descriptor_distance(faces[i].descriptor, again[i].descriptor) < 1e-5f);
    lethe_faces_free(again);
    /* Without mirror averaging: other numbers, the same faces. */
    lethe_engine_options o;
    lethe_engine *plain = NULL;
    lethe_engine_options_init(&o);
    CHECK_EQ_INT(o.mirror_average, 1);
    o.model_dir = test_models_dir();
    o.mirror_average = 0;
    CHECK_EQ_INT(lethe_engine_open(&plain, &o), LETHE_OK);
    CHECK_EQ_INT(lethe_engine_analyze(plain, img, LETHE_WANT_DESCRIPTOR, &again, &n2), LETHE_OK);
    CHECK_EQ_INT(n2, n);
    for (int i = 0; i < n && i < n2; i++) {
        float d = lethe_descriptor_distance(faces[i].descriptor, again[i].descriptor);
        CHECK(d > 1e-4f);
        CHECK(d < 0.3f);
    }
    lethe_faces_free(again);
    lethe_engine_close(plain);
    lethe_faces_free(faces);
    lethe_image_free(img);
    lethe_engine_close(e);
}

/* IoU of two x, y, w, h boxes. */
static double box_iou(const float *a, const float *b)
{
    double ix = fmin(a[0] + a[2], b[0] + b[2]) - fmax(a[0], b[0]);
    double iy = fmin(a[1] + a[3], b[1] + b[3]) - fmax(a[1], b[1]);
    if (ix <= 0 || iy <= 0)
        return 0;
    double inter = ix * iy;
    return inter / ((double)a[2] * a[3] + (double)b[2] * b[3] - inter);
}

/*
 * LETHE_PRECISION_INT8 (int8 detector layers where the CPU has AVX-512
 * VNNI) against LETHE_PRECISION_FP32 on the same photos: the same faces
 * (IoU >= PRECISION_IOU: NMS, and the merging of the second look's faces,
 * may keep a neighbouring box when two score alike, so a box can move by
 * more than the detector's raw tolerance; measured IoU >= 0.79 here),
 * scores within 0.065 (test_detect), and descriptors within
 * PRECISION_DESC_L2 of each other. The descriptors move through the
 * landmarks: a box a fifth of a pixel off moves the crop the landmark net
 * sees, and the aligned chip with it; measured at most 0.09 here (0 with
 * LETHE_INT8=0), against a same-person threshold of 0.6.
 */
#define PRECISION_IOU 0.7
#define PRECISION_DESC_L2 0.15

static void test_precision_modes(void)
{
    static const char *photos[] = {"faceapi/test-images/faces.jpg", "dlib-faces/bald_guys.jpg",
                                   "lfw/images/AJ_Cook/AJ_Cook_0001.jpg",
                                   "lfw/images/Aaron_Eckhart/Aaron_Eckhart_0001.jpg"};
    const char *data = test_data_dir();
    lethe_engine *e[3] = {NULL, NULL, NULL};
    double worst_iou = 1, worst_score = 0, worst_desc = 0, worst_default = 0;
    int seen = 0, faces = 0;
    if (!test_models_dir())
        SKIP("models/ absent");
    if (!data)
        SKIP("../shared/data absent");
    static const int precision[3] = {LETHE_PRECISION_INT8, LETHE_PRECISION_FP32,
                                     LETHE_PRECISION_DEFAULT};
    for (int i = 0; i < 3; i++) {
        lethe_engine_options o;
        lethe_engine_options_init(&o);
        o.model_dir = test_models_dir();
        o.precision = precision[i];
        CHECK_EQ_INT(lethe_engine_open(&e[i], &o), LETHE_OK);
    }
    if (e[0] && e[1] && e[2]) {
        CHECK(!strcmp(lethe_engine_precision(e[1]), "fp32"));
        CHECK(!strcmp(lethe_engine_precision(e[2]), nn_int8_available() ? "int8" : "default"));
        CHECK(!strcmp(lethe_engine_precision(e[0]), nn_int8_available() ? "int8" : "default"));
    }
    for (size_t p = 0; p < LETHE_ARRAY_LEN(photos) && e[0] && e[1] && e[2]; p++) {
        lethe_image *img = NULL;
        lethe_face *f[3] = {NULL, NULL, NULL};
        int n[3] = {0, 0, 0};
        if (load_data_image(photos[p], &img) != LETHE_OK)
            continue;
        seen++;
        for (int i = 0; i < 3; i++)
            CHECK_EQ_INT(lethe_engine_analyze(e[i], img, LETHE_WANT_DESCRIPTOR, &f[i], &n[i]),
                         LETHE_OK);
        CHECK_EQ_INT(n[0], n[1]);
        /* The default is int8 where the CPU runs it: the same computation as
         * LETHE_PRECISION_INT8, to the bit. Elsewhere it runs the same fp32
         * detector and landmark net as fp32: the same boxes and landmarks to
         * the bit; only the descriptor net's Winograd convolutions differ,
         * by rounding. */
        const int like = nn_int8_available() ? 0 : 1;
        CHECK_EQ_INT(n[2], n[like]);
        for (int a = 0; a < n[like] && n[2] == n[like]; a++) {
            CHECK(memcmp(f[2][a].box, f[like][a].box, sizeof(f[like][a].box)) == 0);
            CHECK(memcmp(f[2][a].landmarks, f[like][a].landmarks,
                         sizeof(f[like][a].landmarks)) == 0);
            double d = lethe_descriptor_distance(f[2][a].descriptor, f[like][a].descriptor);
            CHECK(like == 0 ? d == 0 : d <= 1e-4);
            worst_default = fmax(worst_default, d);
        }
        for (int a = 0; a < n[0] && n[0] == n[1]; a++) {
            int best = 0;
            double bi = -1;
            for (int b = 0; b < n[1]; b++) {
                double iou = box_iou(f[0][a].box, f[1][b].box);
                if (iou > bi)
                    bi = iou, best = b;
            }
            double ds = fabs(f[0][a].score - f[1][best].score);
            double dd = lethe_descriptor_distance(f[0][a].descriptor, f[1][best].descriptor);
            CHECK(bi >= PRECISION_IOU);
            CHECK(ds <= 0.065);
            CHECK(dd <= PRECISION_DESC_L2);
            worst_iou = fmin(worst_iou, bi);
            worst_score = fmax(worst_score, ds);
            worst_desc = fmax(worst_desc, dd);
            faces++;
        }
        for (int i = 0; i < 3; i++)
            lethe_faces_free(f[i]);
        lethe_image_free(img);
    }
    CHECK(seen == 0 || faces > 0); /* something was compared */
    fprintf(stderr,
            "  int8 vs fp32 over %d photos, %d faces: IoU >= %.3f (tolerance %g), score "
            "%.4f, descriptor L2 %.4f (tolerance %g); default vs %s: same boxes, "
            "descriptor L2 %.2g\n",
            seen, faces, worst_iou, PRECISION_IOU, worst_score, worst_desc, PRECISION_DESC_L2,
            nn_int8_available() ? "int8" : "fp32", worst_default);
    for (int i = 0; i < 3; i++)
        lethe_engine_close(e[i]);
}

static void test_no_face(void)
{
    lethe_image *img = NULL;
    lethe_face *faces = (lethe_face *)1;
    int n = -1;
    uint8_t grey[64 * 48 * 3];
    if (!test_models_dir())
        SKIP("models/ absent");
    memset(grey, 128, sizeof(grey));
    lethe_engine *e = open_engine();
    CHECK(e != NULL);
    if (!e)
        return;
    CHECK_EQ_INT(lethe_image_from_rgb(grey, 64, 48, &img), LETHE_OK);
    CHECK_EQ_INT(lethe_engine_analyze(e, img, LETHE_WANT_DESCRIPTOR, &faces, &n), LETHE_OK);
    CHECK_EQ_INT(n, 0);
    CHECK(faces == NULL);
    lethe_image_free(img);
    lethe_engine_close(e);
}

static void test_second_look(void)
{
    /* A face filling the frame: the first pass of SSD misses this LFW photo
     * (it scores 0.23), the second look finds it; single_pass does not. */
    const char *data = test_data_dir();
    lethe_image *img = NULL;
    lethe_face *faces = NULL;
    int n = 0;
    if (!test_models_dir())
        SKIP("models/ absent");
    if (!data)
        SKIP("../shared/data absent");
    if (load_data_image("lfw/images/Aaron_Patterson/Aaron_Patterson_0001.jpg", &img) !=
        LETHE_OK)
        return;
    lethe_engine *e = open_engine();
    CHECK(e && img);
    if (!e || !img) {
        lethe_engine_close(e);
        lethe_image_free(img);
        return;
    }
    CHECK_EQ_INT(lethe_engine_analyze(e, img, LETHE_WANT_LANDMARKS, &faces, &n), LETHE_OK);
    CHECK_EQ_INT(n, 1);
    if (n == 1) {
        /* the box is in the photo's pixels, around its middle */
        CHECK(faces[0].box[0] > 40 && faces[0].box[0] < 125);
        CHECK(faces[0].box[2] > 50 && faces[0].box[2] < 200);
    }
    lethe_faces_free(faces);
    lethe_engine_close(e);

    lethe_engine_options o;
    lethe_engine_options_init(&o);
    o.model_dir = test_models_dir();
    o.single_pass = 1;
    CHECK_EQ_INT(lethe_engine_open(&e, &o), LETHE_OK);
    CHECK_EQ_INT(lethe_engine_analyze(e, img, LETHE_WANT_LANDMARKS, &faces, &n), LETHE_OK);
    CHECK_EQ_INT(n, 0);
    lethe_engine_close(e);
    lethe_image_free(img);
}

typedef struct {
    lethe_engine *e;
    lethe_image *chip;
    float out[128];
    int rc;
} thread_arg;

static void *describe_thread(void *p)
{
    thread_arg *a = p;
    for (int k = 0; k < 3 && a->rc == LETHE_OK; k++)
        a->rc = lethe_engine_describe_chip(a->e, a->chip, a->out);
    return NULL;
}

static void test_chips_batch_and_threads(void)
{
    enum { N = 6 };
    lethe_image *chips[N];
    float batch[N * 128], one[128];
    if (!test_models_dir())
        SKIP("models/ absent");
    lethe_engine *e = open_engine();
    CHECK(e != NULL);
    if (!e)
        return;
    for (int i = 0; i < N; i++) {
        /* synthetic chips of several sizes (resized to 150 when needed) */
        int w = 150 + (i % 3) * 17, h = 150 - (i % 2) * 30;
        uint8_t *px = malloc((size_t)w * h * 3);
        for (int k = 0; k < w * h * 3; k++)
            px[k] = (uint8_t)((k * (i + 3) * 2654435761u) >> 24);
        CHECK_EQ_INT(lethe_image_from_rgb(px, w, h, &chips[i]), LETHE_OK);
        free(px);
    }
    CHECK_EQ_INT(lethe_engine_describe_chips(e, (const lethe_image *const *)chips, N, batch),
                 LETHE_OK);
    for (int i = 0; i < N; i++) {
        CHECK_EQ_INT(lethe_engine_describe_chip(e, chips[i], one), LETHE_OK);
        CHECK(lethe_descriptor_distance(one, batch + i * 128) < 1e-5f);
    }
    /* one engine, several threads at once */
    thread_arg args[4];
    pthread_t th[4];
    for (int t = 0; t < 4; t++) {
        args[t].e = e;
        args[t].chip = chips[t];
        args[t].rc = LETHE_OK;
        pthread_create(&th[t], NULL, describe_thread, &args[t]);
    }
    for (int t = 0; t < 4; t++) {
        pthread_join(th[t], NULL);
        CHECK_EQ_INT(args[t].rc, LETHE_OK);
        CHECK(lethe_descriptor_distance(args[t].out, batch + t * 128) < 1e-5f);
    }
    CHECK(lethe_descriptor_distance(batch, batch) == 0.0f);
    CHECK(lethe_descriptor_threshold() > 0.3f && lethe_descriptor_threshold() < 0.9f);
    for (int i = 0; i < N; i++)
        lethe_image_free(chips[i]);
    lethe_engine_close(e);
}

/* One lethe_engine_open with the (k+1)-th allocation failing: LETHE_OK if
 * no allocation was refused, else LETHE_ERR_NOMEM with a message; *used is
 * the number of allocations tried. Nothing may leak (ASan's leak checker in
 * the sanitizer pass). */
static int open_failing_at(const lethe_engine_options *o, long k, long *used)
{
    lethe_engine *e = NULL;
    lethe_alloc_fail_after(k);
    int rc = lethe_engine_open(&e, o);
    *used = lethe_alloc_count();
    lethe_alloc_fail_after(-1);
    if (rc != LETHE_OK) {
        if (rc != LETHE_ERR_NOMEM)
            fprintf(stderr, "    countdown %ld: status %d: %s\n", k, rc, lethe_engine_errmsg(e));
        CHECK_EQ_INT(rc, LETHE_ERR_NOMEM);
        CHECK(e == NULL || lethe_engine_errmsg(e)[0] != '\0'); /* says why */
    } else {
        CHECK(*used <= k);
    }
    lethe_engine_close(e);
    return rc;
}

/*
 * Every allocation of lethe_engine_open failing in turn, one step at a time:
 * each gives LETHE_ERR_NOMEM and leaks nothing. An open makes about 6,100
 * allocations, and every one after the descriptor model's file is read
 * costs that read (0.1 s): the whole sweep takes about 400 s, so by default
 * it covers the first SWEEP_HEAD (the engine, the manifest's JSON) and the
 * last SWEEP_TAIL (the last layers, the worker pool), and says that it
 * skipped the middle, which LETHE_TEST_SLOW=1 runs too (the weights loader's
 * own paths are swept whole on a small model in test_model).
 */
#define SWEEP_HEAD 2500
#define SWEEP_TAIL 24

static void test_open_alloc_failures(void)
{
    if (!test_models_dir())
        SKIP("models/ absent");
    lethe_engine_options o;
    lethe_engine_options_init(&o);
    o.model_dir = test_models_dir();
    o.threads = 2;
    const char *slow = getenv("LETHE_TEST_SLOW");
    int whole = slow && strcmp(slow, "1") == 0;
    long total = 0, used = 0, nomem = 0, k;
    /* how many allocations a successful open makes */
    CHECK_EQ_INT(open_failing_at(&o, 1L << 40, &total), LETHE_OK);
    for (k = 0; k < total; k++) {
        if (!whole && k == SWEEP_HEAD && total - SWEEP_TAIL > k) {
            SKIP_PART("allocations %d..%ld of %ld not swept (about %ld s; LETHE_TEST_SLOW=1 "
                      "sweeps them)", SWEEP_HEAD, total - SWEEP_TAIL - 1, total,
                      (total - SWEEP_TAIL - SWEEP_HEAD) / 8);
            k = total - SWEEP_TAIL;
        }
        if (open_failing_at(&o, k, &used) == LETHE_OK)
            break;
        nomem++;
    }
    /* the last countdown before total refused an allocation; total does not */
    CHECK_EQ_INT(k, total);
    CHECK(nomem >= SWEEP_HEAD);
    fprintf(stderr, "  engine open: %ld allocations, %ld failing opens checked\n", total, nomem);
}

int main(int argc, char **argv)
{
    test_select(argc, argv);
    RUN(test_fit_similarity_recovers_transform);
    RUN(test_chip_of_template_is_identity);
    RUN(test_extract_chip);
    RUN(test_options_checked);
    RUN(test_version_and_engine_info);
    RUN(test_faces_photo);
    RUN(test_precision_modes);
    RUN(test_no_face);
    RUN(test_second_look);
    RUN(test_chips_batch_and_threads);
    RUN(test_open_alloc_failures);
    return test_summary();
}
