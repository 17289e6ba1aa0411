/*
 * cmd_store.c: the store commands: init, ingest, search, lookup, log,
 * policy, datasheet, digest.
 *
 * The store is --store DIR, else $LETHE_STORE, else ./lethe-store. The
 * actor recorded in the log is --actor NAME, else $LETHE_ACTOR, else the
 * login name.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "cli_store.h"

/* ---------------------------------------------------------------- init */

int cmd_init(int argc, char **argv)
{
    cli_common c;
    lethe_store_options o;
    const char *dir = NULL, *mirror = NULL; /* "lethe init DIR" as well as --store DIR */
    cli_common_init(&c);
    if (cli_wants_help(argc, argv)) {
        printf("usage: lethe init [--store DIR] [--keyring-mirror MIRROR]\n\n"
               "Create an empty store: the catalog, the keyring (mode 0600: every photo's\n"
               "key, the signing secret; never in a backup), the default consent policy\n"
               "(explicit consent required everywhere; see 'lethe policy') and the first\n"
               "entry of the audit log, which names the actor. An existing store is left as\n"
               "it is.\n\n"
               "  --keyring-mirror MIRROR  keep a copy of the keyring in folder MIRROR (put\n"
               "                           it on another disk): without a keyring no backup\n"
               "                           can be restored (see 'lethe keyring')\n%s",
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
        if ((v = cli_flag_value(argc, argv, &i, "--keyring-mirror", &bad)))
            mirror = v;
        else if (bad)
            return CLI_EXIT_USAGE;
        else if (argv[i][0] != '-' && !dir)
            dir = argv[i];
        else
            return cli_unknown_option("init", argv[i]);
    }
    if (dir)
        c.store = dir;
    struct stat sb;
    char db[4096], *abs_mirror = NULL;
    snprintf(db, sizeof(db), "%s/catalog.db", c.store);
    int existed = stat(db, &sb) == 0;
    if (mirror && !(abs_mirror = realpath(mirror, NULL))) {
        cli_error("init: --keyring-mirror %s: %s", mirror, strerror(errno));
        return CLI_EXIT_USAGE;
    }
    cli_store_options(&c, LETHE_STORE_CREATE, &o);
    o.keyring_mirror = abs_mirror;
    lethe_store *s = NULL;
    int rc = lethe_store_open_with(c.store, &o, &s);
    free(abs_mirror);
    if (rc != LETHE_OK) {
        cli_error("init: %s", lethe_store_errmsg(s));
        lethe_store_close(s);
        return cli_status(rc);
    }
    if (existed && mirror) {
        cli_error("init: %s exists already; set its mirror with 'lethe keyring mirror'",
                  c.store);
        lethe_store_close(s);
        return CLI_EXIT_USAGE;
    }
    if (c.json) {
        printf("{\"store\":");
        json_put_string(stdout, c.store);
        printf(",\"created\":%s}\n", existed ? "false" : "true");
    } else {
        printf("%s store %s\n", existed ? "existing" : "created", c.store);
    }
    lethe_store_close(s);
    return CLI_EXIT_OK;
}

/* -------------------------------------------------------------- ingest */

typedef ingest_error err_item; /* cli.h */

typedef struct ingest_cli {
    cli_common c;
    lethe_provenance defaults;
    const char *manifest, *descriptors, *sidecar, *models;
    const char *model_arg;   /* --model: the descriptors' model */
    lethe_model_id model;
    int threads, quiet, progress, precision, allow_outside;
    err_item *errs;
    size_t nerr, caperr;
    uint64_t total;          /* inputs expected, for the progress bar (0 unknown) */
    struct timespec t0, last;
    lethe_ingest *ing;
} ingest_cli;

static double since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + 1e-9 * (double)(t.tv_nsec - t0->tv_nsec);
}

static void on_error(void *ctx, const char *input, size_t line, const char *msg)
{
    ingest_cli *g = ctx;
    if (g->progress)
        fputs("\r\033[K", stderr);
    fputs("lethe: ingest: ", stderr);
    cli_put_text(stderr, input);
    if (line)
        fprintf(stderr, ": line %zu", line);
    fputs(": ", stderr);
    cli_put_text(stderr, msg);
    fputc('\n', stderr);
    if (g->nerr == g->caperr) {
        size_t nc = g->caperr ? g->caperr * 2 : 16;
        err_item *t = realloc(g->errs, nc * sizeof(*t));
        if (!t)
            return;
        g->errs = t;
        g->caperr = nc;
    }
    err_item *e = &g->errs[g->nerr];
    e->input = strdup(input);
    e->reason = strdup(msg);
    e->line = line;
    if (e->input && e->reason)
        g->nerr++;
}

static void show_progress(ingest_cli *g, int final)
{
    lethe_ingest_stats st;
    if (!g->progress || !g->ing)
        return;
    if (!final && since(&g->last) < 0.2)
        return;
    clock_gettime(CLOCK_MONOTONIC, &g->last);
    lethe_ingest_progress(g->ing, &st);
    double t = since(&g->t0), rate = t > 0 ? (double)st.seen / t : 0;
    char eta[32] = "";
    if (g->total && rate > 0 && st.seen <= g->total) {
        double left = (double)(g->total - st.seen) / rate;
        snprintf(eta, sizeof(eta), "  ETA %d:%02d", (int)left / 60, (int)left % 60);
    }
    int width = 24, fill = g->total ? (int)((double)width * (double)st.seen / (double)g->total) : 0;
    if (fill > width)
        fill = width;
    fprintf(stderr, "\r\033[Kingest [%.*s%*s] %llu", fill, "########################",
            width - fill, "", (unsigned long long)st.seen);
    if (g->total)
        fprintf(stderr, "/%llu", (unsigned long long)g->total);
    fprintf(stderr, "  %.1f/s%s  faces %llu  refused %llu  errors %llu%s", rate, eta,
            (unsigned long long)st.faces, (unsigned long long)st.refused,
            (unsigned long long)st.errors, final ? "\n" : "");
    fflush(stderr);
}

static int is_image_name(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot && (!strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg") ||
                   !strcasecmp(dot, ".png") || !strcasecmp(dot, ".webp"));
}

typedef struct pathlist {
    char **v;
    size_t n, cap;
} pathlist;

static int pl_add(pathlist *pl, const char *p)
{
    if (pl->n == pl->cap) {
        size_t nc = pl->cap ? pl->cap * 2 : 256;
        char **t = realloc(pl->v, nc * sizeof(*t));
        if (!t)
            return -1;
        pl->v = t;
        pl->cap = nc;
    }
    if (!(pl->v[pl->n] = strdup(p)))
        return -1;
    pl->n++;
    return 0;
}

static void pl_free(pathlist *pl)
{
    for (size_t i = 0; i < pl->n; i++)
        free(pl->v[i]);
    free(pl->v);
    memset(pl, 0, sizeof(*pl));
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Folders recursively (sorted, image files only; hidden entries skipped). */
static int collect(pathlist *pl, const char *path, int top)
{
    struct stat sb;
    if (stat(path, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
        /* files named on the command line are tried whatever their name */
        if (top || is_image_name(path))
            return pl_add(pl, path);
        return 0;
    }
    DIR *d = opendir(path);
    if (!d) {
        cli_error("ingest: %s: %s", path, strerror(errno));
        return 0;
    }
    pathlist sub = {0};
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        size_t n = strlen(path) + strlen(e->d_name) + 2;
        char *p = malloc(n);
        if (!p || (snprintf(p, n, "%s/%s", path, e->d_name), pl_add(&sub, p) < 0)) {
            free(p);
            closedir(d);
            return -1;
        }
        free(p);
    }
    closedir(d);
    qsort(sub.v, sub.n, sizeof(char *), cmp_str);
    int rc = 0;
    for (size_t i = 0; i < sub.n; i++) {
        if (rc == 0)
            rc = collect(pl, sub.v[i], 0);
        free(sub.v[i]);
    }
    free(sub.v);
    return rc;
}

/* Fill in provenance fields the row leaves empty from the command line. */
static void merge_defaults(lethe_provenance *p, const lethe_provenance *d)
{
    const char **dst[] = {&p->photo_id, &p->url, &p->uploader, &p->source, &p->license,
                          &p->jurisdiction, &p->consent, &p->collected_at};
    const char *const src[] = {d->photo_id, d->url, d->uploader, d->source, d->license,
                               d->jurisdiction, d->consent, d->collected_at};
    for (size_t i = 0; i < sizeof(src) / sizeof(src[0]); i++)
        if ((!*dst[i] || !**dst[i]) && src[i])
            *dst[i] = src[i];
}

/* Lines in a file, for the progress bar only (0 when unknown). Called after
 * the manifest reader accepted the file; a FIFO swapped in since is still
 * never waited on (O_NONBLOCK, and only regular files are read). */
static uint64_t count_lines(const char *file)
{
    int fd = open(file, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    struct stat sb;
    uint64_t n = 0;
    char buf[65536];
    ssize_t r;
    if (fd < 0)
        return 0;
    if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode))
        while ((r = read(fd, buf, sizeof(buf))) > 0)
            for (ssize_t i = 0; i < r; i++)
                n += buf[i] == '\n';
    close(fd);
    return n;
}

/* Ingest every row of an open manifest; file names it in messages. */
static int ingest_rows(ingest_cli *g, lethe_manifest *m, const char *file)
{
    lethe_manifest_row row;
    char msg[1024];
    int rc = 0;
    const char *const *unknown;
    size_t nu = lethe_manifest_unknown_columns(m, &unknown);
    for (size_t i = 0; i < nu && !g->c.json; i++)
        fprintf(stderr, "lethe: ingest: %s: ignoring unknown column \"%s\"\n", file, unknown[i]);
    int r;
    while ((r = lethe_manifest_next(m, &row, msg, sizeof(msg))) != 0) {
        if (r == -1) {
            /* msg starts with "line N: " */
            size_t line = 0;
            const char *why = msg;
            if (sscanf(msg, "line %zu: ", &line) == 1 && strchr(msg, ':'))
                why = strchr(msg, ':') + 2;
            /* counted by the ingest, and so in its log and the datasheet */
            if (lethe_ingest_fail(g->ing, file, line, why) != LETHE_OK) {
                rc = -1;
                break;
            }
            continue;
        }
        if (r == -2) {
            cli_error("ingest: %s: %s", file, msg);
            rc = -1;
            break;
        }
        merge_defaults(&row.prov, &g->defaults);
        if (row.embedding)
            rc = lethe_ingest_descriptor(g->ing, row.embedding, &row.prov, row.line);
        else
            rc = lethe_ingest_photo(g->ing, row.file, &row.prov, row.line);
        if (rc != LETHE_OK) {
            rc = -1;
            break;
        }
        show_progress(g, 0);
    }
    /* line-level errors from the ingest itself name the manifest's line with
     * the photo's path; that is what a user needs to fix the row */
    return rc;
}

static int ingest_manifest(ingest_cli *g, const char *file, unsigned flags)
{
    lethe_manifest *m = NULL;
    char msg[1024];
    if (lethe_manifest_open(file, flags, &m, msg, sizeof(msg)) != LETHE_OK) {
        cli_error("ingest: %s", msg);
        return -1;
    }
    g->total = count_lines(file);
    if (g->total && !(flags & LETHE_MANIFEST_DESCRIPTORS))
        g->total--; /* the header, for CSV; close enough for JSON Lines */
    int rc = ingest_rows(g, m, file);
    lethe_manifest_close(m);
    return rc;
}

/* Raw little-endian float32 descriptors, 128 per row, with a sidecar
 * manifest (CSV or JSON Lines) giving each row's provenance in order; row
 * errors name the sidecar's line. */
static int ingest_raw(ingest_cli *g)
{
    lethe_manifest *m = NULL;
    char msg[1024];
    struct stat sb;
    if (lethe_manifest_open_raw(g->descriptors, g->sidecar, 0, &m, msg, sizeof(msg)) !=
        LETHE_OK) {
        cli_error("ingest: %s", msg);
        return -1;
    }
    if (stat(g->descriptors, &sb) == 0)
        g->total = (uint64_t)sb.st_size / (LETHE_DESCRIPTOR_DIM * sizeof(float));
    int rc = ingest_rows(g, m, g->sidecar);
    lethe_manifest_close(m);
    return rc;
}

static void ingest_help(void)
{
    printf(
        "usage: lethe ingest [OPTIONS] PATH...\n"
        "       lethe ingest [OPTIONS] --manifest FILE\n"
        "       lethe ingest [OPTIONS] --descriptors FILE.jsonl\n"
        "       lethe ingest [OPTIONS] --descriptors FILE.f32 --sidecar FILE\n"
        "\n"
        "Add photos to the store with their provenance. Each photo is known by the\n"
        "SHA-256 of its bytes; one seen again under new provenance gains a record.\n"
        "The consent policy decides, per jurisdiction and consent basis, whether face\n"
        "templates may be computed: a refused photo is catalogued (so its owner can\n"
        "find and erase it) but never decoded or analysed. Running the same ingest\n"
        "again adds nothing; an interrupted one resumes where its last batch ended.\n"
        "\n"
        "Inputs:\n"
        "  PATH...             photo files, or folders searched recursively for\n"
        "                      .jpg .jpeg .png .webp files\n"
        "  --manifest FILE     CSV with a header, or JSON Lines: path (relative to\n"
        "                      the manifest's folder), photo_id, url, uploader, source,\n"
        "                      license, jurisdiction, consent, collected_at\n"
        "  --allow-outside     let manifest rows name files outside the manifest's\n"
        "                      folder (absolute paths, '..', links leading out); by\n"
        "                      default such a row is an error\n"
        "  --descriptors FILE  descriptors computed elsewhere in the same model space:\n"
        "                      JSON Lines with \"embedding\" (128 numbers) and the\n"
        "                      provenance columns, or raw little-endian float32 (.f32,\n"
        "                      512 bytes per descriptor) with --sidecar\n"
        "  --model NAME@VERSION[@WEIGHTS]  the model that computed the descriptors\n"
        "                      (default: the shipped one); only its queries find them\n"
        "  --sidecar FILE      provenance of the raw descriptors, one row each, in order\n"
        "                      (as many rows as descriptors; NaN or infinite values\n"
        "                      are row errors)\n"
        "\n"
        "Provenance (for PATHs; for manifests, fills the columns a row leaves empty):\n"
        "  --source S          the collection (a site, a dataset)\n"
        "  --uploader U        the account that published the photos\n"
        "  --license L\n"
        "  --jurisdiction J    ISO 3166-1 alpha-2 or 3166-2: GB, DE, US-IL\n"
        "  --consent BASIS     explicit, public-license, none (default), withdrawn\n"
        "  --collected-at DATE ISO 8601 date or date-time\n"
        "\n"
        "Other options:\n"
        "  --threads N         photos analysed at once (default: one per core)\n"
        "  --models DIR        model folder (default: $LETHE_MODELS or built in)\n"
        "  --precision default|fp32|int8\n"
        "                      default (= int8): the SSD detector in int8 where the\n"
        "                      CPU has AVX-512 VNNI, about twice the photos per\n"
        "                      second; fp32: the reference, bit for bit; descriptors\n"
        "                      differ by about 0.03 (docs/model-card.md)\n"
        "  --quiet             no progress bar (it shows only on a terminal anyway)\n"
        "%s"
        "\n"
        "Errors (unreadable or corrupt photos, bad manifest rows) are reported one\n"
        "per line with the file and, for manifests, the line; the rest is ingested\n"
        "and the exit status is 1. --json prints a summary: seen, added, duplicates,\n"
        "provenance, faces, templates, refused, withdrawn, no_face, the precision\n"
        "and kernels of the face models (when photos were analysed), and errors.\n",
        cli_common_help);
}

/* Exactly one kind of input, and options that go with it. Returns
 * CLI_EXIT_OK or CLI_EXIT_USAGE (message printed). */
static int ingest_check_inputs(const ingest_cli *g, size_t npaths)
{
    int modes = (npaths > 0) + (g->manifest != NULL) + (g->descriptors != NULL);
    if (modes != 1) {
        cli_error("ingest: give photos or folders, or --manifest FILE, or --descriptors FILE "
                  "(exactly one kind; try 'lethe ingest --help')");
        return CLI_EXIT_USAGE;
    }
    if (g->sidecar && !g->descriptors) {
        cli_error("ingest: --sidecar goes with --descriptors");
        return CLI_EXIT_USAGE;
    }
    if (g->model_arg && !g->descriptors) {
        cli_error("ingest: --model goes with --descriptors (photos are described by the "
                  "engine's model)");
        return CLI_EXIT_USAGE;
    }
    if (g->allow_outside && !g->manifest) {
        cli_error("ingest: --allow-outside goes with --manifest");
        return CLI_EXIT_USAGE;
    }
    if (g->descriptors) {
        const char *dot = strrchr(g->descriptors, '.');
        if (dot && (!strcmp(dot, ".f32") || !strcmp(dot, ".bin")) && !g->sidecar) {
            cli_error("ingest: %s looks like raw float32 descriptors: give their provenance "
                      "with --sidecar FILE", g->descriptors);
            return CLI_EXIT_USAGE;
        }
    }
    return CLI_EXIT_OK;
}

/* The command line into *g, the photos and folders it names into *paths
 * (folders searched now). Returns CLI_EXIT_OK to go on, else the exit status
 * (message printed); the caller frees *paths either way. */
static int ingest_parse(ingest_cli *g, pathlist *paths, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        int bad = 0, r = cli_common_parse(&g->c, argc, argv, &i);
        const char *v;
        if (r < 0)
            return CLI_EXIT_USAGE;
        if (r > 0)
            continue;
        if ((v = cli_flag_value(argc, argv, &i, "--manifest", &bad)))
            g->manifest = v;
        else if ((v = cli_flag_value(argc, argv, &i, "--descriptors", &bad)))
            g->descriptors = v;
        else if ((v = cli_flag_value(argc, argv, &i, "--sidecar", &bad)))
            g->sidecar = v;
        else if ((v = cli_flag_value(argc, argv, &i, "--source", &bad)))
            g->defaults.source = v;
        else if ((v = cli_flag_value(argc, argv, &i, "--uploader", &bad)))
            g->defaults.uploader = v;
        else if ((v = cli_flag_value(argc, argv, &i, "--license", &bad)))
            g->defaults.license = v;
        else if ((v = cli_flag_value(argc, argv, &i, "--jurisdiction", &bad)))
            g->defaults.jurisdiction = v;
        else if ((v = cli_flag_value(argc, argv, &i, "--consent", &bad)))
            g->defaults.consent = v;
        else if ((v = cli_flag_value(argc, argv, &i, "--collected-at", &bad)))
            g->defaults.collected_at = v;
        else if ((v = cli_flag_value(argc, argv, &i, "--models", &bad)))
            g->models = v;
        else if ((v = cli_flag_value(argc, argv, &i, "--model", &bad))) {
            char msg[256];
            if (lethe_model_parse(v, &g->model, msg, sizeof(msg)) != LETHE_OK) {
                cli_error("ingest: --model: %s", msg);
                return CLI_EXIT_USAGE;
            }
            g->model_arg = v;
        }
        else if ((v = cli_flag_value(argc, argv, &i, "--precision", &bad))) {
            if (cli_parse_precision("ingest", v, &g->precision) < 0)
                return CLI_EXIT_USAGE;
        } else if ((v = cli_flag_value(argc, argv, &i, "--threads", &bad))) {
            char *end;
            long t = strtol(v, &end, 10);
            if (*end || t < 0 || t > 1024) {
                cli_error("ingest: --threads: '%s' is not a number from 0 to 1024", v);
                return CLI_EXIT_USAGE;
            }
            g->threads = (int)t;
        } else if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "-q"))
            g->quiet = 1;
        else if (!strcmp(argv[i], "--allow-outside"))
            g->allow_outside = 1;
        else if (bad)
            return CLI_EXIT_USAGE;
        else if (argv[i][0] == '-' && argv[i][1])
            return cli_unknown_option("ingest", argv[i]);
        else if (collect(paths, argv[i], 1) < 0) {
            cli_error("out of memory");
            return CLI_EXIT_FAILED;
        }
    }
    return ingest_check_inputs(g, paths->n);
}

/* Open the store (and, for photos, the engine) and begin the ingest into
 * g->ing. Returns CLI_EXIT_OK, else the exit status (message printed) with
 * whatever it opened closed again and *sp, *ep NULL. */
static int ingest_start(ingest_cli *g, lethe_store **sp, lethe_engine **ep)
{
    lethe_store *s;
    lethe_engine *engine = NULL;
    int rc = CLI_EXIT_FAILED;

    if (!(s = cli_open_store(&g->c, 0)))
        return CLI_EXIT_FAILED;
    /* Command-line provenance is checked once, not once per photo. */
    if ((g->defaults.jurisdiction || g->defaults.consent) &&
        lethe_policy_check(s, g->defaults.jurisdiction, g->defaults.consent, NULL) < 0) {
        cli_error("ingest: %s", lethe_store_errmsg(s));
        rc = CLI_EXIT_USAGE;
        goto out_close;
    }
    if (!g->descriptors) {
        lethe_engine_options eo;
        lethe_engine_options_init(&eo);
        eo.model_dir = g->models;
        eo.threads = g->threads;
        eo.precision = g->precision;
        if (lethe_engine_open(&engine, &eo) != LETHE_OK) {
            cli_error("%s", lethe_engine_errmsg(engine));
            goto out_close;
        }
    }
    lethe_ingest_options io;
    lethe_ingest_options_init(&io);
    io.engine = engine;
    io.actor = g->c.actor;
    io.threads = g->threads;
    io.on_error = on_error;
    io.ctx = g;
    io.model = g->model_arg ? &g->model : NULL;
    if (lethe_ingest_begin(s, &io, &g->ing) != LETHE_OK) {
        cli_error("%s", lethe_store_errmsg(s));
        goto out_close;
    }
    *sp = s;
    *ep = engine;
    return CLI_EXIT_OK;
out_close:
    lethe_engine_close(engine);
    lethe_store_close(s);
    return rc;
}

/* Feed every input to the ingest; returns 1 if it had to stop (the store
 * failed, or a manifest could not be read on), else 0. */
static int ingest_inputs(ingest_cli *g, const pathlist *paths)
{
    int fatal = 0;
    if (paths->n) {
        g->total = paths->n;
        lethe_provenance p = g->defaults;
        for (size_t i = 0; i < paths->n && !fatal; i++) {
            if (lethe_ingest_photo(g->ing, paths->v[i], &p, 0) != LETHE_OK)
                fatal = 1;
            show_progress(g, 0);
        }
    } else if (g->manifest) {
        fatal = ingest_manifest(g, g->manifest,
                                g->allow_outside ? LETHE_MANIFEST_ALLOW_OUTSIDE : 0) < 0;
    } else if (g->sidecar) { /* raw float32: ingest_check_inputs() made sure */
        fatal = ingest_raw(g) < 0;
    } else {
        fatal = ingest_manifest(g, g->descriptors, LETHE_MANIFEST_DESCRIPTORS) < 0;
    }
    return fatal;
}

/* The summary on stdout: one JSON object with every error (--json), or one
 * line and what needs saying about opt-outs and an uncommitted batch. */
static void ingest_summary(const ingest_cli *g, const lethe_engine *engine,
                           const lethe_ingest_stats *st, double secs, int fatal)
{
    if (g->c.json) {
        json_put_ingest(stdout, st, secs, !fatal, engine, g->errs, g->nerr);
        putchar('\n');
        return;
    }
    printf("%llu seen, %llu added, %llu duplicates, %llu provenance records, %llu faces, "
           "%llu templates stored, %llu photos refused by policy, %llu errors (%.1f s)\n",
           (unsigned long long)st->seen, (unsigned long long)st->added,
           (unsigned long long)st->duplicates, (unsigned long long)st->provenance,
           (unsigned long long)st->faces, (unsigned long long)st->templates,
           (unsigned long long)st->refused, (unsigned long long)st->errors, secs);
    if (st->opted_out || st->opted_out_faces)
        printf("%llu photos and %llu faces refused by standing opt-outs\n",
               (unsigned long long)st->opted_out, (unsigned long long)st->opted_out_faces);
    if (st->uncommitted)
        printf("NOT COMMITTED: %llu inputs of the batch that failed (run the same ingest "
               "again: what is committed is not added twice)\n",
               (unsigned long long)st->uncommitted);
}

int cmd_ingest(int argc, char **argv)
{
    ingest_cli g;
    pathlist paths = {0};
    lethe_engine *engine = NULL;
    lethe_store *s = NULL;
    lethe_ingest_stats st;
    int rc, fatal;

    memset(&g, 0, sizeof(g));
    cli_common_init(&g.c);
    if (cli_wants_help(argc, argv)) {
        ingest_help();
        return CLI_EXIT_OK;
    }
    if ((rc = ingest_parse(&g, &paths, argc, argv)) != CLI_EXIT_OK ||
        (rc = ingest_start(&g, &s, &engine)) != CLI_EXIT_OK) {
        pl_free(&paths);
        return rc;
    }
    g.progress = !g.quiet && isatty(STDERR_FILENO);
    clock_gettime(CLOCK_MONOTONIC, &g.t0);
    g.last = g.t0;
    fatal = ingest_inputs(&g, &paths);
    rc = lethe_ingest_end(g.ing, &st);
    show_progress(&g, 1);
    if (rc != LETHE_OK) {
        cli_error("ingest: %s", lethe_store_errmsg(s));
        fatal = 1;
    }
    ingest_summary(&g, engine, &st, since(&g.t0), fatal);
    for (size_t i = 0; i < g.nerr; i++) {
        free(g.errs[i].input);
        free(g.errs[i].reason);
    }
    free(g.errs);
    pl_free(&paths);
    lethe_engine_close(engine);
    lethe_store_close(s);
    return fatal || g.nerr ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}
