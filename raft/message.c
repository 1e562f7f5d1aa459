/*
 * Wire encoding of Raft messages, versioned and bounded. Everything decoded
 * is untrusted: lengths and counts are checked against what is left before
 * any allocation, and garbage gives QFS_EMSG, never a crash.
 *
 * u8 version | u8 type | u32 flags | u64 from, to, term, index, log_term,
 * commit, hint, ctx, offset, total | u32 nentries | nentries * (u64 index,
 * u64 term, u8 type, bytes data) | SNAPSHOT only: u64 snap index,
 * u64 snap term, members (confchange.c), bytes chunk
 *
 * A decoded message copies the input once into a raft_buf; its entries and
 * chunk point into it and hold references.
 */
#include <string.h>

#include "../common/errors.h"
#include "internal.h"

#define ENTRY_MIN_BYTES (8 + 8 + 1 + 4)

int raft_msg_encode(const struct raft_msg *m, struct qbuf *out)
{
	size_t start = out->len;

	qbuf_put_u8(out, RAFT_MSG_VERSION);
	qbuf_put_u8(out, (uint8_t)m->type);
	qbuf_put_u32(out, m->flags);
	qbuf_put_u64(out, m->from);
	qbuf_put_u64(out, m->to);
	qbuf_put_u64(out, m->term);
	qbuf_put_u64(out, m->index);
	qbuf_put_u64(out, m->log_term);
	qbuf_put_u64(out, m->commit);
	qbuf_put_u64(out, m->hint);
	qbuf_put_u64(out, m->ctx);
	qbuf_put_u64(out, m->offset);
	qbuf_put_u64(out, m->total);
	qbuf_put_u32(out, (uint32_t)m->nentries);
	for (size_t i = 0; i < m->nentries; i++) {
		const struct raft_entry *e = &m->entries[i];

		qbuf_put_u64(out, e->index);
		qbuf_put_u64(out, e->term);
		qbuf_put_u8(out, (uint8_t)e->type);
		qbuf_put_bytes(out, e->data, e->len);
	}
	if (m->type == RAFT_MSG_SNAPSHOT) {
		qbuf_put_u64(out, m->snap.index);
		qbuf_put_u64(out, m->snap.term);
		raft_members_encode(&m->snap.members, out);
		qbuf_put_bytes(out, m->data, m->len);
	}
	if (qbuf_error(out))
		return QFS_ENOMEM;
	if (out->len - start > RAFT_MSG_MAX_BYTES) {
		out->len = start;
		return QFS_EINVAL;
	}
	return 0;
}

void raft_msg_free(struct raft_msg *m)
{
	for (size_t i = 0; i < m->nentries; i++)
		raft_entry_release(&m->entries[i]);
	free(m->entries);
	raft_buf_unref(m->buf);
	memset(m, 0, sizeof(*m));
}

static int decode(struct raft_msg *m, struct raft_buf *b)
{
	struct qreader rd;
	uint8_t type;
	uint32_t n;

	qreader_init(&rd, b->data, b->len);
	if (qreader_u8(&rd) != RAFT_MSG_VERSION)
		return QFS_EMSG;
	type = qreader_u8(&rd);
	m->flags = qreader_u32(&rd);
	m->from = qreader_u64(&rd);
	m->to = qreader_u64(&rd);
	m->term = qreader_u64(&rd);
	m->index = qreader_u64(&rd);
	m->log_term = qreader_u64(&rd);
	m->commit = qreader_u64(&rd);
	m->hint = qreader_u64(&rd);
	m->ctx = qreader_u64(&rd);
	m->offset = qreader_u64(&rd);
	m->total = qreader_u64(&rd);
	n = qreader_u32(&rd);
	if (qreader_error(&rd) || type < RAFT_MSG_APPEND || type >= RAFT_MSG_TYPE_END_ ||
	    m->flags & ~(uint32_t)(RAFT_MSG_REJECT | RAFT_MSG_FORCE | RAFT_MSG_DONE))
		return QFS_EMSG;
	m->type = type;
	if (n > rd.left / ENTRY_MIN_BYTES)
		return QFS_EMSG;
	if (n) {
		m->entries = calloc(n, sizeof(*m->entries));
		if (!m->entries)
			return QFS_ENOMEM;
	}
	for (uint32_t i = 0; i < n; i++) {
		struct raft_entry *e = &m->entries[i];
		uint8_t et;

		e->index = qreader_u64(&rd);
		e->term = qreader_u64(&rd);
		et = qreader_u8(&rd);
		e->data = qreader_bytes(&rd, rd.left, &e->len);
		if (qreader_error(&rd) || et < RAFT_ENTRY_NORMAL || et > RAFT_ENTRY_NOOP)
			return QFS_EMSG;
		e->type = et;
		if (!e->len)
			e->data = NULL;
		e->buf = raft_buf_ref(b);
		m->nentries = i + 1;
	}
	if (m->type == RAFT_MSG_SNAPSHOT) {
		m->snap.index = qreader_u64(&rd);
		m->snap.term = qreader_u64(&rd);
		if (qreader_error(&rd) || raft_members_decode(&rd, &m->snap.members))
			return QFS_EMSG;
		m->data = qreader_bytes(&rd, rd.left, &m->len);
		if (qreader_error(&rd) || m->offset > m->total || m->len > m->total - m->offset)
			return QFS_EMSG;
		if (!m->len)
			m->data = NULL;
		m->buf = raft_buf_ref(b);
	}
	if (rd.left != 0)
		return QFS_EMSG;
	return 0;
}

int raft_msg_decode(const uint8_t *p, size_t len, struct raft_msg *m)
{
	struct raft_buf *b;
	int rc;

	memset(m, 0, sizeof(*m));
	if (!p || len > RAFT_MSG_MAX_BYTES)
		return QFS_EMSG;
	b = raft_buf_new(p, len);
	if (!b)
		return QFS_ENOMEM;
	rc = decode(m, b);
	raft_buf_unref(b);
	if (rc)
		raft_msg_free(m);
	return rc;
}
