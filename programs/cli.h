/*
 * cli.h: shared pieces of the lethe command-line program.
 */
#ifndef LETHE_CLI_H
#define LETHE_CLI_H

#include <stdio.h>

#include "lethe.h"

/* Exit statuses: 0 all went well, 1 some input failed, 2 usage error. */
#define CLI_EXIT_OK 0
#define CLI_EXIT_FAILED 1
#define CLI_EXIT_USAGE 2

/* Write s as a JSON string (quoted, escaped; invalid UTF-8 bytes as \u00XX). */
void json_put_string(FILE *f, const char *s);

/* Options every face command shares. */
typedef struct face_opts {
    lethe_engine_options engine;
    int json;
    int chip;       /* embed/compare: inputs already are face chips */
    int threads;
} face_opts;

/* Parse a shared face option at argv[*i]; 1 if it was one (and *i advanced
 * past its value), 0 if not ours, -1 on a bad value (message printed). */
int face_opts_parse(face_opts *o, int argc, char **argv, int *i);
void face_opts_init(face_opts *o);

/* "default", "fp32" or "int8" as an enum lethe_precision in *out: 0, or -1
 * (message printed, naming cmd). */
int cli_parse_precision(const char *cmd, const char *v, int *out);
/* The help line(s) of --precision, shared by the commands that take it. */
extern const char cli_precision_help[];

int cmd_detect(int argc, char **argv);
int cmd_embed(int argc, char **argv);
int cmd_compare(int argc, char **argv);

/* Print an error in the program's voice: "lethe: ...". */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
