/*
 * The client port's cluster requests (see client_conn.h): STATUS and
 * MEMBER_LIST answer at once from server_status() and server_members();
 * MEMBER_ADD/REMOVE/PROMOTE and LEADER_TRANSFER go to server_member_change()
 * and are answered from its callback.
 */
#include <stdio.h>
#include <stdlib.h>

#include "../common/errors.h"
#include "client_conn.h"

_Static_assert(CLIENT_PROTO_NAME_MAX == SERVER_NAME_MAX, "member names fit both ways");
_Static_assert(CLIENT_PROTO_ADDR_MAX == SERVER_ADDR_MAX, "addresses fit both ways");

/* ---- STATUS, MEMBER_LIST -------------------------------------------------------- */

void client_admin_status(struct conn *c)
{
	struct server_status s;
	struct client_status st;
	struct qbuf b;

	server_status(c->port->srv, &s);
	st = (struct client_status){
	    .name = s.name ? s.name : "",
	    .member_id = s.member_id,
	    .cluster_id = s.cluster_id,
	    .role = s.role ? s.role : "",
	    .term = s.term,
	    .commit_index = s.commit_index,
	    .applied_index = s.applied_index,
	    .leader_id = s.leader_id,
	    .leader_name = s.leader_name,
	    .revision = s.revision,
	    .compacted_revision = s.compacted_revision,
	    .db_size = s.db_size,
	    .quota_bytes = s.quota_bytes,
	    .keys = s.keys,
	    .snapshot_index = s.snapshot_index,
	};
	qbuf_init(&b);
	conn_respond(c, &b, client_proto_status_encode(&b, &st));
}

static void member_list(struct conn *c)
{
	struct server_member *sm = NULL;
	struct client_member *cm = NULL;
	size_t cap = 16, n = 0;
	struct qbuf b;
	int rv = QFS_ENOMEM;

	/* The configuration may grow between calls: ask until it fits. */
	for (;;) {
		struct server_member *grown = realloc(sm, cap * sizeof(*sm));

		if (!grown)
			goto out;
		sm = grown;
		n = server_members(c->port->srv, sm, cap);
		if (n < cap)
			break;
		cap *= 2;
	}
	cm = calloc(n ? n : 1, sizeof(*cm));
	if (!cm)
		goto out;
	for (size_t i = 0; i < n; i++)
		cm[i] = (struct client_member){sm[i].id,	  sm[i].name,  sm[i].peer_addr,
					       sm[i].client_addr, sm[i].voter, sm[i].leader};
	qbuf_init(&b);
	conn_respond(c, &b, client_proto_members_encode(&b, cm, n));
	rv = 0;
out:
	free(cm);
	free(sm);
	if (rv)
		conn_respond_err(c, CLIENT_REQ_MEMBER_LIST, rv);
}

static void on_members_ready(void *arg, int err)
{
	struct op *op = arg;

	if (op->c->closing)
		;
	else if (err)
		conn_respond_err(op->c, CLIENT_REQ_MEMBER_LIST, err);
	else
		member_list(op->c);
	conn_op_free(op);
}

/* `member list` reads after a read point, so a change that returned
 * anywhere shows; `status` asks without one, to answer without a quorum. */
void client_admin_member_list(struct conn *c, const struct client_req *r)
{
	struct op *op;
	int rv;

	if (!(r->flags & CLIENT_MEMBERS_LINEARIZABLE)) {
		member_list(c);
		return;
	}
	if (!(op = conn_op_new(c, r)))
		return;
	rv = server_read_barrier(c->port->srv, on_members_ready, op);
	if (rv) {
		conn_respond_err(c, r->type, rv);
		conn_op_free(op);
	}
}

/* ---- membership ------------------------------------------------------------------ */

static void member_failed(struct op *op, int err, bool promoting)
{
	char msg[512];
	const char *name = op->m.name;

	switch (err) {
	case QFS_EEXIST:
		snprintf(msg, sizeof(msg), "member %s already exists", name);
		break;
	case QFS_ENOENT:
		snprintf(msg, sizeof(msg), "no member named %s", name);
		break;
	case QFS_EINVAL:
		if (op->type == CLIENT_REQ_MEMBER_ADD && !promoting)
			snprintf(msg, sizeof(msg), "bad member name or peer address");
		else if (op->type == CLIENT_REQ_MEMBER_REMOVE)
			snprintf(msg, sizeof(msg), "cannot remove %s: it is the last voter", name);
		else if (op->type == CLIENT_REQ_LEADER_TRANSFER)
			snprintf(msg, sizeof(msg), "%s cannot take the lead (not a voter?)", name);
		else
			snprintf(msg, sizeof(msg), "%s is not a learner", name);
		break;
	default:
		snprintf(msg, sizeof(msg), "%s",
			 err == QFS_ETIMEDOUT ? CONN_TIMEOUT_MSG
					      : qfs_strerror(err));
		break;
	}
	if (promoting) {
		char full[CLIENT_PROTO_MSG_MAX + 1];

		snprintf(full, sizeof(full), "added %s as a learner, but promoting it failed: %s",
			 name, msg);
		conn_respond_err_msg(op->c, op->type, err, full);
	} else {
		conn_respond_err_msg(op->c, op->type, err, msg);
	}
}

static void on_member_done(void *arg, int err)
{
	struct op *op = arg;
	struct qbuf b;

	if (op->c->closing)
		goto out;
	if (err) {
		member_failed(op, err, op->promoting);
		goto out;
	}
	if (op->then_promote) {
		/* Raft adds voters in two steps (learner, then promote) so a
		 * new member catches up before it counts toward quorum. */
		op->then_promote = false;
		op->promoting = true;
		server_member_change(op->c->port->srv, SERVER_MEMBER_PROMOTE, &op->m,
				     on_member_done, op);
		return;
	}
	qbuf_init(&b);
	conn_respond(op->c, &b, client_proto_ok_encode(&b, op->type));
out:
	conn_op_free(op);
}

void client_admin_member_change(struct conn *c, const struct client_req *r)
{
	struct op *op = conn_op_new(c, r);
	enum server_member_op sop;

	if (!op)
		return;
	/* The decoder bounded the lengths to what these fields hold. */
	snprintf(op->m.name, sizeof(op->m.name), "%s", r->name);
	switch (r->type) {
	case CLIENT_REQ_MEMBER_ADD:
		snprintf(op->m.peer_addr, sizeof(op->m.peer_addr), "%s", r->peer_addr);
		snprintf(op->m.client_addr, sizeof(op->m.client_addr), "%s", r->client_addr);
		op->then_promote = !r->learner;
		sop = SERVER_MEMBER_ADD_LEARNER;
		break;
	case CLIENT_REQ_MEMBER_PROMOTE:
		sop = SERVER_MEMBER_PROMOTE;
		break;
	case CLIENT_REQ_MEMBER_REMOVE:
		sop = SERVER_MEMBER_REMOVE;
		break;
	default:
		sop = SERVER_LEADER_TRANSFER;
		break;
	}
	/* m lives in op until the callback, whatever the server keeps. */
	server_member_change(c->port->srv, sop, &op->m, on_member_done, op);
}
