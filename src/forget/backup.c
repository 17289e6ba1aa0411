/*
 * backup.c: backups that cannot resurrect what was erased.
 *
 * A backup is a folder: catalog.db (a VACUUM INTO snapshot: consistent, and
 * holding no free pages, so nothing erased before it lingers in it), the
 * policy, and backup.json (when, the digest, the log head).
 *
 * Every erasure records keyed hashes of what it erased in the catalog's
 * ledger table ("photo:<sha256>" and "face:<sha256>:<n>", hashed with the
 * store's secret salt: no personal data). Restoring a backup into a live
 * store carries the live store's ledger, receipts, opt-outs and log over to
 * the restored catalog and replays the ledger before the restored store is
 * put in place: whatever was erased after the backup was taken is erased
 * again, and the digest shows it. The log goes on from the live store's
 * (it records what happened, restores included). A backup of another store
 * (another salt) is refused: its ledger could not be matched.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store.h"
#include "util/strbuf.h"
#include "util/util.h"

static int copy_file(lethe_store *s, const char *from, const char *to)
{
    uint8_t *data = NULL;
    size_t len = 0;
    char msg[512];
    int rc = lethe_read_file(from, (size_t)1 << 40, &data, &len, msg, sizeof(msg));
    if (rc)
        return store_fail(s, rc, "%s", msg);
    int fd = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    size_t off = 0;
    while (fd >= 0 && off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w <= 0 && errno != EINTR)
            break;
        if (w > 0)
            off += (size_t)w;
    }
    rc = fd >= 0 && off == len && fsync(fd) == 0 ? LETHE_OK
                                                 : store_fail(s, LETHE_ERR_IO, "%s: %s", to,
                                                              strerror(errno));
    if (fd >= 0)
        close(fd);
    lethe_free(data);
    return rc;
}

static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = lethe_malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

int lethe_backup(lethe_store *s, const char *dest, const char *actor, char **info)
{
    char *db = NULL, *pol = NULL, *src_pol = NULL, *meta = NULL, digest[65], now[32];
    int rc;
    struct stat sb;
    *info = NULL;
    if (stat(dest, &sb) == 0)
        return store_fail(s, LETHE_ERR_ARG, "%s already exists (a backup goes to a new folder)",
                          dest);
    if (mkdir(dest, 0700) < 0)
        return store_fail(s, LETHE_ERR_IO, "%s: %s", dest, strerror(errno));
    db = join(dest, STORE_DB);
    pol = join(dest, STORE_POLICY);
    src_pol = store_file(s, STORE_POLICY);
    if (!db || !pol || !src_pol) {
        rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
        goto out;
    }
    if ((rc = lethe_store_digest(s, digest)))
        goto out;
    char *sql = sqlite3_mprintf("VACUUM INTO %Q", db);
    rc = sql ? store_exec(s, sql) : store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    sqlite3_free(sql);
    if (rc || (rc = copy_file(s, src_pol, pol)))
        goto out;
    store_now(now);
    strbuf b;
    sb_init(&b);
    sb_printf(&b, "{\"lethe_backup\":1,\"created_at\":\"%s\",\"format\":%d,\"digest\":\"%s\","
                  "\"from\":", now, LETHE_STORE_FORMAT, digest);
    sb_json_str(&b, s->dir);
    sb_puts(&b, "}\n");
    meta = sb_finish(&b);
    char *mpath = join(dest, "backup.json");
    FILE *f = mpath && meta ? fopen(mpath, "w") : NULL;
    if (!f || fputs(meta, f) < 0 || fclose(f) != 0)
        rc = store_fail(s, LETHE_ERR_IO, "%s: %s", mpath ? mpath : dest, strerror(errno));
    lethe_free(mpath);
    if (rc)
        goto out;
    if ((rc = store_begin(s)) == LETHE_OK) {
        char detail[160];
        snprintf(detail, sizeof(detail), "{\"digest\":\"%s\"}", digest);
        rc = store_log_append(s, "backup", actor, "", "", 0, detail);
        rc = rc ? (store_rollback(s), rc) : store_commit(s);
    }
    if (rc == LETHE_OK) {
        *info = meta;
        meta = NULL;
    }
out:
    lethe_free(db);
    lethe_free(pol);
    lethe_free(src_pol);
    lethe_free(meta);
    return rc;
}

static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    if (!d)
        return;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char *p = join(dir, e->d_name);
        if (p)
            unlink(p);
        lethe_free(p);
    }
    closedir(d);
    rmdir(dir);
}

int lethe_restore(const char *src, const char *dest, const char *actor, uint64_t *replayed,
                  char *msg, size_t msg_len)
{
    char *tmp = NULL, *old = NULL, *sdb = NULL, *spol = NULL, *tdb = NULL, *tpol = NULL,
         *ldb = NULL;
    lethe_store *t = NULL;
    struct stat sb;
    int rc, live;
    uint64_t erased = 0;
    int64_t *rm = NULL;
    size_t nrm = 0, n = strlen(dest) + 32;
    *replayed = 0;
    sdb = join(src, STORE_DB);
    spol = join(src, STORE_POLICY);
    tmp = lethe_malloc(n);
    old = lethe_malloc(n);
    if (!sdb || !spol || !tmp || !old) {
        rc = lethe_fail(msg, msg_len, LETHE_ERR_NOMEM, "out of memory");
        goto out;
    }
    snprintf(tmp, n, "%s.restoring", dest);
    snprintf(old, n, "%s.replaced", dest);
    if (stat(sdb, &sb) < 0) {
        rc = lethe_fail(msg, msg_len, LETHE_ERR_STORE, "%s: not a lethe backup (no %s)", src,
                        STORE_DB);
        goto out;
    }
    ldb = join(dest, STORE_DB);
    live = ldb && stat(ldb, &sb) == 0;
    remove_tree(tmp);
    if (mkdir(tmp, 0700) < 0) {
        rc = lethe_fail(msg, msg_len, LETHE_ERR_IO, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    tdb = join(tmp, STORE_DB);
    tpol = join(tmp, STORE_POLICY);
    {
        /* a throwaway handle only to reuse copy_file's messages */
        lethe_store dummy;
        memset(&dummy, 0, sizeof(dummy));
        if ((rc = copy_file(&dummy, sdb, tdb)) || (rc = copy_file(&dummy, spol, tpol))) {
            lethe_fail(msg, msg_len, rc, "%s", dummy.err);
            goto out;
        }
    }
    if ((rc = lethe_store_open(tmp, 0, &t)) != LETHE_OK) {
        lethe_fail(msg, msg_len, rc, "the backup: %s", lethe_store_errmsg(t));
        goto out;
    }
    if ((rc = store_lock(t)))
        goto fail_t;
    if (live) {
        char *sql = sqlite3_mprintf("ATTACH DATABASE %Q AS live", ldb);
        rc = sql ? store_exec(t, sql) : store_fail(t, LETHE_ERR_NOMEM, "out of memory");
        sqlite3_free(sql);
        if (rc)
            goto fail_t;
        sqlite3_stmt *st;
        int same = 0;
        if (store_prepare(t, "SELECT (SELECT value FROM main.meta WHERE key = 'salt') = "
                             "(SELECT value FROM live.meta WHERE key = 'salt')", &st) == 0) {
            same = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 1;
            sqlite3_finalize(st);
        }
        if (!same) {
            rc = store_fail(t, LETHE_ERR_ARG, "%s is a backup of another store than %s", src,
                            dest);
            goto fail_t;
        }
    }
    if ((rc = store_begin(t)))
        goto fail_t;
    if (live &&
        (rc = store_exec(t, "INSERT OR IGNORE INTO main.ledger SELECT * FROM live.ledger; "
                            "INSERT OR IGNORE INTO main.receipts SELECT * FROM live.receipts; "
                            "INSERT OR IGNORE INTO main.optouts SELECT * FROM live.optouts; "
                            "INSERT OR IGNORE INTO main.optout_faces SELECT * FROM "
                            "live.optout_faces; "
                            "DELETE FROM main.log; INSERT INTO main.log SELECT * FROM live.log; "
                            "INSERT OR REPLACE INTO main.meta SELECT * FROM live.meta WHERE key "
                            "IN ('log_head', 'sign_sk')")))
        goto fail_txn;
    if ((rc = store_replay_ledger(t, &erased, &rm, &nrm)))
        goto fail_txn;
    uint64_t gen = 0;
    if (nrm && (rc = store_bump_gen(t, &gen)))
        goto fail_txn;
    char detail[128];
    snprintf(detail, sizeof(detail), "{\"replayed\":%llu}", (unsigned long long)erased);
    if ((rc = store_log_append(t, "restore", actor, "", "", (int64_t)erased, detail)) ||
        (rc = store_exec(t, "INSERT OR REPLACE INTO meta(key, value) VALUES "
                            "('scrub_pending', 1)")) ||
        (rc = store_commit(t)))
        goto fail_txn;
    if (live)
        store_exec(t, "DETACH DATABASE live");
    if (nrm)
        store_index_apply(t, gen, rm, nrm, NULL, NULL, 0);
    if ((rc = store_scrub(t, 1)))
        goto fail_t;
    store_unlock(t);
    lethe_store_close(t);
    t = NULL;
    /* Put it in place: the live store aside, the restored one in. */
    remove_tree(old);
    if (live && rename(dest, old) < 0) {
        rc = lethe_fail(msg, msg_len, LETHE_ERR_IO, "%s: %s", dest, strerror(errno));
        goto out;
    }
    if (rename(tmp, dest) < 0) {
        rc = lethe_fail(msg, msg_len, LETHE_ERR_IO, "%s: %s", dest, strerror(errno));
        if (live)
            rename(old, dest);
        goto out;
    }
    remove_tree(old);
    *replayed = erased;
    rc = LETHE_OK;
    goto out;
fail_txn:
    store_rollback(t);
fail_t:
    lethe_fail(msg, msg_len, rc, "%s", lethe_store_errmsg(t));
    store_unlock(t);
    lethe_store_close(t);
    t = NULL;
    remove_tree(tmp);
out:
    lethe_store_close(t);
    lethe_free(rm);
    lethe_free(tmp);
    lethe_free(old);
    lethe_free(sdb);
    lethe_free(spol);
    lethe_free(tdb);
    lethe_free(tpol);
    lethe_free(ldb);
    return rc;
}
