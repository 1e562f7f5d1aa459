/* qbuf and qreader: see codec.h. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "errors.h"

void qbuf_init(struct qbuf *b)
{
	memset(b, 0, sizeof(*b));
}

void qbuf_close(struct qbuf *b)
{
	free(b->data);
	qbuf_init(b);
}

int qbuf_error(const struct qbuf *b)
{
	return b->failed ? QFS_ENOMEM : 0;
}

uint8_t *qbuf_reserve(struct qbuf *b, size_t n)
{
	uint8_t *p;
	size_t cap;

	if (b->failed)
		return NULL;
	if (n > SIZE_MAX / 2 - b->len) {
		b->failed = 1;
		return NULL;
	}
	if (b->len + n > b->cap) {
		cap = b->cap ? b->cap : 256;
		while (cap < b->len + n)
			cap *= 2;
		p = realloc(b->data, cap);
		if (!p) {
			b->failed = 1;
			return NULL;
		}
		b->data = p;
		b->cap = cap;
	}
	p = b->data + b->len;
	b->len += n;
	return p;
}

void qbuf_put(struct qbuf *b, const void *p, size_t n)
{
	uint8_t *dst = qbuf_reserve(b, n);

	if (dst && n)
		memcpy(dst, p, n);
}

void qbuf_put_u8(struct qbuf *b, uint8_t v)
{
	qbuf_put(b, &v, 1);
}

void qbuf_put_u32(struct qbuf *b, uint32_t v)
{
	uint8_t *dst = qbuf_reserve(b, 4);

	if (dst)
		qfs_le32_put(dst, v);
}

void qbuf_put_u64(struct qbuf *b, uint64_t v)
{
	uint8_t *dst = qbuf_reserve(b, 8);

	if (dst)
		qfs_le64_put(dst, v);
}

void qbuf_printf(struct qbuf *b, const char *fmt, ...)
{
	va_list ap;
	char *p;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !(p = (char *)qbuf_reserve(b, (size_t)n + 1))) {
		b->failed = 1;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(p, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len--; /* the terminating NUL stays, past len */
}

void qbuf_put_bytes(struct qbuf *b, const void *p, size_t n)
{
	if (n > UINT32_MAX) {
		b->failed = 1;
		return;
	}
	qbuf_put_u32(b, (uint32_t)n);
	qbuf_put(b, p, n);
}

uint8_t *qbuf_take(struct qbuf *b, size_t *len)
{
	uint8_t *p = b->data;

	*len = b->len;
	qbuf_init(b);
	return p;
}

void qreader_init(struct qreader *r, const void *p, size_t n)
{
	r->p = p;
	r->left = n;
	r->failed = 0;
}

int qreader_error(const struct qreader *r)
{
	return r->failed ? QFS_EMSG : 0;
}

const uint8_t *qreader_raw(struct qreader *r, size_t n)
{
	const uint8_t *p;

	if (r->failed || n > r->left) {
		r->failed = 1;
		return NULL;
	}
	p = r->p;
	r->p += n;
	r->left -= n;
	return p;
}

uint8_t qreader_u8(struct qreader *r)
{
	const uint8_t *p = qreader_raw(r, 1);

	return p ? p[0] : 0;
}

uint32_t qreader_u32(struct qreader *r)
{
	const uint8_t *p = qreader_raw(r, 4);

	return p ? qfs_le32_get(p) : 0;
}

uint64_t qreader_u64(struct qreader *r)
{
	const uint8_t *p = qreader_raw(r, 8);

	return p ? qfs_le64_get(p) : 0;
}

const uint8_t *qreader_bytes(struct qreader *r, size_t max, size_t *len)
{
	uint32_t n = qreader_u32(r);
	const uint8_t *p;

	if (r->failed || n > max) {
		r->failed = 1;
		*len = 0;
		return NULL;
	}
	p = qreader_raw(r, n);
	*len = p ? n : 0;
	return p;
}
