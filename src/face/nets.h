/*
 * nets.h: the face-api.js networks that work on one face: the 68-point
 * landmark net (112x112 input) and the 128-D ResNet descriptor (150x150
 * input). Loaded nets are read-only and may be run from many threads at once;
 * each call brings its scratch memory (see *_scratch_size).
 */
#ifndef LETHE_FACE_NETS_H
#define LETHE_FACE_NETS_H

#include <stddef.h>
#include <stdint.h>

#include "nn/nn.h"

#define RESNET_INPUT 150
#define LM68_INPUT 112

typedef struct resnet resnet;

/* Load face_recognition_model from model_dir (digest-checked). exact = 1
 * keeps every convolution in the reference summation order (no Winograd),
 * for LETHE_PRECISION_FP32. */
int resnet_load(const char *model_dir, int exact, resnet **out, char *msg, size_t msg_len);
void resnet_free(resnet *net);
size_t resnet_scratch_size(const resnet *net, const nn_pool *pool);
/* input: 150x150x3 floats already normalised ((rgb - mean) / 255);
 * writes 128 floats. */
void resnet_forward(const resnet *net, const float *input, float *descriptor, void *scratch,
                    nn_pool *pool);
/* Bytes of working memory resnet_describe_rgb needs with this pool (or any
 * smaller one, NULL included). */
size_t resnet_work_size(const resnet *net, const nn_pool *pool);
/* The whole face-api computeFaceDescriptor on RGB8 pixels: pad to square
 * (centred), resize to 150 if needed, normalise, forward. work holds
 * resnet_work_size() bytes, 64-byte aligned (NULL: allocated here). */
int resnet_describe_rgb(const resnet *net, const uint8_t *rgb, int w, int h, float *descriptor,
                        nn_pool *pool, void *work);

typedef struct lm68 lm68;

int lm68_load(const char *model_dir, lm68 **out, char *msg, size_t msg_len);
void lm68_free(lm68 *net);
size_t lm68_scratch_size(const lm68 *net, const nn_pool *pool);
/* input: 112x112x3 normalised; writes the 136 raw outputs (x0, y0, x1, ...),
 * relative to the padded square input. */
void lm68_forward(const lm68 *net, const float *input, float *raw136, void *scratch,
                  nn_pool *pool);
/* face-api detectLandmarks on an RGB8 crop of w x h: points[68][2] in the
 * crop's pixels. */
int lm68_detect_rgb(const lm68 *net, const uint8_t *rgb, int w, int h, float points[68][2],
                    nn_pool *pool);

/* Mean RGB face-api subtracts before dividing by 255 (both nets). */
extern const float face_mean_rgb[3];

#endif
