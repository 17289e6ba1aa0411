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
 * operations cannot matter. The consent policy in force is one more record,
 * folded out and in when it changes, so an edit of the catalog's policy
 * shows in `lethe digest --full`. The printed digest is BLAKE2b-256 of the
 * state.
 *
 * Records carry no row ids, no keys and no times, only content (opened with
 * the photos' keys: the same content sealed under other keys has the same
 * digest). Every change to a
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

static void put_str(crypto_generichash_state *h, const char *s)
{
    put(h, s ? s : "", s ? strlen(s) : 0);
}

/* Add (sign 1) or subtract (-1) the record whose key is the hash in h. */
static void fold(uint16_t *state, int sign, crypto_generichash_state *h)
{
    uint8_t key[crypto_stream_chacha20_KEYBYTES];
    static const uint8_t nonce[crypto_stream_chacha20_NONCEBYTES];
    uint16_t lanes[DIGEST_LANES];
    crypto_generichash_final(h, key, sizeof(key));
    crypto_stream_chacha20((uint8_t *)lanes, sizeof(lanes), nonce, key);
    if (sign > 0)
        for (int i = 0; i < DIGEST_LANES; i++)
            state[i] = (uint16_t)(state[i] + lanes[i]);
    else
        for (int i = 0; i < DIGEST_LANES; i++)
            state[i] = (uint16_t)(state[i] - lanes[i]);
}

static void start(crypto_generichash_state *h, const char *tag)
{
    crypto_generichash_init(h, NULL, 0, crypto_stream_chacha20_KEYBYTES);
    put_str(h, tag);
}

void dg_fold_text(uint16_t *state, int sign, const char *tag, const char *text)
{
    crypto_generichash_state h;
    start(&h, tag);
    put_str(&h, text);
    fold(state, sign, &h);
}

/* Fold every record of an opened photo: its row, provenance, faces. */
static void fold_photo(uint16_t *state, int sign, const photo_rows *r)
{
    crypto_generichash_state h;
    int64_t v[3] = {r->ph.bytes, r->ph.width, r->ph.height};
    int64_t found = r->faces_found;
    start(&h, "photo");
    put(&h, r->ph.sha, 32);
    put_str(&h, r->kind);
    put_str(&h, r->status);
    put(&h, v, sizeof(v));
    put(&h, &found, sizeof(found));
    fold(state, sign, &h);
    for (int i = 0; i < r->nprov; i++) {
        start(&h, "provenance");
        put(&h, r->ph.sha, 32);
        for (int k = 0; k < PV_FIELDS; k++)
            put_str(&h, r->prov[i].v[k]);
        fold(state, sign, &h);
    }
    for (int i = 0; i < r->nfaces; i++) {
        const seal_face *f = &r->faces[i].f;
        int32_t ord = r->faces[i].ord, has = f->has_template;
        start(&h, "face");
        put(&h, r->ph.sha, 32);
        put(&h, &ord, sizeof(ord));
        put(&h, f->box, sizeof(f->box));
        put(&h, &f->score, sizeof(f->score));
        put(&h, &has, sizeof(has));
        if (has)
            put(&h, f->tmpl, sizeof(f->tmpl));
        fold(state, sign, &h);
    }
}

void store_dg_rows(lethe_store *s, const photo_rows *r, int sign)
{
    s->dig_dirty = 1;
    fold_photo(s->dig, sign, r);
}

int dg_photo(lethe_store *s, uint16_t *state, int64_t photo, int sign)
{
    photo_rows r;
    /* A row that fails to come back would leave the digest wrong for good:
     * any failure fails the whole change. */
    int rc = rows_read(s, photo, &r);
    if (rc == LETHE_ERR_NOT_FOUND)
        return LETHE_OK; /* no such photo: nothing to fold */
    if (rc)
        return rc;
    fold_photo(state, sign, &r);
    rows_free(&r);
    return LETHE_OK;
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
    if (rc == LETHE_OK && (rc = store_prepare(s, "SELECT text FROM policy ORDER BY version DESC "
                                                 "LIMIT 1", &st)) == LETHE_OK) {
        int step2 = sqlite3_step(st);
        const char *text = step2 == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
        if (text)
            dg_fold_text(state, 1, "policy", text);
        else if (step2 == SQLITE_DONE)
            rc = store_fail(s, LETHE_ERR_STORE, "the catalog holds no consent policy");
        else /* a failed read, not a missing policy */
            rc = store_sqlfail(s, "reading the consent policy");
        sqlite3_finalize(st);
    }
    return rc;
}

int dg_load(lethe_store *s, uint16_t *state)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s, "SELECT value FROM meta WHERE key = 'digest_state'", &st);
    if (rc)
        return rc;
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW &&
        sqlite3_column_bytes(st, 0) == (int)(DIGEST_LANES * sizeof(uint16_t))) {
        memcpy(state, sqlite3_column_blob(st, 0), DIGEST_LANES * sizeof(uint16_t));
    } else if (step == SQLITE_ROW || step == SQLITE_DONE) {
        rc = store_fail(s, LETHE_ERR_STORE, "meta.digest_state is missing or damaged");
    } else {
        rc = store_sqlfail(s, "reading the digest");
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

void dg_final(const uint16_t *state, char hex[65])
{
    crypto_generichash_state h;
    uint8_t out[32];
    crypto_generichash_init(&h, NULL, 0, sizeof(out));
    put(&h, "lethe-digest-v3", 15);
    put(&h, state, DIGEST_LANES * sizeof(uint16_t));
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
    store_end_read(s);
    if (rc == LETHE_OK)
        dg_final(state, hex);
    return rc;
}

int lethe_store_digest_full(lethe_store *s, char hex[65], int *matches)
{
    uint16_t full[DIGEST_LANES], kept[DIGEST_LANES];
    int rc = store_exec(s, "BEGIN");
    if (rc)
        return rc;
    rc = dg_full(s, full);
    if (rc == LETHE_OK && matches) {
        /* a kept state missing or damaged does not match; a failed read
         * (out of memory) is an error, not a mismatch */
        int kr = dg_load(s, kept);
        *matches = kr == LETHE_OK && !memcmp(full, kept, sizeof(full));
        if (kr != LETHE_OK && kr != LETHE_ERR_STORE)
            rc = kr;
    }
    store_end_read(s);
    if (rc == LETHE_OK)
        dg_final(full, hex);
    return rc;
}
