/*
 * optout.c: standing opt-outs (see optout.h): their keyring payload,
 * loading them for an ingest, matching photos and faces, the catalog's
 * summary, listing and withdrawing.
 *
 * Payload (little-endian): u8 version (1) | u16 present | u8 include_undated
 * | f32 threshold | u32 nfaces | u8 receipt [32] | u8 len + created_at |
 * u8 len + collected_before | the hashes of the parts present, 32 bytes
 * each, in OPT_* order | nfaces x 128 f32.
 */
#include "forget/optout.h"

#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "forget/change.h"
#include "store/store.h"
#include "util/strbuf.h"
#include "util/util.h"

const char *const optout_tags[OPT_HASHES] = {"photo_id", "url", "uploader", "source",
                                             "jurisdiction", "sha256"};

int optout_encode(const optout *o, uint8_t **out, size_t *len)
{
    size_t cl = strlen(o->created_at), bl = strlen(o->collected_before), nh = 0;
    for (int k = 0; k < OPT_HASHES; k++)
        nh += (o->present >> k) & 1u;
    size_t n = 1 + 2 + 1 + 4 + 4 + 32 + 1 + cl + 1 + bl + 32 * nh +
               (size_t)o->nfaces * SEAL_DIM * sizeof(float);
    uint8_t *p = lethe_malloc(n), *w = p;
    *out = NULL;
    *len = 0;
    if (!p)
        return LETHE_ERR_NOMEM;
    uint32_t nf = (uint32_t)o->nfaces;
    *w++ = 1;
    *w++ = (uint8_t)o->present;
    *w++ = (uint8_t)(o->present >> 8);
    *w++ = (uint8_t)(o->include_undated ? 1 : 0);
    memcpy(w, &o->threshold, 4);
    w += 4;
    memcpy(w, &nf, 4);
    w += 4;
    memcpy(w, o->receipt, 32);
    w += 32;
    *w++ = (uint8_t)cl;
    memcpy(w, o->created_at, cl);
    w += cl;
    *w++ = (uint8_t)bl;
    memcpy(w, o->collected_before, bl);
    w += bl;
    for (int k = 0; k < OPT_HASHES; k++)
        if (o->present & (1u << k)) {
            memcpy(w, o->h[k], 32);
            w += 32;
        }
    if (nf)
        memcpy(w, o->faces, (size_t)nf * SEAL_DIM * sizeof(float));
    *out = p;
    *len = n;
    return LETHE_OK;
}

/* Take n bytes from the payload; -1 when it runs out. */
static int take(const uint8_t **p, size_t *left, void *dst, size_t n)
{
    if (*left < n)
        return -1;
    if (dst)
        memcpy(dst, *p, n);
    *p += n;
    *left -= n;
    return 0;
}

int optout_decode(const uint8_t *p, size_t len, optout *o)
{
    uint8_t ver, pr[2], und, cl, bl;
    uint32_t nf;
    memset(o, 0, sizeof(*o));
    if (take(&p, &len, &ver, 1) || ver != 1 || take(&p, &len, pr, 2) ||
        take(&p, &len, &und, 1) || take(&p, &len, &o->threshold, 4) ||
        take(&p, &len, &nf, 4) || take(&p, &len, o->receipt, 32) || take(&p, &len, &cl, 1) ||
        cl >= sizeof(o->created_at) || take(&p, &len, o->created_at, cl) ||
        take(&p, &len, &bl, 1) || bl >= sizeof(o->collected_before) ||
        take(&p, &len, o->collected_before, bl))
        return LETHE_ERR_FORMAT;
    o->present = (unsigned)pr[0] | (unsigned)pr[1] << 8;
    o->include_undated = und;
    for (int k = 0; k < OPT_HASHES; k++)
        if ((o->present & (1u << k)) && take(&p, &len, o->h[k], 32))
            return LETHE_ERR_FORMAT;
    if (nf > (1u << 16) || len != (size_t)nf * SEAL_DIM * sizeof(float) ||
        !(o->threshold >= 0) || !isfinite(o->threshold))
        return LETHE_ERR_FORMAT;
    if (nf) {
        if (!(o->faces = lethe_malloc(len)))
            return LETHE_ERR_NOMEM;
        memcpy(o->faces, p, len);
        o->nfaces = (int)nf;
    }
    return LETHE_OK;
}

void optout_clear(optout *o)
{
    if (o->faces)
        sodium_memzero(o->faces, (size_t)o->nfaces * SEAL_DIM * sizeof(float));
    lethe_free(o->faces);
    sodium_memzero(o, sizeof(*o));
}

void optout_free_all(optout *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        optout_clear(&v[i]);
    lethe_free(v);
}

int optout_load_all(lethe_store *s, optout **out, size_t *n)
{
    sqlite3_stmt *st;
    int64_t count = store_count(s, "SELECT COUNT(*) FROM optouts WHERE removed_at IS NULL");
    *out = NULL;
    *n = 0;
    if (count < 0)
        return store_status(s);
    if (!count)
        return LETHE_OK;
    optout *v = lethe_calloc((size_t)count, sizeof(*v));
    if (!v)
        return store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    int rc = store_prepare(s, "SELECT id, kr_slot, kr_id FROM optouts WHERE removed_at IS NULL "
                              "ORDER BY id", &st);
    size_t k = 0;
    while (rc == LETHE_OK && k < (size_t)count && sqlite3_step(st) == SQLITE_ROW) {
        kr_ref ref = {(uint64_t)sqlite3_column_int64(st, 1), (uint64_t)sqlite3_column_int64(st, 2)};
        uint8_t *payload = NULL;
        size_t len = 0;
        int r = kr_get_record(s->kr, ref, KR_OPTOUT, &payload, &len, NULL);
        if (r == LETHE_OK)
            r = optout_decode(payload, len, &v[k]);
        if (payload)
            sodium_memzero(payload, len);
        lethe_free(payload);
        if (r != LETHE_OK)
            rc = store_fail(s, r == LETHE_ERR_NOMEM ? r : LETHE_ERR_STORE,
                            "opt-out %lld cannot be read from the keyring (%s): the keyring is "
                            "damaged or older than the catalog",
                            (long long)sqlite3_column_int64(st, 0), lethe_strerror(r));
        else
            k++;
    }
    sqlite3_finalize(st);
    if (rc) {
        optout_free_all(v, (size_t)count);
        return rc;
    }
    *out = v;
    *n = k;
    return LETHE_OK;
}

static int hash_is(lethe_store *s, const uint8_t want[32], const char *tag, const void *v,
                   size_t n)
{
    uint8_t h[32];
    store_hash(s, tag, v, n, h);
    return sodium_memcmp(h, want, 32) == 0;
}

int optout_holds(lethe_store *s, const optout *o, const uint8_t sha[32], const char *const v[])
{
    static const int field[4] = {PV_PHOTO_ID, PV_URL, PV_UPLOADER, PV_SOURCE};
    if ((o->present & (1u << OPT_SHA)) && !hash_is(s, o->h[OPT_SHA], "sha256", sha, 32))
        return 0;
    for (int k = 0; k < 4; k++) {
        const char *x = v[field[k]];
        if ((o->present & (1u << k)) &&
            (!x || !*x || !hash_is(s, o->h[k], optout_tags[k], x, strlen(x))))
            return 0;
    }
    if (o->present & (1u << OPT_JURISDICTION)) {
        const char *j = v[PV_JURISDICTION] ? v[PV_JURISDICTION] : "";
        char country[3] = {j[0], j[0] ? j[1] : 0, 0};
        if (!*j || (!hash_is(s, o->h[OPT_JURISDICTION], "jurisdiction", j, strlen(j)) &&
                    !(j[2] == '-' &&
                      hash_is(s, o->h[OPT_JURISDICTION], "jurisdiction", country, 2))))
            return 0;
    }
    if (o->present & OPT_COLLECTED_BEFORE) {
        const char *at = v[PV_COLLECTED_AT] ? v[PV_COLLECTED_AT] : "";
        if (*at ? strcmp(at, o->collected_before) >= 0 : !o->include_undated)
            return 0;
    }
    return 1;
}

int optout_refuses_photo(lethe_store *s, const optout *v, size_t n, const uint8_t sha[32],
                         const char *const rec[])
{
    for (size_t i = 0; i < n; i++)
        if (!v[i].nfaces && optout_holds(s, &v[i], sha, rec))
            return 1;
    return 0;
}

int optout_refuses_face(lethe_store *s, const optout *v, size_t n, const uint8_t sha[32],
                        const char *const rec[], const float *desc)
{
    for (size_t i = 0; i < n; i++) {
        if (!v[i].nfaces || !optout_holds(s, &v[i], sha, rec))
            continue;
        for (int k = 0; k < v[i].nfaces; k++)
            if (lethe_descriptor_distance(desc, v[i].faces + (size_t)k * SEAL_DIM) <=
                v[i].threshold)
                return 1;
    }
    return 0;
}

/* ------------------------------------------------------------ the API */

int lethe_optout_list(lethe_store *s, char **json)
{
    sqlite3_stmt *st;
    strbuf b;
    int rc = store_prepare(s, "SELECT id, created_at, receipt, selects FROM optouts WHERE "
                              "removed_at IS NULL ORDER BY id", &st), step;
    *json = NULL;
    if (rc)
        return rc;
    sb_init(&b);
    sb_puts(&b, "[");
    for (int i = 0; (step = sqlite3_step(st)) == SQLITE_ROW; i++) {
        sb_printf(&b, "%s{\"id\":%lld,\"created_at\":", i ? "," : "",
                  (long long)sqlite3_column_int64(st, 0));
        sb_json_str(&b, (const char *)sqlite3_column_text(st, 1));
        sb_puts(&b, ",\"receipt\":");
        sb_json_str(&b, (const char *)sqlite3_column_text(st, 2));
        sb_puts(&b, ",\"selects\":[");
        /* selects is "a,b,c" of fixed names written by optout_record */
        const char *sel = (const char *)sqlite3_column_text(st, 3);
        for (int first = 1; sel && *sel; first = 0) {
            size_t k = strcspn(sel, ",");
            sb_printf(&b, "%s\"%.*s\"", first ? "" : ",", (int)k, sel);
            sel += k + (sel[k] == ',');
        }
        sb_puts(&b, "]}");
    }
    sqlite3_finalize(st);
    sb_puts(&b, "]\n");
    if (step != SQLITE_DONE) {
        sb_free(&b);
        return store_sqlfail(s, "reading opt-outs");
    }
    *json = sb_finish(&b);
    return *json ? LETHE_OK : store_fail(s, LETHE_ERR_NOMEM, "out of memory");
}

int lethe_optout_remove(lethe_store *s, int64_t id, const char *actor)
{
    sqlite3_stmt *st;
    change c = {0};
    char detail[64], now[32];
    int rc;
    if ((rc = store_writable(s)) || (rc = store_check_text(s, "the actor", actor, 1)) ||
        (rc = store_lock(s, "optout remove")) || (rc = change_begin(s, &c)))
        goto out;
    if ((rc = store_prepare(s, "SELECT kr_slot, kr_id FROM optouts WHERE id = ? AND removed_at "
                               "IS NULL", &st)))
        goto out;
    sqlite3_bind_int64(st, 1, id);
    kr_ref ref = {0, 0};
    int step = sqlite3_step(st), found = step == SQLITE_ROW;
    if (step != SQLITE_ROW && step != SQLITE_DONE) {
        rc = store_sqlfail(s, "finding the opt-out");
        sqlite3_finalize(st);
        goto out;
    }
    if (found) {
        ref.slot = (uint64_t)sqlite3_column_int64(st, 0);
        ref.id = (uint64_t)sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    if (!found) {
        rc = store_fail(s, LETHE_ERR_NOT_FOUND, "no standing opt-out %lld", (long long)id);
        goto out;
    }
    store_now(now);
    if ((rc = store_prepare(s, "UPDATE optouts SET removed_at = ? WHERE id = ?", &st)))
        goto out;
    sqlite3_bind_text(st, 1, now, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, id);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = store_sqlfail(s, "withdrawing the opt-out");
    sqlite3_finalize(st);
    snprintf(detail, sizeof(detail), "{\"optout\":%lld}", (long long)id);
    if (rc == LETHE_OK && (rc = store_log_append(s, "optout-removed", actor, "", "", 1, detail)) ==
                              LETHE_OK &&
        (rc = change_shred(&c, ref)) == LETHE_OK)
        rc = change_commit(&c);
out:
    change_free(&c);
    store_unlock(s);
    return rc;
}
