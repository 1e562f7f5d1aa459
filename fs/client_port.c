/*
 * The client port (see client_port.h): a libuv TCP listener on the member's
 * loop thread serving client_proto.h frames.
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
#include "client_port.h"
#include "client_proto.h"

_Static_assert(CLIENT_PROTO_NAME_MAX == SERVER_NAME_MAX, "member names fit both ways");
_Static_assert(CLIENT_PROTO_ADDR_MAX == SERVER_ADDR_MAX, "addresses fit both ways");

#define READ_CHUNK (64u << 10)
#define IDLE_BUFFER_MAX (256u << 10) /* keep at most this much between frames */
#define CONN_NAME_MAX 64

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
	int refs; /* the handle, plus one per request waiting on the server */
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
};

/* ---- lifetime ---------------------------------------------------------------- */

static void port_unref(struct client_port *p)
{
	if (--p->refs == 0)
		free(p);
}

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
	struct op *op = calloc(1, sizeof(*op));
	enum server_member_op sop;

	if (!op) {
		respond_err(c, r->type, QFS_ENOMEM);
		return;
	}
	op->c = c;
	c->refs++;
	op->type = r->type;
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
	struct op *op = calloc(1, sizeof(*op));
	int rv;

	if (!op) {
		respond_err(c, r->type, QFS_ENOMEM);
		return;
	}
	op->c = c;
	c->refs++;
	op->type = r->type;
	op->flags = r->flags;
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
	op = calloc(1, sizeof(*op));
	if (!op) {
		respond_err(c, r->type, QFS_ENOMEM);
		return;
	}
	op->c = c;
	c->refs++;
	op->type = r->type;
	/* server_propose encodes e before returning: r may go after this. */
	rv = server_propose(c->port->srv, &e, on_write_done, op);
	if (rv) {
		respond_err(c, r->type, rv);
		op_free(op);
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
 * make us buffer, and keeps responses in request order. */
static void update_reading(struct conn *c)
{
	bool want = !c->busy && !c->closing;
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
			if (rv == QFS_EFBIG && c->hdr.type == CLIENT_REQ_PUT &&
			    c->hdr.len <= CLIENT_PROTO_MAX_PAYLOAD) {
				/* A value over our --max-value-bytes is the client's
				 * mistake, not a broken stream: skip it, say why. */
				consume(c, CLIENT_PROTO_HDR_SIZE);
				c->discard = c->hdr.len;
				c->busy = true;
				respond_err(c, CLIENT_REQ_PUT, QFS_EFBIG);
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
	uv_close((uv_handle_t *)&p->listener, on_listener_closed);
	for (struct conn *c = p->conns; c; c = c->next)
		conn_close(c);
	/* Close callbacks (and cancelled writes) run in the next iteration;
	 * NOWAIT so nothing else the loop holds can keep us here. */
	while (p->handles > 0)
		uv_run(p->loop, UV_RUN_NOWAIT);
	port_unref(p);
}
