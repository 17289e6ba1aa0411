/*
 * faultvfs.h: SQLite fault injection for tests, header-only (static
 * functions, so a tests/test_*.c that includes it needs no build rule).
 *
 * faultvfs_install() makes two shims the process's defaults, before any
 * store is opened:
 *
 *   - a VFS that wraps the default one and, before each write-side
 *     operation (xWrite, xTruncate, xSync, and an xOpen that creates a file:
 *     catalog, journal, WAL, VACUUM INTO's target), asks
 *     lethe_io_fault() (util/io.h) whether it fails. That is the very hook
 *     the library's own write wrappers ask, so ONE countdown
 *     (lethe_io_fail_after) walks the write-side calls of SQLite and of
 *     lethe in the order they happen. A failing call returns what SQLite's
 *     unix VFS returns for that errno: SQLITE_FULL for a write on a full
 *     disk (ENOSPC), SQLITE_IOERR_WRITE / _TRUNCATE / _FSYNC otherwise,
 *     SQLITE_CANTOPEN for an open.
 *   - a memory allocator for SQLite built on lethe_malloc (when
 *     route_malloc), so that lethe_alloc_fail_after walks SQLite's
 *     allocations and lethe's in one countdown as well.
 *
 * faultvfs_calls() counts the write-side operations the VFS saw (so the
 * test can tell SQLite's share of lethe_io_count() from lethe's).
 *
 * Reads have a countdown of their own (faultvfs_read_fail_after): the
 * k-th xRead after it is armed (0 = the first) fails as a disk that cannot
 * read a sector does (SQLITE_IOERR_READ), so the error paths after a
 * statement's step can be walked, not only those after a write.
 */
#ifndef LETHE_FAULTVFS_H
#define LETHE_FAULTVFS_H

#include <errno.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <string.h>

#include "util/io.h"
#include "util/util.h"

typedef struct faultvfs_file {
    sqlite3_file base;   /* pMethods = &faultvfs_methods */
    sqlite3_file *real;  /* the wrapped VFS's file, right after this struct */
    int kind;            /* FV_MAIN, FV_JOURNAL, FV_WAL, FV_OTHER */
} faultvfs_file;

enum { FV_MAIN, FV_JOURNAL, FV_WAL, FV_OTHER };

static sqlite3_vfs *faultvfs_real;
static sqlite3_vfs faultvfs_vfs;
static _Atomic long faultvfs_ncalls;

static _Atomic long faultvfs_read_k = -1, faultvfs_nreads;

static long faultvfs_calls(void) { return atomic_load(&faultvfs_ncalls); }
/* Fail the k-th read from now (-1: none); counts reads from zero. */
static inline void faultvfs_read_fail_after(long k)
{
    atomic_store(&faultvfs_nreads, 0);
    atomic_store(&faultvfs_read_k, k);
}
static inline long faultvfs_reads(void) { return atomic_load(&faultvfs_nreads); }
static void faultvfs_reset_calls(void) { atomic_store(&faultvfs_ncalls, 0); }

/* Ask the shared hook; the op names say which call and which file. */
static int faultvfs_fault(const faultvfs_file *f, int op)
{
    static const char *names[4][4] = {
        {"sqlite xWrite catalog", "sqlite xWrite journal", "sqlite xWrite wal",
         "sqlite xWrite other"},
        {"sqlite xTruncate catalog", "sqlite xTruncate journal", "sqlite xTruncate wal",
         "sqlite xTruncate other"},
        {"sqlite xSync catalog", "sqlite xSync journal", "sqlite xSync wal",
         "sqlite xSync other"},
        {"sqlite xOpen catalog", "sqlite xOpen journal", "sqlite xOpen wal",
         "sqlite xOpen other"},
    };
    atomic_fetch_add(&faultvfs_ncalls, 1);
    return lethe_io_fault(names[op][f->kind]);
}

static int faultvfs_close(sqlite3_file *p)
{
    faultvfs_file *f = (faultvfs_file *)p;
    return f->real->pMethods->xClose(f->real);
}

static int faultvfs_read(sqlite3_file *p, void *buf, int n, sqlite3_int64 off)
{
    faultvfs_file *f = (faultvfs_file *)p;
    long k = atomic_load(&faultvfs_read_k);
    if (atomic_fetch_add(&faultvfs_nreads, 1) == k && k >= 0)
        return SQLITE_IOERR_READ;
    return f->real->pMethods->xRead(f->real, buf, n, off);
}

static int faultvfs_write(sqlite3_file *p, const void *buf, int n, sqlite3_int64 off)
{
    faultvfs_file *f = (faultvfs_file *)p;
    int e = faultvfs_fault(f, 0);
    if (e)
        return e == ENOSPC ? SQLITE_FULL : SQLITE_IOERR_WRITE;
    return f->real->pMethods->xWrite(f->real, buf, n, off);
}

static int faultvfs_truncate(sqlite3_file *p, sqlite3_int64 size)
{
    faultvfs_file *f = (faultvfs_file *)p;
    if (faultvfs_fault(f, 1))
        return SQLITE_IOERR_TRUNCATE;
    return f->real->pMethods->xTruncate(f->real, size);
}

static int faultvfs_sync(sqlite3_file *p, int flags)
{
    faultvfs_file *f = (faultvfs_file *)p;
    if (faultvfs_fault(f, 2))
        return SQLITE_IOERR_FSYNC;
    return f->real->pMethods->xSync(f->real, flags);
}

static int faultvfs_size(sqlite3_file *p, sqlite3_int64 *size)
{
    faultvfs_file *f = (faultvfs_file *)p;
    return f->real->pMethods->xFileSize(f->real, size);
}

static int faultvfs_lock(sqlite3_file *p, int level)
{
    faultvfs_file *f = (faultvfs_file *)p;
    return f->real->pMethods->xLock(f->real, level);
}

static int faultvfs_unlock(sqlite3_file *p, int level)
{
    faultvfs_file *f = (faultvfs_file *)p;
    return f->real->pMethods->xUnlock(f->real, level);
}

static int faultvfs_check_lock(sqlite3_file *p, int *out)
{
    faultvfs_file *f = (faultvfs_file *)p;
    return f->real->pMethods->xCheckReservedLock(f->real, out);
}

static int faultvfs_control(sqlite3_file *p, int op, void *arg)
{
    faultvfs_file *f = (faultvfs_file *)p;
    return f->real->pMethods->xFileControl(f->real, op, arg);
}

static int faultvfs_sector(sqlite3_file *p)
{
    faultvfs_file *f = (faultvfs_file *)p;
    return f->real->pMethods->xSectorSize(f->real);
}

static int faultvfs_device(sqlite3_file *p)
{
    faultvfs_file *f = (faultvfs_file *)p;
    return f->real->pMethods->xDeviceCharacteristics(f->real);
}

/* The shared-memory index of the WAL: passed through (it is a mapping, not
 * a file write; the WAL's own writes and syncs are counted). */
static int faultvfs_shm_map(sqlite3_file *p, int pg, int pgsz, int extend, void volatile **out)
{
    faultvfs_file *f = (faultvfs_file *)p;
    if (f->real->pMethods->iVersion < 2)
        return SQLITE_IOERR_SHMMAP;
    return f->real->pMethods->xShmMap(f->real, pg, pgsz, extend, out);
}

static int faultvfs_shm_lock(sqlite3_file *p, int off, int n, int flags)
{
    faultvfs_file *f = (faultvfs_file *)p;
    if (f->real->pMethods->iVersion < 2)
        return SQLITE_IOERR_SHMLOCK;
    return f->real->pMethods->xShmLock(f->real, off, n, flags);
}

static void faultvfs_shm_barrier(sqlite3_file *p)
{
    faultvfs_file *f = (faultvfs_file *)p;
    if (f->real->pMethods->iVersion >= 2)
        f->real->pMethods->xShmBarrier(f->real);
}

static int faultvfs_shm_unmap(sqlite3_file *p, int del)
{
    faultvfs_file *f = (faultvfs_file *)p;
    if (f->real->pMethods->iVersion < 2)
        return SQLITE_OK;
    return f->real->pMethods->xShmUnmap(f->real, del);
}

static int faultvfs_fetch(sqlite3_file *p, sqlite3_int64 off, int n, void **out)
{
    faultvfs_file *f = (faultvfs_file *)p;
    if (f->real->pMethods->iVersion < 3) {
        *out = NULL;
        return SQLITE_OK;
    }
    return f->real->pMethods->xFetch(f->real, off, n, out);
}

static int faultvfs_unfetch(sqlite3_file *p, sqlite3_int64 off, void *pg)
{
    faultvfs_file *f = (faultvfs_file *)p;
    if (f->real->pMethods->iVersion < 3)
        return SQLITE_OK;
    return f->real->pMethods->xUnfetch(f->real, off, pg);
}

static const sqlite3_io_methods faultvfs_methods = {
    3,
    faultvfs_close,
    faultvfs_read,
    faultvfs_write,
    faultvfs_truncate,
    faultvfs_sync,
    faultvfs_size,
    faultvfs_lock,
    faultvfs_unlock,
    faultvfs_check_lock,
    faultvfs_control,
    faultvfs_sector,
    faultvfs_device,
    faultvfs_shm_map,
    faultvfs_shm_lock,
    faultvfs_shm_barrier,
    faultvfs_shm_unmap,
    faultvfs_fetch,
    faultvfs_unfetch,
};

static int faultvfs_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *p, int flags,
                         int *out_flags)
{
    faultvfs_file *f = (faultvfs_file *)p;
    (void)vfs;
    f->real = (sqlite3_file *)(f + 1);
    f->kind = (flags & SQLITE_OPEN_MAIN_DB) ? FV_MAIN
            : (flags & SQLITE_OPEN_MAIN_JOURNAL) ? FV_JOURNAL
            : (flags & SQLITE_OPEN_WAL) ? FV_WAL
                                        : FV_OTHER;
    p->pMethods = NULL;
    /* Only an open that creates the file can find the disk full. */
    if ((flags & SQLITE_OPEN_CREATE) && (flags & SQLITE_OPEN_READWRITE)) {
        int there = 0;
        if (name && faultvfs_real->xAccess(faultvfs_real, name, SQLITE_ACCESS_EXISTS, &there) !=
                        SQLITE_OK)
            there = 0;
        if (!there && faultvfs_fault(f, 3))
            return SQLITE_CANTOPEN;
    }
    int rc = faultvfs_real->xOpen(faultvfs_real, name, f->real, flags, out_flags);
    /* SQLite calls xClose when pMethods is set, even after a failed open. */
    if (f->real->pMethods)
        p->pMethods = &faultvfs_methods;
    return rc;
}

static int faultvfs_delete(sqlite3_vfs *vfs, const char *name, int sync_dir)
{
    (void)vfs;
    return faultvfs_real->xDelete(faultvfs_real, name, sync_dir);
}

static int faultvfs_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
    (void)vfs;
    return faultvfs_real->xAccess(faultvfs_real, name, flags, out);
}

static int faultvfs_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
    (void)vfs;
    return faultvfs_real->xFullPathname(faultvfs_real, name, n, out);
}

static void *faultvfs_dlopen(sqlite3_vfs *vfs, const char *name)
{
    (void)vfs;
    return faultvfs_real->xDlOpen(faultvfs_real, name);
}

static void faultvfs_dlerror(sqlite3_vfs *vfs, int n, char *msg)
{
    (void)vfs;
    faultvfs_real->xDlError(faultvfs_real, n, msg);
}

static void (*faultvfs_dlsym(sqlite3_vfs *vfs, void *h, const char *sym))(void)
{
    (void)vfs;
    return faultvfs_real->xDlSym(faultvfs_real, h, sym);
}

static void faultvfs_dlclose(sqlite3_vfs *vfs, void *h)
{
    (void)vfs;
    faultvfs_real->xDlClose(faultvfs_real, h);
}

static int faultvfs_randomness(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    return faultvfs_real->xRandomness(faultvfs_real, n, out);
}

static int faultvfs_sleep(sqlite3_vfs *vfs, int us)
{
    (void)vfs;
    return faultvfs_real->xSleep(faultvfs_real, us);
}

static int faultvfs_time(sqlite3_vfs *vfs, double *out)
{
    (void)vfs;
    return faultvfs_real->xCurrentTime(faultvfs_real, out);
}

static int faultvfs_last_error(sqlite3_vfs *vfs, int n, char *msg)
{
    (void)vfs;
    return faultvfs_real->xGetLastError(faultvfs_real, n, msg);
}

static int faultvfs_time64(sqlite3_vfs *vfs, sqlite3_int64 *out)
{
    (void)vfs;
    return faultvfs_real->xCurrentTimeInt64(faultvfs_real, out);
}

/* SQLite's allocator on top of lethe_malloc: an 8-byte size header in
 * front of each block (SQLite asks for the size back through xSize). */
static void *faultvfs_malloc(int n)
{
    sqlite3_int64 *p = lethe_malloc((size_t)n + 8);
    if (!p)
        return NULL;
    p[0] = n;
    return p + 1;
}

static void faultvfs_free(void *p)
{
    if (p)
        lethe_free((sqlite3_int64 *)p - 1);
}

static void *faultvfs_realloc(void *p, int n)
{
    sqlite3_int64 *q = lethe_realloc((sqlite3_int64 *)p - 1, (size_t)n + 8);
    if (!q)
        return NULL;
    q[0] = n;
    return q + 1;
}

static int faultvfs_msize(void *p)
{
    return p ? (int)((sqlite3_int64 *)p)[-1] : 0;
}

static int faultvfs_roundup(int n)
{
    return (n + 7) & ~7;
}

static int faultvfs_mem_init(void *ctx)
{
    (void)ctx;
    return SQLITE_OK;
}

static void faultvfs_mem_shutdown(void *ctx)
{
    (void)ctx;
}

/*
 * Make the fault VFS SQLite's default (and, with route_malloc, SQLite's
 * allocator lethe_malloc). Call once, before anything opens a database:
 * the allocator can only be set before SQLite initialises. Returns
 * SQLITE_OK or SQLite's error.
 */
static int faultvfs_install(int route_malloc)
{
    static const sqlite3_mem_methods mem = {
        faultvfs_malloc, faultvfs_free,  faultvfs_realloc,      faultvfs_msize,
        faultvfs_roundup, faultvfs_mem_init, faultvfs_mem_shutdown, NULL,
    };
    int rc;
    if (faultvfs_real)
        return SQLITE_OK;
    if (route_malloc && (rc = sqlite3_config(SQLITE_CONFIG_MALLOC, &mem)) != SQLITE_OK)
        return rc;
    if ((rc = sqlite3_initialize()) != SQLITE_OK)
        return rc;
    faultvfs_real = sqlite3_vfs_find(NULL);
    if (!faultvfs_real)
        return SQLITE_ERROR;
    memset(&faultvfs_vfs, 0, sizeof(faultvfs_vfs));
    faultvfs_vfs.iVersion = 2;
    faultvfs_vfs.szOsFile = (int)sizeof(faultvfs_file) + faultvfs_real->szOsFile;
    faultvfs_vfs.mxPathname = faultvfs_real->mxPathname;
    faultvfs_vfs.zName = "lethe-fault";
    faultvfs_vfs.xOpen = faultvfs_open;
    faultvfs_vfs.xDelete = faultvfs_delete;
    faultvfs_vfs.xAccess = faultvfs_access;
    faultvfs_vfs.xFullPathname = faultvfs_full_pathname;
    faultvfs_vfs.xDlOpen = faultvfs_dlopen;
    faultvfs_vfs.xDlError = faultvfs_dlerror;
    faultvfs_vfs.xDlSym = faultvfs_dlsym;
    faultvfs_vfs.xDlClose = faultvfs_dlclose;
    faultvfs_vfs.xRandomness = faultvfs_randomness;
    faultvfs_vfs.xSleep = faultvfs_sleep;
    faultvfs_vfs.xCurrentTime = faultvfs_time;
    faultvfs_vfs.xGetLastError = faultvfs_last_error;
    faultvfs_vfs.xCurrentTimeInt64 = faultvfs_time64;
    return sqlite3_vfs_register(&faultvfs_vfs, 1);
}

#endif
