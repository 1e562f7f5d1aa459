/*
 * A store fixture for the unit tests that apply entries: a fresh store per
 * test and helpers that encode and apply transactions at the next index,
 * stamped with the fixture's clock (f->now, which tests move by hand).
 * Include after <cmocka.h>.
 */
#ifndef QFS_TEST_STORE_FIXTURE_H
#define QFS_TEST_STORE_FIXTURE_H

#include <stdlib.h>

#include "../../common/codec.h"
#include "../../store/entry.h"
#include "../../store/store.h"

#define MS 1000000ll

struct fx {
	struct store *s;
	uint64_t index;
	int64_t now; /* time_ns stamped on the next entry */
};

static inline int setup_cfg(void **state, uint64_t quota)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct store_config cfg = {.quota_bytes = quota};

	if (!f || store_create(&cfg, &f->s))
		return -1;
	f->now = 1000 * MS;
	*state = f;
	return 0;
}

static inline int setup(void **state)
{
	return setup_cfg(state, 0);
}

static inline int teardown(void **state)
{
	struct fx *f = *state;

	store_destroy(f->s);
	free(f);
	return 0;
}

static inline void apply_entry(struct fx *f, const struct entry *e, struct store_result *res)
{
	struct qbuf b;

	f->index++;
	qbuf_init(&b);
	assert_int_equal(entry_encode(e, &b), 0);
	assert_int_equal(store_apply(f->s, f->index, b.data, b.len, res), 0);
	qbuf_close(&b);
}

static inline struct store_result apply_ops_res(struct fx *f, const struct store_op *ops,
						size_t n)
{
	struct entry e = {.type = ENTRY_TXN, .time_ns = f->now,
			  .txn = {.then_ops = ops, .nthen = n}};
	struct store_result res;

	apply_entry(f, &e, &res);
	return res;
}

static inline int apply_ops(struct fx *f, const struct store_op *ops, size_t n)
{
	return apply_ops_res(f, ops, n).err;
}

static inline int apply_op(struct fx *f, struct store_op op)
{
	return apply_ops(f, &op, 1);
}

#endif
