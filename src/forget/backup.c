/*
 * backup.c: backups that cannot resurrect what was erased.
 *
 * A backup is a folder holding catalog.db (a VACUUM INTO snapshot:
 * consistent, and holding no free pages, so nothing erased before it lingers
 * in it) and backup.json. Never the keyring: every personal field in the
 * catalog is sealed with its photo's key, which lives only in the keyring
 * (and its mirror). A backup therefore holds nothing a thief can read, and
 * once a photo is erased its key is gone, so no backup taken before can
 * bring it back (restore.c drops it).
 *
 * backup.json: {"lethe_backup":2, "created_at", "format", "store_id",
 * "digest", "log_seq", "log_hash", "catalog_blake2b"}; restore checks every
 * field, and the catalog's bytes against catalog_blake2b, so a damaged or
 * swapped catalog is refused.
 */
#include "forget/backup.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store.h"
#include "util/io.h"
#include "util/json.h"
#include "util/strbuf.h"
#include "util/util.h"

/* Write a small file and fsync it. */
static int write_small(lethe_store *s, const char *path, const char *text)
{
    size_t len = strlen(text);
    int fd = lethe_io_open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return store_fail(s, LETHE_ERR_IO, "%s: %s", path, strerror(errno));
    for (size_t off = 0; off < len;) {
        ssize_t w = lethe_io_write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = w < 0 ? errno : EIO;
            close(fd);
            return store_fail(s, LETHE_ERR_IO, "%s: %s", path, strerror(e));
        }
        off += (size_t)w;
    }
    if (lethe_io_fsync(fd) != 0) {
        int e = errno;
        close(fd);
        return store_fail(s, LETHE_ERR_IO, "%s: %s", path, strerror(e));
    }
    close(fd);
    return LETHE_OK;
}

static char *backup_json(lethe_store *s, const char *digest, uint64_t seq, const char *hash,
                         const char *cat_hash)
{
    char now[32], id[2 * KR_STORE_ID + 1];
    strbuf b;
    store_now(now);
    sodium_bin2hex(id, sizeof(id), s->store_id, KR_STORE_ID);
    sb_init(&b);
    sb_printf(&b, "{\"lethe_backup\":2,\"created_at\":\"%s\",\"format\":%d,\"store_id\":\"%s\","
                  "\"digest\":\"%s\",\"log_seq\":%llu,\"log_hash\":\"%s\","
                  "\"catalog_blake2b\":\"%s\"}\n",
              now, LETHE_STORE_FORMAT, id, digest, (unsigned long long)seq, hash, cat_hash);
    return sb_finish(&b);
}

/* The snapshot, in one read transaction so the digest and log head are
 * those of the copied catalog. */
static int snapshot(lethe_store *s, const char *db, char digest[65], uint64_t *seq,
                    char hash[65])
{
    char *sql = sqlite3_mprintf("VACUUM INTO %Q", db);
    if (!sql)
        return store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    int rc = store_exec(s, "BEGIN");
    if (rc == LETHE_OK) {
        uint16_t state[DIGEST_LANES];
        rc = dg_load(s, state);
        if (rc == LETHE_OK) {
            dg_final(state, digest);
            rc = lethe_log_head(s, seq, hash);
        }
        /* a read transaction, ended keeping the message being returned (a
         * COMMIT that fails, out of memory, is rolled back, not left open) */
        store_end_read(s);
    }
    /* VACUUM INTO reads its own snapshot: the lock keeps writers out */
    if (rc == LETHE_OK)
        rc = store_exec(s, sql);
    sqlite3_free(sql);
    return rc;
}

int lethe_backup(lethe_store *s, const char *dest, const char *actor, char **info)
{
    char *db = NULL, *meta = NULL, *mpath = NULL, digest[65], hash[65], cat[65], msg[512];
    uint64_t seq = 0;
    struct stat sb;
    int rc, made = 0;
    *info = NULL;
    if ((rc = store_writable(s)) || (rc = store_check_text(s, "the actor", actor, 1)))
        return rc;
    if (lstat(dest, &sb) == 0)
        return store_fail(s, LETHE_ERR_ARG, "%s already exists (a backup goes to a new folder)",
                          dest);
    if ((rc = store_lock(s, "backup")))
        return rc;
    if (lethe_io_mkdir(dest, 0700) < 0) {
        rc = store_fail(s, LETHE_ERR_IO, "%s: %s", dest, strerror(errno));
        goto out;
    }
    made = 1;
    if (!(db = backup_join(dest, STORE_DB)) || !(mpath = backup_join(dest, "backup.json"))) {
        rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
        goto out;
    }
    if ((rc = snapshot(s, db, digest, &seq, hash)))
        goto out;
    if ((rc = backup_file_hash(db, cat, msg, sizeof(msg)))) {
        rc = store_fail(s, rc, "%s", msg);
        goto out;
    }
    if (!(meta = backup_json(s, digest, seq, hash, cat))) {
        rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
        goto out;
    }
    if ((rc = write_small(s, mpath, meta)))
        goto out;
    if ((rc = store_begin(s)) == LETHE_OK) {
        char detail[200];
        snprintf(detail, sizeof(detail), "{\"digest\":\"%s\",\"catalog_blake2b\":\"%s\"}", digest,
                 cat);
        rc = store_log_append(s, "backup", actor, "", "", 0, detail);
        rc = rc ? (store_rollback(s), rc) : store_commit(s);
    }
    if (rc == LETHE_OK) {
        *info = meta;
        meta = NULL;
    }
out:
    if (rc != LETHE_OK && made)
        restore_remove_tree(dest); /* a failed backup leaves nothing behind */
    store_unlock(s);
    lethe_free(db);
    lethe_free(mpath);
    lethe_free(meta);
    return rc;
}
