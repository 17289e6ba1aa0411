/*
 * tfjs.c: the TF.js weights loader (see model.h).
 *
 * A manifest is a JSON array of groups {"paths": [shard...], "weights":
 * [{"name", "shape", "dtype", "quantization"?}...]}; each group's shards,
 * concatenated, hold its tensors back to back. Quantised tensors store uint8
 * or uint16 codes q with value = q * scale + min (computed in double, as
 * tfjs does in JavaScript, then rounded to float32; int32 tensors are rounded
 * to integers), or float16 values.
 */
#include "model.h"

#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "util/json.h"
#include "util/util.h"

#define MAX_TENSORS 4096
#define MAX_ELEMENTS (64u * 1024u * 1024u) /* per tensor */
#define MAX_MANIFEST_BYTES (4u * 1024u * 1024u)
#define MAX_SHARD_BYTES (512u * 1024u * 1024u)

typedef struct tensor {
    char *name;
    int rank;
    int shape[4];
    size_t count;
    float *data;
} tensor;

struct lethe_weights {
    int n;
    tensor *t;
};

/* The SHA-256 digests of the files of @vladmandic/face-api 1.7.15. */
static const struct {
    const char *name;
    const char *manifest_sha256;
    const char *bin_sha256;
} known_models[] = {
    {"ssd_mobilenetv1_model", "888f744dffbc84f5f060d1f8427d9742341943a2dfaaf9205d10029b7e7a2955",
     "2835640602d53718aa6ae9a42896327eaa21beefed056c218d32ca7d79e1e2f8"},
    {"tiny_face_detector_model", "5d1af4849ac48d5b985f4a9b16010c512353ddd6fcc63d50fd0bc9e9e64296e5",
     "b7503ce7df31039b1c43316a9b865cab6a70dd748cc602d3fa28b551503c3871"},
    {"face_landmark_68_model", "ca4886639f86e99b39fed0c155f81b63317225773bd9616716e887b0153389c9",
     "4611ef65c87d836d03d684b30eec4d195d8b219fa1dd58fc58945831c6b9299b"},
    {"face_recognition_model", "cbaffa501b0b9275a12b63357a6843e7e30c054e1c9151e1a5f879b26e32986b",
     "b413e420d6840b2775fba32008db6f3cddb07d485967fb42cfcf379c16a8c589"},
};

void lethe_weights_free(lethe_weights *w)
{
    if (!w)
        return;
    for (int i = 0; i < w->n; i++) {
        lethe_free(w->t[i].name);
        lethe_free(w->t[i].data);
    }
    lethe_free(w->t);
    lethe_free(w);
}

static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1F, man = h & 0x3FF;
    uint32_t bits;
    float f;

    if (exp == 0) {
        f = ldexpf((float)man, -24);
        return sign ? -f : f;
    }
    if (exp == 31)
        bits = sign | 0x7F800000u | (man << 13);
    else
        bits = sign | ((exp + 112) << 23) | (man << 13);
    memcpy(&f, &bits, 4);
    return f;
}

static int is_integer_in_range(const json_value *v, double lo, double hi)
{
    return v && v->type == JSON_NUMBER && v->number >= lo && v->number <= hi &&
           floor(v->number) == v->number;
}

/* Decode one tensor entry; *offset advances through data. */
static int decode_tensor(const json_value *entry, const unsigned char *data, size_t data_len,
                         size_t *offset, tensor *t, char *msg, size_t msg_len)
{
    const char *name = json_get_string(entry, "name");
    const char *dtype = json_get_string(entry, "dtype");
    const json_value *shape = json_get(entry, "shape");
    const json_value *quant = json_get(entry, "quantization");
    const char *qtype = NULL;
    double scale = 1, min = 0;
    size_t count = 1, elem_bytes, nbytes;
    int is_int;

    if (!name || !dtype || !shape || shape->type != JSON_ARRAY)
        return lethe_fail(msg, msg_len, LETHE_ERR_MODEL,
                          "weights manifest: an entry lacks name, dtype or shape");
    if (shape->len > 4)
        return lethe_fail(msg, msg_len, LETHE_ERR_MODEL, "weights manifest: %s has rank %zu > 4",
                          name, shape->len);
    if (strcmp(dtype, "float32") == 0)
        is_int = 0;
    else if (strcmp(dtype, "int32") == 0)
        is_int = 1;
    else
        return lethe_fail(msg, msg_len, LETHE_ERR_MODEL,
                          "weights manifest: %s has unsupported dtype %s", name, dtype);
    t->rank = (int)shape->len;
    for (size_t i = 0; i < shape->len; i++) {
        if (!is_integer_in_range(shape->items[i], 0, MAX_ELEMENTS))
            return lethe_fail(msg, msg_len, LETHE_ERR_MODEL,
                              "weights manifest: %s has a bad dimension", name);
        t->shape[i] = (int)shape->items[i]->number;
        if (!lethe_mul_size(count, (size_t)t->shape[i], &count) || count > MAX_ELEMENTS)
            return lethe_fail(msg, msg_len, LETHE_ERR_MODEL,
                              "weights manifest: %s is too large", name);
    }
    elem_bytes = 4;
    if (quant) {
        const json_value *s = json_get(quant, "scale"), *m = json_get(quant, "min");
        qtype = json_get_string(quant, "dtype");
        if (!qtype)
            return lethe_fail(msg, msg_len, LETHE_ERR_MODEL,
                              "weights manifest: %s: quantization without dtype", name);
        if (strcmp(qtype, "uint8") == 0 || strcmp(qtype, "uint16") == 0) {
            if (!s || s->type != JSON_NUMBER || !m || m->type != JSON_NUMBER ||
                !isfinite(s->number) || !isfinite(m->number))
                return lethe_fail(msg, msg_len, LETHE_ERR_MODEL,
                                  "weights manifest: %s: quantization lacks scale or min", name);
            scale = s->number;
            min = m->number;
            elem_bytes = qtype[4] == '8' ? 1 : 2;
        } else if (strcmp(qtype, "float16") == 0) {
            elem_bytes = 2;
        } else {
            return lethe_fail(msg, msg_len, LETHE_ERR_MODEL,
                              "weights manifest: %s: unsupported quantization %s", name, qtype);
        }
    }
    nbytes = count * elem_bytes;
    if (*offset > data_len || data_len - *offset < nbytes)
        return lethe_fail(msg, msg_len, LETHE_ERR_MODEL,
                          "weights file truncated: tensor %s needs %zu bytes at offset %zu of %zu",
                          name, nbytes, *offset, data_len);
    t->name = lethe_strdup(name);
    t->data = lethe_malloc(count * sizeof(float));
    if (!t->name || !t->data)
        return lethe_fail(msg, msg_len, LETHE_ERR_NOMEM, "out of memory loading %s", name);
    t->count = count;

    const unsigned char *src = data + *offset;
    for (size_t i = 0; i < count; i++) {
        double v;
        if (!quant) {
            if (is_int) {
                int32_t iv;
                memcpy(&iv, src + 4 * i, 4);
                v = iv;
            } else {
                float fv;
                memcpy(&fv, src + 4 * i, 4);
                v = fv;
            }
        } else if (elem_bytes == 1) {
            v = src[i] * scale + min;
        } else if (qtype[0] == 'f') {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            v = half_to_float(h);
        } else {
            uint16_t q;
            memcpy(&q, src + 2 * i, 2);
            v = q * scale + min;
        }
        if (is_int)
            v = round(v);
        t->data[i] = (float)v;
    }
    *offset += nbytes;
    return LETHE_OK;
}

static int count_entries(const json_value *root, size_t *n)
{
    *n = 0;
    for (size_t g = 0; g < root->len; g++) {
        const json_value *ws = json_get(root->items[g], "weights");
        if (!ws || ws->type != JSON_ARRAY)
            return 0;
        *n += ws->len;
    }
    return 1;
}

int lethe_weights_parse(const char *manifest, size_t manifest_len, const unsigned char *data,
                        size_t data_len, lethe_weights **out, char *msg, size_t msg_len)
{
    json_value *root = NULL;
    lethe_weights *w = NULL;
    size_t n = 0, offset = 0;
    int rc;

    *out = NULL;
    rc = json_parse(manifest, manifest_len, &root, msg, msg_len);
    if (rc != LETHE_OK) {
        if (rc == LETHE_ERR_FORMAT || rc == LETHE_ERR_TOO_LARGE) {
            char inner[200];
            snprintf(inner, sizeof(inner), "%s", msg ? msg : "");
            rc = lethe_fail(msg, msg_len, LETHE_ERR_MODEL, "weights manifest: %s", inner);
        }
        return rc;
    }
    if (root->type != JSON_ARRAY || !count_entries(root, &n)) {
        rc = lethe_fail(msg, msg_len, LETHE_ERR_MODEL,
                        "weights manifest: expected an array of {paths, weights} groups");
        goto out;
    }
    if (n == 0 || n > MAX_TENSORS) {
        rc = lethe_fail(msg, msg_len, LETHE_ERR_MODEL, "weights manifest: %zu tensors", n);
        goto out;
    }
    w = lethe_calloc(1, sizeof(*w));
    if (!w || !(w->t = lethe_calloc(n, sizeof(tensor)))) {
        rc = lethe_fail(msg, msg_len, LETHE_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t g = 0; g < root->len; g++) {
        const json_value *ws = json_get(root->items[g], "weights");
        for (size_t i = 0; i < ws->len; i++) {
            rc = decode_tensor(ws->items[i], data, data_len, &offset, &w->t[w->n], msg,
                               msg_len);
            w->n++; /* count it even half-built, so that free releases it */
            if (rc != LETHE_OK)
                goto out;
        }
    }
    if (offset != data_len) {
        rc = lethe_fail(msg, msg_len, LETHE_ERR_MODEL,
                        "weights file has %zu bytes, the manifest describes %zu",
                        data_len, offset);
        goto out;
    }
    *out = w;
    w = NULL;
    rc = LETHE_OK;
out:
    lethe_weights_free(w);
    json_free(root);
    return rc;
}

static void sha256_hex(const unsigned char *p, size_t n, char hex[65])
{
    unsigned char d[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(d, p, n);
    sodium_bin2hex(hex, 65, d, sizeof(d));
}

/* A shard name must be a plain file name: no directories, no "..". */
static int safe_shard_name(const char *s)
{
    return s[0] && s[0] != '.' && !strchr(s, '/') && !strchr(s, '\\');
}

int lethe_weights_load(const char *dir, const char *name, int check_digest,
                       lethe_weights **out, char *msg, size_t msg_len)
{
    char path[4096], hex[65];
    uint8_t *manifest = NULL, *blob = NULL;
    size_t manifest_len = 0, blob_len = 0;
    json_value *root = NULL;
    int known = -1, rc;

    *out = NULL;
    if (sodium_init() < 0)
        return lethe_fail(msg, msg_len, LETHE_ERR_INTERNAL, "libsodium failed to initialise");
    for (size_t i = 0; i < LETHE_ARRAY_LEN(known_models); i++)
        if (strcmp(known_models[i].name, name) == 0)
            known = (int)i;
    if (check_digest && known < 0)
        return lethe_fail(msg, msg_len, LETHE_ERR_MODEL, "unknown model %s", name);

    snprintf(path, sizeof(path), "%s/%s-weights_manifest.json", dir, name);
    rc = lethe_read_file(path, MAX_MANIFEST_BYTES, &manifest, &manifest_len, msg, msg_len);
    if (rc != LETHE_OK) {
        if (rc == LETHE_ERR_NOT_FOUND)
            rc = lethe_fail(msg, msg_len, LETHE_ERR_MODEL,
                            "model file %s is missing (run scripts/fetch-models.sh, or pass "
                            "--models DIR / set LETHE_MODELS)", path);
        else if (rc != LETHE_ERR_NOMEM)
            rc = LETHE_ERR_MODEL;
        goto out;
    }
    if (check_digest) {
        sha256_hex(manifest, manifest_len, hex);
        if (strcmp(hex, known_models[known].manifest_sha256) != 0) {
            rc = lethe_fail(msg, msg_len, LETHE_ERR_MODEL,
                            "model file %s does not match its known SHA-256 (tampered or "
                            "another version)", path);
            goto out;
        }
    }
    rc = json_parse((const char *)manifest, manifest_len, &root, msg, msg_len);
    if (rc != LETHE_OK) {
        char inner[256];
        snprintf(inner, sizeof(inner), "%s", msg ? msg : "");
        /* running out of memory says so: the file is not to blame */
        rc = lethe_fail(msg, msg_len, rc == LETHE_ERR_NOMEM ? rc : LETHE_ERR_MODEL, "%s: %s",
                        path, inner);
        goto out;
    }
    if (root->type != JSON_ARRAY) {
        rc = lethe_fail(msg, msg_len, LETHE_ERR_MODEL, "%s: not a weights manifest", path);
        goto out;
    }
    /* Concatenate every group's shards in order. */
    for (size_t g = 0; g < root->len; g++) {
        const json_value *paths = json_get(root->items[g], "paths");
        if (!paths || paths->type != JSON_ARRAY) {
            rc = lethe_fail(msg, msg_len, LETHE_ERR_MODEL, "%s: a group lacks paths", path);
            goto out;
        }
        for (size_t i = 0; i < paths->len; i++) {
            const json_value *p = paths->items[i];
            uint8_t *shard = NULL, *grown;
            size_t shard_len = 0, total;
            char spath[4096];

            if (p->type != JSON_STRING || !safe_shard_name(p->string)) {
                rc = lethe_fail(msg, msg_len, LETHE_ERR_MODEL, "%s: bad shard path", path);
                goto out;
            }
            snprintf(spath, sizeof(spath), "%s/%s", dir, p->string);
            rc = lethe_read_file(spath, MAX_SHARD_BYTES, &shard, &shard_len, msg, msg_len);
            if (rc != LETHE_OK) {
                if (rc == LETHE_ERR_NOT_FOUND)
                    lethe_fail(msg, msg_len, LETHE_ERR_MODEL, "model file %s is missing", spath);
                rc = rc == LETHE_ERR_NOMEM ? rc : LETHE_ERR_MODEL;
                goto out;
            }
            if (!lethe_add_size(blob_len, shard_len, &total) ||
                !(grown = lethe_realloc(blob, total + 1))) {
                lethe_free(shard);
                rc = lethe_fail(msg, msg_len, LETHE_ERR_NOMEM, "out of memory");
                goto out;
            }
            blob = grown;
            memcpy(blob + blob_len, shard, shard_len);
            blob_len = total;
            lethe_free(shard);
        }
    }
    if (check_digest) {
        sha256_hex(blob ? blob : (const uint8_t *)"", blob_len, hex);
        if (strcmp(hex, known_models[known].bin_sha256) != 0) {
            rc = lethe_fail(msg, msg_len, LETHE_ERR_MODEL,
                            "model weights %s/%s.bin do not match their known SHA-256 "
                            "(truncated, tampered or another version)", dir, name);
            goto out;
        }
    }
    rc = lethe_weights_parse((const char *)manifest, manifest_len, blob, blob_len, out, msg,
                             msg_len);
    if (rc != LETHE_OK && rc != LETHE_ERR_NOMEM) {
        char inner[256];
        snprintf(inner, sizeof(inner), "%s", msg ? msg : "");
        rc = lethe_fail(msg, msg_len, LETHE_ERR_MODEL, "%s/%s: %s", dir, name, inner);
    }
out:
    json_free(root);
    lethe_free(manifest);
    lethe_free(blob);
    return rc;
}

const float *lethe_weights_find(const lethe_weights *w, const char *name, int *rank,
                                int shape[4])
{
    for (int i = 0; w && i < w->n; i++) {
        if (strcmp(w->t[i].name, name) == 0) {
            if (rank)
                *rank = w->t[i].rank;
            if (shape)
                memcpy(shape, w->t[i].shape, sizeof(w->t[i].shape));
            return w->t[i].data;
        }
    }
    return NULL;
}

const float *lethe_weights_expect(const lethe_weights *w, const char *name, int rank,
                                  const int *shape, char *msg, size_t msg_len)
{
    int r = 0, s[4] = {0};
    const float *d = lethe_weights_find(w, name, &r, s);

    if (!d) {
        lethe_fail(msg, msg_len, LETHE_ERR_MODEL, "model lacks tensor %s", name);
        return NULL;
    }
    if (r != rank)
        goto mismatch;
    for (int i = 0; i < rank; i++)
        if (shape[i] >= 0 && shape[i] != s[i])
            goto mismatch;
    return d;
mismatch:
    lethe_fail(msg, msg_len, LETHE_ERR_MODEL,
               "model tensor %s has shape [%d,%d,%d,%d] (rank %d), expected rank %d", name,
               s[0], s[1], s[2], s[3], r, rank);
    return NULL;
}

int lethe_weights_count(const lethe_weights *w) { return w ? w->n : 0; }

const char *lethe_weights_name(const lethe_weights *w, int i)
{
    return w && i >= 0 && i < w->n ? w->t[i].name : NULL;
}
