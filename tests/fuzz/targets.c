/*
 * targets.c: the fuzz targets, one per parser of hostile input, shared by
 * the libFuzzer binaries and the corpus replayer (replay.c). Each takes one
 * input, must never crash, leak or trip a sanitizer whatever the bytes, and
 * returns 0 (libFuzzer's convention; a nonzero return is a harness bug).
 *
 *   image    lethe_image_decode, at full and reduced scale, 16 Mpx cap
 *   weights  lethe_weights_parse on "manifest JSON" NUL "shard bytes"
 *   manifest_csv    the manifest reader, CSV; from memory and from a stream
 *                   read in 16-byte chunks, which must agree
 *   manifest_jsonl  the same for JSON Lines
 *   policy   policy_parse; what parses must format, re-parse and re-format
 *            to the same text; jurisdiction and consent parsing
 *   datasheet, receipt  the datasheet renderer, lethe_receipt_verify
 *   index    a descriptor index built, then damaged as the input says, opened
 *            for reading and writing, searched, appended to and committed
 *   manifest_raw    raw float32 descriptors with a sidecar, from memory and
 *                   from files, which must agree
 *   queries  lethe_queries_* and lethe_descriptor_parse (search queries)
 *   keyring, backup_json, log_head  the keyring file, backup.json, log.head
 *   request_json  the body reader of `lethe serve` (programs/serve_json.c):
 *                 what parses has valid members and parses again, written
 *                 out from its members, to the same members
 *   http     lethe serve's whole request path on raw bytes (http.c)
 */
#include <fcntl.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "forget/backup.h"
#include "forget/keyring.h"
#include "report/datasheet.h"
#include "store/head.h"
#include "manifest/manifest.h"
#include "index/index_int.h"
#include "lethe.h"
#include "model/model.h"
#include "policy/policy.h"
#include "util/util.h"
#include "../../programs/serve_json.h"

typedef int (*lethe_fuzz_fn)(const uint8_t *data, size_t size);

int lethe_fuzz_image(const uint8_t *data, size_t size);
int lethe_fuzz_weights(const uint8_t *data, size_t size);
int lethe_fuzz_manifest_csv(const uint8_t *data, size_t size);
int lethe_fuzz_manifest_jsonl(const uint8_t *data, size_t size);
int lethe_fuzz_policy(const uint8_t *data, size_t size);
int lethe_fuzz_datasheet(const uint8_t *data, size_t size);
int lethe_fuzz_receipt(const uint8_t *data, size_t size);
int lethe_fuzz_index(const uint8_t *data, size_t size);
int lethe_fuzz_manifest_raw(const uint8_t *data, size_t size);
int lethe_fuzz_queries(const uint8_t *data, size_t size);
int lethe_fuzz_request_json(const uint8_t *data, size_t size);
int lethe_fuzz_http(const uint8_t *data, size_t size); /* http.c */
lethe_fuzz_fn lethe_fuzz_find(const char *name);
const char *lethe_fuzz_names(void);

/* Touch every pixel so that a short buffer shows up under ASan. */
static unsigned image_checksum(const lethe_image *img)
{
    size_t n = (size_t)img->width * (size_t)img->height * 3;
    unsigned sum = 0;

    for (size_t i = 0; i < n; i++)
        sum += img->rgb[i];
    return sum;
}

int lethe_fuzz_image(const uint8_t *data, size_t size)
{
    static const struct {
        int min_decode_side; /* 0: full scale */
        int apply_orientation;
    } passes[] = {{0, 1}, {48, 1}, {1, 0}};
    volatile unsigned sink = 0;

    for (size_t i = 0; i < sizeof(passes) / sizeof(passes[0]); i++) {
        lethe_image_options opt;
        lethe_image *img = NULL;
        char msg[256];
        int st;

        lethe_image_options_init(&opt);
        opt.max_pixels = 16u * 1000u * 1000u;
        opt.min_decode_side = passes[i].min_decode_side;
        opt.apply_orientation = passes[i].apply_orientation;
        st = lethe_image_decode(data, size, &opt, &img, msg, sizeof(msg));
        if (st == LETHE_OK) {
            if (!img || img->width <= 0 || img->height <= 0 || img->orig_width < img->width ||
                img->orig_height < img->height)
                __builtin_trap(); /* contract broken */
            sink += image_checksum(img);
        } else if (img != NULL || msg[0] == '\0') {
            __builtin_trap(); /* a failure must leave no image and explain itself */
        }
        lethe_image_free(img);
        if (st != LETHE_OK)
            break; /* the other passes would fail the same way */
    }
    (void)sink;
    return 0;
}

int lethe_fuzz_weights(const uint8_t *data, size_t size)
{
    static const unsigned char no_blob[1];
    const uint8_t *nul = size ? memchr(data, 0, size) : NULL;
    size_t manifest_len = nul ? (size_t)(nul - data) : size;
    const unsigned char *blob = nul ? nul + 1 : no_blob;
    size_t blob_len = nul ? size - manifest_len - 1 : 0;
    lethe_weights *w = NULL;
    char msg[256];
    volatile float sink = 0;

    if (lethe_weights_parse(size ? (const char *)data : "", manifest_len, blob, blob_len, &w, msg,
                            sizeof(msg)) != LETHE_OK) {
        if (w != NULL)
            __builtin_trap();
        return 0;
    }
    for (int i = 0; i < lethe_weights_count(w); i++) {
        int rank = 0, shape[4] = {0};
        const char *name = lethe_weights_name(w, i);
        const float *t = name ? lethe_weights_find(w, name, &rank, shape) : NULL;
        size_t n = 1;
        if (!t)
            __builtin_trap(); /* every listed tensor must be found */
        for (int d = 0; d < rank && d < 4; d++)
            n *= (size_t)shape[d];
        for (size_t k = 0; k < n; k++)
            sink += t[k];
    }
    lethe_weights_free(w);
    (void)sink;
    return 0;
}


/* What one manifest reading produced, folded into a few numbers. */
typedef struct manifest_digest {
    int open_status;       /* manifest_open_* */
    int fatal;             /* reading ended in MANIFEST_FATAL */
    unsigned rows, bad;    /* MANIFEST_ROW, MANIFEST_BAD_ROW */
    uint64_t hash;         /* FNV-1a over every row and message */
} manifest_digest;

static void fnv(uint64_t *h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        *h = (*h ^ b[i]) * 1099511628211ull;
}

static void fnv_str(uint64_t *h, const char *s)
{
    if (!s)
        __builtin_trap(); /* row strings are never NULL */
    fnv(h, s, strlen(s) + 1);
}

/* Read everything, checking the row contract, into d. */
static void manifest_drain(manifest *m, manifest_digest *d)
{
    manifest_row r;
    char err[512];
    size_t last_line = 0;

    for (unsigned guard = 0; guard < 1000000; guard++) {
        int st = manifest_next(m, &r, err, sizeof(err));
        size_t line;
        fnv(&d->hash, &st, sizeof(st));
        if (st == MANIFEST_END)
            return;
        if (st == MANIFEST_FATAL) {
            d->fatal = 1;
            return;
        }
        if (st == MANIFEST_ROW) {
            char canon[JURISDICTION_MAX];
            d->rows++;
            line = r.line;
            fnv_str(&d->hash, r.path);
            fnv_str(&d->hash, r.resolved);
            fnv_str(&d->hash, r.photo_id);
            fnv_str(&d->hash, r.url);
            fnv_str(&d->hash, r.uploader);
            fnv_str(&d->hash, r.source);
            fnv_str(&d->hash, r.license);
            fnv_str(&d->hash, r.collected_at);
            fnv_str(&d->hash, r.jurisdiction);
            fnv(&d->hash, &r.consent, sizeof(r.consent));
            if (r.consent != 0 && !consent_name(r.consent))
                __builtin_trap();
            if (jurisdiction_parse(r.jurisdiction, canon, NULL, 0) != LETHE_OK ||
                strcmp(canon, r.jurisdiction) != 0)
                __builtin_trap(); /* must be canonical */
            if (r.collected_at[0] && !manifest_valid_timestamp(r.collected_at))
                __builtin_trap();
            if (r.has_embedding) {
                for (int i = 0; i < MANIFEST_DIM; i++)
                    if (!isfinite(r.embedding[i]))
                        __builtin_trap();
                fnv(&d->hash, r.embedding, sizeof(r.embedding));
            }
        } else if (st == MANIFEST_BAD_ROW) {
            char *end;
            d->bad++;
            if (strncmp(err, "line ", 5) != 0)
                __builtin_trap(); /* every row error names its line */
            line = strtoul(err + 5, &end, 10);
            if (end[0] != ':')
                __builtin_trap();
            fnv_str(&d->hash, err);
        } else {
            __builtin_trap();
        }
        if (line <= last_line)
            __builtin_trap(); /* records start on strictly later lines */
        last_line = line;
    }
    __builtin_trap(); /* a reader that never ends */
}

static void manifest_run(const uint8_t *data, size_t size, const manifest_options *opt,
                         int via_stream, manifest_digest *d)
{
    manifest *m = NULL;
    char err[512];
    FILE *f = NULL;

    memset(d, 0, sizeof(*d));
    d->hash = 1469598103934665603ull;
    if (via_stream) {
        f = fmemopen((void *)(uintptr_t)data, size, "rb");
        if (!f) {
            d->open_status = -1;
            return;
        }
        d->open_status = manifest_open_stream(f, NULL, opt, &m, err, sizeof(err));
    } else {
        d->open_status = manifest_open_mem(data, size, opt, &m, err, sizeof(err));
    }
    if (d->open_status != LETHE_OK) {
        if (m != NULL || err[0] == '\0')
            __builtin_trap(); /* a failure leaves nothing and explains itself */
        fnv_str(&d->hash, err);
    } else {
        const char *const *names;
        size_t n;
        manifest_drain(m, d);
        n = manifest_unknown_columns(m, &names);
        if (n > MANIFEST_MAX_UNKNOWN)
            __builtin_trap();
        for (size_t i = 0; i < n; i++)
            fnv_str(&d->hash, names[i]);
    }
    manifest_close(m);
    if (f)
        fclose(f);
}

static int digest_failed(const manifest_digest *d)
{
    return d->open_status == -1 || d->open_status == LETHE_ERR_NOMEM || d->fatal;
}

/* Photo and descriptor mode; the default record limit from memory, and a
 * small one (to reach the over-long paths) from memory and from a stream
 * in 16-byte chunks, which must agree exactly. */
static int fuzz_manifest(const uint8_t *data, size_t size, int format)
{
    static const int modes[] = {MANIFEST_PHOTOS, MANIFEST_DESCRIPTORS};

    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        manifest_options opt;
        manifest_digest mem, stream;

        manifest_options_init(&opt);
        opt.mode = modes[i];
        opt.format = format;
        /* Photo mode: no folder, so the confinement is the lexical check
         * (a real folder would make rows depend on the disk). Descriptor
         * mode: paths joined to a folder, which need not exist. */
        opt.base_dir = modes[i] == MANIFEST_PHOTOS ? NULL : "/base";
        manifest_run(data, size, &opt, 0, &mem);
        opt.max_record = 200;
        opt.io_chunk = 16;
        manifest_run(data, size, &opt, 0, &mem);
        if (size == 0)
            continue; /* fmemopen may refuse an empty buffer */
        manifest_run(data, size, &opt, 1, &stream);
        if (digest_failed(&mem) || digest_failed(&stream))
            continue; /* an injected allocation failure: nothing to compare */
        if (mem.open_status != stream.open_status || mem.rows != stream.rows ||
            mem.bad != stream.bad || mem.hash != stream.hash)
            __builtin_trap(); /* streaming must not change the result */
    }
    return 0;
}

int lethe_fuzz_manifest_csv(const uint8_t *data, size_t size)
{
    return fuzz_manifest(data, size, MANIFEST_CSV);
}

int lethe_fuzz_manifest_jsonl(const uint8_t *data, size_t size)
{
    return fuzz_manifest(data, size, MANIFEST_JSONL);
}

int lethe_fuzz_policy(const uint8_t *data, size_t size)
{
    static const char *const places[] = {"", "US-IL", "us-ca", "DE-BY", "FR", "GB-SCT",
                                         "NO", "JP", "UK", "x"};
    policy *p = NULL, *q = NULL;
    char err[512], *text = NULL, *again = NULL, word[40];
    size_t n = size < sizeof(word) - 1 ? size : sizeof(word) - 1;
    unsigned mask;
    int st;

    /* The first bytes as a word for the small parsers. */
    memcpy(word, size ? (const char *)data : "", n);
    word[n] = '\0';
    {
        char canon[JURISDICTION_MAX], country[3];
        if (jurisdiction_parse(word, canon, err, sizeof(err)) == LETHE_OK && canon[0]) {
            memcpy(country, canon, 2);
            country[2] = '\0';
            if (strlen(canon) != strlen(word) || !jurisdiction_is_country(country))
                __builtin_trap();
        }
        if (consent_mask_parse(word, &mask, err, sizeof(err)) == LETHE_OK &&
            (mask & ~CONSENT_ALL))
            __builtin_trap();
        (void)consent_parse(word);
    }

    st = policy_parse(size ? (const char *)data : "", size, &p, err, sizeof(err));
    if (st != LETHE_OK) {
        if (p != NULL || err[0] == '\0')
            __builtin_trap();
        return 0;
    }
    for (size_t i = 0; i < sizeof(places) / sizeof(places[0]); i++)
        for (int bit = 0; bit <= 8; bit++) {
            const char *rule = NULL;
            int ok = policy_allows(p, places[i], bit, &rule);
            if (!rule || (ok && bit == CONSENT_WITHDRAWN))
                __builtin_trap();
        }
    text = policy_format(p);
    if (!text)
        goto out; /* out of memory (injected) */
    st = policy_parse(text, strlen(text), &q, err, sizeof(err));
    if (st == LETHE_ERR_NOMEM)
        goto out;
    if (st != LETHE_OK || policy_rule_count(q) != policy_rule_count(p))
        __builtin_trap(); /* the canonical text must parse back */
    again = policy_format(q);
    if (again && strcmp(text, again) != 0)
        __builtin_trap(); /* ... to the same policy */
    for (size_t i = 0; i < policy_rule_count(p); i++) {
        const char *key;
        unsigned m1, m2;
        if (policy_rule_at(p, i, &key, &m1) != LETHE_OK || !policy_get(q, key, &m2) || m1 != m2)
            __builtin_trap();
    }
out:
    lethe_free(again);
    lethe_free(text);
    policy_free(q);
    policy_free(p);
    return 0;
}

/* The datasheet renderer reads JSON made by the catalog; a hostile one (a
 * key holding markup) must never produce a live tag or a link. */
int lethe_fuzz_datasheet(const uint8_t *data, size_t size)
{
    static const char *const formats[] = {"md", "html", "json"};
    char err[512];
    for (size_t f = 0; f < 3; f++) {
        char *out = NULL;
        int rc = datasheet_render((const char *)data, size, formats[f], &out, err, sizeof(err));
        if (rc != 0) {
            if (out != NULL)
                __builtin_trap();
            continue;
        }
        if (!out)
            __builtin_trap();
        if (f == 1 && (strstr(out, "<script") || strstr(out, "http://") ||
                       strstr(out, "https://")))
            __builtin_trap();
        free(out);
    }
    return 0;
}

/* An erasure receipt comes back from its holder: any bytes (read where they
 * lie, without a terminator) get a verdict, never a crash. One that
 * verifies must verify against the key it names and fail against any
 * other. */
int lethe_fuzz_receipt(const uint8_t *data, size_t size)
{
    char msg[256];
    int rc = lethe_receipt_verify((const char *)data, size, NULL, msg, sizeof(msg));
    if (rc != LETHE_OK) {
        if (rc != LETHE_ERR_FORMAT && rc != LETHE_ERR_NOMEM)
            __builtin_trap();
        if (!msg[0])
            __builtin_trap();
        return 0;
    }
    static const char key_tag[] = "\"store_key\":\"";
    const uint8_t *k = memmem(data, size, key_tag, sizeof(key_tag) - 1);
    if (!k || (size_t)(k - data) + sizeof(key_tag) - 1 + 64 > size)
        __builtin_trap();
    char key[65];
    memcpy(key, k + sizeof(key_tag) - 1, 64);
    key[64] = 0;
    if (lethe_receipt_verify((const char *)data, size, key, msg, sizeof(msg)) != LETHE_OK)
        __builtin_trap();
    key[0] = key[0] == '0' ? '1' : '0';
    if (lethe_receipt_verify((const char *)data, size, key, msg, sizeof(msg)) == LETHE_OK)
        __builtin_trap();
    return 0;
}

/* ------------------------------------------------------------------ */
/* Files for the targets that read files                               */
/* ------------------------------------------------------------------ */

/* A folder of this process's own for scratch files (tmpfs when there is
 * one: the index target writes and syncs a file per input), removed at
 * exit; NULL if none could be made. */
static char fuzz_dir[64];

static void fuzz_dir_remove(void)
{
    static const char *const names[] = {"faces.idx", "d.f32", "side.csv", "side.jsonl",
                                        "side"};
    char p[128];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", fuzz_dir, names[i]);
        unlink(p);
    }
    rmdir(fuzz_dir);
}

static const char *fuzz_file(const char *name, char *buf, size_t n)
{
    if (!fuzz_dir[0]) {
        snprintf(fuzz_dir, sizeof(fuzz_dir), "/dev/shm/lethe-fuzz-XXXXXX");
        if (!mkdtemp(fuzz_dir)) {
            snprintf(fuzz_dir, sizeof(fuzz_dir), "/tmp/lethe-fuzz-XXXXXX");
            if (!mkdtemp(fuzz_dir)) {
                fuzz_dir[0] = '\0';
                return NULL;
            }
        }
        atexit(fuzz_dir_remove);
    }
    snprintf(buf, n, "%s/%s", fuzz_dir, name);
    return buf;
}

static int put_bytes(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    int ok = f && (len == 0 || fwrite(data, 1, len, f) == len);
    if (f && fclose(f) != 0)
        ok = 0;
    return ok;
}

/* ------------------------------------------------------------------ */
/* The index file                                                      */
/* ------------------------------------------------------------------ */

/*
 * Input: byte 0 flags, byte 1 rows, byte 2 a size parameter, then patches.
 * A real index is built first (rows + 256 * (flags & 16 ? 1 : 0) rows,
 * committed with generation 7), then damaged: the patches (3-byte
 * little-endian offset into the file, modulo its size; 1-byte length; the
 * bytes) are written over it; flags & 1 then recomputes the header's
 * checksum, so that changed counts, versions and layouts get past it;
 * (flags >> 1) & 3 changes the size: 1 cuts byte2 * 64 bytes off, 2 adds
 * as many, 3 cuts the file to 4096 + byte2 bytes. flags & 8 skips the
 * writer.
 */
#define FUZZ_IDX_FIRST_ID 1000 /* the built rows' ids: 1000, 1001, ... */

static void idx_vector(float *v, unsigned seed)
{
    uint32_t x = seed * 2654435761u + 12345u;
    for (int d = 0; d < IDX_DIM; d++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v[d] = (float)((int)(x % 2001u) - 1000) / 2000.0f;
    }
}

/* Build the undamaged index: 0, or -1 if it could not be made (an
 * injected allocation failure). */
static int idx_build(const char *path, unsigned rows)
{
    idx *ix = NULL;
    float *vecs = lethe_malloc((size_t)(rows ? rows : 1) * IDX_DIM * sizeof(float));
    int64_t *ids = lethe_malloc((size_t)(rows ? rows : 1) * sizeof(int64_t));
    int rc = -1;

    if (!vecs || !ids)
        goto out;
    for (unsigned i = 0; i < rows; i++) {
        ids[i] = FUZZ_IDX_FIRST_ID + (int64_t)i;
        idx_vector(vecs + (size_t)i * IDX_DIM, i);
    }
    if (idx_open(path, IDX_WRITE | IDX_CREATE | IDX_TRUNCATE, &ix, NULL, 0) != LETHE_OK)
        goto out;
    if (idx_append(ix, ids, vecs, rows, NULL, 0) == LETHE_OK &&
        idx_commit(ix, 7, NULL, 0) == LETHE_OK)
        rc = 0;
out:
    idx_close(ix);
    lethe_free(vecs);
    lethe_free(ids);
    return rc;
}

/* Damage the file as the input says. */
static void idx_damage(const char *path, const uint8_t *data, size_t size)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);
    struct stat st;
    uint64_t fsize;
    size_t at = 3;

    if (fd < 0 || fstat(fd, &st) != 0) {
        if (fd >= 0)
            close(fd);
        return;
    }
    fsize = (uint64_t)st.st_size;
    while (fsize > 0 && at + 4 <= size) {
        uint64_t off = ((uint64_t)data[at] | (uint64_t)data[at + 1] << 8 |
                        (uint64_t)data[at + 2] << 16) % fsize;
        size_t len = data[at + 3];
        at += 4;
        if (len > size - at)
            len = size - at;
        if (len > fsize - off)
            len = (size_t)(fsize - off);
        if (pwrite(fd, data + at, len, (off_t)off) < 0)
            break;
        at += len;
    }
    if (data[0] & 1) {
        idx_header h;
        if (pread(fd, &h, sizeof(h), 0) == (ssize_t)sizeof(h)) {
            const uint8_t *p = (const uint8_t *)&h;
            uint64_t sum = 0xcbf29ce484222325ull;
            for (size_t i = 0; i < offsetof(idx_header, checksum); i++)
                sum = (sum ^ p[i]) * 0x100000001b3ull;
            h.checksum = sum;
            if (pwrite(fd, &h, sizeof(h), 0) < 0)
                fsize = 0;
        }
    }
    {
        uint64_t cut = LETHE_MIN(fsize, (uint64_t)data[2] * 64);
        uint64_t sizes[4] = {fsize, fsize - cut, fsize + (uint64_t)data[2] * 64,
                             IDX_HEADER_BYTES + (uint64_t)data[2]};
        uint64_t want = sizes[(data[0] >> 1) & 3];
        if (want != fsize && ftruncate(fd, (off_t)want) != 0)
            want = fsize; /* the file stays as it is */
    }
    close(fd);
}

/* The rows a file of this size can hold (whole blocks). */
static uint64_t idx_rows_fitting(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0 || (uint64_t)st.st_size <= IDX_HEADER_BYTES)
        return 0;
    return ((uint64_t)st.st_size - IDX_HEADER_BYTES) / IDX_BLOCK_BYTES * IDX_BLOCK_ROWS;
}

static int count_row(void *ctx, int64_t id, const float *vec)
{
    (void)id;
    (void)vec;
    ++*(uint64_t *)ctx;
    return 0;
}

/* Search an open index and check what must hold whatever the file held. */
static void idx_probe(idx *ix, uint64_t fit)
{
    enum { NQ = 2, K = 5 };
    float q[NQ * IDX_DIM];
    idx_hit hits[NQ * K];
    size_t nhits[NQ];
    uint64_t count = idx_count(ix), gen = idx_generation(ix), live = 0;

    if (count > IDX_MAX_ROWS || count > fit)
        __builtin_trap(); /* more rows than the file can hold */
    idx_vector(q, 3);
    idx_vector(q + IDX_DIM, 77);
    if (idx_search(ix, q, NQ, K, INFINITY, 1, hits, nhits, NULL, 0) == LETHE_OK) {
        for (int i = 0; i < NQ; i++) {
            if (nhits[i] > K || nhits[i] > idx_count(ix))
                __builtin_trap();
            for (size_t j = 0; j < nhits[i]; j++)
                if (hits[i * K + j].distance < 0)
                    __builtin_trap();
        }
    }
    /* With no writer, a search sees what the open saw. */
    if (idx_count(ix) != count || idx_generation(ix) != gen)
        __builtin_trap();
    if (idx_foreach(ix, count_row, &live, NULL, 0) == LETHE_OK && live > count)
        __builtin_trap();
}

int lethe_fuzz_index(const uint8_t *data, size_t size)
{
    char buf[128];
    const char *path = fuzz_file("faces.idx", buf, sizeof(buf));
    idx *ix = NULL;
    uint64_t count = 0, gen = 0;
    float v[IDX_DIM];
    int64_t id = INT64_MIN;
    int wrote = 0;

    if (!path || size < 3)
        return 0;
    unlink(path);
    if (idx_build(path, data[1] + ((data[0] & 16) ? 256u : 0u)) != 0)
        return 0;
    idx_damage(path, data, size);

    if (idx_open(path, IDX_READ, &ix, NULL, 0) == LETHE_OK) {
        idx_probe(ix, idx_rows_fitting(path));
        idx_close(ix);
        ix = NULL;
    }
    if (data[0] & 8)
        return 0;
    /* The writer: opens (dropping uncommitted rows), searches, appends a
     * row, commits; a reader then sees exactly that. */
    if (idx_open(path, IDX_WRITE, &ix, NULL, 0) != LETHE_OK)
        return 0;
    idx_probe(ix, idx_rows_fitting(path));
    count = idx_count(ix);
    gen = idx_generation(ix);
    idx_vector(v, 5);
    if (count < IDX_MAX_ROWS && idx_append(ix, &id, v, 1, NULL, 0) == LETHE_OK &&
        idx_commit(ix, gen + 1, NULL, 0) == LETHE_OK)
        wrote = 1;
    idx_close(ix);
    ix = NULL;
    if (!wrote)
        return 0;
    {
        int rc = idx_open(path, IDX_READ, &ix, NULL, 0);
        if (rc == LETHE_OK) {
            if (idx_count(ix) != count + 1 || idx_generation(ix) != gen + 1)
                __builtin_trap(); /* the commit must be what a reader sees */
            idx_probe(ix, idx_rows_fitting(path));
            idx_close(ix);
        } else if (rc != LETHE_ERR_NOMEM) {
            __builtin_trap(); /* what the writer committed must open */
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Raw float32 descriptors with a sidecar                              */
/* ------------------------------------------------------------------ */

/* What reading a raw manifest gave: statuses and row contents, not the
 * messages (they name the files, which differ between memory and disk). */
typedef struct raw_digest {
    int open_status;
    unsigned rows, bad, fatal;
    uint64_t hash;
} raw_digest;

static void raw_drain(lethe_manifest *m, raw_digest *d, uint64_t descriptors)
{
    lethe_manifest_row r;
    char msg[512];
    size_t last = 0;

    for (unsigned guard = 0; guard < 100000; guard++) {
        int st = lethe_manifest_next(m, &r, msg, sizeof(msg));
        fnv(&d->hash, &st, sizeof(st));
        if (st == 0)
            break;
        if (st == -2) {
            d->fatal = 1;
            if (!msg[0])
                __builtin_trap();
            return;
        }
        if (st == -1) {
            d->bad++;
            if (strncmp(msg, "line ", 5) != 0)
                __builtin_trap();
            continue;
        }
        if (st != 1 || !r.embedding || strcmp(r.file, "") != 0 || r.line <= last)
            __builtin_trap();
        last = r.line;
        d->rows++;
        for (int i = 0; i < LETHE_DESCRIPTOR_DIM; i++)
            if (!isfinite(r.embedding[i]))
                __builtin_trap();
        fnv(&d->hash, r.embedding, LETHE_DESCRIPTOR_DIM * sizeof(float));
        fnv(&d->hash, &r.line, sizeof(r.line));
        fnv_str(&d->hash, r.prov.uploader);
        fnv_str(&d->hash, r.prov.consent);
        fnv_str(&d->hash, r.prov.jurisdiction);
    }
    /* Every descriptor was paired with exactly one sidecar record. */
    if (d->rows + d->bad != descriptors)
        __builtin_trap();
}

/*
 * Input: byte 0 chooses the sidecar's name (0: none, 1: s.csv, 2:
 * s.jsonl), bytes 1-2 (little-endian) how many of the following bytes are
 * the float32 data; the rest is the sidecar. Read from memory and from two
 * files, which must agree.
 */
int lethe_fuzz_manifest_raw(const uint8_t *data, size_t size)
{
    static const char *const names[] = {NULL, "side.csv", "side.jsonl"};
    const char *name, *f32_path, *side_path;
    char b1[128], b2[128], msg[512];
    size_t f32_len;
    raw_digest mem = {0}, file = {0};
    lethe_manifest *m = NULL;

    if (size < 3)
        return 0;
    name = names[data[0] % 3];
    f32_len = LETHE_MIN((size_t)data[1] | (size_t)data[2] << 8, size - 3);
    mem.hash = file.hash = 1469598103934665603ull;
    mem.open_status = lethe_manifest_open_raw_mem(data + 3, f32_len, data + 3 + f32_len,
                                                  size - 3 - f32_len, name, 0, &m, msg,
                                                  sizeof(msg));
    if (mem.open_status == LETHE_OK) {
        if (f32_len % 512)
            __builtin_trap(); /* a partial descriptor must be refused */
        raw_drain(m, &mem, f32_len / 512);
    } else if (m || !msg[0]) {
        __builtin_trap();
    }
    lethe_manifest_close(m);
    m = NULL;

    f32_path = fuzz_file("d.f32", b1, sizeof(b1));
    side_path = fuzz_file(name ? name : "side", b2, sizeof(b2));
    if (!f32_path || !put_bytes(f32_path, data + 3, f32_len) ||
        !put_bytes(side_path, data + 3 + f32_len, size - 3 - f32_len))
        return 0;
    file.open_status = lethe_manifest_open_raw(f32_path, side_path, 0, &m, msg, sizeof(msg));
    if (file.open_status == LETHE_OK)
        raw_drain(m, &file, f32_len / 512);
    else if (m || !msg[0])
        __builtin_trap();
    lethe_manifest_close(m);
    if (mem.open_status == LETHE_ERR_NOMEM || file.open_status == LETHE_ERR_NOMEM ||
        mem.fatal || file.fatal)
        return 0; /* an injected allocation failure: nothing to compare */
    if (mem.open_status != file.open_status || mem.rows != file.rows || mem.bad != file.bad ||
        mem.hash != file.hash)
        __builtin_trap(); /* memory and files must read the same */
    return 0;
}

/* ------------------------------------------------------------------ */
/* Search queries                                                      */
/* ------------------------------------------------------------------ */

/* lethe_queries_* over the input as JSON Lines, and lethe_descriptor_parse
 * over the whole of it: descriptors finite, lines in order, every bad line
 * named, every failure explained. */
int lethe_fuzz_queries(const uint8_t *data, size_t size)
{
    lethe_queries *q = NULL;
    lethe_query query;
    float v[LETHE_DESCRIPTOR_DIM];
    char msg[512];
    size_t last = 0;
    int st;

    st = lethe_descriptor_parse((const char *)data, size, v, msg, sizeof(msg));
    if (st == LETHE_OK) {
        for (int i = 0; i < LETHE_DESCRIPTOR_DIM; i++)
            if (!isfinite(v[i]))
                __builtin_trap();
    } else if ((st != LETHE_ERR_FORMAT && st != LETHE_ERR_NOMEM) || !msg[0]) {
        __builtin_trap();
    }

    st = lethe_queries_open_mem(data, size, &q, msg, sizeof(msg));
    if (st != LETHE_OK) {
        if (q || !msg[0] || (st != LETHE_ERR_FORMAT && st != LETHE_ERR_NOMEM))
            __builtin_trap();
        return 0;
    }
    for (unsigned guard = 0;; guard++) {
        int r = lethe_queries_next(q, &query, msg, sizeof(msg));
        size_t line;
        char *end;
        if (guard > 1000000)
            __builtin_trap(); /* a reader that never ends */
        if (r == 0)
            break;
        if (r == -2) {
            if (!msg[0] || lethe_queries_next(q, &query, msg, sizeof(msg)) != -2)
                __builtin_trap(); /* a failure is final and explained */
            break;
        }
        if (r == -1) {
            if (strncmp(msg, "line ", 5) != 0)
                __builtin_trap();
            line = strtoul(msg + 5, &end, 10);
            if (end[0] != ':')
                __builtin_trap();
        } else if (r == 1) {
            line = query.line;
            for (int i = 0; i < LETHE_DESCRIPTOR_DIM; i++)
                if (!isfinite(query.descriptor[i]))
                    __builtin_trap();
        } else {
            __builtin_trap();
        }
        if (line < last || line == 0)
            __builtin_trap(); /* faces share their line; lines never go back */
        last = line;
    }
    lethe_queries_close(q);
    return 0;
}

/* ------------------------------------------------------------------ */
/* The keyring file                                                    */
/* ------------------------------------------------------------------ */

typedef struct kr_seen {
    uint64_t records;
    uint64_t last_slot;
    int any;
} kr_seen;

static int kr_visit(void *ctx, int kind, kr_ref ref, unsigned flags, const uint8_t *payload,
                    size_t len)
{
    kr_seen *k = ctx;
    (void)flags;
    (void)payload;
    if (kind < KR_PHOTO || kind > KR_RECEIPT || len > KR_MAX_RECORD)
        __builtin_trap(); /* only valid records are handed out */
    if (k->any && ref.slot <= k->last_slot)
        __builtin_trap(); /* in slot order */
    k->any = 1;
    k->last_slot = ref.slot;
    k->records++;
    return 0;
}

/*
 * The keyring (forget/keyring.c) read as it lies on disk: any bytes must
 * open or be refused with a status; one that opens must list its records in
 * slot order, answer key and record look-ups with a status, and a writer
 * must be able to add a key that a reader then finds, and destroy it.
 */
int lethe_fuzz_keyring(const uint8_t *data, size_t size)
{
    char buf[128];
    const char *path = fuzz_file("keyring", buf, sizeof(buf));
    keyring *k = NULL;
    uint8_t key[KR_KEY], got[KR_KEY];
    kr_seen seen = {0, 0, 0};
    if (!path)
        return 0;
    if (size >= KR_HEADER) {
        uint64_t gen;
        uint8_t id[KR_STORE_ID];
        (void)kr_header_check(data, &gen, id);
    }
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return 0;
    int ok = size == 0 || write(fd, data, size) == (ssize_t)size;
    close(fd);
    if (!ok)
        return 0;
    if (kr_open(path, 0, &k, NULL, 0) == LETHE_OK) {
        uint64_t damaged = 0;
        if (kr_foreach(k, kr_visit, &seen, &damaged, NULL, 0) == LETHE_OK &&
            seen.records + damaged > kr_slot_count(k) + 1)
            __builtin_trap();
        for (uint64_t i = 0; i < 4 && i < kr_slot_count(k); i++) {
            kr_ref ref = {i, (uint64_t)i * 7919};
            uint8_t *payload = NULL;
            size_t len = 0;
            (void)kr_get_key(k, ref, key);
            if (kr_get_record(k, ref, KR_OPTOUT, &payload, &len, NULL) == LETHE_OK &&
                len > KR_MAX_RECORD)
                __builtin_trap();
            lethe_free(payload);
        }
        kr_close(k);
        k = NULL;
    }
    if (kr_open(path, 1, &k, NULL, 0) != LETHE_OK)
        return 0;
    kr_ref ref;
    int rc = kr_new_key(k, &ref, key);
    if (rc == LETHE_OK)
        rc = kr_flush(k, NULL, 0);
    if (rc == LETHE_OK) {
        /* What a writer flushed must open and hold the new key; only
         * running out of memory (fuzz_replay --alloc-fail) may stop it. */
        keyring *r = NULL;
        int ro = kr_open(path, 0, &r, NULL, 0);
        if (ro != LETHE_OK && ro != LETHE_ERR_NOMEM)
            __builtin_trap();
        if (ro == LETHE_OK && (kr_get_key(r, ref, got) != LETHE_OK || memcmp(got, key, KR_KEY)))
            __builtin_trap();
        kr_close(r);
        if (kr_shred(k, &ref, 1, NULL, 0) == LETHE_OK && kr_get_key(k, ref, got) == LETHE_OK)
            __builtin_trap(); /* a destroyed key is gone */
    }
    kr_close(k);
    return 0;
}

/* ------------------------------------------------------------------ */
/* backup.json and log.head                                            */
/* ------------------------------------------------------------------ */

/* backup.json (forget/backup_info.c): parsed within the bytes given; what
 * parses has hex digests of the right lengths. */
int lethe_fuzz_backup_json(const uint8_t *data, size_t size)
{
    backup_info bi;
    char msg[256];
    if (backup_info_parse((const char *)data, size, &bi, msg, sizeof(msg)) != LETHE_OK) {
        if (!msg[0])
            __builtin_trap(); /* a refusal says why */
        return 0;
    }
    if (strlen(bi.digest) != 64 || strlen(bi.log_hash) != 64 || strlen(bi.catalog_hash) != 64 ||
        strlen(bi.store_id) != 2 * KR_STORE_ID || bi.log_seq < 1 || !bi.created_at[0])
        __builtin_trap();
    return 0;
}

/* log.head (store/head.c): a parse formats back to the same bytes. */
int lethe_fuzz_log_head(const uint8_t *data, size_t size)
{
    int64_t seq;
    char hash[65], out[128];
    if (log_head_parse((const char *)data, size, &seq, hash) != 0)
        return 0;
    int n = log_head_format(seq, hash, out, sizeof(out));
    size_t want = size && data[size - 1] == '\n' ? size : size + 1;
    if (n < 0 || (size_t)n != want || memcmp(out, data, want - 1) != 0 || seq < 1)
        __builtin_trap();
    return 0;
}

/* ------------------------------------------------------------------ */
/* Request bodies of lethe serve                                       */
/* ------------------------------------------------------------------ */

/* A decoded string back as a JSON string literal into b (at most n). */
static size_t sj_quote(char *b, size_t n, const char *s, size_t len)
{
    size_t at = 0;
    if (at < n)
        b[at++] = '"';
    for (size_t i = 0; i < len && at + 7 < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            b[at++] = '\\';
            b[at++] = (char)c;
        } else if (c < 0x20) {
            at += (size_t)snprintf(b + at, n - at, "\\u%04x", c);
        } else {
            b[at++] = (char)c;
        }
    }
    if (at < n)
        b[at++] = '"';
    return at;
}

/* Every member is well formed: a unique name, a span inside the input, a
 * decoded string that is valid UTF-8 without NUL. */
static void sj_check_members(const sj_object *o, const uint8_t *data, size_t size)
{
    if (o->n < 0 || o->n > SJ_MAX_MEMBERS)
        __builtin_trap();
    for (int i = 0; i < o->n; i++) {
        const sj_member *m = &o->m[i];
        if (strlen(m->name) > SJ_MAX_NAME || sj_get(o, m->name) != m)
            __builtin_trap(); /* names are unique: the first with a name is it */
        if (m->raw < (const char *)data || m->raw_len == 0 ||
            m->raw + m->raw_len > (const char *)data + size)
            __builtin_trap();
        if (m->type == SJ_STRING && (!m->str || strlen(m->str) != m->str_len ||
                                     !sj_utf8_valid(m->str, m->str_len)))
            __builtin_trap();
        if ((m->type == SJ_ARRAY && m->raw[0] != '[') || (m->type == SJ_OBJECT && m->raw[0] != '{'))
            __builtin_trap();
    }
}

/*
 * The request body reader: any bytes parse or are refused with a message;
 * what parses, written out again from its members (names re-quoted, values
 * as their spans), parses to the same members.
 */
int lethe_fuzz_request_json(const uint8_t *data, size_t size)
{
    sj_object o, again;
    char msg[256];
    int rc = sj_parse((const char *)data, size, &o, msg, sizeof(msg));
    if (rc != 0) {
        if ((rc != -1 && rc != -2) || !msg[0])
            __builtin_trap(); /* a refusal says why */
        sj_free(&o);
        return 0;
    }
    sj_check_members(&o, data, size);
    size_t cap = size + (size_t)o.n * (6 * SJ_MAX_NAME + 8) + 8, at = 0;
    char *text = malloc(cap);
    if (!text) {
        sj_free(&o);
        return 0;
    }
    text[at++] = '{';
    for (int i = 0; i < o.n; i++) {
        if (i)
            text[at++] = ',';
        at += sj_quote(text + at, cap - at, o.m[i].name, strlen(o.m[i].name));
        text[at++] = ':';
        memcpy(text + at, o.m[i].raw, o.m[i].raw_len);
        at += o.m[i].raw_len;
    }
    text[at++] = '}';
    if (sj_parse(text, at, &again, msg, sizeof(msg)) != 0 || again.n != o.n)
        __builtin_trap();
    for (int i = 0; i < o.n; i++) {
        const sj_member *a = &o.m[i], *b = &again.m[i];
        if (strcmp(a->name, b->name) || a->type != b->type || a->raw_len != b->raw_len ||
            memcmp(a->raw, b->raw, a->raw_len) ||
            (a->type == SJ_STRING && strcmp(a->str, b->str)) ||
            (a->type == SJ_NUMBER && memcmp(&a->num, &b->num, sizeof(a->num))) ||
            (a->type == SJ_BOOL && a->boolean != b->boolean))
            __builtin_trap();
    }
    sj_free(&again);
    sj_free(&o);
    free(text);
    return 0;
}

static const struct {
    const char *name;
    lethe_fuzz_fn fn;
} fuzz_targets[] = {
    {"image", lethe_fuzz_image},
    {"weights", lethe_fuzz_weights},
    {"manifest_csv", lethe_fuzz_manifest_csv},
    {"manifest_jsonl", lethe_fuzz_manifest_jsonl},
    {"policy", lethe_fuzz_policy},
    {"datasheet", lethe_fuzz_datasheet},
    {"receipt", lethe_fuzz_receipt},
    {"index", lethe_fuzz_index},
    {"manifest_raw", lethe_fuzz_manifest_raw},
    {"queries", lethe_fuzz_queries},
    {"keyring", lethe_fuzz_keyring},
    {"backup_json", lethe_fuzz_backup_json},
    {"log_head", lethe_fuzz_log_head},
    {"request_json", lethe_fuzz_request_json},
#ifndef LETHE_LIBFUZZER /* the replayer has them all; fuzz_http is linked on its own */
    {"http", lethe_fuzz_http},
#endif
};

/* The target called name, or NULL. */
lethe_fuzz_fn lethe_fuzz_find(const char *name)
{
    for (size_t i = 0; i < sizeof(fuzz_targets) / sizeof(fuzz_targets[0]); i++)
        if (strcmp(fuzz_targets[i].name, name) == 0)
            return fuzz_targets[i].fn;
    return NULL;
}

/* The target names, for usage messages. */
const char *lethe_fuzz_names(void)
{
    return "image, weights, manifest_csv, manifest_jsonl, policy, datasheet, receipt, index, "
           "manifest_raw, queries, keyring, backup_json, log_head, request_json, http";
}
