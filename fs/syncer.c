/*
 * The syncer thread (see syncer.h). Design, after redis' bio.c: a mutex and
 * condition protect a FIFO of queued records; the thread swaps the whole
 * queue out, writes it with one wal_write() (one fdatasync), publishes the
 * new durable index and wakes the loop through a uv_async.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../common/errors.h"
#include "../common/log.h"
#include "../store/wal.h"
#include "syncer.h"

struct batch {
	struct wal_record *recs;
	size_t n, cap;
};

struct syncer {
	uv_loop_t *loop;
	uv_async_t async;
	struct wal *wal;
	syncer_durable_cb cb;
	void *cb_arg;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	/* Guarded by mu. */
	struct batch queued;
	uint64_t compact_at; /* 0 = nothing to compact */
	uint64_t durable;
	int err;
	int stop;
};

static void batch_clear(struct batch *b)
{
	for (size_t i = 0; i < b->n; i++)
		free((void *)b->recs[i].data);
	b->n = 0;
}

static void *syncer_main(void *arg)
{
	struct syncer *s = arg;
	struct batch work = {0};

	pthread_mutex_lock(&s->mu);
	for (;;) {
		struct batch swap;
		uint64_t compact;
		int err = 0;

		while (!s->stop && s->queued.n == 0 && !s->compact_at)
			pthread_cond_wait(&s->cond, &s->mu);
		if (s->queued.n == 0 && !s->compact_at)
			break; /* stopping with nothing left */
		swap = s->queued;
		s->queued = work;
		work = swap;
		compact = s->compact_at;
		s->compact_at = 0;
		pthread_mutex_unlock(&s->mu);

		if (work.n && !s->err)
			err = wal_write(s->wal, work.recs, work.n);
		if (!err && compact && wal_compact(s->wal, compact) != 0)
			LOG_WARN("wal: could not delete segments up to index %llu",
				 (unsigned long long)compact);

		pthread_mutex_lock(&s->mu);
		if (err && !s->err) {
			LOG_ERROR("wal: write failed: %s; no further writes will be acknowledged",
				  qfs_strerror(err));
			s->err = err;
		}
		if (work.n && !s->err)
			s->durable = work.recs[work.n - 1].index;
		batch_clear(&work);
		uv_async_send(&s->async);
	}
	pthread_mutex_unlock(&s->mu);
	free(work.recs);
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

int syncer_create(uv_loop_t *loop, struct wal *wal, syncer_durable_cb cb, void *arg,
		  struct syncer **out)
{
	struct syncer *s = calloc(1, sizeof(*s));

	if (!s)
		return QFS_ENOMEM;
	s->loop = loop;
	s->wal = wal;
	s->cb = cb;
	s->cb_arg = arg;
	s->durable = wal_last_index(wal);
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
	free(s);
	return QFS_ENOMEM;
}

int syncer_append(struct syncer *s, uint64_t index, uint64_t term, const uint8_t *data,
		  size_t len)
{
	uint8_t *copy = malloc(len ? len : 1);
	struct batch *q = &s->queued;
	int rv = 0;

	if (!copy)
		return QFS_ENOMEM;
	memcpy(copy, data, len);
	pthread_mutex_lock(&s->mu);
	if (q->n == q->cap) {
		size_t cap = q->cap ? q->cap * 2 : 64;
		struct wal_record *recs = realloc(q->recs, cap * sizeof(*recs));

		if (!recs) {
			rv = QFS_ENOMEM;
			goto out;
		}
		q->recs = recs;
		q->cap = cap;
	}
	q->recs[q->n++] = (struct wal_record){
		.type = WAL_ENTRY, .index = index, .term = term, .data = copy, .len = len};
	copy = NULL;
	pthread_cond_signal(&s->cond);
out:
	pthread_mutex_unlock(&s->mu);
	free(copy);
	return rv;
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
	free(h->data);
}

void syncer_destroy(struct syncer *s)
{
	pthread_mutex_lock(&s->mu);
	s->stop = 1;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->mu);
	pthread_join(s->thread, NULL);
	batch_clear(&s->queued);
	free(s->queued.recs);
	wal_close(s->wal);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->mu);
	uv_close((uv_handle_t *)&s->async, on_closed);
}
