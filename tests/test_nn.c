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
 * The int8 forms: VNNI kernels bit-exact with the scalar reference, and
 * within the error bound of their quantisation steps of fp32.
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
    /* The u8 output (for int8 layers) is the fp32 output, quantised. */
    const float out_max = 1.5f; /* some outputs clamp */
    uint8_t *q_want = malloc(nout ? nout : 1), *q_got = malloc(nout ? nout : 1);
    size_t ss = nn_dwconv_u8_scratch_size(&d, h, w, pool2);
    void *scratch = lethe_malloc_aligned(ss ? ss : 64);
    for (int isa = NN_ISA_SCALAR; isa <= NN_ISA_AVX512; isa++) {
        if (!nn_isa_supported((nn_isa)isa))
            continue;
        nn_dwconv_forward_isa((nn_isa)isa, &d, in, h, w, got, NULL);
        nn_int8_quantize_isa(NN_ISA_SCALAR, got, nout, out_max, q_want);
        for (int with_pool = 0; with_pool <= 1; with_pool++) {
            memset(q_got, 0x5a, nout);
            nn_dwconv_forward_u8_isa((nn_isa)isa, &d, in, h, w, q_got, out_max, scratch,
                                     with_pool ? pool2 : NULL);
            if (memcmp(q_got, q_want, nout) != 0) {
                fprintf(stderr, "    %s dw u8 %dx%d k%d c%d s%d pool %d differs\n",
                        nn_isa_name((nn_isa)isa), h, w, k, c, stride, with_pool);
                CHECK(!"u8 output = quantised fp32 output");
            }
        }
    }
    lethe_free_aligned(scratch);
    free(q_got);
    free(q_want);
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

/* ---- int8 convolutions ---------------------------------------------- */

/*
 * The int8 kernels must equal the scalar reference exactly: the input
 * quantisation bit for bit, the int32 sums, and the fp32 epilogue (the same
 * operations in the same order). The int8 form itself must stay within the
 * error bound its quantisation steps allow (nn.h): per output
 *   scale * sum_k (|x_k| w_step / 2 + |w_k| in_step / 2 + w_step in_step / 4)
 * (w_step = 0 for weights on a uint8 grid, held exactly) plus
 * NN_TOL_INT8_ROUND * (1 + |y|) + 1e-6 * scale * sum_k |x_k w_k| for fp32
 * rounding on both sides. The u8-in/u8-out paths (nn_dwconv_forward_u8,
 * nn_conv_forward_u8) must equal the fp32-in ones bit for bit.
 */
#define NN_TOL_INT8_ROUND 1e-5

static double worst_int8_bound; /* the largest error / bound seen */

static void test_int8_quantize_exact(void)
{
    if (!nn_int8_isa_supported(NN_ISA_AVX512))
        SKIP("no AVX-512 VNNI: nothing to compare with the reference");
    enum { N = 300 };
    float x[N];
    uint8_t a[N], b[N];
    const float in_max = 6.0f, inv = 255.0f / in_max;
    for (int i = 0; i < N; i++)
        x[i] = frand() * 8.0f; /* negatives and values past in_max too */
    /* exact ties (half to even), the ends, NaN, infinities, -0 */
    x[0] = 0.5f / inv;
    x[1] = 1.5f / inv;
    x[2] = 254.5f / inv;
    x[3] = in_max;
    x[4] = -0.0f;
    x[5] = NAN;
    x[6] = INFINITY;
    x[7] = -INFINITY;
    x[8] = 1e-30f;
    for (int n = 0; n <= N; n += (n < 70 ? 1 : 37)) {
        int off = n % 3; /* unaligned starts */
        if (n + off > N)
            continue;
        memset(a, 0xaa, sizeof(a));
        memset(b, 0xaa, sizeof(b));
        nn_int8_quantize_isa(NN_ISA_SCALAR, x + off, (size_t)n, in_max, a);
        nn_int8_quantize_isa(NN_ISA_AVX512, x + off, (size_t)n, in_max, b);
        if (memcmp(a, b, sizeof(a)) != 0) {
            fprintf(stderr, "    quantize n=%d differs from the reference\n", n);
            CHECK(!"quantisation bit-exact");
            break;
        }
    }
    nn_int8_quantize_isa(NN_ISA_SCALAR, x, 9, in_max, a);
    CHECK_EQ_INT(a[0], 0);   /* 0.5 -> 0 (even) */
    CHECK_EQ_INT(a[1], 2);   /* 1.5 -> 2 */
    CHECK_EQ_INT(a[2], 254); /* 254.5 -> 254 */
    CHECK_EQ_INT(a[3], 255);
    CHECK_EQ_INT(a[4], 0);
    CHECK_EQ_INT(a[5], 0); /* NaN */
    CHECK_EQ_INT(a[6], 255);
    CHECK_EQ_INT(a[7], 0);
    CHECK_EQ_INT(a[8], 0);
}

/* The raw int32 sums of the VNNI tiles against the reference, every tile
 * shape and column tail, K not a multiple of 4, rows further apart than K. */
static void test_int8_gemm_exact(void)
{
    static const int ks[] = {1, 3, 4, 12, 32, 100, 513, 1024};
    static const int couts[] = {1, 9, 16, 24, 33, 64, 100, 130};
    static const int ms[] = {1, 5, 13, 14, 29, 97};
    if (!nn_int8_isa_supported(NN_ISA_AVX512))
        SKIP("no AVX-512 VNNI: nothing to compare with the reference");
    int bad = 0, cases = 0;
    for (size_t a = 0; a < LETHE_ARRAY_LEN(ks); a++)
        for (size_t b = 0; b < LETHE_ARRAY_LEN(couts); b++) {
            int k = ks[a], cout = couts[b];
            nn_conv c;
            float *w = rand_floats((size_t)k * cout, -1.0f, 1.0f);
            CHECK_EQ_INT(nn_conv_init(&c, 1, 1, k, cout, 1, NN_PAD_SAME, NN_ACT_NONE, w, NULL,
                                      NULL),
                         0);
            CHECK_EQ_INT(nn_conv_quantize(&c, 6.0f), 0);
            for (size_t d = 0; d < LETHE_ARRAY_LEN(ms); d++) {
                int m = ms[d];
                size_t lda = (size_t)((k + 3) & ~3) + (d % 2 ? 8 : 0);
                uint8_t *q = calloc((size_t)m * lda, 1);
                for (int r = 0; r < m; r++)
                    for (int i = 0; i < k; i++) { /* the extremes often */
                        rng = rng * 6364136223846793005ull + 1;
                        q[(size_t)r * lda + i] = (uint8_t)(i % 7 == 0 ? 255 : rng >> 56);
                    }
                int32_t *ref = malloc((size_t)m * cout * sizeof(int32_t));
                int32_t *got = malloc((size_t)m * cout * sizeof(int32_t));
                nn_int8_gemm_isa(NN_ISA_SCALAR, &c, q, lda, m, ref, NULL);
                for (int pass = 0; pass < 2; pass++) {
                    memset(got, 0x55, (size_t)m * cout * sizeof(int32_t));
                    nn_int8_gemm_isa(NN_ISA_AVX512, &c, q, lda, m, got, pass ? pool2 : NULL);
                    if (memcmp(got, ref, (size_t)m * cout * sizeof(int32_t)) != 0) {
                        if (bad < 3)
                            fprintf(stderr, "    gemm m=%d k=%d cout=%d pool=%d differs\n", m,
                                    k, cout, pass);
                        bad++;
                    }
                }
                cases++;
                free(got);
                free(ref);
                free(q);
            }
            nn_conv_free(&c);
            free(w);
        }
    CHECK_EQ_INT(bad, 0);
    fprintf(stderr, "  %d int8 GEMM shapes bit-exact\n", cases);
}

/* Error bound of the int8 form on one output (see above), in double. */
static double int8_bound(const nn_conv *c, const float *in, int h, int w, int oy, int ox,
                         int co, float in_max, double w_step, double ref)
{
    int pt = nn_pad_before(h, c->kh, c->stride, c->pad);
    int pl = nn_pad_before(w, c->kw, c->stride, c->pad);
    double in_step = in_max / 255.0, sum = 0, mag = 0;
    for (int ky = 0; ky < c->kh; ky++)
        for (int kx = 0; kx < c->kw; kx++) {
            int iy = oy * c->stride - pt + ky, ix = ox * c->stride - pl + kx;
            if (iy < 0 || iy >= h || ix < 0 || ix >= w)
                continue;
            for (int ci = 0; ci < c->cin; ci++) {
                double x = fabs(in[((size_t)iy * w + ix) * c->cin + ci]);
                double wk = fabs(c->w[(((size_t)ky * c->kw + kx) * c->cin + ci) * c->cout + co]);
                sum += x * w_step / 2 + wk * in_step / 2 + w_step * in_step / 4;
                mag += x * wk;
            }
        }
    double scale = fabs(c->scale[co]);
    return scale * sum + NN_TOL_INT8_ROUND * (1.0 + fabs(ref)) + 1e-6 * scale * mag;
}

/*
 * grid: weights on an affine grid of 256 steps, both ends used (as tfjs
 * quantises them): the int8 form holds them exactly (zero point), so the
 * bound loses its weight terms.
 */
static void check_int8_conv(const conv_case *cc, int grid)
{
    nn_conv c;
    const float in_max = 6.0f;
    int kw = cc->kw ? cc->kw : cc->k;
    size_t kk = (size_t)cc->k * kw * cc->cin;
    float wscale = 1.0f / sqrtf((float)kk);
    float *w = rand_floats(kk * cc->cout, -wscale, wscale);
    if (grid) {
        double lo = -0.8 * wscale, st = 1.7 * wscale / 255; /* not centred on 0 */
        for (size_t i = 0; i < kk * cc->cout; i++)
            w[i] = (float)(lo + st * (i == 0 ? 0 : i == 1 ? 255 : (int)((frand() + 1) * 127.9)));
    }
    float *sc = cc->no_affine ? NULL : rand_floats((size_t)cc->cout, 0.5f, 1.5f);
    float *sh = cc->no_affine ? NULL : rand_floats((size_t)cc->cout, -0.5f, 0.5f);
    char what[160];

    snprintf(what, sizeof(what), "int8 %dx%d k%dx%d %d->%d s%d %s act%d%s%s%s", cc->h, cc->w,
             cc->k, kw, cc->cin, cc->cout, cc->stride, cc->pad == NN_PAD_SAME ? "same" : "valid",
             cc->act, cc->residual ? " res" : "", cc->no_affine ? " noaffine" : "",
             grid ? " grid" : "");
    CHECK_EQ_INT(nn_conv_init(&c, cc->k, kw, cc->cin, cc->cout, cc->stride, cc->pad, cc->act,
                              w, sc, sh),
                 0);
    CHECK(!nn_conv_is_quantized(&c));
    CHECK_EQ_INT(nn_conv_quantize(&c, in_max), 0);
    CHECK(nn_conv_is_quantized(&c));
    int oh, ow;
    nn_conv_out_hw(&c, cc->h, cc->w, &oh, &ow);
    size_t nin = (size_t)cc->h * cc->w * cc->cin, nout = (size_t)oh * ow * cc->cout;
    float *in = rand_floats(nin, 0.0f, in_max); /* ReLU6 outputs */
    float *res = cc->residual ? rand_floats(nout, -1.0f, 1.0f) : NULL;
    float *f32 = malloc((nout ? nout : 1) * sizeof(float));
    float *ref = malloc((nout ? nout : 1) * sizeof(float));
    float *got = malloc((nout ? nout : 1) * sizeof(float));
    float *got2 = malloc((nout ? nout : 1) * sizeof(float));
    nn_conv_forward_isa(NN_ISA_SCALAR, &c, in, cc->h, cc->w, f32, res, NULL, NULL);
    nn_conv_forward_int8_isa(NN_ISA_SCALAR, &c, in, cc->h, cc->w, ref, res, NULL, NULL);

    /* The reference int8 form against fp32, within the bound. */
    int bad = 0, differs = 0;
    for (int oy = 0; oy < oh; oy++)
        for (int ox = 0; ox < ow; ox++)
            for (int co = 0; co < cc->cout; co++) {
                size_t i = ((size_t)oy * ow + ox) * cc->cout + co;
                double maxabs = 0;
                for (size_t k = 0; k < kk; k++)
                    maxabs = fmax(maxabs, fabs(c.w[k * cc->cout + co]));
                double bound = int8_bound(&c, in, cc->h, cc->w, oy, ox, co, in_max,
                                          grid ? 0.0 : (float)(maxabs / 127.0f), f32[i]);
                double d = fabs((double)ref[i] - f32[i]);
                differs += ref[i] != f32[i];
                worst_int8_bound = fmax(worst_int8_bound, d / bound);
                if (!(d <= bound)) {
                    if (bad < 3)
                        fprintf(stderr, "    %s: [%zu] %.9g vs fp32 %.9g (bound %.3g)\n", what,
                                i, ref[i], f32[i], bound);
                    bad++;
                }
            }
    CHECK_EQ_INT(bad, 0);
    CHECK(nout == 0 || differs > 0); /* it did run in int8 */

    /* The VNNI kernels against the reference: identical, with any pool. */
    size_t ss = nn_conv_scratch_size(&c, cc->h, cc->w, pool2);
    void *scratch = lethe_malloc_aligned(ss ? ss : 64);
    if (nn_int8_isa_supported(NN_ISA_AVX512)) {
        memset(got, 0xff, nout * sizeof(float));
        nn_conv_forward_int8_isa(NN_ISA_AVX512, &c, in, cc->h, cc->w, got, res, scratch, NULL);
        memset(got2, 0xff, nout * sizeof(float));
        nn_conv_forward_int8_isa(NN_ISA_AVX512, &c, in, cc->h, cc->w, got2, res, scratch, pool2);
        int mismatch = 0;
        for (size_t i = 0; i < nout; i++)
            if (!(got[i] == ref[i]) || !(got2[i] == ref[i])) {
                if (mismatch < 3)
                    fprintf(stderr, "    %s: [%zu] %.9g / %.9g (pool) vs reference %.9g\n",
                            what, i, got[i], got2[i], ref[i]);
                mismatch++;
            }
        CHECK_EQ_INT(mismatch, 0);
    }
    /* The same on the input quantised beforehand (nn_conv_forward_u8). */
    uint8_t *inq = malloc(nin ? nin : 1);
    nn_int8_quantize_isa(NN_ISA_SCALAR, in, nin, in_max, inq);
    for (int isa = NN_ISA_SCALAR; isa <= NN_ISA_AVX512; isa += NN_ISA_AVX512) {
        for (int with_pool = 0; with_pool <= 1; with_pool++) {
            memset(got, 0xff, nout * sizeof(float));
            nn_conv_forward_u8_isa((nn_isa)isa, &c, inq, cc->h, cc->w, got, res, scratch,
                                   with_pool ? pool2 : NULL);
            int mismatch = 0;
            for (size_t i = 0; i < nout; i++)
                mismatch += !(got[i] == ref[i]);
            if (mismatch) {
                fprintf(stderr, "    %s: u8 input, %s, pool %d: %d differ from the reference\n",
                        what, nn_isa_name((nn_isa)isa), with_pool, mismatch);
                CHECK(!"u8 input gives the int8 reference");
            }
        }
    }
    free(inq);
    /* nn_conv_forward takes the int8 form exactly when it is available. */
    if (nn_int8_available())
        nn_conv_forward_int8_isa(NN_ISA_AVX512, &c, in, cc->h, cc->w, got, res, scratch, NULL);
    else
        nn_conv_forward_isa(nn_isa_current(), &c, in, cc->h, cc->w, got, res, scratch, NULL);
    memset(got2, 0xff, nout * sizeof(float));
    nn_conv_forward(&c, in, cc->h, cc->w, got2, res, scratch, pool2);
    CHECK(nout == 0 || memcmp(got2, got, nout * sizeof(float)) == 0);
    lethe_free_aligned(scratch);
    free(got2);
    free(got);
    free(ref);
    free(f32);
    free(res);
    free(in);
    free(sh);
    free(sc);
    free(w);
    nn_conv_free(&c);
}

static void test_int8_conv_shapes(void)
{
    static const conv_case cases[] = {
        /* SSD's pointwise layers (smaller images), extra layers, heads */
        {40, 40, 1, 32, 64, 1, NN_PAD_SAME, NN_ACT_RELU6, 0, 1, 0},
        {20, 20, 1, 64, 128, 1, NN_PAD_SAME, NN_ACT_RELU6, 0, 1, 0},
        {16, 16, 1, 128, 128, 1, NN_PAD_SAME, NN_ACT_RELU6, 0, 0, 0},
        {12, 12, 1, 256, 512, 1, NN_PAD_SAME, NN_ACT_RELU6, 0, 0, 0},
        {8, 8, 1, 512, 512, 1, NN_PAD_SAME, NN_ACT_RELU6, 0, 1, 0},
        {5, 5, 1, 1024, 1024, 1, NN_PAD_SAME, NN_ACT_RELU6, 0, 1, 0},
        {6, 6, 1, 1024, 256, 1, NN_PAD_SAME, NN_ACT_RELU6, 0, 1, 0},
        {8, 8, 3, 256, 512, 2, NN_PAD_SAME, NN_ACT_RELU6, 0, 1, 0},
        {2, 2, 3, 64, 128, 2, NN_PAD_SAME, NN_ACT_RELU6, 0, 1, 0},
        {9, 9, 1, 512, 12, 1, NN_PAD_SAME, NN_ACT_NONE, 0, 1, 0},
        {7, 7, 1, 1024, 18, 1, NN_PAD_SAME, NN_ACT_NONE, 0, 1, 0},
        /* odd: K not a multiple of 4, one channel, tails, every activation,
         * residual, strides, VALID, non-square kernels */
        {7, 5, 1, 3, 17, 1, NN_PAD_SAME, NN_ACT_RELU, 1, 0, 0},
        {6, 6, 1, 1, 1, 1, NN_PAD_SAME, NN_ACT_NONE, 0, 0, 0},
        {9, 7, 3, 5, 33, 1, NN_PAD_SAME, NN_ACT_LEAKY, 0, 0, 0},
        {9, 9, 3, 17, 70, 2, NN_PAD_VALID, NN_ACT_RELU6, 1, 0, 0},
        {11, 6, 5, 4, 9, 2, NN_PAD_SAME, NN_ACT_RELU, 0, 0, 0},
        {8, 8, 1, 24, 40, 2, NN_PAD_SAME, NN_ACT_NONE, 0, 0, 0},
        {5, 9, 1, 8, 136, 1, NN_PAD_SAME, NN_ACT_RELU, 0, 0, 3},
        {1, 1, 3, 256, 256, 1, NN_PAD_SAME, NN_ACT_RELU6, 1, 0, 0},
        {3, 3, 5, 7, 3, 1, NN_PAD_VALID, NN_ACT_NONE, 0, 0, 0},
    };
    for (size_t i = 0; i < LETHE_ARRAY_LEN(cases); i++)
        for (int grid = 0; grid <= 1; grid++)
            check_int8_conv(&cases[i], grid);
}

static void test_int8_quantize_args(void)
{
    float w[3 * 3 * 8 * 20];
    for (size_t i = 0; i < LETHE_ARRAY_LEN(w); i++)
        w[i] = frand();
    w[5 * 20 + 7] = 0.0f;
    nn_conv c;
    CHECK_EQ_INT(nn_conv_init(&c, 3, 3, 8, 20, 1, NN_PAD_SAME, NN_ACT_RELU, w, NULL, NULL), 0);
    CHECK_EQ_INT(nn_conv_quantize(&c, 0.0f), -1);
    CHECK_EQ_INT(nn_conv_quantize(&c, -1.0f), -1);
    CHECK_EQ_INT(nn_conv_quantize(&c, NAN), -1);
    CHECK(!nn_conv_is_quantized(&c));
    CHECK(!nn_conv_is_quantized(NULL));
    CHECK_EQ_INT(nn_conv_quantize(NULL, 6.0f), -1);
    /* allocation failures leave the layer fp32 only, and working */
    int succeeded = 0;
    for (long fail = 0; fail < 16 && !succeeded; fail++) {
        lethe_alloc_fail_after(fail);
        int r = nn_conv_quantize(&c, 6.0f);
        lethe_alloc_fail_after(-1);
        if (r == 0) {
            succeeded = 1;
            CHECK(fail > 0);
        } else {
            CHECK_EQ_INT(r, -1);
            CHECK(!nn_conv_is_quantized(&c));
        }
    }
    CHECK(succeeded && nn_conv_is_quantized(&c));
    /* quantising again replaces the int8 form (no leak under ASan) */
    CHECK_EQ_INT(nn_conv_quantize(&c, 2.0f), 0);
    nn_conv_free(&c);
    CHECK(c.qpacked == NULL);
    /* a channel of zero weights gives its shift exactly (symmetric form:
     * these weights are on no grid of 256 steps) */
    float zw[4 * 3] = {0};
    float shift[3] = {0.25f, -0.5f, 1.0f};
    zw[1 * 3 + 1] = 1.0f;
    zw[3 * 3 + 1] = 0.1234567f;
    CHECK_EQ_INT(nn_conv_init(&c, 1, 1, 4, 3, 1, NN_PAD_SAME, NN_ACT_NONE, zw, NULL, shift), 0);
    CHECK_EQ_INT(nn_conv_quantize(&c, 6.0f), 0);
    float x[4] = {1, 2, 3, 4}, y[3];
    void *scratch = lethe_malloc_aligned(nn_conv_scratch_size(&c, 1, 1, NULL));
    nn_conv_forward_int8_isa(nn_isa_current(), &c, x, 1, 1, y, NULL, scratch, NULL);
    lethe_free_aligned(scratch);
    CHECK(y[0] == 0.25f && y[2] == 1.0f);
    CHECK_NEAR(y[1], 2.0f + 4.0f * 0.1234567f - 0.5f, 0.02);
    nn_conv_free(&c);
}

/* LETHE_INT8=0 turns the int8 kernels off (in a child: nn_init runs once). */
static int int8_under_env(const char *kernels, const char *int8)
{
    int fds[2];
    char buf[32] = {0};
    if (!self_path || pipe(fds) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        if (kernels)
            setenv("LETHE_KERNELS", kernels, 1);
        else
            unsetenv("LETHE_KERNELS");
        if (int8)
            setenv("LETHE_INT8", int8, 1);
        else
            unsetenv("LETHE_INT8");
        execl(self_path, self_path, "--print-int8", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    ssize_t got = read(fds[0], buf, sizeof(buf) - 1);
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    return got <= 0 ? -1 : atoi(buf);
}

static void test_int8_env(void)
{
    if (!self_path || access(self_path, X_OK) != 0)
        SKIP("cannot re-run the test binary");
    int vnni = nn_int8_isa_supported(NN_ISA_AVX512);
    fprintf(stderr, "  int8 kernels: %s\n", vnni ? "AVX-512 VNNI" : "none (fp32 fallback)");
    CHECK_EQ_INT(int8_under_env(NULL, NULL), vnni);
    CHECK_EQ_INT(int8_under_env(NULL, "1"), vnni);
    CHECK_EQ_INT(int8_under_env(NULL, "0"), 0);
    CHECK_EQ_INT(int8_under_env("avx2", NULL), 0);
    CHECK_EQ_INT(int8_under_env("scalar", NULL), 0);
    CHECK(!nn_int8_isa_supported(NN_ISA_AVX2));
    CHECK(!nn_int8_isa_supported(NN_ISA_SCALAR));
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
            CHECK(fail > 0);
            nn_dwconv_free(&d);
        } else {
            CHECK_EQ_INT(r, -1);
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
            CHECK(fail > 0);
            CHECK_EQ_INT(nn_pool_size(p), 3);
            nn_pool_destroy(p);
        } else {
            CHECK_EQ_INT(r, -1);
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
    if (argc > 1 && strcmp(argv[1], "--print-int8") == 0) {
        printf("%d\n", nn_int8_available());
        return 0;
    }
    self_path = "/proc/self/exe";
    test_select(argc, argv);
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
    RUN(test_int8_quantize_exact);
    RUN(test_int8_gemm_exact);
    RUN(test_int8_conv_shapes);
    RUN(test_int8_quantize_args);
    RUN(test_int8_env);
    RUN(test_alloc_failure);
    RUN(test_pool);
    nn_pool_destroy(pool2);
    fprintf(stderr, "  worst error / tolerance: auto %.3f, gemm %.3f, winograd %.3f\n",
            worst_ratio[NN_ALGO_AUTO], worst_ratio[NN_ALGO_GEMM],
            worst_ratio[NN_ALGO_WINOGRAD]);
    fprintf(stderr, "  int8 worst error / bound: %.3f\n", worst_int8_bound);
    return test_summary();
}
