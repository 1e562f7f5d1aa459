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
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "../common/errors.h"
#include "../common/log.h"
#include "../raft/dedup.h"
#include "../raft/raft.h"
#include "../raft/transport.h"
#include "../store/snapfile.h"
#include "../store/wal.h"
#include "book.h"
#include "cli.h"
#include "server.h"
#include "syncer.h"

#define FRAME_RAFT 1
#define FRAME_REMOVED 2 /* "you are no longer a member": sent once, then the link goes */
#define IMAGE_VERSION 1

enum work_kind { WORK_PROPOSE, WORK_READ };

/* A request from any thread, then tracked on the loop until it finishes. */
struct work {
	enum work_kind kind;
	uint8_t *data; /* PROPOSE: the encoded entry */
	size_t len;
	uint64_t id;   /* PROPOSE: request id; READ: read context */
	uint64_t read_index; /* READ: 0 until the leader answered */
	bool from_mount;     /* PROPOSE: the local kernel saw this change */
	uint64_t deadline, next_try; /* loop time, ms */
	server_done_cb done;
	server_read_cb read_done;
	void *arg;
	struct work *next;
};

struct member_op {
	enum server_member_op op;
	uint64_t id;
	server_member_cb cb;
	void *arg;
	uint64_t deadline;
	struct member_op *next;
};

struct view { /* what other threads may read, under mu */
	enum raft_role role;
	bool learner;
	uint64_t term, leader, commit;
	struct raft_members members;
};

struct server {
	const struct config *cfg;
	uint64_t member_id, cluster_id;
	int lock_fd;
	uv_loop_t loop;
	uv_async_t wake;
	uv_timer_t ticker;
	uv_signal_t sigterm, sigint;
	struct raft *raft;
	struct transport *transport;
	struct syncer *syncer;
	struct store *store;
	pthread_rwlock_t lock; /* store: loop writes, FUSE threads read */
	struct raft_dedup dedup;
	struct book book;

	pthread_mutex_t mu; /* guards submitted, stopping, next_request, view, book copy */
	struct work *submitted;
	int stopping;
	uint64_t next_request;
	struct view view;
	struct book book_view;

	/* Loop thread only. */
	struct work *proposals, *reads;
	struct member_op *member_ops;
	uint64_t next_read_ctx;
	uint64_t install_seq; /* a leader's snapshot waits for this seq */
	struct raft_snapshot install;
	bool installing;
	int wal_failed;
	bool publishing;

	uint64_t snapshot_index;
	bool snapshot_running;
	uv_work_t snapshot_work;
	struct qbuf snapshot_image;
	uint64_t snapshot_image_index, snapshot_image_term;
	int snapshot_result;

	struct { /* removed members whose link stays up until the notice went out */
		uint64_t id, at;
	} removals[BOOK_MAX];
	size_t nremovals;

	bool compact_pending;
	uint64_t leader_since; /* loop time this member became leader, 0 = not leader */
	bool expiring;         /* a lease expiry round is in flight */
	bool stopped;
	void (*stop_hook)(void *arg);
	void *stop_arg;
	server_applied_cb applied_cb;
	void *applied_arg;
	struct {
		server_revision_cb cb;
		void *arg;
	} listeners[SERVER_LISTENERS_MAX];
	uint64_t notified_rev; /* last revision listeners heard of */
};

static uint64_t name_id(const char *s)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a: ids derived from names */

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h ? h : 1;
}

static uint64_t now_ms(struct server *srv)
{
	return uv_now(&srv->loop);
}

static void process_ready(struct server *srv);
static void maybe_stop(struct server *srv);

/* ---- Finishing requests --------------------------------------------------- */

static void work_free(struct work *w)
{
	free(w->data);
	free(w);
}

static void finish_proposal(struct work *w, int err, const struct store_result *res)
{
	if (w->done)
		w->done(w->arg, err, res);
	work_free(w);
}

static void finish_read(struct work *w, int err)
{
	w->read_done(w->arg, err);
	work_free(w);
}

/* Unlinks and returns the proposal with this request id, or NULL. */
static struct work *take_proposal(struct server *srv, uint64_t id)
{
	for (struct work **pp = &srv->proposals; *pp; pp = &(*pp)->next) {
		if ((*pp)->id == id) {
			struct work *w = *pp;

			*pp = w->next;
			return w;
		}
	}
	return NULL;
}

/* ---- Snapshot images -------------------------------------------------------- */

/* A state machine image: version, Raft configuration, address book, dedup
 * table, store. */
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

/* Loads an image (untrusted: it came from disk or a leader). */
static int image_load(struct server *srv, const uint8_t *p, size_t len, struct raft_members *m)
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

/* ---- The view other threads read ------------------------------------------- */

static void refresh_view(struct server *srv)
{
	struct raft_status st;

	raft_status_get(srv->raft, &st);
	pthread_mutex_lock(&srv->mu);
	srv->view.role = st.role;
	srv->view.term = st.term;
	srv->view.leader = st.leader;
	srv->view.commit = st.commit;
	srv->view.members = st.members;
	srv->view.learner = true;
	for (uint32_t i = 0; i < st.members.n; i++) {
		if (st.members.m[i].id == srv->member_id && st.members.m[i].voter)
			srv->view.learner = false;
	}
	srv->book_view = srv->book;
	pthread_mutex_unlock(&srv->mu);
}

/* Peers to connect to: every other member in the book with an address
 * (removals take members out of the book). */
static void sync_peers(struct server *srv)
{
	if (!srv->transport)
		return;
	for (size_t i = 0; i < srv->book.n; i++) {
		const struct book_entry *b = &srv->book.e[i];

		if (b->id != srv->member_id && b->peer[0])
			transport_peer_add(srv->transport, b->id, b->peer); /* EEXIST: known */
	}
}

/* ---- Applying --------------------------------------------------------------- */

static void complete_member_ops(struct server *srv, enum server_member_op op, uint64_t id,
				int err)
{
	for (struct member_op **pp = &srv->member_ops; *pp;) {
		struct member_op *m = *pp;

		if (m->op == op && m->id == id) {
			*pp = m->next;
			m->cb(m->arg, err);
			free(m);
		} else {
			pp = &m->next;
		}
	}
}

static void apply_conf(struct server *srv, const struct raft_entry *e)
{
	static const enum server_member_op ops[] = {
	    [RAFT_CONF_ADD_LEARNER] = SERVER_MEMBER_ADD_LEARNER,
	    [RAFT_CONF_PROMOTE] = SERVER_MEMBER_PROMOTE,
	    [RAFT_CONF_REMOVE] = SERVER_MEMBER_REMOVE,
	};
	struct raft_conf_change c;
	bool present = false;

	if (raft_conf_decode(e->data, e->len, &c) != 0) {
		LOG_ERROR("entry %llu: malformed membership change", (unsigned long long)e->index);
		return;
	}
	if (c.op == RAFT_CONF_ADD_LEARNER && c.context_len) {
		/* context: name NUL peer NUL client (NUL) */
		char ctx[RAFT_CONF_CONTEXT_MAX + 3] = {0};
		const char *name = ctx, *peer, *client;

		memcpy(ctx, c.context, c.context_len);
		peer = name + strlen(name) + 1;
		client = peer + strlen(peer) + 1;
		book_set(&srv->book, c.id, name, peer, client);
	}
	if (c.op == RAFT_CONF_REMOVE)
		book_remove(&srv->book, c.id);
	for (uint32_t i = 0; i < c.members.n; i++)
		present |= c.members.m[i].id == srv->member_id;
	if (c.op)
		LOG_INFO("membership change committed at %llu: %s member %llx",
			 (unsigned long long)e->index,
			 c.op == RAFT_CONF_ADD_LEARNER ? "added learner"
			 : c.op == RAFT_CONF_PROMOTE   ? "promoted"
						       : "removed",
			 (unsigned long long)c.id);
	if (c.op == RAFT_CONF_REMOVE && srv->transport && c.id != srv->member_id &&
	    srv->nremovals < BOOK_MAX) {
		/* The leader stops replicating to a removed member, so it would
		 * never see its own removal: tell it, then drop the link. */
		transport_send(srv->transport, c.id, FRAME_REMOVED, "", 0);
		srv->removals[srv->nremovals].id = c.id;
		srv->removals[srv->nremovals++].at = now_ms(srv) + 2 * srv->cfg->election_ms;
	}
	sync_peers(srv);
	if (c.op)
		complete_member_ops(srv, ops[c.op], c.id, 0);
	if (!present && c.op == RAFT_CONF_REMOVE && c.id == srv->member_id) {
		LOG_WARN("this member was removed from the cluster; stopping");
		server_shutdown(srv);
	}
}

static void apply_normal(struct server *srv, const struct raft_entry *e)
{
	struct store_result res = {0};
	uint64_t origin, reqid, rev0 = store_revision(srv->store);
	struct work *w = NULL;
	int fresh, type;

	if (e->len < ENTRY_HEADER_SIZE) {
		store_skip(srv->store, e->index);
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
	pthread_rwlock_wrlock(&srv->lock);
	if (!fresh || type == ENTRY_MEMBER)
		store_skip(srv->store, e->index);
	else if (store_apply(srv->store, e->index, e->data, e->len, &res) != 0)
		abort(); /* the log and the store disagree: never serve wrong data */
	pthread_rwlock_unlock(&srv->lock);
	if (fresh && type == ENTRY_MEMBER) {
		struct entry *m;

		if (entry_decode(e->data, e->len, &m) == 0) {
			book_set(&srv->book, m->member.id, m->member.name, m->member.peer,
				 m->member.client);
			free(m);
			sync_peers(srv);
		}
	}
	res.revision = store_revision(srv->store);
	if (origin == srv->member_id)
		w = take_proposal(srv, reqid);
	if (fresh && type == ENTRY_TXN && srv->applied_cb && !(w && w->from_mount) &&
	    res.revision != rev0)
		srv->applied_cb(srv->applied_arg, e->data, e->len, &res);
	if (w)
		finish_proposal(w, 0, &res);
}

static void apply_entry(struct server *srv, const struct raft_entry *e)
{
	if (e->index <= store_applied_index(srv->store))
		return; /* covered by a snapshot already loaded */
	if (e->type == RAFT_ENTRY_NORMAL) {
		apply_normal(srv, e);
		return;
	}
	pthread_rwlock_wrlock(&srv->lock);
	store_skip(srv->store, e->index);
	pthread_rwlock_unlock(&srv->lock);
	if (e->type == RAFT_ENTRY_CONF)
		apply_conf(srv, e);
}

/* Answers read points whose index has been applied. */
static void serve_reads(struct server *srv)
{
	uint64_t applied = store_applied_index(srv->store);

	for (struct work **pp = &srv->reads; *pp;) {
		struct work *w = *pp;

		if (w->read_index && w->read_index <= applied) {
			*pp = w->next;
			finish_read(w, 0);
		} else {
			pp = &w->next;
		}
	}
}

/* ---- Snapshots and compaction -------------------------------------------------- */

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
	uint64_t keep = srv->cfg->snapshot_entries / 2 < 5000 ? srv->cfg->snapshot_entries / 2 : 5000;

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
		LOG_INFO("snapshot at index %llu written", (unsigned long long)index);
	}
	qbuf_close(&srv->snapshot_image);
	maybe_stop(srv);
}

/* The image is taken on the loop thread (a consistent state); compression
 * and fsync run on the libuv thread pool. */
static void maybe_snapshot(struct server *srv)
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

static void compact_done(void *arg, int err, const struct store_result *res)
{
	struct server *srv = arg;

	srv->compact_pending = false;
	if (err || res->err)
		LOG_WARN("auto-compaction failed: %s", qfs_strerror(err ? err : res->err));
}

/* Compaction goes through the log so every member drops the same history;
 * the leader decides when. */
static void maybe_compact(struct server *srv)
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

/* Tells the cluster where this member listens, once per start when the
 * book does not say so already. */
static void publish_done(void *arg, int err, const struct store_result *res)
{
	struct server *srv = arg;

	(void)res;
	srv->publishing = false;
	if (err)
		LOG_DEBUG("publishing member addresses: %s (will retry)", qfs_strerror(err));
}

static void maybe_publish(struct server *srv)
{
	const struct book_entry *b = book_find(&srv->book, srv->member_id);
	const char *peer = srv->cfg->listen_peer ? srv->cfg->listen_peer : "";
	const char *client = srv->cfg->listen_client ? srv->cfg->listen_client : "";
	struct entry e = {.type = ENTRY_MEMBER};

	if (srv->publishing || srv->stopped || !srv->view.leader ||
	    (b && strcmp(b->name, srv->cfg->name) == 0 && strcmp(b->peer, peer) == 0 &&
	     strcmp(b->client, client) == 0))
		return;
	e.member = (struct entry_member){srv->member_id, srv->cfg->name, peer, client};
	if (server_propose(srv, &e, publish_done, srv) == 0)
		srv->publishing = true;
}

/* ---- Raft I/O ----------------------------------------------------------------- */

static void send_msgs(struct server *srv, const struct raft_msg *msgs, size_t n)
{
	struct qbuf b;

	for (size_t i = 0; i < n; i++) {
		if (!srv->transport)
			return;
		qbuf_init(&b);
		if (raft_msg_encode(&msgs[i], &b) == 0)
			transport_send(srv->transport, msgs[i].to, FRAME_RAFT, b.data, b.len);
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
		recs[n++] = (struct wal_record){.type = WAL_ENTRY, .index = e->index,
						.term = e->term, .data = bufs[i],
						.len = e->len + 1};
	}
	if (rd->hs_changed)
		recs[n++] = (struct wal_record){.type = WAL_HARDSTATE, .hs_term = rd->hs.term,
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

static void try_proposal(struct server *srv, struct work *w);
static void try_read(struct server *srv, struct work *w);
static void feed_clock(struct server *srv);

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

static void retry_all(struct server *srv)
{
	for (struct work *w = srv->proposals; w; w = w->next)
		try_proposal(srv, w);
	for (struct work *w = srv->reads; w; w = w->next) {
		if (!w->read_index)
			try_read(srv, w);
	}
}

static void process_ready(struct server *srv)
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
			apply_entry(srv, &rd.committed[i]);
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
			LOG_INFO("no leader (term %llu): electing one", (unsigned long long)rd.term);
		new_leader = rd.soft_changed && rd.leader && rd.leader != srv->view.leader;
		if (rd.soft_changed)
			srv->leader_since = rd.role == RAFT_LEADER
						? (srv->leader_since ? srv->leader_since : now_ms(srv))
						: 0;
		raft_ready_free(&rd);
		refresh_view(srv);
		if (new_leader) /* what went to the old leader may be lost: resend now */
			retry_all(srv);
	}
	serve_reads(srv);
	notify_listeners(srv);
	maybe_snapshot(srv);
	maybe_compact(srv);
	maybe_publish(srv);
	maybe_stop(srv);
}

static void on_durable(void *arg, uint64_t seq, int err)
{
	struct server *srv = arg;
	struct raft_members m;

	if (err && !srv->wal_failed) {
		srv->wal_failed = 1;
		LOG_ERROR("stopping: the WAL can no longer be written");
		server_shutdown(srv);
	}
	if (srv->installing && seq >= srv->install_seq) {
		srv->installing = false;
		if (image_load(srv, srv->install.data, srv->install.len, &m) != 0) {
			LOG_ERROR("snapshot %llu from the leader does not load; stopping",
				  (unsigned long long)srv->install.index);
			abort(); /* applied state would diverge */
		}
		__atomic_store_n(&srv->snapshot_index, srv->install.index, __ATOMIC_RELAXED);
		LOG_INFO("installed the leader's snapshot at index %llu",
			 (unsigned long long)srv->install.index);
		raft_buf_unref(srv->install.buf);
		srv->install.buf = NULL;
		sync_peers(srv);
	}
	if (!err && srv->raft)
		raft_persisted(srv->raft, seq);
	process_ready(srv);
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
	if (type != FRAME_RAFT || raft_msg_decode(p, len, &m) != 0) {
		LOG_WARN("malformed Raft message from %llx dropped", (unsigned long long)from);
		return;
	}
	feed_clock(srv);
	if (m.from == from)
		raft_step(srv->raft, &m);
	raft_msg_free(&m);
	process_ready(srv);
}

static void on_peer_state(void *arg, uint64_t peer, enum transport_peer_state state)
{
	struct server *srv = arg;

	if (state == TRANSPORT_PEER_RESET && peer == srv->view.leader) {
		raft_leader_unreachable(srv->raft); /* a crashed leader: pre-vote now */
		process_ready(srv);
	}
}

/* ---- Requests on the loop ------------------------------------------------------ */

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
	w->next_try = now_ms(srv) + srv->cfg->election_ms;
	raft_propose(srv->raft, w->data, w->len); /* ENOTLEADER: retried on tick */
}

static void try_read(struct server *srv, struct work *w)
{
	w->next_try = now_ms(srv) + srv->cfg->election_ms;
	w->id = ++srv->next_read_ctx; /* a new context: an old answer is ignored */
	raft_read_index(srv->raft, w->id);
}

static void on_wake(uv_async_t *h)
{
	struct server *srv = h->data;
	struct work *list, *w;

	pthread_mutex_lock(&srv->mu);
	list = srv->submitted;
	srv->submitted = NULL;
	pthread_mutex_unlock(&srv->mu);
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
		w->deadline = now_ms(srv) + srv->cfg->request_timeout_ms;
		if (srv->wal_failed) {
			if (w->kind == WORK_PROPOSE)
				finish_proposal(w, QFS_EIO, NULL);
			else
				finish_read(w, QFS_EIO);
			continue;
		}
		if (w->kind == WORK_PROPOSE) {
			w->next = srv->proposals;
			srv->proposals = w;
			try_proposal(srv, w);
		} else {
			w->next = srv->reads;
			srv->reads = w;
			try_read(srv, w);
		}
	}
	process_ready(srv);
}

static void expire(struct server *srv)
{
	uint64_t now = now_ms(srv);

	for (struct work **pp = &srv->proposals; *pp;) {
		struct work *w = *pp;

		if (now >= w->deadline) {
			*pp = w->next;
			LOG_WARN("request %llu: no commit within %llu ms (leader unreachable?)",
				 (unsigned long long)w->id,
				 (unsigned long long)srv->cfg->request_timeout_ms);
			finish_proposal(w, QFS_ETIMEDOUT, NULL);
			continue;
		}
		if (now >= w->next_try)
			try_proposal(srv, w);
		pp = &w->next;
	}
	for (struct work **pp = &srv->reads; *pp;) {
		struct work *w = *pp;

		if (now >= w->deadline) {
			*pp = w->next;
			finish_read(w, QFS_ETIMEDOUT);
			continue;
		}
		if (!w->read_index && now >= w->next_try)
			try_read(srv, w);
		pp = &w->next;
	}
	for (struct member_op **pp = &srv->member_ops; *pp;) {
		struct member_op *m = *pp;

		if (m->op == SERVER_LEADER_TRANSFER && srv->view.leader == m->id) {
			*pp = m->next;
			m->cb(m->arg, 0);
			free(m);
		} else if (now >= m->deadline) {
			*pp = m->next;
			m->cb(m->arg, QFS_ETIMEDOUT);
			free(m);
		} else {
			pp = &m->next;
		}
	}
}

static void drop_removed_links(struct server *srv)
{
	for (size_t i = 0; i < srv->nremovals;) {
		if (now_ms(srv) < srv->removals[i].at) {
			i++;
			continue;
		}
		transport_peer_remove(srv->transport, srv->removals[i].id);
		srv->removals[i] = srv->removals[--srv->nremovals];
	}
}

/* ---- Lease expiry ------------------------------------------------------------- *
 *
 * Only the leader expires leases, and only after it confirmed with a read
 * point that it still leads, so a deposed or partitioned leader revokes
 * nothing. A new leader first waits one election timeout: the old leader's
 * view of time is not known, and waiting can only lengthen a lease, by at
 * most that much. The entry names each lease's generation: a renewal that
 * raced the expiry wins (store.h).
 */

struct expiry_round {
	struct server *srv;
	struct store_op *ops;
	size_t n, cap;
	int64_t now_ns;
};

static int collect_expired(void *arg, const struct store_lease *l)
{
	struct expiry_round *x = arg;

	if (l->expiry_ns > x->now_ns || x->n == 256) /* a bounded round; more next tick */
		return 0;
	if (x->n == x->cap) {
		size_t cap = x->cap ? x->cap * 2 : 16;
		struct store_op *grown = realloc(x->ops, cap * sizeof(*grown));

		if (!grown)
			return 1;
		x->ops = grown;
		x->cap = cap;
	}
	x->ops[x->n++] = (struct store_op){
	    .type = STORE_OP_LEASE_EXPIRE, .lease_id = l->id, .lease_gen = l->gen};
	return 0;
}

static void expiry_done(void *arg, int err, const struct store_result *res)
{
	struct server *srv = arg;

	srv->expiring = false;
	if (err || res->err)
		LOG_WARN("lease expiry: %s", qfs_strerror(err ? err : res->err));
}

static void expiry_confirmed(void *arg, int err)
{
	struct expiry_round *x = arg;
	struct server *srv = x->srv;
	struct entry e = {.type = ENTRY_TXN};

	if (!err && srv->view.role == RAFT_LEADER) {
		e.txn.then_ops = x->ops;
		e.txn.nthen = x->n;
		err = server_propose(srv, &e, expiry_done, srv);
	} else if (!err) {
		err = QFS_ENOTLEADER;
	}
	if (err) {
		LOG_DEBUG("lease expiry round dropped: %s", qfs_strerror(err));
		srv->expiring = false;
	}
	free(x->ops);
	free(x);
}

static void expire_leases(struct server *srv)
{
	struct expiry_round *x;
	struct timespec ts;

	if (srv->expiring || srv->stopped || srv->view.role != RAFT_LEADER || !srv->leader_since ||
	    now_ms(srv) < srv->leader_since + srv->cfg->election_ms || !(x = calloc(1, sizeof(*x))))
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	x->srv = srv;
	x->now_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
	store_lease_list(srv->store, collect_expired, x);
	if (x->n == 0 || server_read_barrier(srv, expiry_confirmed, x) != 0) {
		free(x->ops);
		free(x);
		return;
	}
	srv->expiring = true;
}

static void on_tick(uv_timer_t *t)
{
	struct server *srv = t->data;

	drop_removed_links(srv);
	expire_leases(srv);

	raft_tick(srv->raft);
	expire(srv);
	process_ready(srv);
}

/* ---- Public entry points (any thread) -------------------------------------------- */

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

void server_member_change(struct server *srv, enum server_member_op op,
			  const struct server_member *m, server_member_cb cb, void *arg)
{
	const struct book_entry *b = book_find_name(&srv->book, m->name);
	uint64_t id = b ? b->id : name_id(m->name);
	struct member_op *mo;
	char ctx[RAFT_CONF_CONTEXT_MAX];
	int n, rv;

	if (srv->view.role != RAFT_LEADER) {
		cb(arg, QFS_ENOTLEADER);
		return;
	}
	if (op == SERVER_MEMBER_ADD_LEARNER) {
		if (b) {
			cb(arg, QFS_EEXIST);
			return;
		}
		n = snprintf(ctx, sizeof(ctx), "%s%c%s%c%s", m->name, 0, m->peer_addr, 0,
			     m->client_addr);
		if (n < 0 || (size_t)n >= sizeof(ctx) || !m->peer_addr[0]) {
			cb(arg, QFS_EINVAL);
			return;
		}
		rv = raft_propose_conf(srv->raft, RAFT_CONF_ADD_LEARNER, id, (uint8_t *)ctx,
				       (size_t)n + 1);
	} else if (!b) {
		cb(arg, QFS_ENOENT);
		return;
	} else if (op == SERVER_LEADER_TRANSFER) {
		rv = raft_transfer(srv->raft, id);
	} else {
		rv = raft_propose_conf(srv->raft,
				       op == SERVER_MEMBER_PROMOTE ? RAFT_CONF_PROMOTE
								   : RAFT_CONF_REMOVE,
				       id, NULL, 0);
	}
	if (rv || !(mo = calloc(1, sizeof(*mo)))) {
		cb(arg, rv ? rv : QFS_ENOMEM);
		return;
	}
	*mo = (struct member_op){op, id, cb, arg, now_ms(srv) + srv->cfg->request_timeout_ms,
				 srv->member_ops};
	srv->member_ops = mo;
	process_ready(srv);
}

/* ---- Stop -------------------------------------------------------------------------- */

static void on_closed(uv_handle_t *h)
{
	(void)h;
}

static void maybe_stop(struct server *srv)
{
	int stopping;

	pthread_mutex_lock(&srv->mu);
	stopping = srv->stopping && !srv->submitted;
	pthread_mutex_unlock(&srv->mu);
	if (!stopping || srv->stopped || srv->snapshot_running)
		return;
	/* In-flight proposals finish (or time out) before the mount goes. */
	if (srv->proposals && !srv->wal_failed)
		return;
	while (srv->proposals) {
		struct work *w = srv->proposals;

		srv->proposals = w->next;
		finish_proposal(w, QFS_EIO, NULL);
	}
	while (srv->reads) {
		struct work *w = srv->reads;

		srv->reads = w->next;
		finish_read(w, QFS_ESHUTDOWN);
	}
	while (srv->member_ops) {
		struct member_op *m = srv->member_ops;

		srv->member_ops = m->next;
		m->cb(m->arg, QFS_ESHUTDOWN);
		free(m);
	}
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

/* ---- Recovery ------------------------------------------------------------------------- */

struct replay {
	struct raft_entry *entries; /* after the snapshot, contiguous */
	size_t n, cap;
	uint64_t first;             /* index of entries[0] */
	struct raft_hardstate hs;
};

static void replay_clear(struct replay *r)
{
	for (size_t i = 0; i < r->n; i++)
		raft_buf_unref(r->entries[i].buf);
	r->n = 0;
}

static int replay_record(void *arg, const struct wal_record *rec)
{
	struct replay *r = arg;
	struct raft_entry *e;

	if (rec->type == WAL_HARDSTATE) {
		r->hs = (struct raft_hardstate){rec->hs_term, rec->hs_vote, rec->hs_commit};
		return 0;
	}
	if (rec->type == WAL_SNAPSHOT) {
		replay_clear(r); /* the log restarts after it */
		r->first = rec->index + 1;
		return 0;
	}
	if (rec->len < 1 || rec->data[0] < RAFT_ENTRY_NORMAL || rec->data[0] > RAFT_ENTRY_NOOP)
		return QFS_ECORRUPT;
	if (rec->index < r->first) /* under a snapshot marker's floor */
		return 0;
	while (r->n && r->first + r->n > rec->index) /* replaces a suffix */
		raft_buf_unref(r->entries[--r->n].buf);
	if (r->n == 0)
		r->first = rec->index;
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 1024;
		struct raft_entry *grown = realloc(r->entries, cap * sizeof(*grown));

		if (!grown)
			return QFS_ENOMEM;
		r->entries = grown;
		r->cap = cap;
	}
	e = &r->entries[r->n];
	e->buf = raft_buf_new(rec->data + 1, rec->len - 1);
	if (!e->buf)
		return QFS_ENOMEM;
	e->index = rec->index;
	e->term = rec->term;
	e->type = rec->data[0];
	e->data = rec->len > 1 ? e->buf->data : NULL;
	e->len = rec->len - 1;
	r->n++;
	return 0;
}

static int open_data_dir(struct server *srv)
{
	const char *dir = srv->cfg->data_dir;
	char path[4200];

	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		fprintf(stderr, "quorumfs: cannot create data dir %s: %s\n", dir, strerror(errno));
		return QFS_EIO;
	}
	snprintf(path, sizeof(path), "%s/LOCK", dir);
	srv->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (srv->lock_fd < 0) {
		fprintf(stderr, "quorumfs: cannot open %s: %s\n", path, strerror(errno));
		return QFS_EIO;
	}
	if (flock(srv->lock_fd, LOCK_EX | LOCK_NB) != 0) {
		fprintf(stderr, "quorumfs: data dir %s is in use by another quorumfs\n", dir);
		return QFS_EIO;
	}
	return 0;
}

/* Parses --initial-cluster "n1=HOST:PORT,n2=..." into members and the book;
 * with no flag the cluster is this member alone. */
static int initial_members(struct server *srv, struct raft_members *m)
{
	const char *ic = srv->cfg->initial_cluster;
	char *copy, *save = NULL, *tok;
	int rv = 0;

	memset(m, 0, sizeof(*m));
	if (!ic) {
		m->n = 1;
		m->m[0] = (struct raft_member){srv->member_id, true};
		return book_set(&srv->book, srv->member_id, srv->cfg->name,
				srv->cfg->listen_peer ? srv->cfg->listen_peer : "",
				srv->cfg->listen_client ? srv->cfg->listen_client : "");
	}
	if (!(copy = strdup(ic)))
		return QFS_ENOMEM;
	for (tok = strtok_r(copy, ",", &save); tok && !rv; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');
		struct sockaddr_storage sa;

		if (!eq || eq == tok || m->n == RAFT_MAX_MEMBERS ||
		    transport_addr_parse(eq + 1, &sa) != 0) {
			fprintf(stderr, "quorumfs: --initial-cluster: '%s' is not NAME=IP:PORT\n", tok);
			rv = QFS_EINVAL;
			break;
		}
		*eq = 0;
		m->m[m->n++] = (struct raft_member){name_id(tok), true};
		rv = book_set(&srv->book, name_id(tok), tok, eq + 1, "");
	}
	free(copy);
	if (!rv && !book_find(&srv->book, srv->member_id)) {
		fprintf(stderr, "quorumfs: --initial-cluster does not name this member (%s)\n",
			srv->cfg->name);
		rv = QFS_EINVAL;
	}
	return rv;
}

/* Where the members are, until the log and snapshots say so. */
static void seed_peer(void *arg, uint64_t id, const char *name, const char *peer,
		      const char *client)
{
	struct server *srv = arg;

	book_set(&srv->book, id, name, peer, client);
}

/* --join: ask the cluster to add this (empty) member as a learner; the
 * leader then sends it everything. Already a member (a restart before the
 * first entry arrived): carry on. */
static int join(struct server *srv)
{
	char err[512];
	int rv = cli_member_add_learner(srv->cfg->join, srv->cfg->name, srv->cfg->listen_peer,
					srv->cfg->listen_client ? srv->cfg->listen_client : "",
					srv->cfg->request_timeout_ms * 2, err, sizeof(err));

	if (rv == QFS_EEXIST) {
		LOG_INFO("--join: %s is a member already", srv->cfg->name);
	} else if (rv) {
		fprintf(stderr, "quorumfs: --join %s: %s\n", srv->cfg->join,
			err[0] ? err : qfs_strerror(rv));
		return rv;
	} else {
		LOG_INFO("--join: added to the cluster at %s as a learner", srv->cfg->join);
	}
	rv = cli_member_peers(srv->cfg->join, srv->cfg->request_timeout_ms, seed_peer, srv, err,
			      sizeof(err));
	if (rv)
		fprintf(stderr, "quorumfs: --join %s: cannot list the members: %s\n",
			srv->cfg->join, err[0] ? err : qfs_strerror(rv));
	return rv;
}

static void raft_opts(struct server *srv, struct raft_options *o)
{
	raft_options_default(o, srv->member_id);
	o->heartbeat_ticks = 1;
	o->election_ticks = (unsigned)(srv->cfg->election_ms / srv->cfg->heartbeat_ms);
	o->rand_seed = srv->member_id ^ (uint64_t)time(NULL) ^ (uint64_t)getpid() << 32;
	o->max_msg_bytes = srv->cfg->max_value_bytes + 4096;
	o->stamp_offset = ENTRY_TIME_OFFSET; /* entry times (mtime, leases) are leader time */
	o->snapshot_chunk = 1u << 20;
}

static int recover(struct server *srv)
{
	char errmsg[1024] = "";
	struct replay r = {.first = 1};
	struct raft_snapshot snap = {0};
	struct raft_restore rs = {0};
	struct raft_options o;
	struct raft_members init;
	struct wal *wal = NULL;
	uint8_t *image = NULL;
	size_t len = 0;
	bool fresh;
	int rv;

	rv = snapfile_load(srv->cfg->data_dir, &snap.index, &snap.term, &image, &len, errmsg,
			   sizeof(errmsg));
	if (rv == 0) {
		rv = image_load(srv, image, len, &snap.members);
		if (rv != 0) {
			fprintf(stderr, "quorumfs: snapshot at index %llu in %s/snap: %s\n",
				(unsigned long long)snap.index, srv->cfg->data_dir,
				qfs_strerror(rv));
			goto out;
		}
		snap.data = image;
		snap.len = len;
		srv->snapshot_index = snap.index;
		r.first = snap.index + 1;
	} else if (rv != QFS_ENOENT) {
		fprintf(stderr, "quorumfs: %s\n", errmsg[0] ? errmsg : qfs_strerror(rv));
		goto out;
	}
	rv = wal_open(srv->cfg->data_dir, snap.index, replay_record, &r, &wal, errmsg,
		      sizeof(errmsg));
	if (rv != 0) {
		fprintf(stderr, "quorumfs: %s\n", errmsg[0] ? errmsg : qfs_strerror(rv));
		goto out;
	}
	if (r.n && r.first != snap.index + 1) {
		fprintf(stderr, "quorumfs: %s/wal: the log starts at entry %llu but the snapshot "
				"ends at %llu; refusing to start\n",
			srv->cfg->data_dir, (unsigned long long)r.first,
			(unsigned long long)snap.index);
		rv = QFS_ECORRUPT;
		goto out;
	}
	fresh = !snap.index && !r.n && !r.hs.term;
	rs = (struct raft_restore){r.hs, snap.index ? &snap : NULL, r.entries, r.n};
	raft_opts(srv, &o);
	rv = raft_create(&o, &rs, &srv->raft);
	if (rv)
		goto out;
	if (fresh && !srv->cfg->join) {
		if ((rv = initial_members(srv, &init)) || (rv = raft_bootstrap(srv->raft, &init)))
			goto out;
	} else if (fresh && (rv = join(srv))) {
		goto out;
	} else if (fresh || !book_find(&srv->book, srv->member_id)) {
		initial_members(srv, &init); /* addresses to reach peers until published */
	}
	LOG_INFO("recovered: snapshot index %llu, %zu log entries, term %llu",
		 (unsigned long long)snap.index, r.n, (unsigned long long)r.hs.term);
	rv = syncer_create(&srv->loop, srv->cfg->data_dir, wal, on_durable, srv, &srv->syncer);
	if (rv == 0)
		wal = NULL;
out:
	if (wal)
		wal_close(wal);
	replay_clear(&r);
	free(r.entries);
	free(image);
	return rv;
}

/* ---- Lifecycle ------------------------------------------------------------------------- */

static int start_transport(struct server *srv)
{
	struct transport_config tc = {
	    .self_id = srv->member_id,
	    .cluster_id = srv->cluster_id,
	    .listen_addr = srv->cfg->listen_peer,
	    .cb = {on_frame, on_peer_state, srv},
	    .max_frame = srv->cfg->max_value_bytes + (2u << 20),
	};

	if (!srv->cfg->listen_peer)
		return 0;
	return transport_create(&srv->loop, &tc, &srv->transport);
}

int server_create(const struct config *cfg, struct server **out)
{
	struct store_config scfg = {cfg->quota_bytes, cfg->max_value_bytes};
	struct server *srv = calloc(1, sizeof(*srv));
	struct raft_status st;
	int rv;

	if (!srv)
		return QFS_ENOMEM;
	srv->cfg = cfg;
	srv->lock_fd = -1;
	srv->member_id = name_id(cfg->name);
	/* Request ids must grow across restarts too (the dedup table drops an
	 * id at or below one it saw): start from the clock, in microseconds. */
	{
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		srv->next_request = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
	}
	srv->cluster_id = name_id(cfg->cluster_token ? cfg->cluster_token : "quorumfs");
	raft_dedup_init(&srv->dedup);
	pthread_mutex_init(&srv->mu, NULL);
	pthread_rwlock_init(&srv->lock, NULL);
	uv_loop_init(&srv->loop);
	if ((rv = open_data_dir(srv)) || (rv = store_create(&scfg, &srv->store)))
		goto err;
	if ((rv = recover(srv)))
		goto err;
	if ((rv = start_transport(srv))) {
		fprintf(stderr, "quorumfs: cannot listen for peers on %s\n", cfg->listen_peer);
		goto err;
	}
	sync_peers(srv);
	uv_async_init(&srv->loop, &srv->wake, on_wake);
	srv->wake.data = srv;
	uv_timer_init(&srv->loop, &srv->ticker);
	srv->ticker.data = srv;
	uv_timer_start(&srv->ticker, on_tick, cfg->heartbeat_ms, cfg->heartbeat_ms);
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
	process_ready(srv);
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
	if (srv->lock_fd >= 0)
		close(srv->lock_fd);
	raft_dedup_close(&srv->dedup);
	pthread_rwlock_destroy(&srv->lock);
	pthread_mutex_destroy(&srv->mu);
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
		maybe_stop(srv);
		uv_run(&srv->loop, UV_RUN_DEFAULT);
	}
	uv_loop_close(&srv->loop);
	raft_buf_unref(srv->install.buf);
	raft_destroy(srv->raft);
	store_destroy(srv->store);
	raft_dedup_close(&srv->dedup);
	close(srv->lock_fd);
	pthread_rwlock_destroy(&srv->lock);
	pthread_mutex_destroy(&srv->mu);
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

static const char *role_name(const struct view *v)
{
	if (v->learner)
		return "learner";
	switch (v->role) {
	case RAFT_LEADER: return "leader";
	case RAFT_CANDIDATE:
	case RAFT_PRECANDIDATE: return "candidate";
	default: return "follower";
	}
}

void server_status(struct server *srv, struct server_status *st)
{
	const struct book_entry *leader;

	memset(st, 0, sizeof(*st));
	st->name = srv->cfg->name;
	st->member_id = srv->member_id;
	st->cluster_id = srv->cluster_id;
	st->quota_bytes = srv->cfg->quota_bytes;
	pthread_mutex_lock(&srv->mu);
	st->role = role_name(&srv->view);
	st->term = srv->view.term;
	st->commit_index = srv->view.commit;
	st->leader_id = srv->view.leader;
	leader = book_find(&srv->book_view, srv->view.leader);
	if (leader)
		snprintf(st->leader_name, sizeof(st->leader_name), "%s", leader->name);
	pthread_mutex_unlock(&srv->mu);
	server_rdlock(srv);
	st->applied_index = store_applied_index(srv->store);
	st->revision = store_revision(srv->store);
	st->compacted_revision = store_compacted_revision(srv->store);
	st->db_size = store_size(srv->store);
	st->keys = store_key_count(srv->store);
	st->snapshot_index = __atomic_load_n(&srv->snapshot_index, __ATOMIC_RELAXED);
	server_unlock(srv);
}

static void fill_member(const struct view *v, const struct book *b, const struct raft_member *m,
			struct server_member *out)
{
	const struct book_entry *e = book_find(b, m->id);

	memset(out, 0, sizeof(*out));
	out->id = m->id;
	out->voter = m->voter;
	out->leader = m->id == v->leader;
	if (e) {
		snprintf(out->name, sizeof(out->name), "%s", e->name);
		snprintf(out->peer_addr, sizeof(out->peer_addr), "%s", e->peer);
		snprintf(out->client_addr, sizeof(out->client_addr), "%s", e->client);
	}
}

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct server_member *)a)->name,
		      ((const struct server_member *)b)->name);
}

size_t server_members(struct server *srv, struct server_member *out, size_t max)
{
	size_t n = 0;

	pthread_mutex_lock(&srv->mu);
	for (uint32_t i = 0; i < srv->view.members.n && n < max; i++)
		fill_member(&srv->view, &srv->book_view, &srv->view.members.m[i], &out[n++]);
	pthread_mutex_unlock(&srv->mu);
	qsort(out, n, sizeof(*out), by_name);
	return n;
}

uint64_t server_lease_id_new(void)
{
	uint64_t id = 0;

	while (id == 0) {
		if (getrandom(&id, sizeof(id), 0) != sizeof(id))
			id = (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
		id &= SERVER_LEASE_ID_MASK;
	}
	return id;
}

int64_t server_lease_min_ttl_ms(const struct server *srv)
{
	return (int64_t)srv->cfg->election_ms * 3 / 2;
}

bool server_reads_local(struct server *srv)
{
	bool local;

	pthread_mutex_lock(&srv->mu);
	local = srv->view.role == RAFT_LEADER && srv->view.members.n == 1;
	pthread_mutex_unlock(&srv->mu);
	return local;
}

int server_leader(struct server *srv, struct server_member *out)
{
	int rv = QFS_ENOENT;

	pthread_mutex_lock(&srv->mu);
	for (uint32_t i = 0; i < srv->view.members.n; i++) {
		if (srv->view.members.m[i].id == srv->view.leader && srv->view.leader) {
			fill_member(&srv->view, &srv->book_view, &srv->view.members.m[i], out);
			rv = 0;
		}
	}
	pthread_mutex_unlock(&srv->mu);
	return rv;
}
