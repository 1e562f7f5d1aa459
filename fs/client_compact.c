/*
 * The client port's COMPACT request (see client_conn.h): history before a
 * revision is dropped on every member, through the log (an ENTRY_COMPACT,
 * as --auto-compact-revisions proposes it in server_snapshot.c). A read
 * barrier first, so the revision is judged against everything committed
 * when the request came: one past the current revision, or at or below the
 * compacted one, is refused with both numbers and costs no log entry. The
 * answer comes once this member applied the compaction; one that found the
 * history already compacted further (a compaction that raced it) says so.
 */
#include <inttypes.h>
#include <stdio.h>

#include "../common/errors.h"
#include "client_conn.h"

static void respond_compacted(struct conn *c, uint64_t rev, uint64_t compacted)
{
	char msg[CLIENT_PROTO_MSG_MAX + 1];

	snprintf(msg, sizeof(msg),
		 "revision %" PRIu64 " is already compacted (compacted revision: %" PRIu64 ")", rev,
		 compacted);
	conn_respond_err_msg(c, CLIENT_REQ_COMPACT, QFS_ECOMPACTED, msg);
}

static void respond_future(struct conn *c, uint64_t rev, uint64_t current)
{
	char msg[CLIENT_PROTO_MSG_MAX + 1];

	snprintf(msg, sizeof(msg), "revision %" PRIu64 " is past the current revision %" PRIu64,
		 rev, current);
	conn_respond_err_msg(c, CLIENT_REQ_COMPACT, QFS_EFUTUREREV, msg);
}

static void on_compact_done(void *arg, int err, const struct store_result *res)
{
	struct op *op = arg;
	struct store *s = server_store(op->c->port->srv);
	uint64_t compacted = store_compacted_revision(s);
	struct qbuf b;

	if (op->c->closing)
		goto out;
	if (!err)
		err = res->err;
	/* Called right after this member applied the entry: the store is
	 * as the compaction left it. */
	if (err == QFS_EFUTUREREV)
		respond_future(op->c, op->rev, store_revision(s));
	else if (err)
		conn_respond_err(op->c, CLIENT_REQ_COMPACT, err);
	else if (compacted != op->rev)
		respond_compacted(op->c, op->rev, compacted);
	else {
		qbuf_init(&b);
		conn_respond(op->c, &b, client_proto_rev_encode(&b, CLIENT_REQ_COMPACT, op->rev));
	}
out:
	conn_op_free(op);
}

/* The loop thread is the store's only writer: it reads without the lock. */
static void on_read_ready(void *arg, int err)
{
	struct op *op = arg;
	struct store *s = server_store(op->c->port->srv);
	struct entry e = {.type = ENTRY_COMPACT, .compact_rev = op->rev};

	if (op->c->closing)
		goto out;
	if (err)
		conn_respond_err(op->c, CLIENT_REQ_COMPACT, err);
	else if (op->rev > store_revision(s))
		respond_future(op->c, op->rev, store_revision(s));
	else if (op->rev <= store_compacted_revision(s))
		respond_compacted(op->c, op->rev, store_compacted_revision(s));
	else if ((err = server_propose(op->c->port->srv, &e, on_compact_done, op)) != 0)
		conn_respond_err(op->c, CLIENT_REQ_COMPACT, err);
	else
		return; /* on_compact_done has op now */
out:
	conn_op_free(op);
}

void client_compact_start(struct conn *c, const struct client_req *r)
{
	struct op *op;
	int rv;

	if (r->rev == 0) {
		conn_respond_err_msg(c, r->type, QFS_EINVAL, "a revision to compact is 1 or more");
		return;
	}
	op = conn_op_new(c, r);
	if (!op)
		return;
	op->rev = r->rev;
	rv = server_read_barrier(c->port->srv, on_read_ready, op);
	if (rv) {
		conn_respond_err(c, r->type, rv);
		conn_op_free(op);
	}
}
