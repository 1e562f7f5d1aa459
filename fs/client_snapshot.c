/*
 * SNAPSHOT on the client port (see client_conn.h), for `quorumfs snapshot
 * save`. A read barrier first, so the image holds every write acknowledged
 * before the request (linearizable); then server_image_save() builds the
 * image of the replicated state at the applied index, and it goes out in
 * CLIENT_PROTO_SNAPSHOT_CHUNK frames, one write in flight at a time. The
 * image stays in memory, uncompressed, until its last chunk is written, so
 * a member serves one save at a time (QFS_EBUSY for another meanwhile).
 *
 * The image is built on the loop thread, which it blocks: serializing the
 * store (every retained version of every key, see store_snapshot.c) and a
 * CRC over the result. That is the cost a member already pays for each of
 * its own snapshots; docs/design.md has measurements, and every save logs
 * how long it held the loop. Writing the chunks does not block it.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <zlib.h>

#include "../common/errors.h"
#include "../common/log.h"
#include "../common/metrics.h"
#include "client_conn.h"

struct send {
	struct op *op; /* holds the connection */
	struct qbuf image;
	struct client_snapshot meta; /* offset: of the next chunk */
};

static void send_finish(struct send *s)
{
	s->op->c->port->saving = false;
	conn_op_free(s->op);
	qbuf_close(&s->image);
	free(s);
}

static void send_next(struct send *s);

static void on_chunk_written(struct qfs_stream *st, void *arg, int status)
{
	struct send *s = arg;
	struct conn *c = s->op->c;

	(void)st;
	qbuf_close(&c->out);
	if (c->closing || status < 0) {
		if (!c->closing)
			LOG_DEBUG("client port: snapshot save to %s failed: %s", c->name,
				  qfs_strerror(status));
		conn_close(c);
		send_finish(s);
		return;
	}
	send_next(s);
}

/* Writes the next chunk; the last one as the request's answer, after which
 * the connection reads requests again. */
static void send_next(struct send *s)
{
	struct conn *c = s->op->c;
	struct client_snapshot *m = &s->meta;
	uint64_t left = m->total - m->offset;
	struct qbuf b;
	int rv;

	m->chunk = s->image.data + m->offset;
	m->chunk_len =
	    left < CLIENT_PROTO_SNAPSHOT_CHUNK ? (size_t)left : CLIENT_PROTO_SNAPSHOT_CHUNK;
	qbuf_init(&b);
	rv = client_proto_snapshot_encode(&b, m);
	m->offset += m->chunk_len;
	if (rv || m->offset == m->total) {
		conn_respond(c, &b, rv);
		send_finish(s);
		return;
	}
	c->out = b;
	rv = conn_write_out(c, on_chunk_written, s);
	if (rv) {
		LOG_DEBUG("client port: write to %s failed: %s", c->name, qfs_strerror(rv));
		qbuf_close(&c->out);
		conn_close(c);
		send_finish(s);
	}
}

static int count_lease(void *arg, const struct store_lease *l)
{
	(void)l;
	(*(uint64_t *)arg)++;
	return 0;
}

/* Past the read point: the image, on the loop thread (the store's only
 * writer, so it reads without the lock). */
static void image_build(struct send *s)
{
	struct conn *c = s->op->c;
	struct server *srv = c->port->srv;
	struct store *st = server_store(srv);
	struct client_snapshot *m = &s->meta;
	uint64_t t0 = metrics_now_ns();
	int rv = server_image_save(srv, &s->image, &m->index, &m->term);

	if (rv) {
		conn_respond_err_msg(c, CLIENT_REQ_SNAPSHOT, rv,
				     rv == QFS_EAGAIN ? "the member is installing the leader's "
							"snapshot or stopping; try again"
						      : qfs_strerror(rv));
		send_finish(s);
		return;
	}
	m->total = s->image.len;
	m->crc = (uint32_t)crc32_z(0, s->image.data, s->image.len);
	m->revision = store_revision(st);
	m->keys = store_key_count(st);
	store_lease_list(st, count_lease, &m->leases);
	LOG_INFO("snapshot save for %s: image of %" PRIu64 " bytes at index %" PRIu64
		 " (revision %" PRIu64 ", %" PRIu64 " keys) built in %.1f ms on the loop thread",
		 c->name, m->total, m->index, m->revision, m->keys,
		 (double)(metrics_now_ns() - t0) / 1e6);
	send_next(s);
}

static void on_read_ready(void *arg, int err)
{
	struct send *s = arg;
	struct conn *c = s->op->c;

	if (c->closing) {
		send_finish(s);
		return;
	}
	if (err) {
		conn_respond_err(c, CLIENT_REQ_SNAPSHOT, err);
		send_finish(s);
		return;
	}
	image_build(s);
}

void client_snapshot_start(struct conn *c, const struct client_req *r)
{
	struct send *s;
	struct op *op;
	int rv;

	if (c->port->saving) {
		conn_respond_err_msg(c, r->type, QFS_EBUSY,
				     "a snapshot save is already running on this member");
		return;
	}
	op = conn_op_new(c, r);
	if (!op)
		return;
	s = calloc(1, sizeof(*s));
	if (!s) {
		conn_respond_err(c, r->type, QFS_ENOMEM);
		conn_op_free(op);
		return;
	}
	s->op = op;
	qbuf_init(&s->image);
	c->port->saving = true;
	rv = server_read_barrier(c->port->srv, on_read_ready, s);
	if (rv) {
		conn_respond_err(c, r->type, rv);
		send_finish(s);
	}
}
