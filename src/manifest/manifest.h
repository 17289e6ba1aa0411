/*
 * manifest.h: reading manifests, the lists of photos (or of descriptors
 * computed elsewhere) to ingest, each with its provenance.
 *
 * Two formats, told apart by the file name's extension (.csv; .jsonl or
 * .ndjson; any case) or else by content (the first byte that is not white
 * space is '{': JSON Lines; anything else: CSV). A UTF-8 byte order mark is
 * skipped in both.
 *
 * CSV (RFC 4180): a header row naming the columns (names are trimmed of
 * spaces and tabs and matched ignoring ASCII case), then one record per row.
 * Fields may be quoted ("a, b"), with "" for a quote inside; quoted fields
 * may span lines (the line breaks inside are kept as written). Lines end in
 * LF or CRLF. A quote inside an unquoted field is an error (quote the field
 * and double the quote). At most 4096 columns. Field values are used
 * as written, except that consent, jurisdiction, collected_at and embedding
 * are trimmed of spaces and tabs. Every record must have as many fields as
 * the header. Columns with an empty name are ignored and, like unknown
 * columns, reported by manifest_unknown_columns (as "(unnamed column N)").
 *
 * JSON Lines: one JSON object per line. Keys are matched exactly (lower
 * case, as below). Known keys must have a string or null value (null:
 * absent); other keys are ignored whatever their value
 * (and reported by manifest_unknown_columns). A known key given twice is an
 * error. A line may hold at most MANIFEST_MAX_JSON_VALUES JSON values.
 *
 * Columns / keys: path (required in photo mode; relative paths are taken
 * from the manifest's folder), photo_id, url, uploader, source, license,
 * jurisdiction (ISO 3166-1 alpha-2 or 3166-2, see policy.h), consent
 * (explicit, public-license, none, withdrawn; any case), collected_at (YYYY,
 * YYYY-MM, YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS[.fraction]][Z|+HH:MM|-HH:MM],
 * every part range-checked, leap years included), and in descriptor mode
 * embedding (required there): in JSON Lines an array of exactly 128 numbers,
 * in CSV one field holding 128 numbers separated by commas and/or white
 * space, optionally in [ ]. Numbers must be finite as 32-bit floats. In photo
 * mode an embedding column is an unknown column.
 *
 * Errors in a record (the caller reports it and goes on with the next):
 * an unknown consent value, a bad jurisdiction or collected_at, a missing or
 * empty path (photo mode), a missing or bad embedding (descriptor mode), the
 * wrong number of CSV fields, broken CSV quoting, a line that is not a JSON
 * object, a record longer than the limit (1 MiB), a NUL byte, invalid UTF-8.
 * Each message starts with "line N: ", N being the line where the record
 * starts. Blank lines (empty, or only spaces and tabs) are skipped.
 *
 * Recovery: an over-long line is skipped without being stored. Broken
 * quoting in a record that spans lines (a stray quote that opened a field
 * never closed, or closed far away) is reported at the record's first line
 * and reading resumes at the line after that one, so one stray quote costs
 * one record, not the rest of the file; a quoted record that grows past the
 * limit is treated the same way.
 *
 * Memory: the file is streamed through a buffer of at most the record limit
 * plus one read chunk (1 MiB + 64 KiB by default), whatever the file size,
 * plus a copy of the current record's fields (at most the limit again) or,
 * for JSON Lines, its parsed tree (at most MANIFEST_MAX_JSON_VALUES values).
 * The parser never checks that the files named exist.
 *
 * Confinement (photo mode): a path that is absolute, or whose `..`
 * components climb above the folder, or whose real path (symbolic links
 * resolved, the file's against the folder's) lies outside the folder, is a
 * row error "path '...' is outside the manifest's folder (--allow-outside
 * permits it)", unless allow_outside is set. The folder is base_dir, or
 * the manifest file's own; a manifest from memory or a stream with no
 * base_dir gets the lexical check only. A missing file is not refused here
 * (the caller's open says it is missing), unless the folder it would be in
 * is itself outside.
 */
#ifndef LETHE_MANIFEST_H
#define LETHE_MANIFEST_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "policy/policy.h"

#define MANIFEST_DIM 128                  /* numbers in an embedding */
#define MANIFEST_MAX_RECORD (1u << 20)    /* bytes in a record, line breaks excluded */
#define MANIFEST_MAX_JSON_VALUES 65536    /* JSON values on one JSON Lines line */
#define MANIFEST_MAX_UNKNOWN 64           /* distinct unknown names remembered */

/* MANIFEST_PROVENANCE: provenance columns only, no path or embedding needed
 * (the sidecar of raw float32 descriptors). */
enum { MANIFEST_PHOTOS = 0, MANIFEST_DESCRIPTORS = 1, MANIFEST_PROVENANCE = 2 };            /* modes */
enum { MANIFEST_AUTO = 0, MANIFEST_CSV = 1, MANIFEST_JSONL = 2 };  /* formats */

/* What manifest_next returns. */
enum {
    MANIFEST_ROW = 1,      /* *row holds the next record */
    MANIFEST_END = 0,      /* no more records */
    MANIFEST_BAD_ROW = -1, /* a bad record, skipped: err says "line N: why"; call again */
    MANIFEST_FATAL = -2    /* reading failed (I/O error, out of memory); stop */
};

typedef struct manifest manifest;

/* One record. Every pointer is valid until the next manifest_next or
 * manifest_close; text fields are "" when absent, never NULL. */
typedef struct manifest_row {
    size_t line;              /* 1-based line where the record starts */
    const char *path;         /* as written */
    const char *resolved;     /* path joined to the manifest's folder unless absolute
                                 (or the folder is "."); "" when path is "" */
    const char *photo_id;
    const char *url;
    const char *uploader;
    const char *source;
    const char *license;
    const char *collected_at; /* validated, trimmed, as written */
    char jurisdiction[JURISDICTION_MAX]; /* canonical (upper case); "" when absent */
    int consent;              /* one CONSENT_* bit; 0 when absent */
    int has_embedding;        /* descriptor mode: always 1 in a returned row */
    float embedding[MANIFEST_DIM];
} manifest_row;

typedef struct manifest_options {
    int mode;             /* MANIFEST_PHOTOS (default) or MANIFEST_DESCRIPTORS */
    int format;           /* MANIFEST_AUTO (default), MANIFEST_CSV, MANIFEST_JSONL */
    size_t max_record;    /* 0: MANIFEST_MAX_RECORD; tests and fuzzing use less */
    size_t io_chunk;      /* bytes per read (0: 64 KiB; at least 16) */
    const char *base_dir; /* folder for relative paths; NULL: the manifest's own
                             folder (manifest_open_ex), none (_mem, _stream) */
    int allow_outside;    /* 1: accept paths outside the folder (see above) */
} manifest_options;

void manifest_options_init(manifest_options *opt);

/*
 * Open a manifest file. Fatal problems return a status with err explaining:
 * LETHE_ERR_NOT_FOUND / LETHE_ERR_IO (cannot open or read), LETHE_ERR_FORMAT
 * (empty, a bad or over-long CSV header, a duplicate column, no path column
 * in photo mode, no embedding column in descriptor mode), LETHE_ERR_NOMEM.
 * On success *out is a new manifest (manifest_close); on failure NULL.
 */
int manifest_open(const char *file, int mode, manifest **out, char *err, size_t errlen);
int manifest_open_ex(const char *file, const manifest_options *opt, manifest **out, char *err,
                     size_t errlen);
/* Read from memory; data must stay valid and unchanged until manifest_close.
 * With MANIFEST_AUTO only the content decides. */
int manifest_open_mem(const void *data, size_t len, const manifest_options *opt,
                      manifest **out, char *err, size_t errlen);
/* Read from an open stream (a pipe is fine: there is no seeking); name, if
 * not NULL, is used for the extension and in messages. f stays the caller's
 * (not closed) and must stay open until manifest_close. */
int manifest_open_stream(FILE *f, const char *name, const manifest_options *opt,
                         manifest **out, char *err, size_t errlen);

/* The next record: MANIFEST_ROW, MANIFEST_END, MANIFEST_BAD_ROW or
 * MANIFEST_FATAL (see above). After MANIFEST_FATAL every call returns it. */
int manifest_next(manifest *m, manifest_row *row, char *err, size_t errlen);

/* MANIFEST_CSV or MANIFEST_JSONL. */
int manifest_format(const manifest *m);
/* The format a file name's extension says: MANIFEST_CSV, MANIFEST_JSONL, or
 * MANIFEST_AUTO (no or another extension, or name NULL). */
int manifest_format_for_name(const char *name);
/* Why reading stopped after MANIFEST_FATAL (LETHE_ERR_NOMEM, LETHE_ERR_IO,
 * ...); LETHE_OK while it has not. */
int manifest_status(const manifest *m);

/*
 * Columns or keys that lethe does not use, as written, for a warning: for CSV
 * the header's, known at open; for JSON Lines those seen so far (at most
 * MANIFEST_MAX_UNKNOWN distinct ones). *names points into m (valid until
 * the next manifest_next or manifest_close). Returns the count.
 */
size_t manifest_unknown_columns(const manifest *m, const char *const **names);

void manifest_close(manifest *m); /* NULL is fine */

/* Exposed for tests: is s a valid collected_at value (see above)? 1 or 0. */
int manifest_valid_timestamp(const char *s);

/*
 * JSON Lines without rows: the next line's JSON value, whatever it is, for
 * readers of other line formats (the search queries). The manifest must
 * have been opened with format MANIFEST_JSONL. Returns MANIFEST_ROW with *v
 * (owned by m, valid until the next call or manifest_close) and *line set,
 * or MANIFEST_BAD_ROW (invalid JSON, an over-long line, ...: err says
 * "line N: why"), MANIFEST_END, MANIFEST_FATAL.
 */
struct json_value;
/* A cheap upper bound of the JSON values in s[0..n), to refuse a line before
 * parsing it would cost more than MANIFEST_MAX_JSON_VALUES values. */
size_t manifest_json_value_estimate(const void *s, size_t n);
int manifest_next_json(manifest *m, const struct json_value **v, size_t *line, char *err,
                       size_t errlen);

/* manifest_path.c: the confinement checks (see above). */
/* 1 if path is relative and no prefix of it climbs above its start. */
int manifest_path_lexically_inside(const char *path);
/* 1 if resolved (as it would be opened) really is base_real (a realpath)
 * or below it; a missing file counts as inside when its folder is. */
int manifest_path_really_inside(const char *resolved, const char *base_real);
/* For messages: s in single quotes, control bytes, quotes and backslashes
 * as \xNN, cut after MANIFEST_QUOTE_MAX bytes with "...". */
#define MANIFEST_QUOTE_MAX 200
#define MANIFEST_QUOTE_BUF (4 * MANIFEST_QUOTE_MAX + 8)
void manifest_quote_path(const char *s, char *out, size_t outlen);

/*
 * raw.c: raw little-endian float32 descriptors (512 bytes each) with a
 * sidecar manifest giving each one's provenance, in order. Open refuses a
 * descriptor file whose size is not a multiple of 512 bytes and a sidecar
 * whose record count (good and bad rows alike) differs from the number of
 * descriptors. Rows are descriptor-mode rows (path ""); a descriptor with a
 * NaN or infinite component is a bad row, as is a bad sidecar record (the
 * descriptor is skipped with it).
 */
typedef struct raw_reader raw_reader;
int raw_open(const char *f32_file, const char *sidecar, raw_reader **out, char *err,
             size_t errlen);
/* From memory: both buffers must stay valid until raw_close; sidecar_name
 * (may be NULL) chooses the sidecar's format by extension, as for files. */
int raw_open_mem(const void *f32, size_t f32_len, const void *sidecar, size_t sidecar_len,
                 const char *sidecar_name, raw_reader **out, char *err, size_t errlen);
int raw_next(raw_reader *r, manifest_row *row, char *err, size_t errlen);
/* The number of descriptors (and sidecar records). */
uint64_t raw_count(const raw_reader *r);
/* The sidecar's unknown columns, as manifest_unknown_columns. */
size_t raw_unknown_columns(const raw_reader *r, const char *const **names);
void raw_close(raw_reader *r); /* NULL is fine */

#endif
