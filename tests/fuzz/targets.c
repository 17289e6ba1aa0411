/*
 * targets.c: the fuzz targets, one per parser of hostile input, shared by
 * the libFuzzer binaries and the corpus replayer (replay.c). Each takes one
 * input, must never crash, leak or trip a sanitizer whatever the bytes, and
 * returns 0 (libFuzzer's convention; a nonzero return is a harness bug).
 *
 *   image    lethe_image_decode, at full and reduced scale, 16 Mpx cap
 *   weights  lethe_weights_parse on "manifest JSON" NUL "shard bytes"
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "lethe.h"
#include "model/model.h"

typedef int (*lethe_fuzz_fn)(const uint8_t *data, size_t size);

int lethe_fuzz_image(const uint8_t *data, size_t size);
int lethe_fuzz_weights(const uint8_t *data, size_t size);
lethe_fuzz_fn lethe_fuzz_find(const char *name);
const char *lethe_fuzz_names(void);

/* Touch every pixel so that a short buffer shows up under ASan. */
static unsigned image_checksum(const lethe_image *img)
{
    size_t n = (size_t)img->width * (size_t)img->height * 3;
    unsigned sum = 0;

    for (size_t i = 0; i < n; i++)
        sum += img->rgb[i];
    return sum;
}

int lethe_fuzz_image(const uint8_t *data, size_t size)
{
    static const struct {
        int min_decode_side; /* 0: full scale */
        int apply_orientation;
    } passes[] = {{0, 1}, {48, 1}, {1, 0}};
    volatile unsigned sink = 0;

    for (size_t i = 0; i < sizeof(passes) / sizeof(passes[0]); i++) {
        lethe_image_options opt;
        lethe_image *img = NULL;
        char msg[256];
        int st;

        lethe_image_options_init(&opt);
        opt.max_pixels = 16u * 1000u * 1000u;
        opt.min_decode_side = passes[i].min_decode_side;
        opt.apply_orientation = passes[i].apply_orientation;
        st = lethe_image_decode(data, size, &opt, &img, msg, sizeof(msg));
        if (st == LETHE_OK) {
            if (!img || img->width <= 0 || img->height <= 0 || img->orig_width < img->width ||
                img->orig_height < img->height)
                __builtin_trap(); /* contract broken */
            sink += image_checksum(img);
        } else if (img != NULL || msg[0] == '\0') {
            __builtin_trap(); /* a failure must leave no image and explain itself */
        }
        lethe_image_free(img);
        if (st != LETHE_OK)
            break; /* the other passes would fail the same way */
    }
    (void)sink;
    return 0;
}

int lethe_fuzz_weights(const uint8_t *data, size_t size)
{
    static const unsigned char no_blob[1];
    const uint8_t *nul = size ? memchr(data, 0, size) : NULL;
    size_t manifest_len = nul ? (size_t)(nul - data) : size;
    const unsigned char *blob = nul ? nul + 1 : no_blob;
    size_t blob_len = nul ? size - manifest_len - 1 : 0;
    lethe_weights *w = NULL;
    char msg[256];
    volatile float sink = 0;

    if (lethe_weights_parse(size ? (const char *)data : "", manifest_len, blob, blob_len, &w, msg,
                            sizeof(msg)) != LETHE_OK) {
        if (w != NULL)
            __builtin_trap();
        return 0;
    }
    for (int i = 0; i < lethe_weights_count(w); i++) {
        int rank = 0, shape[4] = {0};
        const char *name = lethe_weights_name(w, i);
        const float *t = name ? lethe_weights_find(w, name, &rank, shape) : NULL;
        size_t n = 1;
        if (!t)
            __builtin_trap(); /* every listed tensor must be found */
        for (int d = 0; d < rank && d < 4; d++)
            n *= (size_t)shape[d];
        for (size_t k = 0; k < n; k++)
            sink += t[k];
    }
    lethe_weights_free(w);
    (void)sink;
    return 0;
}

static const struct {
    const char *name;
    lethe_fuzz_fn fn;
} fuzz_targets[] = {
    {"image", lethe_fuzz_image},
    {"weights", lethe_fuzz_weights},
};

/* The target called name, or NULL. */
lethe_fuzz_fn lethe_fuzz_find(const char *name)
{
    for (size_t i = 0; i < sizeof(fuzz_targets) / sizeof(fuzz_targets[0]); i++)
        if (strcmp(fuzz_targets[i].name, name) == 0)
            return fuzz_targets[i].fn;
    return NULL;
}

/* The target names, for usage messages. */
const char *lethe_fuzz_names(void) { return "image, weights"; }
