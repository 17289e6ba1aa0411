/*
 * manifest_api.c: the public face of the manifest reader (manifest.c).
 */
#include <string.h>

#include "manifest/manifest.h"
#include "lethe.h"
#include "util/util.h"

struct lethe_manifest {
    manifest *m;
    manifest_row row;
};

int lethe_manifest_open(const char *file, unsigned flags, lethe_manifest **out, char *msg,
                        size_t msg_len)
{
    lethe_manifest *lm = lethe_calloc(1, sizeof(*lm));
    *out = NULL;
    if (!lm)
        return lethe_fail(msg, msg_len, LETHE_ERR_NOMEM, "out of memory");
    int mode = (flags & LETHE_MANIFEST_DESCRIPTORS)   ? MANIFEST_DESCRIPTORS
             : (flags & LETHE_MANIFEST_PROVENANCE) ? MANIFEST_PROVENANCE
                                                    : MANIFEST_PHOTOS;
    int rc = manifest_open(file, mode, &lm->m, msg, msg_len);
    if (rc != LETHE_OK) {
        lethe_free(lm);
        return rc;
    }
    *out = lm;
    return LETHE_OK;
}

int lethe_manifest_next(lethe_manifest *lm, lethe_manifest_row *row, char *msg, size_t msg_len)
{
    int r = manifest_next(lm->m, &lm->row, msg, msg_len);
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
    return manifest_unknown_columns(lm->m, names);
}

void lethe_manifest_close(lethe_manifest *lm)
{
    if (!lm)
        return;
    manifest_close(lm->m);
    lethe_free(lm);
}
