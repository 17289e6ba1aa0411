/*
 * consent.c: the consent policy of a store. It lives in the catalog, one
 * row per version (the policy table); every version is recorded in the
 * audit log (the rule before and after, the text's hash) and folded into
 * the digest, so `lethe log verify` and `lethe digest --full` catch an edit
 * of the catalog, and the file DIR/policy is only a rendering lethe writes:
 * one that differs from every version the catalog holds was changed by
 * hand, and the store refuses to open until it is put back. Tightening the
 * policy drops the templates it now refuses, as an erasure.
 */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "forget/change.h"
#include "forget/erase.h"
#include "store/store.h"
#include "util/strbuf.h"
#include "util/util.h"

int store_photo_eligible(const policy *p, const char *const *jurisdictions,
                         const char *const *consents, int n)
{
    int allowed = 0;
    for (int i = 0; i < n; i++) {
        int bit = consent_parse(consents[i] && *consents[i] ? consents[i] : "none");
        if (bit == CONSENT_WITHDRAWN)
            return 0;
        if (bit > 0 && policy_allows(p, jurisdictions[i] ? jurisdictions[i] : "", bit, NULL))
            allowed = 1;
    }
    return allowed;
}

static void text_hash(const char *text, char hex[65])
{
    uint8_t h[32];
    crypto_generichash(h, sizeof(h), (const uint8_t *)text, strlen(text), NULL, 0);
    sodium_bin2hex(hex, 65, h, sizeof(h));
}

int consent_policy_record(lethe_store *s, const char *text, const char *actor, const char *kind,
                          const char *detail_members)
{
    char hash[65], now[32];
    sqlite3_stmt *st;
    strbuf d;
    int64_t version = s->policy_version + 1, seq;
    text_hash(text, hash);
    sb_init(&d);
    sb_putc(&d, '{');
    if (detail_members && *detail_members) {
        sb_puts(&d, detail_members);
        sb_putc(&d, ',');
    }
    sb_printf(&d, "\"policy_version\":%lld,\"policy_hash\":\"%s\"}", (long long)version, hash);
    char *detail = sb_finish(&d);
    if (!detail)
        return store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    int rc = store_log_append(s, kind, actor, "", "", 0, detail);
    lethe_free(detail);
    if (rc)
        return rc;
    seq = sqlite3_last_insert_rowid(s->db);
    store_now(now);
    if ((rc = store_prepare(s, "INSERT INTO policy(version, text, hash, set_at, log_seq) "
                               "VALUES (?, ?, ?, ?, ?)", &st)))
        return rc;
    sqlite3_bind_int64(st, 1, version);
    sqlite3_bind_text(st, 2, text, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, hash, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, now, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, seq);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = store_sqlfail(s, "recording the consent policy");
    sqlite3_finalize(st);
    return rc;
}

int store_policy_load(lethe_store *s)
{
    sqlite3_stmt *st;
    char msg[512];
    policy *p = NULL;
    int rc = store_prepare(s, "SELECT version, text, hash FROM policy ORDER BY version DESC "
                              "LIMIT 1", &st);
    if (rc)
        return rc;
    int step = sqlite3_step(st);
    if (step != SQLITE_ROW) {
        /* a failed read is not a missing policy */
        rc = step == SQLITE_DONE ? store_fail(s, LETHE_ERR_STORE, "%s: the catalog holds no "
                                              "consent policy", s->dir)
                                 : store_sqlfail(s, "reading the consent policy");
        sqlite3_finalize(st);
        return rc;
    }
    const char *text = (const char *)sqlite3_column_text(st, 1);
    const char *hash = (const char *)sqlite3_column_text(st, 2);
    char want[65];
    text_hash(text ? text : "", want);
    if ((!text || !hash) && sqlite3_errcode(s->db) == SQLITE_NOMEM)
        rc = store_fail(s, LETHE_ERR_NOMEM, "reading the consent policy: out of memory");
    else if (!text || !hash || strcmp(want, hash) != 0)
        rc = store_fail(s, LETHE_ERR_STORE, "%s: the consent policy in the catalog (version %lld) "
                        "does not match its recorded hash: the catalog was edited",
                        s->dir, (long long)sqlite3_column_int64(st, 0));
    else if ((rc = policy_parse(text, strlen(text), &p, msg, sizeof(msg))) != 0)
        rc = store_fail(s, rc == LETHE_ERR_NOMEM ? rc : LETHE_ERR_STORE,
                        "%s: the catalog's consent policy: %s", s->dir, msg);
    if (rc == LETHE_OK) {
        policy_free(s->pol);
        s->pol = p;
        s->policy_version = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return rc;
}

int store_policy_refresh(lethe_store *s)
{
    int64_t v = store_count(s, "SELECT MAX(version) FROM policy");
    if (v < 0)
        return store_status(s);
    return v == s->policy_version ? LETHE_OK : store_policy_load(s);
}

/* Is text one of the versions the catalog holds? 1 current, 2 older, 0 no;
 * -1 when the catalog could not be read (message set): a failed read must
 * not pass for a hand-edited file. */
static int known_version(lethe_store *s, const char *text, size_t len)
{
    sqlite3_stmt *st;
    int found = 0;
    if (store_prepare(s, "SELECT version FROM policy WHERE text = ? ORDER BY version DESC "
                         "LIMIT 1", &st))
        return -1;
    sqlite3_bind_text(st, 1, text, (int)len, SQLITE_STATIC);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW)
        found = sqlite3_column_int64(st, 0) == s->policy_version ? 1 : 2;
    else if (step != SQLITE_DONE)
        found = -1, store_sqlfail(s, "reading the consent policy's versions");
    sqlite3_finalize(st);
    return found;
}

int store_policy_file_check(lethe_store *s)
{
    char *path = store_file(s, STORE_POLICY), *want = policy_format(s->pol), msg[512];
    uint8_t *text = NULL;
    size_t len = 0;
    int rc = LETHE_OK, ro = (s->flags & LETHE_STORE_READONLY) != 0;
    if (!path || !want) {
        rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
        goto out;
    }
    int r = lethe_read_file(path, 1u << 20, &text, &len, msg, sizeof(msg));
    if (r == LETHE_ERR_NOT_FOUND) {
        if (!ro)
            rc = store_write_file(s, STORE_POLICY, want, strlen(want));
        goto out;
    }
    if (r != LETHE_OK) {
        rc = store_fail(s, r == LETHE_ERR_NOMEM ? r : LETHE_ERR_STORE, "consent policy: %s", msg);
        goto out;
    }
    int known = known_version(s, (const char *)text, len);
    if (known < 0) {
        rc = store_status(s);
    } else if (!known) {
        rc = store_fail(s, LETHE_ERR_POLICY,
                        "%s was changed by hand: it is not the consent policy the catalog holds "
                        "(version %lld) nor any earlier one. The policy is changed only with "
                        "`lethe policy set`, which logs it; delete the file and lethe writes the "
                        "catalog's policy back",
                        path, (long long)s->policy_version);
    } else if (known == 2 && !ro) {
        rc = store_write_file(s, STORE_POLICY, want, strlen(want)); /* a stale rendering */
    }
out:
    lethe_free(text);
    lethe_free(path);
    lethe_free(want);
    return rc;
}

int lethe_policy_get(lethe_store *s, char **text)
{
    int rc = store_policy_refresh(s);
    *text = NULL;
    if (rc)
        return rc;
    *text = policy_format(s->pol);
    return *text ? LETHE_OK : store_fail(s, LETHE_ERR_NOMEM, "out of memory");
}

int lethe_policy_check(lethe_store *s, const char *jurisdiction, const char *consent,
                       const char **rule)
{
    char canon[8], msg[256];
    int bit = consent_parse(consent && *consent ? consent : "none"), rc;
    /* a failure is minus its status: a bad argument is not out of memory */
    if (bit < 0)
        return -store_fail(s, LETHE_ERR_ARG,
                           "unknown consent basis \"%s\" (explicit, public-license, none, "
                           "withdrawn)", consent);
    if (jurisdiction_parse(jurisdiction ? jurisdiction : "", canon, msg, sizeof(msg)) != 0)
        return -store_fail(s, LETHE_ERR_ARG, "%s", msg);
    if ((rc = store_policy_refresh(s)) != LETHE_OK)
        return -rc;
    return policy_allows(s->pol, canon, bit, rule) ? 1 : 0;
}

int store_read_consents(lethe_store *s, sqlite3_stmt *pv, char jb[64][8], char cb[64][16],
                         const char **jur, const char **con, int *k)
{
    int step = SQLITE_DONE, rc = LETHE_OK;
    *k = 0;
    while (*k < 64 && (step = sqlite3_step(pv)) == SQLITE_ROW) {
        const char *j = (const char *)sqlite3_column_text(pv, 0);
        const char *c = (const char *)sqlite3_column_text(pv, 1);
        if ((!j || !c) && sqlite3_errcode(s->db) == SQLITE_NOMEM) {
            step = SQLITE_NOMEM;
            break;
        }
        snprintf(jb[*k], 8, "%s", j ? j : "");
        snprintf(cb[*k], 16, "%s", c ? c : "");
        jur[*k] = jb[*k];
        con[*k] = cb[*k];
        (*k)++;
    }
    if (*k < 64 && step != SQLITE_DONE)
        rc = step == SQLITE_NOMEM
                 ? store_fail(s, LETHE_ERR_NOMEM, "reading provenance: out of memory")
                 : store_sqlfail(s, "reading provenance");
    sqlite3_reset(pv);
    return rc;
}

/* Photos with templates that policy p refuses, into a new array. */
static int refused_photos(lethe_store *s, const policy *p, int64_t **out, size_t *n,
                          uint64_t *templates)
{
    sqlite3_stmt *ph = NULL, *pv = NULL;
    size_t cap = 0;
    int rc, step;
    *out = NULL;
    *n = 0;
    *templates = 0;
    if ((rc = store_prepare(s, "SELECT id, (SELECT COUNT(*) FROM faces WHERE photo = photos.id "
                               "AND has_template) FROM photos WHERE status = 'analysed'", &ph)) ||
        (rc = store_prepare(s, "SELECT jurisdiction, consent FROM provenance WHERE photo = ?",
                            &pv)))
        goto out;
    while ((step = sqlite3_step(ph)) == SQLITE_ROW) {
        const char *jur[64], *con[64];
        char jb[64][8], cb[64][16];
        int k = 0;
        sqlite3_bind_int64(pv, 1, sqlite3_column_int64(ph, 0));
        /* a photo whose records could not all be read is not judged on
         * the rest: that could drop templates the policy allows */
        if ((rc = store_read_consents(s, pv, jb, cb, jur, con, &k)))
            goto out;
        if (store_photo_eligible(p, jur, con, k))
            continue;
        if (*n == cap) {
            size_t nc = cap ? 2 * cap : 256;
            int64_t *t = lethe_realloc(*out, nc * sizeof(*t));
            if (!t) {
                rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
                goto out;
            }
            *out = t;
            cap = nc;
        }
        (*out)[(*n)++] = sqlite3_column_int64(ph, 0);
        *templates += (uint64_t)sqlite3_column_int64(ph, 1);
    }
    if (step != SQLITE_DONE)
        rc = store_sqlfail(s, "reading photos");
out:
    sqlite3_finalize(ph);
    sqlite3_finalize(pv);
    if (rc) {
        lethe_free(*out);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

int store_policy_enforce(change *c, uint64_t *dropped)
{
    int64_t *ids = NULL;
    size_t n = 0;
    uint64_t count = 0;
    erase_counts ec = {0};
    int rc = refused_photos(c->s, c->s->pol, &ids, &n, &count);
    for (size_t i = 0; i < n && rc == LETHE_OK; i++)
        rc = erase_part(c, ids[i], NULL, 0, 1, "refused", &ec);
    lethe_free(ids);
    *dropped = rc == LETHE_OK ? count : 0;
    return rc;
}

/* The new policy: the current one with key set to consents. */
static int policy_with(lethe_store *s, const char *key, const char *consents, policy **out,
                       unsigned *before, unsigned *after, int *had)
{
    char msg[256], *copy = lethe_strdup(consents ? consents : "");
    unsigned mask = 0;
    int rc = LETHE_OK;
    *out = NULL;
    if (!copy)
        return store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    for (char *save = NULL, *tok = strtok_r(copy, ", ", &save); tok;
         tok = strtok_r(NULL, ", ", &save)) {
        int bit = consent_parse(tok);
        if (bit < 0 || bit == CONSENT_WITHDRAWN) {
            rc = store_fail(s, LETHE_ERR_ARG,
                            bit < 0 ? "unknown consent basis \"%s\" (explicit, public-license, none)"
                                    : "\"%s\" can never allow a template", tok);
            break;
        }
        mask |= (unsigned)bit;
    }
    lethe_free(copy);
    if (rc)
        return rc;
    *had = policy_get(s->pol, key ? key : "", before);
    if (!*had)
        *before = 0;
    *after = mask;
    if (policy_copy(s->pol, out) != 0)
        return store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    int st = policy_set(*out, key ? key : "", mask, msg, sizeof(msg));
    if (st != LETHE_OK) {
        policy_free(*out);
        *out = NULL;
        return store_fail(s, st, "%s", msg); /* a bad key, or out of memory */
    }
    return LETHE_OK;
}

/* The log detail's members: the key, the rule before and after, the count. */
static char *policy_detail(const char *key, int had, unsigned before, unsigned after,
                           uint64_t dropped)
{
    char b[128], a[128];
    strbuf d;
    consent_mask_format(before, b, sizeof(b));
    consent_mask_format(after, a, sizeof(a));
    sb_init(&d);
    sb_puts(&d, "\"key\":");
    sb_json_str(&d, key);
    sb_puts(&d, ",\"before\":");
    if (had)
        sb_json_str(&d, b);
    else
        sb_puts(&d, "null");
    sb_puts(&d, ",\"after\":");
    sb_json_str(&d, a);
    sb_printf(&d, ",\"templates_dropped\":%llu", (unsigned long long)dropped);
    return sb_finish(&d);
}

int lethe_policy_set(lethe_store *s, const char *key, const char *consents, const char *actor,
                     int dry_run, uint64_t *dropped)
{
    policy *p = NULL;
    int64_t *ids = NULL;
    size_t n = 0;
    uint64_t count = 0;
    unsigned before = 0, after = 0;
    int had = 0, rc;
    char *text = NULL, *detail = NULL;
    change c = {0};
    if (dropped)
        *dropped = 0;
    if ((rc = store_writable(s)) || (rc = store_check_text(s, "the actor", actor, 1)))
        return rc;
    /* the new rule goes into the policy in force, which another process
     * may have changed since this handle read it: taking the lock (or, for
     * a dry run, a look) reloads it */
    if ((rc = dry_run ? store_policy_refresh(s) : store_lock(s, "policy set")) ||
        (rc = policy_with(s, key, consents, &p, &before, &after, &had)))
        goto out;
    if (!(text = policy_format(p))) {
        rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
        goto out;
    }
    if (dry_run) {
        /* a read, no lock: nothing changes */
        if ((rc = store_exec(s, "BEGIN")) == LETHE_OK) {
            rc = refused_photos(s, p, &ids, &n, &count);
            store_end_read(s);
        }
        goto out;
    }
    if ((rc = store_lock(s, "policy set")) || (rc = change_begin(s, &c)) ||
        (rc = refused_photos(s, p, &ids, &n, &count)))
        goto out;
    erase_counts ec = {0};
    for (size_t i = 0; i < n && rc == LETHE_OK; i++)
        rc = erase_part(&c, ids[i], NULL, 0, 1, "refused", &ec);
    if (rc == LETHE_OK && !(detail = policy_detail(key ? key : "", had, before, after, count)))
        rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    if (rc == LETHE_OK) {
        char *old = policy_format(s->pol);
        if (!old) {
            rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
        } else {
            store_dg_policy(s, old, -1);
            store_dg_policy(s, text, 1);
            lethe_free(old);
            rc = consent_policy_record(s, text, actor, "policy", detail);
        }
    }
    if (rc == LETHE_OK) {
        rc = change_commit(&c);
        /* committed (even if a later step failed): the policy is the new one */
        if (c.committed && store_policy_load(s) == LETHE_OK) {
            int w = store_write_file(s, STORE_POLICY, text, strlen(text));
            if (rc == LETHE_OK)
                rc = w;
        }
    }
out:
    change_free(&c);
    store_unlock(s);
    if (dropped)
        *dropped = count;
    policy_free(p);
    lethe_free(ids);
    lethe_free(text);
    lethe_free(detail);
    return rc;
}
