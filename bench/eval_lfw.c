/*
 * eval_lfw.c: LFW verification accuracy of the whole lethe pipeline
 * (detect, landmarks, align, describe) under the LFW protocols.
 *
 *   eval_lfw [--view1 | --view2] [--align similarity|box] [--detector ssd|tiny]
 *            [--precision default|fp32|int8] [--min-score S] [--threads N]
 *            [--lfw DIR] [--json] [--grid] [--embeddings FILE] [--dump FILE]
 *
 * View 1: the threshold is chosen on pairsDevTrain and tested on
 * pairsDevTest. View 2: 10-fold cross-validation over pairs.txt, each fold
 * tested at the threshold that is best on the other nine. Every pair counts:
 * a photo in which no face is found makes its pairs errors. The
 * face nearest the middle of each photo is used (LFW labels that one).
 *
 * The threshold is chosen exactly: "same" is distance < t, t is tried at
 * every midpoint between consecutive sorted training distances, and of
 * equally good ones the smallest is taken (fewer false matches). --grid
 * searches the old fixed grid (0.30 to 0.90, steps of 0.0025) instead.
 * --embeddings FILE takes every photo's descriptor from `lethe embed --json`
 * output over LFW instead of computing it (the same descriptors: embed and
 * this program analyse a photo with the same call on one thread); --dump
 * FILE writes the descriptors used, one photo a line, to compare.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "face/align.h"
#include "lethe.h"
#include "lfw_embed.h"

typedef struct photo {
    char path[512];
    float desc[LETHE_DESCRIPTOR_DIM];
    int ok;
    lethe_image *img;        /* --tune: kept decoded */
    float landmarks[68][2];  /* --tune: of the best face */
} photo;

static int tune;
static const char *embeddings, *dump;

typedef struct pair {
    int a, b, same, fold;
} pair;

static photo *photos;
static int nphotos, cap_photos;
static pair *pairs;
static int npairs, cap_pairs;
static const char *lfw = "../shared/data/lfw";

static int photo_index(const char *name, int num)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/images/%s/%s_%04d.jpg", lfw, name, name, num);
    for (int i = nphotos - 1; i >= 0 && i >= nphotos - 4000; i--)
        if (!strcmp(photos[i].path, path))
            return i;
    for (int i = 0; i < nphotos; i++)
        if (!strcmp(photos[i].path, path))
            return i;
    if (nphotos == cap_photos) {
        cap_photos = cap_photos ? cap_photos * 2 : 1024;
        photos = realloc(photos, (size_t)cap_photos * sizeof(*photos));
    }
    memset(&photos[nphotos], 0, sizeof(photo));
    snprintf(photos[nphotos].path, sizeof(photos[nphotos].path), "%s", path);
    return nphotos++;
}

static void add_pair(int a, int b, int same, int fold)
{
    if (npairs == cap_pairs) {
        cap_pairs = cap_pairs ? cap_pairs * 2 : 1024;
        pairs = realloc(pairs, (size_t)cap_pairs * sizeof(*pairs));
    }
    pairs[npairs++] = (pair){a, b, same, fold};
}

/* Read a pairs file; lines of 3 fields are same-person pairs, 4 different. */
static int read_pairs(const char *file, int fold_size, int fold_base, int has_header)
{
    char line[512], n1[200], n2[200];
    int i1, i2, k = 0;
    FILE *f = fopen(file, "r");
    if (!f) {
        perror(file);
        return 0;
    }
    if (has_header && !fgets(line, sizeof(line), f)) {
        fclose(f);
        return 0;
    }
    while (fgets(line, sizeof(line), f)) {
        int fold = fold_size ? fold_base + k / fold_size : fold_base;
        if (sscanf(line, "%199s %d %199s %d", n1, &i1, n2, &i2) == 4) {
            add_pair(photo_index(n1, i1), photo_index(n2, i2), 0, fold);
            k++;
        } else if (sscanf(line, "%199s %d %d", n1, &i1, &i2) == 3) {
            add_pair(photo_index(n1, i1), photo_index(n1, i2), 1, fold);
            k++;
        }
    }
    fclose(f);
    return k;
}

typedef struct job {
    lethe_engine *e;
    int next, done;
    pthread_mutex_t lock;
} job;

static void *work(void *arg)
{
    job *j = arg;
    for (;;) {
        pthread_mutex_lock(&j->lock);
        int i = j->next < nphotos ? j->next++ : -1;
        pthread_mutex_unlock(&j->lock);
        if (i < 0)
            return NULL;
        lethe_image *img = NULL;
        lethe_face *faces = NULL;
        int n = 0;
        char msg[256];
        unsigned want = tune ? LETHE_WANT_LANDMARKS : LETHE_WANT_DESCRIPTOR;
        if (lethe_image_load(photos[i].path, NULL, &img, msg, sizeof(msg)) == LETHE_OK &&
            lethe_engine_analyze(j->e, img, want | LETHE_SINGLE_THREAD, &faces, &n) ==
                LETHE_OK &&
            n > 0) {
            /* LFW labels the face in the middle of the photo */
            int best = 0;
            float best_d = 1e30f;
            for (int k = 0; k < n; k++) {
                float dx = faces[k].box[0] + faces[k].box[2] / 2 - img->width / 2.0f;
                float dy = faces[k].box[1] + faces[k].box[3] / 2 - img->height / 2.0f;
                if (dx * dx + dy * dy < best_d) {
                    best_d = dx * dx + dy * dy;
                    best = k;
                }
            }
            memcpy(photos[i].desc, faces[best].descriptor, sizeof(photos[i].desc));
            memcpy(photos[i].landmarks, faces[best].landmarks, sizeof(photos[i].landmarks));
            photos[i].ok = 1;
        }
        lethe_faces_free(faces);
        if (tune)
            photos[i].img = img;
        else
            lethe_image_free(img);
        pthread_mutex_lock(&j->lock);
        j->done++;
        if (j->done % 500 == 0)
            fprintf(stderr, "\r%d/%d photos", j->done, nphotos);
        pthread_mutex_unlock(&j->lock);
    }
}

static float pair_dist(const pair *p)
{
    if (!photos[p->a].ok || !photos[p->b].ok)
        return -1;
    return lethe_descriptor_distance(photos[p->a].desc, photos[p->b].desc);
}

/* Correct decisions among pairs in folds selected by mask at threshold t. */
static int correct_at(double t, int fold, int include)
{
    int c = 0;
    for (int i = 0; i < npairs; i++) {
        if ((pairs[i].fold == fold) != include)
            continue;
        float d = pair_dist(&pairs[i]);
        if (d < 0)
            continue; /* no face: an error whatever the threshold */
        if ((d < t) == pairs[i].same)
            c++;
    }
    return c;
}

/* --grid: the old search, a fixed grid of thresholds 0.0025 apart */
static int grid;

typedef struct scored {
    float d;
    int same;
} scored;

static int cmp_scored(const void *a, const void *b)
{
    float x = ((const scored *)a)->d, y = ((const scored *)b)->d;
    return (x > y) - (x < y);
}

/*
 * The threshold best on the pairs outside fold: "same" is d < t, and t is
 * chosen exactly among every midpoint between consecutive distinct sorted
 * distances (and one below the smallest, one above the largest); of equally
 * good ones, the smallest. Pairs with a photo without a face are errors
 * whatever the threshold, so they do not move it.
 */
static double best_threshold(int fold)
{
    if (grid) {
        float best_t = 0.6f;
        int best = -1;
        for (float t = 0.30f; t <= 0.90f; t += 0.0025f) {
            int c = correct_at(t, fold, 0);
            if (c > best) {
                best = c;
                best_t = t;
            }
        }
        return best_t;
    }
    scored *v = malloc((size_t)npairs * sizeof(*v));
    int n = 0, diff = 0;
    for (int i = 0; i < npairs; i++) {
        float d = pair_dist(&pairs[i]);
        if (pairs[i].fold == fold || d < 0)
            continue;
        v[n++] = (scored){d, pairs[i].same};
        diff += !pairs[i].same;
    }
    qsort(v, (size_t)n, sizeof(*v), cmp_scored);
    /* below every distance: all "different" pairs right, no "same" pair */
    int c = diff, best = c;
    double best_t = n ? v[0].d / 2.0 : 0.6;
    for (int i = 0; i < n; i++) {
        c += v[i].same ? 1 : -1; /* t now above v[i] */
        if (i + 1 < n && v[i + 1].d == v[i].d)
            continue;
        if (c > best) {
            best = c;
            best_t = i + 1 < n ? ((double)v[i].d + v[i + 1].d) / 2 : v[i].d + 0.01;
        }
    }
    free(v);
    return best_t;
}

/* Mean accuracy over the test folds (View 1: DevTest; View 2: all ten). */
static double accuracy_mean(int view, float *t_mean);

/* Accuracy on fold at the threshold best on the other folds. */
static double accuracy_at_best(int fold, float *t_out)
{
    double t = best_threshold(fold);
    int in_fold = 0;
    for (int i = 0; i < npairs; i++)
        in_fold += pairs[i].fold == fold;
    *t_out = (float)t;
    return (double)correct_at(t, fold, 1) / (in_fold ? in_fold : 1);
}

/*
 * --tune: with every photo's landmarks found once, try chip placements
 * (padding, vertical shift) and print each one's accuracy: the threshold
 * chosen on the training pairs, the accuracy on the test pairs.
 */
static void tune_alignment(lethe_engine *e, int view)
{
    static const float paddings[] = {0.25f, 0.30f};
    static const float shifts[] = {-0.03f, 0.0f};
    lethe_image **chips = calloc((size_t)nphotos, sizeof(*chips));
    float *desc = malloc((size_t)nphotos * LETHE_DESCRIPTOR_DIM * sizeof(float));
    uint8_t *px = malloc(ALIGN_CHIP_SIZE * ALIGN_CHIP_SIZE * 3);

    for (size_t pi = 0; pi < sizeof(paddings) / sizeof(paddings[0]); pi++) {
        for (size_t si = 0; si < sizeof(shifts) / sizeof(shifts[0]); si++) {
            int n = 0;
            for (int i = 0; i < nphotos; i++) {
                double m[4];
                if (!photos[i].ok)
                    continue;
                align_chip_transform((const float(*)[2])photos[i].landmarks, ALIGN_CHIP_SIZE,
                                     paddings[pi], shifts[si], m);
                align_extract_chip(photos[i].img->rgb, photos[i].img->width,
                                   photos[i].img->height, m, ALIGN_CHIP_SIZE, px);
                lethe_image_from_rgb(px, ALIGN_CHIP_SIZE, ALIGN_CHIP_SIZE, &chips[n++]);
            }
            lethe_engine_describe_chips(e, (const lethe_image *const *)chips, n, desc);
            for (int i = 0, k = 0; i < nphotos; i++) {
                if (!photos[i].ok)
                    continue;
                memcpy(photos[i].desc, desc + (size_t)k * LETHE_DESCRIPTOR_DIM,
                       sizeof(photos[i].desc));
                k++;
            }
            float t;
            double acc = accuracy_mean(view, &t);
            printf("padding %.2f shift %+.2f: %s accuracy %.2f%% at threshold %.4f\n",
                   (double)paddings[pi], (double)shifts[si], view == 1 ? "DevTest" : "10-fold",
                   100 * acc, (double)t);
            /* the same with each chip's mirror image averaged in */
            for (int k = 0; k < n; k++) {
                lethe_image *c = chips[k];
                for (int y = 0; y < c->height; y++)
                    for (int x = 0; x < c->width / 2; x++)
                        for (int ch = 0; ch < 3; ch++) {
                            uint8_t *a = c->rgb + ((size_t)y * c->width + x) * 3 + ch;
                            uint8_t *b = c->rgb + ((size_t)y * c->width + c->width - 1 - x) * 3 + ch;
                            uint8_t tmp = *a;
                            *a = *b;
                            *b = tmp;
                        }
            }
            lethe_engine_describe_chips(e, (const lethe_image *const *)chips, n, desc);
            for (int i = 0, k = 0; i < nphotos; i++) {
                if (!photos[i].ok)
                    continue;
                for (int d = 0; d < LETHE_DESCRIPTOR_DIM; d++)
                    photos[i].desc[d] = 0.5f * (photos[i].desc[d] + desc[(size_t)k * LETHE_DESCRIPTOR_DIM + d]);
                lethe_image_free(chips[k++]);
            }
            acc = accuracy_mean(view, &t);
            printf("padding %.2f shift %+.2f with mirror: %s accuracy %.2f%% at threshold %.4f\n",
                   (double)paddings[pi], (double)shifts[si], view == 1 ? "DevTest" : "10-fold",
                   100 * acc, (double)t);
            fflush(stdout);
        }
    }
    free(px);
    free(desc);
    free(chips);
}

static double accuracy_mean(int view, float *t_mean)
{
    int folds = view == 1 ? 1 : 10;
    double acc = 0, ts = 0;
    for (int f = 0; f < folds; f++) {
        float t;
        acc += accuracy_at_best(f, &t);
        ts += t;
    }
    *t_mean = (float)(ts / folds);
    return acc / folds;
}

/* --embeddings: every photo's descriptor from `lethe embed --json` output
 * (the face nearest the middle, as work() picks it). */
static int load_embeddings(void)
{
    lfw_set s;
    int errors = 0;
    if (lfw_list(lfw, &s) < 0 || lfw_read_cache(embeddings, &s, &errors, 1) < 0)
        return -1;
    for (int i = 0; i < nphotos; i++) {
        char person[128];
        int num;
        lfw_photo *p = lfw_parse_name(photos[i].path, person, sizeof(person), &num) == 0
                           ? lfw_find(&s, person, num)
                           : NULL;
        if (!p || p->nfaces < 0) {
            fprintf(stderr, "eval_lfw: %s: not in %s\n", photos[i].path, embeddings);
            lfw_free(&s);
            return -1;
        }
        photos[i].ok = p->label >= 0;
        if (photos[i].ok)
            memcpy(photos[i].desc, p->faces[p->label].d, sizeof(photos[i].desc));
    }
    lfw_free(&s);
    return 0;
}

/* --dump: the descriptors used, one photo a line ("-" without a face). */
static void dump_descriptors(void)
{
    FILE *f = fopen(dump, "w");
    for (int i = 0; f && i < nphotos; i++) {
        fprintf(f, "%s", photos[i].path);
        for (int k = 0; photos[i].ok && k < LETHE_DESCRIPTOR_DIM; k++)
            fprintf(f, " %.9g", (double)photos[i].desc[k]);
        fprintf(f, photos[i].ok ? "\n" : " -\n");
    }
    if (f)
        fclose(f);
}

int main(int argc, char **argv)
{
    lethe_engine_options o;
    int view = 1, json = 0;
    lethe_engine_options_init(&o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(a, "--view1"))
            view = 1;
        else if (!strcmp(a, "--view2"))
            view = 2;
        else if (!strcmp(a, "--json"))
            json = 1;
        else if (!strcmp(a, "--tune"))
            tune = 1;
        else if (!strcmp(a, "--grid"))
            grid = 1;
        else if (!strcmp(a, "--embeddings") && ++i)
            embeddings = v;
        else if (!strcmp(a, "--dump") && ++i)
            dump = v;
        else if (!strcmp(a, "--align") && ++i)
            o.align = !strcmp(v, "box") ? LETHE_ALIGN_BOX : LETHE_ALIGN_SIMILARITY;
        else if (!strcmp(a, "--precision") && ++i)
            o.precision = !strcmp(v, "fp32")   ? LETHE_PRECISION_FP32
                          : !strcmp(v, "int8") ? LETHE_PRECISION_INT8
                                               : LETHE_PRECISION_DEFAULT;
        else if (!strcmp(a, "--detector") && ++i)
            o.detector = !strcmp(v, "tiny") ? LETHE_DETECTOR_TINY : LETHE_DETECTOR_SSD;
        else if (!strcmp(a, "--min-score") && ++i)
            o.min_score = (float)atof(v);
        else if (!strcmp(a, "--threads") && ++i)
            o.threads = atoi(v);
        else if (!strcmp(a, "--lfw") && ++i)
            lfw = v;
        else {
            fprintf(stderr, "usage: eval_lfw [--view1|--view2] [--align similarity|box] "
                            "[--detector ssd|tiny] [--precision default|fp32|int8] "
                            "[--min-score S] [--threads N] [--lfw DIR] [--json] [--grid]\n"
                            "       [--embeddings LETHE_EMBED.jsonl] [--dump FILE]\n");
            return 2;
        }
    }
    char file[600];
    if (view == 1) {
        snprintf(file, sizeof(file), "%s/pairsDevTrain.txt", lfw);
        if (!read_pairs(file, 0, 1, 0))
            return 1;
        snprintf(file, sizeof(file), "%s/pairsDevTest.txt", lfw);
        if (!read_pairs(file, 0, 0, 0))
            return 1;
    } else {
        snprintf(file, sizeof(file), "%s/pairs.txt", lfw);
        if (!read_pairs(file, 600, 0, 1))
            return 1;
    }
    lethe_engine *e = NULL;
    if (embeddings && !tune) {
        if (load_embeddings() < 0)
            return 1;
    } else if (lethe_engine_open(&e, &o) != LETHE_OK) {
        fprintf(stderr, "eval_lfw: %s\n", lethe_engine_errmsg(e));
        return 1;
    }
    /* --tune with EVAL_LFW_CACHE: landmarks found once, kept in a file */
    const char *cache = tune ? getenv("EVAL_LFW_CACHE") : NULL;
    FILE *cf = cache ? fopen(cache, "rb") : NULL;
    int cached = 0;
    if (cf) {
        int n = 0;
        cached = fread(&n, sizeof(n), 1, cf) == 1 && n == nphotos;
        for (int i = 0; cached && i < nphotos; i++) {
            cached = fread(&photos[i].ok, sizeof(int), 1, cf) == 1 &&
                     fread(photos[i].landmarks, sizeof(photos[i].landmarks), 1, cf) == 1;
            if (cached && photos[i].ok)
                cached = lethe_image_load(photos[i].path, NULL, &photos[i].img, NULL, 0) == 0;
        }
        fclose(cf);
    }
    if (!cached && !embeddings) {
        job j = {e, 0, 0, PTHREAD_MUTEX_INITIALIZER};
        int nt = lethe_engine_threads(e);
        pthread_t th[64];
        for (int t = 0; t < nt && t < 64; t++)
            pthread_create(&th[t], NULL, work, &j);
        for (int t = 0; t < nt && t < 64; t++)
            pthread_join(th[t], NULL);
        fprintf(stderr, "\n");
        cf = cache ? fopen(cache, "wb") : NULL;
        if (cf) {
            fwrite(&nphotos, sizeof(nphotos), 1, cf);
            for (int i = 0; i < nphotos; i++) {
                fwrite(&photos[i].ok, sizeof(int), 1, cf);
                fwrite(photos[i].landmarks, sizeof(photos[i].landmarks), 1, cf);
            }
            fclose(cf);
        }
    }
    if (tune)
        tune_alignment(e, view);
    lethe_engine_close(e);
    if (dump)
        dump_descriptors();

    int noface = 0, pairs_missing = 0;
    const char *missing_file = getenv("EVAL_LFW_MISSING");
    FILE *mf = missing_file ? fopen(missing_file, "w") : NULL;
    for (int i = 0; i < nphotos; i++) {
        noface += !photos[i].ok;
        if (mf && !photos[i].ok)
            fprintf(mf, "%s\n", photos[i].path);
    }
    if (mf)
        fclose(mf);
    for (int i = 0; i < npairs; i++)
        pairs_missing += pair_dist(&pairs[i]) < 0;

    const char *errors_file = getenv("EVAL_LFW_ERRORS");
    if (errors_file) {
        FILE *ef = fopen(errors_file, "w");
        double t0 = best_threshold(0);
        for (int i = 0; ef && i < npairs; i++) {
            float d = pair_dist(&pairs[i]);
            if (d < 0 || (d < t0) != pairs[i].same)
                fprintf(ef, "%s %.4f %s %s\n", pairs[i].same ? "same" : "diff", (double)d,
                        photos[pairs[i].a].path, photos[pairs[i].b].path);
        }
        if (ef)
            fclose(ef);
    }
    double acc_sum = 0, acc_sq = 0, t_sum = 0, acc_min = 1, acc_max = 0;
    int folds = view == 1 ? 1 : 10;
    for (int f = 0; f < folds; f++) {
        float t;
        double acc = accuracy_at_best(f, &t);
        acc_min = acc < acc_min ? acc : acc_min;
        acc_max = acc > acc_max ? acc : acc_max;
        if (view == 2 && !json)
            printf("fold %d: %.2f%% at threshold %.6f\n", f + 1, 100 * acc, (double)t);
        acc_sum += acc;
        acc_sq += acc * acc;
        t_sum += t;
    }
    double mean = acc_sum / folds, sd = folds > 1 ? sqrt(acc_sq / folds - mean * mean) : 0;
    /* accuracy over the pairs where both faces were found, at the mean threshold */
    float tm = (float)(t_sum / folds);
    int c_found = 0, n_found = 0;
    for (int i = 0; i < npairs; i++) {
        float d = pair_dist(&pairs[i]);
        if (d < 0)
            continue;
        n_found++;
        c_found += (d < tm) == pairs[i].same;
    }
    if (json)
        printf("{\"view\":%d,\"pairs\":%d,\"photos\":%d,\"no_face\":%d,\"pairs_missing\":%d,"
               "\"accuracy\":%.5f,\"sd\":%.5f,\"min\":%.5f,\"max\":%.5f,\"threshold\":%.4f,"
               "\"accuracy_found\":%.5f}\n",
               view, npairs, nphotos, noface, pairs_missing, mean, sd, acc_min, acc_max, tm,
               (double)c_found / (n_found ? n_found : 1));
    else
        printf("LFW view %d: %d pairs, %d photos, no face in %d (%d pairs lost)\n"
               "accuracy %.2f%% +- %.2f (all pairs; folds %.2f%% to %.2f%%), threshold %.4f; "
               "%.2f%% on pairs with both faces\n",
               view, npairs, nphotos, noface, pairs_missing, 100 * mean, 100 * sd,
               100 * acc_min, 100 * acc_max, tm,
               100.0 * c_found / (n_found ? n_found : 1));
    for (int i = 0; i < nphotos; i++)
        lethe_image_free(photos[i].img);
    free(photos);
    free(pairs);
    return 0;
}
