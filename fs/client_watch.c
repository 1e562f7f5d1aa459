/*
 * WATCH on the client port (see client_conn.h): the request turns its
 * connection into a stream of WATCH frames that ends only with an error
 * frame (or the connection).
 *
 * A watcher is a cursor into history: (next_rev, sent_in_rev) says which
 * matching events it has queued. Whenever the revision advances (one port-
 * wide revision listener) or its socket drains, it reads on with
 * store_events() from there and queues frames, but only while less than
 * WATCH_SOFT_BYTES wait to be written. So a slow client costs its bounded
 * buffer and nothing else: writers never wait for it, it simply reads
 * history later. One write is in flight at a time (c->out); frames queue
 * behind it in w->queued.
 *
 * It falls behind for good when the history it needs is compacted. Before
 * that can happen, a watcher whose client has not taken a write for
 * WATCH_STUCK_MS while it lags more than max_lag revisions (half the
 * auto-compaction window: its next revision is still there for a while, so
 * the client can resume from it) is cancelled with an error frame. The
 * connection closes once that frame is written, or at the first revision
 * applied after WATCH_LINGER_MS (cancelling takes writes, so one comes).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/errors.h"
#include "../common/log.h"
#include "../common/metrics.h"
#include "client_conn.h"

/* A watcher reads history only while less than this is queued... */
#define WATCH_SOFT_BYTES (256u << 10)
/* ...and stops in the middle of a revision's events only past this. */
#define WATCH_HARD_BYTES (1u << 20)
/* An idle watcher gets a progress frame at most this often. */
#define WATCH_PROGRESS_MS 1000
/* A write that has not finished for this long means the client stopped
 * reading: lagging past the bound below, it is cancelled. */
#define WATCH_STUCK_MS 1000
/* Without auto-compaction, the lag (revisions) a stuck watcher may reach. */
#define WATCH_MAX_LAG 100000
/* Any lag, stuck this long: cancelled. */
#define WATCH_STALL_MS 30000
/* A watcher whose end (an error frame) cannot be delivered is closed after. */
#define WATCH_LINGER_MS 10000

struct watch {
	char *key;
	bool prefix;
	uint64_t start;	      /* as asked, 0 = next */
	bool started;	      /* past the read barrier */
	bool ended;	      /* an error frame is queued: close once written */
	uint64_t next_rev;    /* first revision not wholly queued */
	uint64_t sent_in_rev; /* matching events of next_rev already queued */
	uint64_t progress;    /* in the last frame queued */
	uint64_t frame_ms;    /* when the last frame was queued */
	uint64_t write_ms;    /* when the write in flight began */
	uint64_t ended_ms;
	bool writing;
	struct qbuf queued;
	struct metrics *metrics; /* the M_WATCHERS gauge counts this watch */
};

void client_watch_free(struct watch *w)
{
	if (!w)
		return;
	metrics_gauge_add(w->metrics, M_WATCHERS, -1);
	qbuf_close(&w->queued);
	free(w->key);
	free(w);
}

static void watch_flush(struct conn *c);

static void on_watch_write(struct qfs_stream *s, void *arg, int status)
{
	struct conn *c = arg;
	struct watch *w = c->watch;

	(void)s;
	qbuf_close(&c->out);
	w->writing = false;
	if (c->closing)
		return;
	if (status < 0) {
		LOG_DEBUG("client port: watcher %s gone: %s", c->name, qfs_strerror(status));
		conn_close(c);
		return;
	}
	watch_flush(c);
}

static void watch_pump(struct conn *c);

/* Reads more history if there is room (also while a write is in flight:
 * the next frames are ready when it ends), then starts the next write. */
static void watch_flush(struct conn *c)
{
	struct watch *w = c->watch;
	int rv;

	if (c->closing)
		return;
	watch_pump(c);
	if (c->closing || w->writing)
		return;
	if (w->queued.len == 0) {
		if (w->ended)
			conn_close(c);
		return;
	}
	c->out = w->queued;
	qbuf_init(&w->queued);
	w->writing = true;
	w->write_ms = uv_now(c->port->loop);
	rv = conn_write_out(c, on_watch_write, c);
	if (rv) {
		LOG_DEBUG("client port: write to watcher %s failed: %s", c->name, qfs_strerror(rv));
		w->writing = false;
		qbuf_close(&c->out);
		conn_close(c);
	}
}

/* Queues the error frame that ends the stream. */
static void watch_end(struct conn *c, int err, const char *msg)
{
	struct watch *w = c->watch;
	int rv;

	if (w->ended)
		return;
	w->ended = true;
	w->ended_ms = uv_now(c->port->loop);
	rv = client_proto_err_encode(&w->queued, CLIENT_REQ_WATCH, err, msg, "", "");
	if (rv) {
		LOG_WARN("client port: cannot end watch of %s: %s", c->name, qfs_strerror(rv));
		conn_close(c);
	}
}

static void watch_cancel(struct conn *c, uint64_t rev, bool compacted)
{
	struct store *s = server_store(c->port->srv);
	char msg[CLIENT_PROTO_MSG_MAX + 1];

	if (compacted)
		snprintf(msg, sizeof(msg),
			 "watch cancelled: fell behind at revision %" PRIu64
			 ", which has been compacted; the oldest available is %" PRIu64,
			 rev, store_compacted_revision(s));
	else
		snprintf(msg, sizeof(msg),
			 "watch cancelled: fell behind at revision %" PRIu64
			 "; resume with --rev %" PRIu64,
			 rev, rev);
	LOG_INFO("client port: watcher %s of %s: %s", c->name, c->watch->key, msg);
	watch_end(c, compacted ? QFS_ECOMPACTED : QFS_EAGAIN, msg);
}

struct pump {
	struct conn *c;
	struct client_watch_enc enc;
	bool open;    /* enc holds a frame */
	size_t bytes; /* its payload so far */
	uint64_t rev; /* revision of the last matching event seen */
	uint64_t idx; /* matching events of rev seen */
};

static void pump_close_frame(struct pump *pm, uint64_t progress)
{
	struct conn *c = pm->c;
	struct watch *w = c->watch;
	uint64_t now = uv_now(c->port->loop);
	int rv;

	if (!pm->open)
		return;
	pm->open = false;
	/* An empty frame only to say how far we got: at most once a
	 * WATCH_PROGRESS_MS, and never to say nothing new. */
	if (pm->enc.n == 0 && (progress <= w->progress || now - w->frame_ms < WATCH_PROGRESS_MS)) {
		w->queued.len = pm->enc.frame;
		return;
	}
	rv = client_proto_watch_end(&pm->enc, progress);
	if (rv) {
		LOG_WARN("client port: watcher %s: %s", c->name, qfs_strerror(rv));
		conn_close(c);
		return;
	}
	w->progress = progress;
	w->frame_ms = now;
}

static void pump_open_frame(struct pump *pm)
{
	if (pm->open)
		return;
	client_proto_watch_begin(&pm->enc, &pm->c->watch->queued);
	pm->open = true;
	pm->bytes = 0;
}

static int pump_event(void *arg, const struct store_event *ev)
{
	struct pump *pm = arg;
	struct watch *w = pm->c->watch;
	const struct store_kv *kv = ev->kv;
	struct client_event ce;
	size_t size;

	if (!w->prefix && strcmp(kv->key, w->key) != 0)
		return 0;
	if (ev->revision != pm->rev) {
		pm->rev = ev->revision;
		pm->idx = 0;
	}
	/* Already queued before an earlier pump stopped inside this revision. */
	if (ev->revision == w->next_rev && pm->idx < w->sent_in_rev) {
		pm->idx++;
		return 0;
	}
	/* Room is checked between revisions, so a resumed client rarely sees a
	 * revision cut in two; only a huge revision is split, past HARD. */
	if ((pm->idx == 0 && w->queued.len >= WATCH_SOFT_BYTES) ||
	    w->queued.len >= WATCH_HARD_BYTES) {
		w->next_rev = ev->revision;
		w->sent_in_rev = pm->idx;
		return 1;
	}
	ce = (struct client_event){
	    .type = ev->type == STORE_EVENT_PUT ? CLIENT_EVENT_PUT : CLIENT_EVENT_DELETE,
	    .revision = ev->revision,
	    .kv = {kv->key, (uint8_t)kv->type, kv->mode, kv->create_rev, kv->mod_rev, kv->version,
		   kv->value->data, kv->value->len},
	};
	if (ce.type == CLIENT_EVENT_DELETE) {
		ce.kv.value = (const uint8_t *)"";
		ce.kv.value_len = 0;
	}
	size = client_proto_event_size(&ce);
	if (pm->open && pm->enc.n > 0 && pm->bytes + size > CLIENT_PROTO_PAGE_BYTES)
		pump_close_frame(pm, ev->revision - 1);
	pump_open_frame(pm);
	client_proto_watch_add(&pm->enc, &ce);
	pm->bytes += size;
	pm->idx++;
	return 0;
}

/* Queues what the watcher has room for. Loop thread: reads the store
 * without the lock. */
static void watch_pump(struct conn *c)
{
	struct watch *w = c->watch;
	struct store *s = server_store(c->port->srv);
	uint64_t cur = store_revision(s), now = uv_now(c->port->loop);
	struct pump pm = {.c = c};
	int rv;

	if (c->closing || !w->started || w->ended)
		return;
	if (w->next_rev <= cur && w->next_rev < store_compacted_revision(s)) {
		watch_cancel(c, w->next_rev, true);
		return;
	}
	if (w->writing && w->next_rev <= cur) {
		uint64_t stuck = now - w->write_ms, lag = cur - w->next_rev + 1;

		if ((stuck >= WATCH_STUCK_MS && lag > c->port->max_lag) ||
		    stuck >= WATCH_STALL_MS) {
			watch_cancel(c, w->next_rev, false);
			return;
		}
	}
	if (w->queued.len >= WATCH_SOFT_BYTES)
		return;
	pump_open_frame(&pm);
	if (w->next_rev > cur) {
		pump_close_frame(&pm, w->next_rev - 1);
		return;
	}
	rv = store_events(s, w->next_rev, cur, w->key, pump_event, &pm);
	if (rv == 0) {
		w->next_rev = cur + 1;
		w->sent_in_rev = 0;
		pump_close_frame(&pm, cur);
	} else if (rv == 1) {
		pump_close_frame(&pm, w->next_rev - 1);
	} else {
		if (pm.open)
			w->queued.len = pm.enc.frame;
		pm.open = false;
		if (rv == QFS_ECOMPACTED) {
			watch_cancel(c, w->next_rev, true);
		} else {
			char msg[CLIENT_PROTO_MSG_MAX + 1];

			snprintf(msg, sizeof(msg), "watch failed at revision %" PRIu64 ": %s",
				 w->next_rev, qfs_strerror(rv));
			watch_end(c, rv, msg);
		}
	}
}

static void on_watch_ready(void *arg, int err)
{
	struct conn *c = arg;
	struct watch *w = c->watch;
	struct store *s = server_store(c->port->srv);
	char msg[CLIENT_PROTO_MSG_MAX + 1];
	struct client_watch_enc enc;
	uint64_t cur, compacted;

	if (c->closing)
		goto out;
	if (err) {
		snprintf(msg, sizeof(msg), "%s",
			 err == QFS_ETIMEDOUT ? CONN_TIMEOUT_MSG
					      : qfs_strerror(err));
		watch_end(c, err, msg);
		goto flush;
	}
	cur = store_revision(s);
	compacted = store_compacted_revision(s);
	w->next_rev = w->start ? w->start : cur + 1;
	if (w->next_rev < compacted) {
		snprintf(msg, sizeof(msg),
			 "revision %" PRIu64
			 " has been compacted; the oldest available is %" PRIu64,
			 w->next_rev, compacted);
		watch_end(c, QFS_ECOMPACTED, msg);
		goto flush;
	}
	w->started = true;
	/* The first frame says the watch is in place, and from where. */
	w->progress = w->next_rev - 1;
	w->frame_ms = uv_now(c->port->loop);
	client_proto_watch_begin(&enc, &w->queued);
	if (client_proto_watch_end(&enc, w->progress) != 0) {
		conn_close(c);
		goto out;
	}
flush:
	watch_flush(c);
out:
	conn_unref(c);
}

void client_watch_start(struct conn *c, const struct client_req *r)
{
	struct watch *w;
	int rv = store_key_check(r->key);

	if (rv) {
		conn_respond_bad_key(c, r->type, rv);
		return;
	}
	if (!c->port->listening) {
		conn_respond_err_msg(c, r->type, QFS_EAGAIN,
				     "watches are not available on this member");
		return;
	}
	w = calloc(1, sizeof(*w));
	if (!w || !(w->key = strdup(r->key))) {
		free(w);
		conn_respond_err(c, r->type, QFS_ENOMEM);
		return;
	}
	w->prefix = (r->flags & CLIENT_WATCH_PREFIX) != 0;
	w->start = r->rev;
	qbuf_init(&w->queued);
	/* From here on the connection is a stream: busy for good. */
	c->watch = w;
	w->metrics = server_metrics(c->port->srv);
	metrics_gauge_add(w->metrics, M_WATCHERS, 1);
	c->refs++;
	/* A read point first, so a watch begun on a follower starts from at
	 * least what the cluster had committed when it was asked. */
	rv = server_read_barrier(c->port->srv, on_watch_ready, c);
	if (rv)
		on_watch_ready(c, rv);
}

void client_watch_on_revision(void *arg, uint64_t revision)
{
	struct client_port *p = arg;
	uint64_t now = uv_now(p->loop);

	(void)revision;
	for (struct conn *c = p->conns; c; c = c->next) {
		if (c->closing || !c->watch)
			continue;
		if (c->watch->ended && now - c->watch->ended_ms >= WATCH_LINGER_MS) {
			LOG_DEBUG("client port: watcher %s does not read its end; closing",
				  c->name);
			conn_close(c);
			continue;
		}
		watch_flush(c);
	}
}

/* Half the auto-compaction window: a watcher cancelled at that lag can
 * still resume from where it stopped. */
uint64_t client_watch_max_lag(const struct config *cfg)
{
	uint64_t lag =
	    cfg->auto_compact_revisions ? cfg->auto_compact_revisions / 2 : WATCH_MAX_LAG;

	return lag ? lag : 1;
}
