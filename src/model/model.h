/*
 * model.h: loading TF.js "layers" weight files (a weights manifest JSON plus
 * its .bin shards) as shipped by @vladmandic/face-api, including uint8
 * {min, scale} quantisation, and checking them against known digests.
 */
#ifndef LETHE_MODEL_H
#define LETHE_MODEL_H

#include <stddef.h>

typedef struct lethe_weights lethe_weights;

/*
 * Load dir/<name>-weights_manifest.json and the shards it lists. Every tensor
 * is dequantised to float32 (int32 tensors too). Missing, truncated or
 * altered files fail with LETHE_ERR_MODEL and a message naming the file.
 * When check_digest is nonzero, the manifest and shards must match the
 * SHA-256 digests lethe was built against.
 */
int lethe_weights_load(const char *dir, const char *name, int check_digest,
                       lethe_weights **out, char *msg, size_t msg_len);
void lethe_weights_free(lethe_weights *w); /* NULL is fine */

/*
 * Parse a manifest (JSON text, not necessarily NUL-terminated) and the bytes
 * of all its shards concatenated in manifest order, from memory. This is
 * what lethe_weights_load does after reading the files, and the fuzz target.
 */
int lethe_weights_parse(const char *manifest, size_t manifest_len, const unsigned char *data,
                        size_t data_len, lethe_weights **out, char *msg, size_t msg_len);

/*
 * Find a tensor by name. Returns its data (owned by w) or NULL if absent.
 * rank and shape (up to 4 dims) are written when not NULL.
 */
const float *lethe_weights_find(const lethe_weights *w, const char *name, int *rank,
                                int shape[4]);

/*
 * Like find, but the tensor must exist with exactly this shape (rank given by
 * the count of dims; pass -1 as a dim to accept any size); otherwise returns
 * NULL and writes a message naming the tensor and the shapes.
 */
const float *lethe_weights_expect(const lethe_weights *w, const char *name, int rank,
                                  const int *shape, char *msg, size_t msg_len);

/* Number of tensors, and the i-th name (for diagnostics). */
int lethe_weights_count(const lethe_weights *w);
const char *lethe_weights_name(const lethe_weights *w, int i);

#endif
