/*
 * A member: the libuv loop thread that drives Raft (raft/raft.h), makes the
 * log durable through the syncer, talks to peers through the transport and
 * applies committed entries to the store. With no cluster flags it is a
 * cluster of one.
 *
 * Threads: server_propose(), server_rdlock()/server_unlock() and
 * server_shutdown() may be called from any thread. Everything else, and every
 * callback, runs on the loop thread, which is the only writer of the store:
 * code on the loop thread reads the store without taking the lock.
 */
#ifndef QFS_SERVER_H
#define QFS_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "../store/entry.h"
#include "../store/store.h"
#include "config.h"

struct server;
struct auth;

#define SERVER_NAME_MAX 127

/* Member and cluster ids are derived from names (FNV-1a), never 0: a
 * member's id is the same wherever its name is known (also offline, for
 * `snapshot restore`). */
static inline uint64_t server_name_id(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h ? h : 1;
}

/* err: 0, QFS_ESHUTDOWN (stopping), QFS_EIO (WAL failed), QFS_ENOMEM.
 * res is valid when err == 0. Loop thread. */
typedef void (*server_done_cb)(void *arg, int err, const struct store_result *res);

/*
 * Opens the data dir (creating it), takes its lock, loads the newest
 * snapshot, replays the WAL. On failure prints one line to stderr naming the
 * file and offset that is damaged and returns non-zero.
 */
int server_create(const struct config *cfg, struct server **out);
void server_destroy(struct server *srv);

/* Runs the loop until the member stops. Returns 0 after a clean stop. */
int server_run(struct server *srv);

/*
 * Proposes an entry (any thread). Fills origin and request_id, encodes e (the
 * caller may free e and everything it points to on return) and queues it. cb
 * runs once on the loop thread when the entry is applied or failed.
 */
int server_propose(struct server *srv, struct entry *e, server_done_cb cb, void *arg);

/* The same for a change made through this member's own mount: the kernel
 * has seen it already, so the applied hook is not called for it. */
int server_propose_mount(struct server *srv, struct entry *e, server_done_cb cb, void *arg);

/* Begins a clean stop from any thread: reject new proposals, finish the
 * in-flight ones, call the stop hook, end server_run(). */
void server_shutdown(struct server *srv);

/* Hook run on the loop thread once in-flight proposals have finished. */
void server_set_stop_hook(struct server *srv, void (*hook)(void *arg), void *arg);

/* Called on the loop thread after a transaction the local kernel did not
 * see was applied and made a new revision (proposed by another member, by
 * the client port, by the lease keeper), with the store already changed:
 * lets the filesystem drop what the kernel cached and replay the change for
 * inotify. entry is the encoded entry. When this member proposed it, landed
 * is not NULL and the hook calls landed(landed_arg), from any thread, once
 * the kernel can no longer serve what the entry changed: only then does
 * the proposer hear back. */
typedef void (*server_applied_cb)(void *arg, const uint8_t *entry, size_t len,
				  const struct store_result *res, void (*landed)(void *),
				  void *landed_arg);
void server_set_applied_hook(struct server *srv, server_applied_cb cb, void *arg);

/* Store access for reader threads: hold the read lock while using the store
 * and anything it returned. */
void server_rdlock(struct server *srv);
void server_unlock(struct server *srv);
struct store *server_store(struct server *srv);
/* Users and roles as of the applied index (auth.h): the loop thread only,
 * valid until it applies the next entry. */
const struct auth *server_auth(struct server *srv);
const struct config *server_config(const struct server *srv);

struct server_status {
	const char *name;
	uint64_t member_id;
	uint64_t cluster_id;
	const char *role; /* "leader", "follower", "candidate", "learner" */
	uint64_t term, commit_index, applied_index;
	uint64_t leader_id; /* 0 = none known */
	char leader_name[SERVER_NAME_MAX + 1];
	uint64_t revision, compacted_revision;
	uint64_t db_size, quota_bytes, keys;
	uint64_t snapshot_index;
};
/* Any thread; takes the read lock itself. */
void server_status(struct server *srv, struct server_status *st);

/* ---- Cluster (loop thread unless noted) ------------------------------------ */

/*
 * A linearizable read point (ReadIndex, Raft dissertation §6.4): cb runs on
 * the loop thread once this member has applied everything that was
 * committed when the call was made; then reading the local store is
 * linearizable. err is QFS_ETIMEDOUT after --request-timeout-ms without a
 * leader's answer, or QFS_ESHUTDOWN. Any thread.
 */
typedef void (*server_read_cb)(void *arg, int err);
int server_read_barrier(struct server *srv, server_read_cb cb, void *arg);

/* True when this member is the leader and the only voter: every committed
 * entry is applied before its writer hears back, so local reads are already
 * linearizable and need no read point. Any thread. */
bool server_reads_local(struct server *srv);

#define SERVER_ADDR_MAX 127

struct server_member {
	uint64_t id;
	char name[SERVER_NAME_MAX + 1];
	char peer_addr[SERVER_ADDR_MAX + 1];   /* --listen-peer */
	char client_addr[SERVER_ADDR_MAX + 1]; /* --listen-client, "" if none */
	bool voter;                            /* false: learner */
	bool leader;
	bool connected;	 /* our link to it is up (false for this member) */
	uint64_t rtt_ns; /* last heartbeat round trip, measured by a leader; 0 = none */
};

#define SERVER_MEMBERS_MAX 16 /* voters + learners (RAFT_MAX_MEMBERS) */

/* The current configuration, sorted by name. Returns how many members were
 * written (at most max). Any thread. */
size_t server_members(struct server *srv, struct server_member *out, size_t max);

/* The leader's member record, if one is known. 0 or QFS_ENOENT. Any thread. */
int server_leader(struct server *srv, struct server_member *out);

enum server_member_op {
	SERVER_MEMBER_ADD_LEARNER = 1,
	SERVER_MEMBER_PROMOTE,
	SERVER_MEMBER_REMOVE,
	SERVER_LEADER_TRANSFER,
};

/*
 * Leader only: a membership change or a leadership transfer. m names the
 * member (ADD_LEARNER also needs its addresses; the id is derived from the
 * name). cb runs once: err 0 when the change is committed (for TRANSFER:
 * when the named member has become leader), QFS_ENOTLEADER on a follower
 * (ask server_leader()), QFS_EBUSY while another change is in progress,
 * QFS_EEXIST / QFS_ENOENT for a member that does / does not exist,
 * QFS_EINVAL (promote a voter, remove the last voter), QFS_ETIMEDOUT.
 */
typedef void (*server_member_cb)(void *arg, int err);
void server_member_change(struct server *srv, enum server_member_op op,
			  const struct server_member *m, server_member_cb cb, void *arg);

/* Called on the loop thread whenever applying entries advanced the store's
 * revision (watchers read the new events with store_events()). At most
 * SERVER_LISTENERS_MAX listeners. Loop thread. */
#define SERVER_LISTENERS_MAX 8
typedef void (*server_revision_cb)(void *arg, uint64_t revision);
int server_add_revision_listener(struct server *srv, server_revision_cb cb, void *arg);
void server_remove_revision_listener(struct server *srv, server_revision_cb cb, void *arg);

/* Lease ids this daemon hands out (mount and client port alike): random,
 * non-zero, within SERVER_LEASE_ID_MASK so /.quorumfs/leases/ID fits a node
 * id. A collision is QFS_EEXIST from the store, never a shared lease. */
#define SERVER_LEASE_ID_MASK ((1ull << 48) - 1)
uint64_t server_lease_id_new(void);
/* The shortest ttl a lease may have: 1.5 x --election-ms (SPEC 3.5). */
int64_t server_lease_min_ttl_ms(const struct server *srv);

/*
 * A consistent image of the replicated state (fs/image.h: what a snapshot
 * holds) at the applied index, built on the libuv thread pool while the
 * loop goes on (fs/server_image.c; committed entries wait meanwhile): for
 * `snapshot save`, and this member's own snapshots. One image is built at a
 * time; a request made meanwhile waits its turn (in order) and takes its
 * image at the applied index when its turn comes.
 *
 * The caller owns img (embedded wherever it likes) and img->image, which it
 * qbuf_init()s before and qbuf_close()s after; img must stay put until cb
 * has run. Returns 0 (cb will run once, on the loop thread, never inside
 * this call), or QFS_EAGAIN (a leader's snapshot is being installed: try
 * later) or QFS_ESHUTDOWN (stopping), and cb will not run. cb's err: 0
 * with image, index and term filled in (crc too when asked for), or
 * QFS_EAGAIN / QFS_ESHUTDOWN when the request's turn came too late,
 * QFS_ENOMEM. cb runs before anything committed meanwhile is applied: the
 * store still is as of img->index during cb (its revision, key count).
 */
struct server_image;
typedef void (*server_image_cb)(struct server_image *img, int err);
struct server_image {
	struct qbuf image;
	uint64_t index, term;
	uint32_t crc; /* CRC32 (zlib) of image, when asked for */
	/* private (fs/server_image.c) */
	struct server *srv;
	server_image_cb cb;
	bool want_crc;
	int err;
	uint64_t queued_ns, build_ns;
	uv_work_t work;
	struct server_image *next;
};
int server_image_build(struct server *srv, struct server_image *img, bool crc, server_image_cb cb);

/* The loop, for the client port's handles. */
uv_loop_t *server_loop(struct server *srv);

/* The member's counters and histograms (common/metrics.h): any thread adds
 * to them; valid until server_destroy(). */
struct metrics *server_metrics(struct server *srv);

#endif
