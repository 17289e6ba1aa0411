/*
 * io.h: the write-side system calls of the library (outside SQLite), behind
 * thin wrappers that tests can make fail, as lethe_malloc does for memory.
 *
 * Every file the library writes itself (the descriptor index, and the
 * store's own files) goes through these, so that a test can make the n-th
 * write-side call fail with ENOSPC or EIO and prove that the store is left
 * as it was or as it should be, never in between. Reads are not wrapped.
 *
 * Each wrapper behaves exactly as the call it wraps (same return value, same
 * errno) unless the hook says this call fails: then it returns -1 with
 * errno set and does nothing. Until a test first calls lethe_io_fail_after
 * the hook costs one relaxed load (a plain move) per call.
 */
#ifndef LETHE_IO_H
#define LETHE_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* open(2); counts as a write-side call only when flags ask for writing or
 * creating (O_WRONLY, O_RDWR, O_CREAT, O_TRUNC). mode is used with O_CREAT. */
int lethe_io_open(const char *path, int flags, mode_t mode);
ssize_t lethe_io_write(int fd, const void *buf, size_t n);
ssize_t lethe_io_pwrite(int fd, const void *buf, size_t n, off_t off);
int lethe_io_fsync(int fd);
int lethe_io_fdatasync(int fd);
int lethe_io_ftruncate(int fd, off_t len);
int lethe_io_rename(const char *from, const char *to);
int lethe_io_unlink(const char *path);
int lethe_io_mkdir(const char *path, mode_t mode);

/* All of buf at fd's position / at off, retrying EINTR and short writes:
 * 0, or -1 with errno set. Each underlying call counts. */
int lethe_io_write_all(int fd, const void *buf, size_t n);
int lethe_io_pwrite_all(int fd, const void *buf, size_t n, uint64_t off);
/* fsync / fdatasync retrying EINTR. */
int lethe_io_fsync_retry(int fd);
int lethe_io_fdatasync_retry(int fd);

/*
 * Fault injection for tests: after `countdown` more successful write-side
 * calls, every write-side call fails with errno = err (a disk that is full
 * stays full); countdown < 0 disables. Resets the count. err 0 means EIO;
 * EINTR is not a fault (the retrying helpers would spin on it).
 */
void lethe_io_fail_after(long countdown, int err);
/* Write-side calls made since the last lethe_io_fail_after (0 before the
 * first: nothing is counted until then). */
long lethe_io_count(void);
/*
 * The hook itself: one write-side call, named op (a static string such as
 * "pwrite"), is about to be made. Returns 0 to go ahead, or the errno it
 * must fail with. The wrappers call it; a write path the library does not
 * own (a test's SQLite VFS shim) may call it too, so that one countdown
 * walks every write-side call in the order they happen.
 */
int lethe_io_fault(const char *op);
/* The op of the first call that failed since lethe_io_fail_after, or NULL. */
const char *lethe_io_failed_op(void);

#endif
