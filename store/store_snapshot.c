/*
 * Store snapshots: the whole state (every retained version of every key,
 * revisions, applied index, cluster time, leases) as one little-endian
 * image, for snapfile.c to compress and checksum.
 *
 *   u32 magic "QSS1" | u32 format (2) | u64 revision | u64 compacted |
 *   u64 applied index | i64 cluster time | u32 lease count | leases in id
 *   order: u64 id, i64 ttl_ms, i64 expiry_ns, u64 gen |
 *   u64 node count | nodes in tree pre-order:
 *     bytes key | u32 nvers | versions in mod_rev order:
 *       u64 mod_rev, create_rev, ino, version | i64 mtime, ctime |
 *       u64 lease | u32 mode, uid, gid | u8 type | u8 flags |
 *       [bytes value unless SAME_VALUE] | [u32 n, n x (bytes name, bytes value)
 *       unless SAME_XATTRS]
 *   flags: 1 tombstone, 2 value shared with the previous version, 4 xattrs
 *   shared with the previous version (so chmod and setxattr history does not
 *   repeat values).
 *
 * Loading treats the image as untrusted: every length, enum and ordering is
 * checked, the tree is rebuilt aside and only swapped in when it is whole
 * and consistent (every live key's lease exists, tombstones follow a live
 * version and carry no lease). Which keys a lease holds, and the event
 * index, are derived from the histories, so they are rebuilt, not saved.
 * Format 1 (before leases) is not read: nothing was deployed with it.
 */
#include <stdlib.h>
#include <string.h>

#include "../common/errors.h"
#include "store_int.h"

#define SNAP_MAGIC 0x31535351u /* "QSS1" */
#define SNAP_FORMAT 2
#define F_TOMB 1
#define F_SAME_VALUE 2
#define F_SAME_XATTRS 4
#define VERSION_MIN_BYTES (8 * 7 + 4 * 3 + 2)
#define LEASE_REC_BYTES 32

int store_snapshot_save(const struct store *s, struct qbuf *out)
{
	const struct node *n;
	struct lease *l;
	uint64_t count = 0;
	uint32_t nleases = 0;
	size_t count_at;

	qbuf_put_u32(out, SNAP_MAGIC);
	qbuf_put_u32(out, SNAP_FORMAT);
	qbuf_put_u64(out, s->rev);
	qbuf_put_u64(out, s->compacted);
	qbuf_put_u64(out, s->applied);
	qbuf_put_u64(out, (uint64_t)s->cluster_time);
	RB_FOREACH(l, lease_tree, (struct lease_tree *)&s->leases)
		nleases++;
	qbuf_put_u32(out, nleases);
	RB_FOREACH(l, lease_tree, (struct lease_tree *)&s->leases) {
		qbuf_put_u64(out, l->id);
		qbuf_put_u64(out, (uint64_t)l->ttl_ms);
		qbuf_put_u64(out, (uint64_t)l->expiry_ns);
		qbuf_put_u64(out, l->gen);
	}
	count_at = out->len;
	qbuf_put_u64(out, 0);
	for (n = s->root; n; n = node_next_preorder(s->root, n)) {
		uint32_t i, j;

		/* Nodes without versions are leftovers awaiting compaction. */
		if (n->nvers == 0)
			continue;
		count++;
		qbuf_put_bytes(out, n->key, n->keylen);
		qbuf_put_u32(out, n->nvers);
		for (i = 0; i < n->nvers; i++) {
			const struct version *v = &n->vers[i];
			const struct version *prev = i ? &n->vers[i - 1] : NULL;
			uint8_t flags = v->tomb ? F_TOMB : 0;

			if (prev && prev->value == v->value)
				flags |= F_SAME_VALUE;
			if (prev && prev->xattrs == v->xattrs)
				flags |= F_SAME_XATTRS;
			qbuf_put_u64(out, v->mod_rev);
			qbuf_put_u64(out, v->create_rev);
			qbuf_put_u64(out, v->ino);
			qbuf_put_u64(out, v->version);
			qbuf_put_u64(out, (uint64_t)v->mtime_ns);
			qbuf_put_u64(out, (uint64_t)v->ctime_ns);
			qbuf_put_u64(out, v->lease);
			qbuf_put_u32(out, v->mode);
			qbuf_put_u32(out, v->uid);
			qbuf_put_u32(out, v->gid);
			qbuf_put_u8(out, v->type);
			qbuf_put_u8(out, flags);
			if (!(flags & F_SAME_VALUE))
				qbuf_put_bytes(out, v->value->data, v->value->len);
			if (!(flags & F_SAME_XATTRS)) {
				qbuf_put_u32(out, v->xattrs ? v->xattrs->n : 0);
				for (j = 0; v->xattrs && j < v->xattrs->n; j++) {
					const struct xattr_ent *x = &v->xattrs->ents[j];

					qbuf_put_bytes(out, x->name, x->namelen);
					qbuf_put_bytes(out, x->value, x->len);
				}
			}
		}
	}
	if (qbuf_error(out))
		return QFS_ENOMEM;
	qfs_le64_put(out->data + count_at, count);
	return 0;
}

static bool xattr_name_ok(const char *name, size_t len)
{
	return len > 5 && len <= STORE_XATTR_NAME_MAX && !memchr(name, 0, len) &&
	       strncmp(name, "user.", 5) == 0 &&
	       !(len >= 14 && strncmp(name, "user.quorumfs.", 14) == 0);
}

static int load_xattrs(struct qreader *r, struct xattr_set **out)
{
	uint32_t n = qreader_u32(r), i;
	struct xattr_ent *ents;
	int rc = QFS_EMSG;

	*out = NULL;
	if (qreader_error(r) || n > r->left / 8)
		return QFS_EMSG;
	if (n == 0)
		return 0;
	ents = calloc(n, sizeof(*ents));
	if (!ents)
		return QFS_ENOMEM;
	for (i = 0; i < n; i++) {
		ents[i].name = (const char *)qreader_bytes(r, STORE_XATTR_NAME_MAX, &ents[i].namelen);
		ents[i].value = qreader_bytes(r, STORE_XATTR_VALUE_MAX, &ents[i].len);
		if (qreader_error(r) || !xattr_name_ok(ents[i].name, ents[i].namelen))
			goto out;
		/* Strictly increasing names (as strcmp orders them: no NULs inside). */
		if (i) {
			size_t a = ents[i - 1].namelen, b = ents[i].namelen;
			int c = memcmp(ents[i - 1].name, ents[i].name, a < b ? a : b);

			if (c > 0 || (c == 0 && a >= b))
				goto out;
		}
	}
	rc = xattrs_build(ents, n, out);
out:
	free(ents);
	return rc;
}

/* Reads one version; prev is the node's previous version (for sharing). */
static int load_version(struct qreader *r, const struct version *prev, bool root,
			uint64_t rev, struct version *v)
{
	uint8_t flags;
	const uint8_t *data;
	size_t len;
	int rc;

	memset(v, 0, sizeof(*v));
	v->mod_rev = qreader_u64(r);
	v->create_rev = qreader_u64(r);
	v->ino = qreader_u64(r);
	v->version = qreader_u64(r);
	v->mtime_ns = (int64_t)qreader_u64(r);
	v->ctime_ns = (int64_t)qreader_u64(r);
	v->lease = qreader_u64(r);
	v->mode = qreader_u32(r);
	v->uid = qreader_u32(r);
	v->gid = qreader_u32(r);
	v->type = qreader_u8(r);
	flags = qreader_u8(r);
	if (qreader_error(r) || (flags & ~(F_TOMB | F_SAME_VALUE | F_SAME_XATTRS)))
		return QFS_EMSG;
	if ((flags & (F_SAME_VALUE | F_SAME_XATTRS)) && !prev)
		return QFS_EMSG;
	v->tomb = flags & F_TOMB;
	/* A delete follows a live version (its DELETE event shows it) and
	 * detaches the key from its lease; "/" never has a lease. */
	if (v->tomb && (!prev || prev->tomb || v->lease))
		return QFS_EMSG;
	if (root && v->lease)
		return QFS_EMSG;
	if (v->type < STORE_FILE || v->type > STORE_SYMLINK || v->mode > 07777)
		return QFS_EMSG;
	if (v->mod_rev > rev || (prev && v->mod_rev <= prev->mod_rev) ||
	    v->create_rev > v->mod_rev || (!v->tomb && v->version == 0))
		return QFS_EMSG;
	if (root) {
		if (v->tomb || v->ino != STORE_ROOT_INO || v->create_rev != 0 ||
		    v->type != STORE_DIR)
			return QFS_EMSG;
	} else if (v->create_rev == 0 || v->ino >> 16 != v->create_rev || v->mod_rev == 0) {
		return QFS_EMSG;
	}

	if (flags & F_SAME_VALUE) {
		v->value = store_blob_ref(prev->value);
	} else {
		data = qreader_bytes(r, r->left, &len);
		if (qreader_error(r))
			return QFS_EMSG;
		v->value = blob_create(data, len);
		if (!v->value)
			return QFS_ENOMEM;
	}
	if (flags & F_SAME_XATTRS) {
		v->xattrs = xattrs_ref(prev->xattrs);
	} else {
		rc = load_xattrs(r, &v->xattrs);
		if (rc) {
			version_release(v);
			return rc;
		}
	}
	/* Tombstones carry nothing, dirs no value, symlinks a target. */
	if ((v->tomb && (v->value->len || v->xattrs)) ||
	    (v->type == STORE_DIR && v->value->len) ||
	    (v->type == STORE_SYMLINK && !v->tomb && v->value->len == 0)) {
		version_release(v);
		return QFS_EMSG;
	}
	return 0;
}

/* Finds the parent node of a new key and checks the key is new. */
static int load_place(struct store *t, const char *key, size_t keylen, struct node **out)
{
	const char *slash = memrchr(key, '/', keylen);
	struct node *parent;
	char *pkey;

	if (store_key_check(key) != 0)
		return QFS_EMSG;
	pkey = strndup(key, slash == key ? 1 : (size_t)(slash - key));
	if (!pkey)
		return QFS_ENOMEM;
	parent = node_lookup(t, pkey);
	free(pkey);
	/* Parents come first in pre-order, with history of their own. */
	if (!parent || parent->nvers == 0)
		return QFS_EMSG;
	if (node_child(parent, slash + 1, keylen - (size_t)(slash + 1 - key)))
		return QFS_EMSG;
	*out = node_create(parent, slash + 1, keylen - (size_t)(slash + 1 - key));
	return *out ? 0 : QFS_ENOMEM;
}

static int load_nodes(struct store *t, struct qreader *r, uint64_t count)
{
	uint64_t i;
	int rc;

	for (i = 0; i < count; i++) {
		size_t keylen;
		const uint8_t *kp = qreader_bytes(r, STORE_KEY_MAX, &keylen);
		char key[STORE_KEY_MAX + 1];
		uint32_t nvers, j;
		struct node *n;
		bool root;

		if (qreader_error(r) || keylen == 0 || memchr(kp, 0, keylen))
			return QFS_EMSG;
		memcpy(key, kp, keylen);
		key[keylen] = '\0';
		root = i == 0;
		if (root != (strcmp(key, "/") == 0))
			return QFS_EMSG;
		if (root) {
			n = t->root;
		} else {
			rc = load_place(t, key, keylen, &n);
			if (rc)
				return rc;
		}
		nvers = qreader_u32(r);
		if (qreader_error(r) || nvers == 0 || nvers > r->left / VERSION_MIN_BYTES)
			return QFS_EMSG;
		for (j = 0; j < nvers; j++) {
			struct version v;
			const struct version *prev = j ? &n->vers[n->nvers - 1] : NULL;

			rc = load_version(r, prev, root, t->rev, &v);
			if (rc)
				return rc;
			/* node_push keeps the derived state; the ino map is
			 * checked for duplicates afterwards. */
			rc = node_push(t, n, &v, false);
			if (rc)
				return rc;
		}
	}
	return 0;
}

static int load_leases(struct store *t, struct qreader *r)
{
	uint32_t n = qreader_u32(r), i;
	uint64_t prev = 0;

	if (qreader_error(r) || n > r->left / LEASE_REC_BYTES)
		return QFS_EMSG;
	for (i = 0; i < n; i++) {
		struct lease *l;
		uint64_t id = qreader_u64(r);
		int64_t ttl_ms = (int64_t)qreader_u64(r);
		int64_t expiry = (int64_t)qreader_u64(r);
		uint64_t gen = qreader_u64(r);

		if (qreader_error(r) || id <= prev || ttl_ms <= 0 ||
		    ttl_ms > STORE_LEASE_TTL_MAX_MS || gen == 0)
			return QFS_EMSG;
		prev = id;
		l = calloc(1, sizeof(*l));
		if (!l)
			return QFS_ENOMEM;
		l->id = id;
		l->ttl_ms = ttl_ms;
		l->expiry_ns = expiry;
		l->gen = gen;
		RB_INIT(&l->keys);
		RB_INSERT(lease_tree, &t->leases, l);
		t->size += LEASE_BYTES;
	}
	return 0;
}

/* The current state must be a proper tree with unique inos, every live
 * key's lease must exist; attaches the keys to their leases. */
static int load_check(struct store *t)
{
	struct node *n = t->root;
	uint64_t live = 0;

	while (n) {
		const struct version *v = node_cur(n);

		if (!v) {
			n = node_skip_subtree(t->root, n);
			continue;
		}
		if (n->parent && node_cur(n->parent)->type != STORE_DIR)
			return QFS_EMSG;
		if (ino_find(t, v->ino))
			return QFS_EMSG;
		ino_map_add(t, v->ino, n);
		if (v->lease) {
			struct lease *l = lease_find(t, v->lease);

			if (!l)
				return QFS_EMSG;
			lease_set(n, l);
		}
		live++;
		n = node_next_preorder(t->root, n);
	}
	/* Fewer reached than live: some live key sits under a dead parent. */
	return live == t->nkeys && t->ino_count == live ? 0 : QFS_EMSG;
}

int store_snapshot_decode(const struct store *like, const uint8_t *data, size_t len,
			  struct store **out)
{
	struct store *t = calloc(1, sizeof(*t));
	struct qreader r;
	uint64_t count = 0;
	int64_t cluster_time;
	int rc;

	if (!t)
		return QFS_ENOMEM;
	t->cfg = like->cfg;
	qreader_init(&r, data, len);
	if (qreader_u32(&r) != SNAP_MAGIC || qreader_u32(&r) != SNAP_FORMAT) {
		free(t);
		return QFS_EMSG;
	}
	t->rev = qreader_u64(&r);
	t->compacted = qreader_u64(&r);
	t->applied = qreader_u64(&r);
	cluster_time = (int64_t)qreader_u64(&r);
	if (qreader_error(&r) || t->compacted > t->rev) {
		free(t);
		return QFS_EMSG;
	}
	rc = state_init(t, false);
	if (rc) {
		store_destroy(t);
		return rc;
	}
	t->cluster_time = cluster_time;
	rc = load_leases(t, &r);
	if (!rc) {
		count = qreader_u64(&r);
		if (qreader_error(&r) || count == 0 ||
		    count > r.left / (4 + 1 + 4 + VERSION_MIN_BYTES))
			rc = QFS_EMSG;
	}
	t->loading = true;
	if (!rc)
		rc = load_nodes(t, &r, count);
	t->loading = false;
	if (!rc && r.left)
		rc = QFS_EMSG;
	if (!rc)
		rc = load_check(t);
	if (!rc)
		rc = events_rebuild(t);
	if (rc) {
		store_destroy(t);
		return rc;
	}
	*out = t;
	return 0;
}

void store_swap(struct store *a, struct store *b)
{
	struct store t = *a;

	/* The state, not the limits or the (empty) transaction scratch. */
	a->root = b->root;
	a->rev = b->rev;
	a->compacted = b->compacted;
	a->applied = b->applied;
	a->size = b->size;
	a->nkeys = b->nkeys;
	a->ino_buckets = b->ino_buckets;
	a->ino_nbuckets = b->ino_nbuckets;
	a->ino_count = b->ino_count;
	a->cluster_time = b->cluster_time;
	a->leases = b->leases;
	a->events = b->events;
	b->root = t.root;
	b->rev = t.rev;
	b->compacted = t.compacted;
	b->applied = t.applied;
	b->size = t.size;
	b->nkeys = t.nkeys;
	b->ino_buckets = t.ino_buckets;
	b->ino_nbuckets = t.ino_nbuckets;
	b->ino_count = t.ino_count;
	b->cluster_time = t.cluster_time;
	b->leases = t.leases;
	b->events = t.events;
}

int store_snapshot_load(struct store *s, const uint8_t *data, size_t len)
{
	struct store *t;
	int rc = store_snapshot_decode(s, data, len, &t);

	if (rc)
		return rc;
	store_swap(s, t);
	store_destroy(t);
	return 0;
}
