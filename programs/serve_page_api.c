/*
 * serve_page_api.c: the endpoints a key with the erasure role (or admin)
 * decides data-subject requests with (docs/page.md, docs/serve.md):
 *   GET  /v1/requests[?pending=true]  the requests, with what pending ones select
 *   POST /v1/requests/approve         {"number", "confirm"}: erase, receipt
 *   POST /v1/requests/deny            {"number", "reason"}
 *   GET  /v1/requests/auto            the kinds approved at once
 *   PUT  /v1/requests/auto            {"KIND": true|false, ...} (admin)
 * The key's id is the actor the log records, as for every endpoint.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "serve_page.h"


void h_requests_list(request *req, reply *r)
{
    form f = {.names = {"pending"}, .nnames = 1};
    lethe_request_info *v = NULL;
    size_t n = 0;
    char msg[512];
    jsbuf b;
    if (form_read(req, &f, 1) < 0) {
        reply_error(r, f.error_status, "bad_request", NULL, "%s", f.error);
        form_free(&f);
        return;
    }
    const char *p = form_get(&f, "pending");
    int pending = p && (!strcmp(p, "true") || !strcmp(p, "1"));
    int bad = p && !pending && strcmp(p, "false") && strcmp(p, "0");
    form_free(&f);
    if (bad) {
        reply_error(r, 400, "bad_request", NULL, "pending must be true or false");
        return;
    }
    server_lock(req->sv);
    int rc = lethe_request_list(req->sv->store, pending, &v, &n);
    if (rc != LETHE_OK)
        snprintf(msg, sizeof(msg), "%s", lethe_store_errmsg(req->sv->store));
    server_unlock(req->sv);
    if (rc != LETHE_OK || jb_open(&b) < 0) {
        rc != LETHE_OK ? reply_lethe(r, rc, msg) : reply_json(r, 503, NULL);
        lethe_requests_free(v, n);
        return;
    }
    fputs("{\"requests\":[", b.f);
    for (size_t i = 0; i < n; i++) {
        if (i)
            fputc(',', b.f);
        json_put_request(b.f, &v[i]);
    }
    fputs("]}\n", b.f);
    lethe_requests_free(v, n);
    reply_json(r, 200, jb_close(&b));
}

/* {"number", and the other members named} from the body: 0 with *number
 * and *o (sj_free), or -1 with the 400. */
static int read_decision(request *req, reply *r, sj_object *o, const char *other, int64_t *number)
{
    char msg[256];
    int rc = sj_parse(req->body ? req->body : "", req->body_len, o, msg, sizeof(msg));
    if (rc < 0) {
        rc == -2 ? reply_json(r, 503, NULL)
                 : reply_error(r, 400, "bad_json", NULL, "the body is not acceptable JSON: %s",
                               msg);
        return -1;
    }
    for (int i = 0; i < o->n; i++)
        if (strcmp(o->m[i].name, "number") && strcmp(o->m[i].name, other)) {
            reply_error(r, 400, "bad_request", NULL, "unknown member \"%s\" (takes \"number\" "
                        "and \"%s\")", o->m[i].name, other);
            return -1;
        }
    const sj_member *m = sj_get(o, "number");
    if (!m || m->type != SJ_NUMBER || !(m->num >= 1 && m->num <= 9e15) ||
        m->num != floor(m->num)) {
        reply_error(r, 400, "bad_request", NULL, "\"number\" must be a request's number "
                                                 "(GET /v1/requests lists them)");
        return -1;
    }
    *number = (int64_t)m->num;
    return 0;
}

/* The request after a decision, as the answer. */
static void reply_request(reply *r, const lethe_request_info *q)
{
    jsbuf b;
    if (jb_open(&b) < 0) {
        reply_json(r, 503, NULL);
        return;
    }
    json_put_request(b.f, q);
    fputc('\n', b.f);
    reply_json(r, 200, jb_close(&b));
}

void h_requests_approve(request *req, reply *r)
{
    sj_object o;
    lethe_request_info info;
    int64_t number;
    char msg[512];
    if (read_decision(req, r, &o, "confirm", &number) == 0) {
        const sj_member *c = sj_get(&o, "confirm");
        if (c && c->type != SJ_BOOL && c->type != SJ_NULL) {
            reply_error(r, 400, "bad_request", NULL, "\"confirm\" must be true or false");
        } else {
            unsigned flags = c && c->type == SJ_BOOL && c->boolean ? LETHE_FORGET_CONFIRMED : 0;
            server_lock(req->sv);
            int rc = lethe_request_approve(req->sv->store, number, flags, req->actor, &info);
            if (rc != LETHE_OK)
                snprintf(msg, sizeof(msg), "%s", lethe_store_errmsg(req->sv->store));
            server_unlock(req->sv);
            rc == LETHE_OK ? reply_request(r, &info) : reply_lethe(r, rc, msg);
        }
    }
    sj_free(&o);
}

void h_requests_deny(request *req, reply *r)
{
    sj_object o;
    lethe_request_info *v = NULL;
    int64_t number;
    size_t n = 0;
    char msg[512], why[128];
    if (read_decision(req, r, &o, "reason", &number) == 0) {
        const sj_member *m = sj_get(&o, "reason");
        if (m && m->type != SJ_NULL && (m->type != SJ_STRING || !text_ok(m->str, why,
                                                                       sizeof(why)))) {
            reply_error(r, 400, "bad_request", NULL, "\"reason\" must be text");
        } else {
            const char *reason = m && m->type == SJ_STRING ? m->str : NULL;
            server_lock(req->sv);
            int rc = lethe_request_deny(req->sv->store, number, req->actor, reason);
            if (rc == LETHE_OK)
                rc = lethe_request_list(req->sv->store, 0, &v, &n);
            if (rc != LETHE_OK)
                snprintf(msg, sizeof(msg), "%s", lethe_store_errmsg(req->sv->store));
            server_unlock(req->sv);
            size_t i = 0;
            while (rc == LETHE_OK && i < n && v[i].number != number)
                i++;
            rc != LETHE_OK ? reply_lethe(r, rc, msg)
            : i < n        ? reply_request(r, &v[i])
                           : reply_error(r, 500, "internal", NULL, "the request is gone");
        }
    }
    lethe_requests_free(v, n);
    sj_free(&o);
}

/* {"uploader": bool, "url": ..., ...}: the operator's rules, as `lethe
 * request auto --json` shows them. Called with the server's lock held. */
static void reply_auto(request *req, reply *r, int rc)
{
    unsigned mask = 0;
    char msg[512];
    jsbuf b;
    if (rc == LETHE_OK)
        rc = lethe_request_auto_get(req->sv->store, &mask);
    if (rc != LETHE_OK) {
        store_message(req, msg, sizeof(msg));
        reply_lethe(r, rc, msg);
        return;
    }
    if (jb_open(&b) < 0) {
        reply_json(r, 503, NULL);
        return;
    }
    json_put_request_auto(b.f, mask);
    fputc('\n', b.f);
    reply_json(r, 200, jb_close(&b));
}

void h_requests_auto_get(request *req, reply *r)
{
    form f = {.nnames = 0};
    if (query_only(req, r, &f) == 0) {
        server_lock(req->sv);
        reply_auto(req, r, LETHE_OK);
        server_unlock(req->sv);
    }
    form_free(&f);
}

/* Each kind named is set (and logged, "request-auto"); the others are
 * left as they are. Every member is checked before any is set. */
void h_requests_auto_put(request *req, reply *r)
{
    const char *kinds[LETHE_REQUEST_KINDS + 1] = {NULL};
    int on[LETHE_REQUEST_KINDS], named = 0;
    sj_object o;
    for (int k = 0; k < LETHE_REQUEST_KINDS; k++)
        kinds[k] = lethe_request_by_name(k);
    if (read_json(req, r, &o, kinds) < 0)
        goto out;
    for (int k = 0; k < LETHE_REQUEST_KINDS; k++) {
        on[k] = -1;
        if (!sj_get(&o, kinds[k]))
            continue;
        if (sj_get(&o, kinds[k])->type == SJ_NULL) {
            reply_error(r, 400, "bad_request", NULL, "\"%s\" must be true or false, not null",
                        kinds[k]);
            goto out;
        }
        if (json_bool(r, &o, kinds[k], &on[k]) < 0)
            goto out;
        named++;
    }
    if (!named) {
        reply_error(r, 400, "bad_request", NULL,
                    "name at least one kind: {\"uploader\", \"url\", \"photo-id\", "
                    "\"file\", \"face\"}, each true (approved at once) or false (waits)");
        goto out;
    }
    server_lock(req->sv);
    int rc = LETHE_OK;
    for (int k = 0; rc == LETHE_OK && k < LETHE_REQUEST_KINDS; k++)
        if (on[k] >= 0)
            rc = lethe_request_auto_set(req->sv->store, k, on[k], req->actor);
    reply_auto(req, r, rc);
    server_unlock(req->sv);
out:
    sj_free(&o);
}
