/*
 * The client port (see client_port.h): a libuv TCP listener on the member's
 * loop thread serving client_proto.h frames.
 *
 * Leases (LEASE_*, PUT_LEASE) are transactions of the store's lease ops
 * proposed like any write; the member picks new lease ids and enforces the
 * minimum ttl (1.5 x its --election-ms), which a client cannot know.
 *
 * WATCH turns a connection into an event stream; see "watches" below for
 * how a watcher is fed and bounded.
 *
 * A connection answers one request at a time: reading stops while a request
 * is in hand and resumes once its response is written, so a connection
 * buffers at most one frame (bounded by the member's --max-value-bytes plus
 * headroom) and one response. Requests that wait on the server (read
 * barriers, proposals, membership changes) hold a reference on their
 * connection, and connections on the port, so a callback that arrives after
 * the connection or the port closed finds its memory intact, sees the
 * `closing` flag and only drops its reference.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "../common/errors.h"
#include "../common/log.h"
#include "../raft/transport.h"
#include "client_port.h"
#include "client_proto.h"

_Static_assert(CLIENT_PROTO_NAME_MAX == SERVER_NAME_MAX, "member names fit both ways");
_Static_assert(CLIENT_PROTO_ADDR_MAX == SERVER_ADDR_MAX, "addresses fit both ways");

#define READ_CHUNK (64u << 10)
#define IDLE_BUFFER_MAX (256u << 10) /* keep at most this much between frames */
#define CONN_NAME_MAX 64

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

struct watch;

struct conn {
	struct client_port *port;
	struct conn *prev, *next; /* port->conns, until freed */
	uv_tcp_t tcp;
	uv_write_t wr;
	struct qbuf out; /* the response being written */
	uint8_t *in;	 /* received bytes not yet consumed */
	size_t in_len, in_cap;
	struct client_hdr hdr;
	bool have_hdr;
	size_t discard; /* bytes of an oversized PUT still to skip */
	bool busy;	/* a request is being answered */
	bool reading;
	bool closing;
	int refs;	     /* the handle, plus one per request waiting on the server */
	struct watch *watch; /* after a WATCH request: the stream's state */
	char name[CONN_NAME_MAX];
};

struct client_port {
	struct server *srv;
	uv_loop_t *loop;
	uv_tcp_t listener;
	struct conn *conns;
	unsigned nconns;    /* open, not closing */
	unsigned handles;   /* open handles (listener and connections) */
	int refs;	    /* the owner, plus one per connection not yet freed */
	size_t max_payload; /* a request's bound */
	int port;
	bool closing;
	bool listening; /* registered as a revision listener */
	uint64_t max_lag;
};

/* A request waiting on the server. */
struct op {
	struct conn *c;
	uint8_t type;
	uint32_t flags;
	uint64_t rev;
	bool then_promote; /* MEMBER_ADD of a voter: add as a learner, then promote */
	bool promoting;
	struct server_member m;
	char *key, *after;
	uint64_t lease_id;	   /* LEASE_*, PUT_LEASE; LEASE_LIST: after */
	int64_t ttl_ms;		   /* LEASE_GRANT, PUT_LEASE with a new lease */
	enum store_op_type ops[3]; /* the transaction's ops, to name the one that failed */
	size_t nops;
};

/* ---- lifetime ---------------------------------------------------------------- */

static void port_unref(struct client_port *p)
{
	if (--p->refs == 0)
		free(p);
}

static void watch_free(struct watch *w);

static void conn_unref(struct conn *c)
{
	struct client_port *p = c->port;

	if (--c->refs > 0)
		return;
	if (c->prev)
		c->prev->next = c->next;
	else
		p->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	free(c->in);
	qbuf_close(&c->out);
	watch_free(c->watch);
	free(c);
	port_unref(p);
}

static void on_conn_closed(uv_handle_t *h)
{
	struct conn *c = h->data;

	c->port->handles--;
	conn_unref(c);
}

static void conn_close(struct conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	c->port->nconns--;
	uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

/* A protocol violation: one log line, then only this connection goes. */
static void conn_reject(struct conn *c, const char *why)
{
	LOG_WARN("client port: closing connection from %s: %s", c->name, why);
	conn_close(c);
}

static void op_free(struct op *op)
{
	conn_unref(op->c);
	free(op->key);
	free(op->after);
	free(op);
}

static void respond_err(struct conn *c, uint8_t type, int status);

/* A request in hand that waits for the server: holds a reference on its
 * connection. NULL after answering ENOMEM. */
static struct op *op_new(struct conn *c, const struct client_req *r)
{
	struct op *op = calloc(1, sizeof(*op));

	if (!op) {
		respond_err(c, r->type, QFS_ENOMEM);
		return NULL;
	}
	op->c = c;
	c->refs++;
	op->type = r->type;
	op->flags = r->flags;
	return op;
}

/* ---- responses ---------------------------------------------------------------- */

static void process(struct conn *c);

static void on_write(uv_write_t *req, int status)
{
	struct conn *c = req->data;

	qbuf_close(&c->out);
	if (c->closing)
		return;
	if (status < 0) {
		LOG_DEBUG("client port: write to %s failed: %s", c->name, uv_strerror(status));
		conn_close(c);
		return;
	}
	c->busy = false;
	process(c);
}

/* Sends the frame in b (taken over) as the answer to the request in hand. */
static void respond(struct conn *c, struct qbuf *b, int rv)
{
	uv_buf_t buf;

	if (c->closing) {
		qbuf_close(b);
		return;
	}
	if (rv) {
		/* Encoding failed (no memory): nothing sensible can be sent
		 * in its place, and the client must not wait forever. */
		LOG_WARN("client port: cannot answer %s: %s", c->name, qfs_strerror(rv));
		qbuf_close(b);
		conn_close(c);
		return;
	}
	c->out = *b;
	qbuf_init(b);
	buf = uv_buf_init((char *)c->out.data, (unsigned)c->out.len);
	c->wr.data = c;
	rv = uv_write(&c->wr, (uv_stream_t *)&c->tcp, &buf, 1, on_write);
	if (rv) {
		LOG_DEBUG("client port: write to %s failed: %s", c->name, uv_strerror(rv));
		qbuf_close(&c->out);
		conn_close(c);
	}
}

static void respond_err_msg(struct conn *c, uint8_t type, int err, const char *msg)
{
	struct server_member leader;
	const char *lname = "", *laddr = "";
	struct qbuf b;

	if (err == QFS_ENOTLEADER && server_leader(c->port->srv, &leader) == 0) {
		lname = leader.name;
		laddr = leader.client_addr;
	}
	qbuf_init(&b);
	respond(c, &b, client_proto_err_encode(&b, type, err, msg, lname, laddr));
}

static void respond_err(struct conn *c, uint8_t type, int err)
{
	const char *msg = qfs_strerror(err);

	if (err == QFS_ETIMEDOUT)
		msg = "request timed out: no quorum or leader unreachable";
	respond_err_msg(c, type, err, msg);
}

/* A key store_key_check() refused, or the root given to DEL. */
static void respond_bad_key(struct conn *c, uint8_t type, int err)
{
	const char *msg = qfs_strerror(err);

	if (err == QFS_EINVAL)
		msg = "bad key: an absolute path without empty, '.' or '..' components or a "
		      "trailing '/'";
	else if (err == QFS_ENAMETOOLONG)
		msg = "key too long (a component over 255 bytes or the key over 4096)";
	else if (err == QFS_EPERM && type == CLIENT_REQ_DEL)
		msg = "the root directory cannot be deleted";
	else if (err == QFS_EPERM)
		msg = "keys under " STORE_RESERVED_PREFIX " are reserved";
	respond_err_msg(c, type, err, msg);
}

/* ---- STATUS, MEMBER_LIST -------------------------------------------------------- */

static void handle_status(struct conn *c)
{
	struct server_status s;
	struct client_status st;
	struct qbuf b;

	server_status(c->port->srv, &s);
	st = (struct client_status){
	    .name = s.name ? s.name : "",
	    .member_id = s.member_id,
	    .cluster_id = s.cluster_id,
	    .role = s.role ? s.role : "",
	    .term = s.term,
	    .commit_index = s.commit_index,
	    .applied_index = s.applied_index,
	    .leader_id = s.leader_id,
	    .leader_name = s.leader_name,
	    .revision = s.revision,
	    .compacted_revision = s.compacted_revision,
	    .db_size = s.db_size,
	    .quota_bytes = s.quota_bytes,
	    .keys = s.keys,
	    .snapshot_index = s.snapshot_index,
	};
	qbuf_init(&b);
	respond(c, &b, client_proto_status_encode(&b, &st));
}

static void handle_member_list(struct conn *c)
{
	struct server_member *sm = NULL;
	struct client_member *cm = NULL;
	size_t cap = 16, n = 0;
	struct qbuf b;
	int rv = QFS_ENOMEM;

	/* The configuration may grow between calls: ask until it fits. */
	for (;;) {
		struct server_member *grown = realloc(sm, cap * sizeof(*sm));

		if (!grown)
			goto out;
		sm = grown;
		n = server_members(c->port->srv, sm, cap);
		if (n < cap)
			break;
		cap *= 2;
	}
	cm = calloc(n ? n : 1, sizeof(*cm));
	if (!cm)
		goto out;
	for (size_t i = 0; i < n; i++)
		cm[i] = (struct client_member){sm[i].id,	  sm[i].name,  sm[i].peer_addr,
					       sm[i].client_addr, sm[i].voter, sm[i].leader};
	qbuf_init(&b);
	respond(c, &b, client_proto_members_encode(&b, cm, n));
	rv = 0;
out:
	free(cm);
	free(sm);
	if (rv)
		respond_err(c, CLIENT_REQ_MEMBER_LIST, rv);
}

/* ---- membership ------------------------------------------------------------------ */

static void member_failed(struct op *op, int err, bool promoting)
{
	char msg[512];
	const char *name = op->m.name;

	switch (err) {
	case QFS_EEXIST:
		snprintf(msg, sizeof(msg), "member %s already exists", name);
		break;
	case QFS_ENOENT:
		snprintf(msg, sizeof(msg), "no member named %s", name);
		break;
	case QFS_EINVAL:
		if (op->type == CLIENT_REQ_MEMBER_ADD && !promoting)
			snprintf(msg, sizeof(msg), "bad member name or peer address");
		else if (op->type == CLIENT_REQ_MEMBER_REMOVE)
			snprintf(msg, sizeof(msg), "cannot remove %s: it is the last voter", name);
		else if (op->type == CLIENT_REQ_LEADER_TRANSFER)
			snprintf(msg, sizeof(msg), "%s cannot take the lead (not a voter?)", name);
		else
			snprintf(msg, sizeof(msg), "%s is not a learner", name);
		break;
	default:
		snprintf(msg, sizeof(msg), "%s",
			 err == QFS_ETIMEDOUT ? "request timed out: no quorum or leader unreachable"
					      : qfs_strerror(err));
		break;
	}
	if (promoting) {
		char full[CLIENT_PROTO_MSG_MAX + 1];

		snprintf(full, sizeof(full), "added %s as a learner, but promoting it failed: %s",
			 name, msg);
		respond_err_msg(op->c, op->type, err, full);
	} else {
		respond_err_msg(op->c, op->type, err, msg);
	}
}

static void on_member_done(void *arg, int err)
{
	struct op *op = arg;
	struct qbuf b;

	if (op->c->closing)
		goto out;
	if (err) {
		member_failed(op, err, op->promoting);
		goto out;
	}
	if (op->then_promote) {
		/* Raft adds voters in two steps (learner, then promote) so a
		 * new member catches up before it counts toward quorum. */
		op->then_promote = false;
		op->promoting = true;
		server_member_change(op->c->port->srv, SERVER_MEMBER_PROMOTE, &op->m,
				     on_member_done, op);
		return;
	}
	qbuf_init(&b);
	respond(op->c, &b, client_proto_ok_encode(&b, op->type));
out:
	op_free(op);
}

static void handle_member(struct conn *c, const struct client_req *r)
{
	struct op *op = op_new(c, r);
	enum server_member_op sop;

	if (!op)
		return;
	/* The decoder bounded the lengths to what these fields hold. */
	snprintf(op->m.name, sizeof(op->m.name), "%s", r->name);
	switch (r->type) {
	case CLIENT_REQ_MEMBER_ADD:
		snprintf(op->m.peer_addr, sizeof(op->m.peer_addr), "%s", r->peer_addr);
		snprintf(op->m.client_addr, sizeof(op->m.client_addr), "%s", r->client_addr);
		op->then_promote = !r->learner;
		sop = SERVER_MEMBER_ADD_LEARNER;
		break;
	case CLIENT_REQ_MEMBER_PROMOTE:
		sop = SERVER_MEMBER_PROMOTE;
		break;
	case CLIENT_REQ_MEMBER_REMOVE:
		sop = SERVER_MEMBER_REMOVE;
		break;
	default:
		sop = SERVER_LEADER_TRANSFER;
		break;
	}
	/* m lives in op until the callback, whatever the server keeps. */
	server_member_change(c->port->srv, sop, &op->m, on_member_done, op);
}

/* ---- GET ---------------------------------------------------------------------- */

struct page {
	struct client_get_enc g;
	const char *after; /* NULL once passed */
	size_t bytes;
	bool more;
};

static int page_add(void *arg, const struct store_kv *kv)
{
	struct page *pg = arg;
	struct client_kv ck;
	size_t size;

	if (pg->after) {
		if (strcmp(kv->key, pg->after) == 0)
			pg->after = NULL;
		return 0;
	}
	ck = (struct client_kv){kv->key,     (uint8_t)kv->type, kv->mode,	 kv->create_rev,
				kv->mod_rev, kv->version,	kv->value->data, kv->value->len};
	size = client_proto_kv_size(&ck);
	if (pg->g.n > 0 && pg->bytes + size > CLIENT_PROTO_PAGE_BYTES) {
		pg->more = true;
		return 1;
	}
	client_proto_get_add(&pg->g, &ck);
	pg->bytes += size;
	return 0;
}

static void get_failed(struct conn *c, struct store *s, uint64_t rev, int err)
{
	char msg[CLIENT_PROTO_MSG_MAX + 1];

	if (err == QFS_ECOMPACTED)
		snprintf(msg, sizeof(msg),
			 "revision %" PRIu64 " has been compacted (oldest readable: %" PRIu64 ")",
			 rev, store_compacted_revision(s));
	else if (err == QFS_EFUTUREREV)
		snprintf(msg, sizeof(msg),
			 "revision %" PRIu64 " is not yet reached (current: %" PRIu64 ")", rev,
			 store_revision(s));
	else
		snprintf(msg, sizeof(msg), "%s", qfs_strerror(err));
	respond_err_msg(c, CLIENT_REQ_GET, err, msg);
}

/* The loop thread is the store's only writer: it reads without the lock. */
static void get_read(struct op *op)
{
	struct store *s = server_store(op->c->port->srv);
	uint64_t rev = op->rev ? op->rev : store_revision(s);
	struct page pg = {.after = op->after[0] ? op->after : NULL};
	struct qbuf b;
	int rv;

	qbuf_init(&b);
	client_proto_get_begin(&pg.g, &b, rev);
	if (op->flags & CLIENT_GET_PREFIX) {
		rv = store_range(s, op->key, rev, page_add, &pg);
		if (rv == 1)
			rv = 0;
		/* An absent prefix is an empty listing, as in etcd. */
		if (rv == QFS_ENOENT)
			rv = 0;
	} else {
		struct store_kv kv;

		rv = store_get(s, op->key, rev, &kv);
		if (!rv)
			rv = page_add(&pg, &kv);
	}
	if (rv) {
		qbuf_close(&b);
		get_failed(op->c, s, rev, rv);
		return;
	}
	rv = client_proto_get_end(&pg.g, pg.more);
	respond(op->c, &b, rv);
}

static void on_read_ready(void *arg, int err)
{
	struct op *op = arg;

	if (op->c->closing)
		goto out;
	if (err)
		respond_err(op->c, CLIENT_REQ_GET, err);
	else
		get_read(op);
out:
	op_free(op);
}

static void handle_get(struct conn *c, const struct client_req *r)
{
	struct op *op = op_new(c, r);
	int rv;

	if (!op)
		return;
	op->rev = r->rev;
	op->key = strdup(r->key);
	op->after = strdup(r->after);
	rv = op->key && op->after ? store_key_check(r->key) : QFS_ENOMEM;
	if (rv && rv != QFS_ENOMEM) {
		respond_bad_key(c, r->type, rv);
		op_free(op);
		return;
	}
	if (!rv)
		rv = server_read_barrier(c->port->srv, on_read_ready, op);
	if (rv) {
		respond_err(c, r->type, rv);
		op_free(op);
	}
}

/* ---- PUT, DEL ------------------------------------------------------------------- */

static void on_write_done(void *arg, int err, const struct store_result *res)
{
	struct op *op = arg;
	struct qbuf b;

	if (op->c->closing)
		goto out;
	if (!err)
		err = res->err;
	if (err) {
		respond_err(op->c, op->type, err);
		goto out;
	}
	qbuf_init(&b);
	respond(op->c, &b, client_proto_rev_encode(&b, op->type, res->revision));
out:
	op_free(op);
}

static void handle_write(struct conn *c, const struct client_req *r)
{
	const struct config *cfg = server_config(c->port->srv);
	struct store_op sop = {.key = r->key};
	struct entry e = {.type = ENTRY_TXN};
	struct op *op;
	int rv;

	/* Fail what the store would refuse before it costs a log entry. */
	rv = store_key_check(r->key);
	if (!rv && r->type == CLIENT_REQ_DEL && strcmp(r->key, "/") == 0)
		rv = QFS_EPERM;
	if (rv) {
		respond_bad_key(c, r->type, rv);
		return;
	}
	if (r->type == CLIENT_REQ_PUT && cfg->max_value_bytes &&
	    r->value_len > cfg->max_value_bytes)
		rv = QFS_EFBIG;
	if (rv) {
		respond_err(c, r->type, rv);
		return;
	}
	if (r->type == CLIENT_REQ_PUT) {
		sop.type = STORE_OP_PUT;
		sop.flags = STORE_PUT_MKPARENTS;
		sop.ftype = STORE_FILE;
		sop.mode = 0644;
		sop.value = r->value;
		sop.value_len = r->value_len;
	} else {
		sop.type = STORE_OP_DELETE;
		sop.flags = (r->flags & CLIENT_DEL_PREFIX) ? STORE_DEL_RECURSIVE : 0;
	}
	e.txn.then_ops = &sop;
	e.txn.nthen = 1;
	op = op_new(c, r);
	if (!op)
		return;
	/* server_propose encodes e before returning: r may go after this. */
	rv = server_propose(c->port->srv, &e, on_write_done, op);
	if (rv) {
		respond_err(c, r->type, rv);
		op_free(op);
	}
}

/* ---- leases --------------------------------------------------------------------- */

static int64_t wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The ttl rule of SPEC 3.5, with the numbers in the refusal: a client
 * cannot know this member's election timeout. 0, or answered. */
static int lease_ttl_check(struct conn *c, uint8_t type, int64_t ttl_ms)
{
	const struct config *cfg = server_config(c->port->srv);
	int64_t min = server_lease_min_ttl_ms(c->port->srv);
	char msg[CLIENT_PROTO_MSG_MAX + 1], a[32], b[32];

	if (ttl_ms > 0 && ttl_ms <= STORE_LEASE_TTL_MAX_MS && ttl_ms >= min)
		return 0;
	if (ttl_ms <= 0 || ttl_ms > STORE_LEASE_TTL_MAX_MS)
		snprintf(msg, sizeof(msg), "a ttl is a number of seconds above 0 and at most %s",
			 client_proto_secs_str(STORE_LEASE_TTL_MAX_MS, a, sizeof(a)));
	else
		snprintf(msg, sizeof(msg),
			 "ttl %s s is below the minimum of %s s (1.5 x --election-ms %" PRIu64 ")",
			 client_proto_secs_str(ttl_ms, a, sizeof(a)), client_proto_secs_str(min, b, sizeof(b)),
			 (uint64_t)cfg->election_ms);
	respond_err_msg(c, type, QFS_EINVAL, msg);
	return QFS_EINVAL;
}

static void respond_no_lease(struct conn *c, uint8_t type, uint64_t id)
{
	char msg[CLIENT_PROTO_MSG_MAX + 1];

	snprintf(msg, sizeof(msg), "lease %" PRIx64 " not found (expired or revoked)", id);
	respond_err_msg(c, type, QFS_ENOENT, msg);
}

/* A transaction that failed in the store: op names which of its ops. */
static void lease_failed(struct op *op, int err, uint32_t failed_op)
{
	enum store_op_type t = failed_op < op->nops ? op->ops[failed_op] : 0;
	char msg[CLIENT_PROTO_MSG_MAX + 1];

	if (err == QFS_ENOENT && (t == STORE_OP_LEASE_RENEW || t == STORE_OP_LEASE_REVOKE ||
				  t == STORE_OP_LEASE_ATTACH)) {
		respond_no_lease(op->c, op->type, op->lease_id);
	} else if (err == QFS_EEXIST && t == STORE_OP_LEASE_GRANT) {
		snprintf(msg, sizeof(msg),
			 "the new lease's random id %" PRIx64 " is taken; try again", op->lease_id);
		respond_err_msg(op->c, op->type, err, msg);
	} else {
		respond_err(op->c, op->type, err);
	}
}

static void on_lease_done(void *arg, int err, const struct store_result *res)
{
	struct op *op = arg;
	struct store *s = server_store(op->c->port->srv);
	struct store_lease l;
	struct qbuf b;

	if (op->c->closing)
		goto out;
	if (err) {
		respond_err(op->c, op->type, err);
		goto out;
	}
	if (res->err) {
		lease_failed(op, res->err, res->failed_op);
		goto out;
	}
	qbuf_init(&b);
	switch (op->type) {
	case CLIENT_REQ_LEASE_GRANT:
		err = client_proto_lease_encode(&b, op->type, op->lease_id, op->ttl_ms);
		break;
	case CLIENT_REQ_LEASE_RENEW:
		/* Applied just now on this thread: the lease is there unless
		 * something else in the same apply batch ended it. */
		if (store_lease_get(s, op->lease_id, &l) != 0) {
			qbuf_close(&b);
			respond_no_lease(op->c, op->type, op->lease_id);
			goto out;
		}
		err = client_proto_lease_encode(&b, op->type, op->lease_id, l.ttl_ms);
		break;
	case CLIENT_REQ_PUT_LEASE:
		err = client_proto_put_lease_encode(&b, res->revision, op->lease_id);
		break;
	default:
		err = client_proto_rev_encode(&b, op->type, res->revision);
		break;
	}
	respond(op->c, &b, err);
out:
	op_free(op);
}

static void handle_lease(struct conn *c, const struct client_req *r)
{
	const struct config *cfg = server_config(c->port->srv);
	struct store_op sops[3];
	struct entry e = {.type = ENTRY_TXN};
	uint64_t id = r->lease_id;
	size_t n = 0;
	struct op *op;
	int rv;

	switch (r->type) {
	case CLIENT_REQ_LEASE_GRANT:
		if (lease_ttl_check(c, r->type, r->ttl_ms))
			return;
		id = server_lease_id_new();
		sops[n++] = (struct store_op){
		    .type = STORE_OP_LEASE_GRANT, .lease_id = id, .ttl_ms = r->ttl_ms};
		break;
	case CLIENT_REQ_LEASE_RENEW:
	case CLIENT_REQ_LEASE_REVOKE:
		if (id == 0) { /* the store's "no lease": not worth a log entry */
			respond_no_lease(c, r->type, id);
			return;
		}
		sops[n++] = (struct store_op){.type = r->type == CLIENT_REQ_LEASE_RENEW
							  ? STORE_OP_LEASE_RENEW
							  : STORE_OP_LEASE_REVOKE,
					      .lease_id = id};
		break;
	default: /* PUT_LEASE */
		rv = store_key_check(r->key);
		if (rv) {
			respond_bad_key(c, r->type, rv);
			return;
		}
		if (cfg->max_value_bytes && r->value_len > cfg->max_value_bytes) {
			respond_err(c, r->type, QFS_EFBIG);
			return;
		}
		if ((id != 0) == (r->ttl_ms != 0)) {
			respond_err_msg(c, r->type, QFS_EINVAL,
					"a put with a lease takes either a lease id or a ttl");
			return;
		}
		if (r->ttl_ms) {
			if (lease_ttl_check(c, r->type, r->ttl_ms))
				return;
			id = server_lease_id_new();
			sops[n++] = (struct store_op){
			    .type = STORE_OP_LEASE_GRANT, .lease_id = id, .ttl_ms = r->ttl_ms};
		}
		/* As a plain PUT; see handle_write(). */
		sops[n++] = (struct store_op){.type = STORE_OP_PUT,
					      .key = r->key,
					      .flags = STORE_PUT_MKPARENTS,
					      .ftype = STORE_FILE,
					      .mode = 0644,
					      .value = r->value,
					      .value_len = r->value_len};
		sops[n++] =
		    (struct store_op){.type = STORE_OP_LEASE_ATTACH, .key = r->key, .lease_id = id};
		break;
	}
	op = op_new(c, r);
	if (!op)
		return;
	op->lease_id = id;
	op->ttl_ms = r->ttl_ms;
	op->nops = n;
	for (size_t i = 0; i < n; i++)
		op->ops[i] = sops[i].type;
	e.txn.then_ops = sops;
	e.txn.nthen = n;
	/* server_propose encodes e before returning: r may go after this. */
	rv = server_propose(c->port->srv, &e, on_lease_done, op);
	if (rv) {
		respond_err(c, r->type, rv);
		op_free(op);
	}
}

struct lease_page {
	struct client_leases_enc e;
	struct store *s;
	uint64_t after;
	bool keys;
	bool more;
	size_t bytes;	  /* of the page */
	size_t key_bytes; /* of the lease being added */
	int64_t now_ns;
};

static int lease_page_key(void *arg, const char *key)
{
	struct lease_page *pg = arg;
	size_t size = client_proto_lease_key_size(key);

	if (pg->key_bytes + size > CLIENT_PROTO_LEASE_KEY_BYTES)
		return 1; /* cut: the lease's key count says how many there are */
	client_proto_leases_add_key(&pg->e, key);
	pg->key_bytes += size;
	pg->bytes += size;
	return 0;
}

static int lease_page_add(void *arg, const struct store_lease *l)
{
	struct lease_page *pg = arg;
	int64_t left = l->expiry_ns - pg->now_ns;
	struct client_lease cl = {
	    .id = l->id,
	    .ttl_ms = l->ttl_ms,
	    /* Rounded up: a lease with 0.2 ms left has not expired. */
	    .remaining_ms = left > 0 ? left / 1000000 + (left % 1000000 != 0) : 0,
	    .nkeys = l->nkeys,
	};
	int rv;

	if (l->id <= pg->after)
		return 0;
	if (pg->e.n > 0 && pg->bytes >= CLIENT_PROTO_PAGE_BYTES) {
		pg->more = true;
		return 1;
	}
	client_proto_leases_add(&pg->e, &cl);
	pg->bytes += client_proto_lease_size();
	if (!pg->keys)
		return 0;
	pg->key_bytes = 0;
	rv = store_lease_keys(pg->s, l->id, lease_page_key, pg);
	return rv == 1 ? 0 : rv;
}

/* Loop thread, after the read barrier: reads the store without the lock. */
static void lease_list_read(struct op *op)
{
	struct lease_page pg = {.s = server_store(op->c->port->srv),
				.after = op->lease_id,
				.keys = (op->flags & CLIENT_LEASE_LIST_KEYS) != 0,
				.now_ns = wall_ns()};
	struct qbuf b;
	int rv;

	qbuf_init(&b);
	client_proto_leases_begin(&pg.e, &b, store_revision(pg.s));
	rv = store_lease_list(pg.s, lease_page_add, &pg);
	if (rv < 0) {
		qbuf_close(&b);
		respond_err(op->c, op->type, rv);
		return;
	}
	respond(op->c, &b, client_proto_leases_end(&pg.e, pg.more));
}

static void on_lease_list_ready(void *arg, int err)
{
	struct op *op = arg;

	if (op->c->closing)
		goto out;
	if (err)
		respond_err(op->c, op->type, err);
	else
		lease_list_read(op);
out:
	op_free(op);
}

static void handle_lease_list(struct conn *c, const struct client_req *r)
{
	struct op *op = op_new(c, r);
	int rv;

	if (!op)
		return;
	op->lease_id = r->lease_id;
	/* Linearizable like GET: a lease granted or revoked anywhere before
	 * the request is seen as such. */
	rv = server_read_barrier(c->port->srv, on_lease_list_ready, op);
	if (rv) {
		respond_err(c, r->type, rv);
		op_free(op);
	}
}

/* ---- watches --------------------------------------------------------------------
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
 * connection closes once that frame is written, or after WATCH_LINGER_MS.
 */

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
};

static void watch_free(struct watch *w)
{
	if (!w)
		return;
	qbuf_close(&w->queued);
	free(w->key);
	free(w);
}

static void watch_flush(struct conn *c);

static void on_watch_write(uv_write_t *req, int status)
{
	struct conn *c = req->data;
	struct watch *w = c->watch;

	qbuf_close(&c->out);
	w->writing = false;
	if (c->closing)
		return;
	if (status < 0) {
		LOG_DEBUG("client port: watcher %s gone: %s", c->name, uv_strerror(status));
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
	uv_buf_t buf;
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
	buf = uv_buf_init((char *)c->out.data, (unsigned)c->out.len);
	c->wr.data = c;
	w->writing = true;
	w->write_ms = uv_now(c->port->loop);
	rv = uv_write(&c->wr, (uv_stream_t *)&c->tcp, &buf, 1, on_watch_write);
	if (rv) {
		LOG_DEBUG("client port: write to watcher %s failed: %s", c->name, uv_strerror(rv));
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
			 err == QFS_ETIMEDOUT ? "request timed out: no quorum or leader unreachable"
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

static void handle_watch(struct conn *c, const struct client_req *r)
{
	struct watch *w;
	int rv = store_key_check(r->key);

	if (rv) {
		respond_bad_key(c, r->type, rv);
		return;
	}
	if (!c->port->listening) {
		respond_err_msg(c, r->type, QFS_EAGAIN, "watches are not available on this member");
		return;
	}
	w = calloc(1, sizeof(*w));
	if (!w || !(w->key = strdup(r->key))) {
		free(w);
		respond_err(c, r->type, QFS_ENOMEM);
		return;
	}
	w->prefix = (r->flags & CLIENT_WATCH_PREFIX) != 0;
	w->start = r->rev;
	qbuf_init(&w->queued);
	/* From here on the connection is a stream: busy for good. */
	c->watch = w;
	c->refs++;
	/* A read point first, so a watch begun on a follower starts from at
	 * least what the cluster had committed when it was asked. */
	rv = server_read_barrier(c->port->srv, on_watch_ready, c);
	if (rv)
		on_watch_ready(c, rv);
}

/* The port's revision listener: feeds every watcher. */
static void on_revision(void *arg, uint64_t revision)
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

/* ---- framing ------------------------------------------------------------------- */

static void handle(struct conn *c, const struct client_req *r)
{
	switch (r->type) {
	case CLIENT_REQ_STATUS:
		handle_status(c);
		break;
	case CLIENT_REQ_MEMBER_LIST:
		handle_member_list(c);
		break;
	case CLIENT_REQ_MEMBER_ADD:
	case CLIENT_REQ_MEMBER_REMOVE:
	case CLIENT_REQ_MEMBER_PROMOTE:
	case CLIENT_REQ_LEADER_TRANSFER:
		handle_member(c, r);
		break;
	case CLIENT_REQ_GET:
		handle_get(c, r);
		break;
	case CLIENT_REQ_WATCH:
		handle_watch(c, r);
		break;
	case CLIENT_REQ_LEASE_GRANT:
	case CLIENT_REQ_LEASE_RENEW:
	case CLIENT_REQ_LEASE_REVOKE:
	case CLIENT_REQ_PUT_LEASE:
		handle_lease(c, r);
		break;
	case CLIENT_REQ_LEASE_LIST:
		handle_lease_list(c, r);
		break;
	default:
		handle_write(c, r);
		break;
	}
}

static void consume(struct conn *c, size_t n)
{
	memmove(c->in, c->in + n, c->in_len - n);
	c->in_len -= n;
	if (c->in_len == 0 && c->in_cap > IDLE_BUFFER_MAX) {
		free(c->in);
		c->in = NULL;
		c->in_cap = 0;
	}
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* Reads only while no request is in hand: that bounds what a client can
 * make us buffer, and keeps responses in request order. A watcher is read
 * from only to notice that its client went away. */
static void update_reading(struct conn *c)
{
	bool want = (!c->busy || c->watch) && !c->closing;
	int rv;

	if (want == c->reading)
		return;
	if (want) {
		rv = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
		if (rv) {
			LOG_DEBUG("client port: cannot read from %s: %s", c->name, uv_strerror(rv));
			conn_close(c);
			return;
		}
	} else if (!c->closing) {
		uv_read_stop((uv_stream_t *)&c->tcp);
	}
	c->reading = want;
}

/* Takes whole frames out of the input while no request is in hand. */
static void process(struct conn *c)
{
	struct client_port *p = c->port;
	char why[96];

	while (!c->busy && !c->closing) {
		struct client_req req;
		size_t size;
		int rv;

		if (c->discard) {
			size = c->discard < c->in_len ? c->discard : c->in_len;
			consume(c, size);
			c->discard -= size;
			if (c->discard)
				break;
			continue;
		}
		if (!c->have_hdr) {
			if (c->in_len < CLIENT_PROTO_HDR_SIZE)
				break;
			rv = client_proto_hdr_decode(c->in, p->max_payload, &c->hdr);
			if (rv == QFS_EFBIG &&
			    (c->hdr.type == CLIENT_REQ_PUT ||
			     c->hdr.type == CLIENT_REQ_PUT_LEASE) &&
			    c->hdr.len <= CLIENT_PROTO_MAX_PAYLOAD) {
				/* A value over our --max-value-bytes is the client's
				 * mistake, not a broken stream: skip it, say why. */
				consume(c, CLIENT_PROTO_HDR_SIZE);
				c->discard = c->hdr.len;
				c->busy = true;
				respond_err(c, c->hdr.type, QFS_EFBIG);
				continue;
			}
			if (rv == QFS_EFBIG) {
				snprintf(why, sizeof(why),
					 "frame of %" PRIu32 " bytes over the limit", c->hdr.len);
				conn_reject(c, why);
				return;
			}
			if (rv || (c->hdr.type & CLIENT_PROTO_RESPONSE)) {
				conn_reject(c, "not a client protocol request (bad magic, version "
					       "or type)");
				return;
			}
			c->have_hdr = true;
		}
		size = CLIENT_PROTO_HDR_SIZE + (size_t)c->hdr.len;
		if (c->in_len < size)
			break;
		if (client_proto_crc_check(&c->hdr, c->in + CLIENT_PROTO_HDR_SIZE)) {
			conn_reject(c, "bad CRC");
			return;
		}
		if (client_proto_req_decode(c->hdr.type, c->in + CLIENT_PROTO_HDR_SIZE, c->hdr.len,
					    &req)) {
			snprintf(why, sizeof(why), "malformed request of type %u", c->hdr.type);
			conn_reject(c, why);
			return;
		}
		c->have_hdr = false;
		c->busy = true;
		handle(c, &req);
		consume(c, size);
		if (c->watch && c->in_len) {
			conn_reject(c, "data after WATCH");
			return;
		}
	}
	update_reading(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct conn *c = h->data;
	size_t want = c->in_len + READ_CHUNK;

	(void)suggested;
	/* The whole frame in one buffer; its length was checked already. */
	if (c->have_hdr && CLIENT_PROTO_HDR_SIZE + (size_t)c->hdr.len > want)
		want = CLIENT_PROTO_HDR_SIZE + (size_t)c->hdr.len;
	if (want > c->in_cap) {
		uint8_t *grown = realloc(c->in, want);

		if (!grown) {
			*buf = uv_buf_init(NULL, 0); /* read_cb gets UV_ENOBUFS */
			return;
		}
		c->in = grown;
		c->in_cap = want;
	}
	*buf = uv_buf_init((char *)c->in + c->in_len, (unsigned)(c->in_cap - c->in_len));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *c = s->data;

	(void)buf;
	if (c->closing)
		return;
	if (nread < 0) {
		if (nread != UV_EOF)
			LOG_DEBUG("client port: connection from %s: %s", c->name,
				  uv_strerror((int)nread));
		conn_close(c);
		return;
	}
	if (c->watch) {
		if (nread > 0)
			conn_reject(c, "data after WATCH");
		return;
	}
	c->in_len += (size_t)nread;
	process(c);
}

static void conn_name(uv_tcp_t *tcp, char *out, size_t len)
{
	struct sockaddr_storage ss;
	int sslen = sizeof(ss);
	char ip[INET6_ADDRSTRLEN] = "?";

	snprintf(out, len, "?");
	if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &sslen) != 0)
		return;
	if (ss.ss_family == AF_INET6) {
		uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof(ip));
		snprintf(out, len, "[%s]:%u", ip, ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
	} else if (ss.ss_family == AF_INET) {
		uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof(ip));
		snprintf(out, len, "%s:%u", ip, ntohs(((struct sockaddr_in *)&ss)->sin_port));
	}
}

static void on_connection(uv_stream_t *server, int status)
{
	struct client_port *p = server->data;
	struct conn *c;

	if (status < 0) {
		LOG_WARN("client port: accept failed: %s", uv_strerror(status));
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c || uv_tcp_init(p->loop, &c->tcp) != 0) {
		/* Without a handle to accept into, the kernel keeps the
		 * connection queued; it is retried on the next event. */
		LOG_WARN("client port: no memory for a connection");
		free(c);
		return;
	}
	c->port = p;
	c->tcp.data = c;
	c->refs = 1;
	qbuf_init(&c->out);
	p->refs++;
	p->handles++;
	p->nconns++;
	c->next = p->conns;
	if (p->conns)
		p->conns->prev = c;
	p->conns = c;
	uv_unref((uv_handle_t *)&c->tcp);
	if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
		conn_close(c);
		return;
	}
	conn_name(&c->tcp, c->name, sizeof(c->name));
	if (p->closing || p->nconns > CLIENT_PORT_MAX_CONNS) {
		if (!p->closing)
			LOG_WARN("client port: refusing %s: %u connections open", c->name,
				 p->nconns - 1);
		conn_close(c);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	update_reading(c);
}

/* ---- the port ------------------------------------------------------------------ */

int client_port_create(struct server *srv, const char *addr, struct client_port **out)
{
	const struct config *cfg = server_config(srv);
	struct sockaddr_storage ss;
	struct client_port *p;
	int namelen = sizeof(ss);
	int rv;

	*out = NULL;
	if (transport_addr_parse(addr, &ss) != 0) {
		LOG_ERROR("--listen-client %s: want IPV4:PORT or [IPV6]:PORT", addr);
		return QFS_EINVAL;
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		LOG_ERROR("client port: out of memory");
		return QFS_ENOMEM;
	}
	p->srv = srv;
	p->loop = server_loop(srv);
	p->refs = 1;
	p->max_payload = (cfg->max_value_bytes ? cfg->max_value_bytes : CLIENT_PROTO_MAX_PAYLOAD) +
			 CLIENT_PROTO_HEADROOM;
	/* Half the auto-compaction window: a watcher cancelled at that lag can
	 * still resume from where it stopped. */
	p->max_lag = cfg->auto_compact_revisions ? cfg->auto_compact_revisions / 2 : WATCH_MAX_LAG;
	if (p->max_lag == 0)
		p->max_lag = 1;
	if (p->max_payload > CLIENT_PROTO_MAX_PAYLOAD)
		p->max_payload = CLIENT_PROTO_MAX_PAYLOAD;
	rv = uv_tcp_init(p->loop, &p->listener);
	if (rv) {
		LOG_ERROR("client port: %s", uv_strerror(rv));
		free(p);
		return QFS_EIO;
	}
	p->listener.data = p;
	p->handles = 1;
	uv_unref((uv_handle_t *)&p->listener);
	rv = uv_tcp_bind(&p->listener, (struct sockaddr *)&ss, 0);
	if (!rv)
		rv = uv_listen((uv_stream_t *)&p->listener, 128, on_connection);
	if (!rv)
		rv = uv_tcp_getsockname(&p->listener, (struct sockaddr *)&ss, &namelen);
	if (rv) {
		LOG_ERROR("--listen-client %s: cannot listen: %s", addr, uv_strerror(rv));
		client_port_close(p);
		return QFS_EIO;
	}
	p->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						 : ((struct sockaddr_in *)&ss)->sin_port);
	if (server_add_revision_listener(srv, on_revision, p) == 0)
		p->listening = true;
	else
		LOG_WARN("client port: no revision listener slot left; WATCH will be refused");
	LOG_INFO("client port listening on %s", addr);
	*out = p;
	return 0;
}

int client_port_number(const struct client_port *p)
{
	return p->port;
}

static void on_listener_closed(uv_handle_t *h)
{
	struct client_port *p = h->data;

	p->handles--;
}

void client_port_close(struct client_port *p)
{
	if (!p)
		return;
	p->closing = true;
	if (p->listening)
		server_remove_revision_listener(p->srv, on_revision, p);
	p->listening = false;
	uv_close((uv_handle_t *)&p->listener, on_listener_closed);
	for (struct conn *c = p->conns; c; c = c->next)
		conn_close(c);
	/* Close callbacks (and cancelled writes) run in the next iteration;
	 * NOWAIT so nothing else the loop holds can keep us here. */
	while (p->handles > 0)
		uv_run(p->loop, UV_RUN_NOWAIT);
	port_unref(p);
}
