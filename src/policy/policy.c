/*
 * policy.c: the consent policy: rules by jurisdiction, their resolution, and
 * the policy file's parser and canonical writer (format in policy.h).
 */
#include "policy/policy.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

#define KEY_DEFAULT "default"
#define KEY_EEA "EEA"
#define KEY_MAX 8 /* "default" and canonical jurisdictions fit with the NUL */

/* One rule. Rules are allocated one by one so that a key handed out by
 * policy_allows stays put while other rules come and go. */
typedef struct rule {
    char key[KEY_MAX]; /* canonical: "default", "EEA", "US", "US-IL" */
    unsigned mask;     /* CONSENT_* bits allowed; never CONSENT_WITHDRAWN */
    size_t line;       /* where policy_parse read it (for duplicate messages) */
} rule;

struct policy {
    rule **rules; /* sorted by key_cmp: default, EEA, then byte order */
    size_t n, cap;
};

static int key_rank(const char *k)
{
    if (strcmp(k, KEY_DEFAULT) == 0)
        return 0;
    if (strcmp(k, KEY_EEA) == 0)
        return 1;
    return 2;
}

static int key_cmp(const char *a, const char *b)
{
    int ra = key_rank(a), rb = key_rank(b);
    if (ra != rb)
        return ra < rb ? -1 : 1;
    return strcmp(a, b);
}

/* Index of key in p->rules if present (*found = 1), else where it belongs. */
static size_t find_slot(const policy *p, const char *key, int *found)
{
    size_t lo = 0, hi = p->n;

    *found = 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = key_cmp(p->rules[mid]->key, key);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static const rule *find_rule(const policy *p, const char *key)
{
    int found;
    size_t i = find_slot(p, key, &found);
    return found ? p->rules[i] : NULL;
}

static int ieq(const char *a, const char *b)
{
    for (; *a && *b; a++, b++) {
        int ca = (unsigned char)*a, cb = (unsigned char)*b;
        if (ca >= 'A' && ca <= 'Z')
            ca += 'a' - 'A';
        if (cb >= 'A' && cb <= 'Z')
            cb += 'a' - 'A';
        if (ca != cb)
            return 0;
    }
    return *a == *b;
}

/* A rule key in any case into its canonical form. */
static int canon_key(const char *key, char out[KEY_MAX], char *err, size_t errlen)
{
    if (!key || !key[0])
        return lethe_fail(err, errlen, LETHE_ERR_ARG,
                          "empty rule key (default, EEA, a country or a subdivision)");
    if (ieq(key, KEY_DEFAULT)) {
        memcpy(out, KEY_DEFAULT, sizeof(KEY_DEFAULT));
        return LETHE_OK;
    }
    if (ieq(key, KEY_EEA)) {
        memcpy(out, KEY_EEA, sizeof(KEY_EEA));
        return LETHE_OK;
    }
    return jurisdiction_parse(key, out, err, errlen);
}

static policy *policy_new(void) { return lethe_calloc(1, sizeof(policy)); }

void policy_free(policy *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++)
        lethe_free(p->rules[i]);
    lethe_free(p->rules);
    lethe_free(p);
}

static int check_mask(const char *key, unsigned mask, char *err, size_t errlen)
{
    if (mask & CONSENT_WITHDRAWN)
        return lethe_fail(err, errlen, LETHE_ERR_ARG,
                          "rule %s: \"withdrawn\" cannot be allowed (withdrawn consent is "
                          "always refused)",
                          key);
    if (mask & ~CONSENT_ALL)
        return lethe_fail(err, errlen, LETHE_ERR_ARG, "rule %s: unknown consent bits 0x%x", key,
                          mask & ~CONSENT_ALL);
    return LETHE_OK;
}

/* Insert or replace a rule with an already canonical key. */
static int set_canon(policy *p, const char *key, unsigned mask, size_t line, char *err,
                     size_t errlen)
{
    int found;
    size_t i = find_slot(p, key, &found);
    rule *r;

    if (found) {
        p->rules[i]->mask = mask;
        p->rules[i]->line = line;
        return LETHE_OK;
    }
    if (p->n >= POLICY_MAX_RULES)
        return lethe_fail(err, errlen, LETHE_ERR_TOO_LARGE, "more than %d rules",
                          POLICY_MAX_RULES);
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        rule **grown = lethe_realloc(p->rules, cap * sizeof(*grown));
        if (!grown)
            return lethe_fail(err, errlen, LETHE_ERR_NOMEM, "out of memory");
        p->rules = grown;
        p->cap = cap;
    }
    r = lethe_calloc(1, sizeof(*r));
    if (!r)
        return lethe_fail(err, errlen, LETHE_ERR_NOMEM, "out of memory");
    assert(strlen(key) < KEY_MAX);
    memcpy(r->key, key, strlen(key) + 1);
    r->mask = mask;
    r->line = line;
    memmove(p->rules + i + 1, p->rules + i, (p->n - i) * sizeof(*p->rules));
    p->rules[i] = r;
    p->n++;
    return LETHE_OK;
}

int policy_set(policy *p, const char *key, unsigned mask, char *err, size_t errlen)
{
    char k[KEY_MAX];
    int st;

    if (!p)
        return lethe_fail(err, errlen, LETHE_ERR_ARG, "no policy");
    st = canon_key(key, k, err, errlen);
    if (st != LETHE_OK)
        return st;
    st = check_mask(k, mask, err, errlen);
    if (st != LETHE_OK)
        return st;
    return set_canon(p, k, mask, 0, err, errlen);
}

int policy_unset(policy *p, const char *key, char *err, size_t errlen)
{
    char k[KEY_MAX];
    int found, st;
    size_t i;

    if (!p)
        return lethe_fail(err, errlen, LETHE_ERR_ARG, "no policy");
    st = canon_key(key, k, err, errlen);
    if (st != LETHE_OK)
        return st;
    if (strcmp(k, KEY_DEFAULT) == 0)
        return lethe_fail(err, errlen, LETHE_ERR_ARG,
                          "the default rule cannot be removed (set it instead)");
    i = find_slot(p, k, &found);
    if (!found)
        return lethe_fail(err, errlen, LETHE_ERR_NOT_FOUND, "no rule for %s", k);
    lethe_free(p->rules[i]);
    memmove(p->rules + i, p->rules + i + 1, (p->n - i - 1) * sizeof(*p->rules));
    p->n--;
    return LETHE_OK;
}

int policy_get(const policy *p, const char *key, unsigned *mask)
{
    char k[KEY_MAX];
    const rule *r;

    if (!p || canon_key(key, k, NULL, 0) != LETHE_OK)
        return 0;
    r = find_rule(p, k);
    if (!r)
        return 0;
    if (mask)
        *mask = r->mask;
    return 1;
}

int policy_default(policy **out)
{
    static const char *const keys[] = {KEY_DEFAULT, KEY_EEA, "GB", "US-IL", "US-TX", "US-WA"};
    policy *p = policy_new();

    *out = NULL;
    if (!p)
        return LETHE_ERR_NOMEM;
    for (size_t i = 0; i < LETHE_ARRAY_LEN(keys); i++) {
        if (set_canon(p, keys[i], CONSENT_EXPLICIT, 0, NULL, 0) != LETHE_OK) {
            policy_free(p);
            return LETHE_ERR_NOMEM;
        }
    }
    *out = p;
    return LETHE_OK;
}

int policy_copy(const policy *p, policy **out)
{
    policy *c = policy_new();

    *out = NULL;
    if (!c)
        return LETHE_ERR_NOMEM;
    for (size_t i = 0; p && i < p->n; i++) {
        if (set_canon(c, p->rules[i]->key, p->rules[i]->mask, 0, NULL, 0) != LETHE_OK) {
            policy_free(c);
            return LETHE_ERR_NOMEM;
        }
    }
    *out = c;
    return LETHE_OK;
}

size_t policy_rule_count(const policy *p) { return p ? p->n : 0; }

int policy_rule_at(const policy *p, size_t i, const char **key, unsigned *mask)
{
    if (!p || i >= p->n)
        return LETHE_ERR_ARG;
    if (key)
        *key = p->rules[i]->key;
    if (mask)
        *mask = p->rules[i]->mask;
    return LETHE_OK;
}

int policy_allows(const policy *p, const char *jurisdiction, int consent_bit,
                  const char **rule_key)
{
    char canon[JURISDICTION_MAX], country[3];
    const rule *r = NULL;
    const char *dummy;

    if (!rule_key)
        rule_key = &dummy;
    if (consent_bit == 0)
        consent_bit = CONSENT_NONE; /* no basis recorded */
    if (consent_bit == CONSENT_WITHDRAWN) {
        *rule_key = "withdrawn";
        return 0;
    }
    if (consent_bit != CONSENT_EXPLICIT && consent_bit != CONSENT_PUBLIC_LICENSE &&
        consent_bit != CONSENT_NONE) {
        *rule_key = "invalid-consent";
        return 0;
    }
    if (!p || jurisdiction_parse(jurisdiction ? jurisdiction : "", canon, NULL, 0) != LETHE_OK) {
        *rule_key = "invalid-jurisdiction";
        return 0;
    }
    if (canon[0]) {
        r = find_rule(p, canon); /* the subdivision, or the country itself */
        if (!r && canon[2] == '-') {
            memcpy(country, canon, 2);
            country[2] = '\0';
            r = find_rule(p, country);
        }
        if (!r && jurisdiction_in_eea(canon))
            r = find_rule(p, KEY_EEA);
    }
    if (!r)
        r = find_rule(p, KEY_DEFAULT);
    if (!r) {
        /* Only reachable through a policy built without a default rule,
         * which the API does not allow; refuse rather than guess. */
        *rule_key = KEY_DEFAULT;
        return 0;
    }
    *rule_key = r->key;
    return (r->mask & (unsigned)consent_bit) != 0;
}

/* ------------------------------------------------------------------ */
/* The policy file                                                     */
/* ------------------------------------------------------------------ */

static const char format_header[] =
    "# lethe consent policy: on which consent bases a face template may be\n"
    "# computed, by jurisdiction. The most specific rule applies: subdivision\n"
    "# (US-IL), then country (US), then EEA, then default. Bases: explicit,\n"
    "# public-license, none; \"refuse\" allows nothing. Withdrawn consent is\n"
    "# always refused.\n";

char *policy_format(const policy *p)
{
    size_t cap = sizeof(format_header) + 32, len;
    char *out, *o;

    /* A rule line is at most 8 + 1 + 30 + 1 bytes. */
    if (p && !lethe_add_size(cap, p->n * 48, &cap))
        return NULL;
    out = lethe_malloc(cap);
    if (!out)
        return NULL;
    len = (size_t)snprintf(out, cap, "%sversion %d\n", format_header, POLICY_VERSION);
    o = out + len;
    for (size_t i = 0; p && i < p->n; i++) {
        char bases[64];
        int n;
        consent_mask_format(p->rules[i]->mask, bases, sizeof(bases));
        n = snprintf(o, cap - (size_t)(o - out), "%-8s %s\n", p->rules[i]->key, bases);
        assert(n > 0 && (size_t)n < cap - (size_t)(o - out));
        o += n;
    }
    return out;
}

typedef struct line_cursor {
    const char *p, *end;
    size_t line; /* of the line last returned */
} line_cursor;

/* The next line without its terminator and comment, trimmed; 0 at the end. */
static int next_line(line_cursor *c, const char **s, size_t *n, int *has_nul)
{
    const char *b, *e, *hash;

    if (c->p >= c->end)
        return 0;
    b = c->p;
    e = memchr(b, '\n', (size_t)(c->end - b));
    c->p = e ? e + 1 : c->end;
    if (!e)
        e = c->end;
    c->line++;
    *has_nul = memchr(b, '\0', (size_t)(e - b)) != NULL;
    hash = memchr(b, '#', (size_t)(e - b));
    if (hash)
        e = hash;
    while (b < e && (*b == ' ' || *b == '\t' || *b == '\r'))
        b++;
    while (e > b && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
        e--;
    *s = b;
    *n = (size_t)(e - b);
    return 1;
}

static int parse_version(const char *s, size_t n, size_t line, char *err, size_t errlen)
{
    const char *num;
    size_t k;
    char q[4 * POLICY_QUOTE_MAX + 8];

    if (n < 7 || memcmp(s, "version", 7) != 0 || (n > 7 && s[7] != ' ' && s[7] != '\t')) {
        policy_quote(s, n, q, sizeof(q));
        return lethe_fail(err, errlen, LETHE_ERR_FORMAT,
                          "line %zu: expected \"version %d\" before the rules, found %s", line,
                          POLICY_VERSION, q);
    }
    num = s + 7;
    while (num < s + n && (*num == ' ' || *num == '\t'))
        num++;
    k = (size_t)(s + n - num);
    if (k == 1 && num[0] == '0' + POLICY_VERSION)
        return LETHE_OK;
    policy_quote(num, k, q, sizeof(q));
    return lethe_fail(err, errlen, LETHE_ERR_FORMAT,
                      "line %zu: unsupported policy version %s (this lethe reads version %d)",
                      line, q, POLICY_VERSION);
}

/* One rule line: KEY BASES... */
static int parse_rule(policy *p, const char *s, size_t n, size_t line, char *err, size_t errlen)
{
    char key_text[32], key[KEY_MAX], list[256], msg[200];
    char q[4 * POLICY_QUOTE_MAX + 8];
    size_t k = 0, rest;
    unsigned mask;
    const rule *prev;

    while (k < n && s[k] != ' ' && s[k] != '\t' && s[k] != ',')
        k++;
    if (k >= sizeof(key_text)) {
        policy_quote(s, k, q, sizeof(q));
        return lethe_fail(err, errlen, LETHE_ERR_FORMAT, "line %zu: unknown jurisdiction %s",
                          line, q);
    }
    memcpy(key_text, s, k);
    key_text[k] = '\0';
    if (memchr(key_text, '\0', k)) /* cannot happen: NULs are refused earlier */
        return lethe_fail(err, errlen, LETHE_ERR_FORMAT, "line %zu: NUL byte", line);
    if (strcmp(key_text, "version") == 0)
        return lethe_fail(err, errlen, LETHE_ERR_FORMAT, "line %zu: a second version line",
                          line);
    if (canon_key(key_text, key, msg, sizeof(msg)) != LETHE_OK)
        return lethe_fail(err, errlen, LETHE_ERR_FORMAT, "line %zu: %s", line, msg);
    rest = n - k;
    if (rest >= sizeof(list))
        return lethe_fail(err, errlen, LETHE_ERR_FORMAT,
                          "line %zu: rule for %s is too long (at most %zu bytes of bases)", line,
                          key, sizeof(list) - 1);
    memcpy(list, s + k, rest);
    list[rest] = '\0';
    {
        size_t j = 0;
        while (list[j] == ' ' || list[j] == '\t' || list[j] == ',')
            j++;
        if (!list[j])
            return lethe_fail(err, errlen, LETHE_ERR_FORMAT,
                              "line %zu: rule for %s lists no consent bases (write \"refuse\" "
                              "to allow nothing)",
                              line, key);
    }
    if (consent_mask_parse(list, &mask, msg, sizeof(msg)) != LETHE_OK)
        return lethe_fail(err, errlen, LETHE_ERR_FORMAT, "line %zu: %s", line, msg);
    if (mask & CONSENT_WITHDRAWN)
        return lethe_fail(err, errlen, LETHE_ERR_FORMAT,
                          "line %zu: \"withdrawn\" cannot be allowed (withdrawn consent is "
                          "always refused)",
                          line);
    prev = find_rule(p, key);
    if (prev)
        return lethe_fail(err, errlen, LETHE_ERR_FORMAT,
                          "line %zu: duplicate rule for %s (first on line %zu)", line, key,
                          prev->line);
    {
        int st = set_canon(p, key, mask, line, msg, sizeof(msg));
        if (st != LETHE_OK)
            return lethe_fail(err, errlen, st, "line %zu: %s", line, msg);
    }
    return LETHE_OK;
}

int policy_parse(const char *text, size_t len, policy **out, char *err, size_t errlen)
{
    line_cursor c;
    policy *p;
    const char *s;
    size_t n;
    int has_nul, have_version = 0, st = LETHE_OK;

    *out = NULL;
    if (len > POLICY_MAX_TEXT)
        return lethe_fail(err, errlen, LETHE_ERR_TOO_LARGE,
                          "policy text is %zu bytes, more than the limit of %u", len,
                          POLICY_MAX_TEXT);
    if (!text) {
        text = "";
        len = 0;
    }
    c.p = text;
    c.end = text + len;
    c.line = 0;
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
        c.p += 3;
    p = policy_new();
    if (!p)
        return lethe_fail(err, errlen, LETHE_ERR_NOMEM, "out of memory");
    while (next_line(&c, &s, &n, &has_nul)) {
        if (has_nul) {
            st = lethe_fail(err, errlen, LETHE_ERR_FORMAT, "line %zu: NUL byte", c.line);
            goto fail;
        }
        if (n == 0)
            continue;
        if (!have_version) {
            st = parse_version(s, n, c.line, err, errlen);
            if (st != LETHE_OK)
                goto fail;
            have_version = 1;
            continue;
        }
        st = parse_rule(p, s, n, c.line, err, errlen);
        if (st != LETHE_OK)
            goto fail;
    }
    if (!have_version) {
        st = lethe_fail(err, errlen, LETHE_ERR_FORMAT,
                        "missing \"version %d\" line (the policy is empty)", POLICY_VERSION);
        goto fail;
    }
    if (!find_rule(p, KEY_DEFAULT)) {
        st = lethe_fail(err, errlen, LETHE_ERR_FORMAT,
                        "no \"default\" rule (add a line such as \"default explicit\")");
        goto fail;
    }
    *out = p;
    return LETHE_OK;

fail:
    policy_free(p);
    return st;
}

int policy_load_file(const char *path, policy **out, char *err, size_t errlen)
{
    uint8_t *buf;
    size_t len;
    char msg[256];
    int st;

    *out = NULL;
    st = lethe_read_file(path, POLICY_MAX_TEXT, &buf, &len, err, errlen);
    if (st != LETHE_OK)
        return st;
    st = policy_parse((const char *)buf, len, out, msg, sizeof(msg));
    if (st != LETHE_OK)
        lethe_fail(err, errlen, st, "%s: %s", path, msg);
    lethe_free(buf);
    return st;
}
