/*
 * The client port (see client_port.h): a libuv TCP listener on the member's
 * loop thread serving client_proto.h frames over streams (raft/stream.h:
 * plain TCP, or mutual TLS with --client-cert; the code here does not know
 * which: a TLS connection's user is its stream_peer_name()). This file is its
 * core: the listener, connections, framing, dispatch, responses and the
 * lifetime of all of them. The requests are served by client_admin.c
 * (STATUS, members), client_kv.c (GET, PUT, DEL), client_txn.c (TXN),
 * client_compact.c (COMPACT), client_lease.c (leases), client_watch.c
 * (WATCH, which turns a connection into an event stream) and
 * client_snapshot.c (SNAPSHOT, answered in chunks); client_auth.c decides
 * whether a request's user may make it before any of them sees it, and
 * serves AUTH_CHANGE and AUTH_LIST; client_conn.h is what they share.
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

#include "../common/errors.h"
#include "../common/log.h"
#include "../raft/transport.h"
#include "client_conn.h"

#define READ_CHUNK (64u << 10)
#define IDLE_BUFFER_MAX (256u << 10) /* keep at most this much between frames */

/*
 * Deadlines for a connection without a request in hand (a WATCH stream is
 * never in that state: it is busy for good and has its own flow control).
 * Without them a client that connects and sends nothing, or never finishes
 * its TLS handshake, holds one of CLIENT_PORT_MAX_CONNS slots for good.
 *
 * HELLO_MS: from accepting to a request header, TLS handshake included. The
 * CLI writes its request as soon as it is connected, so 10 s is ample for
 * a slow link or a loaded member, and a silent or half-open connection
 * gives its slot back soon.
 *
 * IDLE_MS: from the previous answer (or, once a header is in, from
 * accepting) to a whole request: 5 minutes. The CLI opens a connection per
 * request, so this only bounds clients that keep one open between
 * requests, and the time a request's body may take: a 64 MiB value (the
 * largest --max-value-bytes) needs under 2 Mbit/s. Abandoned connections
 * still go long before the kernel would notice them.
 */
/* Over CLIENT_PORT_MAX_CONNS, this many connections at a time have their
 * request answered that the member is full (each buffers one request and
 * waits at most HELLO_MS for it, like any other); more are closed at once. */
#define FULL_ANSWERS_MAX 16
#define FULL_MSG "too many client connections to this member; ask another or try again later"

#define HELLO_MS 10000
#define IDLE_MS (5 * 60 * 1000)
#define SWEEP_MS 1000 /* how often deadlines are checked: their resolution */
/* Tests only (docs/design.md, Test hooks): a shorter IDLE_MS. */
#define IDLE_MS_ENV "QFS_TEST_CLIENT_IDLE_MS"

/* ---- lifetime ---------------------------------------------------------------- */

static void port_unref(struct client_port *p)
{
	if (--p->refs == 0)
		free(p);
}

void conn_unref(struct conn *c)
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
	client_watch_free(c->watch);
	free(c);
	port_unref(p);
}

static void on_conn_closed(struct qfs_stream *s, void *arg)
{
	struct conn *c = arg;

	(void)s;
	c->port->handles--;
	conn_unref(c);
}

void conn_close(struct conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	if (c->refused)
		c->port->nrefused--;
	else
		c->port->nconns--;
	stream_close(c->s, on_conn_closed, c);
}

/* A protocol violation: one log line, then only this connection goes. */
static void conn_reject(struct conn *c, const char *why)
{
	LOG_WARN("client port: closing connection from %s: %s", c->name, why);
	conn_close(c);
}

void conn_op_free(struct op *op)
{
	conn_unref(op->c);
	free(op->key);
	free(op->after);
	free(op->memo);
	free(op);
}

struct op *conn_op_new(struct conn *c, const struct client_req *r)
{
	struct op *op = calloc(1, sizeof(*op));

	if (!op) {
		conn_respond_err(c, r->type, QFS_ENOMEM);
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

static void on_write(struct qfs_stream *s, void *arg, int status)
{
	struct conn *c = arg;

	(void)s;
	qbuf_close(&c->out);
	if (c->closing)
		return;
	if (status < 0) {
		LOG_DEBUG("client port: write to %s failed: %s", c->name, qfs_strerror(status));
		conn_close(c);
		return;
	}
	if (c->refused) {
		conn_close(c); /* it was told the member is full */
		return;
	}
	c->busy = false;
	c->served = true;
	c->idle_since = uv_now(c->port->loop);
	process(c);
}

int conn_write_out(struct conn *c, qfs_stream_write_cb cb, void *arg)
{
	uv_buf_t buf = uv_buf_init((char *)c->out.data, (unsigned)c->out.len);

	return stream_write(c->s, &buf, 1, cb, arg);
}

void conn_respond(struct conn *c, struct qbuf *b, int rv)
{
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
	rv = conn_write_out(c, on_write, c);
	if (rv) {
		LOG_DEBUG("client port: write to %s failed: %s", c->name, qfs_strerror(rv));
		qbuf_close(&c->out);
		conn_close(c);
	}
}

void conn_respond_err_msg(struct conn *c, uint8_t type, int err, const char *msg)
{
	struct server_member leader;
	const char *lname = "", *laddr = "";
	struct qbuf b;

	if (err == QFS_ENOTLEADER && server_leader(c->port->srv, &leader) == 0) {
		lname = leader.name;
		laddr = leader.client_addr;
	}
	qbuf_init(&b);
	conn_respond(c, &b, client_proto_err_encode(&b, type, err, msg, lname, laddr));
}

void conn_respond_err(struct conn *c, uint8_t type, int err)
{
	const char *msg = qfs_strerror(err);

	if (err == QFS_ETIMEDOUT)
		msg = CONN_TIMEOUT_MSG;
	conn_respond_err_msg(c, type, err, msg);
}

const char *conn_bad_key_msg(int err, bool del)
{
	if (err == QFS_EINVAL)
		return "bad key: an absolute path without empty, '.' or '..' components or a "
		       "trailing '/'";
	if (err == QFS_ENAMETOOLONG)
		return "key too long (a component over 255 bytes or the key over 4096)";
	if (err == QFS_EPERM && del)
		return "the root directory cannot be deleted";
	if (err == QFS_EPERM)
		return "keys under " STORE_RESERVED_PREFIX " are reserved";
	return qfs_strerror(err);
}

void conn_respond_bad_key(struct conn *c, uint8_t type, int err)
{
	conn_respond_err_msg(c, type, err, conn_bad_key_msg(err, type == CLIENT_REQ_DEL));
}

/* ---- framing ------------------------------------------------------------------- */

static void handle(struct conn *c, const struct client_req *r)
{
	if (c->refused) {
		/* An answer rather than a reset, which would leave a write
		 * "maybe applied" and hide why. */
		conn_respond_err_msg(c, r->type, QFS_EAGAIN, FULL_MSG);
		return;
	}
	if (!client_auth_allowed(c, r))
		return;
	switch (r->type) {
	case CLIENT_REQ_STATUS:
		client_admin_status(c);
		break;
	case CLIENT_REQ_MEMBER_LIST:
		client_admin_member_list(c, r);
		break;
	case CLIENT_REQ_MEMBER_ADD:
	case CLIENT_REQ_MEMBER_REMOVE:
	case CLIENT_REQ_MEMBER_PROMOTE:
	case CLIENT_REQ_LEADER_TRANSFER:
		client_admin_member_change(c, r);
		break;
	case CLIENT_REQ_GET:
		client_kv_get(c, r);
		break;
	case CLIENT_REQ_WATCH:
		client_watch_start(c, r);
		break;
	case CLIENT_REQ_LEASE_GRANT:
	case CLIENT_REQ_LEASE_RENEW:
	case CLIENT_REQ_LEASE_REVOKE:
	case CLIENT_REQ_PUT_LEASE:
		client_lease_write(c, r);
		break;
	case CLIENT_REQ_LEASE_LIST:
		client_lease_list(c, r);
		break;
	case CLIENT_REQ_SNAPSHOT:
		client_snapshot_start(c, r);
		break;
	case CLIENT_REQ_TXN:
		client_txn_write(c, r);
		break;
	case CLIENT_REQ_COMPACT:
		client_compact_start(c, r);
		break;
	case CLIENT_REQ_AUTH_CHANGE:
		client_auth_change(c, r);
		break;
	case CLIENT_REQ_AUTH_LIST:
		client_auth_list(c, r);
		break;
	default:
		client_kv_write(c, r);
		break;
	}
}

/* A request over this member's bound that only carries too much: the
 * client's mistake, not a broken stream, so it is skipped and answered. */
static bool oversized_ok(const struct client_hdr *h)
{
	return (h->type == CLIENT_REQ_PUT || h->type == CLIENT_REQ_PUT_LEASE ||
		h->type == CLIENT_REQ_TXN) &&
	       h->len <= CLIENT_PROTO_MAX_PAYLOAD;
}

static void respond_oversized(struct conn *c)
{
	char msg[CLIENT_PROTO_MSG_MAX + 1];

	if (c->hdr.type != CLIENT_REQ_TXN) {
		conn_respond_err(c, c->hdr.type, QFS_EFBIG);
		return;
	}
	snprintf(msg, sizeof(msg),
		 "transaction too large: %" PRIu32 " bytes, over this member's limit of %zu "
		 "(--max-value-bytes plus %u KiB for keys)",
		 c->hdr.len, c->port->max_payload, CLIENT_PROTO_HEADROOM >> 10);
	conn_respond_err_msg(c, CLIENT_REQ_TXN, QFS_EFBIG, msg);
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

static void on_read(struct qfs_stream *s, void *arg, const uint8_t *data, size_t len, int err);

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
		rv = stream_read_start(c->s, on_read, c);
		if (rv) {
			LOG_DEBUG("client port: cannot read from %s: %s", c->name,
				  qfs_strerror(rv));
			conn_close(c);
			return;
		}
	} else if (!c->closing) {
		stream_read_stop(c->s);
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
			if (rv == QFS_EFBIG && oversized_ok(&c->hdr)) {
				consume(c, CLIENT_PROTO_HDR_SIZE);
				c->discard = c->hdr.len;
				c->busy = true;
				respond_oversized(c);
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
		client_proto_req_free(&req);
		consume(c, size);
		if (c->watch && c->in_len) {
			conn_reject(c, "data after WATCH");
			return;
		}
	}
	update_reading(c);
}

/* Room for len more bytes. The buffer doubles as bytes arrive, and stops at
 * the frame's size once its header is in: memory follows what a client
 * actually sent, so a header alone cannot make the member allocate the
 * largest frame. */
static int reserve(struct conn *c, size_t len)
{
	size_t need = c->in_len + len, want = c->in_cap * 2;
	uint8_t *grown;

	if (need <= c->in_cap)
		return 0;
	if (want < READ_CHUNK)
		want = READ_CHUNK;
	if (c->have_hdr) {
		size_t frame = CLIENT_PROTO_HDR_SIZE + (size_t)c->hdr.len;

		if (want > frame)
			want = frame;
	}
	if (want < need)
		want = need;
	grown = realloc(c->in, want);
	if (!grown)
		return QFS_ENOMEM;
	c->in = grown;
	c->in_cap = want;
	return 0;
}

/* With TLS, the connection is named after its certificate's CN (the user)
 * once the handshake is done, which it is when the first bytes arrive. */
static void name_user(struct conn *c)
{
	char user[CONN_USER_MAX + 1], addr[64];

	c->named = true;
	if (stream_peer_name(c->s, user, sizeof(user)) != 0)
		return;
	snprintf(c->user, sizeof(c->user), "%s", user);
	snprintf(addr, sizeof(addr), "%.63s", c->name);
	snprintf(c->name, sizeof(c->name), "%s@%s", user, addr);
	LOG_DEBUG("client port: %s is user %s", addr, user);
}

static void on_read(struct qfs_stream *s, void *arg, const uint8_t *data, size_t len, int err)
{
	struct conn *c = arg;

	(void)s;
	if (c->closing)
		return;
	if (err) {
		LOG_DEBUG("client port: connection from %s ended", c->name);
		conn_close(c);
		return;
	}
	if (!c->named)
		name_user(c);
	if (c->watch) {
		if (len > 0)
			conn_reject(c, "data after WATCH");
		return;
	}
	if (reserve(c, len) != 0) {
		conn_reject(c, "no memory for its request");
		return;
	}
	memcpy(c->in + c->in_len, data, len);
	c->in_len += len;
	process(c);
}

static void on_connection(uv_stream_t *server, int status)
{
	struct client_port *p = server->data;
	struct sockaddr_storage ss;
	struct qfs_stream *s;
	struct conn *c;
	bool full;
	int rv;

	if (status < 0) {
		LOG_WARN("client port: accept failed: %s", uv_strerror(status));
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		/* Not accepted: the kernel keeps the connection queued and
		 * it is retried on the next event. */
		LOG_WARN("client port: no memory for a connection");
		return;
	}
	rv = p->streams->accept(p->streams->ctx, server, &s);
	if (rv) {
		LOG_WARN("client port: accept failed: %s", qfs_strerror(rv));
		free(c);
		return;
	}
	stream_unref(s);
	c->port = p;
	c->s = s;
	c->refs = 1;
	qbuf_init(&c->out);
	p->refs++;
	p->handles++;
	full = p->nconns >= CLIENT_PORT_MAX_CONNS;
	if (full) {
		c->refused = true;
		p->nrefused++;
	} else {
		p->nconns++;
	}
	c->next = p->conns;
	if (p->conns)
		p->conns->prev = c;
	p->conns = c;
	c->idle_since = uv_now(p->loop);
	snprintf(c->name, sizeof(c->name), "?");
	if (stream_peer_addr(s, &ss) == 0)
		stream_addr_name((const struct sockaddr *)&ss, c->name, sizeof(c->name));
	if (p->closing || p->nrefused > FULL_ANSWERS_MAX) {
		if (!p->closing)
			LOG_WARN("client port: refusing %s: %u connections open", c->name,
				 p->nconns + p->nrefused - 1);
		conn_close(c);
		return;
	}
	if (full)
		LOG_WARN("client port: %s will be told this member is full: %u connections open",
			 c->name, p->nconns);
	update_reading(c);
}

/* Closes connections past their deadline (see HELLO_MS and IDLE_MS). */
static void on_sweep(uv_timer_t *h)
{
	struct client_port *p = h->data;
	uint64_t now = uv_now(p->loop);

	for (struct conn *c = p->conns; c; c = c->next) {
		bool hello = !c->served && !c->have_hdr;
		uint64_t limit = hello ? HELLO_MS : p->idle_ms;

		if (c->closing || c->busy || c->watch || now - c->idle_since < limit)
			continue;
		if (hello)
			LOG_DEBUG("client port: closing connection from %s: no request within "
				  "%" PRIu64 " ms of connecting",
				  c->name, limit);
		else
			LOG_DEBUG("client port: closing connection from %s: no whole request "
				  "for %" PRIu64 " ms",
				  c->name, limit);
		conn_close(c); /* unlinked only once closed: c->next stays valid */
	}
}

static uint64_t idle_ms(void)
{
	const char *v = getenv(IDLE_MS_ENV);
	char *end;
	unsigned long long ms;

	if (!v || !*v)
		return IDLE_MS;
	ms = strtoull(v, &end, 10);
	return *end || ms == 0 ? IDLE_MS : ms;
}

/* ---- the port ------------------------------------------------------------------ */

int client_port_create(struct server *srv, const char *addr, struct stream_tls *tls,
		       struct client_port **out)
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
	p->streams = tls ? stream_tls_factory(tls) : stream_tcp_factory();
	p->refs = 1;
	p->max_payload = (cfg->max_value_bytes ? cfg->max_value_bytes : CLIENT_PROTO_MAX_PAYLOAD) +
			 CLIENT_PROTO_HEADROOM;
	p->max_lag = client_watch_max_lag(cfg);
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
	p->idle_ms = idle_ms();
	uv_timer_init(p->loop, &p->sweep);
	p->sweep.data = p;
	p->handles++;
	uv_unref((uv_handle_t *)&p->sweep);
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
	uv_timer_start(&p->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
	if (server_add_revision_listener(srv, client_watch_on_revision, p) == 0)
		p->listening = true;
	else
		LOG_WARN("client port: no revision listener slot left; WATCH will be refused");
	LOG_INFO("client port listening on %s (%s)", addr, tls ? "mutual TLS" : "plain TCP");
	*out = p;
	return 0;
}

int client_port_number(const struct client_port *p)
{
	return p->port;
}

static void on_handle_closed(uv_handle_t *h)
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
		server_remove_revision_listener(p->srv, client_watch_on_revision, p);
	p->listening = false;
	uv_close((uv_handle_t *)&p->listener, on_handle_closed);
	uv_close((uv_handle_t *)&p->sweep, on_handle_closed);
	for (struct conn *c = p->conns; c; c = c->next)
		conn_close(c);
	/* Close callbacks (and cancelled writes) run in the next iteration;
	 * NOWAIT so nothing else the loop holds can keep us here. */
	while (p->handles > 0)
		uv_run(p->loop, UV_RUN_NOWAIT);
	port_unref(p);
}
