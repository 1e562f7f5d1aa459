/*
 * Unit tests of leases in the store (store/lease.c, the lease ops in
 * store/txn.c): grant/renew/revoke/expire and generation races, attach and
 * detach, renewal by writes, expiry deleting every key in one revision,
 * undo of failed transactions, quota, cluster time, and snapshots. All
 * through store_apply() with encoded entries, as the daemon does.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../common/errors.h"
#include "../../store/entry.h"
#include "../../store/store.h"
#include "store_fixture.h"

static struct store_op grant_op(uint64_t id, int64_t ttl_ms)
{
	return (struct store_op){ .type = STORE_OP_LEASE_GRANT, .lease_id = id, .ttl_ms = ttl_ms };
}

static struct store_op attach_op(const char *key, uint64_t id)
{
	return (struct store_op){ .type = STORE_OP_LEASE_ATTACH, .key = key, .lease_id = id };
}

static struct store_op lease_op(enum store_op_type t, uint64_t id, uint64_t gen)
{
	return (struct store_op){ .type = t, .lease_id = id, .lease_gen = gen };
}

static struct store_op put_op(const char *key, enum store_type type, const char *value)
{
	return (struct store_op){ .type = STORE_OP_PUT, .key = key, .ftype = type, .mode = 0644,
				  .value = (const uint8_t *)value,
				  .value_len = value ? strlen(value) : 0 };
}

static int put(struct fx *f, const char *key, const char *value)
{
	return apply_op(f, put_op(key, STORE_FILE, value));
}

static struct store_lease lease(struct fx *f, uint64_t id)
{
	struct store_lease l;

	assert_int_equal(store_lease_get(f->s, id, &l), 0);
	return l;
}

static uint64_t key_lease(struct fx *f, const char *key)
{
	struct store_kv kv;

	assert_int_equal(store_get(f->s, key, 0, &kv), 0);
	return kv.lease;
}

static int keys_cb(void *arg, const char *key)
{
	char *buf = arg;

	if (*buf)
		strcat(buf, " ");
	strcat(buf, key);
	return 0;
}

/* The keys of lease id, space separated ("ENOENT" when no such lease). */
static const char *keys(struct fx *f, uint64_t id)
{
	static char buf[4096];

	buf[0] = '\0';
	if (store_lease_keys(f->s, id, keys_cb, buf) == QFS_ENOENT)
		return "ENOENT";
	return buf;
}

static int list_cb(void *arg, const struct store_lease *l)
{
	char *buf = arg;

	sprintf(buf + strlen(buf), "%s%llx:%llu", *buf ? " " : "", (unsigned long long)l->id,
		(unsigned long long)l->nkeys);
	return 0;
}

static const char *list(struct fx *f)
{
	static char buf[4096];

	buf[0] = '\0';
	assert_int_equal(store_lease_list(f->s, list_cb, buf), 0);
	return buf;
}

/* ---- Tests ------------------------------------------------------------------------ */

static void test_grant_renew_errors(void **state)
{
	struct fx *f = *state;
	struct store_lease l;
	struct store_result res;

	assert_int_equal(apply_op(f, grant_op(0, 1000)), QFS_EINVAL);
	assert_int_equal(apply_op(f, grant_op(1, 0)), QFS_EINVAL);
	assert_int_equal(apply_op(f, grant_op(1, -5)), QFS_EINVAL);
	assert_int_equal(apply_op(f, grant_op(1, STORE_LEASE_TTL_MAX_MS + 1)), QFS_EINVAL);
	assert_int_equal(store_lease_get(f->s, 1, &l), QFS_ENOENT);

	/* A lease alone uses no revision. */
	res = apply_ops_res(f, &(struct store_op){ .type = STORE_OP_LEASE_GRANT, .lease_id = 0x10,
						     .ttl_ms = 3000 }, 1);
	assert_int_equal(res.err, 0);
	assert_true(res.succeeded);
	assert_int_equal(res.revision, 0);
	assert_int_equal(store_revision(f->s), 0);
	l = lease(f, 0x10);
	assert_int_equal(l.id, 0x10);
	assert_int_equal(l.ttl_ms, 3000);
	assert_int_equal(l.expiry_ns, 1000 * MS + 3000 * MS);
	assert_int_equal(l.gen, 1);
	assert_int_equal(l.nkeys, 0);
	assert_int_equal(apply_op(f, grant_op(0x10, 5000)), QFS_EEXIST);
	assert_int_equal(lease(f, 0x10).ttl_ms, 3000);
	/* A huge ttl saturates instead of wrapping. */
	assert_int_equal(apply_op(f, grant_op(0x11, STORE_LEASE_TTL_MAX_MS)), 0);
	assert_int_equal(lease(f, 0x11).expiry_ns, INT64_MAX);

	f->now += 700 * MS;
	assert_int_equal(apply_op(f, lease_op(STORE_OP_LEASE_RENEW, 0x10, 0)), 0);
	l = lease(f, 0x10);
	assert_int_equal(l.expiry_ns, 1700 * MS + 3000 * MS);
	assert_int_equal(l.gen, 2);
	assert_int_equal(apply_op(f, lease_op(STORE_OP_LEASE_RENEW, 0x99, 0)), QFS_ENOENT);
	assert_int_equal(apply_op(f, lease_op(STORE_OP_LEASE_REVOKE, 0x99, 0)), QFS_ENOENT);
	assert_string_equal(list(f), "10:0 11:0");
	assert_int_equal(apply_op(f, lease_op(STORE_OP_LEASE_REVOKE, 0x10, 0)), 0);
	assert_int_equal(store_lease_get(f->s, 0x10, &l), QFS_ENOENT);
	assert_string_equal(keys(f, 0x10), "ENOENT");
	assert_string_equal(list(f), "11:0");
	assert_int_equal(store_revision(f->s), 0);
}

static void test_cluster_time(void **state)
{
	struct fx *f = *state;
	struct entry c = { .type = ENTRY_COMPACT, .compact_rev = 0 };
	struct store_result res;

	assert_int_equal(store_cluster_time(f->s), 0);
	f->now = 500 * MS;
	assert_int_equal(put(f, "/a", "1"), 0);
	assert_int_equal(store_cluster_time(f->s), 500 * MS);
	/* A new leader with a slower clock stamps an earlier time: cluster
	 * time holds, and a grant counts from it. */
	f->now = 200 * MS;
	assert_int_equal(apply_op(f, grant_op(1, 1000)), 0);
	assert_int_equal(store_cluster_time(f->s), 500 * MS);
	assert_int_equal(lease(f, 1).expiry_ns, 1500 * MS);
	/* A failed transaction still carries time. */
	f->now = 900 * MS;
	assert_int_equal(apply_op(f, grant_op(1, 1000)), QFS_EEXIST);
	assert_int_equal(store_cluster_time(f->s), 900 * MS);
	/* So do entries that are not transactions; skipped indexes do not. */
	c.time_ns = 950 * MS;
	apply_entry(f, &c, &res);
	assert_int_equal(store_cluster_time(f->s), 950 * MS);
	f->index++;
	assert_int_equal(store_skip(f->s, f->index), 0);
	assert_int_equal(store_cluster_time(f->s), 950 * MS);
	/* Malformed entries carry nothing. */
	f->index++;
	assert_int_equal(store_apply(f->s, f->index, (const uint8_t *)"x", 1, &res), 0);
	assert_int_equal(res.err, QFS_EMSG);
	assert_int_equal(store_cluster_time(f->s), 950 * MS);
}

static void test_attach_detach(void **state)
{
	struct fx *f = *state;
	struct store_kv kv;
	uint64_t rev;

	assert_int_equal(put(f, "/b", "b"), 0);
	assert_int_equal(put(f, "/a", "a"), 0);
	assert_int_equal(apply_op(f, put_op("/a-b", STORE_FILE, "x")), 0);
	assert_int_equal(apply_op(f, put_op("/d", STORE_DIR, NULL)), 0);
	assert_int_equal(put(f, "/d/x", "x"), 0);
	assert_int_equal(apply_op(f, grant_op(7, 5000)), 0);
	assert_int_equal(apply_op(f, grant_op(8, 5000)), 0);
	rev = store_revision(f->s);

	/* Errors use no revision. */
	assert_int_equal(apply_op(f, attach_op("/a", 9)), QFS_ENOENT);
	assert_int_equal(apply_op(f, attach_op("/nope", 7)), QFS_ENOENT);
	assert_int_equal(apply_op(f, attach_op("/", 7)), QFS_EPERM);
	assert_int_equal(apply_op(f, attach_op("/.quorumfs/x", 7)), QFS_EPERM);
	assert_int_equal(apply_op(f, attach_op("a", 7)), QFS_EINVAL);
	assert_int_equal(store_revision(f->s), rev);

	/* Attaching is a change of the key: a revision, version + 1. */
	assert_int_equal(apply_op(f, attach_op("/a", 7)), 0);
	assert_int_equal(store_revision(f->s), rev + 1);
	assert_int_equal(store_get(f->s, "/a", 0, &kv), 0);
	assert_int_equal(kv.lease, 7);
	assert_int_equal(kv.version, 2);
	assert_int_equal(kv.mod_rev, rev + 1);
	assert_int_equal(kv.create_rev, 2);
	/* The version before still has no lease. */
	assert_int_equal(store_get(f->s, "/a", rev, &kv), 0);
	assert_int_equal(kv.lease, 0);
	/* Attachment does not renew. */
	assert_int_equal(lease(f, 7).gen, 1);

	assert_int_equal(apply_op(f, attach_op("/b", 7)), 0);
	assert_int_equal(apply_op(f, attach_op("/d/x", 7)), 0);
	assert_int_equal(apply_op(f, attach_op("/a-b", 7)), 0);
	assert_int_equal(apply_op(f, attach_op("/d", 7)), 0);
	/* Key order is the tree's: a key's subtree follows it. */
	assert_string_equal(keys(f, 7), "/a /a-b /b /d /d/x");
	assert_int_equal(lease(f, 7).nkeys, 5);
	assert_string_equal(keys(f, 8), "");

	/* Moving to another lease, detaching. */
	assert_int_equal(apply_op(f, attach_op("/b", 8)), 0);
	assert_string_equal(keys(f, 7), "/a /a-b /d /d/x");
	assert_string_equal(keys(f, 8), "/b");
	rev = store_revision(f->s);
	assert_int_equal(apply_op(f, attach_op("/a-b", 0)), 0);
	assert_int_equal(store_revision(f->s), rev + 1);
	assert_int_equal(key_lease(f, "/a-b"), 0);
	assert_string_equal(keys(f, 7), "/a /d /d/x");
	/* Detaching a key without a lease is still a change (a new version). */
	assert_int_equal(apply_op(f, attach_op("/a-b", 0)), 0);
	assert_int_equal(store_revision(f->s), rev + 2);
	assert_string_equal(list(f), "7:3 8:1");
}

static void test_renew_by_write(void **state)
{
	struct fx *f = *state;
	struct store_op op;
	uint64_t gen;

	assert_int_equal(put(f, "/a", "1"), 0);
	assert_int_equal(put(f, "/free", "1"), 0);
	assert_int_equal(apply_op(f, grant_op(3, 2000)), 0);
	assert_int_equal(apply_op(f, attach_op("/a", 3)), 0);
	gen = lease(f, 3).gen;

	f->now += 100 * MS;
	assert_int_equal(put(f, "/a", "2"), 0);
	assert_int_equal(lease(f, 3).gen, gen + 1);
	assert_int_equal(lease(f, 3).expiry_ns, f->now + 2000 * MS);
	assert_int_equal(key_lease(f, "/a"), 3);

	f->now += 100 * MS;
	op = (struct store_op){ .type = STORE_OP_SETATTR, .key = "/a",
				.flags = STORE_ATTR_MTIME, .mtime_ns = 5 };
	assert_int_equal(apply_op(f, op), 0); /* touch */
	assert_int_equal(lease(f, 3).gen, gen + 2);
	assert_int_equal(lease(f, 3).expiry_ns, f->now + 2000 * MS);

	f->now += 100 * MS;
	op = (struct store_op){ .type = STORE_OP_SETXATTR, .key = "/a", .xname = "user.x",
				.value = (const uint8_t *)"v", .value_len = 1 };
	assert_int_equal(apply_op(f, op), 0);
	assert_int_equal(lease(f, 3).gen, gen + 3);

	/* Removing an xattr, renaming, writing other keys: no renewal. */
	f->now += 100 * MS;
	op.type = STORE_OP_RMXATTR;
	assert_int_equal(apply_op(f, op), 0);
	assert_int_equal(put(f, "/free", "2"), 0);
	op = (struct store_op){ .type = STORE_OP_RENAME, .key = "/a", .dst = "/b" };
	assert_int_equal(apply_op(f, op), 0);
	assert_int_equal(lease(f, 3).gen, gen + 3);
	/* A rename keeps the key's lease. */
	assert_int_equal(key_lease(f, "/b"), 3);
	assert_string_equal(keys(f, 3), "/b");
	assert_int_equal(lease(f, 3).nkeys, 1);
	/* A failed write renews nothing. */
	assert_int_equal(apply_op(f, put_op("/b", STORE_DIR, NULL)), QFS_EINVAL);
	assert_int_equal(lease(f, 3).gen, gen + 3);
}

static void test_expire_and_revoke(void **state)
{
	struct fx *f = *state;
	struct store_result res;
	struct store_kv kv;
	struct store_op op;
	uint64_t rev, gen;

	assert_int_equal(apply_op(f, put_op("/svc", STORE_DIR, NULL)), 0);
	assert_int_equal(put(f, "/svc/h1", "10.0.0.1"), 0);
	assert_int_equal(put(f, "/svc/h2", "10.0.0.2"), 0);
	assert_int_equal(apply_op(f, put_op("/svc/d", STORE_DIR, NULL)), 0);
	assert_int_equal(put(f, "/svc/d/in", "x"), 0);
	assert_int_equal(put(f, "/keep", "k"), 0);
	assert_int_equal(apply_op(f, grant_op(5, 1500)), 0);
	assert_int_equal(apply_op(f, attach_op("/svc/h1", 5)), 0);
	assert_int_equal(apply_op(f, attach_op("/svc/h2", 5)), 0);
	assert_int_equal(apply_op(f, attach_op("/svc/d", 5)), 0);
	gen = lease(f, 5).gen;

	/* The leader saw gen expire, but a write renewed it meanwhile. */
	assert_int_equal(put(f, "/svc/h2", "10.0.0.22"), 0);
	rev = store_revision(f->s);
	res = apply_ops_res(f, &(struct store_op){ .type = STORE_OP_LEASE_EXPIRE, .lease_id = 5,
						     .lease_gen = gen }, 1);
	assert_int_equal(res.err, 0);
	assert_int_equal(store_revision(f->s), rev);
	assert_string_equal(keys(f, 5), "/svc/d /svc/h1 /svc/h2");
	/* A generation from the future is not this one either. */
	assert_int_equal(apply_op(f, lease_op(STORE_OP_LEASE_EXPIRE, 5, gen + 5)), 0);
	assert_string_equal(keys(f, 5), "/svc/d /svc/h1 /svc/h2");
	/* Unknown lease: nothing, no error (it was revoked meanwhile). */
	assert_int_equal(apply_op(f, lease_op(STORE_OP_LEASE_EXPIRE, 77, 1)), 0);
	assert_int_equal(store_revision(f->s), rev);

	/* The current generation: every key (and a dir's subtree) goes, in
	 * one revision, and the lease with them. */
	assert_int_equal(apply_op(f, lease_op(STORE_OP_LEASE_EXPIRE, 5, gen + 1)), 0);
	assert_int_equal(store_revision(f->s), rev + 1);
	assert_int_equal(store_get(f->s, "/svc/h1", 0, &kv), QFS_ENOENT);
	assert_int_equal(store_get(f->s, "/svc/h2", 0, &kv), QFS_ENOENT);
	assert_int_equal(store_get(f->s, "/svc/d", 0, &kv), QFS_ENOENT);
	assert_int_equal(store_get(f->s, "/svc/d/in", 0, &kv), QFS_ENOENT);
	assert_int_equal(store_get(f->s, "/svc", 0, &kv), 0);
	assert_int_equal(kv.nchildren, 0);
	assert_int_equal(store_get(f->s, "/keep", 0, &kv), 0);
	assert_string_equal(keys(f, 5), "ENOENT");
	/* History still shows them, with their lease. */
	assert_int_equal(store_get(f->s, "/svc/h2", rev, &kv), 0);
	assert_int_equal(kv.lease, 5);
	/* Expiring again: nothing. */
	assert_int_equal(apply_op(f, lease_op(STORE_OP_LEASE_EXPIRE, 5, gen + 1)), 0);
	assert_int_equal(store_revision(f->s), rev + 1);

	/* A key deleted by other means leaves its lease; re-creating the
	 * name does not bring the lease back. */
	assert_int_equal(apply_op(f, grant_op(6, 1500)), 0);
	assert_int_equal(put(f, "/x", "1"), 0);
	assert_int_equal(put(f, "/y", "1"), 0);
	assert_int_equal(apply_op(f, attach_op("/x", 6)), 0);
	assert_int_equal(apply_op(f, attach_op("/y", 6)), 0);
	op = (struct store_op){ .type = STORE_OP_DELETE, .key = "/x" };
	assert_int_equal(apply_op(f, op), 0);
	assert_string_equal(keys(f, 6), "/y");
	assert_int_equal(lease(f, 6).nkeys, 1);
	assert_int_equal(put(f, "/x", "2"), 0);
	assert_int_equal(key_lease(f, "/x"), 0);
	/* A rename over an attached key detaches the one replaced. */
	op = (struct store_op){ .type = STORE_OP_RENAME, .key = "/x", .dst = "/y" };
	assert_int_equal(apply_op(f, op), 0);
	assert_string_equal(keys(f, 6), "");
	/* Revoke of a lease without keys uses no revision. */
	rev = store_revision(f->s);
	assert_int_equal(apply_op(f, lease_op(STORE_OP_LEASE_REVOKE, 6, 0)), 0);
	assert_int_equal(store_revision(f->s), rev);
	assert_string_equal(list(f), "");
}

/* A failed transaction leaves leases exactly as they were. */
static void test_undo(void **state)
{
	struct fx *f = *state;
	struct store_lease before, after;
	struct store_op ops[6];
	uint64_t rev, size;
	struct store_kv kv;

	assert_int_equal(put(f, "/a", "1"), 0);
	assert_int_equal(put(f, "/b", "1"), 0);
	assert_int_equal(apply_op(f, grant_op(1, 1000)), 0);
	assert_int_equal(apply_op(f, attach_op("/a", 1)), 0);
	assert_int_equal(apply_op(f, attach_op("/b", 1)), 0);
	before = lease(f, 1);
	rev = store_revision(f->s);
	size = store_size(f->s);
	f->now += 10 * MS;

	/* grant + attach + renew-by-write + revoke, then a failing op */
	ops[0] = grant_op(2, 1000);
	ops[1] = put_op("/c", STORE_FILE, "c");
	ops[2] = attach_op("/c", 2);
	ops[3] = put_op("/a", STORE_FILE, "2");
	ops[4] = lease_op(STORE_OP_LEASE_REVOKE, 1, 0);
	ops[5] = put_op("/missing/x", STORE_FILE, "x");
	assert_int_equal(apply_ops_res(f, ops, 6).failed_op, 5);
	assert_int_equal(store_revision(f->s), rev);
	assert_int_equal(store_size(f->s), size);
	assert_int_equal(store_lease_get(f->s, 2, &after), QFS_ENOENT);
	after = lease(f, 1);
	assert_memory_equal(&before, &after, sizeof(before));
	assert_string_equal(keys(f, 1), "/a /b");
	assert_int_equal(store_get(f->s, "/c", 0, &kv), QFS_ENOENT);
	assert_int_equal(key_lease(f, "/a"), 1);

	/* renew, detach, expire, then failing */
	ops[0] = lease_op(STORE_OP_LEASE_RENEW, 1, 0);
	ops[1] = attach_op("/a", 0);
	ops[2] = lease_op(STORE_OP_LEASE_EXPIRE, 1, before.gen + 1);
	ops[3] = attach_op("/a", 99);
	assert_int_equal(apply_ops_res(f, ops, 4).failed_op, 3);
	after = lease(f, 1);
	assert_memory_equal(&before, &after, sizeof(before));
	assert_string_equal(keys(f, 1), "/a /b");
	assert_int_equal(store_revision(f->s), rev);
	assert_int_equal(store_size(f->s), size);

	/* The same ops without the failure: it all happens, in one revision. */
	assert_int_equal(apply_ops(f, ops, 3), 0);
	assert_int_equal(store_revision(f->s), rev + 1);
	assert_int_equal(store_lease_get(f->s, 1, &after), QFS_ENOENT);
	assert_int_equal(key_lease(f, "/a"), 0);
	assert_int_equal(store_get(f->s, "/b", 0, &kv), QFS_ENOENT);

	/* put --ttl: grant, put, attach in one transaction, one revision. */
	ops[0] = grant_op(9, 2000);
	ops[1] = put_op("/svc", STORE_FILE, "up");
	ops[2] = attach_op("/svc", 9);
	assert_int_equal(apply_ops(f, ops, 3), 0);
	assert_int_equal(store_revision(f->s), rev + 2);
	assert_int_equal(store_get(f->s, "/svc", 0, &kv), 0);
	assert_int_equal(kv.lease, 9);
	/* Each op on a key counts a version, even squashed into one revision. */
	assert_int_equal(kv.version, 2);
	assert_int_equal(kv.create_rev, rev + 2);
}

static int setup_quota(void **state)
{
	return setup_cfg(state, 700);
}

static void test_quota(void **state)
{
	struct fx *f = *state;
	uint64_t id = 1;
	int rc;

	assert_int_equal(put(f, "/a", "1"), 0);
	assert_int_equal(apply_op(f, grant_op(100, 1000)), 0);
	assert_int_equal(apply_op(f, attach_op("/a", 100)), 0);
	/* Leases count: granting without end hits the quota. */
	while ((rc = apply_op(f, grant_op(id, 1000))) == 0)
		id++;
	assert_int_equal(rc, QFS_ENOSPC);
	assert_true(id > 2);
	/* Expiry, revoke and renew still work when full. */
	assert_int_equal(apply_op(f, lease_op(STORE_OP_LEASE_RENEW, 1, 0)), 0);
	assert_int_equal(apply_op(f, lease_op(STORE_OP_LEASE_EXPIRE, 100, 1)), 0);
	assert_string_equal(keys(f, 100), "ENOENT");
	assert_int_equal(apply_op(f, lease_op(STORE_OP_LEASE_REVOKE, 1, 0)), 0);
}

static void snapshot_copy(struct fx *f, struct fx *g, struct qbuf *b)
{
	qbuf_init(b);
	assert_int_equal(store_snapshot_save(f->s, b), 0);
	assert_int_equal(store_create(NULL, &g->s), 0);
	assert_int_equal(store_snapshot_load(g->s, b->data, b->len), 0);
	g->index = f->index;
	g->now = f->now;
}

static void test_snapshot(void **state)
{
	struct fx *f = *state, g = { 0 };
	struct qbuf b, c;
	uint8_t *bad;
	char want[256];

	f->now = 5000 * MS;
	assert_int_equal(put(f, "/a", "1"), 0);
	assert_int_equal(put(f, "/b", "1"), 0);
	assert_int_equal(apply_op(f, grant_op(0x20, 1000)), 0);
	assert_int_equal(apply_op(f, grant_op(0x30, 4000)), 0);
	assert_int_equal(apply_op(f, attach_op("/a", 0x20)), 0);
	assert_int_equal(apply_op(f, attach_op("/b", 0x20)), 0);
	assert_int_equal(apply_op(f, lease_op(STORE_OP_LEASE_RENEW, 0x30, 0)), 0);
	/* History mentioning a lease that is gone is fine. */
	assert_int_equal(apply_op(f, grant_op(0x40, 1000)), 0);
	assert_int_equal(put(f, "/c", "1"), 0);
	assert_int_equal(apply_op(f, attach_op("/c", 0x40)), 0);
	assert_int_equal(apply_op(f, attach_op("/c", 0)), 0);
	assert_int_equal(apply_op(f, lease_op(STORE_OP_LEASE_REVOKE, 0x40, 0)), 0);

	snapshot_copy(f, &g, &b);
	assert_int_equal(store_cluster_time(g.s), 5000 * MS);
	assert_string_equal(list(&g), "20:2 30:0");
	assert_string_equal(keys(&g, 0x20), "/a /b");
	{
		struct store_lease x = lease(f, 0x30), y = lease(&g, 0x30);

		assert_memory_equal(&x, &y, sizeof(x));
		assert_int_equal(y.gen, 2);
	}
	assert_int_equal(store_size(g.s), store_size(f->s));
	/* Re-saving gives the same bytes. */
	qbuf_init(&c);
	assert_int_equal(store_snapshot_save(g.s, &c), 0);
	assert_int_equal(c.len, b.len);
	assert_memory_equal(c.data, b.data, b.len);
	qbuf_close(&c);
	/* Both go on the same way: expiry deletes the keys on the copy too. */
	assert_int_equal(apply_op(f, lease_op(STORE_OP_LEASE_EXPIRE, 0x20, 1)), 0);
	assert_int_equal(apply_op(&g, lease_op(STORE_OP_LEASE_EXPIRE, 0x20, 1)), 0);
	assert_int_equal(store_revision(g.s), store_revision(f->s));
	assert_int_equal(store_key_count(g.s), store_key_count(f->s));
	strcpy(want, list(f));
	assert_string_equal(list(&g), want);

	/* A key on a lease the image does not have: refused. The first lease
	 * id sits after magic, format, rev, compacted, applied, time, count. */
	bad = malloc(b.len);
	assert_non_null(bad);
	memcpy(bad, b.data, b.len);
	assert_int_equal(bad[4 + 4 + 8 * 4 + 4], 0x20);
	bad[4 + 4 + 8 * 4 + 4] = 0x21;
	assert_int_equal(store_snapshot_load(g.s, bad, b.len), QFS_EMSG);
	/* Repeated ids, a zero generation: refused. */
	memcpy(bad, b.data, b.len);
	bad[4 + 4 + 8 * 4 + 4] = 0x30;
	assert_int_equal(store_snapshot_load(g.s, bad, b.len), QFS_EMSG);
	memcpy(bad, b.data, b.len);
	memset(bad + 4 + 4 + 8 * 4 + 4 + 24, 0, 8);
	assert_int_equal(store_snapshot_load(g.s, bad, b.len), QFS_EMSG);
	/* The refused loads left the store alone. */
	assert_string_equal(list(&g), want);
	free(bad);
	qbuf_close(&b);
	store_destroy(g.s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_grant_renew_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cluster_time, setup, teardown),
		cmocka_unit_test_setup_teardown(test_attach_detach, setup, teardown),
		cmocka_unit_test_setup_teardown(test_renew_by_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expire_and_revoke, setup, teardown),
		cmocka_unit_test_setup_teardown(test_undo, setup, teardown),
		cmocka_unit_test_setup_teardown(test_quota, setup_quota, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
