/*
 * test_requests.c: data-subject requests and lookups (lethe.h, "Data-
 * subject requests"; src/requests/): what a subject lookup shows (provenance,
 * consent, templates, search counts by purpose, never who searched), the
 * counts leaving with an erased photo, requests filed, looked up by id
 * (wrong ids alike), listed, approved into a receipt the store checks,
 * denied, approved at once by the operator's rule, opted out by face (a
 * re-ingest refuses it), by selfie with the engine, the pending bound,
 * hostile arguments; every call with its 1st, 2nd, ... allocation failing
 * (lethe's and SQLite's).
 */
#include <sqlite3.h>
#include <unistd.h>
#include <zlib.h>

#include "faultvfs.h"
#include "lethe.h"
#include "people.h"
#include "test.h"
#include "util/util.h"

static char root[256];
static int ndir;

static void new_dir(char *out, size_t n)
{
    snprintf(out, n, "%s/d%d", root, ndir++);
}

static unsigned rng = 777;

#define PEOPLE 3
#define N (PEOPLE * 4)
static float vecs[N][128];

static void make_vecs(void)
{
    people_make(vecs, PEOPLE, 4, 0.03f, &rng);
}

/* Descriptors from..to with provenance person<i/4>, and stats. */
static int ingest(lethe_store *s, int from, int to, lethe_ingest_stats *st)
{
    lethe_ingest_options o;
    lethe_ingest *g = NULL;
    lethe_ingest_options_init(&o);
    o.actor = "test";
    int rc = lethe_ingest_begin(s, &o, &g);
    for (int i = from; i < to && rc == LETHE_OK; i++) {
        char up[32], url[48], id[32];
        snprintf(up, sizeof(up), "person%d", i / 4);
        snprintf(url, sizeof(url), "https://photos.example/%d", i);
        snprintf(id, sizeof(id), "photo-%d", i);
        lethe_provenance p = {.uploader = up, .url = url, .photo_id = id, .source = "site",
                              .license = "CC-BY-4.0", .jurisdiction = "US",
                              .consent = i % 2 ? "explicit" : "public-license"};
        rc = lethe_ingest_descriptor(g, vecs[i], &p, (size_t)i + 1);
    }
    int rc2 = g ? lethe_ingest_end(g, st) : LETHE_OK;
    return rc ? rc : rc2;
}

static int search(lethe_store *s, int who, const char *purpose)
{
    lethe_search_options o;
    lethe_match *m = NULL;
    size_t n = 0;
    lethe_search_options_init(&o);
    o.purpose = purpose;
    o.actor = "key:3";
    o.top_k = 4;
    o.threshold = 0.6f;
    int rc = lethe_search(s, vecs[who], 1, &o, &m, &n);
    lethe_matches_free(m, n);
    return rc;
}

/* A one-number query on the catalog (sqlite3 directly, read-only). */
static long long catalog_count(const char *dir, const char *sql)
{
    char path[400];
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    long long v = -1;
    snprintf(path, sizeof(path), "%s/catalog.db", dir);
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void log_ok(lethe_store *s)
{
    uint64_t n = 0, bad = 0;
    CHECK_EQ_INT(lethe_log_verify(s, &n, &bad), LETHE_OK);
    CHECK_EQ_INT(bad, 0);
}

/* A store with the N descriptors and searches: person0 twice for "case A",
 * once for "case B". */
static lethe_store *fixture(char *dir, size_t n)
{
    lethe_store *s = NULL;
    new_dir(dir, n);
    int rc = lethe_store_open(dir, LETHE_STORE_CREATE, &s);
    if (rc == LETHE_OK)
        rc = ingest(s, 0, N, NULL);
    if (rc == LETHE_OK)
        rc = search(s, 0, "case A");
    if (rc == LETHE_OK)
        rc = search(s, 1, "case A");
    if (rc == LETHE_OK)
        rc = search(s, 2, "case B");
    CHECK_EQ_INT(rc, LETHE_OK);
    if (rc) {
        fprintf(stderr, "  fixture: %s\n", lethe_store_errmsg(s));
        lethe_store_close(s);
        return NULL;
    }
    return s;
}

static const lethe_purpose_count *purpose_of(const lethe_subject_photo *p, const char *name)
{
    for (int i = 0; i < p->npurposes; i++)
        if (!strcmp(p->purposes[i].purpose, name))
            return &p->purposes[i];
    return NULL;
}

static void test_subject_lookup(void)
{
    char dir[300];
    lethe_subject_photo *ph = NULL;
    size_t n = 0;
    lethe_store *s = fixture(dir, sizeof(dir));
    if (!s)
        return;
    CHECK_EQ_INT(lethe_subject_lookup(s, LETHE_LOOKUP_UPLOADER, "person0", NULL, 0, "page", &ph,
                                      &n), LETHE_OK);
    CHECK_EQ_INT(n, 4);
    for (size_t i = 0; i < n; i++) {
        /* the policy allows templates for explicit consent in the US, not
         * for a public license: those photos are held without one */
        int explicit = i % 2;
        CHECK_EQ_INT(ph[i].templates, explicit);
        CHECK_EQ_INT(ph[i].faces, explicit);
        CHECK_EQ_INT(ph[i].nprov, 1);
        CHECK(!strcmp(ph[i].status, explicit ? "analysed" : "refused"));
        CHECK(!strcmp(ph[i].prov[0].uploader, "person0"));
        CHECK(!strcmp(ph[i].prov[0].consent, explicit ? "explicit" : "public-license"));
        CHECK(!strcmp(ph[i].prov[0].license, "CC-BY-4.0"));
        /* the photos with a template came back from the three searches of
         * person0's faces: twice for case A, once for case B */
        const lethe_purpose_count *a = purpose_of(&ph[i], "case A"),
                                  *b = purpose_of(&ph[i], "case B");
        CHECK_EQ_INT(ph[i].npurposes, explicit ? 2 : 0);
        if (explicit) {
            CHECK(a && a->searches == 2 && strlen(a->last) == 20);
            CHECK(b && b->searches == 1);
            CHECK(!strcmp(ph[i].purposes[0].purpose, "case A")); /* most first */
        }
    }
    char sha[65] = "";
    if (n)
        snprintf(sha, sizeof(sha), "%s", ph[0].photo);
    lethe_subject_photos_free(ph, n);
    /* by photo id, by SHA-256 as the photo id, by url; nothing for others */
    CHECK_EQ_INT(lethe_subject_lookup(s, LETHE_LOOKUP_PHOTO_ID, "photo-5", NULL, 0, "page", &ph,
                                      &n), LETHE_OK);
    CHECK(n == 1 && !strcmp(ph[0].prov[0].uploader, "person1") && ph[0].npurposes == 0);
    lethe_subject_photos_free(ph, n);
    CHECK_EQ_INT(lethe_subject_lookup(s, LETHE_LOOKUP_PHOTO_ID, sha, NULL, 0, "page", &ph, &n),
                 LETHE_OK);
    CHECK(n == 1 && !strcmp(ph[0].photo, sha));
    lethe_subject_photos_free(ph, n);
    CHECK_EQ_INT(lethe_subject_lookup(s, LETHE_LOOKUP_URL, "https://photos.example/9", NULL, 0,
                                      "page", &ph, &n), LETHE_OK);
    CHECK(n == 1 && !strcmp(ph[0].prov[0].photo_id, "photo-9"));
    lethe_subject_photos_free(ph, n);
    CHECK_EQ_INT(lethe_subject_lookup(s, LETHE_LOOKUP_FILE, NULL, "not held", 8, "page", &ph,
                                      &n), LETHE_OK);
    CHECK(n == 0 && ph == NULL);
    /* refused: no value, a control character, no bytes, an unknown kind */
    CHECK_EQ_INT(lethe_subject_lookup(s, LETHE_LOOKUP_URL, "", NULL, 0, "page", &ph, &n),
                 LETHE_ERR_ARG);
    CHECK_EQ_INT(lethe_subject_lookup(s, LETHE_LOOKUP_URL, "a\nb", NULL, 0, "page", &ph, &n),
                 LETHE_ERR_ARG);
    CHECK(strstr(lethe_store_errmsg(s), "control character") != NULL);
    CHECK_EQ_INT(lethe_subject_lookup(s, LETHE_LOOKUP_FILE, NULL, NULL, 0, "page", &ph, &n),
                 LETHE_ERR_ARG);
    CHECK_EQ_INT(lethe_subject_lookup(s, 9, "x", NULL, 0, "page", &ph, &n), LETHE_ERR_ARG);
    /* logged as lookups: 5 answered */
    char *log = NULL;
    CHECK_EQ_INT(lethe_log_export(s, "jsonl", &log), LETHE_OK);
    int lookups = 0;
    for (const char *p = log; p && (p = strstr(p, "\"kind\":\"lookup\"")); p++)
        lookups++;
    CHECK_EQ_INT(lookups, 5);
    CHECK(log && !strstr(log, "person0")); /* a keyed hash, never the value */
    lethe_free_string(log);
    log_ok(s);
    lethe_store_close(s);
}

static int file_req(lethe_store *s, int action, int by, const char *value, char id[48],
                    lethe_request_info *info)
{
    lethe_request_spec q = {.action = action, .by = by, .value = value};
    return lethe_request_file(s, &q, "page", id, info);
}

static void test_request_erasure(void)
{
    char dir[300], id[LETHE_REQUEST_ID_SIZE], id2[LETHE_REQUEST_ID_SIZE];
    lethe_request_info info, *list = NULL;
    size_t n = 0;
    char *receipt = NULL;
    lethe_store *s = fixture(dir, sizeof(dir));
    if (!s)
        return;
    /* two purposes for each of person0's two photos with a template */
    CHECK_EQ_INT(catalog_count(dir, "SELECT COUNT(*) FROM search_hits"), 4);
    CHECK_EQ_INT(file_req(s, LETHE_REQUEST_ERASE, LETHE_REQUEST_BY_UPLOADER, "person0", id, &info),
                 LETHE_OK);
    CHECK_EQ_INT(strlen(id), 46);
    CHECK(!strncmp(id, "rq_", 3));
    CHECK(!strcmp(info.status, "pending") && info.number == 1 && !info.decided_at[0]);
    CHECK_EQ_INT(file_req(s, LETHE_REQUEST_ERASE, LETHE_REQUEST_BY_URL, "https://photos.example/9",
                          id2, NULL), LETHE_OK);
    CHECK(strcmp(id, id2) != 0);
    /* the selector is sealed: not in the catalog's file in clear */
    CHECK_EQ_INT(catalog_count(dir, "SELECT COUNT(*) FROM requests WHERE CAST(sealed AS TEXT) "
                                    "LIKE '%person0%'"), 0);
    /* the requester's view */
    CHECK_EQ_INT(lethe_request_status(s, id, &info, &receipt), LETHE_OK);
    CHECK(!strcmp(info.status, "pending") && receipt == NULL && info.by == LETHE_REQUEST_BY_UPLOADER);
    /* wrong, malformed, truncated ids: one answer */
    char wrong[LETHE_REQUEST_ID_SIZE];
    memcpy(wrong, id, sizeof(wrong));
    wrong[10] = wrong[10] == 'A' ? 'B' : 'A';
    const char *bad[] = {wrong, "rq_", "", "lk_1_abc", "rq_!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"};
    for (size_t i = 0; i < LETHE_ARRAY_LEN(bad); i++) {
        CHECK_EQ_INT(lethe_request_status(s, bad[i], &info, &receipt), LETHE_ERR_NOT_FOUND);
        CHECK(!strcmp(lethe_store_errmsg(s), "no such request"));
    }
    CHECK_EQ_INT(lethe_request_status(s, NULL, NULL, NULL), LETHE_ERR_NOT_FOUND);
    /* the operator's view: the selectors of pending requests */
    CHECK_EQ_INT(lethe_request_list(s, 1, &list, &n), LETHE_OK);
    CHECK(n == 2 && list[0].selector && !strcmp(list[0].selector, "person0"));
    CHECK(n == 2 && list[1].selector && !strcmp(list[1].selector, "https://photos.example/9"));
    lethe_requests_free(list, n);
    /* approve: erased, a receipt the store issued, the selector gone */
    CHECK_EQ_INT(lethe_request_approve(s, 1, 0, "key:5", &info), LETHE_OK);
    CHECK(!strcmp(info.status, "done") && info.photos == 4 && info.templates == 2);
    CHECK(!strcmp(info.decided_by, "key:5") && strlen(info.receipt_hash) == 64);
    CHECK_EQ_INT(lethe_request_status(s, id, &info, &receipt), LETHE_OK);
    CHECK(receipt && strstr(receipt, "\"lethe_receipt\":1"));
    if (receipt) {
        CHECK_EQ_INT(lethe_receipt_check(s, receipt, strlen(receipt)), LETHE_OK);
        CHECK_EQ_INT(lethe_receipt_verify(receipt, strlen(receipt), NULL, NULL, 0), LETHE_OK);
    }
    lethe_free_string(receipt);
    CHECK_EQ_INT(catalog_count(dir, "SELECT COUNT(*) FROM requests WHERE id = 1 AND sealed IS "
                                    "NULL"), 1);
    /* the counts went with the photos */
    CHECK_EQ_INT(catalog_count(dir, "SELECT COUNT(*) FROM search_hits"), 0);
    lethe_subject_photo *ph = NULL;
    CHECK_EQ_INT(lethe_subject_lookup(s, LETHE_LOOKUP_UPLOADER, "person0", NULL, 0, "page", &ph,
                                      &n), LETHE_OK);
    CHECK_EQ_INT(n, 0);
    lethe_subject_photos_free(ph, n);
    /* decided once */
    CHECK_EQ_INT(lethe_request_approve(s, 1, 0, "key:5", NULL), LETHE_ERR_ARG);
    CHECK(strstr(lethe_store_errmsg(s), "done already") != NULL);
    CHECK_EQ_INT(lethe_request_deny(s, 1, "key:5", NULL), LETHE_ERR_ARG);
    CHECK_EQ_INT(lethe_request_approve(s, 99, 0, "key:5", NULL), LETHE_ERR_NOT_FOUND);
    /* deny the other: its selector dropped, the reason shown */
    CHECK_EQ_INT(lethe_request_deny(s, 2, "key:5", "not your photo"), LETHE_OK);
    CHECK_EQ_INT(lethe_request_status(s, id2, &info, NULL), LETHE_OK);
    CHECK(!strcmp(info.status, "denied") && !strcmp(info.note, "not your photo"));
    CHECK_EQ_INT(catalog_count(dir, "SELECT COUNT(*) FROM requests WHERE sealed IS NOT NULL"), 0);
    CHECK_EQ_INT(lethe_request_list(s, 0, &list, &n), LETHE_OK);
    CHECK(n == 2 && !list[0].selector && !list[1].selector);
    lethe_requests_free(list, n);
    CHECK_EQ_INT(lethe_request_list(s, 1, &list, &n), LETHE_OK);
    CHECK(n == 0);
    lethe_requests_free(list, n);
    log_ok(s);
    lethe_store_close(s);
}

static void test_request_auto_and_face(void)
{
    char dir[300], id[LETHE_REQUEST_ID_SIZE];
    lethe_request_info info;
    unsigned mask = 99;
    lethe_store *s = fixture(dir, sizeof(dir));
    if (!s)
        return;
    CHECK_EQ_INT(lethe_request_auto_get(s, &mask), LETHE_OK);
    CHECK_EQ_INT(mask, 0);
    CHECK_EQ_INT(lethe_request_auto_set(s, LETHE_REQUEST_BY_FACE, 1, "operator"), LETHE_OK);
    CHECK_EQ_INT(lethe_request_auto_set(s, LETHE_REQUEST_BY_FILE, 1, "operator"), LETHE_OK);
    CHECK_EQ_INT(lethe_request_auto_set(s, LETHE_REQUEST_BY_FILE, 0, "operator"), LETHE_OK);
    CHECK_EQ_INT(lethe_request_auto_get(s, &mask), LETHE_OK);
    CHECK_EQ_INT(mask, 1u << LETHE_REQUEST_BY_FACE);
    CHECK_EQ_INT(lethe_request_auto_set(s, 5, 1, "operator"), LETHE_ERR_ARG);
    /* an opt-out by face, approved at once: counts only */
    lethe_request_spec q = {.action = LETHE_REQUEST_OPTOUT, .by = LETHE_REQUEST_BY_FACE,
                            .face = vecs[5]};
    CHECK_EQ_INT(lethe_request_file(s, &q, "page", id, &info), LETHE_OK);
    CHECK(!strcmp(info.status, "done") && !strcmp(info.decided_by, "auto"));
    CHECK_EQ_INT(info.faces, 2); /* person1's faces with a template */
    CHECK_EQ_INT(info.photos, 0); /* faces erased, the photos' rows kept */
    /* the face is refused on re-ingest */
    lethe_ingest_stats st;
    memset(&st, 0, sizeof(st));
    CHECK_EQ_INT(ingest(s, 4, 8, &st), LETHE_OK);
    CHECK_EQ_INT(st.opted_out + st.opted_out_faces, 4);
    CHECK_EQ_INT(st.templates, 0);
    /* a file request waits (its rule is off), even for a photo not held */
    lethe_request_spec f = {.action = LETHE_REQUEST_ERASE, .by = LETHE_REQUEST_BY_FILE,
                            .bytes = "bytes of a photo", .len = 16};
    CHECK_EQ_INT(lethe_request_file(s, &f, "page", id, &info), LETHE_OK);
    CHECK(!strcmp(info.status, "pending"));
    lethe_request_info *list = NULL;
    size_t n = 0;
    CHECK_EQ_INT(lethe_request_list(s, 1, &list, &n), LETHE_OK);
    CHECK(n == 1 && list[0].selector && strstr(list[0].selector, "SHA-256"));
    lethe_requests_free(list, n);
    CHECK_EQ_INT(lethe_request_approve(s, info.number, 0, "operator", &info), LETHE_OK);
    CHECK(!strcmp(info.status, "done") && info.photos == 0);
    log_ok(s);
    lethe_store_close(s);
}

static void test_request_refused(void)
{
    char dir[300], id[LETHE_REQUEST_ID_SIZE], msg[128];
    int by = -1;
    float nanface[128] = {0};
    lethe_store *s = fixture(dir, sizeof(dir));
    if (!s)
        return;
    nanface[3] = NAN;
    lethe_request_spec bad[] = {
        {.action = 2, .by = LETHE_REQUEST_BY_URL, .value = "x"},
        {.action = 0, .by = 7, .value = "x"},
        {.action = 0, .by = LETHE_REQUEST_BY_URL, .value = ""},
        {.action = 0, .by = LETHE_REQUEST_BY_UPLOADER, .value = "a\x01" "b"},
        {.action = 0, .by = LETHE_REQUEST_BY_FILE},
        {.action = 0, .by = LETHE_REQUEST_BY_FACE, .face = nanface},
        {.action = 0, .by = LETHE_REQUEST_BY_FACE, .bytes = "x", .len = 1},
    };
    for (size_t i = 0; i < LETHE_ARRAY_LEN(bad); i++) {
        CHECK_EQ_INT(lethe_request_file(s, &bad[i], "page", id, NULL), LETHE_ERR_ARG);
        CHECK(id[0] == 0);
    }
    CHECK_EQ_INT(lethe_request_file(s, NULL, "page", id, NULL), LETHE_ERR_ARG);
    CHECK_EQ_INT(file_req(s, 0, LETHE_REQUEST_BY_URL, "u", id, NULL), LETHE_OK);
    CHECK_EQ_INT(lethe_request_deny(s, 1, "op", "a\nb"), LETHE_ERR_ARG);
    char longr[300];
    memset(longr, 'r', sizeof(longr) - 1);
    longr[sizeof(longr) - 1] = 0;
    CHECK_EQ_INT(lethe_request_deny(s, 1, "op", longr), LETHE_ERR_ARG);
    CHECK_EQ_INT(lethe_request_deny(s, 42, "op", NULL), LETHE_ERR_NOT_FOUND);
    CHECK(lethe_request_by_name(LETHE_REQUEST_BY_PHOTO_ID) &&
          !strcmp(lethe_request_by_name(LETHE_REQUEST_BY_PHOTO_ID), "photo-id"));
    CHECK(lethe_request_by_name(5) == NULL && lethe_request_by_name(-1) == NULL);
    CHECK_EQ_INT(lethe_request_by_parse("face", &by, msg, sizeof(msg)), LETHE_OK);
    CHECK_EQ_INT(by, LETHE_REQUEST_BY_FACE);
    CHECK_EQ_INT(lethe_request_by_parse("selfie", &by, msg, sizeof(msg)), LETHE_ERR_ARG);
    CHECK(strstr(msg, "'selfie'") != NULL);
    /* the pending bound: rows made in bulk, then one more is refused */
    lethe_store_close(s);
    char path[400], *err = NULL;
    sqlite3 *db = NULL;
    snprintf(path, sizeof(path), "%s/catalog.db", dir);
    CHECK_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
    CHECK_EQ_INT(sqlite3_exec(db, "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM "
                                  "c WHERE i < 9999) INSERT INTO requests(token_h, action, "
                                  "by_kind, status, filed_at) SELECT randomblob(32), 'erase', "
                                  "'url', 'pending', 'now' FROM c", NULL, NULL, &err), SQLITE_OK);
    sqlite3_free(err);
    sqlite3_close(db);
    CHECK_EQ_INT(lethe_store_open(dir, 0, &s), LETHE_OK);
    CHECK_EQ_INT(file_req(s, 0, LETHE_REQUEST_BY_URL, "u2", id, NULL), LETHE_ERR_BUSY);
    CHECK(strstr(lethe_store_errmsg(s), "10000 requests wait") != NULL);
    /* a read-only store files nothing */
    lethe_store_close(s);
    CHECK_EQ_INT(lethe_store_open(dir, LETHE_STORE_READONLY, &s), LETHE_OK);
    CHECK_EQ_INT(file_req(s, 0, LETHE_REQUEST_BY_URL, "u3", id, NULL), LETHE_ERR_ARG);
    lethe_store_close(s);
}

static void be32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (24 - 8 * i));
}

/* A w x h grey PNG (no face in it), malloc'd: signature, IHDR, IDAT, IEND. */
static uint8_t *grey_png(int w, int h, size_t *len)
{
    size_t row = 1 + 3 * (size_t)w, raw_len = row * (size_t)h, at = 8;
    uLongf zlen = compressBound((uLong)raw_len);
    uint8_t *raw = calloc(raw_len, 1), *out = malloc(zlen + 64), hdr[13];
    for (int y = 0; y < h; y++)
        memset(raw + (size_t)y * row + 1, 150, row - 1);
    memcpy(out, "\x89PNG\r\n\x1a\n", 8);
    be32(hdr, (uint32_t)w);
    be32(hdr + 4, (uint32_t)h);
    memcpy(hdr + 8, "\x08\x02\x00\x00\x00", 5);
    const char *types[3] = {"IHDR", "IDAT", "IEND"};
    uint8_t *z = malloc(zlen);
    compress2(z, &zlen, raw, (uLong)raw_len, 6);
    const uint8_t *data[3] = {hdr, z, NULL};
    size_t lens[3] = {13, zlen, 0};
    for (int c = 0; c < 3; c++) {
        be32(out + at, (uint32_t)lens[c]);
        memcpy(out + at + 4, types[c], 4);
        if (lens[c])
            memcpy(out + at + 8, data[c], lens[c]);
        be32(out + at + 8 + lens[c], (uint32_t)crc32(0L, out + at + 4, (uInt)(lens[c] + 4)));
        at += 12 + lens[c];
    }
    free(z);
    free(raw);
    *len = at;
    return out;
}

/* A photo file of the shared data, read whole (free), or NULL. */
static uint8_t *read_photo(const char *rel, size_t *len)
{
    const char *data = test_data_dir();
    char path[512];
    uint8_t *b = NULL;
    if (!data)
        return NULL;
    snprintf(path, sizeof(path), "%s/%s", data, rel);
    if (lethe_read_file(path, 64u << 20, &b, len, NULL, 0) != LETHE_OK)
        return NULL;
    return b;
}

static int ingest_photo(lethe_store *s, lethe_engine *e, const uint8_t *b, size_t len,
                        const char *uploader, lethe_ingest_stats *st)
{
    lethe_ingest_options o;
    lethe_ingest *g = NULL;
    lethe_ingest_options_init(&o);
    o.engine = e;
    o.actor = "test";
    lethe_provenance p = {.uploader = uploader, .consent = "explicit", .jurisdiction = "US"};
    int rc = lethe_ingest_begin(s, &o, &g);
    if (rc == LETHE_OK)
        rc = lethe_ingest_photo_bytes(g, b, len, "photo.png", &p, 0);
    int rc2 = g ? lethe_ingest_end(g, st) : LETHE_OK;
    return rc ? rc : rc2;
}

static void selfie_flow(lethe_store *s, lethe_engine *e, uint8_t *ph[4], size_t len[4])
{
    char id[LETHE_REQUEST_ID_SIZE];
    lethe_request_info info;
    lethe_ingest_stats st;
    lethe_subject_photo *found = NULL;
    size_t n = 0;
    CHECK_EQ_INT(ingest_photo(s, e, ph[0], len[0], "amy", &st), LETHE_OK);
    CHECK_EQ_INT(ingest_photo(s, e, ph[1], len[1], "bernadette", &st), LETHE_OK);
    /* the exact file, hashed */
    CHECK_EQ_INT(lethe_subject_lookup(s, LETHE_LOOKUP_FILE, NULL, ph[0], len[0], "page", &found,
                                      &n), LETHE_OK);
    CHECK(n == 1 && found[0].templates == 1 && !strcmp(found[0].prov[0].uploader, "amy"));
    lethe_subject_photos_free(found, n);
    /* a selfie of amy (another photo of her): an opt-out by face */
    lethe_request_spec q = {.action = LETHE_REQUEST_OPTOUT, .by = LETHE_REQUEST_BY_FACE,
                            .bytes = ph[2], .len = len[2], .engine = e};
    CHECK_EQ_INT(lethe_request_file(s, &q, "page", id, &info), LETHE_OK);
    CHECK(!strcmp(info.status, "pending"));
    CHECK_EQ_INT(lethe_request_approve(s, info.number, 0, "key:5", &info), LETHE_OK);
    CHECK_EQ_INT(info.faces, 1);
    /* another photo of amy: her face is refused; bernadette's stays */
    memset(&st, 0, sizeof(st));
    CHECK_EQ_INT(ingest_photo(s, e, ph[3], len[3], "amy-elsewhere", &st), LETHE_OK);
    CHECK_EQ_INT(st.opted_out_faces, 1);
    CHECK_EQ_INT(st.templates, 0);
    CHECK_EQ_INT(lethe_subject_lookup(s, LETHE_LOOKUP_UPLOADER, "bernadette", NULL, 0, "page",
                                      &found, &n), LETHE_OK);
    CHECK(n == 1 && found[0].templates == 1);
    lethe_subject_photos_free(found, n);
    /* a selfie without a face */
    size_t blen = 0;
    uint8_t *blank = grey_png(64, 48, &blen);
    q.bytes = blank;
    q.len = blen;
    CHECK_EQ_INT(lethe_request_file(s, &q, "page", id, NULL), LETHE_ERR_NO_FACE);
    CHECK(strstr(lethe_store_errmsg(s), "no face") != NULL);
    CHECK(id[0] == 0);
    free(blank);
}

static void test_request_selfie(void)
{
    const char *models = test_models_dir();
    const char *rel[4] = {"faceapi/examples/amy/amy1.png",
                          "faceapi/examples/bernadette/bernadette1.png",
                          "faceapi/examples/amy/amy3.png", "faceapi/examples/amy/amy2.png"};
    uint8_t *ph[4] = {NULL};
    size_t len[4] = {0};
    char dir[300];
    lethe_engine *e = NULL;
    lethe_store *s = NULL;
    lethe_engine_options eo;
    if (!models)
        SKIP("no face models (make models)");
    for (int i = 0; i < 4; i++)
        if (!(ph[i] = read_photo(rel[i], &len[i]))) {
            for (int k = 0; k < i; k++)
                lethe_free(ph[k]);
            SKIP("no shared test photos ($LETHE_TEST_DATA, ../shared/data)");
        }
    lethe_engine_options_init(&eo);
    eo.model_dir = models;
    eo.threads = 2;
    new_dir(dir, sizeof(dir));
    int rc = lethe_engine_open(&e, &eo);
    CHECK_EQ_INT(rc, LETHE_OK);
    if (rc == LETHE_OK && (rc = lethe_store_open(dir, LETHE_STORE_CREATE, &s)) == LETHE_OK)
        selfie_flow(s, e, ph, len);
    CHECK_EQ_INT(rc, LETHE_OK);
    if (s)
        log_ok(s);
    lethe_store_close(s);
    lethe_engine_close(e);
    for (int i = 0; i < 4; i++)
        lethe_free(ph[i]);
}

/* ------------------------------------------------------ allocation loops */

static char tmpl[300], tmpl_id[LETHE_REQUEST_ID_SIZE];

/* The fixture with three pending requests (by uploader, url, face). */
static int make_template(void)
{
    lethe_store *s = fixture(tmpl, sizeof(tmpl));
    char other[LETHE_REQUEST_ID_SIZE];
    if (!s)
        return LETHE_ERR_INTERNAL;
    lethe_request_spec q = {.action = LETHE_REQUEST_OPTOUT, .by = LETHE_REQUEST_BY_FACE,
                            .face = vecs[9]};
    int rc = file_req(s, LETHE_REQUEST_ERASE, LETHE_REQUEST_BY_UPLOADER, "person0", tmpl_id, NULL);
    if (rc == LETHE_OK)
        rc = file_req(s, LETHE_REQUEST_ERASE, LETHE_REQUEST_BY_URL, "https://photos.example/5",
                      other, NULL);
    if (rc == LETHE_OK)
        rc = lethe_request_file(s, &q, "page", other, NULL);
    CHECK_EQ_INT(rc, LETHE_OK);
    lethe_store_close(s);
    return rc;
}

typedef int (*op_fn)(lethe_store *s);

/* A restore over the live store keeps the requests filed and decided since
 * the backup, and the search counts of the photos both hold; a store whose
 * backup predates its first request gets the table from the live store. */
static void test_request_restore(void)
{
    char dir[300], bk[300], msg[256], id1[LETHE_REQUEST_ID_SIZE], id2[LETHE_REQUEST_ID_SIZE];
    lethe_request_info info;
    lethe_restore_options o;
    lethe_restore_result res;
    lethe_subject_photo *ph = NULL;
    size_t n = 0;
    char *info_json = NULL;
    lethe_store *s = fixture(dir, sizeof(dir));
    if (!s)
        return;
    new_dir(bk, sizeof(bk));
    /* the backup holds no requests table yet (made on first use) */
    CHECK_EQ_INT(lethe_backup(s, bk, "test", &info_json), LETHE_OK);
    lethe_free_string(info_json);
    CHECK_EQ_INT(catalog_count(bk, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'requests'"),
                 0);
    /* since: one request approved (person1 erased), one pending, one more
     * search of person0 for case B */
    CHECK_EQ_INT(file_req(s, LETHE_REQUEST_ERASE, LETHE_REQUEST_BY_UPLOADER, "person1", id1, NULL),
                 LETHE_OK);
    CHECK_EQ_INT(file_req(s, LETHE_REQUEST_ERASE, LETHE_REQUEST_BY_URL, "https://photos.example/9",
                          id2, NULL), LETHE_OK);
    CHECK_EQ_INT(lethe_request_approve(s, 1, 0, "key:5", NULL), LETHE_OK);
    CHECK_EQ_INT(search(s, 0, "case B"), LETHE_OK);
    lethe_store_close(s);
    lethe_restore_options_init(&o);
    o.actor = "test";
    CHECK_EQ_INT(lethe_restore(bk, dir, &o, &res, msg, sizeof(msg)), LETHE_OK);
    CHECK_EQ_INT(res.dropped_erased, 4); /* person1's photos stay forgotten */
    s = NULL;
    CHECK_EQ_INT(lethe_store_open(dir, 0, &s), LETHE_OK);
    if (!s)
        return;
    CHECK_EQ_INT(lethe_request_status(s, id1, &info, NULL), LETHE_OK);
    CHECK(!strcmp(info.status, "done") && info.photos == 4);
    CHECK_EQ_INT(lethe_request_status(s, id2, &info, NULL), LETHE_OK);
    CHECK(!strcmp(info.status, "pending"));
    /* the pending selector still opens with the live keyring */
    lethe_request_info *list = NULL;
    CHECK_EQ_INT(lethe_request_list(s, 1, &list, &n), LETHE_OK);
    CHECK(n == 1 && list[0].selector && !strcmp(list[0].selector, "https://photos.example/9"));
    lethe_requests_free(list, n);
    /* person0's counts as they were just before the restore: case B twice */
    CHECK_EQ_INT(lethe_subject_lookup(s, LETHE_LOOKUP_UPLOADER, "person0", NULL, 0, "page", &ph,
                                      &n), LETHE_OK);
    int twice = 0;
    for (size_t i = 0; i < n; i++) {
        const lethe_purpose_count *b = purpose_of(&ph[i], "case B");
        twice += b && b->searches == 2;
    }
    CHECK_EQ_INT(twice, 2);
    lethe_subject_photos_free(ph, n);
    log_ok(s);
    lethe_store_close(s);
}

static int op_lookup(lethe_store *s)
{
    lethe_subject_photo *p = NULL;
    size_t n = 0;
    int rc = lethe_subject_lookup(s, LETHE_LOOKUP_UPLOADER, "person0", NULL, 0, "page", &p, &n);
    if (rc == LETHE_OK)
        CHECK(n == 4 && p[1].npurposes == 2);
    lethe_subject_photos_free(p, n);
    return rc;
}

static int op_search(lethe_store *s)
{
    return search(s, 3, "case C");
}

static int op_file(lethe_store *s)
{
    char id[LETHE_REQUEST_ID_SIZE];
    lethe_request_info info;
    int rc = file_req(s, LETHE_REQUEST_OPTOUT, LETHE_REQUEST_BY_PHOTO_ID, "photo-3", id, &info);
    if (rc == LETHE_OK)
        CHECK(info.number == 4 && strlen(id) == 46);
    return rc;
}

static int op_status(lethe_store *s)
{
    lethe_request_info info;
    char *receipt = NULL;
    int rc = lethe_request_status(s, tmpl_id, &info, &receipt);
    if (rc == LETHE_OK)
        CHECK(info.number == 1 && receipt == NULL);
    lethe_free_string(receipt);
    return rc;
}

static int op_list(lethe_store *s)
{
    lethe_request_info *v = NULL;
    size_t n = 0;
    int rc = lethe_request_list(s, 0, &v, &n);
    if (rc == LETHE_OK)
        CHECK(n == 3 && v[2].selector != NULL);
    lethe_requests_free(v, n);
    return rc;
}

static int op_approve(lethe_store *s)
{
    return lethe_request_approve(s, 1, 0, "key:5", NULL);
}

static int op_approve_face(lethe_store *s)
{
    return lethe_request_approve(s, 3, 0, "key:5", NULL);
}

static int op_deny(lethe_store *s)
{
    return lethe_request_deny(s, 2, "key:5", "no such account");
}

static int op_auto(lethe_store *s)
{
    return lethe_request_auto_set(s, LETHE_REQUEST_BY_FILE, 1, "operator");
}

/* The store in dir opens and its log verifies; its digest into hex. */
static int sound(const char *dir, char hex[65])
{
    lethe_store *s = NULL;
    int matches = 0;
    int rc = lethe_store_open(dir, 0, &s);
    CHECK_EQ_INT(rc, LETHE_OK);
    if (rc == LETHE_OK) {
        log_ok(s);
        CHECK_EQ_INT(lethe_store_digest_full(s, hex, &matches), LETHE_OK);
        CHECK(matches);
    }
    lethe_store_close(s);
    return rc;
}

/* One run of op on a fresh copy of the template with allocation k failing
 * (-1: none): its status (SQLite's "out of memory" read as an I/O error
 * by src/store counted as LETHE_ERR_NOMEM) and the allocations it made. */
static int run_once(const char *dir, op_fn op, long k, long *made)
{
    char cmd[1024];
    lethe_store *s = NULL;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' && cp -a '%s' '%s'", dir, tmpl, dir);
    if (system(cmd) != 0 || lethe_store_open(dir, 0, &s) != LETHE_OK) {
        lethe_store_close(s);
        return -1;
    }
    lethe_alloc_fail_after(k);
    int rc = op(s);
    *made = lethe_alloc_count();
    lethe_alloc_fail_after(-1);
    if (rc == LETHE_ERR_IO && strstr(lethe_store_errmsg(s), "out of memory"))
        rc = LETHE_ERR_NOMEM;
    if (k >= 0 ? rc != LETHE_OK && rc != LETHE_ERR_NOMEM : rc != LETHE_OK)
        fprintf(stderr, "  k=%ld: %d %s\n", k, rc, lethe_store_errmsg(s));
    lethe_store_close(s);
    return rc;
}

/* The status of request number in the store in dir ("" if unknown). */
static void req_status(const char *dir, int64_t number, char out[16])
{
    lethe_store *s = NULL;
    lethe_request_info *v = NULL;
    size_t n = 0;
    out[0] = 0;
    if (lethe_store_open(dir, 0, &s) == LETHE_OK && lethe_request_list(s, 0, &v, &n) == LETHE_OK)
        for (size_t i = 0; i < n; i++)
            if (v[i].number == number)
                snprintf(out, 16, "%s", v[i].status);
    lethe_requests_free(v, n);
    lethe_store_close(s);
}

/* op with the 1st, 2nd, ... allocation failing (every one of the first
 * 150, then every 10th): LETHE_ERR_NOMEM or LETHE_OK, and the store sound
 * with its digest before or after. Returns the failing runs. */
static int alloc_loop(op_fn op, int64_t approves)
{
    char status[16];
    char dir[300], before[65] = "", after[65] = "", got[65] = "";
    int failed = 0, done = 0;
    long made = 0;
    new_dir(dir, sizeof(dir));
    if (sound(tmpl, before))
        return 0;
    for (long k = -1; !done && k < 100000; k += k < 150 ? 1 : 10) {
        int rc = run_once(dir, op, k, &made);
        int odd = rc != LETHE_OK && (k < 0 || rc != LETHE_ERR_NOMEM);
        CHECK(!odd);
        if (odd || sound(dir, got))
            return failed;
        if (k == -1) {
            memcpy(after, got, sizeof(after));
            continue;
        }
        if (rc == LETHE_OK) {
            CHECK(!strcmp(got, after));
            done = made <= k;
        } else {
            failed++;
            CHECK(!strcmp(got, before) || !strcmp(got, after));
        }
        /* an approval commits with its erasure: done iff erased */
        if (approves) {
            req_status(dir, approves, status);
            if (strcmp(status, !strcmp(got, after) ? "done" : "pending"))
                fprintf(stderr, "  k=%ld: request %lld is %s\n", k, (long long)approves, status);
            CHECK(!strcmp(status, !strcmp(got, after) ? "done" : "pending"));
        }
    }
    CHECK(done);
    return failed;
}

static void test_alloc_loops(void)
{
    static const struct {
        const char *name;
        op_fn op;
        int64_t approves; /* the request it approves, or 0 */
    } ops[] = {
        {"subject lookup", op_lookup, 0},       {"search (counts)", op_search, 0},
        {"request file", op_file, 0},           {"request status", op_status, 0},
        {"request list", op_list, 0},           {"request approve", op_approve, 1},
        {"approve by face", op_approve_face, 3}, {"request deny", op_deny, 0},
        {"request auto", op_auto, 0},
    };
    if (make_template() != LETHE_OK)
        return;
    for (size_t i = 0; i < LETHE_ARRAY_LEN(ops); i++) {
        int failed = alloc_loop(ops[i].op, ops[i].approves);
        printf("  %-18s %d allocation failures\n", ops[i].name, failed);
        CHECK(failed > 0);
    }
}

int main(int argc, char **argv)
{
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    test_select(argc, argv);
    if (faultvfs_install(1) != SQLITE_OK) {
        fprintf(stderr, "cannot install the fault VFS\n");
        return 1;
    }
    snprintf(root, sizeof(root), "%s/lethe-test-requests-XXXXXX", base);
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    make_vecs();
    RUN(test_subject_lookup);
    RUN(test_request_erasure);
    RUN(test_request_auto_and_face);
    RUN(test_request_refused);
    RUN(test_request_selfie);
    RUN(test_request_restore);
    RUN(test_alloc_loops);
    printf("SQLite write calls seen: %ld\n", faultvfs_calls());
    faultvfs_reset_calls();
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", root);
    return test_summary();
}
