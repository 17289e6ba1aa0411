/*
 * models.c: the models that computed a store's templates.
 *
 * Templates of two descriptor models are points of two different spaces:
 * a distance between them means nothing. So every face row names the model
 * row of what computed it (faces.model), searches compare a query only
 * with templates of its own model, and a model can be retired (its
 * templates erased, forget/retire.c) as a regulator may order for a model
 * trained on unconsented data.
 *
 * A model is its descriptor network's identity (name, version, SHA-256 of
 * its weights) and the descriptor's precision. The detector's precision is
 * recorded per face (faces.detector) but is not part of it: an int8
 * detector changes which faces are found and their boxes by a little, not
 * the space their descriptors live in.
 *
 * The models table is not in the digest (digest.c): a model row names no
 * one, and a retired model's row stays, so that a store that retired a
 * model has the digest of one that never held its templates.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"
#include "util/util.h"

void lethe_model_shipped(lethe_model_id *m)
{
    memset(m, 0, sizeof(*m));
    snprintf(m->name, sizeof(m->name), "face-api-resnet34");
    snprintf(m->version, sizeof(m->version), "1.7.15");
    /* face_recognition_model.bin of @vladmandic/face-api 1.7.15 (the digest
     * model/tfjs.c checks before loading it) */
    snprintf(m->weights, sizeof(m->weights),
             "b413e420d6840b2775fba32008db6f3cddb07d485967fb42cfcf379c16a8c589");
    snprintf(m->precision, sizeof(m->precision), "fp32");
}

static int part_ok(const char *p, size_t len, size_t max)
{
    if (len == 0 || len >= max)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || c == '+'))
            return 0;
    }
    return 1;
}

int lethe_model_parse(const char *text, lethe_model_id *m, char *msg, size_t msg_len)
{
    char *dst[4] = {m->name, m->version, m->weights, m->precision};
    size_t cap[4] = {sizeof(m->name), sizeof(m->version), sizeof(m->weights),
                     sizeof(m->precision)};
    static const char *what[4] = {"name", "version", "weights hash", "precision"};
    memset(m, 0, sizeof(*m));
    if (!text || !*text)
        return lethe_fail(msg, msg_len, LETHE_ERR_ARG, "no model given");
    const char *p = text;
    for (int k = 0; k < 4 && p; k++) {
        const char *at = strchr(p, '@');
        size_t len = at ? (size_t)(at - p) : strlen(p);
        if (!part_ok(p, len, cap[k]))
            return lethe_fail(msg, msg_len, LETHE_ERR_ARG,
                              "model \"%.200s\": bad %s (letters, digits, - _ . +; at most %zu)",
                              text, what[k], cap[k] - 1);
        memcpy(dst[k], p, len);
        dst[k][len] = 0;
        p = at ? at + 1 : NULL;
    }
    if (p)
        return lethe_fail(msg, msg_len, LETHE_ERR_ARG,
                          "model \"%.200s\": NAME[@VERSION[@WEIGHTS[@PRECISION]]]", text);
    if (!m->precision[0])
        snprintf(m->precision, sizeof(m->precision), "fp32");
    return LETHE_OK;
}

void store_model_label(const lethe_model_id *m, char *out, size_t n)
{
    snprintf(out, n, "%s@%s", m->name, m->version[0] ? m->version : "?");
}

int store_model_get(lethe_store *s, const lethe_model_id *m, int64_t *id, int *retired)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s, "SELECT id, retired_at IS NOT NULL FROM models WHERE name = ? "
                              "AND version = ? AND weights = ? AND precision = ?", &st);
    if (rc)
        return rc;
    int b = sqlite3_bind_text(st, 1, m->name, -1, SQLITE_TRANSIENT) |
            sqlite3_bind_text(st, 2, m->version, -1, SQLITE_TRANSIENT) |
            sqlite3_bind_text(st, 3, m->weights, -1, SQLITE_TRANSIENT) |
            sqlite3_bind_text(st, 4, m->precision, -1, SQLITE_TRANSIENT);
    if ((rc = store_bound(s, b, "finding a model")) == LETHE_OK) {
        int step = sqlite3_step(st);
        if (step == SQLITE_ROW) {
            *id = sqlite3_column_int64(st, 0);
            if (retired)
                *retired = sqlite3_column_int(st, 1);
        } else if (step == SQLITE_DONE) {
            rc = LETHE_ERR_NOT_FOUND;
        } else {
            rc = store_sqlfail(s, "finding a model");
        }
    }
    sqlite3_finalize(st);
    return rc;
}

int store_model_use(lethe_store *s, const lethe_model_id *m, int64_t *id)
{
    char label[128], now[32];
    int retired = 0;
    int rc = store_model_get(s, m, id, &retired);
    store_model_label(m, label, sizeof(label));
    if (rc == LETHE_OK && retired)
        return store_fail(s, LETHE_ERR_POLICY,
                          "model %s is retired in this store: it may not add templates", label);
    if (rc != LETHE_ERR_NOT_FOUND)
        return rc;
    sqlite3_stmt *st;
    if ((rc = store_prepare(s, "INSERT INTO models(name, version, weights, precision, "
                               "first_used) VALUES (?, ?, ?, ?, ?)", &st)))
        return rc;
    store_now(now);
    int b = sqlite3_bind_text(st, 1, m->name, -1, SQLITE_TRANSIENT) |
            sqlite3_bind_text(st, 2, m->version, -1, SQLITE_TRANSIENT) |
            sqlite3_bind_text(st, 3, m->weights, -1, SQLITE_TRANSIENT) |
            sqlite3_bind_text(st, 4, m->precision, -1, SQLITE_TRANSIENT) |
            sqlite3_bind_text(st, 5, now, -1, SQLITE_TRANSIENT);
    if ((rc = store_bound(s, b, "recording a model")) == LETHE_OK) {
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = store_sqlfail(s, "recording a model");
        else
            *id = sqlite3_last_insert_rowid(s->db);
    }
    sqlite3_finalize(st);
    return rc;
}

/* The templates of model id the store holds: *n. idx_total is what the
 * index holds (all models'), or UINT64_MAX when unknown, and then only
 * whether there is one is asked (*n is 0 or 1). Each read is a seek or a
 * range of the faces_model index (model, has_template), never a scan of
 * every face: when every face is of this model, the index's count is
 * the answer. */
static int model_templates(lethe_store *s, int64_t id, uint64_t idx_total, uint64_t *n)
{
    char sql[200];
    int64_t v;
    if (idx_total != UINT64_MAX) {
        snprintf(sql, sizeof(sql), "SELECT (SELECT MIN(model) FROM faces) IS %lld AND "
                 "(SELECT MAX(model) FROM faces) IS %lld", (long long)id, (long long)id);
        if ((v = store_count(s, sql)) < 0)
            return store_status(s);
        if (v == 1) {
            *n = idx_total;
            return LETHE_OK;
        }
        snprintf(sql, sizeof(sql),
                 "SELECT COUNT(*) FROM faces WHERE model = %lld AND has_template = 1",
                 (long long)id);
    } else {
        snprintf(sql, sizeof(sql), "SELECT EXISTS(SELECT 1 FROM faces WHERE model = %lld AND "
                 "has_template = 1)", (long long)id);
    }
    if ((v = store_count(s, sql)) < 0)
        return store_status(s);
    *n = (uint64_t)v;
    return LETHE_OK;
}

/* Whether the store holds templates of a model other than `model` or has
 * retired one: then a query model without templates is a mismatch, not
 * an empty store. 1, 0, or -1 on a failed read. */
static int other_models(lethe_store *s, int64_t model)
{
    char sql[300];
    snprintf(sql, sizeof(sql), "SELECT EXISTS(SELECT 1 FROM models WHERE retired_at IS NOT NULL) "
             "OR EXISTS(SELECT 1 FROM models m WHERE m.id IS NOT %lld AND EXISTS(SELECT 1 FROM "
             "faces WHERE model = m.id AND has_template = 1))", (long long)model);
    int64_t n = store_count(s, sql);
    return n < 0 ? -1 : n > 0;
}

int store_search_model(lethe_store *s, const lethe_model_id *m, uint64_t idx_total,
                       int64_t *id, uint64_t *templates)
{
    lethe_model_id shipped;
    char label[128];
    int retired = 0;
    *id = 0;
    *templates = 0;
    if (!m) {
        lethe_model_shipped(&shipped);
        m = &shipped;
    }
    store_model_label(m, label, sizeof(label));
    int rc = store_model_get(s, m, id, &retired);
    if (rc && rc != LETHE_ERR_NOT_FOUND)
        return rc;
    if (rc == LETHE_OK && retired)
        return store_fail(s, LETHE_ERR_POLICY,
                          "model %s is retired in this store: its templates are erased and "
                          "its queries refused", label);
    uint64_t n = 0;
    if (rc == LETHE_OK && (rc = model_templates(s, *id, idx_total, &n)))
        return rc;
    if (n > 0) {
        *templates = n;
        return LETHE_OK;
    }
    /* No template of the query's model. A store that holds none at all
     * (empty, or all dropped by the policy) answers with no match; one
     * that holds other models' templates, or retired one, is refused: an
     * empty answer would read as "nobody like this is held". */
    int other = other_models(s, *id);
    if (other < 0)
        return store_status(s);
    if (other)
        return store_fail(s, LETHE_ERR_NOT_FOUND,
                          "the store holds no templates of model %s (the queries' model), only "
                          "of other or retired models: nothing comparable (`lethe model list` "
                          "shows them; `lethe retemplate` computes the photos' templates with "
                          "the current model)", label);
    return LETHE_OK;
}

/* ------------------------------------------------------------ migration */

static int migrate_rows(lethe_store *s)
{
    lethe_model_id m;
    char created[32] = "";
    sqlite3_stmt *st;
    int rc;
    lethe_model_shipped(&m);
    rc = store_meta_get_text(s, "created_at", created, sizeof(created));
    if (rc && rc != LETHE_ERR_NOT_FOUND)
        return rc;
    if (!created[0])
        store_now(created);
    if ((rc = store_exec(s, MODELS_SCHEMA_SQL
                         "ALTER TABLE faces ADD COLUMN model INTEGER REFERENCES models(id);\n"
                         "ALTER TABLE faces ADD COLUMN detector TEXT NOT NULL DEFAULT '';\n"
                         "CREATE INDEX faces_model ON faces(model, has_template);\n")))
        return rc;
    if ((rc = store_prepare(s, "INSERT INTO models(id, name, version, weights, precision, "
                               "first_used) VALUES (1, ?, ?, ?, ?, ?)", &st)))
        return rc;
    int b = sqlite3_bind_text(st, 1, m.name, -1, SQLITE_TRANSIENT) |
            sqlite3_bind_text(st, 2, m.version, -1, SQLITE_TRANSIENT) |
            sqlite3_bind_text(st, 3, m.weights, -1, SQLITE_TRANSIENT) |
            sqlite3_bind_text(st, 4, m.precision, -1, SQLITE_TRANSIENT) |
            sqlite3_bind_text(st, 5, created, -1, SQLITE_TRANSIENT);
    if ((rc = store_bound(s, b, "migrating the catalog")) == LETHE_OK &&
        sqlite3_step(st) != SQLITE_DONE)
        rc = store_sqlfail(s, "migrating the catalog");
    sqlite3_finalize(st);
    /* format 2 knew one model; descriptors ingested from outside were
     * taken as its (they could not be searched otherwise) */
    if (rc == LETHE_OK)
        rc = store_exec(s, "UPDATE faces SET model = 1");
    if (rc == LETHE_OK)
        rc = store_meta_set_int(s, "format", LETHE_STORE_FORMAT);
    if (rc == LETHE_OK)
        rc = store_log_append(s, "migrate", "", "", "", 0,
                              "{\"from\":2,\"to\":3,\"templates_attributed_to\":"
                              "\"face-api-resnet34@1.7.15\"}");
    return rc;
}

int store_models_migrate(lethe_store *s)
{
    int64_t format = 0;
    int rc = store_lock(s, "migrate");
    if (rc)
        return rc;
    if ((rc = store_begin(s)))
        goto out;
    /* another process may have migrated it while we waited */
    if ((rc = store_meta_get_int(s, "format", &format)) == LETHE_OK && format == 2)
        rc = migrate_rows(s);
    if (rc == LETHE_OK)
        rc = store_commit(s);
    else
        store_rollback(s);
out:
    store_unlock(s);
    if (rc == LETHE_OK)
        s->migrate = 0;
    return rc;
}

/* ---------------------------------------------------------------- list */

static const char list_sql[] =
    "SELECT m.id, m.name, m.version, m.weights, m.precision, m.first_used, "
    "  COALESCE(m.retired_at, ''), "
    "  (SELECT COUNT(*) FROM faces WHERE model = m.id AND has_template), "
    "  (SELECT COUNT(*) FROM faces WHERE model = m.id) "
    "FROM models m";

static void copy_col(sqlite3_stmt *st, int col, char *out, size_t n)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    snprintf(out, n, "%s", t ? (const char *)t : "");
}

static void read_info(sqlite3_stmt *st, lethe_model_info *m)
{
    lethe_model_id shipped;
    memset(m, 0, sizeof(*m));
    m->id = sqlite3_column_int64(st, 0);
    copy_col(st, 1, m->model.name, sizeof(m->model.name));
    copy_col(st, 2, m->model.version, sizeof(m->model.version));
    copy_col(st, 3, m->model.weights, sizeof(m->model.weights));
    copy_col(st, 4, m->model.precision, sizeof(m->model.precision));
    copy_col(st, 5, m->first_used, sizeof(m->first_used));
    copy_col(st, 6, m->retired_at, sizeof(m->retired_at));
    m->templates = (uint64_t)sqlite3_column_int64(st, 7);
    m->faces = (uint64_t)sqlite3_column_int64(st, 8);
    lethe_model_shipped(&shipped);
    m->shipped = !strcmp(shipped.name, m->model.name) &&
                 !strcmp(shipped.version, m->model.version) &&
                 !strcmp(shipped.weights, m->model.weights) &&
                 !strcmp(shipped.precision, m->model.precision);
}

/* Rows of list_sql + where (bound by bind(ctx, st)) into *out. */
static int list_where(lethe_store *s, const char *where, const lethe_model_id *m, int64_t id,
                      lethe_model_info **out, size_t *n)
{
    char sql[sizeof(list_sql) + 160];
    sqlite3_stmt *st;
    size_t cap = 0;
    int rc, step;
    *out = NULL;
    *n = 0;
    snprintf(sql, sizeof(sql), "%s %s ORDER BY m.id", list_sql, where);
    if ((rc = store_prepare(s, sql, &st)))
        return rc;
    if (id > 0)
        sqlite3_bind_int64(st, 1, id);
    else if (m) {
        int b = sqlite3_bind_text(st, 1, m->name, -1, SQLITE_TRANSIENT);
        if (m->version[0])
            b |= sqlite3_bind_text(st, 2, m->version, -1, SQLITE_TRANSIENT);
        if (m->weights[0])
            b |= sqlite3_bind_text(st, 3, m->weights, -1, SQLITE_TRANSIENT);
        b |= sqlite3_bind_text(st, 4, m->precision, -1, SQLITE_TRANSIENT);
        rc = store_bound(s, b, "finding a model");
    }
    while (rc == LETHE_OK && (step = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            size_t nc = cap ? cap * 2 : 8;
            lethe_model_info *t = lethe_realloc(*out, nc * sizeof(*t));
            if (!t) {
                rc = store_fail(s, LETHE_ERR_NOMEM, "out of memory");
                break;
            }
            *out = t;
            cap = nc;
        }
        read_info(st, &(*out)[(*n)++]);
    }
    if (rc == LETHE_OK && step != SQLITE_DONE)
        rc = store_sqlfail(s, "listing the models");
    sqlite3_finalize(st);
    if (rc) {
        lethe_free(*out);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

int lethe_model_list(lethe_store *s, lethe_model_info **out, size_t *n)
{
    int rc = store_exec(s, "BEGIN");
    if (rc)
        return rc;
    rc = list_where(s, "", NULL, 0, out, n);
    store_end_read(s);
    return rc;
}

void lethe_free_models(lethe_model_info *models)
{
    lethe_free(models);
}

int store_model_find(lethe_store *s, const char *which, lethe_model_info *info)
{
    lethe_model_info *all = NULL;
    lethe_model_id m;
    char msg[256], *end;
    size_t n = 0;
    int rc;
    if (!which || !*which)
        return store_fail(s, LETHE_ERR_ARG, "no model given");
    long long id = strtoll(which, &end, 10);
    if (*end == 0 && id > 0) {
        rc = list_where(s, "WHERE m.id = ?1", NULL, id, &all, &n);
    } else {
        if ((rc = lethe_model_parse(which, &m, msg, sizeof(msg))))
            return store_fail(s, rc, "%s", msg);
        rc = list_where(s, "WHERE m.name = ?1 AND (?2 IS NULL OR m.version = ?2) AND "
                           "(?3 IS NULL OR m.weights = ?3) AND m.precision = ?4",
                        &m, 0, &all, &n);
    }
    if (rc == LETHE_OK && n == 0)
        rc = store_fail(s, LETHE_ERR_NOT_FOUND, "no model \"%.200s\" in this store (`lethe model "
                        "list` shows them)", which);
    else if (rc == LETHE_OK && n > 1)
        rc = store_fail(s, LETHE_ERR_ARG, "\"%.200s\" names %zu models: give NAME@VERSION"
                        "[@WEIGHTS] or the number `lethe model list` shows", which, n);
    if (rc == LETHE_OK)
        *info = all[0];
    lethe_free(all);
    return rc;
}

int lethe_model_find(lethe_store *s, const char *which, lethe_model_info *info)
{
    int rc = store_exec(s, "BEGIN");
    if (rc)
        return rc;
    rc = store_model_find(s, which, info);
    store_end_read(s);
    return rc;
}

int store_model_valid(const lethe_model_id *m)
{
    size_t w = strnlen(m->weights, sizeof(m->weights));
    return part_ok(m->name, strnlen(m->name, sizeof(m->name)), sizeof(m->name)) &&
           part_ok(m->version, strnlen(m->version, sizeof(m->version)), sizeof(m->version)) &&
           (w == 0 || part_ok(m->weights, w, sizeof(m->weights))) &&
           part_ok(m->precision, strnlen(m->precision, sizeof(m->precision)),
                   sizeof(m->precision));
}
