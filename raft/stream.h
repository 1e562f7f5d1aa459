/*
 * Byte streams for the peer transport: the few operations the transport
 * needs from a connection (read, write a buffer list, close, connect,
 * accept, who the other end proved to be), behind a table of function
 * pointers so that an OpenSSL stream can replace plain TCP without touching
 * transport.c or the Raft core (stream_tcp.c, stream_tls.c).
 *
 * Contract for every implementation:
 *
 * - Thread: everything, calls and callbacks, happens on the thread running
 *   the uv loop the stream was created on. Callbacks never run inside the
 *   call that started them (no re-entry): they come from the loop.
 * - Ownership: the implementation allocates the stream and frees it right
 *   after the close callback returns. The caller must call stream_close()
 *   exactly once, also after an error, and must not use the stream after.
 * - Connect: the connect callback runs exactly once, before any other
 *   callback and before the close callback; status 0 means the stream is
 *   ready for reads and writes (for TLS: the handshake has completed and the
 *   peer certificate was verified). A stream closed while connecting gets
 *   its connect callback with QFS_ESHUTDOWN.
 * - Accept: a stream returned by accept is usable at once; an implementation
 *   that needs a handshake (TLS) buffers writes until it is done and reports
 *   a failed handshake as a read error, before delivering any byte.
 * - Reads: after stream_read_start(), the read callback gets the bytes in
 *   order (data borrowed for the duration of the callback), then at most one
 *   final call with err < 0 (QFS_EIO: end of stream, reset or any error)
 *   after which no more reads are delivered. The callback may call
 *   stream_close(); no read callback follows. stream_read_stop() pauses
 *   delivery (bytes stay with the kernel or the implementation) until the
 *   next stream_read_start(), which may change the callback.
 * - Writes: stream_write() queues the buffers (the uv_buf_t array is copied,
 *   the bytes are NOT: they must stay valid until the write callback). Write
 *   callbacks run exactly once per accepted write, in the order the writes
 *   were made, with 0 or a negative QFS code (QFS_ESHUTDOWN when cancelled by
 *   stream_close()). A write that returns an error is not queued and gets
 *   no callback. Writes never block the loop.
 * - Close: stream_close() stops reads, cancels queued writes (their
 *   callbacks run with an error), then runs the close callback once.
 */
#ifndef QFS_STREAM_H
#define QFS_STREAM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

struct qfs_stream;

typedef void (*qfs_stream_read_cb)(struct qfs_stream *s, void *arg, const uint8_t *data, size_t len,
				   int err);
typedef void (*qfs_stream_write_cb)(struct qfs_stream *s, void *arg, int status);
typedef void (*qfs_stream_close_cb)(struct qfs_stream *s, void *arg);
typedef void (*qfs_stream_connect_cb)(struct qfs_stream *s, void *arg, int status);

struct qfs_stream_ops {
	int (*read_start)(struct qfs_stream *s, qfs_stream_read_cb cb, void *arg);
	void (*read_stop)(struct qfs_stream *s);
	int (*write)(struct qfs_stream *s, const uv_buf_t *bufs, unsigned nbufs,
		     qfs_stream_write_cb cb, void *arg);
	void (*close)(struct qfs_stream *s, qfs_stream_close_cb cb, void *arg);
	/* Remote address, for log lines. Returns 0 or QFS_EIO. */
	int (*peer_addr)(struct qfs_stream *s, struct sockaddr_storage *out);
	/* Who the other end proved to be, for identity checks: a TLS stream's
	 * verified certificate CN, known once connected (accept: once the
	 * first byte is delivered). Copied into buf with its NUL. Returns 0,
	 * QFS_ENOENT (plain TCP, not verified yet, no CN or one with a NUL in
	 * it) or QFS_ERANGE (longer than len - 1: never truncated, since a
	 * prefix may be someone else's name). */
	int (*peer_name)(struct qfs_stream *s, char *buf, size_t len);
	/* The stream no longer keeps its loop running (uv_unref of all it
	 * holds): for a server whose loop must end with clients connected. */
	void (*unref)(struct qfs_stream *s);
};

/* Base of every implementation's stream struct. */
struct qfs_stream {
	const struct qfs_stream_ops *ops;
};

/* Makes streams: one factory per kind (plain TCP, TLS with its context). */
struct qfs_stream_factory {
	/* Starts an outbound connection from local (NULL: any address) to
	 * addr; on 0, *out is the (connecting) stream and cb will run once. */
	int (*connect)(void *ctx, uv_loop_t *loop, const struct sockaddr *local,
		       const struct sockaddr *addr, qfs_stream_connect_cb cb, void *arg,
		       struct qfs_stream **out);
	/* Accepts one pending connection of a listening uv_tcp_t. */
	int (*accept)(void *ctx, uv_stream_t *server, struct qfs_stream **out);
	void *ctx; /* borrowed; outlives every stream it made */
};

static inline int stream_read_start(struct qfs_stream *s, qfs_stream_read_cb cb, void *arg)
{
	return s->ops->read_start(s, cb, arg);
}

static inline void stream_read_stop(struct qfs_stream *s)
{
	s->ops->read_stop(s);
}

static inline int stream_write(struct qfs_stream *s, const uv_buf_t *bufs, unsigned nbufs,
			       qfs_stream_write_cb cb, void *arg)
{
	return s->ops->write(s, bufs, nbufs, cb, arg);
}

static inline void stream_close(struct qfs_stream *s, qfs_stream_close_cb cb, void *arg)
{
	s->ops->close(s, cb, arg);
}

static inline void stream_unref(struct qfs_stream *s)
{
	s->ops->unref(s);
}

static inline int stream_peer_addr(struct qfs_stream *s, struct sockaddr_storage *out)
{
	return s->ops->peer_addr(s, out);
}

static inline int stream_peer_name(struct qfs_stream *s, char *buf, size_t len)
{
	return s->ops->peer_name(s, buf, len);
}

/* "IP:PORT" or "[IPV6]:PORT" of sa into buf ("?" for another family), for
 * log lines; 64 bytes hold any of them. */
void stream_addr_name(const struct sockaddr *sa, char *buf, size_t len);

/* Plain TCP (TCP_NODELAY, keepalive, user timeout). Static; never freed. */
const struct qfs_stream_factory *stream_tcp_factory(void);

#endif
