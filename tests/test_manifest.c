/*
 * test_manifest.c: the manifest reader: CSV (quoting, CRLF, BOM, multi-line
 * fields, recovery from broken quoting), JSON Lines, descriptor mode, every
 * kind of row error with its line number, over-long lines (and the memory
 * they may cost), format detection, and allocation failures.
 *
 * Most tests compare a transcript of what manifest_next returns, one line
 * per call, and check that reading the same bytes from memory and from a
 * file in small chunks gives the same transcript.
 */
#if defined(__GLIBC__) || defined(__linux__)
#include <malloc.h>
#endif
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "manifest/manifest.h"
#include "test.h"
#include "util/util.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

typedef struct strbuf {
    char *s;
    size_t len, cap;
} strbuf;

static void sb_add(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(strbuf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (b->len + (size_t)n + 1 > b->cap) {
        b->cap = (b->len + (size_t)n + 1) * 2;
        b->s = realloc(b->s, b->cap);
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

static void describe_row(strbuf *b, const manifest_row *r)
{
    sb_add(b, "R%zu %s %s %s", r->line, r->path, r->consent ? consent_name(r->consent) : "-",
           r->jurisdiction[0] ? r->jurisdiction : "-");
    if (r->has_embedding)
        sb_add(b, " emb=%g,%g", (double)r->embedding[0], (double)r->embedding[127]);
    sb_add(b, "\n");
}

/* Everything manifest_next says until the end, or "OPEN: msg" if open fails. */
static char *run_manifest(manifest *m)
{
    strbuf b = {0};
    manifest_row row;
    char err[512];

    sb_add(&b, "%s", "");
    for (int guard = 0; guard < 100000; guard++) {
        int st = manifest_next(m, &row, err, sizeof(err));
        if (st == MANIFEST_ROW) {
            describe_row(&b, &row);
        } else if (st == MANIFEST_BAD_ROW) {
            CHECK(strncmp(err, "line ", 5) == 0);
            sb_add(&b, "E %s\n", err);
        } else if (st == MANIFEST_END) {
            CHECK_EQ_INT(manifest_next(m, &row, err, sizeof(err)), MANIFEST_END);
            break;
        } else {
            sb_add(&b, "FATAL %s\n", err);
            break;
        }
    }
    return b.s;
}

/* The file's bytes in a temporary file, opened for reading. */
static FILE *temp_stream(const char *data, size_t len)
{
    FILE *f = tmpfile();
    if (!f)
        return NULL;
    if (len && fwrite(data, 1, len, f) != len) {
        fclose(f);
        return NULL;
    }
    rewind(f);
    return f;
}

/* The transcript of data read from memory (chunk 0) or a stream in chunks. */
static char *transcript_via(const char *data, size_t len, const manifest_options *base,
                            size_t chunk)
{
    manifest_options opt = *base;
    manifest *m = NULL;
    char err[512], *out;
    int st;
    FILE *f = NULL;

    if (chunk == 0) {
        st = manifest_open_mem(data, len, &opt, &m, err, sizeof(err));
    } else {
        f = temp_stream(data, len);
        CHECK(f != NULL);
        if (!f)
            return strdup("no temp file");
        opt.io_chunk = chunk;
        st = manifest_open_stream(f, NULL, &opt, &m, err, sizeof(err));
    }
    if (st != LETHE_OK) {
        strbuf b = {0};
        CHECK(m == NULL);
        sb_add(&b, "OPEN %s\n", err);
        out = b.s;
    } else {
        out = run_manifest(m);
    }
    manifest_close(m);
    if (f)
        fclose(f);
    return out;
}

/* Check the transcript from memory and from streams in several chunk sizes. */
static void expect_n(const char *data, size_t len, const manifest_options *opt,
                     const char *want, int line)
{
    static const size_t chunks[] = {0, 16, 17, 23, 64, 4096};

    for (size_t i = 0; i < LETHE_ARRAY_LEN(chunks); i++) {
        char *got = transcript_via(data, len, opt, chunks[i]);
        if (strcmp(got, want) != 0) {
            fprintf(stderr,
                    "  FAIL %s:%d (chunk %zu): transcript differs\n--- want:\n%s--- got:\n%s---\n",
                    __FILE__, line, chunks[i], want, got);
            test_cur_failed++;
            free(got);
            return;
        }
        free(got);
    }
}

static manifest_options opts(int mode, size_t max_record)
{
    manifest_options o;
    manifest_options_init(&o);
    o.mode = mode;
    o.max_record = max_record;
    return o;
}

#define EXPECT(text, want)                                                   \
    do {                                                                     \
        manifest_options o_ = opts(MANIFEST_PHOTOS, 0);                      \
        expect_n((text), strlen(text), &o_, (want), __LINE__);               \
    } while (0)
#define EXPECT_OPT(text, opt, want) expect_n((text), strlen(text), (opt), (want), __LINE__)

/* A 128-number embedding as text, each number i * scale + offset. */
static void embedding_text(strbuf *b, const char *sep, double offset)
{
    for (int i = 0; i < 128; i++)
        sb_add(b, "%s%g", i ? sep : "", offset + i * 0.5);
}

/* ------------------------------------------------------------------ */
/* CSV                                                                 */
/* ------------------------------------------------------------------ */

static void test_csv_basic(void)
{
    const char *text =
        "path,photo_id,url,uploader,source,license,jurisdiction,consent,collected_at\n"
        "a.jpg,p1,http://x/1,alice,flickr,CC-BY-4.0,us-il,explicit,2021-03-04\n"
        "/abs/b.jpg,,,,,,,,\n"
        "sub/c.jpg,p3,,bob,,,DE-BY,Public-License,2020-02-29T13:45:59.250+01:00\n";
    manifest_options o = opts(MANIFEST_PHOTOS, 0);
    manifest *m = NULL;
    manifest_row r;
    char err[256];
    const char *const *names;

    o.base_dir = "/photos/"; /* joined, not looked at: */
    o.allow_outside = 1;     /* confinement has its own tests */
    CHECK_EQ_INT(manifest_open_mem(text, strlen(text), &o, &m, err, sizeof(err)), LETHE_OK);
    if (!m)
        return;
    CHECK_EQ_INT(manifest_format(m), MANIFEST_CSV);
    CHECK_EQ_INT(manifest_unknown_columns(m, &names), 0);
    CHECK_EQ_INT(manifest_next(m, &r, err, sizeof(err)), MANIFEST_ROW);
    CHECK_EQ_INT(r.line, 2);
    CHECK(strcmp(r.path, "a.jpg") == 0);
    CHECK(strcmp(r.resolved, "/photos/a.jpg") == 0);
    CHECK(strcmp(r.photo_id, "p1") == 0);
    CHECK(strcmp(r.url, "http://x/1") == 0);
    CHECK(strcmp(r.uploader, "alice") == 0);
    CHECK(strcmp(r.source, "flickr") == 0);
    CHECK(strcmp(r.license, "CC-BY-4.0") == 0);
    CHECK(strcmp(r.jurisdiction, "US-IL") == 0);
    CHECK_EQ_INT(r.consent, CONSENT_EXPLICIT);
    CHECK(strcmp(r.collected_at, "2021-03-04") == 0);
    CHECK_EQ_INT(r.has_embedding, 0);

    CHECK_EQ_INT(manifest_next(m, &r, err, sizeof(err)), MANIFEST_ROW);
    CHECK_EQ_INT(r.line, 3);
    CHECK(strcmp(r.resolved, "/abs/b.jpg") == 0);
    CHECK(strcmp(r.photo_id, "") == 0 && strcmp(r.url, "") == 0 && r.jurisdiction[0] == 0);
    CHECK_EQ_INT(r.consent, 0);
    CHECK(strcmp(r.collected_at, "") == 0);

    CHECK_EQ_INT(manifest_next(m, &r, err, sizeof(err)), MANIFEST_ROW);
    CHECK_EQ_INT(r.line, 4);
    CHECK(strcmp(r.resolved, "/photos/sub/c.jpg") == 0);
    CHECK_EQ_INT(r.consent, CONSENT_PUBLIC_LICENSE);
    CHECK(strcmp(r.jurisdiction, "DE-BY") == 0);
    CHECK(strcmp(r.collected_at, "2020-02-29T13:45:59.250+01:00") == 0);
    CHECK_EQ_INT(manifest_next(m, &r, err, sizeof(err)), MANIFEST_END);
    manifest_close(m);
    manifest_close(NULL);
}

static void test_csv_crlf_bom_blank(void)
{
    EXPECT("\xEF\xBB\xBFpath,consent\r\n"
           "a.jpg,explicit\r\n"
           "\r\n"
           "b.jpg,none\r\n"
           "\n"
           " \t \n"
           "c.jpg,\r\n"
           "  \t\r\n"
           "\t",
           "R2 a.jpg explicit -\nR4 b.jpg none -\nR7 c.jpg - -\n");
    /* a line of spaces longer than the limit is still a line too long */
    {
        manifest_options o = opts(MANIFEST_PHOTOS, 20);
        EXPECT_OPT("path\n                      \nx\n", &o,
                   "E line 2: line longer than 20 bytes\nR3 x - -\n");
    }
    /* blank lines before the header; no final line break; a lone CR at the end */
    EXPECT("\n\r\n  Path , Consent \nx.jpg,explicit", "R4 x.jpg explicit -\n");
    EXPECT("path\nx.jpg\r", "R2 x.jpg - -\n");
    /* a lone CR inside a field is data; a CR before the LF is not */
    EXPECT("path,uploader\na.jpg,b\rc\r\n", "R2 a.jpg - -\n");
}

static void test_csv_quoting(void)
{
    const char *text = "path,uploader,consent\n"
                       "\"a, b.jpg\",\"say \"\"hi\"\"\",explicit\n"
                       "\"multi\n"
                       "line\r\n"
                       "name.jpg\",\"x\",none\n"
                       "\n"
                       "c.jpg,\"\",\"explicit\"\n"
                       "d.jpg,\"\",\"\"\n";
    manifest *m = NULL;
    manifest_row r;
    char err[256];

    EXPECT(text, "R2 a, b.jpg explicit -\n"
                 "R3 multi\nline\r\nname.jpg none -\n"
                 "R7 c.jpg explicit -\n"
                 "R8 d.jpg - -\n");
    CHECK_EQ_INT(manifest_open_mem(text, strlen(text), NULL, &m, err, sizeof(err)), LETHE_OK);
    if (!m)
        return;
    CHECK_EQ_INT(manifest_next(m, &r, err, sizeof(err)), MANIFEST_ROW);
    CHECK(strcmp(r.uploader, "say \"hi\"") == 0);
    manifest_close(m);
}

static void test_csv_unterminated_quote_resumes(void)
{
    /* A stray quote that never closes: one record lost, not the file. */
    EXPECT("path,consent\n"
           "a.jpg,explicit\n"
           "\"b.jpg,explicit\n"
           "c.jpg,explicit\n"
           "d.jpg,none\n",
           "R2 a.jpg explicit -\n"
           "E line 3: unterminated quoted field\n"
           "R4 c.jpg explicit -\n"
           "R5 d.jpg none -\n");
    /* A stray quote that a later quote "closes": same recovery. */
    EXPECT("path,uploader\n"
           "\"x.jpg,Bob\n"
           "y.jpg,Al\n"
           "z.jpg,\"Carl\"\n"
           "w.jpg,Dan\n",
           "E line 2: character after a closing quote\n"
           "R3 y.jpg - -\n"
           "R4 z.jpg - -\n"
           "R5 w.jpg - -\n");
    /* Stray quotes on many lines: each costs only its own record. */
    EXPECT("path\n\"a\n\"b\n\"c\nd\n",
           "E line 2: character after a closing quote\n"
           "E line 3: character after a closing quote\n"
           "E line 4: unterminated quoted field\n"
           "R5 d - -\n");
    /* Unterminated on the last line. */
    EXPECT("path\na\n\"b", "R2 a - -\nE line 3: unterminated quoted field\n");
}

static void test_csv_bad_quoting(void)
{
    EXPECT("path,consent\n"
           "\"a.jpg\"x,explicit\n"
           "b\"c.jpg,explicit\n"
           "\"d.jpg\" ,explicit\n"
           "e.jpg,explicit\n",
           "E line 2: character after a closing quote\n"
           "E line 3: quote inside an unquoted field (quote the whole field and double the "
           "quote: \"a \"\"b\"\"\")\n"
           "E line 4: character after a closing quote\n"
           "R5 e.jpg explicit -\n");
}

static void test_csv_field_count(void)
{
    EXPECT("path,consent,uploader\n"
           "a.jpg,explicit\n"
           "b.jpg,explicit,bob,extra\n"
           "\"multi\nline.jpg\",explicit\n"
           "c.jpg,explicit,carl\n",
           "E line 2: expected 3 fields (as in the header), found 2\n"
           "E line 3: expected 3 fields (as in the header), found 4\n"
           "E line 4: expected 3 fields (as in the header), found 2\n"
           "R6 c.jpg explicit -\n");
}

static void test_csv_row_errors(void)
{
    static const char text[] =
        "path,consent,jurisdiction,collected_at,uploader\n" /* 1 */
        "a.jpg,maybe,,,\n"                                  /* 2 */
        "b.jpg,explicit,UK,,\n"                             /* 3 */
        "c.jpg,explicit,US-ILLINOIS,,\n"                    /* 4 */
        "d.jpg,,,2021-02-29,\n"                             /* 5 */
        "e.jpg,,,2021-13,\n"                                /* 6 */
        ",explicit,,,\n"                                    /* 7 */
        "f.jpg,,,,bad\xC3(\n"                               /* 8 */
        "g.jpg,,,,nul\0here\n"                              /* 9 */
        "h.jpg, explicit ,\tgb ,2024-02-29T23:59:60Z,\n"    /* 10 */
        "i.jpg,,,2024-02-29T24:00,\n"                       /* 11 */
        "j.jpg,,,1999,\n";                                  /* 12 */
    manifest_options o = opts(MANIFEST_PHOTOS, 0);

    expect_n(text, sizeof(text) - 1, &o,
             "E line 2: unknown consent value \"maybe\" (explicit, public-license, none, "
             "withdrawn)\n"
             "E line 3: unknown jurisdiction \"UK\": UK is not an assigned ISO 3166-1 country "
             "code (the United Kingdom is GB)\n"
             "E line 4: unknown jurisdiction \"US-ILLINOIS\": the subdivision after '-' must be "
             "1 to 3 letters or digits\n"
             "E line 5: bad collected_at \"2021-02-29\" (YYYY, YYYY-MM, YYYY-MM-DD or "
             "YYYY-MM-DDTHH:MM[:SS][Z|+HH:MM])\n"
             "E line 6: bad collected_at \"2021-13\" (YYYY, YYYY-MM, YYYY-MM-DD or "
             "YYYY-MM-DDTHH:MM[:SS][Z|+HH:MM])\n"
             "E line 7: empty path\n"
             "E line 8: invalid UTF-8 in uploader\n"
             "E line 9: NUL byte\n"
             "R10 h.jpg explicit GB\n"
             "E line 11: bad collected_at \"2024-02-29T24:00\" (YYYY, YYYY-MM, YYYY-MM-DD or "
             "YYYY-MM-DDTHH:MM[:SS][Z|+HH:MM])\n"
             "R12 j.jpg - -\n",
             __LINE__);
    /* Invalid UTF-8 in an unknown column is named by its number. */
    EXPECT("path,notes\na.jpg,\xFF\n", "E line 2: invalid UTF-8 in column 2\n");
    /* Overlong encodings and surrogates are not UTF-8. */
    EXPECT("path\n\xC0\xAF.jpg\n\xED\xA0\x80.jpg\n\xF4\x90\x80\x80.jpg\n\xE2\x82\xAC.jpg\n",
           "E line 2: invalid UTF-8 in path\n"
           "E line 3: invalid UTF-8 in path\n"
           "E line 4: invalid UTF-8 in path\n"
           "R5 \xE2\x82\xAC.jpg - -\n");
}

static void test_csv_header_errors(void)
{
    manifest_options o = opts(MANIFEST_PHOTOS, 0);

    EXPECT("", "OPEN empty manifest\n");
    EXPECT("\xEF\xBB\xBF\n\r\n  \n", "OPEN empty manifest\n");
    EXPECT("path,Consent,PATH\n",
           "OPEN line 1: duplicate column \"PATH\" (columns 1 and 3)\n");
    EXPECT("\n\nnotes,notes,path\n",
           "OPEN line 3: duplicate column \"notes\" (columns 1 and 2)\n");
    EXPECT("file,consent\na.jpg,explicit\n",
           "OPEN line 1: no \"path\" column (the header names the columns)\n");
    EXPECT("\"path,consent\na.jpg\n", "OPEN bad header row: line 1: unterminated quoted field\n");
    EXPECT("pa\"th\n", "OPEN bad header row: line 1: quote inside an unquoted field (quote the "
                       "whole field and double the quote: \"a \"\"b\"\"\")\n");
    EXPECT("path,\xFF\n", "OPEN line 1: invalid UTF-8 in the name of column 2\n");
    o.max_record = 16;
    EXPECT_OPT("path,consent,uploader\n", &o,
               "OPEN bad header row: line 1: line longer than 16 bytes\n");
    o.mode = MANIFEST_DESCRIPTORS;
    o.max_record = 0;
    EXPECT_OPT("path,consent\n", &o,
               "OPEN line 1: no \"embedding\" column (needed to read descriptors)\n");
}

static void test_csv_unknown_columns(void)
{
    const char *text = "Notes, path ,,extra,embedding\na,b.jpg,c,d,e\n";
    manifest *m = NULL;
    manifest_row r;
    const char *const *names;
    char err[256];

    CHECK_EQ_INT(manifest_open_mem(text, strlen(text), NULL, &m, err, sizeof(err)), LETHE_OK);
    if (!m)
        return;
    CHECK_EQ_INT(manifest_unknown_columns(m, &names), 4);
    CHECK(strcmp(names[0], "Notes") == 0);
    CHECK(strcmp(names[1], "(unnamed column 3)") == 0);
    CHECK(strcmp(names[2], "extra") == 0);
    CHECK(strcmp(names[3], "embedding") == 0); /* not used in photo mode */
    CHECK_EQ_INT(manifest_next(m, &r, err, sizeof(err)), MANIFEST_ROW);
    CHECK(strcmp(r.path, "b.jpg") == 0);
    manifest_close(m);
}

/* ------------------------------------------------------------------ */
/* Long lines                                                          */
/* ------------------------------------------------------------------ */

static void test_record_limit_edges(void)
{
    manifest_options o = opts(MANIFEST_PHOTOS, 20);
    /* "path" + 16-byte record = the limit; 21 bytes is one too many. */
    EXPECT_OPT("path\n"
               "12345678901234567890\n"
               "123456789012345678901\n"
               "12345678901234567890\r\n"
               "\"1234567890\n"
               "1234567890\n"
               "x\n"
               "\"12345678901234567890\n",
               &o,
               "R2 12345678901234567890 - -\n"
               "E line 3: line longer than 20 bytes\n"
               "R4 12345678901234567890 - -\n"
               "E line 5: record longer than 20 bytes (an unterminated quoted field?)\n"
               "R6 1234567890 - -\n"
               "R7 x - -\n"
               "E line 8: line longer than 20 bytes\n");
    EXPECT_OPT("{\"path\":\"12345678\"} \n"
               "{\"path\":\"123456789\"} \n"
               "{\"path\":\"12345678\"} \r\n",
               &o,
               "R1 12345678 - -\n"
               "E line 2: line longer than 20 bytes\n"
               "R3 12345678 - -\n");
}

/* Bytes allocated through malloc right now (not meaningful under ASan). */
static size_t heap_in_use(void)
{
#if defined(__GLIBC__) && !defined(UNDER_ASAN)
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
#else
    return 0;
#endif
}

static void long_line_case(int jsonl)
{
    const size_t big = 10u << 20;
    char *data = malloc(big + 256);
    size_t n = 0, base, peak = 0;
    FILE *f;
    manifest *m = NULL;
    manifest_row r;
    char err[256];
    int st, rows = 0, bad = 0;

    if (!data)
        return;
    if (jsonl) {
        n += (size_t)sprintf(data + n, "{\"path\":\"a.jpg\"}\n{\"path\":\"");
        memset(data + n, 'x', big);
        n += big;
        n += (size_t)sprintf(data + n, "\"}\n{\"path\":\"b.jpg\"}\n");
    } else {
        n += (size_t)sprintf(data + n, "path,consent\na.jpg,explicit\n\"");
        memset(data + n, 'x', big);
        n += big;
        n += (size_t)sprintf(data + n, "\",none\nb.jpg,none\n");
    }
    /* From memory. */
    CHECK_EQ_INT(manifest_open_mem(data, n, NULL, &m, err, sizeof(err)), LETHE_OK);
    while (m && (st = manifest_next(m, &r, err, sizeof(err))) != MANIFEST_END &&
           st != MANIFEST_FATAL) {
        rows += st == MANIFEST_ROW;
        if (st == MANIFEST_BAD_ROW) {
            bad++;
            CHECK(strcmp(err, jsonl ? "line 2: line longer than 1 MiB"
                                    : "line 3: line longer than 1 MiB") == 0);
        }
    }
    manifest_close(m);
    CHECK_EQ_INT(rows, 2);
    CHECK_EQ_INT(bad, 1);

    /* From a file: the buffer stays near 1 MiB whatever the line's length. */
    f = temp_stream(data, n);
    free(data);
    CHECK(f != NULL);
    if (!f)
        return;
    rows = bad = 0;
    base = heap_in_use();
    CHECK_EQ_INT(manifest_open_stream(f, NULL, NULL, &m, err, sizeof(err)), LETHE_OK);
    while (m && (st = manifest_next(m, &r, err, sizeof(err))) != MANIFEST_END &&
           st != MANIFEST_FATAL) {
        size_t now = heap_in_use();
        peak = LETHE_MAX(peak, now);
        rows += st == MANIFEST_ROW;
        bad += st == MANIFEST_BAD_ROW;
        if (st == MANIFEST_ROW)
            CHECK_EQ_INT(r.line, rows == 1 ? (jsonl ? 1 : 2) : (jsonl ? 3 : 4));
    }
    manifest_close(m);
    fclose(f);
    CHECK_EQ_INT(rows, 2);
    CHECK_EQ_INT(bad, 1);
    if (base) {
        size_t used = peak - base;
        if (used > (3u << 20))
            fprintf(stderr, "  heap grew by %zu bytes reading a 10 MB line\n", used);
        CHECK(used <= (3u << 20));
    }
}

static void test_ten_megabyte_line(void)
{
    long_line_case(0);
    long_line_case(1);
}

/* ------------------------------------------------------------------ */
/* JSON Lines                                                          */
/* ------------------------------------------------------------------ */

static void test_jsonl_basic(void)
{
    const char *text =
        "\xEF\xBB\xBF{\"path\": \"a.jpg\", \"consent\": \"explicit\", \"jurisdiction\": \"gb\","
        " \"uploader\": \"al\\u00e9\", \"collected_at\": \"2020-01-02T03:04Z\"}\r\n"
        "\n"
        "   \t\r\n"
        "{\"path\": \"b.jpg\", \"consent\": null, \"url\": null, \"extra\": {\"deep\": [1, 2, "
        "{\"x\": null}]}, \"n\": 5, \"flag\": true}\n"
        "{\"path\": \"c.jpg\", \"photo_id\": \"42\", \"source\": \"s\", \"license\": \"l\", "
        "\"url\": \"u\", \"embedding\": [1]}";
    manifest *m = NULL;
    manifest_row r;
    char err[256];
    const char *const *names;

    EXPECT(text, "R1 a.jpg explicit GB\nR4 b.jpg - -\nR5 c.jpg - -\n");
    CHECK_EQ_INT(manifest_open_mem(text, strlen(text), NULL, &m, err, sizeof(err)), LETHE_OK);
    if (!m)
        return;
    CHECK_EQ_INT(manifest_format(m), MANIFEST_JSONL);
    CHECK_EQ_INT(manifest_next(m, &r, err, sizeof(err)), MANIFEST_ROW);
    CHECK(strcmp(r.uploader, "al\xC3\xA9") == 0);
    CHECK(strcmp(r.collected_at, "2020-01-02T03:04Z") == 0);
    CHECK(strcmp(r.resolved, "a.jpg") == 0);
    CHECK_EQ_INT(manifest_next(m, &r, err, sizeof(err)), MANIFEST_ROW);
    CHECK(strcmp(r.url, "") == 0);
    CHECK_EQ_INT(r.consent, 0);
    CHECK_EQ_INT(manifest_next(m, &r, err, sizeof(err)), MANIFEST_ROW);
    CHECK(strcmp(r.photo_id, "42") == 0 && strcmp(r.source, "s") == 0 &&
          strcmp(r.license, "l") == 0 && strcmp(r.url, "u") == 0);
    CHECK_EQ_INT(r.has_embedding, 0);
    CHECK_EQ_INT(manifest_unknown_columns(m, &names), 4);
    CHECK(strcmp(names[0], "extra") == 0 && strcmp(names[1], "n") == 0 &&
          strcmp(names[2], "flag") == 0 && strcmp(names[3], "embedding") == 0);
    CHECK_EQ_INT(manifest_next(m, &r, err, sizeof(err)), MANIFEST_END);
    manifest_close(m);
}

static void test_jsonl_row_errors(void)
{
    static const char text[] =
        "{\"path\": \"a.jpg\", \"consent\": \"explicit\"}\n"  /* 1 */
        "{\"path\": \"b.jpg\", \"consent\": 1}\n"             /* 2 */
        "{\"path\": \"c.jpg\", \"consent\": \"maybe\"}\n"     /* 3 */
        "{\"path\": \"d.jpg\"\n"                              /* 4 */
        "[\"e.jpg\"]\n"                                       /* 5 */
        "{\"consent\": \"explicit\"}\n"                       /* 6 */
        "{\"path\": \"\"}\n"                                  /* 7 */
        "{\"path\": null}\n"                                  /* 8 */
        "{\"path\": \"f.jpg\", \"path\": \"g.jpg\"}\n"        /* 9 */
        "{\"path\": \"h\\u0000.jpg\"}\n"                      /* 10 */
        "{\"path\": \"i\xFF.jpg\"}\n"                         /* 11 */
        "{\"path\": \"j.jpg\"}\0\n"                           /* 12 */
        "{\"path\": \"k.jpg\", \"jurisdiction\": \"ZZ\"}\n"   /* 13 */
        "{\"path\": \"l.jpg\", \"collected_at\": \"2021-04-31\"}\n" /* 14 */
        "{\"path\": [\"m.jpg\"]}\n"                           /* 15 */
        "{\"path\": \"n.jpg\", \"uploader\": false}\n"        /* 16 */
        "{\"path\": \"o.jpg\"} x\n"                           /* 17 */
        "{\"path\": \"p.jpg\", \"consent\": \"WITHDRAWN\"}\n"; /* 18 */
    manifest_options o = opts(MANIFEST_PHOTOS, 0);

    expect_n(text, sizeof(text) - 1, &o,
             "R1 a.jpg explicit -\n"
             "E line 2: \"consent\" must be a string or null\n"
             "E line 3: unknown consent value \"maybe\" (explicit, public-license, none, "
             "withdrawn)\n"
             "E line 4: invalid JSON: expected ',' or '}' at column 17\n"
             "E line 5: not a JSON object\n"
             "E line 6: missing \"path\"\n"
             "E line 7: empty path\n"
             "E line 8: missing \"path\"\n"
             "E line 9: duplicate key \"path\"\n"
             "E line 10: NUL byte in \"path\"\n"
             "E line 11: invalid UTF-8 (byte 12)\n"
             "E line 12: NUL byte\n"
             "E line 13: unknown jurisdiction \"ZZ\": ZZ is not an assigned ISO 3166-1 country "
             "code\n"
             "E line 14: bad collected_at \"2021-04-31\" (YYYY, YYYY-MM, YYYY-MM-DD or "
             "YYYY-MM-DDTHH:MM[:SS][Z|+HH:MM])\n"
             "E line 15: \"path\" must be a string or null\n"
             "E line 16: \"uploader\" must be a string or null\n"
             "E line 17: invalid JSON: trailing characters after the value at column 19\n"
             "R18 p.jpg withdrawn -\n",
             __LINE__);
}

static void test_jsonl_value_bound(void)
{
    strbuf b = {0};
    manifest_options o = opts(MANIFEST_PHOTOS, 0);

    sb_add(&b, "{\"path\": \"a.jpg\", \"junk\": [0");
    for (int i = 0; i < MANIFEST_MAX_JSON_VALUES; i++)
        sb_add(&b, ",0");
    sb_add(&b, "]}\n{\"path\": \"b.jpg\", \"deep\": ");
    for (int i = 0; i < 100; i++)
        sb_add(&b, "[");
    for (int i = 0; i < 100; i++)
        sb_add(&b, "]");
    sb_add(&b, "}\n{\"path\": \"c.jpg\"}\n");
    expect_n(b.s, b.len, &o,
             "E line 1: more than 65536 JSON values on the line\n"
             "E line 2: invalid JSON: nesting too deep at column 91\n"
             "R3 c.jpg - -\n",
             __LINE__);
    free(b.s);
}

/* ------------------------------------------------------------------ */
/* Descriptor mode                                                     */
/* ------------------------------------------------------------------ */

static void test_descriptors_jsonl(void)
{
    strbuf b = {0};
    manifest_options o = opts(MANIFEST_DESCRIPTORS, 0);
    manifest *m = NULL;
    manifest_row r;
    char err[256];

    sb_add(&b, "{\"photo_id\": \"x1\", \"consent\": \"explicit\", \"embedding\": [");
    embedding_text(&b, ", ", -1.0);
    sb_add(&b, "]}\n");
    sb_add(&b, "{\"photo_id\": \"x2\", \"embedding\": [1, 2]}\n");
    sb_add(&b, "{\"photo_id\": \"x3\"}\n");
    sb_add(&b, "{\"photo_id\": \"x4\", \"embedding\": null}\n");
    sb_add(&b, "{\"photo_id\": \"x5\", \"embedding\": \"1 2 3\"}\n");
    sb_add(&b, "{\"photo_id\": \"x6\", \"embedding\": [");
    embedding_text(&b, ",", 0);
    sb_add(&b, ",1e39]}\n");
    sb_add(&b, "{\"path\": \"p7.jpg\", \"embedding\": [1e39");
    for (int i = 1; i < 128; i++)
        sb_add(&b, ",0");
    sb_add(&b, "]}\n{\"path\": \"p8.jpg\", \"embedding\": [\"1\"");
    for (int i = 1; i < 128; i++)
        sb_add(&b, ",0");
    sb_add(&b, "]}\n{\"path\": \"p9.jpg\", \"embedding\": [");
    embedding_text(&b, ",", 2.0);
    sb_add(&b, "]}\n");
    expect_n(b.s, b.len, &o,
             "R1  explicit - emb=-1,62.5\n"
             "E line 2: \"embedding\": expected 128 numbers, found 2\n"
             "E line 3: missing \"embedding\"\n"
             "E line 4: missing \"embedding\"\n"
             "E line 5: \"embedding\" must be an array of 128 numbers\n"
             "E line 6: \"embedding\": expected 128 numbers, found 129\n"
             "E line 7: \"embedding\": item 1 is not a finite 32-bit float\n"
             "E line 8: \"embedding\": item 1 is not a number\n"
             "R9 p9.jpg - - emb=2,65.5\n",
             __LINE__);
    CHECK_EQ_INT(manifest_open_mem(b.s, b.len, &o, &m, err, sizeof(err)), LETHE_OK);
    if (m) {
        const char *const *names;
        CHECK_EQ_INT(manifest_next(m, &r, err, sizeof(err)), MANIFEST_ROW);
        CHECK_EQ_INT(r.has_embedding, 1);
        for (int i = 0; i < 128; i++)
            CHECK_NEAR(r.embedding[i], -1.0 + i * 0.5, 0);
        CHECK(strcmp(r.photo_id, "x1") == 0);
        CHECK(strcmp(r.path, "") == 0 && strcmp(r.resolved, "") == 0);
        CHECK_EQ_INT(manifest_unknown_columns(m, &names), 0);
        manifest_close(m);
    }
    free(b.s);
}

static void test_descriptors_csv(void)
{
    strbuf b = {0};
    manifest_options o = opts(MANIFEST_DESCRIPTORS, 0);

    sb_add(&b, "photo_id,embedding,consent\n");
    sb_add(&b, "a,\"");
    embedding_text(&b, ", ", 1.0);
    sb_add(&b, "\",explicit\n");
    sb_add(&b, "b,\"  [");
    embedding_text(&b, " \t", 3.0);
    sb_add(&b, "]  \",\n");
    sb_add(&b, "c,\"");
    embedding_text(&b, "\n", 4.0); /* a multi-line field */
    sb_add(&b, "\",\n");
    sb_add(&b, "d,1 2 3,\n");
    sb_add(&b, "e,\"[1 2\",\n");
    sb_add(&b, "f,\"1,,2\",\n");
    sb_add(&b, "g,\"1,\",\n");
    sb_add(&b, "h,0x10,\n");
    sb_add(&b, "i,nan,\n");
    sb_add(&b, "j,\"");
    embedding_text(&b, " ", 0);
    sb_add(&b, " 1e39\",\n");
    sb_add(&b, "k,,\n");
    sb_add(&b, "l,\"1 2\"\"\",\n");
    expect_n(b.s, b.len, &o,
             "R2  explicit - emb=1,64.5\n"
             "R3  - - emb=3,66.5\n"
             "R4  - - emb=4,67.5\n"
             "E line 132: embedding: expected 128 numbers, found 3\n"
             "E line 133: embedding: '[' without a closing ']'\n"
             "E line 134: embedding: number 2 is not a number\n"
             "E line 135: embedding: a number is missing after the last comma\n"
             "E line 136: embedding: number 1 is not a number\n"
             "E line 137: embedding: number 1 is not a number\n"
             "E line 138: embedding: number 129 is not a finite 32-bit float\n"
             "E line 139: embedding: expected 128 numbers, found 0\n"
             "E line 140: embedding: number 2 is not a number\n",
             __LINE__);
    free(b.s);
}

/* ------------------------------------------------------------------ */
/* Files, detection, timestamps, allocation failures                   */
/* ------------------------------------------------------------------ */

static char tmp_dir[64];

static void write_file(const char *name, const char *text, char *path, size_t n)
{
    FILE *f;
    snprintf(path, n, "%s/%s", tmp_dir, name);
    f = fopen(path, "wb");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void test_files_and_detection(void)
{
    char path[256], err[512], cwd[4096];
    manifest *m = NULL;
    manifest_row r;
    manifest_options o;

    snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/lethe-manifest-XXXXXX");
    if (!mkdtemp(tmp_dir)) {
        CHECK(0);
        return;
    }
    /* by content: JSON Lines */
    write_file("list.txt", "  \n {\"path\": \"x.jpg\"}\n", path, sizeof(path));
    CHECK_EQ_INT(manifest_open(path, MANIFEST_PHOTOS, &m, err, sizeof(err)), LETHE_OK);
    CHECK_EQ_INT(manifest_format(m), MANIFEST_JSONL);
    CHECK_EQ_INT(manifest_next(m, &r, err, sizeof(err)), MANIFEST_ROW);
    CHECK_EQ_INT(r.line, 2);
    {
        char want[256];
        snprintf(want, sizeof(want), "%s/x.jpg", tmp_dir);
        CHECK(strcmp(r.resolved, want) == 0);
    }
    manifest_close(m);
    remove(path);
    /* by content: CSV */
    write_file("list", "path\n/a/x.jpg\n", path, sizeof(path));
    manifest_options_init(&o);
    o.allow_outside = 1; /* an absolute path, kept as written */
    CHECK_EQ_INT(manifest_open_ex(path, &o, &m, err, sizeof(err)), LETHE_OK);
    CHECK_EQ_INT(manifest_format(m), MANIFEST_CSV);
    CHECK_EQ_INT(manifest_next(m, &r, err, sizeof(err)), MANIFEST_ROW);
    CHECK(strcmp(r.resolved, "/a/x.jpg") == 0);
    manifest_close(m);
    remove(path);
    /* the extension wins over content */
    write_file("list.CSV", "{\"path\"}\nx\n", path, sizeof(path));
    CHECK_EQ_INT(manifest_open(path, MANIFEST_PHOTOS, &m, err, sizeof(err)), LETHE_ERR_FORMAT);
    CHECK(m == NULL);
    CHECK(strstr(err, "quote") != NULL);
    remove(path);
    write_file("list.ndjson", "path\nx.jpg\n", path, sizeof(path));
    CHECK_EQ_INT(manifest_open(path, MANIFEST_PHOTOS, &m, err, sizeof(err)), LETHE_OK);
    CHECK_EQ_INT(manifest_format(m), MANIFEST_JSONL);
    CHECK_EQ_INT(manifest_next(m, &r, err, sizeof(err)), MANIFEST_BAD_ROW);
    manifest_close(m);
    remove(path);
    write_file("list.jsonl", "", path, sizeof(path));
    CHECK_EQ_INT(manifest_open(path, MANIFEST_PHOTOS, &m, err, sizeof(err)), LETHE_ERR_FORMAT);
    CHECK(strcmp(err, "empty manifest") == 0);
    remove(path);
    /* an explicit format and base folder */
    write_file("m.dat", "path\nx.jpg\n", path, sizeof(path));
    manifest_options_init(&o);
    o.format = MANIFEST_CSV;
    o.base_dir = "/base";
    o.allow_outside = 1; /* /base does not exist: nothing to confine to */
    CHECK_EQ_INT(manifest_open_ex(path, &o, &m, err, sizeof(err)), LETHE_OK);
    CHECK_EQ_INT(manifest_next(m, &r, err, sizeof(err)), MANIFEST_ROW);
    CHECK(strcmp(r.resolved, "/base/x.jpg") == 0);
    manifest_close(m);
    remove(path);
    /* a manifest in the current folder: paths as written */
    if (getcwd(cwd, sizeof(cwd)) && chdir(tmp_dir) == 0) {
        write_file("here.csv", "path\nx.jpg\n", path, sizeof(path));
        CHECK_EQ_INT(manifest_open("here.csv", MANIFEST_PHOTOS, &m, err, sizeof(err)), LETHE_OK);
        CHECK_EQ_INT(manifest_next(m, &r, err, sizeof(err)), MANIFEST_ROW);
        CHECK(strcmp(r.resolved, "x.jpg") == 0);
        manifest_close(m);
        remove(path);
        CHECK(chdir(cwd) == 0);
    }
    /* cannot open */
    snprintf(path, sizeof(path), "%s/missing.csv", tmp_dir);
    CHECK_EQ_INT(manifest_open(path, MANIFEST_PHOTOS, &m, err, sizeof(err)),
                 LETHE_ERR_NOT_FOUND);
    CHECK(strstr(err, "missing.csv") != NULL);
    CHECK_EQ_INT(manifest_open(tmp_dir, MANIFEST_PHOTOS, &m, err, sizeof(err)), LETHE_ERR_IO);
    CHECK(strstr(err, "directory") != NULL);
    CHECK_EQ_INT(manifest_open(NULL, MANIFEST_PHOTOS, &m, err, sizeof(err)), LETHE_ERR_ARG);
    CHECK(rmdir(tmp_dir) == 0);
}

static void test_timestamps(void)
{
    static const char *const good[] = {
        "2021", "2021-01", "2021-12-31", "2020-02-29", "2000-02-29", "2021-06-30T00:00",
        "2021-06-30T23:59:59", "2021-06-30T23:59:60Z", "2021-06-30T12:00:00.123456Z",
        "2021-06-30T12:00+05:30", "2021-06-30T12:00:00-08:00", "0001-01-01",
    };
    static const char *const bad[] = {
        "", "21", "20211", "2021-1", "2021-00", "2021-13", "2021-02-29", "1900-02-29",
        "2021-04-31", "2021-01-00", "2021-01-32", "2021-01-01T", "2021-01-01T24:00",
        "2021-01-01T12:60", "2021-01-01T12", "2021-01-01T12:00:61", "2021-01-01T12:00:00.",
        "2021-01-01T12:00Z ", "2021-01-01T12:00+5:00", "2021-01-01T12:00+05", "2021-01-01 12:00",
        "2021-01-01t12:00", "2021/01/01", "-2021", "2021-01-01T12:00:00+24:00", "2021-01-01Z",
    };
    for (size_t i = 0; i < LETHE_ARRAY_LEN(good); i++) {
        if (!manifest_valid_timestamp(good[i]))
            fprintf(stderr, "  rejected %s\n", good[i]);
        CHECK(manifest_valid_timestamp(good[i]));
    }
    for (size_t i = 0; i < LETHE_ARRAY_LEN(bad); i++) {
        if (manifest_valid_timestamp(bad[i]))
            fprintf(stderr, "  accepted %s\n", bad[i]);
        CHECK(!manifest_valid_timestamp(bad[i]));
    }
}

/* Every allocation failure ends in MANIFEST_FATAL or an open error with
 * LETHE_ERR_NOMEM, never a crash or leak. */
static void alloc_sweep(const char *text, int mode, int via_stream)
{
    int complete = 0;

    for (long k = 0; k < 1000 && !complete; k++) {
        manifest_options o = opts(mode, 64);
        manifest *m = NULL;
        manifest_row r;
        char err[256];
        FILE *f = via_stream ? temp_stream(text, strlen(text)) : NULL;
        int st;

        o.io_chunk = 16;
        lethe_alloc_fail_after(k);
        st = via_stream ? manifest_open_stream(f, NULL, &o, &m, err, sizeof(err))
                        : manifest_open_mem(text, strlen(text), &o, &m, err, sizeof(err));
        if (st != LETHE_OK) {
            CHECK_EQ_INT(st, LETHE_ERR_NOMEM);
            CHECK(m == NULL);
        } else {
            int rows = 0;
            while ((st = manifest_next(m, &r, err, sizeof(err))) != MANIFEST_END &&
                   st != MANIFEST_FATAL)
                rows += st == MANIFEST_ROW;
            if (st == MANIFEST_FATAL) {
                CHECK(strstr(err, "out of memory") != NULL);
                CHECK_EQ_INT(manifest_next(m, &r, err, sizeof(err)), MANIFEST_FATAL);
            } else {
                complete = rows == 3;
            }
        }
        lethe_alloc_fail_after(-1);
        manifest_close(m);
        if (f)
            fclose(f);
    }
    CHECK(complete);
}

static void test_alloc_failures(void)
{
    const char *csv = "path,notes,,consent\n"
                      "a.jpg,n,,explicit\n"
                      "\"b\nb.jpg\",\"x\"\"y\",,none\n"
                      "bad\n"
                      "c.jpg,,,\n";
    const char *jsonl = "{\"path\": \"a.jpg\", \"x\": 1}\n"
                        "{\"path\": \"b.jpg\", \"y\": [1, {}]}\n"
                        "nonsense\n"
                        "{\"path\": \"c.jpg\", \"z\": null}\n";
    alloc_sweep(csv, MANIFEST_PHOTOS, 0);
    alloc_sweep(csv, MANIFEST_PHOTOS, 1);
    alloc_sweep(jsonl, MANIFEST_PHOTOS, 0);
    alloc_sweep(jsonl, MANIFEST_PHOTOS, 1);
}

int main(void)
{
    RUN(test_csv_basic);
    RUN(test_csv_crlf_bom_blank);
    RUN(test_csv_quoting);
    RUN(test_csv_unterminated_quote_resumes);
    RUN(test_csv_bad_quoting);
    RUN(test_csv_field_count);
    RUN(test_csv_row_errors);
    RUN(test_csv_header_errors);
    RUN(test_csv_unknown_columns);
    RUN(test_record_limit_edges);
    RUN(test_ten_megabyte_line);
    RUN(test_jsonl_basic);
    RUN(test_jsonl_row_errors);
    RUN(test_jsonl_value_bound);
    RUN(test_descriptors_jsonl);
    RUN(test_descriptors_csv);
    RUN(test_files_and_detection);
    RUN(test_timestamps);
    RUN(test_alloc_failures);
    return test_summary();
}
