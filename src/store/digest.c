/*
 * digest.c: the store's canonical digest, kept up to date incrementally.
 *
 * The digest must not depend on history (a store that ingested A and B and
 * then forgot B equals one that only ingested A), and a receipt needs it
 * before and after every erasure, so on a million faces it cannot be a hash
 * over a sorted scan each time. It is a multiset hash (LtHash, as in
 * Bellare-Micciancio's AdHash family): every logical record (a photo, a
 * provenance record, a face with its template) is hashed with BLAKE2b to a
 * key, the key is expanded with ChaCha20 to 1024 16-bit lanes, and the
 * store's state is the lane-wise sum modulo 2^16 of all its records. Adding
 * a record adds its lanes, removing one subtracts them: the order of
 * operations cannot matter. The printed digest is BLAKE2b-256 of the state
 * and the consent policy's canonical text.
 *
 * Records carry no row ids and no times, only content. Every change to a
 * photo's rows goes through dg_photo(-1) before and dg_photo(+1) after, in
 * the same transaction; store_begin() loads the state and store_commit()
 * saves it with the rest. `lethe digest --full` recomputes the state from
 * scratch, which tests compare with the kept one.
 */
#include <sodium.h>
#include <string.h>

#include "store/store.h"
#include "util/util.h"

static void put(crypto_generichash_state *h, const void *p, size_t n)
{
    uint64_t len = n;
    crypto_generichash_update(h, (const uint8_t *)&len, sizeof(len));
    crypto_generichash_update(h, p, n);
}

static void put_col(crypto_generichash_state *h, sqlite3_stmt *st, int col)
{
    int t = sqlite3_column_type(st, col);
    uint8_t tag = (uint8_t)t;
    crypto_generichash_update(h, &tag, 1);
    if (t == SQLITE_INTEGER) {
        int64_t v = sqlite3_column_int64(st, col);
        put(h, &v, sizeof(v));
    } else if (t == SQLITE_FLOAT) {
        double v = sqlite3_column_double(st, col);
        put(h, &v, sizeof(v));
    } else if (t == SQLITE_TEXT || t == SQLITE_BLOB) {
        const void *p = t == SQLITE_TEXT ? (const void *)sqlite3_column_text(st, col)
                                         : sqlite3_column_blob(st, col);
        put(h, p, (size_t)sqlite3_column_bytes(st, col));
    }
}

/* Add (sign 1) or subtract (-1) the record made of a tag, the photo's hash
 * and columns [from, to) of the current row. */
static void fold_row(uint16_t *state, int sign, const char *tag, const void *sha,
                     sqlite3_stmt *st, int from, int to)
{
    crypto_generichash_state h;
    uint8_t key[crypto_stream_chacha20_KEYBYTES];
    static const uint8_t nonce[crypto_stream_chacha20_NONCEBYTES];
    uint16_t lanes[DIGEST_LANES];
    crypto_generichash_init(&h, NULL, 0, sizeof(key));
    put(&h, tag, strlen(tag));
    put(&h, sha, 32);
    for (int c = from; c < to; c++)
        put_col(&h, st, c);
    crypto_generichash_final(&h, key, sizeof(key));
    crypto_stream_chacha20((uint8_t *)lanes, sizeof(lanes), nonce, key);
    if (sign > 0)
        for (int i = 0; i < DIGEST_LANES; i++)
            state[i] = (uint16_t)(state[i] + lanes[i]);
    else
        for (int i = 0; i < DIGEST_LANES; i++)
            state[i] = (uint16_t)(state[i] - lanes[i]);
}

static const char photo_sql[] =
    "SELECT sha256, kind, bytes, width, height, status FROM photos WHERE id = ?";
static const char prov_sql[] =
    "SELECT path, photo_id, url, uploader, source, license, jurisdiction, consent, "
    "collected_at FROM provenance WHERE photo = ?";
static const char face_sql[] =
    "SELECT ord, x, y, w, h, score, descriptor FROM faces WHERE photo = ?";

int dg_photo(lethe_store *s, uint16_t *state, int64_t photo, int sign)
{
    sqlite3_stmt *ph = NULL, *pv = NULL, *fc = NULL;
    uint8_t sha[32];
    int rc, step;
    /* Run for every photo an ingest or an erasure touches: the statements
     * are prepared once per store. */
    if ((rc = store_cached(s, STORE_STMT_DG_PHOTO, photo_sql, &ph)) ||
        (rc = store_cached(s, STORE_STMT_DG_PROV, prov_sql, &pv)) ||
        (rc = store_cached(s, STORE_STMT_DG_FACE, face_sql, &fc)))
        return rc;
    sqlite3_bind_int64(ph, 1, photo);
    step = sqlite3_step(ph);
    if (step != SQLITE_ROW) {
        /* no such photo: nothing to fold */
        rc = step == SQLITE_DONE ? LETHE_OK : store_sqlfail(s, "digest");
        goto out;
    }
    if (sqlite3_column_bytes(ph, 0) != 32) {
        rc = store_fail(s, LETHE_ERR_STORE, "photo %lld has a damaged hash", (long long)photo);
        goto out;
    }
    memcpy(sha, sqlite3_column_blob(ph, 0), 32);
    fold_row(state, sign, "photo", sha, ph, 1, 6);
    /* A row that fails to come back would leave the digest wrong for good:
     * any step error fails the whole change. */
    sqlite3_bind_int64(pv, 1, photo);
    while ((step = sqlite3_step(pv)) == SQLITE_ROW)
        fold_row(state, sign, "provenance", sha, pv, 0, 9);
    if (step != SQLITE_DONE) {
        rc = store_sqlfail(s, "digest");
        goto out;
    }
    sqlite3_bind_int64(fc, 1, photo);
    while ((step = sqlite3_step(fc)) == SQLITE_ROW)
        fold_row(state, sign, "face", sha, fc, 0, 7);
    if (step != SQLITE_DONE)
        rc = store_sqlfail(s, "digest");
out:
    sqlite3_reset(ph);
    sqlite3_reset(pv);
    sqlite3_reset(fc);
    return rc;
}

int dg_full(lethe_store *s, uint16_t *state)
{
    sqlite3_stmt *st = NULL;
    int rc, step;
    memset(state, 0, DIGEST_LANES * sizeof(uint16_t));
    if ((rc = store_prepare(s, "SELECT id FROM photos", &st)))
        return rc;
    while ((step = sqlite3_step(st)) == SQLITE_ROW)
        if ((rc = dg_photo(s, state, sqlite3_column_int64(st, 0), 1)))
            break;
    sqlite3_finalize(st);
    if (rc == LETHE_OK && step != SQLITE_DONE)
        rc = store_sqlfail(s, "digest");
    return rc;
}

int dg_load(lethe_store *s, uint16_t *state)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s, "SELECT value FROM meta WHERE key = 'digest_state'", &st);
    if (rc)
        return rc;
    if (sqlite3_step(st) == SQLITE_ROW &&
        sqlite3_column_bytes(st, 0) == (int)(DIGEST_LANES * sizeof(uint16_t))) {
        memcpy(state, sqlite3_column_blob(st, 0), DIGEST_LANES * sizeof(uint16_t));
    } else {
        rc = store_fail(s, LETHE_ERR_STORE, "meta.digest_state is missing or damaged");
    }
    sqlite3_finalize(st);
    return rc;
}

int dg_save(lethe_store *s, const uint16_t *state)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s, "INSERT OR REPLACE INTO meta(key, value) VALUES ('digest_state', ?)",
                           &st);
    if (rc)
        return rc;
    sqlite3_bind_blob(st, 1, state, DIGEST_LANES * sizeof(uint16_t), SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = store_sqlfail(s, "saving the digest");
    sqlite3_finalize(st);
    return rc;
}

void dg_final(lethe_store *s, const uint16_t *state, char hex[65])
{
    crypto_generichash_state h;
    uint8_t out[32];
    char *pol = policy_format(s->pol);
    crypto_generichash_init(&h, NULL, 0, sizeof(out));
    put(&h, "lethe-digest-v2", 15);
    put(&h, state, DIGEST_LANES * sizeof(uint16_t));
    put(&h, pol ? pol : "", pol ? strlen(pol) : 0);
    lethe_free(pol);
    crypto_generichash_final(&h, out, sizeof(out));
    sodium_bin2hex(hex, 65, out, sizeof(out));
}

int lethe_store_digest(lethe_store *s, char hex[65])
{
    uint16_t state[DIGEST_LANES];
    int rc = store_exec(s, "BEGIN");
    if (rc)
        return rc;
    rc = dg_load(s, state);
    store_exec(s, "COMMIT");
    if (rc == LETHE_OK)
        dg_final(s, state, hex);
    return rc;
}

int lethe_store_digest_full(lethe_store *s, char hex[65], int *matches)
{
    uint16_t full[DIGEST_LANES], kept[DIGEST_LANES];
    int rc = store_exec(s, "BEGIN");
    if (rc)
        return rc;
    rc = dg_full(s, full);
    if (rc == LETHE_OK && matches)
        *matches = dg_load(s, kept) == LETHE_OK && !memcmp(full, kept, sizeof(full));
    store_exec(s, "COMMIT");
    if (rc == LETHE_OK)
        dg_final(s, full, hex);
    return rc;
}
