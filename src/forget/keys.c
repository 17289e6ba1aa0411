/*
 * keys.c: the keyring as the operator sees it: the public signing key, its
 * rotation, the mirror, and a check of the keyring against the catalog.
 */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forget/change.h"
#include "store/store.h"
#include "util/strbuf.h"
#include "util/util.h"

int lethe_store_public_key(lethe_store *s, char hex[65])
{
    uint8_t pk[32], sk[64];
    kr_signing_key(s->kr, pk, sk);
    sodium_memzero(sk, sizeof(sk));
    sodium_bin2hex(hex, 65, pk, sizeof(pk));
    return LETHE_OK;
}

int lethe_keyring_rotate(lethe_store *s, const char *actor, char public_hex[65])
{
    char old[65], now[32], msg[512], detail[256];
    sqlite3_stmt *st;
    int rc;
    if ((rc = store_writable(s)) || (rc = store_check_text(s, "the actor", actor, 1)) ||
        (rc = store_lock(s, "keyring rotate")))
        return rc;
    lethe_store_public_key(s, old);
    uint32_t epoch = kr_signing_epoch(s->kr);
    /* The keyring first: a crash before the catalog records the new key is
     * repaired at the next open (the catalog learns the keyring's key). */
    rc = kr_rotate_signing_key(s->kr, msg, sizeof(msg));
    if (kr_signing_epoch(s->kr) == epoch) {
        rc = store_fail(s, rc, "%s", msg);
        goto out;
    }
    int mirror_rc = rc;
    lethe_store_public_key(s, public_hex);
    store_now(now);
    if ((rc = store_begin(s)))
        goto out;
    if ((rc = store_prepare(s, "UPDATE signing_keys SET retired_at = ? WHERE retired_at IS NULL",
                            &st)) == LETHE_OK) {
        sqlite3_bind_text(st, 1, now, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = store_sqlfail(s, "retiring the signing key");
        sqlite3_finalize(st);
    }
    if (rc == LETHE_OK &&
        (rc = store_prepare(s, "INSERT INTO signing_keys(epoch, public_key, created_at) VALUES "
                               "(?, ?, ?)", &st)) == LETHE_OK) {
        sqlite3_bind_int64(st, 1, kr_signing_epoch(s->kr));
        sqlite3_bind_text(st, 2, public_hex, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, now, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = store_sqlfail(s, "recording the signing key");
        sqlite3_finalize(st);
    }
    snprintf(detail, sizeof(detail), "{\"old_key\":\"%s\",\"new_key\":\"%s\",\"epoch\":%u}", old,
             public_hex, kr_signing_epoch(s->kr));
    if (rc == LETHE_OK)
        rc = store_log_append(s, "key-rotate", actor, "", "", 1, detail);
    if (rc == LETHE_OK)
        rc = store_commit(s);
    else
        store_rollback(s);
    if (rc == LETHE_OK && mirror_rc)
        rc = store_fail(s, mirror_rc, "rotated, but %s", msg);
out:
    store_unlock(s);
    return rc;
}

int lethe_keyring_mirror(lethe_store *s, const char *dir, const char *actor)
{
    char msg[512], *abs = NULL;
    strbuf d;
    int rc;
    if ((rc = store_writable(s)) || (rc = store_check_text(s, "the actor", actor, 1)))
        return rc;
    if (dir && *dir && !(abs = realpath(dir, NULL)))
        return store_fail(s, LETHE_ERR_ARG, "keyring mirror %s: %s", dir, strerror(errno));
    if ((rc = store_lock(s, "keyring mirror")))
        goto out;
    if ((rc = kr_set_mirror(s->kr, abs, msg, sizeof(msg)))) {
        rc = store_fail(s, rc, "%s", msg);
        goto out;
    }
    sb_init(&d);
    sb_puts(&d, "{\"mirror\":");
    if (abs)
        sb_json_str(&d, abs);
    else
        sb_puts(&d, "null");
    sb_puts(&d, "}");
    char *detail = sb_finish(&d);
    if (!detail) {
        rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
        goto out;
    }
    if ((rc = store_begin(s)) == LETHE_OK) {
        rc = store_meta_set_text(s, "keyring_mirror", abs);
        if (rc == LETHE_OK)
            rc = store_log_append(s, "keyring-mirror", actor, "", "", abs ? 1 : 0, detail);
        rc = rc == LETHE_OK ? store_commit(s) : (store_rollback(s), rc);
    }
    lethe_free(detail);
out:
    store_unlock(s);
    free(abs);
    return rc;
}

/* ---------------------------------------------------------------- check */

typedef struct census {
    lethe_store *s;
    uint64_t keys, optouts, receipts, pending, orphans;
    kr_ref *used;         /* the keys the catalog names, sorted */
    size_t nused;
} census;

static int count_record(void *ctx, int kind, kr_ref ref, unsigned flags, const uint8_t *payload,
                        size_t len)
{
    census *c = ctx;
    (void)payload;
    (void)len;
    if (flags & KR_PENDING)
        c->pending++;
    if (kind == KR_PHOTO) {
        c->keys++;
        if (!bsearch(&ref, c->used, c->nused, sizeof(ref), store_ref_cmp))
            c->orphans++;
    } else if (kind == KR_OPTOUT) {
        c->optouts++;
    } else if (kind == KR_RECEIPT) {
        c->receipts++;
    }
    return 0;
}

int lethe_keyring_check(lethe_store *s, char **json)
{
    census c;
    char msg[512], dir[4096] = "";
    uint64_t damaged = 0;
    strbuf b;
    memset(&c, 0, sizeof(c));
    c.s = s;
    *json = NULL;
    int rc = store_exec(s, "BEGIN");
    if (rc)
        return rc;
    if ((rc = store_key_refs(s, &c.used, &c.nused)) == LETHE_OK &&
        (rc = kr_foreach(s->kr, count_record, &c, &damaged, msg, sizeof(msg))) != LETHE_OK)
        rc = store_fail(s, rc, "%s", msg);
    lethe_free(c.used);
    int64_t photos = rc ? 0 : store_count(s, "SELECT COUNT(*) FROM photos");
    if (photos < 0)
        rc = store_status(s);
    int has_mirror = store_meta_get_text(s, "keyring_mirror", dir, sizeof(dir)) == LETHE_OK;
    /* a read transaction, ended keeping the message being returned (a
     * COMMIT that fails, out of memory, is rolled back, not left open) */
    store_end_read(s);
    if (rc)
        return rc;
    sb_init(&b);
    sb_printf(&b, "{\"slots\":%llu,\"photo_keys\":%llu,\"photos\":%lld,\"orphan_keys\":%llu,"
                  "\"optouts\":%llu,\"receipts\":%llu,\"pending\":%llu,\"damaged_slots\":%llu,"
                  "\"generation\":%llu,\"signing_epoch\":%u,\"mirror\":",
              (unsigned long long)kr_slot_count(s->kr), (unsigned long long)c.keys,
              (long long)photos, (unsigned long long)c.orphans, (unsigned long long)c.optouts,
              (unsigned long long)c.receipts, (unsigned long long)c.pending,
              (unsigned long long)damaged, (unsigned long long)kr_generation(s->kr),
              kr_signing_epoch(s->kr));
    if (has_mirror)
        sb_json_str(&b, dir);
    else
        sb_puts(&b, "null");
    sb_puts(&b, "}\n");
    *json = sb_finish(&b);
    return *json ? LETHE_OK : store_fail(s, LETHE_ERR_NOMEM, "out of memory");
}

/* ------------------------------------------------- issued by this store? */

int lethe_receipt_check(lethe_store *s, const char *text, size_t len)
{
    char msg[256], key[65], hex[65];
    uint8_t h[32];
    sqlite3_stmt *st;
    int rc = lethe_receipt_verify(text, len, NULL, msg, sizeof(msg));
    if (rc)
        return store_fail(s, rc, "%s", msg);
    while (len && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '))
        len--;
    /* the key it names (lethe_receipt_verify found it well formed) */
    const char *k = memmem(text, len, "\"store_key\":\"", 13);
    memcpy(key, k + 13, 64);
    key[64] = 0;
    crypto_generichash(h, sizeof(h), (const uint8_t *)text, len, NULL, 0);
    sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
    if ((rc = store_exec(s, "BEGIN")))
        return rc;
    int known_key = 0, logged = 0;
    if ((rc = store_prepare(s, "SELECT 1 FROM signing_keys WHERE public_key = ?", &st)) == 0) {
        sqlite3_bind_text(st, 1, key, 64, SQLITE_STATIC);
        int step = sqlite3_step(st);
        known_key = step == SQLITE_ROW;
        if (step != SQLITE_ROW && step != SQLITE_DONE)
            rc = store_sqlfail(s, "looking up the receipt's key");
        sqlite3_finalize(st);
    }
    if (rc == LETHE_OK &&
        (rc = store_prepare(s, "SELECT 1 FROM log WHERE query_hash = ? AND kind IN ('forget', "
                               "'optout', 'retire', 'receipt-carried')", &st)) == 0) {
        sqlite3_bind_text(st, 1, hex, 64, SQLITE_STATIC);
        int step = sqlite3_step(st);
        logged = step == SQLITE_ROW;
        if (step != SQLITE_ROW && step != SQLITE_DONE)
            rc = store_sqlfail(s, "looking up the receipt in the log");
        sqlite3_finalize(st);
    }
    /* a read transaction, ended keeping the message being returned (a
     * COMMIT that fails, out of memory, is rolled back, not left open) */
    store_end_read(s);
    if (rc)
        return rc;
    if (!known_key)
        return store_fail(s, LETHE_ERR_FORMAT,
                          "the receipt is signed with a key this store never had: another store "
                          "issued it, or it is forged");
    if (!logged)
        return store_fail(s, LETHE_ERR_FORMAT,
                          "the receipt's signature is valid, but this store's log never recorded "
                          "it: it was not issued by this store (forged with a stolen key?)");
    return LETHE_OK;
}

/* An issued receipt, read back by its hash: the requester who lost it, an
 * auditor following a log entry. */
int lethe_receipt_get(lethe_store *s, const char *hash_hex, char **receipt)
{
    sqlite3_stmt *st;
    size_t n = hash_hex ? strlen(hash_hex) : 0;
    int rc;
    *receipt = NULL;
    if (n != 64 || strspn(hash_hex, "0123456789abcdef") != 64)
        return store_fail(s, LETHE_ERR_ARG,
                          "a receipt's hash is 64 lowercase hexadecimal digits (BLAKE2b-256)");
    if ((rc = store_exec(s, "BEGIN")))
        return rc;
    if ((rc = store_prepare(s, "SELECT json FROM receipts WHERE hash = ?", &st)) == 0) {
        sqlite3_bind_text(st, 1, hash_hex, 64, SQLITE_STATIC);
        int step = sqlite3_step(st);
        const char *json = step == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
        if (step == SQLITE_ROW && !(*receipt = json ? lethe_strdup(json) : NULL))
            rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
        else if (step == SQLITE_DONE)
            rc = store_fail(s, LETHE_ERR_NOT_FOUND, "this store holds no receipt with hash %s",
                            hash_hex);
        else if (step != SQLITE_ROW)
            rc = store_sqlfail(s, "reading the receipt");
        sqlite3_finalize(st);
    }
    store_end_read(s);
    if (rc) {
        lethe_free(*receipt);
        *receipt = NULL;
    }
    return rc;
}
