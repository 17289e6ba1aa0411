/*
 * serve_json.c: the strict, bounded reader of request bodies (see
 * serve_json.h). Recursive descent; nested values are checked and skipped,
 * only the top level is kept.
 */
#include "serve_json.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct sj_parser {
    const unsigned char *p, *start, *end;
    char *msg;
    size_t msg_len;
    int status;     /* 0, -1 bad input, -2 out of memory */
} sj_parser;

static int fail(sj_parser *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(sj_parser *ps, const char *fmt, ...)
{
    if (ps->status == 0) {
        char what[200];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(what, sizeof(what), fmt, ap);
        va_end(ap);
        if (ps->msg && ps->msg_len)
            snprintf(ps->msg, ps->msg_len, "at byte %zu: %s", (size_t)(ps->p - ps->start), what);
        ps->status = -1;
    }
    return -1;
}

static int oom(sj_parser *ps)
{
    if (ps->status == 0) {
        if (ps->msg && ps->msg_len)
            snprintf(ps->msg, ps->msg_len, "out of memory");
        ps->status = -2;
    }
    return -2;
}

static void skip_ws(sj_parser *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

/* The length of the well-formed UTF-8 sequence at p (1 to 4), 0 if none. */
static size_t utf8_seq(const unsigned char *p, const unsigned char *end)
{
    unsigned char c = p[0], lo = 0x80, hi = 0xBF;
    size_t n;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        n = 3;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4;
    else
        return 0;
    if ((size_t)(end - p) < n)
        return 0;
    lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
    hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (size_t k = 2; k < n; k++)
        if ((p[k] & 0xC0) != 0x80)
            return 0;
    return n;
}

static int hex4(const unsigned char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = p[i], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
            d = (c | 0x20) - 'a' + 10;
        else
            return -1;
        v = v * 16 + d;
    }
    *out = v;
    return 0;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* A \u escape at ps->p (after the backslash and 'u'), a surrogate pair
 * included: its code point, or -1 (failure recorded). */
static long unicode_escape(sj_parser *ps)
{
    unsigned hi, lo;
    if (ps->end - ps->p < 4 || hex4(ps->p, &hi) != 0)
        return fail(ps, "a \\u escape needs four hex digits");
    ps->p += 4;
    if (hi >= 0xDC00 && hi <= 0xDFFF)
        return fail(ps, "a \\u escape is a lone low surrogate");
    if (hi < 0xD800 || hi > 0xDBFF)
        return (long)hi;
    if (ps->end - ps->p < 6 || ps->p[0] != '\\' || ps->p[1] != 'u' || hex4(ps->p + 2, &lo) != 0 ||
        lo < 0xDC00 || lo > 0xDFFF)
        return fail(ps, "a \\u escape is a high surrogate without its low half");
    ps->p += 6;
    return 0x10000 + (((long)hi - 0xD800) << 10) + ((long)lo - 0xDC00);
}

/* One character of a string body at ps->p (not the closing quote): its
 * bytes appended to out (when not NULL) at *n. 0 or -1. */
static int string_char(sj_parser *ps, char *out, size_t *n)
{
    static const char esc_in[] = "\"\\/bfnrt", esc_out[] = "\"\\/\b\f\n\r\t";
    unsigned char c = *ps->p;
    if (c < 0x20)
        return fail(ps, "a string holds a raw control character (0x%02x)", c);
    if (c != '\\') {
        size_t k = utf8_seq(ps->p, ps->end);
        if (!k)
            return fail(ps, "a string holds a byte that is not UTF-8 (0x%02x)", c);
        if (out)
            memcpy(out + *n, ps->p, k);
        *n += k;
        ps->p += k;
        return 0;
    }
    if (++ps->p >= ps->end)
        return fail(ps, "the text ends inside a string");
    const char *e = *ps->p ? strchr(esc_in, *ps->p) : NULL;
    ps->p++;
    if (e) {
        if (out)
            out[*n] = esc_out[e - esc_in];
        (*n)++;
        return 0;
    }
    if (ps->p[-1] != 'u')
        return fail(ps, "unknown escape \\%c", ps->p[-1] >= 0x20 && ps->p[-1] < 0x7f ? ps->p[-1] : '?');
    long cp = unicode_escape(ps);
    if (cp < 0)
        return -1;
    char tmp[4];
    size_t k = put_utf8(out ? out + *n : tmp, (unsigned)cp);
    *n += k;
    return 0;
}

/* A string at ps->p (at its opening quote). With want, *out receives the
 * decoded text (malloc'd; the decoded form is never longer than the
 * escaped one) and *out_len its length. */
static int parse_string(sj_parser *ps, int want, char **out, size_t *out_len)
{
    const unsigned char *open = ++ps->p;
    size_t n = 0;
    char *buf = NULL;
    while (ps->p < ps->end && *ps->p != '"')
        if (string_char(ps, NULL, &n) < 0)
            return -1;
    if (ps->p >= ps->end)
        return fail(ps, "the text ends inside a string");
    if (!want) {
        ps->p++;
        return 0;
    }
    if (!(buf = malloc(n + 1)))
        return oom(ps);
    const unsigned char *close = ps->p;
    ps->p = open;
    n = 0;
    while (ps->p < close)
        string_char(ps, buf, &n); /* checked above */
    buf[n] = 0;
    ps->p = close + 1;
    *out = buf;
    *out_len = n;
    return 0;
}

/* A number (RFC 8259 grammar) at ps->p; *v its value. */
static int parse_number(sj_parser *ps, double *v)
{
    const unsigned char *s = ps->p, *q = s;
    char buf[64];
    if (q < ps->end && *q == '-')
        q++;
    if (q < ps->end && *q == '0')
        q++;
    else if (q < ps->end && *q >= '1' && *q <= '9')
        while (q < ps->end && *q >= '0' && *q <= '9')
            q++;
    else
        return fail(ps, "a number is malformed");
    if (q < ps->end && *q == '.') {
        if (++q >= ps->end || *q < '0' || *q > '9')
            return fail(ps, "a number has no digit after its point");
        while (q < ps->end && *q >= '0' && *q <= '9')
            q++;
    }
    if (q < ps->end && (*q == 'e' || *q == 'E')) {
        if (++q < ps->end && (*q == '+' || *q == '-'))
            q++;
        if (q >= ps->end || *q < '0' || *q > '9')
            return fail(ps, "a number has no digit in its exponent");
        while (q < ps->end && *q >= '0' && *q <= '9')
            q++;
    }
    if ((size_t)(q - s) >= sizeof(buf))
        return fail(ps, "a number is longer than %zu characters", sizeof(buf) - 1);
    memcpy(buf, s, (size_t)(q - s));
    buf[q - s] = 0;
    *v = strtod(buf, NULL);
    ps->p = q;
    return 0;
}

static int parse_value(sj_parser *ps, int depth, sj_member *m);

/* An array or object at ps->p, checked and skipped. */
static int parse_container(sj_parser *ps, int depth, int is_object)
{
    char close = is_object ? '}' : ']';
    if (depth >= SJ_MAX_DEPTH)
        return fail(ps, "nested more than %d deep", SJ_MAX_DEPTH);
    ps->p++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
        return 0;
    }
    for (;;) {
        skip_ws(ps);
        if (is_object) {
            if (ps->p >= ps->end || *ps->p != '"')
                return fail(ps, "expected a member name in quotes");
            if (parse_string(ps, 0, NULL, NULL) < 0)
                return -1;
            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != ':')
                return fail(ps, "expected ':' after a member name");
            ps->p++;
        }
        if (parse_value(ps, depth + 1, NULL) < 0)
            return -1;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == close) {
            ps->p++;
            return 0;
        }
        return fail(ps, "expected ',' or '%c'", close);
    }
}

static int match_word(sj_parser *ps, const char *w)
{
    size_t n = strlen(w);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, w, n) != 0)
        return fail(ps, "unexpected character '%c'",
                    *ps->p >= 0x20 && *ps->p < 0x7f ? *ps->p : '?');
    ps->p += n;
    return 0;
}

/* A value at ps->p; m (the top level's members only) receives it. */
static int parse_value(sj_parser *ps, int depth, sj_member *m)
{
    sj_member tmp;
    if (!m)
        m = &tmp;
    skip_ws(ps);
    if (ps->p >= ps->end)
        return fail(ps, "the text ends where a value should be");
    m->raw = (const char *)ps->p;
    int r;
    switch (*ps->p) {
    case '"':
        m->type = SJ_STRING;
        r = parse_string(ps, m != &tmp, &m->str, &m->str_len);
        break;
    case '{':
    case '[':
        m->type = *ps->p == '{' ? SJ_OBJECT : SJ_ARRAY;
        r = parse_container(ps, depth, *ps->p == '{');
        break;
    case 't':
    case 'f':
        m->type = SJ_BOOL;
        m->boolean = *ps->p == 't';
        r = match_word(ps, m->boolean ? "true" : "false");
        break;
    case 'n':
        m->type = SJ_NULL;
        r = match_word(ps, "null");
        break;
    default:
        m->type = SJ_NUMBER;
        r = parse_number(ps, &m->num);
    }
    m->raw_len = (size_t)((const char *)ps->p - m->raw);
    return r;
}

/* One top-level member at ps->p (at its name's quote). */
static int parse_member(sj_parser *ps, sj_object *o)
{
    char *name = NULL;
    size_t len = 0;
    if (o->n == SJ_MAX_MEMBERS)
        return fail(ps, "more than %d members", SJ_MAX_MEMBERS);
    if (parse_string(ps, 1, &name, &len) < 0)
        return -1;
    int bad = len > SJ_MAX_NAME || memchr(name, 0, len) != NULL;
    if (!bad) {
        for (int i = 0; i < o->n; i++)
            if (!strcmp(o->m[i].name, name)) {
                free(name);
                return fail(ps, "the member \"%s\" appears twice", o->m[i].name);
            }
    }
    sj_member *m = &o->m[o->n];
    memset(m, 0, sizeof(*m));
    if (!bad)
        memcpy(m->name, name, len + 1);
    free(name);
    if (bad)
        return fail(ps, "a member name is longer than %d bytes or holds U+0000", SJ_MAX_NAME);
    skip_ws(ps);
    if (ps->p >= ps->end || *ps->p != ':')
        return fail(ps, "expected ':' after a member name");
    ps->p++;
    o->n++;
    if (parse_value(ps, 1, m) < 0)
        return -1;
    if (m->type == SJ_STRING && memchr(m->str, 0, m->str_len))
        return fail(ps, "the string of \"%s\" holds U+0000", m->name);
    return 0;
}

static int parse_object(sj_parser *ps, sj_object *o)
{
    skip_ws(ps);
    if (ps->p >= ps->end || *ps->p != '{')
        return fail(ps, "the body is not a JSON object");
    ps->p++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == '}') {
        ps->p++;
        return 0;
    }
    for (;;) {
        skip_ws(ps);
        if (ps->p >= ps->end || *ps->p != '"')
            return fail(ps, "expected a member name in quotes");
        if (parse_member(ps, o) < 0)
            return -1;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == '}') {
            ps->p++;
            return 0;
        }
        return fail(ps, "expected ',' or '}'");
    }
}

int sj_parse(const char *text, size_t len, sj_object *o, char *msg, size_t msg_len)
{
    sj_parser ps = {(const unsigned char *)text, (const unsigned char *)text,
                    (const unsigned char *)text + len, msg, msg_len, 0};
    memset(o, 0, sizeof(*o));
    if (msg && msg_len)
        msg[0] = 0;
    if (!text)
        return fail(&ps, "no body");
    if (len > SJ_MAX_TEXT)
        return fail(&ps, "the body is longer than %u bytes", SJ_MAX_TEXT);
    if (parse_object(&ps, o) < 0)
        return ps.status;
    skip_ws(&ps);
    if (ps.p != ps.end)
        return fail(&ps, "text after the object");
    return 0;
}

void sj_free(sj_object *o)
{
    for (int i = 0; i < o->n; i++)
        free(o->m[i].str);
    /* a member whose value failed may hold a string too */
    if (o->n < SJ_MAX_MEMBERS)
        free(o->m[o->n].str);
    memset(o, 0, sizeof(*o));
}

const sj_member *sj_get(const sj_object *o, const char *name)
{
    for (int i = 0; i < o->n; i++)
        if (!strcmp(o->m[i].name, name))
            return &o->m[i];
    return NULL;
}

int sj_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    while (p < end) {
        size_t k = utf8_seq(p, end);
        if (!k)
            return 0;
        p += k;
    }
    return 1;
}

const char *sj_type_name(sj_type t)
{
    static const char *const names[] = {"null", "a boolean", "a number", "a string", "an array",
                                        "an object"};
    return (unsigned)t < sizeof(names) / sizeof(names[0]) ? names[t] : "?";
}
