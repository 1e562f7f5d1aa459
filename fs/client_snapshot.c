/*
 * SNAPSHOT on the client port (see client_conn.h), for `quorumfs snapshot
 * save`. A read barrier first, so the image holds every write acknowledged
 * before the request (linearizable); then server_image_build() builds the
 * image of the replicated state at the applied index, with its CRC, on the
 * thread pool (the loop goes on meanwhile; committed entries wait, and a
 * member snapshot being built is finished first), and it goes out in
 * CLIENT_PROTO_SNAPSHOT_CHUNK frames, one write in flight at a time. The
 * image stays in memory, uncompressed, until its last chunk is written, so
 * a member serves one save at a time (QFS_EBUSY for another meanwhile).
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include "../common/errors.h"
#include "../common/log.h"
#include "client_conn.h"

struct send {
	struct op *op;		     /* holds the connection */
	struct server_image img;     /* img.image: the image being sent */
	struct client_snapshot meta; /* offset: of the next chunk */
};

static void send_finish(struct send *s)
{
	s->op->c->port->saving = false;
	conn_op_free(s->op);
	qbuf_close(&s->img.image);
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

	m->chunk = s->img.image.data + m->offset;
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

static void respond_image_err(struct conn *c, int err)
{
	conn_respond_err_msg(c, CLIENT_REQ_SNAPSHOT, err,
			     err == QFS_EAGAIN ? "the member is installing the leader's snapshot; "
						 "try again"
					       : qfs_strerror(err));
}

/* The image is built; the store is still as of its index. */
static void image_built(struct server_image *img, int err)
{
	struct send *s = (struct send *)((char *)img - offsetof(struct send, img));
	struct conn *c = s->op->c;
	struct store *st = server_store(c->port->srv);
	struct client_snapshot *m = &s->meta;

	if (c->closing) {
		send_finish(s);
		return;
	}
	if (err) {
		respond_image_err(c, err);
		send_finish(s);
		return;
	}
	m->index = img->index;
	m->term = img->term;
	m->total = img->image.len;
	m->crc = img->crc;
	m->revision = store_revision(st);
	m->keys = store_key_count(st);
	store_lease_list(st, count_lease, &m->leases);
	LOG_INFO("snapshot save for %s: image of %" PRIu64 " bytes at index %" PRIu64
		 " (revision %" PRIu64 ", %" PRIu64 " keys)",
		 c->name, m->total, m->index, m->revision, m->keys);
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
	err = server_image_build(c->port->srv, &s->img, true, image_built);
	if (err) {
		respond_image_err(c, err);
		send_finish(s);
	}
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
	qbuf_init(&s->img.image);
	c->port->saving = true;
	rv = server_read_barrier(c->port->srv, on_read_ready, s);
	if (rv) {
		conn_respond_err(c, r->type, rv);
		send_finish(s);
	}
}
