/*
 * A leader's snapshot, loaded off the loop thread. Decoding a big image
 * (about 0.8 s for 1 M keys) on the loop would stop heartbeats, frames and
 * FUSE answers meanwhile, so the image is decoded on the thread pool into
 * a store of its own, while it waits its turn in the deferred queue
 * (server_defer.c) with every entry committed after it held behind it.
 * When its turn comes the loop swaps the new state in under the write lock
 * (a few pointer moves) and the old state is freed on the thread pool.
 */
#include <assert.h>
#include <stdlib.h>

#include "../common/errors.h"
#include "../common/log.h"
#include "image.h"
#include "server_impl.h"

struct server_install {
	uv_work_t work;
	struct server *srv;
	struct raft_snapshot snap; /* holds its buf */
	struct image img;	   /* valid when err == 0 */
	struct store *store;	   /* decoded; after the swap, the old state */
	int err;
	bool decoded;
	uint64_t queued_ns, decode_ns;
};

/* Thread pool: touches nothing of the server but the bytes it holds. */
static void decode(uv_work_t *w)
{
	struct server_install *in = w->data;
	uint64_t t0 = metrics_now_ns();

	in->err = image_decode(in->snap.data, in->snap.len, &in->img);
	if (!in->err) {
		/* The live store lends only its (immutable) limits. */
		in->err = store_snapshot_decode(in->srv->store, in->img.store, in->img.store_len,
						&in->store);
		if (in->err)
			image_close(&in->img);
	}
	in->decode_ns = metrics_now_ns() - t0;
}

static void decoded(uv_work_t *w, int status)
{
	struct server_install *in = w->data;

	(void)status;
	in->decoded = true;
	server_deferred_apply(in->srv); /* it may be next */
	server_ready_process(in->srv);
}

struct server_install *server_install_start(struct server *srv, struct raft_snapshot *snap)
{
	struct server_install *in = calloc(1, sizeof(*in));

	if (!in) { /* without it the members would diverge */
		LOG_ERROR("out of memory holding the leader's snapshot; stopping");
		abort();
	}
	in->srv = srv;
	in->snap = *snap;
	snap->buf = NULL;
	in->queued_ns = metrics_now_ns();
	in->work.data = in;
	if (uv_queue_work(&srv->loop, &in->work, decode, decoded) != 0) {
		decode(&in->work); /* cannot happen with valid arguments: then here */
		in->decoded = true;
	}
	return in;
}

bool server_install_decoded(const struct server_install *in)
{
	return in->decoded;
}

static void drop(struct server_install *in)
{
	if (in->decoded && !in->err)
		image_close(&in->img);
	store_destroy(in->store);
	raft_buf_unref(in->snap.buf);
	free(in);
}

static void free_old(uv_work_t *w)
{
	struct server_install *in = w->data;

	store_destroy(in->store);
	in->store = NULL;
}

static void freed(uv_work_t *w, int status)
{
	(void)status;
	drop(w->data);
}

void server_install_finish(struct server *srv, struct server_install *in)
{
	assert(in->decoded);
	if (in->err) {
		LOG_ERROR("snapshot %llu from the leader does not load (%s); stopping",
			  (unsigned long long)in->snap.index, qfs_strerror(in->err));
		abort(); /* applied state would diverge */
	}
	server_image_adopt(srv, &in->img, in->store); /* in->store: the old state now */
	__atomic_store_n(&srv->snapshot_index, in->snap.index, __ATOMIC_RELAXED);
	LOG_INFO("installed the leader's snapshot at index %llu (decoded in %llu ms, "
		 "%llu ms after it was durable)",
		 (unsigned long long)in->snap.index, (unsigned long long)(in->decode_ns / 1000000),
		 (unsigned long long)((metrics_now_ns() - in->queued_ns) / 1000000));
	server_peers_sync(srv);
	if (uv_queue_work(&srv->loop, &in->work, free_old, freed) != 0)
		drop(in);
}

void server_install_drop(struct server_install *in)
{
	drop(in);
}
