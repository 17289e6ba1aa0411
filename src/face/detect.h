/*
 * detect.h: the two face detectors of face-api.js, re-implemented to give the
 * same numbers:
 *
 *   - SSD MobileNet v1 (ssd_*): 512x512 input scaled to [-1, 1], MobileNet v1
 *     body, six box predictors over 5118 anchors, greedy NMS at IoU 0.5.
 *   - the tiny face detector (tiny_*): a Tiny YOLO v2 variant with separable
 *     convolutions, input side a multiple of 32 (416 by default), five
 *     anchors per cell, NMS at IoU 0.4.
 *
 * A loaded net is read-only and may be used from many threads at once; each
 * call allocates its own buffers. Boxes come back in the input image's pixels,
 * mapped exactly as face-api.js maps them (including its clipping and its
 * correction for the bottom/right padding to a square), best score first.
 *
 * The lower-level pieces (input preparation, raw forward passes, anchors, the
 * two NMS variants, box mapping) are exposed for the tests and tools.
 */
#ifndef LETHE_FACE_DETECT_H
#define LETHE_FACE_DETECT_H

#include <stddef.h>
#include <stdint.h>

#include "nn/nn.h"

/* A detected face, in the input image's pixels. */
typedef struct face_det {
    float x, y, w, h; /* left, top, width, height */
    float score;      /* detector confidence in (0, 1) */
} face_det;

/* Largest image side the detectors accept (the input is never copied at full
 * size, so this bounds only index arithmetic). */
#define DETECT_MAX_SIDE 65535

/* ------------------------------------------------------------------ */
/* SSD MobileNet v1                                                     */
/* ------------------------------------------------------------------ */

#define SSD_INPUT_SIZE 512
#define SSD_NUM_ANCHORS 5118
#define SSD_IOU_THRESHOLD 0.5
#define SSD_DEFAULT_MIN_SCORE 0.5f
#define SSD_DEFAULT_MAX_RESULTS 100

typedef struct ssd_net ssd_net;

/* The number of anchors (SSD_NUM_ANCHORS). */
int ssd_num_anchors(void);

/*
 * Generate the anchors as the TF Object Detection API's
 * MultipleGridAnchorGenerator does for ssd_mobilenet_v1 (6 layers on 32, 16,
 * 8, 4, 2, 1 cells, scales 0.2..0.95, aspect ratios 1, 2, 1/2, 3, 1/3 plus an
 * interpolated scale, 3 boxes per cell in the lowest layer). Writes
 * SSD_NUM_ANCHORS * 4 floats [ymin, xmin, ymax, xmax]. face-api.js reads the
 * same numbers from the weights (Output/extra_dim); the tests check that
 * both agree.
 */
void ssd_anchors_generate(float *anchors);

/*
 * Load model_dir/ssd_mobilenetv1_model-* (digest-checked) and prepare the
 * layers. *out is a new net (ssd_net_free) or NULL on failure, with a message.
 * precision is an enum lethe_precision: the default and LETHE_PRECISION_FP32
 * keep every layer in fp32 (face-api.js's numbers within 1e-4);
 * LETHE_PRECISION_INT8 also prepares int8 forms of the layers whose inputs
 * are ReLU6 outputs (all but the first), run where the CPU has the int8
 * kernels (nn.h). ssd_net_load is ssd_net_load_precision with the default.
 */
int ssd_net_load(const char *model_dir, ssd_net **out, char *msg, size_t msg_len);
int ssd_net_load_precision(const char *model_dir, int precision, ssd_net **out, char *msg,
                           size_t msg_len);
/* Whether the net runs any layer in int8 (prepared so, and the CPU can). */
int ssd_net_is_int8(const ssd_net *net);
void ssd_net_free(ssd_net *net); /* NULL is fine */

/* The anchors the net decodes against (Output/extra_dim), 5118 * 4 floats. */
const float *ssd_net_anchors(const ssd_net *net);

/*
 * The raw network on a prepared 512x512x3 tensor (already x / 127.5 - 1):
 * boxes[SSD_NUM_ANCHORS * 4] as [top, left, bottom, right] relative to the
 * (square) input, scores[SSD_NUM_ANCHORS] (sigmoid of the face class).
 * pool may be NULL. Returns LETHE_OK or LETHE_ERR_NOMEM.
 */
int ssd_net_forward(const ssd_net *net, const float *input, float *boxes, float *scores,
                    nn_pool *pool);

/*
 * Detection on RGB8 pixels (rows packed), as faceapi.detectAllFaces(tensor,
 * new SsdMobilenetv1Options({minConfidence, maxResults})): pad to a square at
 * the bottom/right, resize to 512, normalise, forward, NMS at IoU 0.5, map
 * back. min_score in (0, 1) (<= 0: 0.5), max_results > 0 (<= 0: 100).
 * *out is a new array of *n faces (lethe_free), NULL when none.
 */
int ssd_net_detect(const ssd_net *net, const uint8_t *rgb, int w, int h, float min_score,
                   int max_results, face_det **out, int *n, nn_pool *pool);

/*
 * face-api's SSD non-maximum suppression (ssdMobilenetv1/nonMaxSuppression):
 * candidates with score > score_threshold, best first, kept unless their IoU
 * with a kept box exceeds iou_threshold; at most max_out. boxes are
 * [top, left, bottom, right]. Writes kept indices to selected (room for
 * min(max_out, n)) and returns their count, or -1 if memory ran out.
 */
int ssd_nms(const float *boxes, const float *scores, int n, int max_out, double iou_threshold,
            double score_threshold, int *selected);

/* IoU of two [top, left, bottom, right] boxes as face-api's SSD NMS computes it. */
double ssd_box_iou(const float *a, const float *b);

/*
 * Map one raw relative box to image pixels as SsdMobilenetv1.locateFaces
 * does for a w x h image: clip to [0, 1], undo the padding to a square, scale.
 * Returns 0 when face-api would reject the box (negative size), else 1.
 */
int ssd_map_box(const float box[4], float score, int w, int h, face_det *out);

/* ------------------------------------------------------------------ */
/* Tiny face detector                                                   */
/* ------------------------------------------------------------------ */

#define TINY_DEFAULT_INPUT_SIZE 416
#define TINY_IOU_THRESHOLD 0.4
#define TINY_DEFAULT_MIN_SCORE 0.5f
#define TINY_NUM_ANCHORS 5
#define TINY_BOX_ENCODING 5 /* x, y, w, h, score per anchor */
#define TINY_MAX_INPUT_SIZE 2048

typedef struct tiny_net tiny_net;

/* Anchor sizes in cells (face-api's tinyFaceDetector BOX_ANCHORS). */
extern const double tiny_anchors[TINY_NUM_ANCHORS][2];
/* The per-channel mean subtracted before dividing by 255 (MEAN_RGB). */
extern const float tiny_mean_rgb[3];

/* Output cells per side for an input side, or 0 if the side is not a
 * positive multiple of 32 no larger than TINY_MAX_INPUT_SIZE. */
int tiny_output_cells(int input_size);

/* Load model_dir/tiny_face_detector_model-* (digest-checked). */
int tiny_net_load(const char *model_dir, tiny_net **out, char *msg, size_t msg_len);
void tiny_net_free(tiny_net *net); /* NULL is fine */

/*
 * The raw network on a prepared size x size x 3 tensor (already
 * (x - mean) / 255): out receives cells x cells x (5 * 5) floats
 * (cells = tiny_output_cells(size)), the raw YOLO encodings.
 */
int tiny_net_forward(const tiny_net *net, const float *input, int size, float *out,
                     nn_pool *pool);

/*
 * Detection on RGB8 pixels as faceapi.detectAllFaces(tensor, new
 * TinyFaceDetectorOptions({inputSize, scoreThreshold})). input_size a
 * multiple of 32 (<= 0: 416); min_score in (0, 1) (<= 0: 0.5); max_results
 * <= 0 means no limit (face-api has none). *out as for ssd_net_detect.
 */
int tiny_net_detect(const tiny_net *net, const uint8_t *rgb, int w, int h, int input_size,
                    float min_score, int max_results, face_det **out, int *n, nn_pool *pool);

/* A box in face-api's Box form (x, y, width, height), in double as JS. */
typedef struct det_box {
    double x, y, w, h;
} det_box;

/* face-api's ops/iou (isIOU = true). */
double det_box_iou(const det_box *a, const det_box *b);

/*
 * face-api's ops/nonMaxSuppression: repeatedly take the best remaining
 * (ties: the later index) and drop the rest whose IoU with it exceeds
 * iou_threshold. Writes kept indices (room for n) and returns the count, or
 * -1 if memory ran out.
 */
int det_nms(const det_box *boxes, const double *scores, int n, double iou_threshold,
            int *picked);

/* ------------------------------------------------------------------ */
/* Shared helpers                                                       */
/* ------------------------------------------------------------------ */

/*
 * face-api's NetInput.toBatchTensor(size, isCenterInputs = false) on RGB8:
 * pad to a square of side max(w, h) with zeros at the bottom/right, then
 * tf.image.resizeBilinear to size x size (skipped when the side already is
 * size). Writes size * size * 3 floats (0..255), the same bits as
 * prep_pad_to_square + prep_resize_bilinear, without a full-size copy.
 */
void detect_prepare_input(const uint8_t *rgb, int w, int h, int size, float *out);

/* computeReshapedDimensions: the image's size inside the padded square once
 * scaled to input_size (JavaScript Math.round semantics). */
void detect_reshaped_dims(int w, int h, int input_size, int *rw, int *rh);

/* The double face-api.js would compare scores with for a float threshold:
 * 0.3f gives 0.3 (not 0.30000001192...). */
double detect_threshold(float t);

/* JavaScript's Math.round for finite doubles. */
double detect_js_round(double x);

/* Check detector arguments shared by both detect functions. */
int detect_check_image(const uint8_t *rgb, int w, int h, face_det **out, int *n);

#endif
