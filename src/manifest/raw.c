/*
 * raw.c: raw float32 descriptors with a provenance sidecar (see manifest.h).
 *
 * The descriptors come from elsewhere in bulk (a FAISS or numpy export:
 * little-endian float32, 128 per row, nothing else), their provenance from
 * a sidecar manifest with one record per descriptor, in order. Pairing them
 * by position is only safe when both hold the same number of rows, so that
 * is checked before the first row is returned: the sidecar is read once to
 * count its records, then rewound and read again beside the descriptors.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "manifest/manifest.h"
#include "util/util.h"

#define RAW_ROW_BYTES (MANIFEST_DIM * 4u)

struct raw_reader {
    manifest *side;           /* the sidecar, in provenance mode */
    FILE *side_f;             /* its stream when read from a file (we own it) */
    FILE *f;                  /* the descriptors, from a file (we own it) ... */
    const uint8_t *mem;       /* ... or from memory */
    uint64_t rows;            /* descriptors in the file */
    uint64_t next;            /* the next descriptor to read */
    char *name;               /* the descriptor file's name, for messages */
    char *side_name;          /* the sidecar's, for messages */
};

void raw_close(raw_reader *r)
{
    if (!r)
        return;
    manifest_close(r->side);
    if (r->side_f)
        fclose(r->side_f);
    if (r->f)
        fclose(r->f);
    lethe_free(r->name);
    lethe_free(r->side_name);
    lethe_free(r);
}

/* Why the sidecar stopped (never LETHE_OK: it did stop). */
static int side_status(const raw_reader *r)
{
    int st = manifest_status(r->side);
    return st != LETHE_OK ? st : LETHE_ERR_INTERNAL;
}

/* Open the sidecar from the start (memory, or the rewound stream). */
static int sidecar_start(raw_reader *r, const void *mem, size_t len, const char *name,
                         char *err, size_t errlen)
{
    manifest_options o;
    char msg[512];
    int st;

    manifest_options_init(&o);
    o.mode = MANIFEST_PROVENANCE;
    manifest_close(r->side);
    r->side = NULL;
    if (r->side_f) {
        rewind(r->side_f);
        st = manifest_open_stream(r->side_f, name, &o, &r->side, msg, sizeof(msg));
    } else {
        o.format = manifest_format_for_name(name); /* MANIFEST_AUTO without one */
        st = manifest_open_mem(mem, len, &o, &r->side, msg, sizeof(msg));
    }
    if (st != LETHE_OK)
        return lethe_fail(err, errlen, st, "sidecar %s: %s", r->side_name, msg);
    return LETHE_OK;
}

/* Count the sidecar's records (good and bad) against the descriptors. */
static int sidecar_count(raw_reader *r, char *err, size_t errlen)
{
    manifest_row row;
    char msg[512];
    uint64_t n = 0;
    int st;

    while ((st = manifest_next(r->side, &row, msg, sizeof(msg))) != MANIFEST_END) {
        if (st == MANIFEST_FATAL)
            return lethe_fail(err, errlen, side_status(r), "sidecar %s: %s",
                              r->side_name, msg);
        n++;
    }
    if (n != r->rows)
        return lethe_fail(err, errlen, LETHE_ERR_FORMAT,
                          "%s holds %llu descriptors but its sidecar %s has %llu rows: they "
                          "are paired in order, so the counts must be equal",
                          r->name, (unsigned long long)r->rows, r->side_name,
                          (unsigned long long)n);
    return LETHE_OK;
}

static int raw_start(raw_reader *r, uint64_t bytes, const void *side_mem, size_t side_len,
                     const char *side_name, raw_reader **out, char *err, size_t errlen)
{
    int st;

    if (bytes % RAW_ROW_BYTES) {
        st = lethe_fail(err, errlen, LETHE_ERR_FORMAT,
                        "%s: %llu bytes is not a whole number of 128-float descriptors "
                        "(512 bytes each)",
                        r->name, (unsigned long long)bytes);
        goto fail;
    }
    r->rows = bytes / RAW_ROW_BYTES;
    st = sidecar_start(r, side_mem, side_len, side_name, err, errlen);
    if (st == LETHE_OK)
        st = sidecar_count(r, err, errlen);
    if (st == LETHE_OK)
        st = sidecar_start(r, side_mem, side_len, side_name, err, errlen);
    if (st != LETHE_OK)
        goto fail;
    *out = r;
    return LETHE_OK;
fail:
    raw_close(r);
    return st;
}

static raw_reader *raw_new(const char *name, const char *side_name)
{
    raw_reader *r = lethe_calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->name = lethe_strdup(name);
    r->side_name = lethe_strdup(side_name);
    if (!r->name || !r->side_name) {
        raw_close(r);
        return NULL;
    }
    return r;
}

int raw_open(const char *f32_file, const char *sidecar, raw_reader **out, char *err,
             size_t errlen)
{
    raw_reader *r;
    uint64_t size;
    int st;

    *out = NULL;
    if (!f32_file || !sidecar)
        return lethe_fail(err, errlen, LETHE_ERR_ARG, "raw descriptors need a file and a sidecar");
    r = raw_new(f32_file, sidecar);
    if (!r)
        return lethe_fail(err, errlen, LETHE_ERR_NOMEM, "out of memory");
    st = lethe_fopen_regular(f32_file, &r->f, &size, err, errlen);
    if (st == LETHE_OK) {
        char msg[512];
        st = lethe_fopen_regular(sidecar, &r->side_f, NULL, msg, sizeof(msg));
        if (st != LETHE_OK)
            lethe_fail(err, errlen, st, "sidecar: %s", msg);
    }
    if (st != LETHE_OK) {
        raw_close(r);
        return st;
    }
    return raw_start(r, size, NULL, 0, sidecar, out, err, errlen);
}

int raw_open_mem(const void *f32, size_t f32_len, const void *sidecar, size_t sidecar_len,
                 const char *sidecar_name, raw_reader **out, char *err, size_t errlen)
{
    raw_reader *r;

    *out = NULL;
    r = raw_new("the float32 data", sidecar_name ? sidecar_name : "(memory)");
    if (!r)
        return lethe_fail(err, errlen, LETHE_ERR_NOMEM, "out of memory");
    r->mem = f32 ? f32 : (const void *)"";
    if (!f32)
        f32_len = 0;
    return raw_start(r, f32_len, sidecar ? sidecar : "", sidecar ? sidecar_len : 0,
                     sidecar_name, out, err, errlen);
}

/* Descriptor r->next into v (little-endian whatever the host). */
static int read_row(raw_reader *r, float v[MANIFEST_DIM], char *err, size_t errlen)
{
    uint8_t b[RAW_ROW_BYTES];
    const uint8_t *p = b;

    if (r->mem) {
        p = r->mem + r->next * RAW_ROW_BYTES;
    } else if (fread(b, 1, sizeof(b), r->f) != sizeof(b)) {
        return lethe_fail(err, errlen, LETHE_ERR_IO, "cannot read %s: %s", r->name,
                          ferror(r->f) ? strerror(errno ? errno : EIO)
                                       : "the file shrank while being read");
    }
    for (unsigned i = 0; i < MANIFEST_DIM; i++, p += 4) {
        uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                     (uint32_t)p[3] << 24;
        memcpy(&v[i], &u, 4);
    }
    r->next++;
    return LETHE_OK;
}

int raw_next(raw_reader *r, manifest_row *row, char *err, size_t errlen)
{
    char msg[512];
    int st, rd;

    if (err && errlen)
        err[0] = '\0';
    st = manifest_next(r->side, row, msg, sizeof(msg));
    if (st == MANIFEST_FATAL) {
        lethe_fail(err, errlen, side_status(r), "sidecar %s: %s", r->side_name, msg);
        return MANIFEST_FATAL;
    }
    if (st == MANIFEST_END) {
        if (r->next != r->rows) { /* the sidecar changed since it was counted */
            lethe_fail(err, errlen, LETHE_ERR_FORMAT,
                       "sidecar %s ended after %llu rows; %s holds %llu descriptors",
                       r->side_name, (unsigned long long)r->next, r->name,
                       (unsigned long long)r->rows);
            return MANIFEST_FATAL;
        }
        return MANIFEST_END;
    }
    if (r->next >= r->rows) {
        lethe_fail(err, errlen, LETHE_ERR_FORMAT,
                   "sidecar %s has more rows than %s has descriptors (%llu)", r->side_name,
                   r->name, (unsigned long long)r->rows);
        return MANIFEST_FATAL;
    }
    /* A bad sidecar record costs its descriptor too: the pairing holds. */
    rd = read_row(r, row->embedding, err, errlen);
    if (rd != LETHE_OK)
        return MANIFEST_FATAL;
    if (st == MANIFEST_BAD_ROW) {
        snprintf(err, errlen, "%s", msg);
        return MANIFEST_BAD_ROW;
    }
    for (unsigned i = 0; i < MANIFEST_DIM; i++)
        if (!isfinite(row->embedding[i])) {
            if (err && errlen)
                snprintf(err, errlen,
                         "line %zu: descriptor %llu of %s has a non-finite value (%s at "
                         "component %u)",
                         row->line, (unsigned long long)r->next, r->name,
                         isnan(row->embedding[i]) ? "NaN" : "infinity", i + 1);
            return MANIFEST_BAD_ROW;
        }
    row->path = "";
    row->resolved = "";
    row->has_embedding = 1;
    return MANIFEST_ROW;
}

uint64_t raw_count(const raw_reader *r) { return r ? r->rows : 0; }

size_t raw_unknown_columns(const raw_reader *r, const char *const **names)
{
    return manifest_unknown_columns(r ? r->side : NULL, names);
}
