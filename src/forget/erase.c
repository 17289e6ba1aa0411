/*
 * erase.c: removing personal data from the catalog (see erase.h). The rows
 * go inside the change's transaction; the keys, the index rows and the
 * unused page bytes go after its commit (change.c).
 */
#include "forget/erase.h"

#include <assert.h>
#include <sodium.h>
#include <string.h>

#include "store/store.h"
#include "util/util.h"

static int delete_row(change *c, const char *sql, int64_t id, const char *what)
{
    sqlite3_stmt *st;
    int rc = store_prepare(c->s, sql, &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = store_sqlfail(c->s, what);
    sqlite3_finalize(st);
    return rc;
}

int erase_photos(change *c, const int64_t *ids, size_t n, erase_counts *counts)
{
    lethe_store *s = c->s;
    int rc = LETHE_OK;
    assert(c->open); /* erasures happen inside a change, never on their own */
    for (size_t i = 0; i < n && rc == LETHE_OK; i++) {
        photo_rows r;
        if ((rc = rows_read(s, ids[i], &r)) == LETHE_ERR_NOT_FOUND) {
            rc = LETHE_OK; /* selected twice, or gone already */
            continue;
        }
        if (rc)
            break;
        store_dg_rows(s, &r, -1);
        for (int k = 0; k < r.nfaces && rc == LETHE_OK; k++)
            if (r.faces[k].f.has_template)
                rc = change_index_remove(c, r.faces[k].id);
        if (rc == LETHE_OK)
            rc = change_shred(c, r.key_ref);
        if (rc == LETHE_OK) {
            /* the photo row and, by cascade, its provenance and faces */
            c->deletes_ok += 1 + (uint64_t)r.nprov + (uint64_t)r.nfaces;
            rc = delete_row(c, "DELETE FROM photos WHERE id = ?", ids[i], "erasing a photo");
        }
        if (rc == LETHE_OK && counts) {
            counts->photos++;
            counts->provenance += (uint64_t)r.nprov;
            counts->faces += (uint64_t)r.nfaces;
            for (int k = 0; k < r.nfaces; k++)
                counts->templates += r.faces[k].f.has_template ? 1u : 0u;
        }
        rows_free(&r);
    }
    c->erasing = 1;
    return rc;
}

static int listed(const int64_t *ids, size_t n, int64_t id)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] == id)
            return 1;
    return 0;
}

/* Drop the listed faces and, if asked, the templates of the others, from r
 * and the catalog (the index loses their templates). */
static int drop_faces(change *c, photo_rows *r, const int64_t *faces, size_t nfaces,
                      int drop_templates, erase_counts *counts)
{
    int kept = 0, rc = LETHE_OK;
    for (int k = 0; k < r->nfaces && rc == LETHE_OK; k++) {
        face_row *f = &r->faces[k];
        int gone = listed(faces, nfaces, f->id);
        if ((gone || drop_templates) && f->f.has_template) {
            if ((rc = change_index_remove(c, f->id)))
                break;
            f->f.has_template = 0;
            sodium_memzero(f->f.tmpl, sizeof(f->f.tmpl));
            if (counts)
                counts->templates++;
        }
        if (gone) {
            c->deletes_ok++;
            rc = delete_row(c, "DELETE FROM faces WHERE id = ?", f->id, "erasing a face");
            if (counts)
                counts->faces++;
            continue;
        }
        r->faces[kept++] = *f;
    }
    r->nfaces = kept;
    return rc;
}

int erase_part(change *c, int64_t photo, const int64_t *faces, size_t nfaces, int drop_templates,
               const char *status, erase_counts *counts)
{
    lethe_store *s = c->s;
    photo_rows r;
    assert(c->open);
    int rc = rows_read(s, photo, &r);
    if (rc)
        return rc == LETHE_ERR_NOT_FOUND ? LETHE_OK : rc;
    store_dg_rows(s, &r, -1);
    kr_ref old = r.key_ref;
    assert(old.id != 0); /* every photo row names its key */
    if ((rc = drop_faces(c, &r, faces, nfaces, drop_templates, counts)) == LETHE_OK &&
        (rc = kr_new_key(s->kr, &r.key_ref, r.key)) != LETHE_OK)
        rc = store_fail(s, rc, "keyring: %s", lethe_strerror(rc));
    if (rc == LETHE_OK && status)
        snprintf(r.status, sizeof(r.status), "%s", status);
    if (rc == LETHE_OK)
        rc = rows_reseal(s, &r);
    if (rc == LETHE_OK) {
        store_dg_rows(s, &r, 1);
        rc = change_shred(c, old);
    }
    c->erasing = 1;
    rows_free(&r);
    return rc;
}
