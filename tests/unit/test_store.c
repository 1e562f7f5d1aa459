/*
 * Unit tests of the MVCC store (store/): versions and history, tree
 * iteration, transactions and their undo, every rename and delete rule,
 * quota, compaction, xattrs and snapshots, and a random mix (leases
 * included) checking lease key sets and events against the histories.
 * Leases and events have their own files (test_lease.c, test_events.c).
 * Everything goes through store_apply() with encoded entries, as the state
 * machine does.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zlib.h>

#include "../../common/errors.h"
#include "../../store/entry.h"
#include "../../store/store.h"
#include "../../store/store_int.h"

struct fx {
	struct store *s;
	uint64_t index;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f || store_create(NULL, &f->s))
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	store_destroy(f->s);
	free(f);
	return 0;
}

/* Time of the entry applied at index i: checked against mtime/ctime. */
#define T(i) ((int64_t)((i) % 1000000) * 1000)

static struct store_result apply_txn(struct fx *f, const struct store_txn *t)
{
	struct entry e = { .type = ENTRY_TXN, .origin = 1, .txn = *t };
	struct store_result res;
	struct qbuf b;

	f->index++;
	e.request_id = f->index;
	e.time_ns = T(f->index);
	qbuf_init(&b);
	assert_int_equal(entry_encode(&e, &b), 0);
	assert_int_equal(store_apply(f->s, f->index, b.data, b.len, &res), 0);
	assert_int_equal(store_applied_index(f->s), f->index);
	qbuf_close(&b);
	return res;
}

static int apply_ops(struct fx *f, const struct store_op *ops, size_t n)
{
	struct store_txn t = { .then_ops = ops, .nthen = n };

	return apply_txn(f, &t).err;
}

static int apply_op(struct fx *f, struct store_op op)
{
	return apply_ops(f, &op, 1);
}

static int compact(struct fx *f, uint64_t rev)
{
	struct entry e = { .type = ENTRY_COMPACT, .compact_rev = rev };
	struct store_result res;
	struct qbuf b;

	f->index++;
	qbuf_init(&b);
	assert_int_equal(entry_encode(&e, &b), 0);
	assert_int_equal(store_apply(f->s, f->index, b.data, b.len, &res), 0);
	qbuf_close(&b);
	return res.err;
}

static struct store_op put_op(const char *key, enum store_type type, const char *value)
{
	struct store_op op = {
		.type = STORE_OP_PUT, .key = key, .ftype = type, .mode = 0644, .uid = 10,
		.gid = 20, .value = (const uint8_t *)value, .value_len = value ? strlen(value) : 0,
	};
	return op;
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
	struct store_op op = { .type = STORE_OP_DELETE, .key = key, .flags = flags };

	return apply_op(f, op);
}

static int ren(struct fx *f, const char *src, const char *dst, uint32_t flags)
{
	struct store_op op = { .type = STORE_OP_RENAME, .key = src, .dst = dst, .flags = flags };

	return apply_op(f, op);
}

static struct store_kv get(struct fx *f, const char *key, uint64_t rev)
{
	struct store_kv kv;

	assert_int_equal(store_get(f->s, key, rev, &kv), 0);
	return kv;
}

static int get_err(struct fx *f, const char *key, uint64_t rev)
{
	struct store_kv kv;

	return store_get(f->s, key, rev, &kv);
}

static void assert_value(const struct store_kv *kv, const char *value)
{
	assert_int_equal(kv->value->len, strlen(value));
	assert_memory_equal(kv->value->data, value, kv->value->len);
}

/* Listing helpers: "name,name,..." or full "key=value@mod/ver/ino;..." */
struct list {
	char buf[8192];
	bool full;
	int stop_after;
	int seen;
};

static int list_cb(void *arg, const struct store_kv *kv)
{
	struct list *l = arg;
	size_t len = strlen(l->buf);

	if (l->full)
		snprintf(l->buf + len, sizeof(l->buf) - len, "%s=%.*s@%llu/%llu/%llx/%o/%u;", kv->key,
			 (int)kv->value->len, (const char *)kv->value->data,
			 (unsigned long long)kv->mod_rev, (unsigned long long)kv->version,
			 (unsigned long long)kv->ino, kv->mode, kv->nchildren);
	else
		snprintf(l->buf + len, sizeof(l->buf) - len, "%s%s", len ? "," : "", kv->name);
	l->seen++;
	return l->stop_after && l->seen >= l->stop_after ? 77 : 0;
}

static const char *children(struct fx *f, const char *dir, uint64_t rev, const char *after)
{
	static struct list l;

	memset(&l, 0, sizeof(l));
	assert_int_equal(store_children(f->s, dir, rev, after, list_cb, &l), 0);
	return l.buf;
}

static const char *range(struct fx *f, const char *key, uint64_t rev)
{
	static struct list l;

	memset(&l, 0, sizeof(l));
	l.full = true;
	assert_int_equal(store_range(f->s, key, rev, list_cb, &l), 0);
	return l.buf;
}

/* ---- Basic MVCC ------------------------------------------------------------------ */

static void test_initial(void **state)
{
	struct fx *f = *state;
	struct store_kv kv = get(f, "/", 0);

	assert_int_equal(store_revision(f->s), 0);
	assert_int_equal(kv.ino, STORE_ROOT_INO);
	assert_int_equal(kv.type, STORE_DIR);
	assert_string_equal(kv.name, "/");
	assert_int_equal(kv.value->len, 0);
	assert_int_equal(store_key_count(f->s), 1);
	assert_int_equal(store_get_ino(f->s, STORE_ROOT_INO, &kv), 0);
	assert_string_equal(kv.key, "/");
	assert_int_equal(get_err(f, "/a", 0), QFS_ENOENT);
	assert_int_equal(get_err(f, "/", 1), QFS_EFUTUREREV);
}

static void test_mvcc_versions(void **state)
{
	struct fx *f = *state;
	struct store_kv kv;
	uint64_t ino;

	assert_int_equal(put(f, "/a", "v1"), 0);
	assert_int_equal(store_revision(f->s), 1);
	kv = get(f, "/a", 0);
	assert_string_equal(kv.key, "/a");
	assert_string_equal(kv.name, "a");
	assert_int_equal(kv.create_rev, 1);
	assert_int_equal(kv.mod_rev, 1);
	assert_int_equal(kv.version, 1);
	assert_int_equal(kv.ino, STORE_INO(1, 0));
	assert_int_equal(kv.mode, 0644);
	assert_int_equal(kv.uid, 10);
	assert_int_equal(kv.gid, 20);
	assert_int_equal(kv.mtime_ns, T(f->index));
	assert_int_equal(kv.ctime_ns, T(f->index));
	assert_value(&kv, "v1");
	ino = kv.ino;

	assert_int_equal(put(f, "/a", "v2"), 0);
	kv = get(f, "/a", 0);
	assert_int_equal(kv.create_rev, 1);
	assert_int_equal(kv.mod_rev, 2);
	assert_int_equal(kv.version, 2);
	assert_int_equal(kv.ino, ino);
	assert_int_equal(kv.mtime_ns, T(f->index));
	assert_value(&kv, "v2");
	kv = get(f, "/a", 1);
	assert_value(&kv, "v1");
	assert_int_equal(get(f, "/", 0).nchildren, 1);

	assert_int_equal(del(f, "/a", 0), 0);
	assert_int_equal(store_revision(f->s), 3);
	assert_int_equal(get_err(f, "/a", 0), QFS_ENOENT);
	assert_int_equal(get_err(f, "/a", 3), QFS_ENOENT);
	kv = get(f, "/a", 2);
	assert_value(&kv, "v2");
	assert_int_equal(store_get_ino(f->s, ino, &kv), QFS_ENOENT);
	assert_int_equal(store_key_count(f->s), 1);
	assert_int_equal(get(f, "/", 0).nchildren, 0);
	assert_string_equal(children(f, "/", 2, NULL), "a");

	/* Re-created: a new identity. */
	assert_int_equal(put(f, "/a", "v3"), 0);
	kv = get(f, "/a", 0);
	assert_int_equal(kv.create_rev, 4);
	assert_int_equal(kv.version, 1);
	assert_int_equal(kv.ino, STORE_INO(4, 0));
	assert_int_equal(store_get_ino(f->s, STORE_INO(4, 0), &kv), 0);
	assert_string_equal(kv.key, "/a");
	assert_int_equal(get_err(f, "/a", 5), QFS_EFUTUREREV);
	assert_int_equal(get_err(f, "/a", 0), 0);
}

static void test_put_rules(void **state)
{
	struct fx *f = *state;
	struct store_op op;
	struct store_kv kv;
	char longname[STORE_NAME_MAX + 3];

	assert_int_equal(put(f, "/d/x", "v"), QFS_ENOENT);
	assert_int_equal(put(f, "/f", "v"), 0);
	assert_int_equal(put(f, "/f/x", "v"), QFS_ENOTDIR);
	assert_int_equal(get_err(f, "/f/x", 0), QFS_ENOENT);
	assert_int_equal(mkdir_(f, "/d"), 0);
	assert_int_equal(put(f, "/d", "v"), QFS_EISDIR);
	assert_int_equal(mkdir_(f, "/f"), QFS_EINVAL);
	assert_int_equal(apply_op(f, put_op("/f", STORE_SYMLINK, "t")), QFS_EINVAL);
	assert_int_equal(apply_op(f, put_op("/s", STORE_SYMLINK, "")), QFS_EINVAL);
	assert_int_equal(apply_op(f, put_op("/s", STORE_SYMLINK, "/target")), 0);
	kv = get(f, "/s", 0);
	assert_int_equal(kv.type, STORE_SYMLINK);
	assert_value(&kv, "/target");
	op = put_op("/d2", STORE_DIR, NULL);
	op.value = (const uint8_t *)"x";
	op.value_len = 1;
	assert_int_equal(apply_op(f, op), QFS_EINVAL);
	op = put_op("/bad", 0, "x");
	assert_int_equal(apply_op(f, op), QFS_EINVAL);

	/* Keys */
	assert_int_equal(put(f, "a", "v"), QFS_EINVAL);
	assert_int_equal(put(f, "/a/", "v"), QFS_EINVAL);
	assert_int_equal(put(f, "//a", "v"), QFS_EINVAL);
	assert_int_equal(put(f, "/./a", "v"), QFS_EINVAL);
	assert_int_equal(put(f, "/d/..", "v"), QFS_EINVAL);
	assert_int_equal(put(f, "/.quorumfs", "v"), QFS_EPERM);
	assert_int_equal(put(f, "/.quorumfs/x", "v"), QFS_EPERM);
	assert_int_equal(put(f, "/.quorumfsx", "v"), 0);
	memset(longname, 'n', sizeof(longname));
	longname[0] = '/';
	longname[sizeof(longname) - 1] = '\0';
	assert_int_equal(put(f, longname, "v"), QFS_ENAMETOOLONG);
	longname[sizeof(longname) - 2] = '\0';
	assert_int_equal(put(f, longname, "v"), 0);
	assert_int_equal(store_key_check("/"), 0);
	assert_int_equal(store_key_check(NULL), QFS_EINVAL);
	assert_int_equal(store_key_check(""), QFS_EINVAL);

	/* A PUT on an existing key keeps its metadata. */
	op = put_op("/f", STORE_FILE, "new");
	op.mode = 0600;
	op.uid = 99;
	assert_int_equal(apply_op(f, op), 0);
	kv = get(f, "/f", 0);
	assert_int_equal(kv.mode, 0644);
	assert_int_equal(kv.uid, 10);
	assert_int_equal(kv.version, 2);
	assert_value(&kv, "new");
	/* A dir PUT on an existing dir is a touch. */
	assert_int_equal(mkdir_(f, "/d"), 0);
	assert_int_equal(get(f, "/d", 0).version, 2);
}

static void test_mkparents(void **state)
{
	struct fx *f = *state;
	struct store_op op = put_op("/x/y/z", STORE_FILE, "v");
	struct store_kv kv;
	uint64_t rev;

	op.flags = STORE_PUT_MKPARENTS;
	op.uid = 5;
	assert_int_equal(apply_op(f, op), 0);
	rev = store_revision(f->s);
	assert_int_equal(rev, 1);
	kv = get(f, "/x", 0);
	assert_int_equal(kv.type, STORE_DIR);
	assert_int_equal(kv.mode, 0755);
	assert_int_equal(kv.uid, 5);
	assert_int_equal(kv.ino, STORE_INO(rev, 0));
	assert_int_equal(kv.nchildren, 1);
	assert_int_equal(get(f, "/x/y", 0).ino, STORE_INO(rev, 1));
	assert_int_equal(get(f, "/x/y/z", 0).ino, STORE_INO(rev, 2));
	/* Existing parents are used as they are; a file parent is refused. */
	op.key = "/x/y/w";
	assert_int_equal(apply_op(f, op), 0);
	assert_int_equal(get(f, "/x/y", 0).version, 1);
	op.key = "/x/y/z/q";
	assert_int_equal(apply_op(f, op), QFS_ENOTDIR);
	assert_string_equal(range(f, "/", 0),
			    "/=@0/1/1/755/1;/x=@1/1/10000/755/1;/x/y=@1/1/10001/755/2;"
			    "/x/y/w=v@2/1/20000/644/0;/x/y/z=v@1/1/10002/644/0;");
}

static void test_efbig(void **state)
{
	struct fx *f = *state;
	struct store_config cfg = { .max_value_bytes = 4 };

	store_destroy(f->s);
	assert_int_equal(store_create(&cfg, &f->s), 0);
	assert_int_equal(put(f, "/a", "1234"), 0);
	assert_int_equal(put(f, "/a", "12345"), QFS_EFBIG);
	assert_value(&(struct store_kv){ .value = get(f, "/a", 0).value }, "1234");
	assert_int_equal(store_revision(f->s), 1);
}

/* ---- Iteration --------------------------------------------------------------------- */

static void test_children(void **state)
{
	struct fx *f = *state;
	const char *names[] = { "b", "a", "c", "aa", "a-b", "B", "ab" };
	struct list l;
	char key[32];
	size_t i;

	assert_int_equal(mkdir_(f, "/d"), 0);
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(key, sizeof(key), "/d/%s", names[i]);
		assert_int_equal(put(f, key, names[i]), 0);
	}
	assert_int_equal(put(f, "/d/aa", "again"), 0);
	assert_int_equal(del(f, "/d/ab", 0), 0);
	assert_string_equal(children(f, "/d", 0, NULL), "B,a,a-b,aa,b,c");
	assert_string_equal(children(f, "/d", 0, "a"), "a-b,aa,b,c");
	assert_string_equal(children(f, "/d", 0, "ab"), "b,c");     /* absent now */
	assert_string_equal(children(f, "/d", 0, "a-a"), "a-b,aa,b,c"); /* never existed */
	assert_string_equal(children(f, "/d", 0, "c"), "");
	assert_string_equal(children(f, "/d", 0, "zzz"), "");
	assert_string_equal(children(f, "/d", 0, ""), "B,a,a-b,aa,b,c");
	/* As of before the delete, and before most creates. */
	assert_string_equal(children(f, "/d", 9, NULL), "B,a,a-b,aa,ab,b,c");
	assert_string_equal(children(f, "/d", 3, NULL), "a,b");
	assert_string_equal(children(f, "/d", 1, NULL), "");
	assert_int_equal(get(f, "/d", 0).nchildren, 6);
	assert_int_equal(get(f, "/d", 9).nchildren, 0); /* past: counted by store_children */

	memset(&l, 0, sizeof(l));
	l.stop_after = 2;
	assert_int_equal(store_children(f->s, "/d", 0, NULL, list_cb, &l), 77);
	assert_string_equal(l.buf, "B,a");
	assert_int_equal(store_children(f->s, "/d/a", 0, NULL, list_cb, &l), QFS_ENOTDIR);
	assert_int_equal(store_children(f->s, "/nope", 0, NULL, list_cb, &l), QFS_ENOENT);
	assert_int_equal(store_children(f->s, "/d", 99, NULL, list_cb, &l), QFS_EFUTUREREV);
}

static void test_range(void **state)
{
	struct fx *f = *state;
	struct list l;

	assert_int_equal(mkdir_(f, "/a"), 0);
	assert_int_equal(put(f, "/a-c", "1"), 0);
	assert_int_equal(mkdir_(f, "/a/b"), 0);
	assert_int_equal(put(f, "/a/b/x", "2"), 0);
	assert_int_equal(put(f, "/a/a", "3"), 0);
	assert_int_equal(put(f, "/0", "4"), 0);
	/* Tree order, not byte order of whole keys ("/a-c" < "/a/a" bytewise). */
	assert_string_equal(range(f, "/", 0),
			    "/=@0/1/1/755/3;/0=4@6/1/60000/644/0;/a=@1/1/10000/644/2;"
			    "/a/a=3@5/1/50000/644/0;/a/b=@3/1/30000/644/1;"
			    "/a/b/x=2@4/1/40000/644/0;/a-c=1@2/1/20000/644/0;");
	assert_string_equal(range(f, "/a/b", 0), "/a/b=@3/1/30000/644/1;/a/b/x=2@4/1/40000/644/0;");
	assert_int_equal(del(f, "/a", STORE_DEL_RECURSIVE), 0);
	assert_string_equal(range(f, "/", 0), "/=@0/1/1/755/2;/0=4@6/1/60000/644/0;/a-c=1@2/1/20000/644/0;");
	assert_string_equal(range(f, "/a", 4), "/a=@1/1/10000/644/0;/a/b=@3/1/30000/644/0;/a/b/x=2@4/1/40000/644/0;");
	memset(&l, 0, sizeof(l));
	assert_int_equal(store_range(f->s, "/a", 0, list_cb, &l), QFS_ENOENT);
	l.stop_after = 1;
	assert_int_equal(store_range(f->s, "/", 0, list_cb, &l), 77);
}

/* ---- Transactions ---------------------------------------------------------------- */

static bool cmp_result(struct fx *f, struct store_cmp c)
{
	struct store_op then = put_op("/then", STORE_FILE, "t");
	struct store_txn t = { .cmps = &c, .ncmps = 1, .then_ops = &then, .nthen = 1 };
	uint64_t rev = store_revision(f->s);
	struct store_result res = apply_txn(f, &t);

	assert_int_equal(res.err, 0);
	/* The else branch is empty: a false compare uses no revision. */
	assert_int_equal(store_revision(f->s), rev + (res.succeeded ? 1 : 0));
	assert_int_equal(res.revision, store_revision(f->s));
	return res.succeeded;
}

static void test_txn_compares(void **state)
{
	struct fx *f = *state;
	struct store_cmp c;

	assert_int_equal(put(f, "/k", "bbb"), 0); /* rev 1 */
	assert_int_equal(put(f, "/k", "bbb"), 0); /* rev 2, version 2 */

#define CMP_NUM(tgt, o, n) ((struct store_cmp){ .target = (tgt), .op = (o), .key = "/k", .num = (n) })
	assert_true(cmp_result(f, CMP_NUM(STORE_CMP_VERSION, STORE_CMP_EQ, 2)));
	assert_false(cmp_result(f, CMP_NUM(STORE_CMP_VERSION, STORE_CMP_EQ, 1)));
	assert_true(cmp_result(f, CMP_NUM(STORE_CMP_VERSION, STORE_CMP_NE, 1)));
	assert_true(cmp_result(f, CMP_NUM(STORE_CMP_VERSION, STORE_CMP_GT, 1)));
	assert_false(cmp_result(f, CMP_NUM(STORE_CMP_VERSION, STORE_CMP_LT, 2)));
	assert_true(cmp_result(f, CMP_NUM(STORE_CMP_CREATE, STORE_CMP_EQ, 1)));
	assert_true(cmp_result(f, CMP_NUM(STORE_CMP_CREATE, STORE_CMP_LT, 2)));
	assert_true(cmp_result(f, CMP_NUM(STORE_CMP_MOD, STORE_CMP_EQ, 2)));
	assert_false(cmp_result(f, CMP_NUM(STORE_CMP_MOD, STORE_CMP_GT, 2)));

	c = CMP_NUM(STORE_CMP_VALUE, STORE_CMP_EQ, 0);
	c.value = (const uint8_t *)"bbb";
	c.value_len = 3;
	assert_true(cmp_result(f, c));
	c.op = STORE_CMP_NE;
	assert_false(cmp_result(f, c));
	c.value_len = 2; /* "bb" is a prefix: shorter sorts first */
	c.op = STORE_CMP_GT;
	assert_true(cmp_result(f, c));
	c.value = (const uint8_t *)"c";
	c.value_len = 1;
	assert_false(cmp_result(f, c));
	c.op = STORE_CMP_LT;
	assert_true(cmp_result(f, c));

	/* Absent keys: numbers are 0, value compares are false. */
	c = CMP_NUM(STORE_CMP_CREATE, STORE_CMP_EQ, 0);
	c.key = "/absent";
	assert_true(cmp_result(f, c));
	c.target = STORE_CMP_VERSION;
	assert_true(cmp_result(f, c));
	c.target = STORE_CMP_MOD;
	c.op = STORE_CMP_GT;
	assert_false(cmp_result(f, c));
	c.target = STORE_CMP_VALUE;
	c.op = STORE_CMP_NE;
	c.value = (const uint8_t *)"x";
	c.value_len = 1;
	assert_false(cmp_result(f, c));
#undef CMP_NUM
}

static void test_txn_then_else(void **state)
{
	struct fx *f = *state;
	struct store_cmp c = { .target = STORE_CMP_CREATE, .op = STORE_CMP_EQ, .key = "/lock" };
	struct store_op then[] = { put_op("/lock", STORE_FILE, "me"), put_op("/log", STORE_FILE, "1") };
	struct store_op els[] = { put_op("/lost", STORE_FILE, "x") };
	struct store_txn t = { .cmps = &c, .ncmps = 1, .then_ops = then, .nthen = 2,
			       .else_ops = els, .nelse = 1 };
	struct store_result res;

	res = apply_txn(f, &t);
	assert_int_equal(res.err, 0);
	assert_true(res.succeeded);
	assert_int_equal(res.revision, 1);
	/* One revision for both ops; inos by creation order. */
	assert_int_equal(get(f, "/lock", 0).mod_rev, 1);
	assert_int_equal(get(f, "/log", 0).mod_rev, 1);
	assert_int_equal(get(f, "/lock", 0).ino, STORE_INO(1, 0));
	assert_int_equal(get(f, "/log", 0).ino, STORE_INO(1, 1));

	res = apply_txn(f, &t);
	assert_int_equal(res.err, 0);
	assert_false(res.succeeded);
	assert_int_equal(res.revision, 2);
	assert_int_equal(get_err(f, "/lost", 0), 0);
	assert_int_equal(get(f, "/lock", 0).version, 1);

	/* An empty then branch changes nothing and uses no revision. */
	t.nthen = 0;
	t.ncmps = 0;
	res = apply_txn(f, &t);
	assert_true(res.succeeded);
	assert_int_equal(res.revision, 2);
	assert_int_equal(store_revision(f->s), 2);
}

static void test_txn_undo(void **state)
{
	struct fx *f = *state;
	struct store_op ops[6];
	struct store_result res;
	struct store_txn t = { .then_ops = ops };
	uint32_t hash_before, hash_after;
	uint64_t size, keys, ino;
	const char *before;
	char saved[8192];

	assert_int_equal(mkdir_(f, "/d"), 0);
	assert_int_equal(put(f, "/d/f", "keep"), 0);
	assert_int_equal(put(f, "/g", "g"), 0);
	ino = get(f, "/d/f", 0).ino;
	assert_int_equal(store_hash(f->s, 0, &hash_before), 0);
	size = store_size(f->s);
	keys = store_key_count(f->s);
	before = range(f, "/", 0);
	strcpy(saved, before);

	/* Every kind of change, then an op that fails. */
	ops[0] = put_op("/new/a/b", STORE_FILE, "x");
	ops[0].flags = STORE_PUT_MKPARENTS;
	ops[1] = (struct store_op){ .type = STORE_OP_DELETE, .key = "/g" };
	ops[2] = (struct store_op){ .type = STORE_OP_RENAME, .key = "/d", .dst = "/e" };
	ops[3] = (struct store_op){ .type = STORE_OP_SETXATTR, .key = "/e/f", .xname = "user.a",
				    .value = (const uint8_t *)"1", .value_len = 1 };
	ops[4] = put_op("/e/f", STORE_FILE, "changed");
	ops[5] = put_op("/missing/x", STORE_FILE, "x");
	t.nthen = 6;
	res = apply_txn(f, &t);
	assert_int_equal(res.err, QFS_ENOENT);
	assert_int_equal(res.failed_op, 5);
	assert_int_equal(res.revision, 3);
	assert_int_equal(store_revision(f->s), 3);
	assert_int_equal(store_size(f->s), size);
	assert_int_equal(store_key_count(f->s), keys);
	assert_int_equal(store_hash(f->s, 0, &hash_after), 0);
	assert_int_equal(hash_after, hash_before);
	assert_string_equal(range(f, "/", 0), saved);
	assert_int_equal(get_err(f, "/new", 0), QFS_ENOENT);
	assert_int_equal(get_err(f, "/e", 0), QFS_ENOENT);
	{
		struct store_kv kv;

		assert_int_equal(store_get_ino(f->s, ino, &kv), 0);
		assert_string_equal(kv.key, "/d/f");
		assert_null(kv.xattrs_);
	}
	/* The next change gets the next revision, not a skipped one. */
	assert_int_equal(put(f, "/h", "h"), 0);
	assert_int_equal(get(f, "/h", 0).mod_rev, 4);
	assert_int_equal(get(f, "/h", 0).ino, STORE_INO(4, 0));
}

static void test_txn_same_key_twice(void **state)
{
	struct fx *f = *state;
	struct store_op ops[3] = { put_op("/a", STORE_FILE, "1"), put_op("/a", STORE_FILE, "2") };
	struct store_txn t = { .then_ops = ops, .nthen = 2 };
	struct store_kv kv;
	uint64_t size;

	assert_int_equal(apply_txn(f, &t).err, 0);
	kv = get(f, "/a", 0);
	assert_value(&kv, "2");
	assert_int_equal(kv.mod_rev, 1);
	assert_int_equal(kv.create_rev, 1);
	/* Squashed to one version: compacting to 1 frees nothing of /a. */
	size = store_size(f->s);
	assert_int_equal(compact(f, 1), 0);
	assert_int_equal(store_size(f->s), size);

	/* Created and deleted in one transaction: no trace. */
	ops[0] = put_op("/tmp", STORE_FILE, "x");
	ops[1] = (struct store_op){ .type = STORE_OP_DELETE, .key = "/tmp" };
	ops[2] = put_op("/b", STORE_FILE, "b");
	t.nthen = 3;
	size = store_size(f->s);
	assert_int_equal(apply_txn(f, &t).err, 0);
	/* Only /b's version is retained: key "/b", value "b", overhead. */
	assert_int_equal(store_size(f->s), size + 2 + 1 + 32);
	assert_int_equal(get_err(f, "/tmp", 0), QFS_ENOENT);
	assert_int_equal(get_err(f, "/tmp", 1), QFS_ENOENT);
	assert_string_equal(children(f, "/", 0, NULL), "a,b");
	assert_int_equal(get(f, "/b", 0).ino, STORE_INO(2, 1));
}

static void test_apply_index_and_malformed(void **state)
{
	struct fx *f = *state;
	struct store_result res;
	uint8_t junk[5] = { 1, 2, 3, 4, 5 };

	assert_int_equal(put(f, "/a", "1"), 0);
	assert_int_equal(store_apply(f->s, f->index, junk, sizeof(junk), &res), QFS_EINVAL);
	assert_int_equal(store_apply(f->s, f->index + 5, junk, sizeof(junk), &res), 0);
	assert_int_equal(res.err, QFS_EMSG);
	assert_int_equal(res.revision, 1);
	assert_int_equal(store_applied_index(f->s), f->index + 5);
	assert_int_equal(store_skip(f->s, f->index + 5), QFS_EINVAL);
	assert_int_equal(store_skip(f->s, f->index + 6), 0);
	f->index += 6;
	assert_int_equal(store_revision(f->s), 1);
	assert_int_equal(put(f, "/b", "1"), 0);
	assert_int_equal(store_revision(f->s), 2);
}

/* ---- Rename ------------------------------------------------------------------------ */

static void test_rename_file(void **state)
{
	struct fx *f = *state;
	struct store_kv kv, old;

	assert_int_equal(put(f, "/a", "A"), 0);
	assert_int_equal(put(f, "/b", "B"), 0);
	assert_int_equal(mkdir_(f, "/d"), 0);
	old = get(f, "/a", 0);

	assert_int_equal(ren(f, "/a", "/d/a2", 0), 0);
	kv = get(f, "/d/a2", 0);
	assert_int_equal(kv.ino, old.ino);
	assert_int_equal(kv.create_rev, old.create_rev);
	assert_int_equal(kv.version, old.version + 1);
	assert_int_equal(kv.mod_rev, 4);
	assert_int_equal(kv.ctime_ns, T(f->index));
	assert_int_equal(kv.mtime_ns, old.mtime_ns);
	assert_ptr_equal(kv.value, old.value); /* blob shared, not copied */
	assert_int_equal(get_err(f, "/a", 0), QFS_ENOENT);
	assert_value(&(struct store_kv){ .value = get(f, "/a", 3).value }, "A");
	assert_int_equal(store_get_ino(f->s, old.ino, &kv), 0);
	assert_string_equal(kv.key, "/d/a2");

	/* File over file replaces; the victim's ino is gone. */
	old = get(f, "/b", 0);
	assert_int_equal(ren(f, "/d/a2", "/b", 0), 0);
	kv = get(f, "/b", 0);
	assert_value(&kv, "A");
	assert_int_equal(store_get_ino(f->s, old.ino, &kv), QFS_ENOENT);
	assert_int_equal(store_key_count(f->s), 3);

	/* src == dst */
	assert_int_equal(ren(f, "/b", "/b", 0), 0);
	assert_int_equal(store_revision(f->s), 5);
	assert_int_equal(ren(f, "/b", "/b", STORE_RENAME_NOREPLACE), QFS_EEXIST);
	/* Errors */
	assert_int_equal(ren(f, "/nope", "/x", 0), QFS_ENOENT);
	assert_int_equal(ren(f, "/b", "/nope/x", 0), QFS_ENOENT);
	assert_int_equal(ren(f, "/b", "/b/x", 0), QFS_EINVAL); /* into itself */
	assert_int_equal(put(f, "/c", "C"), 0);
	assert_int_equal(ren(f, "/b", "/c/x", 0), QFS_ENOTDIR);
	assert_int_equal(ren(f, "/b", "/c", STORE_RENAME_NOREPLACE), QFS_EEXIST);
	assert_int_equal(ren(f, "/b", "/d", 0), QFS_EISDIR);
	assert_int_equal(ren(f, "/d", "/b", 0), QFS_ENOTDIR);
	assert_int_equal(ren(f, "/", "/x", 0), QFS_EINVAL);
	assert_int_equal(ren(f, "/b", "/", 0), QFS_EINVAL);
	assert_int_equal(ren(f, "/b", "/x", STORE_RENAME_NOREPLACE | STORE_RENAME_EXCHANGE), QFS_EINVAL);
	assert_int_equal(ren(f, "/b", "/x", STORE_RENAME_EXCHANGE), QFS_ENOENT);
	assert_int_equal(ren(f, "/b", "/.quorumfs/x", 0), QFS_EPERM);
	assert_int_equal(store_revision(f->s), 6);
	assert_int_equal(ren(f, "/b", "/x", STORE_RENAME_NOREPLACE), 0);
}

static void test_rename_dirs(void **state)
{
	struct fx *f = *state;
	struct store_op op = put_op("/d/y/z", STORE_FILE, "z");
	struct store_kv kv, oz, od;
	uint64_t rev;

	op.flags = STORE_PUT_MKPARENTS;
	assert_int_equal(apply_op(f, op), 0);
	assert_int_equal(put(f, "/d/x", "x"), 0);
	assert_int_equal(mkdir_(f, "/empty"), 0);
	assert_int_equal(mkdir_(f, "/full"), 0);
	assert_int_equal(put(f, "/full/f", "f"), 0);
	oz = get(f, "/d/y/z", 0);
	od = get(f, "/d", 0);

	assert_int_equal(ren(f, "/d", "/full", 0), QFS_ENOTEMPTY);
	assert_int_equal(ren(f, "/d", "/d/y/in", 0), QFS_EINVAL);
	assert_int_equal(ren(f, "/d/y", "/d", 0), QFS_ENOTEMPTY); /* onto its ancestor */
	assert_int_equal(ren(f, "/d/y/z", "/d", 0), QFS_EISDIR);

	/* Dir over an empty dir: the whole subtree moves in one revision. */
	rev = store_revision(f->s);
	assert_int_equal(ren(f, "/d", "/empty", 0), 0);
	assert_int_equal(store_revision(f->s), rev + 1);
	assert_string_equal(children(f, "/", 0, NULL), "empty,full");
	assert_string_equal(range(f, "/empty", 0),
			    "/empty=@6/2/10000/755/2;/empty/x=x@6/2/20000/644/0;"
			    "/empty/y=@6/2/10001/755/1;/empty/y/z=z@6/2/10002/644/0;");
	kv = get(f, "/empty/y/z", 0);
	assert_int_equal(kv.ino, oz.ino);
	assert_int_equal(kv.create_rev, oz.create_rev);
	assert_int_equal(get(f, "/empty", 0).ino, od.ino);
	assert_int_equal(store_get_ino(f->s, oz.ino, &kv), 0);
	assert_string_equal(kv.key, "/empty/y/z");
	/* The old subtree is readable at the old revision. */
	assert_string_equal(children(f, "/d/y", rev, NULL), "z");
	assert_int_equal(get_err(f, "/d/y/z", 0), QFS_ENOENT);
	assert_int_equal(store_key_count(f->s), 7);
	assert_int_equal(get(f, "/", 0).nchildren, 2);

	/* Moving a dir back where a dead subtree lies. */
	assert_int_equal(ren(f, "/empty", "/d", 0), 0);
	assert_string_equal(range(f, "/d", 0),
			    "/d=@7/3/10000/755/2;/d/x=x@7/3/20000/644/0;"
			    "/d/y=@7/3/10001/755/1;/d/y/z=z@7/3/10002/644/0;");
}

static void test_rename_exchange(void **state)
{
	struct fx *f = *state;
	struct store_kv a, b;

	assert_int_equal(mkdir_(f, "/a"), 0);
	assert_int_equal(put(f, "/a/1", "a1"), 0);
	assert_int_equal(put(f, "/b", "bfile"), 0);
	a = get(f, "/a", 0);
	b = get(f, "/b", 0);
	assert_int_equal(ren(f, "/a", "/a/1", STORE_RENAME_EXCHANGE), QFS_EINVAL);
	assert_int_equal(ren(f, "/a/1", "/a", STORE_RENAME_EXCHANGE), QFS_EINVAL);
	assert_int_equal(ren(f, "/a", "/b", STORE_RENAME_EXCHANGE), 0);
	assert_int_equal(get(f, "/b", 0).ino, a.ino);
	assert_int_equal(get(f, "/b", 0).type, STORE_DIR);
	assert_int_equal(get(f, "/a", 0).ino, b.ino);
	assert_value(&(struct store_kv){ .value = get(f, "/a", 0).value }, "bfile");
	assert_string_equal(range(f, "/", 0),
			    "/=@0/1/1/755/2;/a=bfile@4/2/30000/644/0;/b=@4/2/10000/644/1;"
			    "/b/1=a1@4/2/20000/644/0;");
	assert_int_equal(store_get_ino(f->s, a.ino, &a), 0);
	assert_string_equal(a.key, "/b");
	assert_int_equal(store_get_ino(f->s, b.ino, &b), 0);
	assert_string_equal(b.key, "/a");
	assert_int_equal(store_key_count(f->s), 4);
	/* One version per key at that revision; history intact. */
	assert_string_equal(range(f, "/", 3),
			    "/=@0/1/1/755/0;/a=@1/1/10000/644/0;/a/1=a1@2/1/20000/644/0;"
			    "/b=bfile@3/1/30000/644/0;"); /* past: no child counts */
}

/* ---- Delete --------------------------------------------------------------------------- */

static void test_delete_rules(void **state)
{
	struct fx *f = *state;
	struct store_op op = put_op("/d/e/f", STORE_FILE, "v");

	op.flags = STORE_PUT_MKPARENTS;
	assert_int_equal(apply_op(f, op), 0);
	assert_int_equal(put(f, "/file", "v"), 0);
	assert_int_equal(mkdir_(f, "/empty"), 0);

	assert_int_equal(del(f, "/", 0), QFS_EPERM);
	assert_int_equal(del(f, "/nope", 0), QFS_ENOENT);
	assert_int_equal(del(f, "/file/x", 0), QFS_ENOTDIR);
	assert_int_equal(del(f, "/d", 0), QFS_ENOTEMPTY);
	assert_int_equal(del(f, "/d", STORE_DEL_DIR), QFS_ENOTEMPTY);
	assert_int_equal(del(f, "/d", STORE_DEL_NOTDIR), QFS_EISDIR);
	assert_int_equal(del(f, "/file", STORE_DEL_DIR), QFS_ENOTDIR);
	assert_int_equal(del(f, "/file", STORE_DEL_DIR | STORE_DEL_NOTDIR), QFS_EINVAL);
	assert_int_equal(store_revision(f->s), 3);
	assert_int_equal(del(f, "/empty", STORE_DEL_DIR), 0);
	assert_int_equal(del(f, "/file", STORE_DEL_NOTDIR), 0);
	assert_int_equal(del(f, "/d", STORE_DEL_RECURSIVE), 0);
	assert_int_equal(store_revision(f->s), 6);
	assert_string_equal(range(f, "/", 0), "/=@0/1/1/755/0;");
	assert_int_equal(store_key_count(f->s), 1);
	assert_string_equal(children(f, "/d/e", 5, NULL), "f");
	/* The recursive delete is one revision for the whole subtree. */
	assert_int_equal(get_err(f, "/d/e/f", 5), 0);
	assert_int_equal(get_err(f, "/d/e/f", 6), QFS_ENOENT);
}

/* ---- Attributes ---------------------------------------------------------------------- */

static int xattr_list_cb(void *arg, const char *name)
{
	char *buf = arg;

	strcat(buf, name);
	strcat(buf, ";");
	return 0;
}

static int setx(struct fx *f, const char *key, const char *name, const char *value, uint32_t flags)
{
	struct store_op op = { .type = STORE_OP_SETXATTR, .key = key, .xname = name, .flags = flags,
			       .value = (const uint8_t *)value, .value_len = strlen(value) };

	return apply_op(f, op);
}

static int rmx(struct fx *f, const char *key, const char *name)
{
	struct store_op op = { .type = STORE_OP_RMXATTR, .key = key, .xname = name };

	return apply_op(f, op);
}

static void test_setattr_xattrs(void **state)
{
	struct fx *f = *state;
	struct store_op op = { .type = STORE_OP_SETATTR, .key = "/a",
			       .flags = STORE_ATTR_MODE | STORE_ATTR_MTIME, .mode = 0100600,
			       .mtime_ns = 42 };
	struct store_kv kv, old;
	const uint8_t *val;
	size_t len;
	char names[256] = "";
	char big[STORE_XATTR_NAME_MAX + 2];

	assert_int_equal(put(f, "/a", "data"), 0);
	old = get(f, "/a", 0);
	assert_int_equal(apply_op(f, op), 0);
	kv = get(f, "/a", 0);
	assert_int_equal(kv.mode, 0600);
	assert_int_equal(kv.mtime_ns, 42);
	assert_int_equal(kv.ctime_ns, T(f->index));
	assert_int_equal(kv.uid, old.uid);
	assert_int_equal(kv.version, 2);
	assert_ptr_equal(kv.value, old.value);
	op.flags = STORE_ATTR_UID | STORE_ATTR_GID;
	op.uid = 1;
	op.gid = 2;
	assert_int_equal(apply_op(f, op), 0);
	kv = get(f, "/a", 0);
	assert_int_equal(kv.uid, 1);
	assert_int_equal(kv.gid, 2);
	assert_int_equal(kv.mode, 0600);
	op.flags = 0x100;
	assert_int_equal(apply_op(f, op), QFS_EINVAL);
	op.flags = STORE_ATTR_MODE;
	op.key = "/nope";
	assert_int_equal(apply_op(f, op), QFS_ENOENT);
	op.key = "/";
	op.mode = 0700;
	assert_int_equal(apply_op(f, op), 0);
	assert_int_equal(get(f, "/", 0).mode, 0700);
	assert_int_equal(get(f, "/", 0).ino, STORE_ROOT_INO);

	assert_int_equal(setx(f, "/a", "user.b", "2", 0), 0);
	assert_int_equal(setx(f, "/a", "user.a", "1", 0), 0);
	assert_int_equal(setx(f, "/a", "user.c", "3", STORE_XATTR_REPLACE), QFS_ENODATA);
	assert_int_equal(setx(f, "/a", "user.a", "x", STORE_XATTR_CREATE), QFS_EEXIST);
	assert_int_equal(setx(f, "/a", "user.b", "22", STORE_XATTR_REPLACE), 0);
	assert_int_equal(setx(f, "/a", "user.quorumfs.ttl", "3", 0), QFS_EINVAL);
	assert_int_equal(setx(f, "/a", "trusted.x", "3", 0), QFS_EINVAL);
	assert_int_equal(setx(f, "/a", "user.", "3", 0), QFS_EINVAL);
	memset(big, 'x', sizeof(big));
	memcpy(big, "user.", 5);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(setx(f, "/a", big, "3", 0), QFS_ERANGE);
	assert_int_equal(setx(f, "/nope", "user.a", "3", 0), QFS_ENOENT);
	{
		static uint8_t huge[STORE_XATTR_VALUE_MAX + 1];
		struct store_op xo = { .type = STORE_OP_SETXATTR, .key = "/a", .xname = "user.h",
				       .value = huge, .value_len = sizeof(huge) };

		assert_int_equal(apply_op(f, xo), QFS_EFBIG);
		xo.value_len--;
		assert_int_equal(apply_op(f, xo), 0);
		assert_int_equal(rmx(f, "/a", "user.h"), 0);
	}
	kv = get(f, "/a", 0);
	assert_ptr_equal(kv.value, old.value);
	assert_int_equal(store_kv_xattr_get(&kv, "user.b", &val, &len), 0);
	assert_int_equal(len, 2);
	assert_memory_equal(val, "22", 2);
	assert_int_equal(store_kv_xattr_get(&kv, "user.zz", &val, &len), QFS_ENODATA);
	assert_int_equal(store_kv_xattr_list(&kv, xattr_list_cb, names), 0);
	assert_string_equal(names, "user.a;user.b;");
	assert_int_equal(rmx(f, "/a", "user.a"), 0);
	assert_int_equal(rmx(f, "/a", "user.a"), QFS_ENODATA);
	kv = get(f, "/a", 0);
	names[0] = '\0';
	assert_int_equal(store_kv_xattr_list(&kv, xattr_list_cb, names), 0);
	assert_string_equal(names, "user.b;");
	/* Past versions keep their xattrs; a PUT and a rename keep them too. */
	kv = get(f, "/a", 2);
	assert_int_equal(store_kv_xattr_get(&kv, "user.b", &val, &len), QFS_ENODATA);
	assert_int_equal(put(f, "/a", "new"), 0);
	assert_int_equal(ren(f, "/a", "/b", 0), 0);
	kv = get(f, "/b", 0);
	assert_int_equal(store_kv_xattr_get(&kv, "user.b", &val, &len), 0);
	assert_memory_equal(val, "22", 2);
	assert_int_equal(kv.mode, 0600);
	/* Dirs take xattrs too. */
	assert_int_equal(setx(f, "/", "user.r", "root", 0), 0);
}

static void test_blob_outlives_store(void **state)
{
	struct fx *f = *state;
	struct store_blob *b;

	assert_int_equal(put(f, "/a", "held"), 0);
	b = store_blob_ref(get(f, "/a", 0).value);
	assert_int_equal(put(f, "/a", "next"), 0);
	assert_int_equal(compact(f, 2), 0);
	store_destroy(f->s);
	f->s = NULL;
	assert_int_equal(b->len, 4);
	assert_memory_equal(b->data, "held", 4);
	store_blob_unref(b);
	store_blob_unref(NULL);
	assert_int_equal(store_create(NULL, &f->s), 0);
}

/* ---- Quota and compaction ------------------------------------------------------------ */

static void test_quota(void **state)
{
	struct fx *f = *state;
	struct store_config cfg = { .quota_bytes = 2000 };
	char key[32];
	int i, rc = 0;
	uint64_t rev;

	store_destroy(f->s);
	assert_int_equal(store_create(&cfg, &f->s), 0);
	for (i = 0; i < 1000 && rc == 0; i++) {
		snprintf(key, sizeof(key), "/k%03d", i);
		rc = put(f, key, "0123456789012345678901234567890123456789");
	}
	assert_int_equal(rc, QFS_ENOSPC);
	assert_true(i > 5);
	assert_true(store_size(f->s) <= 2000);
	rev = store_revision(f->s);
	assert_int_equal(get_err(f, key, 0), QFS_ENOENT);
	/* Reads, deletes, compaction keep working; then there is room again. */
	assert_int_equal(put(f, "/big", "0123456789012345678901234567890123456789"), QFS_ENOSPC);
	assert_int_equal(del(f, "/k000", 0), 0);
	assert_int_equal(del(f, "/k001", 0), 0);
	assert_int_equal(store_revision(f->s), rev + 2);
	assert_int_equal(put(f, key, "x"), QFS_ENOSPC);
	assert_int_equal(compact(f, store_revision(f->s)), 0);
	assert_int_equal(put(f, key, "x"), 0);
	assert_true(store_size(f->s) <= 2000);
}

static void test_compaction(void **state)
{
	struct fx *f = *state;
	uint64_t size0 = store_size(f->s), size_full;
	struct store_kv kv;

	assert_int_equal(put(f, "/a", "1"), 0);   /* 1 */
	assert_int_equal(put(f, "/a", "22"), 0);  /* 2 */
	assert_int_equal(mkdir_(f, "/d"), 0);     /* 3 */
	assert_int_equal(put(f, "/d/x", "x"), 0); /* 4 */
	assert_int_equal(del(f, "/d", STORE_DEL_RECURSIVE), 0); /* 5 */
	assert_int_equal(put(f, "/a", "333"), 0); /* 6 */
	size_full = store_size(f->s);

	assert_int_equal(compact(f, 9), QFS_EFUTUREREV);
	assert_int_equal(store_compacted_revision(f->s), 0);
	assert_int_equal(compact(f, 2), 0);
	assert_int_equal(store_compacted_revision(f->s), 2);
	assert_true(store_size(f->s) < size_full);
	assert_int_equal(get_err(f, "/a", 1), QFS_ECOMPACTED);
	assert_int_equal(store_hash(f->s, 1, &(uint32_t){ 0 }), QFS_ECOMPACTED);
	kv = get(f, "/a", 2);
	assert_value(&kv, "22");
	assert_value(&(struct store_kv){ .value = get(f, "/a", 0).value }, "333");
	assert_string_equal(children(f, "/d", 4, NULL), "x");
	/* Compacting lower or equal: no-op. */
	assert_int_equal(compact(f, 1), 0);
	assert_int_equal(store_compacted_revision(f->s), 2);

	/* Past the delete: the dead subtree and its tombstones go. */
	assert_int_equal(compact(f, 5), 0);
	assert_int_equal(get_err(f, "/d", 4), QFS_ECOMPACTED);
	assert_int_equal(get_err(f, "/d", 5), QFS_ENOENT);
	assert_int_equal(get_err(f, "/a", 5), 0);
	assert_int_equal(compact(f, 6), 0);
	/* Only the current version of "/" and of "/a" remain. */
	assert_int_equal(store_size(f->s), size0 + 2 + 3 + 32);
	kv = get(f, "/a", 0);
	assert_int_equal(kv.version, 3);
	assert_int_equal(kv.create_rev, 1);
	/* Keys re-created after compaction work normally. */
	assert_int_equal(mkdir_(f, "/d"), 0);
	assert_int_equal(get(f, "/d", 0).version, 1);
	assert_string_equal(children(f, "/d", 0, NULL), "");
	assert_int_equal(compact(f, store_revision(f->s)), 0);
	assert_int_equal(get(f, "/", 0).nchildren, 2);
}

/* ---- Snapshots ------------------------------------------------------------------------- */

static void build_history(struct fx *f)
{
	struct store_op op = put_op("/cfg/app/db", STORE_FILE, "host=a");
	int i;

	op.flags = STORE_PUT_MKPARENTS;
	assert_int_equal(apply_op(f, op), 0);
	assert_int_equal(put(f, "/cfg/app/db", "host=b"), 0);
	assert_int_equal(setx(f, "/cfg/app/db", "user.owner", "ops", 0), 0);
	assert_int_equal(setx(f, "/cfg/app", "user.z", "", 0), 0);
	assert_int_equal(apply_op(f, (struct store_op){ .type = STORE_OP_SETATTR, .key = "/cfg/app/db",
							.flags = STORE_ATTR_MODE, .mode = 0600 }), 0);
	assert_int_equal(apply_op(f, put_op("/cfg/link", STORE_SYMLINK, "app/db")), 0);
	for (i = 0; i < 5; i++) {
		char key[16];

		snprintf(key, sizeof(key), "/k%d", i);
		assert_int_equal(put(f, key, key), 0);
	}
	assert_int_equal(del(f, "/k2", 0), 0);
	assert_int_equal(ren(f, "/cfg/app", "/cfg/app2", 0), 0);
	assert_int_equal(compact(f, 3), 0);
	assert_int_equal(put(f, "/k0", "again"), 0);
	assert_int_equal(ren(f, "/k0", "/k1", STORE_RENAME_EXCHANGE), 0);
}

/* After a compaction at c no node holds a version that no read at c or
 * later can see, and no node is left without versions or children. */
static void assert_compacted(struct store *s)
{
	uint64_t c = store_compacted_revision(s);

	for (struct node *n = s->root; n; n = node_next_preorder(s->root, n)) {
		uint32_t k = 0;

		while (k < n->nvers && n->vers[k].mod_rev <= c)
			k++;
		if (n != s->root)
			assert_true(n->nvers > 0 || !RB_EMPTY(&n->children));
		assert_true(k <= 2);
		if (k == 1 && n->vers[0].tomb)
			assert_true(n->vers[0].mod_rev == c);
		if (k == 2)
			assert_true(n->vers[1].tomb && n->vers[1].mod_rev == c);
	}
}

static void assert_same_state(struct fx *a, struct fx *b)
{
	uint64_t rev;
	char buf[8192];

	assert_int_equal(store_revision(a->s), store_revision(b->s));
	assert_int_equal(store_compacted_revision(a->s), store_compacted_revision(b->s));
	assert_int_equal(store_applied_index(a->s), store_applied_index(b->s));
	assert_int_equal(store_size(a->s), store_size(b->s));
	assert_int_equal(store_key_count(a->s), store_key_count(b->s));
	for (rev = store_compacted_revision(a->s); rev <= store_revision(a->s); rev++) {
		uint32_t ha, hb;

		assert_int_equal(store_hash(a->s, rev, &ha), 0);
		assert_int_equal(store_hash(b->s, rev, &hb), 0);
		assert_int_equal(ha, hb);
		strcpy(buf, range(a, "/", rev));
		assert_string_equal(buf, range(b, "/", rev));
	}
}

static void test_snapshot_roundtrip(void **state)
{
	struct fx *f = *state, g = { 0 };
	struct store_kv kv;
	struct qbuf b;
	const uint8_t *val;
	size_t len;
	uint64_t ino;

	build_history(f);
	qbuf_init(&b);
	assert_int_equal(store_snapshot_save(f->s, &b), 0);
	assert_int_equal(store_create(NULL, &g.s), 0);
	assert_int_equal(put(&g, "/junk", "replaced by the load"), 0);
	assert_int_equal(store_snapshot_load(g.s, b.data, b.len), 0);
	g.index = f->index;
	assert_same_state(f, &g);
	assert_int_equal(get_err(&g, "/junk", 0), QFS_ENOENT);
	kv = get(&g, "/cfg/app2/db", 0);
	assert_int_equal(store_kv_xattr_get(&kv, "user.owner", &val, &len), 0);
	assert_memory_equal(val, "ops", 3);
	assert_int_equal(kv.mode, 0600);
	ino = kv.ino;
	assert_int_equal(store_get_ino(g.s, ino, &kv), 0);
	assert_string_equal(kv.key, "/cfg/app2/db");
	assert_int_equal(get(&g, "/cfg/link", 0).type, STORE_SYMLINK);

	/* Both go on identically. */
	assert_int_equal(put(f, "/after", "1"), 0);
	assert_int_equal(put(&g, "/after", "1"), 0);
	assert_int_equal(ren(f, "/cfg", "/cfg3", 0), 0);
	assert_int_equal(ren(&g, "/cfg", "/cfg3", 0), 0);
	assert_int_equal(compact(f, store_revision(f->s) - 1), 0);
	assert_int_equal(compact(&g, store_revision(g.s) - 1), 0);
	assert_same_state(f, &g);

	/* A re-save of the loaded store is byte-identical. */
	{
		struct qbuf c, d;

		qbuf_init(&c);
		qbuf_init(&d);
		assert_int_equal(store_snapshot_save(f->s, &c), 0);
		assert_int_equal(store_snapshot_save(g.s, &d), 0);
		assert_int_equal(c.len, d.len);
		assert_memory_equal(c.data, d.data, c.len);
		qbuf_close(&c);
		qbuf_close(&d);
	}
	store_destroy(g.s);
	qbuf_close(&b);
}

static void test_snapshot_bad_images(void **state)
{
	struct fx *f = *state, g = { 0 };
	struct qbuf b;
	uint32_t h0, h;
	size_t n;
	unsigned seed = 777;
	int iter, loaded = 0;
	char before[8192];

	build_history(f);
	qbuf_init(&b);
	assert_int_equal(store_snapshot_save(f->s, &b), 0);
	assert_int_equal(store_create(NULL, &g.s), 0);
	assert_int_equal(put(&g, "/mine", "x"), 0);
	assert_int_equal(store_hash(g.s, 0, &h0), 0);
	strcpy(before, range(&g, "/", 0));

	for (n = 0; n < b.len; n++) {
		uint8_t *p = malloc(n ? n : 1);

		assert_non_null(p);
		memcpy(p, b.data, n);
		assert_int_equal(store_snapshot_load(g.s, p, n), QFS_EMSG);
		free(p);
	}
	assert_int_equal(store_hash(g.s, 0, &h), 0);
	assert_int_equal(h, h0);
	assert_string_equal(range(&g, "/", 0), before);
	assert_int_equal(store_applied_index(g.s), 1);

	for (iter = 0; iter < 3000; iter++) {
		uint8_t *p = malloc(b.len);
		int flips = 1 + (int)(rand_r(&seed) % 3), i;

		assert_non_null(p);
		memcpy(p, b.data, b.len);
		for (i = 0; i < flips; i++)
			p[rand_r(&seed) % b.len] ^= (uint8_t)(1u << (rand_r(&seed) % 8));
		if (store_snapshot_load(g.s, p, b.len) == 0) {
			struct list l;

			/* Whatever loaded must be usable: read everything, change it. */
			loaded++;
			memset(&l, 0, sizeof(l));
			l.full = true;
			assert_int_equal(store_range(g.s, "/", 0, list_cb, &l), 0);
			g.index = store_applied_index(g.s);
			put(&g, "/k9", "x");
			del(&g, "/cfg", STORE_DEL_RECURSIVE);
			compact(&g, store_revision(g.s));
			/* Back to a known state for the next image. */
			store_destroy(g.s);
			assert_int_equal(store_create(NULL, &g.s), 0);
			g.index = 0;
			assert_int_equal(put(&g, "/mine", "x"), 0);
		} else {
			assert_int_equal(store_hash(g.s, 0, &h), 0);
			assert_int_equal(h, h0);
		}
		free(p);
	}
	/* Flipping bits of times, modes or value bytes gives valid images. */
	assert_true(loaded > 0);
	store_destroy(g.s);
	qbuf_close(&b);
}

static void test_hash(void **state)
{
	struct fx *f = *state;
	uint32_t h0, h1, h1_later, h;
	uint8_t rec[18] = { '/', 0 }; /* "/" NUL, mod_rev 0, value length 0 */

	assert_int_equal(store_hash(f->s, 0, &h0), 0);
	assert_int_equal(h0, (uint32_t)crc32(crc32(0L, Z_NULL, 0), rec, sizeof(rec)));
	assert_int_equal(put(f, "/a", "1"), 0);
	assert_int_equal(store_hash(f->s, 0, &h1), 0);
	assert_int_not_equal(h1, h0);
	assert_int_equal(apply_op(f, (struct store_op){ .type = STORE_OP_SETATTR, .key = "/a",
							.flags = STORE_ATTR_MODE, .mode = 0 }), 0);
	assert_int_equal(store_hash(f->s, 0, &h), 0);
	assert_int_not_equal(h, h1); /* mod_rev changed */
	assert_int_equal(store_hash(f->s, 1, &h1_later), 0);
	assert_int_equal(h1_later, h1);
	assert_int_equal(store_hash(f->s, 0, &h), 0);
	assert_int_equal(store_hash(f->s, 3, &h), QFS_EFUTUREREV);
}

struct count_ctx {
	struct store *s;
	uint64_t n;
};

static int check_kv_cb(void *arg, const struct store_kv *kv)
{
	struct count_ctx *c = arg;
	struct store_kv byino;

	c->n++;
	assert_int_equal(store_get_ino(c->s, kv->ino, &byino), 0);
	assert_string_equal(byino.key, kv->key);
	return 0;
}

/* Every lease's key list matches the keys' own lease fields. */
struct lease_check {
	const struct store *s;
	uint64_t attached; /* live keys with a lease */
	uint64_t listed;   /* keys listed by the leases */
	uint64_t id;
};

static int lease_key_cb(void *arg, const char *key)
{
	struct lease_check *c = arg;
	struct store_kv kv;

	assert_int_equal(store_get(c->s, key, 0, &kv), 0);
	assert_int_equal(kv.lease, c->id);
	c->listed++;
	return 0;
}

static int lease_list_cb(void *arg, const struct store_lease *l)
{
	struct lease_check *c = arg;
	uint64_t before = c->listed;

	c->id = l->id;
	assert_int_equal(store_lease_keys(c->s, l->id, lease_key_cb, c), 0);
	assert_int_equal(c->listed - before, l->nkeys);
	return 0;
}

static int lease_kv_cb(void *arg, const struct store_kv *kv)
{
	struct lease_check *c = arg;
	struct store_lease l;

	if (kv->lease) {
		assert_int_equal(store_lease_get(c->s, kv->lease, &l), 0);
		c->attached++;
	}
	return 0;
}

static uint64_t check_leases(const struct store *s)
{
	struct lease_check c = { .s = s };

	assert_int_equal(store_lease_list(s, lease_list_cb, &c), 0);
	assert_int_equal(store_range(s, "/", 0, lease_kv_cb, &c), 0);
	assert_int_equal(c.attached, c.listed);
	return c.attached;
}

static int lease_text_cb(void *arg, const struct store_lease *l)
{
	char *buf = arg;

	sprintf(buf + strlen(buf), "%llx:%lld:%lld:%llu:%llu ", (unsigned long long)l->id,
		(long long)l->ttl_ms, (long long)l->expiry_ns, (unsigned long long)l->gen,
		(unsigned long long)l->nkeys);
	return 0;
}

static const char *lease_text(const struct store *s)
{
	static char buf[1024];

	buf[0] = '\0';
	assert_int_equal(store_lease_list(s, lease_text_cb, buf), 0);
	return buf;
}

/* The events of a revision agree with the history at it and before. */
static int event_check_cb(void *arg, const struct store_event *ev)
{
	const struct store *s = arg;
	struct store_kv kv;

	if (ev->type == STORE_EVENT_PUT) {
		assert_int_equal(store_get(s, ev->kv->key, ev->revision, &kv), 0);
		assert_int_equal(kv.mod_rev, ev->revision);
		assert_int_equal(ev->kv->mod_rev, ev->revision);
	} else {
		assert_int_equal(ev->type, STORE_EVENT_DELETE);
		assert_int_equal(store_get(s, ev->kv->key, ev->revision, &kv), QFS_ENOENT);
		assert_true(ev->kv->mod_rev < ev->revision);
		if (ev->revision - 1 >= store_compacted_revision(s)) {
			assert_int_equal(store_get(s, ev->kv->key, ev->revision - 1, &kv), 0);
			assert_int_equal(kv.mod_rev, ev->kv->mod_rev);
		}
	}
	return 0;
}

static int event_text_cb(void *arg, const struct store_event *ev)
{
	uLong *crc = arg;
	char line[STORE_KEY_MAX + 64];
	int n = snprintf(line, sizeof(line), "%llu %d %s %llu %llu|",
			 (unsigned long long)ev->revision, (int)ev->type, ev->kv->key,
			 (unsigned long long)ev->kv->mod_rev, (unsigned long long)ev->kv->lease);

	*crc = crc32(*crc, (const Bytef *)line, (uInt)n);
	return 0;
}

static uint32_t events_crc(const struct store *s)
{
	uLong crc = crc32(0L, Z_NULL, 0);

	assert_int_equal(store_events(s, store_compacted_revision(s), 0, "/", event_text_cb, &crc),
			 0);
	return (uint32_t)crc;
}

/* Random ops over a small key space, leases included: derived state
 * (lease key sets, the event index) stays consistent, failed transactions
 * leave no trace, and a snapshot reproduces it all. */
static void test_random_ops(void **state)
{
	struct fx *f = *state, g = { 0 };
	static const char *keys[] = { "/a", "/b", "/a/x", "/a/y", "/b/x", "/a/x/z", "/c" };
	const size_t nk = sizeof(keys) / sizeof(keys[0]);
	unsigned seed = 4242;
	struct qbuf b;
	int iter, failed = 0, changed = 0;
	uint64_t max_keys = 0;
	uint64_t max_attached = 0;

	for (iter = 0; iter < 3000; iter++) {
		struct store_op ops[3];
		struct store_txn t = { .then_ops = ops };
		uint32_t h_before, h_after;
		uint64_t size = store_size(f->s), rev = store_revision(f->s);
		struct store_result res;
		struct count_ctx c = { .s = f->s };
		char leases_before[1024];
		uint64_t attached;
		size_t i;

		t.nthen = 1 + rand_r(&seed) % 3;
		for (i = 0; i < t.nthen; i++) {
			const char *k = keys[rand_r(&seed) % nk];

			switch (rand_r(&seed) % 10) {
			case 0:
				ops[i] = put_op(k, STORE_FILE, "v");
				break;
			case 1:
				ops[i] = put_op(k, STORE_DIR, NULL);
				ops[i].flags = rand_r(&seed) % 2 ? STORE_PUT_MKPARENTS : 0;
				break;
			case 2:
				ops[i] = (struct store_op){ .type = STORE_OP_DELETE, .key = k,
							    .flags = rand_r(&seed) % 2 };
				break;
			case 3:
			case 4:
				ops[i] = (struct store_op){ .type = STORE_OP_RENAME, .key = k,
							    .dst = keys[rand_r(&seed) % nk],
							    .flags = rand_r(&seed) % 3 };
				break;
			case 5:
				ops[i] = (struct store_op){ .type = STORE_OP_SETXATTR, .key = k,
							    .xname = "user.x",
							    .value = (const uint8_t *)"1",
							    .value_len = 1 };
				break;
			case 6:
				ops[i] = (struct store_op){ .type = STORE_OP_LEASE_GRANT,
							    .lease_id = 1 + rand_r(&seed) % 3,
							    .ttl_ms = 1000 };
				break;
			case 7:
			case 8:
				ops[i] = (struct store_op){ .type = STORE_OP_LEASE_ATTACH, .key = k,
							    .lease_id = rand_r(&seed) % 4 };
				break;
			default:
				ops[i] = (struct store_op){ .type = STORE_OP_LEASE_REVOKE + rand_r(&seed) % 2 * 2,
							    .lease_id = 1 + rand_r(&seed) % 3,
							    .lease_gen = 1 + rand_r(&seed) % 3 };
				if (rand_r(&seed) % 3 == 0)
					ops[i].type = STORE_OP_LEASE_RENEW;
			}
		}
		assert_int_equal(store_hash(f->s, 0, &h_before), 0);
		strcpy(leases_before, lease_text(f->s));
		res = apply_txn(f, &t);
		assert_int_equal(store_hash(f->s, 0, &h_after), 0);
		attached = check_leases(f->s);
		if (attached > max_attached)
			max_attached = attached;
		if (res.err) {
			assert_int_equal(store_revision(f->s), rev);
			assert_int_equal(store_size(f->s), size);
			assert_int_equal(h_after, h_before);
			assert_string_equal(lease_text(f->s), leases_before);
			failed++;
		} else {
			assert_int_equal(store_events(f->s, rev + 1, 0, "/", event_check_cb,
						      f->s), 0);
			assert_true(store_revision(f->s) == rev || store_revision(f->s) == rev + 1);
			changed += store_revision(f->s) == rev + 1;
		}
		if (store_key_count(f->s) > max_keys)
			max_keys = store_key_count(f->s);
		assert_int_equal(store_range(f->s, "/", 0, check_kv_cb, &c), 0);
		assert_int_equal(c.n, store_key_count(f->s));
		if (iter % 100 == 99) {
			uint64_t to = store_revision(f->s) - rand_r(&seed) % 20;

			if (to < store_compacted_revision(f->s))
				to = store_compacted_revision(f->s);
			assert_int_equal(compact(f, to), 0);
			assert_compacted(f->s);
		}
	}
	/* The mix exercised both outcomes and grew real trees. */
	assert_true(failed > 300);
	assert_true(changed > 300);
	assert_true(max_keys >= 6);
	assert_true(max_attached >= 3);
	qbuf_init(&b);
	assert_int_equal(store_snapshot_save(f->s, &b), 0);
	assert_int_equal(store_create(NULL, &g.s), 0);
	assert_int_equal(store_snapshot_load(g.s, b.data, b.len), 0);
	g.index = f->index;
	assert_same_state(f, &g);
	check_leases(g.s);
	assert_string_equal(lease_text(g.s), lease_text(f->s));
	assert_int_equal(events_crc(g.s), events_crc(f->s));
	store_destroy(g.s);
	qbuf_close(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T_(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T_(test_initial),
		T_(test_mvcc_versions),
		T_(test_put_rules),
		T_(test_mkparents),
		T_(test_efbig),
		T_(test_children),
		T_(test_range),
		T_(test_txn_compares),
		T_(test_txn_then_else),
		T_(test_txn_undo),
		T_(test_txn_same_key_twice),
		T_(test_apply_index_and_malformed),
		T_(test_rename_file),
		T_(test_rename_dirs),
		T_(test_rename_exchange),
		T_(test_delete_rules),
		T_(test_setattr_xattrs),
		T_(test_blob_outlives_store),
		T_(test_quota),
		T_(test_compaction),
		T_(test_snapshot_roundtrip),
		T_(test_snapshot_bad_images),
		T_(test_hash),
		T_(test_random_ops),
#undef T_
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
