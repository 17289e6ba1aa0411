/*
 * lfw_embed.h: LFW descriptors read from a cache made once with
 * `lethe embed --json` over every LFW photo (or from face-api.js's
 * tools/ref/pipeline.mjs, whose faces carry "descriptor" instead of
 * "embedding"), shared by the benchmarks that need the whole of LFW
 * (calibrate, openset, eval_lfw --embeddings). Computing 13,233 photos'
 * descriptors takes minutes; reading them takes a second.
 *
 * Every photo of lfw/images must be in the cache: one that is absent, or
 * whose line is an error, is an error the caller reports. A photo in which
 * no face was found is kept with nfaces 0 (label -1): the caller decides
 * how it counts, and says so. LFW labels the face nearest the middle of
 * each photo; that face is `label`.
 *
 * Benchmark code: exits on out-of-memory, prints its errors. The functions
 * are static inline so that a benchmark may use only some of them.
 */
#ifndef LFW_EMBED_H
#define LFW_EMBED_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LFW_DIM 128

typedef struct lfw_face {
    float box[4];
    float d[LFW_DIM];
} lfw_face;

typedef struct lfw_photo {
    char *path;         /* as listed: DIR/images/NAME/NAME_NNNN.jpg */
    char person[128];   /* NAME */
    int num;            /* NNNN */
    int nfaces;         /* -1: absent from the cache or an error line */
    int label;          /* the face nearest the middle, or -1 */
    lfw_face *faces;
} lfw_photo;

typedef struct lfw_set {
    lfw_photo *p;       /* sorted by person, then number */
    size_t n;
    int people;
} lfw_set;

static inline void *lfw_xalloc(size_t n)
{
    void *p = calloc(1, n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return p;
}

static inline int lfw_cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names in dir, sorted (NULL when it cannot be read). */
static inline char **lfw_list_dir(const char *dir, size_t *n)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char **v = NULL;
    size_t cap = 0;
    *n = 0;
    if (!d)
        return NULL;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            v = realloc(v, cap * sizeof(*v));
            if (!v)
                exit(1);
        }
        v[(*n)++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(v, *n, sizeof(*v), lfw_cmp_name);
    return v;
}

/* Person and number of .../NAME/NAME_NNNN.jpg; -1 when it is not such a name. */
static inline int lfw_parse_name(const char *path, char *person, size_t n, int *num)
{
    const char *file = strrchr(path, '/');
    file = file ? file + 1 : path;
    const char *us = strrchr(file, '_');
    if (!us || (size_t)(us - file) >= n || sscanf(us + 1, "%d", num) != 1)
        return -1;
    memcpy(person, file, (size_t)(us - file));
    person[us - file] = 0;
    return 0;
}

static inline int lfw_cmp_photo(const void *a, const void *b)
{
    const lfw_photo *x = a, *y = b;
    int c = strcmp(x->person, y->person);
    return c ? c : (x->num > y->num) - (x->num < y->num);
}

/* Every photo of lfw/images, no faces yet (nfaces -1). */
static inline int lfw_list(const char *lfw, lfw_set *s)
{
    char images[1024];
    size_t nd, cap = 16384;
    snprintf(images, sizeof(images), "%s/images", lfw);
    char **dirs = lfw_list_dir(images, &nd);
    if (!dirs) {
        fprintf(stderr, "%s: cannot list\n", images);
        return -1;
    }
    memset(s, 0, sizeof(*s));
    s->p = lfw_xalloc(cap * sizeof(*s->p));
    for (size_t i = 0; i < nd; i++) {
        char d[1200];
        size_t nf;
        snprintf(d, sizeof(d), "%s/%s", images, dirs[i]);
        char **files = lfw_list_dir(d, &nf);
        for (size_t k = 0; files && k < nf; k++) {
            lfw_photo *p = &s->p[s->n];
            char path[2400];
            snprintf(path, sizeof(path), "%s/%s", d, files[k]);
            if (s->n + 1 == cap || lfw_parse_name(path, p->person, sizeof(p->person), &p->num)) {
                fprintf(stderr, "%s: unexpected name (or too many photos)\n", path);
                return -1;
            }
            p->path = strdup(path);
            p->nfaces = -1;
            p->label = -1;
            s->n++;
            free(files[k]);
        }
        s->people += nf > 0;
        free(files);
        free(dirs[i]);
    }
    free(dirs);
    qsort(s->p, s->n, sizeof(*s->p), lfw_cmp_photo);
    return 0;
}

static inline lfw_photo *lfw_find(const lfw_set *s, const char *person, int num)
{
    lfw_photo key;
    snprintf(key.person, sizeof(key.person), "%s", person);
    key.num = num;
    return bsearch(&key, s->p, s->n, sizeof(*s->p), lfw_cmp_photo);
}

static inline int lfw_floats(const char **at, float *v, int n)
{
    const char *p = *at;
    for (int k = 0; k < n; k++) {
        char *end;
        while (*p == ' ' || *p == ',' || *p == '[')
            p++;
        v[k] = strtof(p, &end);
        if (end == p)
            return -1;
        p = end;
    }
    *at = p;
    return 0;
}

/* One cache line's faces into p; -1 if the line is malformed. */
static inline int lfw_parse_faces(const char *line, lfw_photo *p)
{
    const char *at = line, *w = strstr(line, "\"width\":"), *h = strstr(line, "\"height\":");
    int cap = 0, width = w ? atoi(w + 8) : 250, height = h ? atoi(h + 9) : 250;
    double best = 1e300;
    p->nfaces = 0;
    while ((at = strstr(at, "\"box\":"))) {
        lfw_face f;
        at += 6;
        const char *e = strstr(at, "\"embedding\":"), *e2 = strstr(at, "\"descriptor\":");
        if (!e || (e2 && e2 < e))
            e = e2 ? e2 + 13 : NULL;
        else
            e += 12;
        if (lfw_floats(&at, f.box, 4) < 0 || !e || lfw_floats(&e, f.d, LFW_DIM) < 0)
            return -1;
        if (p->nfaces == cap) {
            cap = cap ? cap * 2 : 4;
            p->faces = realloc(p->faces, (size_t)cap * sizeof(*p->faces));
            if (!p->faces)
                exit(1);
        }
        double cx = f.box[0] + f.box[2] / 2 - width / 2.0, cy = f.box[1] + f.box[3] / 2 - height / 2.0;
        if (cx * cx + cy * cy < best) {
            best = cx * cx + cy * cy;
            p->label = p->nfaces;
        }
        p->faces[p->nfaces++] = f;
        at = e;
    }
    return 0;
}

/*
 * Read the cache into s (listed first with lfw_list). Lines for photos
 * outside the listing are ignored; *errors counts photos of the listing
 * that are absent or whose line is an error (each printed unless quiet).
 */
static inline int lfw_read_cache(const char *file, lfw_set *s, int *errors, int quiet)
{
    FILE *f = fopen(file, "r");
    char *line = NULL, person[128];
    size_t cap = 0;
    *errors = 0;
    if (!f) {
        perror(file);
        return -1;
    }
    while (getline(&line, &cap, f) >= 0) {
        char *im = strstr(line, "\"image\":\""), *q;
        int num;
        if (!im || !(q = strchr(im + 9, '"')))
            continue;
        *q = 0;
        lfw_photo *p = lfw_parse_name(im + 9, person, sizeof(person), &num) == 0
                           ? lfw_find(s, person, num)
                           : NULL;
        if (!p)
            continue;
        free(p->faces);
        p->faces = NULL;
        p->label = -1;
        p->nfaces = -1;
        if (!strstr(q + 1, "\"error\":") && lfw_parse_faces(q + 1, p) < 0) {
            fprintf(stderr, "%s: %s: malformed line\n", file, p->path);
            p->nfaces = -1;
        }
    }
    free(line);
    fclose(f);
    for (size_t i = 0; i < s->n; i++)
        if (s->p[i].nfaces < 0) {
            if (!quiet)
                fprintf(stderr, "error: %s: not in %s, or an error there\n", s->p[i].path, file);
            (*errors)++;
        }
    return 0;
}

static inline void lfw_free(lfw_set *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->p[i].path);
        free(s->p[i].faces);
    }
    free(s->p);
    memset(s, 0, sizeof(*s));
}

#endif
