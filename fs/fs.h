/*
 * The FUSE filesystem's shared internals, for the files of fs/ only.
 *
 * Node ids (the kernel's handle on an inode):
 *   1                      the root key "/"
 *   2 .. 0xffff            the control directory /.quorumfs and its files
 *   STORE_INO(rev, sub)    a live key: its create identity, >= 1 << 16
 *   NODE_LEASE_BIT | id    the file /.quorumfs/leases/ID of lease id
 *   NODE_REV_BIT | n       a key as of a past revision (/.quorumfs/rev/N/...)
 *   NODE_PENDING_BIT | n   a file created without O_EXCL and not yet
 *                          committed: it becomes a key at its first flush, so
 *                          `echo v > new` makes one revision, not two
 *
 * Reads run on FUSE worker threads under the server's read lock. Every
 * change is a transaction proposed to the loop thread; the request is
 * answered from the loop thread when the entry is applied (commit.c).
 */
#ifndef QFS_FS_H
#define QFS_FS_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "../store/entry.h"
#include "../store/store.h"
#include "config.h"
#include "inval.h"
#include "server.h"

#define NODE_CTL_DIR 2
#define NODE_CTL_STATUS 3
#define NODE_CTL_REV 4
#define NODE_CTL_MEMBERS 5
#define NODE_CTL_LEASES 6
#define NODE_CTL_METRICS 7
#define NODE_CTL_MAX 0xffff
#define NODE_LEASE_BIT (1ull << 61)
#define FS_LEASE_ID_MASK SERVER_LEASE_ID_MASK
#define NODE_REV_BIT (1ull << 62)
#define NODE_PENDING_BIT (1ull << 63)
#define CTL_NAME ".quorumfs"

struct nodes;

struct fs {
	struct server *srv;
	const struct config *cfg;
	struct fuse_session *se;
	pthread_t thread;
	bool thread_started;
	bool thread_done; /* atomic: the FUSE loop has ended */
	struct nodes *nodes;
	struct inval *inval;
	struct replayer *replayer; /* replay.h; the invalidation thread's */
	pid_t replay_pid;	   /* atomic: its process, 0 once stopped (FUSE threads) */
	char mount_abs[PATH_MAX];
	uint64_t replay_before; /* atomic: the revision a replay answers lookups from */
	/* Keys a replay's lookups resolved, by node id: a directory deleted by the
	 * replayed change has no key now, but its children are replayed under it. */
	pthread_mutex_t replay_mu;
	struct replay_name *replay_names;
};

/* What a node id stands for, resolved with the key copied out. */
enum target_kind { T_STORE, T_REV, T_PENDING, T_CTL };
struct target {
	enum target_kind kind;
	uint64_t nodeid;
	uint64_t ino;  /* T_STORE: the key's ino; T_PENDING: 0 until committed */
	uint64_t rev;  /* T_REV */
	char key[STORE_KEY_MAX + 1];
};

/* Open file state (fi->fh). Guarded by mu. */
struct handle {
	pthread_mutex_t mu;
	uint64_t nodeid;
	int flags;                /* open(2) flags */
	struct store_blob *base;  /* the value as of open; NULL for ctl files */
	uint8_t *buf;             /* working copy once written, else NULL */
	size_t len, cap;
	bool dirty;               /* changes not yet committed (writes, truncate, create) */
	bool wrote;               /* a write or truncate since the last commit */
	int failed;               /* sticky QFS_E* (EFBIG): flush commits nothing */
	uint64_t cache_ino;       /* != 0: a page cache user of this ino (nodes.c) */
	bool replay;              /* opened by a replay: commits nothing (remote.c) */
	uint8_t *text;            /* ctl files: generated content */
	size_t text_len;
};

/* ---- nodes.c: node ids for revision views and pending creates ------------ */
int nodes_create(struct nodes **out);
void nodes_destroy(struct nodes *n);
/* Finds or adds the node for key at rev; counts one kernel lookup. */
uint64_t nodes_rev_lookup(struct nodes *n, uint64_t rev, const char *key);
/* Adds a pending file (one kernel lookup). 0 on ENOMEM. */
uint64_t nodes_pending_add(struct nodes *n, const char *key, uint32_t mode, uint32_t uid,
			   uint32_t gid);
/* The uncommitted pending node for key, or 0; count: add a kernel lookup. */
uint64_t nodes_pending_find(struct nodes *n, const char *key, bool count);
struct pending_info {
	uint32_t mode, uid, gid;
	uint64_t ino;  /* committed identity, 0 before */
	bool dropped;  /* unlinked or abandoned before commit */
	int64_t ctime_ns;
};
/* Copies out a rev/pending node; QFS_ENOENT when unknown. */
int nodes_get(struct nodes *n, uint64_t nodeid, uint64_t *rev, char *key, size_t keycap,
	      struct pending_info *pi);
void nodes_pending_commit(struct nodes *n, uint64_t nodeid, uint64_t ino);
void nodes_pending_drop(struct nodes *n, uint64_t nodeid);
void nodes_forget(struct nodes *n, uint64_t nodeid, uint64_t nlookup);
/* How a reader of ino at mod_rev uses the page cache (see nodes.c). KEEP
 * and FRESH handles must call nodes_cache_close() when released. */
enum cache_use { CACHE_KEEP, CACHE_FRESH, CACHE_BYPASS };
enum cache_use nodes_cache_open(struct nodes *n, uint64_t ino, uint64_t mod_rev);
void nodes_cache_close(struct nodes *n, uint64_t ino);

/* Whether a node id is in /.quorumfs (not "/", not a key, not a past key). */
static inline bool fs_is_ctl(uint64_t nodeid)
{
	return (nodeid != STORE_ROOT_INO && nodeid <= NODE_CTL_MAX) ||
	       (nodeid & (NODE_LEASE_BIT | NODE_REV_BIT | NODE_PENDING_BIT)) == NODE_LEASE_BIT;
}

/* ---- lease.c: leases through xattrs and /.quorumfs/leases ---------------- */
bool fs_lease_xattr(const char *name);
/* user.quorumfs.lease / .ttl of kv (read lock held). QFS_ENODATA if none. */
int fs_lease_xattr_get(struct fs *fs, const struct store_kv *kv, const char *name, char *out,
		       size_t cap);
/* Appends the ops that set (or with remove, detach) a lease xattr on key to
 * ops[*n] (room for 2). QFS_EINVAL: bad value or ttl under the minimum. */
int fs_lease_xattr_set(struct fs *fs, const char *key, const char *name, const char *value,
		       size_t len, bool remove, struct store_op *ops, size_t *n);
/* The JSON of /.quorumfs/leases/ID (malloc'd). QFS_ENOENT if no such lease. */
int fs_lease_text(struct fs *fs, uint64_t id, char **text, size_t *len);
/* store_lease_keys() callback: appends key as a JSON string to a qbuf. */
int fs_json_key(void *arg, const char *key);

/* ---- fuse_ops.c ---------------------------------------------------------- */
extern const struct fuse_lowlevel_ops fs_ops;
/* Resolves nodeid (read lock held by the caller). QFS_ENOENT when gone. */
int fs_resolve(struct fs *fs, uint64_t nodeid, struct target *t);
/* fs_resolve() for a replay's request: nodes as they were before the change. */
int fs_resolve_replay(struct fs *fs, uint64_t nodeid, struct target *t);
void fs_kv_stat(const struct fs *fs, const struct store_kv *kv, uint64_t nodeid, bool readonly,
		struct stat *st);
/* Builds "dir/name" into out; QFS_ENAMETOOLONG / QFS_EINVAL for bad names. */
int fs_child_key(const char *dir, const char *name, char *out, size_t cap);
void fs_reply_qfs_err(fuse_req_t req, int qfs_err);
struct pending_info;
void fs_pending_stat(const struct pending_info *pi, uint64_t nodeid, struct stat *st);
/* The PUT that turns pending file nodeid into key (empty until its flush). */
int fs_pending_put(struct fs *fs, uint64_t nodeid, const char *key, struct store_op *op);
/* Resolves the parent of a change and builds the child key into key
 * (STORE_KEY_MAX + 1 bytes); refuses the revision view, /.quorumfs and a
 * read-only mount with QFS_EPERM (a replay's request resolves as before its
 * change and passes on a read-only mount: it changes nothing). */
int fs_change_target(struct fs *fs, fuse_req_t req, fuse_ino_t parent, const char *name,
		     char *key);
/* Replies an fs_change_target() error (EROFS inside the revision view). */
void fs_reply_change_err(fuse_req_t req, int rv, fuse_ino_t parent);

/* ---- commit.c: propose a change, answer the request when applied -------- */
enum commit_reply {
	REPLY_ERR,    /* fuse_reply_err(0 or error) */
	REPLY_ENTRY,  /* fuse_reply_entry for key */
	REPLY_ATTR,   /* fuse_reply_attr for ino */
	REPLY_CREATE, /* fuse_reply_create for key with handle h */
	REPLY_FLUSH,  /* fuse_reply_err after a handle's content committed */
	REPLY_RELEASE, /* as REPLY_FLUSH, then frees the handle */
	REPLY_CTL_ATTR, /* fuse_reply_attr for control file ino */
};
struct commit_req {
	enum commit_reply reply;
	fuse_req_t req;
	uint64_t ino;        /* REPLY_ATTR; REPLY_FLUSH: node id of the handle */
	const char *key;     /* REPLY_ENTRY/CREATE/FLUSH-of-pending: copied */
	struct handle *h;    /* REPLY_CREATE/REPLY_FLUSH */
	struct fuse_file_info fi; /* REPLY_CREATE */
	uint64_t pending;    /* node id of a pending file this commit creates */
	bool unseen;         /* changes keys the kernel did not see (a lease revoke):
			      * invalidate and replay them like a remote change */
};
/* Answers req with key's entry (fuse_reply_create when fi is given, taking
 * the handle fi->fh). The caller holds the read lock or is the loop thread. */
void fs_reply_entry(struct fs *fs, fuse_req_t req, const char *key, struct fuse_file_info *fi);
/* Proposes txn; the request is answered exactly once (also on failure). */
void fs_commit(struct fs *fs, const struct commit_req *cr, const struct store_txn *txn);

/* ---- file.c: open files --------------------------------------------------- */
void fs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
	       struct fuse_file_info *fi);
void fs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
/* Runs fn(req, ino, fi) once this member has a linearizable read point
 * (SPEC 3.3) and, on the invalidation thread, after the kernel dropped what
 * the entries up to it changed; at once where reads are local anyway
 * (serializable mount, /.quorumfs, the revision view, a lone voter). */
typedef void (*fs_open_fn)(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_open_at_read_point(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
			   fs_open_fn fn);
void fs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void fs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
	      struct fuse_file_info *fi);
void fs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
void fs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
struct handle *fs_handle_new(uint64_t nodeid, int flags, struct store_blob *base);
void fs_handle_free(struct fs *fs, struct handle *h);
/* Size of an open handle's current content. */
size_t fs_handle_size(struct handle *h);
/* Truncates or extends an open handle (ftruncate). */
int fs_handle_truncate(struct fs *fs, struct handle *h, uint64_t size);

/* ---- ctl.c: /.quorumfs ------------------------------------------------------ */
/* Entry for name under a control dir; QFS_ENOENT if none. */
int ctl_lookup(struct fs *fs, uint64_t parent, const char *name, struct fuse_entry_param *e);
int ctl_stat(struct fs *fs, uint64_t nodeid, struct stat *st);
/* Generates a control file's content for a new handle. */
int ctl_open(struct fs *fs, uint64_t nodeid, struct handle **out);
/* Lists a control dir from entry number `from`; see fuse_ops.c readdir. */
void ctl_readdir(struct fs *fs, fuse_req_t req, uint64_t nodeid, size_t size, off_t off);

/* ---- remote.c: kernel caches follow changes made through other members --- */
void fs_remote_applied(void *arg, const uint8_t *entry, size_t len,
		       const struct store_result *res, void (*landed)(void *), void *landed_arg);
/* Drops the kernel's dentry of key and, if the key exists now, its inode's
 * caches (queued on the invalidation thread). Loop thread. */
void fs_forget_key(struct fs *fs, const char *key);
/* During a replay: remember / find the key a replay lookup gave node id. */
void fs_replay_note(struct fs *fs, uint64_t nodeid, const char *key);
int fs_replay_key(struct fs *fs, uint64_t nodeid, char *key, size_t cap);
/* True when req comes from the replay of a change already applied; *before
 * is the revision to answer lookups from. Such requests change nothing. */
bool fs_replaying(struct fs *fs, fuse_req_t req, uint64_t *before);
/* key as of revision before (0: the empty store), for a replay's lookups. */
int fs_lookup_before(struct fs *fs, const char *key, uint64_t before, struct store_kv *kv);

/* ---- mount.c --------------------------------------------------------------- */
int fs_mount(struct fs *fs, struct server *srv, const struct config *cfg);
/* Waits briefly for the FUSE threads after the stop; false if they linger. */
bool fs_wait(struct fs *fs);
void fs_close(struct fs *fs);

#endif
