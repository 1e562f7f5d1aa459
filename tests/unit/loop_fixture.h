/*
 * One uv loop per test for the unit tests of network code (the transport,
 * the streams): `loop`, a 5 ms tick so UV_RUN_ONCE never sleeps past a
 * deadline, WAIT_FOR(cond, ms) that fails the test instead of hanging, and
 * a teardown that fails when a test left a handle open (closing it by
 * force, leaking its memory, so the run goes on). Include after <cmocka.h>.
 */
#ifndef QFS_TEST_LOOP_FIXTURE_H
#define QFS_TEST_LOOP_FIXTURE_H

#include <stdint.h>
#include <uv.h>

static uv_loop_t loop;
static uv_timer_t tick;

static inline uint64_t now_ms(void)
{
	return uv_hrtime() / 1000000;
}

#define WAIT_FOR(cond, ms)                                                                         \
	do {                                                                                       \
		uint64_t dl_ = now_ms() + (ms);                                                    \
		while (!(cond) && now_ms() < dl_)                                                  \
			uv_run(&loop, UV_RUN_ONCE);                                                \
		assert_true(cond);                                                                 \
	} while (0)

/* Runs the loop for about ms milliseconds. */
static inline void run_for(uint64_t ms)
{
	uint64_t dl = now_ms() + ms;

	while (now_ms() < dl)
		uv_run(&loop, UV_RUN_ONCE);
}

static inline void tick_cb(uv_timer_t *h)
{
	(void)h;
}

static inline int loop_setup(void **state)
{
	(void)state;
	assert_int_equal(uv_loop_init(&loop), 0);
	uv_timer_init(&loop, &tick);
	uv_timer_start(&tick, tick_cb, 5, 5);
	return 0;
}

static inline void close_any(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

static inline int loop_teardown(void **state)
{
	uint64_t dl = now_ms() + 2000;
	int left;

	(void)state;
	uv_close((uv_handle_t *)&tick, NULL);
	while (uv_loop_alive(&loop) && now_ms() < dl)
		uv_run(&loop, UV_RUN_NOWAIT);
	left = uv_loop_alive(&loop);
	if (left) {
		uv_walk(&loop, close_any, NULL);
		uv_run(&loop, UV_RUN_DEFAULT);
	}
	assert_int_equal(uv_loop_close(&loop), 0);
	assert_false(left);
	return 0;
}

#endif
