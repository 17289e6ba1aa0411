/*
 * bench_detect.c: SSD MobileNet v1 detection time per photo, as the peer
 * (tools/ref/bench.mjs --mode ssd) measures it: photos decoded before the
 * clock starts, then N detections (pad, resize, network, NMS) cycling over
 * the photos after a warm-up pass. Prints one JSON line.
 *
 *   bench_detect [--n 20] [--threads N] [--models DIR] PHOTO...
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "face/detect.h"
#include "lethe.h"
#include "nn/nn.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    int n = 20, threads = 0, first = 1, precision = LETHE_PRECISION_DEFAULT;
    const char *models = getenv("LETHE_MODELS") ? getenv("LETHE_MODELS") : "models";
    char msg[400];

    for (; first < argc && argv[first][0] == '-'; first++) {
        if (!strcmp(argv[first], "--n") && first + 1 < argc)
            n = atoi(argv[++first]);
        else if (!strcmp(argv[first], "--threads") && first + 1 < argc)
            threads = atoi(argv[++first]);
        else if (!strcmp(argv[first], "--models") && first + 1 < argc)
            models = argv[++first];
        else if (!strcmp(argv[first], "--int8"))
            precision = LETHE_PRECISION_INT8;
        else {
            fprintf(stderr, "usage: bench_detect [--n 20] [--threads N] [--models DIR] [--int8] "
                            "PHOTO...\n");
            return 2;
        }
    }
    int nphotos = argc - first;
    if (nphotos < 1 || n < 1) {
        fprintf(stderr, "bench_detect: no photos\n");
        return 2;
    }
    lethe_image **imgs = calloc((size_t)nphotos, sizeof(*imgs));
    for (int i = 0; i < nphotos; i++)
        if (lethe_image_load(argv[first + i], NULL, &imgs[i], msg, sizeof(msg)) != LETHE_OK) {
            fprintf(stderr, "bench_detect: %s\n", msg);
            return 1;
        }
    nn_init();
    ssd_net *net = NULL;
    nn_pool *pool = NULL;
    if (ssd_net_load_precision(models, precision, &net, msg, sizeof(msg)) != LETHE_OK) {
        fprintf(stderr, "bench_detect: %s\n", msg);
        return 1;
    }
    nn_pool_create(&pool, threads);
    int faces = 0;
    for (int i = 0; i < nphotos; i++) { /* warm-up */
        face_det *d = NULL;
        int k = 0;
        ssd_net_detect(net, imgs[i]->rgb, imgs[i]->width, imgs[i]->height, 0.5f, 100, &d, &k,
                       pool);
        free(d);
    }
    double *t = calloc((size_t)n, sizeof(double)), sum = 0;
    for (int r = 0; r < n; r++) {
        lethe_image *img = imgs[r % nphotos];
        face_det *d = NULL;
        int k = 0;
        double t0 = now_ms();
        ssd_net_detect(net, img->rgb, img->width, img->height, 0.5f, 100, &d, &k, pool);
        t[r] = now_ms() - t0;
        sum += t[r];
        faces += k;
        free(d);
    }
    qsort(t, (size_t)n, sizeof(double), cmp_double);
    printf("{\"mode\":\"%s\",\"n\":%d,\"photos\":%d,\"threads\":%d,\"kernels\":\"%s\","
           "\"ms_per_photo\":%.3f,\"ms_median\":%.3f,\"ms_min\":%.3f,\"faces\":%d}\n",
           ssd_net_is_int8(net) ? "ssd-int8" : "ssd", n, nphotos, nn_pool_size(pool), nn_isa_name(nn_isa_current()), sum / n, t[n / 2],
           t[0], faces);
    free(t);
    nn_pool_destroy(pool);
    ssd_net_free(net);
    for (int i = 0; i < nphotos; i++)
        lethe_image_free(imgs[i]);
    free(imgs);
    return 0;
}
