/*
 * Client protocol tests: every request and response round-trips (WATCH
 * frames, the lease frames, TXN and COMPACT and SNAPSHOT chunks included,
 * and a WATCH stream's order is enforced by the decoder, a LEASE_LIST's
 * counts, a SNAPSHOT chunk's bounds and every TXN count and field too,
 * before anything is allocated); headers
 * with a wrong magic, version, type or length are refused before anything
 * is allocated; every truncation and every single-bit flip of a frame is
 * caught (by the header check, the CRC or the decoder), and decoders fed
 * garbage with a valid CRC never read outside their input.
 *
 * fs/ is not part of the core archive the unit tests link, so the module
 * under test is compiled into this file.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "../../common/codec.h"
#include "../../common/errors.h"
#include "../../fs/client_proto.c"

static uint64_t rng = 0x1234567887654321ULL;

static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* Splits a frame: checks its header and CRC, returns the payload. */
static const uint8_t *open_frame(const struct qbuf *b, size_t off, struct client_hdr *h)
{
	assert_true(b->len - off >= CLIENT_PROTO_HDR_SIZE);
	assert_int_equal(client_proto_hdr_decode(b->data + off, CLIENT_PROTO_MAX_PAYLOAD, h), 0);
	assert_int_equal(b->len - off, CLIENT_PROTO_HDR_SIZE + h->len);
	assert_int_equal(client_proto_crc_check(h, b->data + off + CLIENT_PROTO_HDR_SIZE), 0);
	return b->data + off + CLIENT_PROTO_HDR_SIZE;
}

static const uint8_t value_bytes[] = {0, 1, 2, 0xff, 0, 'x'};

static const struct client_cmp sample_cmps[] = {
    {CLIENT_CMP_CREATE, CLIENT_CMP_EQ, "/lock", 0, NULL, 0},
    {CLIENT_CMP_VALUE, CLIENT_CMP_NE, "/a b", 0, value_bytes, sizeof(value_bytes)},
    {CLIENT_CMP_VALUE, CLIENT_CMP_EQ, "/empty", 0, (const uint8_t *)"", 0},
    {CLIENT_CMP_VERSION, CLIENT_CMP_LT, "/v", 3, NULL, 0},
    {CLIENT_CMP_MOD, CLIENT_CMP_GT, "/m", 0xfedcba9876543210ULL, NULL, 0},
};

static const struct client_txn_op sample_then[] = {
    {CLIENT_TXN_PUT, 0, "/lock", value_bytes, sizeof(value_bytes)},
    {CLIENT_TXN_DEL, CLIENT_DEL_PREFIX, "/old", NULL, 0},
    {CLIENT_TXN_PUT, 0, "/empty", NULL, 0},
};

static const struct client_txn_op sample_else[] = {
    {CLIENT_TXN_DEL, 0, "/x", NULL, 0},
};

static struct client_req sample_reqs[] = {
    {.type = CLIENT_REQ_STATUS},
    {.type = CLIENT_REQ_MEMBER_LIST},
    {.type = CLIENT_REQ_MEMBER_ADD,
     .name = "n4",
     .peer_addr = "127.0.0.1:2480",
     .client_addr = "[::1]:2479",
     .learner = true},
    {.type = CLIENT_REQ_MEMBER_ADD, .name = "n5", .peer_addr = "10.0.0.5:2380", .client_addr = ""},
    {.type = CLIENT_REQ_MEMBER_REMOVE, .name = "n2"},
    {.type = CLIENT_REQ_MEMBER_PROMOTE, .name = "n4"},
    {.type = CLIENT_REQ_LEADER_TRANSFER, .name = "n3"},
    {.type = CLIENT_REQ_GET,
     .key = "/a/b",
     .flags = CLIENT_GET_PREFIX,
     .rev = 0x1122334455667788ULL,
     .after = "/a/b/c"},
    {.type = CLIENT_REQ_GET, .key = "/", .after = ""},
    {.type = CLIENT_REQ_PUT,
     .key = "/conf/x",
     .value = value_bytes,
     .value_len = sizeof(value_bytes)},
    {.type = CLIENT_REQ_PUT, .key = "/empty", .value_len = 0},
    {.type = CLIENT_REQ_DEL, .key = "/conf", .flags = CLIENT_DEL_PREFIX},
    {.type = CLIENT_REQ_WATCH, .key = "/conf", .flags = CLIENT_WATCH_PREFIX, .rev = 57},
    {.type = CLIENT_REQ_WATCH, .key = "/conf/x", .rev = 0},
    {.type = CLIENT_REQ_LEASE_GRANT, .ttl_ms = 1500},
    {.type = CLIENT_REQ_LEASE_RENEW, .lease_id = 0xa1b2c3d4e5f6ULL},
    {.type = CLIENT_REQ_LEASE_REVOKE, .lease_id = 0xffffffffffffffffULL},
    {.type = CLIENT_REQ_LEASE_LIST, .flags = CLIENT_LEASE_LIST_KEYS, .lease_id = 77},
    {.type = CLIENT_REQ_PUT_LEASE,
     .key = "/svc/web/h1",
     .value = value_bytes,
     .value_len = sizeof(value_bytes),
     .ttl_ms = 10000},
    {.type = CLIENT_REQ_PUT_LEASE, .key = "/svc/web/h2", .value_len = 0, .lease_id = 0x1234},
    {.type = CLIENT_REQ_SNAPSHOT},
    {.type = CLIENT_REQ_TXN,
     .cmps = sample_cmps,
     .ncmps = 5,
     .then_ops = sample_then,
     .nthen = 3,
     .else_ops = sample_else,
     .nelse = 1},
    {.type = CLIENT_REQ_TXN}, /* nothing at all: a valid, empty transaction */
    {.type = CLIENT_REQ_COMPACT, .rev = 0x0123456789abcdefULL},
    {.type = CLIENT_REQ_AUTH_CHANGE, .auth_op = 7, .name = "ro", .auth_arg = "/config",
     .auth_perm = 1},
    {.type = CLIENT_REQ_AUTH_CHANGE, .auth_op = 9, .name = "", .auth_arg = ""},
    {.type = CLIENT_REQ_AUTH_LIST},
};
#define NREQS (sizeof(sample_reqs) / sizeof(sample_reqs[0]))

static void assert_ops_equal(const struct client_txn_op *a, const struct client_txn_op *d, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(a[i].type, d[i].type);
		assert_int_equal(a[i].flags, d[i].flags);
		assert_string_equal(a[i].key, d[i].key);
		assert_int_equal(a[i].value_len, d[i].value_len);
		if (a[i].value_len)
			assert_memory_equal(a[i].value, d[i].value, a[i].value_len);
	}
}

static void assert_txn_equal(const struct client_req *a, const struct client_req *d)
{
	assert_int_equal(a->ncmps, d->ncmps);
	assert_int_equal(a->nthen, d->nthen);
	assert_int_equal(a->nelse, d->nelse);
	for (size_t i = 0; i < a->ncmps; i++) {
		const struct client_cmp *x = &a->cmps[i], *y = &d->cmps[i];

		assert_int_equal(x->target, y->target);
		assert_int_equal(x->op, y->op);
		assert_string_equal(x->key, y->key);
		assert_int_equal(x->num, y->num);
		assert_int_equal(x->value_len, y->value_len);
		if (x->value_len)
			assert_memory_equal(x->value, y->value, x->value_len);
	}
	assert_ops_equal(a->then_ops, d->then_ops, a->nthen);
	assert_ops_equal(a->else_ops, d->else_ops, a->nelse);
}

static void assert_req_equal(const struct client_req *a, const struct client_req *d)
{
	assert_int_equal(a->type, d->type);
	switch (a->type) {
	case CLIENT_REQ_MEMBER_ADD:
		assert_string_equal(a->peer_addr, d->peer_addr);
		assert_string_equal(a->client_addr, d->client_addr);
		assert_int_equal(a->learner, d->learner);
		/* fallthrough */
	case CLIENT_REQ_MEMBER_REMOVE:
	case CLIENT_REQ_MEMBER_PROMOTE:
	case CLIENT_REQ_LEADER_TRANSFER:
		assert_string_equal(a->name, d->name);
		break;
	case CLIENT_REQ_GET:
		assert_string_equal(a->after, d->after);
		/* fallthrough */
	case CLIENT_REQ_WATCH:
		assert_int_equal(a->rev, d->rev);
		/* fallthrough */
	case CLIENT_REQ_DEL:
		assert_int_equal(a->flags, d->flags);
		assert_string_equal(a->key, d->key);
		break;
	case CLIENT_REQ_PUT_LEASE:
		assert_int_equal(a->lease_id, d->lease_id);
		assert_int_equal(a->ttl_ms, d->ttl_ms);
		/* fallthrough */
	case CLIENT_REQ_PUT:
		assert_string_equal(a->key, d->key);
		assert_int_equal(a->value_len, d->value_len);
		if (a->value_len)
			assert_memory_equal(a->value, d->value, a->value_len);
		break;
	case CLIENT_REQ_LEASE_GRANT:
		assert_int_equal(a->ttl_ms, d->ttl_ms);
		break;
	case CLIENT_REQ_LEASE_LIST:
		assert_int_equal(a->flags, d->flags);
		/* fallthrough */
	case CLIENT_REQ_LEASE_RENEW:
	case CLIENT_REQ_LEASE_REVOKE:
		assert_int_equal(a->lease_id, d->lease_id);
		break;
	case CLIENT_REQ_TXN:
		assert_txn_equal(a, d);
		break;
	case CLIENT_REQ_COMPACT:
		assert_int_equal(a->rev, d->rev);
		break;
	case CLIENT_REQ_AUTH_CHANGE:
		assert_int_equal(a->auth_op, d->auth_op);
		assert_string_equal(a->name, d->name);
		assert_string_equal(a->auth_arg, d->auth_arg);
		assert_int_equal(a->auth_perm, d->auth_perm);
		break;
	default:
		break;
	}
}

static void test_req_roundtrip(void **state)
{
	(void)state;
	for (size_t i = 0; i < NREQS; i++) {
		struct client_req d;
		struct client_hdr h;
		const uint8_t *p;
		struct qbuf b;

		qbuf_init(&b);
		qbuf_put(&b, "junk", 4); /* frames append to what is there */
		assert_int_equal(client_proto_req_encode(&sample_reqs[i], &b), 0);
		p = open_frame(&b, 4, &h);
		assert_int_equal(h.type, sample_reqs[i].type);
		assert_int_equal(client_proto_req_decode(h.type, p, h.len, &d), 0);
		assert_req_equal(&sample_reqs[i], &d);
		client_proto_req_free(&d);
		client_proto_req_free(&d); /* twice is fine */
		qbuf_close(&b);
	}
}

static void test_req_encode_rejects(void **state)
{
	char longkey[CLIENT_PROTO_KEY_MAX + 2];
	struct client_req r = {.type = CLIENT_REQ_MEMBER_REMOVE};
	struct qbuf b;

	(void)state;
	qbuf_init(&b);
	assert_int_equal(client_proto_req_encode(&r, &b), QFS_EINVAL); /* no name */
	r.type = 0;
	assert_int_equal(client_proto_req_encode(&r, &b), QFS_EINVAL);
	r.type = CLIENT_REQ_GET | CLIENT_PROTO_RESPONSE;
	assert_int_equal(client_proto_req_encode(&r, &b), QFS_EINVAL);
	memset(longkey, 'k', sizeof(longkey) - 1);
	longkey[0] = '/';
	longkey[sizeof(longkey) - 1] = 0;
	r = (struct client_req){.type = CLIENT_REQ_DEL, .key = longkey};
	assert_int_equal(client_proto_req_encode(&r, &b), QFS_EINVAL);
	longkey[CLIENT_PROTO_NAME_MAX + 1] = 0; /* one byte over a member name */
	r = (struct client_req){.type = CLIENT_REQ_MEMBER_PROMOTE, .name = longkey};
	assert_int_equal(client_proto_req_encode(&r, &b), QFS_EINVAL);
	/* A put with a lease takes a lease id or a ttl: not both, not neither. */
	r = (struct client_req){
	    .type = CLIENT_REQ_PUT_LEASE, .key = "/k", .lease_id = 1, .ttl_ms = 1};
	assert_int_equal(client_proto_req_encode(&r, &b), QFS_EINVAL);
	r = (struct client_req){.type = CLIENT_REQ_PUT_LEASE, .key = "/k"};
	assert_int_equal(client_proto_req_encode(&r, &b), QFS_EINVAL);
	/* A failed encode leaves the buffer as it was. */
	assert_int_equal(b.len, 0);
	qbuf_close(&b);
}

/* A TXN of one compare and one success request, as given. */
static int encode_txn(const struct client_cmp *cmp, const struct client_txn_op *op)
{
	struct client_req r = {.type = CLIENT_REQ_TXN,
			       .cmps = cmp,
			       .ncmps = cmp ? 1 : 0,
			       .then_ops = op,
			       .nthen = op ? 1 : 0};
	struct qbuf b;
	int rv;

	qbuf_init(&b);
	rv = client_proto_req_encode(&r, &b);
	if (rv)
		assert_int_equal(b.len, 0);
	qbuf_close(&b);
	return rv;
}

static void test_txn_encode_rejects(void **state)
{
	static struct client_cmp many_cmps[CLIENT_PROTO_TXN_MAX + 1];
	static struct client_txn_op many_ops[CLIENT_PROTO_TXN_MAX + 1];
	/* Unknown targets and operators; a number or a value where the
	 * compare has no use for it; no key. */
	static const struct client_cmp bad_cmps[] = {
	    {0, CLIENT_CMP_EQ, "/k", 0, NULL, 0},
	    {CLIENT_CMP_MOD + 1, CLIENT_CMP_EQ, "/k", 0, NULL, 0},
	    {CLIENT_CMP_CREATE, 0, "/k", 0, NULL, 0},
	    {CLIENT_CMP_CREATE, CLIENT_CMP_GT + 1, "/k", 0, NULL, 0},
	    {CLIENT_CMP_VERSION, CLIENT_CMP_EQ, "/k", 0, value_bytes, 1},
	    {CLIENT_CMP_VALUE, CLIENT_CMP_EQ, "/k", 1, value_bytes, 1},
	    {CLIENT_CMP_MOD, CLIENT_CMP_EQ, NULL, 0, NULL, 0},
	};
	/* Requests: a type, flags, a value that do not fit; no key; a value
	 * over the protocol's bound (refused before it is read). */
	static const struct client_txn_op bad_ops[] = {
	    {0, 0, "/k", NULL, 0},
	    {CLIENT_TXN_DEL + 1, 0, "/k", NULL, 0},
	    {CLIENT_TXN_PUT, CLIENT_DEL_PREFIX, "/k", NULL, 0},
	    {CLIENT_TXN_DEL, 0x2, "/k", NULL, 0},
	    {CLIENT_TXN_DEL, 0, "/k", value_bytes, 1},
	    {CLIENT_TXN_PUT, 0, NULL, value_bytes, 1},
	    {CLIENT_TXN_PUT, 0, "/k", value_bytes, (size_t)CLIENT_PROTO_MAX_PAYLOAD + 1},
	};
	struct client_req r = {.type = CLIENT_REQ_TXN};
	struct qbuf b;

	(void)state;
	assert_int_equal(encode_txn(&sample_cmps[0], &sample_then[0]), 0);
	for (size_t i = 0; i < sizeof(bad_cmps) / sizeof(bad_cmps[0]); i++)
		assert_int_equal(encode_txn(&bad_cmps[i], &sample_then[0]), QFS_EINVAL);
	for (size_t i = 0; i < sizeof(bad_ops) / sizeof(bad_ops[0]); i++)
		assert_int_equal(encode_txn(&sample_cmps[0], &bad_ops[i]), QFS_EINVAL);
	/* Counts: at most CLIENT_PROTO_TXN_MAX of each. */
	for (size_t i = 0; i <= CLIENT_PROTO_TXN_MAX; i++) {
		many_cmps[i] = sample_cmps[0];
		many_ops[i] = sample_then[1];
	}
	qbuf_init(&b);
	r.cmps = many_cmps;
	r.ncmps = CLIENT_PROTO_TXN_MAX;
	r.then_ops = r.else_ops = many_ops;
	r.nthen = r.nelse = CLIENT_PROTO_TXN_MAX;
	assert_int_equal(client_proto_req_encode(&r, &b), 0);
	b.len = 0;
	r.ncmps++;
	assert_int_equal(client_proto_req_encode(&r, &b), QFS_EINVAL);
	r.ncmps--;
	r.nthen++;
	assert_int_equal(client_proto_req_encode(&r, &b), QFS_EINVAL);
	r.nthen--;
	r.nelse++;
	assert_int_equal(client_proto_req_encode(&r, &b), QFS_EINVAL);
	assert_int_equal(b.len, 0);
	qbuf_close(&b);
}

static void put_hdr(uint8_t *h, uint32_t magic, uint8_t version, uint8_t type, uint32_t len)
{
	qfs_le32_put(h, magic);
	h[4] = version;
	h[5] = type;
	h[6] = 0xaa; /* reserved: ignored */
	h[7] = 0x55;
	qfs_le32_put(h + 8, len);
	qfs_le32_put(h + 12, 0);
}

static void test_header_checks(void **state)
{
	uint8_t h[CLIENT_PROTO_HDR_SIZE];
	struct client_hdr out;

	(void)state;
	put_hdr(h, CLIENT_PROTO_MAGIC, CLIENT_PROTO_VERSION, CLIENT_REQ_GET, 100);
	assert_int_equal(client_proto_hdr_decode(h, 100, &out), 0);
	assert_int_equal(out.type, CLIENT_REQ_GET);
	assert_int_equal(out.len, 100);
	/* The length bound is checked before anyone allocates for it. */
	assert_int_equal(client_proto_hdr_decode(h, 99, &out), QFS_EFBIG);
	assert_int_equal(out.len, 100);
	put_hdr(h, CLIENT_PROTO_MAGIC, CLIENT_PROTO_VERSION, CLIENT_REQ_GET, 0xffffffffu);
	assert_int_equal(client_proto_hdr_decode(h, CLIENT_PROTO_MAX_PAYLOAD, &out), QFS_EFBIG);
	put_hdr(h, 0x50534651u /* the peer transport's magic */, CLIENT_PROTO_VERSION,
		CLIENT_REQ_GET, 1);
	assert_int_equal(client_proto_hdr_decode(h, 100, &out), QFS_EMSG);
	put_hdr(h, CLIENT_PROTO_MAGIC, CLIENT_PROTO_VERSION + 1, CLIENT_REQ_GET, 1);
	assert_int_equal(client_proto_hdr_decode(h, 100, &out), QFS_EMSG);
	put_hdr(h, CLIENT_PROTO_MAGIC, CLIENT_PROTO_VERSION, 0, 1);
	assert_int_equal(client_proto_hdr_decode(h, 100, &out), QFS_EMSG);
	put_hdr(h, CLIENT_PROTO_MAGIC, CLIENT_PROTO_VERSION, CLIENT_REQ_MAX_ + 1, 1);
	assert_int_equal(client_proto_hdr_decode(h, 100, &out), QFS_EMSG);
	put_hdr(h, CLIENT_PROTO_MAGIC, CLIENT_PROTO_VERSION, CLIENT_PROTO_RESPONSE, 1);
	assert_int_equal(client_proto_hdr_decode(h, 100, &out), QFS_EMSG);
	put_hdr(h, CLIENT_PROTO_MAGIC, CLIENT_PROTO_VERSION, CLIENT_PROTO_RESPONSE | CLIENT_REQ_DEL,
		1);
	assert_int_equal(client_proto_hdr_decode(h, 100, &out), 0);
}

static void test_req_decode_rejects(void **state)
{
	struct client_req d;
	struct qbuf b;
	struct client_hdr h;
	const uint8_t *p;
	static const uint8_t embedded_nul[] = {4, 0, 0, 0, '/', 0, 'a', 0, 0, 0, 0, 0};
	static const uint8_t empty_str[] = {0, 0, 0, 0, 0, 0, 0, 0};

	(void)state;
	/* A key with a NUL inside, and a zero-length string (no NUL at all). */
	assert_int_equal(
	    client_proto_req_decode(CLIENT_REQ_DEL, embedded_nul, sizeof(embedded_nul), &d),
	    QFS_EMSG);
	assert_int_equal(client_proto_req_decode(CLIENT_REQ_DEL, empty_str, sizeof(empty_str), &d),
			 QFS_EMSG);
	/* Trailing bytes, and a body decoded as the wrong type. */
	qbuf_init(&b);
	assert_int_equal(client_proto_req_encode(&sample_reqs[11], &b), 0);
	qbuf_put_u8(&b, 0);
	assert_int_equal(client_proto_req_decode(CLIENT_REQ_DEL, b.data + CLIENT_PROTO_HDR_SIZE,
						 b.len - CLIENT_PROTO_HDR_SIZE, &d),
			 QFS_EMSG);
	qbuf_close(&b);
	qbuf_init(&b);
	assert_int_equal(client_proto_req_encode(&sample_reqs[9], &b), 0);
	p = open_frame(&b, 0, &h);
	assert_int_equal(client_proto_req_decode(CLIENT_REQ_GET, p, h.len, &d), QFS_EMSG);
	assert_int_equal(
	    client_proto_req_decode(CLIENT_REQ_PUT | CLIENT_PROTO_RESPONSE, p, h.len, &d),
	    QFS_EMSG);
	qbuf_close(&b);
}

/* Parts of a hand-made TXN body. */
static void put_cmp_raw(struct qbuf *b, uint8_t target, uint8_t op, uint64_t num, size_t vlen)
{
	qbuf_put_u8(b, target);
	qbuf_put_u8(b, op);
	qbuf_put_bytes(b, "/k", 3);
	qbuf_put_u64(b, num);
	qbuf_put_bytes(b, "vvvv", vlen);
}

static void put_op_raw(struct qbuf *b, uint8_t type, uint32_t flags, size_t vlen)
{
	qbuf_put_u8(b, type);
	qbuf_put_u32(b, flags);
	qbuf_put_bytes(b, "/k", 3);
	qbuf_put_bytes(b, "vvvv", vlen);
}

/* Decodes b as a TXN request; a failure must leave nothing allocated. */
static int decode_txn(struct qbuf *b)
{
	struct client_req d;
	int rv = client_proto_req_decode(CLIENT_REQ_TXN, b->data, b->len, &d);

	if (rv)
		assert_null(d.txn_);
	client_proto_req_free(&d);
	qbuf_close(b);
	return rv;
}

/* A body of one compare (as given) and one success request (as given). */
static int decode_txn_one(uint8_t target, uint8_t op, uint64_t num, size_t cvlen, uint8_t type,
			  uint32_t flags, size_t ovlen)
{
	struct qbuf b;

	qbuf_init(&b);
	qbuf_put_u32(&b, 1);
	put_cmp_raw(&b, target, op, num, cvlen);
	qbuf_put_u32(&b, 1);
	put_op_raw(&b, type, flags, ovlen);
	qbuf_put_u32(&b, 0);
	return decode_txn(&b);
}

/* A body whose success branch claims `claimed` requests and holds `real`. */
static int decode_txn_count(uint32_t claimed, uint32_t real)
{
	struct qbuf b;

	qbuf_init(&b);
	qbuf_put_u32(&b, 0);
	qbuf_put_u32(&b, claimed);
	for (uint32_t i = 0; i < real; i++)
		put_op_raw(&b, CLIENT_TXN_DEL, 0, 0);
	qbuf_put_u32(&b, 0);
	return decode_txn(&b);
}

static void test_txn_decode_rejects(void **state)
{
	struct qbuf b;

	(void)state;
	assert_int_equal(
	    decode_txn_one(CLIENT_CMP_VALUE, CLIENT_CMP_EQ, 0, 4, CLIENT_TXN_PUT, 0, 4), 0);
	assert_int_equal(decode_txn_one(CLIENT_CMP_MOD, CLIENT_CMP_GT, 7, 0, CLIENT_TXN_DEL,
					CLIENT_DEL_PREFIX, 0),
			 0);
	/* Unknown target, operator, request type, flags. */
	assert_int_equal(decode_txn_one(0, CLIENT_CMP_EQ, 0, 0, CLIENT_TXN_DEL, 0, 0), QFS_EMSG);
	assert_int_equal(decode_txn_one(5, CLIENT_CMP_EQ, 0, 0, CLIENT_TXN_DEL, 0, 0), QFS_EMSG);
	assert_int_equal(decode_txn_one(CLIENT_CMP_MOD, 0, 0, 0, CLIENT_TXN_DEL, 0, 0), QFS_EMSG);
	assert_int_equal(decode_txn_one(CLIENT_CMP_MOD, 5, 0, 0, CLIENT_TXN_DEL, 0, 0), QFS_EMSG);
	assert_int_equal(decode_txn_one(CLIENT_CMP_MOD, CLIENT_CMP_EQ, 0, 0, 0, 0, 0), QFS_EMSG);
	assert_int_equal(decode_txn_one(CLIENT_CMP_MOD, CLIENT_CMP_EQ, 0, 0, 3, 0, 0), QFS_EMSG);
	assert_int_equal(decode_txn_one(CLIENT_CMP_MOD, CLIENT_CMP_EQ, 0, 0, CLIENT_TXN_DEL, 2, 0),
			 QFS_EMSG);
	assert_int_equal(decode_txn_one(CLIENT_CMP_MOD, CLIENT_CMP_EQ, 0, 0, CLIENT_TXN_PUT, 1, 0),
			 QFS_EMSG);
	/* What a compare or a DEL has no use for. */
	assert_int_equal(
	    decode_txn_one(CLIENT_CMP_VERSION, CLIENT_CMP_EQ, 0, 1, CLIENT_TXN_DEL, 0, 0),
	    QFS_EMSG);
	assert_int_equal(
	    decode_txn_one(CLIENT_CMP_VALUE, CLIENT_CMP_EQ, 1, 0, CLIENT_TXN_DEL, 0, 0), QFS_EMSG);
	assert_int_equal(decode_txn_one(CLIENT_CMP_MOD, CLIENT_CMP_EQ, 0, 0, CLIENT_TXN_DEL, 0, 1),
			 QFS_EMSG);
	/* Counts: the bound, then past it with the bytes there; far past what
	 * the payload could hold; more than there are; fewer. */
	assert_int_equal(decode_txn_count(CLIENT_PROTO_TXN_MAX, CLIENT_PROTO_TXN_MAX), 0);
	assert_int_equal(decode_txn_count(CLIENT_PROTO_TXN_MAX + 1, CLIENT_PROTO_TXN_MAX + 1),
			 QFS_EMSG);
	assert_int_equal(decode_txn_count(0xffffffffu, 2), QFS_EMSG);
	assert_int_equal(decode_txn_count(3, 2), QFS_EMSG);
	assert_int_equal(decode_txn_count(1, 2), QFS_EMSG);
	/* A key with no NUL, a missing failure count, trailing bytes. */
	qbuf_init(&b);
	qbuf_put_u32(&b, 0);
	qbuf_put_u32(&b, 1);
	qbuf_put_u8(&b, CLIENT_TXN_DEL);
	qbuf_put_u32(&b, 0);
	qbuf_put_bytes(&b, "/k", 2);
	qbuf_put_bytes(&b, "", 0);
	qbuf_put_u32(&b, 0);
	assert_int_equal(decode_txn(&b), QFS_EMSG);
	qbuf_init(&b);
	qbuf_put_u32(&b, 0);
	qbuf_put_u32(&b, 0);
	assert_int_equal(decode_txn(&b), QFS_EMSG);
	qbuf_init(&b);
	for (int i = 0; i < 3; i++)
		qbuf_put_u32(&b, 0);
	qbuf_put_u8(&b, 0);
	assert_int_equal(decode_txn(&b), QFS_EMSG);
}

/* ---- responses ------------------------------------------------------------ */

static const struct client_status sample_status = {
    .name = "n1",
    .member_id = 0xabcdef0123456789ULL,
    .cluster_id = 42,
    .role = "leader",
    .term = 7,
    .commit_index = 100,
    .applied_index = 99,
    .leader_id = 0xabcdef0123456789ULL,
    .leader_name = "n1",
    .revision = 55,
    .compacted_revision = 3,
    .db_size = 123456,
    .quota_bytes = 2ULL << 30,
    .keys = 12,
    .snapshot_index = 80,
};

static const struct client_member sample_members[] = {
    {1, "n1", "127.0.0.1:2380", "127.0.0.1:2379", true, true},
    {2, "n2", "127.0.0.1:2381", "", true, false},
    {3, "n3", "[::1]:2382", "[::1]:2383", false, false},
};

static const struct client_kv sample_kvs[] = {
    {"/", 2, 0755, 0, 0, 1, (const uint8_t *)"", 0},
    {"/a", 1, 0644, 5, 9, 3, value_bytes, sizeof(value_bytes)},
    {"/a b/\xc3\xa9", 3, 0777, 6, 6, 1, (const uint8_t *)"target", 6},
};

static const char *lease_keys[] = {"/svc/a", "/svc/b \"q\""};
static const struct client_lease sample_leases[] = {
    {0x1a2b3c4d5e6fULL, 10000, 7250, 2, NULL, 0},
    {0xffffffffffffULL, 1500, 0, 0, NULL, 0},
    {42, INT64_MAX / 1000000, INT64_MAX / 1000000, 5, NULL, 0}, /* keys cut: 1 of 5 */
};

static const struct client_event sample_events[] = {
    {CLIENT_EVENT_PUT, 9, {"/a", 1, 0644, 5, 9, 3, value_bytes, sizeof(value_bytes)}},
    {CLIENT_EVENT_DELETE, 9, {"/b", 2, 0755, 4, 4, 1, (const uint8_t *)"", 0}},
    {CLIENT_EVENT_PUT, 12, {"/a b/\xc3\xa9", 3, 0777, 12, 12, 1, (const uint8_t *)"t", 1}},
};

static void encode_lease_responses(struct qbuf *b)
{
	struct client_leases_enc e;

	assert_int_equal(client_proto_lease_encode(b, CLIENT_REQ_LEASE_GRANT, 0xabcdefULL, 1500),
			 0);
	assert_int_equal(client_proto_lease_encode(b, CLIENT_REQ_LEASE_RENEW, 0xabcdefULL, 90000),
			 0);
	assert_int_equal(client_proto_put_lease_encode(b, 1234, 0x123456789abcULL), 0);
	assert_int_equal(client_proto_rev_encode(b, CLIENT_REQ_LEASE_REVOKE, 99), 0);
	client_proto_leases_begin(&e, b, 321);
	client_proto_leases_add(&e, &sample_leases[0]);
	client_proto_leases_add_key(&e, lease_keys[0]);
	client_proto_leases_add_key(&e, lease_keys[1]);
	client_proto_leases_add(&e, &sample_leases[1]);
	client_proto_leases_add(&e, &sample_leases[2]);
	client_proto_leases_add_key(&e, lease_keys[0]);
	assert_int_equal(client_proto_leases_end(&e, true), 0);
	client_proto_leases_begin(&e, b, 322);
	assert_int_equal(client_proto_leases_end(&e, false), 0);
}

static const uint8_t image_bytes[] = "an image of the replicated state";

static struct client_snapshot sample_snapshot(uint64_t offset, size_t len)
{
	return (struct client_snapshot){.index = 1234,
					.term = 5,
					.revision = 999,
					.keys = 17,
					.leases = 2,
					.total = sizeof(image_bytes),
					.crc = 0xdeadbeef,
					.offset = offset,
					.chunk = image_bytes + offset,
					.chunk_len = len};
}

/* A SNAPSHOT stream: two chunks. */
static void encode_snapshot_responses(struct qbuf *b)
{
	struct client_snapshot a = sample_snapshot(0, 10);
	struct client_snapshot z = sample_snapshot(10, sizeof(image_bytes) - 10);

	assert_int_equal(client_proto_snapshot_encode(b, &a), 0);
	assert_int_equal(client_proto_snapshot_encode(b, &z), 0);
}

/* Every response type, one frame after another in one buffer. */
static void encode_all_responses(struct qbuf *b)
{
	struct client_get_enc g;
	struct client_watch_enc w;

	assert_int_equal(client_proto_status_encode(b, &sample_status), 0);
	assert_int_equal(client_proto_members_encode(b, sample_members, 3), 0);
	assert_int_equal(client_proto_members_encode(b, sample_members, 0), 0);
	assert_int_equal(client_proto_ok_encode(b, CLIENT_REQ_MEMBER_ADD), 0);
	assert_int_equal(client_proto_rev_encode(b, CLIENT_REQ_PUT, 77), 0);
	assert_int_equal(client_proto_err_encode(b, CLIENT_REQ_MEMBER_REMOVE, QFS_ENOTLEADER,
						 "not the leader", "n2", "127.0.0.1:2479"),
			 0);
	assert_int_equal(client_proto_err_encode(b, CLIENT_REQ_GET, QFS_ECOMPACTED,
						 "revision 2 has been compacted", NULL, NULL),
			 0);
	client_proto_get_begin(&g, b, 88);
	for (size_t i = 0; i < 3; i++)
		client_proto_get_add(&g, &sample_kvs[i]);
	assert_int_equal(client_proto_get_end(&g, true), 0);
	client_proto_get_begin(&g, b, 89);
	assert_int_equal(client_proto_get_end(&g, false), 0);
	client_proto_watch_begin(&w, b);
	for (size_t i = 0; i < 3; i++)
		client_proto_watch_add(&w, &sample_events[i]);
	assert_int_equal(client_proto_watch_end(&w, 13), 0);
	client_proto_watch_begin(&w, b); /* the "established" frame */
	assert_int_equal(client_proto_watch_end(&w, 56), 0);
	assert_int_equal(client_proto_err_encode(b, CLIENT_REQ_WATCH, QFS_ECOMPACTED,
						 "revision 3 has been compacted; the oldest "
						 "available is 57",
						 NULL, NULL),
			 0);
	encode_lease_responses(b);
	encode_snapshot_responses(b);
	assert_int_equal(client_proto_txn_encode(b, true, 41), 0);
	assert_int_equal(client_proto_txn_encode(b, false, 0xffffffffffffffffULL), 0);
	assert_int_equal(client_proto_rev_encode(b, CLIENT_REQ_COMPACT, 1234), 0);
}

#define NRESPS 23

static void check_txn_response(size_t i, const struct client_resp *r)
{
	assert_int_equal(r->status, 0);
	switch (i) {
	case 20:
		assert_int_equal(r->type, CLIENT_REQ_TXN);
		assert_true(r->succeeded);
		assert_int_equal(r->revision, 41);
		break;
	case 21:
		assert_int_equal(r->type, CLIENT_REQ_TXN);
		assert_false(r->succeeded);
		assert_int_equal(r->revision, 0xffffffffffffffffULL);
		break;
	case 22:
		assert_int_equal(r->type, CLIENT_REQ_COMPACT);
		assert_int_equal(r->revision, 1234);
		break;
	default:
		fail();
	}
}

static void check_lease_response(size_t i, const struct client_resp *r)
{
	static const size_t listed[] = {2, 0, 1};

	switch (i) {
	case 12:
		assert_int_equal(r->type, CLIENT_REQ_LEASE_GRANT);
		assert_int_equal(r->status, 0);
		assert_int_equal(r->lease_id, 0xabcdefULL);
		assert_int_equal(r->ttl_ms, 1500);
		break;
	case 13:
		assert_int_equal(r->type, CLIENT_REQ_LEASE_RENEW);
		assert_int_equal(r->lease_id, 0xabcdefULL);
		assert_int_equal(r->ttl_ms, 90000);
		break;
	case 14:
		assert_int_equal(r->type, CLIENT_REQ_PUT_LEASE);
		assert_int_equal(r->revision, 1234);
		assert_int_equal(r->lease_id, 0x123456789abcULL);
		break;
	case 15:
		assert_int_equal(r->type, CLIENT_REQ_LEASE_REVOKE);
		assert_int_equal(r->revision, 99);
		break;
	case 16:
		assert_int_equal(r->type, CLIENT_REQ_LEASE_LIST);
		assert_int_equal(r->revision, 321);
		assert_true(r->more);
		assert_int_equal(r->nleases, 3);
		for (size_t j = 0; j < 3; j++) {
			const struct client_lease *a = &sample_leases[j], *d = &r->leases[j];

			assert_int_equal(a->id, d->id);
			assert_int_equal(a->ttl_ms, d->ttl_ms);
			assert_int_equal(a->remaining_ms, d->remaining_ms);
			assert_int_equal(a->nkeys, d->nkeys);
			assert_int_equal(d->nkeys_listed, listed[j]);
			for (size_t k = 0; k < d->nkeys_listed; k++)
				assert_string_equal(d->keys[k], lease_keys[k]);
		}
		break;
	case 17:
		assert_int_equal(r->type, CLIENT_REQ_LEASE_LIST);
		assert_int_equal(r->revision, 322);
		assert_false(r->more);
		assert_int_equal(r->nleases, 0);
		break;
	default:
		fail();
	}
}

static void check_response(size_t i, const struct client_resp *r)
{
	if (i >= 20) {
		check_txn_response(i, r);
		return;
	}
	if (i >= 18) {
		const struct client_snapshot *s = &r->snap;
		uint64_t off = i == 18 ? 0 : 10;

		assert_int_equal(r->type, CLIENT_REQ_SNAPSHOT);
		assert_int_equal(r->status, 0);
		assert_int_equal(s->index, 1234);
		assert_int_equal(s->term, 5);
		assert_int_equal(s->revision, 999);
		assert_int_equal(s->keys, 17);
		assert_int_equal(s->leases, 2);
		assert_int_equal(s->total, sizeof(image_bytes));
		assert_int_equal(s->crc, 0xdeadbeef);
		assert_int_equal(s->offset, off);
		assert_int_equal(s->chunk_len, i == 18 ? 10 : sizeof(image_bytes) - 10);
		assert_memory_equal(s->chunk, image_bytes + off, s->chunk_len);
		return;
	}
	if (i >= 12) {
		check_lease_response(i, r);
		return;
	}
	switch (i) {
	case 0:
		assert_int_equal(r->type, CLIENT_REQ_STATUS);
		assert_int_equal(r->status, 0);
		assert_string_equal(r->st.name, "n1");
		assert_string_equal(r->st.role, "leader");
		assert_string_equal(r->st.leader_name, "n1");
		assert_int_equal(r->st.member_id, sample_status.member_id);
		assert_int_equal(r->st.cluster_id, 42);
		assert_int_equal(r->st.term, 7);
		assert_int_equal(r->st.commit_index, 100);
		assert_int_equal(r->st.applied_index, 99);
		assert_int_equal(r->st.leader_id, sample_status.leader_id);
		assert_int_equal(r->st.revision, 55);
		assert_int_equal(r->st.compacted_revision, 3);
		assert_int_equal(r->st.db_size, 123456);
		assert_int_equal(r->st.quota_bytes, 2ULL << 30);
		assert_int_equal(r->st.keys, 12);
		assert_int_equal(r->st.snapshot_index, 80);
		break;
	case 1:
		assert_int_equal(r->type, CLIENT_REQ_MEMBER_LIST);
		assert_int_equal(r->nmembers, 3);
		for (size_t j = 0; j < 3; j++) {
			assert_int_equal(r->members[j].id, sample_members[j].id);
			assert_string_equal(r->members[j].name, sample_members[j].name);
			assert_string_equal(r->members[j].peer_addr, sample_members[j].peer_addr);
			assert_string_equal(r->members[j].client_addr,
					    sample_members[j].client_addr);
			assert_int_equal(r->members[j].voter, sample_members[j].voter);
			assert_int_equal(r->members[j].leader, sample_members[j].leader);
		}
		break;
	case 2:
		assert_int_equal(r->nmembers, 0);
		break;
	case 3:
		assert_int_equal(r->type, CLIENT_REQ_MEMBER_ADD);
		assert_int_equal(r->status, 0);
		break;
	case 4:
		assert_int_equal(r->type, CLIENT_REQ_PUT);
		assert_int_equal(r->revision, 77);
		break;
	case 5:
		assert_int_equal(r->type, CLIENT_REQ_MEMBER_REMOVE);
		assert_int_equal(r->status, QFS_ENOTLEADER);
		assert_string_equal(r->msg, "not the leader");
		assert_string_equal(r->leader_name, "n2");
		assert_string_equal(r->leader_client, "127.0.0.1:2479");
		break;
	case 6:
		assert_int_equal(r->status, QFS_ECOMPACTED);
		assert_string_equal(r->msg, "revision 2 has been compacted");
		assert_string_equal(r->leader_name, "");
		assert_string_equal(r->leader_client, "");
		break;
	case 7:
		assert_int_equal(r->type, CLIENT_REQ_GET);
		assert_int_equal(r->revision, 88);
		assert_true(r->more);
		assert_int_equal(r->nkvs, 3);
		for (size_t j = 0; j < 3; j++) {
			const struct client_kv *a = &sample_kvs[j], *d = &r->kvs[j];

			assert_string_equal(a->key, d->key);
			assert_int_equal(a->type, d->type);
			assert_int_equal(a->mode, d->mode);
			assert_int_equal(a->create_rev, d->create_rev);
			assert_int_equal(a->mod_rev, d->mod_rev);
			assert_int_equal(a->version, d->version);
			assert_int_equal(a->value_len, d->value_len);
			assert_memory_equal(a->value, d->value, a->value_len);
		}
		break;
	case 8:
		assert_int_equal(r->revision, 89);
		assert_false(r->more);
		assert_int_equal(r->nkvs, 0);
		break;
	case 9:
		assert_int_equal(r->type, CLIENT_REQ_WATCH);
		assert_int_equal(r->status, 0);
		assert_int_equal(r->revision, 13);
		assert_int_equal(r->nevents, 3);
		for (size_t j = 0; j < 3; j++) {
			const struct client_event *a = &sample_events[j], *d = &r->events[j];

			assert_int_equal(a->type, d->type);
			assert_int_equal(a->revision, d->revision);
			assert_string_equal(a->kv.key, d->kv.key);
			assert_int_equal(a->kv.type, d->kv.type);
			assert_int_equal(a->kv.mode, d->kv.mode);
			assert_int_equal(a->kv.create_rev, d->kv.create_rev);
			assert_int_equal(a->kv.mod_rev, d->kv.mod_rev);
			assert_int_equal(a->kv.version, d->kv.version);
			assert_int_equal(a->kv.value_len, d->kv.value_len);
			assert_memory_equal(a->kv.value, d->kv.value, a->kv.value_len);
		}
		break;
	case 10:
		assert_int_equal(r->type, CLIENT_REQ_WATCH);
		assert_int_equal(r->revision, 56);
		assert_int_equal(r->nevents, 0);
		break;
	case 11:
		assert_int_equal(r->type, CLIENT_REQ_WATCH);
		assert_int_equal(r->status, QFS_ECOMPACTED);
		assert_string_equal(r->msg,
				    "revision 3 has been compacted; the oldest available is 57");
		break;
	}
}

static void test_resp_roundtrip(void **state)
{
	struct qbuf b;
	size_t off = 0, i = 0;

	(void)state;
	qbuf_init(&b);
	encode_all_responses(&b);
	while (off < b.len) {
		struct client_hdr h;
		struct client_resp r;
		const uint8_t *p;

		assert_int_equal(
		    client_proto_hdr_decode(b.data + off, CLIENT_PROTO_MAX_PAYLOAD, &h), 0);
		assert_true(h.type & CLIENT_PROTO_RESPONSE);
		p = b.data + off + CLIENT_PROTO_HDR_SIZE;
		assert_int_equal(client_proto_crc_check(&h, p), 0);
		assert_int_equal(client_proto_resp_decode(&h, p, h.len, &r), 0);
		check_response(i++, &r);
		client_proto_resp_free(&r);
		off += CLIENT_PROTO_HDR_SIZE + h.len;
	}
	assert_int_equal(i, NRESPS);
	assert_int_equal(off, b.len);
	qbuf_close(&b);
}

/* AUTH_LIST carries the users and roles as opaque bytes; cut, it is refused. */
static void test_auth_list_resp(void **state)
{
	static const uint8_t state_bytes[] = "auth_encode output, opaque here";
	struct client_resp r;
	struct client_hdr h;
	const uint8_t *p;
	struct qbuf b;

	(void)state;
	qbuf_init(&b);
	assert_int_equal(client_proto_auth_list_encode(&b, state_bytes, sizeof(state_bytes)), 0);
	assert_int_equal(client_proto_hdr_decode(b.data, CLIENT_PROTO_MAX_PAYLOAD, &h), 0);
	assert_int_equal(h.type, CLIENT_REQ_AUTH_LIST | CLIENT_PROTO_RESPONSE);
	p = b.data + CLIENT_PROTO_HDR_SIZE;
	assert_int_equal(client_proto_resp_decode(&h, p, h.len, &r), 0);
	assert_int_equal(r.auth_len, sizeof(state_bytes));
	assert_memory_equal(r.auth, state_bytes, sizeof(state_bytes));
	client_proto_resp_free(&r);
	h.len--;
	assert_int_equal(client_proto_resp_decode(&h, p, h.len, &r), QFS_EMSG);
	qbuf_close(&b);
}

static void test_resp_encode_rejects(void **state)
{
	struct client_member bad = {1, "n1", NULL, "", true, false};
	struct client_event badev = sample_events[0];
	struct client_watch_enc w;
	struct qbuf b;

	(void)state;
	qbuf_init(&b);
	/* An unknown event type or a missing key: the whole frame is undone. */
	badev.type = 3;
	client_proto_watch_begin(&w, &b);
	client_proto_watch_add(&w, &sample_events[0]);
	client_proto_watch_add(&w, &badev);
	assert_int_equal(client_proto_watch_end(&w, 9), QFS_EINVAL);
	assert_int_equal(b.len, 0);
	badev = sample_events[0];
	badev.kv.key = NULL;
	client_proto_watch_begin(&w, &b);
	client_proto_watch_add(&w, &badev);
	assert_int_equal(client_proto_watch_end(&w, 9), QFS_EINVAL);
	assert_int_equal(client_proto_err_encode(&b, CLIENT_REQ_GET, 0, "x", "", ""), QFS_EINVAL);
	assert_int_equal(client_proto_ok_encode(&b, 99), QFS_EINVAL);
	assert_int_equal(client_proto_members_encode(&b, &bad, 1), QFS_EINVAL);
	/* Lease answers: only GRANT and RENEW carry an id and a ttl; a key
	 * needs a lease to belong to; a missing key undoes the list. */
	assert_int_equal(client_proto_lease_encode(&b, CLIENT_REQ_LEASE_REVOKE, 1, 1), QFS_EINVAL);
	{
		struct client_leases_enc e;

		client_proto_leases_begin(&e, &b, 1);
		client_proto_leases_add_key(&e, "/orphan");
		assert_int_equal(client_proto_leases_end(&e, false), QFS_EINVAL);
		client_proto_leases_begin(&e, &b, 1);
		client_proto_leases_add(&e, &sample_leases[0]);
		client_proto_leases_add_key(&e, NULL);
		assert_int_equal(client_proto_leases_end(&e, false), QFS_EINVAL);
	}
	assert_int_equal(b.len, 0);
	qbuf_close(&b);
}

/* A LEASE_LIST body of one lease claiming nkeys attached and k listed,
 * followed by `real` keys. */
static int decode_lease_list(uint32_t nleases, uint64_t nkeys, uint32_t k, uint32_t real)
{
	struct client_hdr h = {.type = CLIENT_REQ_LEASE_LIST | CLIENT_PROTO_RESPONSE};
	struct client_resp r;
	struct qbuf b;
	int rv;

	qbuf_init(&b);
	qbuf_put_u32(&b, 0);
	qbuf_put_u64(&b, 5);
	qbuf_put_u8(&b, 0);
	qbuf_put_u32(&b, nleases);
	qbuf_put_u64(&b, 7);
	qbuf_put_u64(&b, 3000);
	qbuf_put_u64(&b, 1000);
	qbuf_put_u64(&b, nkeys);
	qbuf_put_u32(&b, k);
	for (uint32_t i = 0; i < real; i++)
		qbuf_put_bytes(&b, "/k", 3);
	h.len = (uint32_t)b.len;
	rv = client_proto_resp_decode(&h, b.data, b.len, &r);
	if (rv) {
		assert_null(r.leases);
		assert_null(r.keys_);
	} else {
		assert_int_equal(r.leases[0].nkeys_listed, k);
	}
	client_proto_resp_free(&r);
	qbuf_close(&b);
	return rv;
}

static void test_lease_list_decode_rejects(void)
{
	assert_int_equal(decode_lease_list(1, 2, 2, 2), 0);
	/* More keys listed than attached: the member is broken. */
	assert_int_equal(decode_lease_list(1, 1, 2, 2), QFS_EMSG);
	/* Counts beyond what the payload holds are refused before allocating. */
	assert_int_equal(decode_lease_list(1, UINT64_MAX, 0xffffffffu, 2), QFS_EMSG);
	assert_int_equal(decode_lease_list(0x7fffffffu, 2, 2, 2), QFS_EMSG);
	/* Fewer keys than listed, and a lease more than the count says. */
	assert_int_equal(decode_lease_list(1, 3, 3, 2), QFS_EMSG);
	assert_int_equal(decode_lease_list(1, 2, 1, 2), QFS_EMSG);
}

/* A SNAPSHOT frame as a (possibly broken) member would send it. */
static int decode_snapshot(uint64_t total, uint64_t offset, size_t len)
{
	struct client_resp r;
	struct qbuf b;
	struct client_hdr h = {.type = CLIENT_REQ_SNAPSHOT | CLIENT_PROTO_RESPONSE};
	int rv;

	qbuf_init(&b);
	qbuf_put_u32(&b, 0);
	for (int i = 0; i < 5; i++)
		qbuf_put_u64(&b, 1);
	qbuf_put_u64(&b, total);
	qbuf_put_u32(&b, 0);
	qbuf_put_u64(&b, offset);
	qbuf_put_bytes(&b, image_bytes, len);
	h.len = (uint32_t)b.len;
	rv = client_proto_resp_decode(&h, b.data, b.len, &r);
	client_proto_resp_free(&r);
	qbuf_close(&b);
	return rv;
}

static void test_snapshot_rejects(void)
{
	struct client_snapshot s = sample_snapshot(0, 10);
	struct qbuf b;

	assert_int_equal(decode_snapshot(10, 0, 10), 0);
	assert_int_equal(decode_snapshot(20, 10, 10), 0);
	assert_int_equal(decode_snapshot(0, 0, 0), 0); /* an empty image */
	/* A chunk past the total, an offset past it, an empty chunk that does
	 * not end the image: the member is broken. */
	assert_int_equal(decode_snapshot(10, 5, 10), QFS_EMSG);
	assert_int_equal(decode_snapshot(10, 11, 0), QFS_EMSG);
	assert_int_equal(decode_snapshot(UINT64_MAX, UINT64_MAX - 2, 10), QFS_EMSG);
	assert_int_equal(decode_snapshot(10, 5, 0), QFS_EMSG);
	/* The encoder refuses the same, and chunks over the frame bound. */
	qbuf_init(&b);
	s.total = 5;
	assert_int_equal(client_proto_snapshot_encode(&b, &s), QFS_EINVAL);
	s.total = UINT64_MAX;
	s.chunk_len = CLIENT_PROTO_SNAPSHOT_CHUNK + 1;
	assert_int_equal(client_proto_snapshot_encode(&b, &s), QFS_EINVAL);
	assert_int_equal(b.len, 0);
	qbuf_close(&b);
}

static void test_resp_decode_rejects(void **state)
{
	struct client_hdr h = {.type = CLIENT_REQ_STATUS | CLIENT_PROTO_RESPONSE};
	struct client_resp r;
	uint8_t p[16] = {0};
	struct qbuf b;

	(void)state;
	/* A request type is not a response; a positive status is not a code. */
	h.type = CLIENT_REQ_PUT;
	h.len = 12;
	assert_int_equal(client_proto_resp_decode(&h, p, 12, &r), QFS_EMSG);
	h.type = CLIENT_REQ_PUT | CLIENT_PROTO_RESPONSE;
	assert_int_equal(client_proto_resp_decode(&h, p, 12, &r), 0);
	p[0] = 1;
	assert_int_equal(client_proto_resp_decode(&h, p, 12, &r), QFS_EMSG);
	/* The length the header claims must be the length given. */
	p[0] = 0;
	assert_int_equal(client_proto_resp_decode(&h, p, 11, &r), QFS_EMSG);
	/* A kv count far beyond what the payload can hold is refused before
	 * allocating for it. */
	qbuf_init(&b);
	qbuf_put_u32(&b, 0);
	qbuf_put_u64(&b, 1);
	qbuf_put_u8(&b, 0);
	qbuf_put_u32(&b, 0x7fffffffu);
	h.type = CLIENT_REQ_GET | CLIENT_PROTO_RESPONSE;
	h.len = (uint32_t)b.len;
	assert_int_equal(client_proto_resp_decode(&h, b.data, b.len, &r), QFS_EMSG);
	assert_null(r.kvs);
	qbuf_close(&b);
	/* The same for events. */
	qbuf_init(&b);
	qbuf_put_u32(&b, 0);
	qbuf_put_u64(&b, 1);
	qbuf_put_u32(&b, 0x7fffffffu);
	h.type = CLIENT_REQ_WATCH | CLIENT_PROTO_RESPONSE;
	h.len = (uint32_t)b.len;
	assert_int_equal(client_proto_resp_decode(&h, b.data, b.len, &r), QFS_EMSG);
	assert_null(r.events);
	qbuf_close(&b);
	/* A TXN answer's succeeded is 0 or 1. */
	qbuf_init(&b);
	qbuf_put_u32(&b, 0);
	qbuf_put_u8(&b, 2);
	qbuf_put_u64(&b, 5);
	h.type = CLIENT_REQ_TXN | CLIENT_PROTO_RESPONSE;
	h.len = (uint32_t)b.len;
	assert_int_equal(client_proto_resp_decode(&h, b.data, b.len, &r), QFS_EMSG);
	b.data[4] = 1;
	assert_int_equal(client_proto_resp_decode(&h, b.data, b.len, &r), 0);
	assert_true(r.succeeded);
	qbuf_close(&b);
	test_lease_list_decode_rejects();
	test_snapshot_rejects();
}

/* A well-formed WATCH frame whose stream promises are broken: decoding fails. */
static int decode_watch(const struct client_event *evs, size_t n, uint64_t progress)
{
	struct client_watch_enc w;
	struct client_resp r;
	struct client_hdr h;
	const uint8_t *p;
	struct qbuf b;
	int rv;

	qbuf_init(&b);
	client_proto_watch_begin(&w, &b);
	for (size_t i = 0; i < n; i++)
		client_proto_watch_add(&w, &evs[i]);
	assert_int_equal(client_proto_watch_end(&w, progress), 0);
	p = open_frame(&b, 0, &h);
	rv = client_proto_resp_decode(&h, p, h.len, &r);
	client_proto_resp_free(&r);
	qbuf_close(&b);
	return rv;
}

static void test_watch_decode_rejects(void **state)
{
	struct client_event evs[3];
	size_t at;

	(void)state;
	memcpy(evs, sample_events, sizeof(evs));
	assert_int_equal(decode_watch(evs, 3, 12), 0);
	/* Revision 12 cut across frames: its first events may come before the
	 * progress reaches it, but nothing after it. */
	assert_int_equal(decode_watch(evs, 3, 11), 0);
	assert_int_equal(decode_watch(evs, 3, 10), QFS_EMSG);
	/* Revisions going back. */
	evs[1].revision = 8;
	assert_int_equal(decode_watch(evs, 3, 12), QFS_EMSG);
	/* Revision 0 does not exist. */
	memcpy(evs, sample_events, sizeof(evs));
	evs[0].revision = 0;
	assert_int_equal(decode_watch(evs, 1, 12), QFS_EMSG);
	/* An unknown event type (patched in: the encoder refuses to make one). */
	{
		struct client_watch_enc w;
		struct client_resp r;
		struct client_hdr h;
		struct qbuf b;
		const uint8_t *p;

		qbuf_init(&b);
		client_proto_watch_begin(&w, &b);
		client_proto_watch_add(&w, &sample_events[0]);
		assert_int_equal(client_proto_watch_end(&w, 9), 0);
		at = CLIENT_PROTO_HDR_SIZE + 4 + 8 + 4;
		assert_int_equal(b.data[at], CLIENT_EVENT_PUT);
		b.data[at] = 7;
		qfs_le32_put(b.data + 12, (uint32_t)crc32(0L, b.data + CLIENT_PROTO_HDR_SIZE,
							  (uInt)(b.len - CLIENT_PROTO_HDR_SIZE)));
		p = open_frame(&b, 0, &h);
		assert_int_equal(client_proto_resp_decode(&h, p, h.len, &r), QFS_EMSG);
		client_proto_resp_free(&r);
		qbuf_close(&b);
	}
}

/* ---- fuzz ---------------------------------------------------------------- */

/* What a receiver does with bytes off the wire: header, CRC, decode. */
static int receive(const uint8_t *f, size_t len)
{
	struct client_hdr h;
	int rv;

	if (len < CLIENT_PROTO_HDR_SIZE)
		return QFS_EMSG;
	rv = client_proto_hdr_decode(f, CLIENT_PROTO_MAX_PAYLOAD, &h);
	if (rv)
		return rv;
	if (len - CLIENT_PROTO_HDR_SIZE < h.len)
		return QFS_EMSG; /* still waiting for the rest */
	rv = client_proto_crc_check(&h, f + CLIENT_PROTO_HDR_SIZE);
	if (rv)
		return rv;
	if (h.type & CLIENT_PROTO_RESPONSE) {
		struct client_resp r;

		rv = client_proto_resp_decode(&h, f + CLIENT_PROTO_HDR_SIZE, h.len, &r);
		client_proto_resp_free(&r);
	} else {
		struct client_req r;

		rv = client_proto_req_decode(h.type, f + CLIENT_PROTO_HDR_SIZE, h.len, &r);
		client_proto_req_free(&r);
	}
	return rv;
}

/* Every frame we make, each in its own buffer. */
static size_t all_frames(struct qbuf *frames, size_t max)
{
	struct qbuf all;
	size_t n = 0, off = 0;

	for (size_t i = 0; i < NREQS && n < max; i++) {
		qbuf_init(&frames[n]);
		assert_int_equal(client_proto_req_encode(&sample_reqs[i], &frames[n++]), 0);
	}
	qbuf_init(&all);
	encode_all_responses(&all);
	while (off < all.len && n < max) {
		size_t len = CLIENT_PROTO_HDR_SIZE + qfs_le32_get(all.data + off + 8);

		qbuf_init(&frames[n]);
		qbuf_put(&frames[n++], all.data + off, len);
		off += len;
	}
	qbuf_close(&all);
	return n;
}

static void test_truncations(void **state)
{
	struct qbuf frames[64];
	size_t n = all_frames(frames, 64);

	(void)state;
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(receive(frames[i].data, frames[i].len), 0);
		for (size_t cut = 0; cut < frames[i].len; cut++)
			assert_int_not_equal(receive(frames[i].data, cut), 0);
		/* The payload alone, cut short, with a CRC that matches the cut:
		 * the decoder itself must notice. */
		for (size_t cut = 0; cut < frames[i].len - CLIENT_PROTO_HDR_SIZE; cut++) {
			uint8_t *copy = malloc(frames[i].len);

			assert_non_null(copy);
			memcpy(copy, frames[i].data, CLIENT_PROTO_HDR_SIZE + cut);
			qfs_le32_put(copy + 8, (uint32_t)cut);
			qfs_le32_put(copy + 12,
				     (uint32_t)crc32(0L, copy + CLIENT_PROTO_HDR_SIZE, (uInt)cut));
			assert_int_not_equal(receive(copy, CLIENT_PROTO_HDR_SIZE + cut), 0);
			free(copy);
		}
		qbuf_close(&frames[i]);
	}
}

static void test_bit_flips(void **state)
{
	struct qbuf frames[64];
	size_t n = all_frames(frames, 64);

	(void)state;
	for (size_t i = 0; i < n; i++) {
		uint8_t *f = frames[i].data;
		size_t len = frames[i].len;

		for (size_t bit = 0; bit < len * 8; bit++) {
			size_t byte = bit / 8;
			int rv;

			f[byte] ^= (uint8_t)(1u << (bit % 8));
			rv = receive(f, len);
			/* Only the reserved bytes may change unnoticed; a flipped
			 * type bit may turn one valid type into another, which
			 * must then still be handled without harm. */
			if (byte != 6 && byte != 7 && byte != 5)
				assert_int_not_equal(rv, 0);
			if (byte == 6 || byte == 7)
				assert_int_equal(rv, 0);
			f[byte] ^= (uint8_t)(1u << (bit % 8));
		}
		qbuf_close(&frames[i]);
	}
}

/* Random garbage behind a valid CRC goes straight to the decoders: they must
 * fail cleanly or return strings inside the input (ASan checks the reads). */
static void test_garbled_payloads(void **state)
{
	struct qbuf frames[64];
	size_t n = all_frames(frames, 64);

	(void)state;
	for (int round = 0; round < 20000; round++) {
		struct qbuf *src = &frames[next_rand() % n];
		size_t len = src->len;
		uint8_t *f = malloc(len + 8);
		size_t flips = 1 + next_rand() % 4;

		assert_non_null(f);
		memcpy(f, src->data, len);
		if (next_rand() % 4 == 0 && len > CLIENT_PROTO_HDR_SIZE)
			len -= next_rand() % (len - CLIENT_PROTO_HDR_SIZE);
		for (size_t k = 0; k < flips && len > CLIENT_PROTO_HDR_SIZE; k++) {
			size_t at =
			    CLIENT_PROTO_HDR_SIZE + next_rand() % (len - CLIENT_PROTO_HDR_SIZE);

			f[at] = (uint8_t)next_rand();
		}
		qfs_le32_put(f + 8, (uint32_t)(len - CLIENT_PROTO_HDR_SIZE));
		qfs_le32_put(f + 12, (uint32_t)crc32(0L, f + CLIENT_PROTO_HDR_SIZE,
						     (uInt)(len - CLIENT_PROTO_HDR_SIZE)));
		(void)receive(f, len);
		free(f);
	}
	for (size_t i = 0; i < n; i++)
		qbuf_close(&frames[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_req_roundtrip),
	    cmocka_unit_test(test_req_encode_rejects),
	    cmocka_unit_test(test_header_checks),
	    cmocka_unit_test(test_req_decode_rejects),
	    cmocka_unit_test(test_txn_encode_rejects),
	    cmocka_unit_test(test_txn_decode_rejects),
	    cmocka_unit_test(test_resp_roundtrip),
	    cmocka_unit_test(test_auth_list_resp),
	    cmocka_unit_test(test_resp_encode_rejects),
	    cmocka_unit_test(test_resp_decode_rejects),
	    cmocka_unit_test(test_truncations),
	    cmocka_unit_test(test_bit_flips),
	    cmocka_unit_test(test_garbled_payloads),
	    cmocka_unit_test(test_watch_decode_rejects),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
