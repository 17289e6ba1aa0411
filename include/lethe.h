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
    X(ERR_NO_FACE, 10, "no face found")                                       \
    X(ERR_STORE, 11, "store missing, damaged or of another version")          \
    X(ERR_POLICY, 12, "refused by the consent policy")

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
    LETHE_PRECISION_DEFAULT = 0, /* Winograd in the descriptor net; fp32 detector */
    LETHE_PRECISION_FP32 = 1,    /* full fp32 everywhere, reference summation order */
    LETHE_PRECISION_INT8 = 2     /* the default plus an int8 SSD detector where the
                                    CPU has AVX-512 VNNI (about 2x the photos per
                                    second; see docs/model-card.md) */
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

/* The precision the engine computes at: "default", "fp32", or "int8" when
 * LETHE_PRECISION_INT8 was asked for and the CPU runs int8 (otherwise such
 * an engine computes as "default"). Ingest records it in the log. */
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
 * faces, templates, the audit log), the descriptor index (a derived file,
 * rebuilt from the catalog whenever it lags behind) and the consent policy
 * (a text file). Photos are identified by the SHA-256 of their bytes; the
 * photo itself is never copied into the store, only its provenance, its
 * face boxes and, where the policy allows, one 128-D template per face.
 */
typedef struct lethe_store lethe_store;

#define LETHE_STORE_FORMAT 1

/* Flags for lethe_store_open. */
#define LETHE_STORE_CREATE   1u  /* create the directory and catalog if absent */
#define LETHE_STORE_READONLY 2u  /* never write (the index is not rebuilt) */

/*
 * Open the store in directory dir. As with lethe_engine_open, *out is set even
 * on failure (unless memory ran out) so lethe_store_errmsg() can explain;
 * close it either way. A store of another format version is refused with
 * LETHE_ERR_STORE.
 */
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
/* Offer one descriptor computed elsewhere; the "photo" is identified by the
 * hash of the descriptor. The policy applies as for photos. */
LETHE_API int lethe_ingest_descriptor(lethe_ingest *ing, const float *descriptor,
                                      const lethe_provenance *prov, size_t line);
/* Counts so far (for progress), thread-safe with respect to the workers. */
LETHE_API void lethe_ingest_progress(lethe_ingest *ing, lethe_ingest_stats *stats);
/* Wait for the photos in flight, commit, and free ing; *stats (may be NULL)
 * receives the totals. Returns the first fatal status, if any. */
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
} lethe_match;

typedef struct lethe_search_options {
    const char *purpose;    /* required: why the search is made (logged) */
    const char *actor;      /* who makes it (logged) */
    int top_k;              /* results per query (10) */
    float threshold;        /* only matches at most this far (default: no limit) */
    int threads;            /* 0 = one per core */
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
LETHE_API void lethe_matches_free(lethe_match *matches, size_t count);

/* Lookup without a face: what does the store hold for this account, link,
 * id or file? */
enum lethe_lookup_kind {
    LETHE_LOOKUP_UPLOADER = 0,
    LETHE_LOOKUP_URL = 1,
    LETHE_LOOKUP_PHOTO_ID = 2,   /* the source's photo id, or the SHA-256 hex */
    LETHE_LOOKUP_FILE = 3        /* a file whose bytes are hashed */
};
/*
 * Writes a JSON document (malloc'd, free with lethe_free_string) describing
 * every photo found: {"photos": [{"photo", "templates", "faces", "status",
 * "provenance": [{...}]}]}. The lookup is logged with a keyed hash of the
 * value, never the value itself.
 */
LETHE_API int lethe_lookup(lethe_store *store, int kind, const char *value,
                           const char *actor, char **json);

/* The audit log: a hash chain in the catalog, anchored by the head file. */
/* Every entry as JSON Lines (malloc'd; lethe_free_string). */
LETHE_API int lethe_log_export(lethe_store *store, char **jsonl);
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
 * that the new policy refuses are dropped (*dropped counts them); dry_run
 * only counts.
 */
LETHE_API int lethe_policy_set(lethe_store *store, const char *key, const char *consents,
                               const char *actor, int dry_run, uint64_t *dropped);
/* 1 if a template may be computed for (jurisdiction, consent), 0 if not, <0
 * on a bad argument; *rule names the rule that decided (valid until the
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
    const char *collected_before; /* ISO 8601; photos with no date are kept */
    const char *image;            /* a file: that exact photo (hashed) */
    const float *faces;           /* n_faces x 128 descriptors of one person */
    int n_faces;
    float face_threshold;         /* 0: lethe_forget_face_threshold() */
} lethe_selector;

typedef struct lethe_forget_result {
    uint64_t photos, provenance, faces, templates; /* erased (or, dry run, would be) */
    char digest_before[65], digest_after[65];
} lethe_forget_result;

#define LETHE_FORGET_DRY_RUN 1u /* count and list, change nothing */
#define LETHE_FORGET_OPTOUT 2u  /* also refuse such photos and faces from now on */

/* The default face threshold for erasure (0.55: below the 0.6 match
 * threshold, so as to erase the person and leave others; see the manual). */
LETHE_API float lethe_forget_face_threshold(void);

/*
 * Erase what sel selects, completely: when this returns, no search, lookup
 * or datasheet shows it and no file of the store holds any byte of it. All
 * or nothing. *receipt (lethe_free_string) is the signed JSON receipt; with
 * LETHE_FORGET_DRY_RUN it is NULL and nothing changes. *matched (may be
 * NULL) lists the photos touched, as JSON. The log records the erasure by
 * the receipt's hash.
 */
LETHE_API int lethe_forget(lethe_store *store, const lethe_selector *sel, unsigned flags,
                           const char *actor, lethe_forget_result *result, char **receipt,
                           char **matched);
/* Check a receipt's Ed25519 signature; store_key_hex (may be NULL) must be
 * the key that signed it. LETHE_OK or LETHE_ERR_FORMAT with msg saying why. */
LETHE_API int lethe_receipt_verify(const char *receipt, size_t len, const char *store_key_hex,
                                   char *msg, size_t msg_len);
/* The store's public signing key, hex. */
LETHE_API int lethe_store_public_key(lethe_store *store, char hex[65]);
/* The standing opt-outs, as JSON (no personal data: what kinds of selector
 * each holds, when, and its receipt's hash). */
LETHE_API int lethe_optout_list(lethe_store *store, char **json);
/* Withdraw an opt-out (its face descriptors are erased with it). */
LETHE_API int lethe_optout_remove(lethe_store *store, int64_t id, const char *actor);

/*
 * Back the store up into a new folder dest: a consistent snapshot of the
 * catalog (with no free pages, so nothing erased before lingers), the
 * policy, and backup.json. *info (lethe_free_string) is that JSON.
 */
LETHE_API int lethe_backup(lethe_store *store, const char *dest, const char *actor,
                           char **info);
/*
 * Restore the backup in src as the store dest. If dest is a live store, its
 * erasure ledger, receipts, opt-outs and log are carried over and the
 * ledger is replayed: whatever was erased after the backup was taken stays
 * erased (*replayed counts the photos and faces erased again). A backup of
 * another store is refused. Photos ingested after the backup are not in it.
 */
LETHE_API int lethe_restore(const char *src, const char *dest, const char *actor,
                            uint64_t *replayed, char *msg, size_t msg_len);

LETHE_API void lethe_free_string(char *s);

#ifdef __cplusplus
}
#endif
#endif /* LETHE_H */
