/*
 * The member's shared internals, for the fs/server*.c files only; the public
 * interface is server.h.
 *
 *   server.c             lifecycle, the loop (wake, tick, signals, stop) and
 *                        Raft I/O in its order: persist, then send, then
 *                        apply; proposals and read points from any thread
 *   server_membership.c  membership changes, the address book and the links
 *                        to peers
 *   server_snapshot.c    loading images, this member's snapshots,
 *                        installing the leader's snapshot, compaction
 *   server_image.c       building images on the thread pool, one at a time
 *   server_defer.c       committed entries held back while an image is built
 *   server_lease.c       the lease keeper (expiry) and lease id rules
 *   server_recover.c     the data dir, snapshot + WAL replay at startup, the
 *                        first members, --join
 *   server_view.c        what other threads read: status, members, leader
 *   server_auth.c        users and roles: ENTRY_AUTH applied
 *
 * Threads: everything here runs on the loop thread unless a field or a
 * function says otherwise. Other threads touch only what mu guards, the
 * store under the read lock, snapshot_index (atomic), and the read-only
 * fields set by server_create(); the thread-pool worker building an image
 * reads the store under the read lock, and its image (server_image.c).
 *
 * While an image is being built nothing on the loop changes the store, the
 * dedup table, the address book or the users and roles: whatever would (committed entries, a
 * leader's snapshot) is held back in server_defer.c and applied, in order,
 * once the image is done.
 */
#ifndef QFS_SERVER_IMPL_H
#define QFS_SERVER_IMPL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "../common/codec.h"
#include "../common/metrics.h"
#include "../raft/dedup.h"
#include "../raft/raft.h"
#include "../raft/stream_tls.h"
#include "../raft/transport.h"
#include "../store/wal.h"
#include "auth.h"
#include "book.h"
#include "server.h"
#include "syncer.h"

/* Transport frame types. */
#define FRAME_RAFT 1
#define FRAME_REMOVED 2 /* "you are no longer a member": sent once, then the link goes */

enum work_kind { WORK_PROPOSE, WORK_READ };

/* A request from any thread (server.c), then tracked on the loop until it
 * finishes. */
struct work {
	enum work_kind kind;
	uint8_t *data; /* PROPOSE: the encoded entry */
	size_t len;
	uint64_t id;		     /* PROPOSE: request id; READ: read context */
	uint64_t started_ns;	     /* PROPOSE: when proposed (metrics_now_ns) */
	uint64_t read_index;	     /* READ: 0 until the leader answered */
	bool from_mount;	     /* PROPOSE: the local kernel saw this change */
	struct store_result res;     /* PROPOSE: its outcome, kept while it lands */
	struct server *srv;
	uint64_t deadline, next_try; /* loop time, ms */
	server_done_cb done;
	server_read_cb read_done;
	void *arg;
	struct work *next;
};

/* A membership change or leadership transfer waiting for its outcome
 * (server_membership.c). */
struct member_op {
	enum server_member_op op;
	uint64_t id;
	server_member_cb cb;
	void *arg;
	uint64_t deadline;
	struct member_op *next;
};

/* What other threads may read, under mu (server_view.c). The loop thread is
 * its only writer and reads it without mu. */
struct view {
	enum raft_role role;
	bool learner;
	uint64_t term, leader, commit;
	struct raft_members members;
	/* Peers heard of through the transport (server_view.c). */
	struct view_peer {
		uint64_t id;
		bool up;	   /* our link to it is up */
		uint64_t probe_ns; /* a heartbeat sent, not yet answered (0: none) */
		uint64_t rtt_ns;   /* the last heartbeat round trip (leader only) */
	} peers[RAFT_MAX_MEMBERS];
	size_t npeers;
};

struct server {
	/* Set by server_create(), read-only after: any thread. */
	const struct config *cfg;
	uint64_t member_id, cluster_id;
	int lock_fd; /* holds the data dir's LOCK (server_recover.c) */
	struct metrics *metrics; /* any thread adds to it */

	/* The loop and its handles. wake is the only one other threads use
	 * (uv_async_send() under mu). */
	uv_loop_t loop;
	uv_async_t wake;
	uv_timer_t ticker;
	uv_prepare_t turn;		/* measures each turn of the loop */
	uint64_t turn_ns, turn_idle_ns; /* when the last turn began, idle time then */
	uint64_t turn_cpu_ns;		/* and the thread's CPU time then */
	uv_signal_t sigterm, sigint;
	struct raft *raft;
	struct transport *transport;
	struct stream_tls *peer_tls; /* with --peer-cert: the transport's streams */
	struct syncer *syncer;

	/* The store: the loop thread writes it under the write lock and reads
	 * it without a lock; other threads read it under the read lock. */
	struct store *store;
	pthread_rwlock_t lock;

	/* Replicated state beside the store, in every snapshot image. */
	struct raft_dedup dedup;
	struct book book; /* addresses of the members (server_membership.c) */
	struct auth auth; /* users and roles (server_auth.c); loop thread only */

	pthread_mutex_t mu;	/* guards submitted, landed, stopping, next_request, view, book_view */
	struct work *submitted; /* LIFO, taken by the loop on wake */
	struct work *landed;	/* proposals whose mount caches have caught up (on_landed) */
	int stopping;
	uint64_t next_request;
	struct view view;
	struct book book_view; /* copy of book for other threads */

	/* Requests and Raft I/O (server.c). */
	struct work *proposals, **proposals_tail; /* in request id order */
	struct work *reads;
	size_t landing; /* applied proposals waiting for the mount's caches */
	uint64_t next_read_ctx;
	uint64_t install_seq; /* a leader's snapshot waits for this seq */
	struct raft_snapshot install;
	bool installing;
	int wal_failed;
	uint64_t leader_since; /* loop time this member became leader, 0 = not leader */

	/* Membership (server_membership.c). */
	struct member_op *member_ops;
	bool publishing; /* this member's addresses are being proposed */
	/* Removed members whose link stays up until the notice went out. */
	struct {
		uint64_t id, at;
	} removals[BOOK_MAX];
	size_t nremovals;

	/* Snapshots and compaction (server_snapshot.c). snapshot_index is
	 * stored atomically: server_status() reads it from any thread.
	 * snapshot_running from the image request until the file is written;
	 * snapshot_img and snapshot_buf (Raft's copy of it, made there) belong
	 * to the thread pool meanwhile. */
	uint64_t snapshot_index;
	bool snapshot_running;
	struct server_image snapshot_img;
	struct raft_buf *snapshot_buf;
	uv_work_t snapshot_work;
	int snapshot_result;
	bool compact_pending;

	/* Image builds (server_image.c): the one on the thread pool, and those
	 * waiting their turn, in order. image_delay_ms: a test's slow store
	 * (QFS_TEST_IMAGE_DELAY_MS), 0 normally. */
	struct server_image *image_running;
	struct server_image *image_queue;
	unsigned image_delay_ms;

	/* Held back while an image is built (server_defer.c): FIFO, and the
	 * handle that applies it a slice per turn of the loop after. */
	struct deferred *deferred, **deferred_tail;
	size_t installs_held; /* leader snapshots among them */
	uv_idle_t drain;

	/* Lease keeper (server_lease.c). */
	size_t expiring; /* leases in the expiry round in flight; 0 = none */

	/* Stop and hooks (server.c). */
	bool stopped;
	void (*stop_hook)(void *arg);
	void *stop_arg;
	server_applied_cb applied_cb;
	void *applied_arg;
	struct {
		server_revision_cb cb;
		void *arg;
	} listeners[SERVER_LISTENERS_MAX];
	uint64_t notified_rev; /* last revision listeners heard of */
};

/* Loop time, ms. */
static inline uint64_t server_now_ms(struct server *srv)
{
	return uv_now(&srv->loop);
}

/* ---- server.c ------------------------------------------------------------ */
/* Handles a Raft ready: persist, send, apply (or hold back), answer read
 * points; then the follow-ups (snapshot, compaction, publishing, stop). */
void server_ready_process(struct server *srv);
/* Applies one committed entry to the store, dedup table and book, with
 * everything that goes with it (server_defer.c decides when). */
void server_entry_apply(struct server *srv, const struct raft_entry *e);
/* Completes a stop once one began and nothing holds it back (submitted work,
 * a snapshot or image being built, entries held back, in-flight proposals);
 * otherwise returns at once. */
void server_stop_finish(struct server *srv);

/* ---- server_membership.c ------------------------------------------------- */
/* Applies a committed configuration change (the entry's index is already
 * skipped in the store). */
void server_conf_apply(struct server *srv, const struct raft_entry *e);
/* Applies a fresh ENTRY_MEMBER entry (the store skipped its index). */
void server_member_entry_apply(struct server *srv, const struct raft_entry *e);
/* Connects to every other member in the book with an address. */
void server_peers_sync(struct server *srv);
/* Drops the links to removed members once their notice had time to go out. */
void server_removed_links_drop(struct server *srv);
/* Finishes leadership transfers that happened and ops past their deadline. */
void server_member_ops_expire(struct server *srv);
/* Finishes every pending op with err. */
void server_member_ops_fail(struct server *srv, int err);
/* Proposes this member's addresses when the book does not have them. */
void server_addresses_publish(struct server *srv);

/* ---- server_auth.c ------------------------------------------------------- */
/* Applies a fresh ENTRY_AUTH entry (the store skipped its index): the
 * change's result (auth_apply), the same on every member. */
int server_auth_entry_apply(struct server *srv, const struct raft_entry *e);

/* ---- server_snapshot.c --------------------------------------------------- */
/* Loads a state machine image (untrusted: from disk or a leader) into the
 * store, dedup table and book; m gets the configuration it holds. */
int server_image_load(struct server *srv, const uint8_t *p, size_t len, struct raft_members *m);
struct image;
/* Swaps a decoded state in (under the write lock): t's store, the image's
 * dedup table and book; t holds the old store after. */
void server_image_adopt(struct server *srv, struct image *img, struct store *t);
/* Starts a snapshot when --snapshot-entries were applied since the last. */
void server_snapshot_take(struct server *srv);
/* Leader: proposes a compaction when --auto-compact-revisions says so. */
void server_compact_propose(struct server *srv);

/* ---- server_image.c ------------------------------------------------------ */
/* Reads QFS_TEST_IMAGE_DELAY_MS (server_create()). */
void server_image_init(struct server *srv);
/* True while an image is being built or waits its turn: a stop waits. */
bool server_image_busy(const struct server *srv);

/* ---- server_install.c ---------------------------------------------------- */
struct server_install;
/* Starts decoding a durable leader's snapshot on the thread pool (takes
 * snap->buf); server_deferred_apply() runs when it is done. */
struct server_install *server_install_start(struct server *srv, struct raft_snapshot *snap);
bool server_install_decoded(const struct server_install *in);
/* Its turn: swaps the decoded state in and frees the old one off the loop;
 * takes in. */
void server_install_finish(struct server *srv, struct server_install *in);
/* Frees one never finished (server_destroy()). */
void server_install_drop(struct server_install *in);

/* ---- server_defer.c ------------------------------------------------------ */
/* A committed entry from a ready: applied now, or queued (with a reference
 * to its bytes) behind what is held back while an image is built. */
void server_committed_apply(struct server *srv, const struct raft_entry *e);
/* A leader's snapshot is durable: queued in its place while it is decoded
 * (server_install.c); takes over snap->buf. */
void server_install_apply(struct server *srv, struct raft_snapshot *snap);
/* True while committed entries are held back (an image is being built,
 * or what it held back is still being applied). */
bool server_deferred_holding(const struct server *srv);
/* Initializes the drain handle (server_create()). */
void server_deferred_init(struct server *srv);
/* Once the image is done: applies what was held back, in order, until
 * nothing is left or another build begins; a slice at a time, the rest on
 * the next turns of the loop. */
void server_deferred_apply(struct server *srv);
/* Frees whatever is still held back (server_destroy()). */
void server_deferred_drop(struct server *srv);

/* ---- server_lease.c ------------------------------------------------------ */
/* Leader: expires the leases that are due, after a read barrier. */
void server_leases_expire(struct server *srv);

/* ---- server_recover.c ---------------------------------------------------- */
/* Creates the data dir and takes its lock (srv->lock_fd). */
int server_data_dir_open(struct server *srv);
/* Loads the newest snapshot, replays the WAL, creates srv->raft and
 * bootstraps or joins a fresh member. On success *wal is the open WAL, for
 * the syncer. Errors are printed to stderr. */
int server_recover(struct server *srv, struct wal **wal);

/* ---- server_view.c ------------------------------------------------------- */
/* Copies the core's status and the book into the view. */
void server_view_refresh(struct server *srv);
/* Records whether our link to peer is up (transport peer states). */
void server_view_peer_state(struct server *srv, uint64_t peer, bool up);
/* A heartbeat went to peer / its answer came back: the round trip is
 * measured from the oldest unanswered heartbeat. */
void server_view_heartbeat_sent(struct server *srv, uint64_t peer);
void server_view_heartbeat_answered(struct server *srv, uint64_t peer);

#endif
