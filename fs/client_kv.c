/*
 * The client port's key-value requests (see client_conn.h). GET passes a read
 * barrier (linearizable), then answers one page from the local store; the
 * client asks for the next one with `after`. PUT and DEL are one-op
 * transactions proposed like the mount's writes and answered with their
 * revision once applied.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/errors.h"
#include "client_conn.h"

/* ---- GET ---------------------------------------------------------------------- */

struct page {
	struct client_get_enc g;
	const char *after; /* NULL once passed */
	size_t bytes;
	bool more;
};

static int page_add(void *arg, const struct store_kv *kv)
{
	struct page *pg = arg;
	struct client_kv ck;
	size_t size;

	if (pg->after) {
		if (strcmp(kv->key, pg->after) == 0)
			pg->after = NULL;
		return 0;
	}
	ck = (struct client_kv){kv->key,     (uint8_t)kv->type, kv->mode,	 kv->create_rev,
				kv->mod_rev, kv->version,	kv->value->data, kv->value->len};
	size = client_proto_kv_size(&ck);
	if (pg->g.n > 0 && pg->bytes + size > CLIENT_PROTO_PAGE_BYTES) {
		pg->more = true;
		return 1;
	}
	client_proto_get_add(&pg->g, &ck);
	pg->bytes += size;
	return 0;
}

static void get_failed(struct conn *c, struct store *s, uint64_t rev, int err)
{
	char msg[CLIENT_PROTO_MSG_MAX + 1];

	if (err == QFS_ECOMPACTED)
		snprintf(msg, sizeof(msg),
			 "revision %" PRIu64 " has been compacted (oldest readable: %" PRIu64 ")",
			 rev, store_compacted_revision(s));
	else if (err == QFS_EFUTUREREV)
		snprintf(msg, sizeof(msg),
			 "revision %" PRIu64 " is not yet reached (current: %" PRIu64 ")", rev,
			 store_revision(s));
	else
		snprintf(msg, sizeof(msg), "%s", qfs_strerror(err));
	conn_respond_err_msg(c, CLIENT_REQ_GET, err, msg);
}

/* The loop thread is the store's only writer: it reads without the lock. */
static void get_read(struct op *op)
{
	struct store *s = server_store(op->c->port->srv);
	uint64_t rev = op->rev ? op->rev : store_revision(s);
	struct page pg = {.after = op->after[0] ? op->after : NULL};
	struct qbuf b;
	int rv;

	qbuf_init(&b);
	client_proto_get_begin(&pg.g, &b, rev);
	if (op->flags & CLIENT_GET_PREFIX) {
		rv = store_range(s, op->key, rev, page_add, &pg);
		if (rv == 1)
			rv = 0;
		/* An absent prefix is an empty listing, as in etcd. */
		if (rv == QFS_ENOENT)
			rv = 0;
	} else {
		struct store_kv kv;

		rv = store_get(s, op->key, rev, &kv);
		if (!rv)
			rv = page_add(&pg, &kv);
	}
	if (rv) {
		qbuf_close(&b);
		get_failed(op->c, s, rev, rv);
		return;
	}
	rv = client_proto_get_end(&pg.g, pg.more);
	conn_respond(op->c, &b, rv);
}

static void on_read_ready(void *arg, int err)
{
	struct op *op = arg;

	if (op->c->closing)
		goto out;
	if (err)
		conn_respond_err(op->c, CLIENT_REQ_GET, err);
	else
		get_read(op);
out:
	conn_op_free(op);
}

void client_kv_get(struct conn *c, const struct client_req *r)
{
	struct op *op = conn_op_new(c, r);
	int rv;

	if (!op)
		return;
	op->rev = r->rev;
	op->key = strdup(r->key);
	op->after = strdup(r->after);
	rv = op->key && op->after ? store_key_check(r->key) : QFS_ENOMEM;
	if (rv && rv != QFS_ENOMEM) {
		conn_respond_bad_key(c, r->type, rv);
		conn_op_free(op);
		return;
	}
	if (!rv)
		rv = server_read_barrier(c->port->srv, on_read_ready, op);
	if (rv) {
		conn_respond_err(c, r->type, rv);
		conn_op_free(op);
	}
}

/* ---- PUT, DEL ------------------------------------------------------------------- */

static void on_write_done(void *arg, int err, const struct store_result *res)
{
	struct op *op = arg;
	struct qbuf b;

	if (op->c->closing)
		goto out;
	if (!err)
		err = res->err;
	if (err) {
		conn_respond_err(op->c, op->type, err);
		goto out;
	}
	qbuf_init(&b);
	conn_respond(op->c, &b, client_proto_rev_encode(&b, op->type, res->revision));
out:
	conn_op_free(op);
}

void client_kv_write(struct conn *c, const struct client_req *r)
{
	const struct config *cfg = server_config(c->port->srv);
	struct store_op sop = {.key = r->key};
	struct entry e = {.type = ENTRY_TXN};
	struct op *op;
	int rv;

	/* Fail what the store would refuse before it costs a log entry. */
	rv = store_key_check(r->key);
	if (!rv && r->type == CLIENT_REQ_DEL && strcmp(r->key, "/") == 0)
		rv = QFS_EPERM;
	if (rv) {
		conn_respond_bad_key(c, r->type, rv);
		return;
	}
	if (r->type == CLIENT_REQ_PUT && cfg->max_value_bytes &&
	    r->value_len > cfg->max_value_bytes)
		rv = QFS_EFBIG;
	if (rv) {
		conn_respond_err(c, r->type, rv);
		return;
	}
	if (r->type == CLIENT_REQ_PUT) {
		sop.type = STORE_OP_PUT;
		sop.flags = STORE_PUT_MKPARENTS;
		sop.ftype = STORE_FILE;
		sop.mode = 0644;
		sop.value = r->value;
		sop.value_len = r->value_len;
	} else {
		sop.type = STORE_OP_DELETE;
		sop.flags = (r->flags & CLIENT_DEL_PREFIX) ? STORE_DEL_RECURSIVE : 0;
	}
	e.txn.then_ops = &sop;
	e.txn.nthen = 1;
	op = conn_op_new(c, r);
	if (!op)
		return;
	/* server_propose encodes e before returning: r may go after this. */
	rv = server_propose(c->port->srv, &e, on_write_done, op);
	if (rv) {
		conn_respond_err(c, r->type, rv);
		conn_op_free(op);
	}
}
