/*
 * strbuf.c: growable strings (see strbuf.h).
 */
#include "util/strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "util/util.h"

void sb_init(strbuf *b)
{
    memset(b, 0, sizeof(*b));
}

void sb_free(strbuf *b)
{
    lethe_free(b->s);
    memset(b, 0, sizeof(*b));
}

static int sb_reserve(strbuf *b, size_t extra)
{
    size_t need;
    if (b->failed)
        return 0;
    if (!lethe_add_size(b->len, extra + 1, &need)) {
        b->failed = 1;
        return 0;
    }
    if (need <= b->cap)
        return 1;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) {
            b->failed = 1;
            return 0;
        }
        cap *= 2;
    }
    char *s = lethe_realloc(b->s, cap);
    if (!s) {
        b->failed = 1;
        return 0;
    }
    b->s = s;
    b->cap = cap;
    return 1;
}

void sb_putn(strbuf *b, const char *s, size_t n)
{
    if (!sb_reserve(b, n))
        return;
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

void sb_puts(strbuf *b, const char *s)
{
    sb_putn(b, s, strlen(s));
}

void sb_putc(strbuf *b, char c)
{
    sb_putn(b, &c, 1);
}

void sb_printf(strbuf *b, const char *fmt, ...)
{
    va_list ap;
    char small[256];
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = 1;
        return;
    }
    if ((size_t)n < sizeof(small)) {
        sb_putn(b, small, (size_t)n);
        return;
    }
    if (!sb_reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid. */
static size_t utf8_len(const unsigned char *s)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return (s[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if ((s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80)
            return 0;
        if (c == 0xE0 && s[1] < 0xA0)
            return 0;
        if (c == 0xED && s[1] >= 0xA0)
            return 0;
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if ((s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && s[1] < 0x90)
            return 0;
        if (c == 0xF4 && s[1] >= 0x90)
            return 0;
        return 4;
    }
    return 0;
}

void sb_json_str(strbuf *b, const char *str)
{
    const unsigned char *s = (const unsigned char *)(str ? str : "");
    sb_putc(b, '"');
    while (*s) {
        unsigned c = *s;
        size_t n;
        if (c == '"' || c == '\\') {
            sb_putc(b, '\\');
            sb_putc(b, (char)c);
            s++;
        } else if (c < 0x20) {
            const char *esc = c == '\n' ? "\\n" : c == '\t' ? "\\t" : c == '\r' ? "\\r" : NULL;
            if (esc)
                sb_puts(b, esc);
            else
                sb_printf(b, "\\u%04x", c);
            s++;
        } else if ((n = utf8_len(s)) == 0) {
            sb_printf(b, "\\u%04x", c);
            s++;
        } else {
            sb_putn(b, (const char *)s, n);
            s += n;
        }
    }
    sb_putc(b, '"');
}

int sb_utf8_valid(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_len(s + i);
        if (k == 0 || k > n - i)
            return 0;
        i += k;
    }
    return 1;
}

void sb_text(strbuf *b, const char *str)
{
    const unsigned char *s = (const unsigned char *)(str ? str : "");
    while (*s) {
        unsigned c = *s;
        size_t n;
        if (c == '\\') {
            sb_puts(b, "\\\\");
            s++;
        } else if (c < 0x20 || c == 0x7f) {
            const char *esc = c == '\n' ? "\\n" : c == '\t' ? "\\t" : c == '\r' ? "\\r" : NULL;
            if (esc)
                sb_puts(b, esc);
            else
                sb_printf(b, "\\x%02x", c);
            s++;
        } else if ((n = utf8_len(s)) == 0) {
            sb_printf(b, "\\x%02x", c);
            s++;
        } else {
            sb_putn(b, (const char *)s, n);
            s += n;
        }
    }
}

char *sb_finish(strbuf *b)
{
    if (b->failed) {
        sb_free(b);
        return NULL;
    }
    if (!b->s) {
        b->s = lethe_malloc(1);
        if (!b->s)
            return NULL;
        b->s[0] = 0;
    }
    char *s = b->s;
    memset(b, 0, sizeof(*b));
    return s;
}
