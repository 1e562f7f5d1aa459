/*
 * Kernel cache invalidation (FUSE notify) from a thread of its own. Notify
 * calls must not run on a FUSE handler thread or on the thread that answers
 * requests (the kernel may be waiting on a request the notify would wait
 * for). An item may carry a request to answer after its invalidation, so
 * that close() returns only once the kernel has dropped what it cached.
 */
#ifndef QFS_INVAL_H
#define QFS_INVAL_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <stdint.h>

struct inval;

int inval_create(struct fuse_session *se, struct inval **out);

/* Carries out everything queued (answering its requests) and ends the
 * thread; later calls run their work at once in the caller's thread (the
 * mount is going: notify calls fail harmlessly, requests get answered). */
void inval_stop(struct inval *iv);
/* Stops if needed and frees. No other thread may use iv any more. */
void inval_destroy(struct inval *iv);

/* Any thread. Drops the kernel's attributes of node id ino (and its data
 * when data is non-zero), then, if req is not NULL, answers it with err. */
void inval_inode(struct inval *iv, uint64_t ino, int data, fuse_req_t req, int err);

/* Any thread. Drops the kernel's dentry `name` (copied) in directory parent. */
void inval_entry(struct inval *iv, uint64_t parent, const char *name);

/* Any thread. Runs fn(arg) on the invalidation thread after everything
 * queued before it (an open that must see the invalidations of the entries
 * it waited for). fn must not wait on a FUSE request. */
void inval_call(struct inval *iv, void (*fn)(void *arg), void *arg);

#endif
