/*
 * engine.c: the public face engine (lethe.h section 3): loads the four
 * networks, owns the worker pool, and runs detect -> landmarks -> align ->
 * describe on an image (or describes a chip, or only the largest face).
 */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "face/align.h"
#include "face/detect.h"
#include "face/engine_int.h"
#include "face/nets.h"
#include "face/prep.h"
#include "util/bufcache.h"
#include "util/util.h"

#ifndef LETHE_DEFAULT_MODELS
#define LETHE_DEFAULT_MODELS "/usr/local/share/lethe/models"
#endif

struct lethe_engine {
    uint64_t id;                /* unique in the process: tags its messages */
    lethe_engine_options opt;
    char *model_dir;
    ssd_net *ssd;
    tiny_net *tiny;
    lm68 *lm;
    resnet *rn;
    nn_pool *pool;
    int detect_loaded;          /* detector and landmark nets loaded (lazily) */
    int detect_status;          /* their load status once tried */
    char detect_msg[512];       /* and why it failed */
    pthread_mutex_t load_lock;
    lethe_bufcache work;        /* the descriptor net's working memory */
    size_t work_size;
};

/*
 * lethe_engine_errmsg's message: the calling thread's last failure, as
 * errno is, so that threads sharing an engine never read (or tear) each
 * other's. Tagged with the engine's id rather than its address, which a
 * later engine may reuse.
 */
static _Thread_local struct {
    uint64_t engine;
    char msg[512];
} last_failure;
static atomic_uint_fast64_t engine_ids;

void lethe_engine_options_init(lethe_engine_options *opt)
{
    memset(opt, 0, sizeof(*opt));
    opt->detector = LETHE_DETECTOR_SSD;
    opt->precision = LETHE_PRECISION_DEFAULT;
    opt->align = LETHE_ALIGN_SIMILARITY;
    opt->threads = 0;
    opt->min_score = 0.5f;
    opt->min_face_size = 0;
    opt->tiny_input_size = 416;
    opt->max_faces = 100;
    opt->mirror_average = 1;
}

/* Record why a public call failed, for this thread's lethe_engine_errmsg.
 * No argument may point into last_failure.msg. */
static int engine_fail(const lethe_engine *e, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int engine_fail(const lethe_engine *e, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_failure.msg, sizeof(last_failure.msg), fmt, ap);
    va_end(ap);
    last_failure.engine = e->id;
    return status;
}

static int check_options(lethe_engine *e, const lethe_engine_options *o)
{
    if (o->detector != LETHE_DETECTOR_SSD && o->detector != LETHE_DETECTOR_TINY)
        return engine_fail(e, LETHE_ERR_ARG, "unknown detector %d", o->detector);
    if (o->precision != LETHE_PRECISION_DEFAULT && o->precision != LETHE_PRECISION_FP32 &&
        o->precision != LETHE_PRECISION_INT8)
        return engine_fail(e, LETHE_ERR_ARG, "unknown precision %d", o->precision);
    if (o->align != LETHE_ALIGN_SIMILARITY && o->align != LETHE_ALIGN_BOX)
        return engine_fail(e, LETHE_ERR_ARG, "unknown alignment %d", o->align);
    if (!(o->min_score > 0 && o->min_score < 1))
        return engine_fail(e, LETHE_ERR_ARG, "min_score must be in (0, 1), not %g",
                           (double)o->min_score);
    if (o->min_face_size < 0 || o->max_faces < 1 || o->threads < 0 || o->threads > 1024)
        return engine_fail(e, LETHE_ERR_ARG, "invalid min_face_size, max_faces or threads");
    if (o->detector == LETHE_DETECTOR_TINY && tiny_output_cells(o->tiny_input_size) == 0)
        return engine_fail(e, LETHE_ERR_ARG,
                           "tiny detector input size must be a multiple of 32 up to %d, not %d",
                           TINY_MAX_INPUT_SIZE, o->tiny_input_size);
    return LETHE_OK;
}

/* Fail early when a model file the engine will need is absent. */
static int check_model_files(const char *dir, int detector, char *msg, size_t msg_len)
{
    const char *names[3] = {"tiny_face_detector_model", "face_landmark_68_model",
                            "ssd_mobilenetv1_model"};
    for (int i = 0; i < (detector == LETHE_DETECTOR_SSD ? 3 : 2); i++) {
        char path[4096], why[512];
        int fd, rc;
        snprintf(path, sizeof(path), "%s/%s-weights_manifest.json", dir, names[i]);
        /* Not fopen: a FIFO in the model folder would block it forever. */
        rc = lethe_open_regular(path, &fd, NULL, why, sizeof(why));
        if (rc == LETHE_ERR_NOT_FOUND)
            return lethe_fail(msg, msg_len, LETHE_ERR_MODEL,
                              "model file %s is missing (run scripts/fetch-models.sh, or pass "
                              "--models DIR / set LETHE_MODELS)", path);
        if (rc != LETHE_OK)
            return lethe_fail(msg, msg_len, rc == LETHE_ERR_NOMEM ? rc : LETHE_ERR_MODEL, "%s",
                              why);
        close(fd);
    }
    return LETHE_OK;
}

/* The precision the SSD detector is loaded at. The default is the int8
 * detector where the CPU runs it (AVX-512 VNNI, LETHE_INT8 not 0): it costs
 * one LFW pair in 5,988 at a fixed threshold and nothing on rank-1, for
 * about twice the photos per second (docs/model-card.md). Elsewhere the
 * default detector is fp32; LETHE_PRECISION_FP32 always is, so that the
 * reference can be reproduced bit for bit. */
static int detector_precision(const lethe_engine_options *o)
{
    if (o->precision == LETHE_PRECISION_DEFAULT && nn_int8_available())
        return LETHE_PRECISION_INT8;
    return o->precision;
}

/* Load the detector and landmark nets on first use (thread-safe). A
 * failure is kept, with its message, for every later call. */
static int load_detect_nets(lethe_engine *e, char *msg, size_t msg_len)
{
    int rc;

    pthread_mutex_lock(&e->load_lock);
    if (!e->detect_loaded) {
        /* The tiny detector is also SSD's last resort (see engine_analyze). */
        rc = tiny_net_load(e->model_dir, &e->tiny, e->detect_msg, sizeof(e->detect_msg));
        if (rc == LETHE_OK && e->opt.detector == LETHE_DETECTOR_SSD)
            rc = ssd_net_load_precision(e->model_dir, detector_precision(&e->opt), &e->ssd,
                                        e->detect_msg, sizeof(e->detect_msg));
        if (rc == LETHE_OK)
            rc = lm68_load(e->model_dir, &e->lm, e->detect_msg, sizeof(e->detect_msg));
        e->detect_status = rc;
        e->detect_loaded = rc != LETHE_ERR_NOMEM; /* out of memory may pass */
    }
    rc = e->detect_status;
    if (rc != LETHE_OK)
        lethe_fail(msg, msg_len, rc, "%s", e->detect_msg);
    pthread_mutex_unlock(&e->load_lock);
    return rc;
}

int lethe_engine_open(lethe_engine **out, const lethe_engine_options *opt)
{
    lethe_engine *e;
    lethe_engine_options defaults;
    const char *dir;
    char msg[512];
    int rc;

    *out = NULL;
    if (!opt) {
        lethe_engine_options_init(&defaults);
        opt = &defaults;
    }
    e = lethe_calloc(1, sizeof(*e));
    if (!e)
        return LETHE_ERR_NOMEM;
    e->id = atomic_fetch_add(&engine_ids, 1) + 1;
    pthread_mutex_init(&e->load_lock, NULL);
    lethe_bufcache_init(&e->work);
    *out = e;
    e->opt = *opt;
    rc = check_options(e, opt);
    if (rc != LETHE_OK)
        return rc;
    dir = opt->model_dir;
    if (!dir || !*dir)
        dir = getenv("LETHE_MODELS");
    if (!dir || !*dir)
        dir = LETHE_DEFAULT_MODELS;
    e->model_dir = lethe_strdup(dir);
    e->opt.model_dir = e->model_dir;
    if (!e->model_dir)
        return engine_fail(e, LETHE_ERR_NOMEM, "out of memory");
    nn_init();
    /* The descriptor net is loaded now; the detector and landmark nets when
     * first needed (describing chips needs neither). Their files are
     * checked now all the same, so that a damaged install fails at once. */
    rc = resnet_load(dir, opt->precision == LETHE_PRECISION_FP32, &e->rn, msg, sizeof(msg));
    if (rc == LETHE_OK)
        rc = check_model_files(dir, opt->detector, msg, sizeof(msg));
    if (rc != LETHE_OK)
        return engine_fail(e, rc, "%s", msg);
    if (nn_pool_create(&e->pool, opt->threads) != 0)
        return engine_fail(e, LETHE_ERR_NOMEM, "cannot start worker threads");
    e->work_size = resnet_work_size(e->rn, e->pool);
    return LETHE_OK;
}

void lethe_engine_close(lethe_engine *e)
{
    if (!e)
        return;
    nn_pool_destroy(e->pool);
    ssd_net_free(e->ssd);
    tiny_net_free(e->tiny);
    lm68_free(e->lm);
    resnet_free(e->rn);
    lethe_free(e->model_dir);
    lethe_bufcache_destroy(&e->work);
    pthread_mutex_destroy(&e->load_lock);
    lethe_free(e);
}

const char *lethe_engine_errmsg(const lethe_engine *e)
{
    if (!e)
        return "out of memory";
    if (last_failure.engine != e->id || !last_failure.msg[0])
        return "no error";
    return last_failure.msg;
}

const char *lethe_engine_kernels(const lethe_engine *e)
{
    (void)e;
    return nn_isa_name(nn_isa_current());
}

const char *lethe_engine_precision(const lethe_engine *e)
{
    if (e->opt.precision == LETHE_PRECISION_FP32)
        return "fp32";
    if (e->opt.precision != LETHE_PRECISION_FP32 && nn_int8_available())
        return "int8"; /* LETHE_PRECISION_INT8, or the default where int8 runs */
    return "default";
}

void lethe_faces_free(lethe_face *faces) { lethe_free(faces); }

/* Describe RGB8 pixels with reused working memory. */
static int describe(lethe_engine *e, const uint8_t *rgb, int w, int h, float *desc,
                    nn_pool *pool)
{
    size_t size;
    void *work = lethe_bufcache_get(&e->work, e->work_size, &size);
    if (!work)
        return LETHE_ERR_NOMEM;
    int rc = resnet_describe_rgb(e->rn, rgb, w, h, desc, pool, work);
    lethe_bufcache_put(&e->work, work, size);
    return rc;
}

/* Copy the w x h region at (x, y) of an RGB8 image (inside it). */
static uint8_t *crop_rgb(const lethe_image *img, int x, int y, int w, int h)
{
    uint8_t *out = lethe_malloc((size_t)w * h * 3);
    if (!out)
        return NULL;
    for (int r = 0; r < h; r++)
        memcpy(out + (size_t)r * w * 3, img->rgb + (((size_t)(y + r) * img->width) + x) * 3,
               (size_t)w * 3);
    return out;
}

/* Landmarks for one detection: crop the box as extractFaceTensors does. */
static int face_landmarks(lethe_engine *e, const lethe_image *img, const face_det *d,
                          lethe_face *f, nn_pool *pool)
{
    /* Box.clipAtImageBorders then floor */
    double x = d->x > 0 ? d->x : 0, y = d->y > 0 ? d->y : 0;
    double r = d->x + d->w, b = d->y + d->h;
    double w = r - x, h = b - y;
    if (w > img->width - x)
        w = img->width - x;
    if (h > img->height - y)
        h = img->height - y;
    int bx = (int)x, by = (int)y, bw = (int)w, bh = (int)h;
    if (bw <= 0 || bh <= 0)
        return LETHE_ERR_NO_FACE;
    uint8_t *crop = crop_rgb(img, bx, by, bw, bh);
    if (!crop)
        return LETHE_ERR_NOMEM;
    int rc = lm68_detect_rgb(e->lm, crop, bw, bh, f->landmarks, pool);
    lethe_free(crop);
    if (rc != LETHE_OK)
        return rc;
    /* face-api shifts by the unfloored box corner */
    for (int i = 0; i < 68; i++) {
        f->landmarks[i][0] += d->x;
        f->landmarks[i][1] += d->y;
    }
    f->crop_w = bw;
    f->crop_h = bh;
    f->has_landmarks = 1;
    return LETHE_OK;
}

/* Flip an RGB8 image left to right in place. */
static void mirror_rgb(uint8_t *rgb, int w, int h)
{
    for (int y = 0; y < h; y++) {
        uint8_t *row = rgb + (size_t)y * w * 3;
        for (int x = 0; x < w / 2; x++)
            for (int c = 0; c < 3; c++) {
                uint8_t t = row[x * 3 + c];
                row[x * 3 + c] = row[(w - 1 - x) * 3 + c];
                row[(w - 1 - x) * 3 + c] = t;
            }
    }
}

static int face_descriptor(lethe_engine *e, const lethe_image *img, lethe_face *f, nn_pool *pool)
{
    int rc;
    if (e->opt.align == LETHE_ALIGN_BOX) {
        int box[4];
        if (!align_box_faceapi((const float(*)[2])f->landmarks, f->crop_w, f->crop_h,
                               img->width, img->height, box))
            return LETHE_ERR_NO_FACE;
        uint8_t *crop = crop_rgb(img, box[0], box[1], box[2], box[3]);
        if (!crop)
            return LETHE_ERR_NOMEM;
        rc = describe(e, crop, box[2], box[3], f->descriptor, pool);
        lethe_free(crop);
    } else {
        double m[4];
        uint8_t *chip = lethe_malloc(ALIGN_CHIP_SIZE * ALIGN_CHIP_SIZE * 3);
        if (!chip)
            return LETHE_ERR_NOMEM;
        if (!align_chip_transform((const float(*)[2])f->landmarks, ALIGN_CHIP_SIZE,
                                  ALIGN_PADDING_DEFAULT, ALIGN_SHIFT_DEFAULT, m)) {
            lethe_free(chip);
            return LETHE_ERR_NO_FACE;
        }
        align_extract_chip(img->rgb, img->width, img->height, m, ALIGN_CHIP_SIZE, chip);
        rc = describe(e, chip, ALIGN_CHIP_SIZE, ALIGN_CHIP_SIZE, f->descriptor, pool);
        if (rc == LETHE_OK && e->opt.mirror_average) {
            /* The same face seen in a mirror: averaging the two descriptors
             * evens out the chip's left-right asymmetries. */
            float mirrored[LETHE_DESCRIPTOR_DIM];
            mirror_rgb(chip, ALIGN_CHIP_SIZE, ALIGN_CHIP_SIZE);
            rc = describe(e, chip, ALIGN_CHIP_SIZE, ALIGN_CHIP_SIZE, mirrored, pool);
            for (int i = 0; i < LETHE_DESCRIPTOR_DIM; i++)
                f->descriptor[i] = 0.5f * (f->descriptor[i] + mirrored[i]);
        }
        lethe_free(chip);
    }
    if (rc == LETHE_OK)
        f->has_descriptor = 1;
    return rc;
}

static int run_detector(lethe_engine *e, const uint8_t *rgb, int w, int h, face_det **dets,
                        int *n, nn_pool *pool)
{
    if (e->opt.detector == LETHE_DETECTOR_SSD)
        return ssd_net_detect(e->ssd, rgb, w, h, e->opt.min_score, e->opt.max_faces, dets, n,
                              pool);
    return tiny_net_detect(e->tiny, rgb, w, h, e->opt.tiny_input_size, e->opt.min_score,
                           e->opt.max_faces, dets, n, pool);
}

/*
 * The second look. SSD MobileNet v1 misses many faces that fill most of the
 * picture (about one LFW photo in ten at score 0.5, as face-api.js does);
 * shown the same picture at half size in the middle of a black canvas, it
 * finds nearly all of them. So when the first pass finds no large face (one
 * spanning a quarter of the shorter side), look again that way (the picture
 * first shrunk to at most 256 pixels a side inside a 512 canvas, which loses
 * nothing: the detector sees 512 x 512 in all) and merge the two.
 */
static int detect_second_look(lethe_engine *e, const lethe_image *img, face_det **dets, int *n,
                              nn_pool *pool)
{
    int w = img->width, h = img->height, side = LETHE_MAX(w, h);
    double s = side > 256 ? 256.0 / side : 1.0;
    int sw = LETHE_MAX(1, (int)lrint(w * s)), sh = LETHE_MAX(1, (int)lrint(h * s));
    int canvas = 2 * LETHE_MAX(sw, sh);
    int ox = (canvas - sw) / 2, oy = (canvas - sh) / 2, rc;
    uint8_t *small = NULL, *buf = lethe_calloc((size_t)canvas * canvas, 3);

    if (!buf)
        return LETHE_ERR_NOMEM;
    if (s < 1.0) {
        small = lethe_malloc((size_t)sw * sh * 3);
        if (!small) {
            lethe_free(buf);
            return LETHE_ERR_NOMEM;
        }
        prep_shrink_rgb8(img->rgb, w, h, small, sw, sh);
    }
    for (int y = 0; y < sh; y++)
        memcpy(buf + ((size_t)(y + oy) * canvas + ox) * 3,
               (small ? small : img->rgb) + (size_t)y * sw * 3, (size_t)sw * 3);
    lethe_free(small);
    rc = run_detector(e, buf, canvas, canvas, dets, n, pool);
    lethe_free(buf);
    if (rc != LETHE_OK)
        return rc;
    /* back to the picture's pixels, clipped to it */
    int kept = 0;
    for (int i = 0; i < *n; i++) {
        face_det d = (*dets)[i];
        double x0 = fmax(0, (d.x - ox) / s), y0 = fmax(0, (d.y - oy) / s);
        double x1 = fmin(w, (d.x + d.w - ox) / s), y1 = fmin(h, (d.y + d.h - oy) / s);
        if (x1 - x0 < 1 || y1 - y0 < 1)
            continue;
        d.x = (float)x0;
        d.y = (float)y0;
        d.w = (float)(x1 - x0);
        d.h = (float)(y1 - y0);
        (*dets)[kept++] = d;
    }
    *n = kept;
    return LETHE_OK;
}

/* Whether a detection spans at least a quarter of the photo's shorter side. */
static int has_large_face(const lethe_image *img, const face_det *d, int n)
{
    float side = (float)LETHE_MIN(img->width, img->height) / 4.0f;
    for (int i = 0; i < n; i++)
        if (d[i].w >= side && d[i].h >= side)
            return 1;
    return 0;
}

static float det_iou(const face_det *a, const face_det *b)
{
    float x0 = fmaxf(a->x, b->x), y0 = fmaxf(a->y, b->y);
    float x1 = fminf(a->x + a->w, b->x + b->w), y1 = fminf(a->y + a->h, b->y + b->h);
    float inter = fmaxf(0, x1 - x0) * fmaxf(0, y1 - y0);
    float uni = a->w * a->h + b->w * b->h - inter;
    return uni > 0 ? inter / uni : 0;
}

static int by_score_desc(const void *a, const void *b)
{
    float x = ((const face_det *)a)->score, y = ((const face_det *)b)->score;
    return (x < y) - (x > y);
}

/* Add the second look's detections to the first's: a face both found
 * (IoU > 0.5) is kept once, with the better score; best first, at most max. */
static int merge_detections(face_det **dets, int *n, const face_det *more, int m, int max)
{
    face_det *all;
    int k = 0;
    if (m == 0)
        return LETHE_OK;
    all = lethe_malloc((size_t)(*n + m) * sizeof(*all));
    if (!all)
        return LETHE_ERR_NOMEM;
    if (*n > 0)
        memcpy(all, *dets, (size_t)*n * sizeof(*all));
    memcpy(all + *n, more, (size_t)m * sizeof(*all));
    qsort(all, (size_t)(*n + m), sizeof(*all), by_score_desc);
    for (int i = 0; i < *n + m && k < max; i++) {
        int dup = 0;
        for (int j = 0; j < k && !dup; j++)
            dup = det_iou(&all[i], &all[j]) > 0.5f;
        if (!dup)
            all[k++] = all[i];
    }
    lethe_free(*dets);
    *dets = all;
    *n = k;
    return LETHE_OK;
}

/* The factors from decoded pixels to original pixels (reduced-scale
 * decoding); 0 when they are the same. */
static int original_scale(const lethe_image *img, float *sx, float *sy)
{
    if (img->orig_width <= 0 || img->orig_height <= 0 ||
        (img->orig_width == img->width && img->orig_height == img->height))
        return 0;
    *sx = (float)img->orig_width / (float)img->width;
    *sy = (float)img->orig_height / (float)img->height;
    return 1;
}

static void to_original(const lethe_image *img, lethe_face *f)
{
    float sx, sy;
    if (!original_scale(img, &sx, &sy))
        return;
    f->box[0] *= sx;
    f->box[1] *= sy;
    f->box[2] *= sx;
    f->box[3] *= sy;
    for (int i = 0; i < 68; i++) {
        f->landmarks[i][0] *= sx;
        f->landmarks[i][1] *= sy;
    }
}

/* The area of f's box as it will be reported (original pixels): the same
 * float products to_original makes, multiplied exactly in double. */
static double reported_area(const lethe_image *img, const lethe_face *f)
{
    float sx, sy, w = f->box[2], h = f->box[3];
    if (original_scale(img, &sx, &sy)) {
        w *= sx;
        h *= sy;
    }
    return (double)w * (double)h;
}

/* Every detection in img: the detector, then the second look and the last
 * resort when they are called for (see lethe.h). */
static int detect_all(lethe_engine *e, const lethe_image *img, nn_pool *pool, face_det **dets,
                      int *n)
{
    int rc = run_detector(e, img->rgb, img->width, img->height, dets, n, pool);
    if (rc == LETHE_OK && !e->opt.single_pass && !has_large_face(img, *dets, *n)) {
        face_det *more = NULL;
        int m = 0;
        rc = detect_second_look(e, img, &more, &m, pool);
        if (rc == LETHE_OK)
            rc = merge_detections(dets, n, more, m, e->opt.max_faces);
        lethe_free(more);
    }
    if (rc == LETHE_OK && *n == 0 && !e->opt.single_pass &&
        e->opt.detector == LETHE_DETECTOR_SSD) {
        /* Last resort: the tiny detector at about the photo's own size
         * finds some faces SSD scores near zero (blurred, tilted, occluded). */
        int side = LETHE_MAX(img->width, img->height);
        int size = LETHE_MIN(LETHE_MAX((side + 16) / 32 * 32, 128), 608);
        lethe_free(*dets);
        *dets = NULL;
        rc = tiny_net_detect(e->tiny, img->rgb, img->width, img->height, size,
                             e->opt.min_score, e->opt.max_faces, dets, n, pool);
    }
    if (rc != LETHE_OK) {
        lethe_free(*dets);
        *dets = NULL;
        *n = 0;
    }
    return rc;
}

/*
 * The faces of dets[0..n), in decoded pixels, with what flags ask for. A
 * face too small, outside the image or that cannot be aligned is dropped.
 * *faces is NULL when none is kept.
 */
static int build_faces(lethe_engine *e, const lethe_image *img, const face_det *dets, int n,
                       unsigned flags, nn_pool *pool, lethe_face **faces, int *count)
{
    lethe_face *out;
    int kept = 0, rc = LETHE_OK;

    *faces = NULL;
    *count = 0;
    if (n == 0)
        return LETHE_OK;
    out = lethe_calloc((size_t)n, sizeof(*out));
    if (!out)
        return LETHE_ERR_NOMEM;
    for (int i = 0; i < n; i++) {
        const face_det *d = &dets[i];
        lethe_face *f = &out[kept];
        if (e->opt.min_face_size > 0 &&
            (d->w < (float)e->opt.min_face_size || d->h < (float)e->opt.min_face_size))
            continue;
        memset(f, 0, sizeof(*f));
        f->box[0] = d->x;
        f->box[1] = d->y;
        f->box[2] = d->w;
        f->box[3] = d->h;
        f->score = d->score;
        if (flags & LETHE_WANT_LANDMARKS) {
            rc = face_landmarks(e, img, d, f, pool);
            if (rc == LETHE_ERR_NO_FACE)
                continue; /* a box entirely outside the image */
            if (rc != LETHE_OK)
                break;
        }
        if (flags & LETHE_WANT_DESCRIPTOR) {
            rc = face_descriptor(e, img, f, pool);
            if (rc == LETHE_ERR_NO_FACE)
                continue;
            if (rc != LETHE_OK)
                break;
        }
        kept++;
    }
    if (rc != LETHE_OK && rc != LETHE_ERR_NO_FACE) {
        lethe_free(out);
        return rc;
    }
    if (kept == 0) {
        lethe_free(out);
        return LETHE_OK;
    }
    *faces = out;
    *count = kept;
    return LETHE_OK;
}

/* Image size for messages: the original pixels. */
static int orig_w(const lethe_image *img)
{
    return img->orig_width > 0 ? img->orig_width : img->width;
}

static int orig_h(const lethe_image *img)
{
    return img->orig_height > 0 ? img->orig_height : img->height;
}

/*
 * Of faces[0..n) (landmarks placed, decoded pixels), describe the largest
 * (see LETHE_LARGEST_FACE) and move it to faces[0]. A face that cannot be
 * aligned is passed over, as lethe_engine_analyze drops it; has_landmarks
 * marks the candidates left. Only the chosen face is described.
 */
static int describe_largest(lethe_engine *e, const lethe_image *img, lethe_face *faces, int n,
                            nn_pool *pool, char *msg, size_t msg_len)
{
    for (;;) {
        int best = -1;
        double best_area = 0;
        for (int i = 0; i < n; i++) {
            double a = reported_area(img, &faces[i]);
            if (faces[i].has_landmarks && (best < 0 || a > best_area)) {
                best = i;
                best_area = a;
            }
        }
        if (best < 0)
            return lethe_fail(msg, msg_len, LETHE_ERR_NO_FACE,
                              "no face found (image of %dx%d pixels)", orig_w(img),
                              orig_h(img));
        int rc = face_descriptor(e, img, &faces[best], pool);
        if (rc == LETHE_ERR_NO_FACE) {
            faces[best].has_landmarks = 0;
            continue;
        }
        if (rc != LETHE_OK)
            return lethe_fail(msg, msg_len, rc, "face analysis failed: %s", lethe_strerror(rc));
        if (best != 0)
            faces[0] = faces[best];
        return LETHE_OK;
    }
}

/* LETHE_CHIP: the whole image is one face chip. */
static int analyze_chip(lethe_engine *e, const lethe_image *img, nn_pool *pool,
                        lethe_face **faces, int *count, char *msg, size_t msg_len)
{
    lethe_face *f = lethe_calloc(1, sizeof(*f));
    if (!f)
        return lethe_fail(msg, msg_len, LETHE_ERR_NOMEM, "out of memory");
    int rc = describe(e, img->rgb, img->width, img->height, f->descriptor, pool);
    if (rc != LETHE_OK) {
        lethe_free(f);
        return lethe_fail(msg, msg_len, rc, "describe failed: %s", lethe_strerror(rc));
    }
    f->box[2] = (float)orig_w(img);
    f->box[3] = (float)orig_h(img);
    f->score = 1;
    f->has_descriptor = 1;
    f->crop_w = img->width;
    f->crop_h = img->height;
    *faces = f;
    *count = 1;
    return LETHE_OK;
}

int engine_analyze(lethe_engine *e, const lethe_image *img, unsigned flags, lethe_face **faces,
                   int *count, char *msg, size_t msg_len)
{
    face_det *dets = NULL;
    lethe_face *out = NULL;
    int n = 0, kept = 0, rc;

    *faces = NULL;
    *count = 0;
    if (msg && msg_len)
        msg[0] = '\0';
    if (!img || !img->rgb || img->width <= 0 || img->height <= 0)
        return lethe_fail(msg, msg_len, LETHE_ERR_ARG, "no image");
    nn_pool *pool = (flags & LETHE_SINGLE_THREAD) ? NULL : e->pool;
    if (flags & LETHE_CHIP)
        return analyze_chip(e, img, pool, faces, count, msg, msg_len);
    rc = load_detect_nets(e, msg, msg_len);
    if (rc != LETHE_OK)
        return rc;
    if (flags & LETHE_LARGEST_FACE)
        flags = LETHE_WANT_LANDMARKS | LETHE_LARGEST_FACE; /* described once chosen */
    if (flags & LETHE_WANT_DESCRIPTOR)
        flags |= LETHE_WANT_LANDMARKS;
    rc = detect_all(e, img, pool, &dets, &n);
    if (rc != LETHE_OK)
        return lethe_fail(msg, msg_len, rc, "face detection failed: %s", lethe_strerror(rc));
    rc = build_faces(e, img, dets, n, flags, pool, &out, &kept);
    lethe_free(dets);
    if (rc != LETHE_OK)
        return lethe_fail(msg, msg_len, rc, "face analysis failed: %s", lethe_strerror(rc));
    if (flags & LETHE_LARGEST_FACE) {
        rc = describe_largest(e, img, out, kept, pool, msg, msg_len);
        if (rc != LETHE_OK) {
            lethe_free(out);
            return rc;
        }
        kept = 1;
    }
    for (int i = 0; i < kept; i++)
        to_original(img, &out[i]);
    *faces = out;
    *count = kept;
    return LETHE_OK;
}

int lethe_engine_analyze(lethe_engine *e, const lethe_image *img, unsigned flags,
                         lethe_face **faces, int *count)
{
    char msg[sizeof(last_failure.msg)];
    int rc = engine_analyze(e, img, flags, faces, count, msg, sizeof(msg));
    if (rc != LETHE_OK)
        engine_fail(e, rc, "%s", msg);
    return rc;
}

int lethe_engine_threads(const lethe_engine *e) { return nn_pool_size(e->pool); }

int lethe_engine_describe_chip(lethe_engine *e, const lethe_image *chip, float *descriptor)
{
    if (!chip || !chip->rgb || chip->width <= 0 || chip->height <= 0)
        return engine_fail(e, LETHE_ERR_ARG, "no image");
    int rc = describe(e, chip->rgb, chip->width, chip->height, descriptor, e->pool);
    if (rc != LETHE_OK)
        return engine_fail(e, rc, "describe failed: %s", lethe_strerror(rc));
    return LETHE_OK;
}

typedef struct chips_job {
    lethe_engine *e;
    const lethe_image *const *chips;
    float *out;
    int *status;
} chips_job;

static void chips_task(void *arg, int i, int worker)
{
    chips_job *j = arg;
    const lethe_image *c = j->chips[i];
    (void)worker;
    if (!c || !c->rgb || c->width <= 0 || c->height <= 0) {
        j->status[i] = LETHE_ERR_ARG;
        return;
    }
    j->status[i] = describe(j->e, c->rgb, c->width, c->height,
                            j->out + (size_t)i * LETHE_DESCRIPTOR_DIM, NULL);
}

int lethe_engine_describe_chips(lethe_engine *e, const lethe_image *const *chips, int n,
                                float *descriptors)
{
    int *status, rc = LETHE_OK;
    if (n <= 0)
        return LETHE_OK;
    status = lethe_calloc((size_t)n, sizeof(int));
    if (!status)
        return engine_fail(e, LETHE_ERR_NOMEM, "out of memory");
    chips_job job = {e, chips, descriptors, status};
    /* One chip per worker: whole networks in parallel beat splitting layers. */
    nn_pool_run(e->pool, n, chips_task, &job);
    for (int i = 0; i < n; i++) {
        if (status[i] != LETHE_OK) {
            rc = engine_fail(e, status[i], "chip %d: %s", i, lethe_strerror(status[i]));
            break;
        }
    }
    lethe_free(status);
    return rc;
}

float lethe_descriptor_distance(const float *a, const float *b)
{
    float s = 0;
    for (int i = 0; i < LETHE_DESCRIPTOR_DIM; i++) {
        float d = a[i] - b[i];
        s += d * d;
    }
    return sqrtf(s);
}

/* Calibrated on LFW View 1 (pairsDevTrain), see docs/model-card.md. */
#define LETHE_SAME_PERSON_THRESHOLD 0.6f

float lethe_descriptor_threshold(void) { return LETHE_SAME_PERSON_THRESHOLD; }
