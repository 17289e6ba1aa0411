/*
 * test_datasheet.c: the datasheet renderer (src/report/datasheet.c): both
 * formats on a sample, numbers and percentages, hostile keys (markup, table
 * syntax, newlines, invalid UTF-8, bidi overrides), empty arrays, schema
 * errors naming the field, self-containment of the HTML, determinism, and
 * every allocation failure.
 */
#include <stdint.h>
#include <time.h>

#include "report/datasheet.h"
#include "test.h"
#include "util/util.h"

/* A small document; tests derive variants from it with replace(). */
static const char base_doc[] =
    "{\"lethe_datasheet\": 1,\n"
    " \"generated_at\": \"2025-03-01T10:00:00Z\",\n"
    " \"store\": {\"path\": \"/x/lethe-store\", \"format_version\": 1,"
    " \"created_at\": \"2025-02-28T09:00:00Z\", \"model\": \"face-api 1.7.15 ResNet-34 128-D\"},\n"
    " \"totals\": {\"photos\": 13233, \"provenance_records\": 13300, \"faces\": 13500,"
    " \"templates\": 13000, \"photos_refused\": 200, \"photos_failed\": 3, \"photos_no_face\": 8,"
    " \"uploaders\": 40, \"sources\": 3, \"searches\": 1680, \"lookups\": 5, \"ingest_batches\": 20},\n"
    " \"by\": {\n"
    "  \"source\": [{\"key\": \"lfw\", \"photos\": 13233, \"faces\": 13500, \"templates\": 13000,"
    " \"refused\": 200}],\n"
    "  \"license\": [{\"key\": \"research-only\", \"photos\": 13000, \"faces\": 13200,"
    " \"templates\": 12900, \"refused\": 100}, {\"key\": \"CC-BY-4.0\", \"photos\": 233,"
    " \"faces\": 300, \"templates\": 100, \"refused\": 100}],\n"
    "  \"jurisdiction\": [{\"key\": \"US-IL\", \"photos\": 1, \"faces\": 1, \"templates\": 0,"
    " \"refused\": 1}, {\"key\": \"\", \"photos\": 13232, \"faces\": 13499, \"templates\": 13000,"
    " \"refused\": 199}],\n"
    "  \"consent\": [{\"key\": \"explicit\", \"photos\": 13233, \"faces\": 13500,"
    " \"templates\": 13000, \"refused\": 200}]\n"
    " },\n"
    " \"policy\": [{\"key\": \"default\", \"allows\": [\"explicit\"]},"
    " {\"key\": \"US-IL\", \"allows\": [\"explicit\", \"written-release\"]}],\n"
    " \"searches\": {\"by_purpose\": [{\"key\": \"missing person case 42\", \"searches\": 1260,"
    " \"results\": 31}, {\"key\": \"door access\", \"searches\": 420, \"results\": 400}],\n"
    "  \"by_actor\": [{\"key\": \"alice\", \"searches\": 1680, \"results\": 431}]},\n"
    " \"log\": {\"entries\": 1705, \"head\": \"0123456789abcdef\", \"intact\": true,"
    " \"first_bad\": null}\n"
    "}\n";

/* A new copy of s with the first occurrence of from replaced by to (which
 * must be there: the test fails otherwise). */
static char *replace(const char *s, const char *from, const char *to)
{
    const char *at = strstr(s, from);
    size_t n = strlen(s), nf = strlen(from), nt = strlen(to);
    char *r;
    CHECK(at != NULL);
    if (!at)
        return strdup(s);
    r = malloc(n - nf + nt + 1);
    memcpy(r, s, (size_t)(at - s));
    memcpy(r + (at - s), to, nt);
    memcpy(r + (at - s) + nt, at + nf, n - (size_t)(at - s) - nf + 1);
    return r;
}

/* Render doc or fail the test; the result is malloc'd (free it). */
static char *render(const char *doc, const char *format)
{
    char err[512] = "";
    char *out = NULL;
    int rc = datasheet_render(doc, strlen(doc), format, &out, err, sizeof(err));
    CHECK_EQ_INT(rc, 0);
    if (rc != 0)
        fprintf(stderr, "  render %s: %s\n", format, err);
    return out ? out : strdup("");
}

/* Render doc expecting failure; returns whether err contains want. */
static int render_fails_with(const char *doc, const char *format, const char *want)
{
    char err[512] = "";
    char *out = (char *)1;
    int rc = datasheet_render(doc, strlen(doc), format, &out, err, sizeof(err));
    /* a bad document is a format error, a bad format name an argument's */
    CHECK_EQ_INT(rc, strstr(want, "unknown format") ? LETHE_ERR_ARG : LETHE_ERR_FORMAT);
    CHECK(out == NULL);
    if (!strstr(err, want))
        fprintf(stderr, "  error \"%s\" does not mention \"%s\"\n", err, want);
    return strstr(err, want) != NULL;
}

static int count_of(const char *s, const char *what)
{
    int n = 0;
    for (const char *p = strstr(s, what); p; p = strstr(p + 1, what))
        n++;
    return n;
}

/* Every block of consecutive lines starting with '|' (a Markdown table)
 * has the same number of unescaped '|' on each line as on its header;
 * returns the number of table lines checked, or -1 on a broken row. */
static int md_tables_consistent(const char *md)
{
    int lines = 0, want = -1;
    const char *p = md;
    while (*p) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        if (len > 0 && p[0] == '|') {
            int pipes = 0;
            for (size_t i = 0; i < len; i++) {
                if (p[i] == '\\')
                    i++;
                else if (p[i] == '|')
                    pipes++;
            }
            if (want < 0)
                want = pipes;
            if (pipes != want) {
                fprintf(stderr, "  broken table row: %.*s\n", (int)len, p);
                return -1;
            }
            lines++;
        } else {
            want = -1;
        }
        p += len + (eol ? 1 : 0);
    }
    return lines;
}

/* Whether every '<' in Markdown text is backslash-escaped (no inline HTML). */
static int md_lt_escaped(const char *md)
{
    for (const char *p = strchr(md, '<'); p; p = strchr(p + 1, '<'))
        if (p == md || p[-1] != '\\')
            return 0;
    return 1;
}

/* Whether s is valid UTF-8 with no C0 control other than \n. */
static int clean_utf8(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int n = *p < 0x80 ? 1 : (*p & 0xE0) == 0xC0 ? 2 : (*p & 0xF0) == 0xE0 ? 3
                : (*p & 0xF8) == 0xF0 ? 4 : 0;
        if (n == 0 || (*p < 0x20 && *p != '\n'))
            return 0;
        for (int k = 1; k < n; k++)
            if ((p[k] & 0xC0) != 0x80)
                return 0;
        p += n;
    }
    return 1;
}

/* The HTML between the first <svg and the matching </svg>, as a new string. */
static char *first_svg(const char *html)
{
    const char *a = strstr(html, "<svg"), *e = a ? strstr(a, "</svg>") : NULL;
    char *r;
    if (!a || !e)
        return strdup("");
    r = strndup(a, (size_t)(e - a) + 6);
    return r;
}

static void test_md_sample(void)
{
    char *md = render(base_doc, "md");
    CHECK(strncmp(md, "# ", 2) == 0);
    CHECK(strstr(md, "What this is") != NULL);
    CHECK(strstr(md, "## Summary") != NULL);
    CHECK(strstr(md, "| Photos | 13,233 | 100.0% |") != NULL);
    CHECK(strstr(md, "| Faces | 14,016") == NULL); /* not in this document */
    CHECK(strstr(md, "| Faces | 13,500 |") != NULL);
    CHECK(strstr(md, "| Face templates | 13,000 |") != NULL);
    CHECK(strstr(md, "| Photos refused by policy | 200 | 1.5% |") != NULL);
    CHECK(strstr(md, "| Searches | 1,680 |") != NULL);
    for (const char *t = "## Photos by source\0## Photos by license\0## Photos by jurisdiction\0"
                         "## Photos by consent basis\0## Consent policy in force\0"
                         "### Searches by purpose\0### Searches by actor\0## Audit log\0";
         *t; t += strlen(t) + 1)
        CHECK(strstr(md, t) != NULL);
    CHECK(strstr(md, "| lfw | 13,233 | 100.0% | 13,500 | 13,000 | 200 |") != NULL);
    CHECK(strstr(md, "| US-IL | explicit, written-release |") != NULL);
    CHECK(strstr(md, "| missing person case 42 | 1,260 | 75.0% | 31 |") != NULL);
    CHECK(strstr(md, "| *(not given)* | 13,232 |") != NULL);
    CHECK(strstr(md, "Audit log intact") != NULL);
    CHECK(strstr(md, "NOT intact") == NULL);
    CHECK(strstr(md, "`0123456789abcdef`") != NULL);
    CHECK(md_tables_consistent(md) > 20);
    CHECK(md_lt_escaped(md));
    CHECK(clean_utf8(md));
    free(md);
}

static void test_html_sample(void)
{
    char *html = render(base_doc, "html");
    CHECK(strncmp(html, "<!DOCTYPE html>\n<html lang=\"en\">", 32) == 0);
    CHECK_EQ_INT(count_of(html, "<html"), 1);
    CHECK_EQ_INT(count_of(html, "</html>"), 1);
    CHECK_EQ_INT(count_of(html, "<title>"), count_of(html, "<g><title>") + 1);
    CHECK(strstr(html, "<title>") < strstr(html, "</head>"));
    CHECK_EQ_INT(count_of(html, "<body>"), 1);
    /* 4 breakdowns + 2 search tables: one chart each, each with a title */
    CHECK_EQ_INT(count_of(html, "<svg role=\"img\""), 6);
    CHECK_EQ_INT(count_of(html, "<svg"), count_of(html, "</svg>"));
    CHECK_EQ_INT(count_of(html, "<table>"), count_of(html, "</table>"));
    CHECK_EQ_INT(count_of(html, "<section"), count_of(html, "</section>"));
    CHECK_EQ_INT(count_of(html, "<figure>"), count_of(html, "</figure>"));
    CHECK_EQ_INT(count_of(html, "<g>"), count_of(html, "</g>"));
    CHECK(count_of(html, "<title id=") == 6);
    CHECK(count_of(html, "<th scope=\"col\"") >= 20);
    CHECK(strstr(html, "<style>") != NULL);
    CHECK(strstr(html, "@media print") != NULL);
    CHECK(strstr(html, ">13,233<") != NULL);
    CHECK(strstr(html, ">1.5%<") != NULL);
    CHECK(strstr(html, ">75.0%<") != NULL);
    CHECK(strstr(html, "<em class=\"ng\">(not given)</em>") != NULL);
    CHECK(strstr(html, "role=\"status\"") != NULL);
    CHECK(strstr(html, "role=\"alert\"") == NULL);
    CHECK(clean_utf8(html));
    free(html);
}

/* The longest bar of a chart is CH_BAR_W (380) wide; the others in scale. */
static void test_html_bar_scale(void)
{
    char *html = render(base_doc, "html");
    const char *lic = strstr(html, "id=\"by-license\"");
    char *svg = first_svg(lic ? lic : "");
    /* license: templates 12900 (the maximum) and 100; refused 100 and 100 */
    CHECK(strstr(svg, "width=\"380.0\"") != NULL);
    CHECK(strstr(svg, "width=\"2.9\"") != NULL); /* 100/12900*380 = 2.95 -> 2.9 (tenths) */
    CHECK(strstr(svg, ">12,900</text>") != NULL);
    free(svg);
    free(html);
}

static void test_percentages(void)
{
    char *doc = replace(base_doc, "\"photos\": 13233, \"provenance", "\"photos\": 3, \"provenance");
    char *doc2 = replace(doc, "{\"key\": \"research-only\", \"photos\": 13000",
                         "{\"key\": \"research-only\", \"photos\": 2");
    char *doc3 = replace(doc2, "{\"key\": \"CC-BY-4.0\", \"photos\": 233",
                         "{\"key\": \"CC-BY-4.0\", \"photos\": 1");
    char *md = render(doc3, "md");
    CHECK(strstr(md, "| research-only | 2 | 66.7% |") != NULL);
    CHECK(strstr(md, "| CC-BY-4.0 | 1 | 33.3% |") != NULL);
    CHECK(strstr(md, "| lfw | 13,233 | 441100.0% |") != NULL); /* more than all: shown */
    free(md);
    free(doc);
    free(doc2);
    free(doc3);

    /* a share that rounds to zero but is not zero; exact zero */
    doc = replace(base_doc, "\"photos\": 13233, \"provenance", "\"photos\": 100000, \"provenance");
    md = render(doc, "md");
    CHECK(strstr(md, "| US-IL | 1 | \\<0.1% |") != NULL);
    free(md);
    free(doc);

    /* no photos at all: no division by zero, a dash instead */
    doc = replace(base_doc, "\"photos\": 13233, \"provenance", "\"photos\": 0, \"provenance");
    md = render(doc, "md");
    char *html = render(doc, "html");
    CHECK(strstr(md, "| lfw | 13,233 | \xE2\x80\x93 |") != NULL);
    CHECK(strstr(md, "nan%") == NULL && strstr(md, "inf%") == NULL);
    CHECK(strstr(html, "nan%") == NULL && strstr(html, "inf%") == NULL);
    CHECK(strstr(html, "width=\"nan") == NULL && strstr(html, "width=\"inf") == NULL);
    CHECK(strstr(html, "width=\"-") == NULL && strstr(html, "x=\"-") == NULL);
    free(md);
    free(html);
    free(doc);
}

static char *xss_doc(void)
{
    char *a = replace(base_doc, "\"key\": \"lfw\"", "\"key\": \"<script>alert(1)</script>\"");
    char *b = replace(a, "\"key\": \"alice\"", "\"key\": \"\\\"onload=alert(2) x='\"");
    char *c = replace(b, "\"key\": \"door access\"", "\"key\": \"Tom & Jerry's <b>\"");
    char *d = replace(c, "\"path\": \"/x/lethe-store\"", "\"path\": \"</title><script>x()</script>\"");
    char *e = replace(d, "\"key\": \"default\"", "\"key\": \"<img src=x onerror=alert(3)>\"");
    char *f = replace(e, "\"written-release\"", "\"<svg onload=alert(4)>\"");
    free(a);
    free(b);
    free(c);
    free(d);
    free(e);
    return f;
}

static void test_xss_html(void)
{
    char *doc = xss_doc();
    char *html = render(doc, "html");
    char *svg = first_svg(html);
    CHECK(strstr(html, "<script") == NULL);
    CHECK(strstr(html, "<img") == NULL);
    CHECK(strstr(html, "<b>") == NULL);
    CHECK(strstr(html, "&lt;svg onload=alert(4)&gt;") != NULL);
    CHECK_EQ_INT(count_of(html, "<svg"), count_of(html, "</svg>"));
    CHECK(strstr(html, "\"onload") == NULL);
    CHECK(strstr(html, "x='") == NULL);
    CHECK(count_of(html, "&lt;script&gt;alert(1)&lt;/script&gt;") >= 3); /* table, label, tooltip */
    CHECK(strstr(svg, "&lt;script&gt;alert(1)&lt;/script&gt;") != NULL);
    CHECK(strstr(html, "&quot;onload=alert(2) x=&#39;") != NULL);
    CHECK(strstr(html, "Tom &amp; Jerry&#39;s &lt;b&gt;") != NULL);
    CHECK(strstr(html, "<title>Datasheet of the lethe store &lt;/title&gt;") != NULL);
    CHECK_EQ_INT(count_of(html, "</title>"), count_of(html, "<title"));
    free(svg);
    free(html);
    free(doc);
}

static void test_xss_md(void)
{
    char *doc = xss_doc();
    char *md = render(doc, "md");
    CHECK(md_lt_escaped(md));
    CHECK(strstr(md, "\\<script\\>alert(1)\\</script\\>") != NULL);
    CHECK(strstr(md, "Tom \\& Jerry's \\<b\\>") != NULL);
    CHECK(md_tables_consistent(md) > 20);
    free(md);
    free(doc);
}

static void test_md_pipes_newlines(void)
{
    char *a = replace(base_doc, "\"key\": \"lfw\"", "\"key\": \"a|b\\nc\\r\\nd`e*f_g[h](i)\"");
    char *b = replace(a, "\"key\": \"alice\"", "\"key\": \"# heading\\n- item\\n| x |\"");
    char *c = replace(b, "\"key\": \"door access\"", "\"key\": \"see https://evil.example and www.x.org\"");
    char *md = render(c, "md");
    char *html = render(c, "html");
    CHECK(md_tables_consistent(md) > 20);
    CHECK(strstr(md, "| a\\|b\xE2\x86\xB5" "c\xE2\x86\xB5" "d\\`e\\*f\\_g\\[h\\](i) | 13,233 |") != NULL);
    CHECK(strstr(md, "| \\# heading\xE2\x86\xB5- item\xE2\x86\xB5\\| x \\| | 1,680 |") != NULL);
    CHECK(strstr(md, "https\\://evil.example") != NULL);
    CHECK(strstr(md, "www\\.x.org") != NULL);
    CHECK(strstr(html, "a|b\xE2\x86\xB5" "c\xE2\x86\xB5" "d`e*f_g[h](i)") != NULL);
    CHECK(strstr(html, "https://") == NULL);
    free(md);
    free(html);
    free(a);
    free(b);
    free(c);
}

/* Raw invalid UTF-8, NUL, control and bidi-override characters in keys. */
static void test_hostile_bytes(void)
{
    char *a = replace(base_doc, "\"key\": \"lfw\"",
                      "\"key\": \"bad\xff\xc0\x80|\\u0000\\u0007\\u202Eevil\xe0\x80\xbc\xed\xa0\x80!\"");
    char *b = replace(a, "\"key\": \"alice\"", "\"key\": \"\xe2\x82\"");
    char *md = render(b, "md");
    char *html = render(b, "html");
    CHECK(clean_utf8(md));
    CHECK(clean_utf8(html));
    CHECK(strstr(md, "\xE2\x80\xAE") == NULL);
    CHECK(strstr(html, "\xE2\x80\xAE") == NULL);
    CHECK(strstr(md, "bad\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\\|\xEF\xBF\xBD\xEF\xBF\xBD"
                     "\xEF\xBF\xBD" "evil") != NULL);
    /* an overlong '<' and a UTF-16 surrogate: three U+FFFD each */
    CHECK(strstr(md, "evil\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD!") != NULL);
    CHECK(md_tables_consistent(md) > 20);
    free(md);
    free(html);
    free(a);
    free(b);
}

static void test_long_key(void)
{
    char key[401], *doc, *tmp, *html, *md, *svg;
    memset(key, 'x', 300);
    key[300] = 0;
    tmp = malloc(strlen(key) + 32);
    snprintf(tmp, strlen(key) + 32, "\"key\": \"%s\"", key);
    doc = replace(base_doc, "\"key\": \"lfw\"", tmp);
    html = render(doc, "html");
    md = render(doc, "md");
    svg = first_svg(html);
    CHECK(strstr(html, key) != NULL);            /* in full in the table */
    CHECK(strstr(md, key) != NULL);
    CHECK(strstr(svg, key) == NULL);             /* never in full in the chart */
    CHECK(strstr(svg, "xxxxxxxxxxxxxxxxxxxxxxxxxxx\xE2\x80\xA6</text>") != NULL); /* 27 + … */
    CHECK(strstr(svg, "xxxxxxxxxxxxxxxxxxxxxxxxxxxx\xE2\x80\xA6</text>") == NULL);
    free(svg);
    free(md);
    free(html);
    free(doc);
    free(tmp);

    /* a cut right after a space drops the space: "yyy…", not "yyy …" */
    doc = replace(base_doc, "\"key\": \"lfw\"", "\"key\": \"yyyyyyyyyyyyyyyyyyyyyyyyyy zzzz\"");
    html = render(doc, "html");
    svg = first_svg(html);
    CHECK(strstr(svg, ">yyyyyyyyyyyyyyyyyyyyyyyyyy\xE2\x80\xA6</text>") != NULL);
    free(svg);
    free(html);
    free(doc);
}

static void test_many_rows(void)
{
    /* 25 purposes: the chart draws 20, the table lists 25 */
    size_t cap = 64 * 1024, n;
    char *rows = malloc(cap), *doc, *html;
    n = (size_t)snprintf(rows, cap, "\"by_purpose\": [");
    for (int i = 0; i < 25; i++)
        n += (size_t)snprintf(rows + n, cap - n, "%s{\"key\": \"purpose %02d\", \"searches\": %d, "
                              "\"results\": 1}", i ? ", " : "", i, 100 - i);
    snprintf(rows + n, cap - n, "]");
    doc = replace(base_doc, "\"by_purpose\": [{\"key\": \"missing person case 42\", \"searches\": 1260,"
                            " \"results\": 31}, {\"key\": \"door access\", \"searches\": 420, \"results\": 400}]",
                  rows);
    html = render(doc, "html");
    {
        const char *p = strstr(html, "id=\"purpose-h\"");
        char *svg = first_svg(p ? p : "");
        CHECK(strstr(svg, ">purpose 19<") != NULL);
        CHECK(strstr(svg, ">purpose 20<") == NULL);
        CHECK(strstr(p ? p : "", "first 20 of 25") != NULL);
        CHECK(strstr(p ? p : "", "<th scope=\"row\">purpose 24</th>") != NULL);
        free(svg);
    }
    free(html);
    free(doc);
    free(rows);
}

static void test_empty_arrays(void)
{
    char *a = replace(base_doc, "\"source\": [{\"key\": \"lfw\", \"photos\": 13233, \"faces\": 13500,"
                                " \"templates\": 13000, \"refused\": 200}]", "\"source\": []");
    char *b = replace(a, "\"policy\": [{\"key\": \"default\", \"allows\": [\"explicit\"]},",
                      "\"policy\": [{\"key\": \"default\", \"allows\": []},");
    char *c = replace(b, "\"by_actor\": [{\"key\": \"alice\", \"searches\": 1680, \"results\": 431}]",
                      "\"by_actor\": []");
    char *d = replace(c, "\"policy\": [", "\"policy\": [], \"old_policy\": [");
    char *md = render(c, "md"), *html = render(c, "html");
    char *md2 = render(d, "md");
    CHECK(strstr(md, "| *none* | 0 | \xE2\x80\x93 | 0 | 0 | 0 |") != NULL);
    CHECK(strstr(md, "| *none* | 0 | \xE2\x80\x93 | 0 |") != NULL);
    CHECK(strstr(md, "| default | *none: every photo is refused* |") != NULL);
    CHECK(strstr(md2, "| *none* | *no policy rules* |") != NULL);
    CHECK(md_tables_consistent(md) > 10);
    CHECK_EQ_INT(count_of(html, "<svg role=\"img\""), 4);
    CHECK_EQ_INT(count_of(html, "<th scope=\"row\" class=\"none\">none</th>"), 2);
    CHECK_EQ_INT(count_of(html, "<svg"), count_of(html, "</svg>"));
    free(md);
    free(md2);
    free(html);
    free(a);
    free(b);
    free(c);
    free(d);
}

static void test_zero_counts(void)
{
    /* all values zero: bars of width 0, no division by zero */
    char *a = replace(base_doc, "\"by_actor\": [{\"key\": \"alice\", \"searches\": 1680, \"results\": 431}]",
                      "\"by_actor\": [{\"key\": \"alice\", \"searches\": 0, \"results\": 0}]");
    char *html = render(a, "html");
    const char *p = strstr(html, "id=\"actor-h\"");
    char *svg = first_svg(p ? p : "");
    CHECK_EQ_INT(count_of(svg, "width=\"0.0\""), 2);
    CHECK(strstr(svg, "nan") == NULL);
    free(svg);
    free(html);
    free(a);
}

static void test_missing_fields(void)
{
    static const struct {
        const char *from, *to, *want;
    } cases[] = {
        {"\"templates\": 13000, \"photos_refused\"", "\"photos_refused\"", "totals.templates"},
        {"\"generated_at\": \"2025-03-01T10:00:00Z\",", "", "generated_at"},
        {"\"model\": \"face-api 1.7.15 ResNet-34 128-D\"", "\"modell\": 1", "store.model"},
        {"{\"key\": \"CC-BY-4.0\", \"photos\": 233,", "{\"key\": \"CC-BY-4.0\",", "by.license[1].photos"},
        {"\"jurisdiction\": [{\"key\": \"US-IL\", ", "\"jurisdiction\": [{", "by.jurisdiction[0].key"},
        {"\"consent\": [", "\"consents\": [", "by.consent"},
        {"{\"key\": \"US-IL\", \"allows\": [\"explicit\", \"written-release\"]}",
         "{\"key\": \"US-IL\"}", "policy[1].allows"},
        {"\"by_actor\"", "\"by_actors\"", "searches.by_actor"},
        {"\"intact\": true,", "", "log.intact"},
        {"\"first_bad\": null", "\"firstbad\": null", "log.first_bad"},
        {"\"head\": \"0123456789abcdef\",", "", "log.head"},
        /* mistyped */
        {"\"faces\": 13500, \"templates\"", "\"faces\": -1, \"templates\"", "totals.faces"},
        {"\"uploaders\": 40", "\"uploaders\": 40.5", "totals.uploaders"},
        {"\"sources\": 3", "\"sources\": \"3\"", "totals.sources"},
        {"\"lookups\": 5", "\"lookups\": 1e300", "totals.lookups"},
        {"\"results\": 31}", "\"results\": null}", "searches.by_purpose[0].results"},
        {"\"allows\": [\"explicit\"]", "\"allows\": [\"explicit\", 7]", "policy[0].allows[1]"},
        {"\"intact\": true", "\"intact\": 1", "log.intact"},
        {"\"first_bad\": null", "\"first_bad\": \"12\"", "log.first_bad"},
        {"\"first_bad\": null", "\"first_bad\": 12", "first_bad"}, /* contradicts intact */
        {"\"store\": {", "\"store\": [], \"x\": {", "store"},
        {"\"source\": [{\"key\": \"lfw\"", "\"source\": [7, {\"key\": \"lfw\"", "by.source[0]"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *doc = replace(base_doc, cases[i].from, cases[i].to);
        CHECK(render_fails_with(doc, "md", cases[i].want));
        CHECK(render_fails_with(doc, "html", cases[i].want));
        free(doc);
    }
}

static void test_version(void)
{
    char *doc = replace(base_doc, "\"lethe_datasheet\": 1", "\"lethe_datasheet\": 2");
    CHECK(render_fails_with(doc, "md", "version 2"));
    free(doc);
    doc = replace(base_doc, "\"lethe_datasheet\": 1", "\"lethe_datasheet\": \"1\"");
    CHECK(render_fails_with(doc, "html", "lethe_datasheet"));
    free(doc);
    doc = replace(base_doc, "\"lethe_datasheet\": 1,", "");
    CHECK(render_fails_with(doc, "md", "missing field lethe_datasheet"));
    free(doc);
    CHECK(render_fails_with("[1, 2]", "md", "object"));
}

static void test_bad_input(void)
{
    char *out = (char *)1;
    char err[256];
    CHECK(render_fails_with("{\"lethe_datasheet\": 1,", "md", "line 1"));
    CHECK(render_fails_with("", "md", "invalid"));
    CHECK(render_fails_with(base_doc, "pdf", "unknown format \"pdf\""));
    CHECK(render_fails_with(base_doc, "MD", "unknown format"));
    /* a NULL err buffer is fine */
    CHECK_EQ_INT(datasheet_render("{}", 2, "md", &out, NULL, 0), LETHE_ERR_FORMAT);
    CHECK(out == NULL);
    CHECK_EQ_INT(datasheet_render(base_doc, strlen(base_doc), NULL, &out, err, sizeof(err)),
                 LETHE_ERR_ARG);
    /* a short err buffer is truncated, NUL-terminated */
    memset(err, 'z', sizeof(err));
    CHECK_EQ_INT(datasheet_render("{}", 2, "md", &out, err, 8), LETHE_ERR_FORMAT);
    CHECK(strlen(err) == 7);
}

static void test_self_contained(void)
{
    char *doc = xss_doc();
    char *a = replace(doc, "\"key\": \"research-only\"", "\"key\": \"http://x.example/a.css https://y\"");
    char *b = replace(a, "\"key\": \"CC-BY-4.0\"", "\"key\": \"url(http://z) <link rel=stylesheet>\"");
    char *html = render(base_doc, "html"), *html2 = render(b, "html");
    for (int k = 0; k < 2; k++) {
        const char *h = k ? html2 : html;
        CHECK(strstr(h, "http://") == NULL);
        CHECK(strstr(h, "https://") == NULL);
        CHECK(strstr(h, "<script") == NULL);
        CHECK(strstr(h, "<link") == NULL);
        CHECK(strstr(h, "<img") == NULL);
        CHECK(strstr(h, "@import") == NULL);
        CHECK_EQ_INT(count_of(h, "<style>"), 1);
    }
    /* no attribute loads anything; url( only for in-page references (in the
     * hostile document these words do appear, escaped, as text) */
    CHECK(strstr(html, " src=") == NULL);
    CHECK(strstr(html, " href=") == NULL);
    for (const char *p = strstr(html, "url("); p; p = strstr(p + 1, "url("))
        CHECK(p[4] == '#');
    CHECK(strstr(html2, "url(http&#58;//z) &lt;link rel=stylesheet&gt;") != NULL);
    /* the CSP forbids loading anything even if escaping were to fail */
    CHECK(strstr(html, "content=\"default-src 'none'; style-src 'unsafe-inline'\"") != NULL);
    free(html);
    free(html2);
    free(doc);
    free(a);
    free(b);
}

/* The same input gives the same bytes, whatever the heap or the clock. */
static void test_deterministic(void)
{
    static const char *const formats[] = {"md", "html", "json"};
    char today[16];
    time_t now = time(NULL);
    strftime(today, sizeof(today), "%Y-%m-%d", gmtime(&now));
    for (size_t i = 0; i < 3; i++) {
        char *x = render(base_doc, formats[i]);
        void *junk = malloc(12345);
        char *y = render(base_doc, formats[i]);
        CHECK(strcmp(x, y) == 0);
        if (!strstr(base_doc, today))
            CHECK(strstr(x, today) == NULL); /* no clock in the output */
        free(junk);
        free(x);
        free(y);
    }
}

static void test_log_not_intact(void)
{
    char *doc = replace(base_doc, "\"intact\": true, \"first_bad\": null",
                        "\"intact\": false, \"first_bad\": 1234");
    char *md = render(doc, "md"), *html = render(doc, "html");
    CHECK(count_of(md, "NOT intact") >= 3); /* top, audit log section, table */
    CHECK(strstr(md, "fails first at entry **1,234**") != NULL);
    CHECK(strstr(md, "**NOT intact: first bad entry 1,234** |") != NULL);
    CHECK(strstr(md, "Audit log intact") == NULL);
    CHECK(strstr(html, "<div class=\"log bad\" role=\"alert\">") != NULL);
    CHECK(strstr(html, "first bad entry <strong>1,234</strong>") != NULL);
    free(md);
    free(html);
    free(doc);

    doc = replace(base_doc, "\"intact\": true", "\"intact\": false");
    md = render(doc, "md");
    CHECK(strstr(md, "the first failing entry is not known") != NULL);
    CHECK(strstr(md, "| **NOT intact** |") != NULL);
    free(md);
    free(doc);
}

static void test_json_passthrough(void)
{
    char *out = render(base_doc, "json");
    CHECK(strcmp(out, base_doc) == 0);
    free(out);
    char *doc = replace(base_doc, "\"lethe_datasheet\": 1", "\"lethe_datasheet\": 3");
    CHECK(render_fails_with(doc, "json", "version 3"));
    free(doc);
}

/* Every allocation failure gives -1, no output, a message and no leak. */
static void test_alloc_failures(void)
{
    static const char *const formats[] = {"md", "html", "json"};
    for (size_t f = 0; f < 3; f++) {
        int succeeded = 0;
        for (long n = 0; n < 100000 && !succeeded; n++) {
            char err[256] = "";
            char *out = NULL;
            int rc;
            lethe_alloc_fail_after(n);
            rc = datasheet_render(base_doc, strlen(base_doc), formats[f], &out, err, sizeof(err));
            lethe_alloc_fail_after(-1);
            if (rc == 0) {
                char *want = render(base_doc, formats[f]);
                succeeded = 1;
                CHECK(out != NULL && strcmp(out, want) == 0); /* nothing lost */
                free(out);
                free(want);
            } else {
                CHECK_EQ_INT(rc, LETHE_ERR_NOMEM); /* never mistaken for a bad document */
                CHECK(out == NULL);
                CHECK(err[0] != 0);
            }
        }
        CHECK(succeeded);
    }
}

static void test_sample_file(void)
{
    uint8_t *buf;
    size_t len;
    char err[512], *out = NULL;
    /* The sample is committed: its absence is a failure, not a skip. */
    if (lethe_read_file("tests/data/datasheet-sample.json", 1 << 20, &buf, &len, err,
                        sizeof(err)) != LETHE_OK) {
        fprintf(stderr, "  %s (run from the repo root)\n", err);
        CHECK(!"tests/data/datasheet-sample.json unreadable");
        return;
    }
    CHECK_EQ_INT(datasheet_render((const char *)buf, len, "md", &out, err, sizeof(err)), 0);
    CHECK(out && strstr(out, "| lfw | 13,233 | 96.3% |") != NULL);
    CHECK(out && md_tables_consistent(out) > 20);
    free(out);
    out = NULL;
    CHECK_EQ_INT(datasheet_render((const char *)buf, len, "html", &out, err, sizeof(err)), 0);
    CHECK(out && count_of(out, "<svg") == 6 && count_of(out, "</svg>") == 6);
    free(out);
    lethe_free(buf);
}

int main(void)
{
    RUN(test_md_sample);
    RUN(test_html_sample);
    RUN(test_html_bar_scale);
    RUN(test_percentages);
    RUN(test_xss_html);
    RUN(test_xss_md);
    RUN(test_md_pipes_newlines);
    RUN(test_hostile_bytes);
    RUN(test_long_key);
    RUN(test_many_rows);
    RUN(test_empty_arrays);
    RUN(test_zero_counts);
    RUN(test_missing_fields);
    RUN(test_version);
    RUN(test_bad_input);
    RUN(test_self_contained);
    RUN(test_deterministic);
    RUN(test_log_not_intact);
    RUN(test_json_passthrough);
    RUN(test_alloc_failures);
    RUN(test_sample_file);
    return test_summary();
}
