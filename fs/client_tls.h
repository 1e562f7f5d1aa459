/*
 * TLS for the CLI side of the client port (client.h, and `serve --join`):
 * OpenSSL on the CLI's own non-blocking socket. Each call does one step and
 * says what it waits for; client.c polls the socket with the request's
 * deadline and calls again, so a TLS connection keeps the same deadlines as
 * a plain one.
 *
 * The member's certificate must chain to --cacert and name the endpoint's
 * host (its IP address or DNS name); ours (--cert/--key) is what the member
 * checks and whose CN it logs as the user. Like the member side
 * (raft/stream_tls.h), the handshake ends only once the member has accepted
 * our certificate (TLS 1.3: its session ticket), so a refusal is a connect
 * error and never looks like a request that may have been applied.
 */
#ifndef QFS_CLIENT_TLS_H
#define QFS_CLIENT_TLS_H

#include <stdbool.h>
#include <stddef.h>

struct client_tls;	/* the loaded files */
struct client_tls_conn; /* one connection */

enum client_tls_step {
	CLIENT_TLS_DONE,
	CLIENT_TLS_WANT_READ,  /* poll for POLLIN, then call again */
	CLIENT_TLS_WANT_WRITE, /* poll for POLLOUT, then call again */
	CLIENT_TLS_EOF,	       /* the member closed the connection */
	CLIENT_TLS_FAILED,     /* err says why */
};

/* Loads --cacert and, when given, --cert and --key (both or neither).
 * Returns 0, or -1 with one line in err (errlen bytes) naming the file. */
int client_tls_create(const char *cacert, const char *cert, const char *key,
		      struct client_tls **out, char *err, size_t errlen);
void client_tls_destroy(struct client_tls *t); /* NULL: no-op */

/* A TLS session on the connected socket fd (not owned) to host (IP or DNS
 * name, checked against the certificate). NULL with err when out of memory. */
struct client_tls_conn *client_tls_conn_new(struct client_tls *t, int fd, const char *host,
					    char *err, size_t errlen);
void client_tls_conn_free(struct client_tls_conn *c); /* NULL: no-op */

/* One step of the handshake; DONE once both sides accepted each other. */
enum client_tls_step client_tls_handshake(struct client_tls_conn *c, char *err, size_t errlen);

/* Reads up to len bytes (*got of them on DONE) or writes len bytes (*put
 * of them on DONE). */
enum client_tls_step client_tls_read(struct client_tls_conn *c, void *p, size_t len, size_t *got,
				     char *err, size_t errlen);
enum client_tls_step client_tls_write(struct client_tls_conn *c, const void *p, size_t len,
				      size_t *put, char *err, size_t errlen);

/* Plaintext (or unread records) already with OpenSSL: a poll of the socket
 * would not see them. */
bool client_tls_pending(const struct client_tls_conn *c);

#endif
