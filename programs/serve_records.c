/*
 * serve_records.c: what an auditor or an operator reads or decides beside
 * searching and erasing: an issued receipt read back by its hash, the
 * models of the templates and the retirement of one, and a single decision
 * of the consent policy. Each is one library call under the server's lock,
 * answered with the JSON object the CLI's --json writes (cli_text.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "serve.h"
#include "serve_json.h"

/* GET /v1/receipts/{hash}: the receipt, byte for byte. */
void h_receipt_get(request *req, reply *r)
{
    form f = {.nnames = 0};
    char *receipt = NULL, msg[512];
    if (query_only(req, r, &f) == 0) {
        server_lock(req->sv);
        int rc = lethe_receipt_get(req->sv->store, route_param(req), &receipt);
        if (rc != LETHE_OK)
            store_message(req, msg, sizeof(msg));
        server_unlock(req->sv);
        if (rc != LETHE_OK)
            reply_lethe(r, rc, msg);
        else
            reply_document(r, receipt);
    }
    form_free(&f);
}

/* GET /v1/models: {"models": [each as lethe model list --json]}. */
void h_models(request *req, reply *r)
{
    form f = {.nnames = 0};
    lethe_model_info *m = NULL;
    size_t n = 0;
    char msg[512];
    jsbuf b;
    if (query_only(req, r, &f) < 0)
        goto out;
    server_lock(req->sv);
    int rc = lethe_model_list(req->sv->store, &m, &n);
    if (rc != LETHE_OK)
        store_message(req, msg, sizeof(msg));
    server_unlock(req->sv);
    if (rc != LETHE_OK) {
        reply_lethe(r, rc, msg);
        goto out;
    }
    if (jb_open(&b) < 0) {
        reply_json(r, 503, NULL);
        goto out;
    }
    fputs("{\"models\":[", b.f);
    for (size_t i = 0; i < n; i++) {
        if (i)
            fputc(',', b.f);
        json_put_model(b.f, &m[i]);
    }
    fputs("]}\n", b.f);
    reply_json(r, 200, jb_close(&b));
out:
    lethe_free_models(m);
    form_free(&f);
}

/*
 * POST /v1/models/retire {"model", "dry_run", "confirm"}: every template
 * the model made erased, with a receipt (lethe_model_retire). It erases
 * everyone's templates, so it needs "confirm" as the CLI needs --yes: 409
 * with the counts inside the error otherwise.
 */
void h_model_retire(request *req, reply *r)
{
    static const char *const allowed[] = {"model", "dry_run", "confirm", NULL};
    sj_object o;
    const char *which;
    int dry, confirm;
    lethe_forget_result x;
    char *receipt = NULL, msg[512];
    jsbuf b;
    memset(&x, 0, sizeof(x));
    if (read_json(req, r, &o, allowed) < 0 || json_text(r, &o, "model", 1, &which) < 0 ||
        json_bool(r, &o, "dry_run", &dry) < 0 || json_bool(r, &o, "confirm", &confirm) < 0)
        goto out;
    unsigned flags = (dry ? LETHE_FORGET_DRY_RUN : 0) | (confirm ? LETHE_FORGET_CONFIRMED : 0);
    server_lock(req->sv);
    int rc = lethe_model_retire(req->sv->store, which, flags, req->actor, &x, &receipt);
    if (rc != LETHE_OK)
        store_message(req, msg, sizeof(msg));
    server_unlock(req->sv);
    if (rc != LETHE_OK && rc != LETHE_ERR_CONFIRM) {
        reply_lethe(r, rc, msg);
        goto out;
    }
    if (jb_open(&b) < 0) {
        reply_json(r, 503, NULL);
        goto out;
    }
    if (rc == LETHE_ERR_CONFIRM)
        fputs("\"dry_run\":", b.f);
    json_put_forget(b.f, "retire", dry || rc != LETHE_OK, receipt != NULL, &x, receipt, NULL);
    if (rc == LETHE_OK)
        fputc('\n', b.f);
    char *json = jb_close(&b);
    if (rc == LETHE_ERR_CONFIRM) {
        reply_error(r, 409, "confirmation_required", json,
                    "not retired: it erases every template the model made, everyone's; look "
                    "at the counts (\"dry_run\" here), then send the request again with "
                    "\"confirm\": true");
        free(json);
    } else {
        reply_json(r, 200, json);
    }
out:
    lethe_free_string(receipt);
    sj_free(&o);
}

/* GET /v1/policy/check?jurisdiction=J&consent=C: may a template be
 * computed for a photo from J on basis C, and which rule decides. */
void h_policy_check(request *req, reply *r)
{
    form f = {.names = {"jurisdiction", "consent"}, .nnames = 2};
    const char *rule = NULL;
    char msg[512];
    jsbuf b;
    if (query_only(req, r, &f) < 0)
        goto out;
    const char *j = form_get(&f, "jurisdiction"), *c = form_get(&f, "consent");
    if (!j || !*j || !c || !*c) {
        reply_error(r, 400, "bad_request", NULL,
                    "give ?jurisdiction= (default, EEA, a country such as GB or a subdivision "
                    "such as US-IL) and &consent= (explicit, public-license, none, withdrawn)");
        goto out;
    }
    server_lock(req->sv);
    int allowed = lethe_policy_check(req->sv->store, j, c, &rule);
    if (allowed < 0)
        store_message(req, msg, sizeof(msg));
    /* rule lives until the policy changes: written out under the lock */
    int opened = allowed >= 0 ? jb_open(&b) : -1;
    if (opened == 0) {
        json_put_policy_check(b.f, j, c, allowed, rule);
        fputc('\n', b.f);
    }
    server_unlock(req->sv);
    if (allowed < 0)
        reply_lethe(r, -allowed, msg);
    else if (opened < 0)
        reply_json(r, 503, NULL);
    else
        reply_json(r, 200, jb_close(&b));
out:
    form_free(&f);
}
