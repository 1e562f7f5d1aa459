/*
 * Group commit: one background thread owns the WAL and makes appended
 * records durable. The loop thread appends (no I/O, just a copy into the
 * queue); the syncer thread takes everything queued, writes it and fsyncs
 * once, and tells the loop (uv_async) how far the log is durable. Records
 * that arrive while an fsync runs wait for the next one, so one fsync covers
 * every entry queued meanwhile. fsync never runs on the loop thread.
 */
#ifndef QFS_SYNCER_H
#define QFS_SYNCER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct wal;
struct syncer;

/* Called on the loop thread: entries up to `index` are durable, or err != 0
 * (QFS_EIO) when the WAL failed: nothing after the last durable index will
 * ever become durable. */
typedef void (*syncer_durable_cb)(void *arg, uint64_t index, int err);

/* Takes ownership of wal (closed by syncer_destroy). */
int syncer_create(uv_loop_t *loop, struct wal *wal, syncer_durable_cb cb, void *arg,
		  struct syncer **out);

/* Loop thread. Copies data. Returns QFS_ENOMEM or 0. */
int syncer_append(struct syncer *s, uint64_t index, uint64_t term, const uint8_t *data,
		  size_t len);

/* Loop thread: once everything appended so far is durable, delete WAL
 * segments covered by a snapshot at index. */
void syncer_compact(struct syncer *s, uint64_t index);

/* Writes what is queued, stops the thread, closes the WAL and the async
 * handle; the struct is freed when the handle has closed. Loop thread. */
void syncer_destroy(struct syncer *s);

#endif
