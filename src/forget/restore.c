/*
 * restore.c: putting a backup back without bringing back anything erased.
 *
 * The backup's catalog is copied beside the destination with the keyring
 * that is current: the live store's, or (its disk lost) the mirror's. In
 * one change on that copy:
 *   - every photo whose key the keyring no longer holds (erased after the
 *     backup was taken, or re-keyed when part of it was erased) is dropped
 *     and counted: no backup can bring back a forgotten face;
 *   - over a live store, its log, receipts, signing keys, opt-outs,
 *     consent policy, API keys, data-subject requests and the search
 *     counts of the photos restored are carried over (they record what
 *     happened since),
 *     and photos it holds that the backup lacks are refused unless the
 *     caller accepts to drop them;
 *   - with only the mirror, the keyring is the authority for opt-outs (those
 *     made after the backup are listed again, those withdrawn are marked)
 *     and for receipts (each one issued after the backup is logged again so
 *     it still checks), and every API key is revoked (logged): which keys
 *     were revoked after the backup is not known;
 *   - the consent policy in force is applied (templates it refuses go);
 *   - the digest is recomputed and a "restore" entry is logged.
 * The copy is then put in place of the destination, keys nobody uses are
 * destroyed, and the mirror is rewritten from the restored keyring.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/apikey.h"
#include "forget/backup.h"
#include "forget/change.h"
#include "forget/optout.h"
#include "store/store.h"
#include "util/io.h"
#include "util/strbuf.h"
#include "util/util.h"

void lethe_restore_options_init(lethe_restore_options *o)
{
    memset(o, 0, sizeof(*o));
    o->wait_seconds = 30;
}

/* Copy a file (mode 0600), fsync. */
static int copy_file(const char *from, const char *to, char *msg, size_t msg_len)
{
    uint8_t buf[1 << 16];
    int in = open(from, O_RDONLY | O_CLOEXEC | O_NOFOLLOW), out = -1, rc = LETHE_OK;
    if (in < 0)
        return lethe_fail(msg, msg_len, errno == ENOENT ? LETHE_ERR_NOT_FOUND : LETHE_ERR_IO,
                          "%s: %s", from, strerror(errno));
    out = lethe_io_open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (out < 0) {
        rc = lethe_fail(msg, msg_len, LETHE_ERR_IO, "%s: %s", to, strerror(errno));
        goto out;
    }
    for (;;) {
        ssize_t r = read(in, buf, sizeof(buf));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = lethe_fail(msg, msg_len, LETHE_ERR_IO, "%s: %s", from, strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        for (ssize_t off = 0; off < r;) {
            ssize_t w = lethe_io_write(out, buf + off, (size_t)(r - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                rc = lethe_fail(msg, msg_len, LETHE_ERR_IO, "%s: %s", to,
                                strerror(w < 0 ? errno : EIO));
                goto out;
            }
            off += w;
        }
    }
    if (lethe_io_fsync(out) != 0)
        rc = lethe_fail(msg, msg_len, LETHE_ERR_IO, "%s: %s", to, strerror(errno));
out:
    sodium_memzero(buf, sizeof(buf));
    close(in);
    if (out >= 0)
        close(out);
    return rc;
}

/* Overwrite a file's bytes with zeros, then remove it (a keyring copy: its
 * keys must not stay in the file system's free blocks more than needed).
 * No allocation: this runs on failure paths, memory exhausted or not. */
static void shred_at(int dfd, const char *name)
{
    struct stat sb;
    int fd = openat(dfd, name, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd >= 0 && fstat(fd, &sb) == 0) {
        static const uint8_t zeros[4096];
        for (off_t at = 0; at < sb.st_size; at += (off_t)sizeof(zeros))
            if (pwrite(fd, zeros, sizeof(zeros), at) < 0)
                break;
        (void)!fsync(fd);
    }
    if (fd >= 0)
        close(fd);
    unlinkat(dfd, name, 0);
}

/* Remove a flat folder (a store copy): its files, then itself. */
void restore_remove_tree(const char *dir)
{
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    struct dirent *e;
    if (!d) {
        if (dfd >= 0)
            close(dfd);
        rmdir(dir);
        return;
    }
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (!strcmp(e->d_name, STORE_KEYRING))
            shred_at(dfd, e->d_name);
        else
            unlinkat(dfd, e->d_name, 0);
    }
    closedir(d);
    rmdir(dir);
}

#define remove_tree restore_remove_tree

/* The backup's description, checked against its catalog's bytes. */
static int read_backup(const char *src, backup_info *bi, char *msg, size_t msg_len)
{
    char *db = backup_join(src, STORE_DB), *js = backup_join(src, "backup.json"), hex[65];
    uint8_t *text = NULL;
    size_t len = 0;
    int rc;
    if (!db || !js) {
        rc = lethe_fail(msg, msg_len, LETHE_ERR_NOMEM, "out of memory");
        goto out;
    }
    char why[256];
    if ((rc = lethe_read_file(js, 1u << 16, &text, &len, why, sizeof(why)))) {
        /* why, not msg: msg cannot be both the output and an argument */
        rc = lethe_fail(msg, msg_len, LETHE_ERR_STORE, "%s: not a lethe backup (%s)", src, why);
        goto out;
    }
    if ((rc = backup_info_parse((const char *)text, len, bi, msg, msg_len)))
        goto out;
    if ((rc = backup_file_hash(db, hex, msg, msg_len)))
        goto out;
    if (strcmp(hex, bi->catalog_hash) != 0)
        rc = lethe_fail(msg, msg_len, LETHE_ERR_STORE, "%s/%s does not match backup.json's "
                        "catalog_blake2b: the backup is damaged or was altered", src, STORE_DB);
out:
    lethe_free(text);
    lethe_free(db);
    lethe_free(js);
    return rc;
}

/* ------------------------------------------------------------ the work */

typedef struct restore_job {
    const char *src, *dest;
    const lethe_restore_options *opt;
    backup_info bi;
    int live;                 /* dest is a live store */
    lethe_store *lv;          /* its handle (locked) */
    char *tmp;                /* dest.restoring */
    lethe_store *t;           /* the copy being restored */
    lethe_restore_result *res;
    char *msg;
    size_t msg_len;
} restore_job;

/*
 * Replace the copy's table name with the live store's (the rows where, if
 * given). The tables made on first use (requests, search_hits,
 * api_key_usage) may be in
 * the live store and not yet in the backup: the live store's definition is
 * replayed first. Absent from the live store, there is nothing to carry.
 */
static int carry_table(lethe_store *t, const char *name, const char *where)
{
    sqlite3_stmt *st;
    int rc = store_prepare(t, "SELECT sql FROM live.sqlite_master WHERE tbl_name = ?1 AND "
                              "sql IS NOT NULL AND NOT EXISTS (SELECT 1 FROM main.sqlite_master "
                              "WHERE tbl_name = ?1) ORDER BY type = 'index'", &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int step;
    while (rc == LETHE_OK && (step = sqlite3_step(st)) == SQLITE_ROW)
        rc = store_exec(t, (const char *)sqlite3_column_text(st, 0));
    if (rc == LETHE_OK && step != SQLITE_DONE)
        rc = store_sqlfail(t, "reading the live store's schema");
    sqlite3_finalize(st);
    if (rc)
        return rc;
    char *sql = sqlite3_mprintf("SELECT COUNT(*) FROM live.sqlite_master WHERE type = 'table' "
                                "AND name = %Q", name);
    int64_t has = sql ? store_count(t, sql) : -1;
    sqlite3_free(sql);
    if (has < 0)
        return sql ? store_status(t) : store_fail(t, LETHE_ERR_NOMEM, "out of memory");
    if (has == 0)
        return LETHE_OK;
    sql = sqlite3_mprintf("DELETE FROM main.\"%w\"; INSERT INTO main.\"%w\" SELECT * FROM "
                          "live.\"%w\" %s", name, name, name, where ? where : "");
    rc = sql ? store_exec(t, sql) : store_fail(t, LETHE_ERR_NOMEM, "out of memory");
    sqlite3_free(sql);
    return rc;
}

/* Carry the live store's history over to the copy. */
static int carry_live(restore_job *j)
{
    lethe_store *t = j->t;
    char *ldb = backup_join(j->dest, STORE_DB);
    char *sql = ldb ? sqlite3_mprintf("ATTACH DATABASE %Q AS live", ldb) : NULL;
    int rc = sql ? store_exec(t, sql) : store_fail(t, LETHE_ERR_NOMEM, "out of memory");
    sqlite3_free(sql);
    lethe_free(ldb);
    if (rc)
        return rc;
    int64_t newer = store_count(t, "SELECT COUNT(*) FROM live.photos WHERE sha_h NOT IN "
                                   "(SELECT sha_h FROM main.photos)");
    if (newer < 0)
        return store_status(t);
    if (newer > 0 && !j->opt->discard_newer)
        return store_fail(t, LETHE_ERR_CONFIRM,
                          "%s holds %lld photo%s the backup does not (ingested after it): "
                          "restoring would drop them (--discard-newer accepts that)",
                          j->dest, (long long)newer, newer == 1 ? "" : "s");
    j->res->dropped_newer = (uint64_t)newer;
    /* the models' retirements (models.c): a model retired after the backup
     * stays retired (ids never change: the backup's rows are the live
     * store's first ones) */
    int64_t has_models = store_count(t, "SELECT COUNT(*) FROM live.sqlite_master WHERE "
                                        "type = 'table' AND name = 'models'");
    if (has_models < 0)
        return store_status(t);
    if (has_models > 0 &&
        (rc = store_exec(t, "INSERT OR IGNORE INTO main.models SELECT * FROM live.models; "
                            "UPDATE main.models SET retired_at = (SELECT l.retired_at FROM "
                            "live.models l WHERE l.id = main.models.id) WHERE id IN (SELECT id "
                            "FROM live.models WHERE retired_at IS NOT NULL)")))
        return rc;
    rc = store_exec(t, "DELETE FROM main.log; INSERT INTO main.log SELECT * FROM live.log; "
                         "INSERT OR IGNORE INTO main.receipts SELECT * FROM live.receipts; "
                         "DELETE FROM main.signing_keys; INSERT INTO main.signing_keys SELECT * "
                         "FROM live.signing_keys; DELETE FROM main.optouts; INSERT INTO "
                         "main.optouts SELECT * FROM live.optouts; DELETE FROM main.policy; "
                         "INSERT INTO main.policy SELECT * FROM live.policy; "
                         "DELETE FROM main.api_keys; INSERT INTO main.api_keys SELECT * FROM "
                         "live.api_keys; "
                         "DELETE FROM main.meta WHERE key IN ('log_head', 'keyring_mirror', "
                         "'request_auto'); INSERT INTO main.meta SELECT * FROM live.meta WHERE "
                         "key IN ('log_head', 'keyring_mirror', 'request_auto')");
    /* requests filed or decided since, the API keys' daily use (a restore
     * must not give a key its quota back), and the search counts of the
     * photos both hold (same row, same bytes) */
    if (rc == LETHE_OK)
        rc = carry_table(t, "requests", NULL);
    if (rc == LETHE_OK)
        rc = carry_table(t, "api_key_usage", NULL);
    if (rc == LETHE_OK)
        rc = carry_table(t, "search_hits", "WHERE photo IN (SELECT m.id FROM main.photos m "
                                           "JOIN live.photos l ON l.id = m.id AND l.sha_h = "
                                           "m.sha_h)");
    return rc;
}

/* Drop the photos whose key is gone. Their rows cannot be opened, so they
 * are deleted without being read; the digest is recomputed afterwards. */
static int drop_erased(restore_job *j, change *c)
{
    lethe_store *t = j->t;
    sqlite3_stmt *st, *del;
    uint8_t key[KR_KEY];
    int rc = store_prepare(t, "SELECT id, key_slot, key_id, (SELECT COUNT(*) FROM provenance "
                              "WHERE photo = photos.id) + (SELECT COUNT(*) FROM faces WHERE "
                              "photo = photos.id) FROM photos", &st);
    if (rc)
        return rc;
    if ((rc = store_prepare(t, "DELETE FROM photos WHERE id = ?", &del))) {
        sqlite3_finalize(st);
        return rc;
    }
    int step = SQLITE_DONE;
    while (rc == LETHE_OK && (step = sqlite3_step(st)) == SQLITE_ROW) {
        kr_ref ref = {(uint64_t)sqlite3_column_int64(st, 1), (uint64_t)sqlite3_column_int64(st, 2)};
        int k = kr_get_key(t->kr, ref, key);
        if (k == LETHE_OK)
            continue;
        if (k != LETHE_ERR_NOT_FOUND) {
            rc = store_fail(t, LETHE_ERR_STORE, "the keyring's slot %llu is damaged",
                            (unsigned long long)ref.slot);
            break;
        }
        /* the photo row and, by cascade, its rows: an erasure */
        c->deletes_ok += 1 + (uint64_t)sqlite3_column_int64(st, 3);
        c->erasing = 1;
        sqlite3_bind_int64(del, 1, sqlite3_column_int64(st, 0));
        if (sqlite3_step(del) != SQLITE_DONE)
            rc = store_sqlfail(t, "dropping an erased photo");
        sqlite3_reset(del);
        j->res->dropped_erased++;
    }
    /* a failed step is no end of the photos: those not looked at may be erased */
    if (rc == LETHE_OK && step != SQLITE_ROW && step != SQLITE_DONE)
        rc = store_sqlfail(t, "looking for erased photos");
    sodium_memzero(key, sizeof(key));
    sqlite3_finalize(st);
    sqlite3_finalize(del);
    return rc;
}

/* With only the mirror: the keyring's opt-outs and receipts are the truth. */
typedef struct kr_sync {
    restore_job *j;
    int rc;
} kr_sync;

static void selects_of(const optout *o, char *out, size_t n)
{
    static const char *names[OPT_HASHES] = {"photo_id", "url", "uploader", "source",
                                            "jurisdiction", "image"};
    strbuf b;
    sb_init(&b);
    for (int k = 0; k < OPT_HASHES; k++)
        if (o->present & (1u << k))
            sb_printf(&b, "%s%s", b.len ? "," : "", names[k]);
    if (o->present & OPT_COLLECTED_BEFORE)
        sb_printf(&b, "%scollected_before", b.len ? "," : "");
    if (o->nfaces)
        sb_printf(&b, "%sface", b.len ? "," : "");
    char *t = sb_finish(&b);
    snprintf(out, n, "%s", t ? t : "");
    lethe_free(t);
}

/* How many rows st (finalized here) counts into *n; a failed step is a
 * status with the store's message, never a count. */
static int count_rows(lethe_store *t, sqlite3_stmt *st, const char *what, int64_t *n)
{
    int rc = LETHE_OK;
    if (sqlite3_step(st) == SQLITE_ROW)
        *n = sqlite3_column_int64(st, 0);
    else
        rc = store_sqlfail(t, what);
    sqlite3_finalize(st);
    return rc;
}

static int sync_optout(lethe_store *t, kr_ref ref, const uint8_t *payload, size_t len)
{
    optout o;
    sqlite3_stmt *st;
    char hex[65], sel[160];
    int64_t held = 0;
    int rc = store_prepare(t, "SELECT COUNT(*) FROM optouts WHERE kr_id = ?", &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, (int64_t)ref.id);
    if ((rc = count_rows(t, st, "looking up an opt-out of the keyring", &held)) || held)
        return rc;
    if ((rc = optout_decode(payload, len, &o)))
        return rc == LETHE_ERR_NOMEM ? store_fail(t, rc, "out of memory")
                                     : store_fail(t, LETHE_ERR_STORE,
                                                  "an opt-out in the keyring is damaged");
    sodium_bin2hex(hex, sizeof(hex), o.receipt, 32);
    selects_of(&o, sel, sizeof(sel));
    if ((rc = store_prepare(t, "INSERT INTO optouts(kr_slot, kr_id, created_at, receipt, selects) "
                               "VALUES (?, ?, ?, ?, ?)", &st)) == LETHE_OK) {
        sqlite3_bind_int64(st, 1, (int64_t)ref.slot);
        sqlite3_bind_int64(st, 2, (int64_t)ref.id);
        sqlite3_bind_text(st, 3, o.created_at, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 4, hex, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 5, sel, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = store_sqlfail(t, "restoring an opt-out");
        sqlite3_finalize(st);
    }
    optout_clear(&o);
    return rc;
}

static int sync_receipt(restore_job *j, const uint8_t *payload, size_t len)
{
    lethe_store *t = j->t;
    char hex[65];
    sqlite3_stmt *st;
    int64_t held = 0;
    if (len != 32)
        return LETHE_OK;
    sodium_bin2hex(hex, sizeof(hex), payload, 32);
    int rc = store_prepare(t, "SELECT COUNT(*) FROM log WHERE query_hash = ?", &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, hex, -1, SQLITE_TRANSIENT);
    if ((rc = count_rows(t, st, "looking up a receipt of the keyring", &held)) || held)
        return rc;
    j->res->receipts_carried++;
    return store_log_append(t, "receipt-carried", j->opt->actor, "", hex, 1,
                            "{\"from\":\"keyring\"}");
}

static int sync_visit(void *ctx, int kind, kr_ref ref, unsigned flags, const uint8_t *payload,
                      size_t len)
{
    kr_sync *x = ctx;
    if (flags & KR_PENDING)
        return 0; /* never committed */
    if (kind == KR_OPTOUT)
        x->rc = sync_optout(x->j->t, ref, payload, len);
    else if (kind == KR_RECEIPT)
        x->rc = sync_receipt(x->j, payload, len);
    return x->rc != LETHE_OK;
}

static int sync_from_keyring(restore_job *j)
{
    lethe_store *t = j->t;
    kr_sync x = {j, LETHE_OK};
    char msg[512];
    sqlite3_stmt *st;
    int rc = kr_foreach(t->kr, sync_visit, &x, NULL, msg, sizeof(msg));
    if (rc)
        return x.rc ? x.rc : store_fail(t, rc, "%s", msg);
    /* opt-outs the catalog lists that the keyring no longer holds were
     * withdrawn after the backup */
    if ((rc = store_prepare(t, "SELECT id, kr_slot, kr_id FROM optouts WHERE removed_at IS NULL",
                            &st)))
        return rc;
    int step = SQLITE_DONE;
    while (rc == LETHE_OK && (step = sqlite3_step(st)) == SQLITE_ROW) {
        kr_ref ref = {(uint64_t)sqlite3_column_int64(st, 1), (uint64_t)sqlite3_column_int64(st, 2)};
        uint8_t *p = NULL;
        size_t len = 0;
        int r = kr_get_record(t->kr, ref, KR_OPTOUT, &p, &len, NULL);
        lethe_free(p);
        if (r == LETHE_ERR_NOT_FOUND) {
            char sql[128];
            snprintf(sql, sizeof(sql), "UPDATE optouts SET removed_at = strftime('%%Y-%%m-%%dT"
                     "%%H:%%M:%%SZ','now') WHERE id = %lld", (long long)sqlite3_column_int64(st, 0));
            rc = store_exec(t, sql);
        }
    }
    /* a failed step is no end of the opt-outs: one withdrawn since the
     * backup would stand again, with no record in the keyring */
    if (rc == LETHE_OK && step != SQLITE_DONE)
        rc = store_sqlfail(t, "looking for withdrawn opt-outs");
    sqlite3_finalize(st);
    return rc;
}

static int restore_log_entry(restore_job *j)
{
    char detail[512];
    snprintf(detail, sizeof(detail),
             "{\"backup_created_at\":\"%s\",\"backup_digest\":\"%s\",\"photos\":%llu,"
             "\"dropped_erased\":%llu,\"dropped_newer\":%llu,\"templates_dropped\":%llu,"
             "\"receipts_carried\":%llu}",
             j->bi.created_at, j->bi.digest, (unsigned long long)j->res->photos,
             (unsigned long long)j->res->dropped_erased, (unsigned long long)j->res->dropped_newer,
             (unsigned long long)j->res->templates_dropped,
             (unsigned long long)j->res->receipts_carried);
    return store_log_append(j->t, "restore", j->opt->actor, "", "",
                            (int64_t)j->res->dropped_erased, detail);
}

/* The change on the copy. */
static int restore_change(restore_job *j)
{
    lethe_store *t = j->t;
    change c = {0};
    int rc = store_lock(t, "restore");
    if (rc == LETHE_OK && j->live)
        rc = carry_live(j);
    if (rc == LETHE_OK)
        rc = change_begin(t, &c);
    if (rc == LETHE_OK)
        rc = drop_erased(j, &c);
    if (rc == LETHE_OK && !j->live)
        rc = sync_from_keyring(j);
    /* which keys were revoked after the backup is known only to the lost
     * store: none of the backup's keys may be trusted again */
    if (rc == LETHE_OK && !j->live)
        rc = apikey_revoke_all(t, j->opt->actor, "restored from a backup without the live store",
                               NULL);
    if (rc == LETHE_OK)
        rc = store_policy_load(t);
    if (rc == LETHE_OK)
        rc = store_policy_enforce(&c, &j->res->templates_dropped);
    if (rc == LETHE_OK) {
        int64_t n = store_count(t, "SELECT COUNT(*) FROM photos");
        j->res->photos = n > 0 ? (uint64_t)n : 0;
        rc = n < 0 ? store_status(t) : restore_log_entry(j);
    }
    /* photos dropped unread could not be folded out: recompute */
    if (rc == LETHE_OK && (rc = dg_full(t, t->dig)) == LETHE_OK) {
        t->dig_dirty = 1;
        rc = change_commit(&c);
    }
    change_free(&c);
    /* keys no photo of the restored catalog uses (photos erased since, or
     * newer than the backup) are destroyed in the copy's keyring */
    if (rc == LETHE_OK)
        rc = store_recover(t);
    if (rc == LETHE_OK) {
        char *text = policy_format(t->pol);
        rc = text ? store_write_file(t, STORE_POLICY, text, strlen(text))
                  : store_fail(t, LETHE_ERR_NOMEM, "out of memory");
        lethe_free(text);
    }
    if (j->live)
        store_exec(t, "DETACH DATABASE live");
    store_unlock(t);
    return rc;
}

/* ------------------------------------------------------------- the API */

/* Where the keyring comes from: the live store's, or the mirror's. */
static int keyring_source(restore_job *j, char **path)
{
    *path = NULL;
    if (j->live) {
        *path = backup_join(j->dest, STORE_KEYRING);
        return *path ? LETHE_OK : lethe_fail(j->msg, j->msg_len, LETHE_ERR_NOMEM, "out of memory");
    }
    if (!j->opt->keyring_mirror || !*j->opt->keyring_mirror)
        return lethe_fail(j->msg, j->msg_len, LETHE_ERR_ARG,
                          "%s is not a live store, so its keyring must come from the mirror: "
                          "give the mirror folder (--keyring-mirror DIR). Without a keyring no "
                          "photo of the backup can be read",
                          j->dest);
    uint8_t id[KR_STORE_ID];
    size_t n = 0;
    if (sodium_hex2bin(id, sizeof(id), j->bi.store_id, strlen(j->bi.store_id), NULL, &n, NULL) ||
        n != sizeof(id))
        return lethe_fail(j->msg, j->msg_len, LETHE_ERR_FORMAT, "backup.json: bad store_id");
    *path = kr_mirror_path(j->opt->keyring_mirror, id);
    return *path ? LETHE_OK : lethe_fail(j->msg, j->msg_len, LETHE_ERR_NOMEM, "out of memory");
}

/* Open the live store (if any) and hold its lock; check it is the same. */
static int open_live(restore_job *j)
{
    lethe_store_options o;
    char id[2 * KR_STORE_ID + 1];
    lethe_store_options_init(&o);
    o.wait_seconds = j->opt->wait_seconds;
    o.on_wait = j->opt->on_wait;
    o.ctx = j->opt->ctx;
    int rc = lethe_store_open_with(j->dest, &o, &j->lv);
    if (rc == LETHE_OK)
        rc = store_lock(j->lv, "restore");
    if (rc)
        return lethe_fail(j->msg, j->msg_len, rc, "%s", lethe_store_errmsg(j->lv));
    sodium_bin2hex(id, sizeof(id), j->lv->store_id, KR_STORE_ID);
    if (strcmp(id, j->bi.store_id) != 0)
        return lethe_fail(j->msg, j->msg_len, LETHE_ERR_STORE, "%s is a backup of another "
                          "store than %s", j->src, j->dest);
    return LETHE_OK;
}

/* The copy: catalog and keyring in dest.restoring, opened without recovery
 * or mirror (nothing outside the copy changes until it is put in place). */
static int make_copy(restore_job *j, const char *kr_path)
{
    char *sdb = backup_join(j->src, STORE_DB), *tdb = backup_join(j->tmp, STORE_DB),
         *tkr = backup_join(j->tmp, STORE_KEYRING);
    int rc = LETHE_OK;
    if (!sdb || !tdb || !tkr) {
        rc = lethe_fail(j->msg, j->msg_len, LETHE_ERR_NOMEM, "out of memory");
        goto out;
    }
    remove_tree(j->tmp);
    if (mkdir(j->tmp, 0700) < 0) {
        rc = lethe_fail(j->msg, j->msg_len, LETHE_ERR_IO, "%s: %s", j->tmp, strerror(errno));
        goto out;
    }
    if ((rc = copy_file(sdb, tdb, j->msg, j->msg_len)))
        goto out;
    if ((rc = copy_file(kr_path, tkr, j->msg, j->msg_len))) {
        if (rc == LETHE_ERR_NOT_FOUND)
            rc = lethe_fail(j->msg, j->msg_len, LETHE_ERR_STORE, "no keyring at %s: without it "
                            "no photo of the backup can be read", kr_path);
        goto out;
    }
    lethe_store_options o;
    lethe_store_options_init(&o);
    o.flags = STORE_NO_RECOVER;
    char id[2 * KR_STORE_ID + 1];
    if ((rc = lethe_store_open_with(j->tmp, &o, &j->t))) {
        lethe_fail(j->msg, j->msg_len, rc, "%s", lethe_store_errmsg(j->t));
    } else {
        sodium_bin2hex(id, sizeof(id), j->t->store_id, KR_STORE_ID);
        if (strcmp(id, j->bi.store_id) != 0)
            rc = lethe_fail(j->msg, j->msg_len, LETHE_ERR_STORE, "%s: backup.json names another "
                            "store than its catalog", j->src);
    }
out:
    lethe_free(sdb);
    lethe_free(tdb);
    lethe_free(tkr);
    return rc;
}

/* Put the copy in place of dest. */
static int swap_in(restore_job *j)
{
    size_t n = strlen(j->dest) + 16;
    char *old = lethe_malloc(n);
    int rc = LETHE_OK;
    if (!old)
        return lethe_fail(j->msg, j->msg_len, LETHE_ERR_NOMEM, "out of memory");
    snprintf(old, n, "%s.replaced", j->dest);
    remove_tree(old);
    if (j->live && lethe_io_rename(j->dest, old) < 0) {
        rc = lethe_fail(j->msg, j->msg_len, LETHE_ERR_IO, "%s: %s", j->dest, strerror(errno));
    } else if (lethe_io_rename(j->tmp, j->dest) < 0) {
        rc = lethe_fail(j->msg, j->msg_len, LETHE_ERR_IO, "%s: %s", j->dest, strerror(errno));
        if (j->live)
            rename(old, j->dest);
    } else {
        remove_tree(old);
    }
    lethe_free(old);
    return rc;
}

int lethe_restore(const char *src, const char *dest, const lethe_restore_options *opt,
                  lethe_restore_result *res, char *msg, size_t msg_len)
{
    lethe_restore_options defaults;
    lethe_restore_result r;
    restore_job j;
    char *kr_path = NULL, *ldb = NULL;
    struct stat sb;
    int rc;
    lethe_restore_options_init(&defaults);
    memset(&r, 0, sizeof(r));
    memset(&j, 0, sizeof(j));
    j.src = src;
    j.dest = dest;
    j.opt = opt ? opt : &defaults;
    j.res = &r;
    j.msg = msg;
    j.msg_len = msg_len;
    if (sodium_init() < 0)
        return lethe_fail(msg, msg_len, LETHE_ERR_INTERNAL, "libsodium failed to initialise");
    if ((rc = read_backup(src, &j.bi, msg, msg_len)))
        goto out;
    if (!(ldb = backup_join(dest, STORE_DB)) || !(j.tmp = lethe_malloc(strlen(dest) + 16))) {
        rc = lethe_fail(msg, msg_len, LETHE_ERR_NOMEM, "out of memory");
        goto out;
    }
    snprintf(j.tmp, strlen(dest) + 16, "%s.restoring", dest);
    j.live = stat(ldb, &sb) == 0;
    if ((j.live && (rc = open_live(&j))) || (rc = keyring_source(&j, &kr_path)) ||
        (rc = make_copy(&j, kr_path)))
        goto out;
    if ((rc = restore_change(&j))) {
        lethe_fail(msg, msg_len, rc, "%s", lethe_store_errmsg(j.t));
        goto out;
    }
    lethe_store_digest(j.t, r.digest);
    lethe_store_close(j.t);
    j.t = NULL;
    if ((rc = swap_in(&j)))
        goto out;
    /* The restored store, opened as usual: keys nobody uses are destroyed
     * (recovery), the index is rebuilt, the mirror is rewritten. */
    lethe_store_close(j.lv);
    j.lv = NULL;
    lethe_store *fin = NULL;
    if ((rc = lethe_store_open(dest, 0, &fin)))
        lethe_fail(msg, msg_len, rc, "restored, but: %s", lethe_store_errmsg(fin));
    lethe_store_close(fin);
out:
    lethe_store_close(j.t);
    if (rc && j.tmp && !(stat(j.tmp, &sb) != 0))
        remove_tree(j.tmp);
    lethe_store_close(j.lv);
    lethe_free(kr_path);
    lethe_free(ldb);
    lethe_free(j.tmp);
    if (res)
        *res = r;
    return rc;
}
