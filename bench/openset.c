/*
 * openset.c: open-set 1:N identification on LFW, as NIST measures it
 * (FNIR at a given FPIR, rank-1, rank-10, the DET curve), for lethe and,
 * on the same protocol, face-api.js's pipeline.
 *
 *   openset --embeddings LETHE.jsonl [--peer PEER.jsonl] [--lfw DIR]
 *           [--svg FILE] [--write-fpir DIR] [--multi [--store-dir DIR]]
 *
 * LETHE.jsonl is `lethe embed --json` over every LFW photo; PEER.jsonl is
 * tools/ref/pipeline.mjs over LFW (whole or in part). Every face of every
 * gallery photo is in the gallery (a store holds them all); a probe is the
 * labelled face (nearest the middle) of its photo.
 *
 * Mated searches: the first photo of each person with two or more photos,
 * against every other photo. The mate is the labelled face of another
 * photo of the person; its rank is 1 + the faces of other people (or
 * unlabelled) nearer than it. A probe photo without a face misses.
 * Non-mated searches: the photo of each person with a single photo,
 * against every photo of the people with two or more (a gallery without
 * any of them). Its score is its nearest gallery face; a probe without a
 * face returns nothing (counted as such, and reported).
 *
 * FPIR(t): share of non-mated searches returning any face at distance <= t.
 * FNIR(t): share of mated searches whose mate is not returned at rank 1
 * within t (and, in a second column, not anywhere in the first 50 within
 * t). The thresholds at FPIR 0.1, 0.01, 0.001 are the largest observed
 * that hold them. With --peer, both systems are also measured on the
 * people whose every photo the peer's file holds (if it covers only part
 * of LFW), so the comparison is like for like.
 *
 * --write-fpir DIR writes DIR/gallery.jsonl (every face of the non-mated
 * gallery, for `lethe ingest --descriptors`) and DIR/nonmated.jsonl (the
 * non-mated probes, for `lethe search --queries`), for bench/openset.sh's
 * check of `search --fpir` through the CLI. --multi also measures
 * multi-photo probes (see multi_probe), and with --store-dir DIR (a new
 * folder) the same through the library's search and fused search
 * (multi_store).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lethe.h"
#include "lfw_embed.h"

#define LIST_LEN 50

static int multi; /* --multi: also the multi-photo probes (item 3, measured only) */

typedef struct result {
    int mated, nonmated, mated_noface, nonmated_noface;
    float *mate_d;   /* per mated search: the mate's distance (INFINITY: none) */
    int *mate_rank;  /* its rank (INT32_MAX: none) */
    float *nm_d;     /* per non-mated search: the nearest gallery face (INFINITY: none) */
    size_t *nm_probe, *nm_near; /* its probe photo and the photo of that face */
    size_t gallery_mated, gallery_nonmated; /* faces in each gallery (last search) */
} result;

static int person_photos(const lfw_set *s, size_t i, size_t *first)
{
    size_t a = i, b = i;
    while (a > 0 && !strcmp(s->p[a - 1].person, s->p[i].person))
        a--;
    while (b + 1 < s->n && !strcmp(s->p[b + 1].person, s->p[i].person))
        b++;
    *first = a;
    return (int)(b - a + 1);
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

/* One mated search of photo q: the mate's distance and rank. */
static void mated_search(const lfw_set *s, const char *in, size_t q, float *md, int *mr,
                         size_t *gallery)
{
    const float *pd = s->p[q].faces[s->p[q].label].d;
    float best = INFINITY;
    size_t g = 0;
    for (size_t j = 0; j < s->n; j++) {
        const lfw_photo *p = &s->p[j];
        if (j == q || !in[j] || p->nfaces <= 0 || strcmp(p->person, s->p[q].person))
            continue;
        float d = dist(pd, p->faces[p->label].d);
        best = d < best ? d : best;
    }
    int rank = 1;
    for (size_t j = 0; j < s->n; j++) {
        const lfw_photo *p = &s->p[j];
        if (j == q || !in[j])
            continue;
        int mine = !strcmp(p->person, s->p[q].person);
        for (int f = 0; f < p->nfaces; f++, g++)
            if (!(mine && f == p->label) && dist(pd, p->faces[f].d) < best)
                rank++;
    }
    *md = best;
    *mr = isinf(best) ? INT32_MAX : rank;
    *gallery = g;
}

/* Both kinds of search over the photos in[] (1: part of the set). */
static void evaluate(const lfw_set *s, const char *in, result *r)
{
    memset(r, 0, sizeof(*r));
    r->mate_d = lfw_xalloc(s->n * sizeof(float));
    r->mate_rank = lfw_xalloc(s->n * sizeof(int));
    r->nm_d = lfw_xalloc(s->n * sizeof(float));
    r->nm_probe = lfw_xalloc(s->n * sizeof(size_t));
    r->nm_near = lfw_xalloc(s->n * sizeof(size_t));
    for (size_t i = 0; i < s->n; i++) {
        size_t first;
        int np = person_photos(s, i, &first);
        if (!in[i] || first != i)
            continue;
        int k = np > 1 ? r->mated++ : r->nonmated++;
        const lfw_photo *p = &s->p[i];
        if (np > 1 && p->label < 0) {
            r->mated_noface++;
            r->mate_d[k] = INFINITY;
            r->mate_rank[k] = INT32_MAX;
        } else if (np > 1) {
            mated_search(s, in, i, &r->mate_d[k], &r->mate_rank[k], &r->gallery_mated);
        } else if (p->label < 0) {
            r->nm_probe[k] = i;
            r->nonmated_noface++;
            r->nm_d[k] = INFINITY;
        } else {
            float best = INFINITY;
            size_t g = 0;
            for (size_t j = 0; j < s->n; j++) {
                size_t fj;
                if (!in[j] || s->p[j].nfaces <= 0 || person_photos(s, j, &fj) < 2)
                    continue;
                for (int f = 0; f < s->p[j].nfaces; f++, g++) {
                    float d = dist(p->faces[p->label].d, s->p[j].faces[f].d);
                    if (d < best) {
                        best = d;
                        r->nm_near[k] = j;
                    }
                }
            }
            r->nm_probe[k] = i;
            r->nm_d[k] = best;
            r->gallery_nonmated = g;
        }
    }
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static double fpir_at(const result *r, float t)
{
    int n = 0;
    for (int i = 0; i < r->nonmated; i++)
        n += r->nm_d[i] <= t;
    return (double)n / r->nonmated;
}

static double fnir_at(const result *r, float t, int max_rank)
{
    int miss = 0;
    for (int i = 0; i < r->mated; i++)
        miss += !(r->mate_d[i] <= t && r->mate_rank[i] <= max_rank);
    return (double)miss / r->mated;
}

static double rank_rate(const result *r, int k)
{
    int hit = 0;
    for (int i = 0; i < r->mated; i++)
        hit += r->mate_rank[i] <= k;
    return (double)hit / r->mated;
}

/* The largest observed threshold with FPIR <= target: just below the
 * (floor(target * n) + 1)-th smallest non-mated score. */
static float threshold_for(const result *r, double target)
{
    float *v = lfw_xalloc((size_t)r->nonmated * sizeof(float));
    memcpy(v, r->nm_d, (size_t)r->nonmated * sizeof(float));
    qsort(v, (size_t)r->nonmated, sizeof(float), cmp_float);
    int allowed = (int)floor(target * r->nonmated + 1e-9);
    float t = allowed < r->nonmated ? nextafterf(v[allowed], 0) : INFINITY;
    free(v);
    return t;
}

/* Non-mated probes with a gallery face nearer than any two photos of
 * different people usually are: LFW's own label noise (one person under
 * two names, or in the background of another's photo). */
static void report_near(const lfw_set *s, const result *r)
{
    printf("  non-mated probes with a gallery face nearer than 0.25 (the same person under "
           "another name, or in another's photo?):\n");
    for (int i = 0; i < r->nonmated; i++)
        if (r->nm_d[i] < 0.25f)
            printf("    %.4f %s -> %s\n", (double)r->nm_d[i], s->p[r->nm_probe[i]].path,
                   s->p[r->nm_near[i]].path);
}

static void report(const char *who, const result *r)
{
    static const double targets[] = {0.1, 0.01, 0.001};
    printf("\n%s: %d mated searches (%d without a face), %d non-mated (%d without a face); "
           "galleries of %zu and %zu faces\n", who, r->mated, r->mated_noface, r->nonmated,
           r->nonmated_noface, r->gallery_mated, r->gallery_nonmated);
    printf("  rank-1 %.2f%%, rank-10 %.2f%%\n", 100 * rank_rate(r, 1), 100 * rank_rate(r, 10));
    printf("  | FPIR target | threshold | FPIR observed | FNIR (rank 1) | FNIR (rank <= %d) |\n",
           LIST_LEN);
    for (int i = 0; i < 3; i++) {
        float t = threshold_for(r, targets[i]);
        printf("  | %g | %.4f | %.4f | %.4f | %.4f |\n", targets[i], (double)t, fpir_at(r, t),
               fnir_at(r, t, 1), fnir_at(r, t, LIST_LEN));
    }
}

/* --------------------------------------------------------------- the DET */

#define SVG_W 640
#define SVG_H 480
#define PL 70
#define PR 20
#define PT 40
#define PB 60

static double sx(double fpir) { return PL + (log10(fpir) + 3) / 3 * (SVG_W - PL - PR); }
static double sy(double fnir) { return PT + (-log10(fnir)) / 2 * (SVG_H - PT - PB); }

static void svg_axes(FILE *f)
{
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%%\" "
               "height=\"100%%\" fill=\"white\"/>\n", SVG_W, SVG_H);
    fprintf(f, "<text x=\"%d\" y=\"22\" font-size=\"14\">LFW open-set identification: DET "
               "(FNIR at rank 1 against FPIR)</text>\n", PL);
    for (int e = -3; e <= 0; e++) {
        double x = sx(pow(10, e));
        fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>"
                   "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%g</text>\n", x, PT, x,
                SVG_H - PB, x, SVG_H - PB + 16, pow(10, e));
    }
    for (int e = -2; e <= 0; e++) {
        double y = sy(pow(10, e));
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                   "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", PL, y,
                SVG_W - PR, y, PL - 6, y + 4, pow(10, e));
    }
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" "
               "stroke=\"black\"/>\n", PL, PT, SVG_W - PL - PR, SVG_H - PT - PB);
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">FPIR: share of searches for "
               "people not in the gallery that return anyone (log)</text>\n",
            (PL + SVG_W - PR) / 2, SVG_H - 20);
    fprintf(f, "<text transform=\"translate(18,%d) rotate(-90)\" text-anchor=\"middle\">FNIR: "
               "share of searches for enrolled people that miss (log)</text>\n",
            (PT + SVG_H - PB) / 2);
}

static void svg_curve(FILE *f, const result *r, const char *colour, const char *label, int row)
{
    float *v = lfw_xalloc((size_t)r->nonmated * sizeof(float));
    memcpy(v, r->nm_d, (size_t)r->nonmated * sizeof(float));
    qsort(v, (size_t)r->nonmated, sizeof(float), cmp_float);
    fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", colour);
    for (int k = 0; k < r->nonmated && !isinf(v[k]); k++) {
        double fp = (double)(k + 1) / r->nonmated, fn = fnir_at(r, v[k], 1);
        if (fp >= 1e-3 && fn >= 1e-2)
            fprintf(f, "%.1f,%.1f ", sx(fp), sy(fn));
    }
    /* the legend, bottom left, where the curves do not go */
    int ly = SVG_H - PB - 62 + 18 * row;
    fprintf(f, "\"/>\n<rect x=\"%d\" y=\"%d\" width=\"290\" height=\"18\" fill=\"white\"/>"
               "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" "
               "stroke-width=\"2\"/><text x=\"%d\" y=\"%d\">%s</text>\n", PL + 8, ly - 9,
            PL + 12, ly, PL + 36, ly, colour, PL + 42, ly + 4, label);
    free(v);
}

/* ------------------------------------------------- multi-photo probes */

/*
 * Issue 11, item 3, measured only: for each person with three or more
 * photos, probes are the labelled faces of their first two photos; the
 * gallery is every face of every other photo (theirs included). Rank of the
 * mate (the labelled face of a third or later photo) for: the first photo
 * alone; the two fused by the nearer of the two distances to each gallery
 * face ("min"); and fused by searching with the mean of the two
 * descriptors ("mean").
 */
static void multi_probe(const lfw_set *s)
{
    int people = 0, hit[3][2] = {{0}};
    for (size_t i = 0; i < s->n;) {
        size_t first;
        int np = person_photos(s, i, &first);
        const lfw_photo *a = &s->p[i], *b = &s->p[i + 1];
        if (np < 3 || a->label < 0 || b->label < 0) {
            i += (size_t)np;
            continue;
        }
        people++;
        float mean[LFW_DIM], mate[3] = {INFINITY, INFINITY, INFINITY};
        for (int k = 0; k < LFW_DIM; k++)
            mean[k] = (a->faces[a->label].d[k] + b->faces[b->label].d[k]) / 2;
        for (int pass = 0; pass < 2; pass++) { /* 0: the mate's distance, 1: rank */
            int rank[3] = {1, 1, 1};
            for (size_t j = 0; j < s->n; j++) {
                const lfw_photo *g = &s->p[j];
                if (j == i || j == i + 1)
                    continue;
                int mine = j > i + 1 && j < i + (size_t)np;
                for (int f = 0; f < g->nfaces; f++) {
                    float da = dist(a->faces[a->label].d, g->faces[f].d);
                    float db = dist(b->faces[b->label].d, g->faces[f].d);
                    float v[3] = {da, da < db ? da : db, dist(mean, g->faces[f].d)};
                    for (int m = 0; m < 3; m++) {
                        if (pass == 0 && mine && f == g->label && v[m] < mate[m])
                            mate[m] = v[m];
                        if (pass == 1 && !(mine && f == g->label) && v[m] < mate[m])
                            rank[m]++;
                    }
                }
            }
            for (int m = 0; pass == 1 && m < 3; m++) {
                hit[m][0] += rank[m] <= 1;
                hit[m][1] += rank[m] <= 10;
            }
        }
        i += (size_t)np;
    }
    static const char *const names[] = {"one photo (the first)",
                                        "two photos, the nearer distance (min)",
                                        "two photos, their mean descriptor"};
    printf("\nmulti-photo probes: %d people with three or more photos (both probes with a "
           "face), gallery every other photo:\n  | probe | rank-1 | rank-10 |\n", people);
    for (int m = 0; m < 3; m++)
        printf("  | %s | %.2f%% | %.2f%% |\n", names[m], 100.0 * hit[m][0] / people,
               100.0 * hit[m][1] / people);
}

/*
 * The same protocol through the library (--multi with --store-dir DIR): the
 * gallery (every face of every photo) is ingested into a new store at DIR
 * with lethe_ingest_descriptor, each face's photo id "INDEX:FACE"; each
 * person is searched once with the first photo alone (lethe_search) and
 * once with both probes fused (lethe_search_fused), and the rank of the
 * mate is read from the library's answer, the faces of the two probe
 * photos themselves skipped (they are not in the protocol's gallery). A
 * face whose descriptor another face already has is stored once (the
 * store knows a descriptor "photo" by its hash): counted and printed.
 */
static const char *store_dir;

static int match_face(const lethe_match *m, size_t *photo, int *face)
{
    const char *id = m->prov.photo_id;
    return id && sscanf(id, "%zu:%d", photo, face) == 2 ? 0 : -1;
}

/* The mate's rank in m[0..n) (0: not in it) and its distance, skipping
 * the probes' photos. */
static int mate_rank(const lfw_set *s, const lethe_match *m, size_t n, size_t i, int np,
                     float *d)
{
    int rank = 0;
    for (size_t k = 0; k < n; k++) {
        size_t j;
        int f;
        if (match_face(&m[k], &j, &f) < 0 || j == i || j == i + 1)
            continue;
        rank++;
        if (j > i + 1 && j < i + (size_t)np && f == s->p[j].label) {
            *d = m[k].distance;
            return rank;
        }
        if (rank >= 10)
            break;
    }
    return 0;
}

/* The nearest face in m[0..n) not of the person whose photos are
 * [i, i + np) (INFINITY: none): a non-mated search's answer. */
static float nearest_other(const lethe_match *m, size_t n, size_t i, int np)
{
    for (size_t k = 0; k < n; k++) {
        size_t j;
        int f;
        if (match_face(&m[k], &j, &f) == 0 && (j < i || j >= i + (size_t)np))
            return m[k].distance;
    }
    return INFINITY;
}

/* FNIR at FPIR p: the threshold is the largest that holds p on the
 * non-mated searches (every search whose nearest face is below it returns
 * it: those strictly below the (floor(p n) + 1)-th smallest distance); a
 * mated search misses unless its mate is first and below it. */
static double fused_fnir_at(float *nm_d, int nn, const float *mate_d, const int *rank1, int nmated,
                      double p, float *t)
{
    qsort(nm_d, (size_t)nn, sizeof(*nm_d), cmp_float);
    int k = (int)floor(p * nn);
    *t = k < nn ? nm_d[k] : INFINITY;
    int miss = 0;
    for (int q = 0; q < nmated; q++)
        miss += !(rank1[q] && mate_d[q] < *t);
    return (double)miss / nmated;
}

static void multi_store(const lfw_set *s)
{
    lethe_store *st = NULL;
    lethe_ingest *g = NULL;
    lethe_ingest_options io;
    lethe_ingest_stats stats;
    lethe_search_options o;
    int people = 0, hit[2][2] = {{0}}, failed = 0;
    if (lethe_store_open(store_dir, LETHE_STORE_CREATE, &st) != LETHE_OK) {
        fprintf(stderr, "openset: %s: %s\n", store_dir, lethe_store_errmsg(st));
        lethe_store_close(st);
        return;
    }
    lethe_ingest_options_init(&io);
    io.actor = "openset";
    if (lethe_ingest_begin(st, &io, &g) != LETHE_OK) {
        fprintf(stderr, "openset: %s\n", lethe_store_errmsg(st));
        lethe_store_close(st);
        return;
    }
    size_t line = 0;
    for (size_t j = 0; j < s->n; j++)
        for (int f = 0; f < s->p[j].nfaces; f++) {
            char id[48];
            snprintf(id, sizeof(id), "%zu:%d", j, f);
            lethe_provenance pv = {.photo_id = id, .source = "lfw", .jurisdiction = "US",
                                   .consent = "explicit"};
            if (lethe_ingest_descriptor(g, s->p[j].faces[f].d, &pv, ++line) != LETHE_OK)
                failed++;
        }
    if (lethe_ingest_end(g, &stats) != LETHE_OK || failed) {
        fprintf(stderr, "openset: ingest: %s\n", lethe_store_errmsg(st));
        lethe_store_close(st);
        return;
    }
    lethe_search_options_init(&o);
    o.purpose = "bench: openset --multi (issue 11 item 3)";
    o.actor = "openset";
    /* per mated search (person), for single [0] and fused [1] probes */
    float *mate_d[2] = {lfw_xalloc(s->n * sizeof(float)), lfw_xalloc(s->n * sizeof(float))};
    int *rank1[2] = {lfw_xalloc(s->n * sizeof(int)), lfw_xalloc(s->n * sizeof(int))};
    float *nm_d[2] = {lfw_xalloc(s->n * sizeof(float)), lfw_xalloc(s->n * sizeof(float))};
    int nonmated = 0;
    for (size_t i = 0; i < s->n;) {
        size_t first;
        int np = person_photos(s, i, &first);
        const lfw_photo *a = &s->p[i], *b = &s->p[i + 1];
        if (np < 3 || a->label < 0 || b->label < 0) {
            i += (size_t)np;
            continue;
        }
        people++;
        float probes[2][LFW_DIM];
        memcpy(probes[0], a->faces[a->label].d, sizeof(probes[0]));
        memcpy(probes[1], b->faces[b->label].d, sizeof(probes[1]));
        /* enough for 10 after the probes' own photos' faces are skipped */
        o.top_k = 10 + a->nfaces + b->nfaces;
        for (int m = 0; m < 2; m++) {
            lethe_match *r = NULL;
            size_t nr = 0;
            int rc = m ? lethe_search_fused(st, &probes[0][0], 2, &o, &r, &nr)
                       : lethe_search(st, probes[0], 1, &o, &r, &nr);
            if (rc != LETHE_OK) {
                fprintf(stderr, "openset: search: %s\n", lethe_store_errmsg(st));
                lethe_store_close(st);
                return;
            }
            float d = INFINITY;
            int rank = mate_rank(s, r, nr, i, np, &d);
            hit[m][0] += rank == 1;
            hit[m][1] += rank >= 1 && rank <= 10;
            mate_d[m][people - 1] = d;
            rank1[m][people - 1] = rank == 1;
            lethe_matches_free(r, nr);
        }
        i += (size_t)np;
    }
    /* Non-mated: each person with exactly two photos (both with a face),
     * searched the same two ways; the answer is the nearest face of
     * anyone else (their own two photos' faces skipped: the store holds
     * them, the protocol's gallery does not). */
    for (size_t i = 0; i < s->n;) {
        size_t first;
        int np = person_photos(s, i, &first);
        const lfw_photo *a = &s->p[i], *b = &s->p[i + np - 1];
        if (np != 2 || a->label < 0 || b->label < 0) {
            i += (size_t)np;
            continue;
        }
        float probes[2][LFW_DIM];
        memcpy(probes[0], a->faces[a->label].d, sizeof(probes[0]));
        memcpy(probes[1], b->faces[b->label].d, sizeof(probes[1]));
        o.top_k = 1 + a->nfaces + b->nfaces;
        for (int m = 0; m < 2; m++) {
            lethe_match *r = NULL;
            size_t nr = 0;
            int rc = m ? lethe_search_fused(st, &probes[0][0], 2, &o, &r, &nr)
                       : lethe_search(st, probes[0], 1, &o, &r, &nr);
            if (rc != LETHE_OK) {
                fprintf(stderr, "openset: search: %s\n", lethe_store_errmsg(st));
                lethe_store_close(st);
                return;
            }
            nm_d[m][nonmated] = nearest_other(r, nr, i, np);
            lethe_matches_free(r, nr);
        }
        nonmated++;
        i += (size_t)np;
    }
    lethe_store_close(st);
    printf("\nmulti-photo probes through the library (store %s: %llu faces offered, %llu "
           "stored, %llu duplicates), %d people:\n  | probe | rank-1 | rank-10 |\n",
           store_dir, (unsigned long long)line, (unsigned long long)stats.templates,
           (unsigned long long)stats.duplicates, people);
    static const char *const names[] = {"one photo (the first), lethe_search",
                                        "two photos, lethe_search_fused"};
    for (int m = 0; m < 2; m++)
        printf("  | %s | %.2f%% | %.2f%% |\n", names[m], 100.0 * hit[m][0] / people,
               100.0 * hit[m][1] / people);
    printf("open-set, the same %d mated searches and %d non-mated (people with exactly two "
           "photos, against everyone else's faces), FNIR at rank 1:\n  | probe | FNIR at FPIR "
           "0.1 | at 0.01 |\n", people, nonmated);
    for (int m = 0; m < 2; m++) {
        float t1, t2;
        double f1 = fused_fnir_at(nm_d[m], nonmated, mate_d[m], rank1[m], people, 0.1, &t1);
        double f2 = fused_fnir_at(nm_d[m], nonmated, mate_d[m], rank1[m], people, 0.01, &t2);
        printf("  | %s | %.3f (t %.4f) | %.3f (t %.4f) |\n", names[m], f1, (double)t1, f2,
               (double)t2);
    }
    for (int m = 0; m < 2; m++) {
        free(mate_d[m]);
        free(rank1[m]);
        free(nm_d[m]);
    }
}

/* ------------------------------------------------------------------ run */

/* The calibration table's threshold for this gallery against what the
 * non-mated searches show (the product's --fpir, without a store). */
static void check_calibration(const result *r)
{
    static const double targets[] = {0.1, 0.01, 0.001};
    printf("\nsearch --fpir on this gallery (%zu faces), threshold from the shipped "
           "calibration table:\n  | --fpir | threshold | FPIR observed | searches returning "
           "a face | FNIR (rank 1) |\n", r->gallery_nonmated);
    for (int i = 0; i < 3; i++) {
        float t;
        lethe_calibration_threshold(targets[i], r->gallery_nonmated, &t);
        double fp = fpir_at(r, t);
        printf("  | %g | %.4f | %.4f | %.0f of %d | %.4f |\n", targets[i], (double)t, fp,
               fp * r->nonmated, r->nonmated, fnir_at(r, t, 1));
    }
}

static void write_fpir_files(const lfw_set *s, const char *dir)
{
    char g[1200], q[1200];
    snprintf(g, sizeof(g), "%s/gallery.jsonl", dir);
    snprintf(q, sizeof(q), "%s/nonmated.jsonl", dir);
    FILE *fg = fopen(g, "w"), *fq = fopen(q, "w");
    if (!fg || !fq) {
        perror(dir);
        exit(1);
    }
    for (size_t i = 0; i < s->n; i++) {
        size_t first;
        const lfw_photo *p = &s->p[i];
        int single = person_photos(s, i, &first) == 1;
        for (int f = 0; f < p->nfaces; f++) {
            if (single && f != p->label)
                continue;
            FILE *o = single ? fq : fg;
            fprintf(o, single ? "[" : "{\"photo_id\":\"%s_%04d_%d\",\"source\":\"lfw\",\"consent\":\"explicit\","
                               "\"jurisdiction\":\"US\",\"embedding\":[", p->person,
                    p->num, f);
            for (int k = 0; k < LFW_DIM; k++)
                fprintf(o, "%s%.9g", k ? "," : "", (double)p->faces[f].d[k]);
            fprintf(o, single ? "]\n" : "]}\n");
        }
    }
    fclose(fg);
    fclose(fq);
}

static int run(const char *lfw, lfw_set *s, lfw_set *ps, const char *peer, int *perr,
               const char *svg, const char *wdir)
{
    char *all = lfw_xalloc(s->n), *cov = lfw_xalloc(s->n);
    memset(all, 1, s->n);
    result full, sub_l, sub_p;
    evaluate(s, all, &full);
    report("lethe, all of LFW", &full);
    report_near(s, &full);
    if (multi)
        multi_probe(s);
    if (multi && store_dir)
        multi_store(s);
    check_calibration(&full);
    int covered = 0;
    if (ps) {
        if (lfw_list(lfw, ps) < 0 || lfw_read_cache(peer, ps, perr, 1) < 0)
            return 1;
        /* people all of whose photos the peer's file holds */
        for (size_t i = 0; i < s->n;) {
            size_t first, np = (size_t)person_photos(ps, i, &first), ok = 1;
            for (size_t k = i; k < i + np; k++)
                ok &= ps->p[k].nfaces >= 0;
            for (size_t k = i; k < i + np; k++)
                cov[k] = (char)ok;
            covered += (int)(ok * np);
            i += np;
        }
        printf("\nface-api.js's file holds %d of %zu photos (whole people): both systems on "
               "those, same run:\n", covered, s->n);
        evaluate(s, cov, &sub_l);
        evaluate(ps, cov, &sub_p);
        report("lethe, the peer's photos", &sub_l);
        report("face-api.js pipeline, the same photos", &sub_p);
    }
    if (svg) {
        FILE *f = fopen(svg, "w");
        if (!f) {
            perror(svg);
            return 1;
        }
        svg_axes(f);
        svg_curve(f, &full, "#1f77b4", "lethe, all of LFW", 0);
        if (ps) {
            char l[160];
            snprintf(l, sizeof(l), "lethe, the %d photos face-api.js ran on", covered);
            svg_curve(f, &sub_l, "#2ca02c", l, 1);
            snprintf(l, sizeof(l), "face-api.js pipeline, the same %d photos", covered);
            svg_curve(f, &sub_p, "#d62728", l, 2);
        }
        fprintf(f, "</svg>\n");
        fclose(f);
    }
    if (wdir)
        write_fpir_files(s, wdir);
    return 0;
}

int main(int argc, char **argv)
{
    const char *lfw = "../shared/data/lfw", *emb = NULL, *peer = NULL, *svg = NULL, *wdir = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--lfw") && i + 1 < argc)
            lfw = argv[++i];
        else if (!strcmp(argv[i], "--embeddings") && i + 1 < argc)
            emb = argv[++i];
        else if (!strcmp(argv[i], "--peer") && i + 1 < argc)
            peer = argv[++i];
        else if (!strcmp(argv[i], "--svg") && i + 1 < argc)
            svg = argv[++i];
        else if (!strcmp(argv[i], "--write-fpir") && i + 1 < argc)
            wdir = argv[++i];
        else if (!strcmp(argv[i], "--multi"))
            multi = 1;
        else if (!strcmp(argv[i], "--store-dir") && i + 1 < argc)
            store_dir = argv[++i];
        else {
            fprintf(stderr, "usage: openset --embeddings FILE [--peer FILE] [--lfw DIR] "
                            "[--svg FILE] [--write-fpir DIR] [--multi [--store-dir DIR]]\n");
            return 2;
        }
    }
    if (!emb) {
        fprintf(stderr, "openset: --embeddings FILE (lethe embed --json over LFW) is required\n");
        return 2;
    }
    lfw_set s, ps;
    int errors = 0, perr = 0;
    if (lfw_list(lfw, &s) < 0 || lfw_read_cache(emb, &s, &errors, 0) < 0)
        return 1;
    if (errors) {
        fprintf(stderr, "openset: %d photo(s) missing from %s\n", errors, emb);
        return 1;
    }
    int rc = run(lfw, &s, peer ? &ps : NULL, peer, &perr, svg, wdir);
    lfw_free(&s);
    if (peer)
        lfw_free(&ps);
    return rc;
}
