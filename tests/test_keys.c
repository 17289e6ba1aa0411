/*
 * test_keys.c: API keys and roles (lethe.h, section 7) through the public
 * API: roles parsed and formatted; a key made, listed, authenticated,
 * refused when wrong, malformed or revoked; nothing of the secret in any
 * file of the store; every change in the log, and log verify failing when
 * the catalog's keys are edited by hand; a restore over the live store
 * keeping the keys, one from the mirror revoking them all; a store made
 * before keys existed; every allocation failing in turn.
 */
#include <dirent.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lethe.h"
#include "test.h"
#include "util/util.h"

static char root[256];
static int nstore;

/* A new store folder's path (not created). */
static void store_path(char *out, size_t n, const char *what)
{
    snprintf(out, n, "%s/%s%d", root, what, nstore++);
}

static lethe_store *make_store(char *dir, size_t n, const char *mirror)
{
    lethe_store_options o;
    lethe_store *s = NULL;
    store_path(dir, n, "s");
    lethe_store_options_init(&o);
    o.flags = LETHE_STORE_CREATE;
    o.actor = "tester";
    o.keyring_mirror = mirror;
    if (lethe_store_open_with(dir, &o, &s) != LETHE_OK) {
        fprintf(stderr, "  cannot create %s: %s\n", dir, lethe_store_errmsg(s));
        lethe_store_close(s);
        return NULL;
    }
    return s;
}

static int add_key(lethe_store *s, const char *name, unsigned roles, lethe_key_info *info,
                   char key[LETHE_KEY_SIZE])
{
    lethe_key_options o;
    lethe_key_options_init(&o);
    o.name = name;
    o.roles = roles;
    o.rate_per_minute = 60;
    o.daily_quota = 1000;
    o.actor = "admin-person";
    return lethe_key_add(s, &o, info, key);
}

/* Run SQL on the store's catalog behind lethe's back (the tamperer). */
static int tamper(const char *dir, const char *sql)
{
    char path[400];
    sqlite3 *db = NULL;
    snprintf(path, sizeof(path), "%s/catalog.db", dir);
    int r = sqlite3_open(path, &db);
    if (r == SQLITE_OK)
        r = sqlite3_exec(db, sql, NULL, NULL, NULL);
    sqlite3_close(db);
    return r;
}

/* Does any file of folder dir hold the n bytes at p? */
static int folder_holds(const char *dir, const void *p, size_t n)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int found = 0;
    while (d && !found && (e = readdir(d))) {
        char path[600];
        struct stat sb;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
            continue;
        FILE *f = fopen(path, "rb");
        char *buf = f ? malloc((size_t)sb.st_size + 1) : NULL;
        size_t got = buf ? fread(buf, 1, (size_t)sb.st_size, f) : 0;
        for (size_t i = 0; buf && i + n <= got && !found; i++)
            found = !memcmp(buf + i, p, n);
        free(buf);
        if (f)
            fclose(f);
    }
    if (d)
        closedir(d);
    return found;
}

static void test_roles(void)
{
    unsigned r = 0;
    char msg[200], text[LETHE_ROLES_TEXT];
    CHECK_EQ_INT(lethe_roles_parse("search,audit", &r, msg, sizeof(msg)), LETHE_OK);
    CHECK_EQ_INT(r, LETHE_ROLE_SEARCH | LETHE_ROLE_AUDIT);
    CHECK_EQ_INT(lethe_roles_parse(" erasure , admin ", &r, msg, sizeof(msg)), LETHE_OK);
    CHECK_EQ_INT(r, LETHE_ROLE_ERASURE | LETHE_ROLE_ADMIN);
    CHECK_EQ_INT(lethe_roles_parse("admin,ingest,search,audit,erasure", &r, msg, sizeof(msg)),
                 LETHE_OK);
    CHECK_EQ_INT(r, LETHE_ROLES_ALL);
    lethe_roles_format(r, text);
    CHECK(!strcmp(text, "admin,ingest,search,audit,erasure"));
    lethe_roles_format(LETHE_ROLE_AUDIT | 0x100u, text);
    CHECK(!strcmp(text, "audit"));
    lethe_roles_format(0, text);
    CHECK(!strcmp(text, ""));
    CHECK_EQ_INT(lethe_roles_parse("search,root", &r, msg, sizeof(msg)), LETHE_ERR_ARG);
    CHECK(strstr(msg, "unknown role 'root'") != NULL);
    CHECK_EQ_INT(r, 0);
    CHECK_EQ_INT(lethe_roles_parse("", &r, msg, sizeof(msg)), LETHE_ERR_ARG);
    CHECK(strstr(msg, "no role given") != NULL);
    CHECK_EQ_INT(lethe_roles_parse("search,,audit", &r, msg, sizeof(msg)), LETHE_ERR_ARG);
    CHECK_EQ_INT(lethe_roles_parse(NULL, &r, msg, sizeof(msg)), LETHE_ERR_ARG);
    CHECK_EQ_INT(lethe_roles_parse("Search", &r, msg, sizeof(msg)), LETHE_ERR_ARG);
}

/* The key's text: lk_ID_ and 43 characters of base64url. */
static int key_well_formed(const char *key, int64_t id)
{
    char prefix[32];
    int n = snprintf(prefix, sizeof(prefix), "lk_%lld_", (long long)id);
    if (strncmp(key, prefix, (size_t)n) != 0 || strlen(key) != (size_t)n + 43)
        return 0;
    for (const char *p = key + n; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_'))
            return 0;
    return 1;
}

static void test_add_authenticate_revoke(void)
{
    char dir[300], key[LETHE_KEY_SIZE], key2[LETHE_KEY_SIZE];
    lethe_key_info info, who;
    lethe_store *s = make_store(dir, sizeof(dir), NULL);
    if (!s)
        { CHECK(0); return; }
    CHECK_EQ_INT(add_key(s, "searcher one", LETHE_ROLE_SEARCH | LETHE_ROLE_AUDIT, &info, key),
                 LETHE_OK);
    CHECK_EQ_INT(info.id, 1);
    CHECK(key_well_formed(key, 1));
    CHECK(!strcmp(info.name, "searcher one"));
    CHECK_EQ_INT(info.roles, LETHE_ROLE_SEARCH | LETHE_ROLE_AUDIT);
    CHECK_EQ_INT(info.rate_per_minute, 60);
    CHECK_EQ_INT(info.daily_quota, 1000);
    CHECK(strlen(info.created_at) == 20 && info.revoked_at[0] == 0);
    CHECK_EQ_INT(add_key(s, "ingester", LETHE_ROLE_INGEST, NULL, key2), LETHE_OK);
    CHECK(key_well_formed(key2, 2));
    CHECK(strcmp(key + 5, key2 + 5) != 0);
    memset(&who, 0, sizeof(who));
    CHECK_EQ_INT(lethe_key_authenticate(s, key, strlen(key), &who), LETHE_OK);
    CHECK_EQ_INT(who.id, 1);
    CHECK_EQ_INT(who.roles, LETHE_ROLE_SEARCH | LETHE_ROLE_AUDIT);
    CHECK(!strcmp(who.name, "searcher one"));
    CHECK_EQ_INT(lethe_key_authenticate(s, key2, strlen(key2), NULL), LETHE_OK);
    /* a wrong secret and an unknown id say the same */
    char bad[LETHE_KEY_SIZE];
    snprintf(bad, sizeof(bad), "%s", key);
    bad[strlen(bad) - 2] = bad[strlen(bad) - 2] == 'A' ? 'B' : 'A';
    CHECK_EQ_INT(lethe_key_authenticate(s, bad, strlen(bad), &who), LETHE_ERR_DENIED);
    CHECK(!strcmp(lethe_store_errmsg(s), "the key is not valid"));
    snprintf(bad, sizeof(bad), "lk_9%s", key + 4);
    CHECK_EQ_INT(lethe_key_authenticate(s, bad, strlen(bad), &who), LETHE_ERR_DENIED);
    CHECK(!strcmp(lethe_store_errmsg(s), "the key is not valid"));
    /* key 2's secret under key 1's id */
    snprintf(bad, sizeof(bad), "lk_1%s", key2 + 4);
    CHECK_EQ_INT(lethe_key_authenticate(s, bad, strlen(bad), &who), LETHE_ERR_DENIED);
    /* malformed: prefix, id, length, characters, a NUL inside, the length given */
    const char *malformed[] = {"", "lk_", "lk_1_", "LK_1_abc", "lk_01_x", "lk_1x_abc",
                               "Bearer lk_1_abc", "lk_99999999999999999999_abc"};
    for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
        CHECK_EQ_INT(lethe_key_authenticate(s, malformed[i], strlen(malformed[i]), &who),
                     LETHE_ERR_DENIED);
        CHECK(strstr(lethe_store_errmsg(s), "not a lethe API key") != NULL);
    }
    CHECK_EQ_INT(lethe_key_authenticate(s, key, strlen(key) - 1, &who), LETHE_ERR_DENIED);
    snprintf(bad, sizeof(bad), "%s", key);
    bad[10] = '*';
    CHECK_EQ_INT(lethe_key_authenticate(s, bad, strlen(bad), &who), LETHE_ERR_DENIED);
    char withnul[LETHE_KEY_SIZE];
    memcpy(withnul, key, strlen(key) + 1);
    withnul[8] = 0;
    CHECK_EQ_INT(lethe_key_authenticate(s, withnul, strlen(key), &who), LETHE_ERR_DENIED);
    CHECK_EQ_INT(lethe_key_authenticate(s, NULL, 0, &who), LETHE_ERR_DENIED);
    /* list, revoke, list again */
    lethe_key_info *keys = NULL;
    size_t n = 0;
    CHECK_EQ_INT(lethe_key_list(s, &keys, &n), LETHE_OK);
    CHECK_EQ_INT(n, 2);
    if (n == 2) {
        CHECK_EQ_INT(keys[0].id, 1);
        CHECK(!strcmp(keys[1].name, "ingester"));
        CHECK_EQ_INT(keys[1].roles, LETHE_ROLE_INGEST);
    }
    lethe_keys_free(keys);
    CHECK_EQ_INT(lethe_key_revoke(s, 1, "admin-person"), LETHE_OK);
    CHECK_EQ_INT(lethe_key_authenticate(s, key, strlen(key), &who), LETHE_ERR_DENIED);
    CHECK(strstr(lethe_store_errmsg(s), "key 1 was revoked at ") != NULL);
    CHECK_EQ_INT(lethe_key_authenticate(s, key2, strlen(key2), &who), LETHE_OK);
    CHECK_EQ_INT(lethe_key_revoke(s, 1, "admin-person"), LETHE_ERR_ARG);
    CHECK(strstr(lethe_store_errmsg(s), "revoked already") != NULL);
    CHECK_EQ_INT(lethe_key_revoke(s, 7, "admin-person"), LETHE_ERR_NOT_FOUND);
    CHECK(strstr(lethe_store_errmsg(s), "no API key 7") != NULL);
    CHECK_EQ_INT(lethe_key_list(s, &keys, &n), LETHE_OK);
    CHECK(n == 2 && keys[0].revoked_at[0] && !keys[1].revoked_at[0]);
    lethe_keys_free(keys);
    /* the log: both keys made, one revoked, by whom; the chain verifies */
    char *log = NULL;
    CHECK_EQ_INT(lethe_log_export(s, "jsonl", &log), LETHE_OK);
    CHECK(log && strstr(log, "\"kind\":\"key-add\",\"actor\":\"admin-person\""));
    CHECK(log && strstr(log, "\"key\":2,\"name\":\"ingester\",\"roles\":[\"ingest\"]"));
    CHECK(log && strstr(log, "\"kind\":\"key-revoke\",\"actor\":\"admin-person\""));
    CHECK(log && !strstr(log, key + 5) && !strstr(log, key2 + 5));
    lethe_free_string(log);
    uint64_t entries = 0, first_bad = 0;
    CHECK_EQ_INT(lethe_log_verify(s, &entries, &first_bad), LETHE_OK);
    CHECK_EQ_INT(entries, 4); /* init, two adds, a revoke */
    lethe_store_close(s);
    /* the secret is in no file of the store, as text or as a part of it */
    CHECK(!folder_holds(dir, key + 5, strlen(key + 5)));
    CHECK(!folder_holds(dir, key2 + 5, 20));
}

static void test_option_errors(void)
{
    char dir[300], key[LETHE_KEY_SIZE], name[200];
    lethe_store *s = make_store(dir, sizeof(dir), NULL);
    lethe_key_options o;
    if (!s)
        { CHECK(0); return; }
    lethe_key_options_init(&o);
    o.roles = LETHE_ROLE_SEARCH;
    CHECK_EQ_INT(lethe_key_add(s, &o, NULL, key), LETHE_ERR_ARG); /* no name */
    CHECK(strstr(lethe_store_errmsg(s), "the key's name is empty") != NULL);
    CHECK(key[0] == 0);
    memset(name, 'n', 129);
    name[129] = 0;
    o.name = name;
    CHECK_EQ_INT(lethe_key_add(s, &o, NULL, key), LETHE_ERR_ARG);
    CHECK(strstr(lethe_store_errmsg(s), "more than 128") != NULL);
    o.name = "two\nlines";
    CHECK_EQ_INT(lethe_key_add(s, &o, NULL, key), LETHE_ERR_ARG);
    CHECK(strstr(lethe_store_errmsg(s), "control character") != NULL);
    o.name = "ok";
    o.roles = 0;
    CHECK_EQ_INT(lethe_key_add(s, &o, NULL, key), LETHE_ERR_ARG);
    CHECK(strstr(lethe_store_errmsg(s), "at least one role") != NULL);
    o.roles = 0x40;
    CHECK_EQ_INT(lethe_key_add(s, &o, NULL, key), LETHE_ERR_ARG);
    CHECK(strstr(lethe_store_errmsg(s), "unknown role bits") != NULL);
    o.roles = LETHE_ROLE_AUDIT;
    o.actor = "bad\x1b[31m";
    CHECK_EQ_INT(lethe_key_add(s, &o, NULL, key), LETHE_ERR_ARG);
    CHECK_EQ_INT(lethe_key_add(s, NULL, NULL, key), LETHE_ERR_ARG);
    CHECK_EQ_INT(lethe_key_revoke(s, 1, "bad\nactor"), LETHE_ERR_ARG);
    lethe_key_info *keys = NULL;
    size_t n = 9;
    CHECK_EQ_INT(lethe_key_list(s, &keys, &n), LETHE_OK);
    CHECK_EQ_INT(n, 0); /* nothing was made */
    lethe_keys_free(keys);
    lethe_store_close(s);
    /* a read-only store makes and revokes nothing */
    s = NULL;
    CHECK_EQ_INT(lethe_store_open(dir, LETHE_STORE_READONLY, &s), LETHE_OK);
    o.actor = "x";
    CHECK_EQ_INT(lethe_key_add(s, &o, NULL, key), LETHE_ERR_ARG);
    CHECK(strstr(lethe_store_errmsg(s), "read-only") != NULL);
    CHECK_EQ_INT(lethe_key_revoke(s, 1, "x"), LETHE_ERR_ARG);
    lethe_store_close(s);
}

/* Log verify after SQL run behind lethe's back: want LETHE_OK or not. */
static void verify_after(const char *dir, const char *sql, int want_ok, const char *phrase)
{
    lethe_store *s = NULL;
    uint64_t n = 0, bad = 0;
    CHECK_EQ_INT(tamper(dir, sql), SQLITE_OK);
    CHECK_EQ_INT(lethe_store_open(dir, LETHE_STORE_READONLY, &s), LETHE_OK);
    int rc = lethe_log_verify(s, &n, &bad);
    if (want_ok) {
        CHECK_EQ_INT(rc, LETHE_OK);
    } else {
        CHECK_EQ_INT(rc, LETHE_ERR_FORMAT);
        CHECK(bad > 0);
        CHECK(strstr(lethe_store_errmsg(s), phrase) != NULL);
        if (!strstr(lethe_store_errmsg(s), phrase))
            fprintf(stderr, "  after %s: %s\n", sql, lethe_store_errmsg(s));
    }
    lethe_store_close(s);
}

static void test_log_verify_catches_edits(void)
{
    char dir[300], key[LETHE_KEY_SIZE];
    lethe_store *s = make_store(dir, sizeof(dir), NULL);
    if (!s)
        { CHECK(0); return; }
    CHECK_EQ_INT(add_key(s, "a", LETHE_ROLE_SEARCH, NULL, key), LETHE_OK);
    CHECK_EQ_INT(add_key(s, "b", LETHE_ROLE_AUDIT, NULL, key), LETHE_OK);
    CHECK_EQ_INT(lethe_key_revoke(s, 2, "x"), LETHE_OK);
    lethe_store_close(s);
    verify_after(dir, "CREATE TABLE keep AS SELECT * FROM api_keys", 1, NULL);
    /* more roles for key 1 */
    verify_after(dir, "UPDATE api_keys SET roles = 31 WHERE id = 1", 0,
                 "API key 1 in the catalog is not the key log entry");
    verify_after(dir, "UPDATE api_keys SET roles = 4 WHERE id = 1", 1, NULL);
    /* another verifier (a key the tamperer knows) */
    verify_after(dir, "UPDATE api_keys SET verifier = zeroblob(32) WHERE id = 1", 0,
                 "not the key log entry");
    tamper(dir, "DELETE FROM api_keys; INSERT INTO api_keys SELECT * FROM keep");
    /* key 2 brought back */
    verify_after(dir, "UPDATE api_keys SET revoked_at = NULL, revoke_seq = NULL WHERE id = 2", 0,
                 "revoked API key 2");
    /* a forged key copied from a real row */
    tamper(dir, "DELETE FROM api_keys; INSERT INTO api_keys SELECT * FROM keep");
    verify_after(dir, "INSERT INTO api_keys SELECT 3, name, 31, 0, 0, verifier, created_at, "
                      "add_seq, NULL, NULL FROM api_keys WHERE id = 1", 0,
                 "API key 3 in the catalog");
    verify_after(dir, "DELETE FROM api_keys WHERE id = 3; DELETE FROM api_keys WHERE id = 1", 0,
                 "made API key 1, which the catalog does not hold");
    /* a revocation moved to another entry */
    verify_after(dir, "DELETE FROM api_keys; INSERT INTO api_keys SELECT * FROM keep; "
                      "UPDATE api_keys SET revoke_seq = 1 WHERE id = 2", 0,
                 "marked revoked by log entry 1");
    verify_after(dir, "DELETE FROM api_keys; INSERT INTO api_keys SELECT * FROM keep", 1, NULL);
    /* the table dropped while the log made keys */
    verify_after(dir, "DROP TABLE api_keys", 0, "which the catalog does not hold");
}

/* A purpose fixed on a key when it is made (for clients that send none):
 * read back, in the key's log entry, checked, and kept by the chain. */
static void test_purpose(void)
{
    char dir[300], key[LETHE_KEY_SIZE], purpose[LETHE_KEY_PURPOSE_MAX + 1];
    char longp[LETHE_KEY_PURPOSE_MAX + 2];
    lethe_key_options o;
    lethe_key_info info;
    lethe_store *s = make_store(dir, sizeof(dir), NULL);
    if (!s)
        { CHECK(0); return; }
    lethe_key_options_init(&o);
    o.name = "door";
    o.roles = LETHE_ROLE_SEARCH;
    o.actor = "operator";
    CHECK_EQ_INT(lethe_key_add_with_purpose(s, &o, "door access, building 4", &info, key),
                 LETHE_OK);
    CHECK_EQ_INT(info.id, 1);
    CHECK_EQ_INT(lethe_key_authenticate(s, key, strlen(key), NULL), LETHE_OK);
    CHECK_EQ_INT(add_key(s, "plain", LETHE_ROLE_SEARCH, NULL, key), LETHE_OK);
    CHECK_EQ_INT(lethe_key_purpose(s, 1, purpose), LETHE_OK);
    CHECK(!strcmp(purpose, "door access, building 4"));
    CHECK_EQ_INT(lethe_key_purpose(s, 2, purpose), LETHE_OK);
    CHECK(!strcmp(purpose, ""));
    CHECK_EQ_INT(lethe_key_purpose(s, 3, purpose), LETHE_ERR_NOT_FOUND);
    CHECK(strstr(lethe_store_errmsg(s), "no API key 3") != NULL);
    /* refused purposes make no key */
    CHECK_EQ_INT(lethe_key_add_with_purpose(s, &o, "a\nb", NULL, key), LETHE_ERR_ARG);
    CHECK(strstr(lethe_store_errmsg(s), "the key's purpose holds a control character") != NULL);
    memset(longp, 'p', sizeof(longp) - 1);
    longp[sizeof(longp) - 1] = 0;
    CHECK_EQ_INT(lethe_key_add_with_purpose(s, &o, longp, NULL, key), LETHE_ERR_ARG);
    CHECK(strstr(lethe_store_errmsg(s), "more than 1024") != NULL);
    longp[LETHE_KEY_PURPOSE_MAX] = 0; /* exactly the limit */
    CHECK_EQ_INT(lethe_key_add_with_purpose(s, &o, longp, &info, key), LETHE_OK);
    CHECK_EQ_INT(info.id, 3);
    CHECK_EQ_INT(lethe_key_purpose(s, 3, purpose), LETHE_OK);
    CHECK_EQ_INT(strlen(purpose), LETHE_KEY_PURPOSE_MAX);
    char *log = NULL;
    CHECK_EQ_INT(lethe_log_export(s, "jsonl", &log), LETHE_OK);
    CHECK(log && strstr(log, "\"purpose\":\"door access, building 4\"}"));
    lethe_free_string(log);
    uint64_t n = 0, bad = 0;
    CHECK_EQ_INT(lethe_log_verify(s, &n, &bad), LETHE_OK);
    lethe_store_close(s);
    /* key 2 pointed at key 1's entry (to borrow its purpose), or the
     * purpose edited in the log: both fail the check */
    verify_after(dir, "CREATE TABLE keep AS SELECT * FROM api_keys", 1, NULL);
    verify_after(dir, "UPDATE api_keys SET add_seq = (SELECT add_seq FROM keep WHERE id = 1) "
                      "WHERE id = 2", 0, "API key 2 in the catalog");
    verify_after(dir, "DELETE FROM api_keys; INSERT INTO api_keys SELECT * FROM keep", 1, NULL);
    verify_after(dir, "UPDATE log SET detail = replace(detail, 'building 4', 'any building')", 0,
                 "");
}

static void test_old_store_gains_table(void)
{
    char dir[300], key[LETHE_KEY_SIZE];
    lethe_store *s = make_store(dir, sizeof(dir), NULL);
    if (!s)
        { CHECK(0); return; }
    lethe_store_close(s);
    CHECK_EQ_INT(tamper(dir, "DROP TABLE api_keys"), SQLITE_OK); /* as before keys existed */
    s = NULL;
    CHECK_EQ_INT(lethe_store_open(dir, LETHE_STORE_READONLY, &s), LETHE_OK);
    lethe_key_info *keys = NULL;
    size_t n = 5;
    uint64_t entries = 0, bad = 0;
    CHECK_EQ_INT(lethe_key_list(s, &keys, &n), LETHE_OK);
    CHECK_EQ_INT(n, 0);
    CHECK_EQ_INT(lethe_key_authenticate(s, "lk_1_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 47,
                                        NULL), LETHE_ERR_DENIED);
    CHECK_EQ_INT(lethe_key_revoke(s, 1, "x"), LETHE_ERR_ARG); /* read-only */
    CHECK_EQ_INT(lethe_log_verify(s, &entries, &bad), LETHE_OK);
    lethe_store_close(s);
    s = NULL;
    CHECK_EQ_INT(lethe_store_open(dir, 0, &s), LETHE_OK); /* writable: the table is made */
    CHECK_EQ_INT(add_key(s, "late", LETHE_ROLE_ADMIN, NULL, key), LETHE_OK);
    CHECK_EQ_INT(lethe_key_authenticate(s, key, strlen(key), NULL), LETHE_OK);
    CHECK_EQ_INT(lethe_log_verify(s, &entries, &bad), LETHE_OK);
    lethe_store_close(s);
}

static void test_restore(void)
{
    char dir[300], mirror[300], bk[300], lost[300], keep_key[LETHE_KEY_SIZE],
        gone_key[LETHE_KEY_SIZE], msg[512];
    store_path(mirror, sizeof(mirror), "mirror");
    mkdir(mirror, 0700);
    lethe_store *s = make_store(dir, sizeof(dir), mirror);
    if (!s)
        { CHECK(0); return; }
    CHECK_EQ_INT(add_key(s, "keep", LETHE_ROLE_SEARCH, NULL, keep_key), LETHE_OK);
    CHECK_EQ_INT(add_key(s, "compromised", LETHE_ROLE_ADMIN, NULL, gone_key), LETHE_OK);
    store_path(bk, sizeof(bk), "backup");
    char *info = NULL;
    CHECK_EQ_INT(lethe_backup(s, bk, "tester", &info), LETHE_OK);
    lethe_free_string(info);
    /* after the backup: the admin key leaks and is revoked; the search key
     * uses 40 of its day's requests (the usage table is made on first use,
     * so the backup has none) */
    CHECK_EQ_INT(lethe_key_revoke(s, 2, "tester"), LETHE_OK);
    uint32_t used = 0;
    CHECK_EQ_INT(lethe_key_usage_add(s, 1, 20000, 40, &used), LETHE_OK);
    CHECK_EQ_INT(used, 40);
    lethe_store_close(s);
    /* restored over the live store: the revocation stands, key 1 works */
    lethe_restore_options o;
    lethe_restore_result res;
    lethe_restore_options_init(&o);
    o.actor = "tester";
    CHECK_EQ_INT(lethe_restore(bk, dir, &o, &res, msg, sizeof(msg)), LETHE_OK);
    s = NULL;
    CHECK_EQ_INT(lethe_store_open(dir, 0, &s), LETHE_OK);
    CHECK_EQ_INT(lethe_key_authenticate(s, gone_key, strlen(gone_key), NULL), LETHE_ERR_DENIED);
    CHECK(strstr(lethe_store_errmsg(s), "revoked") != NULL);
    CHECK_EQ_INT(lethe_key_authenticate(s, keep_key, strlen(keep_key), NULL), LETHE_OK);
    /* a restore does not give a key its day's quota back */
    CHECK_EQ_INT(lethe_key_usage_add(s, 1, 20000, 0, &used), LETHE_OK);
    CHECK_EQ_INT(used, 40);
    uint64_t entries = 0, bad = 0;
    CHECK_EQ_INT(lethe_log_verify(s, &entries, &bad), LETHE_OK);
    lethe_store_close(s);
    /* the disk is lost: from the mirror, no key of the backup is trusted */
    store_path(lost, sizeof(lost), "lost");
    o.keyring_mirror = mirror;
    CHECK_EQ_INT(lethe_restore(bk, lost, &o, &res, msg, sizeof(msg)), LETHE_OK);
    s = NULL;
    CHECK_EQ_INT(lethe_store_open(lost, 0, &s), LETHE_OK);
    CHECK_EQ_INT(lethe_key_authenticate(s, gone_key, strlen(gone_key), NULL), LETHE_ERR_DENIED);
    CHECK_EQ_INT(lethe_key_authenticate(s, keep_key, strlen(keep_key), NULL), LETHE_ERR_DENIED);
    lethe_key_info *keys = NULL;
    size_t n = 0;
    CHECK_EQ_INT(lethe_key_list(s, &keys, &n), LETHE_OK);
    CHECK(n == 2 && keys[0].revoked_at[0] && keys[1].revoked_at[0]);
    lethe_keys_free(keys);
    char *log = NULL;
    CHECK_EQ_INT(lethe_log_export(s, "jsonl", &log), LETHE_OK);
    CHECK(log && strstr(log, "\"reason\":\"restored from a backup without the live store\""));
    lethe_free_string(log);
    CHECK_EQ_INT(lethe_log_verify(s, &entries, &bad), LETHE_OK);
    /* new keys can be made there */
    CHECK_EQ_INT(add_key(s, "after", LETHE_ROLE_SEARCH, NULL, keep_key), LETHE_OK);
    CHECK(key_well_formed(keep_key, 3));
    lethe_store_close(s);
}

/* One run of every key call with the k-th allocation failing. */
static int alloc_run(const char *dir, long k, long *made)
{
    lethe_store *s = NULL;
    char key[LETHE_KEY_SIZE];
    lethe_key_info *keys = NULL;
    size_t n = 0;
    lethe_alloc_fail_after(k);
    int rc = lethe_store_open(dir, 0, &s);
    if (rc == LETHE_OK)
        rc = add_key(s, "alloc", LETHE_ROLE_SEARCH, NULL, key);
    if (rc == LETHE_OK)
        rc = lethe_key_list(s, &keys, &n);
    if (rc == LETHE_OK)
        rc = lethe_key_authenticate(s, key, strlen(key), NULL);
    if (rc == LETHE_OK && n > 0)
        rc = lethe_key_revoke(s, keys[n - 1].id, "alloc");
    *made = lethe_alloc_count();
    lethe_alloc_fail_after(-1);
    if (rc != LETHE_OK && rc != LETHE_ERR_NOMEM)
        fprintf(stderr, "  k=%ld: %s (%s)\n", k, lethe_store_errmsg(s), lethe_strerror(rc));
    lethe_keys_free(keys);
    lethe_store_close(s);
    return rc;
}

static void test_alloc_failures(void)
{
    char dir[300];
    lethe_store *s = make_store(dir, sizeof(dir), NULL);
    int done = 0, failed = 0;
    if (!s)
        { CHECK(0); return; }
    lethe_store_close(s);
    /* the k-th allocation fails, k = 0, 1, 2, ... until a run makes fewer
     * than k: each failure must be out of memory, and leave a store whose
     * log verifies */
    for (long k = 0; !done && k < 100000; k++) {
        long made = 0, live = lethe_alloc_live();
        int rc = alloc_run(dir, k, &made);
        CHECK_EQ_INT(lethe_alloc_live(), live);
        if (rc != LETHE_OK) {
            failed++;
            CHECK_EQ_INT(rc, LETHE_ERR_NOMEM);
        } else {
            done = made <= k;
        }
    }
    CHECK(done);
    CHECK(failed > 10);
    fprintf(stderr, "  %d allocation failures, each out of memory\n", failed);
    s = NULL;
    uint64_t n = 0, bad = 0;
    CHECK_EQ_INT(lethe_store_open(dir, LETHE_STORE_READONLY, &s), LETHE_OK);
    CHECK_EQ_INT(lethe_log_verify(s, &n, &bad), LETHE_OK);
    lethe_store_close(s);
}

/* A key's daily count survives closing the store (the server's quota
 * across a restart); another day starts from 0; a read-only store refuses;
 * the digest and the log do not change. */
static void test_usage_counts(void)
{
    char dir[300], hex0[65], hex1[65];
    uint32_t used = 99;
    uint64_t entries0 = 0, entries1 = 0, bad = 0;
    lethe_store *s = make_store(dir, sizeof(dir), NULL);
    if (!s)
        { CHECK(0); return; }
    CHECK_EQ_INT(lethe_store_digest(s, hex0), LETHE_OK);
    CHECK_EQ_INT(lethe_log_verify(s, &entries0, &bad), LETHE_OK);
    CHECK_EQ_INT(lethe_key_usage_add(s, 1, 20000, 0, &used), LETHE_OK);
    CHECK_EQ_INT(used, 0);
    CHECK_EQ_INT(lethe_key_usage_add(s, 1, 20000, 3, &used), LETHE_OK);
    CHECK_EQ_INT(used, 3);
    CHECK_EQ_INT(lethe_key_usage_add(s, 2, 20000, 1, NULL), LETHE_OK);
    CHECK_EQ_INT(lethe_key_usage_add(s, 0, 20000, 1, &used), LETHE_ERR_ARG);
    CHECK_EQ_INT(lethe_key_usage_add(s, 1, -1, 1, &used), LETHE_ERR_ARG);
    lethe_store_close(s);
    s = NULL;
    CHECK_EQ_INT(lethe_store_open(dir, 0, &s), LETHE_OK);
    CHECK_EQ_INT(lethe_key_usage_add(s, 1, 20000, 2, &used), LETHE_OK);
    CHECK_EQ_INT(used, 5); /* kept across the reopen */
    CHECK_EQ_INT(lethe_key_usage_add(s, 1, 20001, 1, &used), LETHE_OK);
    CHECK_EQ_INT(used, 1); /* a new day */
    CHECK_EQ_INT(lethe_key_usage_add(s, 1, 20001, UINT32_MAX, &used), LETHE_OK);
    CHECK(used == UINT32_MAX); /* saturates */
    CHECK_EQ_INT(lethe_store_digest(s, hex1), LETHE_OK);
    CHECK(!strcmp(hex0, hex1));
    CHECK_EQ_INT(lethe_log_verify(s, &entries1, &bad), LETHE_OK);
    CHECK_EQ_INT((int)entries1, (int)entries0);
    lethe_store_close(s);
    s = NULL;
    CHECK_EQ_INT(lethe_store_open(dir, LETHE_STORE_READONLY, &s), LETHE_OK);
    CHECK(lethe_key_usage_add(s, 2, 20000, 1, &used) != LETHE_OK);
    lethe_store_close(s);
}

int main(int argc, char **argv)
{
    test_select(argc, argv);
    snprintf(root, sizeof(root), "/tmp/lethe-test-keys-XXXXXX");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_roles);
    RUN(test_add_authenticate_revoke);
    RUN(test_option_errors);
    RUN(test_log_verify_catches_edits);
    RUN(test_purpose);
    RUN(test_old_store_gains_table);
    RUN(test_restore);
    RUN(test_alloc_failures);
    RUN(test_usage_counts);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", root);
    return test_summary();
}
