/*
 * lethe.c: the lethe command-line program: dispatches subcommands and prints
 * help. Each subcommand lives in its own cmd_*.c file.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cli_store.h"
#include "serve.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} commands[] = {
    {"detect", cmd_detect, "find faces and their 68 landmarks in photos"},
    {"embed", cmd_embed, "compute 128-D face descriptors"},
    {"compare", cmd_compare, "tell whether two photos show the same person"},
    {"init", cmd_init, "create a store"},
    {"ingest", cmd_ingest, "add photos or descriptors with their provenance"},
    {"search", cmd_search, "1:N search by face or descriptor (logged, with a purpose)"},
    {"verify", cmd_verify, "1:1: is this face the person of those stored photos? (logged)"},
    {"lookup", cmd_lookup, "is my photo or account in the store? (no face needed)"},
    {"log", cmd_log, "the tamper-evident audit log; 'log verify' checks it"},
    {"policy", cmd_policy, "the consent policy: show, set, check"},
    {"datasheet", cmd_datasheet, "photos, consent and searches, for auditors"},
    {"digest", cmd_digest, "canonical digest of the store's content"},
    {"forget", cmd_forget, "erase photos or a person's faces, completely, with a receipt"},
    {"model", cmd_model, "the models of the templates: list, retire (erase one model's)"},
    {"retemplate", cmd_retemplate, "describe photos again with the current model"},
    {"optout", cmd_optout, "erase and keep out of future ingests"},
    {"receipt", cmd_receipt, "verify an erasure receipt, or show one by its hash"},
    {"backup", cmd_backup, "back the store up"},
    {"restore", cmd_restore, "restore a backup without resurrecting the erased"},
    {"keyring", cmd_keyring, "check, mirror or rotate the keyring"},
    {"key", cmd_key, "API keys for 'lethe serve': add, list, revoke"},
    {"request", cmd_request, "requests from the people in the photos: list, approve, deny"},
    {"serve", cmd_serve, "serve the store over HTTP to the holders of API keys"},
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: lethe COMMAND [OPTIONS] [ARGS]\n"
            "\n"
            "lethe is a face recognition database: it detects, describes, stores and\n"
            "searches faces, and every photo's provenance and consent travel with it.\n"
            "\n"
            "Commands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f,
            "  %-10s %s\n  %-10s %s\n"
            "\n"
            "Run 'lethe COMMAND --help' for a command's options. See docs/lethe.1.md.\n",
            "version", "print the version", "help", "this text");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        if (argc > 2) {
            for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
                if (!strcmp(argv[2], commands[i].name)) {
                    char *args[] = {argv[2], "--help", NULL};
                    return commands[i].fn(2, args);
                }
        }
        usage(stdout);
        return CLI_EXIT_OK;
    }
    if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
        printf("lethe %s\n", lethe_version());
        return CLI_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].fn(argc - 1, argv + 1);
    cli_error("unknown command '%s' (try 'lethe help')", argv[1]);
    return CLI_EXIT_USAGE;
}
