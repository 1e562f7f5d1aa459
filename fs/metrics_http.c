/*
 * --metrics-listen: a minimal HTTP/1.1 responder on the loop thread for
 * Prometheus and health checkers. GET (or HEAD) of
 *   /metrics  the member's Prometheus page (metrics_page.c)
 *   /health   200 {"health":"true"} while a leader is known, else 503
 *   /readyz   200 once a leader is known and this member has applied
 *             everything it knows committed, else 503 with the reason
 * One request per connection (Connection: close). A request is read up
 * to a bounded size and within a deadline; anything else gets a 4xx. After
 * the answer the connection lingers (write side shut, input discarded until
 * EOF or LINGER_MS), so the client reads the answer instead of a reset.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "../common/errors.h"
#include "../common/log.h"
#include "../raft/transport.h"
#include "metrics_http.h"
#include "metrics_page.h"
#include "server.h"

#define REQUEST_MAX 8192 /* a scrape's request is a few hundred bytes */
#define CONNS_MAX 64
#define DEADLINE_MS 5000
#define LINGER_MS 2000

struct http_conn {
	struct metrics_http *mh;
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_write_t wr;
	uv_shutdown_t shut;
	char req[REQUEST_MAX];
	size_t len;
	char *resp; /* owned while written */
	int handles; /* open uv handles: freed when 0 */
	bool answered;
	struct http_conn *prev, *next;
};

struct metrics_http {
	struct server *srv;
	uv_loop_t *loop;
	uv_tcp_t listener;
	struct http_conn *conns;
	size_t nconns;
	int handles;
};

static void on_conn_handle_closed(uv_handle_t *h)
{
	struct http_conn *c = h->data;

	if (--c->handles > 0)
		return;
	free(c->resp);
	free(c);
}

static void conn_close(struct http_conn *c)
{
	if (uv_is_closing((uv_handle_t *)&c->tcp))
		return;
	if (c->prev)
		c->prev->next = c->next;
	else
		c->mh->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->mh->nconns--;
	uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
	uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
}

static void on_shut(uv_shutdown_t *s, int status)
{
	(void)s;
	(void)status; /* the client's EOF or the linger timer closes */
}

static void on_written(uv_write_t *w, int status)
{
	struct http_conn *c = w->data;

	c->shut.data = c;
	if (status != 0 || uv_shutdown(&c->shut, (uv_stream_t *)&c->tcp, on_shut) != 0)
		conn_close(c);
}

static void on_deadline(uv_timer_t *t);

static void respond(struct http_conn *c, int code, const char *type, const void *body,
		    size_t len, bool head)
{
	const char *reason = code == 200   ? "OK"
			     : code == 400 ? "Bad Request"
			     : code == 404 ? "Not Found"
			     : code == 405 ? "Method Not Allowed"
			     : code == 408 ? "Request Timeout"
			     : code == 431 ? "Request Header Fields Too Large"
			     : code == 503 ? "Service Unavailable"
					   : "Internal Server Error";
	struct qbuf b;
	size_t n;
	uv_buf_t buf;

	c->answered = true;
	uv_timer_start(&c->timer, on_deadline, LINGER_MS, 0);
	qbuf_init(&b);
	qbuf_printf(&b,
		    "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
		    "Connection: close\r\n\r\n",
		    code, reason, type, len);
	if (!head)
		qbuf_put(&b, body, len);
	if (qbuf_error(&b)) {
		qbuf_close(&b);
		conn_close(c);
		return;
	}
	c->resp = (char *)qbuf_take(&b, &n);
	buf = uv_buf_init(c->resp, (unsigned)n);
	c->wr.data = c;
	if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &buf, 1, on_written) != 0)
		conn_close(c);
}

static void respond_text(struct http_conn *c, int code, const char *text, bool head)
{
	respond(c, code, "text/plain; charset=utf-8", text, strlen(text), head);
}

static void serve_metrics(struct http_conn *c, bool head)
{
	struct qbuf page;

	qbuf_init(&page);
	metrics_page(c->mh->srv, &page);
	if (qbuf_error(&page))
		respond_text(c, 500, "out of memory\n", head);
	else
		respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", page.data, page.len,
			head);
	qbuf_close(&page);
}

static void serve_health(struct http_conn *c, bool ready, bool head)
{
	struct server_status st;
	const char *why = NULL;
	char body[160];

	server_status(c->mh->srv, &st);
	if (st.leader_id == 0)
		why = "no leader";
	else if (ready && st.applied_index < st.commit_index)
		why = "still applying committed entries";
	if (ready)
		snprintf(body, sizeof(body), why ? "not ready: %s\n" : "ok\n", why);
	else
		snprintf(body, sizeof(body),
			 why ? "{\"health\":\"false\",\"reason\":\"%s\"}\n" : "{\"health\":\"true\"}\n",
			 why);
	respond(c, why ? 503 : 200, ready ? "text/plain; charset=utf-8" : "application/json",
		body, strlen(body), head);
}

/* The request line of a complete request: METHOD SP TARGET SP HTTP/1.x. */
static void serve(struct http_conn *c)
{
	char method[8], target[256], version[16];
	bool head;

	c->req[c->len] = 0;
	if (sscanf(c->req, "%7s %255s %15s", method, target, version) != 3 ||
	    strncmp(version, "HTTP/1.", 7) != 0) {
		respond_text(c, 400, "bad request line\n", false);
		return;
	}
	head = strcmp(method, "HEAD") == 0;
	if (!head && strcmp(method, "GET") != 0) {
		respond_text(c, 405, "only GET and HEAD\n", false);
		return;
	}
	target[strcspn(target, "?")] = 0; /* a scraper's query string means nothing here */
	if (strcmp(target, "/metrics") == 0)
		serve_metrics(c, head);
	else if (strcmp(target, "/health") == 0)
		serve_health(c, false, head);
	else if (strcmp(target, "/readyz") == 0)
		serve_health(c, true, head);
	else
		respond_text(c, 404, "not found: try /metrics, /health or /readyz\n", head);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct http_conn *c = h->data;

	(void)suggested;
	if (c->answered) /* lingering: whatever comes is dropped */
		*buf = uv_buf_init(c->req, sizeof(c->req));
	else
		*buf = uv_buf_init(c->req + c->len, (unsigned)(sizeof(c->req) - 1 - c->len));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct http_conn *c = s->data;

	(void)buf;
	if (nread < 0) {
		conn_close(c);
		return;
	}
	if (c->answered)
		return;
	c->len += (size_t)nread;
	c->req[c->len] = 0;
	if (strstr(c->req, "\r\n\r\n") || strstr(c->req, "\n\n"))
		serve(c);
	else if (c->len >= sizeof(c->req) - 1)
		respond_text(c, 431, "request too large\n", false);
}

static void on_deadline(uv_timer_t *t)
{
	struct http_conn *c = t->data;

	if (c->answered)
		conn_close(c); /* lingered long enough */
	else
		respond_text(c, 408, "request not received in time\n", false);
}

static void on_connection(uv_stream_t *server, int status)
{
	struct metrics_http *mh = server->data;
	struct http_conn *c;

	if (status < 0 || !(c = calloc(1, sizeof(*c))))
		return;
	c->mh = mh;
	uv_tcp_init(mh->loop, &c->tcp);
	uv_timer_init(mh->loop, &c->timer);
	c->tcp.data = c->timer.data = c;
	c->handles = 2;
	c->next = mh->conns;
	if (mh->conns)
		mh->conns->prev = c;
	mh->conns = c;
	mh->nconns++;
	if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 || mh->nconns > CONNS_MAX) {
		conn_close(c); /* over the limit: the scraper retries */
		return;
	}
	uv_timer_start(&c->timer, on_deadline, DEADLINE_MS, 0);
	if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
		conn_close(c);
}

int metrics_http_create(struct server *srv, const char *addr, struct metrics_http **out)
{
	struct sockaddr_storage ss;
	struct metrics_http *mh;
	int rv;

	*out = NULL;
	if (transport_addr_parse(addr, &ss) != 0) {
		LOG_ERROR("--metrics-listen %s: want IPV4:PORT or [IPV6]:PORT", addr);
		return QFS_EINVAL;
	}
	if (!(mh = calloc(1, sizeof(*mh))))
		return QFS_ENOMEM;
	mh->srv = srv;
	mh->loop = server_loop(srv);
	uv_tcp_init(mh->loop, &mh->listener);
	mh->listener.data = mh;
	mh->handles = 1;
	uv_unref((uv_handle_t *)&mh->listener);
	rv = uv_tcp_bind(&mh->listener, (struct sockaddr *)&ss, 0);
	if (!rv)
		rv = uv_listen((uv_stream_t *)&mh->listener, 64, on_connection);
	if (rv) {
		LOG_ERROR("--metrics-listen %s: cannot listen: %s", addr, uv_strerror(rv));
		metrics_http_close(mh);
		return QFS_EIO;
	}
	LOG_INFO("metrics on http://%s/metrics", addr);
	*out = mh;
	return 0;
}

static void on_listener_closed(uv_handle_t *h)
{
	struct metrics_http *mh = h->data;

	mh->handles--;
}

void metrics_http_close(struct metrics_http *mh)
{
	if (!mh)
		return;
	uv_close((uv_handle_t *)&mh->listener, on_listener_closed);
	while (mh->conns)
		conn_close(mh->conns);
	/* Close callbacks run in the next iterations (NOWAIT, as the client port). */
	while (mh->handles > 0)
		uv_run(mh->loop, UV_RUN_NOWAIT);
	uv_run(mh->loop, UV_RUN_NOWAIT);
	free(mh);
}
