/*
 * rows.c: a photo's rows, sealed with its key on the way in and opened on
 * the way out (the encryption itself is forget/seal.c). Everything that
 * reads or writes the personal fields of photos, provenance and faces goes
 * through here, so that no plaintext of them reaches the catalog.
 */
#include <assert.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "store/store.h"
#include "util/util.h"

static const char photo_sql[] =
    "SELECT key_slot, key_id, kind, status, faces_found, added_at, sealed FROM photos "
    "WHERE id = ?";
static const char provs_sql[] =
    "SELECT id, fp, source, license, jurisdiction, consent, added_at, sealed FROM provenance "
    "WHERE photo = ? ORDER BY id";
static const char faces_sql[] = "SELECT id, ord, sealed FROM faces WHERE photo = ? ORDER BY ord";

static const char ins_photo_sql[] =
    "INSERT INTO photos(sha_h, key_slot, key_id, kind, status, faces_found, added_at, sealed) "
    "VALUES (?,?,?,?,?,?,?,?)";
static const char ins_prov_sql[] =
    "INSERT OR IGNORE INTO provenance(photo, fp, uploader_h, url_h, photo_id_h, source, license, "
    "jurisdiction, consent, added_at, sealed) VALUES (?,?,?,?,?,?,?,?,?,?,?)";
static const char ins_face_sql[] =
    "INSERT INTO faces(photo, ord, has_template, sealed, model, detector) VALUES (?,?,?,?,?,?)";
static const char by_sha_sql[] = "SELECT id, status FROM photos WHERE sha_h = ?";

int store_photo_key(lethe_store *s, kr_ref ref, uint8_t key[KR_KEY])
{
    int rc = kr_get_key(s->kr, ref, key);
    if (rc == LETHE_ERR_NOT_FOUND)
        return store_fail(s, LETHE_ERR_STORE,
                          "a photo's key is missing from the keyring (slot %llu): the keyring is "
                          "damaged or older than the catalog",
                          (unsigned long long)ref.slot);
    if (rc == LETHE_ERR_FORMAT)
        return store_fail(s, LETHE_ERR_STORE, "the keyring's slot %llu is damaged",
                          (unsigned long long)ref.slot);
    if (rc)
        return store_fail(s, rc, "reading the keyring: %s", lethe_strerror(rc));
    return LETHE_OK;
}

static void copy_col(char *out, size_t n, sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    snprintf(out, n, "%s", t ? (const char *)t : "");
}

int rows_read_photo(lethe_store *s, int64_t photo, photo_rows *r)
{
    sqlite3_stmt *st;
    memset(r, 0, sizeof(*r));
    int rc = store_cached(s, STORE_STMT_PHOTO, photo_sql, &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, photo);
    int step = sqlite3_step(st);
    if (step != SQLITE_ROW) {
        rc = step == SQLITE_DONE ? LETHE_ERR_NOT_FOUND : store_sqlfail(s, "reading a photo");
        sqlite3_reset(st);
        return rc;
    }
    r->id = photo;
    r->key_ref.slot = (uint64_t)sqlite3_column_int64(st, 0);
    r->key_ref.id = (uint64_t)sqlite3_column_int64(st, 1);
    copy_col(r->kind, sizeof(r->kind), st, 2);
    copy_col(r->status, sizeof(r->status), st, 3);
    r->faces_found = sqlite3_column_type(st, 4) == SQLITE_NULL ? -1 : sqlite3_column_int(st, 4);
    copy_col(r->added_at, sizeof(r->added_at), st, 5);
    rc = store_photo_key(s, r->key_ref, r->key);
    int o = rc ? LETHE_OK
               : seal_photo_open(r->key, r->key_ref.id, sqlite3_column_blob(st, 6),
                                 (size_t)sqlite3_column_bytes(st, 6), &r->ph);
    if (o == LETHE_ERR_NOMEM)
        rc = store_fail(s, o, "out of memory");
    else if (o != LETHE_OK)
        rc = store_fail(s, LETHE_ERR_STORE, "photo %lld does not open with its key",
                        (long long)photo);
    sqlite3_reset(st);
    if (rc)
        rows_free(r);
    return rc;
}

static int read_provs(lethe_store *s, photo_rows *r)
{
    sqlite3_stmt *st;
    int rc = store_cached(s, STORE_STMT_PROVS, provs_sql, &st), step, cap = 0;
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, r->id);
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (r->nprov == cap) {
            int nc = cap ? 2 * cap : 4;
            prov_row *t = lethe_realloc(r->prov, (size_t)nc * sizeof(*t));
            if (!t) {
                rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
                break;
            }
            r->prov = t;
            cap = nc;
        }
        prov_row *p = &r->prov[r->nprov];
        memset(p, 0, sizeof(*p));
        p->id = sqlite3_column_int64(st, 0);
        if (sqlite3_column_bytes(st, 1) != 32) {
            rc = store_fail(s, LETHE_ERR_STORE, "provenance %lld is damaged", (long long)p->id);
            break;
        }
        memcpy(p->fp, sqlite3_column_blob(st, 1), 32);
        r->nprov++; /* from here rows_free frees it */
        for (int i = 0; i < 4 && rc == LETHE_OK; i++) {
            const unsigned char *t = sqlite3_column_text(st, 2 + i);
            if (!(p->v[PV_SOURCE + i] = lethe_strdup(t ? (const char *)t : "")))
                rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
        }
        copy_col(p->added_at, sizeof(p->added_at), st, 6);
        if (rc)
            break;
        int o = seal_prov_open(r->key, r->key_ref.id, p->fp, sqlite3_column_blob(st, 7),
                               (size_t)sqlite3_column_bytes(st, 7), p->v);
        if (o != LETHE_OK) {
            rc = o == LETHE_ERR_NOMEM ? store_fail(s, o, "out of memory")
                                      : store_fail(s, LETHE_ERR_STORE, "provenance %lld does "
                                                   "not open with its photo's key",
                                                   (long long)p->id);
            break;
        }
    }
    if (rc == LETHE_OK && step != SQLITE_DONE)
        rc = store_sqlfail(s, "reading provenance");
    sqlite3_reset(st);
    return rc;
}

static int read_faces(lethe_store *s, photo_rows *r)
{
    sqlite3_stmt *st;
    int rc = store_cached(s, STORE_STMT_FACES, faces_sql, &st), step, cap = 0;
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, r->id);
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (r->nfaces == cap) {
            int nc = cap ? 2 * cap : 4;
            face_row *t = lethe_realloc(r->faces, (size_t)nc * sizeof(*t));
            if (!t) {
                rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
                break;
            }
            r->faces = t;
            cap = nc;
        }
        face_row *f = &r->faces[r->nfaces];
        f->id = sqlite3_column_int64(st, 0);
        f->ord = sqlite3_column_int(st, 1);
        int o = seal_face_open(r->key, r->key_ref.id, f->ord, sqlite3_column_blob(st, 2),
                               (size_t)sqlite3_column_bytes(st, 2), &f->f);
        if (o != LETHE_OK) {
            rc = o == LETHE_ERR_NOMEM ? store_fail(s, o, "out of memory")
                                      : store_fail(s, LETHE_ERR_STORE, "face %lld does not "
                                                   "open with its photo's key",
                                                   (long long)f->id);
            break;
        }
        r->nfaces++;
    }
    if (rc == LETHE_OK && step != SQLITE_DONE)
        rc = store_sqlfail(s, "reading faces");
    sqlite3_reset(st);
    return rc;
}

int rows_read(lethe_store *s, int64_t photo, photo_rows *r)
{
    int rc = rows_read_photo(s, photo, r);
    if (rc == LETHE_OK && (rc = read_provs(s, r)) == LETHE_OK)
        rc = read_faces(s, r);
    if (rc != LETHE_OK)
        rows_free(r);
    return rc;
}

void rows_free(photo_rows *r)
{
    for (int i = 0; i < r->nprov; i++) {
        prov_row *p = &r->prov[i];
        if (p->v[0]) {
            size_t n = 0;
            for (int k = 0; k < SP_FIELDS; k++)
                n += (p->v[k] ? strlen(p->v[k]) : 0) + 1;
            sodium_memzero(p->v[0], n);
            lethe_free(p->v[0]);
        }
        for (int k = SP_FIELDS; k < PV_FIELDS; k++)
            lethe_free(p->v[k]);
    }
    if (r->faces)
        sodium_memzero(r->faces, (size_t)r->nfaces * sizeof(*r->faces));
    lethe_free(r->prov);
    lethe_free(r->faces);
    sodium_memzero(r, sizeof(*r));
}

int rows_find_sha(lethe_store *s, const uint8_t sha[32], int64_t *id, char status[16])
{
    sqlite3_stmt *st;
    uint8_t h[32];
    int rc = store_cached(s, STORE_STMT_BY_SHA, by_sha_sql, &st);
    if (rc)
        return -1;
    store_hash(s, "sha256", sha, 32, h);
    /* a hash that could not be bound would find no photo: not "new" */
    if (store_bound(s, sqlite3_bind_blob(st, 1, h, 32, SQLITE_TRANSIENT), "looking up a photo")) {
        sqlite3_reset(st);
        return -1;
    }
    int r = sqlite3_step(st), found = 0;
    if (r == SQLITE_ROW) {
        *id = sqlite3_column_int64(st, 0);
        if (status)
            copy_col(status, 16, st, 1);
        found = 1;
    } else if (r != SQLITE_DONE) {
        store_sqlfail(s, "looking up a photo");
        found = -1;
    }
    sqlite3_reset(st);
    return found;
}

/* ------------------------------------------------------------- writing */

int rows_insert_photo(lethe_store *s, const photo_rows *r, int64_t *id)
{
    assert(r->key_ref.id != 0); /* sealed with a key the keyring holds */
    sqlite3_stmt *st;
    uint8_t h[32], *sealed = NULL;
    size_t n = 0;
    char now[32];
    int rc = store_cached(s, STORE_STMT_INS_PHOTO, ins_photo_sql, &st);
    if (rc)
        return rc;
    if ((rc = seal_photo_seal(r->key, r->key_ref.id, &r->ph, &sealed, &n)))
        return store_fail(s, rc, "out of memory");
    store_hash(s, "sha256", r->ph.sha, 32, h);
    store_now(now);
    int b = sqlite3_bind_blob(st, 1, h, 32, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, (int64_t)r->key_ref.slot);
    sqlite3_bind_int64(st, 3, (int64_t)r->key_ref.id);
    b |= sqlite3_bind_text(st, 4, r->kind, -1, SQLITE_TRANSIENT);
    b |= sqlite3_bind_text(st, 5, r->status, -1, SQLITE_TRANSIENT);
    if (r->faces_found >= 0)
        sqlite3_bind_int(st, 6, r->faces_found);
    b |= sqlite3_bind_text(st, 7, now, -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(st, 8, sealed, (int)n, SQLITE_STATIC);
    if ((rc = store_bound(s, b, "recording a photo")) == LETHE_OK &&
        sqlite3_step(st) != SQLITE_DONE)
        rc = store_sqlfail(s, "recording a photo");
    else
        *id = sqlite3_last_insert_rowid(s->db);
    sqlite3_reset(st);
    lethe_free(sealed);
    return rc;
}

void rows_fingerprint(const lethe_store *s, const char *const v[PV_FIELDS], uint8_t fp[32])
{
    crypto_generichash_state h;
    crypto_generichash_init(&h, kr_salt(s->kr), KR_SALT, 32);
    crypto_generichash_update(&h, (const uint8_t *)"prov", 5);
    for (int i = 0; i < PV_FIELDS; i++) {
        const char *t = v[i] ? v[i] : "";
        uint64_t n = strlen(t);
        crypto_generichash_update(&h, (const uint8_t *)&n, sizeof(n));
        crypto_generichash_update(&h, (const uint8_t *)t, n);
    }
    crypto_generichash_final(&h, fp, 32);
}

/* A lookup hash (keyed, tagged), or NULL for an empty value; SQLite's
 * result (a copy that ran out of memory would store a NULL). */
static int bind_lookup(lethe_store *s, sqlite3_stmt *st, int col, const char *tag, const char *v)
{
    uint8_t h[32];
    if (!v || !*v)
        return sqlite3_bind_null(st, col);
    store_hash(s, tag, v, strlen(v), h);
    return sqlite3_bind_blob(st, col, h, 32, SQLITE_TRANSIENT);
}

int rows_insert_prov(lethe_store *s, const photo_rows *r, const char *const v[PV_FIELDS],
                     int *added)
{
    sqlite3_stmt *st;
    uint8_t fp[32], *sealed = NULL;
    size_t n = 0;
    char now[32];
    *added = 0;
    int rc = store_cached(s, STORE_STMT_INS_PROV, ins_prov_sql, &st);
    if (rc)
        return rc;
    rows_fingerprint(s, v, fp);
    if ((rc = seal_prov_seal(r->key, r->key_ref.id, fp, v, &sealed, &n)))
        return store_fail(s, rc, rc == LETHE_ERR_NOMEM ? "out of memory" : "provenance too long");
    store_now(now);
    sqlite3_bind_int64(st, 1, r->id);
    int b = sqlite3_bind_blob(st, 2, fp, 32, SQLITE_TRANSIENT);
    b |= bind_lookup(s, st, 3, "uploader", v[PV_UPLOADER]);
    b |= bind_lookup(s, st, 4, "url", v[PV_URL]);
    b |= bind_lookup(s, st, 5, "photo_id", v[PV_PHOTO_ID]);
    for (int i = 0; i < 4; i++)
        b |= sqlite3_bind_text(st, 6 + i, v[PV_SOURCE + i] ? v[PV_SOURCE + i] : "", -1,
                               SQLITE_TRANSIENT);
    b |= sqlite3_bind_text(st, 10, now, -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(st, 11, sealed, (int)n, SQLITE_STATIC);
    if ((rc = store_bound(s, b, "recording provenance")) == LETHE_OK &&
        sqlite3_step(st) != SQLITE_DONE)
        rc = store_sqlfail(s, "recording provenance");
    else
        *added = sqlite3_changes(s->db) > 0;
    sqlite3_reset(st);
    lethe_free(sealed);
    return rc;
}

int rows_insert_face(lethe_store *s, const photo_rows *r, int ord, const seal_face *f,
                     int64_t model, const char *detector, int64_t *id)
{
    sqlite3_stmt *st;
    uint8_t *sealed = NULL;
    size_t n = 0;
    int rc = store_cached(s, STORE_STMT_INS_FACE, ins_face_sql, &st);
    if (rc)
        return rc;
    if ((rc = seal_face_seal(r->key, r->key_ref.id, ord, f, &sealed, &n)))
        return store_fail(s, rc, "out of memory");
    sqlite3_bind_int64(st, 1, r->id);
    sqlite3_bind_int(st, 2, ord);
    sqlite3_bind_int(st, 3, f->has_template ? 1 : 0);
    sqlite3_bind_blob(st, 4, sealed, (int)n, SQLITE_STATIC);
    if (model > 0)
        sqlite3_bind_int64(st, 5, model);
    else
        sqlite3_bind_null(st, 5);
    sqlite3_bind_text(st, 6, detector ? detector : "", -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = store_sqlfail(s, "recording a face");
    else if (id)
        *id = sqlite3_last_insert_rowid(s->db);
    sqlite3_reset(st);
    lethe_free(sealed);
    return rc;
}

/* Write every row of r again under r's (new) key: the photo row's key
 * reference and sealed values, each provenance record's and each face's.
 * Faces not in r->faces are not touched (erase.c deletes them). */
int rows_reseal(lethe_store *s, const photo_rows *r)
{
    sqlite3_stmt *ph = NULL, *pv = NULL, *fc = NULL;
    uint8_t *sealed = NULL;
    size_t n = 0;
    int rc;
    if ((rc = store_prepare(s, "UPDATE photos SET key_slot = ?, key_id = ?, status = ?, "
                               "sealed = ? WHERE id = ?", &ph)) ||
        (rc = store_prepare(s, "UPDATE provenance SET sealed = ? WHERE id = ?", &pv)) ||
        (rc = store_prepare(s, "UPDATE faces SET has_template = ?, sealed = ? WHERE id = ?", &fc)))
        goto out;
    if ((rc = seal_photo_seal(r->key, r->key_ref.id, &r->ph, &sealed, &n)))
        goto oom;
    sqlite3_bind_int64(ph, 1, (int64_t)r->key_ref.slot);
    sqlite3_bind_int64(ph, 2, (int64_t)r->key_ref.id);
    sqlite3_bind_text(ph, 3, r->status, -1, SQLITE_STATIC);
    sqlite3_bind_blob(ph, 4, sealed, (int)n, SQLITE_STATIC);
    sqlite3_bind_int64(ph, 5, r->id);
    if (sqlite3_step(ph) != SQLITE_DONE)
        goto sqlfail;
    for (int i = 0; i < r->nprov; i++) {
        lethe_free(sealed);
        sealed = NULL;
        if ((rc = seal_prov_seal(r->key, r->key_ref.id, r->prov[i].fp,
                                 (const char *const *)r->prov[i].v, &sealed, &n)))
            goto oom;
        sqlite3_bind_blob(pv, 1, sealed, (int)n, SQLITE_STATIC);
        sqlite3_bind_int64(pv, 2, r->prov[i].id);
        if (sqlite3_step(pv) != SQLITE_DONE)
            goto sqlfail;
        sqlite3_reset(pv);
    }
    for (int i = 0; i < r->nfaces; i++) {
        lethe_free(sealed);
        sealed = NULL;
        if ((rc = seal_face_seal(r->key, r->key_ref.id, r->faces[i].ord, &r->faces[i].f,
                                 &sealed, &n)))
            goto oom;
        sqlite3_bind_int(fc, 1, r->faces[i].f.has_template ? 1 : 0);
        sqlite3_bind_blob(fc, 2, sealed, (int)n, SQLITE_STATIC);
        sqlite3_bind_int64(fc, 3, r->faces[i].id);
        if (sqlite3_step(fc) != SQLITE_DONE)
            goto sqlfail;
        sqlite3_reset(fc);
    }
    rc = LETHE_OK;
    goto out;
oom:
    rc = store_fail(s, rc, "out of memory");
    goto out;
sqlfail:
    rc = store_sqlfail(s, "sealing a photo's rows with its new key");
out:
    sqlite3_finalize(ph);
    sqlite3_finalize(pv);
    sqlite3_finalize(fc);
    lethe_free(sealed);
    return rc;
}

int rows_update_photo(lethe_store *s, const photo_rows *r)
{
    sqlite3_stmt *st;
    uint8_t *sealed = NULL;
    size_t n = 0;
    int rc = seal_photo_seal(r->key, r->key_ref.id, &r->ph, &sealed, &n);
    if (rc)
        return store_fail(s, rc, "out of memory");
    if ((rc = store_prepare(s, "UPDATE photos SET status = ?, faces_found = ?, sealed = ? "
                               "WHERE id = ?", &st)) == LETHE_OK) {
        sqlite3_bind_text(st, 1, r->status, -1, SQLITE_STATIC);
        if (r->faces_found >= 0)
            sqlite3_bind_int(st, 2, r->faces_found);
        sqlite3_bind_blob(st, 3, sealed, (int)n, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, r->id);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = store_sqlfail(s, "updating a photo");
        sqlite3_finalize(st);
    }
    lethe_free(sealed);
    return rc;
}
