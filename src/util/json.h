/*
 * json.h: a small, strict JSON parser (RFC 8259) for manifests, model files
 * and JSON Lines input. Input is hostile: nesting depth and sizes are bounded,
 * every error names the line and column. Values form a tree owned by the root.
 */
#ifndef LETHE_JSON_H
#define LETHE_JSON_H

#include <stddef.h>

typedef enum json_type {
    JSON_NULL, JSON_FALSE, JSON_TRUE, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT
} json_type;

typedef struct json_value json_value;
struct json_value {
    json_type type;
    double number;      /* JSON_NUMBER */
    char *string;       /* JSON_STRING: NUL-terminated UTF-8 (may hold NULs: see len) */
    size_t len;         /* string length in bytes, or the count of items / members */
    json_value **items; /* JSON_ARRAY items, JSON_OBJECT member values */
    char **keys;        /* JSON_OBJECT member names (NUL-terminated) */
};

#define JSON_MAX_DEPTH 64

/* Parse text[0..len). On success *out is the root (json_free it). */
int json_parse(const char *text, size_t len, json_value **out, char *msg, size_t msg_len);
void json_free(json_value *v); /* NULL is fine */

/* The member named key of an object, or NULL (also when v is not an object). */
const json_value *json_get(const json_value *v, const char *key);
/* String member or NULL. */
const char *json_get_string(const json_value *v, const char *key);

#endif
