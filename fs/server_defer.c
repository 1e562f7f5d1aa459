/*
 * Committed entries held back while an image is being built
 * (server_image.c). The worker serializes the store while the loop goes on,
 * so nothing on the loop may change the store, the dedup table or the
 * address book meanwhile: server_ready_process() hands every committed entry
 * here, and it is applied at once, or queued (a reference to its bytes, as
 * raft.h allows) behind those already held back. A leader's snapshot
 * replaces the whole state, so it takes its place in the same queue: after
 * the entries committed before it, before those after it (the core hands
 * out nothing after it until it is durable). It always goes through the
 * queue, since it is decoded on the thread pool (server_install.c) and
 * holds back what follows it until it is in.
 *
 * Once the image is done the queue is applied in order, before anything
 * newer. Every effect of applying (answering proposals, the applied hook,
 * membership changes, read points, revision listeners) comes then, in the
 * same order as without the hold, only later: read points wait for the
 * applied index, which does not move meanwhile. A second's worth of writes
 * can take a good part of a second to apply, so the queue is applied a
 * slice at a time, DRAIN_SLICE_NS per turn of the loop (an idle handle
 * brings the next turn at once), and heartbeats, frames and proposals are
 * handled in between; whatever commits meanwhile joins the queue, behind.
 * Loop thread.
 */
#include <stdlib.h>

#include "../common/log.h"
#include "server_impl.h"

#define DRAIN_SLICE_NS 5000000ull

struct deferred {
	bool install;		   /* a leader's snapshot, else a committed entry */
	struct raft_entry e;	   /* holds a reference to its bytes */
	struct server_install *inst; /* being decoded, or decoded */
	uint64_t since_ns;
	struct deferred *next;
};

bool server_deferred_holding(const struct server *srv)
{
	return srv->image_running || srv->deferred;
}

static struct deferred *push(struct server *srv)
{
	struct deferred *d = calloc(1, sizeof(*d));

	if (!d) { /* neither applying now nor later keeps members alike */
		LOG_ERROR("out of memory holding back a committed entry");
		abort();
	}
	d->since_ns = metrics_now_ns();
	if (!srv->deferred)
		srv->deferred_tail = &srv->deferred;
	*srv->deferred_tail = d;
	srv->deferred_tail = &d->next;
	return d;
}

void server_committed_apply(struct server *srv, const struct raft_entry *e)
{
	if (!server_deferred_holding(srv)) {
		server_entry_apply(srv, e);
		return;
	}
	raft_entry_copy(&push(srv)->e, e);
}

void server_install_apply(struct server *srv, struct raft_snapshot *snap)
{
	struct deferred *d = push(srv);

	d->install = true;
	if (srv->image_running)
		LOG_INFO("the leader's snapshot at index %llu waits for an image being built",
			 (unsigned long long)snap->index);
	d->inst = server_install_start(srv, snap);
	srv->installs_held++;
}

static void release(struct deferred *d)
{
	if (d->install) {
		if (d->inst)
			server_install_drop(d->inst);
	} else {
		raft_entry_release(&d->e);
	}
	free(d);
}

static void on_drain(uv_idle_t *h)
{
	struct server *srv = h->data;

	server_deferred_apply(srv);
	server_ready_process(srv); /* read points, listeners, a stop */
}

void server_deferred_init(struct server *srv)
{
	uv_idle_init(&srv->loop, &srv->drain);
	srv->drain.data = srv;
}

/* A snapshot whose decode has not finished: it calls back when it has. */
static bool decoding(const struct deferred *d)
{
	return d->install && !server_install_decoded(d->inst);
}

void server_deferred_apply(struct server *srv)
{
	uint64_t t0 = metrics_now_ns();
	struct deferred *d;

	/* Each is unlinked before it is applied: applying may come back here
	 * (a callback), and it must find the rest, in order. */
	while (!srv->image_running && (d = srv->deferred) && !decoding(d) &&
	       metrics_now_ns() - t0 < DRAIN_SLICE_NS) {
		srv->deferred = d->next;
		if (d->install) {
			srv->installs_held--;
			server_install_finish(srv, d->inst);
			d->inst = NULL;
		} else {
			server_entry_apply(srv, &d->e);
		}
		metrics_observe_ns(srv->metrics, M_APPLY_DEFERRED_SECONDS,
				   metrics_now_ns() - d->since_ns);
		release(d);
	}
	if (srv->deferred && !srv->image_running && !decoding(srv->deferred))
		uv_idle_start(&srv->drain, on_drain);
	else
		uv_idle_stop(&srv->drain);
}

void server_deferred_drop(struct server *srv)
{
	struct deferred *d;

	while ((d = srv->deferred)) {
		srv->deferred = d->next;
		release(d);
	}
	srv->installs_held = 0;
}
