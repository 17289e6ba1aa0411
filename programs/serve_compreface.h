/*
 * serve_compreface.h: what the two files of lethe serve's CompreFace-
 * compatible API share (docs/serve.md, "CompreFace compatibility"):
 * serve_compreface.c routes /api/v1/ paths, reads their query strings,
 * photos and JSON, and answers errors in CompreFace's shape;
 * serve_compreface_api.c holds the endpoints.
 */
#ifndef LETHE_SERVE_COMPREFACE_H
#define LETHE_SERVE_COMPREFACE_H

#include "serve.h"

/* The provenance source every CompreFace example is recorded under: the
 * face collection is the store's photos of this source. */
#define CF_SOURCE "compreface"

/* CompreFace's error codes (its CommonExceptionCode), the ones lethe uses. */
enum {
    CF_UNDEFINED = 0,
    CF_ACCESS_DENIED = 1,      /* CompreFace: APP_ACCESS_DENIED (403) */
    CF_EMPTY_FIELD = 5,        /* EMPTY_REQUIRED_FIELD (400): the key's purpose */
    CF_SERVICE_NOT_FOUND = 10, /* MODEL_NOT_FOUND (404): no such API key */
    CF_IMAGE_NOT_FOUND = 11,   /* IMAGE_NOT_FOUND (404) */
    CF_MISSING_HEADER = 20,    /* MISSING_REQUEST_HEADER (400) */
    CF_BAD_FILE = 21,          /* UNAVAILABLE_FILE_EXTENSION (400): not a photo */
    CF_NO_FACES = 28,          /* NO_FACES_FOUND (400) */
    CF_TOO_MANY_FACES = 31,    /* TOO_MANY_FACES (400) */
    CF_MISSING_PARAM = 33,     /* MISSING_REQUEST_PARAMETER (400) */
    CF_MISSING_PART = 34,      /* MISSING_REQUEST_PART (400): no file */
    CF_BAD_ARGUMENT = 36,      /* INCORRECT_ARGUMENT (400) */
    CF_SUBJECT_NOT_FOUND = 42, /* SUBJECT_NOT_FOUND (404) */
};

/* {"message": ..., "code": code} with status. */
void cf_error(reply *r, int status, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The query string, with the SDK's quirk undone (see cf_query_read). */
#define CF_MAX_ARGS 12
typedef struct cf_query {
    const char *const *allowed; /* the names the endpoint takes (NULL-terminated) */
    char *names[CF_MAX_ARGS];   /* owned */
    char *values[CF_MAX_ARGS];  /* owned */
    int n;
    char error[256];
} cf_query;

/* Read req's query arguments, refusing a name not in allowed: 0, or -1
 * with the 400 in r. Free with cf_query_free. */
int cf_query_read(request *req, cf_query *q, const char *const *allowed, reply *r);
void cf_query_free(cf_query *q);
const char *cf_query_get(const cf_query *q, const char *name);

/* The options most endpoints share: limit, det_prob_threshold,
 * prediction_count, and face_plugins refused. 0, or -1 with the 400. */
typedef struct cf_options {
    long limit;            /* faces at most (0: all), biggest first */
    double det_threshold;  /* faces scored below it are left out */
    long prediction_count; /* subjects a face (recognize) */
} cf_options;
int cf_options_read(const cf_query *q, cf_options *o, reply *r);

/* The photos of a request: up to two named file fields of a multipart
 * body, the members of a JSON body holding them in base64, or (one photo)
 * the body itself. */
typedef struct cf_photos {
    const char *names[2];  /* the fields, e.g. "file" */
    int n;
    char *data[2];         /* owned, or NULL when the body is the photo */
    const void *bytes[2];
    size_t len[2];
} cf_photos;
/* 0 with every named photo present, or -1 with the 400 in r. */
int cf_photos_read(request *req, cf_photos *p, reply *r);
void cf_photos_free(cf_photos *p);

/* The faces of a photo (outside the store's lock), with descriptors,
 * biggest first, those scored below o->det_threshold left out, at most
 * o->limit: 0 and *faces (lethe_faces_free), or -1 with the error in r
 * (no face at all: 400, code 28). */
int cf_faces(request *req, const void *photo, size_t len, const cf_options *o,
             lethe_face **faces, int *count, reply *r);
/* A face's box as CompreFace writes it: {"probability", "x_max", ...}. */
void cf_put_box(FILE *f, const lethe_face *face);
/* lethe's distance as CompreFace's similarity (docs/serve.md). */
double cf_similarity(float distance);

/* The key's purpose into purpose (under the lock): 0, or -1 with the
 * 400 when the key has none. */
int cf_key_purpose(request *req, char purpose[LETHE_KEY_PURPOSE_MAX + 1], reply *r);
/* The reply for a failed library call, CompreFace's shape. */
void cf_lethe_error(reply *r, int rc, const char *message);

/* The endpoints (serve_compreface_api.c). */
void cf_add_example(request *req, reply *r);
void cf_list_examples(request *req, reply *r);
void cf_delete_example(request *req, reply *r);
void cf_delete_examples(request *req, reply *r);
void cf_verify_example(request *req, reply *r);
void cf_recognize(request *req, reply *r);
void cf_subjects_list(request *req, reply *r);
void cf_subject_add(request *req, reply *r);
void cf_subject_delete(request *req, reply *r);
void cf_subjects_delete_all(request *req, reply *r);
void cf_subject_rename(request *req, reply *r);
void cf_detect(request *req, reply *r);
void cf_verify_photos(request *req, reply *r);

/* The segment of req's path after prefix ("/api/v1/recognition/faces/"),
 * up to the next '/', into out: 0, or -1 when it is empty or too long. */
int cf_path_segment(const request *req, const char *prefix, char *out, size_t n);

#endif
