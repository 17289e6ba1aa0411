/*
 * test_policy.c: consent bases, jurisdiction codes, EEA membership, the
 * consent policy's resolution and its file format (parse, errors, canonical
 * round trip), allocation failures, and the public manifest reader (whose
 * rows carry the jurisdictions and consent bases checked here).
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "lethe.h"
#include "policy/policy.h"
#include "test.h"
#include "util/util.h"

static int starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Parse text and expect failure with a message starting with want. */
static void expect_parse_error(const char *text, const char *want)
{
    policy *p = (policy *)1;
    char err[256] = "";
    int st = policy_parse(text, strlen(text), &p, err, sizeof(err));

    CHECK(st != LETHE_OK);
    CHECK(p == NULL);
    if (!starts_with(err, want)) {
        fprintf(stderr, "  expected error starting with '%s', got '%s'\n", want, err);
        CHECK(starts_with(err, want));
    }
}

static policy *parse_ok(const char *text)
{
    policy *p = NULL;
    char err[256] = "";
    int st = policy_parse(text, strlen(text), &p, err, sizeof(err));

    if (st != LETHE_OK)
        fprintf(stderr, "  unexpected parse error: %s\n", err);
    CHECK_EQ_INT(st, LETHE_OK);
    return p;
}

static void test_consent_names(void)
{
    unsigned mask = 99;
    char err[128], buf[64];

    CHECK_EQ_INT(consent_parse("explicit"), CONSENT_EXPLICIT);
    CHECK_EQ_INT(consent_parse("public-license"), CONSENT_PUBLIC_LICENSE);
    CHECK_EQ_INT(consent_parse("none"), CONSENT_NONE);
    CHECK_EQ_INT(consent_parse("withdrawn"), CONSENT_WITHDRAWN);
    CHECK_EQ_INT(consent_parse("Explicit"), CONSENT_EXPLICIT); /* case ignored */
    CHECK_EQ_INT(consent_parse("PUBLIC-LICENSE"), CONSENT_PUBLIC_LICENSE);
    CHECK_EQ_INT(consent_parse("public_license"), -1);
    CHECK_EQ_INT(consent_parse(" explicit"), -1);
    CHECK_EQ_INT(consent_parse("explicitly"), -1);
    CHECK_EQ_INT(consent_parse(""), -1);
    CHECK_EQ_INT(consent_parse(NULL), -1);
    CHECK(strcmp(consent_name(CONSENT_EXPLICIT), "explicit") == 0);
    CHECK(strcmp(consent_name(CONSENT_PUBLIC_LICENSE), "public-license") == 0);
    CHECK(strcmp(consent_name(CONSENT_NONE), "none") == 0);
    CHECK(strcmp(consent_name(CONSENT_WITHDRAWN), "withdrawn") == 0);
    CHECK(consent_name(0) == NULL);
    CHECK(consent_name(3) == NULL);

    CHECK_EQ_INT(consent_mask_parse("explicit,public-license", &mask, err, sizeof(err)), 0);
    CHECK_EQ_INT(mask, CONSENT_EXPLICIT | CONSENT_PUBLIC_LICENSE);
    CHECK_EQ_INT(consent_mask_parse(" none ,\texplicit ", &mask, err, sizeof(err)), 0);
    CHECK_EQ_INT(mask, CONSENT_EXPLICIT | CONSENT_NONE);
    CHECK_EQ_INT(consent_mask_parse("", &mask, err, sizeof(err)), 0);
    CHECK_EQ_INT(mask, 0);
    CHECK_EQ_INT(consent_mask_parse("refuse", &mask, err, sizeof(err)), 0);
    CHECK_EQ_INT(mask, 0);
    CHECK_EQ_INT(consent_mask_parse("refuse explicit", &mask, err, sizeof(err)), LETHE_ERR_ARG);
    CHECK_EQ_INT(consent_mask_parse("explicit explicit", &mask, err, sizeof(err)),
                 LETHE_ERR_ARG);
    CHECK(strstr(err, "twice") != NULL);
    CHECK_EQ_INT(consent_mask_parse("explicit maybe", &mask, err, sizeof(err)), LETHE_ERR_ARG);
    CHECK(starts_with(err, "unknown consent basis \"maybe\""));

    CHECK_EQ_INT(consent_mask_format(CONSENT_NONE | CONSENT_EXPLICIT, buf, sizeof(buf)),
                 strlen("explicit none"));
    CHECK(strcmp(buf, "explicit none") == 0);
    consent_mask_format(0, buf, sizeof(buf));
    CHECK(strcmp(buf, "refuse") == 0);
    consent_mask_format(CONSENT_EXPLICIT | CONSENT_PUBLIC_LICENSE | CONSENT_NONE, buf, 10);
    CHECK(strcmp(buf, "explicit ") == 0); /* truncated, terminated */
}

static void test_jurisdiction_codes(void)
{
    char canon[JURISDICTION_MAX], err[256];
    int n = 0;

    /* Exactly 249 two-letter codes are assigned. */
    for (char a = 'A'; a <= 'Z'; a++)
        for (char b = 'A'; b <= 'Z'; b++) {
            char code[3] = {a, b, 0};
            n += jurisdiction_is_country(code);
        }
    CHECK_EQ_INT(n, 249);
    CHECK(jurisdiction_is_country("GB"));
    CHECK(jurisdiction_is_country("AX"));
    CHECK(jurisdiction_is_country("SS")); /* South Sudan, 2011 */
    CHECK(jurisdiction_is_country("BQ"));
    CHECK(!jurisdiction_is_country("UK"));
    CHECK(!jurisdiction_is_country("EU"));
    CHECK(!jurisdiction_is_country("XK")); /* user-assigned */
    CHECK(!jurisdiction_is_country("AN")); /* withdrawn 2010 */
    CHECK(!jurisdiction_is_country("gb")); /* upper case only */
    CHECK(!jurisdiction_is_country("GBR"));
    CHECK(!jurisdiction_is_country(""));

    CHECK_EQ_INT(jurisdiction_parse("us-il", canon, err, sizeof(err)), LETHE_OK);
    CHECK(strcmp(canon, "US-IL") == 0);
    CHECK_EQ_INT(jurisdiction_parse("gb-sct", canon, err, sizeof(err)), LETHE_OK);
    CHECK(strcmp(canon, "GB-SCT") == 0);
    CHECK_EQ_INT(jurisdiction_parse("De-By", canon, err, sizeof(err)), LETHE_OK);
    CHECK(strcmp(canon, "DE-BY") == 0);
    CHECK_EQ_INT(jurisdiction_parse("FR-75", canon, err, sizeof(err)), LETHE_OK);
    CHECK_EQ_INT(jurisdiction_parse("fr", canon, err, sizeof(err)), LETHE_OK);
    CHECK(strcmp(canon, "FR") == 0);
    CHECK_EQ_INT(jurisdiction_parse("", canon, err, sizeof(err)), LETHE_OK);
    CHECK(canon[0] == '\0');
    CHECK_EQ_INT(jurisdiction_parse(NULL, canon, err, sizeof(err)), LETHE_OK);

    CHECK_EQ_INT(jurisdiction_parse("UK", canon, err, sizeof(err)), LETHE_ERR_ARG);
    CHECK(canon[0] == '\0');
    CHECK(strstr(err, "\"UK\"") && strstr(err, "GB"));
    CHECK_EQ_INT(jurisdiction_parse("XX-IL", canon, err, sizeof(err)), LETHE_ERR_ARG);
    CHECK_EQ_INT(jurisdiction_parse("US-", canon, err, sizeof(err)), LETHE_ERR_ARG);
    CHECK_EQ_INT(jurisdiction_parse("US-ABCD", canon, err, sizeof(err)), LETHE_ERR_ARG);
    CHECK_EQ_INT(jurisdiction_parse("US-I L", canon, err, sizeof(err)), LETHE_ERR_ARG);
    CHECK_EQ_INT(jurisdiction_parse("US_IL", canon, err, sizeof(err)), LETHE_ERR_ARG);
    CHECK_EQ_INT(jurisdiction_parse("USA", canon, err, sizeof(err)), LETHE_ERR_ARG);
    CHECK_EQ_INT(jurisdiction_parse("U", canon, err, sizeof(err)), LETHE_ERR_ARG);
    CHECK_EQ_INT(jurisdiction_parse(" US", canon, err, sizeof(err)), LETHE_ERR_ARG);
    CHECK_EQ_INT(jurisdiction_parse("\xC3\xA9U", canon, err, sizeof(err)), LETHE_ERR_ARG);
    CHECK(strstr(err, "\\xC3\\xA9") != NULL); /* hostile bytes are escaped in messages */
    CHECK_EQ_INT(jurisdiction_parse("EEA", canon, err, sizeof(err)), LETHE_ERR_ARG);
    CHECK_EQ_INT(jurisdiction_parse("default", canon, err, sizeof(err)), LETHE_ERR_ARG);
}

static void test_eea(void)
{
    static const char *const members[] = {
        "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT",
        "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE", "IS", "LI", "NO",
    };
    for (size_t i = 0; i < LETHE_ARRAY_LEN(members); i++)
        CHECK(jurisdiction_in_eea(members[i]));
    CHECK(jurisdiction_in_eea("DE-BY"));
    CHECK(jurisdiction_in_eea("RE")); /* La Reunion: an outermost region of the EU */
    CHECK(jurisdiction_in_eea("AX"));
    CHECK(!jurisdiction_in_eea("GB"));
    CHECK(!jurisdiction_in_eea("GB-SCT"));
    CHECK(!jurisdiction_in_eea("CH"));
    CHECK(!jurisdiction_in_eea("US"));
    CHECK(!jurisdiction_in_eea("GL")); /* Greenland: not in the EU */
    CHECK(!jurisdiction_in_eea("SJ")); /* Svalbard: outside the EEA agreement */
    CHECK(!jurisdiction_in_eea(""));
    CHECK(!jurisdiction_in_eea("D"));
    CHECK(!jurisdiction_in_eea("DEU"));
    CHECK(!jurisdiction_in_eea(NULL));
}

static void test_default_policy(void)
{
    policy *p = NULL;
    const char *rule = NULL, *key;
    unsigned mask;
    static const char *const keys[] = {"default", "EEA", "GB", "US-IL", "US-TX", "US-WA"};

    CHECK_EQ_INT(policy_default(&p), LETHE_OK);
    CHECK_EQ_INT(policy_rule_count(p), 6);
    for (size_t i = 0; i < 6; i++) {
        CHECK_EQ_INT(policy_rule_at(p, i, &key, &mask), LETHE_OK);
        CHECK(strcmp(key, keys[i]) == 0);
        CHECK_EQ_INT(mask, CONSENT_EXPLICIT);
    }
    CHECK_EQ_INT(policy_rule_at(p, 6, &key, &mask), LETHE_ERR_ARG);

    CHECK_EQ_INT(policy_allows(p, "US-IL", CONSENT_EXPLICIT, &rule), 1);
    CHECK(strcmp(rule, "US-IL") == 0);
    CHECK_EQ_INT(policy_allows(p, "US-IL", CONSENT_PUBLIC_LICENSE, &rule), 0);
    CHECK(strcmp(rule, "US-IL") == 0);
    CHECK_EQ_INT(policy_allows(p, "US-CA", CONSENT_PUBLIC_LICENSE, &rule), 0);
    CHECK(strcmp(rule, "default") == 0);
    CHECK_EQ_INT(policy_allows(p, "DE", CONSENT_EXPLICIT, &rule), 1);
    CHECK(strcmp(rule, "EEA") == 0);
    CHECK_EQ_INT(policy_allows(p, "de-by", CONSENT_NONE, &rule), 0);
    CHECK(strcmp(rule, "EEA") == 0);
    CHECK_EQ_INT(policy_allows(p, "GB-SCT", CONSENT_EXPLICIT, &rule), 1);
    CHECK(strcmp(rule, "GB") == 0);
    CHECK_EQ_INT(policy_allows(p, "", CONSENT_EXPLICIT, &rule), 1);
    CHECK(strcmp(rule, "default") == 0);
    CHECK_EQ_INT(policy_allows(p, NULL, 0, &rule), 0); /* no basis = none */
    CHECK(strcmp(rule, "default") == 0);
    CHECK_EQ_INT(policy_allows(p, "JP", CONSENT_WITHDRAWN, &rule), 0);
    CHECK(strcmp(rule, "withdrawn") == 0);
    CHECK_EQ_INT(policy_allows(p, "JP", 3, &rule), 0);
    CHECK(strcmp(rule, "invalid-consent") == 0);
    CHECK_EQ_INT(policy_allows(p, "UK", CONSENT_EXPLICIT, &rule), 0);
    CHECK(strcmp(rule, "invalid-jurisdiction") == 0);
    CHECK_EQ_INT(policy_allows(p, "JP", CONSENT_EXPLICIT, NULL), 1);
    policy_free(p);
    policy_free(NULL);
}

static void test_resolution_order(void)
{
    policy *p = parse_ok("version 1\n"
                         "default refuse\n"
                         "EEA explicit public-license\n"
                         "DE explicit\n"
                         "DE-BY none\n"
                         "US public-license\n"
                         "US-IL explicit\n");
    const char *rule;

    if (!p)
        return;
    /* subdivision first */
    CHECK_EQ_INT(policy_allows(p, "DE-BY", CONSENT_NONE, &rule), 1);
    CHECK(strcmp(rule, "DE-BY") == 0);
    CHECK_EQ_INT(policy_allows(p, "DE-BY", CONSENT_EXPLICIT, &rule), 0);
    /* then the country, before EEA */
    CHECK_EQ_INT(policy_allows(p, "DE-BE", CONSENT_PUBLIC_LICENSE, &rule), 0);
    CHECK(strcmp(rule, "DE") == 0);
    CHECK_EQ_INT(policy_allows(p, "DE", CONSENT_EXPLICIT, &rule), 1);
    CHECK(strcmp(rule, "DE") == 0);
    /* then EEA */
    CHECK_EQ_INT(policy_allows(p, "FR-75", CONSENT_PUBLIC_LICENSE, &rule), 1);
    CHECK(strcmp(rule, "EEA") == 0);
    CHECK_EQ_INT(policy_allows(p, "NO", CONSENT_PUBLIC_LICENSE, &rule), 1);
    CHECK(strcmp(rule, "EEA") == 0);
    /* then default */
    CHECK_EQ_INT(policy_allows(p, "CH", CONSENT_EXPLICIT, &rule), 0);
    CHECK(strcmp(rule, "default") == 0);
    CHECK_EQ_INT(policy_allows(p, "US-IL", CONSENT_PUBLIC_LICENSE, &rule), 0);
    CHECK(strcmp(rule, "US-IL") == 0);
    CHECK_EQ_INT(policy_allows(p, "US-NY", CONSENT_PUBLIC_LICENSE, &rule), 1);
    CHECK(strcmp(rule, "US") == 0);
    /* withdrawn always refuses, even where none is allowed */
    CHECK_EQ_INT(policy_allows(p, "DE-BY", CONSENT_WITHDRAWN, &rule), 0);
    CHECK(strcmp(rule, "withdrawn") == 0);
    /* none only where a rule lists it; unrecorded consent counts as none */
    CHECK_EQ_INT(policy_allows(p, "DE-BY", 0, &rule), 1);
    CHECK_EQ_INT(policy_allows(p, "FR", CONSENT_NONE, &rule), 0);
    policy_free(p);
}

static void test_set_unset(void)
{
    policy *p = NULL;
    char err[256];
    const char *rule, *held;
    unsigned mask = 0;

    CHECK_EQ_INT(policy_default(&p), LETHE_OK);
    CHECK_EQ_INT(policy_set(p, "us-ca", CONSENT_EXPLICIT | CONSENT_PUBLIC_LICENSE, err,
                            sizeof(err)),
                 LETHE_OK);
    CHECK(policy_get(p, "US-CA", &mask));
    CHECK_EQ_INT(mask, CONSENT_EXPLICIT | CONSENT_PUBLIC_LICENSE);
    CHECK_EQ_INT(policy_allows(p, "US-CA", CONSENT_PUBLIC_LICENSE, &rule), 1);
    held = rule;
    /* Keys handed out stay valid while other rules come and go. */
    for (unsigned i = 0; i < 40; i++) {
        char key[16];
        snprintf(key, sizeof(key), "FR-%u", i);
        CHECK_EQ_INT(policy_set(p, key, CONSENT_NONE, err, sizeof(err)), LETHE_OK);
    }
    CHECK(strcmp(held, "US-CA") == 0);
    CHECK_EQ_INT(policy_rule_count(p), 47);
    for (unsigned i = 0; i < 40; i++) {
        char key[16];
        snprintf(key, sizeof(key), "fr-%u", i);
        CHECK_EQ_INT(policy_unset(p, key, err, sizeof(err)), LETHE_OK);
    }
    CHECK(strcmp(held, "US-CA") == 0);

    /* replace */
    CHECK_EQ_INT(policy_set(p, "US-CA", 0, err, sizeof(err)), LETHE_OK);
    CHECK_EQ_INT(policy_allows(p, "US-CA", CONSENT_EXPLICIT, &rule), 0);
    CHECK(strcmp(rule, "US-CA") == 0);
    CHECK_EQ_INT(policy_rule_count(p), 7);
    /* a none rule */
    CHECK_EQ_INT(policy_set(p, "default", CONSENT_EXPLICIT | CONSENT_NONE, err, sizeof(err)),
                 LETHE_OK);
    CHECK_EQ_INT(policy_allows(p, "JP", CONSENT_NONE, &rule), 1);
    CHECK_EQ_INT(policy_allows(p, "JP", CONSENT_WITHDRAWN, &rule), 0);
    CHECK_EQ_INT(policy_set(p, "eea", CONSENT_EXPLICIT, err, sizeof(err)), LETHE_OK);
    CHECK(policy_get(p, "EEA", &mask));

    /* errors */
    CHECK_EQ_INT(policy_set(p, "US", CONSENT_WITHDRAWN, err, sizeof(err)), LETHE_ERR_ARG);
    CHECK(strstr(err, "withdrawn") != NULL);
    CHECK_EQ_INT(policy_set(p, "US", CONSENT_EXPLICIT | CONSENT_WITHDRAWN, err, sizeof(err)),
                 LETHE_ERR_ARG);
    CHECK_EQ_INT(policy_set(p, "US", 16, err, sizeof(err)), LETHE_ERR_ARG);
    CHECK_EQ_INT(policy_set(p, "UK", CONSENT_EXPLICIT, err, sizeof(err)), LETHE_ERR_ARG);
    CHECK_EQ_INT(policy_set(p, "", CONSENT_EXPLICIT, err, sizeof(err)), LETHE_ERR_ARG);
    CHECK_EQ_INT(policy_set(p, NULL, CONSENT_EXPLICIT, err, sizeof(err)), LETHE_ERR_ARG);
    CHECK_EQ_INT(policy_unset(p, "default", err, sizeof(err)), LETHE_ERR_ARG);
    CHECK_EQ_INT(policy_unset(p, "DEFAULT", err, sizeof(err)), LETHE_ERR_ARG);
    CHECK_EQ_INT(policy_unset(p, "JP", err, sizeof(err)), LETHE_ERR_NOT_FOUND);
    CHECK_EQ_INT(policy_unset(p, "ZZ", err, sizeof(err)), LETHE_ERR_ARG);
    CHECK_EQ_INT(policy_unset(p, "EEA", err, sizeof(err)), LETHE_OK);
    CHECK(!policy_get(p, "EEA", NULL));
    CHECK_EQ_INT(policy_allows(p, "DE", CONSENT_NONE, &rule), 1);
    CHECK(strcmp(rule, "default") == 0);
    CHECK(!policy_get(p, "ZZ", NULL));
    policy_free(p);
}

static void test_rule_limit(void)
{
    policy *p = NULL;
    char err[256], key[8];
    int st = LETHE_OK, added = 0;

    CHECK_EQ_INT(policy_default(&p), LETHE_OK);
    for (int i = 0; i < 36 * 36 * 4 && st == LETHE_OK; i++) {
        static const char alnum[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
        static const char *const cc[] = {"US", "FR", "JP", "BR"};
        snprintf(key, sizeof(key), "%s-%c%c", cc[i / 1296], alnum[(i / 36) % 36], alnum[i % 36]);
        st = policy_set(p, key, CONSENT_EXPLICIT, err, sizeof(err));
        added += st == LETHE_OK;
    }
    CHECK_EQ_INT(st, LETHE_ERR_TOO_LARGE);
    CHECK_EQ_INT(policy_rule_count(p), POLICY_MAX_RULES);
    CHECK_EQ_INT(added, POLICY_MAX_RULES - 6 + 3); /* + US-IL, US-TX, US-WA replaced */
    policy_free(p);
}

static void test_parse_format_round_trip(void)
{
    const char *text = "\xEF\xBB\xBF# my policy\r\n"
                       "\r\n"
                       "  version   1   # the format\r\n"
                       "US-IL    explicit          # BIPA\r\n"
                       "eea explicit\n"
                       "us-ca\tpublic-license, explicit\n"
                       "Default  explicit\n"
                       "AQ refuse\n"
                       "GB explicit,none\n"
                       "#\n";
    policy *p = parse_ok(text), *q = NULL, *c = NULL;
    char *out, *out2, err[256];
    const char *expect_rules = "version 1\n"
                               "default  explicit\n"
                               "EEA      explicit\n"
                               "AQ       refuse\n"
                               "GB       explicit none\n"
                               "US-CA    explicit public-license\n"
                               "US-IL    explicit\n";

    if (!p)
        return;
    out = policy_format(p);
    CHECK(out != NULL);
    if (!out) {
        policy_free(p);
        return;
    }
    CHECK(starts_with(out, "# lethe consent policy"));
    CHECK(strstr(out, expect_rules) != NULL);
    CHECK(strcmp(out + strlen(out) - strlen(expect_rules), expect_rules) == 0);
    CHECK_EQ_INT(policy_parse(out, strlen(out), &q, err, sizeof(err)), LETHE_OK);
    out2 = policy_format(q);
    CHECK(out2 && strcmp(out, out2) == 0);
    CHECK_EQ_INT(policy_rule_count(q), policy_rule_count(p));
    CHECK_EQ_INT(policy_copy(q, &c), LETHE_OK);
    lethe_free(out2);
    out2 = policy_format(c);
    CHECK(out2 && strcmp(out, out2) == 0);
    lethe_free(out2);
    lethe_free(out);
    policy_free(c);
    policy_free(q);

    /* The default policy round-trips too. */
    policy_free(p);
    CHECK_EQ_INT(policy_default(&p), LETHE_OK);
    out = policy_format(p);
    CHECK(out != NULL);
    if (out) {
        q = NULL;
        CHECK_EQ_INT(policy_parse(out, strlen(out), &q, err, sizeof(err)), LETHE_OK);
        out2 = policy_format(q);
        CHECK(out2 && strcmp(out, out2) == 0);
        CHECK(strstr(out, "version 1\ndefault  explicit\nEEA      explicit\nGB       explicit\n"
                          "US-IL    explicit\nUS-TX    explicit\nUS-WA    explicit\n") != NULL);
        lethe_free(out2);
        policy_free(q);
    }
    lethe_free(out);
    policy_free(p);
}

static void test_parse_errors(void)
{
    expect_parse_error("", "missing \"version 1\" line");
    expect_parse_error("# only a comment\n\n", "missing \"version 1\" line");
    expect_parse_error("default explicit\n", "line 1: expected \"version 1\" before the rules");
    expect_parse_error("# c\nversion 2\ndefault explicit\n",
                       "line 2: unsupported policy version \"2\"");
    expect_parse_error("version\ndefault explicit\n", "line 1: unsupported policy version");
    expect_parse_error("version 1\n", "no \"default\" rule");
    expect_parse_error("version 1\nEEA explicit\n", "no \"default\" rule");
    expect_parse_error("version 1\ndefault explicit\nversion 1\n",
                       "line 3: a second version line");
    expect_parse_error("version 1\n"
                       "default explicit\n"
                       "EEA explicit\n"
                       "US-IL maybe\n",
                       "line 4: unknown consent basis \"maybe\"");
    expect_parse_error("version 1\ndefault explicit\nXX explicit\n",
                       "line 3: unknown jurisdiction \"XX\"");
    expect_parse_error("version 1\ndefault explicit\nUK explicit\n",
                       "line 3: unknown jurisdiction \"UK\"");
    expect_parse_error("version 1\ndefault explicit\nUS-TOOLONG explicit\n",
                       "line 3: unknown jurisdiction");
    expect_parse_error("version 1\ndefault explicit\n"
                       "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA explicit\n",
                       "line 3: unknown jurisdiction");
    expect_parse_error("version 1\n"
                       "default explicit\n"
                       "US-IL explicit\n"
                       "\n"
                       "us-il none\n",
                       "line 5: duplicate rule for US-IL (first on line 3)");
    expect_parse_error("version 1\ndefault explicit\nDEFAULT none\n",
                       "line 3: duplicate rule for default (first on line 2)");
    expect_parse_error("version 1\ndefault explicit withdrawn\n",
                       "line 2: \"withdrawn\" cannot be allowed");
    expect_parse_error("version 1\ndefault\n", "line 2: rule for default lists no consent bases");
    expect_parse_error("version 1\ndefault explicit explicit\n",
                       "line 2: consent basis \"explicit\" listed twice");
    expect_parse_error("version 1\ndefault refuse explicit\n",
                       "line 2: \"refuse\" cannot be combined");
    {
        static const char nul_text[] = "version 1\ndefault explicit\nGB exp\0licit\n";
        policy *p = NULL;
        char err[128] = "";
        CHECK(policy_parse(nul_text, sizeof(nul_text) - 1, &p, err, sizeof(err)) ==
              LETHE_ERR_FORMAT);
        CHECK(strcmp(err, "line 3: NUL byte") == 0);
        CHECK(p == NULL);
    }
    {
        policy *p = NULL;
        char err[128] = "";
        CHECK_EQ_INT(policy_parse("x", (size_t)POLICY_MAX_TEXT + 1, &p, err, sizeof(err)),
                     LETHE_ERR_TOO_LARGE);
        CHECK_EQ_INT(policy_parse(NULL, 0, &p, err, sizeof(err)), LETHE_ERR_FORMAT);
    }
}

static void test_load_file(void)
{
    char path[] = "/tmp/lethe-policy-XXXXXX";
    int fd = mkstemp(path);
    FILE *f;
    policy *p = NULL;
    char err[512];

    CHECK(fd >= 0);
    if (fd < 0)
        return;
    f = fdopen(fd, "w");
    fputs("version 1\ndefault explicit\nBR none\n", f);
    fclose(f);
    CHECK_EQ_INT(policy_load_file(path, &p, err, sizeof(err)), LETHE_OK);
    CHECK(policy_get(p, "BR", NULL));
    policy_free(p);
    f = fopen(path, "w");
    fputs("version 1\ndefault explicit\nBR sometimes\n", f);
    fclose(f);
    CHECK_EQ_INT(policy_load_file(path, &p, err, sizeof(err)), LETHE_ERR_FORMAT);
    CHECK(strstr(err, "line 3: unknown consent basis \"sometimes\"") != NULL);
    CHECK(strstr(err, path) != NULL);
    remove(path);
    CHECK_EQ_INT(policy_load_file(path, &p, err, sizeof(err)), LETHE_ERR_NOT_FOUND);
    CHECK(p == NULL);
}

static void test_quote(void)
{
    char q[16], big[4 * POLICY_QUOTE_MAX + 8];
    const char *alpha = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

    policy_quote("abc", 3, q, sizeof(q));
    CHECK(strcmp(q, "\"abc\"") == 0);
    policy_quote("a\"b\n", 4, q, sizeof(q));
    CHECK(strcmp(q, "\"a\\x22b\\x0A\"") == 0);
    policy_quote("ab\0c", 4, q, sizeof(q)); /* exactly n bytes, NULs too */
    CHECK(strcmp(q, "\"ab\\x00c\"") == 0);
    policy_quote("abcdefgh", 3, q, sizeof(q)); /* never reads past n */
    CHECK(strcmp(q, "\"abc\"") == 0);
    policy_quote(alpha, strlen(alpha), q, sizeof(q)); /* truncated to fit */
    CHECK_EQ_INT(strlen(q), sizeof(q) - 1);
    policy_quote(alpha, strlen(alpha), big, sizeof(big)); /* cut with ... */
    CHECK_EQ_INT(strlen(big), POLICY_QUOTE_MAX + 5);
    CHECK(strcmp(big + POLICY_QUOTE_MAX + 1, "\"...") == 0);
    policy_quote(NULL, 3, q, sizeof(q));
    CHECK(strcmp(q, "\"\"") == 0);
}

/* Every allocation failure is reported cleanly (and leaks nothing, which
 * the sanitizer build checks). */
/* Every allocation failing in turn, one step at a time, through a parse, a
 * format, a copy and a change: each failing call says LETHE_ERR_NOMEM (or
 * NULL), and nothing leaks (ASan, in the sanitizer pass). */
static void test_alloc_failures(void)
{
    const char *text = "version 1\ndefault explicit\nEEA explicit\nUS-IL explicit\nJP none\n";
    int ok_seen = 0, nomem = 0;

    for (long k = 0; k < 200 && !ok_seen; k++) {
        policy *p = NULL, *c = NULL;
        char err[256];
        char *out = NULL;
        int st;

        lethe_alloc_fail_after(k);
        st = policy_parse(text, strlen(text), &p, err, sizeof(err));
        if (st == LETHE_OK && (out = policy_format(p)) != NULL &&
            (st = policy_copy(p, &c)) == LETHE_OK &&
            (st = policy_set(c, "FR", CONSENT_NONE, err, sizeof(err))) == LETHE_OK)
            ok_seen = 1;
        long used = lethe_alloc_count();
        lethe_alloc_fail_after(-1);
        if (ok_seen) {
            CHECK(used <= k);
        } else {
            /* whichever call failed, it failed for want of memory
             * (policy_format says so with NULL) */
            if (!(st == LETHE_OK && p && !out))
                CHECK_EQ_INT(st, LETHE_ERR_NOMEM);
            CHECK(p != NULL || c == NULL);
            nomem++;
        }
        lethe_free(out);
        policy_free(c);
        policy_free(p);
    }
    CHECK(ok_seen);
    CHECK(nomem >= 4);
    int st = LETHE_ERR_NOMEM;
    nomem = 0;
    for (long k = 0; k < 200 && st != LETHE_OK; k++) {
        policy *p = NULL;
        lethe_alloc_fail_after(k);
        st = policy_default(&p);
        lethe_alloc_fail_after(-1);
        if (st == LETHE_OK) {
            CHECK(p != NULL);
        } else {
            CHECK_EQ_INT(st, LETHE_ERR_NOMEM);
            CHECK(p == NULL);
            nomem++;
        }
        policy_free(p);
    }
    CHECK_EQ_INT(st, LETHE_OK);
    CHECK(nomem >= 1);
}

/* lethe_manifest_*: a CSV manifest's rows come back with their paths
 * resolved against its folder and jurisdiction and consent canonical; a bad
 * row is skipped with its line; unknown columns are named. */
static void test_public_manifest(void)
{
    char dir[] = "/tmp/lethe-test-manifest-XXXXXX", path[256], msg[256];
    lethe_manifest *m = NULL;
    lethe_manifest_row row;
    const char *const *unknown = NULL;

    if (!mkdtemp(dir)) {
        CHECK(!"cannot make a temporary folder");
        return;
    }
    snprintf(path, sizeof(path), "%s/photos.csv", dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f)
        return;
    fputs("path,uploader,jurisdiction,consent,mood\n"
          "a.jpg,alice,de,explicit,happy\n"
          "b.jpg,bob,XX-NOPE,explicit,sad\n"
          "c.jpg,carol,us-il,public-license,\n",
          f);
    CHECK(fclose(f) == 0);

    CHECK_EQ_INT(lethe_manifest_open(path, 0, &m, msg, sizeof(msg)), LETHE_OK);
    if (!m) {
        fprintf(stderr, "  %s\n", msg);
        unlink(path);
        rmdir(dir);
        return;
    }
    CHECK_EQ_INT(lethe_manifest_unknown_columns(m, &unknown), 1);
    CHECK(unknown && strcmp(unknown[0], "mood") == 0);

    char want[300];
    CHECK_EQ_INT(lethe_manifest_next(m, &row, msg, sizeof(msg)), 1);
    snprintf(want, sizeof(want), "%s/a.jpg", dir);
    CHECK(row.file && strcmp(row.file, want) == 0);
    CHECK_EQ_INT(row.line, 2);
    CHECK(row.embedding == NULL);
    CHECK(row.prov.uploader && strcmp(row.prov.uploader, "alice") == 0);
    CHECK(row.prov.jurisdiction && strcmp(row.prov.jurisdiction, "DE") == 0);
    CHECK(row.prov.consent && strcmp(row.prov.consent, "explicit") == 0);
    /* an unknown jurisdiction: the row is skipped, and its line named */
    msg[0] = '\0';
    CHECK_EQ_INT(lethe_manifest_next(m, &row, msg, sizeof(msg)), -1);
    CHECK(strstr(msg, "line 3") != NULL);
    CHECK_EQ_INT(lethe_manifest_next(m, &row, msg, sizeof(msg)), 1);
    CHECK_EQ_INT(row.line, 4);
    CHECK(row.prov.jurisdiction && strcmp(row.prov.jurisdiction, "US-IL") == 0);
    CHECK(row.prov.consent && strcmp(row.prov.consent, "public-license") == 0);
    CHECK_EQ_INT(lethe_manifest_next(m, &row, msg, sizeof(msg)), 0);
    lethe_manifest_close(m);
    lethe_manifest_close(NULL);

    /* a file that cannot be a manifest fails at open, with a message */
    m = (lethe_manifest *)1;
    msg[0] = '\0';
    snprintf(path, sizeof(path), "%s/absent.csv", dir);
    CHECK(lethe_manifest_open(path, 0, &m, msg, sizeof(msg)) != LETHE_OK);
    CHECK(m == NULL);
    CHECK(strstr(msg, "absent.csv") != NULL);
    snprintf(path, sizeof(path), "%s/photos.csv", dir);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    RUN(test_consent_names);
    RUN(test_jurisdiction_codes);
    RUN(test_eea);
    RUN(test_default_policy);
    RUN(test_resolution_order);
    RUN(test_set_unset);
    RUN(test_rule_limit);
    RUN(test_parse_format_round_trip);
    RUN(test_parse_errors);
    RUN(test_load_file);
    RUN(test_quote);
    RUN(test_alloc_failures);
    RUN(test_public_manifest);
    return test_summary();
}
