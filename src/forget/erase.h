/*
 * erase.h: the only code that removes personal data from the catalog.
 *
 * A whole photo goes with its key: its rows are deleted and its key is
 * destroyed after the commit. Part of a photo (some faces, its templates)
 * goes by re-keying the photo: what remains is sealed again under a new key
 * and the old key is destroyed, so an older copy of the catalog (a backup)
 * cannot be opened for this photo at all, and cannot bring back the part
 * that went. Both run inside a change (change.h) and fold the digest.
 */
#ifndef LETHE_ERASE_H
#define LETHE_ERASE_H

#include <stddef.h>
#include <stdint.h>

#include "forget/change.h"

/* What an erasure removed (added to, not reset). */
typedef struct erase_counts {
    uint64_t photos, provenance, faces, templates;
} erase_counts;

/* Erase whole photos. */
int erase_photos(change *c, const int64_t *ids, size_t n, erase_counts *counts);
/*
 * Erase part of one photo: the faces whose ids are in faces[0..nfaces), and
 * every template if drop_templates; status (NULL: unchanged) becomes the
 * photo's status. The photo is re-keyed whatever goes (a consent
 * withdrawal re-keys even a photo with nothing to drop).
 */
int erase_part(change *c, int64_t photo, const int64_t *faces, size_t nfaces, int drop_templates,
               const char *status, erase_counts *counts);

/*
 * The receipt of an erasure made in change c that is not lethe_forget's (a
 * model's retirement, forget/retire.c): r->digest_after is taken from the
 * change's digest, the receipt (kind, the selector's JSON members, r's
 * counts and digests) is signed, stored, logged by its hash and its hash
 * kept in the keyring, as lethe_forget does (forget.c). *receipt: the
 * caller's (lethe_free), set even on a later failure.
 */
struct lethe_forget_result;
int forget_receipt(change *c, const char *kind, const char *actor, const char *sel_members,
                   struct lethe_forget_result *r, char **receipt);

#endif
