/*
 * tiny.c: face-api.js's tiny face detector (see detect.h), a Tiny YOLO v2
 * with separable convolutions (TinyYolov2Base.runMobilenet with
 * isFirstLayerConv2d, filter sizes 3, 16, 32, 64, 128, 256, 512):
 *
 *   x = (input - meanRgb) / 255                              S x S x 3
 *   conv0: 3x3 'valid' conv + bias, leaky ReLU (0.1)         (S-2)^2 x 16
 *   maxpool 2x2 s2 'same'
 *   conv1..conv5: separable (depthwise 3x3 'same', pointwise 1x1) + bias,
 *     leaky; a 2x2 s2 max pool after conv1..conv4, a 2x2 s1 one after conv5
 *   conv8: 1x1 conv + bias -> (S/32)^2 cells x 5 anchors x (x, y, w, h, score)
 *
 * Boxes are decoded YOLO-style (sigmoid offsets in the cell, exp sizes times
 * the anchor) in JavaScript doubles, as TinyYolov2Base.extractBoxes does.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "face/detect.h"
#include "face/prep.h"
#include "model/model.h"
#include "util/util.h"

#define TINY_SEPARABLE 5
#define TINY_OUT_CH (TINY_NUM_ANCHORS * TINY_BOX_ENCODING)

const double tiny_anchors[TINY_NUM_ANCHORS][2] = {
    {1.603231, 2.094468}, {6.041143, 7.080126}, {2.882459, 3.518061},
    {4.266906, 5.178857}, {9.041765, 10.66308},
};

const float tiny_mean_rgb[3] = {117.001f, 114.697f, 97.404f};

/* Channels: input, conv0, conv1..conv5. */
static const int tiny_channels[TINY_SEPARABLE + 2] = {3, 16, 32, 64, 128, 256, 512};

struct tiny_net {
    nn_conv conv0;                 /* conv0/filters, bias: 3x3 valid, leaky */
    nn_dwconv dw[TINY_SEPARABLE];  /* convN/depthwise_filter, no bias */
    nn_conv pw[TINY_SEPARABLE];    /* convN/pointwise_filter + convN/bias, leaky */
    nn_conv conv8;                 /* conv8/filters, bias: 1x1, no activation */
};

/* The shape walk of the network for an input side: side of the tensor after
 * each stage. Used to size buffers and by forward. */
typedef struct tiny_plan {
    int side0;                     /* after conv0 */
    int side[TINY_SEPARABLE];      /* input side of separable layer i */
    int cells;                     /* output side */
    size_t max_floats;             /* largest intermediate tensor */
} tiny_plan;

static void make_plan(int size, tiny_plan *p)
{
    size_t m;
    int s = nn_out_size(size, 3, 1, NN_PAD_VALID);

    p->side0 = s;
    m = (size_t)s * s * tiny_channels[1];
    for (int i = 0; i < TINY_SEPARABLE; i++) {
        s = nn_out_size(s, 2, 2, NN_PAD_SAME); /* the max pool before conv i+1 */
        p->side[i] = s;
        size_t t = (size_t)s * s * tiny_channels[i + 2];
        size_t d = (size_t)s * s * tiny_channels[i + 1];
        if (t > m)
            m = t;
        if (d > m)
            m = d;
    }
    p->cells = nn_out_size(s, 2, 1, NN_PAD_SAME);
    p->max_floats = m;
}

int tiny_output_cells(int input_size)
{
    tiny_plan p;
    if (input_size < 32 || input_size > TINY_MAX_INPUT_SIZE || input_size % 32 != 0)
        return 0;
    make_plan(input_size, &p);
    return p.cells;
}

/* ------------------------------------------------------------------ */
/* Loading                                                              */
/* ------------------------------------------------------------------ */

static int load_conv(const lethe_weights *w, nn_conv *c, const char *prefix,
                     const char *weights_name, int k, int cin, int cout, nn_pad pad, nn_act act,
                     char *msg, size_t msg_len)
{
    char name[96];
    const float *wt, *bias;

    snprintf(name, sizeof(name), "%s/%s", prefix, weights_name);
    wt = lethe_weights_expect(w, name, 4, (const int[]){k, k, cin, cout}, msg, msg_len);
    if (!wt)
        return LETHE_ERR_MODEL;
    snprintf(name, sizeof(name), "%s/bias", prefix);
    bias = lethe_weights_expect(w, name, 1, (const int[]){cout}, msg, msg_len);
    if (!bias)
        return LETHE_ERR_MODEL;
    if (nn_conv_init(c, k, k, cin, cout, 1, pad, act, wt, NULL, bias) != 0)
        return lethe_fail(msg, msg_len, LETHE_ERR_NOMEM, "tiny: no memory for %s", prefix);
    return LETHE_OK;
}

static int load_layers(tiny_net *net, const lethe_weights *w, char *msg, size_t msg_len)
{
    char prefix[32], name[96];
    int rc;

    rc = load_conv(w, &net->conv0, "conv0", "filters", 3, tiny_channels[0], tiny_channels[1],
                   NN_PAD_VALID, NN_ACT_LEAKY, msg, msg_len);
    if (rc)
        return rc;
    for (int i = 0; i < TINY_SEPARABLE; i++) {
        int cin = tiny_channels[i + 1], cout = tiny_channels[i + 2];
        snprintf(prefix, sizeof(prefix), "conv%d", i + 1);
        snprintf(name, sizeof(name), "%s/depthwise_filter", prefix);
        const float *dw = lethe_weights_expect(w, name, 4, (const int[]){3, 3, cin, 1}, msg,
                                               msg_len);
        if (!dw)
            return LETHE_ERR_MODEL;
        /* tf.pad by 1 then a 'valid' 3x3 stride-1 conv is 'same' padding. */
        if (nn_dwconv_init(&net->dw[i], 3, cin, 1, NN_PAD_SAME, NN_ACT_NONE, dw, NULL, NULL))
            return lethe_fail(msg, msg_len, LETHE_ERR_NOMEM, "tiny: no memory");
        rc = load_conv(w, &net->pw[i], prefix, "pointwise_filter", 1, cin, cout, NN_PAD_SAME,
                       NN_ACT_LEAKY, msg, msg_len);
        if (rc)
            return rc;
    }
    return load_conv(w, &net->conv8, "conv8", "filters", 1, tiny_channels[TINY_SEPARABLE + 1],
                     TINY_OUT_CH, NN_PAD_VALID, NN_ACT_NONE, msg, msg_len);
}

int tiny_net_load(const char *model_dir, tiny_net **out, char *msg, size_t msg_len)
{
    lethe_weights *w = NULL;
    tiny_net *net;
    int rc;

    if (!out)
        return lethe_fail(msg, msg_len, LETHE_ERR_ARG, "tiny_net_load: out is NULL");
    *out = NULL;
    if (!model_dir)
        return lethe_fail(msg, msg_len, LETHE_ERR_ARG, "tiny_net_load: no model folder");
    net = lethe_calloc(1, sizeof(*net));
    if (!net)
        return lethe_fail(msg, msg_len, LETHE_ERR_NOMEM, "tiny: no memory");
    rc = lethe_weights_load(model_dir, "tiny_face_detector_model", 1, &w, msg, msg_len);
    if (rc == LETHE_OK)
        rc = load_layers(net, w, msg, msg_len);
    lethe_weights_free(w);
    if (rc != LETHE_OK) {
        tiny_net_free(net);
        return rc;
    }
    nn_init();
    *out = net;
    return LETHE_OK;
}

void tiny_net_free(tiny_net *net)
{
    if (!net)
        return;
    nn_conv_free(&net->conv0);
    for (int i = 0; i < TINY_SEPARABLE; i++) {
        nn_dwconv_free(&net->dw[i]);
        nn_conv_free(&net->pw[i]);
    }
    nn_conv_free(&net->conv8);
    lethe_free(net);
}

/* ------------------------------------------------------------------ */
/* Forward                                                              */
/* ------------------------------------------------------------------ */

static size_t max_size(size_t a, size_t b)
{
    return a > b ? a : b;
}

int tiny_net_forward(const tiny_net *net, const float *input, int size, float *out,
                     nn_pool *pool)
{
    tiny_plan p;
    size_t scratch_bytes, buf_bytes;
    float *a, *b;
    void *scratch = NULL;

    if (!tiny_output_cells(size))
        return LETHE_ERR_ARG;
    make_plan(size, &p);

    scratch_bytes = nn_conv_scratch_size(&net->conv0, size, size, pool);
    for (int i = 0; i < TINY_SEPARABLE; i++)
        scratch_bytes = max_size(scratch_bytes,
                                 nn_conv_scratch_size(&net->pw[i], p.side[i], p.side[i], pool));
    scratch_bytes = max_size(scratch_bytes,
                             nn_conv_scratch_size(&net->conv8, p.cells, p.cells, pool));
    buf_bytes = (p.max_floats * sizeof(float) + 63) & ~(size_t)63;
    a = lethe_malloc_aligned(buf_bytes);
    b = lethe_malloc_aligned(buf_bytes);
    if (scratch_bytes)
        scratch = lethe_malloc_aligned(scratch_bytes);
    if (!a || !b || (scratch_bytes && !scratch)) {
        lethe_free_aligned(a);
        lethe_free_aligned(b);
        lethe_free_aligned(scratch);
        return LETHE_ERR_NOMEM;
    }

    int s = p.side0;
    nn_conv_forward(&net->conv0, input, size, size, a, NULL, scratch, pool);
    for (int i = 0; i < TINY_SEPARABLE; i++) {
        /* a holds the previous layer's output (side s, channels[i + 1]). */
        nn_maxpool(a, s, s, tiny_channels[i + 1], 2, 2, NN_PAD_SAME, b);
        s = p.side[i];
        nn_dwconv_forward(&net->dw[i], b, s, s, a, pool);
        nn_conv_forward(&net->pw[i], a, s, s, b, NULL, scratch, pool);
        float *t = a;
        a = b;
        b = t;
    }
    nn_maxpool(a, s, s, tiny_channels[TINY_SEPARABLE + 1], 2, 1, NN_PAD_SAME, b);
    nn_conv_forward(&net->conv8, b, p.cells, p.cells, out, NULL, scratch, pool);

    lethe_free_aligned(a);
    lethe_free_aligned(b);
    lethe_free_aligned(scratch);
    return LETHE_OK;
}

/* ------------------------------------------------------------------ */
/* Detection                                                            */
/* ------------------------------------------------------------------ */

static double js_sigmoid(double x)
{
    return 1.0 / (1.0 + exp(-x));
}

int tiny_net_detect(const tiny_net *net, const uint8_t *rgb, int w, int h, int input_size,
                    float min_score, int max_results, face_det **out, int *n, nn_pool *pool)
{
    float *input = NULL, *raw = NULL;
    det_box *boxes = NULL, *scaled = NULL;
    double *scores = NULL;
    int *picked = NULL;
    int rc, cells, ncand = 0, npicked;
    size_t ncells;

    rc = detect_check_image(rgb, w, h, out, n);
    if (rc != LETHE_OK || !net)
        return rc != LETHE_OK ? rc : LETHE_ERR_ARG;
    if (input_size <= 0)
        input_size = TINY_DEFAULT_INPUT_SIZE;
    cells = tiny_output_cells(input_size);
    if (!cells)
        return LETHE_ERR_ARG;
    if (!(min_score > 0.0f))
        min_score = TINY_DEFAULT_MIN_SCORE;
    if (!(min_score < 1.0f))
        return LETHE_ERR_ARG;

    ncells = (size_t)cells * cells * TINY_NUM_ANCHORS;
    input = lethe_malloc_aligned((size_t)input_size * input_size * 3 * sizeof(float));
    raw = lethe_malloc_aligned(ncells * TINY_BOX_ENCODING * sizeof(float));
    boxes = lethe_malloc(ncells * sizeof(*boxes));
    scaled = lethe_malloc(ncells * sizeof(*scaled));
    scores = lethe_malloc(ncells * sizeof(*scores));
    picked = lethe_malloc(ncells * sizeof(*picked));
    rc = LETHE_ERR_NOMEM;
    if (!input || !raw || !boxes || !scaled || !scores || !picked)
        goto out_free;

    detect_prepare_input(rgb, w, h, input_size, input);
    prep_normalize(input, input_size, input_size, tiny_mean_rgb, 255.0f);
    rc = tiny_net_forward(net, input, input_size, raw, pool);
    if (rc != LETHE_OK)
        goto out_free;

    /* TinyYolov2Base.extractBoxes: the correction factors undo the padding
     * to a square (computed from the rounded reshaped dimensions). */
    int rw, rh;
    detect_reshaped_dims(w, h, input_size, &rw, &rh);
    double in_side = (double)LETHE_MAX(rw, rh);
    double corr_x = in_side / (double)rw, corr_y = in_side / (double)rh;
    double num_cells = (double)cells, threshold = detect_threshold(min_score);
    for (int row = 0; row < cells; row++) {
        for (int col = 0; col < cells; col++) {
            for (int an = 0; an < TINY_NUM_ANCHORS; an++) {
                const float *e =
                    raw + (((size_t)row * cells + col) * TINY_NUM_ANCHORS + an) * TINY_BOX_ENCODING;
                double score = js_sigmoid(e[4]);
                if (!(score > threshold))
                    continue;
                double ct_x = ((col + js_sigmoid(e[0])) / num_cells) * corr_x;
                double ct_y = ((row + js_sigmoid(e[1])) / num_cells) * corr_y;
                double bw = ((exp(e[2]) * tiny_anchors[an][0]) / num_cells) * corr_x;
                double bh = ((exp(e[3]) * tiny_anchors[an][1]) / num_cells) * corr_y;
                double x = ct_x - bw / 2;
                double y = ct_y - bh / 2;
                /* new BoundingBox(x, y, x + w, y + h): width = right - left */
                det_box *bx = &boxes[ncand];
                bx->x = x;
                bx->y = y;
                bx->w = (x + bw) - x;
                bx->h = (y + bh) - y;
                scores[ncand] = score;
                /* NMS runs on box.rescale(inputSize). */
                scaled[ncand].x = bx->x * input_size;
                scaled[ncand].y = bx->y * input_size;
                scaled[ncand].w = bx->w * input_size;
                scaled[ncand].h = bx->h * input_size;
                ncand++;
            }
        }
    }

    rc = LETHE_ERR_NOMEM;
    npicked = det_nms(scaled, scores, ncand, TINY_IOU_THRESHOLD, picked);
    if (npicked < 0)
        goto out_free;
    if (max_results > 0 && npicked > max_results)
        npicked = max_results;
    if (npicked > 0) {
        face_det *dets = lethe_malloc((size_t)npicked * sizeof(*dets));
        if (!dets)
            goto out_free;
        double iw = (double)w, ih = (double)h;
        for (int i = 0; i < npicked; i++) {
            const det_box *bx = &boxes[picked[i]];
            /* ObjectDetection rescales to the image, its relativeBox rescales
             * by (1 / w, 1 / h), and FaceDetection rescales again. */
            dets[i].x = (float)(((bx->x * iw) * (1 / iw)) * iw);
            dets[i].y = (float)(((bx->y * ih) * (1 / ih)) * ih);
            dets[i].w = (float)(((bx->w * iw) * (1 / iw)) * iw);
            dets[i].h = (float)(((bx->h * ih) * (1 / ih)) * ih);
            dets[i].score = (float)scores[picked[i]];
        }
        *out = dets;
        *n = npicked;
    }
    rc = LETHE_OK;

out_free:
    lethe_free_aligned(input);
    lethe_free_aligned(raw);
    lethe_free(boxes);
    lethe_free(scaled);
    lethe_free(scores);
    lethe_free(picked);
    return rc;
}
