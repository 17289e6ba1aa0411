/*
 * calibrate.c: the descriptor model's calibration table, measured on LFW,
 * and its check.
 *
 *   calibrate --embeddings FILE [--lfw DIR] [--out src/model/calibration_table.c]
 *   calibrate --embeddings FILE [--lfw DIR] --check
 *
 * FILE is `lethe embed --json` over every LFW photo (bench/openset.sh makes
 * it once). Each photo's labelled face (the one nearest the middle) is its
 * descriptor. People whose names start with A-M calibrate; N-Z validate.
 * Within each half, every pair of photos of different people is an
 * impostor pair and every pair of photos of one person a genuine pair.
 * Every photo counts: a photo missing from FILE is an error (exit 1), and
 * one without a face is reported by name (it makes no pairs; the table
 * records how many).
 *
 * Without --check it writes the table (knots an eighth of a decade of
 * false-match rate apart, from 1 down to the rate of 20 pairs; below 0.1,
 * a 90% upper bound from a person-level bootstrap, see bootstrap_knots) as
 * C. With
 * --check it compares the table compiled into this build (the library's
 * lethe_calibration_*) with what is observed on the validation half, at
 * the distances where the table predicts 1e-2 ... 1e-6.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lethe.h"
#include "lfw_embed.h"

#define BINS (1 << 17)
#define BIN_MAX 2.0 /* distances above (none seen) count in the last bin */
#define MIN_PAIRS 20.0
#define CLOSE_MAX 0.75f   /* impostor pairs kept for the bootstrap (beyond fmr 0.1) */
#define REPLICATES 200
#define BOUND 0.10        /* each knot: this quantile of the replicates' distances */

/* An impostor pair nearer than CLOSE_MAX: its distance and its people. */
struct close_pair {
    float d;
    int a, b;
};

typedef struct half {
    const float **d;    /* labelled descriptors */
    int *person;        /* person index of each */
    size_t n;
    uint64_t photos, no_face, people;
    double *imp, *gen;   /* histograms (weighted pair counts) */
    double nimp, ngen;   /* their totals */
    uint64_t pairs_imp, pairs_gen;
    double *w;           /* each photo's weight (1) */
    struct close_pair *close; /* impostor pairs nearer than CLOSE_MAX */
    size_t nclose, capclose;
    int *photos_of;      /* photos with a face, per person */
} half;

static int in_calibration(const char *person) { return person[0] >= 'A' && person[0] <= 'M'; }

/* The half's photos with a face; those without are printed. */
static void collect(const lfw_set *s, int calib, half *h)
{
    memset(h, 0, sizeof(*h));
    h->d = lfw_xalloc(s->n * sizeof(*h->d));
    h->person = lfw_xalloc(s->n * sizeof(*h->person));
    h->imp = lfw_xalloc(BINS * sizeof(double));
    h->gen = lfw_xalloc(BINS * sizeof(double));
    h->w = lfw_xalloc(s->n * sizeof(double));
    h->photos_of = lfw_xalloc((size_t)s->people * sizeof(int));
    int pid = -1;
    const char *prev = "";
    for (size_t i = 0; i < s->n; i++) {
        const lfw_photo *p = &s->p[i];
        if (in_calibration(p->person) != calib)
            continue;
        if (strcmp(p->person, prev)) {
            pid++;
            h->people++;
            prev = p->person;
        }
        h->photos++;
        if (p->label < 0) {
            fprintf(stderr, "error: %s: no face found (%s half: its pairs are lost)\n", p->path,
                    calib ? "calibration" : "validation");
            h->no_face++;
            continue;
        }
        h->w[h->n] = 1;
        h->d[h->n] = p->faces[p->label].d;
        h->person[h->n++] = pid;
        h->photos_of[pid]++;
    }
}

static float dist(const float *a, const float *b)
{
    float s = 0;
    for (int k = 0; k < LFW_DIM; k++) {
        float t = a[k] - b[k];
        s += t * t;
    }
    return sqrtf(s);
}

static void pairs(half *h)
{
    for (size_t i = 0; i < h->n; i++)
        for (size_t j = i + 1; j < h->n; j++) {
            double d = dist(h->d[i], h->d[j]);
            size_t b = (size_t)(d / BIN_MAX * BINS);
            if (b >= BINS)
                b = BINS - 1;
            double w = h->w[i] * h->w[j];
            if (h->person[i] == h->person[j]) {
                h->gen[b] += w;
                h->ngen += w;
                h->pairs_gen++;
            } else {
                h->imp[b] += w;
                h->nimp += w;
                h->pairs_imp++;
                if (d < CLOSE_MAX) {
                    if (h->nclose == h->capclose) {
                        h->capclose = h->capclose ? h->capclose * 2 : 1 << 20;
                        h->close = realloc(h->close, h->capclose * sizeof(*h->close));
                        if (!h->close)
                            exit(1);
                    }
                    h->close[h->nclose++] = (struct close_pair){(float)d, h->person[i],
                                                                h->person[j]};
                }
            }
        }
}

/* The share of the histogram at or below distance d (linear within a bin). */
static double share_below(const double *hist, double total, double d)
{
    double x = d / BIN_MAX * BINS, c = 0;
    size_t whole = x < 0 ? 0 : (size_t)x;
    for (size_t b = 0; b < whole && b < BINS; b++)
        c += (double)hist[b];
    if (whole < BINS)
        c += (double)hist[whole] * (x - (double)whole);
    return total ? c / (double)total : 0;
}

/* The distance at which the share at or below reaches q. */
static double quantile(const double *hist, double total, double q)
{
    double want = q * (double)total, c = 0;
    for (size_t b = 0; b < BINS; b++) {
        if (c + (double)hist[b] >= want && hist[b]) {
            double w = (want - c) / (double)hist[b];
            return ((double)b + w) * BIN_MAX / BINS;
        }
        c += (double)hist[b];
    }
    return BIN_MAX;
}

static int cmp_close(const void *x, const void *y)
{
    float a = ((const struct close_pair *)x)->d, b = ((const struct close_pair *)y)->d;
    return (a > b) - (a < b);
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/*
 * Close impostor pairs clump in a few pairs of people (sisters, look-alikes
 * with many photos each), so the rate at a distance depends on which
 * people happen to be in the sample. Resample the people (Poisson
 * bootstrap, fixed seed): in each replicate a person counts m ~ Poisson(1)
 * times, a pair of people m_a * m_b times. For each level q (< 0.1) the
 * knot's distance is the BOUND quantile of the replicates' distances: a
 * one-sided (1 - BOUND) upper bound on the rate at that distance.
 */
static void bootstrap_knots(const half *h, const double *lv, int nl, double *out)
{
    double *dq = lfw_xalloc((size_t)nl * REPLICATES * sizeof(double));
    double *m = lfw_xalloc(h->people * sizeof(double));
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    qsort(h->close, h->nclose, sizeof(*h->close), cmp_close);
    for (int r = 0; r < REPLICATES; r++) {
        double s1 = 0, s2 = 0;
        for (uint64_t a = 0; a < h->people; a++) {
            /* Poisson(1) by inversion, from a xorshift64* draw */
            seed ^= seed >> 12, seed ^= seed << 25, seed ^= seed >> 27;
            double u = (double)((seed * 2685821657736338717ull) >> 11) / 9007199254740992.0;
            int k = 0;
            for (double p = exp(-1), c = p; u > c && k < 20; c += (p /= ++k))
                ;
            m[a] = k;
            s1 += m[a] * h->photos_of[a];
            s2 += m[a] * m[a] * h->photos_of[a] * h->photos_of[a];
        }
        /* levels from the smallest (lv is decreasing) */
        double total = (s1 * s1 - s2) / 2, c = 0;
        int l = nl - 1;
        for (size_t i = 0; i < h->nclose && l >= 0; i++) {
            c += m[h->close[i].a] * m[h->close[i].b];
            while (l >= 0 && c >= lv[l] * total)
                dq[(size_t)l-- * REPLICATES + r] = h->close[i].d;
        }
        for (; l >= 0; l--)
            dq[(size_t)l * REPLICATES + r] = CLOSE_MAX;
    }
    for (int l = 0; l < nl; l++) {
        qsort(dq + (size_t)l * REPLICATES, REPLICATES, sizeof(double), cmp_double);
        out[l] = dq[(size_t)l * REPLICATES + (int)(BOUND * REPLICATES)];
    }
    free(m);
    free(dq);
}

static void write_table(FILE *f, const half *h)
{
    double kd[80], kl[80], kf[80], lv[80], bd[80];
    int n = 0, nl = 0;
    for (int k = 9; k < 80 && pow(10, -k / 8.0) * (double)h->pairs_imp >= MIN_PAIRS; k++)
        lv[nl++] = pow(10, -k / 8.0);
    bootstrap_knots(h, lv, nl, bd);
    for (int k = 0; k < 80; k++) {
        double lf = -k / 8.0, q = pow(10, lf);
        if (q * (double)h->pairs_imp < MIN_PAIRS)
            break;
        double d = k == 0 ? quantile(h->imp, h->nimp, 1.0)
                   : k < 9 ? quantile(h->imp, h->nimp, q)
                           : bd[k - 9];
        if (n && d >= kd[n - 1])
            continue; /* keep distances strictly decreasing */
        kd[n] = d;
        kl[n] = lf;
        kf[n] = 1 - share_below(h->gen, h->ngen, d);
        n++;
    }
    /* the tail's slope: least squares over the last measured decade */
    int from = n > 9 ? n - 9 : 0;
    double sx = 0, sy = 0, sxx = 0, sxy = 0, m = n - from;
    for (int i = from; i < n; i++) {
        sx += kd[i];
        sy += kl[i];
        sxx += kd[i] * kd[i];
        sxy += kd[i] * kl[i];
    }
    double slope = (m * sxy - sx * sy) / (m * sxx - sx * sx);
    fprintf(f, "/*\n * calibration_table.c: GENERATED by build/bench/calibrate from LFW; do not\n"
               " * edit. Regenerate (bench/README.md, \"Match evidence\"):\n"
               " *   build/bench/calibrate --embeddings LFW.jsonl --out src/model/calibration_table.c\n"
               " * The impostor and genuine distances of the LFW people A-M (labelled face\n"
               " * of each photo); below a rate of 0.1 each knot is a 90%% upper bound on\n"
               " * the rate from a person-level bootstrap. Nothing here comes from any\n"
               " * store.\n */\n"
               "#include \"model/calibration.h\"\n\n"
               "static const calib_knot knots[] = {\n"
               "    /* distance, log10 fmr, fnmr */\n");
    for (int i = 0; i < n; i++)
        fprintf(f, "    {%.6ff, %.4ff, %.6ff},\n", kd[i], kl[i], kf[i]);
    fprintf(f, "};\n\nconst calib_table calib_lfw = {\n"
               "    .name = \"lfw-a-m-1\",\n"
               "    .model = \"dlib_face_recognition_resnet_model_v1 (face-api.js 1.7.15 weights), "
               "similarity alignment, mirror averaged, fp32 detector (the default before the "
               "int8 one; --precision fp32)\",\n"
               "    .source = \"LFW (deep-funneled), people A-M, labelled face of every photo; "
               "validated on N-Z\",\n"
               "    .photos = %llu,\n    .no_face = %llu,\n    .people = %llu,\n"
               "    .impostor_pairs = %llu,\n    .genuine_pairs = %llu,\n"
               "    .tail_slope = %.6f,\n    .n = %d,\n    .knots = knots,\n};\n",
            (unsigned long long)h->photos, (unsigned long long)h->no_face,
            (unsigned long long)h->people, (unsigned long long)h->pairs_imp,
            (unsigned long long)h->pairs_gen, slope, n);
}

/* The compiled-in table against the validation half. Returns the number of
 * decades from 1e-2 to 1e-5 outside a factor of 1.5. */
static int check(const half *v)
{
    lethe_calibration c;
    int bad = 0;
    lethe_calibration_info(&c);
    printf("table %s: %llu impostor and %llu genuine pairs (A-M); measured down to fmr %.2g "
           "(distance %.4f)\n", c.name, (unsigned long long)c.impostor_pairs,
           (unsigned long long)c.genuine_pairs, c.min_measured_fmr,
           (double)c.min_measured_distance);
    printf("validation (N-Z): %llu photos, %llu people, %llu without a face; %llu impostor, "
           "%llu genuine pairs\n\n", (unsigned long long)v->photos,
           (unsigned long long)v->people, (unsigned long long)v->no_face,
           (unsigned long long)v->pairs_imp, (unsigned long long)v->pairs_gen);
    printf("| predicted fmr | distance | observed fmr (N-Z) | impostor pairs | observed/predicted "
           "| predicted fnmr | observed fnmr (N-Z) |\n|---|---|---|---|---|---|---|\n");
    static const double levels[] = {1e-1, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6};
    for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
        float t;
        double pf, pn;
        lethe_calibration_threshold(levels[i], 1, &t);
        lethe_calibration_rates(t, &pf, &pn);
        double of = share_below(v->imp, v->nimp, t), on = 1 - share_below(v->gen, v->ngen, t);
        double ratio = of / pf;
        int decade = fabs(log10(levels[i]) - round(log10(levels[i]))) < 1e-9 &&
                     levels[i] <= 1e-2 && levels[i] >= 1e-5;
        if (decade && !(ratio <= 1.5 && ratio >= 1 / 1.5))
            bad++;
        printf("| %.3g | %.4f | %.3g | %.0f | %.2f%s | %.4f | %.4f |\n", pf, (double)t, of,
               of * (double)v->pairs_imp, ratio, decade ? "" : " (information)", pn, on);
    }
    return bad;
}

int main(int argc, char **argv)
{
    const char *lfw = "../shared/data/lfw", *emb = NULL, *out = NULL;
    int do_check = 0, errors = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--lfw") && i + 1 < argc)
            lfw = argv[++i];
        else if (!strcmp(argv[i], "--embeddings") && i + 1 < argc)
            emb = argv[++i];
        else if (!strcmp(argv[i], "--out") && i + 1 < argc)
            out = argv[++i];
        else if (!strcmp(argv[i], "--check"))
            do_check = 1;
        else {
            fprintf(stderr, "usage: calibrate --embeddings FILE [--lfw DIR] "
                            "[--out FILE.c | --check]\n");
            return 2;
        }
    }
    lfw_set s;
    if (!emb) {
        fprintf(stderr, "calibrate: --embeddings FILE (lethe embed --json over LFW) is required\n");
        return 2;
    }
    if (lfw_list(lfw, &s) < 0 || lfw_read_cache(emb, &s, &errors, 0) < 0)
        return 1;
    if (errors) {
        fprintf(stderr, "calibrate: %d photo(s) of %s missing from %s\n", errors, lfw, emb);
        return 1;
    }
    half h;
    collect(&s, !do_check, &h);
    pairs(&h);
    fprintf(stderr, "%s: %llu photos (%llu without a face), %llu people, %llu impostor and %llu "
                    "genuine pairs\n", do_check ? "validation N-Z" : "calibration A-M",
            (unsigned long long)h.photos, (unsigned long long)h.no_face,
            (unsigned long long)h.people, (unsigned long long)h.pairs_imp,
            (unsigned long long)h.pairs_gen);
    int rc = 0;
    if (do_check) {
        rc = check(&h) ? 1 : 0;
        printf("\n%s\n", rc ? "FAIL: a decade from 1e-2 to 1e-5 is off by more than 1.5x"
                            : "every decade from 1e-2 to 1e-5 within a factor of 1.5");
    } else {
        FILE *f = out ? fopen(out, "w") : stdout;
        if (!f) {
            perror(out);
            return 1;
        }
        write_table(f, &h);
        if (out)
            fclose(f);
    }
    free(h.d);
    free(h.person);
    free(h.imp);
    free(h.gen);
    free(h.w);
    free(h.close);
    free(h.photos_of);
    lfw_free(&s);
    return rc;
}
