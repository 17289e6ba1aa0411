/*
 * test_model.c: the TF.js weights loader and the JSON parser under it:
 * real models load with their digests, quantised values decode as tfjs
 * decodes them, and missing, truncated, tampered or malformed files are
 * refused with an error that names the problem.
 */
#include "test.h"

#include <unistd.h>

#include "model/model.h"
#include "util/json.h"
#include "util/util.h"

static void test_json_basics(void)
{
    const char *txt = "{\"a\": [1, 2.5e1, -0.5], \"s\": \"x\\u00e9\\n\", \"t\": true, \"n\": null}";
    json_value *v = NULL;
    char msg[200];
    CHECK_EQ_INT(json_parse(txt, strlen(txt), &v, msg, sizeof(msg)), LETHE_OK);
    if (!v)
        return;
    const json_value *a = json_get(v, "a");
    CHECK(a && a->type == JSON_ARRAY && a->len == 3);
    if (a && a->len == 3) {
        CHECK_NEAR(a->items[1]->number, 25.0, 0);
        CHECK_NEAR(a->items[2]->number, -0.5, 0);
    }
    CHECK(strcmp(json_get_string(v, "s"), "x\xc3\xa9\n") == 0);
    CHECK(json_get(v, "t")->type == JSON_TRUE);
    CHECK(json_get(v, "n")->type == JSON_NULL);
    CHECK(json_get(v, "missing") == NULL);
    json_free(v);
}

static void test_json_errors(void)
{
    static const char *bad[] = {"", "{", "[1,]", "{\"a\" 1}", "01", "\"abc", "[1] x",
                                "tru", "\"\\x\"", "1.", "-", "{\"a\":1,}", "\"\x01\""};
    char msg[200];
    for (size_t i = 0; i < LETHE_ARRAY_LEN(bad); i++) {
        json_value *v = (json_value *)1;
        msg[0] = 0;
        int rc = json_parse(bad[i], strlen(bad[i]), &v, msg, sizeof(msg));
        CHECK(rc == LETHE_ERR_FORMAT);
        CHECK(v == NULL);
        CHECK(strstr(msg, "line 1") != NULL);
    }
    /* depth bomb */
    char deep[1000];
    memset(deep, '[', sizeof(deep));
    json_value *v = NULL;
    CHECK_EQ_INT(json_parse(deep, sizeof(deep), &v, msg, sizeof(msg)), LETHE_ERR_TOO_LARGE);
}

static void test_json_alloc_failures(void)
{
    const char *txt = "{\"a\": [1, 2, {\"b\": \"c\"}], \"d\": \"e\"}";
    int rc = LETHE_ERR_NOMEM, nomem = 0;
    /* every allocation failing in turn, until one parse needs no more */
    for (long k = 0; k < 1000 && rc != LETHE_OK; k++) {
        json_value *v = NULL;
        char msg[128] = "";
        lethe_alloc_fail_after(k);
        rc = json_parse(txt, strlen(txt), &v, msg, sizeof(msg));
        long used = lethe_alloc_count();
        lethe_alloc_fail_after(-1);
        if (rc == LETHE_OK) {
            CHECK(used <= k);
            CHECK(v != NULL && json_get(v, "d") != NULL);
        } else {
            CHECK_EQ_INT(rc, LETHE_ERR_NOMEM);
            CHECK(v == NULL);
            CHECK(msg[0] != '\0');
            nomem++;
        }
        json_free(v);
    }
    CHECK_EQ_INT(rc, LETHE_OK);
    CHECK(nomem >= 5);
}

static void test_parse_quantised(void)
{
    /* uint8 {min, scale}: value = q * scale + min, in double then float. */
    const char *m = "[{\"paths\": [\"x.bin\"], \"weights\": ["
                    "{\"name\": \"q\", \"shape\": [2, 2], \"dtype\": \"float32\","
                    " \"quantization\": {\"dtype\": \"uint8\", \"scale\": 0.1, \"min\": -1.0}},"
                    "{\"name\": \"f\", \"shape\": [2], \"dtype\": \"float32\"},"
                    "{\"name\": \"i\", \"shape\": [], \"dtype\": \"int32\","
                    " \"quantization\": {\"dtype\": \"uint8\", \"scale\": 1, \"min\": 3}},"
                    "{\"name\": \"h\", \"shape\": [1], \"dtype\": \"float32\","
                    " \"quantization\": {\"dtype\": \"float16\"}}]}]";
    unsigned char blob[4 + 8 + 1 + 2];
    float f2[2] = {1.5f, -2.25f};
    blob[0] = 0; blob[1] = 10; blob[2] = 25; blob[3] = 255;
    memcpy(blob + 4, f2, 8);
    blob[12] = 4;
    blob[13] = 0x00; blob[14] = 0x3C; /* float16 1.0 */
    lethe_weights *w = NULL;
    char msg[256];
    int rank, shape[4];
    CHECK_EQ_INT(lethe_weights_parse(m, strlen(m), blob, sizeof(blob), &w, msg, sizeof(msg)),
                 LETHE_OK);
    if (!w) {
        fprintf(stderr, "%s\n", msg);
        return;
    }
    const float *q = lethe_weights_find(w, "q", &rank, shape);
    CHECK(q && rank == 2 && shape[0] == 2 && shape[1] == 2);
    if (q) {
        CHECK(q[0] == (float)(0 * 0.1 + -1.0));
        CHECK(q[1] == (float)(10 * 0.1 + -1.0));
        CHECK(q[2] == (float)(25 * 0.1 + -1.0));
        CHECK(q[3] == (float)(255 * 0.1 + -1.0));
    }
    const float *f = lethe_weights_find(w, "f", NULL, NULL);
    CHECK(f && f[0] == 1.5f && f[1] == -2.25f);
    const float *i = lethe_weights_find(w, "i", &rank, NULL);
    CHECK(i && i[0] == 7.0f && rank == 0);
    const float *h = lethe_weights_find(w, "h", NULL, NULL);
    CHECK(h && h[0] == 1.0f);
    CHECK(lethe_weights_expect(w, "q", 2, (int[]){2, 2}, msg, sizeof(msg)) == q);
    CHECK(lethe_weights_expect(w, "q", 2, (int[]){2, 3}, msg, sizeof(msg)) == NULL);
    CHECK(strstr(msg, "q") != NULL);
    CHECK(lethe_weights_expect(w, "nope", 1, (int[]){1}, msg, sizeof(msg)) == NULL);
    CHECK(strstr(msg, "lacks tensor nope") != NULL);
    lethe_weights_free(w);

    /* Truncated and oversized blobs. */
    w = NULL;
    CHECK_EQ_INT(lethe_weights_parse(m, strlen(m), blob, sizeof(blob) - 1, &w, msg, sizeof(msg)),
                 LETHE_ERR_MODEL);
    CHECK(strstr(msg, "truncated") != NULL);
    CHECK(w == NULL);
    unsigned char big[sizeof(blob) + 1] = {0};
    memcpy(big, blob, sizeof(blob));
    CHECK_EQ_INT(lethe_weights_parse(m, strlen(m), big, sizeof(big), &w, msg, sizeof(msg)),
                 LETHE_ERR_MODEL);
    /* Allocation failures anywhere: out of memory, nothing left behind. */
    int rc = LETHE_ERR_NOMEM, nomem = 0;
    for (long k = 0; k < 1000 && rc != LETHE_OK; k++) {
        lethe_alloc_fail_after(k);
        rc = lethe_weights_parse(m, strlen(m), blob, sizeof(blob), &w, msg, sizeof(msg));
        long used = lethe_alloc_count();
        lethe_alloc_fail_after(-1);
        if (rc == LETHE_OK) {
            CHECK(used <= k);
            CHECK(lethe_weights_find(w, "h", NULL, NULL) != NULL);
        } else {
            CHECK_EQ_INT(rc, LETHE_ERR_NOMEM);
            CHECK(w == NULL);
            nomem++;
        }
        lethe_weights_free(w);
        w = NULL;
    }
    CHECK_EQ_INT(rc, LETHE_OK);
    CHECK(nomem >= 5);
}

static void test_parse_malformed(void)
{
    static const char *bad[] = {
        "{}", "[]", "[{\"paths\": []}]",
        "[{\"paths\": [], \"weights\": [{\"name\": \"a\", \"shape\": [1], \"dtype\": \"bool\"}]}]",
        "[{\"paths\": [], \"weights\": [{\"name\": \"a\", \"shape\": [-1], \"dtype\": \"float32\"}]}]",
        "[{\"paths\": [], \"weights\": [{\"name\": \"a\", \"shape\": [1,1,1,1,1], \"dtype\": \"float32\"}]}]",
        "[{\"paths\": [], \"weights\": [{\"name\": \"a\", \"shape\": [100000, 100000], \"dtype\": \"float32\"}]}]",
        "[{\"paths\": [], \"weights\": [{\"name\": \"a\", \"shape\": [1], \"dtype\": \"float32\","
        " \"quantization\": {\"dtype\": \"uint8\"}}]}]",
        "[{\"paths\": [], \"weights\": [{\"shape\": [1], \"dtype\": \"float32\"}]}]",
        "not json",
    };
    unsigned char blob[16] = {0};
    char msg[256];
    for (size_t i = 0; i < LETHE_ARRAY_LEN(bad); i++) {
        lethe_weights *w = NULL;
        int rc = lethe_weights_parse(bad[i], strlen(bad[i]), blob, 4, &w, msg, sizeof(msg));
        CHECK(rc == LETHE_ERR_MODEL);
        CHECK(w == NULL);
    }
}

static const char *models[] = {"ssd_mobilenetv1_model", "tiny_face_detector_model",
                               "face_landmark_68_model", "face_recognition_model"};

static void test_load_real_models(void)
{
    const char *dir = test_models_dir();
    char msg[512];
    if (!dir)
        SKIP("models/ absent (run scripts/fetch-models.sh)");
    for (size_t i = 0; i < LETHE_ARRAY_LEN(models); i++) {
        lethe_weights *w = NULL;
        int rc = lethe_weights_load(dir, models[i], 1, &w, msg, sizeof(msg));
        CHECK_EQ_INT(rc, LETHE_OK);
        if (rc != LETHE_OK)
            fprintf(stderr, "  %s\n", msg);
        CHECK(lethe_weights_count(w) > 10);
        lethe_weights_free(w);
    }
    lethe_weights *w = NULL;
    CHECK_EQ_INT(lethe_weights_load(dir, "face_recognition_model", 1, &w, msg, sizeof(msg)), 0);
    /* The descriptor's FC layer: [256, 128]. */
    CHECK(lethe_weights_expect(w, "fc", 2, (int[]){256, 128}, msg, sizeof(msg)) != NULL);
    lethe_weights_free(w);
}

/* Loading a real model (the smallest: the tiny detector's 190 KB) with
 * every allocation failing in turn, one step at a time: each is
 * LETHE_ERR_NOMEM, never a "damaged model", and leaks nothing. */
static void test_load_alloc_failures(void)
{
    const char *dir = test_models_dir();
    char msg[512];
    int rc = LETHE_ERR_NOMEM;
    long nomem = 0;
    if (!dir)
        SKIP("models/ absent (run scripts/fetch-models.sh)");
    for (long k = 0; k < 100000 && rc != LETHE_OK; k++) {
        lethe_weights *w = NULL;
        lethe_alloc_fail_after(k);
        rc = lethe_weights_load(dir, "tiny_face_detector_model", 1, &w, msg, sizeof(msg));
        long used = lethe_alloc_count();
        lethe_alloc_fail_after(-1);
        if (rc == LETHE_OK) {
            CHECK(used <= k);
            CHECK(lethe_weights_count(w) > 10);
        } else {
            if (rc != LETHE_ERR_NOMEM)
                fprintf(stderr, "    countdown %ld: status %d: %s\n", k, rc, msg);
            CHECK_EQ_INT(rc, LETHE_ERR_NOMEM);
            CHECK(w == NULL);
            nomem++;
        }
        lethe_weights_free(w);
    }
    CHECK_EQ_INT(rc, LETHE_OK);
    fprintf(stderr, "  tiny detector model: %ld failing loads checked\n", nomem);
    CHECK(nomem > 100);
}

/* Copy a model into a scratch folder, damage it, and expect a clear error. */
static int copy_file(const char *from, const char *to, long truncate_to, long flip_at)
{
    uint8_t *buf;
    size_t len;
    if (lethe_read_file(from, 64u << 20, &buf, &len, NULL, 0) != LETHE_OK)
        return 0;
    if (truncate_to >= 0 && (size_t)truncate_to < len)
        len = (size_t)truncate_to;
    if (flip_at >= 0 && (size_t)flip_at < len)
        buf[flip_at] ^= 0x01;
    FILE *f = fopen(to, "wb");
    int ok = f && fwrite(buf, 1, len, f) == len;
    if (f)
        fclose(f);
    lethe_free(buf);
    return ok;
}

static void test_damaged_models(void)
{
    const char *dir = test_models_dir();
    char tmp[] = "/tmp/lethe-model-XXXXXX", src[600], dst[600], msg[512];
    lethe_weights *w = NULL;
    const char *name = "tiny_face_detector_model";
    if (!dir)
        SKIP("models/ absent (run scripts/fetch-models.sh)");
    if (!mkdtemp(tmp)) {
        CHECK(0);
        return;
    }
    snprintf(src, sizeof(src), "%s/%s-weights_manifest.json", dir, name);
    snprintf(dst, sizeof(dst), "%s/%s-weights_manifest.json", tmp, name);
    CHECK(copy_file(src, dst, -1, -1));
    snprintf(src, sizeof(src), "%s/%s.bin", dir, name);
    snprintf(dst, sizeof(dst), "%s/%s.bin", tmp, name);

    /* missing .bin */
    CHECK_EQ_INT(lethe_weights_load(tmp, name, 1, &w, msg, sizeof(msg)), LETHE_ERR_MODEL);
    CHECK(strstr(msg, "missing") != NULL);
    /* truncated .bin: caught by the digest, and without it by the sizes */
    CHECK(copy_file(src, dst, 1000, -1));
    CHECK_EQ_INT(lethe_weights_load(tmp, name, 1, &w, msg, sizeof(msg)), LETHE_ERR_MODEL);
    CHECK(strstr(msg, "SHA-256") != NULL);
    CHECK_EQ_INT(lethe_weights_load(tmp, name, 0, &w, msg, sizeof(msg)), LETHE_ERR_MODEL);
    CHECK(strstr(msg, "truncated") != NULL);
    /* one flipped bit: only the digest can tell */
    CHECK(copy_file(src, dst, -1, 5000));
    CHECK_EQ_INT(lethe_weights_load(tmp, name, 1, &w, msg, sizeof(msg)), LETHE_ERR_MODEL);
    CHECK(strstr(msg, "tampered") != NULL);
    CHECK_EQ_INT(lethe_weights_load(tmp, name, 0, &w, msg, sizeof(msg)), LETHE_OK);
    lethe_weights_free(w);
    w = NULL;
    /* missing manifest names the fix */
    CHECK_EQ_INT(lethe_weights_load(tmp, "face_recognition_model", 1, &w, msg, sizeof(msg)),
                 LETHE_ERR_MODEL);
    CHECK(strstr(msg, "fetch-models") != NULL);
    CHECK(w == NULL);
    unlink(dst);
    snprintf(dst, sizeof(dst), "%s/%s-weights_manifest.json", tmp, name);
    unlink(dst);
    rmdir(tmp);
}

int main(void)
{
    RUN(test_json_basics);
    RUN(test_json_errors);
    RUN(test_json_alloc_failures);
    RUN(test_parse_quantised);
    RUN(test_parse_malformed);
    RUN(test_load_real_models);
    RUN(test_load_alloc_failures);
    RUN(test_damaged_models);
    return test_summary();
}
