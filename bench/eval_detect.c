/*
 * eval_detect.c: recall and false positives of both face detectors against
 * dlib's hand-labelled faces (imglib XML: <image file=...><box top left width
 * height/>...</image>), e.g. ../shared/data/dlib-faces/{training,testing}.xml.
 *
 *   eval_detect [--data DIR] [--models DIR] [--min-score S] [--tiny-size N]
 *               [--threads N] [--verbose] [XML...]
 *
 * Matching: detections, best score first, are matched one-to-one to the
 * unmatched truth box they overlap most. dlib's boxes are tight squares
 * around eyebrows-to-chin while the detectors' boxes are larger (forehead,
 * ears), so two rules are reported:
 *   iou40   IoU >= 0.4
 *   centre  each box's centre lies inside the other box (scale-tolerant)
 * A truth box matched is a hit; a detection left unmatched is a false
 * positive (the labels cover every face, small ones included). Three
 * detectors are reported: the SSD pass alone, the tiny one alone, and the
 * whole engine ("lethe": SSD, second look, tiny as last resort).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "face/detect.h"
#include "lethe.h"
#include "util/util.h"

#define MAX_TRUTH 256

typedef struct truth {
    double x, y, w, h;
} truth;

typedef struct tally {
    int truths, hits_iou, hits_centre, dets, fp_iou, fp_centre;
    double ms;
} tally;

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

/* Value of attribute name="..." or name='...' inside tag [p, end), or NULL. */
static const char *attr(const char *p, const char *end, const char *name, char *buf, size_t len)
{
    size_t n = strlen(name);
    for (const char *q = p; q + n + 2 < end; q++) {
        if (strncmp(q, name, n) == 0 && q[n] == '=' && (q[n + 1] == '\'' || q[n + 1] == '"') &&
            (q == p || q[-1] == ' ' || q[-1] == '\t' || q[-1] == '\n')) {
            char quote = q[n + 1];
            const char *v = q + n + 2, *e = memchr(v, quote, (size_t)(end - v));
            if (!e || (size_t)(e - v) >= len)
                return NULL;
            memcpy(buf, v, (size_t)(e - v));
            buf[e - v] = '\0';
            return buf;
        }
    }
    return NULL;
}

static double iou(const truth *a, const face_det *d)
{
    double ix = LETHE_MAX(a->x, (double)d->x), iy = LETHE_MAX(a->y, (double)d->y);
    double ax = LETHE_MIN(a->x + a->w, (double)d->x + d->w);
    double ay = LETHE_MIN(a->y + a->h, (double)d->y + d->h);
    if (ax <= ix || ay <= iy)
        return 0;
    double inter = (ax - ix) * (ay - iy);
    return inter / (a->w * a->h + (double)d->w * d->h - inter);
}

static int inside(double px, double py, double x, double y, double w, double h)
{
    return px >= x && px <= x + w && py >= y && py <= y + h;
}

static int centre_match(const truth *a, const face_det *d)
{
    return inside(a->x + a->w / 2, a->y + a->h / 2, d->x, d->y, d->w, d->h) &&
           inside(d->x + d->w / 2.0, d->y + d->h / 2.0, a->x, a->y, a->w, a->h);
}

/* Greedy one-to-one matching; returns the hits, adds the false positives. */
static int match(const truth *t, int nt, const face_det *d, int nd, int centre_rule, int *fp)
{
    int used[MAX_TRUTH] = {0}, hits = 0;
    for (int i = 0; i < nd; i++) {
        int best = -1;
        double best_iou = -1;
        for (int j = 0; j < nt; j++) {
            if (used[j])
                continue;
            double o = iou(&t[j], &d[i]);
            int ok = centre_rule ? centre_match(&t[j], &d[i]) : o >= 0.4;
            if (ok && o > best_iou) {
                best = j;
                best_iou = o;
            }
        }
        if (best >= 0) {
            used[best] = 1;
            hits++;
        } else
            (*fp)++;
    }
    return hits;
}

static void score_image(const truth *t, int nt, const face_det *d, int nd, tally *s,
                        double ms)
{
    s->truths += nt;
    s->dets += nd;
    s->hits_iou += match(t, nt, d, nd, 0, &s->fp_iou);
    s->hits_centre += match(t, nt, d, nd, 1, &s->fp_centre);
    s->ms += ms;
}

typedef struct options {
    const char *data, *models;
    float min_score;
    int tiny_size, threads, verbose, precision;
} options;

static void add_tally(tally *to, const tally *s)
{
    to->truths += s->truths, to->hits_iou += s->hits_iou;
    to->hits_centre += s->hits_centre, to->dets += s->dets;
    to->fp_iou += s->fp_iou, to->fp_centre += s->fp_centre, to->ms += s->ms;
}

/* The whole engine's detection (second look and last resort included). */
static int engine_detect(lethe_engine *e, const lethe_image *im, face_det **out, int *n)
{
    lethe_face *f = NULL;
    int rc = lethe_engine_analyze(e, im, 0, &f, n);
    *out = NULL;
    if (rc != LETHE_OK || *n == 0)
        return rc;
    *out = lethe_malloc((size_t)*n * sizeof(face_det));
    for (int i = 0; *out && i < *n; i++)
        (*out)[i] = (face_det){f[i].box[0], f[i].box[1], f[i].box[2], f[i].box[3], f[i].score};
    lethe_faces_free(f);
    return *out ? LETHE_OK : LETHE_ERR_NOMEM;
}

static int eval_xml(const char *xml_path, const options *o, const ssd_net *ssd,
                    const tiny_net *tiny, lethe_engine *engine, nn_pool *pool, tally *ts,
                    tally *tt, tally *te, int *images)
{
    uint8_t *text;
    size_t len;
    char msg[256], buf[1024], path[2048];

    if (lethe_read_file(xml_path, (size_t)64 << 20, &text, &len, msg, sizeof(msg)) != LETHE_OK) {
        fprintf(stderr, "eval_detect: %s\n", msg);
        return -1;
    }
    const char *p = (const char *)text, *end = p + len;
    for (;;) {
        const char *img = strstr(p, "<image ");
        if (!img || img >= end)
            break;
        const char *tag_end = strchr(img, '>');
        const char *close = strstr(img, "</image>");
        if (!tag_end || !close)
            break;
        p = close + 8;
        if (!attr(img, tag_end, "file", buf, sizeof(buf)))
            continue;
        truth t[MAX_TRUTH];
        int nt = 0;
        for (const char *b = strstr(tag_end, "<box "); b && b < close && nt < MAX_TRUTH;
             b = strstr(b + 1, "<box ")) {
            const char *be = strchr(b, '>');
            char v[4][32];
            if (!be || !attr(b, be, "top", v[0], 32) || !attr(b, be, "left", v[1], 32) ||
                !attr(b, be, "width", v[2], 32) || !attr(b, be, "height", v[3], 32))
                continue;
            char ig[8];
            if (attr(b, be, "ignore", ig, sizeof(ig)) && atoi(ig))
                continue;
            t[nt++] = (truth){atof(v[1]), atof(v[0]), atof(v[2]), atof(v[3])};
        }
        snprintf(path, sizeof(path), "%s/%s", o->data, buf);
        lethe_image *im = NULL;
        if (lethe_image_load(path, NULL, &im, msg, sizeof(msg)) != LETHE_OK) {
            fprintf(stderr, "eval_detect: %s: %s\n", path, msg);
            continue;
        }
        face_det *ds = NULL, *dt = NULL;
        int ns = 0, nti = 0;
        double t0 = now_ms();
        int rc = ssd_net_detect(ssd, im->rgb, im->width, im->height, o->min_score, 100, &ds,
                                &ns, pool);
        double t1 = now_ms();
        if (rc == LETHE_OK)
            rc = tiny_net_detect(tiny, im->rgb, im->width, im->height, o->tiny_size, o->min_score,
                                 0, &dt, &nti, pool);
        double t2 = now_ms();
        face_det *de = NULL;
        int ne = 0;
        if (rc == LETHE_OK)
            rc = engine_detect(engine, im, &de, &ne);
        double t3 = now_ms();
        if (rc != LETHE_OK) {
            fprintf(stderr, "eval_detect: %s: %s\n", path, lethe_strerror(rc));
        } else {
            tally s1 = {0}, s2 = {0}, s3 = {0};
            score_image(t, nt, ds, ns, &s1, t1 - t0);
            score_image(t, nt, dt, nti, &s2, t2 - t1);
            score_image(t, nt, de, ne, &s3, t3 - t2);
            add_tally(te, &s3);
            if (o->verbose)
                printf("%-28s %4dx%-4d truth %2d | ssd %2d det, %2d/%2d hit | tiny %2d det, "
                       "%2d/%2d hit (iou40/centre)\n",
                       buf, im->width, im->height, nt, ns, s1.hits_iou, s1.hits_centre, nti,
                       s2.hits_iou, s2.hits_centre);
            add_tally(ts, &s1);
            add_tally(tt, &s2);
            (*images)++;
        }
        lethe_free(ds);
        lethe_free(dt);
        lethe_free(de);
        lethe_image_free(im);
    }
    lethe_free(text);
    return 0;
}

static void report(const char *name, const tally *s, int images)
{
    printf("%-10s faces %3d  detections %3d  recall iou40 %5.1f%% (%d)  centre %5.1f%% (%d)  "
           "FP iou40 %d  centre %d  %.1f ms/image\n",
           name, s->truths, s->dets, s->truths ? 100.0 * s->hits_iou / s->truths : 0,
           s->hits_iou, s->truths ? 100.0 * s->hits_centre / s->truths : 0, s->hits_centre,
           s->fp_iou, s->fp_centre, images ? s->ms / images : 0);
}

int main(int argc, char **argv)
{
    options o = {"../shared/data/dlib-faces", NULL, 0.5f, 416, 0, 0, LETHE_PRECISION_DEFAULT};
    const char *xmls[16];
    int nxml = 0;
    char msg[256];

    o.models = getenv("LETHE_MODELS") ? getenv("LETHE_MODELS") : "models";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--data") == 0 && i + 1 < argc)
            o.data = argv[++i];
        else if (strcmp(argv[i], "--models") == 0 && i + 1 < argc)
            o.models = argv[++i];
        else if (strcmp(argv[i], "--min-score") == 0 && i + 1 < argc)
            o.min_score = (float)atof(argv[++i]);
        else if (strcmp(argv[i], "--tiny-size") == 0 && i + 1 < argc)
            o.tiny_size = atoi(argv[++i]);
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            o.threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--verbose") == 0)
            o.verbose = 1;
        else if (strcmp(argv[i], "--int8") == 0)
            o.precision = LETHE_PRECISION_INT8;
        else if (argv[i][0] != '-' && nxml < 16)
            xmls[nxml++] = argv[i];
        else {
            fprintf(stderr, "usage: eval_detect [--data DIR] [--models DIR] [--min-score S] "
                            "[--tiny-size N] [--threads N] [--int8] [--verbose] [XML...]\n");
            return 2;
        }
    }

    ssd_net *ssd = NULL;
    tiny_net *tiny = NULL;
    nn_pool *pool = NULL;
    if (ssd_net_load_precision(o.models, o.precision, &ssd, msg, sizeof(msg)) != LETHE_OK ||
        tiny_net_load(o.models, &tiny, msg, sizeof(msg)) != LETHE_OK) {
        fprintf(stderr, "eval_detect: %s\n", msg);
        ssd_net_free(ssd);
        return 1;
    }
    if (nn_pool_create(&pool, o.threads) != 0)
        pool = NULL;

    static char defaults[2][1024];
    if (nxml == 0) {
        snprintf(defaults[0], sizeof(defaults[0]), "%s/training.xml", o.data);
        snprintf(defaults[1], sizeof(defaults[1]), "%s/testing.xml", o.data);
        xmls[nxml++] = defaults[0];
        xmls[nxml++] = defaults[1];
    }
    lethe_engine *engine = NULL;
    lethe_engine_options eo;
    lethe_engine_options_init(&eo);
    eo.model_dir = o.models;
    eo.min_score = o.min_score;
    eo.threads = o.threads;
    eo.precision = o.precision;
    if (lethe_engine_open(&engine, &eo) != LETHE_OK) {
        fprintf(stderr, "eval_detect: %s\n", lethe_engine_errmsg(engine));
        return 1;
    }
    tally ts = {0}, tt = {0}, te = {0};
    int images = 0, rc = 0;
    for (int i = 0; i < nxml; i++)
        if (eval_xml(xmls[i], &o, ssd, tiny, engine, pool, &ts, &tt, &te, &images) != 0)
            rc = 1;

    printf("dlib faces: %d images, min score %.2f, matching one-to-one by IoU >= 0.4 (iou40) "
           "or mutual centre containment (centre); %s kernels, %d threads\n",
           images, o.min_score, nn_isa_name(nn_isa_current()), nn_pool_size(pool));
    report("ssd", &ts, images);
    char name[32];
    snprintf(name, sizeof(name), "tiny@%d", o.tiny_size);
    report(name, &tt, images);
    report("lethe", &te, images);
    /* a photo with no human face: every detection is a false positive */
    char dogs[1200];
    snprintf(dogs, sizeof(dogs), "%s/dogs.jpg", o.data);
    lethe_image *im = NULL;
    if (lethe_image_load(dogs, NULL, &im, msg, sizeof(msg)) == LETHE_OK) {
        face_det *d = NULL;
        int ns = 0, ne = 0;
        ssd_net_detect(ssd, im->rgb, im->width, im->height, o.min_score, 100, &d, &ns, pool);
        lethe_free(d);
        d = NULL;
        engine_detect(engine, im, &d, &ne);
        lethe_free(d);
        printf("dogs.jpg (no human face): ssd %d detections, lethe %d\n", ns, ne);
        lethe_image_free(im);
    }
    lethe_engine_close(engine);

    nn_pool_destroy(pool);
    ssd_net_free(ssd);
    tiny_net_free(tiny);
    return rc;
}
