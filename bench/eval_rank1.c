/*
 * eval_rank1.c: LFW 1:N identification through the store.
 *
 *   eval_rank1 --store DIR [--lfw DIR] [--peer FILE] [--threads N] [--json]
 *
 * The store must hold LFW's 13,233 photos, ingested with their paths (see
 * bench/rank1.sh, which builds it through a manifest). For every person with
 * two or more photos, the face nearest the middle of their first photo
 * (LFW labels that one) is searched with lethe_search; the query photo's
 * own faces are skipped in the results, so the gallery is every other
 * photo, background faces included. Rank-1: the nearest remaining face is
 * in a photo of the same person. A query photo without a face counts as a
 * miss.
 *
 * --peer FILE: the same protocol on face-api.js's own pipeline output
 * (tools/ref/pipeline.mjs JSON Lines over the same photos), searched by
 * brute force, for the comparison. --gallery-from-peer restricts both sides
 * to the photos the peer's file covers (people all of whose photos it has):
 * a like-for-like comparison when the peer ran on part of LFW only.
 */
#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lethe.h"
#include "lfw_embed.h"

typedef struct person {
    char name[128];
    char first[1600];  /* path of the first photo */
} person;

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The file name of a pipeline.mjs line's "image" (cut out of line, which
 * is modified), or NULL; *rest points past it. */
static const char *image_name(char *line, const char **rest)
{
    char *im = strstr(line, "\"image\":\"");
    if (!im)
        return NULL;
    im += 9;
    char *q = strchr(im, '"');
    if (!q)
        return NULL;
    *q = 0;
    *rest = q + 1;
    const char *slash = strrchr(im, '/');
    return slash ? slash + 1 : im;
}

/* --gallery-from-peer: only the photos the peer's file covers (by name) */
static char **subset;
static size_t nsubset;

static void load_subset(const char *file)
{
    FILE *f = fopen(file, "r");
    char *line = NULL;
    size_t cap = 0, capn = 0;
    if (!f)
        return;
    while (getline(&line, &cap, f) >= 0) {
        const char *rest, *name = image_name(line, &rest);
        if (!name)
            continue;
        if (nsubset == capn) {
            capn = capn ? capn * 2 : 1024;
            subset = realloc(subset, capn * sizeof(*subset));
        }
        subset[nsubset++] = strdup(name);
    }
    free(line);
    fclose(f);
    qsort(subset, nsubset, sizeof(*subset), cmp_str);
}

static int in_subset(const char *path)
{
    if (!subset)
        return 1;
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    return bsearch(&b, subset, nsubset, sizeof(*subset), cmp_str) != NULL;
}

/* query descriptors, computed in parallel */
typedef struct qjob {
    lethe_engine *e;
    person *p;
    float *desc;
    int *ok;
    int n, next;
    pthread_mutex_t mu;
} qjob;

static int nearest_middle(const lethe_face *f, int n, int w, int h)
{
    int best = -1;
    double bd = 1e30;
    for (int i = 0; i < n; i++) {
        double cx = f[i].box[0] + f[i].box[2] / 2 - w / 2.0, cy = f[i].box[1] + f[i].box[3] / 2 - h / 2.0;
        if (cx * cx + cy * cy < bd) {
            bd = cx * cx + cy * cy;
            best = i;
        }
    }
    return best;
}

static void *qworker(void *arg)
{
    qjob *q = arg;
    for (;;) {
        pthread_mutex_lock(&q->mu);
        int i = q->next < q->n ? q->next++ : -1;
        pthread_mutex_unlock(&q->mu);
        if (i < 0)
            return NULL;
        lethe_image *img = NULL;
        lethe_face *f = NULL;
        int nf = 0;
        char msg[256];
        if (lethe_image_load(q->p[i].first, NULL, &img, msg, sizeof(msg)) != LETHE_OK)
            continue;
        if (lethe_engine_analyze(q->e, img, LETHE_WANT_DESCRIPTOR | LETHE_SINGLE_THREAD, &f, &nf) ==
                LETHE_OK && nf > 0) {
            int b = nearest_middle(f, nf, img->orig_width, img->orig_height);
            memcpy(q->desc + (size_t)i * 128, f[b].descriptor, 128 * sizeof(float));
            q->ok[i] = 1;
        }
        lethe_faces_free(f);
        lethe_image_free(img);
    }
}

/* LFW labels one face per photo, the one in the middle (the photos are
 * 250x250, deep-funneled around it); other faces are of unknown identity.
 * A face counts as the labelled one when its centre is near the middle. */
static int labelled(const float *box)
{
    float cx = box[0] + box[2] / 2, cy = box[1] + box[3] / 2;
    return fabsf(cx - 125) < 40 && fabsf(cy - 125) < 40;
}

/* ------------------------------------------------------------- the peer */

typedef struct pface {
    int photo;       /* index into peer photo names */
    float d[128];
    float box[4];
} pface;

/* .../images/NAME/NAME_0001.jpg -> NAME ("" when it is not such a name) */
static const char *base_person(const char *path, char *out, size_t n)
{
    int num;
    if (lfw_parse_name(path, out, n, &num) < 0)
        out[0] = 0;
    return out;
}

static void peer_eval(const char *file, person *ps, int np, int *hit, int *hit_l, int *noface)
{
    FILE *f = fopen(file, "r");
    char *line = NULL;
    size_t cap = 0, nf = 0, capf = 0, nphotos = 0, capph = 0;
    pface *faces = NULL;
    char **names = NULL;
    *hit = *hit_l = *noface = 0;
    if (!f) {
        perror(file);
        return;
    }
    while (getline(&line, &cap, f) >= 0) {
        const char *p, *name = image_name(line, &p);
        if (!name)
            continue;
        if (nphotos == capph) {
            capph = capph ? capph * 2 : 1024;
            names = realloc(names, capph * sizeof(*names));
        }
        names[nphotos] = strdup(name);
        while ((p = strstr(p, "\"box\":"))) {
            pface pf;
            p += 6;
            if (lfw_floats(&p, pf.box, 4) < 0)
                break;
            const char *d = strstr(p, "\"descriptor\":");
            if (!d)
                break;
            d += 13;
            if (lfw_floats(&d, pf.d, 128) < 0)
                break;
            pf.photo = (int)nphotos;
            if (nf == capf) {
                capf = capf ? capf * 2 : 4096;
                faces = realloc(faces, capf * sizeof(*faces));
            }
            faces[nf++] = pf;
            p = d;
        }
        nphotos++;
    }
    free(line);
    fclose(f);
    fprintf(stderr, "peer: %zu photos, %zu faces\n", nphotos, nf);
    for (int i = 0; i < np; i++) {
        const char *qs = strrchr(ps[i].first, '/');
        qs = qs ? qs + 1 : ps[i].first;
        int qp = -1;
        for (size_t k = 0; k < nphotos; k++)
            if (!strcmp(names[k], qs)) {
                qp = (int)k;
                break;
            }
        /* the face nearest the middle of the (250x250) query photo */
        int best = -1;
        double bd = 1e30;
        for (size_t k = 0; k < nf && qp >= 0; k++) {
            if (faces[k].photo != qp)
                continue;
            double cx = faces[k].box[0] + faces[k].box[2] / 2 - 125,
                   cy = faces[k].box[1] + faces[k].box[3] / 2 - 125;
            if (cx * cx + cy * cy < bd) {
                bd = cx * cx + cy * cy;
                best = (int)k;
            }
        }
        if (best < 0) {
            (*noface)++;
            continue;
        }
        double bdist = 1e30, bdist_l = 1e30;
        int bi = -1, bi_l = -1;
        for (size_t k = 0; k < nf; k++) {
            if (faces[k].photo == qp)
                continue;
            double s = 0;
            for (int c = 0; c < 128; c++) {
                double t = faces[k].d[c] - faces[best].d[c];
                s += t * t;
            }
            if (s < bdist) {
                bdist = s;
                bi = (int)k;
            }
            if (s < bdist_l && labelled(faces[k].box)) {
                bdist_l = s;
                bi_l = (int)k;
            }
        }
        char a[128];
        if (bi >= 0 && !strcmp(base_person(names[faces[bi].photo], a, sizeof(a)), ps[i].name))
            (*hit)++;
        if (bi_l >= 0 && !strcmp(base_person(names[faces[bi_l].photo], a, sizeof(a)), ps[i].name))
            (*hit_l)++;
    }
    for (size_t k = 0; k < nphotos; k++)
        free(names[k]);
    free(names);
    free(faces);
}

int main(int argc, char **argv)
{
    const char *store_dir = NULL, *lfw = "../shared/data/lfw", *peer = NULL;
    int threads = 0, json = 0, from_peer = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--store") && i + 1 < argc)
            store_dir = argv[++i];
        else if (!strcmp(argv[i], "--lfw") && i + 1 < argc)
            lfw = argv[++i];
        else if (!strcmp(argv[i], "--peer") && i + 1 < argc)
            peer = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (!strcmp(argv[i], "--gallery-from-peer"))
            from_peer = 1;
        else {
            fprintf(stderr, "usage: eval_rank1 --store DIR [--lfw DIR] [--peer FILE] "
                            "[--threads N] [--json]\n");
            return 2;
        }
    }
    if (!store_dir) {
        fprintf(stderr, "eval_rank1: --store DIR is required\n");
        return 2;
    }
    if (from_peer && peer)
        load_subset(peer);
    else if (from_peer) {
        fprintf(stderr, "eval_rank1: --gallery-from-peer needs --peer FILE\n");
        return 2;
    }
    char images[1024];
    char *lfw_abs = realpath(lfw, NULL); /* the store keeps absolute paths */
    if (!lfw_abs) {
        fprintf(stderr, "eval_rank1: %s: not found\n", lfw);
        return 1;
    }
    snprintf(images, sizeof(images), "%s/images", lfw_abs);
    free(lfw_abs);
    size_t ndirs;
    char **dirs = lfw_list_dir(images, &ndirs);
    if (!dirs) {
        fprintf(stderr, "eval_rank1: %s: cannot list\n", images);
        return 1;
    }
    person *ps = calloc(ndirs, sizeof(*ps));
    int np = 0;
    for (size_t i = 0; i < ndirs; i++) {
        char d[1200];
        size_t nfiles;
        snprintf(d, sizeof(d), "%s/%s", images, dirs[i]);
        char **files = lfw_list_dir(d, &nfiles);
        int covered = 1;
        for (size_t k = 0; k < nfiles; k++)
            covered &= in_subset(files[k]);
        if (nfiles >= 2 && covered) {
            snprintf(ps[np].name, sizeof(ps[np].name), "%s", dirs[i]);
            snprintf(ps[np].first, sizeof(ps[np].first), "%s/%s", d, files[0]);
            np++;
        }
        for (size_t k = 0; k < nfiles; k++)
            free(files[k]);
        free(files);
        free(dirs[i]);
    }
    free(dirs);
    fprintf(stderr, "eval_rank1: %d people with two or more photos\n", np);

    lethe_engine_options eo;
    lethe_engine *e = NULL;
    lethe_engine_options_init(&eo);
    eo.threads = threads;
    if (lethe_engine_open(&e, &eo) != LETHE_OK) {
        fprintf(stderr, "eval_rank1: %s\n", lethe_engine_errmsg(e));
        return 1;
    }
    qjob q = {.e = e, .p = ps, .n = np};
    q.desc = calloc((size_t)np * 128, sizeof(float));
    q.ok = calloc((size_t)np, sizeof(int));
    pthread_mutex_init(&q.mu, NULL);
    int nt = lethe_engine_threads(e);
    pthread_t th[64];
    for (int t = 0; t < nt && t < 64; t++)
        pthread_create(&th[t], NULL, qworker, &q);
    for (int t = 0; t < nt && t < 64; t++)
        pthread_join(th[t], NULL);
    lethe_engine_close(e);

    lethe_store *s = NULL;
    if (lethe_store_open(store_dir, 0, &s) != LETHE_OK) {
        fprintf(stderr, "eval_rank1: %s\n", lethe_store_errmsg(s));
        return 1;
    }
    /* pack the queries that have a face */
    float *qd = calloc((size_t)np * 128, sizeof(float));
    int *map = calloc((size_t)np, sizeof(int)), nq = 0, noface = 0;
    for (int i = 0; i < np; i++) {
        if (!q.ok[i]) {
            noface++;
            continue;
        }
        memcpy(qd + (size_t)nq * 128, q.desc + (size_t)i * 128, 128 * sizeof(float));
        map[nq++] = i;
    }
    lethe_search_options so;
    lethe_search_options_init(&so);
    so.purpose = "evaluation: LFW rank-1 identification";
    so.actor = "eval_rank1";
    so.top_k = subset ? 400 : 20;
    lethe_match *m = NULL;
    size_t nm = 0;
    if (lethe_search(s, qd, nq, &so, &m, &nm) != LETHE_OK) {
        fprintf(stderr, "eval_rank1: %s\n", lethe_store_errmsg(s));
        return 1;
    }
    int hit = 0, hit_l = 0;
    size_t at = 0;
    for (int k = 0; k < nq; k++) {
        person *p = &ps[map[k]];
        int decided = 0, decided_l = 0;
        char want[160];
        snprintf(want, sizeof(want), "/%s/", p->name);
        for (; at < nm && m[at].query == k; at++) {
            /* skip the query photo's own faces, and photos outside the gallery */
            if (m[at].prov.path && !strcmp(m[at].prov.path, p->first))
                continue;
            if (m[at].prov.path && !in_subset(m[at].prov.path))
                continue;
            int same = m[at].prov.path && strstr(m[at].prov.path, want);
            if (!decided) {
                hit += same;
                decided = 1;
            }
            if (!decided_l && labelled(m[at].box)) {
                hit_l += same;
                decided_l = 1;
            }
        }
    }
    lethe_matches_free(m, nm);
    lethe_store_close(s);

    int peer_hit = 0, peer_hit_l = 0, peer_noface = 0;
    if (peer)
        peer_eval(peer, ps, np, &peer_hit, &peer_hit_l, &peer_noface);
    double r = 100.0 * hit / np, pr = 100.0 * peer_hit / np;
    double rl = 100.0 * hit_l / np, prl = 100.0 * peer_hit_l / np;
    if (json) {
        printf("{\"people\":%d,\"lethe_rank1\":%.2f,\"lethe_rank1_all_faces\":%.2f,"
               "\"lethe_no_face\":%d", np, rl, r, noface);
        if (peer)
            printf(",\"peer_rank1\":%.2f,\"peer_rank1_all_faces\":%.2f,\"peer_no_face\":%d",
                   prl, pr, peer_noface);
        printf("}\n");
    } else {
        printf("LFW rank-1 identification, %d queries (first photo of each person with 2+),\n"
               "gallery: every other photo. Labelled faces: the nearest face that is the\n"
               "labelled (middle) face of its photo; all faces: the nearest face of any kind,\n"
               "so a famous person in the background of another person's photo is an error.\n",
               np);
        printf("  %-30s %14s %10s %s\n", "", "labelled faces", "all faces", "queries without a face");
        printf("  %-30s %13.2f%% %9.2f%% %d\n", "lethe (store search)", rl, r, noface);
        if (peer)
            printf("  %-30s %13.2f%% %9.2f%% %d\n", "face-api.js pipeline (peer)", prl, pr,
                   peer_noface);
    }
    free(qd);
    free(map);
    free(q.desc);
    free(q.ok);
    free(ps);
    return 0;
}
