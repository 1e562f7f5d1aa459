/*
 * The in-memory Raft log: the entries after the last snapshot point, with the
 * snapshot's (index, term) standing in for the compacted prefix (§7). The
 * caller's WAL holds the durable copy; this one is what the core reads.
 * Entries hold references on shared buffers, so handing them out in a ready
 * or a message costs no copy.
 */
#include <string.h>

#include "../common/errors.h"
#include "internal.h"

struct raft_buf *raft_buf_new(const void *data, size_t len)
{
	struct raft_buf *b = malloc(sizeof(*b) + (len ? len : 1));

	if (!b)
		return NULL;
	b->refs = 1;
	b->len = len;
	if (len && data)
		memcpy(b->data, data, len);
	return b;
}

struct raft_buf *raft_buf_ref(struct raft_buf *b)
{
	if (b)
		b->refs++;
	return b;
}

void raft_buf_unref(struct raft_buf *b)
{
	if (b && --b->refs == 0)
		free(b);
}

void raft_entry_copy(struct raft_entry *dst, const struct raft_entry *src)
{
	*dst = *src;
	raft_buf_ref(dst->buf);
}

void raft_entry_release(struct raft_entry *e)
{
	raft_buf_unref(e->buf);
	e->buf = NULL;
	e->data = NULL;
}

void raft_log_init(struct raft_log *l)
{
	memset(l, 0, sizeof(*l));
}

void raft_log_close(struct raft_log *l)
{
	for (size_t i = 0; i < l->n; i++)
		raft_entry_release(&l->e[i]);
	free(l->e);
	raft_log_init(l);
}

uint64_t raft_log_last_index(const struct raft_log *l)
{
	return l->snap_index + l->n;
}

uint64_t raft_log_last_term(const struct raft_log *l)
{
	return l->n ? l->e[l->n - 1].term : l->snap_term;
}

int raft_log_term(const struct raft_log *l, uint64_t index, uint64_t *term)
{
	*term = 0;
	if (index == l->snap_index) {
		*term = l->snap_term;
		return 0;
	}
	if (index < l->snap_index || index > raft_log_last_index(l))
		return QFS_ENOENT;
	*term = l->e[index - l->snap_index - 1].term;
	return 0;
}

const struct raft_entry *raft_log_get(const struct raft_log *l, uint64_t index)
{
	if (index <= l->snap_index || index > raft_log_last_index(l))
		return NULL;
	return &l->e[index - l->snap_index - 1];
}

int raft_log_append(struct raft_log *l, const struct raft_entry *e)
{
	if (e->index != raft_log_last_index(l) + 1)
		return QFS_EINVAL;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		struct raft_entry *ne = realloc(l->e, cap * sizeof(*ne));

		if (!ne)
			return QFS_ENOMEM;
		l->e = ne;
		l->cap = cap;
	}
	raft_entry_copy(&l->e[l->n++], e);
	return 0;
}

void raft_log_truncate(struct raft_log *l, uint64_t index)
{
	while (l->n && raft_log_last_index(l) >= index)
		raft_entry_release(&l->e[--l->n]);
}

void raft_log_compact(struct raft_log *l, uint64_t index)
{
	size_t k;

	if (index <= l->snap_index)
		return;
	k = index - l->snap_index;
	if (k > l->n)
		k = l->n;
	l->snap_term = l->e[k - 1].term;
	for (size_t i = 0; i < k; i++)
		raft_entry_release(&l->e[i]);
	memmove(l->e, l->e + k, (l->n - k) * sizeof(*l->e));
	l->n -= k;
	l->snap_index += k;
}

void raft_log_reset(struct raft_log *l, uint64_t index, uint64_t term)
{
	for (size_t i = 0; i < l->n; i++)
		raft_entry_release(&l->e[i]);
	l->n = 0;
	l->snap_index = index;
	l->snap_term = term;
}

bool raft_log_up_to_date(const struct raft_log *l, uint64_t index, uint64_t term)
{
	uint64_t lt = raft_log_last_term(l);

	return term > lt || (term == lt && index >= raft_log_last_index(l));
}
