/*
 * exif.c: find the Orientation tag in a JPEG APP1 EXIF block.
 *
 * Layout: "Exif\0\0", then a TIFF header ("II" little-endian or "MM"
 * big-endian, the number 42, the 32-bit offset of IFD0), all offsets counted
 * from the start of the TIFF header. IFD0 is a 16-bit entry count followed by
 * 12-byte entries {tag, type, count, value-or-offset}. Orientation is tag
 * 0x0112, type SHORT, count 1, with the value in the entry itself.
 *
 * The block comes straight from the file: every read is bounds-checked and a
 * malformed block simply means "no orientation" (1), never an error, because
 * the pixels are still fine.
 */
#include "image/image_int.h"

#include <string.h>

#define EXIF_TAG_ORIENTATION 0x0112
#define TIFF_TYPE_SHORT 3
#define TIFF_TYPE_LONG 4

typedef struct tiff_reader {
    const uint8_t *p; /* the TIFF header */
    size_t len;       /* bytes from p to the end of the block */
    int big_endian;   /* "MM" */
} tiff_reader;

/* Read a 16/32-bit value at off; 0 when it would run past the end. */
static int tiff_u16(const tiff_reader *t, size_t off, uint32_t *v)
{
    if (off > t->len || t->len - off < 2)
        return 0;
    if (t->big_endian)
        *v = (uint32_t)t->p[off] << 8 | t->p[off + 1];
    else
        *v = (uint32_t)t->p[off + 1] << 8 | t->p[off];
    return 1;
}

static int tiff_u32(const tiff_reader *t, size_t off, uint32_t *v)
{
    uint32_t hi, lo;

    if (!tiff_u16(t, off, t->big_endian ? &hi : &lo) ||
        !tiff_u16(t, off + 2, t->big_endian ? &lo : &hi))
        return 0;
    *v = hi << 16 | lo;
    return 1;
}

int lethe_exif_orientation(const uint8_t *data, size_t len)
{
    tiff_reader t;
    uint32_t magic, ifd, count;

    if (!data || len < 6 || memcmp(data, "Exif\0\0", 6) != 0)
        return 1;
    t.p = data + 6;
    t.len = len - 6;
    if (t.len < 8)
        return 1;
    if (t.p[0] == 'I' && t.p[1] == 'I')
        t.big_endian = 0;
    else if (t.p[0] == 'M' && t.p[1] == 'M')
        t.big_endian = 1;
    else
        return 1;
    if (!tiff_u16(&t, 2, &magic) || magic != 42 || !tiff_u32(&t, 4, &ifd))
        return 1;
    if (ifd >= t.len || !tiff_u16(&t, ifd, &count))
        return 1;
    for (uint32_t i = 0; i < count; i++) {
        /* ifd < len and i < 2^16, so this cannot wrap; reads past the end
         * are refused by tiff_u16. */
        size_t entry = (size_t)ifd + 2 + (size_t)i * 12;
        uint32_t tag, type, n, value;
        if (!tiff_u16(&t, entry, &tag) || !tiff_u16(&t, entry + 2, &type) ||
            !tiff_u32(&t, entry + 4, &n))
            return 1;
        if (tag != EXIF_TAG_ORIENTATION)
            continue;
        if (n != 1)
            return 1;
        /* SHORT per the standard; a few writers use LONG. */
        if (type == TIFF_TYPE_SHORT) {
            if (!tiff_u16(&t, entry + 8, &value))
                return 1;
        } else if (type == TIFF_TYPE_LONG) {
            if (!tiff_u32(&t, entry + 8, &value))
                return 1;
        } else {
            return 1;
        }
        return value >= 1 && value <= 8 ? (int)value : 1;
    }
    return 1;
}
