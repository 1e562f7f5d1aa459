/*
 * The key tree of the store (see store_int.h): nodes and their version
 * histories, the ino -> node map of live keys, value blobs and xattr sets.
 *
 * node_push()/node_pop() are the only places where a node's current version
 * changes, so the derived state (parents' live-children counts, the key
 * count, the ino map, the counted size) is kept right in one place and
 * popping exactly reverses pushing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/errors.h"
#include "store_int.h"

static int node_cmp(const struct node *a, const struct node *b)
{
	size_t n = a->namelen < b->namelen ? a->namelen : b->namelen;
	int r = memcmp(a->name, b->name, n);

	if (r)
		return r;
	return (a->namelen > b->namelen) - (a->namelen < b->namelen);
}

RB_GENERATE(node_tree, node, link, node_cmp)

int key_cmp(const char *a, const char *b)
{
	const unsigned char *p = (const unsigned char *)a, *q = (const unsigned char *)b;

	for (; *p && *p == *q; p++, q++)
		;
	if (*p == *q)
		return 0;
	if (!*p || !*q)
		return *p ? 1 : -1;
	if (*p == '/' || *q == '/')
		return *p == '/' ? -1 : 1;
	return *p < *q ? -1 : 1;
}

bool key_under(const char *key, const char *top)
{
	size_t len = strlen(top);

	if (len == 1)
		return true;
	return strncmp(key, top, len) == 0 && (key[len] == '\0' || key[len] == '/');
}

/* ---- Blobs ------------------------------------------------------------------ */

/* Shared by every empty value; never freed, so its refs are not counted. */
static struct store_blob empty_blob = { .data = (const uint8_t *)"", .len = 0, .refs = 1 };

struct store_blob *store_blob_ref(struct store_blob *b)
{
	if (b && b != &empty_blob)
		__atomic_add_fetch(&b->refs, 1, __ATOMIC_RELAXED);
	return b;
}

void store_blob_unref(struct store_blob *b)
{
	if (!b || b == &empty_blob)
		return;
	if (__atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) == 0)
		free(b);
}

struct store_blob *blob_empty(void)
{
	return &empty_blob;
}

struct store_blob *blob_create(const uint8_t *p, size_t len)
{
	struct store_blob *b;

	if (len == 0)
		return &empty_blob;
	if (len > SIZE_MAX - sizeof(*b))
		return NULL;
	b = malloc(sizeof(*b) + len);
	if (!b)
		return NULL;
	memcpy(b + 1, p, len);
	b->data = (const uint8_t *)(b + 1);
	b->len = len;
	b->refs = 1;
	return b;
}

/* ---- Xattr sets ---------------------------------------------------------------- */

struct xattr_set *xattrs_ref(struct xattr_set *x)
{
	if (x)
		x->refs++;
	return x;
}

void xattrs_unref(struct xattr_set *x)
{
	if (x && --x->refs == 0)
		free(x);
}

int xattrs_build(const struct xattr_ent *ents, uint32_t n, struct xattr_set **out)
{
	struct xattr_set *x;
	size_t total = sizeof(*x) + (size_t)n * sizeof(x->ents[0]);
	uint64_t bytes = 0;
	char *p;
	uint32_t i;

	*out = NULL;
	if (n == 0)
		return 0;
	for (i = 0; i < n; i++) {
		total += ents[i].namelen + 1 + ents[i].len;
		bytes += ents[i].namelen + ents[i].len;
	}
	x = malloc(total);
	if (!x)
		return QFS_ENOMEM;
	x->refs = 1;
	x->n = n;
	x->bytes = bytes;
	p = (char *)&x->ents[n];
	for (i = 0; i < n; i++) {
		memcpy(p, ents[i].name, ents[i].namelen);
		p[ents[i].namelen] = '\0';
		x->ents[i].name = p;
		x->ents[i].namelen = ents[i].namelen;
		p += ents[i].namelen + 1;
		if (ents[i].len)
			memcpy(p, ents[i].value, ents[i].len);
		x->ents[i].value = (const uint8_t *)p;
		x->ents[i].len = ents[i].len;
		p += ents[i].len;
	}
	*out = x;
	return 0;
}

int xattrs_find(const struct xattr_set *x, const char *name)
{
	uint32_t lo = 0, hi = x ? x->n : 0;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		int r = strcmp(x->ents[mid].name, name);

		if (r == 0)
			return (int)mid;
		if (r < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/* ---- Versions ------------------------------------------------------------------ */

void version_release(struct version *v)
{
	store_blob_unref(v->value);
	xattrs_unref(v->xattrs);
	v->value = NULL;
	v->xattrs = NULL;
}

struct version version_dup(const struct version *v)
{
	struct version c = *v;

	store_blob_ref(c.value);
	xattrs_ref(c.xattrs);
	return c;
}

uint64_t version_bytes(const struct node *n, const struct version *v)
{
	return n->keylen + v->value->len + (v->xattrs ? v->xattrs->bytes : 0) + VERSION_OVERHEAD;
}

/* ---- Nodes --------------------------------------------------------------------- */

struct node *node_create(struct node *parent, const char *name, size_t namelen)
{
	struct node *n = calloc(1, sizeof(*n));
	size_t plen = parent->keylen == 1 ? 0 : parent->keylen;

	if (!n)
		return NULL;
	n->keylen = plen + 1 + namelen;
	n->key = malloc(n->keylen + 1);
	if (!n->key) {
		free(n);
		return NULL;
	}
	memcpy(n->key, parent->key, plen);
	n->key[plen] = '/';
	memcpy(n->key + plen + 1, name, namelen);
	n->key[n->keylen] = '\0';
	n->name = n->key + plen + 1;
	n->namelen = namelen;
	n->parent = parent;
	RB_INIT(&n->children);
	if (RB_INSERT(node_tree, &parent->children, n)) {
		/* Callers look the name up first: a duplicate is a bug. */
		fprintf(stderr, "store: duplicate node %s\n", n->key);
		abort();
	}
	return n;
}

static void ino_unlink(struct store *s, struct node *n);

void node_free(struct store *s, struct node *n)
{
	uint32_t i;

	if (!RB_EMPTY(&n->children)) {
		fprintf(stderr, "store: freeing node %s with children\n", n->key);
		abort();
	}
	if (n->mapped_ino)
		ino_unlink(s, n);
	if (n->lease_of)
		lease_set(n, NULL);
	if (n->parent)
		RB_REMOVE(node_tree, &n->parent->children, n);
	for (i = 0; i < n->nvers; i++)
		version_release(&n->vers[i]);
	free(n->vers);
	free(n->key);
	free(n);
}

struct node *node_child(const struct node *parent, const char *name, size_t namelen)
{
	struct node probe;

	probe.name = name;
	probe.namelen = namelen;
	return RB_FIND(node_tree, (struct node_tree *)&parent->children, &probe);
}

struct node *node_lookup(const struct store *s, const char *key)
{
	struct node *n = s->root;
	const char *p = key + 1;

	while (n && *p) {
		const char *slash = strchr(p, '/');
		size_t len = slash ? (size_t)(slash - p) : strlen(p);

		n = node_child(n, p, len);
		p += len;
		if (*p)
			p++;
	}
	return n;
}

const struct version *node_at(const struct node *n, uint64_t rev)
{
	uint32_t lo = 0, hi = n->nvers;
	const struct version *v;

	/* first version with mod_rev > rev */
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (n->vers[mid].mod_rev <= rev)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return NULL;
	v = &n->vers[lo - 1];
	return v->tomb ? NULL : v;
}

const struct version *node_cur(const struct node *n)
{
	const struct version *v;

	if (n->nvers == 0)
		return NULL;
	v = &n->vers[n->nvers - 1];
	return v->tomb ? NULL : v;
}

struct node *node_skip_subtree(const struct node *top, const struct node *n)
{
	while (n != top) {
		struct node *next = RB_NEXT(node_tree, NULL, (struct node *)n);

		if (next)
			return next;
		n = n->parent;
	}
	return NULL;
}

struct node *node_next_preorder(const struct node *top, const struct node *n)
{
	struct node *first = RB_MIN(node_tree, (struct node_tree *)&n->children);

	return first ? first : node_skip_subtree(top, n);
}

/* ---- The ino map --------------------------------------------------------------- */

static size_t ino_bucket(uint64_t ino, size_t nbuckets)
{
	return (size_t)((ino * 0x9E3779B97F4A7C15ull) >> 29) & (nbuckets - 1);
}

struct node *ino_find(const struct store *s, uint64_t ino)
{
	struct node *n = s->ino_buckets[ino_bucket(ino, s->ino_nbuckets)];

	while (n && n->mapped_ino != ino)
		n = n->ino_next;
	return n;
}

static void ino_unlink(struct store *s, struct node *n)
{
	struct node **pp = &s->ino_buckets[ino_bucket(n->mapped_ino, s->ino_nbuckets)];

	while (*pp && *pp != n)
		pp = &(*pp)->ino_next;
	if (*pp) {
		*pp = n->ino_next;
		s->ino_count--;
	}
	n->ino_next = NULL;
	n->mapped_ino = 0;
}

static void ino_grow(struct store *s)
{
	size_t nb = s->ino_nbuckets * 2, i;
	struct node **b = calloc(nb, sizeof(*b));

	/* Without memory the chains just get longer; still correct. */
	if (!b)
		return;
	for (i = 0; i < s->ino_nbuckets; i++) {
		struct node *n = s->ino_buckets[i], *next;

		for (; n; n = next) {
			size_t h = ino_bucket(n->mapped_ino, nb);

			next = n->ino_next;
			n->ino_next = b[h];
			b[h] = n;
		}
	}
	free(s->ino_buckets);
	s->ino_buckets = b;
	s->ino_nbuckets = nb;
}

/* Maps ino to n, displacing whatever held ino or n before: during a rename
 * the destination takes the ino before the source is tombstoned. */
void ino_map_add(struct store *s, uint64_t ino, struct node *n)
{
	struct node *old;
	size_t h;

	if (n->mapped_ino)
		ino_unlink(s, n);
	old = ino_find(s, ino);
	if (old)
		ino_unlink(s, old);
	if (s->ino_count + 1 > s->ino_nbuckets)
		ino_grow(s);
	h = ino_bucket(ino, s->ino_nbuckets);
	n->ino_next = s->ino_buckets[h];
	s->ino_buckets[h] = n;
	n->mapped_ino = ino;
	s->ino_count++;
}

/* ---- History changes -------------------------------------------------------------- */

static void top_changed(struct store *s, struct node *n, bool was, uint64_t was_ino, bool is,
			uint64_t is_ino, uint64_t is_lease)
{
	if (!s->loading) {
		struct lease *l = NULL;

		if (was && n->mapped_ino == was_ino)
			ino_unlink(s, n);
		if (is)
			ino_map_add(s, is_ino, n);
		if (is && is_lease) {
			l = lease_find(s, is_lease);
			/* Ops check the lease first and revoke detaches every key
			 * before the lease goes: a miss is a bug. */
			if (!l) {
				fprintf(stderr, "store: %s attached to missing lease %llx\n",
					n->key, (unsigned long long)is_lease);
				abort();
			}
		}
		if (l != n->lease_of)
			lease_set(n, l);
	}
	if (was == is)
		return;
	if (is) {
		s->nkeys++;
		if (n->parent)
			n->parent->nlive++;
	} else {
		s->nkeys--;
		if (n->parent)
			n->parent->nlive--;
	}
}

int node_push(struct store *s, struct node *n, struct version *v, bool created)
{
	bool was = false;
	uint64_t was_ino = 0;

	if (n->nvers) {
		const struct version *top = &n->vers[n->nvers - 1];

		if (top->mod_rev > v->mod_rev) {
			fprintf(stderr, "store: revision %llu written below %llu on %s\n",
				(unsigned long long)v->mod_rev, (unsigned long long)top->mod_rev,
				n->key);
			abort();
		}
		was = !top->tomb;
		was_ino = top->ino;
	}
	if (s->txn_rev && undo_reserve(s))
		goto nomem;
	if (n->nvers == n->cap) {
		uint32_t cap = n->cap ? n->cap * 2 : 2;
		struct version *nv;

		if (cap <= n->cap)
			goto nomem;
		nv = realloc(n->vers, cap * sizeof(*nv));
		if (!nv)
			goto nomem;
		n->vers = nv;
		n->cap = cap;
	}
	n->vers[n->nvers++] = *v;
	s->size += version_bytes(n, v);
	top_changed(s, n, was, was_ino, !v->tomb, v->ino, v->lease);
	if (s->txn_rev) {
		s->undo[s->nundo++] = (struct undo_rec){ .node = n, .created = created };
		s->txn_pushes++;
	}
	return 0;

nomem:
	version_release(v);
	if (created)
		node_free(s, n);
	return QFS_ENOMEM;
}

void node_pop(struct store *s, struct node *n)
{
	struct version v = n->vers[--n->nvers];
	const struct version *top = n->nvers ? &n->vers[n->nvers - 1] : NULL;

	s->size -= version_bytes(n, &v);
	top_changed(s, n, !v.tomb, v.ino, top && !top->tomb, top ? top->ino : 0,
		    top ? top->lease : 0);
	version_release(&v);
}

int undo_reserve(struct store *s)
{
	size_t cap;
	struct undo_rec *u;

	if (s->nundo < s->undo_cap)
		return 0;
	cap = s->undo_cap ? s->undo_cap * 2 : 64;
	u = realloc(s->undo, cap * sizeof(*u));
	if (!u)
		return QFS_ENOMEM;
	s->undo = u;
	s->undo_cap = cap;
	return 0;
}

/* ---- Whole state --------------------------------------------------------------- */

int state_init(struct store *s, bool with_root_version)
{
	struct node *root;
	struct version v = {
		.mod_rev = 0, .create_rev = 0, .ino = STORE_ROOT_INO, .version = 1,
		.value = &empty_blob, .mode = 0755, .type = STORE_DIR,
	};

	RB_INIT(&s->leases);
	memset(&s->events, 0, sizeof(s->events));
	s->cluster_time = 0;
	s->ino_nbuckets = 64;
	s->ino_buckets = calloc(s->ino_nbuckets, sizeof(*s->ino_buckets));
	root = calloc(1, sizeof(*root));
	if (root)
		root->key = strdup("/");
	if (!s->ino_buckets || !root || !root->key)
		goto nomem;
	root->keylen = 1;
	root->name = root->key;
	root->namelen = 1;
	RB_INIT(&root->children);
	s->root = root;
	if (with_root_version && node_push(s, root, &v, false))
		goto nomem;
	return 0;

nomem:
	if (root)
		free(root->key);
	free(root);
	free(s->ino_buckets);
	s->root = NULL;
	s->ino_buckets = NULL;
	return QFS_ENOMEM;
}

static struct node *descend(struct node *n)
{
	struct node *c;

	while ((c = RB_MIN(node_tree, &n->children)))
		n = c;
	return n;
}

struct node *node_first_postorder(struct node *top)
{
	return descend(top);
}

struct node *node_next_postorder(const struct node *top, struct node *n)
{
	struct node *next;

	if (n == top)
		return NULL;
	next = RB_NEXT(node_tree, NULL, n);
	return next ? descend(next) : n->parent;
}

void state_free(struct store *s)
{
	struct node *n;

	if (!s->root)
		return;
	/* Post-order, so every node is childless when freed. Nodes detach
	 * from their leases as they go, so leases are freed after. */
	n = descend(s->root);
	while (n) {
		struct node *next = node_next_postorder(s->root, n);

		node_free(s, n);
		n = next;
	}
	leases_free(s);
	events_free(&s->events);
	free(s->ino_buckets);
	s->root = NULL;
	s->ino_buckets = NULL;
	s->ino_nbuckets = 0;
	s->ino_count = 0;
}
