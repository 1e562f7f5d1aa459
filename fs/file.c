/*
 * Open files. A handle reads a stable snapshot of the value as of open (a
 * reference to its immutable blob). Writes, truncates and appends change a
 * private working copy; flush (close) or fsync commits the whole value as one
 * revision. A write past --max-value-bytes fails with EFBIG and poisons the
 * handle: its close reports EFBIG and commits nothing.
 *
 * Creating without O_EXCL only reserves the name (a pending node, see
 * fs.h): the key comes into being with its content at the first flush.
 * O_EXCL creates commit at once, since they are the cluster's lock primitive.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/errors.h"
#include "../common/log.h"
#include "fs.h"

#define FS(req) ((struct fs *)fuse_req_userdata(req))

struct handle *fs_handle_new(uint64_t nodeid, int flags, struct store_blob *base)
{
	struct handle *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	pthread_mutex_init(&h->mu, NULL);
	h->nodeid = nodeid;
	h->flags = flags;
	h->base = base;
	return h;
}

void fs_handle_free(struct fs *fs, struct handle *h)
{
	if (!h)
		return;
	if (h->cache_ino)
		nodes_cache_close(fs->nodes, h->cache_ino);
	store_blob_unref(h->base);
	free(h->buf);
	free(h->text);
	pthread_mutex_destroy(&h->mu);
	free(h);
}

/* Makes sure the working copy exists and can hold `need` bytes. mu held. */
static int materialize(struct handle *h, size_t need)
{
	size_t base_len = h->base ? h->base->len : 0;

	if (!h->buf) {
		size_t cap = need > base_len ? need : base_len;

		h->buf = malloc(cap ? cap : 1);
		if (!h->buf)
			return QFS_ENOMEM;
		h->cap = cap ? cap : 1;
		h->len = base_len;
		if (base_len)
			memcpy(h->buf, h->base->data, base_len);
	}
	if (need > h->cap) {
		size_t cap = h->cap * 2 > need ? h->cap * 2 : need;
		uint8_t *grown = realloc(h->buf, cap);

		if (!grown)
			return QFS_ENOMEM;
		h->buf = grown;
		h->cap = cap;
	}
	return 0;
}

size_t fs_handle_size(struct handle *h)
{
	size_t n;

	pthread_mutex_lock(&h->mu);
	n = h->buf ? h->len : h->base ? h->base->len : 0;
	pthread_mutex_unlock(&h->mu);
	return n;
}

static int resize(struct handle *h, size_t size)
{
	int rv = materialize(h, size);

	if (rv)
		return rv;
	if (size > h->len)
		memset(h->buf + h->len, 0, size - h->len);
	h->len = size;
	h->dirty = h->wrote = true;
	return 0;
}

int fs_handle_truncate(struct fs *fs, struct handle *h, uint64_t size)
{
	int rv;

	if (size > fs->cfg->max_value_bytes)
		return QFS_EFBIG;
	pthread_mutex_lock(&h->mu);
	rv = resize(h, (size_t)size);
	pthread_mutex_unlock(&h->mu);
	return rv;
}

static bool writable(int flags)
{
	return (flags & O_ACCMODE) != O_RDONLY;
}

/* ---- create / open -------------------------------------------------------- */

static void reply_open_handle(fuse_req_t req, struct fuse_file_info *fi, struct handle *h)
{
	struct fs *fs = FS(req);

	fi->fh = (uintptr_t)h;
	if (fuse_reply_open(req, fi) == -ENOENT) /* interrupted: nobody holds it */
		fs_handle_free(fs, h);
}

/* A replay (remote.c) opens keys that exist already: a handle that reads
 * the current value and commits nothing. */
static struct handle *replay_handle(struct fs *fs, uint64_t nodeid, const char *key,
				    struct fuse_file_info *fi)
{
	struct store_kv kv;
	struct handle *h = NULL;

	if (store_get(server_store(fs->srv), key, 0, &kv) == 0 &&
	    (h = fs_handle_new(nodeid ? nodeid : kv.ino, fi->flags, store_blob_ref(kv.value))))
		h->replay = true;
	fi->direct_io = 1;
	fi->fh = (uintptr_t)h;
	return h;
}

static void replay_create(struct fs *fs, fuse_req_t req, const char *key,
			  struct fuse_file_info *fi)
{
	server_rdlock(fs->srv);
	if (replay_handle(fs, 0, key, fi))
		fs_reply_entry(fs, req, key, fi);
	else
		fuse_reply_err(req, ENOENT);
	server_unlock(fs->srv);
}

void fs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
	       struct fuse_file_info *fi)
{
	struct fs *fs = FS(req);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	char key[STORE_KEY_MAX + 1];
	struct store_cmp cmp = {.target = STORE_CMP_VERSION, .op = STORE_CMP_EQ, .key = key};
	struct store_op op = {.type = STORE_OP_PUT, .key = key, .ftype = STORE_FILE,
			      .mode = mode & 07777, .uid = ctx->uid, .gid = ctx->gid,
			      .value = (const uint8_t *)""};
	struct store_txn txn = {.cmps = &cmp, .ncmps = 1, .then_ops = &op, .nthen = 1};
	struct commit_req cr = {.reply = REPLY_CREATE, .req = req, .key = key};
	struct fuse_entry_param e;
	struct store_kv kv, dir;
	struct handle *h;
	uint64_t before;
	int rv = fs_change_target(fs, req, parent, name, key);

	if (rv) {
		fs_reply_change_err(req, rv, parent);
		return;
	}
	if (fs_replaying(fs, req, &before)) {
		replay_create(fs, req, key, fi);
		return;
	}
	if (!S_ISREG(mode)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	if (!(h = fs_handle_new(0, fi->flags, NULL))) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (fi->flags & O_EXCL) {
		fi->direct_io = 1;
		cr.h = h;
		cr.fi = *fi;
		cr.fi.fh = (uintptr_t)h;
		fs_commit(fs, &cr, &txn);
		return;
	}
	memset(&e, 0, sizeof(e));
	server_rdlock(fs->srv);
	rv = store_get(server_store(fs->srv), key, 0, &kv);
	if (rv == 0) { /* it appeared since the kernel's lookup: open it */
		if (kv.type == STORE_DIR) {
			rv = QFS_EISDIR;
		} else {
			h->nodeid = e.ino = kv.ino;
			h->base = store_blob_ref(kv.value);
			fs_kv_stat(fs, &kv, kv.ino, false, &e.attr);
			e.attr_timeout = e.entry_timeout = fs->cfg->attr_timeout;
		}
	} else if (rv == QFS_ENOENT) {
		char parent_key[STORE_KEY_MAX + 1];

		snprintf(parent_key, sizeof(parent_key), "%.*s", (int)(strrchr(key, '/') - key),
			 key);
		rv = store_get(server_store(fs->srv), parent_key[0] ? parent_key : "/", 0, &dir);
		if (rv == 0 && dir.type != STORE_DIR)
			rv = QFS_ENOTDIR;
		if (rv == 0 && !(e.ino = nodes_pending_add(fs->nodes, key, mode & 07777, ctx->uid,
							   ctx->gid)))
			rv = QFS_ENOMEM;
		if (rv == 0) {
			struct pending_info pi;

			nodes_get(fs->nodes, e.ino, NULL, NULL, 0, &pi);
			fs_pending_stat(&pi, e.ino, &e.attr);
			h->nodeid = e.ino;
			h->dirty = true; /* the create itself is a change to commit */
		}
	}
	server_unlock(fs->srv);
	if (rv == 0 && (fi->flags & O_TRUNC) && h->base) {
		rv = resize(h, 0);
		h->wrote = false;
		e.attr.st_size = 0;
	}
	if (rv) {
		fs_handle_free(fs, h);
		fs_reply_qfs_err(req, rv);
		return;
	}
	fi->fh = (uintptr_t)h;
	fi->direct_io = 1;
	if (fuse_reply_create(req, &e, fi) == -ENOENT)
		fs_handle_free(fs, h);
}

static void open_now(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = FS(req);
	struct handle *h = NULL;
	struct store_kv kv;
	struct target t;
	int rv;

	if (fs_is_ctl(ino)) { /* lease files open for writing too: touch renews them */
		rv = writable(fi->flags) && !(ino & NODE_LEASE_BIT) ? QFS_EACCES
								     : ctl_open(fs, ino, &h);
		if (rv) {
			fs_reply_qfs_err(req, rv);
			return;
		}
		fi->direct_io = 1; /* generated content: no size known in advance */
		reply_open_handle(req, fi, h);
		return;
	}
	server_rdlock(fs->srv);
	rv = fs_resolve(fs, ino, &t);
	if (rv == 0 && (t.kind == T_REV || fs->cfg->read_only) && writable(fi->flags))
		rv = QFS_EPERM;
	if (rv == 0 && t.kind != T_PENDING) {
		rv = store_get(server_store(fs->srv), t.key, t.rev, &kv);
		if (rv == 0 && kv.type == STORE_DIR)
			rv = QFS_EISDIR;
	}
	if (rv == 0 && !(h = fs_handle_new(ino, fi->flags,
					   t.kind == T_PENDING ? NULL : store_blob_ref(kv.value))))
		rv = QFS_ENOMEM;
	if (rv == 0 && t.kind == T_REV) {
		fi->keep_cache = 1; /* history never changes */
	} else if (rv == 0 && t.kind == T_STORE && !writable(fi->flags)) {
		enum cache_use use = nodes_cache_open(fs->nodes, t.ino, kv.mod_rev);

		fi->keep_cache = use == CACHE_KEEP;
		fi->direct_io = use == CACHE_BYPASS;
		if (use != CACHE_BYPASS)
			h->cache_ino = t.ino;
	} else if (rv == 0) {
		fi->direct_io = 1; /* writers: uncommitted bytes stay out of the cache */
	}
	server_unlock(fs->srv);
	if (rv == 0 && (fi->flags & O_TRUNC) && writable(fi->flags)) {
		pthread_mutex_lock(&h->mu);
		rv = resize(h, 0);
		h->wrote = false;
		pthread_mutex_unlock(&h->mu);
	}
	if (rv) {
		fs_handle_free(fs, h);
		if (rv == QFS_EPERM && t.kind == T_REV)
			fuse_reply_err(req, EROFS);
		else
			fs_reply_qfs_err(req, rv);
		return;
	}
	reply_open_handle(req, fi, h);
}

/* An open waiting for its linearizable read point (SPEC 3.3). */
struct deferred_open {
	fuse_req_t req;
	fuse_ino_t ino;
	struct fuse_file_info fi;
	fs_open_fn fn;
};

static void deferred_open_run(void *arg)
{
	struct deferred_open *d = arg;

	d->fn(d->req, d->ino, &d->fi);
	free(d);
}

/* Loop thread: the read point is applied. The open is answered after the
 * invalidations those entries queued, so the kernel sees the new state. */
static void deferred_open_ready(void *arg, int err)
{
	struct deferred_open *d = arg;

	if (err) {
		fs_reply_qfs_err(d->req, err);
		free(d);
		return;
	}
	inval_call(FS(d->req)->inval, deferred_open_run, d);
}

void fs_open_at_read_point(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
			   fs_open_fn fn)
{
	struct fs *fs = FS(req);
	struct deferred_open *d;
	int rv;

	if (fs->cfg->consistency != CONSISTENCY_LINEARIZABLE || fs_is_ctl(ino) ||
	    (ino & (NODE_REV_BIT | NODE_PENDING_BIT)) || server_reads_local(fs->srv)) {
		fn(req, ino, fi);
		return;
	}
	if (!(d = malloc(sizeof(*d)))) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	*d = (struct deferred_open){req, ino, *fi, fn};
	rv = server_read_barrier(fs->srv, deferred_open_ready, d);
	if (rv) {
		free(d);
		fs_reply_qfs_err(req, rv);
	}
}

void fs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = FS(req);
	struct target t;
	uint64_t before;
	int rv;

	if (fs_replaying(fs, req, &before)) {
		server_rdlock(fs->srv);
		rv = fs_resolve_replay(fs, ino, &t);
		if (rv == 0 && !replay_handle(fs, ino, t.key, fi))
			rv = QFS_ENOENT;
		server_unlock(fs->srv);
		if (rv)
			fs_reply_qfs_err(req, rv);
		else
			reply_open_handle(req, fi, (struct handle *)fi->fh);
		return;
	}
	fs_open_at_read_point(req, ino, fi, open_now);
}

/* ---- read / write ------------------------------------------------------------ */

void fs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct handle *h = (struct handle *)fi->fh;
	const uint8_t *data;
	size_t len;

	(void)ino;
	pthread_mutex_lock(&h->mu);
	if (h->text) {
		data = h->text;
		len = h->text_len;
	} else if (h->buf) {
		data = h->buf;
		len = h->len;
	} else {
		data = h->base ? h->base->data : NULL;
		len = h->base ? h->base->len : 0;
	}
	if ((uint64_t)off >= len)
		fuse_reply_buf(req, NULL, 0);
	else
		fuse_reply_buf(req, (const char *)data + off,
			       len - (size_t)off < size ? len - (size_t)off : size);
	pthread_mutex_unlock(&h->mu);
}

void fs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
	      struct fuse_file_info *fi)
{
	struct fs *fs = FS(req);
	struct handle *h = (struct handle *)fi->fh;
	uint64_t end;
	int rv;

	(void)ino;
	if (h->replay) { /* applied already */
		fuse_reply_write(req, size);
		return;
	}
	pthread_mutex_lock(&h->mu);
	rv = h->failed;
	if (rv == 0 && (h->flags & O_APPEND))
		off = (off_t)(h->buf ? h->len : h->base ? h->base->len : 0);
	end = (uint64_t)off + size;
	if (rv == 0 && end > fs->cfg->max_value_bytes) {
		LOG_INFO("write of key ino %llu: value would be %llu bytes, over --max-value-bytes "
			 "%llu; the file's close will commit nothing",
			 (unsigned long long)h->nodeid, (unsigned long long)end,
			 (unsigned long long)fs->cfg->max_value_bytes);
		rv = h->failed = QFS_EFBIG;
	}
	if (rv == 0)
		rv = materialize(h, (size_t)end);
	if (rv == 0) {
		if ((size_t)off > h->len)
			memset(h->buf + h->len, 0, (size_t)off - h->len);
		memcpy(h->buf + off, buf, size);
		if (end > h->len)
			h->len = (size_t)end;
		h->dirty = h->wrote = true;
	}
	pthread_mutex_unlock(&h->mu);
	if (rv)
		fs_reply_qfs_err(req, rv);
	else
		fuse_reply_write(req, size);
}

/* ---- flush / fsync / release -------------------------------------------------- */

/*
 * Commits the handle's content if it changed; answers req when applied.
 * `reply` is REPLY_FLUSH or REPLY_RELEASE (which also frees the handle).
 */
static void commit_handle(fuse_req_t req, struct handle *h, enum commit_reply reply)
{
	struct fs *fs = FS(req);
	struct commit_req cr = {.reply = reply, .req = req, .h = h, .ino = h->nodeid};
	struct store_op op = {.type = STORE_OP_PUT, .ftype = STORE_FILE};
	struct store_txn txn = {.then_ops = &op, .nthen = 1};
	struct target t;
	uint8_t *value = NULL;
	size_t len = 0;
	int rv = 0;

	if (h->replay)
		goto done;
	if (h->nodeid & NODE_PENDING_BIT) {
		struct pending_info pi;

		pthread_mutex_lock(&h->mu);
		if (!h->wrote && nodes_get(fs->nodes, h->nodeid, NULL, NULL, 0, &pi) == 0 &&
		    pi.ino)
			h->dirty = false; /* its create was committed already (setattr, rename) */
		pthread_mutex_unlock(&h->mu);
	}
	pthread_mutex_lock(&h->mu);
	rv = h->failed;
	if (rv || !h->dirty) {
		h->failed = 0;
		h->dirty = h->wrote = false;
		pthread_mutex_unlock(&h->mu);
		if (rv && (h->nodeid & NODE_PENDING_BIT))
			nodes_pending_drop(fs->nodes, h->nodeid);
		goto done;
	}
	len = h->buf ? h->len : 0;
	value = malloc(len ? len : 1);
	if (value && len)
		memcpy(value, h->buf, len);
	h->dirty = h->wrote = false;
	pthread_mutex_unlock(&h->mu);
	if (!value) {
		rv = QFS_ENOMEM;
		goto err;
	}
	server_rdlock(fs->srv);
	rv = fs_resolve(fs, h->nodeid, &t);
	server_unlock(fs->srv);
	if (rv == QFS_ENOENT) { /* removed while open: like writing an unlinked file */
		free(value);
		rv = 0;
		goto done;
	}
	if (rv == 0 && t.kind == T_PENDING) {
		rv = fs_pending_put(fs, h->nodeid, t.key, &op);
		cr.pending = h->nodeid;
		cr.key = t.key;
	}
	if (rv)
		goto err;
	op.key = t.key;
	op.value = value;
	op.value_len = len;
	fs_commit(fs, &cr, &txn);
	free(value);
	return;
err:
	free(value);
	if (reply == REPLY_FLUSH && (h->nodeid & NODE_PENDING_BIT))
		nodes_pending_drop(fs->nodes, h->nodeid);
done:
	if (reply == REPLY_RELEASE) {
		struct pending_info pi;

		if ((h->nodeid & NODE_PENDING_BIT) &&
		    nodes_get(fs->nodes, h->nodeid, NULL, NULL, 0, &pi) == 0 && !pi.ino)
			nodes_pending_drop(fs->nodes, h->nodeid); /* never committed: never existed */
		fs_handle_free(fs, h);
		rv = 0;
	}
	fs_reply_qfs_err(req, rv);
}

/*
 * Whether the process closing a descriptor of h still holds another one on
 * the same file. Reads /proc/PID/fd links, which never call into FUSE.
 */
static bool still_open_elsewhere(struct fs *fs, fuse_req_t req, struct handle *h)
{
	char dir[64], link[PATH_MAX + STORE_KEY_MAX], path[PATH_MAX + STORE_KEY_MAX], fd[PATH_MAX];
	struct dirent *d;
	struct target t;
	bool found = false;
	DIR *dp;
	int rv;

	server_rdlock(fs->srv);
	rv = fs_resolve(fs, h->nodeid, &t);
	server_unlock(fs->srv);
	if (rv)
		return false;
	snprintf(path, sizeof(path), "%s%s", fs->mount_abs, t.key);
	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)fuse_req_ctx(req)->pid);
	if (!(dp = opendir(dir)))
		return false;
	while (!found && (d = readdir(dp))) {
		ssize_t n;

		snprintf(fd, sizeof(fd), "%s/%s", dir, d->d_name);
		n = readlink(fd, link, sizeof(link) - 1);
		if (n > 0) {
			link[n] = 0;
			found = strcmp(link, path) == 0;
		}
	}
	closedir(dp);
	return found;
}

/*
 * close(2) flushes. A flush with nothing written yet (only a create or an
 * O_TRUNC) while the closing process still holds another descriptor of the
 * file is the shell closing the fd it dup2()ed before the command writes:
 * it waits for the writes, so `echo v > f` is one revision. Otherwise (a
 * lone open+close, `: > f`) it commits before close() returns.
 */
void fs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = FS(req);
	struct handle *h = (struct handle *)fi->fh;
	bool quiet;

	(void)ino;
	pthread_mutex_lock(&h->mu);
	quiet = h->dirty && !h->wrote && !h->failed && !h->replay;
	pthread_mutex_unlock(&h->mu);
	if (quiet && still_open_elsewhere(fs, req, h))
		fuse_reply_err(req, 0);
	else
		commit_handle(req, h, REPLY_FLUSH);
}

void fs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)ino;
	(void)datasync;
	commit_handle(req, (struct handle *)fi->fh, REPLY_FLUSH);
}

/* Release is asynchronous to close(2): the reply waits for the commit, but
 * the closer does not. Errors can only be logged here. */
void fs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct handle *h = (struct handle *)fi->fh;

	(void)ino;
	commit_handle(req, h, REPLY_RELEASE);
}
