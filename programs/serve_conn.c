/*
 * serve_conn.c: a deadline for a request's headers. libmicrohttpd closes a
 * connection idle for --timeout seconds, but a client that sends its
 * headers a byte a second is never idle, and would hold its connection
 * (and its 64 KiB of header memory) for as long as it likes; enough of
 * them fill --max-connections. So every open connection is watched from
 * the moment it opens (or its last answer went out) until its request's
 * headers are all in (serve_access_cb's first call); one that takes longer
 * than --header-timeout seconds is shut down by a watcher thread, and
 * libmicrohttpd, reading the end of its stream, closes it.
 */
#include <microhttpd.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "serve.h"

typedef struct watched {
    struct watched *prev, *next;
    int fd;
    double since;     /* opened, or answered its last request */
    int in_request;   /* headers in, the request not yet done */
    int cut;          /* shut down already */
} watched;

struct conn_watch {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    watched head;     /* a ring: head.next is the oldest */
    double limit;
    int stop;
    pthread_t thread;
    long open;
};

static void *watcher(void *arg)
{
    conn_watch *w = arg;
    pthread_mutex_lock(&w->mu);
    while (!w->stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 250000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&w->cv, &w->mu, &until);
        double now = serve_now();
        for (watched *c = w->head.next; c != &w->head; c = c->next)
            if (!c->in_request && !c->cut && now - c->since > w->limit) {
                /* under mu: the connection cannot be closed (and its fd
                 * reused) meanwhile, as its NOTIFY_CLOSED takes mu */
                shutdown(c->fd, SHUT_RDWR);
                c->cut = 1;
            }
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

conn_watch *conn_watch_new(double limit)
{
    conn_watch *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->head.next = w->head.prev = &w->head;
    w->limit = limit;
    if (pthread_create(&w->thread, NULL, watcher, w) != 0) {
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv);
        free(w);
        return NULL;
    }
    return w;
}

void conn_watch_free(conn_watch *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    while (w->head.next != &w->head) {
        watched *c = w->head.next;
        c->prev->next = c->next;
        c->next->prev = c->prev;
        free(c);
    }
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
}

long conn_watch_open(conn_watch *w)
{
    pthread_mutex_lock(&w->mu);
    long n = w->open;
    pthread_mutex_unlock(&w->mu);
    return n;
}

void serve_conn_cb(void *cls, struct MHD_Connection *conn, void **socket_context,
                   enum MHD_ConnectionNotificationCode code)
{
    server *sv = cls;
    conn_watch *w = sv->watch;
    watched *c = *socket_context;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *info =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (!info || !(c = calloc(1, sizeof(*c))))
            return; /* unwatched: still bounded by --timeout of inactivity */
        c->fd = info->connect_fd;
        c->since = serve_now();
        pthread_mutex_lock(&w->mu);
        c->prev = w->head.prev;
        c->next = &w->head;
        c->prev->next = c;
        w->head.prev = c;
        w->open++;
        pthread_mutex_unlock(&w->mu);
        *socket_context = c;
    } else if (c) {
        pthread_mutex_lock(&w->mu);
        c->prev->next = c->next;
        c->next->prev = c->prev;
        w->open--;
        pthread_mutex_unlock(&w->mu);
        free(c);
        *socket_context = NULL;
    }
}

/* The request's headers are in (1), or its answer is done (0). */
void serve_conn_request(server *sv, struct MHD_Connection *conn, int in_request)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    watched *c = info ? info->socket_context : NULL;
    if (!c)
        return;
    pthread_mutex_lock(&sv->watch->mu);
    c->in_request = in_request;
    c->since = serve_now();
    pthread_mutex_unlock(&sv->watch->mu);
}
