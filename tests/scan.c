/*
 * scan.c: residue scanner for tests. Reads every file under DIR and reports
 * any occurrence of the given needles:
 *   --descriptors FILE  every "embedding" array in FILE (JSON Lines, e.g.
 *                       lethe embed --json output), as float32 bytes: the
 *                       whole 512 bytes and each 64-byte eighth, so a
 *                       partly overwritten copy is found too
 *   --text STRING       the bytes of STRING
 *   --hex HEX           raw bytes given in hex
 * Exit 0: nothing found; 1: found (each hit printed); 2: usage or I/O error.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct needle {
    unsigned char *b;
    size_t n;
    char label[96];
} needle;

static needle *nd;
static size_t nn, capn;
static int hits;

static void add(const void *b, size_t n, const char *label)
{
    if (nn == capn) {
        capn = capn ? capn * 2 : 64;
        nd = realloc(nd, capn * sizeof(*nd));
        if (!nd)
            exit(2);
    }
    nd[nn].b = malloc(n);
    if (!nd[nn].b)
        exit(2);
    memcpy(nd[nn].b, b, n);
    nd[nn].n = n;
    snprintf(nd[nn].label, sizeof(nd[nn].label), "%s", label);
    nn++;
}

static int load_descriptors(const char *file)
{
    FILE *f = fopen(file, "r");
    char *line = NULL;
    size_t cap = 0;
    int count = 0;
    if (!f) {
        perror(file);
        return -1;
    }
    while (getline(&line, &cap, f) >= 0) {
        for (char *p = line; (p = strstr(p, "\"embedding\":[")) != NULL;) {
            float v[128];
            p += 13;
            int k;
            for (k = 0; k < 128; k++) {
                char *end;
                v[k] = strtof(p, &end);
                if (end == p)
                    break;
                p = end;
                while (*p == ',' || *p == ' ')
                    p++;
            }
            if (k != 128)
                continue;
            char label[96];
            snprintf(label, sizeof(label), "descriptor %d", count);
            add(v, sizeof(v), label);
            for (int e = 0; e < 8; e++) {
                snprintf(label, sizeof(label), "descriptor %d part %d/8", count, e + 1);
                add(v + e * 16, 64, label);
            }
            count++;
        }
    }
    free(line);
    fclose(f);
    if (!count) {
        fprintf(stderr, "scan: %s holds no embedding\n", file);
        return -1;
    }
    return 0;
}

/* Needles of 8 bytes or more are found through a hash table of their
 * first 8 bytes, in one pass over the file; shorter ones with memmem. */
static size_t *table, tcap;

static uint64_t key_at(const unsigned char *p)
{
    uint64_t k;
    memcpy(&k, p, 8);
    return k;
}

static size_t slot_of(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (size_t)k & (tcap - 1);
}

static void build_table(void)
{
    tcap = 16;
    while (tcap < 2 * nn + 16)
        tcap *= 2;
    table = malloc(tcap * sizeof(*table));
    if (!table)
        exit(2);
    for (size_t i = 0; i < tcap; i++)
        table[i] = (size_t)-1;
    for (size_t i = 0; i < nn; i++) {
        if (nd[i].n < 8)
            continue;
        size_t s = slot_of(key_at(nd[i].b));
        while (table[s] != (size_t)-1)
            s = (s + 1) & (tcap - 1);
        table[s] = i;
    }
}

static void scan_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    struct stat sb;
    if (!f || fstat(fileno(f), &sb) < 0) {
        perror(path);
        exit(2);
    }
    unsigned char *buf = malloc((size_t)sb.st_size + 1);
    if (!buf || fread(buf, 1, (size_t)sb.st_size, f) != (size_t)sb.st_size) {
        fprintf(stderr, "scan: cannot read %s\n", path);
        exit(2);
    }
    fclose(f);
    size_t size = (size_t)sb.st_size;
    for (size_t off = 0; off + 8 <= size; off++) {
        uint64_t k = key_at(buf + off);
        for (size_t s = slot_of(k); table[s] != (size_t)-1; s = (s + 1) & (tcap - 1)) {
            const needle *x = &nd[table[s]];
            if (key_at(x->b) == k && off + x->n <= size && !memcmp(buf + off, x->b, x->n)) {
                printf("%s: offset %zu: %s\n", path, off, x->label);
                hits++;
            }
        }
    }
    for (size_t i = 0; i < nn; i++) {
        if (nd[i].n >= 8)
            continue;
        const unsigned char *at = buf;
        size_t left = (size_t)sb.st_size;
        const unsigned char *h;
        while (left >= nd[i].n && (h = memmem(at, left, nd[i].b, nd[i].n)) != NULL) {
            printf("%s: offset %zu: %s\n", path, (size_t)(h - buf), nd[i].label);
            hits++;
            left -= (size_t)(h - at) + 1;
            at = h + 1;
        }
    }
    free(buf);
}

static void walk(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    if (!d) {
        perror(dir);
        exit(2);
    }
    while ((e = readdir(d))) {
        char p[4096];
        struct stat sb;
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        if (lstat(p, &sb) < 0)
            continue;
        if (S_ISDIR(sb.st_mode))
            walk(p);
        else if (S_ISREG(sb.st_mode))
            scan_file(p);
    }
    closedir(d);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: scan DIR [--descriptors FILE] [--text S] [--hex H] ...\n");
        return 2;
    }
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--descriptors")) {
            if (load_descriptors(argv[i + 1]) < 0)
                return 2;
        } else if (!strcmp(argv[i], "--text")) {
            add(argv[i + 1], strlen(argv[i + 1]), argv[i + 1]);
        } else if (!strcmp(argv[i], "--hex")) {
            size_t n = strlen(argv[i + 1]) / 2;
            unsigned char *b = malloc(n ? n : 1);
            for (size_t k = 0; k < n; k++)
                sscanf(argv[i + 1] + 2 * k, "%2hhx", &b[k]);
            add(b, n, argv[i + 1]);
            free(b);
        } else {
            fprintf(stderr, "scan: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    build_table();
    walk(argv[1]);
    return hits ? 1 : 0;
}
