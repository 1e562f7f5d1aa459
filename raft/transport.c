/*
 * Peer transport (see transport.h for the contract and the wire format).
 *
 * Objects: the transport owns a listener, a sweep timer (handshake
 * deadlines), peers and connections. A peer owns its reconnect timer, its
 * queue of frames waiting for a connection and, while one exists, its
 * outbound connection. A connection that is closing is detached from its
 * peer at once, so a peer can reconnect (or be freed) without waiting for
 * the old stream's close callback. Memory of a peer or connection is freed
 * only in the close callback of its handle, so code that called out to the
 * user can always look at its `closing` flag afterwards.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "../common/codec.h"
#include "../common/errors.h"
#include "../common/log.h"
#include "transport.h"

#define ADDR_NAME_MAX 64  /* "[v6 address]:port" */
#define PEER_NAME_MAX 128 /* a stream's proved name; a longer one proves nothing */
#define REFUSAL_SLOTS 8
#define REFUSAL_QUIET_MS 60000 /* a repeated identity refusal is logged again after this */

struct frame {
	struct frame *next;
	struct conn *conn; /* while written to a stream */
	int counted;	   /* part of the peer's queue bytes (not the handshake) */
	size_t size;	   /* header + payload */
	uint8_t bytes[];
};

struct conn {
	struct transport *t;
	struct qfs_stream *s;
	struct conn *prev, *next; /* t->conns */
	/* Outbound: the peer it belongs to, NULL once detached. */
	struct peer *peer;
	int inbound;
	int established; /* outbound: connected; inbound: handshake accepted */
	int closing;
	uint64_t remote_id; /* inbound, once established */
	uint64_t accepted_at;
	size_t inflight; /* counted bytes written to s and not yet completed */
	char name[ADDR_NAME_MAX];
	/* Receive state: a header being filled, then a payload. */
	uint8_t hdr[TRANSPORT_HDR_SIZE];
	size_t hdr_have;
	uint8_t type;
	uint32_t plen;
	uint32_t crc;
	uint8_t *payload;
	size_t payload_have;
};

struct peer {
	struct transport *t;
	struct peer *next;
	uint64_t id;
	char addr_name[ADDR_NAME_MAX];
	struct sockaddr_storage addr;
	struct conn *out; /* connecting or established */
	uv_timer_t timer; /* reconnect delay, then connect timeout */
	struct frame *qhead, **qtail;
	size_t queued; /* bytes in q plus out->inflight */
	uint64_t backoff;
	uint64_t up_since; /* loop time the current link came up, 0 = not up */
};

struct transport {
	uv_loop_t *loop;
	struct transport_config cfg; /* listen_addr not kept */
	uv_tcp_t listener;
	/* Outbound connections leave from the listen IP (not its port), so
	 * each member's traffic carries its own address even on loopback. */
	struct sockaddr_storage local;
	bool has_local;
	uv_timer_t sweep;
	struct peer *peers;
	struct conn *conns;
	unsigned n_inbound;
	uint64_t rng;
	int port;
	int closing;
	unsigned handles; /* open handles; freed when 0 after closing */
	void (*close_cb)(void *arg);
	void *close_arg;
	/* Identity refusals logged lately, so a peer retrying every few
	 * seconds does not fill the log. */
	struct {
		uint64_t id, at;
		bool inbound;
		char name[PEER_NAME_MAX];
	} refused[REFUSAL_SLOTS];
	unsigned refused_next;
};

/* --- helpers --------------------------------------------------------- */

static uint64_t next_rand(struct transport *t)
{
	uint64_t z;

	if (t->cfg.rand)
		return t->cfg.rand(t->cfg.rand_arg);
	/* splitmix64: per transport, so nothing is shared between members
	 * running in one process (tests) or with other code. */
	z = (t->rng += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

int transport_addr_parse(const char *s, struct sockaddr_storage *out)
{
	char host[INET6_ADDRSTRLEN + 16];
	const char *host_start, *port_s;
	size_t host_len;
	unsigned long port = 0;
	int v6 = 0;

	if (!s)
		return QFS_EINVAL;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');

		if (!close || close[1] != ':')
			return QFS_EINVAL;
		host_start = s + 1;
		host_len = (size_t)(close - host_start);
		port_s = close + 2;
		v6 = 1;
	} else {
		const char *colon = strrchr(s, ':');

		/* A second colon means an unbracketed IPv6 address. */
		if (!colon || memchr(s, ':', (size_t)(colon - s)))
			return QFS_EINVAL;
		host_start = s;
		host_len = (size_t)(colon - s);
		port_s = colon + 1;
	}
	if (host_len == 0 || host_len >= sizeof(host))
		return QFS_EINVAL;
	if (*port_s == 0 || strlen(port_s) > 5)
		return QFS_EINVAL;
	for (const char *p = port_s; *p; p++) {
		if (*p < '0' || *p > '9')
			return QFS_EINVAL;
		port = port * 10 + (unsigned long)(*p - '0');
	}
	if (port > 65535)
		return QFS_EINVAL;
	memcpy(host, host_start, host_len);
	host[host_len] = 0;
	memset(out, 0, sizeof(*out));
	if (v6)
		return uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)out) == 0 ? 0
										     : QFS_EINVAL;
	return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)out) == 0 ? 0 : QFS_EINVAL;
}

static struct frame *frame_new(uint8_t type, const void *payload, size_t len)
{
	struct frame *f = malloc(sizeof(*f) + TRANSPORT_HDR_SIZE + len);
	uint8_t *h;

	if (!f)
		return NULL;
	f->next = NULL;
	f->conn = NULL;
	f->counted = 1;
	f->size = TRANSPORT_HDR_SIZE + len;
	h = f->bytes;
	qfs_le32_put(h, TRANSPORT_MAGIC);
	h[4] = TRANSPORT_VERSION;
	h[5] = type;
	h[6] = h[7] = 0;
	qfs_le32_put(h + 8, (uint32_t)len);
	qfs_le32_put(h + 12, (uint32_t)crc32(0L, payload, (uInt)len));
	if (len)
		memcpy(h + TRANSPORT_HDR_SIZE, payload, len);
	return f;
}

static struct peer *peer_find(const struct transport *t, uint64_t id)
{
	for (struct peer *p = t->peers; p; p = p->next)
		if (p->id == id)
			return p;
	return NULL;
}

static void notify(struct transport *t, uint64_t id, enum transport_peer_state state)
{
	if (!t->closing && t->cfg.cb.on_peer_state)
		t->cfg.cb.on_peer_state(t->cfg.cb.arg, id, state);
}

static void handle_closed(struct transport *t)
{
	void (*cb)(void *arg) = t->close_cb;
	void *arg = t->close_arg;

	if (--t->handles > 0 || !t->closing)
		return;
	free(t);
	if (cb)
		cb(arg);
}

/* --- identity --------------------------------------------------------- */

/* Whether this refusal was logged lately; notes it if not. */
static bool refusal_seen(struct transport *t, uint64_t id, bool inbound, const char *name)
{
	uint64_t now = uv_now(t->loop);
	unsigned i;

	for (i = 0; i < REFUSAL_SLOTS; i++)
		if (t->refused[i].at && now - t->refused[i].at < REFUSAL_QUIET_MS &&
		    t->refused[i].id == id && t->refused[i].inbound == inbound &&
		    strcmp(t->refused[i].name, name) == 0)
			return true;
	i = t->refused_next;
	t->refused_next = (i + 1) % REFUSAL_SLOTS;
	t->refused[i].id = id;
	t->refused[i].at = now ? now : 1;
	t->refused[i].inbound = inbound;
	snprintf(t->refused[i].name, sizeof(t->refused[i].name), "%s", name);
	return false;
}

/* The name a stream proved, quoted and safe to log (it came off the wire). */
static void name_show(char *out, size_t len, int rv, const char *name)
{
	size_t n = 0;

	if (rv == QFS_ERANGE) {
		snprintf(out, len, "a CN over %d bytes", PEER_NAME_MAX - 1);
		return;
	}
	if (rv) {
		snprintf(out, len, "no CN");
		return;
	}
	out[n++] = '"';
	for (; *name && n + 2 < len; name++)
		out[n++] = *name >= 0x20 && *name < 0x7f && *name != '"' ? *name : '?';
	out[n++] = '"';
	out[n] = 0;
}

/* Whether the other end of c may be member id (cfg.peer_allowed); a refusal
 * is logged. */
static bool identity_check(struct conn *c, uint64_t id)
{
	struct transport *t = c->t;
	char name[PEER_NAME_MAX], shown[PEER_NAME_MAX + 16];
	int rv;

	if (!t->cfg.peer_allowed)
		return true;
	rv = stream_peer_name(c->s, name, sizeof(name));
	if (t->cfg.peer_allowed(t->cfg.cb.arg, id, rv ? NULL : name))
		return true;
	name_show(shown, sizeof(shown), rv, name);
	if (c->inbound)
		qfs_log(refusal_seen(t, id, true, shown) ? QFS_LOG_DEBUG : QFS_LOG_WARN,
			"transport: refused a connection from %s: it claims to be member "
			"id=%016" PRIx64 " but its certificate has %s%s",
			c->name, id, rv ? "" : "CN=", shown);
	else
		qfs_log(refusal_seen(t, id, false, shown) ? QFS_LOG_DEBUG : QFS_LOG_WARN,
			"transport: refused to talk to member id=%016" PRIx64
			" at %s: its certificate has %s%s",
			id, c->name, rv ? "" : "CN=", shown);
	return false;
}

/* --- connections ----------------------------------------------------- */

static struct conn *conn_new(struct transport *t, int inbound)
{
	struct conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->t = t;
	c->inbound = inbound;
	snprintf(c->name, sizeof(c->name), "?");
	return c;
}

/* The connection now holds an open stream: track it until it closes. */
static void conn_link(struct conn *c)
{
	struct transport *t = c->t;

	c->next = t->conns;
	if (t->conns)
		t->conns->prev = c;
	t->conns = c;
	t->handles++;
	if (c->inbound)
		t->n_inbound++;
}

static void on_conn_closed(struct qfs_stream *s, void *arg)
{
	struct conn *c = arg;
	struct transport *t = c->t;

	(void)s;
	if (c->prev)
		c->prev->next = c->next;
	else
		t->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	free(c->payload);
	free(c);
	handle_closed(t);
}

/* Gives the peer its queue accounting back and lets it reconnect. */
static void conn_detach(struct conn *c)
{
	struct peer *p = c->peer;

	if (!p)
		return;
	p->queued -= c->inflight;
	p->out = NULL;
	c->peer = NULL;
}

static void conn_close(struct conn *c)
{
	if (c->closing)
		return;
	c->closing = 1;
	conn_detach(c);
	if (c->inbound)
		c->t->n_inbound--;
	stream_close(c->s, on_conn_closed, c);
}

static void conn_reject(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A protocol violation: one log line, then only this connection goes. */
static void conn_reject(struct conn *c, const char *fmt, ...)
{
	char why[256], who[48] = "";
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (c->established)
		snprintf(who, sizeof(who), " (member %" PRIu64 ")", c->remote_id);
	LOG_WARN("transport: closing connection from %s%s: %s", c->name, who, why);
	conn_close(c);
}

static void on_written(struct qfs_stream *s, void *arg, int status);

static int conn_write(struct conn *c, struct frame *f)
{
	uv_buf_t b = uv_buf_init((char *)f->bytes, (unsigned)f->size);
	int rv = stream_write(c->s, &b, 1, on_written, f);

	if (rv)
		return rv;
	f->conn = c;
	if (f->counted)
		c->inflight += f->size;
	return 0;
}

/* --- outbound -------------------------------------------------------- */

static void peer_connect(struct peer *p);

static void on_retry(uv_timer_t *h)
{
	peer_connect(h->data);
}

static void peer_schedule(struct peer *p)
{
	struct transport *t = p->t;
	uint64_t now = uv_now(t->loop), base, delay;

	/* A link that stayed up a while starts over fast; one that keeps
	 * dying young (e.g. the far end rejects our handshake) backs off. */
	if (p->up_since && now - p->up_since >= t->cfg.backoff_max_ms)
		p->backoff = t->cfg.backoff_min_ms;
	p->up_since = 0;
	base = p->backoff;
	delay = base / 2 + next_rand(t) % (base - base / 2 + 1);
	p->backoff = base * 2 < t->cfg.backoff_max_ms ? base * 2 : t->cfg.backoff_max_ms;
	uv_timer_start(&p->timer, on_retry, delay, 0);
}

/* The established outbound link of p is gone (c is its connection). */
static void out_lost(struct conn *c, enum transport_peer_state why)
{
	struct peer *p = c->peer;
	int was_up = c->established;

	conn_close(c);
	if (!p)
		return;
	peer_schedule(p);
	if (was_up)
		notify(p->t, p->id, why);
}

static void on_written(struct qfs_stream *s, void *arg, int status)
{
	struct frame *f = arg;
	struct conn *c = f->conn;

	(void)s;
	if (f->counted) {
		c->inflight -= f->size;
		if (c->peer)
			c->peer->queued -= f->size;
	}
	free(f);
	if (status && !c->closing) {
		LOG_INFO("transport: write to member %" PRIu64 " (%s) failed: %s",
			 c->peer ? c->peer->id : 0, c->name, qfs_strerror(status));
		out_lost(c, TRANSPORT_PEER_RESET);
	}
}

static void on_out_read(struct qfs_stream *s, void *arg, const uint8_t *data, size_t len, int err)
{
	struct conn *c = arg;
	uint64_t id = c->peer ? c->peer->id : 0;

	(void)s;
	(void)data;
	(void)len;
	if (c->closing)
		return;
	if (err) {
		LOG_INFO("transport: connection to member %" PRIu64 " (%s) lost", id, c->name);
		out_lost(c, TRANSPORT_PEER_RESET);
	} else {
		/* The peer must send on its own connection to us. */
		LOG_WARN("transport: member %" PRIu64 " (%s) sent data on our outbound "
			 "connection; closing it",
			 id, c->name);
		out_lost(c, TRANSPORT_PEER_DISCONNECTED);
	}
}

static int send_handshake(struct conn *c)
{
	struct transport *t = c->t;
	uint8_t hs[TRANSPORT_HANDSHAKE_SIZE];
	struct frame *f;
	int rv;

	qfs_le64_put(hs, t->cfg.self_id);
	qfs_le64_put(hs + 8, t->cfg.cluster_id);
	hs[16] = TRANSPORT_VERSION;
	f = frame_new(TRANSPORT_FRAME_HANDSHAKE, hs, sizeof(hs));
	if (!f)
		return QFS_ENOMEM;
	f->counted = 0;
	rv = conn_write(c, f);
	if (rv)
		free(f);
	return rv;
}

static void on_connected(struct qfs_stream *s, void *arg, int status)
{
	struct conn *c = arg;
	struct peer *p = c->peer;
	struct sockaddr_storage ss;
	int rv;

	if (c->closing)
		return; /* timed out, removed or transport closing */
	uv_timer_stop(&p->timer);
	if (status) {
		LOG_DEBUG("transport: connect to member %" PRIu64 " (%s) failed: %s", p->id,
			  p->addr_name, qfs_strerror(status));
		goto fail;
	}
	if (stream_peer_addr(s, &ss) == 0)
		stream_addr_name((const struct sockaddr *)&ss, c->name, sizeof(c->name));
	if (!identity_check(c, p->id))
		goto fail;
	rv = stream_read_start(s, on_out_read, c);
	if (!rv)
		rv = send_handshake(c);
	if (rv) {
		LOG_INFO("transport: cannot start link to member %" PRIu64 " (%s): %s", p->id,
			 p->addr_name, qfs_strerror(rv));
		goto fail;
	}
	c->established = 1;
	p->up_since = uv_now(c->t->loop);
	if (!p->up_since)
		p->up_since = 1;
	while (p->qhead) {
		struct frame *f = p->qhead;

		p->qhead = f->next;
		f->next = NULL;
		if (conn_write(c, f) != 0) {
			p->queued -= f->size;
			free(f);
		}
	}
	p->qtail = &p->qhead;
	LOG_INFO("transport: connected to member %" PRIu64 " (%s)", p->id, p->addr_name);
	notify(c->t, p->id, TRANSPORT_PEER_CONNECTED);
	return;

fail:
	conn_close(c);
	peer_schedule(p);
}

static void on_connect_timeout(uv_timer_t *h)
{
	struct peer *p = h->data;

	LOG_DEBUG("transport: connect to member %" PRIu64 " (%s) timed out", p->id, p->addr_name);
	if (p->out)
		conn_close(p->out);
	peer_schedule(p);
}

static void peer_connect(struct peer *p)
{
	struct transport *t = p->t;
	const struct qfs_stream_factory *f = t->cfg.streams;
	struct conn *c = conn_new(t, 0);
	int rv = QFS_ENOMEM;

	if (!c)
		goto fail;
	c->peer = p;
	snprintf(c->name, sizeof(c->name), "%s", p->addr_name);
	rv = f->connect(f->ctx, t->loop, t->has_local ? (const struct sockaddr *)&t->local : NULL,
			(const struct sockaddr *)&p->addr, on_connected, c, &c->s);
	if (rv)
		goto fail_conn;
	conn_link(c);
	p->out = c;
	uv_timer_start(&p->timer, on_connect_timeout, t->cfg.connect_timeout_ms, 0);
	return;

fail_conn:
	free(c);
fail:
	LOG_DEBUG("transport: cannot connect to member %" PRIu64 " (%s): %s", p->id, p->addr_name,
		  qfs_strerror(rv));
	peer_schedule(p);
}

/* --- inbound --------------------------------------------------------- */

static void accept_handshake(struct conn *c, const uint8_t *p)
{
	struct transport *t = c->t;
	uint64_t id = qfs_le64_get(p), cluster = qfs_le64_get(p + 8);

	if (p[16] != TRANSPORT_VERSION) {
		conn_reject(c, "handshake with protocol version %u, want %u", p[16],
			    TRANSPORT_VERSION);
		return;
	}
	if (cluster != t->cfg.cluster_id) {
		conn_reject(
		    c, "member %" PRIu64 " is in cluster %016" PRIx64 ", not ours (%016" PRIx64 ")",
		    id, cluster, t->cfg.cluster_id);
		return;
	}
	if (id == 0 || id == t->cfg.self_id) {
		conn_reject(c, "handshake claims member id %" PRIu64, id);
		return;
	}
	if (!identity_check(c, id)) {
		conn_close(c);
		return;
	}
	/* A member reconnects after a restart before we saw the old
	 * connection end (or never will, if its host vanished): the newest
	 * connection wins, so stale ones do not pile up. */
	for (struct conn *o = t->conns; o; o = o->next)
		if (o != c && o->inbound && o->established && !o->closing && o->remote_id == id)
			conn_close(o);
	c->established = 1;
	c->remote_id = id;
	LOG_DEBUG("transport: member %" PRIu64 " connected from %s", id, c->name);
}

/* A whole frame is in hand: check it, then hand it on. */
static void deliver(struct conn *c, const uint8_t *payload)
{
	struct transport *t = c->t;

	if ((uint32_t)crc32(0L, payload, c->plen) != c->crc) {
		conn_reject(c, "bad CRC on a frame of type %u, %" PRIu32 " bytes", c->type,
			    c->plen);
		return;
	}
	if (!c->established) {
		accept_handshake(c, payload);
		return;
	}
	if (!t->closing && t->cfg.cb.on_frame)
		t->cfg.cb.on_frame(t->cfg.cb.arg, c->remote_id, c->type, payload, c->plen);
}

/* The header is complete: decide whether to accept what follows, before
 * allocating anything for it. */
static int header_check(struct conn *c)
{
	const uint8_t *h = c->hdr;
	uint32_t magic = qfs_le32_get(h);

	if (magic != TRANSPORT_MAGIC) {
		conn_reject(c, "bad magic 0x%08" PRIx32, magic);
		return -1;
	}
	if (h[4] != TRANSPORT_VERSION) {
		conn_reject(c, "protocol version %u, want %u", h[4], TRANSPORT_VERSION);
		return -1;
	}
	c->type = h[5];
	c->plen = qfs_le32_get(h + 8);
	c->crc = qfs_le32_get(h + 12);
	if (!c->established) {
		if (c->type != TRANSPORT_FRAME_HANDSHAKE || c->plen != TRANSPORT_HANDSHAKE_SIZE) {
			conn_reject(c,
				    "first frame is not a handshake (type %u, %" PRIu32 " bytes)",
				    c->type, c->plen);
			return -1;
		}
		return 0;
	}
	if (c->type == TRANSPORT_FRAME_HANDSHAKE) {
		conn_reject(c, "second handshake");
		return -1;
	}
	if (c->plen > c->t->cfg.max_frame) {
		conn_reject(c, "frame of %" PRIu32 " bytes over the %zu byte limit", c->plen,
			    c->t->cfg.max_frame);
		return -1;
	}
	return 0;
}

static void on_in_read(struct qfs_stream *s, void *arg, const uint8_t *data, size_t len, int err)
{
	struct conn *c = arg;

	(void)s;
	if (c->closing)
		return;
	if (err) {
		uint64_t id = c->remote_id;
		int was_up = c->established;

		LOG_DEBUG("transport: connection from %s (member %" PRIu64 ") ended", c->name, id);
		conn_close(c);
		if (was_up)
			notify(c->t, id, TRANSPORT_PEER_RESET);
		return;
	}
	while (len > 0 && !c->closing) {
		size_t n;

		if (c->hdr_have < TRANSPORT_HDR_SIZE) {
			n = TRANSPORT_HDR_SIZE - c->hdr_have;
			n = n < len ? n : len;
			memcpy(c->hdr + c->hdr_have, data, n);
			c->hdr_have += n;
			data += n;
			len -= n;
			if (c->hdr_have < TRANSPORT_HDR_SIZE)
				break;
			if (header_check(c) != 0)
				break;
			if (len >= c->plen) {
				/* Common case: the whole payload is in this read. */
				c->hdr_have = 0;
				data += c->plen;
				len -= c->plen;
				deliver(c, data - c->plen);
				continue;
			}
			c->payload = malloc(c->plen);
			if (!c->payload) {
				conn_reject(c, "no memory for a %" PRIu32 " byte frame", c->plen);
				break;
			}
			c->payload_have = 0;
		}
		n = c->plen - c->payload_have;
		n = n < len ? n : len;
		memcpy(c->payload + c->payload_have, data, n);
		c->payload_have += n;
		data += n;
		len -= n;
		if (c->payload_have == c->plen) {
			uint8_t *p = c->payload;

			c->payload = NULL;
			c->hdr_have = 0;
			deliver(c, p);
			free(p);
		}
	}
}

static void on_connection(uv_stream_t *server, int status)
{
	struct transport *t = server->data;
	const struct qfs_stream_factory *f = t->cfg.streams;
	struct sockaddr_storage ss;
	struct qfs_stream *s;
	struct conn *c;
	int rv;

	if (status < 0) {
		LOG_WARN("transport: accept failed: %s", uv_strerror(status));
		return;
	}
	rv = f->accept(f->ctx, server, &s);
	if (rv) {
		LOG_WARN("transport: accept failed: %s", qfs_strerror(rv));
		return;
	}
	if (t->closing || t->n_inbound >= t->cfg.max_inbound) {
		if (!t->closing)
			LOG_WARN("transport: refusing a connection: %u inbound connections open",
				 t->n_inbound);
		stream_close(s, NULL, NULL);
		return;
	}
	c = conn_new(t, 1);
	if (!c) {
		stream_close(s, NULL, NULL);
		return;
	}
	c->s = s;
	c->accepted_at = uv_now(t->loop);
	if (stream_peer_addr(s, &ss) == 0)
		stream_addr_name((const struct sockaddr *)&ss, c->name, sizeof(c->name));
	conn_link(c);
	rv = stream_read_start(s, on_in_read, c);
	if (rv) {
		LOG_WARN("transport: cannot read from %s: %s", c->name, qfs_strerror(rv));
		conn_close(c);
	}
}

static void on_sweep(uv_timer_t *h)
{
	struct transport *t = h->data;
	uint64_t now = uv_now(t->loop);

	/* Without this, anyone could hold inbound slots by connecting and
	 * sending nothing. */
	for (struct conn *c = t->conns; c; c = c->next)
		if (c->inbound && !c->established && !c->closing &&
		    now - c->accepted_at >= t->cfg.handshake_timeout_ms)
			conn_reject(c, "no handshake within %" PRIu64 " ms",
				    t->cfg.handshake_timeout_ms);
}

/* --- public ---------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h)
{
	handle_closed(h->data);
}

static void on_listener_failed(uv_handle_t *h)
{
	free(h->data);
}

static int config_fill(struct transport_config *c)
{
	if (c->self_id == 0)
		return QFS_EINVAL;
	if (!c->max_frame)
		c->max_frame = TRANSPORT_MAX_FRAME_DEFAULT;
	if (c->max_frame > UINT32_MAX - TRANSPORT_HDR_SIZE)
		return QFS_EINVAL;
	if (!c->max_queue)
		c->max_queue = 4 * (c->max_frame + TRANSPORT_HDR_SIZE);
	if (c->max_queue < c->max_frame + TRANSPORT_HDR_SIZE)
		return QFS_EINVAL;
	if (!c->max_inbound)
		c->max_inbound = 64;
	if (!c->backoff_min_ms)
		c->backoff_min_ms = 50;
	if (!c->backoff_max_ms)
		c->backoff_max_ms = 2000;
	if (c->backoff_max_ms < c->backoff_min_ms)
		return QFS_EINVAL;
	if (!c->connect_timeout_ms)
		c->connect_timeout_ms = 1000;
	if (!c->handshake_timeout_ms)
		c->handshake_timeout_ms = 5000;
	if (!c->streams)
		c->streams = stream_tcp_factory();
	c->listen_addr = NULL;
	return 0;
}

int transport_create(uv_loop_t *loop, const struct transport_config *cfg, struct transport **out)
{
	struct sockaddr_storage ss;
	struct transport *t;
	int len = sizeof(ss), rv;
	uint64_t sweep_ms;

	if (transport_addr_parse(cfg->listen_addr, &ss) != 0) {
		LOG_ERROR("transport: bad listen address '%s' (want IPV4:PORT or [IPV6]:PORT)",
			  cfg->listen_addr ? cfg->listen_addr : "(null)");
		return QFS_EINVAL;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return QFS_ENOMEM;
	t->loop = loop;
	t->cfg = *cfg;
	rv = config_fill(&t->cfg);
	if (rv) {
		LOG_ERROR("transport: invalid configuration (member id 0, frame or queue limits)");
		free(t);
		return rv;
	}
	t->rng = uv_hrtime() ^ (t->cfg.self_id * 0x9e3779b97f4a7c15ULL);
	t->local = ss;
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&t->local;

		in->sin_port = 0;
		t->has_local = in->sin_addr.s_addr != htonl(INADDR_ANY);
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&t->local;

		in6->sin6_port = 0;
		t->has_local = !IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr);
	}
	if (uv_tcp_init(loop, &t->listener) != 0) {
		free(t);
		return QFS_EIO;
	}
	t->listener.data = t;
	rv = uv_tcp_bind(&t->listener, (const struct sockaddr *)&ss, 0);
	if (rv == 0)
		rv = uv_listen((uv_stream_t *)&t->listener, 128, on_connection);
	if (rv == 0)
		rv = uv_tcp_getsockname(&t->listener, (struct sockaddr *)&ss, &len);
	if (rv != 0) {
		LOG_ERROR("transport: cannot listen on %s: %s", cfg->listen_addr, uv_strerror(rv));
		uv_close((uv_handle_t *)&t->listener, on_listener_failed);
		return QFS_EIO;
	}
	t->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						 : ((struct sockaddr_in *)&ss)->sin_port);
	uv_timer_init(loop, &t->sweep);
	t->sweep.data = t;
	sweep_ms = t->cfg.handshake_timeout_ms < 1000 ? t->cfg.handshake_timeout_ms : 1000;
	uv_timer_start(&t->sweep, on_sweep, sweep_ms, sweep_ms);
	t->handles = 2;
	*out = t;
	return 0;
}

int transport_listen_port(const struct transport *t)
{
	return t->port;
}

int transport_peer_add(struct transport *t, uint64_t id, const char *addr)
{
	struct peer *p;

	if (t->closing)
		return QFS_ESHUTDOWN;
	if (id == 0 || id == t->cfg.self_id)
		return QFS_EINVAL;
	if (peer_find(t, id))
		return QFS_EEXIST;
	p = calloc(1, sizeof(*p));
	if (!p)
		return QFS_ENOMEM;
	if (transport_addr_parse(addr, &p->addr) != 0) {
		LOG_ERROR("transport: bad address '%s' for member %" PRIu64
			  " (want IPV4:PORT or [IPV6]:PORT)",
			  addr ? addr : "(null)", id);
		free(p);
		return QFS_EINVAL;
	}
	p->t = t;
	p->id = id;
	stream_addr_name((const struct sockaddr *)&p->addr, p->addr_name,
			 sizeof(p->addr_name));
	p->qtail = &p->qhead;
	p->backoff = t->cfg.backoff_min_ms;
	uv_timer_init(t->loop, &p->timer);
	p->timer.data = p;
	p->next = t->peers;
	t->peers = p;
	t->handles++;
	peer_connect(p);
	return 0;
}

static void on_peer_timer_closed(uv_handle_t *h)
{
	struct peer *p = h->data;
	struct transport *t = p->t;

	free(p);
	handle_closed(t);
}

static void peer_free(struct peer *p)
{
	if (p->out)
		conn_close(p->out);
	while (p->qhead) {
		struct frame *f = p->qhead;

		p->qhead = f->next;
		free(f);
	}
	uv_close((uv_handle_t *)&p->timer, on_peer_timer_closed);
}

int transport_peer_remove(struct transport *t, uint64_t id)
{
	struct peer **pp = &t->peers, *p;

	while (*pp && (*pp)->id != id)
		pp = &(*pp)->next;
	if (!*pp)
		return QFS_ENOENT;
	p = *pp;
	*pp = p->next;
	peer_free(p);
	return 0;
}

int transport_send(struct transport *t, uint64_t to, uint8_t type, const void *payload, size_t len)
{
	struct peer *p;
	struct frame *f;

	if (t->closing)
		return QFS_ESHUTDOWN;
	if (type == TRANSPORT_FRAME_HANDSHAKE || len > t->cfg.max_frame)
		return QFS_EINVAL;
	p = peer_find(t, to);
	if (!p)
		return QFS_ENOENT;
	if (p->queued + TRANSPORT_HDR_SIZE + len > t->cfg.max_queue)
		return QFS_EAGAIN;
	f = frame_new(type, payload, len);
	if (!f)
		return QFS_ENOMEM;
	p->queued += f->size;
	if (p->out && p->out->established) {
		int rv = conn_write(p->out, f);

		/* The stream is failing; its read side reports it shortly. */
		if (rv) {
			p->queued -= f->size;
			free(f);
			return rv;
		}
		return 0;
	}
	*p->qtail = f;
	p->qtail = &f->next;
	return 0;
}

size_t transport_queued(const struct transport *t, uint64_t peer)
{
	const struct peer *p = peer_find(t, peer);

	return p ? p->queued : 0;
}

void transport_close(struct transport *t, void (*cb)(void *arg), void *arg)
{
	assert(!t->closing);
	t->closing = 1;
	t->close_cb = cb;
	t->close_arg = arg;
	while (t->peers) {
		struct peer *p = t->peers;

		t->peers = p->next;
		peer_free(p);
	}
	for (struct conn *c = t->conns; c; c = c->next)
		conn_close(c);
	uv_close((uv_handle_t *)&t->sweep, on_handle_closed);
	uv_close((uv_handle_t *)&t->listener, on_handle_closed);
}
