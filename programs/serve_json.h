/*
 * serve_json.h: the JSON a client sends `lethe serve`: one object whose
 * members are read by name. The parser is strict (RFC 8259, UTF-8 only)
 * and bounded, as the bytes come from anyone who holds a key:
 *   - the text is at most SJ_MAX_TEXT bytes, nests at most SJ_MAX_DEPTH
 *     deep and has at most SJ_MAX_MEMBERS members at the top;
 *   - a member name is at most SJ_MAX_NAME bytes, and no name twice;
 *   - strings are well-formed UTF-8 without raw control characters, their
 *     escapes valid (surrogates in pairs), and a top-level string member
 *     may not decode to one holding U+0000;
 *   - nothing but white space after the object.
 * Top-level strings are decoded (a copy each), numbers read as doubles,
 * arrays and objects kept as the span of text they occupy (for
 * lethe_descriptor_parse and the like). No other dependency than libc, so
 * that the fuzz target (tests/fuzz/targets.c, "request_json") builds it.
 */
#ifndef LETHE_SERVE_JSON_H
#define LETHE_SERVE_JSON_H

#include <stddef.h>

#define SJ_MAX_TEXT (1u << 20)
#define SJ_MAX_DEPTH 16
#define SJ_MAX_MEMBERS 32
#define SJ_MAX_NAME 63

typedef enum sj_type { SJ_NULL, SJ_BOOL, SJ_NUMBER, SJ_STRING, SJ_ARRAY, SJ_OBJECT } sj_type;

typedef struct sj_member {
    char name[SJ_MAX_NAME + 1];
    sj_type type;
    const char *raw;   /* the value's text in the input (not NUL-terminated) */
    size_t raw_len;
    char *str;         /* SJ_STRING: decoded, NUL-terminated (owned) */
    size_t str_len;
    double num;        /* SJ_NUMBER */
    int boolean;       /* SJ_BOOL */
} sj_member;

typedef struct sj_object {
    sj_member m[SJ_MAX_MEMBERS];
    int n;
} sj_object;

/* Parse text[0..len) as one object. 0 on success (*o filled: free with
 * sj_free), -1 when it is not acceptable (msg says where and why: "at
 * byte N: ..."), -2 when memory ran out. *o needs sj_free either way. */
int sj_parse(const char *text, size_t len, sj_object *o, char *msg, size_t msg_len);
void sj_free(sj_object *o);
/* The member called name, or NULL. */
const sj_member *sj_get(const sj_object *o, const char *name);
/* 1 if s[0..n) is well-formed UTF-8 (no overlong forms, no surrogates). */
int sj_utf8_valid(const char *s, size_t n);
/* The name of the value type, for messages ("a string", "an array", ...). */
const char *sj_type_name(sj_type t);

#endif
