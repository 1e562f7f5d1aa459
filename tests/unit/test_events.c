/*
 * Unit tests of the event index (store/events.c, store_events()): the events
 * each kind of change produces (put, delete, rename, recursive delete, lease
 * expiry), their order, prefix filtering, revision ranges and their errors,
 * compaction, and the index rebuilt by a snapshot load.
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


static int compact(struct fx *f, uint64_t rev)
{
	struct entry e = { .type = ENTRY_COMPACT, .compact_rev = rev };
	struct store_result res;

	apply_entry(f, &e, &res);
	return res.err;
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

static int mkdir_(struct fx *f, const char *key)
{
	return apply_op(f, put_op(key, STORE_DIR, NULL));
}

static int del(struct fx *f, const char *key, uint32_t flags)
{
	return apply_op(f, (struct store_op){ .type = STORE_OP_DELETE, .key = key, .flags = flags });
}

static int ren(struct fx *f, const char *src, const char *dst, uint32_t flags)
{
	return apply_op(f, (struct store_op){ .type = STORE_OP_RENAME, .key = src, .dst = dst,
					      .flags = flags });
}

struct evbuf {
	char text[16384];
	int stop_after; /* 0: never stop */
	int seen;
};

/* "REV P|D KEY=VALUE@MODREV" per event, space separated. */
static int ev_cb(void *arg, const struct store_event *ev)
{
	struct evbuf *b = arg;
	size_t len = strlen(b->text);

	snprintf(b->text + len, sizeof(b->text) - len, "%s%llu%c%s=%.*s@%llu", len ? " " : "",
		 (unsigned long long)ev->revision, ev->type == STORE_EVENT_PUT ? 'P' : 'D',
		 ev->kv->key, (int)ev->kv->value->len, (const char *)ev->kv->value->data,
		 (unsigned long long)ev->kv->mod_rev);
	b->seen++;
	return b->stop_after && b->seen == b->stop_after ? 42 : 0;
}

static const char *events(struct fx *f, uint64_t from, uint64_t to, const char *key)
{
	static struct evbuf b;

	memset(&b, 0, sizeof(b));
	assert_int_equal(store_events(f->s, from, to, key, ev_cb, &b), 0);
	return b.text;
}

static int events_err(struct fx *f, uint64_t from, uint64_t to, const char *key)
{
	struct evbuf b;

	memset(&b, 0, sizeof(b));
	return store_events(f->s, from, to, key, ev_cb, &b);
}

/* ---- Tests ------------------------------------------------------------------------ */

static void test_put_delete(void **state)
{
	struct fx *f = *state;

	assert_string_equal(events(f, 0, 0, "/"), "");
	assert_int_equal(put(f, "/a", "1"), 0);  /* 1 */
	assert_int_equal(put(f, "/a", "22"), 0); /* 2 */
	assert_int_equal(del(f, "/a", 0), 0);    /* 3 */
	/* DELETE carries the last version before the delete. */
	assert_string_equal(events(f, 0, 0, "/"), "1P/a=1@1 2P/a=22@2 3D/a=22@2");
	assert_string_equal(events(f, 1, 0, "/"), "1P/a=1@1 2P/a=22@2 3D/a=22@2");
	/* Failed ops and lease-only ops make no events and no revision. */
	assert_int_equal(del(f, "/a", 0), QFS_ENOENT);
	assert_int_equal(apply_op(f, (struct store_op){ .type = STORE_OP_LEASE_GRANT,
							.lease_id = 1, .ttl_ms = 10 }), 0);
	assert_int_equal(store_revision(f->s), 3);
	/* A metadata change is a PUT. */
	assert_int_equal(put(f, "/b", "b"), 0); /* 4 */
	assert_int_equal(apply_op(f, (struct store_op){ .type = STORE_OP_SETATTR, .key = "/b",
							.flags = STORE_ATTR_MODE, .mode = 0600 }),
			 0); /* 5 */
	assert_string_equal(events(f, 4, 0, "/"), "4P/b=b@4 5P/b=b@5");
}

static void test_order_within_revision(void **state)
{
	struct fx *f = *state;
	struct store_op ops[5];

	/* Written out of order; reported in key (tree) order. */
	ops[0] = put_op("/b", STORE_FILE, "b");
	ops[1] = put_op("/a-b", STORE_FILE, "ab");
	ops[2] = put_op("/a", STORE_DIR, NULL);
	ops[3] = put_op("/a/x", STORE_FILE, "x");
	ops[4] = put_op("/tmp", STORE_FILE, "t");
	assert_int_equal(apply_ops(f, ops, 5), 0);
	assert_string_equal(events(f, 1, 1, "/"), "1P/a=@1 1P/a/x=x@1 1P/a-b=ab@1 1P/b=b@1 1P/tmp=t@1");

	/* Created and deleted in one transaction: no event, but the revision
	 * is used (the other key changed). */
	ops[0] = put_op("/gone", STORE_FILE, "g");
	ops[1] = (struct store_op){ .type = STORE_OP_DELETE, .key = "/gone" };
	ops[2] = put_op("/b", STORE_FILE, "b2");
	ops[3] = put_op("/b", STORE_FILE, "b3");
	assert_int_equal(apply_ops(f, ops, 4), 0);
	/* One event per key and revision: the last write wins. */
	assert_string_equal(events(f, 2, 0, "/"), "2P/b=b3@2");
	ops[0] = put_op("/gone", STORE_FILE, "g");
	assert_int_equal(apply_ops(f, ops, 2), 0);
	assert_int_equal(store_revision(f->s), 3);
	assert_string_equal(events(f, 3, 0, "/"), "");
	assert_string_equal(events(f, 2, 0, "/"), "2P/b=b3@2");
}

static void test_rename_and_recursive_delete(void **state)
{
	struct fx *f = *state;

	assert_int_equal(mkdir_(f, "/d"), 0);         /* 1 */
	assert_int_equal(put(f, "/d/x", "x"), 0);     /* 2 */
	assert_int_equal(mkdir_(f, "/d/s"), 0);       /* 3 */
	assert_int_equal(put(f, "/d/s/y", "y"), 0);   /* 4 */
	assert_int_equal(put(f, "/f", "f"), 0);       /* 5 */
	assert_int_equal(ren(f, "/f", "/g", 0), 0);   /* 6 */
	assert_string_equal(events(f, 6, 6, "/"), "6D/f=f@5 6P/g=f@6");
	/* A dir rename: a DELETE and a PUT per key. */
	assert_int_equal(ren(f, "/d", "/e", 0), 0);   /* 7 */
	assert_string_equal(events(f, 7, 7, "/"),
			    "7D/d=@1 7D/d/s=@3 7D/d/s/y=y@4 7D/d/x=x@2 "
			    "7P/e=@7 7P/e/s=@7 7P/e/s/y=y@7 7P/e/x=x@7");
	/* Over an existing key: the replaced key's change is a PUT. */
	assert_int_equal(ren(f, "/g", "/e/x", 0), 0); /* 8 */
	assert_string_equal(events(f, 8, 8, "/"), "8P/e/x=f@8 8D/g=f@6");
	/* Exchange: both keys get new values. */
	assert_int_equal(put(f, "/p", "p"), 0);       /* 9 */
	assert_int_equal(ren(f, "/p", "/e/x", STORE_RENAME_EXCHANGE), 0); /* 10 */
	assert_string_equal(events(f, 10, 10, "/"), "10P/e/x=p@10 10P/p=f@10");
	/* Recursive delete: a DELETE per key, in tree order. */
	assert_int_equal(del(f, "/e", STORE_DEL_RECURSIVE), 0); /* 11 */
	assert_string_equal(events(f, 11, 11, "/"),
			    "11D/e=@7 11D/e/s=@7 11D/e/s/y=y@7 11D/e/x=p@10");
}

static void test_lease_expiry(void **state)
{
	struct fx *f = *state;
	struct store_op ops[3];

	assert_int_equal(mkdir_(f, "/svc"), 0);          /* 1 */
	assert_int_equal(put(f, "/svc/h2", "2"), 0);     /* 2 */
	assert_int_equal(put(f, "/svc/h1", "1"), 0);     /* 3 */
	ops[0] = (struct store_op){ .type = STORE_OP_LEASE_GRANT, .lease_id = 4, .ttl_ms = 100 };
	ops[1] = (struct store_op){ .type = STORE_OP_LEASE_ATTACH, .key = "/svc/h2", .lease_id = 4 };
	ops[2] = (struct store_op){ .type = STORE_OP_LEASE_ATTACH, .key = "/svc/h1", .lease_id = 4 };
	assert_int_equal(apply_ops(f, ops, 3), 0);       /* 4: attach is a PUT */
	assert_string_equal(events(f, 4, 4, "/"), "4P/svc/h1=1@4 4P/svc/h2=2@4");
	assert_int_equal(apply_op(f, (struct store_op){ .type = STORE_OP_LEASE_EXPIRE,
							.lease_id = 4, .lease_gen = 1 }), 0); /* 5 */
	assert_string_equal(events(f, 5, 0, "/"), "5D/svc/h1=1@4 5D/svc/h2=2@4");
	assert_string_equal(events(f, 5, 0, "/svc/h2"), "5D/svc/h2=2@4");
}

static void test_prefix_filter(void **state)
{
	struct fx *f = *state;
	struct store_op ops[6];

	ops[0] = put_op("/a", STORE_DIR, NULL);
	ops[1] = put_op("/a/x", STORE_FILE, "x");
	ops[2] = put_op("/ab", STORE_FILE, "ab");
	ops[3] = put_op("/a-b", STORE_FILE, "a-b");
	ops[4] = put_op("/", STORE_DIR, NULL); /* touch of the root */
	ops[5] = put_op("/0", STORE_FILE, "0");
	assert_int_equal(apply_ops(f, ops, 6), 0);
	assert_int_equal(put(f, "/ab", "ab2"), 0);
	assert_int_equal(put(f, "/a/x", "x2"), 0);

	assert_string_equal(events(f, 0, 0, "/"),
			    "1P/=@1 1P/0=0@1 1P/a=@1 1P/a/x=x@1 1P/a-b=a-b@1 1P/ab=ab@1 "
			    "2P/ab=ab2@2 3P/a/x=x2@3");
	assert_string_equal(events(f, 0, 0, "/a"), "1P/a=@1 1P/a/x=x@1 3P/a/x=x2@3");
	assert_string_equal(events(f, 0, 0, "/a/x"), "1P/a/x=x@1 3P/a/x=x2@3");
	assert_string_equal(events(f, 0, 0, "/ab"), "1P/ab=ab@1 2P/ab=ab2@2");
	assert_string_equal(events(f, 0, 0, "/a-"), "");
	assert_string_equal(events(f, 0, 0, "/zzz"), "");
	assert_string_equal(events(f, 0, 0, "/a/x/deeper"), "");
	/* Keys are checked like everywhere else. */
	assert_int_equal(events_err(f, 0, 0, "a"), QFS_EINVAL);
	assert_int_equal(events_err(f, 0, 0, "/a/"), QFS_EINVAL);
	assert_int_equal(events_err(f, 0, 0, "/.quorumfs"), QFS_EPERM);
}

static void test_ranges_and_errors(void **state)
{
	struct fx *f = *state;
	struct evbuf b;
	int i;

	for (i = 1; i <= 5; i++) {
		char v[16];

		snprintf(v, sizeof(v), "%d", i);
		assert_int_equal(put(f, "/k", v), 0);
	}
	assert_string_equal(events(f, 2, 3, "/"), "2P/k=2@2 3P/k=3@3");
	assert_string_equal(events(f, 5, 5, "/"), "5P/k=5@5");
	assert_string_equal(events(f, 4, 0, "/"), "4P/k=4@4 5P/k=5@5");
	/* to past the current revision is the current one. */
	assert_string_equal(events(f, 4, 99, "/"), "4P/k=4@4 5P/k=5@5");
	assert_string_equal(events(f, 4, 3, "/"), "");
	/* Caught up: nothing yet, not an error. */
	assert_string_equal(events(f, 6, 0, "/"), "");
	assert_int_equal(events_err(f, 7, 0, "/"), QFS_EFUTUREREV);
	/* The callback stops the walk and its value comes back. */
	memset(&b, 0, sizeof(b));
	b.stop_after = 2;
	assert_int_equal(store_events(f->s, 1, 0, "/", ev_cb, &b), 42);
	assert_string_equal(b.text, "1P/k=1@1 2P/k=2@2");
}

static void test_compaction(void **state)
{
	struct fx *f = *state;

	assert_int_equal(put(f, "/a", "1"), 0);   /* 1 */
	assert_int_equal(put(f, "/b", "1"), 0);   /* 2 */
	assert_int_equal(del(f, "/a", 0), 0);     /* 3 */
	assert_int_equal(put(f, "/b", "2"), 0);   /* 4 */
	assert_int_equal(del(f, "/b", 0), 0);     /* 5 */
	assert_int_equal(put(f, "/c", "1"), 0);   /* 6 */
	assert_int_equal(compact(f, 3), 0);
	assert_int_equal(events_err(f, 2, 0, "/"), QFS_ECOMPACTED);
	assert_int_equal(events_err(f, 0, 0, "/"), QFS_ECOMPACTED);
	/* From the compacted revision on, nothing is lost: the delete at 3
	 * still shows the version it deleted. */
	assert_string_equal(events(f, 3, 0, "/"), "3D/a=1@1 4P/b=2@4 5D/b=2@4 6P/c=1@6");
	assert_int_equal(compact(f, 5), 0);
	assert_string_equal(events(f, 5, 0, "/"), "5D/b=2@4 6P/c=1@6");
	assert_int_equal(events_err(f, 4, 0, "/"), QFS_ECOMPACTED);
	assert_int_equal(compact(f, 6), 0);
	assert_string_equal(events(f, 6, 0, "/"), "6P/c=1@6");
	/* The kept delete went with the next compaction. */
	assert_int_equal(store_size(f->s), (1 + 32) + (2 + 1 + 32));
	assert_int_equal(put(f, "/a", "again"), 0); /* 7 */
	assert_string_equal(events(f, 6, 0, "/"), "6P/c=1@6 7P/a=again@7");
}

static void test_snapshot_rebuild(void **state)
{
	struct fx *f = *state, g = { 0 };
	char want[16384];
	struct qbuf b;
	uint64_t from;
	struct store_op ops[2];

	assert_int_equal(mkdir_(f, "/d"), 0);
	assert_int_equal(put(f, "/d/x", "x"), 0);
	assert_int_equal(put(f, "/y", "y"), 0);
	assert_int_equal(del(f, "/y", 0), 0);
	assert_int_equal(ren(f, "/d", "/e", 0), 0);
	ops[0] = put_op("/gone", STORE_FILE, "g");
	ops[1] = (struct store_op){ .type = STORE_OP_DELETE, .key = "/gone" };
	assert_int_equal(apply_ops(f, ops, 2), 0);
	assert_int_equal(put(f, "/e/z", "z"), 0);
	assert_int_equal(del(f, "/e", STORE_DEL_RECURSIVE), 0);
	assert_int_equal(compact(f, 4), 0);
	assert_int_equal(put(f, "/last", "l"), 0);

	qbuf_init(&b);
	assert_int_equal(store_snapshot_save(f->s, &b), 0);
	assert_int_equal(store_create(NULL, &g.s), 0);
	assert_int_equal(put(&g, "/other", "o"), 0);
	assert_int_equal(store_snapshot_load(g.s, b.data, b.len), 0);
	g.index = f->index;
	for (from = 4; from <= store_revision(f->s) + 1; from++) {
		strcpy(want, events(f, from, 0, "/"));
		assert_string_equal(events(&g, from, 0, "/"), want);
		strcpy(want, events(f, from, 0, "/e"));
		assert_string_equal(events(&g, from, 0, "/e"), want);
	}
	assert_string_equal(events(&g, 4, 0, "/"),
			    "4D/y=y@3 5D/d=@1 5D/d/x=x@2 5P/e=@5 5P/e/x=x@5 7P/e/z=z@7 "
			    "8D/e=@5 8D/e/x=x@5 8D/e/z=z@7 9P/last=l@9");
	assert_int_equal(events_err(&g, 3, 0, "/"), QFS_ECOMPACTED);
	/* Both go on the same way. */
	assert_int_equal(put(f, "/n", "n"), 0);
	assert_int_equal(put(&g, "/n", "n"), 0);
	assert_int_equal(compact(f, 8), 0);
	assert_int_equal(compact(&g, 8), 0);
	strcpy(want, events(f, 8, 0, "/"));
	assert_string_equal(events(&g, 8, 0, "/"), want);
	assert_string_equal(want, "8D/e=@5 8D/e/x=x@5 8D/e/z=z@7 9P/last=l@9 10P/n=n@10");
	qbuf_close(&b);
	store_destroy(g.s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_put_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_order_within_revision, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rename_and_recursive_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lease_expiry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_prefix_filter, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ranges_and_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_compaction, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_rebuild, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
