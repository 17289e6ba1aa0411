/*
 * requests.h: data-subject requests inside the library (lethe.h, "Data-
 * subject requests"): the tables, the search counts lethe_search records,
 * and what the request files share.
 *
 * Tables (catalog.db), made at the first write that needs them (stores
 * made before requests existed gain them so):
 *   search_hits(photo, purpose, searches, last): how many searches
 *       returned a face of photo, by stated purpose. photo references
 *       photos(id) ON DELETE CASCADE: erasing a photo removes its counts
 *       in the same transaction (and secure_delete and the erasure's scrub
 *       zero them), so no count outlives the photo it was about.
 *   requests(id, token_h, action, by_kind, status, filed_at, decided_at,
 *       decided_by, note, sealed, receipt, receipt_hash, photos, faces,
 *       templates): token_h is the keyed hash of the request id's 32
 *       random bytes; sealed is what a pending request selects, sealed
 *       with a key derived from the keyring's salt (NULL once decided).
 * The operator's rules are meta.request_auto (a mask of 1 << by).
 */
#ifndef LETHE_REQUESTS_H
#define LETHE_REQUESTS_H

#include <stddef.h>
#include <stdint.h>

#include "lethe.h"

/* Inside lethe_search's transaction: the photos of one query's matches
 * m[0..n) were returned for purpose (each photo counted once). */
int hits_record(lethe_store *s, const char *purpose, const lethe_match *m, size_t n);
/* The counts of photo (a photos.id), most searches first: *out
 * (hits_free) holds *n. No table yet is no counts. */
int hits_read(lethe_store *s, int64_t photo, lethe_purpose_count **out, int *n);
void hits_free(lethe_purpose_count *c, int n);

/* Writable stores, inside a transaction: the requests table if missing. */
int requests_schema(lethe_store *s);
/* 1 if the catalog has table name, 0 if not, -1 on error (message set). */
int requests_table_exists(lethe_store *s, const char *name);

/* Request number's row into *info (selector left NULL); *token_h and
 * *sealed (lethe_free; NULL when decided) when not NULL. */
int request_read(lethe_store *s, int64_t number, lethe_request_info *info, uint8_t token_h[32],
                 uint8_t **sealed, size_t *sealed_len);
/* Open a sealed selector: *plain (lethe_free, wiped by the caller) of *n
 * bytes. */
int request_unseal(lethe_store *s, const uint8_t token_h[32], const uint8_t *sealed,
                   size_t len, uint8_t **plain, size_t *n);
/* "erase" / "optout". */
const char *request_action_name(int action);

#endif
