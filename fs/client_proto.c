/*
 * Client protocol encoders and decoders (see client_proto.h for the wire
 * format). Encoders build the payload behind a reserved header and fill the
 * header last, so a frame is written in one pass. Decoders read a whole
 * payload through a qreader and check once at the end.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "../common/errors.h"
#include "client_proto.h"

/* ---- frames ---------------------------------------------------------------- */

static size_t frame_begin(struct qbuf *b)
{
	size_t off = b->len;
	uint8_t *h = qbuf_reserve(b, CLIENT_PROTO_HDR_SIZE);

	if (h)
		memset(h, 0, CLIENT_PROTO_HDR_SIZE);
	return off;
}

static int frame_end(struct qbuf *b, size_t off, uint8_t type)
{
	size_t len;
	uint8_t *h;
	int rv = qbuf_error(b);

	if (rv)
		return rv;
	len = b->len - off - CLIENT_PROTO_HDR_SIZE;
	if (len > CLIENT_PROTO_MAX_PAYLOAD) {
		b->len = off;
		return QFS_EINVAL;
	}
	h = b->data + off;
	qfs_le32_put(h, CLIENT_PROTO_MAGIC);
	h[4] = CLIENT_PROTO_VERSION;
	h[5] = type;
	h[6] = h[7] = 0;
	qfs_le32_put(h + 8, (uint32_t)len);
	qfs_le32_put(h + 12, (uint32_t)crc32(0L, h + CLIENT_PROTO_HDR_SIZE, (uInt)len));
	return 0;
}

static bool type_valid(uint8_t type)
{
	uint8_t req = type & (uint8_t)~CLIENT_PROTO_RESPONSE;

	return req >= 1 && req <= CLIENT_REQ_MAX_;
}

int client_proto_hdr_decode(const uint8_t *h, size_t max_payload, struct client_hdr *out)
{
	if (qfs_le32_get(h) != CLIENT_PROTO_MAGIC || h[4] != CLIENT_PROTO_VERSION ||
	    !type_valid(h[5]))
		return QFS_EMSG;
	out->type = h[5];
	out->len = qfs_le32_get(h + 8);
	out->crc = qfs_le32_get(h + 12);
	return out->len > max_payload ? QFS_EFBIG : 0;
}

int client_proto_crc_check(const struct client_hdr *h, const uint8_t *payload)
{
	return (uint32_t)crc32(0L, payload, h->len) == h->crc ? 0 : QFS_EMSG;
}

/* ---- strings ---------------------------------------------------------------- */

/* An absent or over-long string poisons the buffer's record: the caller's
 * frame_end then fails. */
static int put_str(struct qbuf *b, const char *s, size_t max)
{
	size_t n;

	if (!s)
		return QFS_EINVAL;
	n = strlen(s);
	if (n > max)
		return QFS_EINVAL;
	qbuf_put_bytes(b, s, n + 1);
	return 0;
}

/* A string of at most max bytes (NUL excluded), NUL-terminated in place. */
static const char *get_str(struct qreader *r, size_t max)
{
	size_t len;
	const uint8_t *p = qreader_bytes(r, max + 1, &len);

	if (!p || len == 0 || p[len - 1] != 0 || memchr(p, 0, len - 1)) {
		r->failed = 1;
		r->left = 0;
		return "";
	}
	return (const char *)p;
}

/* A value of at most the protocol's payload bound (its length is a u32). */
static int put_value(struct qbuf *b, const uint8_t *v, size_t len)
{
	if (len > CLIENT_PROTO_MAX_PAYLOAD)
		return QFS_EINVAL;
	qbuf_put_bytes(b, len ? (const void *)v : "", len);
	return 0;
}

/* ---- TXN bodies ------------------------------------------------------------- */

/* Smallest encodings (empty key and value), to bound counts. */
#define CMP_MIN_SIZE (1 + 1 + 5 + 8 + 4)
#define TXN_OP_MIN_SIZE (1 + 4 + 5 + 4)

/* The decoded arrays are one allocation: compares, then requests. */
_Static_assert(sizeof(struct client_cmp) % _Alignof(struct client_txn_op) == 0,
	       "requests follow compares in one allocation");

/* What the encoder refuses to send and the decoder to accept, but for the
 * strings' bounds (put_str/get_str check those). */
static bool cmp_valid(const struct client_cmp *c)
{
	if (c->target < CLIENT_CMP_VALUE || c->target > CLIENT_CMP_MOD || c->op < CLIENT_CMP_EQ ||
	    c->op > CLIENT_CMP_GT)
		return false;
	return c->target == CLIENT_CMP_VALUE ? c->num == 0 : c->value_len == 0;
}

static bool txn_op_valid(const struct client_txn_op *o)
{
	if (o->type == CLIENT_TXN_PUT)
		return o->flags == 0;
	return o->type == CLIENT_TXN_DEL && (o->flags & ~(uint32_t)CLIENT_DEL_PREFIX) == 0 &&
	       o->value_len == 0;
}

static int put_txn(struct qbuf *b, const struct client_req *r)
{
	const struct client_txn_op *branch[2] = {r->then_ops, r->else_ops};
	size_t n[2] = {r->nthen, r->nelse};
	int rv = 0;

	if (r->ncmps > CLIENT_PROTO_TXN_MAX || r->nthen > CLIENT_PROTO_TXN_MAX ||
	    r->nelse > CLIENT_PROTO_TXN_MAX)
		return QFS_EINVAL;
	qbuf_put_u32(b, (uint32_t)r->ncmps);
	for (size_t i = 0; i < r->ncmps && !rv; i++) {
		const struct client_cmp *c = &r->cmps[i];

		if (!cmp_valid(c))
			return QFS_EINVAL;
		qbuf_put_u8(b, c->target);
		qbuf_put_u8(b, c->op);
		rv = put_str(b, c->key, CLIENT_PROTO_KEY_MAX);
		qbuf_put_u64(b, c->num);
		rv = rv ? rv : put_value(b, c->value, c->value_len);
	}
	for (size_t k = 0; k < 2 && !rv; k++) {
		qbuf_put_u32(b, (uint32_t)n[k]);
		for (size_t i = 0; i < n[k] && !rv; i++) {
			const struct client_txn_op *o = &branch[k][i];

			if (!txn_op_valid(o))
				return QFS_EINVAL;
			qbuf_put_u8(b, o->type);
			qbuf_put_u32(b, o->flags);
			rv = put_str(b, o->key, CLIENT_PROTO_KEY_MAX);
			rv = rv ? rv : put_value(b, o->value, o->value_len);
		}
	}
	return rv;
}

static bool read_cmp(struct qreader *r, struct client_cmp *c)
{
	c->target = qreader_u8(r);
	c->op = qreader_u8(r);
	c->key = get_str(r, CLIENT_PROTO_KEY_MAX);
	c->num = qreader_u64(r);
	c->value = qreader_bytes(r, CLIENT_PROTO_MAX_PAYLOAD, &c->value_len);
	return !qreader_error(r) && cmp_valid(c);
}

static bool read_txn_op(struct qreader *r, struct client_txn_op *o)
{
	o->type = qreader_u8(r);
	o->flags = qreader_u32(r);
	o->key = get_str(r, CLIENT_PROTO_KEY_MAX);
	o->value = qreader_bytes(r, CLIENT_PROTO_MAX_PAYLOAD, &o->value_len);
	return !qreader_error(r) && txn_op_valid(o);
}

/* One pass over a TXN body: with cmps and ops NULL it checks and counts
 * (n: compares, success, failure requests); else it also fills them (ops:
 * the success branch, then the failure one). */
static int read_txn(struct qreader *r, struct client_cmp *cmps, struct client_txn_op *ops,
		    size_t n[3])
{
	struct client_cmp cmp;
	struct client_txn_op op;
	size_t at = 0;

	for (int k = 0; k < 3; k++) {
		uint32_t count = qreader_u32(r);
		size_t min = k == 0 ? CMP_MIN_SIZE : TXN_OP_MIN_SIZE;

		if (qreader_error(r) || count > CLIENT_PROTO_TXN_MAX || count > r->left / min)
			return QFS_EMSG;
		n[k] = count;
		for (uint32_t i = 0; i < count; i++) {
			bool ok = k == 0 ? read_cmp(r, cmps ? &cmps[i] : &cmp)
					 : read_txn_op(r, ops ? &ops[at++] : &op);

			if (!ok)
				return QFS_EMSG;
		}
	}
	return 0;
}

/* Checked whole before anything is allocated, then read again into arrays
 * of the sizes found. */
static int read_txn_req(struct qreader *r, struct client_req *out)
{
	struct qreader scan = *r;
	struct client_txn_op *ops;
	struct client_cmp *cmps;
	size_t n[3], again[3];

	if (read_txn(&scan, NULL, NULL, n) || scan.left != 0)
		return QFS_EMSG;
	out->txn_ = calloc(1, n[0] * sizeof(*cmps) + (n[1] + n[2]) * sizeof(*ops) + 1);
	if (!out->txn_)
		return QFS_ENOMEM;
	cmps = out->txn_;
	ops = (struct client_txn_op *)(cmps + n[0]);
	if (read_txn(r, cmps, ops, again)) {
		client_proto_req_free(out);
		return QFS_EMSG;
	}
	out->cmps = cmps;
	out->ncmps = n[0];
	out->then_ops = ops;
	out->nthen = n[1];
	out->else_ops = ops + n[1];
	out->nelse = n[2];
	return 0;
}

/* ---- requests --------------------------------------------------------------- */

int client_proto_req_encode(const struct client_req *r, struct qbuf *b)
{
	size_t start = b->len, off;
	int rv = 0;

	if (!type_valid(r->type) || (r->type & CLIENT_PROTO_RESPONSE))
		return QFS_EINVAL;
	off = frame_begin(b);
	switch (r->type) {
	case CLIENT_REQ_STATUS:
	case CLIENT_REQ_SNAPSHOT:
		break;
	case CLIENT_REQ_MEMBER_LIST:
		qbuf_put_u32(b, r->flags);
		break;
	case CLIENT_REQ_MEMBER_ADD:
		rv = put_str(b, r->name, CLIENT_PROTO_NAME_MAX);
		rv = rv ? rv : put_str(b, r->peer_addr, CLIENT_PROTO_ADDR_MAX);
		rv = rv ? rv
			: put_str(b, r->client_addr ? r->client_addr : "", CLIENT_PROTO_ADDR_MAX);
		qbuf_put_u8(b, r->learner);
		break;
	case CLIENT_REQ_MEMBER_REMOVE:
	case CLIENT_REQ_MEMBER_PROMOTE:
	case CLIENT_REQ_LEADER_TRANSFER:
		rv = put_str(b, r->name, CLIENT_PROTO_NAME_MAX);
		break;
	case CLIENT_REQ_GET:
		rv = put_str(b, r->key, CLIENT_PROTO_KEY_MAX);
		qbuf_put_u32(b, r->flags);
		qbuf_put_u64(b, r->rev);
		rv = rv ? rv : put_str(b, r->after ? r->after : "", CLIENT_PROTO_KEY_MAX);
		break;
	case CLIENT_REQ_PUT:
	case CLIENT_REQ_PUT_LEASE:
		rv = put_str(b, r->key, CLIENT_PROTO_KEY_MAX);
		if (!rv && r->value_len > CLIENT_PROTO_MAX_PAYLOAD)
			rv = QFS_EINVAL;
		if (!rv)
			qbuf_put_bytes(b, r->value_len ? (const void *)r->value : "", r->value_len);
		if (!rv && r->type == CLIENT_REQ_PUT_LEASE) {
			if ((r->lease_id != 0) == (r->ttl_ms != 0))
				rv = QFS_EINVAL;
			qbuf_put_u64(b, r->lease_id);
			qbuf_put_u64(b, (uint64_t)r->ttl_ms);
		}
		break;
	case CLIENT_REQ_DEL:
		rv = put_str(b, r->key, CLIENT_PROTO_KEY_MAX);
		qbuf_put_u32(b, r->flags);
		break;
	case CLIENT_REQ_WATCH:
		rv = put_str(b, r->key, CLIENT_PROTO_KEY_MAX);
		qbuf_put_u32(b, r->flags);
		qbuf_put_u64(b, r->rev);
		break;
	case CLIENT_REQ_LEASE_GRANT:
		qbuf_put_u64(b, (uint64_t)r->ttl_ms);
		break;
	case CLIENT_REQ_LEASE_RENEW:
	case CLIENT_REQ_LEASE_REVOKE:
		qbuf_put_u64(b, r->lease_id);
		break;
	case CLIENT_REQ_LEASE_LIST:
		qbuf_put_u32(b, r->flags);
		qbuf_put_u64(b, r->lease_id);
		break;
	case CLIENT_REQ_TXN:
		rv = put_txn(b, r);
		break;
	case CLIENT_REQ_COMPACT:
		qbuf_put_u64(b, r->rev);
		break;
	case CLIENT_REQ_AUTH_CHANGE:
		qbuf_put_u8(b, r->auth_op);
		rv = put_str(b, r->name ? r->name : "", CLIENT_PROTO_NAME_MAX);
		rv = rv ? rv : put_str(b, r->auth_arg ? r->auth_arg : "", CLIENT_PROTO_KEY_MAX);
		qbuf_put_u8(b, r->auth_perm);
		break;
	case CLIENT_REQ_AUTH_LIST:
		break;
	}
	rv = rv ? rv : frame_end(b, off, r->type);
	if (rv && !qbuf_error(b))
		b->len = start;
	return rv;
}

int client_proto_req_decode(uint8_t type, const uint8_t *payload, size_t len,
			    struct client_req *out)
{
	struct qreader r;

	memset(out, 0, sizeof(*out));
	out->type = type;
	out->after = out->client_addr = "";
	qreader_init(&r, payload, len);
	switch (type) {
	case CLIENT_REQ_STATUS:
	case CLIENT_REQ_SNAPSHOT:
	case CLIENT_REQ_AUTH_LIST:
		break;
	case CLIENT_REQ_AUTH_CHANGE:
		out->auth_op = qreader_u8(&r);
		out->name = get_str(&r, CLIENT_PROTO_NAME_MAX);
		out->auth_arg = get_str(&r, CLIENT_PROTO_KEY_MAX);
		out->auth_perm = qreader_u8(&r);
		break;
	case CLIENT_REQ_MEMBER_LIST:
		out->flags = qreader_u32(&r);
		break;
	case CLIENT_REQ_MEMBER_ADD:
		out->name = get_str(&r, CLIENT_PROTO_NAME_MAX);
		out->peer_addr = get_str(&r, CLIENT_PROTO_ADDR_MAX);
		out->client_addr = get_str(&r, CLIENT_PROTO_ADDR_MAX);
		out->learner = qreader_u8(&r) != 0;
		break;
	case CLIENT_REQ_MEMBER_REMOVE:
	case CLIENT_REQ_MEMBER_PROMOTE:
	case CLIENT_REQ_LEADER_TRANSFER:
		out->name = get_str(&r, CLIENT_PROTO_NAME_MAX);
		break;
	case CLIENT_REQ_GET:
		out->key = get_str(&r, CLIENT_PROTO_KEY_MAX);
		out->flags = qreader_u32(&r);
		out->rev = qreader_u64(&r);
		out->after = get_str(&r, CLIENT_PROTO_KEY_MAX);
		break;
	case CLIENT_REQ_PUT:
	case CLIENT_REQ_PUT_LEASE:
		out->key = get_str(&r, CLIENT_PROTO_KEY_MAX);
		out->value = qreader_bytes(&r, CLIENT_PROTO_MAX_PAYLOAD, &out->value_len);
		if (type == CLIENT_REQ_PUT_LEASE) {
			out->lease_id = qreader_u64(&r);
			out->ttl_ms = (int64_t)qreader_u64(&r);
		}
		break;
	case CLIENT_REQ_DEL:
		out->key = get_str(&r, CLIENT_PROTO_KEY_MAX);
		out->flags = qreader_u32(&r);
		break;
	case CLIENT_REQ_WATCH:
		out->key = get_str(&r, CLIENT_PROTO_KEY_MAX);
		out->flags = qreader_u32(&r);
		out->rev = qreader_u64(&r);
		break;
	case CLIENT_REQ_LEASE_GRANT:
		out->ttl_ms = (int64_t)qreader_u64(&r);
		break;
	case CLIENT_REQ_LEASE_RENEW:
	case CLIENT_REQ_LEASE_REVOKE:
		out->lease_id = qreader_u64(&r);
		break;
	case CLIENT_REQ_LEASE_LIST:
		out->flags = qreader_u32(&r);
		out->lease_id = qreader_u64(&r);
		break;
	case CLIENT_REQ_TXN: {
		int rv = read_txn_req(&r, out);

		if (rv)
			return rv;
		break;
	}
	case CLIENT_REQ_COMPACT:
		out->rev = qreader_u64(&r);
		break;
	default:
		return QFS_EMSG;
	}
	/* Trailing bytes mean the sender speaks something else. */
	if (qreader_error(&r) || r.left != 0) {
		client_proto_req_free(out);
		return QFS_EMSG;
	}
	return 0;
}

void client_proto_req_free(struct client_req *r)
{
	free(r->txn_);
	r->txn_ = NULL;
	r->cmps = NULL;
	r->then_ops = r->else_ops = NULL;
	r->ncmps = r->nthen = r->nelse = 0;
}

/* ---- responses ------------------------------------------------------------- */

static int ok_frame(struct qbuf *b, uint8_t type, size_t *off)
{
	if (!type_valid(type) || (type & CLIENT_PROTO_RESPONSE))
		return QFS_EINVAL;
	*off = frame_begin(b);
	qbuf_put_u32(b, 0);
	return 0;
}

static int finish(struct qbuf *b, size_t start, size_t off, uint8_t type, int rv)
{
	rv = rv ? rv : frame_end(b, off, type | CLIENT_PROTO_RESPONSE);
	if (rv && !qbuf_error(b))
		b->len = start;
	return rv;
}

int client_proto_err_encode(struct qbuf *b, uint8_t type, int status, const char *msg,
			    const char *leader_name, const char *leader_client)
{
	size_t start = b->len, off;
	int rv;

	if (!type_valid(type) || (type & CLIENT_PROTO_RESPONSE) || status >= 0)
		return QFS_EINVAL;
	off = frame_begin(b);
	qbuf_put_u32(b, (uint32_t)status);
	rv = put_str(b, msg, CLIENT_PROTO_MSG_MAX);
	rv = rv ? rv : put_str(b, leader_name ? leader_name : "", CLIENT_PROTO_NAME_MAX);
	rv = rv ? rv : put_str(b, leader_client ? leader_client : "", CLIENT_PROTO_ADDR_MAX);
	return finish(b, start, off, type, rv);
}

int client_proto_ok_encode(struct qbuf *b, uint8_t type)
{
	size_t start = b->len, off;
	int rv = ok_frame(b, type, &off);

	return rv ? rv : finish(b, start, off, type, 0);
}

int client_proto_rev_encode(struct qbuf *b, uint8_t type, uint64_t revision)
{
	size_t start = b->len, off;
	int rv = ok_frame(b, type, &off);

	if (rv)
		return rv;
	qbuf_put_u64(b, revision);
	return finish(b, start, off, type, 0);
}

int client_proto_status_encode(struct qbuf *b, const struct client_status *st)
{
	size_t start = b->len, off;
	int rv = ok_frame(b, CLIENT_REQ_STATUS, &off);

	if (rv)
		return rv;
	rv = put_str(b, st->name, CLIENT_PROTO_NAME_MAX);
	qbuf_put_u64(b, st->member_id);
	qbuf_put_u64(b, st->cluster_id);
	rv = rv ? rv : put_str(b, st->role, CLIENT_PROTO_MSG_MAX);
	qbuf_put_u64(b, st->term);
	qbuf_put_u64(b, st->commit_index);
	qbuf_put_u64(b, st->applied_index);
	qbuf_put_u64(b, st->leader_id);
	rv = rv ? rv : put_str(b, st->leader_name ? st->leader_name : "", CLIENT_PROTO_NAME_MAX);
	qbuf_put_u64(b, st->revision);
	qbuf_put_u64(b, st->compacted_revision);
	qbuf_put_u64(b, st->db_size);
	qbuf_put_u64(b, st->quota_bytes);
	qbuf_put_u64(b, st->keys);
	qbuf_put_u64(b, st->snapshot_index);
	return finish(b, start, off, CLIENT_REQ_STATUS, rv);
}

int client_proto_members_encode(struct qbuf *b, const struct client_member *m, size_t n)
{
	size_t start = b->len, off;
	int rv = ok_frame(b, CLIENT_REQ_MEMBER_LIST, &off);

	if (rv)
		return rv;
	qbuf_put_u32(b, (uint32_t)n);
	for (size_t i = 0; i < n && !rv; i++) {
		qbuf_put_u64(b, m[i].id);
		rv = put_str(b, m[i].name, CLIENT_PROTO_NAME_MAX);
		rv = rv ? rv : put_str(b, m[i].peer_addr, CLIENT_PROTO_ADDR_MAX);
		rv = rv ? rv
			: put_str(b, m[i].client_addr ? m[i].client_addr : "",
				  CLIENT_PROTO_ADDR_MAX);
		qbuf_put_u8(b, m[i].voter);
		qbuf_put_u8(b, m[i].leader);
	}
	return finish(b, start, off, CLIENT_REQ_MEMBER_LIST, rv);
}

int client_proto_lease_encode(struct qbuf *b, uint8_t type, uint64_t id, int64_t ttl_ms)
{
	size_t start = b->len, off;
	int rv;

	if (type != CLIENT_REQ_LEASE_GRANT && type != CLIENT_REQ_LEASE_RENEW)
		return QFS_EINVAL;
	rv = ok_frame(b, type, &off);
	if (rv)
		return rv;
	qbuf_put_u64(b, id);
	qbuf_put_u64(b, (uint64_t)ttl_ms);
	return finish(b, start, off, type, 0);
}

int client_proto_put_lease_encode(struct qbuf *b, uint64_t revision, uint64_t id)
{
	size_t start = b->len, off;
	int rv = ok_frame(b, CLIENT_REQ_PUT_LEASE, &off);

	if (rv)
		return rv;
	qbuf_put_u64(b, revision);
	qbuf_put_u64(b, id);
	return finish(b, start, off, CLIENT_REQ_PUT_LEASE, 0);
}

int client_proto_txn_encode(struct qbuf *b, bool succeeded, uint64_t revision)
{
	size_t start = b->len, off;
	int rv = ok_frame(b, CLIENT_REQ_TXN, &off);

	if (rv)
		return rv;
	qbuf_put_u8(b, succeeded);
	qbuf_put_u64(b, revision);
	return finish(b, start, off, CLIENT_REQ_TXN, 0);
}

int client_proto_auth_list_encode(struct qbuf *b, const uint8_t *state, size_t len)
{
	size_t start = b->len, off;
	int rv = ok_frame(b, CLIENT_REQ_AUTH_LIST, &off);

	if (rv)
		return rv;
	rv = put_value(b, state, len);
	return finish(b, start, off, CLIENT_REQ_AUTH_LIST, rv);
}

int client_proto_snapshot_encode(struct qbuf *b, const struct client_snapshot *s)
{
	size_t start = b->len, off;
	int rv;

	if (s->chunk_len > CLIENT_PROTO_SNAPSHOT_CHUNK || s->offset > s->total ||
	    s->chunk_len > s->total - s->offset)
		return QFS_EINVAL;
	rv = ok_frame(b, CLIENT_REQ_SNAPSHOT, &off);
	if (rv)
		return rv;
	qbuf_put_u64(b, s->index);
	qbuf_put_u64(b, s->term);
	qbuf_put_u64(b, s->revision);
	qbuf_put_u64(b, s->keys);
	qbuf_put_u64(b, s->leases);
	qbuf_put_u64(b, s->total);
	qbuf_put_u32(b, s->crc);
	qbuf_put_u64(b, s->offset);
	qbuf_put_bytes(b, s->chunk_len ? (const void *)s->chunk : "", s->chunk_len);
	return finish(b, start, off, CLIENT_REQ_SNAPSHOT, 0);
}

/* Body: u64 revision, u8 more, u32 n at fixed offsets from the payload. */
#define GET_MORE_OFF 8
#define GET_COUNT_OFF 9

void client_proto_get_begin(struct client_get_enc *g, struct qbuf *b, uint64_t revision)
{
	g->b = b;
	g->n = 0;
	g->err = 0;
	g->frame = frame_begin(b);
	qbuf_put_u32(b, 0);
	g->payload = b->len;
	qbuf_put_u64(b, revision);
	qbuf_put_u8(b, 0);
	qbuf_put_u32(b, 0);
}

size_t client_proto_kv_size(const struct client_kv *kv)
{
	return 4 + strlen(kv->key) + 1 + 1 + 4 + 3 * 8 + 4 + kv->value_len;
}

/* One kv as GET and WATCH carry it; read_kv() is the reverse. */
static int put_kv(struct qbuf *b, const struct client_kv *kv)
{
	int rv = put_str(b, kv->key, CLIENT_PROTO_KEY_MAX);

	qbuf_put_u8(b, kv->type);
	qbuf_put_u32(b, kv->mode);
	qbuf_put_u64(b, kv->create_rev);
	qbuf_put_u64(b, kv->mod_rev);
	qbuf_put_u64(b, kv->version);
	qbuf_put_bytes(b, kv->value_len ? (const void *)kv->value : "", kv->value_len);
	return rv;
}

void client_proto_get_add(struct client_get_enc *g, const struct client_kv *kv)
{
	struct qbuf *b = g->b;

	if (g->err)
		return;
	g->err = put_kv(b, kv);
	g->n++;
}

int client_proto_get_end(struct client_get_enc *g, bool more)
{
	struct qbuf *b = g->b;
	int rv = g->err ? g->err : qbuf_error(b);

	if (!rv) {
		b->data[g->payload + GET_MORE_OFF] = more;
		qfs_le32_put(b->data + g->payload + GET_COUNT_OFF, g->n);
	}
	return finish(b, g->frame, g->frame, CLIENT_REQ_GET, rv);
}

/* Body: u64 progress, u32 n at fixed offsets from the payload. */
#define WATCH_COUNT_OFF 8

void client_proto_watch_begin(struct client_watch_enc *w, struct qbuf *b)
{
	w->b = b;
	w->n = 0;
	w->err = 0;
	w->frame = frame_begin(b);
	qbuf_put_u32(b, 0);
	w->payload = b->len;
	qbuf_put_u64(b, 0);
	qbuf_put_u32(b, 0);
}

size_t client_proto_event_size(const struct client_event *ev)
{
	return 1 + 8 + client_proto_kv_size(&ev->kv);
}

void client_proto_watch_add(struct client_watch_enc *w, const struct client_event *ev)
{
	struct qbuf *b = w->b;
	const struct client_kv *kv = &ev->kv;

	if (w->err)
		return;
	if (ev->type != CLIENT_EVENT_PUT && ev->type != CLIENT_EVENT_DELETE) {
		w->err = QFS_EINVAL;
		return;
	}
	qbuf_put_u8(b, ev->type);
	qbuf_put_u64(b, ev->revision);
	w->err = put_kv(b, kv);
	w->n++;
}

int client_proto_watch_end(struct client_watch_enc *w, uint64_t progress)
{
	struct qbuf *b = w->b;
	int rv = w->err ? w->err : qbuf_error(b);

	if (!rv) {
		qfs_le64_put(b->data + w->payload, progress);
		qfs_le32_put(b->data + w->payload + WATCH_COUNT_OFF, w->n);
	}
	return finish(b, w->frame, w->frame, CLIENT_REQ_WATCH, rv);
}

/* LEASE_LIST has GET's body head (revision, more, count). */
void client_proto_leases_begin(struct client_leases_enc *e, struct qbuf *b, uint64_t revision)
{
	e->b = b;
	e->n = 0;
	e->nkeys = 0;
	e->nkeys_at = 0;
	e->err = 0;
	e->frame = frame_begin(b);
	qbuf_put_u32(b, 0);
	e->payload = b->len;
	qbuf_put_u64(b, revision);
	qbuf_put_u8(b, 0);
	qbuf_put_u32(b, 0);
}

size_t client_proto_lease_size(void)
{
	return 4 * 8 + 4;
}

size_t client_proto_lease_key_size(const char *key)
{
	return 4 + strlen(key) + 1;
}

/* Patches the previous lease's count of keys listed. */
static void leases_close_one(struct client_leases_enc *e)
{
	if (e->n > 0 && !e->err && !qbuf_error(e->b))
		qfs_le32_put(e->b->data + e->nkeys_at, e->nkeys);
}

void client_proto_leases_add(struct client_leases_enc *e, const struct client_lease *l)
{
	struct qbuf *b = e->b;

	if (e->err)
		return;
	leases_close_one(e);
	qbuf_put_u64(b, l->id);
	qbuf_put_u64(b, (uint64_t)l->ttl_ms);
	qbuf_put_u64(b, (uint64_t)l->remaining_ms);
	qbuf_put_u64(b, l->nkeys);
	e->nkeys_at = b->len;
	qbuf_put_u32(b, 0);
	e->nkeys = 0;
	e->n++;
}

void client_proto_leases_add_key(struct client_leases_enc *e, const char *key)
{
	if (e->err)
		return;
	if (e->n == 0) {
		e->err = QFS_EINVAL;
		return;
	}
	e->err = put_str(e->b, key, CLIENT_PROTO_KEY_MAX);
	e->nkeys++;
}

int client_proto_leases_end(struct client_leases_enc *e, bool more)
{
	struct qbuf *b = e->b;
	int rv = e->err ? e->err : qbuf_error(b);

	if (!rv) {
		leases_close_one(e);
		b->data[e->payload + GET_MORE_OFF] = more;
		qfs_le32_put(b->data + e->payload + GET_COUNT_OFF, e->n);
	}
	return finish(b, e->frame, e->frame, CLIENT_REQ_LEASE_LIST, rv);
}

static void read_status(struct qreader *r, struct client_status *st)
{
	st->name = get_str(r, CLIENT_PROTO_NAME_MAX);
	st->member_id = qreader_u64(r);
	st->cluster_id = qreader_u64(r);
	st->role = get_str(r, CLIENT_PROTO_MSG_MAX);
	st->term = qreader_u64(r);
	st->commit_index = qreader_u64(r);
	st->applied_index = qreader_u64(r);
	st->leader_id = qreader_u64(r);
	st->leader_name = get_str(r, CLIENT_PROTO_NAME_MAX);
	st->revision = qreader_u64(r);
	st->compacted_revision = qreader_u64(r);
	st->db_size = qreader_u64(r);
	st->quota_bytes = qreader_u64(r);
	st->keys = qreader_u64(r);
	st->snapshot_index = qreader_u64(r);
}

/* Smallest encodings, to bound counts before allocating arrays. */
#define MEMBER_MIN_SIZE (8 + 3 * 5 + 2)
#define KV_MIN_SIZE (5 + 1 + 4 + 3 * 8 + 4)
#define EVENT_MIN_SIZE (1 + 8 + KV_MIN_SIZE)

static int read_members(struct qreader *r, struct client_resp *out)
{
	uint32_t n = qreader_u32(r);

	if (qreader_error(r) || n > r->left / MEMBER_MIN_SIZE)
		return QFS_EMSG;
	out->members = calloc(n ? n : 1, sizeof(*out->members));
	if (!out->members)
		return QFS_ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		struct client_member *m = &out->members[i];

		m->id = qreader_u64(r);
		m->name = get_str(r, CLIENT_PROTO_NAME_MAX);
		m->peer_addr = get_str(r, CLIENT_PROTO_ADDR_MAX);
		m->client_addr = get_str(r, CLIENT_PROTO_ADDR_MAX);
		m->voter = qreader_u8(r) != 0;
		m->leader = qreader_u8(r) != 0;
	}
	out->nmembers = n;
	return 0;
}

static void read_kv(struct qreader *r, struct client_kv *kv)
{
	kv->key = get_str(r, CLIENT_PROTO_KEY_MAX);
	kv->type = qreader_u8(r);
	kv->mode = qreader_u32(r);
	kv->create_rev = qreader_u64(r);
	kv->mod_rev = qreader_u64(r);
	kv->version = qreader_u64(r);
	kv->value = qreader_bytes(r, CLIENT_PROTO_MAX_PAYLOAD, &kv->value_len);
	if (!kv->value)
		kv->value = (const uint8_t *)"";
}

/* The stream's order is checked here so every client gets it checked: a
 * member that sent events out of order, or beyond the one revision that may
 * be cut across frames, is broken. */
static int read_events(struct qreader *r, struct client_resp *out)
{
	uint64_t last = 0;
	uint32_t n;

	out->revision = qreader_u64(r);
	n = qreader_u32(r);
	if (qreader_error(r) || n > r->left / EVENT_MIN_SIZE)
		return QFS_EMSG;
	out->events = calloc(n ? n : 1, sizeof(*out->events));
	if (!out->events)
		return QFS_ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		struct client_event *ev = &out->events[i];

		ev->type = qreader_u8(r);
		ev->revision = qreader_u64(r);
		read_kv(r, &ev->kv);
		if (qreader_error(r))
			return QFS_EMSG;
		/* Past the progress only the revision cut across frames. */
		if ((ev->type != CLIENT_EVENT_PUT && ev->type != CLIENT_EVENT_DELETE) ||
		    ev->revision == 0 || ev->revision < last || ev->revision - 1 > out->revision)
			return QFS_EMSG;
		last = ev->revision;
	}
	out->nevents = n;
	return 0;
}

#define LEASE_MIN_SIZE (4 * 8 + 4)
#define KEY_MIN_SIZE 5

/*
 * Two passes: the first checks the structure and counts the keys on a copy
 * of the reader, so the arrays are allocated once, at sizes the payload
 * itself bounds; the second fills them.
 */
static int read_leases(struct qreader *r, struct client_resp *out)
{
	struct qreader scan;
	size_t total = 0, at = 0;
	uint32_t n;

	out->revision = qreader_u64(r);
	out->more = qreader_u8(r) != 0;
	n = qreader_u32(r);
	if (qreader_error(r) || n > r->left / LEASE_MIN_SIZE)
		return QFS_EMSG;
	scan = *r;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t nkeys;
		uint32_t k;

		qreader_raw(&scan, 3 * 8);
		nkeys = qreader_u64(&scan);
		k = qreader_u32(&scan);
		if (qreader_error(&scan) || k > nkeys || k > scan.left / KEY_MIN_SIZE)
			return QFS_EMSG;
		for (uint32_t j = 0; j < k; j++)
			get_str(&scan, CLIENT_PROTO_KEY_MAX);
		if (qreader_error(&scan))
			return QFS_EMSG;
		total += k;
	}
	out->leases = calloc(n ? n : 1, sizeof(*out->leases));
	out->keys_ = calloc(total ? total : 1, sizeof(*out->keys_));
	if (!out->leases || !out->keys_)
		return QFS_ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		struct client_lease *l = &out->leases[i];

		l->id = qreader_u64(r);
		l->ttl_ms = (int64_t)qreader_u64(r);
		l->remaining_ms = (int64_t)qreader_u64(r);
		l->nkeys = qreader_u64(r);
		l->nkeys_listed = qreader_u32(r);
		l->keys = out->keys_ + at;
		for (size_t j = 0; j < l->nkeys_listed; j++)
			out->keys_[at++] = get_str(r, CLIENT_PROTO_KEY_MAX);
	}
	out->nleases = n;
	return 0;
}

static int read_snapshot(struct qreader *r, struct client_snapshot *s)
{
	s->index = qreader_u64(r);
	s->term = qreader_u64(r);
	s->revision = qreader_u64(r);
	s->keys = qreader_u64(r);
	s->leases = qreader_u64(r);
	s->total = qreader_u64(r);
	s->crc = qreader_u32(r);
	s->offset = qreader_u64(r);
	s->chunk = qreader_bytes(r, CLIENT_PROTO_SNAPSHOT_CHUNK, &s->chunk_len);
	if (qreader_error(r) || s->offset > s->total || s->chunk_len > s->total - s->offset ||
	    (s->chunk_len == 0 && s->offset != s->total))
		return QFS_EMSG;
	return 0;
}

static int read_kvs(struct qreader *r, struct client_resp *out)
{
	uint32_t n;

	out->revision = qreader_u64(r);
	out->more = qreader_u8(r) != 0;
	n = qreader_u32(r);
	if (qreader_error(r) || n > r->left / KV_MIN_SIZE)
		return QFS_EMSG;
	out->kvs = calloc(n ? n : 1, sizeof(*out->kvs));
	if (!out->kvs)
		return QFS_ENOMEM;
	for (uint32_t i = 0; i < n; i++)
		read_kv(r, &out->kvs[i]);
	out->nkvs = n;
	return 0;
}

int client_proto_resp_decode(const struct client_hdr *h, const uint8_t *payload, size_t len,
			     struct client_resp *out)
{
	struct qreader r;
	int rv = 0;

	memset(out, 0, sizeof(*out));
	if (!(h->type & CLIENT_PROTO_RESPONSE) || !type_valid(h->type) || h->len != len)
		return QFS_EMSG;
	out->type = h->type & (uint8_t)~CLIENT_PROTO_RESPONSE;
	out->msg = out->leader_name = out->leader_client = "";
	qreader_init(&r, payload, len);
	out->status = (int32_t)qreader_u32(&r);
	if (out->status > 0) {
		return QFS_EMSG;
	} else if (out->status < 0) {
		/* Codes this build does not know still come with their message. */
		out->msg = get_str(&r, CLIENT_PROTO_MSG_MAX);
		out->leader_name = get_str(&r, CLIENT_PROTO_NAME_MAX);
		out->leader_client = get_str(&r, CLIENT_PROTO_ADDR_MAX);
	} else {
		switch (out->type) {
		case CLIENT_REQ_STATUS:
			read_status(&r, &out->st);
			break;
		case CLIENT_REQ_MEMBER_LIST:
			rv = read_members(&r, out);
			break;
		case CLIENT_REQ_GET:
			rv = read_kvs(&r, out);
			break;
		case CLIENT_REQ_WATCH:
			rv = read_events(&r, out);
			break;
		case CLIENT_REQ_PUT:
		case CLIENT_REQ_DEL:
		case CLIENT_REQ_LEASE_REVOKE:
		case CLIENT_REQ_COMPACT:
			out->revision = qreader_u64(&r);
			break;
		case CLIENT_REQ_TXN: {
			uint8_t succeeded = qreader_u8(&r);

			out->succeeded = succeeded == 1;
			out->revision = qreader_u64(&r);
			if (succeeded > 1)
				rv = QFS_EMSG;
			break;
		}
		case CLIENT_REQ_LEASE_GRANT:
		case CLIENT_REQ_LEASE_RENEW:
			out->lease_id = qreader_u64(&r);
			out->ttl_ms = (int64_t)qreader_u64(&r);
			break;
		case CLIENT_REQ_PUT_LEASE:
			out->revision = qreader_u64(&r);
			out->lease_id = qreader_u64(&r);
			break;
		case CLIENT_REQ_LEASE_LIST:
			rv = read_leases(&r, out);
			break;
		case CLIENT_REQ_SNAPSHOT:
			rv = read_snapshot(&r, &out->snap);
			break;
		case CLIENT_REQ_AUTH_LIST:
			out->auth = qreader_bytes(&r, CLIENT_PROTO_MAX_PAYLOAD, &out->auth_len);
			break;
		default:
			break;
		}
	}
	if (!rv && (qreader_error(&r) || r.left != 0))
		rv = QFS_EMSG;
	if (rv)
		client_proto_resp_free(out);
	return rv;
}

void client_proto_resp_free(struct client_resp *r)
{
	free(r->members);
	free(r->kvs);
	free(r->events);
	free(r->leases);
	free(r->keys_);
	r->members = NULL;
	r->kvs = NULL;
	r->events = NULL;
	r->leases = NULL;
	r->keys_ = NULL;
	r->nmembers = r->nkvs = r->nevents = r->nleases = 0;
}

const char *client_proto_secs_str(int64_t ms, char *buf, size_t len)
{
	size_t n;

	if (ms < 0)
		ms = 0;
	snprintf(buf, len, "%" PRId64 ".%03" PRId64, ms / 1000, ms % 1000);
	n = strlen(buf);
	while (n > 0 && buf[n - 1] == '0')
		buf[--n] = 0;
	if (n > 0 && buf[n - 1] == '.')
		buf[--n] = 0;
	return buf;
}
