/*
 * The network side of the CLI commands (fs/cli.c): blocking TCP to members'
 * client ports (client_proto.h frames), each wait bounded by a deadline.
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

/* The members to ask, in order, and how long a request may take. */
struct client_endpoints {
	char *list;			      /* owned: the list, split in place */
	const char *ep[CLIENT_MAX_ENDPOINTS]; /* point into list */
	size_t n;
	uint64_t timeout_ms;
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

/* Worth asking another member: this one cannot do it now. */
bool client_ask_elsewhere(int status);

/* ---- streams (WATCH) --------------------------------------------------------
 * The pieces of a request for callers that keep the connection: connect,
 * send one frame, then receive answers one after another. A deadline of 0
 * waits as long as it takes.
 */

/* A connected non-blocking socket, or -1 with err. */
int client_connect(const char *ep, uint64_t deadline, char *err);
/* Turns on TCP keepalive so a member that vanished without closing (a
 * host down, a partition) is noticed within about idle_s + 10 s. */
void client_keepalive(int fd, int idle_s);
int client_send(int fd, const struct qbuf *frame, uint64_t deadline, const char *ep, char *err);
/* One answer to a request of this type: 0, or -1 with err (closed, timed
 * out, not our protocol, malformed). */
int client_recv(int fd, uint8_t type, uint64_t deadline, const char *ep, struct client_answer *a,
		char *err);

#endif
