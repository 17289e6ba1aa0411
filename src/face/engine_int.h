/*
 * engine_int.h: what the one-call and batch analysis (analyze.c, batch.c)
 * need from the engine (engine.c): analysis that writes its message into
 * the caller's buffer, so that threads sharing an engine never share one.
 */
#ifndef LETHE_FACE_ENGINE_INT_H
#define LETHE_FACE_ENGINE_INT_H

#include <stddef.h>

#include "lethe.h"

/*
 * lethe_engine_analyze, with every flag (LETHE_LARGEST_FACE, LETHE_CHIP
 * included), and on failure why in msg[0..msg_len) (may be NULL) instead of
 * the calling thread's lethe_engine_errmsg.
 */
int engine_analyze(lethe_engine *e, const lethe_image *img, unsigned flags, lethe_face **faces,
                   int *count, char *msg, size_t msg_len);

#endif
