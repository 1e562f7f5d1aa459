/*
 * State machine image tests (fs/image.c): the head round-trips with the
 * store's bytes after it untouched, damaged images are refused without
 * leaks, and a new cluster's first configuration is parsed from
 * --initial-cluster the same way whatever the order, with one clear line
 * for each kind of bad list.
 *
 * fs/ is not part of the core archive the unit tests link, so the module
 * under test (and the address book it uses) is compiled into this file.
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
#include "../../fs/auth.c"
#include "../../fs/book.c"
#include "../../fs/image.c"

static const uint8_t store_part[] = "the store's own bytes, opaque here";

static void auth_do(struct auth *a, uint8_t op, const char *name, const char *arg, uint8_t perm)
{
	struct auth_change ch = {op, name, arg, perm};

	assert_int_equal(auth_apply(a, &ch), 0);
}

/* An image of two members with a book, a dedup table and users and roles. */
static void sample(struct qbuf *b)
{
	struct raft_members m = {.n = 2, .m = {{11, true}, {22, false}}};
	struct book bk = {0};
	struct raft_dedup d;
	struct auth a;

	auth_init(&a);
	auth_do(&a, AUTH_ROLE_ADD, "ro", "", 0);
	auth_do(&a, AUTH_ROLE_GRANT, "ro", "/config", AUTH_READ);
	auth_do(&a, AUTH_USER_ADD, "root", "", 0);
	auth_do(&a, AUTH_USER_GRANT, "root", "root", 0);
	auth_do(&a, AUTH_USER_ADD, "alice", "", 0);
	auth_do(&a, AUTH_USER_GRANT, "alice", "ro", 0);
	auth_do(&a, AUTH_ENABLE, "", "", 0);
	raft_dedup_init(&d);
	assert_int_equal(raft_dedup_check(&d, 11, 5), 1);
	assert_int_equal(book_set(&bk, 11, "n1", "127.0.0.1:2380", "127.0.0.1:2379"), 0);
	assert_int_equal(book_set(&bk, 22, "n2", "127.0.0.1:2382", ""), 0);
	qbuf_init(b);
	assert_int_equal(image_head_encode(&m, &bk, &d, &a, b), 0);
	qbuf_put(b, store_part, sizeof(store_part));
	raft_dedup_close(&d);
	auth_close(&a);
}

static void test_round_trip(void **state)
{
	struct image img;
	struct qbuf b;

	(void)state;
	sample(&b);
	assert_int_equal(image_decode(b.data, b.len, &img), 0);
	assert_int_equal(img.members.n, 2);
	assert_int_equal(img.members.m[0].id, 11);
	assert_true(img.members.m[0].voter);
	assert_false(img.members.m[1].voter);
	assert_string_equal(book_find(&img.book, 22)->name, "n2");
	assert_string_equal(book_find(&img.book, 11)->client, "127.0.0.1:2379");
	assert_int_equal(raft_dedup_check(&img.dedup, 11, 5), 0); /* remembered */
	assert_true(img.auth.enabled);
	assert_true(auth_is_root(&img.auth, "root"));
	assert_int_equal(auth_role_find(&img.auth, "ro")->perms[0].perm, AUTH_READ);
	assert_string_equal(auth_user_find(&img.auth, "alice")->roles[0], "ro");
	assert_int_equal(img.store_len, sizeof(store_part));
	assert_memory_equal(img.store, store_part, sizeof(store_part));
	image_close(&img);
	image_close(&img); /* idempotent */
	qbuf_close(&b);
}

/* A version 1 image (before users and roles) still loads: auth off. */
static void test_version_1(void **state)
{
	struct raft_members m = {.n = 1, .m = {{11, true}}};
	struct book bk = {0};
	struct raft_dedup d;
	struct image img;
	struct qbuf b;

	(void)state;
	raft_dedup_init(&d);
	qbuf_init(&b);
	qbuf_put_u32(&b, 1);
	qbuf_put_u32(&b, m.n);
	qbuf_put_u64(&b, 11);
	qbuf_put_u8(&b, 1);
	book_encode(&bk, &b);
	raft_dedup_encode(&d, &b);
	qbuf_put(&b, store_part, sizeof(store_part));
	assert_int_equal(image_decode(b.data, b.len, &img), 0);
	assert_false(img.auth.enabled);
	assert_int_equal(img.auth.nusers, 0);
	assert_int_equal(img.store_len, sizeof(store_part));
	image_close(&img);
	raft_dedup_close(&d);
	qbuf_close(&b);
}

static void test_damage(void **state)
{
	struct image img;
	struct qbuf b;

	(void)state;
	sample(&b);
	/* Every cut inside the head is refused (ASan: no leak, no overread). */
	for (size_t cut = 0; cut < b.len - sizeof(store_part); cut++)
		assert_int_equal(image_decode(b.data, cut, &img), QFS_EMSG);
	/* Another version; more members than Raft allows. */
	b.data[0] ^= 1;
	assert_int_equal(image_decode(b.data, b.len, &img), QFS_EMSG);
	b.data[0] ^= 1;
	qfs_le32_put(b.data + 4, RAFT_MAX_MEMBERS + 1);
	assert_int_equal(image_decode(b.data, b.len, &img), QFS_EMSG);
	qbuf_close(&b);
}

static void test_initial_members(void **state)
{
	struct raft_members m, m2;
	struct book b, b2;
	char err[256];

	(void)state;
	assert_int_equal(image_initial_members("n1=127.0.0.1:1,n2=127.0.0.2:2,n3=[::1]:3", "n2", "",
					       "", &m, &b, err, sizeof(err)),
			 0);
	assert_int_equal(m.n, 3);
	for (uint32_t i = 0; i < 3; i++)
		assert_true(m.m[i].voter);
	assert_int_equal(m.m[1].id, server_name_id("n2"));
	assert_string_equal(book_find(&b, server_name_id("n3"))->peer, "[::1]:3");
	assert_string_equal(book_find(&b, server_name_id("n1"))->client, "");
	/* The same members in another order: the same ids. */
	assert_int_equal(image_initial_members("n3=[::1]:3,n1=127.0.0.1:1,n2=127.0.0.2:2", "n1", "",
					       "", &m2, &b2, err, sizeof(err)),
			 0);
	assert_int_equal(m2.n, 3);
	assert_int_equal(m2.m[1].id, m.m[0].id);
	/* No list: this member alone, at its own addresses. */
	assert_int_equal(
	    image_initial_members(NULL, "solo", "10.0.0.1:2380", "", &m, &b, err, sizeof(err)), 0);
	assert_int_equal(m.n, 1);
	assert_int_equal(m.m[0].id, server_name_id("solo"));
	assert_string_equal(book_find(&b, m.m[0].id)->peer, "10.0.0.1:2380");
}

static void expect_bad(const char *ic, const char *self, const char *what)
{
	struct raft_members m;
	struct book b;
	char err[256] = "";

	assert_int_equal(image_initial_members(ic, self, "", "", &m, &b, err, sizeof(err)),
			 QFS_EINVAL);
	if (!strstr(err, what))
		fail_msg("\"%s\" lacks \"%s\"", err, what);
}

static void test_initial_members_refused(void **state)
{
	(void)state;
	expect_bad("n1=127.0.0.1:1,n2=127.0.0.1:2", "n3", "does not name this member (n3)");
	expect_bad("n1=127.0.0.1:1,n1=127.0.0.1:2", "n1", "names n1 twice");
	expect_bad("n1=nowhere", "n1", "'n1=nowhere' is not NAME=IP:PORT");
	expect_bad("=127.0.0.1:1", "n1", "is not NAME=IP:PORT");
	expect_bad("n1", "n1", "is not NAME=IP:PORT");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_round_trip),
	    cmocka_unit_test(test_version_1),
	    cmocka_unit_test(test_damage),
	    cmocka_unit_test(test_initial_members),
	    cmocka_unit_test(test_initial_members_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
