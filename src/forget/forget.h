/*
 * forget.h: lethe_forget with one more step of the caller's inside its
 * change, so that what the caller records about the erasure (a request
 * marked done with its receipt) commits with the erasure or not at all.
 */
#ifndef LETHE_FORGET_H
#define LETHE_FORGET_H

#include "lethe.h"

/*
 * Called once the selection is erased and the receipt recorded, before the
 * commit, with the catalog's transaction open and the store's write lock
 * held: r is the erasure's result (receipt_hash set), receipt its text. A
 * status other than LETHE_OK (set with store_fail) rolls the whole erasure
 * back. Never called for a dry run or an erasure refused unconfirmed.
 */
typedef int (*forget_hook)(lethe_store *s, const lethe_forget_result *r, const char *receipt,
                           void *ctx);

/* lethe_forget, running hook(s, r, receipt, ctx) in its change. */
int forget_with(lethe_store *s, const lethe_selector *q, unsigned flags, const char *actor,
                forget_hook hook, void *ctx, lethe_forget_result *res, char **receipt,
                char **matched);

#endif
