/*
 * align.h: from 68 landmarks to a face chip for the descriptor net.
 *
 * Two ways:
 *  - similarity (default): dlib-style. A rotation + uniform scale +
 *    translation maps the 51 inner landmarks (brows, nose, eyes, mouth;
 *    points 17..67) onto a mean-face template by least squares; the chip is
 *    150x150 with 25% padding around the template's bounding box, sampled with
 *    bilinear interpolation averaged over each chip pixel's footprint (so a
 *    large face is not aliased).
 *  - box: what face-api.js does (FaceLandmarks.align with useDlibAlignment):
 *    an axis-aligned square around the eyes and mouth, cropped as is.
 */
#ifndef LETHE_FACE_ALIGN_H
#define LETHE_FACE_ALIGN_H

#include <stdint.h>

#define ALIGN_TEMPLATE_POINTS 51 /* landmarks 17..67 */
#define ALIGN_CHIP_SIZE 150

/* The template, normalised so its bounding box is [0, 1] x [0, 1]. */
extern const float align_template[ALIGN_TEMPLATE_POINTS][2];

/*
 * Least-squares similarity transform taking src[i] to dst[i] (n points):
 * dst ~ [a -b; b a] src + [tx ty]. Writes m = {a, b, tx, ty}. Returns 0 if
 * the points are degenerate (all equal), else 1.
 */
int align_fit_similarity(const float (*src)[2], const float (*dst)[2], int n, double m[4]);

/* Where the template sits in the chip: its [0, 1] box grows by `padding` on
 * each side, and moves down by `shift` (a fraction of the chip's side).
 * Chosen on LFW View 1 (pairsDevTrain) with tools/tune_align.c. */
#define ALIGN_PADDING_DEFAULT 0.25f
#define ALIGN_SHIFT_DEFAULT -0.03f

/*
 * The transform from chip pixels to image pixels for a size x size chip:
 * image = [a -b; b a] chip + t. Returns 0 if degenerate.
 */
int align_chip_transform(const float landmarks[68][2], int size, float padding, float shift,
                         double m[4]);

/*
 * Sample a size x size RGB8 chip from an image through m (chip -> image).
 * Pixels outside the image are black.
 */
void align_extract_chip(const uint8_t *rgb, int w, int h, const double m[4], int size,
                        uint8_t *chip);

/* face-api's alignDlib box: {x, y, w, h} in whole pixels, clipped like
 * extractFaceTensors (clipAtImageBorders). face-api bounds the size by the
 * landmark crop's size (crop_w, crop_h), a quirk kept for parity. Returns 0
 * if empty. */
int align_box_faceapi(const float landmarks[68][2], int crop_w, int crop_h, int img_w,
                      int img_h, int box[4]);

#endif
