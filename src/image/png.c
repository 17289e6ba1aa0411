/*
 * png.c: PNG decoding with libpng.
 *
 * Every PNG flavour becomes 8-bit RGB: palettes and 1/2/4-bit grey are
 * expanded, grey is copied to three channels, 16-bit samples are scaled to 8
 * bits (rounded), and alpha is dropped: the stored colour is kept as is, not
 * blended over a background. Interlaced (Adam7) files are de-interlaced.
 *
 * libpng's own allocations go through lethe_malloc so that fault-injection
 * tests reach them; its errors longjmp back here and its warnings are
 * silenced (the library never prints).
 */
#include "image/image_int.h"

#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include <png.h>

#include "util/util.h"

/* State shared with the libpng callbacks; lives in the caller's frame. */
typedef struct png_ctx {
    const uint8_t *data;  /* the file */
    size_t len;           /* its size */
    size_t pos;           /* read position */
    int truncated;        /* the reader ran past the end */
    int out_of_memory;    /* an allocation failed */
    char why[256];        /* libpng's error message */
    png_structp png;      /* libpng state */
    png_infop info;       /* header info */
    uint8_t *rgb;         /* output pixels (lethe_malloc) */
    png_bytep *rows;      /* row pointers into rgb (lethe_malloc) */
} png_ctx;

static void png_fatal(png_structp png, png_const_charp text)
{
    png_ctx *ctx = png_get_error_ptr(png);

    snprintf(ctx->why, sizeof(ctx->why), "%s", text ? text : "unknown error");
    png_longjmp(png, 1);
}

static void png_warning_quiet(png_structp png, png_const_charp text)
{
    (void)png;
    (void)text;
}

static png_voidp png_alloc(png_structp png, png_alloc_size_t n)
{
    png_ctx *ctx = png_get_mem_ptr(png);
    void *p = lethe_malloc(n);

    if (!p)
        ctx->out_of_memory = 1;
    return p;
}

static void png_dealloc(png_structp png, png_voidp p)
{
    (void)png;
    lethe_free(p);
}

static void png_read_mem(png_structp png, png_bytep out, size_t n)
{
    png_ctx *ctx = png_get_io_ptr(png);

    if (n > ctx->len - ctx->pos) {
        ctx->truncated = 1;
        png_error(png, "truncated PNG");
    }
    memcpy(out, ctx->data + ctx->pos, n);
    ctx->pos += n;
}

/* Ancillary chunks we never use: skipping them saves work on hostile input
 * (compressed text, ICC profiles). */
static const png_byte png_ignored_chunks[] = "iCCP\0iTXt\0tEXt\0zTXt\0sPLT\0eXIf\0"
                                             "tIME\0pCAL\0sCAL\0hIST\0pHYs\0oFFs\0";

/* The decoding proper; libpng errors longjmp out to png_decode_guarded. */
static int png_decode_body(png_ctx *ctx, const lethe_image_options *opt, lethe_raw_image *raw)
{
    png_structp png = ctx->png;
    png_infop info = ctx->info;
    png_uint_32 w, h;
    int depth, color, interlace, status;

    png_set_read_fn(png, ctx, png_read_mem);
    /* Let our own check produce the message; libpng's default would refuse
     * more than 1000000 per side with a vaguer one. */
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, png_ignored_chunks,
                                (int)((sizeof(png_ignored_chunks) - 1) / 5));
    png_read_info(png, info);
    png_get_IHDR(png, info, &w, &h, &depth, &color, &interlace, NULL, NULL);
    status = lethe_image_check_limits(w, h, opt, "PNG", ctx->why, sizeof(ctx->why));
    if (status != LETHE_OK)
        return status;

    png_set_expand(png); /* palette to RGB, low-bit grey to 8, tRNS to alpha */
#ifdef PNG_READ_SCALE_16_TO_8_SUPPORTED
    png_set_scale_16(png);
#else
    png_set_strip_16(png);
#endif
    png_set_strip_alpha(png);
    if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA)
        png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if (png_get_channels(png, info) != 3 || png_get_bit_depth(png, info) != 8 ||
        png_get_rowbytes(png, info) != (size_t)w * 3) {
        snprintf(ctx->why, sizeof(ctx->why), "PNG did not convert to 8-bit RGB");
        return LETHE_ERR_INTERNAL;
    }

    ctx->rgb = lethe_image_alloc_rgb((int)w, (int)h);
    ctx->rows = lethe_malloc((size_t)h * sizeof(*ctx->rows));
    if (!ctx->rgb || !ctx->rows) {
        snprintf(ctx->why, sizeof(ctx->why), "out of memory for a %ux%u PNG", (unsigned)w,
                 (unsigned)h);
        return LETHE_ERR_NOMEM;
    }
    for (png_uint_32 y = 0; y < h; y++)
        ctx->rows[y] = ctx->rgb + (size_t)y * w * 3;
    png_read_image(png, ctx->rows);
    /* No png_read_end: chunks after the image data do not matter here. */

    raw->width = raw->full_width = (int)w;
    raw->height = raw->full_height = (int)h;
    raw->orientation = 1; /* eXIf is ignored, see image_int.h */
    return LETHE_OK;
}

/* The setjmp lives in a frame with no local state to be clobbered. */
static int png_decode_guarded(png_ctx *ctx, const lethe_image_options *opt,
                              lethe_raw_image *raw)
{
    if (setjmp(png_jmpbuf(ctx->png))) {
        if (ctx->out_of_memory) {
            snprintf(ctx->why, sizeof(ctx->why), "out of memory decoding PNG");
            return LETHE_ERR_NOMEM;
        }
        if (ctx->truncated) {
            snprintf(ctx->why, sizeof(ctx->why), "truncated PNG (the data ends early)");
            return LETHE_ERR_FORMAT;
        }
        {
            char text[sizeof(ctx->why)];
            memcpy(text, ctx->why, sizeof(text));
            snprintf(ctx->why, sizeof(ctx->why), "corrupt PNG: %.200s", text);
        }
        return LETHE_ERR_FORMAT;
    }
    return png_decode_body(ctx, opt, raw);
}

int lethe_png_decode(const uint8_t *data, size_t len, const lethe_image_options *opt,
                     lethe_raw_image *raw, char *msg, size_t msg_len)
{
    png_ctx ctx;
    int status;

    memset(&ctx, 0, sizeof(ctx));
    ctx.data = data;
    ctx.len = len;
    ctx.png = png_create_read_struct_2(PNG_LIBPNG_VER_STRING, &ctx, png_fatal,
                                       png_warning_quiet, &ctx, png_alloc, png_dealloc);
    if (ctx.png)
        ctx.info = png_create_info_struct(ctx.png);
    if (!ctx.png || !ctx.info) {
        png_destroy_read_struct(ctx.png ? &ctx.png : NULL, NULL, NULL);
        return lethe_fail(msg, msg_len, LETHE_ERR_NOMEM, "out of memory starting the PNG decoder");
    }
    status = png_decode_guarded(&ctx, opt, raw);
    png_destroy_read_struct(&ctx.png, &ctx.info, NULL);
    lethe_free(ctx.rows);
    if (status != LETHE_OK) {
        lethe_free(ctx.rgb);
        raw->rgb = NULL;
        return lethe_fail(msg, msg_len, status, "%s", ctx.why);
    }
    raw->rgb = ctx.rgb;
    return LETHE_OK;
}
