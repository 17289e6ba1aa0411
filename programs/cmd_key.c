/*
 * cmd_key.c: lethe key add, list, revoke: the API keys `lethe serve`
 * admits callers by (lethe.h, section 7).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_store.h"

typedef struct key_cli {
    cli_common c;
    const char *action;    /* add, list, revoke */
    const char *operand;   /* add: the name; revoke: the id */
    const char *roles;     /* --roles */
    const char *purpose;   /* --purpose */
    long long rate, quota; /* --rate, --quota (-1: not given) */
} key_cli;

static void key_help(void)
{
    printf("usage: lethe key add NAME --roles ROLES [--rate N] [--quota N] [--purpose TEXT]\n"
           "                     [--json]\n"
           "       lethe key list [--json]\n"
           "       lethe key revoke ID [--json]\n\n"
           "API keys admit callers to 'lethe serve'. 'add' makes a key for NAME (who or\n"
           "what holds it: 1 to 128 bytes) and prints it ONCE: the store keeps only a\n"
           "keyed hash of it, so it cannot be shown again; hand it over and forget it.\n"
           "'list' shows every key, valid or revoked, never the key itself. 'revoke'\n"
           "ends a key for good (a lost key: revoke it and make another). Each change\n"
           "is an entry of the audit log, and 'lethe log verify' fails if the catalog's\n"
           "keys were edited by hand.\n\n"
           "  --roles ROLES  comma-separated: admin (everything), ingest (add photos),\n"
           "                 search (1:N search with a purpose, lookup), audit (log,\n"
           "                 datasheet, digest, policy; no search), erasure (forget,\n"
           "                 opt-outs, lookup); docs/serve.md has the whole table\n"
           "  --rate N       requests a minute the server admits for the key (0: no limit)\n"
           "  --quota N      requests a day (UTC) the server admits for the key (0: no\n"
           "                 limit)\n"
           "  --purpose TEXT the purpose every search made with the key is logged with,\n"
           "                 for clients that send none (the CompreFace-compatible API,\n"
           "                 docs/serve.md); fixed for good when the key is made\n%s\n"
           "--json prints one object a key: {\"id\", \"name\", \"roles\", \"rate_per_minute\",\n"
           "\"daily_quota\", \"created_at\", \"revoked_at\", \"purpose\"}, and 'add' adds \"key\".\n"
           "Exit status: 0 done, 1 failed (no such key), 2 usage.\n",
           cli_common_help);
}

/* A count option: 0 to 4294967295. 0 and *out set, or -1 (message printed). */
static int parse_count(const char *flag, const char *v, long long *out)
{
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v || *end || n < 0 || n > 4294967295LL) {
        cli_text_error("key: %s expects a whole number from 0 to 4294967295, not '%s'", flag, v);
        return -1;
    }
    *out = n;
    return 0;
}

static int key_parse(key_cli *a, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        int bad = 0, r = cli_common_parse(&a->c, argc, argv, &i);
        const char *v;
        if (r < 0)
            return CLI_EXIT_USAGE;
        if (r > 0)
            continue;
        if ((v = cli_flag_value(argc, argv, &i, "--roles", &bad)))
            a->roles = v;
        else if ((v = cli_flag_value(argc, argv, &i, "--purpose", &bad)))
            a->purpose = v;
        else if ((v = cli_flag_value(argc, argv, &i, "--rate", &bad))) {
            if (parse_count("--rate", v, &a->rate) < 0)
                return CLI_EXIT_USAGE;
        } else if ((v = cli_flag_value(argc, argv, &i, "--quota", &bad))) {
            if (parse_count("--quota", v, &a->quota) < 0)
                return CLI_EXIT_USAGE;
        } else if (bad)
            return CLI_EXIT_USAGE;
        else if (argv[i][0] == '-' && argv[i][1])
            return cli_unknown_option("key", argv[i]);
        else if (!a->action)
            a->action = argv[i];
        else if (!a->operand)
            a->operand = argv[i];
        else
            return cli_unknown_option("key", argv[i]);
    }
    return CLI_EXIT_OK;
}

/* The options each action takes, checked. */
static int key_check(const key_cli *a)
{
    const char *act = a->action ? a->action : "";
    int add = !strcmp(act, "add"), list = !strcmp(act, "list"), rev = !strcmp(act, "revoke");
    if (!add && !list && !rev) {
        if (*act)
            cli_text_error("key: unknown action '%s' (add, list, revoke)", act);
        else
            cli_error("key: add, list or revoke (try 'lethe key --help')");
        return CLI_EXIT_USAGE;
    }
    if (!add && (a->roles || a->rate >= 0 || a->quota >= 0 || a->purpose)) {
        cli_error("key %s: --roles, --rate, --quota and --purpose go with 'key add'", act);
        return CLI_EXIT_USAGE;
    }
    if (list && a->operand)
        return cli_unknown_option("key", a->operand);
    if (add && (!a->operand || !a->roles)) {
        cli_error(!a->operand ? "key add: give the key's name (who or what holds it)"
                              : "key add: give its roles with --roles (admin, ingest, search, "
                                "audit, erasure)");
        return CLI_EXIT_USAGE;
    }
    if (rev && !a->operand) {
        cli_error("key revoke: give the key's id (see 'lethe key list')");
        return CLI_EXIT_USAGE;
    }
    return CLI_EXIT_OK;
}

/* One key, as a JSON object (without a newline) or a line for people. */
static void print_key(const lethe_key_info *k, int json, const char *secret,
                      const char *purpose)
{
    char roles[LETHE_ROLES_TEXT];
    lethe_roles_format(k->roles, roles);
    if (!json) {
        printf("%-4lld %-34s %7u %9u  %s  %-20s  ", (long long)k->id, roles, k->rate_per_minute,
               k->daily_quota, k->created_at, k->revoked_at[0] ? k->revoked_at : "-");
        cli_put_text(stdout, k->name);
        putchar('\n');
        return;
    }
    printf("{\"id\":%lld,\"name\":", (long long)k->id);
    json_put_string(stdout, k->name);
    printf(",\"roles\":[");
    for (char *p = roles, *q; *p; p = *q ? q + 1 : q) {
        q = p + strcspn(p, ",");
        printf("%s\"%.*s\"", p == roles ? "" : ",", (int)(q - p), p);
    }
    printf("],\"rate_per_minute\":%u,\"daily_quota\":%u,\"created_at\":\"%s\",\"revoked_at\":",
           k->rate_per_minute, k->daily_quota, k->created_at);
    if (k->revoked_at[0])
        printf("\"%s\"", k->revoked_at);
    else
        printf("null");
    printf(",\"purpose\":");
    if (purpose && *purpose)
        json_put_string(stdout, purpose);
    else
        printf("null");
    if (secret)
        printf(",\"key\":\"%s\"", secret);
    putchar('}');
}

static const char list_header[] =
    "ID   ROLES                              RATE/MIN  QUOTA/DAY  CREATED               "
    "REVOKED               NAME\n";

static int key_add(lethe_store *s, const key_cli *a)
{
    lethe_key_options o;
    lethe_key_info k;
    char key[LETHE_KEY_SIZE], msg[256];
    lethe_key_options_init(&o);
    if (lethe_roles_parse(a->roles, &o.roles, msg, sizeof(msg)) != LETHE_OK) {
        cli_text_error("key add: --roles: %s", msg);
        return CLI_EXIT_USAGE;
    }
    o.name = a->operand;
    o.rate_per_minute = a->rate > 0 ? (uint32_t)a->rate : 0;
    o.daily_quota = a->quota > 0 ? (uint32_t)a->quota : 0;
    o.actor = a->c.actor;
    int rc = lethe_key_add_with_purpose(s, &o, a->purpose, &k, key);
    if (rc != LETHE_OK) {
        cli_text_error("key add: %s", lethe_store_errmsg(s));
        return cli_status(rc);
    }
    if (a->c.json) {
        print_key(&k, 1, key, a->purpose);
        putchar('\n');
    } else {
        fputs(list_header, stdout);
        print_key(&k, 0, NULL, NULL);
        if (a->purpose && *a->purpose) {
            fputs("Its purpose: ", stdout);
            cli_put_text(stdout, a->purpose);
            putchar('\n');
        }
        printf("\nThe key (shown this once; the store cannot show it again):\n%s\n", key);
    }
    memset(key, 0, sizeof(key));
    return CLI_EXIT_OK;
}

static int key_list(lethe_store *s, const key_cli *a, int64_t only)
{
    lethe_key_info *keys = NULL;
    size_t n = 0;
    if (lethe_key_list(s, &keys, &n) != LETHE_OK) {
        cli_text_error("key list: %s", lethe_store_errmsg(s));
        return CLI_EXIT_FAILED;
    }
    if (!a->c.json && only < 0)
        fputs(list_header, stdout);
    for (size_t i = 0; i < n; i++) {
        if (only >= 0 && keys[i].id != only)
            continue;
        char purpose[LETHE_KEY_PURPOSE_MAX + 1] = "";
        if (a->c.json && lethe_key_purpose(s, keys[i].id, purpose) != LETHE_OK)
            purpose[0] = 0;
        print_key(&keys[i], a->c.json, NULL, purpose);
        if (a->c.json)
            putchar('\n');
    }
    if (!a->c.json && only < 0 && n == 0)
        printf("(no keys: make one with 'lethe key add NAME --roles ROLES')\n");
    lethe_keys_free(keys);
    return CLI_EXIT_OK;
}

static int key_revoke(lethe_store *s, const key_cli *a)
{
    char *end;
    errno = 0;
    long long id = strtoll(a->operand, &end, 10);
    if (errno || end == a->operand || *end || id < 1) {
        cli_text_error("key revoke: '%s' is not a key id (a number, see 'lethe key list')",
                       a->operand);
        return CLI_EXIT_USAGE;
    }
    int rc = lethe_key_revoke(s, id, a->c.actor);
    if (rc != LETHE_OK) {
        cli_text_error("key revoke: %s", lethe_store_errmsg(s));
        return cli_status(rc);
    }
    if (!a->c.json)
        printf("key %lld revoked\n", id);
    return a->c.json ? key_list(s, a, id) : CLI_EXIT_OK;
}

int cmd_key(int argc, char **argv)
{
    key_cli a;
    memset(&a, 0, sizeof(a));
    a.rate = a.quota = -1;
    cli_common_init(&a.c);
    if (cli_wants_help(argc, argv)) {
        key_help();
        return CLI_EXIT_OK;
    }
    int status = key_parse(&a, argc, argv);
    if (status == CLI_EXIT_OK)
        status = key_check(&a);
    if (status != CLI_EXIT_OK)
        return status;
    int list = !strcmp(a.action, "list");
    lethe_store *s = cli_open_store(&a.c, list ? LETHE_STORE_READONLY : 0);
    if (!s)
        return CLI_EXIT_FAILED;
    if (list)
        status = key_list(s, &a, -1);
    else if (!strcmp(a.action, "add"))
        status = key_add(s, &a);
    else
        status = key_revoke(s, &a);
    lethe_store_close(s);
    return status;
}
