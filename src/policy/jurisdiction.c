/*
 * jurisdiction.c: the vocabulary of the consent policy: consent bases, ISO
 * 3166 jurisdiction codes (with the full list of assigned country codes) and
 * EEA membership. See policy.h.
 */
#include "policy/policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

/* ------------------------------------------------------------------ */
/* Consent bases                                                       */
/* ------------------------------------------------------------------ */

static const struct {
    int bit;
    const char *name;
} consent_names[] = {
    {CONSENT_EXPLICIT, "explicit"},
    {CONSENT_PUBLIC_LICENSE, "public-license"},
    {CONSENT_NONE, "none"},
    {CONSENT_WITHDRAWN, "withdrawn"},
};

static int ascii_lower(int c) { return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c; }
static int ascii_upper(int c) { return c >= 'a' && c <= 'z' ? c - ('a' - 'A') : c; }

/* s[0..n) equals the lower-case word w, ignoring ASCII case. */
static int word_eq(const char *s, size_t n, const char *w)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (w[i] == '\0' || ascii_lower((unsigned char)s[i]) != w[i])
            return 0;
    return w[i] == '\0';
}

static int consent_parse_n(const char *s, size_t n)
{
    for (size_t i = 0; i < LETHE_ARRAY_LEN(consent_names); i++)
        if (word_eq(s, n, consent_names[i].name))
            return consent_names[i].bit;
    return -1;
}

int consent_parse(const char *s)
{
    if (!s)
        return -1;
    return consent_parse_n(s, strlen(s));
}

const char *consent_name(int bit)
{
    for (size_t i = 0; i < LETHE_ARRAY_LEN(consent_names); i++)
        if (consent_names[i].bit == bit)
            return consent_names[i].name;
    return NULL;
}

void policy_quote(const char *s, size_t n, char *out, size_t outlen)
{
    size_t o = 0, i, shown = s ? LETHE_MIN(n, (size_t)POLICY_QUOTE_MAX) : 0;

    if (!out || outlen == 0)
        return;
#define PUT_(c)                        \
    do {                               \
        if (o + 1 < outlen)            \
            out[o++] = (char)(c);      \
    } while (0)
    PUT_('"');
    for (i = 0; i < shown; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
            char hex[5];
            snprintf(hex, sizeof(hex), "\\x%02X", c);
            for (int k = 0; hex[k]; k++)
                PUT_(hex[k]);
        } else {
            PUT_(c);
        }
    }
    PUT_('"');
    if (shown < n && s) {
        PUT_('.');
        PUT_('.');
        PUT_('.');
    }
#undef PUT_
    out[o] = '\0';
}

static int is_list_sep(char c) { return c == ',' || c == ' ' || c == '\t'; }

int consent_mask_parse(const char *list, unsigned *mask, char *err, size_t errlen)
{
    unsigned m = 0;
    int refuse = 0, words = 0;
    const char *p = list ? list : "";

    *mask = 0;
    for (;;) {
        const char *w;
        size_t n;
        int bit;
        char q[4 * POLICY_QUOTE_MAX + 8];

        while (*p && is_list_sep(*p))
            p++;
        if (!*p)
            break;
        w = p;
        while (*p && !is_list_sep(*p))
            p++;
        n = (size_t)(p - w);
        words++;
        if (word_eq(w, n, "refuse")) {
            refuse = 1;
            continue;
        }
        bit = consent_parse_n(w, n);
        if (bit < 0) {
            policy_quote(w, n, q, sizeof(q));
            return lethe_fail(err, errlen, LETHE_ERR_ARG,
                              "unknown consent basis %s (explicit, public-license, none, "
                              "withdrawn)",
                              q);
        }
        if (m & (unsigned)bit)
            return lethe_fail(err, errlen, LETHE_ERR_ARG, "consent basis \"%s\" listed twice",
                              consent_name(bit));
        m |= (unsigned)bit;
    }
    if (refuse && words > 1)
        return lethe_fail(err, errlen, LETHE_ERR_ARG,
                          "\"refuse\" cannot be combined with consent bases");
    *mask = m;
    return LETHE_OK;
}

size_t consent_mask_format(unsigned mask, char *buf, size_t buflen)
{
    char tmp[64];
    size_t n = 0;

    tmp[0] = '\0';
    for (size_t i = 0; i < LETHE_ARRAY_LEN(consent_names); i++) {
        if (!(mask & (unsigned)consent_names[i].bit))
            continue;
        n += (size_t)snprintf(tmp + n, sizeof(tmp) - n, "%s%s", n ? " " : "",
                              consent_names[i].name);
    }
    if (n == 0)
        n = (size_t)snprintf(tmp, sizeof(tmp), "refuse");
    if (buf && buflen)
        snprintf(buf, buflen, "%s", tmp);
    return n;
}

/* ------------------------------------------------------------------ */
/* Jurisdictions                                                       */
/* ------------------------------------------------------------------ */

/* The 249 officially assigned ISO 3166-1 alpha-2 codes, sorted (as in the
 * ISO 3166 Maintenance Agency's list and tzdata's iso3166.tab). Not included:
 * exceptionally reserved (UK, EU, ...), user-assigned (XK, ...) and
 * withdrawn codes. */
static const char countries[][3] = {
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX",
    "AZ",
    "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR",
    "BS", "BT", "BV", "BW", "BY", "BZ",
    "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN", "CO", "CR", "CU", "CV",
    "CW", "CX", "CY", "CZ",
    "DE", "DJ", "DK", "DM", "DO", "DZ",
    "EC", "EE", "EG", "EH", "ER", "ES", "ET",
    "FI", "FJ", "FK", "FM", "FO", "FR",
    "GA", "GB", "GD", "GE", "GF", "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS",
    "GT", "GU", "GW", "GY",
    "HK", "HM", "HN", "HR", "HT", "HU",
    "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT",
    "JE", "JM", "JO", "JP",
    "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ",
    "LA", "LB", "LC", "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY",
    "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK", "ML", "MM", "MN", "MO", "MP", "MQ", "MR",
    "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ",
    "NA", "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ",
    "OM",
    "PA", "PE", "PF", "PG", "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY",
    "QA",
    "RE", "RO", "RS", "RU", "RW",
    "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR",
    "SS", "ST", "SV", "SX", "SY", "SZ",
    "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO", "TR", "TT", "TV", "TW",
    "TZ",
    "UA", "UG", "UM", "US", "UY", "UZ",
    "VA", "VC", "VE", "VG", "VI", "VN", "VU",
    "WF", "WS",
    "YE", "YT",
    "ZA", "ZM", "ZW",
};

_Static_assert(sizeof(countries) / sizeof(countries[0]) == 249,
               "ISO 3166-1 has 249 assigned alpha-2 codes");

/* EU 27, the EU's outermost regions and Aland that have their own codes,
 * and the EEA's Iceland, Liechtenstein, Norway. Sorted. */
static const char eea[][3] = {
    "AT", "AX", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GF", "GP", "GR",
    "HR", "HU", "IE", "IS", "IT", "LI", "LT", "LU", "LV", "MF", "MQ", "MT", "NL", "NO", "PL",
    "PT", "RE", "RO", "SE", "SI", "SK", "YT",
};

static int code_cmp(const void *a, const void *b) { return memcmp(a, b, 2); }

static int in_table(const char (*table)[3], size_t n, const char *code)
{
    if (!code || strlen(code) < 2)
        return 0;
    return bsearch(code, table, n, sizeof(table[0]), code_cmp) != NULL;
}

int jurisdiction_is_country(const char *code)
{
    return code && strlen(code) == 2 && in_table(countries, LETHE_ARRAY_LEN(countries), code);
}

int jurisdiction_in_eea(const char *canon)
{
    size_t n = canon ? strlen(canon) : 0;

    if (n < 2 || (n > 2 && canon[2] != '-'))
        return 0;
    return in_table(eea, LETHE_ARRAY_LEN(eea), canon);
}

static int is_alnum_ascii(int c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* Common reserved look-alikes, for a helpful message. */
static const char *country_hint(const char *cc)
{
    if (strcmp(cc, "UK") == 0)
        return " (the United Kingdom is GB)";
    if (strcmp(cc, "EL") == 0)
        return " (Greece is GR)";
    if (strcmp(cc, "EU") == 0)
        return " (use the rule key EEA for the European Economic Area)";
    return "";
}

int jurisdiction_parse(const char *in, char canon[JURISDICTION_MAX], char *err, size_t errlen)
{
    char q[4 * POLICY_QUOTE_MAX + 8], cc[3];
    size_t n, sub = 0;

    canon[0] = '\0';
    if (!in || !in[0])
        return LETHE_OK;
    n = strlen(in);
    policy_quote(in, n, q, sizeof(q));
    if (n < 2 || !is_alnum_ascii((unsigned char)in[0]) || !is_alnum_ascii((unsigned char)in[1]))
        goto bad_form;
    if (n > 2) {
        if (in[2] != '-')
            goto bad_form;
        sub = n - 3;
        if (sub < 1 || sub > 3)
            return lethe_fail(err, errlen, LETHE_ERR_ARG,
                              "unknown jurisdiction %s: the subdivision after '-' must be 1 to 3 "
                              "letters or digits",
                              q);
        for (size_t i = 3; i < n; i++)
            if (!is_alnum_ascii((unsigned char)in[i]))
                return lethe_fail(err, errlen, LETHE_ERR_ARG,
                                  "unknown jurisdiction %s: the subdivision after '-' must be 1 "
                                  "to 3 letters or digits",
                                  q);
    }
    cc[0] = (char)ascii_upper((unsigned char)in[0]);
    cc[1] = (char)ascii_upper((unsigned char)in[1]);
    cc[2] = '\0';
    if (!jurisdiction_is_country(cc))
        return lethe_fail(err, errlen, LETHE_ERR_ARG,
                          "unknown jurisdiction %s: %s is not an assigned ISO 3166-1 country "
                          "code%s",
                          q, cc, country_hint(cc));
    for (size_t i = 0; i < n; i++)
        canon[i] = (char)ascii_upper((unsigned char)in[i]);
    canon[n] = '\0';
    return LETHE_OK;

bad_form:
    return lethe_fail(err, errlen, LETHE_ERR_ARG,
                      "unknown jurisdiction %s: expected an ISO 3166-1 country code (GB) or "
                      "ISO 3166-2 subdivision (US-IL)",
                      q);
}
