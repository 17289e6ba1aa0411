/*
 * align.c: similarity alignment and chip extraction (see align.h).
 */
#include "align.h"

#include <math.h>
#include <string.h>

int align_fit_similarity(const float (*src)[2], const float (*dst)[2], int n, double m[4])
{
    double sx = 0, sy = 0, dx = 0, dy = 0, num_a = 0, num_b = 0, den = 0;

    for (int i = 0; i < n; i++) {
        sx += src[i][0];
        sy += src[i][1];
        dx += dst[i][0];
        dy += dst[i][1];
    }
    sx /= n;
    sy /= n;
    dx /= n;
    dy /= n;
    for (int i = 0; i < n; i++) {
        double px = src[i][0] - sx, py = src[i][1] - sy;
        double qx = dst[i][0] - dx, qy = dst[i][1] - dy;
        num_a += px * qx + py * qy;
        num_b += px * qy - py * qx;
        den += px * px + py * py;
    }
    if (den <= 1e-12)
        return 0;
    m[0] = num_a / den;
    m[1] = num_b / den;
    m[2] = dx - (m[0] * sx - m[1] * sy);
    m[3] = dy - (m[1] * sx + m[0] * sy);
    return 1;
}

/* Landmarks the fit uses: nose, eyes and upper mouth. The brows and the
 * lower lip move with expression (and the landmark net places them less
 * surely), so, as dlib does, they place the template but not the fit. */
static int fit_point(int i)
{
    return !(i >= 17 && i <= 26) && !(i >= 55 && i <= 59) && !(i >= 65 && i <= 67);
}

int align_chip_transform(const float landmarks[68][2], int size, float padding, float shift,
                         double m[4])
{
    float src[ALIGN_TEMPLATE_POINTS][2], dst[ALIGN_TEMPLATE_POINTS][2];
    double fwd[4], det;
    int n = 0;

    for (int i = 0; i < ALIGN_TEMPLATE_POINTS; i++) {
        if (!fit_point(i + 17))
            continue;
        src[n][0] = landmarks[i + 17][0];
        src[n][1] = landmarks[i + 17][1];
        dst[n][0] = (align_template[i][0] + padding) / (1.0f + 2.0f * padding) * (float)size;
        dst[n][1] = ((align_template[i][1] + padding) / (1.0f + 2.0f * padding) + shift) *
                    (float)size;
        n++;
    }
    /* image -> chip, then invert to chip -> image */
    if (!align_fit_similarity((const float(*)[2])src, (const float(*)[2])dst, n, fwd))
        return 0;
    det = fwd[0] * fwd[0] + fwd[1] * fwd[1];
    if (det <= 1e-12)
        return 0;
    /* inverse of [a -b; b a] is [a b; -b a] / det */
    m[0] = fwd[0] / det;
    m[1] = -fwd[1] / det;
    m[2] = -(m[0] * fwd[2] - m[1] * fwd[3]);
    m[3] = -(m[1] * fwd[2] + m[0] * fwd[3]);
    return 1;
}

static void sample_bilinear(const uint8_t *rgb, int w, int h, double x, double y, double out[3])
{
    int x0 = (int)floor(x), y0 = (int)floor(y);
    double fx = x - x0, fy = y - y0;

    out[0] = out[1] = out[2] = 0;
    for (int j = 0; j < 2; j++) {
        int yy = y0 + j;
        double wy = j ? fy : 1 - fy;
        if (yy < 0 || yy >= h || wy == 0)
            continue;
        for (int i = 0; i < 2; i++) {
            int xx = x0 + i;
            double wgt = wy * (i ? fx : 1 - fx);
            if (xx < 0 || xx >= w || wgt == 0)
                continue;
            const uint8_t *p = rgb + ((size_t)yy * w + xx) * 3;
            out[0] += wgt * p[0];
            out[1] += wgt * p[1];
            out[2] += wgt * p[2];
        }
    }
}

void align_extract_chip(const uint8_t *rgb, int w, int h, const double m[4], int size,
                        uint8_t *chip)
{
    /* One chip pixel covers `scale` image pixels: average k x k bilinear
     * samples over that footprint when shrinking. */
    double scale = sqrt(m[0] * m[0] + m[1] * m[1]);
    int k = scale > 1.0 ? (int)ceil(scale) : 1;
    if (k > 8)
        k = 8;
    for (int y = 0; y < size; y++) {
        for (int x = 0; x < size; x++) {
            double acc[3] = {0, 0, 0}, s[3];
            for (int j = 0; j < k; j++) {
                for (int i = 0; i < k; i++) {
                    /* sub-sample positions centred in the chip pixel */
                    double cx = x + (i + 0.5) / k - 0.5, cy = y + (j + 0.5) / k - 0.5;
                    double ix = m[0] * cx - m[1] * cy + m[2];
                    double iy = m[1] * cx + m[0] * cy + m[3];
                    sample_bilinear(rgb, w, h, ix, iy, s);
                    acc[0] += s[0];
                    acc[1] += s[1];
                    acc[2] += s[2];
                }
            }
            uint8_t *o = chip + ((size_t)y * size + x) * 3;
            for (int c = 0; c < 3; c++) {
                double v = acc[c] / (k * k);
                o[c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : lrint(v));
            }
        }
    }
}

static void center_of(const float landmarks[68][2], int from, int to, double c[2])
{
    c[0] = c[1] = 0;
    for (int i = from; i < to; i++) {
        c[0] += landmarks[i][0];
        c[1] += landmarks[i][1];
    }
    c[0] /= (to - from);
    c[1] /= (to - from);
}

int align_box_faceapi(const float landmarks[68][2], int crop_w, int crop_h, int img_w,
                      int img_h, int box[4])
{
    double le[2], re[2], mo[2], ref[2];
    center_of(landmarks, 36, 42, le);
    center_of(landmarks, 42, 48, re);
    center_of(landmarks, 48, 68, mo);
    double d1 = hypot(mo[0] - le[0], mo[1] - le[1]);
    double d2 = hypot(mo[0] - re[0], mo[1] - re[1]);
    double size = floor(((d1 + d2) / 2) / 0.45);
    ref[0] = (le[0] + re[0] + mo[0]) / 3;
    ref[1] = (le[1] + re[1] + mo[1]) / 3;
    double x = floor(fmax(0, ref[0] - 0.5 * size));
    double y = floor(fmax(0, ref[1] - 0.43 * size));
    double bw = fmin(size, crop_w + x), bh = fmin(size, crop_h + y);
    /* clipAtImageBorders, then floor */
    double cx = fmax(x, 0), cy = fmax(y, 0);
    double cw = fmin(x + bw - cx, img_w - cx), ch = fmin(y + bh - cy, img_h - cy);
    box[0] = (int)floor(cx);
    box[1] = (int)floor(cy);
    box[2] = (int)floor(cw);
    box[3] = (int)floor(ch);
    return box[2] > 0 && box[3] > 0;
}
