/*
 * Unit tests of the entry codec (store/entry.c): round trips (lease ops
 * included), the stamp, and decoding of every truncation and of random
 * corruptions of valid entries.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../common/errors.h"
#include "../../store/entry.h"

static const struct store_cmp sample_cmps[] = {
	{ .target = STORE_CMP_VALUE, .op = STORE_CMP_EQ, .key = "/a", .value = (const uint8_t *)"x\0y", .value_len = 3 },
	{ .target = STORE_CMP_MOD, .op = STORE_CMP_LT, .key = "/b/c", .num = 42 },
};

static const struct store_op sample_then[] = {
	{ .type = STORE_OP_PUT, .key = "/a", .flags = STORE_PUT_MKPARENTS, .ftype = STORE_FILE,
	  .mode = 0644, .uid = 7, .gid = 8, .value = (const uint8_t *)"hello", .value_len = 5 },
	{ .type = STORE_OP_RENAME, .key = "/a", .dst = "/b", .flags = STORE_RENAME_NOREPLACE },
	{ .type = STORE_OP_SETXATTR, .key = "/b", .xname = "user.k", .value = (const uint8_t *)"v", .value_len = 1 },
	{ .type = STORE_OP_SETATTR, .key = "/b", .flags = STORE_ATTR_MTIME, .mtime_ns = -5 },
};

/* Lease ops: keyless ones encode a NULL key as "" (decoded as ""). */
static const struct store_op sample_else[] = {
	{ .type = STORE_OP_DELETE, .key = "/z", .flags = STORE_DEL_RECURSIVE },
	{ .type = STORE_OP_LEASE_GRANT, .key = "", .lease_id = 0xfedcba9876543210ull,
	  .ttl_ms = 1500 },
	{ .type = STORE_OP_LEASE_ATTACH, .key = "/z/k", .lease_id = 7 },
	{ .type = STORE_OP_LEASE_EXPIRE, .key = "", .lease_id = 7, .lease_gen = 0x8000000000000001ull },
	{ .type = STORE_OP_LEASE_RENEW, .key = "", .lease_id = 1, .ttl_ms = -1 },
	{ .type = STORE_OP_LEASE_REVOKE, .key = "", .lease_id = UINT64_MAX },
};
#define NELSE (sizeof(sample_else) / sizeof(sample_else[0]))

static struct entry sample_entry(void)
{
	struct entry e = {
		.type = ENTRY_TXN,
		.origin = 0x1122334455667788ull,
		.request_id = 99,
		.time_ns = 123456789,
		.txn = {
			.cmps = sample_cmps, .ncmps = 2,
			.then_ops = sample_then, .nthen = 4,
			.else_ops = sample_else, .nelse = NELSE,
		},
	};
	return e;
}

static void encode(const struct entry *e, struct qbuf *b)
{
	qbuf_init(b);
	assert_int_equal(entry_encode(e, b), 0);
}

static void assert_str_or_null(const char *a, const char *b)
{
	if (!a || !b)
		assert_ptr_equal(a, b);
	else
		assert_string_equal(a, b);
}

static void assert_bytes(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	assert_int_equal(alen, blen);
	if (alen)
		assert_memory_equal(a, b, alen);
}

static void assert_ops_equal(const struct store_op *a, const struct store_op *b, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		assert_int_equal(a[i].type, b[i].type);
		assert_string_equal(a[i].key, b[i].key);
		assert_int_equal(a[i].flags, b[i].flags);
		assert_int_equal(a[i].ftype, b[i].ftype);
		assert_int_equal(a[i].mode, b[i].mode);
		assert_int_equal(a[i].uid, b[i].uid);
		assert_int_equal(a[i].gid, b[i].gid);
		assert_int_equal(a[i].mtime_ns, b[i].mtime_ns);
		assert_bytes(a[i].value, a[i].value_len, b[i].value, b[i].value_len);
		assert_str_or_null(a[i].dst, b[i].dst);
		assert_str_or_null(a[i].xname, b[i].xname);
		assert_int_equal(a[i].lease_id, b[i].lease_id);
		assert_int_equal(a[i].ttl_ms, b[i].ttl_ms);
		assert_int_equal(a[i].lease_gen, b[i].lease_gen);
	}
}

static void test_roundtrip_txn(void **state)
{
	struct entry e = sample_entry(), *d;
	struct qbuf b;
	size_t i;

	(void)state;
	encode(&e, &b);
	assert_int_equal(b.data[0], ENTRY_VERSION);
	assert_int_equal(entry_decode(b.data, b.len, &d), 0);
	assert_int_equal(d->type, ENTRY_TXN);
	assert_int_equal(d->origin, e.origin);
	assert_int_equal(d->request_id, 99);
	assert_int_equal(d->time_ns, 123456789);
	assert_int_equal(d->txn.ncmps, 2);
	assert_int_equal(d->txn.nthen, 4);
	assert_int_equal(d->txn.nelse, NELSE);
	for (i = 0; i < 2; i++) {
		assert_int_equal(d->txn.cmps[i].target, sample_cmps[i].target);
		assert_int_equal(d->txn.cmps[i].op, sample_cmps[i].op);
		assert_string_equal(d->txn.cmps[i].key, sample_cmps[i].key);
		assert_int_equal(d->txn.cmps[i].num, sample_cmps[i].num);
		assert_bytes(d->txn.cmps[i].value, d->txn.cmps[i].value_len,
			     sample_cmps[i].value, sample_cmps[i].value_len);
	}
	assert_ops_equal(d->txn.then_ops, sample_then, 4);
	assert_ops_equal(d->txn.else_ops, sample_else, NELSE);
	/* The decoded entry owns its bytes: the input can go. */
	qbuf_close(&b);
	assert_string_equal(d->txn.then_ops[1].dst, "/b");
	free(d);
}

static void test_roundtrip_compact_and_empty(void **state)
{
	struct entry c = { .type = ENTRY_COMPACT, .origin = 3, .request_id = 4, .time_ns = -1,
			   .compact_rev = 77 };
	struct entry t = { .type = ENTRY_TXN };
	struct entry *d;
	struct qbuf b;

	(void)state;
	encode(&c, &b);
	assert_int_equal(b.len, ENTRY_HEADER_SIZE + 8);
	assert_int_equal(entry_decode(b.data, b.len, &d), 0);
	assert_int_equal(d->type, ENTRY_COMPACT);
	assert_int_equal(d->compact_rev, 77);
	assert_int_equal(d->time_ns, -1);
	assert_int_equal(d->txn.ncmps + d->txn.nthen + d->txn.nelse, 0);
	free(d);
	qbuf_close(&b);

	encode(&t, &b);
	assert_int_equal(b.len, ENTRY_HEADER_SIZE + 12);
	assert_int_equal(entry_decode(b.data, b.len, &d), 0);
	assert_int_equal(d->txn.nthen, 0);
	free(d);
	qbuf_close(&b);
}

static void test_roundtrip_member(void **state)
{
	struct entry m = {.type = ENTRY_MEMBER, .origin = 9, .request_id = 1,
			  .member = {.id = 42, .name = "n2", .peer = "127.0.0.1:2380", .client = ""}};
	struct entry *d;
	struct qbuf b;

	(void)state;
	encode(&m, &b);
	assert_int_equal(entry_decode(b.data, b.len, &d), 0);
	assert_int_equal(d->type, ENTRY_MEMBER);
	assert_int_equal(d->member.id, 42);
	assert_string_equal(d->member.name, "n2");
	assert_string_equal(d->member.peer, "127.0.0.1:2380");
	assert_string_equal(d->member.client, "");
	free(d);
	for (size_t cut = 0; cut < b.len; cut++) /* every truncation is refused */
		assert_int_equal(entry_decode(b.data, cut, &d), QFS_EMSG);
	qbuf_close(&b);
	m.member.peer = NULL;
	qbuf_init(&b);
	assert_int_equal(entry_encode(&m, &b), QFS_EINVAL);
	qbuf_close(&b);
}

/* The store leaves an AUTH entry's body to the daemon (fs/auth.h). */
static void test_roundtrip_auth(void **state)
{
	struct entry m = {.type = ENTRY_AUTH, .origin = 9, .request_id = 2,
			  .auth = {.op = 7, .name = "ro", .arg = "/config", .perm = 1}};
	struct entry *d;
	struct qbuf b;

	(void)state;
	encode(&m, &b);
	assert_int_equal(entry_decode(b.data, b.len, &d), 0);
	assert_int_equal(d->type, ENTRY_AUTH);
	assert_int_equal(d->auth.op, 7);
	assert_string_equal(d->auth.name, "ro");
	assert_string_equal(d->auth.arg, "/config");
	assert_int_equal(d->auth.perm, 1);
	free(d);
	for (size_t cut = 0; cut < b.len; cut++)
		assert_int_equal(entry_decode(b.data, cut, &d), QFS_EMSG);
	b.data[b.len - 5] = 0; /* a NUL inside "/config" */
	assert_int_equal(entry_decode(b.data, b.len, &d), QFS_EMSG);
	qbuf_close(&b);
	m.auth.arg = NULL;
	qbuf_init(&b);
	assert_int_equal(entry_encode(&m, &b), QFS_EINVAL);
	qbuf_close(&b);
}

static void test_stamp_time(void **state)
{
	struct entry e = sample_entry(), *d;
	struct qbuf b;

	(void)state;
	encode(&e, &b);
	assert_int_equal(entry_stamp_time(b.data, b.len, 987), 0);
	assert_int_equal(entry_decode(b.data, b.len, &d), 0);
	assert_int_equal(d->time_ns, 987);
	assert_int_equal(d->request_id, 99);
	free(d);
	assert_int_equal(entry_stamp_time(b.data, ENTRY_HEADER_SIZE - 1, 1), QFS_EMSG);
	qbuf_close(&b);
}

static void test_encode_rejects(void **state)
{
	struct store_op bad_key = { .type = STORE_OP_PUT, .key = NULL, .ftype = STORE_FILE };
	struct store_op bad_type = { .type = STORE_OP_LEASE_EXPIRE + 1, .key = "/a" };
	struct store_op attach_nokey = { .type = STORE_OP_LEASE_ATTACH, .lease_id = 1 };
	struct store_cmp bad_cmp = { .target = 7, .op = STORE_CMP_EQ, .key = "/a" };
	struct entry e = { .type = ENTRY_TXN };
	struct qbuf b;

	(void)state;
	qbuf_init(&b);
	e.txn.then_ops = &bad_key;
	e.txn.nthen = 1;
	assert_int_equal(entry_encode(&e, &b), QFS_EINVAL);
	e.txn.then_ops = &bad_type;
	assert_int_equal(entry_encode(&e, &b), QFS_EINVAL);
	e.txn.then_ops = &attach_nokey;
	assert_int_equal(entry_encode(&e, &b), QFS_EINVAL);
	e.txn.nthen = 0;
	e.txn.cmps = &bad_cmp;
	e.txn.ncmps = 1;
	assert_int_equal(entry_encode(&e, &b), QFS_EINVAL);
	e.txn.ncmps = ENTRY_MAX_OPS + 1;
	assert_int_equal(entry_encode(&e, &b), QFS_EINVAL);
	e.type = 5;
	assert_int_equal(entry_encode(&e, &b), QFS_EINVAL);
	/* Nothing was appended by the refused encodes. */
	assert_int_equal(b.len, 0);
	qbuf_close(&b);
}

/* Keyless lease ops may leave key NULL; they decode with key "". */
static void test_lease_ops_null_key(void **state)
{
	struct store_op ops[] = {
		{ .type = STORE_OP_LEASE_GRANT, .lease_id = 5, .ttl_ms = 3000 },
		{ .type = STORE_OP_LEASE_REVOKE, .lease_id = 5 },
	};
	struct entry e = { .type = ENTRY_TXN, .txn = { .then_ops = ops, .nthen = 2 } }, *d;
	struct qbuf b;

	(void)state;
	encode(&e, &b);
	assert_int_equal(entry_decode(b.data, b.len, &d), 0);
	assert_int_equal(d->txn.nthen, 2);
	assert_string_equal(d->txn.then_ops[0].key, "");
	assert_int_equal(d->txn.then_ops[0].type, STORE_OP_LEASE_GRANT);
	assert_int_equal(d->txn.then_ops[0].lease_id, 5);
	assert_int_equal(d->txn.then_ops[0].ttl_ms, 3000);
	assert_int_equal(d->txn.then_ops[1].type, STORE_OP_LEASE_REVOKE);
	free(d);
	qbuf_close(&b);
}

static void test_decode_rejects(void **state)
{
	struct entry e = sample_entry(), *d = (struct entry *)0x1;
	struct qbuf b;
	uint8_t *copy;
	size_t key_at;

	(void)state;
	encode(&e, &b);
	copy = malloc(b.len + 1);
	assert_non_null(copy);

	/* wrong format version (the one before leases too), bad type */
	memcpy(copy, b.data, b.len);
	copy[0] = ENTRY_VERSION + 1;
	assert_int_equal(entry_decode(copy, b.len, &d), QFS_EMSG);
	assert_null(d);
	copy[0] = 1;
	assert_int_equal(entry_decode(copy, b.len, &d), QFS_EMSG);
	/* an op type past the last lease op, in the last op (all its strings
	 * empty: a fixed size from its type byte to the end) */
	memcpy(copy, b.data, b.len);
	{
		size_t last = b.len - (1 + 4 + 4 + 1 + 4 * 3 + 8 + 4 + 4 + 4 + 24);

		assert_int_equal(copy[last], STORE_OP_LEASE_REVOKE);
		copy[last] = STORE_OP_LEASE_EXPIRE + 1;
		assert_int_equal(entry_decode(copy, b.len, &d), QFS_EMSG);
		copy[last] = STORE_OP_LEASE_EXPIRE;
		assert_int_equal(entry_decode(copy, b.len, &d), 0);
		assert_int_equal(d->txn.else_ops[NELSE - 1].type, STORE_OP_LEASE_EXPIRE);
		assert_int_equal(d->txn.else_ops[NELSE - 1].lease_id, UINT64_MAX);
		free(d);
	}
	memcpy(copy, b.data, b.len);
	copy[1] = 3;
	assert_int_equal(entry_decode(copy, b.len, &d), QFS_EMSG);
	/* trailing byte */
	memcpy(copy, b.data, b.len);
	copy[b.len] = 0;
	assert_int_equal(entry_decode(copy, b.len + 1, &d), QFS_EMSG);
	/* a NUL inside the first compare's key "/a" */
	key_at = ENTRY_HEADER_SIZE + 4 + 2 + 4;
	memcpy(copy, b.data, b.len);
	assert_memory_equal(copy + key_at, "/a", 2);
	copy[key_at + 1] = 0;
	assert_int_equal(entry_decode(copy, b.len, &d), QFS_EMSG);
	/* compare count larger than the remaining bytes could hold */
	memcpy(copy, b.data, b.len);
	copy[ENTRY_HEADER_SIZE] = 200;
	assert_int_equal(entry_decode(copy, b.len, &d), QFS_EMSG);
	memcpy(copy, b.data, b.len);
	copy[ENTRY_HEADER_SIZE + 3] = 0xff;
	assert_int_equal(entry_decode(copy, b.len, &d), QFS_EMSG);
	/* bad compare target */
	memcpy(copy, b.data, b.len);
	copy[ENTRY_HEADER_SIZE + 4] = 9;
	assert_int_equal(entry_decode(copy, b.len, &d), QFS_EMSG);
	assert_int_equal(entry_decode(NULL, 0, &d), QFS_EMSG);
	free(copy);
	qbuf_close(&b);
}

/* Every prefix must fail cleanly (only the whole entry is valid). */
static void test_decode_truncations(void **state)
{
	struct entry e = sample_entry(), *d;
	struct qbuf b;
	size_t n;

	(void)state;
	encode(&e, &b);
	for (n = 0; n < b.len; n++) {
		/* A fresh exact-size copy so ASan sees any over-read. */
		uint8_t *p = malloc(n ? n : 1);

		assert_non_null(p);
		memcpy(p, b.data, n);
		d = (struct entry *)0x1;
		assert_int_equal(entry_decode(p, n, &d), QFS_EMSG);
		assert_null(d);
		free(p);
	}
	qbuf_close(&b);
}

/* Random byte flips: either an error or an entry that is fully usable. */
static void test_decode_garbled(void **state)
{
	struct entry e = sample_entry(), *d;
	struct qbuf b;
	unsigned seed = 12345;
	int iter, ok = 0, bad = 0;

	(void)state;
	encode(&e, &b);
	for (iter = 0; iter < 20000; iter++) {
		uint8_t *p = malloc(b.len);
		int flips = 1 + (int)(rand_r(&seed) % 4), f;
		size_t i;

		assert_non_null(p);
		memcpy(p, b.data, b.len);
		for (f = 0; f < flips; f++)
			p[rand_r(&seed) % b.len] ^= (uint8_t)(1u << (rand_r(&seed) % 8));
		if (entry_decode(p, b.len, &d) == 0) {
			ok++;
			/* Touch everything the entry points at. */
			for (i = 0; i < d->txn.ncmps; i++)
				assert_true(strlen(d->txn.cmps[i].key) < b.len);
			for (i = 0; i < d->txn.nthen; i++)
				assert_true(strlen(d->txn.then_ops[i].key) < b.len);
			for (i = 0; i < d->txn.nelse; i++)
				assert_true(strlen(d->txn.else_ops[i].key) < b.len);
			free(d);
		} else {
			bad++;
		}
		free(p);
	}
	/* Flipping header fields keeps entries valid; lengths break them. */
	assert_true(ok > 0);
	assert_true(bad > 0);
	qbuf_close(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_txn),
		cmocka_unit_test(test_roundtrip_compact_and_empty),
	    cmocka_unit_test(test_roundtrip_member),
	    cmocka_unit_test(test_roundtrip_auth),
		cmocka_unit_test(test_stamp_time),
		cmocka_unit_test(test_encode_rejects),
		cmocka_unit_test(test_lease_ops_null_key),
		cmocka_unit_test(test_decode_rejects),
		cmocka_unit_test(test_decode_truncations),
		cmocka_unit_test(test_decode_garbled),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
