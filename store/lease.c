/*
 * Leases (store.h "Leases"): the lease table, ordered by id, and each
 * lease's set of attached keys, ordered by key.
 *
 * Which lease a key is attached to is derived from its current version
 * (struct version.lease) by node_push()/node_pop() through lease_set(), so
 * every way a key changes (write, delete, rename, undo) keeps the sets right
 * without the ops having to. The ops themselves live in txn.c; this file
 * keeps the table, logs every table change in the transaction's undo log,
 * and answers the read API.
 */
#include <stdio.h>
#include <stdlib.h>

#include "../common/errors.h"
#include "store_int.h"

static int lease_cmp(const struct lease *a, const struct lease *b)
{
	return (a->id > b->id) - (a->id < b->id);
}

static int lease_key_cmp(const struct node *a, const struct node *b)
{
	return key_cmp(a->key, b->key);
}

RB_GENERATE(lease_tree, lease, link, lease_cmp)
RB_GENERATE(lease_keys, node, lease_link, lease_key_cmp)

struct lease *lease_find(const struct store *s, uint64_t id)
{
	struct lease probe;

	probe.id = id;
	return RB_FIND(lease_tree, (struct lease_tree *)&s->leases, &probe);
}

void lease_set(struct node *n, struct lease *l)
{
	if (n->lease_of) {
		RB_REMOVE(lease_keys, &n->lease_of->keys, n);
		n->lease_of->nkeys--;
		n->lease_of = NULL;
	}
	if (l) {
		if (RB_INSERT(lease_keys, &l->keys, n)) {
			fprintf(stderr, "store: %s attached twice to lease %llx\n", n->key,
				(unsigned long long)l->id);
			abort();
		}
		l->nkeys++;
		n->lease_of = l;
	}
}

/* Cluster time + ttl, saturating: a far expiry is as good as forever. */
static int64_t expiry_of(const struct store *s, int64_t ttl_ms)
{
	int64_t ttl_ns = ttl_ms * 1000000;

	if (s->cluster_time > INT64_MAX - ttl_ns)
		return INT64_MAX;
	return s->cluster_time + ttl_ns;
}

static int log_rec(struct store *s, const struct undo_rec *u)
{
	int rc;

	if (!s->txn_rev)
		return 0;
	rc = undo_reserve(s);
	if (rc)
		return rc;
	s->undo[s->nundo++] = *u;
	return 0;
}

int lease_grant(struct store *s, uint64_t id, int64_t ttl_ms)
{
	struct lease *l;
	int rc;

	if (id == 0 || ttl_ms <= 0 || ttl_ms > STORE_LEASE_TTL_MAX_MS)
		return QFS_EINVAL;
	if (lease_find(s, id))
		return QFS_EEXIST;
	l = calloc(1, sizeof(*l));
	if (!l)
		return QFS_ENOMEM;
	rc = log_rec(s, &(struct undo_rec){ .kind = UNDO_LEASE_ADD, .lease = l });
	if (rc) {
		free(l);
		return rc;
	}
	l->id = id;
	l->ttl_ms = ttl_ms;
	l->expiry_ns = expiry_of(s, ttl_ms);
	l->gen = 1;
	RB_INIT(&l->keys);
	RB_INSERT(lease_tree, &s->leases, l);
	s->size += LEASE_BYTES;
	return 0;
}

int lease_renew(struct store *s, struct lease *l)
{
	int rc = log_rec(s, &(struct undo_rec){ .kind = UNDO_LEASE_RENEW, .lease = l,
						.old_expiry = l->expiry_ns,
						.old_gen = l->gen });

	if (rc)
		return rc;
	l->expiry_ns = expiry_of(s, l->ttl_ms);
	l->gen++;
	return 0;
}

int lease_remove(struct store *s, struct lease *l)
{
	int rc;

	if (l->nkeys || !RB_EMPTY(&l->keys)) {
		fprintf(stderr, "store: removing lease %llx with keys attached\n",
			(unsigned long long)l->id);
		abort();
	}
	rc = log_rec(s, &(struct undo_rec){ .kind = UNDO_LEASE_DEL, .lease = l });
	if (rc)
		return rc;
	RB_REMOVE(lease_tree, &s->leases, l);
	s->size -= LEASE_BYTES;
	/* Outside a transaction nothing can bring it back. */
	if (!s->txn_rev)
		free(l);
	return 0;
}

void lease_undo(struct store *s, const struct undo_rec *u)
{
	struct lease *l = u->lease;

	switch (u->kind) {
	case UNDO_LEASE_ADD:
		/* Keys attached later in the transaction were popped first. */
		RB_REMOVE(lease_tree, &s->leases, l);
		s->size -= LEASE_BYTES;
		free(l);
		break;
	case UNDO_LEASE_DEL:
		RB_INSERT(lease_tree, &s->leases, l);
		s->size += LEASE_BYTES;
		break;
	case UNDO_LEASE_RENEW:
		l->expiry_ns = u->old_expiry;
		l->gen = u->old_gen;
		break;
	}
}

void lease_commit(const struct undo_rec *u)
{
	if (u->kind == UNDO_LEASE_DEL)
		free(u->lease);
}

void leases_free(struct store *s)
{
	struct lease *l, *next;

	for (l = RB_MIN(lease_tree, &s->leases); l; l = next) {
		next = RB_NEXT(lease_tree, &s->leases, l);
		RB_REMOVE(lease_tree, &s->leases, l);
		free(l);
	}
}

/* ---- Reads ------------------------------------------------------------------------ */

int64_t store_cluster_time(const struct store *s)
{
	return s->cluster_time;
}

static void lease_view(const struct lease *l, struct store_lease *out)
{
	out->id = l->id;
	out->ttl_ms = l->ttl_ms;
	out->expiry_ns = l->expiry_ns;
	out->gen = l->gen;
	out->nkeys = l->nkeys;
}

int store_lease_get(const struct store *s, uint64_t id, struct store_lease *out)
{
	const struct lease *l = lease_find(s, id);

	if (!l)
		return QFS_ENOENT;
	lease_view(l, out);
	return 0;
}

int store_lease_list(const struct store *s, int (*cb)(void *arg, const struct store_lease *l),
		     void *arg)
{
	struct lease *l;
	struct store_lease view;
	int rc;

	RB_FOREACH(l, lease_tree, (struct lease_tree *)&s->leases) {
		lease_view(l, &view);
		rc = cb(arg, &view);
		if (rc)
			return rc;
	}
	return 0;
}

int store_lease_keys(const struct store *s, uint64_t id,
		     int (*cb)(void *arg, const char *key), void *arg)
{
	struct lease *l = lease_find(s, id);
	struct node *n;
	int rc;

	if (!l)
		return QFS_ENOENT;
	RB_FOREACH(n, lease_keys, &l->keys) {
		rc = cb(arg, n->key);
		if (rc)
			return rc;
	}
	return 0;
}
