/*
 * The syncer thread (see syncer.h). Design, after redis' bio.c: a mutex and
 * condition protect a FIFO of queued jobs; the thread swaps the whole queue
 * out, writes the records of consecutive jobs with one wal_write() (one
 * fdatasync), publishes the highest durable seq and wakes the loop through a
 * uv_async.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../common/errors.h"
#include "../common/log.h"
#include "../common/metrics.h"
#include "../store/snapfile.h"
#include "syncer.h"

struct job {
	struct wal_record *recs; /* data owned */
	size_t n;
	uint8_t *image; /* snapshot to install first, or NULL */
	size_t image_len;
	uint64_t snap_index, snap_term;
	uint64_t seq;
	struct job *next;
};

struct syncer {
	uv_loop_t *loop;
	uv_async_t async;
	char *dir;
	struct wal *wal;
	syncer_durable_cb cb;
	void *cb_arg;
	struct metrics *metrics;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	/* Guarded by mu. */
	struct job *head, *tail;
	uint64_t compact_at; /* 0 = nothing to compact */
	uint64_t durable;    /* highest seq made durable */
	int err;
	int stop;
};

static void job_free(struct job *j)
{
	for (size_t i = 0; i < j->n; i++)
		free((void *)j->recs[i].data);
	free(j->recs);
	free(j->image);
	free(j);
}

/* Installs a leader's snapshot: the file, then the WAL marker after which
 * the log restarts. */
static int install(struct syncer *s, struct job *j)
{
	struct wal_record mark = {.type = WAL_SNAPSHOT, .index = j->snap_index, .term = j->snap_term};
	int rv = snapfile_write(s->dir, j->snap_index, j->snap_term, j->image, j->image_len, 2);

	if (rv != 0) {
		LOG_ERROR("snapshot %llu from the leader: cannot write it: %s",
			  (unsigned long long)j->snap_index, qfs_strerror(rv));
		return QFS_EIO;
	}
	return wal_write(s->wal, &mark, 1);
}

/* One group commit: the records written and fdatasync'ed, timed. */
static int commit(struct syncer *s, const struct wal_record *recs, size_t n)
{
	uint64_t t0 = metrics_now_ns();
	int rv = wal_write(s->wal, recs, n);

	metrics_observe_ns(s->metrics, M_FSYNC_SECONDS, metrics_now_ns() - t0);
	return rv;
}

/* Writes a run of jobs: records of consecutive jobs go in one wal_write. */
static int write_jobs(struct syncer *s, struct job *j)
{
	struct wal_record *all = NULL;
	size_t n = 0, cap = 0;
	int rv = 0;

	for (; j && rv == 0; j = j->next) {
		if (j->image) {
			if (n)
				rv = commit(s, all, n);
			n = 0;
			if (rv == 0)
				rv = install(s, j);
		}
		if (n + j->n > cap) {
			size_t c = (n + j->n) * 2;
			struct wal_record *grown = realloc(all, c * sizeof(*all));

			if (!grown) {
				rv = QFS_ENOMEM;
				break;
			}
			all = grown;
			cap = c;
		}
		memcpy(all + n, j->recs, j->n * sizeof(*all));
		n += j->n;
	}
	if (rv == 0 && n)
		rv = commit(s, all, n);
	free(all);
	return rv;
}

static void *syncer_main(void *arg)
{
	struct syncer *s = arg;

	pthread_mutex_lock(&s->mu);
	for (;;) {
		struct job *batch, *last;
		uint64_t compact;
		int err = 0;

		while (!s->stop && !s->head && !s->compact_at)
			pthread_cond_wait(&s->cond, &s->mu);
		if (!s->head && !s->compact_at)
			break; /* stopping with nothing left */
		batch = s->head;
		s->head = s->tail = NULL;
		compact = s->compact_at;
		s->compact_at = 0;
		pthread_mutex_unlock(&s->mu);

		if (batch && !s->err)
			err = write_jobs(s, batch);
		if (!err && compact && wal_compact(s->wal, compact) != 0)
			LOG_WARN("wal: could not delete segments up to index %llu",
				 (unsigned long long)compact);

		pthread_mutex_lock(&s->mu);
		if (err && !s->err) {
			LOG_ERROR("wal: write failed: %s; no further writes will be acknowledged",
				  qfs_strerror(err));
			s->err = err;
		}
		for (last = batch; last && last->next; last = last->next)
			;
		if (last && !s->err)
			s->durable = last->seq;
		while (batch) {
			struct job *next = batch->next;

			job_free(batch);
			batch = next;
		}
		uv_async_send(&s->async);
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

static void on_async(uv_async_t *h)
{
	struct syncer *s = h->data;
	uint64_t durable;
	int err;

	pthread_mutex_lock(&s->mu);
	durable = s->durable;
	err = s->err;
	pthread_mutex_unlock(&s->mu);
	s->cb(s->cb_arg, durable, err);
}

int syncer_create(uv_loop_t *loop, const char *dir, struct wal *wal, struct metrics *metrics,
		  syncer_durable_cb cb, void *arg, struct syncer **out)
{
	struct syncer *s = calloc(1, sizeof(*s));

	if (!s || !(s->dir = strdup(dir)))
		goto err_alloc;
	s->loop = loop;
	s->wal = wal;
	s->cb = cb;
	s->cb_arg = arg;
	s->metrics = metrics;
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cond, NULL);
	if (uv_async_init(loop, &s->async, on_async) != 0)
		goto err_sync;
	s->async.data = s;
	if (pthread_create(&s->thread, NULL, syncer_main, s) != 0)
		goto err_async;
	*out = s;
	return 0;

err_async:
	uv_close((uv_handle_t *)&s->async, NULL);
err_sync:
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->mu);
err_alloc:
	if (s)
		free(s->dir);
	free(s);
	return QFS_ENOMEM;
}

int syncer_write(struct syncer *s, const struct wal_record *recs, size_t n,
		 const struct syncer_snapshot *snap, uint64_t seq)
{
	struct job *j = calloc(1, sizeof(*j));

	if (!j || (n && !(j->recs = calloc(n, sizeof(*recs)))))
		goto err;
	for (size_t i = 0; i < n; i++) {
		uint8_t *copy = malloc(recs[i].len ? recs[i].len : 1);

		if (!copy)
			goto err;
		if (recs[i].len)
			memcpy(copy, recs[i].data, recs[i].len);
		j->recs[i] = recs[i];
		j->recs[i].data = copy;
		j->n = i + 1;
	}
	if (snap) {
		if (!(j->image = malloc(snap->len ? snap->len : 1)))
			goto err;
		memcpy(j->image, snap->image, snap->len);
		j->image_len = snap->len;
		j->snap_index = snap->index;
		j->snap_term = snap->term;
	}
	j->seq = seq;
	pthread_mutex_lock(&s->mu);
	if (s->tail)
		s->tail->next = j;
	else
		s->head = j;
	s->tail = j;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->mu);
	return 0;
err:
	if (j)
		job_free(j);
	return QFS_ENOMEM;
}

void syncer_compact(struct syncer *s, uint64_t index)
{
	pthread_mutex_lock(&s->mu);
	s->compact_at = index;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->mu);
}

static void on_closed(uv_handle_t *h)
{
	struct syncer *s = h->data;

	free(s->dir);
	free(s);
}

void syncer_destroy(struct syncer *s)
{
	pthread_mutex_lock(&s->mu);
	s->stop = 1;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->mu);
	pthread_join(s->thread, NULL);
	while (s->head) {
		struct job *next = s->head->next;

		job_free(s->head);
		s->head = next;
	}
	wal_close(s->wal);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->mu);
	uv_close((uv_handle_t *)&s->async, on_closed);
}
