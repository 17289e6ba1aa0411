/*
 * orient.c: turn a picture stored with an EXIF Orientation tag upright.
 *
 * Orientation values (TIFF 6.0 / EXIF 2.3), by what the stored picture's
 * row 0 and column 0 are when displayed:
 *   1 top, left (as stored)        5 left, top     (transpose)
 *   2 top, right (mirror)          6 right, top    (rotate 90 clockwise)
 *   3 bottom, right (rotate 180)   7 right, bottom (transverse)
 *   4 bottom, left (flip)          8 left, bottom  (rotate 90 anticlockwise)
 */
#include "image/image_int.h"

#include <string.h>

#include "util/util.h"

int lethe_image_orient(lethe_raw_image *raw, int orientation)
{
    const size_t sw = (size_t)raw->width, sh = (size_t)raw->height;
    const uint8_t *src = raw->rgb;
    size_t dw, dh;
    uint8_t *dst;

    if (orientation < 2 || orientation > 8)
        return LETHE_OK;
    dst = lethe_image_alloc_rgb(raw->width, raw->height);
    if (!dst)
        return LETHE_ERR_NOMEM;
    dw = lethe_orientation_swaps_axes(orientation) ? sh : sw;
    dh = lethe_orientation_swaps_axes(orientation) ? sw : sh;

    /* For each displayed pixel (x, y) pick the stored pixel (sx, sy). */
    for (size_t y = 0; y < dh; y++) {
        uint8_t *out = dst + y * dw * 3;
        for (size_t x = 0; x < dw; x++, out += 3) {
            size_t sx, sy;
            switch (orientation) {
            case 2: sx = sw - 1 - x; sy = y; break;
            case 3: sx = sw - 1 - x; sy = sh - 1 - y; break;
            case 4: sx = x; sy = sh - 1 - y; break;
            case 5: sx = y; sy = x; break;
            case 6: sx = y; sy = sh - 1 - x; break;
            case 7: sx = sw - 1 - y; sy = sh - 1 - x; break;
            default: sx = sw - 1 - y; sy = x; break; /* 8 */
            }
            memcpy(out, src + (sy * sw + sx) * 3, 3);
        }
    }
    lethe_free(raw->rgb);
    raw->rgb = dst;
    raw->width = (int)dw;
    raw->height = (int)dh;
    return LETHE_OK;
}
