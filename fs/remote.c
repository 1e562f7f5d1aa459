/*
 * Changes this member's kernel did not see (made through other members, the
 * client port or the lease keeper) reach it as applied entries. For every
 * key such a transaction touched:
 *  1. drop the kernel's dentry and the inode's attributes and pages, so
 *     lookups and reads see the new state;
 *  2. replay the change through our own mount, so inotify watchers here see
 *     it (FUSE notify calls emit no inotify events; only VFS operations do).
 * Both are driven by the invalidation thread, in order; the replay's VFS
 * calls are made by the replayer process (replay.h). Its requests carry its
 * pid: handlers answer lookups from the revision before the change (a
 * deleted name still resolves, a created one does not yet) and change
 * nothing (fs_replaying()).
 *
 * The replay is the net effect per key between the revision before and the
 * one the transaction made: created (file, dir, symlink), deleted, modified,
 * attributes changed; a rename is replayed as a rename.
 */
#include <errno.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/errors.h"
#include "../common/log.h"
#include "fs.h"
#include "replay.h"

#define CREATE_FILE REPLAY_CREATE_FILE
#define MKDIR REPLAY_MKDIR
#define SYMLINK REPLAY_SYMLINK
#define MODIFY REPLAY_MODIFY
#define ATTRIB REPLAY_ATTRIB
#define UNLINK REPLAY_UNLINK
#define RMDIR REPLAY_RMDIR
#define RENAME REPLAY_RENAME

struct step {
	enum replay_kind kind;
	char *key, *key2; /* RENAME destination; SYMLINK target */
	unsigned flags;   /* RENAME flags */
	uint64_t size;
	uint32_t mode;
};

struct replay {
	struct fs *fs;
	uint64_t before; /* the revision before the change */
	struct step *steps;
	size_t n, cap;
	bool lease_deletes_done; /* a revision's lease deletions are walked once */
	struct replay_name *names; /* deleted keys' node ids, installed while it runs */
};

struct replay_name {
	uint64_t nodeid;
	char *key;
	struct replay_name *next;
};

static struct replay_name *name_new(uint64_t nodeid, const char *key)
{
	struct replay_name *n = malloc(sizeof(*n));

	if (n && !(n->key = strdup(key))) {
		free(n);
		n = NULL;
	}
	if (n)
		n->nodeid = nodeid;
	return n;
}

void fs_replay_note(struct fs *fs, uint64_t nodeid, const char *key)
{
	struct replay_name *n = name_new(nodeid, key);

	if (!n)
		return;
	pthread_mutex_lock(&fs->replay_mu);
	n->next = fs->replay_names;
	fs->replay_names = n;
	pthread_mutex_unlock(&fs->replay_mu);
}

int fs_replay_key(struct fs *fs, uint64_t nodeid, char *key, size_t cap)
{
	int rv = QFS_ENOENT;

	pthread_mutex_lock(&fs->replay_mu);
	for (struct replay_name *n = fs->replay_names; n && rv; n = n->next) {
		if (n->nodeid == nodeid) {
			snprintf(key, cap, "%s", n->key);
			rv = 0;
		}
	}
	pthread_mutex_unlock(&fs->replay_mu);
	return rv;
}

static void names_free(struct replay_name *n)
{
	while (n) {
		struct replay_name *next = n->next;

		free(n->key);
		free(n);
		n = next;
	}
}

static void replay_names_clear(struct fs *fs)
{
	struct replay_name *n;

	pthread_mutex_lock(&fs->replay_mu);
	n = fs->replay_names;
	fs->replay_names = NULL;
	pthread_mutex_unlock(&fs->replay_mu);
	names_free(n);
}

static void add(struct replay *r, enum replay_kind kind, const char *key, const char *key2,
		unsigned flags, const struct store_kv *kv)
{
	struct step *s;

	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 8;
		struct step *grown = realloc(r->steps, cap * sizeof(*grown));

		if (!grown)
			return; /* a lost inotify event, not lost data */
		r->steps = grown;
		r->cap = cap;
	}
	s = &r->steps[r->n];
	memset(s, 0, sizeof(*s));
	s->kind = kind;
	s->key = strdup(key);
	s->key2 = key2 ? strdup(key2) : NULL;
	s->flags = flags;
	if (kv) {
		s->size = kv->value->len;
		s->mode = kv->mode;
	}
	if (s->key && (!key2 || s->key2))
		r->n++;
	else
		free(s->key);
}

void fs_forget_key(struct fs *fs, const char *key)
{
	struct store *s = server_store(fs->srv);
	const char *slash = strrchr(key, '/');
	char parent[STORE_KEY_MAX + 1];
	struct store_kv kv;

	if (!slash || !slash[1])
		return;
	snprintf(parent, sizeof(parent), "%.*s", slash == key ? 1 : (int)(slash - key), key);
	if (store_get(s, key, 0, &kv) == 0)
		inval_inode(fs->inval, kv.ino, 1, NULL, 0);
	if (store_get(s, parent, 0, &kv) == 0) {
		inval_inode(fs->inval, kv.ino, 0, NULL, 0); /* its size, mtime */
		inval_entry(fs->inval, kv.ino, slash + 1);
	}
}

/* key as of revision rev, where revision 0 is the empty store (only "/");
 * store_get() reads 0 as "now". */
static int get_at(struct store *s, const char *key, uint64_t rev, struct store_kv *kv)
{
	if (rev == 0 && strcmp(key, "/") != 0)
		return QFS_ENOENT;
	return store_get(s, key, rev, kv);
}

static bool named(const struct replay *r, uint64_t nodeid)
{
	for (const struct replay_name *n = r->names; n; n = n->next) {
		if (n->nodeid == nodeid)
			return true;
	}
	return false;
}

/* The node ids of key and its ancestors as they were before the change: a
 * later transaction, applied before this replay runs, may delete or move
 * them while the kernel still reaches them by cached dentries. */
static void name_path(struct replay *r, const char *key)
{
	struct store *s = server_store(r->fs->srv);
	char path[STORE_KEY_MAX + 1];
	struct replay_name *n;
	struct store_kv kv;

	for (const char *p = strchr(key + 1, '/');; p = strchr(p + 1, '/')) {
		int len = p ? (int)(p - key) : (int)strlen(key);

		snprintf(path, sizeof(path), "%.*s", len, key);
		if (get_at(s, path, r->before, &kv) == 0 && !named(r, kv.ino) &&
		    (n = name_new(kv.ino, path))) {
			n->next = r->names;
			r->names = n;
		}
		if (!p)
			break;
	}
}

/* Parents created by the same transaction come first (mkdir -p). */
static void created_parents(struct replay *r, const char *key)
{
	struct store *s = server_store(r->fs->srv);
	char path[STORE_KEY_MAX + 1];
	struct store_kv kv;

	for (const char *p = strchr(key + 1, '/'); p; p = strchr(p + 1, '/')) {
		snprintf(path, sizeof(path), "%.*s", (int)(p - key), key);
		if (get_at(s, path, r->before, &kv) != 0 && store_get(s, path, 0, &kv) == 0)
			add(r, MKDIR, path, NULL, 0, &kv);
	}
}

static int collect_delete(void *arg, const struct store_kv *kv)
{
	struct replay *r = arg;
	struct replay_name *n = name_new(kv->ino, kv->key);

	add(r, kv->type == STORE_DIR ? RMDIR : UNLINK, kv->key, NULL, 0, kv);
	if (n) { /* the kernel may reach it by a cached dentry, by node id */
		n->next = r->names;
		r->names = n;
	}
	return 0;
}

/* The net change of one key between r->before and now. */
static void diff_key(struct replay *r, const char *key)
{
	struct store *s = server_store(r->fs->srv);
	struct store_kv old, now;
	bool had = get_at(s, key, r->before, &old) == 0;
	bool has = store_get(s, key, 0, &now) == 0;
	size_t first;

	name_path(r, key);
	if (!had && has) {
		created_parents(r, key);
		add(r, now.type == STORE_DIR ? MKDIR : now.type == STORE_SYMLINK ? SYMLINK : CREATE_FILE,
		    key, now.type == STORE_SYMLINK ? (const char *)now.value->data : NULL, 0, &now);
	} else if (had && !has) {
		/* A directory goes bottom-up: collect its subtree as it was, then
		 * reverse it (store_range is top-down). */
		first = r->n;
		if (old.type == STORE_DIR)
			store_range(s, key, r->before, collect_delete, r);
		else
			add(r, UNLINK, key, NULL, 0, &old);
		for (size_t i = first, j = r->n; j > i + 1; i++, j--) {
			struct step t = r->steps[i];

			r->steps[i] = r->steps[j - 1];
			r->steps[j - 1] = t;
		}
	} else if (had && has && now.mod_rev > r->before) {
		bool content = now.type == STORE_FILE && (old.value != now.value || old.ino != now.ino);

		add(r, content ? MODIFY : ATTRIB, key, NULL, 0, &now);
	}
}

static bool seen(const struct store_op *ops, size_t i, const char *key)
{
	for (size_t j = 0; j < i; j++) {
		if ((ops[j].key && strcmp(ops[j].key, key) == 0) ||
		    (ops[j].dst && strcmp(ops[j].dst, key) == 0))
			return true;
	}
	return false;
}

/* Keys deleted by a lease revoke or expiry are not named in the ops: the
 * revision's events list them. */
static int lease_deleted(void *arg, const struct store_event *ev)
{
	struct replay *r = arg;

	if (ev->type == STORE_EVENT_DELETE) {
		fs_forget_key(r->fs, ev->kv->key);
		diff_key(r, ev->kv->key);
	}
	return 0;
}

static void replay_op(struct replay *r, const struct store_op *ops, size_t i)
{
	const struct store_op *op = &ops[i];
	struct store_kv kv;

	if (op->type == STORE_OP_LEASE_REVOKE || op->type == STORE_OP_LEASE_EXPIRE) {
		if (!r->lease_deletes_done)
			store_events(server_store(r->fs->srv), r->before + 1, r->before + 1, "/",
				     lease_deleted, r);
		r->lease_deletes_done = true;
	} else if (!op->key) {
		return; /* grant, renew: no key changes */
	} else if (op->type == STORE_OP_RENAME) {
		if (get_at(server_store(r->fs->srv), op->key, r->before, &kv) == 0) {
			name_path(r, op->key);
			name_path(r, op->dst);
			add(r, RENAME, op->key, op->dst,
			    op->flags & STORE_RENAME_EXCHANGE ? RENAME_EXCHANGE : 0, NULL);
		} else /* created and moved in one go (a pending file): a create */
			diff_key(r, op->dst);
	} else if (!seen(ops, i, op->key)) {
		diff_key(r, op->key);
	}
}

static void step_free(struct step *s)
{
	free(s->key);
	free(s->key2);
}

static void replay_free(struct replay *r)
{
	names_free(r->names);
	for (size_t i = 0; i < r->n; i++)
		step_free(&r->steps[i]);
	free(r->steps);
	free(r);
}

/* ---- On the invalidation thread ----------------------------------------- */

static void run_step(struct fs *fs, const struct step *s)
{
	char p[PATH_MAX + STORE_KEY_MAX], q[PATH_MAX + STORE_KEY_MAX];
	struct replay_step rs = {.kind = s->kind, .path = p, .path2 = s->key2,
				 .flags = s->flags, .mode = s->mode, .size = s->size};
	int rv;

	snprintf(p, sizeof(p), "%s%s", fs->mount_abs, s->key);
	if (s->kind == RENAME) {
		snprintf(q, sizeof(q), "%s%s", fs->mount_abs, s->key2);
		rs.path2 = q;
	}
	rv = replayer_run(fs->replayer, &rs);
	if (rv)
		LOG_DEBUG("replay of a remote change to %s for inotify: %s", s->key,
			  rv < 0 && rv > -4096 ? strerror(-rv) : qfs_strerror(rv));
}

static void run(void *arg)
{
	struct replay *r = arg;

	__atomic_store_n(&r->fs->replay_before, r->before, __ATOMIC_RELEASE);
	pthread_mutex_lock(&r->fs->replay_mu);
	r->fs->replay_names = r->names; /* cleared (and freed) after the steps */
	r->names = NULL;
	pthread_mutex_unlock(&r->fs->replay_mu);
	for (size_t i = 0; i < r->n; i++)
		run_step(r->fs, &r->steps[i]);
	replay_names_clear(r->fs);
	replay_free(r);
}

int fs_lookup_before(struct fs *fs, const char *key, uint64_t before, struct store_kv *kv)
{
	return get_at(server_store(fs->srv), key, before, kv);
}

bool fs_replaying(struct fs *fs, fuse_req_t req, uint64_t *before)
{
	pid_t pid = __atomic_load_n(&fs->replay_pid, __ATOMIC_ACQUIRE);

	if (!pid || fuse_req_ctx(req)->pid != pid)
		return false;
	*before = __atomic_load_n(&fs->replay_before, __ATOMIC_ACQUIRE);
	return true;
}

/* ---- The applied hook (loop thread) ------------------------------------------ */

void fs_remote_applied(void *arg, const uint8_t *data, size_t len, const struct store_result *res,
		       void (*landed)(void *), void *landed_arg)
{
	struct fs *fs = arg;
	const struct store_op *ops;
	struct replay *r;
	struct entry *e;
	size_t n;

	if (res->err || !fs->inval || entry_decode(data, len, &e) != 0) {
		if (landed)
			landed(landed_arg);
		return;
	}
	ops = res->succeeded ? e->txn.then_ops : e->txn.else_ops;
	n = res->succeeded ? e->txn.nthen : e->txn.nelse;
	for (size_t i = 0; i < n; i++) {
		if (ops[i].key)
			fs_forget_key(fs, ops[i].key);
		if (ops[i].dst)
			fs_forget_key(fs, ops[i].dst);
	}
	if (landed) /* behind the invalidations, ahead of the replay */
		inval_call(fs->inval, landed, landed_arg);
	r = calloc(1, sizeof(*r));
	if (r && res->revision > 0) {
		r->fs = fs;
		r->before = res->revision - 1;
		for (size_t i = 0; i < n; i++)
			replay_op(r, ops, i);
		inval_call(fs->inval, run, r);
	} else {
		free(r);
	}
	free(e);
}
