/*
 * subject.c: "what do you hold about me?" (lethe_subject_lookup): the
 * photos held for an account, a link, a photo id or an exact photo file,
 * each with its provenance, its consent basis, whether a face template
 * exists, and how many searches returned it for which stated purposes.
 * Never a template, a face box or who searched. The exact file is hashed
 * only: its bytes are never decoded. Logged as lethe_lookup logs, with a
 * keyed hash of the value.
 */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "requests/requests.h"
#include "store/store.h"
#include "util/util.h"

static void free_prov(lethe_provenance *p)
{
    const char *f[] = {p->path,    p->photo_id, p->url,          p->uploader,    p->source,
                       p->license, p->consent,  p->jurisdiction, p->collected_at};
    for (size_t k = 0; k < LETHE_ARRAY_LEN(f); k++)
        lethe_free((char *)f[k]);
}

void lethe_subject_photos_free(lethe_subject_photo *photos, size_t count)
{
    if (!photos)
        return;
    for (size_t i = 0; i < count; i++) {
        for (int k = 0; k < photos[i].nprov && photos[i].prov; k++)
            free_prov(&photos[i].prov[k]);
        lethe_free(photos[i].prov);
        hits_free(photos[i].purposes, photos[i].npurposes);
    }
    lethe_free(photos);
}

/* One provenance record's fields, copied. */
static int copy_prov(const prov_row *r, lethe_provenance *p)
{
    const char **dst[PV_FIELDS];
    dst[PV_PATH] = &p->path;
    dst[PV_PHOTO_ID] = &p->photo_id;
    dst[PV_URL] = &p->url;
    dst[PV_UPLOADER] = &p->uploader;
    dst[PV_COLLECTED_AT] = &p->collected_at;
    dst[PV_SOURCE] = &p->source;
    dst[PV_LICENSE] = &p->license;
    dst[PV_JURISDICTION] = &p->jurisdiction;
    dst[PV_CONSENT] = &p->consent;
    for (int k = 0; k < PV_FIELDS; k++)
        if (!(*dst[k] = lethe_strdup(r->v[k] ? r->v[k] : "")))
            return LETHE_ERR_NOMEM;
    return LETHE_OK;
}

/* Photo id's rows into *p. */
static int fill_photo(lethe_store *s, int64_t id, lethe_subject_photo *p)
{
    photo_rows r;
    int rc = rows_read(s, id, &r);
    if (rc)
        return rc;
    sodium_bin2hex(p->photo, sizeof(p->photo), r.ph.sha, 32);
    snprintf(p->kind, sizeof(p->kind), "%s", r.kind);
    snprintf(p->status, sizeof(p->status), "%s", r.status);
    snprintf(p->added_at, sizeof(p->added_at), "%s", r.added_at);
    p->faces = r.nfaces;
    for (int i = 0; i < r.nfaces; i++)
        p->templates += r.faces[i].f.has_template;
    if (r.nprov && !(p->prov = lethe_calloc((size_t)r.nprov, sizeof(*p->prov))))
        rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    for (int i = 0; i < r.nprov && rc == LETHE_OK; i++) {
        p->nprov = i + 1;
        if (copy_prov(&r.prov[i], &p->prov[i]))
            rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    }
    rows_free(&r);
    return rc ? rc : hits_read(s, id, &p->purposes, &p->npurposes);
}

/* The statement selecting the photos (as lethe_lookup's), and what the
 * log records. */
static int subject_stmt(lethe_store *s, int kind, const char *value, const void *bytes,
                        size_t len, sqlite3_stmt **st, char qhex[65])
{
    uint8_t h[32];
    int rc = store_lookup_stmt(s, kind, kind == LETHE_LOOKUP_FILE ? "the file given" : value,
                               kind == LETHE_LOOKUP_FILE ? bytes : NULL, len, st, h);
    if (rc == LETHE_OK)
        sodium_bin2hex(qhex, 65, h, 32);
    return rc;
}

static int check_subject(lethe_store *s, int kind, const char *value, const void *bytes,
                         size_t len, const char *actor)
{
    int rc;
    if (kind < LETHE_LOOKUP_UPLOADER || kind > LETHE_LOOKUP_FILE)
        return store_fail(s, LETHE_ERR_ARG, "unknown lookup kind %d", kind);
    if (kind == LETHE_LOOKUP_FILE && (!bytes || !len))
        return store_fail(s, LETHE_ERR_ARG, "a lookup by file needs the file's bytes");
    if (kind != LETHE_LOOKUP_FILE && (rc = store_check_text(s, "the value", value, 0)))
        return rc;
    return store_check_text(s, "the actor", actor, 1);
}

/* Every selected photo into a growing array. */
static int collect(lethe_store *s, sqlite3_stmt *st, lethe_subject_photo **out, size_t *n)
{
    size_t cap = 0;
    int step, rc = LETHE_OK;
    while (rc == LETHE_OK && (step = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            size_t nc = cap ? 2 * cap : 4;
            lethe_subject_photo *t = lethe_realloc(*out, nc * sizeof(*t));
            if (!t)
                return store_fail(s, LETHE_ERR_NOMEM, "out of memory");
            *out = t;
            cap = nc;
        }
        memset(&(*out)[*n], 0, sizeof(**out));
        (*n)++;
        rc = fill_photo(s, sqlite3_column_int64(st, 0), &(*out)[*n - 1]);
    }
    if (rc == LETHE_OK && step != SQLITE_DONE)
        rc = store_sqlfail(s, "looking up");
    return rc;
}

int lethe_subject_lookup(lethe_store *s, int kind, const char *value, const void *bytes,
                         size_t len, const char *actor, lethe_subject_photo **photos,
                         size_t *count)
{
    static const char *kinds[] = {"uploader", "url", "photo-id", "file"};
    sqlite3_stmt *st = NULL;
    char qhex[65];
    int rc;
    *photos = NULL;
    *count = 0;
    if ((rc = check_subject(s, kind, value, bytes, len, actor)) ||
        (rc = subject_stmt(s, kind, value, bytes, len, &st, qhex)))
        return rc;
    if ((rc = store_begin(s))) {
        sqlite3_finalize(st);
        return rc;
    }
    rc = collect(s, st, photos, count);
    sqlite3_finalize(st);
    /* logged if and only if it answered */
    if (rc == LETHE_OK)
        rc = store_log_append(s, "lookup", actor, kinds[kind], qhex, (int64_t)*count, NULL);
    if (rc == LETHE_OK)
        rc = store_commit(s);
    else
        store_rollback(s);
    if (rc) {
        lethe_subject_photos_free(*photos, *count);
        *photos = NULL;
        *count = 0;
    }
    return rc;
}
