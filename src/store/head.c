/*
 * head.c: the text of log.head, "SEQ HASH\n": the sequence number of the
 * log's last entry (decimal, from 1) and its hash (64 lowercase hex
 * digits). The file is hostile input (anyone with write access to the
 * folder can put anything there): the parser takes exactly that form and
 * nothing else, within the bytes given, and has a fuzz target.
 */
#include "store/head.h"

#include <stdio.h>
#include <string.h>

int log_head_parse(const char *text, size_t len, int64_t *seq, char hash[65])
{
    size_t i = 0;
    int64_t q = 0;
    if (len && text[len - 1] == '\n')
        len--;
    if (i >= len || text[i] < '1' || text[i] > '9')
        return -1;
    for (; i < len && text[i] >= '0' && text[i] <= '9'; i++) {
        if (q > (INT64_MAX - 9) / 10)
            return -1;
        q = q * 10 + (text[i] - '0');
    }
    if (i >= len || text[i] != ' ' || len - i - 1 != 64)
        return -1;
    for (size_t k = i + 1; k < len; k++)
        if (!((text[k] >= '0' && text[k] <= '9') || (text[k] >= 'a' && text[k] <= 'f')))
            return -1;
    *seq = q;
    memcpy(hash, text + i + 1, 64);
    hash[64] = 0;
    return 0;
}

int log_head_format(int64_t seq, const char *hash, char *out, size_t n)
{
    int w = snprintf(out, n, "%lld %s\n", (long long)seq, hash);
    return w > 0 && (size_t)w < n ? w : -1;
}
