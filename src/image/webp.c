/*
 * webp.c: WebP decoding with libwebp (lossy, lossless, with or without
 * alpha; alpha is dropped). Animated WebP is refused: showing only the first
 * frame would need libwebpdemux, and a face database gains little from
 * animations. The EXIF chunk is ignored (see image_int.h).
 *
 * The pixel buffer is ours (lethe_malloc, after the limit check); libwebp
 * decodes straight into it.
 */
#include "image/image_int.h"

#include <string.h>

#include <webp/decode.h>

#include "util/util.h"

static const char *webp_status_text(VP8StatusCode code)
{
    switch (code) {
    case VP8_STATUS_OK: return "no error";
    case VP8_STATUS_OUT_OF_MEMORY: return "out of memory";
    case VP8_STATUS_INVALID_PARAM: return "invalid parameter";
    case VP8_STATUS_BITSTREAM_ERROR: return "bitstream error";
    case VP8_STATUS_UNSUPPORTED_FEATURE: return "unsupported feature";
    case VP8_STATUS_SUSPENDED: return "suspended";
    case VP8_STATUS_USER_ABORT: return "aborted";
    case VP8_STATUS_NOT_ENOUGH_DATA: return "the data ends early";
    }
    return "unknown error";
}

/* Turn a libwebp status into ours, with a message. */
static int webp_fail(VP8StatusCode code, const char *stage, char *msg, size_t msg_len)
{
    int status;

    switch (code) {
    case VP8_STATUS_OUT_OF_MEMORY: status = LETHE_ERR_NOMEM; break;
    case VP8_STATUS_UNSUPPORTED_FEATURE: status = LETHE_ERR_UNSUPPORTED; break;
    default: status = LETHE_ERR_FORMAT; break;
    }
    if (code == VP8_STATUS_NOT_ENOUGH_DATA)
        return lethe_fail(msg, msg_len, status, "truncated WebP (%s)", stage);
    return lethe_fail(msg, msg_len, status, "corrupt WebP: %s (%s)", webp_status_text(code),
                      stage);
}

int lethe_webp_decode(const uint8_t *data, size_t len, const lethe_image_options *opt,
                      lethe_raw_image *raw, char *msg, size_t msg_len)
{
    WebPDecoderConfig config;
    VP8StatusCode code;
    size_t stride, size;
    int status;

    raw->rgb = NULL;
    if (!WebPInitDecoderConfig(&config))
        return lethe_fail(msg, msg_len, LETHE_ERR_INTERNAL, "libwebp version mismatch");
    code = WebPGetFeatures(data, len, &config.input);
    if (code != VP8_STATUS_OK)
        return webp_fail(code, "reading the header", msg, msg_len);
    if (config.input.has_animation)
        return lethe_fail(msg, msg_len, LETHE_ERR_UNSUPPORTED,
                          "animated WebP is not supported; save one frame as a still image");
    status = lethe_image_check_limits((uint64_t)config.input.width,
                                      (uint64_t)config.input.height, opt, "WebP", msg, msg_len);
    if (status != LETHE_OK)
        return status;

    raw->width = raw->full_width = config.input.width;
    raw->height = raw->full_height = config.input.height;
    raw->orientation = 1;
    raw->rgb = lethe_image_alloc_rgb(raw->width, raw->height);
    if (!raw->rgb)
        return lethe_fail(msg, msg_len, LETHE_ERR_NOMEM, "out of memory for a %dx%d WebP",
                          raw->width, raw->height);
    stride = (size_t)raw->width * 3;
    size = stride * (size_t)raw->height; /* cannot overflow: alloc_rgb checked */

    config.output.colorspace = MODE_RGB;
    config.output.is_external_memory = 1;
    config.output.u.RGBA.rgba = raw->rgb;
    config.output.u.RGBA.stride = (int)stride;
    config.output.u.RGBA.size = size;
    code = WebPDecode(data, len, &config);
    WebPFreeDecBuffer(&config.output); /* frees nothing of ours */
    if (code != VP8_STATUS_OK) {
        lethe_free(raw->rgb);
        raw->rgb = NULL;
        return webp_fail(code, "decoding", msg, msg_len);
    }
    return LETHE_OK;
}
