/* The address book: see book.h. A small array; clusters have few members. */
#include <string.h>

#include "../common/errors.h"
#include "book.h"

static int fits(const char *s)
{
	return !s || strlen(s) <= BOOK_STR_MAX;
}

int book_set(struct book *b, uint64_t id, const char *name, const char *peer, const char *client)
{
	struct book_entry *e = (struct book_entry *)book_find(b, id);

	if (!fits(name) || !fits(peer) || !fits(client) || id == 0)
		return QFS_EINVAL;
	if (!e) {
		if (b->n == BOOK_MAX)
			return QFS_ENOSPC;
		e = &b->e[b->n++];
		memset(e, 0, sizeof(*e));
		e->id = id;
	}
	if (name && *name)
		strcpy(e->name, name);
	if (peer && *peer)
		strcpy(e->peer, peer);
	if (client && *client)
		strcpy(e->client, client);
	return 0;
}

void book_remove(struct book *b, uint64_t id)
{
	for (size_t i = 0; i < b->n; i++) {
		if (b->e[i].id == id) {
			b->e[i] = b->e[--b->n];
			return;
		}
	}
}

const struct book_entry *book_find(const struct book *b, uint64_t id)
{
	for (size_t i = 0; i < b->n; i++) {
		if (b->e[i].id == id)
			return &b->e[i];
	}
	return NULL;
}

const struct book_entry *book_find_name(const struct book *b, const char *name)
{
	for (size_t i = 0; i < b->n; i++) {
		if (strcmp(b->e[i].name, name) == 0)
			return &b->e[i];
	}
	return NULL;
}

void book_encode(const struct book *b, struct qbuf *out)
{
	qbuf_put_u32(out, (uint32_t)b->n);
	for (size_t i = 0; i < b->n; i++) {
		qbuf_put_u64(out, b->e[i].id);
		qbuf_put_bytes(out, b->e[i].name, strlen(b->e[i].name));
		qbuf_put_bytes(out, b->e[i].peer, strlen(b->e[i].peer));
		qbuf_put_bytes(out, b->e[i].client, strlen(b->e[i].client));
	}
}

static void get_str(struct qreader *r, char *out)
{
	size_t len;
	const uint8_t *p = qreader_bytes(r, BOOK_STR_MAX, &len);

	if (p && memchr(p, 0, len))
		r->failed = 1;
	if (p && !r->failed)
		memcpy(out, p, len);
	out[p ? len : 0] = 0;
}

int book_decode(struct book *b, struct qreader *r)
{
	struct book tmp;
	uint32_t n = qreader_u32(r);

	memset(&tmp, 0, sizeof(tmp));
	if (n > BOOK_MAX)
		return QFS_EMSG;
	for (uint32_t i = 0; i < n && !r->failed; i++) {
		tmp.e[i].id = qreader_u64(r);
		get_str(r, tmp.e[i].name);
		get_str(r, tmp.e[i].peer);
		get_str(r, tmp.e[i].client);
	}
	if (qreader_error(r))
		return QFS_EMSG;
	tmp.n = n;
	*b = tmp;
	return 0;
}
