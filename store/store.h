/*
 * The MVCC key tree.
 *
 * Keys are absolute paths ("/a/b/c"); "/" is the root directory and always
 * exists. The tree is hierarchical: every key but "/" has a parent key that
 * is a directory. Each key keeps its history of versions until compaction, so
 * any revision >= the compacted revision can be read.
 *
 * State changes only through store_apply(), which takes one committed entry
 * (see entry.h) at a time, in log order, from whoever orders them (the
 * single-node sequencer now, the Raft log later). Applying is deterministic:
 * the same entries in the same order give the same revisions and results on
 * every member. An entry whose transaction changes anything gets the next
 * revision; one that changes nothing (a failed compare with an empty else
 * branch, an op that fails) does not consume a revision.
 *
 * Threads: the store has no locks. One thread applies; readers on other
 * threads must hold a lock that excludes the applier (fs/ uses a rwlock).
 * Views returned by reads (struct store_kv and everything it points to) stay
 * valid until the next store_apply/store_snapshot_load/store_destroy.
 */
#ifndef QFS_STORE_H
#define QFS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/codec.h"

#define STORE_NAME_MAX 255   /* bytes in one path component */
#define STORE_KEY_MAX 4096   /* bytes in a whole key */
#define STORE_XATTR_NAME_MAX 255
#define STORE_XATTR_VALUE_MAX 65536
#define STORE_RESERVED_PREFIX "/.quorumfs" /* key and subtree never stored */

struct store;

struct store_config {
	uint64_t quota_bytes;     /* 0 = unlimited; see store_size() */
	uint64_t max_value_bytes; /* 0 = unlimited */
};

enum store_type { STORE_FILE = 1, STORE_DIR = 2, STORE_SYMLINK = 3 };

/*
 * A key's identity, equal on every member: (create revision << 16) | the
 * number of keys created before it in the same transaction (so the op index
 * when every op creates one key; STORE_PUT_MKPARENTS creates the parents
 * first, outermost first). The root is 1. Renames keep it (a moved key keeps
 * its inode number). A transaction creating more than 65536 keys fails with
 * QFS_EINVAL.
 */
#define STORE_ROOT_INO 1
#define STORE_INO(create_rev, sub) (((uint64_t)(create_rev) << 16) | (uint64_t)(sub))

/* Reference-counted immutable value bytes, safe to hold from any thread. */
struct store_blob {
	const uint8_t *data;
	size_t len;
	/* private */
	int refs;
};
struct store_blob *store_blob_ref(struct store_blob *b);
void store_blob_unref(struct store_blob *b); /* NULL is fine */

/* One version of one key. Borrowed view; see the header comment. */
struct store_kv {
	const char *key;       /* full path, NUL-terminated */
	const char *name;      /* last component, points into key ("/" for root) */
	enum store_type type;
	uint64_t ino;
	uint64_t create_rev;
	uint64_t mod_rev;
	uint64_t version;      /* 1 on create, +1 per change */
	uint32_t mode;         /* permission bits only (07777) */
	uint32_t uid, gid;
	int64_t mtime_ns;      /* set explicitly (utimens) or the commit time */
	int64_t ctime_ns;      /* commit time of the last change */
	uint64_t lease;        /* 0 = none; see "Leases" */
	struct store_blob *value; /* never NULL; len 0 for dirs; symlink target */
	uint32_t nchildren;    /* live children of a dir, at the current revision only */
	const void *xattrs_;   /* private: use store_kv_xattr_* */
};

/* Stored extended attributes ("user.*" other than user.quorumfs.*). */
int store_kv_xattr_get(const struct store_kv *kv, const char *name, const uint8_t **value,
		       size_t *len); /* QFS_ENODATA when absent */
/* Calls cb for each name in name order; stops early when cb returns non-zero. */
int store_kv_xattr_list(const struct store_kv *kv, int (*cb)(void *arg, const char *name),
			void *arg);

int store_create(const struct store_config *cfg, struct store **out);
void store_destroy(struct store *s);

/* Validates a key: absolute, no empty/"."/".." components, no trailing "/"
 * (except "/"), lengths within limits, not under STORE_RESERVED_PREFIX.
 * Returns 0, QFS_EINVAL, QFS_ENAMETOOLONG or QFS_EPERM (reserved). */
int store_key_check(const char *key);

/* ---- Reads ---------------------------------------------------------------- */

uint64_t store_revision(const struct store *s);         /* current revision */
uint64_t store_compacted_revision(const struct store *s); /* oldest readable */
uint64_t store_applied_index(const struct store *s);     /* last applied entry */
/* Bytes counted against the quota: for every retained version (tombstones
 * included) its key, value and xattr names and values, plus 32; plus 64
 * per lease. A version that shares its value blob with another still
 * counts it. */
uint64_t store_size(const struct store *s);
uint64_t store_key_count(const struct store *s);         /* live keys now, "/" included */
/* zlib CRC32 over every live key at rev in store_range() order: for each,
 * the key with its NUL, u64 mod_rev, u64 value length, value (LE). Same
 * errors as store_get. */
int store_hash(const struct store *s, uint64_t rev, uint32_t *hash);

/* rev 0 means the current revision. Errors: QFS_ENOENT (absent at rev),
 * QFS_ECOMPACTED (rev < compacted), QFS_EFUTUREREV (rev > current), and
 * store_key_check's errors (QFS_EPERM under /.quorumfs). nchildren is set
 * at the current revision only (0 for a past one: store_children counts
 * them, in time linear in the directory's history). */
int store_get(const struct store *s, const char *key, uint64_t rev, struct store_kv *out);
/* The live key with this ino, current revision only. QFS_ENOENT if none. */
int store_get_ino(const struct store *s, uint64_t ino, struct store_kv *out);

/*
 * Iterates the children of directory dir alive at rev (0 = now), in byte
 * order of their names, starting strictly after the name `after` (NULL =
 * from the first). Stops when cb returns non-zero and returns that value.
 * No copy of the directory is made. QFS_ENOTDIR if dir is not a directory.
 */
int store_children(const struct store *s, const char *dir, uint64_t rev, const char *after,
		   int (*cb)(void *arg, const struct store_kv *kv), void *arg);

/*
 * Iterates key and its whole subtree alive at rev in tree order (a key, then
 * its children's subtrees by name). Same stop and error rules.
 */
int store_range(const struct store *s, const char *key, uint64_t rev,
		int (*cb)(void *arg, const struct store_kv *kv), void *arg);

/* ---- Transactions ----------------------------------------------------------- */

enum store_cmp_target {
	STORE_CMP_VALUE = 1,
	STORE_CMP_VERSION,  /* 0 when the key is absent */
	STORE_CMP_CREATE,   /* create revision, 0 when absent */
	STORE_CMP_MOD,      /* mod revision, 0 when absent */
};
enum store_cmp_op { STORE_CMP_EQ = 1, STORE_CMP_NE, STORE_CMP_LT, STORE_CMP_GT };

struct store_cmp {
	enum store_cmp_target target;
	enum store_cmp_op op;
	const char *key;
	uint64_t num;          /* VERSION/CREATE/MOD */
	const uint8_t *value;  /* VALUE: compared bytewise (memcmp, then length) */
	size_t value_len;
};

enum store_op_type {
	STORE_OP_PUT = 1, /* create or replace the value; meta kept if it exists */
	STORE_OP_DELETE,  /* remove a key */
	STORE_OP_RENAME,  /* move key (and subtree) to dst */
	STORE_OP_SETATTR, /* change mode/uid/gid/mtime; value kept */
	STORE_OP_SETXATTR,
	STORE_OP_RMXATTR,
	/* Leases (SPEC 3.5); see "Leases" below. */
	STORE_OP_LEASE_GRANT,  /* lease_id, ttl_ms: a new lease, expiry = now + ttl */
	STORE_OP_LEASE_RENEW,  /* lease_id: expiry = now + ttl */
	STORE_OP_LEASE_REVOKE, /* lease_id: the lease goes, its keys are deleted */
	STORE_OP_LEASE_ATTACH, /* key, lease_id: attach (lease_id 0: detach) */
	STORE_OP_LEASE_EXPIRE, /* lease_id, lease_gen: revoke, if not renewed since */
};

/* PUT flags */
#define STORE_PUT_MKPARENTS 0x1  /* create missing parent dirs (mode 0755, same uid/gid) */
/* DELETE flags */
#define STORE_DEL_RECURSIVE 0x1  /* a directory and its whole subtree */
#define STORE_DEL_DIR 0x2        /* rmdir: QFS_ENOTDIR unless a dir; ENOTEMPTY unless empty */
#define STORE_DEL_NOTDIR 0x4     /* unlink: QFS_EISDIR if a dir */
/* RENAME flags, as renameat2 */
#define STORE_RENAME_NOREPLACE 0x1
#define STORE_RENAME_EXCHANGE 0x2
/* SETXATTR flags, as setxattr(2) */
#define STORE_XATTR_CREATE 0x1   /* QFS_EEXIST if the name exists */
#define STORE_XATTR_REPLACE 0x2  /* QFS_ENODATA if it does not */
/* SETATTR mask */
#define STORE_ATTR_MODE 0x1
#define STORE_ATTR_UID 0x2
#define STORE_ATTR_GID 0x4
#define STORE_ATTR_MTIME 0x8     /* mtime_ns given */

struct store_op {
	enum store_op_type type;
	const char *key;
	uint32_t flags;            /* PUT/DELETE/RENAME/SETXATTR flags, SETATTR mask */
	/* PUT: type/mode/uid/gid used only when the key is created (a PUT on an
	 * existing key must have its type: QFS_EISDIR / QFS_EINVAL otherwise). */
	enum store_type ftype;
	uint32_t mode, uid, gid;
	int64_t mtime_ns;          /* SETATTR with STORE_ATTR_MTIME */
	const uint8_t *value;      /* PUT value, SETXATTR value */
	size_t value_len;
	const char *dst;           /* RENAME destination */
	const char *xname;         /* SETXATTR/RMXATTR name */
	uint64_t lease_id;         /* LEASE_*; key is unused (may be NULL) but for ATTACH */
	int64_t ttl_ms;            /* LEASE_GRANT, 1..STORE_LEASE_TTL_MAX_MS */
	uint64_t lease_gen;        /* LEASE_EXPIRE: the generation the leader saw expire */
};

/*
 * Op errors (every op first checks its keys with store_key_check):
 *   any:      QFS_ENOENT key (or a parent) absent; QFS_ENOTDIR a parent is
 *             not a dir; QFS_ENOSPC the op grows the store past quota_bytes
 *             (never for DELETE).
 *   PUT:      QFS_EISDIR file/symlink PUT on a dir; QFS_EINVAL other type
 *             mismatch, bad ftype, dir with a value, empty symlink target;
 *             QFS_EFBIG value > max_value_bytes. A dir PUT on a dir is a touch.
 *   DELETE:   QFS_EPERM on "/"; QFS_ENOTEMPTY dir with live children and no
 *             RECURSIVE; DIR/NOTDIR as documented with the flags.
 *   RENAME:   src == dst: no change (QFS_EEXIST with NOREPLACE, as Linux);
 *             QFS_EINVAL dst inside src, either is "/", bad flags, EXCHANGE of
 *             a key with its ancestor; QFS_EEXIST NOREPLACE and dst exists;
 *             QFS_ENOENT EXCHANGE and dst absent; QFS_EISDIR file onto a dir;
 *             QFS_ENOTDIR dir onto a non-dir; QFS_ENOTEMPTY dir onto a
 *             non-empty dir. Moved keys keep ino, create_rev, mtime, value
 *             and xattrs; version + 1, ctime = commit time.
 *   SETATTR:  QFS_EINVAL unknown mask bits. ctime = commit time.
 *   SETXATTR/RMXATTR: QFS_EINVAL name not "user.<something>" or under
 *             "user.quorumfs."; QFS_ERANGE name > STORE_XATTR_NAME_MAX;
 *             QFS_EFBIG value > STORE_XATTR_VALUE_MAX; QFS_ENODATA absent
 *             (RMXATTR, REPLACE); QFS_EEXIST (CREATE).
 * A directory's own version does not change when children come and go.
 * Compares on a key that is absent (or invalid) see version/create/mod 0,
 * and a VALUE compare on it is false whatever the op (as in etcd).
 */
struct store_txn {
	const struct store_cmp *cmps;
	size_t ncmps;
	const struct store_op *then_ops;
	size_t nthen;
	const struct store_op *else_ops;
	size_t nelse;
};

/*
 * Results of applying one entry. err is 0 or the error of the first op that
 * failed; a failing op undoes the whole transaction (nothing changes, no
 * revision is used). succeeded tells which branch ran.
 */
struct store_result {
	int err;
	bool succeeded;
	uint64_t revision; /* the revision the entry produced, or the current one */
	uint32_t failed_op; /* index in the branch that ran, when err != 0 */
};

/*
 * Applies one committed entry (bytes produced by entry_encode(), see entry.h)
 * at log position index, which must be store_applied_index() + 1 (or any
 * larger index after a gap of entries that are not for the store). Malformed
 * bytes give res->err = QFS_EMSG and change nothing but the applied index.
 * Returns 0, or QFS_EINVAL if index does not advance.
 */
int store_apply(struct store *s, uint64_t index, const uint8_t *entry, size_t len,
		struct store_result *res);

/* An ENTRY_COMPACT uses no revision; res->err = QFS_EFUTUREREV when its
 * revision is past the current one; at or below the compacted one it does
 * nothing. */

/* Marks index as applied without changing keys (entries not for the store). */
int store_skip(struct store *s, uint64_t index);

/* ---- Leases ------------------------------------------------------------------
 *
 * A lease is replicated state: id, ttl and an expiry in cluster time. Cluster
 * time is the largest time_ns of any applied entry (store_cluster_time); it
 * never goes back, whoever stamps the entries. GRANT and RENEW set expiry to
 * cluster time + ttl; any change to a key attached to a lease (PUT, SETATTR,
 * SETXATTR) renews that lease too ("touch or write renews"). Every renewal
 * bumps the lease's generation. Expiry is never decided at apply time: the
 * leader, having confirmed it still leads, proposes LEASE_EXPIRE(id, gen)
 * for leases it sees expired by its clock, and the entry revokes the lease
 * only if its generation is still gen (a renewal that raced it wins). Revoke
 * and expire delete every key attached, in one revision. Lease ops alone do
 * not use a revision; attach/detach change the key and do.
 *   Errors: GRANT QFS_EEXIST (id taken), QFS_EINVAL (id 0 or ttl <= 0);
 *   RENEW/REVOKE/ATTACH QFS_ENOENT (no such lease); EXPIRE of an unknown
 *   lease or a newer generation changes nothing (no error).
 * Leases and their keys are saved in snapshots.
 * Details:
 *   - GRANT: QFS_EINVAL also for ttl > STORE_LEASE_TTL_MAX_MS; an expiry
 *     past INT64_MAX saturates. A new lease has gen 1; QFS_ENOSPC over
 *     quota (a lease counts in store_size()).
 *   - ATTACH: QFS_EPERM on "/", store_key_check's errors, QFS_ENOENT for
 *     an absent key (checked after the lease). Always a new version of the
 *     key (version + 1, ctime), even when the lease does not change;
 *     attaching does not renew. Any key type: expiry of a directory
 *     deletes its subtree (keys under it on other leases leave them).
 *   - Renewal by a write happens only when the op succeeds; RMXATTR, a
 *     RENAME or DELETE do not renew. A renamed key keeps its lease.
 *   - A key leaves its lease when deleted (by any means, a rename over it
 *     included); re-creating the name does not re-attach it.
 *   - REVOKE, EXPIRE (and DELETE) work over quota.
 *   - Cluster time also advances on failed and non-transaction entries
 *     (anything store_apply decodes), not on store_skip or malformed ones.
 *   - Ops on one key in one transaction each count a version (put --ttl as
 *     GRANT + PUT + ATTACH creates a key at version 2), as for any ops.
 */

/* Longest ttl: its nanoseconds must fit an int64_t. */
#define STORE_LEASE_TTL_MAX_MS (INT64_MAX / 1000000)

struct store_lease {
	uint64_t id;
	int64_t ttl_ms;
	int64_t expiry_ns; /* cluster time */
	uint64_t gen;      /* bumped by every renewal */
	uint64_t nkeys;
};

int64_t store_cluster_time(const struct store *s);
/* QFS_ENOENT if no such lease. */
int store_lease_get(const struct store *s, uint64_t id, struct store_lease *out);
/* Every lease in id order; stops when cb returns non-zero (returns that). */
int store_lease_list(const struct store *s, int (*cb)(void *arg, const struct store_lease *l),
		     void *arg);
/* The keys attached to lease id, in key order (store_range's: bytewise
 * with '/' lowest, so "/a", "/a/x", "/a-b"). QFS_ENOENT if no such lease.
 * The key strings are valid until the next store_apply/load/destroy. */
int store_lease_keys(const struct store *s, uint64_t id,
		     int (*cb)(void *arg, const char *key), void *arg);

/* ---- Events (for watches) -------------------------------------------------
 *
 * Every revision's changes are kept while their revision is in history
 * (until compaction), so a watcher can resume from any revision it saw.
 */

enum store_event_type { STORE_EVENT_PUT = 1, STORE_EVENT_DELETE };

struct store_event {
	enum store_event_type type;
	uint64_t revision;
	const struct store_kv *kv; /* PUT: the new version; DELETE: the key's last
				    * version before the delete (kv->key is the key).
				    * Valid during the callback only; nchildren is 0. */
};

/*
 * Calls cb for every event with revision in [from, to] (to 0 = the current
 * revision) whose key is `key` or under it (key "/" = everything), ordered by
 * revision, then by key. A rename is a DELETE of the old key and a PUT of the
 * new one in the same revision. Stops when cb returns non-zero. Returns
 * QFS_ECOMPACTED if from < store_compacted_revision() (some events are gone),
 * QFS_EFUTUREREV if from > current + 1.
 * More precisely:
 *   - One event per key and revision: the key's state at the end of the
 *     transaction. A key created and deleted in one transaction has none; a
 *     key replaced by a rename or exchange gets a PUT; a recursive delete,
 *     a revoke or an expiry a DELETE per key. Every change of a key is a
 *     PUT (values, attributes, xattrs, lease attach/detach); changes of a
 *     directory's children are not events of the directory. Revision 0
 *     (the initial "/") has no event.
 *   - "Key order" is store_range's: bytewise with '/' lowest, so a key's
 *     subtree follows it ("/a", "/a/x", "/a-b", "/ab").
 *   - to past the current revision means the current one; from = current
 *     + 1 gives nothing (caught up) and returns 0.
 *   - Events at the compacted revision itself are all kept (compaction
 *     keeps a delete made at that revision and the version it deleted).
 *   - key is checked like store_get's (QFS_EINVAL, QFS_EPERM, ...).
 * Cost: a binary search per revision in range, then the matching events.
 */
int store_events(const struct store *s, uint64_t from, uint64_t to, const char *key,
		 int (*cb)(void *arg, const struct store_event *ev), void *arg);

/* ---- Snapshots -------------------------------------------------------------- */

/* Serializes the whole state (all retained history, revisions, applied
 * index) into out. Uncompressed; snapfile.h compresses and checksums it. */
int store_snapshot_save(const struct store *s, struct qbuf *out);
/* Replaces the whole state with a serialized one. On error (QFS_EMSG for
 * malformed input, QFS_ENOMEM) the store is unchanged. */
int store_snapshot_load(struct store *s, const uint8_t *data, size_t len);
/* The same in steps, so that the slow part can run on another thread:
 * decode builds a new store with like's limits (sharing nothing with it;
 * same errors), and store_swap() exchanges the states of two stores, after
 * which the old one can be destroyed anywhere. */
int store_snapshot_decode(const struct store *like, const uint8_t *data, size_t len,
			  struct store **out);
void store_swap(struct store *a, struct store *b);

#endif
