/* The invalidation thread: a mutex-guarded FIFO drained by one thread. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "../common/errors.h"
#include "../common/log.h"
#include "inval.h"

struct item {
	uint64_t ino;
	char *name; /* an entry of directory ino, or NULL: the inode itself */
	void (*fn)(void *arg); /* instead: a call */
	void *fn_arg;
	int data;
	fuse_req_t req;
	int err;
	struct item *next;
};

struct inval {
	struct fuse_session *se;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	struct item *head, *tail; /* guarded by mu */
	bool stop;    /* asked to end */
	bool stopped; /* the thread has ended: work runs in the caller */
};

static void run(struct inval *iv, struct item *it)
{
	int rv;

	if (it->fn) {
		it->fn(it->fn_arg);
		free(it);
		return;
	}
	rv = it->name ? fuse_lowlevel_notify_inval_entry(iv->se, it->ino, it->name,
							     strlen(it->name))
			  : fuse_lowlevel_notify_inval_inode(iv->se, it->ino, it->data ? 0 : -1, 0);

	if (rv != 0 && rv != -ENOENT) /* ENOENT: the kernel holds nothing of it */
		LOG_DEBUG("invalidate node %llx: %d", (unsigned long long)it->ino, rv);
	if (it->req)
		fuse_reply_err(it->req, it->err);
	free(it->name);
	free(it);
}

static void *inval_main(void *arg)
{
	struct inval *iv = arg;
	struct item *it;

	pthread_mutex_lock(&iv->mu);
	for (;;) {
		while (!iv->head && !iv->stop)
			pthread_cond_wait(&iv->cond, &iv->mu);
		it = iv->head;
		if (!it)
			break;
		iv->head = it->next;
		if (!iv->head)
			iv->tail = NULL;
		pthread_mutex_unlock(&iv->mu);
		run(iv, it);
		pthread_mutex_lock(&iv->mu);
	}
	pthread_mutex_unlock(&iv->mu);
	return NULL;
}

int inval_create(struct fuse_session *se, struct inval **out)
{
	struct inval *iv = calloc(1, sizeof(*iv));

	if (!iv)
		return QFS_ENOMEM;
	iv->se = se;
	pthread_mutex_init(&iv->mu, NULL);
	pthread_cond_init(&iv->cond, NULL);
	if (pthread_create(&iv->thread, NULL, inval_main, iv) != 0) {
		pthread_cond_destroy(&iv->cond);
		pthread_mutex_destroy(&iv->mu);
		free(iv);
		return QFS_ENOMEM;
	}
	*out = iv;
	return 0;
}

void inval_stop(struct inval *iv)
{
	pthread_mutex_lock(&iv->mu);
	if (iv->stopped) {
		pthread_mutex_unlock(&iv->mu);
		return;
	}
	iv->stop = true;
	pthread_cond_signal(&iv->cond);
	pthread_mutex_unlock(&iv->mu);
	pthread_join(iv->thread, NULL);
	pthread_mutex_lock(&iv->mu);
	iv->stopped = true;
	pthread_mutex_unlock(&iv->mu);
}

void inval_destroy(struct inval *iv)
{
	inval_stop(iv);
	pthread_cond_destroy(&iv->cond);
	pthread_mutex_destroy(&iv->mu);
	free(iv);
}

static void push(struct inval *iv, struct item *it)
{
	pthread_mutex_lock(&iv->mu);
	if (iv->stopped) {
		pthread_mutex_unlock(&iv->mu);
		run(iv, it);
		return;
	}
	if (iv->tail)
		iv->tail->next = it;
	else
		iv->head = it;
	iv->tail = it;
	pthread_cond_signal(&iv->cond);
	pthread_mutex_unlock(&iv->mu);
}

void inval_inode(struct inval *iv, uint64_t ino, int data, fuse_req_t req, int err)
{
	struct item *it = calloc(1, sizeof(*it));

	if (!it) { /* the kernel's attributes expire by themselves */
		if (req)
			fuse_reply_err(req, err);
		return;
	}
	it->ino = ino;
	it->data = data;
	it->req = req;
	it->err = err;
	push(iv, it);
}

void inval_entry(struct inval *iv, uint64_t parent, const char *name)
{
	struct item *it = calloc(1, sizeof(*it));

	if (!it || !(it->name = strdup(name))) {
		free(it); /* the dentry expires by itself (attr_timeout) */
		return;
	}
	it->ino = parent;
	push(iv, it);
}

void inval_call(struct inval *iv, void (*fn)(void *arg), void *arg)
{
	struct item *it = calloc(1, sizeof(*it));

	if (!it) {
		fn(arg); /* out of memory: at worst a stale attribute */
		return;
	}
	it->fn = fn;
	it->fn_arg = arg;
	push(iv, it);
}
