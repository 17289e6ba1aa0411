/*
 * cmd_forget.c: lethe forget, lethe optout, lethe receipt.
 */
#include <errno.h>
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
    int dry, list;
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
    "  --collected-before D   photos collected before an ISO 8601 date\n"
    "  --image FILE           that exact photo (the file is only hashed)\n"
    "  --face IMAGE           every face of the person in IMAGE (its largest face;\n"
    "                         repeat with more photos of them), within the face\n"
    "                         threshold; erases faces, not photos\n"
    "  --face-threshold T     (default %.2f; the match threshold is %.2f)\n";

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
        lethe_image *img = NULL;
        lethe_face *f = NULL;
        int n = 0, best = 0;
        char msg[512];
        if (lethe_image_load(a->face_images[i], NULL, &img, msg, sizeof(msg)) != LETHE_OK) {
            cli_error("--face %s: %s", a->face_images[i], msg);
            lethe_engine_close(e);
            return -1;
        }
        int rc = lethe_engine_analyze(e, img, LETHE_WANT_DESCRIPTOR, &f, &n);
        lethe_image_free(img);
        if (rc != LETHE_OK || n == 0) {
            cli_error("--face %s: %s", a->face_images[i],
                      rc != LETHE_OK ? lethe_engine_errmsg(e) : "no face found");
            lethe_faces_free(f);
            lethe_engine_close(e);
            return -1;
        }
        for (int k = 1; k < n; k++)
            if (f[k].box[2] * f[k].box[3] > f[best].box[2] * f[best].box[3])
                best = k;
        memcpy(a->faces + (size_t)i * LETHE_DESCRIPTOR_DIM, f[best].descriptor,
               sizeof(f[best].descriptor));
        lethe_faces_free(f);
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

static int run_forget(int argc, char **argv, int optout)
{
    static fargs a;
    const char *cmd = optout ? "optout" : "forget";
    memset(&a, 0, sizeof(a));
    a.remove_id = -1;
    cli_common_init(&a.c);
    if (cli_wants_help(argc, argv)) {
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
               "  --receipt FILE         also write the receipt to FILE\n"
               "  --models DIR           model folder, for --face\n%s", cli_common_help);
        return CLI_EXIT_OK;
    }
    for (int i = 1; i < argc; i++) {
        int bad = 0, r = cli_common_parse(&a.c, argc, argv, &i);
        const char *v;
        if (r < 0)
            return CLI_EXIT_USAGE;
        if (r > 0)
            continue;
        r = parse_selector(&a, argc, argv, &i);
        if (r < 0)
            return CLI_EXIT_USAGE;
        if (r > 0)
            continue;
        if ((v = cli_flag_value(argc, argv, &i, "--receipt", &bad)))
            a.receipt_file = v;
        else if (!optout && !strcmp(argv[i], "--dry-run"))
            a.dry = 1;
        else if (optout && !strcmp(argv[i], "--list"))
            a.list = 1;
        else if (optout && (v = cli_flag_value(argc, argv, &i, "--remove", &bad))) {
            char *end;
            a.remove_id = strtoll(v, &end, 10);
            if (*end || a.remove_id < 1) {
                cli_error("optout --remove: '%s' is not an opt-out id", v);
                return CLI_EXIT_USAGE;
            }
        } else if (bad)
            return CLI_EXIT_USAGE;
        else
            return cli_unknown_option(cmd, argv[i]);
    }
    const lethe_selector *q = &a.sel;
    int any = q->photo_id || q->url || q->uploader || q->source || q->jurisdiction ||
              q->collected_before || q->image || a.n_face_images;
    if ((a.list || a.remove_id > 0) && any) {
        cli_error("optout: --list and --remove take no selector");
        return CLI_EXIT_USAGE;
    }
    if (a.list || a.remove_id > 0) {
        lethe_store *s = cli_open_store(&a.c, a.list ? LETHE_STORE_READONLY : 0);
        char *json = NULL;
        int rc;
        if (!s)
            return CLI_EXIT_FAILED;
        if (a.list) {
            rc = lethe_optout_list(s, &json);
            if (rc == LETHE_OK)
                fputs(json, stdout);
        } else {
            rc = lethe_optout_remove(s, a.remove_id, a.c.actor);
            if (rc == LETHE_OK)
                printf(a.c.json ? "{\"removed\":%lld}\n" : "opt-out %lld withdrawn\n",
                       a.remove_id);
        }
        if (rc != LETHE_OK)
            cli_error("optout: %s", lethe_store_errmsg(s));
        lethe_free_string(json);
        lethe_store_close(s);
        return rc ? CLI_EXIT_FAILED : CLI_EXIT_OK;
    }
    if (!any) {
        cli_error("%s: give at least one selector (try 'lethe %s --help')", cmd, cmd);
        return CLI_EXIT_USAGE;
    }
    if (face_descriptors(&a) < 0)
        return CLI_EXIT_FAILED;
    lethe_store *s = cli_open_store(&a.c, 0);
    if (!s)
        return CLI_EXIT_FAILED;
    lethe_forget_result r;
    char *receipt = NULL, *matched = NULL;
    unsigned flags = (a.dry ? LETHE_FORGET_DRY_RUN : 0) | (optout ? LETHE_FORGET_OPTOUT : 0);
    int rc = lethe_forget(s, &a.sel, flags, a.c.actor, &r, &receipt, &matched);
    int status = CLI_EXIT_OK;
    if (rc != LETHE_OK) {
        cli_error("%s: %s", cmd, lethe_store_errmsg(s));
        status = rc == LETHE_ERR_ARG ? CLI_EXIT_USAGE : CLI_EXIT_FAILED;
    } else if (a.dry) {
        if (a.c.json) {
            printf("{\"dry_run\":true,\"photos\":%llu,\"provenance\":%llu,\"faces\":%llu,"
                   "\"templates\":%llu,\"matched\":%s}\n",
                   (unsigned long long)r.photos, (unsigned long long)r.provenance,
                   (unsigned long long)r.faces, (unsigned long long)r.templates,
                   matched ? matched : "[]");
        } else {
            printf("would erase %llu photos, %llu provenance records, %llu faces, %llu "
                   "templates (nothing changed)\n",
                   (unsigned long long)r.photos, (unsigned long long)r.provenance,
                   (unsigned long long)r.faces, (unsigned long long)r.templates);
            if (a.n_face_images && matched)
                printf("photos matched: %s\n", matched);
        }
    } else {
        if (a.receipt_file && write_file(a.receipt_file, receipt) < 0)
            status = CLI_EXIT_FAILED;
        if (a.c.json) {
            printf("%s\n", receipt);
        } else {
            printf("erased %llu photos, %llu provenance records, %llu faces, %llu templates%s\n"
                   "digest before %s\ndigest after  %s\n",
                   (unsigned long long)r.photos, (unsigned long long)r.provenance,
                   (unsigned long long)r.faces, (unsigned long long)r.templates,
                   optout ? "; the opt-out stands for future ingests" : "", r.digest_before,
                   r.digest_after);
            if (a.receipt_file)
                printf("receipt written to %s\n", a.receipt_file);
            else
                printf("receipt: %s\n", receipt);
        }
    }
    lethe_free_string(receipt);
    lethe_free_string(matched);
    lethe_store_close(s);
    return status;
}

int cmd_forget(int argc, char **argv)
{
    return run_forget(argc, argv, 0);
}

int cmd_optout(int argc, char **argv)
{
    return run_forget(argc, argv, 1);
}

int cmd_receipt(int argc, char **argv)
{
    cli_common c;
    const char *file = NULL, *store = NULL;
    int verify = 0;
    cli_common_init(&c);
    if (cli_wants_help(argc, argv) || argc < 2) {
        printf("usage: lethe receipt verify FILE [--store DIR] [--json]\n\n"
               "Check an erasure or opt-out receipt: its Ed25519 signature over every\n"
               "byte, and with --store that the store's own key signed it. Exit 0 when\n"
               "valid, 1 when not (a changed receipt fails).\n");
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
        else if (!verify && !strcmp(argv[i], "verify"))
            verify = 1;
        else if (verify && !file && argv[i][0] != '-')
            file = argv[i];
        else
            return cli_unknown_option("receipt", argv[i]);
    }
    if (!verify || !file) {
        cli_error("receipt: usage: lethe receipt verify FILE [--store DIR]");
        return CLI_EXIT_USAGE;
    }
    FILE *f = fopen(file, "rb");
    char *text = NULL;
    size_t len = 0;
    if (f) {
        text = malloc(1 << 20);
        len = text ? fread(text, 1, (1 << 20) - 1, f) : 0;
        fclose(f);
    }
    if (!text) {
        cli_error("receipt: %s: %s", file, strerror(errno));
        return CLI_EXIT_FAILED;
    }
    text[len] = 0;
    char key[65] = "", msg[512];
    if (store) {
        c.store = store;
        lethe_store *s = cli_open_store(&c, LETHE_STORE_READONLY);
        if (!s || lethe_store_public_key(s, key) != LETHE_OK) {
            if (s)
                cli_error("receipt: %s", lethe_store_errmsg(s));
            lethe_store_close(s);
            free(text);
            return CLI_EXIT_FAILED;
        }
        lethe_store_close(s);
    }
    int rc = lethe_receipt_verify(text, len, store ? key : NULL, msg, sizeof(msg));
    if (c.json) {
        printf("{\"valid\":%s", rc ? "false" : "true");
        if (rc) {
            printf(",\"error\":");
            json_put_string(stdout, msg);
        }
        printf(",\"store_checked\":%s}\n", store ? "true" : "false");
    } else if (rc) {
        printf("receipt NOT valid: %s\n", msg);
    } else {
        printf("receipt valid: signed by %s%s\n", store ? "the store's key " : "the key it names",
               store ? key : "");
    }
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
               "lingers in it), the consent policy, and backup.json. The descriptor index\n"
               "is not copied: it is rebuilt from the catalog. Restoring it with 'lethe\n"
               "restore' never brings back what was erased after it was taken.\n\n%s",
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
        printf("backup written to %s\n", dest);
    lethe_free_string(info);
    lethe_store_close(s);
    return rc ? (rc == LETHE_ERR_ARG ? CLI_EXIT_USAGE : CLI_EXIT_FAILED) : CLI_EXIT_OK;
}

int cmd_restore(int argc, char **argv)
{
    cli_common c;
    const char *src = NULL;
    char msg[1024];
    uint64_t replayed = 0;
    cli_common_init(&c);
    if (cli_wants_help(argc, argv)) {
        printf("usage: lethe restore SRC [--store DIR] [--json]\n\n"
               "Replace the store with the backup in SRC. If the store exists, its erasure\n"
               "ledger (keyed hashes of every photo and face erased), receipts, opt-outs\n"
               "and audit log are carried over and the ledger is replayed on the restored\n"
               "catalog: nothing erased after the backup was taken comes back. Photos\n"
               "ingested after the backup are not in it. A backup of another store is\n"
               "refused.\n\n%s",
               cli_common_help);
        return CLI_EXIT_OK;
    }
    if (cli_parse_simple("restore", &c, argc, argv, NULL, NULL, &src) != CLI_EXIT_OK)
        return CLI_EXIT_USAGE;
    if (!src) {
        cli_error("restore: give the backup folder");
        return CLI_EXIT_USAGE;
    }
    int rc = lethe_restore(src, c.store, c.actor, &replayed, msg, sizeof(msg));
    if (rc != LETHE_OK)
        cli_error("restore: %s", msg);
    else if (c.json)
        printf("{\"restored\":true,\"replayed\":%llu}\n", (unsigned long long)replayed);
    else
        printf("restored %s into %s; %llu photos or faces erased since the backup were erased "
               "again\n", src, c.store, (unsigned long long)replayed);
    return rc ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}
