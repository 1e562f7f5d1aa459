/*
 * Transactions: compares, then the ops of the chosen branch, all at one new
 * revision. Ops see the effects of earlier ops of the same transaction. Each
 * history change goes through node_push(), which logs it; if an op fails the
 * log is popped in reverse and the store is exactly as before. On success
 * the versions an op wrote over another op's version of the same revision
 * are squashed, so a key has at most one version per revision.
 *
 * Lease ops (store.h "Leases") change the lease table through lease.c,
 * which logs those changes in the same undo log; a key's attachment follows
 * its current version by itself. At commit the revision's changed keys go
 * to the event index (events.c).
 */
#include <stdlib.h>
#include <string.h>

#include "../common/errors.h"
#include "store_int.h"

/* Finds the key live now. QFS_ENOTDIR when an ancestor is not a directory. */
static int find_live(struct store *s, const char *key, struct node **np,
		     const struct version **vp)
{
	struct node *n = s->root;
	const struct version *v = node_cur(n);
	const char *p = key + 1;

	while (*p) {
		const char *slash = strchr(p, '/');
		size_t len = slash ? (size_t)(slash - p) : strlen(p);

		if (v->type != STORE_DIR)
			return QFS_ENOTDIR;
		n = node_child(n, p, len);
		v = n ? node_cur(n) : NULL;
		if (!v)
			return QFS_ENOENT;
		p += len;
		if (*p)
			p++;
	}
	*np = n;
	*vp = v;
	return 0;
}

static int create_key(struct store *s, struct node *parent, struct node *n, const char *name,
		      size_t namelen, enum store_type type, uint32_t mode, uint32_t uid,
		      uint32_t gid, struct store_blob *value, struct node **out)
{
	bool created = false;
	struct version v = {
		.mod_rev = s->txn_rev,
		.create_rev = s->txn_rev,
		.ino = STORE_INO(s->txn_rev, s->txn_created),
		.version = 1,
		.mtime_ns = s->txn_time,
		.ctime_ns = s->txn_time,
		.value = value,
		.mode = mode & 07777,
		.uid = uid,
		.gid = gid,
		.type = (uint8_t)type,
	};
	int rc;

	/* The ino has 16 bits for the creation index within a revision. */
	if (s->txn_created > 0xffff) {
		store_blob_unref(value);
		return QFS_EINVAL;
	}
	if (!n) {
		n = node_create(parent, name, namelen);
		if (!n) {
			store_blob_unref(value);
			return QFS_ENOMEM;
		}
		created = true;
	}
	rc = node_push(s, n, &v, created);
	if (rc)
		return rc;
	s->txn_created++;
	if (out)
		*out = n;
	return 0;
}

/* Walks to the parent of key, which must be a live dir (or is created with
 * mkparents). *name is the last component. */
static int find_parent(struct store *s, const char *key, const struct store_op *mk,
		       struct node **parent, const char **name)
{
	struct node *n = s->root;
	const char *p = key + 1;
	const char *slash;
	int rc;

	while ((slash = strchr(p, '/'))) {
		size_t len = (size_t)(slash - p);
		struct node *c = node_child(n, p, len);
		const struct version *cv = c ? node_cur(c) : NULL;

		if (!cv) {
			if (!mk)
				return QFS_ENOENT;
			rc = create_key(s, n, c, p, len, STORE_DIR, 0755, mk->uid, mk->gid,
					blob_empty(), &c);
			if (rc)
				return rc;
		} else if (cv->type != STORE_DIR) {
			return QFS_ENOTDIR;
		}
		n = c;
		p = slash + 1;
	}
	*parent = n;
	*name = p;
	return 0;
}

/* A new version of a live key: same identity, version + 1, ctime now. */
static struct version next_version(const struct store *s, const struct version *cur)
{
	struct version v = version_dup(cur);

	v.mod_rev = s->txn_rev;
	v.version = cur->version + 1;
	v.ctime_ns = s->txn_time;
	return v;
}

static int push_tomb(struct store *s, struct node *n, const struct version *cur)
{
	struct version t = {
		.mod_rev = s->txn_rev,
		.create_rev = cur->create_rev,
		.ino = cur->ino,
		.mtime_ns = s->txn_time,
		.ctime_ns = s->txn_time,
		.value = blob_empty(),
		.type = cur->type,
		.tomb = true,
	};

	return node_push(s, n, &t, false);
}

/* "touch or write renews": a change to a key renews the lease it is on. */
static int renew_attached(struct store *s, const struct node *n)
{
	return n->lease_of ? lease_renew(s, n->lease_of) : 0;
}

static int op_put(struct store *s, const struct store_op *op)
{
	struct node *parent, *n;
	const struct version *cur = NULL;
	struct store_blob *blob;
	const char *name;
	struct version v;
	int rc;

	rc = store_key_check(op->key);
	if (rc)
		return rc;
	if (op->ftype != STORE_FILE && op->ftype != STORE_DIR && op->ftype != STORE_SYMLINK)
		return QFS_EINVAL;
	if ((op->ftype == STORE_DIR && op->value_len) ||
	    (op->ftype == STORE_SYMLINK && !op->value_len) || (op->value_len && !op->value))
		return QFS_EINVAL;
	if (s->cfg.max_value_bytes && op->value_len > s->cfg.max_value_bytes)
		return QFS_EFBIG;
	if (strcmp(op->key, "/") == 0) {
		parent = NULL;
		name = NULL;
		n = s->root;
	} else {
		rc = find_parent(s, op->key, (op->flags & STORE_PUT_MKPARENTS) ? op : NULL,
				 &parent, &name);
		if (rc)
			return rc;
		n = node_child(parent, name, strlen(name));
	}
	if (n)
		cur = node_cur(n);
	if (cur && cur->type != op->ftype)
		return cur->type == STORE_DIR ? QFS_EISDIR : QFS_EINVAL;
	if (cur) {
		rc = renew_attached(s, n);
		if (rc)
			return rc;
	}
	blob = blob_create(op->value, op->value_len);
	if (!blob)
		return QFS_ENOMEM;
	if (!cur)
		return create_key(s, parent, n, name, strlen(name), op->ftype, op->mode, op->uid,
				  op->gid, blob, NULL);
	v = next_version(s, cur);
	store_blob_unref(v.value);
	v.value = blob;
	v.mtime_ns = s->txn_time;
	return node_push(s, n, &v, false);
}

/* Tombstones the live key n and its live subtree. */
static int delete_subtree(struct store *s, struct node *n)
{
	struct node *x = n;
	int rc;

	/* Tombstones do not change the tree's shape, so walking on is safe. */
	while (x) {
		const struct version *xv = node_cur(x);

		if (!xv) {
			x = node_skip_subtree(n, x);
			continue;
		}
		rc = push_tomb(s, x, xv);
		if (rc)
			return rc;
		x = node_next_preorder(n, x);
	}
	return 0;
}

static int op_delete(struct store *s, const struct store_op *op)
{
	const struct version *cur;
	struct node *n;
	int rc;

	rc = store_key_check(op->key);
	if (rc)
		return rc;
	if (strcmp(op->key, "/") == 0)
		return QFS_EPERM;
	if ((op->flags & ~(uint32_t)(STORE_DEL_RECURSIVE | STORE_DEL_DIR | STORE_DEL_NOTDIR)) ||
	    ((op->flags & STORE_DEL_DIR) && (op->flags & STORE_DEL_NOTDIR)))
		return QFS_EINVAL;
	rc = find_live(s, op->key, &n, &cur);
	if (rc)
		return rc;
	if ((op->flags & STORE_DEL_DIR) && cur->type != STORE_DIR)
		return QFS_ENOTDIR;
	if ((op->flags & STORE_DEL_NOTDIR) && cur->type == STORE_DIR)
		return QFS_EISDIR;
	if (n->nlive && !(op->flags & STORE_DEL_RECURSIVE))
		return QFS_ENOTEMPTY;
	return delete_subtree(s, n);
}

/* ---- Rename -------------------------------------------------------------------- */

struct move {
	struct node *src;
	size_t parent;     /* index of the parent's move; 0 for the top */
	struct version v;  /* the version being moved (own references) */
};

struct moves {
	struct move *m;
	size_t n, cap;
};

static void moves_free(struct moves *ms)
{
	size_t i;

	for (i = 0; i < ms->n; i++)
		version_release(&ms->m[i].v);
	free(ms->m);
	ms->m = NULL;
	ms->n = ms->cap = 0;
}

/* Lists the live keys of the subtree at top, in pre-order. */
static int moves_collect(struct node *top, struct moves *ms)
{
	struct node *x = top;

	while (x) {
		const struct version *xv = node_cur(x);

		if (!xv) {
			x = node_skip_subtree(top, x);
			continue;
		}
		if (ms->n == ms->cap) {
			size_t cap = ms->cap ? ms->cap * 2 : 8;
			struct move *m = realloc(ms->m, cap * sizeof(*m));

			if (!m)
				return QFS_ENOMEM;
			ms->m = m;
			ms->cap = cap;
		}
		x->scratch = ms->n;
		ms->m[ms->n].src = x;
		ms->m[ms->n].parent = x == top ? 0 : x->parent->scratch;
		ms->m[ms->n].v = version_dup(xv);
		ms->n++;
		x = node_next_preorder(top, x);
	}
	return 0;
}

static int moves_tomb(struct store *s, const struct moves *ms)
{
	size_t i;
	int rc;

	for (i = 0; i < ms->n; i++) {
		rc = push_tomb(s, ms->m[i].src, &ms->m[i].v);
		if (rc)
			return rc;
	}
	return 0;
}

/* Writes the collected subtree under parent/name; dst[i] gets move i's
 * new node so children find their new parent. */
static int moves_place(struct store *s, const struct moves *ms, struct node *parent,
		       const char *name, size_t namelen)
{
	struct node **dst;
	size_t i;
	int rc = 0;

	dst = malloc(ms->n * sizeof(*dst));
	if (!dst)
		return QFS_ENOMEM;
	for (i = 0; i < ms->n; i++) {
		struct node *p = i ? dst[ms->m[i].parent] : parent;
		const char *nm = i ? ms->m[i].src->name : name;
		size_t nl = i ? ms->m[i].src->namelen : namelen;
		struct node *n = node_child(p, nm, nl);
		bool created = false;
		struct version v;

		if (!n) {
			n = node_create(p, nm, nl);
			if (!n) {
				rc = QFS_ENOMEM;
				break;
			}
			created = true;
		}
		v = next_version(s, &ms->m[i].v);
		rc = node_push(s, n, &v, created);
		if (rc)
			break;
		dst[i] = n;
	}
	free(dst);
	return rc;
}

static bool is_under(const char *key, const char *top)
{
	size_t len = strlen(top);

	return strncmp(key, top, len) == 0 && key[len] == '/';
}

static int op_rename(struct store *s, const struct store_op *op)
{
	const struct version *scur, *dcur = NULL;
	struct node *sn, *dparent, *dn;
	struct moves a = { 0 }, b = { 0 };
	bool exchange = op->flags & STORE_RENAME_EXCHANGE;
	const char *dname;
	int rc;

	if ((op->flags & ~(uint32_t)(STORE_RENAME_NOREPLACE | STORE_RENAME_EXCHANGE)) ||
	    ((op->flags & STORE_RENAME_NOREPLACE) && exchange) || !op->dst)
		return QFS_EINVAL;
	rc = store_key_check(op->key);
	if (!rc)
		rc = store_key_check(op->dst);
	if (rc)
		return rc;
	if (strcmp(op->key, "/") == 0 || strcmp(op->dst, "/") == 0)
		return QFS_EINVAL;
	rc = find_live(s, op->key, &sn, &scur);
	if (rc)
		return rc;
	if (strcmp(op->key, op->dst) == 0)
		return (op->flags & STORE_RENAME_NOREPLACE) ? QFS_EEXIST : 0;
	if (is_under(op->dst, op->key))
		return QFS_EINVAL;
	rc = find_parent(s, op->dst, NULL, &dparent, &dname);
	if (rc)
		return rc;
	dn = node_child(dparent, dname, strlen(dname));
	if (dn)
		dcur = node_cur(dn);
	if (exchange) {
		if (!dcur)
			return QFS_ENOENT;
		if (is_under(op->key, op->dst))
			return QFS_EINVAL;
	} else if (dcur) {
		if (op->flags & STORE_RENAME_NOREPLACE)
			return QFS_EEXIST;
		if (scur->type == STORE_DIR && dcur->type != STORE_DIR)
			return QFS_ENOTDIR;
		if (scur->type != STORE_DIR && dcur->type == STORE_DIR)
			return QFS_EISDIR;
		if (dn->nlive)
			return QFS_ENOTEMPTY;
	}

	rc = moves_collect(sn, &a);
	if (!rc && dcur)
		rc = moves_collect(dn, &b);
	if (!rc)
		rc = moves_tomb(s, &b);
	if (!rc)
		rc = moves_tomb(s, &a);
	if (!rc)
		rc = moves_place(s, &a, dparent, dname, strlen(dname));
	if (!rc && exchange)
		rc = moves_place(s, &b, sn->parent, sn->name, sn->namelen);
	moves_free(&b);
	moves_free(&a);
	return rc;
}

/* ---- Attributes ------------------------------------------------------------------ */

static int op_setattr(struct store *s, const struct store_op *op)
{
	const struct version *cur;
	struct version v;
	struct node *n;
	int rc;

	if (op->flags & ~(uint32_t)(STORE_ATTR_MODE | STORE_ATTR_UID | STORE_ATTR_GID |
				    STORE_ATTR_MTIME))
		return QFS_EINVAL;
	rc = store_key_check(op->key);
	if (!rc)
		rc = find_live(s, op->key, &n, &cur);
	if (!rc)
		rc = renew_attached(s, n);
	if (rc)
		return rc;
	v = next_version(s, cur);
	if (op->flags & STORE_ATTR_MODE)
		v.mode = op->mode & 07777;
	if (op->flags & STORE_ATTR_UID)
		v.uid = op->uid;
	if (op->flags & STORE_ATTR_GID)
		v.gid = op->gid;
	if (op->flags & STORE_ATTR_MTIME)
		v.mtime_ns = op->mtime_ns;
	return node_push(s, n, &v, false);
}

static int xattr_name_check(const char *name)
{
	size_t len;

	if (!name || strncmp(name, "user.", 5) != 0 || strncmp(name, "user.quorumfs.", 14) == 0)
		return QFS_EINVAL;
	len = strlen(name);
	if (len == 5)
		return QFS_EINVAL;
	if (len > STORE_XATTR_NAME_MAX)
		return QFS_ERANGE;
	return 0;
}

static int op_xattr(struct store *s, const struct store_op *op)
{
	const struct version *cur;
	struct xattr_ent *ents = NULL;
	struct xattr_set *old;
	struct version v;
	struct node *n;
	uint32_t i, j = 0, nold;
	int rc, idx;

	rc = xattr_name_check(op->xname);
	if (!rc)
		rc = store_key_check(op->key);
	if (rc)
		return rc;
	if (op->type == STORE_OP_SETXATTR) {
		if (op->flags & ~(uint32_t)(STORE_XATTR_CREATE | STORE_XATTR_REPLACE))
			return QFS_EINVAL;
		if (op->value_len > STORE_XATTR_VALUE_MAX)
			return QFS_EFBIG;
		if (op->value_len && !op->value)
			return QFS_EINVAL;
	}
	rc = find_live(s, op->key, &n, &cur);
	if (rc)
		return rc;
	old = cur->xattrs;
	nold = old ? old->n : 0;
	idx = xattrs_find(old, op->xname);
	if (op->type == STORE_OP_RMXATTR || (op->flags & STORE_XATTR_REPLACE)) {
		if (idx < 0)
			return QFS_ENODATA;
	}
	if (op->type == STORE_OP_SETXATTR && (op->flags & STORE_XATTR_CREATE) && idx >= 0)
		return QFS_EEXIST;
	if (op->type == STORE_OP_SETXATTR) {
		rc = renew_attached(s, n);
		if (rc)
			return rc;
	}

	ents = malloc((nold + 1) * sizeof(*ents));
	if (!ents)
		return QFS_ENOMEM;
	j = 0;
	{
		bool placed = op->type != STORE_OP_SETXATTR;
		struct xattr_ent ne = {
			.name = op->xname,
			.namelen = strlen(op->xname),
			.value = op->value,
			.len = op->value_len,
		};

		for (i = 0; i < nold; i++) {
			int r = strcmp(old->ents[i].name, op->xname);

			if (!placed && r >= 0) {
				ents[j++] = ne;
				placed = true;
			}
			if (r != 0)
				ents[j++] = old->ents[i];
		}
		if (!placed)
			ents[j++] = ne;
	}
	v = next_version(s, cur);
	xattrs_unref(v.xattrs);
	rc = xattrs_build(ents, j, &v.xattrs);
	free(ents);
	if (rc) {
		version_release(&v);
		return rc;
	}
	return node_push(s, n, &v, false);
}

/* ---- Leases ---------------------------------------------------------------------- */

/* Deletes every key on lease l (with its subtree), then l: one revision,
 * whatever the number of keys, since they are all of this transaction. */
static int revoke(struct store *s, struct lease *l)
{
	struct node *n;
	int rc;

	/* Each delete detaches at least n, so this ends. */
	while ((n = RB_MIN(lease_keys, &l->keys))) {
		rc = delete_subtree(s, n);
		if (rc)
			return rc;
	}
	return lease_remove(s, l);
}

static int op_lease(struct store *s, const struct store_op *op)
{
	struct lease *l;

	if (op->type == STORE_OP_LEASE_GRANT)
		return lease_grant(s, op->lease_id, op->ttl_ms);
	l = lease_find(s, op->lease_id);
	switch (op->type) {
	case STORE_OP_LEASE_RENEW:
		return l ? lease_renew(s, l) : QFS_ENOENT;
	case STORE_OP_LEASE_REVOKE:
		return l ? revoke(s, l) : QFS_ENOENT;
	case STORE_OP_LEASE_EXPIRE:
		/* A renewal after the leader saw it expire wins the race. */
		return l && l->gen == op->lease_gen ? revoke(s, l) : 0;
	default:
		return QFS_EINVAL;
	}
}

static int op_attach(struct store *s, const struct store_op *op)
{
	const struct version *cur;
	struct version v;
	struct node *n;
	int rc;

	rc = store_key_check(op->key);
	if (rc)
		return rc;
	/* Expiry deletes the key: "/" cannot be. */
	if (strcmp(op->key, "/") == 0)
		return QFS_EPERM;
	if (op->lease_id && !lease_find(s, op->lease_id))
		return QFS_ENOENT;
	rc = find_live(s, op->key, &n, &cur);
	if (rc)
		return rc;
	v = next_version(s, cur);
	v.lease = op->lease_id;
	return node_push(s, n, &v, false);
}

/* ---- Transactions ---------------------------------------------------------------- */

static bool cmp_holds(struct store *s, const struct store_cmp *c)
{
	const struct version *v = NULL;
	struct node *n;
	uint64_t have = 0;
	int r;

	if (c->key && store_key_check(c->key) == 0 && find_live(s, c->key, &n, &v) != 0)
		v = NULL;
	switch (c->target) {
	case STORE_CMP_VALUE: {
		size_t len;

		/* As in etcd: a value compare on an absent key is false. */
		if (!v)
			return false;
		len = v->value->len < c->value_len ? v->value->len : c->value_len;
		r = len ? memcmp(v->value->data, c->value, len) : 0;
		if (r == 0)
			r = (v->value->len > c->value_len) - (v->value->len < c->value_len);
		break;
	}
	case STORE_CMP_VERSION:
		have = v ? v->version : 0;
		goto num;
	case STORE_CMP_CREATE:
		have = v ? v->create_rev : 0;
		goto num;
	case STORE_CMP_MOD:
		have = v ? v->mod_rev : 0;
num:
		r = (have > c->num) - (have < c->num);
		break;
	default:
		return false;
	}
	switch (c->op) {
	case STORE_CMP_EQ:
		return r == 0;
	case STORE_CMP_NE:
		return r != 0;
	case STORE_CMP_LT:
		return r < 0;
	case STORE_CMP_GT:
		return r > 0;
	}
	return false;
}

static int op_apply(struct store *s, const struct store_op *op)
{
	switch (op->type) {
	case STORE_OP_LEASE_GRANT:
	case STORE_OP_LEASE_RENEW:
	case STORE_OP_LEASE_REVOKE:
	case STORE_OP_LEASE_EXPIRE:
		return op_lease(s, op);
	default:
		break;
	}
	if (!op->key)
		return QFS_EINVAL;
	switch (op->type) {
	case STORE_OP_PUT:
		return op_put(s, op);
	case STORE_OP_DELETE:
		return op_delete(s, op);
	case STORE_OP_RENAME:
		return op_rename(s, op);
	case STORE_OP_SETATTR:
		return op_setattr(s, op);
	case STORE_OP_SETXATTR:
	case STORE_OP_RMXATTR:
		return op_xattr(s, op);
	case STORE_OP_LEASE_ATTACH:
		return op_attach(s, op);
	default:
		return QFS_EINVAL;
	}
}

static void undo_all(struct store *s)
{
	while (s->nundo) {
		struct undo_rec u = s->undo[--s->nundo];

		if (u.kind != UNDO_PUSH) {
			lease_undo(s, &u);
			continue;
		}
		node_pop(s, u.node);
		if (u.created)
			node_free(s, u.node);
	}
	s->txn_pushes = 0;
}

/* Frees the leases the transaction removed (kept until now for undo). */
static void commit_leases(struct store *s)
{
	size_t i;

	for (i = 0; i < s->nundo; i++)
		if (s->undo[i].kind != UNDO_PUSH)
			lease_commit(&s->undo[i]);
}

/* Keeps only the last version each node got at this revision, drops
 * keys created and deleted within it, records the revision's events (room
 * reserved by the caller), frees nodes left empty. */
static void squash(struct store *s)
{
	uint64_t rev = s->txn_rev;
	size_t i, n = 0, ev;

	for (i = 0; i < s->nundo; i++) {
		struct node *x = s->undo[i].node;
		uint32_t k;

		if (s->undo[i].kind != UNDO_PUSH || x->mark == rev)
			continue;
		x->mark = rev;
		s->undo[n++] = (struct undo_rec){ .node = x };
		k = x->nvers;
		while (k > 0 && x->vers[k - 1].mod_rev == rev)
			k--;
		if (x->nvers - k > 1) {
			uint32_t j;

			for (j = k; j < x->nvers - 1; j++) {
				s->size -= version_bytes(x, &x->vers[j]);
				version_release(&x->vers[j]);
			}
			x->vers[k] = x->vers[x->nvers - 1];
			x->nvers = k + 1;
		}
		if (x->vers[k].tomb && (k == 0 || x->vers[k - 1].tomb)) {
			s->size -= version_bytes(x, &x->vers[k]);
			version_release(&x->vers[k]);
			x->nvers = k;
		}
	}
	ev = events_begin(s);
	for (i = 0; i < n; i++) {
		struct node *x = s->undo[i].node;

		if (x->nvers && x->vers[x->nvers - 1].mod_rev == rev)
			events_push(s, x);
	}
	events_end(s, rev, ev);
	/* Reverse order: children are listed after the parents they need. */
	while (n > 0) {
		struct node *x = s->undo[--n].node;

		if (x->nvers == 0 && x != s->root && RB_EMPTY(&x->children))
			node_free(s, x);
	}
	s->nundo = 0;
}

static bool frees(enum store_op_type t)
{
	return t == STORE_OP_DELETE || t == STORE_OP_LEASE_REVOKE || t == STORE_OP_LEASE_EXPIRE;
}

void txn_apply(struct store *s, const struct store_txn *t, int64_t time_ns,
	       struct store_result *res)
{
	const struct store_op *ops;
	size_t nops, i;
	bool ok = true;

	for (i = 0; i < t->ncmps && ok; i++)
		ok = cmp_holds(s, &t->cmps[i]);
	res->succeeded = ok;
	ops = ok ? t->then_ops : t->else_ops;
	nops = ok ? t->nthen : t->nelse;

	s->txn_rev = s->rev + 1;
	s->txn_time = time_ns;
	s->txn_created = 0;
	s->txn_pushes = 0;
	s->nundo = 0;
	for (i = 0; i < nops; i++) {
		uint64_t before = s->size;
		int rc = op_apply(s, &ops[i]);

		/* Deletes, revokes and expiries must work over quota. */
		if (!rc && s->cfg.quota_bytes && !frees(ops[i].type) &&
		    s->size > s->cfg.quota_bytes && s->size > before)
			rc = QFS_ENOSPC;
		/* Only this can fail at commit: reserve before. */
		if (!rc && i + 1 == nops && s->txn_pushes)
			rc = events_reserve(s, s->txn_pushes);
		if (rc) {
			undo_all(s);
			res->err = rc;
			res->failed_op = (uint32_t)i;
			goto out;
		}
	}
	commit_leases(s);
	if (s->txn_pushes) {
		squash(s);
		s->rev = s->txn_rev;
	}
	s->nundo = 0;
	s->txn_pushes = 0;
out:
	res->revision = s->rev;
	s->txn_rev = 0;
}
