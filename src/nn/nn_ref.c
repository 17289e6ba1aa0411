/*
 * nn_ref.c: the plain C reference kernels. They are written as the
 * definitions read (direct loops over the output, then the window, with
 * TensorFlow's padding) so that they are obviously right; every optimised
 * kernel is tested against them. Compiled without ISA flags.
 */
#include <float.h>

#include "nn/nn_int.h"

void nn_ref_conv(const nn_conv *c, const float *in, int h, int w, float *out,
                 const float *residual)
{
    int oh = nn_out_size(h, c->kh, c->stride, c->pad);
    int ow = nn_out_size(w, c->kw, c->stride, c->pad);
    int pt = nn_pad_before(h, c->kh, c->stride, c->pad);
    int pl = nn_pad_before(w, c->kw, c->stride, c->pad);

    for (int oy = 0; oy < oh; oy++) {
        for (int ox = 0; ox < ow; ox++) {
            size_t o = ((size_t)oy * ow + ox) * c->cout;
            for (int co = 0; co < c->cout; co++) {
                float acc = 0.0f;
                for (int ky = 0; ky < c->kh; ky++) {
                    int iy = oy * c->stride - pt + ky;
                    if (iy < 0 || iy >= h)
                        continue; /* zero padding */
                    for (int kx = 0; kx < c->kw; kx++) {
                        int ix = ox * c->stride - pl + kx;
                        if (ix < 0 || ix >= w)
                            continue;
                        const float *x = in + ((size_t)iy * w + ix) * c->cin;
                        const float *wk =
                            c->w + ((size_t)ky * c->kw + kx) * c->cin * c->cout + co;
                        for (int ci = 0; ci < c->cin; ci++)
                            acc += x[ci] * wk[(size_t)ci * c->cout];
                    }
                }
                float y = c->scale[co] * acc + c->shift[co];
                if (residual)
                    y += residual[o + co];
                out[o + co] = nn_act1(y, c->act);
            }
        }
    }
}

void nn_ref_dwconv(const nn_dwconv *d, const float *in, int h, int w, float *out)
{
    nn_ref_dwconv_rows(d, in, h, w, out, 0, nn_out_size(h, d->k, d->stride, d->pad));
}

void nn_ref_dwconv_rows(const nn_dwconv *d, const float *in, int h, int w, float *out, int oy0,
                        int oy1)
{
    int ow = nn_out_size(w, d->k, d->stride, d->pad);
    int pt = nn_pad_before(h, d->k, d->stride, d->pad);
    int pl = nn_pad_before(w, d->k, d->stride, d->pad);

    for (int oy = oy0; oy < oy1; oy++) {
        for (int ox = 0; ox < ow; ox++) {
            for (int ch = 0; ch < d->c; ch++) {
                float acc = 0.0f;
                for (int ky = 0; ky < d->k; ky++) {
                    int iy = oy * d->stride - pt + ky;
                    if (iy < 0 || iy >= h)
                        continue;
                    for (int kx = 0; kx < d->k; kx++) {
                        int ix = ox * d->stride - pl + kx;
                        if (ix < 0 || ix >= w)
                            continue;
                        acc += in[((size_t)iy * w + ix) * d->c + ch] *
                               d->w[((size_t)ky * d->k + kx) * d->c + ch];
                    }
                }
                out[((size_t)(oy - oy0) * ow + ox) * d->c + ch] =
                    nn_act1(d->scale[ch] * acc + d->shift[ch], d->act);
            }
        }
    }
}

void nn_ref_maxpool(const float *in, int h, int w, int c, int k, int stride, nn_pad pad,
                    float *out)
{
    int oh = nn_out_size(h, k, stride, pad);
    int ow = nn_out_size(w, k, stride, pad);
    int pt = nn_pad_before(h, k, stride, pad);
    int pl = nn_pad_before(w, k, stride, pad);

    /* Channels innermost, so that the compiler vectorises the max. */
    for (int oy = 0; oy < oh; oy++)
        for (int ox = 0; ox < ow; ox++) {
            float *o = out + ((size_t)oy * ow + ox) * c;
            for (int ch = 0; ch < c; ch++)
                o[ch] = -FLT_MAX; /* padding never wins (TF ignores it) */
            for (int ky = 0; ky < k; ky++) {
                int iy = oy * stride - pt + ky;
                if (iy < 0 || iy >= h)
                    continue;
                for (int kx = 0; kx < k; kx++) {
                    int ix = ox * stride - pl + kx;
                    if (ix < 0 || ix >= w)
                        continue;
                    const float *p = in + ((size_t)iy * w + ix) * c;
                    for (int ch = 0; ch < c; ch++)
                        o[ch] = p[ch] > o[ch] ? p[ch] : o[ch];
                }
            }
        }
}

void nn_ref_avgpool(const float *in, int h, int w, int c, int k, int stride, nn_pad pad,
                    float *out)
{
    int oh = nn_out_size(h, k, stride, pad);
    int ow = nn_out_size(w, k, stride, pad);
    int pt = nn_pad_before(h, k, stride, pad);
    int pl = nn_pad_before(w, k, stride, pad);

    for (int oy = 0; oy < oh; oy++)
        for (int ox = 0; ox < ow; ox++)
            for (int ch = 0; ch < c; ch++) {
                float sum = 0.0f;
                int count = 0; /* in-image elements only */
                for (int ky = 0; ky < k; ky++) {
                    int iy = oy * stride - pt + ky;
                    if (iy < 0 || iy >= h)
                        continue;
                    for (int kx = 0; kx < k; kx++) {
                        int ix = ox * stride - pl + kx;
                        if (ix < 0 || ix >= w)
                            continue;
                        sum += in[((size_t)iy * w + ix) * c + ch];
                        count++;
                    }
                }
                out[((size_t)oy * ow + ox) * c + ch] = count ? sum / (float)count : 0.0f;
            }
}

/* ------------------------------------------------------------------ */
/* int8 (see nn.h, "Reduced precision")                                 */
/* ------------------------------------------------------------------ */

void nn_ref_quantize(const float *x, size_t n, float inv, uint8_t *q)
{
    for (size_t i = 0; i < n; i++)
        q[i] = nn_quantize1(x[i], inv);
}

/* Weight (k, co) of the packed int8 form. */
static int qweight(const nn_qconv_packed *q, int k, int co)
{
    return q->b[(size_t)(co / NN_PANEL) * q->panel_len + (size_t)(k / 4) * 64 +
                (co % NN_PANEL) * 4 + k % 4];
}

void nn_ref_int8_gemm(const nn_conv *c, const uint8_t *a, size_t lda, int m, int32_t *acc)
{
    const nn_qconv_packed *q = c->qpacked;
    for (int r = 0; r < m; r++)
        for (int co = 0; co < c->cout; co++) {
            int32_t s = 0;
            for (int k = 0; k < q->kpad; k++)
                s += (int32_t)a[(size_t)r * lda + k] * qweight(q, k, co);
            acc[(size_t)r * c->cout + co] = s;
        }
}

void nn_ref_int8_conv(const nn_conv *c, const float *in, const uint8_t *inq, int h, int w,
                      float *out, const float *residual)
{
    const nn_qconv_packed *q = c->qpacked;
    int oh = nn_out_size(h, c->kh, c->stride, c->pad);
    int ow = nn_out_size(w, c->kw, c->stride, c->pad);
    int pt = nn_pad_before(h, c->kh, c->stride, c->pad);
    int pl = nn_pad_before(w, c->kw, c->stride, c->pad);

    for (int oy = 0; oy < oh; oy++) {
        for (int ox = 0; ox < ow; ox++) {
            size_t o = ((size_t)oy * ow + ox) * c->cout;
            for (int co = 0; co < c->cout; co++) {
                int32_t acc = 0, rowsum = 0;
                for (int ky = 0; ky < c->kh; ky++) {
                    int iy = oy * c->stride - pt + ky;
                    if (iy < 0 || iy >= h)
                        continue; /* zero padding quantises to 0 */
                    for (int kx = 0; kx < c->kw; kx++) {
                        int ix = ox * c->stride - pl + kx;
                        if (ix < 0 || ix >= w)
                            continue;
                        size_t at = ((size_t)iy * w + ix) * c->cin;
                        int k0 = (ky * c->kw + kx) * c->cin;
                        for (int ci = 0; ci < c->cin; ci++) {
                            int32_t xq = inq ? inq[at + ci] : nn_quantize1(in[at + ci], q->in_inv);
                            acc += xq * qweight(q, k0 + ci, co);
                            rowsum += xq;
                        }
                    }
                }
                float z = q->zero_point ? fmaf((float)rowsum, q->zmul[co], q->shift[co])
                                        : q->shift[co];
                float y = fmaf((float)acc, q->mul[co], z);
                if (residual)
                    y += residual[o + co];
                out[o + co] = nn_act1(y, c->act);
            }
        }
    }
}
