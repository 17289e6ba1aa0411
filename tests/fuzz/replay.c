/*
 * replay.c: runs the fuzz targets of targets.c on stored inputs.
 *
 * Built normally (make: build/tests/fuzz_replay), it is a program:
 *
 *   fuzz_replay [-v] [--alloc-fail] TARGET FILE_OR_DIR...
 *
 * which feeds every file (folders are walked, sorted, dot-files skipped) to
 * TARGET ("image", "weights") and prints "N passed, N failed, 0 skipped". A
 * crash is a sanitizer report and a non-zero exit, so `make test` runs the
 * committed corpus under ASan/UBSan with gcc. --alloc-fail also replays each
 * file with the 1st, 2nd, ... allocation failing, as test_image does.
 *
 * Built with -DLETHE_LIBFUZZER -DLETHE_FUZZ_TARGET=image (or weights) and
 * clang -fsanitize=fuzzer, it instead defines LLVMFuzzerTestOneInput for that
 * one target (see build.sh).
 */
#include <stddef.h>
#include <stdint.h>

#ifdef LETHE_LIBFUZZER

#ifndef LETHE_FUZZ_TARGET
#error "define LETHE_FUZZ_TARGET as a target name: image or weights"
#endif
#define LETHE_FUZZ_FN_(t) lethe_fuzz_##t
#define LETHE_FUZZ_FN(t) LETHE_FUZZ_FN_(t)

int LETHE_FUZZ_FN(LETHE_FUZZ_TARGET)(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return LETHE_FUZZ_FN(LETHE_FUZZ_TARGET)(data, size);
}

#else /* the replayer */

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util/util.h"

typedef int (*lethe_fuzz_fn)(const uint8_t *data, size_t size);
lethe_fuzz_fn lethe_fuzz_find(const char *name); /* targets.c */
const char *lethe_fuzz_names(void);

static int verbose;      /* -v: name every file */
static int alloc_fail;   /* --alloc-fail: sweep allocation failures */
static int passed, failed;

/* The whole file in a buffer of exactly its size (so ASan sees overreads). */
static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    uint8_t *buf;

    if (!f)
        return NULL;
    if (fstat(fileno(f), &st) != 0 || st.st_size < 0) {
        fclose(f);
        return NULL;
    }
    *len = (size_t)st.st_size;
    buf = malloc(*len ? *len : 1);
    if (buf && *len && fread(buf, 1, *len, f) != *len) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

static void replay_file(lethe_fuzz_fn fn, const char *path)
{
    size_t len = 0;
    uint8_t *data = read_all(path, &len);
    int bad = 0;

    if (!data) {
        fprintf(stderr, "FAIL %s: cannot read\n", path);
        failed++;
        return;
    }
    if (verbose)
        fprintf(stderr, "%s (%zu bytes)\n", path, len);
    bad |= fn(data, len) != 0;
    if (alloc_fail) {
        /* Until a run where no allocation was refused. */
        for (long k = 0; k < 100000; k++) {
            long used;
            lethe_alloc_fail_after(k);
            bad |= fn(data, len) != 0;
            used = lethe_alloc_count();
            lethe_alloc_fail_after(-1);
            if (used <= k)
                break;
        }
    }
    free(data);
    if (bad) {
        fprintf(stderr, "FAIL %s: the target returned nonzero\n", path);
        failed++;
    } else {
        passed++;
    }
}

static int skip_name(const struct dirent *e) { return e->d_name[0] != '.'; }

static void replay_path(lethe_fuzz_fn fn, const char *path)
{
    struct stat st;
    struct dirent **names;
    int n;

    if (stat(path, &st) != 0) {
        fprintf(stderr, "FAIL %s: not found\n", path);
        failed++;
        return;
    }
    if (!S_ISDIR(st.st_mode)) {
        replay_file(fn, path);
        return;
    }
    n = scandir(path, &names, skip_name, alphasort);
    if (n < 0) {
        fprintf(stderr, "FAIL %s: cannot list\n", path);
        failed++;
        return;
    }
    for (int i = 0; i < n; i++) {
        size_t need = strlen(path) + strlen(names[i]->d_name) + 2;
        char *child = malloc(need);
        if (child) {
            snprintf(child, need, "%s/%s", path, names[i]->d_name);
            replay_path(fn, child);
            free(child);
        }
        free(names[i]);
    }
    free(names);
}

int main(int argc, char **argv)
{
    lethe_fuzz_fn fn;
    int i = 1;

    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "-v") == 0)
            verbose = 1;
        else if (strcmp(argv[i], "--alloc-fail") == 0)
            alloc_fail = 1;
        else
            break;
    }
    if (argc - i < 2) {
        fprintf(stderr, "usage: %s [-v] [--alloc-fail] TARGET FILE_OR_DIR...\ntargets: %s\n",
                argv[0], lethe_fuzz_names());
        return 2;
    }
    fn = lethe_fuzz_find(argv[i]);
    if (!fn) {
        fprintf(stderr, "unknown target %s (targets: %s)\n", argv[i], lethe_fuzz_names());
        return 2;
    }
    for (int k = i + 1; k < argc; k++)
        replay_path(fn, argv[k]);
    if (passed + failed == 0) {
        fprintf(stderr, "FAIL: no input files\n");
        failed++;
    }
    fprintf(stderr, "replay %s:\n", argv[i]);
    printf("%d passed, %d failed, 0 skipped\n", passed, failed);
    return failed ? 1 : 0;
}

#endif
