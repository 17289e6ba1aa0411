/*
 * cli_store.c: shared pieces of the store commands (see cli_store.h).
 * The printers read the library's JSON with liblethe's own JSON parser.
 */
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cli_store.h"
#include "util/json.h"

const char cli_common_help[] =
    "  --store DIR    the store (default: $LETHE_STORE, else ./lethe-store)\n"
    "  --actor NAME   who is acting, for the log (default: $LETHE_ACTOR, else the\n"
    "                 login name)\n"
    "  --json         machine-readable output\n";

void cli_common_init(cli_common *c)
{
    memset(c, 0, sizeof(*c));
    c->store = getenv("LETHE_STORE");
    if (!c->store || !*c->store)
        c->store = "lethe-store";
    c->actor = getenv("LETHE_ACTOR");
    if (!c->actor || !*c->actor) {
        struct passwd *pw = getpwuid(getuid());
        c->actor = pw && pw->pw_name ? pw->pw_name : "";
    }
}

const char *cli_flag_value(int argc, char **argv, int *i, const char *flag, int *bad)
{
    size_t n = strlen(flag);
    const char *a = argv[*i];
    if (strncmp(a, flag, n) != 0)
        return NULL;
    if (a[n] == '=')
        return a + n + 1;
    if (a[n] != 0)
        return NULL;
    if (*i + 1 >= argc) {
        cli_error("%s needs a value", flag);
        *bad = 1;
        return NULL;
    }
    return argv[++*i];
}

int cli_common_parse(cli_common *c, int argc, char **argv, int *i)
{
    int bad = 0;
    const char *v;
    if ((v = cli_flag_value(argc, argv, i, "--store", &bad)))
        c->store = v;
    else if ((v = cli_flag_value(argc, argv, i, "--actor", &bad)))
        c->actor = v;
    else if (!strcmp(argv[*i], "--json"))
        c->json = 1;
    else
        return bad ? -1 : 0;
    return 1;
}

int cli_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return 1;
    return 0;
}

int cli_unknown_option(const char *cmd, const char *a)
{
    if (a[0] == '-')
        cli_error("%s: unknown option '%s' (try 'lethe %s --help')", cmd, a, cmd);
    else
        cli_error("%s: unexpected argument '%s' (try 'lethe %s --help')", cmd, a, cmd);
    return CLI_EXIT_USAGE;
}

int cli_parse_simple(const char *cmd, cli_common *c, int argc, char **argv,
                     const char *const *switches, int *set, const char **operand)
{
    if (operand)
        *operand = NULL;
    for (int i = 1; i < argc; i++) {
        int r = cli_common_parse(c, argc, argv, &i), k;
        if (r < 0)
            return CLI_EXIT_USAGE;
        if (r > 0)
            continue;
        for (k = 0; switches && switches[k] && strcmp(argv[i], switches[k]); k++)
            ;
        if (switches && switches[k])
            set[k] = 1;
        else if (argv[i][0] == '-' || !operand || *operand)
            return cli_unknown_option(cmd, argv[i]);
        else
            *operand = argv[i];
    }
    return CLI_EXIT_OK;
}

lethe_store *cli_open_store(const cli_common *c, unsigned flags)
{
    lethe_store *s = NULL;
    if (lethe_store_open(c->store, flags, &s) != LETHE_OK) {
        cli_error("%s", lethe_store_errmsg(s));
        lethe_store_close(s);
        return NULL;
    }
    return s;
}

static const char *str(const json_value *v, const char *key)
{
    const char *s = json_get_string(v, key);
    return s && *s ? s : "-";
}

static double num(const json_value *v, const char *key)
{
    const json_value *n = json_get(v, key);
    return n && n->type == JSON_NUMBER ? n->number : 0;
}

void cli_print_lookup(const char *json, const char *value)
{
    json_value *doc = NULL;
    char msg[256];
    if (json_parse(json, strlen(json), &doc, msg, sizeof(msg)) != 0) {
        fputs(json, stdout);
        return;
    }
    const json_value *photos = json_get(doc, "photos");
    size_t n = photos && photos->type == JSON_ARRAY ? photos->len : 0;
    printf("%zu photo%s held for %s\n", n, n == 1 ? "" : "s", value);
    for (size_t i = 0; i < n; i++) {
        const json_value *p = photos->items[i];
        printf("\nphoto %s (%s)\n  status %s; %g face%s, %g template%s\n", str(p, "photo"),
               str(p, "kind"), str(p, "status"), num(p, "faces"),
               num(p, "faces") == 1 ? "" : "s", num(p, "templates"),
               num(p, "templates") == 1 ? "" : "s");
        const json_value *pv = json_get(p, "provenance");
        for (size_t k = 0; pv && pv->type == JSON_ARRAY && k < pv->len; k++) {
            const json_value *r = pv->items[k];
            printf("  - source %s, uploader %s, jurisdiction %s, consent %s, license %s\n"
                   "    url %s\n    photo id %s, collected %s, path %s\n",
                   str(r, "source"), str(r, "uploader"), str(r, "jurisdiction"),
                   str(r, "consent"), str(r, "license"), str(r, "url"), str(r, "photo_id"),
                   str(r, "collected_at"), str(r, "path"));
        }
    }
    json_free(doc);
}

void cli_print_log(const char *jsonl, int json, int head_only)
{
    for (const char *line = jsonl; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        json_value *e = NULL;
        char msg[256];
        if (json_parse(line, len, &e, msg, sizeof(msg)) == 0) {
            if (head_only && json)
                printf("{\"seq\":%.0f,\"hash\":\"%s\"}\n", num(e, "seq"), str(e, "hash"));
            else if (head_only)
                printf("%.0f %s\n", num(e, "seq"), str(e, "hash"));
            else {
                printf("%6.0f  %s  %-7s %-12s", num(e, "seq"), str(e, "time"), str(e, "kind"),
                       str(e, "actor"));
                if (!strcmp(str(e, "kind"), "search") || !strcmp(str(e, "kind"), "lookup"))
                    printf("  results %-4.0f purpose \"%s\" query %.16s", num(e, "results"),
                           json_get_string(e, "purpose"), str(e, "query_hash"));
                else if (!strcmp(str(e, "kind"), "ingest"))
                    printf("  added %.0f, templates %.0f, refused %.0f, errors %.0f",
                           num(json_get(e, "detail"), "added"),
                           num(json_get(e, "detail"), "templates"),
                           num(json_get(e, "detail"), "refused"),
                           num(json_get(e, "detail"), "errors"));
                printf("\n");
            }
        }
        json_free(e);
        line = end ? end + 1 : line + len;
    }
}
