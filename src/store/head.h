/*
 * head.h: the text of the audit log's anchor, log.head (head.c).
 */
#ifndef LETHE_HEAD_H
#define LETHE_HEAD_H

#include <stddef.h>
#include <stdint.h>

/* Parse "SEQ HASH" (an optional final newline) from text[0..len): 0, or -1
 * for anything else. */
int log_head_parse(const char *text, size_t len, int64_t *seq, char hash[65]);
/* Write "SEQ HASH\n" into out: its length, or -1 if it does not fit. */
int log_head_format(int64_t seq, const char *hash, char *out, size_t n);

#endif
