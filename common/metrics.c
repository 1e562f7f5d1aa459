/* Counters and histograms updated with relaxed atomic adds; see metrics.h. */
#include <inttypes.h>
#include <stdlib.h>
#include <time.h>

#include "errors.h"
#include "metrics.h"

enum metric_kind { COUNTER, GAUGE, HISTOGRAM };

static const struct {
	enum metric_kind kind;
	const char *name, *help;
} table[METRICS_COUNT] = {
#define QFS_METRIC_ROW(id, kind, name, help) [id] = {kind, name, help},
	QFS_METRIC_TABLE(QFS_METRIC_ROW)
#undef QFS_METRIC_ROW
};

#define BUCKET0_NS 100000ULL /* the first bucket's upper bound: 100 µs */

struct series {
	uint64_t count;                    /* a counter's value; a histogram's count */
	uint64_t sum_ns;                   /* histograms */
	uint64_t buckets[METRICS_BUCKETS]; /* histograms, not cumulative; last = +Inf */
};

struct metrics {
	struct series s[METRICS_COUNT];
};

int metrics_create(struct metrics **out)
{
	*out = calloc(1, sizeof(**out));
	return *out ? 0 : QFS_ENOMEM;
}

void metrics_destroy(struct metrics *m)
{
	free(m);
}

void metrics_add(struct metrics *m, enum metric_id id, uint64_t n)
{
	if (m)
		__atomic_fetch_add(&m->s[id].count, n, __ATOMIC_RELAXED);
}

void metrics_observe_ns(struct metrics *m, enum metric_id id, uint64_t ns)
{
	size_t b = 0;

	if (!m)
		return;
	while (b < METRICS_BUCKETS - 1 && ns > BUCKET0_NS << b)
		b++;
	__atomic_fetch_add(&m->s[id].buckets[b], 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&m->s[id].sum_ns, ns, __ATOMIC_RELAXED);
	__atomic_fetch_add(&m->s[id].count, 1, __ATOMIC_RELAXED);
}

static uint64_t load(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

/* A histogram read while others add to it: the buckets are summed into the
 * count printed, so the +Inf bucket always equals _count. */
static void render_histogram(const struct series *s, const char *name, struct qbuf *out)
{
	uint64_t cum = 0;

	for (size_t b = 0; b < METRICS_BUCKETS; b++) {
		cum += load(&s->buckets[b]);
		if (b < METRICS_BUCKETS - 1)
			qbuf_printf(out, "quorumfs_%s_bucket{le=\"%g\"} %" PRIu64 "\n", name,
				    (double)(BUCKET0_NS << b) / 1e9, cum);
		else
			qbuf_printf(out, "quorumfs_%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, cum);
	}
	qbuf_printf(out, "quorumfs_%s_sum %.9f\n", name, (double)load(&s->sum_ns) / 1e9);
	qbuf_printf(out, "quorumfs_%s_count %" PRIu64 "\n", name, cum);
}

void metrics_render(struct metrics *m, struct qbuf *out)
{
	for (size_t i = 0; i < METRICS_COUNT; i++) {
		static const char *const kinds[] = {"counter", "gauge", "histogram"};

		qbuf_printf(out, "# HELP quorumfs_%s %s\n# TYPE quorumfs_%s %s\n", table[i].name,
			    table[i].help, table[i].name, kinds[table[i].kind]);
		if (table[i].kind == COUNTER)
			qbuf_printf(out, "quorumfs_%s %" PRIu64 "\n", table[i].name,
				    load(&m->s[i].count));
		else if (table[i].kind == GAUGE)
			qbuf_printf(out, "quorumfs_%s %" PRId64 "\n", table[i].name,
				    (int64_t)load(&m->s[i].count));
		else
			render_histogram(&m->s[i], table[i].name, out);
	}
}

void metrics_gauge(struct qbuf *out, const char *name, const char *help, const char *labels,
		   double value)
{
	if (help)
		qbuf_printf(out, "# HELP quorumfs_%s %s\n# TYPE quorumfs_%s gauge\n", name, help,
			    name);
	qbuf_printf(out, "quorumfs_%s%s%s%s %.17g\n", name, labels ? "{" : "", labels ? labels : "",
		    labels ? "}" : "", value);
}

uint64_t metrics_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}
