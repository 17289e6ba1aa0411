/*
 * manifest_path.c: keeping a manifest's rows inside the manifest's folder.
 *
 * The manual says a row's path is relative to the manifest's folder; a
 * manifest written by someone else must not make lethe read
 * ../../etc/shadow, /root/.ssh/id_ed25519 or a symbolic link that leads out
 * of the folder. Two checks, both needed: a lexical one (absolute, or `..`
 * climbing above the start), which also works when there is no folder on
 * disk (a manifest held in memory), and a real-path one (symbolic links
 * resolved on both sides), which catches links.
 *
 * What remains: the check and the later open are two steps, so a path
 * swapped for a link in between is not caught here (only an open relative
 * to the folder with RESOLVE_BENEATH would close that).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manifest/manifest.h"
#include "util/util.h"

int manifest_path_lexically_inside(const char *path)
{
    long depth = 0;
    const char *p = path;

    if (path[0] == '/')
        return 0;
    while (*p) {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 2 && p[0] == '.' && p[1] == '.') {
            if (--depth < 0)
                return 0;
        } else if (n > 0 && !(n == 1 && p[0] == '.')) {
            depth++;
        }
        p += n;
        if (*p == '/')
            p++;
    }
    return 1;
}

/* Whether real (a resolved path) is base_real or below it. */
static int below(const char *real, const char *base_real)
{
    size_t n = strlen(base_real);

    if (n == 1 && base_real[0] == '/')
        return 1;
    return strncmp(real, base_real, n) == 0 && (real[n] == '\0' || real[n] == '/');
}

int manifest_path_really_inside(const char *resolved, const char *base_real)
{
    char real[PATH_MAX], parent[PATH_MAX];
    const char *slash;
    size_t n;

    if (realpath(resolved, real))
        return below(real, base_real);
    if (errno != ENOENT && errno != ENOTDIR)
        return 1; /* unreadable, a loop, too long: the open will fail and say why */
    /*
     * A missing file is the ordinary "missing file" error later, unless the
     * folder it would be in already lies outside (a link to a folder
     * elsewhere): check the folder.
     */
    slash = strrchr(resolved, '/');
    if (!slash)
        return 1; /* in the current folder, which is the manifest's */
    n = slash == resolved ? 1 : (size_t)(slash - resolved);
    if (n >= sizeof(parent))
        return 1;
    memcpy(parent, resolved, n);
    parent[n] = '\0';
    if (!realpath(parent, real))
        return 1;
    return below(real, base_real);
}

void manifest_quote_path(const char *s, char *out, size_t outlen)
{
    size_t o = 0, i;

    if (outlen == 0)
        return;
#define PUT(c)                     \
    do {                           \
        if (o + 1 < outlen)        \
            out[o++] = (char)(c); \
    } while (0)
    PUT('\'');
    for (i = 0; s[i] && i < MANIFEST_QUOTE_MAX; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f || c == '\'' || c == '\\') {
            char hex[5];
            snprintf(hex, sizeof(hex), "\\x%02X", c);
            for (int k = 0; k < 4; k++)
                PUT(hex[k]);
        } else {
            PUT(c);
        }
    }
    if (s[i]) {
        PUT('.');
        PUT('.');
        PUT('.');
    }
    PUT('\'');
#undef PUT
    out[o] = '\0';
}
