/*
 * Users and roles (fs/auth.c): changes and their refusals, the root rules,
 * prefix coverage by path components ("/a" does not cover "/ab"), checks
 * and their messages, the encoding round trip, and untrusted bytes refused
 * (every cut, bad names, order, references, counts) without leaks.
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
#include "../../fs/auth.c"

static int change(struct auth *a, uint8_t op, const char *name, const char *arg, uint8_t perm)
{
	struct auth_change ch = {op, name, arg, perm};
	char msg[256];
	int check = auth_change_check(a, &ch, msg, sizeof(msg));
	int rv = auth_apply(a, &ch);

	assert_int_equal(rv, check); /* the check says what applying does */
	if (rv)
		assert_true(msg[0] != 0);
	return rv;
}

#define OK(...) assert_int_equal(change(__VA_ARGS__), 0)

/* root (role root), alice (ro: read /config), bob (app: readwrite
 * /config/app, read /), carol (no roles). */
static void sample(struct auth *a)
{
	auth_init(a);
	OK(a, AUTH_USER_ADD, "root", "", 0);
	OK(a, AUTH_USER_GRANT, "root", "root", 0);
	OK(a, AUTH_ROLE_ADD, "ro", "", 0);
	OK(a, AUTH_ROLE_GRANT, "ro", "/config", AUTH_READ);
	OK(a, AUTH_ROLE_ADD, "app", "", 0);
	OK(a, AUTH_ROLE_GRANT, "app", "/config/app", AUTH_READWRITE);
	OK(a, AUTH_USER_ADD, "alice", "", 0);
	OK(a, AUTH_USER_GRANT, "alice", "ro", 0);
	OK(a, AUTH_USER_ADD, "bob", "", 0);
	OK(a, AUTH_USER_GRANT, "bob", "app", 0);
	OK(a, AUTH_USER_GRANT, "bob", "ro", 0);
	OK(a, AUTH_USER_ADD, "carol", "", 0);
}

static int check(const struct auth *a, const char *user, const char *key, bool sub, uint8_t want,
		 char *msg)
{
	return auth_check(a, user, key, sub, want, msg, 512);
}

static void test_covers(void **state)
{
	(void)state;
	assert_true(auth_covers("/a", "/a"));
	assert_true(auth_covers("/a", "/a/b"));
	assert_true(auth_covers("/a", "/a/b/c"));
	assert_false(auth_covers("/a", "/ab"));
	assert_false(auth_covers("/a", "/ab/c"));
	assert_false(auth_covers("/a/b", "/a"));
	assert_false(auth_covers("/a", "/"));
	assert_true(auth_covers("/", "/"));
	assert_true(auth_covers("/", "/anything/at/all"));
}

static void test_grants(void **state)
{
	struct auth a;
	char msg[512];

	(void)state;
	sample(&a);
	/* alice: read under /config only. */
	assert_int_equal(check(&a, "alice", "/config", false, AUTH_READ, msg), 0);
	assert_int_equal(check(&a, "alice", "/config/db/host", false, AUTH_READ, msg), 0);
	assert_int_equal(check(&a, "alice", "/config", true, AUTH_READ, msg), 0);
	assert_int_equal(check(&a, "alice", "/configx", false, AUTH_READ, msg), QFS_EDENIED);
	assert_non_null(strstr(msg, "user alice may not read /configx"));
	assert_int_equal(check(&a, "alice", "/", true, AUTH_READ, msg), QFS_EDENIED);
	assert_int_equal(check(&a, "alice", "/config/db/host", false, AUTH_READWRITE, msg),
			 QFS_EDENIED);
	assert_string_equal(
	    msg, "user alice may not write /config/db/host (role ro grants read on /config)");
	/* bob: readwrite under /config/app, read the rest of /config. */
	assert_int_equal(check(&a, "bob", "/config/app/x", false, AUTH_READWRITE, msg), 0);
	assert_int_equal(check(&a, "bob", "/config/app", true, AUTH_READWRITE, msg), 0);
	assert_int_equal(check(&a, "bob", "/config/apple", false, AUTH_READWRITE, msg),
			 QFS_EDENIED);
	assert_int_equal(check(&a, "bob", "/config", true, AUTH_READWRITE, msg), QFS_EDENIED);
	assert_non_null(strstr(msg, "and what is under it"));
	assert_int_equal(check(&a, "bob", "/other", false, AUTH_READWRITE, msg), QFS_EDENIED);
	assert_non_null(strstr(msg, "no role of the user grants readwrite"));
	/* carol has no roles; dave does not exist; root may do anything. */
	assert_int_equal(check(&a, "carol", "/config", false, AUTH_READ, msg), QFS_EDENIED);
	assert_non_null(strstr(msg, "has no roles"));
	assert_int_equal(check(&a, "dave", "/config", false, AUTH_READ, msg), QFS_EDENIED);
	assert_non_null(strstr(msg, "user dave does not exist"));
	assert_int_equal(check(&a, "root", "/", true, AUTH_READWRITE, msg), 0);
	assert_true(auth_is_root(&a, "root"));
	assert_false(auth_is_root(&a, "bob"));
	/* A grant on "/" covers everything; granting again changes the perm. */
	OK(&a, AUTH_ROLE_GRANT, "ro", "/", AUTH_READ);
	assert_int_equal(check(&a, "alice", "/x/y", false, AUTH_READ, msg), 0);
	OK(&a, AUTH_ROLE_GRANT, "ro", "/", AUTH_READWRITE);
	assert_int_equal(check(&a, "alice", "/x/y", false, AUTH_READWRITE, msg), 0);
	assert_int_equal(auth_role_find(&a, "ro")->nperms, 2);
	OK(&a, AUTH_ROLE_REVOKE, "ro", "/", 0);
	assert_int_equal(check(&a, "alice", "/x/y", false, AUTH_READ, msg), QFS_EDENIED);
	/* Revoking a role takes its grants away. */
	OK(&a, AUTH_USER_REVOKE, "bob", "app", 0);
	assert_int_equal(check(&a, "bob", "/config/app/x", false, AUTH_READWRITE, msg),
			 QFS_EDENIED);
	assert_int_equal(check(&a, "bob", "/config/app/x", false, AUTH_READ, msg), 0);
	auth_close(&a);
}

static void test_changes_refused(void **state)
{
	struct auth a;

	(void)state;
	sample(&a);
	assert_int_equal(change(&a, AUTH_USER_ADD, "alice", "", 0), QFS_EEXIST);
	assert_int_equal(change(&a, AUTH_USER_ADD, "", "", 0), QFS_EINVAL);
	assert_int_equal(change(&a, AUTH_USER_ADD, "tab\there", "", 0), QFS_EINVAL);
	assert_int_equal(change(&a, AUTH_USER_ADD, " lead", "", 0), QFS_EINVAL);
	assert_int_equal(change(&a, AUTH_USER_ADD,
				"01234567890123456789012345678901234567890123456789012345678901234",
				"", 0),
			 QFS_EINVAL);
	assert_int_equal(change(&a, AUTH_USER_DELETE, "dave", "", 0), QFS_ENOENT);
	assert_int_equal(change(&a, AUTH_USER_GRANT, "alice", "nope", 0), QFS_ENOENT);
	assert_int_equal(change(&a, AUTH_USER_GRANT, "dave", "ro", 0), QFS_ENOENT);
	assert_int_equal(change(&a, AUTH_USER_GRANT, "alice", "ro", 0), QFS_EEXIST);
	assert_int_equal(change(&a, AUTH_USER_REVOKE, "alice", "app", 0), QFS_ENOENT);
	assert_int_equal(change(&a, AUTH_ROLE_ADD, "ro", "", 0), QFS_EEXIST);
	assert_int_equal(change(&a, AUTH_ROLE_ADD, "root", "", 0), QFS_EPERM);
	assert_int_equal(change(&a, AUTH_ROLE_DELETE, "root", "", 0), QFS_EPERM);
	assert_int_equal(change(&a, AUTH_ROLE_GRANT, "root", "/", AUTH_READ), QFS_EPERM);
	assert_int_equal(change(&a, AUTH_ROLE_GRANT, "ro", "relative", AUTH_READ), QFS_EINVAL);
	assert_int_equal(change(&a, AUTH_ROLE_GRANT, "ro", "/a/", AUTH_READ), QFS_EINVAL);
	assert_int_equal(change(&a, AUTH_ROLE_GRANT, "ro", "/a/../b", AUTH_READ), QFS_EINVAL);
	assert_int_equal(change(&a, AUTH_ROLE_GRANT, "ro", "/a", 3), QFS_EINVAL);
	assert_int_equal(change(&a, AUTH_ROLE_GRANT, "nope", "/a", AUTH_READ), QFS_ENOENT);
	assert_int_equal(change(&a, AUTH_ROLE_REVOKE, "ro", "/nothing", 0), QFS_ENOENT);
	assert_int_equal(change(&a, 0, "", "", 0), QFS_EINVAL);
	assert_int_equal(change(&a, AUTH_OP_MAX_ + 1, "", "", 0), QFS_EINVAL);
	/* Bounds: a user's roles. */
	for (int i = 0; i < AUTH_USER_ROLES_MAX; i++) {
		char name[16];

		snprintf(name, sizeof(name), "r%02d", i);
		OK(&a, AUTH_ROLE_ADD, name, "", 0);
		OK(&a, AUTH_USER_GRANT, "carol", name, 0);
	}
	assert_int_equal(change(&a, AUTH_USER_GRANT, "carol", "ro", 0), QFS_ENOSPC);
	/* Deleting a role revokes it from its users. */
	OK(&a, AUTH_ROLE_DELETE, "ro", "", 0);
	assert_int_equal(auth_user_find(&a, "alice")->nroles, 0);
	assert_null(auth_role_find(&a, "ro"));
	auth_close(&a);
}

static void test_root_rules(void **state)
{
	struct auth a;

	(void)state;
	auth_init(&a);
	/* No root user with role root: auth stays off. */
	assert_int_equal(change(&a, AUTH_ENABLE, "", "", 0), QFS_EPERM);
	OK(&a, AUTH_USER_ADD, "root", "", 0);
	assert_int_equal(change(&a, AUTH_ENABLE, "", "", 0), QFS_EPERM);
	OK(&a, AUTH_USER_GRANT, "root", "root", 0);
	OK(&a, AUTH_ENABLE, "", "", 0);
	assert_true(a.enabled);
	OK(&a, AUTH_ENABLE, "", "", 0); /* again: nothing to do */
	/* While enabled, root keeps its user and role. */
	assert_int_equal(change(&a, AUTH_USER_DELETE, "root", "", 0), QFS_EPERM);
	assert_int_equal(change(&a, AUTH_USER_REVOKE, "root", "root", 0), QFS_EPERM);
	OK(&a, AUTH_DISABLE, "", "", 0);
	assert_false(a.enabled);
	OK(&a, AUTH_USER_REVOKE, "root", "root", 0);
	OK(&a, AUTH_USER_DELETE, "root", "", 0);
	assert_int_equal(a.nusers, 0);
	auth_close(&a);
}

static void test_sorted(void **state)
{
	struct auth a;

	(void)state;
	auth_init(&a);
	OK(&a, AUTH_USER_ADD, "m", "", 0);
	OK(&a, AUTH_USER_ADD, "z", "", 0);
	OK(&a, AUTH_USER_ADD, "a", "", 0);
	assert_string_equal(a.users[0].name, "a");
	assert_string_equal(a.users[1].name, "m");
	assert_string_equal(a.users[2].name, "z");
	OK(&a, AUTH_USER_DELETE, "m", "", 0);
	assert_string_equal(a.users[1].name, "z");
	assert_non_null(auth_user_find(&a, "z"));
	assert_null(auth_user_find(&a, "m"));
	auth_close(&a);
}

static void encode(const struct auth *a, struct qbuf *b)
{
	qbuf_init(b);
	auth_encode(a, b);
	assert_int_equal(qbuf_error(b), 0);
}

static int decode(struct auth *out, const uint8_t *p, size_t len)
{
	struct qreader r;
	int rv;

	qreader_init(&r, p, len);
	rv = auth_decode(out, &r);
	if (rv == 0 && r.left) /* the caller's bytes after it: none here */
		rv = QFS_EMSG;
	return rv;
}

static void test_round_trip(void **state)
{
	struct auth a, b;
	struct qbuf q, q2;

	(void)state;
	sample(&a);
	OK(&a, AUTH_ENABLE, "", "", 0);
	encode(&a, &q);
	auth_init(&b);
	assert_int_equal(decode(&b, q.data, q.len), 0);
	encode(&b, &q2);
	assert_int_equal(q.len, q2.len);
	assert_memory_equal(q.data, q2.data, q.len);
	assert_true(b.enabled);
	assert_int_equal(b.nusers, 4);
	assert_int_equal(b.nroles, 2);
	assert_int_equal(auth_role_find(&b, "app")->perms[0].perm, AUTH_READWRITE);
	qbuf_close(&q2);
	/* An empty state too. */
	auth_close(&b);
	encode(&b, &q2);
	assert_int_equal(decode(&b, q2.data, q2.len), 0);
	assert_int_equal(b.nusers, 0);
	qbuf_close(&q2);
	auth_close(&a);
	auth_close(&b);
	qbuf_close(&q);
}

/* Bytes that must be refused leave the target as it was. */
static void refused(const struct qbuf *q)
{
	struct auth t;

	sample(&t);
	assert_int_equal(decode(&t, q->data, q->len), QFS_EMSG);
	assert_int_equal(t.nusers, 4);
	assert_false(t.enabled);
	auth_close(&t);
}

static void user(struct qbuf *q, const char *name, uint32_t nroles, const char **roles)
{
	qbuf_put_bytes(q, name, strlen(name));
	qbuf_put_u32(q, nroles);
	for (uint32_t i = 0; i < nroles; i++)
		qbuf_put_bytes(q, roles[i], strlen(roles[i]));
}

static void test_malformed(void **state)
{
	const char *ro[] = {"ro"}, *twice[] = {"ro", "ro"}, *root[] = {"root"};
	struct auth a;
	struct qbuf q;

	(void)state;
	sample(&a);
	encode(&a, &q);
	/* Every cut. */
	for (size_t cut = 0; cut < q.len; cut++) {
		struct qbuf c = {.data = q.data, .len = cut};

		refused(&c);
	}
	/* enabled is 0 or 1. */
	q.data[0] = 2;
	refused(&q);
	qbuf_close(&q);

	/* Users out of order (a duplicate is one). */
	qbuf_init(&q);
	qbuf_put_u8(&q, 0);
	qbuf_put_u32(&q, 2);
	user(&q, "b", 0, NULL);
	user(&q, "a", 0, NULL);
	qbuf_put_u32(&q, 0);
	refused(&q);
	qbuf_close(&q);
	/* A user's role that does not exist; a role twice. */
	qbuf_init(&q);
	qbuf_put_u8(&q, 0);
	qbuf_put_u32(&q, 1);
	user(&q, "a", 1, ro);
	qbuf_put_u32(&q, 0);
	refused(&q);
	qbuf_close(&q);
	qbuf_init(&q);
	qbuf_put_u8(&q, 0);
	qbuf_put_u32(&q, 1);
	user(&q, "a", 2, twice);
	qbuf_put_u32(&q, 1);
	qbuf_put_bytes(&q, "ro", 2);
	qbuf_put_u32(&q, 0);
	refused(&q);
	qbuf_close(&q);
	/* Enabled without a root user; a name with a NUL; a bad prefix; a
	 * role named root; a huge count with few bytes. */
	qbuf_init(&q);
	qbuf_put_u8(&q, 1);
	qbuf_put_u32(&q, 1);
	user(&q, "a", 1, root);
	qbuf_put_u32(&q, 0);
	refused(&q);
	qbuf_close(&q);
	qbuf_init(&q);
	qbuf_put_u8(&q, 0);
	qbuf_put_u32(&q, 1);
	qbuf_put_bytes(&q, "a\0b", 3);
	qbuf_put_u32(&q, 0);
	qbuf_put_u32(&q, 0);
	refused(&q);
	qbuf_close(&q);
	qbuf_init(&q);
	qbuf_put_u8(&q, 0);
	qbuf_put_u32(&q, 0);
	qbuf_put_u32(&q, 1);
	qbuf_put_bytes(&q, "ro", 2);
	qbuf_put_u32(&q, 1);
	qbuf_put_u8(&q, AUTH_READ);
	qbuf_put_bytes(&q, "/a/", 3);
	refused(&q);
	qbuf_close(&q);
	qbuf_init(&q);
	qbuf_put_u8(&q, 0);
	qbuf_put_u32(&q, 0);
	qbuf_put_u32(&q, 1);
	qbuf_put_bytes(&q, "root", 4);
	qbuf_put_u32(&q, 0);
	refused(&q);
	qbuf_close(&q);
	qbuf_init(&q);
	qbuf_put_u8(&q, 0);
	qbuf_put_u32(&q, AUTH_USERS_MAX);
	qbuf_put_u32(&q, 0);
	refused(&q);
	qbuf_close(&q);
	auth_close(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_covers),	    cmocka_unit_test(test_grants),
	    cmocka_unit_test(test_changes_refused), cmocka_unit_test(test_root_rules),
	    cmocka_unit_test(test_sorted),	    cmocka_unit_test(test_round_trip),
	    cmocka_unit_test(test_malformed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
