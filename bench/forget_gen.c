/*
 * forget_gen.c: the data of bench/forget.sh (forgetting at scale).
 *
 *   forget_gen --seeds SEEDS.f32 --out DIR [--n N] [--account A] [--gb-frac F]
 *              [--per-uploader P] [--sample S] [--sigma SIGMA] [--seed X]
 *
 * Writes N descriptors (default 1,000,000; 128 float32 each, little-endian
 * as the machine is), each a seed descriptor (real ones, from lethe embed)
 * plus Gaussian noise of SIGMA per component (0.025, as bench_search gen:
 * two copies of one seed ~0.40 apart, like two photos of one person), all
 * distinct, in three parts, each DIR/PART.f32 with a CSV sidecar
 * DIR/PART.csv (header uploader,source,license,jurisdiction,consent,url,
 * photo_id,collected_at; consent explicit, so the default policy allows
 * the templates):
 *
 *   account  A rows (default 100) of one uploader, target-account, in US;
 *   gb       F * N rows (default 10%) in GB, uploaders g0000000, g0000001, ...
 *            holding P rows each (default 100);
 *   rest     the remainder in US, uploaders u0000000, ... holding P rows each.
 *
 * Every row has its own url (https://photos.example/p/NNNNNNNN.jpg) and
 * photo_id (ph-NNNNNNNN-s), numbered from 1 across the three parts; numbers
 * and uploader names are zero-padded to one width (8 characters) so that no
 * value is a substring of another, and every run of digits follows a
 * letter or punctuation of the value itself.
 *
 * For the checks after forgetting it also writes
 *   DIR/account.jsonl    every account descriptor, {"embedding":[...]} per
 *                        line, floats printed with %.9g (exact as float32)
 *   DIR/account.texts    its uploader, its rows' url tails (NNNNNNNN.jpg) and
 *                        photo id tails (NNNNNNNN-s), one per line
 *   DIR/gb-sample.jsonl  S of the GB descriptors (default 1000), spread
 *                        evenly over the part
 *   DIR/gb-sample.texts  their url and photo id tails and uploaders
 * (Texts for tests/scan: of 8 bytes or more, and no two sharing their first
 * 8 bytes but a row's two, which its hash table needs to run fast: with a
 * shared prefix such as https:// it would probe every such needle at every
 * offset. The suffixes and prefixes keep a needle from matching across a
 * value's edge: an index entry "u0000000" followed by a rowid byte 0x32
 * reads "00000002", and a record header byte 0x67 followed by a photo id
 * "00000043..." reads "g0000004", an uploader's name.)
 * and prints one JSON object with the counts.
 *
 * Deterministic: the same arguments give the same bytes on any machine
 * (xoshiro256** seeded by splitmix64, as bench_search).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench_rng.h"

#define DIM 128

static void die(const char *fmt, const char *arg)
{
    fprintf(stderr, "forget_gen: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    exit(1);
}


/* ------------------------------------------------- distinct descriptors */

/* An open-addressing set of 64-bit hashes of the rows written so far: a row
 * whose hash was seen is drawn again, so every descriptor is distinct (lethe
 * knows a descriptor "photo" by its hash: a repeat would be one photo). */
static uint64_t *seen;
static size_t seen_cap;

static uint64_t hash_row(const float *row)
{
    const unsigned char *b = (const unsigned char *)row;
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a, then a final mix */
    for (size_t i = 0; i < DIM * sizeof(float); i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h ? h : 1;
}

static int seen_add(uint64_t h)
{
    size_t s = (size_t)h & (seen_cap - 1);
    while (seen[s]) {
        if (seen[s] == h)
            return 0;
        s = (s + 1) & (seen_cap - 1);
    }
    seen[s] = h;
    return 1;
}

static const float *seeds;
static size_t nseeds;
static double sigma = 0.025;

static void draw(float *row)
{
    do {
        const float *s = seeds + (next_u64() % nseeds) * DIM;
        for (int d = 0; d < DIM; d++)
            row[d] = (float)(s[d] + sigma * gauss());
    } while (!seen_add(hash_row(row)));
}

/* ---------------------------------------------------------------- output */

static const char *out;

static FILE *open_out(const char *name, const char *mode)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", out, name);
    FILE *f = fopen(path, mode);
    if (!f)
        die("cannot write %s", path);
    return f;
}

static void close_out(FILE *f, const char *name)
{
    if (ferror(f) | fclose(f))
        die("cannot write %s", name);
}

static void write_jsonl(FILE *f, const float *row)
{
    fputs("{\"embedding\":[", f);
    for (int d = 0; d < DIM; d++)
        fprintf(f, d ? ",%.9g" : "%.9g", (double)row[d]);
    fputs("]}\n", f);
}

static const char HEADER[] = "uploader,source,license,jurisdiction,consent,url,photo_id,collected_at\n";

/* One part: rows [0, n) numbered from *serial across the parts. Rows whose
 * index is a multiple of sample_every (when nonzero) also go to the sample
 * files. */
static void write_part(const char *part, size_t n, const char *juris, const char *fixed_uploader,
                       char uploader_prefix, size_t per_uploader, size_t *serial, FILE *sample_jsonl,
                       FILE *sample_texts, size_t sample_every, size_t sample_max, size_t *sampled)
{
    char name[64], uploader[64];
    float row[DIM];
    snprintf(name, sizeof name, "%s.f32", part);
    FILE *fv = open_out(name, "wb");
    snprintf(name, sizeof name, "%s.csv", part);
    FILE *fc = open_out(name, "w");
    fputs(HEADER, fc);
    for (size_t i = 0; i < n; i++) {
        size_t id = (*serial)++;
        draw(row);
        if (fwrite(row, sizeof row, 1, fv) != 1)
            die("cannot write %s.f32", part);
        if (fixed_uploader)
            snprintf(uploader, sizeof uploader, "%s", fixed_uploader);
        else
            snprintf(uploader, sizeof uploader, "%c%07zu", uploader_prefix, i / per_uploader);
        /* collected over 2023, one day per uploader */
        fprintf(fc, "%s,bench-forget,CC-BY-4.0,%s,explicit,https://photos.example/p/%08zu.jpg,"
                    "ph-%08zu-s,2023-%02zu-%02zu\n",
                uploader, juris, id, id, 1 + (i / per_uploader) % 12,
                1 + (i / per_uploader / 12) % 28);
        if (sample_jsonl && sample_every && i % sample_every == 0 && *sampled < sample_max) {
            write_jsonl(sample_jsonl, row);
            fprintf(sample_texts, "%08zu.jpg\n%08zu-s\n", id, id);
            if (!fixed_uploader && i % per_uploader == 0)
                fprintf(sample_texts, "%s\n", uploader);
            (*sampled)++;
        }
    }
    close_out(fv, part);
    close_out(fc, part);
}

int main(int argc, char **argv)
{
    const char *seeds_path = NULL;
    size_t n = 1000000, account = 100, per_uploader = 100, sample = 1000;
    double gb_frac = 0.10;
    uint64_t seed = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seeds") && i + 1 < argc)
            seeds_path = argv[++i];
        else if (!strcmp(argv[i], "--out") && i + 1 < argc)
            out = argv[++i];
        else if (!strcmp(argv[i], "--n") && i + 1 < argc)
            n = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--account") && i + 1 < argc)
            account = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--gb-frac") && i + 1 < argc)
            gb_frac = atof(argv[++i]);
        else if (!strcmp(argv[i], "--per-uploader") && i + 1 < argc)
            per_uploader = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--sample") && i + 1 < argc)
            sample = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--sigma") && i + 1 < argc)
            sigma = atof(argv[++i]);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 10);
        else
            die("unknown option %s (see the comment at the top of bench/forget_gen.c)", argv[i]);
    }
    if (!seeds_path || !out)
        die("needs --seeds SEEDS.f32 and --out DIR%s", "");
    size_t gb = (size_t)(gb_frac * (double)n + 0.5);
    if (per_uploader == 0 || account + gb > n || n > 99999999)
        die("bad sizes: need 0 < per-uploader, account + gb <= n < 10^8%s", "");
    size_t rest = n - account - gb;

    FILE *f = fopen(seeds_path, "rb");
    struct stat st;
    if (!f || fstat(fileno(f), &st) != 0)
        die("cannot read %s", seeds_path);
    nseeds = (size_t)st.st_size / (DIM * sizeof(float));
    float *sv = malloc(nseeds * DIM * sizeof *sv + 1);
    if (!sv || fread(sv, DIM * sizeof *sv, nseeds, f) != nseeds)
        die("cannot read %s", seeds_path);
    fclose(f);
    if (nseeds == 0)
        die("no seed descriptors in %s", seeds_path);
    seeds = sv;

    seen_cap = 16;
    while (seen_cap < 2 * n + 16)
        seen_cap *= 2;
    seen = calloc(seen_cap, sizeof *seen);
    if (!seen)
        die("out of memory%s", "");

    seed_rng(seed);
    size_t serial = 1, sampled_account = 0, sampled_gb = 0;
    FILE *aj = open_out("account.jsonl", "w"), *at = open_out("account.texts", "w");
    fputs("target-account\n", at);
    write_part("account", account, "US", "target-account", 0, per_uploader, &serial, aj, at, 1,
               account, &sampled_account);
    close_out(aj, "account.jsonl");
    close_out(at, "account.texts");

    FILE *gj = open_out("gb-sample.jsonl", "w"), *gt = open_out("gb-sample.texts", "w");
    size_t every = sample && gb > sample ? gb / sample : 1;
    write_part("gb", gb, "GB", NULL, 'g', per_uploader, &serial, gj, gt, sample ? every : 0, sample,
               &sampled_gb);
    close_out(gj, "gb-sample.jsonl");
    close_out(gt, "gb-sample.texts");

    write_part("rest", rest, "US", NULL, 'u', per_uploader, &serial, NULL, NULL, 0, 0, NULL);

    printf("{\"n\": %zu, \"account\": %zu, \"gb\": %zu, \"rest\": %zu, \"gb_uploaders\": %zu, "
           "\"rest_uploaders\": %zu, \"gb_sample\": %zu, \"seeds\": %zu, \"sigma\": %g, "
           "\"seed\": %llu}\n",
           n, account, gb, rest, (gb + per_uploader - 1) / per_uploader,
           (rest + per_uploader - 1) / per_uploader, sampled_gb, nseeds, sigma,
           (unsigned long long)seed);
    free(seen);
    free(sv);
    return 0;
}
