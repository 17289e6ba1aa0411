/*
 * cmd_query.c: search, lookup, log, policy, datasheet and digest.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "cli_store.h"

/* ---------------------------------------------------- descriptor input */

typedef struct qlist {
    float *v;
    int n, cap;
    char **label; /* what each query came from */
} qlist;

static int ql_add(qlist *q, const float *v, const char *label)
{
    if (q->n == q->cap) {
        int nc = q->cap ? q->cap * 2 : 16;
        float *t = realloc(q->v, (size_t)nc * LETHE_DESCRIPTOR_DIM * sizeof(float));
        char **l = t ? realloc(q->label, (size_t)nc * sizeof(char *)) : NULL;
        if (!t || !l) {
            if (t)
                q->v = t;
            return -1;
        }
        q->v = t;
        q->label = l;
        q->cap = nc;
    }
    memcpy(q->v + (size_t)q->n * LETHE_DESCRIPTOR_DIM, v, LETHE_DESCRIPTOR_DIM * sizeof(float));
    q->label[q->n] = strdup(label);
    if (!q->label[q->n])
        return -1;
    q->n++;
    return 0;
}

static void ql_free(qlist *q)
{
    for (int i = 0; i < q->n; i++)
        free(q->label[i]);
    free(q->label);
    free(q->v);
}

#define QUERIES_MAX_PIPE_BYTES (1ull << 30)

/* All of a pipe into *buf (malloc'd), at most QUERIES_MAX_PIPE_BYTES. */
static int slurp(FILE *in, const char *name, char **buf, size_t *len)
{
    FILE *mem = open_memstream(buf, len);
    char chunk[65536];
    size_t got;
    uint64_t total = 0;
    if (!mem) {
        cli_error("out of memory");
        return -1;
    }
    while ((got = fread(chunk, 1, sizeof(chunk), in)) > 0) {
        total += got;
        if (total > QUERIES_MAX_PIPE_BYTES) {
            cli_error("search: %s: more than 1 GiB of queries", name);
            fclose(mem);
            return -1;
        }
        fwrite(chunk, 1, got, mem);
    }
    if (ferror(in) || fclose(mem) != 0) {
        cli_error("search: %s: %s", name, strerror(errno));
        return -1;
    }
    return 0;
}

/* Every query of a --queries file ('-': standard input), labelled FILE:LINE
 * (FILE:LINE#FACE for 'lethe embed --json' lines). Bad lines are reported
 * and skipped (*status becomes 1); returns -1 when reading cannot go on. */
static int read_queries(qlist *q, const char *file, int *status)
{
    lethe_queries *qs = NULL;
    lethe_query query;
    char msg[1024], label[4200], *buf = NULL;
    size_t len = 0;
    struct stat sb;
    int rc, r;

    if (!strcmp(file, "-") || (stat(file, &sb) == 0 && S_ISFIFO(sb.st_mode))) {
        /* The library opens regular files only (a FIFO could block a
         * server forever). Here the user named the pipe ('-', or
         * --queries <(...)), and nothing is locked while it is read:
         * read it here and hand over the bytes. */
        FILE *in = strcmp(file, "-") ? fopen(file, "rb") : stdin;
        int bad = !in || slurp(in, file, &buf, &len) < 0;
        if (!in)
            cli_error("search: %s: %s", file, strerror(errno));
        if (in && in != stdin)
            fclose(in);
        if (bad) {
            free(buf);
            return -1;
        }
        rc = lethe_queries_open_mem(buf, len, &qs, msg, sizeof(msg));
    } else {
        rc = lethe_queries_open(file, &qs, msg, sizeof(msg));
    }
    if (rc != LETHE_OK) {
        cli_error("search: %s", msg);
        free(buf);
        return -1;
    }
    while ((r = lethe_queries_next(qs, &query, msg, sizeof(msg))) != 0) {
        if (r == -1) {
            cli_error("search: %s: %s", file, msg);
            *status = CLI_EXIT_FAILED;
            continue;
        }
        if (r == -2) {
            cli_error("search: %s: %s", file, msg);
            break;
        }
        if (query.face < 0)
            snprintf(label, sizeof(label), "%s:%zu", file, query.line);
        else
            snprintf(label, sizeof(label), "%s:%zu#%d", file, query.line, query.face);
        if (ql_add(q, query.descriptor, label) < 0) {
            cli_error("out of memory");
            r = -2;
            break;
        }
    }
    lethe_queries_close(qs);
    free(buf);
    return r == -2 ? -1 : 0;
}

/* ---------------------------------------------------------------- search */

static void search_help(void)
{
    printf(
        "usage: lethe search --purpose TEXT [OPTIONS] IMAGE\n"
        "       lethe search --purpose TEXT [OPTIONS] --fuse IMAGE... | --descriptor J...\n"
        "       lethe search --purpose TEXT [OPTIONS] --descriptor '[128 numbers]'\n"
        "       lethe search --purpose TEXT [OPTIONS] --queries FILE\n"
        "\n"
        "1:N search: the faces in the store nearest to a face, with their photos'\n"
        "provenance. Search is exact: the true top K, not an approximation. Every\n"
        "query is recorded in the audit log with the actor, the purpose, a keyed hash\n"
        "of the query (never the image or the descriptor) and the number of results.\n"
        "\n"
        "  --purpose TEXT     why this search is made (required; logged)\n"
        "  --top K            results per query (default 10)\n"
        "  --threshold T      only faces at most T away (default: no limit; the\n"
        "                     same-person threshold is %.2f, marked in the output)\n"
        "  --fpir P           only faces close enough that a search for someone the\n"
        "                     store does not hold returns any with probability at\n"
        "                     most P (0 < P < 1; the threshold follows the store's size)\n"
        "  --all-faces        search every face of IMAGE (default: the largest)\n"
        "  --fuse             the IMAGEs (largest face of each), --descriptor (given\n"
        "                     several times) or --queries lines are photos of ONE\n"
        "                     person: searched once with the mean of their descriptors\n"
        "                     (rank-1 on LFW 95.2%% with two photos, 91.2%% with one),\n"
        "                     one log entry; its matches show no false-match rate (none\n"
        "                     was measured for fused probes); not with --fpir\n"
        "  --descriptor JSON  a descriptor: a JSON array of 128 numbers, or an object\n"
        "                     with \"embedding\" (such an array)\n"
        "  --model NAME@VERSION[@WEIGHTS]  the model that computed --descriptor or\n"
        "                     --queries (default: the shipped one); only templates of\n"
        "                     that model are compared\n"
        "  --queries FILE     JSON Lines, a descriptor per line as for --descriptor, or\n"
        "                     lines of 'lethe embed --json' (one query per face); '-'\n"
        "                     reads stdin. Bad lines are reported and skipped (exit 1)\n"
        "  --threads N        threads (default: one per core)\n"
        "  --models DIR       model folder, for IMAGE\n"
        "  --precision default|fp32|int8\n"
        "                     as for 'lethe ingest', for IMAGE\n"
        "%s"
        "\n"
        "Each match shows its evidence: the false-match rate at its distance (the share\n"
        "of pairs of photos of two different people as close or closer, measured on\n"
        "LFW), the strangers expected as close in a store of this size (its faces x\n"
        "that rate), and a tier: strong (< 0.01 strangers), moderate (< 0.1), weak\n"
        "(< 1), none (1 or more: the distance alone is no evidence). See the manual.\n"
        "\n"
        "--json prints one line per query: {\"query\", \"source\", \"gallery\", \"fpir\",\n"
        "\"threshold\", \"matches\": [{\"distance\", \"same\", \"fmr\", \"strangers\", \"tier\",\n"
        "\"photo\", \"face\", \"box\", \"path\", \"photo_id\", \"url\", \"uploader\",\n"
        "\"source\", \"license\", \"jurisdiction\", \"consent\", \"collected_at\",\n"
        "\"provenance_count\"}]} (fpir and threshold null when not limited; with\n"
        "--fuse one line, with \"fused\": the number of probes, fmr and strangers null,\n"
        "tier \"uncalibrated\").\n",
        (double)lethe_descriptor_threshold(), cli_common_help);
}

/* A search's command line. */
typedef struct search_cli {
    const char *cmd;               /* "search" or "verify" (for messages) */
    cli_common c;
    lethe_search_options so;
    const char *image, *desc, *queries, *models;
    int all_faces, threads, precision, top_set;
    int fuse;                      /* search --fuse: the queries are one person */
    const char *images[LETHE_FUSE_MAX], *descs[LETHE_FUSE_MAX]; /* IMAGEs, --descriptors */
    int nimages, ndescs;
    int against_kind, n_against;   /* verify: the stored photos (LETHE_LOOKUP_*) */
    const char *against;
    lethe_model_id model;          /* --model: the descriptors' model */
} search_cli;

/* verify's selectors of the stored photos, by LETHE_LOOKUP_* kind */
static const char *const against_flags[] = {"--uploader", "--url", "--photo-id", "--image"};

/* --model V: the descriptors' model; -1 when malformed (printed). */
static int model_flag(search_cli *a, const char *v)
{
    char msg[256];
    if (lethe_model_parse(v, &a->model, msg, sizeof(msg)) != LETHE_OK) {
        cli_error("%s: --model: %s", a->cmd, msg);
        return -1;
    }
    a->so.model = &a->model; /* a outlives the search */
    return 0;
}

/* One input (IMAGE, --descriptor, --queries), and --model only with a
 * descriptor. */
static int inputs_parsed(const search_cli *a)
{
    if ((a->image != NULL) + (a->desc != NULL) + (a->queries != NULL) != 1) {
        cli_error("%s: give exactly one of IMAGE, --descriptor JSON%s", a->cmd,
                  strcmp(a->cmd, "verify") ? ", --queries FILE" : "");
        return CLI_EXIT_USAGE;
    }
    if (a->image && a->so.model) {
        cli_error("%s: --model goes with --descriptor or --queries (an IMAGE is described by "
                  "the engine's model)", a->cmd);
        return CLI_EXIT_USAGE;
    }
    return CLI_EXIT_OK;
}

/* A verify selector at argv[*i]: 1 taken, 0 not one, -1 bad (printed). */
static int against_parse(search_cli *a, int argc, char **argv, int *i)
{
    int bad = 0;
    for (int k = 0; k < 4; k++) {
        const char *v = cli_flag_value(argc, argv, i, against_flags[k], &bad);
        if (v) {
            a->against_kind = k;
            a->against = v;
            a->n_against++;
            return 1;
        }
        if (bad)
            return -1;
    }
    return 0;
}

/* What verify takes beyond search's arguments: one selector, one face. */
static int verify_parsed(const search_cli *a)
{
    if (a->n_against != 1 || !*a->against) {
        cli_error("verify: give exactly one of --uploader, --url, --photo-id, --image: the "
                  "stored photos to verify against");
        return CLI_EXIT_USAGE;
    }
    if (a->queries || a->all_faces || a->top_set || a->so.fpir > 0 || a->fuse) {
        cli_error("verify: %s is for search (verify compares one face)",
                  a->queries ? "--queries" : a->all_faces ? "--all-faces"
                  : a->top_set ? "--top" : a->fuse ? "--fuse" : "--fpir");
        return CLI_EXIT_USAGE;
    }
    return CLI_EXIT_OK;
}

/* What the options say together (after search_parse's loop). */
static int search_parsed(const search_cli *a)
{
    /* Several photos or descriptors are one person's, or a mistake. */
    if (!a->fuse && (a->nimages > 1 || a->ndescs > 1)) {
        cli_error("%s: one %s at a time%s", a->cmd, a->nimages > 1 ? "IMAGE" : "--descriptor",
                  strcmp(a->cmd, "verify") ? " (use --queries for many; --fuse when they are "
                                             "one person's)" : "");
        return CLI_EXIT_USAGE;
    }
    if (a->fuse && (a->all_faces || a->so.fpir > 0)) {
        cli_error("%s: --fuse %s", a->cmd,
                  a->all_faces ? "takes the largest face of each IMAGE, not --all-faces"
                               : "and --fpir: no calibration was measured for fused probes "
                                 "(use --threshold)");
        return CLI_EXIT_USAGE;
    }
    if (!a->so.purpose || !*a->so.purpose) {
        cli_error("%s: --purpose TEXT is required: every %s is logged with why it was made",
                  a->cmd, strcmp(a->cmd, "verify") ? "search" : "verification");
        return CLI_EXIT_USAGE;
    }
    if (inputs_parsed(a) != CLI_EXIT_OK)
        return CLI_EXIT_USAGE;
    return strcmp(a->cmd, "verify") ? CLI_EXIT_OK : verify_parsed(a);
}

/* The command line into *a. Returns CLI_EXIT_OK to go on, else the exit
 * status (message printed). */
static int search_parse(search_cli *a, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        int bad = 0, r = cli_common_parse(&a->c, argc, argv, &i);
        const char *v;
        char *end;
        if (r < 0)
            return CLI_EXIT_USAGE;
        if (r > 0)
            continue;
        if (!strcmp(a->cmd, "verify") && (r = against_parse(a, argc, argv, &i)) != 0) {
            if (r < 0)
                return CLI_EXIT_USAGE;
        } else if ((v = cli_flag_value(argc, argv, &i, "--purpose", &bad))) {
            if (!cli_text_ok("--purpose", v))
                return CLI_EXIT_USAGE;
            a->so.purpose = v;
        }
        else if ((v = cli_flag_value(argc, argv, &i, "--top", &bad))) {
            long k = strtol(v, &end, 10);
            if (*end || k < 1 || k > 10000) {
                cli_error("%s: --top: '%s' is not a number from 1 to 10000", a->cmd, v);
                return CLI_EXIT_USAGE;
            }
            a->so.top_k = (int)k;
            a->top_set = 1;
        } else if ((v = cli_flag_value(argc, argv, &i, "--threshold", &bad))) {
            double t = strtod(v, &end);
            if (*end || !(t >= 0) || !isfinite(t)) {
                cli_error("%s: --threshold: '%s' is not a non-negative number", a->cmd, v);
                return CLI_EXIT_USAGE;
            }
            a->so.threshold = (float)t;
        } else if ((v = cli_flag_value(argc, argv, &i, "--fpir", &bad))) {
            double p = strtod(v, &end);
            if (*end || !(p > 0 && p < 1)) {
                cli_error("%s: --fpir: '%s' is not a probability above 0 and below 1", a->cmd, v);
                return CLI_EXIT_USAGE;
            }
            a->so.fpir = p;
        } else if ((v = cli_flag_value(argc, argv, &i, "--threads", &bad))) {
            long t = strtol(v, &end, 10);
            if (*end || t < 0 || t > 1024) {
                cli_error("%s: --threads: '%s' is not a number from 0 to 1024", a->cmd, v);
                return CLI_EXIT_USAGE;
            }
            a->threads = (int)t;
        } else if ((v = cli_flag_value(argc, argv, &i, "--descriptor", &bad))) {
            if (a->ndescs == LETHE_FUSE_MAX) {
                cli_error("%s: at most %d --descriptor", a->cmd, LETHE_FUSE_MAX);
                return CLI_EXIT_USAGE;
            }
            a->desc = a->descs[a->ndescs++] = v;
        } else if ((v = cli_flag_value(argc, argv, &i, "--model", &bad)) && model_flag(a, v) < 0)
            return CLI_EXIT_USAGE;
        else if (v)
            continue; /* --model taken */
        else if ((v = cli_flag_value(argc, argv, &i, "--queries", &bad)))
            a->queries = v;
        else if ((v = cli_flag_value(argc, argv, &i, "--models", &bad)))
            a->models = v;
        else if ((v = cli_flag_value(argc, argv, &i, "--precision", &bad))) {
            if (cli_parse_precision(a->cmd, v, &a->precision) < 0)
                return CLI_EXIT_USAGE;
        }
        else if (!strcmp(argv[i], "--all-faces"))
            a->all_faces = 1;
        else if (!strcmp(argv[i], "--fuse"))
            a->fuse = 1;
        else if (bad)
            return CLI_EXIT_USAGE;
        else if (argv[i][0] == '-' && argv[i][1])
            return cli_unknown_option(a->cmd, argv[i]);
        else if (a->nimages == LETHE_FUSE_MAX) {
            cli_error("%s: at most %d IMAGEs", a->cmd, LETHE_FUSE_MAX);
            return CLI_EXIT_USAGE;
        } else
            a->image = a->images[a->nimages++] = argv[i];
    }
    return search_parsed(a);
}

/* The faces of IMAGE as queries: the largest (the library's rule), or every
 * one with --all-faces. Returns CLI_EXIT_OK, else CLI_EXIT_FAILED (message
 * printed). */
static int image_queries(const search_cli *a, qlist *q)
{
    lethe_engine_options eo;
    lethe_engine *e = NULL;
    lethe_analysis an;
    char msg[512];
    lethe_engine_options_init(&eo);
    eo.model_dir = a->models;
    eo.threads = a->threads;
    eo.precision = a->precision;
    if (lethe_engine_open(&e, &eo) != LETHE_OK) {
        cli_text_error("%s: %s", a->cmd, lethe_engine_errmsg(e));
        lethe_engine_close(e);
        return CLI_EXIT_FAILED;
    }
    for (int k = 0; k < a->nimages; k++) {
        const char *image = a->images[k];
        /* every face, or the largest (the library's rule) */
        int rc = lethe_engine_analyze_file(
            e, image, NULL, a->all_faces ? LETHE_WANT_DESCRIPTOR : LETHE_LARGEST_FACE, &an, msg,
            sizeof(msg));
        if (rc == LETHE_OK && an.count == 0)
            snprintf(msg, sizeof(msg), "no face found");
        if (rc != LETHE_OK || an.count == 0) {
            if (rc == LETHE_OK)
                lethe_faces_free(an.faces);
            lethe_engine_close(e);
            cli_text_error("%s: %s: %s", a->cmd, image, msg);
            return CLI_EXIT_FAILED;
        }
        lethe_face *faces = an.faces;
        for (int i = 0; i < an.count; i++) {
            char label[4200];
            snprintf(label, sizeof(label), "%s [%.0f,%.0f,%.0f,%.0f]", image,
                     (double)faces[i].box[0], (double)faces[i].box[1], (double)faces[i].box[2],
                     (double)faces[i].box[3]);
            if (ql_add(q, faces[i].descriptor, label) < 0) {
                lethe_faces_free(faces);
                lethe_engine_close(e);
                cli_error("out of memory");
                return CLI_EXIT_FAILED;
            }
        }
        lethe_faces_free(faces);
    }
    lethe_engine_close(e);
    return CLI_EXIT_OK;
}

/* The queries into *q, from --descriptor, --queries or IMAGE (bad lines of
 * --queries set *status to 1). Returns CLI_EXIT_OK when there is something
 * to search for, else the exit status (message printed); the caller frees
 * *q either way. */
static int search_queries(const search_cli *a, qlist *q, int *status)
{
    if (a->desc) {
        for (int k = 0; k < a->ndescs; k++) {
            float v[LETHE_DESCRIPTOR_DIM];
            char msg[512];
            const char *d = a->descs[k];
            if (lethe_descriptor_parse(d, strlen(d), v, msg, sizeof(msg)) != LETHE_OK) {
                cli_error("%s: --descriptor: %s (a JSON array of %d numbers, or an object "
                          "with \"embedding\")", a->cmd, msg, LETHE_DESCRIPTOR_DIM);
                return CLI_EXIT_USAGE;
            }
            if (ql_add(q, v, "descriptor") < 0) {
                cli_error("out of memory");
                return CLI_EXIT_FAILED;
            }
        }
    } else if (a->queries) {
        if (read_queries(q, a->queries, status) < 0)
            return CLI_EXIT_FAILED;
    } else {
        int rc = image_queries(a, q);
        if (rc != CLI_EXIT_OK)
            return rc;
    }
    if (q->n == 0) {
        cli_error("%s: nothing to %s", a->cmd, strcmp(a->cmd, "verify") ? "search for" : "verify");
        return CLI_EXIT_FAILED;
    }
    return CLI_EXIT_OK;
}

/* The matches m[0..nm) (in query order) of each query of q: one JSON line
 * per query, or a table per query. */
/* s escaped for a terminal (cli_put_text), into buf (cut to fit). */
static const char *esc(const char *s, char *buf, size_t n)
{
    FILE *f = fmemopen(buf, n, "w");
    if (!f)
        return "?";
    cli_put_text(f, s && *s ? s : "-");
    fclose(f);
    buf[n - 1] = 0;
    return buf;
}

static void put_bounds_text(const search_bounds *b)
{
    printf("  store of %llu face%s", (unsigned long long)b->gallery, b->gallery == 1 ? "" : "s");
    if (b->fpir > 0)
        printf("; threshold %.4f: a search for someone the store does not hold returns a "
               "face with probability at most %g", (double)b->threshold, b->fpir);
    else if (isfinite(b->threshold))
        printf("; threshold %.4f", (double)b->threshold);
    printf("\n");
}

static void put_match_text(const lethe_match *r, size_t rank)
{
    char e1[64], e2[64], e3[64], e4[2048], fm[16] = "-", st[16] = "-";
    if (!isnan(r->fmr) && !isnan(r->strangers)) { /* fused: not calibrated */
        snprintf(fm, sizeof(fm), "%.2g", r->fmr);
        snprintf(st, sizeof(st), "%.2g", r->strangers);
    }
    printf("  %4zu %8.4f %-4s %9s %9s %-8s %-12.12s %-16.16s %-12.12s %-6s %s\n", rank,
           (double)r->distance, r->distance <= lethe_descriptor_threshold() ? "yes" : "no", fm,
           st, lethe_tier_name(r->tier), r->photo,
           esc(r->prov.uploader, e1, sizeof(e1)), esc(r->prov.source, e2, sizeof(e2)),
           esc(r->prov.jurisdiction, e3, sizeof(e3)),
           esc(r->prov.url && *r->prov.url ? r->prov.url : r->prov.path, e4, sizeof(e4)));
}

/* fused: the queries were one person's, answered as query 0. */
static void search_print(const qlist *q, const lethe_match *m, size_t nm, int json,
                         const search_bounds *b, int fused)
{
    char e5[4200], flabel[64];
    size_t at = 0;
    snprintf(flabel, sizeof(flabel), "%d probes of one person, fused", q->n);
    for (int qi = 0; qi < (fused ? 1 : q->n); qi++) {
        size_t from = at;
        const char *label = fused ? flabel : q->label[qi];
        while (at < nm && m[at].query == qi)
            at++;
        if (json) {
            json_put_search(stdout, qi, label, fused ? q->n : 0, b, m + from, at - from);
            putchar('\n');
            continue;
        }
        printf("%s%s: %zu match%s\n", qi ? "\n" : "", esc(label, e5, sizeof(e5)),
               at - from, at - from == 1 ? "" : "es");
        put_bounds_text(b);
        if (fused)
            printf("  searched with the mean of their descriptors; no calibrated false-match "
                   "rate for fused probes\n");
        if (at > from)
            printf("  %4s %8s %-4s %9s %9s %-8s %-12s %-16s %-12s %-6s %s\n", "rank", "distance",
                   "same", "false-m.", "strangers", "evidence", "photo", "uploader", "source",
                   "jur.", "url or path");
        for (size_t k = from; k < at; k++)
            put_match_text(&m[k], k - from + 1);
    }
}

/* What search and verify share: the command line, the queries and the
 * store. Returns CLI_EXIT_OK with *s open (close it, and free *q), -1 when
 * help was printed, else the exit status (message printed, nothing to free). */
static int query_begin(search_cli *a, int argc, char **argv, void (*help)(void), qlist *q,
                       int *status, lethe_store **s)
{
    int rc;
    a->precision = LETHE_PRECISION_DEFAULT;
    cli_common_init(&a->c);
    lethe_search_options_init(&a->so);
    if (cli_wants_help(argc, argv)) {
        help();
        return -1;
    }
    if ((rc = search_parse(a, argc, argv)) != CLI_EXIT_OK)
        return rc;
    a->so.actor = a->c.actor;
    a->so.threads = a->threads;
    if ((rc = search_queries(a, q, status)) == CLI_EXIT_OK && !(*s = cli_open_store(&a->c, 0)))
        rc = CLI_EXIT_FAILED;
    if (rc != CLI_EXIT_OK)
        ql_free(q);
    return rc;
}

int cmd_search(int argc, char **argv)
{
    search_cli a = {.cmd = "search"};
    qlist q = {0};
    lethe_store *s = NULL;
    lethe_match *m = NULL;
    size_t nm = 0;
    int status = CLI_EXIT_OK;
    int rc = query_begin(&a, argc, argv, search_help, &q, &status, &s);
    if (rc != CLI_EXIT_OK)
        return rc < 0 ? CLI_EXIT_OK : rc;
    search_bounds b;
    if (a.fuse && q.n > LETHE_FUSE_MAX) {
        cli_error("search: --fuse takes at most %d probes, not %d", LETHE_FUSE_MAX, q.n);
        status = CLI_EXIT_USAGE;
    } else if (search_bounds_get(s, &a.so, &b) != LETHE_OK ||
               (a.fuse ? lethe_search_fused(s, q.v, q.n, &a.so, &m, &nm)
                       : lethe_search(s, q.v, q.n, &a.so, &m, &nm)) != LETHE_OK) {
        cli_error("search: %s", lethe_store_errmsg(s));
        status = CLI_EXIT_FAILED;
    } else {
        search_print(&q, m, nm, a.c.json, &b, a.fuse);
    }
    lethe_matches_free(m, nm);
    lethe_store_close(s);
    ql_free(&q);
    return status;
}

/* ---------------------------------------------------------------- verify */

static void verify_help(void)
{
    printf("usage: lethe verify --purpose TEXT (--uploader U | --url URL | --photo-id ID |\n"
           "                    --image FILE) [OPTIONS] (IMAGE | --descriptor JSON)\n"
           "\n"
           "1:1 verification: is the largest face of IMAGE (or the descriptor) the person\n"
           "of the stored photos selected as 'lethe lookup' selects them? It is compared\n"
           "with every template those photos hold (exactly, whatever the size of the\n"
           "store), and the nearest is reported. Like a search it is logged with the\n"
           "actor, the purpose, a keyed hash of the face and the number of templates\n"
           "compared.\n"
           "\n"
           "  --purpose TEXT     why (required; logged)\n"
           "  --threshold T      the same-person threshold (default %.2f)\n"
           "  --descriptor JSON  a descriptor instead of IMAGE (as for 'lethe search')\n"
           "  --models DIR, --precision default|fp32|int8, --threads N  for IMAGE\n"
           "%s"
           "\n"
           "--json prints {\"match\", \"distance\", \"threshold\", \"photo\", \"face\",\n"
           "\"templates\", \"photos\", \"against\"}.\n"
           "Exit status: 0 when verified (the same person or not), 1 if the selection holds\n"
           "no template or on error, 2 for usage errors.\n",
           (double)lethe_descriptor_threshold(), cli_common_help);
}

static void verify_print(const search_cli *a, const lethe_verify_result *r)
{
    static const char *kinds[] = {"uploader", "url", "photo_id", "image"};
    if (a->c.json) {
        printf("{\"match\":%s,\"distance\":%.6f,\"threshold\":%.6f,\"photo\":\"%s\","
               "\"face\":%lld,\"templates\":%d,\"photos\":%d,\"against\":\"%s\"}\n",
               r->match ? "true" : "false", (double)r->distance, (double)r->threshold, r->photo,
               (long long)r->face, r->templates, r->photos, kinds[a->against_kind]);
        return;
    }
    printf("%s: distance %.4f %s the threshold %.2f\n",
           r->match ? "the same person" : "not the same person", (double)r->distance,
           r->match ? "within" : "beyond", (double)r->threshold);
    printf("nearest of %d template%s in %d photo%s: photo %.16s, face %lld\n", r->templates,
           r->templates == 1 ? "" : "s", r->photos, r->photos == 1 ? "" : "s", r->photo,
           (long long)r->face);
}

int cmd_verify(int argc, char **argv)
{
    search_cli a = {.cmd = "verify"};
    qlist q = {0};
    lethe_store *s = NULL;
    lethe_verify_result r;
    int status = CLI_EXIT_OK;
    int rc = query_begin(&a, argc, argv, verify_help, &q, &status, &s);
    if (rc != CLI_EXIT_OK)
        return rc < 0 ? CLI_EXIT_OK : rc;
    rc = lethe_verify(s, q.v, a.against_kind, a.against, &a.so, &r);
    if (rc != LETHE_OK)
        cli_error("verify: %s", lethe_store_errmsg(s));
    else
        verify_print(&a, &r);
    lethe_store_close(s);
    ql_free(&q);
    return cli_status(rc);
}

/* ---------------------------------------------------------------- lookup */

int cmd_lookup(int argc, char **argv)
{
    cli_common c;
    int kind = -1, n = 0;
    const char *value = NULL;
    static const char *flags[] = {"--uploader", "--url", "--photo-id", "--image"};

    cli_common_init(&c);
    if (cli_wants_help(argc, argv)) {
        printf("usage: lethe lookup [--json] --uploader U | --url URL | --photo-id ID | "
               "--image FILE\n\n"
               "Is my photo, or my account, in this store? Lists the photos held for an\n"
               "account, a link, an id (the source's photo id, or the SHA-256 lethe\n"
               "knows the photo by) or the exact file, with every provenance record,\n"
               "the consent basis, and whether face templates exist. No face is\n"
               "analysed: the file given to --image is only hashed. The lookup is\n"
               "logged with a keyed hash of what was looked up.\n\n%s"
               "\nExit status: 0 when something was found, 1 when nothing was (or on\n"
               "error), 2 for usage errors.\n",
               cli_common_help);
        return CLI_EXIT_OK;
    }
    for (int i = 1; i < argc; i++) {
        int bad = 0, r = cli_common_parse(&c, argc, argv, &i), taken = 0;
        if (r < 0)
            return CLI_EXIT_USAGE;
        if (r > 0)
            continue;
        for (int k = 0; k < 4 && !taken; k++) {
            const char *v = cli_flag_value(argc, argv, &i, flags[k], &bad);
            if (v) {
                kind = k;
                value = v;
                n++;
                taken = 1;
            }
        }
        if (taken)
            continue;
        if (bad)
            return CLI_EXIT_USAGE;
        return cli_unknown_option("lookup", argv[i]);
    }
    if (n != 1 || !value || !*value) {
        cli_error("lookup: give exactly one of --uploader, --url, --photo-id, --image");
        return CLI_EXIT_USAGE;
    }
    lethe_store *s = cli_open_store(&c, 0);
    char *out = NULL;
    if (!s)
        return CLI_EXIT_FAILED;
    int rc = lethe_lookup(s, kind, value, c.actor, c.json ? "json" : "text", &out);
    if (rc != LETHE_OK) {
        cli_error("lookup: %s", lethe_store_errmsg(s));
        lethe_store_close(s);
        return cli_status(rc);
    }
    lethe_store_close(s);
    int found = c.json ? strstr(out, "\"photos\":[]") == NULL : strncmp(out, "0 photos", 8) != 0;
    fputs(out, stdout);
    lethe_free_string(out);
    return found ? CLI_EXIT_OK : CLI_EXIT_FAILED;
}

/* ------------------------------------------------------------------- log */

int cmd_log(int argc, char **argv)
{
    cli_common c;
    const char *sub = NULL;
    cli_common_init(&c);
    if (cli_wants_help(argc, argv)) {
        printf("usage: lethe log [--json]\n"
               "       lethe log verify [--json]\n"
               "       lethe log head\n\n"
               "The audit log: every ingest batch, search, lookup and policy change, in\n"
               "order, each entry chained to the previous one by a BLAKE2b hash. 'verify'\n"
               "recomputes the chain and checks it against the head recorded in the\n"
               "catalog and in the file log.head: exit 0 if intact, 1 naming the first\n"
               "entry that fails. 'head' prints SEQ HASH of the last entry, to keep\n"
               "somewhere else as an anchor.\n\n%s", cli_common_help);
        return CLI_EXIT_OK;
    }
    for (int i = 1; i < argc; i++) {
        int r = cli_common_parse(&c, argc, argv, &i);
        if (r < 0)
            return CLI_EXIT_USAGE;
        if (r > 0)
            continue;
        if (argv[i][0] == '-' || sub)
            return cli_unknown_option("log", argv[i]);
        sub = argv[i];
    }
    if (sub && strcmp(sub, "verify") && strcmp(sub, "head")) {
        cli_error("log: unknown subcommand '%s' (verify, head)", sub);
        return CLI_EXIT_USAGE;
    }
    lethe_store *s = cli_open_store(&c, LETHE_STORE_READONLY);
    if (!s)
        return CLI_EXIT_FAILED;
    int status = CLI_EXIT_OK;
    if (sub && !strcmp(sub, "verify")) {
        uint64_t n = 0, bad = 0;
        int rc = lethe_log_verify(s, &n, &bad);
        if (c.json) {
            json_put_log_verify(stdout, rc == LETHE_OK, n, bad, lethe_store_errmsg(s));
            putchar('\n');
        } else if (rc) {
            printf("log NOT intact: ");
            cli_put_text(stdout, lethe_store_errmsg(s));
            putchar('\n');
        } else {
            printf("log intact: %llu entries\n", (unsigned long long)n);
        }
        status = rc ? CLI_EXIT_FAILED : CLI_EXIT_OK;
    } else if (sub) { /* head */
        uint64_t seq = 0;
        char hash[65];
        if (lethe_log_head(s, &seq, hash) != LETHE_OK) {
            cli_error("log: %s", lethe_store_errmsg(s));
            status = CLI_EXIT_FAILED;
        } else {
            printf(c.json ? "{\"seq\":%llu,\"hash\":\"%s\"}\n" : "%llu %s\n",
                   (unsigned long long)seq, hash);
        }
    } else {
        char *out = NULL;
        if (lethe_log_export(s, c.json ? "jsonl" : "text", &out) != LETHE_OK) {
            cli_error("log: %s", lethe_store_errmsg(s));
            status = CLI_EXIT_FAILED;
        } else {
            fputs(out, stdout);
        }
        lethe_free_string(out);
    }
    lethe_store_close(s);
    return status;
}

/* ---------------------------------------------------------------- policy */

static void policy_help(void)
{
    printf("usage: lethe policy show\n"
           "       lethe policy set KEY BASES [--dry-run]\n"
           "       lethe policy check JURISDICTION CONSENT\n\n"
           "The consent policy says, per jurisdiction, on which consent bases a face\n"
           "template may be computed. KEY is default, EEA, a country (US) or a\n"
           "subdivision (US-IL); the most specific rule decides. BASES is a list of\n"
           "explicit, public-license, none (comma-separated), or 'refuse'. withdrawn\n"
           "always refuses. The shipped policy requires explicit consent for default,\n"
           "EEA, GB, US-IL (BIPA), US-TX and US-WA.\n\n"
           "'set' drops the templates already held that the new rule refuses (and\n"
           "says how many; --dry-run only counts). 'check' prints allowed or refused\n"
           "and the deciding rule; exit 0 when allowed, 1 when refused.\n\n%s",
           cli_common_help);
}

/* policy show: the policy's text. Returns the exit status. */
static int policy_show(lethe_store *s, int json)
{
    char *text = NULL;
    int status = CLI_EXIT_OK;
    if (lethe_policy_get(s, &text) != LETHE_OK) {
        cli_error("policy: %s", lethe_store_errmsg(s));
        status = CLI_EXIT_FAILED;
    } else if (json) {
        printf("{\"policy\":");
        json_put_string(stdout, text);
        printf("}\n");
    } else {
        fputs(text, stdout);
    }
    lethe_free_string(text);
    return status;
}

/* policy set KEY BASES ('refuse': none): the rule, and how many templates
 * it drops (would drop, when dry). Returns the exit status. */
static int policy_set(lethe_store *s, const cli_common *c, const char *key, const char *arg,
                      int dry)
{
    uint64_t dropped = 0;
    const char *bases = !strcmp(arg, "refuse") ? "" : arg;
    int rc = lethe_policy_set(s, key, bases, c->actor, dry, &dropped);
    if (rc != LETHE_OK) {
        cli_error("policy set: %s", lethe_store_errmsg(s));
        return rc == LETHE_ERR_ARG ? CLI_EXIT_USAGE : CLI_EXIT_FAILED;
    }
    if (c->json) {
        printf("{\"key\":");
        json_put_string(stdout, key);
        printf(",\"allows\":");
        json_put_string(stdout, bases);
        printf(",\"dry_run\":%s,\"templates_dropped\":%llu}\n", dry ? "true" : "false",
               (unsigned long long)dropped);
    } else {
        printf("%s %s: %s; %llu template%s %s\n", dry ? "would set" : "set", key,
               *bases ? bases : "refuse", (unsigned long long)dropped,
               dropped == 1 ? "" : "s", dry ? "would be dropped" : "dropped");
    }
    return CLI_EXIT_OK;
}

/* policy check JURISDICTION CONSENT: allowed (exit 0) or refused (exit 1),
 * and the deciding rule. */
static int policy_check(lethe_store *s, int json, const char *jurisdiction,
                        const char *consent)
{
    const char *rule = NULL;
    int r = lethe_policy_check(s, jurisdiction, consent, &rule);
    if (r < 0) {
        cli_error("policy check: %s", lethe_store_errmsg(s));
        return cli_status(-r); /* minus the status: a bad argument is usage */
    }
    if (json) {
        json_put_policy_check(stdout, jurisdiction, consent, r, rule);
        putchar('\n');
    } else {
        printf("%s (rule: %s)\n", r ? "allowed" : "refused", rule ? rule : "?");
    }
    return r ? CLI_EXIT_OK : CLI_EXIT_FAILED;
}

int cmd_policy(int argc, char **argv)
{
    cli_common c;
    const char *args[8];
    int na = 0, dry = 0;
    cli_common_init(&c);
    if (cli_wants_help(argc, argv) || argc < 2) {
        policy_help();
        return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
    }
    for (int i = 1; i < argc; i++) {
        int r = cli_common_parse(&c, argc, argv, &i);
        if (r < 0)
            return CLI_EXIT_USAGE;
        if (r > 0)
            continue;
        if (!strcmp(argv[i], "--dry-run"))
            dry = 1;
        else if (argv[i][0] == '-' && argv[i][1])
            return cli_unknown_option("policy", argv[i]);
        else if (na < 8)
            args[na++] = argv[i];
    }
    const char *sub = na ? args[0] : "";
    int need = !strcmp(sub, "show") ? 1 : !strcmp(sub, "set") ? 3 : !strcmp(sub, "check") ? 3 : -1;
    if (need < 0) {
        cli_error("policy: unknown subcommand '%s' (show, set, check)", sub);
        return CLI_EXIT_USAGE;
    }
    if (na != need) {
        cli_error("policy %s: expected %d argument%s (try 'lethe policy --help')", sub,
                  need - 1, need == 2 ? "" : "s");
        return CLI_EXIT_USAGE;
    }
    lethe_store *s = cli_open_store(&c, !strcmp(sub, "set") ? 0 : LETHE_STORE_READONLY);
    int status;
    if (!s)
        return CLI_EXIT_FAILED;
    if (!strcmp(sub, "show"))
        status = policy_show(s, c.json);
    else if (!strcmp(sub, "set"))
        status = policy_set(s, &c, args[1], args[2], dry);
    else
        status = policy_check(s, c.json, args[1], args[2]);
    lethe_store_close(s);
    return status;
}

/* ------------------------------------------------------ datasheet, digest */

int cmd_datasheet(int argc, char **argv)
{
    cli_common c;
    const char *format = "md", *output = NULL;
    cli_common_init(&c);
    if (cli_wants_help(argc, argv)) {
        printf("usage: lethe datasheet [--format md|html|json] [-o FILE]\n\n"
               "What an auditor of a face vendor asks for: photos, faces and templates by\n"
               "source, license, jurisdiction and consent basis; photos refused by the\n"
               "consent policy; the policy in force; searches by purpose and actor; the\n"
               "state of the audit log. The HTML page is one self-contained file with\n"
               "charts (no network).\n\n"
               "  --format F   md (default), html or json\n"
               "  -o FILE      write to FILE instead of standard output\n%s",
               cli_common_help);
        return CLI_EXIT_OK;
    }
    for (int i = 1; i < argc; i++) {
        int bad = 0, r = cli_common_parse(&c, argc, argv, &i);
        const char *v;
        if (r < 0)
            return CLI_EXIT_USAGE;
        if (r > 0)
            continue;
        if ((v = cli_flag_value(argc, argv, &i, "--format", &bad)))
            format = v;
        else if ((v = cli_flag_value(argc, argv, &i, "-o", &bad)) ||
                 (v = cli_flag_value(argc, argv, &i, "--output", &bad)))
            output = v;
        else if (bad)
            return CLI_EXIT_USAGE;
        else
            return cli_unknown_option("datasheet", argv[i]);
    }
    if (c.json)
        format = "json";
    if (strcmp(format, "md") && strcmp(format, "html") && strcmp(format, "json")) {
        cli_error("datasheet: unknown format '%s' (md, html, json)", format);
        return CLI_EXIT_USAGE;
    }
    lethe_store *s = cli_open_store(&c, LETHE_STORE_READONLY);
    char *out = NULL;
    int status = CLI_EXIT_OK;
    if (!s)
        return CLI_EXIT_FAILED;
    if (lethe_datasheet(s, format, &out) != LETHE_OK) {
        cli_error("datasheet: %s", lethe_store_errmsg(s));
        status = CLI_EXIT_FAILED;
    } else {
        FILE *f = output ? fopen(output, "w") : stdout;
        if (!f || fputs(out, f) < 0 || (output && fclose(f) != 0)) {
            cli_error("datasheet: %s: %s", output ? output : "stdout", strerror(errno));
            status = CLI_EXIT_FAILED;
        }
    }
    lethe_free_string(out);
    lethe_store_close(s);
    return status;
}

int cmd_digest(int argc, char **argv)
{
    cli_common c;
    char hex[65];
    cli_common_init(&c);
    if (cli_wants_help(argc, argv)) {
        printf("usage: lethe digest [--store DIR] [--json] [--full]\n\n"
               "A canonical digest of the store's logical content: photos, provenance,\n"
               "faces, templates and the consent policy; not the log, and nothing that\n"
               "depends on the order things happened in. Two stores that hold the same\n"
               "data have the same digest, whatever their history. It is a multiset\n"
               "hash kept up to date with every change; --full recomputes it from every\n"
               "record and exits 1 if that differs from the kept one.\n\n%s",
               cli_common_help);
        return CLI_EXIT_OK;
    }
    static const char *const switches[] = {"--full", NULL};
    int full = 0, matches = 1;
    if (cli_parse_simple("digest", &c, argc, argv, switches, &full, NULL) != CLI_EXIT_OK)
        return CLI_EXIT_USAGE;
    lethe_store *s = cli_open_store(&c, LETHE_STORE_READONLY);
    if (!s)
        return CLI_EXIT_FAILED;
    int rc = full ? lethe_store_digest_full(s, hex, &matches) : lethe_store_digest(s, hex);
    if (rc != LETHE_OK)
        cli_error("digest: %s", lethe_store_errmsg(s));
    else if (c.json)
        printf("{\"digest\":\"%s\"%s}\n", hex,
               full ? (matches ? ",\"matches_kept\":true" : ",\"matches_kept\":false") : "");
    else
        printf("%s\n", hex);
    if (rc == LETHE_OK && !matches)
        cli_error("digest: the recomputed digest differs from the kept one");
    lethe_store_close(s);
    return rc || !matches ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}
