/*
 * receipt.c: checking an erasure receipt (lethe_receipt_verify). The
 * receipts themselves are made by forget.c: JSON whose last member is
 * "signature", an Ed25519 signature by the store's key over every byte
 * before ',"signature"' followed by the closing brace. A receipt is what a
 * data subject holds and hands back, so this reads it as hostile input: it
 * stays within the len bytes given (no NUL terminator needed) and answers
 * every malformed receipt with LETHE_ERR_FORMAT and a reason.
 *
 * A valid signature proves only that the holder of the named key signed
 * it. lethe_receipt_check also proves the store issued it: the key is one
 * of the store's (current or rotated out: the signing_keys table) and the
 * receipt's hash is in the store's log.
 */
#include <sodium.h>
#include <string.h>

#include "lethe.h"
#include "util/util.h"

#define SIG_HEX 128 /* 64 bytes */
#define KEY_HEX 64  /* 32 bytes */
#define RECEIPT_STACK 4096 /* signed bodies up to this many bytes are copied on the stack */

int lethe_receipt_verify(const char *text, size_t len, const char *store_key_hex, char *msg,
                         size_t msg_len)
{
    static const char head[] = "{\"lethe_receipt\":1,";
    static const char tag[] = ",\"signature\":\"";
    static const char key_tag[] = "\"store_key\":\"";
    const size_t tag_len = sizeof(tag) - 1, key_tag_len = sizeof(key_tag) - 1;
    uint8_t pk[32], sig[64];
    size_t n = 0;

    if (!text)
        return lethe_fail(msg, msg_len, LETHE_ERR_ARG, "no receipt");
    if (sodium_init() < 0)
        return lethe_fail(msg, msg_len, LETHE_ERR_INTERNAL, "libsodium failed to initialise");
    while (len && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '))
        len--;
    /* the signature is the last member: ,"signature":"<128 hex>"} */
    if (len < (sizeof(head) - 1) + tag_len + SIG_HEX + 2 || text[len - 1] != '}' ||
        text[len - 2] != '"' || memcmp(text + len - 2 - SIG_HEX - tag_len, tag, tag_len) != 0 ||
        memcmp(text, head, sizeof(head) - 1) != 0)
        return lethe_fail(msg, msg_len, LETHE_ERR_FORMAT,
                          "not a lethe receipt (or its signature is not its last field)");
    const char *sighex = text + len - 2 - SIG_HEX;
    if (sodium_hex2bin(sig, sizeof(sig), sighex, SIG_HEX, NULL, &n, NULL) != 0 ||
        n != sizeof(sig))
        return lethe_fail(msg, msg_len, LETHE_ERR_FORMAT, "the signature is not hex");
    /* the signed body: everything before ,"signature" */
    size_t body = (size_t)(sighex - tag_len - text);
    const char *k = memmem(text, body, key_tag, key_tag_len);
    if (!k || (size_t)(k - text) + key_tag_len + KEY_HEX + 1 > body ||
        sodium_hex2bin(pk, sizeof(pk), k + key_tag_len, KEY_HEX, NULL, &n, NULL) != 0 ||
        n != sizeof(pk) || k[key_tag_len + KEY_HEX] != '"')
        return lethe_fail(msg, msg_len, LETHE_ERR_FORMAT, "the receipt names no store key");
    if (store_key_hex &&
        (strlen(store_key_hex) != KEY_HEX || memcmp(k + key_tag_len, store_key_hex, KEY_HEX)))
        return lethe_fail(msg, msg_len, LETHE_ERR_FORMAT,
                          "the receipt was signed by another store's key");
    /* The signed message is the body and a closing brace, so it needs a
     * copy. Every receipt forget.c makes fits the stack buffer (about 1.2 KB
     * at most): verifying one then allocates nothing, and cannot fail for
     * want of memory between two checks of the same receipt. */
    char stack_copy[RECEIPT_STACK], *m = stack_copy;
    if (body + 1 > sizeof(stack_copy) && !(m = lethe_malloc(body + 1)))
        return lethe_fail(msg, msg_len, LETHE_ERR_NOMEM, "out of memory");
    memcpy(m, text, body);
    m[body] = '}';
    int ok = crypto_sign_verify_detached(sig, (const uint8_t *)m, body + 1, pk) == 0;
    if (m != stack_copy)
        lethe_free(m);
    if (!ok)
        return lethe_fail(msg, msg_len, LETHE_ERR_FORMAT,
                          "the signature does not match: the receipt was altered");
    return LETHE_OK;
}
