/*
 * Tests of the text `quorumfs txn` reads (fs/txn_text.c): every compare
 * target and operator in its long and short spellings, quoting and
 * escapes, the three blocks and where they end; and for each kind of bad
 * input one QFS_EINVAL with a message naming the line and what was
 * expected there, and nothing left allocated.
 *
 * fs/ is not part of the core archive the unit tests link, so the module
 * under test is compiled into this file.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/errors.h"
#include "../../fs/txn_text.c"

#define CLIENT_ERR_LEN 512

static int parse(const char *text, struct txn_text *t, char *err)
{
	return txn_text_parse(text, strlen(text), t, err, CLIENT_ERR_LEN);
}

static void assert_cmp(const struct client_cmp *c, uint8_t target, uint8_t op, const char *key,
		       uint64_t num, const char *value, size_t value_len)
{
	assert_int_equal(c->target, target);
	assert_int_equal(c->op, op);
	assert_string_equal(c->key, key);
	assert_int_equal(c->num, num);
	assert_int_equal(c->value_len, value_len);
	if (value)
		assert_memory_equal(c->value, value, value_len);
}

static void assert_op(const struct client_txn_op *o, uint8_t type, uint32_t flags, const char *key,
		      const char *value, size_t value_len)
{
	assert_int_equal(o->type, type);
	assert_int_equal(o->flags, flags);
	assert_string_equal(o->key, key);
	assert_int_equal(o->value_len, value_len);
	if (value)
		assert_memory_equal(o->value, value, value_len);
}

static void test_full(void **state)
{
	static const char text[] = "value(\"/a\") = \"v 1\"\n"
				   "  val( \"/a b\" )!=\"x\\\"y\\\\z\\n\\t\\r\\x00\\xfF\"  \n"
				   "version(\"/v\") == \"3\"\n"
				   "ver(/v) > 18446744073709551615\n"
				   "create(\"/lock\") = \"0\"\n"
				   "c(\"/c\") < 5\n"
				   "mod(\"/m\")>\"12\"\r\n"
				   "m(\"/m\") != 0\n"
				   "\t \r\n"
				   "put /lock \"owner 1\"\n"
				   "put \"/sp ace\" bare\n"
				   "del /old\n"
				   "del   --prefix   \"/tree\"\n"
				   "\n"
				   "put /lost \"\"\n"
				   "\n"
				   "\n"
				   "   \n";
	char err[CLIENT_ERR_LEN];
	struct txn_text t;

	(void)state;
	assert_int_equal(txn_text_parse(text, sizeof(text) - 1, &t, err, sizeof(err)), 0);
	assert_int_equal(t.ncmps, 8);
	assert_cmp(&t.cmps[0], CLIENT_CMP_VALUE, CLIENT_CMP_EQ, "/a", 0, "v 1", 3);
	assert_cmp(&t.cmps[1], CLIENT_CMP_VALUE, CLIENT_CMP_NE, "/a b", 0, "x\"y\\z\n\t\r\0\xff",
		   10);
	assert_cmp(&t.cmps[2], CLIENT_CMP_VERSION, CLIENT_CMP_EQ, "/v", 3, NULL, 0);
	assert_cmp(&t.cmps[3], CLIENT_CMP_VERSION, CLIENT_CMP_GT, "/v", UINT64_MAX, NULL, 0);
	assert_cmp(&t.cmps[4], CLIENT_CMP_CREATE, CLIENT_CMP_EQ, "/lock", 0, NULL, 0);
	assert_cmp(&t.cmps[5], CLIENT_CMP_CREATE, CLIENT_CMP_LT, "/c", 5, NULL, 0);
	assert_cmp(&t.cmps[6], CLIENT_CMP_MOD, CLIENT_CMP_GT, "/m", 12, NULL, 0);
	assert_cmp(&t.cmps[7], CLIENT_CMP_MOD, CLIENT_CMP_NE, "/m", 0, NULL, 0);
	assert_int_equal(t.nops[0], 4);
	assert_op(&t.ops[0][0], CLIENT_TXN_PUT, 0, "/lock", "owner 1", 7);
	assert_op(&t.ops[0][1], CLIENT_TXN_PUT, 0, "/sp ace", "bare", 4);
	assert_op(&t.ops[0][2], CLIENT_TXN_DEL, 0, "/old", NULL, 0);
	assert_op(&t.ops[0][3], CLIENT_TXN_DEL, CLIENT_DEL_PREFIX, "/tree", NULL, 0);
	assert_int_equal(t.nops[1], 1);
	assert_op(&t.ops[1][0], CLIENT_TXN_PUT, 0, "/lost", "", 0);
	txn_text_free(&t);
	txn_text_free(&t); /* twice is fine */
}

/* Where blocks end: a blank line each, or the end of the input. */
static void test_blocks(void **state)
{
	char err[CLIENT_ERR_LEN];
	struct txn_text t;

	(void)state;
	assert_int_equal(txn_text_parse(NULL, 0, &t, err, sizeof(err)), 0);
	assert_int_equal(t.ncmps + t.nops[0] + t.nops[1], 0);
	txn_text_free(&t);
	/* No trailing newline; the compares alone. */
	assert_int_equal(parse("mod(\"/m\") > \"1\"", &t, err), 0);
	assert_int_equal(t.ncmps, 1);
	txn_text_free(&t);
	/* No compares: the success branch always runs. */
	assert_int_equal(parse("\nput /a 1\n", &t, err), 0);
	assert_int_equal(t.ncmps, 0);
	assert_int_equal(t.nops[0], 1);
	assert_int_equal(t.nops[1], 0);
	txn_text_free(&t);
	/* Two blank lines: an empty success branch, then the failure one. */
	assert_int_equal(parse("c(/l) = 0\n\n\ndel /x", &t, err), 0);
	assert_int_equal(t.nops[0], 0);
	assert_int_equal(t.nops[1], 1);
	txn_text_free(&t);
	/* Exactly the bound of compares and of requests. */
	{
		size_t cap = 64 * 3 * (CLIENT_PROTO_TXN_MAX + 1);
		char *big = malloc(cap);
		size_t n = 0;

		assert_non_null(big);
		for (int i = 0; i < CLIENT_PROTO_TXN_MAX; i++)
			n += (size_t)snprintf(big + n, cap - n, "version(/k%d) = 0\n", i);
		n += (size_t)snprintf(big + n, cap - n, "\n");
		for (int k = 0; k < 2; k++) {
			for (int i = 0; i < CLIENT_PROTO_TXN_MAX; i++)
				n += (size_t)snprintf(big + n, cap - n, "put /k%d v\n", i);
			n += (size_t)snprintf(big + n, cap - n, "\n");
		}
		assert_int_equal(txn_text_parse(big, n, &t, err, sizeof(err)), 0);
		assert_int_equal(t.ncmps, CLIENT_PROTO_TXN_MAX);
		assert_int_equal(t.nops[0], CLIENT_PROTO_TXN_MAX);
		assert_int_equal(t.nops[1], CLIENT_PROTO_TXN_MAX);
		txn_text_free(&t);
		free(big);
	}
}

/* text fails: QFS_EINVAL, the message starts "line N: " and holds want. */
static void assert_fails(const char *text, size_t len, unsigned line, const char *want)
{
	char err[CLIENT_ERR_LEN], prefix[32];
	struct txn_text t;

	assert_int_equal(txn_text_parse(text, len, &t, err, sizeof(err)), QFS_EINVAL);
	snprintf(prefix, sizeof(prefix), "line %u: ", line);
	if (strncmp(err, prefix, strlen(prefix)) != 0 || !strstr(err, want))
		fail_msg("for %s: got \"%s\", want \"%s...%s\"", text, err, prefix, want);
	assert_null(strchr(err, '\n'));
	assert_null(t.cmps);
	assert_null(t.ops[0]);
	assert_null(t.arena_);
}

#define FAILS(text, line, want) assert_fails(text, sizeof(text) - 1, line, want)

static void test_errors(void **state)
{
	(void)state;
	/* Quotes and escapes. */
	FAILS("\nput /x \"abc\n", 2, "unterminated quote in a value");
	FAILS("value(\"/k) = \"v\"\n", 1, "expected ')'");
	FAILS("value(\"/k", 1, "unterminated quote in a key");
	FAILS("\nput /x \"ab\\", 2, "unterminated quote");
	FAILS("\nput /x \"a\\qb\"", 2, "unknown escape '\\q'");
	FAILS("\nput /x \"a\\x4\"", 2, "two hex digits");
	FAILS("\nput \"/a\\x00b\" v", 2, "NUL");
	FAILS("\nput /a \"v\"\n\xff\0", 3, "NUL byte");
	/* Compares. */
	FAILS("lease(\"/k\") = \"1\"\n", 1, "lease compares are not supported");
	FAILS("foo(\"/k\") = \"1\"\n", 1, "unknown compare 'foo'");
	FAILS("put /k v\n", 1, "unknown compare 'put'");
	FAILS("\"/k\" = 1\n", 1, "expected a compare");
	FAILS("mod \"/k\" = 1\n", 1, "expected '(' after mod");
	FAILS("mod(\"/k\" = 1\n", 1, "expected ')'");
	FAILS("mod(\"/k\") >= 1\n", 1, "unknown compare operator '>='");
	FAILS("mod(\"/k\") 1\n", 1, "expected a compare operator");
	FAILS("mod(\"/k\") =\n", 1, "expected a value to compare with");
	FAILS("mod(\"/k\") = \"x1\"\n", 1, "mod compares with a number");
	FAILS("ver(\"/k\") = \"\"\n", 1, "version compares with a number");
	FAILS("c(\"/k\") = 18446744073709551616\n", 1, "create compares with a number");
	FAILS("mod(\"/k\") = 1 2\n", 1, "end of the line after the compare");
	FAILS("value(k) = 1\n", 1, "keys are absolute paths");
	/* Requests. */
	FAILS("\nget /k\n", 2, "get is not supported in a txn");
	FAILS("\n\nget /k\n", 3, "get is not supported in a txn");
	FAILS("\nset /k v\n", 2, "unknown request 'set'");
	FAILS("\n\"put\" /k v\n", 2, "expected a request");
	FAILS("\nput /k\n", 2, "expected a value");
	FAILS("\nput /k a b\n", 2, "quote a value with spaces");
	FAILS("\nput --lease=1 /k v\n", 2, "put takes no options");
	FAILS("\ndel --recursive /k\n", 2, "unknown option '--recursive'");
	FAILS("\ndel /k /j\n", 2, "end of the line after the key");
	FAILS("\ndel\n", 2, "expected a key");
	FAILS("\nput k v\n", 2, "keys are absolute paths");
	/* Blocks. */
	FAILS("\nput /a 1\n\nput /b 2\n\nput /c 3\n", 6, "text after the failure requests");
	{
		size_t cap = 5000 + STORE_KEY_MAX;
		char *big = malloc(cap);
		size_t n = 0;

		assert_non_null(big);
		n += (size_t)snprintf(big + n, cap - n, "\nput /");
		memset(big + n, 'k', STORE_KEY_MAX);
		n += STORE_KEY_MAX;
		n += (size_t)snprintf(big + n, cap - n, " v\n");
		assert_fails(big, n, 2, "key longer than 4096 bytes");
		free(big);
	}
}

/* One past the bound in each block, and the line that went past it. */
static void test_too_many(void **state)
{
	size_t cap = 64 * 3 * (CLIENT_PROTO_TXN_MAX + 2);
	char *big = malloc(cap);
	size_t n;

	(void)state;
	assert_non_null(big);
	for (int block = 0; block < 3; block++) {
		n = 0;
		for (int b = 0; b < block; b++)
			n += (size_t)snprintf(big + n, cap - n, "\n");
		for (int i = 0; i <= CLIENT_PROTO_TXN_MAX; i++)
			n += (size_t)snprintf(big + n, cap - n,
					      block ? "del /k%d\n" : "mod(/k%d) > 1\n", i);
		assert_fails(big, n, (unsigned)(block + CLIENT_PROTO_TXN_MAX + 1),
			     block == 0	  ? "more than 128 compares"
			     : block == 1 ? "more than 128 success requests"
					  : "more than 128 failure requests");
	}
	free(big);
}

/* Mangled input never reads or writes outside the text and the arena
 * (ASan checks), and either parses or is refused with a line number. */
static void test_garbage(void **state)
{
	static const char seed[] = "value(\"/a b\") = \"v\\x41\"\nmod(/m) > 3\n\nput /k \"q\\\"\"\n"
				   "del --prefix /d\n\nput /x y\n";
	static const char alphabet[] = "\"\\()=!<>/ \n\tx0-";
	uint64_t rng = 0x9e3779b97f4a7c15ULL;
	char err[CLIENT_ERR_LEN];

	(void)state;
	for (int round = 0; round < 20000; round++) {
		size_t len = sizeof(seed) - 1;
		char *text = malloc(len);
		struct txn_text t;
		int rv;

		assert_non_null(text);
		memcpy(text, seed, len);
		for (int k = 0; k < 4; k++) {
			rng ^= rng << 13;
			rng ^= rng >> 7;
			rng ^= rng << 17;
			text[rng % len] = (rng >> 40) % 3
					      ? alphabet[(rng >> 20) % (sizeof(alphabet) - 1)]
					      : (char)(rng >> 32);
		}
		rng ^= rng << 13;
		len -= rng % 4 == 0 ? (rng >> 8) % len : 0;
		rv = txn_text_parse(text, len, &t, err, sizeof(err));
		if (rv)
			assert_int_equal(strncmp(err, "line ", 5), 0);
		else
			txn_text_free(&t);
		assert_true(rv == 0 || rv == QFS_EINVAL);
		free(text);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_full),    cmocka_unit_test(test_blocks),
	    cmocka_unit_test(test_errors),  cmocka_unit_test(test_too_many),
	    cmocka_unit_test(test_garbage),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
