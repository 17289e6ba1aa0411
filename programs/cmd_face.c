/*
 * cmd_face.c: lethe detect, lethe embed and lethe compare: options, and the
 * printing of what the library finds (lethe_engine_analyze_batch analyses a
 * batch over its threads and hands the results over in input order;
 * lethe_engine_analyze_file describes compare's largest faces). An image
 * that cannot be read is reported (as {"image", "error"} with --json) and
 * the batch goes on; the exit status is then 1. Text output escapes what
 * came from outside (cli_put_text).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

void face_opts_init(face_opts *o)
{
    memset(o, 0, sizeof(*o));
    lethe_engine_options_init(&o->engine);
}

static int parse_int(const char *flag, const char *v, int lo, int hi, int *out)
{
    char *end;
    long x;
    errno = 0;
    x = strtol(v, &end, 10);
    if (errno || *end || end == v || x < lo || x > hi) {
        cli_text_error("%s expects a whole number from %d to %d, not '%s'", flag, lo, hi, v);
        return -1;
    }
    *out = (int)x;
    return 1;
}

static int parse_float(const char *flag, const char *v, double lo, double hi, float *out)
{
    char *end;
    double x;
    errno = 0;
    x = strtod(v, &end);
    if (errno || *end || end == v || !(x > lo && x < hi)) {
        cli_text_error("%s expects a number between %g and %g, not '%s'", flag, lo, hi, v);
        return -1;
    }
    *out = (float)x;
    return 1;
}

const char cli_precision_help[] =
    "  --precision default|fp32|int8\n"
    "                       default (= int8): the SSD detector in int8 where the\n"
    "                       CPU has AVX-512 VNNI, about twice the photos per\n"
    "                       second (descriptors move by about 0.03; see\n"
    "                       docs/model-card.md); fp32: full single precision in\n"
    "                       every layer, in the reference order (face-api.js's\n"
    "                       outputs, to reproduce them)\n";

int cli_parse_precision(const char *cmd, const char *v, int *out)
{
    if (!strcmp(v, "default"))
        *out = LETHE_PRECISION_DEFAULT;
    else if (!strcmp(v, "fp32"))
        *out = LETHE_PRECISION_FP32;
    else if (!strcmp(v, "int8"))
        *out = LETHE_PRECISION_INT8;
    else {
        cli_text_error("%s%s--precision is default, fp32 or int8, not '%s'", cmd ? cmd : "",
                  cmd ? ": " : "", v);
        return -1;
    }
    return 0;
}

int face_opts_parse(face_opts *o, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    const char *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    static const char *valued[] = {"--detector", "--threads", "--models", "--min-score",
                                   "--min-face-size", "--align", "--precision",
                                   "--input-size"};

    if (!strcmp(a, "--json")) {
        o->json = 1;
        return 1;
    }
    if (!strcmp(a, "--no-mirror")) {
        o->engine.mirror_average = 0;
        return 1;
    }
    for (size_t k = 0; k < sizeof(valued) / sizeof(valued[0]); k++) {
        if (strcmp(a, valued[k]))
            continue;
        if (!v) {
            cli_text_error("%s needs a value", a);
            return -1;
        }
        (*i)++;
        if (!strcmp(a, "--detector")) {
            if (!strcmp(v, "ssd"))
                o->engine.detector = LETHE_DETECTOR_SSD;
            else if (!strcmp(v, "tiny"))
                o->engine.detector = LETHE_DETECTOR_TINY;
            else {
                cli_text_error("--detector is ssd or tiny, not '%s'", v);
                return -1;
            }
            return 1;
        }
        if (!strcmp(a, "--align")) {
            if (!strcmp(v, "similarity"))
                o->engine.align = LETHE_ALIGN_SIMILARITY;
            else if (!strcmp(v, "box"))
                o->engine.align = LETHE_ALIGN_BOX;
            else {
                cli_text_error("--align is similarity or box, not '%s'", v);
                return -1;
            }
            return 1;
        }
        if (!strcmp(a, "--precision"))
            return cli_parse_precision(NULL, v, &o->engine.precision) < 0 ? -1 : 1;
        if (!strcmp(a, "--models")) {
            o->engine.model_dir = v;
            return 1;
        }
        if (!strcmp(a, "--threads")) {
            if (parse_int(a, v, 0, 1024, &o->threads) < 0)
                return -1;
            o->engine.threads = o->threads;
            return 1;
        }
        if (!strcmp(a, "--min-score"))
            return parse_float(a, v, 0, 1, &o->engine.min_score);
        if (!strcmp(a, "--min-face-size"))
            return parse_int(a, v, 0, 1 << 20, &o->engine.min_face_size);
        if (!strcmp(a, "--input-size"))
            return parse_int(a, v, 32, 2048, &o->engine.tiny_input_size);
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Printing a batch's results (the library analyses, in order)          */
/* ------------------------------------------------------------------ */

typedef struct printer {
    const face_opts *o;
    unsigned flags;
} printer;

static void put_floats(FILE *f, const float *v, int n, const char *fmt)
{
    fputc('[', f);
    for (int i = 0; i < n; i++) {
        if (i)
            fputc(',', f);
        fprintf(f, fmt, (double)v[i]);
    }
    fputc(']', f);
}

static void print_text(const printer *p, const lethe_batch_result *r)
{
    FILE *f = stdout;
    const lethe_analysis *a = &r->analysis;

    if (r->status != LETHE_OK) {
        cli_text_error("%s", r->message);
        return;
    }
    cli_put_text(f, r->path);
    if (p->o->chip) {
        fprintf(f, ": chip %dx%d\n  embedding ", a->width, a->height);
        put_floats(f, a->faces[0].descriptor, LETHE_DESCRIPTOR_DIM, "%.9g");
        fputc('\n', f);
        return;
    }
    fprintf(f, ": %dx%d, %d face%s\n", a->width, a->height, a->count, a->count == 1 ? "" : "s");
    for (int i = 0; i < a->count; i++) {
        const lethe_face *fc = &a->faces[i];
        fprintf(f, "  face %d: box %.1f,%.1f %.1fx%.1f score %.3f\n", i + 1, (double)fc->box[0],
                (double)fc->box[1], (double)fc->box[2], (double)fc->box[3], (double)fc->score);
        if ((p->flags & LETHE_WANT_DESCRIPTOR) && fc->has_descriptor) {
            fputs("    embedding ", f);
            put_floats(f, fc->descriptor, LETHE_DESCRIPTOR_DIM, "%.9g");
            fputc('\n', f);
        }
    }
}

static void print_json(const printer *p, const lethe_batch_result *r)
{
    FILE *f = stdout;
    const lethe_analysis *a = &r->analysis;

    fputs("{\"image\":", f);
    json_put_string(f, r->path);
    if (r->status != LETHE_OK) {
        fputs(",\"error\":", f);
        json_put_string(f, r->message);
        fputs("}\n", f);
        return;
    }
    fprintf(f, ",\"width\":%d,\"height\":%d,\"faces\":[", a->width, a->height);
    if (p->o->chip) {
        fprintf(f, "{\"box\":[0,0,%d,%d],\"score\":1,\"embedding\":", a->width, a->height);
        put_floats(f, a->faces[0].descriptor, LETHE_DESCRIPTOR_DIM, "%.9g");
        fputs("}]}\n", f);
        return;
    }
    for (int i = 0; i < a->count; i++) {
        const lethe_face *fc = &a->faces[i];
        if (i)
            fputc(',', f);
        fputs("{\"box\":", f);
        put_floats(f, fc->box, 4, "%.3f");
        fprintf(f, ",\"score\":%.6f,\"landmarks\":[", (double)fc->score);
        for (int k = 0; k < LETHE_LANDMARKS; k++)
            fprintf(f, "%s[%.3f,%.3f]", k ? "," : "", (double)fc->landmarks[k][0],
                    (double)fc->landmarks[k][1]);
        fputc(']', f);
        if ((p->flags & LETHE_WANT_DESCRIPTOR) && fc->has_descriptor) {
            fputs(",\"embedding\":", f);
            put_floats(f, fc->descriptor, LETHE_DESCRIPTOR_DIM, "%.9g");
        }
        fputc('}', f);
    }
    fputs("]}\n", f);
}

static int print_result(void *ctx, lethe_batch_result *r)
{
    const printer *p = ctx;
    if (p->o->json)
        print_json(p, r);
    else
        print_text(p, r);
    fflush(stdout);
    return 0;
}

/* Analyse paths[0..n) and print; returns the exit status. */
static int run_batch(face_opts *o, unsigned flags, char **paths, int n)
{
    lethe_engine *engine = NULL;
    lethe_batch_input *inputs;
    lethe_batch_options bo;
    lethe_batch_stats st;
    printer p = {o, flags};
    int rc;

    rc = lethe_engine_open(&engine, &o->engine);
    if (rc != LETHE_OK) {
        cli_text_error("%s", lethe_engine_errmsg(engine));
        lethe_engine_close(engine);
        return CLI_EXIT_FAILED;
    }
    inputs = calloc((size_t)n, sizeof(*inputs));
    if (!inputs) {
        cli_error("out of memory");
        lethe_engine_close(engine);
        return CLI_EXIT_FAILED;
    }
    for (int i = 0; i < n; i++)
        inputs[i].path = paths[i];
    lethe_batch_options_init(&bo);
    bo.flags = o->chip ? LETHE_CHIP : flags;
    bo.on_result = print_result;
    bo.ctx = &p;
    rc = lethe_engine_analyze_batch(engine, inputs, (size_t)n, &bo, &st);
    free(inputs);
    lethe_engine_close(engine);
    if (rc != LETHE_OK) {
        cli_error("%s", lethe_strerror(rc));
        return CLI_EXIT_FAILED;
    }
    if (st.failed && !o->json)
        cli_error("%zu of %d image%s could not be processed", st.failed, n, n == 1 ? "" : "s");
    return st.failed ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}

static const char common_help[] =
    "  --json               one JSON object per image per line on standard output\n"
    "  --detector ssd|tiny  face detector (default ssd: SSD MobileNet v1)\n"
    "  --min-score S        detection score threshold in (0, 1) (default 0.5)\n"
    "  --min-face-size N    ignore faces smaller than N pixels (default 0)\n"
    "  --input-size N       tiny detector input side, multiple of 32 (default 416)\n"
    "  --threads N          worker threads (default: one per core)\n"
    "  --models DIR         model weights folder (default $LETHE_MODELS, then the\n"
    "                       folder fetched at build time)\n";

/*
 * Parse a face command's arguments, options before or after the paths (as
 * every other command takes them; after "--" everything is a path). The
 * paths are moved to the end of argv, from *first on. Returns 0, -1 (help
 * printed) or -2 (bad usage, said).
 */
static int parse_face_args(face_opts *o, int argc, char **argv, int allow_chip,
                           void (*help)(FILE *), int *first)
{
    char **paths = malloc((size_t)argc * sizeof(*paths));
    int n = 0, rc = 0;
    if (!paths) {
        cli_error("out of memory");
        return -2;
    }
    for (int i = 1; i < argc && rc == 0; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) {
            while (++i < argc)
                paths[n++] = argv[i];
            break;
        }
        if (a[0] != '-' || !a[1]) {
            paths[n++] = argv[i];
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            help(stdout);
            rc = -1;
        } else if (allow_chip && !strcmp(a, "--chip")) {
            o->chip = 1;
        } else {
            int r = face_opts_parse(o, argc, argv, &i);
            if (r == 0)
                cli_text_error("unknown option '%s' for %s (see 'lethe %s --help')", a,
                               argv[0], argv[0]);
            rc = r <= 0 ? -2 : 0;
        }
    }
    /* the options' values are kept as pointers to their strings, not to
     * argv's slots: the slots may be reused */
    *first = argc - n;
    if (n)
        memcpy(argv + *first, paths, (size_t)n * sizeof(*paths));
    free(paths);
    return rc;
}

static void detect_help(FILE *f)
{
    fprintf(f,
            "usage: lethe detect [OPTIONS] IMAGE...\n"
            "\n"
            "Find every face in each photo (JPEG, PNG or WebP; EXIF orientation is\n"
            "honoured) with its score, box and 68 landmarks, in original pixels.\n"
            "\n"
            "Options:\n%s%s"
            "\n"
            "JSON lines: {\"image\", \"width\", \"height\", \"faces\": [{\"box\": [x, y, w, h],\n"
            "\"score\", \"landmarks\": [[x, y] x 68]}]}, or {\"image\", \"error\"}.\n"
            "Exit status: 0 if every image was read, 1 if any failed, 2 on bad usage.\n",
            cli_precision_help, common_help);
}

static void embed_help(FILE *f)
{
    fprintf(f,
            "usage: lethe embed [OPTIONS] IMAGE...\n"
            "\n"
            "Compute the 128-D descriptor of every face in each photo (detect, landmarks,\n"
            "align, describe), or of each image as a whole with --chip.\n"
            "\n"
            "Options:\n"
            "  --chip               each input already is a face chip: no detection;\n"
            "                       resized to 150x150 if it is not that size\n"
            "  --align similarity|box\n"
            "                       face chip: dlib-style similarity alignment (default)\n"
            "                       or face-api.js's axis-aligned box\n"
            "%s"
            "  --no-mirror          describe each aligned chip alone (by default its\n"
            "                       descriptor is averaged with its mirror image's)\n"
            "%s"
            "\n"
            "JSON lines as for 'lethe detect', each face with \"embedding\": [128 floats].\n"
            "Exit status: 0 if every image was read, 1 if any failed, 2 on bad usage.\n",
            cli_precision_help, common_help);
}

static void compare_help(FILE *f)
{
    fprintf(f,
            "usage: lethe compare [OPTIONS] IMAGE_A IMAGE_B\n"
            "\n"
            "Compare the largest face of two photos (or two chips with --chip):\n"
            "prints the Euclidean distance between their descriptors and whether it is\n"
            "below the calibrated same-person threshold (%.3f).\n"
            "\n"
            "Options:\n"
            "  --chip               both inputs already are face chips\n"
            "  --align similarity|box, --precision default|fp32|int8 as for 'lethe embed'\n"
            "%s"
            "\n"
            "JSON: {\"a\", \"b\", \"distance\", \"threshold\", \"same\": true|false}.\n"
            "Exit status: 0 when compared (same or not), 1 if an image failed or has no\n"
            "face, 2 on bad usage.\n",
            (double)lethe_descriptor_threshold(), common_help);
}

int cmd_detect(int argc, char **argv)
{
    face_opts o;
    int first, r;
    face_opts_init(&o);
    r = parse_face_args(&o, argc, argv, 0, detect_help, &first);
    if (r == -1)
        return CLI_EXIT_OK;
    if (r < 0)
        return CLI_EXIT_USAGE;
    if (first >= argc) {
        cli_error("detect needs at least one IMAGE (see 'lethe detect --help')");
        return CLI_EXIT_USAGE;
    }
    return run_batch(&o, LETHE_WANT_LANDMARKS, argv + first, argc - first);
}

int cmd_embed(int argc, char **argv)
{
    face_opts o;
    int first, r;
    face_opts_init(&o);
    r = parse_face_args(&o, argc, argv, 1, embed_help, &first);
    if (r == -1)
        return CLI_EXIT_OK;
    if (r < 0)
        return CLI_EXIT_USAGE;
    if (first >= argc) {
        cli_error("embed needs at least one IMAGE (see 'lethe embed --help')");
        return CLI_EXIT_USAGE;
    }
    return run_batch(&o, LETHE_WANT_DESCRIPTOR, argv + first, argc - first);
}

/* The descriptor of the largest face of one image (or of the chip). */
static int describe_for_compare(const face_opts *o, lethe_engine *e, const char *path,
                                float *desc)
{
    lethe_analysis a;
    char msg[600];
    int rc = lethe_engine_analyze_file(e, path, NULL, o->chip ? LETHE_CHIP : LETHE_LARGEST_FACE,
                                       &a, msg, sizeof(msg));
    if (rc != LETHE_OK) {
        cli_text_error("%s", msg);
        return rc;
    }
    memcpy(desc, a.faces[0].descriptor, sizeof(a.faces[0].descriptor));
    lethe_faces_free(a.faces);
    return LETHE_OK;
}

int cmd_compare(int argc, char **argv)
{
    face_opts o;
    lethe_engine *e = NULL;
    float a[LETHE_DESCRIPTOR_DIM], b[LETHE_DESCRIPTOR_DIM];
    int first, r, rc;

    face_opts_init(&o);
    r = parse_face_args(&o, argc, argv, 1, compare_help, &first);
    if (r == -1)
        return CLI_EXIT_OK;
    if (r < 0)
        return CLI_EXIT_USAGE;
    if (argc - first != 2) {
        cli_error("compare needs exactly two images (see 'lethe compare --help')");
        return CLI_EXIT_USAGE;
    }
    rc = lethe_engine_open(&e, &o.engine);
    if (rc != LETHE_OK) {
        cli_text_error("%s", lethe_engine_errmsg(e));
        lethe_engine_close(e);
        return CLI_EXIT_FAILED;
    }
    rc = describe_for_compare(&o, e, argv[first], a);
    if (rc == LETHE_OK)
        rc = describe_for_compare(&o, e, argv[first + 1], b);
    lethe_engine_close(e);
    if (rc != LETHE_OK)
        return CLI_EXIT_FAILED;
    float d = lethe_descriptor_distance(a, b), t = lethe_descriptor_threshold();
    if (o.json) {
        fputs("{\"a\":", stdout);
        json_put_string(stdout, argv[first]);
        fputs(",\"b\":", stdout);
        json_put_string(stdout, argv[first + 1]);
        printf(",\"distance\":%.6f,\"threshold\":%.6f,\"same\":%s}\n", (double)d, (double)t,
               d < t ? "true" : "false");
    } else {
        printf("distance %.4f (threshold %.4f): %s\n", (double)d, (double)t,
               d < t ? "same person" : "different people");
    }
    return CLI_EXIT_OK;
}
