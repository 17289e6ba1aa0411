/*
 * cli_store.c: shared pieces of the store commands (see cli_store.h).
 */
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cli_store.h"

const char cli_common_help[] =
    "  --store DIR    the store (default: $LETHE_STORE, else ./lethe-store)\n"
    "  --actor NAME   who is acting, for the log (default: $LETHE_ACTOR, else the\n"
    "                 login name); no control characters, at most 4096 bytes\n"
    "  --wait SECONDS how long to wait when another process is writing to the store\n"
    "                 (default 30; 0: fail at once)\n"
    "  --json         machine-readable output\n";

void cli_common_init(cli_common *c)
{
    memset(c, 0, sizeof(*c));
    c->wait = 30;
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
    else if ((v = cli_flag_value(argc, argv, i, "--actor", &bad))) {
        if (!cli_text_ok("--actor", v))
            return -1;
        c->actor = v;
    }
    else if ((v = cli_flag_value(argc, argv, i, "--wait", &bad))) {
        char *end;
        double w = strtod(v, &end);
        if (*end || end == v || !(w >= 0 && w <= 86400)) {
            cli_error("--wait expects a number of seconds from 0 to 86400, not '%s'", v);
            return -1;
        }
        c->wait = w;
    } else if (!strcmp(argv[*i], "--json"))
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

/* Tell the person at the terminal why nothing happens, once a second at
 * first, then every ten. */
static void on_wait(void *ctx, const char *holder, double waited)
{
    (void)ctx;
    long w = (long)waited;
    if (w <= 3 || w % 10 == 0) {
        fprintf(stderr, "lethe: waiting for the store's lock, held by ");
        cli_put_text(stderr, holder);
        fprintf(stderr, " (%lds)\n", w);
    }
}

void cli_store_options(const cli_common *c, unsigned flags, lethe_store_options *o)
{
    lethe_store_options_init(o);
    o->flags = flags;
    o->actor = c->actor;
    o->wait_seconds = c->wait;
    o->on_wait = on_wait;
}

lethe_store *cli_open_store(const cli_common *c, unsigned flags)
{
    lethe_store_options o;
    lethe_store *s = NULL;
    cli_store_options(c, flags, &o);
    if (lethe_store_open_with(c->store, &o, &s) != LETHE_OK) {
        cli_error("%s", lethe_store_errmsg(s));
        lethe_store_close(s);
        return NULL;
    }
    return s;
}

int cli_text_ok(const char *flag, const char *v)
{
    size_t n = strlen(v);
    if (!n) {
        cli_error("%s is empty", flag);
        return 0;
    }
    if (n > 4096) {
        cli_error("%s is %zu bytes, more than 4096", flag, n);
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f) {
            cli_error("%s holds a control character (byte %zu is 0x%02x)", flag, i,
                      (unsigned char)v[i]);
            return 0;
        }
    return 1;
}

int cli_status(int rc)
{
    return rc == LETHE_OK ? CLI_EXIT_OK
         : rc == LETHE_ERR_ARG ? CLI_EXIT_USAGE
                               : CLI_EXIT_FAILED;
}


