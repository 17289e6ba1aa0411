/*
 * bench_kernels.c: GFLOP/s of the nn layer's dense convolution on the
 * layer shapes of the face descriptor ResNet (and a few SSD MobileNet ones),
 * per kernel set, against the core's measured fp32 FMA peak (GFLOP/s count
 * the direct convolution's FLOPs, also for Winograd layers); the whole-net
 * estimate per 150x150 chip; depthwise bandwidth; nn_pool_run overhead.
 *
 *   bench_kernels [--isa scalar|avx2|avx512|all] [--threads N] [--ms T] [--mobilenet]
 *                 [--only NAME] [--wall] [--algo auto|gemm|winograd]
 *
 * Each shape runs for about T milliseconds (default 150) after a warm-up, in
 * 7 rounds; the fastest round counts.
 * With one thread, times are this thread's CPU time (robust to other
 * programs on the machine); with --threads N > 1 or --wall, wall time.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nn/nn.h"
#include "util/util.h"

/* Single-threaded runs are timed in this thread's CPU time, so that other
 * programs sharing the cores do not count; with a pool, in wall time. */
static clockid_t bench_clock = CLOCK_THREAD_CPUTIME_ID;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(bench_clock, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

#define BENCH_ROUNDS 7

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static float frand(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) * (1.0 / (1 << 24))) * 2.0f - 1.0f;
}

static float *rand_buf(size_t n, float scale)
{
    float *p = lethe_malloc_aligned(n * sizeof(float));
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++)
        p[i] = frand() * scale;
    return p;
}

/* ---- the core's clock and fp32 FMA peak --------------------------- */

/* A chain of dependent 1-cycle adds: iterations per second ~ the clock. */
static double measure_ghz(void)
{
    uint64_t n = 200000000ull, x = 0;
    double t0 = now_s();
    for (uint64_t i = 0; i < n; i += 8)
        __asm__ volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
                         "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0"
                         : "+r"(x));
    return (double)n / (now_s() - t0) / 1e9;
}

#define PEAK_LOOP(NAME, VT, SET, FMA, ATTR)                                             \
    __attribute__((target(ATTR))) static double NAME(void)                             \
    {                                                                                  \
        /* Ten independent chains (the asm keeps the compiler from merging  */       \
        /* them): enough to fill two FMA pipes of latency 4.                */       \
        VT a0 = SET(1.0f), a1 = SET(1.0f), a2 = SET(1.0f), a3 = SET(1.0f);             \
        VT a4 = SET(1.0f), a5 = SET(1.0f), a6 = SET(1.0f), a7 = SET(1.0f);             \
        VT a8 = SET(1.0f), a9 = SET(1.0f), b = SET(0.999999f), c = SET(1e-7f);         \
        long n = 20000000;                                                             \
        double t0 = now_s();                                                           \
        for (long i = 0; i < n; i++) {                                                 \
            a0 = FMA(a0, b, c); a1 = FMA(a1, b, c); a2 = FMA(a2, b, c);                \
            a3 = FMA(a3, b, c); a4 = FMA(a4, b, c); a5 = FMA(a5, b, c);                \
            a6 = FMA(a6, b, c); a7 = FMA(a7, b, c); a8 = FMA(a8, b, c);                \
            a9 = FMA(a9, b, c);                                                        \
            __asm__ volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4));    \
            __asm__ volatile("" : "+v"(a5), "+v"(a6), "+v"(a7), "+v"(a8), "+v"(a9));    \
        }                                                                              \
        double t = now_s() - t0;                                                       \
        volatile float sink;                                                           \
        VT s = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9;                         \
        sink = s[0];                                                                   \
        (void)sink;                                                                    \
        return 10.0 * n * 2.0 * (sizeof(VT) / 4) / t / 1e9;                            \
    }

#include <immintrin.h>
PEAK_LOOP(peak_avx512, __m512, _mm512_set1_ps, _mm512_fmadd_ps, "avx512f,fma")
PEAK_LOOP(peak_avx2, __m256, _mm256_set1_ps, _mm256_fmadd_ps, "avx2,fma")

/* ---- convolution shapes ------------------------------------------- */

typedef struct shape {
    const char *name;
    int h, w, k, cin, cout, stride;
    nn_pad pad;
    int residual;
    int count; /* times it occurs in one forward pass of its net */
} shape;

/* face-api.js face recognition net on a 150x150 chip. */
static const shape resnet[] = {
    {"conv32_down 7x7/2 150->72x72 3->32", 150, 150, 7, 3, 32, 2, NN_PAD_VALID, 0, 1},
    {"conv32 3x3 35x35 32->32", 35, 35, 3, 32, 32, 1, NN_PAD_SAME, 1, 6},
    {"conv64_down 3x3/2 35->17 32->64", 35, 35, 3, 32, 64, 2, NN_PAD_VALID, 0, 1},
    {"conv64 3x3 17x17 64->64", 17, 17, 3, 64, 64, 1, NN_PAD_SAME, 1, 7},
    {"conv128_down 3x3/2 17->8 64->128", 17, 17, 3, 64, 128, 2, NN_PAD_VALID, 0, 1},
    {"conv128 3x3 8x8 128->128", 8, 8, 3, 128, 128, 1, NN_PAD_SAME, 1, 5},
    {"conv256_down 3x3/2 8->3 128->256", 8, 8, 3, 128, 256, 2, NN_PAD_VALID, 0, 1},
    {"conv256 3x3 3x3 256->256", 3, 3, 3, 256, 256, 1, NN_PAD_SAME, 1, 5},
    {"conv256_down_out 3x3/2 3->1 256->256", 3, 3, 3, 256, 256, 2, NN_PAD_VALID, 0, 1},
    {"conv256_out 3x3 1x1 256->256", 1, 1, 3, 256, 256, 1, NN_PAD_SAME, 1, 1},
};

static const shape mobilenet[] = {
    {"conv0 3x3/2 512->256 3->32", 512, 512, 3, 3, 32, 2, NN_PAD_SAME, 0, 1},
    {"pw 1x1 256x256 32->64", 256, 256, 1, 32, 64, 1, NN_PAD_SAME, 0, 1},
    {"pw 1x1 64x64 128->256", 64, 64, 1, 128, 256, 1, NN_PAD_SAME, 0, 1},
    {"pw 1x1 32x32 512->512", 32, 32, 1, 512, 512, 1, NN_PAD_SAME, 0, 5},
    {"pw 1x1 16x16 1024->1024", 16, 16, 1, 1024, 1024, 1, NN_PAD_SAME, 0, 1},
    {"box 1x1 32x32 512->12", 32, 32, 1, 512, 12, 1, NN_PAD_SAME, 0, 1},
};

static nn_algo algo = NN_ALGO_AUTO; /* --algo */

static int parse_isa(const char *s)
{
    if (strcmp(s, "scalar") == 0)
        return NN_ISA_SCALAR;
    if (strcmp(s, "avx2") == 0)
        return NN_ISA_AVX2;
    if (strcmp(s, "avx512") == 0)
        return NN_ISA_AVX512;
    return -1; /* all */
}

/* Seconds per call of one shape on one kernel set. */
static double time_shape(const shape *s, nn_isa isa, nn_pool *pool, double budget_s)
{
    nn_conv c;
    int oh, ow;
    size_t kk = (size_t)s->k * s->k * s->cin;
    float *w = rand_buf(kk * s->cout, 1.0f / 16.0f);
    float *sc = rand_buf((size_t)s->cout, 1.0f);
    float *sh = rand_buf((size_t)s->cout, 1.0f);
    if (nn_conv_init(&c, s->k, s->k, s->cin, s->cout, s->stride, s->pad, NN_ACT_RELU, w, sc,
                     sh) != 0) {
        fprintf(stderr, "nn_conv_init failed\n");
        exit(1);
    }
    if (nn_conv_set_algo(&c, algo) != 0) {
        fprintf(stderr, "nn_conv_set_algo failed\n");
        exit(1);
    }
    nn_conv_out_hw(&c, s->h, s->w, &oh, &ow);
    float *in = rand_buf((size_t)s->h * s->w * s->cin, 1.0f);
    float *out = rand_buf((size_t)oh * ow * s->cout, 1.0f);
    float *res = s->residual ? rand_buf((size_t)oh * ow * s->cout, 1.0f) : NULL;
    size_t ss = nn_conv_scratch_size(&c, s->h, s->w, pool);
    void *scratch = lethe_malloc_aligned(ss ? ss : 64);

    nn_conv_forward_isa(isa, &c, in, s->h, s->w, out, res, scratch, pool); /* warm-up */
    /* The best of several rounds: the machine is shared (and virtual, where
     * time stolen by the host still counts as ours), so the minimum is the
     * most repeatable figure. */
    double best = 1e30;
    for (int round = 0; round < BENCH_ROUNDS; round++) {
        long iters = 0;
        double t0 = now_s(), t;
        do {
            nn_conv_forward_isa(isa, &c, in, s->h, s->w, out, res, scratch, pool);
            iters++;
            t = now_s() - t0;
        } while (t < budget_s / BENCH_ROUNDS);
        if (t / iters < best)
            best = t / iters;
    }

    lethe_free_aligned(scratch);
    lethe_free_aligned(res);
    lethe_free_aligned(out);
    lethe_free_aligned(in);
    lethe_free_aligned(sh);
    lethe_free_aligned(sc);
    lethe_free_aligned(w);
    nn_conv_free(&c);
    return best;
}

static double shape_flops(const shape *s)
{
    int oh = nn_out_size(s->h, s->k, s->stride, s->pad);
    int ow = nn_out_size(s->w, s->k, s->stride, s->pad);
    return 2.0 * oh * ow * s->cout * s->k * s->k * s->cin;
}

static const char *only; /* --only: run the shapes whose name contains this */

static void run_net(const char *title, const shape *shapes, int n, nn_isa isa, nn_pool *pool,
                    double budget_s, double peak)
{
    double total_t = 0, total_f = 0;
    printf("\n%s, %s, %d thread(s):\n", title, nn_isa_name(isa), nn_pool_size(pool));
    printf("  %-40s %9s %9s %6s\n", "layer", "us/call", "GFLOP/s", "%peak");
    for (int i = 0; i < n; i++) {
        if (only && !strstr(shapes[i].name, only))
            continue;
        double t = time_shape(&shapes[i], isa, pool, budget_s);
        double f = shape_flops(&shapes[i]);
        printf("  %-40s %9.1f %9.1f %5.0f%%\n", shapes[i].name, t * 1e6, f / t / 1e9,
               100.0 * f / t / 1e9 / (peak * nn_pool_size(pool)));
        total_t += t * shapes[i].count;
        total_f += f * shapes[i].count;
    }
    printf("  whole net (convs only): %.3f ms, %.1f MFLOP, %.1f GFLOP/s, %.0f%% of peak\n",
           total_t * 1e3, total_f / 1e6, total_f / total_t / 1e9,
           100.0 * total_f / total_t / 1e9 / (peak * nn_pool_size(pool)));
}

static void bench_dwconv(nn_isa isa, double budget_s)
{
    static const struct { int hw, c, stride; } dws[] = {
        {256, 32, 1}, {128, 128, 1}, {64, 256, 2}, {32, 512, 1}, {16, 1024, 1}};
    printf("\ndepthwise 3x3, %s:\n", nn_isa_name(isa));
    for (size_t i = 0; i < sizeof(dws) / sizeof(dws[0]); i++) {
        nn_dwconv d;
        int c = dws[i].c, hw = dws[i].hw;
        float *w = rand_buf((size_t)9 * c, 1.0f);
        float *in = rand_buf((size_t)hw * hw * c, 1.0f);
        float *out = rand_buf((size_t)hw * hw * c, 1.0f);
        if (nn_dwconv_init(&d, 3, c, dws[i].stride, NN_PAD_SAME, NN_ACT_RELU6, w, NULL, NULL)) {
            fprintf(stderr, "nn_dwconv_init failed\n");
            exit(1);
        }
        int o = nn_out_size(hw, 3, dws[i].stride, NN_PAD_SAME);
        long iters = 0;
        double t0 = now_s(), t;
        do {
            nn_dwconv_forward_isa(isa, &d, in, hw, hw, out, NULL);
            iters++;
            t = now_s() - t0;
        } while (t < budget_s);
        t /= iters;
        double bytes = 4.0 * ((double)hw * hw * c + (double)o * o * c);
        printf("  %4dx%-4d c=%-5d s%d  %8.1f us  %6.1f GB/s\n", hw, hw, c, dws[i].stride,
               t * 1e6, bytes / t / 1e9);
        nn_dwconv_free(&d);
        lethe_free_aligned(out);
        lethe_free_aligned(in);
        lethe_free_aligned(w);
    }
}

/* A task of about `ns` nanoseconds of spinning. */
static void spin_task(void *arg, int i, int worker)
{
    (void)i, (void)worker;
    struct timespec t0, t;
    long ns = *(const long *)arg;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do
        clock_gettime(CLOCK_MONOTONIC, &t);
    while ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) < ns);
}

/* Cost of one nn_pool_run beyond the work: two 5 us tasks, one a thread. */
static void bench_pool(int threads)
{
    nn_pool *pool;
    long work = 5000;
    bench_clock = CLOCK_MONOTONIC;
    if (nn_pool_create(&pool, threads) != 0)
        return;
    int n = 4000;
    for (int pass = 0; pass < 2; pass++) {
        double t0 = now_s();
        for (int i = 0; i < n; i++)
            nn_pool_run(pool, threads, spin_task, &work);
        double per = (now_s() - t0) / n * 1e6;
        if (pass == 1)
            printf("\nnn_pool_run, %d threads, %d tasks of 5 us: %.2f us per call "
                   "(overhead %.2f us; wall time, so other programs on the cores count)\n",
                   nn_pool_size(pool), threads, per, per - 5.0);
    }
    nn_pool_destroy(pool);
}

int main(int argc, char **argv)
{
    int want = NN_ISA_AVX512 + 1, threads = 1, mobile = 0, wall = 0;
    double budget = 0.15;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--isa") == 0 && i + 1 < argc)
            want = parse_isa(argv[++i]);
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--ms") == 0 && i + 1 < argc)
            budget = atof(argv[++i]) / 1e3;
        else if (strcmp(argv[i], "--algo") == 0 && i + 1 < argc) {
            i++;
            algo = strcmp(argv[i], "gemm") == 0       ? NN_ALGO_GEMM
                   : strcmp(argv[i], "winograd") == 0 ? NN_ALGO_WINOGRAD
                                                      : NN_ALGO_AUTO;
        } else if (strcmp(argv[i], "--wall") == 0)
            wall = 1;
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
            only = argv[++i];
        else if (strcmp(argv[i], "--mobilenet") == 0)
            mobile = 1;
        else {
            fprintf(stderr, "usage: %s [--isa scalar|avx2|avx512|all] [--threads N] "
                            "[--ms T] [--mobilenet] [--only NAME] [--wall] [--algo auto|gemm|winograd]\n",
                    argv[0]);
            return 2;
        }
    }
    nn_init();
    double ghz = measure_ghz();
    double peak512 = 0, peak2 = 0;
    for (int i = 0; i < 3; i++) { /* the best of three, as for the layers */
        ghz = LETHE_MAX(ghz, measure_ghz());
        if (nn_isa_supported(NN_ISA_AVX512))
            peak512 = LETHE_MAX(peak512, peak_avx512());
        if (nn_isa_supported(NN_ISA_AVX2))
            peak2 = LETHE_MAX(peak2, peak_avx2());
    }
    double peak = peak512 > peak2 ? peak512 : peak2;
    printf("kernels: %s; clock ~%.2f GHz (add chain)\n", nn_isa_name(nn_isa_current()), ghz);
    printf("fp32 FMA peak, one core: avx512 %.1f GFLOP/s, avx2 %.1f GFLOP/s "
           "(= %.1f and %.1f FLOP/cycle; Zen 4 nominal: 32)\n",
           peak512, peak2, peak512 / ghz, peak2 / ghz);
    if (peak <= 0)
        peak = ghz * 4; /* scalar machine: whatever */

    nn_pool *pool = NULL;
    if (threads > 1 && nn_pool_create(&pool, threads) != 0)
        return 1;
    if (threads > 1 || wall)
        bench_clock = CLOCK_MONOTONIC;
    for (int isa = NN_ISA_SCALAR; isa <= NN_ISA_AVX512; isa++) {
        if (want <= NN_ISA_AVX512 && want != isa && want >= 0)
            continue;
        if (want > NN_ISA_AVX512 && isa == NN_ISA_SCALAR)
            continue; /* "default": the optimised ones only */
        if (!nn_isa_supported((nn_isa)isa))
            continue;
        run_net("face ResNet-34 convs (150x150 chip)", resnet,
                (int)(sizeof(resnet) / sizeof(resnet[0])), (nn_isa)isa, pool, budget, peak);
        if (mobile)
            run_net("SSD MobileNet v1 pointwise (512x512)", mobilenet,
                    (int)(sizeof(mobilenet) / sizeof(mobilenet[0])), (nn_isa)isa, pool,
                    budget, peak);
        if (mobile)
            bench_dwconv((nn_isa)isa, budget);
    }
    nn_pool_destroy(pool);
    bench_pool(2);
    return 0;
}
