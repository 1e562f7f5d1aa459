/*
 * Group commit: one background thread owns the WAL and makes what the loop
 * hands it durable. The loop thread queues writes (no I/O, just a copy); the
 * syncer thread takes everything queued, writes it and fsyncs once, and
 * tells the loop (uv_async) how far it got. Writes queued while an fsync runs
 * wait for the next one, so one fsync covers every write queued meanwhile.
 * fsync never runs on the loop thread.
 *
 * A write may carry a snapshot image received from the leader: it is written
 * to a snapshot file first, then a WAL SNAPSHOT marker (the log restarts
 * after it), then the write's records, in queue order with everything else.
 */
#ifndef QFS_SYNCER_H
#define QFS_SYNCER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "../store/wal.h"

struct syncer;

/* Called on the loop thread: every write queued with a seq <= `seq` is
 * durable, or err != 0 (QFS_EIO) when the WAL failed: nothing queued after
 * the last durable write will ever become durable. */
typedef void (*syncer_durable_cb)(void *arg, uint64_t seq, int err);

struct metrics;

/* Takes ownership of wal (closed by syncer_destroy). dir is the data dir
 * (for snapshot files; copied). Each group commit is timed into metrics
 * (borrowed; may be NULL). */
int syncer_create(uv_loop_t *loop, const char *dir, struct wal *wal, struct metrics *metrics,
		  syncer_durable_cb cb, void *arg, struct syncer **out);

struct syncer_snapshot {
	uint64_t index, term;
	const uint8_t *image; /* copied */
	size_t len;
};

/* Loop thread. Queues records (their data is copied) and, optionally, a
 * snapshot to install before them, under seq (non-decreasing). Returns 0 or
 * QFS_ENOMEM. */
int syncer_write(struct syncer *s, const struct wal_record *recs, size_t n,
		 const struct syncer_snapshot *snap, uint64_t seq);

/* Loop thread: once everything queued so far is durable, delete WAL
 * segments covered by a snapshot at index. */
void syncer_compact(struct syncer *s, uint64_t index);

/* Writes what is queued, stops the thread, closes the WAL and the async
 * handle; the struct is freed when the handle has closed. Loop thread. */
void syncer_destroy(struct syncer *s);

#endif
