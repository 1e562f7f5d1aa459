/*
 * Private to raft/: the state of one member and the helpers the core's files
 * share. raft.c owns lifecycle and the ready/persist handshake, log.c the
 * in-memory log, progress.c per-follower flow control, confchange.c
 * membership, election.c elections, replication.c AppendEntries and
 * InstallSnapshot, read.c ReadIndex, message.c the wire format.
 */
#ifndef QFS_RAFT_INTERNAL_H
#define QFS_RAFT_INTERNAL_H

#include <stdio.h>
#include <stdlib.h>

#include "../common/codec.h"
#include "raft.h"

/* Always-on safety check: Raft invariants are never compiled out. */
#define RAFT_INVARIANT(r, cond, ...)                                                               \
	do {                                                                                       \
		if (!(cond))                                                                       \
			raft_invariant_fail((r), __FILE__, __LINE__, #cond, __VA_ARGS__);          \
	} while (0)

void raft_invariant_fail(const struct raft *r, const char *file, int line, const char *cond,
			 const char *fmt, ...) __attribute__((noreturn, format(printf, 5, 6)));

/* ---- log.c: entries after the snapshot point, all in memory ---------------- */

struct raft_log {
	struct raft_entry *e; /* e[0] has index snap_index + 1 */
	size_t n, cap;
	uint64_t snap_index, snap_term;
};

void raft_log_init(struct raft_log *l);
void raft_log_close(struct raft_log *l);
uint64_t raft_log_last_index(const struct raft_log *l);
uint64_t raft_log_last_term(const struct raft_log *l);
/* 0 on success; QFS_ENOENT when index is compacted or beyond the end. */
int raft_log_term(const struct raft_log *l, uint64_t index, uint64_t *term);
const struct raft_entry *raft_log_get(const struct raft_log *l, uint64_t index);
/* Appends a copy holding a new reference; index must be last + 1. */
int raft_log_append(struct raft_log *l, const struct raft_entry *e);
/* Drops entries >= index. */
void raft_log_truncate(struct raft_log *l, uint64_t index);
/* Drops entries <= index (index <= last), remembering its term. */
void raft_log_compact(struct raft_log *l, uint64_t index);
/* Drops everything; the log then starts after (index, term). */
void raft_log_reset(struct raft_log *l, uint64_t index, uint64_t term);
/* §5.4.1: is (index, term) at least as up to date as our last entry? */
bool raft_log_up_to_date(const struct raft_log *l, uint64_t index, uint64_t term);

/* ---- progress.c: the leader's view of each follower (§5.3, etcd's Progress) */

enum progress_state { PR_PROBE = 0, PR_REPLICATE, PR_SNAPSHOT };

struct progress {
	uint64_t id;
	bool voter;
	uint64_t match, next;
	enum progress_state state;
	bool probe_sent;    /* PROBE: one APPEND outstanding until a reply/heartbeat */
	bool recent_active; /* CheckQuorum: heard from it this election timeout */
	uint64_t *inflight; /* REPLICATE: last index of each APPEND in flight */
	size_t in_start, in_count, in_cap;
	uint64_t snap_index;  /* SNAPSHOT: which snapshot is being sent */
	uint64_t snap_offset; /* bytes acknowledged */
	uint64_t read_ack;    /* highest ReadIndex heartbeat ctx acknowledged */
};

int raft_progress_init(struct progress *p, uint64_t id, bool voter, uint64_t next,
		       size_t max_inflight);
void raft_progress_close(struct progress *p);
bool raft_progress_paused(const struct progress *p);
/* Match moved forward to index? Returns true if it did. */
bool raft_progress_update(struct progress *p, uint64_t index);
void raft_progress_become_probe(struct progress *p);
void raft_progress_become_replicate(struct progress *p);
void raft_progress_become_snapshot(struct progress *p, uint64_t snap_index);
void raft_progress_sent(struct progress *p, uint64_t last_index, size_t nentries);
void raft_progress_free_to(struct progress *p, uint64_t index);

/* ---- the member ------------------------------------------------------------ */

struct queued_msg {
	struct raft_msg m;
	uint64_t need_seq; /* released once persisted_seq >= need_seq */
};

struct pending_read {
	uint64_t ctx;
	uint64_t from;	/* member that asked (self for local reads) */
	uint64_t index; /* commit index when accepted */
	uint64_t seq;	/* heartbeat round that confirms it; 0 = waiting for a
			 * commit in the leader's term */
};

struct batch {
	uint64_t seq;
	uint64_t last_index, last_term; /* log end when handed out */
	uint64_t snap_index;		/* snapshot it carried, 0 = none */
};

struct raft {
	struct raft_options o;
	uint64_t id;
	int64_t clock_ns; /* raft_set_clock, for stamp_offset */

	/* Persistent state (§5, Figure 2) and volatile commit. */
	uint64_t term, vote, commit;
	struct raft_log log;

	enum raft_role role;
	uint64_t leader;

	/* Membership: latest configuration in the log (dissertation §4.1). */
	struct raft_members members;
	uint64_t members_index;		  /* index of its CONF entry; 0 = snapshot/none */
	struct raft_members snap_members; /* configuration at log.snap_index */
	struct raft_snapshot img;	  /* latest state machine image, for followers
					   * (index >= log.snap_index; buf NULL = none) */
	uint64_t snap_durable;		  /* newest snapshot index known durable */

	/* Leader. */
	struct progress prs[RAFT_MAX_MEMBERS];
	size_t nprs;
	uint64_t transferee;
	bool bcast_pending; /* new entries to send at the next ready (batching) */
	bool read_pending;  /* a ReadIndex heartbeat round to send at the next ready */

	/* Elections. */
	uint64_t votes_granted[RAFT_MAX_MEMBERS], votes_rejected[RAFT_MAX_MEMBERS];
	size_t ngranted, nrejected;
	unsigned election_elapsed, heartbeat_elapsed, rand_timeout;
	uint64_t rng;

	/* Durability handshake. */
	uint64_t dirty_seq;	/* bumped by each change that must be durable */
	uint64_t persisted_seq; /* acknowledged by raft_persisted() */
	bool hs_dirty;
	struct raft_hardstate hs_handed;
	uint64_t unstable_from;		/* first entry not yet handed out to persist */
	uint64_t stable_index;		/* last entry known durable */
	struct raft_snapshot *snap_out; /* received snapshot to hand out */
	struct batch *batches;
	size_t nbatches, cap_batches;
	uint64_t applied; /* last index handed out for applying */

	/* Outgoing messages and results. */
	struct queued_msg *out;
	size_t nout, cap_out;
	struct raft_read_state *rstates;
	size_t nrstates, cap_rstates;

	/* ReadIndex (leader). */
	struct pending_read *reads;
	size_t nreads, cap_reads;
	uint64_t read_seq;

	/* InstallSnapshot being received. */
	uint64_t rx_index, rx_term, rx_total, rx_from;
	struct raft_members rx_members;
	uint8_t *rx_data;
	size_t rx_len;

	/* Soft state last reported. */
	enum raft_role soft_role;
	uint64_t soft_leader, soft_term;
};

/* raft.c */
void raft_send(struct raft *r, struct raft_msg *m); /* takes m's contents */
void raft_set_term(struct raft *r, uint64_t term);
void raft_set_vote(struct raft *r, uint64_t vote);
void raft_commit_to(struct raft *r, uint64_t commit);
void raft_mark_dirty(struct raft *r);
/* Entries >= index were dropped from the log. */
void raft_on_truncate(struct raft *r, uint64_t index);
uint64_t raft_rand(struct raft *r);

/* confchange.c */
int raft_members_encode(const struct raft_members *m, struct qbuf *out);
int raft_members_decode(struct qreader *rd, struct raft_members *m);
const struct raft_member *raft_members_find(const struct raft_members *m, uint64_t id);
size_t raft_members_voters(const struct raft_members *m);
bool raft_is_voter(const struct raft *r, uint64_t id);
/* Recomputes r->members from the snapshot config and the log (after a
 * truncation or snapshot) and syncs leader progress. */
void raft_conf_reload(struct raft *r);
/* An entry was appended: adopt its configuration if it is a CONF entry. */
void raft_conf_on_append(struct raft *r, const struct raft_entry *e);
/* Configuration in effect at index (<= last), for snapshots. */
void raft_conf_at(const struct raft *r, uint64_t index, struct raft_members *out);
void raft_progress_sync(struct raft *r);
struct progress *raft_progress_get(struct raft *r, uint64_t id);
/* After a commit: a leader removed by a committed change steps down. */
void raft_conf_on_commit(struct raft *r);

/* election.c */
void raft_become_follower(struct raft *r, uint64_t term, uint64_t leader);
void raft_become_leader(struct raft *r);
void raft_campaign(struct raft *r, bool pre, bool force);
void raft_tick_election(struct raft *r);
void raft_tick_leader(struct raft *r);
bool raft_promotable(const struct raft *r);
void raft_step_vote(struct raft *r, const struct raft_msg *m);
void raft_step_vote_resp(struct raft *r, const struct raft_msg *m);
bool raft_quorum_has(const struct raft *r, const uint64_t *ids, size_t n);

/* replication.c */
int raft_append_local(struct raft *r, enum raft_entry_type type, const uint8_t *data, size_t len,
		      struct raft_buf *buf);
bool raft_send_append(struct raft *r, struct progress *p, bool send_empty);
void raft_bcast_append(struct raft *r);
void raft_bcast_heartbeat(struct raft *r, uint64_t ctx);
bool raft_maybe_commit(struct raft *r);
void raft_step_append(struct raft *r, const struct raft_msg *m);
void raft_step_append_resp(struct raft *r, const struct raft_msg *m);
void raft_step_heartbeat(struct raft *r, const struct raft_msg *m);
void raft_step_heartbeat_resp(struct raft *r, const struct raft_msg *m);
void raft_step_snapshot(struct raft *r, const struct raft_msg *m);
void raft_step_snapshot_resp(struct raft *r, const struct raft_msg *m);
void raft_snapshot_resend(struct raft *r, struct progress *p);
void raft_rx_reset(struct raft *r);

/* read.c */
void raft_read_request(struct raft *r, uint64_t ctx, uint64_t from);
void raft_read_on_ack(struct raft *r);
void raft_read_on_commit(struct raft *r);
void raft_read_drop(struct raft *r);
void raft_read_push_state(struct raft *r, uint64_t ctx, uint64_t index);

#endif
