/*
 * Snapshots and compaction. A state machine image is the Raft
 * configuration, the address book, the dedup table and the store, versioned.
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
#include "server_impl.h"

#define IMAGE_VERSION 1

/* ---- Images -------------------------------------------------------------- */

static int image_save(struct server *srv, const struct raft_members *m, struct qbuf *out)
{
	qbuf_put_u32(out, IMAGE_VERSION);
	qbuf_put_u32(out, m->n);
	for (uint32_t i = 0; i < m->n; i++) {
		qbuf_put_u64(out, m->m[i].id);
		qbuf_put_u8(out, m->m[i].voter);
	}
	book_encode(&srv->book, out);
	raft_dedup_encode(&srv->dedup, out);
	return qbuf_error(out) ? qbuf_error(out) : store_snapshot_save(srv->store, out);
}

int server_image_load(struct server *srv, const uint8_t *p, size_t len, struct raft_members *m)
{
	struct qreader r;
	struct book book;
	int rv;

	qreader_init(&r, p, len);
	memset(m, 0, sizeof(*m));
	if (qreader_u32(&r) != IMAGE_VERSION)
		return QFS_EMSG;
	m->n = qreader_u32(&r);
	if (m->n > RAFT_MAX_MEMBERS)
		return QFS_EMSG;
	for (uint32_t i = 0; i < m->n; i++) {
		m->m[i].id = qreader_u64(&r);
		m->m[i].voter = qreader_u8(&r) != 0;
	}
	if (qreader_error(&r) || book_decode(&book, &r) || raft_dedup_decode(&srv->dedup, &r))
		return QFS_EMSG;
	pthread_rwlock_wrlock(&srv->lock);
	rv = store_snapshot_load(srv->store, r.p, r.left);
	pthread_rwlock_unlock(&srv->lock);
	if (rv == 0)
		srv->book = book;
	return rv;
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
	uint64_t applied = store_applied_index(srv->store), term = 0;
	struct raft_members m;

	if (srv->snapshot_running || srv->stopped || srv->installing ||
	    applied - srv->snapshot_index < srv->cfg->snapshot_entries)
		return;
	if (raft_members_at(srv->raft, applied, &m) || raft_term_at(srv->raft, applied, &term))
		return;
	qbuf_init(&srv->snapshot_image);
	if (image_save(srv, &m, &srv->snapshot_image) != 0) {
		LOG_WARN("snapshot image at %llu failed", (unsigned long long)applied);
		qbuf_close(&srv->snapshot_image);
		return;
	}
	srv->snapshot_image_index = applied;
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
