/*
 * cli_store.h: what the store commands share: the --store/--actor/--json
 * options, flag parsing and opening the store.
 */
#ifndef LETHE_CLI_STORE_H
#define LETHE_CLI_STORE_H

#include <stdio.h>

#include "lethe.h"

typedef struct cli_common {
    const char *store;
    const char *actor;
    double wait;    /* --wait SECONDS */
    int json;
} cli_common;

extern const char cli_common_help[];

void cli_common_init(cli_common *c);
/* --store, --actor, --wait, --json at argv[*i]: 1 taken, 0 not ours, -1 bad. */
int cli_common_parse(cli_common *c, int argc, char **argv, int *i);
/* The value of "--flag V" or "--flag=V" at argv[*i], or NULL if argv[*i]
 * is another flag; a missing value prints an error and sets *bad. */
const char *cli_flag_value(int argc, char **argv, int *i, const char *flag, int *bad);
int cli_wants_help(int argc, char **argv);
int cli_unknown_option(const char *cmd, const char *arg);
/* The whole command line of a command that takes the common options, the
 * on/off flags in the NULL-terminated switches (set[k] = 1 for each one
 * seen; switches may be NULL) and at most one operand (*operand, NULL when
 * absent; pass operand NULL for none at all). CLI_EXIT_OK, or
 * CLI_EXIT_USAGE with the error printed. */
int cli_parse_simple(const char *cmd, cli_common *c, int argc, char **argv,
                     const char *const *switches, int *set, const char **operand);
/* Open c->store (message printed on failure), waiting for a writer as
 * --wait says and telling so on stderr. */
lethe_store *cli_open_store(const cli_common *c, unsigned flags);
/* The options cli_open_store uses. */
void cli_store_options(const cli_common *c, unsigned flags, lethe_store_options *o);
/* A text option (actor, purpose): non-empty, no control characters, at
 * most 4096 bytes; else 0 with the error printed (a usage error). */
int cli_text_ok(const char *flag, const char *v);
/* The exit status for a library status: 0, 2 for a bad argument, else 1. */
int cli_status(int rc);

int cmd_init(int argc, char **argv);
int cmd_ingest(int argc, char **argv);
int cmd_search(int argc, char **argv);
int cmd_lookup(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_log(int argc, char **argv);
int cmd_policy(int argc, char **argv);
int cmd_datasheet(int argc, char **argv);
int cmd_digest(int argc, char **argv);
int cmd_forget(int argc, char **argv);
int cmd_model(int argc, char **argv);
int cmd_retemplate(int argc, char **argv);
int cmd_optout(int argc, char **argv);
int cmd_receipt(int argc, char **argv);
int cmd_backup(int argc, char **argv);
int cmd_restore(int argc, char **argv);
int cmd_keyring(int argc, char **argv);
int cmd_key(int argc, char **argv);
int cmd_request(int argc, char **argv);

#endif
