/*
 * Metrics unit tests: counters, histogram bucketing at the boundaries, the
 * Prometheus text rendering (cumulative buckets, +Inf equal to _count),
 * gauges with labels, and adds from many threads at once.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/codec.h"
#include "../../common/metrics.h"

/* The rendered text of m, NUL-terminated (caller frees). */
static char *render(struct metrics *m)
{
	struct qbuf b;
	size_t len;
	char *text;

	qbuf_init(&b);
	metrics_render(m, &b);
	qbuf_put_u8(&b, 0);
	assert_int_equal(qbuf_error(&b), 0);
	text = (char *)qbuf_take(&b, &len);
	return text;
}

/* The value on the line that starts with `series ` (exactly). */
static double value_of(const char *text, const char *series)
{
	size_t n = strlen(series);

	for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		if (strncmp(l, series, n) == 0 && l[n] == ' ')
			return strtod(l + n + 1, NULL);
	}
	fail_msg("no series %s in:\n%s", series, text);
	return -1;
}

static void test_counters_start_at_zero_and_add(void **state)
{
	struct metrics *m;
	char *text;

	(void)state;
	assert_int_equal(metrics_create(&m), 0);
	text = render(m);
	assert_true(value_of(text, "quorumfs_server_leader_changes_seen_total") == 0);
	assert_non_null(strstr(text, "# TYPE quorumfs_server_leader_changes_seen_total counter\n"));
	assert_non_null(strstr(text, "# HELP quorumfs_server_proposals_failed_total "));
	free(text);
	metrics_add(m, M_LEADER_CHANGES, 1);
	metrics_add(m, M_LEADER_CHANGES, 2);
	metrics_add(m, M_PROPOSALS_COMMITTED, 40);
	text = render(m);
	assert_true(value_of(text, "quorumfs_server_leader_changes_seen_total") == 3);
	assert_true(value_of(text, "quorumfs_server_proposals_committed_total") == 40);
	assert_true(value_of(text, "quorumfs_server_proposals_failed_total") == 0);
	free(text);
	metrics_gauge_add(m, M_WATCHERS, 2);
	metrics_gauge_add(m, M_WATCHERS, -3);
	text = render(m);
	assert_non_null(strstr(text, "# TYPE quorumfs_watchers gauge\nquorumfs_watchers -1\n"));
	free(text);
	metrics_add(NULL, M_LEADER_CHANGES, 1); /* no metrics (tests, tools): a no-op */
	metrics_destroy(m);
}

static void test_histogram_buckets(void **state)
{
	struct metrics *m;
	char *text;

	(void)state;
	assert_int_equal(metrics_create(&m), 0);
	metrics_observe_ns(m, M_FSYNC_SECONDS, 0);
	metrics_observe_ns(m, M_FSYNC_SECONDS, 100000);  /* on the first bound: in it */
	metrics_observe_ns(m, M_FSYNC_SECONDS, 100001);  /* just past it */
	metrics_observe_ns(m, M_FSYNC_SECONDS, 3000000); /* 3 ms: le 0.0032 */
	metrics_observe_ns(m, M_FSYNC_SECONDS, UINT64_C(60) * 1000000000); /* a minute: +Inf */
	text = render(m);
	assert_non_null(strstr(text, "# TYPE quorumfs_disk_wal_fsync_duration_seconds histogram\n"));
	assert_true(value_of(text, "quorumfs_disk_wal_fsync_duration_seconds_bucket{le=\"0.0001\"}") == 2);
	assert_true(value_of(text, "quorumfs_disk_wal_fsync_duration_seconds_bucket{le=\"0.0002\"}") == 3);
	assert_true(value_of(text, "quorumfs_disk_wal_fsync_duration_seconds_bucket{le=\"0.0016\"}") == 3);
	assert_true(value_of(text, "quorumfs_disk_wal_fsync_duration_seconds_bucket{le=\"0.0032\"}") == 4);
	assert_true(value_of(text, "quorumfs_disk_wal_fsync_duration_seconds_bucket{le=\"3.2768\"}") == 4);
	assert_true(value_of(text, "quorumfs_disk_wal_fsync_duration_seconds_bucket{le=\"+Inf\"}") == 5);
	assert_true(value_of(text, "quorumfs_disk_wal_fsync_duration_seconds_count") == 5);
	assert_true(value_of(text, "quorumfs_disk_wal_fsync_duration_seconds_sum") > 60.003 &&
		    value_of(text, "quorumfs_disk_wal_fsync_duration_seconds_sum") < 60.004);
	/* other histograms untouched */
	assert_true(value_of(text, "quorumfs_server_apply_duration_seconds_count") == 0);
	free(text);
	metrics_destroy(m);
}

static void test_gauges(void **state)
{
	struct qbuf b;
	size_t len;
	char *text;

	(void)state;
	qbuf_init(&b);
	metrics_gauge(&b, "server_is_leader", "1 if this member leads.", NULL, 1);
	metrics_gauge(&b, "network_peer_connected", "Peers connected.", "peer=\"n2\"", 1);
	metrics_gauge(&b, "network_peer_connected", NULL, "peer=\"n3\"", 0);
	metrics_gauge(&b, "mvcc_db_total_size_in_bytes", "Bytes.", NULL, 12345678901.0);
	qbuf_put_u8(&b, 0);
	text = (char *)qbuf_take(&b, &len);
	assert_string_equal(text,
			    "# HELP quorumfs_server_is_leader 1 if this member leads.\n"
			    "# TYPE quorumfs_server_is_leader gauge\n"
			    "quorumfs_server_is_leader 1\n"
			    "# HELP quorumfs_network_peer_connected Peers connected.\n"
			    "# TYPE quorumfs_network_peer_connected gauge\n"
			    "quorumfs_network_peer_connected{peer=\"n2\"} 1\n"
			    "quorumfs_network_peer_connected{peer=\"n3\"} 0\n"
			    "# HELP quorumfs_mvcc_db_total_size_in_bytes Bytes.\n"
			    "# TYPE quorumfs_mvcc_db_total_size_in_bytes gauge\n"
			    "quorumfs_mvcc_db_total_size_in_bytes 12345678901\n");
	free(text);
}

#define THREADS 4
#define ADDS 100000

static void *adder(void *arg)
{
	struct metrics *m = arg;

	for (int i = 0; i < ADDS; i++) {
		metrics_add(m, M_ENTRIES_APPLIED, 1);
		metrics_observe_ns(m, M_APPLY_SECONDS, (uint64_t)i * 1000);
	}
	return NULL;
}

static void test_adds_from_many_threads(void **state)
{
	pthread_t t[THREADS];
	struct metrics *m;
	char *text;

	(void)state;
	assert_int_equal(metrics_create(&m), 0);
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, adder, m), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	text = render(m);
	assert_true(value_of(text, "quorumfs_server_entries_applied_total") == THREADS * ADDS);
	assert_true(value_of(text, "quorumfs_server_apply_duration_seconds_count") == THREADS * ADDS);
	free(text);
	metrics_destroy(m);
}

static void test_printf_into_qbuf(void **state)
{
	struct qbuf b;

	(void)state;
	qbuf_init(&b);
	qbuf_printf(&b, "%s=%d;", "a", 1);
	for (int i = 0; i < 1000; i++) /* grows past the first allocation */
		qbuf_printf(&b, "%04d", i);
	assert_int_equal(qbuf_error(&b), 0);
	assert_int_equal(b.len, 4 + 4000);
	assert_memory_equal(b.data, "a=1;0000000100020003", 20);
	assert_memory_equal(b.data + b.len - 4, "0999", 4);
	qbuf_close(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_counters_start_at_zero_and_add),
	    cmocka_unit_test(test_histogram_buckets),
	    cmocka_unit_test(test_gauges),
	    cmocka_unit_test(test_adds_from_many_threads),
	    cmocka_unit_test(test_printf_into_qbuf),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
