/*
 * util.c: allocation wrapper with fault injection, status strings, error
 * message formatting, and opening and reading files that must be regular
 * files (never a FIFO or a device, which could block forever).
 */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Relaxed atomics: the library allocates from worker threads too, and the
 * counters must not be a data race even though only tests read them. */
static _Atomic long alloc_countdown = -1; /* < 0: never fail */
static _Atomic long alloc_count;
static _Atomic long alloc_live; /* blocks from the wrapper not yet freed */

static void *counted(void *p)
{
    if (p)
        atomic_fetch_add_explicit(&alloc_live, 1, memory_order_relaxed);
    return p;
}

static int alloc_should_fail(void)
{
    atomic_fetch_add_explicit(&alloc_count, 1, memory_order_relaxed);
    long c = atomic_load_explicit(&alloc_countdown, memory_order_relaxed);
    while (c > 0) {
        if (atomic_compare_exchange_weak_explicit(&alloc_countdown, &c, c - 1,
                                                  memory_order_relaxed, memory_order_relaxed))
            return 0;
    }
    return c == 0;
}

void lethe_alloc_fail_after(long countdown)
{
    atomic_store_explicit(&alloc_countdown, countdown, memory_order_relaxed);
    atomic_store_explicit(&alloc_count, 0, memory_order_relaxed);
}

long lethe_alloc_count(void) { return atomic_load_explicit(&alloc_count, memory_order_relaxed); }

long lethe_alloc_live(void) { return atomic_load_explicit(&alloc_live, memory_order_relaxed); }

void *lethe_malloc(size_t n)
{
    if (alloc_should_fail())
        return NULL;
    return counted(malloc(n ? n : 1));
}

void *lethe_calloc(size_t count, size_t size)
{
    if (alloc_should_fail())
        return NULL;
    return counted(calloc(count ? count : 1, size ? size : 1));
}

void *lethe_realloc(void *p, size_t n)
{
    void *q;
    if (alloc_should_fail())
        return NULL;
    q = realloc(p, n ? n : 1);
    return p ? q : counted(q);
}

void lethe_free(void *p)
{
    if (p)
        atomic_fetch_sub_explicit(&alloc_live, 1, memory_order_relaxed);
    free(p);
}

char *lethe_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = lethe_malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

void *lethe_malloc_aligned(size_t n)
{
    void *p = NULL;
    if (alloc_should_fail())
        return NULL;
    n = (n + 63) & ~(size_t)63;
    if (posix_memalign(&p, 64, n ? n : 64) != 0)
        return NULL;
    return counted(p);
}

void lethe_free_aligned(void *p) { lethe_free(p); }

const char *lethe_version(void) { return LETHE_VERSION_STRING; }

const char *lethe_strerror(int status)
{
    switch (status) {
#define LETHE_STATUS_CASE_(name, value, text) \
    case value:                              \
        return text;
        LETHE_STATUS_LIST(LETHE_STATUS_CASE_)
#undef LETHE_STATUS_CASE_
    }
    return "unknown status code";
}

int lethe_fail(char *msg, size_t msg_len, int status, const char *fmt, ...)
{
    if (msg && msg_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, msg_len, fmt, ap);
        va_end(ap);
    }
    return status;
}

const char *lethe_file_kind(unsigned mode)
{
    switch (mode & S_IFMT) {
    case S_IFREG:
        return "a regular file";
    case S_IFDIR:
        return "a directory";
    case S_IFIFO:
        return "a FIFO (named pipe)";
    case S_IFCHR:
        return "a character device";
    case S_IFBLK:
        return "a block device";
    case S_IFSOCK:
        return "a socket";
    case S_IFLNK:
        return "a symbolic link";
    }
    return "a special file";
}

static int not_regular(char *msg, size_t msg_len, const char *path, unsigned mode)
{
    return lethe_fail(msg, msg_len, LETHE_ERR_IO, "%s is %s, not a regular file", path,
                      lethe_file_kind(mode));
}

/*
 * Opening a FIFO for reading blocks until a writer comes, and reading a
 * device may never end: a hostile path would hang the caller (and whatever
 * lock it holds). So the type is checked before the open, the open itself
 * cannot block (O_NONBLOCK), and the type is checked again on the open
 * descriptor in case the path was swapped in between.
 */
int lethe_open_regular(const char *path, int *fd_out, uint64_t *size, char *msg,
                       size_t msg_len)
{
    struct stat st;
    int fd, flags;

    *fd_out = -1;
    if (size)
        *size = 0;
    if (!path)
        return lethe_fail(msg, msg_len, LETHE_ERR_ARG, "no file name");
    if (stat(path, &st) != 0)
        return lethe_fail(msg, msg_len, errno == ENOENT ? LETHE_ERR_NOT_FOUND : LETHE_ERR_IO,
                          "cannot open %s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return not_regular(msg, msg_len, path, (unsigned)st.st_mode);
    do
        fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return lethe_fail(msg, msg_len, errno == ENOENT ? LETHE_ERR_NOT_FOUND : LETHE_ERR_IO,
                          "cannot open %s: %s", path, strerror(errno));
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return lethe_fail(msg, msg_len, LETHE_ERR_IO, "cannot open %s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return not_regular(msg, msg_len, path, (unsigned)st.st_mode);
    }
    /* Regular files ignore O_NONBLOCK; clear it anyway so the descriptor
     * behaves as an ordinary one wherever it goes. */
    flags = fcntl(fd, F_GETFL);
    if (flags >= 0)
        (void)fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    if (size)
        *size = st.st_size > 0 ? (uint64_t)st.st_size : 0;
    *fd_out = fd;
    return LETHE_OK;
}

int lethe_fopen_regular(const char *path, FILE **out, uint64_t *size, char *msg,
                        size_t msg_len)
{
    int fd, rc = lethe_open_regular(path, &fd, size, msg, msg_len);

    *out = NULL;
    if (rc != LETHE_OK)
        return rc;
    *out = fdopen(fd, "rb");
    if (!*out) {
        int e = errno;
        close(fd);
        return lethe_fail(msg, msg_len, e == ENOMEM ? LETHE_ERR_NOMEM : LETHE_ERR_IO,
                          "cannot open %s: %s", path, strerror(e));
    }
    return LETHE_OK;
}

int lethe_read_file(const char *path, size_t max_bytes, uint8_t **out, size_t *len,
                    char *msg, size_t msg_len)
{
    uint64_t size;
    uint8_t *buf;
    size_t got = 0;
    int fd, rc;

    *out = NULL;
    *len = 0;
    rc = lethe_open_regular(path, &fd, &size, msg, msg_len);
    if (rc != LETHE_OK)
        return rc;
    if (size > max_bytes) {
        close(fd);
        return lethe_fail(msg, msg_len, LETHE_ERR_TOO_LARGE,
                          "%s is %llu bytes, more than the limit of %zu", path,
                          (unsigned long long)size, max_bytes);
    }
    buf = lethe_malloc((size_t)size + 1);
    if (!buf) {
        close(fd);
        return lethe_fail(msg, msg_len, LETHE_ERR_NOMEM, "out of memory reading %s", path);
    }
    while (got < (size_t)size) {
        ssize_t r = read(fd, buf + got, (size_t)size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = r < 0 ? errno : 0;
            close(fd);
            lethe_free(buf);
            return lethe_fail(msg, msg_len, LETHE_ERR_IO, "cannot read %s: %s", path,
                              e ? strerror(e) : "the file shrank while being read");
        }
        got += (size_t)r;
    }
    close(fd);
    buf[got] = 0;
    *out = buf;
    *len = got;
    return LETHE_OK;
}
