/*
 * serve_page.h: the data-subject page of `lethe serve` (docs/page.md): the
 * only routes reachable without an API key, each rate limited per client
 * address (serve_page.c: routes, the limiter, the handlers;
 * serve_page_html.c: the HTML and its stylesheet), and the endpoints an
 * erasure key approves requests with (serve_page_api.c).
 */
#ifndef LETHE_SERVE_PAGE_H
#define LETHE_SERVE_PAGE_H

#include <stdio.h>

#include "serve.h"

/* Set up the page: requests a minute admitted per client address (IPv4
 * address, IPv6 /64), 0 turning the page off. 0, or -1 (out of memory). */
int page_configure(long per_minute, long requests_per_day);
void page_shutdown(void);

/*
 * The first look at a request (before any key is asked for): 0 when its
 * path is none of the page's (the API's rules apply); 1 when it is a page
 * route, admitted, *rt set; -1 with the reply in r (405, or 429 with
 * Retry-After over the client's rate).
 */
int page_first_look(request *req, const route **rt, reply *r);

/* The headers every page answer carries (name, value, ..., NULL). */
extern const char *const page_headers[];

/* /v1/requests endpoints (serve_page_api.c), in serve_routes. */
void h_requests_list(request *req, reply *r);
void h_requests_approve(request *req, reply *r);
void h_requests_deny(request *req, reply *r);
void h_requests_auto_get(request *req, reply *r);
void h_requests_auto_put(request *req, reply *r);

/* ------------------------------------------------ the HTML (serve_page_html.c) */

extern const char page_css[];
/* Text as HTML: & < > " ' escaped, control characters as U+FFFD. */
void html_put(FILE *f, const char *s);
void page_open(FILE *f, const char *title);
void page_close(FILE *f);
void page_home(FILE *f, int faces);
void page_message(FILE *f, const char *title, const char *text);
void page_lookup(FILE *f, const char *what, const char *value, const lethe_subject_photo *p,
                 size_t n);
/* A request's state: just filed (id shown), or as its requester checks it. */
void page_request(FILE *f, const char *id, const lethe_request_info *info, int just_filed,
                  int has_receipt);
void page_verified(FILE *f, int signature_ok, int issued, const char *why);

#endif
