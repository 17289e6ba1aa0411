/*
 * backup_info.c: backup.json, the description of a backup that restore
 * reads as hostile input (a fuzz target), and hashing a backup's catalog.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "forget/backup.h"
#include "forget/keyring.h"
#include "lethe.h"
#include "util/json.h"
#include "util/util.h"

char *backup_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = lethe_malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

int backup_file_hash(const char *path, char hex[65], char *msg, size_t msg_len)
{
    crypto_generichash_state h;
    uint8_t buf[1 << 16], out[32];
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return lethe_fail(msg, msg_len, LETHE_ERR_IO, "%s: %s", path, strerror(errno));
    crypto_generichash_init(&h, NULL, 0, sizeof(out));
    for (;;) {
        ssize_t r = read(fd, buf, sizeof(buf));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            return lethe_fail(msg, msg_len, LETHE_ERR_IO, "%s: %s", path, strerror(e));
        }
        if (r == 0)
            break;
        crypto_generichash_update(&h, buf, (size_t)r);
    }
    close(fd);
    crypto_generichash_final(&h, out, sizeof(out));
    sodium_bin2hex(hex, 65, out, sizeof(out));
    return LETHE_OK;
}

int backup_info_parse(const char *text, size_t len, backup_info *bi, char *msg, size_t msg_len)
{
    json_value *doc = NULL;
    char err[256];
    memset(bi, 0, sizeof(*bi));
    if (json_parse(text, len, &doc, err, sizeof(err)) != 0)
        return lethe_fail(msg, msg_len, LETHE_ERR_FORMAT, "backup.json: %s", err);
    int rc = LETHE_OK;
    const json_value *v = json_get(doc, "lethe_backup"), *f = json_get(doc, "format"),
                     *q = json_get(doc, "log_seq");
    const char *fields[] = {"created_at", "store_id", "digest", "log_hash", "catalog_blake2b"};
    size_t want[] = {0, 2 * KR_STORE_ID, 64, 64, 64};
    char *dst[] = {bi->created_at, bi->store_id, bi->digest, bi->log_hash, bi->catalog_hash};
    size_t cap[] = {sizeof(bi->created_at), sizeof(bi->store_id), sizeof(bi->digest),
                    sizeof(bi->log_hash), sizeof(bi->catalog_hash)};
    if (!doc || doc->type != JSON_OBJECT || !v || v->type != JSON_NUMBER || v->number != 2) {
        rc = lethe_fail(msg, msg_len, LETHE_ERR_FORMAT,
                        "backup.json: not a lethe backup of this version (lethe_backup 2)");
        goto out;
    }
    if (!f || f->type != JSON_NUMBER || f->number != LETHE_STORE_FORMAT || !q ||
        q->type != JSON_NUMBER || !(q->number >= 1 && q->number < 9e15) ||
        q->number != floor(q->number)) {
        rc = lethe_fail(msg, msg_len, LETHE_ERR_FORMAT,
                        "backup.json: format or log_seq missing or not of this lethe (format %d)",
                        LETHE_STORE_FORMAT);
        goto out;
    }
    bi->format = (int)f->number;
    bi->log_seq = (int64_t)q->number;
    for (int i = 0; i < 5; i++) {
        const char *t = json_get_string(doc, fields[i]);
        size_t n = t ? strlen(t) : 0;
        int ok = t && n < cap[i] && (want[i] ? n == want[i] : n > 0);
        for (size_t k = 0; ok && want[i] && k < n; k++)
            ok = (t[k] >= '0' && t[k] <= '9') || (t[k] >= 'a' && t[k] <= 'f');
        if (!ok) {
            rc = lethe_fail(msg, msg_len, LETHE_ERR_FORMAT, "backup.json: \"%s\" is missing or "
                            "malformed", fields[i]);
            goto out;
        }
        memcpy(dst[i], t, n + 1);
    }
out:
    json_free(doc);
    return rc;
}

