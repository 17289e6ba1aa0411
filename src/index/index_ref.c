/*
 * index_ref.c: the plain C scan kernel, the reference the SIMD kernels are
 * held to: they compute the same integers and must return exactly its
 * passes (index_int.h has the contract). It always sums all 128 dims.
 */
#include "index/index_int.h"

/* raw over one half: the group's 16 chunks against 64 query codes. */
static void half_dot(const uint8_t *gc, const int8_t *qc, int32_t raw[IDX_GROUP_ROWS])
{
    for (unsigned j = 0; j < IDX_HALF / 4; j++)
        for (unsigned r = 0; r < IDX_GROUP_ROWS; r++)
            for (unsigned t = 0; t < 4; t++)
                raw[r] += gc[j * 64 + r * 4 + t] * qc[j * 4 + t];
}

static size_t scan_ref(const idx_scan_args *a)
{
    size_t n = 0;
    for (size_t g = 0; g < a->ngroups; g++) {
        const int32_t *sq = a->sq + g * IDX_GROUP_ROWS;
        for (size_t q = 0; q < a->nq; q++) {
            const int8_t *qc = a->qcodes + q * IDX_DIM;
            int32_t raw[IDX_GROUP_ROWS] = {0};
            half_dot(a->codes_a + g * IDX_GROUP_HALF_BYTES, qc, raw);
            half_dot(a->codes_b + g * IDX_GROUP_HALF_BYTES, qc + IDX_HALF, raw);
            float thr = a->qthr[q] + a->gmax[g] * IDX_GM_SCALE;
            float thr2 = thr * thr;
            for (unsigned r = 0; r < IDX_GROUP_ROWS; r++) {
                int32_t d2 = a->qbias[q] + sq[r] - 2 * raw[r];
                if ((float)d2 <= thr2) {
                    a->out[n].q = (uint16_t)q;
                    a->out[n].row = (uint16_t)(a->row0 + g * IDX_GROUP_ROWS + r);
                    a->out[n].d2 = d2;
                    n++;
                }
            }
        }
    }
    return n;
}

const idx_kernel idx_kernel_ref = {scan_ref, 8};
