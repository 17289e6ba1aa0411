/*
 * log.c: the audit log, a hash chain in the catalog's log table.
 *
 * Entry n holds: time, kind (init, ingest, search, lookup, policy, ...),
 * actor, purpose, query_hash (a hash keyed with the store's salt: never the
 * image, the descriptor or the looked-up identifier), result count, a JSON
 * detail of counts, prev (entry n-1's hash; 64 zeros for the first) and
 * hash = BLAKE2b-256 over all of these, each length-prefixed. The last
 * entry's "SEQ HASH" is kept twice: in meta.log_head, written in the same
 * transaction as the entry, and in the file log.head beside the catalog,
 * rewritten after each commit. Editing, deleting or reordering entries
 * breaks the chain; cutting entries off its end no longer matches the
 * heads. Verification runs beside other processes' commits: log.head is
 * read before the snapshot of the entries (what it names was committed
 * before it), and one that lags the snapshot is read again after it. An operator who wants protection against someone able to rewrite
 * the whole store copies `lethe log head` somewhere else from time to time.
 */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "access/apikey.h"
#include "store/head.h"
#include "store/share.h"
#include "store/store.h"
#include "util/strbuf.h"
#include "util/util.h"

#define ZERO_HASH "0000000000000000000000000000000000000000000000000000000000000000"

static void put_field(crypto_generichash_state *h, const char *s)
{
    uint64_t n = strlen(s ? s : "");
    crypto_generichash_update(h, (const uint8_t *)&n, sizeof(n));
    crypto_generichash_update(h, (const uint8_t *)(s ? s : ""), n);
}

static void entry_hash(int64_t seq, const char *time, const char *kind, const char *actor,
                       const char *purpose, const char *qhash, int64_t results,
                       const char *detail, const char *prev, char hex[65])
{
    crypto_generichash_state h;
    uint8_t out[32];
    crypto_generichash_init(&h, NULL, 0, sizeof(out));
    put_field(&h, "lethe-log-v1");
    crypto_generichash_update(&h, (const uint8_t *)&seq, sizeof(seq));
    put_field(&h, time);
    put_field(&h, kind);
    put_field(&h, actor);
    put_field(&h, purpose);
    put_field(&h, qhash);
    crypto_generichash_update(&h, (const uint8_t *)&results, sizeof(results));
    put_field(&h, detail);
    put_field(&h, prev);
    crypto_generichash_final(&h, out, sizeof(out));
    sodium_bin2hex(hex, 65, out, sizeof(out));
}

int store_log_append(lethe_store *s, const char *kind, const char *actor, const char *purpose,
                     const char *query_hash, int64_t results, const char *detail)
{
    sqlite3_stmt *st;
    char prev[65] = ZERO_HASH, hash[65], now[32], head[96];
    int64_t seq = 1;
    int rc = store_prepare(s, "SELECT seq, hash FROM log ORDER BY seq DESC LIMIT 1", &st);
    if (rc)
        return rc;
    /* the entry follows the last one: a failed read must not start a chain */
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        const char *h = (const char *)sqlite3_column_text(st, 1);
        seq = sqlite3_column_int64(st, 0) + 1;
        if (h)
            snprintf(prev, sizeof(prev), "%s", h);
        else
            rc = store_sqlfail(s, "reading the log's last entry");
    } else if (step != SQLITE_DONE) {
        rc = store_sqlfail(s, "reading the log's last entry");
    }
    sqlite3_finalize(st);
    if (rc)
        return rc;
    store_now(now);
    actor = actor ? actor : "";
    purpose = purpose ? purpose : "";
    query_hash = query_hash ? query_hash : "";
    detail = detail ? detail : "{}";
    entry_hash(seq, now, kind, actor, purpose, query_hash, results, detail, prev, hash);
    if ((rc = store_prepare(s, "INSERT INTO log(seq, time, kind, actor, purpose, query_hash, "
                               "results, detail, prev, hash) VALUES (?,?,?,?,?,?,?,?,?,?)",
                            &st)))
        return rc;
    sqlite3_bind_int64(st, 1, seq);
    sqlite3_bind_text(st, 2, now, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, actor, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, purpose, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, query_hash, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, results);
    sqlite3_bind_text(st, 8, detail, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 9, prev, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 10, hash, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = store_sqlfail(s, "appending to the log");
    sqlite3_finalize(st);
    if (rc)
        return rc;
    snprintf(head, sizeof(head), "%lld %s", (long long)seq, hash);
    if ((rc = store_prepare(s, "INSERT OR REPLACE INTO meta(key, value) VALUES ('log_head', ?)",
                            &st)))
        return rc;
    sqlite3_bind_text(st, 1, head, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = store_sqlfail(s, "writing the log head");
    sqlite3_finalize(st);
    return rc;
}

static int read_meta_head(lethe_store *s, char *out, size_t n)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s, "SELECT value FROM meta WHERE key = 'log_head'", &st);
    if (rc)
        return rc;
    out[0] = 0;
    /* empty when there is no head (a damaged catalog), but a failed read
     * is an error: it says nothing about the head */
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_TEXT)
        snprintf(out, n, "%s", (const char *)sqlite3_column_text(st, 0));
    else if (step != SQLITE_ROW && step != SQLITE_DONE)
        rc = store_sqlfail(s, "reading the log head");
    sqlite3_finalize(st);
    return rc;
}

int store_log_write_head(lethe_store *s)
{
    char head[128];
    /* Writers serialise on a byte-range lock of the lock file (apart from
     * the writer flock), then write the newest committed head: the file
     * never goes backwards. */
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 1, .l_len = 1};
    while (fcntl(s->lock_fd, F_OFD_SETLKW, &fl) < 0)
        if (errno != EINTR)
            return store_fail(s, LETHE_ERR_IO, "%s/%s: cannot lock: %s", s->dir, STORE_LOCK,
                              strerror(errno));
    int rc = read_meta_head(s, head, sizeof(head) - 1);
    if (rc == LETHE_OK && head[0]) {
        strcat(head, "\n");
        rc = store_write_file(s, STORE_LOG_HEAD, head, strlen(head));
    }
    fl.l_type = F_UNLCK;
    fcntl(s->lock_fd, F_OFD_SETLK, &fl);
    return rc;
}

static const char *const log_cols[] = {"seq", "time", "kind", "actor", "purpose",
                                       "query_hash", "results", "detail", "prev", "hash"};

static void entry_jsonl(strbuf *b, sqlite3_stmt *st)
{
    sb_putc(b, '{');
    for (int c = 0; c < 10; c++) {
        sb_printf(b, "%s\"%s\":", c ? "," : "", log_cols[c]);
        if (c == 0 || c == 6)
            sb_printf(b, "%lld", (long long)sqlite3_column_int64(st, c));
        else if (c == 7)
            sb_puts(b, (const char *)sqlite3_column_text(st, c)); /* JSON already */
        else
            sb_json_str(b, (const char *)sqlite3_column_text(st, c));
    }
    sb_puts(b, "}\n");
}

/* One line for people: every text field escaped, so nothing an actor, a
 * purpose or a detail holds can start a line of its own. */
static void entry_text(strbuf *b, sqlite3_stmt *st)
{
    const char *kind = (const char *)sqlite3_column_text(st, 2);
    const char *actor = (const char *)sqlite3_column_text(st, 3);
    sb_printf(b, "%6lld  ", (long long)sqlite3_column_int64(st, 0));
    sb_text(b, (const char *)sqlite3_column_text(st, 1));
    sb_puts(b, "  ");
    sb_text(b, kind);
    sb_puts(b, "  actor ");
    sb_text(b, actor && *actor ? actor : "-");
    if (!strcmp(kind, "search") || !strcmp(kind, "lookup")) {
        sb_printf(b, "  results %lld  purpose \"", (long long)sqlite3_column_int64(st, 6));
        sb_text(b, (const char *)sqlite3_column_text(st, 4));
        sb_puts(b, "\"  query ");
        sb_putn(b, (const char *)sqlite3_column_text(st, 5), 16);
    } else {
        const char *q = (const char *)sqlite3_column_text(st, 5);
        if (q && *q) {
            sb_puts(b, "  receipt ");
            sb_putn(b, q, 16);
        }
        sb_puts(b, "  ");
        sb_text(b, (const char *)sqlite3_column_text(st, 7));
    }
    sb_putc(b, '\n');
}

int lethe_log_export(lethe_store *s, const char *format, char **out)
{
    sqlite3_stmt *st;
    strbuf b;
    int text, rc, step;
    *out = NULL;
    if (!format || !strcmp(format, "jsonl") || !strcmp(format, "json"))
        text = 0;
    else if (!strcmp(format, "text"))
        text = 1;
    else
        return store_fail(s, LETHE_ERR_ARG, "unknown log format \"%s\" (jsonl, text)", format);
    if ((rc = store_prepare(s, "SELECT seq, time, kind, actor, purpose, query_hash, results, "
                               "detail, prev, hash FROM log ORDER BY seq", &st)))
        return rc;
    sb_init(&b);
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (text)
            entry_text(&b, st);
        else
            entry_jsonl(&b, st);
    }
    sqlite3_finalize(st);
    if (step != SQLITE_DONE) {
        sb_free(&b);
        return store_sqlfail(s, "reading the log");
    }
    *out = sb_finish(&b);
    return *out ? LETHE_OK : store_fail(s, LETHE_ERR_NOMEM, "out of memory");
}

/* Parse "SEQ HASH" into its parts; 0 on success. */
static int parse_head(const char *text, int64_t *seq, char hash[65])
{
    return log_head_parse(text, strlen(text), seq, hash);
}

int lethe_log_head(lethe_store *s, uint64_t *seq, char hash[65])
{
    char head[128];
    int64_t q = 0;
    int rc = read_meta_head(s, head, sizeof(head));
    if (rc)
        return rc;
    if (parse_head(head, &q, hash) != 0)
        return store_fail(s, LETHE_ERR_FORMAT, "the catalog's log head is damaged");
    *seq = (uint64_t)q;
    return LETHE_OK;
}

/* The chain: every entry follows the one before and hashes to its hash. */
static int verify_chain(lethe_store *s, uint64_t *n, int64_t *last, char prev[65],
                        uint64_t *first_bad)
{
    sqlite3_stmt *st;
    int64_t expect = 1;
    char want[65];
    int rc = store_prepare(s, "SELECT seq, time, kind, actor, purpose, query_hash, results, "
                              "detail, prev, hash FROM log ORDER BY seq", &st), step;
    if (rc)
        return rc;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t seq = sqlite3_column_int64(st, 0);
        const char *f[10];
        for (int c = 1; c < 10; c++)
            f[c] = sqlite3_column_type(st, c) == SQLITE_NULL
                       ? "" : (const char *)sqlite3_column_text(st, c);
        (*n)++;
        if (seq != expect) {
            *first_bad = (uint64_t)expect;
            rc = store_fail(s, LETHE_ERR_FORMAT, "log entry %lld is missing (next is %lld)",
                            (long long)expect, (long long)seq);
            break;
        }
        if (strcmp(f[8], prev) != 0) {
            *first_bad = (uint64_t)seq;
            rc = store_fail(s, LETHE_ERR_FORMAT, "log entry %lld does not follow entry %lld "
                            "(removed, reordered or replaced)", (long long)seq,
                            (long long)seq - 1);
            break;
        }
        entry_hash(seq, f[1], f[2], f[3], f[4], f[5], sqlite3_column_int64(st, 6), f[7], f[8],
                   want);
        if (strcmp(want, f[9]) != 0) {
            *first_bad = (uint64_t)seq;
            rc = store_fail(s, LETHE_ERR_FORMAT, "log entry %lld was altered (its hash does not "
                            "match its content)", (long long)seq);
            break;
        }
        memcpy(prev, f[9], 65);
        *last = seq;
        expect = seq + 1;
    }
    if (rc == LETHE_OK && step != SQLITE_DONE)
        rc = store_sqlfail(s, "reading the log");
    sqlite3_finalize(st);
    return rc;
}

/* The anchor file log.head, read: rc LETHE_OK with seq and hash;
 * LETHE_ERR_NOMEM; or another status with why in msg (gone, not a
 * regular file, damaged). */
typedef struct file_head {
    int rc;
    int64_t seq;
    char hash[65];
    char msg[256];
} file_head;

static void read_file_head(lethe_store *s, file_head *h)
{
    char *path = store_file(s, STORE_LOG_HEAD), text[128];
    uint8_t *bytes = NULL;
    size_t n = 0;
    memset(h, 0, sizeof(*h));
    /* not a regular file (a FIFO planted there) is refused, not waited on */
    h->rc = path ? lethe_read_file(path, 4096, &bytes, &n, h->msg, sizeof(h->msg))
                 : LETHE_ERR_NOMEM;
    if (h->rc == LETHE_OK) {
        snprintf(text, sizeof(text), "%.*s", (int)n, (const char *)bytes);
        if (parse_head(text, &h->seq, h->hash) != 0) {
            h->rc = LETHE_ERR_FORMAT;
            snprintf(h->msg, sizeof(h->msg), "the log head is damaged");
        }
    } else if (h->rc != LETHE_ERR_NOMEM) {
        size_t k = strlen(h->msg);
        snprintf(h->msg + k, sizeof(h->msg) - k, " (the log's anchor is gone)");
    }
    lethe_free(bytes);
    lethe_free(path);
}

/* The hash of entry seq, in the snapshot: 0, or -1 when there is none. */
static int entry_hash_at(lethe_store *s, int64_t seq, char hash[65])
{
    sqlite3_stmt *st;
    int found = -1;
    if (store_prepare(s, "SELECT hash FROM log WHERE seq = ?", &st) != LETHE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, seq);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0)) {
        snprintf(hash, 65, "%s", (const char *)sqlite3_column_text(st, 0));
        found = 0;
    }
    sqlite3_finalize(st);
    return found;
}

/*
 * The heads. The catalog's, written in the entry's transaction, must name
 * the snapshot's last entry exactly. The file's (fh) was read before the
 * snapshot began, and is rewritten after each commit and never goes back,
 * so it names an entry the snapshot holds (beyond it: entries were cut off
 * the log's end), with that entry's hash. When it names an earlier entry
 * (*lags set), a commit was under way or the file was not rewritten after
 * one; lethe_log_verify looks at it again after the snapshot.
 */
static int verify_heads(lethe_store *s, int64_t last, const char *prev, const file_head *fh,
                        int *lags, uint64_t *first_bad)
{
    char meta_head[128], mhash[65], at[65];
    int64_t mseq = 0;
    int rc = read_meta_head(s, meta_head, sizeof(meta_head));
    *lags = 0;
    if (rc)
        return rc;
    if (fh->rc == LETHE_ERR_NOMEM) /* out of memory says nothing about the log */
        return store_fail(s, LETHE_ERR_NOMEM, "out of memory reading %s", STORE_LOG_HEAD);
    if (fh->rc != LETHE_OK || parse_head(meta_head, &mseq, mhash) != 0) {
        *first_bad = (uint64_t)last + 1;
        return store_fail(s, LETHE_ERR_FORMAT, "%s",
                          fh->rc != LETHE_OK ? fh->msg : "the log head is damaged");
    }
    if (mseq > last || fh->seq > last) {
        *first_bad = (uint64_t)last + 1;
        return store_fail(s, LETHE_ERR_FORMAT, "log entries %lld to %lld are missing (the log "
                          "was cut short)", (long long)last + 1,
                          (long long)(mseq > fh->seq ? mseq : fh->seq));
    }
    if (mseq != last || strcmp(mhash, prev) != 0) {
        *first_bad = (uint64_t)mseq;
        return store_fail(s, LETHE_ERR_FORMAT, "log entry %lld does not match the catalog's "
                          "record of the head", (long long)mseq);
    }
    if (fh->seq == last ? strcmp(fh->hash, prev) != 0
                        : entry_hash_at(s, fh->seq, at) != 0 || strcmp(fh->hash, at) != 0) {
        *first_bad = (uint64_t)fh->seq;
        return store_fail(s, LETHE_ERR_FORMAT, "%s does not match log entry %lld",
                          STORE_LOG_HEAD, (long long)fh->seq);
    }
    *lags = fh->seq < last;
    return LETHE_OK;
}

/* The file lagged the snapshot: read it again for up to a second (a writer
 * rewrites it just after its commit). One that reaches the snapshot's last
 * entry (with its hash) or goes beyond is current; one that stays behind
 * was not rewritten after a commit (a crash or a full disk), and until it
 * is, a cut at the log's end would go unseen: that is reported. */
static int verify_lagging_head(lethe_store *s, int64_t last, const char *prev,
                               uint64_t *first_bad)
{
    file_head fh;
    for (int tries = 0;; tries++) {
        read_file_head(s, &fh);
        if (fh.rc == LETHE_ERR_NOMEM)
            return store_fail(s, LETHE_ERR_NOMEM, "out of memory reading %s", STORE_LOG_HEAD);
        if (fh.rc != LETHE_OK) {
            *first_bad = (uint64_t)last + 1;
            return store_fail(s, LETHE_ERR_FORMAT, "%s", fh.msg);
        }
        if (fh.seq > last)
            return LETHE_OK;
        if (fh.seq == last) {
            if (strcmp(fh.hash, prev) == 0)
                return LETHE_OK;
            *first_bad = (uint64_t)last;
            return store_fail(s, LETHE_ERR_FORMAT, "%s does not match log entry %lld",
                              STORE_LOG_HEAD, (long long)last);
        }
        if (tries == 40)
            break;
        struct timespec ts = {0, 25 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    *first_bad = (uint64_t)fh.seq + 1;
    return store_fail(s, LETHE_ERR_FORMAT, "%s names entry %lld but the log goes on to %lld: the "
                      "anchor was not rewritten after a commit (a crash or a full disk); the "
                      "next change or writable open rewrites it",
                      STORE_LOG_HEAD, (long long)fh.seq, (long long)last);
}

/* The consent policy in force is the one the log last recorded. */
static int verify_policy(lethe_store *s, uint64_t *first_bad)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s, "SELECT p.version, p.text, p.hash, p.log_seq, l.kind, l.detail "
                              "FROM policy p LEFT JOIN log l ON l.seq = p.log_seq "
                              "ORDER BY p.version DESC LIMIT 1", &st);
    if (rc)
        return rc;
    int step = sqlite3_step(st);
    if (step != SQLITE_ROW) {
        rc = step == SQLITE_DONE
                 ? store_fail(s, LETHE_ERR_FORMAT, "the catalog holds no consent policy")
                 : store_sqlfail(s, "reading the consent policy");
        sqlite3_finalize(st);
        return rc;
    }
    const char *text = (const char *)sqlite3_column_text(st, 1);
    const char *hash = (const char *)sqlite3_column_text(st, 2);
    const char *kind = (const char *)sqlite3_column_text(st, 4);
    const char *detail = (const char *)sqlite3_column_text(st, 5);
    uint8_t h[32];
    char hex[65], want[100];
    crypto_generichash(h, sizeof(h), (const uint8_t *)(text ? text : ""),
                       text ? strlen(text) : 0, NULL, 0);
    sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
    snprintf(want, sizeof(want), "\"policy_hash\":\"%s\"", hex);
    if ((!text || !hash || !kind || !detail) && sqlite3_errcode(s->db) == SQLITE_NOMEM)
        rc = store_fail(s, LETHE_ERR_NOMEM, "reading the consent policy: out of memory");
    else if (!hash || strcmp(hash, hex) != 0 || !kind ||
        (strcmp(kind, "policy") != 0 && strcmp(kind, "init") != 0 &&
         strcmp(kind, "restore") != 0) ||
        !detail || !strstr(detail, want)) {
        *first_bad = (uint64_t)sqlite3_column_int64(st, 3);
        rc = store_fail(s, LETHE_ERR_FORMAT,
                        "the consent policy in the catalog (version %lld) is not the one log "
                        "entry %lld records: the catalog's policy was edited",
                        (long long)sqlite3_column_int64(st, 0),
                        (long long)sqlite3_column_int64(st, 3));
    }
    sqlite3_finalize(st);
    return rc;
}

int lethe_log_verify(lethe_store *s, uint64_t *entries, uint64_t *first_bad)
{
    char prev[65] = ZERO_HASH;
    int64_t last = 0;
    uint64_t n = 0;
    int rc;
    *first_bad = 0;
    int lags = 0;
    file_head fh;
    if (s->share && share_is_owner(s)) /* between group commits (share.c) */
        return share_log_verify(s, entries, first_bad);
    /* the anchor first: what it names was committed before the snapshot */
    read_file_head(s, &fh);
    if ((rc = store_exec(s, "BEGIN")))
        return rc;
    rc = verify_chain(s, &n, &last, prev, first_bad);
    if (rc == LETHE_OK)
        rc = verify_heads(s, last, prev, &fh, &lags, first_bad);
    if (rc == LETHE_OK)
        rc = verify_policy(s, first_bad);
    if (rc == LETHE_OK)
        rc = apikey_verify_log(s, first_bad);
    store_end_read(s);
    if (rc == LETHE_OK && lags)
        rc = verify_lagging_head(s, last, prev, first_bad);
    *entries = n;
    return rc;
}
