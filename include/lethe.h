/*
 * lethe.h: the one public header of liblethe, a face recognition database
 * that keeps provenance and consent with every face and can forget for real.
 *
 * Sections:
 *   1. Version and status codes
 *   2. Images (decode with limits, EXIF orientation)
 *   3. The face engine (detect, landmarks, align, describe)
 *   4. Descriptor utilities
 *   5. The store (catalog, ingest, search, lookup, log, policy)
 *   6. Forgetting (erasure, opt-outs, receipts)
 *   7. Access: API keys and roles (for servers)
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
#define LETHE_VERSION_MINOR 2
#define LETHE_VERSION_PATCH 0
#define LETHE_VERSION_STRING "0.2.0"
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
    X(ERR_NO_FACE, 10, "no face found")                                       \
    X(ERR_STORE, 11, "store missing, damaged or of another version")          \
    X(ERR_POLICY, 12, "refused by the consent policy")                        \
    X(ERR_BUSY, 13, "the store is locked by another writer")                  \
    X(ERR_CONFIRM, 14, "refused without confirmation")                       \
    X(ERR_DENIED, 15, "access denied")

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
    LETHE_PRECISION_DEFAULT = 0, /* Winograd in the descriptor net; the int8 SSD
                                    detector where the CPU has AVX-512 VNNI (about
                                    2x the photos per second; one LFW pair in 5,988
                                    changes side of a fixed threshold, rank-1 does
                                    not move; see docs/model-card.md), else fp32 */
    LETHE_PRECISION_FP32 = 1,    /* full fp32 everywhere, reference summation order:
                                    face-api.js's outputs, bit for bit where the
                                    parity tests say so */
    LETHE_PRECISION_INT8 = 2     /* the default, asked for by name (kept so that
                                    older callers keep working) */
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

/*
 * Why the calling thread's last failed call on this engine failed (never
 * NULL; "no error" when this thread has seen no failure on it). Like errno,
 * the message is per thread: failures in other threads, on this engine or
 * another, never change what a thread reads, so one engine may be shared by
 * threads that each read their own failures. The string is valid until the
 * calling thread's next call that fails on an engine, or its exit. NULL
 * gives "out of memory" (lethe_engine_open could not allocate the engine).
 * lethe_engine_analyze_bytes and _file write their message into the
 * caller's buffer, and the batch's into each result: they leave this alone.
 */
LETHE_API const char *lethe_engine_errmsg(const lethe_engine *engine);

/* The number of worker threads (the caller included). */
LETHE_API int lethe_engine_threads(const lethe_engine *engine);

/* Name of the SIMD kernel set in use ("avx512", "avx2", "scalar"). */
LETHE_API const char *lethe_engine_kernels(const lethe_engine *engine);

/* The precision the engine computes at: "fp32" (LETHE_PRECISION_FP32),
 * "int8" when the int8 detector runs (LETHE_PRECISION_DEFAULT or _INT8 on a
 * CPU with AVX-512 VNNI and LETHE_INT8 not 0), else "default" (Winograd
 * descriptor net, fp32 detector). Ingest records it in the log. */
LETHE_API const char *lethe_engine_precision(const lethe_engine *engine);

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

/*
 * Photos in one call: decode and analyse. These are what programs use (the
 * CLI, a server, a language binding): they read or take a photo's bytes,
 * decode them (lethe_image_decode) and analyse the image
 * (lethe_engine_analyze), and say why in the caller's buffer when anything
 * fails (never through lethe_engine_errmsg). Thread-safe: one engine may
 * serve many threads at once.
 */

/* More flags for lethe_engine_analyze and the calls below. */
/* Keep only the largest face, with its descriptor (implies
 * LETHE_WANT_DESCRIPTOR): the face a 1:1 compare, a search by photo, a
 * forget-by-face or an opt-out-by-selfie uses. The largest face is the one
 * whose box, as reported (original pixels), has the greatest area w * h
 * (the exact product of the two floats); of boxes of equal area, the one
 * lethe_engine_analyze lists first (the higher score) wins. Faces that
 * cannot be aligned (lethe_engine_analyze drops them) are never chosen. No
 * face at all is LETHE_ERR_NO_FACE, with a message, where without this flag
 * it is success with zero faces. */
#define LETHE_LARGEST_FACE 4u
/* The input already is a face chip: no detection; the whole image is
 * described as lethe_engine_describe_chip does, giving exactly one face
 * with box {0, 0, width, height}, score 1, has_descriptor 1 and no
 * landmarks. LETHE_WANT_* and LETHE_LARGEST_FACE are then ignored. */
#define LETHE_CHIP 8u

/* What one photo holds. */
typedef struct lethe_analysis {
    int width;          /* the photo's size in original pixels, after EXIF */
    int height;         /* orientation; 0 when it could not be decoded */
    lethe_face *faces;  /* count faces, highest score first (as
                           lethe_engine_analyze); NULL when none or on
                           failure. Owned by the caller: lethe_faces_free */
    int count;
} lethe_analysis;

/*
 * Decode the photo in data[0..len) (JPEG, PNG or WebP; image_opt may be NULL
 * for the defaults) and analyse it with flags (LETHE_WANT_*,
 * LETHE_SINGLE_THREAD, LETHE_LARGEST_FACE, LETHE_CHIP). Returns LETHE_OK
 * with *out filled, or a status with *out holding no faces (width and
 * height set when the photo was decoded) and, if msg is not NULL and
 * msg_len > 0, why in msg[0..msg_len) (NUL-terminated; "" on success). The
 * bytes are not kept.
 */
LETHE_API int lethe_engine_analyze_bytes(lethe_engine *engine, const void *data, size_t len,
                                         const lethe_image_options *image_opt, unsigned flags,
                                         lethe_analysis *out, char *msg, size_t msg_len);

/*
 * The same for the file at path (at most 256 MiB). Only a regular file is
 * read: a directory, FIFO, socket or device is refused (without waiting on
 * it) with LETHE_ERR_IO, a missing file is LETHE_ERR_NOT_FOUND. Every
 * message names the path.
 */
LETHE_API int lethe_engine_analyze_file(lethe_engine *engine, const char *path,
                                        const lethe_image_options *image_opt, unsigned flags,
                                        lethe_analysis *out, char *msg, size_t msg_len);

/*
 * Many photos: a batch analysed by a pool of threads, its results handed to
 * a callback in input order, each as soon as it and all before it are ready.
 */
typedef struct lethe_batch_input {
    const char *path;   /* a photo file, or NULL to take data and len */
    const void *data;   /* the photo's bytes when path is NULL; not copied:
                           they must stay valid until the batch call returns */
    size_t len;
} lethe_batch_input;

typedef struct lethe_batch_stats {
    size_t total;       /* inputs in the batch */
    size_t delivered;   /* results handed to the callback */
    size_t failed;      /* of which failed */
    int cancelled;      /* 1 when the callback stopped the batch */
} lethe_batch_stats;

typedef struct lethe_batch_result {
    size_t index;              /* which input this is: 0, 1, 2, ... in turn */
    const char *path;          /* that input's path, or NULL */
    int status;                /* LETHE_OK, or why this input failed */
    const char *message;       /* "" or why (valid during the callback only) */
    lethe_analysis analysis;   /* as lethe_engine_analyze_file/_bytes give */
    lethe_batch_stats progress; /* so far, this result included */
} lethe_batch_result;

/*
 * Called on the thread that called lethe_engine_analyze_batch, one result at
 * a time, never concurrently. analysis.faces is freed when the callback
 * returns, unless it takes them: it may set result->analysis.faces to NULL
 * and free them later with lethe_faces_free. Return 0 to go on; non-zero
 * stops the batch: no more callbacks, photos being analysed are finished
 * and their results dropped, no new one is started.
 */
typedef int (*lethe_batch_fn)(void *ctx, lethe_batch_result *result);

typedef struct lethe_batch_options {
    unsigned flags;          /* as for lethe_engine_analyze_file */
    int threads;             /* photos analysed at once (0: as many as the
                                engine has threads); with more than one, each
                                photo runs on one thread (LETHE_SINGLE_THREAD),
                                with one, its layers use the engine's threads */
    const lethe_image_options *image_opt; /* NULL: defaults */
    lethe_batch_fn on_result; /* required */
    void *ctx;               /* passed to on_result */
} lethe_batch_options;

/* Fill *opt with defaults (flags LETHE_WANT_DESCRIPTOR, threads 0). */
LETHE_API void lethe_batch_options_init(lethe_batch_options *opt);

/*
 * Analyse inputs[0..n) and hand each result to opt->on_result, in order. A
 * photo that fails is a result like any other (status and message); the
 * batch goes on. Returns LETHE_OK when every result was delivered or the
 * callback stopped the batch (*stats, which may be NULL, says which);
 * LETHE_ERR_ARG or LETHE_ERR_NOMEM when the batch could not start (no
 * callback is then made). At most a few results per thread wait for the
 * callback at any time, however long the batch.
 */
LETHE_API int lethe_engine_analyze_batch(lethe_engine *engine, const lethe_batch_input *inputs,
                                         size_t n, const lethe_batch_options *opt,
                                         lethe_batch_stats *stats);

/* ------------------------------------------------------------------ */
/* 4. Descriptor utilities                                             */
/* ------------------------------------------------------------------ */

/* Euclidean distance between two 128-D descriptors. */
LETHE_API float lethe_descriptor_distance(const float *a, const float *b);

/* The calibrated same-person threshold: distance below means "same". */
LETHE_API float lethe_descriptor_threshold(void);

/* ------------------------------------------------------------------ */
/* 5. The store                                                        */
/* ------------------------------------------------------------------ */

/*
 * A store is a directory holding the catalog (SQLite: photos, provenance,
 * faces, templates, the consent policy's versions, the audit log), the
 * keyring (every photo's key, the signing secret, the opt-outs: never in a
 * backup), the descriptor index (a derived file, rebuilt from the catalog
 * whenever it lags behind) and the consent policy as text (written by
 * lethe; a hand-edited file is refused). Photos are identified by the
 * SHA-256 of their bytes; the photo itself is never copied into the store,
 * only its provenance, its face boxes and, where the policy allows, one
 * 128-D template per face. Every personal field is sealed with the photo's
 * own key: erasing a photo destroys its key, so no copy of the catalog,
 * however old, can be read for it again (see the manual, "Forgetting").
 */
typedef struct lethe_store lethe_store;

/* 3: templates record their model (the models table, faces.model); a
 * format 2 store is migrated on its first writable open. */
#define LETHE_STORE_FORMAT 3

/* Flags for lethe_store_open. */
#define LETHE_STORE_CREATE   1u  /* create the directory and catalog if absent */
#define LETHE_STORE_READONLY 2u  /* never write (the index is not rebuilt) */
/*
 * LETHE_STORE_SHARED: one handle for many threads (a server).
 *
 * What may run at once: lethe_search, lethe_search_image, lethe_search_fused,
 * lethe_search_images_fused and lethe_key_authenticate may be called from
 * any number of threads at the same time, and at the same time as one
 * other call on the handle. All
 * the other calls (ingest, forget, lookup, the log, keys, policy, ...)
 * still run one at a time: the caller orders them among themselves (a
 * mutex), as on any handle. lethe_store_close runs alone.
 *
 * How: each of those calls runs on a view of the handle with a SQLite
 * connection, an index handle and a keyring reader of its own (a small
 * pool, grown as threads need it); the index is read under a
 * reader-writer lock that the handle's own index changes (after an
 * ingest, a forget, a policy change, a rebuild) take for writing, so they
 * wait for the searches under way, and searches that start meanwhile wait
 * for them.
 *
 * The log: a search's entries are committed before its results are
 * returned, as on any handle, but many searches share one commit (and one
 * fsync): the first waiting thread commits every queued entry in one
 * transaction, in queue order, on a connection of its own (group commit).
 * The hash chain stays exact. When a group cannot commit (memory, the
 * disk), every search in it fails without its results and none of its
 * entries is in the log.
 *
 * Visibility: a change (an ingest's batch, a forget, a policy change) that
 * has returned is seen by every search that starts after it: its catalog
 * commit and its index change are both done before it returns, and a
 * search reads the index and the catalog afresh (a new read transaction)
 * when it starts. A face whose erasure committed is never returned, even
 * if the index lags (its row and its key are gone; the catalog is what
 * decides).
 *
 * Messages: lethe_store_errmsg on a shared handle returns the calling
 * thread's message (a thread-local buffer): that of its last failed call
 * on this handle, as long as it made no failing call on another shared
 * handle since. The text stays valid until the thread's next call.
 */
#define LETHE_STORE_SHARED   4u

/* Called about once a second while a writer waits for the store's lock:
 * holder describes who holds it ("pid 4242 (lethe ingest) since ..."). */
typedef void (*lethe_wait_fn)(void *ctx, const char *holder, double waited_seconds);

typedef struct lethe_store_options {
    unsigned flags;             /* LETHE_STORE_CREATE, _READONLY, _SHARED */
    const char *actor;          /* who creates the store (in the log's first entry) */
    double wait_seconds;        /* how long a writer waits for another (30); 0: not at all */
    lethe_wait_fn on_wait;      /* may be NULL */
    void *ctx;
    const char *keyring_mirror; /* with LETHE_STORE_CREATE: a folder (on another disk)
                                   where the keyring is mirrored at every change */
} lethe_store_options;

LETHE_API void lethe_store_options_init(lethe_store_options *opt);

/*
 * Open the store in directory dir. As with lethe_engine_open, *out is set even
 * on failure (unless memory ran out) so lethe_store_errmsg() can explain;
 * close it either way. A store of another format version is refused with
 * LETHE_ERR_STORE, as is a catalog without its keyring, a keyring of
 * another store, a keyring others can read, and a hand-edited policy file.
 * A writable open finishes whatever a crash interrupted (a scrub, the
 * keyring's erasures, the index, log.head). opt may be NULL.
 */
LETHE_API int lethe_store_open_with(const char *dir, const lethe_store_options *opt,
                                    lethe_store **out);
/* The same with default options and these flags. */
LETHE_API int lethe_store_open(const char *dir, unsigned flags, lethe_store **out);
LETHE_API void lethe_store_close(lethe_store *store);
LETHE_API const char *lethe_store_errmsg(const lethe_store *store);
/* The store's directory, as given to lethe_store_open. */
LETHE_API const char *lethe_store_path(const lethe_store *store);

/* Where a photo came from and on what basis it may be processed. Every field
 * may be NULL or "" (not given). */
typedef struct lethe_provenance {
    const char *path;         /* the file it was read from (made absolute) */
    const char *photo_id;     /* the source's own id for the photo */
    const char *url;
    const char *uploader;     /* the account that published it */
    const char *source;       /* the collection: a site, a dataset */
    const char *license;
    const char *jurisdiction; /* ISO 3166-1 alpha-2 or 3166-2: GB, DE, US-IL */
    const char *consent;      /* explicit | public-license | none | withdrawn;
                                 not given counts as none */
    const char *collected_at; /* ISO 8601 date or date-time */
} lethe_provenance;

/* Manifests: the rows of a CSV (with a header) or JSON Lines file listing
 * photos (column "path", relative to the manifest's folder) or descriptors
 * ("embedding": 128 numbers) with their provenance columns: photo_id, url,
 * uploader, source, license, jurisdiction, consent, collected_at. */
typedef struct lethe_manifest lethe_manifest;

typedef struct lethe_manifest_row {
    size_t line;               /* where the record starts (1-based) */
    const char *file;          /* the photo's path, resolved ("" for descriptors) */
    lethe_provenance prov;     /* jurisdiction and consent canonical */
    const float *embedding;    /* descriptor manifests: 128 floats; else NULL */
} lethe_manifest_row;          /* valid until the next lethe_manifest_next */

#define LETHE_MANIFEST_DESCRIPTORS 1u /* rows carry an embedding, no path */
#define LETHE_MANIFEST_PROVENANCE 2u  /* provenance only (a sidecar): no path */

/* Open a manifest; a file that cannot be a manifest at all (unreadable, no
 * header, no path column) fails here with a message. */
LETHE_API int lethe_manifest_open(const char *file, unsigned flags, lethe_manifest **out,
                                  char *msg, size_t msg_len);
/*
 * The next row: 1 and *row filled; 0 at the end; -1 for a bad row, skipped
 * (msg says "line N: why"; call again for the next); -2 when reading failed
 * (msg says why; stop).
 */
LETHE_API int lethe_manifest_next(lethe_manifest *m, lethe_manifest_row *row, char *msg,
                                  size_t msg_len);
/* Columns the manifest has that lethe does not know (so callers can warn). */
LETHE_API size_t lethe_manifest_unknown_columns(const lethe_manifest *m,
                                                const char *const **names);
LETHE_API void lethe_manifest_close(lethe_manifest *m);

/*
 * Confinement: a photo manifest's paths are relative to its folder, and a
 * row whose path is absolute, climbs out with `..`, or whose real path
 * (symbolic links resolved) lies outside the folder is a bad row: "line N:
 * path '...' is outside the manifest's folder (--allow-outside permits it)".
 * A missing file inside the folder is not refused here (ingest reports it).
 * This flag, for lethe_manifest_open and lethe_manifest_open_mem, accepts
 * such paths.
 */
#define LETHE_MANIFEST_ALLOW_OUTSIDE 4u

/*
 * A manifest held in memory (a server receives it as bytes, its photos
 * uploaded beside it). data is not copied: it must stay valid and unchanged
 * until lethe_manifest_close. name (may be NULL) chooses the format by its
 * extension as for files (.csv; .jsonl, .ndjson), else the content does.
 * With base_dir, relative paths are resolved against that folder and
 * confined to it as for files; with base_dir NULL, row.file is the path
 * exactly as written (for the caller to match against what was uploaded),
 * and only the lexical check applies (absolute paths and `..` that leave
 * are bad rows).
 */
LETHE_API int lethe_manifest_open_mem(const void *data, size_t len, const char *name,
                                      const char *base_dir, unsigned flags,
                                      lethe_manifest **out, char *msg, size_t msg_len);

/*
 * Raw descriptors: a file of little-endian float32, 128 per descriptor (512
 * bytes each, nothing else), with a sidecar manifest (CSV or JSON Lines, as
 * with LETHE_MANIFEST_PROVENANCE) giving each descriptor's provenance, row
 * by row in order. Rows come out as from a descriptor manifest (embedding
 * set, file ""). Refused at open, with a message: a file whose size is not
 * a multiple of 512 bytes, a sidecar with more or fewer records than there
 * are descriptors, a FIFO or device for either. A descriptor with a NaN or
 * infinite component is a bad row (-1 from lethe_manifest_next), and so is
 * a bad sidecar record (its descriptor is skipped with it). flags: 0.
 */
LETHE_API int lethe_manifest_open_raw(const char *f32_file, const char *sidecar,
                                      unsigned flags, lethe_manifest **out, char *msg,
                                      size_t msg_len);
/* The same from memory (neither buffer is copied: keep both until close);
 * sidecar_name (may be NULL) chooses the sidecar's format by extension. */
LETHE_API int lethe_manifest_open_raw_mem(const void *f32, size_t f32_len,
                                          const void *sidecar, size_t sidecar_len,
                                          const char *sidecar_name, unsigned flags,
                                          lethe_manifest **out, char *msg, size_t msg_len);

/*
 * Search queries given as JSON text. A descriptor is a JSON array of 128
 * numbers (finite as 32-bit floats), or an object whose "embedding" (or
 * "descriptor") is one. lethe_descriptor_parse reads one descriptor from
 * json[0..len) (at most 1 MiB) into descriptor[0..128); LETHE_ERR_FORMAT
 * with msg saying what is wrong.
 */
LETHE_API int lethe_descriptor_parse(const char *json, size_t len, float *descriptor,
                                     char *msg, size_t msg_len);

/* A queries file is JSON Lines: each line one descriptor as above, or a line
 * of `lethe embed --json` output ({"faces": [{"embedding": [...]}, ...]}),
 * one query per face. Blank lines are skipped; a line may hold 1 MiB. */
typedef struct lethe_queries lethe_queries;

typedef struct lethe_query {
    size_t line;              /* the line it is on (1-based) */
    int face;                 /* -1: the line is the descriptor; else its index in "faces" */
    const float *descriptor;  /* 128 floats, valid until the next lethe_queries_next */
} lethe_query;

/* Open a file of queries (a FIFO or device is refused), or queries held in
 * memory (not copied: keep data until close). An empty input is refused. */
LETHE_API int lethe_queries_open(const char *file, lethe_queries **out, char *msg,
                                 size_t msg_len);
LETHE_API int lethe_queries_open_mem(const void *data, size_t len, lethe_queries **out,
                                     char *msg, size_t msg_len);
/* The next query: 1 and *query filled; 0 at the end; -1 for a bad line or
 * face, skipped (msg says "line N: why"; call again); -2 when reading failed
 * (msg says why; stop). */
LETHE_API int lethe_queries_next(lethe_queries *q, lethe_query *query, char *msg,
                                 size_t msg_len);
LETHE_API void lethe_queries_close(lethe_queries *q); /* NULL is fine */

/* Ingest: photos (decoded, detected, described in parallel) or descriptors
 * computed elsewhere, each with provenance, committed in batches. */
typedef struct lethe_ingest lethe_ingest;

typedef struct lethe_ingest_stats {
    uint64_t seen;          /* photos or descriptor rows offered */
    uint64_t added;         /* photos new to the store */
    uint64_t duplicates;    /* photos already held (perhaps under new provenance) */
    uint64_t provenance;    /* provenance records added */
    uint64_t faces;         /* faces found in added photos */
    uint64_t templates;     /* templates stored */
    uint64_t refused;       /* photos whose templates the policy refused */
    uint64_t withdrawn;     /* templates dropped because consent was withdrawn */
    uint64_t no_face;       /* analysed photos with no face */
    uint64_t errors;        /* inputs that failed (reported through on_error) */
    uint64_t bytes;         /* bytes of photos read */
    uint64_t opted_out;     /* photos skipped by a standing opt-out */
    uint64_t opted_out_faces; /* faces not stored because a face opt-out matched */
    uint64_t uncommitted;   /* inputs of a batch that failed to commit (a full disk;
                               after a failed fsync its outcome is unknown): run the
                               ingest again, it adds nothing twice */
} lethe_ingest_stats;

/* Called for every input that fails; line is the manifest line or 0. */
typedef void (*lethe_ingest_error_fn)(void *ctx, const char *input, size_t line,
                                      const char *message);

typedef struct lethe_ingest_options {
    lethe_engine *engine;   /* required to ingest photos; NULL for descriptors */
    const char *actor;      /* who ingests (recorded in the log); NULL: "" */
    int threads;            /* photos analysed at once; 0 = engine's threads */
    int batch_photos;       /* commit at least every N photos (256) */
    double batch_seconds;   /* ... and at least every T seconds (2.0) */
    lethe_ingest_error_fn on_error;
    void *ctx;
    const struct lethe_model_id *model; /* the model that computed the descriptors
                                           offered (lethe_ingest_descriptor); NULL:
                                           the shipped one. Photos are always
                                           described by the engine's model. */
} lethe_ingest_options;

LETHE_API void lethe_ingest_options_init(lethe_ingest_options *opt);
LETHE_API int lethe_ingest_begin(lethe_store *store, const lethe_ingest_options *opt,
                                 lethe_ingest **out);
/*
 * Offer one photo file. Returns LETHE_OK when the photo was taken in (its
 * outcome, errors included, arrives later through the stats and on_error);
 * a status only for failures that end the ingest (the store cannot be
 * written). line is the manifest line for error messages, or 0.
 */
LETHE_API int lethe_ingest_photo(lethe_ingest *ing, const char *file,
                                 const lethe_provenance *prov, size_t line);
/* The same for a photo held in memory (an upload); name is used in
 * messages and recorded as the path (may be NULL: ""). The bytes are
 * copied. */
LETHE_API int lethe_ingest_photo_bytes(lethe_ingest *ing, const void *data, size_t len,
                                       const char *name, const lethe_provenance *prov,
                                       size_t line);
/* Record an input that failed before it could be offered (a manifest row
 * that does not parse): counted in errors and in the batch's log entry,
 * and passed to on_error. */
LETHE_API int lethe_ingest_fail(lethe_ingest *ing, const char *input, size_t line,
                                const char *message);
/* Offer one descriptor computed elsewhere; the "photo" is identified by the
 * hash of the descriptor. The policy applies as for photos. */
LETHE_API int lethe_ingest_descriptor(lethe_ingest *ing, const float *descriptor,
                                      const lethe_provenance *prov, size_t line);
/* Counts so far (for progress): committed batches plus the open one.
 * Thread-safe with respect to the workers. */
LETHE_API void lethe_ingest_progress(lethe_ingest *ing, lethe_ingest_stats *stats);
/* Wait for the photos in flight, commit, and free ing; *stats (may be NULL)
 * receives the totals of what was committed (a batch that failed to commit
 * counts only in errors). Returns the first fatal status, if any; the
 * message is then in lethe_store_errmsg. */
LETHE_API int lethe_ingest_end(lethe_ingest *ing, lethe_ingest_stats *stats);

/* A search result: a face, its distance and its photo's provenance. */
typedef struct lethe_match {
    float distance;               /* Euclidean, in descriptor space */
    int query;                    /* which query this answers */
    int64_t face;                 /* the face's id in the store */
    char photo[65];               /* SHA-256 of the photo's bytes, hex */
    float box[4];                 /* x, y, w, h in the photo's pixels */
    int provenance_count;         /* records held for the photo */
    lethe_provenance prov;        /* the first of them (strings owned by the
                                     result array) */
    /* Match evidence (section "Match evidence" below), from the calibration
     * table shipped with the descriptor model: */
    double fmr;                   /* false-match rate at this distance: the share
                                     of pairs of photos of two different people
                                     (LFW) as close or closer */
    double strangers;             /* faces of other people expected at or below
                                     this distance in this store: gallery x fmr */
    uint64_t gallery;             /* templates in the store when it searched */
    int tier;                     /* enum lethe_tier: the evidence in plain words */
} lethe_match;

typedef struct lethe_search_options {
    const char *purpose;    /* required: why the search is made (logged) */
    const char *actor;      /* who makes it (logged) */
    int top_k;              /* results per query (10) */
    float threshold;        /* only matches at most this far (default: no limit) */
    int threads;            /* 0 = one per core */
    double fpir;            /* in (0, 1): the threshold is chosen from the store's
                               size so that a search for someone the store does not
                               hold returns any face with probability at most fpir
                               (lethe_calibration_threshold; the lower of it and
                               threshold applies). 0 (default): off */
    const struct lethe_model_id *model; /* the model that computed the queries
                                           (lethe_search, lethe_verify); NULL: the
                                           shipped one. Only that model's templates
                                           are compared (section 5b). */
} lethe_search_options;

LETHE_API void lethe_search_options_init(lethe_search_options *opt);
/*
 * Exact 1:N search: for each of nq descriptors, the top_k nearest templates
 * (the true nearest, not an approximation) at most threshold away, nearest
 * first. Each query is logged (time, actor, purpose, a keyed hash of the
 * query, result count) before its results are returned. *matches is one
 * array for all queries (lethe_matches_free), *count its length.
 */
LETHE_API int lethe_search(lethe_store *store, const float *queries, int nq,
                           const lethe_search_options *opt, lethe_match **matches,
                           size_t *count);
/* Search with the largest face of an image (lethe_engine_describe_largest):
 * LETHE_ERR_NO_FACE when it has none (nothing is logged then). */
LETHE_API int lethe_search_image(lethe_store *store, lethe_engine *engine,
                                 const lethe_image *image, const lethe_search_options *opt,
                                 lethe_match **matches, size_t *count);
LETHE_API void lethe_matches_free(lethe_match *matches, size_t count);

/*
 * Multi-photo probes: several photos (or descriptors) of ONE person,
 * searched once. The probes are fused into their mean descriptor (the plain
 * mean, not renormalised: descriptors are not unit vectors and the index
 * compares raw Euclidean distances), and the gallery is ranked once by its
 * distance to that mean. Why the mean: on LFW, for the 897 people with three
 * or more photos, two photos fused this way found the mate first 95.21% of
 * the time, against 94.31% taking each face's nearer distance to either
 * probe and 91.19% for one photo alone (bench/README.md, "Multi-photo
 * probes"); noise that differs between photos averages out, what the
 * person's photos share stays.
 *
 * The answer is one query (every match has query 0) and one log entry: the
 * actor, the purpose, a keyed hash over all the probes in order, the number
 * of results; each returned photo counts once for the data-subject page.
 *
 * Match evidence: the calibration table was measured on single photos, and
 * a mean descriptor's distances to strangers are distributed differently,
 * so a fused match carries no false-match rate: fmr and strangers are NAN
 * and tier is LETHE_TIER_UNCALIBRATED (gallery is filled). opt->fpir must
 * be 0 (LETHE_ERR_ARG otherwise) for the same reason. On a handle opened
 * with LETHE_STORE_SHARED it runs as lethe_search does there (a view, the
 * entry group-committed), from any thread.
 *
 * lethe_search_fused: nprobes (1 to LETHE_FUSE_MAX) descriptors, one after
 * another. lethe_search_images_fused: the largest face of each image (as
 * lethe_search_image); LETHE_ERR_NO_FACE, naming the image by its index in
 * the message, when one has none (nothing is logged then). *matches as for
 * lethe_search.
 */
#define LETHE_FUSE_MAX 64
LETHE_API int lethe_search_fused(lethe_store *store, const float *probes, int nprobes,
                                 const lethe_search_options *opt, lethe_match **matches,
                                 size_t *count);
LETHE_API int lethe_search_images_fused(lethe_store *store, lethe_engine *engine,
                                        const lethe_image *const *images, int nimages,
                                        const lethe_search_options *opt,
                                        lethe_match **matches, size_t *count);

/*
 * Match evidence: what a distance means in a store of a given size. The
 * descriptor model ships with a calibration table: the distances between
 * photos of different people (impostor pairs) and of the same person
 * (genuine pairs), measured once on LFW (people A-M; checked on N-Z). It
 * derives from LFW, never from a store's data. The manual explains the
 * measures (docs/lethe.1.md, MATCH EVIDENCE).
 */
enum lethe_tier {
    LETHE_TIER_STRONG = 0,    /* strangers < 0.01: a stranger this close turns up by
                                 chance in fewer than 1 search in 100 */
    LETHE_TIER_MODERATE = 1,  /* 0.01 <= strangers < 0.1 */
    LETHE_TIER_WEAK = 2,      /* 0.1 <= strangers < 1 */
    LETHE_TIER_NONE = 3,      /* strangers >= 1: at least one stranger this close is
                                 expected; the distance alone is no evidence */
    LETHE_TIER_UNCALIBRATED = 4 /* no table was measured for this kind of probe
                                 (a fused search): fmr and strangers are NAN */
};

typedef struct lethe_calibration {
    const char *name;             /* the table's name and version (static) */
    const char *model;            /* the descriptor pipeline it was measured on */
    const char *source;           /* the data and split */
    uint64_t photos;              /* calibration photos */
    uint64_t no_face;             /* of them, without a face (no pairs) */
    uint64_t people;              /* calibration people */
    uint64_t impostor_pairs;      /* pairs of different people measured */
    uint64_t genuine_pairs;       /* pairs of the same person measured */
    double min_measured_fmr;      /* below this rate the table extrapolates */
    float min_measured_distance;  /* the distance where it starts to */
} lethe_calibration;

/* What the shipped table is (strings static). */
LETHE_API int lethe_calibration_info(lethe_calibration *info);
/* At distance (finite, >= 0): *fmr the share of impostor pairs as close or
 * closer, *fnmr the share of genuine pairs farther (either may be NULL). */
LETHE_API int lethe_calibration_rates(float distance, double *fmr, double *fnmr);
/* The largest distance at which a search of a store of gallery templates
 * for someone it does not hold returns any face with probability at most
 * fpir (in (0, 1)), taking the templates as independent:
 * 1 - (1 - fmr)^gallery <= fpir. INFINITY when gallery is 0; 0 when no
 * distance holds it (only identical descriptors would be returned). */
LETHE_API int lethe_calibration_threshold(double fpir, uint64_t gallery, float *threshold);
/* The tier of a match with this many expected strangers (>= 0). */
LETHE_API int lethe_calibration_tier(double strangers, int *tier);
/* "strong", "moderate", "weak", "none", "uncalibrated"; "?" for another
 * value (static). */
LETHE_API const char *lethe_tier_name(int tier);
/* The number of templates in the store's index now, of every model. */
LETHE_API int lethe_store_templates(lethe_store *store, uint64_t *count);
/* The number of templates a search of queries computed by model (NULL: the
 * shipped model) compares against now: that model's templates only, the
 * gallery its matches' evidence counts. Errors as lethe_search's: a
 * retired model is LETHE_ERR_POLICY, a model of which the store holds no
 * template while it holds others' LETHE_ERR_NOT_FOUND; an empty store 0. */
LETHE_API int lethe_search_gallery(lethe_store *store, const struct lethe_model_id *model,
                                   uint64_t *count);

/* Lookup without a face: what does the store hold for this account, link,
 * id or file? */
enum lethe_lookup_kind {
    LETHE_LOOKUP_UPLOADER = 0,
    LETHE_LOOKUP_URL = 1,
    LETHE_LOOKUP_PHOTO_ID = 2,   /* the source's photo id, or the SHA-256 hex */
    LETHE_LOOKUP_FILE = 3        /* a file whose bytes are hashed */
};
/*
 * Writes a document (free with lethe_free_string) describing every photo
 * found, in format "json": {"lookup", "photos": [{"photo", "kind", "status",
 * "width", "height", "faces", "templates", "provenance": [{...}]}]}, or
 * "text" (for people; control characters escaped). The lookup is logged
 * with a keyed hash of the value, never the value itself.
 */
LETHE_API int lethe_lookup(lethe_store *store, int kind, const char *value,
                           const char *actor, const char *format, char **out);
/* The same for the exact photo file given as bytes[0..len) (a server's
 * upload): hashed with SHA-256, never decoded; "lookup" is "file". */
LETHE_API int lethe_lookup_bytes(lethe_store *store, const void *bytes, size_t len,
                                 const char *actor, const char *format, char **out);

/*
 * 1:1 verification: is this face the person of those stored photos? The
 * photos are selected as lethe_lookup selects them (kind and value: an
 * uploader, a URL, a photo id or SHA-256, a file); the descriptor is
 * compared with every template they hold, and the nearest is reported.
 * Like a search it needs a purpose and is logged (actor, purpose, a keyed
 * hash of the descriptor, the number of templates compared) before it
 * answers. LETHE_ERR_NOT_FOUND when the selection holds no template.
 */
typedef struct lethe_verify_result {
    float distance;      /* to the nearest template of the selection */
    int match;           /* distance <= threshold (opt->threshold when it
                            is finite and above 0, else
                            lethe_descriptor_threshold()) */
    float threshold;     /* the threshold applied */
    int64_t face;        /* the nearest template's face */
    char photo[65];      /* its photo's SHA-256, hex */
    int templates;       /* templates compared */
    int photos;          /* photos selected */
} lethe_verify_result;
LETHE_API int lethe_verify(lethe_store *store, const float *descriptor, int kind,
                           const char *value, const lethe_search_options *opt,
                           lethe_verify_result *result);

/* The audit log: a hash chain in the catalog, anchored by the head file. */
/* Every entry as "jsonl" (one JSON object a line) or "text" (one line an
 * entry, control characters escaped), free with lethe_free_string. */
LETHE_API int lethe_log_export(lethe_store *store, const char *format, char **out);
/* The log's last entry: its number and hash (the anchor to copy elsewhere). */
LETHE_API int lethe_log_head(lethe_store *store, uint64_t *seq, char hash[65]);
/*
 * Check the chain. Returns LETHE_OK when intact; otherwise LETHE_ERR_FORMAT,
 * *first_bad set to the sequence number of the first entry that fails and
 * lethe_store_errmsg() saying why. *entries receives the count.
 */
LETHE_API int lethe_log_verify(lethe_store *store, uint64_t *entries, uint64_t *first_bad);

/* The consent policy: its text, a replacement, and a single decision. */
LETHE_API int lethe_policy_get(lethe_store *store, char **text);
/*
 * Set what `key` (default, EEA, a country or subdivision) allows: consents is
 * a comma-separated list of bases, "" to refuse all. Templates already held
 * that the new policy refuses are dropped (*dropped counts them), as an
 * erasure; dry_run only counts. The policy lives in the catalog: each
 * version is kept, and the log entry records the rule before and after.
 */
LETHE_API int lethe_policy_set(lethe_store *store, const char *key, const char *consents,
                               const char *actor, int dry_run, uint64_t *dropped);
/* 1 if a template may be computed for (jurisdiction, consent), 0 if not, <0
 * on a failure: minus its status (-LETHE_ERR_ARG for a bad argument,
 * -LETHE_ERR_NOMEM when the policy could not be read for want of memory,
 * ...), with lethe_store_errmsg saying why; *rule names the rule that decided (valid until the
 * policy changes or the store is closed). */
LETHE_API int lethe_policy_check(lethe_store *store, const char *jurisdiction,
                                 const char *consent, const char **rule);

/* The datasheet as JSON (lethe_free_string), and rendered ("md", "html"). */
LETHE_API int lethe_datasheet(lethe_store *store, const char *format, char **out);

/* A canonical digest (hex) of the store's logical content: photos,
 * provenance, faces, templates, the consent policy; not the log. Equal for
 * stores holding the same data, whatever their history. It is kept up to
 * date with every change (a multiset hash), so reading it is instant. */
LETHE_API int lethe_store_digest(lethe_store *store, char hex[65]);
/* The same, recomputed from every record; *matches (may be NULL) says
 * whether it equals the kept one. */
LETHE_API int lethe_store_digest_full(lethe_store *store, char hex[65], int *matches);

/* ------------------------------------------------------------------ */
/* 6. Forgetting                                                       */
/* ------------------------------------------------------------------ */

/*
 * What to forget. Every field may be NULL/0; those given must all hold (the
 * provenance ones for one and the same provenance record). Photo selectors
 * erase whole photos: the photo, all its provenance records, faces and
 * templates. The face selector erases faces (and their templates) whose
 * template is within face_threshold of any of the n_faces descriptors; the
 * photos and their other faces stay.
 */
typedef struct lethe_selector {
    const char *photo_id;         /* the source's photo id, or the SHA-256 hex */
    const char *url;
    const char *uploader;
    const char *source;
    const char *jurisdiction;     /* a country includes its subdivisions */
    const char *collected_before; /* ISO 8601; photos with no date are kept
                                     (and counted) unless include_undated */
    int include_undated;          /* with collected_before: undated photos too */
    const char *image;            /* a file: that exact photo (hashed) */
    const void *image_bytes;      /* or its bytes in memory (image_len of them) */
    size_t image_len;
    const float *faces;           /* n_faces x 128 descriptors of one person */
    int n_faces;
    float face_threshold;         /* 0: lethe_forget_face_threshold() */
} lethe_selector;

typedef struct lethe_forget_result {
    uint64_t photos, provenance, faces, templates; /* erased (or, dry run, would be) */
    uint64_t undated_kept; /* photos --collected-before left because they carry no date */
    char digest_before[65], digest_after[65];
    char receipt_hash[65]; /* BLAKE2b-256 of the receipt (empty on a dry run) */
    const char *wide;      /* LETHE_ERR_CONFIRM: why confirmation is needed (static) */
} lethe_forget_result;

#define LETHE_FORGET_DRY_RUN 1u   /* count and list, change nothing */
#define LETHE_FORGET_OPTOUT 2u    /* also refuse such photos and faces from now on */
#define LETHE_FORGET_CONFIRMED 4u /* the caller showed the dry run and was told to go on */

/* The default face threshold for erasure (0.55: below the 0.6 match
 * threshold, so as to erase the person and leave others; see the manual). */
LETHE_API float lethe_forget_face_threshold(void);

/* More photos than this in one erasure need LETHE_FORGET_CONFIRMED. */
#define LETHE_FORGET_WIDE_PHOTOS 1000

/*
 * Erase what sel selects, completely: when this returns, no search, lookup
 * or datasheet shows it, no file of the store holds any byte of it, and the
 * photos' keys are destroyed, so no backup can bring them back. All or
 * nothing. *receipt (lethe_free_string) is the signed JSON receipt; with
 * LETHE_FORGET_DRY_RUN it is NULL and nothing changes. *matched (may be
 * NULL) lists the photos touched, as JSON. The log records the erasure by
 * the receipt's hash.
 *
 * Erasures wider than one person need LETHE_FORGET_CONFIRMED: a face
 * threshold above the match threshold (it takes other people's faces), a
 * source or a jurisdiction selector (without an uploader, URL, photo id or
 * image), or more than LETHE_FORGET_WIDE_PHOTOS photos. Without it such an
 * erasure returns LETHE_ERR_CONFIRM with *result filled as by a dry run
 * (result->wide says why) and changes nothing.
 */
LETHE_API int lethe_forget(lethe_store *store, const lethe_selector *sel, unsigned flags,
                           const char *actor, lethe_forget_result *result, char **receipt,
                           char **matched);
/* Check a receipt's Ed25519 signature against the key it names (and, if
 * store_key_hex is not NULL, that this is the key). It proves the receipt is
 * unaltered, not that any store issued it: anyone can make a key. LETHE_OK
 * or LETHE_ERR_FORMAT with msg saying why. */
LETHE_API int lethe_receipt_verify(const char *receipt, size_t len, const char *store_key_hex,
                                   char *msg, size_t msg_len);
/* Check that the store issued this receipt: signed by one of its keys
 * (current or rotated out) and recorded in its log. LETHE_OK, or
 * LETHE_ERR_FORMAT with lethe_store_errmsg saying what failed. */
LETHE_API int lethe_receipt_check(lethe_store *store, const char *receipt, size_t len);
/* A receipt this store issued, by its hash (64 lowercase hex digits, as in
 * lethe_forget_result.receipt_hash and the log): *receipt (lethe_free_string)
 * is its JSON, byte for byte. LETHE_ERR_NOT_FOUND when the store holds none
 * (a restore from the keyring alone carries receipts' hashes, not their
 * text). Reading is not logged: a receipt names what it erased only by
 * keyed hashes. */
LETHE_API int lethe_receipt_get(lethe_store *store, const char *hash_hex, char **receipt);
/* The store's current public signing key, hex. */
LETHE_API int lethe_store_public_key(lethe_store *store, char hex[65]);
/* The standing opt-outs, as JSON (no personal data: what kinds of selector
 * each holds, when, and its receipt's hash). */
LETHE_API int lethe_optout_list(lethe_store *store, char **json);
/* Withdraw an opt-out (its hashes and face descriptors are destroyed). */
LETHE_API int lethe_optout_remove(lethe_store *store, int64_t id, const char *actor);

/* ------------------------------------------------------------------ */
/* 6b. Templates and their models                                      */
/* ------------------------------------------------------------------ */

/*
 * Every template records the model that computed it: the descriptor
 * network's name, version and weights (SHA-256 of its weights file) and the
 * descriptor's numeric precision. Templates of different models live in
 * different spaces: a search or a verification compares a query only with
 * templates of the query's model. The detector's precision (int8 or fp32)
 * is recorded with each template too, but does not change the space: it is
 * not part of the identity.
 */
typedef struct lethe_model_id {
    char name[64];       /* e.g. "face-api-resnet34" */
    char version[32];    /* e.g. "1.7.15" */
    char weights[65];    /* SHA-256 of the weights, hex (may be "" for a model
                            declared from outside that did not give it) */
    char precision[16];  /* the descriptor's precision: "fp32" */
} lethe_model_id;

/* The descriptor model this build ships (the engine's). */
LETHE_API void lethe_model_shipped(lethe_model_id *model);
/* Parse "NAME[@VERSION[@WEIGHTS[@PRECISION]]]" (precision "fp32" when not
 * given). LETHE_ERR_ARG with msg saying why. */
LETHE_API int lethe_model_parse(const char *text, lethe_model_id *model, char *msg,
                                size_t msg_len);

typedef struct lethe_model_info {
    int64_t id;              /* the model's number in this store */
    lethe_model_id model;
    char first_used[32];     /* when it first added a template */
    char retired_at[32];     /* "" unless retired */
    uint64_t templates;      /* its templates held now */
    uint64_t faces;          /* faces it analysed (templates or not) */
    int shipped;             /* the model of this build */
} lethe_model_info;

/* Every model the store has seen, oldest first: *out (lethe_free_models),
 * *n of them. */
LETHE_API int lethe_model_list(lethe_store *store, lethe_model_info **out, size_t *n);
LETHE_API void lethe_free_models(lethe_model_info *models);
/*
 * Find a model of the store by "ID", "NAME", "NAME@VERSION" or a full
 * identity; LETHE_ERR_NOT_FOUND when none, LETHE_ERR_ARG when more than one
 * fits (the message lists them).
 */
LETHE_API int lethe_model_find(lethe_store *store, const char *which, lethe_model_info *info);

/*
 * Retire a model: erase every template it made, as lethe_forget erases
 * (all or nothing, scrubbed, with a signed receipt of kind "retire" that
 * lethe_receipt_check accepts, logged). Descriptors ingested from outside
 * are their own photo row, so those rows go whole; photos keep their rows
 * and face boxes and lose the templates (lethe_retemplate can compute them
 * again with another model). The model stays listed as retired and may
 * never add a template again. Flags: LETHE_FORGET_DRY_RUN (count only),
 * LETHE_FORGET_CONFIRMED (needed above LETHE_FORGET_WIDE_PHOTOS photos, as
 * for lethe_forget; else LETHE_ERR_CONFIRM). *result and *receipt as for
 * lethe_forget (result->templates, ->photos: what went).
 */
LETHE_API int lethe_model_retire(lethe_store *store, const char *which, unsigned flags,
                                 const char *actor, lethe_forget_result *result,
                                 char **receipt);

/* One photo lethe_retemplate could not compute again. */
typedef struct lethe_retemplate_miss {
    char photo[65];      /* its SHA-256, hex */
    char *path;          /* the path recorded (owned by the result) */
    const char *reason;  /* static: "missing", "changed", "not a photo",
                            "unreadable", "refused by the consent policy" */
} lethe_retemplate_miss;

typedef struct lethe_retemplate_result {
    uint64_t candidates;     /* photos whose templates are not the engine's model's */
    uint64_t recomputed;     /* of them, computed again */
    uint64_t templates;      /* templates added */
    lethe_retemplate_miss *missed; /* the others (lethe_retemplate_result_free) */
    size_t nmissed;
} lethe_retemplate_result;

/* Called every photo with done, total (progress). */
typedef void (*lethe_progress_fn)(void *ctx, uint64_t done, uint64_t total);

/*
 * Compute the templates of every analysed photo whose faces are of another
 * model (retired or not) with the engine's model, reading the photo again
 * from the path its provenance records, when that file is still there and
 * its SHA-256 is the one recorded; the others are listed with the reason.
 * The old templates go as an erasure (re-keying the photo, scrubbed); the
 * photo's faces are those the engine finds now. dry_run: find and check
 * only. progress may be NULL.
 */
LETHE_API int lethe_retemplate(lethe_store *store, lethe_engine *engine, const char *actor,
                               int dry_run, lethe_progress_fn progress, void *ctx,
                               lethe_retemplate_result *result);
LETHE_API void lethe_retemplate_result_free(lethe_retemplate_result *result);

/* The keyring. */
/* Mirror the keyring into folder dir (on another disk) from now on, written
 * at every change; NULL stops. Logged. */
LETHE_API int lethe_keyring_mirror(lethe_store *store, const char *dir, const char *actor);
/* A new receipt-signing key; the old public key stays known, so receipts
 * it signed still check. Logged with both public keys. */
LETHE_API int lethe_keyring_rotate(lethe_store *store, const char *actor, char public_hex[65]);
/* The keyring's state as JSON: keys, opt-outs, receipts, orphans (keys no
 * photo uses), damaged slots, the mirror and whether it is current. */
LETHE_API int lethe_keyring_check(lethe_store *store, char **json);

/*
 * Back the store up into a new folder dest: a consistent snapshot of the
 * catalog (with no free pages, so nothing erased before lingers in it) and
 * backup.json. Never the keyring: a backup holds no personal data in clear
 * and cannot be read without the live keyring (or its mirror), which no
 * longer holds the keys of anything erased since. *info (lethe_free_string)
 * is backup.json.
 */
LETHE_API int lethe_backup(lethe_store *store, const char *dest, const char *actor,
                           char **info);

typedef struct lethe_restore_options {
    const char *actor;
    const char *keyring_mirror; /* the mirror folder, to restore a store whose
                                   keyring is lost (dest not a live store) */
    int discard_newer;          /* restoring over a live store drops photos ingested
                                   after the backup only with this */
    double wait_seconds;        /* as lethe_store_options */
    lethe_wait_fn on_wait;
    void *ctx;
} lethe_restore_options;

typedef struct lethe_restore_result {
    uint64_t photos;            /* photos in the restored store */
    uint64_t dropped_erased;    /* in the backup, erased since (their key is gone) */
    uint64_t dropped_newer;     /* in the live store, not in the backup (discard_newer) */
    uint64_t templates_dropped; /* templates the current policy refuses */
    uint64_t receipts_carried;  /* receipts issued after the backup (from the keyring) */
    char digest[65];
} lethe_restore_result;

LETHE_API void lethe_restore_options_init(lethe_restore_options *opt);
/*
 * Restore the backup in src as the store dest, with the keyring of the live
 * store dest or, when dest is not a live store (its disk was lost), the one
 * in opt->keyring_mirror. Photos whose key is gone (erased after the backup
 * was taken) are dropped and counted: a backup can never bring back what was
 * forgotten. Over a live store, its log, receipts, signing keys, opt-outs,
 * consent policy, API keys, data-subject requests and search counts are
 * kept, and photos it holds that the backup does not are
 * refused unless discard_newer. A backup of another store is refused.
 */
LETHE_API int lethe_restore(const char *src, const char *dest, const lethe_restore_options *opt,
                            lethe_restore_result *result, char *msg, size_t msg_len);

LETHE_API void lethe_free_string(char *s);

/* ------------------------------------------------------------------ */
/* Data-subject requests                                               */
/* ------------------------------------------------------------------ */

/*
 * What the people in the photos may ask of the store themselves (the page
 * `lethe serve` serves at /, docs/page.md): "what do you hold about me?",
 * answered without a face and without revealing templates or who
 * searched; and "erase me" or "keep me out", filed as a request that the
 * operator approves (or that a rule approves at once), answered with a
 * signed receipt. A request is known to its requester by a random id of
 * 256 bits (the only way to see its status and receipt) and to the
 * operator by its number.
 */

/* How often searches returned a photo for one stated purpose. Every
 * search that returns a face of a photo counts once for that photo (lethe_search
 * records it with the search); the counts go with the photo when it is
 * erased. Who searched is never told. */
typedef struct lethe_purpose_count {
    char *purpose;       /* as the searcher stated it (owned by the array) */
    uint64_t searches;   /* searches that returned the photo */
    char last[32];       /* the latest of them, ISO 8601 UTC */
} lethe_purpose_count;

/* A photo a subject lookup found: what a person may see of it. */
typedef struct lethe_subject_photo {
    char photo[65];                /* SHA-256 of its bytes, hex */
    char kind[16];                 /* "photo" or "descriptor" */
    char status[16];               /* "analysed", "refused" (no template
                                      allowed), "withdrawn" */
    char added_at[32];
    int faces;                     /* faces found in it */
    int templates;                 /* face templates held (0: none exists) */
    int nprov;
    lethe_provenance *prov;        /* its provenance records (strings owned
                                      by the array); consent is the basis */
    int npurposes;
    lethe_purpose_count *purposes; /* searches that returned it, by purpose,
                                      most first */
} lethe_subject_photo;

/*
 * "What do you hold about me?": every photo held for an uploader, a URL, a
 * photo id (kind: enum lethe_lookup_kind, value the text), or for the
 * exact photo file (LETHE_LOOKUP_FILE: bytes[0..len) are the file's bytes,
 * hashed with SHA-256 and never decoded or analysed; value is ignored).
 * Logged as a lookup, with a keyed hash of the value. *photos
 * (lethe_subject_photos_free) holds *count photos; none found is LETHE_OK
 * with *count 0.
 */
LETHE_API int lethe_subject_lookup(lethe_store *store, int kind, const char *value,
                                   const void *bytes, size_t len, const char *actor,
                                   lethe_subject_photo **photos, size_t *count);
LETHE_API void lethe_subject_photos_free(lethe_subject_photo *photos, size_t count);

/* What a request selects: the kinds of lethe_lookup_kind, and a face. */
enum lethe_request_by {
    LETHE_REQUEST_BY_UPLOADER = 0,
    LETHE_REQUEST_BY_URL = 1,
    LETHE_REQUEST_BY_PHOTO_ID = 2,
    LETHE_REQUEST_BY_FILE = 3,  /* the exact photo file (its SHA-256) */
    LETHE_REQUEST_BY_FACE = 4   /* a face, from a selfie: the faces within
                                   lethe_forget_face_threshold() of it */
};
#define LETHE_REQUEST_KINDS 5

enum lethe_request_action {
    LETHE_REQUEST_ERASE = 0,  /* erase what it selects (lethe_forget) */
    LETHE_REQUEST_OPTOUT = 1  /* erase, and refuse it from now on */
};

/* "rq_" and 43 characters of base64url (256 random bits), and a NUL. */
#define LETHE_REQUEST_ID_SIZE 48
/* Requests waiting for a decision at most; more are refused (busy). */
#define LETHE_REQUEST_MAX_PENDING 10000

typedef struct lethe_request_spec {
    int action;               /* enum lethe_request_action */
    int by;                   /* enum lethe_request_by */
    const char *value;        /* BY_UPLOADER, BY_URL, BY_PHOTO_ID: the text */
    const void *bytes;        /* BY_FILE: the photo file's bytes (hashed only);
                                 BY_FACE without face: a selfie */
    size_t len;
    const float *face;        /* BY_FACE: one descriptor (128 floats) ... */
    lethe_engine *engine;     /* ... or this engine computes it from the
                                 selfie's largest face */
} lethe_request_spec;

typedef struct lethe_request_info {
    int64_t number;           /* the operator's handle: 1, 2, ... */
    int action;               /* enum lethe_request_action */
    int by;                   /* enum lethe_request_by */
    char status[16];          /* "pending", "done" or "denied" */
    char filed_at[32];        /* ISO 8601 UTC */
    char decided_at[32];      /* "" while pending */
    char decided_by[64];      /* "auto", or who approved or denied ("key:5") */
    char note[256];           /* why it was denied, or why the automatic
                                 approval did not happen; "" if none */
    uint64_t photos, faces, templates; /* erased (done) */
    char receipt_hash[65];    /* the receipt's BLAKE2b-256 (done), else "" */
    char *selector;           /* lethe_request_list, pending requests only:
                                 what it names, for the approver; else NULL */
} lethe_request_info;

/* "uploader", "url", "photo-id", "file", "face" (NULL for another value),
 * and back: LETHE_OK, or LETHE_ERR_ARG with msg naming the kinds. */
LETHE_API const char *lethe_request_by_name(int by);
LETHE_API int lethe_request_by_parse(const char *name, int *by, char *msg, size_t msg_len);

/*
 * File a request. id[0..LETHE_REQUEST_ID_SIZE) receives its id (NUL-
 * terminated), the requester's only handle on it: shown once, kept by the
 * store only as a keyed hash. *info (may be NULL) describes it. While it
 * waits, what it selects is kept sealed with a key derived from the
 * keyring's secret (a backup cannot read it); once decided, only its
 * number, kinds, status, times, counts and receipt remain. For BY_FILE and
 * BY_FACE only the hash and the descriptor are kept, never the photo.
 * Logged ("request": its number and kinds). When the operator's rule for
 * its kind says so (lethe_request_auto_set), it is approved at once, with
 * "auto" as the actor (a failed automatic approval leaves it pending, with
 * info->note saying why). LETHE_ERR_BUSY when LETHE_REQUEST_MAX_PENDING
 * wait already; LETHE_ERR_NO_FACE for a selfie without a face. id is ""
 * when nothing was filed, and set whenever the request was, even if
 * reading *info back then failed.
 */
LETHE_API int lethe_request_file(lethe_store *store, const lethe_request_spec *spec,
                                 const char *actor, char id[LETHE_REQUEST_ID_SIZE],
                                 lethe_request_info *info);
/*
 * The request with this id: *info filled and, once done, *receipt (may be
 * NULL; lethe_free_string) its signed receipt, else NULL. The id is
 * compared in constant time; LETHE_ERR_NOT_FOUND ("no such request") for
 * a malformed, unknown or wrong id alike. Reads only; nothing is logged.
 */
LETHE_API int lethe_request_status(lethe_store *store, const char *id,
                                   lethe_request_info *info, char **receipt);
/* Requests by number (only those pending with pending_only): *list
 * (lethe_requests_free) holds *count. */
LETHE_API int lethe_request_list(lethe_store *store, int pending_only, lethe_request_info **list,
                                 size_t *count);
LETHE_API void lethe_requests_free(lethe_request_info *list, size_t count);
/*
 * Approve pending request number: erase (or opt out) what it selects with
 * lethe_forget, as actor, then record it done with the receipt and forget
 * what it selected. flags may hold LETHE_FORGET_CONFIRMED (an erasure of
 * more than LETHE_FORGET_WIDE_PHOTOS photos needs it; without it
 * LETHE_ERR_CONFIRM and the request stays pending). *info (may be NULL)
 * describes it after. LETHE_ERR_NOT_FOUND: no such request; LETHE_ERR_ARG:
 * it is decided already. Logged ("request-approve").
 */
LETHE_API int lethe_request_approve(lethe_store *store, int64_t number, unsigned flags,
                                    const char *actor, lethe_request_info *info);
/* Deny pending request number (reason may be NULL; it is shown to the
 * requester): what it selected is forgotten. Logged ("request-deny"). */
LETHE_API int lethe_request_deny(lethe_store *store, int64_t number, const char *actor,
                                 const char *reason);
/* The operator's rules: requests of kind by are approved at once
 * (automatic 1) or wait for a decision (0, the default for every kind).
 * Logged ("request-auto"). */
LETHE_API int lethe_request_auto_set(lethe_store *store, int by, int automatic,
                                     const char *actor);
/* The kinds approved at once, as a mask of 1u << by. */
LETHE_API int lethe_request_auto_get(lethe_store *store, unsigned *mask);

/* ------------------------------------------------------------------ */
/* 7. Access: API keys and roles                                       */
/* ------------------------------------------------------------------ */

/*
 * A program that serves a store to others (lethe serve) admits callers by
 * API key. A key is shown once, when it is made; the store keeps only a
 * verifier: BLAKE2b-256 of the key's id and its 256 random bits, keyed with
 * the keyring's secret salt (so a copy of the catalog, a backup, holds
 * nothing that checks a key). Keys are never deleted: a revoked key stays
 * listed with when it was revoked. Making and revoking a key are entries of
 * the audit log, and lethe_log_verify fails when the catalog's keys differ
 * from what the log recorded (a key added, changed or brought back by
 * editing the catalog). A restore from a backup without the live store
 * (only the keyring mirror) revokes every key, as the backup cannot know
 * which were revoked after it.
 *
 * What each role may do is the server's to decide and document; the
 * library stores them. The library's own calls check no role: a program
 * holding the store handle is the operator.
 */
#define LETHE_ROLE_ADMIN   0x01u  /* everything, as the operator */
#define LETHE_ROLE_INGEST  0x02u  /* add photos */
#define LETHE_ROLE_SEARCH  0x04u  /* 1:N search (with a purpose), lookup */
#define LETHE_ROLE_AUDIT   0x08u  /* the log, the datasheet, the digest; no search */
#define LETHE_ROLE_ERASURE 0x10u  /* forget, opt-outs, lookup */
#define LETHE_ROLES_ALL    0x1fu

/* A key as text: "lk_" ID "_" and 43 characters of base64url (256 bits);
 * at most LETHE_KEY_SIZE - 1 characters. */
#define LETHE_KEY_SIZE 80
#define LETHE_KEY_NAME_MAX 128   /* bytes in a key's name */
#define LETHE_ROLES_TEXT 40      /* "admin,ingest,search,audit,erasure" + NUL */

/* "search,audit" (names separated by commas, spaces allowed around them)
 * into a LETHE_ROLE_* mask: LETHE_OK, or LETHE_ERR_ARG with msg naming the
 * unknown role (an empty list is an error too). */
LETHE_API int lethe_roles_parse(const char *text, unsigned *roles, char *msg, size_t msg_len);
/* The mask as names in the order admin, ingest, search, audit, erasure,
 * comma-separated ("" for none; unknown bits are left out). */
LETHE_API void lethe_roles_format(unsigned roles, char out[LETHE_ROLES_TEXT]);

typedef struct lethe_key_info {
    int64_t id;                          /* 1, 2, 3, ... (in the key's text) */
    char name[LETHE_KEY_NAME_MAX + 1];   /* who or what holds it */
    unsigned roles;                      /* LETHE_ROLE_* */
    uint32_t rate_per_minute;            /* requests a minute the server admits; 0: no limit */
    uint32_t daily_quota;                /* requests a UTC day; 0: no limit */
    char created_at[32];                 /* ISO 8601, UTC */
    char revoked_at[32];                 /* "" while the key is valid */
} lethe_key_info;

typedef struct lethe_key_options {
    const char *name;         /* required: 1 to 128 bytes, no control characters */
    unsigned roles;           /* at least one LETHE_ROLE_* */
    uint32_t rate_per_minute; /* 0: no limit */
    uint32_t daily_quota;     /* 0: no limit */
    const char *actor;        /* who makes the key (logged) */
} lethe_key_options;

LETHE_API void lethe_key_options_init(lethe_key_options *opt);
/*
 * Make a key: *info (may be NULL) describes it and key[0..LETHE_KEY_SIZE)
 * receives its text, NUL-terminated, which is shown nowhere else and
 * cannot be recovered: hand it over and forget it. Takes the writer lock;
 * logged ("key-add": id, name, roles, limits and a hash of the row).
 */
LETHE_API int lethe_key_add(lethe_store *store, const lethe_key_options *opt,
                            lethe_key_info *info, char key[LETHE_KEY_SIZE]);
/* Every key, valid or revoked, by id: *keys (lethe_keys_free) holds *count. */
LETHE_API int lethe_key_list(lethe_store *store, lethe_key_info **keys, size_t *count);
LETHE_API void lethe_keys_free(lethe_key_info *keys);
/* Revoke key id (logged, "key-revoke"): LETHE_ERR_NOT_FOUND when there is
 * no such key, LETHE_ERR_ARG when it is revoked already. */
LETHE_API int lethe_key_revoke(lethe_store *store, int64_t id, const char *actor);
/*
 * Who holds the key key[0..len)? LETHE_OK and *info filled (may be NULL),
 * or LETHE_ERR_DENIED with lethe_store_errmsg saying why: "not a lethe
 * API key" (malformed), "the key is not valid" (no such key, or a wrong
 * secret: the two are not told apart), or "key N was revoked at T" (only
 * to a caller who holds the whole key). The secret is compared in
 * constant time. Reads only; nothing is logged (the caller logs what the
 * key does).
 */
LETHE_API int lethe_key_authenticate(lethe_store *store, const char *key, size_t len,
                                     lethe_key_info *info);

/*
 * Keys with a purpose. A search needs a purpose; clients that send none
 * with their requests (lethe serve's CompreFace-compatible API,
 * docs/serve.md) search with the purpose fixed on their key when it was
 * made. The purpose is recorded in the key's "key-add" log entry, and only
 * there: the hash chain keeps it as it was made, and it never changes (a
 * key for another purpose is another key). At most LETHE_KEY_PURPOSE_MAX
 * bytes, UTF-8, no control characters.
 */
#define LETHE_KEY_PURPOSE_MAX 1024
/* lethe_key_add, with the key's purpose (NULL or "": none, as lethe_key_add). */
LETHE_API int lethe_key_add_with_purpose(lethe_store *store, const lethe_key_options *opt,
                                         const char *purpose, lethe_key_info *info,
                                         char key[LETHE_KEY_SIZE]);
/* Key id's purpose into purpose ("" when it was made without one):
 * LETHE_OK, or LETHE_ERR_NOT_FOUND when there is no such key. */
LETHE_API int lethe_key_purpose(lethe_store *store, int64_t id,
                                char purpose[LETHE_KEY_PURPOSE_MAX + 1]);

/*
 * Daily quotas that survive a restart. A server counts each key's requests
 * of the day in the catalog: lethe_key_usage_add adds add requests to key
 * id's count for day (days since 1970-01-01, UTC; a count of another day
 * starts again from 0) and gives the day's count after it in *used (may be
 * NULL); add 0 only reads it. Takes the writer lock (a short transaction).
 * The counts are not personal data, not part of the digest and not logged.
 */
LETHE_API int lethe_key_usage_add(lethe_store *store, int64_t id, int64_t day, uint32_t add,
                                  uint32_t *used);

#ifdef __cplusplus
}
#endif
#endif /* LETHE_H */
