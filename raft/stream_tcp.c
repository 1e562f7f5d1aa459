/*
 * Plain libuv TCP implementation of the stream interface (stream.h). Peer
 * traffic is small latency-sensitive messages (heartbeats, votes) mixed with
 * large ones, so Nagle is off; keepalive and TCP_USER_TIMEOUT make a peer
 * that vanished without a FIN (power loss, partition) show up as a read
 * error instead of a connection that stays "up" for the kernel's ~15 min.
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>

#include "../common/errors.h"
#include "stream.h"

#define READ_BUF_SIZE (64 * 1024)
#define KEEPALIVE_DELAY_S 5
#define USER_TIMEOUT_MS 10000

struct tcp_stream {
	struct qfs_stream base;
	uv_tcp_t tcp;
	uv_connect_t connect_req;
	qfs_stream_connect_cb connect_cb;
	void *connect_arg;
	qfs_stream_read_cb read_cb;
	void *read_arg;
	qfs_stream_close_cb close_cb;
	void *close_arg;
	int closing;
	int read_done; /* the final read callback has run */
	/* One buffer per stream is enough: libuv hands each read to on_read
	 * before asking for the next buffer. */
	char rbuf[READ_BUF_SIZE];
};

struct tcp_write {
	uv_write_t req;
	struct tcp_stream *ts;
	qfs_stream_write_cb cb;
	void *arg;
};

static void set_options(struct tcp_stream *ts)
{
	uv_os_fd_t fd;
	unsigned timeout = USER_TIMEOUT_MS;

	/* Best effort: a socket without them still works, only slower to
	 * notice a dead peer. */
	uv_tcp_nodelay(&ts->tcp, 1);
	uv_tcp_keepalive(&ts->tcp, 1, KEEPALIVE_DELAY_S);
	if (uv_fileno((uv_handle_t *)&ts->tcp, &fd) == 0)
		setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &timeout, sizeof(timeout));
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct tcp_stream *ts = h->data;

	(void)hint;
	*buf = uv_buf_init(ts->rbuf, sizeof(ts->rbuf));
}

static void on_read(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf)
{
	struct tcp_stream *ts = h->data;

	(void)buf;
	if (ts->closing || ts->read_done)
		return;
	if (nread > 0) {
		ts->read_cb(&ts->base, ts->read_arg, (const uint8_t *)ts->rbuf, (size_t)nread, 0);
	} else if (nread < 0) {
		ts->read_done = 1;
		uv_read_stop(h);
		ts->read_cb(&ts->base, ts->read_arg, NULL, 0, QFS_EIO);
	}
}

static int tcp_read_start(struct qfs_stream *s, qfs_stream_read_cb cb, void *arg)
{
	struct tcp_stream *ts = (struct tcp_stream *)s;

	if (ts->closing)
		return QFS_ESHUTDOWN;
	ts->read_cb = cb;
	ts->read_arg = arg;
	return uv_read_start((uv_stream_t *)&ts->tcp, on_alloc, on_read) == 0 ? 0 : QFS_EIO;
}

static void tcp_read_stop(struct qfs_stream *s)
{
	struct tcp_stream *ts = (struct tcp_stream *)s;

	if (!ts->closing)
		uv_read_stop((uv_stream_t *)&ts->tcp);
}

static void on_write(uv_write_t *req, int status)
{
	struct tcp_write *w = req->data;
	int err = 0;

	if (status == UV_ECANCELED)
		err = QFS_ESHUTDOWN;
	else if (status < 0)
		err = QFS_EIO;
	w->cb(&w->ts->base, w->arg, err);
	free(w);
}

static int tcp_write(struct qfs_stream *s, const uv_buf_t *bufs, unsigned nbufs,
		     qfs_stream_write_cb cb, void *arg)
{
	struct tcp_stream *ts = (struct tcp_stream *)s;
	struct tcp_write *w;

	if (ts->closing)
		return QFS_ESHUTDOWN;
	w = malloc(sizeof(*w));
	if (!w)
		return QFS_ENOMEM;
	w->ts = ts;
	w->cb = cb;
	w->arg = arg;
	w->req.data = w;
	if (uv_write(&w->req, (uv_stream_t *)&ts->tcp, bufs, nbufs, on_write) != 0) {
		free(w);
		return QFS_EIO;
	}
	return 0;
}

static void on_close(uv_handle_t *h)
{
	struct tcp_stream *ts = h->data;

	if (ts->close_cb)
		ts->close_cb(&ts->base, ts->close_arg);
	free(ts);
}

static void tcp_close(struct qfs_stream *s, qfs_stream_close_cb cb, void *arg)
{
	struct tcp_stream *ts = (struct tcp_stream *)s;

	ts->closing = 1;
	ts->close_cb = cb;
	ts->close_arg = arg;
	uv_close((uv_handle_t *)&ts->tcp, on_close);
}

static int tcp_peer_addr(struct qfs_stream *s, struct sockaddr_storage *out)
{
	struct tcp_stream *ts = (struct tcp_stream *)s;
	int len = sizeof(*out);

	return uv_tcp_getpeername(&ts->tcp, (struct sockaddr *)out, &len) == 0 ? 0 : QFS_EIO;
}

static int tcp_peer_name(struct qfs_stream *s, char *buf, size_t len)
{
	(void)s;
	(void)buf;
	(void)len;
	return QFS_ENOENT; /* plain TCP proves nothing about the other end */
}

static void tcp_unref(struct qfs_stream *s)
{
	uv_unref((uv_handle_t *)&((struct tcp_stream *)s)->tcp);
}

static const struct qfs_stream_ops tcp_ops = {
    .read_start = tcp_read_start,
    .read_stop = tcp_read_stop,
    .write = tcp_write,
    .close = tcp_close,
    .peer_addr = tcp_peer_addr,
    .peer_name = tcp_peer_name,
    .unref = tcp_unref,
};

static struct tcp_stream *tcp_new(uv_loop_t *loop)
{
	struct tcp_stream *ts = calloc(1, sizeof(*ts));

	if (!ts)
		return NULL;
	if (uv_tcp_init(loop, &ts->tcp) != 0) {
		free(ts);
		return NULL;
	}
	ts->base.ops = &tcp_ops;
	ts->tcp.data = ts;
	return ts;
}

static void on_connect(uv_connect_t *req, int status)
{
	struct tcp_stream *ts = req->data;
	int err = 0;

	if (status == UV_ECANCELED || ts->closing)
		err = QFS_ESHUTDOWN;
	else if (status < 0)
		err = QFS_EIO;
	if (!err)
		set_options(ts);
	ts->connect_cb(&ts->base, ts->connect_arg, err);
}

static int tcp_connect(void *ctx, uv_loop_t *loop, const struct sockaddr *local,
		       const struct sockaddr *addr, qfs_stream_connect_cb cb, void *arg,
		       struct qfs_stream **out)
{
	struct tcp_stream *ts = tcp_new(loop);

	(void)ctx;
	if (!ts)
		return QFS_ENOMEM;
	ts->connect_cb = cb;
	ts->connect_arg = arg;
	ts->connect_req.data = ts;
	if ((local && uv_tcp_bind(&ts->tcp, local, 0) != 0) ||
	    uv_tcp_connect(&ts->connect_req, &ts->tcp, addr, on_connect) != 0) {
		/* Nothing pending: closing runs no callback but on_close. */
		uv_close((uv_handle_t *)&ts->tcp, on_close);
		return QFS_EIO;
	}
	*out = &ts->base;
	return 0;
}

static int tcp_accept(void *ctx, uv_stream_t *server, struct qfs_stream **out)
{
	struct tcp_stream *ts = tcp_new(server->loop);

	(void)ctx;
	if (!ts)
		return QFS_ENOMEM;
	if (uv_accept(server, (uv_stream_t *)&ts->tcp) != 0) {
		uv_close((uv_handle_t *)&ts->tcp, on_close);
		return QFS_EIO;
	}
	set_options(ts);
	*out = &ts->base;
	return 0;
}

static const struct qfs_stream_factory tcp_factory = {
    .connect = tcp_connect,
    .accept = tcp_accept,
    .ctx = NULL,
};

const struct qfs_stream_factory *stream_tcp_factory(void)
{
	return &tcp_factory;
}
