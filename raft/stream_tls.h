/*
 * Mutual TLS streams (stream.h) with OpenSSL: a factory that wraps another
 * factory's streams (plain TCP by default) and runs TLS over them through
 * memory BIOs, so the socket stays libuv's and nothing ever blocks.
 *
 * Both ends present a certificate and both verify the other's against the
 * CA file (TLS 1.2 at least; 1.3 when both ends have it). A connecting
 * stream also checks that the server's certificate names the IP address it
 * dialled (subjectAltName IP). stream_peer_name() of a stream gives its
 * verified certificate's CN: which member or user the other end is is for
 * the stream's user to decide. A refused handshake is logged as one line
 * naming the remote address and OpenSSL's reason; the same refusal from the
 * same IP is logged again only after a minute (debug level meanwhile).
 *
 * A connecting stream reports success only once it knows the server accepted
 * its certificate too: with TLS 1.3 the client's handshake ends before the
 * server has checked the client certificate, so it waits for the first
 * thing the server sends after its own handshake (a session ticket; this
 * implementation's servers always send one). A session is never resumed.
 *
 * Everything happens on one loop thread: a stream_tls is used from the
 * thread of the loops its streams run on, like the streams themselves. The
 * OpenSSL settings are raft/tls_ctx.h's, shared with the CLI.
 */
#ifndef QFS_STREAM_TLS_H
#define QFS_STREAM_TLS_H

#include <stddef.h>

#include "stream.h"

struct stream_tls;

struct stream_tls_config {
	/* PEM files, borrowed during stream_tls_create() only. cert_file may
	 * hold intermediates after the certificate; the key must not be
	 * encrypted. */
	const char *cert_file, *key_file, *ca_file;
	/* Names the three flags in error lines: "peer" gives --peer-cert,
	 * --peer-key, --peer-ca. Also prefixes log lines ("peer tls: ...").
	 * Borrowed; must outlive the stream_tls (a string literal). */
	const char *label;
	/* Streams to wrap; NULL = stream_tcp_factory(). Borrowed. */
	const struct qfs_stream_factory *inner;
};

/*
 * Loads the certificate, key and CA and checks that the key matches the
 * certificate. Returns 0, QFS_EINVAL (a file unreadable or wrong: one
 * error line naming the flag and the file is logged) or QFS_ENOMEM.
 */
int stream_tls_create(const struct stream_tls_config *cfg, struct stream_tls **out);

/* The factory to give a transport (ctx: t). Valid until stream_tls_destroy(). */
const struct qfs_stream_factory *stream_tls_factory(struct stream_tls *t);

/* Frees t. Every stream it made must be closed (close callback run). */
void stream_tls_destroy(struct stream_tls *t);

#endif
