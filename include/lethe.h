/*
 * lethe.h: the one public header of liblethe, a face recognition database
 * that keeps provenance and consent with every face and can forget for real.
 *
 * Sections:
 *   1. Version and status codes
 *   2. Images (decode with limits, EXIF orientation)
 *   3. The face engine (detect, landmarks, align, describe)
 *   4. Descriptor utilities
 *
 * Conventions: every function that can fail returns an int status
 * (LETHE_OK == 0). Handles are opaque; every open or load function has a
 * matching close or free that accepts NULL. Memory returned through an out-pointer is
 * owned by the caller and released with the free function named beside it.
 * The library never prints and never exits.
 */
#ifndef LETHE_H
#define LETHE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define LETHE_API __attribute__((visibility("default")))
#else
#define LETHE_API
#endif

/* ------------------------------------------------------------------ */
/* 1. Version and status codes                                         */
/* ------------------------------------------------------------------ */

#define LETHE_VERSION_MAJOR 0
#define LETHE_VERSION_MINOR 1
#define LETHE_VERSION_PATCH 0
#define LETHE_VERSION_STRING "0.1.0"
#define LETHE_VERSION_NUMBER \
    (LETHE_VERSION_MAJOR * 10000 + LETHE_VERSION_MINOR * 100 + LETHE_VERSION_PATCH)

/* The library's version at run time (may differ from the header's). */
LETHE_API const char *lethe_version(void);

/*
 * The one list of status codes. Values never change meaning; new codes are
 * appended at the end.
 */
#define LETHE_STATUS_LIST(X)                                                  \
    X(OK, 0, "success")                                                      \
    X(ERR_NOMEM, 1, "out of memory")                                          \
    X(ERR_IO, 2, "input/output error")                                        \
    X(ERR_FORMAT, 3, "corrupt or unrecognised data")                          \
    X(ERR_TOO_LARGE, 4, "input exceeds a size limit")                         \
    X(ERR_UNSUPPORTED, 5, "unsupported feature or format")                    \
    X(ERR_MODEL, 6, "model file missing, truncated or tampered")              \
    X(ERR_ARG, 7, "invalid argument")                                         \
    X(ERR_NOT_FOUND, 8, "not found")                                          \
    X(ERR_INTERNAL, 9, "internal error")                                      \
    X(ERR_NO_FACE, 10, "no face found")

enum lethe_status {
#define LETHE_STATUS_ENUM_(name, value, text) LETHE_##name = value,
    LETHE_STATUS_LIST(LETHE_STATUS_ENUM_)
#undef LETHE_STATUS_ENUM_
};

/* A static, human-readable description of a status code. Never NULL. */
LETHE_API const char *lethe_strerror(int status);

/* ------------------------------------------------------------------ */
/* 2. Images                                                           */
/* ------------------------------------------------------------------ */

/* A decoded image: 8-bit RGB, interleaved, rows packed (stride = 3*width). */
typedef struct lethe_image {
    int width;          /* pixels, after EXIF orientation was applied */
    int height;         /* pixels, after EXIF orientation was applied */
    uint8_t *rgb;       /* width*height*3 bytes, owned by the image */
    int orig_width;     /* the stored picture's size before any reduced-scale */
    int orig_height;    /* decoding; boxes are reported in these pixels */
} lethe_image;

typedef struct lethe_image_options {
    /* Refuse images with more pixels than this, before allocating.
     * 0 means the default (LETHE_IMAGE_MAX_PIXELS_DEFAULT). */
    uint64_t max_pixels;
    /* Refuse images wider or taller than this (0: 65535). */
    int max_dimension;
    /* If > 0, a JPEG may be decoded at a reduced DCT scale (1/2, 1/4, 1/8)
     * as long as its longer side stays >= this many pixels. */
    int min_decode_side;
    /* Apply the EXIF Orientation tag (default 1 = yes). */
    int apply_orientation;
} lethe_image_options;

#define LETHE_IMAGE_MAX_PIXELS_DEFAULT (100u * 1000u * 1000u)

/* Fill *opt with defaults. */
LETHE_API void lethe_image_options_init(lethe_image_options *opt);

/*
 * Decode a JPEG, PNG or WebP held in memory. On success *out owns a new image
 * (free with lethe_image_free). On failure returns a status and, if msg is
 * not NULL, writes a NUL-terminated explanation into msg[0..msg_len).
 * opt may be NULL for defaults.
 */
LETHE_API int lethe_image_decode(const void *data, size_t len,
                                 const lethe_image_options *opt,
                                 lethe_image **out, char *msg, size_t msg_len);

/* Read and decode a file; as lethe_image_decode. */
LETHE_API int lethe_image_load(const char *path, const lethe_image_options *opt,
                               lethe_image **out, char *msg, size_t msg_len);

/* Wrap caller-owned RGB pixels into a new image (the pixels are copied). */
LETHE_API int lethe_image_from_rgb(const uint8_t *rgb, int width, int height,
                                   lethe_image **out);

/* Release an image; NULL is fine. */
LETHE_API void lethe_image_free(lethe_image *img);

/* ------------------------------------------------------------------ */
/* 3. The face engine                                                  */
/* ------------------------------------------------------------------ */

typedef struct lethe_engine lethe_engine;

enum lethe_detector {
    LETHE_DETECTOR_SSD = 0,   /* SSD MobileNet v1, 512x512 input (default) */
    LETHE_DETECTOR_TINY = 1   /* tiny face detector (Tiny YOLO v2 variant) */
};

enum lethe_precision {
    LETHE_PRECISION_DEFAULT = 0, /* fastest mode whose accuracy is tested */
    LETHE_PRECISION_FP32 = 1     /* full fp32 everywhere */
};

enum lethe_align {
    LETHE_ALIGN_SIMILARITY = 0, /* dlib-style face chip (rotation, scale) */
    LETHE_ALIGN_BOX = 1         /* face-api.js: axis-aligned box crop */
};

typedef struct lethe_engine_options {
    const char *model_dir;  /* folder with the TF.js weights; NULL: $LETHE_MODELS,
                               then the built-in default */
    int detector;           /* enum lethe_detector */
    int precision;          /* enum lethe_precision */
    int align;              /* enum lethe_align */
    int threads;            /* worker threads; 0 = one per core */
    float min_score;        /* detection score threshold (default 0.5) */
    int min_face_size;      /* ignore faces smaller than this many pixels (0) */
    int tiny_input_size;    /* tiny detector input side, multiple of 32 (416) */
    int max_faces;          /* at most this many faces per image (100) */
    int single_pass;        /* 1: never take the second look (see below) (0) */
    int mirror_average;     /* with similarity alignment, average the chip's
                               descriptor with its mirror image's (1): +0.2
                               to +0.4 points on LFW for a 2nd descriptor */
} lethe_engine_options;

/*
 * The second look: when a photo yields no large face (none spanning a
 * quarter of its shorter side), the detector looks again at the photo shrunk
 * to half size in the middle of a black canvas, and the two passes' faces
 * are merged. SSD MobileNet v1 misses many faces that fill most of the frame
 * (about one LFW photo in ten); the second look finds nearly all of them.
 * It costs a second detector pass on photos of small faces only. When both
 * SSD passes find nothing, the tiny detector, run at about the photo's own
 * size, has the last word: it finds some faces SSD scores near zero.
 */

/* Fill *opt with defaults. */
LETHE_API void lethe_engine_options_init(lethe_engine_options *opt);

/*
 * Load the models and start the worker threads. As with sqlite3_open, *out is
 * set even on failure (unless memory ran out) so that lethe_engine_errmsg()
 * can explain; close it either way.
 */
LETHE_API int lethe_engine_open(lethe_engine **out, const lethe_engine_options *opt);

/* Stop the workers and free everything; NULL is fine. */
LETHE_API void lethe_engine_close(lethe_engine *engine);

/* The message of the last failure on this engine (never NULL). Not thread-safe
 * with respect to concurrent calls failing on the same engine. */
LETHE_API const char *lethe_engine_errmsg(const lethe_engine *engine);

/* The number of worker threads (the caller included). */
LETHE_API int lethe_engine_threads(const lethe_engine *engine);

/* Name of the SIMD kernel set in use ("avx512", "avx2", "scalar"). */
LETHE_API const char *lethe_engine_kernels(const lethe_engine *engine);

#define LETHE_LANDMARKS 68
#define LETHE_DESCRIPTOR_DIM 128

typedef struct lethe_face {
    float box[4];                       /* x, y, w, h in original-image pixels */
    float score;                        /* detector confidence in [0, 1] */
    float landmarks[LETHE_LANDMARKS][2]; /* x, y in original-image pixels */
    float descriptor[LETHE_DESCRIPTOR_DIM];
    int has_landmarks;                  /* 1 when landmarks were computed */
    int has_descriptor;                 /* 1 when descriptor was computed */
    int crop_w, crop_h;                 /* the region the landmarks were found in */
} lethe_face;

/* Flags for lethe_engine_analyze. */
#define LETHE_WANT_LANDMARKS  1u
#define LETHE_WANT_DESCRIPTOR 2u /* implies landmarks */
/* Run on the calling thread only, without the engine's workers: for callers
 * that analyse several images at once, one per thread. */
#define LETHE_SINGLE_THREAD   256u

/*
 * Find every face in img, largest score first, and compute what flags ask
 * for. *faces is a new array of *count faces (free with lethe_faces_free);
 * zero faces is success with *faces == NULL. Thread-safe: one engine may be
 * used from several threads at once.
 */
LETHE_API int lethe_engine_analyze(lethe_engine *engine, const lethe_image *img,
                                   unsigned flags, lethe_face **faces, int *count);

/*
 * Describe an image that already is a face chip (no detection): it is resized
 * to 150x150 if needed. Writes LETHE_DESCRIPTOR_DIM floats to descriptor.
 */
LETHE_API int lethe_engine_describe_chip(lethe_engine *engine, const lethe_image *chip,
                                         float *descriptor);

/*
 * Describe n chips at once (batched); descriptors receives n*128 floats.
 * Work is spread over the engine's threads.
 */
LETHE_API int lethe_engine_describe_chips(lethe_engine *engine,
                                          const lethe_image *const *chips, int n,
                                          float *descriptors);

/* Free an array returned by lethe_engine_analyze; NULL is fine. */
LETHE_API void lethe_faces_free(lethe_face *faces);

/* ------------------------------------------------------------------ */
/* 4. Descriptor utilities                                             */
/* ------------------------------------------------------------------ */

/* Euclidean distance between two 128-D descriptors. */
LETHE_API float lethe_descriptor_distance(const float *a, const float *b);

/* The calibrated same-person threshold: distance below means "same". */
LETHE_API float lethe_descriptor_threshold(void);

#ifdef __cplusplus
}
#endif
#endif /* LETHE_H */
