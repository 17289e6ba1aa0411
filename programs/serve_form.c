/*
 * serve_form.c: what a request carries besides JSON: query-string
 * arguments, the Content-Type, and forms (a multipart/form-data body of
 * text fields and one photo, or a photo sent as the body with its fields in
 * the query string). Every text value is checked as the store checks an
 * actor or a purpose; a field the endpoint does not know is refused, so a
 * misspelt "purpse" is an error, not a missing purpose.
 */
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "serve.h"

const char *query_arg(request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

int content_type_is(const request *req, const char *type)
{
    const char *ct = req->content_type;
    size_t n = strlen(type);
    while (*ct == ' ')
        ct++;
    return !strncasecmp(ct, type, n) && (ct[n] == 0 || ct[n] == ';' || ct[n] == ' ');
}

int content_type_is_photo(const request *req)
{
    return content_type_is(req, "image/jpeg") || content_type_is(req, "image/png") ||
           content_type_is(req, "image/webp") || content_type_is(req, "application/octet-stream");
}

int text_ok(const char *s, char *why, size_t n)
{
    size_t len = strlen(s);
    if (len > SERVE_FIELD_MAX) {
        snprintf(why, n, "is %zu bytes, more than %d", len, SERVE_FIELD_MAX);
        return 0;
    }
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
            snprintf(why, n, "holds a control character (byte %zu is 0x%02x)", i,
                     (unsigned char)s[i]);
            return 0;
        }
    if (!sj_utf8_valid(s, len)) {
        snprintf(why, n, "is not valid UTF-8");
        return 0;
    }
    return 1;
}

static int field_index(const form *f, const char *name)
{
    for (int i = 0; i < f->nnames; i++)
        if (!strcmp(f->names[i], name))
            return i;
    return -1;
}

static int form_fail(form *f, int status, const char *fmt, const char *a, const char *b)
{
    if (!f->error[0]) {
        snprintf(f->error, sizeof(f->error), fmt, a, b);
        f->error_status = status;
    }
    return -1;
}

/* Append n bytes to a growing buffer of at most max bytes (plus a NUL). */
static int grow_append(char **buf, size_t *len, const char *data, size_t n, size_t max)
{
    if (n > max - *len)
        return -1;
    char *t = realloc(*buf, *len + n + 1);
    if (!t)
        return -2;
    memcpy(t + *len, data, n);
    *len += n;
    t[*len] = 0;
    *buf = t;
    return 0;
}

/* The multipart iterator: each piece of a field. */
static enum MHD_Result form_piece(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *filename, const char *type, const char *enc,
                                  const char *data, uint64_t off, size_t size)
{
    form *f = cls;
    int i, r;
    (void)kind, (void)type, (void)enc, (void)off;
    if (!key) /* libmicrohttpd passes a part without a name so */
        return form_fail(f, 400, "a multipart part has no name%s%s", "", ""), MHD_NO;
    if (f->photo_field && !strcmp(key, f->photo_field)) {
        char why[128];
        /* a part begins: parts of the same name were concatenated once,
         * a garbled photo; now each is counted, and one too many refused */
        if (off == 0 || f->nphotos == 0) {
            int most = f->max_photos > 0 ? f->max_photos : 1;
            char num[16];
            snprintf(num, sizeof(num), "%d", most);
            if (f->nphotos >= most)
                return form_fail(f, 400, most == 1 ? "only one '%s' part is taken here%s"
                                                   : "more '%s' parts than this takes (%s)",
                                 f->photo_field, most == 1 ? "" : num), MHD_NO;
            f->nphotos++;
        }
        if (filename && !f->photo_name[0] && strlen(filename) < sizeof(f->photo_name) &&
            text_ok(filename, why, sizeof(why)))
            snprintf(f->photo_name, sizeof(f->photo_name), "%s", filename);
        r = grow_append(&f->photo_owned, &f->photo_len, data, size, f->max_photo);
        if (r)
            return form_fail(f, r == -1 ? 413 : 503,
                             r == -1 ? "the photo is larger than the server takes%s%s"
                                     : "out of memory%s%s", "", ""), MHD_NO;
        f->photo = f->photo_owned;
        f->photo_ends[f->nphotos - 1] = f->photo_len;
        return MHD_YES;
    }
    if ((i = field_index(f, key)) < 0)
        return form_fail(f, 400, "unknown form field '%s'%s", key, ""), MHD_NO;
    r = grow_append(&f->values[i], &f->lens[i], data, size, SERVE_FIELD_MAX);
    if (r)
        return form_fail(f, r == -1 ? 400 : 503,
                         r == -1 ? "form field '%s' is longer than 4096 bytes%s"
                                 : "out of memory%s%s", r == -1 ? key : "", ""), MHD_NO;
    return MHD_YES;
}

/* Every query argument must be one the endpoint knows. */
static enum MHD_Result known_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *value)
{
    form *f = cls;
    (void)kind, (void)value;
    if (field_index(f, key) < 0)
        return form_fail(f, 400, "unknown argument '%s'%s", key, ""), MHD_NO;
    return MHD_YES;
}

static int read_query(request *req, form *f)
{
    MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, known_arg, f);
    if (f->error[0])
        return -1;
    for (int i = 0; i < f->nnames; i++) {
        const char *v = query_arg(req, f->names[i]);
        if (v && !(f->values[i] = strdup(v)))
            return form_fail(f, 503, "out of memory%s%s", "", "");
        f->lens[i] = v ? strlen(v) : 0;
    }
    f->photo = req->body;
    f->photo_len = req->body_len;
    f->nphotos = req->body_len > 0;
    f->photo_ends[0] = req->body_len;
    return 0;
}

static int read_multipart(request *req, form *f)
{
    struct MHD_PostProcessor *pp = MHD_create_post_processor(req->conn, 65536, form_piece, f);
    if (!pp)
        return form_fail(f, 400, "the multipart/form-data body cannot be read (no boundary in "
                                 "its Content-Type?)%s%s", "", "");
    enum MHD_Result ok = MHD_post_process(pp, req->body ? req->body : "", req->body_len);
    enum MHD_Result done = MHD_destroy_post_processor(pp);
    if (f->error[0])
        return -1;
    if (ok != MHD_YES || done != MHD_YES)
        return form_fail(f, 400, "the multipart/form-data body is malformed or cut short%s%s",
                         "", "");
    return 0;
}

int form_read(request *req, form *f, int raw)
{
    char why[128];
    f->max_photo = req->sv->max_body;
    if ((raw ? read_query(req, f) : read_multipart(req, f)) < 0)
        return -1;
    for (int i = 0; i < f->nnames; i++) {
        if (!f->values[i])
            continue;
        if (strlen(f->values[i]) != f->lens[i])
            return form_fail(f, 400, "field '%s' holds a NUL byte%s", f->names[i], "");
        if (!text_ok(f->values[i], why, sizeof(why)))
            return form_fail(f, 400, "field '%s' %s", f->names[i], why);
    }
    return 0;
}

void form_free(form *f)
{
    for (int i = 0; i < f->nnames; i++)
        free(f->values[i]);
    free(f->photo_owned);
    f->photo_owned = NULL;
    f->photo = NULL;
}

const void *form_photo(const form *f, int i, size_t *len)
{
    size_t start = i > 0 ? f->photo_ends[i - 1] : 0;
    *len = f->photo_ends[i] - start;
    return (const char *)f->photo + start;
}

const char *form_get(const form *f, const char *name)
{
    int i = field_index(f, name);
    return i >= 0 ? f->values[i] : NULL;
}
