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

/* A connected non-blocking socket, or -1 with err set. */
int client_connect(const char *ep, uint64_t deadline, char *err)
{
	struct addrinfo hints = {
	    .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	char host[256];
	const char *port;
	uint64_t limit = client_now_ms() + CONNECT_TIMEOUT_MS;
	int fd = -1, rv;

	if (split_endpoint(ep, host, sizeof(host), &port) != 0) {
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

static int send_all(int fd, const uint8_t *p, size_t len, uint64_t deadline, const char *ep,
		    char *err)
{
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EINTR) {
			snprintf(err, CLIENT_ERR_MAX, "%s: %s", ep, strerror(errno));
			return -1;
		}
		if (wait_fd(fd, POLLOUT, deadline, ep, err))
			return -1;
	}
	return 0;
}

static int recv_all(int fd, uint8_t *p, size_t len, uint64_t deadline, const char *ep, char *err)
{
	while (len > 0) {
		ssize_t n = recv(fd, p, len, 0);

		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n == 0) {
			snprintf(err, CLIENT_ERR_MAX, "%s closed the connection without answering",
				 ep);
			return -1;
		}
		if (errno != EAGAIN && errno != EINTR) {
			snprintf(err, CLIENT_ERR_MAX, "%s: %s", ep, strerror(errno));
			return -1;
		}
		if (wait_fd(fd, POLLIN, deadline, ep, err))
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

int client_send(int fd, const struct qbuf *frame, uint64_t deadline, const char *ep, char *err)
{
	return send_all(fd, frame->data, frame->len, deadline, ep, err);
}

int client_recv(int fd, uint8_t type, uint64_t deadline, const char *ep, struct client_answer *a,
		char *err)
{
	uint8_t h[CLIENT_PROTO_HDR_SIZE];
	struct client_hdr hdr;

	memset(a, 0, sizeof(*a));
	if (recv_all(fd, h, sizeof(h), deadline, ep, err))
		return -1;
	/* Length and type are checked before allocating for the payload. */
	if (client_proto_hdr_decode(h, CLIENT_PROTO_MAX_PAYLOAD, &hdr) ||
	    hdr.type != (type | CLIENT_PROTO_RESPONSE)) {
		snprintf(err, CLIENT_ERR_MAX, "%s does not speak the quorumfs client protocol", ep);
		return -1;
	}
	a->payload = malloc(hdr.len ? hdr.len : 1);
	if (!a->payload) {
		snprintf(err, CLIENT_ERR_MAX, "out of memory for a %" PRIu32 " byte answer",
			 hdr.len);
		return -1;
	}
	if (recv_all(fd, a->payload, hdr.len, deadline, ep, err))
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
static enum call_result call_endpoint(const char *ep, const struct qbuf *frame, uint8_t type,
				      uint64_t deadline, struct client_answer *a, char *err)
{
	enum call_result res = CALL_LOST;
	int fd = client_connect(ep, deadline, err);

	memset(a, 0, sizeof(*a));
	if (fd < 0)
		return CALL_UNREACHED;
	if (client_send(fd, frame, deadline, ep, err) == 0 &&
	    client_recv(fd, type, deadline, ep, a, err) == 0)
		res = CALL_OK;
	close(fd);
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
	return status == QFS_ENOTLEADER || status == QFS_ESHUTDOWN;
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
			enum call_result cr = call_endpoint(ep, &frame, r->type, deadline, a, err);

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
