/*
 * util.c: allocation wrapper with fault injection, status strings, error
 * message formatting and whole-file reading.
 */
#include "util.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Relaxed atomics: the library allocates from worker threads too, and the
 * counters must not be a data race even though only tests read them. */
static _Atomic long alloc_countdown = -1; /* < 0: never fail */
static _Atomic long alloc_count;

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

void *lethe_malloc(size_t n)
{
    if (alloc_should_fail())
        return NULL;
    return malloc(n ? n : 1);
}

void *lethe_calloc(size_t count, size_t size)
{
    if (alloc_should_fail())
        return NULL;
    return calloc(count ? count : 1, size ? size : 1);
}

void *lethe_realloc(void *p, size_t n)
{
    if (alloc_should_fail())
        return NULL;
    return realloc(p, n ? n : 1);
}

void lethe_free(void *p) { free(p); }

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
    return p;
}

void lethe_free_aligned(void *p) { free(p); }

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

int lethe_read_file(const char *path, size_t max_bytes, uint8_t **out, size_t *len,
                    char *msg, size_t msg_len)
{
    FILE *f;
    struct stat st;
    uint8_t *buf;
    size_t got;

    *out = NULL;
    *len = 0;
    f = fopen(path, "rb");
    if (!f)
        return lethe_fail(msg, msg_len, errno == ENOENT ? LETHE_ERR_NOT_FOUND : LETHE_ERR_IO,
                          "cannot open %s: %s", path, strerror(errno));
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return lethe_fail(msg, msg_len, LETHE_ERR_IO, "%s is not a regular file", path);
    }
    if ((uint64_t)st.st_size > max_bytes) {
        fclose(f);
        return lethe_fail(msg, msg_len, LETHE_ERR_TOO_LARGE,
                          "%s is %lld bytes, more than the limit of %zu", path,
                          (long long)st.st_size, max_bytes);
    }
    buf = lethe_malloc((size_t)st.st_size + 1);
    if (!buf) {
        fclose(f);
        return lethe_fail(msg, msg_len, LETHE_ERR_NOMEM, "out of memory reading %s", path);
    }
    got = fread(buf, 1, (size_t)st.st_size, f);
    if (got != (size_t)st.st_size || ferror(f)) {
        fclose(f);
        lethe_free(buf);
        return lethe_fail(msg, msg_len, LETHE_ERR_IO, "cannot read %s", path);
    }
    fclose(f);
    buf[got] = 0;
    *out = buf;
    *len = got;
    return LETHE_OK;
}
