/*
 * Peer transport: moves opaque, typed frames between cluster members named
 * by a u64 member id, over streams (stream.h: plain TCP, or mutual TLS from
 * stream_tls.h; the transport does not know which). It
 * knows nothing of Raft; the driver encodes Raft messages into payloads.
 *
 * Links: each member sends only on its own outbound connection to a peer and
 * only reads frames from inbound connections (one per remote member). So
 * two members have two TCP connections, one per direction, and nobody has
 * to break a tie when both dial at once. The outbound connection is read
 * only to notice the peer closing it.
 *
 * The process must ignore SIGPIPE (libuv writes with write(2)): a peer that
 * closes first then fails a write with EPIPE instead of killing it.
 *
 * Everything runs on the loop thread: no disk I/O, no blocking, so a
 * heartbeat is never queued behind an fsync. Each peer has its own send
 * queue bounded in bytes; a slow or dead peer fills only its own queue, and
 * then its frames are dropped (Raft retransmits), never buffered without
 * bound and never holding up frames to other peers.
 *
 * Wire format (all integers little-endian), TRANSPORT_HDR_SIZE header then
 * payload:
 *   u32 magic (TRANSPORT_MAGIC)   u8 version (TRANSPORT_VERSION)
 *   u8 frame type                 u16 reserved (sent as 0, ignored)
 *   u32 payload length            u32 CRC32 (zlib) of the payload
 * The first frame on a connection is the handshake (type
 * TRANSPORT_FRAME_HANDSHAKE, TRANSPORT_HANDSHAKE_SIZE bytes): u64 sender
 * member id, u64 cluster id, u8 protocol version. A receiver closes the
 * connection, logging one line, on: wrong magic or version, a length over
 * max_frame (checked before allocating; before the handshake only the
 * handshake's own size is allowed), bad CRC, a first frame that is not a
 * valid handshake, a wrong cluster id, the sender claiming our own id, or
 * an id its stream does not prove (see Identity). Nothing else is affected.
 *
 * Identity: the sender id comes from the handshake frame. With plain TCP it
 * is taken on trust: anyone who can reach the port can claim any id. With
 * TLS only a holder of a certificate from the peer CA gets that far, and
 * the optional peer_allowed callback decides whether the name the stream
 * proved (stream_peer_name(): the certificate's CN) may be the member it
 * claims to be; the dialling side asks it too about the member it dialled.
 * The transport knows nothing of how names and ids relate.
 */
#ifndef QFS_TRANSPORT_H
#define QFS_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "stream.h"

#define TRANSPORT_MAGIC 0x50534651u /* "QFSP" on the wire */
#define TRANSPORT_VERSION 1
#define TRANSPORT_HDR_SIZE 16
#define TRANSPORT_FRAME_HANDSHAKE 0 /* reserved; callers use types 1..255 */
#define TRANSPORT_HANDSHAKE_SIZE 17
/* Default payload bound: an 8 MiB Raft message plus room for its header. */
#define TRANSPORT_MAX_FRAME_DEFAULT ((8u << 20) + (64u << 10))

struct transport;

enum transport_peer_state {
	/* Our outbound connection to the peer is up and its handshake sent:
	 * frames queued for it are flowing. */
	TRANSPORT_PEER_CONNECTED,
	/* We closed an established outbound connection ourselves (the peer
	 * broke the protocol); reconnecting with backoff. */
	TRANSPORT_PEER_DISCONNECTED,
	/* An established connection with the peer, in either direction, ended
	 * by EOF, reset or a socket error: likely the peer process died or
	 * restarted. May come twice for one crash (once per direction); treat
	 * it as an idempotent hint (e.g. a follower that loses its leader
	 * starts a pre-vote at once). */
	TRANSPORT_PEER_RESET,
};

struct transport_callbacks {
	/* A frame from member `from` (any id that passed the handshake, known
	 * peer or not). payload is borrowed for the duration of the call. */
	void (*on_frame)(void *arg, uint64_t from, uint8_t type, const uint8_t *payload,
			 size_t len);
	void (*on_peer_state)(void *arg, uint64_t peer, enum transport_peer_state state);
	void *arg;
};

struct transport_config {
	uint64_t self_id;    /* != 0 */
	uint64_t cluster_id; /* both ends must agree */
	/* "IPV4:PORT" or "[IPV6]:PORT", numeric only; port 0 picks a free
	 * port (see transport_listen_port()). Borrowed. */
	const char *listen_addr;
	struct transport_callbacks cb;
	/* Optional: 0 / NULL take the defaults in brackets. */
	size_t max_frame;	       /* payload bytes [TRANSPORT_MAX_FRAME_DEFAULT] */
	size_t max_queue;	       /* per-peer queued bytes, headers included, at
					* least one max frame [4 * (max_frame + hdr)] */
	unsigned max_inbound;	       /* inbound connections [64] */
	uint64_t backoff_min_ms;       /* first reconnect delay [50] */
	uint64_t backoff_max_ms;       /* doubling up to [2000] */
	uint64_t connect_timeout_ms;   /* [1000] */
	uint64_t handshake_timeout_ms; /* inbound, accept to handshake [5000] */
	/* Jitter source for reconnect delays; NULL: a per-transport generator
	 * seeded from the loop's clock and self_id. */
	uint64_t (*rand)(void *arg);
	void *rand_arg;
	/* Borrowed, must outlive the transport; NULL = stream_tcp_factory(). */
	const struct qfs_stream_factory *streams;
	/* Whether the other end of a connection may be member claimed_id (arg:
	 * cb.arg). cert_name is the name its stream proved (stream_peer_name():
	 * a TLS certificate's CN), NULL when it proved none. Asked about an
	 * inbound connection once its handshake arrives, before any frame of it
	 * is delivered and before it replaces an older connection from that
	 * member; about an outbound one once connected, before anything is
	 * sent on it. false closes the connection with a warning naming the
	 * address, the member and the name (repeats of the same refusal within
	 * a minute at debug level); an outbound link retries with backoff.
	 * Runs on the loop, inside the transport: it must not call transport_*.
	 * NULL: every claim is believed. */
	bool (*peer_allowed)(void *arg, uint64_t claimed_id, const char *cert_name);
};

/*
 * Creates a transport listening on cfg->listen_addr (cfg and its strings are
 * copied; the callbacks' arg is borrowed). Returns 0, QFS_EINVAL (bad
 * address or config, logged), QFS_EIO (cannot bind or listen, logged) or
 * QFS_ENOMEM.
 *
 * All calls are made on the loop thread. Callbacks run only from the loop,
 * never inside a transport_* call, and never after transport_close(). A
 * callback may call any transport_* function, including transport_close().
 */
int transport_create(uv_loop_t *loop, const struct transport_config *cfg, struct transport **out);

/* The port the listener is bound to (useful after binding port 0). */
int transport_listen_port(const struct transport *t);

/* Starts connecting to a peer at "HOST:PORT" (copied), reconnecting with
 * exponential backoff and jitter for as long as it is a peer. Returns 0,
 * QFS_EINVAL (bad address, id 0 or our own id), QFS_EEXIST or QFS_ENOMEM. */
int transport_peer_add(struct transport *t, uint64_t id, const char *addr);

/* Forgets a peer: closes its connection, drops its queued frames. No
 * callback reports it. Inbound connections from it stay open (it may
 * still send; the caller decides what to do with its frames). Returns 0
 * or QFS_ENOENT. */
int transport_peer_remove(struct transport *t, uint64_t id);

/*
 * Queues a frame for peer `to`. Copies payload (the caller keeps it). Never
 * blocks. Frames to one peer are sent in call order on one connection;
 * frames queued while the peer is unreachable are sent when it connects,
 * and frames already written to a connection that breaks are lost: the
 * transport never retransmits. Returns 0, QFS_EAGAIN (the peer's queue
 * is full: frame dropped), QFS_ENOENT (unknown peer), QFS_EINVAL (type 0
 * or len > max_frame), QFS_ESHUTDOWN (closing), QFS_ENOMEM, or the
 * error of a connection that is failing (QFS_EIO; it is then reported
 * through on_peer_state shortly).
 */
int transport_send(struct transport *t, uint64_t to, uint8_t type, const void *payload, size_t len);

/* Bytes queued for a peer and not yet written to the kernel (headers
 * included), or 0 for an unknown peer. */
size_t transport_queued(const struct transport *t, uint64_t peer);

/*
 * Closes the listener and every connection, drops queued frames; cb (may be
 * NULL) runs from the loop once every handle is closed, then t is freed.
 * No other callback runs after this call.
 */
void transport_close(struct transport *t, void (*cb)(void *arg), void *arg);

/* Parses "IPV4:PORT" or "[IPV6]:PORT" (numeric, port 0..65535). Returns 0
 * or QFS_EINVAL. */
int transport_addr_parse(const char *s, struct sockaddr_storage *out);

#endif
