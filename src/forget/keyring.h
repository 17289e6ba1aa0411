/*
 * keyring.h: the keyring, the file that makes forgetting final.
 *
 * Every photo's personal data in the catalog is sealed (encrypted and
 * authenticated, seal.h) with a key of its own, and those keys live here,
 * in a file apart from the catalog that no backup ever contains. Erasing a
 * photo zeroes its key in place (and in the mirror): from then on no copy of
 * the catalog, however old, on whatever tape, can be read for that photo.
 *
 * The keyring also holds what forgetting must keep when the catalog is lost:
 * the secret that keys the lookup hashes (the salt), the receipt-signing
 * secret, the standing opt-outs (which contain keyed hashes and, for a face
 * opt-out, the person's descriptors: they are never in the catalog, so never
 * in a backup), and the hashes of the receipts the store issued.
 *
 * The file (all integers little-endian):
 *
 *   offset 0     header copy A (512 bytes)
 *   offset 512   header copy B (512 bytes)
 *   offset 1024  slots of 64 bytes
 *
 *   header:  "LETHEKEY" | u32 version (1) | u32 slot size (64) |
 *            u64 generation | store id [16] | salt [32] |
 *            Ed25519 secret key [64] | u32 signing epoch | zeros |
 *            [480..512) BLAKE2b-256 of bytes [0..480)
 *   The valid copy with the higher generation is current; a change writes
 *   the other copy, so a torn header write leaves the previous one.
 *
 *   slot:    u8 kind | u8 flags | u16 count | u32 length | u64 id |
 *            data [32] | [48..64) BLAKE2b-128 of (u64 slot number, bytes
 *            [0..48))
 *   A record takes `count` consecutive slots (the first has flags without
 *   KR_CONT, `length` payload bytes; each further slot has KR_CONT and its
 *   index in `count`), 32 payload bytes a slot. A slot of 64 zero bytes is
 *   free. The check ties a slot to its place, so a slot copied elsewhere or
 *   half written is seen as damaged, never as another record.
 *
 * Writes: a change first writes its slots, fsyncs, then writes the next
 * header copy with the generation increased, and fsyncs; then the same to
 * the mirror (MIRROR_DIR/<store id>.keyring) when one is set. A mirror whose
 * generation differs from the keyring's (a write that failed, a mirror newly
 * set) is replaced by a full copy when the keyring is opened for writing.
 *
 * Concurrency: one writing handle at a time (the store's writer lock; a
 * writable handle calls kr_refresh when it takes it, as another may have
 * written since); readers of other processes pread slots while it writes. A reader never
 * sees a new key before the catalog rows that use it are committed, nor an
 * old one after its erasure commits and the writer zeroes it (it then reads
 * a free slot: the photo is gone).
 */
#ifndef LETHE_KEYRING_H
#define LETHE_KEYRING_H

#include <stddef.h>
#include <stdint.h>

#define KR_HEADER 512
#define KR_SLOTS_AT 1024
#define KR_SLOT 64
#define KR_DATA 32
#define KR_KEY 32
#define KR_STORE_ID 16
#define KR_SALT 32
#define KR_MAX_RECORD (1u << 20) /* payload bytes of one record */

enum kr_kind { KR_FREE = 0, KR_PHOTO = 1, KR_OPTOUT = 2, KR_RECEIPT = 3 };

/* Slot flags. */
#define KR_CONT 1u    /* a continuation slot of a record */
#define KR_PENDING 2u /* a record written before its change committed */

typedef struct keyring keyring;

/* Where a record is: its first slot and its id (a random 63-bit number). */
typedef struct kr_ref {
    uint64_t slot;
    uint64_t id;
} kr_ref;

/* Create a new keyring at path (which must not exist) with fresh secrets. */
int kr_create(const char *path, const uint8_t store_id[KR_STORE_ID], keyring **out, char *msg,
              size_t msg_len);
/* Open path; writable handles may change it. LETHE_ERR_NOT_FOUND when the
 * file does not exist, LETHE_ERR_FORMAT when it is no keyring or damaged. */
int kr_open(const char *path, int writable, keyring **out, char *msg, size_t msg_len);
void kr_close(keyring *k); /* NULL is fine; wipes the secrets from memory */

/* Parse and check a header copy (512 bytes): 0 when valid. For the fuzz
 * target and for readers of a mirror. */
int kr_header_check(const uint8_t *hdr, uint64_t *generation, uint8_t store_id[KR_STORE_ID]);

const uint8_t *kr_store_id(const keyring *k);
const uint8_t *kr_salt(const keyring *k);
uint64_t kr_generation(const keyring *k);
/* The receipt-signing key pair (the public key derived from the secret). */
void kr_signing_key(const keyring *k, uint8_t pk[32], uint8_t sk[64]);
uint32_t kr_signing_epoch(const keyring *k);
/* A new signing key (the old secret is overwritten): written at once. */
int kr_rotate_signing_key(keyring *k, char *msg, size_t msg_len);
/* Slots in the file (free ones included). */
uint64_t kr_slot_count(const keyring *k);

/*
 * The mirror: a second copy kept at dir/<store id>.keyring and written at
 * every change. Opening it compares generations and writes a full copy
 * when they differ. dir NULL stops mirroring.
 */
int kr_set_mirror(keyring *k, const char *dir, char *msg, size_t msg_len);
/* The mirror file's path for a store id (lethe_free), for restore. */
char *kr_mirror_path(const char *dir, const uint8_t store_id[KR_STORE_ID]);

/*
 * Another handle (another process) may have written the keyring since this
 * one last did: read the current header again (generation, signing key)
 * and, when the file changed, forget which slots were free. A writer calls
 * it when it takes the store's lock, before it stages anything; a handle
 * that kept its old map would hand out slots the other wrote, destroying
 * their keys.
 */
int kr_refresh(keyring *k, char *msg, size_t msg_len);
/* The mirror file this handle writes, or NULL. */
const char *kr_mirror_file(const keyring *k);

/* A photo key: LETHE_OK, or LETHE_ERR_NOT_FOUND when it was erased (or the
 * slot was reused), LETHE_ERR_FORMAT when the slot is damaged. Sees keys
 * staged by this handle and not yet flushed. Thread-safe for readers. */
int kr_get_key(keyring *k, kr_ref ref, uint8_t key[KR_KEY]);

/* A record (opt-out): its payload into a new buffer (lethe_free), its flags. */
int kr_get_record(keyring *k, kr_ref ref, int kind, uint8_t **payload, size_t *len,
                  unsigned *flags);

/*
 * Staging (writable handles only): a new photo key (random) or a record is
 * given a place and kept in memory until kr_flush writes it. kr_flush makes
 * every staged record durable in the keyring and its mirror; a change
 * calls it before its catalog commit. kr_discard drops staged records
 * (after a failed commit; nothing was referenced by them).
 */
int kr_new_key(keyring *k, kr_ref *ref, uint8_t key[KR_KEY]);
int kr_new_record(keyring *k, int kind, unsigned flags, const void *payload, size_t len,
                  kr_ref *ref);
int kr_flush(keyring *k, char *msg, size_t msg_len);
void kr_discard(keyring *k);
/* Records staged and not yet flushed. */
size_t kr_staged(const keyring *k);

/*
 * After a commit: zero records (in the keyring and the mirror) and clear
 * the KR_PENDING flag of others, in one write pass with one generation.
 * A ref whose slot no longer holds that id is left alone.
 */
int kr_shred(keyring *k, const kr_ref *refs, size_t n, char *msg, size_t msg_len);
int kr_settle(keyring *k, const kr_ref *refs, size_t n, char *msg, size_t msg_len);

/* Every record, in slot order: fn gets the kind, the ref, flags and payload
 * (valid during the call); a non-zero return stops (and is returned).
 * *damaged (may be NULL) counts slots that fail their check. */
typedef int (*kr_record_fn)(void *ctx, int kind, kr_ref ref, unsigned flags,
                            const uint8_t *payload, size_t len);
int kr_foreach(keyring *k, kr_record_fn fn, void *ctx, uint64_t *damaged, char *msg,
               size_t msg_len);

#endif
