/*
 * json.c: recursive-descent JSON parser with a depth limit (see json.h).
 */
#include "json.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

typedef struct parser {
    const char *p, *end, *start;
    char *msg;
    size_t msg_len;
    int status;
} parser;

static void where(const parser *ps, int *line, int *col)
{
    *line = 1;
    *col = 1;
    for (const char *q = ps->start; q < ps->p && q < ps->end; q++) {
        if (*q == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

static json_value *fail(parser *ps, int status, const char *what)
{
    int line, col;
    if (ps->status == LETHE_OK) {
        where(ps, &line, &col);
        ps->status = lethe_fail(ps->msg, ps->msg_len, status, "JSON: %s at line %d, column %d",
                                what, line, col);
    }
    return NULL;
}

static void skip_ws(parser *ps)
{
    while (ps->p < ps->end &&
           (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

static json_value *new_value(parser *ps, json_type t)
{
    json_value *v = lethe_calloc(1, sizeof(*v));
    if (!v)
        return fail(ps, LETHE_ERR_NOMEM, "out of memory");
    v->type = t;
    return v;
}

void json_free(json_value *v)
{
    if (!v)
        return;
    if (v->type == JSON_ARRAY || v->type == JSON_OBJECT) {
        for (size_t i = 0; i < v->len; i++) {
            json_free(v->items[i]);
            if (v->keys)
                lethe_free(v->keys[i]);
        }
        lethe_free(v->items);
        lethe_free(v->keys);
    }
    lethe_free(v->string);
    lethe_free(v);
}

static int hex4(const char *s, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return 0;
    }
    *out = v;
    return 1;
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

/* Parse a string starting at the opening quote into a new buffer. */
static char *parse_string_raw(parser *ps, size_t *out_len)
{
    const char *q = ps->p + 1;
    size_t cap = 0;
    char *buf, *o;

    /* The decoded string is never longer than the raw text. */
    while (q < ps->end && *q != '"') {
        if (*q == '\\')
            q++;
        q++;
    }
    if (q >= ps->end) {
        fail(ps, LETHE_ERR_FORMAT, "unterminated string");
        return NULL;
    }
    cap = (size_t)(q - ps->p);
    buf = lethe_malloc(cap + 1);
    if (!buf) {
        fail(ps, LETHE_ERR_NOMEM, "out of memory");
        return NULL;
    }
    o = buf;
    ps->p++;
    while (*ps->p != '"') {
        unsigned char c = (unsigned char)*ps->p;
        if (c < 0x20) {
            lethe_free(buf);
            fail(ps, LETHE_ERR_FORMAT, "control character in string");
            return NULL;
        }
        if (c != '\\') {
            *o++ = (char)c;
            ps->p++;
            continue;
        }
        ps->p++;
        switch (*ps->p) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            unsigned cp, lo;
            if (ps->end - ps->p < 5 || !hex4(ps->p + 1, &cp)) {
                lethe_free(buf);
                fail(ps, LETHE_ERR_FORMAT, "bad \\u escape");
                return NULL;
            }
            ps->p += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && ps->end - ps->p >= 7 && ps->p[1] == '\\' &&
                ps->p[2] == 'u' && hex4(ps->p + 3, &lo) && lo >= 0xDC00 && lo < 0xE000) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                ps->p += 6;
            } else if (cp >= 0xD800 && cp < 0xE000) {
                cp = 0xFFFD; /* lone surrogate */
            }
            /* \uXXXX is 6 raw bytes, at most 4 decoded: never overflows. */
            o += put_utf8(o, cp);
            break;
        }
        default:
            lethe_free(buf);
            fail(ps, LETHE_ERR_FORMAT, "bad escape in string");
            return NULL;
        }
        ps->p++;
    }
    ps->p++; /* closing quote */
    *o = 0;
    *out_len = (size_t)(o - buf);
    return buf;
}

static json_value *parse_value(parser *ps, int depth);

static int append(parser *ps, json_value *v, size_t *cap, json_value *item, char *key)
{
    if (v->len == *cap) {
        size_t ncap = *cap ? *cap * 2 : 4;
        json_value **ni = lethe_realloc(v->items, ncap * sizeof(*ni));
        if (!ni)
            goto nomem;
        v->items = ni;
        if (v->type == JSON_OBJECT) {
            char **nk = lethe_realloc(v->keys, ncap * sizeof(*nk));
            if (!nk)
                goto nomem;
            v->keys = nk;
        }
        *cap = ncap;
    }
    v->items[v->len] = item;
    if (v->type == JSON_OBJECT)
        v->keys[v->len] = key;
    v->len++;
    return 1;
nomem:
    fail(ps, LETHE_ERR_NOMEM, "out of memory");
    return 0;
}

static json_value *parse_container(parser *ps, int depth, int is_object)
{
    json_value *v = new_value(ps, is_object ? JSON_OBJECT : JSON_ARRAY);
    size_t cap = 0;
    char close = is_object ? '}' : ']';

    if (!v)
        return NULL;
    ps->p++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
        return v;
    }
    for (;;) {
        char *key = NULL;
        json_value *item;
        size_t klen;

        skip_ws(ps);
        if (is_object) {
            if (ps->p >= ps->end || *ps->p != '"') {
                fail(ps, LETHE_ERR_FORMAT, "expected a member name");
                goto err;
            }
            key = parse_string_raw(ps, &klen);
            if (!key)
                goto err;
            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != ':') {
                lethe_free(key);
                fail(ps, LETHE_ERR_FORMAT, "expected ':'");
                goto err;
            }
            ps->p++;
        }
        item = parse_value(ps, depth + 1);
        if (!item) {
            lethe_free(key);
            goto err;
        }
        if (!append(ps, v, &cap, item, key)) {
            json_free(item);
            lethe_free(key);
            goto err;
        }
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == close) {
            ps->p++;
            return v;
        }
        fail(ps, LETHE_ERR_FORMAT, is_object ? "expected ',' or '}'" : "expected ',' or ']'");
        goto err;
    }
err:
    json_free(v);
    return NULL;
}

static json_value *parse_number(parser *ps)
{
    const char *q = ps->p;
    char tmp[64];
    size_t n;
    json_value *v;

    if (q < ps->end && *q == '-')
        q++;
    if (q >= ps->end || !(*q >= '0' && *q <= '9'))
        return fail(ps, LETHE_ERR_FORMAT, "invalid value");
    if (*q == '0' && q + 1 < ps->end && q[1] >= '0' && q[1] <= '9')
        return fail(ps, LETHE_ERR_FORMAT, "leading zero in number");
    while (q < ps->end && *q >= '0' && *q <= '9')
        q++;
    if (q < ps->end && *q == '.') {
        q++;
        if (q >= ps->end || !(*q >= '0' && *q <= '9'))
            return fail(ps, LETHE_ERR_FORMAT, "digit expected after '.'");
        while (q < ps->end && *q >= '0' && *q <= '9')
            q++;
    }
    if (q < ps->end && (*q == 'e' || *q == 'E')) {
        q++;
        if (q < ps->end && (*q == '+' || *q == '-'))
            q++;
        if (q >= ps->end || !(*q >= '0' && *q <= '9'))
            return fail(ps, LETHE_ERR_FORMAT, "digit expected in exponent");
        while (q < ps->end && *q >= '0' && *q <= '9')
            q++;
    }
    n = (size_t)(q - ps->p);
    if (n >= sizeof(tmp))
        return fail(ps, LETHE_ERR_FORMAT, "number too long");
    memcpy(tmp, ps->p, n);
    tmp[n] = 0;
    v = new_value(ps, JSON_NUMBER);
    if (!v)
        return NULL;
    v->number = strtod(tmp, NULL);
    ps->p = q;
    return v;
}

static int match_word(parser *ps, const char *w)
{
    size_t n = strlen(w);
    if ((size_t)(ps->end - ps->p) >= n && memcmp(ps->p, w, n) == 0) {
        ps->p += n;
        return 1;
    }
    return 0;
}

static json_value *parse_value(parser *ps, int depth)
{
    json_value *v;

    if (depth > JSON_MAX_DEPTH)
        return fail(ps, LETHE_ERR_TOO_LARGE, "nesting too deep");
    skip_ws(ps);
    if (ps->p >= ps->end)
        return fail(ps, LETHE_ERR_FORMAT, "unexpected end of input");
    switch (*ps->p) {
    case '{':
        return parse_container(ps, depth, 1);
    case '[':
        return parse_container(ps, depth, 0);
    case '"':
        v = new_value(ps, JSON_STRING);
        if (!v)
            return NULL;
        v->string = parse_string_raw(ps, &v->len);
        if (!v->string) {
            lethe_free(v);
            return NULL;
        }
        return v;
    case 't':
        if (match_word(ps, "true"))
            return new_value(ps, JSON_TRUE);
        break;
    case 'f':
        if (match_word(ps, "false"))
            return new_value(ps, JSON_FALSE);
        break;
    case 'n':
        if (match_word(ps, "null"))
            return new_value(ps, JSON_NULL);
        break;
    default:
        return parse_number(ps);
    }
    return fail(ps, LETHE_ERR_FORMAT, "invalid literal");
}

int json_parse(const char *text, size_t len, json_value **out, char *msg, size_t msg_len)
{
    parser ps = {text, text + len, text, msg, msg_len, LETHE_OK};
    json_value *v;

    *out = NULL;
    /* A UTF-8 byte order mark is tolerated. */
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
        ps.p += 3;
    v = parse_value(&ps, 0);
    if (!v)
        return ps.status;
    skip_ws(&ps);
    if (ps.p != ps.end) {
        json_free(v);
        fail(&ps, LETHE_ERR_FORMAT, "trailing characters after the value");
        return ps.status;
    }
    *out = v;
    return LETHE_OK;
}

const json_value *json_get(const json_value *v, const char *key)
{
    if (!v || v->type != JSON_OBJECT)
        return NULL;
    for (size_t i = 0; i < v->len; i++)
        if (strcmp(v->keys[i], key) == 0)
            return v->items[i];
    return NULL;
}

const char *json_get_string(const json_value *v, const char *key)
{
    const json_value *m = json_get(v, key);
    return m && m->type == JSON_STRING ? m->string : NULL;
}
