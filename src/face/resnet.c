/*
 * resnet.c: the 128-D face descriptor, a ResNet-34-like network ported from
 * dlib's dlib_face_recognition_resnet_model_v1 by face-api.js.
 *
 *   150x150x3 -> conv 7x7/2 valid (32) -> maxpool 3/2 valid -> 35x35x32
 *   3 residual blocks at 32, down + 3 at 64 (17x17), down + 2 at 128 (8x8),
 *   down + 2 at 256 (3x3 -> padded 4x4 by the down block) + down_out,
 *   mean over space -> 256 -> FC 256x128 (no bias).
 *
 * Every conv is conv + bias, then an affine "scale" layer (w, b); we fuse
 * them into scale = w, shift = bias * w + b. A down block adds
 * avgpool(x, 2, 2) zero-padded in channels (and, when the conv output is
 * smaller, the conv output is zero-padded in space instead) before the ReLU.
 */
#include "nets.h"

#include <stdio.h>
#include <string.h>

#include "face/prep.h"
#include "model/model.h"
#include "util/util.h"

const float face_mean_rgb[3] = {122.782f, 117.001f, 104.298f};

typedef struct block {
    const char *name;
    int cin, cout, down;
    nn_conv c1, c2;
} block;

static const struct {
    const char *name;
    int cin, cout, down;
} block_defs[] = {
    {"conv32_1", 32, 32, 0},    {"conv32_2", 32, 32, 0},   {"conv32_3", 32, 32, 0},
    {"conv64_down", 32, 64, 1}, {"conv64_1", 64, 64, 0},   {"conv64_2", 64, 64, 0},
    {"conv64_3", 64, 64, 0},    {"conv128_down", 64, 128, 1}, {"conv128_1", 128, 128, 0},
    {"conv128_2", 128, 128, 0}, {"conv256_down", 128, 256, 1}, {"conv256_1", 256, 256, 0},
    {"conv256_2", 256, 256, 0}, {"conv256_down_out", 256, 256, 1},
};
#define NBLOCKS ((int)LETHE_ARRAY_LEN(block_defs))

struct resnet {
    nn_conv conv0;
    block b[NBLOCKS];
    float fc[256 * 128];
};

/* Load prefix/conv/{filters,bias} and prefix/scale/{weights,biases} into c. */
static int load_conv(const lethe_weights *w, const char *prefix, int k, int cin, int cout,
                     int stride, nn_pad pad, nn_act act, nn_conv *c, char *msg, size_t msg_len)
{
    char name[128];
    const float *filters, *bias, *sw, *sb;
    float scale[256], shift[256];

    snprintf(name, sizeof(name), "%s/conv/filters", prefix);
    filters = lethe_weights_expect(w, name, 4, (int[]){k, k, cin, cout}, msg, msg_len);
    snprintf(name, sizeof(name), "%s/conv/bias", prefix);
    bias = filters ? lethe_weights_expect(w, name, 1, (int[]){cout}, msg, msg_len) : NULL;
    snprintf(name, sizeof(name), "%s/scale/weights", prefix);
    sw = bias ? lethe_weights_expect(w, name, 1, (int[]){cout}, msg, msg_len) : NULL;
    snprintf(name, sizeof(name), "%s/scale/biases", prefix);
    sb = sw ? lethe_weights_expect(w, name, 1, (int[]){cout}, msg, msg_len) : NULL;
    if (!sb)
        return LETHE_ERR_MODEL;
    for (int i = 0; i < cout; i++) {
        scale[i] = sw[i];
        shift[i] = bias[i] * sw[i] + sb[i];
    }
    if (nn_conv_init(c, k, k, cin, cout, stride, pad, act, filters, scale, shift) != 0)
        return lethe_fail(msg, msg_len, LETHE_ERR_NOMEM, "out of memory preparing %s", prefix);
    return LETHE_OK;
}

void resnet_free(resnet *net)
{
    if (!net)
        return;
    nn_conv_free(&net->conv0);
    for (int i = 0; i < NBLOCKS; i++) {
        nn_conv_free(&net->b[i].c1);
        nn_conv_free(&net->b[i].c2);
    }
    lethe_free_aligned(net);
}

int resnet_load(const char *model_dir, int exact, resnet **out, char *msg, size_t msg_len)
{
    lethe_weights *w = NULL;
    resnet *net;
    const float *fc;
    int rc;

    *out = NULL;
    rc = lethe_weights_load(model_dir, "face_recognition_model", 1, &w, msg, msg_len);
    if (rc != LETHE_OK)
        return rc;
    net = lethe_malloc_aligned(sizeof(*net));
    if (!net) {
        lethe_weights_free(w);
        return lethe_fail(msg, msg_len, LETHE_ERR_NOMEM, "out of memory");
    }
    memset(net, 0, sizeof(*net));
    rc = load_conv(w, "conv32_down", 7, 3, 32, 2, NN_PAD_VALID, NN_ACT_RELU, &net->conv0, msg,
                   msg_len);
    for (int i = 0; i < NBLOCKS && rc == LETHE_OK; i++) {
        block *b = &net->b[i];
        char prefix[64];
        b->name = block_defs[i].name;
        b->cin = block_defs[i].cin;
        b->cout = block_defs[i].cout;
        b->down = block_defs[i].down;
        snprintf(prefix, sizeof(prefix), "%s/conv1", b->name);
        rc = load_conv(w, prefix, 3, b->cin, b->cout, b->down ? 2 : 1,
                       b->down ? NN_PAD_VALID : NN_PAD_SAME, NN_ACT_RELU, &b->c1, msg, msg_len);
        if (rc != LETHE_OK)
            break;
        snprintf(prefix, sizeof(prefix), "%s/conv2", b->name);
        /* The ReLU comes after the residual add. */
        rc = load_conv(w, prefix, 3, b->cout, b->cout, 1, NN_PAD_SAME, NN_ACT_RELU, &b->c2, msg,
                       msg_len);
    }
    for (int i = 0; i < NBLOCKS && rc == LETHE_OK && exact; i++) {
        if (nn_conv_set_algo(&net->b[i].c1, NN_ALGO_GEMM) != 0 ||
            nn_conv_set_algo(&net->b[i].c2, NN_ALGO_GEMM) != 0)
            rc = lethe_fail(msg, msg_len, LETHE_ERR_NOMEM, "out of memory");
    }
    if (rc == LETHE_OK) {
        fc = lethe_weights_expect(w, "fc", 2, (int[]){256, 128}, msg, msg_len);
        if (fc)
            memcpy(net->fc, fc, sizeof(net->fc));
        else
            rc = LETHE_ERR_MODEL;
    }
    lethe_weights_free(w);
    if (rc != LETHE_OK) {
        resnet_free(net);
        return rc;
    }
    *out = net;
    return LETHE_OK;
}

/* Activation buffers: the largest is conv0's 72x72x32 output. */
#define ACT_FLOATS (72 * 72 * 32)

size_t resnet_scratch_size(const resnet *net, const nn_pool *pool)
{
    size_t conv_scratch = nn_conv_scratch_size(&net->conv0, 150, 150, pool);
    int h = 35;
    for (int i = 0; i < NBLOCKS; i++) {
        const block *b = &net->b[i];
        int oh, ow;
        size_t s1 = nn_conv_scratch_size(&b->c1, h, h, pool);
        nn_conv_out_hw(&b->c1, h, h, &oh, &ow);
        size_t s2 = nn_conv_scratch_size(&b->c2, oh, ow, pool);
        conv_scratch = LETHE_MAX(conv_scratch, LETHE_MAX(s1, s2));
        h = oh;
    }
    conv_scratch = (conv_scratch + 63) & ~(size_t)63;
    return conv_scratch + 4 * (size_t)ACT_FLOATS * sizeof(float);
}

/* One residual block: x (h x h x cin) -> out; returns the output side. */
static int run_block(const block *b, const float *x, int h, float *out, float *t1, float *t2,
                     void *scratch, nn_pool *pool)
{
    int oh, ow;

    nn_conv_forward(&b->c1, x, h, h, t1, NULL, scratch, pool);
    nn_conv_out_hw(&b->c1, h, h, &oh, &ow);
    if (!b->down) {
        nn_conv_forward(&b->c2, t1, oh, ow, out, x, scratch, pool);
        return oh;
    }
    /* pooled = avgpool(x, 2, 2, valid), zero-padded from cin to cout channels */
    int ph = nn_out_size(h, 2, 2, NN_PAD_VALID);
    nn_avgpool(x, h, h, b->cin, 2, 2, NN_PAD_VALID, t2);
    if (ph == oh) {
        float *res = out; /* build the residual in out's memory, then conv over it */
        for (int p = ph * ph - 1; p >= 0; p--) {
            memset(res + (size_t)p * b->cout + b->cin, 0, (size_t)(b->cout - b->cin) * sizeof(float));
            memcpy(res + (size_t)p * b->cout, t2 + (size_t)p * b->cin, (size_t)b->cin * sizeof(float));
        }
        /* nn_conv_forward needs out and residual apart: move residual to t2 */
        memcpy(t2, res, (size_t)ph * ph * b->cout * sizeof(float));
        nn_conv_forward(&b->c2, t1, oh, ow, out, t2, scratch, pool);
        return oh;
    }
    /* conv output (oh x oh) smaller than pooled (ph x ph): the conv output is
     * zero-padded at the bottom and right, so those cells are relu(pooled). */
    {
        float *crop = t1 + (size_t)oh * ow * b->cout; /* after conv1's output */
        float *conv2 = crop + (size_t)oh * ow * b->cout;
        for (int y = 0; y < oh; y++)
            for (int xx = 0; xx < ow; xx++) {
                float *dst = crop + ((size_t)y * ow + xx) * b->cout;
                memcpy(dst, t2 + ((size_t)y * ph + xx) * b->cin, (size_t)b->cin * sizeof(float));
                memset(dst + b->cin, 0, (size_t)(b->cout - b->cin) * sizeof(float));
            }
        nn_conv_forward(&b->c2, t1, oh, ow, conv2, crop, scratch, pool);
        for (int y = 0; y < ph; y++)
            for (int xx = 0; xx < ph; xx++) {
                float *dst = out + ((size_t)y * ph + xx) * b->cout;
                if (y < oh && xx < ow) {
                    memcpy(dst, conv2 + ((size_t)y * ow + xx) * b->cout,
                           (size_t)b->cout * sizeof(float));
                } else {
                    for (int c = 0; c < b->cout; c++) {
                        float v = c < b->cin ? t2[((size_t)y * ph + xx) * b->cin + c] : 0.0f;
                        dst[c] = v > 0 ? v : 0;
                    }
                }
            }
        return ph;
    }
}

void resnet_forward(const resnet *net, const float *input, float *descriptor, void *scratch,
                    nn_pool *pool)
{
    size_t conv_scratch = resnet_scratch_size(net, pool) - 4 * (size_t)ACT_FLOATS * sizeof(float);
    float *a = (float *)((char *)scratch + conv_scratch);
    float *b = a + ACT_FLOATS, *t1 = b + ACT_FLOATS, *t2 = t1 + ACT_FLOATS;
    float mean[256];
    int h;

    nn_conv_forward(&net->conv0, input, 150, 150, a, NULL, scratch, pool); /* 72x72x32 */
    nn_maxpool(a, 72, 72, 32, 3, 2, NN_PAD_VALID, b);                       /* 35x35x32 */
    h = 35;
    for (int i = 0; i < NBLOCKS; i++) {
        h = run_block(&net->b[i], b, h, a, t1, t2, scratch, pool);
        float *swap = a;
        a = b;
        b = swap;
    }
    /* b holds h x h x 256 (h = 4): mean over space, then FC. */
    for (int c = 0; c < 256; c++) {
        float s = 0;
        for (int p = 0; p < h * h; p++)
            s += b[(size_t)p * 256 + c];
        mean[c] = s / (float)(h * h);
    }
    nn_fc(mean, 256, net->fc, NULL, 128, descriptor);
}

size_t resnet_work_size(const resnet *net, const nn_pool *pool)
{
    size_t s = resnet_scratch_size(net, pool), t = resnet_scratch_size(net, NULL);
    return LETHE_MAX(s, t) + (size_t)RESNET_INPUT * RESNET_INPUT * 3 * sizeof(float);
}

int resnet_describe_rgb(const resnet *net, const uint8_t *rgb, int w, int h, float *descriptor,
                        nn_pool *pool, void *work)
{
    size_t n_in = (size_t)RESNET_INPUT * RESNET_INPUT * 3;
    size_t work_size = resnet_work_size(net, pool);
    void *own = NULL;
    float *in;

    if (!work) {
        own = work = lethe_malloc_aligned(work_size);
        if (!work)
            return LETHE_ERR_NOMEM;
    }
    /* the input tensor sits at the end of the working memory */
    in = (float *)((char *)work + work_size - n_in * sizeof(float));
    if (w == RESNET_INPUT && h == RESNET_INPUT) {
        prep_rgb_to_float(rgb, w, h, in);
    } else {
        int side = LETHE_MAX(w, h);
        size_t n_src = (size_t)w * h * 3, n_sq = (size_t)side * side * 3;
        float *src = lethe_malloc_aligned((n_src + n_sq) * sizeof(float));
        if (!src) {
            lethe_free_aligned(own);
            return LETHE_ERR_NOMEM;
        }
        prep_rgb_to_float(rgb, w, h, src);
        prep_pad_to_square(src, w, h, 3, 1, src + n_src, NULL, NULL);
        if (side != RESNET_INPUT)
            prep_resize_bilinear(src + n_src, side, side, 3, in, RESNET_INPUT, RESNET_INPUT);
        else
            memcpy(in, src + n_src, n_in * sizeof(float));
        lethe_free_aligned(src);
    }
    prep_normalize(in, RESNET_INPUT, RESNET_INPUT, face_mean_rgb, 255.0f);
    resnet_forward(net, in, descriptor, work, pool);
    lethe_free_aligned(own);
    return LETHE_OK;
}
