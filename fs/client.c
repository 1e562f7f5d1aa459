/*
 * The network side of the CLI (see client.h): blocking TCP sockets to
 * members' client ports, every wait bounded by a deadline.
 *
 * Endpoints are tried in order. A member that is not the leader answers
 * NOTLEADER with the leader's client address when it knows it: the request
 * goes there once, then on to the next endpoint. A request that was sent
 * but got no answer moves on only when repeating it is harmless (reads);
 * a write that may have been applied is reported, not repeated.
 */
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../common/errors.h"
#include "client.h"
#include "client_tls.h"

#define CONNECT_TIMEOUT_MS 2000 /* per endpoint, so a dead host leaves time for others */

void client_answer_free(struct client_answer *a)
{
	client_proto_resp_free(&a->resp);
	free(a->payload);
	a->payload = NULL;
}

int client_endpoints_set(struct client_endpoints *e, const char *list)
{
	char *save = NULL;

	free(e->list);
	e->list = strdup(list);
	e->n = 0;
	if (!e->list)
		return -1;
	for (char *t = strtok_r(e->list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (e->n == CLIENT_MAX_ENDPOINTS)
			return -1;
		e->ep[e->n++] = t;
	}
	return e->n ? 0 : -1;
}

void client_endpoints_close(struct client_endpoints *e)
{
	free(e->list);
	e->list = NULL;
	e->n = 0;
}

uint64_t client_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Waits for fd to become ready for events (deadline 0: as long as it
 * takes); 0, or -1 with err set. */
static int wait_fd(int fd, short events, uint64_t deadline, const char *ep, char *err)
{
	for (;;) {
		struct pollfd pfd = {.fd = fd, .events = events};
		uint64_t now = client_now_ms();
		int n;

		if (deadline && now >= deadline) {
			snprintf(err, CLIENT_ERR_MAX, "no answer from %s in time (--timeout-ms)",
				 ep);
			return -1;
		}
		n = poll(&pfd, 1, deadline ? (int)(deadline - now) : -1);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR) {
			snprintf(err, CLIENT_ERR_MAX, "%s: %s", ep, strerror(errno));
			return -1;
		}
	}
}

/* "HOST:PORT" or "[V6]:PORT" into host and port strings. */
static int split_endpoint(const char *ep, char *host, size_t hlen, const char **port)
{
	const char *colon;
	size_t n;

	if (ep[0] == '[') {
		const char *close = strchr(ep, ']');

		if (!close || close[1] != ':')
			return -1;
		n = (size_t)(close - ep - 1);
		if (n >= hlen)
			return -1;
		memcpy(host, ep + 1, n);
		*port = close + 2;
	} else {
		colon = strrchr(ep, ':');
		if (!colon)
			return -1;
		n = (size_t)(colon - ep);
		if (n >= hlen)
			return -1;
		memcpy(host, ep, n);
		*port = colon + 1;
	}
	host[n] = 0;
	return n && **port ? 0 : -1;
}

/* A connected non-blocking socket, or -1 with err set; host gets the
 * endpoint's host. */
static int tcp_connect(const char *ep, uint64_t deadline, char *host, size_t hostlen, char *err)
{
	struct addrinfo hints = {
	    .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	const char *port;
	uint64_t limit = client_now_ms() + CONNECT_TIMEOUT_MS;
	int fd = -1, rv;

	if (split_endpoint(ep, host, hostlen, &port) != 0) {
		snprintf(err, CLIENT_ERR_MAX, "bad endpoint '%s' (want HOST:PORT)", ep);
		return -1;
	}
	rv = getaddrinfo(host, port, &hints, &res);
	if (rv) {
		snprintf(err, CLIENT_ERR_MAX, "%s: %s", ep, gai_strerror(rv));
		return -1;
	}
	if (limit > deadline)
		limit = deadline;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		int soerr = 0;
		socklen_t len = sizeof(soerr);

		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			snprintf(err, CLIENT_ERR_MAX, "%s: %s", ep, strerror(errno));
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		if (errno == EINPROGRESS && wait_fd(fd, POLLOUT, limit, ep, err) == 0) {
			getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
			if (soerr == 0)
				break;
			errno = soerr;
		}
		if (errno != EINPROGRESS)
			snprintf(err, CLIENT_ERR_MAX, "cannot connect to %s: %s", ep,
				 strerror(errno));
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
}

/* The TLS handshake on a connected socket, within deadline. */
static int tls_start(struct client_conn *c, struct client_tls *tls, const char *host,
		     uint64_t deadline, char *err)
{
	char why[CLIENT_ERR_MAX - 64];

	c->tls = client_tls_conn_new(tls, c->fd, host, why, sizeof(why));
	if (!c->tls)
		goto fail;
	for (;;) {
		enum client_tls_step st = client_tls_handshake(c->tls, why, sizeof(why));

		if (st == CLIENT_TLS_DONE)
			return 0;
		if (st != CLIENT_TLS_WANT_READ && st != CLIENT_TLS_WANT_WRITE)
			goto fail;
		if (wait_fd(c->fd, st == CLIENT_TLS_WANT_READ ? POLLIN : POLLOUT, deadline, c->ep,
			    err))
			return -1;
	}

fail:
	snprintf(err, CLIENT_ERR_MAX, "TLS with %s failed: %s", c->ep, why);
	return -1;
}

int client_connect(const struct client_endpoints *e, const char *ep, uint64_t deadline,
		   struct client_conn *out, char *err)
{
	uint64_t limit = client_now_ms() + CONNECT_TIMEOUT_MS;
	char host[256];

	memset(out, 0, sizeof(*out));
	out->ep = ep;
	out->fd = tcp_connect(ep, deadline, host, sizeof(host), err);
	if (out->fd < 0)
		return -1;
	if (e->tls && tls_start(out, e->tls, host, limit < deadline ? limit : deadline, err)) {
		client_conn_close(out);
		return -1;
	}
	return 0;
}

void client_conn_close(struct client_conn *c)
{
	client_tls_conn_free(c->tls);
	c->tls = NULL;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

bool client_conn_buffered(const struct client_conn *c)
{
	return c->tls && client_tls_pending(c->tls);
}

/* One send or receive: bytes moved (> 0), 0 at the end of the stream, or -1
 * with *wait the poll event to wait for, or 0 with err set. */
static ssize_t conn_io(struct client_conn *c, bool out, void *p, size_t len, short *wait, char *err)
{
	char why[CLIENT_ERR_MAX - 64];
	enum client_tls_step st;
	size_t n = 0;
	ssize_t r;

	*wait = 0;
	if (!c->tls) {
		r = out ? send(c->fd, p, len, MSG_NOSIGNAL) : recv(c->fd, p, len, 0);
		if (r >= 0)
			return r;
		if (errno == EAGAIN || errno == EINTR)
			*wait = out ? POLLOUT : POLLIN;
		else
			snprintf(err, CLIENT_ERR_MAX, "%s: %s", c->ep, strerror(errno));
		return -1;
	}
	st = out ? client_tls_write(c->tls, p, len, &n, why, sizeof(why))
		 : client_tls_read(c->tls, p, len, &n, why, sizeof(why));
	if (st == CLIENT_TLS_DONE)
		return (ssize_t)n;
	if (st == CLIENT_TLS_EOF)
		return 0;
	if (st == CLIENT_TLS_WANT_READ || st == CLIENT_TLS_WANT_WRITE)
		*wait = st == CLIENT_TLS_WANT_READ ? POLLIN : POLLOUT;
	else
		snprintf(err, CLIENT_ERR_MAX, "%s: TLS: %s", c->ep, why);
	return -1;
}

static int send_all(struct client_conn *c, const uint8_t *p, size_t len, uint64_t deadline,
		    char *err)
{
	while (len > 0) {
		short wait;
		ssize_t n = conn_io(c, true, (void *)p, len, &wait, err);

		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n == 0) {
			snprintf(err, CLIENT_ERR_MAX, "%s closed the connection", c->ep);
			return -1;
		}
		if (!wait || wait_fd(c->fd, wait, deadline, c->ep, err))
			return -1;
	}
	return 0;
}

/* 0, -1 with err, or -2 with err when the member closed the connection. */
static int recv_all(struct client_conn *c, uint8_t *p, size_t len, uint64_t deadline, char *err)
{
	while (len > 0) {
		short wait;
		ssize_t n = conn_io(c, false, p, len, &wait, err);

		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n == 0) {
			snprintf(err, CLIENT_ERR_MAX, "%s closed the connection without answering",
				 c->ep);
			return -2;
		}
		if (!wait || wait_fd(c->fd, wait, deadline, c->ep, err))
			return -1;
	}
	return 0;
}

enum call_result {
	CALL_OK,
	CALL_UNREACHED, /* nothing was sent */
	CALL_LOST,	/* sent; the answer did not arrive */
};

void client_keepalive(int fd, int idle_s)
{
	int on = 1, intvl = 2, cnt = 5;

	/* Best effort: without it a dead member is noticed only when the
	 * operator gives up. */
	(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle_s, sizeof(idle_s));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

int client_send(struct client_conn *c, const struct qbuf *frame, uint64_t deadline, char *err)
{
	return send_all(c, frame->data, frame->len, deadline, err);
}

/* The first bytes of a TLS record: a handshake or an alert, TLS 1.x. */
static bool looks_like_tls(const uint8_t *h)
{
	return (h[0] == 0x15 || h[0] == 0x16) && h[1] == 0x03 && h[2] <= 0x04;
}

int client_recv(struct client_conn *c, uint8_t type, uint64_t deadline, struct client_answer *a,
		char *err)
{
	uint8_t h[CLIENT_PROTO_HDR_SIZE];
	struct client_hdr hdr;
	const char *ep = c->ep;
	int rv;

	memset(a, 0, sizeof(*a));
	rv = recv_all(c, h, sizeof(h), deadline, err);
	if (rv == -2 && !c->tls) {
		size_t n = strlen(err);

		/* What a member whose client port speaks TLS does to us. */
		snprintf(err + n, CLIENT_ERR_MAX - n,
			 " (if its client port uses TLS, give "
			 "--cacert, --cert and --key)");
	}
	if (rv)
		return -1;
	/* Length and type are checked before allocating for the payload. */
	if (client_proto_hdr_decode(h, CLIENT_PROTO_MAX_PAYLOAD, &hdr) ||
	    hdr.type != (type | CLIENT_PROTO_RESPONSE)) {
		if (!c->tls && looks_like_tls(h))
			snprintf(err, CLIENT_ERR_MAX,
				 "%s speaks TLS: give --cacert, --cert and --key", ep);
		else
			snprintf(err, CLIENT_ERR_MAX,
				 "%s does not speak the quorumfs client protocol", ep);
		return -1;
	}
	a->payload = malloc(hdr.len ? hdr.len : 1);
	if (!a->payload) {
		snprintf(err, CLIENT_ERR_MAX, "out of memory for a %" PRIu32 " byte answer",
			 hdr.len);
		return -1;
	}
	if (recv_all(c, a->payload, hdr.len, deadline, err))
		goto fail;
	if (client_proto_crc_check(&hdr, a->payload) ||
	    client_proto_resp_decode(&hdr, a->payload, hdr.len, &a->resp)) {
		snprintf(err, CLIENT_ERR_MAX, "malformed answer from %s", ep);
		goto fail;
	}
	return 0;
fail:
	client_answer_free(a);
	return -1;
}

/* One request frame to one endpoint, one answer back. */
static enum call_result call_endpoint(const struct client_endpoints *e, const char *ep,
				      const struct qbuf *frame, uint8_t type, uint64_t deadline,
				      struct client_answer *a, char *err)
{
	enum call_result res = CALL_LOST;
	struct client_conn c;

	memset(a, 0, sizeof(*a));
	if (client_connect(e, ep, deadline, &c, err) != 0)
		return CALL_UNREACHED;
	if (client_send(&c, frame, deadline, err) == 0 &&
	    client_recv(&c, type, deadline, a, err) == 0)
		res = CALL_OK;
	client_conn_close(&c);
	return res;
}

/* Safe to send again after it may have been received. A renewal is: one
 * more renewal changes nothing a keepalive cares about. */
static bool repeatable(uint8_t type)
{
	return type == CLIENT_REQ_STATUS || type == CLIENT_REQ_MEMBER_LIST ||
	       type == CLIENT_REQ_GET || type == CLIENT_REQ_LEASE_LIST ||
	       type == CLIENT_REQ_LEASE_RENEW;
}

/* Worth asking another member: this one cannot do it now. */
bool client_ask_elsewhere(int status)
{
	return status == QFS_ENOTLEADER || status == QFS_ESHUTDOWN || status == QFS_EAGAIN;
}

/*
 * Sends r to the endpoints (or only to `only`), following NOTLEADER once.
 * Returns 0 with an answer (whose status may be an error) or -1 with err.
 */
int client_request(const struct client_endpoints *e, const struct client_req *r, const char *only,
		   struct client_answer *a, char *err)
{
	uint64_t deadline = client_now_ms() + e->timeout_ms;
	size_t n = only ? 1 : e->n;
	struct client_answer last = {0};
	bool have_last = false, followed = false;
	char leader[CLIENT_PROTO_ADDR_MAX + 1];
	struct qbuf frame;
	int rv = -1;

	qbuf_init(&frame);
	if (client_proto_req_encode(r, &frame) != 0) {
		snprintf(err, CLIENT_ERR_MAX, "%s",
			 (r->type == CLIENT_REQ_PUT || r->type == CLIENT_REQ_PUT_LEASE) &&
				 strlen(r->key) <= CLIENT_PROTO_KEY_MAX
			     ? qfs_strerror(QFS_EFBIG)
			 : r->type == CLIENT_REQ_TXN ? "transaction too large for the protocol"
						     : "argument too long for the protocol");
		goto out;
	}
	snprintf(err, CLIENT_ERR_MAX, "no endpoint to ask");
	for (size_t i = 0; i < n; i++) {
		const char *ep = only ? only : e->ep[i];

		/* Out of time: the last attempt's error says more than a
		 * timeout on an endpoint never tried. */
		if (i > 0 && client_now_ms() >= deadline)
			break;
		for (;;) {
			enum call_result cr =
			    call_endpoint(e, ep, &frame, r->type, deadline, a, err);

			if (cr == CALL_LOST && !repeatable(r->type)) {
				size_t len = strlen(err);

				snprintf(err + len, CLIENT_ERR_MAX - len,
					 " (the request may or may not have been applied)");
				goto out;
			}
			if (cr != CALL_OK)
				break;
			if (!client_ask_elsewhere(a->resp.status)) {
				rv = 0;
				goto out;
			}
			client_answer_free(&last);
			last = *a;
			have_last = true;
			memset(a, 0, sizeof(*a));
			if (followed || last.resp.status != QFS_ENOTLEADER ||
			    !last.resp.leader_client[0] || strcmp(last.resp.leader_client, ep) == 0)
				break;
			followed = true;
			snprintf(leader, sizeof(leader), "%s", last.resp.leader_client);
			ep = leader;
		}
	}
	if (have_last) {
		/* Nobody could do it: report what the last member said. */
		*a = last;
		memset(&last, 0, sizeof(last));
		rv = 0;
	}
out:
	client_answer_free(&last);
	qbuf_close(&frame);
	return rv;
}
