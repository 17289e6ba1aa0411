/*
 * io.c: the library's write-side system calls with a fault-injection hook
 * for tests (see io.h).
 */
#include "util/io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

static long fail_countdown = -1;
static int fail_errno = EIO;
static long calls;

void lethe_io_fail_after(long countdown, int err)
{
    fail_countdown = countdown;
    fail_errno = err ? err : EIO;
    calls = 0;
}

long lethe_io_count(void)
{
    return calls;
}

/* 1 when this call must fail (errno set). */
static int inject(void)
{
    calls++;
    if (fail_countdown < 0)
        return 0;
    if (fail_countdown == 0) {
        errno = fail_errno;
        return 1;
    }
    fail_countdown--;
    return 0;
}

int lethe_io_open(const char *path, int flags, mode_t mode)
{
    if ((flags & (O_WRONLY | O_RDWR | O_CREAT)) && inject())
        return -1;
    return open(path, flags, mode);
}

ssize_t lethe_io_write(int fd, const void *buf, size_t len)
{
    return inject() ? -1 : write(fd, buf, len);
}

ssize_t lethe_io_pwrite(int fd, const void *buf, size_t len, off_t at)
{
    return inject() ? -1 : pwrite(fd, buf, len, at);
}

int lethe_io_fsync(int fd)
{
    return inject() ? -1 : fsync(fd);
}

int lethe_io_ftruncate(int fd, off_t len)
{
    return inject() ? -1 : ftruncate(fd, len);
}

int lethe_io_rename(const char *from, const char *to)
{
    return inject() ? -1 : rename(from, to);
}
