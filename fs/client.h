/*
 * The network side of the CLI commands (fs/cli.c): blocking TCP, or TLS
 * (client_tls.h), to members' client ports (client_proto.h frames), each
 * wait bounded by a deadline.
 * Used by the `quorumfs` commands and by `serve --join` before its loop
 * runs; never on a member's loop thread.
 *
 * Errors come back as one line of text in a caller's buffer of
 * CLIENT_ERR_MAX bytes, ready to print.
 */
#ifndef QFS_CLIENT_H
#define QFS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client_proto.h"

#define CLIENT_ERR_MAX 512
#define CLIENT_MAX_ENDPOINTS 64

struct client_tls; /* client_tls.h */

/* The members to ask, in order, how long a request may take, and how. */
struct client_endpoints {
	char *list;			      /* owned: the list, split in place */
	const char *ep[CLIENT_MAX_ENDPOINTS]; /* point into list */
	size_t n;
	uint64_t timeout_ms;
	struct client_tls *tls; /* borrowed; NULL: plain TCP */
};
/* Replaces the endpoints with "HOST:PORT,...". 0, or -1 (empty, too many,
 * no memory). */
int client_endpoints_set(struct client_endpoints *e, const char *list);
void client_endpoints_close(struct client_endpoints *e);

/* An answer and the payload its pointers borrow from. */
struct client_answer {
	struct client_resp resp;
	uint8_t *payload; /* owned */
};
void client_answer_free(struct client_answer *a);

/* CLOCK_MONOTONIC in milliseconds: what deadlines are measured in. */
uint64_t client_now_ms(void);

/*
 * Sends r to the endpoints (or only to `only`), following NOTLEADER once,
 * moving on from members that are shutting down, and from members that
 * did not answer when r is safe to repeat. Returns 0 with an answer (its
 * status may be a member's refusal) or -1 with err.
 */
int client_request(const struct client_endpoints *e, const struct client_req *r, const char *only,
		   struct client_answer *a, char *err);

/* Worth asking another member: this one cannot do it now (not the leader,
 * stopping, or QFS_EAGAIN: e.g. full, or installing a snapshot). */
bool client_ask_elsewhere(int status);

/* ---- streams (WATCH) --------------------------------------------------------
 * The pieces of a request for callers that keep the connection: connect,
 * send one frame, then receive answers one after another. A deadline of 0
 * waits as long as it takes.
 */

/* A connection to one member's client port: a non-blocking socket, with
 * TLS when the endpoints have it. */
struct client_conn {
	int fd;
	struct client_tls_conn *tls; /* owned; NULL: plain TCP */
	const char *ep;		     /* borrowed: for error lines */
};

/* Connects to ep (and with e->tls, completes the handshake): 0, or -1 with
 * err. ep must outlive the connection. */
int client_connect(const struct client_endpoints *e, const char *ep, uint64_t deadline,
		   struct client_conn *out, char *err);
void client_conn_close(struct client_conn *c);
/* Bytes already received and buffered by TLS: poll() on c->fd would not
 * see them, read at once. */
bool client_conn_buffered(const struct client_conn *c);
/* Turns on TCP keepalive so a member that vanished without closing (a
 * host down, a partition) is noticed within about idle_s + 10 s. */
void client_keepalive(int fd, int idle_s);
int client_send(struct client_conn *c, const struct qbuf *frame, uint64_t deadline, char *err);
/* One answer to a request of this type: 0, or -1 with err (closed, timed
 * out, not our protocol, malformed). */
int client_recv(struct client_conn *c, uint8_t type, uint64_t deadline, struct client_answer *a,
		char *err);

#endif
