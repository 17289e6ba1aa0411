/*
 * io.h: the write-side system calls of the library, through one door so that
 * tests can make them fail (ENOSPC, EIO) at any point, as lethe_alloc_fail_after
 * does for allocations. SQLite's own writes are failed by a VFS shim in the
 * tests instead.
 */
#ifndef LETHE_IO_H
#define LETHE_IO_H

#include <stddef.h>
#include <sys/types.h>

int lethe_io_open(const char *path, int flags, mode_t mode);
ssize_t lethe_io_write(int fd, const void *buf, size_t len);
ssize_t lethe_io_pwrite(int fd, const void *buf, size_t len, off_t at);
int lethe_io_fsync(int fd);
int lethe_io_ftruncate(int fd, off_t len);
int lethe_io_rename(const char *from, const char *to);

/* After `countdown` more successful write-side calls, every call fails with
 * errno = err (countdown < 0 disables). Not thread-safe; tests only. */
void lethe_io_fail_after(long countdown, int err);
/* Write-side calls made since the last lethe_io_fail_after. */
long lethe_io_count(void);

#endif
