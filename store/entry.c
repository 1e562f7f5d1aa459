/*
 * Committed entries (entry.h): encoding, and decoding of untrusted bytes
 * from the log or the network into one allocation that owns everything.
 *
 * Decoding runs the same parser twice: once to validate and measure, once
 * to fill the block, so nothing is allocated for malformed input and no
 * pointer into the input survives.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "../common/errors.h"
#include "entry.h"

#define CMP_MIN_BYTES (1 + 1 + 4 + 8 + 4)
#define OP_MIN_BYTES (1 + 4 + 4 + 1 + 4 + 4 + 4 + 8 + 4 + 4 + 4 + 8 + 8 + 8)

/* ---- Encoding ------------------------------------------------------------------- */

static bool valid_cmp(const struct store_cmp *c)
{
	return c->key && c->target >= STORE_CMP_VALUE && c->target <= STORE_CMP_MOD &&
	       c->op >= STORE_CMP_EQ && c->op <= STORE_CMP_GT && (c->value || !c->value_len) &&
	       c->value_len <= UINT32_MAX && strlen(c->key) <= UINT32_MAX;
}

/* Lease ops other than ATTACH name no key (it travels as ""). */
static bool keyless(enum store_op_type t)
{
	return t == STORE_OP_LEASE_GRANT || t == STORE_OP_LEASE_RENEW ||
	       t == STORE_OP_LEASE_REVOKE || t == STORE_OP_LEASE_EXPIRE;
}

static bool valid_op(const struct store_op *o)
{
	return (o->key || keyless(o->type)) && o->type >= STORE_OP_PUT &&
	       o->type <= STORE_OP_LEASE_EXPIRE && (unsigned)o->ftype <= STORE_SYMLINK &&
	       (o->value || !o->value_len) && o->value_len <= UINT32_MAX;
}

static void put_str(struct qbuf *b, const char *s)
{
	qbuf_put_bytes(b, s ? s : "", s ? strlen(s) : 0);
}

static void put_ops(struct qbuf *b, const struct store_op *ops, size_t n)
{
	size_t i;

	qbuf_put_u32(b, (uint32_t)n);
	for (i = 0; i < n; i++) {
		const struct store_op *o = &ops[i];

		qbuf_put_u8(b, (uint8_t)o->type);
		qbuf_put_u32(b, o->flags);
		put_str(b, o->key);
		qbuf_put_u8(b, (uint8_t)o->ftype);
		qbuf_put_u32(b, o->mode);
		qbuf_put_u32(b, o->uid);
		qbuf_put_u32(b, o->gid);
		qbuf_put_u64(b, (uint64_t)o->mtime_ns);
		qbuf_put_bytes(b, o->value, o->value_len);
		put_str(b, o->dst);
		put_str(b, o->xname);
		qbuf_put_u64(b, o->lease_id);
		qbuf_put_u64(b, (uint64_t)o->ttl_ms);
		qbuf_put_u64(b, o->lease_gen);
	}
}

int entry_encode(const struct entry *e, struct qbuf *out)
{
	const struct store_txn *t = &e->txn;
	size_t i;

	if (e->type == ENTRY_TXN) {
		if (t->ncmps > ENTRY_MAX_OPS || t->nthen > ENTRY_MAX_OPS ||
		    t->nelse > ENTRY_MAX_OPS)
			return QFS_EINVAL;
		for (i = 0; i < t->ncmps; i++)
			if (!valid_cmp(&t->cmps[i]))
				return QFS_EINVAL;
		for (i = 0; i < t->nthen; i++)
			if (!valid_op(&t->then_ops[i]))
				return QFS_EINVAL;
		for (i = 0; i < t->nelse; i++)
			if (!valid_op(&t->else_ops[i]))
				return QFS_EINVAL;
	} else if (e->type == ENTRY_MEMBER) {
		if (!e->member.name || !e->member.peer || !e->member.client)
			return QFS_EINVAL;
	} else if (e->type == ENTRY_AUTH) {
		if (!e->auth.name || !e->auth.arg)
			return QFS_EINVAL;
	} else if (e->type != ENTRY_COMPACT) {
		return QFS_EINVAL;
	}

	qbuf_put_u8(out, ENTRY_VERSION);
	qbuf_put_u8(out, (uint8_t)e->type);
	qbuf_put_u64(out, e->origin);
	qbuf_put_u64(out, e->request_id);
	qbuf_put_u64(out, (uint64_t)e->time_ns);
	if (e->type == ENTRY_COMPACT) {
		qbuf_put_u64(out, e->compact_rev);
		return qbuf_error(out);
	}
	if (e->type == ENTRY_MEMBER) {
		qbuf_put_u64(out, e->member.id);
		qbuf_put_bytes(out, e->member.name, strlen(e->member.name));
		qbuf_put_bytes(out, e->member.peer, strlen(e->member.peer));
		qbuf_put_bytes(out, e->member.client, strlen(e->member.client));
		return qbuf_error(out);
	}
	if (e->type == ENTRY_AUTH) {
		qbuf_put_u8(out, e->auth.op);
		qbuf_put_bytes(out, e->auth.name, strlen(e->auth.name));
		qbuf_put_bytes(out, e->auth.arg, strlen(e->auth.arg));
		qbuf_put_u8(out, e->auth.perm);
		return qbuf_error(out);
	}
	qbuf_put_u32(out, (uint32_t)t->ncmps);
	for (i = 0; i < t->ncmps; i++) {
		const struct store_cmp *c = &t->cmps[i];

		qbuf_put_u8(out, (uint8_t)c->target);
		qbuf_put_u8(out, (uint8_t)c->op);
		put_str(out, c->key);
		qbuf_put_u64(out, c->num);
		qbuf_put_bytes(out, c->value, c->value_len);
	}
	put_ops(out, t->then_ops, t->nthen);
	put_ops(out, t->else_ops, t->nelse);
	return qbuf_error(out);
}

int entry_stamp_time(uint8_t *p, size_t len, int64_t time_ns)
{
	if (!p || len < ENTRY_HEADER_SIZE)
		return QFS_EMSG;
	qfs_le64_put(p + ENTRY_TIME_OFFSET, (uint64_t)time_ns);
	return 0;
}

/* ---- Decoding ------------------------------------------------------------------- */

struct dec {
	struct qreader r;
	char *heap;   /* NULL while measuring */
	size_t used;  /* heap bytes needed / used */
};

/* A copied, NUL-terminated byte string. text: reject NULs inside; empty
 * gives NULL when empty_null. */
static const void *dec_bytes(struct dec *d, bool text, bool empty_null, size_t *lenp)
{
	size_t len;
	const uint8_t *p = qreader_bytes(&d->r, d->r.left, &len);
	char *dst;

	if (lenp)
		*lenp = 0;
	if (!p)
		return NULL;
	if (text && memchr(p, 0, len)) {
		d->r.failed = 1;
		return NULL;
	}
	if (lenp)
		*lenp = len;
	if (len == 0 && empty_null)
		return NULL;
	dst = d->heap ? d->heap + d->used : NULL;
	d->used += len + 1;
	if (!dst)
		return NULL;
	if (len)
		memcpy(dst, p, len);
	dst[len] = '\0';
	return dst;
}

static uint32_t dec_count(struct dec *d, size_t min_bytes)
{
	uint32_t n = qreader_u32(&d->r);

	if (n > ENTRY_MAX_OPS || n > d->r.left / min_bytes)
		d->r.failed = 1;
	return d->r.failed ? 0 : n;
}

static void dec_ops(struct dec *d, struct store_op *ops, uint32_t n)
{
	uint32_t i;

	for (i = 0; i < n && !d->r.failed; i++) {
		struct store_op o;
		uint8_t type, ftype;

		memset(&o, 0, sizeof(o));
		type = qreader_u8(&d->r);
		o.flags = qreader_u32(&d->r);
		o.key = dec_bytes(d, true, false, NULL);
		ftype = qreader_u8(&d->r);
		o.mode = qreader_u32(&d->r);
		o.uid = qreader_u32(&d->r);
		o.gid = qreader_u32(&d->r);
		o.mtime_ns = (int64_t)qreader_u64(&d->r);
		o.value = dec_bytes(d, false, true, &o.value_len);
		o.dst = dec_bytes(d, true, true, NULL);
		o.xname = dec_bytes(d, true, true, NULL);
		o.lease_id = qreader_u64(&d->r);
		o.ttl_ms = (int64_t)qreader_u64(&d->r);
		o.lease_gen = qreader_u64(&d->r);
		if (type < STORE_OP_PUT || type > STORE_OP_LEASE_EXPIRE || ftype > STORE_SYMLINK)
			d->r.failed = 1;
		o.type = (enum store_op_type)type;
		o.ftype = (enum store_type)ftype;
		if (ops)
			ops[i] = o;
	}
}

/* Parses the whole entry into e (arrays only when d->heap is set). */
static void dec_entry(struct dec *d, struct entry *e, struct store_cmp *cmps,
		      struct store_op *ops)
{
	struct store_txn *t = &e->txn;
	uint8_t version, type;
	uint32_t i;

	version = qreader_u8(&d->r);
	type = qreader_u8(&d->r);
	e->origin = qreader_u64(&d->r);
	e->request_id = qreader_u64(&d->r);
	e->time_ns = (int64_t)qreader_u64(&d->r);
	if (version != ENTRY_VERSION ||
	    (type != ENTRY_TXN && type != ENTRY_COMPACT && type != ENTRY_MEMBER &&
	     type != ENTRY_AUTH))
		d->r.failed = 1;
	e->type = (enum entry_type)type;
	if (d->r.failed)
		return;
	if (type == ENTRY_COMPACT) {
		e->compact_rev = qreader_u64(&d->r);
		goto end;
	}
	if (type == ENTRY_MEMBER) {
		e->member.id = qreader_u64(&d->r);
		e->member.name = dec_bytes(d, true, false, NULL);
		e->member.peer = dec_bytes(d, true, false, NULL);
		e->member.client = dec_bytes(d, true, false, NULL);
		goto end;
	}
	if (type == ENTRY_AUTH) {
		e->auth.op = qreader_u8(&d->r);
		e->auth.name = dec_bytes(d, true, false, NULL);
		e->auth.arg = dec_bytes(d, true, false, NULL);
		e->auth.perm = qreader_u8(&d->r);
		goto end;
	}

	t->ncmps = dec_count(d, CMP_MIN_BYTES);
	for (i = 0; i < t->ncmps && !d->r.failed; i++) {
		struct store_cmp c;
		uint8_t target, op;

		memset(&c, 0, sizeof(c));
		target = qreader_u8(&d->r);
		op = qreader_u8(&d->r);
		c.key = dec_bytes(d, true, false, NULL);
		c.num = qreader_u64(&d->r);
		c.value = dec_bytes(d, false, true, &c.value_len);
		if (target < STORE_CMP_VALUE || target > STORE_CMP_MOD || op < STORE_CMP_EQ ||
		    op > STORE_CMP_GT)
			d->r.failed = 1;
		c.target = (enum store_cmp_target)target;
		c.op = (enum store_cmp_op)op;
		if (cmps)
			cmps[i] = c;
	}
	t->nthen = dec_count(d, OP_MIN_BYTES);
	dec_ops(d, ops, (uint32_t)t->nthen);
	t->nelse = dec_count(d, OP_MIN_BYTES);
	dec_ops(d, ops ? ops + t->nthen : NULL, (uint32_t)t->nelse);
	t->cmps = cmps;
	t->then_ops = ops;
	t->else_ops = ops ? ops + t->nthen : NULL;
end:
	if (d->r.left)
		d->r.failed = 1;
}

int entry_decode(const uint8_t *p, size_t len, struct entry **out)
{
	struct entry probe, *e;
	struct dec d;
	size_t arrays;
	uint8_t *block;

	*out = NULL;
	if (!p)
		return QFS_EMSG;
	memset(&probe, 0, sizeof(probe));
	memset(&d, 0, sizeof(d));
	qreader_init(&d.r, p, len);
	dec_entry(&d, &probe, NULL, NULL);
	if (qreader_error(&d.r))
		return QFS_EMSG;

	/* Counts are bounded by ENTRY_MAX_OPS: no overflow here. */
	arrays = sizeof(*e) + probe.txn.ncmps * sizeof(struct store_cmp) +
		 (probe.txn.nthen + probe.txn.nelse) * sizeof(struct store_op);
	block = calloc(1, arrays + d.used);
	if (!block)
		return QFS_ENOMEM;
	e = (struct entry *)block;
	d.heap = (char *)block + arrays;
	d.used = 0;
	qreader_init(&d.r, p, len);
	dec_entry(&d, e, (struct store_cmp *)(e + 1),
		  (struct store_op *)((struct store_cmp *)(e + 1) + probe.txn.ncmps));
	if (qreader_error(&d.r)) {
		/* Same bytes, same parser: cannot happen. */
		free(block);
		return QFS_EMSG;
	}
	if (e->type != ENTRY_TXN)
		memset(&e->txn, 0, sizeof(e->txn));
	*out = e;
	return 0;
}
