/*
 * Node ids the store does not give: keys as of a past revision (the
 * /.quorumfs/rev view) and files created but not yet committed. Each is kept
 * while the kernel holds a lookup on it and freed on forget.
 *
 * Also the page cache table. The kernel's page cache is per inode, but each
 * open file reads the value as of its open. So the cache may only be shared
 * by handles of one revision: the first reader of a revision drops the old
 * pages (keep_cache off), later readers of it keep them, and a reader of a
 * newer revision that opens while older ones still read bypasses the cache
 * (direct I/O) instead of trusting pages those may refill. Writers always
 * bypass it, so uncommitted bytes never reach the cache.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/errors.h"
#include "fs.h"

#define NBUCKETS 4096

struct node {
	uint64_t id;
	uint64_t rev; /* rev nodes */
	char *key;
	uint64_t nlookup;
	bool pending;
	struct pending_info pi;
	struct node *next_id, *next_key;
};

struct cached {
	uint64_t ino, mod_rev; /* the revision whose pages the kernel may hold */
	uint64_t users;        /* open handles reading through the page cache */
	struct cached *next;
};

struct nodes {
	pthread_mutex_t mu;
	uint64_t next_id;
	struct node *by_id[NBUCKETS];
	struct node *by_key[NBUCKETS];
	struct cached *cache[NBUCKETS];
};

static size_t hash_u64(uint64_t v)
{
	v ^= v >> 33;
	v *= 0xff51afd7ed558ccdull;
	v ^= v >> 33;
	return (size_t)(v % NBUCKETS);
}

static size_t hash_key(const char *key, uint64_t rev)
{
	uint64_t h = 1469598103934665603ull;

	for (; *key; key++)
		h = (h ^ (unsigned char)*key) * 1099511628211ull;
	return hash_u64(h ^ rev);
}

int nodes_create(struct nodes **out)
{
	struct nodes *n = calloc(1, sizeof(*n));

	if (!n)
		return QFS_ENOMEM;
	pthread_mutex_init(&n->mu, NULL);
	*out = n;
	return 0;
}

void nodes_destroy(struct nodes *n)
{
	for (size_t i = 0; i < NBUCKETS; i++) {
		for (struct node *x = n->by_id[i], *next; x; x = next) {
			next = x->next_id;
			free(x->key);
			free(x);
		}
		for (struct cached *c = n->cache[i], *next; c; c = next) {
			next = c->next;
			free(c);
		}
	}
	pthread_mutex_destroy(&n->mu);
	free(n);
}

static struct node *find_id(struct nodes *n, uint64_t id)
{
	struct node *x = n->by_id[hash_u64(id)];

	while (x && x->id != id)
		x = x->next_id;
	return x;
}

static struct node *find_key(struct nodes *n, bool pending, uint64_t rev, const char *key)
{
	struct node *x = n->by_key[hash_key(key, rev)];

	for (; x; x = x->next_key) {
		if (x->pending == pending && x->rev == rev && strcmp(x->key, key) == 0 &&
		    !(pending && (x->pi.ino || x->pi.dropped)))
			return x;
	}
	return NULL;
}

static void unlink_key(struct nodes *n, struct node *x)
{
	struct node **pp = &n->by_key[hash_key(x->key, x->rev)];

	while (*pp && *pp != x)
		pp = &(*pp)->next_key;
	if (*pp)
		*pp = x->next_key;
	x->next_key = NULL;
}

static struct node *add(struct nodes *n, bool pending, uint64_t rev, const char *key)
{
	struct node *x = calloc(1, sizeof(*x));
	size_t hk;

	if (!x || !(x->key = strdup(key))) {
		free(x);
		return NULL;
	}
	x->id = ++n->next_id | (pending ? NODE_PENDING_BIT : NODE_REV_BIT);
	x->rev = rev;
	x->pending = pending;
	x->next_id = n->by_id[hash_u64(x->id)];
	n->by_id[hash_u64(x->id)] = x;
	hk = hash_key(key, rev);
	x->next_key = n->by_key[hk];
	n->by_key[hk] = x;
	return x;
}

uint64_t nodes_rev_lookup(struct nodes *n, uint64_t rev, const char *key)
{
	struct node *x;
	uint64_t id = 0;

	pthread_mutex_lock(&n->mu);
	x = find_key(n, false, rev, key);
	if (!x)
		x = add(n, false, rev, key);
	if (x) {
		x->nlookup++;
		id = x->id;
	}
	pthread_mutex_unlock(&n->mu);
	return id;
}

uint64_t nodes_pending_add(struct nodes *n, const char *key, uint32_t mode, uint32_t uid,
			   uint32_t gid)
{
	struct timespec ts;
	struct node *x, *old;
	uint64_t id = 0;

	clock_gettime(CLOCK_REALTIME, &ts);
	pthread_mutex_lock(&n->mu);
	old = find_key(n, true, 0, key);
	if (old) /* a newer create of the same name wins the name */
		old->pi.dropped = true;
	x = add(n, true, 0, key);
	if (x) {
		x->nlookup = 1;
		x->pi = (struct pending_info){.mode = mode, .uid = uid, .gid = gid,
					      .ctime_ns = ts.tv_sec * 1000000000LL + ts.tv_nsec};
		id = x->id;
	}
	pthread_mutex_unlock(&n->mu);
	return id;
}

uint64_t nodes_pending_find(struct nodes *n, const char *key, bool count)
{
	struct node *x;
	uint64_t id = 0;

	pthread_mutex_lock(&n->mu);
	x = find_key(n, true, 0, key);
	if (x) {
		x->nlookup += count;
		id = x->id;
	}
	pthread_mutex_unlock(&n->mu);
	return id;
}

int nodes_get(struct nodes *n, uint64_t nodeid, uint64_t *rev, char *key, size_t keycap,
	      struct pending_info *pi)
{
	struct node *x;
	int rv = QFS_ENOENT;

	pthread_mutex_lock(&n->mu);
	x = find_id(n, nodeid);
	if (x) {
		if (rev)
			*rev = x->rev;
		if (key)
			snprintf(key, keycap, "%s", x->key);
		if (pi)
			*pi = x->pi;
		rv = 0;
	}
	pthread_mutex_unlock(&n->mu);
	return rv;
}

void nodes_pending_commit(struct nodes *n, uint64_t nodeid, uint64_t ino)
{
	struct node *x;

	pthread_mutex_lock(&n->mu);
	x = find_id(n, nodeid);
	if (x)
		x->pi.ino = ino;
	pthread_mutex_unlock(&n->mu);
}

void nodes_pending_drop(struct nodes *n, uint64_t nodeid)
{
	struct node *x;

	pthread_mutex_lock(&n->mu);
	x = find_id(n, nodeid);
	if (x && !x->pi.ino)
		x->pi.dropped = true;
	pthread_mutex_unlock(&n->mu);
}

void nodes_forget(struct nodes *n, uint64_t nodeid, uint64_t nlookup)
{
	struct node **pp;

	pthread_mutex_lock(&n->mu);
	pp = &n->by_id[hash_u64(nodeid)];
	while (*pp && (*pp)->id != nodeid)
		pp = &(*pp)->next_id;
	if (*pp) {
		struct node *x = *pp;

		x->nlookup = nlookup >= x->nlookup ? 0 : x->nlookup - nlookup;
		if (x->nlookup == 0) {
			*pp = x->next_id;
			unlink_key(n, x);
			free(x->key);
			free(x);
		}
	}
	pthread_mutex_unlock(&n->mu);
}

enum cache_use nodes_cache_open(struct nodes *n, uint64_t ino, uint64_t mod_rev)
{
	struct cached **pp, *c;
	enum cache_use use = CACHE_BYPASS;

	pthread_mutex_lock(&n->mu);
	pp = &n->cache[hash_u64(ino)];
	while (*pp && (*pp)->ino != ino)
		pp = &(*pp)->next;
	c = *pp;
	if (!c && (c = calloc(1, sizeof(*c)))) {
		c->ino = ino;
		*pp = c;
	}
	if (c && c->users == 0) {
		use = c->mod_rev == mod_rev ? CACHE_KEEP : CACHE_FRESH;
		c->mod_rev = mod_rev;
		c->users = 1;
	} else if (c && c->mod_rev == mod_rev) {
		use = CACHE_KEEP;
		c->users++;
	}
	pthread_mutex_unlock(&n->mu);
	return use;
}

void nodes_cache_close(struct nodes *n, uint64_t ino)
{
	struct cached *c;

	pthread_mutex_lock(&n->mu);
	c = n->cache[hash_u64(ino)];
	while (c && c->ino != ino)
		c = c->next;
	if (c && c->users)
		c->users--;
	pthread_mutex_unlock(&n->mu);
}
