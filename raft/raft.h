/*
 * The Raft consensus core: a pure, deterministic state machine in the style
 * of etcd-io/raft. No sockets, clocks, randomness, threads or disk: time comes
 * in as raft_tick(), randomness from the seed in raft_options (advanced
 * deterministically inside), messages through raft_step(), durability through
 * raft_persisted(). Everything the core wants done comes out of
 * raft_ready_get() as one batch.
 *
 * Driving it (one thread, e.g. the libuv loop):
 *
 *   raft_tick() every tick (heartbeat_ticks ticks = one heartbeat interval);
 *   raft_step() for every message received (after raft_msg_decode());
 *   raft_propose()/raft_read_index()/... for local requests;
 *   while (raft_has_ready(r)) {
 *       raft_ready_get(r, &rd);
 *       1. persist rd.hs (if rd.hs_changed), rd.snapshot and rd.entries:
 *          entries first, then the hard state; an entry with index i
 *          replaces every entry >= i already stored (the WAL's rule). May be
 *          asynchronous (fsync on its own thread); when durable, call
 *          raft_persisted(r, rd.seq) on the loop thread. Only readies with
 *          something to persist (hs_changed, snapshot or nentries) need
 *          it; acks are cumulative, so persist batches in ready order.
 *       2. send rd.msgs now. They never depend on state that is not yet
 *          acknowledged as durable: votes and acks that do are held inside
 *          and come out of a later ready, after raft_persisted().
 *       3. if rd.snapshot: once it is durable, load it into the state
 *          machine, before applying any later rd.committed (the core
 *          hands out nothing after it until raft_persisted() covers it).
 *          Keep rd.snapshot->members with the image: raft_restore needs
 *          them (snapfile.h stores only index and term, so put them in the
 *          image). If rd.snapshot->discard_log, stored entries after the
 *          snapshot index are stale and must not come back at restart
 *          (e.g. start a fresh WAL once the snapshot is durable).
 *       4. apply rd.committed in order (they are already durable locally).
 *       5. serve rd.reads (see ReadIndex below).
 *       raft_ready_free(&rd) once done with its pointers (may be later).
 *   }
 *
 * Persistence order is the Raft rule (§5.1, Figure 2: "updated on stable
 * storage before responding to RPCs"): persist, then send what depends on
 * it, then apply. A leader sends its own new entries before they are
 * durable and counts itself towards the commit quorum only once they are
 * (dissertation §10.2.1).
 *
 * Entries: index, term, type and opaque bytes. NORMAL entries carry the
 * store encoding (store/entry.h); CONF entries a membership change
 * (raft_conf_decode); NOOP entries are appended by each new leader (§8) and
 * carry nothing. The state machine applies NORMAL entries and skips the
 * others (store_skip()), reading CONF ones if it tracks members.
 *
 * Membership (dissertation §4.1, single-server changes): a configuration
 * takes effect on every server as soon as its entry is APPENDED to the log,
 * committed or not; a truncated config entry reverts to the previous one.
 * The leader accepts a new change only when the previous one is committed
 * and it has committed an entry of its own term (the §4.1 fix from the
 * raft-dev list, 2015). A leader that removes itself keeps leading without
 * counting itself until the removal commits, then steps down and sends
 * TimeoutNow to the most up-to-date voter (§4.2.2). New members join as
 * learners (non-voting), are promoted later.
 *
 * ReadIndex (dissertation §6.4): raft_read_index(r, ctx) on any member. The
 * leader records its commit index, confirms it is still leader with a round
 * of heartbeats acknowledged by a quorum, then answers; followers and
 * learners forward to the leader. The answer is a raft_read_state {ctx,
 * index} in rd.reads: the caller waits until its applied index >= index and
 * then reads locally; that read is linearizable. Requests that are lost
 * (leader change, partition) never answer: the caller times out and retries
 * with a new ctx.
 *
 * Proposals: raft_propose() on the leader appends; on a follower or learner
 * it forwards the entry to the leader (no reply: the proposer learns the
 * outcome when the entry comes out of rd.committed). A proposal can be lost
 * (leader change) or, once retried, appear twice in the log. Exactly-once is
 * the applier's job: every store entry carries (origin member id, request
 * id) in its header (store/entry.h) and the applier checks raft_dedup
 * (raft/dedup.h) before store_apply(), keeping that table in its snapshots.
 *
 * Snapshots: the caller snapshots its state machine at an applied index,
 * makes it durable, then calls raft_compact() with the image; the core
 * keeps a copy to send to followers that are too far behind (chunked
 * InstallSnapshot, §7) and drops log entries it no longer needs. A follower
 * receiving one gets it in rd.snapshot.
 *
 * Ownership: everything in a raft_ready stays valid until raft_ready_free()
 * (the core holds references, so later raft_step() calls do not invalidate
 * it). Arguments are borrowed for the duration of the call unless noted.
 * Reference counts are not atomic: a syncer thread may read the bytes of
 * a ready's entries, but raft_ready_free() and every other raft_* call
 * belong to the thread that owns the struct raft.
 *
 * Safety invariants (term never decreases, commit never goes back, log
 * matching on append, a committed entry is never truncated) are checked
 * always and abort the process with a message when broken.
 */
#ifndef QFS_RAFT_H
#define QFS_RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RAFT_MAX_MEMBERS 16	       /* voters + learners */
#define RAFT_MSG_MAX_BYTES (64u << 20) /* encoded message bound */
#define RAFT_CONF_CONTEXT_MAX 1024     /* bytes of caller context per change */

struct raft;

enum raft_role { RAFT_FOLLOWER = 0, RAFT_PRECANDIDATE, RAFT_CANDIDATE, RAFT_LEADER };

enum raft_entry_type { RAFT_ENTRY_NORMAL = 1, RAFT_ENTRY_CONF = 2, RAFT_ENTRY_NOOP = 3 };

/* Shared, reference-counted byte buffer (single-threaded counting). */
struct raft_buf {
	unsigned refs;
	size_t len;
	uint8_t data[];
};

struct raft_entry {
	uint64_t index;
	uint64_t term;
	enum raft_entry_type type;
	const uint8_t *data; /* len bytes inside buf (NULL when len == 0) */
	size_t len;
	struct raft_buf *buf; /* private: the reference that keeps data alive */
};

struct raft_member {
	uint64_t id;
	bool voter; /* false: learner */
};

struct raft_members {
	uint32_t n;
	struct raft_member m[RAFT_MAX_MEMBERS];
};

/* Durable per-member state (§5, Figure 2 "Persistent state"). */
struct raft_hardstate {
	uint64_t term;
	uint64_t vote;	 /* 0 = none */
	uint64_t commit; /* not required for safety; saves re-applying work */
};

/* A state machine image at (index, term) with the membership at index. */
struct raft_snapshot {
	uint64_t index;
	uint64_t term;
	struct raft_members members;
	const uint8_t *data;
	size_t len;
	/* true when the log did not contain (index, term): every log entry the
	 * caller stored with index > index must be dropped along with the
	 * snapshot being made durable (entries written after it are fine). */
	bool discard_log;
	struct raft_buf *buf; /* private */
};

enum raft_msg_type {
	RAFT_MSG_APPEND = 1, /* AppendEntries (§5.3) */
	RAFT_MSG_APPEND_RESP,
	RAFT_MSG_VOTE, /* RequestVote (§5.2) */
	RAFT_MSG_VOTE_RESP,
	RAFT_MSG_PREVOTE, /* dissertation §9.6 */
	RAFT_MSG_PREVOTE_RESP,
	RAFT_MSG_HEARTBEAT, /* empty AppendEntries carrying a ReadIndex ctx */
	RAFT_MSG_HEARTBEAT_RESP,
	RAFT_MSG_SNAPSHOT, /* one InstallSnapshot chunk (§7) */
	RAFT_MSG_SNAPSHOT_RESP,
	RAFT_MSG_TIMEOUT_NOW, /* leadership transfer (dissertation §3.10) */
	RAFT_MSG_READ_INDEX,  /* forwarded ReadIndex request (term 0) */
	RAFT_MSG_READ_INDEX_RESP,
	RAFT_MSG_PROPOSE, /* forwarded proposal (term 0) */
	RAFT_MSG_TYPE_END_
};

#define RAFT_MSG_REJECT 0x1
#define RAFT_MSG_FORCE 0x2 /* VOTE caused by TimeoutNow: ignore leader lease */
#define RAFT_MSG_DONE 0x4  /* SNAPSHOT: last chunk */

/*
 * One message. Fields used depend on type:
 *   APPEND: index/log_term = the entry before `entries`; commit.
 *   APPEND_RESP: index = last index now matching (success) or the rejected
 *     prev index; hint = follower's best guess for the leader's next probe.
 *   (PRE)VOTE: index/log_term = candidate's last entry.
 *   HEARTBEAT(_RESP), READ_INDEX: ctx; HEARTBEAT also commit.
 *   READ_INDEX_RESP: ctx, index = the read index.
 *   SNAPSHOT: snap (meta; data unused), offset/total, data/len chunk.
 *   SNAPSHOT_RESP: index = snapshot index, offset = bytes received so far.
 *   PROPOSE: entries (index/term ignored).
 */
struct raft_msg {
	enum raft_msg_type type;
	uint32_t flags;
	uint64_t from, to, term;
	uint64_t index, log_term, commit, hint, ctx;
	struct raft_entry *entries; /* owned by the message (raft_msg_free) */
	size_t nentries;
	struct raft_snapshot snap; /* SNAPSHOT: index, term, members */
	uint64_t offset, total;
	const uint8_t *data; /* SNAPSHOT chunk, inside buf */
	size_t len;
	struct raft_buf *buf; /* private */
};

/* ReadIndex answer: read locally once applied index >= index. */
struct raft_read_state {
	uint64_t ctx;
	uint64_t index;
};

struct raft_ready {
	uint64_t seq; /* pass to raft_persisted() once the below is durable */
	bool hs_changed;
	struct raft_hardstate hs;
	struct raft_snapshot *snapshot; /* NULL or one to persist and load */
	struct raft_entry *entries;	/* to persist, in order */
	size_t nentries;
	struct raft_msg *msgs; /* to send */
	size_t nmsgs;
	struct raft_entry *committed; /* to apply, in order */
	size_t ncommitted;
	struct raft_read_state *reads;
	size_t nreads;
	/* Soft state, informational. */
	bool soft_changed;
	enum raft_role role;
	uint64_t leader;
	uint64_t term;
};

struct raft_options {
	uint64_t id;		  /* this member, != 0 */
	unsigned election_ticks;  /* base election timeout; randomized in [e, 2e) */
	unsigned heartbeat_ticks; /* < election_ticks */
	bool prevote;
	bool check_quorum;
	uint64_t rand_seed;	/* seeds the deterministic generator */
	size_t max_msg_entries; /* per APPEND (batching) */
	size_t max_msg_bytes;	/* entry bytes per APPEND (at least one entry) */
	size_t max_inflight;	/* APPENDs in flight per follower */
	size_t snapshot_chunk;	/* bytes per InstallSnapshot chunk */
	size_t max_snapshot;	/* largest snapshot accepted from a leader */
	/* > 0: the leader writes its clock (raft_set_clock) as a little-endian
	 * u64 at this byte offset of every NORMAL entry it appends, its own
	 * proposals and forwarded ones alike, so entry times are leader time.
	 * Entries shorter than offset + 8 are left alone. 0: off. */
	size_t stamp_offset;
};

/* Fills o with defaults (election 10, heartbeat 1, prevote and check_quorum
 * on, 256 entries / 1 MiB per message, 64 in flight, 1 MiB chunks, 4 GiB). */
void raft_options_default(struct raft_options *o, uint64_t id);

/* What a member restarts from: its last durable snapshot (index 0 = none),
 * the log entries after it (contiguous, from snapshot index + 1) and hard
 * state. All borrowed; the core copies. */
struct raft_restore {
	struct raft_hardstate hs;
	const struct raft_snapshot *snapshot; /* NULL = none */
	const struct raft_entry *entries;
	size_t nentries;
};

/*
 * Creates a member from its durable state (rs may be NULL: a new, empty
 * member that will learn everything from a leader, e.g. a joining learner).
 * Committed entries after the snapshot are handed out again for applying.
 * Returns 0, QFS_EINVAL (bad options, non-contiguous entries) or QFS_ENOMEM.
 */
int raft_create(const struct raft_options *o, const struct raft_restore *rs, struct raft **out);
void raft_destroy(struct raft *r);

/*
 * Starts a new cluster: on an empty member, appends entry 1 (term 1, CONF)
 * holding members. Every initial member must bootstrap with the same list
 * (it produces identical entries). QFS_EINVAL if the log is not empty or the
 * list is invalid.
 */
int raft_bootstrap(struct raft *r, const struct raft_members *members);

/* Advances logical time by one tick: election timeouts, heartbeats,
 * CheckQuorum, transfer timeouts. */
void raft_tick(struct raft *r);

/* The caller's wall clock (ns), for stamp_offset: an input like any other. */
void raft_set_clock(struct raft *r, int64_t now_ns);

/* Handles one received message (borrowed; entry bytes are referenced or
 * copied). Returns 0 or QFS_EINVAL for a message that makes no sense (wrong
 * `to`, unknown type); such messages are dropped without state change. */
int raft_step(struct raft *r, const struct raft_msg *m);

/*
 * Proposes a NORMAL entry (data copied). On the leader it is appended; on a
 * follower or learner it is forwarded to the leader. Returns 0 (which does
 * not promise it will commit), QFS_ENOTLEADER when no leader is known or a
 * leadership transfer is in progress, QFS_EINVAL for len too large.
 */
int raft_propose(struct raft *r, const uint8_t *data, size_t len);

enum raft_conf_op { RAFT_CONF_ADD_LEARNER = 1, RAFT_CONF_PROMOTE, RAFT_CONF_REMOVE };

/* A membership change as carried by a CONF entry. */
struct raft_conf_change {
	enum raft_conf_op op; /* 0 for the bootstrap entry */
	uint64_t id;
	const uint8_t *context; /* caller's bytes (e.g. name and address) */
	size_t context_len;
	struct raft_members members; /* the configuration after the change */
};

/*
 * Leader only: proposes one single-server change (add learner, promote a
 * learner, remove a voter or learner). context (<= RAFT_CONF_CONTEXT_MAX)
 * is carried in the entry for the caller. Returns 0, QFS_ENOTLEADER,
 * QFS_EINVAL (the change makes no sense: promote a voter, remove the last
 * voter, too many members) or QFS_EBUSY (the previous change, or this
 * leader's first entry, is not committed yet: retry later).
 */
int raft_propose_conf(struct raft *r, enum raft_conf_op op, uint64_t id, const uint8_t *context,
		      size_t context_len);

/* Decodes the bytes of a CONF entry. 0 or QFS_EMSG. context points into p. */
int raft_conf_decode(const uint8_t *p, size_t len, struct raft_conf_change *out);

/* Requests a linearizable read point; the answer carries ctx (caller's
 * unique id). 0, or QFS_ENOTLEADER when no leader is known. */
int raft_read_index(struct raft *r, uint64_t ctx);

/*
 * The transport saw the connection to the current leader reset. Drops the
 * leader lease (so this member may grant votes) and, if it can campaign,
 * brings its election timeout forward to a short random delay (1 ..
 * election_ticks / 2 ticks) instead of a full timeout: a crashed leader is
 * replaced quickly, and members that notice together rarely split the vote.
 * PreVote keeps a false alarm harmless. No-op unless a follower.
 */
void raft_leader_unreachable(struct raft *r);

/* Leader only: hands leadership to voter `to` (TimeoutNow once it has caught
 * up; gives up after an election timeout). 0, QFS_ENOTLEADER, QFS_EINVAL. */
int raft_transfer(struct raft *r, uint64_t to);

/*
 * The caller has durably saved a state machine image `data` at applied
 * index `index` (<= the last index handed out in rd.committed). The core
 * keeps a copy for followers and discards log entries up to index - keep
 * (keeping a few avoids sending snapshots to slightly lagging followers).
 * After this the caller may drop its stored log entries <= index - keep.
 */
int raft_compact(struct raft *r, uint64_t index, const uint8_t *data, size_t len, uint64_t keep);
/* The same without a copy: takes over the caller's reference to buf (the
 * image's bytes), also when it fails. For an image of hundreds of MB made
 * elsewhere: raft_buf_new() may run on any thread, for a buffer nobody else
 * holds until it is handed to this call on the core's thread. */
int raft_compact_buf(struct raft *r, uint64_t index, struct raft_buf *buf, uint64_t keep);

/* The configuration in effect at index (snapshot index <= index <= last),
 * to store with a snapshot taken at index. 0 or QFS_ENOENT. */
int raft_members_at(const struct raft *r, uint64_t index, struct raft_members *out);

bool raft_has_ready(const struct raft *r);
/* Takes the pending batch (see the header comment). 0 or QFS_ENOMEM. */
int raft_ready_get(struct raft *r, struct raft_ready *rd);
void raft_ready_free(struct raft_ready *rd);
/* Everything handed out in the ready with this seq (and earlier) is durable. */
void raft_persisted(struct raft *r, uint64_t seq);

struct raft_status {
	uint64_t id;
	enum raft_role role;
	uint64_t term, vote, leader, commit;
	uint64_t applied;     /* last index handed out for applying */
	uint64_t first_index; /* first entry in memory (snapshot index + 1) */
	uint64_t last_index;
	uint64_t stable_index; /* last entry acknowledged durable */
	uint64_t snapshot_index, snapshot_term;
	uint64_t transferee;
	struct raft_members members;	  /* current configuration (latest in log) */
	uint64_t match[RAFT_MAX_MEMBERS]; /* leader: per members.m[i] */
};
void raft_status_get(const struct raft *r, struct raft_status *st);

/* Term of the entry at index: 0 and QFS_ENOENT when not available (compacted
 * or beyond the log). For tests and the simulator. */
int raft_term_at(const struct raft *r, uint64_t index, uint64_t *term);
/* The in-memory entry at index (borrowed until the next mutating call). */
const struct raft_entry *raft_entry_at(const struct raft *r, uint64_t index);

/* ---- Wire encoding (raft/message.c) --------------------------------------- */

#define RAFT_MSG_VERSION 1

/* Appends the encoding of m to out (a qbuf from common/codec.h). */
struct qbuf;
int raft_msg_encode(const struct raft_msg *m, struct qbuf *out);
/* Decodes untrusted bytes: 0 with *m owning its data (raft_msg_free), or
 * QFS_EMSG (malformed, too large, unknown version) / QFS_ENOMEM, with
 * nothing allocated. */
int raft_msg_decode(const uint8_t *p, size_t len, struct raft_msg *m);
/* Releases what a message owns (entries, chunk) and zeroes it. */
void raft_msg_free(struct raft_msg *m);

/* Buffers, for callers that build entries themselves. */
struct raft_buf *raft_buf_new(const void *data, size_t len);
struct raft_buf *raft_buf_ref(struct raft_buf *b);
void raft_buf_unref(struct raft_buf *b);
/* Shallow copy of an entry taking a new reference on its bytes; release. */
void raft_entry_copy(struct raft_entry *dst, const struct raft_entry *src);
void raft_entry_release(struct raft_entry *e);

#endif
