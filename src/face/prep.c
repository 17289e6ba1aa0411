/*
 * prep.c: network input preparation matching face-api.js on tfjs (see prep.h).
 * The arithmetic follows tfjs's CPU kernels operation for operation, in
 * float32, so that the same pixels give the same input tensor.
 */
#include "prep.h"

#include <math.h>
#include <string.h>

void prep_rgb_to_float(const uint8_t *rgb, int w, int h, float *out)
{
    size_t n = (size_t)w * (size_t)h * 3;
    for (size_t i = 0; i < n; i++)
        out[i] = (float)rgb[i];
}

void prep_pad_to_square(const float *in, int w, int h, int c, int centered, float *out,
                        int *off_x, int *off_y)
{
    int side = w > h ? w : h;
    int diff = side - (w < h ? w : h);
    /* padToSquare appends Math.round(diff * 0.5) (or all of diff) and
     * prepends what remains. */
    int append = centered ? (int)floor(diff * 0.5 + 0.5) : diff;
    int prepend = diff - append;
    int ox = 0, oy = 0;

    if (w < h)
        ox = prepend;
    else if (h < w)
        oy = prepend;
    memset(out, 0, (size_t)side * side * c * sizeof(float));
    for (int y = 0; y < h; y++)
        memcpy(out + (((size_t)(y + oy) * side) + ox) * c, in + (size_t)y * w * c,
               (size_t)w * c * sizeof(float));
    if (off_x)
        *off_x = ox;
    if (off_y)
        *off_y = oy;
}

void prep_resize_bilinear(const float *in, int w, int h, int c, float *out, int ow, int oh)
{
    /* tfjs resizeBilinear, alignCorners = false, halfPixelCenters = false. */
    float ry = (float)h / (float)oh;
    float rx = (float)w / (float)ow;

    for (int y = 0; y < oh; y++) {
        float sy = ry * (float)y;
        int y0 = (int)floorf(sy);
        float fy = sy - (float)y0;
        int y1 = (int)ceilf(sy);
        if (y1 > h - 1)
            y1 = h - 1;
        if (y0 > h - 1)
            y0 = h - 1;
        for (int x = 0; x < ow; x++) {
            float sx = rx * (float)x;
            int x0 = (int)floorf(sx);
            float fx = sx - (float)x0;
            int x1 = (int)ceilf(sx);
            if (x1 > w - 1)
                x1 = w - 1;
            if (x0 > w - 1)
                x0 = w - 1;
            const float *tl = in + ((size_t)y0 * w + x0) * c;
            const float *tr = in + ((size_t)y0 * w + x1) * c;
            const float *bl = in + ((size_t)y1 * w + x0) * c;
            const float *br = in + ((size_t)y1 * w + x1) * c;
            float *o = out + ((size_t)y * ow + x) * c;
            for (int k = 0; k < c; k++) {
                float top = tl[k] + (tr[k] - tl[k]) * fx;
                float bottom = bl[k] + (br[k] - bl[k]) * fx;
                o[k] = top + (bottom - top) * fy;
            }
        }
    }
}

void prep_normalize(float *x, int w, int h, const float mean[3], float div)
{
    size_t n = (size_t)w * (size_t)h;
    for (size_t i = 0; i < n; i++) {
        x[3 * i + 0] = (x[3 * i + 0] - mean[0]) / div;
        x[3 * i + 1] = (x[3 * i + 1] - mean[1]) / div;
        x[3 * i + 2] = (x[3 * i + 2] - mean[2]) / div;
    }
}

void prep_div_sub(float *x, size_t n, float div, float sub)
{
    for (size_t i = 0; i < n; i++)
        x[i] = x[i] / div - sub;
}

void prep_shrink_rgb8(const uint8_t *in, int w, int h, uint8_t *out, int ow, int oh)
{
    double sx = (double)w / ow, sy = (double)h / oh;

    for (int y = 0; y < oh; y++) {
        double y0 = y * sy, y1 = y0 + sy;
        for (int x = 0; x < ow; x++) {
            double x0 = x * sx, x1 = x0 + sx, acc[3] = {0, 0, 0}, area = 0;
            for (int yy = (int)y0; yy < h && yy < y1; yy++) {
                double wy = fmin(y1, yy + 1) - fmax(y0, yy);
                for (int xx = (int)x0; xx < w && xx < x1; xx++) {
                    double wgt = wy * (fmin(x1, xx + 1) - fmax(x0, xx));
                    const uint8_t *p = in + ((size_t)yy * w + xx) * 3;
                    acc[0] += wgt * p[0];
                    acc[1] += wgt * p[1];
                    acc[2] += wgt * p[2];
                    area += wgt;
                }
            }
            uint8_t *o = out + ((size_t)y * ow + x) * 3;
            for (int c = 0; c < 3; c++)
                o[c] = (uint8_t)lrint(area > 0 ? acc[c] / area : 0);
        }
    }
}
