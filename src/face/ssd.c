/*
 * ssd.c: face-api.js's SSD MobileNet v1 face detector (see detect.h).
 *
 * The graph, from @vladmandic/face-api src/ssdMobilenetv1:
 *   x = input / 127.5 - 1                                   512x512x3
 *   MobileNet v1: conv 3x3 s2 + offset, ReLU6               256x256x32
 *     13 pairs: depthwise 3x3 (stride 2 at pairs 2, 4, 6, 12) + batch norm,
 *     ReLU6; pointwise 1x1 + offset, ReLU6. conv11 = pair 11 (32x32x512),
 *     out = pair 13 (16x16x1024). All 'same' padding.
 *   Prediction: 8 more conv + offset + ReLU6 layers, 1x1 s1 and 3x3 s2 in
 *     turn (16 -> 8 -> 4 -> 2 -> 1), and six box predictors (1x1 conv + bias)
 *     on conv11, out, and the 3x3 layers' outputs: 3 anchors per cell on the
 *     first map, 6 on the others, 5118 in all.
 *   Output: box encodings decoded against the anchors with variances
 *     (10, 10, 5, 5); score = sigmoid of the face class logit.
 * Batch norm is folded into the depthwise layers' per-channel affine.
 * At LETHE_PRECISION_INT8, the convolutions after the first also get an
 * int8 form (quantize_layers), run where the CPU has the int8 kernels.
 */
#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "face/detect.h"
#include "face/prep.h"
#include "model/model.h"
#include "util/bufcache.h"
#include "util/util.h"

#define SSD_PAIRS 13
#define SSD_EXTRA 8
#define SSD_HEADS 6
#define SSD_BN_EPSILON 0.0010000000474974513f

/* Output channels of conv 0 and of each MobileNet pair. */
static const int mobilenet_channels[SSD_PAIRS + 1] = {32,  64,  128, 128, 256, 256, 512,
                                                      512, 512, 512, 512, 512, 1024, 1024};
/* Prediction/Conv2d_i_pointwise: output channels and kernel (stride 2 for 3x3). */
static const int extra_channels[SSD_EXTRA] = {256, 512, 128, 256, 128, 256, 64, 128};
static const int extra_kernel[SSD_EXTRA] = {1, 3, 1, 3, 1, 3, 1, 3};
/* Box predictors: anchors per cell, and feature-map side (512 input). */
static const int head_anchors[SSD_HEADS] = {3, 6, 6, 6, 6, 6};
static const int head_side[SSD_HEADS] = {32, 16, 8, 4, 2, 1};

#define SSD_MAX_CONVS (1 + SSD_PAIRS + SSD_EXTRA + 2 * SSD_HEADS)

struct ssd_net {
    nn_conv conv0;                  /* MobilenetV1/Conv2d_0_pointwise, 3x3 s2 */
    nn_dwconv dw[SSD_PAIRS];        /* Conv2d_{1..13}_depthwise with batch norm */
    nn_conv pw[SSD_PAIRS];          /* Conv2d_{1..13}_pointwise */
    nn_conv extra[SSD_EXTRA];       /* Prediction/Conv2d_{0..7}_pointwise */
    nn_conv box_enc[SSD_HEADS];     /* BoxPredictor_i/BoxEncodingPredictor */
    nn_conv cls[SSD_HEADS];         /* BoxPredictor_i/ClassPredictor */
    float *anchors;                 /* Output/extra_dim, SSD_NUM_ANCHORS x 4 */
    /* Every conv with the input size it runs at, to size the scratch. */
    const nn_conv *conv_list[SSD_MAX_CONVS];
    int conv_in_side[SSD_MAX_CONVS];
    int nconv;
    int int8_layers;                /* layers with an int8 form */
    lethe_bufcache *arenas;         /* per-pass memory, reused (mutable) */
};

int ssd_num_anchors(void)
{
    return SSD_NUM_ANCHORS;
}

static int pair_stride(int pair)
{
    return (pair == 2 || pair == 4 || pair == 6 || pair == 12) ? 2 : 1;
}

/* ------------------------------------------------------------------ */
/* Anchors                                                              */
/* ------------------------------------------------------------------ */

void ssd_anchors_generate(float *anchors)
{
    /* create_ssd_anchors(num_layers = 6, min_scale = 0.2, max_scale = 0.95,
     * aspect_ratios = (1, 2, 0.5, 3, 0.3333), reduce_boxes_in_lowest_layer)
     * The scales are computed in double (Python) and the grid in float32 (the
     * TF graph), as in the exported model. */
    static const double aspect[5] = {1.0, 2.0, 0.5, 3.0, 0.3333};
    const int layers = SSD_HEADS;
    const double min_scale = 0.2, max_scale = 0.95;
    double scales[SSD_HEADS + 1];
    size_t k = 0;

    for (int i = 0; i < layers; i++)
        scales[i] = min_scale + (max_scale - min_scale) * i / (layers - 1);
    scales[layers] = 1.0;

    for (int l = 0; l < layers; l++) {
        float spec_scale[6], spec_ratio[6];
        int nspec = 0;
        if (l == 0) {
            spec_scale[0] = 0.1f, spec_ratio[0] = 1.0f;
            spec_scale[1] = (float)scales[0], spec_ratio[1] = 2.0f;
            spec_scale[2] = (float)scales[0], spec_ratio[2] = 0.5f;
            nspec = 3;
        } else {
            /* The TF version the model was exported with inserts the
             * interpolated scale right after aspect ratio 1 (later versions
             * append it at the end). */
            for (int a = 0; a < 5; a++) {
                spec_scale[nspec] = (float)scales[l];
                spec_ratio[nspec] = (float)aspect[a];
                nspec++;
                if (aspect[a] == 1.0) {
                    spec_scale[nspec] = (float)sqrt(scales[l] * scales[l + 1]);
                    spec_ratio[nspec] = 1.0f;
                    nspec++;
                }
            }
        }
        /* grid_anchor_generator.tile_anchors with base size 1 x 1, stride
         * 1 / side and offset stride / 2, rows, then columns, then boxes. */
        int side = head_side[l];
        float stride = 1.0f / (float)side;
        float offset = 0.5f * stride;
        for (int y = 0; y < side; y++) {
            float cy = (float)y * stride + offset;
            for (int x = 0; x < side; x++) {
                float cx = (float)x * stride + offset;
                for (int s = 0; s < nspec; s++) {
                    float ratio_sqrt = sqrtf(spec_ratio[s]);
                    float bh = spec_scale[s] / ratio_sqrt * 1.0f;
                    float bw = spec_scale[s] * ratio_sqrt * 1.0f;
                    anchors[k++] = cy - 0.5f * bh;
                    anchors[k++] = cx - 0.5f * bw;
                    anchors[k++] = cy + 0.5f * bh;
                    anchors[k++] = cx + 0.5f * bw;
                }
            }
        }
    }
}

/* ------------------------------------------------------------------ */
/* Loading                                                              */
/* ------------------------------------------------------------------ */

static const float *need(const lethe_weights *w, const char *name, int rank, const int *shape,
                         char *msg, size_t msg_len)
{
    return lethe_weights_expect(w, name, rank, shape, msg, msg_len);
}

/* A conv whose output gets "+ offset" (or "+ bias"): weights [k][k][cin][cout]. */
static int load_conv(const lethe_weights *w, nn_conv *c, const char *prefix,
                     const char *offset_name, int k, int cin, int cout, int stride, nn_act act,
                     char *msg, size_t msg_len)
{
    char name[128];
    const float *wt, *off;

    snprintf(name, sizeof(name), "%s/weights", prefix);
    wt = need(w, name, 4, (const int[]){k, k, cin, cout}, msg, msg_len);
    if (!wt)
        return LETHE_ERR_MODEL;
    snprintf(name, sizeof(name), "%s/%s", prefix, offset_name);
    off = need(w, name, 1, (const int[]){cout}, msg, msg_len);
    if (!off)
        return LETHE_ERR_MODEL;
    if (nn_conv_init(c, k, k, cin, cout, stride, NN_PAD_SAME, act, wt, NULL, off) != 0)
        return lethe_fail(msg, msg_len, LETHE_ERR_NOMEM, "ssd: no memory for %s", prefix);
    return LETHE_OK;
}

/* Depthwise 3x3 + batch norm folded into scale/shift, ReLU6. */
static int load_depthwise(const lethe_weights *w, nn_dwconv *d, int pair, int ch, char *msg,
                          size_t msg_len)
{
    static const char *bn_names[4] = {"gamma", "beta", "moving_mean", "moving_variance"};
    const float *bn[4], *wt;
    char name[128];
    float *scale, *shift;
    int rc;

    snprintf(name, sizeof(name), "MobilenetV1/Conv2d_%d_depthwise/depthwise_weights", pair);
    wt = need(w, name, 4, (const int[]){3, 3, ch, 1}, msg, msg_len);
    if (!wt)
        return LETHE_ERR_MODEL;
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof(name), "MobilenetV1/Conv2d_%d_depthwise/BatchNorm/%s", pair,
                 bn_names[i]);
        bn[i] = need(w, name, 1, (const int[]){ch}, msg, msg_len);
        if (!bn[i])
            return LETHE_ERR_MODEL;
    }
    scale = lethe_malloc((size_t)ch * sizeof(float));
    shift = lethe_malloc((size_t)ch * sizeof(float));
    if (!scale || !shift) {
        lethe_free(scale);
        lethe_free(shift);
        return lethe_fail(msg, msg_len, LETHE_ERR_NOMEM, "ssd: no memory");
    }
    for (int c = 0; c < ch; c++) {
        scale[c] = bn[0][c] / sqrtf(bn[3][c] + SSD_BN_EPSILON);
        shift[c] = bn[1][c] - bn[2][c] * scale[c];
    }
    rc = nn_dwconv_init(d, 3, ch, pair_stride(pair), NN_PAD_SAME, NN_ACT_RELU6, wt, scale, shift);
    lethe_free(scale);
    lethe_free(shift);
    if (rc != 0)
        return lethe_fail(msg, msg_len, LETHE_ERR_NOMEM, "ssd: no memory for depthwise %d", pair);
    return LETHE_OK;
}

static void list_conv(ssd_net *net, const nn_conv *c, int in_side)
{
    net->conv_list[net->nconv] = c;
    net->conv_in_side[net->nconv] = in_side;
    net->nconv++;
}

static int load_layers(ssd_net *net, const lethe_weights *w, char *msg, size_t msg_len)
{
    char prefix[96];
    int rc, side = SSD_INPUT_SIZE;

    rc = load_conv(w, &net->conv0, "MobilenetV1/Conv2d_0_pointwise", "convolution_bn_offset", 3,
                   3, mobilenet_channels[0], 2, NN_ACT_RELU6, msg, msg_len);
    if (rc)
        return rc;
    list_conv(net, &net->conv0, side);
    side = nn_out_size(side, 3, 2, NN_PAD_SAME);

    for (int p = 1; p <= SSD_PAIRS; p++) {
        int cin = mobilenet_channels[p - 1], cout = mobilenet_channels[p];
        rc = load_depthwise(w, &net->dw[p - 1], p, cin, msg, msg_len);
        if (rc)
            return rc;
        side = nn_out_size(side, 3, pair_stride(p), NN_PAD_SAME);
        snprintf(prefix, sizeof(prefix), "MobilenetV1/Conv2d_%d_pointwise", p);
        rc = load_conv(w, &net->pw[p - 1], prefix, "convolution_bn_offset", 1, cin, cout, 1,
                       NN_ACT_RELU6, msg, msg_len);
        if (rc)
            return rc;
        list_conv(net, &net->pw[p - 1], side);
    }

    int cin = mobilenet_channels[SSD_PAIRS];
    for (int e = 0; e < SSD_EXTRA; e++) {
        int k = extra_kernel[e], stride = k == 3 ? 2 : 1;
        snprintf(prefix, sizeof(prefix), "Prediction/Conv2d_%d_pointwise", e);
        rc = load_conv(w, &net->extra[e], prefix, "convolution_bn_offset", k, cin,
                       extra_channels[e], stride, NN_ACT_RELU6, msg, msg_len);
        if (rc)
            return rc;
        list_conv(net, &net->extra[e], side);
        side = nn_out_size(side, k, stride, NN_PAD_SAME);
        cin = extra_channels[e];
    }

    for (int hd = 0; hd < SSD_HEADS; hd++) {
        static const int head_cin[SSD_HEADS] = {512, 1024, 512, 256, 256, 128};
        int a = head_anchors[hd];
        snprintf(prefix, sizeof(prefix), "Prediction/BoxPredictor_%d/BoxEncodingPredictor", hd);
        rc = load_conv(w, &net->box_enc[hd], prefix, "biases", 1, head_cin[hd], a * 4, 1,
                       NN_ACT_NONE, msg, msg_len);
        if (rc)
            return rc;
        snprintf(prefix, sizeof(prefix), "Prediction/BoxPredictor_%d/ClassPredictor", hd);
        rc = load_conv(w, &net->cls[hd], prefix, "biases", 1, head_cin[hd], a * 3, 1,
                       NN_ACT_NONE, msg, msg_len);
        if (rc)
            return rc;
        list_conv(net, &net->box_enc[hd], head_side[hd]);
        list_conv(net, &net->cls[hd], head_side[hd]);
    }

    const float *extra_dim =
        need(w, "Output/extra_dim", 3, (const int[]){1, SSD_NUM_ANCHORS, 4}, msg, msg_len);
    if (!extra_dim)
        return LETHE_ERR_MODEL;
    net->anchors = lethe_malloc((size_t)SSD_NUM_ANCHORS * 4 * sizeof(float));
    if (!net->anchors)
        return lethe_fail(msg, msg_len, LETHE_ERR_NOMEM, "ssd: no memory");
    memcpy(net->anchors, extra_dim, (size_t)SSD_NUM_ANCHORS * 4 * sizeof(float));
    return LETHE_OK;
}

/*
 * The int8 forms of LETHE_PRECISION_INT8 (nn.h, "Reduced precision"):
 * every layer whose input is the output of a ReLU6 (a depthwise layer, or
 * a conv + offset + ReLU6), so that the fixed grid [0, 6] in 255 steps
 * covers its input exactly: the 13 pointwise layers, the 8 extra feature
 * layers (1x1 and 3x3) and the 12 box predictors. conv0 reads the image in
 * [-1, 1] and stays fp32, as do the depthwise layers (cheap, and their
 * inputs are not what int8 suits).
 */
#define SSD_RELU6_MAX 6.0f

static int quantize_layers(ssd_net *net)
{
    for (int p = 0; p < SSD_PAIRS; p++)
        if (nn_conv_quantize(&net->pw[p], SSD_RELU6_MAX) != 0)
            return -1;
    for (int e = 0; e < SSD_EXTRA; e++)
        if (nn_conv_quantize(&net->extra[e], SSD_RELU6_MAX) != 0)
            return -1;
    for (int hd = 0; hd < SSD_HEADS; hd++)
        if (nn_conv_quantize(&net->box_enc[hd], SSD_RELU6_MAX) != 0 ||
            nn_conv_quantize(&net->cls[hd], SSD_RELU6_MAX) != 0)
            return -1;
    net->int8_layers = SSD_PAIRS + SSD_EXTRA + 2 * SSD_HEADS;
    return 0;
}

int ssd_net_load_precision(const char *model_dir, int precision, ssd_net **out, char *msg,
                           size_t msg_len)
{
    lethe_weights *w = NULL;
    ssd_net *net;
    int rc;

    if (!out)
        return lethe_fail(msg, msg_len, LETHE_ERR_ARG, "ssd_net_load: out is NULL");
    *out = NULL;
    if (!model_dir)
        return lethe_fail(msg, msg_len, LETHE_ERR_ARG, "ssd_net_load: no model folder");
    if (precision != LETHE_PRECISION_DEFAULT && precision != LETHE_PRECISION_FP32 &&
        precision != LETHE_PRECISION_INT8)
        return lethe_fail(msg, msg_len, LETHE_ERR_ARG, "ssd_net_load: unknown precision %d",
                          precision);
    net = lethe_calloc(1, sizeof(*net));
    if (!net)
        return lethe_fail(msg, msg_len, LETHE_ERR_NOMEM, "ssd: no memory");
    net->arenas = lethe_malloc(sizeof(*net->arenas));
    if (!net->arenas) {
        lethe_free(net);
        return lethe_fail(msg, msg_len, LETHE_ERR_NOMEM, "ssd: no memory");
    }
    lethe_bufcache_init(net->arenas);
    rc = lethe_weights_load(model_dir, "ssd_mobilenetv1_model", 1, &w, msg, msg_len);
    if (rc == LETHE_OK)
        rc = load_layers(net, w, msg, msg_len);
    lethe_weights_free(w);
    if (rc == LETHE_OK && precision == LETHE_PRECISION_INT8) {
        if (quantize_layers(net) != 0)
            rc = lethe_fail(msg, msg_len, LETHE_ERR_NOMEM, "ssd: no memory for int8 layers");
    }
    if (rc != LETHE_OK) {
        ssd_net_free(net);
        return rc;
    }
    nn_init();
    *out = net;
    return LETHE_OK;
}

int ssd_net_load(const char *model_dir, ssd_net **out, char *msg, size_t msg_len)
{
    return ssd_net_load_precision(model_dir, LETHE_PRECISION_DEFAULT, out, msg, msg_len);
}

int ssd_net_is_int8(const ssd_net *net)
{
    return net && net->int8_layers > 0 && nn_int8_available();
}

void ssd_net_free(ssd_net *net)
{
    if (!net)
        return;
    nn_conv_free(&net->conv0);
    for (int p = 0; p < SSD_PAIRS; p++) {
        nn_dwconv_free(&net->dw[p]);
        nn_conv_free(&net->pw[p]);
    }
    for (int e = 0; e < SSD_EXTRA; e++)
        nn_conv_free(&net->extra[e]);
    for (int hd = 0; hd < SSD_HEADS; hd++) {
        nn_conv_free(&net->box_enc[hd]);
        nn_conv_free(&net->cls[hd]);
    }
    lethe_free(net->anchors);
    if (net->arenas) {
        lethe_bufcache_destroy(net->arenas);
        lethe_free(net->arenas);
    }
    lethe_free(net);
}

const float *ssd_net_anchors(const ssd_net *net)
{
    return net->anchors;
}

/* ------------------------------------------------------------------ */
/* Forward                                                              */
/* ------------------------------------------------------------------ */

/* Bump allocation of the per-call buffers from one aligned block. */
typedef struct arena {
    char *base;
    size_t used, size;
} arena;

static size_t align64(size_t n)
{
    return (n + 63) & ~(size_t)63;
}

static void *arena_bytes(arena *a, size_t n)
{
    void *p = a->base + a->used;
    a->used += align64(n);
    return p;
}

static float *arena_floats(arena *a, size_t n)
{
    return arena_bytes(a, n * sizeof(float));
}

/* The decoding of outputLayer.ts, in its float32 operation order. */
static void decode_boxes(const float *anchors, const float *enc, const float *cls, int n,
                         float *boxes, float *scores)
{
    for (int i = 0; i < n; i++) {
        const float *a = anchors + (size_t)i * 4;
        const float *e = enc + (size_t)i * 4;
        float size_y = a[2] - a[0];
        float size_x = a[3] - a[1];
        float center_y = a[0] + size_y / 2.0f;
        float center_x = a[1] + size_x / 2.0f;
        float half_h = expf(e[2] / 5.0f) * size_y / 2.0f;
        float mid_y = e[0] / 10.0f * size_y + center_y;
        float half_w = expf(e[3] / 5.0f) * size_x / 2.0f;
        float mid_x = e[1] / 10.0f * size_x + center_x;
        float *b = boxes + (size_t)i * 4;
        b[0] = mid_y - half_h;
        b[1] = mid_x - half_w;
        b[2] = mid_y + half_h;
        b[3] = mid_x + half_w;
        /* sigmoid of class 1 (class 0 is the background) */
        scores[i] = 1.0f / (1.0f + expf(-cls[(size_t)i * 3 + 1]));
    }
}

int ssd_net_forward(const ssd_net *net, const float *input, float *boxes, float *scores,
                    nn_pool *pool)
{
    /* Sizes (floats) of the tensors the pass keeps. */
    const size_t big = (size_t)256 * 256 * 64; /* largest MobileNet activation */
    size_t scratch_bytes = 0, total = 0;
    size_t extra_len[SSD_EXTRA];
    arena ar = {0};
    int side;

    const int int8 = nn_int8_available();
    for (int i = 0; i < net->nconv; i++) {
        size_t s = nn_conv_scratch_size(net->conv_list[i], net->conv_in_side[i],
                                        net->conv_in_side[i], pool);
        if (s > scratch_bytes)
            scratch_bytes = s;
    }
    side = nn_out_size(SSD_INPUT_SIZE, 3, 2, NN_PAD_SAME);
    for (int p = 1; p <= SSD_PAIRS && int8; p++) {
        size_t s = nn_dwconv_u8_scratch_size(&net->dw[p - 1], side, side, pool);
        if (s > scratch_bytes)
            scratch_bytes = s;
        side = nn_out_size(side, 3, pair_stride(p), NN_PAD_SAME);
    }
    side = 16;
    for (int e = 0; e < SSD_EXTRA; e++) {
        if (extra_kernel[e] == 3)
            side = nn_out_size(side, 3, 2, NN_PAD_SAME);
        extra_len[e] = (size_t)side * side * extra_channels[e];
        total += align64(extra_len[e] * sizeof(float));
    }
    total += 2 * align64(big * sizeof(float));
    total += int8 ? align64(big) : 0; /* a depthwise output in u8 */
    total += align64((size_t)32 * 32 * 512 * sizeof(float));
    total += align64((size_t)SSD_NUM_ANCHORS * 7 * sizeof(float));
    total += align64(scratch_bytes);
    size_t got;
    ar.base = lethe_bufcache_get(net->arenas, total, &got);
    if (!ar.base)
        return LETHE_ERR_NOMEM;
    ar.size = total;

    float *buf_a = arena_floats(&ar, big);
    float *buf_b = arena_floats(&ar, big);
    uint8_t *buf_q = int8 ? arena_bytes(&ar, big) : NULL;
    float *conv11 = arena_floats(&ar, (size_t)32 * 32 * 512);
    float *ext[SSD_EXTRA];
    for (int e = 0; e < SSD_EXTRA; e++)
        ext[e] = arena_floats(&ar, extra_len[e]);
    float *enc = arena_floats(&ar, (size_t)SSD_NUM_ANCHORS * 4);
    float *cls = arena_floats(&ar, (size_t)SSD_NUM_ANCHORS * 3);
    void *scratch = scratch_bytes ? arena_bytes(&ar, scratch_bytes) : NULL;

    /* MobileNet v1 body. */
    side = SSD_INPUT_SIZE;
    nn_conv_forward(&net->conv0, input, side, side, buf_a, NULL, scratch, pool);
    side = nn_out_size(side, 3, 2, NN_PAD_SAME);
    float *x = buf_a;
    for (int p = 1; p <= SSD_PAIRS; p++) {
        const nn_dwconv *dw = &net->dw[p - 1];
        const nn_conv *pw = &net->pw[p - 1];
        int in_side = side;
        float *t = x == buf_a ? buf_b : buf_a;
        float *y = p == 11 ? conv11 : t;
        side = nn_out_size(side, 3, pair_stride(p), NN_PAD_SAME);
        if (int8 && nn_conv_is_quantized(pw)) {
            /* The depthwise output goes to the pointwise layer as bytes. */
            nn_dwconv_forward_u8(dw, x, in_side, in_side, buf_q, SSD_RELU6_MAX, scratch, pool);
            nn_conv_forward_u8(pw, buf_q, side, side, y, NULL, scratch, pool);
        } else {
            nn_dwconv_forward(dw, x, in_side, in_side, t, pool);
            y = p == 11 ? conv11 : (t == buf_a ? buf_b : buf_a);
            nn_conv_forward(pw, t, side, side, y, NULL, scratch, pool);
        }
        x = y;
    }
    /* x: 16x16x1024. The extra feature layers. */
    const float *feat = x;
    int fside = side;
    for (int e = 0; e < SSD_EXTRA; e++) {
        nn_conv_forward(&net->extra[e], feat, fside, fside, ext[e], NULL, scratch, pool);
        fside = nn_out_size(fside, extra_kernel[e], extra_kernel[e] == 3 ? 2 : 1, NN_PAD_SAME);
        feat = ext[e];
    }

    /* Box predictors, concatenated in head order; HWC order of a head's
     * output is the order of its anchors. */
    const float *head_in[SSD_HEADS] = {conv11, x, ext[1], ext[3], ext[5], ext[7]};
    size_t anchor0 = 0;
    for (int hd = 0; hd < SSD_HEADS; hd++) {
        int s = head_side[hd];
        nn_conv_forward(&net->box_enc[hd], head_in[hd], s, s, enc + anchor0 * 4, NULL, scratch,
                        pool);
        nn_conv_forward(&net->cls[hd], head_in[hd], s, s, cls + anchor0 * 3, NULL, scratch,
                        pool);
        anchor0 += (size_t)s * s * head_anchors[hd];
    }

    assert(ar.used <= ar.size);
    decode_boxes(net->anchors, enc, cls, SSD_NUM_ANCHORS, boxes, scores);
    lethe_bufcache_put(net->arenas, ar.base, got);
    return LETHE_OK;
}

int ssd_net_detect(const ssd_net *net, const uint8_t *rgb, int w, int h, float min_score,
                   int max_results, face_det **out, int *n, nn_pool *pool)
{
    const size_t in_len = (size_t)SSD_INPUT_SIZE * SSD_INPUT_SIZE * 3;
    float *input = NULL, *boxes = NULL, *scores = NULL;
    int *selected = NULL, nsel, rc;
    face_det *dets = NULL;

    rc = detect_check_image(rgb, w, h, out, n);
    if (rc != LETHE_OK || !net)
        return rc != LETHE_OK ? rc : LETHE_ERR_ARG;
    if (!(min_score > 0.0f))
        min_score = SSD_DEFAULT_MIN_SCORE;
    if (!(min_score < 1.0f))
        return LETHE_ERR_ARG;
    if (max_results <= 0)
        max_results = SSD_DEFAULT_MAX_RESULTS;

    input = lethe_malloc_aligned(in_len * sizeof(float));
    boxes = lethe_malloc_aligned((size_t)SSD_NUM_ANCHORS * 4 * sizeof(float));
    scores = lethe_malloc_aligned((size_t)SSD_NUM_ANCHORS * sizeof(float));
    selected = lethe_malloc((size_t)LETHE_MIN(max_results, SSD_NUM_ANCHORS) * sizeof(int));
    rc = LETHE_ERR_NOMEM;
    if (!input || !boxes || !scores || !selected)
        goto out_free;

    detect_prepare_input(rgb, w, h, SSD_INPUT_SIZE, input);
    prep_div_sub(input, in_len, 127.5f, 1.0f);
    rc = ssd_net_forward(net, input, boxes, scores, pool);
    if (rc != LETHE_OK)
        goto out_free;

    rc = LETHE_ERR_NOMEM;
    nsel = ssd_nms(boxes, scores, SSD_NUM_ANCHORS, max_results, SSD_IOU_THRESHOLD,
                   detect_threshold(min_score), selected);
    if (nsel < 0)
        goto out_free;
    if (nsel > 0) {
        int kept = 0;
        dets = lethe_malloc((size_t)nsel * sizeof(*dets));
        if (!dets)
            goto out_free;
        for (int i = 0; i < nsel; i++) {
            int idx = selected[i];
            kept += ssd_map_box(boxes + (size_t)idx * 4, scores[idx], w, h, &dets[kept]);
        }
        if (kept == 0) {
            lethe_free(dets);
            dets = NULL;
        }
        *n = kept;
    }
    *out = dets;
    rc = LETHE_OK;

out_free:
    lethe_free_aligned(input);
    lethe_free_aligned(boxes);
    lethe_free_aligned(scores);
    lethe_free(selected);
    return rc;
}
