/*
 * serve_page_html.c: the HTML of the data-subject page (docs/page.md) and
 * its stylesheet. Plain forms: nothing needs JavaScript, nothing is loaded
 * from elsewhere (the Content-Security-Policy allows the page's own
 * stylesheet and nothing else). Every input has a label, radio buttons a
 * fieldset and legend, focus is always visible, and the colours keep a
 * contrast of at least 4.5:1. Everything that came from outside (values
 * looked up, provenance, notes) goes through html_put.
 */
#include <stdio.h>
#include <string.h>

#include "serve_page.h"

const char page_css[] =
    ":root{color-scheme:light}\n"
    "body{font:1.05rem/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;color:#1b1b1b;"
    "background:#fff;margin:0}\n"
    "header,main,footer{max-width:46rem;margin:0 auto;padding:0 1rem}\n"
    "header{border-bottom:3px solid #1d4ed8;padding-bottom:.5rem}\n"
    "h1{font-size:1.6rem;margin:1rem 0 .25rem}h2{font-size:1.25rem;margin-top:2rem}\n"
    "section{border-top:1px solid #c8c8c8;padding-bottom:1rem}\n"
    "label,legend{display:block;font-weight:600;margin:.75rem 0 .25rem}\n"
    "fieldset{border:1px solid #8a8a8a;border-radius:4px;margin:.75rem 0}\n"
    "fieldset label{display:inline;font-weight:400;margin-right:1rem}\n"
    "input[type=text],select,textarea{font:inherit;width:100%;box-sizing:border-box;"
    "padding:.4rem;border:1px solid #595959;border-radius:4px}\n"
    "textarea{min-height:6rem;font-family:ui-monospace,monospace;font-size:.9rem}\n"
    "button{font:inherit;font-weight:600;color:#fff;background:#1d4ed8;border:0;"
    "border-radius:4px;padding:.5rem 1rem;margin-top:.75rem;cursor:pointer}\n"
    "button:hover{background:#1e3a8a}\n"
    "a{color:#1a4fa0}\n"
    ":focus-visible{outline:3px solid #b45309;outline-offset:2px}\n"
    ".hint{color:#4a4a4a;font-size:.95rem;margin:.25rem 0}\n"
    ".id{font-family:ui-monospace,monospace;font-size:1rem;background:#f1f3f9;padding:.5rem;"
    "border:1px solid #8a8a8a;border-radius:4px;word-break:break-all}\n"
    ".ok{border-left:6px solid #15803d;padding-left:.75rem}\n"
    ".bad{border-left:6px solid #b91c1c;padding-left:.75rem}\n"
    "table{border-collapse:collapse;width:100%;margin:.5rem 0}\n"
    "th,td{text-align:left;vertical-align:top;border-bottom:1px solid #d0d0d0;padding:.3rem;"
    "word-break:break-word}\n"
    "th{width:11rem;font-weight:600}\n"
    ".skip{position:absolute;left:-999px}.skip:focus{left:1rem;top:1rem;background:#fff}\n";

void html_put(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        switch (c) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&#39;", f); break;
        default:
            if (c < 0x20 || c == 0x7f)
                fputs("\xef\xbf\xbd", f);
            else
                fputc(c, f);
        }
    }
}

void page_open(FILE *f, const char *title)
{
    fputs("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
          "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n<title>",
          f);
    html_put(f, title);
    fputs(" - what this store holds about you</title>\n"
          "<link rel=\"stylesheet\" href=\"/page.css\">\n</head>\n<body>\n"
          "<a class=\"skip\" href=\"#main\">Skip to the content</a>\n"
          "<header><p><a href=\"/\">What this store holds about you</a></p><h1>", f);
    html_put(f, title);
    fputs("</h1></header>\n<main id=\"main\">\n", f);
}

void page_close(FILE *f)
{
    fputs("</main>\n<footer><p class=\"hint\">Served by lethe, a face recognition database "
          "that keeps provenance and consent with every face and can forget. This page sets no "
          "cookie and runs no script.</p></footer>\n</body>\n</html>\n", f);
}

void page_message(FILE *f, const char *title, const char *text)
{
    page_open(f, title);
    fputs("<div class=\"bad\" role=\"alert\"><p>", f);
    html_put(f, text);
    fputs("</p></div>\n<p><a href=\"/\">Back to the page</a></p>\n", f);
    page_close(f);
}

static void home_lookup(FILE *f)
{
    fputs("<section aria-labelledby=\"h-look\">\n<h2 id=\"h-look\">1. What do you hold about "
          "me?</h2>\n<p>Give your account, a link to a photo, or a photo's id. The answer lists "
          "the photos held for it: where each came from, on what consent basis, whether a face "
          "template was computed, and how many searches returned it for which stated purposes "
          "(never who searched).</p>\n"
          "<form method=\"get\" action=\"/lookup\">\n"
          "<label for=\"look-by\">Look up by</label>\n<select id=\"look-by\" name=\"by\">"
          "<option value=\"uploader\">account (the uploader's name)</option>"
          "<option value=\"url\">link (the photo's URL)</option>"
          "<option value=\"photo-id\">photo id (or its SHA-256)</option></select>\n"
          "<label for=\"look-value\">Account, link or id</label>\n"
          "<input type=\"text\" id=\"look-value\" name=\"value\" required maxlength=\"4096\">\n"
          "<button type=\"submit\">Look up</button>\n</form>\n"
          "<form method=\"post\" action=\"/lookup\" enctype=\"multipart/form-data\">\n"
          "<label for=\"look-photo\">Or the exact photo file</label>\n"
          "<input type=\"file\" id=\"look-photo\" name=\"photo\" required "
          "aria-describedby=\"look-photo-hint\">\n"
          "<p class=\"hint\" id=\"look-photo-hint\">The file is only hashed (SHA-256) to find "
          "the very same file: it is not analysed and not kept.</p>\n"
          "<button type=\"submit\">Look up this file</button>\n</form>\n</section>\n",
          f);
}

static void action_fieldset(FILE *f, const char *prefix, int optout_first)
{
    fprintf(f, "<fieldset><legend>What should happen</legend>\n"
               "<input type=\"radio\" id=\"%s-erase\" name=\"action\" value=\"erase\"%s>"
               "<label for=\"%s-erase\">Erase what is held</label>\n"
               "<input type=\"radio\" id=\"%s-optout\" name=\"action\" value=\"optout\"%s>"
               "<label for=\"%s-optout\">Erase it and keep it out from now on (opt out)</label>\n"
               "</fieldset>\n",
            prefix, optout_first ? "" : " checked", prefix, prefix,
            optout_first ? " checked" : "", prefix);
}

static void home_request(FILE *f, int faces)
{
    fputs("<section aria-labelledby=\"h-req\">\n<h2 id=\"h-req\">2. Ask for erasure or "
          "opt-out</h2>\n<p>You get a request id: keep it, it is the only way to see what became "
          "of the request and to download its signed receipt.</p>\n"
          "<form method=\"post\" action=\"/request\" enctype=\"multipart/form-data\">\n", f);
    action_fieldset(f, "req", 0);
    fputs("<label for=\"req-by\">Select by</label>\n<select id=\"req-by\" name=\"by\">"
          "<option value=\"uploader\">account (the uploader's name)</option>"
          "<option value=\"url\">link (the photo's URL)</option>"
          "<option value=\"photo-id\">photo id (or its SHA-256)</option>"
          "<option value=\"file\">the exact photo file (below)</option></select>\n"
          "<label for=\"req-value\">Account, link or id</label>\n"
          "<input type=\"text\" id=\"req-value\" name=\"value\" maxlength=\"4096\">\n"
          "<label for=\"req-photo\">The exact photo file (to select by file)</label>\n"
          "<input type=\"file\" id=\"req-photo\" name=\"photo\">\n"
          "<button type=\"submit\">File the request</button>\n</form>\n", f);
    if (!faces) {
        fputs("<p class=\"hint\">Requests by face are not taken here at the moment.</p>\n"
              "</section>\n", f);
        return;
    }
    fputs("<h3>By your face</h3>\n<p>Give a photo of your face. It is analysed once to compute "
          "a face descriptor, which finds your face in the store's photos when the request is "
          "approved; the photo is not kept. The answer never shows which photos matched, and "
          "does not confirm who you are: only how many faces were erased.</p>\n"
          "<form method=\"post\" action=\"/request\" enctype=\"multipart/form-data\">\n"
          "<input type=\"hidden\" name=\"by\" value=\"face\">\n", f);
    action_fieldset(f, "face", 1);
    fputs("<label for=\"face-photo\">A photo of your face</label>\n"
          "<input type=\"file\" id=\"face-photo\" name=\"photo\" accept=\"image/jpeg,image/png,"
          "image/webp\" required>\n<button type=\"submit\">Opt out by face</button>\n</form>\n"
          "</section>\n", f);
}

static void home_check(FILE *f)
{
    fputs("<section aria-labelledby=\"h-check\">\n<h2 id=\"h-check\">3. Check a request</h2>\n"
          "<form method=\"post\" action=\"/status\" enctype=\"multipart/form-data\">\n"
          "<label for=\"check-id\">Request id</label>\n"
          "<input type=\"text\" id=\"check-id\" name=\"id\" required maxlength=\"64\" "
          "autocomplete=\"off\" spellcheck=\"false\" placeholder=\"rq_...\">\n"
          "<button type=\"submit\">Check</button>\n</form>\n</section>\n"
          "<section aria-labelledby=\"h-verify\">\n<h2 id=\"h-verify\">4. Verify a receipt</h2>\n"
          "<p>A receipt is signed by this store: check that it is unaltered and that this store "
          "issued it.</p>\n"
          "<form method=\"post\" action=\"/verify\" enctype=\"multipart/form-data\">\n"
          "<label for=\"verify-file\">The receipt file</label>\n"
          "<input type=\"file\" id=\"verify-file\" name=\"receipt\" accept=\"application/json,"
          ".json\">\n<label for=\"verify-text\">Or paste it</label>\n"
          "<textarea id=\"verify-text\" name=\"receipt\" maxlength=\"65536\"></textarea>\n"
          "<button type=\"submit\">Verify</button>\n</form>\n</section>\n", f);
}

void page_home(FILE *f, int faces)
{
    page_open(f, "Your photos in this store");
    fputs("<p>This store holds photos and face templates. Anyone may ask what it holds for an "
          "account, a link, a photo id or a photo file, and ask for it to be erased. No "
          "sign-in, no cookie, no script.</p>\n", f);
    home_lookup(f);
    home_request(f, faces);
    home_check(f);
    page_close(f);
}

/* One row of a table, the value escaped ("-" when empty). */
static void row(FILE *f, const char *name, const char *v)
{
    fprintf(f, "<tr><th scope=\"row\">%s</th><td>", name);
    html_put(f, v && *v ? v : "-");
    fputs("</td></tr>\n", f);
}

static void lookup_photo(FILE *f, const lethe_subject_photo *p, size_t i)
{
    char n[96];
    fprintf(f, "<article aria-labelledby=\"photo-%zu\">\n<h3 id=\"photo-%zu\">Photo %zu</h3>\n"
               "<table>\n", i, i, i + 1);
    row(f, "SHA-256", p->photo);
    row(f, "Held since", p->added_at);
    snprintf(n, sizeof(n), "%d", p->faces);
    row(f, "Faces found", n);
    row(f, "Face template", p->templates > 0 ? "yes: a face template exists"
                          : !strcmp(p->status, "refused")
                              ? "no: the consent policy does not allow one"
                              : "no");
    fputs("</table>\n", f);
    for (int k = 0; k < p->nprov; k++) {
        const lethe_provenance *v = &p->prov[k];
        fprintf(f, "<h4>Where it came from (%d of %d)</h4>\n<table>\n", k + 1, p->nprov);
        row(f, "Source", v->source);
        row(f, "Account", v->uploader);
        row(f, "Link", v->url);
        row(f, "Photo id", v->photo_id);
        row(f, "Licence", v->license);
        row(f, "Jurisdiction", v->jurisdiction);
        row(f, "Consent basis", v->consent && *v->consent ? v->consent : "none");
        row(f, "Collected", v->collected_at);
        fputs("</table>\n", f);
    }
    if (!p->npurposes) {
        fputs("<p>No search has returned this photo.</p>\n", f);
    } else {
        fputs("<h4>Searches that returned it</h4>\n<table>\n<tr><th scope=\"col\">Stated "
              "purpose</th><th scope=\"col\">Searches</th><th scope=\"col\">Latest</th></tr>\n",
              f);
        for (int k = 0; k < p->npurposes; k++) {
            fputs("<tr><td>", f);
            html_put(f, p->purposes[k].purpose);
            fprintf(f, "</td><td>%llu</td><td>", (unsigned long long)p->purposes[k].searches);
            html_put(f, p->purposes[k].last);
            fputs("</td></tr>\n", f);
        }
        fputs("</table>\n", f);
    }
    fputs("</article>\n", f);
}

void page_lookup(FILE *f, const char *what, const char *value, const lethe_subject_photo *p,
                 size_t n)
{
    page_open(f, "What this store holds");
    fprintf(f, "<p role=\"status\"><strong>%zu photo%s</strong> held for the %s ", n,
            n == 1 ? "" : "s", what);
    fputs("<span class=\"id\">", f);
    html_put(f, value);
    fputs("</span>.</p>\n", f);
    for (size_t i = 0; i < n; i++)
        lookup_photo(f, &p[i], i);
    fputs("<p>To have them erased, <a href=\"/#h-req\">file a request</a>.</p>\n", f);
    page_close(f);
}

static void request_state(FILE *f, const lethe_request_info *q)
{
    char n[160];
    static const char *const by[] = {"account", "link", "photo id", "exact photo file", "face"};
    fputs("<table>\n", f);
    snprintf(n, sizeof(n), "%s, by %s", q->action == LETHE_REQUEST_OPTOUT
                                            ? "opt out (erase and keep out)" : "erase",
             q->by >= 0 && q->by < LETHE_REQUEST_KINDS ? by[q->by] : "?");
    row(f, "Request", n);
    row(f, "Status", !strcmp(q->status, "done")      ? "done: erased"
                     : !strcmp(q->status, "denied") ? "denied"
                                                     : "pending: waits for a decision");
    row(f, "Filed", q->filed_at);
    row(f, "Decided", q->decided_at);
    row(f, "Note", q->note);
    if (!strcmp(q->status, "done")) {
        snprintf(n, sizeof(n), "%llu photos, %llu faces, %llu face templates",
                 (unsigned long long)q->photos, (unsigned long long)q->faces,
                 (unsigned long long)q->templates);
        row(f, "Erased", n);
        row(f, "Receipt", q->receipt_hash);
    }
    fputs("</table>\n", f);
}

void page_request(FILE *f, const char *id, const lethe_request_info *q, int just_filed,
                  int has_receipt)
{
    page_open(f, just_filed ? "Your request is filed" : "Your request");
    if (just_filed) {
        fputs("<div class=\"ok\" role=\"status\"><p>Your request id is:</p>\n<p class=\"id\" "
              "id=\"request-id\">", f);
        html_put(f, id);
        fputs("</p>\n<p>Keep it (copy it, or save this page): it is the only way to see what "
              "becomes of the request and to download its receipt. The store keeps only a "
              "keyed hash of it and cannot show it again.</p></div>\n", f);
    }
    request_state(f, q);
    if (has_receipt) {
        fputs("<form method=\"post\" action=\"/receipt\" enctype=\"multipart/form-data\">\n"
              "<input type=\"hidden\" name=\"id\" value=\"", f);
        html_put(f, id);
        fputs("\">\n<button type=\"submit\">Download the signed receipt</button>\n</form>\n"
              "<p class=\"hint\">The receipt names what was erased only by keyed hashes and "
              "counts; <a href=\"/#h-verify\">verify it</a> here at any time.</p>\n", f);
    } else if (!strcmp(q->status, "pending")) {
        fputs("<p>Check again later with your request id.</p>\n", f);
    }
    page_close(f);
}

void page_verified(FILE *f, int signature_ok, int issued, const char *why)
{
    page_open(f, "Receipt check");
    if (signature_ok && issued)
        fputs("<div class=\"ok\" role=\"status\"><p><strong>Valid.</strong> The receipt is "
              "unaltered, signed with this store's key, and recorded in its log.</p></div>\n",
              f);
    else {
        fprintf(f, "<div class=\"bad\" role=\"alert\"><p><strong>Not valid.</strong> %s</p>"
                   "<p>", signature_ok ? "The signature holds, but this store did not issue "
                                         "it." : "The receipt is altered or malformed.");
        html_put(f, why);
        fputs("</p></div>\n", f);
    }
    fputs("<p><a href=\"/\">Back to the page</a></p>\n", f);
    page_close(f);
}
