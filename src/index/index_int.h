/*
 * index_int.h: what the files of the descriptor index share and nobody else
 * sees: the file layout, the fixed int8 quantiser, the handle, and the scan
 * kernel contract between the search driver (index_search.c) and the
 * per-ISA kernels (index_ref.c, index_avx2.c, index_avx512.c).
 *
 * File layout (version 1, host byte order = little-endian):
 *
 *   [0, 4096)           header page: struct idx_header, then zeros
 *   [4096 + b * IDX_BLOCK_BYTES, ...)   block b, rows b * 256 ... b * 256 + 255
 *
 * A block holds 256 rows in separate regions, each 64-byte aligned, so a scan
 * streams the codes and touches the fp32 rows only to rerank:
 *
 *   codes_a 256 x 64 B  dims 0..63 of the int8 codes + 128 (u8), interleaved in
 *                       groups of 16 rows: group g's 1 KiB is 16 chunks of
 *                       64 B, chunk j = rows 0..15 of the group x dims
 *                       4j..4j+3 of the half (row-major)
 *   codes_b 256 x 64 B  dims 64..127, the same way
 *   sq     256 x int32  sum of the squared codes of the row
 *   sqa    256 x int32  the same over dims 0..63
 *   err    256 x float  ||x - x^||, the row's quantisation error, rounded up
 *   gmax    16 x float  the largest err of each group of 16 rows
 *   live   256 x uint8  1 for a row, 0 for an empty (zeroed) slot
 *   ids    256 x int64
 *   vecs   256 x 128 x float   the exact descriptors
 *
 * The halves let a scan stop after dims 0..63 for a group none of whose rows
 * can be near: most groups, for most queries, so a query reads about 70 of
 * the 128 code bytes per row. Slots past the row count are all zero. The
 * file holds ceil(count / 256) blocks; the last one may be partly empty.
 *
 * The quantiser is fixed, not learned (a learned one would have to be
 * rebuilt, and would hold a trace of erased data): code = clamp(round(x * 256),
 * -127, 127), so x^ = code / 256 covers [-0.496, 0.496]; components beyond
 * are clamped and their error is in err like any other.
 */
#ifndef LETHE_INDEX_INT_H
#define LETHE_INDEX_INT_H

#include <assert.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "index/index.h"
#include "nn/nn.h"

#define IDX_MAGIC "LETHEIDX"
#define IDX_VERSION 1u
#define IDX_HEADER_BYTES 4096u
#define IDX_BLOCK_ROWS 256u
#define IDX_GROUP_ROWS 16u
#define IDX_BLOCK_GROUPS (IDX_BLOCK_ROWS / IDX_GROUP_ROWS)
#define IDX_HALF (IDX_DIM / 2)
#define IDX_GROUP_HALF_BYTES (IDX_GROUP_ROWS * IDX_HALF)

/* Region offsets inside a block. */
#define IDX_OFF_CODES_A 0u
#define IDX_OFF_CODES_B (IDX_OFF_CODES_A + IDX_BLOCK_ROWS * IDX_HALF)
#define IDX_OFF_SQ (IDX_OFF_CODES_B + IDX_BLOCK_ROWS * IDX_HALF)
#define IDX_OFF_SQA (IDX_OFF_SQ + IDX_BLOCK_ROWS * 4u)
#define IDX_OFF_ERR (IDX_OFF_SQA + IDX_BLOCK_ROWS * 4u)
#define IDX_OFF_GMAX (IDX_OFF_ERR + IDX_BLOCK_ROWS * 4u)
#define IDX_OFF_LIVE (IDX_OFF_GMAX + IDX_BLOCK_GROUPS * 4u)
#define IDX_OFF_IDS (IDX_OFF_LIVE + IDX_BLOCK_ROWS)
#define IDX_OFF_VECS (IDX_OFF_IDS + IDX_BLOCK_ROWS * 8u)
#define IDX_BLOCK_BYTES (IDX_OFF_VECS + IDX_BLOCK_ROWS * IDX_DIM * 4u)

static_assert(IDX_OFF_CODES_B % 64 == 0 && IDX_OFF_SQ % 64 == 0 && IDX_OFF_SQA % 64 == 0 &&
                  IDX_OFF_ERR % 64 == 0 && IDX_OFF_GMAX % 64 == 0 &&
                  IDX_OFF_LIVE % 64 == 0 && IDX_OFF_IDS % 64 == 0 &&
                  IDX_OFF_VECS % 64 == 0 && IDX_BLOCK_BYTES % 64 == 0,
              "index block regions are 64-byte aligned");
static_assert(IDX_BLOCK_BYTES == 169280, "index block layout changed: bump IDX_VERSION");

/* The quantiser: code = clamp(round(x * IDX_QUANT), -127, 127). */
#define IDX_QUANT 256.0
#define IDX_CODE_MAX 127
#define IDX_SCALE_LOG2 (-8)

/*
 * The header page's record. count and generation are those of the last
 * commit; checksum is FNV-1a 64 of the bytes before it.
 */
typedef struct idx_header {
    char magic[8];          /* IDX_MAGIC, no NUL */
    uint32_t version;       /* IDX_VERSION */
    uint32_t dim;           /* IDX_DIM */
    uint32_t block_rows;    /* IDX_BLOCK_ROWS */
    uint32_t header_bytes;  /* IDX_HEADER_BYTES */
    uint64_t block_bytes;   /* IDX_BLOCK_BYTES */
    int32_t scale_log2;     /* IDX_SCALE_LOG2: the fixed quantiser's step */
    uint32_t reserved0;     /* zero */
    uint64_t count;         /* committed rows */
    uint64_t generation;    /* the catalog's generation at the last commit */
    uint64_t reserved[8];   /* zero */
    uint64_t checksum;      /* FNV-1a 64 of the bytes above */
} idx_header;
static_assert(sizeof(idx_header) == 128, "idx_header is 128 bytes on disk");

/* ------------------------------------------------------------------ */
/* The scan kernel contract                                             */
/* ------------------------------------------------------------------ */

/*
 * The integer squared distance between a query's codes cq and a row's codes
 * cx is D2 = sum (cq - cx)^2 = qbias + sq - 2 * raw, where raw = sum (cx + 128)
 * * cq is what the kernels compute from the stored bytes (vpdpbusd takes the
 * unsigned operand first) and qbias = sum cq^2 + 256 * sum cq. D2 < 2^24, so
 * it converts to float exactly. Over dims 0..63 alone the same gives
 * D2a = qbias_a + sqa - 2 * raw_a <= D2.
 *
 * A row r of group g passes for query q when
 *     (float)D2 <= (qthr[q] + gmax[g] * IDX_GM_SCALE)^2     (in float)
 * qthr is the search's threshold in code units; IDX_GM_SCALE is 256 inflated
 * by 2^-15 so the float rounding here can only let more rows pass. As
 * D2a <= D2, a group none of whose rows passes the test on D2a has no row
 * that passes: the kernels may skip its dims 64..127, and must return
 * exactly the passes of the reference (index_ref.c), which does not.
 */
#define IDX_GM_SCALE 256.0078125f

typedef struct idx_pass {
    uint16_t q;   /* query within the call */
    uint16_t row; /* row within the block */
    int32_t d2;   /* D2 */
} idx_pass;

typedef struct idx_scan_args {
    const uint8_t *codes_a; /* the first group's codes, dims 0..63 (64-byte aligned) */
    const uint8_t *codes_b; /* the first group's codes, dims 64..127 */
    const int32_t *sq;      /* sq of the first group's first row */
    const int32_t *sqa;     /* sqa of the same */
    const float *gmax;      /* gmax of the first group */
    size_t ngroups;         /* groups to scan */
    unsigned row0;          /* block row of the first group's first row */
    const int8_t *qcodes;   /* nq x IDX_DIM query codes, rows 64-byte aligned */
    const int32_t *qbias;   /* [nq] */
    const int32_t *qbias_a; /* [nq], over dims 0..63 */
    const float *qthr;      /* [nq] */
    size_t nq;              /* <= the kernel's qtile */
    idx_pass *out;          /* room for ngroups * 16 * nq passes */
    /* What the next call will scan first (the next block's codes_a and sqa
     * for the same groups), for the kernel to prefetch while it works: runs
     * of 16 KiB with gaps between them defeat the hardware prefetcher.
     * NULL: nothing. */
    const uint8_t *pf_codes;
    const int32_t *pf_sq;
} idx_scan_args;

typedef size_t (*idx_scan_fn)(const idx_scan_args *a);

typedef struct idx_kernel {
    idx_scan_fn scan;
    size_t qtile; /* the most queries one call takes */
} idx_kernel;

extern const idx_kernel idx_kernel_ref;
extern const idx_kernel idx_kernel_avx2;
extern const idx_kernel idx_kernel_avx512;

/* ------------------------------------------------------------------ */
/* The handle                                                           */
/* ------------------------------------------------------------------ */

struct nn_pool;

struct idx {
    char *path;              /* as opened, for messages */
    int fd;
    int writable;            /* opened with IDX_WRITE */
    pthread_rwlock_t rw;     /* searches read-lock, changes write-lock */
    pthread_mutex_t mu;      /* guards the fields below it */
    int shared_holders;      /* threads of this handle inside a shared flock */
    const uint8_t *map;      /* PROT_READ mapping of the whole file, or NULL */
    size_t map_len;          /* bytes mapped */
    uint64_t count;          /* rows this handle sees */
    uint64_t committed;      /* header count as last read */
    uint64_t generation;     /* header generation as last read */
    nn_isa isa;              /* kernel set for searches */
    pthread_mutex_t pool_mu; /* guards pool while a search uses it */
    struct nn_pool *pool;    /* search threads, created on first use */
    int pool_threads;        /* the pool's size as requested */
    idx_stats stats;         /* of the last search */
};

/* Block b's first byte in a mapping of the file. */
static inline const uint8_t *idx_block(const uint8_t *map, uint64_t b)
{
    return map + IDX_HEADER_BYTES + b * (uint64_t)IDX_BLOCK_BYTES;
}

/* Blocks needed for n rows. */
static inline uint64_t idx_blocks_for(uint64_t n)
{
    return (n + IDX_BLOCK_ROWS - 1) / IDX_BLOCK_ROWS;
}

/* Quantise one vector: codes (signed), sum of squared codes, and the error
 * norm ||x - codes / 256|| computed in double and rounded up to float. */
void idx_quantise(const float *x, int8_t *codes, int32_t *sq, float *err);

/* The kernel set for an ISA (falls back to ref). */
const idx_kernel *idx_kernel_for(nn_isa isa);

/* Shared-lock bracket for searches and foreach: takes the handle's read lock
 * and the file's shared flock, and refreshes the mapping and count.
 * idx_read_end undoes it. */
int idx_read_begin(idx *ix, char *err, size_t errlen);
void idx_read_end(idx *ix);

#endif
