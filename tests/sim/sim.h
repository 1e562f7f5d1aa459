/*
 * Deterministic cluster simulator over the pure Raft core (raft/raft.h) and
 * the real store apply path (store_apply of entry_encode'd entries).
 *
 * Everything is driven from one seeded generator: virtual time advances one
 * unit per step; members tick every SIM_TICK units; messages travel as
 * encoded bytes (raft_msg_encode/decode) through a network that drops,
 * duplicates, delays (and so reorders) and partitions (symmetric and
 * one-way); each member's disk completes its writes after a random delay
 * and a crash loses every write not yet completed. Membership changes,
 * leadership transfers, client writes (with retries) and ReadIndex reads
 * are injected. Same seed, same run.
 *
 * A member may build a snapshot image "in the background" as the daemon
 * does (fs/server_image.c, fs/server_defer.c): for a random while its
 * store, dedup table and image stay as they were, committed entries and
 * leader snapshots that became durable wait in a FIFO, Raft goes on; then
 * it compacts with that image and applies the FIFO in order.
 *
 * cluster.c runs members, network and disks; check.c holds the safety
 * checks run after every step; client.c the clients and the
 * linearizability check of their history; main.c the command line.
 */
#ifndef QFS_SIM_H
#define QFS_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../common/codec.h"
#include "../../raft/dedup.h"
#include "../../raft/raft.h"
#include "../../store/store.h"

#define SIM_MAX_NODES 8
#define SIM_TICK 10 /* time units per Raft tick */
#define SIM_NCLIENTS 3
#define SIM_NKEYS 2
#define SIM_ORIGIN_BASE 1000 /* client origin ids: SIM_ORIGIN_BASE + client */
#define SIM_INF UINT64_MAX

struct sim_write {
	uint64_t due;
	uint64_t seq;
	bool hs_changed;
	struct raft_hardstate hs;
	struct raft_snapshot snap;  /* index 0 = none; holds a buf reference */
	struct raft_entry *entries; /* references */
	size_t nentries;
};

struct sim_disk {
	struct raft_hardstate hs;
	struct raft_snapshot snap;  /* index 0 = none; buf reference */
	struct raft_entry *entries; /* contiguous after snap.index */
	size_t n, cap;
};

/* Held back while an image is built: an entry to apply or a snapshot to load. */
struct sim_held {
	bool snap;
	struct raft_entry e;	 /* reference */
	struct raft_snapshot sn; /* buf reference */
};

struct sim_node {
	uint64_t id;
	bool exists; /* created and not removed for good */
	bool up;
	bool was_member; /* in a committed configuration once */
	uint64_t restart_at;
	struct raft *r;
	struct store *st;
	struct raft_dedup dd;
	struct sim_disk disk;
	struct sim_write *writes; /* FIFO of pending disk writes */
	size_t nwrites, capw;
	uint64_t hold_until; /* an image is being built until then; 0 = none */
	struct qbuf image;   /* its bytes, at image_index */
	uint64_t image_index;
	bool image_compact;    /* a snapshot of its own, else a save */
	struct sim_held *held; /* FIFO, applied when the image is done */
	size_t nheld, caph;
	uint64_t tick_phase;
	uint64_t checked_commit; /* commit-consistency checked up to */
	enum raft_role role;
	uint64_t term;
};

struct sim_packet {
	uint64_t due;
	uint64_t from, to;
	uint8_t *bytes;
	size_t len;
};

struct sim_params {
	unsigned drop_pct10; /* per mille */
	unsigned dup_pct10;
	unsigned delay_max;
	unsigned disk_max;
	unsigned crash_pm; /* per 10000 steps */
	unsigned part_pm;
	unsigned conf_pm;
	unsigned transfer_pm;
	unsigned client_pct;
	unsigned snap_every; /* entries between member snapshots */
	unsigned hold_max;   /* longest background image build; 0: never */
	size_t chunk;
	uint64_t chaos_end;
	uint64_t end;
};

struct sim {
	uint64_t seed;
	uint64_t rng;
	uint64_t now;
	bool verbose;
	bool quiet; /* after chaos_end: no faults */
	struct sim_params p;
	struct sim_node nodes[SIM_MAX_NODES + 1]; /* by id, 1-based */
	uint64_t next_id;
	bool blocked[SIM_MAX_NODES + 1][SIM_MAX_NODES + 1]; /* from, to */
	struct sim_packet *net;
	size_t nnet, capnet;
	uint64_t msgs_sent, msgs_dropped;
	struct sim_check *chk;
	struct sim_clients *cl;
	uint64_t max_applied;		    /* highest index applied anywhere */
	struct raft_members committed_conf; /* from applied CONF entries */
	uint64_t committed_conf_index;
};

/* Totals over the schedules a process ran, for the summary line. */
struct sim_stats {
	uint64_t schedules, steps, msgs, dropped, crashes, elections, snapshots_sent,
	    confs_committed, leader_removed, transfers, writes, reads, max_term, holds, held,
	    held_snaps;
};
extern struct sim_stats sim_stats;
void sim_stats_print(const char *who);

/* cluster.c */
uint64_t sim_rand(struct sim *s);
uint64_t sim_below(struct sim *s, uint64_t n);
int sim_run(uint64_t seed, bool verbose);
struct sim_node *sim_node(struct sim *s, uint64_t id);
void sim_trace(struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sim_fail(struct sim *s, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));
uint64_t sim_leader(struct sim *s); /* an up leader with the highest term, or 0 */

/* check.c */
struct sim_check *sim_check_create(void);
void sim_check_destroy(struct sim_check *c);
void sim_check_entries(struct sim *s, struct sim_node *n, const struct raft_entry *e, size_t k);
void sim_check_role(struct sim *s, struct sim_node *n, enum raft_role role, uint64_t term);
void sim_check_commit(struct sim *s, struct sim_node *n);
void sim_check_apply(struct sim *s, struct sim_node *n, const struct raft_entry *e);
void sim_check_snapshot_loaded(struct sim *s, struct sim_node *n, uint64_t index);
uint32_t sim_state_hash(struct sim_node *n);

/* client.c */
struct sim_clients *sim_clients_create(void);
void sim_clients_destroy(struct sim_clients *c);
void sim_clients_step(struct sim *s);
/* A member applied a NORMAL entry from (origin, request id); dup: skipped. */
void sim_clients_on_apply(struct sim *s, struct sim_node *n, uint64_t origin, uint64_t reqid,
			  bool dup, uint64_t index);
void sim_clients_on_read_state(struct sim *s, struct sim_node *n, uint64_t ctx, uint64_t index);
void sim_clients_on_node_applied(struct sim *s, struct sim_node *n);
void sim_clients_on_crash(struct sim *s, struct sim_node *n);
void sim_clients_check(struct sim *s); /* linearizability of the history */
bool sim_clients_idle(struct sim *s);
uint64_t sim_clients_ops(struct sim *s, uint64_t *reads);

#endif
