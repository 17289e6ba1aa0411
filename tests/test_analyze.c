/*
 * test_analyze.c: photos in one call and in batches (lethe.h section 3:
 * lethe_engine_analyze_bytes, _file, _batch, LETHE_LARGEST_FACE, LETHE_CHIP)
 * and lethe_engine_errmsg's per-thread messages, through the public header
 * (util.h only for the allocation fault injection). Good, corrupt,
 * truncated and empty bytes; missing files, directories, FIFOs; equality
 * with lethe_engine_analyze; the largest-face rule; batch order, progress,
 * ownership, cancellation; many threads failing at once on one engine, each
 * with its own message; allocation failures at every step.
 */
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "lethe.h"
#include "util/util.h" /* lethe_alloc_fail_after: tests only */

static char tmpdir[64];

/* Under the sanitizers the networks run ten times slower: the same checks
 * on fewer repetitions (one threading mode instead of both, fewer flag
 * sets), so that the run takes a minute or two, not ten. */
#if defined(__SANITIZE_ADDRESS__)
#define LIGHT 1
#else
#define LIGHT 0
#endif

/* ------------------------------------------------------------ helpers */

static lethe_engine *open_engine_with(int threads, int cheap)
{
    lethe_engine_options o;
    lethe_engine *e = NULL;
    lethe_engine_options_init(&o);
    o.model_dir = test_models_dir();
    o.threads = threads;
    if (cheap) { /* for tests of messages, not of faces: one small pass */
        o.detector = LETHE_DETECTOR_TINY;
        o.tiny_input_size = 128;
        o.single_pass = 1;
    }
    if (lethe_engine_open(&e, &o) != LETHE_OK) {
        fprintf(stderr, "  %s\n", lethe_engine_errmsg(e));
        lethe_engine_close(e);
        return NULL;
    }
    return e;
}

static lethe_engine *open_engine(int threads) { return open_engine_with(threads, 0); }

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    long n;
    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        buf = malloc((size_t)n + 1);
        if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
            free(buf);
            buf = NULL;
        }
        *len = (size_t)n;
    }
    fclose(f);
    return buf;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Append one PNG chunk at *at. */
static void png_chunk(uint8_t *out, size_t *at, const char *type, const uint8_t *data,
                      size_t len)
{
    put_be32(out + *at, (uint32_t)len);
    memcpy(out + *at + 4, type, 4);
    if (len)
        memcpy(out + *at + 8, data, len);
    uLong crc = crc32(0L, out + *at + 4, (uInt)(len + 4));
    put_be32(out + *at + 8 + len, (uint32_t)crc);
    *at += 12 + len;
}

/* A w x h PNG of one grey level (no face in it), malloc'd. */
static uint8_t *blank_png(int w, int h, uint8_t grey, size_t *len)
{
    size_t row = 1 + (size_t)w * 3, raw_len = row * (size_t)h;
    uLongf zlen = compressBound((uLong)raw_len);
    uint8_t *raw = malloc(raw_len), *out = malloc(zlen + 64), ihdr[13];
    size_t at = 8;
    for (int y = 0; y < h; y++) {
        raw[y * row] = 0;
        memset(raw + y * row + 1, grey, row - 1);
    }
    memcpy(out, "\x89PNG\r\n\x1a\n", 8);
    put_be32(ihdr, (uint32_t)w);
    put_be32(ihdr + 4, (uint32_t)h);
    memcpy(ihdr + 8, "\x08\x02\x00\x00\x00", 5);
    png_chunk(out, &at, "IHDR", ihdr, 13);
    uint8_t *z = malloc(zlen);
    compress2(z, &zlen, raw, (uLong)raw_len, 6);
    png_chunk(out, &at, "IDAT", z, zlen);
    png_chunk(out, &at, "IEND", NULL, 0);
    free(z);
    free(raw);
    *len = at;
    return out;
}

/* A photo with several faces: faces.jpg from the shared data, else a sample. */
static const char *group_photo(char *buf, size_t len)
{
    const char *data = test_data_dir();
    struct stat st;
    if (data) {
        snprintf(buf, len, "%s/faceapi/test-images/faces.jpg", data);
        if (stat(buf, &st) == 0)
            return buf;
    }
    snprintf(buf, len, "samples/sample1.jpg");
    return stat(buf, &st) == 0 ? buf : NULL;
}

/* A small photo of one face (fast to analyse): an LFW photo, else a sample. */
static const char *small_photo(char *buf, size_t len)
{
    const char *data = test_data_dir();
    struct stat st;
    if (data) {
        snprintf(buf, len, "%s/lfw/images/Aaron_Peirsol/Aaron_Peirsol_0001.jpg", data);
        if (stat(buf, &st) == 0)
            return buf;
    }
    snprintf(buf, len, "samples/sample2.jpg");
    return stat(buf, &st) == 0 ? buf : NULL;
}

static int faces_equal(const lethe_face *a, int na, const lethe_face *b, int nb)
{
    return na == nb && (na == 0 || memcmp(a, b, (size_t)na * sizeof(*a)) == 0);
}

/* The largest face by the rule lethe.h states, computed here independently. */
static int largest_by_rule(const lethe_face *f, int n)
{
    int best = -1;
    double area = 0;
    for (int i = 0; i < n; i++) {
        double a = (double)f[i].box[2] * (double)f[i].box[3];
        if (best < 0 || a > area) {
            best = i;
            area = a;
        }
    }
    return best;
}

/* ------------------------------------------------------- one photo */

static void test_bytes_good_equals_analyze(void)
{
    const char *path = "samples/sample2.jpg";
    struct stat sb;
    if (!test_models_dir())
        SKIP("models/ absent");
    if (stat(path, &sb) != 0)
        SKIP("samples/sample2.jpg absent");
    lethe_engine *e = open_engine(2);
    CHECK(e != NULL);
    if (!e)
        return;
    size_t len = 0;
    uint8_t *bytes = slurp(path, &len);
    CHECK(bytes != NULL);
    unsigned flag_sets[] = {LETHE_WANT_DESCRIPTOR | LETHE_SINGLE_THREAD, LETHE_WANT_LANDMARKS,
                            LETHE_WANT_DESCRIPTOR, 0};
    lethe_image *img = NULL;
    char msg[512];
    CHECK_EQ_INT(lethe_image_decode(bytes, len, NULL, &img, msg, sizeof(msg)), LETHE_OK);
    size_t nsets = LIGHT ? 2 : sizeof(flag_sets) / sizeof(flag_sets[0]);
    for (size_t k = 0; img && k < nsets; k++) {
        lethe_analysis a, b;
        lethe_face *ref = NULL;
        int nref = 0;
        strcpy(msg, "junk");
        CHECK_EQ_INT(lethe_engine_analyze_bytes(e, bytes, len, NULL, flag_sets[k], &a, msg,
                                                sizeof(msg)),
                     LETHE_OK);
        CHECK_EQ_INT(msg[0], 0);
        CHECK_EQ_INT(lethe_engine_analyze(e, img, flag_sets[k], &ref, &nref), LETHE_OK);
        CHECK(nref >= 2);
        CHECK_EQ_INT(a.width, img->orig_width);
        CHECK_EQ_INT(a.height, img->orig_height);
        CHECK(faces_equal(a.faces, a.count, ref, nref));
        CHECK_EQ_INT(lethe_engine_analyze_file(e, path, NULL, flag_sets[k], &b, msg, sizeof(msg)),
                     LETHE_OK);
        CHECK(faces_equal(b.faces, b.count, ref, nref));
        CHECK_EQ_INT(b.width, a.width);
        for (int i = 0; i < a.count; i++)
            CHECK_EQ_INT(a.faces[i].has_descriptor, (flag_sets[k] & LETHE_WANT_DESCRIPTOR) != 0);
        lethe_faces_free(a.faces);
        lethe_faces_free(b.faces);
        lethe_faces_free(ref);
    }
    /* a reduced-scale decode reports boxes and size in original pixels */
    lethe_image_options io;
    lethe_image_options_init(&io);
    io.min_decode_side = 200;
    lethe_analysis small;
    CHECK_EQ_INT(lethe_engine_analyze_bytes(e, bytes, len, &io, LETHE_WANT_LANDMARKS, &small, msg,
                                            sizeof(msg)),
                 LETHE_OK);
    CHECK_EQ_INT(small.width, img ? img->orig_width : -1);
    CHECK_EQ_INT(small.height, img ? img->orig_height : -1);
    lethe_faces_free(small.faces);
    lethe_image_free(img);
    free(bytes);
    lethe_engine_close(e);
}

/* Every failure leaves *out empty and says why. */
static void check_failed(int rc, int want, const lethe_analysis *a, const char *msg,
                         const char *needle)
{
    CHECK_EQ_INT(rc, want);
    CHECK(a->faces == NULL);
    CHECK_EQ_INT(a->count, 0);
    CHECK(msg[0] != 0);
    if (needle && !strstr(msg, needle)) {
        fprintf(stderr, "  message \"%s\" lacks \"%s\"\n", msg, needle);
        CHECK(strstr(msg, needle) != NULL);
    }
}

static void test_bytes_bad(void)
{
    char path[600], msg[512];
    lethe_analysis a;
    if (!test_models_dir())
        SKIP("models/ absent");
    lethe_engine *e = open_engine(1);
    CHECK(e != NULL);
    if (!e)
        return;
    uint8_t junk[300];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (uint8_t)(i * 37 + 11);
    junk[0] = 0x12;
    junk[1] = 0x34;
    junk[2] = 0x56;
    junk[3] = 0x78;
    int rc = lethe_engine_analyze_bytes(e, junk, sizeof(junk), NULL, LETHE_WANT_DESCRIPTOR, &a,
                                        msg, sizeof(msg));
    check_failed(rc, LETHE_ERR_FORMAT, &a, msg, "12 34 56 78");
    CHECK_EQ_INT(a.width, 0);
    rc = lethe_engine_analyze_bytes(e, "", 0, NULL, LETHE_WANT_DESCRIPTOR, &a, msg, sizeof(msg));
    check_failed(rc, LETHE_ERR_FORMAT, &a, msg, "empty");
    rc = lethe_engine_analyze_bytes(e, NULL, 0, NULL, LETHE_WANT_DESCRIPTOR, &a, msg, sizeof(msg));
    check_failed(rc, LETHE_ERR_FORMAT, &a, msg, "empty");
    rc = lethe_engine_analyze_bytes(e, NULL, 10, NULL, 0, &a, msg, sizeof(msg));
    check_failed(rc, LETHE_ERR_ARG, &a, msg, NULL);
    CHECK_EQ_INT(lethe_engine_analyze_bytes(e, junk, 4, NULL, 0, NULL, msg, sizeof(msg)),
                 LETHE_ERR_ARG);
    rc = lethe_engine_analyze_bytes(NULL, junk, 4, NULL, 0, &a, msg, sizeof(msg));
    check_failed(rc, LETHE_ERR_ARG, &a, msg, NULL);
    /* no message buffer is fine, and a 1-byte one stays terminated */
    CHECK_EQ_INT(lethe_engine_analyze_bytes(e, junk, sizeof(junk), NULL, 0, &a, NULL, 0),
                 LETHE_ERR_FORMAT);
    msg[0] = 'x';
    CHECK_EQ_INT(lethe_engine_analyze_bytes(e, junk, sizeof(junk), NULL, 0, &a, msg, 1),
                 LETHE_ERR_FORMAT);
    CHECK_EQ_INT(msg[0], 0);
    /* a truncated JPEG: status and message say so */
    snprintf(path, sizeof(path), "samples/sample1.jpg");
    size_t len = 0;
    uint8_t *bytes = slurp(path, &len);
    if (bytes && len > 20000) {
        rc = lethe_engine_analyze_bytes(e, bytes, 20000, NULL, LETHE_WANT_DESCRIPTOR, &a, msg,
                                        sizeof(msg));
        check_failed(rc, LETHE_ERR_FORMAT, &a, msg, "truncated");
        /* a corrupt one: the header intact, the entropy-coded data garbled */
        for (size_t i = len / 2; i < len / 2 + 4000; i++)
            bytes[i] = 0xff;
        rc = lethe_engine_analyze_bytes(e, bytes, len, NULL, LETHE_WANT_DESCRIPTOR, &a, msg,
                                        sizeof(msg));
        if (rc == LETHE_OK) { /* a decoder may conceal damage; then it is a photo */
            CHECK_EQ_INT(a.width, 1920);
            lethe_faces_free(a.faces);
        } else {
            check_failed(rc, rc, &a, msg, NULL);
        }
    } else {
        fprintf(stderr, "  SKIP part: samples/sample1.jpg absent\n");
    }
    free(bytes);
    lethe_engine_close(e);
}

/* Fills *done and signals when the FIFO call returns. */
typedef struct fifo_call {
    lethe_engine *e;
    const char *path;
    int rc, done;
    char msg[512];
    pthread_mutex_t mu;
    pthread_cond_t cv;
} fifo_call;

static void *fifo_thread(void *arg)
{
    fifo_call *c = arg;
    lethe_analysis a;
    int rc = lethe_engine_analyze_file(c->e, c->path, NULL, 0, &a, c->msg, sizeof(c->msg));
    lethe_faces_free(a.faces);
    pthread_mutex_lock(&c->mu);
    c->rc = rc;
    c->done = 1;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* A FIFO with no writer: refused at once. If the call waits anyway, the
 * test fails after 10 s and opens the FIFO for writing to release it. */
static void check_fifo(lethe_engine *e)
{
    char path[128];
    fifo_call c;
    pthread_t t;
    snprintf(path, sizeof(path), "%s/pipe.jpg", tmpdir);
    if (mkfifo(path, 0600) != 0) {
        fprintf(stderr, "  SKIP part: mkfifo: %s\n", strerror(errno));
        return;
    }
    memset(&c, 0, sizeof(c));
    c.e = e;
    c.path = path;
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cv, NULL);
    CHECK_EQ_INT(pthread_create(&t, NULL, fifo_thread, &c), 0);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&c.mu);
    while (!c.done && pthread_cond_timedwait(&c.cv, &c.mu, &until) == 0)
        ;
    int done = c.done;
    pthread_mutex_unlock(&c.mu);
    CHECK(done);
    if (!done) {
        int fd = open(path, O_WRONLY | O_NONBLOCK);
        if (fd >= 0)
            close(fd);
    }
    pthread_join(t, NULL);
    CHECK_EQ_INT(c.rc, LETHE_ERR_IO);
    CHECK(strstr(c.msg, "pipe.jpg") != NULL);
    CHECK(strstr(c.msg, "not a regular file") != NULL);
    pthread_cond_destroy(&c.cv);
    pthread_mutex_destroy(&c.mu);
    unlink(path);
}

static void test_file_errors(void)
{
    char path[256], msg[512];
    lethe_analysis a;
    if (!test_models_dir())
        SKIP("models/ absent");
    lethe_engine *e = open_engine(1);
    CHECK(e != NULL);
    if (!e)
        return;
    snprintf(path, sizeof(path), "%s/missing.jpg", tmpdir);
    int rc = lethe_engine_analyze_file(e, path, NULL, 0, &a, msg, sizeof(msg));
    check_failed(rc, LETHE_ERR_NOT_FOUND, &a, msg, "missing.jpg");
    rc = lethe_engine_analyze_file(e, tmpdir, NULL, 0, &a, msg, sizeof(msg));
    check_failed(rc, LETHE_ERR_IO, &a, msg, "not a regular file");
    rc = lethe_engine_analyze_file(e, NULL, NULL, 0, &a, msg, sizeof(msg));
    check_failed(rc, LETHE_ERR_ARG, &a, msg, NULL);
    /* empty: the decoder's reason, prefixed with the path */
    snprintf(path, sizeof(path), "%s/empty.jpg", tmpdir);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (f)
        fclose(f);
    rc = lethe_engine_analyze_file(e, path, NULL, 0, &a, msg, sizeof(msg));
    check_failed(rc, LETHE_ERR_FORMAT, &a, msg, "empty.jpg: empty input");
    /* larger than any photo: refused before it is read (a sparse file) */
    snprintf(path, sizeof(path), "%s/huge.jpg", tmpdir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    if (fd >= 0) {
        CHECK_EQ_INT(ftruncate(fd, ((off_t)256 << 20) + 1), 0);
        close(fd);
        rc = lethe_engine_analyze_file(e, path, NULL, 0, &a, msg, sizeof(msg));
        check_failed(rc, LETHE_ERR_TOO_LARGE, &a, msg, "huge.jpg");
        unlink(path);
    }
    check_fifo(e);
    /* the messages above went to the buffers, never to lethe_engine_errmsg */
    CHECK(strcmp(lethe_engine_errmsg(e), "no error") == 0);
    lethe_engine_close(e);
}

/* ------------------------------------------------------- largest face */

/* The largest face of the photo at path, three ways, against the rule
 * applied to lethe_engine_analyze's list. Returns the rule's index. */
static int check_largest(lethe_engine *e, const char *path)
{
    char msg[512];
    lethe_image *img = NULL;
    int best = -1;
    CHECK_EQ_INT(lethe_image_load(path, NULL, &img, msg, sizeof(msg)), LETHE_OK);
    unsigned modes[] = {LETHE_SINGLE_THREAD, 0};
    for (int m = 0; img && m < (LIGHT ? 1 : 2); m++) {
        lethe_face *all = NULL, *one = NULL;
        int n = 0, n1 = 0;
        lethe_analysis a, b;
        CHECK_EQ_INT(lethe_engine_analyze(e, img, LETHE_WANT_DESCRIPTOR | modes[m], &all, &n),
                     LETHE_OK);
        CHECK(n >= 2);
        best = largest_by_rule(all, n);
        CHECK_EQ_INT(lethe_engine_analyze(e, img, LETHE_LARGEST_FACE | modes[m], &one, &n1),
                     LETHE_OK);
        CHECK_EQ_INT(n1, 1);
        if (best >= 0 && n1 == 1)
            CHECK(memcmp(&one[0], &all[best], sizeof(*one)) == 0);
        CHECK_EQ_INT(lethe_engine_analyze_file(e, path, NULL, LETHE_LARGEST_FACE | modes[m], &a,
                                               msg, sizeof(msg)),
                     LETHE_OK);
        CHECK_EQ_INT(a.count, 1);
        if (best >= 0 && a.count == 1) {
            CHECK(memcmp(&a.faces[0], &all[best], sizeof(*one)) == 0);
            CHECK(a.faces[0].has_descriptor && a.faces[0].has_landmarks);
        }
        /* LETHE_WANT_* beside it change nothing */
        if (!LIGHT) {
            CHECK_EQ_INT(lethe_engine_analyze_file(e, path, NULL,
                                                   LETHE_LARGEST_FACE | LETHE_WANT_LANDMARKS |
                                                       modes[m],
                                                   &b, msg, sizeof(msg)),
                         LETHE_OK);
            CHECK(faces_equal(a.faces, a.count, b.faces, b.count));
            lethe_faces_free(b.faces);
        }
        lethe_faces_free(a.faces);
        lethe_faces_free(one);
        lethe_faces_free(all);
    }
    lethe_image_free(img);
    return best;
}

static void test_largest_face(void)
{
    char path[600], msg[512];
    struct stat st;
    if (!test_models_dir())
        SKIP("models/ absent");
    /* sample2.jpg's largest face is its third by score: the rule is by area */
    if (stat("samples/sample2.jpg", &st) != 0)
        SKIP("samples/sample2.jpg absent");
    lethe_engine *e = open_engine(2);
    CHECK(e != NULL);
    if (!e)
        return;
    CHECK(check_largest(e, "samples/sample2.jpg") > 0);
    if (!LIGHT && group_photo(path, sizeof(path)))
        check_largest(e, path);
    /* no face: LETHE_ERR_NO_FACE with a message; without the flag, success */
    size_t len;
    uint8_t *png = blank_png(96, 64, 128, &len);
    lethe_analysis a;
    int rc = lethe_engine_analyze_bytes(e, png, len, NULL, LETHE_LARGEST_FACE, &a, msg,
                                        sizeof(msg));
    check_failed(rc, LETHE_ERR_NO_FACE, &a, msg, "no face found (image of 96x64 pixels)");
    CHECK_EQ_INT(a.width, 96);
    CHECK_EQ_INT(a.height, 64);
    if (!LIGHT) {
        CHECK_EQ_INT(lethe_engine_analyze_bytes(e, png, len, NULL, LETHE_WANT_DESCRIPTOR, &a, msg,
                                                sizeof(msg)),
                     LETHE_OK);
        CHECK_EQ_INT(a.count, 0);
        CHECK(a.faces == NULL);
    }
    free(png);
    lethe_engine_close(e);
}

static void test_chip(void)
{
    char path[600], msg[512];
    const char *data = test_data_dir();
    if (!test_models_dir())
        SKIP("models/ absent");
    if (!data)
        SKIP("../shared/data absent");
    snprintf(path, sizeof(path), "%s/faceapi/test-images/face1.png", data);
    lethe_engine *e = open_engine(2);
    CHECK(e != NULL);
    if (!e)
        return;
    lethe_image *img = NULL;
    float ref[LETHE_DESCRIPTOR_DIM];
    CHECK_EQ_INT(lethe_image_load(path, NULL, &img, msg, sizeof(msg)), LETHE_OK);
    if (img)
        CHECK_EQ_INT(lethe_engine_describe_chip(e, img, ref), LETHE_OK);
    lethe_analysis a;
    CHECK_EQ_INT(lethe_engine_analyze_file(e, path, NULL, LETHE_CHIP | LETHE_LARGEST_FACE, &a,
                                           msg, sizeof(msg)),
                 LETHE_OK);
    CHECK_EQ_INT(a.count, 1);
    if (a.count == 1 && img) {
        const lethe_face *f = &a.faces[0];
        CHECK(memcmp(f->descriptor, ref, sizeof(ref)) == 0);
        CHECK(f->box[0] == 0 && f->box[1] == 0);
        CHECK(f->box[2] == (float)img->width && f->box[3] == (float)img->height);
        CHECK(f->score == 1 && f->has_descriptor == 1 && f->has_landmarks == 0);
    }
    lethe_faces_free(a.faces);
    lethe_image_free(img);
    lethe_engine_close(e);
}

/* ------------------------------------------------------------- batches */

#define MAX_INPUTS 16

typedef struct collector {
    size_t order[MAX_INPUTS]; /* indexes in the order received */
    int status[MAX_INPUTS];
    char message[MAX_INPUTS][512];
    lethe_analysis got[MAX_INPUTS]; /* faces taken from the callback */
    lethe_batch_stats progress[MAX_INPUTS];
    size_t calls;
    size_t stop_at;                 /* return 1 on this call (1-based); 0 never */
    int take;                       /* take the faces of odd inputs */
    int bad_path;                   /* a result whose path was not the input's */
    const lethe_batch_input *in;
} collector;

static int collect(void *ctx, lethe_batch_result *r)
{
    collector *c = ctx;
    size_t k = c->calls++;
    if (k >= MAX_INPUTS || r->index >= MAX_INPUTS)
        return 1;
    c->order[k] = r->index;
    c->status[r->index] = r->status;
    snprintf(c->message[r->index], sizeof(c->message[0]), "%s", r->message);
    c->progress[k] = r->progress;
    if (r->path != c->in[r->index].path)
        c->bad_path = 1;
    c->got[r->index] = r->analysis;
    c->got[r->index].faces = NULL;
    if (c->take && (r->index & 1)) {
        c->got[r->index].faces = r->analysis.faces; /* ours now */
        r->analysis.faces = NULL;
    }
    return c->stop_at && c->calls == c->stop_at;
}

static void collector_free(collector *c)
{
    for (int i = 0; i < MAX_INPUTS; i++)
        lethe_faces_free(c->got[i].faces);
}

static void test_batch_order_and_errors(void)
{
    char small[600], missing[256], msg[512];
    if (!test_models_dir())
        SKIP("models/ absent");
    if (!small_photo(small, sizeof(small)))
        SKIP("no photo (samples/ and ../shared/data absent)");
    lethe_engine *e = open_engine(2);
    CHECK(e != NULL);
    if (!e)
        return;
    size_t photo_len = 0, blank_len = 0;
    uint8_t *photo_bytes = slurp(small, &photo_len);
    uint8_t *blank = blank_png(80, 60, 200, &blank_len);
    static const uint8_t junk[] = "\x01\x02\x03\x04 not an image at all";
    snprintf(missing, sizeof(missing), "%s/nowhere.jpg", tmpdir);
    lethe_batch_input in[] = {
        {small, NULL, 0},              /* 0: a photo, by path */
        {NULL, junk, sizeof(junk)},    /* 1: junk bytes */
        {NULL, photo_bytes, photo_len}, /* 2: a photo, in memory */
        {missing, NULL, 0},            /* 3: no such file */
        {NULL, blank, blank_len},      /* 4: no face */
        {small, NULL, 0},              /* 5 */
        {NULL, NULL, 0},               /* 6: nothing */
        {small, NULL, 0},              /* 7 */
        {small, NULL, 0},              /* 8 */
        {tmpdir, NULL, 0},             /* 9: a directory */
    };
    size_t n = sizeof(in) / sizeof(in[0]);
    int want[] = {LETHE_OK, LETHE_ERR_FORMAT, LETHE_OK, LETHE_ERR_NOT_FOUND, LETHE_OK,
                  LETHE_OK, LETHE_ERR_FORMAT, LETHE_OK, LETHE_OK, LETHE_ERR_IO};
    for (int threads = LIGHT ? 3 : 1; threads <= 3; threads += 2) {
        collector c;
        lethe_batch_options bo;
        lethe_batch_stats st;
        memset(&c, 0, sizeof(c));
        c.in = in;
        c.take = 1;
        lethe_batch_options_init(&bo);
        CHECK_EQ_INT(bo.flags, LETHE_WANT_DESCRIPTOR);
        if (LIGHT)
            bo.flags = LETHE_WANT_LANDMARKS;
        bo.threads = threads;
        bo.on_result = collect;
        bo.ctx = &c;
        CHECK_EQ_INT(lethe_engine_analyze_batch(e, in, n, &bo, &st), LETHE_OK);
        CHECK_EQ_INT(c.calls, n);
        CHECK_EQ_INT(st.total, n);
        CHECK_EQ_INT(st.delivered, n);
        CHECK_EQ_INT(st.failed, 4);
        CHECK_EQ_INT(st.cancelled, 0);
        CHECK(!c.bad_path);
        size_t failed = 0;
        for (size_t i = 0; i < n && i < c.calls; i++) {
            CHECK_EQ_INT(c.order[i], i);
            CHECK_EQ_INT(c.status[i], want[i]);
            failed += want[i] != LETHE_OK;
            CHECK_EQ_INT(c.progress[i].delivered, i + 1);
            CHECK_EQ_INT(c.progress[i].failed, failed);
            CHECK_EQ_INT(c.progress[i].total, n);
            CHECK_EQ_INT(c.message[i][0] == 0, want[i] == LETHE_OK);
            if (want[i] != LETHE_OK)
                CHECK(c.got[i].count == 0);
            /* each result equals the one-call analysis of the same input */
            if (want[i] == LETHE_OK && (!LIGHT || i < 3)) {
                lethe_analysis a;
                unsigned fl = bo.flags | (threads > 1 ? LETHE_SINGLE_THREAD : 0);
                int rc = in[i].path ? lethe_engine_analyze_file(e, in[i].path, NULL, fl, &a, msg,
                                                                sizeof(msg))
                                    : lethe_engine_analyze_bytes(e, in[i].data, in[i].len, NULL,
                                                                 fl, &a, msg, sizeof(msg));
                CHECK_EQ_INT(rc, LETHE_OK);
                CHECK_EQ_INT(c.got[i].width, a.width);
                CHECK_EQ_INT(c.got[i].count, a.count);
                if (i & 1) /* taken: the faces are still there, and equal */
                    CHECK(faces_equal(c.got[i].faces, c.got[i].count, a.faces, a.count));
                else
                    CHECK(c.got[i].faces == NULL);
                lethe_faces_free(a.faces);
            }
        }
        CHECK(strstr(c.message[1], "01 02 03 04") != NULL);
        CHECK(strstr(c.message[3], "nowhere.jpg") != NULL);
        CHECK(strstr(c.message[9], "not a regular file") != NULL);
        CHECK(c.got[0].count >= 1 && c.got[2].count == c.got[0].count && c.got[4].count == 0);
        collector_free(&c);
    }
    free(blank);
    free(photo_bytes);
    lethe_engine_close(e);
}

static void test_batch_cancel_and_args(void)
{
    char small[600];
    if (!test_models_dir())
        SKIP("models/ absent");
    if (!small_photo(small, sizeof(small)))
        SKIP("no photo (samples/ and ../shared/data absent)");
    lethe_engine *e = open_engine(2);
    CHECK(e != NULL);
    if (!e)
        return;
    lethe_batch_input in[12];
    for (int i = 0; i < 12; i++) {
        in[i].path = small;
        in[i].data = NULL;
        in[i].len = 0;
    }
    lethe_batch_options bo;
    lethe_batch_stats st;
    for (int threads = 1; threads <= 3; threads += LIGHT ? 2 : 1) {
        for (size_t stop_at = 1; stop_at <= 3; stop_at += 2) {
            collector c;
            memset(&c, 0, sizeof(c));
            c.in = in;
            c.take = (int)stop_at == 3;
            c.stop_at = stop_at;
            lethe_batch_options_init(&bo);
            bo.flags = LETHE_CHIP; /* the cheapest analysis: the order is what counts */
            bo.threads = threads;
            bo.on_result = collect;
            bo.ctx = &c;
            CHECK_EQ_INT(lethe_engine_analyze_batch(e, in, 12, &bo, &st), LETHE_OK);
            CHECK_EQ_INT(c.calls, stop_at);
            CHECK_EQ_INT(st.delivered, stop_at);
            CHECK_EQ_INT(st.cancelled, 1);
            CHECK_EQ_INT(st.total, 12);
            for (size_t k = 0; k < c.calls; k++)
                CHECK_EQ_INT(c.order[k], k);
            collector_free(&c);
        }
    }
    /* arguments */
    collector c;
    memset(&c, 0, sizeof(c));
    c.in = in;
    lethe_batch_options_init(&bo);
    bo.ctx = &c;
    CHECK_EQ_INT(lethe_engine_analyze_batch(e, in, 2, &bo, &st), LETHE_ERR_ARG); /* no callback */
    bo.on_result = collect;
    CHECK_EQ_INT(lethe_engine_analyze_batch(e, NULL, 2, &bo, &st), LETHE_ERR_ARG);
    CHECK_EQ_INT(lethe_engine_analyze_batch(NULL, in, 2, &bo, &st), LETHE_ERR_ARG);
    CHECK_EQ_INT(lethe_engine_analyze_batch(e, in, 2, NULL, &st), LETHE_ERR_ARG);
    bo.threads = -1;
    CHECK_EQ_INT(lethe_engine_analyze_batch(e, in, 2, &bo, &st), LETHE_ERR_ARG);
    bo.threads = 0;
    CHECK_EQ_INT(lethe_engine_analyze_batch(e, in, 0, &bo, &st), LETHE_OK);
    CHECK_EQ_INT(st.total, 0);
    CHECK_EQ_INT(lethe_engine_analyze_batch(e, NULL, 0, &bo, NULL), LETHE_OK);
    CHECK_EQ_INT(c.calls, 0);
    lethe_engine_close(e);
}

/* --------------------------------------------- threads sharing an engine */

#define RACE_THREADS 4

typedef struct racer {
    lethe_engine *e;
    int id;
    pthread_barrier_t *barrier;
    int wrong;       /* messages that were not this thread's own */
    char seen[512];  /* the first wrong one */
} racer;

static void note_wrong(racer *r, const char *msg)
{
    if (!r->wrong++)
        snprintf(r->seen, sizeof(r->seen), "%s", msg);
}

/*
 * Finding 11: lethe_engine_errmsg read by threads that share an engine.
 * Every thread fails on its own blank image (LETHE_ERR_NO_FACE naming its
 * size), all wait until all have failed, then read: with one message per
 * engine all but one read another thread's; with one per thread each reads
 * its own.
 */
static void *errmsg_racer(void *arg)
{
    racer *r = arg;
    int w = 40 + 8 * r->id, h = 32 + 4 * r->id;
    char want[64];
    lethe_image *img = NULL;
    lethe_face *f = NULL;
    int n = 0;
    uint8_t *rgb = malloc((size_t)w * h * 3);
    memset(rgb, 90 + 10 * r->id, (size_t)w * h * 3);
    snprintf(want, sizeof(want), "%dx%d", w, h);
    if (lethe_image_from_rgb(rgb, w, h, &img) != LETHE_OK)
        note_wrong(r, "lethe_image_from_rgb failed");
    else if (lethe_engine_analyze(r->e, img, LETHE_LARGEST_FACE | LETHE_SINGLE_THREAD, &f,
                                  &n) != LETHE_ERR_NO_FACE)
        note_wrong(r, "not LETHE_ERR_NO_FACE");
    pthread_barrier_wait(r->barrier);
    const char *m = lethe_engine_errmsg(r->e);
    if (!strstr(m, want))
        note_wrong(r, m);
    pthread_barrier_wait(r->barrier); /* nobody fails again before all have read */
    lethe_faces_free(f);
    lethe_image_free(img);
    free(rgb);
    return NULL;
}

/* Many threads failing at once through the one-call analysis, each on
 * inputs of its own: junk bytes (the decoder quotes their first bytes), a
 * blank photo (the engine names its size), a missing file (named). */
static void *one_call_racer(void *arg)
{
    racer *r = arg;
    char msg[512], want[128], path[256];
    lethe_analysis a;
    for (int it = 0; it < 3; it++) {
        uint8_t junk[64];
        memset(junk, 0x41, sizeof(junk));
        junk[0] = (uint8_t)(0x10 + r->id);
        junk[1] = (uint8_t)(0x20 + it);
        junk[2] = 0x99;
        junk[3] = 0x07;
        snprintf(want, sizeof(want), "%02x %02x 99 07", junk[0], junk[1]);
        if (lethe_engine_analyze_bytes(r->e, junk, sizeof(junk), NULL, LETHE_WANT_DESCRIPTOR, &a,
                                       msg, sizeof(msg)) != LETHE_ERR_FORMAT ||
            !strstr(msg, want))
            note_wrong(r, msg);
        int w = 48 + 16 * r->id + 2 * it, h = 40 + it;
        size_t len;
        uint8_t *png = blank_png(w, h, (uint8_t)(60 + 20 * r->id), &len);
        snprintf(want, sizeof(want), "(image of %dx%d pixels)", w, h);
        if (lethe_engine_analyze_bytes(r->e, png, len, NULL,
                                       LETHE_LARGEST_FACE | LETHE_SINGLE_THREAD, &a, msg,
                                       sizeof(msg)) != LETHE_ERR_NO_FACE ||
            !strstr(msg, want))
            note_wrong(r, msg);
        free(png);
        snprintf(path, sizeof(path), "%s/absent-%d-%d.jpg", tmpdir, r->id, it);
        if (lethe_engine_analyze_file(r->e, path, NULL, 0, &a, msg, sizeof(msg)) !=
                LETHE_ERR_NOT_FOUND ||
            !strstr(msg, path))
            note_wrong(r, msg);
    }
    /* the buffers took every message: this thread's errmsg saw none */
    if (strcmp(lethe_engine_errmsg(r->e), "no error") != 0)
        note_wrong(r, lethe_engine_errmsg(r->e));
    return NULL;
}

static void run_racers(lethe_engine *e, void *(*fn)(void *))
{
    pthread_t t[RACE_THREADS];
    racer r[RACE_THREADS];
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, RACE_THREADS);
    for (int i = 0; i < RACE_THREADS; i++) {
        memset(&r[i], 0, sizeof(r[i]));
        r[i].e = e;
        r[i].id = i;
        r[i].barrier = &barrier;
        CHECK_EQ_INT(pthread_create(&t[i], NULL, fn, &r[i]), 0);
    }
    for (int i = 0; i < RACE_THREADS; i++) {
        pthread_join(t[i], NULL);
        if (r[i].wrong)
            fprintf(stderr, "  thread %d: %d wrong message(s), e.g. \"%s\"\n", i, r[i].wrong,
                    r[i].seen);
        CHECK_EQ_INT(r[i].wrong, 0);
    }
    pthread_barrier_destroy(&barrier);
}

static void test_errmsg_per_thread(void)
{
    if (!test_models_dir())
        SKIP("models/ absent");
    lethe_engine *e = open_engine_with(2, 1);
    CHECK(e != NULL);
    if (!e)
        return;
    CHECK(strcmp(lethe_engine_errmsg(e), "no error") == 0);
    run_racers(e, errmsg_racer);
    /* the other threads' failures are not this thread's */
    CHECK(strcmp(lethe_engine_errmsg(e), "no error") == 0);
    lethe_image bad = {0};
    lethe_face *f = NULL;
    int n = 0;
    CHECK_EQ_INT(lethe_engine_analyze(e, &bad, 0, &f, &n), LETHE_ERR_ARG);
    CHECK(strcmp(lethe_engine_errmsg(e), "no image") == 0);
    /* a second engine has a message of its own */
    lethe_engine *e2 = open_engine(1);
    if (e2) {
        CHECK(strcmp(lethe_engine_errmsg(e2), "no error") == 0);
        lethe_engine_close(e2);
    }
    lethe_engine_close(e);
}

static void test_one_call_many_threads(void)
{
    if (!test_models_dir())
        SKIP("models/ absent");
    lethe_engine *e = open_engine_with(2, 1);
    CHECK(e != NULL);
    if (!e)
        return;
    run_racers(e, one_call_racer);
    lethe_engine_close(e);
}

/* ------------------------------------------------- allocation failures */

/*
 * Make the k-th allocation fail, for k = 0, 1, 2, ... until the call
 * succeeds: every failure must be LETHE_ERR_NOMEM with nothing returned
 * (what leaks, LeakSanitizer reports in the sanitizer build). The engine is
 * warmed first so that the loop steps through the call, not the lazy
 * loading of the networks.
 */
typedef int (*alloc_step_fn)(lethe_engine *e, void *arg, int *faces);

static void alloc_loop(lethe_engine *e, const char *what, alloc_step_fn fn, void *arg,
                       int want_faces)
{
    int faces = -1, rc = LETHE_ERR_NOMEM;
    long k;
    for (k = 0; k < 20000; k++) {
        lethe_alloc_fail_after(k);
        rc = fn(e, arg, &faces);
        lethe_alloc_fail_after(-1);
        if (rc == LETHE_OK)
            break;
        if (rc != LETHE_ERR_NOMEM) {
            fprintf(stderr, "  %s: allocation %ld failing gave status %d\n", what, k, rc);
            CHECK_EQ_INT(rc, LETHE_ERR_NOMEM);
            break;
        }
    }
    CHECK_EQ_INT(rc, LETHE_OK);
    CHECK_EQ_INT(faces, want_faces);
    fprintf(stderr, "  %s: %ld allocation failures, each LETHE_ERR_NOMEM\n", what, k);
}

typedef struct alloc_arg {
    const void *data;
    size_t len;
    const char *path;
    unsigned flags;
    lethe_batch_input *in;
    size_t n;
} alloc_arg;

static int step_bytes(lethe_engine *e, void *p, int *faces)
{
    alloc_arg *a = p;
    lethe_analysis out;
    char msg[512];
    int rc = lethe_engine_analyze_bytes(e, a->data, a->len, NULL, a->flags, &out, msg,
                                        sizeof(msg));
    if (rc != LETHE_OK && (out.faces || out.count || !msg[0]))
        rc = LETHE_ERR_INTERNAL; /* a failure must leave nothing and say why */
    *faces = out.count;
    lethe_faces_free(out.faces);
    return rc;
}

static int step_file(lethe_engine *e, void *p, int *faces)
{
    alloc_arg *a = p;
    lethe_analysis out;
    char msg[512];
    int rc = lethe_engine_analyze_file(e, a->path, NULL, a->flags, &out, msg, sizeof(msg));
    if (rc != LETHE_OK && (out.faces || out.count || !strstr(msg, a->path)))
        rc = LETHE_ERR_INTERNAL;
    *faces = out.count;
    lethe_faces_free(out.faces);
    return rc;
}

typedef struct batch_tally {
    int ok, nomem, other, faces;
} batch_tally;

static int tally(void *ctx, lethe_batch_result *r)
{
    batch_tally *t = ctx;
    if (r->status == LETHE_OK) {
        t->ok++;
        t->faces += r->analysis.count;
    } else if (r->status == LETHE_ERR_NOMEM && !r->analysis.faces && r->message[0]) {
        t->nomem++;
    } else {
        t->other++;
    }
    return 0;
}

/* The batch: LETHE_OK once every input succeeded; LETHE_ERR_NOMEM while an
 * input (or the batch itself) ran out. */
static int step_batch(lethe_engine *e, void *p, int *faces)
{
    alloc_arg *a = p;
    batch_tally t = {0, 0, 0, 0};
    lethe_batch_options bo;
    lethe_batch_stats st;
    lethe_batch_options_init(&bo);
    bo.flags = a->flags;
    bo.threads = 2;
    bo.on_result = tally;
    bo.ctx = &t;
    int rc = lethe_engine_analyze_batch(e, a->in, a->n, &bo, &st);
    *faces = t.faces;
    if (rc != LETHE_OK)
        return rc == LETHE_ERR_NOMEM && t.ok + t.nomem + t.other == 0 ? rc : LETHE_ERR_INTERNAL;
    if (t.other || (size_t)(t.ok + t.nomem) != a->n || st.delivered != a->n)
        return LETHE_ERR_INTERNAL;
    return t.nomem ? LETHE_ERR_NOMEM : LETHE_OK;
}

static void test_alloc_failures(void)
{
    char small[600], msg[512];
    if (!test_models_dir())
        SKIP("models/ absent");
    if (!small_photo(small, sizeof(small)))
        SKIP("no photo (samples/ and ../shared/data absent)");
    lethe_engine *e = open_engine(1);
    CHECK(e != NULL);
    if (!e)
        return;
    size_t len = 0;
    uint8_t *bytes = slurp(small, &len);
    lethe_analysis warm;
    CHECK_EQ_INT(lethe_engine_analyze_bytes(e, bytes, len, NULL, LETHE_WANT_DESCRIPTOR, &warm, msg,
                                            sizeof(msg)),
                 LETHE_OK);
    int nfaces = warm.count;
    CHECK(nfaces >= 1);
    lethe_faces_free(warm.faces);

    /* (under the sanitizers, landmarks only: the descriptor's allocations
     * are stepped through by the largest-face loop) */
    alloc_arg a = {bytes, len, small, LIGHT ? LETHE_WANT_LANDMARKS : LETHE_WANT_DESCRIPTOR, NULL,
                   0};
    alloc_loop(e, "analyze_bytes", step_bytes, &a, nfaces);
    a.flags = LETHE_LARGEST_FACE;
    alloc_loop(e, "analyze_file largest", step_file, &a, 1);
    a.flags = LETHE_CHIP;
    alloc_loop(e, "analyze_bytes chip", step_bytes, &a, 1);
    /* the batch's own allocations; chips, as the analysis was stepped above */
    lethe_batch_input in[3] = {{small, NULL, 0}, {NULL, bytes, len}, {small, NULL, 0}};
    a.flags = LETHE_CHIP;
    a.in = in;
    a.n = 3;
    alloc_loop(e, "analyze_batch", step_batch, &a, 3);
    free(bytes);
    lethe_engine_close(e);
}

int main(int argc, char **argv)
{
    test_select(argc, argv);
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/lethe-analyze-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_bytes_good_equals_analyze);
    RUN(test_bytes_bad);
    RUN(test_file_errors);
    RUN(test_largest_face);
    RUN(test_chip);
    RUN(test_batch_order_and_errors);
    RUN(test_batch_cancel_and_args);
    RUN(test_errmsg_per_thread);
    RUN(test_one_call_many_threads);
    RUN(test_alloc_failures);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "  could not remove %s\n", tmpdir);
    return test_summary();
}
