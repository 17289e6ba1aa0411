/*
 * datasheet.h: renders a store's datasheet, the document a customer auditing
 * a face vendor asks for (photos and faces by source, license, jurisdiction
 * and consent basis; templates refused by policy; searches by purpose and
 * actor; the consent policy in force; the audit log's integrity), from the
 * JSON the catalog produces into Markdown or one self-contained HTML page.
 *
 * The input is schema version 1 ("lethe_datasheet": 1):
 *
 *   generated_at                 string
 *   store        {path, format_version, created_at, model}
 *   totals       {photos, provenance_records, faces, templates,
 *                 photos_refused, photos_failed, photos_no_face, uploaders,
 *                 sources, searches, lookups, ingest_batches}
 *   by           {source, license, jurisdiction, consent}: each an array of
 *                 {key, photos, faces, templates, refused}
 *   policy       array of {key, allows: [string...]}
 *   searches     {by_purpose, by_actor}: each an array of
 *                 {key, searches, results}
 *   log          {entries, head, intact, first_bad (null or entry number)}
 *   integrity    (optional) {digest_matches: true or false}: false when the
 *                 catalog's content differs from the digest lethe keeps (it
 *                 was edited outside lethe); rendered as a warning
 *
 * Every count is a non-negative integer (at most 2^53). Arrays are rendered
 * in the order given. Keys are untrusted text: anything, including markup,
 * table syntax, newlines and invalid UTF-8; "" is shown as "(not given)".
 * Members not listed are ignored.
 */
#ifndef LETHE_DATASHEET_H
#define LETHE_DATASHEET_H

#include <stddef.h>

/*
 * Render the datasheet JSON json[0..len) as format "md" (Markdown), "html"
 * (one self-contained page: inline CSS, inline SVG charts, no scripts, no
 * external references) or "json" (the input itself, once it has been checked
 * against the schema). The output depends only on the input.
 *
 * On success returns LETHE_OK (0) and *out is a new NUL-terminated string
 * owned by the caller (release with free()). On failure returns a status,
 * sets *out to NULL and writes a NUL-terminated explanation into
 * err[0..errlen) (err may be NULL): LETHE_ERR_FORMAT for invalid JSON (with
 * line and column), a missing or mistyped field (named by its path, e.g.
 * "by.source[2].photos") or an unsupported schema version; LETHE_ERR_ARG for
 * an unknown format or a missing argument; LETHE_ERR_NOMEM for out of
 * memory.
 */
int datasheet_render(const char *json, size_t len, const char *format, char **out,
                     char *err, size_t errlen);

#endif
