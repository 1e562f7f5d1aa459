/*
 * The store's public face (store.h): lifecycle, key validation, reads at any
 * retained revision, store_apply() in log order, cluster time, and
 * compaction. The tree lives in tree.c, transactions in txn.c, leases in
 * lease.c, the event index in events.c, snapshots in store_snapshot.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "../common/errors.h"
#include "entry.h"
#include "store_int.h"

int store_create(const struct store_config *cfg, struct store **out)
{
	struct store *s = calloc(1, sizeof(*s));
	int rc;

	*out = NULL;
	if (!s)
		return QFS_ENOMEM;
	if (cfg)
		s->cfg = *cfg;
	rc = state_init(s, true);
	if (rc) {
		free(s);
		return rc;
	}
	*out = s;
	return 0;
}

void store_destroy(struct store *s)
{
	if (!s)
		return;
	state_free(s);
	free(s->undo);
	free(s);
}

int store_key_check(const char *key)
{
	size_t len, plen = strlen(STORE_RESERVED_PREFIX);
	const char *p;

	if (!key || key[0] != '/')
		return QFS_EINVAL;
	len = strlen(key);
	if (len > STORE_KEY_MAX)
		return QFS_ENAMETOOLONG;
	if (len == 1)
		return 0;
	if (key[len - 1] == '/')
		return QFS_EINVAL;
	p = key + 1;
	while (*p) {
		const char *slash = strchr(p, '/');
		size_t c = slash ? (size_t)(slash - p) : strlen(p);

		if (c == 0 || (c == 1 && p[0] == '.') || (c == 2 && p[0] == '.' && p[1] == '.'))
			return QFS_EINVAL;
		if (c > STORE_NAME_MAX)
			return QFS_ENAMETOOLONG;
		p += c;
		if (*p)
			p++;
	}
	if (strncmp(key, STORE_RESERVED_PREFIX, plen) == 0 && (key[plen] == '\0' || key[plen] == '/'))
		return QFS_EPERM;
	return 0;
}

/* ---- Reads ------------------------------------------------------------------------ */

uint64_t store_revision(const struct store *s)
{
	return s->rev;
}

uint64_t store_compacted_revision(const struct store *s)
{
	return s->compacted;
}

uint64_t store_applied_index(const struct store *s)
{
	return s->applied;
}

uint64_t store_size(const struct store *s)
{
	return s->size;
}

uint64_t store_key_count(const struct store *s)
{
	return s->nkeys;
}

static int rev_check(const struct store *s, uint64_t *rev)
{
	if (*rev == 0)
		*rev = s->rev;
	if (*rev < s->compacted)
		return QFS_ECOMPACTED;
	if (*rev > s->rev)
		return QFS_EFUTUREREV;
	return 0;
}

void kv_fill(const struct node *n, const struct version *v, struct store_kv *kv)
{
	kv->key = n->key;
	kv->name = n->name;
	kv->type = (enum store_type)v->type;
	kv->ino = v->ino;
	kv->create_rev = v->create_rev;
	kv->mod_rev = v->mod_rev;
	kv->version = v->version;
	kv->mode = v->mode;
	kv->uid = v->uid;
	kv->gid = v->gid;
	kv->mtime_ns = v->mtime_ns;
	kv->ctime_ns = v->ctime_ns;
	kv->lease = v->lease;
	kv->value = v->value;
	kv->nchildren = 0;
	kv->xattrs_ = v->xattrs;
}

static void fill_kv(const struct store *s, const struct node *n, const struct version *v,
		    uint64_t rev, struct store_kv *kv)
{
	kv_fill(n, v, kv);
	if (v->type == STORE_DIR && rev == s->rev)
		kv->nchildren = n->nlive;
}

/* The node and version of key alive at rev (already checked). */
static int lookup_at(const struct store *s, const char *key, uint64_t rev,
		     const struct node **np, const struct version **vp)
{
	const struct node *n;
	const struct version *v;
	int rc = store_key_check(key);

	if (rc)
		return rc;
	n = node_lookup(s, key);
	v = n ? node_at(n, rev) : NULL;
	if (!v)
		return QFS_ENOENT;
	*np = n;
	*vp = v;
	return 0;
}

int store_get(const struct store *s, const char *key, uint64_t rev, struct store_kv *out)
{
	const struct node *n;
	const struct version *v;
	int rc = rev_check(s, &rev);

	if (!rc)
		rc = lookup_at(s, key, rev, &n, &v);
	if (rc)
		return rc;
	fill_kv(s, n, v, rev, out);
	return 0;
}

int store_get_ino(const struct store *s, uint64_t ino, struct store_kv *out)
{
	const struct node *n = ino_find(s, ino);
	const struct version *v = n ? node_cur(n) : NULL;

	if (!v || v->ino != ino)
		return QFS_ENOENT;
	fill_kv(s, n, v, s->rev, out);
	return 0;
}

int store_children(const struct store *s, const char *dir, uint64_t rev, const char *after,
		   int (*cb)(void *arg, const struct store_kv *kv), void *arg)
{
	const struct node *n;
	const struct version *v;
	struct node *c;
	struct store_kv kv;
	int rc = rev_check(s, &rev);

	if (!rc)
		rc = lookup_at(s, dir, rev, &n, &v);
	if (rc)
		return rc;
	if (v->type != STORE_DIR)
		return QFS_ENOTDIR;
	if (after) {
		struct node probe;

		probe.name = after;
		probe.namelen = strlen(after);
		c = RB_NFIND(node_tree, (struct node_tree *)&n->children, &probe);
		if (c && c->namelen == probe.namelen && memcmp(c->name, after, c->namelen) == 0)
			c = RB_NEXT(node_tree, NULL, c);
	} else {
		c = RB_MIN(node_tree, (struct node_tree *)&n->children);
	}
	for (; c; c = RB_NEXT(node_tree, NULL, c)) {
		const struct version *cv = node_at(c, rev);

		if (!cv)
			continue;
		fill_kv(s, c, cv, rev, &kv);
		rc = cb(arg, &kv);
		if (rc)
			return rc;
	}
	return 0;
}

/* Walks the subtree at top alive at rev: a dead key's subtree is dead too. */
static int walk_range(const struct node *top, uint64_t rev,
		      int (*cb)(void *arg, const struct node *n, const struct version *v),
		      void *arg)
{
	const struct node *n = top;
	int rc;

	while (n) {
		const struct version *v = node_at(n, rev);

		if (!v) {
			n = node_skip_subtree(top, n);
			continue;
		}
		rc = cb(arg, n, v);
		if (rc)
			return rc;
		n = node_next_preorder(top, n);
	}
	return 0;
}

struct range_ctx {
	const struct store *s;
	uint64_t rev;
	int (*cb)(void *arg, const struct store_kv *kv);
	void *arg;
};

static int range_visit(void *arg, const struct node *n, const struct version *v)
{
	struct range_ctx *r = arg;
	struct store_kv kv;

	fill_kv(r->s, n, v, r->rev, &kv);
	return r->cb(r->arg, &kv);
}

int store_range(const struct store *s, const char *key, uint64_t rev,
		int (*cb)(void *arg, const struct store_kv *kv), void *arg)
{
	const struct node *n;
	const struct version *v;
	struct range_ctx r = { .s = s, .cb = cb, .arg = arg };
	int rc = rev_check(s, &rev);

	if (!rc)
		rc = lookup_at(s, key, rev, &n, &v);
	if (rc)
		return rc;
	r.rev = rev;
	return walk_range(n, rev, range_visit, &r);
}

static int hash_visit(void *arg, const struct node *n, const struct version *v)
{
	uLong *crc = arg;
	uint8_t num[16];
	size_t left;
	const uint8_t *p;

	*crc = crc32(*crc, (const Bytef *)n->key, (uInt)n->keylen + 1);
	qfs_le64_put(num, v->mod_rev);
	qfs_le64_put(num + 8, v->value->len);
	*crc = crc32(*crc, num, sizeof(num));
	/* crc32 takes uInt lengths: feed big values in pieces. */
	for (p = v->value->data, left = v->value->len; left;) {
		uInt chunk = left > (1u << 30) ? (1u << 30) : (uInt)left;

		*crc = crc32(*crc, p, chunk);
		p += chunk;
		left -= chunk;
	}
	return 0;
}

int store_hash(const struct store *s, uint64_t rev, uint32_t *hash)
{
	uLong crc = crc32(0L, Z_NULL, 0);
	int rc = rev_check(s, &rev);

	if (rc)
		return rc;
	walk_range(s->root, rev, hash_visit, &crc);
	*hash = (uint32_t)crc;
	return 0;
}

int store_kv_xattr_get(const struct store_kv *kv, const char *name, const uint8_t **value,
		       size_t *len)
{
	const struct xattr_set *x = kv->xattrs_;
	int i = name ? xattrs_find(x, name) : -1;

	if (i < 0)
		return QFS_ENODATA;
	*value = x->ents[i].value;
	*len = x->ents[i].len;
	return 0;
}

int store_kv_xattr_list(const struct store_kv *kv, int (*cb)(void *arg, const char *name),
			void *arg)
{
	const struct xattr_set *x = kv->xattrs_;
	uint32_t i;
	int rc;

	for (i = 0; x && i < x->n; i++) {
		rc = cb(arg, x->ents[i].name);
		if (rc)
			return rc;
	}
	return 0;
}

/* ---- Changes --------------------------------------------------------------------- */

/* Drops the versions of n that no read at rev >= c can see. */
static void compact_node(struct store *s, struct node *n, uint64_t c)
{
	uint32_t lo = 0, hi = n->nvers, drop, i;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (n->vers[mid].mod_rev <= c)
			lo = mid + 1;
		else
			hi = mid;
	}
	/* lo - 1 is the version seen at c: keep it unless a tombstone. A
	 * tombstone written at c itself stays with the version before it, for
	 * the DELETE event at c (events are kept from c on). */
	drop = lo == 0 ? 0 : (n->vers[lo - 1].tomb ? lo : lo - 1);
	if (lo >= 2 && n->vers[lo - 1].tomb && n->vers[lo - 1].mod_rev == c)
		drop = lo - 2;
	if (!drop)
		return;
	for (i = 0; i < drop; i++) {
		s->size -= version_bytes(n, &n->vers[i]);
		version_release(&n->vers[i]);
	}
	memmove(n->vers, n->vers + drop, (n->nvers - drop) * sizeof(*n->vers));
	n->nvers -= drop;
}

/* Deepest first (a child's key is longer than its parent's), then by
 * address, so the copies of one node are neighbours. */
static int deepest_first(const void *a, const void *b)
{
	const struct node *x = *(struct node *const *)a, *y = *(struct node *const *)b;

	if (x->keylen != y->keylen)
		return x->keylen > y->keylen ? -1 : 1;
	return (x > y) - (x < y);
}

/*
 * Drops the versions no read at rev >= c can see and frees nodes left
 * empty. Only a node changed since the last compaction can hold such a
 * version (an older change would have made it droppable then), and the
 * event index lists exactly those: the work is the history compacted, not
 * the size of the tree.
 */
static void compact(struct store *s, uint64_t c)
{
	struct node **ev = s->events.nodes;
	size_t upto = events_through(s, c), before = events_through(s, c - 1);

	for (size_t i = 0; i < upto; i++)
		compact_node(s, ev[i], c);
	/* A node left without versions has no event at c or after, and the
	 * events before c go with this compaction: they may be reordered so
	 * that a directory is freed after the children that held it. */
	qsort(ev, before, sizeof(*ev), deepest_first);
	for (size_t i = 0; i < before; i++) {
		struct node *n = ev[i];

		if (i + 1 < before && ev[i + 1] == n)
			continue; /* freed at its last copy */
		if (n->nvers == 0 && n != s->root && RB_EMPTY(&n->children))
			node_free(s, n);
	}
	events_trim(s, c);
	s->compacted = c;
}

static void apply_compact(struct store *s, uint64_t c, struct store_result *res)
{
	res->succeeded = true;
	if (c > s->rev) {
		res->err = QFS_EFUTUREREV;
		res->succeeded = false;
		return;
	}
	if (c > s->compacted)
		compact(s, c);
}

static void advance_applied(struct store *s, uint64_t index)
{
	if (index <= s->applied) {
		fprintf(stderr, "store: applied index would go back from %llu to %llu\n",
			(unsigned long long)s->applied, (unsigned long long)index);
		abort();
	}
	s->applied = index;
}

int store_apply(struct store *s, uint64_t index, const uint8_t *entry, size_t len,
		struct store_result *res)
{
	struct store_result local;
	struct entry *e = NULL;
	uint64_t rev_before = s->rev;
	int64_t time_before = s->cluster_time;

	if (!res)
		res = &local;
	memset(res, 0, sizeof(*res));
	if (index <= s->applied)
		return QFS_EINVAL;
	if (entry_decode(entry, len, &e) != 0) {
		res->err = QFS_EMSG;
		goto done;
	}
	/* Before the ops: a grant in this entry counts from its time. */
	if (e->time_ns > s->cluster_time)
		s->cluster_time = e->time_ns;
	if (e->type == ENTRY_TXN)
		txn_apply(s, &e->txn, e->time_ns, res);
	else if (e->type == ENTRY_COMPACT)
		apply_compact(s, e->compact_rev, res);
	/* ENTRY_MEMBER, ENTRY_AUTH: not for the keys */
	free(e);
done:
	if (s->rev != rev_before && s->rev != rev_before + 1) {
		fprintf(stderr, "store: revision jumped from %llu to %llu\n",
			(unsigned long long)rev_before, (unsigned long long)s->rev);
		abort();
	}
	/* Lease expiry is judged against it: going back would revive leases. */
	if (s->cluster_time < time_before) {
		fprintf(stderr, "store: cluster time went back from %lld to %lld\n",
			(long long)time_before, (long long)s->cluster_time);
		abort();
	}
	res->revision = s->rev;
	advance_applied(s, index);
	return 0;
}

int store_skip(struct store *s, uint64_t index)
{
	if (index <= s->applied)
		return QFS_EINVAL;
	advance_applied(s, index);
	return 0;
}
