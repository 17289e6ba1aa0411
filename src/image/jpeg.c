/*
 * jpeg.c: JPEG decoding with libjpeg-turbo.
 *
 * libjpeg reports fatal errors by calling error_exit, which by default prints
 * and exits; here it records a message and longjmps back. The premature-end
 * warning (the source ran dry and libjpeg would pad with grey) is treated as
 * an error: a truncated upload must not become a half-grey face. Other
 * "corrupt data" warnings are tolerated, as every viewer does.
 *
 * Colour: grey, YCbCr and RGB are converted to RGB by libjpeg; CMYK and YCCK
 * (libjpeg turns YCCK into CMYK) are converted here, taking Adobe's inverted
 * CMYK convention when an Adobe APP14 marker is present.
 */
#include "image/image_int.h"

#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>

#include "util/util.h"

/* A progressive file with more scans than this is hostile: each scan makes
 * libjpeg walk the whole coefficient buffer. Real encoders use about 10. */
#define JPEG_MAX_SCANS 500

/* Scanlines fetched per jpeg_read_scanlines call. */
#define JPEG_ROWS_PER_READ 16

/* Everything the setjmp-protected code touches lives here, in the caller's
 * frame, so nothing is indeterminate after longjmp. */
typedef struct jpeg_ctx {
    struct jpeg_decompress_struct cinfo;
    struct jpeg_error_mgr err;
    struct jpeg_progress_mgr progress;
    jmp_buf jump;
    int status;                      /* status to return after the jump */
    char why[JMSG_LENGTH_MAX + 128]; /* message for the caller */
    uint8_t *rgb;                    /* output pixels (lethe_malloc) */
    uint8_t *cmyk_rows;              /* scratch rows for CMYK (lethe_malloc) */
} jpeg_ctx;

static void jpeg_fatal(j_common_ptr common)
{
    jpeg_ctx *ctx = common->client_data;
    char text[JMSG_LENGTH_MAX];
    int code = common->err->msg_code;

    (*common->err->format_message)(common, text);
    if (code == JERR_OUT_OF_MEMORY) {
        ctx->status = LETHE_ERR_NOMEM;
        snprintf(ctx->why, sizeof(ctx->why), "out of memory decoding JPEG (%s)", text);
    } else if (code == JERR_IMAGE_TOO_BIG) {
        j_decompress_ptr d = (j_decompress_ptr)common;
        ctx->status = LETHE_ERR_TOO_LARGE;
        snprintf(ctx->why, sizeof(ctx->why), "JPEG is %ux%u pixels: %s",
                 (unsigned)d->image_width, (unsigned)d->image_height, text);
    } else if (code == JERR_BAD_PRECISION || code == JERR_CONVERSION_NOTIMPL ||
               code == JERR_NOT_COMPILED) {
        ctx->status = LETHE_ERR_UNSUPPORTED;
        snprintf(ctx->why, sizeof(ctx->why), "unsupported JPEG: %s", text);
    } else {
        ctx->status = LETHE_ERR_FORMAT;
        snprintf(ctx->why, sizeof(ctx->why), "corrupt JPEG: %s", text);
    }
    longjmp(ctx->jump, 1);
}

static void jpeg_message(j_common_ptr common, int level)
{
    jpeg_ctx *ctx = common->client_data;

    if (level >= 0) /* trace messages */
        return;
    common->err->num_warnings++;
    if (common->err->msg_code == JWRN_JPEG_EOF) {
        ctx->status = LETHE_ERR_FORMAT;
        snprintf(ctx->why, sizeof(ctx->why), "truncated JPEG (the data ends before the image)");
        longjmp(ctx->jump, 1);
    }
    /* Entropy-coded data cut short by a marker: libjpeg would fill the rest
     * with grey; a damaged photo is refused instead of half-analysed. */
    if (common->err->msg_code == JWRN_HIT_MARKER) {
        ctx->status = LETHE_ERR_FORMAT;
        snprintf(ctx->why, sizeof(ctx->why),
                 "corrupt JPEG (the image data ends early: premature end of data segment)");
        longjmp(ctx->jump, 1);
    }
}

static void jpeg_quiet(j_common_ptr common) { (void)common; }

static void jpeg_progress(j_common_ptr common)
{
    jpeg_ctx *ctx = common->client_data;
    j_decompress_ptr d = (j_decompress_ptr)common;

    if (common->is_decompressor && d->input_scan_number > JPEG_MAX_SCANS) {
        ctx->status = LETHE_ERR_FORMAT;
        snprintf(ctx->why, sizeof(ctx->why), "corrupt JPEG: more than %d scans", JPEG_MAX_SCANS);
        longjmp(ctx->jump, 1);
    }
}

/* The orientation from the first APP1 segment that is EXIF. */
static int jpeg_orientation(j_decompress_ptr d)
{
    for (jpeg_saved_marker_ptr m = d->marker_list; m; m = m->next)
        if (m->marker == JPEG_APP0 + 1 && m->data_length >= 6 &&
            memcmp(m->data, "Exif\0\0", 6) == 0)
            return lethe_exif_orientation(m->data, m->data_length);
    return 1;
}

/* The smallest scale n/8 (n = 1, 2, 4, 8) whose longer side is >= min_side. */
static unsigned jpeg_scale_num(unsigned width, unsigned height, int min_side)
{
    unsigned longer = LETHE_MAX(width, height);

    if (min_side <= 0)
        return 8;
    for (unsigned num = 1; num < 8; num *= 2)
        if (((uint64_t)longer * num + 7) / 8 >= (uint64_t)min_side)
            return num;
    return 8;
}

static void cmyk_to_rgb(const uint8_t *in, uint8_t *out, size_t pixels, int adobe_inverted)
{
    for (size_t i = 0; i < pixels; i++, in += 4, out += 3) {
        unsigned c = in[0], m = in[1], y = in[2], k = in[3];
        if (!adobe_inverted) {
            c = 255 - c;
            m = 255 - m;
            y = 255 - y;
            k = 255 - k;
        }
        /* Now each value is the light let through: RGB = (1-C)(1-K) etc. */
        out[0] = (uint8_t)((c * k + 127) / 255);
        out[1] = (uint8_t)((m * k + 127) / 255);
        out[2] = (uint8_t)((y * k + 127) / 255);
    }
}

/* The decoding proper; libjpeg errors longjmp out to jpeg_decode_guarded. */
static int jpeg_decode_body(jpeg_ctx *ctx, const uint8_t *data, size_t len,
                            const lethe_image_options *opt, lethe_raw_image *raw)
{
    struct jpeg_decompress_struct *d = &ctx->cinfo;
    int cmyk, status;

    d->err = jpeg_std_error(&ctx->err);
    ctx->err.error_exit = jpeg_fatal;
    ctx->err.emit_message = jpeg_message;
    ctx->err.output_message = jpeg_quiet;
    d->client_data = ctx; /* kept by jpeg_create_decompress */
    jpeg_create_decompress(d);
    ctx->progress.progress_monitor = jpeg_progress;
    d->progress = &ctx->progress;

    jpeg_mem_src(d, data, (unsigned long)len);
    if (opt->apply_orientation)
        jpeg_save_markers(d, JPEG_APP0 + 1, 0xffff);
    if (jpeg_read_header(d, TRUE) != JPEG_HEADER_OK) {
        snprintf(ctx->why, sizeof(ctx->why), "JPEG holds only tables, no image");
        return LETHE_ERR_FORMAT;
    }
    status = lethe_image_check_limits(d->image_width, d->image_height, opt, "JPEG", ctx->why,
                                      sizeof(ctx->why));
    if (status != LETHE_OK)
        return status;
    raw->full_width = (int)d->image_width;
    raw->full_height = (int)d->image_height;
    raw->orientation = opt->apply_orientation ? jpeg_orientation(d) : 1;

    switch (d->jpeg_color_space) {
    case JCS_GRAYSCALE:
    case JCS_YCbCr:
    case JCS_RGB:
        d->out_color_space = JCS_RGB;
        cmyk = 0;
        break;
    case JCS_CMYK:
    case JCS_YCCK:
        d->out_color_space = JCS_CMYK;
        cmyk = 1;
        break;
    default:
        snprintf(ctx->why, sizeof(ctx->why),
                 "unsupported JPEG: %d colour components in an unknown colour space",
                 d->num_components);
        return LETHE_ERR_UNSUPPORTED;
    }
    d->scale_num = jpeg_scale_num(d->image_width, d->image_height, opt->min_decode_side);
    d->scale_denom = 8;

    jpeg_start_decompress(d);
    if (d->output_components != (cmyk ? 4 : 3) || d->output_width == 0 ||
        d->output_height == 0) {
        snprintf(ctx->why, sizeof(ctx->why), "corrupt JPEG: unexpected output format");
        return LETHE_ERR_FORMAT;
    }
    raw->width = (int)d->output_width;
    raw->height = (int)d->output_height;
    ctx->rgb = lethe_image_alloc_rgb(raw->width, raw->height);
    if (cmyk)
        ctx->cmyk_rows = lethe_malloc((size_t)d->output_width * 4 * JPEG_ROWS_PER_READ);
    if (!ctx->rgb || (cmyk && !ctx->cmyk_rows)) {
        snprintf(ctx->why, sizeof(ctx->why), "out of memory for a %ux%u JPEG",
                 (unsigned)d->output_width, (unsigned)d->output_height);
        return LETHE_ERR_NOMEM;
    }

    while (d->output_scanline < d->output_height) {
        JSAMPROW rows[JPEG_ROWS_PER_READ];
        size_t stride = (size_t)d->output_width * 3;
        unsigned first = d->output_scanline;
        unsigned want = LETHE_MIN(d->output_height - first, (unsigned)JPEG_ROWS_PER_READ);
        unsigned got;

        for (unsigned i = 0; i < want; i++)
            rows[i] = cmyk ? ctx->cmyk_rows + (size_t)i * d->output_width * 4
                           : ctx->rgb + (first + i) * stride;
        got = jpeg_read_scanlines(d, rows, want);
        if (got == 0) { /* only a suspending source does this */
            snprintf(ctx->why, sizeof(ctx->why), "truncated JPEG");
            return LETHE_ERR_FORMAT;
        }
        if (cmyk)
            cmyk_to_rgb(ctx->cmyk_rows, ctx->rgb + first * stride,
                        (size_t)got * d->output_width, d->saw_Adobe_marker);
    }
    /* No jpeg_finish_decompress: trailing data after the image is ignored. */
    return LETHE_OK;
}

/* The setjmp lives in a frame with no local state to be clobbered. */
static int jpeg_decode_guarded(jpeg_ctx *ctx, const uint8_t *data, size_t len,
                               const lethe_image_options *opt, lethe_raw_image *raw)
{
    if (setjmp(ctx->jump))
        return ctx->status;
    return jpeg_decode_body(ctx, data, len, opt, raw);
}

int lethe_jpeg_decode(const uint8_t *data, size_t len, const lethe_image_options *opt,
                      lethe_raw_image *raw, char *msg, size_t msg_len)
{
    jpeg_ctx ctx;
    int status;

    memset(&ctx, 0, sizeof(ctx));
    status = jpeg_decode_guarded(&ctx, data, len, opt, raw);
    jpeg_destroy_decompress(&ctx.cinfo); /* safe on a zeroed struct */
    lethe_free(ctx.cmyk_rows);
    if (status != LETHE_OK) {
        lethe_free(ctx.rgb);
        raw->rgb = NULL;
        return lethe_fail(msg, msg_len, status, "%s", ctx.why);
    }
    raw->rgb = ctx.rgb;
    return LETHE_OK;
}
