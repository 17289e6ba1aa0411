/*
 * nms.c: what both face detectors share: input preparation straight from
 * RGB8 pixels, face-api.js's two non-maximum suppressions, and the mapping of
 * network boxes back to image pixels.
 *
 * face-api.js does its post-processing in JavaScript doubles on the float32
 * tensor values; so does this file, in the same order, so that the kept boxes
 * and their coordinates are the ones face-api.js reports.
 */
#include "face/detect.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

/* JavaScript's Math.max / Math.min: NaN if either operand is NaN. */
static double js_max(double a, double b)
{
    if (isnan(a) || isnan(b))
        return NAN;
    return a > b ? a : b;
}

static double js_min(double a, double b)
{
    if (isnan(a) || isnan(b))
        return NAN;
    return a < b ? a : b;
}

double detect_js_round(double x)
{
    double r = floor(x);
    if (x - r >= 0.5)
        r += 1.0;
    return r;
}

double detect_threshold(float t)
{
    /* A caller's 0.3f means the 0.3 face-api.js compares against: take the
     * 7-decimal value if it is the same float. */
    double d = detect_js_round((double)t * 1e7) / 1e7;
    return (float)d == t ? d : (double)t;
}

void detect_reshaped_dims(int w, int h, int input_size, int *rw, int *rh)
{
    double scale = (double)input_size / (double)(w > h ? w : h);
    *rw = (int)detect_js_round((double)w * scale);
    *rh = (int)detect_js_round((double)h * scale);
}

int detect_check_image(const uint8_t *rgb, int w, int h, face_det **out, int *n)
{
    if (out)
        *out = NULL;
    if (n)
        *n = 0;
    if (!rgb || !out || !n || w <= 0 || h <= 0 || w > DETECT_MAX_SIDE || h > DETECT_MAX_SIDE)
        return LETHE_ERR_ARG;
    return LETHE_OK;
}

/* Pixel (x, y, c) of the zero-padded square: the image at the top left. */
static inline float padded_px(const uint8_t *rgb, int w, int h, int x, int y, int c)
{
    if (x >= w || y >= h)
        return 0.0f;
    return (float)rgb[((size_t)y * (size_t)w + (size_t)x) * 3 + (size_t)c];
}

void detect_prepare_input(const uint8_t *rgb, int w, int h, int size, float *out)
{
    int side = w > h ? w : h;

    if (side == size) {
        /* toBatchTensor skips the resize: just the padded copy. */
        for (int y = 0; y < size; y++)
            for (int x = 0; x < size; x++)
                for (int c = 0; c < 3; c++)
                    out[((size_t)y * size + x) * 3 + c] = padded_px(rgb, w, h, x, y, c);
        return;
    }

    /* The arithmetic of prep_resize_bilinear (tfjs resizeBilinear,
     * alignCorners = false, no half-pixel centres), float32 throughout, on
     * the virtual padded square. Source rows and columns only depend on the
     * output index, so they are computed once: the columns a chunk at a
     * time into tables (the expressions, and so the values, unchanged). */
    enum { CHUNK = 256 };
    int cx0[CHUNK], cx1[CHUNK];
    float cfx[CHUNK];
    const size_t stride = (size_t)w * 3;
    float ratio = (float)side / (float)size;
    for (int xa = 0; xa < size; xa += CHUNK) {
        int xb = LETHE_MIN(size, xa + CHUNK);
        int inside = xa; /* columns [xa, inside) have both taps in the image */
        for (int x = xa; x < xb; x++) {
            float sx = ratio * (float)x;
            int x0 = (int)floorf(sx);
            cfx[x - xa] = sx - (float)x0;
            int x1 = (int)ceilf(sx);
            if (x1 > side - 1)
                x1 = side - 1;
            if (x0 > side - 1)
                x0 = side - 1;
            /* -1: a padding column (zeros) */
            cx0[x - xa] = x0 < w ? x0 * 3 : -1;
            cx1[x - xa] = x1 < w ? x1 * 3 : -1;
            if (x1 < w)
                inside = x + 1; /* taps only move right with x */
        }
        for (int y = 0; y < size; y++) {
            float sy = ratio * (float)y;
            int y0 = (int)floorf(sy);
            float fy = sy - (float)y0;
            int y1 = (int)ceilf(sy);
            if (y1 > side - 1)
                y1 = side - 1;
            if (y0 > side - 1)
                y0 = side - 1;
            const uint8_t *r0 = y0 < h ? rgb + (size_t)y0 * stride : NULL;
            const uint8_t *r1 = y1 < h ? rgb + (size_t)y1 * stride : NULL;
            float *o = out + ((size_t)y * size + xa) * 3;
            int x = xa;
            if (r0 && r1) /* the common case: no padding to test for */
                for (; x < inside; x++, o += 3) {
                    const uint8_t *t0 = r0 + cx0[x - xa], *t1 = r0 + cx1[x - xa];
                    const uint8_t *b0 = r1 + cx0[x - xa], *b1 = r1 + cx1[x - xa];
                    float fx = cfx[x - xa];
                    for (int c = 0; c < 3; c++) {
                        float tl = (float)t0[c], tr = (float)t1[c];
                        float bl = (float)b0[c], br = (float)b1[c];
                        float top = tl + (tr - tl) * fx;
                        float bottom = bl + (br - bl) * fx;
                        o[c] = top + (bottom - top) * fy;
                    }
                }
            for (; x < xb; x++, o += 3) {
                int i0 = cx0[x - xa], i1 = cx1[x - xa];
                float fx = cfx[x - xa];
                for (int c = 0; c < 3; c++) {
                    float tl = r0 && i0 >= 0 ? (float)r0[i0 + c] : 0.0f;
                    float tr = r0 && i1 >= 0 ? (float)r0[i1 + c] : 0.0f;
                    float bl = r1 && i0 >= 0 ? (float)r1[i0 + c] : 0.0f;
                    float br = r1 && i1 >= 0 ? (float)r1[i1 + c] : 0.0f;
                    float top = tl + (tr - tl) * fx;
                    float bottom = bl + (br - bl) * fx;
                    o[c] = top + (bottom - top) * fy;
                }
            }
        }
    }
}

/* ------------------------------------------------------------------ */
/* SSD: ssdMobilenetv1/nonMaxSuppression.ts                            */
/* ------------------------------------------------------------------ */

double ssd_box_iou(const float *a, const float *b)
{
    double ymin_i = js_min(a[0], a[2]), xmin_i = js_min(a[1], a[3]);
    double ymax_i = js_max(a[0], a[2]), xmax_i = js_max(a[1], a[3]);
    double ymin_j = js_min(b[0], b[2]), xmin_j = js_min(b[1], b[3]);
    double ymax_j = js_max(b[0], b[2]), xmax_j = js_max(b[1], b[3]);
    double area_i = (ymax_i - ymin_i) * (xmax_i - xmin_i);
    double area_j = (ymax_j - ymin_j) * (xmax_j - xmin_j);
    if (area_i <= 0 || area_j <= 0)
        return 0.0;
    double iymin = js_max(ymin_i, ymin_j), ixmin = js_max(xmin_i, xmin_j);
    double iymax = js_min(ymax_i, ymax_j), ixmax = js_min(xmax_i, xmax_j);
    double inter = js_max(iymax - iymin, 0.0) * js_max(ixmax - ixmin, 0.0);
    return inter / (area_i + area_j - inter);
}

typedef struct scored {
    double score;
    int index;
} scored;

/* Best first; equal scores keep index order (JavaScript's sort is stable). */
static int cmp_desc_stable(const void *pa, const void *pb)
{
    const scored *a = pa, *b = pb;
    if (a->score != b->score)
        return a->score > b->score ? -1 : 1;
    return (a->index > b->index) - (a->index < b->index);
}

int ssd_nms(const float *boxes, const float *scores, int n, int max_out, double iou_threshold,
            double score_threshold, int *selected)
{
    int out_size = LETHE_MIN(max_out, n);
    int ncand = 0, nsel = 0;
    scored *cand;

    if (n <= 0 || out_size <= 0)
        return 0;
    cand = lethe_malloc((size_t)n * sizeof(*cand));
    if (!cand)
        return -1;
    for (int i = 0; i < n; i++) {
        if ((double)scores[i] > score_threshold) {
            cand[ncand].score = scores[i];
            cand[ncand].index = i;
            ncand++;
        }
    }
    qsort(cand, (size_t)ncand, sizeof(*cand), cmp_desc_stable);

    for (int k = 0; k < ncand && nsel < out_size; k++) {
        const float *box = boxes + (size_t)cand[k].index * 4;
        int suppressed = 0;
        /* face-api multiplies the score by 0 when an IoU is above the
         * threshold (or NaN) and keeps the box only if the score is
         * unchanged; IoU exactly 0 is skipped. */
        for (int j = nsel - 1; j >= 0; j--) {
            double iou = ssd_box_iou(box, boxes + (size_t)selected[j] * 4);
            if (iou == 0.0)
                continue;
            if (!(iou <= iou_threshold)) {
                suppressed = 1;
                break;
            }
        }
        if (!suppressed)
            selected[nsel++] = cand[k].index;
    }
    lethe_free(cand);
    return nsel;
}

int ssd_map_box(const float box[4], float score, int w, int h, face_det *out)
{
    int rw, rh;
    detect_reshaped_dims(w, h, SSD_INPUT_SIZE, &rw, &rh);
    double pad_x = (double)SSD_INPUT_SIZE / (double)rw;
    double pad_y = (double)SSD_INPUT_SIZE / (double)rh;
    double top = js_max(0.0, box[0]) * pad_y;
    double bottom = js_min(1.0, box[2]) * pad_y;
    double left = js_max(0.0, box[1]) * pad_x;
    double right = js_min(1.0, box[3]) * pad_x;
    double rel_w = right - left, rel_h = bottom - top;

    /* new Rect(left, top, width, height) throws on negative sizes. */
    if (!(rel_w >= 0) || !(rel_h >= 0))
        return 0;
    /* FaceDetection: Box(rect).rescale(image dimensions). */
    out->x = (float)(left * (double)w);
    out->y = (float)(top * (double)h);
    out->w = (float)(rel_w * (double)w);
    out->h = (float)(rel_h * (double)h);
    out->score = score;
    return 1;
}

/* ------------------------------------------------------------------ */
/* Tiny detector: ops/iou.ts and ops/nonMaxSuppression.ts              */
/* ------------------------------------------------------------------ */

double det_box_iou(const det_box *a, const det_box *b)
{
    double w = js_max(0.0, js_min(a->x + a->w, b->x + b->w) - js_max(a->x, b->x));
    double h = js_max(0.0, js_min(a->y + a->h, b->y + b->h) - js_max(a->y, b->y));
    double inter = w * h;
    return inter / (a->w * a->h + b->w * b->h - inter);
}

/* Best first; among equal scores the later index first (face-api sorts
 * ascending, stably, and pops from the end). */
static int cmp_desc_later_first(const void *pa, const void *pb)
{
    const scored *a = pa, *b = pb;
    if (a->score != b->score)
        return a->score > b->score ? -1 : 1;
    return (a->index < b->index) - (a->index > b->index);
}

int det_nms(const det_box *boxes, const double *scores, int n, double iou_threshold,
            int *picked)
{
    scored *order;
    unsigned char *alive;
    int npicked = 0;

    if (n <= 0)
        return 0;
    order = lethe_malloc((size_t)n * sizeof(*order));
    alive = lethe_malloc((size_t)n);
    if (!order || !alive) {
        lethe_free(order);
        lethe_free(alive);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        order[i].score = scores[i];
        order[i].index = i;
        alive[i] = 1;
    }
    qsort(order, (size_t)n, sizeof(*order), cmp_desc_later_first);

    for (int k = 0; k < n; k++) {
        if (!alive[k])
            continue;
        const det_box *cur = &boxes[order[k].index];
        picked[npicked++] = order[k].index;
        for (int m = k + 1; m < n; m++) {
            if (alive[m] && !(det_box_iou(cur, &boxes[order[m].index]) <= iou_threshold))
                alive[m] = 0;
        }
    }
    lethe_free(order);
    lethe_free(alive);
    return npicked;
}
