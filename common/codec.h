/*
 * Little-endian binary encoding shared by every on-disk and on-wire format:
 * a growable output buffer (qbuf) and a bounds-checked reader (qreader).
 *
 * Writers never fail midway: a qbuf that ran out of memory remembers it and
 * qbuf_error() reports QFS_ENOMEM once the whole record is written. Readers
 * check every length against what is left before touching memory; after the
 * first short read every later get returns zeroes and qreader_error() reports
 * QFS_EMSG, so decoders can read a whole record and check once at the end.
 */
#ifndef QFS_CODEC_H
#define QFS_CODEC_H

#include <stddef.h>
#include <stdint.h>

struct qbuf {
	uint8_t *data; /* owned; free with qbuf_close() */
	size_t len;
	size_t cap;
	int failed;
};

void qbuf_init(struct qbuf *b);
void qbuf_close(struct qbuf *b);
/* Returns 0 or QFS_ENOMEM if any earlier append failed. */
int qbuf_error(const struct qbuf *b);
/* Makes room for n more bytes; returns a pointer to them or NULL. */
uint8_t *qbuf_reserve(struct qbuf *b, size_t n);
void qbuf_put(struct qbuf *b, const void *p, size_t n);
void qbuf_put_u8(struct qbuf *b, uint8_t v);
void qbuf_put_u32(struct qbuf *b, uint32_t v);
void qbuf_put_u64(struct qbuf *b, uint64_t v);
/* Formatted text (no NUL counted in len; one is kept after it). */
void qbuf_printf(struct qbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* u32 length followed by the bytes. */
void qbuf_put_bytes(struct qbuf *b, const void *p, size_t n);
/* Takes the buffer: the caller owns *data (free()) and b is reset. */
uint8_t *qbuf_take(struct qbuf *b, size_t *len);

struct qreader {
	const uint8_t *p; /* borrowed */
	size_t left;
	int failed;
};

void qreader_init(struct qreader *r, const void *p, size_t n);
int qreader_error(const struct qreader *r);
uint8_t qreader_u8(struct qreader *r);
uint32_t qreader_u32(struct qreader *r);
uint64_t qreader_u64(struct qreader *r);
/* n raw bytes; returns a pointer into the input or NULL when short. */
const uint8_t *qreader_raw(struct qreader *r, size_t n);
/* u32 length then bytes; fails if length > max. *len gets the length. */
const uint8_t *qreader_bytes(struct qreader *r, size_t max, size_t *len);

static inline void qfs_le32_put(uint8_t *p, uint32_t v)
{
	p[0] = v;
	p[1] = v >> 8;
	p[2] = v >> 16;
	p[3] = v >> 24;
}

static inline uint32_t qfs_le32_get(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static inline void qfs_le64_put(uint8_t *p, uint64_t v)
{
	qfs_le32_put(p, (uint32_t)v);
	qfs_le32_put(p + 4, (uint32_t)(v >> 32));
}

static inline uint64_t qfs_le64_get(const uint8_t *p)
{
	return (uint64_t)qfs_le32_get(p) | (uint64_t)qfs_le32_get(p + 4) << 32;
}

#endif
