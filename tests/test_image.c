/*
 * test_image.c: the image layer (src/image). Pictures are made here with the
 * libjpeg, libpng and libwebp encoders, decoded through lethe_image_decode
 * and compared pixel by pixel; hostile and broken inputs must fail cleanly,
 * and every allocation failure must surface as LETHE_ERR_NOMEM without a leak
 * (run under ASan). Real photos from ../shared/data are decoded when present.
 *
 *   test_image                     run the tests
 *   test_image --write-corpus DIR  write the fuzz seed images into DIR
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include <jpeglib.h>
#include <png.h>
#include <webp/encode.h>
#include <zlib.h>

#include "image/image_int.h"
#include "lethe.h"
#include "test.h"
#include "util/util.h"

/* ---------------------------------------------------------------- */
/* Helpers: buffers, pixel checks                                     */
/* ---------------------------------------------------------------- */

typedef struct membuf {
    uint8_t *p;
    size_t len, cap;
} membuf;

static void membuf_put(membuf *b, const void *d, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->len + n)
            cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p) {
            perror("realloc");
            exit(2);
        }
        b->cap = cap;
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

static void membuf_u32be(membuf *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    membuf_put(b, x, 4);
}

static int decode(const void *d, size_t n, const lethe_image_options *opt, lethe_image **img,
                  char *msg, size_t msg_len)
{
    *img = NULL;
    return lethe_image_decode(d, n, opt, img, msg, msg_len);
}

/* Is pixel (x, y) within tol of (r, g, b)? Prints the difference if not. */
static int pixel_near(const lethe_image *img, int x, int y, int r, int g, int b, int tol)
{
    const uint8_t *p = img->rgb + ((size_t)y * img->width + x) * 3;
    if (abs(p[0] - r) <= tol && abs(p[1] - g) <= tol && abs(p[2] - b) <= tol)
        return 1;
    fprintf(stderr, "    pixel (%d,%d) is %d,%d,%d, expected %d,%d,%d (+-%d)\n", x, y, p[0], p[1],
            p[2], r, g, b, tol);
    return 0;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* A deterministic pseudo-random byte stream. */
static uint32_t rng_state = 12345;
static uint8_t rng_byte(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return (uint8_t)(rng_state >> 11);
}

/* A test pattern that differs in every channel and position. */
static uint8_t pattern(int x, int y, int c) { return (uint8_t)(x * 37 + y * 11 + c * 85 + x * y); }

/* ---------------------------------------------------------------- */
/* Encoders                                                           */
/* ---------------------------------------------------------------- */

typedef struct png_spec {
    int width, height;
    int color_type;         /* PNG_COLOR_TYPE_* */
    int bit_depth;          /* 1, 2, 4, 8, 16 */
    int interlace;          /* PNG_INTERLACE_NONE or _ADAM7 */
    const uint8_t *rows;    /* packed rows as PNG stores them (16-bit big-endian) */
    size_t row_bytes;
    const png_color *palette;
    int palette_len;
    const uint8_t *trns;
    int trns_len;
} png_spec;

static void png_write_membuf(png_structp png, png_bytep d, size_t n)
{
    membuf_put(png_get_io_ptr(png), d, n);
}

static void png_flush_nothing(png_structp png) { (void)png; }

/* Returns a malloc'd PNG (free with free) or exits: encoder failure is a
 * broken test, not a result. */
static uint8_t *png_encode(const png_spec *s, size_t *len)
{
    static membuf out; /* static: survives longjmp */
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);

    memset(&out, 0, sizeof(out));
    if (setjmp(png_jmpbuf(png))) {
        fprintf(stderr, "png_encode failed\n");
        exit(2);
    }
    png_set_write_fn(png, &out, png_write_membuf, png_flush_nothing);
    png_set_IHDR(png, info, (png_uint_32)s->width, (png_uint_32)s->height, s->bit_depth,
                 s->color_type, s->interlace, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (s->palette)
        png_set_PLTE(png, info, s->palette, s->palette_len);
    if (s->trns)
        png_set_tRNS(png, info, s->trns, s->trns_len, NULL);
    png_write_info(png, info);
    {
        int passes = png_set_interlace_handling(png);
        for (int pass = 0; pass < passes; pass++)
            for (int y = 0; y < s->height; y++)
                png_write_row(png, s->rows + (size_t)y * s->row_bytes);
    }
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    *len = out.len;
    return out.p;
}

/* An 8-bit PNG of pattern() pixels with 1 (grey), 2, 3 (RGB) or 4 channels. */
static uint8_t *png_encode_pattern(int w, int h, int channels, int interlace, size_t *len)
{
    static const int types[] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA,
                                PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGB_ALPHA};
    uint8_t *rows = malloc((size_t)w * h * channels);
    png_spec s = {w, h, types[channels], 8, interlace, rows, (size_t)w * channels,
                  NULL, 0, NULL, 0};
    uint8_t *png;

    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < channels; c++)
                rows[((size_t)y * w + x) * channels + c] = pattern(x, y, c);
    png = png_encode(&s, len);
    free(rows);
    return png;
}

/* A JPEG from pixels of `components` samples in colour space in_cs, stored
 * as jpeg_cs. Full-resolution chroma and high quality, so flat areas come
 * back within a few levels. app1 (may be NULL) is written as an APP1 segment.
 * Returns malloc'd bytes (free with free). */
static uint8_t *jpeg_encode(const uint8_t *pix, int w, int h, int components,
                            J_COLOR_SPACE in_cs, J_COLOR_SPACE jpeg_cs, int progressive,
                            int adobe_marker, const uint8_t *app1, size_t app1_len,
                            size_t *len)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr err;
    unsigned char *buf = NULL;
    unsigned long n = 0;

    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &buf, &n);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = components;
    c.in_color_space = in_cs;
    jpeg_set_defaults(&c);
    jpeg_set_colorspace(&c, jpeg_cs);
    jpeg_set_quality(&c, 98, TRUE);
    for (int i = 0; i < c.num_components; i++)
        c.comp_info[i].h_samp_factor = c.comp_info[i].v_samp_factor = 1;
    if (progressive)
        jpeg_simple_progression(&c);
    if (!adobe_marker)
        c.write_Adobe_marker = FALSE;
    if (app1)
        c.write_JFIF_header = FALSE; /* EXIF files have APP1 first */
    jpeg_start_compress(&c, TRUE);
    if (app1)
        jpeg_write_marker(&c, JPEG_APP0 + 1, app1, (unsigned)app1_len);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(pix + (size_t)c.next_scanline * w * components);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    *len = n;
    return buf;
}

/* The quadrant picture used for colour and orientation checks: stored
 * top-left red, top-right green, bottom-left blue, bottom-right white. */
static const uint8_t quad_colors[4][3] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {255, 255, 255}};
enum { Q_RED, Q_GREEN, Q_BLUE, Q_WHITE };

static uint8_t *quad_rgb(int w, int h)
{
    uint8_t *p = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            memcpy(p + ((size_t)y * w + x) * 3, quad_colors[(y >= h / 2) * 2 + (x >= w / 2)], 3);
    return p;
}

static uint8_t *jpeg_encode_quads(int w, int h, const uint8_t *app1, size_t app1_len,
                                  size_t *len)
{
    uint8_t *pix = quad_rgb(w, h);
    uint8_t *jpg = jpeg_encode(pix, w, h, 3, JCS_RGB, JCS_YCbCr, 0, 1, app1, app1_len, len);
    free(pix);
    return jpg;
}

/* The quadrant colour at each displayed corner region (TL, TR, BL, BR). */
static int quad_check(const lethe_image *img, const int expect[4], int tol)
{
    int ok = 1;
    for (int q = 0; q < 4; q++) {
        int x = (q & 1) ? img->width * 3 / 4 : img->width / 4;
        int y = (q & 2) ? img->height * 3 / 4 : img->height / 4;
        const uint8_t *c = quad_colors[expect[q]];
        ok &= pixel_near(img, x, y, c[0], c[1], c[2], tol);
    }
    return ok;
}

/* An EXIF APP1 payload whose IFD0 holds a Make tag, then Orientation. */
static size_t exif_block(uint8_t *out, int big_endian, int orientation)
{
    membuf b = {0};
    uint8_t tiff[64];
    size_t n = 0;
#define PUT16(v)                                                                   \
    do {                                                                           \
        unsigned v_ = (unsigned)(v);                                               \
        tiff[n++] = (uint8_t)(big_endian ? v_ >> 8 : v_);                          \
        tiff[n++] = (uint8_t)(big_endian ? v_ : v_ >> 8);                          \
    } while (0)
#define PUT32(v)                                                                   \
    do {                                                                           \
        unsigned long w_ = (unsigned long)(v);                                     \
        if (big_endian) {                                                          \
            PUT16(w_ >> 16);                                                       \
            PUT16(w_);                                                             \
        } else {                                                                   \
            PUT16(w_);                                                             \
            PUT16(w_ >> 16);                                                       \
        }                                                                          \
    } while (0)
    tiff[n++] = big_endian ? 'M' : 'I';
    tiff[n++] = big_endian ? 'M' : 'I';
    PUT16(42);
    PUT32(8);
    PUT16(2);                     /* two entries */
    PUT16(0x010f);                /* Make, ASCII, 4 bytes inline */
    PUT16(2);
    PUT32(4);
    memcpy(tiff + n, "abc", 4);
    n += 4;
    PUT16(0x0112);                /* Orientation, SHORT, 1 */
    PUT16(3);
    PUT32(1);
    PUT16(orientation);
    PUT16(0);
    PUT32(0);                     /* no next IFD */
#undef PUT16
#undef PUT32
    membuf_put(&b, "Exif\0\0", 6);
    membuf_put(&b, tiff, n);
    memcpy(out, b.p, b.len);
    n = b.len;
    free(b.p);
    return n;
}

/* A PNG whose IHDR claims width x height, with a token IDAT: never decodable,
 * only the header matters. */
static uint8_t *png_fake_header(uint32_t width, uint32_t height, size_t *len)
{
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    membuf b = {0};
    uint8_t ihdr[17] = {'I', 'H', 'D', 'R'};
    uint8_t idat[4 + 16] = {'I', 'D', 'A', 'T'};
    uLongf zlen = 16;
    uint8_t zero[8] = {0};

    ihdr[4] = (uint8_t)(width >> 24), ihdr[5] = (uint8_t)(width >> 16);
    ihdr[6] = (uint8_t)(width >> 8), ihdr[7] = (uint8_t)width;
    ihdr[8] = (uint8_t)(height >> 24), ihdr[9] = (uint8_t)(height >> 16);
    ihdr[10] = (uint8_t)(height >> 8), ihdr[11] = (uint8_t)height;
    ihdr[12] = 8; /* depth */
    ihdr[13] = 2; /* RGB */
    membuf_put(&b, sig, 8);
    membuf_u32be(&b, 13);
    membuf_put(&b, ihdr, 17);
    membuf_u32be(&b, (uint32_t)crc32(0, ihdr, 17));
    compress(idat + 4, &zlen, zero, sizeof(zero));
    membuf_u32be(&b, (uint32_t)zlen);
    membuf_put(&b, idat, 4 + zlen);
    membuf_u32be(&b, (uint32_t)crc32(0, idat, (uInt)(4 + zlen)));
    membuf_u32be(&b, 0);
    membuf_put(&b, "IEND", 4);
    membuf_u32be(&b, (uint32_t)crc32(0, (const Bytef *)"IEND", 4));
    *len = b.len;
    return b.p;
}

/* The header of an animated WebP (VP8X with the animation flag, ANIM). */
static size_t webp_animated_header(uint8_t *out)
{
    static const uint8_t bytes[] = {
        'R', 'I', 'F', 'F', 30, 0, 0, 0, 'W', 'E', 'B', 'P',
        'V', 'P', '8', 'X', 10, 0, 0, 0, 0x02, 0, 0, 0, 15, 0, 0, 15, 0, 0,
        'A', 'N', 'I', 'M', 6, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    memcpy(out, bytes, sizeof(bytes));
    return sizeof(bytes);
}

/* ---------------------------------------------------------------- */
/* PNG                                                                */
/* ---------------------------------------------------------------- */

static void test_options_defaults(void)
{
    lethe_image_options o;
    memset(&o, 0x5a, sizeof(o));
    lethe_image_options_init(&o);
    CHECK(o.max_pixels == LETHE_IMAGE_MAX_PIXELS_DEFAULT);
    CHECK_EQ_INT(o.max_dimension, 65535);
    CHECK_EQ_INT(o.min_decode_side, 0);
    CHECK_EQ_INT(o.apply_orientation, 1);
    lethe_image_options_init(NULL); /* no crash */
}

/* Decode an 8-bit pattern PNG with `channels` channels and compare. */
static void check_png_pattern(int channels, int interlace, int w, int h)
{
    size_t len;
    uint8_t *png = png_encode_pattern(w, h, channels, interlace, &len);
    lethe_image *img;
    char msg[256];
    int st = decode(png, len, NULL, &img, msg, sizeof(msg)), bad = 0;

    CHECK_EQ_INT(st, LETHE_OK);
    if (st == LETHE_OK) {
        CHECK_EQ_INT(img->width, w);
        CHECK_EQ_INT(img->height, h);
        CHECK_EQ_INT(img->orig_width, w);
        CHECK_EQ_INT(img->orig_height, h);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                for (int c = 0; c < 3; c++) {
                    /* grey (+alpha) repeats channel 0; alpha is dropped */
                    int want = pattern(x, y, channels <= 2 ? 0 : c);
                    bad += img->rgb[((size_t)y * w + x) * 3 + c] != want;
                }
        CHECK_EQ_INT(bad, 0);
    } else {
        fprintf(stderr, "    %s\n", msg);
    }
    lethe_image_free(img);
    free(png);
}

static void test_png_rgb(void) { check_png_pattern(3, PNG_INTERLACE_NONE, 19, 7); }
static void test_png_grey(void) { check_png_pattern(1, PNG_INTERLACE_NONE, 9, 5); }
static void test_png_grey_alpha(void) { check_png_pattern(2, PNG_INTERLACE_NONE, 6, 6); }
static void test_png_rgba_drops_alpha(void) { check_png_pattern(4, PNG_INTERLACE_NONE, 33, 3); }

static void test_png_interlaced(void)
{
    check_png_pattern(3, PNG_INTERLACE_ADAM7, 13, 11);
    check_png_pattern(4, PNG_INTERLACE_ADAM7, 1, 1);
    check_png_pattern(1, PNG_INTERLACE_ADAM7, 17, 9);
}

static void test_png_grey_1bit(void)
{
    /* 10x3, bit set where (x + y) is even, rows padded to a byte. */
    enum { W = 10, H = 3, RB = 2 };
    uint8_t rows[H * RB] = {0};
    png_spec s = {W, H, PNG_COLOR_TYPE_GRAY, 1, PNG_INTERLACE_NONE, rows, RB, NULL, 0, NULL, 0};
    size_t len;
    uint8_t *png;
    lethe_image *img;
    char msg[256];
    int bad = 0;

    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            if ((x + y) % 2 == 0)
                rows[y * RB + x / 8] |= (uint8_t)(0x80 >> (x % 8));
    png = png_encode(&s, &len);
    CHECK_EQ_INT(decode(png, len, NULL, &img, msg, sizeof(msg)), LETHE_OK);
    if (img) {
        CHECK_EQ_INT(img->width, W);
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                bad += !pixel_near(img, x, y, (x + y) % 2 ? 0 : 255, (x + y) % 2 ? 0 : 255,
                                   (x + y) % 2 ? 0 : 255, 0);
        CHECK_EQ_INT(bad, 0);
    }
    lethe_image_free(img);
    free(png);
}

static void test_png_16bit(void)
{
    /* RGB 16-bit: v*257 must come back as v exactly; other values within 1
     * of v/257. Grey 16-bit likewise. */
    enum { W = 16, H = 4 };
    uint8_t rows[W * H * 6];
    uint16_t vals[W * H * 3];
    png_spec s = {W, H, PNG_COLOR_TYPE_RGB, 16, PNG_INTERLACE_NONE, rows, W * 6, NULL, 0, NULL, 0};
    size_t len;
    uint8_t *png;
    lethe_image *img;
    char msg[256];
    int bad = 0;

    for (int i = 0; i < W * H * 3; i++) {
        vals[i] = (i % 2) ? (uint16_t)(pattern(i, 0, 0) * 257)
                          : (uint16_t)(rng_byte() << 8 | rng_byte());
        rows[2 * i] = (uint8_t)(vals[i] >> 8);
        rows[2 * i + 1] = (uint8_t)vals[i];
    }
    png = png_encode(&s, &len);
    CHECK_EQ_INT(decode(png, len, NULL, &img, msg, sizeof(msg)), LETHE_OK);
    if (img) {
        for (int i = 0; i < W * H * 3; i++) {
            double want = vals[i] / 257.0;
            bad += fabs(img->rgb[i] - want) > ((i % 2) ? 0.0 : 1.0);
        }
        CHECK_EQ_INT(bad, 0);
    }
    lethe_image_free(img);
    free(png);

    s.color_type = PNG_COLOR_TYPE_GRAY;
    s.row_bytes = W * 2;
    png = png_encode(&s, &len);
    CHECK_EQ_INT(decode(png, len, NULL, &img, msg, sizeof(msg)), LETHE_OK);
    if (img) {
        bad = 0;
        for (int i = 0; i < W * H; i++) {
            double want = vals[i] / 257.0;
            bad += fabs(img->rgb[3 * i] - want) > 1.0 || img->rgb[3 * i] != img->rgb[3 * i + 2];
        }
        CHECK_EQ_INT(bad, 0);
    }
    lethe_image_free(img);
    free(png);
}

static void test_png_palette(void)
{
    /* 2-bit palette with a tRNS chunk: colours exact, transparency ignored. */
    static const png_color pal[4] = {{10, 20, 30}, {200, 100, 0}, {0, 255, 128}, {77, 77, 77}};
    static const uint8_t trns[2] = {0, 128};
    enum { W = 7, H = 5, RB = 2 };
    uint8_t rows[H * RB] = {0};
    png_spec s = {W, H, PNG_COLOR_TYPE_PALETTE, 2, PNG_INTERLACE_NONE, rows, RB, pal, 4, NULL, 0};
    size_t len;
    lethe_image *img;
    char msg[256];

    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            rows[y * RB + x / 4] |= (uint8_t)(((x + 2 * y) % 4) << (6 - 2 * (x % 4)));
    for (int with_trns = 0; with_trns < 2; with_trns++) {
        uint8_t *png;
        int bad = 0;
        s.trns = with_trns ? trns : NULL;
        s.trns_len = with_trns ? 2 : 0;
        s.interlace = with_trns ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE;
        png = png_encode(&s, &len);
        CHECK_EQ_INT(decode(png, len, NULL, &img, msg, sizeof(msg)), LETHE_OK);
        if (img)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    const png_color *c = &pal[(x + 2 * y) % 4];
                    bad += !pixel_near(img, x, y, c->red, c->green, c->blue, 0);
                }
        CHECK_EQ_INT(bad, 0);
        lethe_image_free(img);
        free(png);
    }
}

/* ---------------------------------------------------------------- */
/* JPEG                                                               */
/* ---------------------------------------------------------------- */

static void test_jpeg_rgb(void)
{
    static const int upright[4] = {Q_RED, Q_GREEN, Q_BLUE, Q_WHITE};
    size_t len;
    uint8_t *jpg = jpeg_encode_quads(48, 32, NULL, 0, &len);
    lethe_image *img;
    char msg[256];

    CHECK_EQ_INT(decode(jpg, len, NULL, &img, msg, sizeof(msg)), LETHE_OK);
    if (img) {
        CHECK_EQ_INT(img->width, 48);
        CHECK_EQ_INT(img->height, 32);
        CHECK_EQ_INT(img->orig_width, 48);
        CHECK_EQ_INT(img->orig_height, 32);
        CHECK(quad_check(img, upright, 6));
    }
    lethe_image_free(img);
    free(jpg);
}

static void test_jpeg_progressive(void)
{
    static const int upright[4] = {Q_RED, Q_GREEN, Q_BLUE, Q_WHITE};
    uint8_t *pix = quad_rgb(40, 24);
    size_t len;
    uint8_t *jpg = jpeg_encode(pix, 40, 24, 3, JCS_RGB, JCS_YCbCr, 1, 1, NULL, 0, &len);
    lethe_image *img;
    char msg[256];

    CHECK_EQ_INT(decode(jpg, len, NULL, &img, msg, sizeof(msg)), LETHE_OK);
    if (img)
        CHECK(quad_check(img, upright, 6));
    lethe_image_free(img);
    /* Truncated in the middle of the scans. */
    CHECK_EQ_INT(decode(jpg, len * 2 / 3, NULL, &img, msg, sizeof(msg)), LETHE_ERR_FORMAT);
    CHECK(strstr(msg, "truncated") != NULL);
    free(jpg);
    free(pix);
}

static void test_jpeg_grey(void)
{
    enum { W = 24, H = 16 };
    uint8_t pix[W * H];
    size_t len;
    uint8_t *jpg;
    lethe_image *img;
    char msg[256];
    int bad = 0;

    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            pix[y * W + x] = x < W / 2 ? 40 : 220;
    jpg = jpeg_encode(pix, W, H, 1, JCS_GRAYSCALE, JCS_GRAYSCALE, 0, 1, NULL, 0, &len);
    CHECK_EQ_INT(decode(jpg, len, NULL, &img, msg, sizeof(msg)), LETHE_OK);
    if (img) {
        for (int i = 0; i < W * H; i++)
            bad += img->rgb[3 * i] != img->rgb[3 * i + 1] || img->rgb[3 * i] != img->rgb[3 * i + 2];
        CHECK_EQ_INT(bad, 0);
        CHECK(pixel_near(img, 4, 8, 40, 40, 40, 4));
        CHECK(pixel_near(img, 20, 8, 220, 220, 220, 4));
    }
    lethe_image_free(img);
    free(jpg);
}

/* CMYK quadrants; inverted = Adobe convention (stored values are 255 - ink). */
static uint8_t *cmyk_quads(int w, int h, int inverted)
{
    /* ink amounts C, M, Y, K for red, green, blue and 75% grey */
    static const uint8_t ink[4][4] = {
        {0, 255, 255, 0}, {255, 0, 255, 0}, {255, 255, 0, 0}, {0, 0, 0, 191}};
    uint8_t *p = malloc((size_t)w * h * 4);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 4; c++) {
                uint8_t v = ink[(y >= h / 2) * 2 + (x >= w / 2)][c];
                p[((size_t)y * w + x) * 4 + c] = inverted ? (uint8_t)(255 - v) : v;
            }
    return p;
}

static void test_jpeg_cmyk(void)
{
    static const struct {
        J_COLOR_SPACE space;
        int adobe;
    } cases[] = {{JCS_CMYK, 1}, {JCS_YCCK, 1}, {JCS_CMYK, 0}};

    for (size_t i = 0; i < LETHE_ARRAY_LEN(cases); i++) {
        uint8_t *pix = cmyk_quads(32, 16, cases[i].adobe);
        size_t len;
        uint8_t *jpg = jpeg_encode(pix, 32, 16, 4, JCS_CMYK, cases[i].space, 0, cases[i].adobe,
                                   NULL, 0, &len);
        lethe_image *img;
        char msg[256];

        CHECK_EQ_INT(decode(jpg, len, NULL, &img, msg, sizeof(msg)), LETHE_OK);
        if (img) {
            CHECK(pixel_near(img, 8, 4, 255, 0, 0, 8));
            CHECK(pixel_near(img, 24, 4, 0, 255, 0, 8));
            CHECK(pixel_near(img, 8, 12, 0, 0, 255, 8));
            CHECK(pixel_near(img, 24, 12, 64, 64, 64, 8));
        } else {
            fprintf(stderr, "    case %zu: %s\n", i, msg);
        }
        lethe_image_free(img);
        free(jpg);
        free(pix);
    }
}

static void test_jpeg_reduced_scale(void)
{
    static const struct {
        int min_side, w, h;
    } cases[] = {{0, 256, 128},  {60, 64, 32},  {32, 32, 16},   {33, 64, 32},
                 {64, 64, 32},   {65, 128, 64}, {129, 256, 128}, {5000, 256, 128},
                 {1, 32, 16}};
    size_t len;
    uint8_t *jpg = jpeg_encode_quads(256, 128, NULL, 0, &len);
    uint8_t exif[64];
    size_t exif_len = exif_block(exif, 0, 6), rot_len;
    uint8_t *rot = jpeg_encode_quads(256, 128, exif, exif_len, &rot_len);
    static const int upright[4] = {Q_RED, Q_GREEN, Q_BLUE, Q_WHITE};
    lethe_image_options opt;
    lethe_image *img;
    char msg[256];

    lethe_image_options_init(&opt);
    for (size_t i = 0; i < LETHE_ARRAY_LEN(cases); i++) {
        opt.min_decode_side = cases[i].min_side;
        CHECK_EQ_INT(decode(jpg, len, &opt, &img, msg, sizeof(msg)), LETHE_OK);
        if (!img)
            continue;
        CHECK_EQ_INT(img->width, cases[i].w);
        CHECK_EQ_INT(img->height, cases[i].h);
        CHECK_EQ_INT(img->orig_width, 256);
        CHECK_EQ_INT(img->orig_height, 128);
        CHECK(quad_check(img, upright, 10));
        lethe_image_free(img);
    }
    /* Orientation 6 at 1/4 scale: both sizes turned. */
    opt.min_decode_side = 60;
    CHECK_EQ_INT(decode(rot, rot_len, &opt, &img, msg, sizeof(msg)), LETHE_OK);
    if (img) {
        CHECK_EQ_INT(img->width, 32);
        CHECK_EQ_INT(img->height, 64);
        CHECK_EQ_INT(img->orig_width, 128);
        CHECK_EQ_INT(img->orig_height, 256);
    }
    lethe_image_free(img);
    /* PNG ignores min_decode_side. */
    {
        size_t plen;
        uint8_t *png = png_encode_pattern(200, 100, 3, 0, &plen);
        CHECK_EQ_INT(decode(png, plen, &opt, &img, msg, sizeof(msg)), LETHE_OK);
        if (img) {
            CHECK_EQ_INT(img->width, 200);
            CHECK_EQ_INT(img->orig_width, 200);
        }
        lethe_image_free(img);
        free(png);
    }
    free(jpg);
    free(rot);
}

/* ---------------------------------------------------------------- */
/* EXIF orientation                                                   */
/* ---------------------------------------------------------------- */

static void test_exif_orientations(void)
{
    /* What shows at the displayed TL, TR, BL, BR for each orientation of the
     * stored picture (TL red, TR green, BL blue, BR white), from the EXIF
     * definitions of where row 0 and column 0 go. */
    static const int expect[9][4] = {
        {0},
        {Q_RED, Q_GREEN, Q_BLUE, Q_WHITE},   /* 1 as stored */
        {Q_GREEN, Q_RED, Q_WHITE, Q_BLUE},   /* 2 mirrored */
        {Q_WHITE, Q_BLUE, Q_GREEN, Q_RED},   /* 3 rotated 180 */
        {Q_BLUE, Q_WHITE, Q_RED, Q_GREEN},   /* 4 flipped */
        {Q_RED, Q_BLUE, Q_GREEN, Q_WHITE},   /* 5 transposed */
        {Q_BLUE, Q_RED, Q_WHITE, Q_GREEN},   /* 6 rotated 90 clockwise */
        {Q_WHITE, Q_GREEN, Q_BLUE, Q_RED},   /* 7 transverse */
        {Q_GREEN, Q_WHITE, Q_RED, Q_BLUE},   /* 8 rotated 90 anticlockwise */
    };
    lethe_image_options raw_opt;

    lethe_image_options_init(&raw_opt);
    raw_opt.apply_orientation = 0;
    for (int big = 0; big < 2; big++)
        for (int o = 1; o <= 8; o++) {
            uint8_t exif[64];
            size_t exif_len = exif_block(exif, big, o), len;
            uint8_t *jpg = jpeg_encode_quads(32, 16, exif, exif_len, &len);
            int swap = o >= 5;
            lethe_image *img;
            char msg[256];

            CHECK_EQ_INT(lethe_exif_orientation(exif, exif_len), o);
            CHECK_EQ_INT(decode(jpg, len, NULL, &img, msg, sizeof(msg)), LETHE_OK);
            if (img) {
                CHECK_EQ_INT(img->width, swap ? 16 : 32);
                CHECK_EQ_INT(img->height, swap ? 32 : 16);
                CHECK_EQ_INT(img->orig_width, img->width);
                CHECK_EQ_INT(img->orig_height, img->height);
                if (!quad_check(img, expect[o], 8)) {
                    fprintf(stderr, "    orientation %d (%s-endian) wrong\n", o,
                            big ? "big" : "little");
                    CHECK(0);
                }
                lethe_image_free(img);
            }
            /* Ignored on request. */
            CHECK_EQ_INT(decode(jpg, len, &raw_opt, &img, msg, sizeof(msg)), LETHE_OK);
            if (img) {
                CHECK_EQ_INT(img->width, 32);
                CHECK(quad_check(img, expect[1], 8));
                lethe_image_free(img);
            }
            free(jpg);
        }
}

static void test_exif_hostile(void)
{
    uint8_t good[64], bad[64];
    size_t n = exif_block(good, 0, 6);
    size_t entry = 6 + 8 + 2 + 12; /* the Orientation entry */

    /* Every truncation of a valid block: no read past the end, and the
     * value is only found once the entry is complete. */
    for (size_t cut = 0; cut <= n; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1);
        memcpy(copy, good, cut);
        CHECK_EQ_INT(lethe_exif_orientation(copy, cut), cut >= entry + 10 ? 6 : 1);
        free(copy);
    }
    CHECK_EQ_INT(lethe_exif_orientation(NULL, 10), 1);
    /* IFD offset past the end, and near 2^32. */
    memcpy(bad, good, n);
    bad[10] = 0xff;
    CHECK_EQ_INT(lethe_exif_orientation(bad, n), 1);
    memcpy(bad, good, n);
    bad[10] = 0xf8, bad[11] = 0xff, bad[12] = 0xff, bad[13] = 0xff;
    CHECK_EQ_INT(lethe_exif_orientation(bad, n), 1);
    /* Entry count far beyond the data. */
    memcpy(bad, good, n);
    bad[14] = 0xff, bad[15] = 0xff;
    CHECK_EQ_INT(lethe_exif_orientation(bad, n), 6); /* found before running out */
    bad[14 + 2 + 12 * 1] = 0; /* break the Orientation tag: then it runs out */
    CHECK_EQ_INT(lethe_exif_orientation(bad, n), 1);
    /* Out-of-range values, a wrong type, count != 1, bad byte order/magic. */
    n = exif_block(bad, 0, 9);
    CHECK_EQ_INT(lethe_exif_orientation(bad, n), 1);
    n = exif_block(bad, 1, 9);
    CHECK_EQ_INT(lethe_exif_orientation(bad, n), 1);
    n = exif_block(bad, 1, 0);
    CHECK_EQ_INT(lethe_exif_orientation(bad, n), 1);
    n = exif_block(bad, 0, 3);
    bad[entry + 2] = 7; /* UNDEFINED */
    CHECK_EQ_INT(lethe_exif_orientation(bad, n), 1);
    n = exif_block(bad, 0, 3);
    bad[entry + 4] = 2; /* count 2 */
    CHECK_EQ_INT(lethe_exif_orientation(bad, n), 1);
    n = exif_block(bad, 0, 3);
    bad[6] = 'X';
    CHECK_EQ_INT(lethe_exif_orientation(bad, n), 1);
    n = exif_block(bad, 0, 3);
    bad[8] = 43;
    CHECK_EQ_INT(lethe_exif_orientation(bad, n), 1);
    /* 10000 random mutations of a valid block: must not crash (ASan). */
    for (int i = 0; i < 10000; i++) {
        n = exif_block(bad, i & 1, 1 + i % 8);
        for (int k = 0; k < 1 + i % 4; k++)
            bad[6 + rng_byte() % (n - 6)] = rng_byte();
        int o = lethe_exif_orientation(bad, n);
        CHECK(o >= 1 && o <= 8);
    }
    /* A JPEG with a broken EXIF block decodes as stored. */
    {
        size_t len;
        uint8_t *jpg;
        lethe_image *img;
        char msg[256];
        n = exif_block(bad, 0, 6);
        bad[10] = 0x7f;
        jpg = jpeg_encode_quads(32, 16, bad, n, &len);
        CHECK_EQ_INT(decode(jpg, len, NULL, &img, msg, sizeof(msg)), LETHE_OK);
        if (img)
            CHECK_EQ_INT(img->width, 32);
        lethe_image_free(img);
        free(jpg);
    }
}

/* ---------------------------------------------------------------- */
/* WebP                                                               */
/* ---------------------------------------------------------------- */

static void test_webp(void)
{
    enum { W = 21, H = 13 };
    uint8_t rgb[W * H * 3], rgba[W * H * 4];
    uint8_t *webp = NULL, anim[64];
    size_t len, n;
    lethe_image *img;
    char msg[256];
    int bad = 0;

    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            for (int c = 0; c < 4; c++) {
                if (c < 3)
                    rgb[(y * W + x) * 3 + c] = pattern(x, y, c);
                rgba[(y * W + x) * 4 + c] = c < 3 ? pattern(x, y, c) : (uint8_t)(x * 12);
            }
    /* Lossless: exact. */
    len = WebPEncodeLosslessRGB(rgb, W, H, W * 3, &webp);
    CHECK(len > 0);
    CHECK_EQ_INT(decode(webp, len, NULL, &img, msg, sizeof(msg)), LETHE_OK);
    if (img) {
        CHECK_EQ_INT(img->width, W);
        CHECK_EQ_INT(img->height, H);
        CHECK(memcmp(img->rgb, rgb, sizeof(rgb)) == 0);
    }
    lethe_image_free(img);
    /* Truncated. */
    CHECK_EQ_INT(decode(webp, len / 2, NULL, &img, msg, sizeof(msg)), LETHE_ERR_FORMAT);
    CHECK(strstr(msg, "WebP") != NULL);
    CHECK(img == NULL);
    WebPFree(webp);

    /* Lossless with alpha: colour kept, alpha dropped. libwebp may alter
     * the colour of fully transparent pixels, and none is transparent here
     * except x == 0, which is skipped. */
    len = WebPEncodeLosslessRGBA(rgba, W, H, W * 4, &webp);
    CHECK_EQ_INT(decode(webp, len, NULL, &img, msg, sizeof(msg)), LETHE_OK);
    if (img)
        for (int y = 0; y < H; y++)
            for (int x = 1; x < W; x++)
                bad += !pixel_near(img, x, y, pattern(x, y, 0), pattern(x, y, 1),
                                   pattern(x, y, 2), 0);
    CHECK_EQ_INT(bad, 0);
    lethe_image_free(img);
    WebPFree(webp);

    /* Lossy: flat quadrants come back close. */
    {
        static const int upright[4] = {Q_RED, Q_GREEN, Q_BLUE, Q_WHITE};
        uint8_t *quads = quad_rgb(64, 32);
        len = WebPEncodeRGB(quads, 64, 32, 64 * 3, 95, &webp);
        CHECK_EQ_INT(decode(webp, len, NULL, &img, msg, sizeof(msg)), LETHE_OK);
        if (img)
            CHECK(quad_check(img, upright, 24));
        lethe_image_free(img);
        WebPFree(webp);
        free(quads);
    }

    /* Animated: refused clearly. */
    n = webp_animated_header(anim);
    CHECK_EQ_INT(decode(anim, n, NULL, &img, msg, sizeof(msg)), LETHE_ERR_UNSUPPORTED);
    CHECK(strstr(msg, "animated") != NULL);
}

/* ---------------------------------------------------------------- */
/* Limits                                                             */
/* ---------------------------------------------------------------- */

/* Patch the size in a JPEG's SOF0 marker. */
static void jpeg_patch_size(uint8_t *jpg, size_t len, unsigned w, unsigned h)
{
    for (size_t i = 2; i + 9 < len; i++)
        if (jpg[i] == 0xff && jpg[i + 1] == 0xc0) {
            jpg[i + 5] = (uint8_t)(h >> 8), jpg[i + 6] = (uint8_t)h;
            jpg[i + 7] = (uint8_t)(w >> 8), jpg[i + 8] = (uint8_t)w;
            return;
        }
}

static void test_limits(void)
{
    lethe_image_options opt;
    lethe_image *img = (lethe_image *)&opt; /* must be reset to NULL */
    char msg[256];
    size_t len;
    uint8_t *png = png_fake_header(65536, 65536, &len);
    double t0 = now_seconds();
    int st = lethe_image_decode(png, len, NULL, &img, msg, sizeof(msg));
    double dt = now_seconds() - t0;

    CHECK_EQ_INT(st, LETHE_ERR_TOO_LARGE);
    CHECK(img == NULL);
    CHECK(strstr(msg, "65536x65536") != NULL);
    CHECK(strstr(msg, "65535") != NULL);
    CHECK(dt < 0.05);
    fprintf(stderr, "  65536x65536 PNG refused in %.3f ms: %s\n", dt * 1e3, msg);
    free(png);

    /* Within the side limit but too many pixels. */
    png = png_fake_header(60000, 60000, &len);
    CHECK_EQ_INT(decode(png, len, NULL, &img, msg, sizeof(msg)), LETHE_ERR_TOO_LARGE);
    CHECK(strstr(msg, "100000000") != NULL);
    free(png);
    /* Zero-sized. */
    png = png_fake_header(0, 10, &len);
    CHECK_EQ_INT(decode(png, len, NULL, &img, msg, sizeof(msg)), LETHE_ERR_FORMAT);
    free(png);

    /* Each format against small limits. */
    lethe_image_options_init(&opt);
    opt.max_pixels = 999;
    png = png_encode_pattern(40, 25, 3, 0, &len);
    CHECK_EQ_INT(decode(png, len, &opt, &img, msg, sizeof(msg)), LETHE_ERR_TOO_LARGE);
    CHECK(strstr(msg, "40x25") != NULL && strstr(msg, "999") != NULL);
    opt.max_pixels = 1000;
    CHECK_EQ_INT(decode(png, len, &opt, &img, msg, sizeof(msg)), LETHE_OK);
    lethe_image_free(img);
    opt.max_dimension = 39;
    CHECK_EQ_INT(decode(png, len, &opt, &img, msg, sizeof(msg)), LETHE_ERR_TOO_LARGE);
    free(png);
    {
        uint8_t *jpg = jpeg_encode_quads(40, 24, NULL, 0, &len), *webp;
        CHECK_EQ_INT(decode(jpg, len, &opt, &img, msg, sizeof(msg)), LETHE_ERR_TOO_LARGE);
        /* A JPEG header claiming 60000x60000, and one beyond libjpeg's limit. */
        jpeg_patch_size(jpg, len, 60000, 60000);
        t0 = now_seconds();
        CHECK_EQ_INT(decode(jpg, len, NULL, &img, msg, sizeof(msg)), LETHE_ERR_TOO_LARGE);
        CHECK(now_seconds() - t0 < 0.05);
        CHECK(strstr(msg, "60000x60000") != NULL);
        jpeg_patch_size(jpg, len, 65535, 65535);
        CHECK_EQ_INT(decode(jpg, len, NULL, &img, msg, sizeof(msg)), LETHE_ERR_TOO_LARGE);
        free(jpg);

        opt.max_dimension = 0;
        opt.max_pixels = 100;
        uint8_t rgb[11 * 10 * 3] = {0};
        len = WebPEncodeLosslessRGB(rgb, 11, 10, 33, &webp);
        CHECK_EQ_INT(decode(webp, len, &opt, &img, msg, sizeof(msg)), LETHE_ERR_TOO_LARGE);
        CHECK(strstr(msg, "11x10") != NULL);
        /* VP8L header patched to 16384x16384 (lossless maximum). */
        if (len > 25 && memcmp(webp + 12, "VP8L", 4) == 0) {
            webp[21] = webp[22] = webp[23] = 0xff;
            webp[24] |= 0x0f;
            CHECK_EQ_INT(decode(webp, len, NULL, &img, msg, sizeof(msg)), LETHE_ERR_TOO_LARGE);
            CHECK(strstr(msg, "16384x16384") != NULL);
        } else {
            CHECK(0);
        }
        WebPFree(webp);
    }
}

/* ---------------------------------------------------------------- */
/* Broken input                                                       */
/* ---------------------------------------------------------------- */

static void expect_error(const void *d, size_t n, int want, const char *needle)
{
    lethe_image *img = (lethe_image *)&img;
    char msg[256] = "unset";
    int st = lethe_image_decode(d, n, NULL, &img, msg, sizeof(msg));

    CHECK_EQ_INT(st, want);
    CHECK(img == NULL);
    CHECK(msg[0] != '\0' && strcmp(msg, "unset") != 0);
    if (needle && !strstr(msg, needle)) {
        fprintf(stderr, "    message \"%s\" lacks \"%s\"\n", msg, needle);
        CHECK(0);
    }
}

static void test_bad_input(void)
{
    static const char text[] = "This is a plain text file, not a picture.\nSecond line.\n";
    static const uint8_t gif[] = "GIF89a\x01\x00\x01\x00\x80\x00\x00";
    uint8_t bmp[64] = {'B', 'M'};
    uint8_t junk[4096];
    size_t len;
    uint8_t *jpg = jpeg_encode_quads(64, 64, NULL, 0, &len), *png;

    expect_error("", 0, LETHE_ERR_FORMAT, "empty");
    expect_error(NULL, 0, LETHE_ERR_FORMAT, "empty");
    expect_error(NULL, 5, LETHE_ERR_ARG, NULL);
    CHECK_EQ_INT(lethe_image_decode("x", 1, NULL, NULL, NULL, 0), LETHE_ERR_ARG);
    expect_error(text, sizeof(text) - 1, LETHE_ERR_FORMAT, "text");
    expect_error(gif, sizeof(gif) - 1, LETHE_ERR_UNSUPPORTED, "GIF");
    bmp[14] = 40;
    expect_error(bmp, sizeof(bmp), LETHE_ERR_UNSUPPORTED, "BMP");
    expect_error("II*\0\x08\0\0\0", 8, LETHE_ERR_UNSUPPORTED, "TIFF");
    expect_error("\xff\xd8", 2, LETHE_ERR_FORMAT, NULL);
    expect_error("\x89PNG", 4, LETHE_ERR_FORMAT, NULL);

    /* Truncated JPEG at several points, including inside the header. */
    expect_error(jpg, 3, LETHE_ERR_FORMAT, "JPEG");
    expect_error(jpg, 20, LETHE_ERR_FORMAT, "truncated JPEG");
    expect_error(jpg, len / 2, LETHE_ERR_FORMAT, "truncated JPEG");
    expect_error(jpg, len - 40, LETHE_ERR_FORMAT, "truncated JPEG");
    /* Garbage after the SOI: not a valid marker sequence. */
    memcpy(junk, jpg, 3);
    for (size_t i = 3; i < sizeof(junk); i++)
        junk[i] = rng_byte();
    junk[3] = 0x01;
    expect_error(junk, sizeof(junk), LETHE_ERR_FORMAT, "JPEG");
    free(jpg);

    /* Truncated PNG, and one with a corrupted IHDR CRC. */
    png = png_encode_pattern(30, 30, 3, 0, &len);
    expect_error(png, 20, LETHE_ERR_FORMAT, "truncated PNG");
    expect_error(png, len / 2, LETHE_ERR_FORMAT, "truncated PNG");
    png[29] ^= 0xff;
    expect_error(png, len, LETHE_ERR_FORMAT, "PNG");
    free(png);
    expect_error("RIFF\x10\0\0\0WEBPVP8 ", 16, LETHE_ERR_FORMAT, "WebP");

    /* Random bytes, alone and behind each signature: never a crash. */
    for (int round = 0; round < 300; round++) {
        static const char *const heads[] = {"", "\xff\xd8\xff", "\x89PNG\r\n\x1a\n",
                                            "RIFF\0\x10\0\0WEBPVP8L"};
        const char *head = heads[round % 4];
        size_t hl = strlen(head) + (round % 4 == 3 ? 12 : 0);
        size_t n = 1 + rng_byte() * 8 + (size_t)round;
        lethe_image *img;
        char msg[128];
        if (n > sizeof(junk))
            n = sizeof(junk);
        for (size_t i = 0; i < n; i++)
            junk[i] = rng_byte();
        junk[0] |= 0x80; /* not text */
        memcpy(junk, head, LETHE_MIN(hl, n));
        if (decode(junk, n, NULL, &img, msg, sizeof(msg)) == LETHE_OK) {
            CHECK(img && img->width > 0);
            lethe_image_free(img);
        } else {
            CHECK(img == NULL && msg[0]);
        }
    }
}

static void test_from_rgb(void)
{
    uint8_t px[2 * 3 * 3];
    lethe_image *img;

    for (size_t i = 0; i < sizeof(px); i++)
        px[i] = (uint8_t)i;
    CHECK_EQ_INT(lethe_image_from_rgb(px, 3, 2, &img), LETHE_OK);
    if (img) {
        CHECK(img->rgb != px && memcmp(img->rgb, px, sizeof(px)) == 0);
        CHECK(img->width == 3 && img->height == 2 && img->orig_width == 3 && img->orig_height == 2);
    }
    lethe_image_free(img);
    lethe_image_free(NULL);
    CHECK_EQ_INT(lethe_image_from_rgb(NULL, 3, 2, &img), LETHE_ERR_ARG);
    CHECK(img == NULL);
    CHECK_EQ_INT(lethe_image_from_rgb(px, 0, 2, &img), LETHE_ERR_ARG);
    CHECK_EQ_INT(lethe_image_from_rgb(px, 3, -1, &img), LETHE_ERR_ARG);
    CHECK_EQ_INT(lethe_image_from_rgb(px, 3, 2, NULL), LETHE_ERR_ARG);
}

/* ---------------------------------------------------------------- */
/* Files                                                              */
/* ---------------------------------------------------------------- */

static int write_file(const char *path, const void *d, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return 0;
    if (n && fwrite(d, 1, n, f) != n) {
        fclose(f);
        return 0;
    }
    return fclose(f) == 0;
}

static void test_load(void)
{
    char dir[] = "/tmp/lethe_test_image_XXXXXX", path[256], big[256], msg[512];
    size_t len;
    uint8_t *png = png_encode_pattern(5, 4, 3, 0, &len);
    lethe_image *img;
    int fd;

    if (!mkdtemp(dir)) { /* not a missing input: the machine is broken */
        CHECK(!"cannot make a temporary folder");
        free(png);
        return;
    }
    snprintf(path, sizeof(path), "%s/pic.dat", dir); /* the name says nothing */
    CHECK(write_file(path, png, len));
    CHECK_EQ_INT(lethe_image_load(path, NULL, &img, msg, sizeof(msg)), LETHE_OK);
    if (img)
        CHECK(img->width == 5 && img->height == 4 && img->rgb[0] == pattern(0, 0, 0));
    lethe_image_free(img);

    /* Decoding errors name the file. */
    CHECK(write_file(path, png, len / 2));
    CHECK_EQ_INT(lethe_image_load(path, NULL, &img, msg, sizeof(msg)), LETHE_ERR_FORMAT);
    CHECK(strncmp(msg, path, strlen(path)) == 0 && strstr(msg, "truncated PNG"));
    CHECK(img == NULL);

    snprintf(big, sizeof(big), "%s/missing.jpg", dir);
    CHECK_EQ_INT(lethe_image_load(big, NULL, &img, msg, sizeof(msg)), LETHE_ERR_NOT_FOUND);
    CHECK(strstr(msg, big) != NULL);
    CHECK_EQ_INT(lethe_image_load(dir, NULL, &img, msg, sizeof(msg)), LETHE_ERR_IO);
    CHECK_EQ_INT(lethe_image_load(NULL, NULL, &img, msg, sizeof(msg)), LETHE_ERR_ARG);

    /* A sparse file just over 256 MiB is refused before reading. */
    snprintf(big, sizeof(big), "%s/big.png", dir);
    fd = open(big, O_CREAT | O_WRONLY | O_TRUNC, 0600);
    CHECK(fd >= 0);
    if (fd >= 0) {
        CHECK(ftruncate(fd, ((off_t)256 << 20) + 1) == 0);
        close(fd);
        CHECK_EQ_INT(lethe_image_load(big, NULL, &img, msg, sizeof(msg)), LETHE_ERR_TOO_LARGE);
        unlink(big);
    }
    unlink(path);
    rmdir(dir);
    free(png);
}

/* ---------------------------------------------------------------- */
/* Allocation failures                                                */
/* ---------------------------------------------------------------- */

/* Fail the 1st, 2nd, ... allocation of one decode: each must give NOMEM
 * and leave nothing behind, until a countdown beyond the decode's needs. */
static void alloc_fail_sweep(const char *what, const uint8_t *d, size_t n,
                             const lethe_image_options *opt)
{
    int finished = 0;

    for (long k = 0; k < 500 && !finished; k++) {
        lethe_image *img = (lethe_image *)&img;
        char msg[256] = "";
        int st;
        long used;

        lethe_alloc_fail_after(k);
        st = lethe_image_decode(d, n, opt, &img, msg, sizeof(msg));
        used = lethe_alloc_count();
        lethe_alloc_fail_after(-1);
        if (st == LETHE_OK) {
            CHECK(img != NULL);
            lethe_image_free(img);
            finished = used <= k; /* no allocation was refused */
        } else {
            if (st != LETHE_ERR_NOMEM)
                fprintf(stderr, "    %s, countdown %ld: status %d: %s\n", what, k, st, msg);
            CHECK_EQ_INT(st, LETHE_ERR_NOMEM);
            CHECK(img == NULL);
            CHECK(msg[0] != '\0');
        }
    }
    if (!finished)
        fprintf(stderr, "    %s: never finished\n", what);
    CHECK(finished);
}

static void test_alloc_failures(void)
{
    lethe_image_options opt;
    uint8_t exif[64], *pix, *webp;
    size_t exif_len = exif_block(exif, 1, 8), len;
    uint8_t *d;

    lethe_image_options_init(&opt);
    d = png_encode_pattern(20, 10, 4, PNG_INTERLACE_ADAM7, &len);
    alloc_fail_sweep("interlaced RGBA PNG", d, len, NULL);
    free(d);
    d = png_encode_pattern(9, 9, 1, 0, &len);
    alloc_fail_sweep("grey PNG", d, len, NULL);
    free(d);
    d = jpeg_encode_quads(32, 16, exif, exif_len, &len);
    alloc_fail_sweep("rotated JPEG", d, len, NULL);
    opt.min_decode_side = 4;
    alloc_fail_sweep("reduced JPEG", d, len, &opt);
    free(d);
    pix = cmyk_quads(16, 16, 1);
    d = jpeg_encode(pix, 16, 16, 4, JCS_CMYK, JCS_YCCK, 1, 1, NULL, 0, &len);
    alloc_fail_sweep("YCCK JPEG", d, len, NULL);
    free(d);
    free(pix);
    pix = quad_rgb(16, 8);
    len = WebPEncodeLosslessRGB(pix, 16, 8, 48, &webp);
    alloc_fail_sweep("WebP", webp, len, NULL);
    WebPFree(webp);
    free(pix);

    /* lethe_image_from_rgb and lethe_image_load too. */
    {
        uint8_t px[12] = {0};
        lethe_image *img;
        int st = LETHE_ERR_NOMEM, fails = 0;
        for (long k = 0; k < 100 && st != LETHE_OK; k++) {
            lethe_alloc_fail_after(k);
            st = lethe_image_from_rgb(px, 2, 2, &img);
            lethe_alloc_fail_after(-1);
            if (st == LETHE_OK) {
                CHECK(img != NULL && img->width == 2 && img->height == 2);
                lethe_image_free(img);
            } else {
                CHECK_EQ_INT(st, LETHE_ERR_NOMEM);
                CHECK(img == NULL);
                fails++;
            }
        }
        CHECK_EQ_INT(st, LETHE_OK);
        CHECK_EQ_INT(fails, 2); /* the image and its pixels */
    }
    {
        char path[] = "/tmp/lethe_test_image_XXXXXX", msg[512];
        int fd = mkstemp(path), st;
        lethe_image *img;
        d = png_encode_pattern(4, 4, 3, 0, &len);
        CHECK(fd >= 0 && write(fd, d, len) == (ssize_t)len);
        if (fd >= 0)
            close(fd);
        st = LETHE_ERR_NOMEM;
        for (long k = 0; k < 100 && st != LETHE_OK; k++) {
            lethe_alloc_fail_after(k);
            st = lethe_image_load(path, NULL, &img, msg, sizeof(msg));
            lethe_alloc_fail_after(-1);
            if (st == LETHE_OK) {
                lethe_image_free(img);
                break;
            }
            CHECK_EQ_INT(st, LETHE_ERR_NOMEM);
            CHECK(img == NULL);
            CHECK(strstr(msg, path) != NULL);
        }
        CHECK_EQ_INT(st, LETHE_OK);
        unlink(path);
        free(d);
    }
}

/* ---------------------------------------------------------------- */
/* Real photos                                                        */
/* ---------------------------------------------------------------- */

/* Decode a photo: 1 if it decoded well; 0 if it is absent (a skipped part
 * of the test) or failed to decode (a failure). */
static int decode_file_ok(const char *path, const lethe_image_options *opt, int *w, int *h)
{
    lethe_image *img;
    char msg[512];
    struct stat st_;
    if (stat(path, &st_) != 0) {
        SKIP_PART("%s absent", path);
        return 0;
    }
    int st = lethe_image_load(path, opt, &img, msg, sizeof(msg));
    if (st != LETHE_OK) {
        fprintf(stderr, "    %s\n", msg);
        CHECK(!"a photo that exists failed to decode");
        return 0;
    }
    if (w)
        *w = img->width;
    if (h)
        *h = img->height;
    st = img->width > 0 && img->height > 0 && img->orig_width >= img->width;
    CHECK(st);
    lethe_image_free(img);
    return st;
}

/* Decode every *.jpg / *.png in dir (at most max files); returns the count. */
static int decode_folder(const char *dir, int max)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int count = 0;
    char path[1024];

    if (!d) {
        SKIP_PART("%s absent", dir);
        return 0;
    }
    while ((e = readdir(d)) && count < max) {
        size_t n = strlen(e->d_name);
        if (n < 5 || (strcmp(e->d_name + n - 4, ".jpg") && strcmp(e->d_name + n - 4, ".png")))
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        count += decode_file_ok(path, NULL, NULL, NULL);
    }
    closedir(d);
    return count;
}

static void test_real_photos(void)
{
    const char *data = test_data_dir();
    char path[1024];
    int w = 0, h = 0, n = 0;
    lethe_image_options opt;

    if (!data)
        SKIP("../shared/data not found (set LETHE_TEST_DATA)");
    snprintf(path, sizeof(path), "%s/face_recognition/test-images/32bit.png", data);
    if (decode_file_ok(path, NULL, &w, &h)) {
        CHECK_EQ_INT(w, 626);
        CHECK_EQ_INT(h, 1200);
        n++;
    }
    snprintf(path, sizeof(path), "%s/face_recognition/test-images", data);
    n += decode_folder(path, 20);
    snprintf(path, sizeof(path), "%s/faceapi/test-images", data);
    n += decode_folder(path, 20);
    snprintf(path, sizeof(path), "%s/dlib-faces", data);
    n += decode_folder(path, 20);
    snprintf(path, sizeof(path), "%s/lfw/images/Aaron_Eckhart", data);
    n += decode_folder(path, 5);
    snprintf(path, sizeof(path), "%s/lfw/images/AJ_Cook", data);
    n += decode_folder(path, 5);

    /* A 1434x2333 photo at reduced scale: 2/8 keeps the longer side >= 500. */
    lethe_image_options_init(&opt);
    opt.min_decode_side = 500;
    snprintf(path, sizeof(path), "%s/face_recognition/test-images/obama3.jpg", data);
    if (decode_file_ok(path, &opt, &w, &h)) {
        CHECK_EQ_INT(w, (1434 * 2 + 7) / 8);
        CHECK_EQ_INT(h, (2333 * 2 + 7) / 8);
    }
    fprintf(stderr, "  decoded %d real photos\n", n);
    if (n == 0)
        SKIP("no photos found under ../shared/data");
}

/* ---------------------------------------------------------------- */
/* Fuzz seed corpus                                                   */
/* ---------------------------------------------------------------- */

static int write_seed(const char *dir, const char *name, const void *d, size_t n)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (!write_file(path, d, n)) {
        fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
        return 0;
    }
    return 1;
}

/* The seed images in tests/fuzz/corpus/image: small, one per feature. */
static int write_corpus(const char *dir)
{
    uint8_t exif[64], anim[64], *d, *pix;
    size_t len, n;
    int ok = 1;

    d = jpeg_encode_quads(16, 8, NULL, 0, &len);
    ok &= write_seed(dir, "rgb.jpg", d, len);
    ok &= write_seed(dir, "rgb-truncated.jpg", d, len * 2 / 3);
    free(d);
    n = exif_block(exif, 0, 6);
    d = jpeg_encode_quads(16, 8, exif, n, &len);
    ok &= write_seed(dir, "exif6-le.jpg", d, len);
    free(d);
    n = exif_block(exif, 1, 5);
    d = jpeg_encode_quads(24, 16, exif, n, &len);
    ok &= write_seed(dir, "exif5-be.jpg", d, len);
    free(d);
    pix = quad_rgb(16, 16);
    d = jpeg_encode(pix, 16, 16, 3, JCS_RGB, JCS_YCbCr, 1, 1, NULL, 0, &len);
    ok &= write_seed(dir, "progressive.jpg", d, len);
    free(d);
    d = jpeg_encode(pix, 16, 16, 1, JCS_GRAYSCALE, JCS_GRAYSCALE, 0, 1, NULL, 0, &len);
    ok &= write_seed(dir, "grey.jpg", d, len);
    free(d);
    d = jpeg_encode(pix, 16, 16, 3, JCS_RGB, JCS_RGB, 0, 1, NULL, 0, &len);
    ok &= write_seed(dir, "rgb-coded.jpg", d, len);
    free(d);
    free(pix);
    pix = cmyk_quads(16, 8, 1);
    d = jpeg_encode(pix, 16, 8, 4, JCS_CMYK, JCS_CMYK, 0, 1, NULL, 0, &len);
    ok &= write_seed(dir, "cmyk-adobe.jpg", d, len);
    free(d);
    d = jpeg_encode(pix, 16, 8, 4, JCS_CMYK, JCS_YCCK, 1, 1, NULL, 0, &len);
    ok &= write_seed(dir, "ycck-progressive.jpg", d, len);
    free(d);
    free(pix);
    d = jpeg_encode_quads(16, 16, NULL, 0, &len);
    jpeg_patch_size(d, len, 60000, 60000);
    ok &= write_seed(dir, "huge-header.jpg", d, len);
    free(d);

    d = png_encode_pattern(7, 5, 3, 0, &len);
    ok &= write_seed(dir, "rgb.png", d, len);
    ok &= write_seed(dir, "rgb-truncated.png", d, len * 2 / 3);
    free(d);
    d = png_encode_pattern(9, 7, 4, PNG_INTERLACE_ADAM7, &len);
    ok &= write_seed(dir, "rgba-interlaced.png", d, len);
    free(d);
    d = png_encode_pattern(5, 5, 2, 0, &len);
    ok &= write_seed(dir, "grey-alpha.png", d, len);
    free(d);
    {
        static const png_color pal[3] = {{1, 2, 3}, {250, 0, 9}, {0, 90, 200}};
        static const uint8_t trns[1] = {0};
        uint8_t rows[6 * 2] = {0x12, 0x40, 0x21, 0x80, 0x00, 0x10, 0x10, 0x10, 0x20, 0x00,
                               0x12, 0x00};
        png_spec s = {6, 6, PNG_COLOR_TYPE_PALETTE, 2, PNG_INTERLACE_NONE, rows, 2, pal, 3,
                      trns, 1};
        d = png_encode(&s, &len);
        ok &= write_seed(dir, "palette-trns.png", d, len);
        free(d);
        s.color_type = PNG_COLOR_TYPE_GRAY;
        s.bit_depth = 1;
        s.palette = NULL;
        s.trns = NULL;
        s.row_bytes = 1;
        d = png_encode(&s, &len);
        ok &= write_seed(dir, "grey-1bit.png", d, len);
        free(d);
        s.bit_depth = 16;
        s.row_bytes = 12;
        s.color_type = PNG_COLOR_TYPE_GRAY;
        s.width = 6;
        s.height = 1;
        d = png_encode(&s, &len);
        ok &= write_seed(dir, "grey-16bit.png", d, len);
        free(d);
    }
    d = png_fake_header(65536, 65536, &len);
    ok &= write_seed(dir, "huge-header.png", d, len);
    free(d);

    pix = quad_rgb(16, 8);
    len = WebPEncodeLosslessRGB(pix, 16, 8, 48, &d);
    ok &= write_seed(dir, "lossless.webp", d, len);
    ok &= write_seed(dir, "lossless-truncated.webp", d, len - 8);
    WebPFree(d);
    len = WebPEncodeRGB(pix, 16, 8, 48, 80, &d);
    ok &= write_seed(dir, "lossy.webp", d, len);
    WebPFree(d);
    free(pix);
    {
        uint8_t rgba[8 * 8 * 4];
        for (size_t i = 0; i < sizeof(rgba); i++)
            rgba[i] = (uint8_t)(i * 7);
        len = WebPEncodeRGBA(rgba, 8, 8, 32, 80, &d);
        ok &= write_seed(dir, "lossy-alpha.webp", d, len);
        WebPFree(d);
    }
    n = webp_animated_header(anim);
    ok &= write_seed(dir, "animated-header.webp", anim, n);
    ok &= write_seed(dir, "gif-header.gif", "GIF89a\x01\x00\x01\x00\x80\x00\x00", 13);
    ok &= write_seed(dir, "text.txt", "not an image\n", 13);
    ok &= write_seed(dir, "empty", "", 0);
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--write-corpus") == 0)
        return write_corpus(argv[2]);

    RUN(test_options_defaults);
    RUN(test_png_rgb);
    RUN(test_png_grey);
    RUN(test_png_grey_alpha);
    RUN(test_png_rgba_drops_alpha);
    RUN(test_png_interlaced);
    RUN(test_png_grey_1bit);
    RUN(test_png_16bit);
    RUN(test_png_palette);
    RUN(test_jpeg_rgb);
    RUN(test_jpeg_progressive);
    RUN(test_jpeg_grey);
    RUN(test_jpeg_cmyk);
    RUN(test_jpeg_reduced_scale);
    RUN(test_exif_orientations);
    RUN(test_exif_hostile);
    RUN(test_webp);
    RUN(test_limits);
    RUN(test_bad_input);
    RUN(test_from_rgb);
    RUN(test_load);
    RUN(test_alloc_failures);
    RUN(test_real_photos);
    return test_summary();
}
