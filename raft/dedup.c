/* Request-id table for exactly-once apply: see dedup.h. */
#include <stdlib.h>
#include <string.h>

#include "../common/errors.h"
#include "dedup.h"

void raft_dedup_init(struct raft_dedup *d)
{
	memset(d, 0, sizeof(*d));
}

void raft_dedup_close(struct raft_dedup *d)
{
	free(d->o);
	raft_dedup_init(d);
}

static size_t lower_bound(const struct raft_dedup *d, uint64_t origin)
{
	size_t lo = 0, hi = d->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (d->o[mid].origin < origin)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int raft_dedup_check(struct raft_dedup *d, uint64_t origin, uint64_t request_id)
{
	size_t i = lower_bound(d, origin);
	struct raft_dedup_origin *o;
	uint64_t back;

	if (request_id == 0)
		return 1;
	if (i == d->n || d->o[i].origin != origin) {
		if (d->n == d->cap) {
			size_t cap = d->cap ? d->cap * 2 : 8;
			struct raft_dedup_origin *n = realloc(d->o, cap * sizeof(*n));

			if (!n)
				return QFS_ENOMEM;
			d->o = n;
			d->cap = cap;
		}
		memmove(d->o + i + 1, d->o + i, (d->n - i) * sizeof(*d->o));
		d->n++;
		d->o[i] =
		    (struct raft_dedup_origin){.origin = origin, .max_id = request_id, .window = 1};
		return 1;
	}
	o = &d->o[i];
	if (request_id > o->max_id) {
		uint64_t shift = request_id - o->max_id;

		o->window = shift >= RAFT_DEDUP_WINDOW ? 0 : o->window << shift;
		o->window |= 1;
		o->max_id = request_id;
		return 1;
	}
	back = o->max_id - request_id;
	if (back >= RAFT_DEDUP_WINDOW || (o->window >> back) & 1)
		return 0;
	o->window |= (uint64_t)1 << back;
	return 1;
}

int raft_dedup_encode(const struct raft_dedup *d, struct qbuf *out)
{
	qbuf_put_u32(out, (uint32_t)d->n);
	for (size_t i = 0; i < d->n; i++) {
		qbuf_put_u64(out, d->o[i].origin);
		qbuf_put_u64(out, d->o[i].max_id);
		qbuf_put_u64(out, d->o[i].window);
	}
	return qbuf_error(out);
}

int raft_dedup_decode(struct raft_dedup *d, struct qreader *rd)
{
	uint32_t n = qreader_u32(rd);
	struct raft_dedup_origin *a = NULL;

	if (qreader_error(rd) || n > RAFT_DEDUP_MAX_ORIGINS || n > rd->left / 24)
		return QFS_EMSG;
	if (n) {
		a = calloc(n, sizeof(*a));
		if (!a)
			return QFS_ENOMEM;
	}
	for (uint32_t i = 0; i < n; i++) {
		a[i].origin = qreader_u64(rd);
		a[i].max_id = qreader_u64(rd);
		a[i].window = qreader_u64(rd);
		if (i && a[i].origin <= a[i - 1].origin)
			break;
	}
	for (uint32_t i = 1; i < n; i++) {
		if (a[i].origin <= a[i - 1].origin) {
			free(a);
			return QFS_EMSG;
		}
	}
	if (qreader_error(rd)) {
		free(a);
		return QFS_EMSG;
	}
	free(d->o);
	d->o = a;
	d->n = d->cap = n;
	return 0;
}
