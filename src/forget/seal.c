/*
 * seal.c: sealing and opening a photo's rows with its key (see seal.h).
 * Plain encodings, all little-endian:
 *   photo:  sha256 [32] | i64 bytes | i32 width | i32 height
 *   prov:   five times (u32 length | bytes)
 *   face:   f32 box [4] | f32 score | u8 has_template | f32 template [128]
 *           when it has one
 */
#include "forget/seal.h"

#include <sodium.h>
#include <string.h>

#include "lethe.h"
#include "util/util.h"

#define NONCE crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define TAG crypto_aead_xchacha20poly1305_ietf_ABYTES

_Static_assert(NONCE + TAG == SEAL_OVERHEAD, "seal overhead");

/* The associated data: tag, kind, key id, bind. */
static size_t make_ad(uint8_t ad[96], int kind, uint64_t key_id, const void *bind, size_t n)
{
    static const char tag[] = "lethe-seal-1";
    size_t at = sizeof(tag) - 1;
    memcpy(ad, tag, at);
    ad[at++] = (uint8_t)kind;
    for (int i = 0; i < 8; i++)
        ad[at++] = (uint8_t)(key_id >> (8 * i));
    if (n > 64)
        n = 64;
    memcpy(ad + at, bind, n);
    return at + n;
}

int seal_bytes(const uint8_t key[SEAL_KEY], int kind, uint64_t key_id, const void *bind,
               size_t bind_len, const void *plain, size_t n, uint8_t **out, size_t *out_len)
{
    uint8_t ad[96];
    size_t adn = make_ad(ad, kind, key_id, bind, bind_len);
    uint8_t *buf = lethe_malloc(n + SEAL_OVERHEAD);
    unsigned long long clen = 0;
    *out = NULL;
    *out_len = 0;
    if (!buf)
        return LETHE_ERR_NOMEM;
    randombytes_buf(buf, NONCE);
    crypto_aead_xchacha20poly1305_ietf_encrypt(buf + NONCE, &clen, plain, n, ad, adn, NULL, buf,
                                               key);
    *out = buf;
    *out_len = NONCE + (size_t)clen;
    return LETHE_OK;
}

int seal_open(const uint8_t key[SEAL_KEY], int kind, uint64_t key_id, const void *bind,
              size_t bind_len, const uint8_t *sealed, size_t n, uint8_t **plain,
              size_t *plain_len)
{
    uint8_t ad[96];
    size_t adn = make_ad(ad, kind, key_id, bind, bind_len);
    unsigned long long m = 0;
    *plain = NULL;
    *plain_len = 0;
    if (!sealed || n < SEAL_OVERHEAD)
        return LETHE_ERR_FORMAT;
    uint8_t *buf = lethe_malloc(n - SEAL_OVERHEAD + 1);
    if (!buf)
        return LETHE_ERR_NOMEM;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(buf, &m, NULL, sealed + NONCE, n - NONCE, ad,
                                                   adn, sealed, key) != 0) {
        lethe_free(buf);
        return LETHE_ERR_FORMAT;
    }
    buf[m] = 0;
    *plain = buf;
    *plain_len = (size_t)m;
    return LETHE_OK;
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* -------------------------------------------------------------- photo */

int seal_photo_seal(const uint8_t key[SEAL_KEY], uint64_t key_id, const seal_photo *p,
                    uint8_t **out, size_t *out_len)
{
    uint8_t b[48];
    memcpy(b, p->sha, 32);
    for (int i = 0; i < 8; i++)
        b[32 + i] = (uint8_t)((uint64_t)p->bytes >> (8 * i));
    put32(b + 40, (uint32_t)p->width);
    put32(b + 44, (uint32_t)p->height);
    int rc = seal_bytes(key, SEAL_PHOTO, key_id, "", 0, b, sizeof(b), out, out_len);
    sodium_memzero(b, sizeof(b));
    return rc;
}

int seal_photo_open(const uint8_t key[SEAL_KEY], uint64_t key_id, const uint8_t *sealed,
                    size_t n, seal_photo *p)
{
    uint8_t *b;
    size_t len;
    int rc = seal_open(key, SEAL_PHOTO, key_id, "", 0, sealed, n, &b, &len);
    if (rc)
        return rc;
    if (len != 48) {
        lethe_free(b);
        return LETHE_ERR_FORMAT;
    }
    uint64_t v = 0;
    memcpy(p->sha, b, 32);
    for (int i = 7; i >= 0; i--)
        v = v << 8 | b[32 + i];
    p->bytes = (int64_t)v;
    p->width = (int32_t)get32(b + 40);
    p->height = (int32_t)get32(b + 44);
    sodium_memzero(b, len);
    lethe_free(b);
    return LETHE_OK;
}

/* --------------------------------------------------------- provenance */

int seal_prov_seal(const uint8_t key[SEAL_KEY], uint64_t key_id, const uint8_t fp[32],
                   const char *const fields[SP_FIELDS], uint8_t **out, size_t *out_len)
{
    size_t n = 0, len[SP_FIELDS];
    for (int i = 0; i < SP_FIELDS; i++) {
        len[i] = fields[i] ? strlen(fields[i]) : 0;
        if (len[i] > UINT32_MAX || !lethe_add_size(n, 4 + len[i], &n))
            return LETHE_ERR_TOO_LARGE;
    }
    uint8_t *b = lethe_malloc(n ? n : 1);
    if (!b)
        return LETHE_ERR_NOMEM;
    size_t at = 0;
    for (int i = 0; i < SP_FIELDS; i++) {
        put32(b + at, (uint32_t)len[i]);
        if (len[i])
            memcpy(b + at + 4, fields[i], len[i]);
        at += 4 + len[i];
    }
    int rc = seal_bytes(key, SEAL_PROV, key_id, fp, 32, b, n, out, out_len);
    sodium_memzero(b, n);
    lethe_free(b);
    return rc;
}

int seal_prov_open(const uint8_t key[SEAL_KEY], uint64_t key_id, const uint8_t fp[32],
                   const uint8_t *sealed, size_t n, char *fields[SP_FIELDS])
{
    uint8_t *b;
    size_t len, at = 0;
    int rc = seal_open(key, SEAL_PROV, key_id, fp, 32, sealed, n, &b, &len);
    if (rc)
        return rc;
    /* Rewrite in place: each length prefix becomes the previous field's
     * terminator, so the strings share one allocation (fields[0]). */
    char *base = lethe_malloc(len + SP_FIELDS);
    if (!base) {
        sodium_memzero(b, len);
        lethe_free(b);
        return LETHE_ERR_NOMEM;
    }
    size_t out = 0;
    for (int i = 0; i < SP_FIELDS; i++) {
        if (at + 4 > len || get32(b + at) > len - at - 4) {
            rc = LETHE_ERR_FORMAT;
            break;
        }
        uint32_t l = get32(b + at);
        fields[i] = base + out;
        memcpy(base + out, b + at + 4, l);
        base[out + l] = 0;
        out += l + 1;
        at += 4 + l;
    }
    if (rc == LETHE_OK && at != len)
        rc = LETHE_ERR_FORMAT;
    sodium_memzero(b, len);
    lethe_free(b);
    if (rc) {
        lethe_free(base);
        for (int i = 0; i < SP_FIELDS; i++)
            fields[i] = NULL;
    }
    return rc;
}

/* -------------------------------------------------------------- faces */

int seal_face_seal(const uint8_t key[SEAL_KEY], uint64_t key_id, int ord, const seal_face *f,
                   uint8_t **out, size_t *out_len)
{
    uint8_t b[4 * 5 + 1 + 4 * SEAL_DIM], bind[4];
    size_t n = 21;
    memcpy(b, f->box, 16);
    memcpy(b + 16, &f->score, 4);
    b[20] = f->has_template ? 1 : 0;
    if (f->has_template) {
        memcpy(b + 21, f->tmpl, 4 * SEAL_DIM);
        n += 4 * SEAL_DIM;
    }
    put32(bind, (uint32_t)ord);
    int rc = seal_bytes(key, SEAL_FACE, key_id, bind, 4, b, n, out, out_len);
    sodium_memzero(b, sizeof(b));
    return rc;
}

int seal_face_open(const uint8_t key[SEAL_KEY], uint64_t key_id, int ord, const uint8_t *sealed,
                   size_t n, seal_face *f)
{
    uint8_t *b, bind[4];
    size_t len;
    put32(bind, (uint32_t)ord);
    int rc = seal_open(key, SEAL_FACE, key_id, bind, 4, sealed, n, &b, &len);
    if (rc)
        return rc;
    memset(f, 0, sizeof(*f));
    if (len < 21 || (b[20] ? len != 21 + 4 * SEAL_DIM : len != 21)) {
        rc = LETHE_ERR_FORMAT;
    } else {
        memcpy(f->box, b, 16);
        memcpy(&f->score, b + 16, 4);
        f->has_template = b[20];
        if (f->has_template)
            memcpy(f->tmpl, b + 21, 4 * SEAL_DIM);
    }
    sodium_memzero(b, len);
    lethe_free(b);
    return rc;
}
