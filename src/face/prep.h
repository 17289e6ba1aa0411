/*
 * prep.h: turning pixels into network input tensors exactly as face-api.js
 * does on tfjs: pad to square (padToSquare), tf.image.resizeBilinear
 * (align_corners = false, half_pixel_centers = false), then per-network
 * normalisation. All tensors float32 HWC.
 */
#ifndef LETHE_FACE_PREP_H
#define LETHE_FACE_PREP_H

#include <stddef.h>
#include <stdint.h>

/* RGB8 -> float32, same layout. */
void prep_rgb_to_float(const uint8_t *rgb, int w, int h, float *out);

/* Pad an HWC float image of c channels with zeros to a square of side
 * max(w, h). centered = 0 puts all padding after (bottom / right); centered = 1
 * puts round(diff / 2) after and the rest before, like padToSquare. Writes the
 * offsets of the original image in the square to *off_x, *off_y. */
void prep_pad_to_square(const float *in, int w, int h, int c, int centered, float *out,
                        int *off_x, int *off_y);

/* tf.image.resizeBilinear(in, [oh, ow], alignCorners = false) on HWC floats. */
void prep_resize_bilinear(const float *in, int w, int h, int c, float *out, int ow, int oh);

/* x = (x - mean[c]) / div for every pixel, in place, 3 channels
 * (face-api's normalize(x, meanRgb).div(255)). */
void prep_normalize(float *x, int w, int h, const float mean[3], float div);

/* x = x / div - sub, in place (SSD: tf.sub(tf.div(x, 127.5), 1)). */
void prep_div_sub(float *x, size_t n, float div, float sub);

/* Shrink (or copy) an RGB8 image to ow x oh by averaging the source area
 * each output pixel covers (no aliasing). ow <= w and oh <= h. */
void prep_shrink_rgb8(const uint8_t *in, int w, int h, uint8_t *out, int ow, int oh);

#endif
