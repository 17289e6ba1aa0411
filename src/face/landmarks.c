/*
 * landmarks.c: face-api.js's 68-point landmark net (FaceLandmark68Net).
 *
 *   112x112x3 -> 4 dense blocks (56x56x32, 28x28x64, 14x14x128, 7x7x256)
 *   -> avgpool 7/2 valid -> FC 256 -> 136 (x, y pairs in [0, 1]).
 *
 * A dense block: out1 = relu(first conv, stride 2); out2 = sep(out1);
 * out3 = sep(relu(out1 + out2)); out4 = sep(relu(out1 + (out2 + out3)));
 * result = relu(out1 + (out2 + (out3 + out4))). "sep" is a depthwise 3x3
 * followed by a 1x1 conv with bias (tf.separableConv2d + bias). The first
 * block's first conv is a plain 3x3 conv with bias.
 */
#include "nets.h"

#include <stdio.h>
#include <string.h>

#include "face/prep.h"
#include "model/model.h"
#include "util/util.h"

typedef struct sepconv {
    nn_dwconv dw;
    nn_conv pw;
} sepconv;

typedef struct dense_block {
    int cin, cout, side; /* side = output side */
    nn_conv conv0;        /* first block only */
    sepconv sep[4];       /* sep[0] unused in the first block */
} dense_block;

struct lm68 {
    dense_block d[4];
    float fc_w[256 * 136];
    float fc_b[136];
};

static int load_sep(const lethe_weights *w, const char *prefix, int cin, int cout, int stride,
                    nn_act act, sepconv *s, char *msg, size_t msg_len)
{
    char name[128];
    const float *dwf, *pwf, *bias;

    snprintf(name, sizeof(name), "%s/depthwise_filter", prefix);
    dwf = lethe_weights_expect(w, name, 4, (int[]){3, 3, cin, 1}, msg, msg_len);
    snprintf(name, sizeof(name), "%s/pointwise_filter", prefix);
    pwf = dwf ? lethe_weights_expect(w, name, 4, (int[]){1, 1, cin, cout}, msg, msg_len) : NULL;
    snprintf(name, sizeof(name), "%s/bias", prefix);
    bias = pwf ? lethe_weights_expect(w, name, 1, (int[]){cout}, msg, msg_len) : NULL;
    if (!bias)
        return LETHE_ERR_MODEL;
    if (nn_dwconv_init(&s->dw, 3, cin, stride, NN_PAD_SAME, NN_ACT_NONE, dwf, NULL, NULL) != 0 ||
        nn_conv_init(&s->pw, 1, 1, cin, cout, 1, NN_PAD_SAME, act, pwf, NULL, bias) != 0)
        return lethe_fail(msg, msg_len, LETHE_ERR_NOMEM, "out of memory preparing %s", prefix);
    return LETHE_OK;
}

void lm68_free(lm68 *net)
{
    if (!net)
        return;
    for (int i = 0; i < 4; i++) {
        nn_conv_free(&net->d[i].conv0);
        for (int j = 0; j < 4; j++) {
            nn_dwconv_free(&net->d[i].sep[j].dw);
            nn_conv_free(&net->d[i].sep[j].pw);
        }
    }
    lethe_free_aligned(net);
}

int lm68_load(const char *model_dir, lm68 **out, char *msg, size_t msg_len)
{
    static const int couts[4] = {32, 64, 128, 256};
    lethe_weights *w = NULL;
    lm68 *net;
    int rc, cin = 3, side = LM68_INPUT;

    *out = NULL;
    rc = lethe_weights_load(model_dir, "face_landmark_68_model", 1, &w, msg, msg_len);
    if (rc != LETHE_OK)
        return rc;
    net = lethe_malloc_aligned(sizeof(*net));
    if (!net) {
        lethe_weights_free(w);
        return lethe_fail(msg, msg_len, LETHE_ERR_NOMEM, "out of memory");
    }
    memset(net, 0, sizeof(*net));
    for (int i = 0; i < 4 && rc == LETHE_OK; i++) {
        dense_block *d = &net->d[i];
        char prefix[64];
        d->cin = cin;
        d->cout = couts[i];
        side = (side + 1) / 2;
        d->side = side;
        if (i == 0) {
            const float *f = lethe_weights_expect(w, "dense0/conv0/filters", 4,
                                                  (int[]){3, 3, 3, 32}, msg, msg_len);
            const float *b = f ? lethe_weights_expect(w, "dense0/conv0/bias", 1, (int[]){32},
                                                      msg, msg_len)
                               : NULL;
            if (!b) {
                rc = LETHE_ERR_MODEL;
                break;
            }
            if (nn_conv_init(&d->conv0, 3, 3, 3, 32, 2, NN_PAD_SAME, NN_ACT_RELU, f, NULL, b)) {
                rc = lethe_fail(msg, msg_len, LETHE_ERR_NOMEM, "out of memory");
                break;
            }
        } else {
            snprintf(prefix, sizeof(prefix), "dense%d/conv0", i);
            rc = load_sep(w, prefix, cin, d->cout, 2, NN_ACT_RELU, &d->sep[0], msg, msg_len);
        }
        for (int j = 1; j < 4 && rc == LETHE_OK; j++) {
            snprintf(prefix, sizeof(prefix), "dense%d/conv%d", i, j);
            rc = load_sep(w, prefix, d->cout, d->cout, 1, NN_ACT_NONE, &d->sep[j], msg, msg_len);
        }
        cin = d->cout;
    }
    if (rc == LETHE_OK) {
        const float *fw = lethe_weights_expect(w, "fc/weights", 2, (int[]){256, 136}, msg, msg_len);
        const float *fb = fw ? lethe_weights_expect(w, "fc/bias", 1, (int[]){136}, msg, msg_len)
                             : NULL;
        if (fb) {
            memcpy(net->fc_w, fw, sizeof(net->fc_w));
            memcpy(net->fc_b, fb, sizeof(net->fc_b));
        } else {
            rc = LETHE_ERR_MODEL;
        }
    }
    lethe_weights_free(w);
    if (rc != LETHE_OK) {
        lm68_free(net);
        return rc;
    }
    *out = net;
    return LETHE_OK;
}

/* The largest activation: 56x56x32. Buffers: x, out1..out4, tmp, dw. */
#define LM_ACT (56 * 56 * 32)
#define LM_BUFS 7

size_t lm68_scratch_size(const lm68 *net, const nn_pool *pool)
{
    /* The 1x1 convs run at each block's output side; the first conv at 112. */
    size_t s = nn_conv_scratch_size(&net->d[0].conv0, LM68_INPUT, LM68_INPUT, pool);
    for (int i = 0; i < 4; i++)
        for (int j = i == 0 ? 1 : 0; j < 4; j++)
            s = LETHE_MAX(s, nn_conv_scratch_size(&net->d[i].sep[j].pw, net->d[i].side,
                                                  net->d[i].side, pool));
    s = (s + 63) & ~(size_t)63;
    return s + LM_BUFS * (size_t)LM_ACT * sizeof(float);
}

static void run_sep(const sepconv *s, const float *in, int in_side, int out_side, float *dwbuf,
                    float *out, void *scratch, nn_pool *pool)
{
    nn_dwconv_forward(&s->dw, in, in_side, in_side, dwbuf, pool);
    nn_conv_forward(&s->pw, dwbuf, out_side, out_side, out, NULL, scratch, pool);
}

static void relu_sum(float *dst, size_t n, const float *a, const float *b, const float *c,
                     const float *d)
{
    /* dst = relu(a + (b + (c + d))) with c, d optional, tfjs's grouping. */
    for (size_t i = 0; i < n; i++) {
        float inner = d ? c[i] + d[i] : (c ? c[i] : 0.0f);
        float v = a[i] + (c ? b[i] + inner : b[i]);
        dst[i] = v > 0 ? v : 0;
    }
}

void lm68_forward(const lm68 *net, const float *input, float *raw136, void *scratch,
                  nn_pool *pool)
{
    size_t conv_scratch = lm68_scratch_size(net, pool) - LM_BUFS * (size_t)LM_ACT * sizeof(float);
    float *buf = (float *)((char *)scratch + conv_scratch);
    float *x = buf, *o1 = x + LM_ACT, *o2 = o1 + LM_ACT, *o3 = o2 + LM_ACT, *o4 = o3 + LM_ACT,
          *t = o4 + LM_ACT, *dw = t + LM_ACT;
    const float *in = input;
    int side = LM68_INPUT;

    for (int i = 0; i < 4; i++) {
        const dense_block *d = &net->d[i];
        int s = d->side;
        size_t n = (size_t)s * s * d->cout;
        if (i == 0)
            nn_conv_forward(&d->conv0, in, side, side, o1, NULL, scratch, pool);
        else
            run_sep(&d->sep[0], in, side, s, dw, o1, scratch, pool);
        run_sep(&d->sep[1], o1, s, s, dw, o2, scratch, pool);
        relu_sum(t, n, o1, o2, NULL, NULL);
        run_sep(&d->sep[2], t, s, s, dw, o3, scratch, pool);
        relu_sum(t, n, o1, o2, o3, NULL);
        run_sep(&d->sep[3], t, s, s, dw, o4, scratch, pool);
        relu_sum(x, n, o1, o2, o3, o4);
        in = x;
        side = s;
    }
    /* 7x7x256 -> avgpool 7/2 valid -> 1x1x256 -> FC */
    nn_avgpool(x, 7, 7, 256, 7, 2, NN_PAD_VALID, t);
    nn_fc(t, 256, net->fc_w, net->fc_b, 136, raw136);
}

int lm68_detect_rgb(const lm68 *net, const uint8_t *rgb, int w, int h, float points[68][2],
                    nn_pool *pool)
{
    int side = LETHE_MAX(w, h);
    size_t n_src = (size_t)w * h * 3, n_sq = (size_t)side * side * 3;
    float *src = lethe_malloc_aligned((n_src + n_sq + LM68_INPUT * LM68_INPUT * 3) * sizeof(float));
    void *scratch = lethe_malloc_aligned(lm68_scratch_size(net, pool));
    float raw[136], *sq, *in;

    if (!src || !scratch) {
        lethe_free_aligned(src);
        lethe_free_aligned(scratch);
        return LETHE_ERR_NOMEM;
    }
    sq = src + n_src;
    in = sq + n_sq;
    prep_rgb_to_float(rgb, w, h, src);
    prep_pad_to_square(src, w, h, 3, 1, sq, NULL, NULL);
    if (side != LM68_INPUT)
        prep_resize_bilinear(sq, side, side, 3, in, LM68_INPUT, LM68_INPUT);
    else
        memcpy(in, sq, n_sq * sizeof(float));
    prep_normalize(in, LM68_INPUT, LM68_INPUT, face_mean_rgb, 255.0f);
    lm68_forward(net, in, raw, scratch, pool);

    /* face-api postProcess: scale the crop to fit 112, undo the centred
     * padding (|w - h| / 2 on the short axis), back to the crop's pixels. */
    float scale = (float)LM68_INPUT / (float)side;
    float sw = (float)w * scale, sh = (float)h * scale;
    float pad_x = sw < sh ? (sh - sw) / 2.0f : 0.0f;
    float pad_y = sh < sw ? (sw - sh) / 2.0f : 0.0f;
    for (int i = 0; i < 68; i++) {
        float rx = (raw[2 * i] * (float)LM68_INPUT - pad_x) / sw;
        float ry = (raw[2 * i + 1] * (float)LM68_INPUT - pad_y) / sh;
        points[i][0] = rx * (float)w;
        points[i][1] = ry * (float)h;
    }
    lethe_free_aligned(src);
    lethe_free_aligned(scratch);
    return LETHE_OK;
}
