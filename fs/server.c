/*
 * The member's loop thread: drives the Raft core (raft/raft.h) with time,
 * peer messages and durability, and applies what it commits to the store.
 *
 *   FUSE/client threads --server_propose/read_barrier--> work queue (mutex)
 *   loop: raft_propose / raft_read_index, raft_tick every heartbeat,
 *         raft_step for each frame from the transport;
 *   each Raft ready: queue entries + hard state to the syncer (fsync thread),
 *         send messages, apply committed entries, answer read points;
 *   syncer durable(seq) -> raft_persisted(seq) -> more readies.
 *
 * Proposals are retried with the same request id until applied or timed out
 * (--request-timeout-ms); the dedup table makes the retry apply once.
 *
 * This file holds that path and the member's lifecycle; membership,
 * snapshots, the lease keeper, recovery and the view for other threads are
 * in the server_*.c files beside it (server_impl.h lists them).
 */
#include <assert.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "../common/errors.h"
#include "../common/log.h"
#include "server_impl.h"

static void try_proposal(struct server *srv, struct work *w);
static void try_read(struct server *srv, struct work *w);
static void feed_clock(struct server *srv);

/* ---- Finishing requests -------------------------------------------------- */

static void work_free(struct work *w)
{
	free(w->data);
	free(w);
}

static void finish_proposal(struct server *srv, struct work *w, int err,
			    const struct store_result *res)
{
	metrics_add(srv->metrics, err ? M_PROPOSALS_FAILED : M_PROPOSALS_COMMITTED, 1);
	if (!err)
		metrics_observe_ns(srv->metrics, M_PROPOSAL_SECONDS, metrics_now_ns() - w->started_ns);
	if (w->done)
		w->done(w->arg, err, res);
	work_free(w);
}

static void finish_read(struct server *srv, struct work *w, int err)
{
	if (err)
		metrics_add(srv->metrics, M_READS_FAILED, 1);
	w->read_done(w->arg, err);
	work_free(w);
}

static struct work *unlink_proposal(struct server *srv, struct work **pp)
{
	struct work *w = *pp;

	*pp = w->next;
	if (!*pp)
		srv->proposals_tail = pp;
	return w;
}

/* Unlinks and returns the proposal with this request id, or NULL. */
static struct work *take_proposal(struct server *srv, uint64_t id)
{
	for (struct work **pp = &srv->proposals; *pp; pp = &(*pp)->next) {
		if ((*pp)->id == id)
			return unlink_proposal(srv, pp);
	}
	return NULL;
}

/* ---- Applying ------------------------------------------------------------ */

/* Every change of the store on the loop thread goes through here. Never
 * while an image is being built (server_defer.c holds entries back): the
 * worker holds the read lock, and the loop would stop here until it is
 * done. */
static void store_wrlock(struct server *srv)
{
	assert(!srv->image_running);
	pthread_rwlock_wrlock(&srv->lock);
}

/* Any thread: the mount dropped what proposal w changed (applied hook). */
static void on_landed(void *arg)
{
	struct work *w = arg;
	struct server *srv = w->srv;

	pthread_mutex_lock(&srv->mu);
	w->next = srv->landed;
	srv->landed = w;
	uv_async_send(&srv->wake); /* open: the stop waits for srv->landing */
	pthread_mutex_unlock(&srv->mu);
}

static void apply_normal(struct server *srv, const struct raft_entry *e)
{
	struct store_result res = {0};
	uint64_t origin, reqid, rev0 = store_revision(srv->store);
	struct work *w = NULL;
	int fresh, type;

	if (e->len < ENTRY_HEADER_SIZE) { /* the leader's empty entry of its term */
		store_wrlock(srv);
		store_skip(srv->store, e->index);
		pthread_rwlock_unlock(&srv->lock);
		return;
	}
	type = e->data[1];
	origin = qfs_le64_get(e->data + 2);
	reqid = qfs_le64_get(e->data + 10);
	fresh = raft_dedup_check(&srv->dedup, origin, reqid);
	if (fresh < 0) {
		LOG_ERROR("out of memory applying entry %llu", (unsigned long long)e->index);
		abort(); /* members must not diverge */
	}
	store_wrlock(srv);
	if (!fresh || type == ENTRY_MEMBER || type == ENTRY_AUTH)
		store_skip(srv->store, e->index);
	else if (store_apply(srv->store, e->index, e->data, e->len, &res) != 0)
		abort(); /* the log and the store disagree: never serve wrong data */
	pthread_rwlock_unlock(&srv->lock);
	if (fresh && type == ENTRY_MEMBER)
		server_member_entry_apply(srv, e);
	if (fresh && type == ENTRY_AUTH)
		res.err = server_auth_entry_apply(srv, e);
	res.revision = store_revision(srv->store);
	if (origin == srv->member_id)
		w = take_proposal(srv, reqid);
	if (fresh && type == ENTRY_TXN && srv->applied_cb && !(w && w->from_mount) &&
	    res.revision != rev0) {
		if (w) { /* answered once the mount cannot show the old state */
			w->res = res;
			srv->landing++;
		}
		srv->applied_cb(srv->applied_arg, e->data, e->len, &res, w ? on_landed : NULL, w);
		return;
	}
	/* A duplicate that is still waiting: its first copy came inside a
	 * snapshot, or was resent so late that the dedup window forgot it
	 * (raft/dedup.h). What it did is not known here. */
	if (w)
		finish_proposal(srv, w, fresh ? 0 : QFS_EUNKNOWN, &res);
}

void server_entry_apply(struct server *srv, const struct raft_entry *e)
{
	uint64_t t0 = metrics_now_ns();

	if (e->index <= store_applied_index(srv->store))
		return; /* covered by a snapshot already loaded */
	if (e->type == RAFT_ENTRY_NORMAL) {
		apply_normal(srv, e);
	} else {
		store_wrlock(srv);
		store_skip(srv->store, e->index);
		pthread_rwlock_unlock(&srv->lock);
		if (e->type == RAFT_ENTRY_CONF)
			server_conf_apply(srv, e);
	}
	metrics_add(srv->metrics, M_ENTRIES_APPLIED, 1);
	metrics_observe_ns(srv->metrics, M_APPLY_SECONDS, metrics_now_ns() - t0);
}

/* Answers read points whose index has been applied. */
static void serve_reads(struct server *srv)
{
	uint64_t applied = store_applied_index(srv->store);

	for (struct work **pp = &srv->reads; *pp;) {
		struct work *w = *pp;

		if (w->read_index && w->read_index <= applied) {
			*pp = w->next;
			finish_read(srv, w, 0);
		} else {
			pp = &w->next;
		}
	}
}

/* ---- Raft I/O: the syncer and the transport ------------------------------ */

static void send_msgs(struct server *srv, const struct raft_msg *msgs, size_t n)
{
	struct qbuf b;

	for (size_t i = 0; i < n; i++) {
		if (!srv->transport)
			return;
		qbuf_init(&b);
		if (raft_msg_encode(&msgs[i], &b) == 0 &&
		    transport_send(srv->transport, msgs[i].to, FRAME_RAFT, b.data, b.len) == 0 &&
		    msgs[i].type == RAFT_MSG_HEARTBEAT)
			server_view_heartbeat_sent(srv, msgs[i].to);
		qbuf_close(&b); /* a dropped message is retransmitted by Raft */
	}
}

/* Queues entries and hard state for the syncer; data carries the entry type
 * in its first byte (the WAL knows index, term and bytes only). */
static int persist(struct server *srv, const struct raft_ready *rd)
{
	struct wal_record *recs = calloc(rd->nentries + 1, sizeof(*recs));
	struct syncer_snapshot snap;
	uint8_t **bufs = calloc(rd->nentries + 1, sizeof(*bufs));
	size_t n = 0;
	int rv = QFS_ENOMEM;

	if (!recs || !bufs)
		goto out;
	for (size_t i = 0; i < rd->nentries; i++) {
		const struct raft_entry *e = &rd->entries[i];

		if (!(bufs[i] = malloc(e->len + 1)))
			goto out;
		bufs[i][0] = (uint8_t)e->type;
		if (e->len)
			memcpy(bufs[i] + 1, e->data, e->len);
		recs[n++] = (struct wal_record){.type = WAL_ENTRY,
						.index = e->index,
						.term = e->term,
						.data = bufs[i],
						.len = e->len + 1};
	}
	if (rd->hs_changed)
		recs[n++] = (struct wal_record){.type = WAL_HARDSTATE,
						.hs_term = rd->hs.term,
						.hs_vote = rd->hs.vote,
						.hs_commit = rd->hs.commit};
	if (rd->snapshot) {
		snap = (struct syncer_snapshot){rd->snapshot->index, rd->snapshot->term,
						rd->snapshot->data, rd->snapshot->len};
		raft_buf_unref(srv->install.buf);
		srv->install = *rd->snapshot;
		srv->install.buf = raft_buf_ref(rd->snapshot->buf);
		srv->install_seq = rd->seq;
		srv->installing = true;
	}
	rv = syncer_write(srv->syncer, recs, n, rd->snapshot ? &snap : NULL, rd->seq);
out:
	for (size_t i = 0; bufs && i < rd->nentries; i++)
		free(bufs[i]);
	free(bufs);
	free(recs);
	return rv;
}

/* ---- Revision listeners -------------------------------------------------- */

static void notify_listeners(struct server *srv)
{
	uint64_t rev = store_revision(srv->store);

	if (rev == srv->notified_rev)
		return;
	srv->notified_rev = rev;
	for (size_t i = 0; i < SERVER_LISTENERS_MAX; i++) {
		if (srv->listeners[i].cb)
			srv->listeners[i].cb(srv->listeners[i].arg, rev);
	}
}

int server_add_revision_listener(struct server *srv, server_revision_cb cb, void *arg)
{
	for (size_t i = 0; i < SERVER_LISTENERS_MAX; i++) {
		if (!srv->listeners[i].cb) {
			srv->listeners[i].cb = cb;
			srv->listeners[i].arg = arg;
			return 0;
		}
	}
	return QFS_ENOSPC;
}

void server_remove_revision_listener(struct server *srv, server_revision_cb cb, void *arg)
{
	for (size_t i = 0; i < SERVER_LISTENERS_MAX; i++) {
		if (srv->listeners[i].cb == cb && srv->listeners[i].arg == arg)
			srv->listeners[i].cb = NULL;
	}
}

/* ---- Readies: persist, then send, then apply ----------------------------- */

static void retry_all(struct server *srv)
{
	for (struct work *w = srv->proposals; w; w = w->next)
		try_proposal(srv, w);
	for (struct work *w = srv->reads; w; w = w->next) {
		if (!w->read_index)
			try_read(srv, w);
	}
}

void server_ready_process(struct server *srv)
{
	struct raft_ready rd;
	bool new_leader;

	while (srv->raft && raft_has_ready(srv->raft)) {
		if (raft_ready_get(srv->raft, &rd) != 0)
			break;
		if ((rd.hs_changed || rd.nentries || rd.snapshot) && !srv->wal_failed &&
		    persist(srv, &rd) != 0) {
			LOG_ERROR("cannot queue a WAL write: out of memory; stopping");
			srv->wal_failed = 1;
			server_shutdown(srv);
		}
		send_msgs(srv, rd.msgs, rd.nmsgs);
		for (size_t i = 0; i < rd.ncommitted; i++)
			server_committed_apply(srv, &rd.committed[i]);
		for (size_t i = 0; i < rd.nreads; i++) {
			for (struct work *w = srv->reads; w; w = w->next) {
				if (w->id == rd.reads[i].ctx && !w->read_index)
					w->read_index = rd.reads[i].index ? rd.reads[i].index : 1;
			}
		}
		if (rd.soft_changed && rd.leader != srv->view.leader && rd.leader)
			LOG_INFO("leader is now %llx (term %llu)%s", (unsigned long long)rd.leader,
				 (unsigned long long)rd.term,
				 rd.leader == srv->member_id ? ": this member" : "");
		else if (rd.soft_changed && rd.leader != srv->view.leader)
			LOG_INFO("no leader (term %llu): electing one",
				 (unsigned long long)rd.term);
		new_leader = rd.soft_changed && rd.leader && rd.leader != srv->view.leader;
		if (new_leader)
			metrics_add(srv->metrics, M_LEADER_CHANGES, 1);
		if (rd.soft_changed)
			srv->leader_since =
			    rd.role == RAFT_LEADER
				? (srv->leader_since ? srv->leader_since : server_now_ms(srv))
				: 0;
		raft_ready_free(&rd);
		server_view_refresh(srv);
		if (new_leader) /* what went to the old leader may be lost: resend now */
			retry_all(srv);
	}
	serve_reads(srv);
	notify_listeners(srv);
	server_snapshot_take(srv);
	server_compact_propose(srv);
	server_addresses_publish(srv);
	server_stop_finish(srv);
}

static void on_durable(void *arg, uint64_t seq, int err)
{
	struct server *srv = arg;

	if (err && !srv->wal_failed) {
		srv->wal_failed = 1;
		LOG_ERROR("stopping: the WAL can no longer be written");
		server_shutdown(srv);
	}
	if (srv->installing && seq >= srv->install_seq) {
		struct raft_snapshot snap = srv->install;

		srv->installing = false;
		srv->install.buf = NULL;
		server_install_apply(srv, &snap); /* takes snap.buf */
	}
	if (!err && srv->raft)
		raft_persisted(srv->raft, seq);
	server_ready_process(srv);
}

static void on_frame(void *arg, uint64_t from, uint8_t type, const uint8_t *p, size_t len)
{
	struct server *srv = arg;
	struct raft_msg m;

	if (type == FRAME_REMOVED && book_find(&srv->book, from)) {
		LOG_WARN("member %llx says this member was removed from the cluster; stopping",
			 (unsigned long long)from);
		server_shutdown(srv);
		return;
	}
	if (type != FRAME_RAFT) {
		LOG_WARN("frame of type %u from %llx dropped (%s)", type, (unsigned long long)from,
			 type == FRAME_REMOVED ? "a removal notice from a non-member" : "unknown type");
		return;
	}
	if (raft_msg_decode(p, len, &m) != 0) {
		LOG_WARN("malformed Raft message from %llx dropped", (unsigned long long)from);
		return;
	}
	feed_clock(srv);
	if (m.from == from && m.type == RAFT_MSG_HEARTBEAT_RESP)
		server_view_heartbeat_answered(srv, from);
	if (m.from == from)
		raft_step(srv->raft, &m);
	raft_msg_free(&m);
	server_ready_process(srv);
}

static void on_peer_state(void *arg, uint64_t peer, enum transport_peer_state state)
{
	struct server *srv = arg;

	server_view_peer_state(srv, peer, state == TRANSPORT_PEER_CONNECTED);
	if (state == TRANSPORT_PEER_RESET && peer == srv->view.leader) {
		raft_leader_unreachable(srv->raft); /* a crashed leader: pre-vote now */
		server_ready_process(srv);
	}
}

/* ---- Requests on the loop ------------------------------------------------ */

/* The wall clock, as an input to the core before anything it may append. */
static void feed_clock(struct server *srv)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	raft_set_clock(srv->raft, (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec);
}

static void try_proposal(struct server *srv, struct work *w)
{
	feed_clock(srv);
	w->next_try = server_now_ms(srv) + srv->cfg->election_ms;
	raft_propose(srv->raft, w->data, w->len); /* ENOTLEADER: retried on tick */
}

static void try_read(struct server *srv, struct work *w)
{
	w->next_try = server_now_ms(srv) + srv->cfg->election_ms;
	w->id = ++srv->next_read_ctx; /* a new context: an old answer is ignored */
	raft_read_index(srv->raft, w->id);
}

static void on_wake(uv_async_t *h)
{
	struct server *srv = h->data;
	struct work *list, *landed, *w;

	pthread_mutex_lock(&srv->mu);
	list = srv->submitted;
	srv->submitted = NULL;
	landed = srv->landed;
	srv->landed = NULL;
	pthread_mutex_unlock(&srv->mu);
	while ((w = landed)) {
		landed = w->next;
		srv->landing--;
		finish_proposal(srv, w, 0, &w->res);
	}
	/* The queue is LIFO: reverse it to keep submission order. */
	for (struct work *rev = NULL;; list = w) {
		if (!list) {
			list = rev;
			break;
		}
		w = list->next;
		list->next = rev;
		rev = list;
	}
	while ((w = list)) {
		list = w->next;
		w->deadline = server_now_ms(srv) + srv->cfg->request_timeout_ms;
		if (srv->wal_failed) {
			if (w->kind == WORK_PROPOSE)
				finish_proposal(srv, w, QFS_EIO, NULL);
			else
				finish_read(srv, w, QFS_EIO);
			continue;
		}
		if (w->kind == WORK_PROPOSE) {
			/* Oldest first, so a resend after a leader change keeps the
			 * ids in order for the dedup window (raft/dedup.h). */
			w->next = NULL;
			*srv->proposals_tail = w;
			srv->proposals_tail = &w->next;
			try_proposal(srv, w);
		} else {
			w->next = srv->reads;
			srv->reads = w;
			try_read(srv, w);
		}
	}
	server_ready_process(srv);
}

static void expire(struct server *srv)
{
	uint64_t now = server_now_ms(srv);
	/* A proposal held back with the committed entries is not lost: resent
	 * now, it would only be applied twice as a duplicate. */
	bool resend = !server_deferred_holding(srv);

	for (struct work **pp = &srv->proposals; *pp;) {
		struct work *w = *pp;

		if (now >= w->deadline) {
			unlink_proposal(srv, pp);
			LOG_WARN("request %llu: no commit within %llu ms (leader unreachable?)",
				 (unsigned long long)w->id,
				 (unsigned long long)srv->cfg->request_timeout_ms);
			finish_proposal(srv, w, QFS_ETIMEDOUT, NULL);
			continue;
		}
		if (resend && now >= w->next_try)
			try_proposal(srv, w);
		pp = &w->next;
	}
	for (struct work **pp = &srv->reads; *pp;) {
		struct work *w = *pp;

		if (now >= w->deadline) {
			*pp = w->next;
			finish_read(srv, w, QFS_ETIMEDOUT);
			continue;
		}
		if (!w->read_index && now >= w->next_try)
			try_read(srv, w);
		pp = &w->next;
	}
	server_member_ops_expire(srv);
}

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000 + (uint64_t)ts.tv_nsec;
}

/* Before each wait for events: how long the turn of the loop that just
 * ended kept the thread busy (its length less the time it waited), the
 * longest time nothing was answered, heartbeats included. Half an election
 * timeout is worth a warning: followers may start an election. The CPU
 * time tells work from a thread that waited for a CPU. */
static void on_prepare(uv_prepare_t *h)
{
	struct server *srv = h->data;
	uint64_t now = uv_hrtime(), idle = uv_metrics_idle_time(&srv->loop), busy;
	uint64_t cpu = thread_cpu_ns();

	if (srv->turn_ns) {
		busy = now - srv->turn_ns - (idle - srv->turn_idle_ns);
		metrics_observe_ns(srv->metrics, M_LOOP_BUSY_SECONDS, busy);
		if (busy >= srv->cfg->election_ms * 500000ull)
			LOG_WARN("the loop thread was busy for %llu ms (%llu ms on a CPU): no "
				 "heartbeats meanwhile",
				 (unsigned long long)(busy / 1000000),
				 (unsigned long long)((cpu - srv->turn_cpu_ns) / 1000000));
	}
	srv->turn_ns = now;
	srv->turn_idle_ns = idle;
	srv->turn_cpu_ns = cpu;
}

static void on_tick(uv_timer_t *t)
{
	struct server *srv = t->data;

	server_removed_links_drop(srv);
	server_leases_expire(srv);

	raft_tick(srv->raft);
	expire(srv);
	server_ready_process(srv);
}

/* ---- Public entry points (any thread) ------------------------------------ */

static int submit(struct server *srv, struct work *w)
{
	pthread_mutex_lock(&srv->mu);
	if (srv->stopping) {
		pthread_mutex_unlock(&srv->mu);
		return QFS_ESHUTDOWN;
	}
	w->next = srv->submitted;
	srv->submitted = w;
	uv_async_send(&srv->wake); /* under mu: the stop cannot close it in between */
	pthread_mutex_unlock(&srv->mu);
	return 0;
}

static int propose(struct server *srv, struct entry *e, bool from_mount, server_done_cb cb,
		   void *arg);

int server_propose(struct server *srv, struct entry *e, server_done_cb cb, void *arg)
{
	return propose(srv, e, false, cb, arg);
}

int server_propose_mount(struct server *srv, struct entry *e, server_done_cb cb, void *arg)
{
	return propose(srv, e, true, cb, arg);
}

static int propose(struct server *srv, struct entry *e, bool from_mount, server_done_cb cb,
		   void *arg)
{
	struct work *w = calloc(1, sizeof(*w));
	struct qbuf buf;
	struct timespec ts;
	int rv;

	if (!w)
		return QFS_ENOMEM;
	clock_gettime(CLOCK_REALTIME, &ts);
	pthread_mutex_lock(&srv->mu);
	e->origin = srv->member_id;
	e->request_id = ++srv->next_request;
	pthread_mutex_unlock(&srv->mu);
	e->time_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
	qbuf_init(&buf);
	rv = entry_encode(e, &buf);
	if (rv) {
		qbuf_close(&buf);
		free(w);
		return rv;
	}
	w->kind = WORK_PROPOSE;
	w->srv = srv;
	w->started_ns = metrics_now_ns();
	w->from_mount = from_mount;
	w->data = qbuf_take(&buf, &w->len);
	w->id = e->request_id;
	w->done = cb;
	w->arg = arg;
	rv = submit(srv, w);
	if (rv)
		work_free(w);
	return rv;
}

int server_read_barrier(struct server *srv, server_read_cb cb, void *arg)
{
	struct work *w = calloc(1, sizeof(*w));
	int rv;

	if (!w)
		return QFS_ENOMEM;
	w->kind = WORK_READ;
	w->read_done = cb;
	w->arg = arg;
	rv = submit(srv, w);
	if (rv)
		free(w);
	return rv;
}

/* ---- Stop ---------------------------------------------------------------- */

static void on_closed(uv_handle_t *h)
{
	(void)h;
}

void server_stop_finish(struct server *srv)
{
	int stopping;

	pthread_mutex_lock(&srv->mu);
	stopping = srv->stopping && !srv->submitted;
	pthread_mutex_unlock(&srv->mu);
	if (!stopping || srv->stopped || srv->snapshot_running || server_image_busy(srv) ||
	    srv->deferred)
		return;
	/* In-flight proposals finish (or time out) before the mount goes. */
	if ((srv->proposals && !srv->wal_failed) || srv->landing)
		return;
	while (srv->proposals)
		finish_proposal(srv, unlink_proposal(srv, &srv->proposals), QFS_EIO, NULL);
	while (srv->reads) {
		struct work *w = srv->reads;

		srv->reads = w->next;
		finish_read(srv, w, QFS_ESHUTDOWN);
	}
	server_member_ops_fail(srv, QFS_ESHUTDOWN);
	srv->stopped = true;
	if (srv->stop_hook)
		srv->stop_hook(srv->stop_arg);
	syncer_destroy(srv->syncer);
	srv->syncer = NULL;
	if (srv->transport)
		transport_close(srv->transport, NULL, NULL);
	srv->transport = NULL;
	uv_timer_stop(&srv->ticker);
	uv_close((uv_handle_t *)&srv->ticker, on_closed);
	uv_close((uv_handle_t *)&srv->turn, on_closed);
	uv_close((uv_handle_t *)&srv->drain, on_closed);
	uv_close((uv_handle_t *)&srv->wake, on_closed);
	uv_close((uv_handle_t *)&srv->sigterm, on_closed);
	uv_close((uv_handle_t *)&srv->sigint, on_closed);
}

void server_shutdown(struct server *srv)
{
	pthread_mutex_lock(&srv->mu);
	if (!srv->stopping) /* once: the handle is closed soon after the stop begins */
		uv_async_send(&srv->wake);
	srv->stopping = 1;
	pthread_mutex_unlock(&srv->mu);
}

static void on_signal(uv_signal_t *h, int signum)
{
	struct server *srv = h->data;

	LOG_INFO("%s: finishing in-flight commits, then unmounting",
		 signum == SIGTERM ? "SIGTERM" : "SIGINT");
	server_shutdown(srv);
}

/* ---- Lifecycle ----------------------------------------------------------- */

/* Before anything touches the data dir: a bad certificate or key is a
 * startup error. */
static int load_peer_tls(struct server *srv)
{
	const struct config *cfg = srv->cfg;
	struct stream_tls_config tls = {
	    .cert_file = cfg->peer_cert,
	    .key_file = cfg->peer_key,
	    .ca_file = cfg->peer_ca,
	    .label = "peer",
	};

	if (!cfg->listen_peer || !cfg->peer_cert)
		return 0;
	return stream_tls_create(&tls, &srv->peer_tls);
}

/* With peer TLS a member's certificate must name it: its CN is the --name
 * its id is derived from (contrib/gen-certs.sh names certificates so), or
 * any holder of a certificate from --peer-ca could speak as any member. The
 * name is compared when the book has it: an id is only a hash of it. */
static bool peer_allowed(void *arg, uint64_t claimed_id, const char *cert_name)
{
	struct server *srv = arg;
	const struct book_entry *b = book_find(&srv->book, claimed_id);

	if (!cert_name)
		return false;
	return b && b->name[0] ? strcmp(b->name, cert_name) == 0
			       : server_name_id(cert_name) == claimed_id;
}

static int start_transport(struct server *srv)
{
	const struct config *cfg = srv->cfg;
	struct transport_config tc = {
	    .self_id = srv->member_id,
	    .cluster_id = srv->cluster_id,
	    .listen_addr = cfg->listen_peer,
	    .cb = {on_frame, on_peer_state, srv},
	    .max_frame = cfg->max_value_bytes + (2u << 20),
	    .streams = srv->peer_tls ? stream_tls_factory(srv->peer_tls) : NULL,
	    .peer_allowed = srv->peer_tls ? peer_allowed : NULL,
	};
	int rv;

	if (!cfg->listen_peer)
		return 0;
	rv = transport_create(&srv->loop, &tc, &srv->transport);
	if (rv) {
		fprintf(stderr, "quorumfs: cannot listen for peers on %s\n", cfg->listen_peer);
		return rv;
	}
	LOG_INFO("listening for peers on %s (%s)", cfg->listen_peer,
		 srv->peer_tls ? "mutual TLS" : "plain TCP");
	return 0;
}

int server_create(const struct config *cfg, struct server **out)
{
	struct store_config scfg = {cfg->quota_bytes, cfg->max_value_bytes};
	struct server *srv = calloc(1, sizeof(*srv));
	struct raft_status st;
	struct wal *wal;
	int rv;

	if (!srv)
		return QFS_ENOMEM;
	srv->proposals_tail = &srv->proposals;
	srv->cfg = cfg;
	srv->lock_fd = -1;
	srv->member_id = server_name_id(cfg->name);
	/* Request ids must grow across restarts too (the dedup table drops an
	 * id at or below one it saw): start from the clock, in microseconds. */
	{
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		srv->next_request = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
	}
	srv->cluster_id = server_name_id(cfg->cluster_token ? cfg->cluster_token : "quorumfs");
	raft_dedup_init(&srv->dedup);
	auth_init(&srv->auth);
	pthread_mutex_init(&srv->mu, NULL);
	pthread_rwlock_init(&srv->lock, NULL);
	uv_loop_init(&srv->loop);
	uv_loop_configure(&srv->loop, UV_METRICS_IDLE_TIME); /* for on_prepare() */
	if ((rv = metrics_create(&srv->metrics)) || (rv = load_peer_tls(srv)) ||
	    (rv = server_data_dir_open(srv)) || (rv = store_create(&scfg, &srv->store)))
		goto err;
	if ((rv = server_recover(srv, &wal)))
		goto err;
	server_image_init(srv);
	if ((rv = syncer_create(&srv->loop, cfg->data_dir, wal, srv->metrics, on_durable, srv,
				&srv->syncer))) {
		wal_close(wal);
		goto err;
	}
	if ((rv = start_transport(srv)))
		goto err;
	server_peers_sync(srv);
	uv_async_init(&srv->loop, &srv->wake, on_wake);
	srv->wake.data = srv;
	uv_timer_init(&srv->loop, &srv->ticker);
	srv->ticker.data = srv;
	uv_timer_start(&srv->ticker, on_tick, cfg->heartbeat_ms, cfg->heartbeat_ms);
	server_deferred_init(srv);
	uv_prepare_init(&srv->loop, &srv->turn);
	srv->turn.data = srv;
	uv_prepare_start(&srv->turn, on_prepare);
	uv_signal_init(&srv->loop, &srv->sigterm);
	uv_signal_init(&srv->loop, &srv->sigint);
	srv->sigterm.data = srv->sigint.data = srv;
	uv_signal_start(&srv->sigterm, on_signal, SIGTERM);
	uv_signal_start(&srv->sigint, on_signal, SIGINT);
	/* A lone voter need not wait out an election timeout to lead. */
	raft_status_get(srv->raft, &st);
	if (st.members.n == 1 && st.members.m[0].id == srv->member_id)
		for (unsigned i = 0; i < 2 * cfg->election_ms / cfg->heartbeat_ms + 2; i++)
			raft_tick(srv->raft);
	server_ready_process(srv);
	*out = srv;
	return 0;

err:
	if (srv->syncer) {
		syncer_destroy(srv->syncer);
		uv_run(&srv->loop, UV_RUN_NOWAIT);
	}
	if (srv->raft)
		raft_destroy(srv->raft);
	if (srv->store)
		store_destroy(srv->store);
	uv_loop_close(&srv->loop);
	stream_tls_destroy(srv->peer_tls);
	if (srv->lock_fd >= 0)
		close(srv->lock_fd);
	raft_dedup_close(&srv->dedup);
	auth_close(&srv->auth);
	pthread_rwlock_destroy(&srv->lock);
	pthread_mutex_destroy(&srv->mu);
	metrics_destroy(srv->metrics);
	free(srv);
	return rv;
}

int server_run(struct server *srv)
{
	uv_run(&srv->loop, UV_RUN_DEFAULT);
	return srv->wal_failed ? QFS_EIO : 0;
}

void server_destroy(struct server *srv)
{
	if (!srv->stopped) { /* server_run never ran to a stop */
		pthread_mutex_lock(&srv->mu);
		srv->stopping = 1;
		pthread_mutex_unlock(&srv->mu);
		server_stop_finish(srv);
		uv_run(&srv->loop, UV_RUN_DEFAULT);
	}
	uv_loop_close(&srv->loop);
	stream_tls_destroy(srv->peer_tls); /* every stream closed with the loop */
	raft_buf_unref(srv->install.buf);
	server_deferred_drop(srv);
	raft_destroy(srv->raft);
	store_destroy(srv->store);
	raft_dedup_close(&srv->dedup);
	auth_close(&srv->auth);
	close(srv->lock_fd);
	pthread_rwlock_destroy(&srv->lock);
	pthread_mutex_destroy(&srv->mu);
	metrics_destroy(srv->metrics);
	free(srv);
}

void server_set_stop_hook(struct server *srv, void (*hook)(void *arg), void *arg)
{
	srv->stop_hook = hook;
	srv->stop_arg = arg;
}

void server_set_applied_hook(struct server *srv, server_applied_cb cb, void *arg)
{
	srv->applied_cb = cb;
	srv->applied_arg = arg;
}

void server_rdlock(struct server *srv)
{
	pthread_rwlock_rdlock(&srv->lock);
}

void server_unlock(struct server *srv)
{
	pthread_rwlock_unlock(&srv->lock);
}

struct store *server_store(struct server *srv)
{
	return srv->store;
}

const struct config *server_config(const struct server *srv)
{
	return srv->cfg;
}

uv_loop_t *server_loop(struct server *srv)
{
	return &srv->loop;
}

struct metrics *server_metrics(struct server *srv)
{
	return srv->metrics;
}
