/*
 * Building state machine images (fs/image.h) off the loop thread, for this
 * member's snapshots (server_snapshot.c) and `snapshot save`
 * (client_snapshot.c).
 *
 * Serializing the store costs a fraction of a microsecond per stored key
 * version, a quarter of a second or more for a million; on the loop thread
 * that stops heartbeats, and a leader that stops them long enough is
 * replaced. So the loop only does the small part that belongs to it: the
 * configuration at the applied index and its term (Raft calls), the
 * address book and the dedup table. A thread-pool worker then serializes
 * the store under the read lock (FUSE threads go on reading beside it),
 * while the loop goes on with everything that does not change the state:
 * it persists through the syncer, sends, receives, takes proposals and
 * read points, and holds committed entries back (server_defer.c). When the
 * worker is done the requester's callback runs (the store is still as of
 * the image), then the held-back entries are applied, then the next
 * request's turn comes.
 *
 * One build at a time: a member snapshot and a `snapshot save` each ask at
 * most once at a time, so the queue holds at most one more. Loop thread,
 * but for build().
 */
#include <stdlib.h>
#include <unistd.h>
#include <zlib.h>

#include "../common/errors.h"
#include "../common/log.h"
#include "image.h"
#include "server_impl.h"

void server_image_init(struct server *srv)
{
	const char *d = getenv("QFS_TEST_IMAGE_DELAY_MS");

	if (d && atoi(d) > 0) {
		srv->image_delay_ms = (unsigned)atoi(d);
		LOG_WARN("QFS_TEST_IMAGE_DELAY_MS: images take %u ms more to build (tests only)",
			 srv->image_delay_ms);
	}
}

bool server_image_busy(const struct server *srv)
{
	return srv->image_running || srv->image_queue;
}

static bool stopping(struct server *srv)
{
	int s;

	pthread_mutex_lock(&srv->mu);
	s = srv->stopping;
	pthread_mutex_unlock(&srv->mu);
	return s || srv->stopped;
}

/* Thread pool: the store's part, under the read lock. The loop changes
 * nothing meanwhile, so the lock only keeps this honest. */
static void build(uv_work_t *w)
{
	struct server_image *img = w->data;
	struct server *srv = img->srv;
	uint64_t t0 = metrics_now_ns();

	pthread_rwlock_rdlock(&srv->lock);
	img->err = store_snapshot_save(srv->store, &img->image);
	if (srv->image_delay_ms)
		usleep(srv->image_delay_ms * 1000u);
	pthread_rwlock_unlock(&srv->lock);
	if (!img->err && img->want_crc)
		img->crc = (uint32_t)crc32_z(0, img->image.data, img->image.len);
	img->build_ns = metrics_now_ns() - t0;
}

static void built(uv_work_t *w, int status);

/* The loop's part, then the worker's. 0 or why it cannot start now. */
static int start(struct server *srv, struct server_image *img)
{
	uint64_t applied = store_applied_index(srv->store);
	struct raft_members m;
	int rv;

	if (stopping(srv))
		return QFS_ESHUTDOWN;
	/* A leader's snapshot is about to replace the store; and an index the
	 * log no longer has gives no term. */
	if (srv->installing || srv->installs_held || raft_members_at(srv->raft, applied, &m) ||
	    raft_term_at(srv->raft, applied, &img->term))
		return QFS_EAGAIN;
	img->index = applied;
	rv = image_head_encode(&m, &srv->book, &srv->dedup, &srv->auth, &img->image);
	if (rv)
		return rv;
	srv->image_running = img; /* from here on, nothing changes the state */
	img->work.data = img;
	rv = uv_queue_work(&srv->loop, &img->work, build, built);
	if (rv) {
		srv->image_running = NULL;
		return QFS_ENOMEM;
	}
	return 0;
}

/* The next request whose turn it is; those that cannot start hear why. */
static void start_next(struct server *srv)
{
	struct server_image *img;
	int rv;

	while (!srv->image_running && (img = srv->image_queue)) {
		srv->image_queue = img->next;
		rv = start(srv, img);
		if (rv)
			img->cb(img, rv);
	}
}

static void built(uv_work_t *w, int status)
{
	struct server_image *img = w->data;
	struct server *srv = img->srv;
	int err = img->err ? img->err : status ? QFS_ENOMEM : 0;

	srv->image_running = NULL;
	metrics_observe_ns(srv->metrics, M_IMAGE_BUILD_SECONDS, img->build_ns);
	LOG_INFO("image at index %llu: %zu bytes built in %.1f ms on the thread pool "
		 "(%.1f ms since asked)",
		 (unsigned long long)img->index, img->image.len, (double)img->build_ns / 1e6,
		 (double)(metrics_now_ns() - img->queued_ns) / 1e6);
	img->cb(img, err); /* may free img */
	server_deferred_apply(srv);
	start_next(srv);
	server_ready_process(srv); /* read points, listeners, snapshots, a stop */
}

int server_image_build(struct server *srv, struct server_image *img, bool crc, server_image_cb cb)
{
	struct server_image **pp = &srv->image_queue;

	img->srv = srv;
	img->cb = cb;
	img->want_crc = crc;
	img->err = 0;
	img->crc = 0;
	img->next = NULL;
	img->queued_ns = metrics_now_ns();
	if (!server_image_busy(srv))
		return start(srv, img);
	if (stopping(srv))
		return QFS_ESHUTDOWN;
	while (*pp)
		pp = &(*pp)->next;
	*pp = img;
	return 0;
}
