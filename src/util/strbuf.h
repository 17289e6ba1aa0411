/*
 * strbuf.h: a growable string for building JSON and reports. Errors are
 * sticky: after a failed allocation every call is a no-op and sb_finish()
 * returns NULL, so callers check once at the end.
 */
#ifndef LETHE_STRBUF_H
#define LETHE_STRBUF_H

#include <stddef.h>

typedef struct strbuf {
    char *s;
    size_t len, cap;
    int failed;
} strbuf;

void sb_init(strbuf *b);
void sb_free(strbuf *b);
void sb_putn(strbuf *b, const char *s, size_t n);
void sb_puts(strbuf *b, const char *s);
void sb_putc(strbuf *b, char c);
void sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* s as a JSON string literal (quotes included; NULL as ""). Bytes that are not
 * valid UTF-8 become \u00XX so the output is always valid JSON. */
void sb_json_str(strbuf *b, const char *s);
/* s for a terminal: control characters (C0, DEL) as \n, \t, \r or \xNN,
 * invalid UTF-8 bytes as \xNN, a backslash doubled; nothing else changed. */
void sb_text(strbuf *b, const char *s);
/* 1 if the n bytes at s are valid UTF-8 (no overlongs, no surrogates). */
int sb_utf8_valid(const char *s, size_t n);
/* Take the string (malloc'd with lethe_malloc; NULL if anything failed). */
char *sb_finish(strbuf *b);

#endif
