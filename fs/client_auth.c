/*
 * Users and roles on the client port (see client_conn.h and fs/auth.h):
 * every request is checked here before its handler sees it
 * (client_auth_allowed), and AUTH_CHANGE / AUTH_LIST are served here.
 *
 * The rule, with auth enabled (docs/design.md, "Users and roles"):
 *   - STATUS is answered to anyone, so health checks keep working;
 *   - a connection without a certificate (plain TCP) has no user and gets
 *     nothing else; neither does a certificate whose CN is not a user;
 *   - a user with role root may do everything;
 *   - other users need read (GET, WATCH, TXN compares) or readwrite (PUT,
 *     DEL, TXN requests, PUT_LEASE, LEASE_REVOKE: every key attached) on
 *     a prefix covering each key; MEMBER_LIST, LEASE_GRANT/RENEW and
 *     LEASE_LIST without keys need only to be a user; membership, leader
 *     transfer, COMPACT, SNAPSHOT and users and roles need role root.
 * With auth disabled nothing is checked, except that `auth enable` must
 * come from user root (a certificate with CN root): whoever turns auth on
 * can still administer it after.
 *
 * The check uses this member's users and roles as of its applied index:
 * a change made elsewhere holds here once this member applied it
 * (usually within a heartbeat). Changes and lists take a read point first,
 * so they see every change committed before them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/errors.h"
#include "../common/log.h"
#include "auth.h"
#include "client_conn.h"

/* ---- checks -------------------------------------------------------------------- */

static void deny(struct conn *c, uint8_t type, const char *msg)
{
	LOG_DEBUG("client port: %s refused: %s", c->name, msg);
	conn_respond_err_msg(c, type, QFS_EDENIED, msg);
}

/* What a request that needs role root does, for the refusal. */
static const char *admin_what(const struct client_req *r)
{
	switch (r->type) {
	case CLIENT_REQ_MEMBER_ADD:
	case CLIENT_REQ_MEMBER_REMOVE:
	case CLIENT_REQ_MEMBER_PROMOTE:
		return "change the members";
	case CLIENT_REQ_LEADER_TRANSFER:
		return "transfer leadership";
	case CLIENT_REQ_COMPACT:
		return "compact";
	case CLIENT_REQ_SNAPSHOT:
		return "save a snapshot";
	case CLIENT_REQ_LEASE_LIST:
		return "list the keys of leases";
	case CLIENT_REQ_AUTH_CHANGE:
		return "change users and roles";
	case CLIENT_REQ_AUTH_LIST:
		return "list users and roles";
	default:
		return "do this";
	}
}

struct revoke_check {
	const struct auth *a;
	const char *user;
	char *msg;
	int rv;
};

static int revoke_key(void *arg, const char *key)
{
	struct revoke_check *k = arg;

	k->rv =
	    auth_check(k->a, k->user, key, true, AUTH_READWRITE, k->msg, CLIENT_PROTO_MSG_MAX + 1);
	return k->rv;
}

/* 0, or QFS_EDENIED with msg: the user's rights on what r touches. */
static int check_keys(const struct conn *c, const struct auth *a, const struct client_req *r,
		      char *msg)
{
	const size_t len = CLIENT_PROTO_MSG_MAX + 1;
	int rv = 0;

	switch (r->type) {
	case CLIENT_REQ_GET:
	case CLIENT_REQ_WATCH:
		return auth_check(a, c->user, r->key, r->flags & CLIENT_GET_PREFIX, AUTH_READ, msg,
				  len);
	case CLIENT_REQ_PUT:
	case CLIENT_REQ_PUT_LEASE:
		return auth_check(a, c->user, r->key, false, AUTH_READWRITE, msg, len);
	case CLIENT_REQ_DEL:
		return auth_check(a, c->user, r->key, r->flags & CLIENT_DEL_PREFIX, AUTH_READWRITE,
				  msg, len);
	case CLIENT_REQ_TXN:
		for (size_t i = 0; i < r->ncmps && !rv; i++)
			rv = auth_check(a, c->user, r->cmps[i].key, false, AUTH_READ, msg, len);
		for (size_t i = 0; i < r->nthen + r->nelse && !rv; i++) {
			const struct client_txn_op *o =
			    i < r->nthen ? &r->then_ops[i] : &r->else_ops[i - r->nthen];

			rv = auth_check(a, c->user, o->key, o->flags & CLIENT_DEL_PREFIX,
					AUTH_READWRITE, msg, len);
		}
		return rv;
	case CLIENT_REQ_LEASE_REVOKE: {
		struct revoke_check k = {a, c->user, msg, 0};

		/* An unknown lease has no keys: its handler says so. */
		store_lease_keys(server_store(c->port->srv), r->lease_id, revoke_key, &k);
		return k.rv;
	}
	default:
		return 0;
	}
}

bool client_auth_allowed(struct conn *c, const struct client_req *r)
{
	const struct auth *a = server_auth(c->port->srv);
	char msg[CLIENT_PROTO_MSG_MAX + 1];

	if (!a->enabled) {
		if (r->type == CLIENT_REQ_AUTH_CHANGE && r->auth_op == AUTH_ENABLE &&
		    strcmp(c->user, AUTH_ROOT) != 0) {
			deny(c, r->type,
			     "auth enable must come from user root (a client certificate with CN "
			     "root), who administers auth once it is on");
			return false;
		}
		return true;
	}
	if (r->type == CLIENT_REQ_STATUS)
		return true;
	if (!c->user[0]) {
		deny(c, r->type,
		     "auth is enabled and this connection has no user: connect with a client "
		     "certificate (--cacert, --cert, --key) to a TLS client port");
		return false;
	}
	if (auth_is_root(a, c->user))
		return true;
	if (!auth_user_find(a, c->user)) {
		snprintf(msg, sizeof(msg), "user %s does not exist (auth is enabled)", c->user);
		deny(c, r->type, msg);
		return false;
	}
	switch (r->type) {
	case CLIENT_REQ_MEMBER_LIST:
	case CLIENT_REQ_LEASE_GRANT:
	case CLIENT_REQ_LEASE_RENEW:
		return true;
	case CLIENT_REQ_LEASE_LIST:
		if (!(r->flags & CLIENT_LEASE_LIST_KEYS))
			return true;
		break;
	case CLIENT_REQ_GET:
	case CLIENT_REQ_WATCH:
	case CLIENT_REQ_PUT:
	case CLIENT_REQ_PUT_LEASE:
	case CLIENT_REQ_DEL:
	case CLIENT_REQ_TXN:
	case CLIENT_REQ_LEASE_REVOKE:
		if (check_keys(c, a, r, msg) == 0)
			return true;
		deny(c, r->type, msg);
		return false;
	default:
		break;
	}
	snprintf(msg, sizeof(msg), "user %s may not %s: that needs role root", c->user,
		 admin_what(r));
	deny(c, r->type, msg);
	return false;
}

/* ---- AUTH_CHANGE ------------------------------------------------------------- */

/* The change an op carries (op->memo), its strings after it. */
static struct auth_change *memo_change(struct op *op)
{
	return op->memo;
}

static void respond_refused(struct op *op, const struct auth_change *ch, int err)
{
	char msg[CLIENT_PROTO_MSG_MAX + 1];

	/* The state is what the change found (a refused change changes
	 * nothing): the check says why again. */
	if (auth_change_check(server_auth(op->c->port->srv), ch, msg, sizeof(msg)) == err)
		conn_respond_err_msg(op->c, CLIENT_REQ_AUTH_CHANGE, err, msg);
	else
		conn_respond_err(op->c, CLIENT_REQ_AUTH_CHANGE, err);
}

static void on_change_done(void *arg, int err, const struct store_result *res)
{
	struct op *op = arg;
	struct qbuf b;

	if (op->c->closing)
		goto out;
	if (!err && res->err) {
		respond_refused(op, memo_change(op), res->err);
		goto out;
	}
	if (err) {
		conn_respond_err(op->c, CLIENT_REQ_AUTH_CHANGE, err);
		goto out;
	}
	qbuf_init(&b);
	conn_respond(op->c, &b, client_proto_ok_encode(&b, CLIENT_REQ_AUTH_CHANGE));
out:
	conn_op_free(op);
}

static void on_change_read(void *arg, int err)
{
	struct op *op = arg;
	struct auth_change *ch = memo_change(op);
	struct entry e = {.type = ENTRY_AUTH, .auth = {ch->op, ch->name, ch->arg, ch->perm}};
	char msg[CLIENT_PROTO_MSG_MAX + 1];

	if (op->c->closing)
		goto out;
	if (err) {
		conn_respond_err(op->c, CLIENT_REQ_AUTH_CHANGE, err);
		goto out;
	}
	/* Refused without a log entry when it cannot apply now. */
	err = auth_change_check(server_auth(op->c->port->srv), ch, msg, sizeof(msg));
	if (err) {
		conn_respond_err_msg(op->c, CLIENT_REQ_AUTH_CHANGE, err, msg);
		goto out;
	}
	err = server_propose(op->c->port->srv, &e, on_change_done, op);
	if (!err)
		return; /* on_change_done has op now */
	conn_respond_err(op->c, CLIENT_REQ_AUTH_CHANGE, err);
out:
	conn_op_free(op);
}

void client_auth_change(struct conn *c, const struct client_req *r)
{
	size_t nlen = strlen(r->name), alen = strlen(r->auth_arg);
	struct auth_change *ch;
	struct op *op;
	char *p;
	int rv;

	op = conn_op_new(c, r);
	if (!op)
		return;
	op->memo = malloc(sizeof(*ch) + nlen + alen + 2);
	if (!op->memo) {
		conn_respond_err(c, r->type, QFS_ENOMEM);
		conn_op_free(op);
		return;
	}
	ch = op->memo;
	p = (char *)(ch + 1);
	memcpy(p, r->name, nlen + 1);
	memcpy(p + nlen + 1, r->auth_arg, alen + 1);
	*ch = (struct auth_change){r->auth_op, p, p + nlen + 1, r->auth_perm};
	rv = server_read_barrier(c->port->srv, on_change_read, op);
	if (rv) {
		conn_respond_err(c, r->type, rv);
		conn_op_free(op);
	}
}

/* ---- AUTH_LIST ------------------------------------------------------------------ */

static void on_list_read(void *arg, int err)
{
	struct op *op = arg;
	struct qbuf state, b;

	if (op->c->closing)
		goto out;
	if (err) {
		conn_respond_err(op->c, CLIENT_REQ_AUTH_LIST, err);
		goto out;
	}
	qbuf_init(&state);
	auth_encode(server_auth(op->c->port->srv), &state);
	qbuf_init(&b);
	err = qbuf_error(&state);
	if (!err)
		err = client_proto_auth_list_encode(&b, state.data, state.len);
	qbuf_close(&state);
	conn_respond(op->c, &b, err);
out:
	conn_op_free(op);
}

void client_auth_list(struct conn *c, const struct client_req *r)
{
	struct op *op = conn_op_new(c, r);
	int rv;

	if (!op)
		return;
	rv = server_read_barrier(c->port->srv, on_list_read, op);
	if (rv) {
		conn_respond_err(c, r->type, rv);
		conn_op_free(op);
	}
}
