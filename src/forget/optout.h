/*
 * optout.h: standing opt-outs, recorded and matched in one place.
 *
 * An opt-out is a refusal that holds: photos and faces it selects are
 * erased when it is made and refused by every later ingest. It is kept in
 * the keyring (never in the catalog, so never in a backup) as keyed hashes
 * of the selector's values (never the values) and, for a face opt-out, the
 * person's descriptors, which are used for nothing but refusing. The
 * catalog keeps a summary without personal data (optouts table: when, the
 * receipt, which kinds of selector) so it can be listed and withdrawn.
 */
#ifndef LETHE_OPTOUT_H
#define LETHE_OPTOUT_H

#include <stddef.h>
#include <stdint.h>

#include "lethe.h"

/* Selector parts an opt-out may hold (bits of optout.present). */
enum { OPT_PHOTO_ID, OPT_URL, OPT_UPLOADER, OPT_SOURCE, OPT_JURISDICTION, OPT_SHA, OPT_HASHES };
#define OPT_COLLECTED_BEFORE (1u << OPT_HASHES)

typedef struct optout {
    unsigned present;          /* 1 << OPT_* and OPT_COLLECTED_BEFORE */
    uint8_t h[OPT_HASHES][32]; /* keyed hashes (store_hash, the lookup tags) */
    char collected_before[40];
    int include_undated;
    float threshold;           /* face opt-outs */
    int nfaces;
    float *faces;              /* nfaces x 128 */
    uint8_t receipt[32];       /* BLAKE2b-256 of the opt-out's receipt */
    char created_at[32];
} optout;

/* The keyring payload of an opt-out, and back (faces allocated). */
int optout_encode(const optout *o, uint8_t **out, size_t *len);
int optout_decode(const uint8_t *p, size_t len, optout *o);
void optout_clear(optout *o); /* wipes and frees the faces */

/* Every standing opt-out of the store (the catalog's summary names them;
 * their content comes from the keyring). */
int optout_load_all(lethe_store *s, optout **out, size_t *n);
void optout_free_all(optout *v, size_t n);

/* The hash tags of the selector parts (as in the provenance lookups). */
extern const char *const optout_tags[OPT_HASHES];

/*
 * Does opt-out o's selector (its non-face part) hold for a photo with this
 * SHA-256 and this provenance record (PV_* fields, canonical)?
 */
int optout_holds(lethe_store *s, const optout *o, const uint8_t sha[32],
                 const char *const v[]);
/* Photo opt-outs (no faces) that refuse the photo with this record. */
int optout_refuses_photo(lethe_store *s, const optout *v, size_t n, const uint8_t sha[32],
                         const char *const rec[]);
/* Face opt-outs whose other parts hold and one of whose faces is within
 * its threshold of desc. */
int optout_refuses_face(lethe_store *s, const optout *v, size_t n, const uint8_t sha[32],
                        const char *const rec[], const float *desc);

#endif
