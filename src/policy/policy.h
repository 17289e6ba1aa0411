/*
 * policy.h: consent bases, jurisdictions and the consent policy, which says
 * for each jurisdiction on which consent bases a biometric template (a face
 * descriptor) may be computed and kept.
 *
 * Consent bases (the exact strings; parsing ignores ASCII case):
 *   explicit        the person explicitly agreed (GDPR Art. 9(2)(a), BIPA)
 *   public-license  the photo was published under a licence allowing reuse
 *   none            no basis recorded
 *   withdrawn       consent was given and withdrawn: never allowed, whatever
 *                   the rules say
 *
 * Jurisdictions are ISO 3166-1 alpha-2 codes (only the 249 officially
 * assigned ones: "GB", not "UK") or ISO 3166-2 subdivisions "CC-SUB" (CC an
 * assigned alpha-2 code, SUB 1 to 3 letters or digits: US-IL, GB-SCT, DE-BY;
 * the subdivision part is checked for form only, not against the list of
 * real subdivisions). Canonical form is upper case. "" means unknown, which
 * the policy treats as its default rule.
 *
 * A policy is a set of rules, each a key and a set of allowed bases. Keys are
 * "default", "EEA", a country ("US") or a subdivision ("US-IL"). For a
 * jurisdiction the most specific rule decides: subdivision, then its country,
 * then "EEA" if the country is in the EEA, then "default". A policy always
 * has a default rule. The shipped policy (policy_default) allows only
 * explicit consent for default, EEA, GB, US-IL, US-TX and US-WA.
 *
 * The policy file (text, UTF-8 or ASCII, LF or CRLF), e.g.:
 *
 *     # lethe consent policy
 *     version 1
 *     default  explicit
 *     EEA      explicit
 *     US-CA    explicit public-license   # a comment
 *     AQ       refuse
 *
 * '#' starts a comment anywhere; blank lines are ignored; the first other
 * line must be "version 1"; then one rule per line: a key, then one or more
 * bases separated by spaces, tabs or commas, or the single word "refuse"
 * (allow nothing). Keys are case-insensitive and canonicalised. "withdrawn"
 * may not be listed, a key may appear once, and a "default" rule must be
 * present. policy_format writes the canonical form: a fixed comment header,
 * the version line, default, EEA, then the other keys in byte order, bases
 * in the order explicit, public-license, none.
 */
#ifndef LETHE_POLICY_H
#define LETHE_POLICY_H

#include <stddef.h>

/* ------------------------------------------------------------------ */
/* Consent bases                                                       */
/* ------------------------------------------------------------------ */

enum {
    CONSENT_EXPLICIT = 1,
    CONSENT_PUBLIC_LICENSE = 2,
    CONSENT_NONE = 4,
    CONSENT_WITHDRAWN = 8,
};
#define CONSENT_ALL 15u /* every basis bit */

/* The CONSENT_* bit for s (ASCII case ignored, no surrounding spaces), or -1. */
int consent_parse(const char *s);
/* The canonical name of one CONSENT_* bit ("explicit", ...), or NULL. */
const char *consent_name(int bit);
/*
 * Parse a list of bases separated by commas, spaces or tabs into a mask of
 * CONSENT_* bits. "" (or only separators) and the word "refuse" give 0.
 * Listing a basis twice, "refuse" with others, and unknown words are errors
 * (LETHE_ERR_ARG with a message). withdrawn is accepted here (the policy
 * functions refuse it).
 */
int consent_mask_parse(const char *list, unsigned *mask, char *err, size_t errlen);
/* The mask as canonical text: "explicit public-license", "refuse" for 0;
 * truncated to fit buf (always NUL-terminated when buflen > 0). Returns the
 * length the full text needs. */
size_t consent_mask_format(unsigned mask, char *buf, size_t buflen);

/* ------------------------------------------------------------------ */
/* Jurisdictions                                                       */
/* ------------------------------------------------------------------ */

#define JURISDICTION_MAX 8 /* canonical codes are at most 6 chars + NUL */

/*
 * Check and canonicalise a jurisdiction: any case in, upper case out.
 * "" is accepted (unknown) and gives canon "". Returns LETHE_OK, or
 * LETHE_ERR_ARG with canon set to "" and err saying why, naming the input
 * (e.g. `unknown jurisdiction "UK": not an assigned ISO 3166-1 country code
 * (the United Kingdom is GB)`). No surrounding spaces are allowed.
 */
int jurisdiction_parse(const char *in, char canon[JURISDICTION_MAX], char *err, size_t errlen);
/* 1 if code (upper case) is one of the 249 assigned ISO 3166-1 alpha-2 codes. */
int jurisdiction_is_country(const char *code);
/*
 * 1 if the canonical jurisdiction (country or subdivision: its country part
 * decides) is in the European Economic Area: the 27 EU members, Iceland,
 * Liechtenstein and Norway, plus the territories with their own ISO codes
 * that are part of the EU (Aland AX, French Guiana GF, Guadeloupe GP,
 * Martinique MQ, Mayotte YT, Reunion RE, Saint Martin MF), where the GDPR
 * applies as in the rest of the EU.
 */
int jurisdiction_in_eea(const char *canon);

/* For messages: the n bytes s[0..n) in double quotes, bytes outside
 * printable ASCII (NUL included) and '"' '\\' escaped as \xNN, cut after
 * POLICY_QUOTE_MAX bytes with "...". out is always NUL-terminated when
 * outlen > 0 (a 4 * POLICY_QUOTE_MAX + 8 byte buffer never truncates). */
#define POLICY_QUOTE_MAX 40
void policy_quote(const char *s, size_t n, char *out, size_t outlen);

/* ------------------------------------------------------------------ */
/* The policy                                                          */
/* ------------------------------------------------------------------ */

typedef struct policy policy;

#define POLICY_VERSION 1
#define POLICY_MAX_RULES 4096        /* a bound for hostile files */
#define POLICY_MAX_TEXT (1u << 20)   /* policy_parse refuses longer text */

/* The shipped policy. Returns LETHE_OK or LETHE_ERR_NOMEM. */
int policy_default(policy **out);
/* Parse policy text (need not be NUL-terminated). Errors are LETHE_ERR_FORMAT
 * (or LETHE_ERR_TOO_LARGE, LETHE_ERR_NOMEM) with err naming the line:
 * `line 4: unknown consent basis "maybe"`. *out is NULL on failure. */
int policy_parse(const char *text, size_t len, policy **out, char *err, size_t errlen);
/* Read and parse a policy file (LETHE_ERR_NOT_FOUND if it does not exist). */
int policy_load_file(const char *path, policy **out, char *err, size_t errlen);
/* A copy of p. */
int policy_copy(const policy *p, policy **out);
/* The canonical text (see above), NUL-terminated, owned by the caller
 * (lethe_free); NULL when out of memory. policy_parse reads it back to an
 * equal policy. */
char *policy_format(const policy *p);
void policy_free(policy *p); /* NULL is fine */

/*
 * Add or replace the rule for key ("default", "EEA" in any case, a country or
 * subdivision in any case). mask is a set of CONSENT_* bits; 0 refuses
 * everything there. LETHE_ERR_ARG for a bad key, a mask with
 * CONSENT_WITHDRAWN or unknown bits; LETHE_ERR_TOO_LARGE past
 * POLICY_MAX_RULES; LETHE_ERR_NOMEM.
 */
int policy_set(policy *p, const char *key, unsigned mask, char *err, size_t errlen);
/* Remove the rule for key: LETHE_OK, LETHE_ERR_NOT_FOUND if there is none,
 * LETHE_ERR_ARG for "default" (which cannot be removed) or a bad key. */
int policy_unset(policy *p, const char *key, char *err, size_t errlen);
/* 1 and *mask if p has a rule for exactly key (any case), else 0. */
int policy_get(const policy *p, const char *key, unsigned *mask);

/*
 * May a template be computed for a photo from jurisdiction (canonical or
 * not: case is ignored; "" = unknown) with consent_bit (one CONSENT_* bit;
 * 0, meaning no basis recorded, counts as CONSENT_NONE)? Returns 1 or 0.
 * *rule_key (may be NULL) receives the key of the deciding rule, which stays
 * valid until that rule is replaced or removed or p is freed, or one of the
 * static strings "withdrawn" (always refused), "invalid-consent" or
 * "invalid-jurisdiction" (refused: fail closed).
 */
int policy_allows(const policy *p, const char *jurisdiction, int consent_bit,
                  const char **rule_key);

/* Rules in canonical order (default, EEA, then by key). */
size_t policy_rule_count(const policy *p);
/* Rule i: LETHE_OK with *key (valid as for policy_allows) and *mask, or
 * LETHE_ERR_ARG if i is out of range. key or mask may be NULL. */
int policy_rule_at(const policy *p, size_t i, const char **key, unsigned *mask);

#endif
