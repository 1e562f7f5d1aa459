/*
 * The member's loop thread: proposal queue, single-member sequencer, apply,
 * snapshots, automatic compaction, signals and clean stop. See server.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "../common/errors.h"
#include "../common/log.h"
#include "../store/snapfile.h"
#include "../store/wal.h"
#include "server.h"
#include "syncer.h"

#define TERM 1 /* the single-member sequencer never changes term */

struct proposal {
	uint8_t *data;
	size_t len;
	uint64_t index;
	server_done_cb cb;
	void *arg;
	struct proposal *next;
};

struct fifo {
	struct proposal *head, *tail;
};

struct server {
	const struct config *cfg;
	uint64_t member_id;
	int lock_fd;
	uv_loop_t loop;
	uv_async_t wake;
	uv_signal_t sigterm, sigint;
	struct store *store;
	pthread_rwlock_t lock;
	struct syncer *syncer;

	pthread_mutex_t mu; /* guards submitted, stopping, next_request */
	struct fifo submitted;
	int stopping;
	uint64_t next_request;

	struct fifo inflight; /* loop thread: waiting for durability, log order */
	uint64_t last_index;
	int wal_failed;

	uint64_t snapshot_index;
	int snapshot_running;
	uv_work_t snapshot_work;
	struct qbuf snapshot_image;
	uint64_t snapshot_image_index;
	int snapshot_result;

	int compact_pending;
	int stopped;
	void (*stop_hook)(void *arg);
	void *stop_arg;
};

static void fifo_push(struct fifo *f, struct proposal *p)
{
	p->next = NULL;
	if (f->tail)
		f->tail->next = p;
	else
		f->head = p;
	f->tail = p;
}

static struct proposal *fifo_pop(struct fifo *f)
{
	struct proposal *p = f->head;

	if (p) {
		f->head = p->next;
		if (!f->head)
			f->tail = NULL;
	}
	return p;
}

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static uint64_t name_id(const char *name)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a: a stable id from the name */

	for (; *name; name++)
		h = (h ^ (unsigned char)*name) * 1099511628211ull;
	return h ? h : 1;
}

static void finish(struct proposal *p, int err, const struct store_result *res)
{
	if (p->cb)
		p->cb(p->arg, err, res);
	free(p->data);
	free(p);
}

/* ---- Apply -------------------------------------------------------------- */

static void maybe_snapshot(struct server *srv);
static void maybe_compact(struct server *srv);
static void maybe_stop(struct server *srv);

static void apply_one(struct server *srv, struct proposal *p)
{
	struct store_result res = {0};
	int rv;

	pthread_rwlock_wrlock(&srv->lock);
	rv = store_apply(srv->store, p->index, p->data, p->len, &res);
	pthread_rwlock_unlock(&srv->lock);
	if (rv != 0) {
		LOG_ERROR("apply of index %llu refused: %s", (unsigned long long)p->index,
			  qfs_strerror(rv));
		abort(); /* the log and the store disagree: never serve wrong data */
	}
	finish(p, 0, &res);
}

static void on_durable(void *arg, uint64_t index, int err)
{
	struct server *srv = arg;
	struct proposal *p;

	while (srv->inflight.head && srv->inflight.head->index <= index)
		apply_one(srv, fifo_pop(&srv->inflight));
	if (err && !srv->wal_failed) {
		srv->wal_failed = 1;
		while ((p = fifo_pop(&srv->inflight)))
			finish(p, QFS_EIO, NULL);
		LOG_ERROR("stopping: the WAL can no longer be written");
		server_shutdown(srv);
	}
	maybe_snapshot(srv);
	maybe_compact(srv);
	maybe_stop(srv);
}

/* ---- Proposals ---------------------------------------------------------- */

int server_propose(struct server *srv, struct entry *e, server_done_cb cb, void *arg)
{
	struct proposal *p = calloc(1, sizeof(*p));
	struct qbuf buf;
	int rv;

	if (!p)
		return QFS_ENOMEM;
	pthread_mutex_lock(&srv->mu);
	e->origin = srv->member_id;
	e->request_id = ++srv->next_request;
	pthread_mutex_unlock(&srv->mu);
	qbuf_init(&buf);
	rv = entry_encode(e, &buf);
	if (rv) {
		qbuf_close(&buf);
		free(p);
		return rv;
	}
	p->data = qbuf_take(&buf, &p->len);
	p->cb = cb;
	p->arg = arg;
	pthread_mutex_lock(&srv->mu);
	if (srv->stopping) {
		pthread_mutex_unlock(&srv->mu);
		free(p->data);
		free(p);
		return QFS_ESHUTDOWN;
	}
	fifo_push(&srv->submitted, p);
	uv_async_send(&srv->wake); /* under mu: the stop cannot close it in between */
	pthread_mutex_unlock(&srv->mu);
	return 0;
}

/* The sequencer: give each submitted proposal the next index and time. */
static void on_wake(uv_async_t *h)
{
	struct server *srv = h->data;
	struct fifo batch;
	struct proposal *p;

	pthread_mutex_lock(&srv->mu);
	batch = srv->submitted;
	srv->submitted.head = srv->submitted.tail = NULL;
	pthread_mutex_unlock(&srv->mu);

	while ((p = fifo_pop(&batch))) {
		if (srv->wal_failed) {
			finish(p, QFS_EIO, NULL);
			continue;
		}
		entry_stamp_time(p->data, p->len, now_ns());
		p->index = srv->last_index + 1;
		if (syncer_append(srv->syncer, p->index, TERM, p->data, p->len) != 0) {
			finish(p, QFS_ENOMEM, NULL);
			continue;
		}
		srv->last_index = p->index;
		fifo_push(&srv->inflight, p);
	}
	maybe_stop(srv);
}

/* ---- Snapshots and compaction -------------------------------------------- */

static void snapshot_write(uv_work_t *w)
{
	struct server *srv = w->data;

	srv->snapshot_result = snapfile_write(srv->cfg->data_dir, srv->snapshot_image_index, TERM,
					      srv->snapshot_image.data, srv->snapshot_image.len, 2);
}

static void snapshot_done(uv_work_t *w, int status)
{
	struct server *srv = w->data;

	(void)status;
	srv->snapshot_running = 0;
	qbuf_close(&srv->snapshot_image);
	if (srv->snapshot_result != 0) {
		LOG_WARN("snapshot at index %llu failed: %s",
			 (unsigned long long)srv->snapshot_image_index,
			 qfs_strerror(srv->snapshot_result));
	} else {
		srv->snapshot_index = srv->snapshot_image_index;
		LOG_INFO("snapshot at index %llu written", (unsigned long long)srv->snapshot_index);
		syncer_compact(srv->syncer, srv->snapshot_index);
	}
	maybe_stop(srv);
}

/* The image is taken on the loop thread (a consistent state, no lock needed);
 * compression and fsync run on the libuv thread pool. */
static void maybe_snapshot(struct server *srv)
{
	uint64_t applied = store_applied_index(srv->store);
	int rv;

	if (srv->snapshot_running || srv->stopped ||
	    applied - srv->snapshot_index < srv->cfg->snapshot_entries)
		return;
	qbuf_init(&srv->snapshot_image);
	rv = store_snapshot_save(srv->store, &srv->snapshot_image);
	if (rv != 0) {
		LOG_WARN("snapshot image failed: %s", qfs_strerror(rv));
		qbuf_close(&srv->snapshot_image);
		return;
	}
	srv->snapshot_image_index = applied;
	srv->snapshot_running = 1;
	srv->snapshot_work.data = srv;
	uv_queue_work(&srv->loop, &srv->snapshot_work, snapshot_write, snapshot_done);
}

static void compact_done(void *arg, int err, const struct store_result *res)
{
	struct server *srv = arg;

	srv->compact_pending = 0;
	if (err || res->err)
		LOG_WARN("auto-compaction failed: %s", qfs_strerror(err ? err : res->err));
}

/* Compaction goes through the log so every member drops the same history. */
static void maybe_compact(struct server *srv)
{
	uint64_t keep = srv->cfg->auto_compact_revisions;
	uint64_t rev = store_revision(srv->store);
	struct entry e = {.type = ENTRY_COMPACT};

	if (!keep || srv->compact_pending || srv->wal_failed ||
	    rev < store_compacted_revision(srv->store) + keep + keep / 10 + 1)
		return;
	e.compact_rev = rev - keep;
	if (server_propose(srv, &e, compact_done, srv) == 0)
		srv->compact_pending = 1;
}

/* ---- Stop ---------------------------------------------------------------- */

static void on_closed(uv_handle_t *h)
{
	(void)h;
}

static void maybe_stop(struct server *srv)
{
	int stopping;

	pthread_mutex_lock(&srv->mu);
	stopping = srv->stopping && !srv->submitted.head;
	pthread_mutex_unlock(&srv->mu);
	if (!stopping || srv->stopped || srv->inflight.head || srv->snapshot_running)
		return;
	srv->stopped = 1;
	if (srv->stop_hook)
		srv->stop_hook(srv->stop_arg);
	syncer_destroy(srv->syncer);
	srv->syncer = NULL;
	uv_close((uv_handle_t *)&srv->wake, on_closed);
	uv_close((uv_handle_t *)&srv->sigterm, on_closed);
	uv_close((uv_handle_t *)&srv->sigint, on_closed);
}

void server_shutdown(struct server *srv)
{
	int first;

	pthread_mutex_lock(&srv->mu);
	first = !srv->stopping;
	srv->stopping = 1;
	if (first) /* once: the handle is closed soon after the stop begins */
		uv_async_send(&srv->wake);
	pthread_mutex_unlock(&srv->mu);
}

static void on_signal(uv_signal_t *h, int signum)
{
	struct server *srv = h->data;

	LOG_INFO("%s: finishing in-flight commits, then unmounting",
		 signum == SIGTERM ? "SIGTERM" : "SIGINT");
	server_shutdown(srv);
}

/* ---- Recovery ------------------------------------------------------------ */

struct replay {
	struct server *srv;
	char *errmsg;
	size_t errlen;
};

static int replay_record(void *arg, const struct wal_record *rec)
{
	struct replay *r = arg;
	struct store_result res;
	uint64_t applied = store_applied_index(r->srv->store);

	if (rec->type != WAL_ENTRY)
		return 0;
	if (rec->index != applied + 1) {
		snprintf(r->errmsg, r->errlen,
			 "wal: entry %llu follows entry %llu: a part of the log is missing",
			 (unsigned long long)rec->index, (unsigned long long)applied);
		return QFS_ECORRUPT;
	}
	return store_apply(r->srv->store, rec->index, rec->data, rec->len, &res);
}

static int open_data_dir(struct server *srv)
{
	const char *dir = srv->cfg->data_dir;
	char path[4200];

	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		fprintf(stderr, "quorumfs: cannot create data dir %s: %s\n", dir, strerror(errno));
		return QFS_EIO;
	}
	snprintf(path, sizeof(path), "%s/LOCK", dir);
	srv->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (srv->lock_fd < 0) {
		fprintf(stderr, "quorumfs: cannot open %s: %s\n", path, strerror(errno));
		return QFS_EIO;
	}
	if (flock(srv->lock_fd, LOCK_EX | LOCK_NB) != 0) {
		fprintf(stderr, "quorumfs: data dir %s is in use by another quorumfs\n", dir);
		return QFS_EIO;
	}
	return 0;
}

static int recover(struct server *srv)
{
	char errmsg[1024] = "";
	struct replay r = {srv, errmsg, sizeof(errmsg)};
	struct wal *wal = NULL;
	uint8_t *image = NULL;
	size_t len = 0;
	uint64_t index = 0, term = 0;
	int rv;

	rv = snapfile_load(srv->cfg->data_dir, &index, &term, &image, &len, errmsg, sizeof(errmsg));
	if (rv == 0) {
		rv = store_snapshot_load(srv->store, image, len);
		free(image);
		if (rv != 0) {
			fprintf(stderr, "quorumfs: snapshot at index %llu in %s/snap: %s\n",
				(unsigned long long)index, srv->cfg->data_dir, qfs_strerror(rv));
			return rv;
		}
		srv->snapshot_index = index;
	} else if (rv != QFS_ENOENT) {
		fprintf(stderr, "quorumfs: %s\n", errmsg[0] ? errmsg : qfs_strerror(rv));
		return rv;
	}
	rv = wal_open(srv->cfg->data_dir, store_applied_index(srv->store), replay_record, &r, &wal,
		      errmsg, sizeof(errmsg));
	if (rv != 0) {
		fprintf(stderr, "quorumfs: %s\n", errmsg[0] ? errmsg : qfs_strerror(rv));
		return rv;
	}
	srv->last_index = store_applied_index(srv->store);
	LOG_INFO("recovered: snapshot index %llu, applied index %llu, revision %llu, %llu keys",
		 (unsigned long long)srv->snapshot_index, (unsigned long long)srv->last_index,
		 (unsigned long long)store_revision(srv->store),
		 (unsigned long long)store_key_count(srv->store));
	rv = syncer_create(&srv->loop, wal, on_durable, srv, &srv->syncer);
	if (rv != 0)
		wal_close(wal);
	return rv;
}

/* ---- Lifecycle ----------------------------------------------------------- */

int server_create(const struct config *cfg, struct server **out)
{
	struct store_config scfg = {cfg->quota_bytes, cfg->max_value_bytes};
	struct server *srv = calloc(1, sizeof(*srv));
	int rv;

	if (!srv)
		return QFS_ENOMEM;
	srv->cfg = cfg;
	srv->lock_fd = -1;
	srv->member_id = name_id(cfg->name);
	pthread_mutex_init(&srv->mu, NULL);
	pthread_rwlock_init(&srv->lock, NULL);
	uv_loop_init(&srv->loop);
	if ((rv = open_data_dir(srv)))
		goto err_loop;
	if ((rv = store_create(&scfg, &srv->store)))
		goto err_loop;
	if ((rv = recover(srv)))
		goto err_store;
	uv_async_init(&srv->loop, &srv->wake, on_wake);
	srv->wake.data = srv;
	uv_signal_init(&srv->loop, &srv->sigterm);
	uv_signal_init(&srv->loop, &srv->sigint);
	srv->sigterm.data = srv->sigint.data = srv;
	uv_signal_start(&srv->sigterm, on_signal, SIGTERM);
	uv_signal_start(&srv->sigint, on_signal, SIGINT);
	*out = srv;
	return 0;

err_store:
	store_destroy(srv->store);
err_loop:
	uv_loop_close(&srv->loop);
	if (srv->lock_fd >= 0)
		close(srv->lock_fd);
	pthread_rwlock_destroy(&srv->lock);
	pthread_mutex_destroy(&srv->mu);
	free(srv);
	return rv;
}

int server_run(struct server *srv)
{
	uv_run(&srv->loop, UV_RUN_DEFAULT);
	return srv->wal_failed ? QFS_EIO : 0;
}

void server_destroy(struct server *srv)
{
	if (srv->syncer) { /* server_run never ran to a stop */
		syncer_destroy(srv->syncer);
		uv_close((uv_handle_t *)&srv->wake, on_closed);
		uv_close((uv_handle_t *)&srv->sigterm, on_closed);
		uv_close((uv_handle_t *)&srv->sigint, on_closed);
		uv_run(&srv->loop, UV_RUN_DEFAULT);
	}
	uv_loop_close(&srv->loop);
	store_destroy(srv->store);
	close(srv->lock_fd);
	pthread_rwlock_destroy(&srv->lock);
	pthread_mutex_destroy(&srv->mu);
	free(srv);
}

void server_set_stop_hook(struct server *srv, void (*hook)(void *arg), void *arg)
{
	srv->stop_hook = hook;
	srv->stop_arg = arg;
}

void server_rdlock(struct server *srv)
{
	pthread_rwlock_rdlock(&srv->lock);
}

void server_unlock(struct server *srv)
{
	pthread_rwlock_unlock(&srv->lock);
}

struct store *server_store(struct server *srv)
{
	return srv->store;
}

const struct config *server_config(const struct server *srv)
{
	return srv->cfg;
}

void server_status(struct server *srv, struct server_status *st)
{
	memset(st, 0, sizeof(*st));
	st->name = srv->cfg->name;
	st->member_id = srv->member_id;
	st->role = "leader";
	st->term = TERM;
	st->quota_bytes = srv->cfg->quota_bytes;
	server_rdlock(srv);
	st->applied_index = st->commit_index = store_applied_index(srv->store);
	st->revision = store_revision(srv->store);
	st->compacted_revision = store_compacted_revision(srv->store);
	st->db_size = store_size(srv->store);
	st->keys = store_key_count(srv->store);
	st->snapshot_index = srv->snapshot_index;
	server_unlock(srv);
}
