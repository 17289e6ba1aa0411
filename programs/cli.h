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

/*
 * Text that came from outside (file names, messages quoting them, argument
 * values), written safely (cli_text.c):
 *
 * json_put_string: as a JSON string, quoted; every control character (C0,
 * DEL, C1) and U+2028/U+2029 as \u00XX / \u2028, a byte that is not part of
 * well-formed UTF-8 as \u00XX (its Latin-1 reading); other UTF-8 as is.
 *
 * cli_put_text: for a terminal, unquoted; control characters and bytes that
 * are not well-formed UTF-8 as \xNN (a C1 control as its two bytes), a
 * backslash as \\ (so every \ in the output starts an escape); other UTF-8
 * as is. NULL prints "(null)".
 *
 * cli_text_error: as cli_error, the formatted message written by
 * cli_put_text (the format strings are plain text, so only what came from
 * outside is changed).
 */
void json_put_string(FILE *f, const char *s);
void cli_put_text(FILE *f, const char *s);
void cli_text_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * The JSON objects written both by the CLI's --json and by lethe serve, so
 * that each has one shape everywhere (cli_text.c). No newline after them.
 *
 * json_put_forget: an erasure, opt-out ("optout") or model retirement
 * ("retire"); matched (a JSON array, NULL: the member is left out) lists
 * the photos touched. json_put_model: a model of lethe_model_list.
 * json_put_policy_check: one decision of lethe_policy_check.
 * json_put_request: a data-subject request (lethe_request_info).
 * json_put_request_auto: the kinds approved at once, {"uploader": bool, ...}
 * from lethe_request_auto_get's mask.
 */
void json_put_forget(FILE *f, const char *kind, int dry_run, int erased,
                     const lethe_forget_result *x, const char *receipt, const char *matched);
void json_put_model(FILE *f, const lethe_model_info *x);
void json_put_policy_check(FILE *f, const char *jurisdiction, const char *consent, int allowed,
                           const char *rule);
void json_put_request(FILE *f, const lethe_request_info *q);

/* What bounds a search's results: the gallery (the templates of the
 * queries' model the store holds, lethe_search_gallery), --fpir and the
 * threshold that follows from it and --threshold (INFINITY: none).
 * search_bounds_get: LETHE_OK, or the status with the store's message. */
typedef struct search_bounds {
    uint64_t gallery;
    double fpir;
    float threshold;
} search_bounds;
int search_bounds_get(lethe_store *s, const lethe_search_options *o, search_bounds *b);
/* The same from a gallery already known (a match's). */
void search_bounds_from(const lethe_search_options *o, uint64_t gallery, search_bounds *b);
/* A match of lethe_search (fmr and strangers null when not calibrated),
 * and one query's answer: {"query", "source", ["fused",] "gallery", "fpir",
 * "threshold", "matches": [...]}; fused is the number of probes (0: not
 * fused). The same from `lethe search --json` and POST /v1/search. */
void json_put_match(FILE *f, const lethe_match *m);
/* An ingest's summary: its counts, time, whether it ran to the end, the
 * precision and kernels of the engine (left out without one: raw
 * descriptors) and the inputs that failed, {"file", ["line",] "reason"}. */
typedef struct ingest_error {
    char *input, *reason;
    size_t line;
} ingest_error;
void json_put_ingest(FILE *f, const lethe_ingest_stats *st, double seconds, int complete,
                     const lethe_engine *engine, const ingest_error *errs, size_t nerr);
/* lethe_log_verify's answer: {"intact", "entries", "first_bad", "error"}
 * (first_bad and error null when intact). */
void json_put_log_verify(FILE *f, int intact, uint64_t entries, uint64_t first_bad,
                         const char *error);
void json_put_search(FILE *f, int query, const char *source, int fused, const search_bounds *b,
                     const lethe_match *m, size_t n);
void json_put_request_auto(FILE *f, unsigned mask);

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
