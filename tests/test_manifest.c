/*
 * test_manifest.c: the manifest reader: CSV (quoting, CRLF, BOM, multi-line
 * fields, recovery from broken quoting), JSON Lines, descriptor mode, every
 * kind of row error with its line number, over-long lines (and the memory
 * they may cost), format detection, and allocation failures.
 *
 * Then the public API (lethe.h): files that are not regular files (FIFOs,
 * devices, sockets, folders: refused, never waited on, with an alarm() as
 * the guard), rows confined to the manifest's folder (`..`, absolute
 * paths, symbolic links leading out), manifests from memory, raw float32
 * descriptors with a sidecar, search queries, and allocation failures in
 * each new call.
 *
 * Most tests compare a transcript of what manifest_next returns, one line
 * per call, and check that reading the same bytes from memory and from a
 * file in small chunks gives the same transcript.
 */
#if defined(__GLIBC__) || defined(__linux__)
#include <malloc.h>
#endif
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "index/index.h"
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

/* ------------------------------------------------------------------ */
/* The public API: files that are not regular files                    */
/* ------------------------------------------------------------------ */

/* A regression that blocks on a FIFO must fail the test, not hang it. */
static void on_alarm(int sig)
{
    static const char text[] = "  FAIL test_manifest: blocked (on a FIFO?) for 20 s\n";
    (void)sig;
    if (write(STDERR_FILENO, text, sizeof(text) - 1) < 0)
        _exit(3);
    _exit(2);
}

static void guard_start(void)
{
    signal(SIGALRM, on_alarm);
    alarm(20);
}

static void guard_end(void) { alarm(0); }

/* A scratch folder for the public-API tests (removed at exit). */
static char api_dir[64];

static void api_cleanup(void)
{
    char cmd[128];
    if (!api_dir[0])
        return;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", api_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "  (could not remove %s)\n", api_dir);
}

/* api_dir/name, made. */
static const char *api_path(const char *name)
{
    static char buf[32][512]; /* rotating: copy what must live long */
    static int next;
    char *p = buf[next++ % 32];
    if (!api_dir[0]) {
        snprintf(api_dir, sizeof(api_dir), "/tmp/lethe-manifest-api-XXXXXX");
        if (!mkdtemp(api_dir)) {
            api_dir[0] = '\0';
            return "/nonexistent";
        }
        atexit(api_cleanup);
    }
    snprintf(p, 512, "%s/%s", api_dir, name);
    return p;
}

static void put_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f)
        return;
    CHECK(fwrite(data, 1, len, f) == len);
    fclose(f);
}

static void put_text(const char *path, const char *text) { put_file(path, text, strlen(text)); }

static void test_read_file_refuses_special_files(void)
{
    const char *fifo = api_path("pipe.jpg"), *file = api_path("plain.bin");
    const char *sock_path = api_path("socket.jpg");
    uint8_t *data = NULL;
    size_t len = 7;
    char msg[512];
    struct sockaddr_un sa;
    int sock;

    CHECK(mkfifo(fifo, 0600) == 0);
    put_text(file, "abc");
    guard_start();
    CHECK_EQ_INT(lethe_read_file(fifo, 1000, &data, &len, msg, sizeof(msg)), LETHE_ERR_IO);
    CHECK(data == NULL && len == 0);
    CHECK(strstr(msg, "is a FIFO (named pipe), not a regular file") != NULL);
    CHECK(strncmp(msg, fifo, strlen(fifo)) == 0);
    {
        lethe_image *img = NULL;
        CHECK_EQ_INT(lethe_image_load(fifo, NULL, &img, msg, sizeof(msg)), LETHE_ERR_IO);
        CHECK(img == NULL && strstr(msg, "FIFO") != NULL);
    }
    {
        int fd = 5;
        CHECK_EQ_INT(lethe_open_regular(fifo, &fd, NULL, msg, sizeof(msg)), LETHE_ERR_IO);
        CHECK_EQ_INT(fd, -1);
    }
    {
        /* The store's index file replaced by a FIFO: refused, not waited on. */
        idx *ix = NULL;
        CHECK(idx_open(fifo, IDX_READ, &ix, msg, sizeof(msg)) != LETHE_OK);
        CHECK(ix == NULL);
    }
    guard_end();
    CHECK_EQ_INT(lethe_read_file(api_dir, 1000, &data, &len, msg, sizeof(msg)), LETHE_ERR_IO);
    CHECK(strstr(msg, "is a directory, not a regular file") != NULL);
    {
        /* A character device (some test elsewhere may have broken one). */
        static const char *const devs[] = {"/dev/zero", "/dev/null", "/dev/urandom"};
        const char *dev = NULL;
        struct stat sb;
        for (size_t i = 0; i < LETHE_ARRAY_LEN(devs) && !dev; i++)
            if (stat(devs[i], &sb) == 0 && S_ISCHR(sb.st_mode))
                dev = devs[i];
        CHECK(dev != NULL);
        if (dev) {
            CHECK_EQ_INT(lethe_read_file(dev, 1000, &data, &len, msg, sizeof(msg)),
                         LETHE_ERR_IO);
            CHECK(strstr(msg, "is a character device, not a regular file") != NULL);
        }
    }
    sock = socket(AF_UNIX, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
    if (sock >= 0 && bind(sock, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        CHECK_EQ_INT(lethe_read_file(sock_path, 1000, &data, &len, msg, sizeof(msg)),
                     LETHE_ERR_IO);
        CHECK(strstr(msg, "is a socket, not a regular file") != NULL);
    } else {
        CHECK(0); /* a socket file could not be made */
    }
    if (sock >= 0)
        close(sock);
    CHECK_EQ_INT(lethe_read_file(api_path("absent"), 1000, &data, &len, msg, sizeof(msg)),
                 LETHE_ERR_NOT_FOUND);
    CHECK_EQ_INT(lethe_read_file(file, 2, &data, &len, msg, sizeof(msg)), LETHE_ERR_TOO_LARGE);
    CHECK_EQ_INT(lethe_read_file(file, 3, &data, &len, msg, sizeof(msg)), LETHE_OK);
    CHECK(len == 3 && data && memcmp(data, "abc", 4) == 0); /* NUL-terminated */
    lethe_free(data);
    CHECK(strcmp(lethe_file_kind(S_IFBLK), "a block device") == 0);
}

/* What lethe_manifest_next says until the end: "R line file [emb0]" per
 * row, "E msg" per bad row, "F msg" when reading fails. */
static char *api_transcript(lethe_manifest *m)
{
    strbuf b = {0};
    lethe_manifest_row r;
    char msg[512];

    sb_add(&b, "%s", "");
    for (int guard = 0; guard < 10000; guard++) {
        int st = lethe_manifest_next(m, &r, msg, sizeof(msg));
        if (st == 1) {
            sb_add(&b, "R%zu %s %s %s", r.line, r.file, r.prov.uploader, r.prov.consent);
            if (r.embedding)
                sb_add(&b, " %g", (double)r.embedding[0]);
            sb_add(&b, "\n");
        } else if (st == -1) {
            sb_add(&b, "E %s\n", msg);
        } else if (st == 0) {
            break;
        } else {
            sb_add(&b, "F %s\n", msg);
            break;
        }
    }
    return b.s;
}

static void test_manifest_fifo(void)
{
    const char *fifo = api_path("manifest.csv"), *photo = api_path("photo-pipe.jpg");
    const char *list = api_path("names-a-fifo.csv");
    lethe_manifest *m = NULL;
    lethe_manifest_row r;
    char msg[512];

    CHECK(mkfifo(fifo, 0600) == 0);
    CHECK(mkfifo(photo, 0600) == 0);
    guard_start();
    /* The manifest itself a FIFO: refused at open. */
    CHECK_EQ_INT(lethe_manifest_open(fifo, 0, &m, msg, sizeof(msg)), LETHE_ERR_IO);
    CHECK(m == NULL);
    CHECK(strstr(msg, "manifest.csv is a FIFO (named pipe), not a regular file") != NULL);
    CHECK_EQ_INT(lethe_queries_open(fifo, NULL, msg, sizeof(msg)), LETHE_ERR_ARG);
    {
        lethe_queries *q = NULL;
        CHECK_EQ_INT(lethe_queries_open(fifo, &q, msg, sizeof(msg)), LETHE_ERR_IO);
        CHECK(q == NULL && strstr(msg, "FIFO") != NULL);
    }
    /* A row naming a FIFO: the row is fine (inside the folder); reading the
     * photo, as ingest does, is refused at once. */
    put_text(list, "path,uploader\nphoto-pipe.jpg,u\n");
    CHECK_EQ_INT(lethe_manifest_open(list, 0, &m, msg, sizeof(msg)), LETHE_OK);
    CHECK_EQ_INT(lethe_manifest_next(m, &r, msg, sizeof(msg)), 1);
    CHECK(strcmp(r.file, photo) == 0);
    {
        uint8_t *data = NULL;
        size_t len = 0;
        CHECK_EQ_INT(lethe_read_file(r.file, 1u << 20, &data, &len, msg, sizeof(msg)),
                     LETHE_ERR_IO);
        CHECK(strstr(msg, "FIFO") != NULL);
    }
    lethe_manifest_close(m);
    guard_end();
}

/* The whole way: a manifest row naming a FIFO, through ingest, as the CLI
 * does it (the hang the hostile user found held the store's write lock). */
static int fifo_errors;
static void count_fifo_error(void *ctx, const char *input, size_t line, const char *message)
{
    (void)ctx;
    (void)input;
    if (line == 2 && strstr(message, "FIFO"))
        fifo_errors++;
}

static void test_ingest_of_a_fifo_row(void)
{
    const char *models = test_models_dir();
    char list[512], store_dir[512];
    lethe_engine_options eo;
    lethe_engine *e = NULL;
    lethe_store *s = NULL;
    lethe_ingest *ing = NULL;
    lethe_ingest_options io;
    lethe_ingest_stats st;
    lethe_manifest *m = NULL;
    lethe_manifest_row r;
    char msg[512];

    snprintf(list, sizeof(list), "%s", api_path("names-a-fifo.csv"));
    snprintf(store_dir, sizeof(store_dir), "%s", api_path("store"));
    if (!models)
        SKIP("no models (run scripts/fetch-models.sh)");
    put_text(list, "path,uploader\nphoto-pipe.jpg,u\n");
    if (access(api_path("photo-pipe.jpg"), F_OK) != 0)
        CHECK(mkfifo(api_path("photo-pipe.jpg"), 0600) == 0);
    memset(&st, 0, sizeof(st));
    lethe_engine_options_init(&eo);
    eo.model_dir = models;
    eo.threads = 2;
    CHECK_EQ_INT(lethe_engine_open(&e, &eo), LETHE_OK);
    CHECK_EQ_INT(lethe_store_open(store_dir, LETHE_STORE_CREATE, &s), LETHE_OK);
    lethe_ingest_options_init(&io);
    io.engine = e;
    io.on_error = count_fifo_error;
    CHECK_EQ_INT(lethe_ingest_begin(s, &io, &ing), LETHE_OK);
    CHECK_EQ_INT(lethe_manifest_open(list, 0, &m, msg, sizeof(msg)), LETHE_OK);
    guard_start();
    while (ing && m && lethe_manifest_next(m, &r, msg, sizeof(msg)) == 1)
        CHECK_EQ_INT(lethe_ingest_photo(ing, r.file, &r.prov, r.line), LETHE_OK);
    if (ing)
        CHECK_EQ_INT(lethe_ingest_end(ing, &st), LETHE_OK);
    guard_end();
    CHECK_EQ_INT(fifo_errors, 1);
    CHECK_EQ_INT(st.errors, 1);
    lethe_manifest_close(m);
    lethe_store_close(s);
    lethe_engine_close(e);
}

/* ------------------------------------------------------------------ */
/* The public API: confinement                                         */
/* ------------------------------------------------------------------ */

/*
 * api_dir/c/ holds the manifests and in.jpg, sub/ok.jpg, link-in.jpg (->
 * in.jpg), link-out.jpg (-> ../outside.jpg), up (-> .., a folder outside);
 * api_dir/outside.jpg lies outside.
 */
static void make_confinement_tree(void)
{
    static int made;
    char target[512];
    if (made++)
        return;
    CHECK(mkdir(api_path("c"), 0700) == 0);
    CHECK(mkdir(api_path("c/sub"), 0700) == 0);
    put_text(api_path("c/in.jpg"), "x");
    put_text(api_path("c/sub/ok.jpg"), "x");
    put_text(api_path("outside.jpg"), "secret");
    CHECK(symlink("in.jpg", api_path("c/link-in.jpg")) == 0);
    CHECK(symlink("../outside.jpg", api_path("c/link-out.jpg")) == 0);
    CHECK(symlink("..", api_path("c/up")) == 0);
    snprintf(target, sizeof(target), "%s", api_path("outside.jpg"));
    CHECK(symlink(target, api_path("c/abs-link.jpg")) == 0);
}

#define OUTSIDE(n, p) \
    "E line " #n ": path '" p "' is outside the manifest's folder (--allow-outside permits it)\n"

static void test_confinement_files(void)
{
    static const char rows[] = "path,uploader\n"
                               "in.jpg,a\n"
                               "sub/ok.jpg,b\n"
                               "sub/../in.jpg,c\n"
                               "./sub/./ok.jpg,d\n"
                               "link-in.jpg,e\n"
                               "missing.jpg,f\n"
                               "../outside.jpg,g\n"
                               "sub/../../outside.jpg,h\n"
                               "../c/in.jpg,i\n"
                               "link-out.jpg,j\n"
                               "abs-link.jpg,k\n"
                               "up/outside.jpg,l\n"
                               "up/missing.jpg,m\n"
                               "/etc/passwd,n\n"
                               "\"../\nx\",o\n";
    char want[4096], abs_row[600], c[512], *got;
    lethe_manifest *m = NULL;
    char msg[512];

    make_confinement_tree();
    snprintf(c, sizeof(c), "%s", api_path("c"));
    put_text(api_path("c/m.csv"), rows);
    snprintf(want, sizeof(want),
             "R2 %1$s/in.jpg a \nR3 %1$s/sub/ok.jpg b \nR4 %1$s/sub/../in.jpg c \n"
             "R5 %1$s/./sub/./ok.jpg d \nR6 %1$s/link-in.jpg e \nR7 %1$s/missing.jpg f \n"
             OUTSIDE(8, "../outside.jpg") OUTSIDE(9, "sub/../../outside.jpg")
             OUTSIDE(10, "../c/in.jpg") OUTSIDE(11, "link-out.jpg")
             OUTSIDE(12, "abs-link.jpg") OUTSIDE(13, "up/outside.jpg")
             OUTSIDE(14, "up/missing.jpg") OUTSIDE(15, "/etc/passwd")
             OUTSIDE(16, "../\\x0Ax"),
             c);
    CHECK_EQ_INT(lethe_manifest_open(api_path("c/m.csv"), 0, &m, msg, sizeof(msg)), LETHE_OK);
    got = api_transcript(m);
    if (strcmp(got, want) != 0)
        fprintf(stderr, "  got:\n%s  want:\n%s", got, want);
    CHECK(strcmp(got, want) == 0);
    free(got);
    lethe_manifest_close(m);

    /* An absolute path is outside even when it names a file inside. */
    snprintf(abs_row, sizeof(abs_row), "{\"path\": \"%s/in.jpg\"}\n", c);
    put_text(api_path("c/abs.jsonl"), abs_row);
    CHECK_EQ_INT(lethe_manifest_open(api_path("c/abs.jsonl"), 0, &m, msg, sizeof(msg)),
                 LETHE_OK);
    CHECK_EQ_INT(lethe_manifest_next(m, &(lethe_manifest_row){0}, msg, sizeof(msg)), -1);
    CHECK(strstr(msg, "line 1: path '/") == msg && strstr(msg, "is outside") != NULL);
    lethe_manifest_close(m);

    /* --allow-outside: every row, as written (joined to the folder). */
    CHECK_EQ_INT(lethe_manifest_open(api_path("c/m.csv"), LETHE_MANIFEST_ALLOW_OUTSIDE, &m, msg,
                                     sizeof(msg)),
                 LETHE_OK);
    got = api_transcript(m);
    CHECK(strstr(got, "E ") == NULL);
    CHECK(strstr(got, "R15 /etc/passwd n") != NULL);
    {
        char up[600];
        snprintf(up, sizeof(up), "R8 %s/../outside.jpg g", c);
        CHECK(strstr(got, up) != NULL);
    }
    free(got);
    lethe_manifest_close(m);

    /* Flags it does not know are refused. */
    CHECK_EQ_INT(lethe_manifest_open(api_path("c/m.csv"), 9u, &m, msg, sizeof(msg)), LETHE_ERR_ARG);
    CHECK(m == NULL && strstr(msg, "0x8") != NULL);
}

/* A manifest opened by a relative name: the folder is where it lies. */
static void test_confinement_relative_names(void)
{
    char cwd[4096], msg[512];
    lethe_manifest *m = NULL;
    lethe_manifest_row r;

    make_confinement_tree();
    put_text(api_path("c/rel.csv"), "path\nin.jpg\n../outside.jpg\nc/in.jpg\n");
    if (!getcwd(cwd, sizeof(cwd)) || chdir(api_path("c")) != 0) {
        CHECK(0);
        return;
    }
    CHECK_EQ_INT(lethe_manifest_open("rel.csv", 0, &m, msg, sizeof(msg)), LETHE_OK);
    CHECK_EQ_INT(lethe_manifest_next(m, &r, msg, sizeof(msg)), 1);
    CHECK(strcmp(r.file, "in.jpg") == 0);
    CHECK_EQ_INT(lethe_manifest_next(m, &r, msg, sizeof(msg)), -1);
    CHECK(strstr(msg, "line 3: path '../outside.jpg' is outside") == msg);
    lethe_manifest_close(m);
    CHECK(chdir("..") == 0);
    CHECK_EQ_INT(lethe_manifest_open("c/rel.csv", 0, &m, msg, sizeof(msg)), LETHE_OK);
    CHECK_EQ_INT(lethe_manifest_next(m, &r, msg, sizeof(msg)), 1);
    CHECK(strcmp(r.file, "c/in.jpg") == 0);
    CHECK_EQ_INT(lethe_manifest_next(m, &r, msg, sizeof(msg)), -1);
    CHECK_EQ_INT(lethe_manifest_next(m, &r, msg, sizeof(msg)), 1);
    CHECK(strcmp(r.file, "c/c/in.jpg") == 0); /* missing, inside: ingest says so */
    lethe_manifest_close(m);
    CHECK(chdir(cwd) == 0);
}

/* ------------------------------------------------------------------ */
/* The public API: manifests from memory                               */
/* ------------------------------------------------------------------ */

static void test_manifest_from_memory(void)
{
    static const char csv[] = "path,uploader,consent\n"
                              "photos/a.jpg,u1,explicit\n"
                              "../b.jpg,u2,\n"
                              "/etc/shadow,u3,\n"
                              "in.jpg,u4,maybe\n";
    static const char jsonl[] = "{\"path\": \"photos/a.jpg\", \"uploader\": \"j\"}\n";
    lethe_manifest *m = NULL;
    char msg[512], want[2048], c[512], *got;

    /* No folder: paths come back exactly as written; only the lexical
     * check applies. */
    CHECK_EQ_INT(lethe_manifest_open_mem(csv, sizeof(csv) - 1, "upload.csv", NULL, 0, &m, msg,
                                         sizeof(msg)),
                 LETHE_OK);
    got = api_transcript(m);
    CHECK(strcmp(got, "R2 photos/a.jpg u1 explicit\n" OUTSIDE(3, "../b.jpg")
                          OUTSIDE(4, "/etc/shadow")
                      "E line 5: unknown consent value \"maybe\" (explicit, public-license, "
                      "none, withdrawn)\n") == 0);
    free(got);
    lethe_manifest_close(m);
    CHECK_EQ_INT(lethe_manifest_open_mem(csv, sizeof(csv) - 1, NULL, NULL,
                                         LETHE_MANIFEST_ALLOW_OUTSIDE, &m, msg, sizeof(msg)),
                 LETHE_OK);
    got = api_transcript(m);
    CHECK(strstr(got, "R3 ../b.jpg u2 \nR4 /etc/shadow u3 \n") != NULL);
    free(got);
    lethe_manifest_close(m);

    /* With a folder: resolved and confined as for files. */
    make_confinement_tree();
    snprintf(c, sizeof(c), "%s", api_path("c"));
    {
        static const char rows[] = "path\nin.jpg\nlink-out.jpg\n";
        CHECK_EQ_INT(lethe_manifest_open_mem(rows, sizeof(rows) - 1, NULL, c, 0, &m, msg,
                                             sizeof(msg)),
                     LETHE_OK);
        got = api_transcript(m);
        snprintf(want, sizeof(want), "R2 %s/in.jpg  \n" OUTSIDE(3, "link-out.jpg"), c);
        CHECK(strcmp(got, want) == 0);
        free(got);
        lethe_manifest_close(m);
    }
    CHECK_EQ_INT(lethe_manifest_open_mem(csv, sizeof(csv) - 1, NULL, api_path("no-such-dir"),
                                         0, &m, msg, sizeof(msg)),
                 LETHE_ERR_NOT_FOUND);
    CHECK(m == NULL && strstr(msg, "no-such-dir") != NULL);

    /* The name hint chooses the format; without one, the content does. */
    CHECK_EQ_INT(lethe_manifest_open_mem(jsonl, sizeof(jsonl) - 1, NULL, NULL, 0, &m, msg,
                                         sizeof(msg)),
                 LETHE_OK);
    got = api_transcript(m);
    CHECK(strcmp(got, "R1 photos/a.jpg j \n") == 0);
    free(got);
    lethe_manifest_close(m);
    CHECK_EQ_INT(lethe_manifest_open_mem(jsonl, sizeof(jsonl) - 1, "m.CSV", NULL, 0, &m, msg,
                                         sizeof(msg)),
                 LETHE_ERR_FORMAT); /* read as CSV: a quote inside a field */
    CHECK(m == NULL);
    CHECK_EQ_INT(lethe_manifest_open_mem(csv, sizeof(csv) - 1, "m.ndjson", NULL, 0, &m, msg,
                                         sizeof(msg)),
                 LETHE_OK);
    got = api_transcript(m);
    CHECK(strncmp(got, "E line 1: invalid JSON", 22) == 0);
    free(got);
    lethe_manifest_close(m);
    CHECK_EQ_INT(lethe_manifest_open_mem(NULL, 0, NULL, NULL, 0, &m, msg, sizeof(msg)),
                 LETHE_ERR_FORMAT);
    CHECK(strcmp(msg, "empty manifest") == 0);
    CHECK_EQ_INT(lethe_manifest_open_mem(csv, sizeof(csv) - 1, NULL, NULL, 0, NULL, msg,
                                         sizeof(msg)),
                 LETHE_ERR_ARG);
    /* Descriptors from memory. */
    {
        strbuf b = {0};
        sb_add(&b, "{\"uploader\": \"d\", \"embedding\": [");
        for (int i = 0; i < 128; i++)
            sb_add(&b, "%s%d", i ? "," : "", i + 1);
        sb_add(&b, "]}\n");
        CHECK_EQ_INT(lethe_manifest_open_mem(b.s, b.len, NULL, NULL, LETHE_MANIFEST_DESCRIPTORS,
                                             &m, msg, sizeof(msg)),
                     LETHE_OK);
        got = api_transcript(m);
        CHECK(strcmp(got, "R1  d  1\n") == 0);
        free(got);
        lethe_manifest_close(m);
        free(b.s);
    }
}

/* ------------------------------------------------------------------ */
/* The public API: raw float32 descriptors with a sidecar              */
/* ------------------------------------------------------------------ */

static void put_le_float(uint8_t *p, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    p[0] = (uint8_t)u;
    p[1] = (uint8_t)(u >> 8);
    p[2] = (uint8_t)(u >> 16);
    p[3] = (uint8_t)(u >> 24);
}

/* n descriptors, descriptor i holding i + 1 + k / 1000 at component k. */
static uint8_t *raw_rows(size_t n)
{
    uint8_t *b = calloc(n ? n : 1, 512);
    for (size_t i = 0; b && i < n; i++)
        for (int k = 0; k < 128; k++)
            put_le_float(b + i * 512 + k * 4, (float)(i + 1) + (float)k / 1000.0f);
    return b;
}

static void test_raw_descriptors(void)
{
    static const char side[] = "uploader,consent,jurisdiction\n"
                               "r1,explicit,NL\n"
                               "r2,maybe,NL\n"
                               "r3,none,\n"
                               "r4,explicit,NL\n";
    char f32[512], sc[512];
    uint8_t *rows = raw_rows(4);
    lethe_manifest *m = NULL;
    lethe_manifest_row r;
    char msg[512], *got;

    snprintf(f32, sizeof(f32), "%s", api_path("d.f32"));
    snprintf(sc, sizeof(sc), "%s", api_path("d.csv"));
    put_file(f32, rows, 4 * 512);
    put_text(sc, side);
    CHECK_EQ_INT(lethe_manifest_open_raw(f32, sc, 0, &m, msg, sizeof(msg)), LETHE_OK);
    got = api_transcript(m);
    CHECK(strcmp(got, "R2  r1 explicit 1\n"
                      "E line 3: unknown consent value \"maybe\" (explicit, public-license, "
                      "none, withdrawn)\n"
                      "R4  r3 none 3\n"
                      "R5  r4 explicit 4\n") == 0);
    free(got);
    lethe_manifest_close(m);
    /* Every component, little-endian, and the provenance beside it. */
    CHECK_EQ_INT(lethe_manifest_open_raw(f32, sc, 0, &m, msg, sizeof(msg)), LETHE_OK);
    CHECK_EQ_INT(lethe_manifest_next(m, &r, msg, sizeof(msg)), 1);
    CHECK(r.embedding && strcmp(r.file, "") == 0 && strcmp(r.prov.path, "") == 0);
    for (int k = 0; r.embedding && k < 128; k++)
        CHECK(r.embedding[k] == 1.0f + (float)k / 1000.0f);
    CHECK(strcmp(r.prov.jurisdiction, "NL") == 0);
    lethe_manifest_close(m);

    /* A size that is not a whole number of descriptors. */
    put_file(f32, rows, 700);
    CHECK_EQ_INT(lethe_manifest_open_raw(f32, sc, 0, &m, msg, sizeof(msg)), LETHE_ERR_FORMAT);
    CHECK(m == NULL && strstr(msg, "700 bytes") && strstr(msg, "512 bytes each"));
    /* Counts that differ, either way. */
    put_file(f32, rows, 3 * 512);
    CHECK_EQ_INT(lethe_manifest_open_raw(f32, sc, 0, &m, msg, sizeof(msg)), LETHE_ERR_FORMAT);
    CHECK(strstr(msg, "holds 3 descriptors but its sidecar") && strstr(msg, "has 4 rows"));
    put_text(sc, "uploader\nr1\nr2\n\n");
    CHECK_EQ_INT(lethe_manifest_open_raw(f32, sc, 0, &m, msg, sizeof(msg)), LETHE_ERR_FORMAT);
    CHECK(strstr(msg, "holds 3 descriptors") && strstr(msg, "has 2 rows"));
    /* NaN and infinity: bad rows that name the descriptor and component. */
    put_le_float(rows + 512 + 4 * 4, NAN);
    put_le_float(rows + 2 * 512 + 127 * 4, -INFINITY);
    put_file(f32, rows, 3 * 512);
    snprintf(sc, sizeof(sc), "%s", api_path("d.jsonl")); /* the extension decides */
    put_text(sc, "{\"uploader\": \"j1\"}\n{\"uploader\": \"j2\"}\n{\"uploader\": \"j3\"}\n");
    CHECK_EQ_INT(lethe_manifest_open_raw(f32, sc, 0, &m, msg, sizeof(msg)), LETHE_OK);
    got = api_transcript(m);
    {
        char want[2048];
        snprintf(want, sizeof(want),
                 "R1  j1  1\n"
                 "E line 2: descriptor 2 of %s has a non-finite value (NaN at component 5)\n"
                 "E line 3: descriptor 3 of %s has a non-finite value (infinity at component "
                 "128)\n",
                 f32, f32);
        CHECK(strcmp(got, want) == 0);
    }
    free(got);
    lethe_manifest_close(m);
    /* The same from memory. */
    {
        static const char side3[] = "uploader\na\nb\nc\n";
        CHECK_EQ_INT(lethe_manifest_open_raw_mem(rows, 3 * 512, side3, sizeof(side3) - 1,
                                                 "s.csv", 0, &m, msg, sizeof(msg)),
                     LETHE_OK);
        got = api_transcript(m);
        CHECK(strncmp(got, "R2  a  1\nE line 3: descriptor 2 of the float32 data has a "
                           "non-finite value (NaN at component 5)\n",
                      strlen("R2  a  1\nE line 3: descriptor 2 of the float32 data has a "
                             "non-finite value (NaN at component 5)\n")) == 0);
        free(got);
        lethe_manifest_close(m);
        CHECK_EQ_INT(lethe_manifest_open_raw_mem(rows, 2 * 512 + 1, side3, sizeof(side3) - 1,
                                                 NULL, 0, &m, msg, sizeof(msg)),
                     LETHE_ERR_FORMAT);
        CHECK_EQ_INT(lethe_manifest_open_raw_mem(rows, 512, side3, sizeof(side3) - 1, NULL, 0,
                                                 &m, msg, sizeof(msg)),
                     LETHE_ERR_FORMAT);
        CHECK(strstr(msg, "the float32 data holds 1 descriptors but its sidecar (memory) has "
                          "3 rows") != NULL);
        CHECK_EQ_INT(lethe_manifest_open_raw_mem(NULL, 0, NULL, 0, NULL, 0, &m, msg,
                                                 sizeof(msg)),
                     LETHE_ERR_FORMAT);
        CHECK(strstr(msg, "empty manifest") != NULL);
        CHECK_EQ_INT(lethe_manifest_open_raw_mem(rows, 512, side3, 6, NULL, 1, &m, msg,
                                                 sizeof(msg)),
                     LETHE_ERR_ARG);
    }
    /* Unknown sidecar columns are reported; a missing file is named. */
    snprintf(sc, sizeof(sc), "%s", api_path("d.csv"));
    put_text(sc, "uploader,colour\na\nb\nc\n");
    CHECK_EQ_INT(lethe_manifest_open_raw(f32, sc, 0, &m, msg, sizeof(msg)), LETHE_OK);
    {
        const char *const *names;
        CHECK_EQ_INT(lethe_manifest_unknown_columns(m, &names), 1);
        CHECK(m && strcmp(names[0], "colour") == 0);
    }
    lethe_manifest_close(m);
    CHECK_EQ_INT(lethe_manifest_open_raw(api_path("none.f32"), sc, 0, &m, msg, sizeof(msg)),
                 LETHE_ERR_NOT_FOUND);
    CHECK(strstr(msg, "none.f32") != NULL);
    CHECK_EQ_INT(lethe_manifest_open_raw(f32, api_path("none.csv"), 0, &m, msg, sizeof(msg)),
                 LETHE_ERR_NOT_FOUND);
    CHECK(strstr(msg, "sidecar") == msg && strstr(msg, "none.csv") != NULL);
    /* FIFOs for either file: refused, never waited on. */
    CHECK(mkfifo(api_path("pipe.f32"), 0600) == 0);
    guard_start();
    CHECK_EQ_INT(lethe_manifest_open_raw(api_path("pipe.f32"), sc, 0, &m, msg, sizeof(msg)),
                 LETHE_ERR_IO);
    CHECK(strstr(msg, "FIFO") != NULL);
    CHECK_EQ_INT(lethe_manifest_open_raw(f32, api_path("pipe.f32"), 0, &m, msg, sizeof(msg)),
                 LETHE_ERR_IO);
    CHECK(strstr(msg, "sidecar") == msg && strstr(msg, "FIFO") != NULL);
    guard_end();
    free(rows);
}

/* ------------------------------------------------------------------ */
/* The public API: search queries                                      */
/* ------------------------------------------------------------------ */

/* 128 comma-separated numbers starting at first, in brackets. */
static void vec_text(strbuf *b, int first)
{
    sb_add(b, "[");
    for (int i = 0; i < 128; i++)
        sb_add(b, "%s%d", i ? ", " : "", first + i);
    sb_add(b, "]");
}

static void test_descriptor_parse(void)
{
    strbuf a = {0}, o = {0}, d = {0};
    float v[128];
    char msg[512];
    static const struct {
        const char *json, *why;
    } bad[] = {
        {"[1,2,3]", "expected 128 numbers, found 3"},
        {"[1,2,", "invalid JSON: "},
        {"\"x\"", "not a JSON array of 128 numbers or an object with \"embedding\""},
        {"{\"x\": 1}", "no \"embedding\""},
        {"{\"embedding\": 5}", "\"embedding\": not an array of 128 numbers"},
        {"{\"embedding\": [], \"embedding\": []}", "duplicate key \"embedding\""},
        {"{\"embedding\": [], \"descriptor\": []}", "both \"embedding\" and \"descriptor\""},
        {"[] []", "trailing characters"},
        {"", "invalid JSON"},
    };

    vec_text(&a, 0);
    CHECK_EQ_INT(lethe_descriptor_parse(a.s, a.len, v, msg, sizeof(msg)), LETHE_OK);
    CHECK(v[0] == 0.0f && v[127] == 127.0f);
    sb_add(&o, "{\"image\": \"x\", \"embedding\": ");
    vec_text(&o, 5);
    sb_add(&o, "}\n");
    CHECK_EQ_INT(lethe_descriptor_parse(o.s, o.len, v, msg, sizeof(msg)), LETHE_OK);
    CHECK(v[0] == 5.0f && v[127] == 132.0f);
    sb_add(&d, "{\"descriptor\": ");
    vec_text(&d, 7);
    sb_add(&d, "}");
    CHECK_EQ_INT(lethe_descriptor_parse(d.s, d.len, v, msg, sizeof(msg)), LETHE_OK);
    CHECK(v[0] == 7.0f);
    for (size_t i = 0; i < LETHE_ARRAY_LEN(bad); i++) {
        CHECK_EQ_INT(lethe_descriptor_parse(bad[i].json, strlen(bad[i].json), v, msg,
                                            sizeof(msg)),
                     LETHE_ERR_FORMAT);
        if (!strstr(msg, bad[i].why))
            fprintf(stderr, "  %s: got '%s'\n", bad[i].json, msg);
        CHECK(strstr(msg, bad[i].why) != NULL);
    }
    /* item 5 not a number; item 128 beyond float range */
    a.s[a.len - 2] = '\0';
    {
        strbuf t = {0};
        sb_add(&t, "%s7e38]", a.s);
        CHECK_EQ_INT(lethe_descriptor_parse(t.s, t.len, v, msg, sizeof(msg)), LETHE_ERR_FORMAT);
        CHECK(strstr(msg, "item 128 is not a finite 32-bit float") != NULL);
        free(t.s);
    }
    CHECK_EQ_INT(lethe_descriptor_parse("[1,2,3,4,null]", 14, v, msg, sizeof(msg)),
                 LETHE_ERR_FORMAT);
    CHECK(strstr(msg, "expected 128 numbers, found 5") != NULL);
    CHECK_EQ_INT(lethe_descriptor_parse(NULL, 0, v, msg, sizeof(msg)), LETHE_ERR_ARG);
    {
        /* Bounded as a line of queries is. */
        size_t n = (1u << 20) + 1;
        char *big = malloc(n);
        memset(big, ' ', n);
        big[0] = '[';
        big[n - 1] = ']';
        CHECK_EQ_INT(lethe_descriptor_parse(big, n, v, msg, sizeof(msg)), LETHE_ERR_FORMAT);
        CHECK(strcmp(msg, "longer than 1 MiB") == 0);
        for (size_t i = 1; i + 1 < 200000; i += 2)
            big[i] = ',';
        CHECK_EQ_INT(lethe_descriptor_parse(big, 200000, v, msg, sizeof(msg)),
                     LETHE_ERR_FORMAT);
        CHECK(strcmp(msg, "more than 65536 JSON values") == 0);
        free(big);
    }
    free(a.s);
    free(o.s);
    free(d.s);
}

/* "Q line face first" per query, "E msg" per bad line, "F msg" at a failure. */
static char *queries_transcript(lethe_queries *q)
{
    strbuf b = {0};
    lethe_query query;
    char msg[512];

    sb_add(&b, "%s", "");
    for (int guard = 0; guard < 10000; guard++) {
        int st = lethe_queries_next(q, &query, msg, sizeof(msg));
        if (st == 1)
            sb_add(&b, "Q%zu %d %g\n", query.line, query.face, (double)query.descriptor[0]);
        else if (st == -1)
            sb_add(&b, "E %s\n", msg);
        else if (st == 0)
            break;
        else {
            sb_add(&b, "F %s\n", msg);
            break;
        }
    }
    return b.s;
}

/* Lines of every kind the --queries documentation and tests promise, and
 * every kind of bad line. */
static char *queries_text(void)
{
    strbuf t = {0};
    vec_text(&t, 1);                                         /* 1: an array */
    sb_add(&t, "\n  \n{\"uploader\": \"u\", \"embedding\": "); /* 3: an object */
    vec_text(&t, 2);
    sb_add(&t, "}\r\n{\"image\": \"a.jpg\", \"faces\": [{\"box\": [1,2,3,4], \"embedding\": ");
    vec_text(&t, 3);                                         /* 4: embed output, 2 faces */
    sb_add(&t, "}, {\"embedding\": ");
    vec_text(&t, 4);
    sb_add(&t, "}]}\n"
               "{\"image\": \"b.jpg\", \"faces\": []}\n"              /* 5 */
               "{\"image\": \"c.jpg\", \"error\": \"not an image\"}\n" /* 6 */
               "{\"image\": \"d.jpg\", \"faces\": [{\"box\": [1]}, 7, {\"embedding\": [1]}]}\n"
               "[1, 2]\n"                                            /* 8 */
               "{\"embedding\": [1, 2\n"                             /* 9 */
               "true\n"                                              /* 10 */
               "{\"x\": 1}\n");                                      /* 11 */
    vec_text(&t, 9);                                         /* 12: no final line break */
    return t.s;
}

static const char queries_want[] =
    "Q1 -1 1\n"
    "Q3 -1 2\n"
    "Q4 0 3\n"
    "Q4 1 4\n"
    "E line 5: no face in this record (\"faces\" is empty)\n"
    "E line 6: the record is an error, not a descriptor: 'not an image'\n"
    "E line 7: face 1: no \"embedding\" (a JSON array of 128 numbers)\n"
    "E line 7: face 2 is not a JSON object\n"
    "E line 7: face 3: \"embedding\": expected 128 numbers, found 1\n"
    "E line 8: expected 128 numbers, found 2\n"
    "E line 9: invalid JSON: expected ',' or ']' at column 20\n"
    "E line 10: not a JSON array of 128 numbers or an object with \"embedding\"\n"
    "E line 11: no \"embedding\" (give a JSON array of 128 numbers, an object with "
    "\"embedding\", or a line of 'lethe embed --json')\n"
    "Q12 -1 9\n";

static void test_queries(void)
{
    char *text = queries_text(), *got, msg[512];
    const char *file = api_path("q.jsonl");
    lethe_queries *q = NULL;

    CHECK_EQ_INT(lethe_queries_open_mem(text, strlen(text), &q, msg, sizeof(msg)), LETHE_OK);
    got = queries_transcript(q);
    if (strcmp(got, queries_want) != 0)
        fprintf(stderr, "  got:\n%s", got);
    CHECK(strcmp(got, queries_want) == 0);
    free(got);
    lethe_queries_close(q);
    put_text(file, text);
    CHECK_EQ_INT(lethe_queries_open(file, &q, msg, sizeof(msg)), LETHE_OK);
    got = queries_transcript(q);
    CHECK(strcmp(got, queries_want) == 0);
    free(got);
    lethe_queries_close(q);
    lethe_queries_close(NULL);
    /* An empty input, a missing file, a folder. */
    put_text(file, " \n\n");
    CHECK_EQ_INT(lethe_queries_open(file, &q, msg, sizeof(msg)), LETHE_ERR_FORMAT);
    CHECK(q == NULL && strstr(msg, "no queries (the input is empty)") != NULL);
    CHECK_EQ_INT(lethe_queries_open_mem("", 0, &q, msg, sizeof(msg)), LETHE_ERR_FORMAT);
    CHECK_EQ_INT(lethe_queries_open(api_path("absent.jsonl"), &q, msg, sizeof(msg)),
                 LETHE_ERR_NOT_FOUND);
    CHECK_EQ_INT(lethe_queries_open(api_dir, &q, msg, sizeof(msg)), LETHE_ERR_IO);
    CHECK(strstr(msg, "a directory") != NULL);
    CHECK_EQ_INT(lethe_queries_next(NULL, NULL, msg, sizeof(msg)), -2);
    /* A line over 1 MiB is one bad line, and the next is read. */
    {
        size_t big = (1u << 20) + 10;
        char *t = malloc(big + 600);
        strbuf tail = {0};
        memset(t, ' ', big);
        t[0] = '[';
        t[big - 1] = ']';
        t[big] = '\n';
        vec_text(&tail, 6);
        memcpy(t + big + 1, tail.s, tail.len + 1);
        CHECK_EQ_INT(lethe_queries_open_mem(t, big + 1 + tail.len, &q, msg, sizeof(msg)),
                     LETHE_OK);
        got = queries_transcript(q);
        CHECK(strcmp(got, "E line 1: line longer than 1 MiB\nQ2 -1 6\n") == 0);
        free(got);
        lethe_queries_close(q);
        free(tail.s);
        free(t);
    }
    free(text);
}

/* ------------------------------------------------------------------ */
/* The public API: allocation failures                                 */
/* ------------------------------------------------------------------ */

/*
 * Runs fn(ctx, &transcript) with the 1st, 2nd, ... allocation failing
 * until a run where none failed. Each run must give a prefix of the
 * complete transcript, then either stop (the open failed with
 * LETHE_ERR_NOMEM: fn writes "NOMEM") or end with "F ...out of memory"; and
 * leave no block of the allocation wrapper behind.
 */
typedef void (*api_run_fn)(const void *ctx, char **transcript);

static void api_alloc_sweep(const char *what, api_run_fn fn, const void *ctx)
{
    char *full = NULL;
    long k;

    fn(ctx, &full);
    for (k = 0; k < 100000; k++) {
        char *got = NULL;
        long before = lethe_alloc_live(), used;

        lethe_alloc_fail_after(k);
        fn(ctx, &got);
        used = lethe_alloc_count();
        lethe_alloc_fail_after(-1);
        if (used <= k) { /* nothing failed: the complete run */
            CHECK(strcmp(got, full) == 0);
            free(got);
            CHECK_EQ_INT(lethe_alloc_live(), before);
            break;
        }
        {
            /* the last line "F ...out of memory", what came before as in full */
            const char *cut = strstr(got, "F ");
            size_t keep = cut ? (size_t)(cut - got) : 0;
            int ok = strcmp(got, "NOMEM\n") == 0 ||
                     (cut && (cut == got || cut[-1] == '\n') && strchr(cut, '\n') &&
                      strchr(cut, '\n')[1] == '\0' && strstr(cut, "out of memory") &&
                      strncmp(got, full, keep) == 0);
            if (!ok)
                fprintf(stderr, "  %s with allocation %ld failing:\n%s  complete:\n%s", what,
                        k + 1, got, full);
            CHECK(ok);
        }
        free(got);
        if (lethe_alloc_live() != before) {
            fprintf(stderr, "  %s: %ld blocks leaked with allocation %ld failing\n", what,
                    lethe_alloc_live() - before, k + 1);
            CHECK(0);
        }
    }
    CHECK(k < 100000);
    free(full);
}

typedef struct open_case {
    int kind;             /* 0 file, 1 memory, 2 raw file, 3 raw memory */
    const char *a, *b;    /* file names, or the bytes */
    size_t alen, blen;
    unsigned flags;
} open_case;

static void run_open_case(const void *ctx, char **out)
{
    const open_case *c = ctx;
    lethe_manifest *m = NULL;
    char msg[512];
    int st;

    switch (c->kind) {
    case 0:
        st = lethe_manifest_open(c->a, c->flags, &m, msg, sizeof(msg));
        break;
    case 1:
        st = lethe_manifest_open_mem(c->a, c->alen, "x.csv", c->b, c->flags, &m, msg,
                                     sizeof(msg));
        break;
    case 2:
        st = lethe_manifest_open_raw(c->a, c->b, 0, &m, msg, sizeof(msg));
        break;
    default:
        st = lethe_manifest_open_raw_mem(c->a, c->alen, c->b, c->blen, "s.jsonl", 0, &m, msg,
                                         sizeof(msg));
        break;
    }
    if (st != LETHE_OK) {
        CHECK_EQ_INT(st, LETHE_ERR_NOMEM);
        CHECK(m == NULL);
        *out = strdup("NOMEM\n");
        return;
    }
    *out = api_transcript(m);
    lethe_manifest_close(m);
}

static void run_queries_case(const void *ctx, char **out)
{
    const open_case *c = ctx;
    lethe_queries *q = NULL;
    char msg[512];
    int st = c->kind == 0 ? lethe_queries_open(c->a, &q, msg, sizeof(msg))
                          : lethe_queries_open_mem(c->a, c->alen, &q, msg, sizeof(msg));
    if (st != LETHE_OK) {
        CHECK_EQ_INT(st, LETHE_ERR_NOMEM);
        CHECK(q == NULL);
        *out = strdup("NOMEM\n");
        return;
    }
    *out = queries_transcript(q);
    lethe_queries_close(q);
}

static void run_descriptor_case(const void *ctx, char **out)
{
    const open_case *c = ctx;
    float v[128];
    char msg[512];
    int st = lethe_descriptor_parse(c->a, c->alen, v, msg, sizeof(msg));
    if (st == LETHE_ERR_NOMEM) {
        *out = strdup("NOMEM\n");
        return;
    }
    CHECK_EQ_INT(st, LETHE_OK);
    *out = strdup(st == LETHE_OK && v[127] == 127.0f ? "ok\n" : "wrong\n");
}

static void test_api_alloc_failures(void)
{
    static const char side[] = "{\"uploader\": \"a\", \"consent\": \"explicit\"}\n"
                               "{\"uploader\": \"b\", \"consent\": \"no\"}\n"
                               "{\"uploader\": \"c\", \"colour\": 1}\n";
    static const char rows[] = "path,uploader,colour\nin.jpg,a,x\nlink-out.jpg,b,y\n"
                               "../x.jpg,c,z\nsub/ok.jpg,d,w\n";
    uint8_t *raw = raw_rows(3);
    char *text = queries_text();
    strbuf one = {0};
    open_case c;

    make_confinement_tree();
    put_text(api_path("c/alloc.csv"), rows);
    put_file(api_path("alloc.f32"), raw, 3 * 512);
    put_text(api_path("alloc.jsonl"), side);
    put_text(api_path("queries.jsonl"), text);

    c = (open_case){0, api_path("c/alloc.csv"), NULL, 0, 0, 0};
    api_alloc_sweep("lethe_manifest_open", run_open_case, &c);
    c = (open_case){1, rows, api_path("c"), sizeof(rows) - 1, 0, 0};
    api_alloc_sweep("lethe_manifest_open_mem", run_open_case, &c);
    c = (open_case){1, rows, NULL, sizeof(rows) - 1, 0, LETHE_MANIFEST_ALLOW_OUTSIDE};
    api_alloc_sweep("lethe_manifest_open_mem (no folder)", run_open_case, &c);
    c = (open_case){2, api_path("alloc.f32"), api_path("alloc.jsonl"), 0, 0, 0};
    api_alloc_sweep("lethe_manifest_open_raw", run_open_case, &c);
    c = (open_case){3, (const char *)raw, side, 3 * 512, sizeof(side) - 1, 0};
    api_alloc_sweep("lethe_manifest_open_raw_mem", run_open_case, &c);
    c = (open_case){0, api_path("queries.jsonl"), NULL, 0, 0, 0};
    api_alloc_sweep("lethe_queries_open", run_queries_case, &c);
    c = (open_case){1, text, NULL, strlen(text), 0, 0};
    api_alloc_sweep("lethe_queries_open_mem", run_queries_case, &c);
    sb_add(&one, "{\"embedding\": ");
    vec_text(&one, 0);
    sb_add(&one, "}");
    c = (open_case){1, one.s, NULL, one.len, 0, 0};
    api_alloc_sweep("lethe_descriptor_parse", run_descriptor_case, &c);
    free(one.s);
    free(text);
    free(raw);
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
    RUN(test_read_file_refuses_special_files);
    RUN(test_manifest_fifo);
    RUN(test_ingest_of_a_fifo_row);
    RUN(test_confinement_files);
    RUN(test_confinement_relative_names);
    RUN(test_manifest_from_memory);
    RUN(test_raw_descriptors);
    RUN(test_descriptor_parse);
    RUN(test_queries);
    RUN(test_api_alloc_failures);
    return test_summary();
}
