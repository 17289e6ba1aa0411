/*
 * cmd_request.c: lethe request list|show|approve|deny|auto|file|status: the
 * operator's side of data-subject requests (lethe.h, "Data-subject
 * requests"; the page `lethe serve` serves files them, docs/page.md).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_store.h"

typedef struct req_cli {
    cli_common c;
    const char *action;    /* list, approve, deny, auto, file, status */
    const char *args[2];   /* operands */
    int nargs;
    const char *reason;    /* deny --reason */
    const char *by[4];     /* file: --uploader, --url, --photo-id, --image */
    int pending, confirm, optout;
} req_cli;

static void request_help(void)
{
    printf("usage: lethe request list [--pending] [--json]\n"
           "       lethe request approve N [--confirm] [--json]\n"
           "       lethe request deny N|FIRST-LAST [--reason TEXT] [--json]\n"
           "       lethe request auto [KIND on|off]\n"
           "       lethe request file [--optout] --uploader U | --url URL | --photo-id ID |\n"
           "                          --image FILE [--json]\n"
           "       lethe request status ID [--json]\n\n"
           "Requests from the people in the photos, filed on the page 'lethe serve'\n"
           "serves (docs/page.md): erase, or opt out of (erase and refuse from now on),\n"
           "what an account, a link, a photo id, an exact photo file or a face selects.\n"
           "'list' shows them by number, with what a pending one selects; 'approve N'\n"
           "erases as 'lethe forget' does and keeps the signed receipt for the\n"
           "requester (--confirm for more than 1000 photos); 'deny N' refuses it (the\n"
           "reason, at most 255 bytes, is shown to the requester), and 'deny\n"
           "FIRST-LAST' every one of those numbers still pending (a flood of\n"
           "requests); either way what it selected is forgotten. 'auto KIND on'\n"
           "approves requests of KIND (uploader, url, photo-id, file, face) as soon as\n"
           "they are filed; 'auto' alone shows the rules (every kind waits by\n"
           "default). 'file' files a request as the page does and prints its id (the\n"
           "requester's only handle on it); 'status ID' shows it, and its receipt once\n"
           "done. Every change is logged.\n%s\n"
           "Exit status: 0 done, 1 failed (no such request, decided already), 2 usage.\n",
           cli_common_help);
}

static int req_parse(req_cli *a, int argc, char **argv)
{
    static const char *const sel_flags[4] = {"--uploader", "--url", "--photo-id", "--image"};
    for (int i = 1; i < argc; i++) {
        int bad = 0, r = cli_common_parse(&a->c, argc, argv, &i), k;
        const char *v = NULL;
        if (r < 0)
            return CLI_EXIT_USAGE;
        if (r > 0)
            continue;
        for (k = 0; k < 4 && !(v = cli_flag_value(argc, argv, &i, sel_flags[k], &bad)); k++)
            if (bad)
                return CLI_EXIT_USAGE;
        if (k < 4)
            a->by[k] = v;
        else if ((v = cli_flag_value(argc, argv, &i, "--reason", &bad)))
            a->reason = v;
        else if (bad)
            return CLI_EXIT_USAGE;
        else if (!strcmp(argv[i], "--pending"))
            a->pending = 1;
        else if (!strcmp(argv[i], "--confirm"))
            a->confirm = 1;
        else if (!strcmp(argv[i], "--optout"))
            a->optout = 1;
        else if (argv[i][0] == '-' && argv[i][1])
            return cli_unknown_option("request", argv[i]);
        else if (!a->action)
            a->action = argv[i];
        else if (a->nargs < 2)
            a->args[a->nargs++] = argv[i];
        else
            return cli_unknown_option("request", argv[i]);
    }
    return CLI_EXIT_OK;
}

/* A request number operand: 0 and *n, or -1 (message printed). */
static int parse_number(const char *what, const char *v, int64_t *n)
{
    char *end;
    errno = 0;
    long long x = v ? strtoll(v, &end, 10) : 0;
    if (!v || errno || end == v || *end || x < 1) {
        cli_text_error("request %s: '%s' is not a request number (see 'lethe request list')",
                       what, v ? v : "");
        return -1;
    }
    *n = x;
    return 0;
}

/* One request, as JSON (no newline) or a line for people. */
static void print_request(const lethe_request_info *r, int json)
{
    const char *by = lethe_request_by_name(r->by);
    const char *act = r->action == LETHE_REQUEST_OPTOUT ? "optout" : "erase";
    if (!json) {
        printf("%-5lld %-7s %-6s %-8s %-20s %-20s %5llu %5llu %5llu  ", (long long)r->number,
               r->status, act, by ? by : "?", r->filed_at, r->decided_at[0] ? r->decided_at : "-",
               (unsigned long long)r->photos, (unsigned long long)r->faces,
               (unsigned long long)r->templates);
        cli_put_text(stdout, r->selector ? r->selector : r->note[0] ? r->note : "-");
        putchar('\n');
        return;
    }
    json_put_request(stdout, r);
}

static const char list_header[] =
    "NUM   STATUS  ACTION BY       FILED                DECIDED              PHOTOS FACES "
    "TMPLS  SELECTS (pending) / NOTE\n";

static int req_list(lethe_store *s, const req_cli *a)
{
    lethe_request_info *v = NULL;
    size_t n = 0;
    if (lethe_request_list(s, a->pending, &v, &n) != LETHE_OK) {
        cli_text_error("request list: %s", lethe_store_errmsg(s));
        return CLI_EXIT_FAILED;
    }
    if (!a->c.json)
        fputs(list_header, stdout);
    for (size_t i = 0; i < n; i++) {
        print_request(&v[i], a->c.json);
        if (a->c.json)
            putchar('\n');
    }
    if (!a->c.json && n == 0)
        printf("(no %srequests)\n", a->pending ? "pending " : "");
    lethe_requests_free(v, n);
    return CLI_EXIT_OK;
}

/*
 * deny FIRST-LAST: every request numbered FIRST to LAST that is still
 * pending is denied (one by one, each logged), the decided ones are left
 * as they are. For a flood of requests (docs/page.md, "Security").
 */
static int req_deny_range(lethe_store *s, const req_cli *a, int64_t first, int64_t last)
{
    lethe_request_info *v = NULL;
    size_t n = 0;
    uint64_t denied = 0;
    int rc = lethe_request_list(s, 1, &v, &n);
    for (size_t i = 0; rc == LETHE_OK && i < n; i++)
        if (v[i].number >= first && v[i].number <= last &&
            (rc = lethe_request_deny(s, v[i].number, a->c.actor, a->reason)) == LETHE_OK)
            denied++;
    lethe_requests_free(v, n);
    if (rc != LETHE_OK) {
        cli_text_error("request deny: %s (%llu denied before it)", lethe_store_errmsg(s),
                       (unsigned long long)denied);
        return cli_status(rc);
    }
    if (a->c.json)
        printf("{\"first\":%lld,\"last\":%lld,\"denied\":%llu}\n", (long long)first,
               (long long)last, (unsigned long long)denied);
    else
        printf("requests %lld to %lld: %llu pending denied\n", (long long)first,
               (long long)last, (unsigned long long)denied);
    return CLI_EXIT_OK;
}

static int req_decide(lethe_store *s, const req_cli *a, int approve)
{
    lethe_request_info info;
    int64_t n, last;
    const char *dash = a->args[0] ? strchr(a->args[0], '-') : NULL;
    if (!approve && dash && dash != a->args[0]) {
        char lo[32];
        snprintf(lo, sizeof(lo), "%.*s", (int)(dash - a->args[0] < 31 ? dash - a->args[0] : 31),
                 a->args[0]);
        if (parse_number(a->action, lo, &n) < 0 || parse_number(a->action, dash + 1, &last) < 0)
            return CLI_EXIT_USAGE;
        if (last < n) {
            cli_text_error("request deny: the range %s ends before it begins", a->args[0]);
            return CLI_EXIT_USAGE;
        }
        return req_deny_range(s, a, n, last);
    }
    if (parse_number(a->action, a->args[0], &n) < 0)
        return CLI_EXIT_USAGE;
    int rc = approve ? lethe_request_approve(s, n, a->confirm ? LETHE_FORGET_CONFIRMED : 0,
                                             a->c.actor, &info)
                     : lethe_request_deny(s, n, a->c.actor, a->reason);
    if (rc != LETHE_OK) {
        cli_text_error("request %s: %s", a->action, lethe_store_errmsg(s));
        return cli_status(rc);
    }
    if (!approve)
        printf("request %lld denied\n", (long long)n);
    else if (a->c.json)
        print_request(&info, 1), putchar('\n');
    else
        printf("request %lld approved: %llu photos, %llu faces, %llu templates erased; receipt "
               "%s\n", (long long)n, (unsigned long long)info.photos,
               (unsigned long long)info.faces, (unsigned long long)info.templates,
               info.receipt_hash);
    return CLI_EXIT_OK;
}

static int req_auto(lethe_store *s, const req_cli *a)
{
    unsigned mask = 0;
    char msg[160];
    int by;
    if (a->nargs == 2) {
        int on = !strcmp(a->args[1], "on");
        if (lethe_request_by_parse(a->args[0], &by, msg, sizeof(msg)) != LETHE_OK ||
            (!on && strcmp(a->args[1], "off"))) {
            cli_text_error("request auto: %s", on || !strcmp(a->args[1], "off")
                                                   ? msg : "give on or off");
            return CLI_EXIT_USAGE;
        }
        if (lethe_request_auto_set(s, by, on, a->c.actor) != LETHE_OK) {
            cli_text_error("request auto: %s", lethe_store_errmsg(s));
            return CLI_EXIT_FAILED;
        }
    } else if (a->nargs) {
        cli_error("request auto: give KIND on|off, or nothing to see the rules");
        return CLI_EXIT_USAGE;
    }
    if (lethe_request_auto_get(s, &mask) != LETHE_OK) {
        cli_text_error("request auto: %s", lethe_store_errmsg(s));
        return CLI_EXIT_FAILED;
    }
    if (a->c.json) {
        json_put_request_auto(stdout, mask);
        putchar('\n');
        return CLI_EXIT_OK;
    }
    for (int k = 0; k < LETHE_REQUEST_KINDS; k++)
        printf("%-9s %s\n", lethe_request_by_name(k),
               mask & (1u << k) ? "approved at once" : "waits for approval");
    return CLI_EXIT_OK;
}

/* The file at path (a regular file of at most 256 MiB) into *out (free):
 * 0, or -1 with why in msg. */
static int read_photo(const char *path, uint8_t **out, size_t *len, char *msg, size_t n)
{
    FILE *f = fopen(path, "rb");
    size_t cap = 1u << 16, got;
    uint8_t *b = f ? malloc(cap) : NULL;
    *out = NULL;
    *len = 0;
    while (b && (got = fread(b + *len, 1, cap - *len, f)) > 0) {
        *len += got;
        uint8_t *t = *len == cap && cap < (256u << 20) ? realloc(b, cap *= 2) : b;
        if (!t || *len == 256u << 20) {
            free(t ? t : b);
            b = NULL;
        } else {
            b = t;
        }
    }
    if (!b || !f || ferror(f) || !*len) {
        snprintf(msg, n, "%s: %s", path, !f ? strerror(errno) : !b ? "too large (256 MiB at "
                 "most) or out of memory" : "empty or unreadable");
        free(b);
        b = NULL;
    }
    if (f)
        fclose(f);
    *out = b;
    return b ? 0 : -1;
}

static int req_file(lethe_store *s, const req_cli *a)
{
    lethe_request_spec q = {.action = a->optout ? LETHE_REQUEST_OPTOUT : LETHE_REQUEST_ERASE};
    lethe_request_info info;
    char id[LETHE_REQUEST_ID_SIZE], msg[512];
    uint8_t *bytes = NULL;
    int given = 0, rc;
    for (int k = 0; k < 4; k++)
        if (a->by[k]) {
            given++;
            q.by = k;
            q.value = a->by[k];
        }
    if (given != 1) {
        cli_error("request file: give one of --uploader, --url, --photo-id, --image");
        return CLI_EXIT_USAGE;
    }
    if (q.by == LETHE_REQUEST_BY_FILE) {
        if (read_photo(a->by[3], &bytes, &q.len, msg, sizeof(msg)) < 0) {
            cli_text_error("request file: %s", msg);
            return CLI_EXIT_FAILED;
        }
        q.bytes = bytes;
        q.value = NULL;
    }
    rc = lethe_request_file(s, &q, a->c.actor, id, &info);
    free(bytes);
    if (rc != LETHE_OK) {
        cli_text_error("request file: %s", lethe_store_errmsg(s));
        return cli_status(rc);
    }
    if (a->c.json) {
        printf("{\"id\":\"%s\",\"request\":", id);
        print_request(&info, 1);
        printf("}\n");
    } else {
        printf("request %lld filed (%s); its id, the requester's only handle on it:\n%s\n",
               (long long)info.number, info.status, id);
    }
    return CLI_EXIT_OK;
}

static int req_status(lethe_store *s, const req_cli *a)
{
    lethe_request_info info;
    char *receipt = NULL;
    if (!a->args[0] || a->nargs > 1) {
        cli_error("request status: give the request's id (rq_...)");
        return CLI_EXIT_USAGE;
    }
    if (lethe_request_status(s, a->args[0], &info, &receipt) != LETHE_OK) {
        cli_text_error("request status: %s", lethe_store_errmsg(s));
        return CLI_EXIT_FAILED;
    }
    if (a->c.json) {
        printf("{\"request\":");
        print_request(&info, 1);
        printf(",\"receipt\":%s}\n", receipt ? receipt : "null");
    } else {
        fputs(list_header, stdout);
        print_request(&info, 0);
        if (receipt)
            printf("\nreceipt:\n%s\n", receipt);
    }
    lethe_free_string(receipt);
    return CLI_EXIT_OK;
}

static const char *const actions[] = {"list", "approve", "deny", "auto", "file", "status"};

/* The action's operands and options, checked. */
static int req_check(const req_cli *a)
{
    int k;
    for (k = 0; k < 6 && (!a->action || strcmp(a->action, actions[k])); k++)
        ;
    if (k == 6) {
        if (a->action)
            cli_text_error("request: unknown action '%s' (list, approve, deny, auto, file, "
                           "status)", a->action);
        else
            cli_error("request: list, approve, deny, auto, file or status (try 'lethe request "
                      "--help')");
        return CLI_EXIT_USAGE;
    }
    int operands = k == 1 || k == 2 || k == 5 ? 1 : k == 3 ? 2 : 0;
    if (a->nargs > operands || ((k == 1 || k == 2) && a->nargs != 1)) {
        cli_text_error("request %s: %s", a->action, a->nargs > operands ? "too many operands"
                                                                        : "give the request's number");
        return CLI_EXIT_USAGE;
    }
    int sel = a->by[0] || a->by[1] || a->by[2] || a->by[3] || a->optout;
    if ((a->pending && k != 0) || (a->confirm && k != 1) || (a->reason && k != 2) ||
        (sel && k != 4)) {
        cli_text_error("request %s: an option of another action (see 'lethe request --help')",
                       a->action);
        return CLI_EXIT_USAGE;
    }
    return CLI_EXIT_OK;
}

int cmd_request(int argc, char **argv)
{
    req_cli a;
    memset(&a, 0, sizeof(a));
    cli_common_init(&a.c);
    if (cli_wants_help(argc, argv)) {
        request_help();
        return CLI_EXIT_OK;
    }
    int status = req_parse(&a, argc, argv);
    if (status == CLI_EXIT_OK)
        status = req_check(&a);
    if (status != CLI_EXIT_OK)
        return status;
    int ro = !strcmp(a.action, "list") || !strcmp(a.action, "status") ||
             (!strcmp(a.action, "auto") && !a.nargs);
    lethe_store *s = cli_open_store(&a.c, ro ? LETHE_STORE_READONLY : 0);
    if (!s)
        return CLI_EXIT_FAILED;
    if (!strcmp(a.action, "list"))
        status = req_list(s, &a);
    else if (!strcmp(a.action, "approve") || !strcmp(a.action, "deny"))
        status = req_decide(s, &a, !strcmp(a.action, "approve"));
    else if (!strcmp(a.action, "auto"))
        status = req_auto(s, &a);
    else if (!strcmp(a.action, "file"))
        status = req_file(s, &a);
    else
        status = req_status(s, &a);
    lethe_store_close(s);
    return status;
}
