/*
 * cmd_forget.c: lethe forget, optout, receipt, backup, restore, keyring:
 * forgetting and what keeps it final.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_store.h"

#define MAX_FACES 64

typedef struct fargs {
    cli_common c;
    lethe_selector sel;
    const char *face_images[MAX_FACES];
    int n_face_images;
    const char *receipt_file, *models;
    int dry, list, yes;
    long long remove_id;
    float faces[MAX_FACES * LETHE_DESCRIPTOR_DIM];
} fargs;

static const char selector_help[] =
    "Selectors (combine with AND; the provenance ones must hold for one record):\n"
    "  --photo-id ID          the source's photo id, or the photo's SHA-256\n"
    "  --url URL\n"
    "  --uploader U           an account\n"
    "  --source S             a whole collection\n"
    "  --jurisdiction J       e.g. GB (a country includes its subdivisions, GB-SCT)\n"
    "  --collected-before D   photos collected before an ISO 8601 date; photos with\n"
    "                         no date are kept and counted unless --include-undated\n"
    "  --include-undated      with --collected-before: undated photos too\n"
    "  --image FILE           that exact photo (the file is only hashed)\n"
    "  --face IMAGE           every face of the person in IMAGE (its largest face;\n"
    "                         repeat with more photos of them), within the face\n"
    "                         threshold; erases faces, not photos\n"
    "  --face-threshold T     (default %.2f; the match threshold is %.2f: above it,\n"
    "                         other people's faces go too, and --yes is needed)\n"
    "\n"
    "Erasures wider than one person (a source, a jurisdiction or a date alone, more\n"
    "than 1000 photos, a face threshold above the match threshold) are refused\n"
    "until you have looked at the --dry-run and give --yes.\n";

/* 1 taken, 0 not ours, -1 bad */
static int parse_selector(fargs *a, int argc, char **argv, int *i)
{
    int bad = 0;
    const char *v;
    lethe_selector *q = &a->sel;
    if ((v = cli_flag_value(argc, argv, i, "--photo-id", &bad)))
        q->photo_id = v;
    else if ((v = cli_flag_value(argc, argv, i, "--url", &bad)))
        q->url = v;
    else if ((v = cli_flag_value(argc, argv, i, "--uploader", &bad)))
        q->uploader = v;
    else if ((v = cli_flag_value(argc, argv, i, "--source", &bad)))
        q->source = v;
    else if ((v = cli_flag_value(argc, argv, i, "--jurisdiction", &bad)))
        q->jurisdiction = v;
    else if ((v = cli_flag_value(argc, argv, i, "--collected-before", &bad)))
        q->collected_before = v;
    else if (!strcmp(argv[*i], "--include-undated"))
        q->include_undated = 1;
    else if ((v = cli_flag_value(argc, argv, i, "--image", &bad)))
        q->image = v;
    else if ((v = cli_flag_value(argc, argv, i, "--face", &bad))) {
        if (a->n_face_images == MAX_FACES) {
            cli_error("at most %d --face photos", MAX_FACES);
            return -1;
        }
        a->face_images[a->n_face_images++] = v;
    } else if ((v = cli_flag_value(argc, argv, i, "--face-threshold", &bad))) {
        char *end;
        double t = strtod(v, &end);
        if (*end || !(t > 0 && t < 2)) {
            cli_error("--face-threshold: '%s' is not a number between 0 and 2", v);
            return -1;
        }
        q->face_threshold = (float)t;
    } else if ((v = cli_flag_value(argc, argv, i, "--models", &bad)))
        a->models = v;
    else
        return bad ? -1 : 0;
    return 1;
}

/* Describe the largest face of each --face photo. */
static int face_descriptors(fargs *a)
{
    lethe_engine_options eo;
    lethe_engine *e = NULL;
    if (!a->n_face_images)
        return 0;
    lethe_engine_options_init(&eo);
    eo.model_dir = a->models;
    if (lethe_engine_open(&e, &eo) != LETHE_OK) {
        cli_error("%s", lethe_engine_errmsg(e));
        lethe_engine_close(e);
        return -1;
    }
    for (int i = 0; i < a->n_face_images; i++) {
        lethe_analysis an;
        char msg[512];
        /* the largest face (the library's rule), described */
        if (lethe_engine_analyze_file(e, a->face_images[i], NULL, LETHE_LARGEST_FACE, &an, msg,
                                      sizeof(msg)) != LETHE_OK) {
            cli_text_error("--face %s: %s", a->face_images[i], msg);
            lethe_engine_close(e);
            return -1;
        }
        memcpy(a->faces + (size_t)i * LETHE_DESCRIPTOR_DIM, an.faces[0].descriptor,
               sizeof(an.faces[0].descriptor));
        lethe_faces_free(an.faces);
    }
    lethe_engine_close(e);
    a->sel.faces = a->faces;
    a->sel.n_faces = a->n_face_images;
    return 0;
}

static int write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fputc('\n', f) < 0 || fclose(f) != 0) {
        cli_error("%s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* The outcome: one JSON object, or lines for people. */
static void print_result(const fargs *a, int optout, const lethe_forget_result *r,
                         const char *receipt, const char *matched)
{
    unsigned long long p = r->photos, v = r->provenance, f = r->faces, t = r->templates,
                       u = r->undated_kept;
    int dry = a->dry || !receipt;
    if (a->c.json) {
        json_put_forget(stdout, optout ? "optout" : "forget", a->dry, !dry, r, receipt,
                        matched ? matched : "[]");
        putchar('\n');
        return;
    }
    printf("%s %llu photos, %llu provenance records, %llu faces, %llu templates%s\n",
           dry ? "would erase" : "erased", p, v, f, t,
           dry ? " (nothing changed)" : optout ? "; the opt-out stands for future ingests" : "");
    if (u)
        printf("%llu photo%s without a collection date kept (--include-undated takes them)\n", u,
               u == 1 ? "" : "s");
    if (r->wide)
        printf("not erased: %s; look at the dry run above, then run again with --yes\n",
               r->wide);
    if (dry) {
        if (a->n_face_images && matched)
            printf("photos matched: %s\n", matched);
        return;
    }
    printf("digest before %s\ndigest after  %s\n", r->digest_before, r->digest_after);
    if (a->receipt_file)
        printf("receipt written to %s\n", a->receipt_file);
    else
        printf("receipt: %s\n", receipt);
}

static void forget_help(int optout)
{
    if (optout)
        printf("usage: lethe optout [SELECTORS] [--json] [--receipt FILE]\n"
               "       lethe optout --list [--json]\n"
               "       lethe optout --remove ID\n\n"
               "A standing refusal: erases what the selectors match now (as 'lethe forget'\n"
               "does) and keeps it out of every later ingest: matching photos are not even\n"
               "catalogued, and faces like a --face person are not stored. The store keeps\n"
               "only keyed hashes of the selector's values and, for --face, the person's\n"
               "descriptors, apart from the gallery: never searched, never exported.\n"
               "--remove withdraws an opt-out (its descriptors are erased with it).\n\n");
    else
        printf("usage: lethe forget [SELECTORS] [--dry-run] [--json] [--receipt FILE]\n\n"
               "Erase, completely: photos and everything derived from them (provenance,\n"
               "faces, templates, index entries), or with --face the faces of a person.\n"
               "When it returns no search, lookup or datasheet shows the erased data and\n"
               "no file of the store holds a byte of it (freed database pages are zeroed,\n"
               "the write-ahead log is emptied, index rows are overwritten). It is all or\n"
               "nothing. The signed receipt (JSON, Ed25519 with the store's key) gives the\n"
               "selector's kinds (values only as keyed hashes), the counts erased, the\n"
               "time and the store's digest before and after; the log records its hash.\n"
               "--dry-run shows what would go (and, for --face, the photos matched).\n\n");
    printf(selector_help, (double)lethe_forget_face_threshold(),
           (double)lethe_descriptor_threshold());
    printf("\nOther options:\n"
           "  --yes                  go on with an erasure wider than one person\n"
           "  --receipt FILE         also write the receipt to FILE\n"
           "  --models DIR           model folder, for --face\n%s\n"
           "Exit status: 0 erased (or dry run shown), 1 failed or needs --yes, 2 usage.\n",
           cli_common_help);
}

/* The command line of forget or optout (cmd) into *a. Returns CLI_EXIT_OK
 * to go on, else the exit status (message printed). */
static int forget_parse(fargs *a, int argc, char **argv, int optout, const char *cmd)
{
    for (int i = 1; i < argc; i++) {
        int bad = 0, r = cli_common_parse(&a->c, argc, argv, &i);
        const char *v;
        if (r < 0)
            return CLI_EXIT_USAGE;
        if (r > 0)
            continue;
        r = parse_selector(a, argc, argv, &i);
        if (r < 0)
            return CLI_EXIT_USAGE;
        if (r > 0)
            continue;
        if ((v = cli_flag_value(argc, argv, &i, "--receipt", &bad)))
            a->receipt_file = v;
        else if (!optout && !strcmp(argv[i], "--dry-run"))
            a->dry = 1;
        else if (!strcmp(argv[i], "--yes"))
            a->yes = 1;
        else if (optout && !strcmp(argv[i], "--list"))
            a->list = 1;
        else if (optout && (v = cli_flag_value(argc, argv, &i, "--remove", &bad))) {
            char *end;
            a->remove_id = strtoll(v, &end, 10);
            if (*end || a->remove_id < 1) {
                cli_error("optout --remove: '%s' is not an opt-out id", v);
                return CLI_EXIT_USAGE;
            }
        } else if (bad)
            return CLI_EXIT_USAGE;
        else
            return cli_unknown_option(cmd, argv[i]);
    }
    return CLI_EXIT_OK;
}

/* optout --list (the standing opt-outs, as JSON) or --remove ID. Returns
 * the exit status. */
static int optout_list_or_remove(const fargs *a)
{
    lethe_store *s = cli_open_store(&a->c, a->list ? LETHE_STORE_READONLY : 0);
    char *json = NULL;
    int rc;
    if (!s)
        return CLI_EXIT_FAILED;
    if (a->list) {
        rc = lethe_optout_list(s, &json);
        if (rc == LETHE_OK)
            fputs(json, stdout);
    } else {
        rc = lethe_optout_remove(s, a->remove_id, a->c.actor);
        if (rc == LETHE_OK)
            printf(a->c.json ? "{\"removed\":%lld}\n" : "opt-out %lld withdrawn\n",
                   a->remove_id);
    }
    if (rc != LETHE_OK)
        cli_error("optout: %s", lethe_store_errmsg(s));
    lethe_free_string(json);
    lethe_store_close(s);
    return cli_status(rc);
}

/* The erasure (or its dry run) of what a->sel selects, its receipt written
 * to --receipt FILE, and the outcome printed. Returns the exit status. */
static int forget_selected(const fargs *a, int optout, const char *cmd)
{
    lethe_store *s = cli_open_store(&a->c, 0);
    if (!s)
        return CLI_EXIT_FAILED;
    lethe_forget_result r;
    char *receipt = NULL, *matched = NULL;
    unsigned flags = (a->dry ? LETHE_FORGET_DRY_RUN : 0) | (optout ? LETHE_FORGET_OPTOUT : 0) |
                     (a->yes ? LETHE_FORGET_CONFIRMED : 0);
    int rc = lethe_forget(s, &a->sel, flags, a->c.actor, &r, &receipt, &matched);
    int status = cli_status(rc);
    if (rc != LETHE_OK && rc != LETHE_ERR_CONFIRM && !receipt) {
        cli_error("%s: %s", cmd, lethe_store_errmsg(s));
    } else {
        if (rc != LETHE_OK)
            cli_error("%s: %s", cmd, lethe_store_errmsg(s));
        if (receipt && a->receipt_file && write_file(a->receipt_file, receipt) < 0)
            status = CLI_EXIT_FAILED;
        print_result(a, optout, &r, receipt, matched);
    }
    lethe_free_string(receipt);
    lethe_free_string(matched);
    lethe_store_close(s);
    return status;
}

static int run_forget(int argc, char **argv, int optout)
{
    static fargs a;
    const char *cmd = optout ? "optout" : "forget";
    int rc;
    memset(&a, 0, sizeof(a));
    a.remove_id = -1;
    cli_common_init(&a.c);
    if (cli_wants_help(argc, argv)) {
        forget_help(optout);
        return CLI_EXIT_OK;
    }
    if ((rc = forget_parse(&a, argc, argv, optout, cmd)) != CLI_EXIT_OK)
        return rc;
    const lethe_selector *q = &a.sel;
    int any = q->photo_id || q->url || q->uploader || q->source || q->jurisdiction ||
              q->collected_before || q->image || a.n_face_images;
    if ((a.list || a.remove_id > 0) && any) {
        cli_error("optout: --list and --remove take no selector");
        return CLI_EXIT_USAGE;
    }
    if (a.list || a.remove_id > 0)
        return optout_list_or_remove(&a);
    if (q->include_undated && !q->collected_before) {
        cli_error("%s: --include-undated goes with --collected-before", cmd);
        return CLI_EXIT_USAGE;
    }
    if (!any) {
        cli_error("%s: give at least one selector (try 'lethe %s --help')", cmd, cmd);
        return CLI_EXIT_USAGE;
    }
    if (face_descriptors(&a) < 0)
        return CLI_EXIT_FAILED;
    return forget_selected(&a, optout, cmd);
}

int cmd_forget(int argc, char **argv)
{
    return run_forget(argc, argv, 0);
}

int cmd_optout(int argc, char **argv)
{
    return run_forget(argc, argv, 1);
}

/* The receipt in file, at most 1 MiB, into *text (malloc'd, NUL-terminated;
 * *len bytes). A FIFO or a device is refused before it is read. Returns
 * CLI_EXIT_OK, else CLI_EXIT_FAILED (message printed). */
static int read_receipt(const char *file, char **text, size_t *len)
{
    struct stat sb;
    int fd = open(file, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    *text = NULL;
    *len = 0;
    if (fd >= 0 && fstat(fd, &sb) == 0 && !S_ISREG(sb.st_mode)) {
        close(fd);
        cli_text_error("receipt: %s is not a regular file", file);
        return CLI_EXIT_FAILED;
    }
    if (fd >= 0) {
        *text = malloc(1 << 20);
        ssize_t r = *text ? read(fd, *text, (1 << 20) - 1) : -1;
        *len = r > 0 ? (size_t)r : 0;
        close(fd);
    }
    if (!*text) {
        cli_text_error("receipt: %s: %s", file, strerror(errno));
        return CLI_EXIT_FAILED;
    }
    (*text)[*len] = 0;
    return CLI_EXIT_OK;
}

/* The verdict rc (LETHE_OK: valid; else msg says why) on a receipt, checked
 * against store when one was given. */
static void print_verdict(int json, int rc, const char *store, const char *msg)
{
    if (json) {
        printf("{\"valid\":%s,\"issued_by_store\":%s,\"error\":", rc ? "false" : "true",
               rc ? "false" : store ? "true" : "null");
        if (rc)
            json_put_string(stdout, msg);
        else
            fputs("null", stdout);
        printf("}\n");
    } else if (rc) {
        printf("receipt NOT valid: ");
        cli_put_text(stdout, msg);
        putchar('\n');
    } else if (store) {
        printf("receipt valid: issued by the store %s (signed by its key and in its log)\n",
               store);
    } else {
        printf("signature valid (the receipt is unaltered), but who issued it is not "
               "established: check it against the store with --store DIR\n");
    }
}

/* lethe receipt show HASH: an issued receipt, read back from the store. */
static int receipt_show(cli_common *c, const char *hash)
{
    char *text = NULL;
    lethe_store *s = cli_open_store(c, LETHE_STORE_READONLY);
    if (!s)
        return CLI_EXIT_FAILED;
    int rc = lethe_receipt_get(s, hash, &text);
    if (rc != LETHE_OK)
        cli_error("receipt: %s", lethe_store_errmsg(s));
    else
        printf("%s%s", text, text[0] && text[strlen(text) - 1] == '\n' ? "" : "\n");
    lethe_free_string(text);
    lethe_store_close(s);
    return rc ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}

int cmd_receipt(int argc, char **argv)
{
    cli_common c;
    const char *arg = NULL, *store = NULL, *sub = NULL;
    cli_common_init(&c);
    if (cli_wants_help(argc, argv) || argc < 2) {
        printf("usage: lethe receipt verify FILE [--store DIR] [--json]\n"
               "       lethe receipt show HASH [--store DIR]\n\n"
               "verify: check an erasure or opt-out receipt. Without --store: its Ed25519\n"
               "signature over every byte, with the key the receipt names; that proves it\n"
               "unaltered, not who issued it (anyone can make a key). With --store: also\n"
               "that the store issued it: signed by one of its keys (current or rotated\n"
               "out) and recorded in its audit log. A receipt forged with a stolen key\n"
               "fails that. Exit 0 when valid, 1 when not.\n\n"
               "show: print the receipt the store issued with this hash (BLAKE2b-256, 64\n"
               "hex digits: the \"receipt_hash\" of forget's answer, the log's entry),\n"
               "byte for byte (it is JSON). Exit 1 when the store holds none.\n\n"
               "  --store DIR    the store (default for show: $LETHE_STORE, else\n"
               "                 ./lethe-store)\n"
               "  --json         verify's verdict as JSON\n");
        return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
    }
    for (int i = 1; i < argc; i++) {
        int bad = 0;
        const char *v;
        if ((v = cli_flag_value(argc, argv, &i, "--store", &bad)))
            store = v;
        else if (!strcmp(argv[i], "--json"))
            c.json = 1;
        else if (bad)
            return CLI_EXIT_USAGE;
        else if (!sub && (!strcmp(argv[i], "verify") || !strcmp(argv[i], "show")))
            sub = argv[i];
        else if (sub && !arg && argv[i][0] != '-')
            arg = argv[i];
        else
            return cli_unknown_option("receipt", argv[i]);
    }
    if (!sub || !arg) {
        cli_error("receipt: usage: lethe receipt verify FILE [--store DIR] | "
                  "lethe receipt show HASH [--store DIR]");
        return CLI_EXIT_USAGE;
    }
    if (!strcmp(sub, "show")) {
        if (store)
            c.store = store;
        return receipt_show(&c, arg);
    }
    char *text;
    size_t len;
    if (read_receipt(arg, &text, &len) != CLI_EXIT_OK)
        return CLI_EXIT_FAILED;
    char msg[512] = "";
    int rc = lethe_receipt_verify(text, len, NULL, msg, sizeof(msg));
    if (rc == LETHE_OK && store) {
        c.store = store;
        lethe_store *s = cli_open_store(&c, LETHE_STORE_READONLY);
        if (!s) {
            free(text);
            return CLI_EXIT_FAILED;
        }
        if ((rc = lethe_receipt_check(s, text, len)) != LETHE_OK)
            snprintf(msg, sizeof(msg), "%s", lethe_store_errmsg(s));
        lethe_store_close(s);
    }
    print_verdict(c.json, rc, store, msg);
    free(text);
    return rc ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}

int cmd_backup(int argc, char **argv)
{
    cli_common c;
    const char *dest = NULL;
    cli_common_init(&c);
    if (cli_wants_help(argc, argv)) {
        printf("usage: lethe backup DEST [--store DIR] [--json]\n\n"
               "Write a backup of the store into the new folder DEST: a consistent\n"
               "snapshot of the catalog (without free pages, so nothing erased before\n"
               "lingers in it) and backup.json. Never the keyring: every personal field in\n"
               "the catalog is sealed with its photo's key, so the backup reveals no one by\n"
               "itself, and once a photo is erased its key is gone and no backup can bring\n"
               "it back. Keep the keyring mirror (lethe keyring --help) on another disk:\n"
               "without the keyring a backup cannot be restored at all.\n\n%s",
               cli_common_help);
        return CLI_EXIT_OK;
    }
    if (cli_parse_simple("backup", &c, argc, argv, NULL, NULL, &dest) != CLI_EXIT_OK)
        return CLI_EXIT_USAGE;
    if (!dest) {
        cli_error("backup: give the folder to write the backup to");
        return CLI_EXIT_USAGE;
    }
    lethe_store *s = cli_open_store(&c, 0);
    char *info = NULL;
    if (!s)
        return CLI_EXIT_FAILED;
    int rc = lethe_backup(s, dest, c.actor, &info);
    if (rc != LETHE_OK)
        cli_error("backup: %s", lethe_store_errmsg(s));
    else if (c.json)
        fputs(info, stdout);
    else
        printf("backup written to %s (no keyring in it)\n", dest);
    lethe_free_string(info);
    lethe_store_close(s);
    return cli_status(rc);
}

static void on_restore_wait(void *ctx, const char *holder, double waited)
{
    (void)ctx;
    fprintf(stderr, "lethe: waiting for the store's lock, held by ");
    cli_put_text(stderr, holder);
    fprintf(stderr, " (%.0fs)\n", waited);
}

int cmd_restore(int argc, char **argv)
{
    cli_common c;
    lethe_restore_options o;
    lethe_restore_result r;
    const char *src = NULL;
    char msg[1024];
    cli_common_init(&c);
    lethe_restore_options_init(&o);
    if (cli_wants_help(argc, argv)) {
        printf("usage: lethe restore SRC [--store DIR] [--keyring-mirror DIR] [--discard-newer]\n"
               "                    [--json]\n\n"
               "Replace the store with the backup in SRC, opened with the store's keyring,\n"
               "or, when the store is gone (its disk lost), with the keyring in the mirror\n"
               "folder given by --keyring-mirror. Every photo of the backup whose key is no\n"
               "longer in the keyring (it was erased after the backup) is dropped and\n"
               "counted: a backup can never bring back what was forgotten. Over a live\n"
               "store its log, receipts, signing keys, opt-outs and consent policy are kept;\n"
               "photos it holds that the backup does not (ingested after it) are refused\n"
               "unless --discard-newer. A backup of another store is refused.\n\n"
               "  --keyring-mirror DIR   the mirror folder (for a lost store)\n"
               "  --discard-newer        accept dropping photos newer than the backup\n%s",
               cli_common_help);
        return CLI_EXIT_OK;
    }
    for (int i = 1; i < argc; i++) {
        int bad = 0, k = cli_common_parse(&c, argc, argv, &i);
        const char *v;
        if (k < 0)
            return CLI_EXIT_USAGE;
        if (k > 0)
            continue;
        if ((v = cli_flag_value(argc, argv, &i, "--keyring-mirror", &bad)))
            o.keyring_mirror = v;
        else if (!strcmp(argv[i], "--discard-newer"))
            o.discard_newer = 1;
        else if (bad)
            return CLI_EXIT_USAGE;
        else if (argv[i][0] != '-' && !src)
            src = argv[i];
        else
            return cli_unknown_option("restore", argv[i]);
    }
    if (!src) {
        cli_error("restore: give the backup folder");
        return CLI_EXIT_USAGE;
    }
    o.actor = c.actor;
    o.wait_seconds = c.wait;
    o.on_wait = on_restore_wait;
    int rc = lethe_restore(src, c.store, &o, &r, msg, sizeof(msg));
    if (rc != LETHE_OK) {
        cli_error("restore: %s", msg);
    } else if (c.json) {
        printf("{\"restored\":true,\"photos\":%llu,\"dropped_erased\":%llu,\"dropped_newer\":%llu,"
               "\"templates_dropped\":%llu,\"receipts_carried\":%llu,\"digest\":\"%s\"}\n",
               (unsigned long long)r.photos, (unsigned long long)r.dropped_erased,
               (unsigned long long)r.dropped_newer, (unsigned long long)r.templates_dropped,
               (unsigned long long)r.receipts_carried, r.digest);
    } else {
        printf("restored %s into %s: %llu photos; %llu erased since the backup stayed erased "
               "(their keys are gone)",
               src, c.store, (unsigned long long)r.photos, (unsigned long long)r.dropped_erased);
        if (r.dropped_newer)
            printf("; %llu newer than the backup dropped", (unsigned long long)r.dropped_newer);
        if (r.templates_dropped)
            printf("; %llu templates the consent policy refuses dropped",
                   (unsigned long long)r.templates_dropped);
        if (r.receipts_carried)
            printf("; %llu receipts issued since carried into the log",
                   (unsigned long long)r.receipts_carried);
        printf("\ndigest %s\n", r.digest);
    }
    return rc == LETHE_OK ? CLI_EXIT_OK : rc == LETHE_ERR_ARG ? CLI_EXIT_USAGE : CLI_EXIT_FAILED;
}

int cmd_keyring(int argc, char **argv)
{
    cli_common c;
    const char *action = NULL, *dir = NULL;
    int stop = 0;
    cli_common_init(&c);
    if (cli_wants_help(argc, argv) || argc < 2) {
        printf("usage: lethe keyring check [--store DIR] [--json]\n"
               "       lethe keyring mirror DIR | --stop\n"
               "       lethe keyring rotate\n\n"
               "The keyring (DIR/keyring, mode 0600) holds every photo's key, the secret that\n"
               "keys lookup hashes, the receipt-signing secret and the standing opt-outs. It\n"
               "is never in a backup. Lose it and no backup can be restored; let it be read\n"
               "and the store's personal data and signatures are exposed.\n\n"
               "  check    what it holds, keys no photo uses, damaged slots, the mirror\n"
               "  mirror   keep a copy in folder DIR (another disk), rewritten at every\n"
               "           change; a restore after losing the store uses it\n"
               "           (DIR/<store id>.keyring). --stop ends mirroring.\n"
               "  rotate   a new receipt-signing key (logged; old receipts still check)\n\n%s",
               cli_common_help);
        return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
    }
    for (int i = 1; i < argc; i++) {
        int k = cli_common_parse(&c, argc, argv, &i);
        if (k < 0)
            return CLI_EXIT_USAGE;
        if (k > 0)
            continue;
        if (!action && argv[i][0] != '-')
            action = argv[i];
        else if (action && !strcmp(action, "mirror") && !strcmp(argv[i], "--stop"))
            stop = 1;
        else if (action && !strcmp(action, "mirror") && !dir && argv[i][0] != '-')
            dir = argv[i];
        else
            return cli_unknown_option("keyring", argv[i]);
    }
    if (!action || (strcmp(action, "check") && strcmp(action, "mirror") &&
                    strcmp(action, "rotate"))) {
        cli_error("keyring: check, mirror or rotate (try 'lethe keyring --help')");
        return CLI_EXIT_USAGE;
    }
    if (!strcmp(action, "mirror") && !dir == !stop) {
        cli_error("keyring mirror: give a folder, or --stop");
        return CLI_EXIT_USAGE;
    }
    lethe_store *s = cli_open_store(&c, 0);
    if (!s)
        return CLI_EXIT_FAILED;
    char *json = NULL, key[65];
    int rc;
    if (!strcmp(action, "check")) {
        if ((rc = lethe_keyring_check(s, &json)) == LETHE_OK)
            fputs(json, stdout);
    } else if (!strcmp(action, "mirror")) {
        if ((rc = lethe_keyring_mirror(s, stop ? NULL : dir, c.actor)) == LETHE_OK)
            printf(c.json ? "{\"mirror\":%s%s%s}\n" : "%s%s%s\n", stop ? "" : c.json ? "\"" : "",
                   stop ? (c.json ? "null" : "mirroring stopped") : dir,
                   stop ? "" : c.json ? "\"" : "");
    } else if ((rc = lethe_keyring_rotate(s, c.actor, key)) == LETHE_OK) {
        printf(c.json ? "{\"public_key\":\"%s\"}\n" : "new signing key %s\n", key);
    }
    if (rc != LETHE_OK)
        cli_error("keyring %s: %s", action, lethe_store_errmsg(s));
    lethe_free_string(json);
    lethe_store_close(s);
    return cli_status(rc);
}
