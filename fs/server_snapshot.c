/*
 * Snapshots and compaction. A state machine image (fs/image.h) is the Raft
 * configuration, the address book, the dedup table and the store,
 * versioned; server_image_save() makes one, for this member's snapshots and
 * for `snapshot save` (fs/client_snapshot.c).
 *
 * This member takes a snapshot every --snapshot-entries applied entries: the
 * image on the loop thread (a consistent state), compression and fsync on the
 * libuv thread pool; then the Raft log and the WAL are compacted up to it. A
 * snapshot from the leader is loaded once the syncer made it durable
 * (server.c hands it over). Compacting the store's revision history is a
 * separate thing: the leader proposes it through the log
 * (--auto-compact-revisions). Loop thread, but for snapshot_write().
 */
#include <stdlib.h>
#include <string.h>

#include "../common/errors.h"
#include "../common/log.h"
#include "../store/snapfile.h"
#include "image.h"
#include "server_impl.h"

/* ---- Images -------------------------------------------------------------- */

int server_image_load(struct server *srv, const uint8_t *p, size_t len, struct raft_members *m)
{
	struct image img;
	struct raft_dedup old;
	int rv = image_decode(p, len, &img);

	if (rv)
		return rv;
	pthread_rwlock_wrlock(&srv->lock);
	rv = store_snapshot_load(srv->store, img.store, img.store_len);
	pthread_rwlock_unlock(&srv->lock);
	if (rv == 0) {
		/* All or nothing: the dedup table and book go with the store. */
		old = srv->dedup;
		srv->dedup = img.dedup;
		img.dedup = old;
		srv->book = img.book;
		*m = img.members;
	}
	image_close(&img);
	return rv;
}

int server_image_save(struct server *srv, struct qbuf *out, uint64_t *index, uint64_t *term)
{
	uint64_t applied = store_applied_index(srv->store);
	struct raft_members m;
	int rv;

	/* While a leader's snapshot is being installed the store is about to
	 * be replaced; and an index the log no longer has gives no term. */
	if (srv->installing || srv->stopped || raft_members_at(srv->raft, applied, &m) ||
	    raft_term_at(srv->raft, applied, term))
		return QFS_EAGAIN;
	*index = applied;
	rv = image_head_encode(&m, &srv->book, &srv->dedup, out);
	return rv ? rv : store_snapshot_save(srv->store, out);
}

/* ---- The leader's snapshot ----------------------------------------------- */

void server_snapshot_install(struct server *srv)
{
	struct raft_members m;

	srv->installing = false;
	if (server_image_load(srv, srv->install.data, srv->install.len, &m) != 0) {
		LOG_ERROR("snapshot %llu from the leader does not load; stopping",
			  (unsigned long long)srv->install.index);
		abort(); /* applied state would diverge */
	}
	__atomic_store_n(&srv->snapshot_index, srv->install.index, __ATOMIC_RELAXED);
	LOG_INFO("installed the leader's snapshot at index %llu",
		 (unsigned long long)srv->install.index);
	raft_buf_unref(srv->install.buf);
	srv->install.buf = NULL;
	server_peers_sync(srv);
}

/* ---- This member's snapshots --------------------------------------------- */

/* Thread pool. */
static void snapshot_write(uv_work_t *w)
{
	struct server *srv = w->data;

	srv->snapshot_result =
	    snapfile_write(srv->cfg->data_dir, srv->snapshot_image_index, srv->snapshot_image_term,
			   srv->snapshot_image.data, srv->snapshot_image.len, 2);
}

static void snapshot_done(uv_work_t *w, int status)
{
	struct server *srv = w->data;
	uint64_t index = srv->snapshot_image_index;
	uint64_t keep =
	    srv->cfg->snapshot_entries / 2 < 5000 ? srv->cfg->snapshot_entries / 2 : 5000;

	(void)status;
	srv->snapshot_running = false;
	if (srv->snapshot_result != 0) {
		LOG_WARN("snapshot at index %llu failed: %s", (unsigned long long)index,
			 qfs_strerror(srv->snapshot_result));
	} else if (!srv->stopped) {
		__atomic_store_n(&srv->snapshot_index, index, __ATOMIC_RELAXED);
		raft_compact(srv->raft, index, srv->snapshot_image.data, srv->snapshot_image.len,
			     keep);
		syncer_compact(srv->syncer, index);
		metrics_add(srv->metrics, M_SNAPSHOTS, 1);
		LOG_INFO("snapshot at index %llu written", (unsigned long long)index);
	}
	qbuf_close(&srv->snapshot_image);
	server_stop_finish(srv);
}

void server_snapshot_take(struct server *srv)
{
	uint64_t applied = store_applied_index(srv->store), index = 0, term = 0;
	int rv;

	if (srv->snapshot_running || applied - srv->snapshot_index < srv->cfg->snapshot_entries)
		return;
	qbuf_init(&srv->snapshot_image);
	rv = server_image_save(srv, &srv->snapshot_image, &index, &term);
	if (rv) {
		if (rv != QFS_EAGAIN) /* EAGAIN: not now, the next ready tries again */
			LOG_WARN("snapshot image at %llu failed: %s", (unsigned long long)applied,
				 qfs_strerror(rv));
		qbuf_close(&srv->snapshot_image);
		return;
	}
	srv->snapshot_image_index = index;
	srv->snapshot_image_term = term;
	srv->snapshot_running = true;
	srv->snapshot_work.data = srv;
	uv_queue_work(&srv->loop, &srv->snapshot_work, snapshot_write, snapshot_done);
}

/* ---- Compacting the revision history ------------------------------------- */

static void compact_done(void *arg, int err, const struct store_result *res)
{
	struct server *srv = arg;

	srv->compact_pending = false;
	if (err || res->err)
		LOG_WARN("auto-compaction failed: %s", qfs_strerror(err ? err : res->err));
}

/* Through the log so every member drops the same history; the leader
 * decides when. */
void server_compact_propose(struct server *srv)
{
	uint64_t keep = srv->cfg->auto_compact_revisions;
	uint64_t rev = store_revision(srv->store);
	struct entry e = {.type = ENTRY_COMPACT};

	if (!keep || srv->compact_pending || srv->wal_failed || srv->view.role != RAFT_LEADER ||
	    rev < store_compacted_revision(srv->store) + keep + keep / 10 + 1)
		return;
	e.compact_rev = rev - keep;
	if (server_propose(srv, &e, compact_done, srv) == 0)
		srv->compact_pending = true;
}
