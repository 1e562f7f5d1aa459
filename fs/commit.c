/*
 * The FUSE side of a change: a handler builds a transaction and calls
 * fs_commit(); the loop thread applies it and finish() answers the request
 * from there, reading the freshly applied state without a lock (the loop
 * thread is the store's only writer). Every request gets exactly one reply.
 *
 * All compares the filesystem makes are "key absent" checks, so a failed
 * compare means another creator won the race: EEXIST.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../common/errors.h"
#include "../common/log.h"
#include "fs.h"

struct pending_commit {
	struct fs *fs;
	struct commit_req cr;
	char *key;
};

void fs_reply_entry(struct fs *fs, fuse_req_t req, const char *key, struct fuse_file_info *fi)
{
	struct fuse_entry_param e;
	struct store_kv kv;
	int rv = store_get(server_store(fs->srv), key, 0, &kv);

	if (rv) {
		fs_reply_qfs_err(req, rv);
		return;
	}
	memset(&e, 0, sizeof(e));
	e.ino = kv.ino;
	e.attr_timeout = e.entry_timeout = fs->cfg->attr_timeout;
	fs_kv_stat(fs, &kv, kv.ino, false, &e.attr);
	if (fi) {
		((struct handle *)fi->fh)->nodeid = kv.ino;
		if (fuse_reply_create(req, &e, fi) == -ENOENT) /* interrupted: nobody holds it */
			fs_handle_free(fs, (struct handle *)fi->fh);
	} else {
		fuse_reply_entry(req, &e);
	}
}

/* ino is the node id the kernel asked about; a pending file is found by key. */
static void reply_attr(struct fs *fs, fuse_req_t req, uint64_t ino, const char *key,
		       struct handle *h)
{
	struct store *s = server_store(fs->srv);
	struct store_kv kv;
	struct stat st;
	int rv = key ? store_get(s, key, 0, &kv) : store_get_ino(s, ino, &kv);

	if (rv) {
		fs_reply_qfs_err(req, rv);
		return;
	}
	fs_kv_stat(fs, &kv, ino, false, &st);
	if (h)
		st.st_size = (off_t)fs_handle_size(h);
	fuse_reply_attr(req, &st, fs->cfg->attr_timeout);
}

static void finish(void *arg, int err, const struct store_result *res)
{
	struct pending_commit *pc = arg;
	struct commit_req *cr = &pc->cr;
	struct fs *fs = pc->fs;

	if (!err)
		err = res->err;
	if (!err && !res->succeeded)
		err = QFS_EEXIST;
	if (!err && pc->key && cr->pending) {
		struct store_kv kv;

		if (store_get(server_store(fs->srv), pc->key, 0, &kv) == 0)
			nodes_pending_commit(fs->nodes, cr->pending, kv.ino);
		/* The kernel knows the file by its pending node id; invalidations
		 * target the key's ino. Drop the name so the next lookup finds it
		 * by that ino (open descriptors keep the old inode). */
		fs_forget_key(fs, pc->key);
	}
	if (cr->reply == REPLY_FLUSH && err) {
		/* close() reports it and nothing changed: the handle's changes
		 * are abandoned (release must not commit them later) and a
		 * never-committed name disappears now. */
		pthread_mutex_lock(&cr->h->mu);
		cr->h->dirty = cr->h->wrote = false;
		pthread_mutex_unlock(&cr->h->mu);
		if (cr->pending)
			nodes_pending_drop(fs->nodes, cr->pending);
	}
	if (cr->reply == REPLY_RELEASE) {
		if (err)
			LOG_WARN("commit at release of ino %llx failed: %s",
				 (unsigned long long)cr->ino, qfs_strerror(err));
		if (err && cr->pending)
			nodes_pending_drop(fs->nodes, cr->pending);
		fs_handle_free(fs, cr->h);
		fuse_reply_err(cr->req, 0);
		goto out;
	}
	if (err) {
		if (cr->reply == REPLY_CREATE)
			fs_handle_free(fs, cr->h);
		fs_reply_qfs_err(cr->req, err);
	} else if (cr->reply == REPLY_ENTRY) {
		fs_reply_entry(fs, cr->req, pc->key, NULL);
	} else if (cr->reply == REPLY_CREATE) {
		fs_reply_entry(fs, cr->req, pc->key, &cr->fi);
	} else if (cr->reply == REPLY_ATTR) {
		reply_attr(fs, cr->req, cr->ino, pc->key, cr->h);
	} else if (cr->reply == REPLY_CTL_ATTR) {
		struct stat st;

		if (ctl_stat(fs, cr->ino, &st) == 0)
			fuse_reply_attr(cr->req, &st, 0);
		else
			fuse_reply_err(cr->req, ENOENT);
	} else if (cr->reply == REPLY_FLUSH) {
		/* Attributes the kernel fetched while this value was uncommitted
		 * are stale now: drop them before close() returns. */
		inval_inode(fs->inval, cr->ino, 0, cr->req, 0);
	} else {
		fuse_reply_err(cr->req, 0);
	}
out:
	free(pc->key);
	free(pc);
}

void fs_commit(struct fs *fs, const struct commit_req *cr, const struct store_txn *txn)
{
	struct pending_commit *pc = calloc(1, sizeof(*pc));
	struct entry e = {.type = ENTRY_TXN};
	int rv;

	if (!pc || (cr->key && !(pc->key = strdup(cr->key)))) {
		rv = QFS_ENOMEM;
		goto err;
	}
	pc->fs = fs;
	pc->cr = *cr;
	pc->cr.key = NULL;
	e.txn = *txn;
	rv = cr->unseen ? server_propose(fs->srv, &e, finish, pc)
			: server_propose_mount(fs->srv, &e, finish, pc);
	if (rv == 0)
		return;
err:
	if (pc)
		free(pc->key);
	free(pc);
	if (cr->reply == REPLY_FLUSH && cr->pending)
		nodes_pending_drop(fs->nodes, cr->pending);
	if (cr->reply == REPLY_RELEASE) {
		LOG_WARN("commit at release failed: %s", qfs_strerror(rv));
		fs_handle_free(fs, cr->h);
		rv = 0;
	}
	if (cr->reply == REPLY_CREATE)
		fs_handle_free(fs, cr->h);
	fs_reply_qfs_err(cr->req, rv);
}
