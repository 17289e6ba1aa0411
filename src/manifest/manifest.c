/*
 * manifest.c: the manifest reader (CSV and JSON Lines, see manifest.h).
 *
 * The input is streamed through one buffer. m->mark is the first byte that
 * must be kept (the start of the record being read), m->pos the next byte to
 * look at; a refill moves [mark, len) to the front, so code that remembers
 * places inside a record keeps them as offsets from mark. Records are
 * bounded by max_record, which bounds the buffer: an over-long line is
 * skipped by discarding as it goes, never stored.
 */
#include "manifest/manifest.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/json.h"
#include "util/util.h"

#define DEFAULT_CHUNK (64u * 1024u)
#define MIN_CHUNK 16u
#define MAX_COLUMNS 4096 /* a bound for hostile headers */

enum field_id {
    F_PATH,
    F_PHOTO_ID,
    F_URL,
    F_UPLOADER,
    F_SOURCE,
    F_LICENSE,
    F_JURISDICTION,
    F_CONSENT,
    F_COLLECTED_AT,
    F_EMBEDDING,
    F_COUNT
};

static const char *const field_names[F_COUNT] = {
    "path",    "photo_id",     "url",     "uploader",     "source",
    "license", "jurisdiction", "consent", "collected_at", "embedding",
};

struct manifest {
    int mode;              /* MANIFEST_PHOTOS / MANIFEST_DESCRIPTORS */
    int format;            /* MANIFEST_CSV / MANIFEST_JSONL */
    size_t max_record;     /* bytes in a record, line breaks excluded */
    size_t chunk;          /* bytes per read */
    char *base_dir;        /* relative paths are joined to it; NULL: as written */
    int from_file;         /* opened by name: its folder is "." when base_dir is NULL */
    int confine;           /* photo mode, outside paths refused */
    char *base_real;       /* the real path of the folder, for confine; NULL: the
                              lexical check only */

    /* The input window: data[0..len), data == buf for streams. */
    FILE *f;               /* stream source, or NULL for memory */
    int own_f;             /* we opened f and close it */
    uint8_t *buf;          /* stream buffer */
    size_t cap, max_cap;   /* its size and the most it may grow to */
    const uint8_t *data;
    size_t len;
    size_t pos;            /* next byte to read */
    size_t mark;           /* first byte that must be kept */
    int eof;               /* nothing more to read after data[len) */
    int fatal;             /* LETHE_OK, or why reading cannot go on */
    char fatal_msg[160];
    size_t line;           /* 1-based line number of data[pos] */

    /* CSV: the header */
    size_t ncols;          /* columns in the header */
    int *col_field;        /* per column: an F_* or -1 (not used) */

    /* Names of unused columns or keys. */
    char **unknown;
    size_t nunknown;

    /* The current record. */
    char *arena;           /* CSV fields, each NUL-terminated */
    size_t arena_len, arena_cap;
    size_t *fld;           /* offsets of the fields in arena */
    size_t nfld;           /* fields seen (may exceed those stored) */
    size_t fld_cap;
    size_t store_limit;    /* fields beyond this many are counted, not stored */
    json_value *json;      /* JSON Lines: the current line's object */
    char *resolved;        /* the current row's resolved path */
    size_t resolved_cap;
};

static int set_fatal(manifest *m, int status, const char *what)
{
    if (m->fatal == LETHE_OK) {
        m->fatal = status;
        snprintf(m->fatal_msg, sizeof(m->fatal_msg), "%s", what);
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* The input window                                                    */
/* ------------------------------------------------------------------ */

/* Read more bytes, keeping [mark, len). 1 if some arrived, 0 at the end
 * (or on failure: m->fatal). */
static int fill(manifest *m)
{
    size_t want, got;

    if (m->eof || m->fatal || !m->f)
        return 0;
    if (m->mark > 0) {
        memmove(m->buf, m->buf + m->mark, m->len - m->mark);
        m->len -= m->mark;
        m->pos -= m->mark;
        m->mark = 0;
    }
    if (m->cap - m->len < m->chunk && m->cap < m->max_cap) {
        size_t cap = LETHE_MAX(m->cap * 2, m->len + m->chunk);
        uint8_t *grown;
        cap = LETHE_MIN(cap, m->max_cap);
        grown = lethe_realloc(m->buf, cap);
        if (!grown)
            return set_fatal(m, LETHE_ERR_NOMEM, "out of memory");
        m->buf = grown;
        m->data = grown;
        m->cap = cap;
    }
    want = LETHE_MIN(m->chunk, m->cap - m->len);
    if (want == 0) /* the record bound keeps this from happening */
        return set_fatal(m, LETHE_ERR_INTERNAL, "manifest buffer full");
    got = fread(m->buf + m->len, 1, want, m->f);
    if (got == 0) {
        if (ferror(m->f))
            return set_fatal(m, LETHE_ERR_IO, strerror(errno ? errno : EIO));
        m->eof = 1;
        return 0;
    }
    m->len += got;
    return 1;
}

/* Make data[pos + k] available: 1, or 0 at the end or on failure. */
static int have(manifest *m, size_t k)
{
    while (m->pos + k >= m->len)
        if (!fill(m))
            return 0;
    return 1;
}

/* Discard the rest of the current physical line and its line break. */
static void skip_line(manifest *m)
{
    for (;;) {
        const uint8_t *nl;
        if (m->pos >= m->len && !fill(m)) {
            m->mark = m->pos;
            return;
        }
        nl = memchr(m->data + m->pos, '\n', m->len - m->pos);
        if (nl) {
            m->pos = (size_t)(nl - m->data) + 1;
            m->line++;
            m->mark = m->pos;
            return;
        }
        m->pos = m->len;
        m->mark = m->pos;
    }
}

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */
/* ------------------------------------------------------------------ */

static int row_fail(char *err, size_t errlen, size_t line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int row_fail(char *err, size_t errlen, size_t line, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        int n = snprintf(err, errlen, "line %zu: ", line);
        if (n >= 0 && (size_t)n < errlen) {
            va_start(ap, fmt);
            vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return MANIFEST_BAD_ROW;
}

static void limit_text(size_t limit, char *out, size_t n)
{
    if (limit % (1u << 20) == 0)
        snprintf(out, n, "%zu MiB", limit >> 20);
    else
        snprintf(out, n, "%zu bytes", limit);
}

/* Index of the first byte of s[0..n) that is not valid UTF-8, or n. Strict:
 * no overlong forms, surrogates or code points above U+10FFFF. */
static size_t utf8_check(const uint8_t *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        uint8_t c = s[i];
        size_t k;
        uint32_t cp, min;

        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            k = 1;
            cp = c & 0x1F;
            min = 0x80;
        } else if (c >= 0xE0 && c <= 0xEF) {
            k = 2;
            cp = c & 0x0F;
            min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            k = 3;
            cp = c & 0x07;
            min = 0x10000;
        } else {
            return i;
        }
        if (n - i <= k)
            return i;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80)
                return i;
            cp = (cp << 6) | (s[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return i;
        i += k + 1;
    }
    return n;
}

static int ieq(const char *a, const char *b)
{
    for (; *a && *b; a++, b++) {
        int ca = (unsigned char)*a, cb = (unsigned char)*b;
        if (ca >= 'A' && ca <= 'Z')
            ca += 'a' - 'A';
        if (cb >= 'A' && cb <= 'Z')
            cb += 'a' - 'A';
        if (ca != cb)
            return 0;
    }
    return *a == *b;
}

/* Trim spaces and tabs in place; returns the new start. */
static char *trim(char *s)
{
    char *e;

    while (*s == ' ' || *s == '\t')
        s++;
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    *e = '\0';
    return s;
}

/* Remember an unused column or key name (deduplicated, bounded). */
static int add_unknown(manifest *m, const char *name)
{
    char **grown, *copy;

    for (size_t i = 0; i < m->nunknown; i++)
        if (strcmp(m->unknown[i], name) == 0)
            return LETHE_OK;
    if (m->nunknown >= MANIFEST_MAX_UNKNOWN)
        return LETHE_OK;
    grown = lethe_realloc(m->unknown, (m->nunknown + 1) * sizeof(*grown));
    if (!grown)
        return LETHE_ERR_NOMEM;
    m->unknown = grown;
    copy = lethe_strdup(name);
    if (!copy)
        return LETHE_ERR_NOMEM;
    m->unknown[m->nunknown++] = copy;
    return LETHE_OK;
}

/* ------------------------------------------------------------------ */
/* Values                                                              */
/* ------------------------------------------------------------------ */

static int digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 1;
}

static int days_in_month(int y, int mo)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return mo == 2 && leap ? 29 : days[mo - 1];
}

int manifest_valid_timestamp(const char *s)
{
    int y, mo, d, h, mi, sec;

    if (!digits(s, 4, &y))
        return 0;
    s += 4;
    if (!*s)
        return 1;
    if (*s != '-' || !digits(s + 1, 2, &mo) || mo < 1 || mo > 12)
        return 0;
    s += 3;
    if (!*s)
        return 1;
    if (*s != '-' || !digits(s + 1, 2, &d) || d < 1 || d > days_in_month(y, mo))
        return 0;
    s += 3;
    if (!*s)
        return 1;
    if (*s != 'T' || !digits(s + 1, 2, &h) || h > 23 || s[3] != ':' ||
        !digits(s + 4, 2, &mi) || mi > 59)
        return 0;
    s += 6;
    if (*s == ':') {
        if (!digits(s + 1, 2, &sec) || sec > 60) /* 60: a leap second */
            return 0;
        s += 3;
        if (*s == '.') {
            s++;
            if (*s < '0' || *s > '9')
                return 0;
            while (*s >= '0' && *s <= '9')
                s++;
        }
    }
    if (!*s)
        return 1;
    if (*s == 'Z')
        return s[1] == '\0';
    if (*s != '+' && *s != '-')
        return 0;
    if (!digits(s + 1, 2, &h) || h > 23 || s[3] != ':' || !digits(s + 4, 2, &mi) || mi > 59)
        return 0;
    return s[6] == '\0';
}

static int is_number_char(char c)
{
    return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* 128 numbers separated by commas and/or white space, optionally in [ ]. */
static int parse_embedding_text(char *s, float out[MANIFEST_DIM], char *why, size_t whylen)
{
    size_t n = 0, len;
    char *p = s, *end;

    len = strlen(s);
    while (len && is_space(s[len - 1]))
        len--;
    s[len] = '\0';
    while (is_space(*p))
        p++;
    end = s + len;
    if (*p == '[') {
        if (end <= p + 1 || end[-1] != ']') {
            snprintf(why, whylen, "embedding: '[' without a closing ']'");
            return 0;
        }
        p++;
        *--end = '\0';
    }
    for (;;) {
        char *q, *stop;
        double v;
        float f;

        while (p < end && is_space(*p))
            p++;
        if (p >= end)
            break;
        if (n > 0) {
            if (*p == ',') {
                p++;
                while (p < end && is_space(*p))
                    p++;
            }
            if (p >= end) {
                snprintf(why, whylen, "embedding: a number is missing after the last comma");
                return 0;
            }
        }
        q = p;
        while (q < end && is_number_char(*q))
            q++;
        if (q == p || (q < end && !is_space(*q) && *q != ',')) {
            snprintf(why, whylen, "embedding: number %zu is not a number", n + 1);
            return 0;
        }
        {
            char save = *q;
            *q = '\0';
            errno = 0;
            v = strtod(p, &stop);
            *q = save;
        }
        if (stop != q) {
            snprintf(why, whylen, "embedding: number %zu is not a number", n + 1);
            return 0;
        }
        f = (float)v;
        if (!isfinite(f)) {
            snprintf(why, whylen, "embedding: number %zu is not a finite 32-bit float", n + 1);
            return 0;
        }
        if (n < MANIFEST_DIM)
            out[n] = f;
        n++;
        p = q;
    }
    if (n != MANIFEST_DIM) {
        snprintf(why, whylen, "embedding: expected %d numbers, found %zu", MANIFEST_DIM, n);
        return 0;
    }
    return 1;
}

static int parse_embedding_json(const json_value *v, float out[MANIFEST_DIM], char *why,
                                size_t whylen)
{
    if (v->type != JSON_ARRAY) {
        snprintf(why, whylen, "\"embedding\" must be an array of %d numbers", MANIFEST_DIM);
        return 0;
    }
    if (v->len != MANIFEST_DIM) {
        snprintf(why, whylen, "\"embedding\": expected %d numbers, found %zu", MANIFEST_DIM,
                 v->len);
        return 0;
    }
    for (size_t i = 0; i < MANIFEST_DIM; i++) {
        float f;
        if (v->items[i]->type != JSON_NUMBER) {
            snprintf(why, whylen, "\"embedding\": item %zu is not a number", i + 1);
            return 0;
        }
        f = (float)v->items[i]->number;
        if (!isfinite(f)) {
            snprintf(why, whylen, "\"embedding\": item %zu is not a finite 32-bit float", i + 1);
            return 0;
        }
        out[i] = f;
    }
    return 1;
}

/* ------------------------------------------------------------------ */
/* From field values to a row                                          */
/* ------------------------------------------------------------------ */

/* row->resolved for path. */
static int resolve_path(manifest *m, const char *path, const char **out)
{
    size_t dl, pl, need;
    int slash;

    if (!path[0] || path[0] == '/' || !m->base_dir) {
        *out = path;
        return LETHE_OK;
    }
    dl = strlen(m->base_dir);
    pl = strlen(path);
    slash = dl > 0 && m->base_dir[dl - 1] != '/';
    need = dl + (size_t)slash + pl + 1;
    if (need > m->resolved_cap) {
        char *grown = lethe_realloc(m->resolved, need);
        if (!grown)
            return LETHE_ERR_NOMEM;
        m->resolved = grown;
        m->resolved_cap = need;
    }
    memcpy(m->resolved, m->base_dir, dl);
    if (slash)
        m->resolved[dl] = '/';
    memcpy(m->resolved + dl + (size_t)slash, path, pl + 1);
    *out = m->resolved;
    return LETHE_OK;
}

/*
 * Check the values (NULL: absent; mutable, so they can be trimmed in place)
 * and fill row. The embedding is parsed by the caller (its form depends on
 * the format). Returns MANIFEST_ROW, MANIFEST_BAD_ROW or MANIFEST_FATAL.
 */
static int finish_row(manifest *m, char *val[F_COUNT], size_t line, manifest_row *row,
                      char *err, size_t errlen)
{
    char q[4 * POLICY_QUOTE_MAX + 8], msg[200];
    const char *const empty = "";
    char *s;

    row->line = line;
    if (m->mode == MANIFEST_PHOTOS) {
        if (!val[F_PATH])
            return row_fail(err, errlen, line, "missing \"path\"");
        if (!val[F_PATH][0])
            return row_fail(err, errlen, line, "empty path");
    }
    row->path = val[F_PATH] ? val[F_PATH] : empty;
    row->photo_id = val[F_PHOTO_ID] ? val[F_PHOTO_ID] : empty;
    row->url = val[F_URL] ? val[F_URL] : empty;
    row->uploader = val[F_UPLOADER] ? val[F_UPLOADER] : empty;
    row->source = val[F_SOURCE] ? val[F_SOURCE] : empty;
    row->license = val[F_LICENSE] ? val[F_LICENSE] : empty;

    row->consent = 0;
    if (val[F_CONSENT] && (s = trim(val[F_CONSENT]))[0]) {
        row->consent = consent_parse(s);
        if (row->consent < 0) {
            policy_quote(s, strlen(s), q, sizeof(q));
            row->consent = 0;
            return row_fail(err, errlen, line,
                            "unknown consent value %s (explicit, public-license, none, "
                            "withdrawn)",
                            q);
        }
    }
    row->jurisdiction[0] = '\0';
    if (val[F_JURISDICTION] && (s = trim(val[F_JURISDICTION]))[0]) {
        if (jurisdiction_parse(s, row->jurisdiction, msg, sizeof(msg)) != LETHE_OK)
            return row_fail(err, errlen, line, "%s", msg);
    }
    row->collected_at = empty;
    if (val[F_COLLECTED_AT] && (s = trim(val[F_COLLECTED_AT]))[0]) {
        if (!manifest_valid_timestamp(s)) {
            policy_quote(s, strlen(s), q, sizeof(q));
            return row_fail(err, errlen, line,
                            "bad collected_at %s (YYYY, YYYY-MM, YYYY-MM-DD or "
                            "YYYY-MM-DDTHH:MM[:SS][Z|+HH:MM])",
                            q);
        }
        row->collected_at = s;
    }
    if (resolve_path(m, row->path, &row->resolved) != LETHE_OK) {
        set_fatal(m, LETHE_ERR_NOMEM, "out of memory");
        return MANIFEST_FATAL;
    }
    if (m->confine && (!manifest_path_lexically_inside(row->path) ||
                       (m->base_real &&
                        !manifest_path_really_inside(row->resolved, m->base_real)))) {
        char qp[MANIFEST_QUOTE_BUF];
        manifest_quote_path(row->path, qp, sizeof(qp));
        return row_fail(err, errlen, line,
                        "path %s is outside the manifest's folder (--allow-outside permits it)",
                        qp);
    }
    return MANIFEST_ROW;
}

/* ------------------------------------------------------------------ */
/* CSV                                                                 */
/* ------------------------------------------------------------------ */

static int arena_put(manifest *m, char c)
{
    if (m->nfld >= m->store_limit)
        return 1; /* a field past those stored: counted only */
    if (m->arena_len == m->arena_cap) {
        size_t cap = m->arena_cap ? m->arena_cap * 2 : 256;
        char *grown = lethe_realloc(m->arena, cap);
        if (!grown)
            return set_fatal(m, LETHE_ERR_NOMEM, "out of memory");
        m->arena = grown;
        m->arena_cap = cap;
    }
    m->arena[m->arena_len++] = c;
    return 1;
}

/* Close the current field and open the next. */
static int end_field(manifest *m)
{
    if (!arena_put(m, '\0'))
        return 0;
    m->nfld++;
    if (m->nfld < m->store_limit) {
        if (m->nfld == m->fld_cap) {
            size_t cap = m->fld_cap ? m->fld_cap * 2 : 16;
            size_t *grown = lethe_realloc(m->fld, cap * sizeof(*grown));
            if (!grown)
                return set_fatal(m, LETHE_ERR_NOMEM, "out of memory");
            m->fld = grown;
            m->fld_cap = cap;
        }
        m->fld[m->nfld] = m->arena_len; /* the next field's start */
    }
    return 1;
}

/*
 * A quoting error: reported at the record's first line. If the record had
 * already run onto further lines, reading resumes at its second line (the
 * quote that swallowed them was most likely stray); otherwise the rest of
 * the line is skipped.
 */
static int csv_quote_error(manifest *m, size_t start_line, size_t first_nl, char *err,
                           size_t errlen, const char *what)
{
    if (first_nl) {
        m->pos = m->mark + first_nl;
        m->line = start_line + 1;
        m->mark = m->pos;
    } else {
        skip_line(m);
    }
    if (m->fatal)
        return MANIFEST_FATAL;
    return row_fail(err, errlen, start_line, "%s", what);
}

/* csv_skip_blank_lines, csv_line_break and csv_take: the record goes on
 * (not one of the MANIFEST_* results). */
#define CSV_GO_ON 2

/* Where the reading of one CSV record is. */
typedef struct csv_state {
    enum { FIELD_START, UNQUOTED, QUOTED, QUOTE_SEEN } at;
    size_t start_line; /* the record's first line */
    size_t first_nl;   /* offset from mark just past the first line break, 0: none */
    int nul;           /* a NUL byte was seen */
} csv_state;

/* Blank lines (nothing, or only spaces and tabs) between records are
 * skipped. Returns CSV_GO_ON with m->mark at the record's first byte,
 * MANIFEST_END or MANIFEST_FATAL. */
static int csv_skip_blank_lines(manifest *m)
{
    for (;;) {
        size_t k = 0;
        uint8_t c = 0;

        m->mark = m->pos;
        while (k <= m->max_record && have(m, k) &&
               ((c = m->data[m->pos + k]) == ' ' || c == '\t'))
            k++;
        if (m->fatal)
            return MANIFEST_FATAL;
        if (k > m->max_record)
            return CSV_GO_ON; /* an over-long line of spaces: csv_record says so */
        if (m->pos + k >= m->len) { /* the end of the input */
            if (k == 0)
                return MANIFEST_END;
            m->pos += k;
            continue;
        }
        if (c == '\n') {
            m->pos += k + 1;
            m->line++;
            continue;
        }
        if (c == '\r') {
            if (!have(m, k + 1)) {
                if (m->fatal)
                    return MANIFEST_FATAL;
                m->pos += k + 1; /* a lone CR at the very end */
                continue;
            }
            if (m->data[m->pos + k + 1] == '\n') {
                m->pos += k + 2;
                m->line++;
                continue;
            }
        }
        return CSV_GO_ON;
    }
}

/* Outside quotes, whether c = data[pos] ends the record: a line break (LF,
 * CRLF, or a CR at the very end of the input), consumed; MANIFEST_ROW if so,
 * CSV_GO_ON if not, MANIFEST_FATAL. A CR alone elsewhere is data. */
static int csv_line_break(manifest *m, unsigned char c)
{
    if (c == '\n') {
        m->pos++;
        m->line++;
        return MANIFEST_ROW;
    }
    if (c == '\r') {
        if (!have(m, 1)) {
            if (m->fatal)
                return MANIFEST_FATAL;
            m->pos++;
            return MANIFEST_ROW;
        }
        if (m->data[m->pos + 1] == '\n') {
            m->pos += 2;
            m->line++;
            return MANIFEST_ROW;
        }
    }
    return CSV_GO_ON;
}

/* The record has reached max_record bytes: skip it and say so. */
static int csv_too_long(manifest *m, const csv_state *st, char *err, size_t errlen)
{
    char lim[32];

    limit_text(m->max_record, lim, sizeof(lim));
    if (st->first_nl) {
        char what[96];
        snprintf(what, sizeof(what), "record longer than %s (an unterminated quoted field?)",
                 lim);
        return csv_quote_error(m, st->start_line, st->first_nl, err, errlen, what);
    }
    skip_line(m);
    if (m->fatal)
        return MANIFEST_FATAL;
    return row_fail(err, errlen, st->start_line, "line longer than %s", lim);
}

/* Take the byte c (already consumed) into the record. Returns CSV_GO_ON, or
 * the result of the record when c ends it badly: MANIFEST_BAD_ROW (a
 * quoting error) or MANIFEST_FATAL. */
static int csv_take(manifest *m, csv_state *st, unsigned char c, char *err, size_t errlen)
{
    switch (st->at) {
    case FIELD_START:
        if (c == '"') {
            st->at = QUOTED;
        } else if (c == ',') {
            if (!end_field(m))
                return MANIFEST_FATAL;
        } else {
            if (!arena_put(m, (char)c))
                return MANIFEST_FATAL;
            st->at = UNQUOTED;
        }
        break;
    case UNQUOTED:
        if (c == ',') {
            if (!end_field(m))
                return MANIFEST_FATAL;
            st->at = FIELD_START;
        } else if (c == '"') {
            return csv_quote_error(m, st->start_line, st->first_nl, err, errlen,
                                   "quote inside an unquoted field (quote the whole field "
                                   "and double the quote: \"a \"\"b\"\"\")");
        } else if (!arena_put(m, (char)c)) {
            return MANIFEST_FATAL;
        }
        break;
    case QUOTED:
        if (c == '"') {
            st->at = QUOTE_SEEN;
            break;
        }
        if (!arena_put(m, (char)c))
            return MANIFEST_FATAL;
        if (c == '\n') {
            m->line++;
            if (!st->first_nl)
                st->first_nl = m->pos - m->mark;
        }
        break;
    case QUOTE_SEEN:
        if (c == '"') {
            if (!arena_put(m, '"'))
                return MANIFEST_FATAL;
            st->at = QUOTED;
        } else if (c == ',') {
            if (!end_field(m))
                return MANIFEST_FATAL;
            st->at = FIELD_START;
        } else {
            return csv_quote_error(m, st->start_line, st->first_nl, err, errlen,
                                   "character after a closing quote");
        }
        break;
    }
    return CSV_GO_ON;
}

/*
 * Read one CSV record into m->fld / m->arena. Returns MANIFEST_ROW,
 * MANIFEST_END, MANIFEST_BAD_ROW (err set) or MANIFEST_FATAL.
 */
static int csv_record(manifest *m, size_t *start_line, char *err, size_t errlen)
{
    csv_state st = {FIELD_START, 0, 0, 0};
    int rc = csv_skip_blank_lines(m);

    if (rc != CSV_GO_ON)
        return rc;
    *start_line = st.start_line = m->line;
    m->arena_len = 0;
    m->nfld = 0;
    if (!m->fld) {
        m->fld = lethe_malloc(16 * sizeof(*m->fld));
        if (!m->fld) {
            set_fatal(m, LETHE_ERR_NOMEM, "out of memory");
            return MANIFEST_FATAL;
        }
        m->fld_cap = 16;
    }
    m->fld[0] = 0;

    for (;;) {
        unsigned char c;

        if (!have(m, 0)) {
            if (m->fatal)
                return MANIFEST_FATAL;
            if (st.at == QUOTED)
                return csv_quote_error(m, st.start_line, st.first_nl, err, errlen,
                                       "unterminated quoted field");
            break; /* the end of the file ends the record */
        }
        c = m->data[m->pos];
        if (st.at != QUOTED && (rc = csv_line_break(m, c)) != CSV_GO_ON) {
            if (rc == MANIFEST_FATAL)
                return MANIFEST_FATAL;
            break;
        }
        if (m->pos - m->mark >= m->max_record)
            return csv_too_long(m, &st, err, errlen);
        m->pos++;
        if (c == '\0')
            st.nul = 1;
        if ((rc = csv_take(m, &st, c, err, errlen)) != CSV_GO_ON)
            return rc;
    }
    if (!end_field(m))
        return MANIFEST_FATAL;
    if (st.nul)
        return row_fail(err, errlen, st.start_line, "NUL byte");
    return MANIFEST_ROW;
}

static char *csv_field(manifest *m, size_t i) { return m->arena + m->fld[i]; }

/* 1 if field i is valid UTF-8. */
static int csv_field_utf8_ok(manifest *m, size_t i)
{
    const char *s = csv_field(m, i);
    size_t n = strlen(s);
    return utf8_check((const uint8_t *)s, n) == n;
}

static const char *column_name(const manifest *m, size_t col, char *buf, size_t n)
{
    if (m->col_field[col] >= 0)
        return field_names[m->col_field[col]];
    snprintf(buf, n, "column %zu", col + 1);
    return buf;
}

static int csv_header(manifest *m, char *err, size_t errlen)
{
    size_t line;
    char msg[256], q[4 * POLICY_QUOTE_MAX + 8];
    int st, seen[F_COUNT];

    m->store_limit = MAX_COLUMNS;
    st = csv_record(m, &line, msg, sizeof(msg));
    if (st == MANIFEST_FATAL)
        return lethe_fail(err, errlen, m->fatal, "%s", m->fatal_msg);
    if (st == MANIFEST_END)
        return lethe_fail(err, errlen, LETHE_ERR_FORMAT, "empty manifest: no header row");
    if (st == MANIFEST_BAD_ROW)
        return lethe_fail(err, errlen, LETHE_ERR_FORMAT, "bad header row: %s", msg);
    if (m->nfld > MAX_COLUMNS)
        return lethe_fail(err, errlen, LETHE_ERR_FORMAT, "line %zu: more than %d columns", line,
                          MAX_COLUMNS);
    m->ncols = m->nfld;
    m->col_field = lethe_malloc(m->ncols * sizeof(*m->col_field));
    if (!m->col_field)
        return lethe_fail(err, errlen, LETHE_ERR_NOMEM, "out of memory");
    for (int f = 0; f < F_COUNT; f++)
        seen[f] = -1;
    for (size_t i = 0; i < m->ncols; i++) {
        char *name;
        if (!csv_field_utf8_ok(m, i))
            return lethe_fail(err, errlen, LETHE_ERR_FORMAT,
                              "line %zu: invalid UTF-8 in the name of column %zu", line, i + 1);
        name = trim(csv_field(m, i));
        m->col_field[i] = -1;
        if (!name[0]) {
            snprintf(msg, sizeof(msg), "(unnamed column %zu)", i + 1);
            if (add_unknown(m, msg) != LETHE_OK)
                return lethe_fail(err, errlen, LETHE_ERR_NOMEM, "out of memory");
            continue;
        }
        for (size_t j = 0; j < i; j++) {
            const char *other = csv_field(m, j);
            if (other[0] && ieq(other, name)) {
                policy_quote(name, strlen(name), q, sizeof(q));
                return lethe_fail(err, errlen, LETHE_ERR_FORMAT,
                                  "line %zu: duplicate column %s (columns %zu and %zu)", line, q,
                                  j + 1, i + 1);
            }
        }
        for (int f = 0; f < F_COUNT; f++) {
            if (f == F_EMBEDDING && m->mode != MANIFEST_DESCRIPTORS)
                continue;
            if (ieq(name, field_names[f])) {
                m->col_field[i] = f;
                seen[f] = (int)i;
            }
        }
        if (m->col_field[i] < 0 && add_unknown(m, name) != LETHE_OK)
            return lethe_fail(err, errlen, LETHE_ERR_NOMEM, "out of memory");
        /* trim() may have moved the name's start: keep the trimmed form
         * where the duplicate check above looks for it. */
        if (name != csv_field(m, i))
            memmove(csv_field(m, i), name, strlen(name) + 1);
    }
    if (m->mode == MANIFEST_PHOTOS && seen[F_PATH] < 0)
        return lethe_fail(err, errlen, LETHE_ERR_FORMAT,
                          "line %zu: no \"path\" column (the header names the columns)", line);
    if (m->mode == MANIFEST_DESCRIPTORS && seen[F_EMBEDDING] < 0)
        return lethe_fail(err, errlen, LETHE_ERR_FORMAT,
                          "line %zu: no \"embedding\" column (needed to read descriptors)", line);
    m->store_limit = m->ncols;
    return LETHE_OK;
}

static int csv_next(manifest *m, manifest_row *row, char *err, size_t errlen)
{
    size_t line;
    char *val[F_COUNT] = {0}, why[160], colbuf[32];
    int st = csv_record(m, &line, err, errlen);

    if (st != MANIFEST_ROW)
        return st;
    if (m->nfld != m->ncols)
        return row_fail(err, errlen, line, "expected %zu fields (as in the header), found %zu",
                        m->ncols, m->nfld);
    for (size_t i = 0; i < m->ncols; i++) {
        if (!csv_field_utf8_ok(m, i))
            return row_fail(err, errlen, line, "invalid UTF-8 in %s",
                            column_name(m, i, colbuf, sizeof(colbuf)));
        if (m->col_field[i] >= 0)
            val[m->col_field[i]] = csv_field(m, i);
    }
    st = finish_row(m, val, line, row, err, errlen);
    if (st != MANIFEST_ROW)
        return st;
    row->has_embedding = 0;
    if (m->mode == MANIFEST_DESCRIPTORS) {
        if (!parse_embedding_text(val[F_EMBEDDING], row->embedding, why, sizeof(why)))
            return row_fail(err, errlen, line, "%s", why);
        row->has_embedding = 1;
    }
    return MANIFEST_ROW;
}

/* ------------------------------------------------------------------ */
/* JSON Lines                                                          */
/* ------------------------------------------------------------------ */

size_t manifest_json_value_estimate(const void *data, size_t n)
{
    const uint8_t *s = data;
    size_t count = 1;
    int in_string = 0;

    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = 0;
        } else if (c == '"') {
            in_string = 1;
        } else if (c == ',' || c == '[' || c == '{' || c == ':') {
            count++;
        }
    }
    return count;
}

/* "JSON: what at line 1, column C" -> "invalid JSON: what at column C". */
static int json_error(char *err, size_t errlen, size_t line, const char *msg)
{
    const char *at = strstr(msg, " at line 1, column ");
    if (strncmp(msg, "JSON: ", 6) == 0 && at)
        return row_fail(err, errlen, line, "invalid JSON: %.*s at column %s",
                        (int)(at - msg - 6), msg + 6, at + strlen(" at line 1, column "));
    return row_fail(err, errlen, line, "invalid JSON: %s", msg);
}

/* The next non-blank line parsed into m->json; *line_out its number. */
static int jsonl_read(manifest *m, size_t *line_out, char *err, size_t errlen)
{
    const uint8_t *s;
    size_t n, line, bad;
    char lim[32], msg[256];
    int st;

    json_free(m->json);
    m->json = NULL;
    for (;;) {
        size_t scanned = 0; /* bytes after mark known to hold no line break */
        const uint8_t *nl = NULL;
        int blank = 1;

        m->mark = m->pos;
        if (!have(m, 0))
            return m->fatal ? MANIFEST_FATAL : MANIFEST_END;
        line = m->line;
        for (;;) {
            size_t from = m->mark + scanned;
            nl = memchr(m->data + from, '\n', m->len - from);
            if (nl)
                break;
            scanned = m->len - m->mark;
            if (scanned > m->max_record + 1) { /* + 1: a CR before the LF */
                limit_text(m->max_record, lim, sizeof(lim));
                skip_line(m);
                if (m->fatal)
                    return MANIFEST_FATAL;
                return row_fail(err, errlen, line, "line longer than %s", lim);
            }
            m->pos = m->len;
            if (!fill(m)) {
                if (m->fatal)
                    return MANIFEST_FATAL;
                break;
            }
        }
        s = m->data + m->mark;
        n = nl ? (size_t)(nl - s) : m->len - m->mark;
        m->pos = m->mark + n + (nl ? 1 : 0);
        if (nl)
            m->line++;
        if (n && s[n - 1] == '\r')
            n--;
        if (n > m->max_record) {
            limit_text(m->max_record, lim, sizeof(lim));
            return row_fail(err, errlen, line, "line longer than %s", lim);
        }
        for (size_t i = 0; i < n && blank; i++)
            blank = is_space((char)s[i]);
        if (!blank)
            break;
    }
    if (memchr(s, '\0', n))
        return row_fail(err, errlen, line, "NUL byte");
    bad = utf8_check(s, n);
    if (bad != n)
        return row_fail(err, errlen, line, "invalid UTF-8 (byte %zu)", bad + 1);
    if (manifest_json_value_estimate(s, n) > MANIFEST_MAX_JSON_VALUES)
        return row_fail(err, errlen, line, "more than %d JSON values on the line",
                        MANIFEST_MAX_JSON_VALUES);
    st = json_parse((const char *)s, n, &m->json, msg, sizeof(msg));
    if (st == LETHE_ERR_NOMEM) {
        set_fatal(m, LETHE_ERR_NOMEM, "out of memory");
        return MANIFEST_FATAL;
    }
    if (st != LETHE_OK)
        return json_error(err, errlen, line, msg);
    *line_out = line;
    return MANIFEST_ROW;
}

int manifest_next_json(manifest *m, const json_value **v, size_t *line, char *err,
                       size_t errlen)
{
    int st;

    if (err && errlen)
        err[0] = '\0';
    *v = NULL;
    *line = 0;
    if (!m || m->format != MANIFEST_JSONL) {
        lethe_fail(err, errlen, LETHE_ERR_ARG, "not a JSON Lines reader");
        return MANIFEST_FATAL;
    }
    if (m->fatal) {
        lethe_fail(err, errlen, m->fatal, "%s", m->fatal_msg);
        return MANIFEST_FATAL;
    }
    st = jsonl_read(m, line, err, errlen);
    if (st == MANIFEST_FATAL)
        lethe_fail(err, errlen, m->fatal ? m->fatal : LETHE_ERR_INTERNAL, "%s",
                   m->fatal ? m->fatal_msg : "manifest reader failed");
    if (st == MANIFEST_ROW)
        *v = m->json;
    return st;
}

static int jsonl_next(manifest *m, manifest_row *row, char *err, size_t errlen)
{
    size_t line;
    char why[160];
    char *val[F_COUNT] = {0};
    const json_value *emb = NULL;
    int seen[F_COUNT] = {0}, st;

    st = jsonl_read(m, &line, err, errlen);
    if (st != MANIFEST_ROW)
        return st;
    if (m->json->type != JSON_OBJECT)
        return row_fail(err, errlen, line, "not a JSON object");

    for (size_t i = 0; i < m->json->len; i++) {
        const char *key = m->json->keys[i];
        json_value *v = m->json->items[i];
        int f = -1;

        for (int k = 0; k < F_COUNT; k++) {
            if (k == F_EMBEDDING && m->mode != MANIFEST_DESCRIPTORS)
                continue;
            if (strcmp(key, field_names[k]) == 0)
                f = k;
        }
        if (f < 0) {
            if (add_unknown(m, key) != LETHE_OK) {
                set_fatal(m, LETHE_ERR_NOMEM, "out of memory");
                return MANIFEST_FATAL;
            }
            continue;
        }
        if (seen[f])
            return row_fail(err, errlen, line, "duplicate key \"%s\"", field_names[f]);
        seen[f] = 1;
        if (v->type == JSON_NULL)
            continue;
        if (f == F_EMBEDDING) {
            emb = v;
            continue;
        }
        if (v->type != JSON_STRING)
            return row_fail(err, errlen, line, "\"%s\" must be a string or null",
                            field_names[f]);
        if (strlen(v->string) != v->len)
            return row_fail(err, errlen, line, "NUL byte in \"%s\"", field_names[f]);
        val[f] = v->string;
    }
    st = finish_row(m, val, line, row, err, errlen);
    if (st != MANIFEST_ROW)
        return st;
    row->has_embedding = 0;
    if (m->mode == MANIFEST_DESCRIPTORS) {
        if (!emb)
            return row_fail(err, errlen, line, "missing \"embedding\"");
        if (!parse_embedding_json(emb, row->embedding, why, sizeof(why)))
            return row_fail(err, errlen, line, "%s", why);
        row->has_embedding = 1;
    }
    return MANIFEST_ROW;
}

/* ------------------------------------------------------------------ */
/* Opening                                                             */
/* ------------------------------------------------------------------ */

void manifest_options_init(manifest_options *opt)
{
    memset(opt, 0, sizeof(*opt));
    opt->mode = MANIFEST_PHOTOS;
    opt->format = MANIFEST_AUTO;
}

static int format_from_name(const char *name)
{
    const char *dot, *slash;

    if (!name)
        return MANIFEST_AUTO;
    dot = strrchr(name, '.');
    slash = strrchr(name, '/');
    if (!dot || (slash && dot < slash))
        return MANIFEST_AUTO;
    if (ieq(dot, ".csv"))
        return MANIFEST_CSV;
    if (ieq(dot, ".jsonl") || ieq(dot, ".ndjson"))
        return MANIFEST_JSONL;
    return MANIFEST_AUTO;
}

/*
 * Skip a byte order mark and blank lines; *first receives the first byte
 * that is not white space (looked at, not consumed), or -1 if there is none.
 */
static void sniff(manifest *m, int *first)
{
    size_t off = 0;

    *first = -1;
    if (have(m, 2) && memcmp(m->data + m->pos, "\xEF\xBB\xBF", 3) == 0)
        m->pos += 3;
    m->mark = m->pos;
    for (;;) {
        uint8_t c;
        if (!have(m, off))
            return;
        c = m->data[m->pos + off];
        if (c == '\n') {
            m->pos += off + 1;
            m->mark = m->pos;
            m->line++;
            off = 0;
            continue;
        }
        if (c == ' ' || c == '\t' || c == '\r') {
            if (++off > m->max_record) {
                *first = ' '; /* an over-long blank line: let the parser say so */
                return;
            }
            continue;
        }
        *first = c;
        return;
    }
}

/* Remember the real path of the folder rows must stay in. */
static int confine_to(manifest *m, const char *dir, char *err, size_t errlen)
{
    char real[PATH_MAX];

    if (!realpath(dir, real))
        return lethe_fail(err, errlen, errno == ENOENT ? LETHE_ERR_NOT_FOUND : LETHE_ERR_IO,
                          "the manifest's folder %s: %s", dir, strerror(errno));
    m->base_real = lethe_strdup(real);
    if (!m->base_real)
        return lethe_fail(err, errlen, LETHE_ERR_NOMEM, "out of memory");
    return LETHE_OK;
}

/* Common to every source: options, format, header. Takes m. */
static int manifest_start(manifest *m, const char *name, const manifest_options *opt,
                          manifest **out, char *err, size_t errlen)
{
    manifest_options defaults;
    int first, st, format;

    if (!opt) {
        manifest_options_init(&defaults);
        opt = &defaults;
    }
    m->mode = opt->mode == MANIFEST_DESCRIPTORS || opt->mode == MANIFEST_PROVENANCE
                  ? opt->mode : MANIFEST_PHOTOS;
    m->max_record = opt->max_record ? opt->max_record : MANIFEST_MAX_RECORD;
    m->chunk = opt->io_chunk ? LETHE_MAX(opt->io_chunk, MIN_CHUNK) : DEFAULT_CHUNK;
    if (!lethe_add_size(m->max_record, m->chunk + 16, &m->max_cap)) {
        st = lethe_fail(err, errlen, LETHE_ERR_ARG, "record limit too large");
        goto fail;
    }
    m->line = 1;
    if (opt->base_dir && opt->base_dir[0] && !m->base_dir) {
        m->base_dir = lethe_strdup(opt->base_dir);
        if (!m->base_dir) {
            st = lethe_fail(err, errlen, LETHE_ERR_NOMEM, "out of memory");
            goto fail;
        }
    }
    m->confine = m->mode == MANIFEST_PHOTOS && !opt->allow_outside;
    if (m->confine && (m->base_dir || m->from_file)) {
        st = confine_to(m, m->base_dir ? m->base_dir : ".", err, errlen);
        if (st != LETHE_OK)
            goto fail;
    }
    sniff(m, &first);
    if (m->fatal) {
        st = lethe_fail(err, errlen, m->fatal, "%s: %s", name ? name : "manifest",
                        m->fatal_msg);
        goto fail;
    }
    if (first < 0) {
        st = lethe_fail(err, errlen, LETHE_ERR_FORMAT, "empty manifest");
        goto fail;
    }
    format = opt->format;
    if (format != MANIFEST_CSV && format != MANIFEST_JSONL)
        format = format_from_name(name);
    if (format == MANIFEST_AUTO)
        format = first == '{' ? MANIFEST_JSONL : MANIFEST_CSV;
    m->format = format;
    if (format == MANIFEST_CSV) {
        st = csv_header(m, err, errlen);
        if (st != LETHE_OK)
            goto fail;
    }
    *out = m;
    return LETHE_OK;

fail:
    manifest_close(m);
    return st;
}

int manifest_open_mem(const void *data, size_t len, const manifest_options *opt,
                      manifest **out, char *err, size_t errlen)
{
    manifest *m;

    *out = NULL;
    m = lethe_calloc(1, sizeof(*m));
    if (!m)
        return lethe_fail(err, errlen, LETHE_ERR_NOMEM, "out of memory");
    m->data = data ? data : (const uint8_t *)"";
    m->len = data ? len : 0;
    m->eof = 1;
    return manifest_start(m, NULL, opt, out, err, errlen);
}

static manifest *stream_manifest(FILE *f, int own)
{
    manifest *m = lethe_calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->f = f;
    m->own_f = own;
    m->data = (const uint8_t *)"";
    return m;
}

int manifest_open_stream(FILE *f, const char *name, const manifest_options *opt,
                         manifest **out, char *err, size_t errlen)
{
    manifest *m;

    *out = NULL;
    if (!f)
        return lethe_fail(err, errlen, LETHE_ERR_ARG, "no stream");
    m = stream_manifest(f, 0);
    if (!m)
        return lethe_fail(err, errlen, LETHE_ERR_NOMEM, "out of memory");
    return manifest_start(m, name, opt, out, err, errlen);
}

int manifest_open_ex(const char *file, const manifest_options *opt, manifest **out, char *err,
                     size_t errlen)
{
    FILE *f;
    manifest *m;
    const char *slash;
    int st;

    *out = NULL;
    if (!file)
        return lethe_fail(err, errlen, LETHE_ERR_ARG, "no manifest file");
    /* A FIFO or a device would block or never end: regular files only. */
    st = lethe_fopen_regular(file, &f, NULL, err, errlen);
    if (st != LETHE_OK)
        return st;
    m = stream_manifest(f, 1);
    if (!m) {
        fclose(f);
        return lethe_fail(err, errlen, LETHE_ERR_NOMEM, "out of memory");
    }
    m->from_file = 1;
    slash = strrchr(file, '/');
    if ((!opt || !opt->base_dir) && slash) {
        size_t n = slash == file ? 1 : (size_t)(slash - file);
        m->base_dir = lethe_malloc(n + 1);
        if (!m->base_dir) {
            manifest_close(m);
            return lethe_fail(err, errlen, LETHE_ERR_NOMEM, "out of memory");
        }
        memcpy(m->base_dir, file, n);
        m->base_dir[n] = '\0';
    }
    return manifest_start(m, file, opt, out, err, errlen);
}

int manifest_open(const char *file, int mode, manifest **out, char *err, size_t errlen)
{
    manifest_options opt;

    manifest_options_init(&opt);
    opt.mode = mode;
    return manifest_open_ex(file, &opt, out, err, errlen);
}

int manifest_next(manifest *m, manifest_row *row, char *err, size_t errlen)
{
    int st;

    if (err && errlen)
        err[0] = '\0';
    if (!m || !row)
        return MANIFEST_FATAL;
    if (m->fatal) {
        lethe_fail(err, errlen, m->fatal, "%s", m->fatal_msg);
        return MANIFEST_FATAL;
    }
    st = m->format == MANIFEST_JSONL ? jsonl_next(m, row, err, errlen)
                                     : csv_next(m, row, err, errlen);
    if (st == MANIFEST_FATAL)
        lethe_fail(err, errlen, m->fatal ? m->fatal : LETHE_ERR_INTERNAL, "%s",
                   m->fatal ? m->fatal_msg : "manifest reader failed");
    return st;
}

int manifest_format(const manifest *m) { return m ? m->format : MANIFEST_AUTO; }

int manifest_format_for_name(const char *name) { return format_from_name(name); }

int manifest_status(const manifest *m) { return m ? m->fatal : LETHE_ERR_ARG; }

size_t manifest_unknown_columns(const manifest *m, const char *const **names)
{
    if (names)
        *names = m ? (const char *const *)m->unknown : NULL;
    return m ? m->nunknown : 0;
}

void manifest_close(manifest *m)
{
    if (!m)
        return;
    if (m->own_f && m->f)
        fclose(m->f);
    for (size_t i = 0; i < m->nunknown; i++)
        lethe_free(m->unknown[i]);
    lethe_free(m->unknown);
    lethe_free(m->buf);
    lethe_free(m->base_dir);
    lethe_free(m->col_field);
    lethe_free(m->arena);
    lethe_free(m->fld);
    json_free(m->json);
    lethe_free(m->resolved);
    lethe_free(m->base_real);
    lethe_free(m);
}
