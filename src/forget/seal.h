/*
 * seal.h: the personal data of a photo, sealed with the photo's own key.
 *
 * What is sealed (and so, once the photo's key is erased from the keyring,
 * unreadable in every copy of the catalog, backups included):
 *   photos      the SHA-256 of the bytes, their size, width and height
 *   provenance  path, photo id, URL, uploader, collected-at
 *   faces       box, detector score, template (the 128-D descriptor)
 * What stays in clear, because the datasheet aggregates it and it names no
 * one: kind, status, the number of faces found, source, license,
 * jurisdiction, consent basis, and the times lethe added the rows. Lookups by
 * SHA-256, photo id, URL or uploader go through hashes keyed with the
 * keyring's salt (useless without the keyring).
 *
 * A sealed value is XChaCha20-Poly1305 (libsodium's IETF construction):
 * a random 24-byte nonce, the ciphertext, a 16-byte tag. The associated data
 * binds it to its place: the table, the key's id and, for a face, its
 * number in the photo, for provenance the record's fingerprint; a value
 * moved to another row fails to open.
 */
#ifndef LETHE_SEAL_H
#define LETHE_SEAL_H

#include <stddef.h>
#include <stdint.h>

#define SEAL_KEY 32
#define SEAL_OVERHEAD 40 /* nonce + tag */
#define SEAL_DIM 128

enum seal_kind { SEAL_PHOTO = 1, SEAL_PROV = 2, SEAL_FACE = 3 };

typedef struct seal_photo {
    uint8_t sha[32];
    int64_t bytes;   /* -1: not a file (a descriptor row) */
    int32_t width, height;
} seal_photo;

/* The personal provenance fields (NUL-terminated; NULL reads as ""). */
enum { SP_PATH, SP_PHOTO_ID, SP_URL, SP_UPLOADER, SP_COLLECTED_AT, SP_FIELDS };

typedef struct seal_face {
    float box[4];
    float score;
    int has_template;
    float tmpl[SEAL_DIM];
} seal_face;

/*
 * Seal plain (n bytes) into a new buffer *out of n + SEAL_OVERHEAD bytes
 * (lethe_free). bind is the place (up to 64 bytes). Opening fails with
 * LETHE_ERR_FORMAT when the key, the place or a byte is wrong.
 */
int seal_bytes(const uint8_t key[SEAL_KEY], int kind, uint64_t key_id, const void *bind,
               size_t bind_len, const void *plain, size_t n, uint8_t **out, size_t *out_len);
int seal_open(const uint8_t key[SEAL_KEY], int kind, uint64_t key_id, const void *bind,
              size_t bind_len, const uint8_t *sealed, size_t n, uint8_t **plain,
              size_t *plain_len);

/* The three row kinds. Strings from seal_prov_open are one allocation:
 * free fields[0] only (lethe_free). */
int seal_photo_seal(const uint8_t key[SEAL_KEY], uint64_t key_id, const seal_photo *p,
                    uint8_t **out, size_t *out_len);
int seal_photo_open(const uint8_t key[SEAL_KEY], uint64_t key_id, const uint8_t *sealed,
                    size_t n, seal_photo *p);
int seal_prov_seal(const uint8_t key[SEAL_KEY], uint64_t key_id, const uint8_t fp[32],
                   const char *const fields[SP_FIELDS], uint8_t **out, size_t *out_len);
int seal_prov_open(const uint8_t key[SEAL_KEY], uint64_t key_id, const uint8_t fp[32],
                   const uint8_t *sealed, size_t n, char *fields[SP_FIELDS]);
int seal_face_seal(const uint8_t key[SEAL_KEY], uint64_t key_id, int ord, const seal_face *f,
                   uint8_t **out, size_t *out_len);
int seal_face_open(const uint8_t key[SEAL_KEY], uint64_t key_id, int ord, const uint8_t *sealed,
                   size_t n, seal_face *f);

#endif
