/*
 * The client port's lease requests (see client_conn.h). Leases (LEASE_*,
 * PUT_LEASE) are transactions of the store's lease ops proposed like any
 * write; the member picks new lease ids and enforces the minimum ttl
 * (1.5 x its --election-ms), which a client cannot know. LEASE_LIST passes
 * a read barrier like GET, then reads the local store.
 */
#include <inttypes.h>
#include <stdio.h>
#include <time.h>

#include "../common/errors.h"
#include "client_conn.h"

/* ---- LEASE_GRANT, LEASE_RENEW, LEASE_REVOKE, PUT_LEASE ---------------------------- */

static int64_t wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The ttl rule of SPEC 3.5, with the numbers in the refusal: a client
 * cannot know this member's election timeout. 0, or answered. */
static int lease_ttl_check(struct conn *c, uint8_t type, int64_t ttl_ms)
{
	const struct config *cfg = server_config(c->port->srv);
	int64_t min = server_lease_min_ttl_ms(c->port->srv);
	char msg[CLIENT_PROTO_MSG_MAX + 1], a[32], b[32];

	if (ttl_ms > 0 && ttl_ms <= STORE_LEASE_TTL_MAX_MS && ttl_ms >= min)
		return 0;
	if (ttl_ms <= 0 || ttl_ms > STORE_LEASE_TTL_MAX_MS)
		snprintf(msg, sizeof(msg), "a ttl is a number of seconds above 0 and at most %s",
			 client_proto_secs_str(STORE_LEASE_TTL_MAX_MS, a, sizeof(a)));
	else
		snprintf(msg, sizeof(msg),
			 "ttl %s s is below the minimum of %s s (1.5 x --election-ms %" PRIu64 ")",
			 client_proto_secs_str(ttl_ms, a, sizeof(a)),
			 client_proto_secs_str(min, b, sizeof(b)), (uint64_t)cfg->election_ms);
	conn_respond_err_msg(c, type, QFS_EINVAL, msg);
	return QFS_EINVAL;
}

static void respond_no_lease(struct conn *c, uint8_t type, uint64_t id)
{
	char msg[CLIENT_PROTO_MSG_MAX + 1];

	snprintf(msg, sizeof(msg), "lease %" PRIx64 " not found (expired or revoked)", id);
	conn_respond_err_msg(c, type, QFS_ENOENT, msg);
}

/* A transaction that failed in the store: op names which of its ops. */
static void lease_failed(struct op *op, int err, uint32_t failed_op)
{
	enum store_op_type t = failed_op < op->nops ? op->ops[failed_op] : 0;
	char msg[CLIENT_PROTO_MSG_MAX + 1];

	if (err == QFS_ENOENT && (t == STORE_OP_LEASE_RENEW || t == STORE_OP_LEASE_REVOKE ||
				  t == STORE_OP_LEASE_ATTACH)) {
		respond_no_lease(op->c, op->type, op->lease_id);
	} else if (err == QFS_EEXIST && t == STORE_OP_LEASE_GRANT) {
		snprintf(msg, sizeof(msg),
			 "the new lease's random id %" PRIx64 " is taken; try again", op->lease_id);
		conn_respond_err_msg(op->c, op->type, err, msg);
	} else {
		conn_respond_err(op->c, op->type, err);
	}
}

static void on_lease_done(void *arg, int err, const struct store_result *res)
{
	struct op *op = arg;
	struct store *s = server_store(op->c->port->srv);
	struct store_lease l;
	struct qbuf b;

	if (op->c->closing)
		goto out;
	if (err) {
		conn_respond_err(op->c, op->type, err);
		goto out;
	}
	if (res->err) {
		lease_failed(op, res->err, res->failed_op);
		goto out;
	}
	qbuf_init(&b);
	switch (op->type) {
	case CLIENT_REQ_LEASE_GRANT:
		err = client_proto_lease_encode(&b, op->type, op->lease_id, op->ttl_ms);
		break;
	case CLIENT_REQ_LEASE_RENEW:
		/* Applied just now on this thread: the lease is there unless
		 * something else in the same apply batch ended it. */
		if (store_lease_get(s, op->lease_id, &l) != 0) {
			qbuf_close(&b);
			respond_no_lease(op->c, op->type, op->lease_id);
			goto out;
		}
		err = client_proto_lease_encode(&b, op->type, op->lease_id, l.ttl_ms);
		break;
	case CLIENT_REQ_PUT_LEASE:
		err = client_proto_put_lease_encode(&b, res->revision, op->lease_id);
		break;
	default:
		err = client_proto_rev_encode(&b, op->type, res->revision);
		break;
	}
	conn_respond(op->c, &b, err);
out:
	conn_op_free(op);
}

void client_lease_write(struct conn *c, const struct client_req *r)
{
	const struct config *cfg = server_config(c->port->srv);
	struct store_op sops[3];
	struct entry e = {.type = ENTRY_TXN};
	uint64_t id = r->lease_id;
	size_t n = 0;
	struct op *op;
	int rv;

	switch (r->type) {
	case CLIENT_REQ_LEASE_GRANT:
		if (lease_ttl_check(c, r->type, r->ttl_ms))
			return;
		id = server_lease_id_new();
		sops[n++] = (struct store_op){
		    .type = STORE_OP_LEASE_GRANT, .lease_id = id, .ttl_ms = r->ttl_ms};
		break;
	case CLIENT_REQ_LEASE_RENEW:
	case CLIENT_REQ_LEASE_REVOKE:
		if (id == 0) { /* the store's "no lease": not worth a log entry */
			respond_no_lease(c, r->type, id);
			return;
		}
		sops[n++] = (struct store_op){.type = r->type == CLIENT_REQ_LEASE_RENEW
							  ? STORE_OP_LEASE_RENEW
							  : STORE_OP_LEASE_REVOKE,
					      .lease_id = id};
		break;
	default: /* PUT_LEASE */
		rv = store_key_check(r->key);
		if (rv) {
			conn_respond_bad_key(c, r->type, rv);
			return;
		}
		if (cfg->max_value_bytes && r->value_len > cfg->max_value_bytes) {
			conn_respond_err(c, r->type, QFS_EFBIG);
			return;
		}
		if ((id != 0) == (r->ttl_ms != 0)) {
			conn_respond_err_msg(c, r->type, QFS_EINVAL,
					     "a put with a lease takes either a lease id or a ttl");
			return;
		}
		if (r->ttl_ms) {
			if (lease_ttl_check(c, r->type, r->ttl_ms))
				return;
			id = server_lease_id_new();
			sops[n++] = (struct store_op){
			    .type = STORE_OP_LEASE_GRANT, .lease_id = id, .ttl_ms = r->ttl_ms};
		}
		/* As a plain PUT; see client_kv_write(). */
		sops[n++] = (struct store_op){.type = STORE_OP_PUT,
					      .key = r->key,
					      .flags = STORE_PUT_MKPARENTS,
					      .ftype = STORE_FILE,
					      .mode = 0644,
					      .value = r->value,
					      .value_len = r->value_len};
		sops[n++] =
		    (struct store_op){.type = STORE_OP_LEASE_ATTACH, .key = r->key, .lease_id = id};
		break;
	}
	op = conn_op_new(c, r);
	if (!op)
		return;
	op->lease_id = id;
	op->ttl_ms = r->ttl_ms;
	op->nops = n;
	for (size_t i = 0; i < n; i++)
		op->ops[i] = sops[i].type;
	e.txn.then_ops = sops;
	e.txn.nthen = n;
	/* server_propose encodes e before returning: r may go after this. */
	rv = server_propose(c->port->srv, &e, on_lease_done, op);
	if (rv) {
		conn_respond_err(c, r->type, rv);
		conn_op_free(op);
	}
}

/* ---- LEASE_LIST ------------------------------------------------------------------ */

struct lease_page {
	struct client_leases_enc e;
	struct store *s;
	uint64_t after;
	bool keys;
	bool more;
	size_t bytes;	  /* of the page */
	size_t key_bytes; /* of the lease being added */
	int64_t now_ns;
};

static int lease_page_key(void *arg, const char *key)
{
	struct lease_page *pg = arg;
	size_t size = client_proto_lease_key_size(key);

	if (pg->key_bytes + size > CLIENT_PROTO_LEASE_KEY_BYTES)
		return 1; /* cut: the lease's key count says how many there are */
	client_proto_leases_add_key(&pg->e, key);
	pg->key_bytes += size;
	pg->bytes += size;
	return 0;
}

static int lease_page_add(void *arg, const struct store_lease *l)
{
	struct lease_page *pg = arg;
	int64_t left = l->expiry_ns - pg->now_ns;
	struct client_lease cl = {
	    .id = l->id,
	    .ttl_ms = l->ttl_ms,
	    /* Rounded up: a lease with 0.2 ms left has not expired. */
	    .remaining_ms = left > 0 ? left / 1000000 + (left % 1000000 != 0) : 0,
	    .nkeys = l->nkeys,
	};
	int rv;

	if (l->id <= pg->after)
		return 0;
	if (pg->e.n > 0 && pg->bytes >= CLIENT_PROTO_PAGE_BYTES) {
		pg->more = true;
		return 1;
	}
	client_proto_leases_add(&pg->e, &cl);
	pg->bytes += client_proto_lease_size();
	if (!pg->keys)
		return 0;
	pg->key_bytes = 0;
	rv = store_lease_keys(pg->s, l->id, lease_page_key, pg);
	return rv == 1 ? 0 : rv;
}

/* Loop thread, after the read barrier: reads the store without the lock. */
static void lease_list_read(struct op *op)
{
	struct lease_page pg = {.s = server_store(op->c->port->srv),
				.after = op->lease_id,
				.keys = (op->flags & CLIENT_LEASE_LIST_KEYS) != 0,
				.now_ns = wall_ns()};
	struct qbuf b;
	int rv;

	qbuf_init(&b);
	client_proto_leases_begin(&pg.e, &b, store_revision(pg.s));
	rv = store_lease_list(pg.s, lease_page_add, &pg);
	if (rv < 0) {
		qbuf_close(&b);
		conn_respond_err(op->c, op->type, rv);
		return;
	}
	conn_respond(op->c, &b, client_proto_leases_end(&pg.e, pg.more));
}

static void on_lease_list_ready(void *arg, int err)
{
	struct op *op = arg;

	if (op->c->closing)
		goto out;
	if (err)
		conn_respond_err(op->c, op->type, err);
	else
		lease_list_read(op);
out:
	conn_op_free(op);
}

void client_lease_list(struct conn *c, const struct client_req *r)
{
	struct op *op = conn_op_new(c, r);
	int rv;

	if (!op)
		return;
	op->lease_id = r->lease_id;
	/* Linearizable like GET: a lease granted or revoked anywhere before
	 * the request is seen as such. */
	rv = server_read_barrier(c->port->srv, on_lease_list_ready, op);
	if (rv) {
		conn_respond_err(c, r->type, rv);
		conn_op_free(op);
	}
}
