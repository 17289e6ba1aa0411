/*
 * test_nn.c: the nn layer. Every optimised kernel set the CPU supports is
 * held to the scalar reference, within a named tolerance, on the layer
 * shapes of the four face-api.js networks and on odd shapes (1x1 images,
 * one input channel, channel counts that are not multiples of a vector,
 * every activation, with and without residual, scale and shift); a pool
 * of 2 threads must give bit-identical results to no pool. Geometry,
 * pooling and the fully connected layer are checked on hand-computed
 * cases; allocation failures in the init functions on every allocation.
 * Dense convolutions run with each algorithm (GEMM, Winograd, automatic).
 */
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nn/nn.h"
#include "test.h"
#include "util/util.h"

/*
 * |optimised - reference| <= tol * (1 + |reference|). Both sum over k in the
 * same order in fp32; they differ by FMA contraction only, and with weights
 * scaled by 1/sqrt(K) the partial sums stay O(1).
 */
#define NN_TOL_FP32 1e-5
/* Winograd F(2x2, 3x3) sums transformed values in another order, with
 * constants 1/2 and 1/4: its rounding is a few times larger (measured:
 * about 2.5x, worst 1.2e-6 on these cases). */
#define NN_TOL_WINOGRAD 3e-5

static double worst_ratio[3]; /* the largest error / tolerance seen, by algorithm */

static uint64_t rng = 0x2545f4914f6cdd1dull;

static float frand(void) /* uniform in [-1, 1) */
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / (1 << 24))) * 2.0f - 1.0f;
}

static float *rand_floats(size_t n, float lo, float hi)
{
    float *p = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++)
        p[i] = lo + (hi - lo) * (frand() * 0.5f + 0.5f);
    return p;
}

static nn_pool *pool2;

/* Compare got to ref, report the first few differences. */
static int compare(const float *got, const float *ref, size_t n, double tol, const char *what,
                   int algo)
{
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (d / (tol * (1.0 + fabs(ref[i]))) > worst_ratio[algo])
            worst_ratio[algo] = d / (tol * (1.0 + fabs(ref[i])));
        if (!(d <= tol * (1.0 + fabs(ref[i])))) {
            if (bad < 3)
                fprintf(stderr, "    %s: [%zu] %.9g vs reference %.9g\n", what, i, got[i],
                        ref[i]);
            bad++;
        }
    }
    return bad;
}

typedef struct conv_case {
    int h, w, k, cin, cout, stride;
    nn_pad pad;
    nn_act act;
    int residual;   /* add a residual */
    int no_affine;  /* pass scale = shift = NULL */
    int kw;         /* kernel width when != k (0: square) */
} conv_case;

static void check_conv(const conv_case *cc)
{
    nn_conv c;
    int kw = cc->kw ? cc->kw : cc->k;
    size_t kk = (size_t)cc->k * kw * cc->cin;
    float wscale = 1.0f / sqrtf((float)kk);
    float *w = rand_floats(kk * cc->cout, -wscale, wscale);
    float *sc = cc->no_affine ? NULL : rand_floats((size_t)cc->cout, 0.5f, 1.5f);
    float *sh = cc->no_affine ? NULL : rand_floats((size_t)cc->cout, -0.5f, 0.5f);
    char what[160];

    snprintf(what, sizeof(what), "%dx%d k%dx%d %d->%d s%d %s act%d%s%s", cc->h, cc->w, cc->k,
             kw, cc->cin, cc->cout, cc->stride, cc->pad == NN_PAD_SAME ? "same" : "valid",
             cc->act, cc->residual ? " res" : "", cc->no_affine ? " noaffine" : "");
    CHECK_EQ_INT(nn_conv_init(&c, cc->k, kw, cc->cin, cc->cout, cc->stride, cc->pad, cc->act,
                              w, sc, sh),
                 0);
    int oh, ow;
    nn_conv_out_hw(&c, cc->h, cc->w, &oh, &ow);
    size_t nin = (size_t)cc->h * cc->w * cc->cin, nout = (size_t)oh * ow * cc->cout;
    float *in = rand_floats(nin, -1.0f, 1.0f);
    float *res = cc->residual ? rand_floats(nout, -1.0f, 1.0f) : NULL;
    float *ref = malloc((nout ? nout : 1) * sizeof(float));
    float *got = malloc((nout ? nout : 1) * sizeof(float));
    float *got2 = malloc((nout ? nout : 1) * sizeof(float));
    nn_conv_forward_isa(NN_ISA_SCALAR, &c, in, cc->h, cc->w, ref, res, NULL, NULL);
    /* Every algorithm: AUTO, GEMM, WINOGRAD (which is GEMM where it does not
     * apply); the scratch size is asked again, as it depends on it. */
    for (int algo = NN_ALGO_AUTO; algo <= NN_ALGO_WINOGRAD; algo++) {
        CHECK_EQ_INT(nn_conv_set_algo(&c, (nn_algo)algo), 0);
        size_t ss = nn_conv_scratch_size(&c, cc->h, cc->w, pool2);
        void *scratch = lethe_malloc_aligned(ss);
        double tol = algo == NN_ALGO_GEMM ? NN_TOL_FP32 : NN_TOL_WINOGRAD;
        for (int isa = NN_ISA_AVX2; isa <= NN_ISA_AVX512; isa++) {
            if (!nn_isa_supported((nn_isa)isa))
                continue;
            char label[240];
            snprintf(label, sizeof(label), "%s algo%d %s", nn_isa_name((nn_isa)isa), algo,
                     what);
            memset(got, 0xff, nout * sizeof(float));
            nn_conv_forward_isa((nn_isa)isa, &c, in, cc->h, cc->w, got, res, scratch, NULL);
            CHECK(compare(got, ref, nout, tol, label, algo) == 0);
            memset(got2, 0xff, nout * sizeof(float));
            nn_conv_forward_isa((nn_isa)isa, &c, in, cc->h, cc->w, got2, res, scratch, pool2);
            if (memcmp(got, got2, nout * sizeof(float)) != 0) {
                fprintf(stderr, "    %s: pool of 2 differs from no pool\n", label);
                CHECK(!"pool sizes 1 and 2 give identical results");
            }
        }
        lethe_free_aligned(scratch);
    }
    free(got2);
    free(got);
    free(ref);
    free(res);
    free(in);
    free(sh);
    free(sc);
    free(w);
    nn_conv_free(&c);
}

/* ---- geometry ----------------------------------------------------- */

static void test_geometry(void)
{
    CHECK_EQ_INT(nn_out_size(150, 7, 2, NN_PAD_VALID), 72);
    CHECK_EQ_INT(nn_out_size(72, 3, 2, NN_PAD_VALID), 35);
    CHECK_EQ_INT(nn_out_size(35, 3, 2, NN_PAD_VALID), 17);
    CHECK_EQ_INT(nn_out_size(17, 3, 2, NN_PAD_VALID), 8);
    CHECK_EQ_INT(nn_out_size(8, 3, 2, NN_PAD_VALID), 3);
    CHECK_EQ_INT(nn_out_size(3, 3, 2, NN_PAD_VALID), 1);
    CHECK_EQ_INT(nn_out_size(2, 3, 1, NN_PAD_VALID), 0);
    CHECK_EQ_INT(nn_out_size(512, 3, 2, NN_PAD_SAME), 256);
    CHECK_EQ_INT(nn_out_size(5, 3, 2, NN_PAD_SAME), 3);
    CHECK_EQ_INT(nn_out_size(13, 2, 1, NN_PAD_SAME), 13);
    CHECK_EQ_INT(nn_out_size(112, 7, 2, NN_PAD_VALID), 53);
    /* SAME, stride 2, even size: pad_total = 1, the smaller half (0) before. */
    CHECK_EQ_INT(nn_pad_before(512, 3, 2, NN_PAD_SAME), 0);
    CHECK_EQ_INT(nn_pad_before(4, 3, 2, NN_PAD_SAME), 0);
    CHECK_EQ_INT(nn_pad_before(5, 3, 2, NN_PAD_SAME), 1); /* total 2 */
    CHECK_EQ_INT(nn_pad_before(416, 3, 1, NN_PAD_SAME), 1);
    CHECK_EQ_INT(nn_pad_before(13, 2, 1, NN_PAD_SAME), 0); /* total 1, after */
    CHECK_EQ_INT(nn_pad_before(6, 5, 2, NN_PAD_SAME), 1);  /* total 3 */
    CHECK_EQ_INT(nn_pad_before(1, 3, 1, NN_PAD_SAME), 1);
    CHECK_EQ_INT(nn_pad_before(150, 7, 2, NN_PAD_VALID), 0);
}

static void test_isa_names(void)
{
    nn_isa cur = nn_init();
    CHECK(nn_isa_supported(NN_ISA_SCALAR));
    CHECK(nn_isa_supported(cur));
    CHECK(strcmp(nn_isa_name(NN_ISA_SCALAR), "scalar") == 0);
    CHECK(strcmp(nn_isa_name(NN_ISA_AVX2), "avx2") == 0);
    CHECK(strcmp(nn_isa_name(NN_ISA_AVX512), "avx512") == 0);
    CHECK_EQ_INT(nn_isa_current(), cur);
    if (nn_isa_supported(NN_ISA_AVX512))
        CHECK(nn_isa_supported(NN_ISA_AVX2));
    fprintf(stderr, "  kernels in use: %s (avx2 %s, avx512 %s)\n", nn_isa_name(cur),
            nn_isa_supported(NN_ISA_AVX2) ? "yes" : "no",
            nn_isa_supported(NN_ISA_AVX512) ? "yes" : "no");
}

/* Run this test binary again with LETHE_KERNELS set; it prints nn_init(). */
static int isa_under_env(const char *value, const char *self)
{
    int fds[2];
    char buf[32] = {0};
    if (pipe(fds) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        setenv("LETHE_KERNELS", value, 1);
        execl(self, self, "--print-isa", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    ssize_t got = read(fds[0], buf, sizeof(buf) - 1);
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    if (got <= 0)
        return -1;
    return atoi(buf);
}

static const char *self_path;

static void test_env_forces_kernels(void)
{
    if (!self_path || access(self_path, X_OK) != 0)
        SKIP("cannot re-run the test binary");
    CHECK_EQ_INT(isa_under_env("scalar", self_path), NN_ISA_SCALAR);
    CHECK_EQ_INT(isa_under_env("avx2", self_path),
                 nn_isa_supported(NN_ISA_AVX2) ? NN_ISA_AVX2 : NN_ISA_SCALAR);
    int best = nn_isa_supported(NN_ISA_AVX512) ? NN_ISA_AVX512
               : nn_isa_supported(NN_ISA_AVX2) ? NN_ISA_AVX2
                                               : NN_ISA_SCALAR;
    CHECK_EQ_INT(isa_under_env("avx512", self_path), best);
    CHECK_EQ_INT(isa_under_env("bogus", self_path), best);
}

/* ---- dense convolution against the reference ----------------------- */

static void test_conv_resnet_shapes(void)
{
    static const conv_case cases[] = {
        {150, 150, 7, 3, 32, 2, NN_PAD_VALID, NN_ACT_RELU, 0, 0, 0},
        {35, 35, 3, 32, 32, 1, NN_PAD_SAME, NN_ACT_RELU, 0, 0, 0},
        {35, 35, 3, 32, 32, 1, NN_PAD_SAME, NN_ACT_RELU, 1, 0, 0},
        {35, 35, 3, 32, 64, 2, NN_PAD_VALID, NN_ACT_RELU, 0, 0, 0},
        {17, 17, 3, 64, 64, 1, NN_PAD_SAME, NN_ACT_RELU, 1, 0, 0},
        {17, 17, 3, 64, 128, 2, NN_PAD_VALID, NN_ACT_RELU, 0, 0, 0},
        {8, 8, 3, 128, 128, 1, NN_PAD_SAME, NN_ACT_RELU, 1, 0, 0},
        {8, 8, 3, 128, 256, 2, NN_PAD_VALID, NN_ACT_RELU, 0, 0, 0},
        {3, 3, 3, 256, 256, 1, NN_PAD_SAME, NN_ACT_RELU, 1, 0, 0},
        {3, 3, 3, 256, 256, 2, NN_PAD_VALID, NN_ACT_RELU, 0, 0, 0},
        {1, 1, 3, 256, 256, 1, NN_PAD_SAME, NN_ACT_RELU, 1, 0, 0},
    };
    for (size_t i = 0; i < LETHE_ARRAY_LEN(cases); i++)
        check_conv(&cases[i]);
}

static void test_conv_mobilenet_shapes(void)
{
    static const conv_case cases[] = {
        {512, 512, 3, 3, 32, 2, NN_PAD_SAME, NN_ACT_RELU6, 0, 0, 0},
        {256, 256, 1, 32, 64, 1, NN_PAD_SAME, NN_ACT_RELU6, 0, 0, 0},
        {128, 128, 1, 64, 128, 1, NN_PAD_SAME, NN_ACT_RELU6, 0, 0, 0},
        {128, 128, 1, 128, 128, 1, NN_PAD_SAME, NN_ACT_RELU6, 0, 0, 0},
        {64, 64, 1, 128, 256, 1, NN_PAD_SAME, NN_ACT_RELU6, 0, 0, 0},
        {64, 64, 1, 256, 256, 1, NN_PAD_SAME, NN_ACT_RELU6, 0, 0, 0},
        {32, 32, 1, 256, 512, 1, NN_PAD_SAME, NN_ACT_RELU6, 0, 0, 0},
        {32, 32, 1, 512, 512, 1, NN_PAD_SAME, NN_ACT_RELU6, 0, 0, 0},
        {16, 16, 1, 512, 1024, 1, NN_PAD_SAME, NN_ACT_RELU6, 0, 0, 0},
        {16, 16, 1, 1024, 1024, 1, NN_PAD_SAME, NN_ACT_RELU6, 0, 0, 0},
        /* extra feature layers and box predictors */
        {16, 16, 1, 1024, 256, 1, NN_PAD_SAME, NN_ACT_RELU6, 0, 0, 0},
        {16, 16, 3, 256, 512, 2, NN_PAD_SAME, NN_ACT_RELU6, 0, 0, 0},
        {8, 8, 1, 512, 128, 1, NN_PAD_SAME, NN_ACT_RELU6, 0, 0, 0},
        {8, 8, 3, 128, 256, 2, NN_PAD_SAME, NN_ACT_RELU6, 0, 0, 0},
        {4, 4, 3, 128, 256, 2, NN_PAD_SAME, NN_ACT_RELU6, 0, 0, 0},
        {2, 2, 3, 64, 128, 2, NN_PAD_SAME, NN_ACT_RELU6, 0, 0, 0},
        {32, 32, 1, 512, 12, 1, NN_PAD_SAME, NN_ACT_NONE, 0, 0, 0},
        {32, 32, 1, 512, 9, 1, NN_PAD_SAME, NN_ACT_NONE, 0, 0, 0},
        {16, 16, 1, 1024, 24, 1, NN_PAD_SAME, NN_ACT_NONE, 0, 0, 0},
        {16, 16, 1, 1024, 18, 1, NN_PAD_SAME, NN_ACT_NONE, 0, 0, 0},
        {8, 8, 1, 512, 24, 1, NN_PAD_SAME, NN_ACT_NONE, 0, 0, 0},
        {4, 4, 1, 256, 18, 1, NN_PAD_SAME, NN_ACT_NONE, 0, 0, 0},
        {2, 2, 1, 256, 24, 1, NN_PAD_SAME, NN_ACT_NONE, 0, 0, 0},
        {1, 1, 1, 128, 18, 1, NN_PAD_SAME, NN_ACT_NONE, 0, 0, 0},
    };
    for (size_t i = 0; i < LETHE_ARRAY_LEN(cases); i++)
        check_conv(&cases[i]);
}

static void test_conv_yolo_landmark_shapes(void)
{
    static const conv_case cases[] = {
        /* tiny YOLO: pointwise halves of the separable convs, leaky ReLU */
        {416, 416, 3, 3, 16, 1, NN_PAD_SAME, NN_ACT_LEAKY, 0, 0, 0},
        {208, 208, 1, 16, 32, 1, NN_PAD_SAME, NN_ACT_LEAKY, 0, 0, 0},
        {104, 104, 1, 32, 64, 1, NN_PAD_SAME, NN_ACT_LEAKY, 0, 0, 0},
        {52, 52, 1, 64, 128, 1, NN_PAD_SAME, NN_ACT_LEAKY, 0, 0, 0},
        {26, 26, 1, 128, 256, 1, NN_PAD_SAME, NN_ACT_LEAKY, 0, 0, 0},
        {13, 13, 1, 256, 512, 1, NN_PAD_SAME, NN_ACT_LEAKY, 0, 0, 0},
        {13, 13, 1, 512, 1024, 1, NN_PAD_SAME, NN_ACT_LEAKY, 0, 0, 0},
        {13, 13, 1, 1024, 25, 1, NN_PAD_SAME, NN_ACT_NONE, 0, 0, 0},
        {13, 13, 1, 1024, 30, 1, NN_PAD_SAME, NN_ACT_NONE, 0, 0, 0},
        /* 68 landmarks: dense blocks on 112x112 */
        {112, 112, 3, 3, 32, 2, NN_PAD_SAME, NN_ACT_RELU, 0, 0, 0},
        {56, 56, 1, 32, 32, 1, NN_PAD_SAME, NN_ACT_RELU, 0, 0, 0},
        {56, 56, 1, 32, 64, 2, NN_PAD_SAME, NN_ACT_RELU, 0, 0, 0},
        {28, 28, 1, 64, 64, 1, NN_PAD_SAME, NN_ACT_RELU, 1, 0, 0},
        {28, 28, 1, 64, 128, 2, NN_PAD_SAME, NN_ACT_RELU, 0, 0, 0},
        {14, 14, 1, 128, 128, 1, NN_PAD_SAME, NN_ACT_RELU, 1, 0, 0},
        {14, 14, 1, 128, 256, 2, NN_PAD_SAME, NN_ACT_RELU, 0, 0, 0},
        {7, 7, 1, 256, 256, 1, NN_PAD_SAME, NN_ACT_RELU, 1, 0, 0},
        {7, 7, 1, 256, 136, 1, NN_PAD_SAME, NN_ACT_NONE, 0, 0, 0},
    };
    for (size_t i = 0; i < LETHE_ARRAY_LEN(cases); i++)
        check_conv(&cases[i]);
}

static void test_conv_odd_shapes(void)
{
    static const int sizes[] = {1, 2, 5, 7};
    static const int cins[] = {1, 3, 17};
    static const int couts[] = {1, 9, 25, 136};
    static const int ks[] = {1, 3, 5};
    int n = 0;
    for (size_t a = 0; a < LETHE_ARRAY_LEN(sizes); a++)
        for (size_t b = 0; b < LETHE_ARRAY_LEN(cins); b++)
            for (size_t c = 0; c < LETHE_ARRAY_LEN(couts); c++)
                for (size_t d = 0; d < LETHE_ARRAY_LEN(ks); d++)
                    for (int stride = 1; stride <= 2; stride++)
                        for (int pad = 0; pad <= 1; pad++) {
                            conv_case cc = {sizes[a], sizes[(a + c) % 4], ks[d], cins[b],
                                            couts[c], stride, (nn_pad)pad,
                                            (nn_act)(n % 4), n % 3 == 0, n % 5 == 0, 0};
                            check_conv(&cc);
                            n++;
                        }
    /* non-square kernels, and many output rows with a tail of each tile */
    conv_case extra[] = {
        {9, 11, 3, 5, 40, 1, NN_PAD_SAME, NN_ACT_LEAKY, 1, 0, 1},
        {9, 11, 1, 5, 40, 2, NN_PAD_SAME, NN_ACT_RELU6, 0, 0, 3},
        {31, 29, 3, 16, 48, 1, NN_PAD_SAME, NN_ACT_NONE, 1, 1, 0},
        {61, 7, 1, 33, 80, 1, NN_PAD_VALID, NN_ACT_RELU, 1, 0, 0},
        {20, 20, 2, 8, 65, 2, NN_PAD_SAME, NN_ACT_RELU6, 0, 0, 0},
        /* taller than the rows mode handles: gathered (im2col) instead */
        {21, 6, 17, 2, 20, 1, NN_PAD_SAME, NN_ACT_RELU, 1, 0, 1},
        /* stride 2 SAME on even and odd sizes, wide outputs (rows mode) */
        {40, 41, 3, 8, 24, 2, NN_PAD_SAME, NN_ACT_RELU6, 0, 0, 0},
        {41, 40, 3, 6, 24, 2, NN_PAD_SAME, NN_ACT_LEAKY, 1, 0, 0},
        {30, 60, 5, 4, 16, 2, NN_PAD_VALID, NN_ACT_NONE, 0, 1, 0},
        /* input rows a multiple of 2 KiB apart (short tiles) */
        {6, 9, 1, 512, 40, 1, NN_PAD_SAME, NN_ACT_RELU, 1, 0, 0},
    };
    for (size_t i = 0; i < LETHE_ARRAY_LEN(extra); i++)
        check_conv(&extra[i]);
}

/* ---- depthwise convolution ---------------------------------------- */

static void check_dwconv(int h, int w, int k, int c, int stride, nn_pad pad, nn_act act,
                         int no_affine)
{
    nn_dwconv d;
    float *wt = rand_floats((size_t)k * k * c, -0.5f, 0.5f);
    float *sc = no_affine ? NULL : rand_floats((size_t)c, 0.5f, 1.5f);
    float *sh = no_affine ? NULL : rand_floats((size_t)c, -0.5f, 0.5f);
    char what[128];

    CHECK_EQ_INT(nn_dwconv_init(&d, k, c, stride, pad, act, wt, sc, sh), 0);
    int oh = nn_out_size(h, k, stride, pad), ow = nn_out_size(w, k, stride, pad);
    size_t nout = (size_t)oh * ow * c;
    float *in = rand_floats((size_t)h * w * c, -1.0f, 1.0f);
    float *ref = malloc((nout ? nout : 1) * sizeof(float));
    float *got = malloc((nout ? nout : 1) * sizeof(float));
    float *got2 = malloc((nout ? nout : 1) * sizeof(float));
    nn_dwconv_forward_isa(NN_ISA_SCALAR, &d, in, h, w, ref, NULL);
    for (int isa = NN_ISA_AVX2; isa <= NN_ISA_AVX512; isa++) {
        if (!nn_isa_supported((nn_isa)isa))
            continue;
        snprintf(what, sizeof(what), "%s dw %dx%d k%d c%d s%d %s act%d", nn_isa_name((nn_isa)isa),
                 h, w, k, c, stride, pad == NN_PAD_SAME ? "same" : "valid", act);
        memset(got, 0xff, nout * sizeof(float));
        nn_dwconv_forward_isa((nn_isa)isa, &d, in, h, w, got, NULL);
        CHECK(compare(got, ref, nout, NN_TOL_FP32, what, NN_ALGO_GEMM) == 0);
        memset(got2, 0xff, nout * sizeof(float));
        nn_dwconv_forward_isa((nn_isa)isa, &d, in, h, w, got2, pool2);
        CHECK(memcmp(got, got2, nout * sizeof(float)) == 0);
    }
    free(got2);
    free(got);
    free(ref);
    free(in);
    free(sh);
    free(sc);
    free(wt);
    nn_dwconv_free(&d);
}

static void test_dwconv_net_shapes(void)
{
    /* SSD MobileNet v1 (512x512 input) */
    check_dwconv(256, 256, 3, 32, 1, NN_PAD_SAME, NN_ACT_RELU6, 0);
    check_dwconv(256, 256, 3, 64, 2, NN_PAD_SAME, NN_ACT_RELU6, 0);
    check_dwconv(128, 128, 3, 128, 1, NN_PAD_SAME, NN_ACT_RELU6, 0);
    check_dwconv(128, 128, 3, 128, 2, NN_PAD_SAME, NN_ACT_RELU6, 0);
    check_dwconv(64, 64, 3, 256, 1, NN_PAD_SAME, NN_ACT_RELU6, 0);
    check_dwconv(64, 64, 3, 256, 2, NN_PAD_SAME, NN_ACT_RELU6, 0);
    check_dwconv(32, 32, 3, 512, 1, NN_PAD_SAME, NN_ACT_RELU6, 0);
    check_dwconv(32, 32, 3, 512, 2, NN_PAD_SAME, NN_ACT_RELU6, 0);
    check_dwconv(16, 16, 3, 1024, 1, NN_PAD_SAME, NN_ACT_RELU6, 0);
    /* tiny YOLO (416x416), leaky ReLU */
    check_dwconv(416, 416, 3, 3, 1, NN_PAD_SAME, NN_ACT_LEAKY, 0);
    check_dwconv(208, 208, 3, 16, 1, NN_PAD_SAME, NN_ACT_LEAKY, 0);
    check_dwconv(104, 104, 3, 32, 1, NN_PAD_SAME, NN_ACT_LEAKY, 0);
    check_dwconv(13, 13, 3, 512, 1, NN_PAD_SAME, NN_ACT_LEAKY, 0);
    /* landmarks (112x112) */
    check_dwconv(56, 56, 3, 32, 1, NN_PAD_SAME, NN_ACT_RELU, 0);
    check_dwconv(56, 56, 3, 32, 2, NN_PAD_SAME, NN_ACT_RELU, 0);
    check_dwconv(14, 14, 3, 128, 1, NN_PAD_SAME, NN_ACT_NONE, 1);
    check_dwconv(7, 7, 3, 256, 1, NN_PAD_SAME, NN_ACT_NONE, 0);
}

static void test_dwconv_odd_shapes(void)
{
    static const int sizes[] = {1, 2, 5, 7};
    static const int chans[] = {1, 3, 16, 20, 33};
    int n = 0;
    for (size_t a = 0; a < LETHE_ARRAY_LEN(sizes); a++)
        for (size_t b = 0; b < LETHE_ARRAY_LEN(chans); b++)
            for (int k = 1; k <= 5; k += 2)
                for (int stride = 1; stride <= 2; stride++)
                    for (int pad = 0; pad <= 1; pad++, n++)
                        check_dwconv(sizes[a], sizes[(a + b) % 4], k, chans[b], stride,
                                     (nn_pad)pad, (nn_act)(n % 4), n % 3 == 0);
}

/* ---- pooling, fully connected, elementwise ------------------------- */

static void test_pooling_hand_cases(void)
{
    /* 3x3, one channel, 1..9 */
    const float in9[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    float out[16];

    /* maxpool 2/2 SAME: pad_total 1 after; windows {0,1} and {2} */
    nn_maxpool(in9, 3, 3, 1, 2, 2, NN_PAD_SAME, out);
    CHECK_EQ_INT(out[0], 5);
    CHECK_EQ_INT(out[1], 6);
    CHECK_EQ_INT(out[2], 8);
    CHECK_EQ_INT(out[3], 9);

    /* avgpool 3/1 SAME divides by the in-image count */
    nn_avgpool(in9, 3, 3, 1, 3, 1, NN_PAD_SAME, out);
    CHECK_NEAR(out[0], 12.0 / 4, 1e-6); /* 1 2 4 5 */
    CHECK_NEAR(out[1], 21.0 / 6, 1e-6); /* 1..6 */
    CHECK_NEAR(out[4], 45.0 / 9, 1e-6);
    CHECK_NEAR(out[8], 28.0 / 4, 1e-6); /* 5 6 8 9 */

    /* maxpool 3/2 SAME on 4x4 (1..16): out 2x2, pad 0 before, 1 after */
    float in16[16];
    for (int i = 0; i < 16; i++)
        in16[i] = (float)(i + 1);
    nn_maxpool(in16, 4, 4, 1, 3, 2, NN_PAD_SAME, out);
    CHECK_EQ_INT(out[0], 11);
    CHECK_EQ_INT(out[1], 12);
    CHECK_EQ_INT(out[2], 15);
    CHECK_EQ_INT(out[3], 16);

    /* negative inputs: padding must not win a max */
    float neg[4] = {-4, -3, -2, -1};
    nn_maxpool(neg, 2, 2, 1, 3, 1, NN_PAD_SAME, out);
    CHECK_EQ_INT(out[0], -1);
    CHECK_EQ_INT(out[3], -1);

    /* maxpool 2/1 SAME (tiny YOLO's last pool) keeps the size */
    nn_maxpool(in9, 3, 3, 1, 2, 1, NN_PAD_SAME, out);
    CHECK_EQ_INT(out[0], 5);
    CHECK_EQ_INT(out[2], 6); /* window {2} x {0,1} rows -> 3, 6 */
    CHECK_EQ_INT(out[8], 9);

    /* avgpool 2/2 VALID, two channels */
    const float in2c[2 * 2 * 2] = {1, 10, 2, 20, 3, 30, 4, 40};
    nn_avgpool(in2c, 2, 2, 2, 2, 2, NN_PAD_VALID, out);
    CHECK_NEAR(out[0], 2.5, 1e-6);
    CHECK_NEAR(out[1], 25.0, 1e-6);

    /* avgpool 7/2 VALID on 7x7 is the mean */
    float in49[49];
    for (int i = 0; i < 49; i++)
        in49[i] = (float)i;
    nn_avgpool(in49, 7, 7, 1, 7, 2, NN_PAD_VALID, out);
    CHECK_NEAR(out[0], 24.0, 1e-5);
}

static void test_fc_add_act(void)
{
    const float in[2] = {1, 2};
    const float w[6] = {1, 2, 3, 4, 5, 6}; /* [2][3] */
    const float b[3] = {0.5f, 0, -1};
    float out[3];
    nn_fc(in, 2, w, b, 3, out);
    CHECK_NEAR(out[0], 9.5, 1e-6);
    CHECK_NEAR(out[1], 12.0, 1e-6);
    CHECK_NEAR(out[2], 14.0, 1e-6);
    nn_fc(in, 2, w, NULL, 3, out);
    CHECK_NEAR(out[0], 9.0, 1e-6);

    float x[5] = {-2, -0.5f, 0, 3, 7};
    float y[5];
    nn_add(x, x, y, 5);
    CHECK_NEAR(y[4], 14.0, 0);
    memcpy(y, x, sizeof(x));
    nn_apply_act(y, 5, NN_ACT_RELU6);
    CHECK(y[0] == 0 && y[1] == 0 && y[3] == 3 && y[4] == 6);
    memcpy(y, x, sizeof(x));
    nn_apply_act(y, 5, NN_ACT_LEAKY);
    CHECK_NEAR(y[0], -0.2, 1e-7);
    CHECK(y[4] == 7);
    memcpy(y, x, sizeof(x));
    nn_apply_act(y, 5, NN_ACT_RELU);
    CHECK(y[1] == 0 && y[4] == 7);
    memcpy(y, x, sizeof(x));
    nn_apply_act(y, 5, NN_ACT_NONE);
    CHECK(memcmp(x, y, sizeof(x)) == 0);
}

/* A conv layer whose 1x1 input makes the expected value easy to write. */
static void test_conv_hand_case(void)
{
    /* 3x3 SAME conv, 1 -> 2 channels, on a 1x1 image: only the centre tap
     * sees the pixel. */
    float w[9 * 2] = {0};
    w[4 * 2 + 0] = 2.0f;
    w[4 * 2 + 1] = -3.0f;
    const float scale[2] = {0.5f, 1.0f}, shift[2] = {1.0f, 0.0f};
    const float in[1] = {4.0f};
    const float res[2] = {0.25f, 100.0f};
    nn_conv c;
    float out[2];
    CHECK_EQ_INT(nn_conv_init(&c, 3, 3, 1, 2, 1, NN_PAD_SAME, NN_ACT_RELU6, w, scale, shift),
                 0);
    for (int isa = NN_ISA_SCALAR; isa <= NN_ISA_AVX512; isa++) {
        if (!nn_isa_supported((nn_isa)isa))
            continue;
        size_t ss = nn_conv_scratch_size(&c, 1, 1, NULL);
        void *scratch = lethe_malloc_aligned(ss);
        nn_conv_forward_isa((nn_isa)isa, &c, in, 1, 1, out, res, scratch, NULL);
        CHECK_NEAR(out[0], 0.5 * 8 + 1 + 0.25, 1e-6); /* 5.25 */
        CHECK_NEAR(out[1], 6.0, 0);                   /* -12 + 100, clipped */
        lethe_free_aligned(scratch);
    }
    nn_conv_free(&c);
}

/* ---- allocation failure -------------------------------------------- */

static void test_alloc_failure(void)
{
    float w[3 * 3 * 8 * 20];
    for (size_t i = 0; i < LETHE_ARRAY_LEN(w); i++)
        w[i] = frand();
    int succeeded = 0;
    for (long fail = 0; fail < 64 && !succeeded; fail++) {
        nn_conv c;
        lethe_alloc_fail_after(fail);
        int r = nn_conv_init(&c, 3, 3, 8, 20, 1, NN_PAD_SAME, NN_ACT_RELU, w, NULL, NULL);
        lethe_alloc_fail_after(-1);
        if (r == 0) {
            succeeded = 1;
            CHECK(fail > 0);
            nn_conv_free(&c);
        } else {
            CHECK_EQ_INT(r, -1);
            CHECK(c.w == NULL && c.scale == NULL && c.shift == NULL && c.packed == NULL);
        }
    }
    CHECK(succeeded);

    succeeded = 0;
    for (long fail = 0; fail < 64 && !succeeded; fail++) {
        nn_dwconv d;
        lethe_alloc_fail_after(fail);
        int r = nn_dwconv_init(&d, 3, 20, 1, NN_PAD_SAME, NN_ACT_RELU6, w, w, NULL);
        lethe_alloc_fail_after(-1);
        if (r == 0) {
            succeeded = 1;
            nn_dwconv_free(&d);
        } else {
            CHECK(d.w == NULL && d.packed == NULL);
        }
    }
    CHECK(succeeded);

    succeeded = 0;
    for (long fail = 0; fail < 16 && !succeeded; fail++) {
        nn_pool *p = (nn_pool *)1;
        lethe_alloc_fail_after(fail);
        int r = nn_pool_create(&p, 3);
        lethe_alloc_fail_after(-1);
        if (r == 0) {
            succeeded = 1;
            CHECK_EQ_INT(nn_pool_size(p), 3);
            nn_pool_destroy(p);
        } else {
            CHECK(p == NULL);
        }
    }
    CHECK(succeeded);

    /* nn_conv_set_algo: a failed repack leaves the layer as it was */
    {
        nn_conv c;
        CHECK_EQ_INT(nn_conv_init(&c, 3, 3, 8, 20, 1, NN_PAD_SAME, NN_ACT_RELU, w, NULL, NULL),
                     0);
        CHECK_EQ_INT(c.algo, NN_ALGO_AUTO);
        CHECK_EQ_INT(nn_conv_set_algo(&c, NN_ALGO_GEMM), 0);
        lethe_alloc_fail_after(0);
        CHECK_EQ_INT(nn_conv_set_algo(&c, NN_ALGO_WINOGRAD), -1);
        lethe_alloc_fail_after(-1);
        CHECK_EQ_INT(c.algo, NN_ALGO_GEMM);
        CHECK_EQ_INT(nn_conv_set_algo(&c, NN_ALGO_WINOGRAD), 0);
        CHECK_EQ_INT(c.algo, NN_ALGO_WINOGRAD);
        nn_conv_free(&c);
    }

    /* invalid arguments */
    nn_conv c;
    CHECK_EQ_INT(nn_conv_init(&c, 0, 3, 1, 1, 1, NN_PAD_SAME, NN_ACT_NONE, w, NULL, NULL), -1);
    CHECK_EQ_INT(nn_conv_init(&c, 3, 3, 1, 1, 0, NN_PAD_SAME, NN_ACT_NONE, w, NULL, NULL), -1);
    nn_conv_free(NULL);
    nn_dwconv_free(NULL);
    nn_pool_destroy(NULL);
}

/* ---- the thread pool ----------------------------------------------- */

typedef struct pool_probe {
    int hits[1000];
    int max_worker;
    int bad_worker;
} pool_probe;

static void probe_task(void *arg, int i, int worker)
{
    pool_probe *p = arg;
    __atomic_add_fetch(&p->hits[i], 1, __ATOMIC_RELAXED);
    if (worker < 0 || worker > p->max_worker)
        __atomic_store_n(&p->bad_worker, 1, __ATOMIC_RELAXED);
}

typedef struct caller_arg {
    nn_pool *pool;
    int failures;
} caller_arg;

#include <pthread.h>

static void *pool_caller(void *arg)
{
    caller_arg *ca = arg;
    pool_probe *probe = malloc(sizeof(*probe));
    for (int round = 0; round < 300; round++) {
        int n = 1 + round % 37;
        memset(probe, 0, sizeof(*probe));
        probe->max_worker = nn_pool_size(ca->pool) - 1;
        nn_pool_run(ca->pool, n, probe_task, probe);
        for (int i = 0; i < n; i++)
            if (probe->hits[i] != 1)
                ca->failures++;
        if (probe->bad_worker)
            ca->failures++;
    }
    free(probe);
    return NULL;
}

static void test_pool(void)
{
    nn_pool *p;
    pool_probe *probe = calloc(1, sizeof(*probe));
    CHECK_EQ_INT(nn_pool_size(NULL), 1);
    CHECK_EQ_INT(nn_pool_create(&p, 4), 0);
    CHECK_EQ_INT(nn_pool_size(p), 4);
    for (int round = 0; round < 2000; round++) {
        int n = 1 + (round * 7) % 1000;
        memset(probe, 0, sizeof(*probe));
        probe->max_worker = 3;
        nn_pool_run(p, n, probe_task, probe);
        int ok = !probe->bad_worker;
        for (int i = 0; i < n; i++)
            ok &= probe->hits[i] == 1;
        if (!ok) {
            CHECK(!"every task ran once, on a valid worker");
            break;
        }
        if (round % 500 == 0)
            usleep(2000); /* let the workers fall asleep */
    }
    /* several callers at once are serialised */
    pthread_t th[3];
    caller_arg ca[3];
    for (int i = 0; i < 3; i++) {
        ca[i].pool = p;
        ca[i].failures = 0;
        pthread_create(&th[i], NULL, pool_caller, &ca[i]);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ_INT(ca[i].failures, 0);
    }
    nn_pool_destroy(p);

    /* threads <= 0: one per core; NULL runs serially */
    CHECK_EQ_INT(nn_pool_create(&p, 0), 0);
    CHECK(nn_pool_size(p) >= 1);
    nn_pool_destroy(p);
    memset(probe, 0, sizeof(*probe));
    nn_pool_run(NULL, 10, probe_task, probe);
    CHECK_EQ_INT(probe->hits[9], 1);
    free(probe);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--print-isa") == 0) {
        printf("%d\n", (int)nn_init());
        return 0;
    }
    self_path = "/proc/self/exe";
    if (nn_pool_create(&pool2, 2) != 0) {
        fprintf(stderr, "cannot create a pool\n");
        return 1;
    }
    RUN(test_isa_names);
    RUN(test_env_forces_kernels);
    RUN(test_geometry);
    RUN(test_pooling_hand_cases);
    RUN(test_fc_add_act);
    RUN(test_conv_hand_case);
    RUN(test_conv_resnet_shapes);
    RUN(test_conv_mobilenet_shapes);
    RUN(test_conv_yolo_landmark_shapes);
    RUN(test_conv_odd_shapes);
    RUN(test_dwconv_net_shapes);
    RUN(test_dwconv_odd_shapes);
    RUN(test_alloc_failure);
    RUN(test_pool);
    nn_pool_destroy(pool2);
    fprintf(stderr, "  worst error / tolerance: auto %.3f, gemm %.3f, winograd %.3f\n",
            worst_ratio[NN_ALGO_AUTO], worst_ratio[NN_ALGO_GEMM],
            worst_ratio[NN_ALGO_WINOGRAD]);
    return test_summary();
}
