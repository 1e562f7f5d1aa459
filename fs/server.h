/*
 * A member: the libuv loop thread that owns the store, orders proposals into
 * the log, makes them durable (through the syncer) and applies them.
 *
 * Ordering is done by a trivial single-member sequencer: a proposal gets the
 * next log index, is stamped with the loop's clock, queued for the WAL, and
 * applied once durable. The Raft log replaces the sequencer when replication
 * lands; everything on either side of server_propose() stays as it is.
 *
 * Threads: server_propose(), server_rdlock()/server_unlock() and
 * server_shutdown() may be called from any thread. Everything else, and every
 * callback, runs on the loop thread, which is the only writer of the store:
 * code on the loop thread reads the store without taking the lock.
 */
#ifndef QFS_SERVER_H
#define QFS_SERVER_H

#include <stdint.h>

#include "../store/entry.h"
#include "../store/store.h"
#include "config.h"

struct server;

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

/* Begins a clean stop from any thread: reject new proposals, finish the
 * in-flight ones, call the stop hook, end server_run(). */
void server_shutdown(struct server *srv);

/* Hook run on the loop thread once in-flight proposals have finished. */
void server_set_stop_hook(struct server *srv, void (*hook)(void *arg), void *arg);

/* Store access for reader threads: hold the read lock while using the store
 * and anything it returned. */
void server_rdlock(struct server *srv);
void server_unlock(struct server *srv);
struct store *server_store(struct server *srv);
const struct config *server_config(const struct server *srv);

struct server_status {
	const char *name;
	uint64_t member_id;
	const char *role;
	uint64_t term, commit_index, applied_index;
	uint64_t revision, compacted_revision;
	uint64_t db_size, quota_bytes, keys;
	uint64_t snapshot_index;
};
/* Any thread; takes the read lock itself. */
void server_status(struct server *srv, struct server_status *st);

#endif
