/*
 * test.h: the tiny assertion kit every test file uses. A test file defines
 * test functions, lists them in main() with RUN(), and ends with
 * return test_summary(); which prints "N passed, N failed" (and skipped).
 *
 * CHECK(cond)         record a failure (with file:line) and go on
 * CHECK_EQ_INT(a, b)  integer equality with both values printed
 * CHECK_NEAR(a, b, t) |a - b| <= t
 * SKIP(why)           mark the current test skipped, visibly, and return
 * SKIP_PART(fmt, ...) part of the current test cannot run (an input is
 *                     absent): say so, visibly, and go on; the test then
 *                     counts as skipped, not passed, unless a check failed
 *
 * A test counts once: failed if any check failed, else skipped if it or a
 * part of it was skipped, else passed.
 *
 * test_select(argc, argv) in main() makes RUN run only the tests whose name
 * contains one of the arguments (tests/run.sh runs a few under TSan so);
 * the others are neither run nor counted.
 */
#ifndef LETHE_TEST_H
#define LETHE_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int test_passed, test_failed, test_skipped;
static int test_cur_failed, test_cur_skipped, test_cur_parts_skipped;
static const char *test_cur_name;
static char **test_filters;
static int test_nfilters;

static inline void test_select(int argc, char **argv)
{
    test_filters = argv + 1;
    test_nfilters = argc > 1 ? argc - 1 : 0;
}

static inline int test_selected(const char *name)
{
    for (int i = 0; i < test_nfilters; i++)
        if (strstr(name, test_filters[i]))
            return 1;
    return test_nfilters == 0;
}

#define CHECK(cond)                                                               \
    do {                                                                          \
        if (!(cond)) {                                                            \
            fprintf(stderr, "  FAIL %s:%d in %s: %s\n", __FILE__, __LINE__,        \
                    test_cur_name, #cond);                                        \
            test_cur_failed++;                                                    \
        }                                                                         \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                        \
    do {                                                                          \
        long long a_ = (long long)(a), b_ = (long long)(b);                       \
        if (a_ != b_) {                                                           \
            fprintf(stderr, "  FAIL %s:%d in %s: %s == %s (%lld vs %lld)\n",      \
                    __FILE__, __LINE__, test_cur_name, #a, #b, a_, b_);           \
            test_cur_failed++;                                                    \
        }                                                                         \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                     \
    do {                                                                          \
        double a_ = (double)(a), b_ = (double)(b);                                \
        if (!(fabs(a_ - b_) <= (double)(tol))) {                                  \
            fprintf(stderr, "  FAIL %s:%d in %s: |%s - %s| <= %g (%.9g vs %.9g)\n", \
                    __FILE__, __LINE__, test_cur_name, #a, #b, (double)(tol), a_, b_); \
            test_cur_failed++;                                                    \
        }                                                                         \
    } while (0)

#define SKIP(why)                                                                 \
    do {                                                                          \
        fprintf(stderr, "  SKIP %s: %s\n", test_cur_name, why);                   \
        test_cur_skipped = 1;                                                     \
        return;                                                                   \
    } while (0)

#define SKIP_PART(...)                                                            \
    do {                                                                          \
        fprintf(stderr, "  SKIP %s (part): ", test_cur_name);                    \
        fprintf(stderr, __VA_ARGS__);                                             \
        fputc('\n', stderr);                                                      \
        test_cur_parts_skipped++;                                                 \
    } while (0)

#define RUN(fn)                                                                   \
    do {                                                                          \
        if (!test_selected(#fn))                                                  \
            break;                                                                \
        test_cur_name = #fn;                                                      \
        test_cur_failed = 0;                                                      \
        test_cur_skipped = 0;                                                     \
        test_cur_parts_skipped = 0;                                               \
        fn();                                                                     \
        if (test_cur_failed) {                                                    \
            test_failed++;                                                        \
            fprintf(stderr, "not ok %s\n", #fn);                                  \
        } else if (test_cur_skipped) {                                            \
            test_skipped++;                                                       \
        } else if (test_cur_parts_skipped) {                                      \
            test_skipped++;                                                       \
            fprintf(stderr, "skip %s (%d part%s skipped, the rest passed)\n", #fn, \
                    test_cur_parts_skipped, test_cur_parts_skipped > 1 ? "s" : ""); \
        } else {                                                                  \
            test_passed++;                                                        \
            fprintf(stderr, "ok %s\n", #fn);                                      \
        }                                                                         \
    } while (0)

static inline int test_summary(void)
{
    printf("%d passed, %d failed, %d skipped\n", test_passed, test_failed, test_skipped);
    return test_failed ? 1 : 0;
}

/* The shared test data folder (../shared/data from the repo root), or NULL. */
static inline const char *test_data_dir(void)
{
    static const char *dirs[] = {"../shared/data", "../../shared/data"};
    const char *env = getenv("LETHE_TEST_DATA");
    struct stat st;
    if (env && stat(env, &st) == 0)
        return env;
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
        if (stat(dirs[i], &st) == 0 && S_ISDIR(st.st_mode))
            return dirs[i];
    return NULL;
}

/* The model folder for tests ($LETHE_MODELS or ./models), or NULL if absent. */
static inline const char *test_models_dir(void)
{
    const char *env = getenv("LETHE_MODELS");
    struct stat st;
    if (env && stat(env, &st) == 0)
        return env;
    if (stat("models/face_recognition_model.bin", &st) == 0)
        return "models";
    return NULL;
}

#endif
