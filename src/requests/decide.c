/*
 * decide.c: the decisions on data-subject requests: approval (the erasure
 * or opt-out the request asks for, through lethe_forget, then the request
 * recorded done with its receipt and what it selected forgotten), denial,
 * and the operator's rules for approving kinds of request at once.
 *
 * An approval is one commit: the request's row is recorded done inside
 * lethe_forget's change (forget_with), so a crash or a failure leaves
 * either the erasure and the request done together, or neither.
 */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "forget/forget.h"
#include "requests/requests.h"
#include "store/store.h"
#include "util/util.h"

/* What approve_hook records. */
typedef struct approval {
    int64_t number;
    const char *actor;
} approval;

/* The request's row done, inside the erasure's change (forget_hook). */
static int approve_hook(lethe_store *s, const lethe_forget_result *r, const char *receipt,
                        void *ctx)
{
    const approval *a = ctx;
    sqlite3_stmt *st;
    char now[32], detail[160];
    int rc;
    if ((rc = store_prepare(s, "UPDATE requests SET status = 'done', decided_at = ?, "
                               "decided_by = ?, note = NULL, sealed = NULL, receipt = ?, "
                               "receipt_hash = ?, photos = ?, faces = ?, templates = ? WHERE "
                               "id = ? AND status = 'pending'", &st)))
        return rc;
    store_now(now);
    sqlite3_bind_text(st, 1, now, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, a->actor ? a->actor : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, receipt, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, r->receipt_hash, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, (int64_t)r->photos);
    sqlite3_bind_int64(st, 6, (int64_t)r->faces);
    sqlite3_bind_int64(st, 7, (int64_t)r->templates);
    sqlite3_bind_int64(st, 8, a->number);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = store_sqlfail(s, "recording the request done");
    else if (sqlite3_changes(s->db) != 1)
        rc = store_fail(s, LETHE_ERR_ARG, "request %lld was decided meanwhile; nothing erased",
                        (long long)a->number);
    sqlite3_finalize(st);
    snprintf(detail, sizeof(detail), "{\"request\":%lld,\"receipt\":\"%s\"}",
             (long long)a->number, r->receipt_hash);
    if (rc == LETHE_OK)
        rc = store_log_append(s, "request-approve", a->actor, "", r->receipt_hash,
                              (int64_t)(r->photos + r->faces), detail);
    return rc;
}

/* The selector a pending request's sealed bytes describe. */
static void make_selector(const lethe_request_info *q, const uint8_t *p, size_t n,
                          lethe_selector *sel, char hex[65])
{
    memset(sel, 0, sizeof(*sel));
    switch (q->by) {
    case LETHE_REQUEST_BY_UPLOADER:
        sel->uploader = (const char *)p;
        break;
    case LETHE_REQUEST_BY_URL:
        sel->url = (const char *)p;
        break;
    case LETHE_REQUEST_BY_PHOTO_ID:
        sel->photo_id = (const char *)p;
        break;
    case LETHE_REQUEST_BY_FILE:
        /* the file's SHA-256 as a photo id (lethe_selector takes both) */
        sodium_bin2hex(hex, 65, p, n < 32 ? n : 32);
        sel->photo_id = hex;
        break;
    default:
        sel->faces = (const float *)p;
        sel->n_faces = n == LETHE_DESCRIPTOR_DIM * sizeof(float) ? 1 : 0;
        break;
    }
}

/* A pending request's row and its selector, opened: *plain (wiped and
 * freed by the caller). */
static int open_pending(lethe_store *s, int64_t number, lethe_request_info *cur,
                        uint8_t **plain, size_t *n)
{
    uint8_t h[32], *sealed = NULL;
    size_t slen = 0;
    int rc = request_read(s, number, cur, h, &sealed, &slen);
    if (rc == LETHE_OK && strcmp(cur->status, "pending"))
        rc = store_fail(s, LETHE_ERR_ARG, "request %lld is %s already (%s by %s)",
                        (long long)number, !strcmp(cur->status, "done") ? "done" : "denied",
                        cur->decided_at, cur->decided_by);
    if (rc == LETHE_OK)
        rc = request_unseal(s, h, sealed, slen, plain, n);
    lethe_free(sealed);
    return rc;
}

int lethe_request_approve(lethe_store *s, int64_t number, unsigned flags, const char *actor,
                          lethe_request_info *info)
{
    lethe_request_info cur;
    lethe_selector sel;
    lethe_forget_result res;
    uint8_t *plain = NULL;
    size_t n = 0;
    char hex[65], *receipt = NULL;
    int rc;
    if ((rc = store_writable(s)) || (rc = store_check_text(s, "the actor", actor, 1)) ||
        (rc = open_pending(s, number, &cur, &plain, &n)))
        goto out;
    make_selector(&cur, plain, n, &sel, hex);
    unsigned fl = (cur.action == LETHE_REQUEST_OPTOUT ? LETHE_FORGET_OPTOUT : 0) |
                  (flags & LETHE_FORGET_CONFIRMED);
    approval a = {number, actor};
    /* a receipt and a failure: committed, a later step failed (finished at
     * the next open); the request is done with the erasure either way */
    rc = forget_with(s, &sel, fl, actor, approve_hook, &a, &res, &receipt, NULL);
    if (rc == LETHE_OK && info)
        rc = request_read(s, number, info, NULL, NULL, NULL);
out:
    if (plain)
        sodium_memzero(plain, n);
    lethe_free(plain);
    lethe_free_string(receipt);
    sodium_memzero(hex, sizeof(hex));
    return rc;
}

int lethe_request_deny(lethe_store *s, int64_t number, const char *actor, const char *reason)
{
    lethe_request_info cur;
    sqlite3_stmt *st;
    char now[32], detail[96];
    int rc;
    if ((rc = store_writable(s)) || (rc = store_check_text(s, "the actor", actor, 1)) ||
        (rc = store_check_text(s, "the reason", reason, 1)))
        return rc;
    if (reason && strlen(reason) >= sizeof(cur.note))
        return store_fail(s, LETHE_ERR_ARG, "the reason is %zu bytes, more than %zu",
                          strlen(reason), sizeof(cur.note) - 1);
    if ((rc = request_read(s, number, &cur, NULL, NULL, NULL)))
        return rc;
    if (strcmp(cur.status, "pending"))
        return store_fail(s, LETHE_ERR_ARG, "request %lld is %s already", (long long)number,
                          cur.status);
    if ((rc = store_lock(s, "request")))
        return rc;
    if ((rc = store_begin(s)) ||
        (rc = store_prepare(s, "UPDATE requests SET status = 'denied', decided_at = ?, "
                               "decided_by = ?, note = ?, sealed = NULL WHERE id = ? AND "
                               "status = 'pending'", &st)))
        goto out;
    store_now(now);
    sqlite3_bind_text(st, 1, now, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, actor ? actor : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, reason ? reason : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, number);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = store_sqlfail(s, "recording the denial");
    else if (sqlite3_changes(s->db) != 1)
        rc = store_fail(s, LETHE_ERR_ARG, "request %lld was decided meanwhile",
                        (long long)number);
    sqlite3_finalize(st);
    snprintf(detail, sizeof(detail), "{\"request\":%lld}", (long long)number);
    if (rc == LETHE_OK)
        rc = store_log_append(s, "request-deny", actor, "", "", 0, detail);
out:
    if (rc == LETHE_OK)
        rc = store_commit(s);
    else if (s->db && !sqlite3_get_autocommit(s->db))
        store_rollback(s);
    store_unlock(s);
    return rc;
}

/* ------------------------------------------------------------------ rules */

int lethe_request_auto_get(lethe_store *s, unsigned *mask)
{
    int64_t v = store_count(s, "SELECT COALESCE((SELECT value FROM meta WHERE key = "
                               "'request_auto'), 0)");
    *mask = 0;
    if (v < 0)
        return LETHE_ERR_IO;
    *mask = (unsigned)v & ((1u << LETHE_REQUEST_KINDS) - 1);
    return LETHE_OK;
}

int lethe_request_auto_set(lethe_store *s, int by, int automatic, const char *actor)
{
    unsigned mask;
    char detail[96];
    int rc;
    if (by < 0 || by >= LETHE_REQUEST_KINDS)
        return store_fail(s, LETHE_ERR_ARG, "unknown request kind %d", by);
    if ((rc = store_writable(s)) || (rc = store_check_text(s, "the actor", actor, 1)) ||
        (rc = store_lock(s, "request auto")))
        return rc;
    if ((rc = store_begin(s)))
        goto out;
    if ((rc = lethe_request_auto_get(s, &mask)) == LETHE_OK) {
        mask = automatic ? mask | (1u << by) : mask & ~(1u << by);
        rc = store_meta_set_int(s, "request_auto", (int64_t)mask);
    }
    snprintf(detail, sizeof(detail), "{\"by\":\"%s\",\"automatic\":%s}",
             lethe_request_by_name(by), automatic ? "true" : "false");
    if (rc == LETHE_OK)
        rc = store_log_append(s, "request-auto", actor, "", "", 0, detail);
    if (rc == LETHE_OK)
        rc = store_commit(s);
    else
        store_rollback(s);
out:
    store_unlock(s);
    return rc;
}
