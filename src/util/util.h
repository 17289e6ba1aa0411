/*
 * util.h: what every part of liblethe shares: the allocation wrapper (which
 * tests can make fail), checked size arithmetic, and error-message helpers.
 */
#ifndef LETHE_UTIL_H
#define LETHE_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "lethe.h"

/* All library allocation goes through these. */
void *lethe_malloc(size_t n);
void *lethe_calloc(size_t count, size_t size);
void *lethe_realloc(void *p, size_t n);
void lethe_free(void *p);
char *lethe_strdup(const char *s);
/* 64-byte aligned allocation for SIMD buffers; free with lethe_free_aligned. */
void *lethe_malloc_aligned(size_t n);
void lethe_free_aligned(void *p);

/*
 * Fault injection for tests: after `countdown` more successful allocations,
 * every allocation fails (countdown < 0 disables). Returns the number of
 * allocations made since the last call. Not thread-safe; tests only.
 */
void lethe_alloc_fail_after(long countdown);
long lethe_alloc_count(void);
/* Blocks allocated through the wrapper and not freed yet: equal before and
 * after a call that should leave nothing behind (tests' leak check). */
long lethe_alloc_live(void);

/* a*b and a+b into *out; return 0 on overflow, 1 on success. */
static inline int lethe_mul_size(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a)
        return 0;
    *out = a * b;
    return 1;
}
static inline int lethe_add_size(size_t a, size_t b, size_t *out)
{
    if (b > SIZE_MAX - a)
        return 0;
    *out = a + b;
    return 1;
}

/* snprintf into msg (if msg != NULL) and return status; for error paths. */
int lethe_fail(char *msg, size_t msg_len, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * Reading files named by users. A FIFO, a device, a socket or a directory
 * is refused before it is opened ("PATH is a FIFO (named pipe), not a
 * regular file"), the open cannot block, and the type is checked again on
 * the open descriptor. LETHE_ERR_NOT_FOUND when path does not exist,
 * LETHE_ERR_IO otherwise; msg names the path.
 */
/* Open for reading; *fd is O_CLOEXEC and blocking; *size (may be NULL) its size. */
int lethe_open_regular(const char *path, int *fd, uint64_t *size, char *msg, size_t msg_len);
/* The same as a stdio stream ("rb"), *out closed with fclose. */
int lethe_fopen_regular(const char *path, FILE **out, uint64_t *size, char *msg,
                        size_t msg_len);
/* "a FIFO (named pipe)", "a directory", ... for a st_mode, for messages. */
const char *lethe_file_kind(unsigned mode);
/* Read a whole regular file (at most max_bytes) into a new buffer (lethe_free);
 * (*out)[*len] is a NUL byte, not counted. */
int lethe_read_file(const char *path, size_t max_bytes, uint8_t **out, size_t *len,
                    char *msg, size_t msg_len);

#define LETHE_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define LETHE_MIN(a, b) ((a) < (b) ? (a) : (b))
#define LETHE_MAX(a, b) ((a) > (b) ? (a) : (b))

#endif
