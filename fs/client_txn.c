/*
 * The client port's TXN request (see client_conn.h): compares and two
 * branches of PUT/DEL requests become one store transaction (store.h),
 * proposed like any write. Every member evaluates the compares when it
 * applies the entry, so the branch is chosen at the transaction's place in
 * the log, and its requests make one revision or, if one fails, nothing.
 * Keys, values and the root are checked before the proposal so a request
 * the store would refuse costs no log entry; the answer names the request
 * that failed.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/errors.h"
#include "client_conn.h"

_Static_assert((int)CLIENT_CMP_VALUE == (int)STORE_CMP_VALUE &&
		   (int)CLIENT_CMP_VERSION == (int)STORE_CMP_VERSION &&
		   (int)CLIENT_CMP_CREATE == (int)STORE_CMP_CREATE &&
		   (int)CLIENT_CMP_MOD == (int)STORE_CMP_MOD,
	       "compare targets travel as the store's");
_Static_assert((int)CLIENT_CMP_EQ == (int)STORE_CMP_EQ && (int)CLIENT_CMP_NE == (int)STORE_CMP_NE &&
		   (int)CLIENT_CMP_LT == (int)STORE_CMP_LT &&
		   (int)CLIENT_CMP_GT == (int)STORE_CMP_GT,
	       "compare operators travel as the store's");

/* Which request each branch has, to name the one that failed: kept with
 * the op (op->memo), keys copied after the array. */
struct memo {
	size_t nthen, nelse;
	struct {
		uint8_t type;
		const char *key;
	} ops[];
};

static const char *branch_name(bool then)
{
	return then ? "success" : "failure";
}

static const char *op_name(uint8_t type)
{
	return type == CLIENT_TXN_PUT ? "put" : "del";
}

/* A key shown in a one-line message: cut short, control bytes as '?'. */
static const char *key_shown(const char *key, char *buf, size_t len)
{
	size_t i;

	for (i = 0; key[i] && i + 4 < len; i++)
		buf[i] = (unsigned char)key[i] < 0x20 || key[i] == 0x7f ? '?' : key[i];
	if (key[i]) {
		memcpy(buf + i, "...", 3);
		i += 3;
	}
	buf[i] = 0;
	return buf;
}

static struct memo *memo_new(const struct client_req *r)
{
	size_t n = r->nthen + r->nelse,
	       bytes = sizeof(struct memo) + n * sizeof(((struct memo *)0)->ops[0]);
	struct memo *m;
	char *at;

	for (size_t i = 0; i < n; i++)
		bytes +=
		    strlen(i < r->nthen ? r->then_ops[i].key : r->else_ops[i - r->nthen].key) + 1;
	m = malloc(bytes);
	if (!m)
		return NULL;
	m->nthen = r->nthen;
	m->nelse = r->nelse;
	at = (char *)&m->ops[n];
	for (size_t i = 0; i < n; i++) {
		const struct client_txn_op *o =
		    i < r->nthen ? &r->then_ops[i] : &r->else_ops[i - r->nthen];
		size_t len = strlen(o->key) + 1;

		m->ops[i].type = o->type;
		m->ops[i].key = memcpy(at, o->key, len);
		at += len;
	}
	return m;
}

static void on_txn_done(void *arg, int err, const struct store_result *res)
{
	struct op *op = arg;
	const struct memo *m = op->memo;
	char msg[CLIENT_PROTO_MSG_MAX + 1], key[256];
	struct qbuf b;

	if (op->c->closing)
		goto out;
	if (err) {
		conn_respond_err(op->c, CLIENT_REQ_TXN, err);
		goto out;
	}
	if (res->err) {
		size_t at = res->succeeded ? res->failed_op : m->nthen + res->failed_op;
		size_t n = res->succeeded ? m->nthen : m->nelse;

		if (res->failed_op < n)
			snprintf(msg, sizeof(msg),
				 "request %" PRIu32 " of the %s branch (%s %s) failed: %s; nothing "
				 "was changed",
				 res->failed_op + 1, branch_name(res->succeeded),
				 op_name(m->ops[at].type),
				 key_shown(m->ops[at].key, key, sizeof(key)),
				 qfs_strerror(res->err));
		else
			snprintf(msg, sizeof(msg), "%s; nothing was changed",
				 qfs_strerror(res->err));
		conn_respond_err_msg(op->c, CLIENT_REQ_TXN, res->err, msg);
		goto out;
	}
	qbuf_init(&b);
	conn_respond(op->c, &b, client_proto_txn_encode(&b, res->succeeded, res->revision));
out:
	conn_op_free(op);
}

/* Refuses what the store would: 0, or answered. */
static int txn_check(struct conn *c, const struct client_req *r)
{
	uint64_t max = server_config(c->port->srv)->max_value_bytes;
	char msg[CLIENT_PROTO_MSG_MAX + 1], key[256];
	int rv;

	for (size_t i = 0; i < r->ncmps; i++) {
		const struct client_cmp *cmp = &r->cmps[i];

		rv = store_key_check(cmp->key);
		if (rv) {
			snprintf(msg, sizeof(msg), "compare %zu (%s): %s", i + 1,
				 key_shown(cmp->key, key, sizeof(key)),
				 conn_bad_key_msg(rv, false));
			goto refuse;
		}
		if (max && cmp->value_len > max) {
			rv = QFS_EFBIG;
			snprintf(msg, sizeof(msg), "compare %zu (%s): %s", i + 1,
				 key_shown(cmp->key, key, sizeof(key)), qfs_strerror(rv));
			goto refuse;
		}
	}
	for (size_t i = 0; i < r->nthen + r->nelse; i++) {
		bool then = i < r->nthen;
		size_t at = then ? i : i - r->nthen;
		const struct client_txn_op *o = then ? &r->then_ops[at] : &r->else_ops[at];
		bool del = o->type == CLIENT_TXN_DEL;

		rv = store_key_check(o->key);
		if (!rv && del && strcmp(o->key, "/") == 0)
			rv = QFS_EPERM;
		if (!rv && max && o->value_len > max)
			rv = QFS_EFBIG;
		if (rv) {
			snprintf(msg, sizeof(msg), "request %zu of the %s branch (%s %s): %s",
				 at + 1, branch_name(then), op_name(o->type),
				 key_shown(o->key, key, sizeof(key)),
				 rv == QFS_EFBIG ? qfs_strerror(rv) : conn_bad_key_msg(rv, del));
			goto refuse;
		}
	}
	return 0;
refuse:
	conn_respond_err_msg(c, CLIENT_REQ_TXN, rv, msg);
	return rv;
}

/* A request as the store's op: put as `quorumfs put` does (a file,
 * creating parents), del --prefix as `del --prefix` (the subtree). */
static void store_op_from(const struct client_txn_op *o, struct store_op *sop)
{
	*sop = (struct store_op){.key = o->key};
	if (o->type == CLIENT_TXN_PUT) {
		sop->type = STORE_OP_PUT;
		sop->flags = STORE_PUT_MKPARENTS;
		sop->ftype = STORE_FILE;
		sop->mode = 0644;
		sop->value = o->value;
		sop->value_len = o->value_len;
	} else {
		sop->type = STORE_OP_DELETE;
		sop->flags = (o->flags & CLIENT_DEL_PREFIX) ? STORE_DEL_RECURSIVE : 0;
	}
}

void client_txn_write(struct conn *c, const struct client_req *r)
{
	struct entry e = {.type = ENTRY_TXN};
	struct store_cmp *cmps;
	struct store_op *sops;
	struct op *op;
	int rv;

	if (txn_check(c, r))
		return;
	/* The decoder bounds every count (CLIENT_PROTO_TXN_MAX). */
	cmps = calloc(r->ncmps + 1, sizeof(*cmps));
	sops = calloc(r->nthen + r->nelse + 1, sizeof(*sops));
	op = conn_op_new(c, r);
	if (!op)
		goto out;
	op->memo = memo_new(r);
	if (!cmps || !sops || !op->memo) {
		conn_respond_err(c, r->type, QFS_ENOMEM);
		conn_op_free(op);
		goto out;
	}
	for (size_t i = 0; i < r->ncmps; i++) {
		const struct client_cmp *cmp = &r->cmps[i];

		cmps[i] = (struct store_cmp){.target = (enum store_cmp_target)cmp->target,
					     .op = (enum store_cmp_op)cmp->op,
					     .key = cmp->key,
					     .num = cmp->num,
					     .value = cmp->value,
					     .value_len = cmp->value_len};
	}
	for (size_t i = 0; i < r->nthen; i++)
		store_op_from(&r->then_ops[i], &sops[i]);
	for (size_t i = 0; i < r->nelse; i++)
		store_op_from(&r->else_ops[i], &sops[r->nthen + i]);
	e.txn = (struct store_txn){.cmps = cmps,
				   .ncmps = r->ncmps,
				   .then_ops = sops,
				   .nthen = r->nthen,
				   .else_ops = sops + r->nthen,
				   .nelse = r->nelse};
	/* server_propose encodes e before returning: r may go after this. */
	rv = server_propose(c->port->srv, &e, on_txn_done, op);
	if (rv) {
		conn_respond_err(c, r->type, rv);
		conn_op_free(op);
	}
out:
	free(cmps);
	free(sops);
}
