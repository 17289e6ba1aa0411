/*
 * index.c: the descriptor index file: open and validate, the header and its
 * checksum, locking (a flock reader/writer lock per operation, an OFD lock
 * for the one writing handle), appends, removals that leave no residue, clear,
 * commit, and iteration. The layout is described in index_int.h; the search
 * is in index_search.c.
 *
 * Writes go through pwrite (so a full disk is an error, not a SIGBUS), by way
 * of the wrappers of util/io.h (so tests can make them fail); reads
 * go through a read-only shared mapping, which sees those writes at once.
 * Rows are changed a block at a time in a staging buffer that is written
 * back region by region, only over the rows that changed.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "index/index_int.h"
#include "util/io.h"
#include "util/util.h"

/* Bytes of zeros written at a time when wiping. */
#define IDX_ZERO_CHUNK (1u << 20)

/* ------------------------------------------------------------------ */
/* Small helpers                                                        */
/* ------------------------------------------------------------------ */

static uint64_t fnv1a64(const void *data, size_t n)
{
    const uint8_t *p = data;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static int io_fail(const idx *ix, char *err, size_t errlen, const char *what)
{
    int e = errno;
    return lethe_fail(err, errlen, LETHE_ERR_IO, "%s: %s: %s", ix->path, what, strerror(e));
}

static int flock_retry(int fd, int op)
{
    int rc;
    do
        rc = flock(fd, op);
    while (rc != 0 && errno == EINTR);
    return rc;
}

static int pread_all(int fd, void *buf, size_t n, uint64_t off, size_t *got)
{
    uint8_t *p = buf;
    size_t total = 0;
    while (total < n) {
        ssize_t r = pread(fd, p + total, n - total, (off_t)(off + total));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (r == 0)
            break;
        total += (size_t)r;
    }
    *got = total;
    return 0;
}

/* Write zeros over [off, off + n). */
static int write_zeros(idx *ix, uint64_t off, uint64_t n, char *err, size_t errlen)
{
    uint8_t *zeros;
    if (n == 0)
        return LETHE_OK;
    zeros = lethe_calloc(1, IDX_ZERO_CHUNK);
    if (!zeros)
        return lethe_fail(err, errlen, LETHE_ERR_NOMEM, "%s: out of memory", ix->path);
    while (n > 0) {
        size_t len = n < IDX_ZERO_CHUNK ? (size_t)n : IDX_ZERO_CHUNK;
        if (lethe_io_pwrite_all(ix->fd, zeros, len, off) != 0) {
            lethe_free(zeros);
            return io_fail(ix, err, errlen, "writing zeros");
        }
        off += len;
        n -= len;
    }
    lethe_free(zeros);
    return LETHE_OK;
}

void idx_quantise(const float *x, int8_t *codes, int32_t *sq, float *err)
{
    double e2 = 0.0;
    int32_t s = 0;
    for (int d = 0; d < IDX_DIM; d++) {
        double v = (double)x[d] * IDX_QUANT;
        int c;
        if (v >= IDX_CODE_MAX)
            c = IDX_CODE_MAX;
        else if (v <= -IDX_CODE_MAX)
            c = -IDX_CODE_MAX;
        else
            c = (int)lrint(v);
        codes[d] = (int8_t)c;
        s += c * c;
        double diff = (double)x[d] - c / IDX_QUANT;
        e2 += diff * diff;
    }
    double e = sqrt(e2);
    float f = (float)e;
    if ((double)f < e)
        f = nextafterf(f, INFINITY);
    *sq = s;
    *err = f;
}

/*
 * Eight running sums (dim d goes to sum d % 8), added pairwise at the end:
 * the order is fixed, so every build gives the same bits, and the chains are
 * independent, so it costs an eighth of the latency of one running sum.
 */
float idx_exact_distance(const float *a, const float *b)
{
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0, t;
    for (int d = 0; d < IDX_DIM; d += 8) {
        t = (double)a[d] - (double)b[d];
        s0 += t * t;
        t = (double)a[d + 1] - (double)b[d + 1];
        s1 += t * t;
        t = (double)a[d + 2] - (double)b[d + 2];
        s2 += t * t;
        t = (double)a[d + 3] - (double)b[d + 3];
        s3 += t * t;
        t = (double)a[d + 4] - (double)b[d + 4];
        s4 += t * t;
        t = (double)a[d + 5] - (double)b[d + 5];
        s5 += t * t;
        t = (double)a[d + 6] - (double)b[d + 6];
        s6 += t * t;
        t = (double)a[d + 7] - (double)b[d + 7];
        s7 += t * t;
    }
    return (float)sqrt(((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7)));
}

size_t idx_bytes_per_row(void) { return (IDX_BLOCK_BYTES + IDX_BLOCK_ROWS - 1) / IDX_BLOCK_ROWS; }

/* ------------------------------------------------------------------ */
/* The header                                                           */
/* ------------------------------------------------------------------ */

static void header_make(idx_header *h, uint64_t count, uint64_t generation)
{
    memset(h, 0, sizeof *h);
    memcpy(h->magic, IDX_MAGIC, 8);
    h->version = IDX_VERSION;
    h->dim = IDX_DIM;
    h->block_rows = IDX_BLOCK_ROWS;
    h->header_bytes = IDX_HEADER_BYTES;
    h->block_bytes = IDX_BLOCK_BYTES;
    h->scale_log2 = IDX_SCALE_LOG2;
    h->count = count;
    h->generation = generation;
    h->checksum = fnv1a64(h, offsetof(idx_header, checksum));
}

/* Validate a header read from the file (got bytes of it). */
static int header_check(const idx *ix, const idx_header *h, size_t got, char *err,
                        size_t errlen)
{
    if (got < sizeof *h)
        return lethe_fail(err, errlen, LETHE_ERR_FORMAT,
                          "%s: truncated header (%zu bytes, need %zu)", ix->path, got,
                          sizeof *h);
    if (memcmp(h->magic, IDX_MAGIC, 8) != 0)
        return lethe_fail(err, errlen, LETHE_ERR_FORMAT,
                          "%s: bad magic (not a lethe descriptor index)", ix->path);
    if (h->version != IDX_VERSION)
        return lethe_fail(err, errlen, LETHE_ERR_UNSUPPORTED,
                          "%s: unsupported version %u (this code reads version %u)", ix->path,
                          h->version, IDX_VERSION);
    if (h->checksum != fnv1a64(h, offsetof(idx_header, checksum)))
        return lethe_fail(err, errlen, LETHE_ERR_FORMAT,
                          "%s: header checksum failure (torn or corrupt header)", ix->path);
    if (h->dim != IDX_DIM)
        return lethe_fail(err, errlen, LETHE_ERR_FORMAT, "%s: wrong dim %u (expected %u)",
                          ix->path, h->dim, IDX_DIM);
    if (h->block_rows != IDX_BLOCK_ROWS || h->header_bytes != IDX_HEADER_BYTES ||
        h->block_bytes != IDX_BLOCK_BYTES || h->scale_log2 != IDX_SCALE_LOG2)
        return lethe_fail(err, errlen, LETHE_ERR_FORMAT,
                          "%s: layout mismatch (block of %u rows, %llu bytes, header %u, "
                          "scale 2^%d)",
                          ix->path, h->block_rows, (unsigned long long)h->block_bytes,
                          h->header_bytes, h->scale_log2);
    if (h->count > IDX_MAX_ROWS)
        return lethe_fail(err, errlen, LETHE_ERR_FORMAT, "%s: row count %llu is too large",
                          ix->path, (unsigned long long)h->count);
    return LETHE_OK;
}

static int header_read(idx *ix, idx_header *h, char *err, size_t errlen)
{
    size_t got;
    if (pread_all(ix->fd, h, sizeof *h, 0, &got) != 0)
        return io_fail(ix, err, errlen, "reading the header");
    return header_check(ix, h, got, err, errlen);
}

static int header_write(idx *ix, uint64_t count, uint64_t generation, char *err, size_t errlen)
{
    idx_header h;
    header_make(&h, count, generation);
    if (lethe_io_pwrite_all(ix->fd, &h, sizeof h, 0) != 0)
        return io_fail(ix, err, errlen, "writing the header");
    return LETHE_OK;
}

/* ------------------------------------------------------------------ */
/* Mapping and locking                                                  */
/* ------------------------------------------------------------------ */

/* Map the file as it is now (call with the file locked, no scan running). */
static int map_refresh(idx *ix, uint64_t *size_out, char *err, size_t errlen)
{
    struct stat st;
    if (fstat(ix->fd, &st) != 0)
        return io_fail(ix, err, errlen, "fstat");
    uint64_t size = (uint64_t)st.st_size;
    *size_out = size;
    if (size == ix->map_len && ix->map)
        return LETHE_OK;
    if (ix->map) {
        munmap((void *)ix->map, ix->map_len);
        ix->map = NULL;
        ix->map_len = 0;
    }
    if (size == 0)
        return LETHE_OK;
    if (size > SIZE_MAX)
        return lethe_fail(err, errlen, LETHE_ERR_TOO_LARGE, "%s: too large to map", ix->path);
    void *m = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, ix->fd, 0);
    if (m == MAP_FAILED)
        return io_fail(ix, err, errlen, "mmap");
    ix->map = m;
    ix->map_len = (size_t)size;
    return LETHE_OK;
}

/* Whole blocks present in a file of `size` bytes. */
static uint64_t blocks_in(uint64_t size)
{
    return size <= IDX_HEADER_BYTES ? 0 : (size - IDX_HEADER_BYTES) / IDX_BLOCK_BYTES;
}

/* Whether some other handle holds the writer's OFD lock. */
static int writer_present(const idx *ix)
{
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
    if (fcntl(ix->fd, F_OFD_GETLK, &fl) != 0)
        return 0;
    return fl.l_type != F_UNLCK;
}

int idx_read_begin(idx *ix, char *err, size_t errlen)
{
    int rc = LETHE_OK;
    pthread_rwlock_rdlock(&ix->rw);
    pthread_mutex_lock(&ix->mu);
    if (ix->shared_holders++ == 0) {
        uint64_t size;
        if (flock_retry(ix->fd, LOCK_SH) != 0) {
            rc = io_fail(ix, err, errlen, "flock(LOCK_SH)");
            goto out_fail;
        }
        rc = map_refresh(ix, &size, err, errlen);
        if (rc != LETHE_OK)
            goto out_unlock_file;
        if (!ix->writable) {
            idx_header h;
            rc = header_read(ix, &h, err, errlen);
            if (rc != LETHE_OK)
                goto out_unlock_file;
            ix->committed = h.count;
            ix->generation = h.generation;
            /* Removals not yet committed may have shrunk the file already. */
            uint64_t fit = blocks_in(size) * IDX_BLOCK_ROWS;
            ix->count = h.count < fit ? h.count : fit;
        }
    }
    pthread_mutex_unlock(&ix->mu);
    return LETHE_OK;

out_unlock_file:
    flock_retry(ix->fd, LOCK_UN);
out_fail:
    ix->shared_holders--;
    pthread_mutex_unlock(&ix->mu);
    pthread_rwlock_unlock(&ix->rw);
    return rc;
}

void idx_read_end(idx *ix)
{
    pthread_mutex_lock(&ix->mu);
    if (--ix->shared_holders == 0)
        flock_retry(ix->fd, LOCK_UN);
    pthread_mutex_unlock(&ix->mu);
    pthread_rwlock_unlock(&ix->rw);
}

static int write_begin(idx *ix, char *err, size_t errlen)
{
    uint64_t size;
    if (!ix->writable)
        return lethe_fail(err, errlen, LETHE_ERR_ARG, "%s: opened read-only", ix->path);
    pthread_rwlock_wrlock(&ix->rw);
    if (flock_retry(ix->fd, LOCK_EX) != 0) {
        int rc = io_fail(ix, err, errlen, "flock(LOCK_EX)");
        pthread_rwlock_unlock(&ix->rw);
        return rc;
    }
    int rc = map_refresh(ix, &size, err, errlen);
    if (rc != LETHE_OK) {
        flock_retry(ix->fd, LOCK_UN);
        pthread_rwlock_unlock(&ix->rw);
    }
    return rc;
}

static void write_end(idx *ix)
{
    flock_retry(ix->fd, LOCK_UN);
    pthread_rwlock_unlock(&ix->rw);
}

/* ------------------------------------------------------------------ */
/* Staged blocks                                                        */
/* ------------------------------------------------------------------ */

/* One row's stored form, as moved between slots. */
typedef struct idx_row {
    int64_t id;
    float vec[IDX_DIM];
    uint8_t code[IDX_DIM]; /* stored bytes: code + 128 */
    int32_t sq;
    int32_t sqa;
    float err;
    uint8_t live;
} idx_row;

typedef struct stage {
    uint64_t block;  /* staged block, or UINT64_MAX */
    uint8_t *buf;    /* IDX_BLOCK_BYTES, 64-byte aligned */
    unsigned lo, hi; /* dirty rows [lo, hi); lo >= hi: clean */
    unsigned tick;   /* last use, for choosing which stage to reuse */
} stage;

static void stage_init(stage *st)
{
    st->block = UINT64_MAX;
    st->buf = NULL;
    st->lo = IDX_BLOCK_ROWS;
    st->hi = 0;
    st->tick = 0;
}

static void stage_mark(stage *st, unsigned slot)
{
    if (slot < st->lo)
        st->lo = slot;
    if (slot + 1 > st->hi)
        st->hi = slot + 1;
}

/* Write the dirty rows back, region by region (gmax recomputed first). */
static int stage_flush(idx *ix, stage *st, char *err, size_t errlen)
{
    if (st->block == UINT64_MAX || st->lo >= st->hi)
        return LETHE_OK;
    uint8_t *b = st->buf;
    unsigned lo = st->lo, hi = st->hi;
    unsigned g0 = lo / IDX_GROUP_ROWS, g1 = (hi + IDX_GROUP_ROWS - 1) / IDX_GROUP_ROWS;
    const float *errs = (const float *)(b + IDX_OFF_ERR);
    const uint8_t *live = b + IDX_OFF_LIVE;
    float *gmax = (float *)(b + IDX_OFF_GMAX);
    for (unsigned g = g0; g < g1; g++) {
        float m = 0.0f;
        for (unsigned r = g * IDX_GROUP_ROWS; r < (g + 1) * IDX_GROUP_ROWS; r++)
            if (live[r] && errs[r] > m)
                m = errs[r];
        gmax[g] = m;
    }
    struct {
        unsigned off, start, len;
    } span[] = {
        {IDX_OFF_CODES_A, g0 * IDX_GROUP_HALF_BYTES, (g1 - g0) * IDX_GROUP_HALF_BYTES},
        {IDX_OFF_CODES_B, g0 * IDX_GROUP_HALF_BYTES, (g1 - g0) * IDX_GROUP_HALF_BYTES},
        {IDX_OFF_SQ, lo * 4, (hi - lo) * 4},
        {IDX_OFF_SQA, lo * 4, (hi - lo) * 4},
        {IDX_OFF_ERR, lo * 4, (hi - lo) * 4},
        {IDX_OFF_GMAX, g0 * 4, (g1 - g0) * 4},
        {IDX_OFF_LIVE, lo, hi - lo},
        {IDX_OFF_IDS, lo * 8, (hi - lo) * 8},
        {IDX_OFF_VECS, lo * IDX_DIM * 4, (hi - lo) * IDX_DIM * 4},
    };
    uint64_t base = IDX_HEADER_BYTES + st->block * (uint64_t)IDX_BLOCK_BYTES;
    for (size_t i = 0; i < LETHE_ARRAY_LEN(span); i++) {
        unsigned o = span[i].off + span[i].start;
        if (lethe_io_pwrite_all(ix->fd, b + o, span[i].len, base + o) != 0)
            return io_fail(ix, err, errlen, "writing rows");
    }
    st->lo = IDX_BLOCK_ROWS;
    st->hi = 0;
    return LETHE_OK;
}

/* Make st hold block b (flushing what it held). */
static int stage_load(idx *ix, stage *st, uint64_t b, char *err, size_t errlen)
{
    if (st->block == b)
        return LETHE_OK;
    int rc = stage_flush(ix, st, err, errlen);
    if (rc != LETHE_OK)
        return rc;
    if (!st->buf) {
        st->buf = lethe_malloc_aligned(IDX_BLOCK_BYTES);
        if (!st->buf)
            return lethe_fail(err, errlen, LETHE_ERR_NOMEM, "%s: out of memory", ix->path);
    }
    uint64_t off = IDX_HEADER_BYTES + b * (uint64_t)IDX_BLOCK_BYTES;
    if (ix->map && off + IDX_BLOCK_BYTES <= ix->map_len)
        memcpy(st->buf, ix->map + off, IDX_BLOCK_BYTES);
    else
        memset(st->buf, 0, IDX_BLOCK_BYTES);
    st->block = b;
    return LETHE_OK;
}

static void stage_free(stage *st)
{
    lethe_free_aligned(st->buf);
    st->buf = NULL;
}

/* Byte offset, inside a block, of dim d's code of block row `slot`. */
static inline unsigned code_off(unsigned slot, unsigned d)
{
    unsigned h = d % IDX_HALF;
    return (d < IDX_HALF ? IDX_OFF_CODES_A : IDX_OFF_CODES_B) +
           (slot / IDX_GROUP_ROWS) * IDX_GROUP_HALF_BYTES + (h / 4) * 64 +
           (slot % IDX_GROUP_ROWS) * 4 + h % 4;
}

static void stage_get(const stage *st, unsigned slot, idx_row *row)
{
    const uint8_t *b = st->buf;
    memcpy(&row->id, b + IDX_OFF_IDS + slot * 8, 8);
    memcpy(row->vec, b + IDX_OFF_VECS + slot * IDX_DIM * 4, IDX_DIM * 4);
    for (unsigned d = 0; d < IDX_DIM; d++)
        row->code[d] = b[code_off(slot, d)];
    memcpy(&row->sq, b + IDX_OFF_SQ + slot * 4, 4);
    memcpy(&row->sqa, b + IDX_OFF_SQA + slot * 4, 4);
    memcpy(&row->err, b + IDX_OFF_ERR + slot * 4, 4);
    row->live = b[IDX_OFF_LIVE + slot];
}

static void stage_put(stage *st, unsigned slot, const idx_row *row)
{
    uint8_t *b = st->buf;
    memcpy(b + IDX_OFF_IDS + slot * 8, &row->id, 8);
    memcpy(b + IDX_OFF_VECS + slot * IDX_DIM * 4, row->vec, IDX_DIM * 4);
    for (unsigned d = 0; d < IDX_DIM; d++)
        b[code_off(slot, d)] = row->code[d];
    memcpy(b + IDX_OFF_SQ + slot * 4, &row->sq, 4);
    memcpy(b + IDX_OFF_SQA + slot * 4, &row->sqa, 4);
    memcpy(b + IDX_OFF_ERR + slot * 4, &row->err, 4);
    b[IDX_OFF_LIVE + slot] = row->live;
    stage_mark(st, slot);
}

static void stage_zero(stage *st, unsigned slot)
{
    idx_row z;
    memset(&z, 0, sizeof z);
    stage_put(st, slot, &z);
}

/* Whether any byte of block row `slot` in a staged block is non-zero. */
static int stage_slot_dirty(const stage *st, unsigned slot)
{
    idx_row r, z;
    memset(&z, 0, sizeof z);
    stage_get(st, slot, &r);
    return memcmp(&r.id, &z.id, sizeof r.id) || memcmp(r.vec, z.vec, sizeof r.vec) ||
           memcmp(r.code, z.code, sizeof r.code) || r.sq || r.sqa ||
           memcmp(&r.err, &z.err, 4) || r.live;
}

/* The stage holding block b, loading it into the least recently used one. */
static int stage_pick(idx *ix, stage st[2], unsigned *tick, uint64_t b, stage **out,
                      char *err, size_t errlen)
{
    stage *s;
    if (st[0].block == b)
        s = &st[0];
    else if (st[1].block == b)
        s = &st[1];
    else {
        s = st[0].tick <= st[1].tick ? &st[0] : &st[1];
        int rc = stage_load(ix, s, b, err, errlen);
        if (rc != LETHE_OK)
            return rc;
    }
    s->tick = ++*tick;
    *out = s;
    return LETHE_OK;
}

/*
 * Make the file hold exactly `rows` rows' worth of blocks, every slot from
 * `rows` on zero: zero what lies past it (and sync those zeros, so the freed
 * disk blocks do not keep the bytes either), then truncate.
 */
static int trim_tail(idx *ix, uint64_t rows, char *err, size_t errlen)
{
    uint64_t size;
    int rc = map_refresh(ix, &size, err, errlen);
    if (rc != LETHE_OK)
        return rc;
    uint64_t keep_blocks = idx_blocks_for(rows);
    uint64_t keep = IDX_HEADER_BYTES + keep_blocks * (uint64_t)IDX_BLOCK_BYTES;
    /* Slots past `rows` in the last kept block. */
    if (rows % IDX_BLOCK_ROWS != 0 && keep <= size) {
        stage st;
        stage_init(&st);
        rc = stage_load(ix, &st, keep_blocks - 1, err, errlen);
        for (unsigned s = rows % IDX_BLOCK_ROWS; rc == LETHE_OK && s < IDX_BLOCK_ROWS; s++)
            if (stage_slot_dirty(&st, s))
                stage_zero(&st, s);
        if (rc == LETHE_OK)
            rc = stage_flush(ix, &st, err, errlen);
        stage_free(&st);
        if (rc != LETHE_OK)
            return rc;
    }
    if (size > keep) {
        rc = write_zeros(ix, keep, size - keep, err, errlen);
        if (rc != LETHE_OK)
            return rc;
        if (lethe_io_fdatasync_retry(ix->fd) != 0)
            return io_fail(ix, err, errlen, "fdatasync");
    }
    if (size != keep) {
        if (ix->map) { /* nothing may touch the part about to go */
            munmap((void *)ix->map, ix->map_len);
            ix->map = NULL;
            ix->map_len = 0;
        }
        if (lethe_io_ftruncate(ix->fd, (off_t)keep) != 0)
            return io_fail(ix, err, errlen, "ftruncate");
    }
    return map_refresh(ix, &size, err, errlen);
}

/* ------------------------------------------------------------------ */
/* Open and close                                                       */
/* ------------------------------------------------------------------ */

/* Wipe whatever the file holds and write an empty header. */
static int init_empty(idx *ix, char *err, size_t errlen)
{
    struct stat st;
    if (fstat(ix->fd, &st) != 0)
        return io_fail(ix, err, errlen, "fstat");
    if (ix->map) {
        munmap((void *)ix->map, ix->map_len);
        ix->map = NULL;
        ix->map_len = 0;
    }
    if (st.st_size > 0) {
        int rc = write_zeros(ix, 0, (uint64_t)st.st_size, err, errlen);
        if (rc != LETHE_OK)
            return rc;
        if (lethe_io_fdatasync_retry(ix->fd) != 0)
            return io_fail(ix, err, errlen, "fdatasync");
    }
    if (lethe_io_ftruncate(ix->fd, IDX_HEADER_BYTES) != 0)
        return io_fail(ix, err, errlen, "ftruncate");
    int rc = header_write(ix, 0, 0, err, errlen);
    if (rc != LETHE_OK)
        return rc;
    if (lethe_io_fdatasync_retry(ix->fd) != 0)
        return io_fail(ix, err, errlen, "fdatasync");
    ix->count = ix->committed = ix->generation = 0;
    return LETHE_OK;
}

/* Make sure a newly created file's directory entry is durable. */
static void sync_parent_dir(const char *path)
{
    char *dir = lethe_strdup(path);
    if (!dir)
        return;
    char *slash = strrchr(dir, '/');
    const char *d = ".";
    if (slash) {
        if (slash == dir)
            slash[1] = 0;
        else
            *slash = 0;
        d = dir;
    }
    int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        lethe_io_fsync(fd);
        close(fd);
    }
    lethe_free(dir);
}

static int open_locked(idx *ix, int flags, int created, char *err, size_t errlen)
{
    struct stat st;
    idx_header h;
    uint64_t size;
    int rc;

    if (fstat(ix->fd, &st) != 0)
        return io_fail(ix, err, errlen, "fstat");
    if (!S_ISREG(st.st_mode))
        return lethe_fail(err, errlen, LETHE_ERR_IO, "%s: not a regular file", ix->path);
    if (ix->writable && ((flags & IDX_TRUNCATE) || ((flags & IDX_CREATE) && st.st_size == 0))) {
        rc = init_empty(ix, err, errlen);
        if (rc == LETHE_OK && created)
            sync_parent_dir(ix->path);
        if (rc == LETHE_OK)
            rc = map_refresh(ix, &size, err, errlen);
        return rc;
    }
    if (st.st_size == 0)
        return lethe_fail(err, errlen, LETHE_ERR_FORMAT, "%s: empty file (no header)",
                          ix->path);
    rc = header_read(ix, &h, err, errlen);
    if (rc != LETHE_OK)
        return rc;
    size = (uint64_t)st.st_size;
    uint64_t need = IDX_HEADER_BYTES + idx_blocks_for(h.count) * (uint64_t)IDX_BLOCK_BYTES;
    uint64_t fit = blocks_in(size) * IDX_BLOCK_ROWS;
    ix->committed = h.count;
    ix->generation = h.generation;
    if (size < need) {
        /* A writer's removals not yet committed shrink the file before the
         * header follows; without a writer it is damage. */
        if (ix->writable || !writer_present(ix))
            return lethe_fail(err, errlen, LETHE_ERR_FORMAT,
                              "%s: size mismatch: %llu rows need %llu bytes, the file has "
                              "%llu",
                              ix->path, (unsigned long long)h.count,
                              (unsigned long long)need, (unsigned long long)size);
    }
    ix->count = h.count < fit ? h.count : fit;
    if (ix->writable) {
        /* Rows past the committed count were appended by a writer that did
         * not commit: drop them, leaving nothing behind. */
        rc = trim_tail(ix, ix->count, err, errlen);
        if (rc != LETHE_OK)
            return rc;
    }
    return map_refresh(ix, &size, err, errlen);
}

int idx_open(const char *path, int flags, idx **out, char *err, size_t errlen)
{
    idx *ix;
    int rc, created = 0;

    *out = NULL;
    if (!path)
        return lethe_fail(err, errlen, LETHE_ERR_ARG, "idx_open: no path");
    if ((flags & ~(IDX_WRITE | IDX_CREATE | IDX_TRUNCATE)) ||
        ((flags & (IDX_CREATE | IDX_TRUNCATE)) && !(flags & IDX_WRITE)))
        return lethe_fail(err, errlen, LETHE_ERR_ARG, "%s: bad open flags %#x", path, flags);
    ix = lethe_calloc(1, sizeof *ix);
    if (!ix)
        return lethe_fail(err, errlen, LETHE_ERR_NOMEM, "%s: out of memory", path);
    ix->fd = -1;
    ix->path = lethe_strdup(path);
    if (!ix->path) {
        lethe_free(ix);
        return lethe_fail(err, errlen, LETHE_ERR_NOMEM, "%s: out of memory", path);
    }
    ix->writable = (flags & IDX_WRITE) != 0;
    ix->isa = nn_isa_current();
    if (ix->isa == NN_ISA_AVX512 && !idx_isa_supported(NN_ISA_AVX512))
        ix->isa = NN_ISA_AVX2;
    if (!idx_isa_supported(ix->isa))
        ix->isa = NN_ISA_SCALAR;
    pthread_mutex_init(&ix->mu, NULL);
    pthread_mutex_init(&ix->pool_mu, NULL);
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    /* A stream of searches must not starve a writer. */
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&ix->rw, &attr);
    pthread_rwlockattr_destroy(&attr);

    if (ix->writable) {
        int oflags = O_RDWR | O_CLOEXEC;
        if (flags & IDX_CREATE) {
            ix->fd = lethe_io_open(path, oflags | O_CREAT | O_EXCL, 0644);
            if (ix->fd >= 0)
                created = 1;
            else if (errno == EEXIST)
                ix->fd = lethe_io_open(path, oflags, 0);
        } else {
            ix->fd = lethe_io_open(path, oflags, 0);
        }
    } else {
        /* O_NONBLOCK: a FIFO in its place must not block the open; the
         * type check below then refuses it. */
        ix->fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    }
    if (ix->fd < 0) {
        rc = lethe_fail(err, errlen, errno == ENOENT ? LETHE_ERR_NOT_FOUND : LETHE_ERR_IO,
                        "%s: cannot open: %s", path, strerror(errno));
        goto out_fail;
    }
    if (ix->writable) {
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
        if (fcntl(ix->fd, F_OFD_SETLK, &fl) != 0) {
            if (errno == EAGAIN || errno == EACCES)
                rc = lethe_fail(err, errlen, LETHE_ERR_IO,
                                "%s: already open for writing by another handle", path);
            else
                rc = io_fail(ix, err, errlen, "fcntl(F_OFD_SETLK)");
            goto out_fail;
        }
    }
    if (flock_retry(ix->fd, ix->writable ? LOCK_EX : LOCK_SH) != 0) {
        rc = io_fail(ix, err, errlen, "flock");
        goto out_fail;
    }
    rc = open_locked(ix, flags, created, err, errlen);
    flock_retry(ix->fd, LOCK_UN);
    if (rc != LETHE_OK)
        goto out_fail;
    *out = ix;
    return LETHE_OK;

out_fail:
    idx_close(ix);
    return rc;
}

void idx_close(idx *ix)
{
    if (!ix)
        return;
    nn_pool_destroy(ix->pool);
    if (ix->map)
        munmap((void *)ix->map, ix->map_len);
    if (ix->fd >= 0)
        close(ix->fd); /* releases the flock and the OFD lock */
    pthread_rwlock_destroy(&ix->rw);
    pthread_mutex_destroy(&ix->mu);
    pthread_mutex_destroy(&ix->pool_mu);
    lethe_free(ix->path);
    lethe_free(ix);
}

uint64_t idx_count(const idx *ix) { return ix ? ix->count : 0; }
uint64_t idx_generation(const idx *ix) { return ix ? ix->generation : 0; }

/* ------------------------------------------------------------------ */
/* Changes                                                              */
/* ------------------------------------------------------------------ */

int idx_append(idx *ix, const int64_t *ids, const float *vecs, size_t n, char *err,
               size_t errlen)
{
    int rc;
    stage st;
    idx_row row;

    if (!ix)
        return lethe_fail(err, errlen, LETHE_ERR_ARG, "idx_append: no index");
    if (n == 0)
        return LETHE_OK;
    if (!ids || !vecs)
        return lethe_fail(err, errlen, LETHE_ERR_ARG, "%s: append of NULL rows", ix->path);
    for (size_t i = 0; i < n * IDX_DIM; i++)
        if (!isfinite(vecs[i]))
            return lethe_fail(err, errlen, LETHE_ERR_ARG,
                              "%s: row %zu has a NaN or infinite component", ix->path,
                              i / IDX_DIM);
    rc = write_begin(ix, err, errlen);
    if (rc != LETHE_OK)
        return rc;
    if (n > IDX_MAX_ROWS - ix->count) {
        rc = lethe_fail(err, errlen, LETHE_ERR_TOO_LARGE,
                        "%s: %llu + %zu rows is more than the limit of %llu", ix->path,
                        (unsigned long long)ix->count, n, (unsigned long long)IDX_MAX_ROWS);
        goto out;
    }
    uint64_t first = ix->count, total = ix->count + n;
    /* Size the file first, so every block is whole however the writes land. */
    if (lethe_io_ftruncate(ix->fd, (off_t)(IDX_HEADER_BYTES +
                                  idx_blocks_for(total) * (uint64_t)IDX_BLOCK_BYTES)) != 0) {
        rc = io_fail(ix, err, errlen, "ftruncate");
        goto out;
    }
    stage_init(&st);
    for (size_t i = 0; i < n; i++) {
        uint64_t r = first + i;
        rc = stage_load(ix, &st, r / IDX_BLOCK_ROWS, err, errlen);
        if (rc != LETHE_OK)
            break;
        int8_t codes[IDX_DIM];
        row.id = ids[i];
        memcpy(row.vec, vecs + i * IDX_DIM, sizeof row.vec);
        idx_quantise(row.vec, codes, &row.sq, &row.err);
        row.sqa = 0;
        for (unsigned d = 0; d < IDX_DIM; d++) {
            row.code[d] = (uint8_t)(codes[d] + 128);
            if (d < IDX_HALF)
                row.sqa += codes[d] * codes[d];
        }
        row.live = 1;
        stage_put(&st, (unsigned)(r % IDX_BLOCK_ROWS), &row);
    }
    if (rc == LETHE_OK)
        rc = stage_flush(ix, &st, err, errlen);
    stage_free(&st);
    if (rc == LETHE_OK) {
        uint64_t size;
        ix->count = total;
        rc = map_refresh(ix, &size, err, errlen);
    } else {
        /* Leave no half-written rows behind. */
        trim_tail(ix, ix->count, NULL, 0);
    }
out:
    write_end(ix);
    return rc;
}

/* Open-addressing set of ids. */
typedef struct id_set {
    int64_t *keys;
    uint8_t *used;
    size_t mask;
} id_set;

static size_t id_hash(int64_t id)
{
    uint64_t x = (uint64_t)id;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return (size_t)x;
}

static int id_set_build(id_set *s, const int64_t *ids, size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    s->keys = lethe_malloc(cap * sizeof *s->keys);
    s->used = lethe_calloc(cap, 1);
    s->mask = cap - 1;
    if (!s->keys || !s->used)
        return -1;
    for (size_t i = 0; i < n; i++) {
        size_t h = id_hash(ids[i]) & s->mask;
        while (s->used[h] && s->keys[h] != ids[i])
            h = (h + 1) & s->mask;
        s->used[h] = 1;
        s->keys[h] = ids[i];
    }
    return 0;
}

static int id_set_has(const id_set *s, int64_t id)
{
    size_t h = id_hash(id) & s->mask;
    while (s->used[h]) {
        if (s->keys[h] == id)
            return 1;
        h = (h + 1) & s->mask;
    }
    return 0;
}

static void id_set_free(id_set *s)
{
    lethe_free(s->keys);
    lethe_free(s->used);
}

static int cmp_u32_desc(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

int idx_remove(idx *ix, const int64_t *ids, size_t n, size_t *removed, char *err,
               size_t errlen)
{
    int rc;
    id_set set = {0};
    uint32_t *pos = NULL;
    size_t npos = 0, cap = 0;
    stage st[2];
    unsigned tick = 0;

    if (removed)
        *removed = 0;
    if (!ix)
        return lethe_fail(err, errlen, LETHE_ERR_ARG, "idx_remove: no index");
    if (n == 0)
        return LETHE_OK;
    if (!ids)
        return lethe_fail(err, errlen, LETHE_ERR_ARG, "%s: remove of NULL ids", ix->path);
    rc = write_begin(ix, err, errlen);
    if (rc != LETHE_OK)
        return rc;
    stage_init(&st[0]);
    stage_init(&st[1]);
    if (id_set_build(&set, ids, n) != 0) {
        rc = lethe_fail(err, errlen, LETHE_ERR_NOMEM, "%s: out of memory", ix->path);
        goto out;
    }
    /* Find the rows. */
    for (uint64_t r = 0; r < ix->count; r++) {
        const uint8_t *blk = idx_block(ix->map, r / IDX_BLOCK_ROWS);
        unsigned s = (unsigned)(r % IDX_BLOCK_ROWS);
        int64_t id;
        memcpy(&id, blk + IDX_OFF_IDS + s * 8, 8);
        if (!blk[IDX_OFF_LIVE + s] || !id_set_has(&set, id))
            continue;
        if (npos == cap) {
            size_t ncap = cap ? 2 * cap : 64;
            uint32_t *p = lethe_realloc(pos, ncap * sizeof *pos);
            if (!p) {
                rc = lethe_fail(err, errlen, LETHE_ERR_NOMEM, "%s: out of memory", ix->path);
                goto out;
            }
            pos = p;
            cap = ncap;
        }
        pos[npos++] = (uint32_t)r;
    }
    if (npos == 0)
        goto out;
    /*
     * From the highest position down: move the last row into the hole and
     * zero the last slot. Every position above the current one was handled
     * already, so the last row is one to keep (or the hole itself).
     */
    qsort(pos, npos, sizeof *pos, cmp_u32_desc);
    uint64_t count = ix->count;
    for (size_t i = 0; i < npos; i++) {
        uint64_t hole = pos[i], last = count - 1;
        stage *sl, *sh;
        rc = stage_pick(ix, st, &tick, last / IDX_BLOCK_ROWS, &sl, err, errlen);
        if (rc != LETHE_OK)
            goto out_trim;
        if (hole != last) {
            idx_row row;
            stage_get(sl, (unsigned)(last % IDX_BLOCK_ROWS), &row);
            rc = stage_pick(ix, st, &tick, hole / IDX_BLOCK_ROWS, &sh, err, errlen);
            if (rc != LETHE_OK)
                goto out_trim;
            stage_put(sh, (unsigned)(hole % IDX_BLOCK_ROWS), &row);
            memset(&row, 0, sizeof row);
        }
        stage_zero(sl, (unsigned)(last % IDX_BLOCK_ROWS));
        count--;
    }
    rc = stage_flush(ix, &st[0], err, errlen);
    if (rc == LETHE_OK)
        rc = stage_flush(ix, &st[1], err, errlen);
out_trim:
    /* Even after a failure, the rows counted out must not stay in the file. */
    ix->count = count;
    if (rc == LETHE_OK) {
        rc = trim_tail(ix, count, err, errlen);
        if (removed)
            *removed = npos;
    } else {
        trim_tail(ix, count, NULL, 0);
    }
out:
    stage_free(&st[0]);
    stage_free(&st[1]);
    id_set_free(&set);
    lethe_free(pos);
    write_end(ix);
    return rc;
}

int idx_clear(idx *ix, char *err, size_t errlen)
{
    if (!ix)
        return lethe_fail(err, errlen, LETHE_ERR_ARG, "idx_clear: no index");
    int rc = write_begin(ix, err, errlen);
    if (rc != LETHE_OK)
        return rc;
    ix->count = 0;
    rc = trim_tail(ix, 0, err, errlen);
    write_end(ix);
    return rc;
}

int idx_commit(idx *ix, uint64_t generation, char *err, size_t errlen)
{
    if (!ix)
        return lethe_fail(err, errlen, LETHE_ERR_ARG, "idx_commit: no index");
    int rc = write_begin(ix, err, errlen);
    if (rc != LETHE_OK)
        return rc;
    /* The rows first, then the header that makes them count. */
    if (lethe_io_fdatasync_retry(ix->fd) != 0) {
        rc = io_fail(ix, err, errlen, "fdatasync");
        goto out;
    }
    rc = header_write(ix, ix->count, generation, err, errlen);
    if (rc != LETHE_OK)
        goto out;
    if (lethe_io_fdatasync_retry(ix->fd) != 0) {
        rc = io_fail(ix, err, errlen, "fdatasync");
        goto out;
    }
    ix->committed = ix->count;
    ix->generation = generation;
out:
    write_end(ix);
    return rc;
}

int idx_foreach(idx *ix, idx_row_fn fn, void *ctx, char *err, size_t errlen)
{
    if (!ix || !fn)
        return lethe_fail(err, errlen, LETHE_ERR_ARG, "idx_foreach: bad arguments");
    int rc = idx_read_begin(ix, err, errlen);
    if (rc != LETHE_OK)
        return rc;
    for (uint64_t r = 0; r < ix->count && rc == 0; r++) {
        const uint8_t *blk = idx_block(ix->map, r / IDX_BLOCK_ROWS);
        unsigned s = (unsigned)(r % IDX_BLOCK_ROWS);
        int64_t id;
        if (!blk[IDX_OFF_LIVE + s])
            continue;
        memcpy(&id, blk + IDX_OFF_IDS + s * 8, 8);
        rc = fn(ctx, id, (const float *)(blk + IDX_OFF_VECS + s * IDX_DIM * 4));
    }
    idx_read_end(ix);
    return rc;
}
