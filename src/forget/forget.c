/*
 * forget.c: erasure, opt-outs and receipts.
 *
 * A selector picks photos by their provenance (uploader, url, photo id,
 * source, jurisdiction, collected before a date), by their bytes (an exact
 * file), or picks faces by likeness (descriptors of a person, within a
 * conservative threshold). Conditions combine with AND; the provenance
 * conditions must hold for one and the same provenance record.
 *
 * Erasing a photo removes the photo row and, by cascade, every provenance
 * record, face and template of it; erasing a face removes that face and its
 * template (the photo and its other faces stay). In one transaction: the
 * rows go (SQLite's secure_delete zeroes the freed bytes), the digest is
 * folded, the index generation is bumped, a receipt is signed and stored
 * and the log gets an entry naming the receipt's hash. After the commit the
 * index rows are overwritten and cut off, and the WAL is checkpointed and
 * truncated, so that when lethe_forget returns no byte of what was erased is
 * left in any file of the store. A crash before the commit leaves the store
 * as it was; after it, the next writable open rebuilds the index from the
 * catalog, and the next close checkpoints the WAL.
 *
 * An opt-out does the same and also records a standing refusal: keyed
 * hashes of the selector's values (never the values) and, for a face, the
 * person's descriptors, kept apart from the gallery (table optout_faces:
 * not in the index, never searched, never exported), used only to refuse
 * matching photos and faces in later ingests, and erasable themselves.
 */
#include <errno.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "manifest/manifest.h"
#include "store/store.h"
#include "util/strbuf.h"
#include "util/util.h"

float lethe_forget_face_threshold(void)
{
    return 0.55f;
}

/* ---------------------------------------------------------- signing key */

int store_signing_key(lethe_store *s, uint8_t pk[32], uint8_t sk[64])
{
    sqlite3_stmt *st;
    int rc = store_prepare(s, "SELECT value FROM meta WHERE key = 'sign_sk'", &st);
    size_t len = 0;
    if (rc)
        return rc;
    int found = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_TEXT;
    if (found) {
        const char *hex = (const char *)sqlite3_column_text(st, 0);
        found = sodium_hex2bin(sk, 64, hex, strlen(hex), NULL, &len, NULL) == 0 && len == 64;
    }
    sqlite3_finalize(st);
    if (!found) {
        /* created on first use, inside the caller's transaction */
        char hex[129];
        crypto_sign_keypair(pk, sk);
        sodium_bin2hex(hex, sizeof(hex), sk, 64);
        if ((rc = store_prepare(s, "INSERT OR REPLACE INTO meta(key, value) VALUES ('sign_sk', ?)",
                                &st)))
            return rc;
        sqlite3_bind_text(st, 1, hex, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = store_sqlfail(s, "creating the signing key");
        sqlite3_finalize(st);
        sodium_memzero(hex, sizeof(hex));
        return rc;
    }
    crypto_sign_ed25519_sk_to_pk(pk, sk);
    return LETHE_OK;
}

int lethe_store_public_key(lethe_store *s, char hex[65])
{
    uint8_t pk[32], sk[64];
    int rc = store_exec(s, "BEGIN");
    if (rc)
        return rc;
    sqlite3_stmt *st;
    size_t len = 0;
    rc = store_prepare(s, "SELECT value FROM meta WHERE key = 'sign_sk'", &st);
    if (rc == LETHE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_TEXT &&
            sodium_hex2bin(sk, 64, (const char *)sqlite3_column_text(st, 0),
                           (size_t)sqlite3_column_bytes(st, 0), NULL, &len, NULL) == 0 &&
            len == 64) {
            crypto_sign_ed25519_sk_to_pk(pk, sk);
            sodium_bin2hex(hex, 65, pk, 32);
        } else {
            rc = store_fail(s, LETHE_ERR_NOT_FOUND, "the store has no signing key yet (it is "
                            "made with the first receipt)");
        }
        sqlite3_finalize(st);
    }
    store_exec(s, "COMMIT");
    sodium_memzero(sk, sizeof(sk));
    return rc;
}

/* ------------------------------------------------------------ selection */

typedef struct sel {
    char jur[8];
    uint8_t sha[32];
    int has_sha;       /* image file, or a photo id that is a SHA-256 */
    int sha_only;      /* the photo id given is a SHA-256 only */
} sel;

static int has_provenance_cond(const lethe_selector *q)
{
    return (q->uploader && *q->uploader) || (q->url && *q->url) || (q->source && *q->source) ||
           (q->jurisdiction && *q->jurisdiction) || (q->collected_before && *q->collected_before) ||
           (q->photo_id && *q->photo_id);
}

static int check_selector(lethe_store *s, const lethe_selector *q, sel *x)
{
    char msg[256];
    memset(x, 0, sizeof(*x));
    if (!has_provenance_cond(q) && !(q->image && *q->image) && q->n_faces <= 0)
        return store_fail(s, LETHE_ERR_ARG, "nothing selected: give at least one selector");
    if (q->jurisdiction && *q->jurisdiction &&
        jurisdiction_parse(q->jurisdiction, x->jur, msg, sizeof(msg)) != 0)
        return store_fail(s, LETHE_ERR_ARG, "%s", msg);
    if (q->collected_before && *q->collected_before &&
        !manifest_valid_timestamp(q->collected_before))
        return store_fail(s, LETHE_ERR_ARG, "--collected-before: \"%s\" is not an ISO 8601 date",
                          q->collected_before);
    if (q->n_faces > 0 && !q->faces)
        return store_fail(s, LETHE_ERR_ARG, "face selector without descriptors");
    if (q->image && *q->image) {
        uint8_t *bytes = NULL;
        size_t len = 0;
        int rc = lethe_read_file(q->image, 256u << 20, &bytes, &len, msg, sizeof(msg));
        if (rc)
            return store_fail(s, rc, "%s", msg);
        crypto_hash_sha256(x->sha, bytes, len);
        lethe_free(bytes);
        x->has_sha = 1;
    }
    if (q->photo_id && strlen(q->photo_id) == 64) {
        uint8_t h[32];
        size_t len = 0;
        if (sodium_hex2bin(h, 32, q->photo_id, 64, NULL, &len, NULL) == 0 && len == 32) {
            if (x->has_sha && memcmp(h, x->sha, 32) != 0)
                return store_fail(s, LETHE_ERR_ARG, "--photo-id and --image name different photos");
            memcpy(x->sha, h, 32);
            x->has_sha = 1;
            x->sha_only = 1;
        }
    }
    return LETHE_OK;
}

/* Fill temp table sel_photos with the photos the non-face conditions pick. */
static int select_photos(lethe_store *s, const lethe_selector *q, const sel *x)
{
    strbuf b;
    sqlite3_stmt *st = NULL;
    int rc, any_prov = has_provenance_cond(q);
    sb_init(&b);
    sb_puts(&b, "INSERT INTO temp.sel_photos(id) SELECT p.id FROM photos p WHERE 1");
    if (x->has_sha)
        sb_puts(&b, x->sha_only ? " AND (p.sha256 = ?1 OR EXISTS (SELECT 1 FROM provenance v "
                                  "WHERE v.photo = p.id AND v.photo_id = ?2))"
                                : " AND p.sha256 = ?1");
    if (any_prov) {
        /* IN (not a correlated EXISTS) so SQLite drives the search from the
         * provenance indexes instead of scanning every photo */
        sb_puts(&b, " AND p.id IN (SELECT v.photo FROM provenance v WHERE 1");
        if (q->uploader && *q->uploader)
            sb_puts(&b, " AND v.uploader = ?3");
        if (q->url && *q->url)
            sb_puts(&b, " AND v.url = ?4");
        if (q->source && *q->source)
            sb_puts(&b, " AND v.source = ?5");
        if (x->jur[0])
            sb_puts(&b, " AND (v.jurisdiction = ?6 OR (v.jurisdiction >= ?6 || '-' AND "
                        "v.jurisdiction < ?6 || '.'))");
        if (q->collected_before && *q->collected_before)
            sb_puts(&b, " AND v.collected_at <> '' AND v.collected_at < ?7");
        if (q->photo_id && *q->photo_id && !x->sha_only)
            sb_puts(&b, " AND v.photo_id = ?2");
        sb_puts(&b, ")");
    }
    char *sql = sb_finish(&b);
    if (!sql)
        return store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    if ((rc = store_exec(s, "DELETE FROM temp.sel_photos")) == LETHE_OK &&
        (rc = store_prepare(s, sql, &st)) == LETHE_OK) {
        if (x->has_sha)
            sqlite3_bind_blob(st, 1, x->sha, 32, SQLITE_STATIC);
        if (q->photo_id)
            sqlite3_bind_text(st, 2, q->photo_id, -1, SQLITE_STATIC);
        if (q->uploader)
            sqlite3_bind_text(st, 3, q->uploader, -1, SQLITE_STATIC);
        if (q->url)
            sqlite3_bind_text(st, 4, q->url, -1, SQLITE_STATIC);
        if (q->source)
            sqlite3_bind_text(st, 5, q->source, -1, SQLITE_STATIC);
        if (x->jur[0])
            sqlite3_bind_text(st, 6, x->jur, -1, SQLITE_STATIC);
        if (q->collected_before)
            sqlite3_bind_text(st, 7, q->collected_before, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = store_sqlfail(s, "selecting photos");
        sqlite3_finalize(st);
    }
    lethe_free(sql);
    return rc;
}

/* Fill temp table sel_faces with the faces like q->faces (and, when other
 * conditions were given, in photos they pick). */
static int select_faces(lethe_store *s, const lethe_selector *q, int restrict_to_photos)
{
    char msg[512];
    int rc = store_index_ready(s);
    if (rc)
        return rc;
    float t = q->face_threshold > 0 ? q->face_threshold : lethe_forget_face_threshold();
    size_t k = (size_t)idx_count(s->ix) + 1;
    idx_hit *hits = lethe_malloc(k * sizeof(*hits));
    sqlite3_stmt *ins = NULL;
    if (!hits)
        return store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    if ((rc = store_exec(s, "DELETE FROM temp.sel_faces")) ||
        (rc = store_prepare(s, restrict_to_photos
                                   ? "INSERT OR IGNORE INTO temp.sel_faces(id, distance) "
                                     "SELECT f.id, ?2 FROM faces f WHERE f.id = ?1 AND "
                                     "f.photo IN (SELECT id FROM temp.sel_photos)"
                                   : "INSERT OR IGNORE INTO temp.sel_faces(id, distance) "
                                     "SELECT f.id, ?2 FROM faces f WHERE f.id = ?1",
                            &ins)))
        goto out;
    for (int i = 0; i < q->n_faces && rc == LETHE_OK; i++) {
        size_t n = 0;
        if (idx_search(s->ix, q->faces + (size_t)i * IDX_DIM, 1, k, t, 0, hits, &n, msg,
                       sizeof(msg)) != 0) {
            rc = store_fail(s, LETHE_ERR_IO, "%s", msg);
            break;
        }
        for (size_t h = 0; h < n && rc == LETHE_OK; h++) {
            sqlite3_bind_int64(ins, 1, hits[h].id);
            sqlite3_bind_double(ins, 2, hits[h].distance);
            if (sqlite3_step(ins) != SQLITE_DONE)
                rc = store_sqlfail(s, "selecting faces");
            sqlite3_reset(ins);
        }
    }
out:
    sqlite3_finalize(ins);
    lethe_free(hits);
    return rc;
}

static int64_t count_of(lethe_store *s, const char *sql)
{
    sqlite3_stmt *st;
    int64_t v = -1;
    if (store_prepare(s, sql, &st))
        return -1;
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* The photos a dry run would touch, as JSON. */
static char *matched_json(lethe_store *s, int faces)
{
    strbuf b;
    sqlite3_stmt *st;
    const char *sql =
        faces ? "SELECT p.sha256, p.status, MIN(sf.distance), COUNT(*), "
                "(SELECT url FROM provenance WHERE photo = p.id ORDER BY id LIMIT 1), "
                "(SELECT path FROM provenance WHERE photo = p.id ORDER BY id LIMIT 1) "
                "FROM temp.sel_faces sf JOIN faces f ON f.id = sf.id JOIN photos p ON p.id = "
                "f.photo GROUP BY p.id ORDER BY 3"
              : "SELECT p.sha256, p.status, NULL, (SELECT COUNT(*) FROM faces WHERE photo = p.id), "
                "(SELECT url FROM provenance WHERE photo = p.id ORDER BY id LIMIT 1), "
                "(SELECT path FROM provenance WHERE photo = p.id ORDER BY id LIMIT 1) "
                "FROM temp.sel_photos sp CROSS JOIN photos p ON p.id = sp.id ORDER BY p.sha256";
    sb_init(&b);
    sb_puts(&b, "[");
    if (store_prepare(s, sql, &st) == LETHE_OK) {
        for (int i = 0; sqlite3_step(st) == SQLITE_ROW; i++) {
            char hex[65];
            sodium_bin2hex(hex, sizeof(hex), sqlite3_column_blob(st, 0), 32);
            sb_printf(&b, "%s{\"photo\":\"%s\",\"status\":", i ? "," : "", hex);
            sb_json_str(&b, (const char *)sqlite3_column_text(st, 1));
            if (faces)
                sb_printf(&b, ",\"distance\":%.4f", sqlite3_column_double(st, 2));
            sb_printf(&b, ",\"faces\":%d,\"url\":", sqlite3_column_int(st, 3));
            sb_json_str(&b, (const char *)sqlite3_column_text(st, 4));
            sb_puts(&b, ",\"path\":");
            sb_json_str(&b, (const char *)sqlite3_column_text(st, 5));
            sb_putc(&b, '}');
        }
        sqlite3_finalize(st);
    }
    sb_puts(&b, "]");
    return sb_finish(&b);
}

/* ---------------------------------------------------------------- receipt */

static void put_hashed(lethe_store *s, strbuf *b, int *first, const char *name, const char *v)
{
    char h[65];
    if (!v || !*v)
        return;
    store_keyed_hash(s, v, strlen(v), h);
    sb_printf(b, "%s\"%s\":\"%s\"", *first ? "" : ",", name, h);
    *first = 0;
}

static char *make_receipt(lethe_store *s, const char *kind, const lethe_selector *q,
                          const sel *x, const lethe_forget_result *r, const uint8_t pk[32],
                          const uint8_t sk[64])
{
    strbuf b;
    char now[32], pkhex[65], sighex[129];
    uint8_t sig[64];
    int first = 1;
    store_now(now);
    sodium_bin2hex(pkhex, sizeof(pkhex), pk, 32);
    sb_init(&b);
    sb_printf(&b, "{\"lethe_receipt\":1,\"kind\":\"%s\",\"store_key\":\"%s\",\"time\":\"%s\","
                  "\"selector\":{", kind, pkhex, now);
    put_hashed(s, &b, &first, "photo_id", q->photo_id);
    put_hashed(s, &b, &first, "url", q->url);
    put_hashed(s, &b, &first, "uploader", q->uploader);
    put_hashed(s, &b, &first, "source", q->source);
    put_hashed(s, &b, &first, "jurisdiction", x->jur[0] ? x->jur : NULL);
    put_hashed(s, &b, &first, "collected_before", q->collected_before);
    if (x->has_sha && !x->sha_only) {
        char h[65];
        store_keyed_hash(s, x->sha, 32, h);
        sb_printf(&b, "%s\"image\":\"%s\"", first ? "" : ",", h);
        first = 0;
    }
    if (q->n_faces > 0) {
        char h[65];
        store_keyed_hash(s, q->faces, (size_t)q->n_faces * IDX_DIM * sizeof(float), h);
        sb_printf(&b, "%s\"face\":\"%s\",\"face_threshold\":%.3f", first ? "" : ",", h,
                  (double)(q->face_threshold > 0 ? q->face_threshold
                                                 : lethe_forget_face_threshold()));
    }
    sb_printf(&b, "},\"erased\":{\"photos\":%llu,\"provenance\":%llu,\"faces\":%llu,"
                  "\"templates\":%llu},\"digest_before\":\"%s\",\"digest_after\":\"%s\"",
              (unsigned long long)r->photos, (unsigned long long)r->provenance,
              (unsigned long long)r->faces, (unsigned long long)r->templates, r->digest_before,
              r->digest_after);
    /* The signature covers every byte before it, and the closing brace. */
    sb_putc(&b, '}');
    if (b.failed) {
        sb_free(&b);
        return NULL;
    }
    crypto_sign_detached(sig, NULL, (const uint8_t *)b.s, b.len, sk);
    sodium_bin2hex(sighex, sizeof(sighex), sig, sizeof(sig));
    b.len--; /* reopen */
    sb_printf(&b, ",\"signature\":\"%s\"}", sighex);
    return sb_finish(&b);
}

/* ---------------------------------------------------------------- opt-out */

static int record_optout(lethe_store *s, const lethe_selector *q, const sel *x,
                         const char *receipt_hash)
{
    sqlite3_stmt *st;
    char h[7][65], now[32];
    /* a photo id that is a SHA-256 is kept as the photo's hash only */
    const char *vals[6] = {x->sha_only ? NULL : q->photo_id, q->url, q->uploader, q->source,
                           x->jur[0] ? x->jur : NULL, NULL};
    int rc;
    for (int i = 0; i < 5; i++) {
        h[i][0] = 0;
        if (vals[i] && *vals[i])
            store_keyed_hash(s, vals[i], strlen(vals[i]), h[i]);
    }
    h[5][0] = 0;
    if (x->has_sha)
        store_keyed_hash(s, x->sha, 32, h[5]);
    store_now(now);
    if ((rc = store_prepare(s, "INSERT INTO optouts(photo_id_h, url_h, uploader_h, source_h, "
                               "jurisdiction_h, sha_h, collected_before, face_threshold, "
                               "created_at, receipt) VALUES (?,?,?,?,?,?,?,?,?,?)", &st)))
        return rc;
    for (int i = 0; i < 6; i++)
        sqlite3_bind_text(st, 1 + i, h[i], -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, q->collected_before ? q->collected_before : "", -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 8, q->n_faces > 0 ? (q->face_threshold > 0 ? q->face_threshold
                                                       : lethe_forget_face_threshold()) : 0);
    sqlite3_bind_text(st, 9, now, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 10, receipt_hash, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = store_sqlfail(s, "recording the opt-out");
    sqlite3_finalize(st);
    int64_t id = sqlite3_last_insert_rowid(s->db);
    for (int i = 0; rc == LETHE_OK && i < q->n_faces; i++) {
        if ((rc = store_prepare(s, "INSERT INTO optout_faces(optout, descriptor) VALUES (?, ?)",
                                &st)))
            break;
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_blob(st, 2, q->faces + (size_t)i * IDX_DIM, IDX_DIM * sizeof(float),
                          SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = store_sqlfail(s, "recording the opt-out");
        sqlite3_finalize(st);
    }
    return rc;
}

/* Erase what temp.sel_photos (or, by_face, temp.sel_faces) holds, inside
 * the caller's transaction: record each in the erasure ledger (keyed hashes
 * only), fold the photos out of the digest, delete, fold back what remains
 * of them. */
static int erase_selection(lethe_store *s, int by_face)
{
    sqlite3_stmt *st;
    int rc;
    const char *ledger_sql =
        by_face ? "INSERT OR IGNORE INTO ledger(hash, time) SELECT lethe_key('face:' || "
                  "hex(p.sha256) || ':' || f.ord), strftime('%Y-%m-%dT%H:%M:%SZ','now') FROM "
                  "temp.sel_faces sf JOIN faces f ON f.id = sf.id JOIN photos p ON p.id = f.photo"
                : "INSERT OR IGNORE INTO ledger(hash, time) SELECT lethe_key('photo:' || "
                  "hex(sha256)), strftime('%Y-%m-%dT%H:%M:%SZ','now') FROM photos WHERE id IN "
                  "(SELECT id FROM temp.sel_photos)";
    const char *photos_sql = by_face ? "SELECT DISTINCT f.photo FROM temp.sel_faces sf JOIN "
                                       "faces f ON f.id = sf.id"
                                     : "SELECT id FROM temp.sel_photos";
    char ins[256];
    if ((rc = store_exec(s, ledger_sql)) || (rc = store_exec(s, "DELETE FROM temp.sel_touched")))
        return rc;
    snprintf(ins, sizeof(ins), "INSERT INTO temp.sel_touched(id) %s", photos_sql);
    if ((rc = store_exec(s, ins)) ||
        (rc = store_prepare(s, "SELECT id FROM temp.sel_touched", &st)))
        return rc;
    while (rc == LETHE_OK && sqlite3_step(st) == SQLITE_ROW)
        rc = store_dg(s, sqlite3_column_int64(st, 0), -1);
    sqlite3_finalize(st);
    if (rc)
        return rc;
    rc = store_exec(s, by_face ? "DELETE FROM faces WHERE id IN (SELECT id FROM temp.sel_faces)"
                               : "DELETE FROM photos WHERE id IN (SELECT id FROM temp.sel_photos)");
    if (rc)
        return rc;
    if (by_face) {
        if ((rc = store_prepare(s, "SELECT id FROM temp.sel_touched", &st)))
            return rc;
        while (rc == LETHE_OK && sqlite3_step(st) == SQLITE_ROW)
            rc = store_dg(s, sqlite3_column_int64(st, 0), 1);
        sqlite3_finalize(st);
        if (rc)
            return rc;
    }
    return store_exec(s, "DELETE FROM temp.sel_touched; DELETE FROM temp.sel_photos; "
                         "DELETE FROM temp.sel_faces");
}

/* Template ids of the selection (for the index), into *rm. */
static int selection_templates(lethe_store *s, int by_face, int64_t **rm, size_t *nrm)
{
    sqlite3_stmt *st;
    size_t cap = 0;
    int rc;
    const char *sql = by_face ? "SELECT f.id FROM temp.sel_faces sf JOIN faces f ON f.id = "
                                "sf.id WHERE f.descriptor IS NOT NULL"
                              : "SELECT id FROM faces WHERE photo IN (SELECT id FROM "
                                "temp.sel_photos) AND descriptor IS NOT NULL";
    *rm = NULL;
    *nrm = 0;
    if ((rc = store_prepare(s, sql, &st)))
        return rc;
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (*nrm == cap) {
            size_t nc = cap ? cap * 2 : 256;
            int64_t *t = lethe_realloc(*rm, nc * sizeof(*t));
            if (!t) {
                rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
                break;
            }
            *rm = t;
            cap = nc;
        }
        (*rm)[(*nrm)++] = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return rc;
}

/* Restore's replay: erase whatever the ledger names (photos and faces
 * erased after the backup was taken), inside the caller's transaction.
 * *erased counts photos and faces. */
int store_replay_ledger(lethe_store *s, uint64_t *erased, int64_t **rm, size_t *nrm)
{
    int rc;
    int64_t *r1 = NULL, *r2 = NULL;
    size_t n1 = 0, n2 = 0;
    *erased = 0;
    if ((rc = store_exec(s, "DELETE FROM temp.sel_photos; INSERT INTO temp.sel_photos(id) "
                            "SELECT id FROM photos WHERE lethe_key('photo:' || hex(sha256)) IN "
                            "(SELECT hash FROM ledger)")))
        return rc;
    *erased += (uint64_t)count_of(s, "SELECT COUNT(*) FROM temp.sel_photos");
    if ((rc = selection_templates(s, 0, &r1, &n1)) || (rc = erase_selection(s, 0)))
        goto out;
    if ((rc = store_exec(s, "DELETE FROM temp.sel_faces; INSERT INTO temp.sel_faces(id) "
                            "SELECT f.id FROM faces f JOIN photos p ON p.id = f.photo WHERE "
                            "lethe_key('face:' || hex(p.sha256) || ':' || f.ord) IN "
                            "(SELECT hash FROM ledger)")))
        goto out;
    *erased += (uint64_t)count_of(s, "SELECT COUNT(*) FROM temp.sel_faces");
    if ((rc = selection_templates(s, 1, &r2, &n2)) || (rc = erase_selection(s, 1)))
        goto out;
    *rm = lethe_realloc(r1, (n1 + n2 + 1) * sizeof(int64_t));
    if (!*rm) {
        rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
        goto out;
    }
    if (n2)
        memcpy(*rm + n1, r2, n2 * sizeof(int64_t));
    *nrm = n1 + n2;
    r1 = NULL;
out:
    lethe_free(r1);
    lethe_free(r2);
    return rc;
}

/* ------------------------------------------------------------------ forget */

/* Checkpoint the WAL into the catalog and cut it to zero bytes, waiting for
 * readers that still hold old pages (up to a minute). */
int store_truncate_wal(lethe_store *s)
{
    for (int tries = 0; tries < 600; tries++) {
        int log = -1, ckpt = -1;
        int r = sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, &log, &ckpt);
        if (r == SQLITE_OK)
            return LETHE_OK;
        if (r != SQLITE_BUSY && r != SQLITE_LOCKED)
            return store_sqlfail(s, "checkpointing the catalog");
        usleep(100000);
    }
    return store_fail(s, LETHE_ERR_IO, "the catalog's write-ahead log could not be emptied: "
                      "another process keeps reading (it is emptied when that ends)");
}

int lethe_forget(lethe_store *s, const lethe_selector *q, unsigned flags, const char *actor,
                 lethe_forget_result *res, char **receipt, char **matched)
{
    lethe_forget_result r;
    sel x;
    int64_t *rm = NULL;
    size_t nrm = 0;
    uint64_t gen = 0;
    uint8_t pk[32], sk[64];
    char *rec = NULL;
    int rc, optout = (flags & LETHE_FORGET_OPTOUT) != 0, dry = (flags & LETHE_FORGET_DRY_RUN) != 0;

    memset(&r, 0, sizeof(r));
    if (receipt)
        *receipt = NULL;
    if (matched)
        *matched = NULL;
    if (s->flags & LETHE_STORE_READONLY)
        return store_fail(s, LETHE_ERR_ARG, "the store is open read-only");
    if ((rc = check_selector(s, q, &x)))
        return rc;
    int by_face = q->n_faces > 0;
    int other = has_provenance_cond(q) || x.has_sha;
    if ((rc = store_lock(s)))
        return rc;
    if ((rc = store_begin(s)))
        goto unlock;
    dg_final(s, s->dig, r.digest_before);
    if (other && (rc = select_photos(s, q, &x)))
        goto fail;
    if (by_face && (rc = select_faces(s, q, other)))
        goto fail;

    /* What goes */
    if (by_face) {
        r.faces = (uint64_t)count_of(s, "SELECT COUNT(*) FROM temp.sel_faces");
        r.templates = (uint64_t)count_of(s, "SELECT COUNT(*) FROM temp.sel_faces sf JOIN faces f "
                                            "ON f.id = sf.id WHERE f.descriptor IS NOT NULL");
    } else {
        r.photos = (uint64_t)count_of(s, "SELECT COUNT(*) FROM temp.sel_photos");
        r.provenance = (uint64_t)count_of(s, "SELECT COUNT(*) FROM provenance WHERE photo IN "
                                             "(SELECT id FROM temp.sel_photos)");
        r.faces = (uint64_t)count_of(s, "SELECT COUNT(*) FROM faces WHERE photo IN "
                                        "(SELECT id FROM temp.sel_photos)");
        r.templates = (uint64_t)count_of(s, "SELECT COUNT(*) FROM faces WHERE photo IN (SELECT id "
                                            "FROM temp.sel_photos) AND descriptor IS NOT NULL");
    }
    if (matched && !(*matched = matched_json(s, by_face))) {
        rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (dry) {
        memcpy(r.digest_after, r.digest_before, sizeof(r.digest_after));
        store_rollback(s);
        goto unlock;
    }

    /* The templates leave the index after the commit. */
    if ((rc = selection_templates(s, by_face, &rm, &nrm)))
        goto fail;
    if ((rc = erase_selection(s, by_face)))
        goto fail;
    if (nrm && (rc = store_bump_gen(s, &gen)))
        goto fail;
    dg_final(s, s->dig, r.digest_after);
    if ((rc = store_signing_key(s, pk, sk)))
        goto fail;
    rec = make_receipt(s, optout ? "optout" : "forget", q, &x, &r, pk, sk);
    sodium_memzero(sk, sizeof(sk));
    if (!rec) {
        rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
        goto fail;
    }
    {
        uint8_t h[32];
        char hex[65], detail[256];
        sqlite3_stmt *st;
        crypto_generichash(h, sizeof(h), (const uint8_t *)rec, strlen(rec), NULL, 0);
        sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
        snprintf(detail, sizeof(detail),
                 "{\"photos\":%llu,\"provenance\":%llu,\"faces\":%llu,\"templates\":%llu}",
                 (unsigned long long)r.photos, (unsigned long long)r.provenance,
                 (unsigned long long)r.faces, (unsigned long long)r.templates);
        if ((rc = store_log_append(s, optout ? "optout" : "forget", actor, "", hex,
                                   (int64_t)(r.photos + r.faces), detail)))
            goto fail;
        if ((rc = store_prepare(s, "INSERT INTO receipts(hash, time, json) VALUES (?, "
                                   "strftime('%Y-%m-%dT%H:%M:%SZ','now'), ?)", &st)))
            goto fail;
        sqlite3_bind_text(st, 1, hex, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, rec, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = store_sqlfail(s, "storing the receipt");
        sqlite3_finalize(st);
        if (rc)
            goto fail;
        if (optout && (rc = record_optout(s, q, &x, hex)))
            goto fail;
    }
    if ((rc = store_exec(s, "INSERT OR REPLACE INTO meta(key, value) VALUES "
                            "('scrub_pending', 1)")) ||
        (rc = store_commit(s)))
        goto fail;
    /* Committed: from here on no search can return the erased (a search
     * joins every index hit with the catalog). Now the derived copies. */
    if (nrm && (rc = store_index_apply(s, gen, rm, nrm, NULL, NULL, 0)) != LETHE_OK)
        goto unlock;
    rc = store_scrub(s, 0);
    goto unlock;
fail:
    store_rollback(s);
unlock:
    store_unlock(s);
    lethe_free(rm);
    if (res)
        *res = r;
    if (rc == LETHE_OK && receipt)
        *receipt = rec;
    else
        lethe_free(rec);
    if (rc != LETHE_OK && matched) {
        lethe_free(*matched);
        *matched = NULL;
    }
    return rc;
}

/* ---------------------------------------------------- opt-outs at ingest */

int lethe_optout_list(lethe_store *s, char **json)
{
    sqlite3_stmt *st;
    strbuf b;
    int rc = store_prepare(s, "SELECT id, created_at, receipt, photo_id_h <> '', url_h <> '', "
                              "uploader_h <> '', source_h <> '', jurisdiction_h <> '', "
                              "sha_h <> '', collected_before, (SELECT COUNT(*) FROM optout_faces "
                              "WHERE optout = optouts.id) FROM optouts ORDER BY id", &st);
    *json = NULL;
    if (rc)
        return rc;
    sb_init(&b);
    sb_puts(&b, "[");
    for (int i = 0; sqlite3_step(st) == SQLITE_ROW; i++) {
        static const char *names[] = {"photo_id", "url", "uploader", "source", "jurisdiction",
                                      "image"};
        sb_printf(&b, "%s{\"id\":%lld,\"created_at\":", i ? "," : "",
                  (long long)sqlite3_column_int64(st, 0));
        sb_json_str(&b, (const char *)sqlite3_column_text(st, 1));
        sb_puts(&b, ",\"receipt\":");
        sb_json_str(&b, (const char *)sqlite3_column_text(st, 2));
        sb_puts(&b, ",\"selects\":[");
        int first = 1;
        for (int k = 0; k < 6; k++)
            if (sqlite3_column_int(st, 3 + k)) {
                sb_printf(&b, "%s\"%s\"", first ? "" : ",", names[k]);
                first = 0;
            }
        if (*(const char *)sqlite3_column_text(st, 9)) {
            sb_printf(&b, "%s\"collected_before\"", first ? "" : ",");
            first = 0;
        }
        if (sqlite3_column_int(st, 10))
            sb_printf(&b, "%s\"face\"", first ? "" : ",");
        sb_puts(&b, "]}");
    }
    sb_puts(&b, "]\n");
    sqlite3_finalize(st);
    *json = sb_finish(&b);
    return *json ? LETHE_OK : store_fail(s, LETHE_ERR_NOMEM, "out of memory");
}

int lethe_optout_remove(lethe_store *s, int64_t id, const char *actor)
{
    int rc;
    char detail[64];
    if ((rc = store_lock(s)))
        return rc;
    if ((rc = store_begin(s)))
        goto out;
    sqlite3_stmt *st;
    if ((rc = store_prepare(s, "DELETE FROM optouts WHERE id = ?", &st)))
        goto fail;
    sqlite3_bind_int64(st, 1, id);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = store_sqlfail(s, "removing the opt-out");
    sqlite3_finalize(st);
    if (rc)
        goto fail;
    if (sqlite3_changes(s->db) == 0) {
        rc = store_fail(s, LETHE_ERR_NOT_FOUND, "no opt-out %lld", (long long)id);
        goto fail;
    }
    snprintf(detail, sizeof(detail), "{\"optout\":%lld}", (long long)id);
    if ((rc = store_log_append(s, "optout-removed", actor, "", "", 1, detail)) ||
        (rc = store_exec(s, "INSERT OR REPLACE INTO meta(key, value) VALUES "
                            "('scrub_pending', 1)")) ||
        (rc = store_commit(s)))
        goto fail;
    rc = store_scrub(s, 0);
    goto out;
fail:
    store_rollback(s);
out:
    store_unlock(s);
    return rc;
}
