/*
 * Private to the client port (client_port.h): what its files share. Include
 * it only from fs/client_*.c of the port, never from elsewhere.
 *
 *   client_port.c   the listener, connections, framing, dispatch, responses
 *                   and the lifetime of all of them
 *   client_admin.c  STATUS, MEMBER_LIST, MEMBER_ADD/REMOVE/PROMOTE,
 *                   LEADER_TRANSFER
 *   client_kv.c     GET, PUT, DEL
 *   client_txn.c    TXN: compares and requests, one transaction
 *   client_compact.c  COMPACT: history dropped through the log
 *   client_lease.c  LEASE_GRANT/RENEW/REVOKE/LIST, PUT_LEASE
 *   client_watch.c  WATCH: the event stream of a connection
 *   client_snapshot.c  SNAPSHOT: an image of the state, streamed in chunks
 *   client_auth.c   users and roles: every request checked before its
 *                   handler; AUTH_CHANGE, AUTH_LIST
 *
 * Everything here runs on the member's loop thread.
 *
 * Ownership: the port owns its connections (p->conns) and frees itself when
 * its owner and every connection have let go (p->refs). A connection is
 * freed when its handle is closed and no request waits on the server
 * (c->refs); it owns its buffers and its watch. A struct op owns its
 * strings and one reference on its connection.
 *
 * A handler is called with the request in hand (c->busy), and r valid only
 * during the call. It answers exactly once: at once with conn_respond*(), or
 * from a server callback through an op (or, for WATCH, the stream).
 */
#ifndef QFS_CLIENT_CONN_H
#define QFS_CLIENT_CONN_H

#include "../raft/stream_tls.h"
#include "client_port.h"
#include "client_proto.h"

#define CONN_NAME_MAX (64 + 65) /* an address, a user name and '@' */
#define CONN_USER_MAX 64	/* a certificate's CN */
/* What a client is told when the cluster did not answer in time. */
#define CONN_TIMEOUT_MSG "request timed out: no quorum or leader unreachable"

struct watch; /* client_watch.c */

struct conn {
	struct client_port *port;
	struct conn *prev, *next; /* port->conns, until freed */
	struct qfs_stream *s;	  /* plain TCP or TLS (raft/stream.h) */
	struct qbuf out;	  /* the response being written */
	uint8_t *in;	 /* received bytes not yet consumed */
	size_t in_len, in_cap;
	struct client_hdr hdr;
	bool have_hdr;
	size_t discard; /* bytes of an oversized PUT still to skip */
	bool busy;	/* a request is being answered */
	bool reading;
	bool closing;
	int refs;	     /* the handle, plus one per request waiting on the server */
	struct watch *watch; /* after a WATCH request: the stream's state */
	bool named;	     /* name has the certificate's user (TLS) */
	bool served;	     /* answered a request: past its first deadline */
	bool refused;	     /* over the limit: told so at its request, then closed */
	uint64_t idle_since; /* loop ms: accepted, or its last answer written */
	char name[CONN_NAME_MAX]; /* "ADDR", with TLS "USER@ADDR" */
	char user[CONN_USER_MAX + 1]; /* TLS: the certificate's CN; "" without */
};

struct client_port {
	struct server *srv;
	uv_loop_t *loop;
	uv_tcp_t listener;
	uv_timer_t sweep; /* closes connections past their deadline */
	uint64_t idle_ms; /* between requests (IDLE_MS in client_port.c) */
	const struct qfs_stream_factory *streams;
	struct conn *conns;
	unsigned nconns;    /* open, not closing, not refused */
	unsigned nrefused;  /* open, not closing, refused (c->refused) */
	unsigned handles;   /* open handles (listener and connections) */
	int refs;	    /* the owner, plus one per connection not yet freed */
	size_t max_payload; /* a request's bound */
	int port;
	bool closing;
	bool listening; /* registered as a revision listener */
	uint64_t max_lag;
	bool saving; /* a SNAPSHOT is in progress (one at a time) */
};

/* A request waiting on the server. */
struct op {
	struct conn *c;
	uint8_t type;
	uint32_t flags;
	uint64_t rev;
	bool then_promote; /* MEMBER_ADD of a voter: add as a learner, then promote */
	bool promoting;
	struct server_member m;
	char *key, *after;
	uint64_t lease_id;	   /* LEASE_*, PUT_LEASE; LEASE_LIST: after */
	int64_t ttl_ms;		   /* LEASE_GRANT, PUT_LEASE with a new lease */
	enum store_op_type ops[3]; /* the transaction's ops, to name the one that failed */
	size_t nops;
	void *memo; /* a handler's own record, one allocation freed with the op */
};

/* ---- client_port.c ------------------------------------------------------------- */

/* Drops a reference; the last one frees c (and its watch). */
void conn_unref(struct conn *c);

/* Closes c's handle; anything still waiting finds c->closing. Idempotent. */
void conn_close(struct conn *c);

/* A request in hand that waits for the server: holds a reference on its
 * connection. NULL after answering ENOMEM. */
struct op *conn_op_new(struct conn *c, const struct client_req *r);

/* Frees op and its strings and drops its reference on op->c. */
void conn_op_free(struct op *op);

/* Sends the frame in b (taken over) as the answer to the request in hand;
 * rv is the encoder's result (non-zero: the connection is closed). */
void conn_respond(struct conn *c, struct qbuf *b, int rv);

/* Writes c->out (kept until cb(arg) runs): 0, or the write's error. */
int conn_write_out(struct conn *c, qfs_stream_write_cb cb, void *arg);

/* An error answer with msg; QFS_ENOTLEADER also names the leader. */
void conn_respond_err_msg(struct conn *c, uint8_t type, int err, const char *msg);

/* An error answer with the error's own message. */
void conn_respond_err(struct conn *c, uint8_t type, int err);

/* Why store_key_check() refused a key (err), or why the root cannot be
 * deleted (del and QFS_EPERM). Static. */
const char *conn_bad_key_msg(int err, bool del);

/* A key store_key_check() refused, or the root given to DEL. */
void conn_respond_bad_key(struct conn *c, uint8_t type, int err);

/* ---- the handlers, one file each --------------------------------------------- */

/* Whether c's user may make request r (users and roles, when enabled);
 * if not, r is answered with the refusal. Before every handler. */
bool client_auth_allowed(struct conn *c, const struct client_req *r);
/* AUTH_CHANGE: a read point, the change checked, then an ENTRY_AUTH. */
void client_auth_change(struct conn *c, const struct client_req *r);
/* AUTH_LIST: a read point, then the users and roles. */
void client_auth_list(struct conn *c, const struct client_req *r);

void client_admin_status(struct conn *c);
void client_admin_member_list(struct conn *c, const struct client_req *r);
/* MEMBER_ADD, MEMBER_REMOVE, MEMBER_PROMOTE, LEADER_TRANSFER */
void client_admin_member_change(struct conn *c, const struct client_req *r);

void client_kv_get(struct conn *c, const struct client_req *r);
/* PUT, DEL */
void client_kv_write(struct conn *c, const struct client_req *r);

/* TXN: compares and two branches of requests, proposed as one transaction. */
void client_txn_write(struct conn *c, const struct client_req *r);

/* COMPACT: a read barrier, the revision checked, then a compaction entry. */
void client_compact_start(struct conn *c, const struct client_req *r);

/* LEASE_GRANT, LEASE_RENEW, LEASE_REVOKE, PUT_LEASE */
void client_lease_write(struct conn *c, const struct client_req *r);
void client_lease_list(struct conn *c, const struct client_req *r);

/* SNAPSHOT: answered by a stream of chunks, then c takes requests again. */
void client_snapshot_start(struct conn *c, const struct client_req *r);

/* WATCH: unless refused at once, c becomes a stream, busy for good. */
void client_watch_start(struct conn *c, const struct client_req *r);
/* The port's revision listener (server_add_revision_listener(), arg: the
 * port): feeds every watcher. */
void client_watch_on_revision(void *arg, uint64_t revision);
/* The lag past which a stuck watcher is cancelled (p->max_lag). */
uint64_t client_watch_max_lag(const struct config *cfg);
/* NULL is a no-op. */
void client_watch_free(struct watch *w);

#endif
