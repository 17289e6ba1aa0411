/*
 * manifest_api.c: the public face of the manifest readers: manifests from
 * files and from memory (manifest.c) and raw float32 descriptors with a
 * sidecar (raw.c), all yielding the same lethe_manifest_row.
 */
#include <string.h>

#include "lethe.h"
#include "manifest/manifest.h"
#include "util/util.h"

struct lethe_manifest {
    manifest *m;       /* a manifest, or NULL ... */
    raw_reader *raw;   /* ... raw descriptors with their sidecar */
    manifest_row row;  /* the last row read */
};

#define KNOWN_FLAGS \
    (LETHE_MANIFEST_DESCRIPTORS | LETHE_MANIFEST_PROVENANCE | LETHE_MANIFEST_ALLOW_OUTSIDE)

/* Options from the public flags; LETHE_ERR_ARG for flags it does not know. */
static int options_from(unsigned flags, manifest_options *o, char *msg, size_t msg_len)
{
    manifest_options_init(o);
    if (flags & ~KNOWN_FLAGS)
        return lethe_fail(msg, msg_len, LETHE_ERR_ARG, "unknown manifest flags %#x",
                          flags & ~KNOWN_FLAGS);
    o->mode = (flags & LETHE_MANIFEST_DESCRIPTORS)  ? MANIFEST_DESCRIPTORS
              : (flags & LETHE_MANIFEST_PROVENANCE) ? MANIFEST_PROVENANCE
                                                    : MANIFEST_PHOTOS;
    o->allow_outside = (flags & LETHE_MANIFEST_ALLOW_OUTSIDE) != 0;
    return LETHE_OK;
}

/* A new handle, or NULL with msg set. */
static lethe_manifest *handle_new(lethe_manifest **out, char *msg, size_t msg_len)
{
    lethe_manifest *lm;

    if (!out) {
        lethe_fail(msg, msg_len, LETHE_ERR_ARG, "no place for the manifest");
        return NULL;
    }
    *out = NULL;
    lm = lethe_calloc(1, sizeof(*lm));
    if (!lm)
        lethe_fail(msg, msg_len, LETHE_ERR_NOMEM, "out of memory");
    return lm;
}

/* Hand lm out if rc is LETHE_OK, else free it; returns rc. */
static int handle_done(lethe_manifest *lm, int rc, lethe_manifest **out)
{
    if (rc != LETHE_OK) {
        lethe_manifest_close(lm);
        return rc;
    }
    *out = lm;
    return LETHE_OK;
}

int lethe_manifest_open(const char *file, unsigned flags, lethe_manifest **out, char *msg,
                        size_t msg_len)
{
    manifest_options o;
    lethe_manifest *lm = handle_new(out, msg, msg_len);
    int rc;

    if (!lm)
        return out ? LETHE_ERR_NOMEM : LETHE_ERR_ARG;
    rc = options_from(flags, &o, msg, msg_len);
    if (rc == LETHE_OK)
        rc = manifest_open_ex(file, &o, &lm->m, msg, msg_len);
    return handle_done(lm, rc, out);
}

int lethe_manifest_open_mem(const void *data, size_t len, const char *name,
                            const char *base_dir, unsigned flags, lethe_manifest **out,
                            char *msg, size_t msg_len)
{
    manifest_options o;
    lethe_manifest *lm = handle_new(out, msg, msg_len);
    int rc;

    if (!lm)
        return out ? LETHE_ERR_NOMEM : LETHE_ERR_ARG;
    rc = options_from(flags, &o, msg, msg_len);
    if (rc == LETHE_OK) {
        o.base_dir = base_dir;
        o.format = manifest_format_for_name(name);
        rc = manifest_open_mem(data, data ? len : 0, &o, &lm->m, msg, msg_len);
    }
    return handle_done(lm, rc, out);
}

int lethe_manifest_open_raw(const char *f32_file, const char *sidecar, unsigned flags,
                            lethe_manifest **out, char *msg, size_t msg_len)
{
    lethe_manifest *lm = handle_new(out, msg, msg_len);
    int rc;

    if (!lm)
        return out ? LETHE_ERR_NOMEM : LETHE_ERR_ARG;
    rc = flags ? lethe_fail(msg, msg_len, LETHE_ERR_ARG, "unknown raw manifest flags %#x", flags)
               : raw_open(f32_file, sidecar, &lm->raw, msg, msg_len);
    return handle_done(lm, rc, out);
}

int lethe_manifest_open_raw_mem(const void *f32, size_t f32_len, const void *sidecar,
                                size_t sidecar_len, const char *sidecar_name, unsigned flags,
                                lethe_manifest **out, char *msg, size_t msg_len)
{
    lethe_manifest *lm = handle_new(out, msg, msg_len);
    int rc;

    if (!lm)
        return out ? LETHE_ERR_NOMEM : LETHE_ERR_ARG;
    rc = flags ? lethe_fail(msg, msg_len, LETHE_ERR_ARG, "unknown raw manifest flags %#x", flags)
               : raw_open_mem(f32, f32_len, sidecar, sidecar_len, sidecar_name, &lm->raw, msg,
                              msg_len);
    return handle_done(lm, rc, out);
}

int lethe_manifest_next(lethe_manifest *lm, lethe_manifest_row *row, char *msg, size_t msg_len)
{
    int r;

    if (!lm || !row) {
        lethe_fail(msg, msg_len, LETHE_ERR_ARG, "no manifest");
        return -2;
    }
    r = lm->raw ? raw_next(lm->raw, &lm->row, msg, msg_len)
                : manifest_next(lm->m, &lm->row, msg, msg_len);
    if (r != MANIFEST_ROW)
        return r == MANIFEST_END ? 0 : r == MANIFEST_BAD_ROW ? -1 : -2;
    const manifest_row *m = &lm->row;
    memset(row, 0, sizeof(*row));
    row->line = m->line;
    row->file = m->resolved;
    row->prov.path = m->resolved;
    row->prov.photo_id = m->photo_id;
    row->prov.url = m->url;
    row->prov.uploader = m->uploader;
    row->prov.source = m->source;
    row->prov.license = m->license;
    row->prov.jurisdiction = m->jurisdiction;
    row->prov.consent = m->consent ? consent_name(m->consent) : "";
    row->prov.collected_at = m->collected_at;
    row->embedding = m->has_embedding ? m->embedding : NULL;
    return 1;
}

size_t lethe_manifest_unknown_columns(const lethe_manifest *lm, const char *const **names)
{
    if (!lm) {
        if (names)
            *names = NULL;
        return 0;
    }
    return lm->raw ? raw_unknown_columns(lm->raw, names) : manifest_unknown_columns(lm->m, names);
}

void lethe_manifest_close(lethe_manifest *lm)
{
    if (!lm)
        return;
    manifest_close(lm->m);
    raw_close(lm->raw);
    lethe_free(lm);
}
