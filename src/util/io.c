/*
 * io.c: the write-side system calls with a fault-injection hook (see io.h).
 * The hook mirrors lethe_alloc_fail_after (util.c): one countdown, relaxed
 * atomics because writes may come from several threads.
 */
#include "util/io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

static _Atomic int io_hook_on;         /* a test called lethe_io_fail_after */
static _Atomic long io_countdown = -1; /* < 0: never fail */
static _Atomic long io_count;
static _Atomic int io_errno = EIO;
static const char *_Atomic io_failed_op;

int lethe_io_fault(const char *op)
{
    /* Outside tests this load is all the hook costs. */
    if (!atomic_load_explicit(&io_hook_on, memory_order_relaxed))
        return 0;
    atomic_fetch_add_explicit(&io_count, 1, memory_order_relaxed);
    long c = atomic_load_explicit(&io_countdown, memory_order_relaxed);
    while (c > 0) {
        if (atomic_compare_exchange_weak_explicit(&io_countdown, &c, c - 1,
                                                  memory_order_relaxed, memory_order_relaxed))
            return 0;
    }
    if (c != 0)
        return 0;
    const char *none = NULL;
    atomic_compare_exchange_strong_explicit(&io_failed_op, &none, op, memory_order_relaxed,
                                            memory_order_relaxed);
    return atomic_load_explicit(&io_errno, memory_order_relaxed);
}

const char *lethe_io_failed_op(void)
{
    return atomic_load_explicit(&io_failed_op, memory_order_relaxed);
}

void lethe_io_fail_after(long countdown, int err)
{
    atomic_store_explicit(&io_errno, err ? err : EIO, memory_order_relaxed);
    atomic_store_explicit(&io_countdown, countdown, memory_order_relaxed);
    atomic_store_explicit(&io_count, 0, memory_order_relaxed);
    atomic_store_explicit(&io_failed_op, NULL, memory_order_relaxed);
    atomic_store_explicit(&io_hook_on, 1, memory_order_relaxed);
}

long lethe_io_count(void) { return atomic_load_explicit(&io_count, memory_order_relaxed); }

/* Fail the call about to be made if the hook says so: -1 with errno set. */
#define IO_HOOK(op)                    \
    do {                               \
        int e_ = lethe_io_fault(op);   \
        if (e_) {                      \
            errno = e_;                \
            return -1;                 \
        }                              \
    } while (0)

int lethe_io_open(const char *path, int flags, mode_t mode)
{
    if (flags & (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC))
        IO_HOOK("open");
    return open(path, flags, mode);
}

ssize_t lethe_io_write(int fd, const void *buf, size_t n)
{
    IO_HOOK("write");
    return write(fd, buf, n);
}

ssize_t lethe_io_pwrite(int fd, const void *buf, size_t n, off_t off)
{
    IO_HOOK("pwrite");
    return pwrite(fd, buf, n, off);
}

int lethe_io_fsync(int fd)
{
    IO_HOOK("fsync");
    return fsync(fd);
}

int lethe_io_fdatasync(int fd)
{
    IO_HOOK("fdatasync");
    return fdatasync(fd);
}

int lethe_io_ftruncate(int fd, off_t len)
{
    IO_HOOK("ftruncate");
    return ftruncate(fd, len);
}

int lethe_io_rename(const char *from, const char *to)
{
    IO_HOOK("rename");
    return rename(from, to);
}

int lethe_io_unlink(const char *path)
{
    IO_HOOK("unlink");
    return unlink(path);
}

int lethe_io_mkdir(const char *path, mode_t mode)
{
    IO_HOOK("mkdir");
    return mkdir(path, mode);
}

int lethe_io_write_all(int fd, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    while (n > 0) {
        ssize_t w = lethe_io_write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (w == 0) { /* no progress and no error: call it a full disk */
            errno = ENOSPC;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int lethe_io_pwrite_all(int fd, const void *buf, size_t n, uint64_t off)
{
    const uint8_t *p = buf;
    while (n > 0) {
        ssize_t w = lethe_io_pwrite(fd, p, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (w == 0) {
            errno = ENOSPC;
            return -1;
        }
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

int lethe_io_fsync_retry(int fd)
{
    int rc;
    do
        rc = lethe_io_fsync(fd);
    while (rc != 0 && errno == EINTR);
    return rc;
}

int lethe_io_fdatasync_retry(int fd)
{
    int rc;
    do
        rc = lethe_io_fdatasync(fd);
    while (rc != 0 && errno == EINTR);
    return rc;
}
