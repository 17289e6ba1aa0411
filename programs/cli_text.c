/*
 * cli_text.c: writing text that came from outside the program (file names,
 * messages that quote them, values given on the command line) so that it
 * can neither drive a terminal nor break a parser: as terminal text
 * (cli_put_text, cli_text_error) and as JSON strings (json_put_string).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"

/*
 * The length (1 to 4) of the well-formed UTF-8 sequence at p, or 0 when p
 * does not start one: a stray continuation byte, a truncated sequence, an
 * overlong form, a surrogate (U+D800..U+DFFF) or a code point above
 * U+10FFFF (Unicode 15, table 3-7). p is NUL-terminated; NUL is never a
 * continuation byte, so the checks stop there.
 */
static size_t utf8_len(const unsigned char *p)
{
    unsigned char c = p[0], lo = 0x80, hi = 0xBF;
    size_t n;

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        n = 3;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4;
    else
        return 0;
    if (c == 0xE0)
        lo = 0xA0; /* overlong below U+0800 */
    else if (c == 0xED)
        hi = 0x9F; /* surrogates */
    else if (c == 0xF0)
        lo = 0x90; /* overlong below U+10000 */
    else if (c == 0xF4)
        hi = 0x8F; /* above U+10FFFF */
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (size_t k = 2; k < n; k++)
        if ((p[k] & 0xC0) != 0x80)
            return 0;
    return n;
}

/* The code point of a well-formed sequence of n bytes. */
static unsigned long utf8_decode(const unsigned char *p, size_t n)
{
    static const unsigned char lead_mask[5] = {0, 0x7F, 0x1F, 0x0F, 0x07};
    unsigned long cp = p[0] & lead_mask[n];
    for (size_t k = 1; k < n; k++)
        cp = (cp << 6) | (p[k] & 0x3F);
    return cp;
}

/* C0, DEL and C1 controls: a terminal acts on them. */
static int is_control(unsigned long cp)
{
    return cp < 0x20 || (cp >= 0x7F && cp <= 0x9F);
}

void cli_put_text(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    if (!s) {
        fputs("(null)", f);
        return;
    }
    while (*p) {
        size_t n = utf8_len(p);
        if (n == 0 || is_control(utf8_decode(p, n))) {
            /* an invalid byte alone; a control whole (a C1 is two bytes) */
            size_t k = n ? n : 1;
            for (size_t i = 0; i < k; i++)
                fprintf(f, "\\x%02x", p[i]);
            p += k;
        } else if (*p == '\\') {
            fputs("\\\\", f); /* so that an escape in the output is one */
            p++;
        } else {
            fwrite(p, 1, n, f);
            p += n;
        }
    }
}

void cli_text_error(const char *fmt, ...)
{
    va_list ap;
    char small[512], *text = small;
    int len;

    va_start(ap, fmt);
    len = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (len < 0) {
        len = 0;
        small[0] = '\0';
    }
    if ((size_t)len >= sizeof(small)) {
        char *big = malloc((size_t)len + 1);
        if (big) {
            va_start(ap, fmt);
            vsnprintf(big, (size_t)len + 1, fmt, ap);
            va_end(ap);
            text = big;
        }
    }
    fputs("lethe: ", stderr);
    cli_put_text(stderr, text);
    fputc('\n', stderr);
    if (text != small)
        free(text);
}

/* A message for people, on stderr, after "lethe: ". */
void cli_error(const char *fmt, ...)
{
    va_list ap;
    fputs("lethe: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void json_put_string(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    fputc('"', f);
    while (p && *p) {
        size_t n = utf8_len(p);
        unsigned long cp = n ? utf8_decode(p, n) : 0;
        if (n == 0) {
            fprintf(f, "\\u%04x", *p); /* a byte that is not UTF-8, as its Latin-1 */
            p++;
            continue;
        }
        if (cp == '"' || cp == '\\')
            fprintf(f, "\\%c", (int)cp);
        else if (is_control(cp) || cp == 0x2028 || cp == 0x2029)
            /* controls, and the two separators JavaScript ends lines at */
            fprintf(f, "\\u%04lx", cp);
        else
            fwrite(p, 1, n, f);
        p += n;
    }
    fputc('"', f);
}

/* ------------------------------------------------------------------ */
/* The JSON objects that the CLI's --json and lethe serve both write:  */
/* one shape per object.                                               */
/* ------------------------------------------------------------------ */

void json_put_forget(FILE *f, const char *kind, int dry_run, int erased,
                     const lethe_forget_result *x, const char *receipt, const char *matched)
{
    fprintf(f,
            "{\"kind\":\"%s\",\"dry_run\":%s,\"erased\":%s,\"photos\":%llu,"
            "\"provenance\":%llu,\"faces\":%llu,\"templates\":%llu,\"undated_kept\":%llu,"
            "\"digest_before\":\"%s\",\"digest_after\":\"%s\",\"needs_confirmation\":",
            kind, dry_run ? "true" : "false", erased ? "true" : "false",
            (unsigned long long)x->photos, (unsigned long long)x->provenance,
            (unsigned long long)x->faces, (unsigned long long)x->templates,
            (unsigned long long)x->undated_kept, x->digest_before, x->digest_after);
    if (x->wide)
        json_put_string(f, x->wide);
    else
        fputs("null", f);
    if (receipt && x->receipt_hash[0])
        fprintf(f, ",\"receipt_hash\":\"%s\"", x->receipt_hash);
    else
        fputs(",\"receipt_hash\":null", f);
    fprintf(f, ",\"receipt\":%s", receipt ? receipt : "null");
    if (matched)
        fprintf(f, ",\"matched\":%s", matched);
    fputc('}', f);
}

void json_put_model(FILE *f, const lethe_model_info *x)
{
    const char *state = x->retired_at[0] ? "retired" : x->shipped ? "current" : "other";
    /* model fields are [A-Za-z0-9-_.+] (lethe_model_parse): no escaping */
    fprintf(f,
            "{\"id\":%lld,\"name\":\"%s\",\"version\":\"%s\",\"weights\":\"%s\","
            "\"precision\":\"%s\",\"first_used\":\"%s\",\"retired_at\":%s%s%s,"
            "\"templates\":%llu,\"faces\":%llu,\"state\":\"%s\"}",
            (long long)x->id, x->model.name, x->model.version, x->model.weights,
            x->model.precision, x->first_used, x->retired_at[0] ? "\"" : "",
            x->retired_at[0] ? x->retired_at : "null", x->retired_at[0] ? "\"" : "",
            (unsigned long long)x->templates, (unsigned long long)x->faces, state);
}

void json_put_policy_check(FILE *f, const char *jurisdiction, const char *consent, int allowed,
                           const char *rule)
{
    fputs("{\"jurisdiction\":", f);
    json_put_string(f, jurisdiction);
    fputs(",\"consent\":", f);
    json_put_string(f, consent);
    fprintf(f, ",\"allowed\":%s,\"rule\":", allowed ? "true" : "false");
    json_put_string(f, rule ? rule : "");
    fputc('}', f);
}

void json_put_request(FILE *f, const lethe_request_info *q)
{
    const char *by = lethe_request_by_name(q->by);
    fprintf(f, "{\"number\":%lld,\"status\":\"%s\",\"action\":\"%s\",\"by\":\"%s\","
               "\"filed_at\":\"%s\",\"decided_at\":",
            (long long)q->number, q->status,
            q->action == LETHE_REQUEST_OPTOUT ? "optout" : "erase", by ? by : "", q->filed_at);
    q->decided_at[0] ? fprintf(f, "\"%s\"", q->decided_at) : fputs("null", f);
    fputs(",\"decided_by\":", f);
    json_put_string(f, q->decided_by);
    fputs(",\"note\":", f);
    json_put_string(f, q->note);
    fprintf(f, ",\"erased\":{\"photos\":%llu,\"faces\":%llu,\"templates\":%llu},"
               "\"receipt_hash\":",
            (unsigned long long)q->photos, (unsigned long long)q->faces,
            (unsigned long long)q->templates);
    q->receipt_hash[0] ? fprintf(f, "\"%s\"", q->receipt_hash) : fputs("null", f);
    fputs(",\"selector\":", f);
    q->selector ? json_put_string(f, q->selector) : (void)fputs("null", f);
    fputc('}', f);
}

void json_put_request_auto(FILE *f, unsigned mask)
{
    for (int k = 0; k < LETHE_REQUEST_KINDS; k++)
        fprintf(f, "%s\"%s\":%s", k ? "," : "{", lethe_request_by_name(k),
                mask & (1u << k) ? "true" : "false");
    fputc('}', f);
}

void json_put_match(FILE *f, const lethe_match *m)
{
    static const char *const names[] = {"path",   "photo_id", "url",          "uploader",
                                        "source", "license",  "jurisdiction", "consent",
                                        "collected_at"};
    const char *vals[] = {m->prov.path,    m->prov.photo_id, m->prov.url,
                          m->prov.uploader, m->prov.source,  m->prov.license,
                          m->prov.jurisdiction, m->prov.consent, m->prov.collected_at};
    fprintf(f, "{\"distance\":%.6f,\"same\":%s,", (double)m->distance,
            m->distance <= lethe_descriptor_threshold() ? "true" : "false");
    /* a fused probe's evidence is not calibrated: null, never a guess (nor
     * "nan", which is no JSON) */
    if (isnan(m->fmr) || isnan(m->strangers))
        fputs("\"fmr\":null,\"strangers\":null,", f);
    else
        fprintf(f, "\"fmr\":%.4g,\"strangers\":%.4g,", m->fmr, m->strangers);
    fprintf(f, "\"tier\":\"%s\",\"photo\":\"%s\",\"face\":%lld,", lethe_tier_name(m->tier),
            m->photo, (long long)m->face);
    if (isnan(m->box[0]))
        fputs("\"box\":null", f);
    else
        fprintf(f, "\"box\":[%.1f,%.1f,%.1f,%.1f]", (double)m->box[0], (double)m->box[1],
                (double)m->box[2], (double)m->box[3]);
    for (int i = 0; i < 9; i++) {
        fprintf(f, ",\"%s\":", names[i]);
        json_put_string(f, vals[i] ? vals[i] : "");
    }
    fprintf(f, ",\"provenance_count\":%d}", m->provenance_count);
}

void json_put_ingest(FILE *f, const lethe_ingest_stats *st, double seconds, int complete,
                     const lethe_engine *engine, const ingest_error *errs, size_t nerr)
{
    fprintf(f,
            "{\"seen\":%llu,\"added\":%llu,\"duplicates\":%llu,\"provenance\":%llu,"
            "\"faces\":%llu,\"templates\":%llu,\"refused\":%llu,\"withdrawn\":%llu,"
            "\"no_face\":%llu,\"opted_out\":%llu,\"opted_out_faces\":%llu,"
            "\"uncommitted\":%llu,\"seconds\":%.3f,\"photos_per_second\":%.2f,"
            "\"complete\":%s",
            (unsigned long long)st->seen, (unsigned long long)st->added,
            (unsigned long long)st->duplicates, (unsigned long long)st->provenance,
            (unsigned long long)st->faces, (unsigned long long)st->templates,
            (unsigned long long)st->refused, (unsigned long long)st->withdrawn,
            (unsigned long long)st->no_face, (unsigned long long)st->opted_out,
            (unsigned long long)st->opted_out_faces, (unsigned long long)st->uncommitted,
            seconds, seconds > 0 ? (double)st->seen / seconds : 0.0,
            complete ? "true" : "false");
    /* what the templates were computed with (no engine: raw descriptors) */
    if (engine)
        fprintf(f, ",\"precision\":\"%s\",\"kernels\":\"%s\"",
                lethe_engine_precision(engine), lethe_engine_kernels(engine));
    fputs(",\"errors\":[", f);
    for (size_t i = 0; i < nerr; i++) {
        fprintf(f, "%s{\"file\":", i ? "," : "");
        json_put_string(f, errs[i].input ? errs[i].input : "");
        if (errs[i].line)
            fprintf(f, ",\"line\":%zu", errs[i].line);
        fputs(",\"reason\":", f);
        json_put_string(f, errs[i].reason ? errs[i].reason : "");
        fputc('}', f);
    }
    fputs("]}", f);
}

void json_put_log_verify(FILE *f, int intact, uint64_t entries, uint64_t first_bad,
                         const char *error)
{
    fprintf(f, "{\"intact\":%s,\"entries\":%llu,\"first_bad\":", intact ? "true" : "false",
            (unsigned long long)entries);
    if (intact) {
        fputs("null,\"error\":null}", f);
        return;
    }
    fprintf(f, "%llu,\"error\":", (unsigned long long)first_bad);
    json_put_string(f, error ? error : "");
    fputc('}', f);
}

void search_bounds_from(const lethe_search_options *o, uint64_t gallery, search_bounds *b)
{
    float t;
    b->gallery = gallery;
    b->fpir = o->fpir;
    b->threshold = o->threshold;
    if (o->fpir > 0 && lethe_calibration_threshold(o->fpir, gallery, &t) == LETHE_OK &&
        t < b->threshold)
        b->threshold = t;
}

int search_bounds_get(lethe_store *s, const lethe_search_options *o, search_bounds *b)
{
    uint64_t gallery = 0;
    int rc = lethe_search_gallery(s, o->model, &gallery);
    if (rc == LETHE_OK)
        search_bounds_from(o, gallery, b);
    return rc;
}

void json_put_search(FILE *f, int query, const char *source, int fused, const search_bounds *b,
                     const lethe_match *m, size_t n)
{
    fprintf(f, "{\"query\":%d,\"source\":", query);
    json_put_string(f, source);
    if (fused)
        fprintf(f, ",\"fused\":%d", fused);
    fprintf(f, ",\"gallery\":%llu,\"fpir\":", (unsigned long long)b->gallery);
    b->fpir > 0 ? fprintf(f, "%g", b->fpir) : fputs("null", f);
    isfinite(b->threshold) ? fprintf(f, ",\"threshold\":%.6f", (double)b->threshold)
                           : fputs(",\"threshold\":null", f);
    fputs(",\"matches\":[", f);
    for (size_t k = 0; k < n; k++) {
        if (k)
            fputc(',', f);
        json_put_match(f, &m[k]);
    }
    fputs("]}", f);
}
