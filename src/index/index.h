/*
 * index.h: the descriptor index, a derived and rebuildable file beside the
 * catalog's SQLite store that answers exact k-nearest-neighbour queries over
 * the stored 128-D face descriptors (Euclidean L2) fast.
 *
 * The catalog is the source of truth. It commits to SQLite first, then
 * applies the same appends and removals here, then calls idx_commit() with
 * its generation number; when it opens the index and the generations differ
 * (a crash between the two commits), it rebuilds: idx_clear(), append all,
 * idx_commit().
 *
 * Exactness: idx_search() returns exactly the brute-force answer: rows are
 * ranked by (distance, id), where distance is the L2 distance computed in
 * double precision and rounded to float (see idx_exact_distance()), ties in
 * that float broken by the smaller id. Internally an int8 scan with a
 * provable error bound picks candidates that are then reranked exactly.
 *
 * Erasure: a removed row leaves nothing in the file: its slot is overwritten
 * by the last row, the vacated tail is zeroed (and synced) before the file is
 * truncated. idx_clear() zeroes every row before truncating.
 *
 * Concurrency: any number of handles, in any number of processes, may search
 * while one handle (the only IDX_WRITE handle at a time) changes the file;
 * each search holds a shared flock on the file while it scans, each change an
 * exclusive one. Other handles see the rows of the last idx_commit() (plus the
 * effect of removals made since, which take effect at once); the writing
 * handle sees its own changes. One handle may be used from several threads.
 *
 * Errors: every function that can fail returns 0 (LETHE_OK) or a LETHE_ERR_*
 * status from lethe.h, and writes a message naming the file and the problem
 * into err[0..errlen) (err may be NULL):
 *   LETHE_ERR_IO           a system call failed (the message has strerror),
 *                          or another handle already has the index open for
 *                          writing
 *   LETHE_ERR_NOT_FOUND    the file does not exist (open without IDX_CREATE)
 *   LETHE_ERR_FORMAT       bad magic, wrong dim or layout, size mismatch,
 *                          header checksum failure (a torn or corrupt header)
 *   LETHE_ERR_UNSUPPORTED  a format version this code does not know
 *   LETHE_ERR_ARG          a bad argument (NaN or infinite component, NULL, ...)
 *   LETHE_ERR_TOO_LARGE    more rows than IDX_MAX_ROWS
 *   LETHE_ERR_NOMEM        out of memory
 */
#ifndef LETHE_INDEX_H
#define LETHE_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "nn/nn.h"

#define IDX_DIM 128
/* The most rows one index holds (row numbers are 32-bit internally). */
#define IDX_MAX_ROWS ((uint64_t)1 << 31)

typedef struct idx idx;

typedef struct idx_hit {
    float distance; /* L2 distance (not squared), see idx_exact_distance() */
    int64_t id;
} idx_hit;

enum {
    IDX_READ = 0,     /* search only */
    IDX_WRITE = 1,    /* also change; at most one such handle at a time */
    IDX_CREATE = 2,   /* with IDX_WRITE: create the file if it is missing or empty */
    IDX_TRUNCATE = 4  /* with IDX_WRITE: start empty, wiping (zeroing) whatever the
                         file held, even a corrupt or foreign file */
};

/*
 * Open (or create) an index file. A reader sees the rows of the last commit;
 * a writer also wipes rows a crashed writer appended past the committed count.
 * On success *out owns a new handle (idx_close).
 */
int idx_open(const char *path, int flags, idx **out, char *err, size_t errlen);
void idx_close(idx *ix); /* NULL is fine */

/* Rows this handle sees (for a reader: as of its last search or open). */
uint64_t idx_count(const idx *ix);
/* The generation of the last commit (for a reader: as of its last search or open). */
uint64_t idx_generation(const idx *ix);

/* Append n rows. ids may repeat (idx_remove then removes every copy). */
int idx_append(idx *ix, const int64_t *ids, const float *vecs, size_t n, char *err,
               size_t errlen);
/* Remove every row whose id is in ids[0..n); absent ids are ignored.
 * *removed (may be NULL) gets the number of rows removed. */
int idx_remove(idx *ix, const int64_t *ids, size_t n, size_t *removed, char *err,
               size_t errlen);
/* Remove every row. */
int idx_clear(idx *ix, char *err, size_t errlen);
/* Make the changes durable: fsync the rows, then write and fsync the header
 * with the row count and this generation. Other handles see them from then on. */
int idx_commit(idx *ix, uint64_t generation, char *err, size_t errlen);

/*
 * Exact top-k per query by L2 distance to the stored fp32 vectors, ascending,
 * ties broken by the smaller id; only hits with distance <= max_distance
 * (INFINITY: no limit). queries is nq x IDX_DIM floats; hits has nq * k
 * slots, query q's at hits[q * k], and nhits[q] gets the number filled
 * (min(k, rows within max_distance)). threads <= 0: one per core.
 */
int idx_search(idx *ix, const float *queries, size_t nq, size_t k, float max_distance,
               int threads, idx_hit *hits, size_t *nhits, char *err, size_t errlen);

/* File bytes per stored row (the layout's fixed cost; excludes the header). */
size_t idx_bytes_per_row(void);

/* The distance idx_search reports between a and b: the L2 distance summed
 * in double precision, rounded to float. The sum is taken in eight running
 * sums (dim d into sum d % 8) added pairwise, ((s0+s1)+(s2+s3))+((s4+s5)+
 * (s6+s7)), so that it is fast and the same on every build. */
float idx_exact_distance(const float *a, const float *b);

/* Call fn(ctx, id, vec) for every row in file order, under a shared lock;
 * stops early when fn returns non-zero (and returns that value). */
typedef int (*idx_row_fn)(void *ctx, int64_t id, const float *vec);
int idx_foreach(idx *ix, idx_row_fn fn, void *ctx, char *err, size_t errlen);

/* The kernel set this handle's searches use; the default is nn_isa_current()
 * (LETHE_KERNELS), with "avx512" needing AVX512-VNNI as well (else avx2).
 * idx_set_isa returns LETHE_ERR_UNSUPPORTED if the CPU lacks it. */
int idx_set_isa(idx *ix, nn_isa isa);
nn_isa idx_get_isa(const idx *ix);
/* Whether this CPU runs the index's kernel set isa. */
int idx_isa_supported(nn_isa isa);

/* Statistics of the last search on this handle (for benchmarks and tests):
 * rows scanned per query and candidates reranked exactly, summed over queries. */
typedef struct idx_stats {
    uint64_t rows_scanned;
    uint64_t candidates;
} idx_stats;
void idx_last_stats(const idx *ix, idx_stats *st);

#endif
