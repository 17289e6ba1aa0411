/*
 * image_int.h: the private contract between the image front end (image.c:
 * sniffing, limits, public API) and the per-format decoders (jpeg.c, png.c,
 * webp.c), the EXIF parser (exif.c) and the orientation transform (orient.c).
 *
 * Size contract, as seen by a caller of lethe_image_decode():
 *   - width/height are the size of rgb, after the EXIF orientation was
 *     applied and after any reduced-scale (DCT) JPEG decoding.
 *   - orig_width/orig_height are the size of the picture at full resolution
 *     in the same orientation as width/height. A box found on the returned
 *     pixels maps back to full-resolution pixels by multiplying x by
 *     orig_width / width and y by orig_height / height. Without reduced-scale
 *     decoding they equal width/height.
 *   - When apply_orientation is 0, both pairs are in stored (unrotated) order.
 *
 * Limits: every decoder calls lethe_image_check_limits() on the stored
 * full-resolution size as soon as the header is read and before it allocates
 * any pixel buffer, so a header claiming 65536x65536 costs nothing.
 *
 * Alpha: PNG and WebP alpha channels are dropped (the stored colour is kept,
 * not blended over a background). EXIF is only read from JPEG APP1; the eXIf
 * chunk of PNG and the EXIF chunk of WebP are ignored, as browsers did for
 * years, because such files are rare and usually already upright.
 */
#ifndef LETHE_IMAGE_INT_H
#define LETHE_IMAGE_INT_H

#include <stddef.h>
#include <stdint.h>

#include "lethe.h"

/* What a format decoder hands back: pixels in stored orientation. */
typedef struct lethe_raw_image {
    int width;        /* pixels in rgb (possibly reduced-scale) */
    int height;       /* pixels in rgb (possibly reduced-scale) */
    int full_width;   /* stored picture size at full resolution */
    int full_height;  /* stored picture size at full resolution */
    int orientation;  /* EXIF orientation 1..8; 1 when absent or ignored */
    uint8_t *rgb;     /* width*height*3 bytes, lethe_malloc'd, owned */
} lethe_raw_image;

/*
 * Options with every default filled in (max_pixels > 0, max_dimension > 0),
 * as the decoders expect them.
 */
void lethe_image_resolve_options(const lethe_image_options *opt, lethe_image_options *out);

/*
 * Refuse a picture of width x height (as stored, full resolution) if a side
 * is zero, a side exceeds opt->max_dimension or the area exceeds
 * opt->max_pixels. format names the format in the message ("PNG").
 */
int lethe_image_check_limits(uint64_t width, uint64_t height, const lethe_image_options *opt,
                             const char *format, char *msg, size_t msg_len);

/* Allocate width*height*3 bytes with overflow checking; NULL on failure. */
uint8_t *lethe_image_alloc_rgb(int width, int height);

/*
 * Format decoders. data/len is the whole file, already sniffed as the right
 * format; opt is resolved. On success *raw is filled and owns its pixels; on
 * failure raw->rgb is NULL and a status with a message is returned.
 */
int lethe_jpeg_decode(const uint8_t *data, size_t len, const lethe_image_options *opt,
                      lethe_raw_image *raw, char *msg, size_t msg_len);
int lethe_png_decode(const uint8_t *data, size_t len, const lethe_image_options *opt,
                     lethe_raw_image *raw, char *msg, size_t msg_len);
int lethe_webp_decode(const uint8_t *data, size_t len, const lethe_image_options *opt,
                      lethe_raw_image *raw, char *msg, size_t msg_len);

/*
 * The Orientation tag (0x0112) of an EXIF block: the payload of a JPEG APP1
 * segment, starting with "Exif\0\0" and followed by a TIFF header. Returns
 * 1..8, or 1 when the block is malformed or has no valid tag. Every offset
 * is bounds-checked: data may be hostile.
 */
int lethe_exif_orientation(const uint8_t *data, size_t len);

/* Does this EXIF orientation swap width and height (5..8)? */
static inline int lethe_orientation_swaps_axes(int orientation)
{
    return orientation >= 5 && orientation <= 8;
}

/*
 * Rotate/flip raw->rgb so that it displays upright for an EXIF orientation
 * (1..8), updating raw->width/height. Allocates the new buffer before freeing
 * the old one: on LETHE_ERR_NOMEM raw is unchanged.
 */
int lethe_image_orient(lethe_raw_image *raw, int orientation);

#endif
