/*
 * cmd_model.c: lethe model list | retire, and lethe retemplate: the models
 * that computed a store's templates, the erasure of one model's templates,
 * and computing the photos' templates again with the current model.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cli_store.h"
#include "lethe.h"

static int model_usage(void)
{
    printf("usage: lethe model list [--json] [--store DIR]\n"
           "       lethe model retire MODEL [--dry-run] [--yes] [--receipt FILE] [--json]\n\n"
           "Every template records the model that computed it: the descriptor network's\n"
           "name, version and weights (SHA-256) and the descriptor's precision. Searches\n"
           "compare a query only with templates of its own model.\n\n"
           "  list      the models the store has seen, their templates, current or retired\n"
           "  retire    erase every template MODEL made (an erasure, like forget: scrubbed,\n"
           "            with a signed receipt); descriptors ingested from outside go whole,\n"
           "            photos keep their rows and boxes ('lethe retemplate' describes them\n"
           "            again). The model may never add templates to this store again.\n"
           "            MODEL: its number in 'model list', NAME, NAME@VERSION[@WEIGHTS].\n"
           "            Needs --yes (it erases everyone's templates); --dry-run counts.\n\n"
           "%s\n"
           "Exit status: 0 done (or dry run shown), 1 failed or needs --yes, 2 usage.\n",
           cli_common_help);
    return CLI_EXIT_OK;
}

static int model_list(const cli_common *c)
{
    lethe_store *s = cli_open_store(c, 0);
    lethe_model_info *m = NULL;
    size_t n = 0;
    if (!s)
        return CLI_EXIT_FAILED;
    int rc = lethe_model_list(s, &m, &n);
    if (rc != LETHE_OK) {
        cli_error("model list: %s", lethe_store_errmsg(s));
        lethe_store_close(s);
        return cli_status(rc);
    }
    for (size_t i = 0; i < n; i++) {
        const lethe_model_info *x = &m[i];
        const char *state = x->retired_at[0] ? "retired" : x->shipped ? "current" : "other";
        if (c->json) {
            json_put_model(stdout, x);
            putchar('\n');
        } else {
            printf("%lld  %s@%s  %s  weights %.16s  %llu templates, %llu faces  %s%s%s\n",
                   (long long)x->id, x->model.name, x->model.version, x->model.precision,
                   x->model.weights[0] ? x->model.weights : "(not given)",
                   (unsigned long long)x->templates, (unsigned long long)x->faces, state,
                   x->retired_at[0] ? " at " : "", x->retired_at);
        }
    }
    if (!c->json && n == 0)
        printf("no model has added a template to this store yet\n");
    lethe_free_models(m);
    lethe_store_close(s);
    return CLI_EXIT_OK;
}

static int write_receipt(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fputc('\n', f) < 0 || fclose(f) != 0) {
        cli_error("%s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int model_retire(const cli_common *c, const char *which, int dry, int yes,
                        const char *receipt_file)
{
    lethe_store *s = cli_open_store(c, 0);
    lethe_forget_result r;
    char *receipt = NULL;
    if (!s)
        return CLI_EXIT_FAILED;
    unsigned flags = (dry ? LETHE_FORGET_DRY_RUN : 0) | (yes ? LETHE_FORGET_CONFIRMED : 0);
    int rc = lethe_model_retire(s, which, flags, c->actor, &r, &receipt);
    int status = cli_status(rc);
    if (rc != LETHE_OK)
        cli_error("model retire: %s", lethe_store_errmsg(s));
    if (rc == LETHE_OK || rc == LETHE_ERR_CONFIRM || receipt) {
        if (receipt && receipt_file && write_receipt(receipt_file, receipt) < 0)
            status = CLI_EXIT_FAILED;
        int done = receipt != NULL;
        if (c->json) {
            json_put_forget(stdout, "retire", dry, done, &r, receipt, NULL);
            putchar('\n');
        } else {
            printf("%s %llu templates (%llu descriptor rows whole, with %llu provenance "
                   "records)%s\n", done ? "erased" : "would erase",
                   (unsigned long long)r.templates, (unsigned long long)r.photos,
                   (unsigned long long)r.provenance, done ? "" : " (nothing changed)");
            if (rc == LETHE_ERR_CONFIRM)
                printf("not retired: look at the counts above, then run again with --yes\n");
            printf("digest before %s\ndigest after  %s\n", r.digest_before, r.digest_after);
            if (receipt && receipt_file)
                printf("receipt written to %s\n", receipt_file);
            else if (receipt)
                printf("receipt: %s\n", receipt);
        }
    }
    lethe_free_string(receipt);
    lethe_store_close(s);
    return status;
}

int cmd_model(int argc, char **argv)
{
    cli_common c;
    const char *sub = argc > 1 ? argv[1] : NULL, *which = NULL, *receipt_file = NULL;
    int dry = 0, yes = 0, bad = 0;
    if (!sub || cli_wants_help(argc, argv))
        return sub || argc > 1 ? model_usage() : (model_usage(), CLI_EXIT_USAGE);
    cli_common_init(&c);
    for (int i = 2; i < argc; i++) {
        const char *v;
        int t = cli_common_parse(&c, argc, argv, &i);
        if (t < 0)
            return CLI_EXIT_USAGE;
        if (t > 0)
            continue;
        if ((v = cli_flag_value(argc, argv, &i, "--receipt", &bad)))
            receipt_file = v;
        else if (bad)
            return CLI_EXIT_USAGE;
        else if (!strcmp(argv[i], "--dry-run"))
            dry = 1;
        else if (!strcmp(argv[i], "--yes"))
            yes = 1;
        else if (argv[i][0] == '-')
            return cli_unknown_option("model", argv[i]);
        else if (!which)
            which = argv[i];
        else {
            cli_error("model: one MODEL at a time (try 'lethe model --help')");
            return CLI_EXIT_USAGE;
        }
    }
    if (!strcmp(sub, "list")) {
        if (which || dry || yes || receipt_file) {
            cli_error("model list takes no MODEL, --dry-run, --yes or --receipt");
            return CLI_EXIT_USAGE;
        }
        return model_list(&c);
    }
    if (!strcmp(sub, "retire")) {
        if (!which) {
            cli_error("model retire: which MODEL? ('lethe model list' shows them)");
            return CLI_EXIT_USAGE;
        }
        return model_retire(&c, which, dry, yes, receipt_file);
    }
    cli_error("model: unknown subcommand '%s' (list, retire)", sub);
    return CLI_EXIT_USAGE;
}

/* ------------------------------------------------------------ retemplate */

static void on_progress(void *ctx, uint64_t done, uint64_t total)
{
    (void)ctx;
    fprintf(stderr, "\rretemplate: %llu of %llu photos", (unsigned long long)done,
            (unsigned long long)total);
    if (done == total)
        fputc('\n', stderr);
}

static void print_retemplate(const cli_common *c, int dry, const lethe_retemplate_result *r)
{
    if (c->json) {
        printf("{\"dry_run\":%s,\"candidates\":%llu,\"%s\":%llu,\"templates\":%llu,\"missed\":[",
               dry ? "true" : "false", (unsigned long long)r->candidates,
               dry ? "can_recompute" : "recomputed", (unsigned long long)r->recomputed,
               (unsigned long long)r->templates);
        for (size_t i = 0; i < r->nmissed; i++) {
            printf("%s{\"photo\":\"%s\",\"path\":", i ? "," : "", r->missed[i].photo);
            json_put_string(stdout, r->missed[i].path);
            printf(",\"reason\":\"%s\"}", r->missed[i].reason);
        }
        printf("]}\n");
        return;
    }
    printf("%llu photos with templates of another model (or none after a retirement); %llu %s"
           ", %llu templates%s\n", (unsigned long long)r->candidates,
           (unsigned long long)r->recomputed, dry ? "can be described again" : "described again",
           (unsigned long long)r->templates, dry ? " (nothing changed)" : " added");
    for (size_t i = 0; i < r->nmissed; i++) {
        printf("could not: %.12s  %s  ", r->missed[i].photo, r->missed[i].reason);
        cli_put_text(stdout, r->missed[i].path[0] ? r->missed[i].path : "(no path)");
        putchar('\n');
    }
}

int cmd_retemplate(int argc, char **argv)
{
    cli_common c;
    const char *models = NULL;
    int dry = 0, bad = 0, precision = 0;
    if (cli_wants_help(argc, argv)) {
        printf("usage: lethe retemplate [--dry-run] [--json] [--models DIR] [--precision P]\n\n"
               "Describe again, with the engine's model, every analysed photo whose faces\n"
               "are of another model (older, or retired: 'lethe model retire'). A photo is\n"
               "read again from the path its provenance records, only when that file is\n"
               "still there with the same SHA-256; the others are listed with the reason\n"
               "(missing, changed, unreadable, not a photo, refused by the consent policy).\n"
               "The old faces and templates go as an erasure; the faces found now come\n"
               "with their templates. Progress on stderr.\n\n%s\n"
               "Exit status: 0 done (even with photos listed as not done), 1 failed,\n"
               "2 usage.\n", cli_common_help);
        return CLI_EXIT_OK;
    }
    cli_common_init(&c);
    for (int i = 1; i < argc; i++) {
        const char *v;
        int t = cli_common_parse(&c, argc, argv, &i);
        if (t < 0)
            return CLI_EXIT_USAGE;
        if (t > 0)
            continue;
        if ((v = cli_flag_value(argc, argv, &i, "--models", &bad)))
            models = v;
        else if ((v = cli_flag_value(argc, argv, &i, "--precision", &bad))) {
            if (cli_parse_precision("retemplate", v, &precision) < 0)
                return CLI_EXIT_USAGE;
        } else if (bad)
            return CLI_EXIT_USAGE;
        else if (!strcmp(argv[i], "--dry-run"))
            dry = 1;
        else
            return cli_unknown_option("retemplate", argv[i]);
    }
    lethe_engine_options eo;
    lethe_engine *engine = NULL;
    lethe_engine_options_init(&eo);
    eo.model_dir = models;
    eo.precision = precision;
    if (lethe_engine_open(&engine, &eo) != LETHE_OK) {
        cli_error("%s", lethe_engine_errmsg(engine));
        lethe_engine_close(engine);
        return CLI_EXIT_FAILED;
    }
    lethe_store *s = cli_open_store(&c, 0);
    if (!s) {
        lethe_engine_close(engine);
        return CLI_EXIT_FAILED;
    }
    lethe_retemplate_result r;
    int rc = lethe_retemplate(s, engine, c.actor, dry, c.json ? NULL : on_progress, NULL, &r);
    if (rc != LETHE_OK)
        cli_error("retemplate: %s", lethe_store_errmsg(s));
    print_retemplate(&c, dry, &r);
    lethe_retemplate_result_free(&r);
    lethe_store_close(s);
    lethe_engine_close(engine);
    return cli_status(rc);
}
