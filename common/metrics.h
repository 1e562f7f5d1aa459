/*
 * The member's metrics: counters and latency histograms that any thread
 * updates with atomic adds (no locks, never blocking a FUSE worker or the
 * loop), rendered in the Prometheus text format by /.quorumfs/metrics.
 * Most gauges (role, term, revision, db size ...) are not kept here: they
 * are read from the live state when rendered, with metrics_gauge(); the
 * table's GAUGE rows are the ones only their updaters know (open watches).
 *
 * One X-macro table names every metric of the project, like errors.h.
 */
#ifndef QFS_METRICS_H
#define QFS_METRICS_H

#include <stdint.h>

#include "codec.h"

/*      id                         kind       name (quorumfs_ + ...)                  help */
#define QFS_METRIC_TABLE(X)                                                                 \
	X(M_LEADER_CHANGES, COUNTER, "server_leader_changes_seen_total",                     \
	  "Leader changes this member has seen.")                                           \
	X(M_PROPOSALS_COMMITTED, COUNTER, "server_proposals_committed_total",                \
	  "Changes proposed through this member that were committed and applied.")         \
	X(M_PROPOSALS_FAILED, COUNTER, "server_proposals_failed_total",                      \
	  "Changes proposed through this member that failed (timeout, shutdown, refused).") \
	X(M_ENTRIES_APPLIED, COUNTER, "server_entries_applied_total",                        \
	  "Raft log entries applied to the store.")                                         \
	X(M_READS_FAILED, COUNTER, "server_read_index_failed_total",                         \
	  "Linearizable read points (ReadIndex) that failed or timed out.")                 \
	X(M_SNAPSHOTS, COUNTER, "server_snapshots_total", "Snapshots written to disk.")       \
	X(M_LEASES_EXPIRED, COUNTER, "lease_expired_total",                                  \
	  "Leases this member expired as the leader.")                                      \
	X(M_WATCHERS, GAUGE, "watchers", "Open `quorumfs watch` streams on this member.")      \
	X(M_FSYNC_SECONDS, HISTOGRAM, "disk_wal_fsync_duration_seconds",                     \
	  "Time of one WAL fsync (one group commit).")                                      \
	X(M_APPLY_SECONDS, HISTOGRAM, "server_apply_duration_seconds",                       \
	  "Time to apply one committed entry to the store.")                                \
	X(M_PROPOSAL_SECONDS, HISTOGRAM, "server_proposal_duration_seconds",                 \
	  "Time from proposing a change through this member to its being applied here.")    \
	X(M_PEER_RTT_SECONDS, HISTOGRAM, "network_peer_round_trip_time_seconds",             \
	  "Heartbeat round trips from this member, as leader, to its peers.")                \
	X(M_LOOP_BUSY_SECONDS, HISTOGRAM, "server_loop_busy_duration_seconds",               \
	  "Time the loop thread was busy in one turn of its event loop (no heartbeats).")    \
	X(M_IMAGE_BUILD_SECONDS, HISTOGRAM, "server_snapshot_build_duration_seconds",        \
	  "Time to build one state machine image (a snapshot's or `snapshot save`'s) "       \
	  "on the thread pool.")                                                             \
	X(M_APPLY_DEFERRED_SECONDS, HISTOGRAM, "server_apply_deferred_duration_seconds",     \
	  "Time a committed entry waited to be applied while an image was being built.")

enum metric_id {
#define QFS_METRIC_ENUM(id, kind, name, help) id,
	QFS_METRIC_TABLE(QFS_METRIC_ENUM)
#undef QFS_METRIC_ENUM
	METRICS_COUNT
};

/* Histogram buckets: 100 µs doubling up to 3.28 s, then +Inf. */
#define METRICS_BUCKETS 17

struct metrics;

int metrics_create(struct metrics **out);
void metrics_destroy(struct metrics *m);

/* Any thread. Adds n to a counter, or to a gauge kept here (n may be
 * negative as int64_t cast to uint64_t: use metrics_gauge_add()). */
void metrics_add(struct metrics *m, enum metric_id id, uint64_t n);
static inline void metrics_gauge_add(struct metrics *m, enum metric_id id, int64_t n)
{
	metrics_add(m, id, (uint64_t)n);
}
/* Any thread. Records one observation of ns nanoseconds in a histogram. */
void metrics_observe_ns(struct metrics *m, enum metric_id id, uint64_t ns);

/* Any thread. Appends every counter and histogram to out. */
void metrics_render(struct metrics *m, struct qbuf *out);
/* Appends one gauge (name without the quorumfs_ prefix; labels like
 * `peer="n2"` or NULL). Series of one gauge go in one call sequence:
 * help NULL for the second and later ones. */
void metrics_gauge(struct qbuf *out, const char *name, const char *help, const char *labels,
		   double value);

/* Nanoseconds on CLOCK_MONOTONIC, for durations. */
uint64_t metrics_now_ns(void);

#endif
