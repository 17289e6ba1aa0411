/*
 * analyze.c: photos in one call (lethe.h section 3): read a file or take
 * bytes, decode, analyse, and say why in the caller's buffer when anything
 * fails. This is the one place where "decode these bytes, analyse them" is
 * written; the CLI, the batch analyser (batch.c), ingest and a server call
 * it. Nothing here touches state shared between threads but the engine's
 * own thread-safe analysis.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "face/engine_int.h"
#include "util/util.h"

/* As lethe_image_load: no photo file is larger. */
#define ANALYZE_MAX_FILE_BYTES ((size_t)256 << 20)

/* The longest message a step below writes before the caller adds a path. */
#define STEP_MSG 512

static void analysis_clear(lethe_analysis *out)
{
    memset(out, 0, sizeof(*out));
}

/*
 * Read the regular file at path. Anything else (a FIFO above all, whose
 * open would wait for a writer) is refused by stat before it is opened;
 * the open itself does not wait (O_NONBLOCK), and fstat checks again what
 * was opened, in case the path changed in between.
 */
static int read_photo_file(const char *path, uint8_t **out, size_t *len, char *msg,
                           size_t msg_len)
{
    struct stat st;
    uint8_t *buf;
    size_t got = 0;
    int fd;

    *out = NULL;
    *len = 0;
    if (stat(path, &st) != 0)
        return lethe_fail(msg, msg_len, errno == ENOENT ? LETHE_ERR_NOT_FOUND : LETHE_ERR_IO,
                          "cannot open %s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return lethe_fail(msg, msg_len, LETHE_ERR_IO, "%s is not a regular file", path);
    fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return lethe_fail(msg, msg_len, errno == ENOENT ? LETHE_ERR_NOT_FOUND : LETHE_ERR_IO,
                          "cannot open %s: %s", path, strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return lethe_fail(msg, msg_len, LETHE_ERR_IO, "%s is not a regular file", path);
    }
    if ((uint64_t)st.st_size > ANALYZE_MAX_FILE_BYTES) {
        close(fd);
        return lethe_fail(msg, msg_len, LETHE_ERR_TOO_LARGE,
                          "%s is %lld bytes, more than the limit of %zu", path,
                          (long long)st.st_size, ANALYZE_MAX_FILE_BYTES);
    }
    buf = lethe_malloc((size_t)st.st_size + 1);
    if (!buf) {
        close(fd);
        return lethe_fail(msg, msg_len, LETHE_ERR_NOMEM, "out of memory reading %s", path);
    }
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int err = r < 0 ? errno : 0;
            close(fd);
            lethe_free(buf);
            return lethe_fail(msg, msg_len, LETHE_ERR_IO, "cannot read %s: %s", path,
                              err ? strerror(err) : "it shrank while being read");
        }
        got += (size_t)r;
    }
    close(fd);
    *out = buf;
    *len = got;
    return LETHE_OK;
}

/* Decode and analyse; messages as the decoder and the engine word them. */
static int analyse_bytes(lethe_engine *e, const void *data, size_t len,
                         const lethe_image_options *image_opt, unsigned flags,
                         lethe_analysis *out, char *msg, size_t msg_len)
{
    lethe_image *img = NULL;
    int rc = lethe_image_decode(data, len, image_opt, &img, msg, msg_len);
    if (rc != LETHE_OK)
        return rc;
    out->width = img->orig_width > 0 ? img->orig_width : img->width;
    out->height = img->orig_height > 0 ? img->orig_height : img->height;
    rc = engine_analyze(e, img, flags, &out->faces, &out->count, msg, msg_len);
    lethe_image_free(img);
    return rc;
}

int lethe_engine_analyze_bytes(lethe_engine *engine, const void *data, size_t len,
                               const lethe_image_options *image_opt, unsigned flags,
                               lethe_analysis *out, char *msg, size_t msg_len)
{
    if (msg && msg_len)
        msg[0] = '\0';
    if (!out)
        return lethe_fail(msg, msg_len, LETHE_ERR_ARG, "lethe_engine_analyze_bytes: out is NULL");
    analysis_clear(out);
    if (!engine)
        return lethe_fail(msg, msg_len, LETHE_ERR_ARG, "lethe_engine_analyze_bytes: no engine");
    if (!data && len)
        return lethe_fail(msg, msg_len, LETHE_ERR_ARG, "lethe_engine_analyze_bytes: data is NULL");
    return analyse_bytes(engine, data, len, image_opt, flags, out, msg, msg_len);
}

int lethe_engine_analyze_file(lethe_engine *engine, const char *path,
                              const lethe_image_options *image_opt, unsigned flags,
                              lethe_analysis *out, char *msg, size_t msg_len)
{
    char why[STEP_MSG];
    uint8_t *buf;
    size_t len;
    int rc;

    if (msg && msg_len)
        msg[0] = '\0';
    if (!out)
        return lethe_fail(msg, msg_len, LETHE_ERR_ARG, "lethe_engine_analyze_file: out is NULL");
    analysis_clear(out);
    if (!engine || !path)
        return lethe_fail(msg, msg_len, LETHE_ERR_ARG,
                          "lethe_engine_analyze_file: no engine or no path");
    /* read_photo_file's messages already name the path */
    rc = read_photo_file(path, &buf, &len, msg, msg_len);
    if (rc != LETHE_OK)
        return rc;
    why[0] = '\0';
    rc = analyse_bytes(engine, buf, len, image_opt, flags, out, why, sizeof(why));
    lethe_free(buf);
    if (rc != LETHE_OK)
        return lethe_fail(msg, msg_len, rc, "%s: %s", path, why);
    return LETHE_OK;
}
