/*
 * image.c: the public image API. Recognises the format from its magic bytes
 * (never from a file name), enforces the size limits shared by all decoders,
 * hands off to jpeg.c/png.c/webp.c and applies the EXIF orientation.
 */
#include "image/image_int.h"

#include <string.h>

#include "util/util.h"

/* lethe_image_load refuses files larger than this. */
#define LETHE_IMAGE_MAX_FILE_BYTES ((size_t)256 << 20)

/* The side limit when the options say 0. */
#define LETHE_IMAGE_MAX_DIMENSION_DEFAULT 65535

void lethe_image_options_init(lethe_image_options *opt)
{
    if (!opt)
        return;
    memset(opt, 0, sizeof(*opt));
    opt->max_pixels = LETHE_IMAGE_MAX_PIXELS_DEFAULT;
    opt->max_dimension = LETHE_IMAGE_MAX_DIMENSION_DEFAULT;
    opt->min_decode_side = 0;
    opt->apply_orientation = 1;
}

void lethe_image_resolve_options(const lethe_image_options *opt, lethe_image_options *out)
{
    if (opt)
        *out = *opt;
    else
        lethe_image_options_init(out);
    if (out->max_pixels == 0)
        out->max_pixels = LETHE_IMAGE_MAX_PIXELS_DEFAULT;
    if (out->max_dimension <= 0)
        out->max_dimension = LETHE_IMAGE_MAX_DIMENSION_DEFAULT;
    if (out->min_decode_side < 0)
        out->min_decode_side = 0;
}

int lethe_image_check_limits(uint64_t width, uint64_t height, const lethe_image_options *opt,
                             const char *format, char *msg, size_t msg_len)
{
    uint64_t max_side = (uint64_t)opt->max_dimension;

    if (width == 0 || height == 0)
        return lethe_fail(msg, msg_len, LETHE_ERR_FORMAT, "%s header gives an empty size %llux%llu",
                          format, (unsigned long long)width, (unsigned long long)height);
    if (width > max_side || height > max_side)
        return lethe_fail(msg, msg_len, LETHE_ERR_TOO_LARGE,
                          "%s is %llux%llu pixels, a side exceeds the limit of %llu",
                          format, (unsigned long long)width, (unsigned long long)height,
                          (unsigned long long)max_side);
    /* Both sides fit in 32 bits here, so the product cannot overflow. */
    if (width * height > opt->max_pixels)
        return lethe_fail(msg, msg_len, LETHE_ERR_TOO_LARGE,
                          "%s is %llux%llu = %llu pixels, more than the limit of %llu", format,
                          (unsigned long long)width, (unsigned long long)height,
                          (unsigned long long)(width * height),
                          (unsigned long long)opt->max_pixels);
    return LETHE_OK;
}

uint8_t *lethe_image_alloc_rgb(int width, int height)
{
    size_t row, total;

    if (width <= 0 || height <= 0)
        return NULL;
    if (!lethe_mul_size((size_t)width, 3, &row) || !lethe_mul_size(row, (size_t)height, &total))
        return NULL;
    return lethe_malloc(total);
}

/* Formats recognised only to say clearly that they are not supported. */
static const struct {
    size_t offset;      /* where the magic starts */
    size_t len;         /* bytes of magic */
    const char *magic;  /* the bytes */
    const char *name;   /* for the message */
} unsupported_formats[] = {
    {0, 6, "GIF87a", "GIF"},
    {0, 6, "GIF89a", "GIF"},
    {0, 4, "II*\0", "TIFF"},
    {0, 4, "MM\0*", "TIFF"},
    {4, 8, "ftypheic", "HEIC"},
    {4, 8, "ftypheix", "HEIC"},
    {4, 8, "ftypmif1", "HEIF"},
    {4, 8, "ftypavif", "AVIF"},
    {0, 12, "\0\0\0\x0cjP  \r\n\x87\n", "JPEG 2000"},
    {0, 12, "\0\0\0\x0cJXL \r\n\x87\n", "JPEG XL"},
    {0, 2, "\xff\x0a", "JPEG XL"},
    {0, 4, "8BPS", "Photoshop PSD"},
    {0, 4, "\0\0\1\0", "ICO"},
    {0, 4, "qoif", "QOI"},
};

/* A BMP starts with "BM" and its DIB header has one of a few sizes. */
static int looks_like_bmp(const uint8_t *d, size_t len)
{
    uint32_t dib;

    if (len < 18 || d[0] != 'B' || d[1] != 'M')
        return 0;
    dib = (uint32_t)d[14] | (uint32_t)d[15] << 8 | (uint32_t)d[16] << 16 | (uint32_t)d[17] << 24;
    return dib == 12 || dib == 40 || dib == 52 || dib == 56 || dib == 64 || dib == 108 ||
           dib == 124;
}

/* Printable ASCII or UTF-8 in the first bytes: someone passed a text file. */
static int looks_like_text(const uint8_t *d, size_t len)
{
    size_t n = LETHE_MIN(len, (size_t)512);

    for (size_t i = 0; i < n; i++)
        if (d[i] < 0x20 && d[i] != '\n' && d[i] != '\r' && d[i] != '\t' && d[i] != '\f')
            return 0;
    return 1;
}

static int refuse_unknown(const uint8_t *d, size_t len, char *msg, size_t msg_len)
{
    for (size_t i = 0; i < LETHE_ARRAY_LEN(unsupported_formats); i++) {
        size_t off = unsupported_formats[i].offset, n = unsupported_formats[i].len;
        if (len >= off + n && memcmp(d + off, unsupported_formats[i].magic, n) == 0)
            return lethe_fail(msg, msg_len, LETHE_ERR_UNSUPPORTED,
                              "unsupported image format (%s); use JPEG, PNG or WebP",
                              unsupported_formats[i].name);
    }
    if (looks_like_bmp(d, len))
        return lethe_fail(msg, msg_len, LETHE_ERR_UNSUPPORTED,
                          "unsupported image format (BMP); use JPEG, PNG or WebP");
    if (looks_like_text(d, len))
        return lethe_fail(msg, msg_len, LETHE_ERR_FORMAT,
                          "not an image: the data looks like text");
    if (len < 4)
        return lethe_fail(msg, msg_len, LETHE_ERR_FORMAT,
                          "not an image: only %zu bytes, too short for any format", len);
    return lethe_fail(msg, msg_len, LETHE_ERR_FORMAT,
                      "not a JPEG, PNG or WebP image (starts with %02x %02x %02x %02x)", d[0],
                      d[1], d[2], d[3]);
}

int lethe_image_decode(const void *data, size_t len, const lethe_image_options *opt,
                       lethe_image **out, char *msg, size_t msg_len)
{
    static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    const uint8_t *d = data;
    lethe_image_options o;
    lethe_raw_image raw;
    lethe_image *img;
    int full_w, full_h, status;

    if (msg && msg_len)
        msg[0] = '\0';
    if (!out)
        return lethe_fail(msg, msg_len, LETHE_ERR_ARG, "lethe_image_decode: out is NULL");
    *out = NULL;
    if (!d && len)
        return lethe_fail(msg, msg_len, LETHE_ERR_ARG, "lethe_image_decode: data is NULL");
    if (len == 0)
        return lethe_fail(msg, msg_len, LETHE_ERR_FORMAT, "empty input: 0 bytes, not an image");
    lethe_image_resolve_options(opt, &o);

    memset(&raw, 0, sizeof(raw));
    if (len >= 3 && d[0] == 0xff && d[1] == 0xd8 && d[2] == 0xff)
        status = lethe_jpeg_decode(d, len, &o, &raw, msg, msg_len);
    else if (len >= 8 && memcmp(d, png_magic, 8) == 0)
        status = lethe_png_decode(d, len, &o, &raw, msg, msg_len);
    else if (len >= 12 && memcmp(d, "RIFF", 4) == 0 && memcmp(d + 8, "WEBP", 4) == 0)
        status = lethe_webp_decode(d, len, &o, &raw, msg, msg_len);
    else
        return refuse_unknown(d, len, msg, msg_len);
    if (status != LETHE_OK) {
        lethe_free(raw.rgb);
        return status;
    }

    if (!o.apply_orientation)
        raw.orientation = 1;
    full_w = raw.full_width;
    full_h = raw.full_height;
    if (lethe_orientation_swaps_axes(raw.orientation)) {
        full_w = raw.full_height;
        full_h = raw.full_width;
    }
    img = lethe_malloc(sizeof(*img));
    if (!img || lethe_image_orient(&raw, raw.orientation) != LETHE_OK) {
        lethe_free(img);
        lethe_free(raw.rgb);
        return lethe_fail(msg, msg_len, LETHE_ERR_NOMEM, "out of memory decoding a %dx%d image",
                          raw.width, raw.height);
    }
    img->width = raw.width;
    img->height = raw.height;
    img->rgb = raw.rgb;
    img->orig_width = full_w;
    img->orig_height = full_h;
    *out = img;
    return LETHE_OK;
}

int lethe_image_load(const char *path, const lethe_image_options *opt, lethe_image **out,
                     char *msg, size_t msg_len)
{
    uint8_t *buf;
    size_t len;
    char why[256];
    int status;

    if (msg && msg_len)
        msg[0] = '\0';
    if (!out)
        return lethe_fail(msg, msg_len, LETHE_ERR_ARG, "lethe_image_load: out is NULL");
    *out = NULL;
    if (!path)
        return lethe_fail(msg, msg_len, LETHE_ERR_ARG, "lethe_image_load: path is NULL");
    /* lethe_read_file's messages already name the path. */
    status = lethe_read_file(path, LETHE_IMAGE_MAX_FILE_BYTES, &buf, &len, msg, msg_len);
    if (status != LETHE_OK)
        return status;
    why[0] = '\0';
    status = lethe_image_decode(buf, len, opt, out, why, sizeof(why));
    lethe_free(buf);
    if (status != LETHE_OK)
        return lethe_fail(msg, msg_len, status, "%s: %s", path, why);
    return LETHE_OK;
}

int lethe_image_from_rgb(const uint8_t *rgb, int width, int height, lethe_image **out)
{
    lethe_image *img;
    size_t bytes;

    if (!out)
        return LETHE_ERR_ARG;
    *out = NULL;
    if (!rgb || width <= 0 || height <= 0)
        return LETHE_ERR_ARG;
    if (!lethe_mul_size((size_t)width, (size_t)height, &bytes) ||
        !lethe_mul_size(bytes, 3, &bytes))
        return LETHE_ERR_TOO_LARGE;
    img = lethe_malloc(sizeof(*img));
    if (!img)
        return LETHE_ERR_NOMEM;
    img->rgb = lethe_image_alloc_rgb(width, height);
    if (!img->rgb) {
        lethe_free(img);
        return LETHE_ERR_NOMEM;
    }
    memcpy(img->rgb, rgb, bytes);
    img->width = img->orig_width = width;
    img->height = img->orig_height = height;
    *out = img;
    return LETHE_OK;
}

void lethe_image_free(lethe_image *img)
{
    if (!img)
        return;
    lethe_free(img->rgb);
    lethe_free(img);
}
