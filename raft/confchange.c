/*
 * Membership: single-server changes (dissertation §4.1). A CONF entry holds
 * the change (op, member id, caller context) and the whole configuration
 * after it, so any member can adopt it without replaying history. A
 * configuration is used as soon as its entry is in the log, committed or
 * not; truncating the entry reverts to the one before.
 *
 * CONF entry: u8 version | u8 op | u64 id | bytes context |
 *             u32 n | n * (u64 id, u8 voter)
 */
#include <string.h>

#include "../common/errors.h"
#include "internal.h"

#define CONF_VERSION 1

int raft_members_encode(const struct raft_members *m, struct qbuf *out)
{
	qbuf_put_u32(out, m->n);
	for (uint32_t i = 0; i < m->n; i++) {
		qbuf_put_u64(out, m->m[i].id);
		qbuf_put_u8(out, m->m[i].voter ? 1 : 0);
	}
	return qbuf_error(out);
}

int raft_members_decode(struct qreader *rd, struct raft_members *m)
{
	uint32_t n = qreader_u32(rd);

	memset(m, 0, sizeof(*m));
	if (qreader_error(rd) || n > RAFT_MAX_MEMBERS)
		return QFS_EMSG;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t id = qreader_u64(rd);
		uint8_t v = qreader_u8(rd);

		if (qreader_error(rd) || id == 0 || v > 1 || raft_members_find(m, id))
			return QFS_EMSG;
		m->m[m->n].id = id;
		m->m[m->n].voter = v;
		m->n++;
	}
	return 0;
}

const struct raft_member *raft_members_find(const struct raft_members *m, uint64_t id)
{
	for (uint32_t i = 0; i < m->n; i++)
		if (m->m[i].id == id)
			return &m->m[i];
	return NULL;
}

size_t raft_members_voters(const struct raft_members *m)
{
	size_t k = 0;

	for (uint32_t i = 0; i < m->n; i++)
		k += m->m[i].voter;
	return k;
}

bool raft_is_voter(const struct raft *r, uint64_t id)
{
	const struct raft_member *mb = raft_members_find(&r->members, id);

	return mb && mb->voter;
}

static int conf_encode(const struct raft_conf_change *c, struct qbuf *out)
{
	qbuf_put_u8(out, CONF_VERSION);
	qbuf_put_u8(out, (uint8_t)c->op);
	qbuf_put_u64(out, c->id);
	qbuf_put_bytes(out, c->context, c->context_len);
	return raft_members_encode(&c->members, out);
}

int raft_conf_decode(const uint8_t *p, size_t len, struct raft_conf_change *out)
{
	struct qreader rd;
	uint8_t op;

	memset(out, 0, sizeof(*out));
	qreader_init(&rd, p, len);
	if (qreader_u8(&rd) != CONF_VERSION)
		return QFS_EMSG;
	op = qreader_u8(&rd);
	out->op = op;
	out->id = qreader_u64(&rd);
	out->context = qreader_bytes(&rd, RAFT_CONF_CONTEXT_MAX, &out->context_len);
	if (qreader_error(&rd) || op > RAFT_CONF_REMOVE)
		return QFS_EMSG;
	if (raft_members_decode(&rd, &out->members) || rd.left != 0)
		return QFS_EMSG;
	return 0;
}

struct progress *raft_progress_get(struct raft *r, uint64_t id)
{
	for (size_t i = 0; i < r->nprs; i++)
		if (r->prs[i].id == id)
			return &r->prs[i];
	return NULL;
}

/* Leader: one progress per member of the current configuration. */
void raft_progress_sync(struct raft *r)
{
	struct progress keep[RAFT_MAX_MEMBERS];
	size_t nkeep = 0;
	uint64_t last = raft_log_last_index(&r->log);

	if (r->role != RAFT_LEADER)
		return;
	for (uint32_t i = 0; i < r->members.n; i++) {
		const struct raft_member *mb = &r->members.m[i];
		struct progress *p = raft_progress_get(r, mb->id);

		if (p) {
			keep[nkeep] = *p;
			p->inflight = NULL; /* moved */
		} else if (raft_progress_init(&keep[nkeep], mb->id, mb->voter, last + 1,
					      r->o.max_inflight)) {
			RAFT_INVARIANT(r, 0, "out of memory for progress");
		}
		keep[nkeep].voter = mb->voter;
		nkeep++;
	}
	for (size_t i = 0; i < r->nprs; i++)
		raft_progress_close(&r->prs[i]);
	memcpy(r->prs, keep, nkeep * sizeof(keep[0]));
	r->nprs = nkeep;
	if (r->transferee && !raft_is_voter(r, r->transferee))
		r->transferee = 0;
}

static bool entry_members(const struct raft_entry *e, struct raft_members *out)
{
	struct raft_conf_change c;

	if (e->type != RAFT_ENTRY_CONF || raft_conf_decode(e->data, e->len, &c))
		return false;
	*out = c.members;
	return true;
}

void raft_conf_at(const struct raft *r, uint64_t index, struct raft_members *out)
{
	for (uint64_t i = index; i > r->log.snap_index; i--)
		if (entry_members(raft_log_get(&r->log, i), out))
			return;
	*out = r->snap_members;
}

void raft_conf_reload(struct raft *r)
{
	uint64_t last = raft_log_last_index(&r->log);

	r->members_index = 0;
	r->members = r->snap_members;
	for (uint64_t i = last; i > r->log.snap_index; i--) {
		if (entry_members(raft_log_get(&r->log, i), &r->members)) {
			r->members_index = i;
			break;
		}
	}
	raft_progress_sync(r);
}

void raft_conf_on_append(struct raft *r, const struct raft_entry *e)
{
	if (e->type == RAFT_ENTRY_CONF && entry_members(e, &r->members)) {
		r->members_index = e->index;
		raft_progress_sync(r);
	}
}

/* §4.2.2: a leader removed by a committed change hands over and steps down. */
void raft_conf_on_commit(struct raft *r)
{
	struct progress *best = NULL;

	if (r->role != RAFT_LEADER || r->members_index > r->commit || raft_is_voter(r, r->id))
		return;
	for (size_t i = 0; i < r->nprs; i++) {
		struct progress *p = &r->prs[i];

		if (p->voter && p->id != r->id && (!best || p->match > best->match))
			best = p;
	}
	if (best && best->match == raft_log_last_index(&r->log)) {
		struct raft_msg m = {.type = RAFT_MSG_TIMEOUT_NOW, .to = best->id};

		raft_send(r, &m);
	}
	raft_become_follower(r, r->term, 0);
}

int raft_propose_conf(struct raft *r, enum raft_conf_op op, uint64_t id, const uint8_t *context,
		      size_t context_len)
{
	struct raft_conf_change c = {.op = op,
				     .id = id,
				     .context = context,
				     .context_len = context_len,
				     .members = r->members};
	struct raft_member *mb = NULL;
	uint64_t t;
	struct qbuf b;
	int rc;

	if (r->role != RAFT_LEADER)
		return QFS_ENOTLEADER;
	if (id == 0 || context_len > RAFT_CONF_CONTEXT_MAX || (context_len && !context))
		return QFS_EINVAL;
	raft_log_term(&r->log, r->commit, &t);
	if (r->members_index > r->commit || t != r->term || r->transferee)
		return QFS_EBUSY;
	for (uint32_t i = 0; i < c.members.n; i++)
		if (c.members.m[i].id == id)
			mb = &c.members.m[i];
	switch (op) {
	case RAFT_CONF_ADD_LEARNER:
		if (mb || c.members.n == RAFT_MAX_MEMBERS)
			return QFS_EINVAL;
		c.members.m[c.members.n++] = (struct raft_member){.id = id, .voter = false};
		break;
	case RAFT_CONF_PROMOTE:
		if (!mb || mb->voter)
			return QFS_EINVAL;
		mb->voter = true;
		break;
	case RAFT_CONF_REMOVE:
		if (!mb || (mb->voter && raft_members_voters(&c.members) == 1))
			return QFS_EINVAL;
		*mb = c.members.m[--c.members.n];
		break;
	default:
		return QFS_EINVAL;
	}
	qbuf_init(&b);
	rc = conf_encode(&c, &b);
	if (!rc)
		rc = raft_append_local(r, RAFT_ENTRY_CONF, b.data, b.len, NULL);
	qbuf_close(&b);
	return rc;
}

int raft_bootstrap(struct raft *r, const struct raft_members *members)
{
	struct raft_conf_change c = {.members = *members};
	struct raft_entry e = {.index = 1, .term = 1, .type = RAFT_ENTRY_CONF};
	struct qbuf b;
	int rc;

	if (raft_log_last_index(&r->log) != 0 || r->term != 0 || members->n == 0 ||
	    members->n > RAFT_MAX_MEMBERS || raft_members_voters(members) == 0)
		return QFS_EINVAL;
	for (uint32_t i = 0; i < members->n; i++)
		for (uint32_t j = 0; j < i; j++)
			if (members->m[i].id == members->m[j].id || members->m[i].id == 0)
				return QFS_EINVAL;
	qbuf_init(&b);
	rc = conf_encode(&c, &b);
	if (!rc) {
		e.buf = raft_buf_new(b.data, b.len);
		rc = e.buf ? 0 : QFS_ENOMEM;
	}
	qbuf_close(&b);
	if (rc)
		return rc;
	e.data = e.buf->data;
	e.len = e.buf->len;
	rc = raft_log_append(&r->log, &e);
	raft_buf_unref(e.buf);
	if (rc)
		return rc;
	raft_set_term(r, 1);
	raft_mark_dirty(r);
	raft_conf_on_append(r, raft_log_get(&r->log, 1));
	return 0;
}
