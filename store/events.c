/*
 * The event index behind store_events() (see struct events in store_int.h):
 * one flat array of changed nodes, cut into revisions by a sorted array of
 * (revision, start) pairs. Revisions without a surviving change (a key
 * created and deleted in one transaction) have no entry.
 *
 * A transaction appends its revision at commit, after reserving room while
 * it can still be undone; compaction trims the front; a snapshot load
 * rebuilds the index from the version histories (the snapshot format does
 * not carry it). Within a revision nodes are in key_cmp order, the tree
 * order, so the events of a key and its subtree are one contiguous run.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/errors.h"
#include "store_int.h"

int events_reserve(struct store *s, size_t n)
{
	struct events *e = &s->events;

	if (e->nrevs == e->revcap) {
		size_t cap = e->revcap ? e->revcap * 2 : 64;
		struct ev_rev *r = realloc(e->revs, cap * sizeof(*r));

		if (!r)
			return QFS_ENOMEM;
		e->revs = r;
		e->revcap = cap;
	}
	if (n > e->nodecap - e->nnodes) {
		size_t cap = e->nodecap ? e->nodecap : 64;
		struct node **p;

		while (cap - e->nnodes < n) {
			if (cap > SIZE_MAX / 2 / sizeof(*p))
				return QFS_ENOMEM;
			cap *= 2;
		}
		p = realloc(e->nodes, cap * sizeof(*p));
		if (!p)
			return QFS_ENOMEM;
		e->nodes = p;
		e->nodecap = cap;
	}
	return 0;
}

size_t events_begin(const struct store *s)
{
	return s->events.nnodes;
}

void events_push(struct store *s, struct node *n)
{
	s->events.nodes[s->events.nnodes++] = n;
}

static int node_ptr_cmp(const void *a, const void *b)
{
	const struct node *x = *(struct node *const *)a, *y = *(struct node *const *)b;

	return key_cmp(x->key, y->key);
}

void events_end(struct store *s, uint64_t rev, size_t start)
{
	struct events *e = &s->events;

	if (e->nnodes == start)
		return;
	qsort(e->nodes + start, e->nnodes - start, sizeof(*e->nodes), node_ptr_cmp);
	e->revs[e->nrevs++] = (struct ev_rev){ .rev = rev, .start = start };
}

static size_t rev_end(const struct events *e, size_t i)
{
	return i + 1 < e->nrevs ? e->revs[i + 1].start : e->nnodes;
}

/* Index of the first revision entry >= rev. */
static size_t rev_lower(const struct events *e, uint64_t rev)
{
	size_t lo = 0, hi = e->nrevs;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (e->revs[mid].rev < rev)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

size_t events_through(const struct store *s, uint64_t rev)
{
	const struct events *e = &s->events;
	size_t k = rev_lower(e, rev + 1);

	return k < e->nrevs ? e->revs[k].start : e->nnodes;
}

void events_trim(struct store *s, uint64_t c)
{
	struct events *e = &s->events;
	size_t k = rev_lower(e, c), drop, i;

	if (k == 0)
		return;
	drop = k < e->nrevs ? e->revs[k].start : e->nnodes;
	memmove(e->nodes, e->nodes + drop, (e->nnodes - drop) * sizeof(*e->nodes));
	e->nnodes -= drop;
	memmove(e->revs, e->revs + k, (e->nrevs - k) * sizeof(*e->revs));
	e->nrevs -= k;
	for (i = 0; i < e->nrevs; i++)
		e->revs[i].start -= drop;
}

void events_free(struct events *e)
{
	free(e->revs);
	free(e->nodes);
	memset(e, 0, sizeof(*e));
}

/* ---- Rebuild ------------------------------------------------------------------------ */

struct ev_item {
	uint64_t rev;
	size_t seq; /* the node's position in tree order */
	struct node *node;
};

static int item_cmp(const void *a, const void *b)
{
	const struct ev_item *x = a, *y = b;

	if (x->rev != y->rev)
		return x->rev < y->rev ? -1 : 1;
	return (x->seq > y->seq) - (x->seq < y->seq);
}

int events_rebuild(struct store *s)
{
	struct events *e = &s->events;
	uint64_t base = s->compacted ? s->compacted : 1;
	struct ev_item *items = NULL;
	size_t count = 0, seq = 0, i, nrevs = 0;
	struct node *n;

	events_free(e);
	for (n = s->root; n; n = node_next_preorder(s->root, n))
		for (i = 0; i < n->nvers; i++)
			count += n->vers[i].mod_rev >= base;
	if (count == 0)
		return 0;
	items = malloc(count * sizeof(*items));
	if (!items)
		goto fail;
	count = 0;
	/* Pre-order is key order, so seq sorts a revision's keys. */
	for (n = s->root; n; n = node_next_preorder(s->root, n), seq++) {
		for (i = 0; i < n->nvers; i++)
			if (n->vers[i].mod_rev >= base)
				items[count++] = (struct ev_item){ n->vers[i].mod_rev, seq, n };
	}
	qsort(items, count, sizeof(*items), item_cmp);
	for (i = 0; i < count; i++)
		nrevs += i == 0 || items[i].rev != items[i - 1].rev;
	e->revs = malloc(nrevs * sizeof(*e->revs));
	e->nodes = malloc(count * sizeof(*e->nodes));
	if (!e->revs || !e->nodes)
		goto fail;
	e->revcap = nrevs;
	e->nodecap = count;
	for (i = 0; i < count; i++) {
		if (i == 0 || items[i].rev != items[i - 1].rev)
			e->revs[e->nrevs++] = (struct ev_rev){ .rev = items[i].rev, .start = i };
		e->nodes[e->nnodes++] = items[i].node;
	}
	free(items);
	return 0;

fail:
	free(items);
	events_free(e);
	return QFS_ENOMEM;
}

/* ---- Reads ------------------------------------------------------------------------ */

/* The version of n written at rev (it exists: the index says so). */
static uint32_t version_index(const struct node *n, uint64_t rev)
{
	uint32_t lo = 0, hi = n->nvers;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (n->vers[mid].mod_rev < rev)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* First node in [lo, hi) not before key in key order. */
static size_t key_lower(const struct events *e, size_t lo, size_t hi, const char *key)
{
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (key_cmp(e->nodes[mid]->key, key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int store_events(const struct store *s, uint64_t from, uint64_t to, const char *key,
		 int (*cb)(void *arg, const struct store_event *ev), void *arg)
{
	const struct events *e = &s->events;
	bool all;
	size_t i;
	int rc = store_key_check(key);

	if (rc)
		return rc;
	if (from < s->compacted)
		return QFS_ECOMPACTED;
	if (from > s->rev + 1)
		return QFS_EFUTUREREV;
	if (to == 0 || to > s->rev)
		to = s->rev;
	all = strcmp(key, "/") == 0;
	for (i = rev_lower(e, from); i < e->nrevs && e->revs[i].rev <= to; i++) {
		uint64_t rev = e->revs[i].rev;
		size_t j = e->revs[i].start, end = rev_end(e, i);

		if (!all)
			j = key_lower(e, j, end, key);
		for (; j < end; j++) {
			const struct node *n = e->nodes[j];
			uint32_t k = version_index(n, rev);
			const struct version *v;
			struct store_event ev = { .revision = rev };
			struct store_kv kv;

			if (!all && !key_under(n->key, key))
				break;
			if (k >= n->nvers || n->vers[k].mod_rev != rev ||
			    (n->vers[k].tomb && (k == 0 || n->vers[k - 1].tomb))) {
				fprintf(stderr, "store: event index wrong for %s at %llu\n",
					n->key, (unsigned long long)rev);
				abort();
			}
			v = &n->vers[k];
			ev.type = STORE_EVENT_PUT;
			if (v->tomb) {
				ev.type = STORE_EVENT_DELETE;
				v = &n->vers[k - 1];
			}
			kv_fill(n, v, &kv);
			ev.kv = &kv;
			rc = cb(arg, &ev);
			if (rc)
				return rc;
		}
	}
	return 0;
}
