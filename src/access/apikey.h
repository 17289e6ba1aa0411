/*
 * apikey.h: the store's API keys (lethe.h, section 7) as the rest of the
 * library sees them: the table's schema, the log's check of the keys, and
 * the blanket revocation a restore without the live store makes.
 *
 * The table (catalog.db):
 *   api_keys(id, name, roles, rate_per_minute, daily_quota, verifier,
 *            created_at, add_seq, revoked_at, revoke_seq)
 * verifier is BLAKE2b-256 keyed with the keyring's salt over "api-key", the
 * id (8 bytes, little-endian) and the key's 32 secret bytes; add_seq and
 * revoke_seq are the log entries that made and revoked the key. Stores made
 * before keys existed gain the table at their first writable open.
 */
#ifndef LETHE_APIKEY_H
#define LETHE_APIKEY_H

#include <stddef.h>
#include <stdint.h>

#include "lethe.h"

/* The table's CREATE statement (store.c runs it for a new store). */
extern const char apikey_schema_sql[];

/* Writable stores: create the table when it is missing. */
int apikey_schema(lethe_store *s);

/* 1 if the catalog has the table, 0 if not, -1 on error (message set). */
int apikey_table_exists(lethe_store *s);

/*
 * Inside lethe_log_verify's read transaction: every key row is the one its
 * "key-add" entry records (the entry carries a hash of the row), a revoked
 * key names its "key-revoke" entry, a valid key has none, and every key the
 * log made is in the catalog. LETHE_OK, or LETHE_ERR_FORMAT with
 * *first_bad and the store's message set.
 */
int apikey_verify_log(lethe_store *s, uint64_t *first_bad);

/* The hash of a key's row as its "key-add" entry records it (unkeyed:
 * anyone holding the catalog and the log can check it). */
void apikey_record_hash(const lethe_key_info *k, const uint8_t *verifier, size_t vlen,
                        char hex[65]);

/* Inside an open transaction: revoke every valid key, each with a
 * "key-revoke" entry giving reason. *count (may be NULL) receives how many. */
int apikey_revoke_all(lethe_store *s, const char *actor, const char *reason, uint64_t *count);

#endif
