/*
 * forget.c: lethe_forget, erasure by a selector, and its receipt.
 *
 * A selector picks photos by their provenance (uploader, url, photo id,
 * source, jurisdiction, collected before a date), by their bytes (an exact
 * file), or picks faces by likeness (descriptors of a person, within a
 * conservative threshold). Conditions combine with AND; the provenance
 * conditions must hold for one and the same provenance record. Identifiers
 * are matched through their keyed hashes; a date is compared after opening
 * the record with its photo's key.
 *
 * Whole photos go with their keys; faces go by re-keying their photo
 * (erase.h). In one change (change.h): the rows go, the digest is folded, a
 * receipt is signed with the keyring's secret, stored, its hash logged and
 * kept in the keyring (so it can be checked even after the catalog is
 * lost), and for an opt-out the standing refusal is recorded (optout.h).
 * When lethe_forget returns, the keys are destroyed, the index rows
 * overwritten and the catalog's free bytes zeroed.
 */
#include <errno.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forget/change.h"
#include "forget/erase.h"
#include "forget/forget.h"
#include "forget/optout.h"
#include "manifest/manifest.h"
#include "store/store.h"
#include "util/strbuf.h"
#include "util/util.h"

float lethe_forget_face_threshold(void)
{
    return 0.55f;
}

/* A selector, checked, with what it needs for matching. */
typedef struct sel {
    char jur[8];
    uint8_t sha[32];
    int has_sha;       /* an image, or a photo id that is a SHA-256 */
    int sha_only;      /* the photo id given is a SHA-256 only */
    float threshold;   /* the face threshold in force */
} sel;

static int given(const char *v)
{
    return v && *v;
}

static int has_provenance_cond(const lethe_selector *q)
{
    return given(q->uploader) || given(q->url) || given(q->source) || given(q->jurisdiction) ||
           given(q->collected_before) || given(q->photo_id);
}

static int hash_image(lethe_store *s, const lethe_selector *q, sel *x)
{
    char msg[256];
    if (q->image_bytes) {
        crypto_hash_sha256(x->sha, q->image_bytes, q->image_len);
    } else {
        uint8_t *bytes = NULL;
        size_t len = 0;
        int rc = lethe_read_file(q->image, 256u << 20, &bytes, &len, msg, sizeof(msg));
        if (rc)
            return store_fail(s, rc, "%s", msg);
        crypto_hash_sha256(x->sha, bytes, len);
        lethe_free(bytes);
    }
    x->has_sha = 1;
    return LETHE_OK;
}

static int check_selector(lethe_store *s, const lethe_selector *q, sel *x)
{
    char msg[256];
    int rc;
    memset(x, 0, sizeof(*x));
    int image = given(q->image) || q->image_bytes;
    if (!has_provenance_cond(q) && !image && q->n_faces <= 0)
        return store_fail(s, LETHE_ERR_ARG, "nothing selected: give at least one selector");
    if (given(q->jurisdiction) && jurisdiction_parse(q->jurisdiction, x->jur, msg, sizeof(msg)))
        return store_fail(s, LETHE_ERR_ARG, "%s", msg);
    if (given(q->collected_before) && !manifest_valid_timestamp(q->collected_before))
        return store_fail(s, LETHE_ERR_ARG, "--collected-before: \"%s\" is not an ISO 8601 date",
                          q->collected_before);
    if (q->n_faces > 0 && !q->faces)
        return store_fail(s, LETHE_ERR_ARG, "face selector without descriptors");
    x->threshold = q->face_threshold > 0 ? q->face_threshold : lethe_forget_face_threshold();
    if (q->n_faces > 0 && !(x->threshold < 2.0f))
        return store_fail(s, LETHE_ERR_ARG, "face threshold %g is not a distance", (double)x->threshold);
    if (image && (rc = hash_image(s, q, x)))
        return rc;
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

/* ------------------------------------------------------------ selection */

/* The SQL picking (photo, provenance record) pairs by the conditions that
 * SQL can test: hashes, and the clear categorical fields. */
static char *select_sql(const lethe_selector *q, const sel *x, int with_records)
{
    strbuf b;
    sb_init(&b);
    if (with_records)
        sb_puts(&b, "SELECT p.id, v.id, v.fp, v.sealed, p.key_slot, p.key_id FROM photos p "
                    "JOIN provenance v ON v.photo = p.id WHERE 1");
    else
        sb_puts(&b, "INSERT OR IGNORE INTO temp.sel_photos(id) SELECT p.id FROM photos p WHERE 1");
    if (x->has_sha)
        sb_puts(&b, x->sha_only ? " AND (p.sha_h = ?1 OR EXISTS (SELECT 1 FROM provenance w "
                                  "WHERE w.photo = p.id AND w.photo_id_h = ?2))"
                                : " AND p.sha_h = ?1");
    if (!with_records && has_provenance_cond(q))
        sb_puts(&b, " AND p.id IN (SELECT v.photo FROM provenance v WHERE 1");
    if (given(q->uploader))
        sb_puts(&b, " AND v.uploader_h = ?3");
    if (given(q->url))
        sb_puts(&b, " AND v.url_h = ?4");
    if (given(q->source))
        sb_puts(&b, " AND v.source = ?5");
    if (x->jur[0])
        sb_puts(&b, " AND (v.jurisdiction = ?6 OR (v.jurisdiction >= ?6 || '-' AND "
                    "v.jurisdiction < ?6 || '.'))");
    if (given(q->photo_id) && !x->sha_only)
        sb_puts(&b, " AND v.photo_id_h = ?2");
    if (!with_records && has_provenance_cond(q))
        sb_puts(&b, ")");
    if (with_records)
        sb_puts(&b, " ORDER BY p.id");
    return sb_finish(&b);
}

static int bind_hash(lethe_store *s, sqlite3_stmt *st, int col, const char *tag, const void *v,
                     size_t n)
{
    uint8_t h[32];
    store_hash(s, tag, v, n, h);
    return sqlite3_bind_blob(st, col, h, 32, SQLITE_TRANSIENT);
}

/* The selector's values into st: LETHE_OK, or out of memory when a copy
 * of a hash failed (the parameter would be NULL, and the erasure would
 * select nothing). */
static int bind_selector(lethe_store *s, sqlite3_stmt *st, const lethe_selector *q,
                         const sel *x)
{
    int b = 0;
    if (x->has_sha)
        b |= bind_hash(s, st, 1, "sha256", x->sha, 32);
    if (given(q->photo_id))
        b |= bind_hash(s, st, 2, "photo_id", q->photo_id, strlen(q->photo_id));
    if (given(q->uploader))
        b |= bind_hash(s, st, 3, "uploader", q->uploader, strlen(q->uploader));
    if (given(q->url))
        b |= bind_hash(s, st, 4, "url", q->url, strlen(q->url));
    if (given(q->source))
        b |= sqlite3_bind_text(st, 5, q->source, -1, SQLITE_STATIC);
    if (x->jur[0])
        b |= sqlite3_bind_text(st, 6, x->jur, -1, SQLITE_STATIC);
    return store_bound(s, b, "selecting photos");
}

/* With a date: each candidate record is opened to compare its date. A photo
 * is selected when one record meets every condition; one that only lacks a
 * date is counted in *undated (and selected with include_undated). */
static int select_dated(lethe_store *s, const lethe_selector *q, const sel *x, uint64_t *undated)
{
    sqlite3_stmt *st = NULL, *ins = NULL;
    char *sql = select_sql(q, x, 1), *f[SP_FIELDS];
    uint8_t key[KR_KEY];
    int64_t photo = -1, undated_photo = -1, chosen = -1;
    kr_ref ref = {0, 0};
    int rc, step;
    if (!sql)
        return store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    if ((rc = store_prepare(s, sql, &st)) ||
        (rc = store_prepare(s, "INSERT OR IGNORE INTO temp.sel_photos(id) VALUES (?)", &ins)))
        goto out;
    if ((rc = bind_selector(s, st, q, x)))
        goto out;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t p = sqlite3_column_int64(st, 0);
        if (p != photo) {
            if (undated_photo == photo && chosen != photo && photo >= 0)
                (*undated)++;
            photo = p;
            ref.slot = (uint64_t)sqlite3_column_int64(st, 4);
            ref.id = (uint64_t)sqlite3_column_int64(st, 5);
            if ((rc = store_photo_key(s, ref, key)))
                goto out;
        }
        if (chosen == p || sqlite3_column_bytes(st, 2) != 32)
            continue;
        int o = seal_prov_open(key, ref.id, sqlite3_column_blob(st, 2),
                               sqlite3_column_blob(st, 3), (size_t)sqlite3_column_bytes(st, 3), f);
        if (o != LETHE_OK) {
            rc = o == LETHE_ERR_NOMEM ? store_fail(s, o, "out of memory")
                                      : store_fail(s, LETHE_ERR_STORE, "provenance %lld does not "
                                                   "open with its key",
                                                   (long long)sqlite3_column_int64(st, 1));
            goto out;
        }
        const char *at = f[SP_COLLECTED_AT];
        int take = *at ? strcmp(at, q->collected_before) < 0 : q->include_undated;
        if (!*at)
            undated_photo = p;
        lethe_free(f[0]);
        if (!take)
            continue;
        chosen = p;
        sqlite3_bind_int64(ins, 1, p);
        if (sqlite3_step(ins) != SQLITE_DONE) {
            rc = store_sqlfail(s, "selecting photos");
            goto out;
        }
        sqlite3_reset(ins);
    }
    if (undated_photo == photo && chosen != photo && photo >= 0)
        (*undated)++;
    if (step != SQLITE_DONE)
        rc = store_sqlfail(s, "selecting photos");
out:
    sodium_memzero(key, sizeof(key));
    sqlite3_finalize(st);
    sqlite3_finalize(ins);
    lethe_free(sql);
    return rc;
}

/* Fill temp.sel_photos with the photos the non-face conditions pick. */
static int select_photos(lethe_store *s, const lethe_selector *q, const sel *x, uint64_t *undated)
{
    sqlite3_stmt *st = NULL;
    int rc = store_exec(s, "DELETE FROM temp.sel_photos");
    if (rc)
        return rc;
    if (given(q->collected_before))
        return select_dated(s, q, x, undated);
    char *sql = select_sql(q, x, 0);
    if (!sql)
        return store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    if ((rc = store_prepare(s, sql, &st)) == LETHE_OK) {
        if ((rc = bind_selector(s, st, q, x)) == LETHE_OK && sqlite3_step(st) != SQLITE_DONE)
            rc = store_sqlfail(s, "selecting photos");
        sqlite3_finalize(st);
    }
    lethe_free(sql);
    return rc;
}

/* Fill temp.sel_faces with the faces like q->faces (and, when other
 * conditions were given, in photos they pick). */
static int select_faces(lethe_store *s, const lethe_selector *q, const sel *x,
                        int restrict_to_photos)
{
    char msg[512];
    int rc = store_index_ready(s);
    if (rc)
        return rc;
    size_t k = (size_t)idx_count(s->ix) + 1, nh = 0;
    idx_hit *hits = lethe_malloc(k * sizeof(*hits));
    sqlite3_stmt *ins = NULL;
    if (!hits)
        return store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    if ((rc = store_exec(s, "DELETE FROM temp.sel_faces")) ||
        (rc = store_prepare(s, restrict_to_photos
                                   ? "INSERT OR IGNORE INTO temp.sel_faces(id, distance) "
                                     "SELECT f.id, ?2 FROM faces f WHERE f.id = ?1 AND "
                                     "f.has_template AND f.photo IN (SELECT id FROM "
                                     "temp.sel_photos)"
                                   : "INSERT OR IGNORE INTO temp.sel_faces(id, distance) "
                                     "SELECT f.id, ?2 FROM faces f WHERE f.id = ?1 AND "
                                     "f.has_template",
                            &ins)))
        goto out;
    for (int i = 0; i < q->n_faces && rc == LETHE_OK; i++) {
        int r = idx_search(s->ix, q->faces + (size_t)i * IDX_DIM, 1, k, x->threshold, 1, hits,
                           &nh, msg, sizeof(msg));
        if (r != LETHE_OK) {
            rc = store_fail(s, r, "%s", msg);
            break;
        }
        for (size_t h = 0; h < nh && rc == LETHE_OK; h++) {
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

/* The ids a query returns, into a new array. */
static int ids_of(lethe_store *s, const char *sql, int64_t **out, size_t *n)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s, sql, &st);
    *out = NULL;
    *n = 0;
    return rc ? rc : store_ids(s, st, "reading the selection", out, n);
}

/* What the selection would erase. */
static int count_selection(lethe_store *s, int by_face, lethe_forget_result *r)
{
    if (by_face) {
        int64_t f = store_count(s, "SELECT COUNT(*) FROM temp.sel_faces");
        r->faces = f > 0 ? (uint64_t)f : 0;
        r->templates = r->faces; /* only faces with templates are selected */
        return f < 0 ? store_status(s) : LETHE_OK;
    }
    int64_t v[4] = {
        store_count(s, "SELECT COUNT(*) FROM temp.sel_photos"),
        store_count(s, "SELECT COUNT(*) FROM provenance WHERE photo IN (SELECT id FROM "
                       "temp.sel_photos)"),
        store_count(s, "SELECT COUNT(*) FROM faces WHERE photo IN (SELECT id FROM "
                       "temp.sel_photos)"),
        store_count(s, "SELECT COUNT(*) FROM faces WHERE has_template AND photo IN (SELECT id "
                       "FROM temp.sel_photos)")};
    for (int i = 0; i < 4; i++)
        if (v[i] < 0)
            return store_status(s);
    r->photos = (uint64_t)v[0];
    r->provenance = (uint64_t)v[1];
    r->faces = (uint64_t)v[2];
    r->templates = (uint64_t)v[3];
    return LETHE_OK;
}

/* The photos touched, as JSON: hash, status, faces, first URL and path
 * (opened with each photo's key: it is shown to the operator only). */
static int matched_json(lethe_store *s, int by_face, char **out)
{
    sqlite3_stmt *st;
    strbuf b;
    const char *sql = by_face ? "SELECT f.photo, MIN(sf.distance), COUNT(*) FROM temp.sel_faces "
                                "sf JOIN faces f ON f.id = sf.id GROUP BY f.photo ORDER BY 2"
                              : "SELECT id, NULL, (SELECT COUNT(*) FROM faces WHERE photo = "
                                "sp.id) FROM temp.sel_photos sp ORDER BY id";
    int rc = store_prepare(s, sql, &st), step = SQLITE_DONE;
    *out = NULL;
    if (rc)
        return rc;
    sb_init(&b);
    sb_puts(&b, "[");
    for (int i = 0; rc == LETHE_OK && (step = sqlite3_step(st)) == SQLITE_ROW; i++) {
        photo_rows r;
        char hex[65];
        if ((rc = rows_read(s, sqlite3_column_int64(st, 0), &r)) != LETHE_OK)
            break;
        sodium_bin2hex(hex, sizeof(hex), r.ph.sha, 32);
        sb_printf(&b, "%s{\"photo\":\"%s\",\"status\":", i ? "," : "", hex);
        sb_json_str(&b, r.status);
        if (by_face)
            sb_printf(&b, ",\"distance\":%.4f", sqlite3_column_double(st, 1));
        sb_printf(&b, ",\"faces\":%d,\"url\":", sqlite3_column_int(st, 2));
        sb_json_str(&b, r.nprov ? r.prov[0].v[PV_URL] : "");
        sb_puts(&b, ",\"path\":");
        sb_json_str(&b, r.nprov ? r.prov[0].v[PV_PATH] : "");
        sb_putc(&b, '}');
        rows_free(&r);
    }
    if (rc == LETHE_OK && step != SQLITE_DONE)
        rc = store_sqlfail(s, "reading the selection");
    sqlite3_finalize(st);
    sb_puts(&b, "]");
    char *text = sb_finish(&b);
    if (rc == LETHE_OK && !text)
        rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    if (rc != LETHE_OK) {
        lethe_free(text);
        return rc;
    }
    *out = text;
    return LETHE_OK;
}

/* ---------------------------------------------------------------- receipt */

static void put_hashed(lethe_store *s, strbuf *b, int *first, const char *name, const void *v,
                       size_t n)
{
    char h[65];
    store_keyed_hash(s, v, n, h);
    sb_printf(b, "%s\"%s\":\"%s\"", *first ? "" : ",", name, h);
    *first = 0;
}

/* The selector as it appears in a receipt: keyed hashes of the values,
 * never the values (a receipt holds no identifier in clear). */
static void put_selector(lethe_store *s, strbuf *b, const lethe_selector *q, const sel *x)
{
    int first = 1;
    const char *names[] = {"photo_id", "url", "uploader", "source"};
    const char *vals[] = {x->sha_only ? NULL : q->photo_id, q->url, q->uploader, q->source};
    for (int i = 0; i < 4; i++)
        if (given(vals[i]))
            put_hashed(s, b, &first, names[i], vals[i], strlen(vals[i]));
    if (x->jur[0])
        put_hashed(s, b, &first, "jurisdiction", x->jur, strlen(x->jur));
    if (given(q->collected_before)) {
        sb_printf(b, "%s\"collected_before\":", first ? "" : ",");
        sb_json_str(b, q->collected_before);
        sb_printf(b, ",\"include_undated\":%s", q->include_undated ? "true" : "false");
        first = 0;
    }
    if (x->has_sha)
        put_hashed(s, b, &first, x->sha_only ? "photo_sha256" : "image", x->sha, 32);
    if (q->n_faces > 0) {
        put_hashed(s, b, &first, "face", q->faces, (size_t)q->n_faces * IDX_DIM * sizeof(float));
        sb_printf(b, ",\"face_threshold\":%.3f", (double)x->threshold);
    }
}

/* The signed receipt of an erasure of kind whose selector's JSON members
 * are sel_members. */
static char *sign_receipt(lethe_store *s, const char *kind, const char *sel_members,
                          const lethe_forget_result *r)
{
    strbuf b;
    char now[32], pkhex[65], sighex[129], idhex[2 * KR_STORE_ID + 1], nonce_hex[33];
    uint8_t sig[64], pk[32], sk[64], nonce[16];
    store_now(now);
    /* Two erasures of the same selector with the same outcome in the same
     * second (an erasure of nothing, repeated) would otherwise sign the
     * same bytes: one receipt, one hash, for two entries of the log. */
    randombytes_buf(nonce, sizeof(nonce));
    sodium_bin2hex(nonce_hex, sizeof(nonce_hex), nonce, sizeof(nonce));
    kr_signing_key(s->kr, pk, sk);
    sodium_bin2hex(pkhex, sizeof(pkhex), pk, 32);
    sodium_bin2hex(idhex, sizeof(idhex), s->store_id, KR_STORE_ID);
    sb_init(&b);
    sb_printf(&b, "{\"lethe_receipt\":1,\"kind\":\"%s\",\"store_id\":\"%s\",\"store_key\":\"%s\","
                  "\"time\":\"%s\",\"nonce\":\"%s\",\"selector\":{", kind, idhex, pkhex, now,
              nonce_hex);
    sb_puts(&b, sel_members);
    sb_printf(&b, "},\"erased\":{\"photos\":%llu,\"provenance\":%llu,\"faces\":%llu,"
                  "\"templates\":%llu},\"digest_before\":\"%s\",\"digest_after\":\"%s\"",
              (unsigned long long)r->photos, (unsigned long long)r->provenance,
              (unsigned long long)r->faces, (unsigned long long)r->templates, r->digest_before,
              r->digest_after);
    /* The signature covers every byte before it, and the closing brace. */
    sb_putc(&b, '}');
    if (b.failed) {
        sodium_memzero(sk, sizeof(sk));
        sb_free(&b);
        return NULL;
    }
    crypto_sign_detached(sig, NULL, (const uint8_t *)b.s, b.len, sk);
    sodium_memzero(sk, sizeof(sk));
    sodium_bin2hex(sighex, sizeof(sighex), sig, sizeof(sig));
    b.len--; /* reopen */
    sb_printf(&b, ",\"signature\":\"%s\"}", sighex);
    return sb_finish(&b);
}

static char *make_receipt(lethe_store *s, const char *kind, const lethe_selector *q,
                          const sel *x, const lethe_forget_result *r)
{
    strbuf b;
    sb_init(&b);
    put_selector(s, &b, q, x);
    char *members = sb_finish(&b);
    char *rec = members ? sign_receipt(s, kind, members, r) : NULL;
    lethe_free(members);
    return rec;
}

/* Store the receipt, log it by its hash, keep its hash in the keyring. */
static int record_receipt(change *c, const char *kind, const char *actor, const char *rec,
                          const lethe_forget_result *r, uint8_t hash[32], char hex[65])
{
    lethe_store *s = c->s;
    sqlite3_stmt *st;
    char detail[256];
    kr_ref ref;
    crypto_generichash(hash, 32, (const uint8_t *)rec, strlen(rec), NULL, 0);
    sodium_bin2hex(hex, 65, hash, 32);
    snprintf(detail, sizeof(detail),
             "{\"photos\":%llu,\"provenance\":%llu,\"faces\":%llu,\"templates\":%llu}",
             (unsigned long long)r->photos, (unsigned long long)r->provenance,
             (unsigned long long)r->faces, (unsigned long long)r->templates);
    int rc = store_log_append(s, kind, actor, "", hex, (int64_t)(r->photos + r->faces), detail);
    if (rc || (rc = store_prepare(s, "INSERT INTO receipts(hash, time, json) VALUES (?, "
                                     "strftime('%Y-%m-%dT%H:%M:%SZ','now'), ?)", &st)))
        return rc;
    sqlite3_bind_text(st, 1, hex, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, rec, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = store_sqlfail(s, "storing the receipt");
    sqlite3_finalize(st);
    if (rc == LETHE_OK && (rc = kr_new_record(s->kr, KR_RECEIPT, KR_PENDING, hash, 32, &ref)))
        rc = store_fail(s, rc, "keyring: %s", lethe_strerror(rc));
    if (rc == LETHE_OK)
        rc = change_settle(c, ref);
    return rc;
}

/* The standing refusal of an opt-out: its record in the keyring, its
 * summary in the catalog. */
static int record_optout(change *c, const lethe_selector *q, const sel *x,
                         const uint8_t receipt[32], const char *receipt_hex)
{
    lethe_store *s = c->s;
    optout o;
    strbuf sel_names;
    const char *vals[OPT_HASHES] = {x->sha_only ? NULL : q->photo_id, q->url, q->uploader,
                                    q->source, x->jur[0] ? x->jur : NULL, NULL};
    static const char *names[OPT_HASHES] = {"photo_id", "url", "uploader", "source",
                                            "jurisdiction", "image"};
    memset(&o, 0, sizeof(o));
    sb_init(&sel_names);
    for (int k = 0; k < OPT_HASHES; k++) {
        int has = k == OPT_SHA ? x->has_sha : given(vals[k]);
        if (!has)
            continue;
        o.present |= 1u << k;
        if (k == OPT_SHA)
            store_hash(s, "sha256", x->sha, 32, o.h[k]);
        else
            store_hash(s, optout_tags[k], vals[k], strlen(vals[k]), o.h[k]);
        sb_printf(&sel_names, "%s%s", sel_names.len ? "," : "", names[k]);
    }
    if (given(q->collected_before)) {
        o.present |= OPT_COLLECTED_BEFORE;
        snprintf(o.collected_before, sizeof(o.collected_before), "%s", q->collected_before);
        o.include_undated = q->include_undated;
        sb_printf(&sel_names, "%scollected_before", sel_names.len ? "," : "");
    }
    if (q->n_faces > 0) {
        o.nfaces = q->n_faces;
        o.faces = (float *)q->faces; /* borrowed for the encoding */
        o.threshold = x->threshold;
        sb_printf(&sel_names, "%sface", sel_names.len ? "," : "");
    }
    memcpy(o.receipt, receipt, 32);
    store_now(o.created_at);
    char *selects = sb_finish(&sel_names);
    uint8_t *payload = NULL;
    size_t len = 0;
    kr_ref ref;
    sqlite3_stmt *st = NULL;
    int rc = selects ? optout_encode(&o, &payload, &len) : LETHE_ERR_NOMEM;
    if (rc == LETHE_OK && (rc = kr_new_record(s->kr, KR_OPTOUT, KR_PENDING, payload, len, &ref)))
        rc = store_fail(s, rc, "keyring: %s", lethe_strerror(rc));
    else if (rc)
        rc = store_fail(s, rc, "out of memory");
    if (rc == LETHE_OK &&
        (rc = store_prepare(s, "INSERT INTO optouts(kr_slot, kr_id, created_at, receipt, selects) "
                               "VALUES (?, ?, ?, ?, ?)", &st)) == LETHE_OK) {
        sqlite3_bind_int64(st, 1, (int64_t)ref.slot);
        sqlite3_bind_int64(st, 2, (int64_t)ref.id);
        sqlite3_bind_text(st, 3, o.created_at, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, receipt_hex, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, selects, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = store_sqlfail(s, "recording the opt-out");
        sqlite3_finalize(st);
    }
    if (rc == LETHE_OK)
        rc = change_settle(c, ref);
    if (payload)
        sodium_memzero(payload, len);
    lethe_free(payload);
    lethe_free(selects);
    return rc;
}

/* ------------------------------------------------------------------ forget */

/* Why an erasure needs confirmation, or NULL. */
static const char *wide_reason(const lethe_selector *q, const sel *x, const lethe_forget_result *r)
{
    if (q->n_faces > 0 && x->threshold > lethe_descriptor_threshold())
        return "the face threshold is above the match threshold: it erases other people's "
               "faces too";
    if ((given(q->source) || x->jur[0] || given(q->collected_before)) && !given(q->uploader) &&
        !given(q->url) && !given(q->photo_id) && !x->has_sha && q->n_faces <= 0)
        return "a source, jurisdiction or date selector erases more than one person's photos";
    if (r->photos > LETHE_FORGET_WIDE_PHOTOS)
        return "it erases more than 1000 photos";
    return NULL;
}

/* Select and count into *r (and *matched); the transaction is open. */
static int forget_select(lethe_store *s, const lethe_selector *q, const sel *x,
                         lethe_forget_result *r, char **matched)
{
    int by_face = q->n_faces > 0, other = has_provenance_cond(q) || x->has_sha, rc;
    if (other && (rc = select_photos(s, q, x, &r->undated_kept)))
        return rc;
    if (by_face && (rc = select_faces(s, q, x, other)))
        return rc;
    /* s->err cannot be both store_fail's output and one of its arguments */
    char why[sizeof(s->err)];
    if ((rc = count_selection(s, by_face, r))) {
        snprintf(why, sizeof(why), "%s", s->err);
        return store_fail(s, rc, "counting the selection: %s", why);
    }
    if (matched && (rc = matched_json(s, by_face, matched))) {
        snprintf(why, sizeof(why), "%s", s->err);
        return store_fail(s, rc, "listing the selection: %s", why);
    }
    return LETHE_OK;
}

/* Erase the selection, then the receipt and the opt-out, in change c. */
static int forget_erase(change *c, const lethe_selector *q, const sel *x, unsigned flags,
                        const char *actor, lethe_forget_result *r, char **receipt)
{
    lethe_store *s = c->s;
    int opt = (flags & LETHE_FORGET_OPTOUT) != 0, rc = LETHE_OK;
    int64_t *ids = NULL;
    size_t n = 0;
    erase_counts ec = {0};
    uint8_t hash[32];
    if (q->n_faces > 0) {
        if ((rc = ids_of(s, "SELECT DISTINCT f.photo FROM temp.sel_faces sf JOIN faces f ON "
                            "f.id = sf.id", &ids, &n)))
            return rc;
        for (size_t i = 0; i < n && rc == LETHE_OK; i++) {
            int64_t *faces = NULL;
            size_t nf = 0;
            char sql[160];
            snprintf(sql, sizeof(sql), "SELECT f.id FROM temp.sel_faces sf JOIN faces f ON f.id "
                     "= sf.id WHERE f.photo = %lld", (long long)ids[i]);
            if ((rc = ids_of(s, sql, &faces, &nf)) == LETHE_OK)
                rc = erase_part(c, ids[i], faces, nf, 0, NULL, &ec);
            lethe_free(faces);
        }
    } else if ((rc = ids_of(s, "SELECT id FROM temp.sel_photos", &ids, &n)) == LETHE_OK) {
        rc = erase_photos(c, ids, n, &ec);
    }
    lethe_free(ids);
    if (rc)
        return rc;
    dg_final(s->dig, r->digest_after);
    if (!(*receipt = make_receipt(s, opt ? "optout" : "forget", q, x, r)))
        return store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    if ((rc = record_receipt(c, opt ? "optout" : "forget", actor, *receipt, r, hash,
                             r->receipt_hash)))
        return rc;
    if (opt && (rc = record_optout(c, q, x, hash, r->receipt_hash)))
        return rc;
    return store_exec(s, "DELETE FROM temp.sel_photos; DELETE FROM temp.sel_faces");
}

int forget_receipt(change *c, const char *kind, const char *actor, const char *sel_members,
                   lethe_forget_result *r, char **receipt)
{
    lethe_store *s = c->s;
    uint8_t hash[32];
    dg_final(s->dig, r->digest_after);
    if (!(*receipt = sign_receipt(s, kind, sel_members, r)))
        return store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    return record_receipt(c, kind, actor, *receipt, r, hash, r->receipt_hash);
}

int lethe_forget(lethe_store *s, const lethe_selector *q, unsigned flags, const char *actor,
                 lethe_forget_result *res, char **receipt, char **matched)
{
    return forget_with(s, q, flags, actor, NULL, NULL, res, receipt, matched);
}

int forget_with(lethe_store *s, const lethe_selector *q, unsigned flags, const char *actor,
                forget_hook hook, void *ctx, lethe_forget_result *res, char **receipt,
                char **matched)
{
    lethe_forget_result r;
    change c = {0};
    sel x;
    char *rec = NULL;
    int rc, dry = (flags & LETHE_FORGET_DRY_RUN) != 0;
    memset(&r, 0, sizeof(r));
    if (receipt)
        *receipt = NULL;
    if (matched)
        *matched = NULL;
    if ((rc = store_writable(s)) || (rc = store_check_text(s, "the actor", actor, 1)) ||
        (rc = check_selector(s, q, &x)))
        goto done;
    /* A dry run reads a snapshot and takes no lock: it never waits. */
    if (dry ? (rc = store_exec(s, "BEGIN")) || (rc = dg_load(s, s->dig))
            : (rc = store_lock(s, "forget")) || (rc = change_begin(s, &c)))
        goto done;
    dg_final(s->dig, r.digest_before);
    rc = forget_select(s, q, &x, &r, matched);
    if (rc == LETHE_OK && !dry && !(flags & LETHE_FORGET_CONFIRMED) &&
        (r.wide = wide_reason(q, &x, &r)))
        rc = store_fail(s, LETHE_ERR_CONFIRM, "not erased: %s; look at the dry run, then "
                        "confirm", r.wide);
    if (rc == LETHE_OK && dry) {
        memcpy(r.digest_after, r.digest_before, sizeof(r.digest_after));
    } else if (rc == LETHE_OK) {
        rc = forget_erase(&c, q, &x, flags, actor, &r, &rec);
        if (rc == LETHE_OK && hook)
            rc = hook(s, &r, rec, ctx);
        if (rc == LETHE_OK)
            rc = change_commit(&c);
        if (rc != LETHE_OK && !c.committed)
            memset(r.receipt_hash, 0, sizeof(r.receipt_hash));
    }
done:;
    int committed = c.committed;
    if (dry)
        store_rollback(s);
    change_free(&c); /* rolls back a change still open */
    store_unlock(s);
    if (res)
        *res = r;
    /* committed: the receipt is the person's, even if a later step failed
     * (it is finished at the next open; the status says so) */
    if ((rc == LETHE_OK || committed) && receipt)
        *receipt = rec;
    else
        lethe_free(rec);
    if (rc != LETHE_OK && rc != LETHE_ERR_CONFIRM && matched) {
        lethe_free(*matched);
        *matched = NULL;
    }
    return rc;
}
