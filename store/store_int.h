/*
 * Store internals shared by the files of store/ and by nothing else:
 *   tree.c           nodes, version histories, the ino map, blobs, xattr sets
 *   txn.c            compares and the ops of a transaction, with undo
 *   store.c          the public API: lifecycle, reads, apply, compaction
 *   store_snapshot.c snapshot save/load
 *   lease.c          the lease table and each lease's attached keys
 *   events.c         the per-revision event index behind store_events()
 *
 * Every key ever written has a node (until compaction frees it) holding its
 * versions in mod_rev order; a tombstone version marks a deletion. During a
 * transaction every history change goes through node_push(), which records
 * the node in an undo log, so a failing op is undone by popping in reverse.
 */
#ifndef QFS_STORE_INT_H
#define QFS_STORE_INT_H

#include <bsd/sys/tree.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* Per-version bytes added to store_size() besides key, value and xattrs,
 * so that metadata-only changes and tombstones are not free. */
#define VERSION_OVERHEAD 32
/* Bytes a lease adds to store_size(): leases are state too, so granting
 * them without end must hit the quota. */
#define LEASE_BYTES 64

struct xattr_ent {
	const char *name; /* NUL-terminated */
	size_t namelen;
	const uint8_t *value;
	size_t len;
};

/* Immutable, shared between versions that did not change xattrs. Only the
 * applying thread changes refs, so it needs no atomics. */
struct xattr_set {
	uint32_t refs;
	uint32_t n;
	uint64_t bytes; /* names + values, for store_size() */
	struct xattr_ent ents[]; /* sorted by name (strcmp) */
};

struct version {
	uint64_t mod_rev;
	uint64_t create_rev;
	uint64_t ino;
	uint64_t version; /* 0 on tombstones */
	int64_t mtime_ns;
	int64_t ctime_ns;
	uint64_t lease;
	struct store_blob *value;  /* never NULL (the empty blob for none) */
	struct xattr_set *xattrs;  /* NULL when there are none */
	uint32_t mode, uid, gid;
	uint8_t type;
	bool tomb;
};

struct node;
struct lease;
RB_HEAD(node_tree, node);
RB_HEAD(lease_keys, node);   /* a lease's keys, in key_cmp order */
RB_HEAD(lease_tree, lease);  /* the lease table, by id */

struct node {
	RB_ENTRY(node) link;      /* in parent->children, ordered by name bytes */
	struct node_tree children; /* every child node, live or not */
	struct node *parent;      /* NULL for the root */
	char *key;
	const char *name;         /* into key */
	size_t keylen, namelen;
	struct version *vers;
	uint32_t nvers, cap;
	uint32_t nlive;           /* children alive at the current revision */
	uint64_t mapped_ino;      /* 0 = not in the ino map */
	struct node *ino_next;
	uint64_t mark;            /* txn revision that last listed it at commit */
	size_t scratch;           /* rename's index while collecting a subtree */
	/* The lease the current version is attached to (NULL: none or not
	 * live), derived from the top version like the ino map. */
	struct lease *lease_of;
	RB_ENTRY(node) lease_link; /* in lease_of->keys */
};

/*
 * A lease (store.h "Leases"). Removed leases stay allocated until the
 * transaction commits, so undo can put them back.
 */
struct lease {
	RB_ENTRY(lease) link;
	uint64_t id;
	int64_t ttl_ms;
	int64_t expiry_ns;
	uint64_t gen;
	uint64_t nkeys;
	struct lease_keys keys;
};

RB_PROTOTYPE(node_tree, node, link, node_cmp)
RB_PROTOTYPE(lease_keys, node, lease_link, lease_key_cmp)
RB_PROTOTYPE(lease_tree, lease, link, lease_cmp)

enum undo_kind {
	UNDO_PUSH = 0,    /* node_push: pop it */
	UNDO_LEASE_ADD,   /* granted: remove and free */
	UNDO_LEASE_DEL,   /* removed from the table: put back (freed at commit) */
	UNDO_LEASE_RENEW, /* expiry/gen changed: restore them */
};

struct undo_rec {
	struct node *node;
	bool created; /* node was allocated for this push: free it on undo */
	uint8_t kind; /* enum undo_kind */
	struct lease *lease;
	int64_t old_expiry;
	uint64_t old_gen;
};

/*
 * The event index: for each revision with changes, the nodes that got a
 * version at it, sorted by key_cmp. A node's version at the revision (and,
 * for a tombstone, the one before it) stays in its history while the
 * revision is >= compacted (compact() keeps a tombstone at the compacted
 * revision and its predecessor), so events need no copies and their nodes
 * are never freed under them.
 */
struct ev_rev {
	uint64_t rev;
	size_t start; /* first index in nodes; ends at the next start or nnodes */
};

struct events {
	struct ev_rev *revs;
	size_t nrevs, revcap;
	struct node **nodes;
	size_t nnodes, nodecap;
};

struct store {
	struct store_config cfg;

	/* State: swapped as a whole by store_snapshot_load(). */
	struct node *root;
	uint64_t rev, compacted, applied;
	uint64_t size, nkeys;
	struct node **ino_buckets;
	size_t ino_nbuckets, ino_count;
	int64_t cluster_time; /* max time_ns of applied entries */
	struct lease_tree leases;
	struct events events;
	/* Snapshot load pushes whole histories one key at a time, so the ino
	 * map is only right once every key is in: it is built afterwards. */
	bool loading;

	/* The transaction being applied (txn_rev 0 outside one). */
	uint64_t txn_rev;
	int64_t txn_time;
	uint32_t txn_created; /* keys created so far: the ino's low bits */
	size_t txn_pushes;    /* node_push records in the undo log */
	struct undo_rec *undo;
	size_t nundo, undo_cap;
};

/* tree.c */
/* Key order of the tree (store_range order): bytewise, with '/' below every
 * other byte, so a key's subtree follows it directly. */
int key_cmp(const char *a, const char *b);
/* True when key is top or under it ("/" covers everything). */
bool key_under(const char *key, const char *top);
/* Room for one more undo record (inside a transaction). */
int undo_reserve(struct store *s);
struct store_blob *blob_create(const uint8_t *p, size_t len); /* NULL: no memory */
struct store_blob *blob_empty(void);
void xattrs_unref(struct xattr_set *x);
struct xattr_set *xattrs_ref(struct xattr_set *x);
/* Builds a set from n entries sorted by name; *out NULL when n == 0. */
int xattrs_build(const struct xattr_ent *ents, uint32_t n, struct xattr_set **out);
int xattrs_find(const struct xattr_set *x, const char *name); /* index or -1 */
void version_release(struct version *v);
struct version version_dup(const struct version *v); /* takes references */
uint64_t version_bytes(const struct node *n, const struct version *v);

struct node *node_create(struct node *parent, const char *name, size_t namelen);
void node_free(struct store *s, struct node *n);
struct node *node_child(const struct node *parent, const char *name, size_t namelen);
struct node *node_lookup(const struct store *s, const char *key); /* live or not */
const struct version *node_at(const struct node *n, uint64_t rev); /* live at rev */
const struct version *node_cur(const struct node *n);             /* live now */
/* Appends v (its references are consumed, also on error). created: n was
 * just allocated by the caller and is freed if the push fails. */
int node_push(struct store *s, struct node *n, struct version *v, bool created);
void node_pop(struct store *s, struct node *n);
/* Pre-order walk of the subtree at top, over every node. */
struct node *node_next_preorder(const struct node *top, const struct node *n);
struct node *node_skip_subtree(const struct node *top, const struct node *n);
/* Post-order walk (children before parents); take next before freeing n. */
struct node *node_first_postorder(struct node *top);
struct node *node_next_postorder(const struct node *top, struct node *n);

struct node *ino_find(const struct store *s, uint64_t ino);
void ino_map_add(struct store *s, uint64_t ino, struct node *n);

int state_init(struct store *s, bool with_root_version);
void state_free(struct store *s);

/* store.c */
/* A read view of version v of node n; nchildren is left 0. */
void kv_fill(const struct node *n, const struct version *v, struct store_kv *kv);

/* txn.c */
void txn_apply(struct store *s, const struct store_txn *t, int64_t time_ns,
	       struct store_result *res);

/* lease.c. Changes are logged in the undo log (inside a transaction only). */
struct lease *lease_find(const struct store *s, uint64_t id);
int lease_grant(struct store *s, uint64_t id, int64_t ttl_ms);
int lease_renew(struct store *s, struct lease *l);
/* Takes l out of the table; it must have no keys left. */
int lease_remove(struct store *s, struct lease *l);
/* Moves n's attachment to l (NULL: none). */
void lease_set(struct node *n, struct lease *l);
void lease_undo(struct store *s, const struct undo_rec *u);
void lease_commit(const struct undo_rec *u);
void leases_free(struct store *s);

/* events.c */
/* Room for one more revision of up to n events. Then, with no failure
 * possible: events_push() each node changed at rev (any order), and
 * events_end() with what events_begin() returned. */
int events_reserve(struct store *s, size_t n);
size_t events_begin(const struct store *s);
void events_push(struct store *s, struct node *n);
void events_end(struct store *s, uint64_t rev, size_t start);
/* How many event slots (nodes) belong to revisions up to rev. */
size_t events_through(const struct store *s, uint64_t rev);
/* Drops revisions below c. */
void events_trim(struct store *s, uint64_t c);
/* Builds the index from the histories (snapshot load). */
int events_rebuild(struct store *s);
void events_free(struct events *e);

#endif
