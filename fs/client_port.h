/*
 * The client port (--listen-client): serves the client protocol
 * (client_proto.h) on the member's loop, for `quorumfs status/member/leader/
 * get/put/del/watch/lease`. Reads (lease list included) go through
 * server_read_barrier() and then the local store; writes and lease grants,
 * renewals and revokes are proposed like the mount's; membership goes to
 * server_member_change().
 *
 * Its handles are unreferenced: they never keep server_run() going, so the
 * member stops exactly as it would without a port. Close the port after
 * server_run() returns (or before server_destroy() if it never ran).
 */
#ifndef QFS_CLIENT_PORT_H
#define QFS_CLIENT_PORT_H

#include "../raft/stream_tls.h"
#include "server.h"

struct client_port;

/* Most connections served at once. A few more are answered that the member
 * is full (QFS_EAGAIN) when their request arrives, then closed; past those,
 * closed at once. A connection holds its slot only while it is in use:
 * without a request header 10 s after connecting (TLS handshake included),
 * or without a whole request 5 minutes after its last answer, it is closed
 * (a WATCH stream never is; see HELLO_MS and IDLE_MS in client_port.c). */
#define CLIENT_PORT_MAX_CONNS 256

/*
 * Listens on addr ("IPV4:PORT" or "[IPV6]:PORT"; port 0 picks one) on
 * server_loop(srv). With tls (--client-cert/--client-key/--client-ca) it
 * speaks only mutual TLS and names each connection after its certificate's
 * CN (the user) in log lines; NULL: plain TCP. Call on the thread that runs
 * (or will run) the loop, while it is not running elsewhere. Returns 0,
 * QFS_EINVAL (bad address), QFS_EIO (cannot bind or listen) or QFS_ENOMEM,
 * each after one log line. srv and tls must outlive the port.
 */
int client_port_create(struct server *srv, const char *addr, struct stream_tls *tls,
		       struct client_port **out);

/* The bound port (after port 0). */
int client_port_number(const struct client_port *p);

/*
 * Closes the listener and every connection and runs the loop until their
 * handles are closed (without waiting for anything else). Requests still
 * waiting on the server are answered to nobody: their callbacks find the
 * connection closed, and the last one frees what is left. NULL is a no-op.
 * Same thread rule as client_port_create().
 */
void client_port_close(struct client_port *p);

#endif
