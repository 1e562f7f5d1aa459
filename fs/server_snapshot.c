/*
 * Snapshots and compaction. A state machine image (fs/image.h) is the Raft
 * configuration, the address book, the dedup table and the store,
 * versioned; server_image.c builds one (for this member's snapshots and
 * for `snapshot save`), server_image_load() here loads one (a leader's
 * snapshot is decoded off the loop: server_install.c).
 *
 * This member takes a snapshot every --snapshot-entries applied entries:
 * the image on the libuv thread pool (committed entries wait meanwhile, so
 * it is one consistent state), then compression and fsync there too; then
 * the Raft log and the WAL are compacted up to it. A snapshot from the
 * leader is loaded once the syncer made it durable (server.c hands it over,
 * server_defer.c after any image being built). Compacting the store's
 * revision history is a separate thing: the leader proposes it through the
 * log (--auto-compact-revisions). Loop thread, but for snapshot_write().
 */
#include <assert.h>
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
	struct store *t;
	int rv = image_decode(p, len, &img);

	if (rv)
		return rv;
	rv = store_snapshot_decode(srv->store, img.store, img.store_len, &t);
	if (rv == 0) {
		server_image_adopt(srv, &img, t);
		*m = img.members;
		store_destroy(t);
	}
	image_close(&img);
	return rv;
}

void server_image_adopt(struct server *srv, struct image *img, struct store *t)
{
	struct raft_dedup old;
	struct auth old_auth;

	assert(!srv->image_running); /* server_defer.c holds a leader's snapshot back */
	pthread_rwlock_wrlock(&srv->lock);
	store_swap(srv->store, t);
	pthread_rwlock_unlock(&srv->lock);
	/* All or nothing: the dedup table, book and users and roles go with
	 * the store. */
	old = srv->dedup;
	srv->dedup = img->dedup;
	img->dedup = old;
	old_auth = srv->auth;
	srv->auth = img->auth;
	img->auth = old_auth;
	srv->book = img->book;
}

/* ---- This member's snapshots --------------------------------------------- */

/* Thread pool. The copy Raft keeps (to send followers that are too far
 * behind) is made here too, and the image freed: for a big store, copying
 * and freeing it cost the loop tens of milliseconds. */
static void snapshot_write(uv_work_t *w)
{
	struct server *srv = w->data;
	struct server_image *img = &srv->snapshot_img;

	srv->snapshot_result = snapfile_write(srv->cfg->data_dir, img->index, img->term,
					      img->image.data, img->image.len, 2);
	if (srv->snapshot_result == 0) {
		srv->snapshot_buf = raft_buf_new(img->image.data, img->image.len);
		if (!srv->snapshot_buf)
			srv->snapshot_result = QFS_ENOMEM;
	}
	qbuf_close(&img->image);
}

static void snapshot_done(uv_work_t *w, int status)
{
	struct server *srv = w->data;
	uint64_t index = srv->snapshot_img.index;
	uint64_t keep =
	    srv->cfg->snapshot_entries / 2 < 5000 ? srv->cfg->snapshot_entries / 2 : 5000;

	(void)status;
	srv->snapshot_running = false;
	if (srv->snapshot_result != 0) {
		LOG_WARN("snapshot at index %llu failed: %s", (unsigned long long)index,
			 qfs_strerror(srv->snapshot_result));
	} else if (!srv->stopped && index > srv->snapshot_index) {
		/* (A leader's snapshot installed meanwhile is newer: keep it.) */
		__atomic_store_n(&srv->snapshot_index, index, __ATOMIC_RELAXED);
		raft_compact_buf(srv->raft, index, srv->snapshot_buf, keep);
		srv->snapshot_buf = NULL;
		syncer_compact(srv->syncer, index);
		metrics_add(srv->metrics, M_SNAPSHOTS, 1);
		LOG_INFO("snapshot at index %llu written", (unsigned long long)index);
	}
	raft_buf_unref(srv->snapshot_buf);
	srv->snapshot_buf = NULL;
	server_stop_finish(srv);
}

static void snapshot_built(struct server_image *img, int err)
{
	struct server *srv = img->srv;

	if (err) {
		if (err != QFS_EAGAIN && err != QFS_ESHUTDOWN)
			LOG_WARN("snapshot image at %llu failed: %s",
				 (unsigned long long)img->index, qfs_strerror(err));
		qbuf_close(&img->image);
		srv->snapshot_running = false;
		return;
	}
	srv->snapshot_work.data = srv;
	uv_queue_work(&srv->loop, &srv->snapshot_work, snapshot_write, snapshot_done);
}

void server_snapshot_take(struct server *srv)
{
	uint64_t applied = store_applied_index(srv->store);
	int rv;

	if (srv->snapshot_running || applied - srv->snapshot_index < srv->cfg->snapshot_entries)
		return;
	qbuf_init(&srv->snapshot_img.image);
	rv = server_image_build(srv, &srv->snapshot_img, false, snapshot_built);
	if (rv) {
		/* EAGAIN: the next ready tries again. */
		if (rv != QFS_EAGAIN && rv != QFS_ESHUTDOWN)
			LOG_WARN("snapshot image at %llu failed: %s", (unsigned long long)applied,
				 qfs_strerror(rv));
		qbuf_close(&srv->snapshot_img.image);
		return;
	}
	srv->snapshot_running = true;
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
