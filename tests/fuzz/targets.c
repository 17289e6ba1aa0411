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
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report/datasheet.h"
#include "manifest/manifest.h"
#include "lethe.h"
#include "model/model.h"
#include "policy/policy.h"
#include "util/util.h"

typedef int (*lethe_fuzz_fn)(const uint8_t *data, size_t size);

int lethe_fuzz_image(const uint8_t *data, size_t size);
int lethe_fuzz_weights(const uint8_t *data, size_t size);
int lethe_fuzz_manifest_csv(const uint8_t *data, size_t size);
int lethe_fuzz_manifest_jsonl(const uint8_t *data, size_t size);
int lethe_fuzz_policy(const uint8_t *data, size_t size);
int lethe_fuzz_datasheet(const uint8_t *data, size_t size);
int lethe_fuzz_receipt(const uint8_t *data, size_t size);
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
        opt.base_dir = "/base";
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
    return "image, weights, manifest_csv, manifest_jsonl, policy";
}
