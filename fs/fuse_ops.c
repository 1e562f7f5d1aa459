/*
 * The low-level FUSE operations on names, attributes, directories and xattrs
 * (open files are in file.c, /.quorumfs in ctl.c). Reads answer directly
 * under the server's read lock; changes become one transaction each and are
 * answered when applied (commit.c).
 */
#include <errno.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#include "../common/errors.h"
#include "../common/log.h"
#include "fs.h"

#define FS(req) ((struct fs *)fuse_req_userdata(req))
#define XATTR_PREFIX "user.quorumfs."

void fs_reply_qfs_err(fuse_req_t req, int qfs_err)
{
	fuse_reply_err(req, qfs_to_errno(qfs_err));
}

int fs_child_key(const char *dir, const char *name, char *out, size_t cap)
{
	size_t nlen = strlen(name);
	int n;

	if (nlen > STORE_NAME_MAX)
		return QFS_ENAMETOOLONG;
	if (nlen == 0 || strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return QFS_EINVAL;
	n = snprintf(out, cap, "%s/%s", strcmp(dir, "/") == 0 ? "" : dir, name);
	if (n < 0 || (size_t)n >= cap || n > STORE_KEY_MAX)
		return QFS_ENAMETOOLONG;
	return store_key_check(out);
}

static void timespec_from_ns(struct timespec *ts, int64_t ns)
{
	ts->tv_sec = ns / 1000000000;
	ts->tv_nsec = ns % 1000000000;
}

static mode_t type_bits(enum store_type t)
{
	return t == STORE_DIR ? S_IFDIR : t == STORE_SYMLINK ? S_IFLNK : S_IFREG;
}

void fs_kv_stat(const struct fs *fs, const struct store_kv *kv, uint64_t nodeid, bool readonly,
		struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = nodeid;
	st->st_mode = type_bits(kv->type) | (kv->mode & 07777);
	if (readonly || fs->cfg->read_only)
		st->st_mode &= ~(mode_t)0222;
	st->st_nlink = 1; /* directories too: "subdirectory count unknown" to find(1) */
	st->st_uid = kv->uid;
	st->st_gid = kv->gid;
	st->st_size = (off_t)kv->value->len;
	st->st_blksize = 4096;
	st->st_blocks = (blkcnt_t)((kv->value->len + 511) / 512);
	timespec_from_ns(&st->st_mtim, kv->mtime_ns);
	st->st_atim = st->st_mtim;
	timespec_from_ns(&st->st_ctim, kv->ctime_ns);
}

void fs_pending_stat(const struct pending_info *pi, uint64_t nodeid, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = nodeid;
	st->st_mode = S_IFREG | (pi->mode & 07777);
	st->st_nlink = 1;
	st->st_uid = pi->uid;
	st->st_gid = pi->gid;
	st->st_blksize = 4096;
	timespec_from_ns(&st->st_mtim, pi->ctime_ns);
	st->st_atim = st->st_ctim = st->st_mtim;
}

int fs_resolve(struct fs *fs, uint64_t nodeid, struct target *t)
{
	struct pending_info pi;
	struct store_kv kv;
	int rv;

	t->nodeid = nodeid;
	t->ino = t->rev = 0;
	if (nodeid == STORE_ROOT_INO) {
		t->kind = T_STORE;
		t->ino = nodeid;
		strcpy(t->key, "/");
		return 0;
	}
	if (fs_is_ctl(nodeid)) {
		t->kind = T_CTL;
		t->key[0] = 0;
		return 0;
	}
	if (nodeid & NODE_REV_BIT) {
		t->kind = T_REV;
		return nodes_get(fs->nodes, nodeid, &t->rev, t->key, sizeof(t->key), NULL);
	}
	if (nodeid & NODE_PENDING_BIT) {
		rv = nodes_get(fs->nodes, nodeid, NULL, t->key, sizeof(t->key), &pi);
		if (rv)
			return rv;
		if (pi.dropped)
			return QFS_ENOENT;
		if (!pi.ino) {
			t->kind = T_PENDING;
			return 0;
		}
		nodeid = pi.ino; /* committed since: it is a key now */
	}
	t->kind = T_STORE;
	t->ino = nodeid;
	rv = store_get_ino(server_store(fs->srv), nodeid, &kv);
	if (rv == QFS_ENOENT) /* gone now, but a replay may be walking under it */
		return fs_replay_key(fs, nodeid, t->key, sizeof(t->key));
	if (rv)
		return rv;
	snprintf(t->key, sizeof(t->key), "%s", kv.key);
	return 0;
}

/* fs_resolve() for a replay's request (remote.c): a node it walks resolves
 * to its key before the change, which a later change may have moved or
 * deleted. */
int fs_resolve_replay(struct fs *fs, uint64_t nodeid, struct target *t)
{
	if (fs_replay_key(fs, nodeid, t->key, sizeof(t->key)) != 0)
		return fs_resolve(fs, nodeid, t);
	t->kind = T_STORE;
	t->nodeid = t->ino = nodeid;
	t->rev = 0;
	return 0;
}

/* Attributes of any node, with an open handle's size when given. */
static int node_stat(struct fs *fs, uint64_t nodeid, struct handle *h, struct stat *st)
{
	struct target t;
	struct store_kv kv;
	struct pending_info pi;
	int rv;

	if (fs_is_ctl(nodeid))
		return ctl_stat(fs, nodeid, st);
	server_rdlock(fs->srv);
	rv = fs_resolve(fs, nodeid, &t);
	if (rv == 0 && t.kind == T_PENDING) {
		rv = nodes_get(fs->nodes, nodeid, NULL, NULL, 0, &pi);
		if (rv == 0)
			fs_pending_stat(&pi, nodeid, st);
	} else if (rv == 0) {
		rv = store_get(server_store(fs->srv), t.key, t.rev, &kv);
		if (rv == 0)
			fs_kv_stat(fs, &kv, nodeid, t.kind == T_REV, st);
	}
	server_unlock(fs->srv);
	if (rv == 0 && h && !h->text)
		st->st_size = (off_t)fs_handle_size(h);
	return rv;
}

/* ---- Names ------------------------------------------------------------------ */

#define NOT_REPLAY UINT64_MAX

/* Resolves name in parent into e; before != NOT_REPLAY: as of that revision,
 * for a replay (remote.c). Store reads under the read lock. */
static int lookup_now(struct fs *fs, fuse_ino_t parent, const char *name, uint64_t before,
		      struct fuse_entry_param *e)
{
	struct pending_info pi;
	struct store_kv kv;
	struct target t;
	char key[STORE_KEY_MAX + 1];
	int rv;

	memset(e, 0, sizeof(*e));
	if (strlen(name) > STORE_NAME_MAX)
		return QFS_ENAMETOOLONG;
	if (fs_is_ctl(parent) || (parent == STORE_ROOT_INO && strcmp(name, CTL_NAME) == 0)) {
		rv = ctl_lookup(fs, parent, name, e);
		goto out;
	}
	e->attr_timeout = e->entry_timeout = fs->cfg->attr_timeout;
	server_rdlock(fs->srv);
	rv = before != NOT_REPLAY ? fs_resolve_replay(fs, parent, &t) : fs_resolve(fs, parent, &t);
	if (rv == 0 && t.kind == T_PENDING)
		rv = QFS_ENOTDIR;
	if (rv == 0)
		rv = fs_child_key(t.key, name, key, sizeof(key));
	if (rv == 0 && t.kind == T_REV) {
		rv = store_get(server_store(fs->srv), key, t.rev, &kv);
		if (rv == 0 && !(e->ino = nodes_rev_lookup(fs->nodes, t.rev, key)))
			rv = QFS_ENOMEM;
		if (rv == 0)
			fs_kv_stat(fs, &kv, e->ino, true, &e->attr);
	} else if (rv == 0 && before != NOT_REPLAY) {
		rv = fs_lookup_before(fs, key, before, &kv);
		if (rv == 0) {
			fs_replay_note(fs, kv.ino, key);
			e->ino = kv.ino;
			fs_kv_stat(fs, &kv, kv.ino, false, &e->attr);
			e->attr_timeout = e->entry_timeout = 0; /* the state after comes next */
		}
	} else if (rv == 0) {
		e->ino = nodes_pending_find(fs->nodes, key, true);
		if (e->ino) {
			nodes_get(fs->nodes, e->ino, NULL, NULL, 0, &pi);
			fs_pending_stat(&pi, e->ino, &e->attr);
			e->attr_timeout = e->entry_timeout = 0;
		} else if ((rv = store_get(server_store(fs->srv), key, 0, &kv)) == 0) {
			e->ino = kv.ino;
			fs_kv_stat(fs, &kv, kv.ino, false, &e->attr);
		}
	}
	server_unlock(fs->srv);
out:
	if (rv == QFS_EPERM || rv == QFS_EINVAL)
		rv = QFS_ENOENT; /* a name that cannot exist simply does not */
	return rv;
}

static void reply_lookup(fuse_req_t req, int rv, const struct fuse_entry_param *e)
{
	if (rv)
		fs_reply_qfs_err(req, rv);
	else
		fuse_reply_entry(req, e);
}

/* A lookup that missed, waiting for a read point: the name (or the lease
 * in /.quorumfs/leases) may have been created through another member and
 * not be applied here yet. */
struct deferred_lookup {
	struct fs *fs;
	fuse_req_t req;
	fuse_ino_t parent;
	char name[];
};

/* Loop thread. Answered directly, not behind queued invalidations: the
 * kernel holds the directory's lock during a lookup, and a queued
 * invalidation of an entry in it would wait for that lock. */
static void deferred_lookup_ready(void *arg, int err)
{
	struct deferred_lookup *d = arg;
	struct fuse_entry_param e;

	reply_lookup(d->req, err ? err : lookup_now(d->fs, d->parent, d->name, NOT_REPLAY, &e),
		     &e);
	free(d);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = FS(req);
	struct fuse_entry_param e;
	struct deferred_lookup *d;
	uint64_t before = NOT_REPLAY;
	bool replay = fs_replaying(fs, req, &before);
	int rv = lookup_now(fs, parent, name, before, &e);

	if (rv != QFS_ENOENT || replay || fs->cfg->consistency != CONSISTENCY_LINEARIZABLE ||
	    (fs_is_ctl(parent) && parent != NODE_CTL_LEASES) || (parent & NODE_REV_BIT) ||
	    server_reads_local(fs->srv) ||
	    !(d = malloc(sizeof(*d) + strlen(name) + 1))) {
		reply_lookup(req, rv, &e);
		return;
	}
	d->fs = fs;
	d->req = req;
	d->parent = parent;
	strcpy(d->name, name);
	if ((rv = server_read_barrier(fs->srv, deferred_lookup_ready, d))) {
		free(d);
		fs_reply_qfs_err(req, rv);
	}
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	if (ino & (NODE_REV_BIT | NODE_PENDING_BIT))
		nodes_forget(FS(req)->nodes, ino, nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	for (size_t i = 0; i < count; i++) {
		if (forgets[i].ino & (NODE_REV_BIT | NODE_PENDING_BIT))
			nodes_forget(FS(req)->nodes, forgets[i].ino, forgets[i].nlookup);
	}
	fuse_reply_none(req);
}

/*
 * Resolves the parent of a change and builds the child's key. Changes are
 * refused in the revision view (EROFS), in /.quorumfs (EPERM) and on a
 * read-only mount (except a replay's, which change nothing).
 */
int fs_change_target(struct fs *fs, fuse_req_t req, fuse_ino_t parent, const char *name,
		     char *key)
{
	struct target t;
	uint64_t before;
	bool replay = fs_replaying(fs, req, &before);
	int rv;

	if (fs->cfg->read_only && !replay)
		return QFS_EPERM;
	if (fs_is_ctl(parent))
		return QFS_EPERM;
	server_rdlock(fs->srv);
	rv = replay ? fs_resolve_replay(fs, parent, &t) : fs_resolve(fs, parent, &t);
	server_unlock(fs->srv);
	if (rv)
		return rv;
	if (t.kind == T_REV)
		return QFS_EPERM;
	if (t.kind == T_PENDING)
		return QFS_ENOTDIR;
	return fs_child_key(t.key, name, key, STORE_KEY_MAX + 1);
}

void fs_reply_change_err(fuse_req_t req, int rv, fuse_ino_t parent)
{
	if (rv == QFS_EPERM && (parent & NODE_REV_BIT))
		fuse_reply_err(req, EROFS);
	else
		fs_reply_qfs_err(req, rv);
}

/* create-if-absent of key with one PUT: mkdir, symlink, mknod. */
static void create_absent(fuse_req_t req, fuse_ino_t parent, const char *name,
			  enum store_type type, mode_t mode, const char *value)
{
	struct fs *fs = FS(req);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	char key[STORE_KEY_MAX + 1];
	struct store_cmp cmp = {.target = STORE_CMP_VERSION, .op = STORE_CMP_EQ, .key = key};
	struct store_op op = {.type = STORE_OP_PUT, .key = key, .ftype = type,
			      .mode = mode & 07777, .uid = ctx->uid, .gid = ctx->gid};
	struct store_txn txn = {.cmps = &cmp, .ncmps = 1, .then_ops = &op, .nthen = 1};
	struct commit_req cr = {.reply = REPLY_ENTRY, .req = req, .key = key};
	uint64_t before;
	int rv = fs_change_target(fs, req, parent, name, key);

	if (rv) {
		fs_reply_change_err(req, rv, parent);
		return;
	}
	if (fs_replaying(fs, req, &before)) {
		server_rdlock(fs->srv);
		fs_reply_entry(fs, req, key, NULL);
		server_unlock(fs->srv);
		return;
	}
	if (value) {
		op.value = (const uint8_t *)value;
		op.value_len = strlen(value);
	}
	fs_commit(fs, &cr, &txn);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	create_absent(req, parent, name, STORE_DIR, mode, NULL);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	create_absent(req, parent, name, STORE_SYMLINK, 0777, link);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		     dev_t rdev)
{
	(void)rdev;
	if (!S_ISREG(mode)) {
		fuse_reply_err(req, EPERM); /* no devices, fifos or sockets in a config tree */
		return;
	}
	create_absent(req, parent, name, STORE_FILE, mode, "");
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	(void)ino;
	(void)newparent;
	(void)newname;
	fuse_reply_err(req, EPERM);
}

static void remove_key(fuse_req_t req, fuse_ino_t parent, const char *name, uint32_t flags)
{
	struct fs *fs = FS(req);
	char key[STORE_KEY_MAX + 1];
	struct store_op op = {.type = STORE_OP_DELETE, .key = key, .flags = flags};
	struct store_txn txn = {.then_ops = &op, .nthen = 1};
	struct commit_req cr = {.reply = REPLY_ERR, .req = req};
	uint64_t pending, before;
	int rv = fs_change_target(fs, req, parent, name, key);

	if (rv) {
		fs_reply_change_err(req, rv, parent);
		return;
	}
	if (fs_replaying(fs, req, &before)) { /* applied already */
		fuse_reply_err(req, 0);
		return;
	}
	if (flags & STORE_DEL_NOTDIR) {
		pending = nodes_pending_find(fs->nodes, key, false);
		if (pending) { /* never committed: it only ever existed here */
			nodes_pending_drop(fs->nodes, pending);
			fuse_reply_err(req, 0);
			return;
		}
	}
	fs_commit(fs, &cr, &txn);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct store_op op = {.type = STORE_OP_LEASE_REVOKE};
	struct store_txn txn = {.then_ops = &op, .nthen = 1};
	struct commit_req cr = {.reply = REPLY_ERR, .req = req, .unseen = true};
	char *end;

	if (parent != NODE_CTL_LEASES) {
		remove_key(req, parent, name, STORE_DEL_NOTDIR);
		return;
	}
	op.lease_id = strtoull(name, &end, 16); /* rm /.quorumfs/leases/ID revokes it */
	if (*end || !op.lease_id) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	fs_commit(FS(req), &cr, &txn);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_key(req, parent, name, STORE_DEL_DIR);
}

/* The PUT that turns a pending file into a key (empty until its flush). */
int fs_pending_put(struct fs *fs, uint64_t nodeid, const char *key, struct store_op *op)
{
	struct pending_info pi;
	int rv = nodes_get(fs->nodes, nodeid, NULL, NULL, 0, &pi);

	if (rv)
		return rv;
	*op = (struct store_op){.type = STORE_OP_PUT, .key = key, .ftype = STORE_FILE,
				.mode = pi.mode, .uid = pi.uid, .gid = pi.gid,
				.value = (const uint8_t *)""};
	return 0;
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	struct fs *fs = FS(req);
	char src[STORE_KEY_MAX + 1], dst[STORE_KEY_MAX + 1];
	struct store_op ops[2];
	struct store_txn txn = {.then_ops = ops};
	struct commit_req cr = {.reply = REPLY_ERR, .req = req, .key = dst};
	uint64_t before;
	int rv;

	if (fs_replaying(fs, req, &before)) { /* applied already */
		fuse_reply_err(req, 0);
		return;
	}
	if (flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE)) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	rv = fs_change_target(fs, req, parent, name, src);
	if (rv == 0)
		rv = fs_change_target(fs, req, newparent, newname, dst);
	if (rv) {
		fs_reply_change_err(req, rv, parent & NODE_REV_BIT ? parent : newparent);
		return;
	}
	cr.pending = nodes_pending_find(fs->nodes, src, false);
	if (cr.pending && (rv = fs_pending_put(fs, cr.pending, src, &ops[txn.nthen++]))) {
		fs_reply_qfs_err(req, rv);
		return;
	}
	ops[txn.nthen++] = (struct store_op){
		.type = STORE_OP_RENAME, .key = src, .dst = dst,
		.flags = (flags & RENAME_NOREPLACE ? STORE_RENAME_NOREPLACE : 0) |
			 (flags & RENAME_EXCHANGE ? STORE_RENAME_EXCHANGE : 0)};
	fs_commit(fs, &cr, &txn);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct fs *fs = FS(req);
	struct store_kv kv;
	struct target t;
	char *link = NULL;
	int rv;

	server_rdlock(fs->srv);
	rv = fs_resolve(fs, ino, &t);
	if (rv == 0 && (t.kind == T_PENDING || t.kind == T_CTL))
		rv = QFS_EINVAL;
	if (rv == 0)
		rv = store_get(server_store(fs->srv), t.key, t.rev, &kv);
	if (rv == 0 && kv.type != STORE_SYMLINK)
		rv = QFS_EINVAL;
	if (rv == 0 && !(link = strndup((const char *)kv.value->data, kv.value->len)))
		rv = QFS_ENOMEM;
	server_unlock(fs->srv);
	if (rv)
		fs_reply_qfs_err(req, rv);
	else
		fuse_reply_readlink(req, link);
	free(link);
}

/* ---- Attributes ---------------------------------------------------------- */

/* A replay walks paths that may be gone now (a deleted subtree): the
 * kernel's permission checks on them get the attributes as they were. */
static int replay_stat(struct fs *fs, uint64_t ino, uint64_t before, struct stat *st)
{
	struct store_kv kv;
	struct target t;
	int rv;

	server_rdlock(fs->srv);
	rv = fs_resolve_replay(fs, ino, &t);
	if (rv == 0 && t.kind == T_STORE) {
		rv = fs_lookup_before(fs, t.key, before, &kv);
		if (rv == QFS_ENOENT)
			rv = store_get(server_store(fs->srv), t.key, 0, &kv);
		if (rv == 0)
			fs_kv_stat(fs, &kv, ino, false, st);
	}
	server_unlock(fs->srv);
	return rv == 0 && t.kind != T_STORE ? node_stat(fs, ino, NULL, st) : rv;
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = FS(req);
	struct stat st;
	uint64_t before;
	int rv = fs_replaying(fs, req, &before)
			 ? replay_stat(fs, ino, before, &st)
			 : node_stat(fs, ino, fi ? (struct handle *)fi->fh : NULL, &st);

	if (rv)
		fs_reply_qfs_err(req, rv);
	else
		fuse_reply_attr(req, &st, fs_is_ctl(ino) ? 0 : fs->cfg->attr_timeout);
}

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* The value of key resized to size (truncate(2) without an open file). */
static int resized_value(struct fs *fs, const char *key, uint64_t size, uint8_t **out)
{
	struct store_kv kv;
	int rv;

	*out = calloc(1, size ? size : 1);
	if (!*out)
		return QFS_ENOMEM;
	server_rdlock(fs->srv);
	rv = store_get(server_store(fs->srv), key, 0, &kv);
	if (rv == 0 && kv.type == STORE_DIR)
		rv = QFS_EISDIR;
	if (rv == 0)
		memcpy(*out, kv.value->data, kv.value->len < size ? kv.value->len : size);
	server_unlock(fs->srv);
	return rv;
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	struct fs *fs = FS(req);
	struct handle *h = fi ? (struct handle *)fi->fh : NULL;
	struct store_op ops[2];
	struct store_txn txn = {.then_ops = ops};
	struct commit_req cr = {.reply = REPLY_ATTR, .req = req, .ino = ino, .h = h};
	uint8_t *value = NULL;
	uint32_t mask = 0;
	struct target t;
	struct stat st;
	uint64_t before;
	int rv;

	if (fs_is_ctl(ino) && (ino & NODE_LEASE_BIT)) { /* touch a lease: renew it */
		ops[0] = (struct store_op){.type = STORE_OP_LEASE_RENEW,
					   .lease_id = ino & FS_LEASE_ID_MASK};
		txn.nthen = 1;
		cr.reply = REPLY_CTL_ATTR;
		fs_commit(fs, &cr, &txn);
		return;
	}
	if (fs_is_ctl(ino)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	if (fs_replaying(fs, req, &before)) { /* applied already: the state now */
		rv = node_stat(fs, ino, h, &st);
		if (rv)
			fs_reply_qfs_err(req, rv);
		else
			fuse_reply_attr(req, &st, 0);
		return;
	}
	server_rdlock(fs->srv);
	rv = fs_resolve(fs, ino, &t);
	server_unlock(fs->srv);
	if (rv == 0 && t.kind == T_REV)
		rv = QFS_EPERM;
	if (rv == 0 && fs->cfg->read_only)
		rv = QFS_EPERM;
	if (rv == 0 && (to_set & FUSE_SET_ATTR_SIZE) &&
	    (uint64_t)attr->st_size > fs->cfg->max_value_bytes)
		rv = QFS_EFBIG;
	if (rv)
		goto err;
	if (t.kind == T_PENDING && (rv = fs_pending_put(fs, ino, t.key, &ops[txn.nthen++])))
		goto err;
	if (t.kind == T_PENDING) {
		cr.pending = ino;
		cr.key = t.key;
	}
	if (to_set & FUSE_SET_ATTR_SIZE) {
		if (h) {
			rv = fs_handle_truncate(fs, h, (uint64_t)attr->st_size);
		} else if (t.kind == T_PENDING) {
			rv = QFS_EINVAL; /* only its opener can see it; it has an fd */
		} else if ((rv = resized_value(fs, t.key, (uint64_t)attr->st_size, &value)) == 0) {
			ops[txn.nthen++] = (struct store_op){
				.type = STORE_OP_PUT, .key = t.key, .ftype = STORE_FILE,
				.value = value, .value_len = (size_t)attr->st_size};
		}
		if (rv)
			goto err;
	}
	if (to_set & FUSE_SET_ATTR_MODE)
		mask |= STORE_ATTR_MODE;
	if (to_set & FUSE_SET_ATTR_UID)
		mask |= STORE_ATTR_UID;
	if (to_set & FUSE_SET_ATTR_GID)
		mask |= STORE_ATTR_GID;
	if (to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW))
		mask |= STORE_ATTR_MTIME;
	if (mask) {
		ops[txn.nthen++] = (struct store_op){
			.type = STORE_OP_SETATTR, .key = t.key, .flags = mask,
			.mode = attr->st_mode & 07777, .uid = attr->st_uid, .gid = attr->st_gid,
			.mtime_ns = (to_set & FUSE_SET_ATTR_MTIME_NOW)
					    ? now_ns()
					    : attr->st_mtim.tv_sec * 1000000000LL + attr->st_mtim.tv_nsec};
	}
	if (txn.nthen == 0) { /* atime only, or an ftruncate of the open copy */
		rv = node_stat(fs, ino, h, &st);
		if (rv)
			goto err;
		fuse_reply_attr(req, &st, fs->cfg->attr_timeout);
		return;
	}
	fs_commit(fs, &cr, &txn);
	free(value);
	return;
err:
	free(value);
	fs_reply_qfs_err(req, rv);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct server_status st;
	struct statvfs sv;
	uint64_t used;

	(void)ino;
	server_status(FS(req)->srv, &st);
	used = st.db_size < st.quota_bytes ? st.db_size : st.quota_bytes;
	memset(&sv, 0, sizeof(sv));
	sv.f_bsize = sv.f_frsize = 4096;
	sv.f_blocks = st.quota_bytes / 4096;
	sv.f_bfree = sv.f_bavail = (st.quota_bytes - used) / 4096;
	sv.f_files = st.keys + sv.f_bfree;
	sv.f_ffree = sv.f_favail = sv.f_bfree;
	sv.f_namemax = STORE_NAME_MAX;
	fuse_reply_statfs(req, &sv);
}

/* ---- Extended attributes --------------------------------------------------- */

/* The computed user.quorumfs.* attributes; QFS_ENODATA for other names. */
static int meta_xattr(struct fs *fs, const struct store_kv *kv, uint64_t current_rev,
		      const char *name, char *out, size_t cap)
{
	const char *attr = name + strlen(XATTR_PREFIX);

	if (fs_lease_xattr(name))
		return fs_lease_xattr_get(fs, kv, name, out, cap);
	if (strcmp(attr, "revision") == 0)
		snprintf(out, cap, "%" PRIu64, kv->ino == STORE_ROOT_INO ? current_rev : kv->mod_rev);
	else if (strcmp(attr, "create_revision") == 0)
		snprintf(out, cap, "%" PRIu64, kv->create_rev);
	else if (strcmp(attr, "version") == 0)
		snprintf(out, cap, "%" PRIu64, kv->version);
	else
		return QFS_ENODATA;
	return 0;
}

static void reply_xattr_value(fuse_req_t req, const void *value, size_t len, size_t size)
{
	if (size == 0)
		fuse_reply_xattr(req, len);
	else if (size < len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, value, len);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct fs *fs = FS(req);
	struct store_kv kv;
	struct target t;
	const uint8_t *value = NULL;
	uint8_t *copy = NULL;
	char num[32];
	size_t len = 0;
	int rv;

	if (strncmp(name, "user.", 5) != 0 || fs_is_ctl(ino)) {
		fuse_reply_err(req, ENODATA);
		return;
	}
	server_rdlock(fs->srv);
	rv = fs_resolve(fs, ino, &t);
	if (rv == 0 && t.kind == T_PENDING)
		rv = QFS_ENODATA;
	if (rv == 0)
		rv = store_get(server_store(fs->srv), t.key, t.rev, &kv);
	if (rv == 0 && strncmp(name, XATTR_PREFIX, strlen(XATTR_PREFIX)) == 0) {
		rv = meta_xattr(fs, &kv, t.rev ? t.rev : store_revision(server_store(fs->srv)),
				name, num, sizeof(num));
		value = (const uint8_t *)num;
		len = strlen(num);
	} else if (rv == 0) {
		rv = store_kv_xattr_get(&kv, name, &value, &len);
	}
	if (rv == 0 && !(copy = malloc(len ? len : 1)))
		rv = QFS_ENOMEM;
	if (rv == 0)
		memcpy(copy, value, len);
	server_unlock(fs->srv);
	if (rv)
		fs_reply_qfs_err(req, rv);
	else
		reply_xattr_value(req, copy, len, size);
	free(copy);
}

static int add_xattr_name(void *arg, const char *name)
{
	struct qbuf *b = arg;

	qbuf_put(b, name, strlen(name) + 1);
	return 0;
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	static const char *const meta[] = {"revision", "create_revision", "version", "lease",
					   "ttl"};
	struct fs *fs = FS(req);
	struct store_kv kv;
	struct target t;
	struct qbuf b;
	char name[64], unused[32];
	int rv;

	qbuf_init(&b);
	server_rdlock(fs->srv);
	rv = fs_resolve(fs, ino, &t);
	if (rv == 0 && (t.kind == T_STORE || t.kind == T_REV)) {
		rv = store_get(server_store(fs->srv), t.key, t.rev, &kv);
		for (size_t i = 0; rv == 0 && i < sizeof(meta) / sizeof(meta[0]); i++) {
			snprintf(name, sizeof(name), XATTR_PREFIX "%s", meta[i]);
			if (meta_xattr(fs, &kv, 1, name, unused, sizeof(unused)) == 0)
				add_xattr_name(&b, name);
		}
		if (rv == 0)
			rv = store_kv_xattr_list(&kv, add_xattr_name, &b);
	}
	server_unlock(fs->srv);
	if (rv == 0)
		rv = qbuf_error(&b);
	if (rv)
		fs_reply_qfs_err(req, rv);
	else
		reply_xattr_value(req, b.data, b.len, size);
	qbuf_close(&b);
}

static void change_xattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			 size_t len, int flags, bool remove)
{
	struct fs *fs = FS(req);
	struct target t;
	struct store_op ops[3]; /* pending create, lease grant, attach */
	struct store_txn txn = {.then_ops = ops};
	struct commit_req cr = {.reply = REPLY_ERR, .req = req};
	bool lease = fs_lease_xattr(name);
	int rv;

	if (strncmp(name, "user.", 5) != 0) {
		fuse_reply_err(req, remove ? ENODATA : EOPNOTSUPP);
		return;
	}
	if (!lease && strncmp(name, XATTR_PREFIX, strlen(XATTR_PREFIX)) == 0) {
		LOG_INFO("%s %s: a read-only attribute", remove ? "removexattr" : "setxattr", name);
		fuse_reply_err(req, EPERM);
		return;
	}
	if (fs_is_ctl(ino)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	server_rdlock(fs->srv);
	rv = fs_resolve(fs, ino, &t);
	server_unlock(fs->srv);
	if (rv == 0 && (t.kind == T_REV || fs->cfg->read_only))
		rv = QFS_EPERM;
	if (rv == 0 && t.kind == T_PENDING) { /* its create and the xattr: one revision */
		rv = fs_pending_put(fs, ino, t.key, &ops[txn.nthen++]);
		cr.pending = ino;
		cr.key = t.key;
	}
	if (rv) {
		fs_reply_qfs_err(req, rv);
		return;
	}
	if (lease) {
		rv = fs_lease_xattr_set(fs, t.key, name, value, len, remove, ops, &txn.nthen);
		if (rv) {
			fs_reply_qfs_err(req, rv);
			return;
		}
	} else {
		ops[txn.nthen++] = (struct store_op){
			.type = remove ? STORE_OP_RMXATTR : STORE_OP_SETXATTR, .key = t.key,
			.xname = name, .value = (const uint8_t *)value, .value_len = len,
			.flags = (flags & XATTR_CREATE ? STORE_XATTR_CREATE : 0) |
				 (flags & XATTR_REPLACE ? STORE_XATTR_REPLACE : 0)};
	}
	fs_commit(fs, &cr, &txn);
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags)
{
	change_xattr(req, ino, name, value, size, flags, false);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	change_xattr(req, ino, name, NULL, 0, 0, true);
}

/* ---- Directories ------------------------------------------------------------ */

/*
 * A directory handle lists the directory as of the revision it was opened
 * at, so a listing streamed over many readdir calls is one consistent
 * snapshot. Offsets: 1 after ".", 2 after "..", 3 + k after child k; the
 * handle remembers the last name so the next call seeks straight to it.
 */
struct dirh {
	uint64_t rev;
	off_t next_off;
	char last[STORE_NAME_MAX + 1];
};

struct fill {
	fuse_req_t req;
	char *buf;
	size_t size, used;
	off_t off;
	off_t skip; /* children still to skip when seeking by offset */
	struct dirh *d;
};

static bool fill_add(struct fill *f, const char *name, mode_t mode, uint64_t ino)
{
	struct stat st = {.st_ino = ino, .st_mode = mode};
	size_t need = fuse_add_direntry(f->req, NULL, 0, name, NULL, 0);

	if (f->used + need > f->size)
		return false;
	f->off++;
	fuse_add_direntry(f->req, f->buf + f->used, f->size - f->used, name, &st, f->off);
	f->used += need;
	return true;
}

static int fill_child(void *arg, const struct store_kv *kv)
{
	struct fill *f = arg;

	if (f->skip > 0) {
		f->skip--;
		return 0;
	}
	if (!fill_add(f, kv->name, type_bits(kv->type), kv->ino))
		return 1;
	snprintf(f->d->last, sizeof(f->d->last), "%s", kv->name);
	return 0;
}

static void opendir_now(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = FS(req);
	struct dirh *d = calloc(1, sizeof(*d));
	struct store_kv kv;
	struct target t;
	int rv = d ? 0 : QFS_ENOMEM;

	server_rdlock(fs->srv);
	if (rv == 0)
		rv = fs_resolve(fs, ino, &t);
	if (rv == 0 && t.kind == T_PENDING)
		rv = QFS_ENOTDIR;
	if (rv == 0 && t.kind != T_CTL)
		rv = store_get(server_store(fs->srv), t.key, t.rev, &kv);
	if (rv == 0 && t.kind != T_CTL && kv.type != STORE_DIR)
		rv = QFS_ENOTDIR;
	if (rv == 0)
		d->rev = t.kind == T_REV ? t.rev : store_revision(server_store(fs->srv));
	server_unlock(fs->srv);
	if (rv) {
		free(d);
		fs_reply_qfs_err(req, rv);
		return;
	}
	d->next_off = -1;
	fi->fh = (uintptr_t)d;
	if (fuse_reply_open(req, fi) == -ENOENT)
		free(d);
}

/* A listing starts from a linearizable read point, like a file's open: `ls`
 * anywhere shows what every returned change made. */
static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fs_open_at_read_point(req, ino, fi, opendir_now);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	struct fs *fs = FS(req);
	struct dirh *d = (struct dirh *)fi->fh;
	struct fill f = {.req = req, .size = size, .off = off, .d = d};
	struct target t;
	int rv;

	if (fs_is_ctl(ino)) {
		ctl_readdir(fs, req, ino, size, off);
		return;
	}
	if (!(f.buf = malloc(size))) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (off == 0 && !fill_add(&f, ".", S_IFDIR, ino))
		goto reply;
	if (f.off == 1 && !fill_add(&f, "..", S_IFDIR, STORE_ROOT_INO))
		goto reply;
	server_rdlock(fs->srv);
	rv = fs_resolve(fs, ino, &t);
	if (rv == 0) {
		const char *after = NULL;

		if (off >= 2 && off == d->next_off && d->last[0])
			after = d->last;
		else if (off > 2)
			f.skip = off - 2;
		rv = store_children(server_store(fs->srv), t.key, d->rev, after, fill_child, &f);
		if (rv == QFS_ECOMPACTED) /* the listing outlived its revision's history */
			rv = store_children(server_store(fs->srv), t.key, 0, after, fill_child, &f);
		if (rv > 0)
			rv = 0;
	}
	server_unlock(fs->srv);
	if (rv) {
		free(f.buf);
		fs_reply_qfs_err(req, rv);
		return;
	}
reply:
	d->next_off = f.off;
	fuse_reply_buf(req, f.buf, f.used);
	free(f.buf);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	free((struct dirh *)fi->fh);
	fuse_reply_err(req, 0);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	conn->want &= ~(unsigned)(FUSE_CAP_WRITEBACK_CACHE | FUSE_CAP_AUTO_INVAL_DATA |
				  FUSE_CAP_READDIRPLUS | FUSE_CAP_HANDLE_KILLPRIV);
}

const struct fuse_lowlevel_ops fs_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.readlink = op_readlink,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.unlink = op_unlink,
	.rmdir = op_rmdir,
	.symlink = op_symlink,
	.rename = op_rename,
	.link = op_link,
	.open = fs_open,
	.read = fs_read,
	.write = fs_write,
	.flush = fs_flush,
	.release = fs_release,
	.fsync = fs_fsync,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.releasedir = op_releasedir,
	.statfs = op_statfs,
	.setxattr = op_setxattr,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
	.removexattr = op_removexattr,
	.create = fs_create,
};
