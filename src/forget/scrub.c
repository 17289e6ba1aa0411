/*
 * scrub.c: zero what SQLite's secure_delete leaves behind.
 *
 * With PRAGMA secure_delete, SQLite zeroes deleted cells and freed pages,
 * but not every byte: when cells move on a b-tree page (deletes, balancing),
 * stale copies can stay in the page's unallocated gap (between the cell
 * pointer array and the cell content area) and in its freeblocks. lethe's
 * residue tests found erased index keys there (SQLite 3.40). So after an
 * erasure commits and the WAL is checkpointed, every page the WAL held is
 * re-read from the catalog file and its unused bytes are zeroed in place:
 * only bytes that SQLite itself treats as unused, so a concurrent reader
 * sees the same rows either way. The connection's page cache is then
 * released so it never writes an old image back.
 *
 * If a crash comes between the commit and the scrub, meta.scrub_pending
 * (set in the erasure's transaction) makes the next writable open scrub
 * every page of the file.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store.h"
#include "util/util.h"

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static unsigned be16(const uint8_t *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* The pages the WAL holds frames of (current salts only), sorted, unique. */
static int scrub_wal_pages(lethe_store *s, uint32_t **out, size_t *n)
{
    char *path = store_file(s, STORE_DB "-wal");
    uint8_t hdr[32], fh[24];
    uint32_t *pages = NULL;
    size_t cnt = 0, cap = 0;
    *out = NULL;
    *n = 0;
    if (!path)
        return LETHE_ERR_NOMEM;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW);
    struct stat sb;
    lethe_free(path);
    if (fd < 0)
        return LETHE_OK; /* no WAL: nothing pending */
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return LETHE_ERR_IO; /* not SQLite's WAL: refuse to scrub blind */
    }
    if (pread(fd, hdr, 32, 0) == 32) {
        uint32_t psz = be32(hdr + 8);
        if (psz >= 512 && psz <= 65536) {
            for (off_t at = 32;; at += 24 + (off_t)psz) {
                if (pread(fd, fh, 24, at) != 24)
                    break;
                if (memcmp(fh + 8, hdr + 16, 8) != 0)
                    break; /* a frame of an earlier generation of the WAL */
                if (cnt == cap) {
                    size_t nc = cap ? cap * 2 : 256;
                    uint32_t *t = lethe_realloc(pages, nc * sizeof(*t));
                    if (!t) {
                        close(fd);
                        lethe_free(pages);
                        return LETHE_ERR_NOMEM;
                    }
                    pages = t;
                    cap = nc;
                }
                pages[cnt++] = be32(fh);
            }
        }
    }
    close(fd);
    qsort(pages, cnt, sizeof(*pages), cmp_u32);
    size_t u = 0;
    for (size_t i = 0; i < cnt; i++)
        if (!u || pages[u - 1] != pages[i])
            pages[u++] = pages[i];
    *out = pages;
    *n = u;
    return LETHE_OK;
}

/* Zero the unused bytes of one b-tree page; 1 if it changed. */
static int scrub_page(uint8_t *pg, size_t psz, size_t usable, int first)
{
    size_t h = first ? 100 : 0;
    unsigned type = pg[h];
    if (type != 2 && type != 5 && type != 10 && type != 13)
        return 0; /* not a b-tree page (overflow, freelist, ...): leave it */
    size_t hsz = (type == 2 || type == 5) ? 12 : 8;
    size_t ncell = be16(pg + h + 3);
    size_t start = be16(pg + h + 5);
    if (start == 0)
        start = 65536;
    size_t ptr_end = h + hsz + 2 * ncell;
    if (ptr_end > start || start > usable || usable > psz)
        return 0; /* not what a b-tree page looks like: do not touch */
    int changed = 0;
    for (size_t i = ptr_end; i < start; i++)
        if (pg[i]) {
            memset(pg + ptr_end, 0, start - ptr_end);
            changed = 1;
            break;
        }
    /* freeblocks: 2 bytes next, 2 bytes size, then unused bytes */
    size_t fb = be16(pg + h + 1);
    for (int guard = 0; fb && guard < 10000; guard++) {
        if (fb < start || fb + 4 > usable)
            break;
        size_t next = be16(pg + fb), size = be16(pg + fb + 2);
        if (size < 4 || fb + size > usable)
            break;
        for (size_t i = fb + 4; i < fb + size; i++)
            if (pg[i]) {
                memset(pg + fb + 4, 0, size - 4);
                changed = 1;
                break;
            }
        if (next && next <= fb)
            break;
        fb = next;
    }
    return changed;
}

/* The catalog file as SQLite holds it open. The pages are read and
 * written through SQLite's own descriptor: opening the file a second time
 * and closing it would drop every POSIX lock this process holds on it (a
 * close releases them all, whatever descriptor took them), and with them
 * the shared lock that tells other processes this connection still uses
 * the WAL. One of them could then take itself for the last connection,
 * checkpoint and delete the WAL while this one goes on writing into it:
 * a long-lived handle (a server) would lose its commits to other readers. */
static int catalog_file(lethe_store *s, sqlite3_file **f)
{
    *f = NULL;
    if (sqlite3_file_control(s->db, "main", SQLITE_FCNTL_FILE_POINTER, f) != SQLITE_OK || !*f ||
        !(*f)->pMethods)
        return store_fail(s, LETHE_ERR_IO, "%s/%s: SQLite does not give its file", s->dir,
                          STORE_DB);
    return LETHE_OK;
}

/* Scrub the given pages (or all when pages == NULL) of the catalog file. */
static int scrub_pages(lethe_store *s, const uint32_t *pages, size_t n)
{
    uint8_t hdr[100];
    sqlite3_file *f;
    sqlite3_int64 size = 0;
    int rc = catalog_file(s, &f);
    if (rc)
        return rc;
    if (f->pMethods->xFileSize(f, &size) != SQLITE_OK ||
        f->pMethods->xRead(f, hdr, 100, 0) != SQLITE_OK)
        return store_fail(s, LETHE_ERR_IO, "%s/%s: cannot read: %s", s->dir, STORE_DB,
                          strerror(errno ? errno : EIO));
    size_t psz = be16(hdr + 16) == 1 ? 65536 : be16(hdr + 16);
    size_t usable = psz - hdr[20];
    size_t npages = (size_t)size / psz;
    uint8_t *pg = lethe_malloc(psz);
    if (!pg)
        return store_fail(s, LETHE_ERR_NOMEM, "out of memory");
    int wrote = 0;
    for (size_t i = 0; i < (pages ? n : npages); i++) {
        uint32_t no = pages ? pages[i] : (uint32_t)(i + 1);
        sqlite3_int64 at = (sqlite3_int64)(no - 1) * (sqlite3_int64)psz;
        if (no < 1 || no > npages || at == 0x40000000) /* the lock-byte page */
            continue;
        if (f->pMethods->xRead(f, pg, (int)psz, at) != SQLITE_OK)
            continue;
        if (scrub_page(pg, psz, usable, no == 1)) {
            if (f->pMethods->xWrite(f, pg, (int)psz, at) != SQLITE_OK) {
                rc = store_fail(s, LETHE_ERR_IO, "%s/%s: cannot write: %s", s->dir, STORE_DB,
                                strerror(errno ? errno : EIO));
                break;
            }
            wrote = 1;
        }
    }
    if (rc == LETHE_OK && wrote && f->pMethods->xSync(f, SQLITE_SYNC_FULL) != SQLITE_OK)
        rc = store_fail(s, LETHE_ERR_IO, "%s/%s: cannot sync: %s", s->dir, STORE_DB,
                        strerror(errno ? errno : EIO));
    lethe_free(pg);
    return rc;
}

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

/* After an erasure committed: checkpoint, scrub what the WAL held, forget
 * the cached page images, clear the pending mark. */
int store_scrub(lethe_store *s, int all)
{
    assert(s->locked); /* no other writer may be between the pages */
    uint32_t *pages = NULL;
    size_t n = 0;
    int rc = all ? LETHE_OK : scrub_wal_pages(s, &pages, &n);
    if (rc)
        return store_fail(s, rc, rc == LETHE_ERR_NOMEM ? "out of memory"
                                                        : "the catalog's WAL is not a regular file");
    if ((rc = store_truncate_wal(s)))
        goto out;
    /* No other writer while the pages are rewritten (readers are fine: only
     * bytes SQLite does not use change). */
    if ((rc = store_exec(s, "BEGIN IMMEDIATE")))
        goto out;
    rc = scrub_pages(s, all ? NULL : pages, n);
    if (rc == LETHE_OK)
        rc = store_exec(s, "DELETE FROM meta WHERE key = 'scrub_pending'");
    if (rc == LETHE_OK)
        rc = store_exec(s, "COMMIT");
    else
        store_rollback(s);
    sqlite3_db_release_memory(s->db);
    if (rc == LETHE_OK)
        rc = store_truncate_wal(s);
out:
    lethe_free(pages);
    return rc;
}
